//! docker-install: Docker Engine installed, enabled and running.

use std::time::{Duration, Instant};

use anyhow::{Result, bail};

use super::apt_repo::AptRepo;
use super::{Change, Mode, Settings, State, Step, require_tool};
use crate::host::Host;
use crate::profile::{DockerSource, Repository};

pub struct DockerInstall;

const PIDFILE: &str = "/run/docker.pid";

/// The packages that make up Docker Engine for a source.
pub fn docker_packages(source: DockerSource) -> &'static [&'static str] {
    match source {
        DockerSource::Distro => &["docker.io"],
        DockerSource::DockerCe => &["docker-ce", "docker-ce-cli", "containerd.io"],
    }
}

/// Docker's own repository, as docs.docker.com sets it up.
fn docker_ce_repo() -> AptRepo {
    AptRepo {
        name: "docker",
        repository: Repository {
            uri: "https://download.docker.com/linux/{id}".to_string(),
            suite: "{codename}".to_string(),
            components: "stable".to_string(),
            key_url: "https://download.docker.com/linux/{id}/gpg".to_string(),
        },
    }
}

struct Found {
    missing: Vec<&'static str>,
    enabled: bool,
    running: bool,
}

fn probe(host: &Host, settings: &Settings) -> Result<Found> {
    let mut missing = Vec::new();
    for package in docker_packages(settings.profile.docker.source) {
        if !host.package_installed(package)? {
            missing.push(*package);
        }
    }
    Ok(Found {
        missing,
        enabled: host.service_enabled("docker")?,
        running: host.live && host.pidfile_running(PIDFILE, "dockerd")?,
    })
}

fn repo_for(host: &Host) -> AptRepo {
    let mut repo = docker_ce_repo();
    repo.repository.key_url = repo.repository.key_url.replace("{id}", &host.os.release.id);
    repo
}

impl Step for DockerInstall {
    fn id(&self) -> &'static str {
        "docker-install"
    }

    fn preflight(&self, host: &Host, _settings: &Settings, _mode: Mode) -> Result<()> {
        match (host.live, host.os.systemd) {
            (true, true) | (false, _) => require_tool(host, "systemctl", "systemd"),
            (true, false) => require_tool(host, "service", "init-system-helpers"),
        }
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let found = probe(host, settings)?;
        let mut changes = Vec::new();
        if !found.missing.is_empty() {
            if settings.profile.docker.source == DockerSource::DockerCe {
                changes.extend(repo_for(host).changes(host)?);
            }
            changes.push(Change::new(format!("install {}", found.missing.join(" "))));
        }
        if !found.enabled {
            changes.push(Change::new("enable the docker service at boot"));
        }
        if host.live && !found.running {
            changes.push(Change::new("start the docker service"));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let found = probe(host, settings)?;
        if !found.missing.is_empty() {
            let source = if settings.profile.docker.source == DockerSource::DockerCe {
                let repo = repo_for(host);
                done.extend(repo.apply(host)?);
                Some(repo.sources_path())
            } else {
                None
            };
            host.apt_refresh(self.id(), source.as_deref())?;
            host.apt_install(self.id(), &found.missing)?;
            done.push(format!("installed {}", found.missing.join(" ")));
        }
        // The package's scripts may have enabled and started it already.
        let found = probe(host, settings)?;
        if !found.enabled {
            host.service_enable("docker")?;
            done.push("enabled the docker service".to_string());
        }
        if host.live && !found.running {
            host.progress("starting docker");
            host.service("docker", "start")?;
            wait_for_pidfile(host)?;
            done.push("started the docker service".to_string());
        }
        Ok(done)
    }
}

/// `service docker start` can return before dockerd writes its pid file.
fn wait_for_pidfile(host: &Host) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if host.pidfile_running(PIDFILE, "dockerd")? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!(
        "docker was started but dockerd is not running 30 s later: see `journalctl -u docker` or /var/log/docker.log"
    )
}
