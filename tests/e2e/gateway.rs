//! The HTTP face's gateway to plugins' own routes, with real processes: the
//! Python example `api` serves routes and a WebSocket over RPC (its SDK's
//! decorators), the Rust example `kv` routes through the Rust SDK's router, a plain program (tests/fixtures/web_server.py) serves its
//! own port behind the reverse proxy, WebSocket echo through both; the
//! face's credentials never reach a plugin; a plugin that is down is 503
//! with its state, one past its `call_timeout` 504, one that answers
//! garbage 502 naming it; bad mounts are refused by `check`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use corral_e2e::{
    FleetConfig, Plugin, PluginState, Web, assert_refused, check, fixture, repo_root, wait_until,
};
use serde_json::{Value, json};

fn example(name: &str) -> String {
    repo_root()
        .join("examples")
        .join(name)
        .display()
        .to_string()
}

/// The example trio (kv, words, and api with its routes at /items).
fn api_plugins() -> Vec<Plugin> {
    vec![
        Plugin::new("kv")
            .path(example("kv"))
            .cmd([corral_e2e::bin("kv-plugin").display().to_string()])
            .set("http", json!({"prefix": "/kv"})),
        Plugin::new("words").path(example("words")),
        Plugin::new("api")
            .path(example("api"))
            .set("calls", ["kv:get", "kv:set", "words:words"])
            .set("http", json!({"prefix": "/items"})),
    ]
}

/// The plain web server, mounted at /shop (it serves /shop/… itself).
fn shop() -> Plugin {
    Plugin::new("shop")
        .cmd([
            "python3".to_string(),
            fixture("web_server.py").display().to_string(),
        ])
        .set("protocol", "none")
        .set("port", "auto")
        .set("http", json!({"prefix": "/shop", "mount": "/shop"}))
        .set(
            "health",
            json!({"tcp": "127.0.0.1:${port}", "interval": "100ms", "start_period": "20s"}),
        )
        .set("ready", "health")
}

fn face(plugins: Vec<Plugin>) -> (corral_e2e::Fleet, Web) {
    let fleet = FleetConfig::new()
        .http("listen", "127.0.0.1:0")
        .plugins(plugins)
        .start();
    let web = Web::of(&fleet.dir().join(".corral"));
    (fleet, web)
}

/// A WebSocket to `path` on the face, with the token.
fn websocket(web: &Web, path: &str) -> tungstenite::WebSocket<std::net::TcpStream> {
    let addr = web.url.trim_start_matches("http://").trim_end_matches('/');
    let stream = std::net::TcpStream::connect(addr).expect("a connection");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    let request = tungstenite::handshake::client::Request::builder()
        .uri(format!("ws://{addr}{path}"))
        .header("host", addr)
        .header("authorization", format!("Bearer {}", web.token))
        .header("connection", "Upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header(
            "sec-websocket-key",
            tungstenite::handshake::client::generate_key(),
        )
        .body(())
        .expect("a request");
    let (socket, answer) = tungstenite::client(request, stream).expect("a WebSocket");
    assert_eq!(answer.status(), 101);
    socket
}

/// `GET path` written on a socket as it is; the answer's text.
fn raw_get(web: &Web, path: &str) -> String {
    use std::io::{Read, Write};
    let addr = web.url.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = std::net::TcpStream::connect(addr).expect("a connection");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("a timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        web.token
    )
    .expect("written");
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer
}

fn exchange(socket: &mut tungstenite::WebSocket<std::net::TcpStream>, text: &str) -> String {
    socket.send(tungstenite::Message::text(text)).expect("sent");
    loop {
        match socket.read().expect("a message") {
            tungstenite::Message::Text(t) => return t.to_string(),
            tungstenite::Message::Ping(_) | tungstenite::Message::Pong(_) => {}
            other => panic!("not a text message: {other:?}"),
        }
    }
}

#[test]
fn routes_over_rpc_and_a_proxied_server_are_reached_through_the_gateway() {
    let mut plugins = api_plugins();
    plugins.push(shop().set("instances", 2));
    let (fleet, web) = face(plugins);
    for name in ["kv", "words", "api", "shop.0", "shop.1"] {
        fleet.wait_running(name);
    }
    // Without the token, no plugin's route answers.
    for path in ["plugins/api/items/apple", "shop/hello"] {
        assert_eq!(
            web.bare("GET", path).send().expect("an answer").status(),
            401,
            "{path}"
        );
    }

    // Routes over RPC: the Python SDK's decorators answer.
    let put = web
        .request("PUT", "plugins/api/items/apple")
        .body(r#"{"colour": "red"}"#)
        .send()
        .expect("an answer");
    assert_eq!(put.status(), 201);
    let got = web.get("plugins/api/items/apple");
    assert_eq!(got.status(), 200);
    assert!(
        got.headers()["content-security-policy"]
            .to_str()
            .expect("text")
            .starts_with("sandbox")
    );
    let got: Value = got.json().expect("JSON");
    assert_eq!(got, json!({"key": "apple", "value": {"colour": "red"}}));
    assert_eq!(web.get("plugins/api/items/pear").status(), 404);
    let wrong = web
        .request("DELETE", "plugins/api/items/apple")
        .send()
        .expect("an answer");
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "GET, PUT");
    // The Rust SDK's router type answers alike (kv's routes).
    let put = web
        .request("PUT", "plugins/kv/kv/pear")
        .body(r#"{"n": 2}"#)
        .send();
    assert_eq!(put.expect("an answer").status(), 201);
    let got: Value = web.get("plugins/kv/kv/pear").json().expect("JSON");
    assert_eq!(got, json!({"key": "pear", "value": {"n": 2}}));
    assert_eq!(web.get("plugins/kv/kv/plum").status(), 404);
    let wrong = web
        .request("POST", "plugins/kv/kv/pear")
        .send()
        .expect("an answer");
    assert_eq!(
        (
            wrong.status().as_u16(),
            wrong.headers()["allow"].to_str().ok()
        ),
        (405, Some("GET, PUT"))
    );

    // A streamed Rust route: every pair, a chunk each.
    let mut keys = Vec::new();
    web.sse(
        web.request("GET", "plugins/kv/kv")
            .header("accept", "text/event-stream"),
        Duration::from_secs(10),
        |event, data| {
            match event {
                "chunk" => {
                    keys.push(serde_json::from_str::<Value>(data).expect("JSON")["key"].clone())
                }
                "end" => return Some(()),
                other => panic!("event {other}: {data}"),
            }
            None
        },
    );
    assert!(keys.contains(&json!("pear")), "{keys:?}");

    // What the plugin sees: its own path and query, no credentials of the face.
    let session = web.session();
    let seen: Value = web
        .request("GET", "plugins/api/items/echo/a/b?x=1&x=2")
        .header("cookie", format!("theme=dark; {session}"))
        .send()
        .expect("an answer")
        .json()
        .expect("JSON");
    assert_eq!(seen["path"], "/items/echo/a/b");
    assert_eq!(seen["params"], json!({"rest": "a/b"}));
    assert_eq!(seen["query"], json!({"x": ["1", "2"]}));
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert_eq!(seen["headers"]["cookie"], "theme=dark", "{seen}");

    // A streamed route: Server-Sent Events, or lines of a chunked body.
    let mut chunks = Vec::new();
    web.sse(
        web.request("GET", "plugins/api/items/words?text=one%20two%20three")
            .header("accept", "text/event-stream"),
        Duration::from_secs(10),
        |event, data| {
            match event {
                "chunk" => {
                    chunks.push(serde_json::from_str::<Value>(data).expect("JSON")["word"].clone())
                }
                "end" => return Some(()),
                other => panic!("event {other}: {data}"),
            }
            None
        },
    );
    assert_eq!(chunks, [json!("one"), json!("two"), json!("three")]);
    let lines = web
        .get("plugins/api/items/words?text=a%20b")
        .text()
        .expect("text");
    let words: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).expect("a JSON line")["word"].clone())
        .collect();
    assert_eq!(words, [json!("a"), json!("b")]);

    // The proxied server, round robin over its running instances.
    let mut pids = HashSet::new();
    for _ in 0..6 {
        let hello = web.get("shop/hello");
        assert_eq!(hello.status(), 200);
        assert!(
            hello.headers()["content-security-policy"]
                .to_str()
                .expect("text")
                .starts_with("sandbox")
        );
        pids.insert(hello.text().expect("text"));
    }
    assert_eq!(pids.len(), 2, "both instances answered: {pids:?}");
    let seen: Value = web
        .request("GET", "shop/what?q=1")
        .header("cookie", &session)
        .send()
        .expect("an answer")
        .json()
        .expect("JSON");
    assert_eq!(seen["path"], "/shop/what?q=1");
    assert!(seen["headers"].get("authorization").is_none(), "{seen}");
    assert!(seen["headers"].get("cookie").is_none(), "{seen}");
    assert!(
        seen["headers"]["x-forwarded-host"].as_str().is_some(),
        "{seen}"
    );
    // Only the gateway's requests carry the spawn's secret: a server can tell
    // them from a local user who reaches its port directly, or forges it.
    let forged = web
        .request("GET", "shop/guarded")
        .header("x-corral-gateway", "forged")
        .send()
        .expect("an answer");
    assert_eq!(forged.status(), 200, "the gateway replaces a client's own");
    let port = fleet.row("shop.0").port.expect("a port");
    let direct = reqwest::blocking::get(format!("http://127.0.0.1:{port}/shop/guarded"));
    assert_eq!(direct.expect("an answer").status(), 403);
    let posted = web.post("shop/echo", &json!({"n": 1}));
    assert_eq!(posted.json::<Value>().expect("JSON"), json!({"n": 1}));

    // WebSocket echo through both.
    let mut proxied = websocket(&web, "/shop/ws");
    assert_eq!(exchange(&mut proxied, "hello"), "hello");
    assert_eq!(exchange(&mut proxied, "again"), "again");
    let mut rpc = websocket(&web, "/plugins/api/items/live");
    assert_eq!(exchange(&mut rpc, "plain text"), "plain text");
    let value: Value =
        serde_json::from_str(&exchange(&mut rpc, r#"{"key": "apple"}"#)).expect("JSON");
    assert_eq!(value, json!({"key": "apple", "value": {"colour": "red"}}));
    assert_eq!(exchange(&mut rpc, r#"{"n": [1, 2]}"#), r#"{"n":[1,2]}"#);
    // And through the Rust SDK's WebSocket handler.
    let mut rust = websocket(&web, "/plugins/kv/kv/live");
    let value: Value =
        serde_json::from_str(&exchange(&mut rust, r#"{"key": "pear"}"#)).expect("JSON");
    assert_eq!(value, json!({"key": "pear", "value": {"n": 2}}));

    // Paths that read as a way out of a mount never reach a plugin.
    // (Sent as written: an HTTP client library would resolve the dots.)
    for path in [
        "/plugins/api/items/%2e%2e/x",
        "/plugins/api/items/../../api/plugins",
    ] {
        let answer = raw_get(&web, path);
        assert!(answer.starts_with("HTTP/1.1 400"), "{path}: {answer}");
    }
    assert_eq!(web.get("plugins/nobody/x").status(), 404);
}

#[test]
fn a_plugin_that_is_down_is_503_one_too_slow_504_and_garbage_502() {
    let shop = shop()
        .set("call_timeout", "1s")
        .set("backoff", json!({"initial": "30s"}));
    let garbage = Plugin::new("garbage")
        .cmd([
            "python3".to_string(),
            fixture("routes_garbage.py").display().to_string(),
        ])
        .codec("json")
        .set(
            "env",
            json!({"PYTHONPATH": repo_root().join("plugin-sdk/python")}),
        )
        .set("http", json!({}));
    let echo = Plugin::echo("echo").set("http", json!({"prefix": "/x"}));
    let (fleet, web) = face(vec![shop, garbage, echo]);
    for name in ["shop", "garbage", "echo"] {
        fleet.wait_running(name);
    }
    // Slower than its call_timeout: 504, and other routes answer meanwhile.
    let slow = std::thread::spawn({
        let web = web.clone();
        move || {
            let began = Instant::now();
            let answer = web.get("shop/slow");
            (answer.status().as_u16(), began.elapsed())
        }
    });
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    assert_eq!(web.get("shop/hello").status(), 200);
    assert!(
        began.elapsed() < Duration::from_millis(900),
        "a slow upstream held up another request"
    );
    let (status, took) = slow.join().expect("the slow request");
    assert_eq!(status, 504);
    assert!(took < Duration::from_secs(3), "504 after {took:?}");

    // Garbage over RPC is a 502 naming the plugin; so is a plugin with no routes.
    let bad = web.get("plugins/garbage/anything");
    assert_eq!(bad.status(), 502);
    assert!(bad.text().expect("text").contains("`garbage`"));
    let none = web.get("plugins/echo/x/y");
    assert_eq!(none.status(), 502);
    assert!(
        none.text()
            .expect("text")
            .contains("`echo` serves no routes")
    );

    // Killed twice, it waits out its backoff: 503 with its state, then back.
    for round in 0..2 {
        let pid = fleet.wait_running("shop");
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid")),
            nix::sys::signal::Signal::SIGKILL,
        )
        .expect("killed");
        if round == 0 {
            fleet.wait_row("shop", Duration::from_secs(10), "a new process", |r| {
                r.state == PluginState::Running && r.pid != Some(pid)
            });
        }
    }
    fleet.wait_state("shop", PluginState::Backoff, Duration::from_secs(10));
    let down = web.get("shop/hello");
    assert_eq!(down.status(), 503);
    assert_eq!(down.headers()["retry-after"], "1");
    let body: Value = down.json().expect("JSON");
    assert_eq!(body["state"], "backoff", "{body}");
    assert_eq!(body["plugin"], "shop");
    // Started again by hand, it answers again.
    assert!(fleet.corral(&["start", "shop"]).status.success());
    let back = wait_until(Duration::from_secs(20), "shop answering again", || {
        Some(web.get("shop/hello")).filter(|a| a.status() == 200)
    });
    assert!(back.text().expect("text").starts_with("hello from"));
}

#[test]
fn check_refuses_mounts_that_climb_collide_or_cover_the_faces_own_paths() {
    let (code, out) = check(
        r#"
[http]
listen = "127.0.0.1:0"
[plugins.a]
cmd = ["x"]
http = { prefix = "/../api" }
[plugins.b]
cmd = ["x"]
http = { mount = "/api/b" }
[plugins.c]
cmd = ["x"]
http = { mount = "/shop" }
[plugins.d]
cmd = ["x"]
http = { mount = "/shop/d" }
[plugins.e]
cmd = ["x"]
protocol = "none"
http = { prefix = "/e" }
"#,
    );
    assert_ne!(code, Some(0), "{out}");
    assert_refused(
        &out,
        &[
            ("plugins.a.http.prefix", "segment `..`"),
            ("plugins.b.http", "over the HTTP face's own `/api`"),
            ("plugins.d.http", "overlaps `c`'s `/shop`"),
            ("plugins.e.http", "give it one"),
        ],
    );
}
