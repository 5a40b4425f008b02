//! runner-install: the `gitlab-runner` package and account.

use anyhow::Result;

use super::{Change, Mode, Settings, State, Step, StepId, require_tool};
use crate::host::Host;
use crate::host::command::Cmd;
use crate::host::packages::Source;
use crate::profile::Install;

const ID: StepId = StepId::RunnerInstall;

pub const PACKAGE: &str = "gitlab-runner";
pub const ACCOUNT: &str = "gitlab-runner";

pub struct RunnerInstall;

#[derive(Debug, thiserror::Error)]
#[error(
    "gitlab-runner is not installed and the profile says install = \"present\": install it first (your image or package), or set install = \"package-repo\""
)]
struct NotPresent;

fn repo(settings: &Settings) -> Source {
    Source {
        name: "gitlab-runner",
        repository: settings
            .profile
            .runner
            .repository
            .clone()
            .unwrap_or_default(),
    }
}

impl Step for RunnerInstall {
    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        if host.accounts.user(ACCOUNT)?.is_none() {
            require_tool(host, "useradd", "passwd")?;
        }
        let packages = host.packages()?;
        let installing = settings.profile.runner.install == Install::PackageRepo
            && !packages.installed(host, PACKAGE)?;
        if installing && host.live && mode != Mode::Verify {
            if let Err(e) = packages.probe_repository(host, &repo(settings)) {
                let e = e.context("runner-install could not install gitlab-runner; check [runner.repository] and the network");
                if mode != Mode::Apply {
                    host.warn(ID.as_str(), &format!("apply will fail: {e:#}"));
                    return Ok(());
                }
                return Err(e);
            }
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let mut changes = Vec::new();
        let packages = host.packages()?;
        if !packages.installed(host, PACKAGE)? {
            match settings.profile.runner.install {
                Install::Present if host.which("gitlab-runner").is_none() => {
                    return Err(NotPresent.into());
                }
                Install::Present => {}
                Install::PackageRepo => {
                    changes.extend(packages.repository_changes(host, &repo(settings))?);
                    changes.push(Change::new(format!("install package {PACKAGE}")));
                }
            }
        }
        if host.accounts.user(ACCOUNT)?.is_none() {
            changes.push(Change::new(format!(
                "create the {ACCOUNT} account (as GitLab's package does)"
            )));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let packages = host.packages()?;
        if settings.profile.runner.install == Install::PackageRepo
            && !packages.installed(host, PACKAGE)?
        {
            done.extend(packages.ensure_repository(host, ID.as_str(), &repo(settings))?);
            packages.install(host, ID.as_str(), &[PACKAGE])?;
            host.note(|r| {
                r.packages.insert(PACKAGE.to_string());
            });
            done.push(format!("installed package {PACKAGE}"));
        }
        if host.accounts.user(ACCOUNT)?.is_none() {
            // GitLab's package creates the account like this; an empty
            // skeleton matters: .bash_logout's `clear_console` breaks
            // shell-executor jobs.
            host.run(Cmd::new("useradd").args([
                "--system",
                "--comment",
                "GitLab Runner",
                "--shell",
                "/bin/bash",
                "--create-home",
                "--skel",
                "/dev/null",
                ACCOUNT,
            ]))?;
            host.note(|r| {
                r.accounts.insert(ACCOUNT.to_string());
            });
            done.push(format!("created the {ACCOUNT} account"));
        }
        Ok(done)
    }
}
