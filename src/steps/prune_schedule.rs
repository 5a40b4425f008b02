//! prune-schedule: with `[prune] schedule` set, a systemd timer (a cron.d
//! entry on a host without systemd) runs `runner-provision prune` with the
//! profile's `older_than` and `above_percent`. With `off` (the default),
//! the tool's files are removed again; files at those paths that are not
//! the tool's are never touched.

use anyhow::{Result, bail};

use super::{Change, Mode, Settings, State, Step, unit_files};
use crate::edit::prune_schedule::{self, SERVICE_NAME, TIMER_NAME};
use crate::host::Host;
use crate::host::command::Cmd;
use crate::profile::PruneSchedule;

pub struct PruneScheduleStep;

pub const SERVICE: &str = "/etc/systemd/system/runner-provision-prune.service";
pub const TIMER: &str = "/etc/systemd/system/runner-provision-prune.timer";
pub const CRON: &str = "/etc/cron.d/runner-provision-prune";
const TIMER_WANTS: &str = "/etc/systemd/system/timers.target.wants/runner-provision-prune.timer";

/// systemd runs this host (or, for an image, is installed in the tree).
fn systemd(host: &Host) -> bool {
    host.os.systemd
        || (!host.live
            && ["/lib/systemd/systemd", "/usr/lib/systemd/systemd"]
                .iter()
                .any(|p| host.files.exists(p)))
}

/// Each file's wanted content (`None`: absent).
fn wanted(host: &Host, settings: &Settings) -> Vec<(&'static str, Option<String>)> {
    let prune = &settings.profile.prune;
    if prune.schedule == PruneSchedule::Off {
        return vec![(SERVICE, None), (TIMER, None), (CRON, None)];
    }
    if systemd(host) {
        vec![
            (
                SERVICE,
                Some(prune_schedule::service(
                    &prune.older_than,
                    prune.above_percent,
                )),
            ),
            (TIMER, Some(prune_schedule::timer(prune.schedule))),
            (CRON, None),
        ]
    } else {
        vec![
            (SERVICE, None),
            (TIMER, None),
            (
                CRON,
                Some(prune_schedule::cron(
                    prune.schedule,
                    &prune.older_than,
                    prune.above_percent,
                )),
            ),
        ]
    }
}

fn ours(host: &Host, path: &str) -> Result<Option<String>> {
    unit_files::ours(host, path)
}

fn enabled(host: &Host) -> bool {
    unit_files::enabled(host, TIMER_WANTS)
}

fn active(host: &Host) -> Result<bool> {
    unit_files::active(host, TIMER_NAME)
}

/// Stops and disables the timer when it is the tool's (before `remove`
/// takes its file away, or when the schedule is turned off).
pub fn stop_and_disable(host: &Host) -> Result<Vec<String>> {
    let mut done = Vec::new();
    if ours(host, TIMER)?.is_none() {
        return Ok(done);
    }
    if active(host)? {
        host.run(Cmd::new("systemctl").args(["stop", TIMER_NAME]))?;
        done.push(format!("stopped {TIMER_NAME}"));
    }
    if enabled(host) {
        host.run(Cmd::new("systemctl").args(["disable", TIMER_NAME]))?;
        done.push(format!("disabled {TIMER_NAME}"));
    }
    Ok(done)
}

/// The folders the timer's command is looked up in, as `which` would
/// find it there.
fn tool_installed(host: &Host) -> bool {
    prune_schedule::SEARCH_PATH
        .split(':')
        .any(|dir| host.files.is_file(&format!("{dir}/runner-provision")))
}

impl Step for PruneScheduleStep {
    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        if settings.profile.prune.schedule == PruneSchedule::Off {
            return Ok(());
        }
        for (path, want) in wanted(host, settings) {
            if want.is_none() {
                continue;
            }
            if host.files.exists(path) && ours(host, path)?.is_none() {
                bail!(
                    "{path} exists and was not written by runner-provision: move it away, or set [prune] schedule = \"off\""
                );
            }
            // A link to nowhere, a folder that is a file: refused now,
            // not half-way through the run.
            host.files.check_writable(path)?;
        }
        if !systemd(host) && !host.files.is_dir("/etc/cron.d") {
            bail!(
                "[prune] schedule needs systemd or cron, and this host has neither (no /etc/cron.d): install cron, or set [prune] schedule = \"off\" and run `runner-provision prune` yourself"
            );
        }
        if !tool_installed(host) {
            let message = "[prune] schedule runs `runner-provision` from /usr/local/sbin, /usr/local/bin, /usr/sbin or /usr/bin, and none of them has it: install it there (see Install in the README), or set [prune] schedule = \"off\"";
            if mode == Mode::Apply {
                bail!("{message}");
            }
            host.warn("prune-schedule", message);
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let on = settings.profile.prune.schedule != PruneSchedule::Off;
        let mut changes = unit_files::pending(host, &wanted(host, settings))?;
        let timer = on && systemd(host);
        if timer && !enabled(host) {
            changes.push(Change::new(format!("enable {TIMER_NAME}")));
        }
        if timer && host.live && !active(host)? {
            changes.push(Change::new(format!("start {TIMER_NAME}")));
        }
        if !timer && ours(host, TIMER)?.is_some() && (enabled(host) || active(host)?) {
            changes.push(Change::new(format!("stop and disable {TIMER_NAME}")));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let on = settings.profile.prune.schedule != PruneSchedule::Off;
        let timer = on && systemd(host);
        let mut done = Vec::new();
        if !timer {
            done.extend(stop_and_disable(host)?);
        }
        let units_changed = unit_files::write(host, &wanted(host, settings), &mut done)?;
        if on && !timer {
            // Where the cron entry leaves its report.
            host.files.create_dir("/var/lib/runner-provision", 0o700)?;
        }
        if units_changed && host.os.systemd {
            host.run(Cmd::new("systemctl").arg("daemon-reload"))?;
        }
        if timer && !enabled(host) {
            host.run(Cmd::new("systemctl").args(["enable", TIMER_NAME]))?;
            done.push(format!("enabled {TIMER_NAME}"));
        }
        if timer && host.live && !active(host)? {
            host.run(Cmd::new("systemctl").args(["start", TIMER_NAME]))?;
            done.push(format!("started {TIMER_NAME} ({SERVICE_NAME} runs prune)"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Format;
    use crate::steps::{Selection, StepId, run};
    use crate::testing::FakeHost;

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
            only: vec![StepId::PruneSchedule],
            skip: Vec::new(),
        };
        let counts = run(&host, settings, &only, mode, &reporter);
        (counts, reporter.captured())
    }

    fn scheduled(fake: &FakeHost, schedule: PruneSchedule) -> Settings {
        let mut settings = fake.settings(None);
        settings.profile.prune.schedule = schedule;
        settings.profile.prune.older_than = "2d".into();
        settings.profile.prune.above_percent = 70;
        settings
    }

    fn exists(fake: &FakeHost, path: &str) -> bool {
        fake.root().join(path.trim_start_matches('/')).exists()
    }

    #[test]
    fn a_schedule_installs_enables_and_starts_the_timer_once_and_off_takes_it_back() {
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        let mut settings = scheduled(&fake, PruneSchedule::Daily);

        let (plan, out) = go(&fake, &settings, Mode::Plan, true);
        assert_eq!(plan.pending, 1, "{out}");
        assert!(
            out.contains(
                "+ExecStart=runner-provision --output json prune --older-than 2d --above-percent 70"
            ),
            "{out}"
        );

        let is_active = format!("systemctl is-active --quiet {TIMER_NAME}");
        let reload = "systemctl daemon-reload".to_string();
        let from = fake.commands().len();
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                is_active.clone(),
                reload.clone(),
                format!("systemctl enable {TIMER_NAME}"),
                is_active.clone(),
                format!("systemctl start {TIMER_NAME}"),
                // The check after apply.
                is_active.clone(),
            ],
            "{out}"
        );
        // Nothing to remove, no cron report folder.
        assert!(!out.contains("removed"), "{out}");
        assert!(!exists(&fake, "/var/lib/runner-provision"));
        assert!(fake.read(TIMER).contains("OnCalendar=daily"));
        assert!(
            fake.read(SERVICE)
                .contains("--older-than 2d --above-percent 70")
        );
        assert!(exists(&fake, TIMER_WANTS));
        assert!(!exists(&fake, CRON));

        let before = fake.snapshot();
        let from = fake.commands().len();
        let (again, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
        assert_eq!(fake.snapshot(), before, "a second apply changed files");
        assert_eq!(fake.ran_in_root_since(from), [is_active.as_str()], "{out}");

        // New settings rewrite the service only, and reload: the timer
        // stays enabled and running.
        settings.profile.prune.older_than = "12h".into();
        let from = fake.commands().len();
        let (changed, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(changed.changed, 1, "{out}");
        assert!(
            out.contains(&format!("wrote {SERVICE}")) && !out.contains(&format!("wrote {TIMER}")),
            "{out}"
        );
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                is_active.clone(),
                reload.clone(),
                is_active.clone(),
                is_active.clone()
            ],
            "{out}"
        );

        // Stopped by hand, still enabled: started again, no reload.
        std::fs::remove_file(fake.root().join("run/fake-active").join(TIMER_NAME)).expect("stop");
        let from = fake.commands().len();
        let (restarted, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((restarted.changed, restarted.failed), (1, 0), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                is_active.clone(),
                is_active.clone(),
                format!("systemctl start {TIMER_NAME}"),
                is_active.clone()
            ],
            "{out}"
        );

        settings.profile.prune.schedule = PruneSchedule::Off;
        let from = fake.commands().len();
        let (off, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((off.changed, off.failed), (1, 0), "{out}");
        assert!(!exists(&fake, TIMER) && !exists(&fake, SERVICE), "{out}");
        assert!(out.contains(&format!("stopped {TIMER_NAME}")), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                is_active,
                format!("systemctl stop {TIMER_NAME}"),
                format!("systemctl disable {TIMER_NAME}"),
                reload,
            ],
            "{out}"
        );
        assert!(!exists(&fake, TIMER_WANTS), "{out}");
        assert!(!exists(&fake, "/var/lib/runner-provision"));
        let (plan, out) = go(&fake, &settings, Mode::Plan, true);
        assert_eq!(plan.pending, 0, "{out}");
    }

    #[test]
    fn without_systemd_a_cron_entry_runs_it() {
        let fake = FakeHost::debian12();
        fake.write("/usr/local/bin/runner-provision", "#!/bin/sh\n");
        std::fs::remove_dir_all(fake.root().join("run/systemd")).expect("no systemd");
        std::fs::create_dir_all(fake.root().join("etc/cron.d")).expect("cron.d");
        let settings = scheduled(&fake, PruneSchedule::Hourly);
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        let cron = fake.read(CRON);
        assert!(cron.contains("@hourly root runner-provision --output json prune --older-than 2d --above-percent 70 > /var/lib/runner-provision/prune.jsonl"), "{cron}");
        assert!(!exists(&fake, TIMER));
        assert!(exists(&fake, "/var/lib/runner-provision"));
        let before = fake.snapshot();
        let (again, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
        assert_eq!(fake.snapshot(), before);
    }

    #[test]
    fn an_image_gets_the_timer_enabled_but_not_started() {
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        fake.write("/lib/systemd/systemd", "");
        let settings = scheduled(&fake, PruneSchedule::Weekly);
        let (applied, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        assert!(exists(&fake, TIMER_WANTS), "{out}");
        // Neither reloaded nor asked nor started.
        assert_eq!(
            fake.ran_in_root_since(0),
            [format!("systemctl enable {TIMER_NAME}")],
            "{out}"
        );
    }

    #[test]
    fn an_image_without_systemd_gets_a_cron_entry() {
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        std::fs::create_dir_all(fake.root().join("etc/cron.d")).expect("cron.d");
        let settings = scheduled(&fake, PruneSchedule::Daily);
        let (applied, out) = go(&fake, &settings, Mode::Apply, false);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        assert!(
            fake.read(CRON).contains("@daily root runner-provision"),
            "{out}"
        );
        assert!(!exists(&fake, TIMER) && !exists(&fake, SERVICE), "{out}");
        assert_eq!(fake.ran_in_root_since(0), Vec::<String>::new(), "{out}");
    }

    #[test]
    fn off_with_the_timer_enabled_but_stopped_disables_it_without_a_stop() {
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        let mut settings = scheduled(&fake, PruneSchedule::Daily);
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(applied.failed, 0, "{out}");
        std::fs::remove_file(fake.root().join("run/fake-active").join(TIMER_NAME)).expect("stop");

        settings.profile.prune.schedule = PruneSchedule::Off;
        let (plan, out) = go(&fake, &settings, Mode::Plan, true);
        assert_eq!(plan.pending, 1, "{out}");
        assert!(
            out.contains(&format!("stop and disable {TIMER_NAME}")),
            "{out}"
        );
        let from = fake.commands().len();
        let (off, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!((off.changed, off.failed), (1, 0), "{out}");
        assert_eq!(
            fake.ran_in_root_since(from),
            [
                format!("systemctl is-active --quiet {TIMER_NAME}"),
                format!("systemctl disable {TIMER_NAME}"),
                "systemctl daemon-reload".to_string(),
            ],
            "{out}"
        );
        assert!(!out.contains("stopped"), "{out}");
    }

    #[test]
    fn what_would_break_is_refused_before_any_change() {
        // Someone else's file at the path.
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        fake.write(TIMER, "[Timer]\nOnCalendar=minutely\n");
        let settings = scheduled(&fake, PruneSchedule::Daily);
        let before = fake.snapshot();
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(applied.failed, 1, "{out}");
        assert!(out.contains("not written by runner-provision"), "{out}");
        assert_eq!(fake.snapshot(), before);
        // ... and left alone when the schedule is off.
        let (off, out) = go(&fake, &fake.settings(None), Mode::Apply, true);
        assert_eq!((off.changed, off.failed), (0, 0), "{out}");
        assert_eq!(fake.snapshot(), before);

        // The tool is nowhere the timer looks: plan warns, apply refuses.
        let fake = FakeHost::debian12();
        let settings = scheduled(&fake, PruneSchedule::Daily);
        let (plan, out) = go(&fake, &settings, Mode::Plan, true);
        assert_eq!(plan.failed, 0, "{out}");
        assert!(out.contains("none of them has it"), "{out}");
        let before = fake.snapshot();
        let (applied, out) = go(&fake, &settings, Mode::Apply, true);
        assert_eq!(applied.failed, 1, "{out}");
        assert_eq!(fake.snapshot(), before);

        // Neither systemd nor cron.
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        std::fs::remove_dir_all(fake.root().join("run/systemd")).expect("no systemd");
        let (applied, out) = go(
            &fake,
            &scheduled(&fake, PruneSchedule::Daily),
            Mode::Apply,
            true,
        );
        assert_eq!(applied.failed, 1, "{out}");
        assert!(out.contains("install cron"), "{out}");
    }

    #[test]
    fn remove_takes_the_timer_back_and_a_second_remove_changes_nothing() {
        let fake = FakeHost::debian12();
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        let settings = scheduled(&fake, PruneSchedule::Daily);
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let only = Selection {
            only: vec![StepId::PruneSchedule],
            skip: Vec::new(),
        };
        let applied = run(&host, &settings, &only, Mode::Apply, &reporter);
        assert_eq!(applied.failed, 0, "{}", reporter.captured());
        crate::receipt::record_run(&host).expect("receipt");
        let receipt = fake.read(crate::receipt::PATH);
        assert!(
            receipt.contains(TIMER) && receipt.contains(SERVICE),
            "{receipt}"
        );

        let options = crate::remove::Options {
            dry_run: false,
            purge: false,
        };
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let removed = crate::remove::run(&host, &reporter, &options).expect("remove");
        assert_eq!(removed.failed, 0, "{}", reporter.captured());
        assert!(!exists(&fake, TIMER) && !exists(&fake, SERVICE));
        assert!(
            !exists(&fake, TIMER_WANTS)
                && !exists(&fake, &format!("/run/fake-active/{TIMER_NAME}"))
        );
        let after = fake.snapshot();
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let again = crate::remove::run(&host, &reporter, &options).expect("remove");
        assert_eq!(
            (again.changed, again.failed),
            (0, 0),
            "{}",
            reporter.captured()
        );
        assert_eq!(fake.snapshot(), after);
    }
}
