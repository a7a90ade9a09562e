//! A TCP port for a spawn: a free one on 127.0.0.1 (`port = "auto"`), or a
//! fixed one checked to be free, with whoever holds it named (from
//! `/proc/net/tcp*` and the holders' fds) when it is not.

use std::net::{Ipv4Addr, TcpListener};

use crate::units::PortSetting;

/// Takes the port `setting` names for one spawn. The port is free when this
/// returns (the probe's socket is closed); the program binds it itself.
pub fn take(setting: PortSetting) -> Result<u16, String> {
    match setting {
        PortSetting::Auto => TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .map_err(|e| format!("no free port on 127.0.0.1 for `port = \"auto\"`: {e}")),
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
        assert!(port > 0);
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
