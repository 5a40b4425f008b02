//! docker-group: the runner account in group `docker`, and a runner service
//! that runs as that account restarted so that its jobs get the group.

use std::time::Duration;

use anyhow::{Result, bail};

use super::{Change, Mode, Settings, State, Step, StepId, require_tool};
use crate::host::Host;
use crate::host::command::Cmd;

const ID: StepId = StepId::DockerGroup;

pub struct DockerGroup;

const GROUP: &str = "docker";
const SERVICE: &str = "gitlab-runner";

pub const RISK: &str = "membership in group docker is root-equivalent: any job can start a container that mounts / and become root on this host. Give it only to runner accounts on hosts dedicated to CI; rootless Docker, Podman or a docker:dind service with the docker executor avoid it";

/// Members of the profile that are not in group docker yet.
fn missing_members(host: &Host, settings: &Settings) -> Result<Vec<String>> {
    let members = host
        .accounts
        .group(GROUP)?
        .map(|g| g.members)
        .unwrap_or_default();
    Ok(settings
        .profile
        .docker
        .group_members
        .iter()
        .filter(|m| !members.contains(m))
        .cloned()
        .collect())
}

/// Runner processes that run as a member themselves (systemd `User=`, GitLab's
/// `--init-user`) but were started before it joined the group: their jobs
/// keep the old groups until the service restarts.
fn stale_services(host: &Host, settings: &Settings) -> Result<Vec<u32>> {
    if !host.live {
        return Ok(Vec::new());
    }
    let Some(group) = host.accounts.group(GROUP)? else {
        return Ok(Vec::new());
    };
    let mut uids = Vec::new();
    for member in &settings.profile.docker.group_members {
        if let Some(user) = host.accounts.user(member)? {
            uids.push(user.uid);
        }
    }
    Ok(host
        .processes(SERVICE)?
        .into_iter()
        .filter(|p| uids.contains(&p.uid) && !p.groups.contains(&group.gid))
        .map(|p| p.pid)
        .collect())
}

impl Step for DockerGroup {
    fn needs(&self) -> &'static [StepId] {
        &[StepId::RunnerInstall, StepId::DockerInstall]
    }

    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        let missing = missing_members(host, settings)?;
        if missing.is_empty() {
            return Ok(());
        }
        require_tool(host, "usermod", "passwd")?;
        if settings.profile.docker.accept_group_risk {
            return Ok(());
        }
        let refusal = crate::Error::DockerGroupRiskNotAccepted {
            members: missing.join(", "),
        };
        if mode == Mode::Plan {
            host.warn(ID.as_str(), &format!("apply will refuse: {refusal}"));
            return Ok(());
        }
        Err(refusal.into())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let mut changes: Vec<Change> = missing_members(host, settings)?
            .into_iter()
            .map(|m| Change::new(format!("add {m} to group {GROUP}")))
            .collect();
        let stale = stale_services(host, settings)?;
        if !stale.is_empty() {
            changes.push(Change::new(format!(
                "restart {SERVICE}: it runs as the runner account and was started before that joined group {GROUP} (pid {})",
                stale.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
            )));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let missing = missing_members(host, settings)?;
        if !missing.is_empty() {
            if host.accounts.group(GROUP)?.is_none() {
                bail!(
                    "group {GROUP} does not exist: Docker's package creates it; run the docker-install step first"
                );
            }
            host.warn(ID.as_str(), RISK);
        }
        for member in &missing {
            if host.accounts.user(member)?.is_none() {
                bail!(
                    "user {member} does not exist: run the runner-install step first, or fix [docker] group_members"
                );
            }
            host.run(Cmd::new("usermod").args(["--append", "--groups", GROUP, member]))?;
            host.note(|r| {
                r.memberships.insert(crate::receipt::Membership {
                    user: member.to_string(),
                    group: GROUP.to_string(),
                });
            });
            done.push(format!("added {member} to group {GROUP}"));
        }
        if !stale_services(host, settings)?.is_empty() {
            let timeout = Duration::from_secs(settings.profile.runner.shutdown_timeout);
            let why = format!("so that its jobs get group {GROUP}");
            if let Some(restarted) = host.restart_runner_gracefully(ID.as_str(), timeout, &why)? {
                done.push(restarted);
            }
        }
        Ok(done)
    }
}
