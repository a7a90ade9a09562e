//! The `requires` graph, as pure functions of names and edges: the start
//! order (and the unknown names or the cycle that prevent one), who depends
//! on a plugin (directly, and transitively for `rest_for_one`), the levels a
//! fleet stops in (dependents before what they require), and who may start
//! now.
//!
//! It knows nothing of configs or actors: config validation builds a
//! [`Graph`] from the resolved specs, and the root supervisor from its plugin
//! handles ([`Links`], the owned form a running fleet keeps, looks only at a
//! changed node's neighbours). Lists come back in the order the nodes were
//! given unless said otherwise. Every function is linear in the nodes and
//! edges (the start order adds a log factor), so a fleet of tens of
//! thousands settles in time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
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
        // Kahn's algorithm, the ready names in a min-heap: each step takes
        // the first ready name in name order, in O((N + E) log N).
        let mut waiting_on: Vec<usize> = self.nodes.iter().map(|n| n.requires.len()).collect();
        let dependents = self.reverse();
        let mut ready: BinaryHeap<Reverse<(&'a str, usize)>> = waiting_on
            .iter()
            .enumerate()
            .filter(|(_, w)| **w == 0)
            .map(|(i, _)| Reverse((self.nodes[i].name, i)))
            .collect();
        let mut ordered: Vec<&'a str> = Vec::with_capacity(self.nodes.len());
        while let Some(Reverse((name, i))) = ready.pop() {
            ordered.push(name);
            for &d in &dependents[i] {
                waiting_on[d] -= 1;
                if waiting_on[d] == 0 {
                    ready.push(Reverse((self.nodes[d].name, d)));
                }
            }
        }
        if ordered.len() < self.nodes.len() {
            let mut left: Vec<&Node<'a>> = self
                .nodes
                .iter()
                .zip(&waiting_on)
                .filter(|(_, w)| **w > 0)
                .map(|(n, _)| n)
                .collect();
            left.sort_by(|a, b| a.name.cmp(b.name));
            return Err(OrderError::Cycle(cycle_among(&left)));
        }
        Ok(ordered)
    }

    /// For each node, the positions of the nodes that require it, once per
    /// requirement naming it (unknown requirements are left out).
    fn reverse(&self) -> Vec<Vec<usize>> {
        let mut dependents = vec![Vec::new(); self.nodes.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            for r in n.requires {
                if let Some(&j) = self.index.get(r.as_str()) {
                    dependents[j].push(i);
                }
            }
        }
        dependents
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
        let Some(&start) = self.index.get(name) else {
            return Vec::new();
        };
        let reverse = self.reverse();
        let found = reachable(&reverse, start);
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
        let depth = self.depths();
        let Some(&deepest) = depth.iter().max() else {
            return Vec::new();
        };
        let mut levels = vec![Vec::new(); deepest + 1];
        for (n, d) in self.nodes.iter().zip(&depth) {
            levels[deepest - d].push(n.name);
        }
        levels
    }

    /// Each node's depth: one more than the deepest node it requires, an
    /// edge back onto the path being followed ignored. Iterative, so a long
    /// chain of requirements cannot overflow the stack; linear in the edges.
    fn depths(&self) -> Vec<usize> {
        let mut depth: Vec<Option<usize>> = vec![None; self.nodes.len()];
        let mut on_path = vec![false; self.nodes.len()];
        for root in 0..self.nodes.len() {
            if depth[root].is_some() {
                continue;
            }
            // (node, next requirement to look at, depth so far)
            let mut stack = vec![(root, 0, 0)];
            on_path[root] = true;
            while let Some(top) = stack.last_mut() {
                let (i, k, d) = *top;
                let requires = self.nodes[i].requires;
                if k < requires.len() {
                    top.1 += 1;
                    let Some(&j) = self.index.get(requires[k].as_str()) else {
                        continue;
                    };
                    match depth[j] {
                        _ if on_path[j] => {}
                        Some(dj) => top.2 = d.max(dj + 1),
                        None => {
                            on_path[j] = true;
                            stack.push((j, 0, 0));
                        }
                    }
                } else {
                    stack.pop();
                    on_path[i] = false;
                    depth[i] = Some(d);
                    if let Some(parent) = stack.last_mut() {
                        parent.2 = parent.2.max(d + 1);
                    }
                }
            }
        }
        depth.into_iter().map(|d| d.unwrap_or(0)).collect()
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
    let by_name: HashMap<&str, &Node<'a>> = stuck.iter().map(|n| (n.name, *n)).collect();
    let find = |name: &str| by_name.get(name).copied();
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

/// The positions reachable from `start` through `edges`; `start` itself is
/// left out, even when a cycle leads back to it.
fn reachable(edges: &[Vec<usize>], start: usize) -> Vec<bool> {
    let mut found = vec![false; edges.len()];
    let mut todo = vec![start];
    while let Some(current) = todo.pop() {
        for &next in &edges[current] {
            if !found[next] && next != start {
                found[next] = true;
                todo.push(next);
            }
        }
    }
    found
}

/// The `requires` graph by position (the order the nodes were given),
/// owned, for a fleet whose states change all the time: a change looks only
/// at the node and its neighbours, never at the whole fleet.
#[derive(Debug, Clone, Default)]
pub struct Links {
    index: HashMap<String, usize>,
    requires: Vec<Vec<usize>>,
    /// Whether the node requires a name that is no node: it never starts.
    unknown: Vec<bool>,
    dependents: Vec<Vec<usize>>,
}

impl Links {
    /// The links of `nodes`, each a name and the names it requires; node
    /// `i` is the `i`-th given (a repeated name is found at its first).
    pub fn new<'a>(nodes: impl IntoIterator<Item = (&'a str, &'a [String])>) -> Self {
        let nodes: Vec<(&str, &[String])> = nodes.into_iter().collect();
        let mut index = HashMap::with_capacity(nodes.len());
        for (i, (name, _)) in nodes.iter().enumerate() {
            index.entry((*name).to_string()).or_insert(i);
        }
        let mut links = Self {
            requires: Vec::with_capacity(nodes.len()),
            unknown: Vec::with_capacity(nodes.len()),
            dependents: vec![Vec::new(); nodes.len()],
            index,
        };
        for (i, (_, requires)) in nodes.iter().enumerate() {
            let known: Vec<usize> = requires
                .iter()
                .filter_map(|r| links.index.get(r.as_str()).copied())
                .collect();
            links.unknown.push(known.len() < requires.len());
            for &j in &known {
                links.dependents[j].push(i);
            }
            links.requires.push(known);
        }
        links
    }

    /// The position of `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }

    /// How many nodes there are.
    pub fn len(&self) -> usize {
        self.requires.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.requires.is_empty()
    }

    /// The nodes a change of node `i` may make ready: `i` itself and the
    /// nodes that require it.
    pub fn touched_by(&self, i: usize) -> Vec<usize> {
        let mut touched = Vec::with_capacity(self.dependents[i].len() + 1);
        touched.push(i);
        touched.extend(&self.dependents[i]);
        touched
    }

    /// The nodes that require `i`, directly or through others; not `i`.
    pub fn dependents(&self, i: usize) -> Vec<usize> {
        let found = reachable(&self.dependents, i);
        (0..self.len()).filter(|&j| found[j]).collect()
    }

    /// Who among `candidates` may start now: `waiting`, and every
    /// requirement `running` (none of them unknown). Each once, in the
    /// order given.
    pub fn ready(
        &self,
        candidates: &[usize],
        waiting: impl Fn(usize) -> bool,
        running: impl Fn(usize) -> bool,
    ) -> Vec<usize> {
        let mut seen = std::collections::HashSet::new();
        candidates
            .iter()
            .copied()
            .filter(|&i| {
                seen.insert(i)
                    && !self.unknown[i]
                    && waiting(i)
                    && self.requires[i].iter().all(|&r| running(r))
            })
            .collect()
    }

    /// The first requirement of `i` that is not `ok`.
    pub fn unmet(&self, i: usize, ok: impl Fn(usize) -> bool) -> Option<usize> {
        self.requires[i].iter().copied().find(|&r| !ok(r))
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
    fn links_look_only_at_neighbours() {
        let nodes = owned(&[
            ("db", &[]),
            ("cache", &["db"]),
            ("web", &["db", "cache"]),
            ("odd", &["ghost"]),
        ]);
        let links = Links::new(nodes.iter().map(|(n, r)| (n.as_str(), r.as_slice())));
        assert_eq!(links.position("web"), Some(2));
        assert_eq!(links.touched_by(0), [0, 1, 2]);
        assert_eq!(links.dependents(0), [1, 2]);
        assert!(links.dependents(2).is_empty());
        let waiting = |i: usize| i != 0;
        assert_eq!(links.ready(&[1, 2, 1, 3], waiting, |r| r == 0), [1]);
        assert_eq!(
            links.ready(&[3], |_| true, |_| true),
            Vec::<usize>::new(),
            "unknown never starts"
        );
        assert_eq!(links.unmet(2, |r| r == 0), Some(1));
    }

    #[test]
    fn long_chains_are_ordered_and_leveled_in_linear_time() {
        // 30,000 plugins each requiring the one before: quadratic steps
        // would take minutes here, and recursion would overflow the stack.
        let n = 30_000;
        let nodes: Vec<(String, Vec<String>)> = (0..n)
            .map(|i| {
                let requires = if i == 0 {
                    vec![]
                } else {
                    vec![format!("p{:05}", i - 1)]
                };
                (format!("p{i:05}"), requires)
            })
            .rev()
            .collect();
        let g = graph(&nodes);
        let started = std::time::Instant::now();
        let order = g.start_order().unwrap();
        assert_eq!(order.first(), Some(&"p00000"));
        assert_eq!(order.last(), Some(&"p29999"));
        let levels = g.stop_levels();
        assert_eq!(levels.len(), n);
        assert_eq!(levels[0], ["p29999"]);
        assert_eq!(g.dependents("p00000").len(), n - 1);
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_repeated_name_keeps_its_first_entry() {
        let nodes = owned(&[("a", &[]), ("b", &["a"]), ("a", &["b"])]);
        assert_eq!(graph(&nodes).start_order().unwrap(), ["a", "b"]);
    }
}
