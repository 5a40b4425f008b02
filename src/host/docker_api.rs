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

/// More than any `/info` answer (a few kilobytes): a bound on what a
/// broken or hostile listener can make the tool read.
const MAX_ANSWER: u64 = 1 << 20;

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
            .take(MAX_ANSWER)
            .read_to_end(&mut response)
            .with_context(|| format!("reading the answer from {SOCKET}"))?;
        let (status, body) = parse_answer(&response)
            .with_context(|| format!("the Docker daemon's answer on {SOCKET}"))?;
        if status != 200 {
            bail!("the Docker daemon answered /info with HTTP status {status}");
        }
        let info: serde_json::Value =
            serde_json::from_slice(body).context("the Docker daemon's /info is not JSON")?;
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

/// The status code and body of an HTTP/1.x answer whose body runs to the
/// end (the daemon answers an HTTP/1.0 request so, and closes).
fn parse_answer(answer: &[u8]) -> Result<(u16, &[u8])> {
    let end = answer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("no end of the HTTP header")?;
    let head = std::str::from_utf8(&answer[..end]).context("the HTTP header is not text")?;
    let status_line = head.lines().next().unwrap_or_default();
    let mut fields = status_line.splitn(3, ' ');
    let version = fields.next().unwrap_or_default();
    let code = fields.next().unwrap_or_default();
    if !version.starts_with("HTTP/1.") || code.len() != 3 {
        bail!("not an HTTP status line: `{}`", status_line.escape_debug());
    }
    let code = code
        .parse()
        .with_context(|| format!("not an HTTP status line: `{}`", status_line.escape_debug()))?;
    Ok((code, &answer[end + 4..]))
}

#[cfg(test)]
mod tests {
    use super::parse_answer;

    /// The answer, and its status and body or a part of the error.
    type Case = (&'static [u8], Result<(u16, &'static [u8]), &'static str>);

    #[test]
    fn answers() {
        let cases: &[Case] = &[
            (
                b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{}",
                Ok((200, b"{}")),
            ),
            (b"HTTP/1.1 200\r\n\r\n", Ok((200, b""))),
            (
                b"HTTP/1.1 500 Internal Server Error\r\n\r\n{\"message\":\"x\"}",
                Ok((500, b"{\"message\":\"x\"}")),
            ),
            // A reason phrase that mentions 200 is not a 200.
            (b"HTTP/1.1 404 Not 200 Found\r\n\r\n", Ok((404, b""))),
            (
                b"HTTP/1.0 200 OK\r\n\r\nbody\r\n\r\nmore",
                Ok((200, b"body\r\n\r\nmore")),
            ),
            (b"", Err("no end of the HTTP header")),
            (b"HTTP/1.0 200 OK\r\n", Err("no end of the HTTP header")),
            (
                b"SSH-2.0-OpenSSH 200 \r\n\r\n",
                Err("not an HTTP status line"),
            ),
            (b"HTTP/1.0 20 OK\r\n\r\n", Err("not an HTTP status line")),
            (b"HTTP/1.0 2x0 OK\r\n\r\n", Err("not an HTTP status line")),
            (b"HTTP/2 200\r\n\r\n", Err("not an HTTP status line")),
            (b"\xff\xfe 200 \r\n\r\n", Err("not text")),
        ];
        for (answer, expected) in cases {
            let got = parse_answer(answer).map_err(|e| format!("{e:#}"));
            match (got, expected) {
                (Ok(got), Ok(expected)) => assert_eq!(got, *expected, "{answer:?}"),
                (Err(got), Err(expected)) => assert!(got.contains(expected), "{answer:?}: {got}"),
                (got, expected) => panic!("{answer:?}: {got:?}, expected {expected:?}"),
            }
        }
    }
}
