//! Properties of bus topics and patterns, from the rules in `event.rs`: a
//! topic is dot-separated segments of `[A-Za-z0-9_-]`, at most 256
//! characters; a pattern may use `*` for exactly one segment and, last only,
//! `>` for one or more trailing segments; `covers(outer, inner)` holds when
//! every topic `inner` matches is also matched by `outer`.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of the default.

use corral_proto::event::{check_pattern, check_topic, covers, matches};
use proptest::prelude::*;

fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

/// A segment: mostly from a tiny alphabet, so patterns and topics collide.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop_oneof![Just("a"), Just("b"), Just("c")].prop_map(str::to_string),
        1 => "[A-Za-z0-9_-]{1,6}",
    ]
}

fn topic() -> impl Strategy<Value = String> {
    prop::collection::vec(segment(), 1..6).prop_map(|s| s.join("."))
}

/// A valid pattern of at most `max` segments.
fn pattern_of(max: usize) -> impl Strategy<Value = String> {
    let seg = prop_oneof![3 => segment(), 1 => Just("*".to_string())];
    (prop::collection::vec(seg, 0..max), any::<bool>()).prop_filter_map(
        "a pattern has at least one segment",
        move |(mut segs, tail)| {
            if tail || segs.is_empty() {
                if segs.len() == max {
                    segs.pop();
                }
                segs.push(">".into());
            }
            Some(segs.join("."))
        },
    )
}

fn pattern() -> impl Strategy<Value = String> {
    pattern_of(6)
}

/// Strings made of the characters that matter to the grammar.
fn grammar_soup() -> impl Strategy<Value = String> {
    r"[ab.*> _\-]{0,24}"
}

/// The matching rules as the docs state them, segment by segment.
fn reference_match(p: &[&str], t: &[&str]) -> bool {
    match (p.first(), t.first()) {
        (Some(&">"), Some(_)) => true,
        (Some(&"*"), Some(_)) => reference_match(&p[1..], &t[1..]),
        (Some(a), Some(b)) => a == b && reference_match(&p[1..], &t[1..]),
        (None, None) => true,
        _ => false,
    }
}

fn segs(s: &str) -> Vec<&str> {
    s.split('.').collect()
}

/// Every topic of up to `len` segments over `alphabet`.
fn universe(alphabet: &[String], len: usize) -> Vec<String> {
    let mut all = Vec::new();
    let mut layer: Vec<String> = alphabet.to_vec();
    for _ in 0..len {
        all.extend(layer.iter().cloned());
        layer = layer
            .iter()
            .flat_map(|t| alphabet.iter().map(move |s| format!("{t}.{s}")))
            .collect();
    }
    all
}

/// The literal segments of `a` and `b`, plus one that neither names (what
/// a wildcard may stand for without matching a literal).
fn alphabet(a: &str, b: &str) -> Vec<String> {
    let mut out: Vec<String> = segs(a)
        .into_iter()
        .chain(segs(b))
        .filter(|s| *s != "*" && *s != ">")
        .map(str::to_string)
        .collect();
    out.push("zz-fresh".into());
    out.sort();
    out.dedup();
    out
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn checks_and_matching_never_panic_on_any_text(a in any::<String>(), b in any::<String>()) {
        let _ = check_topic(&a);
        let _ = check_pattern(&a);
        let _ = matches(&a, &b);
        let _ = covers(&a, &b);
    }

    #[test]
    fn checks_and_matching_never_panic_on_grammar_soup(a in grammar_soup(), b in grammar_soup()) {
        let _ = check_topic(&a);
        let _ = check_pattern(&a);
        let _ = matches(&a, &b);
        let _ = covers(&a, &b);
        // What passes as a topic is also a pattern, and has no wildcard.
        if check_topic(&a).is_ok() {
            prop_assert!(check_pattern(&a).is_ok(), "{a}");
            prop_assert!(!a.contains('*') && !a.contains('>'), "{a}");
        }
    }

    /// `check_topic` accepts exactly the documented grammar.
    #[test]
    fn check_topic_is_the_documented_grammar(s in prop_oneof![grammar_soup(), topic(), any::<String>()]) {
        let documented = !s.is_empty()
            && s.len() <= 256
            && s.split('.').all(|seg| {
                !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        prop_assert_eq!(check_topic(&s).is_ok(), documented, "{:?}", s);
    }

    /// `check_pattern` accepts exactly the documented grammar.
    #[test]
    fn check_pattern_is_the_documented_grammar(s in prop_oneof![grammar_soup(), pattern(), any::<String>()]) {
        let parts: Vec<&str> = s.split('.').collect();
        let documented = s.len() <= 256
            && parts.iter().enumerate().all(|(i, seg)| match *seg {
                "*" => true,
                ">" => i == parts.len() - 1,
                seg => check_topic(seg).is_ok(),
            });
        prop_assert_eq!(check_pattern(&s).is_ok(), documented, "{:?}", s);
    }

    #[test]
    fn generated_topics_and_patterns_are_valid(t in topic(), p in pattern()) {
        prop_assert!(check_topic(&t).is_ok(), "{t}");
        prop_assert!(check_pattern(&t).is_ok(), "{t}");
        prop_assert!(check_pattern(&p).is_ok(), "{p}");
        if p.contains('*') || p.contains('>') {
            prop_assert!(check_topic(&p).is_err(), "{p}");
        }
    }

    #[test]
    fn a_topic_matches_itself_and_only_equal_topics(t in topic(), u in topic()) {
        prop_assert!(matches(&t, &t));
        prop_assert_eq!(matches(&t, &u), t == u);
    }

    #[test]
    fn the_full_wildcard_matches_every_topic(t in topic()) {
        prop_assert!(matches(">", &t));
        prop_assert!(covers(">", &t));
    }

    #[test]
    fn a_star_is_exactly_one_segment(t in topic(), prefix in topic()) {
        prop_assert_eq!(matches("*", &t), !t.contains('.'));
        // `prefix.>` needs at least one segment after the prefix.
        let tail = format!("{prefix}.>");
        let one = format!("{prefix}.*");
        let longer = format!("{prefix}.{t}");
        let plus_one = format!("{prefix}.x");
        let plus_two = format!("{prefix}.x.y");
        prop_assert!(!matches(&tail, &prefix));
        prop_assert!(matches(&tail, &longer));
        prop_assert!(matches(&one, &plus_one));
        prop_assert!(!matches(&one, &plus_two));
    }

    #[test]
    fn matching_follows_the_documented_rules(p in pattern(), t in topic()) {
        prop_assert_eq!(matches(&p, &t), reference_match(&segs(&p), &segs(&t)), "{} {}", p, t);
    }

    /// Without `>`, a pattern only matches topics of its own length.
    #[test]
    fn without_a_tail_lengths_agree(p in pattern(), t in topic()) {
        if !p.ends_with('>') && matches(&p, &t) {
            prop_assert_eq!(segs(&p).len(), segs(&t).len());
        }
    }

    /// A pattern matches the topic made by filling its wildcards in.
    #[test]
    fn a_pattern_matches_its_instances(p in pattern(), fill in prop::collection::vec(segment(), 1..4)) {
        let mut t: Vec<String> = Vec::new();
        for (i, seg) in segs(&p).into_iter().enumerate() {
            match seg {
                "*" => t.push(fill[i % fill.len()].clone()),
                ">" => t.extend(fill.iter().cloned()),
                s => t.push(s.to_string()),
            }
        }
        prop_assert!(matches(&p, &t.join(".")), "{} {:?}", p, t);
    }

    #[test]
    fn covers_is_reflexive_and_top_is_everything(p in pattern()) {
        prop_assert!(covers(&p, &p), "{p}");
        prop_assert!(covers(">", &p), "{p}");
    }

    /// `covers(a, b)` holds exactly when every topic `b` matches is also
    /// matched by `a`, checked over every topic up to one segment longer
    /// than either pattern, built from their segments and a fresh one.
    #[test]
    fn covers_is_inclusion_of_matched_topics(a in pattern_of(4), b in pattern_of(4)) {
        let len = segs(&a).len().max(segs(&b).len()) + 1;
        let topics = universe(&alphabet(&a, &b), len);
        let counterexample = topics.iter().find(|t| matches(&b, t) && !matches(&a, t));
        match counterexample {
            Some(t) => prop_assert!(!covers(&a, &b), "covers({a}, {b}) but {t} matches only {b}"),
            None => prop_assert!(covers(&a, &b), "every topic {b} matches, {a} matches, yet !covers({a}, {b})"),
        }
    }

    #[test]
    fn covers_is_transitive(a in pattern_of(4), b in pattern_of(4), c in pattern_of(4)) {
        if covers(&a, &b) && covers(&b, &c) {
            prop_assert!(covers(&a, &c), "{a} {b} {c}");
        }
    }

    /// Nothing under `corral.` is matched by a pattern that names another
    /// first segment, so a plugin's default `<name>.>` never reaches it.
    #[test]
    fn a_name_prefix_never_reaches_corral_topics(name in "[a-z][a-z0-9_-]{0,8}", t in topic()) {
        prop_assume!(name != "corral");
        let own = format!("{name}.>");
        let reserved = format!("corral.{t}");
        prop_assert!(!matches(&own, &reserved));
    }

    #[test]
    fn overlong_topics_and_patterns_are_refused(t in topic(), n in 1usize..8) {
        let long = std::iter::repeat_n(t.as_str(), 300 / t.len().max(1) + n).collect::<Vec<_>>().join(".");
        prop_assume!(long.len() > 256);
        prop_assert!(check_topic(&long).is_err());
        prop_assert!(check_pattern(&long).is_err());
        let long_tail = format!("{long}.>");
        prop_assert!(check_pattern(&long_tail).is_err());
    }
}
