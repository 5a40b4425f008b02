//! docker-driver: the storage driver set where it takes effect.
//!
//! `DOCKER_DRIVER` in each runner's `environment` reaches jobs that start
//! their own daemon (docker:dind); a shell executor talks to the host's
//! daemon, whose driver only daemon.json sets. Both are written.

use anyhow::Result;
use serde_json::Value;

use super::{CONFIG_TOML, Change, DAEMON_JSON, Mode, Settings, State, Step};
use crate::edit::{daemon_json, diff, runner_config};
use crate::host::Host;

pub struct DockerDriver;

/// The two files as they are and as they should be.
struct Files {
    config: Option<(String, String)>,
    daemon: (String, String),
}

fn wanted(host: &Host, settings: &Settings) -> Result<Files> {
    let driver = &settings.profile.docker.storage_driver;
    let config = match host.files.read(CONFIG_TOML)? {
        Some(text) => {
            let new = runner_config::set_env(&text, "DOCKER_DRIVER", driver).map_err(|e| {
                crate::Error::MalformedFile {
                    path: CONFIG_TOML.into(),
                    message: e.to_string(),
                }
            })?;
            Some((text, new))
        }
        None => None,
    };
    let current = host.files.read(DAEMON_JSON)?.unwrap_or_default();
    let new = daemon_json::merge(&current, "storage-driver", &Value::String(driver.clone()))
        .map_err(|e| crate::Error::MalformedFile {
            path: DAEMON_JSON.into(),
            message: e.to_string(),
        })?;
    Ok(Files {
        config,
        daemon: (current, new),
    })
}

impl Step for DockerDriver {
    fn preflight(&self, host: &Host, settings: &Settings, _mode: Mode) -> Result<()> {
        wanted(host, settings).map(drop)
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let files = wanted(host, settings)?;
        let driver = &settings.profile.docker.storage_driver;
        let mut changes = Vec::new();
        if let Some((old, new)) = &files.config {
            if old != new {
                changes.push(Change::file(
                    format!("set DOCKER_DRIVER={driver} for every runner in {CONFIG_TOML}"),
                    diff::unified(CONFIG_TOML, old, new),
                ));
            }
        }
        let (old, new) = &files.daemon;
        if old != new {
            changes.push(Change::file(
                format!("set \"storage-driver\": \"{driver}\" in {DAEMON_JSON} (docker restarts if running)"),
                diff::unified(DAEMON_JSON, old, new),
            ));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let files = wanted(host, settings)?;
        let driver = &settings.profile.docker.storage_driver;
        let mut done = Vec::new();
        if let Some((old, new)) = &files.config {
            if old != new {
                host.files
                    .write_atomic(CONFIG_TOML, new.as_bytes(), 0o600)?;
                done.push(format!("set DOCKER_DRIVER={driver} in {CONFIG_TOML}"));
            }
        }
        let (old, new) = &files.daemon;
        if old != new {
            host.files.create_dir("/etc/docker", 0o755)?;
            host.files
                .write_atomic(DAEMON_JSON, new.as_bytes(), 0o644)?;
            done.push(format!("set storage-driver {driver} in {DAEMON_JSON}"));
            if host.live && host.pidfile_running("/run/docker.pid", "dockerd")? {
                host.progress("restarting docker");
                if let Err(e) = host.service("docker", "restart") {
                    let state = if host.pidfile_running("/run/docker.pid", "dockerd")? {
                        "docker is still running with its old settings"
                    } else {
                        "docker is stopped now; fix the cause, then run apply again (docker-install starts it)"
                    };
                    return Err(anyhow::Error::new(e).context(format!(
                        "restarting docker to apply {DAEMON_JSON} ({state})"
                    )));
                }
                done.push("restarted docker".to_string());
            }
        }
        Ok(done)
    }
}
