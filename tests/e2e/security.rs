//! Who may reach what: only the spawned plugin, with this spawn's secret,
//! takes its place; the bus keeps plugins inside their allow-lists and out
//! of `corral.>`; sockets, logs and the runtime directory are this user's
//! alone; the secret shows nowhere; a runtime directory others may use is
//! refused.
//!
//! Covered elsewhere and not repeated here: a plugin presenting a wrong
//! secret, or none in time (`handshake::wrong_secret_and_silence_are_killed_as_handshake_failures`);
//! the plugin socket removed once the plugin is connected
//! (`handshake::a_stranger_on_the_plugin_socket_is_refused_without_harming_the_plugin`);
//! another uid on the control socket (`control::another_uid_is_refused_on_the_control_socket`);
//! publishes outside the allow-list from Rust, Python and the CLI, and a
//! subscription outside it (`bus::a_denied_publish_or_subscribe_errors_and_reaches_no_one`).

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use corral_e2e::{
    ExitReason, FleetConfig, Plugin, PluginState, bin, process_gone, repo_root, tempdir,
    wait_child, wait_until,
};
use serde_json::{Value, json};

/// The secret corral gave the process `pid`, read from its environment.
/// While the process is between the shim and its program (an `execve` in
/// progress) the kernel shows an empty environment, so this waits for it.
fn secret_of(pid: u32) -> String {
    wait_until(
        Duration::from_secs(10),
        "the plugin's secret in its environment",
        || {
            let environ = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
            environ
                .split(|b| *b == 0)
                .find_map(|kv| kv.strip_prefix(b"CORRAL_PLUGIN_SECRET="))
                .map(|v| String::from_utf8_lossy(v).into_owned())
        },
    )
}

/// Sends one JSON frame and reads the answer, as any client may.
fn say(stream: &mut UnixStream, msg: &Value) -> Option<Value> {
    let body = serde_json::to_vec(msg).expect("json");
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    // A refusal may come before our frame is read: a failed write is fine.
    let _ = stream.write_all(&frame);
    let mut head = [0u8; 4];
    stream.read_exact(&mut head).ok()?;
    let mut reply = vec![0u8; u32::from_be_bytes(head) as usize];
    stream.read_exact(&mut reply).ok()?;
    serde_json::from_slice(&reply).ok()
}

fn hello(role: &str, name: &str, secret: &str) -> Value {
    json!({"protocol_version": 1, "role": {role: {"name": name, "secret": secret}}})
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .map(|m| m.permissions().mode() & 0o777)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `path`'s mode, or `None` when it is not there (a log mid-rotation).
fn mode_if_there(path: &Path) -> Option<u32> {
    std::fs::metadata(path)
        .ok()
        .map(|m| m.permissions().mode() & 0o777)
}

/// Writes a Python fixture into the fleet's dir and returns its path.
fn script(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write script");
    path.display().to_string()
}

/// The Python echo plugin's entry point and SDK, for scripts that become it.
fn echo_py_main() -> String {
    repo_root()
        .join("examples/echo-py/main.py")
        .display()
        .to_string()
}

fn sdk_path() -> String {
    repo_root().join("plugin-sdk/python").display().to_string()
}

/// A plugin that waits for a file to appear before it becomes the Python
/// echo plugin: its socket stays open for strangers to try meanwhile.
const GATED: &str = r#"
import os, sys, time
go = sys.argv[1]
while not os.path.exists(go):
    time.sleep(0.01)
os.execvp(sys.executable, [sys.executable, "-u", sys.argv[2]])
"#;

#[test]
fn a_stranger_on_the_plugin_socket_is_refused_even_with_the_right_name_and_secret() {
    let tmp = tempdir();
    let go = tmp.path().join("go");
    let gate = script(tmp.path(), "gate.py", GATED);
    let fleet = FleetConfig::new()
        .plugin(
            Plugin::echo_py("gated")
                .cmd(["python3", &gate, &go.display().to_string(), &echo_py_main()])
                .set("handshake_timeout", "30s"),
        )
        .start();
    let socket = fleet.dir().join(".corral/plugin-gated.sock");
    let row = fleet.wait_row(
        "gated",
        Duration::from_secs(10),
        "starting with a pid",
        |r| r.state == PluginState::Starting && r.pid.is_some(),
    );
    let pid = row.pid.expect("pid");
    wait_until(Duration::from_secs(10), "the plugin socket", || {
        socket.exists().then_some(())
    });
    assert_eq!(mode(&socket), 0o600, "plugin socket mode");
    assert_eq!(
        mode(&fleet.dir().join(".corral")),
        0o700,
        "runtime dir mode"
    );

    // This test process is not in the plugin's process group: whatever it
    // presents, it is refused, and the plugin is not harmed.
    let real = secret_of(pid);
    for (role, secret) in [
        ("Plugin", "0".repeat(64)),
        ("Plugin", real.clone()),
        ("Bus", real.clone()),
    ] {
        let mut stream = UnixStream::connect(&socket).expect("connect to the plugin socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let reply = say(&mut stream, &hello(role, "gated", &secret)).expect("an answer");
        let reason = reply["Refused"]["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("process group"),
            "{role} hello from a stranger: {reply}"
        );
        assert!(!reason.contains(&real), "the refusal echoes the secret");
    }
    assert!(
        fleet.log().contains("refused a connection to its socket"),
        "{}",
        fleet.log()
    );

    // Nor can a process of the same user join the plugin's process group to
    // pass that check: the plugin has a session of its own, and setpgid
    // works only within a session.
    let join = Command::new("python3")
        .args([
            "-c",
            "import os, sys\ntry:\n    os.setpgid(0, int(sys.argv[1]))\n    print('joined')\nexcept PermissionError:\n    print('refused')",
            &pid.to_string(),
        ])
        .output()
        .expect("run python3");
    assert_eq!(String::from_utf8_lossy(&join.stdout).trim(), "refused");

    // The plugin itself then connects and runs, as the same spawn.
    std::fs::write(&go, b"").expect("open the gate");
    assert_eq!(fleet.wait_running("gated"), pid);
    let row = fleet.row("gated");
    assert_eq!(row.restarts, 0, "{row:?}");
    assert!(row.last_exit.is_none(), "{row:?}");
    assert_eq!(fleet.call("gated", "ping", None).unwrap()["pid"], pid);
    assert!(!socket.exists(), "the socket outlived the handshake");
}

/// On its first run becomes the Python echo plugin; when the test has left
/// an old secret in `stash`, presents that one instead (once).
const REPLAY: &str = r#"
import json, os, socket, struct, sys
stash = sys.argv[1]
if os.path.exists(stash):
    old = open(stash).read()
    os.remove(stash)
    print("replaying an old secret", flush=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(os.environ["CORRAL_PLUGIN_SOCKET"])
    body = json.dumps({"protocol_version": 1, "role": {"Plugin": {"name": os.environ["CORRAL_PLUGIN_NAME"], "secret": old}}}).encode()
    sock.sendall(struct.pack(">I", len(body)) + body)
    f = sock.makefile("rb")
    (n,) = struct.unpack(">I", f.read(4))
    print("answer:", f.read(n).decode(), flush=True)
    sys.exit(0)
os.execvp(sys.executable, [sys.executable, "-u", sys.argv[2]])
"#;

#[test]
fn the_secret_of_a_previous_spawn_is_refused() {
    let tmp = tempdir();
    let stash = tmp.path().join("stash");
    let replay = script(tmp.path(), "replay.py", REPLAY);
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo_py("replay").cmd([
            "python3",
            &replay,
            &stash.display().to_string(),
            &echo_py_main(),
        ]))
        .plugin(Plugin::echo("echo"))
        .start();
    let first = fleet.wait_running("replay");
    let old = secret_of(first);
    std::fs::write(&stash, &old).expect("stash the old secret");

    // The next spawn presents the first spawn's secret: refused, and killed
    // as a failed handshake.
    let out = fleet.corral(&["restart", "replay"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let refused = wait_until(
        Duration::from_secs(15),
        "the replayed secret to be refused",
        || {
            fleet
                .inspect("replay")
                .history
                .into_iter()
                .find(|t| matches!(t.reason, Some(ExitReason::Handshake { .. })))
        },
    );
    assert!(
        matches!(&refused.reason, Some(ExitReason::Handshake { detail }) if detail.contains("wrong secret")),
        "{refused:?}"
    );
    assert!(!stash.exists(), "the replaying spawn never ran");
    let log_file = fleet.dir().join(".corral/logs/replay.log");
    wait_until(Duration::from_secs(5), "the replay in its log", || {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        log.contains("replaying an old secret").then_some(())
    });
    // Its restart policy brings it back with a fresh secret; the bystander
    // never noticed.
    let third = fleet
        .wait_pid_change("replay", first, Duration::from_secs(15))
        .pid
        .expect("a running plugin has a pid");
    assert_ne!(secret_of(third), old);
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}

/// A plugin on the wire by hand (no SDK, so no client-side check): it
/// publishes under `corral.>` and on an allowed topic, then subscribes
/// outside its list, and prints what the bus answered.
const RAW_BUS: &str = r#"
import json, os, sys
sys.path.insert(0, sys.argv[1])
from corral_sdk import _wire
env = os.environ
plugin = _wire.connect(env["CORRAL_PLUGIN_SOCKET"], "Plugin", env["CORRAL_PLUGIN_NAME"], env["CORRAL_PLUGIN_SECRET"])
bus = _wire.connect(env["CORRAL_PLUGIN_SOCKET"], "Bus", env["CORRAL_PLUGIN_NAME"], env["CORRAL_PLUGIN_SECRET"])
load = plugin.recv()["Request"]
plugin.send(_wire.response(load["id"], "Load", {"Ok": None}))
events = [
    {"topic": "corral.plugin.echo.running", "payload": {"forged": True}, "retain": True},
    {"topic": "corral", "payload": None, "retain": False},
    {"topic": "raw.ok", "payload": {"n": 1}, "retain": False},
]
bus.send(_wire.request(1, "Publish", {"events": events}))
print("publish:", json.dumps(bus.recv()), flush=True)
bus.send(_wire.request(2, "Subscribe", {"patterns": ["secret.>"]}))
print("subscribe:", json.dumps(bus.recv()), flush=True)
while True:
    msg = plugin.recv()
    if msg is None:
        break
    req = msg.get("Request")
    if not req:
        continue
    ((method, args),) = req["message"].items()
    if method == "Ping":
        plugin.send(_wire.response(req["id"], "Ping", args["seq"]))
    elif method == "Deliver":
        plugin.send(_wire.response(req["id"], "Deliver", None))
    elif method == "Shutdown":
        plugin.send(_wire.response(req["id"], "Shutdown", None))
        break
"#;

#[test]
fn the_bus_itself_refuses_corral_topics_and_foreign_subscriptions_from_a_raw_plugin() {
    let tmp = tempdir();
    let raw = script(tmp.path(), "raw.py", RAW_BUS);
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("spy").subscribe(["corral.plugin.echo.>", "corral", "raw.>"]))
        .plugin(
            Plugin::new("raw")
                .cmd(["python3", &raw, &sdk_path()])
                .codec("json")
                .set("publish", [">"])
                .subscribe(["raw.>"])
                .requires(["spy"]),
        )
        .start();
    fleet.wait_running("spy");
    fleet.wait_running("raw");
    let log_file = fleet.dir().join(".corral/logs/raw.log");
    let log = wait_until(Duration::from_secs(10), "the bus's answers", || {
        let log = std::fs::read_to_string(&log_file).unwrap_or_default();
        log.contains("subscribe:").then_some(log)
    });
    let line = |prefix: &str| -> Value {
        let l = log
            .lines()
            .find_map(|l| {
                l.split_once(prefix)
                    .map(|(_, rest)| rest.trim().to_string())
            })
            .unwrap_or_else(|| panic!("no `{prefix}` in {log}"));
        serde_json::from_str(&l).unwrap_or_else(|e| panic!("{l}: {e}"))
    };
    // Even with `publish = [">"]`, nothing under `corral.>` gets through.
    let receipt = &line("publish:")["message"]["Ok"]["Publish"];
    assert_eq!(receipt["accepted"], 1, "{receipt}");
    let denied: Vec<(u64, String)> = receipt["denied"]
        .as_array()
        .expect("denied")
        .iter()
        .map(|d| {
            (
                d["index"].as_u64().expect("index"),
                d["error"]["code"].as_str().expect("code").to_string(),
            )
        })
        .collect();
    assert_eq!(denied, [(0, "denied".into()), (1, "denied".into())]);
    let sub = &line("subscribe:")["message"]["Ok"]["Subscribe"];
    assert_eq!(sub["Err"]["code"], "denied", "{sub}");

    // The spy, subscribed to the forged topics, gets only the allowed event.
    let got = wait_until(Duration::from_secs(5), "raw.ok at the spy", || {
        let r = fleet
            .call("spy", "received", Some(r#"{"limit": 100}"#))
            .expect("received");
        let events = r["events"].as_array().cloned().unwrap_or_default();
        events
            .iter()
            .any(|e| e["topic"] == "raw.ok")
            .then_some(events)
    });
    let forged: Vec<&Value> = got
        .iter()
        .filter(|e| e["source"] == "raw" && e["topic"] != "raw.ok")
        .collect();
    assert!(forged.is_empty(), "{forged:?}");
    let stats = fleet.inspect("raw").bus;
    assert_eq!(stats.denied_publishes, 2, "{stats:?}");
    assert_eq!(stats.denied_subscriptions, 1, "{stats:?}");
}

/// Every mode under the runtime and log directories, as `path → mode`.
fn modes_under(dir: &Path) -> Vec<(PathBuf, u32)> {
    let mut out = vec![(dir.to_path_buf(), mode(dir))];
    for entry in std::fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(modes_under(&path));
        } else if let Some(m) = mode_if_there(&path) {
            // A log being rotated may be gone since the listing.
            out.push((path.clone(), m));
        }
    }
    out
}

#[test]
fn sockets_logs_and_the_runtime_dir_are_the_owners_alone() {
    let tmp = tempdir();
    let logs = tmp.path().join("plugin-logs");
    let fleet = FleetConfig::new()
        .supervisor("log_dir", logs.display().to_string())
        .plugin(
            Plugin::echo("echo")
                .set("log_max_size", "1KiB")
                .set("log_keep", 2),
        )
        .plugin(Plugin::echo_py("py"))
        .start();
    fleet.wait_running("echo");
    fleet.wait_running("py");
    // Enough output to rotate: rotated files must be private too.
    fleet
        .call(
            "echo",
            "log",
            Some(r#"{"count": 200, "text": "rotate me"}"#),
        )
        .expect("log");
    fleet
        .call("py", "log", Some(r#"{"count": 5, "text": "hello"}"#))
        .expect("log");
    // A rotation renames the file, then opens the next: wait for both.
    wait_until(Duration::from_secs(10), "a rotated log file", || {
        (logs.join("echo.log.1").exists() && logs.join("echo.log").exists()).then_some(())
    });
    let rt = fleet.dir().join(".corral");
    assert_eq!(mode(&rt), 0o700);
    assert_eq!(mode(&fleet.socket()), 0o600);
    assert_eq!(mode(&logs), 0o700);
    for (path, m) in modes_under(&rt).into_iter().chain(modes_under(&logs)) {
        assert_eq!(m & 0o077, 0, "{} is mode {m:o}", path.display());
    }
    // The plugin's output may still be rotating: a file can be between its
    // rename and the next one's creation, so each is read once it is there.
    for f in ["echo.log", "echo.log.1", "py.log"] {
        let m = wait_until(Duration::from_secs(10), f, || mode_if_there(&logs.join(f)));
        assert_eq!(m, 0o600, "{f}");
    }
}

#[test]
fn the_secret_shows_in_no_output_and_no_log() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("echo").subscribe(["corral.>"]))
        .plugin(Plugin::echo_py("py"))
        .start();
    let mut secrets = Vec::new();
    for name in ["echo", "py"] {
        secrets.push(secret_of(fleet.wait_running(name)));
    }
    // A restart makes lifecycle events, history and log lines, and one more
    // secret.
    let events = fleet.corral_spawn(&["events", "--json"]);
    let old = fleet.wait_running("py");
    let out = fleet.corral(&["restart", "py"]);
    assert!(out.status.success());
    let new = fleet
        .wait_pid_change("py", old, Duration::from_secs(10))
        .pid
        .expect("a running plugin has a pid");
    secrets.push(secret_of(new));
    fleet.call("py", "echo", Some(r#"{"x": 1}"#)).expect("echo");
    // The events stream has seen the restart once the spy has.
    wait_until(
        Duration::from_secs(10),
        "lifecycle events at the spy",
        || {
            let r = fleet
                .call("echo", "received", Some(r#"{"limit": 1000}"#))
                .expect("received");
            r["events"]
                .as_array()?
                .iter()
                .any(|e| e["topic"] == "corral.plugin.py.running" && e["payload"]["pid"] == new)
                .then_some(())
        },
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(events.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .expect("stop the stream");
    let streamed = events.wait_with_output().expect("events output");
    let streamed = String::from_utf8_lossy(&streamed.stdout).into_owned();
    assert!(streamed.contains("corral.plugin.py"), "{streamed}");

    let mut outputs: Vec<(String, String)> = vec![("corral events --json".into(), streamed)];
    for args in [
        &["ps", "--json"][..],
        &["ps"],
        &["inspect", "echo", "--json"],
        &["inspect", "py", "--json"],
        &["inspect", "py"],
        &["logs", "py", "-n", "1000"],
    ] {
        let out = fleet.corral(args);
        assert!(out.status.success(), "{args:?}");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        outputs.push((format!("corral {}", args.join(" ")), text));
    }
    outputs.push(("the supervisor's log (debug)".into(), fleet.log()));
    for entry in std::fs::read_dir(fleet.dir().join(".corral/logs"))
        .expect("logs")
        .flatten()
    {
        outputs.push((
            entry.path().display().to_string(),
            std::fs::read_to_string(entry.path()).unwrap_or_default(),
        ));
    }
    for (what, text) in &outputs {
        assert!(!text.is_empty() || what.contains(".log"), "{what} is empty");
        for secret in &secrets {
            assert!(
                !text.contains(secret.as_str()),
                "{what} shows a plugin's secret"
            );
        }
    }
}

fn up_on_runtime_dir(rt: &Path) -> std::process::Output {
    let dir = rt.parent().expect("parent");
    let config = dir.join("corral.toml");
    let toml = FleetConfig::new()
        .supervisor("runtime_dir", rt.display().to_string())
        .plugin(Plugin::echo("echo"))
        .toml();
    std::fs::write(&config, toml).expect("config");
    let child = Command::new(bin("corral"))
        .arg("up")
        .arg("-c")
        .arg(&config)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("corral up");
    // It must refuse at once; a supervisor that starts is killed here.
    wait_child(child, Duration::from_secs(10), "corral up to give up")
}

#[test]
fn a_runtime_dir_others_may_use_is_refused_by_name() {
    let tmp = tempdir();
    // Passing through (x alone) is allowed: corral opens it so for plugins
    // that run as other users. Reading or writing it is not.
    for (i, m) in [0o777, 0o757, 0o770, 0o750, 0o705].into_iter().enumerate() {
        let rt = tmp.path().join(format!("rt{i}"));
        std::fs::create_dir(&rt).expect("mkdir");
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(m)).expect("chmod");
        let out = up_on_runtime_dir(&rt);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "mode {m:o} was accepted");
        assert!(
            err.contains(&rt.display().to_string()) && err.contains("open to other users"),
            "mode {m:o}: {err}"
        );
        assert!(!rt.join("control.sock").exists());
        assert_eq!(mode(&rt), m, "the directory was changed");
    }
    // One that belongs to another user, even 0700, is refused too.
    if nix::unistd::Uid::effective().is_root() {
        let rt = tmp.path().join("theirs");
        std::fs::create_dir(&rt).expect("mkdir");
        std::fs::set_permissions(&rt, std::fs::Permissions::from_mode(0o700)).expect("chmod");
        nix::unistd::chown(
            &rt,
            Some(nix::unistd::Uid::from_raw(65534)),
            Some(nix::unistd::Gid::from_raw(65534)),
        )
        .expect("chown");
        let out = up_on_runtime_dir(&rt);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            err.contains(&rt.display().to_string()) && err.contains("uid 65534"),
            "{err}"
        );
    } else {
        eprintln!("skipped the other owner's directory: giving one away needs root");
    }
}

#[test]
fn a_control_request_with_an_endless_deadline_harms_no_one() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("echo")).start();
    let pid = fleet.wait_running("echo");
    let mut stream = UnixStream::connect(fleet.socket()).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let welcome = say(
        &mut stream,
        &json!({"protocol_version": 1, "role": "Control"}),
    )
    .expect("welcome");
    assert!(welcome.get("Welcome").is_some(), "{welcome}");
    let trace_id = vec![0u8; 16];
    let request = json!({"Request": {
        "context": {
            "deadline": {"secs": u64::MAX, "nanos": 0},
            "trace_context": {"trace_id": trace_id, "span_id": 0, "sampling_decision": "Unsampled"},
        },
        "id": 1,
        "message": {"Ps": {}},
    }});
    // Answered or dropped: either way the supervisor and its plugins go on.
    let _ = say(&mut stream, &request);
    drop(stream);
    assert!(!process_gone(fleet.supervisor_pid()), "the supervisor died");
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pid"], pid);
    assert_eq!(fleet.row("echo").state, PluginState::Running);
}

#[test]
fn a_control_client_that_never_says_hello_is_dropped() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("echo")).start();
    fleet.wait_running("echo");
    // Half a length header, then silence: the connection must not be held
    // open for as long as the client likes.
    let mut stream = UnixStream::connect(fleet.socket()).expect("connect");
    stream.write_all(&[0, 0]).expect("write");
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    let n = stream
        .read(&mut buf)
        .expect("closed by the supervisor, not timed out here");
    assert_eq!(n, 0, "expected the connection closed, got {:?}", &buf[..n]);
    wait_until(Duration::from_secs(5), "the refusal in the log", || {
        fleet.log().contains("no hello within").then_some(())
    });
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}
