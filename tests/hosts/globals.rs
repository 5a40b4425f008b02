//! `[global]` on a real host, and a restart that waits for a running job.
//!
//! The stand-in's `run` (tests/stand-in/src/run.rs) reloads config.toml as
//! GitLab Runner does, serves metrics on `listen_address`, and runs each
//! file of the server folder's `jobs/` as a job until the test removes it;
//! it appends what happened to the server folder's `events.log`, which is
//! read here to check the order across the restart.

use std::io::Read;
use std::process::Stdio;
use std::thread;
use std::time::{Duration, Instant};

use crate::LEGACY_TOKEN;
use crate::harness::{self, Container, Run};
use crate::scenarios::WallTime;

const SERVER: &str = "/var/lib/gitlab-runner-stand-in/server";
const EVENTS: &str = "/var/lib/gitlab-runner-stand-in/server/events.log";
const CONFIG: &str = "/etc/gitlab-runner/config.toml";

/// One line of events.log: unix ms, pid, event and its details.
#[derive(Debug, Clone)]
struct Event {
    at: u128,
    pid: u32,
    what: String,
}

fn events(host: &Container) -> Vec<Event> {
    std::fs::read_to_string(host.path(EVENTS))
        .unwrap_or_default()
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            Some(Event {
                at: parts.next()?.parse().ok()?,
                pid: parts.next()?.parse().ok()?,
                what: parts.next()?.to_string(),
            })
        })
        .collect()
}

fn position(all: &[Event], pid: u32, what: &str) -> usize {
    all.iter()
        .position(|e| e.pid == pid && e.what.starts_with(what))
        .unwrap_or_else(|| panic!("no `{what}` from pid {pid} in events.log: {all:#?}"))
}

/// Waits up to `secs` for `found` to be true of events.log.
fn wait_for(host: &Container, secs: u64, what: &str, found: impl Fn(&[Event]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !found(&events(host)) {
        assert!(
            Instant::now() < deadline,
            "{what} within {secs} s: {:#?}",
            events(host)
        );
        thread::sleep(Duration::from_millis(100));
    }
}

fn main_pid(host: &Container) -> u32 {
    host.sh_ok("systemctl show -P MainPID gitlab-runner")
        .trim()
        .parse()
        .expect("MainPID")
}

/// `GET /metrics` from the container's loopback (bash's /dev/tcp: no curl
/// in the image).
fn metrics(host: &Container, port: u16) -> String {
    let script = format!(
        "exec 3<>/dev/tcp/127.0.0.1/{port} && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && timeout 5 cat <&3"
    );
    host.exec(&["bash", "-c", &script]).transcript()
}

/// Runs apply with `args` in the background while job `job` (already taken
/// by runner `pid`) runs: waits for apply's SIGQUIT, checks 3 s later that
/// apply, the runner and the job are all still there, releases the job and
/// returns apply's run and the release time (unix ms).
fn apply_while_a_job_runs(host: &Container, args: &[&str], pid: u32, job: &str) -> (Run, u128) {
    let mut argv = vec!["--output", "json", "apply"];
    argv.extend_from_slice(args);
    let started = Instant::now();
    let mut apply = host
        .tool_command(&argv, Some(LEGACY_TOKEN))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting apply");
    wait_for(host, 60, "apply sends SIGQUIT", |all| {
        all.iter()
            .any(|e| e.pid == pid && e.what == "stop-signal SIGQUIT")
    });
    // It waits while the job runs: the old runner, the job and apply live on.
    thread::sleep(Duration::from_secs(3));
    assert!(
        apply.try_wait().expect("apply status").is_none(),
        "apply did not wait for the job"
    );
    assert!(
        host.sh(&format!("kill -0 {pid}")).status.success(),
        "the runner left before its job ended"
    );
    assert!(
        !events(host)
            .iter()
            .any(|e| e.what == format!("job-finished {job}") || e.what.starts_with("job-aborted")),
        "{:#?}",
        events(host)
    );
    let released = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis();
    std::fs::remove_file(host.path(&format!("{SERVER}/jobs/{job}.running"))).expect("release");
    let mut stdout = String::new();
    let mut stderr = String::new();
    apply
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("stdout");
    apply
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("stderr");
    let status = apply.wait().expect("apply");
    let run = Run::from_output(
        std::process::Output {
            status,
            stdout: stdout.into_bytes(),
            stderr: stderr.into_bytes(),
        },
        started.elapsed(),
    );
    (run, released)
}

/// A newer version of the stand-in package (17.9.0-1, with its helper
/// images) beside the tier's (17.7.0-1 and 17.8.0-1), in a flat repository
/// at /srv/runner-repo-2 that the host's apt reads.
fn second_runner_version(tier: &harness::Tier, host: &Container) {
    let stand_in = crate::stand_in::stand_in_binary().expect("stand-in binary");
    let scripts = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-in");
    let debs = tempfile::tempdir().expect("tempdir");
    let built = std::process::Command::new("sh")
        .arg(scripts.join("build-deb.sh"))
        .arg(&stand_in)
        .arg(debs.path())
        .env("STAND_IN_VERSION", "17.9.0-1")
        .env("STAND_IN_COMPRESS", "gzip")
        .status()
        .expect("build-deb.sh");
    assert!(built.success(), "building the 17.9.0-1 stand-in package");
    for entry in std::fs::read_dir(tier.runner_repo()).expect("runner repo") {
        let path = entry.expect("entry").path();
        if path.extension().is_some_and(|e| e == "deb") {
            std::fs::copy(&path, debs.path().join(path.file_name().expect("name"))).expect("copy");
        }
    }
    let made = std::process::Command::new("sh")
        .arg(scripts.join("build-repo.sh"))
        .arg(debs.path())
        .arg(host.path("/srv/runner-repo-2"))
        .status()
        .expect("build-repo.sh");
    assert!(made.success(), "building /srv/runner-repo-2");
    host.write(
        "/etc/apt/sources.list.d/runner-repo-2.list",
        "deb [trusted=yes] file:/srv/runner-repo-2 ./\n",
    );
    host.sh_ok("apt-get update -q");
}

/// 19. `[global]` set with the runner running: reloaded without a restart;
///     a new listen_address restarts it gracefully, after a held job ended.
pub fn globals_and_a_held_job() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("globals_and_a_held_job");
    // The server folder exists before the runner first starts: its events
    // are logged from the start.
    let host = tier.boot_with("rp-globals", |root| {
        std::fs::create_dir_all(root.join(SERVER.trim_start_matches('/')).join("jobs"))
            .expect("server folder");
    });
    let globals = [
        "--concurrent",
        "4",
        "--check-interval",
        "1",
        "--global-shutdown-timeout",
        "30",
    ];
    let first = host.apply(&globals, Some(LEGACY_TOKEN));
    first.assert_applied("apply with [global]");
    let config = host.read(CONFIG);
    for line in [
        "concurrent = 4\n",
        "check_interval = 1\n",
        "shutdown_timeout = 30\n",
    ] {
        assert!(config.contains(line), "{line}: {config}");
    }
    let pid = main_pid(&host);
    assert_ne!(pid, 0, "gitlab-runner runs");
    // The running runner reloads the file by itself (every 3 s).
    wait_for(&host, 10, "the runner reloads concurrent = 4", |all| {
        all.iter()
            .any(|e| e.pid == pid && e.what.starts_with("config-loaded concurrent=4"))
    });

    let before = host.managed();
    let again = host.apply(&globals, Some(LEGACY_TOKEN));
    again.assert_converged("second apply with the same [global]");
    before.assert_same(&host.managed(), "second apply with the same [global]");

    // concurrent changed: written, reloaded by the same process, no restart.
    let globals = [
        "--concurrent",
        "2",
        "--check-interval",
        "1",
        "--global-shutdown-timeout",
        "30",
    ];
    let changed = host.apply(&globals, Some(LEGACY_TOKEN));
    changed.assert_applied("concurrent 4 -> 2");
    assert_eq!(changed.summary()["changed"], 1, "{}", changed.transcript());
    wait_for(&host, 10, "the runner reloads concurrent = 2", |all| {
        all.iter()
            .any(|e| e.pid == pid && e.what.starts_with("config-loaded concurrent=2"))
    });
    assert_eq!(
        main_pid(&host),
        pid,
        "a reloadable key restarted the runner"
    );
    assert!(
        !events(&host)
            .iter()
            .any(|e| e.what.starts_with("stop-signal")),
        "{:#?}",
        events(&host)
    );

    // A job the runner takes and holds until it is released.
    host.write(&format!("{SERVER}/jobs/held"), "");
    wait_for(&host, 10, "the runner takes the job", |all| {
        all.iter()
            .any(|e| e.pid == pid && e.what.starts_with("job-started held"))
    });

    // A new listen_address needs a restart: apply waits for the job.
    let mut args: Vec<&str> = globals.to_vec();
    args.extend_from_slice(&["--listen-address", "127.0.0.1:9252"]);
    let (run, released) = apply_while_a_job_runs(&host, &args, pid, "held");
    run.assert_applied("apply with a job running");
    let text = run.transcript();
    assert!(
        text.contains("gitlab-runner is running 1 job: stopping it gracefully"),
        "{text}"
    );
    assert!(
        run.step("runner-globals")["changes"]
            .to_string()
            .contains("after its 1 running job finished"),
        "{text}"
    );

    // The order, from the stand-in's own log: the job ran to its end under
    // the old process, which then exited; only then did the new one start.
    let all = events(&host);
    let new_pid = main_pid(&host);
    assert_ne!(new_pid, pid, "restarted");
    let job_started = position(&all, pid, "job-started held");
    let quit = position(&all, pid, "stop-signal SIGQUIT");
    let job_finished = position(&all, pid, "job-finished held");
    let exited = position(&all, pid, "run-exited");
    let restarted = position(&all, new_pid, "run-started");
    assert!(
        job_started < quit && quit < job_finished && job_finished < exited && exited < restarted,
        "order: job started {job_started}, SIGQUIT {quit}, job finished {job_finished}, exited {exited}, new runner {restarted}: {all:#?}"
    );
    assert!(
        all[job_finished].at >= released,
        "the job ended when released"
    );
    assert!(
        all[restarted]
            .what
            .contains("listen_address=127.0.0.1:9252"),
        "{all:#?}"
    );
    assert!(!all.iter().any(|e| e.what.starts_with("job-aborted")));
    let served = metrics(&host, 9252);
    assert!(served.contains("gitlab_runner_concurrent 2"), "{served}");

    let before = host.managed();
    let mut args: Vec<&str> = globals.to_vec();
    args.extend_from_slice(&["--listen-address", "127.0.0.1:9252"]);
    let last = host.apply(&args, Some(LEGACY_TOKEN));
    last.assert_converged("apply after the restart");
    before.assert_same(&host.managed(), "apply after the restart");
    assert_eq!(main_pid(&host), new_pid, "no second restart");

    // An upgrade (runner.version) while a job runs: the package's scripts
    // would stop the runner with SIGTERM, so apply stops it gracefully
    // first; the new version starts after the job ended.
    second_runner_version(&tier, &host);
    host.write(&format!("{SERVER}/jobs/held2"), "");
    wait_for(&host, 10, "the runner takes the second job", |all| {
        all.iter()
            .any(|e| e.pid == new_pid && e.what.starts_with("job-started held2"))
    });
    args.extend_from_slice(&["--runner-version", "17.9.0"]);
    let (upgrade, released) = apply_while_a_job_runs(&host, &args, new_pid, "held2");
    upgrade.assert_applied("upgrade with a job running");
    let changes = upgrade.step("runner-install")["changes"].to_string();
    assert!(
        changes.contains("its 1 running job finished")
            && changes.contains("upgraded gitlab-runner 17.8.0-1 → 17.9.0-1"),
        "{}",
        upgrade.transcript()
    );
    let status = host.read("/var/lib/dpkg/status");
    assert!(
        status.contains("Package: gitlab-runner\nStatus: hold ok installed"),
        "{status}"
    );
    let all = events(&host);
    let upgraded_pid = main_pid(&host);
    assert!(
        upgraded_pid != 0 && upgraded_pid != new_pid,
        "the new version runs"
    );
    let finished = position(&all, new_pid, "job-finished held2");
    let exited = position(&all, new_pid, "run-exited");
    let started = position(&all, upgraded_pid, "run-started");
    assert!(
        all[finished].at >= released && finished < exited && exited < started,
        "order: job finished {finished}, exited {exited}, new version {started}: {all:#?}"
    );
    assert!(!all.iter().any(|e| e.what.starts_with("job-aborted")));

    let before = host.managed();
    let last = host.apply(&args, Some(LEGACY_TOKEN));
    last.assert_converged("apply after the upgrade");
    before.assert_same(&host.managed(), "apply after the upgrade");
}
