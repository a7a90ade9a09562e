//! The `requires` graph, as pure functions of names and edges: the start
//! order (and the unknown names or the cycle that prevent one), who depends
//! on a plugin (directly, and transitively for `rest_for_one`), the levels a
//! fleet stops in (dependents before what they require), and who may start
//! now.
//!
//! It knows nothing of configs or actors: config validation builds a
//! [`Graph`] from the resolved specs, and the root supervisor from its plugin
//! handles. Lists come back in the order the nodes were given unless said
//! otherwise.

use std::collections::HashMap;
use std::fmt;

/// Plugins and what each requires. Names are unique; a repeated name is
/// ignored after its first appearance.
#[derive(Debug, Clone)]
pub struct Graph<'a> {
    nodes: Vec<Node<'a>>,
    index: HashMap<&'a str, usize>,
}

#[derive(Debug, Clone, Copy)]
struct Node<'a> {
    name: &'a str,
    requires: &'a [String],
}

/// A requirement that names no node of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unknown<'a> {
    /// The node that has the requirement.
    pub node: &'a str,
    /// The name it requires.
    pub requirement: &'a str,
}

impl fmt::Display for Unknown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` requires unknown `{}`", self.node, self.requirement)
    }
}

/// A dependency cycle: each name requires the next, and the last name is the
/// first again (`a -> b -> a`; a self-loop is `a -> a`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle<'a>(pub Vec<&'a str>);

impl fmt::Display for Cycle<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dependency cycle: {}", self.0.join(" -> "))
    }
}

/// Why there is no start order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderError<'a> {
    /// Requirements that name no node, every one of them.
    Unknown(Vec<Unknown<'a>>),
    /// A cycle among the nodes.
    Cycle(Cycle<'a>),
}

impl<'a> Graph<'a> {
    /// The graph of `nodes`, each a name and the names it requires.
    pub fn new(nodes: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let mut graph = Self {
            nodes: Vec::new(),
            index: HashMap::new(),
        };
        for (name, requires) in nodes {
            if !graph.index.contains_key(name) {
                graph.index.insert(name, graph.nodes.len());
                graph.nodes.push(Node { name, requires });
            }
        }
        graph
    }

    fn node(&self, name: &str) -> Option<&Node<'a>> {
        self.index.get(name).map(|&i| &self.nodes[i])
    }

    /// Every requirement that names no node, by node then requirement.
    pub fn unknown(&self) -> Vec<Unknown<'a>> {
        self.nodes
            .iter()
            .flat_map(|n| {
                n.requires
                    .iter()
                    .filter(|r| !self.index.contains_key(r.as_str()))
                    .map(|r| Unknown {
                        node: n.name,
                        requirement: r,
                    })
            })
            .collect()
    }

    /// Every node after those it requires, ties by name (each step takes
    /// the first name, in name order, whose requirements are all placed).
    /// Unknown requirements are reported first, all of them; otherwise the
    /// cycle found from the first name that cannot be placed.
    pub fn start_order(&self) -> Result<Vec<&'a str>, OrderError<'a>> {
        let unknown = self.unknown();
        if !unknown.is_empty() {
            return Err(OrderError::Unknown(unknown));
        }
        let mut left: Vec<&Node<'a>> = self.nodes.iter().collect();
        left.sort_by(|a, b| a.name.cmp(b.name));
        let mut ordered: Vec<&'a str> = Vec::with_capacity(left.len());
        while !left.is_empty() {
            let ready = left
                .iter()
                .position(|n| n.requires.iter().all(|r| ordered.contains(&r.as_str())));
            match ready {
                Some(i) => ordered.push(left.remove(i).name),
                None => return Err(OrderError::Cycle(cycle_among(&left))),
            }
        }
        Ok(ordered)
    }

    /// The nodes that require `name` themselves.
    pub fn direct_dependents(&self, name: &str) -> Vec<&'a str> {
        self.nodes
            .iter()
            .filter(|n| n.name != name && n.requires.iter().any(|r| r == name))
            .map(|n| n.name)
            .collect()
    }

    /// The nodes that require `name`, directly or through others (what
    /// `rest_for_one` restarts with it); `name` itself is not among them.
    pub fn dependents(&self, name: &str) -> Vec<&'a str> {
        let mut found = vec![false; self.nodes.len()];
        let mut todo = vec![name];
        while let Some(current) = todo.pop() {
            for (i, n) in self.nodes.iter().enumerate() {
                if !found[i] && n.name != name && n.requires.iter().any(|r| r == current) {
                    found[i] = true;
                    todo.push(n.name);
                }
            }
        }
        self.nodes
            .iter()
            .zip(found)
            .filter(|(_, f)| *f)
            .map(|(n, _)| n.name)
            .collect()
    }

    /// The nodes grouped for stopping, first group first: a node's level is
    /// one more than the deepest node it requires (0 when it requires none),
    /// and the deepest level stops first, so dependents stop before what
    /// they require. Unknown requirements are ignored; an edge closing a
    /// cycle is too.
    pub fn stop_levels(&self) -> Vec<Vec<&'a str>> {
        let mut depth: Vec<Option<usize>> = vec![None; self.nodes.len()];
        for i in 0..self.nodes.len() {
            self.depth(i, &mut depth, &mut Vec::new());
        }
        let deepest = depth.iter().flatten().copied().max();
        let Some(deepest) = deepest else {
            return Vec::new();
        };
        (0..=deepest)
            .rev()
            .map(|level| {
                self.nodes
                    .iter()
                    .zip(&depth)
                    .filter(|(_, d)| **d == Some(level))
                    .map(|(n, _)| n.name)
                    .collect()
            })
            .collect()
    }

    fn depth(&self, i: usize, depth: &mut [Option<usize>], path: &mut Vec<usize>) -> usize {
        if let Some(d) = depth[i] {
            return d;
        }
        path.push(i);
        let mut d = 0;
        for r in self.nodes[i].requires {
            if let Some(&j) = self.index.get(r.as_str())
                && !path.contains(&j)
            {
                d = d.max(self.depth(j, depth, path) + 1);
            }
        }
        path.pop();
        depth[i] = Some(d);
        d
    }

    /// The first requirement of `name` that is not `ok` (`None` when all
    /// are, or when `name` is not a node).
    pub fn unmet(&self, name: &str, ok: impl Fn(&str) -> bool) -> Option<&'a str> {
        self.node(name)?
            .requires
            .iter()
            .map(String::as_str)
            .find(|r| !ok(r))
    }

    /// Who may start now: the nodes that are `waiting` and whose
    /// requirements are all `running`.
    pub fn ready(
        &self,
        waiting: impl Fn(&str) -> bool,
        running: impl Fn(&str) -> bool,
    ) -> Vec<&'a str> {
        self.nodes
            .iter()
            .filter(|n| waiting(n.name) && n.requires.iter().all(|r| running(r)))
            .map(|n| n.name)
            .collect()
    }
}

/// Follows requirements among `stuck` nodes (each requires at least one
/// other of them) from the first until a name repeats; returns that cycle.
fn cycle_among<'a>(stuck: &[&Node<'a>]) -> Cycle<'a> {
    let find = |name: &str| stuck.iter().find(|n| n.name == name);
    let mut path: Vec<&'a str> = vec![stuck[0].name];
    loop {
        let next = path
            .last()
            .and_then(|n| find(n))
            .and_then(|n| n.requires.iter().find(|r| find(r).is_some()))
            .map(String::as_str);
        match next {
            Some(n) if path.contains(&n) => {
                let start = path.iter().position(|p| *p == n).unwrap_or(0);
                let mut cycle = path.split_off(start);
                cycle.push(n);
                return Cycle(cycle);
            }
            Some(n) => path.push(n),
            // Not reached when every stuck node requires another; the path
            // is the best description left.
            None => return Cycle(path),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nodes written as `("web", &["db", "cache"])`.
    fn owned(nodes: &[(&str, &[&str])]) -> Vec<(String, Vec<String>)> {
        nodes
            .iter()
            .map(|(n, r)| (n.to_string(), r.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    fn graph(nodes: &[(String, Vec<String>)]) -> Graph<'_> {
        Graph::new(nodes.iter().map(|(n, r)| (n.as_str(), r.as_slice())))
    }

    fn cycle_of(nodes: &[(&str, &[&str])]) -> String {
        let nodes = owned(nodes);
        match graph(&nodes).start_order() {
            Err(OrderError::Cycle(c)) => c.to_string(),
            other => panic!("expected a cycle, got {other:?}"),
        }
    }

    #[test]
    fn start_order_puts_requirements_first_and_ties_by_name() {
        let nodes = owned(&[
            ("web", &["db", "cache"]),
            ("db", &[]),
            ("cache", &["db"]),
            ("audit", &[]),
        ]);
        assert_eq!(
            graph(&nodes).start_order().unwrap(),
            ["audit", "db", "cache", "web"]
        );
        assert_eq!(graph(&[]).start_order().unwrap(), Vec::<&str>::new());
    }

    #[test]
    fn cycles_are_named_from_the_first_stuck_name() {
        assert_eq!(cycle_of(&[("a", &["a"])]), "dependency cycle: a -> a");
        assert_eq!(
            cycle_of(&[("a", &["b"]), ("b", &["a"])]),
            "dependency cycle: a -> b -> a"
        );
        assert_eq!(
            cycle_of(&[("c", &["a"]), ("a", &["b"]), ("b", &["c"]), ("d", &[])]),
            "dependency cycle: a -> b -> c -> a"
        );
        // `a` only waits on the cycle; the cycle itself is reported.
        assert_eq!(
            cycle_of(&[("a", &["b"]), ("b", &["c"]), ("c", &["b"])]),
            "dependency cycle: b -> c -> b"
        );
    }

    #[test]
    fn unknown_requirements_are_all_reported_before_cycles() {
        let nodes = owned(&[("a", &["ghost", "b"]), ("b", &["a", "spook"])]);
        let g = graph(&nodes);
        let unknown = vec![
            Unknown {
                node: "a",
                requirement: "ghost",
            },
            Unknown {
                node: "b",
                requirement: "spook",
            },
        ];
        assert_eq!(g.unknown(), unknown);
        assert_eq!(g.start_order(), Err(OrderError::Unknown(unknown)));
        assert!(graph(&owned(&[("a", &[])])).unknown().is_empty());
    }

    #[test]
    fn dependents_direct_and_transitive_in_node_order() {
        let nodes = owned(&[
            ("db", &[]),
            ("cache", &["db"]),
            ("web", &["cache"]),
            ("audit", &["db"]),
            ("lone", &[]),
        ]);
        let g = graph(&nodes);
        assert_eq!(g.direct_dependents("db"), ["cache", "audit"]);
        assert_eq!(g.dependents("db"), ["cache", "web", "audit"]);
        assert_eq!(g.dependents("cache"), ["web"]);
        assert!(g.dependents("web").is_empty());
        assert!(g.dependents("lone").is_empty());
        assert!(g.dependents("ghost").is_empty());
        // Found through others even when listed before them.
        let nodes = owned(&[("web", &["cache"]), ("cache", &["db"]), ("db", &[])]);
        assert_eq!(graph(&nodes).dependents("db"), ["web", "cache"]);
    }

    #[test]
    fn stop_levels_put_dependents_first() {
        let nodes = owned(&[
            ("db", &[]),
            ("cache", &["db"]),
            ("web", &["db", "cache"]),
            ("lone", &[]),
            ("odd", &["ghost"]),
        ]);
        assert_eq!(
            graph(&nodes).stop_levels(),
            [vec!["web"], vec!["cache"], vec!["db", "lone", "odd"]]
        );
        // The same levels whatever order the nodes come in.
        let nodes = owned(&[("web", &["cache"]), ("cache", &["db"]), ("db", &[])]);
        assert_eq!(
            graph(&nodes).stop_levels(),
            [vec!["web"], vec!["cache"], vec!["db"]]
        );
        assert!(graph(&[]).stop_levels().is_empty());
        // A cycle does not loop forever.
        let nodes = owned(&[("a", &["b"]), ("b", &["a"])]);
        assert_eq!(graph(&nodes).stop_levels().concat().len(), 2);
    }

    #[test]
    fn ready_are_waiting_with_every_requirement_running() {
        let nodes = owned(&[
            ("db", &[]),
            ("cache", &["db"]),
            ("web", &["db", "cache"]),
            ("idle", &[]),
        ]);
        let g = graph(&nodes);
        let waiting = |n: &str| ["cache", "web", "idle"].contains(&n);
        let running = |n: &str| n == "db";
        assert_eq!(g.ready(waiting, running), ["cache", "idle"]);
        assert_eq!(g.ready(|_| false, |_| true), Vec::<&str>::new());
    }

    #[test]
    fn unmet_is_the_first_requirement_not_ok() {
        let nodes = owned(&[("web", &["db", "cache", "auth"])]);
        let g = graph(&nodes);
        assert_eq!(g.unmet("web", |r| r == "db"), Some("cache"));
        assert_eq!(g.unmet("web", |_| true), None);
        assert_eq!(g.unmet("ghost", |_| false), None);
    }

    #[test]
    fn a_repeated_name_keeps_its_first_entry() {
        let nodes = owned(&[("a", &[]), ("b", &["a"]), ("a", &["b"])]);
        assert_eq!(graph(&nodes).start_order().unwrap(), ["a", "b"]);
    }
}
