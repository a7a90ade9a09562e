//! Only the spawned plugin, with this spawn's secret, in time, gets in.

use std::time::Duration;

use corral_e2e::{ExitReason, FleetConfig, Plugin, PluginState, process_gone};

#[test]
fn wrong_secret_and_silence_are_killed_as_handshake_failures() {
    let fleet = FleetConfig::new()
        .plugin(Plugin::rogue("liar", "wrong-secret").restart("never"))
        .plugin(
            Plugin::new("mute")
                .cmd(["sleep", "30"])
                .set("handshake_timeout", "500ms")
                .restart("never"),
        )
        .plugin(Plugin::echo("echo"))
        .start();
    let liar = fleet.wait_state("liar", PluginState::Exited, Duration::from_secs(10));
    assert!(
        matches!(&liar.last_exit, Some(ExitReason::Handshake { detail }) if detail.contains("wrong secret")),
        "{liar:?}"
    );
    assert!(
        fleet.log().contains("handshake failed: wrong secret"),
        "{}",
        fleet.log()
    );

    let mute = fleet.wait_state("mute", PluginState::Exited, Duration::from_secs(5));
    assert!(
        matches!(&mute.last_exit, Some(ExitReason::Handshake { detail }) if detail.contains("500ms")),
        "{mute:?}"
    );

    fleet.wait_running("echo");
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}

#[test]
fn a_stranger_on_the_plugin_socket_is_refused_without_harming_the_plugin() {
    let fleet = FleetConfig::new().plugin(Plugin::echo("echo")).start();
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
    let fleet = FleetConfig::new()
        .plugin(Plugin::rogue("old", "old-version").restart("never"))
        .start();
    let row = fleet.wait_state("old", PluginState::Exited, Duration::from_secs(10));
    let Some(ExitReason::Handshake { detail }) = &row.last_exit else {
        panic!("not a handshake exit: {row:?}");
    };
    assert!(
        detail.contains("999") && detail.contains("version 1"),
        "{detail}"
    );
}

#[test]
fn a_version_range_is_welcomed_in_the_newest_common_version_and_a_disjoint_one_refused_naming_both()
{
    let fleet = FleetConfig::new()
        .plugin(Plugin::rogue("wide", "wide-range"))
        .plugin(Plugin::rogue("future", "future-range").restart("never"))
        .start();
    fleet.wait_running("wide");
    fleet.wait_log(
        "wide",
        "Plugin hello answered: {'Welcome': {'protocol_version': 1, 'features': ['bus_in_load']}}",
    );
    let row = fleet.wait_state("future", PluginState::Exited, Duration::from_secs(10));
    let Some(ExitReason::Handshake { detail }) = &row.last_exit else {
        panic!("not a handshake exit: {row:?}");
    };
    assert!(
        detail.contains("the plugin speaks versions 5 to 7, this corral speaks version 1"),
        "{detail}"
    );
}
