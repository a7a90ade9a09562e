//! Who may call what, as pure functions: a caller's `calls` (allow and
//! deny `plugin:action` globs, deny first) and a target's `callers` (plugin
//! globs). A plugin with instances is named by its instances' names and by
//! its own, so `calls = ["db:*"]` reaches `db.0` and `callers = ["web"]`
//! admits `web.1`.

use corral_proto::{ErrorReply, codes, instance_of};
use globset::{Glob, GlobSet, GlobSetBuilder};

/// Actions no plugin may call on another: corral's own, and the names of
/// the lifecycle hooks.
const RESERVED_ACTIONS: &[&str] = &[
    "load",
    "reload",
    "shutdown",
    "on_load",
    "on_reload",
    "on_unload",
];

/// One plugin's call permissions, compiled.
#[derive(Debug, Clone, Default)]
pub struct Access {
    allow: Option<GlobSet>,
    deny: Option<GlobSet>,
    callers: Option<GlobSet>,
    /// As written, for messages.
    written: Written,
}

#[derive(Debug, Clone, Default)]
struct Written {
    allow: Vec<String>,
    callers: Option<Vec<String>>,
}

/// Why a glob does not compile: the glob and the reason.
pub fn check_glob(glob: &str) -> Result<(), String> {
    Glob::new(glob).map(drop).map_err(|e| e.kind().to_string())
}

fn set(globs: &[String]) -> Option<GlobSet> {
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        // Checked when the config was read: one that does not compile now
        // allows nothing.
        if let Ok(glob) = Glob::new(g) {
            builder.add(glob);
        }
    }
    builder.build().ok()
}

/// The names `plugin` answers to: its own, and its plugin's if it is an
/// instance.
fn names(plugin: &str) -> impl Iterator<Item = &str> {
    std::iter::once(plugin).chain(instance_of(plugin).map(|(base, _)| base))
}

impl Access {
    /// Permissions that allow the `allow` globs, refuse the `deny` ones
    /// (first), and admit callers matching `callers` (anyone when `None`).
    pub fn new(allow: &[String], deny: &[String], callers: Option<&[String]>) -> Self {
        Self {
            allow: set(allow),
            deny: set(deny),
            callers: callers.and_then(set),
            written: Written {
                allow: allow.to_vec(),
                callers: callers.map(<[String]>::to_vec),
            },
        }
    }

    /// Whether its owner may call `action` of `target`; `Err` says why not.
    pub fn may_call(&self, caller: &str, target: &str, action: &str) -> Result<(), ErrorReply> {
        let denied = |why: String| Err(ErrorReply::new(codes::DENIED, why));
        if action.starts_with("corral.") || RESERVED_ACTIONS.contains(&action) {
            return denied(format!(
                "`{action}` is not callable: corral's own actions and the lifecycle hooks are not"
            ));
        }
        let matches = |set: &Option<GlobSet>| {
            set.as_ref()
                .is_some_and(|s| names(target).any(|t| s.is_match(format!("{t}:{action}"))))
        };
        if matches(&self.deny) {
            return denied(format!(
                "`{caller}` may not call `{target}:{action}`: a deny rule of its permissions matches it"
            ));
        }
        if !matches(&self.allow) {
            let allowed = if self.written.allow.is_empty() {
                "none (set `calls = [\"PLUGIN:ACTION\", …]`)".to_string()
            } else {
                self.written.allow.join(", ")
            };
            return denied(format!(
                "`{caller}` may not call `{target}:{action}`: its calls allow {allowed}"
            ));
        }
        Ok(())
    }

    /// Whether its owner, `target`, takes calls from `caller`.
    pub fn admits(&self, target: &str, caller: &str) -> Result<(), ErrorReply> {
        match (&self.callers, &self.written.callers) {
            (Some(set), Some(written)) if !names(caller).any(|c| set.is_match(c)) => {
                Err(ErrorReply::new(
                    codes::DENIED,
                    format!(
                        "`{target}` takes calls only from {}, not from `{caller}`",
                        written.join(", ")
                    ),
                ))
            }
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(globs: &[&str]) -> Vec<String> {
        globs.iter().map(|g| g.to_string()).collect()
    }

    #[test]
    fn calls_allow_only_what_they_name_and_deny_comes_first() {
        let a = Access::new(&v(&["db:*", "cache:get"]), &v(&["db:drop*"]), None);
        assert!(a.may_call("web", "db", "get").is_ok());
        assert!(
            a.may_call("web", "db.3", "set").is_ok(),
            "an instance of db"
        );
        assert!(a.may_call("web", "cache", "get").is_ok());
        let e = a.may_call("web", "cache", "set").unwrap_err();
        assert_eq!(e.code, codes::DENIED);
        assert!(e.message.contains("db:*, cache:get"), "{e}");
        let e = a.may_call("web", "db", "drop_all").unwrap_err();
        assert!(e.message.contains("deny rule"), "{e}");
    }

    #[test]
    fn no_calls_allow_nothing_and_say_how_to_allow() {
        let e = Access::default().may_call("web", "db", "get").unwrap_err();
        assert!(e.message.contains("calls = ["), "{e}");
    }

    #[test]
    fn hooks_and_corral_actions_are_never_callable() {
        let a = Access::new(&v(&["*:*"]), &[], None);
        for action in ["corral.ps", "load", "shutdown", "on_unload"] {
            let e = a.may_call("web", "db", action).unwrap_err();
            assert!(e.message.contains("not callable"), "{action}: {e}");
        }
        assert!(a.may_call("web", "db", "loaded").is_ok());
    }

    #[test]
    fn callers_admit_their_globs_and_instances_of_named_plugins() {
        let db = Access::new(&[], &[], Some(&v(&["web", "worker.*"])));
        assert!(db.admits("db", "web").is_ok());
        assert!(db.admits("db", "web.2").is_ok(), "an instance of web");
        assert!(db.admits("db", "worker.0").is_ok());
        let e = db.admits("db", "intruder").unwrap_err();
        assert_eq!(e.code, codes::DENIED);
        assert!(e.message.contains("only from web, worker.*"), "{e}");
        assert!(Access::default().admits("db", "anyone").is_ok());
    }

    #[test]
    fn a_bad_glob_is_named() {
        assert!(check_glob("db:[").is_err());
        assert!(check_glob("db:{get,set}").is_ok());
    }
}
