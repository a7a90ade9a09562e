//! Running a plugin as another user: the uid and gid its `user` and
//! `group` name on this host, a dynamic uid allocated per plugin name
//! from [`DYNAMIC_UIDS`] for the supervisor's life (never one the host's
//! user database knows, never two plugins'), and the check that the user
//! can reach the plugin's socket through every directory above it.
//! Switching to the user is the shim's, after it joins the cgroups.

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use crate::units::UserSetting;

/// The environment variable the shim reads `uid:gid` from (and removes).
pub const USER_ENV: &str = "CORRAL_SHIM_USER";

/// The uids `user = "dynamic"` takes, as systemd's `DynamicUser` does.
pub const DYNAMIC_UIDS: std::ops::RangeInclusive<u32> = 61184..=65519;

/// Dynamic uids handed out, by plugin name.
static DYNAMIC: Mutex<Option<HashMap<String, u32>>> = Mutex::new(None);

/// The uid and gid plugin `name` runs as, as `user` and `group` (the
/// user's own when `None`).
pub fn resolve(name: &str, user: &UserSetting, group: Option<&str>) -> io::Result<(u32, u32)> {
    if !nix::unistd::geteuid().is_root() {
        return Err(io::Error::other(
            "`user` needs the supervisor to run as root",
        ));
    }
    let (uid, gid) = match user {
        UserSetting::Named(user) => {
            let found = nix::unistd::User::from_name(user)
                .map_err(io::Error::from)?
                .ok_or_else(|| io::Error::other(format!("no user named `{user}`")))?;
            (found.uid.as_raw(), found.gid.as_raw())
        }
        UserSetting::Dynamic => {
            let uid = dynamic_uid(name)?;
            (uid, uid)
        }
    };
    let gid = match group {
        Some(group) => nix::unistd::Group::from_name(group)
            .map_err(io::Error::from)?
            .ok_or_else(|| io::Error::other(format!("no group named `{group}`")))?
            .gid
            .as_raw(),
        None => gid,
    };
    Ok((uid, gid))
}

/// The dynamic uid of plugin `name`: the one it had, or the first free one.
fn dynamic_uid(name: &str) -> io::Result<u32> {
    let mut table = DYNAMIC.lock().unwrap_or_else(PoisonError::into_inner);
    let table = table.get_or_insert_with(HashMap::new);
    if let Some(uid) = table.get(name) {
        return Ok(*uid);
    }
    let taken: Vec<u32> = table.values().copied().collect();
    let uid = DYNAMIC_UIDS
        .into_iter()
        .find(|uid| {
            !taken.contains(uid) && matches!(nix::unistd::User::from_uid((*uid).into()), Ok(None))
        })
        .ok_or_else(|| io::Error::other("no dynamic uid is left"))?;
    table.insert(name.to_string(), uid);
    Ok(uid)
}

/// Why `uid` cannot reach `path` (a socket), if it cannot: a directory
/// above it that is closed to that user.
pub fn unreachable_by(path: &Path, uid: u32) -> Option<String> {
    path.ancestors().skip(1).find_map(|dir| {
        let meta = std::fs::metadata(dir).ok()?;
        let passable = meta.uid() == uid || meta.mode() & 0o001 != 0;
        (!passable).then(|| {
            format!(
                "uid {uid} cannot reach its socket: {} (mode {:o}) is closed to others; run `chmod o+x {}` or choose another runtime_dir",
                dir.display(),
                meta.mode() & 0o777,
                dir.display()
            )
        })
    })
}

/// Gives `path` to `uid:gid`.
pub fn give(path: &Path, (uid, gid): (u32, u32)) -> io::Result<()> {
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
}

/// In the shim, after the cgroups are joined: becomes `uid:gid` for good
/// (supplementary groups dropped). Returns only on error.
pub fn become_user((uid, gid): (u32, u32)) -> io::Result<()> {
    use nix::unistd::{Gid, Uid, setgid, setgroups, setuid};
    let err = |what: &str, e: nix::Error| io::Error::other(format!("cannot {what}: {e}"));
    setgroups(&[Gid::from_raw(gid)]).map_err(|e| err("drop its groups", e))?;
    setgid(Gid::from_raw(gid)).map_err(|e| err(&format!("become gid {gid}"), e))?;
    setuid(Uid::from_raw(uid)).map_err(|e| err(&format!("become uid {uid}"), e))?;
    // Changing users made it undumpable, and its /proc files root's: the
    // sandbox writes them next (its user namespace's maps). It also
    // cleared the parent-death signal: armed again.
    #[cfg(target_os = "linux")]
    {
        nix::sys::prctl::set_dumpable(true).map_err(|e| err("stay dumpable", e))?;
        nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)
            .map_err(|e| err("keep its parent-death signal", e))?;
    }
    Ok(())
}

/// `uid:gid` as the shim reads it.
pub fn parse(text: &str) -> Option<(u32, u32)> {
    let (uid, gid) = text.split_once(':')?;
    Some((uid.parse().ok()?, gid.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_uids_are_one_per_name_and_kept() {
        let a = dynamic_uid("identity-test-a").expect("a uid");
        let b = dynamic_uid("identity-test-b").expect("a uid");
        assert_ne!(a, b);
        assert!(DYNAMIC_UIDS.contains(&a) && DYNAMIC_UIDS.contains(&b));
        assert_eq!(dynamic_uid("identity-test-a").expect("a uid"), a);
        assert_eq!(parse("61184:61184"), Some((61184, 61184)));
        assert_eq!(parse("x"), None);
    }
}
