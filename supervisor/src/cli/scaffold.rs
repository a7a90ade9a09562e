//! `corral new`: writes a plugin folder that runs as generated: its
//! manifest, source, README and a test, from the templates in
//! `supervisor/templates/`.

use std::path::{Path, PathBuf};

/// The languages `corral new` writes plugins in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    /// A Cargo project on the Rust SDK.
    Rust,
    /// A script on the Python SDK (standard library only).
    Python,
}

/// Why a plugin folder could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    /// The name is not a plugin name.
    #[error(
        "`{0}` is not a plugin name: use 1 to 64 characters of a-z, 0-9, '-' and '_', starting with a letter"
    )]
    BadName(String),
    /// The name would not compile as a Rust crate and type.
    #[error("`{name}` cannot name a Rust plugin: {why}")]
    Reserved {
        /// The name.
        name: String,
        /// What it clashes with.
        why: &'static str,
    },
    /// The folder exists and is not empty.
    #[error("{} already exists and is not empty; pick another name or --dir", .0.display())]
    Exists(PathBuf),
    /// The SDK the plugin builds on was not found.
    #[error(
        "cannot find corral's {what}; pass --sdk with the path of the `{what}` folder of a corral checkout"
    )]
    NoSdk {
        /// Which folder was looked for.
        what: &'static str,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What `corral new` made.
#[derive(Debug)]
pub struct Scaffold {
    /// The plugin's folder.
    pub dir: PathBuf,
    /// The files written, relative to `dir`.
    pub files: Vec<&'static str>,
    /// The lines to add to a fleet config.
    pub fleet_lines: String,
    /// Where the SDK the plugin uses is (None: the plugin relies on an
    /// installed Python SDK).
    pub sdk: Option<PathBuf>,
}

struct Template {
    path: &'static str,
    text: &'static str,
}

const RUST: &[Template] = &[
    Template {
        path: "Cargo.toml",
        text: include_str!("../../templates/rust/Cargo.toml.tmpl"),
    },
    Template {
        path: "plugin.toml",
        text: include_str!("../../templates/rust/plugin.toml.tmpl"),
    },
    Template {
        path: "src/lib.rs",
        text: include_str!("../../templates/rust/lib.rs.tmpl"),
    },
    Template {
        path: "src/main.rs",
        text: include_str!("../../templates/rust/main.rs.tmpl"),
    },
    Template {
        path: "tests/plugin.rs",
        text: include_str!("../../templates/rust/test.rs.tmpl"),
    },
    Template {
        path: "README.md",
        text: include_str!("../../templates/rust/README.md.tmpl"),
    },
];

const PYTHON: &[Template] = &[
    Template {
        path: "plugin.toml",
        text: include_str!("../../templates/python/plugin.toml.tmpl"),
    },
    Template {
        path: "main.py",
        text: include_str!("../../templates/python/main.py.tmpl"),
    },
    Template {
        path: "test_main.py",
        text: include_str!("../../templates/python/test_main.py.tmpl"),
    },
    Template {
        path: "README.md",
        text: include_str!("../../templates/python/README.md.tmpl"),
    },
];

/// Whether `name` is a plugin name that is also a valid Cargo package name.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

/// Rust keywords (a crate named so cannot be written in `use`).
const KEYWORDS: &[&str] = &[
    "abstract", "as", "async", "await", "become", "box", "break", "const", "continue", "crate",
    "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if", "impl",
    "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub", "ref",
    "return", "self", "static", "struct", "super", "trait", "true", "try", "type", "typeof",
    "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Why `name` cannot be a Rust plugin generated from the templates, if so.
fn rust_clash(name: &str) -> Option<&'static str> {
    let krate = name.replace('-', "_");
    if KEYWORDS.contains(&krate.as_str()) {
        return Some("it is a Rust keyword");
    }
    if ["std", "core", "alloc", "test", "proc_macro"].contains(&krate.as_str()) {
        return Some("it is the name of a built-in crate");
    }
    if ["corral_sdk", "serde_json", "tokio"].contains(&krate.as_str()) {
        return Some("the plugin depends on a crate of that name");
    }
    if ["build", "deps", "examples", "incremental"].contains(&name) {
        return Some("Cargo reserves it for its own folders");
    }
    let ty = type_name(name);
    if [
        "Context",
        "Plugin",
        "PluginError",
        "Value",
        "Mutex",
        "Harness",
        "Stop",
        "Duration",
        "AtomicU64",
        "Ordering",
    ]
    .contains(&ty.as_str())
    {
        return Some("its type name would clash with a name the source imports");
    }
    None
}

/// `s` as a quoted string that is valid TOML and valid Python (JSON's
/// escapes are a subset of both).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `path` as one shell word.
pub fn shell_word(path: &Path) -> String {
    let s = path.display().to_string();
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./-+=:,@".contains(&b))
    {
        s
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// `hello-world` → `HelloWorld`.
fn type_name(name: &str) -> String {
    name.split(['-', '_'])
        .filter(|s| !s.is_empty())
        .map(|s| {
            let mut c = s.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// The SDK folder: `--sdk`, else the one beside the source this binary was
/// built from, else the one in the checkout the binary sits in
/// (`target/<profile>/corral`).
fn find_sdk(given: Option<&Path>, sub: &str, marker: &str) -> Option<PathBuf> {
    if let Some(dir) = given {
        return dir.join(marker).exists().then(|| absolute(dir));
    }
    let built_from = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let beside_exe = std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.to_path_buf()));
    [Some(built_from), beside_exe]
        .into_iter()
        .flatten()
        .map(|root| root.join(sub))
        .find(|dir| dir.join(marker).exists())
        .map(|dir| absolute(&dir))
}

fn absolute(dir: &Path) -> PathBuf {
    dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf())
}

fn render(text: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(text.to_string(), |text, (key, value)| {
        text.replace(&format!("{{{{{key}}}}}"), value)
    })
}

/// The templates for `lang`, and the SDK the plugin will use: required for
/// Rust (a path dependency), optional for Python (it may be installed).
fn templates_and_sdk(
    lang: Lang,
    sdk: Option<&Path>,
) -> Result<(&'static [Template], Option<PathBuf>), ScaffoldError> {
    Ok(match lang {
        Lang::Rust => (
            RUST,
            Some(
                find_sdk(sdk, "plugin-sdk", "Cargo.toml")
                    .ok_or(ScaffoldError::NoSdk { what: "plugin-sdk" })?,
            ),
        ),
        Lang::Python => {
            let found = find_sdk(sdk, "plugin-sdk/python", "corral_sdk/__init__.py");
            if sdk.is_some() && found.is_none() {
                return Err(ScaffoldError::NoSdk {
                    what: "plugin-sdk/python",
                });
            }
            (PYTHON, found)
        }
    })
}

/// Renders every template into `dir`.
fn write_all(
    dir: &Path,
    templates: &[Template],
    vars: &[(&str, String)],
) -> Result<(), ScaffoldError> {
    for t in templates {
        let path = dir.join(t.path);
        let io = |source| ScaffoldError::Io {
            path: path.clone(),
            source,
        };
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(io)?;
        }
        std::fs::write(&path, render(t.text, vars)).map_err(io)?;
    }
    Ok(())
}

/// Writes the plugin `name` in `lang` into `parent/name`.
pub fn new(
    name: &str,
    lang: Lang,
    parent: &Path,
    sdk: Option<&Path>,
) -> Result<Scaffold, ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    if lang == Lang::Rust
        && let Some(why) = rust_clash(name)
    {
        return Err(ScaffoldError::Reserved {
            name: name.to_string(),
            why,
        });
    }
    // Absolute, so the printed fleet lines work from any fleet file.
    let parent = std::path::absolute(parent).map_err(|source| ScaffoldError::Io {
        path: parent.to_path_buf(),
        source,
    })?;
    let dir = parent.join(name);
    if std::fs::read_dir(&dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(ScaffoldError::Exists(dir));
    }
    let (templates, sdk) = templates_and_sdk(lang, sdk)?;
    let sdk_text = sdk
        .as_deref()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let env = if sdk_text.is_empty() {
        "# corral_sdk must be importable: pip install <corral checkout>/plugin-sdk/python\n".into()
    } else {
        format!(
            "# Where corral's Python SDK is; drop this once it is installed with pip.\nenv = {{ PYTHONPATH = {} }}\n",
            quoted(&sdk_text)
        )
    };
    let vars = [
        ("name", name.to_string()),
        ("type", type_name(name)),
        ("crate", name.replace('-', "_")),
        ("sdk_quoted", quoted(&sdk_text)),
        ("env", env),
        ("path_quoted", quoted(&dir.display().to_string())),
    ];
    write_all(&dir, templates, &vars)?;
    Ok(Scaffold {
        fleet_lines: format!(
            "[plugins.{name}]\npath = {}\n",
            quoted(&dir.display().to_string())
        ),
        files: templates.iter().map(|t| t.path).collect(),
        dir,
        sdk,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types() {
        assert!(valid_name("hello-world_2"));
        for bad in ["", "Hello", "2x", "a b", "a/b", &"x".repeat(65)] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert_eq!(type_name("hello-world_2"), "HelloWorld2");
    }

    #[test]
    fn every_placeholder_is_filled() {
        let dir = tempfile::tempdir().unwrap();
        for lang in [Lang::Rust, Lang::Python] {
            let made = new("demo", lang, &dir.path().join(format!("{lang:?}")), None).unwrap();
            for file in &made.files {
                let text = std::fs::read_to_string(made.dir.join(file)).unwrap();
                assert!(!text.contains("{{"), "{file}: {text}");
            }
        }
        let again = new("demo", Lang::Python, &dir.path().join("Python"), None);
        assert!(matches!(again, Err(ScaffoldError::Exists(_))), "{again:?}");
    }

    #[test]
    fn names_that_would_not_compile_are_refused_for_rust() {
        for name in [
            "fn",
            "type",
            "std",
            "tokio",
            "build",
            "plugin",
            "plugin-error",
            "value",
            "stop",
            "ordering",
        ] {
            assert!(rust_clash(name).is_some(), "{name}");
        }
        for name in ["hello", "fn-x", "my-plugin", "values"] {
            assert!(rust_clash(name).is_none(), "{name}");
        }
    }

    #[test]
    fn odd_paths_are_quoted_for_toml_python_and_the_shell() {
        let dir = tempfile::tempdir().unwrap();
        let odd = dir.path().join("a \"b\" \\ cafe\u{301}");
        let made = new("demo", Lang::Python, &odd, Some(&odd.join("sdk"))).unwrap_err();
        assert!(matches!(made, ScaffoldError::NoSdk { .. }), "{made:?}");
        let made = new("demo", Lang::Python, &odd, None).unwrap();
        let line = made.fleet_lines.lines().nth(1).unwrap();
        let value: String = serde_json::from_str(line.trim_start_matches("path = ")).unwrap();
        assert_eq!(Path::new(&value), made.dir);
        assert_eq!(shell_word(Path::new("/a b/it's")), "'/a b/it'\\''s'");
        assert_eq!(shell_word(Path::new("/plain/dir")), "/plain/dir");
    }
}
