//! `corral top`'s screen, drawn from the [`Model`] with ratatui widgets: a
//! title line with the fleet's summary, the table (one row per plugin, the
//! selected one highlighted, scrolled to stay in view), the selected
//! plugin's detail (history, bus and call figures, last log lines) or, with
//! `l`, its log pane, and a footer with the keys and the last message.
//!
//! Text that may come from a plugin (exit details, notes, log lines) is
//! drawn with its control characters shown as escapes, so it cannot drive
//! the terminal. The view keeps only the table's scroll position.

use std::time::Duration;

use corral_proto::{PluginInfo, PluginState, PluginStatus, Transition};
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Cell, HighlightSpacing, Paragraph, Row as TableRow, Table, TableState,
};

use super::model::{KEYS_HELP, Model, Rates, Row};
use crate::cli::render::{human_bytes, human_uptime};
use crate::os::logs::visible_line;

/// Width of the memory bar, in cells.
const BAR: usize = 10;

/// The table's columns: heading and width (`None`: the rest of the line).
const COLUMNS: [(&str, Option<u16>); 11] = [
    ("NAME", None), // sized to the longest name
    ("STATE", Some(9)),
    ("PID", Some(8)),
    ("RESTARTS", Some(8)),
    ("UPTIME", Some(7)),
    ("MEMORY", Some(BAR as u16 + 14)),
    ("CPU%", Some(6)),
    ("CALLS/S", Some(7)),
    ("BUS IN/S", Some(8)),
    ("BUS OUT/S", Some(9)),
    ("LAST EXIT", None),
];

/// Draws the model; remembers where the table is scrolled to.
#[derive(Debug)]
pub struct View {
    table: TableState,
    /// How often the screen refreshes, for the title.
    interval: Duration,
    /// Whether to use colours (`NO_COLOR` unset).
    colour: bool,
}

impl View {
    /// A view refreshed every `interval`, in colour or not.
    pub fn new(interval: Duration, colour: bool) -> Self {
        Self {
            table: TableState::default(),
            interval,
            colour,
        }
    }

    /// Draws the whole screen.
    pub fn draw(&mut self, frame: &mut Frame<'_>, model: &Model) {
        let area = frame.area();
        let rows = model.rows();
        // The table takes what its rows need, at most a little over half.
        let wanted = u16::try_from(rows.len() + 1).unwrap_or(u16::MAX);
        let table_height = wanted.min((area.height.saturating_sub(2) * 11 / 20).max(4));
        let [title, table, detail, footer] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(table_height),
            Constraint::Min(3),
            Constraint::Length(1),
        ])
        .areas(area);
        frame.render_widget(Paragraph::new(self.title(model)), title);
        self.draw_table(frame, table, &rows, model);
        match (model.log_pane(), model.selected()) {
            (_, None) => {}
            (true, Some(name)) => draw_log(frame, detail, name, model.log_lines(), true),
            (false, Some(name)) => self.draw_detail(frame, detail, name, model, &rows),
        }
        frame.render_widget(Paragraph::new(footer_line(model)), footer);
    }

    fn title(&self, model: &Model) -> Line<'static> {
        let summary = if model.sampled_yet() {
            model.summary()
        } else {
            "waiting for the supervisor…".into()
        };
        Line::from(vec![
            Span::styled("corral top", Style::new().add_modifier(Modifier::BOLD)),
            Span::raw(format!(
                "  {summary}  (every {})",
                humantime::format_duration(self.interval)
            )),
        ])
    }

    fn draw_table(&mut self, frame: &mut Frame<'_>, area: Rect, rows: &[Row<'_>], model: &Model) {
        let name_width = rows
            .iter()
            .map(|r| visible_line(&r.status.name).chars().count())
            .max()
            .unwrap_or(0)
            .clamp(4, 32);
        let widths = COLUMNS.map(|(heading, width)| match (heading, width) {
            ("NAME", _) => Constraint::Length(u16::try_from(name_width).unwrap_or(32)),
            (_, Some(w)) => Constraint::Length(w),
            (_, None) => Constraint::Fill(1),
        });
        let header = TableRow::new(COLUMNS.map(|(h, _)| Cell::from(h)))
            .style(Style::new().add_modifier(Modifier::BOLD | Modifier::UNDERLINED));
        let body = rows.iter().map(|r| self.table_row(r));
        let table = Table::new(body, widths)
            .header(header)
            .column_spacing(1)
            .highlight_symbol("▶ ")
            .highlight_spacing(HighlightSpacing::Always)
            .row_highlight_style(Style::new().add_modifier(Modifier::REVERSED));
        self.table.select(model.selected_index());
        frame.render_stateful_widget(table, area, &mut self.table);
    }

    fn table_row(&self, row: &Row<'_>) -> TableRow<'static> {
        let s = row.status;
        let state = Span::styled(s.state.to_string(), self.state_style(s.state));
        let uptime = if s.uptime_ms == 0 {
            "-".into()
        } else {
            human_uptime(s.uptime_ms)
        };
        TableRow::new(vec![
            Cell::from(visible_line(&s.name).into_owned()),
            Cell::from(Line::from(state)),
            Cell::from(s.pid.map_or("-".into(), |p| p.to_string())),
            Cell::from(s.restarts.to_string()),
            Cell::from(uptime),
            Cell::from(self.memory(s)),
            Cell::from(percent(row.rates.cpu_percent)),
            Cell::from(rate(row.rates.calls)),
            Cell::from(rate(row.rates.bus_in)),
            Cell::from(rate(row.rates.bus_out)),
            Cell::from(
                visible_line(&s.last_exit.as_ref().map_or("-".into(), ToString::to_string))
                    .into_owned(),
            ),
        ])
    }

    fn state_style(&self, state: PluginState) -> Style {
        if !self.colour {
            return Style::new();
        }
        Style::new().fg(match state {
            PluginState::Running => Color::Green,
            PluginState::Failed | PluginState::Unhealthy => Color::Red,
            PluginState::Waiting
            | PluginState::Starting
            | PluginState::Backoff
            | PluginState::Stopping => Color::Yellow,
            _ => Color::DarkGray,
        })
    }

    /// RSS against the cap as a bar, then the figures: `███░░░░░░░ 19M/64M`.
    fn memory(&self, s: &PluginStatus) -> Line<'static> {
        let Some(max) = s.memory_max_bytes.filter(|&m| m > 0) else {
            return Line::from(if s.rss_bytes == 0 {
                "-".to_string()
            } else {
                human_bytes(s.rss_bytes)
            });
        };
        let (filled, ratio) = bar_fill(s.rss_bytes, max);
        let colour = match ratio {
            r if r >= 0.9 => Color::Red,
            r if r >= 0.75 => Color::Yellow,
            _ => Color::Green,
        };
        let style = if self.colour {
            Style::new().fg(colour)
        } else {
            Style::new()
        };
        Line::from(vec![
            Span::styled("█".repeat(filled), style),
            Span::styled("░".repeat(BAR - filled), style.add_modifier(Modifier::DIM)),
            Span::raw(format!(
                " {}/{}",
                human_bytes(s.rss_bytes),
                human_bytes(max)
            )),
        ])
    }

    fn draw_detail(
        &self,
        frame: &mut Frame<'_>,
        area: Rect,
        name: &str,
        model: &Model,
        rows: &[Row<'_>],
    ) {
        let [history, right] =
            Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)])
                .areas(area);
        let [figures, log] =
            Layout::vertical([Constraint::Length(8), Constraint::Min(3)]).areas(right);
        let title = format!(" {} ", visible_line(name));
        let info = model.detail();
        let lines = info.map_or_else(|| vec![Line::from("…")], |i| history_lines(i, history));
        let block = Block::bordered().title(format!("{title}history (newest last) "));
        frame.render_widget(Paragraph::new(lines).block(block), history);
        let rates = rows
            .iter()
            .find(|r| r.status.name == name)
            .map(|r| r.rates)
            .unwrap_or_default();
        let lines = info.map_or_else(|| vec![Line::from("…")], |i| figure_lines(i, &rates));
        let block = Block::bordered().title(format!("{title}bus and calls "));
        frame.render_widget(Paragraph::new(lines).block(block), figures);
        draw_log(frame, log, name, model.log_lines(), false);
    }
}

/// How many of the bar's cells `rss` fills against `max`, and the ratio.
fn bar_fill(rss: u64, max: u64) -> (usize, f64) {
    let ratio = rss as f64 / max as f64;
    let filled = (ratio * BAR as f64).round().clamp(0.0, BAR as f64);
    // Clamped to 0..=BAR, so the cast keeps it whole.
    (filled as usize, ratio)
}

/// A percentage, such as `12.5`, or `-` when it cannot be told.
fn percent(value: Option<f64>) -> String {
    value.map_or("-".into(), |v| format!("{v:.1}"))
}

/// A rate per second, short: `0`, `4.5`, `120`, `3.2k`, `1.1M`.
pub(super) fn rate(value: Option<f64>) -> String {
    match value {
        None => "-".into(),
        Some(0.0) => "0".into(),
        Some(v) if v < 10.0 => format!("{v:.1}"),
        Some(v) if v < 1_000.0 => format!("{v:.0}"),
        Some(v) if v < 1_000_000.0 => format!("{:.1}k", v / 1_000.0),
        Some(v) => format!("{:.1}M", v / 1_000_000.0),
    }
}

/// The last transitions that fit in `area` (inside its border), oldest first.
fn history_lines(info: &PluginInfo, area: Rect) -> Vec<Line<'static>> {
    let fit = usize::from(area.height.saturating_sub(2));
    let skip = info.history.len().saturating_sub(fit);
    info.history[skip..].iter().map(transition_line).collect()
}

fn transition_line(t: &Transition) -> Line<'static> {
    let at = humantime::format_rfc3339_seconds(
        std::time::UNIX_EPOCH + Duration::from_millis(t.at_unix_ms),
    );
    Line::from(crate::cli::render::transition_line(
        t,
        &at.to_string(),
        "→",
        " ",
    ))
}

/// The selected plugin's bus and call figures.
fn figure_lines(info: &PluginInfo, rates: &Rates) -> Vec<Line<'static>> {
    let (s, b) = (&info.status, &info.bus);
    let subscriptions = if b.subscriptions.is_empty() {
        "none".to_string()
    } else {
        b.subscriptions.join(", ")
    };
    let lines = [
        format!(
            "in   {} delivered ({}/s), {} queued ({}), {} dropped",
            b.delivered,
            rate(rates.bus_in),
            b.queued,
            human_bytes(b.queued_bytes),
            b.dropped
        ),
        format!(
            "out  {} published ({}/s), {} denied, {} refused",
            b.published,
            rate(rates.bus_out),
            b.denied_publishes,
            b.refused_payloads
        ),
        format!(
            "     {} retained ({}), {} failed delivers",
            b.retained,
            human_bytes(b.retained_bytes),
            b.delivery_failures
        ),
        format!("subscriptions  {subscriptions}"),
        format!("calls  {} ({}/s)", s.calls, rate(rates.calls)),
        match s.pid {
            Some(pid) => format!(
                "cpu  {} ms by process {pid} ({}%)",
                s.cpu_ms,
                percent(rates.cpu_percent)
            ),
            None => "cpu  no process".to_string(),
        },
    ];
    lines
        .iter()
        .map(|l| Line::from(visible_line(l).into_owned()))
        .collect()
}

/// The plugin's last log lines that fit, as a pane of its own (`pane`) or
/// beside its detail.
fn draw_log(frame: &mut Frame<'_>, area: Rect, name: &str, lines: Option<&[String]>, pane: bool) {
    let title = if pane {
        format!(" log: {} (following; l closes) ", visible_line(name))
    } else {
        " last log lines (l follows) ".to_string()
    };
    let fit = usize::from(area.height.saturating_sub(2));
    let text: Vec<Line<'static>> = match lines {
        None => vec![Line::from("…")],
        Some([]) => vec![Line::from("(nothing logged yet)")],
        Some(lines) => lines[lines.len().saturating_sub(fit)..]
            .iter()
            .map(|l| Line::from(visible_line(l).into_owned()))
            .collect(),
    };
    frame.render_widget(
        Paragraph::new(text).block(Block::bordered().title(title)),
        area,
    );
}

fn footer_line(model: &Model) -> Line<'static> {
    let mut spans = vec![Span::styled(
        KEYS_HELP,
        Style::new().add_modifier(Modifier::DIM),
    )];
    if let Some(message) = model.message() {
        spans.push(Span::raw("  │ "));
        spans.push(Span::raw(visible_line(message).into_owned()));
    }
    Line::from(spans)
}

#[cfg(test)]
mod tests;
