//! The files that run `runner-provision prune` on a schedule: a systemd
//! service and its timer, or, on a host without systemd, a cron.d entry.
//! Each starts with the tool's marker, so only the tool's own files are
//! ever replaced or removed.
//!
//! The command is found on the path systemd (239 and later) and the cron
//! entry search, not at the path of the binary that wrote the files: the
//! package puts it in /usr/bin, the portable binary goes to /usr/local/bin.

pub use super::shutdown_unit::MARKER;
use crate::profile::PruneSchedule;

pub const SERVICE_NAME: &str = "runner-provision-prune.service";
pub const TIMER_NAME: &str = "runner-provision-prune.timer";
/// Where the cron entry leaves the last run's report (JSON Lines).
pub const CRON_REPORT: &str = "/var/lib/runner-provision/prune.jsonl";
/// The folders the timer and the cron entry find the tool in.
pub const SEARCH_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The prune command line. `older_than` is a validated age (digits and
/// unit letters only), so nothing needs quoting.
fn command(older_than: &str, above_percent: u64) -> String {
    format!(
        "runner-provision --output json prune --older-than {older_than} --above-percent {above_percent}"
    )
}

/// The oneshot service the timer starts; its report goes to the journal.
pub fn service(older_than: &str, above_percent: u64) -> String {
    format!(
        "{MARKER}: runs `runner-provision prune` for {TIMER_NAME}.\n\
[Unit]\n\
Description=Prune Docker data older than {older_than} when its filesystem is more than {above_percent}% full\n\
Documentation=man:runner-provision-prune(1)\n\
After=docker.service\n\
\n\
[Service]\n\
Type=oneshot\n\
ExecStart={}\n\
Nice=10\n\
IOSchedulingClass=idle\n",
        command(older_than, above_percent)
    )
}

/// The timer: `OnCalendar=` the schedule, spread over the fleet, caught up
/// after a host was off at the time (`Persistent=`).
pub fn timer(schedule: PruneSchedule) -> String {
    let (calendar, spread) = calendar(schedule);
    format!(
        "{MARKER}: runs {SERVICE_NAME} {calendar}.\n\
[Unit]\n\
Description=Prune Docker data {calendar} when its filesystem fills\n\
\n\
[Timer]\n\
OnCalendar={calendar}\n\
RandomizedDelaySec={spread}\n\
Persistent=true\n\
\n\
[Install]\n\
WantedBy=timers.target\n"
    )
}

/// The /etc/cron.d entry for hosts without systemd. The report goes to
/// [`CRON_REPORT`]; stderr stays out of it (cron mails or logs it).
pub fn cron(schedule: PruneSchedule, older_than: &str, above_percent: u64) -> String {
    let (calendar, _) = calendar(schedule);
    format!(
        "{MARKER}: runs `runner-provision prune` {calendar}.\n\
SHELL=/bin/sh\n\
PATH={SEARCH_PATH}\n\
@{calendar} root {} > {CRON_REPORT}\n",
        command(older_than, above_percent)
    )
}

/// The schedule as systemd's calendar shorthand (cron's `@` names are the
/// same words), and how far runs are spread.
fn calendar(schedule: PruneSchedule) -> (&'static str, &'static str) {
    match schedule {
        PruneSchedule::Hourly => ("hourly", "5min"),
        PruneSchedule::Weekly => ("weekly", "1h"),
        // Off writes no file; daily is the default of an enabled schedule.
        PruneSchedule::Daily | PruneSchedule::Off => ("daily", "1h"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_settings_render_the_same_bytes() {
        for schedule in [
            PruneSchedule::Hourly,
            PruneSchedule::Daily,
            PruneSchedule::Weekly,
        ] {
            assert_eq!(timer(schedule), timer(schedule));
            assert_eq!(cron(schedule, "72h", 80), cron(schedule, "72h", 80));
            assert!(timer(schedule).starts_with(MARKER));
            assert!(cron(schedule, "72h", 80).starts_with(MARKER));
        }
        assert_eq!(service("72h", 80), service("72h", 80));
        assert!(service("72h", 80).starts_with(MARKER));
    }

    #[test]
    fn the_settings_reach_the_command_line() {
        let text = service("1h30m", 5);
        let exec: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ExecStart="))
            .collect();
        assert_eq!(
            exec,
            vec![
                "ExecStart=runner-provision --output json prune --older-than 1h30m --above-percent 5"
            ]
        );
        assert!(text.contains("Type=oneshot\n"));
        assert!(timer(PruneSchedule::Weekly).contains("OnCalendar=weekly\n"));
        assert!(timer(PruneSchedule::Hourly).contains("RandomizedDelaySec=5min\n"));
        assert!(timer(PruneSchedule::Daily).contains("WantedBy=timers.target\n"));
        let cron = cron(PruneSchedule::Hourly, "3d", 90);
        assert!(
            cron.ends_with(
                "\n@hourly root runner-provision --output json prune --older-than 3d --above-percent 90 > /var/lib/runner-provision/prune.jsonl\n"
            ),
            "{cron}"
        );
        assert!(cron.contains(&format!("PATH={SEARCH_PATH}\n")));
    }
}
