//! shutdown-unregister: with `unregister_on_shutdown`, a systemd unit whose
//! `ExecStop` unregisters this host's runners when the machine shuts down,
//! after the runner service stopped gracefully and before the network goes
//! down (see `edit::shutdown_unit` for the ordering). Without it, the
//! tool's files are removed again; files at those paths that are not the
//! tool's are never touched.
//!
//! What `gitlab-runner unregister` does depends on the token (GitLab Runner
//! `commands/unregister.go`): for a runner authentication token (`glrt-`)
//! it calls `DELETE /api/v4/runners/managers` with this machine's system id,
//! removing only this host's manager of a runner the whole fleet may share;
//! for a legacy token, `DELETE /api/v4/runners` deletes the runner (which
//! belonged to this host alone). Either way the entry leaves config.toml.

use anyhow::{Result, bail};

use super::{CONFIG_TOML, Change, Mode, Settings, State, Step, StepId, unit_files};
use crate::edit::runner_config;
use crate::edit::shutdown_unit::{self};
use crate::host::Host;
use crate::host::command::Cmd;

pub struct ShutdownUnregister;

pub const UNIT_NAME: &str = "runner-provision-unregister.service";
pub const UNIT: &str = "/etc/systemd/system/runner-provision-unregister.service";
pub const DROP_IN: &str =
    "/etc/systemd/system/gitlab-runner.service.d/runner-provision-shutdown.conf";
const WANTS: &str =
    "/etc/systemd/system/multi-user.target.wants/runner-provision-unregister.service";
const GITLAB_RUNNER: &str = "/usr/bin/gitlab-runner";

/// The names of this profile's runners in config.toml: the one with its
/// URL and name, or (a profile without a name) those adopted at its URL;
/// before registration, the name it will register under. With
/// `[[runners]]`: each listed runner's name.
fn runner_names(host: &Host, settings: &Settings) -> Result<Vec<String>> {
    if settings.listed() {
        // Every listed runner, registered or to be: a runner the profile
        // no longer lists is the operator's, as apply leaves it.
        return Ok(settings
            .profile
            .runners
            .iter()
            .map(|r| r.name.clone())
            .collect());
    }
    let runner = &settings.profile.runner;
    let name = settings.runner_name(host)?;
    let existing = super::runner_register::runners(host)?.unwrap_or_default();
    if runner_config::find(&existing, &runner.url, &name).is_some() {
        return Ok(vec![name]);
    }
    if runner.name.is_empty() {
        let adopted: Vec<String> = runner_config::at_url(&existing, &runner.url)
            .into_iter()
            .map(|r| r.name.clone())
            .collect();
        if !adopted.is_empty() {
            return Ok(adopted);
        }
    }
    Ok(vec![name])
}

/// Each file's wanted content (`None`: absent).
fn wanted(host: &Host, settings: &Settings) -> Result<Vec<(&'static str, Option<String>)>> {
    let runner = &settings.profile.runner;
    if !runner.unregister_on_shutdown {
        return Ok(vec![(UNIT, None), (DROP_IN, None)]);
    }
    Ok(vec![
        (
            UNIT,
            Some(shutdown_unit::unit(
                GITLAB_RUNNER,
                CONFIG_TOML,
                &runner_names(host, settings)?,
                super::network::ENV_FILE,
            )),
        ),
        (
            DROP_IN,
            Some(shutdown_unit::graceful_stop(runner.shutdown_timeout)),
        ),
    ])
}

fn ours(host: &Host, path: &str) -> Result<Option<String>> {
    unit_files::ours(host, path)
}

fn enabled(host: &Host) -> bool {
    unit_files::enabled(host, WANTS)
}

fn active(host: &Host) -> Result<bool> {
    unit_files::active(host, UNIT_NAME)
}

/// Stops the unit without unregistering, if it runs (true when it did):
/// stopping it as it is would unregister now, and a unit file removed while
/// it runs stays loaded until shutdown, so its ExecStop goes first.
pub fn stop_quietly(host: &Host) -> Result<bool> {
    // `os.systemd` is false on an offline root: no unit runs there.
    if !host.os.systemd || ours(host, UNIT)?.is_none() || !active(host)? {
        return Ok(false);
    }
    let quiet = shutdown_unit::unit(GITLAB_RUNNER, CONFIG_TOML, &[], "/dev/null");
    host.files.write_atomic(UNIT, quiet.as_bytes(), 0o644)?;
    host.run(Cmd::new("systemctl").arg("daemon-reload"))?;
    host.run(Cmd::new("systemctl").args(["stop", UNIT_NAME]))?;
    Ok(true)
}

impl Step for ShutdownUnregister {
    fn needs(&self) -> &'static [StepId] {
        &[StepId::RunnerInstall]
    }

    fn preflight(&self, host: &Host, settings: &Settings, _mode: Mode) -> Result<()> {
        if !settings.profile.runner.unregister_on_shutdown {
            return Ok(());
        }
        if host.live && !host.os.systemd {
            bail!(
                "unregister_on_shutdown needs systemd (this host's init system is not): remove it from the profile, or unregister the runner from your own shutdown script"
            );
        }
        for path in [UNIT, DROP_IN] {
            if host.files.exists(path) && ours(host, path)?.is_none() {
                bail!(
                    "{path} exists and was not written by runner-provision: move it away, or leave unregister_on_shutdown off"
                );
            }
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let on = settings.profile.runner.unregister_on_shutdown;
        let mut changes = unit_files::pending(host, &wanted(host, settings)?)?;
        if on && !enabled(host) {
            changes.push(Change::new(format!("enable {UNIT_NAME}")));
        }
        if !on && enabled(host) && ours(host, UNIT)?.is_some() {
            changes.push(Change::new(format!(
                "stop (without unregistering) and disable {UNIT_NAME}"
            )));
        }
        if on && host.live && !active(host)? {
            changes.push(Change::new(format!(
                "start {UNIT_NAME} (its stop at shutdown unregisters)"
            )));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let on = settings.profile.runner.unregister_on_shutdown;
        let mut done = Vec::new();
        if !on && ours(host, UNIT)?.is_some() {
            if stop_quietly(host)? {
                done.push(format!("stopped {UNIT_NAME} without unregistering"));
            }
            if enabled(host) {
                host.run(Cmd::new("systemctl").args(["disable", UNIT_NAME]))?;
                done.push(format!("disabled {UNIT_NAME}"));
            }
        }
        let files_changed = unit_files::write(host, &wanted(host, settings)?, &mut done)?;
        if files_changed && host.os.systemd {
            host.run(Cmd::new("systemctl").arg("daemon-reload"))?;
        }
        if on && !enabled(host) {
            host.run(Cmd::new("systemctl").args(["enable", UNIT_NAME]))?;
            done.push(format!("enabled {UNIT_NAME}"));
        }
        if on && host.live && !active(host)? {
            host.run(Cmd::new("systemctl").args(["start", UNIT_NAME]))?;
            done.push(format!("started {UNIT_NAME}"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Format;
    use crate::steps::{Selection, run};
    use crate::testing::FakeHost;

    /// `live`: a running host; otherwise an image (`--root`).
    fn go(
        fake: &FakeHost,
        settings: &Settings,
        mode: Mode,
        live: bool,
    ) -> (crate::report::Counts, String) {
        let reporter = fake.reporter(Format::Json);
        let host = if live {
            fake.host(reporter.clone())
        } else {
            fake.offline_host(reporter.clone())
        };
        let only = Selection {
            only: vec![StepId::ShutdownUnregister],
            skip: Vec::new(),
        };
        let counts = run(&host, settings, &only, mode, &reporter);
        (counts, reporter.captured())
    }

    #[test]
    fn on_writes_and_enables_the_unit_once_and_off_takes_it_back() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        let mut settings = fake.settings(None);
        settings.profile.runner.unregister_on_shutdown = true;
        settings.profile.runner.shutdown_timeout = 120;

        let (applied, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        // An image: enabled, neither reloaded nor asked nor started.
        assert_eq!(
            fake.ran_in_root_since(0),
            [format!("systemctl enable {UNIT_NAME}")],
            "{out}"
        );
        let unit = fake.read(UNIT);
        assert!(
            unit.contains(
                "unregister --config \"/etc/gitlab-runner/config.toml\" --name \"runner-1\""
            ),
            "{unit}"
        );
        assert!(fake.read(DROP_IN).contains("TimeoutStopSec=120"));
        assert!(fake.root().join(WANTS.trim_start_matches('/')).exists());
        let before = fake.snapshot();
        let (again, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
        assert_eq!(fake.snapshot(), before);

        settings.profile.runner.unregister_on_shutdown = false;
        let from = fake.commands().len();
        let (off, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!((off.changed, off.failed), (1, 0), "{out}");
        // Nothing runs in an image: no stop, disabled only.
        assert_eq!(
            fake.ran_in_root_since(from),
            [format!("systemctl disable {UNIT_NAME}")],
            "{out}"
        );
        assert!(!out.contains("without unregistering"), "{out}");
        assert!(!fake.root().join(UNIT.trim_start_matches('/')).exists());
        assert!(!fake.root().join(DROP_IN.trim_start_matches('/')).exists());
        let (plan, out) = go(&fake, &settings, Mode::Plan, false);
        assert_eq!(plan.pending, 0, "{out}");
    }

    #[test]
    fn someone_elses_file_is_refused_before_any_change_and_never_removed() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        fake.write(DROP_IN, "[Service]\nKillSignal=SIGTERM\n");
        let mut settings = fake.settings(None);
        let (off, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!((off.changed, off.failed), (0, 0), "{out}");
        assert_eq!(fake.read(DROP_IN), "[Service]\nKillSignal=SIGTERM\n");
        settings.profile.runner.unregister_on_shutdown = true;
        let (on, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!(on.failed, 1, "{out}");
        assert!(out.contains("not written by runner-provision"), "{out}");
        assert!(!fake.root().join(UNIT.trim_start_matches('/')).exists());
    }

    #[test]
    fn a_running_host_starts_the_unit_once_and_restarts_it_only_when_stopped() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        let mut settings = fake.settings(None);
        settings.profile.runner.unregister_on_shutdown = true;
        let is_active = format!("systemctl is-active --quiet {UNIT_NAME}");
        let start = format!("systemctl start {UNIT_NAME}");

        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        assert_eq!(
            fake.ran_in_root_since(0),
            [
                is_active.clone(),
                "systemctl daemon-reload".to_string(),
                format!("systemctl enable {UNIT_NAME}"),
                is_active.clone(),
                start.clone(),
                // The check after apply.
                is_active.clone(),
            ],
            "{out}"
        );
        assert!(fake.root().join(WANTS.trim_start_matches('/')).exists());
        let (plan, out) = go(&fake, &settings, Mode::Plan, true);
        assert_eq!(plan.pending, 0, "{out}");
        let from = fake.commands().len();
        let (again, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
        assert_eq!(fake.ran_in_root_since(from), [is_active.as_str()], "{out}");

        // A new timeout rewrites the drop-in alone and reloads; the unit
        // runs and stays enabled.
        settings.profile.runner.shutdown_timeout = 600;
        let from = fake.commands().len();
        let (changed, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((changed.changed, changed.failed), (1, 0), "{out}");
        assert!(out.contains(&format!("wrote {DROP_IN}")), "{out}");
        assert!(!out.contains(&format!("wrote {UNIT}")), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                is_active.clone(),
                "systemctl daemon-reload".to_string(),
                is_active.clone(),
                is_active.clone(),
            ],
            "{out}"
        );

        // Stopped by hand, still enabled: started again, nothing else.
        std::fs::remove_file(fake.root().join("run/fake-active").join(UNIT_NAME)).expect("stop");
        let from = fake.commands().len();
        let (restarted, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((restarted.changed, restarted.failed), (1, 0), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [is_active.clone(), is_active.clone(), start, is_active],
            "{out}"
        );
    }

    #[test]
    fn off_on_a_running_host_stops_the_unit_without_unregistering_then_disables_it() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        let mut settings = fake.settings(None);
        settings.profile.runner.unregister_on_shutdown = true;
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(applied.failed, 0, "{out}");
        assert!(
            fake.read(UNIT)
                .contains("ExecStop=-/usr/bin/gitlab-runner unregister")
        );

        settings.profile.runner.unregister_on_shutdown = false;
        let from = fake.commands().len();
        let (off, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((off.changed, off.failed), (1, 0), "{out}");
        assert!(
            out.contains(&format!("stopped {UNIT_NAME} without unregistering")),
            "{out}"
        );
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                format!("systemctl is-active --quiet {UNIT_NAME}"),
                "systemctl daemon-reload".to_string(),
                format!("systemctl stop {UNIT_NAME}"),
                format!("systemctl disable {UNIT_NAME}"),
                "systemctl daemon-reload".to_string(),
            ],
            "{out}"
        );
        // The unit that stopped had no unregistering ExecStop left.
        let stopped = fake.read(&format!("/run/fake-stopped/{UNIT_NAME}"));
        assert!(stopped.contains("RemainAfterExit=yes"), "{stopped}");
        assert!(!stopped.contains("ExecStop="), "{stopped}");
        assert!(!fake.root().join(WANTS.trim_start_matches('/')).exists());
        assert!(!fake.root().join("run/fake-active").join(UNIT_NAME).exists());
        let (plan, out) = go(&fake, &settings, Mode::Plan, true);
        assert_eq!(plan.pending, 0, "{out}");
    }

    #[test]
    fn off_with_the_unit_enabled_but_not_running_disables_it_without_a_stop() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        let mut settings = fake.settings(None);
        settings.profile.runner.unregister_on_shutdown = true;
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(applied.failed, 0, "{out}");
        std::fs::remove_file(fake.root().join("run/fake-active").join(UNIT_NAME)).expect("stop");
        // The drop-in was taken away by hand: nothing of it to remove.
        std::fs::remove_file(fake.root().join(DROP_IN.trim_start_matches('/'))).expect("rm");

        settings.profile.runner.unregister_on_shutdown = false;
        let from = fake.commands().len();
        let (off, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((off.changed, off.failed), (1, 0), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                format!("systemctl is-active --quiet {UNIT_NAME}"),
                format!("systemctl disable {UNIT_NAME}"),
                "systemctl daemon-reload".to_string(),
            ],
            "{out}"
        );
        assert!(!out.contains("without unregistering"), "{out}");
        assert!(out.contains(&format!("removed {UNIT}")), "{out}");
        assert!(!out.contains(&format!("removed {DROP_IN}")), "{out}");
        assert!(
            !fake
                .root()
                .join("run/fake-stopped")
                .join(UNIT_NAME)
                .exists()
        );
    }

    #[test]
    fn a_running_host_without_systemd_is_refused_before_any_change() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        std::fs::remove_dir_all(fake.root().join("run/systemd")).expect("no systemd");
        let mut settings = fake.settings(None);
        settings.profile.runner.unregister_on_shutdown = true;
        let before = fake.snapshot();
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(applied.failed, 1, "{out}");
        assert!(
            out.contains("unregister_on_shutdown needs systemd"),
            "{out}"
        );
        assert_eq!(fake.snapshot(), before);
    }
}
