//! The machine outside the file tree and the commands: who the tool runs as,
//! the clock, signals to processes and the network. [`Host`](super::Host)
//! reaches them only through [`System`], so the fake host in the tests
//! decides each answer (root or not, time that passes without sleeping, which
//! proxy listens, what a URL serves).

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;

use super::http::{self, HttpNetwork};

pub trait System {
    /// The effective user is root.
    fn is_root(&self) -> bool;

    /// Monotonic time, for deadlines and durations.
    fn now(&self) -> Instant;

    /// Seconds since the Unix epoch (wall clock), for dates read from files.
    fn unix_time(&self) -> u64;

    fn sleep(&self, duration: Duration);

    /// The running kernel's host name.
    fn hostname(&self) -> Result<String>;

    /// Sends `signal` to process `pid`; a process already gone is no error.
    fn signal(&self, pid: u32, signal: Signal) -> Result<()>;

    /// A TCP connection to `host:port` opens within `timeout`.
    fn connect(&self, host: &str, port: u16, timeout: Duration) -> Result<()>;

    /// `url` answers a HEAD request with a success within `timeout`.
    fn head(&self, url: &str, network: &HttpNetwork, timeout: Duration) -> Result<()>;

    /// The body of `url` (http or https), at most `limit` bytes.
    fn get(
        &self,
        url: &str,
        network: &HttpNetwork,
        timeout: Duration,
        limit: u64,
    ) -> Result<Vec<u8>>;
}

/// This machine, as the process sees it.
pub struct RealSystem;

impl System for RealSystem {
    fn is_root(&self) -> bool {
        nix::unistd::geteuid().is_root()
    }

    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_time(&self) -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    }

    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }

    fn hostname(&self) -> Result<String> {
        Ok(nix::unistd::gethostname()?.to_string_lossy().into_owned())
    }

    fn signal(&self, pid: u32, signal: Signal) -> Result<()> {
        use anyhow::Context;
        let raw = i32::try_from(pid).context("process id out of range")?;
        match nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => Ok(()),
            Err(e) => Err(e).with_context(|| format!("sending {signal} to process {pid}")),
        }
    }

    fn connect(&self, host: &str, port: u16, timeout: Duration) -> Result<()> {
        http::connect(host, port, timeout)
    }

    fn head(&self, url: &str, network: &HttpNetwork, timeout: Duration) -> Result<()> {
        http::agent(network, url, timeout)?
            .head(url)
            .call()
            .map(drop)
            .map_err(Into::into)
    }

    fn get(
        &self,
        url: &str,
        network: &HttpNetwork,
        timeout: Duration,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let mut response = http::agent(network, url, timeout)?.get(url).call()?;
        Ok(response
            .body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()?)
    }
}
