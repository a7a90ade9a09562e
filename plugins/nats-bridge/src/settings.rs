//! The bridge's settings: its `config` table read and checked, every
//! problem named by its key. Pure: nothing here touches NATS or the bus.

use std::path::PathBuf;
use std::time::Duration;

use corral_proto::event::check_pattern;
use serde::Deserialize;
use serde_json::Value;

/// Events buffered while NATS is unreachable, at most.
pub(crate) const DEFAULT_BUFFER_EVENTS: usize = 10_000;
/// Bytes of events buffered while NATS is unreachable, at most.
pub(crate) const DEFAULT_BUFFER_BYTES: usize = 8 << 20;

/// What the bridge was configured to do.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Settings {
    /// The NATS server(s), comma-separated.
    pub(crate) url: String,
    /// This host's name among the fleets (a NATS subject token).
    pub(crate) node: String,
    /// The first token of every subject the bridge uses.
    pub(crate) prefix: String,
    /// Bus patterns whose events go out to NATS.
    pub(crate) export: Vec<String>,
    /// Patterns of `node.topic` whose events come in from NATS.
    pub(crate) import: Vec<String>,
    /// The bound on events kept while NATS is unreachable.
    pub(crate) buffer: Bound,
    /// The JetStream stream events go through, if any.
    pub(crate) jetstream: Option<JetStream>,
    /// How the bridge proves who it is to NATS.
    pub(crate) auth: Auth,
    /// TLS towards NATS.
    pub(crate) tls: Tls,
    /// The longest a remote call may take.
    pub(crate) call_timeout: Duration,
}

/// A count and a byte bound.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound {
    /// Events at most.
    pub(crate) events: usize,
    /// Bytes at most.
    pub(crate) bytes: usize,
}

/// Exported events go to a stream; imports are read from it by a durable
/// consumer, so a node that was down gets what it missed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JetStream {
    /// The stream's name.
    pub(crate) stream: String,
    /// The durable consumer's name (default `corral-NODE`).
    pub(crate) durable: String,
}

/// Credentials, as async-nats takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Auth {
    /// A `.creds` file (JWT and nkey seed).
    pub(crate) credentials: Option<PathBuf>,
    /// A token.
    pub(crate) token: Option<String>,
    /// A user and password.
    pub(crate) user: Option<(String, String)>,
    /// An nkey seed.
    pub(crate) nkey: Option<String>,
}

/// TLS towards the server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Tls {
    /// Refuse a server that does not offer TLS.
    pub(crate) required: bool,
    /// Root certificates to trust (PEM).
    pub(crate) ca: Option<PathBuf>,
    /// A client certificate and its key (PEM).
    pub(crate) client: Option<(PathBuf, PathBuf)>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    url: Option<String>,
    node: Option<String>,
    prefix: Option<String>,
    #[serde(default)]
    export: Vec<String>,
    #[serde(default)]
    import: Vec<String>,
    buffer: Option<RawBuffer>,
    jetstream: Option<RawJetStream>,
    credentials: Option<PathBuf>,
    token: Option<String>,
    user: Option<String>,
    password: Option<String>,
    nkey: Option<String>,
    tls_required: Option<bool>,
    tls_ca: Option<PathBuf>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    call_timeout_ms: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBuffer {
    events: Option<usize>,
    bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJetStream {
    stream: String,
    durable: Option<String>,
}

impl Settings {
    /// Reads the `config` table (`null` when there is none); `hostname`
    /// is the node's name when `node` is not set.
    pub(crate) fn from_config(config: Value, hostname: &str) -> Result<Self, String> {
        let config = if config.is_null() {
            Value::Object(Default::default())
        } else {
            config
        };
        let raw: Raw = serde_json::from_value(config).map_err(|e| format!("config: {e}"))?;
        // A host's dotted name (a Kubernetes node's) is one token with `-`.
        let node = raw
            .node
            .map_or_else(|| token_of(hostname), |n| n.replace('.', "-"));
        check_token("node", &node)?;
        let prefix = raw
            .prefix
            .unwrap_or_else(|| corral_proto::nats::DEFAULT_PREFIX.into());
        for part in prefix.split('.') {
            check_token("prefix", part)?;
        }
        patterns(&raw.export, &raw.import, raw.jetstream.is_some())?;
        let buffer = Bound {
            events: raw
                .buffer
                .as_ref()
                .and_then(|b| b.events)
                .unwrap_or(DEFAULT_BUFFER_EVENTS),
            bytes: raw
                .buffer
                .as_ref()
                .and_then(|b| b.bytes)
                .unwrap_or(DEFAULT_BUFFER_BYTES),
        };
        if buffer.events == 0 || buffer.bytes == 0 {
            return Err("buffer: `events` and `bytes` must be at least 1".into());
        }
        let jetstream = match raw.jetstream {
            Some(js) => {
                check_token("jetstream.stream", &js.stream)?;
                let durable = js.durable.unwrap_or_else(|| format!("corral-{node}"));
                check_token("jetstream.durable", &durable)?;
                Some(JetStream {
                    stream: js.stream,
                    durable,
                })
            }
            None => None,
        };
        let user = match (raw.user, raw.password) {
            (Some(u), Some(p)) => Some((u, p)),
            (None, None) => None,
            _ => return Err("`user` and `password` go together".into()),
        };
        let client = match (raw.tls_cert, raw.tls_key) {
            (Some(c), Some(k)) => Some((c, k)),
            (None, None) => None,
            _ => return Err("`tls_cert` and `tls_key` go together".into()),
        };
        Ok(Self {
            url: raw.url.unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            node,
            prefix,
            export: raw.export,
            import: raw.import,
            buffer,
            jetstream,
            auth: Auth {
                credentials: raw.credentials,
                token: raw.token,
                user,
                nkey: raw.nkey,
            },
            tls: Tls {
                required: raw.tls_required.unwrap_or(false),
                ca: raw.tls_ca,
                client,
            },
            call_timeout: Duration::from_millis(raw.call_timeout_ms.unwrap_or(30_000)),
        })
    }
}

/// Checks `export` and `import`: well-formed patterns, none taking the
/// subjects of remote calls and fleet status, and with `jetstream`, none a
/// stream could not hold apart from them.
fn patterns(export: &[String], import: &[String], jetstream: bool) -> Result<(), String> {
    for (i, p) in export.iter().enumerate() {
        check_pattern(p).map_err(|e| format!("export[{i}]: {e}"))?;
        if let Some(first) = p.split('.').next()
            && (first == "call" || first == "ps")
        {
            return Err(format!(
                "export[{i}]: `{p}`: topics under `call` and `ps` would be taken for remote calls and fleet status"
            ));
        }
    }
    for (i, p) in import.iter().enumerate() {
        check_pattern(p).map_err(|e| format!("import[{i}]: {e}"))?;
        let topic_first = p.split('.').nth(1);
        if topic_first.is_some_and(|t| t == "call" || t == "ps") {
            return Err(format!(
                "import[{i}]: `{p}`: topics under `call` and `ps` are remote calls and fleet status"
            ));
        }
        if !p.contains('.') && p != ">" {
            return Err(format!(
                "import[{i}]: `{p}` names no topic: write `NODE.TOPIC` patterns, such as `*.sensor.>`"
            ));
        }
    }
    if jetstream {
        for (i, p) in export.iter().enumerate() {
            if p.starts_with('*') || p.starts_with('>') {
                return Err(format!(
                    "export[{i}]: `{p}`: with `jetstream`, name each pattern's first segment, so the stream leaves remote calls and fleet status out"
                ));
            }
        }
        for (i, p) in import.iter().enumerate() {
            let topic_first = p.split('.').nth(1);
            if topic_first.is_none_or(|t| t == "*" || t == ">") {
                return Err(format!(
                    "import[{i}]: `{p}`: with `jetstream`, name each topic's first segment (`*.sensor.>`), so the stream leaves remote calls and fleet status out"
                ));
            }
        }
    }
    Ok(())
}

/// A host name made a subject token: its first label, lowercased, with
/// anything but letters, digits, `-` and `_` turned to `-`.
fn token_of(hostname: &str) -> String {
    let first = hostname.split('.').next().unwrap_or_default();
    let token: String = first
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    if token.is_empty() {
        "node".into()
    } else {
        token
    }
}

/// Refuses what cannot be one NATS subject token (nor a source's name).
fn check_token(key: &str, token: &str) -> Result<(), String> {
    let ok = !token.is_empty()
        && token.len() <= 64
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{key}: `{token}` is not a name of letters, digits, `-` and `_` (64 at most)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_take_the_hostname_and_bound_the_buffer() {
        let s = Settings::from_config(Value::Null, "Berlin-1.example.org").unwrap();
        assert_eq!(s.node, "berlin-1");
        let dotted = Settings::from_config(json!({"node": "ip-10-0-0-1.ec2.internal"}), "h");
        assert_eq!(dotted.unwrap().node, "ip-10-0-0-1-ec2-internal");
        assert_eq!(s.prefix, "corral");
        assert_eq!(s.url, "nats://127.0.0.1:4222");
        assert_eq!(
            s.buffer,
            Bound {
                events: DEFAULT_BUFFER_EVENTS,
                bytes: DEFAULT_BUFFER_BYTES
            }
        );
        assert!(s.jetstream.is_none());
    }

    #[test]
    fn every_key_is_read() {
        let s = Settings::from_config(
            json!({"url": "nats://h:1", "node": "a", "prefix": "fleet.eu",
                   "export": ["sensor.>"], "import": ["*.sensor.>"],
                   "buffer": {"events": 5, "bytes": 100},
                   "jetstream": {"stream": "EVENTS"}, "user": "u", "password": "p",
                   "tls_required": true}),
            "h",
        )
        .unwrap();
        assert_eq!(s.prefix, "fleet.eu");
        assert_eq!(
            s.buffer,
            Bound {
                events: 5,
                bytes: 100
            }
        );
        assert_eq!(s.jetstream.unwrap().durable, "corral-a");
        assert_eq!(s.auth.user, Some(("u".into(), "p".into())));
        assert!(s.tls.required);
    }

    #[test]
    fn bad_settings_name_their_key() {
        let cases = [
            (json!({"node": "a b"}), "node"),
            (json!({"export": ["a..b"]}), "export[0]"),
            (json!({"export": ["call.>"]}), "export[0]"),
            (json!({"import": ["sensor"]}), "import[0]"),
            (json!({"import": ["*.call.>"]}), "import[0]"),
            (json!({"buffer": {"events": 0}}), "buffer"),
            (json!({"user": "u"}), "`user`"),
            (
                json!({"jetstream": {"stream": "S"}, "export": [">"]}),
                "export[0]",
            ),
            (
                json!({"jetstream": {"stream": "S"}, "import": ["*.>"]}),
                "import[0]",
            ),
            (json!({"colour": "red"}), "unknown field `colour`"),
        ];
        for (config, key) in cases {
            let err = Settings::from_config(config.clone(), "h").unwrap_err();
            assert!(err.contains(key), "{config}: {err}");
        }
    }
}
