//! The HTTP face end to end: a real supervisor with `[http]`, reached over
//! real TCP by a plain HTTP client: the token is needed everywhere but at
//! `/login`, the REST API answers what `ps --json` and `inspect --json`
//! print and acts as the CLI does, streams (the fleet, events, logs,
//! streamed calls) are Server-Sent Events, `/metrics` parses as Prometheus
//! text, and bad requests get the status that names them.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use corral_e2e::{FleetConfig, Plugin, PluginState, Web, assert_refused, check, wait_until};
use serde_json::{Value, json};

fn fleet_with_face(plugins: impl IntoIterator<Item = Plugin>) -> corral_e2e::Fleet {
    FleetConfig::new()
        .http("listen", "127.0.0.1:0")
        .http("max_body", "64KiB")
        .plugins(plugins)
        .start()
}

#[test]
fn without_the_token_nothing_but_login_answers_and_the_cli_prints_the_way_in() {
    let mut fleet = fleet_with_face([Plugin::echo("echo")]);
    fleet.wait_running("echo");
    let web = Web::of(&fleet.dir().join(".corral"));
    let token_file = fleet.dir().join(".corral/http.token");
    let mode = std::fs::metadata(&token_file)
        .expect("token file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "token file mode");

    // `corral http-token` and `corral dashboard` say how to get in.
    let out = fleet.corral(&["http-token"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), web.token);
    let out = fleet.corral(&["dashboard"]);
    let login = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let code = login
        .strip_prefix(&format!("{}login?code=", web.url))
        .unwrap_or_else(|| panic!("a login URL with a code: {login}"));
    assert!(
        !login.contains(&web.token),
        "the token went into a URL: {login}"
    );

    for path in ["api/plugins", "metrics", "", "api/plugins/echo"] {
        let answer = web.bare("GET", path).send().expect("an answer");
        assert_eq!(answer.status(), 401, "GET /{path} without a token");
        let wrong = web
            .bare("GET", path)
            .bearer_auth("0".repeat(64))
            .send()
            .expect("an answer");
        assert!(
            [401, 429].contains(&wrong.status().as_u16()),
            "GET /{path} with a wrong token: {}",
            wrong.status()
        );
    }
    // Guessing is slowed: a burst of wrong tokens is answered 429.
    let statuses: Vec<u16> = (0..20)
        .map(|_| {
            let answer = web.bare("GET", "api/plugins").bearer_auth("guess").send();
            answer.expect("an answer").status().as_u16()
        })
        .collect();
    assert!(statuses.contains(&429), "{statuses:?}");

    // The token is no login code; the login URL sets a session cookie
    // (not the token) that opens the rest, once.
    let by_token = web.bare("GET", &format!("login?code={}", web.token));
    assert!([401, 429].contains(&by_token.send().expect("an answer").status().as_u16()));
    let answer = web
        .bare("GET", &format!("login?code={code}"))
        .send()
        .expect("an answer");
    assert_eq!(answer.status(), 303);
    let cookie = answer.headers()["set-cookie"]
        .to_str()
        .expect("text")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("name=value").to_string();
    let port = web
        .url
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("a port");
    assert!(
        session.starts_with(&format!("corral_session_{port}=")),
        "{session}"
    );
    assert!(!session.contains(&web.token), "the cookie is the token");
    let again = web.bare("GET", &format!("login?code={code}")).send();
    assert!(
        [401, 429].contains(&again.expect("an answer").status().as_u16()),
        "a code works once"
    );
    let page = web
        .bare("GET", "")
        .header("cookie", &session)
        .send()
        .expect("the dashboard");
    assert_eq!(page.status(), 200);
    assert!(
        page.headers()["content-security-policy"]
            .to_str()
            .expect("text")
            .contains("default-src 'self'")
    );
    assert!(
        page.text()
            .expect("html")
            .contains("<script src=\"/app.js\">")
    );

    // Its files go with the supervisor.
    assert!(fleet.down().success());
    assert!(
        !token_file.exists(),
        "the token file outlived the supervisor"
    );
}

#[test]
fn the_rest_api_answers_as_the_cli_does_and_acts_on_the_fleet() {
    let echo = Plugin::echo("echo").set("call_timeout", "1s");
    let fleet = fleet_with_face([echo, Plugin::echo("other")]);
    let pid = fleet.wait_running("echo");
    fleet.wait_running("other");
    let web = Web::of(&fleet.dir().join(".corral"));

    // The rows are `ps --json`'s.
    let rows: Vec<Value> = web.get("api/plugins").json().expect("json");
    let names: Vec<&str> = rows.iter().filter_map(|r| r["name"].as_str()).collect();
    assert_eq!(names, ["echo", "other"]);
    let cli = fleet.ps_json_row("echo");
    for key in [
        "name",
        "state",
        "pid",
        "restarts",
        "memory_max_bytes",
        "limits",
        "sandbox",
    ] {
        assert_eq!(rows[0][key], cli[key], "{key}");
    }
    let info: Value = web.get("api/plugins/echo").json().expect("json");
    assert_eq!(info["status"]["pid"], json!(pid));
    assert!(
        info["history"].as_array().is_some_and(|h| !h.is_empty()),
        "{info}"
    );

    // A call, and the statuses of what goes wrong.
    let reply = web.post("api/plugins/echo/call/echo", &json!({"hello": "http"}));
    assert_eq!(reply.status(), 200);
    assert_eq!(
        reply.json::<Value>().expect("json"),
        json!({"hello": "http"})
    );
    let unknown = web.post("api/plugins/nobody/call/echo", &json!(null));
    assert_eq!(unknown.status(), 404);
    assert_eq!(
        unknown.json::<Value>().expect("json")["code"],
        "unknown_plugin"
    );
    let action = web.post("api/plugins/echo/call/no_such_action", &json!(null));
    assert_eq!(action.status(), 404);
    let garbage = web
        .request("POST", "api/plugins/echo/call/echo")
        .body("{not json")
        .send()
        .expect("an answer");
    assert_eq!(garbage.status(), 400);
    assert!(garbage.text().expect("text").contains("not JSON"));
    // Answered before its body is read, so the face closes the connection:
    // the client must not keep it for the next request.
    let big = web
        .request("POST", "api/plugins/echo/call/echo")
        .header("connection", "close")
        .body(format!("\"{}\"", "x".repeat(100 * 1024)))
        .send()
        .expect("an answer");
    assert_eq!(big.status(), 413, "a body over max_body");
    let slow = web.post("api/plugins/echo/call/sleep", &json!({"ms": 3000}));
    assert_eq!(slow.status(), 504, "past call_timeout");

    // Stop, then a call is 503 with Retry-After; start brings it back.
    let stopped = web.post("api/plugins/other/stop", &json!(null));
    assert_eq!(stopped.status(), 204);
    assert_eq!(fleet.row("other").state, PluginState::Stopped);
    let down = web.post("api/plugins/other/call/echo", &json!(1));
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["retry-after"], "1");
    let body: Value = down.json().expect("json");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("stopped")),
        "{body}"
    );
    assert_eq!(
        web.post("api/plugins/other/start", &json!(null)).status(),
        204
    );
    fleet.wait_state("other", PluginState::Running, Duration::from_secs(10));
    let restarted = web.post("api/plugins/other/restart", &json!(null));
    assert_eq!(restarted.status(), 204);
    // With `wait`, the answer comes once the new process runs: its row.
    let pid = fleet
        .wait_state("other", PluginState::Running, Duration::from_secs(10))
        .pid;
    let waited = web.post("api/plugins/other/restart?wait=10s", &json!(null));
    assert_eq!(waited.status(), 200);
    let rows: Value = waited.json().expect("json");
    assert_eq!(rows[0]["state"], "running", "{rows}");
    assert_ne!(rows[0]["pid"], json!(pid), "the row is the new process's");
    let bad = web.post("api/plugins/other/start?wait=soon", &json!(null));
    assert_eq!(bad.status(), 400);
    assert_eq!(
        web.post("api/plugins/other/explode", &json!(null)).status(),
        404
    );

    // Reload answers `reload --json`'s report.
    let report: Value = web.post("api/reload", &json!(null)).json().expect("json");
    assert_eq!(report["unchanged"], json!(["echo", "other"]), "{report}");
}

#[test]
fn events_logs_and_streamed_calls_are_server_sent_events() {
    let fleet = fleet_with_face([Plugin::echo("echo")]);
    fleet.wait_running("echo");
    let web = Web::of(&fleet.dir().join(".corral"));

    // Events: what is published after the stream opens, as `events --json`.
    let publisher = web.clone();
    let publish = std::thread::spawn(move || {
        // Until the reader below has seen one (it may open after the first).
        for i in 0..50 {
            let body = json!({"topic": "sensor.http", "payload": {"i": i}});
            assert_eq!(publisher.post("api/publish", &body).status(), 204);
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let event = web.sse(
        web.request("GET", "api/events?pattern=sensor.*&pattern=other.>"),
        Duration::from_secs(10),
        |kind, data| (kind == "event").then(|| serde_json::from_str::<Value>(data).expect("json")),
    );
    assert_eq!(event["topic"], "sensor.http");
    assert_eq!(event["source"], "cli");
    assert!(event["payload"]["i"].is_u64(), "{event}");
    let bad = web.post("api/publish", &json!({"topic": "corral.fake"}));
    assert_eq!(bad.status(), 403, "corral.> is the supervisor's");
    publish.join().expect("publisher");

    // Logs: the last lines as JSON, and lines as they are written.
    let said = web.post(
        "api/plugins/echo/call/log",
        &json!({"count": 3, "text": "before"}),
    );
    assert_eq!(said.status(), 200);
    fleet.wait_log("echo", "before 2");
    let lines: Vec<String> = web
        .get("api/plugins/echo/logs?lines=50")
        .json()
        .expect("json");
    assert!(lines.iter().any(|l| l.contains("before 2")), "{lines:?}");
    let writer = web.clone();
    let write = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        writer.post(
            "api/plugins/echo/call/log",
            &json!({"count": 2, "text": "after"}),
        )
    });
    let line = web.sse(
        web.request("GET", "api/plugins/echo/logs?follow=1&lines=0"),
        Duration::from_secs(10),
        |kind, data| (kind == "line" && data.contains("after 1")).then(|| data.to_string()),
    );
    assert!(line.contains("stdout"), "{line}");
    assert_eq!(write.join().expect("writer").status(), 200);
    assert_eq!(
        web.get("api/plugins/..%2F..%2Fetc%2Fpasswd/logs").status(),
        404
    );

    // A streamed call: each chunk, then its end.
    let mut chunks = Vec::new();
    let end = web.sse(
        web.request("POST", "api/plugins/echo/call/stream?stream=1")
            .body(json!({"count": 5}).to_string()),
        Duration::from_secs(10),
        |kind, data| {
            let value: Value = serde_json::from_str(data).expect("json");
            match kind {
                "chunk" => {
                    chunks.push(value);
                    None
                }
                _ => Some((kind.to_string(), value)),
            }
        },
    );
    assert_eq!(end, ("end".to_string(), json!({"done": 5})));
    let want: Vec<Value> = (0..5).map(|i| json!({"i": i})).collect();
    assert_eq!(chunks, want);

    // The fleet watched: a row for each plugin, again when it changes.
    let pid = fleet.row("echo").pid.expect("pid");
    let killer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
            nix::sys::signal::Signal::SIGKILL,
        );
    });
    let restarted = web.sse(
        web.request("GET", "api/plugins?watch=1"),
        Duration::from_secs(15),
        |kind, data| {
            let rows: Vec<Value> = serde_json::from_str(data).expect("json");
            let row = rows.first()?.clone();
            (kind == "ps" && row["restarts"].as_u64() >= Some(1) && row["state"] == "running")
                .then_some(row)
        },
    );
    assert_ne!(restarted["pid"], json!(pid));
    killer.join().expect("killer");
}

#[test]
fn metrics_parse_as_prometheus_text_and_count_calls_exits_and_heartbeats() {
    let fleet = FleetConfig::new()
        .http("listen", "127.0.0.1:0")
        .plugin(
            Plugin::echo("echo")
                .set("memory_max", "64MiB")
                .set("heartbeat", json!({"interval": "100ms"})),
        )
        .start();
    let pid = fleet.wait_running("echo");
    let web = Web::of(&fleet.dir().join(".corral"));
    for i in 0..7 {
        assert_eq!(
            web.post("api/plugins/echo/call/echo", &json!(i)).status(),
            200
        );
    }
    assert_eq!(
        web.post("api/plugins/echo/call/nope", &json!(null))
            .status(),
        404
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid")),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill");
    wait_until(Duration::from_secs(10), "a replacement", || {
        let row = fleet.row("echo");
        (row.state == PluginState::Running && row.pid != Some(pid)).then_some(())
    });

    let scrape = wait_until(Duration::from_secs(10), "heartbeats in the metrics", || {
        let answer = web.get("metrics");
        assert_eq!(answer.status(), 200);
        let kind = answer.headers()["content-type"]
            .to_str()
            .expect("text")
            .to_string();
        assert!(kind.starts_with("application/openmetrics-text"), "{kind}");
        let text = answer.text().expect("text");
        let lines = text.lines().map(|l| Ok(l.to_string()));
        let scrape = prometheus_parse::Scrape::parse(lines).expect("Prometheus text");
        let beats = histogram_count(&scrape, "corral_plugin_heartbeat_seconds", "echo");
        (beats >= 3).then_some(scrape)
    });
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        scrape
            .samples
            .iter()
            .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
            .map(|s| match s.value {
                prometheus_parse::Value::Counter(v)
                | prometheus_parse::Value::Gauge(v)
                | prometheus_parse::Value::Untyped(v) => v,
                _ => f64::NAN,
            })
            .unwrap_or_else(|| panic!("no {name} {labels:?}"))
    };
    assert_eq!(value("corral_plugin_up", &[("plugin", "echo")]), 1.0);
    assert_eq!(
        value(
            "corral_plugin_state",
            &[("plugin", "echo"), ("state", "running")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "corral_plugin_state",
            &[("plugin", "echo"), ("state", "failed")]
        ),
        0.0
    );
    assert_eq!(
        value("corral_plugin_restarts_total", &[("plugin", "echo")]),
        1.0
    );
    assert_eq!(
        value(
            "corral_plugin_exits_total",
            &[("plugin", "echo"), ("reason", "signal")]
        ),
        1.0
    );
    assert_eq!(
        value(
            "corral_plugin_calls_total",
            &[("plugin", "echo"), ("code", "ok")]
        ),
        7.0
    );
    assert_eq!(
        value(
            "corral_plugin_calls_total",
            &[("plugin", "echo"), ("code", "unknown_action")]
        ),
        1.0
    );
    assert_eq!(
        histogram_count(&scrape, "corral_plugin_call_seconds", "echo"),
        8
    );
    assert_eq!(
        value("corral_plugin_memory_max_bytes", &[("plugin", "echo")]),
        64.0 * 1024.0 * 1024.0
    );
    assert!(value("corral_plugin_memory_bytes", &[("plugin", "echo")]) > 0.0);
    assert!(value("corral_supervisor_open_fds", &[]) > 0.0);
    assert!(value("corral_supervisor_memory_bytes", &[]) > 1e6);
    assert_eq!(value("corral_plugins", &[]), 1.0);
    // No series is labelled with anything but the fixed words.
    for sample in &scrape.samples {
        for (key, _) in sample.labels.iter() {
            assert!(
                ["plugin", "state", "reason", "code", "result", "kind", "le"]
                    .contains(&key.as_str()),
                "{} has label {key}",
                sample.metric
            );
        }
    }
}

/// The observation count of histogram `name` for `plugin`, checked for
/// consistency: its `+Inf` bucket holds every observation.
fn histogram_count(scrape: &prometheus_parse::Scrape, name: &str, plugin: &str) -> u64 {
    let sample = scrape
        .samples
        .iter()
        .find(|s| s.metric == name && s.labels.get("plugin") == Some(plugin))
        .unwrap_or_else(|| panic!("no histogram {name}"));
    let prometheus_parse::Value::Histogram(buckets) = &sample.value else {
        panic!("{name} is not a histogram: {:?}", sample.value);
    };
    let counts: Vec<f64> = buckets.iter().map(|b| b.count).collect();
    assert!(
        counts.windows(2).all(|w| w[0] <= w[1]),
        "{name}: {counts:?}"
    );
    let last = buckets.last().expect("buckets");
    assert!(last.less_than.is_infinite(), "{name}: no +Inf bucket");
    last.count as u64
}

#[test]
fn check_refuses_an_http_face_reachable_from_other_hosts_or_unbounded() {
    let (code, out) = check(
        "[http]\nlisten = \"0.0.0.0:7700\"\nmax_body = \"0B\"\nmax_connections = 0\n\n[plugins.a]\ncmd = [\"true\"]\n",
    );
    assert_eq!(code, Some(1), "{out}");
    assert_refused(
        &out,
        &[
            ("http.listen", "would cross the network in the clear"),
            ("http.max_body", "more than zero"),
            ("http.max_connections", "at least 1"),
        ],
    );
    let (code, out) =
        check("[http]\nlisten = \"localhost\"\nport = 1\n\n[plugins.a]\ncmd = [\"true\"]\n");
    assert_eq!(code, Some(1), "{out}");
    assert_refused(
        &out,
        &[("http.listen", "not an address"), ("http.port", "")],
    );
}

#[test]
fn the_session_cookie_serves_only_the_faces_own_pages() {
    let fleet = fleet_with_face([Plugin::echo("echo")]);
    fleet.wait_running("echo");
    let web = Web::of(&fleet.dir().join(".corral"));
    let session = web.session();
    let host = web
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    let own = format!("http://{host}");
    let with_cookie = |method: &str, path: &str| {
        web.bare(method, path)
            .header("cookie", &session)
            .header("content-type", "application/json")
    };
    // The face's own page: a read, and a POST from its origin.
    assert_eq!(
        with_cookie("GET", "api/plugins")
            .send()
            .expect("an answer")
            .status(),
        200
    );
    let same = with_cookie("POST", "api/publish")
        .header("origin", &own)
        .header("sec-fetch-site", "same-origin")
        .body(r#"{"topic": "t.x", "payload": 1}"#)
        .send()
        .expect("an answer");
    assert!(same.status().is_success(), "{}", same.status());
    // Another page on 127.0.0.1 (another port) or another site: refused,
    // and what it asked for is not done.
    for (origin, site) in [
        ("http://127.0.0.1:1", "same-site"),
        ("http://evil.example", "cross-site"),
        ("null", "cross-site"),
    ] {
        let answer = with_cookie("POST", "api/plugins/echo/stop")
            .header("origin", origin)
            .header("sec-fetch-site", site)
            .send()
            .expect("an answer");
        assert_eq!(answer.status(), 403, "POST from {origin}");
        let read = with_cookie("GET", "api/plugins")
            .header("sec-fetch-site", site)
            .send()
            .expect("an answer");
        assert_eq!(read.status(), 403, "GET from a {site} page");
    }
    let no_origin = with_cookie("POST", "api/plugins/echo/stop")
        .send()
        .expect("an answer");
    assert_eq!(no_origin.status(), 403, "a POST naming no origin");
    assert_eq!(fleet.ps_json_row("echo")["state"], "running");
    // A session cannot mint login codes; the bearer can.
    let mint = with_cookie("POST", "api/login")
        .header("origin", &own)
        .send();
    assert_eq!(mint.expect("an answer").status(), 403);
    assert_eq!(
        web.request("POST", "api/login")
            .send()
            .expect("an answer")
            .status(),
        200
    );
    // A name rebound to 127.0.0.1 is not served.
    let rebound = web
        .request("GET", "api/plugins")
        .header("host", "evil.example")
        .send()
        .expect("an answer");
    assert_eq!(rebound.status(), 421);
}

#[test]
fn silent_connections_cannot_shut_the_face_out() {
    let fleet = FleetConfig::new()
        .http("listen", "127.0.0.1:0")
        .http("max_connections", 4)
        .plugin(Plugin::echo("echo"))
        .start();
    fleet.wait_running("echo");
    let web = Web::of(&fleet.dir().join(".corral"));
    let addr = web
        .url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();
    // Every slot taken by a client that sends half a request, and one that
    // sends nothing at all.
    let mut silent: Vec<std::net::TcpStream> = (0..4)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&addr).expect("a connection");
            if i % 2 == 0 {
                use std::io::Write;
                s.write_all(b"GET /api/plugins HTTP/1.1\r\nHost: 127")
                    .expect("a write");
            }
            s
        })
        .collect();
    // The face closes them once they are too slow with their headers, and
    // answers others again.
    let started = std::time::Instant::now();
    let answered =
        corral_e2e::wait_until(Duration::from_secs(30), "the face answering again", || {
            web.request("GET", "api/plugins")
                .timeout(Duration::from_secs(2))
                .send()
                .ok()
                .filter(|a| a.status() == 200)
        });
    assert_eq!(answered.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_secs(5),
        "answered while every slot was held"
    );
    for (i, s) in silent.iter_mut().enumerate() {
        use std::io::Read;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("a timeout");
        let mut buf = [0; 512];
        // Closed by the face: end of file, or a 408 and then the end.
        let closed = loop {
            match s.read(&mut buf) {
                Ok(0) => break true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
                Err(e) => {
                    eprintln!("silent connection {i}: {e}");
                    break false;
                }
            }
        };
        assert!(closed, "silent connection {i} was left open");
    }
}

#[test]
fn a_config_change_is_checked_kept_beside_the_fleet_file_and_applied() {
    let fleet = fleet_with_face([Plugin::echo_py("py")]);
    fleet.wait_running("py");
    let pid = fleet.row("py").pid;
    let web = Web::of(&fleet.dir().join(".corral"));
    let form: Value = web.get("api/plugins/py/config").json().expect("JSON");
    assert_eq!(form["schema"]["greeting"]["type"], "string");
    assert_eq!(form["values"]["greeting"], "hello");
    assert_eq!(form["sources"]["greeting"], "config_schema default");
    let overrides = fleet.dir().join(format!(
        "{}.overrides.toml",
        fleet
            .config()
            .file_stem()
            .expect("a stem")
            .to_string_lossy()
    ));
    // A value of the wrong type is refused, naming the key; nothing is kept.
    let wrong = web
        .request("PUT", "api/plugins/py/config")
        .body(r#"{"greeting": 5}"#)
        .send();
    let wrong = wrong.expect("an answer");
    assert_eq!(wrong.status(), 400);
    assert!(wrong.text().expect("text").contains("config.greeting"));
    assert!(!overrides.exists(), "a refused change was kept");
    let unknown = web
        .request("PUT", "api/plugins/py/config")
        .body(r#"{"greting": "x"}"#)
        .send();
    assert_eq!(unknown.expect("an answer").status(), 400);
    // A good one is kept in the overrides file and applied without a restart.
    let changed = web
        .request("PUT", "api/plugins/py/config")
        .body(r#"{"greeting": "set over REST"}"#)
        .send()
        .expect("an answer");
    assert_eq!(changed.status(), 200);
    let changed: Value = changed.json().expect("JSON");
    assert_eq!(changed["values"]["greeting"], "set over REST");
    assert!(
        changed["sources"]["greeting"]
            .as_str()
            .is_some_and(|s| s.starts_with("overrides file"))
    );
    let config = fleet.call("py", "config", None).expect("config");
    assert_eq!(config["greeting"], "set over REST");
    assert_eq!(
        fleet.row("py").pid,
        pid,
        "applied through on_reload, not a restart"
    );
    assert!(
        std::fs::read_to_string(&overrides)
            .expect("kept")
            .contains("set over REST")
    );
    // `check` reads it too, and refuses one that holds anything but config.
    let (code, out) = corral_e2e::check_file(fleet.config());
    assert_eq!(code, Some(0), "{out}");
    std::fs::write(&overrides, "[plugins.py]\ncmd = [\"evil\"]\n").expect("write");
    let (code, out) = corral_e2e::check_file(fleet.config());
    assert_ne!(code, Some(0));
    assert_refused(
        &out,
        &[("plugins.py.cmd", "only `[plugins.NAME.config]` tables")],
    );
}

#[test]
fn off_loopback_the_face_speaks_tls_or_is_refused_unless_insecure_is_said() {
    let dir = corral_e2e::tempdir();
    let openssl = corral_e2e::system::program("openssl", "openssl");
    let curl = corral_e2e::system::program("curl", "curl");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let made = std::process::Command::new(openssl)
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .args([
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-keyout",
        ])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .output()
        .expect("openssl");
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );

    // Off loopback without TLS: refused, unless `insecure` says so.
    let (code, out) = check("[http]\nlisten = \"0.0.0.0:7700\"\n[plugins.p]\ncmd = [\"x\"]\n");
    assert_ne!(code, Some(0));
    assert_refused(&out, &[("http.listen", "give `tls_cert` and `tls_key`")]);
    let (code, out) =
        check("[http]\nlisten = \"0.0.0.0:7700\"\ninsecure = true\n[plugins.p]\ncmd = [\"x\"]\n");
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = check("[http]\ntls_cert = \"nowhere.pem\"\n[plugins.p]\ncmd = [\"x\"]\n");
    assert_ne!(code, Some(0));
    assert_refused(&out, &[("http.tls_key", "needs its `tls_key`")]);

    let fleet = FleetConfig::new()
        .http("listen", "0.0.0.0:0")
        .http("tls_cert", cert.display().to_string())
        .http("tls_key", key.display().to_string())
        .plugin(Plugin::echo("echo"))
        .start();
    fleet.wait_running("echo");
    let runtime = fleet.dir().join(".corral");
    let url = wait_until(Duration::from_secs(10), "the face's URL", || {
        std::fs::read_to_string(runtime.join("http.url")).ok()
    });
    assert!(url.starts_with("https://0.0.0.0:"), "{url}");
    let port = url
        .trim()
        .trim_end_matches('/')
        .rsplit(':')
        .next()
        .expect("a port")
        .to_string();
    let token = std::fs::read_to_string(runtime.join("http.token")).expect("the token");
    let get = |path: &str, extra: &[&str]| {
        let out = std::process::Command::new(&curl)
            .args(["-s", "-i", "--max-time", "10", "--cacert"])
            .arg(&cert)
            .args(extra)
            .arg(format!("https://127.0.0.1:{port}/{path}"))
            .output()
            .expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = get(
        "api/plugins",
        &["-H", &format!("Authorization: Bearer {}", token.trim())],
    );
    assert!(listed.starts_with("HTTP/1.1 200"), "{listed}");
    assert!(listed.contains("\"name\":\"echo\""), "{listed}");
    assert!(get("api/plugins", &[]).starts_with("HTTP/1.1 401"));
    // The login URL works over TLS, and its cookie is Secure.
    let login = String::from_utf8_lossy(&fleet.corral(&["dashboard"]).stdout)
        .trim()
        .to_string();
    let code = login.rsplit("code=").next().expect("a code");
    let answer = get(&format!("login?code={code}"), &[]);
    assert!(answer.starts_with("HTTP/1.1 303"), "{answer}");
    assert!(answer.to_ascii_lowercase().contains("; secure"), "{answer}");
    // Plain HTTP on the TLS port gets nothing.
    let plain = std::process::Command::new(&curl)
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/api/plugins"),
        ])
        .output()
        .expect("curl");
    assert!(!String::from_utf8_lossy(&plain.stdout).contains("echo"));
}
