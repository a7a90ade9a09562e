//! A plugin that breaks the wire protocol is dropped, and costs the
//! supervisor nothing.

use std::time::Duration;

use corral_e2e::{Fleet, echo_cmd, fixture, rss_kib};

#[test]
fn an_oversized_frame_drops_the_plugin_without_growing_the_supervisor() {
    let fleet = Fleet::start(&format!(
        r#"
[plugins.echo]
cmd = {echo}
[plugins.rogue]
cmd = ["python3", {rogue:?}, "oversize"]
codec = "json"
"#,
        rogue = fixture("rogue.py").display().to_string(),
        echo = echo_cmd(),
    ));
    fleet.wait_running("echo");
    let before = rss_kib(fleet.supervisor_pid());
    let row = fleet.wait_row(
        "rogue",
        Duration::from_secs(10),
        "dropped for protocol",
        |r| r["last_exit"]["reason"] == "protocol",
    );
    assert!(
        row["last_exit"]["detail"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{row}"
    );
    let after = rss_kib(fleet.supervisor_pid());
    // The frame claimed 2 GiB; the supervisor must not have reserved it.
    assert!(
        after < before + 16 * 1024,
        "supervisor RSS grew from {before} KiB to {after} KiB"
    );
    assert_eq!(fleet.call("echo", "ping", None).unwrap()["pong"], true);
}
