//! A read-only question to the Docker daemon over its socket, in-process:
//! `GET /info`. Cheaper than spawning `docker info` (no process, no login
//! shell), so `plan` and the wait for a starting daemon use it; the
//! end-to-end check as the runner account still runs the real client.

use std::io::{self, Read, Write};
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixStream;
use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Host;

pub const SOCKET: &str = "/var/run/docker.sock";

/// Who may use the socket: its owner's uid and gid and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SocketAccess {
    pub uid: u32,
    pub gid: u32,
    pub mode: u32,
}

impl Host {
    /// The daemon's storage driver from `GET /info`, or `None` when nothing
    /// listens on the socket (not installed, stopped, still starting).
    pub fn docker_driver_via_socket(&self) -> Result<Option<String>> {
        let path = self.files.resolve(SOCKET);
        let mut stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e).with_context(|| format!("connecting to {SOCKET}")),
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .context("setting a socket timeout")?;
        // HTTP/1.0: the daemon closes the connection after its answer.
        stream
            .write_all(b"GET /info HTTP/1.0\r\nHost: docker\r\n\r\n")
            .with_context(|| format!("asking {SOCKET} for /info"))?;
        let mut response = Vec::new();
        stream
            .read_to_end(&mut response)
            .with_context(|| format!("reading the answer from {SOCKET}"))?;
        let text = String::from_utf8_lossy(&response);
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head.lines().next().unwrap_or_default();
        if !status.contains(" 200 ") {
            bail!("the Docker daemon answered /info with `{status}`");
        }
        let info: serde_json::Value =
            serde_json::from_str(body).context("the Docker daemon's /info is not JSON")?;
        Ok(info["Driver"].as_str().map(str::to_string))
    }

    /// Owner, group and mode of the daemon's socket, if it exists.
    pub fn docker_socket_access(&self) -> Result<Option<SocketAccess>> {
        match std::fs::metadata(self.files.resolve(SOCKET)) {
            Ok(meta) => Ok(Some(SocketAccess {
                uid: meta.uid(),
                gid: meta.gid(),
                mode: meta.mode() & 0o777,
            })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {SOCKET}")),
        }
    }
}
