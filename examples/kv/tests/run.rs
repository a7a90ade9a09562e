//! The `kv` binary outside corral: it says how it is meant to run and
//! exits 1 (under corral, `tests/e2e/calls.rs` drives it through `api`).

#[test]
fn outside_corral_it_says_how_to_run_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_kv-plugin"))
        .env_clear()
        .output()
        .expect("run kv-plugin");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("corral plugin:") && err.contains("CORRAL_"),
        "{err}"
    );
}
