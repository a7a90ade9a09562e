//! Properties of the fleet config and manifest loader: whatever the files
//! hold (documents built from the known keys with random values, raw text,
//! and mutations of both), loading answers a fleet or a list of problems,
//! never panics, and every problem names the file it is in and, where a key
//! is at fault, that key. A document written only with valid values loads.
//!
//! `PROPTEST_CASES=N` runs N cases per property instead of the default.

// A property reads best as one function; the length rule is for product code.
#![allow(clippy::too_many_lines)]

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use corral::config::{self, ConfigError, Fleet};
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

// ---------------------------------------------------------------------------
// A small TOML model, rendered by hand so any value can be written.

#[derive(Debug, Clone)]
enum Toml {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    Arr(Vec<Toml>),
    Tbl(BTreeMap<String, Toml>),
}

fn quote(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn key(k: &str) -> String {
    if !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        k.to_string()
    } else {
        quote(k)
    }
}

impl Toml {
    fn render(&self) -> String {
        match self {
            Self::Str(s) => quote(s),
            Self::Int(i) => i.to_string(),
            Self::Float(f) if f.is_finite() => format!("{f:?}"),
            Self::Float(f) if f.is_nan() => "nan".into(),
            Self::Float(f) => (if *f > 0.0 { "inf" } else { "-inf" }).into(),
            Self::Bool(b) => b.to_string(),
            Self::Arr(items) => {
                let items: Vec<String> = items.iter().map(Self::render).collect();
                format!("[{}]", items.join(", "))
            }
            Self::Tbl(map) => {
                let items: Vec<String> = map
                    .iter()
                    .map(|(k, v)| format!("{} = {}", key(k), v.render()))
                    .collect();
                format!("{{ {} }}", items.join(", "))
            }
        }
    }
}

/// A document: tables by their dotted header, each with its keys.
fn render_doc(
    top: &BTreeMap<String, Toml>,
    tables: &[(Vec<String>, BTreeMap<String, Toml>)],
) -> String {
    let mut out = String::new();
    for (k, v) in top {
        let _ = writeln!(out, "{} = {}", key(k), v.render());
    }
    for (header, entries) in tables {
        let header: Vec<String> = header.iter().map(|h| key(h)).collect();
        let _ = writeln!(out, "\n[{}]", header.join("."));
        for (k, v) in entries {
            let _ = writeln!(out, "{} = {}", key(k), v.render());
        }
    }
    out
}

// ---------------------------------------------------------------------------
// Values

fn any_value() -> impl Strategy<Value = Toml> {
    let leaf = prop_oneof![
        ".{0,12}".prop_map(Toml::Str),
        any::<i64>().prop_map(Toml::Int),
        any::<f64>().prop_map(Toml::Float),
        any::<bool>().prop_map(Toml::Bool),
    ];
    leaf.prop_recursive(2, 12, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Toml::Arr),
            prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4).prop_map(Toml::Tbl),
        ]
    })
}

fn s(v: &str) -> Toml {
    Toml::Str(v.to_string())
}

/// A duration as text: often well formed, sometimes huge, zero or nonsense.
fn duration(valid: bool) -> BoxedStrategy<Toml> {
    let unit = prop_oneof![
        Just("ms"),
        Just("s"),
        Just("m"),
        Just("h"),
        Just("us"),
        Just("ns")
    ];
    let good = (10u64..100_000, unit.clone()).prop_map(|(n, u)| Toml::Str(format!("{n}{u}")));
    if valid {
        // At least 10ms: the shortest memory_check_interval allowed.
        let unit = prop_oneof![Just("ms"), Just("s"), Just("m"), Just("h")];
        return (10u64..100_000, unit)
            .prop_map(|(n, u)| Toml::Str(format!("{n}{u}")))
            .boxed();
    }
    let unit2 = prop_oneof![unit, Just("fortnights"), Just(""), Just("y"), Just("d")];
    prop_oneof![
        3 => good,
        1 => (any::<u64>(), unit2).prop_map(|(n, u)| Toml::Str(format!("{n}{u}"))),
        1 => "[0-9]{0,30}[ a-z]{0,8}".prop_map(Toml::Str),
        1 => Just(s("0s")),
        1 => any_value(),
    ]
    .boxed()
}

fn size(valid: bool) -> BoxedStrategy<Toml> {
    let unit = prop_oneof![
        Just("B"),
        Just("KiB"),
        Just("MiB"),
        Just("GiB"),
        Just("KB"),
        Just("MB")
    ];
    let good = (1u64..4096, unit).prop_map(|(n, u)| Toml::Str(format!("{n}{u}")));
    if valid {
        return good.boxed();
    }
    prop_oneof![
        3 => good,
        1 => (any::<u64>(), prop_oneof![Just("EiB"), Just("PB"), Just("B"), Just(" lots")])
            .prop_map(|(n, u)| Toml::Str(format!("{n}{u}"))),
        1 => "[0-9.e+-]{0,24}[ A-Za-z]{0,4}".prop_map(Toml::Str),
        1 => Just(s("0B")),
        1 => any_value(),
    ]
    .boxed()
}

fn count(valid: bool) -> BoxedStrategy<Toml> {
    if valid {
        return (1i64..1000).prop_map(Toml::Int).boxed();
    }
    prop_oneof![
        3 => (0i64..1000).prop_map(Toml::Int),
        1 => any::<i64>().prop_map(Toml::Int),
        1 => any_value(),
    ]
    .boxed()
}

fn one_of(words: &'static [&'static str], valid: bool) -> BoxedStrategy<Toml> {
    let good = prop::sample::select(words).prop_map(s);
    if valid {
        return good.boxed();
    }
    prop_oneof![4 => good, 1 => ".{0,10}".prop_map(Toml::Str), 1 => any_value()].boxed()
}

fn pattern_text(valid: bool) -> BoxedStrategy<Toml> {
    let good = prop_oneof![
        "[a-z]{1,4}(\\.[a-z]{1,4}){0,2}(\\.\\*)?(\\.>)?",
        Just(">".to_string())
    ]
    .prop_map(Toml::Str);
    if valid {
        return good.boxed();
    }
    prop_oneof![3 => good, 1 => "[a-z.*> ]{0,12}".prop_map(Toml::Str)].boxed()
}

fn table(entries: Vec<(&'static str, BoxedStrategy<Toml>)>) -> BoxedStrategy<Toml> {
    let n = entries.len();
    let picks = prop::collection::vec(any::<bool>(), n);
    let values: Vec<BoxedStrategy<Toml>> = entries.iter().map(|(_, v)| v.clone()).collect();
    let names: Vec<&'static str> = entries.iter().map(|(k, _)| *k).collect();
    (picks, values)
        .prop_map(move |(picks, values)| {
            Toml::Tbl(
                names
                    .iter()
                    .zip(values)
                    .zip(picks)
                    .filter(|(_, keep)| *keep)
                    .map(|((k, v), _)| (k.to_string(), v))
                    .collect(),
            )
        })
        .boxed()
}

/// Every plugin key with a generator of its values. With `valid`, only
/// values the loader must accept (for a plugin whose `requires` are
/// `others`, all of them earlier in the fleet).
fn plugin_keys(valid: bool, others: Vec<String>) -> Vec<(&'static str, BoxedStrategy<Toml>)> {
    let program = prop_oneof![
        Just("bin/plugin".to_string()),
        Just("python3".to_string()),
        ".{0,8}".prop_map(|s| s)
    ];
    let cmd = if valid {
        prop::collection::vec("[a-z]{1,6}", 1..4)
            .prop_map(|v| Toml::Arr(v.into_iter().map(Toml::Str).collect()))
            .boxed()
    } else {
        prop_oneof![
            6 => (program, prop::collection::vec(".{0,6}", 0..3)).prop_map(|(p, args)| {
                Toml::Arr(std::iter::once(p).chain(args).map(Toml::Str).collect())
            }),
            1 => Just(Toml::Arr(vec![])),
            1 => any_value(),
        ]
        .boxed()
    };
    let requires = if others.is_empty() {
        Just(Toml::Arr(vec![])).boxed()
    } else {
        prop::sample::subsequence(others.clone(), 0..=others.len())
            .prop_map(|v| Toml::Arr(v.into_iter().map(Toml::Str).collect()))
            .boxed()
    };
    let requires = if valid {
        requires
    } else {
        prop_oneof![3 => requires, 1 => prop::collection::vec("[a-z]{1,4}", 0..3)
            .prop_map(|v| Toml::Arr(v.into_iter().map(Toml::Str).collect()))]
        .boxed()
    };
    // Values hold no variable: a `$` is written `$$`.
    let strs = |n: usize| {
        prop::collection::btree_map("[A-Z_]{1,8}", "([^$]|[$][$]){0,8}", 0..n)
            .prop_map(|m| Toml::Tbl(m.into_iter().map(|(k, v)| (k, Toml::Str(v))).collect()))
    };
    let patterns = prop::collection::vec(pattern_text(valid), 0..3).prop_map(Toml::Arr);
    let bool_value = |valid: bool| {
        if valid {
            any::<bool>().prop_map(Toml::Bool).boxed()
        } else {
            prop_oneof![4 => any::<bool>().prop_map(Toml::Bool), 1 => any_value()].boxed()
        }
    };
    let config_table =
        prop::collection::btree_map("[a-z_]{1,8}", any_value(), 0..4).prop_map(Toml::Tbl);
    let mut keys: Vec<(&'static str, BoxedStrategy<Toml>)> = vec![
        ("cmd", cmd),
        ("env", strs(3).boxed()),
        ("cwd", "[a-z/]{0,10}".prop_map(Toml::Str).boxed()),
        ("enabled", bool_value(valid)),
        ("codec", one_of(&["bincode", "json"], valid)),
        ("config", config_table.boxed()),
        ("handshake_timeout", duration(valid)),
        (
            "heartbeat",
            table(vec![
                ("interval", duration(valid)),
                ("timeout", duration(valid)),
                ("misses", count(valid)),
            ]),
        ),
        ("stop_timeout", duration(valid)),
        ("kill_timeout", duration(valid)),
        ("call_timeout", duration(valid)),
        ("memory_max", size(valid)),
        ("memory_high", size(valid)),
        ("memory_check_interval", duration(valid)),
        ("pids_max", count(valid)),
        ("nofile", count(valid)),
        (
            "rate_limit",
            if valid {
                (1i64..100, duration(true))
                    .prop_map(|(c, p)| {
                        Toml::Tbl(BTreeMap::from([
                            ("calls".to_string(), Toml::Int(c)),
                            ("per".to_string(), p),
                        ]))
                    })
                    .boxed()
            } else {
                table(vec![("calls", count(false)), ("per", duration(false))])
            },
        ),
        ("limits", one_of(&["auto", "sampling"], valid)),
        ("subscribe", patterns.clone().boxed()),
        ("publish", patterns.boxed()),
        ("queue", count(valid)),
        ("overflow", one_of(&["drop-oldest", "block"], valid)),
        ("durable", bool_value(valid)),
        ("restart", one_of(&["always", "on-failure", "never"], valid)),
        (
            "success_codes",
            prop::collection::vec((-3i64..300).prop_map(Toml::Int), 0..3)
                .prop_map(Toml::Arr)
                .boxed(),
        ),
        (
            "backoff",
            table(vec![
                ("initial", duration(valid)),
                ("max", duration(valid)),
                ("reset_after", duration(valid)),
            ]),
        ),
        (
            "restart_limit",
            table(vec![("count", count(valid)), ("within", duration(valid))]),
        ),
        ("requires", requires),
        ("log_max_size", size(valid)),
        ("log_keep", count(valid)),
    ];
    if !valid {
        keys.push(("memroy_max", size(true)));
        keys.push(("stop_timout", duration(true)));
    }
    keys
}

/// Some of `keys`, always with `cmd` when `valid`.
fn entries(
    keys: Vec<(&'static str, BoxedStrategy<Toml>)>,
    valid: bool,
) -> BoxedStrategy<BTreeMap<String, Toml>> {
    table(keys)
        .prop_map(move |t| match t {
            Toml::Tbl(mut m) => {
                if valid && !m.contains_key("cmd") {
                    m.insert("cmd".into(), Toml::Arr(vec![s("plugin")]));
                }
                m
            }
            _ => BTreeMap::new(),
        })
        .boxed()
}

// ---------------------------------------------------------------------------
// Whole fleets

/// A fleet on disk: the fleet file and manifests in a temp dir.
#[derive(Debug, Clone)]
struct Files {
    fleet: String,
    /// Manifest folder name → plugin.toml text.
    manifests: BTreeMap<String, String>,
    /// The plugin names as written.
    names: Vec<String>,
}

/// The plugin names a fleet file's text holds, when it is TOML.
fn plugin_names(text: &str) -> Option<Vec<String>> {
    use figment::providers::{Format, Toml};
    let plugins = figment::Figment::from(Toml::string(text))
        .find_value("plugins")
        .ok()?;
    Some(plugins.into_dict()?.into_keys().collect())
}

fn plugin_name(valid: bool) -> BoxedStrategy<String> {
    let good = "[a-z][a-z0-9_-]{0,8}";
    if valid {
        return good.boxed();
    }
    prop_oneof![
        6 => good,
        1 => ".{0,10}",
        1 => "[a-z]{70,80}",
        1 => Just("a.b".to_string()),
    ]
    .boxed()
}

fn manifest_text(valid: bool) -> BoxedStrategy<String> {
    let schema_entry = table(vec![
        (
            "type",
            one_of(
                &["string", "integer", "number", "boolean", "array", "table"],
                valid,
            ),
        ),
        ("default", any_value().boxed()),
        ("required", any::<bool>().prop_map(Toml::Bool).boxed()),
        ("description", ".{0,10}".prop_map(Toml::Str).boxed()),
        ("secret", any::<bool>().prop_map(Toml::Bool).boxed()),
    ]);
    let schema = if valid {
        Just(BTreeMap::new()).boxed()
    } else {
        prop::collection::btree_map("[a-z_]{1,6}", schema_entry, 0..3).boxed()
    };
    let name = if valid {
        Just(Some(s("p"))).boxed()
    } else {
        prop_oneof![4 => Just(Some(s("p"))), 1 => Just(None), 1 => any_value().prop_map(Some)]
            .boxed()
    };
    (
        name,
        ".{0,8}",
        schema,
        entries(plugin_keys(valid, vec![]), valid),
    )
        .prop_map(|(name, version, schema, mut keys)| {
            if let Some(name) = name {
                keys.insert("name".into(), name);
            }
            keys.insert("version".into(), Toml::Str(version));
            let mut tables = Vec::new();
            for (k, entry) in schema {
                if let Toml::Tbl(m) = entry {
                    tables.push((vec!["config_schema".to_string(), k], m));
                }
            }
            render_doc(&keys, &tables)
        })
        .boxed()
}

/// One `[plugins.NAME]` entry: name, keys, and its manifest's text if any.
type PluginEntry = (String, BTreeMap<String, Toml>, Option<String>);

/// A fleet written from the grammar of known keys. With `valid`, every
/// value is one the loader must accept.
fn fleet(valid: bool) -> BoxedStrategy<Files> {
    (
        prop::collection::btree_set(plugin_name(valid), 1..5),
        prop::collection::vec(any::<bool>(), 5),
    )
        .prop_flat_map(move |(names, with_manifest)| {
            let names: Vec<String> = names.into_iter().collect();
            let plugins: Vec<BoxedStrategy<PluginEntry>> = names
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    let earlier = names[..i].to_vec();
                    let name = name.clone();
                    let manifest = if with_manifest[i] {
                        manifest_text(valid).prop_map(Some).boxed()
                    } else {
                        Just(None).boxed()
                    };
                    (
                        entries(plugin_keys(valid, earlier), valid && !with_manifest[i]),
                        manifest,
                    )
                        .prop_map(move |(e, m)| (name.clone(), e, m))
                        .boxed()
                })
                .collect();
            let supervisor = table(vec![
                (
                    "runtime_dir",
                    if valid {
                        Just(s("rt")).boxed()
                    } else {
                        prop_oneof![3 => Just(s("rt")), 1 => "[a-z/]{100,120}".prop_map(Toml::Str)]
                            .boxed()
                    },
                ),
                ("log_dir", Just(s("logs")).boxed()),
                (
                    "strategy",
                    one_of(&["one_for_one", "rest_for_one", "one_for_all"], valid),
                ),
            ]);
            let defaults = if valid {
                Just(BTreeMap::new()).boxed()
            } else {
                entries(plugin_keys(false, vec![]), false)
            };
            let extra = if valid {
                Just(None).boxed()
            } else {
                prop_oneof![5 => Just(None), 1 => Just(Some(("bogus".to_string(), Toml::Int(1))))]
                    .boxed()
            };
            (plugins, supervisor, defaults, extra, Just(names))
        })
        .prop_map(|(plugins, supervisor, defaults, extra, names)| {
            let mut top = BTreeMap::new();
            if let Some((k, v)) = extra {
                top.insert(k, v);
            }
            let mut tables = Vec::new();
            if let Toml::Tbl(m) = supervisor {
                tables.push((vec!["supervisor".to_string()], m));
            }
            if !defaults.is_empty() {
                tables.push((vec!["defaults".to_string()], defaults));
            }
            let mut manifests = BTreeMap::new();
            for (i, (name, mut entries, manifest)) in plugins.into_iter().enumerate() {
                if let Some(text) = manifest {
                    let folder = format!("m{i}");
                    entries.insert("path".into(), Toml::Str(folder.clone()));
                    manifests.insert(folder, text);
                }
                tables.push((vec!["plugins".to_string(), name], entries));
            }
            Files {
                fleet: render_doc(&top, &tables),
                manifests,
                names,
            }
        })
        .boxed()
}

/// `text` with a few random edits at character boundaries.
fn mutate(text: String) -> BoxedStrategy<String> {
    let chars: Vec<char> = text.chars().collect();
    let len = chars.len().max(1);
    prop::collection::vec(
        (
            0..len,
            prop_oneof![
                Just('"'),
                Just('['),
                Just('='),
                Just('\n'),
                Just('.'),
                any::<char>()
            ],
            0u8..4,
        ),
        1..6,
    )
    .prop_map(move |edits| {
        let mut c = chars.clone();
        for (at, ch, kind) in edits {
            let at = at.min(c.len());
            match kind {
                0 if at < c.len() => c[at] = ch,
                1 => c.insert(at, ch),
                2 if at < c.len() => {
                    c.remove(at);
                }
                _ => {
                    // Duplicate a line: a duplicate key or table.
                    let s: String = c.iter().collect();
                    if let Some(line) = s.lines().nth(at % s.lines().count().max(1)) {
                        c.extend(format!("\n{line}\n").chars());
                    }
                }
            }
        }
        c.into_iter().collect()
    })
    .boxed()
}

// ---------------------------------------------------------------------------
// Checks

struct Written {
    _dir: tempfile::TempDir,
    fleet: PathBuf,
    manifests: Vec<PathBuf>,
}

fn write(files: &Files) -> Written {
    let dir = tempfile::Builder::new()
        .prefix("corral-prop-")
        .tempdir_in("/tmp")
        .expect("temp dir");
    let fleet = dir.path().join("corral.toml");
    std::fs::write(&fleet, &files.fleet).expect("write fleet");
    let mut manifests = Vec::new();
    for (folder, text) in &files.manifests {
        let d = dir.path().join(folder);
        std::fs::create_dir_all(&d).expect("mkdir");
        std::fs::write(d.join("plugin.toml"), text).expect("write manifest");
        manifests.push(d.join("plugin.toml"));
    }
    Written {
        _dir: dir,
        fleet,
        manifests,
    }
}

/// Every problem names a file of this fleet; a problem from a document
/// that parsed names its key too, or says which key is missing.
fn check_problems(
    err: &ConfigError,
    written: &Written,
    names: &[String],
    parsed: bool,
) -> Result<(), TestCaseError> {
    prop_assert!(!err.problems.is_empty(), "an error with no problem");
    let files: Vec<String> = std::iter::once(&written.fleet)
        .chain(&written.manifests)
        .map(|p| p.display().to_string())
        .collect();
    let shown = err.to_string();
    for p in &err.problems {
        prop_assert!(
            files.iter().any(|f| p.file.contains(f.as_str())),
            "problem names no file of the fleet: {p}"
        );
        prop_assert!(!p.message.is_empty(), "{p}");
        prop_assert!(shown.contains(&p.file), "{shown}");
        if parsed {
            prop_assert!(
                !p.key.is_empty() || p.message.contains("missing field"),
                "problem names no key: {p}"
            );
        }
        if let Some(rest) = p.key.strip_prefix("plugins.") {
            prop_assert!(
                names.iter().any(|n| rest.starts_with(n.as_str())),
                "key {} names no plugin of {names:?}",
                p.key
            );
        }
        if !p.key.is_empty() {
            let quoted = format!("key `{}`", p.key);
            prop_assert!(shown.contains(&quoted), "{shown}");
        }
    }
    Ok(())
}

/// What holds of every fleet that loads.
fn check_fleet(fleet: &Fleet, names: &[String]) -> Result<(), TestCaseError> {
    prop_assert_eq!(fleet.plugins.len(), names.len());
    for (i, p) in fleet.plugins.iter().enumerate() {
        prop_assert!(names.contains(&p.name));
        prop_assert!(!p.cmd.is_empty() && !p.cmd[0].is_empty());
        prop_assert!(p.heartbeat.misses >= 1);
        prop_assert!(!p.heartbeat.interval.is_zero() && !p.heartbeat.timeout.is_zero());
        for pat in p.bus.subscribe.iter().chain(&p.bus.publish) {
            prop_assert!(corral_proto::event::check_pattern(pat).is_ok(), "{pat}");
        }
        for r in &p.requires {
            let before = fleet.plugins[..i].iter().any(|o| &o.name == r);
            prop_assert!(before, "{} starts before {r}, which it requires", p.name);
        }
    }
    Ok(())
}

fn load_and_check(files: &Files, parsed: bool) -> Result<(), TestCaseError> {
    let written = write(files);
    match config::load(&written.fleet) {
        Ok(fleet) => check_fleet(&fleet, &files.names)?,
        Err(err) => check_problems(&err, &written, &files.names, parsed)?,
    }
    if let Err(err) = config::load_supervisor_settings(&written.fleet) {
        check_problems(&err, &written, &files.names, parsed)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(config(96))]

    #[test]
    fn documents_from_the_key_grammar_load_or_name_file_and_key(files in fleet(false)) {
        load_and_check(&files, true)?;
    }

    #[test]
    fn documents_with_only_valid_values_load(files in fleet(true)) {
        let written = write(&files);
        match config::load(&written.fleet) {
            Ok(fleet) => check_fleet(&fleet, &files.names)?,
            Err(e) => prop_assert!(false, "a valid fleet was refused:\n{e}\n---\n{}", files.fleet),
        }
    }

    #[test]
    fn mutated_documents_load_or_name_the_file(
        (files, fleet_text, manifest_text) in fleet(false).prop_flat_map(|f| {
            let m = f.manifests.values().next().cloned().unwrap_or_default();
            (Just(f.clone()), mutate(f.fleet), mutate(m))
        })
    ) {
        let mut files = files;
        // An edit may rename a plugin: its names are those of the text as edited.
        if let Some(names) = plugin_names(&fleet_text) {
            files.names = names;
        }
        files.fleet = fleet_text;
        if let Some(first) = files.manifests.values_mut().next() {
            *first = manifest_text;
        }
        load_and_check(&files, false)?;
    }

    #[test]
    fn raw_text_loads_or_names_the_file(fleet in ".{0,200}", manifest in ".{0,200}", bytes in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut fleet = fleet;
        fleet.push_str("\n[plugins.p]\npath = \"m\"\n");
        let files = Files {
            fleet: fleet.clone(),
            manifests: BTreeMap::from([("m".to_string(), manifest)]),
            names: vec!["p".into()],
        };
        load_and_check(&files, false)?;
        // Not even UTF-8.
        let written = write(&Files { fleet: String::new(), manifests: BTreeMap::new(), names: vec![] });
        std::fs::write(&written.fleet, &bytes).expect("write");
        if let Err(err) = config::load(&written.fleet) {
            check_problems(&err, &written, &[], false)?;
        }
    }
}

/// The loader never reads outside what it is given: a missing file is a
/// problem naming it, not a panic.
#[test]
fn a_missing_file_is_named() {
    let path = Path::new("/nonexistent/corral.toml");
    let err = config::load(path).expect_err("missing");
    assert!(
        err.to_string().contains("/nonexistent/corral.toml"),
        "{err}"
    );
}

/// A duration too long to add to the clock would panic the supervisor's
/// timers (`Instant::now() + timeout`): the loader refuses it by key.
#[test]
fn a_duration_beyond_the_clock_is_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("corral.toml");
    std::fs::write(
        &file,
        "[plugins.a]\ncmd = [\"true\"]\nhandshake_timeout = \"500000000000years\"\n",
    )
    .expect("write");
    let err = config::load(&file).expect_err("an endless timeout is refused");
    assert!(err.to_string().contains("handshake_timeout"), "{err}");
}
