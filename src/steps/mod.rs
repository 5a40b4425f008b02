//! The steps, in order, and the engine that checks and applies them.
//!
//! A step is a value with state: `check` probes the host and says whether
//! the step is done, what would change, or why it does not apply; `apply`
//! makes the change. `check` that cannot read state is an error, never an
//! assumption. After `apply`, the engine checks again: a step that still has
//! work to do has failed, whatever its `apply` said.

#[cfg(test)]
mod adopt_tests;
mod daemon_file;
#[cfg(test)]
mod daemon_tests;
mod docker_build;
mod docker_daemon;
mod docker_driver;
mod docker_group;
mod docker_install;
mod docker_verify;
mod image_identity;
#[cfg(test)]
mod listed_tests;
pub mod network;
mod overlay_module;
mod packages;
#[cfg(test)]
mod pin_tests;
pub mod prune_schedule;
mod runner_alive;
mod runner_globals;
mod runner_install;
mod runner_register;
pub mod shutdown_unregister;
#[cfg(test)]
mod tests;
mod unit_files;

use std::time::Duration;

use anyhow::Result;

pub use crate::Mode;
use crate::host::Host;
use crate::profile::Profile;
use crate::report::{Counts, Reporter, Status, StepReport};
use crate::secret::Token;

pub use crate::change::Change;

pub const CONFIG_TOML: &str = "/etc/gitlab-runner/config.toml";
pub const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// What a step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Converged: nothing to do.
    Done,
    /// Work to do, described for the operator.
    Pending(Vec<Change>),
    /// Does not apply here, and that is healthy (offline root).
    NotApplicable(String),
    /// Cannot be done now, and the host is not complete without it (no token).
    Skipped(String),
}

impl State {
    /// Done when there is nothing to change.
    pub fn from_changes(changes: Vec<Change>) -> Self {
        if changes.is_empty() {
            State::Done
        } else {
            State::Pending(changes)
        }
    }
}

/// The resolved settings every step reads.
#[derive(Debug, Clone)]
pub struct Settings {
    pub profile: Profile,
    /// The single `[runner]`'s token (RUNNER_TOKEN or --token-file).
    pub token: Option<Token>,
    /// Each `[[runners]]` entry's token, in profile order (`None`: its
    /// source holds none).
    pub runner_tokens: Vec<Option<Token>>,
}

/// A runner the profile wants on this host: the single `[runner]` or one
/// `[[runners]]` entry, resolved.
#[derive(Debug, Clone)]
pub struct WantedRunner<'a> {
    pub url: &'a str,
    pub name: String,
    pub executor: &'a str,
    pub tags: &'a [String],
    pub limit: u32,
    pub environment: &'a [String],
    pub token: Option<&'a Token>,
    /// Where the token comes from, for a `[[runners]]` entry (`None`: the
    /// single runner's RUNNER_TOKEN or --token-file).
    pub token_source: Option<String>,
}

impl Settings {
    /// Settings for `profile` with the single runner's `token` (tests and
    /// callers without `[[runners]]` tokens).
    pub fn new(profile: Profile, token: Option<Token>) -> Self {
        Self {
            profile,
            token,
            runner_tokens: Vec::new(),
        }
    }

    /// The runner's name: the profile's, or the host name.
    pub fn runner_name(&self, host: &Host) -> Result<String> {
        if !self.profile.runner.name.is_empty() {
            return Ok(self.profile.runner.name.clone());
        }
        host.hostname()
    }

    /// The profile lists its runners (`[[runners]]`) instead of the single `[runner]`.
    pub fn listed(&self) -> bool {
        !self.profile.runners.is_empty()
    }

    /// Every runner the profile wants, in profile order.
    pub fn wanted_runners(&self, host: &Host) -> Result<Vec<WantedRunner<'_>>> {
        if !self.listed() {
            let runner = &self.profile.runner;
            return Ok(vec![WantedRunner {
                url: &runner.url,
                name: self.runner_name(host)?,
                executor: &runner.executor,
                tags: &runner.tags,
                limit: 0,
                environment: &[],
                token: self.token.as_ref(),
                token_source: None,
            }]);
        }
        Ok(self
            .profile
            .runners
            .iter()
            .enumerate()
            .map(|(i, r)| WantedRunner {
                url: &r.url,
                name: r.name.clone(),
                executor: &r.executor,
                tags: &r.tags,
                limit: r.limit,
                environment: &r.environment,
                token: self.runner_tokens.get(i).and_then(Option::as_ref),
                token_source: Some(r.token_source()),
            })
            .collect())
    }
}

/// Defines [`StepId`] and [`registry`] from one list, so an id and its step
/// cannot drift apart: the variant, its command-line name and the value that
/// implements it sit on one line.
macro_rules! registry {
    ($($(#[doc = $doc:literal])* $variant:ident = $name:literal => $step:expr,)*) => {
        /// A step's id: the word the README, the output, `--only` and `--skip` use.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
        pub enum StepId {
            /// Root, OS, kernel, tools and every step's input; always runs first
            #[value(skip)]
            Preflight,
            $($(#[doc = $doc])* #[value(name = $name)] $variant,)*
        }

        impl StepId {
            pub fn as_str(self) -> &'static str {
                match self {
                    StepId::Preflight => "preflight",
                    $(StepId::$variant => $name,)*
                }
            }
        }

        /// The steps after preflight, in the order they run.
        pub fn registry() -> &'static [(StepId, &'static dyn Step)] {
            &[$((StepId::$variant, &$step),)*]
        }
    };
}

registry! {
    /// Proxy and CA certificates for apt, the tool, the runner and dockerd
    Network = "network" => network::Network,
    /// gitlab-runner installed from its package repository, with its account
    RunnerInstall = "runner-install" => runner_install::RunnerInstall,
    /// config.toml has a [[runners]] entry for this URL and name
    RunnerRegister = "runner-register" => runner_register::RunnerRegister,
    /// config.toml's global settings ([global]: concurrent, check_interval, shutdown_timeout, listen_address)
    RunnerGlobals = "runner-globals" => runner_globals::RunnerGlobals,
    /// Docker Engine installed, enabled and running
    DockerInstall = "docker-install" => docker_install::DockerInstall,
    /// The runner's account in group docker (root-equivalent: needs acceptance)
    DockerGroup = "docker-group" => docker_group::DockerGroup,
    /// The overlay module loaded and listed for boot
    OverlayModule = "overlay-module" => overlay_module::OverlayModule,
    /// DOCKER_DRIVER for every runner and the storage driver in daemon.json
    DockerDriver = "docker-driver" => docker_driver::DockerDriver,
    /// The profile's [docker.daemon] keys (and defaults) in daemon.json; rolled back if dockerd does not start
    DockerDaemon = "docker-daemon" => docker_daemon::DockerDaemon,
    /// With unregister_on_shutdown: a unit unregisters this host's runners at shutdown
    ShutdownUnregister = "shutdown-unregister" => shutdown_unregister::ShutdownUnregister,
    /// With [prune] schedule: a timer (cron.d without systemd) runs `runner-provision prune`
    PruneSchedule = "prune-schedule" => prune_schedule::PruneScheduleStep,
    /// `docker info` as the runner's account answers with the expected driver
    DockerVerify = "docker-verify" => docker_verify::DockerVerify,
    /// A throwaway image built FROM scratch as a shell-executor job would build it
    DockerBuild = "docker-build" => docker_build::DockerBuild,
    /// An image (--root) keeps no runner system id or machine id of the build machine
    ImageIdentity = "image-identity" => image_identity::ImageIdentity,
    /// GitLab still knows each registered runner (`gitlab-runner verify`)
    RunnerAlive = "runner-alive" => runner_alive::RunnerAlive,
}

impl std::fmt::Display for StepId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A step's behaviour; its id is the line that registers it in [`registry`].
pub trait Step: Sync {
    /// Steps whose failure makes this one pointless.
    fn needs(&self) -> &'static [StepId] {
        &[]
    }

    /// Validation that must pass before any step changes anything: bad
    /// input and missing tools. In a plan, problems that only `apply` would
    /// refuse for are warnings ([`Mode`] tells which run this is).
    fn preflight(&self, _host: &Host, _settings: &Settings, _mode: Mode) -> Result<()> {
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State>;

    /// The check `plan` uses: the same as [`Step::check`] unless a step has a
    /// cheaper read-only probe that answers the same question.
    fn plan_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        self.check(host, settings)
    }

    /// The check `verify` uses: the same as [`Step::check`] unless a step
    /// has more to prove on a provisioned host than apply needs to know.
    fn verify_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        self.check(host, settings)
    }

    /// Makes the pending changes; returns what it did, in the operator's words.
    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>>;

    /// The packages this step would install (or move to a pinned version)
    /// now, if any: where several steps have some, the engine installs them
    /// all in one transaction before the first of them runs.
    fn package_plan(&self, _host: &Host, _settings: &Settings) -> Result<Option<packages::Plan>> {
        Ok(None)
    }
}

/// Which steps run: `--only` and `--skip` (preflight always runs).
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub only: Vec<StepId>,
    pub skip: Vec<StepId>,
}

impl Selection {
    pub fn includes(&self, id: StepId) -> bool {
        (self.only.is_empty() || self.only.contains(&id)) && !self.skip.contains(&id)
    }
}

#[cfg(test)]
impl Selection {
    /// These steps only (`--only`).
    pub fn of(ids: &[StepId]) -> Self {
        Selection {
            only: ids.to_vec(),
            skip: Vec::new(),
        }
    }

    /// Every step but these (`--skip`).
    pub fn without(ids: &[StepId]) -> Self {
        Selection {
            only: Vec::new(),
            skip: ids.to_vec(),
        }
    }
}

/// Runs preflight and the selected steps in `mode`, reporting each.
pub fn run(
    host: &Host,
    settings: &Settings,
    selection: &Selection,
    mode: Mode,
    reporter: &Reporter,
) -> Counts {
    run_with_statuses(host, settings, selection, mode, reporter).0
}

/// Adds the secrets config.toml holds (runner tokens, cache credentials)
/// to the redactor, so no output quotes them. A file that cannot be read or
/// parsed has none to add; the steps report it.
fn learn_config_secrets(host: &Host) {
    if let Ok(Some(text)) = host.files.read(CONFIG_TOML) {
        for secret in crate::secret::toml_secrets(&text) {
            host.redactor().add(&secret);
        }
    }
}

/// [`run`], and how each step ended (for what follows the run, such as
/// forgetting the token only once the runner is registered).
pub fn run_with_statuses(
    host: &Host,
    settings: &Settings,
    selection: &Selection,
    mode: Mode,
    reporter: &Reporter,
) -> (Counts, Vec<(StepId, Status)>) {
    let mut statuses = Vec::new();
    learn_config_secrets(host);
    let started = host.now();
    let steps: Vec<(StepId, &dyn Step)> = registry()
        .iter()
        .copied()
        .filter(|(id, _)| selection.includes(*id))
        .collect();
    let event = mode.step_event();
    let mut counts = Counts::default();

    let preflight = run_preflight(host, settings, &steps, mode, reporter);
    counts.add(preflight.status);
    reporter.step_finished(event, &preflight);
    let preflight_failed = preflight.status == Status::Failed;

    // Ids of steps that failed (apply) or still have work (plan), for dependents.
    let mut failed: Vec<StepId> = Vec::new();
    let mut pending: Vec<StepId> = Vec::new();
    let mut shared = SharedInstall::default();
    for (index, &(id, step)) in steps.iter().enumerate() {
        let report = if preflight_failed {
            report(
                id,
                Status::Skipped,
                Some("preflight failed".into()),
                Duration::ZERO,
            )
        } else if let Some(dep) = step.needs().iter().find(|d| failed.contains(d)) {
            // Skipped for a failed dependency: blocks its own dependents too.
            failed.push(id);
            report(
                id,
                Status::Skipped,
                Some(format!("{dep} failed")),
                Duration::ZERO,
            )
        } else {
            let waiting_on = step.needs().iter().find(|d| pending.contains(d)).copied();
            // Called once the step has started, so the shared install's time
            // and progress are this step's.
            let mut before = || {
                if mode == Mode::Apply {
                    shared.before(host, settings, &steps[index..], &failed);
                }
                shared.done_for(id)
            };
            run_step(
                host,
                settings,
                id,
                step,
                mode,
                waiting_on,
                reporter,
                &mut before,
            )
        };
        match report.status {
            Status::Failed => failed.push(id),
            Status::Pending => pending.push(id),
            _ => {}
        }
        if id == StepId::RunnerRegister {
            // Registration wrote a token of its own.
            learn_config_secrets(host);
        }
        counts.add(report.status);
        statuses.push((id, report.status));
        reporter.step_finished(event, &report);
    }
    reporter.summary(&counts, host.now() - started, mode);
    (counts, statuses)
}

fn run_preflight(
    host: &Host,
    settings: &Settings,
    steps: &[(StepId, &dyn Step)],
    mode: Mode,
    reporter: &Reporter,
) -> StepReport {
    let id = StepId::Preflight;
    reporter.step_started(id.as_str());
    let started = host.now();
    let result = preflight_checks(host, settings, mode).and_then(|()| {
        steps
            .iter()
            .try_for_each(|(_, step)| step.preflight(host, settings, mode))
    });
    match result {
        Ok(()) => report(id, Status::Ok, None, host.now() - started),
        Err(e) => report(
            id,
            Status::Failed,
            Some(format!("{e:#}")),
            host.now() - started,
        ),
    }
}

/// Root, OS, kernel and tools: refuses before any change. Reading needs no
/// root, so `plan` and `verify` only warn (a root-only file they cannot read
/// is then an error of its own).
fn preflight_checks(host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
    if host.live && !host.is_root() {
        if mode == Mode::Apply {
            return Err(crate::Error::NotRoot.into());
        }
        host.warn(
            StepId::Preflight.as_str(),
            "not running as root: apply will refuse, and root-only files cannot be read",
        );
    }
    settings.profile.validate()?;
    network::configure_host(host, settings, mode)?;
    host.os
        .release
        .supported()
        .map_err(crate::Error::UnsupportedOs)?;
    if let Some(kernel) = &host.os.kernel {
        let new_enough =
            crate::edit::os_release::kernel_version(kernel).is_some_and(|v| v >= (4, 2));
        if !new_enough {
            return Err(crate::Error::KernelTooOld {
                found: kernel.clone(),
            }
            .into());
        }
    }
    for (tool, package) in host.packages()?.tools() {
        require_tool(host, tool, package)?;
    }
    Ok(())
}

/// Fails, naming the package to install, when `tool` is not on PATH.
pub fn require_tool(host: &Host, tool: &str, package: &str) -> Result<()> {
    if host.which(tool).is_none() {
        return Err(crate::Error::MissingTool {
            tool: tool.to_string(),
            package: package.to_string(),
        }
        .into());
    }
    Ok(())
}

/// One apt transaction for every step that installs packages: before the
/// first of them runs, the packages of it and of every later selected step
/// that has some to install are installed together (one index update, one
/// `apt-get install`, so downloads overlap and dpkg runs once). Each step
/// then reports its own packages as its changes and does the rest of its
/// work itself. When the shared transaction fails, nothing is claimed: each
/// step installs its own as before, and reports its own error.
#[derive(Default)]
struct SharedInstall {
    tried: bool,
    done: Vec<(StepId, Vec<String>)>,
}

impl SharedInstall {
    fn before(
        &mut self,
        host: &Host,
        settings: &Settings,
        here_and_later: &[(StepId, &dyn Step)],
        failed: &[StepId],
    ) {
        let Some(&(first, step)) = here_and_later.first() else {
            return;
        };
        if self.tried {
            return;
        }
        let Ok(Some(plan)) = step.package_plan(host, settings) else {
            return;
        };
        self.tried = true;
        let mut plans = vec![(first, plan)];
        for &(id, later) in &here_and_later[1..] {
            if later.needs().iter().any(|d| failed.contains(d)) {
                continue;
            }
            if let Ok(Some(plan)) = later.package_plan(host, settings) {
                plans.push((id, plan));
            }
        }
        if plans.len() < 2 {
            return;
        }
        let ids: Vec<&str> = plans.iter().map(|(id, _)| id.as_str()).collect();
        let refs: Vec<&packages::Plan> = plans.iter().map(|(_, p)| p).collect();
        let together = format!(" (one apt transaction for {})", ids.join(" and "));
        match packages::apply_all(host, first.as_str(), &refs, &together) {
            Ok(done) => {
                self.done = plans.iter().map(|(id, _)| *id).zip(done).collect();
            }
            Err(e) => host.warn(
                first.as_str(),
                &format!(
                    "installing the packages of {} in one apt transaction failed, so each installs its own: {e:#}",
                    ids.join(" and ")
                ),
            ),
        }
    }

    /// What the shared transaction did for `id`, taken once.
    fn done_for(&mut self, id: StepId) -> Vec<String> {
        self.done
            .iter_mut()
            .find(|(step, _)| *step == id)
            .map(|(_, done)| std::mem::take(done))
            .unwrap_or_default()
    }
}

#[allow(clippy::too_many_arguments)]
fn run_step(
    host: &Host,
    settings: &Settings,
    id: StepId,
    step: &dyn Step,
    mode: Mode,
    waiting_on: Option<StepId>,
    reporter: &Reporter,
    before: &mut dyn FnMut() -> Vec<String>,
) -> StepReport {
    reporter.step_started(id.as_str());
    let started = host.now();
    let elapsed = || host.now() - started;
    // What the shared apt transaction did for this step (apply only).
    let already = before();
    // In a plan, a step after a pending one is judged after that one has
    // run: its state now (no group docker before Docker is installed, no
    // daemon to ask) says nothing about what apply will find.
    if let (Mode::Plan, Some(dep)) = (mode, waiting_on) {
        return report(id, Status::Pending, Some(format!("after {dep}")), elapsed());
    }
    let checked = match mode {
        Mode::Plan => step.plan_check(host, settings),
        Mode::Verify => step.verify_check(host, settings),
        Mode::Apply => step.check(host, settings),
    };
    let state = match checked {
        Ok(state) => state,
        Err(e) => return report(id, Status::Failed, Some(format!("{e:#}")), elapsed()),
    };
    match (state, mode) {
        // The shared transaction did this step's install: its change.
        (State::Done, Mode::Apply) if !already.is_empty() => {
            let mut r = report(id, Status::Changed, None, elapsed());
            r.changes = already;
            r
        }
        (State::Done, _) => report(id, Status::Ok, None, elapsed()),
        (State::NotApplicable(why), _) => report(id, Status::Skipped, Some(why), elapsed()),
        (State::Skipped(why), Mode::Verify) => report(id, Status::Failed, Some(why), elapsed()),
        (State::Skipped(why), _) => report(id, Status::Skipped, Some(why), elapsed()),
        (State::Pending(changes), Mode::Plan) => {
            let mut r = report(id, Status::Pending, None, elapsed());
            r.changes = changes.iter().map(|c| c.summary.clone()).collect();
            r.diffs = changes.iter().filter_map(|c| c.diff.clone()).collect();
            r
        }
        (State::Pending(changes), Mode::Verify) => {
            let mut r = report(id, Status::Failed, Some("not converged".into()), elapsed());
            r.changes = changes.iter().map(|c| c.summary.clone()).collect();
            r
        }
        (State::Pending(_), Mode::Apply) => match step.apply(host, settings) {
            Err(e) => {
                let mut r = report(id, Status::Failed, Some(format!("{e:#}")), elapsed());
                r.changes = already;
                r
            }
            Ok(mut done) => match step.check(host, settings) {
                Ok(State::Pending(left)) => {
                    let left: Vec<String> = left.into_iter().map(|c| c.summary).collect();
                    let mut r = report(
                        id,
                        Status::Failed,
                        Some(format!("still pending after apply: {}", left.join("; "))),
                        elapsed(),
                    );
                    r.changes = done;
                    r
                }
                Err(e) => report(
                    id,
                    Status::Failed,
                    Some(format!("checking after apply: {e:#}")),
                    elapsed(),
                ),
                Ok(_) => {
                    done.splice(0..0, already);
                    let status = if done.is_empty() {
                        Status::Ok
                    } else {
                        Status::Changed
                    };
                    let mut r = report(id, status, None, elapsed());
                    r.changes = done;
                    r
                }
            },
        },
    }
}

fn report(id: StepId, status: Status, reason: Option<String>, duration: Duration) -> StepReport {
    StepReport {
        id: id.as_str(),
        status,
        changes: Vec::new(),
        reason,
        diffs: Vec::new(),
        duration,
    }
}
