//! The `corral` binary: `corral up` runs the supervisor; every other command
//! is a client of the control socket (see `corral --help`).

use std::process::ExitCode;

use clap::Parser;
use corral::cli::{self, Cli, Command};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Up { config } => up(&config),
        Command::Check { config, json } => cli::check(&config, json),
        Command::New {
            name,
            lang,
            dir,
            sdk,
        } => cli::new_plugin(&name, lang, &dir, sdk.as_deref()),
        client => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt.block_on(cli::run_client(client)),
            Err(e) => cli::fail(&format!("cannot start the async runtime: {e}")),
        },
    }
}

fn up(config: &std::path::Path) -> ExitCode {
    let fleet = match corral::config::load(config) {
        Ok(f) => f,
        Err(e) => {
            for p in &e.problems {
                eprintln!("error: {p}");
            }
            return ExitCode::from(1);
        }
    };
    let filter = EnvFilter::try_from_env("CORRAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    // A panic while decoding a peer's frame is bad input, caught and turned
    // into an error by the codec: one log line, not a backtrace.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if corral_proto::codec::decoding_now() {
            let why = info.payload_as_str().unwrap_or("a value out of range");
            tracing::warn!("refused a frame that does not decode: {why}");
        } else {
            default_hook(info);
        }
    }));
    corral::spawn::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("corral")
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(corral::supervisor::run(fleet)),
        Err(e) => return cli::fail(&format!("cannot start the async runtime: {e}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(&e.to_string()),
    }
}
