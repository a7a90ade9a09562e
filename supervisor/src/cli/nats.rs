//! `--nats URL` on `ps`, `call` and `events`: the same commands across the
//! fleets that `nats-bridge` plugins join, through NATS instead of a
//! control socket. The subjects are proto's ([`corral_proto::nats`]);
//! output and `--json` shapes are the local commands', with each row or
//! event's `node` added.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use async_nats::Client;
use corral_proto::nats as subject;
use corral_proto::{ErrorReply, PluginStatus};
use futures::StreamExt;
use serde_json::Value;

use super::args::{Command, Remote};
use super::reach::{fail, payload_arg};
use super::render::{print_data, ps_table_of_nodes};
use crate::Error;

/// Runs `command` through NATS if it says `--nats`; gives it back if not.
pub(super) async fn run(command: Command) -> Result<Result<ExitCode, Error>, Command> {
    match command {
        Command::Ps {
            remote:
                ref remote @ Remote {
                    nats: Some(ref url),
                    ..
                },
            json,
            ..
        } => Ok(ps(remote, url, json).await),
        Command::Call {
            remote:
                ref remote @ Remote {
                    nats: Some(ref url),
                    ..
                },
            ref name,
            ref action,
            ref payload,
            stream,
            list,
            ..
        } => Ok(match (action, stream || list) {
            (Some(action), false) => {
                call(remote, url, (name.clone(), action.clone(), payload.clone())).await
            }
            _ => Ok(fail(
                "`call --nats` takes an action and neither --stream nor --list",
            )),
        }),
        Command::Events {
            remote:
                ref remote @ Remote {
                    nats: Some(ref url),
                    ..
                },
            ref patterns,
            json,
            ..
        } => Ok(events(remote, url, patterns.clone(), json).await),
        other => Err(other),
    }
}

/// How long `ps --nats` gathers the nodes' answers.
const GATHER: Duration = Duration::from_millis(1500);
/// The longest a remote call may take from here.
const CALL_TIMEOUT: Duration = Duration::from_secs(60);

async fn connect(url: &str) -> Result<Client, Error> {
    async_nats::ConnectOptions::new()
        .name("corral cli")
        .connection_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .map_err(|e| Error::Refused(format!("cannot reach NATS at {url}: {e}")))
}

/// A node's answer to `ps`.
#[derive(serde::Deserialize)]
struct NodeRows {
    node: String,
    #[serde(default)]
    plugins: Vec<PluginStatus>,
    #[serde(default)]
    error: Option<ErrorReply>,
}

/// `corral ps --nats URL [--node N]`.
async fn ps(remote: &Remote, url: &str, json: bool) -> Result<ExitCode, Error> {
    let client = connect(url).await?;
    let prefix = &remote.nats_prefix;
    let mut answers = Vec::new();
    if let Some(node) = &remote.node {
        let reply = tokio::time::timeout(
            GATHER * 2,
            client.request(subject::ps(prefix, node), "".into()),
        )
        .await
        .map_err(|_| Error::Refused(format!("node `{node}` did not answer (no bridge there?)")))?
        .map_err(|e| Error::Refused(format!("node `{node}`: {e}")))?;
        answers.push(reply.payload);
    } else {
        let inbox = client.new_inbox();
        let mut replies = client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| Error::Refused(format!("NATS: {e}")))?;
        client
            .publish_with_reply(subject::ps_all(prefix), inbox, "".into())
            .await
            .map_err(|e| Error::Refused(format!("NATS: {e}")))?;
        let deadline = tokio::time::Instant::now() + GATHER;
        while let Ok(Some(m)) = tokio::time::timeout_at(deadline, replies.next()).await {
            answers.push(m.payload);
        }
    }
    let mut by_node: BTreeMap<String, Vec<PluginStatus>> = BTreeMap::new();
    for answer in answers {
        let Ok(rows) = serde_json::from_slice::<NodeRows>(&answer) else {
            eprintln!("corral: an answer that is not a node's rows was left out");
            continue;
        };
        if let Some(e) = rows.error {
            eprintln!("corral: node {}: {}: {}", rows.node, e.code, e.message);
        }
        by_node.entry(rows.node).or_default().extend(rows.plugins);
    }
    if by_node.is_empty() {
        return Ok(fail("no node answered (is a nats-bridge running on any?)"));
    }
    if by_node.values().all(Vec::is_empty) {
        return Ok(fail("no node gave its plugins (see above)"));
    }
    let rows: Vec<(String, PluginStatus)> = by_node
        .into_iter()
        .flat_map(|(node, rows)| rows.into_iter().map(move |r| (node.clone(), r)))
        .collect();
    if json {
        let value: Vec<Value> = rows
            .iter()
            .map(|(node, row)| {
                let mut v = serde_json::to_value(row).unwrap_or_default();
                v["node"] = Value::String(node.clone());
                v
            })
            .collect();
        return Ok(print_data(&value, true, |_| String::new()));
    }
    Ok(print_data(rows.as_slice(), false, ps_table_of_nodes))
}

/// `corral call --nats URL --node N PLUGIN ACTION [PAYLOAD]`.
async fn call(
    remote: &Remote,
    url: &str,
    (name, action, payload): (String, String, Option<String>),
) -> Result<ExitCode, Error> {
    let Some(node) = &remote.node else {
        return Ok(fail(
            "`call --nats` needs `--node NODE`: the node the plugin runs on",
        ));
    };
    let payload = match payload_arg(payload) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = connect(url).await?;
    let request = client.request(
        subject::call(&remote.nats_prefix, node, &name, &action),
        payload.into_bytes().into(),
    );
    let reply = tokio::time::timeout(CALL_TIMEOUT, request)
        .await
        .map_err(|_| Error::Refused(format!("{name} {action} on {node}: no answer")))?
        .map_err(|e| Error::Refused(format!("{name} {action} on {node}: {e}")))?;
    let answer: Value = serde_json::from_slice(&reply.payload).unwrap_or_default();
    if let Some(e) = answer.get("error") {
        let e: ErrorReply = serde_json::from_value(e.clone())
            .unwrap_or_else(|_| ErrorReply::new("internal", e.to_string()));
        return Ok(fail(&format!(
            "{name} {action} failed: {}: {}",
            e.code, e.message
        )));
    }
    let value = answer.get("ok").cloned().unwrap_or(Value::Null);
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{value}");
    Ok(ExitCode::SUCCESS)
}

/// `corral events --nats URL [--node N] [PATTERN…]`.
async fn events(
    remote: &Remote,
    url: &str,
    patterns: Vec<String>,
    json: bool,
) -> Result<ExitCode, Error> {
    let client = connect(url).await?;
    let prefix = &remote.nats_prefix;
    let node = remote.node.as_deref().unwrap_or("*");
    let patterns = if patterns.is_empty() {
        vec![">".to_string()]
    } else {
        patterns
    };
    let mut subscriptions = Vec::new();
    for p in &patterns {
        corral_proto::event::check_pattern(p)
            .map_err(|e| Error::Refused(format!("pattern `{p}`: {e}")))?;
        let sub = client
            .subscribe(subject::event(prefix, node, p))
            .await
            .map_err(|e| Error::Refused(format!("NATS: {e}")))?;
        subscriptions.push(sub);
    }
    let mut messages = futures::stream::select_all(subscriptions);
    while let Some(m) = messages.next().await {
        // Requests (calls, status asks) share the subjects: not events.
        if m.reply.is_some() {
            continue;
        }
        let Some((node, topic)) = subject::parse_event(prefix, m.subject.as_str()) else {
            continue;
        };
        let header = |name: &str| {
            m.headers
                .as_ref()
                .and_then(|h| h.get(name))
                .map(|v| v.as_str().to_string())
        };
        let seq: u64 = header(subject::SEQ)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let at: u64 = header(subject::TIME)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let source = header(subject::SOURCE).unwrap_or_default();
        let payload: Value = serde_json::from_slice(&m.payload).unwrap_or(Value::Null);
        let line = if json {
            serde_json::json!({
                "node": node, "topic": topic, "payload": payload, "source": source,
                "seq": seq, "at_unix_us": at, "retained": false,
            })
            .to_string()
        } else {
            let line = format!("{seq} {topic} [{node}:{source}] {payload}");
            crate::os::logs::visible_line(&line).into_owned()
        };
        let mut out = std::io::stdout().lock();
        if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
            return Ok(ExitCode::SUCCESS);
        }
    }
    Ok(fail("the NATS connection closed"))
}
