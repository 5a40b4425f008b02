//! One apply at a time: an exclusive `flock` on the root's /run folder (the
//! root itself when it has none). Nothing is created: a refused or
//! locked-out apply leaves the tree as it was.
//!
//! Two applies on one host would both register, both rewrite config.toml
//! and both run apt; the second one waits, saying which process holds the
//! lock, for a bounded time, then fails. `plan` and `verify` change nothing
//! and take no lock. The lock is the kernel's: a killed holder releases it,
//! so there is never a stale lock to clean up.

use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::Host;

/// The folder locked, inside the root.
pub const APPLY_LOCK: &str = "/run";

/// Held for as long as the value lives.
#[derive(Debug)]
pub struct ApplyLock {
    _lock: Flock<File>,
}

impl Host {
    /// Takes the apply lock, waiting up to `timeout` for another apply to end.
    pub fn lock_apply(&self, timeout: Duration) -> Result<ApplyLock> {
        let locked = if self.files.is_dir(APPLY_LOCK) {
            APPLY_LOCK
        } else {
            "/"
        };
        let started = Instant::now();
        let mut file = self.files.open_dir(locked)?;
        let mut told = false;
        loop {
            match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
                Ok(lock) => return Ok(ApplyLock { _lock: lock }),
                Err((back, Errno::EWOULDBLOCK)) => file = back,
                Err((_, e)) => bail!("locking {locked} (one apply at a time): {e}"),
            }
            let holder = holder(&file);
            if started.elapsed() >= timeout {
                bail!(
                    "another runner-provision apply ({holder}) still holds the lock on {locked} after {} s: let it finish (or stop it), then run apply again; --lock-timeout SECS waits longer",
                    timeout.as_secs()
                );
            }
            if !told {
                self.reporter.warning(
                    None,
                    &format!(
                        "another runner-provision apply ({holder}) is running on this host; waiting up to {} s for it to finish",
                        timeout.as_secs()
                    ),
                );
                told = true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// "process PID" of whoever holds a flock on `file`, from the kernel's
/// /proc/locks (the live kernel's, whatever the root).
fn holder(file: &File) -> String {
    let Ok(meta) = file.metadata() else {
        return "process unknown".to_string();
    };
    let locks = std::fs::read_to_string("/proc/locks").unwrap_or_default();
    lock_holder(&locks, meta.dev(), meta.ino()).map_or_else(
        || "process unknown".to_string(),
        |pid| format!("process {pid}"),
    )
}

/// The pid holding a FLOCK on the file `dev`/`ino` in /proc/locks' text
/// (`1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF`; waiters start `->`).
fn lock_holder(locks: &str, dev: u64, ino: u64) -> Option<u32> {
    let want = format!(
        "{:02x}:{:02x}:{ino}",
        nix::sys::stat::major(dev),
        nix::sys::stat::minor(dev)
    );
    locks.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        if fields.get(1) == Some(&"->") || fields.get(1) != Some(&"FLOCK") {
            return None;
        }
        let at = fields.iter().position(|f| *f == want)?;
        fields.get(at.checked_sub(1)?)?.parse().ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_is_read_from_proc_locks() {
        let dev = nix::sys::stat::makedev(0xfd, 0x01);
        let text = "1: POSIX  ADVISORY  WRITE 99 fd:01:1234 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 4343 fd:01:1234 0 EOF\n\
                    3: FLOCK  ADVISORY  WRITE 77 fd:01:9999 0 EOF\n";
        assert_eq!(lock_holder(text, dev, 1234), Some(4242));
        assert_eq!(lock_holder(text, dev, 5), None);
        assert_eq!(lock_holder("", dev, 1234), None);
    }
}
