//! Which binary runs a command. `corral` is small: it runs the commands of
//! the control socket itself ([`runs_in_front`]), so a `corral ps` costs
//! little more than starting a process, and hands every other command
//! (`up`, `check`, `new`, `top`, anything with `--nats`, `completions`,
//! `man`) to `corral-full`, installed beside it, by exec ([`hand_off`]):
//! same pid, same arguments, same environment. `corral-full` runs every
//! command, so calling it directly is the same as calling `corral`.

use std::os::unix::process::CommandExt;
use std::process::ExitCode;

use super::args::Command;
use super::reach::fail;

/// The binary with the supervisor and every command.
pub const FULL_BINARY: &str = "corral-full";

/// Whether the small `corral` binary runs `command` itself: a command of
/// the local control socket. The supervisor, the files-only commands, the
/// terminal UI and NATS live in [`FULL_BINARY`].
pub fn runs_in_front(command: &Command) -> bool {
    match command {
        Command::Ps { remote, .. }
        | Command::Call { remote, .. }
        | Command::Events { remote, .. } => remote.nats.is_none(),
        Command::Publish { .. }
        | Command::Down { .. }
        | Command::Start { .. }
        | Command::Stop { .. }
        | Command::Restart { .. }
        | Command::Reload { .. }
        | Command::Logs { .. }
        | Command::Inspect { .. }
        | Command::HttpToken { .. }
        | Command::Dashboard { .. } => true,
        Command::Up { .. }
        | Command::Top { .. }
        | Command::Check { .. }
        | Command::New { .. }
        | Command::Completions { .. }
        | Command::Man => false,
    }
}

/// Replaces this process with [`FULL_BINARY`], given this process's own
/// arguments; returns only if that fails, with exit code 1.
pub fn hand_off() -> ExitCode {
    let Some(full) = crate::os::spawn::installed_beside(FULL_BINARY) else {
        let here =
            std::env::current_exe().map_or_else(|e| e.to_string(), |p| p.display().to_string());
        return fail(&format!(
            "this command runs in {FULL_BINARY}, which is not installed beside {here}; \
             `cargo install --path supervisor` installs both"
        ));
    };
    let mut args = std::env::args_os();
    let mut exec = std::process::Command::new(&full);
    if let Some(arg0) = args.next() {
        exec.arg0(arg0);
    }
    let error = exec.args(args).exec();
    fail(&format!("cannot run {}: {error}", full.display()))
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    fn runs_here(line: &str) -> bool {
        let cli = Cli::try_parse_from(line.split_whitespace()).expect(line);
        runs_in_front(&cli.command)
    }

    #[test]
    fn control_socket_commands_run_in_the_small_binary() {
        for line in [
            "corral ps --json",
            "corral call echo ping",
            "corral events",
            "corral publish t",
            "corral down",
            "corral start --all",
            "corral stop p",
            "corral restart p",
            "corral reload",
            "corral logs",
            "corral inspect p",
            "corral http-token",
            "corral dashboard",
        ] {
            assert!(runs_here(line), "{line}");
        }
    }

    #[test]
    fn the_supervisor_files_the_terminal_ui_and_nats_are_handed_off() {
        for line in [
            "corral up",
            "corral up --detach",
            "corral check",
            "corral new p --lang rust",
            "corral top",
            "corral ps --nats nats://localhost",
            "corral call --nats nats://localhost echo ping",
            "corral events --nats nats://localhost",
            "corral completions bash",
            "corral man",
        ] {
            assert!(!runs_here(line), "{line}");
        }
    }
}
