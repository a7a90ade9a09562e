//! How many plugins the root supervisor starts at once. Started all
//! together, a cold start of hundreds of plugins makes hundreds of
//! processes runnable at the same moment: on a machine of few cores the
//! supervisor, and whoever asks it for status, then waits its turn behind
//! every one of them. So a start takes one of a few slots, and holds it
//! until the plugin leaves `starting` or for [`HOLD`], whichever comes
//! first: a plugin slow to shake hands delays the next start by that much
//! at most, never for its whole `handshake_timeout`. Pure: the root actor
//! asks and carries out.

use std::time::Duration;

use tokio::time::Instant;

/// The longest one start holds its slot.
pub const HOLD: Duration = Duration::from_millis(10);

/// Starts in progress, at most `slots` at once.
#[derive(Debug)]
pub struct Pacing {
    slots: usize,
    /// The plugins (by place) holding a slot, and since when.
    held: Vec<(usize, Instant)>,
}

impl Pacing {
    /// Room for `slots` starts at once (at least one).
    pub fn new(slots: usize) -> Self {
        Self {
            slots: slots.max(1),
            held: Vec::new(),
        }
    }

    /// Slots for this machine: two per core.
    pub fn for_this_machine() -> Self {
        Self::new(2 * std::thread::available_parallelism().map_or(1, |n| n.get()))
    }

    /// Frees plugin `i`'s slot (it left `starting`).
    pub fn release(&mut self, i: usize) {
        self.held.retain(|(j, _)| *j != i);
    }

    /// How many more may start at `now`, once the slots held past
    /// [`HOLD`] are freed.
    pub fn room(&mut self, now: Instant) -> usize {
        self.held
            .retain(|(_, since)| now.duration_since(*since) < HOLD);
        self.slots.saturating_sub(self.held.len())
    }

    /// Plugin `i` starts at `now`, in a slot.
    pub fn take(&mut self, i: usize, now: Instant) {
        self.release(i);
        self.held.push((i, now));
    }

    /// When the oldest slot is freed by time, if any is held.
    pub fn next_free(&self) -> Option<Instant> {
        self.held.iter().map(|(_, since)| *since + HOLD).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_take_slots_until_they_leave_starting_or_hold_them_too_long() {
        let t = Instant::now();
        let mut p = Pacing::new(2);
        assert_eq!(p.room(t), 2);
        p.take(0, t);
        p.take(1, t);
        assert_eq!(p.room(t), 0, "both slots held");
        assert_eq!(p.next_free(), Some(t + HOLD));
        p.release(0);
        assert_eq!(p.room(t), 1, "one left starting");
        assert_eq!(p.room(t + HOLD), 2, "the other held its slot too long");
        assert_eq!(p.next_free(), None);
    }

    #[test]
    fn a_plugin_started_again_holds_one_slot_and_there_is_always_one() {
        let t = Instant::now();
        let mut p = Pacing::new(0);
        assert_eq!(p.room(t), 1);
        p.take(3, t);
        p.take(3, t + Duration::from_millis(1));
        assert_eq!(p.room(t + Duration::from_millis(1)), 0);
        assert_eq!(p.next_free(), Some(t + Duration::from_millis(1) + HOLD));
    }
}
