//! Mechanics that face the operating system, without policy: starting a
//! process ([`spawn`], directly with [`vfork`]) and awaiting it ([`child`]), cgroups ([`cgroup`]), measuring memory ([`memory`]),
//! capturing output ([`logs`]) into safe rotated files ([`log_file`]) and
//! reading them back as they grow ([`log_read`]), the
//! private runtime directory ([`runtime_dir`]), which processes belong to a
//! spawn ([`tree`]), the supervisor as child subreaper of them all
//! ([`reaper`]), free ports ([`port`]), systemd's notify socket
//! ([`notify`]) and the kernel-enforced sandbox ([`sandbox`]). These take plain values, never config types;
//! what to do with them is decided by the plugin actor and the root actor.

pub mod cgroup;
pub mod child;
pub mod identity;
pub mod log_file;
pub mod log_read;
pub mod logs;
pub mod memory;
pub mod notify;
pub mod port;
pub mod reaper;
pub mod runtime_dir;
pub mod sandbox;
pub mod spawn;
pub mod tree;
pub mod vfork;
