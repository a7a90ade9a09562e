//! `corral up`: everything the running supervisor is assembled from, above
//! the actors. It loads the fleet, installs its own log ([`own_log`]:
//! stderr or a rotated `--log-file`, text or JSON) and the panic hook, takes
//! the runtime directory, detects cgroups, starts the root actor and the
//! control server, tells a service manager when the fleet is ready (and pets
//! its watchdog), and turns SIGTERM and SIGINT into a graceful stop and
//! SIGHUP into a reload. It makes the supervisor the child subreaper of its
//! plugins' descendants and runs the [`Reaper`] over them. It returns once
//! every plugin process, and every process adopted, is reaped.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{SignalKind, signal};

use crate::Error;
use crate::cli::args::OwnLog;
use crate::cli::fail;
use crate::config::{Fleet, SupervisorSettings};
use crate::control::ControlServer;
use crate::http::{HttpListener, HttpServer};
use crate::os::cgroup::Cgroups;
use crate::os::reaper::{self, Reaper};
use crate::os::runtime_dir::{RuntimeDir, prepare_log_dir};
use crate::supervisor::{SupervisorHandle, start};

pub mod own_log;

use crate::cli::args::LogFormat;

/// `corral up`'s exit status when the fleet went down but some plugin had
/// to be signalled past its `stop_timeout` (or killed) to stop.
pub const UNCLEAN: u8 = 3;

/// How long `corral up` waits, after the fleet stopped, for control clients
/// to read their last answers.
const CONTROL_GRACE: Duration = Duration::from_secs(2);

/// How long `corral up` waits, after the fleet stopped, for the processes it
/// adopted and killed to be reaped.
const REAP_GRACE: Duration = Duration::from_secs(2);

/// How long `corral up` waits at exit for its own log file to take every
/// record written so far (a writer behind on a busy machine, rotating).
const LOG_SYNC_GRACE: Duration = Duration::from_secs(10);

/// How often the supervisor gives its freed memory back to the kernel.
const TRIM_EVERY: Duration = Duration::from_secs(5);

/// `corral up -c FILE [--log-file PATH]`: loads the fleet, installs logging
/// (to stderr, or to a rotated file), and runs it on its own runtime until it
/// is down; the exit code says how that went.
pub fn up(config: &Path, log: &OwnLog) -> ExitCode {
    let format = match LogFormat::from_env() {
        Ok(f) => f,
        Err(e) => return fail(&e),
    };
    let fleet = match crate::config::load(config) {
        Ok(f) => f,
        Err(e) => {
            for p in &e.problems {
                eprintln!("error: {p}");
            }
            return ExitCode::from(1);
        }
    };
    let own_log = match own_log::install(log, format) {
        Ok(l) => l,
        Err(e) => return fail(&e),
    };
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
    crate::os::spawn::raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("corral")
        .enable_all()
        .build();
    let result = match runtime {
        Ok(rt) => rt.block_on(run(fleet)),
        Err(e) => return fail(&format!("cannot start the async runtime: {e}")),
    };
    if let Some(own) = own_log {
        if let Err(e) = &result {
            // Whoever reads the file (`up --detach` among them) learns why.
            tracing::error!("{e}");
        }
        own.sync(LOG_SYNC_GRACE);
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Error::Unclean) => {
            eprintln!("{}", Error::Unclean);
            ExitCode::from(UNCLEAN)
        }
        Err(e) => fail(&e.to_string()),
    }
}

/// The control socket and, when configured, the HTTP face.
fn open_faces(
    (settings, fleet_file): (&Arc<SupervisorSettings>, &std::path::Path),
    http_listener: Option<HttpListener>,
    handle: &SupervisorHandle,
) -> Result<(ControlServer, Option<HttpServer>), Error> {
    let control = ControlServer::start(settings, handle.clone())?;
    let http = match (http_listener, &settings.http) {
        (Some(listener), Some(http)) => Some(HttpServer::start(
            listener,
            (Arc::clone(settings), fleet_file),
            http,
            handle.clone(),
        )?),
        _ => None,
    };
    Ok((control, http))
}

/// Runs a fleet in the foreground until SIGTERM, SIGINT or `corral down`.
pub async fn run(fleet: Fleet) -> Result<(), Error> {
    let runtime_dir = RuntimeDir::acquire(&fleet.supervisor.runtime_dir)?;
    prepare_log_dir(&fleet.supervisor.log_dir)?;
    let settings = Arc::new(fleet.supervisor.clone());
    let mut term = signal(SignalKind::terminate()).map_err(Error::io("cannot watch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(Error::io("cannot watch SIGINT"))?;
    let mut hup = signal(SignalKind::hangup()).map_err(Error::io("cannot watch SIGHUP"))?;

    // Orphans among the plugins' descendants come back to the supervisor,
    // which reaps them, or kills them when no running plugin accounts for them.
    reaper::become_subreaper().map_err(Error::io("cannot become a child subreaper"))?;
    let reaper = Reaper::start().map_err(Error::io("cannot watch SIGCHLD"))?;
    let cgroups = Arc::new(Cgroups::detect(runtime_dir.path()));
    let http_listener = match &settings.http {
        Some(http) => Some(HttpListener::bind(http).await?),
        None => None,
    };
    let (handle, mut done) = start(&fleet, Arc::clone(&cgroups));
    let (control, http) = match open_faces((&settings, &fleet.file), http_listener, &handle) {
        Ok(faces) => faces,
        Err(e) => {
            // The fleet has started: stop it before saying why.
            handle.shutdown().await;
            cgroups.remove_all();
            return Err(e);
        }
    };
    tracing::info!(
        plugins = fleet.plugins.len(),
        control = %settings.control_socket().display(),
        runtime_dir = %runtime_dir.path().display(),
        "corral is up"
    );

    let watchdog = sd_notify::watchdog_enabled();
    let mut watchdog_tick =
        tokio::time::interval(watchdog.map_or(Duration::from_secs(3600), |d| d / 2));
    let mut notified_ready = false;
    let mut trim_tick = crate::grid::every(TRIM_EVERY);
    loop {
        tokio::select! {
            _ = trim_tick.tick() => {
                tokio::task::spawn_blocking(crate::os::memory::return_free_memory);
            }
            _ = handle.ready(), if !notified_ready => {
                notified_ready = true;
                if let Err(e) = sd_notify::notify(&[sd_notify::NotifyState::Ready]) {
                    tracing::warn!("cannot tell the service manager we are ready: {e}");
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = term.recv() => {
                tracing::info!("SIGTERM: stopping every plugin");
                handle.shutdown().await;
                break;
            }
            _ = int.recv() => {
                tracing::info!("SIGINT: stopping every plugin");
                handle.shutdown().await;
                break;
            }
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading {}", fleet.file.display());
                // Its reload hooks may take a while: signals keep being heard.
                let handle = handle.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle.reload().await {
                        tracing::error!("reload refused, nothing changed:\n{e}");
                    }
                });
            }
            _ = done.wait_for(|d| *d) => break,
        }
    }
    close((control, http), reaper, &cgroups).await;
    if handle.stopped_cleanly() == Some(false) {
        tracing::warn!("corral is down, but not every plugin stopped on request");
        return Err(Error::Unclean);
    }
    tracing::info!("corral is down");
    Ok(())
}

/// After the fleet stopped: the faces closed, the adopted reaped, the
/// cgroups removed.
async fn close(
    (control, http): (ControlServer, Option<HttpServer>),
    reaper: Reaper,
    cgroups: &Cgroups,
) {
    if let Some(http) = http {
        http.shutdown(CONTROL_GRACE).await;
    }
    control.shutdown(CONTROL_GRACE).await;
    reaper.finish(REAP_GRACE).await;
    cgroups.remove_all();
}
