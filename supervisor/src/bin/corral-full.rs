//! `corral-full`: every command of `corral`, the supervisor (`corral up`)
//! included. The small `corral` binary hands it what it does not run
//! itself (see [`corral::cli::front`]).

use std::process::ExitCode;

use clap::Parser;
use corral::cli::{self, Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    cli::colour::set_choice(cli.color);
    match cli.command {
        Command::Up {
            config,
            log,
            detach,
        } if detach.detach => cli::detach::up(&config, &log, &detach, cli.color),
        Command::Up { config, log, .. } => corral::daemon::up(&config, &log),
        Command::Check { config, json } => cli::check(&config, json),
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => cli::new_plugin(&name, lang, &dir, sdk.as_deref()),
        Command::Completions { shell } => cli::generate::completions(shell),
        Command::Man => cli::generate::man(),
        client => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(cli::run_client(client)),
            Err(e) => cli::fail(&format!("cannot start the async runtime: {e}")),
        },
    }
}
