//! docker-install: Docker Engine installed, enabled and running.

use std::time::Duration;

use anyhow::{Result, bail};

use super::packages::{self, Plan};
use super::{Change, Mode, Settings, State, Step, StepId, require_tool};
use crate::edit::os_release::OsRelease;
use crate::host::Host;
use crate::host::command::Cmd;
use crate::host::packages::{Package, Source};
use crate::profile::{DockerSource, Repository};

const ID: StepId = StepId::DockerInstall;

pub struct DockerInstall;

const PIDFILE: &str = "/run/docker.pid";

/// The packages that make up Docker Engine for a source.
pub fn docker_packages(source: DockerSource) -> &'static [&'static str] {
    match source {
        DockerSource::Distro => &["docker.io"],
        DockerSource::DockerCe => &["docker-ce", "docker-ce-cli", "containerd.io"],
    }
}

/// The packages to install on this host. From Debian 13 on, docker.io no
/// longer holds the `docker` client: it moved to docker-cli, only a
/// Recommends of docker.io, which `--no-install-recommends` leaves out.
fn packages_for(release: &OsRelease, source: DockerSource) -> Vec<&'static str> {
    let mut packages = docker_packages(source).to_vec();
    let debian_major = (release.id == "debian")
        .then(|| release.version_id.split('.').next()?.parse::<u32>().ok())
        .flatten();
    if source == DockerSource::Distro && debian_major.is_some_and(|v| v >= 13) {
        packages.push("docker-cli");
    }
    packages
}

/// The engine package of the other source: what a host set up by hand may
/// run instead of the profile's (the two conflict in apt).
fn other_engine(source: DockerSource) -> &'static str {
    match source {
        DockerSource::Distro => "docker-ce",
        DockerSource::DockerCe => "docker.io",
    }
}

/// The packages a `docker.version` pin applies to: the engine and its
/// client, built from one source at one version (containerd.io has
/// versions of its own and is left to apt).
fn pinned_by_version(package: &str) -> bool {
    matches!(
        package,
        "docker.io" | "docker-cli" | "docker-ce" | "docker-ce-cli"
    )
}

struct Found {
    /// The profile's packages, pinned where `docker.version` says so;
    /// empty when the other engine is kept.
    wanted: Vec<Package>,
    /// The other engine, installed and kept in place of the profile's.
    kept: Option<&'static str>,
    enabled: bool,
    running: bool,
}

fn probe(host: &Host, settings: &Settings) -> Result<Found> {
    let docker = &settings.profile.docker;
    let packages = host.packages()?;
    let mut missing = Vec::new();
    for package in packages_for(&host.os.release, docker.source) {
        if !packages.installed(host, package)? {
            missing.push(package);
        }
    }
    let mut kept = None;
    let other = other_engine(docker.source);
    let mut wanted: Vec<Package> = packages_for(&host.os.release, docker.source)
        .into_iter()
        .map(|name| {
            if docker.version.is_empty() || !pinned_by_version(name) {
                Package::any(name)
            } else {
                Package::exactly(name, &docker.version)
            }
        })
        .collect();
    if !missing.is_empty() && !docker.replace_engine && packages.installed(host, other)? {
        // Installing the profile's packages would make apt remove the
        // running engine: the one there is Docker Engine for this host.
        missing.clear();
        wanted.clear();
        kept = Some(other);
    }
    Ok(Found {
        wanted,
        kept,
        enabled: host.service_enabled("docker")?,
        running: host.live && host.pidfile_running(PIDFILE, "dockerd")?,
    })
}

/// What docker-install's packages need: the missing ones, a pinned version
/// to move to, holds.
fn package_plan(host: &Host, settings: &Settings, found: &Found) -> Result<Plan> {
    let sources = if settings.profile.docker.source == DockerSource::DockerCe {
        vec![repo_for(settings)]
    } else {
        Vec::new()
    };
    let mut plan = packages::plan(host, &found.wanted, sources, "docker.version")?;
    if settings.profile.docker.version.is_empty() {
        let names = packages_for(&host.os.release, settings.profile.docker.source);
        let names: Vec<&str> = names.into_iter().filter(|n| pinned_by_version(n)).collect();
        plan.release = packages::own_holds(host, &names)?;
    }
    Ok(plan)
}

/// Docker's repository: the profile's `[docker.repository]`, or Docker's own.
fn repo_for(settings: &Settings) -> Source {
    Source {
        name: "docker",
        repository: settings
            .profile
            .docker
            .repository
            .clone()
            .unwrap_or_else(Repository::docker),
    }
}

impl Step for DockerInstall {
    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        match (host.live, host.os.systemd) {
            (true, true) | (false, _) => require_tool(host, "systemctl", "systemd")?,
            (true, false) => require_tool(host, "service", "init-system-helpers")?,
        }
        let from_docker = settings.profile.docker.source == DockerSource::DockerCe;
        if from_docker && host.live && mode != Mode::Verify && {
            let found = probe(host, settings)?;
            package_plan(host, settings, &found)?.installs()
        } {
            if let Err(e) = host.packages()?.probe_repository(host, &repo_for(settings)) {
                if mode == Mode::Plan {
                    host.warn(ID.as_str(), &format!("apply will fail: {e:#}"));
                    return Ok(());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    /// As `check`, with a note when the host's other engine is kept.
    fn plan_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let found = probe(host, settings)?;
        if let Some(kept) = found.kept {
            let wanted = docker_packages(settings.profile.docker.source).join(" ");
            host.warn(
                ID.as_str(),
                &format!(
                    "{kept} is installed: it is kept as Docker Engine instead of the profile's {wanted} (installing those would make apt remove it); set [docker] replace_engine = true to replace it"
                ),
            );
            if !settings.profile.docker.version.is_empty() {
                host.warn(
                    ID.as_str(),
                    &format!(
                        "docker.version {} is not applied: it pins the profile's engine, and {kept} is kept instead",
                        settings.profile.docker.version
                    ),
                );
            }
        }
        if settings.profile.docker.version.is_empty() {
            let names = packages_for(&host.os.release, settings.profile.docker.source);
            let names: Vec<&str> = names.into_iter().filter(|n| pinned_by_version(n)).collect();
            packages::warn_unpinned_holds(host, ID, &names, "docker.version")?;
        }
        self.check(host, settings)
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let found = probe(host, settings)?;
        let mut changes = package_plan(host, settings, &found)?.changes(host)?;
        if !found.enabled {
            changes.push(Change::new("enable the docker service at boot"));
        }
        if host.live && !found.running {
            changes.push(Change::new("start the docker service"));
        }
        Ok(State::from_changes(changes))
    }

    fn package_plan(&self, host: &Host, settings: &Settings) -> Result<Option<Plan>> {
        let found = probe(host, settings)?;
        let plan = package_plan(host, settings, &found)?;
        Ok(plan.installs().then_some(plan))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let found = probe(host, settings)?;
        let mut done = packages::apply(host, ID, &package_plan(host, settings, &found)?)?;
        // The package's scripts may have enabled and started it already.
        let found = probe(host, settings)?;
        if !found.enabled {
            host.service_enable("docker")?;
            done.push("enabled the docker service".to_string());
        }
        if host.live && !found.running {
            host.progress("starting docker");
            host.service("docker", "start")?;
            wait_for_pidfile(
                host,
                Duration::from_secs(settings.profile.docker.verify_timeout),
            )?;
            done.push("started the docker service".to_string());
        }
        Ok(done)
    }
}

/// `service docker start` can return before dockerd writes its pid file.
fn wait_for_pidfile(host: &Host, limit: Duration) -> Result<()> {
    let deadline = host.now() + limit;
    while host.now() < deadline {
        if host.pidfile_running(PIDFILE, "dockerd")? {
            return Ok(());
        }
        host.sleep(Duration::from_millis(200));
    }
    bail!(
        "docker was started but dockerd is not running {} s later; its last words:\n{}",
        limit.as_secs(),
        last_log_lines(host)
    )
}

/// The end of dockerd's log: the journal under systemd, else the SysV log.
fn last_log_lines(host: &Host) -> String {
    let lines = if host.os.systemd {
        host.probe(Cmd::new("journalctl").args([
            "--unit",
            "docker",
            "--lines",
            "8",
            "--no-pager",
            "--output",
            "cat",
        ]))
        .map(|out| out.stdout)
        .unwrap_or_default()
    } else {
        let log = host
            .files
            .read("/var/log/docker.log")
            .ok()
            .flatten()
            .unwrap_or_default();
        let all: Vec<&str> = log.lines().collect();
        all[all.len().saturating_sub(8)..].join("\n")
    };
    if lines.trim().is_empty() {
        "(nothing logged; see `journalctl -u docker` or /var/log/docker.log)".to_string()
    } else {
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::edit::os_release;

    fn release(id: &str, version: &str) -> OsRelease {
        os_release::parse(&format!("ID={id}\nVERSION_ID=\"{version}\"\n"))
    }

    #[test]
    fn debian_13_gets_the_client_package_too() {
        let distro = DockerSource::Distro;
        assert_eq!(
            packages_for(&release("debian", "11"), distro),
            ["docker.io"]
        );
        assert_eq!(
            packages_for(&release("debian", "12"), distro),
            ["docker.io"]
        );
        assert_eq!(
            packages_for(&release("debian", "13"), distro),
            ["docker.io", "docker-cli"]
        );
        assert_eq!(
            packages_for(&release("ubuntu", "24.04"), distro),
            ["docker.io"]
        );
        assert_eq!(
            packages_for(&release("debian", "13"), DockerSource::DockerCe),
            ["docker-ce", "docker-ce-cli", "containerd.io"]
        );
    }
}
