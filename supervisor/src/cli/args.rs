//! The command line's grammar: every command, argument and flag, as clap
//! definitions, and `CORRAL_LOG_FORMAT`, the one setting of the
//! supervisor's log given in the environment. What each command does lives
//! in [`commands`](super::commands).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::os::logs::visible_line;

/// corral: run plugins as isolated OS processes and manage the fleet.
#[derive(Debug, Parser)]
#[command(name = "corral", version, about, propagate_version = true)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// When to colour output: `auto` colours a terminal only, and follows
    /// NO_COLOR (off) and CLICOLOR_FORCE (on).
    #[arg(long, global = true, value_name = "WHEN", value_enum, default_value_t = clap::ColorChoice::Auto)]
    pub color: clap::ColorChoice,
}

/// The name of every subcommand, as the grammar defines them (for the
/// completions and man page, and for tests that must not forget one).
pub fn subcommand_names() -> Vec<String> {
    <Cli as clap::CommandFactory>::command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect()
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

/// `--nats URL [--node N]`: the command goes to the fleets joined through
/// NATS (by `nats-bridge` plugins) instead of one supervisor.
#[derive(Debug, Clone, Args)]
pub struct Remote {
    /// Reach every node joined through the NATS server at URL instead of
    /// one supervisor.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,
    /// With --nats: only this node.
    #[arg(long, value_name = "NODE", requires = "nats")]
    pub node: Option<String>,
    /// With --nats: the bridges' subject prefix.
    #[arg(long, value_name = "PREFIX", default_value = corral_proto::nats::DEFAULT_PREFIX, requires = "nats")]
    pub nats_prefix: String,
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

/// `corral up`'s own log: stderr, or a rotated file.
#[derive(Debug, Clone, Args)]
pub struct OwnLog {
    /// Write the supervisor's own log to this file, rotated, instead of stderr.
    #[arg(long, value_name = "PATH")]
    pub log_file: Option<PathBuf>,
    /// Size at which the --log-file is rotated (such as 10MiB).
    #[arg(long, value_name = "SIZE", default_value = "10MiB", value_parser = parse_size)]
    pub log_max_size: u64,
    /// Rotated files of the --log-file kept (0 to 1000).
    #[arg(long, value_name = "N", default_value_t = 5,
          value_parser = clap::value_parser!(u32).range(0..=i64::from(crate::os::log_file::MAX_KEEP)))]
    pub log_keep: u32,
}

fn parse_size(text: &str) -> Result<u64, String> {
    match text.parse::<bytesize::ByteSize>() {
        Ok(s) if s.0 > 0 => Ok(s.0),
        Ok(_) => Err("a log file's size must be more than zero".into()),
        Err(e) => Err(format!(
            "`{text}` is not a size ({e}); write a number and a unit, such as 10MiB"
        )),
    }
}

/// `corral up --detach`: run the supervisor in the background.
#[derive(Debug, Clone, Args)]
pub struct Detach {
    /// Start the supervisor in the background (its own log to --log-file,
    /// by default `<log_dir>/corral.log`) and return once the fleet has
    /// settled, printing its pid, control socket and log file.
    #[arg(long)]
    pub detach: bool,
    /// With --detach: the longest wait for the fleet to settle; past it the
    /// command fails (the supervisor keeps running).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration, requires = "detach")]
    pub timeout: std::time::Duration,
}

fn parse_interval(text: &str) -> Result<std::time::Duration, String> {
    let interval = humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); write one such as 1s or 500ms"))?;
    if interval < std::time::Duration::from_millis(100) {
        return Err(format!(
            "`{text}` is too short: refresh at most every 100ms"
        ));
    }
    Ok(interval)
}

/// How `start` and `restart` wait for the plugins they name.
#[derive(Debug, Clone, Args)]
pub struct Wait {
    /// Return once the supervisor took the request, without waiting for the
    /// plugins to run.
    #[arg(long)]
    pub no_wait: bool,
    /// The longest wait for every named plugin to be `running`; past it the
    /// command fails naming those that are not.
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the supervisor and its fleet, in the foreground or (--detach) in
    /// the background.
    Up {
        /// The fleet config.
        #[arg(
            short = 'c',
            long = "config",
            value_name = "FILE",
            default_value = "corral.toml"
        )]
        config: PathBuf,
        /// Where the supervisor's own log goes.
        #[command(flatten)]
        log: OwnLog,
        /// Whether to run in the background.
        #[command(flatten)]
        detach: Detach,
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
        /// Or the nodes joined through NATS.
        #[command(flatten)]
        remote: Remote,
        /// Print a JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// A live, full-screen view of the fleet: state, memory, CPU, calls and
    /// bus traffic per plugin; keys restart, stop and start the selected one.
    Top {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// How often to refresh (at least 100ms).
        #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_interval)]
        interval: std::time::Duration,
    },
    /// Write a new plugin's folder (manifest, source, README, a test) that
    /// runs as generated, and print the lines that add it to a fleet.
    New {
        /// The plugin's name (also its folder's).
        name: String,
        /// Its language.
        #[arg(long, value_enum)]
        lang: crate::cli::scaffold::Lang,
        /// The folder to create the plugin's folder in.
        #[arg(long, value_name = "DIR", default_value = ".")]
        dir: PathBuf,
        /// The SDK to build on: a corral checkout's `plugin-sdk` (Rust) or
        /// `plugin-sdk/python` folder [default: found beside this corral].
        #[arg(long, value_name = "DIR")]
        sdk: Option<PathBuf>,
    },
    /// Call a plugin's action and print its JSON reply (with `--stream`, one
    /// JSON line per chunk, then the final value); `--list` shows its actions.
    Call {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
        /// Or a node joined through NATS.
        #[command(flatten)]
        remote: Remote,
        /// The plugin.
        name: String,
        /// The action.
        #[arg(required_unless_present = "list")]
        action: Option<String>,
        /// The payload, as JSON, or `-` to read it from stdin [default: null].
        payload: Option<String>,
        /// Read a streamed reply: one JSON line per chunk as it comes, then
        /// the final value.
        #[arg(long, conflicts_with = "list")]
        stream: bool,
        /// List the actions the plugin's manifest declares.
        #[arg(long)]
        list: bool,
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
        /// Or the nodes joined through NATS.
        #[command(flatten)]
        remote: Remote,
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
        /// Whether to wait until they run.
        #[command(flatten)]
        wait: Wait,
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
        /// Whether to wait until they run.
        #[command(flatten)]
        wait: Wait,
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
        /// The plugins; with none, every plugin, interleaved by time and
        /// prefixed with its name.
        names: Vec<String>,
        /// Keep printing new lines, across rotations and restarts, until the
        /// supervisor goes down.
        #[arg(short = 'f', long)]
        follow: bool,
        /// How many of the last lines of each log to print first.
        #[arg(short = 'n', long = "lines", default_value_t = 20)]
        lines: usize,
        /// One JSON object a line: plugin, time, stream, line.
        #[arg(long)]
        json: bool,
    },
    /// Stop every plugin gracefully, then the supervisor.
    Down {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
    },
    /// Print the token of the fleet's HTTP face (for `Authorization:
    /// Bearer TOKEN`).
    HttpToken {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
    },
    /// Print the dashboard's login URL: open it in a browser.
    Dashboard {
        /// Where the running supervisor is.
        #[command(flatten)]
        target: Target,
    },
    /// Print a shell completion script (such as `corral completions bash >
    /// ~/.local/share/bash-completion/completions/corral`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print corral's man page (roff) to stdout (such as `corral man >
    /// corral.1`).
    Man,
}

/// The environment variable that picks the format.
pub const LOG_FORMAT_VAR: &str = "CORRAL_LOG_FORMAT";

/// How the supervisor's log is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// For people: `<time> <LEVEL> <target>: <message> name=value …`.
    Text,
    /// For machines: one JSON object a line, with `timestamp`, `level`,
    /// `target`, `fields` (`message` among them) and the spans.
    Json,
}

impl LogFormat {
    /// The format a value of [`LOG_FORMAT_VAR`] names (unset or empty:
    /// text); an error names the variable and the accepted values.
    pub fn parse(value: Option<&str>) -> Result<Self, String> {
        match value.map(str::to_ascii_lowercase).as_deref() {
            None | Some("" | "text") => Ok(Self::Text),
            Some("json") => Ok(Self::Json),
            Some(_) => Err(format!(
                "{LOG_FORMAT_VAR}=`{}` is not a log format; use `text` (the default) or `json`",
                visible_line(value.unwrap_or_default())
            )),
        }
    }

    /// The format this process's environment asks for.
    pub fn from_env() -> Result<Self, String> {
        match std::env::var(LOG_FORMAT_VAR) {
            Ok(v) => Self::parse(Some(&v)),
            Err(std::env::VarError::NotPresent) => Self::parse(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "{LOG_FORMAT_VAR} is not text; use `text` (the default) or `json`"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_format_is_text_or_json_and_anything_else_is_refused_by_name() {
        assert_eq!(LogFormat::parse(None), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("text")), Ok(LogFormat::Text));
        assert_eq!(LogFormat::parse(Some("JSON")), Ok(LogFormat::Json));
        let err = LogFormat::parse(Some("xml\x1b")).expect_err("xml");
        assert!(
            err.contains("CORRAL_LOG_FORMAT")
                && err.contains("`text`")
                && err.contains("`json`")
                && err.contains("xml\\x1b"),
            "{err}"
        );
    }
}
