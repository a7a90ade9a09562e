//! `corral call`: one reply, a streamed one (`--stream`, a JSON line per
//! chunk as it arrives, then the final value), or the plugin's declared
//! actions (`--list`).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use corral_proto::{ControlApiClient, ErrorReply, Payload};

use super::args::Target;
use super::reach::{connect, context, fail, payload_arg};
use crate::Error;

/// Runs `corral call NAME [ACTION [PAYLOAD]] [--stream | --list]`.
pub(super) async fn run(
    target: &Target,
    name: String,
    action: Option<String>,
    payload: Option<String>,
    (stream, list): (bool, bool),
) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    let Some(action) = action.filter(|_| !list) else {
        return actions(&client, &name).await;
    };
    let payload = match payload_arg(payload) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let failed = |e: ErrorReply| {
        fail(&format!(
            "{name} {action} failed: {}: {}",
            e.code, e.message
        ))
    };
    if stream {
        return streamed(&client, &name, &action, payload)
            .await
            .map(|r| r.unwrap_or_else(failed));
    }
    let reply = client
        .call(
            context(Duration::from_secs(3600)),
            name.clone(),
            action.clone(),
            payload,
        )
        .await?;
    Ok(match reply {
        Ok(reply) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(reply.as_bytes());
            let _ = out.write_all(b"\n");
            ExitCode::SUCCESS
        }
        Err(e) => failed(e),
    })
}

/// Prints a streamed reply as it comes: each chunk on a line, then the
/// final value. Stops (closing the stream) when stdout goes away.
async fn streamed(
    client: &ControlApiClient,
    name: &str,
    action: &str,
    payload: Payload,
) -> Result<Result<ExitCode, ErrorReply>, Error> {
    let long = || context(Duration::from_secs(3600));
    let id = match client
        .call_stream(long(), name.into(), action.into(), payload)
        .await?
    {
        Ok(id) => id,
        Err(e) => return Ok(Err(e)),
    };
    let mut out = std::io::stdout().lock();
    loop {
        let part = match client.stream_next(long(), id).await? {
            Ok(part) => part,
            Err(e) => return Ok(Err(e)),
        };
        let last = part.end.as_ref().and_then(|end| end.as_ref().ok());
        let mut lines = part.chunks.iter().chain(last);
        let written = lines
            .try_for_each(|line| {
                out.write_all(line.as_bytes())
                    .and_then(|()| out.write_all(b"\n"))
            })
            .and_then(|()| out.flush());
        if written.is_err() {
            // The reader went away (`| head`): stop the producer.
            let _ = client
                .stream_close(context(Duration::from_secs(5)), id)
                .await;
            return Ok(Ok(ExitCode::SUCCESS));
        }
        match part.end {
            Some(Ok(_)) => return Ok(Ok(ExitCode::SUCCESS)),
            Some(Err(e)) => return Ok(Err(e)),
            None => {}
        }
    }
}

/// Prints the actions `name`'s manifest declares, one per line with what
/// each does.
async fn actions(client: &ControlApiClient, name: &str) -> Result<ExitCode, Error> {
    let info = match client
        .inspect(context(Duration::from_secs(10)), name.into())
        .await?
    {
        Ok(info) => info,
        Err(e) => return Ok(fail(&format!("{}: {}", e.code, e.message))),
    };
    if info.actions.is_empty() {
        eprintln!(
            "corral: `{name}` declares no actions (its manifest's `actions = [\"get\", …]` lists them); call one by name"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let width = info.actions.iter().map(|a| a.name.len()).max().unwrap_or(0);
    let mut out = std::io::stdout().lock();
    for action in &info.actions {
        let line = format!(
            "{:width$}  {}",
            action.name,
            crate::os::logs::visible_text(&action.description)
        );
        let _ = writeln!(out, "{}", line.trim_end());
    }
    Ok(ExitCode::SUCCESS)
}
