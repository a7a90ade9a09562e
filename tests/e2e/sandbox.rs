//! Sandboxed plugins, enforced by the kernel: a plugin with a `sandbox`
//! opens only files beneath its read and write paths (Landlock), signals
//! only its own descendants (Landlock scoping), and with `network = "none"`
//! has no network at all (a namespace of its own), while its heartbeats,
//! calls and bus traffic go on; `ps` says how it is enforced; `check`
//! refuses paths that climb out and modes that do not exist.

use corral_e2e::{Fleet, FleetConfig, Plugin, assert_refused, check_with, repo_root, tempdir};
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
    std::os::unix::fs::symlink(&outside, dir.path().join("link")).expect("link");
    let linked = json!({"fs_read": [dir.path().join("link")]});
    // Reads its supervisor's open-file limit, which seccomp refuses (a
    // lower CPU limit would kill the supervisor), and its own, allowed.
    let limiter = "import os, resource, time\n\
        try:\n    resource.prlimit(os.getppid(), resource.RLIMIT_NOFILE)\n    print('other: allowed', flush=True)\n\
        except OSError as e:\n    print('other: errno', e.errno, flush=True)\n\
        print('self:', resource.prlimit(0, resource.RLIMIT_NOFILE)[0] > 0, flush=True)\n\
        time.sleep(300)\n";
    let mut fleet = FleetConfig::new()
        .plugin(
            Plugin::new("limiter")
                .cmd(["python3", "-c", limiter])
                .set("protocol", "none")
                .set("sandbox", json!({})),
        )
        .plugin(Plugin::echo("boxed").set("sandbox", sandbox))
        .plugin(Plugin::echo("linked").set("sandbox", linked))
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
        // Nor the host's secrets, nor the fleet file with every plugin's env.
        let shadow = std::path::Path::new("/etc/shadow");
        assert_eq!(read(shadow), Err("EACCES".into()), "{name}");
        assert_eq!(read(fleet.config()), Err("EACCES".into()), "{name}");
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
                && sandbox.ends_with("netns, seccomp"),
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

    fleet.wait_log("limiter", "self: True");
    let said = fleet.logs("limiter");
    assert!(said.contains("other: errno 1"), "{said}");
    assert!(
        fleet.ps_json_row("limiter")["sandbox"]
            .as_str()
            .is_some_and(|s| s.ends_with("seccomp"))
    );

    // A path that is a link is refused, naming where it leads.
    let linked = fleet.wait_state(
        "linked",
        corral_e2e::PluginState::Failed,
        std::time::Duration::from_secs(10),
    );
    let why = linked.last_exit.map(|r| r.to_string()).unwrap_or_default();
    assert!(why.contains("through a link"), "{why}");
    assert!(fleet.down().success());
    drop(listener);
}

#[test]
fn check_refuses_sandbox_paths_that_climb_out_and_unknown_modes() {
    let (code, err) = check_with(
        &[(
            "selfish/plugin.toml",
            "name = \"selfish\"\ncmd = [\"sleep\", \"9\"]\nsandbox = { fs_write = [\"/\"] }\n",
        )],
        r#"
[plugins.climber]
cmd = ["sleep", "9"]
sandbox = { fs_read = ["../../etc"] }
[plugins.loop]
cmd = ["sleep", "9"]
sandbox = { network = "host" }
[plugins.typo]
cmd = ["sleep", "9"]
sandbox = { fs_reed = ["/srv"] }
[plugins.probed]
cmd = ["sleep", "9"]
protocol = "none"
port = "auto"
execution_mode = "sandboxed"
health = { http = "http://127.0.0.1:${port}/" }
[plugins.worded]
cmd = ["sleep", "9"]
permissions = ["network_access", "root_access"]
[plugins.selfish]
path = "selfish"
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    assert_refused(
        &err,
        &[
            ("plugins.climber.sandbox.fs_read[0]", "climbs with `..`"),
            ("plugins.loop.sandbox.network", "loopback"),
            ("plugins.loop.sandbox.network", "host"),
            ("plugins.typo.sandbox.fs_reed", "did you mean `fs_read`?"),
            ("plugins.probed.health", "use an `exec` probe"),
            ("plugins.probed.port", "nothing outside can reach"),
            (
                "plugins.worded.permissions[1]",
                "`root_access` is not a permission",
            ),
            (
                "plugins.worded.permissions",
                "widens a sandbox, and this plugin has none",
            ),
            ("sandbox", "a plugin's manifest may not set its own sandbox"),
        ],
    );
    assert!(err.contains("selfish/plugin.toml: key `sandbox`"), "{err}");
}

#[test]
fn network_loopback_gives_a_plugin_its_own_loopback_and_nothing_of_the_hosts() {
    let host = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = host.local_addr().expect("address").port();
    let script = format!(
        "import socket, time\n\
         try:\n    srv = socket.socket(); srv.bind(('127.0.0.1', 0)); srv.listen(1)\n    \
         socket.create_connection(srv.getsockname(), timeout=2).close(); print('own: ok', flush=True)\n\
         except OSError as e:\n    print('own: errno', e.errno, flush=True)\n\
         try:\n    socket.create_connection(('127.0.0.1', {port}), timeout=2).close(); print('host: reached', flush=True)\n\
         except OSError as e:\n    print('host: errno', e.errno, flush=True)\n\
         time.sleep(300)\n"
    );
    let plain = |name: &str, network: &str| {
        Plugin::new(name)
            .cmd(["python3", "-c", script.as_str()])
            .set("protocol", "none")
            .set("sandbox", json!({ "network": network }))
    };
    let fleet = FleetConfig::new()
        .plugin(plain("lo", "loopback"))
        .plugin(plain("none", "none"))
        .start();
    fleet.wait_log("lo", "host: ");
    fleet.wait_log("none", "host: ");
    let (lo, none) = (fleet.logs("lo"), fleet.logs("none"));
    assert!(lo.contains("own: ok"), "{lo}");
    assert!(
        !lo.contains("host: reached") && lo.contains("host: errno"),
        "{lo}"
    );
    // Without even `lo` up, there is no 127.0.0.1 to bind.
    assert!(
        none.contains("own: errno") && none.contains("host: errno"),
        "{none}"
    );
    let row = fleet.ps_json_row("lo");
    assert!(
        row["sandbox"]
            .as_str()
            .unwrap_or_default()
            .contains("netns (lo)"),
        "{row}"
    );
    drop(host);
}

#[test]
fn execution_mode_sandboxed_keeps_a_data_dir_and_permission_words_widen_it() {
    let host = std::net::TcpListener::bind("127.0.0.1:0").expect("a listener");
    let port = host.local_addr().expect("address").port();
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("boxed").set("execution_mode", "sandboxed"))
        .plugin(
            Plugin::echo("online")
                .set("execution_mode", "sandboxed")
                .set("permissions", json!(["network_access"])),
        )
        .start();
    fleet.wait_running("boxed");
    fleet.wait_running("online");
    let data = fleet.dir().join(".corral/data/boxed");
    let note = data.join("note");
    let write = json!({"path": note, "text": "kept"});
    assert_eq!(
        probe(&fleet, "boxed", "write", write),
        Ok(json!({"written": 4}))
    );
    // Its program's folder is readable, not writable; the network is gone.
    let bin = corral_e2e::bin("echo-plugin");
    let beside = bin.with_file_name("corral-note");
    let write = json!({"path": beside, "text": "x"});
    assert_eq!(probe(&fleet, "boxed", "write", write), Err("EACCES".into()));
    let connect = json!({"host": "127.0.0.1", "port": port});
    assert!(probe(&fleet, "boxed", "connect", connect.clone()).is_err());
    assert_eq!(
        probe(&fleet, "online", "connect", connect),
        Ok(json!({"connected": true}))
    );
    let (boxed, online) = (fleet.ps_json_row("boxed"), fleet.ps_json_row("online"));
    assert!(
        boxed["sandbox"]
            .as_str()
            .unwrap_or_default()
            .contains("netns"),
        "{boxed}"
    );
    assert!(
        !online["sandbox"]
            .as_str()
            .unwrap_or_default()
            .contains("netns"),
        "{online}"
    );
    // The data dir outlives a restart; the temp dir does not matter here.
    fleet.control().restart(&["boxed"]).expect("restart");
    fleet.wait_running("boxed");
    assert_eq!(
        probe(&fleet, "boxed", "read", json!({"path": note})),
        Ok(json!({"bytes": 4}))
    );
    drop(host);
}

/// The real uid of process `pid`.
fn uid_of(pid: u32) -> u32 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("a uid")
}

#[test]
fn plugins_run_as_their_own_users_and_reach_only_their_own_sockets() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    assert!(
        nix::unistd::geteuid().is_root(),
        "running plugins as other users needs the tests to run as root (README, Quick start)"
    );
    // The runtime dir must be passable (o+x) for plugins of other users.
    let runtime = tempdir();
    std::fs::set_permissions(runtime.path(), std::fs::Permissions::from_mode(0o711))
        .expect("chmod");
    let run = runtime.path().join("run").display().to_string();
    let fleet = FleetConfig::new()
        .plugin(Plugin::echo("dyn-a").set("user", "dynamic"))
        .plugin(
            Plugin::echo("dyn-b")
                .set("user", "dynamic")
                .set("execution_mode", "sandboxed"),
        )
        .plugin(
            Plugin::echo("nob")
                .set("user", "nobody")
                .set("group", "nogroup"),
        )
        .plugin(Plugin::echo("own"))
        .plugin(
            Plugin::new("ld")
                .cmd([
                    "sh",
                    "-c",
                    "echo \"LD=$LD_LIBRARY_PATH uid=$(id -u)\"; exec sleep 300",
                ])
                .set("protocol", "none")
                .set("user", "dynamic")
                .set("env", json!({"LD_LIBRARY_PATH": "/nowhere"})),
        )
        .start_with_env(&[("CORRAL_SUPERVISOR__RUNTIME_DIR", run.as_str())]);
    let pids: Vec<u32> = ["dyn-a", "dyn-b", "nob", "own"]
        .iter()
        .map(|n| fleet.wait_running(n))
        .collect();
    let uids: Vec<u32> = pids.iter().map(|p| uid_of(*p)).collect();
    assert!(
        (61184..=65519).contains(&uids[0]) && (61184..=65519).contains(&uids[1]),
        "{uids:?}"
    );
    assert_ne!(uids[0], uids[1], "two dynamic plugins share a uid");
    let nobody = nix::unistd::User::from_name("nobody")
        .expect("passwd")
        .expect("nobody")
        .uid
        .as_raw();
    assert_eq!(uids[2], nobody);
    assert_eq!(uids[3], nix::unistd::geteuid().as_raw());
    for name in ["dyn-a", "dyn-b", "nob"] {
        assert_eq!(
            fleet.call(name, "ping", None).unwrap()["pong"],
            json!(true),
            "{name}"
        );
    }
    // Its private dirs are its user's alone (its socket was too, until it
    // connected: the peer check took its uid and no other).
    let tmp = std::fs::metadata(runtime.path().join("run/tmp/dyn-b")).expect("its temp dir");
    assert_eq!((tmp.uid(), tmp.mode() & 0o777), (uids[1], 0o700));
    // Users apart: no signal from one plugin to another, sandbox or not.
    let signal = probe(
        &fleet,
        "dyn-a",
        "signal",
        json!({"pid": pids[1], "signal": 0}),
    );
    assert_eq!(signal, Err("EPERM".into()));
    let note = runtime.path().join("run/data/dyn-b/note");
    assert_eq!(
        probe(
            &fleet,
            "dyn-b",
            "write",
            json!({"path": note, "text": "mine"})
        ),
        Ok(json!({"written": 4}))
    );
    assert_eq!(std::fs::metadata(&note).expect("note").uid(), uids[1]);
}

#[test]
fn check_refuses_unknown_users_and_a_manifest_choosing_its_user_or_trust() {
    let (code, err) = check_with(
        &[(
            "selfish/plugin.toml",
            "name = \"selfish\"\ncmd = [\"sleep\", \"9\"]\nuser = \"root\"\nexecution_mode = \"trusted\"\n",
        )],
        r#"
[plugins.ghost]
cmd = ["sleep", "9"]
user = "no-such-user-here"
[plugins.grouped]
cmd = ["sleep", "9"]
group = "nogroup"
[plugins.sneaky]
cmd = ["sleep", "9"]
env = { CORRAL_EXEC_CGROUPS = "/etc/passwd", CORRAL_SHIM_USER = "0:0" }
[plugins.selfish]
path = "selfish"
"#,
    );
    assert_eq!(code, Some(1), "{err}");
    assert_refused(
        &err,
        &[
            ("plugins.ghost.user", "no user named `no-such-user-here`"),
            ("plugins.grouped.group", "needs a user"),
            ("plugins.sneaky.env.CORRAL_EXEC_CGROUPS", "is corral's own"),
            ("plugins.sneaky.env.CORRAL_SHIM_USER", "is corral's own"),
            ("user", "a plugin's manifest may not choose its own user"),
            ("execution_mode", "a plugin's manifest may not trust itself"),
        ],
    );
}
