//! The client side of the control socket, used by the CLI: find it
//! ([`socket_of`]), connect, introduce ourselves (the handshake's client step is proto's
//! [`introduce`], shared with the SDKs), and hand back a [`ControlApiClient`].

use std::path::{Path, PathBuf};

use corral_proto::codec::{self, Codec, MAX_FRAME_BYTES};
use corral_proto::{ControlApiClient, Hello, Role, introduce};
use interprocess::local_socket::GenericFilePath;
use interprocess::local_socket::tokio::{Stream, prelude::*};

use super::args::Target;
use crate::{Error, config};

/// Connects to the supervisor listening at `socket`; `found_via` says where
/// the path came from, for the error when nothing answers.
pub async fn connect(socket: &Path, found_via: &str) -> Result<ControlApiClient, Error> {
    let not_running = |source| Error::NotRunning {
        socket: socket.to_path_buf(),
        found_via: found_via.to_string(),
        source,
    };
    let name = socket
        .to_fs_name::<GenericFilePath>()
        .map_err(not_running)?;
    let stream = Stream::connect(name).await.map_err(not_running)?;
    let mut framed = codec::framed(stream, MAX_FRAME_BYTES);
    let hello = Hello::new(Role::Control);
    introduce(&mut framed, Codec::Json, &hello)
        .await
        .map_err(|e| Error::Refused(e.to_string()))?;
    let transport = codec::into_transport(framed, Codec::Json);
    Ok(ControlApiClient::new(tarpc::client::Config::default(), transport).spawn())
}

/// Resolves the control socket: `--socket`, then `-c FILE`, then
/// `CORRAL_SOCKET`, then `corral.toml`; with where it came from.
pub fn socket_of(target: &Target) -> Result<(PathBuf, String), Error> {
    if let Some(path) = &target.socket {
        return Ok((path.clone(), "from --socket".into()));
    }
    let from_file = |file: &Path| -> Result<(PathBuf, String), Error> {
        let (socket, problems) = config::control_socket_of(file)?;
        if let Some(problems) = problems {
            let first = problems.problems.first().map(ToString::to_string);
            eprintln!(
                "corral: warning: {} has problems ({}; `corral check -c {}` lists them all); \
                 reaching the fleet through its supervisor.runtime_dir anyway",
                file.display(),
                first.unwrap_or_default(),
                file.display()
            );
        }
        Ok((socket, format!("the runtime_dir of {}", file.display())))
    };
    if let Some(file) = &target.config {
        return from_file(file);
    }
    if let Some(path) = std::env::var_os("CORRAL_SOCKET") {
        return Ok((PathBuf::from(path), "from CORRAL_SOCKET".into()));
    }
    from_file(Path::new("corral.toml"))
}
