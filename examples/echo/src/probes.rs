//! Actions that probe the plugin's sandbox: each tries one thing the kernel
//! may refuse, and answers the error's code (`EACCES`, `EPERM`, …) when it
//! is refused.

use std::io::Write;

use corral_sdk::PluginError;
use serde_json::{Value, json};

fn text<'a>(payload: &'a Value, key: &str) -> Result<&'a str, PluginError> {
    payload
        .get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| PluginError::bad_payload(format!("expected {{\"{key}\": <string>}}")))
}

/// An OS error as a plugin error whose code is its name (`EACCES`).
fn refused(e: &std::io::Error) -> PluginError {
    let code = e
        .raw_os_error()
        .map(|n| nix::errno::Errno::from_raw(n).to_string())
        .map_or_else(
            || "EIO".to_string(),
            |s| s.split(':').next().unwrap_or("EIO").to_string(),
        );
    PluginError::new(code, e.to_string())
}

/// `read {"path"}`: `{"bytes": N}`.
pub(crate) fn read(payload: &Value) -> Result<Value, PluginError> {
    let bytes = std::fs::read(text(payload, "path")?).map_err(|e| refused(&e))?;
    Ok(json!({"bytes": bytes.len()}))
}

/// `write {"path", "text"}`: `{"written": N}`.
pub(crate) fn write(payload: &Value) -> Result<Value, PluginError> {
    let body = text(payload, "text")?;
    let mut file = std::fs::File::create(text(payload, "path")?).map_err(|e| refused(&e))?;
    file.write_all(body.as_bytes()).map_err(|e| refused(&e))?;
    Ok(json!({"written": body.len()}))
}

/// `connect {"host", "port"}`: `{"connected": true}`.
pub(crate) fn connect(payload: &Value) -> Result<Value, PluginError> {
    let host = text(payload, "host")?;
    let port = payload
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| PluginError::bad_payload("expected {\"port\": <1 to 65535>}"))?;
    let timeout = std::time::Duration::from_secs(2);
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(host, port))
        .map_err(|e| refused(&e))?
        .next()
        .ok_or_else(|| PluginError::new("EADDRNOTAVAIL", format!("{host} has no address")))?;
    std::net::TcpStream::connect_timeout(&addr, timeout).map_err(|e| refused(&e))?;
    Ok(json!({"connected": true}))
}

/// `signal {"pid", "signal"}` (a signal number, default 0: only a check):
/// `{"signalled": pid}`.
pub(crate) fn signal(payload: &Value) -> Result<Value, PluginError> {
    let pid = payload
        .get("pid")
        .and_then(Value::as_i64)
        .and_then(|p| i32::try_from(p).ok())
        .ok_or_else(|| PluginError::bad_payload("expected {\"pid\": <pid>}"))?;
    let number = payload.get("signal").and_then(Value::as_i64).unwrap_or(0);
    let signal = match number {
        0 => None,
        n => Some(
            i32::try_from(n)
                .ok()
                .and_then(|n| nix::sys::signal::Signal::try_from(n).ok())
                .ok_or_else(|| PluginError::bad_payload(format!("{n} is not a signal")))?,
        ),
    };
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
        .map_err(|e| refused(&std::io::Error::from(e)))?;
    Ok(json!({"signalled": pid}))
}
