//! A TCP port for a spawn: a free one on 127.0.0.1 (`port = "auto"`), or a
//! fixed one checked to be free, with whoever holds it named (from
//! `/proc/net/tcp*` and the holders' fds) when it is not.
//!
//! An automatic port is free when taken and bound by the program a moment
//! later, so it is chosen where nothing else is likely to take it in
//! between: outside the kernel's ephemeral range (from which every outgoing
//! connection, health probes included, takes its local port), and not among
//! the ports handed to other spawns lately (which may not be bound yet).

use std::collections::VecDeque;
use std::net::{Ipv4Addr, TcpListener};
use std::ops::RangeInclusive;
use std::sync::{Mutex, PoisonError};

use crate::units::PortSetting;

/// Where automatic ports come from, when the ephemeral range leaves it be.
const AUTO_PORTS: RangeInclusive<u16> = 20_000..=32_767;
/// How many ports handed out are remembered, and not handed again.
const RECENT: usize = 1024;
/// Ports handed to spawns lately, newest last.
static HANDED: Mutex<VecDeque<u16>> = Mutex::new(VecDeque::new());

/// A free port for `port = "auto"`: at random in [`AUTO_PORTS`] less the
/// ephemeral range, not handed out lately; else any the kernel gives.
fn auto() -> Result<u16, String> {
    let ephemeral = ephemeral_range();
    let mut handed = HANDED.lock().unwrap_or_else(PoisonError::into_inner);
    let span = u32::from(AUTO_PORTS.end() - AUTO_PORTS.start()) + 1;
    let start = fastrand::u32(0..span);
    let candidates = (0..span)
        .map(|i| *AUTO_PORTS.start() + u16::try_from((start + i) % span).unwrap_or(0))
        .filter(|p| !ephemeral.contains(p) && !handed.contains(p));
    let chosen = candidates
        .take(256)
        .find(|&p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok());
    let port = match chosen {
        Some(port) => port,
        None => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port on 127.0.0.1 for `port = \"auto\"`: {e}"))?,
    };
    if handed.len() == RECENT {
        handed.pop_front();
    }
    handed.push_back(port);
    Ok(port)
}

/// The kernel's ephemeral port range (`ip_local_port_range`), or Linux's
/// default.
fn ephemeral_range() -> RangeInclusive<u16> {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut ends = text.split_whitespace().map(|n| n.parse::<u16>().ok());
            Some(ends.next()??..=ends.next()??)
        })
        .unwrap_or(32_768..=60_999)
}

/// Takes the port `setting` names for one spawn. The port is free when this
/// returns (the probe's socket is closed); the program binds it itself.
pub fn take(setting: PortSetting) -> Result<u16, String> {
    match setting {
        PortSetting::Auto => auto(),
        PortSetting::Fixed(port) => match TcpListener::bind((Ipv4Addr::UNSPECIFIED, port)) {
            Ok(_) => Ok(port),
            Err(e) => Err(match holder(port) {
                Some((pid, command)) => format!(
                    "port {port} is in use by pid {pid} ({command}): {e}; free it or choose another `port`"
                ),
                None => {
                    format!("port {port} cannot be taken: {e}; free it or choose another `port`")
                }
            }),
        },
    }
}

/// The pid and command of a process listening on `port`, where `/proc`
/// tells.
fn holder(port: u16) -> Option<(u32, String)> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .find_map(|table| listening_inode(&table, port))?;
    let wanted = format!("socket:[{inode}]");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let holds = std::fs::read_dir(entry.path().join("fd"))
                .ok()?
                .flatten()
                .any(|fd| {
                    std::fs::read_link(fd.path()).is_ok_and(|l| l.as_os_str() == wanted.as_str())
                });
            holds.then(|| {
                let comm = std::fs::read_to_string(entry.path().join("comm")).unwrap_or_default();
                (pid, comm.trim().to_string())
            })
        })
}

/// The inode of the socket listening on `port` in a `/proc/net/tcp` table.
fn listening_inode(table: &str, port: u16) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let local_port = fields.get(1)?.rsplit(':').next()?;
        let listening = *fields.get(3)? == "0A";
        (listening && u16::from_str_radix(local_port, 16).ok()? == port)
            .then(|| fields.get(9)?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_a_free_port_and_a_held_one_is_refused_naming_its_holder() {
        let port = take(PortSetting::Auto).unwrap();
        assert!(port > 0 && !ephemeral_range().contains(&port), "{port}");
        assert_ne!(take(PortSetting::Auto).unwrap(), port, "handed twice");
        let held = TcpListener::bind((Ipv4Addr::UNSPECIFIED, 0)).unwrap();
        let port = held.local_addr().unwrap().port();
        let err = take(PortSetting::Fixed(port)).unwrap_err();
        assert!(
            err.contains(&format!(
                "port {port} is in use by pid {}",
                std::process::id()
            )),
            "{err}"
        );
    }

    #[test]
    fn a_listening_socket_is_found_in_the_table() {
        let table = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   \
             0: 00000000:1F4A 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1\n   \
             1: 0100007F:1F4B 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 4343 1\n";
        assert_eq!(listening_inode(table, 0x1F4A), Some(4242));
        assert_eq!(
            listening_inode(table, 0x1F4B),
            None,
            "established, not listening"
        );
    }
}
