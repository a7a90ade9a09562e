//! Variables in a plugin's `cmd`, `env`, `cwd` and `health`: `${port}`,
//! `${name}`, `${instance}`, `${plugin_dir}`, `${fleet_dir}`, `${runtime_dir}`, `${env:NAME}` and
//! `${env:NAME:-default}` (from the supervisor's environment); `$$` is a
//! literal `$`, and a `$` before anything else stays as it is. Pure: the
//! config checks a text with [`check`] when it is read, and each spawn
//! expands it with [`expand`] once its port is known.

use std::fmt;

/// The variables a text may name, besides `${env:…}`.
pub const NAMES: &[&str] = &[
    "port",
    "name",
    "instance",
    "plugin_dir",
    "fleet_dir",
    "runtime_dir",
];

/// What the variables stand for in one spawn.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Values<'a> {
    /// `${port}`: the spawn's port, when the plugin has one.
    pub port: Option<u16>,
    /// `${name}`: the plugin's name (an instance's: `web.0`).
    pub name: &'a str,
    /// `${instance}`: the instance's index, for a plugin with `instances`.
    pub instance: Option<u32>,
    /// `${plugin_dir}`: its manifest's folder (the fleet file's without one).
    pub plugin_dir: &'a str,
    /// `${fleet_dir}`: the fleet file's folder.
    pub fleet_dir: &'a str,
    /// `${runtime_dir}`: the supervisor's runtime directory.
    pub runtime_dir: &'a str,
}

/// Why a text cannot be expanded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VarError {
    /// `${…}` names no variable.
    Unknown(String),
    /// `${` without its `}`.
    Unclosed,
    /// `${env:NAME}` of a variable the supervisor's environment lacks, with
    /// no default.
    UnsetEnv(String),
    /// `${port}` in a plugin with no `port`.
    NoPort,
    /// `${instance}` in a plugin without `instances`.
    NoInstance,
}

impl fmt::Display for VarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unknown(name) => write!(
                f,
                "`${{{name}}}` is not a variable; the variables are {}, `${{env:NAME}}` and `${{env:NAME:-default}}` (write `$$` for a `$`)",
                NAMES
                    .iter()
                    .map(|n| format!("`${{{n}}}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Self::Unclosed => f.write_str("`${` without its closing `}` (write `$$` for a `$`)"),
            Self::UnsetEnv(name) => write!(
                f,
                "`${{env:{name}}}`: {name} is not set in the supervisor's environment; set it, or give a default: `${{env:{name}:-value}}`"
            ),
            Self::NoPort => f.write_str("`${port}` needs a `port` (such as `port = \"auto\"`)"),
            Self::NoInstance => {
                f.write_str("`${instance}` needs `instances` (such as `instances = 3`)")
            }
        }
    }
}

/// Expands every variable of `text` from `values` and `env` (a lookup in
/// the supervisor's environment).
pub fn expand(
    text: &str,
    values: &Values<'_>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<String, VarError> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or(VarError::Unclosed)?;
            out.push_str(&value(&after[..end], values, &env)?);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Which of the variables that not every plugin has will have a value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Has {
    /// `${port}`: the plugin has a `port`.
    pub port: bool,
    /// `${instance}`: the plugin has `instances`.
    pub instance: bool,
}

/// Checks that `text` names only variables that exist, and environment
/// variables that are set or have a default; `has` says which of `${port}`
/// and `${instance}` will have a value.
pub fn check(text: &str, has: Has, env: impl Fn(&str) -> Option<String>) -> Result<(), VarError> {
    let values = Values {
        port: has.port.then_some(1),
        instance: has.instance.then_some(0),
        ..Values::default()
    };
    expand(text, &values, env).map(drop)
}

fn value(
    var: &str,
    values: &Values<'_>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<String, VarError> {
    if let Some(spec) = var.strip_prefix("env:") {
        let (name, default) = match spec.split_once(":-") {
            Some((name, default)) => (name, Some(default)),
            None => (spec, None),
        };
        if name.is_empty() {
            return Err(VarError::Unknown(var.to_string()));
        }
        return env(name)
            .or_else(|| default.map(String::from))
            .ok_or_else(|| VarError::UnsetEnv(name.to_string()));
    }
    Ok(match var {
        "port" => values.port.ok_or(VarError::NoPort)?.to_string(),
        "name" => values.name.to_string(),
        "instance" => values.instance.ok_or(VarError::NoInstance)?.to_string(),
        "plugin_dir" => values.plugin_dir.to_string(),
        "fleet_dir" => values.fleet_dir.to_string(),
        "runtime_dir" => values.runtime_dir.to_string(),
        other => return Err(VarError::Unknown(other.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            port: Some(8010),
            name: "web",
            instance: Some(2),
            plugin_dir: "/srv/web",
            fleet_dir: "/srv",
            runtime_dir: "/run/corral",
        }
    }

    fn env(name: &str) -> Option<String> {
        (name == "HOME").then(|| "/root".to_string())
    }

    #[test]
    fn every_variable_expands_and_dollars_escape() {
        let got = expand(
            "${plugin_dir}/bin --port=${port} --name ${name}#${instance} ${fleet_dir} ${runtime_dir} ${env:HOME} ${env:NOPE:-x:y} $$5 a$b $",
            &values(),
            env,
        );
        assert_eq!(
            got.unwrap(),
            "/srv/web/bin --port=8010 --name web#2 /srv /run/corral /root x:y $5 a$b $"
        );
        assert_eq!(expand("$${port}", &values(), env).unwrap(), "${port}");
        assert_eq!(expand("", &values(), env).unwrap(), "");
    }

    #[test]
    fn unknown_unclosed_unset_and_portless_are_refused_by_name() {
        let err = expand("x ${prot}", &values(), env).unwrap_err();
        assert_eq!(err, VarError::Unknown("prot".into()));
        assert!(err.to_string().contains("`${port}`"), "{err}");
        assert_eq!(
            expand("${port", &values(), env).unwrap_err(),
            VarError::Unclosed
        );
        assert_eq!(
            expand("${env:NOPE}", &values(), env).unwrap_err(),
            VarError::UnsetEnv("NOPE".into())
        );
        assert!(matches!(
            expand("${env:}", &values(), env),
            Err(VarError::Unknown(_))
        ));
        let none = Has::default();
        assert_eq!(check("${port}", none, env).unwrap_err(), VarError::NoPort);
        assert_eq!(
            check("${instance}", none, env).unwrap_err(),
            VarError::NoInstance
        );
        let both = Has {
            port: true,
            instance: true,
        };
        assert!(check("${port} ${name} ${instance}", both, env).is_ok());
    }
}
