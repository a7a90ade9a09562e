//! `corral top`: a live, full-screen view of the fleet, like `pm2 monit`.
//! One row per plugin (state, pid, restarts, uptime, memory against its cap,
//! CPU, calls and bus events per second, last exit), the selected plugin's
//! detail, and keys to restart, stop and start it or follow its log.
//!
//! It is a client like the others: it reads the control socket only, with
//! one `ps` per refresh and one `inspect` of the selected plugin. Rates are
//! computed here from two samples of the cumulative counters `ps` returns.
//!
//! - [`model`]: the pure part: samples, rates, selection, keys → actions;
//! - [`view`]: the screen, drawn with ratatui;
//! - [`fetch`]: the task that asks the supervisor and reads the log file;
//! - [`run`]: the loop that wires the terminal, the fetcher and the model.

pub mod fetch;
pub mod model;
pub mod run;
pub mod view;

pub use run::run;
