//! Who a plugin may call and who may call it, as resolved: `calls`
//! (`plugin:action` globs), `callers` (plugin globs), and `permissions`
//! rules (`{ resource, actions, effect }`, deny first) that say the same in
//! the form other plugin systems use and widen `publish` and `subscribe`
//! too. Also the `actions` a manifest declares. What a plugin may call is
//! the operator's to say: a manifest may restrict its `callers` and
//! declare its `actions`, never grant itself `calls` or `permissions`.
//! Matching a call against these is `calls::rules`'.

use corral_proto::ActionInfo;
use serde::{Deserialize, Serialize};

use crate::calls::rules::check_glob;

/// A plugin's call permissions in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CallsSpec {
    /// `plugin:action` globs it may call (from `calls` and allow rules).
    #[serde(rename = "calls", skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<String>,
    /// `plugin:action` globs it may not call, whatever allows them.
    #[serde(rename = "calls_denied", skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<String>,
    /// Plugins that may call it; any (whose `calls` allow it) when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub callers: Option<Vec<String>>,
    /// `bridge = true`: it may relay events from elsewhere under their own
    /// source and read every plugin's status.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub bridge: bool,
}

/// One `permissions` entry: a sandbox word (`network_access`,
/// `file_system_read`, `file_system_write`, which widen `execution_mode =
/// "sandboxed"`) or a rule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum PermissionEntry {
    /// A sandbox word.
    Word(String),
    /// A rule on plugins' actions or topics.
    Rule(PermissionRule),
}

/// The sandbox words of `permissions`, and what each widens.
pub const PERMISSION_WORDS: &[(&str, &str)] = &[
    (
        "network_access",
        "the host's network (`sandbox.network = \"any\"`)",
    ),
    (
        "file_system_read",
        "reading the whole file system (`sandbox.fs_read = [\"/\"]`)",
    ),
    (
        "file_system_write",
        "writing its own folder (`sandbox.fs_write = [\"${plugin_dir}\"]`)",
    ),
];

/// One `permissions` rule as written.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PermissionRule {
    /// A plugin glob (`db`, `worker.*`), or `topic:PATTERN`.
    pub resource: String,
    /// Action globs of the plugin (`["get", "set"]`; all when left out),
    /// or, for a topic, `publish` and/or `subscribe`.
    #[serde(default)]
    pub actions: Vec<String>,
    /// `allow` (the default) or `deny`.
    #[serde(default)]
    pub effect: Effect,
}

/// What a rule does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Effect {
    /// Grants what it names.
    #[default]
    Allow,
    /// Refuses what it names, before any allow is looked at.
    Deny,
}

/// An action a manifest declares: its name, or its name and what it does.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum ActionDecl {
    /// `"get"`.
    Name(String),
    /// `{ name = "get", description = "reads a key" }`.
    Described {
        /// Its name.
        name: String,
        /// What it does.
        #[serde(default)]
        description: String,
    },
}

/// What `permissions` grant on the bus: patterns added to `publish` and to
/// `subscribe`.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct TopicGrants {
    pub(super) publish: Vec<String>,
    pub(super) subscribe: Vec<String>,
}

/// What `permissions` grant besides calls: patterns added to `publish`
/// and to `subscribe`, and the sandbox words.
#[derive(Debug, Default, PartialEq, Eq)]
pub(super) struct Grants {
    pub(super) topics: TopicGrants,
    pub(super) words: Vec<String>,
}

/// The call permissions `calls`, `callers` and `permissions` give, what
/// else the `permissions` grant, and each problem (key and why).
pub(super) fn of(
    calls: Option<Vec<String>>,
    callers: Option<Vec<String>>,
    permissions: Option<Vec<PermissionEntry>>,
) -> (CallsSpec, Grants, Vec<(String, String)>) {
    let mut problems = Vec::new();
    let mut spec = CallsSpec {
        callers,
        ..CallsSpec::default()
    };
    for (i, call) in calls.into_iter().flatten().enumerate() {
        match check_call(&call) {
            Ok(()) => spec.allow.push(call),
            Err(why) => problems.push((format!("calls[{i}]"), why)),
        }
    }
    for (i, glob) in spec.callers.iter().flatten().enumerate() {
        if let Err(why) = check_glob(glob) {
            problems.push((format!("callers[{i}]"), format!("`{glob}`: {why}")));
        }
    }
    let mut grants = Grants::default();
    for (i, entry) in permissions.into_iter().flatten().enumerate() {
        let key = format!("permissions[{i}]");
        let done = match entry {
            PermissionEntry::Rule(rule) => rule_into(rule, &mut spec, &mut grants.topics),
            PermissionEntry::Word(word) if PERMISSION_WORDS.iter().any(|(w, _)| *w == word) => {
                grants.words.push(word);
                Ok(())
            }
            PermissionEntry::Word(word) => Err(format!(
                "`{word}` is not a permission: the words are {}, and a rule is a table `{{ resource, actions, effect }}`",
                PERMISSION_WORDS
                    .iter()
                    .map(|(w, _)| *w)
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        };
        if let Err(why) = done {
            problems.push((key, why));
        }
    }
    (spec, grants, problems)
}

/// A `calls` entry: `plugin:action`, both globs.
fn check_call(call: &str) -> Result<(), String> {
    let Some((plugin, action)) = call.split_once(':') else {
        return Err(format!(
            "`{call}` is not `plugin:action` (write `{call}:*` for all of its actions)"
        ));
    };
    if plugin.is_empty() || action.is_empty() {
        return Err(format!("`{call}` needs both a plugin and an action"));
    }
    check_glob(call).map_err(|why| format!("`{call}`: {why}"))
}

/// Adds what `rule` says to `spec` (calls) or `topics`.
fn rule_into(
    rule: PermissionRule,
    spec: &mut CallsSpec,
    topics: &mut TopicGrants,
) -> Result<(), String> {
    if let Some(pattern) = rule.resource.strip_prefix("topic:") {
        corral_proto::event::check_pattern(pattern).map_err(|e| format!("`{pattern}`: {e}"))?;
        if rule.effect == Effect::Deny {
            return Err(
                "deny rules apply to calls; a topic is refused by leaving it out of `publish` and `subscribe`"
                    .into(),
            );
        }
        if rule.actions.is_empty() {
            return Err("a topic rule names its actions: `publish`, `subscribe` or both".into());
        }
        for action in &rule.actions {
            match action.as_str() {
                "publish" => topics.publish.push(pattern.to_string()),
                "subscribe" => topics.subscribe.push(pattern.to_string()),
                other => {
                    return Err(format!(
                        "`{other}` is not an action on a topic: `publish` or `subscribe`"
                    ));
                }
            }
        }
        return Ok(());
    }
    if rule.resource.is_empty() || rule.resource.contains(':') {
        return Err(format!(
            "resource `{}` is neither a plugin glob (`db`, `worker.*`) nor `topic:PATTERN`",
            rule.resource
        ));
    }
    let actions = if rule.actions.is_empty() {
        vec!["*".to_string()]
    } else {
        rule.actions
    };
    for action in actions {
        let call = format!("{}:{action}", rule.resource);
        check_call(&call)?;
        match rule.effect {
            Effect::Allow => spec.allow.push(call),
            Effect::Deny => spec.deny.push(call),
        }
    }
    Ok(())
}

/// The actions a manifest declares, each named once.
pub(super) fn actions(decls: Vec<ActionDecl>) -> (Vec<ActionInfo>, Vec<(String, String)>) {
    let mut actions: Vec<ActionInfo> = Vec::new();
    let mut problems = Vec::new();
    for (i, decl) in decls.into_iter().enumerate() {
        let (name, description) = match decl {
            ActionDecl::Name(name) => (name, String::new()),
            ActionDecl::Described { name, description } => (name, description),
        };
        if name.is_empty() || actions.iter().any(|a| a.name == name) {
            problems.push((
                format!("actions[{i}]"),
                format!("`{name}` is empty or declared twice"),
            ));
            continue;
        }
        actions.push(ActionInfo { name, description });
    }
    (actions, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    fn rule(resource: &str, actions: &[&str], effect: Effect) -> PermissionEntry {
        PermissionEntry::Rule(PermissionRule {
            resource: resource.into(),
            actions: v(actions),
            effect,
        })
    }

    #[test]
    fn calls_and_rules_make_one_allow_list_and_a_deny_list() {
        let (spec, grants, problems) = of(
            Some(v(&["cache:get"])),
            Some(v(&["web"])),
            Some(vec![
                rule("db", &["get", "set"], Effect::Allow),
                rule("db", &["drop"], Effect::Deny),
                rule("kv.*", &[], Effect::Allow),
                rule("topic:sensor.>", &["publish", "subscribe"], Effect::Allow),
                PermissionEntry::Word("network_access".into()),
            ]),
        );
        let topics = grants.topics;
        assert_eq!(grants.words, v(&["network_access"]));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(spec.allow, v(&["cache:get", "db:get", "db:set", "kv.*:*"]));
        assert_eq!(spec.deny, v(&["db:drop"]));
        assert_eq!(spec.callers, Some(v(&["web"])));
        assert_eq!(topics.publish, v(&["sensor.>"]));
        assert_eq!(topics.subscribe, v(&["sensor.>"]));
    }

    #[test]
    fn bad_entries_are_named_by_key() {
        let (_, _, problems) = of(
            Some(v(&["db", "db:[", ":get"])),
            Some(v(&["[x"])),
            Some(vec![
                rule("topic:a.b", &["read"], Effect::Allow),
                rule("topic:a.b", &["publish"], Effect::Deny),
                rule("a:b", &[], Effect::Allow),
                PermissionEntry::Word("root_access".into()),
            ]),
        );
        let keys: Vec<&str> = problems.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "calls[0]",
                "calls[1]",
                "calls[2]",
                "callers[0]",
                "permissions[0]",
                "permissions[1]",
                "permissions[2]",
                "permissions[3]"
            ]
        );
        assert!(problems[0].1.contains("`db:*`"), "{problems:?}");
    }

    #[test]
    fn actions_are_named_once() {
        let (actions, problems) = actions(vec![
            ActionDecl::Name("get".into()),
            ActionDecl::Described {
                name: "set".into(),
                description: "writes a key".into(),
            },
            ActionDecl::Name("get".into()),
        ]);
        assert_eq!(actions.len(), 2);
        assert_eq!(actions[1].description, "writes a key");
        assert_eq!(problems[0].0, "actions[2]");
    }
}
