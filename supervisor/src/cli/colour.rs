//! When corral writes colour: the CLI's tables and errors, and the
//! supervisor's own log. One rule for every stream, following the
//! conventions the ecosystem reads through `anstyle-query`:
//!
//! - `--color always` or `--color never` decides, whatever the environment;
//! - under `--color auto` (the default), a non-empty `NO_COLOR` turns colour
//!   off, then a non-empty `CLICOLOR_FORCE` turns it on, then `CLICOLOR=0`
//!   turns it off; otherwise a stream is coloured only when it is a terminal
//!   whose `TERM` supports colour (or `CLICOLOR` is set to something else
//!   than `0`).
//!
//! The choice given on the command line is kept in `colorchoice`'s global,
//! so every part of the CLI reads the same one. This module only decides;
//! what is coloured, and in which style, is for the code that prints.
//! Output without colour is the same text, byte for byte, with no escape.

use std::io::IsTerminal;

pub use colorchoice::ColorChoice;

/// What the environment says about colour, read once per decision.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Env {
    /// `NO_COLOR` is set and not empty.
    pub no_color: bool,
    /// `CLICOLOR_FORCE` is set and not empty.
    pub clicolor_force: bool,
    /// `CLICOLOR`, when set: `false` for `0`, `true` for anything else.
    pub clicolor: Option<bool>,
    /// `TERM` names a terminal that shows colour.
    pub term_colour: bool,
}

impl Env {
    /// The environment of this process.
    pub fn read() -> Self {
        Self {
            no_color: anstyle_query::no_color(),
            clicolor_force: anstyle_query::clicolor_force(),
            clicolor: anstyle_query::clicolor(),
            term_colour: anstyle_query::term_supports_color(),
        }
    }
}

/// Whether a stream is coloured under `choice` and `env`; `terminal` is
/// whether the stream is a terminal.
pub fn decide(choice: ColorChoice, env: Env, terminal: bool) -> bool {
    match choice {
        ColorChoice::Always | ColorChoice::AlwaysAnsi => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            if env.no_color {
                false
            } else if env.clicolor_force {
                true
            } else if env.clicolor == Some(false) {
                false
            } else {
                terminal && (env.term_colour || env.clicolor == Some(true))
            }
        }
    }
}

/// Records the `--color` given on the command line for every later decision.
pub fn set_choice(when: clap::ColorChoice) {
    choice_of(when).write_global();
}

/// The `colorchoice` value of a `--color` argument.
pub fn choice_of(when: clap::ColorChoice) -> ColorChoice {
    match when {
        clap::ColorChoice::Auto => ColorChoice::Auto,
        clap::ColorChoice::Always => ColorChoice::Always,
        clap::ColorChoice::Never => ColorChoice::Never,
    }
}

/// Whether a stream that is a `terminal` (or not) is coloured, under the
/// choice recorded by [`set_choice`] and this process's environment.
pub fn enabled(terminal: bool) -> bool {
    decide(ColorChoice::global(), Env::read(), terminal)
}

/// Whether stdout is coloured.
pub fn stdout() -> bool {
    enabled(std::io::stdout().is_terminal())
}

/// Whether stderr is coloured.
pub fn stderr() -> bool {
    enabled(std::io::stderr().is_terminal())
}

/// `text` in `style` when `on`, else `text` unchanged.
pub fn paint(text: &str, style: anstyle::Style, on: bool) -> String {
    if on {
        format!("{style}{text}{style:#}")
    } else {
        text.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTY: Env = Env {
        no_color: false,
        clicolor_force: false,
        clicolor: None,
        term_colour: true,
    };

    #[test]
    fn auto_colours_a_terminal_only() {
        assert!(decide(ColorChoice::Auto, TTY, true));
        assert!(!decide(ColorChoice::Auto, TTY, false));
        let dumb = Env {
            term_colour: false,
            ..TTY
        };
        assert!(!decide(ColorChoice::Auto, dumb, true), "TERM=dumb");
    }

    #[test]
    fn no_color_wins_under_auto_and_the_flag_wins_over_both() {
        let no_color = Env {
            no_color: true,
            clicolor_force: true,
            ..TTY
        };
        assert!(!decide(ColorChoice::Auto, no_color, true));
        assert!(decide(ColorChoice::Always, no_color, false));
        let forced = Env {
            clicolor_force: true,
            ..TTY
        };
        assert!(decide(ColorChoice::Auto, forced, false), "CLICOLOR_FORCE");
        assert!(!decide(ColorChoice::Never, forced, true));
    }

    #[test]
    fn clicolor_zero_turns_colour_off_and_another_value_allows_it() {
        let off = Env {
            clicolor: Some(false),
            ..TTY
        };
        assert!(!decide(ColorChoice::Auto, off, true));
        let on = Env {
            clicolor: Some(true),
            term_colour: false,
            ..TTY
        };
        assert!(decide(ColorChoice::Auto, on, true));
        assert!(!decide(ColorChoice::Auto, on, false));
    }

    #[test]
    fn paint_adds_nothing_when_off() {
        let red = anstyle::AnsiColor::Red.on_default();
        assert_eq!(paint("corral:", red, false), "corral:");
        assert_eq!(paint("corral:", red, true), "\x1b[31mcorral:\x1b[0m");
    }
}
