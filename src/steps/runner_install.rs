//! runner-install: the `gitlab-runner` package and account.

use anyhow::Result;

use super::packages::{self, Plan};
use super::{Change, Mode, Settings, State, Step, StepId, require_tool};
use crate::host::Host;
use crate::host::command::Cmd;
use crate::host::packages::{Package, Source};
use crate::profile::Install;

const ID: StepId = StepId::RunnerInstall;

pub const PACKAGE: &str = "gitlab-runner";
pub const ACCOUNT: &str = "gitlab-runner";
/// Since GitLab Runner 17.7 the helper images are their own package, and
/// gitlab-runner depends on exactly its own version of it: a pinned older
/// runner installed alone makes apt pick the newest helper package and
/// give up ("held broken packages").
pub const HELPER_IMAGES: &str = "gitlab-runner-helper-images";

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

/// The apt version of a `runner.version` pin: GitLab's repository calls
/// release 17.5.0 `17.5.0-1`; a version that already has its Debian
/// revision (`17.9.0~pre.88.g5835694a-1`) is taken as it is.
pub fn apt_version(pin: &str) -> String {
    if pin.contains('-') {
        pin.to_string()
    } else {
        format!("{pin}-1")
    }
}

/// Whether a release has the separate helper-images package (17.7 and later).
fn has_helper_images(pin: &str) -> bool {
    let upstream = pin.split_once(':').map_or(pin, |(_, rest)| rest);
    let mut parts = upstream.split(|c: char| !c.is_ascii_digit());
    let major: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u64 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (17, 7)
}

/// The packages runner-install wants: gitlab-runner, or with a pin exactly
/// that version and (from 17.7) its helper images at the same version.
pub fn wanted(settings: &Settings) -> Vec<Package> {
    let pin = &settings.profile.runner.version;
    if pin.is_empty() {
        return vec![Package::any(PACKAGE)];
    }
    let version = apt_version(pin);
    let mut wanted = vec![Package::exactly(PACKAGE, &version)];
    if has_helper_images(pin) {
        wanted.push(Package::exactly(HELPER_IMAGES, &version));
    }
    wanted
}

/// What runner-install's packages need (nothing with install = "present").
fn package_plan(host: &Host, settings: &Settings) -> Result<Plan> {
    if settings.profile.runner.install != Install::PackageRepo {
        return Ok(Plan::default());
    }
    let mut plan = packages::plan(
        host,
        &wanted(settings),
        vec![repo(settings)],
        "runner.version",
    )?;
    if settings.profile.runner.version.is_empty() {
        plan.release = packages::own_holds(host, &[PACKAGE, HELPER_IMAGES])?;
    }
    // An upgrade or downgrade: the package's scripts stop the running
    // runner with SIGTERM; it is stopped gracefully first.
    if plan
        .actions
        .iter()
        .any(|a| a.package.name == PACKAGE && a.from.is_some())
    {
        plan.graceful_stop = Some(std::time::Duration::from_secs(
            settings.profile.runner.shutdown_timeout,
        ));
    }
    Ok(plan)
}

impl Step for RunnerInstall {
    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        if host.accounts.user(ACCOUNT)?.is_none() {
            require_tool(host, "useradd", "passwd")?;
        }
        let packages = host.packages()?;
        let installing = package_plan(host, settings)?.installs();
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

    fn plan_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        if settings.profile.runner.version.is_empty() {
            packages::warn_unpinned_holds(host, ID, &[PACKAGE, HELPER_IMAGES], "runner.version")?;
        }
        self.check(host, settings)
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let mut changes = Vec::new();
        let packages = host.packages()?;
        if settings.profile.runner.install == Install::Present
            && !packages.installed(host, PACKAGE)?
            && host.which("gitlab-runner").is_none()
        {
            return Err(NotPresent.into());
        }
        changes.extend(package_plan(host, settings)?.changes(host)?);
        if host.accounts.user(ACCOUNT)?.is_none() {
            changes.push(Change::new(format!(
                "create the {ACCOUNT} account (as GitLab's package does)"
            )));
        }
        Ok(State::from_changes(changes))
    }

    fn package_plan(&self, host: &Host, settings: &Settings) -> Result<Option<Plan>> {
        let plan = package_plan(host, settings)?;
        Ok(plan.installs().then_some(plan))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let mut done = packages::apply(host, ID, &package_plan(host, settings)?)?;
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
