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

/// One thing left to do for a module; `check` describes it, `apply` does it.
enum Work<'a> {
    /// Load it now (live hosts only).
    Load(&'a str),
    /// List it for every boot in `path`.
    List {
        module: &'a str,
        path: String,
        current: String,
        wanted: String,
    },
}

/// What is left to do for the profile's modules, in order.
fn work<'a>(host: &Host, settings: &'a Settings) -> Result<Vec<Work<'a>>> {
    let filesystems = if host.live {
        filesystems(host)?
    } else {
        String::new()
    };
    let mut work = Vec::new();
    // Modules listed in the same file: each builds on the text before it.
    let mut written: Vec<(String, String)> = Vec::new();
    for module in &settings.profile.kernel.modules {
        if host.live && !loaded(host, module, &filesystems)? {
            work.push(Work::Load(module));
        }
        let path = persist_path(host, module);
        let current = match written.iter().find(|(p, _)| *p == path) {
            Some((_, text)) => text.clone(),
            None => host.files.read(&path)?.unwrap_or_default(),
        };
        let wanted = modules::ensure(&current, module);
        if wanted != current {
            written.retain(|(p, _)| *p != path);
            written.push((path.clone(), wanted.clone()));
            work.push(Work::List {
                module,
                path,
                current,
                wanted,
            });
        }
    }
    Ok(work)
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
        let changes = work(host, settings)?
            .into_iter()
            .map(|item| match item {
                Work::Load(module) => {
                    Change::new(format!("load kernel module {module} (modprobe {module})"))
                }
                Work::List {
                    module,
                    path,
                    current,
                    wanted,
                } => Change::file(
                    format!("list {module} in {path}"),
                    diff::unified(&path, &current, &wanted),
                ),
            })
            .collect();
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let mut done = Vec::new();
        for item in work(host, settings)? {
            match item {
                Work::Load(module) => {
                    host.run(Cmd::new("modprobe").arg(module))?;
                    done.push(format!("loaded kernel module {module}"));
                }
                Work::List {
                    module,
                    path,
                    wanted,
                    ..
                } => {
                    host.files.create_dir("/etc/modules-load.d", 0o755)?;
                    host.files.write_atomic(&path, wanted.as_bytes(), 0o644)?;
                    host.note(|r| {
                        r.module_lines.insert(crate::receipt::ModuleLine {
                            file: path.clone(),
                            module: module.to_string(),
                        });
                    });
                    done.push(format!("listed {module} in {path}"));
                }
            }
        }
        Ok(done)
    }
}
