//! Who a plugin runs as, as resolved: `user` (a user of the host, or
//! `dynamic`: a uid of its own) and `group`, each checked to exist on this
//! host. Running as them is `os::identity`'s (and needs the supervisor to
//! run as root, which the spawn checks).

use serde::Serialize;

use crate::units::UserSetting;

/// The user and group a plugin runs as.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// Its user.
    pub user: UserSetting,
    /// Its group, when not the user's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The identity `user` and `group` name, with each problem (key and why).
pub(super) fn of(
    user: Option<UserSetting>,
    group: Option<String>,
) -> (Option<Identity>, Vec<(&'static str, String)>) {
    let mut problems = Vec::new();
    if let Some(UserSetting::Named(name)) = &user
        && !matches!(nix::unistd::User::from_name(name), Ok(Some(_)))
    {
        problems.push((
            "user",
            format!("no user named `{name}` on this host (or `dynamic` for a uid of its own)"),
        ));
    }
    if user.is_some() && !nix::unistd::geteuid().is_root() {
        problems.push((
            "user",
            format!(
                "needs the supervisor to run as root, and this runs as uid {}",
                nix::unistd::geteuid()
            ),
        ));
    }
    if let Some(name) = &group
        && !matches!(nix::unistd::Group::from_name(name), Ok(Some(_)))
    {
        problems.push(("group", format!("no group named `{name}` on this host")));
    }
    match user {
        Some(user) => (Some(Identity { user, group }), problems),
        None if group.is_some() => {
            problems.push((
                "group",
                "needs a user to go with it (set user = \"NAME\" too)".into(),
            ));
            (None, problems)
        }
        None => (None, problems),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_and_groups_must_exist_and_a_group_needs_a_user() {
        let (id, problems) = of(Some(UserSetting::Named("root".into())), None);
        // Run as another user, the only problem is that the supervisor must be root.
        let only_root = problems.iter().all(|(_, why)| why.contains("run as root"));
        assert!(only_root && id.is_some(), "{problems:?}");
        assert_eq!(problems.is_empty(), nix::unistd::geteuid().is_root());
        let (_, problems) = of(
            Some(UserSetting::Named("no-such-user-xyz".into())),
            Some("no-such-group-xyz".into()),
        );
        let keys: Vec<_> = problems.iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["user", "group"]);
        let (id, problems) = of(None, Some("root".into()));
        assert!(id.is_none() && problems[0].1.contains("needs a user"));
        let (id, _) = of(Some(UserSetting::Dynamic), None);
        assert_eq!(id.map(|i| i.user), Some(UserSetting::Dynamic));
    }
}
