//! The plugin binary run by hand, outside corral, must say what it is and
//! exit non-zero instead of hanging or panicking.

use std::process::Command;

#[test]
fn run_outside_corral_explains_itself() {
    let out = Command::new(env!("CARGO_BIN_EXE_echo-plugin"))
        .env_clear()
        .output()
        .expect("run echo-plugin");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("CORRAL_"), "{stderr}");
    assert!(stderr.contains("corral up"), "{stderr}");
}
