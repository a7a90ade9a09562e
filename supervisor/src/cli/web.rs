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

/// Prints a dashboard login URL: it holds a one-time code the face mints
/// for this token's bearer, good for one login within a minute (the token
/// itself never goes into a URL, a browser's history or a command line).
pub(super) async fn dashboard(target: &Target) -> Result<ExitCode, Error> {
    let url = face_file(target, "http.url")?;
    let token = face_file(target, "http.token")?;
    let refused = |e: &dyn std::fmt::Display| {
        Error::Refused(format!(
            "the HTTP face at {url} did not give a login code: {e}"
        ))
    };
    let client = reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|e| refused(&e))?;
    let answer = client
        .post(format!("{url}api/login"))
        .bearer_auth(&token)
        .send()
        .await
        .map_err(|e| refused(&e))?;
    let status = answer.status();
    let body = answer.text().await.map_err(|e| refused(&e))?;
    if !status.is_success() {
        return Err(refused(&format!("{status}: {}", body.trim())));
    }
    let path = serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["path"].as_str().map(str::to_string))
        .ok_or_else(|| refused(&"its answer holds no path"))?;
    println!("{}{}", url.trim_end_matches('/'), path);
    Ok(ExitCode::SUCCESS)
}
