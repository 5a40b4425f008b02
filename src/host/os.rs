//! Facts about the operating system: os-release, kernel and init system.

use anyhow::Result;

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
        let kernel = if live {
            Some(
                sysinfo::System::kernel_version()
                    .map_err(|e| anyhow::anyhow!("reading the kernel version: {e}"))?,
            )
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
