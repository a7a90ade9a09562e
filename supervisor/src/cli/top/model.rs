//! `corral top`'s model, pure: the last two `ps` samples and the per-second
//! rates between them, the selected plugin (kept by name across refreshes,
//! restarts and reloads), its detail and log lines, whether the log pane is
//! open, the status message, and what each key does.
//!
//! It does no I/O and reads no clock: the loop hands it the [`Update`]s the
//! fetcher read (each sample carries the instant it arrived) and the
//! [`Action`]s of the keys pressed, and carries out the [`Effect`]s it
//! returns; the view only draws it.

use std::time::Instant;

use corral_proto::{PluginInfo, PluginState, PluginStatus};
use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

#[cfg(test)]
pub(super) mod tests;

/// How far PageUp and PageDown move the selection.
const PAGE: usize = 10;

/// One `ps` answer and when it arrived.
#[derive(Debug, Clone)]
pub struct Sample {
    /// When the answer arrived.
    pub at: Instant,
    /// Its rows, in the fleet's order.
    pub rows: Vec<PluginStatus>,
}

/// One plugin's figures per second between two samples. Each is `None`
/// where it cannot be told: on the first sample, for CPU across a new
/// process (its CPU time starts again at 0), or when a counter went back
/// (the plugin was removed and added again).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Rates {
    /// CPU use in percent of one core.
    pub cpu_percent: Option<f64>,
    /// Calls handed to it per second.
    pub calls: Option<f64>,
    /// Events delivered to it per second.
    pub bus_in: Option<f64>,
    /// Events it published per second.
    pub bus_out: Option<f64>,
}

/// The rates of a plugin that read `before` and, `secs` seconds later, `now`.
pub fn rates(before: Option<&PluginStatus>, now: &PluginStatus, secs: f64) -> Rates {
    let Some(before) = before.filter(|_| secs > 0.0) else {
        return Rates::default();
    };
    let per_second = |a: u64, b: u64| (b >= a).then(|| (b - a) as f64 / secs);
    let same_process = now.pid.is_some() && before.pid == now.pid;
    Rates {
        // Milliseconds of CPU per second of wall time, as a percentage: / 10.
        cpu_percent: per_second(before.cpu_ms, now.cpu_ms)
            .filter(|_| same_process)
            .map(|ms| ms / 10.0),
        calls: per_second(before.calls, now.calls),
        bus_in: per_second(before.bus_in, now.bus_in),
        bus_out: per_second(before.bus_out, now.bus_out),
    }
}

/// One row of the table: a plugin's status and its rates.
#[derive(Debug, Clone, PartialEq)]
pub struct Row<'a> {
    /// Its latest status.
    pub status: &'a PluginStatus,
    /// Its rates since the sample before.
    pub rates: Rates,
}

/// A lifecycle request `corral top` can make of the selected plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    /// `corral start`.
    Start,
    /// `corral stop`.
    Stop,
    /// `corral restart`.
    Restart,
}

impl Verb {
    /// The command's name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }

    fn doing(self) -> &'static str {
        match self {
            Self::Start => "starting",
            Self::Stop => "stopping",
            Self::Restart => "restarting",
        }
    }
}

/// What a key asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Select the row above.
    Up,
    /// Select the row below.
    Down,
    /// Select [`PAGE`] rows up.
    PageUp,
    /// Select [`PAGE`] rows down.
    PageDown,
    /// Select the first row.
    First,
    /// Select the last row.
    Last,
    /// Ask the supervisor to do this to the selected plugin.
    Request(Verb),
    /// Open or close the log pane.
    ToggleLogs,
    /// Leave `corral top`.
    Quit,
}

/// The keys, as the footer shows them.
pub const KEYS_HELP: &str = "↑↓/jk select  r restart  s stop  S start  l logs (follow)  q/Esc quit";

/// What `key` asks for, if anything (releases and repeats of modifiers
/// alone ask for nothing).
pub fn action_for(key: KeyEvent) -> Option<Action> {
    if key.kind == KeyEventKind::Release {
        return None;
    }
    if key.modifiers.contains(KeyModifiers::CONTROL) {
        return matches!(key.code, KeyCode::Char('c' | 'C')).then_some(Action::Quit);
    }
    Some(match key.code {
        KeyCode::Up | KeyCode::Char('k') => Action::Up,
        KeyCode::Down | KeyCode::Char('j') => Action::Down,
        KeyCode::PageUp => Action::PageUp,
        KeyCode::PageDown => Action::PageDown,
        KeyCode::Home | KeyCode::Char('g') => Action::First,
        KeyCode::End | KeyCode::Char('G') => Action::Last,
        KeyCode::Char('r') => Action::Request(Verb::Restart),
        KeyCode::Char('s') => Action::Request(Verb::Stop),
        KeyCode::Char('S') => Action::Request(Verb::Start),
        KeyCode::Char('l') => Action::ToggleLogs,
        KeyCode::Char('q') | KeyCode::Esc => Action::Quit,
        _ => return None,
    })
}

/// What the fetcher or a request brought back.
#[derive(Debug, Clone)]
pub enum Update {
    /// A `ps` answer.
    Sample(Sample),
    /// `inspect` of a plugin (the selected one, when it was asked).
    Detail(Box<PluginInfo>),
    /// The last lines of a plugin's log file.
    Log {
        /// The plugin.
        name: String,
        /// Its last lines, oldest first, as stored.
        lines: Vec<String>,
    },
    /// A request was carried out, or failed saying why.
    Done {
        /// What was asked.
        verb: Verb,
        /// Of which plugin.
        name: String,
        /// Its outcome.
        result: Result<(), String>,
    },
    /// Something to tell the user that changes nothing else (the
    /// supervisor was slow to answer, say).
    Note(String),
}

/// What the loop must do after the model took an action or an update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Nothing changed on screen.
    Nothing,
    /// Draw again (after telling the fetcher what is selected now and
    /// whether the log pane is open, if that changed).
    Redraw,
    /// Ask the supervisor to do `Verb` to the plugin, and draw.
    Request(Verb, String),
    /// Refresh now (a request is done), and draw.
    Refresh,
    /// Leave.
    Quit,
}

/// Everything `corral top` shows.
#[derive(Debug, Default)]
pub struct Model {
    before: Option<Sample>,
    now: Option<Sample>,
    selected: Option<String>,
    detail: Option<PluginInfo>,
    log: Option<(String, Vec<String>)>,
    log_pane: bool,
    message: Option<String>,
}

impl Model {
    /// A model with nothing sampled yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes what the fetcher or a request brought back.
    pub fn update(&mut self, update: Update) -> Effect {
        match update {
            Update::Sample(sample) => self.sampled(sample),
            Update::Detail(info) => {
                if self.selected.as_deref() != Some(info.status.name.as_str()) {
                    return Effect::Nothing;
                }
                self.detail = Some(*info);
                Effect::Redraw
            }
            Update::Log { name, lines } => {
                if self.selected.as_deref() != Some(name.as_str()) {
                    return Effect::Nothing;
                }
                self.log = Some((name, lines));
                Effect::Redraw
            }
            Update::Done { verb, name, result } => {
                self.message = Some(match result {
                    Ok(()) => format!("{} {name}: done", verb.as_str()),
                    Err(why) => format!("{} {name} failed: {why}", verb.as_str()),
                });
                Effect::Refresh
            }
            Update::Note(note) => {
                self.message = Some(note);
                Effect::Redraw
            }
        }
    }

    /// Takes a new `ps` answer; keeps the selection on the same plugin, or
    /// at the same place when that plugin is gone.
    fn sampled(&mut self, sample: Sample) -> Effect {
        let old_index = self.selected_index();
        self.before = self.now.replace(sample);
        if self.selected_index().is_some() {
            return Effect::Redraw;
        }
        let rows = self.statuses();
        let pick = old_index.unwrap_or(0).min(rows.len().saturating_sub(1));
        match rows.get(pick).map(|r| r.name.clone()) {
            Some(name) => self.select(name),
            None => {
                self.selected = None;
                Effect::Redraw
            }
        }
    }

    /// Does what a key asked for.
    pub fn apply(&mut self, action: Action) -> Effect {
        let len = self.statuses().len();
        let at = self.selected_index();
        let move_to = |to: usize| to.min(len.saturating_sub(1));
        let target = match action {
            Action::Quit => return Effect::Quit,
            Action::ToggleLogs => {
                self.log_pane = !self.log_pane;
                return Effect::Redraw;
            }
            Action::Request(verb) => {
                let Some(name) = self.selected.clone() else {
                    return Effect::Nothing;
                };
                self.message = Some(format!("{} {name}…", verb.doing()));
                return Effect::Request(verb, name);
            }
            Action::Up => at.map_or(0, |i| i.saturating_sub(1)),
            Action::Down => at.map_or(0, |i| move_to(i + 1)),
            Action::PageUp => at.map_or(0, |i| i.saturating_sub(PAGE)),
            Action::PageDown => at.map_or(0, |i| move_to(i + PAGE)),
            Action::First => 0,
            Action::Last => move_to(len),
        };
        match self.statuses().get(target) {
            Some(row) if Some(target) != at => {
                let name = row.name.clone();
                self.select(name)
            }
            _ => Effect::Nothing,
        }
    }

    fn select(&mut self, name: String) -> Effect {
        self.detail = None;
        self.log = None;
        self.selected = Some(name);
        Effect::Redraw
    }

    fn statuses(&self) -> &[PluginStatus] {
        self.now.as_ref().map_or(&[], |s| s.rows.as_slice())
    }

    /// The table's rows, in the fleet's order.
    pub fn rows(&self) -> Vec<Row<'_>> {
        let (Some(now), before) = (&self.now, &self.before) else {
            return Vec::new();
        };
        let secs = before.as_ref().map_or(0.0, |b| {
            now.at.saturating_duration_since(b.at).as_secs_f64()
        });
        now.rows
            .iter()
            .map(|status| Row {
                status,
                rates: rates(
                    before
                        .as_ref()
                        .and_then(|b| b.rows.iter().find(|r| r.name == status.name)),
                    status,
                    secs,
                ),
            })
            .collect()
    }

    /// Whether a `ps` answer has arrived yet.
    pub fn sampled_yet(&self) -> bool {
        self.now.is_some()
    }

    /// The selected plugin's name.
    pub fn selected(&self) -> Option<&str> {
        self.selected.as_deref()
    }

    /// The selected plugin's row number.
    pub fn selected_index(&self) -> Option<usize> {
        let name = self.selected.as_deref()?;
        self.statuses().iter().position(|r| r.name == name)
    }

    /// The selected plugin's `inspect`, once it has arrived.
    pub fn detail(&self) -> Option<&PluginInfo> {
        self.detail.as_ref()
    }

    /// The selected plugin's last log lines, once read.
    pub fn log_lines(&self) -> Option<&[String]> {
        self.log.as_ref().map(|(_, lines)| lines.as_slice())
    }

    /// Whether the log pane is open.
    pub fn log_pane(&self) -> bool {
        self.log_pane
    }

    /// The last message for the status line.
    pub fn message(&self) -> Option<&str> {
        self.message.as_deref()
    }

    /// How many plugins there are, and how many are in each state present,
    /// such as `3 plugins: 2 running, 1 failed`.
    pub fn summary(&self) -> String {
        let rows = self.statuses();
        if rows.is_empty() {
            return "no plugins".into();
        }
        let mut counts: Vec<(PluginState, usize)> = Vec::new();
        for r in rows {
            match counts.iter_mut().find(|(s, _)| *s == r.state) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.state, 1)),
            }
        }
        counts.sort_by_key(|(s, _)| s.as_str());
        let states: Vec<String> = counts.iter().map(|(s, n)| format!("{n} {s}")).collect();
        let plural = if rows.len() == 1 { "" } else { "s" };
        format!("{} plugin{plural}: {}", rows.len(), states.join(", "))
    }
}
