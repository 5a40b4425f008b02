//! `gitlab-runner run`: the service's process, as GitLab Runner 17's
//! `commands/multi.go` behaves where the tool can see it.
//!
//! - config.toml is stat'ed every 3 s (`ReloadConfigInterval`) and loaded
//!   again when its modification time changed: `concurrent` and
//!   `check_interval` apply without a restart.
//! - The metrics server is set up once at start from `--listen-address`
//!   (`LISTEN_ADDRESS`) or `listen_address`; a port it cannot bind is fatal.
//! - Jobs come from "the server", a folder the test prepares
//!   (`GITLAB_RUNNER_STAND_IN_SERVER`, default
//!   /var/lib/gitlab-runner-stand-in/server): each file `jobs/NAME` is a
//!   pending job. Every `check_interval` a free worker (fewer than
//!   `concurrent` jobs running) takes one: renames it `jobs/NAME.running`
//!   and runs it as a child process, as the shell executor does, until the
//!   test removes that file (the job ends).
//! - SIGQUIT: no new job; the process exits once its running jobs have
//!   ended. SIGTERM or SIGINT (also after SIGQUIT): running jobs are
//!   aborted and the process exits.
//!
//! When the server folder exists, every event is appended to its
//! `events.log` (`<unix ms> <pid> <event> [details]`) so a test can check
//! the order of what happened across restarts.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use nix::sys::signal::{SigSet, Signal};

use crate::Ctx;
use crate::config::{self, Table, Value};
use crate::log::{Exit, Level, Outcome};

/// What the loop reads from config.toml.
struct Settings {
    concurrent: i64,
    check_interval: Duration,
}

fn settings(cfg: &Table) -> Settings {
    let int = |key: &str| match cfg.get(key) {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    let check = int("check_interval");
    Settings {
        concurrent: int("concurrent"),
        // `GetCheckInterval`: 0 or less is the default, 3 s.
        check_interval: Duration::from_secs(if check > 0 { check as u64 } else { 3 }),
    }
}

/// The events log of the server folder (nothing when there is no folder).
struct Events {
    path: Option<PathBuf>,
}

impl Events {
    fn new(server: &Path) -> Self {
        Self {
            path: server.is_dir().then(|| server.join("events.log")),
        }
    }

    fn add(&self, event: &str) {
        let Some(path) = &self.path else { return };
        let ms = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis());
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{ms} {} {event}", std::process::id());
        }
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Serves `/metrics` (GitLab Runner's `gitlab_runner_concurrent`) on `listener`.
fn serve_metrics(listener: TcpListener, concurrent: Arc<AtomicI64>) {
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let body = format!(
                "# HELP gitlab_runner_concurrent The current value of concurrent setting\n# TYPE gitlab_runner_concurrent gauge\ngitlab_runner_concurrent {}\n",
                concurrent.load(Ordering::Relaxed)
            );
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let mut request = [0u8; 1024];
            let _ = std::io::Read::read(&mut stream, &mut request);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
}

pub fn run_service(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let p = crate::parse_flags(ctx, "run", crate::service::RUN_FLAGS, args)?;
    let config_path = match p.string("config") {
        c if c.is_empty() => ctx.default_config_file(),
        c => PathBuf::from(c),
    };
    ctx.out.log(
        Level::Info,
        &format!("Starting multi-runner from {}...", config_path.display()),
        &[("builds", "0".into()), ("max_builds", "0".into())],
    );
    crate::user_mode_warning(ctx, false);
    let wd = p.string("working-directory");
    if !wd.is_empty() {
        std::env::set_current_dir(&wd).map_err(|e| Exit::Fatal(format!("chdir {wd}: {e}")))?;
    }
    let load = |path: &Path| match config::load(path) {
        Ok(c) => Ok(c.unwrap_or_else(config::new_config)),
        Err(e) => Err(format!("loading config: {e}")),
    };
    let cfg =
        load(&config_path).map_err(|e| Exit::Fatal(format!("Failed to load config  error={e}")))?;
    let _ = crate::system_id::ensure(&config_path, Path::new("/"));
    let mut now = settings(&cfg);
    let mut loaded_at = modified(&config_path);
    let fields = |builds: usize, max: i64| {
        [
            ("builds", builds.to_string()),
            ("max_builds", max.to_string()),
        ]
    };
    ctx.out.log(
        Level::Info,
        "Configuration loaded",
        &fields(0, now.concurrent),
    );
    if now.concurrent < 1 {
        return Err(Exit::Fatal(
            "Concurrent is less than 1 - no jobs will be processed".into(),
        ));
    }
    let server = crate::verify::server_dir(ctx);
    let events = Events::new(&server);

    // Signals are taken by one thread that waits for them; every thread
    // started from here on inherits the mask (std's spawn clears it for
    // child processes).
    let mut set = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGQUIT] {
        set.add(s);
    }
    set.thread_block()
        .map_err(|e| Exit::Fatal(format!("blocking signals: {e}")))?;

    let concurrent = Arc::new(AtomicI64::new(now.concurrent));
    let flag_address = p.string("listen-address");
    let address = if flag_address.is_empty() {
        cfg.get_str("listen_address").unwrap_or("").to_string()
    } else {
        flag_address
    };
    if address.is_empty() {
        ctx.out.log(
            Level::Info,
            "listen_address not defined, metrics & debug endpoints disabled",
            &fields(0, now.concurrent),
        );
    } else {
        let listener = TcpListener::bind(&address).map_err(|e| {
            Exit::Fatal(format!(
                "Failed to create listener for metrics server  error=\"listen tcp {address}: bind: {e}\""
            ))
        })?;
        serve_metrics(listener, concurrent.clone());
        ctx.out.log(
            Level::Info,
            "Metrics server listening",
            &[
                ("address", address.clone()),
                ("builds", "0".into()),
                ("max_builds", now.concurrent.to_string()),
            ],
        );
    }
    ctx.out.log(
        Level::Info,
        "[session_server].listen_address not defined, session endpoints disabled",
        &fields(0, now.concurrent),
    );
    ctx.out.log(
        Level::Info,
        "Initializing executor providers",
        &fields(0, now.concurrent),
    );
    events.add(&format!(
        "run-started concurrent={} listen_address={address}",
        now.concurrent
    ));

    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        while let Ok(signal) = set.wait() {
            if tx.send(signal).is_err() {
                break;
            }
        }
    });

    let jobs_dir = server.join("jobs");
    let mut jobs: Vec<(String, Child, Instant)> = Vec::new();
    let mut stop: Option<Signal> = None;
    let mut last_stat = Instant::now();
    let mut last_feed = Instant::now();
    loop {
        if let Ok(signal) = rx.recv_timeout(Duration::from_millis(100)) {
            events.add(&format!("stop-signal {}", signal.as_str()));
            if stop.is_none() && signal == Signal::SIGQUIT {
                ctx.out.log(
                    Level::Warning,
                    "Starting graceful shutdown, waiting for builds to finish",
                    &[("StopSignal", "sigquit".into())],
                );
            } else if signal != Signal::SIGQUIT {
                ctx.out.log(
                    Level::Warning,
                    "Starting forceful shutdown",
                    &[("StopSignal", signal.as_str().to_lowercase())],
                );
                for (name, child, _) in &mut jobs {
                    let _ = child.kill();
                    let _ = child.wait();
                    events.add(&format!("job-aborted {name}"));
                    ctx.out.log(
                        Level::Error,
                        "Job failed: aborted",
                        &[("job", name.clone())],
                    );
                }
                jobs.clear();
            }
            stop = Some(match stop {
                Some(Signal::SIGQUIT) | None => signal,
                Some(earlier) => earlier,
            });
        }
        // Jobs that ended.
        let mut i = 0;
        while i < jobs.len() {
            if matches!(jobs[i].1.try_wait(), Ok(Some(_))) {
                let (name, _, started) = jobs.remove(i);
                events.add(&format!("job-finished {name}"));
                ctx.out.log(
                    Level::Info,
                    "Job succeeded",
                    &[
                        (
                            "duration_s",
                            format!("{:.1}", started.elapsed().as_secs_f64()),
                        ),
                        ("job", name),
                    ],
                );
            } else {
                i += 1;
            }
        }
        if stop.is_some() && jobs.is_empty() {
            break;
        }
        if stop.is_some() {
            continue;
        }
        if last_stat.elapsed() >= Duration::from_secs(3) {
            last_stat = Instant::now();
            let mtime = modified(&config_path);
            if mtime.is_some() && mtime > loaded_at {
                loaded_at = mtime;
                match load(&config_path) {
                    Ok(cfg) => {
                        now = settings(&cfg);
                        concurrent.store(now.concurrent, Ordering::Relaxed);
                        ctx.out.log(
                            Level::Info,
                            "Configuration loaded",
                            &fields(jobs.len(), now.concurrent),
                        );
                        events.add(&format!(
                            "config-loaded concurrent={} check_interval={}",
                            now.concurrent,
                            now.check_interval.as_secs()
                        ));
                    }
                    Err(e) => ctx.out.log(
                        Level::Error,
                        &format!("Failed to load config {e}"),
                        &fields(jobs.len(), now.concurrent),
                    ),
                }
            }
        }
        if last_feed.elapsed() >= now.check_interval && (jobs.len() as i64) < now.concurrent {
            last_feed = Instant::now();
            if let Some((name, child)) = take_job(&jobs_dir) {
                events.add(&format!("job-started {name} child={}", child.id()));
                ctx.out.log(
                    Level::Info,
                    "Checking for jobs... received",
                    &[("job", name.clone()), ("runner", "stand-in".into())],
                );
                jobs.push((name, child, Instant::now()));
            }
        }
    }
    ctx.out.info("All workers stopped.");
    ctx.out.info("Can exit now!");
    events.add("run-exited");
    Ok(())
}

/// Takes the first pending job (by name) and starts it: a child process
/// that runs until the test removes `jobs/NAME.running`.
fn take_job(dir: &Path) -> Option<(String, Child)> {
    let mut pending: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| !n.contains('.'))
        .collect();
    pending.sort();
    for name in pending {
        let running = dir.join(format!("{name}.running"));
        if std::fs::rename(dir.join(&name), &running).is_err() {
            continue;
        }
        let child = Command::new("/bin/sh")
            .args([
                "-c",
                "while [ -e \"$0\" ]; do sleep 0.1; done",
                &running.display().to_string(),
            ])
            .spawn()
            .ok()?;
        return Some((name, child));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_interval_zero_is_go_s_default() {
        let mut cfg = config::new_config();
        config::normalize(&mut cfg);
        let s = settings(&cfg);
        assert_eq!(
            (s.concurrent, s.check_interval),
            (1, Duration::from_secs(3))
        );
        cfg.set("check_interval", Value::Int(7));
        cfg.set("concurrent", Value::Int(4));
        let s = settings(&cfg);
        assert_eq!(
            (s.concurrent, s.check_interval),
            (4, Duration::from_secs(7))
        );
    }

    #[test]
    fn a_job_runs_until_its_file_is_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        assert!(take_job(dir.path()).is_none(), "no pending job");
        std::fs::write(dir.path().join("b"), "").expect("job");
        std::fs::write(dir.path().join("a"), "").expect("job");
        let (name, mut child) = take_job(dir.path()).expect("taken");
        assert_eq!(name, "a", "the first by name");
        assert!(dir.path().join("a.running").exists());
        std::thread::sleep(Duration::from_millis(300));
        assert!(child.try_wait().expect("status").is_none(), "held");
        std::fs::remove_file(dir.path().join("a.running")).expect("release");
        let status = child.wait().expect("ends");
        assert!(status.success());
        let (name, mut other) = take_job(dir.path()).expect("the next one");
        assert_eq!(name, "b");
        std::fs::remove_file(dir.path().join("b.running")).expect("release");
        other.wait().expect("ends");
        assert!(
            take_job(dir.path()).is_none(),
            "running files are not pending"
        );
    }
}
