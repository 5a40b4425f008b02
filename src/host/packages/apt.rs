//! apt and dpkg: installed state from dpkg's status file (read once and kept
//! until apt changes it), repository sources (`apt_repo.rs`), installs and
//! index updates through apt-get, and waiting visibly for a dpkg lock held
//! by another process.

use std::fs::OpenOptions;
use std::os::fd::AsFd;

use anyhow::Result;
use nix::fcntl::{FcntlArg, fcntl};
use nix::libc;

use super::apt_repo::{AptRepo, add_and_refresh_all};
use super::{Package, PackageManager, Source};
use crate::change::Change;
use crate::edit::dpkg_status;
use crate::host::Host;
use crate::host::command::{Cmd, CommandError, Output};

/// How long apt waits for a dpkg lock held by someone else (unattended-upgrades
/// on a first boot can hold it for minutes).
const LOCK_TIMEOUT_SECS: u32 = 600;

const POLICY_RC_D: &str = "/usr/sbin/policy-rc.d";
const POLICY_MARKER: &str = "Managed by runner-provision";

const LOCKS: &[&str] = &["/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock"];

/// apt-get and dpkg, as on Debian and Ubuntu.
pub struct Apt;

impl PackageManager for Apt {
    fn tools(&self) -> &'static [(&'static str, &'static str)] {
        &[("apt-get", "apt"), ("dpkg", "dpkg")]
    }

    fn installed(&self, host: &Host, package: &str) -> Result<bool> {
        package_installed(host, package)
    }

    fn version(&self, host: &Host, package: &str) -> Result<Option<String>> {
        Ok(dpkg_status::installed_version(&status(host)?, package))
    }

    fn held(&self, host: &Host, package: &str) -> Result<bool> {
        Ok(dpkg_status::held(&status(host)?, package))
    }

    fn hold(&self, host: &Host, _step: &str, packages: &[&str]) -> Result<()> {
        apt_mark(host, "hold", packages)
    }

    fn unhold(&self, host: &Host, _step: &str, packages: &[&str]) -> Result<()> {
        apt_mark(host, "unhold", packages)
    }

    fn probe_repository(&self, host: &Host, source: &Source) -> Result<()> {
        AptRepo::of(source).probe(host)
    }

    fn repository_changes(&self, host: &Host, source: &Source) -> Result<Vec<Change>> {
        AptRepo::of(source).changes(host)
    }

    fn prepare(&self, host: &Host, step: &str, sources: &[Source]) -> Result<Vec<Vec<String>>> {
        if sources.is_empty() {
            return apt_refresh(host, step, None).map(|_| Vec::new());
        }
        let repos: Vec<AptRepo> = sources.iter().map(AptRepo::of).collect();
        add_and_refresh_all(host, step, &repos)
    }

    fn install(&self, host: &Host, step: &str, packages: &[Package]) -> Result<()> {
        apt_install(host, step, packages)
    }

    fn purge(&self, host: &Host, _step: &str, packages: &[&str]) -> Result<()> {
        host.progress(&format!("apt-get purge {}", packages.join(" ")));
        host.run(
            Cmd::new("apt-get")
                .arg(format!("-o=DPkg::Lock::Timeout={LOCK_TIMEOUT_SECS}"))
                .args(["-q", "-y", "purge"])
                .args(packages.iter().copied())
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
        Ok(())
    }
}
/// dpkg's status file (read once, until a command runs).
fn status(host: &Host) -> Result<std::rc::Rc<String>> {
    host.files
        .read_shared("/var/lib/dpkg/status")?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "/var/lib/dpkg/status is missing: this does not look like a Debian or Ubuntu system"
            )
        })
}

/// Is `package` installed (dpkg status `install ok installed`)?
fn package_installed(host: &Host, package: &str) -> Result<bool> {
    Ok(dpkg_status::installed(&status(host)?, package))
}

/// `apt-mark hold|unhold PACKAGES`: dpkg's selection, which apt's
/// upgrades (unattended-upgrades too) respect.
fn apt_mark(host: &Host, action: &str, packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    host.progress(&format!("apt-mark {action} {}", packages.join(" ")));
    host.run(
        Cmd::new("apt-mark")
            .arg(action)
            .args(packages.iter().copied()),
    )?;
    Ok(())
}

/// `apt-get update`, for one sources file only when `source` is given (a
/// repository just added needs its index, the others are left alone).
/// Returns its output: apt reports a repository whose signature no longer
/// verifies as a warning (exit 0) when it has older lists of it.
pub(super) fn apt_update(
    host: &Host,
    step: &str,
    source: Option<&str>,
) -> Result<Output, CommandError> {
    wait_note(host, step);
    let mut cmd = apt_get().arg("update");
    if let Some(source) = source {
        cmd = cmd.args([
            format!("-o=Dir::Etc::SourceList={source}"),
            "-o=Dir::Etc::SourceParts=-".to_string(),
            "-o=APT::Get::List-Cleanup=0".to_string(),
        ]);
    }
    host.progress("apt-get update");
    host.run(cmd)
}

/// Makes sure apt's lists are usable before an install: a full update
/// when they are missing or older than a day, else an update of just
/// `source` (a repository just added), which is far cheaper. Returns the
/// output of the update it ran, if any.
pub(super) fn apt_refresh(host: &Host, step: &str, source: Option<&str>) -> Result<Option<Output>> {
    if apt_lists_fresh(host)? {
        if let Some(source) = source {
            return Ok(Some(apt_update(host, step, Some(source))?));
        }
        Ok(None)
    } else {
        Ok(Some(apt_update(host, step, None)?))
    }
}

/// Some `*_Packages` list younger than a day.
fn apt_lists_fresh(host: &Host) -> Result<bool> {
    const DAY: u64 = 24 * 3600;
    let now = host.unix_time();
    for name in host.files.list("/var/lib/apt/lists")? {
        if !name.contains("_Packages") {
            continue;
        }
        let fresh = host
            .files
            .modified(&format!("/var/lib/apt/lists/{name}"))
            .ok()
            .flatten()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .is_some_and(|t| now.saturating_sub(t.as_secs()) < DAY);
        if fresh {
            return Ok(true);
        }
    }
    Ok(false)
}

/// `apt-get install` of `packages`, non-interactive, keeping existing
/// config files. Pinned versions may go down and may move held packages:
/// the pin is the operator's explicit word.
fn apt_install(host: &Host, step: &str, packages: &[Package]) -> Result<()> {
    wait_note(host, step);
    finish_interrupted_dpkg(host, step)?;
    let specs: Vec<String> = packages
        .iter()
        .map(|p| match &p.version {
            Some(version) => format!("{}={version}", p.name),
            None => p.name.clone(),
        })
        .collect();
    host.progress(&format!("apt-get install {}", specs.join(" ")));
    let mut cmd = apt_get()
        .args(["install", "-y", "--no-install-recommends"])
        .args([
            "-o=Dpkg::Options::=--force-confdef",
            "-o=Dpkg::Options::=--force-confold",
        ]);
    if packages.iter().any(|p| p.version.is_some()) {
        cmd = cmd.args(["--allow-downgrades", "--allow-change-held-packages"]);
    }
    let cmd = cmd.args(specs);
    let ours = deny_service_starts(host)?;
    let installed = host.run(cmd);
    if ours {
        host.files.remove(POLICY_RC_D)?;
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
fn deny_service_starts(host: &Host) -> Result<bool> {
    if host.live {
        return Ok(false);
    }
    if host.files.exists(POLICY_RC_D) || host.files.is_symlink(POLICY_RC_D) {
        let text = host
            .files
            .read(POLICY_RC_D)
            .ok()
            .flatten()
            .unwrap_or_default();
        return Ok(text.contains(POLICY_MARKER));
    }
    host.files.create_dir("/usr/sbin", 0o755)?;
    host.files.write_atomic(
        POLICY_RC_D,
        format!("#!/bin/sh\n# {POLICY_MARKER}: no service starts while packages are installed into an image\nexit 101\n").as_bytes(),
        0o755,
    )?;
    Ok(true)
}

/// A dpkg run killed half-way (a reboot or SIGKILL during a first boot)
/// leaves packages unpacked but not configured, and apt then refuses
/// every install until `dpkg --configure -a` has run: run it.
fn finish_interrupted_dpkg(host: &Host, step: &str) -> Result<()> {
    let pending_updates = !host.files.list("/var/lib/dpkg/updates")?.is_empty();
    let half_done = host
        .files
        .read("/var/lib/dpkg/status")?
        .is_some_and(|text| dpkg_status::interrupted(&text));
    if pending_updates || half_done {
        host.warn(
            step,
            "dpkg was interrupted earlier: running `dpkg --configure -a` to finish its work",
        );
        host.run(
            Cmd::new("dpkg")
                .args(["--configure", "-a"])
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    Ok(())
}

/// Says so when another process holds a dpkg lock; apt then waits for it.
fn wait_note(host: &Host, step: &str) {
    if let Some(holder) = dpkg_lock_holder(host) {
        host.warn(
            step,
            &format!(
                "waiting for the dpkg lock held by {holder} (up to {} minutes; unattended-upgrades often holds it on a first boot)",
                LOCK_TIMEOUT_SECS / 60
            ),
        );
    }
}

/// "process PID (name)" of the holder of a dpkg lock, if one is held.
fn dpkg_lock_holder(host: &Host) -> Option<String> {
    if !host.live {
        return None;
    }
    for lock in LOCKS {
        let Ok(file) = OpenOptions::new()
            .read(true)
            .write(true)
            .open(host.files.resolve(lock))
        else {
            continue;
        };
        let mut query = whole_file_write_lock();
        if fcntl(file.as_fd(), FcntlArg::F_GETLK(&mut query)).is_ok()
            && i32::from(query.l_type) != libc::F_UNLCK
        {
            let pid = query.l_pid;
            let name = host
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
