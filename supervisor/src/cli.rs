//! The `corral` command line: argument parsing and what each command prints.
//!
//! Exit codes: 0 success, 1 failure (the message on stderr says what to do
//! next), 2 usage error. Data goes to stdout, as a table for people or as
//! JSON with `--json` for scripts.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Parser, Subcommand};
use corral_proto::{ControlApiClient, Payload, PluginInfo, PluginStatus, ReloadReport};

use crate::{Error, client, config};

/// corral: run plugins as isolated OS processes and manage the fleet.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Where client commands find the running supervisor.
#[derive(Debug, Clone, Args)]
pub struct Target {
    /// Fleet config whose runtime_dir holds the control socket [default: corral.toml].
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// The control socket itself (also CORRAL_SOCKET).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// Plugins named on the command line, or `--all`.
#[derive(Debug, Clone, Args)]
pub struct Selection {
    /// Where the running supervisor is.
    #[command(flatten)]
    pub target: Target,
    /// The plugins.
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub names: Vec<String>,
    /// Every plugin of the fleet.
    #[arg(long)]
    pub all: bool,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor and its fleet in the foreground.
    Up {
        /// The fleet config.
        #[arg(
            short = 'c',
            long = "config",
            value_name = "FILE",
            default_value = "corral.toml"
        )]
        config: PathBuf,
    },
    /// Validate a fleet config and its manifests.
    Check {
        /// The fleet config.
        #[arg(
            short = 'c',
            long = "config",
            value_name = "FILE",
            default_value = "corral.toml"
        )]
        config: PathBuf,
        /// Print the result as JSON (`{"ok": …, "plugins": […], "problems": […]}`).
        #[arg(long)]
        json: bool,
    },
    /// List plugins with their state, pid, restarts, uptime and memory.
    Ps {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Write a new plugin's folder (manifest, source, README, a test) that
    /// runs as generated, and print the lines that add it to a fleet.
    New {
        /// The plugin's name (also its folder's).
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: crate::scaffold::Lang,
        /// The folder to create the plugin's folder in.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The SDK to build on: a corral checkout's `plugin-sdk` (Rust) or
        /// `plugin-sdk/python` folder [default: found beside this corral].
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Call a plugin's action and print its JSON reply.
    Call {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// The plugin.
        name: String,
        /// The action.
        action: String,
        /// The payload, as JSON, or `-` to read it from stdin [default: null].
        payload: Option<String>,
    },
    /// Put an event on the bus (source `cli`).
    Publish {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// The topic, such as `sensor.kitchen.power`.
        topic: String,
        /// The payload, as JSON [default: null].
        payload: Option<String>,
        /// Keep it as the topic's last value for future subscribers.
        #[arg(long)]
        retain: bool,
    },
    /// Stream events from the bus until interrupted (lifecycle events included).
    Events {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// Topic patterns (`*` one segment, `>` the rest) [default: `>`].
        patterns: Vec<String>,
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Start plugins (also clears `failed` and the restart count).
    Start {
        /// Which plugins, on which supervisor.
        #[command(flatten)]
        selection: Selection,
    },
    /// Stop plugins; they stay stopped until started.
    Stop {
        /// Which plugins, on which supervisor.
        #[command(flatten)]
        selection: Selection,
    },
    /// Stop, then start plugins.
    Restart {
        /// Which plugins, on which supervisor.
        #[command(flatten)]
        selection: Selection,
    },
    /// Show a plugin's status, settings in force and last transitions.
    Inspect {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// The plugin.
        name: String,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Re-read the fleet config and apply only the difference.
    Reload {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a plugin's captured stdout and stderr.
    Logs {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// The plugin.
        name: String,
        /// Keep printing new lines, across rotations and restarts.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the last lines to print first.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: usize,
        /// One JSON object a line: time, stream, line.
        #[arg(long)]
        json: bool,
    },
    /// Stop every plugin gracefully, then the supervisor.
    Down {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
    },
}

/// Runs a client command (anything but `up`) and returns its exit code.
pub async fn run_client(command: Command) -> ExitCode {
    let result = match command {
        Command::Ps { target, json } => ps(&target, json).await,
        Command::Call {
            target,
            name,
            action,
            payload,
        } => call(&target, name, action, payload).await,
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
        } => events(&target, patterns, json).await,
        Command::Down { target } => down(&target).await,
        Command::Start { selection } => lifecycle(selection, "start").await,
        Command::Stop { selection } => lifecycle(selection, "stop").await,
        Command::Restart { selection } => lifecycle(selection, "restart").await,
        Command::Reload { target, json } => reload(&target, json).await,
        Command::Logs {
            target,
            name,
            follow,
            lines,
            json,
        } => logs(&target, &name, follow, lines, json).await,
        Command::Inspect { target, name, json } => inspect(&target, name, json).await,
        Command::Up { .. } | Command::Check { .. } | Command::New { .. } => unreachable_client(),
    };
    match result {
        Ok(code) => code,
        Err(e) => fail(&e.to_string()),
    }
}

fn unreachable_client() -> Result<ExitCode, Error> {
    Err(Error::Refused("not a client command".into()))
}

/// Prints `message` as an error and returns exit code 1.
pub fn fail(message: &str) -> ExitCode {
    eprintln!("corral: {message}");
    ExitCode::from(1)
}

/// Resolves the control socket: `--socket`, then `-c FILE`, then
/// `CORRAL_SOCKET`, then `corral.toml`.
fn socket_of(target: &Target) -> Result<(PathBuf, String), Error> {
    if let Some(path) = &target.socket {
        return Ok((path.clone(), "from --socket".into()));
    }
    let from_file = |file: &Path| -> Result<(PathBuf, String), Error> {
        let settings = config::load_supervisor_settings(file)?;
        Ok((
            settings.control_socket(),
            format!("the runtime_dir of {}", file.display()),
        ))
    };
    if let Some(file) = &target.config {
        return from_file(file);
    }
    if let Some(path) = std::env::var_os("CORRAL_SOCKET") {
        return Ok((PathBuf::from(path), "from CORRAL_SOCKET".into()));
    }
    from_file(Path::new("corral.toml"))
}

async fn connect(target: &Target) -> Result<ControlApiClient, Error> {
    let (socket, via) = socket_of(target)?;
    client::connect(&socket, &via).await
}

fn context(timeout: Duration) -> tarpc::context::Context {
    let mut ctx = tarpc::context::current();
    ctx.deadline = Instant::now() + timeout;
    ctx
}

async fn ps(target: &Target, json: bool) -> Result<ExitCode, Error> {
    let rows = connect(target)
        .await?
        .ps(context(Duration::from_secs(10)))
        .await?;
    Ok(print_data(rows.as_slice(), json, ps_table))
}

/// Prints `value` as pretty JSON, or as `human` formats it for people.
fn print_data<T: serde::Serialize + ?Sized>(
    value: &T,
    json: bool,
    human: impl FnOnce(&T) -> String,
) -> ExitCode {
    let text = if json {
        serde_json::to_string_pretty(value).unwrap_or_default() + "\n"
    } else {
        human(value)
    };
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}

/// Whether to colour output: stdout is a terminal and `NO_COLOR` is unset.
fn use_colour() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stdout())
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The ANSI colour a state is shown in.
fn state_colour(state: &str) -> &'static str {
    match state {
        "running" => "32",
        "failed" | "unhealthy" => "31",
        "waiting" | "starting" | "backoff" | "stopping" => "33",
        _ => "2",
    }
}

/// Formats status rows as an aligned table, colouring states on a terminal.
pub fn ps_table(rows: &[PluginStatus]) -> String {
    ps_table_styled(rows, use_colour())
}

fn ps_table_styled(rows: &[PluginStatus], colour: bool) -> String {
    let header = [
        "NAME",
        "STATE",
        "PID",
        "RESTARTS",
        "UPTIME",
        "MEMORY",
        "LAST EXIT",
    ]
    .map(String::from);
    let mut table = vec![header.to_vec()];
    for r in rows {
        let memory = match (r.rss_bytes, r.memory_max_bytes) {
            (0, None) => "-".to_string(),
            (rss, None) => human_bytes(rss),
            (0, Some(max)) => format!("- / {}", human_bytes(max)),
            (rss, Some(max)) => format!("{} / {}", human_bytes(rss), human_bytes(max)),
        };
        table.push(vec![
            r.name.clone(),
            r.state.to_string(),
            r.pid.map_or("-".into(), |p| p.to_string()),
            r.restarts.to_string(),
            if r.uptime_ms == 0 {
                "-".into()
            } else {
                human_uptime(r.uptime_ms)
            },
            memory,
            r.last_exit.as_ref().map_or("-".into(), ToString::to_string),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| {
            table
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut text = String::new();
    for row in table {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(c, (cell, w))| {
                let padded = format!("{cell:<w$}");
                if colour && c == 1 && cell != "STATE" {
                    format!("\x1b[{}m{padded}\x1b[0m", state_colour(cell))
                } else {
                    padded
                }
            })
            .collect();
        text.push_str(cells.join("  ").trim_end());
        text.push('\n');
    }
    text
}

fn human_bytes(n: u64) -> String {
    bytesize::ByteSize(n).display().iec_short().to_string()
}

fn human_uptime(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m{}s", s / 60, s % 60),
        _ => format!("{}h{}m", s / 3600, (s % 3600) / 60),
    }
}

/// A payload argument: JSON text, `null` when absent; `Err` is the exit
/// code after saying what is wrong.
/// The payload argument: JSON text, `-` for JSON read from stdin (for
/// payloads past the command line's size limit), or none for `null`.
fn payload_arg(payload: Option<String>) -> Result<Payload, ExitCode> {
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
            let line = if json {
                serde_json::json!({
                    "topic": event.topic,
                    "payload": payload,
                    "source": event.source,
                    "seq": event.seq,
                    "at_unix_us": event.at_unix_us,
                    "retained": event.retained,
                })
                .to_string()
            } else {
                format!("{} {} [{}] {payload}", event.seq, event.topic, event.source)
            };
            if writeln!(out, "{line}").and_then(|()| out.flush()).is_err() {
                return Ok(ExitCode::SUCCESS); // stdout closed: the reader is done
            }
        }
    }
}

async fn call(
    target: &Target,
    name: String,
    action: String,
    payload: Option<String>,
) -> Result<ExitCode, Error> {
    let payload = match payload_arg(payload) {
        Ok(p) => p,
        Err(code) => return Ok(code),
    };
    let client = connect(target).await?;
    match client
        .call(
            context(Duration::from_secs(3600)),
            name.clone(),
            action.clone(),
            payload,
        )
        .await?
    {
        Ok(reply) => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(reply.as_bytes());
            let _ = out.write_all(b"\n");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&format!(
            "{name} {action} failed: {}: {}",
            e.code, e.message
        ))),
    }
}

async fn lifecycle(selection: Selection, verb: &str) -> Result<ExitCode, Error> {
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
    let result = match verb {
        "start" => client.start(ctx, names.clone()).await?,
        "stop" => client.stop(ctx, names.clone()).await?,
        _ => client.restart(ctx, names.clone()).await?,
    };
    match result {
        Ok(()) => {
            println!("{verb}: {}", names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => Ok(fail(&format!("{verb} failed: {}: {}", e.code, e.message))),
    }
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

/// Formats `corral inspect` for people.
pub fn inspect_text(info: &PluginInfo) -> String {
    let mut text = ps_table(std::slice::from_ref(&info.status));
    if let Some(w) = &info.status.waiting_for {
        text.push_str(&format!("waiting for: {w}\n"));
    }
    if let Some(ms) = info.status.backoff_ms {
        text.push_str(&format!("next start in: {ms} ms\n"));
    }
    text.push_str("\nsettings:\n");
    if let Ok(serde_json::Value::Object(map)) = info.settings.to_json::<serde_json::Value>() {
        for (k, v) in map {
            text.push_str(&format!("  {k:<18} {v}\n"));
        }
    }
    text.push_str("\nhistory (oldest first):\n");
    for t in &info.history {
        let at = humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + Duration::from_millis(t.at_unix_ms),
        );
        let mut line = format!("  {at}  {:<9} -> {:<9}", t.from.as_str(), t.to.as_str());
        if let Some(pid) = t.pid {
            line.push_str(&format!("  pid {pid}"));
        }
        if let Some(r) = &t.reason {
            line.push_str(&format!("  {r}"));
        }
        if let Some(n) = &t.note {
            line.push_str(&format!("  ({n})"));
        }
        text.push_str(line.trim_end());
        text.push('\n');
    }
    text
}

/// Formats a reload report for people: one line per kind of change.
fn reload_text(report: &ReloadReport) -> String {
    let groups = [
        ("added", &report.added),
        ("removed", &report.removed),
        ("restarted", &report.restarted),
        ("reconfigured", &report.reconfigured),
        ("updated", &report.updated),
        ("unchanged", &report.unchanged),
    ];
    groups
        .iter()
        .filter(|(_, names)| !names.is_empty())
        .map(|(what, names)| format!("{what:<13} {}\n", names.join(", ")))
        .collect()
}

async fn reload(target: &Target, json: bool) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    match client.reload(context(Duration::from_secs(60))).await? {
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
    name: &str,
    follow: bool,
    lines: usize,
    json: bool,
) -> Result<ExitCode, Error> {
    let client = connect(target).await?;
    let info = match client
        .inspect(context(Duration::from_secs(10)), name.to_string())
        .await?
    {
        Ok(info) => info,
        Err(e) => return Ok(fail(&format!("logs failed: {}: {}", e.code, e.message))),
    };
    let settings: serde_json::Value = info.settings.to_json().unwrap_or_default();
    let Some(path) = settings["log_file"].as_str().map(PathBuf::from) else {
        return Ok(fail("the supervisor did not say where the log file is"));
    };
    drop(client);
    let format = if json {
        crate::tail::Format::Json
    } else {
        crate::tail::Format::Text
    };
    match crate::tail::print(&path, lines, follow, format) {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(e) => Ok(fail(&format!("cannot read {}: {e}", path.display()))),
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
            println!(
                "{}: ok, {} plugins ({})",
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
            ExitCode::from(1)
        }
    }
}

/// `corral new`: writes the plugin's folder and says how to run it.
pub fn new_plugin(
    name: &str,
    lang: crate::scaffold::Lang,
    dir: &Path,
    sdk: Option<&Path>,
) -> ExitCode {
    use crate::scaffold::Lang;
    let made = match crate::scaffold::new(name, lang, dir, sdk) {
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
            let manifest = crate::scaffold::shell_word(&made.dir.join("Cargo.toml"));
            println!(
                "build it: cargo build --manifest-path {manifest}\ntest it:  cargo test --manifest-path {manifest}"
            );
        }
        Lang::Python => {
            let folder = crate::scaffold::shell_word(&made.dir);
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
