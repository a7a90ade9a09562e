//! Only the spawned plugin, with this spawn's secret, in time, gets in.

use std::time::Duration;

use corral_e2e::{Fleet, echo_cmd, fixture, process_gone};

#[test]
fn wrong_secret_and_silence_are_killed_as_handshake_failures() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.liar]
cmd = ["python3", {rogue:?}, "wrong-secret"]
codec = "json"
restart = "never"
[plugins.mute]
cmd = ["sleep", "30"]
handshake_timeout = "500ms"
restart = "never"
[plugins.echo]
cmd = {echo}
"#,
        rogue = fixture("rogue.py").display().to_string(),
        echo = echo_cmd(),
    ));
    let liar = fleet.wait_row("liar", Duration::from_secs(10), "exited", |r| {
        r["state"] == "exited"
    });
    assert_eq!(liar["last_exit"]["reason"], "handshake", "{liar}");
    assert!(
        liar["last_exit"]["detail"]
            .as_str()
            .unwrap()
            .contains("wrong secret"),
        "{liar}"
    );
    assert!(
        fleet.log().contains("handshake failed: wrong secret"),
        "{}",
        fleet.log()
    );

    let mute = fleet.wait_row("mute", Duration::from_secs(5), "exited", |r| {
        r["state"] == "exited"
    });
    assert_eq!(mute["last_exit"]["reason"], "handshake", "{mute}");
    assert!(
        mute["last_exit"]["detail"]
            .as_str()
            .unwrap()
            .contains("500ms"),
        "{mute}"
    );

    fleet.wait_running("echo");
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}

#[test]
fn a_stranger_on_the_plugin_socket_is_refused_without_harming_the_plugin() {
    let fleet = Fleet::start(&format!("[plugins.echo]\ncmd = {}\n", echo_cmd()));
    let pid = fleet.wait_running("echo");
    // The plugin socket is gone once the plugin is connected; the control
    // socket refuses a plugin hello. Either way a stranger gets nothing.
    let plugin_socket = fleet.dir().join(".corral/plugin-echo.sock");
    assert!(
        !plugin_socket.exists(),
        "plugin socket stays open after the handshake"
    );
    let meta = std::fs::metadata(fleet.socket()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let rt = std::fs::metadata(fleet.dir().join(".corral")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&rt.permissions()) & 0o777,
        0o700
    );
    assert!(!process_gone(pid));
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pid"], pid);
}

#[test]
fn a_protocol_version_mismatch_names_both_versions() {
    let fleet = Fleet::start(&format!(
        "[plugins.old]\ncmd = [\"python3\", {:?}, \"old-version\"]\ncodec = \"json\"\nrestart = \"never\"\n",
        fixture("rogue.py").display().to_string()
    ));
    let row = fleet.wait_row("old", Duration::from_secs(10), "exited", |r| {
        r["state"] == "exited"
    });
    let detail = row["last_exit"]["detail"].as_str().unwrap();
    assert_eq!(row["last_exit"]["reason"], "handshake");
    assert!(
        detail.contains("999") && detail.contains("version 1"),
        "{detail}"
    );
}
