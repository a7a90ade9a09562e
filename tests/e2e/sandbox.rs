//! Sandboxed plugins, enforced by the kernel: a plugin with a `sandbox`
//! opens only files beneath its read and write paths (Landlock), signals
//! only its own descendants (Landlock scoping), and with `network = "none"`
//! has no network at all (a namespace of its own), while its heartbeats,
//! calls and bus traffic go on; `ps` says how it is enforced; `check`
//! refuses paths that climb out and modes that do not exist.

use corral_e2e::{Fleet, FleetConfig, Plugin, assert_refused, check, repo_root, tempdir};
use serde_json::{Value, json};

/// The error code a refused probe answers, or its reply.
fn probe(fleet: &Fleet, name: &str, action: &str, payload: Value) -> Result<Value, String> {
    fleet
        .control()
        .call(name, action, &payload)
        .map_err(|e| e.code)
}

#[test]
fn a_sandboxed_plugin_reads_writes_connects_and_signals_only_where_allowed() {
    let dir = tempdir();
    let (inside, outside, writable) = (
        dir.path().join("in"),
        dir.path().join("out"),
        dir.path().join("rw"),
    );
    for d in [&inside, &outside, &writable] {
        std::fs::create_dir(d).expect("mkdir");
    }
    std::fs::write(inside.join("data.txt"), "hello").expect("data");
    std::fs::write(outside.join("secret.txt"), "secret").expect("secret");
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = listener.local_addr().expect("address").port();
    let sandbox = json!({"fs_read": [inside], "fs_write": [writable], "network": "none"});
    let sdk = repo_root().join("plugin-sdk/python");
    let py_sandbox = json!({"fs_read": [inside, sdk], "network": "none"});
    let mut fleet = FleetConfig::new()
        .plugin(Plugin::echo("boxed").set("sandbox", sandbox))
        .plugin(Plugin::echo_py("boxed-py").set("sandbox", py_sandbox))
        .plugin(Plugin::echo("free").subscribe(["boxed.>"]))
        .start();
    let boxed = fleet.wait_running("boxed");
    let free = fleet.wait_running("free");
    fleet.wait_running("boxed-py");

    for name in ["boxed", "boxed-py"] {
        let read = |p: &std::path::Path| probe(&fleet, name, "read", json!({"path": p}));
        assert_eq!(
            read(&inside.join("data.txt")),
            Ok(json!({"bytes": 5})),
            "{name}"
        );
        assert_eq!(
            read(&outside.join("secret.txt")),
            Err("EACCES".into()),
            "{name}"
        );
        let connect = probe(
            &fleet,
            name,
            "connect",
            json!({"host": "127.0.0.1", "port": port}),
        );
        assert!(
            connect.is_err(),
            "{name} reached the host's network: {connect:?}"
        );
        let signal = probe(&fleet, name, "signal", json!({"pid": free, "signal": 0}));
        assert_eq!(
            signal,
            Err("EPERM".into()),
            "{name} may signal another plugin"
        );
        let row = fleet.ps_json_row(name);
        let sandbox = row["sandbox"].as_str().unwrap_or_default();
        assert!(
            sandbox.starts_with("landlock v")
                && sandbox.contains("signals")
                && sandbox.ends_with("netns"),
            "{row}"
        );
    }
    let write =
        |p: std::path::PathBuf| probe(&fleet, "boxed", "write", json!({"path": p, "text": "hi"}));
    assert_eq!(write(writable.join("note")), Ok(json!({"written": 2})));
    assert_eq!(write(inside.join("note")), Err("EACCES".into()));
    assert_eq!(write(outside.join("note")), Err("EACCES".into()));

    // Without a sandbox, the same plugin may do all of it.
    assert_eq!(
        probe(
            &fleet,
            "free",
            "connect",
            json!({"host": "127.0.0.1", "port": port})
        ),
        Ok(json!({"connected": true}))
    );
    assert_eq!(
        probe(&fleet, "free", "signal", json!({"pid": boxed, "signal": 0})),
        Ok(json!({"signalled": boxed}))
    );
    assert_eq!(fleet.ps_json_row("free")["sandbox"], "none");

    // Its calls, heartbeats and bus go on.
    let published = probe(
        &fleet,
        "boxed",
        "publish",
        json!({"topic": "boxed.x", "count": 3}),
    );
    assert_eq!(published, Ok(json!({"published": 3})));
    fleet.wait_received(
        "free",
        std::time::Duration::from_secs(10),
        "3 events",
        |r| r["count"] == 3,
    );
    assert_eq!(fleet.row("boxed").restarts, 0);
    assert!(fleet.down().success());
    drop(listener);
}

#[test]
fn check_refuses_sandbox_paths_that_climb_out_and_unknown_modes() {
    let (code, err) = check(
        r#"
[plugins.climber]
cmd = ["sleep", "9"]
sandbox = { fs_read = ["../../etc"] }
[plugins.loop]
cmd = ["sleep", "9"]
sandbox = { network = "loopback" }
[plugins.typo]
cmd = ["sleep", "9"]
sandbox = { fs_reed = ["/srv"] }
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    assert_refused(
        &err,
        &[
            ("plugins.climber.sandbox.fs_read[0]", "climbs with `..`"),
            ("plugins.loop.sandbox.network", "loopback"),
            ("plugins.typo.sandbox.fs_reed", "did you mean `fs_read`?"),
        ],
    );
}
