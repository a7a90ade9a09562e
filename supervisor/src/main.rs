//! The `corral` binary, kept small so a status query is cheap: it runs the
//! commands of the control socket itself and hands every other one
//! (`up`, `check`, `new`, `top`, `--nats`, …) to `corral-full` by exec
//! (see [`corral::cli::front`]).

use std::process::ExitCode;

use clap::Parser;
use corral::cli::{self, Cli, front};

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !front::runs_in_front(&cli.command) {
        return front::hand_off();
    }
    cli::colour::set_choice(cli.color);
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt.block_on(cli::run_control(cli.command)),
        Err(e) => cli::fail(&format!("cannot start the async runtime: {e}")),
    }
}
