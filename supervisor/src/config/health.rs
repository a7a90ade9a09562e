//! A plugin's health and readiness as resolved: its probe (`http`, `tcp`
//! or `exec`, exactly one), what counts as up, and its timing; `ready`,
//! whether `running` waits for the first passing probe; and `notify` and
//! `watchdog` (systemd's notify protocol). Checking the
//! written table is here; running probes is `os::probe`'s.

use std::time::Duration;

use serde::Serialize;

use super::defaults;
use super::layers::HealthLayer;
use crate::units::{ReadyOn, serialize_duration};

/// What a probe does; the texts may hold variables (`${port}`), expanded
/// at each spawn.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Probe {
    /// GET the URL; up on a 2xx (or `status`), with `body` in the answer.
    Http {
        /// The URL (`http://host:port/path`).
        url: String,
        /// The status that is up, instead of any 2xx.
        status: Option<u16>,
        /// Text the body must contain.
        body: Option<String>,
    },
    /// Connect to `host:port`.
    Tcp {
        /// Where.
        addr: String,
    },
    /// Run the command; up on exit code 0.
    Exec {
        /// Program and arguments.
        cmd: Vec<String>,
    },
}

impl Probe {
    /// Its kind, as in the config and in `health` exit reasons.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Http { .. } => "http",
            Self::Tcp { .. } => "tcp",
            Self::Exec { .. } => "exec",
        }
    }

    /// Its key in the config.
    fn key(&self) -> &'static str {
        match self {
            Self::Http { .. } => "health.http",
            Self::Tcp { .. } => "health.tcp",
            Self::Exec { .. } => "health.exec",
        }
    }

    /// The same probe with `expand` applied to each text that may hold
    /// variables, or its first error.
    pub fn expanded<E>(&self, expand: impl Fn(&str) -> Result<String, E>) -> Result<Self, E> {
        Ok(match self {
            Self::Http { url, status, body } => Self::Http {
                url: expand(url)?,
                status: *status,
                body: body.clone(),
            },
            Self::Tcp { addr } => Self::Tcp {
                addr: expand(addr)?,
            },
            Self::Exec { cmd } => Self::Exec {
                cmd: cmd.iter().map(|a| expand(a)).collect::<Result<_, _>>()?,
            },
        })
    }

    /// The texts that may hold variables.
    pub fn texts(&self) -> Vec<&str> {
        match self {
            Self::Http { url, .. } => vec![url.as_str()],
            Self::Tcp { addr } => vec![addr.as_str()],
            Self::Exec { cmd } => cmd.iter().map(String::as_str).collect(),
        }
    }
}

/// A health probe in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// What it does.
    pub probe: Probe,
    /// How often.
    #[serde(serialize_with = "serialize_duration")]
    pub interval: Duration,
    /// How long one may take.
    #[serde(serialize_with = "serialize_duration")]
    pub timeout: Duration,
    /// Failures in a row that make the plugin unhealthy.
    pub misses: u32,
    /// Grace after each start during which failures do not count.
    #[serde(serialize_with = "serialize_duration")]
    pub start_period: Duration,
}

/// The probe `layer` describes, or each problem (sub-key and why).
pub(super) fn resolve(layer: HealthLayer) -> Result<Health, Vec<(&'static str, String)>> {
    let mut problems = Vec::new();
    let probe = probe(&layer, &mut problems);
    let or = |d: Option<crate::units::HumanDuration>, default: Duration| d.map_or(default, |d| d.0);
    let health = probe.map(|probe| Health {
        probe,
        interval: or(layer.interval, defaults::HEALTH_INTERVAL),
        timeout: or(layer.timeout, defaults::HEALTH_TIMEOUT),
        misses: layer.misses.unwrap_or(defaults::HEALTH_MISSES),
        start_period: or(layer.start_period, defaults::HEALTH_START_PERIOD),
    });
    if let Some(h) = &health {
        for (key, zero) in [
            ("health.interval", h.interval.is_zero()),
            ("health.timeout", h.timeout.is_zero()),
        ] {
            if zero {
                problems.push((key, "must be more than zero".into()));
            }
        }
        if h.misses == 0 {
            problems.push(("health.misses", "must be at least 1".into()));
        }
    }
    match health {
        Some(h) if problems.is_empty() => Ok(h),
        _ => Err(problems),
    }
}

/// The one probe `layer` names, pushing what is wrong with it.
fn probe(layer: &HealthLayer, problems: &mut Vec<(&'static str, String)>) -> Option<Probe> {
    let mut refuse = |key: &'static str, why: &str| problems.push((key, why.to_string()));
    if layer.http.is_none() && (layer.status.is_some() || layer.body.is_some()) {
        refuse("health", "`status` and `body` are for an `http` probe");
    }
    match (&layer.http, &layer.tcp, &layer.exec) {
        (Some(url), None, None) => {
            if let Err(why) = check_url(url) {
                refuse("health.http", &why);
            }
            let status = layer.status.map(|s| u16::try_from(s).unwrap_or(0));
            if status.is_some_and(|s| !(100..=599).contains(&s)) {
                refuse("health.status", "must be an HTTP status, 100 to 599");
            }
            Some(Probe::Http {
                url: url.clone(),
                status,
                body: layer.body.clone(),
            })
        }
        (None, Some(addr), None) => {
            if !addr.contains(':') {
                let why = format!("`{addr}` is not host:port (such as \"127.0.0.1:${{port}}\")");
                refuse("health.tcp", &why);
            }
            Some(Probe::Tcp { addr: addr.clone() })
        }
        (None, None, Some(cmd)) if !cmd.is_empty() => Some(Probe::Exec { cmd: cmd.clone() }),
        (None, None, Some(_)) => {
            refuse("health.exec", "is empty; it needs at least the program");
            None
        }
        (None, None, None) => {
            refuse(
                "health",
                "names no probe: set one of `http`, `tcp` or `exec`",
            );
            None
        }
        _ => {
            refuse(
                "health",
                "names more than one probe: keep one of `http`, `tcp` and `exec`",
            );
            None
        }
    }
}

/// The probe and readiness in force from what a plugin's layers say, and
/// each problem (key and why): the probe's own, its variables (`has`:
/// which of `${port}` and `${instance}` have a value), and `ready =
/// "health"` without a probe.
pub(super) fn of(
    layer: Option<HealthLayer>,
    ready: Option<ReadyOn>,
    has: crate::vars::Has,
) -> (Option<Health>, ReadyOn, Vec<(&'static str, String)>) {
    let ready = ready.unwrap_or_default();
    let (health, mut problems) = match layer.map(resolve) {
        Some(Ok(h)) => (Some(h), Vec::new()),
        Some(Err(problems)) => (None, problems),
        None => (None, Vec::new()),
    };
    if let Some(h) = &health {
        let env = |name: &str| std::env::var(name).ok();
        for text in h.probe.texts() {
            if let Err(e) = crate::vars::check(text, has, env) {
                problems.push((h.probe.key(), e.to_string()));
            }
        }
    }
    if ready == ReadyOn::Health && health.is_none() && problems.is_empty() {
        problems.push((
            "ready",
            "`ready = \"health\"` needs a `health` probe".into(),
        ));
    }
    (health, ready, problems)
}

/// Whether the plugin speaks systemd's notify protocol, and its watchdog
/// period, from what its layers say, with each problem (key and why).
pub(super) fn notify_of(
    notify: Option<bool>,
    watchdog: Option<crate::units::HumanDuration>,
) -> (bool, Option<Duration>, Vec<(&'static str, String)>) {
    let notify = notify.unwrap_or(false);
    let watchdog = watchdog.map(|w| w.0);
    let mut problems = Vec::new();
    match watchdog {
        Some(_) if !notify => problems.push((
            "watchdog",
            "needs `notify = true`: the watchdog counts the WATCHDOG=1 messages on its NOTIFY_SOCKET".into(),
        )),
        Some(w) if w.is_zero() => problems.push(("watchdog", "must be more than zero".into())),
        _ => {}
    }
    (notify, watchdog, problems)
}

/// A URL a probe can GET: `http://host[:port][/path]`.
fn check_url(url: &str) -> Result<(), String> {
    let Some(rest) = url.strip_prefix("http://") else {
        return Err(format!(
            "`{url}` is not a plain http:// URL (such as \"http://127.0.0.1:${{port}}/health\"); probes speak HTTP/1.1 without TLS"
        ));
    };
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() {
        return Err(format!("`{url}` names no host"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_probe_with_its_timing_or_every_problem() {
        let layer = HealthLayer {
            http: Some("http://127.0.0.1:${port}/health".into()),
            misses: Some(2),
            ..HealthLayer::default()
        };
        let h = resolve(layer).unwrap();
        assert_eq!(h.probe.kind(), "http");
        assert_eq!((h.interval, h.misses), (Duration::from_secs(5), 2));
        let both = HealthLayer {
            http: Some("https://x/".into()),
            tcp: Some("x:1".into()),
            ..HealthLayer::default()
        };
        assert!(
            resolve(both).unwrap_err()[0]
                .1
                .contains("more than one probe")
        );
        let bad = HealthLayer {
            http: Some("https://x/health".into()),
            status: Some(42),
            misses: Some(0),
            ..HealthLayer::default()
        };
        let keys: Vec<&str> = resolve(bad).unwrap_err().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["health.http", "health.status", "health.misses"]);
        assert!(
            resolve(HealthLayer::default()).unwrap_err()[0]
                .1
                .contains("names no probe")
        );
    }
}
