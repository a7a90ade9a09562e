//! [`Seen`]: which events of each node this bridge has put on its bus, so
//! one sent again (after a broken connection, or redelivered by
//! JetStream) is dropped, not delivered twice. A node's events count
//! within one run of its bridge (`Corral-Boot`): a new run starts afresh.

use std::collections::HashMap;

/// Nodes remembered at most; past it the memory starts again (a repeat
/// may then pass once), so a flood of made-up node names costs nothing.
const MAX_NODES: usize = 4096;

/// The last sequence put on the bus, per node and run.
#[derive(Debug, Default)]
pub(crate) struct Seen {
    last: HashMap<String, (u64, u64)>,
}

impl Seen {
    /// Forgets `node`'s events: the next of them passes, whatever its sequence.
    pub(crate) fn forget(&mut self, node: &str) {
        self.last.remove(node);
    }

    /// Whether event `seq` of `node`'s run `boot` is new; remembers it.
    pub(crate) fn fresh(&mut self, node: &str, boot: u64, seq: u64) -> bool {
        match self.last.get_mut(node) {
            Some((b, s)) if *b == boot => {
                if seq <= *s {
                    return false;
                }
                *s = seq;
            }
            Some(entry) => *entry = (boot, seq),
            None => {
                if self.last.len() >= MAX_NODES {
                    self.last.clear();
                }
                self.last.insert(node.to_string(), (boot, seq));
            }
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeat_is_dropped_and_a_new_run_starts_afresh() {
        let mut seen = Seen::default();
        assert!(seen.fresh("a", 1, 5));
        assert!(seen.fresh("a", 1, 6));
        assert!(!seen.fresh("a", 1, 6));
        assert!(!seen.fresh("a", 1, 3));
        assert!(seen.fresh("b", 1, 1));
        assert!(seen.fresh("a", 2, 1));
        assert!(!seen.fresh("a", 2, 1));
    }
}
