//! Packages: installed state from dpkg's status file (read once and kept
//! until apt changes it), installs and index updates through apt-get, and
//! waiting visibly for a dpkg lock held by another process.

use std::fs::OpenOptions;
use std::os::fd::AsFd;

use anyhow::Result;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use super::Host;
use super::command::{Cmd, CommandError};
use crate::edit::dpkg_status;

/// How long apt waits for a dpkg lock held by someone else (unattended-upgrades
/// on a first boot can hold it for minutes).
pub const LOCK_TIMEOUT_SECS: u32 = 600;

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_MARKER: &str = "Managed by runner-provision";

const LOCKS: &[&str] = &["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"];

impl Host {
    /// Is `package` installed (dpkg status `install ok installed`)?
    pub fn package_installed(&self, package: &str) -> Result<bool> {
        let text = self.files.read_shared("/var/lib/dpkg/status")?.ok_or_else(|| {
            anyhow::anyhow!("/var/lib/dpkg/status is missing: this does not look like a Debian or Ubuntu system")
        })?;
        Ok(dpkg_status::installed(&text, package))
    }

    /// `apt-get update`, for one sources file only when `source` is given (a
    /// repository just added needs its index, the others are left alone).
    pub fn apt_update(&self, step: &str, source: Option<&str>) -> Result<(), CommandError> {
        self.wait_note(step);
        let mut cmd = apt_get().arg("update");
        if let Some(source) = source {
            cmd = cmd.args([
                format!("-o=Dir::Etc::SourceList={source}"),
                "-o=Dir::Etc::SourceParts=-".to_string(),
                "-o=APT::Get::List-Cleanup=0".to_string(),
            ]);
        }
        self.progress("apt-get update");
        self.run(cmd).map(drop)
    }

    /// Makes sure apt's lists are usable before an install: a full update
    /// when they are missing or older than a day, else an update of just
    /// `source` (a repository just added), which is far cheaper.
    pub fn apt_refresh(&self, step: &str, source: Option<&str>) -> Result<()> {
        if self.apt_lists_fresh()? {
            if let Some(source) = source {
                self.apt_update(step, Some(source))?;
            }
        } else {
            self.apt_update(step, None)?;
        }
        Ok(())
    }

    /// Some `*_Packages` list younger than a day.
    fn apt_lists_fresh(&self) -> Result<bool> {
        const DAY: std::time::Duration = std::time::Duration::from_secs(24 * 3600);
        for name in self.files.list("/var/lib/apt/lists")? {
            if !name.contains("_Packages") {
                continue;
            }
            let fresh = self
                .files
                .modified(&format!("/var/lib/apt/lists/{name}"))
                .ok()
                .flatten()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age < DAY);
            if fresh {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// `apt-get install` of `packages`, non-interactive, keeping existing config files.
    pub fn apt_install(&self, step: &str, packages: &[&str]) -> Result<()> {
        self.wait_note(step);
        self.finish_interrupted_dpkg(step)?;
        self.progress(&format!("apt-get install {}", packages.join(" ")));
        let cmd = apt_get()
            .args(["install", "-y", "--no-install-recommends"])
            .args([
                "-o=Dpkg::Options::=--force-confdef",
                "-o=Dpkg::Options::=--force-confold",
            ])
            .args(packages.iter().copied());
        let ours = self.deny_service_starts()?;
        let installed = self.run(cmd);
        if ours {
            self.files.remove(POLICY_RC_D)?;
        }
        installed?;
        Ok(())
    }

    /// In an image (`--root`), packages' scripts must not start daemons on
    /// the machine building it: Debian's policy-rc.d (exit 101: "action
    /// forbidden"), which invoke-rc.d and deb-systemd-invoke obey, as
    /// debootstrap and image builders use it. Returns true when the file is
    /// the tool's own (written now, or left by a run that was killed), to be
    /// removed after the install; someone else's is left alone.
    fn deny_service_starts(&self) -> Result<bool> {
        if self.live {
            return Ok(false);
        }
        if self.files.exists(POLICY_RC_D) || self.files.is_symlink(POLICY_RC_D) {
            let text = self
                .files
                .read(POLICY_RC_D)
                .ok()
                .flatten()
                .unwrap_or_default();
            return Ok(text.contains(POLICY_MARKER));
        }
        self.files.create_dir("/usr/sbin", 0o755)?;
        self.files.write_atomic(
            POLICY_RC_D,
            format!("#!/bin/sh\n# {POLICY_MARKER}: no service starts while packages are installed into an image\nexit 101\n").as_bytes(),
            0o755,
        )?;
        Ok(true)
    }

    /// A dpkg run killed half-way (a reboot or SIGKILL during a first boot)
    /// leaves packages unpacked but not configured, and apt then refuses
    /// every install until `dpkg --configure -a` has run: run it.
    fn finish_interrupted_dpkg(&self, step: &str) -> Result<()> {
        let pending_updates = !self.files.list("/var/lib/dpkg/updates")?.is_empty();
        let half_done = self
            .files
            .read("/var/lib/dpkg/status")?
            .is_some_and(|text| dpkg_status::interrupted(&text));
        if pending_updates || half_done {
            self.warn(
                step,
                "dpkg was interrupted earlier: running `dpkg --configure -a` to finish its work",
            );
            self.run(
                Cmd::new("dpkg")
                    .args(["--configure", "-a"])
                    .env("DEBIAN_FRONTEND", "noninteractive"),
            )?;
        }
        Ok(())
    }

    /// Says so when another process holds a dpkg lock; apt then waits for it.
    fn wait_note(&self, step: &str) {
        if let Some(holder) = self.dpkg_lock_holder() {
            self.warn(
                step,
                &format!(
                    "waiting for the dpkg lock held by {holder} (up to {} minutes; unattended-upgrades often holds it on a first boot)",
                    LOCK_TIMEOUT_SECS / 60
                ),
            );
        }
    }

    /// "process PID (name)" of the holder of a dpkg lock, if one is held.
    fn dpkg_lock_holder(&self) -> Option<String> {
        if !self.live {
            return None;
        }
        for lock in LOCKS {
            let Ok(file) = OpenOptions::new()
                .read(true)
                .write(true)
                .open(self.files.resolve(lock))
            else {
                continue;
            };
            let mut query = whole_file_write_lock();
            if fcntl(file.as_fd(), FcntlArg::F_GETLK(&mut query)).is_ok()
                && i32::from(query.l_type) != libc::F_UNLCK
            {
                let pid = query.l_pid;
                let name = self
                    .files
                    .read(&format!("/proc/{pid}/comm"))
                    .ok()
                    .flatten()
                    .map(|c| c.trim().to_string())
                    .unwrap_or_default();
                return Some(if pid > 0 {
                    format!("process {pid} ({name})")
                } else {
                    "another process".to_string()
                });
            }
        }
        None
    }
}

/// A write-lock query over the whole file, for F_GETLK to fill in.
fn whole_file_write_lock() -> libc::flock {
    libc::flock {
        l_type: libc::F_WRLCK as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0,
        l_pid: 0,
    }
}

fn apt_get() -> Cmd {
    Cmd::new("apt-get")
        .arg(format!("-o=DPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"))
        .arg("-q")
        .env("DEBIAN_FRONTEND", "noninteractive")
}
