//! The `corral` command line: argument parsing and what each command prints.
//!
//! Exit codes: 0 success, 1 failure (the message on stderr says what to do
//! next), 2 usage error. Data goes to stdout, as a table for people or as
//! JSON with `--json` for scripts.
//!
//! - [`args`]: the grammar (clap);
//! - [`front`]: which commands the small `corral` binary runs itself, and
//!   the hand-off of the others to `corral-full`;
//! - [`commands`]: one function per command;
//! - [`render`]: tables and reports for people;
//! - [`client`]: connecting to the control socket;
//! - [`tail`]: reading log files (`corral logs`);
//! - [`top`]: `corral top`, the live view of the fleet;
//! - [`scaffold`]: `corral new`;
//! - [`colour`]: when output is coloured (`--color`, `NO_COLOR`,
//!   `CLICOLOR_FORCE`);
//! - [`generate`]: `corral completions` and `corral man`;
//! - [`detach`]: `corral up --detach`.

pub mod args;
mod call;
pub mod client;
pub mod colour;
pub mod commands;
pub mod detach;
pub mod front;
pub mod generate;
mod nats;
mod reach;
pub mod render;
pub mod scaffold;
pub mod tail;
#[cfg(test)]
mod test_rows;
pub mod top;
mod web;

pub use args::{Cli, Command, Selection, Target, Wait};
pub use commands::{check, new_plugin, run_client, run_control};
pub use reach::fail;
pub use render::{inspect_text, ps_table};
