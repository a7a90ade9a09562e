//! The supervisor's own log: where it goes (stderr, or a rotated
//! `--log-file` written by a thread of its own), what it keeps (`CORRAL_LOG`,
//! an `EnvFilter`, `info` by default), its format (`CORRAL_LOG_FORMAT`:
//! `text`, the default, or `json`, one object a line), and whether it is
//! coloured (the CLI's [`colour`](crate::cli::colour) rule, a file being no
//! terminal; JSON never is).
//!
//! Any field may carry a plugin's text (its output lines, an exit's
//! detail), so neither format lets it drive a terminal: the text format
//! shows control characters as escapes (`\x1b`), and the JSON format
//! escapes them as JSON does, DEL, the C1 controls and the bidi controls
//! included (which JSON itself would leave raw), so a JSON line decodes to
//! the exact text.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;

use crate::cli::args::{LogFormat, OwnLog};
use crate::os::log_file::Background;
use crate::os::logs::{drives_terminal, visible_line, visible_text};

/// Installs the supervisor's log: to stderr, or to `--log-file` through a
/// writer thread of its own (returned, to be synced before exit).
pub fn install(log: &OwnLog, format: LogFormat) -> Result<Option<Background>, String> {
    let filter = EnvFilter::try_from_env("CORRAL_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let background = match &log.log_file {
        Some(path) => Some(
            Background::start(path, log.log_max_size, log.log_keep)
                .map_err(|e| format!("cannot use --log-file {}: {e}", path.display()))?,
        ),
        None => None,
    };
    let writer = match &background {
        Some(w) => BoxMakeWriter::new(w.clone()),
        None => BoxMakeWriter::new(io::stderr),
    };
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => {
            let terminal = background.is_none() && io::stderr().is_terminal();
            builder
                .fmt_fields(visible_fields())
                .with_ansi(crate::cli::colour::enabled(terminal))
                .with_writer(writer)
                .init();
        }
        LogFormat::Json => builder
            .json()
            .with_ansi(false)
            .with_writer(JsonSafe(writer))
            .init(),
    }
    Ok(background)
}

/// How the text format writes fields: as the default does (`name=value`,
/// the message bare), with control characters shown as escapes.
fn visible_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + Send + Sync + 'static
{
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        if field.name() == "message" {
            write!(w, "{}", visible_text(&text))
        } else {
            write!(w, "{}={}", field.name(), visible_line(&text))
        }
    })
    .delimited(" ")
}

/// A writer of JSON records that escapes what JSON leaves raw and a
/// terminal may act on.
struct JsonSafe<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for JsonSafe<M> {
    type Writer = JsonSafeWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        JsonSafeWriter(self.0.make_writer())
    }
}

/// One record on its way through [`JsonSafe`].
struct JsonSafeWriter<W>(W);

impl<W: Write> Write for JsonSafeWriter<W> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0.write_all(&json_safe(bytes))?;
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// `json` (serialized JSON, which keeps DEL, C1 and bidi controls raw inside
/// its strings) with those characters written as `\uXXXX` escapes: the same
/// JSON value, safe on a terminal. They can only occur inside strings.
fn json_safe(json: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    let Ok(text) = std::str::from_utf8(json) else {
        return json.into();
    };
    let raw = |c: char| drives_terminal(c) && u32::from(c) >= 0x7f;
    if !text.chars().any(raw) {
        return json.into();
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if raw(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    out.into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_records_keep_their_value_and_lose_raw_terminal_controls() {
        let value = serde_json::json!({"fields": {"message": "a\x1b[31m\u{9b}2J\u{202e}b\x7f"}});
        let line = format!("{value}\n");
        assert!(
            line.contains('\u{9b}'),
            "serde_json leaves C1 raw: {line:?}"
        );
        let safe = json_safe(line.as_bytes());
        let safe = std::str::from_utf8(&safe).expect("utf-8");
        assert!(
            !safe.trim_end().chars().any(drives_terminal),
            "nothing raw: {safe:?}"
        );
        assert!(safe.ends_with('\n'), "the record's newline is kept");
        let back: serde_json::Value = serde_json::from_str(safe).expect("still JSON");
        assert_eq!(back, value);
        assert!(matches!(
            json_safe(b"{\"plain\":1}\n"),
            std::borrow::Cow::Borrowed(_)
        ));
    }
}
