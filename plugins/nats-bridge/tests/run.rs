//! The `nats-bridge` binary outside corral: it says how it is meant to run
//! and exits 1 (under corral, `tests/e2e/nats.rs` drives it between three
//! supervisors and a real nats-server).

#[test]
fn outside_corral_it_says_how_to_run_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nats-bridge"))
        .env_clear()
        .output()
        .expect("run nats-bridge");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corral plugin:") && err.contains("CORRAL_"),
        "{err}"
    );
}
