//! The machine outside the file tree and the commands: who the tool runs as,
//! the clock, signals to processes and the network. [`Host`](super::Host)
//! reaches them only through [`System`], so the fake host in the tests
//! decides each answer (root or not, time that passes without sleeping, which
//! proxy listens, what a URL serves).

use std::time::{Duration, Instant};

use anyhow::Result;
use nix::sys::signal::Signal;

use super::http::{self, HttpNetwork};

/// A filesystem's size and use, as `df` reports them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DiskUsage {
    /// Bytes in use.
    pub used: u64,
    /// Bytes an unprivileged process may still write (less the space
    /// reserved for root).
    pub available: u64,
}

impl DiskUsage {
    /// Percent used, as `df` computes `Use%`: used / (used + available),
    /// rounded up.
    pub fn used_percent(&self) -> u64 {
        let whole = u128::from(self.used) + u128::from(self.available);
        if whole == 0 {
            return 0;
        }
        u64::try_from((u128::from(self.used) * 100).div_ceil(whole)).unwrap_or(100)
    }
}

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

    /// The size and use of the filesystem that holds `path` (statvfs).
    fn disk_usage(&self, path: &std::path::Path) -> Result<DiskUsage>;

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

    fn disk_usage(&self, path: &std::path::Path) -> Result<DiskUsage> {
        use anyhow::Context;
        let stat = nix::sys::statvfs::statvfs(path).with_context(|| {
            format!(
                "reading the size of the filesystem holding {}",
                path.display()
            )
        })?;
        let block: u64 = stat.fragment_size();
        let blocks: u64 = stat.blocks();
        let free: u64 = stat.blocks_free();
        let available: u64 = stat.blocks_available();
        Ok(DiskUsage {
            used: blocks.saturating_sub(free).saturating_mul(block),
            available: available.saturating_mul(block),
        })
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_percent_is_rounded_up_as_df_does() {
        let cases = [
            (0, 0, 0),
            (0, 100, 0),
            (1, 99, 1),
            (80, 20, 80),
            (801, 199, 81),
            (100, 0, 100),
            (u64::MAX, u64::MAX, 50),
        ];
        for (used, available, percent) in cases {
            assert_eq!(
                DiskUsage { used, available }.used_percent(),
                percent,
                "{used} {available}"
            );
        }
    }

    #[test]
    fn the_real_filesystem_answers() {
        let usage = RealSystem
            .disk_usage(std::path::Path::new("/"))
            .expect("statvfs /");
        assert!(usage.used > 0, "{usage:?}");
        let err = RealSystem
            .disk_usage(std::path::Path::new("/nonexistent/x"))
            .expect_err("missing path");
        assert!(format!("{err:#}").contains("/nonexistent/x"), "{err:#}");
    }
}
