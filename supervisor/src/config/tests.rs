//! Loading whole fleet files: layering, defaults, and the problems named.

use std::time::Duration;

use corral_proto::Codec;

use super::*;
use crate::restart::{RestartLimit, RestartPolicy, Strategy};

fn write(dir: &Path, rel: &str, text: &str) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, text).unwrap();
    p
}

fn problems(file: &Path) -> Vec<Problem> {
    load(file).unwrap_err().problems
}

#[test]
fn inline_plugin_gets_builtin_defaults() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"bin/echo\", \"-v\"]\n",
    );
    let fleet = load(&f).unwrap();
    let p = &fleet.plugins[0];
    assert_eq!(p.cmd[0], tmp.path().join("bin/echo").to_string_lossy());
    assert_eq!(p.cmd[1], "-v");
    assert_eq!(p.heartbeat.misses, 3);
    assert_eq!(p.handshake_timeout, Duration::from_secs(5));
    assert_eq!(p.codec, Codec::Bincode);
    assert_eq!(fleet.supervisor.runtime_dir, tmp.path().join(".corral"));
    assert_eq!(fleet.supervisor.log_dir, tmp.path().join(".corral/logs"));
}

#[test]
fn bare_program_names_are_left_for_path_lookup() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.py]\ncmd = [\"python3\", \"x.py\"]\n",
    );
    assert_eq!(load(&f).unwrap().plugins[0].cmd[0], "python3");
}

#[test]
fn unknown_key_names_file_and_key() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nmemroy_max = \"1MiB\"\n",
    );
    let p = &problems(&f)[0];
    assert!(p.file.ends_with("corral.toml"), "{p}");
    assert_eq!(p.key, "plugins.echo.memroy_max");
    assert!(p.message.contains("unknown field"), "{p}");
}

#[test]
fn bad_duration_names_the_key() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nheartbeat = { interval = \"fast\" }\n",
    );
    let p = &problems(&f)[0];
    assert_eq!(p.key, "plugins.echo.heartbeat.interval", "{p}");
    assert!(p.message.contains("500ms"), "{p}");
}

#[test]
fn bus_memory_bounds_are_read_and_a_tiny_queue_bytes_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nqueue_bytes = \"2MiB\"\nretained_max = 7\nretained_bytes = \"64KiB\"\n",
    );
    let bus = &load(&f).unwrap().plugins[0].bus;
    assert_eq!(bus.queue_bytes, 2 * 1024 * 1024);
    assert_eq!((bus.retained.max, bus.retained.bytes), (7, 65_536));
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nqueue_bytes = \"512B\"\n",
    );
    let p = &problems(&f)[0];
    assert_eq!(p.key, "plugins.echo.queue_bytes", "{p}");
    assert!(p.message.contains("at least 1KiB"), "{p}");
}

#[test]
fn missing_cmd_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\nenabled = true\n",
    );
    let p = &problems(&f)[0];
    assert_eq!(p.key, "plugins.echo.cmd");
    assert!(p.file.ends_with("corral.toml"));
}

#[test]
fn every_bad_plugin_is_reported_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.a]\n[plugins.b]\n[plugins.c]\ncmd=[\"x\"]\n",
    );
    let keys: Vec<String> = problems(&f).into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["plugins.a.cmd", "plugins.b.cmd"]);
}

#[test]
fn manifest_layers_under_the_fleet_entry() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "plugins/echo/plugin.toml",
        r#"
name = "echo"
cmd = ["./run", "--fast"]
codec = "json"
stop_timeout = "1s"
[config_schema.greeting]
type = "string"
default = "hello"
[config_schema.level]
type = "integer"
"#,
    );
    let f = write(
        tmp.path(),
        "corral.toml",
        r#"
[defaults]
stop_timeout = "9s"
kill_timeout = "3s"
[plugins.echo]
path = "plugins/echo"
config = { level = 2 }
"#,
    );
    let fleet = load(&f).unwrap();
    let p = &fleet.plugins[0];
    let folder = tmp.path().join("plugins/echo");
    assert_eq!(p.cmd[0], folder.join("./run").to_string_lossy());
    assert_eq!(p.cwd, folder);
    assert_eq!(p.codec, Codec::Json);
    assert_eq!(
        p.stop_timeout,
        Duration::from_secs(1),
        "manifest beats [defaults]"
    );
    assert_eq!(
        p.kill_timeout,
        Duration::from_secs(3),
        "[defaults] beats built-in"
    );
    assert_eq!(
        p.config,
        serde_json::json!({"greeting": "hello", "level": 2})
    );
}

#[test]
fn config_is_checked_against_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p/plugin.toml",
        "name = \"p\"\ncmd = [\"x\"]\n[config_schema.level]\ntype = \"integer\"\nrequired = true\n",
    );
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.p]\npath = \"p\"\nconfig = { level = \"high\" }\n",
    );
    let p = &problems(&f)[0];
    assert_eq!(p.key, "plugins.p.config.level");
    assert!(p.message.contains("integer"), "{p}");

    let f = write(tmp.path(), "corral.toml", "[plugins.p]\npath = \"p\"\n");
    assert!(problems(&f)[0].message.contains("required"));
}

#[test]
fn broken_manifest_names_the_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p/plugin.toml",
        "name = \"p\"\ncmd = [\"x\"]\nhandshake_timeout = \"soon\"\n",
    );
    let f = write(tmp.path(), "corral.toml", "[plugins.p]\npath = \"p\"\n");
    let p = &problems(&f)[0];
    assert!(p.file.ends_with("p/plugin.toml"), "{p}");
    assert_eq!(p.key, "handshake_timeout");
}

#[test]
fn bad_names_and_missing_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.\"Bad.Name\"]\ncmd = [\"x\"]\n",
    );
    assert!(problems(&f)[0].message.contains("a-z"));
    let missing = tmp.path().join("nope.toml");
    assert!(problems(&missing)[0].message.contains("no such file"));
}

#[test]
#[allow(clippy::result_large_err)] // figment's Jail dictates the closure's error type
fn environment_overrides_the_fleet_file_but_ignores_client_variables() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.envtest]\ncmd = [\"x\"]\n",
    );
    figment::Jail::expect_with(|jail| {
        jail.set_env(
            "CORRAL_PLUGINS__ENVTEST__CMD",
            "[\"/bin/true\", \"--flag\"]",
        );
        jail.set_env("CORRAL_SOCKET", "/elsewhere.sock");
        let fleet = load(&f).map_err(|e| e.to_string())?;
        assert_eq!(fleet.plugins[0].cmd, ["/bin/true", "--flag"]);
        Ok(())
    });
}

#[test]
fn restart_settings_and_start_order() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        r#"
[supervisor]
strategy = "rest_for_one"
[defaults]
restart = "always"
backoff = { initial = "10ms", max = "1s" }
[plugins.web]
cmd = ["x"]
requires = ["db", "cache"]
[plugins.db]
cmd = ["x"]
restart_limit = { count = 2, within = "5s" }
success_codes = [0, 3]
[plugins.cache]
cmd = ["x"]
requires = ["db"]
restart = "never"
"#,
    );
    let fleet = load(&f).unwrap();
    let order: Vec<&str> = fleet.plugins.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(order, ["db", "cache", "web"]);
    assert_eq!(fleet.supervisor.strategy, Strategy::RestForOne);
    let db = &fleet.plugins[0];
    assert_eq!(db.restart, RestartPolicy::Always);
    assert_eq!(db.success_codes, [0, 3]);
    assert_eq!(db.backoff.initial, Duration::from_millis(10));
    assert_eq!(db.backoff.reset_after, Duration::from_secs(10));
    assert_eq!(
        db.restart_limit,
        RestartLimit {
            count: 2,
            within: Duration::from_secs(5)
        }
    );
    assert_eq!(fleet.plugins[1].restart, RestartPolicy::Never);
    assert_eq!(fleet.dependents_of("db"), ["cache", "web"]);
    assert_eq!(fleet.dependents_of("cache"), ["web"]);
    assert!(fleet.dependents_of("web").is_empty());
}

#[test]
fn unknown_requirements_and_cycles_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.a]\ncmd = [\"x\"]\nrequires = [\"ghost\"]\n",
    );
    let p = &problems(&f)[0];
    assert_eq!(p.key, "plugins.a.requires");
    assert!(p.message.contains("`ghost`"), "{p}");

    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.a]\ncmd=[\"x\"]\nrequires=[\"b\"]\n[plugins.b]\ncmd=[\"x\"]\nrequires=[\"c\"]\n[plugins.c]\ncmd=[\"x\"]\nrequires=[\"a\"]\n[plugins.d]\ncmd=[\"x\"]\n",
    );
    let p = &problems(&f)[0];
    assert!(p.message.contains("a -> b -> c -> a"), "{p}");

    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.a]\ncmd=[\"x\"]\nrequires=[\"a\"]\n",
    );
    assert!(problems(&f)[0].message.contains("itself"));
}

#[test]
fn every_builtin_default_applies() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(tmp.path(), "corral.toml", "[plugins.echo]\ncmd = [\"x\"]\n");
    let fleet = load(&f).unwrap();
    assert_eq!(fleet.supervisor.strategy, Strategy::OneForOne);
    let p = &fleet.plugins[0];
    let log = tmp.path().join("echo.log");
    let want = serde_json::json!({
        "cmd": ["x"],
        "env": {},
        "cwd": tmp.path(),
        "port": null,
        "enabled": true,
        "protocol": "corral",
        "codec": "bincode",
        "config": null,
        "handshake_timeout": "5s",
        "heartbeat": {"interval": "1s", "timeout": "1s", "misses": 3},
        "ready": "started",
        "notify": false,
        "stop_timeout": "5s",
        "kill_timeout": "2s",
        "stop_signal": "SIGTERM",
        "call_timeout": "30s",
        "memory_max": null,
        "memory_high": null,
        "memory_check_interval": "250ms",
        "pids_max": null,
        "nofile": null,
        "rate_limit": null,
        "limits": "auto",
        "cgroups": null,
        "restart": "on-failure",
        "success_codes": [0],
        "backoff": {"initial": "100ms", "max": "30s", "reset_after": "10s"},
        "restart_limit": {"count": 5, "within": "1m"},
        "requires": [],
        "log_max_size": 10_485_760,
        "log_keep": 5,
        "log_file": log,
        "manifest": null,
        "subscribe": [],
        "publish": ["echo.>"],
        "queue": 65_536,
        "queue_bytes": 16_777_216,
        "overflow": "drop-oldest",
        "durable": false,
        "max_subscriptions": 1024,
        "retained_max": 1024,
        "retained_bytes": 4_194_304,
    });
    assert_eq!(p.settings(&log, None), want);
    assert_eq!(p.bus.publish, ["echo.>"]);
    assert!(p.bus.subscribe.is_empty());
    assert_eq!(p.bus.queue, 65_536);
    assert_eq!(p.bus.overflow, crate::bus::Overflow::DropOldest);
    assert!(!p.bus.durable);
    assert_eq!(p.bus.queue_bytes, 16 * 1024 * 1024);
    assert_eq!(
        p.bus.retained,
        crate::bus::RetainBound {
            max: 1024,
            bytes: 4 * 1024 * 1024
        }
    );
    assert_eq!(p.bus.max_subscriptions, 1024);
    // The types' own defaults are the config's.
    assert_eq!(RestartPolicy::default(), p.restart);
    assert_eq!(crate::restart::Backoff::default(), p.backoff);
    assert_eq!(RestartLimit::default(), p.restart_limit);
    assert_eq!(crate::os::cgroup::LimitsMode::default(), p.limits);
    assert_eq!(crate::bus::Overflow::default(), p.bus.overflow);
    assert_eq!(Strategy::default(), fleet.supervisor.strategy);
}

#[test]
fn values_that_cannot_work_are_refused_by_key() {
    let cases = [
        ("handshake_timeout = \"0s\"", "handshake_timeout"),
        ("call_timeout = \"0ms\"", "call_timeout"),
        ("heartbeat = { interval = \"0s\" }", "heartbeat.interval"),
        ("heartbeat = { timeout = \"0s\" }", "heartbeat.timeout"),
        ("heartbeat = { misses = 0 }", "heartbeat.misses"),
        ("restart_limit = { count = 0 }", "restart_limit.count"),
        (
            "restart_limit = { within = \"0s\" }",
            "restart_limit.within",
        ),
        ("memory_check_interval = \"0s\"", "memory_check_interval"),
        ("queue = 0", "queue"),
        ("log_keep = 100000", "log_keep"),
        ("log_max_size = \"0B\"", "log_max_size"),
        ("cpu_weight = 0", "cpu_weight"),
        ("io_weight = 10001", "io_weight"),
        ("io_weight = 50\nlimits = \"sampling\"", "io_weight"),
    ];
    for (line, key) in cases {
        let tmp = tempfile::tempdir().unwrap();
        let f = write(
            tmp.path(),
            "corral.toml",
            &format!("[plugins.echo]\ncmd = [\"x\"]\n{line}\n"),
        );
        let p = &problems(&f)[0];
        assert_eq!(p.key, format!("plugins.echo.{key}"), "{line}: {p}");
        assert!(p.file.ends_with("corral.toml"), "{p}");
    }
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nlog_keep = 1000\nstop_timeout = \"0s\"\n",
    );
    let fleet = load(&f).unwrap();
    assert_eq!(
        fleet.plugins[0].log_keep, 1000,
        "the bound itself is allowed"
    );
}

#[test]
fn max_subscriptions_bounds_the_subscribe_list_and_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nsubscribe = [\"a\", \"b\", \"c\"]\nmax_subscriptions = 2\n",
    );
    let p = &problems(&f)[0];
    assert_eq!(p.key, "plugins.echo.subscribe", "{p}");
    assert!(p.message.contains("`max_subscriptions` (2)"), "{p}");
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nmax_subscriptions = 0\n",
    );
    assert_eq!(problems(&f)[0].key, "plugins.echo.max_subscriptions");
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.echo]\ncmd = [\"x\"]\nmax_subscriptions = 5000\n",
    );
    let fleet = load(&f).unwrap();
    assert_eq!(fleet.plugins[0].bus.max_subscriptions, 5000);
}

#[test]
fn every_problem_is_reported_at_once_across_plugins_and_manifests() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p/plugin.toml",
        "name = \"p\"\ncmd = [\"x\"]\nstop_timout = \"1s\"\n[config_schema.level]\ntype = \"integer\"\n",
    );
    let f = write(
        tmp.path(),
        "corral.toml",
        r#"
[supervisor]
strategy = "one_for_none"
[plugins.a]
cmd = ["x"]
memory_mx = "64MiB"
greeting = "hi"
stop_timeout = 5
queue = 0
heartbeat = { interval = "fast", misses = 0 }
[plugins.b]
path = "p"
restart = "sometimes"
config = { levl = 3 }
requires = ["ghost"]
"#,
    );
    let problems = problems(&f);
    let said = |key: &str| {
        problems
            .iter()
            .find(|p| p.key == key)
            .unwrap_or_else(|| panic!("nothing on `{key}` in {problems:#?}"))
    };
    assert!(said("supervisor.strategy").message.contains("one_for_one"));
    let typo = said("plugins.a.memory_mx");
    assert!(
        typo.message.contains("did you mean `memory_max`?"),
        "{typo}"
    );
    assert!(typo.file.ends_with("corral.toml"), "{typo}");
    let stray = said("plugins.a.greeting");
    assert!(stray.message.contains("`[plugins.a.config]`"), "{stray}");
    let ty = said("plugins.a.stop_timeout");
    assert!(ty.message.contains("`stop_timeout = \"5s\"`"), "{ty}");
    assert!(
        said("plugins.a.heartbeat.interval")
            .message
            .contains("500ms")
    );
    assert!(
        said("plugins.a.heartbeat.misses")
            .message
            .contains("at least 1")
    );
    assert!(said("plugins.a.queue").message.contains("at least 1"));
    let manifest = said("stop_timout");
    assert!(manifest.file.ends_with("p/plugin.toml"), "{manifest}");
    assert!(manifest.message.contains("did you mean `stop_timeout`?"));
    assert!(
        said("plugins.b.restart")
            .message
            .contains("`restart = \"on-failure\"`")
    );
    assert!(
        said("plugins.b.config.levl")
            .message
            .contains("did you mean `level`?")
    );
    assert!(said("plugins.b.requires").message.contains("`ghost`"));
    assert_eq!(problems.len(), 11, "{problems:#?}");
}

#[test]
fn a_key_refused_for_its_type_is_not_reported_again_by_its_value() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[defaults]\nkill_timeout = 3\n[plugins.a]\ncmd = 42\n[plugins.b]\ncmd = [\"x\"]\n",
    );
    let keys: Vec<String> = problems(&f).into_iter().map(|p| p.key).collect();
    assert_eq!(keys, ["defaults.kill_timeout", "plugins.a.cmd"]);
}

/// The fields serde's derive reads for `T`.
fn serde_fields<T: serde::de::DeserializeOwned>() -> Vec<&'static str> {
    use serde::de::{self, Visitor};
    struct Fields(std::cell::RefCell<Vec<&'static str>>);
    impl<'de> de::Deserializer<'de> for &Fields {
        type Error = de::value::Error;
        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }
        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _: &'static str,
            fields: &'static [&'static str],
            _: V,
        ) -> Result<V::Value, Self::Error> {
            self.0.replace(fields.to_vec());
            Err(de::Error::custom("fields read"))
        }
        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }
    let fields = Fields(std::cell::RefCell::new(Vec::new()));
    let _ = T::deserialize(&fields);
    fields.0.into_inner()
}

#[test]
fn the_grammar_of_every_table_is_its_struct() {
    use check::Table;
    fn names<T: Table + serde::de::DeserializeOwned>() -> (Vec<&'static str>, Vec<&'static str>) {
        let mut grammar: Vec<&str> = T::KEYS
            .iter()
            .flat_map(|g| g.iter().map(|k| k.name))
            .collect();
        let mut fields = serde_fields::<T>();
        grammar.sort_unstable();
        fields.sort_unstable();
        (grammar, fields)
    }
    let tables = [
        names::<layers::FleetFile>(),
        names::<layers::SupervisorLayer>(),
        names::<PluginLayer>(),
        names::<FleetEntry>(),
        names::<Manifest>(),
        names::<HeartbeatLayer>(),
        names::<BackoffLayer>(),
        names::<RestartLimitLayer>(),
        names::<RateLimitLayer>(),
        names::<SchemaEntry>(),
    ];
    for (grammar, fields) in tables {
        assert!(!fields.is_empty());
        assert_eq!(grammar, fields);
    }
}

#[test]
fn a_plugin_with_instances_becomes_its_instances_and_what_requires_it_requires_them_all() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.db]\ncmd = [\"db\"]\n\
         [plugins.web]\ncmd = [\"web\", \"--id=${instance}\"]\ninstances = 3\nrequires = [\"db\"]\n\
         [plugins.lb]\ncmd = [\"lb\"]\nrequires = [\"web\", \"db\"]\n",
    );
    let fleet = load(&f).unwrap();
    let names: Vec<(&str, Option<u32>)> = fleet
        .plugins
        .iter()
        .map(|p| (p.name.as_str(), p.instance))
        .collect();
    assert_eq!(
        names,
        [
            ("db", None),
            ("web.0", Some(0)),
            ("web.1", Some(1)),
            ("web.2", Some(2)),
            ("lb", None)
        ]
    );
    assert_eq!(fleet.plugins[2].requires, ["db"]);
    assert_eq!(fleet.plugins[4].requires, ["web.0", "web.1", "web.2", "db"]);
    assert_eq!(fleet.plugins[1].bus.publish, ["web.>"]);
    assert!(super::instances::selected("web", &fleet.plugins[1]));
    assert!(!super::instances::selected("web.1", &fleet.plugins[1]));
}

#[test]
fn zero_instances_and_an_instance_variable_without_instances_are_refused_by_key() {
    let tmp = tempfile::tempdir().unwrap();
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.none]\ncmd = [\"x\"]\ninstances = 0\n\
         [plugins.lone]\ncmd = [\"x\", \"${instance}\"]\n",
    );
    let got = problems(&f);
    let keys: Vec<&str> = got.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        ["plugins.lone.cmd", "plugins.none.instances"],
        "{got:?}"
    );
    assert!(got[0].message.contains("needs `instances`"), "{got:?}");
}

#[test]
fn a_manifest_names_only_its_own_env_files_and_never_its_sandbox() {
    let tmp = tempfile::tempdir().unwrap();
    write(
        tmp.path(),
        "p/plugin.toml",
        "name = \"p\"\ncmd = [\"x\"]\nenv_file = [\"-own.env\", \"/etc/passwd\", \"-../up.env\"]\n\
         sandbox = { fs_write = [\"/\"] }\n",
    );
    let f = write(tmp.path(), "corral.toml", "[plugins.p]\npath = \"p\"\n");
    let got = problems(&f);
    let keys: Vec<(&str, &str)> = got
        .iter()
        .map(|p| (p.file.rsplit('/').next().unwrap_or(""), p.key.as_str()))
        .collect();
    assert_eq!(
        keys,
        [("plugin.toml", "sandbox"), ("plugin.toml", "env_file")],
        "{got:?}"
    );
    assert!(
        got[1]
            .message
            .contains("`/etc/passwd, ../up.env` is not in the plugin's folder"),
        "{got:?}"
    );
    // The fleet file may name any.
    let f = write(
        tmp.path(),
        "corral.toml",
        "[plugins.q]\ncmd = [\"x\"]\nenv_file = \"-/etc/nonexistent.env\"\n",
    );
    assert!(load(&f).is_ok());
}
