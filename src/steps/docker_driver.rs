//! docker-driver: the storage driver set where it takes effect.
//!
//! `DOCKER_DRIVER` in each runner's `environment` reaches jobs that start
//! their own daemon (docker:dind); a shell executor talks to the host's
//! daemon, whose driver only daemon.json sets. Both are written.
//!
//! A different driver the operator already set (in daemon.json, by its
//! `storage-opts`, or as a runner's `DOCKER_DRIVER`) is never switched
//! silently: apply refuses before any change unless
//! `replace_storage_driver` accepts it, and then removes the old driver's
//! `storage-opts` and says that its images are hidden.

use anyhow::Result;

use super::{CONFIG_TOML, Change, DAEMON_JSON, Mode, Settings, State, Step, StepId, daemon_file};
use crate::edit::{daemon_json, diff, runner_config};
use crate::host::Host;

pub struct DockerDriver;

/// The two files as they are and as they should be, and what the switch
/// would replace.
struct Wanted {
    config: Option<(String, String)>,
    daemon: (String, String),
    /// Where another driver is set, and which (`daemon.json`, runner NAME).
    others: Vec<(String, String)>,
    /// The driver daemon.json had, when it is another one.
    daemon_was: Option<String>,
    /// storage-opts removed with it.
    dropped_opts: Vec<String>,
}

fn malformed(path: &str, e: impl std::fmt::Display) -> crate::Error {
    crate::Error::MalformedFile {
        path: path.into(),
        message: e.to_string(),
    }
}

fn wanted(host: &Host, settings: &Settings) -> Result<Wanted> {
    let driver = &settings.profile.docker.storage_driver;
    let mut others = Vec::new();
    let config = match host.files.read(CONFIG_TOML)? {
        Some(text) => {
            for runner in runner_config::runners(&text).map_err(|e| malformed(CONFIG_TOML, e))? {
                if let Some(found) = runner_config::env_value(&runner, "DOCKER_DRIVER") {
                    if found != driver {
                        others.push((
                            format!("runner {}'s environment in {CONFIG_TOML}", runner.name),
                            found.to_string(),
                        ));
                    }
                }
            }
            let new = runner_config::set_env(&text, "DOCKER_DRIVER", driver)
                .map_err(|e| malformed(CONFIG_TOML, e))?;
            Some((text, new))
        }
        None => None,
    };
    let current = host.files.read(DAEMON_JSON)?.unwrap_or_default();
    let daemon_was = daemon_json::configured_driver(&current)
        .map_err(|e| malformed(DAEMON_JSON, e))?
        .filter(|found| found != driver);
    if let Some(found) = &daemon_was {
        others.insert(0, (DAEMON_JSON.to_string(), found.clone()));
    }
    let (new, dropped_opts) =
        daemon_json::set_storage_driver(&current, driver).map_err(|e| malformed(DAEMON_JSON, e))?;
    Ok(Wanted {
        config,
        daemon: (current, new),
        others,
        daemon_was,
        dropped_opts,
    })
}

/// What switching away from `old` means for the operator.
fn hidden(old: &str) -> String {
    format!(
        "images and containers Docker kept for {old} are hidden (they stay under /var/lib/docker/{old}; set the driver back to see them)"
    )
}

impl Step for DockerDriver {
    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        let wanted = wanted(host, settings)?;
        if wanted.daemon.0 != wanted.daemon.1 {
            host.files.check_writable(DAEMON_JSON)?;
        }
        let docker = &settings.profile.docker;
        if docker.replace_storage_driver {
            return Ok(());
        }
        if let Some((place, found)) = wanted.others.into_iter().next() {
            let refusal = crate::Error::OtherStorageDriver {
                place,
                found,
                wanted: docker.storage_driver.clone(),
            };
            if mode == Mode::Apply {
                return Err(refusal.into());
            }
            host.warn(
                StepId::DockerDriver.as_str(),
                &format!("apply will refuse: {refusal}"),
            );
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let wanted = wanted(host, settings)?;
        let driver = &settings.profile.docker.storage_driver;
        let mut changes = Vec::new();
        if let Some((old, new)) = &wanted.config {
            if old != new {
                changes.push(Change::file(
                    format!("set DOCKER_DRIVER={driver} for every runner in {CONFIG_TOML}"),
                    diff::unified(CONFIG_TOML, old, new),
                ));
            }
        }
        let (old, new) = &wanted.daemon;
        if old != new {
            let mut summary = format!(
                "set \"storage-driver\": \"{driver}\" in {DAEMON_JSON} (docker restarts if running)"
            );
            if let Some(was) = &wanted.daemon_was {
                summary.push_str(&format!("; replaces {was}: {}", hidden(was)));
            }
            if !wanted.dropped_opts.is_empty() {
                summary.push_str(&format!(
                    "; removes storage-opts {}",
                    wanted.dropped_opts.join(", ")
                ));
            }
            changes.push(Change::file(summary, diff::unified(DAEMON_JSON, old, new)));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let wanted = wanted(host, settings)?;
        let driver = &settings.profile.docker.storage_driver;
        let mut done = Vec::new();
        if let Some((old, new)) = &wanted.config {
            if old != new {
                host.files
                    .write_atomic(CONFIG_TOML, new.as_bytes(), 0o600)?;
                done.push(format!("set DOCKER_DRIVER={driver} in {CONFIG_TOML}"));
            }
        }
        let (old, new) = &wanted.daemon;
        if old != new {
            let before = host.files.read_bytes(DAEMON_JSON)?;
            let mut restarted = Vec::new();
            daemon_file::write_and_restart(
                host,
                StepId::DockerDriver,
                before.as_deref(),
                new,
                &mut restarted,
            )?;
            done.push(format!("set storage-driver {driver} in {DAEMON_JSON}"));
            if let Some(was) = &wanted.daemon_was {
                let note = format!(
                    "switched the storage driver from {was} to {driver}: {}",
                    hidden(was)
                );
                host.warn(StepId::DockerDriver.as_str(), &note);
                done.push(note);
            }
            if !wanted.dropped_opts.is_empty() {
                done.push(format!(
                    "removed storage-opts meant for another driver: {}",
                    wanted.dropped_opts.join(", ")
                ));
            }
            done.extend(restarted);
        }
        Ok(done)
    }
}
