//! Files the tool owns outright, as shutdown-unregister and prune-schedule
//! keep them: systemd units and their kin whose first line is the tool's
//! marker (a file without it is someone else's and never touched), written
//! when they differ from what the profile wants and removed when it wants
//! none; and the state of such a unit (enabled through its `.wants` link,
//! active as systemd says).

use anyhow::Result;

use super::Change;
use crate::edit::diff;
use crate::edit::shutdown_unit::MARKER;
use crate::host::Host;
use crate::host::command::Cmd;

/// A file and what it should hold (`None`: it should not exist).
pub(super) type Wanted = (&'static str, Option<String>);

/// The file's text when it is the tool's.
pub(super) fn ours(host: &Host, path: &str) -> Result<Option<String>> {
    Ok(host
        .files
        .read(path)?
        .filter(|text| text.lines().next().is_some_and(|l| l.starts_with(MARKER))))
}

/// What bringing each file to its wanted text changes, with its diff.
pub(super) fn pending(host: &Host, wanted: &[Wanted]) -> Result<Vec<Change>> {
    let mut changes = Vec::new();
    for (path, want) in wanted {
        let current = ours(host, path)?;
        match (&current, want) {
            (Some(now), Some(want)) if now == want => {}
            (_, Some(want)) => changes.push(Change::file(
                format!("write {path}"),
                diff::unified(path, current.as_deref().unwrap_or(""), want),
            )),
            (Some(now), None) => changes.push(Change::file(
                format!("remove {path}"),
                diff::unified(path, now, ""),
            )),
            (None, None) => {}
        }
    }
    Ok(changes)
}

/// Writes each file whose text differs and removes each of the tool's
/// files that should not exist, saying so in `done`; true when a file
/// systemd reads (under /etc/systemd) changed, so it must reload.
pub(super) fn write(host: &Host, wanted: &[Wanted], done: &mut Vec<String>) -> Result<bool> {
    let mut units_changed = false;
    for (path, want) in wanted {
        let current = ours(host, path)?;
        match want {
            Some(want) if current.as_deref() != Some(want.as_str()) => {
                let dir = path.rsplit_once('/').map_or("/", |(d, _)| d);
                host.files.create_dir(dir, 0o755)?;
                host.files.write_atomic(path, want.as_bytes(), 0o644)?;
                done.push(format!("wrote {path}"));
            }
            None if current.is_some() => {
                host.files.remove(path)?;
                done.push(format!("removed {path}"));
            }
            _ => continue,
        }
        units_changed |= path.starts_with("/etc/systemd/");
    }
    Ok(units_changed)
}

/// Is the unit enabled: its link in a `.wants` folder is there (a link
/// to a file not there yet counts: enabled in an image before its unit
/// file).
pub(super) fn enabled(host: &Host, wants: &str) -> bool {
    host.files.is_symlink(wants) || host.files.exists(wants)
}

/// Is the unit active? Never where systemd does not run (`os.systemd` is
/// false on an offline root too).
pub(super) fn active(host: &Host, unit: &str) -> Result<bool> {
    if !host.os.systemd {
        return Ok(false);
    }
    Ok(host
        .probe(Cmd::new("systemctl").args(["is-active", "--quiet", unit]))?
        .code
        == Some(0))
}
