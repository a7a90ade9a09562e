//! What every client command shares: reaching the supervisor (`connect`,
//! a call `context`), the payload argument, and how a failure is printed.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use corral_proto::{ControlApiClient, Payload};

use super::args::Target;
use super::client;
use crate::Error;

/// Prints `message` as an error (control characters shown as escapes: it
/// may carry a plugin's text; the `corral:` prefix red when stderr is
/// coloured) and returns exit code 1.
pub fn fail(message: &str) -> ExitCode {
    let red = anstyle::AnsiColor::Red.on_default();
    let prefix = super::colour::paint("corral:", red, super::colour::stderr());
    eprintln!("{prefix} {}", crate::os::logs::visible_text(message));
    ExitCode::from(1)
}

/// Connects to the supervisor `target` names.
pub(super) async fn connect(target: &Target) -> Result<ControlApiClient, Error> {
    let (socket, via) = client::socket_of(target)?;
    client::connect(&socket, &via).await
}

/// A call context with `timeout`.
pub(super) fn context(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

/// The payload argument: JSON text, `-` for JSON read from stdin (for
/// payloads past the command line's size limit), or none for `null`.
pub(super) fn payload_arg(payload: Option<String>) -> Result<Payload, ExitCode> {
    let text = match payload.as_deref() {
        None => return Ok(Payload::null()),
        Some("-") => {
            let mut text = Vec::new();
            if let Err(e) = std::io::Read::read_to_end(&mut std::io::stdin(), &mut text) {
                eprintln!("corral: cannot read the payload from stdin: {e}");
                return Err(ExitCode::from(2));
            }
            text
        }
        Some(text) => text.as_bytes().to_vec(),
    };
    Payload::from_json_bytes(text).map_err(|e| {
        eprintln!("corral: the payload is not valid JSON: {e}");
        ExitCode::from(2)
    })
}
