//! What each client command does: find the control socket, call the
//! supervisor, print the answer (through [`render`](super::render) for people).
//! `check` and `new` work on files and need no supervisor.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use corral_proto::{ControlApiClient, PluginState, Transition};

use super::args::{Command, Selection, Target, Wait};
use super::reach::{connect, context, fail, payload_arg};
use super::render::{inspect_text, print_data, ps_table, reload_text};
use crate::{Error, config};

/// Runs a client command (anything but `up`, `check`, `new`,
/// `completions` and `man`) and returns its exit code.
pub async fn run_client(command: Command) -> ExitCode {
    let command = match super::nats::run(command).await {
        Ok(result) => return result.unwrap_or_else(|e| fail(&e.to_string())),
        Err(command) => command,
    };
    match command {
        Command::Top { target, interval } => crate::cli::top::run(&target, interval)
            .await
            .unwrap_or_else(|e| fail(&e.to_string())),
        command => run_control(command).await,
    }
}

/// Runs a command of the control socket (those
/// [`runs_in_front`](super::front::runs_in_front) accepts) and returns its
/// exit code. It links neither NATS nor the terminal UI, so the small
/// `corral` binary can run it.
pub async fn run_control(command: Command) -> ExitCode {
    let result = match command {
        Command::Ps { target, json, .. } => ps(&target, json).await,
        Command::Call {
            target,
            name,
            action,
            payload,
            stream,
            list,
            ..
        } => super::call::run(&target, name, action, payload, (stream, list)).await,
        Command::Publish {
            target,
            topic,
            payload,
            retain,
        } => publish(&target, topic, payload, retain).await,
        Command::Events {
            target,
            patterns,
            json,
            ..
        } => events(&target, patterns, json).await,
        Command::Down { target } => down(&target).await,
        Command::Start { selection, wait } => lifecycle(selection, "start", Some(wait)).await,
        Command::Stop { selection } => lifecycle(selection, "stop", None).await,
        Command::Restart { selection, wait } => lifecycle(selection, "restart", Some(wait)).await,
        Command::Reload { target, json } => reload(&target, json).await,
        Command::Logs {
            target,
            names,
            follow,
            lines,
            json,
        } => logs(&target, names, follow, lines, json).await,
        Command::Inspect { target, name, json } => inspect(&target, name, json).await,
        Command::HttpToken { target } => super::web::token(&target),
        Command::Dashboard { target } => super::web::dashboard(&target),
        Command::Up { .. }
        | Command::Top { .. }
        | Command::Check { .. }
        | Command::New { .. }
        | Command::Completions { .. }
        | Command::Man => unreachable_client(),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&e.to_string()),
    }
}

fn unreachable_client() -> Result<ExitCode, Error> {
    Err(Error::Refused("not a client command".into()))
}

async fn ps(target: &Target, json: bool) -> Result<ExitCode, Error> {
    let rows = connect(target)
        .await?
        .ps(context(Duration::from_secs(10)))
        .await?;
    Ok(print_data(rows.as_slice(), json, ps_table))
}

async fn publish(
    target: &Target,
    topic: String,
    payload: Option<String>,
    retain: bool,
) -> Result<ExitCode, Error> {
    let payload = match payload_arg(payload) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = connect(target).await?;
    match client
        .publish(
            context(Duration::from_secs(60)),
            topic.clone(),
            payload,
            retain,
        )
        .await?
    {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(fail(&format!(
            "publish on {topic} failed: {}: {}",
            e.code, e.message
        ))),
    }
}

async fn events(target: &Target, patterns: Vec<String>, json: bool) -> Result<ExitCode, Error> {
    let patterns = if patterns.is_empty() {
        vec![">".to_string()]
    } else {
        patterns
    };
    let client = connect(target).await?;
    let id = match client
        .events_open(context(Duration::from_secs(60)), patterns)
        .await?
    {
        Ok(id) => id,
        Err(e) => return Ok(fail(&format!("events: {}: {}", e.code, e.message))),
    };
    loop {
        let batch = match client
            .events_next(context(Duration::from_secs(60)), id)
            .await?
        {
            Ok(batch) => batch,
            Err(e) => return Ok(fail(&format!("events: {}: {}", e.code, e.message))),
        };
        let mut out = std::io::stdout().lock();
        for event in batch {
            let payload: serde_json::Value = event.payload.to_json().unwrap_or_default();
            // The stream fell behind its bound and lost its oldest events.
            let lost = (event.seq == 0 && event.source == "corral")
                .then(|| payload["dropped"].as_u64())
                .flatten();
            if let Some(n) = lost {
                eprintln!("# dropped {n} events");
                if !json {
                    continue;
                }
            }
            let line = if json {
                event.to_json_line().to_string()
            } else {
                let kept = if event.retained { " (retained)" } else { "" };
                let line = format!(
                    "{} {} [{}]{kept} {payload}",
                    event.seq, event.topic, event.source
                );
                crate::os::logs::visible_line(&line).into_owned()
            };
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(ExitCode::SUCCESS); // stdout closed: the reader is done
            }
        }
    }
}

async fn lifecycle(
    selection: Selection,
    verb: &str,
    wait: Option<Wait>,
) -> Result<ExitCode, Error> {
    let Selection { target, names, all } = selection;
    let target = &target;
    let client = connect(target).await?;
    let names = if all {
        client
            .ps(context(Duration::from_secs(10)))
            .await?
            .into_iter()
            .map(|r| r.name)
            .collect()
    } else {
        names
    };
    let ctx = context(Duration::from_secs(3600));
    let since_ms = Transition::now_unix_ms();
    let result = match verb {
        "start" => client.start(ctx, names.clone()).await?,
        "stop" => client.stop(ctx, names.clone()).await?,
        _ => client.restart(ctx, names.clone()).await?,
    };
    if let Err(e) = result {
        return Ok(fail(&format!("{verb} failed: {}: {}", e.code, e.message)));
    }
    if let Some(wait) = wait.filter(|w| !w.no_wait)
        && let Err(why) = until_running(&client, &names, since_ms, wait.timeout).await?
    {
        return Ok(fail(&format!("{verb}: {why}")));
    }
    println!("{verb}: {}", names.join(", "));
    Ok(ExitCode::SUCCESS)
}

/// Waits until every plugin of `names` runs, or has run since `since_ms`
/// (one that crashes at once still started); `Err` names a plugin that
/// failed or stopped, with its last exit reason, or those still not
/// running after `timeout`.
/// The plugins `names` select: each itself, or all of its instances (a
/// name that selects nothing is kept, for the error that follows).
async fn selected(client: &ControlApiClient, names: &[String]) -> Result<Vec<String>, Error> {
    let rows = client.ps(context(Duration::from_secs(10))).await?;
    Ok(names
        .iter()
        .flat_map(|n| {
            let of: Vec<String> = rows
                .iter()
                .filter(|r| corral_proto::selects(n, &r.name))
                .map(|r| r.name.clone())
                .collect();
            if of.is_empty() { vec![n.clone()] } else { of }
        })
        .collect())
}

async fn until_running(
    client: &ControlApiClient,
    names: &[String],
    since_ms: u64,
    timeout: Duration,
) -> Result<Result<(), String>, Error> {
    let deadline = Instant::now() + timeout;
    let mut pending = selected(client, names).await?;
    loop {
        let rows = client.ps(context(Duration::from_secs(10))).await?;
        let mut still = Vec::new();
        for name in pending {
            let Some(row) = rows.iter().find(|r| r.name == name) else {
                return Ok(Err(format!("no plugin named `{name}`")));
            };
            if row.state == PluginState::Running || ran_since(client, &name, since_ms).await? {
                continue;
            }
            if matches!(
                row.state,
                PluginState::Failed | PluginState::Exited | PluginState::Stopped
            ) {
                let reason = row
                    .last_exit
                    .as_ref()
                    .map_or("none".into(), ToString::to_string);
                return Ok(Err(format!(
                    "`{name}` is {} (last exit: {reason}); see `corral logs {name}`",
                    row.state
                )));
            }
            still.push(name);
        }
        if still.is_empty() {
            return Ok(Ok(()));
        }
        if Instant::now() >= deadline {
            return Ok(Err(format!(
                "not running after {}: {}",
                humantime::format_duration(timeout),
                still.join(", ")
            )));
        }
        pending = still;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Whether `name`'s history shows it entered `running` since `since_ms`.
async fn ran_since(client: &ControlApiClient, name: &str, since_ms: u64) -> Result<bool, Error> {
    let info = client
        .inspect(context(Duration::from_secs(10)), name.to_string())
        .await?;
    Ok(info.is_ok_and(|i| {
        i.history
            .iter()
            .any(|t| t.to == PluginState::Running && t.at_unix_ms >= since_ms)
    }))
}

async fn inspect(target: &Target, name: String, json: bool) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    let info = match client
        .inspect(context(Duration::from_secs(10)), name.clone())
        .await?
    {
        Ok(info) => info,
        Err(e) => return Ok(fail(&format!("inspect failed: {}: {}", e.code, e.message))),
    };
    Ok(print_data(&info, json, inspect_text))
}

async fn reload(target: &Target, json: bool) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    // The supervisor bounds the hooks (`call_timeout`) and the restarts.
    match client.reload(context(Duration::from_secs(3600))).await? {
        Ok(report) => {
            if !json {
                for key in &report.needs_restart {
                    eprintln!(
                        "warning: {key} changed; it takes effect when `corral up` starts again"
                    );
                }
            }
            Ok(print_data(&report, json, reload_text))
        }
        Err(e) => Ok(fail(&format!("reload: {}", e.message))),
    }
}

async fn logs(
    target: &Target,
    names: Vec<String>,
    follow: bool,
    lines: usize,
    json: bool,
) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    let names = if names.is_empty() {
        let all: Vec<String> = client
            .ps(context(Duration::from_secs(10)))
            .await?
            .into_iter()
            .map(|row| row.name)
            .collect();
        if all.is_empty() {
            return Ok(fail("the fleet has no plugins"));
        }
        all
    } else {
        selected(&client, &names).await?
    };
    let mut sources = Vec::with_capacity(names.len());
    for name in names {
        let info = match client
            .inspect(context(Duration::from_secs(10)), name.clone())
            .await?
        {
            Ok(info) => info,
            Err(e) => return Ok(fail(&format!("logs failed: {}: {}", e.code, e.message))),
        };
        let settings: serde_json::Value = info.settings.to_json().unwrap_or_default();
        let Some(path) = settings["log_file"].as_str().map(PathBuf::from) else {
            return Ok(fail(&format!(
                "the supervisor did not say where the log file of {name} is"
            )));
        };
        sources.push(crate::cli::tail::Source { name, path });
    }
    let format = if json {
        crate::cli::tail::Format::Json
    } else {
        crate::cli::tail::Format::Text
    };
    // Following ends when the supervisor no longer answers.
    let first = sources[0].name.clone();
    let alive = async || {
        client
            .inspect(context(Duration::from_secs(5)), first.clone())
            .await
            .is_ok()
    };
    match crate::cli::tail::print(&sources, lines, format, follow.then_some(alive)).await {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(fail(&format!("cannot read the logs: {e}"))),
    }
}

async fn down(target: &Target) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    client.down(context(Duration::from_secs(3600))).await?;
    println!("every plugin is stopped; the supervisor is exiting");
    Ok(ExitCode::SUCCESS)
}

/// `corral check`: validates the config and reports on each plugin.
pub fn check(file: &Path, json: bool) -> ExitCode {
    if json {
        let (ok, plugins, problems) = match config::load(file) {
            Ok(fleet) => (
                true,
                fleet.plugins.into_iter().map(|p| p.name).collect(),
                Vec::new(),
            ),
            Err(e) => (
                false,
                Vec::new(),
                e.problems
                    .iter()
                    .map(
                        |p| serde_json::json!({"file": p.file, "key": p.key, "message": p.message}),
                    )
                    .collect(),
            ),
        };
        let report = serde_json::json!({"ok": ok, "plugins": plugins, "problems": problems});
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
        return if ok {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        };
    }
    match config::load(file) {
        Ok(fleet) => {
            for p in &fleet.plugins {
                let program = Path::new(&p.cmd[0]);
                if program.components().count() > 1 && !program.is_file() {
                    eprintln!(
                        "warning: {}: plugin `{}`: program {} does not exist (yet?); it will fail with reason `spawn`",
                        file.display(),
                        p.name,
                        program.display()
                    );
                }
            }
            let names: Vec<&str> = fleet.plugins.iter().map(|p| p.name.as_str()).collect();
            let plural = if names.len() == 1 { "" } else { "s" };
            println!(
                "{}: ok, {} plugin{plural} ({})",
                file.display(),
                names.len(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            for p in &e.problems {
                eprintln!("error: {p}");
            }
            let n = e.problems.len();
            let plural = if n == 1 { "" } else { "s" };
            eprintln!("{}: {n} problem{plural}", file.display());
            ExitCode::from(1)
        }
    }
}

/// `corral new`: writes the plugin's folder and says how to run it.
pub fn new_plugin(
    name: &str,
    lang: crate::cli::scaffold::Lang,
    dir: &Path,
    sdk: Option<&Path>,
) -> ExitCode {
    use crate::cli::scaffold::Lang;
    let made = match crate::cli::scaffold::new(name, lang, dir, sdk) {
        Ok(made) => made,
        Err(e) => return fail(&e.to_string()),
    };
    let folder = made.dir.display();
    println!(
        "created {name} ({}) in {folder}: {}",
        if lang == Lang::Rust { "Rust" } else { "Python" },
        made.files.join(", ")
    );
    match lang {
        Lang::Rust => {
            let manifest = crate::cli::scaffold::shell_word(&made.dir.join("Cargo.toml"));
            println!(
                "build it: cargo build --manifest-path {manifest}\ntest it:  cargo test --manifest-path {manifest}"
            );
        }
        Lang::Python => {
            let folder = crate::cli::scaffold::shell_word(&made.dir);
            println!("test it:  cd {folder} && python3 -m unittest");
            if made.sdk.is_none() {
                println!(
                    "note: corral's Python SDK was not found; install it with pip install <corral checkout>/plugin-sdk/python"
                );
            }
        }
    }
    println!(
        "\nadd it to your fleet's corral.toml:\n\n{}\nthen: corral up, and corral call {name} ping",
        made.fleet_lines
    );
    ExitCode::SUCCESS
}
