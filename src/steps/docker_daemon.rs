//! docker-daemon: the profile's `[docker.daemon]` keys in daemon.json.
//!
//! Each key the profile sets is written whole, replacing the file's value;
//! every key it does not set stays as it is. `[docker.daemon_defaults]`
//! (the default profile's bounded json-file logs) is written only where
//! neither the file nor `[docker.daemon]` sets any of its keys, so a log
//! setup chosen by hand is never replaced by mere defaults. A key that
//! docker.service already passes to dockerd as a flag is refused before
//! any change (dockerd would not start). Docker restarts to read the file;
//! if dockerd does not come back, the file is rolled back (`daemon_file`).

use anyhow::Result;
use serde_json::{Map, Value};

use super::{Change, DAEMON_JSON, Mode, Settings, State, Step, StepId, daemon_file};
use crate::edit::{daemon_json, diff, docker_unit};
use crate::host::Host;

pub struct DockerDaemon;

const ID: StepId = StepId::DockerDaemon;

fn malformed(e: impl std::fmt::Display) -> crate::Error {
    crate::Error::MalformedFile {
        path: DAEMON_JSON.into(),
        message: e.to_string(),
    }
}

/// The keys to write, with the table each comes from: `[docker.daemon]`'s,
/// and the defaults' when neither `file` (daemon.json's keys) nor the
/// profile's own keys set any of theirs.
fn wanted_keys(
    file: &Map<String, Value>,
    daemon: &Map<String, Value>,
    defaults: &Map<String, Value>,
) -> Vec<(&'static str, String, Value)> {
    let mut keys: Vec<(&'static str, String, Value)> = daemon
        .iter()
        .map(|(k, v)| ("[docker.daemon]", k.clone(), v.clone()))
        .collect();
    let taken = defaults
        .keys()
        .any(|k| file.contains_key(k) || daemon.contains_key(k));
    if !taken {
        keys.extend(
            defaults
                .iter()
                .map(|(k, v)| ("[docker.daemon_defaults]", k.clone(), v.clone())),
        );
    }
    keys
}

/// daemon.json as it is (`None`: no file) and as it should be, and the
/// keys that change.
struct Wanted {
    before: Option<Vec<u8>>,
    current: String,
    new: String,
    changed: Vec<String>,
    keys: Vec<(&'static str, String, Value)>,
}

fn wanted(host: &Host, settings: &Settings) -> Result<Wanted> {
    let before = host.files.read_bytes(DAEMON_JSON)?;
    let current = host.files.read(DAEMON_JSON)?.unwrap_or_default();
    let file = daemon_json::settings(&current).map_err(malformed)?;
    let docker = &settings.profile.docker;
    let keys = wanted_keys(&file, &docker.daemon.0, &docker.daemon_defaults.0);
    let set: Map<String, Value> = keys
        .iter()
        .map(|(_, k, v)| (k.clone(), v.clone()))
        .collect();
    let new = daemon_json::merge(&current, &set).map_err(malformed)?;
    let changed = daemon_json::differing(&current, &set).map_err(malformed)?;
    Ok(Wanted {
        before,
        current,
        new,
        changed,
        keys,
    })
}

/// Where docker.service is defined, in the order systemd reads them: the
/// unit file (the first found) and its drop-ins by name (a name in an
/// earlier folder hides the same name in a later one).
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];

/// The flags docker.service starts dockerd with, and the file that says
/// so. Without a unit (Docker not installed yet) it is the packaged one:
/// Debian's docker.io and Docker's docker-ce both start `dockerd -H fd://`.
fn unit_command_line(host: &Host) -> Result<(String, String)> {
    let mut texts = Vec::new();
    let mut unit = None;
    for dir in UNIT_DIRS {
        let path = format!("{dir}/docker.service");
        if let Some(text) = host.files.read(&path)? {
            texts.push(text);
            unit = Some(path);
            break;
        }
    }
    let Some(unit) = unit else {
        return Ok((
            "dockerd -H fd://".to_string(),
            "as the docker.io and docker-ce packages ship docker.service".to_string(),
        ));
    };
    let mut drop_ins = std::collections::BTreeMap::new();
    for dir in UNIT_DIRS {
        let folder = format!("{dir}/docker.service.d");
        for name in host.files.list(&folder)? {
            if name.ends_with(".conf") && !drop_ins.contains_key(&name) {
                let path = format!("{folder}/{name}");
                drop_ins.insert(name, host.files.read(&path)?.unwrap_or_default());
            }
        }
    }
    texts.extend(drop_ins.into_values());
    let opts = host
        .files
        .read("/etc/default/docker")?
        .and_then(|text| docker_unit::env_value(&text, "DOCKER_OPTS"))
        .unwrap_or_default();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let line = docker_unit::exec_start(&refs, &opts).unwrap_or_default();
    Ok((line, format!("ExecStart of {unit} and its drop-ins")))
}

impl Step for DockerDaemon {
    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        let wanted = wanted(host, settings)?;
        if wanted.keys.is_empty() {
            return Ok(());
        }
        // Credentials in a mirror's URL stay out of every output.
        for (_, _, value) in &wanted.keys {
            redact_userinfo(host, value);
        }
        if wanted.current != wanted.new {
            host.files.check_writable(DAEMON_JSON)?;
        }
        if host.live && !host.os.systemd {
            return Ok(());
        }
        let (line, unit) = unit_command_line(host)?;
        let flags = docker_unit::flag_keys(&line);
        for (table, key, _) in &wanted.keys {
            let Some((_, flag)) = flags.iter().find(|(k, _)| k == key) else {
                continue;
            };
            let refusal = crate::Error::DaemonFlagConflict {
                table,
                key: key.clone(),
                flag: flag.clone(),
                unit: unit.clone(),
            };
            if mode == Mode::Apply {
                return Err(refusal.into());
            }
            host.warn(ID.as_str(), &format!("apply will refuse: {refusal}"));
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let wanted = wanted(host, settings)?;
        if wanted.current == wanted.new {
            return Ok(State::Done);
        }
        Ok(State::Pending(vec![Change::file(
            format!(
                "set {} in {DAEMON_JSON} (docker restarts if running)",
                wanted.changed.join(", ")
            ),
            diff::unified(DAEMON_JSON, &wanted.current, &wanted.new),
        )]))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let wanted = wanted(host, settings)?;
        let mut done = Vec::new();
        if wanted.current == wanted.new {
            return Ok(done);
        }
        daemon_file::write_and_restart(host, ID, wanted.before.as_deref(), &wanted.new, &mut done)?;
        done.insert(
            0,
            format!("set {} in {DAEMON_JSON}", wanted.changed.join(", ")),
        );
        Ok(done)
    }
}

/// Adds the `user:password` of every URL in `value` to the redactor.
fn redact_userinfo(host: &Host, value: &Value) {
    match value {
        Value::String(text) => {
            if let Some((_, rest)) = text.split_once("://") {
                let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
                if let Some((userinfo, _)) = authority.rsplit_once('@') {
                    host.redactor().add(userinfo);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| redact_userinfo(host, v)),
        Value::Object(map) => map.values().for_each(|v| redact_userinfo(host, v)),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn map(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("an object"),
        }
    }

    #[test]
    fn defaults_only_where_nothing_sets_their_keys() {
        let defaults = map(json!({"log-driver": "json-file", "log-opts": {"max-size": "10m"}}));
        let keys = |file: Value, daemon: Value| -> Vec<String> {
            wanted_keys(&map(file), &map(daemon), &defaults)
                .into_iter()
                .map(|(table, key, _)| format!("{table} {key}"))
                .collect()
        };
        assert_eq!(
            keys(json!({"debug": true}), json!({})),
            [
                "[docker.daemon_defaults] log-driver",
                "[docker.daemon_defaults] log-opts"
            ]
        );
        // A log driver chosen by hand: no log-opts meant for json-file beside it.
        assert!(keys(json!({"log-driver": "journald"}), json!({})).is_empty());
        assert!(keys(json!({"log-opts": {"max-size": "1g"}}), json!({})).is_empty());
        // The profile's own log settings win, whole.
        assert_eq!(
            keys(json!({}), json!({"log-driver": "local"})),
            ["[docker.daemon] log-driver"]
        );
        assert_eq!(
            keys(json!({}), json!({"registry-mirrors": []})),
            [
                "[docker.daemon] registry-mirrors",
                "[docker.daemon_defaults] log-driver",
                "[docker.daemon_defaults] log-opts"
            ]
        );
    }
}
