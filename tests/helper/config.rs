//! The fleet builder: [`FleetConfig`] and [`Plugin`] write a fleet's TOML
//! through the `toml` crate, so quoting is always right. It only writes
//! text; starting a supervisor on it is [`crate::fleet`]'s.
//!
//! Plugins keep the order they were added in (it is the fleet's start and
//! `ps` order); keys inside a table are written sorted.

use serde::Serialize;
use serde::ser::SerializeMap;

use crate::fleet::Fleet;
use crate::paths::{bin, fixture, repo_root};

/// A fleet config: `[supervisor]`, `[http]`, `[defaults]` and `[plugins.*]`.
#[derive(Debug, Clone, Default)]
pub struct FleetConfig {
    supervisor: toml::Table,
    http: toml::Table,
    defaults: toml::Table,
    plugins: Vec<Plugin>,
}

/// One `[plugins.NAME]` table.
#[derive(Debug, Clone)]
pub struct Plugin {
    name: String,
    table: toml::Table,
}

/// Any serializable value as a TOML value (JSON objects become tables).
fn value(v: impl Serialize) -> toml::Value {
    toml::Value::try_from(v).expect("a value TOML can hold (no null)")
}

impl FleetConfig {
    /// An empty fleet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets `[supervisor] KEY = VALUE`.
    pub fn supervisor(mut self, key: &str, v: impl Serialize) -> Self {
        self.supervisor.insert(key.into(), value(v));
        self
    }

    /// Sets `[http] KEY = VALUE` (the HTTP face is served once one is set).
    pub fn http(mut self, key: &str, v: impl Serialize) -> Self {
        self.http.insert(key.into(), value(v));
        self
    }

    /// Sets `[defaults] KEY = VALUE`.
    pub fn defaults(mut self, key: &str, v: impl Serialize) -> Self {
        self.defaults.insert(key.into(), value(v));
        self
    }

    /// Adds a plugin, after those added before.
    pub fn plugin(mut self, plugin: Plugin) -> Self {
        self.plugins.push(plugin);
        self
    }

    /// Adds several plugins, in order.
    pub fn plugins(mut self, plugins: impl IntoIterator<Item = Plugin>) -> Self {
        self.plugins.extend(plugins);
        self
    }

    /// The fleet file's text.
    pub fn toml(&self) -> String {
        toml::to_string(self).expect("a fleet config serializes")
    }

    /// Starts a supervisor on this config.
    pub fn start(&self) -> Fleet {
        Fleet::start(&self.toml())
    }

    /// Starts a supervisor on this config with extra environment.
    pub fn start_with_env(&self, envs: &[(&str, &str)]) -> Fleet {
        Fleet::start_with_env(&self.toml(), envs)
    }
}

impl Serialize for FleetConfig {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        if !self.supervisor.is_empty() {
            map.serialize_entry("supervisor", &self.supervisor)?;
        }
        if !self.http.is_empty() {
            map.serialize_entry("http", &self.http)?;
        }
        if !self.defaults.is_empty() {
            map.serialize_entry("defaults", &self.defaults)?;
        }
        map.serialize_entry("plugins", &Plugins(&self.plugins))?;
        map.end()
    }
}

/// The plugin tables, written in the order they were added.
struct Plugins<'a>(&'a [Plugin]);

impl Serialize for Plugins<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for p in self.0 {
            map.serialize_entry(&p.name, &p.table)?;
        }
        map.end()
    }
}

impl Plugin {
    /// A plugin with no settings yet.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            table: toml::Table::new(),
        }
    }

    /// The Rust echo plugin (examples/echo).
    pub fn echo(name: &str) -> Self {
        Self::new(name).cmd([bin("echo-plugin").display().to_string()])
    }

    /// The Python echo plugin (examples/echo-py), by its folder.
    pub fn echo_py(name: &str) -> Self {
        Self::new(name).path(repo_root().join("examples/echo-py").display().to_string())
    }

    /// tests/fixtures/rogue.py in `mode`, on the JSON codec.
    pub fn rogue(name: &str, mode: &str) -> Self {
        let rogue = fixture("rogue.py").display().to_string();
        Self::new(name)
            .cmd(["python3", rogue.as_str(), mode])
            .codec("json")
    }

    /// Sets `KEY = VALUE`; JSON objects become tables.
    pub fn set(mut self, key: &str, v: impl Serialize) -> Self {
        self.table.insert(key.into(), value(v));
        self
    }

    /// `cmd`: the program and its arguments.
    pub fn cmd<S: AsRef<str>>(self, argv: impl IntoIterator<Item = S>) -> Self {
        let argv: Vec<String> = argv.into_iter().map(|a| a.as_ref().to_string()).collect();
        self.set("cmd", argv)
    }

    /// `path`: the plugin's folder (with its `plugin.toml`).
    pub fn path(self, folder: impl AsRef<str>) -> Self {
        self.set("path", folder.as_ref())
    }

    /// `config`: the table handed to the plugin.
    pub fn config(self, config: serde_json::Value) -> Self {
        self.set("config", config)
    }

    /// `codec`: `json` or `bincode`.
    pub fn codec(self, codec: &str) -> Self {
        self.set("codec", codec)
    }

    /// `restart`: `always`, `on-failure` or `never`.
    pub fn restart(self, policy: &str) -> Self {
        self.set("restart", policy)
    }

    /// `memory_max`, such as `64MiB`.
    pub fn memory_max(self, size: &str) -> Self {
        self.set("memory_max", size)
    }

    /// `limits`: `auto` or `sampling`.
    pub fn limits(self, mode: &str) -> Self {
        self.set("limits", mode)
    }

    /// `requires`: plugins that must run first.
    pub fn requires<const N: usize>(self, names: [&str; N]) -> Self {
        self.set("requires", names.as_slice())
    }

    /// `subscribe`: the allow-list and initial subscriptions.
    pub fn subscribe<const N: usize>(self, patterns: [&str; N]) -> Self {
        self.set("subscribe", patterns.as_slice())
    }

    /// `heartbeat = { interval, timeout, misses }`.
    pub fn heartbeat(self, interval: &str, timeout: &str, misses: u32) -> Self {
        self.set(
            "heartbeat",
            serde_json::json!({"interval": interval, "timeout": timeout, "misses": misses}),
        )
    }
}

/// `corral check` of a fleet file written from `toml`: its exit code and
/// what it printed (stdout, then stderr).
pub fn check(toml: &str) -> (Option<i32>, String) {
    let dir = crate::paths::tempdir();
    let config = dir.path().join("corral.toml");
    std::fs::write(&config, toml).expect("config");
    check_file(&config)
}

/// [`check`] of a fleet whose folder also holds `files` (path, text), such
/// as manifests.
pub fn check_with(files: &[(&str, &str)], toml: &str) -> (Option<i32>, String) {
    let dir = crate::paths::tempdir();
    for (path, text) in files {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().expect("a folder")).expect("mkdir");
        std::fs::write(path, text).expect("file");
    }
    let config = dir.path().join("corral.toml");
    std::fs::write(&config, toml).expect("config");
    check_file(&config)
}

/// `corral check -c config`: its exit code and what it printed.
pub fn check_file(config: &std::path::Path) -> (Option<i32>, String) {
    let out = std::process::Command::new(crate::paths::bin("corral"))
        .args(["check", "-c"])
        .arg(config)
        .output()
        .expect("corral check");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Asserts that `check`'s output refuses each key (`plugins.p.x`) on a line
/// of its own that says why.
pub fn assert_refused(output: &str, refusals: &[(&str, &str)]) {
    for (key, why) in refusals {
        let line = output.lines().find(|l| l.contains(&format!("`{key}`")));
        assert!(
            line.is_some_and(|l| l.contains(why)),
            "{key}: {why} not said:\n{output}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugins_keep_their_order_and_nested_tables_their_place() {
        let text = FleetConfig::new()
            .supervisor("strategy", "one_for_all")
            .plugin(
                Plugin::new("zeta")
                    .cmd(["a b", "quote\"d"])
                    .subscribe(["x.>"])
                    .config(serde_json::json!({"greeting": "hi", "n": 3})),
            )
            .plugin(Plugin::new("al.pha").heartbeat("100ms", "1s", 2))
            .toml();
        let parsed: toml::Table = text.parse().expect("valid TOML");
        let plugins = parsed["plugins"].as_table().expect("plugins");
        assert_eq!(
            plugins.keys().collect::<Vec<_>>(),
            ["al.pha", "zeta"],
            "{text}"
        );
        assert!(
            text.find("zeta").unwrap() < text.find("al.pha").unwrap(),
            "{text}"
        );
        assert_eq!(
            parsed["supervisor"]["strategy"].as_str(),
            Some("one_for_all")
        );
        let zeta = &plugins["zeta"];
        assert_eq!(zeta["cmd"][1].as_str(), Some("quote\"d"));
        assert_eq!(zeta["config"]["n"].as_integer(), Some(3));
        assert_eq!(
            plugins["al.pha"]["heartbeat"]["misses"].as_integer(),
            Some(2)
        );
    }
}
