//! `corral http-token` and `corral dashboard`: what a browser or a script
//! needs to reach the fleet's HTTP face, read from the runtime dir beside
//! the control socket (its files are this user's alone).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::args::Target;
use super::client;
use crate::Error;

/// The runtime dir's file `name`, trimmed, or why the face is not there.
fn face_file(target: &Target, name: &str) -> Result<String, Error> {
    let (socket, via) = client::socket_of(target)?;
    let dir: PathBuf = socket.parent().map_or_else(PathBuf::new, Path::to_path_buf);
    let path = dir.join(name);
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(text.trim().to_string()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::Refused(format!(
            "no HTTP face is serving for the fleet at {} ({via}): it needs an `[http]` table in the fleet file, then `corral up` again",
            socket.display()
        ))),
        Err(e) => Err(Error::Refused(format!(
            "cannot read {}: {e}",
            path.display()
        ))),
    }
}

/// Prints the HTTP face's token, for `Authorization: Bearer TOKEN`.
pub(super) fn token(target: &Target) -> Result<ExitCode, Error> {
    println!("{}", face_file(target, "http.token")?);
    Ok(ExitCode::SUCCESS)
}

/// Prints a dashboard login URL: it holds a one-time code, left for the
/// face in the runtime dir's login folder and good for one login within a
/// minute (the token itself never goes into a URL, a browser's history or
/// a command line).
pub(super) fn dashboard(target: &Target) -> Result<ExitCode, Error> {
    let url = face_file(target, "http.url")?;
    let (socket, _) = client::socket_of(target)?;
    let logins = socket.with_file_name("http.logins");
    let code = crate::os::spawn::new_secret().map_err(Error::io("cannot make a login code"))?;
    let path = logins.join(&code);
    crate::os::runtime_dir::write_private(&path, b"login code for corral dashboard\n").map_err(
        Error::io(format!("cannot leave a login code in {}", logins.display())),
    )?;
    println!("{}/login?code={code}", url.trim_end_matches('/'));
    Ok(ExitCode::SUCCESS)
}
