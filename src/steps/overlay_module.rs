//! overlay-module: the kernel modules Docker's storage driver needs, loaded
//! now and listed for every boot.

use anyhow::Result;

use super::{Change, Mode, Settings, State, Step, require_tool};
use crate::edit::{diff, modules};
use crate::host::Host;
use crate::host::command::Cmd;

pub struct OverlayModule;

/// Where a module is persisted: /etc/modules where the distribution has it,
/// else a modules-load.d drop-in named after the module.
fn persist_path(host: &Host, module: &str) -> String {
    if host.files.exists("/etc/modules") {
        "/etc/modules".to_string()
    } else {
        format!("/etc/modules-load.d/{module}.conf")
    }
}

/// Loaded, or built in: `initstate` is `live` for a loaded module; a
/// built-in filesystem has no `initstate` but is listed in /proc/filesystems
/// (and `modprobe` fails for it, so it must not be tried).
fn loaded(host: &Host, module: &str, filesystems: &str) -> Result<bool> {
    let live = host
        .files
        .read(&format!("/sys/module/{module}/initstate"))?
        .is_some_and(|s| s.trim() == "live");
    let listed = filesystems
        .lines()
        .any(|l| l.split_whitespace().last() == Some(module));
    Ok(live || listed)
}

fn filesystems(host: &Host) -> Result<String> {
    Ok(host.files.read("/proc/filesystems")?.unwrap_or_default())
}

impl Step for OverlayModule {
    fn preflight(&self, host: &Host, settings: &Settings, _mode: Mode) -> Result<()> {
        if !host.live {
            return Ok(());
        }
        let filesystems = filesystems(host)?;
        for module in &settings.profile.kernel.modules {
            if !loaded(host, module, &filesystems)? {
                return require_tool(host, "modprobe", "kmod");
            }
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let filesystems = if host.live {
            filesystems(host)?
        } else {
            String::new()
        };
        let mut changes = Vec::new();
        for module in &settings.profile.kernel.modules {
            if host.live && !loaded(host, module, &filesystems)? {
                changes.push(Change::new(format!(
                    "load kernel module {module} (modprobe {module})"
                )));
            }
            let path = persist_path(host, module);
            let current = host.files.read(&path)?.unwrap_or_default();
            let wanted = modules::ensure(&current, module);
            if wanted != current {
                changes.push(Change::file(
                    format!("list {module} in {path}"),
                    diff::unified(&path, &current, &wanted),
                ));
            }
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let filesystems = if host.live {
            filesystems(host)?
        } else {
            String::new()
        };
        let mut done = Vec::new();
        for module in &settings.profile.kernel.modules {
            if host.live && !loaded(host, module, &filesystems)? {
                host.run(Cmd::new("modprobe").arg(module.as_str()))?;
                done.push(format!("loaded kernel module {module}"));
            }
            let path = persist_path(host, module);
            let current = host.files.read(&path)?.unwrap_or_default();
            let wanted = modules::ensure(&current, module);
            if wanted != current {
                host.files.create_dir("/etc/modules-load.d", 0o755)?;
                host.files.write_atomic(&path, wanted.as_bytes(), 0o644)?;
                done.push(format!("listed {module} in {path}"));
            }
        }
        Ok(done)
    }
}
