//! The control socket's bounds as pure decisions: which connection gives up
//! its slot when every slot is taken, how long the accept loop pauses after
//! an accept error, and how often a repeated warning is logged. The server
//! acts on them; nothing here does I/O or reads the clock.

use std::time::{Duration, Instant};

/// One open control connection, as the slot table sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Occupant {
    /// Its slot id.
    pub(super) id: u64,
    /// When it last received a request (or was accepted).
    pub(super) last_active: Instant,
    /// Requests it is serving now.
    pub(super) in_flight: usize,
}

/// The connection to close so that a new one fits, when all `capacity`
/// slots are taken: the one idle longest (serving no request). `None` when
/// there is room (no one is closed) is not asked here; `None` means every
/// connection is busy and the newcomer is refused instead.
pub(super) fn victim(occupants: &[Occupant]) -> Option<u64> {
    occupants
        .iter()
        .filter(|o| o.in_flight == 0)
        .min_by_key(|o| (o.last_active, o.id))
        .map(|o| o.id)
}

/// The first pause after an accept error.
pub(super) const ACCEPT_PAUSE_MIN: Duration = Duration::from_millis(10);
/// The longest pause after accept errors in a row.
pub(super) const ACCEPT_PAUSE_MAX: Duration = Duration::from_secs(1);

/// The pause after an accept error, given the previous one (`None` after a
/// success): doubling from [`ACCEPT_PAUSE_MIN`] to [`ACCEPT_PAUSE_MAX`]. Out
/// of file descriptors, accept fails at once every time (the connection
/// stays in the backlog), so without a pause the loop spins.
pub(super) fn accept_pause(previous: Option<Duration>) -> Duration {
    previous.map_or(ACCEPT_PAUSE_MIN, |p| {
        p.saturating_mul(2)
            .clamp(ACCEPT_PAUSE_MIN, ACCEPT_PAUSE_MAX)
    })
}

/// At most one line per [`Throttle::PERIOD`] for one kind of warning, with
/// the count of the ones left out since the last line.
#[derive(Debug, Default)]
pub(super) struct Throttle {
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    /// The shortest time between two lines.
    pub(super) const PERIOD: Duration = Duration::from_secs(1);

    /// Whether to log now; `Some(n)` with the number of lines suppressed
    /// since the last one, `None` to stay silent (it is counted).
    pub(super) fn admit(&mut self, now: Instant) -> Option<u64> {
        match self.last {
            Some(last) if now.duration_since(last) < Self::PERIOD => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        }
    }
}

/// The suffix a throttled line carries: how many like it were left out.
pub(super) fn suppressed_note(n: u64) -> String {
    if n == 0 {
        String::new()
    } else {
        format!(" ({n} more like it in the last second not logged)")
    }
}

/// The spawns (pids of the supervisor's children) already named in a
/// refusal line, so each is logged once; the oldest are forgotten past
/// [`Seen::KEPT`].
#[derive(Debug, Default)]
pub(super) struct Seen {
    pids: std::collections::VecDeque<u32>,
}

impl Seen {
    /// Spawns remembered.
    pub(super) const KEPT: usize = 1024;

    /// Whether `pid` is new (it is remembered from now on).
    pub(super) fn first_sight(&mut self, pid: u32) -> bool {
        if self.pids.contains(&pid) {
            return false;
        }
        if self.pids.len() == Self::KEPT {
            self.pids.pop_front();
        }
        self.pids.push_back(pid);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_idle_connection_makes_room_and_a_busy_one_never() {
        let t0 = Instant::now();
        let at = |s| t0 + Duration::from_secs(s);
        let occ = |id, s, in_flight| Occupant {
            id,
            last_active: at(s),
            in_flight,
        };
        assert_eq!(victim(&[occ(1, 5, 0), occ(2, 1, 0), occ(3, 3, 0)]), Some(2));
        assert_eq!(victim(&[occ(1, 5, 0), occ(2, 1, 1)]), Some(1), "2 is busy");
        assert_eq!(victim(&[occ(1, 1, 2), occ(2, 1, 1)]), None, "all busy");
        assert_eq!(victim(&[occ(7, 1, 0), occ(4, 1, 0)]), Some(4), "ties by id");
        assert_eq!(victim(&[]), None);
    }

    #[test]
    fn accept_pauses_double_to_a_second() {
        let mut pause = None;
        let mut seen = Vec::new();
        for _ in 0..10 {
            let p = accept_pause(pause);
            seen.push(p.as_millis());
            pause = Some(p);
        }
        assert_eq!(seen, [10, 20, 40, 80, 160, 320, 640, 1000, 1000, 1000]);
        assert_eq!(accept_pause(None), ACCEPT_PAUSE_MIN, "a success resets it");
    }

    #[test]
    fn a_warning_is_logged_once_a_second_with_the_count_left_out() {
        let t0 = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.admit(t0), Some(0));
        for ms in 1..=999 {
            assert_eq!(t.admit(t0 + Duration::from_millis(ms)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_secs(1)), Some(999));
        assert_eq!(t.admit(t0 + Duration::from_millis(1500)), None);
        assert_eq!(t.admit(t0 + Duration::from_secs(5)), Some(1));
        assert_eq!(suppressed_note(0), "");
        assert!(suppressed_note(3).contains("3 more"));
    }

    #[test]
    fn each_spawn_is_named_once_and_memory_is_bounded() {
        let mut seen = Seen::default();
        assert!(seen.first_sight(7));
        assert!(!seen.first_sight(7));
        for pid in 100..100 + Seen::KEPT as u32 {
            seen.first_sight(pid);
        }
        assert_eq!(seen.pids.len(), Seen::KEPT);
        assert!(seen.first_sight(7), "forgotten once it is the oldest");
    }
}
