//! `corral completions SHELL` and `corral man`: a shell completion script
//! and the man page, both generated from the grammar in
//! [`args`](super::args), so they always list what the binary accepts. Both
//! print to stdout; where to install them is the user's (or the
//! packager's) choice.

use std::io::Write;
use std::process::ExitCode;

use clap::CommandFactory;

use super::args::Cli;

/// The variables corral reads, as a man page section.
const ENVIRONMENT: &str = r".SH ENVIRONMENT
.TP
BCORRAL_SOCKETR
The control socket client commands use when neither B\-\-socketR nor B\-cR is given.
.TP
BCORRAL_LOGR
What the supervisor's own log keeps (an EnvFilter, such as BdebugR or Bcorral=debugR); BinfoR by default.
.TP
BCORRAL_LOG_FORMATR
The format of the supervisor's own log: BtextR (the default) or BjsonR (one object a line).
.TP
BNO_COLORR
When set and not empty, no colour under B\-\-color autoR.
.TP
BCLICOLOR_FORCER
When set and not empty (and BNO_COLORR is not), colour under B\-\-color autoR even when not on a terminal.
.TP
BCORRAL_RISECTIONRB__RIKEYR
Overrides a key of the fleet config, such as BCORRAL_SUPERVISOR__RUNTIME_DIRR.
";

/// Prints the completion script for `shell`.
pub fn completions(shell: clap_complete::Shell) -> ExitCode {
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "corral", &mut out);
    print(&out)
}

/// Prints the man page, corral(1): the synopsis, the global options, and a
/// section per command with its own usage and options.
pub fn man() -> ExitCode {
    match man_page() {
        Ok(page) => print(&page),
        Err(e) => super::fail(&format!("cannot write the man page: {e}")),
    }
}

/// corral(1) as roff.
pub fn man_page() -> std::io::Result<Vec<u8>> {
    let command = Cli::command();
    let man = clap_mangen::Man::new(command.clone()).title("CORRAL");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    man.render_subcommands_section(&mut out)?;
    for sub in command.get_subcommands() {
        command_section(&mut out, sub)?;
    }
    out.extend_from_slice(ENVIRONMENT.as_bytes());
    man.render_version_section(&mut out)?;
    let mut page = String::from_utf8_lossy(&out).into_owned();
    // Every command is in this page: the list names them, not pages of
    // their own.
    let names = command.get_subcommands().map(clap::Command::get_name);
    for name in names.chain(["help"]) {
        let name = name.replace('-', "\\-");
        page = page.replace(
            &format!("corral\\-{name}(1)"),
            &format!("\\fBcorral {name}\\fR"),
        );
    }
    Ok(tidy(&page).into_bytes())
}

/// `page` with the preamble each rendered part starts with kept only once,
/// at the top, and every character outside ASCII written as a roff escape
/// (`\[u2026]`), so any roff reads it.
fn tidy(page: &str) -> String {
    const PREAMBLE: &str = ".ie \\n(.g .ds Aq \\(aq\n.el .ds Aq '\n";
    let mut out = String::from(PREAMBLE);
    for c in page.replace(PREAMBLE, "").chars() {
        if c.is_ascii() {
            out.push(c);
        } else {
            out.push_str(&format!("\\[u{:04X}]", u32::from(c)));
        }
    }
    out
}

/// One command's section: `corral NAME`, its usage, its description and its
/// options, as clap_mangen writes them for a page of its own.
fn command_section(out: &mut Vec<u8>, sub: &clap::Command) -> std::io::Result<()> {
    let name = format!("corral {}", sub.get_name());
    let sub = sub.clone().bin_name(name.clone());
    let mut page = Vec::new();
    let man = clap_mangen::Man::new(sub);
    man.render_synopsis_section(&mut page)?;
    man.render_description_section(&mut page)?;
    man.render_options_section(&mut page)?;
    // The command's page has its own SYNOPSIS, DESCRIPTION and OPTIONS
    // sections; here they are subsections of one.
    let page = String::from_utf8_lossy(&page).replace(".SH ", ".SS ");
    writeln!(out, ".SH \"{}\"", name.to_uppercase().replace('-', "\\-"))?;
    out.extend_from_slice(page.as_bytes());
    Ok(())
}

fn print(bytes: &[u8]) -> ExitCode {
    let mut stdout = std::io::stdout().lock();
    match stdout.write_all(bytes).and_then(|()| stdout.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // stdout closed early (`corral man | head`): the reader is done.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => super::fail(&format!("cannot write to stdout: {e}")),
    }
}
