//! Facts about the operating system: os-release, kernel and init system.

use anyhow::{Context, Result};

use super::files::Files;
use crate::edit::os_release::{self, OsRelease};

#[derive(Clone, Debug)]
pub struct OsFacts {
    pub release: OsRelease,
    /// The running kernel's release string; `None` on an offline root, whose
    /// kernel is not the one running.
    pub kernel: Option<String>,
    /// systemd is PID 1 (`/run/systemd/system` exists, as sd_booted() checks).
    pub systemd: bool,
}

impl OsFacts {
    pub fn detect(files: &Files, live: bool) -> Result<Self> {
        let text = match files.read("/etc/os-release")? {
            Some(text) => text,
            None => files.read("/usr/lib/os-release")?.unwrap_or_default(),
        };
        // What uname(2) reports as the release, read like any other file.
        let kernel = if live {
            let release = files
                .read("/proc/sys/kernel/osrelease")?
                .context("reading the kernel version: /proc/sys/kernel/osrelease is missing (is /proc mounted?)")?;
            Some(release.trim().to_string())
        } else {
            None
        };
        Ok(Self {
            release: os_release::parse(&text),
            kernel,
            systemd: live && files.is_dir("/run/systemd/system"),
        })
    }
}
