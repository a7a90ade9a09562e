//! The control API as docs/protocol.md writes it down: a client written
//! from that section alone (tests/fixtures/control_client.py, standard
//! library Python, no SDK) drives a real fleet through every method the
//! section documents, and the fleet's real state is checked after each.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use corral_e2e::{
    ExitReason, Fleet, FleetConfig, Plugin, PluginState, fixture, process_gone, repo_root,
    wait_child, wait_gone,
};
use corral_proto::CONTROL_METHODS;
use serde_json::{Value, json};

/// How long one command of the client may take.
const STEP: Duration = Duration::from_secs(60);

/// The Python client, fed one command per line, answering one JSON line each.
struct Client {
    child: Option<Child>,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// The methods asked, in order.
    asked: Vec<String>,
}

impl Client {
    fn start(socket: &Path) -> Self {
        let mut child = Command::new("python3")
            .arg(fixture("control_client.py"))
            .arg(socket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn python3 control_client.py");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            stdin: child.stdin.take(),
            child: Some(child),
            lines,
            asked: Vec::new(),
        }
    }

    fn line(&self) -> Value {
        let line = self
            .lines
            .recv_timeout(STEP)
            .expect("the client printed a line in time");
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
    }

    fn send(&mut self, command: &Value) -> Value {
        let stdin = self.stdin.as_mut().expect("stdin open");
        writeln!(stdin, "{command}").expect("write a command");
        stdin.flush().expect("flush");
        self.line()
    }

    /// Sends `method` with `args`; the printed outcome.
    fn ask(&mut self, method: &str, args: Value) -> Value {
        let out = self.send(&json!({"method": method, "args": args}));
        assert_eq!(out["method"], method, "{out}");
        self.asked.push(method.to_string());
        out
    }

    /// The method's `ok` value, or a panic naming what came instead.
    fn ok(&mut self, method: &str, args: Value) -> Value {
        let out = self.ask(method, args);
        out.get("ok")
            .cloned()
            .unwrap_or_else(|| panic!("{method} did not answer ok: {out}"))
    }

    /// The error code the method answered.
    fn err(&mut self, method: &str, args: Value) -> String {
        let out = self.ask(method, args);
        out["err"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("{method} did not answer an error: {out}"))
            .to_string()
    }

    /// The framework error the method answered.
    fn server_error(&mut self, method: &str, args: Value) -> (u64, String) {
        let out = self.ask(method, args);
        let err = &out["server_error"];
        let kind = err["kind"].as_u64().unwrap_or_else(|| panic!("{out}"));
        (kind, err["detail"].as_str().unwrap_or_default().to_string())
    }

    /// Closes its stdin and waits for it to exit 0.
    fn finish(mut self) {
        drop(self.stdin.take());
        let child = self.child.take().expect("running");
        let out = wait_child(child, STEP, "the control client to exit");
        assert!(out.status.success(), "control_client.py: {:?}", out.status);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// The method names of docs/protocol.md's control API section: the first
/// column of its method table.
fn documented_methods() -> BTreeSet<String> {
    let path = repo_root().join("docs/protocol.md");
    let doc = std::fs::read_to_string(&path).expect("read docs/protocol.md");
    let section: Vec<&str> = doc
        .lines()
        .skip_while(|l| !(l.starts_with("## ") && l.contains("The control API")))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .collect();
    assert!(
        !section.is_empty(),
        "no control API section in docs/protocol.md"
    );
    section
        .iter()
        .filter_map(|l| l.strip_prefix("| `")?.split_once("` |").map(|(m, _)| m))
        .filter(|m| {
            m.starts_with(|c: char| c.is_ascii_uppercase())
                && m.chars().all(|c| c.is_ascii_alphanumeric())
        })
        .map(String::from)
        .collect()
}

/// Reads the stream `id` until `pred` holds for what it gave so far.
fn read_events(
    client: &mut Client,
    id: u64,
    what: &str,
    pred: impl Fn(&[Value]) -> bool,
) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut events = Vec::new();
    while !pred(&events) {
        assert!(
            Instant::now() < deadline,
            "no {what} in the stream: {events:?}"
        );
        let batch = client.ok("EventsNext", json!({"id": id}));
        events.extend(
            batch
                .as_array()
                .expect("an array of events")
                .iter()
                .cloned(),
        );
    }
    events
}

fn has_topic(events: &[Value], topic: &str) -> bool {
    events.iter().any(|e| e["topic"] == topic)
}

/// Queries, calls and the bus.
fn queries_calls_and_publishing(fleet: &Fleet, client: &mut Client, a: u32) -> u64 {
    // The fleet has settled: every plugin ran.
    assert_eq!(client.ok("Ready", json!({})), Value::Bool(true));
    let rows = client.ok("Ps", json!({}));
    let names: Vec<&str> = rows
        .as_array()
        .expect("an array")
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["a", "b"], "{rows}");
    assert_eq!(rows[0]["state"], "running", "{rows}");
    assert_eq!(rows[0]["pid"], a, "{rows}");

    let info = client.ok("Inspect", json!({"name": "a"}));
    assert_eq!(info["status"]["name"], "a", "{info}");
    assert!(info["settings"]["cmd"].is_array(), "{info}");
    assert!(
        !info["history"].as_array().expect("an array").is_empty(),
        "{info}"
    );
    assert_eq!(
        client.err("Inspect", json!({"name": "nobody"})),
        "unknown_plugin"
    );

    let pong = client.ok(
        "Call",
        json!({"name": "a", "action": "ping", "payload": null}),
    );
    assert_eq!(pong, json!({"pong": true, "pid": a}));
    let payload = json!({"list": [1, 2.5, "three", null], "text": "héllo"});
    let echoed = client.ok(
        "Call",
        json!({"name": "a", "action": "echo", "payload": payload}),
    );
    assert_eq!(echoed, payload);
    let code = client.err(
        "Call",
        json!({"name": "a", "action": "nope", "payload": null}),
    );
    assert_eq!(code, "unknown_action");

    // A streamed reply: pieces until the one with an end.
    let stream = json!({"name": "a", "action": "stream", "payload": {"count": 300}});
    let sid = client.ok("CallStream", stream.clone());
    let mut chunks = Vec::new();
    let end = loop {
        let part = client.ok("StreamNext", json!({"id": sid}));
        chunks.extend(part["chunks"].as_array().expect("chunks").iter().cloned());
        if !part["end"].is_null() {
            break part["end"].clone();
        }
    };
    assert_eq!(end, json!({"Ok": {"done": 300}}));
    assert_eq!(
        chunks,
        (0..300).map(|i| json!({"i": i})).collect::<Vec<_>>()
    );
    let sid = client.ok("CallStream", stream);
    assert_eq!(client.ok("StreamClose", json!({"id": sid})), Value::Null);
    assert_eq!(client.err("StreamNext", json!({"id": sid})), "bad_request");

    let id = client.ok(
        "EventsOpen",
        json!({"patterns": ["demo.>", "corral.plugin.>"]}),
    );
    let id = id.as_u64().unwrap_or_else(|| panic!("a stream id: {id}"));
    assert_eq!(
        client.err("EventsOpen", json!({"patterns": ["bad..x"]})),
        "bad_topic"
    );
    let published = json!({"topic": "demo.hello", "payload": {"n": 1}, "retain": false});
    assert_eq!(client.ok("Publish", published), Value::Null);
    let reserved = json!({"topic": "corral.mine", "payload": null, "retain": false});
    assert_eq!(client.err("Publish", reserved), "denied");
    let events = read_events(client, id, "demo.hello", |e| has_topic(e, "demo.hello"));
    let hello = events
        .iter()
        .find(|e| e["topic"] == "demo.hello")
        .expect("found just now");
    assert_eq!(
        (&hello["source"], &hello["payload"]),
        (&json!("cli"), &json!({"n": 1}))
    );
    // The typed client agrees the fleet was untouched.
    assert_eq!(fleet.row("a").pid, Some(a));
    id
}

/// Stop, start and restart, each checked against the fleet's real state.
fn lifecycle(fleet: &Fleet, client: &mut Client, stream: u64, a: u32, b: u32) {
    assert_eq!(client.ok("Stop", json!({"names": ["b"]})), Value::Null);
    // Stop answers once the process is reaped.
    let row = fleet.row("b");
    assert_eq!(row.state, PluginState::Stopped, "{row:?}");
    assert_eq!(row.last_exit, Some(ExitReason::Requested), "{row:?}");
    assert!(process_gone(b), "b's process {b} is still there");
    let code = client.err(
        "Call",
        json!({"name": "b", "action": "ping", "payload": null}),
    );
    assert_eq!(code, "not_running");

    assert_eq!(client.ok("Start", json!({"names": ["b"]})), Value::Null);
    let b2 = fleet.wait_running("b");
    assert_ne!(b2, b);

    assert_eq!(client.ok("Restart", json!({"names": ["a"]})), Value::Null);
    let a2 = fleet
        .wait_pid_change("a", a, Duration::from_secs(10))
        .pid
        .expect("running");
    assert!(process_gone(a), "a's old process {a} is still there");

    // An unknown name refuses the whole request: b keeps running.
    assert_eq!(
        client.err("Stop", json!({"names": ["b", "nobody"]})),
        "unknown_plugin"
    );
    let row = fleet.row("b");
    assert_eq!(
        (row.state, row.pid),
        (PluginState::Running, Some(b2)),
        "{row:?}"
    );

    // The stream saw it all, lifecycle events included.
    let events = read_events(client, stream, "b's stop and start", |e| {
        has_topic(e, "corral.plugin.b.stopped")
            && e.iter()
                .any(|e| e["topic"] == "corral.plugin.b.running" && e["payload"]["pid"] == b2)
    });
    assert!(events.iter().all(|e| e["source"] == "corral"), "{events:?}");
    let code = client.err("EventsNext", json!({"id": stream + 1000}));
    assert_eq!(code, "bad_request");
    assert_eq!(fleet.row("a").pid, Some(a2));
}

/// What the client may get wrong: an unknown method, bad arguments, a
/// frame that is not JSON.
fn mistakes(client: &mut Client) {
    let (kind, detail) = client.server_error("Frobnicate", json!({}));
    assert_eq!(kind, 11, "{detail}");
    assert!(detail.contains("`Frobnicate`"), "{detail}");
    for method in CONTROL_METHODS {
        assert!(detail.contains(method), "{method} not listed: {detail}");
    }
    let (kind, detail) = client.server_error("Call", json!({"name": "a"}));
    assert_eq!(kind, 11, "{detail}");
    assert!(
        detail.contains("does not decode") && detail.contains("action"),
        "{detail}"
    );
    // The same connection serves on.
    assert_eq!(
        client
            .ok("Ps", json!({}))
            .as_array()
            .expect("an array")
            .len(),
        3
    );
    let out = client.send(&json!({"raw": "not json"}));
    assert_eq!(
        out["closed"], true,
        "a frame that is not JSON closes the connection: {out}"
    );
    // A new connection works.
    assert_eq!(
        client
            .ok("Ps", json!({}))
            .as_array()
            .expect("an array")
            .len(),
        3
    );
}

#[test]
fn a_client_written_from_the_protocol_doc_drives_the_fleet_through_every_method() {
    let two = FleetConfig::new()
        .plugin(Plugin::echo("a"))
        .plugin(Plugin::echo("b"));
    let mut fleet = two.start();
    let a = fleet.wait_running("a");
    let b = fleet.wait_running("b");

    let mut client = Client::start(&fleet.socket());
    let welcome = client.line();
    assert_eq!(
        welcome["welcome"]["Welcome"]["protocol_version"], 1,
        "{welcome}"
    );

    let stream = queries_calls_and_publishing(&fleet, &mut client, a);
    lifecycle(&fleet, &mut client, stream, a, b);

    let three = two.clone().plugin(Plugin::echo("c"));
    fleet.rewrite_config(&three.toml());
    let report = client.ok("Reload", json!({}));
    assert_eq!(report["added"], json!(["c"]), "{report}");
    let c = fleet.wait_running("c");

    mistakes(&mut client);

    let pids: Vec<u32> = fleet.ps().iter().filter_map(|r| r.pid).collect();
    assert!(pids.contains(&c), "{pids:?}");
    // The supervisor gives open connections a grace period when it stops.
    fleet.control().disconnect();
    assert_eq!(client.ok("Down", json!({})), Value::Null);
    let status = fleet.wait_exit(Duration::from_secs(20));
    assert!(status.success(), "supervisor exit: {status:?}");
    wait_gone(
        &pids,
        Duration::from_secs(5),
        "the plugins to be gone after Down",
    );
    assert!(
        !fleet.socket().exists(),
        "the control socket is left behind"
    );

    let asked: BTreeSet<String> = std::mem::take(&mut client.asked)
        .into_iter()
        .filter(|m| CONTROL_METHODS.contains(&m.as_str()))
        .collect();
    client.finish();
    let documented = documented_methods();
    let known: BTreeSet<String> = CONTROL_METHODS.iter().map(|m| m.to_string()).collect();
    assert_eq!(
        documented, known,
        "docs/protocol.md's method table vs the ControlApi"
    );
    assert_eq!(
        asked, documented,
        "methods the client exercised vs the documented ones"
    );
}
