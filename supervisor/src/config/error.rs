//! What is wrong with a config: a [`Problem`] names the file, the key and
//! what is wrong; a [`ConfigError`] carries every problem found, including
//! those figment reports while reading the files and the environment.

use std::fmt;
use std::path::Path;

/// One thing wrong with a config: where, which key, what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file (or environment variable) the bad value came from.
    pub file: String,
    /// The dotted key, such as `plugins.echo.cmd`.
    pub key: String,
    /// What is wrong, and what would be right.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file, self.message)
        } else {
            write!(f, "{}: key `{}`: {}", self.file, self.key, self.message)
        }
    }
}

/// A config that cannot be used, with every problem found.
#[derive(Debug, Clone, thiserror::Error)]
pub struct ConfigError {
    /// What is wrong, one entry per problem.
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl ConfigError {
    /// A single problem.
    pub(super) fn one(
        file: impl fmt::Display,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            problems: vec![Problem {
                file: file.to_string(),
                key: key.into(),
                message: message.into(),
            }],
        }
    }

    /// Figment's errors, each named by the file or environment variable it
    /// came from (`fallback_file` when figment does not say) and its dotted
    /// key under `prefix`.
    pub(super) fn from_figment(err: figment::Error, fallback_file: &Path, prefix: &str) -> Self {
        let problems = err
            .into_iter()
            .map(|e| {
                let file = source_name(e.metadata.as_ref(), &e.path, fallback_file);
                let mut key: Vec<&str> = Vec::new();
                if !prefix.is_empty() {
                    key.push(prefix);
                }
                key.extend(e.path.iter().map(String::as_str));
                let mut message = e.kind.to_string();
                if let figment::error::Kind::UnknownField(_, _) = e.kind {
                    message.push_str(" (a typo? unknown keys are refused)");
                }
                Problem {
                    file,
                    key: key.join("."),
                    message,
                }
            })
            .collect();
        Self { problems }
    }
}

/// The name of where a value at `path` came from: its file, or the
/// `CORRAL_` environment variable that set it; `fallback_file` when the
/// metadata does not say.
pub(super) fn source_name(
    metadata: Option<&figment::Metadata>,
    path: &[String],
    fallback_file: &Path,
) -> String {
    match metadata.and_then(|m| m.source.as_ref()) {
        Some(figment::Source::File(p)) => p.display().to_string(),
        Some(other) => other.to_string(),
        None => match metadata {
            Some(m) if m.name.contains("environment") => {
                format!(
                    "environment variable CORRAL_{}",
                    path.join("__").to_uppercase()
                )
            }
            _ => fallback_file.display().to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_is_named_by_its_file_or_its_environment_variable() {
        let path = ["plugins".to_string(), "echo".into(), "queue".into()];
        let fallback = Path::new("/srv/corral.toml");
        let env = figment::Metadata::named("`CORRAL_` environment variable(s)");
        assert_eq!(
            source_name(Some(&env), &path, fallback),
            "environment variable CORRAL_PLUGINS__ECHO__QUEUE"
        );
        let file =
            figment::Metadata::from("TOML file", figment::Source::File("/srv/fleet.toml".into()));
        assert_eq!(source_name(Some(&file), &path, fallback), "/srv/fleet.toml");
        assert_eq!(source_name(None, &path, fallback), "/srv/corral.toml");
    }
}
