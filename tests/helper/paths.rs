//! Where things are: the workspace's binaries, the repository, its test
//! fixtures, and short temp dirs (socket paths have a length limit). It
//! starts nothing; [`crate::fleet`] does.

use std::path::{Path, PathBuf};

/// The directory cargo put the workspace's binaries in.
pub fn target_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    exe.parent()
        .and_then(Path::parent)
        .expect("test binary lives in target/<profile>/deps")
        .to_path_buf()
}

/// Path of a workspace binary, checked to exist.
pub fn bin(name: &str) -> PathBuf {
    let path = target_dir().join(name);
    assert!(
        path.is_file(),
        "{} is missing: run the tests with `cargo test --workspace`, which builds it",
        path.display()
    );
    path
}

/// The repository's root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is inside the repo")
        .to_path_buf()
}

/// A test fixture file under tests/fixtures.
pub fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures").join(name)
}

/// The echo plugin's `cmd` as a TOML array literal, for settings given as
/// text outside a fleet file (a `CORRAL_PLUGINS__…__CMD` override).
pub fn echo_cmd() -> String {
    toml::Value::Array(vec![bin("echo-plugin").display().to_string().into()]).to_string()
}

/// A temp dir with a short path, so socket paths stay under the OS limit.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("corral-")
        .tempdir_in("/tmp")
        .expect("temp dir")
}
