//! `corral-exec SUPERVISOR_PID NOFILE_SOFT NOFILE_HARD PROGRAM [ARGS…]`: the
//! shim corral starts each plugin through. It arms the parent-death signal,
//! sets the open-file limit, joins the cgroups named in `CORRAL_EXEC_CGROUPS`,
//! becomes the plugin's user (`CORRAL_SHIM_USER`), enters its sandbox
//! (`CORRAL_SHIM_SANDBOX`) and execs PROGRAM, so the plugin is never left running without its
//! supervisor, nor uncapped. Not meant to be run by hand.

use std::os::unix::process::CommandExt;
use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let number = |i: usize| {
        args.get(i)
            .and_then(|a| a.to_str())
            .and_then(|a| a.parse::<u64>().ok())
    };
    let (Some(supervisor), Some(soft), Some(hard), Some(program)) =
        (number(0), number(1), number(2), args.get(3))
    else {
        eprintln!(
            "corral-exec: usage: corral-exec SUPERVISOR_PID NOFILE_SOFT NOFILE_HARD PROGRAM [ARGS…] (started by corral)"
        );
        return ExitCode::from(2);
    };
    let supervisor = u32::try_from(supervisor).unwrap_or(0);
    let cgroups = corral::os::cgroup::shim_cgroups();
    let prepared = corral::os::spawn::c_paths(&cgroups)
        .and_then(|cgroups| corral::os::spawn::shim_prepare(supervisor, (soft, hard), &cgroups));
    if let Err(e) = prepared {
        eprintln!("corral-exec: {e}");
        return ExitCode::from(127);
    }
    // Then its user, once the cgroups are joined (root's to write).
    if let Ok(user) = std::env::var(corral::os::identity::USER_ENV) {
        let became = corral::os::identity::parse(&user)
            .ok_or_else(|| {
                std::io::Error::other(format!("bad {}: {user}", corral::os::identity::USER_ENV))
            })
            .and_then(corral::os::identity::become_user);
        if let Err(e) = became {
            eprintln!("corral-exec: user: {e}");
            return ExitCode::from(127);
        }
    }
    // Last: the cgroups were joined by writing files a sandbox may forbid.
    let sandbox = std::env::var(corral::os::sandbox::SANDBOX_ENV).ok();
    if let Some(sandbox) = sandbox {
        let entered = corral::os::sandbox::Sandbox::from_env(&sandbox).and_then(|s| s.enter());
        if let Err(e) = entered {
            eprintln!("corral-exec: sandbox: {e}");
            return ExitCode::from(127);
        }
    }
    // The loader's variables, for the program alone.
    let loader: std::collections::BTreeMap<String, String> =
        std::env::var(corral::os::spawn::LOADER_ENV)
            .ok()
            .and_then(|l| serde_json::from_str(&l).ok())
            .unwrap_or_default();
    let err = Command::new(program)
        .args(&args[4..])
        .envs(loader)
        .env_remove(corral::os::spawn::LOADER_ENV)
        .env_remove(corral::os::cgroup::SHIM_CGROUP_ENV)
        .env_remove(corral::os::sandbox::SANDBOX_ENV)
        .env_remove(corral::os::identity::USER_ENV)
        .exec();
    eprintln!(
        "corral-exec: cannot run {}: {err}",
        program.to_string_lossy()
    );
    ExitCode::from(127)
}
