//! A spawn's captured output: its stdout and stderr read line by line into
//! the plugin's log, and, once its process has ended, the wait (bounded)
//! for the last lines to be written and the stderr tail `ps` shows.

use std::time::Duration;

use crate::os::child::Child;
use tokio::task::JoinHandle;

use crate::os::logs::{LogSink, Stream, Tail};

/// How long an ended process's pipes are given to reach their end.
const OUTPUT_EOF_GRACE: Duration = Duration::from_millis(250);
/// How long the log writer is given to write an ended process's last lines.
const OUTPUT_FLUSH_GRACE: Duration = Duration::from_secs(2);

/// A spawn's captured output: the pipe readers, the sink they write to,
/// and, once the process has ended, the last lines it wrote to stderr.
pub(super) struct Output {
    stdout: Option<JoinHandle<Tail>>,
    stderr: Option<JoinHandle<Tail>>,
    sink: LogSink,
    last_stderr: Vec<String>,
}

impl Output {
    /// Starts reading the child's stdout and stderr into `logs`.
    pub(super) fn capture(child: &mut Child, logs: &LogSink) -> Self {
        let (stdout, stderr) = child.take_output();
        Self {
            stdout: stdout.map(|out| logs.capture(Stream::Stdout, out)),
            stderr: stderr.map(|err| logs.capture(Stream::Stderr, err)),
            sink: logs.clone(),
            last_stderr: Vec::new(),
        }
    }

    /// The last lines it wrote to stderr, once drained.
    pub(super) fn take_last_stderr(&mut self) -> Vec<String> {
        std::mem::take(&mut self.last_stderr)
    }

    /// After the process ended: waits (a bounded time) for its pipes to be
    /// read to their end and for every line to be written, so the exit is
    /// reported after its last lines are in the log, and keeps the stderr
    /// tail. A descendant still holding a pipe open only shortens the wait:
    /// its reader goes on, and ends when the spawn's processes are killed.
    /// Deadlines count from the exit (`ended`).
    pub(super) async fn drain(&mut self, ended: tokio::time::Instant) {
        let eof = ended + OUTPUT_EOF_GRACE;
        if let Some(out) = self.stdout.as_mut()
            && tokio::time::timeout_at(eof, out).await.is_ok()
        {
            self.stdout = None;
        }
        if let Some(err) = self.stderr.as_mut()
            && let Ok(tail) = tokio::time::timeout_at(eof, err).await
        {
            self.stderr = None;
            self.last_stderr = tail.unwrap_or_default().into_lines();
        }
        let _ = tokio::time::timeout_at(eof + OUTPUT_FLUSH_GRACE, self.sink.flushed()).await;
    }
}
