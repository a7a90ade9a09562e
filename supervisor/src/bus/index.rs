//! The subscription index: which subscribers hold a pattern that matches a
//! topic, found by walking the topic's segments down a trie of patterns
//! (one node per segment, with `*` and `>` nodes of their own). Matching a
//! topic visits only the nodes along the paths the topic can take, so its
//! cost does not grow with the patterns that other subscribers hold under
//! other prefixes. Its answers are exactly those of the protocol's
//! [`matches`](corral_proto::event::matches), checked by its tests.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Every subscriber's patterns, by segment.
#[derive(Debug, Default)]
pub(super) struct Index {
    root: Node,
}

#[derive(Debug, Default)]
struct Node {
    /// Literal next segments.
    children: HashMap<Box<str>, Node>,
    /// A `*` next segment.
    star: Option<Box<Node>>,
    /// Subscribers whose pattern ends at this node.
    here: HashSet<Arc<str>>,
    /// Subscribers whose pattern ends at this node with `>`: one or more
    /// further segments.
    tail: HashSet<Arc<str>>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty()
            && self.star.is_none()
            && self.here.is_empty()
            && self.tail.is_empty()
    }

    /// The node for `segs` below this one, made on the way.
    fn make(&mut self, segs: &[&str]) -> &mut Node {
        match segs.split_first() {
            None => self,
            Some((&"*", rest)) => self.star.get_or_insert_with(Box::default).make(rest),
            Some((seg, rest)) => self.children.entry((*seg).into()).or_default().make(rest),
        }
    }

    /// Removes `name` from the end of `segs` (last one `>` when `tail`),
    /// pruning what is left empty. Whether this node is now empty.
    fn remove(&mut self, segs: &[&str], tail: bool, name: &str) -> bool {
        match segs.split_first() {
            None if tail => {
                self.tail.remove(name);
            }
            None => {
                self.here.remove(name);
            }
            Some((&"*", rest)) => {
                if let Some(star) = &mut self.star
                    && star.remove(rest, tail, name)
                {
                    self.star = None;
                }
            }
            Some((seg, rest)) => {
                if let Some(child) = self.children.get_mut(*seg)
                    && child.remove(rest, tail, name)
                {
                    self.children.remove(*seg);
                }
            }
        }
        self.is_empty()
    }

    /// Adds to `out` every subscriber whose pattern, from this node on,
    /// matches the rest of a topic, `segs`.
    fn walk(&self, mut segs: std::str::Split<'_, char>, out: &mut Vec<Arc<str>>) {
        let Some(seg) = segs.next() else {
            out.extend(self.here.iter().cloned());
            return;
        };
        out.extend(self.tail.iter().cloned());
        match (self.children.get(seg), &self.star) {
            (Some(child), Some(star)) => {
                child.walk(segs.clone(), out);
                star.walk(segs, out);
            }
            (Some(next), None) => next.walk(segs, out),
            (None, Some(star)) => star.walk(segs, out),
            (None, None) => {}
        }
    }
}

/// A pattern's segments, and whether it ends in `>` (left out of them).
fn split(pattern: &str) -> (Vec<&str>, bool) {
    let mut segs: Vec<&str> = pattern.split('.').collect();
    let tail = segs.last() == Some(&">");
    if tail {
        segs.pop();
    }
    (segs, tail)
}

impl Index {
    /// Records that `name` holds `pattern` (a well-formed one).
    pub(super) fn insert(&mut self, name: &Arc<str>, pattern: &str) {
        let (segs, tail) = split(pattern);
        let node = self.root.make(&segs);
        if tail {
            node.tail.insert(Arc::clone(name));
        } else {
            node.here.insert(Arc::clone(name));
        }
    }

    /// Records that `name` no longer holds `pattern`.
    pub(super) fn remove(&mut self, name: &str, pattern: &str) {
        let (segs, tail) = split(pattern);
        self.root.remove(&segs, tail, name);
    }

    /// Replaces what `name` holds: `old` out, `new` in.
    pub(super) fn replace(&mut self, name: &Arc<str>, old: &[String], new: &[String]) {
        for p in old {
            self.remove(name, p);
        }
        for p in new {
            self.insert(name, p);
        }
    }

    /// Puts into `out` (emptied first) the subscribers holding a pattern
    /// that matches `topic`, each once.
    pub(super) fn matching_into(&self, topic: &str, out: &mut Vec<Arc<str>>) {
        out.clear();
        self.root.walk(topic.split('.'), out);
        if out.len() > 1 {
            // Each name is one allocation, shared by every node it is in.
            out.sort_unstable_by_key(|n| Arc::as_ptr(n).cast::<u8>());
            out.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
    }

    /// The subscribers holding a pattern that matches `topic`, each once.
    #[cfg(test)]
    fn matching(&self, topic: &str) -> Vec<Arc<str>> {
        let mut out = Vec::new();
        self.matching_into(topic, &mut out);
        out.sort_unstable();
        out
    }

    /// Whether it holds nothing at all (every node pruned).
    #[cfg(test)]
    fn is_empty(&self) -> bool {
        self.root.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use corral_proto::event::matches;
    use proptest::prelude::*;

    use super::*;

    /// The reference: every `(name, pattern)` checked with the protocol's
    /// own matcher.
    fn reference(held: &[(Arc<str>, String)], topic: &str) -> Vec<Arc<str>> {
        let mut out: Vec<Arc<str>> = held
            .iter()
            .filter(|(_, p)| matches(p, topic))
            .map(|(n, _)| Arc::clone(n))
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn segment() -> impl Strategy<Value = String> {
        prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_string)
    }

    fn topic() -> impl Strategy<Value = String> {
        prop::collection::vec(segment(), 1..5).prop_map(|s| s.join("."))
    }

    fn pattern() -> impl Strategy<Value = String> {
        let seg = prop_oneof![3 => segment(), 1 => Just("*".to_string())];
        (prop::collection::vec(seg, 0..4), any::<bool>()).prop_filter_map(
            "a pattern has a segment",
            |(mut segs, tail)| {
                if tail {
                    segs.push(">".into());
                }
                (!segs.is_empty()).then(|| segs.join("."))
            },
        )
    }

    /// Names and patterns; each name is one allocation, as in the bus.
    fn held() -> impl Strategy<Value = Vec<(Arc<str>, String)>> {
        let names: [Arc<str>; 3] = ["p".into(), "q".into(), "r".into()];
        prop::collection::vec((0..3usize, pattern()), 0..12).prop_map(move |held| {
            held.into_iter()
                .map(|(i, p)| (Arc::clone(&names[i]), p))
                .collect()
        })
    }

    proptest! {
        #[test]
        fn it_matches_exactly_what_the_protocol_matches(
            held in held(),
            topics in prop::collection::vec(topic(), 1..8),
        ) {
            let mut index = Index::default();
            for (name, p) in &held {
                index.insert(name, p);
            }
            for t in &topics {
                prop_assert_eq!(index.matching(t), reference(&held, t), "topic {}", t);
            }
        }

        #[test]
        fn removing_patterns_leaves_what_is_still_held(
            held in held(),
            keep in prop::collection::vec(any::<bool>(), 12),
            topics in prop::collection::vec(topic(), 1..8),
        ) {
            let mut index = Index::default();
            let mut held = held;
            // Each subscriber holds a pattern once.
            held.sort();
            held.dedup();
            for (name, p) in &held {
                index.insert(name, p);
            }
            let (kept, gone): (Vec<_>, Vec<_>) =
                held.iter().enumerate().partition(|(i, _)| keep[*i]);
            for (_, (name, p)) in &gone {
                index.remove(name, p);
            }
            let kept: Vec<_> = kept.into_iter().map(|(_, h)| h.clone()).collect();
            for t in &topics {
                prop_assert_eq!(index.matching(t), reference(&kept, t), "topic {}", t);
            }
            for (name, p) in &kept {
                index.remove(name, p);
            }
            prop_assert!(index.is_empty());
        }
    }

    #[test]
    fn a_subscriber_matching_by_several_patterns_is_named_once() {
        let mut index = Index::default();
        let p: Arc<str> = "p".into();
        for pattern in ["a.>", "a.*", "a.b", ">"] {
            index.insert(&p, pattern);
        }
        assert_eq!(index.matching("a.b"), [Arc::clone(&p)]);
        assert!(index.matching("b").contains(&p));
        index.replace(
            &p,
            &["a.>".into(), "a.*".into(), "a.b".into(), ">".into()],
            &[],
        );
        assert!(index.matching("a.b").is_empty());
        assert!(index.is_empty());
    }

    #[test]
    fn unrelated_patterns_are_not_visited() {
        let mut index = Index::default();
        let crowd: Arc<str> = "crowd".into();
        for i in 0..10_000 {
            index.insert(&crowd, &format!("crowd.k{i}.>"));
        }
        let p: Arc<str> = "p".into();
        index.insert(&p, "b.*");
        // Walking `b.x` never enters the crowd's subtree.
        assert_eq!(index.matching("b.x"), [p]);
        assert_eq!(index.matching("crowd.k42.x"), [crowd]);
        assert_eq!(index.root.children.len(), 2);
    }
}
