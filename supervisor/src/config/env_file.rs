//! `env_file`: environment files with systemd's `EnvironmentFile=` grammar.
//! Each line is `KEY=VALUE` (an `export ` before the key is allowed);
//! blank lines and lines starting with `#` or `;` are skipped; a value may
//! be quoted (`'…'` as written, `"…"` with `\"`, `\\`, `\n` and `\t`
//! escapes), and an unquoted one is trimmed. A path starting with `-` names
//! an optional file. Files layer in order, and the `env` table over them.
//! A file's values are taken as written (`$` is no variable there).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// One file or a list of them, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvFiles(pub Vec<String>);

impl<'de> Deserialize<'de> for EnvFiles {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            One(String),
            Many(Vec<String>),
        }
        Ok(Self(match Raw::deserialize(d)? {
            Raw::One(path) => vec![path],
            Raw::Many(paths) => paths,
        }))
    }
}

impl EnvFiles {
    /// Each path made relative to `base` (the folder of the file that set
    /// it), keeping a leading `-`.
    /// The files that lie outside the folder they are relative to: absolute,
    /// or climbing with `..` (a manifest may name only its own files: an
    /// `env_file` is read by the supervisor and handed to the plugin).
    pub(super) fn outside_its_folder(&self) -> Vec<&str> {
        self.0
            .iter()
            .map(|p| p.strip_prefix('-').unwrap_or(p))
            .filter(|p| {
                let path = Path::new(p);
                path.is_absolute()
                    || path
                        .components()
                        .any(|c| c == std::path::Component::ParentDir)
            })
            .collect()
    }

    pub(super) fn anchored_at(self, base: &Path) -> Self {
        Self(
            self.0
                .into_iter()
                .map(|p| {
                    let (optional, path) = match p.strip_prefix('-') {
                        Some(path) => ("-", path),
                        None => ("", p.as_str()),
                    };
                    format!("{optional}{}", base.join(path).display())
                })
                .collect(),
        )
    }
}

/// The variables of `files`, in order (a later file wins), under `env`
/// (which wins over them all); or why a file cannot be used.
pub(super) fn layered(
    files: &EnvFiles,
    env: BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut all = BTreeMap::new();
    for written in &files.0 {
        let (optional, path) = match written.strip_prefix('-') {
            Some(path) => (true, PathBuf::from(path)),
            None => (false, PathBuf::from(written)),
        };
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if optional && e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(format!(
                    "cannot read {}: {e} (a leading `-` makes a file optional)",
                    path.display()
                ));
            }
        };
        let vars = parse(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        // A file's values are as written: no `${…}` variables in them.
        all.extend(vars.into_iter().map(|(k, v)| (k, v.replace('$', "$$"))));
    }
    all.extend(env);
    Ok(all)
}

/// The variables of one file's text.
pub(super) fn parse(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut vars = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: expected KEY=VALUE, found `{line}`",
                n + 1
            ));
        };
        let key = key.trim();
        let valid = !key.is_empty()
            && !key.starts_with(|c: char| c.is_ascii_digit())
            && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(format!("line {}: `{key}` is not a variable name", n + 1));
        }
        let value = unquote(value.trim()).map_err(|e| format!("line {}: {e}", n + 1))?;
        vars.push((key.to_string(), value));
    }
    Ok(vars)
}

fn unquote(value: &str) -> Result<String, String> {
    if let Some(inner) = value.strip_prefix('\'') {
        return inner
            .strip_suffix('\'')
            .map(String::from)
            .ok_or_else(|| "a `'` without its closing `'`".to_string());
    }
    let Some(inner) = value.strip_prefix('"') else {
        return Ok(value.to_string());
    };
    let inner = inner
        .strip_suffix('"')
        .ok_or_else(|| "a `\"` without its closing `\"`".to_string())?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('t') => out.push('\t'),
            Some(other) => out.push(other),
            None => out.push('\\'),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_comments_quotes_and_exports_parse_as_systemd_reads_them() {
        let text = "# a comment\n; another\n\nA=1\nexport B = two words \nC='single $x'\nD=\"say \\\"hi\\\"\\n\"\nE=\n";
        assert_eq!(
            parse(text).unwrap(),
            [
                ("A".into(), "1".into()),
                ("B".into(), "two words".into()),
                ("C".into(), "single $x".into()),
                ("D".into(), "say \"hi\"\n".into()),
                ("E".into(), String::new()),
            ]
        );
        assert!(parse("no equals sign").unwrap_err().starts_with("line 1:"));
        assert!(
            parse("\n1A=x")
                .unwrap_err()
                .contains("line 2: `1A` is not a variable name")
        );
        assert!(parse("A=\"open").unwrap_err().contains("closing"));
    }

    #[test]
    fn files_layer_in_order_under_the_env_table_and_a_dash_makes_one_optional() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.env"), "X=a\nY=a\n").unwrap();
        std::fs::write(dir.path().join("b.env"), "Y=b\nZ=b\n").unwrap();
        let files = EnvFiles(vec!["a.env".into(), "b.env".into(), "-missing.env".into()])
            .anchored_at(dir.path());
        let env = BTreeMap::from([("Z".to_string(), "table".to_string())]);
        let got = layered(&files, env).unwrap();
        assert_eq!(
            got.into_iter().collect::<Vec<_>>(),
            [
                ("X".into(), "a".into()),
                ("Y".into(), "b".into()),
                ("Z".into(), "table".into())
            ]
        );
        let missing = EnvFiles(vec!["gone.env".into()]).anchored_at(dir.path());
        assert!(
            layered(&missing, BTreeMap::new())
                .unwrap_err()
                .contains("gone.env")
        );
    }
}
