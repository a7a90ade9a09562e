//! Human-friendly units in config files: durations ("500ms", "5s", "1m"),
//! sizes ("64MiB", "1GiB", "512KB"), signal names ("SIGTERM", "INT"), ports
//! (`"auto"` or a number) and `ready` (`"started"` or `"health"`), read
//! from text and written back as text (as `corral inspect` shows settings).

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer, de};

/// The longest duration a config may give: far beyond any timeout, and
/// safe to add to the clock.
pub const MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// A duration written as text with a unit, such as `"250ms"` or `"5s"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let d = humantime::parse_duration(&text).map_err(|e| {
            de::Error::custom(format!(
                "`{text}` is not a duration ({e}); write a number and a unit, such as \"500ms\" or \"5s\""
            ))
        })?;
        if d > MAX_DURATION {
            return Err(de::Error::custom(format!(
                "`{text}` is longer than 100 years, the longest duration corral accepts"
            )));
        }
        Ok(Self(d))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(self.0))
    }
}

/// Writes a duration as text, such as `"1s"` or `"1m 30s"`, to the
/// millisecond (finer parts are dropped): for `#[serde(serialize_with)]` on
/// the `Duration` fields of resolved settings.
pub fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    let ms = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    s.collect_str(&humantime::format_duration(ms))
}

/// [`serialize_duration`] of an optional duration (with
/// `skip_serializing_if = "Option::is_none"`; `None` is written as null).
pub fn serialize_opt_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => serialize_duration(d, s),
        None => s.serialize_none(),
    }
}

/// A size in bytes written as text with a unit, such as `"64MiB"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl<'de> Deserialize<'de> for Size {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.parse::<bytesize::ByteSize>() {
            Ok(size) if size.as_u64() > 0 => Ok(Self(size.as_u64())),
            Ok(_) => Err(de::Error::custom("a size must be more than zero bytes")),
            Err(e) => Err(de::Error::custom(format!(
                "`{text}` is not a size ({e}); write a number and a unit, such as \"64MiB\""
            ))),
        }
    }
}

impl Serialize for Size {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", bytesize::ByteSize(self.0).display().iec())
    }
}

/// When a plugin counts as running.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadyOn {
    /// Once spawned (`protocol = "none"`) or once it shook hands.
    #[default]
    Started,
    /// Besides, once its health probe first passes.
    Health,
}

/// `user`: the user a plugin runs as, when the supervisor runs as root.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "String", into = "String")]
pub enum UserSetting {
    /// A user of the host, by name.
    Named(String),
    /// A uid of its own in 61184–65519, drawn from the plugin's name and
    /// kept for as long as the supervisor runs.
    Dynamic,
}

impl From<String> for UserSetting {
    fn from(s: String) -> Self {
        if s == "dynamic" {
            Self::Dynamic
        } else {
            Self::Named(s)
        }
    }
}

impl From<UserSetting> for String {
    fn from(u: UserSetting) -> Self {
        match u {
            UserSetting::Named(name) => name,
            UserSetting::Dynamic => "dynamic".into(),
        }
    }
}

/// `execution_mode`: whether a plugin runs as it is, or in the sandbox
/// its `permissions` words widen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExecutionMode {
    /// As it is (or in the `sandbox` table it is given).
    #[default]
    Trusted,
    /// In a sandbox: no network, its folder read-only, a private temp dir
    /// and data dir to write; `permissions` words widen it.
    Sandboxed,
}

/// `sandbox.network`: what network a sandboxed plugin has.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NetworkMode {
    /// The host's network, as without a sandbox.
    #[default]
    Any,
    /// A network namespace of its own with nothing in it.
    None,
    /// A network namespace of its own with only its loopback (`lo`) up: it
    /// reaches its own 127.0.0.1, nothing of the host's network.
    Loopback,
}

/// `sandbox.seccomp`: whether a sandboxed plugin's system calls are
/// filtered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SeccompMode {
    /// corral's deny list: tracing, mounts, modules, BPF, … and limits or
    /// priorities of other processes.
    #[default]
    Default,
    /// No filter.
    None,
}

/// `sandbox.signals`: whom a sandboxed plugin may signal.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignalsMode {
    /// Only processes of its own sandbox: its descendants.
    #[default]
    Own,
    /// Any process its user may signal.
    Any,
}

/// A share of one CPU core, written `"50%"` (or more than `"100%"` for
/// more than one core): `cpu_max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Percent(pub u32);

/// The most `cpu_max` may be: 64 cores.
pub const MAX_PERCENT: u32 = 6400;

impl<'de> Deserialize<'de> for Percent {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let number = text
            .strip_suffix('%')
            .and_then(|n| n.trim().parse::<u32>().ok())
            .filter(|n| (1..=MAX_PERCENT).contains(n));
        number.map(Self).ok_or_else(|| {
            de::Error::custom(format!(
                "`{text}` is not a share of a core: write a percentage from \"1%\" to \"{MAX_PERCENT}%\" (such as \"50%\", or \"200%\" for two cores)"
            ))
        })
    }
}

impl Serialize for Percent {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}%", self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    struct T {
        d: Option<HumanDuration>,
        s: Option<Size>,
    }

    fn parse(text: &str) -> Result<T, String> {
        toml_like(text)
    }

    fn toml_like(text: &str) -> Result<T, String> {
        use figment::providers::{Format, Toml};
        figment::Figment::from(Toml::string(text))
            .extract()
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_and_sizes_parse() {
        let t = parse("d = \"250ms\"\ns = \"64MiB\"").unwrap();
        assert_eq!(t.d, Some(HumanDuration(Duration::from_millis(250))));
        assert_eq!(t.s, Some(Size(64 * 1024 * 1024)));
    }

    #[test]
    fn durations_are_written_as_text_to_the_millisecond() {
        #[derive(Serialize)]
        struct W(#[serde(serialize_with = "serialize_duration")] Duration);
        let text = |d| serde_json::to_value(W(d)).unwrap();
        assert_eq!(text(Duration::from_micros(1_500_900)), "1s 500ms");
        assert_eq!(text(Duration::from_secs(90)), "1m 30s");
        assert_eq!(text(Duration::from_micros(999)), "0s");
    }

    #[test]
    fn bad_units_say_what_is_expected() {
        let err = parse("d = \"5 parsecs\"").unwrap_err();
        assert!(err.contains("500ms"), "{err}");
        let err = parse("s = \"lots\"").unwrap_err();
        assert!(err.contains("64MiB"), "{err}");
        assert!(parse("s = \"0B\"").unwrap_err().contains("more than zero"));
    }
}

/// The signals a stop may begin with (`stop_signal`).
const STOP_SIGNALS: &[nix::sys::signal::Signal] = {
    use nix::sys::signal::Signal::*;
    &[SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH]
};

/// A signal a stop begins with, written by name: `"SIGTERM"` or `"TERM"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StopSignal(pub nix::sys::signal::Signal);

impl Default for StopSignal {
    fn default() -> Self {
        Self(nix::sys::signal::Signal::SIGTERM)
    }
}

impl<'de> Deserialize<'de> for StopSignal {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let name = text.trim().to_ascii_uppercase();
        let name = if name.starts_with("SIG") {
            name
        } else {
            format!("SIG{name}")
        };
        STOP_SIGNALS
            .iter()
            .find(|s| s.as_str() == name)
            .map(|s| Self(*s))
            .ok_or_else(|| {
                let known: Vec<&str> = STOP_SIGNALS.iter().map(|s| s.as_str()).collect();
                de::Error::custom(format!(
                    "`{text}` is not a signal a stop may begin with; write one of {}",
                    known.join(", ")
                ))
            })
    }
}

impl Serialize for StopSignal {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.as_str())
    }
}

impl fmt::Display for StopSignal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// `port`: a free loopback TCP port taken for each spawn (`"auto"`), or a
/// fixed one (1 to 65535).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortSetting {
    /// A free port on 127.0.0.1, chosen at each spawn.
    Auto,
    /// This port.
    Fixed(u16),
}

impl<'de> Deserialize<'de> for PortSetting {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Text(t) if t == "auto" => Ok(Self::Auto),
            Raw::Number(n) => u16::try_from(n)
                .ok()
                .filter(|p| *p > 0)
                .map(Self::Fixed)
                .ok_or_else(|| {
                    de::Error::custom(format!(
                        "port {n} is outside 1 to 65535; write a port in that range, or \"auto\""
                    ))
                }),
            Raw::Text(t) => Err(de::Error::custom(format!(
                "`{t}` is not a port; write \"auto\" or a number from 1 to 65535"
            ))),
        }
    }
}

impl Serialize for PortSetting {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Auto => s.serialize_str("auto"),
            Self::Fixed(p) => s.serialize_u16(*p),
        }
    }
}
