//! The scenarios of issue 3, one function each. Every scenario boots its own
//! host, and every one that converges ends with a second `apply` that must
//! report zero changes and leave every managed file byte-identical.

use std::fs;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::checks::{self, assert_provisioned, assert_second_apply_changes_nothing};
use crate::harness::{self, Container, PROFILE, TEST_PROFILE, TOOL, comm, descendants, kill_tree};
use crate::{GLRT_TOKEN, LEGACY_TOKEN};

/// Prints a scenario's wall time when it ends (README's table comes from it).
pub struct WallTime(&'static str, Instant);

impl WallTime {
    pub fn start(name: &'static str) -> WallTime {
        WallTime(name, Instant::now())
    }
}

impl Drop for WallTime {
    fn drop(&mut self) {
        let outcome = if thread::panicking() {
            "failed"
        } else {
            "passed"
        };
        eprintln!(
            "scenario {}: {outcome} in {:.1}s",
            self.0,
            self.1.elapsed().as_secs_f64()
        );
    }
}

/// Installs the stand-in gitlab-runner package straight from the local
/// repository's file (no apt source added: that is the tool's job).
fn preinstall_gitlab_runner(host: &Container) {
    host.sh_ok(harness::INSTALL_STAND_IN_BY_HAND);
}

fn preinstall_docker(host: &Container) {
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io");
}

fn status_of(run: &harness::Run, id: &str) -> String {
    run.step(id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// 1. Fresh host, `sudo runner-provision apply` with a legacy token.
pub fn fresh_host() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("fresh_host");
    let host = tier.boot("rp-fresh");

    let first = host.apply(&[], Some(LEGACY_TOKEN));
    first.assert_applied("apply on a fresh host");
    for id in [
        "runner-install",
        "runner-register",
        "docker-install",
        "docker-group",
        "overlay-module",
        "docker-driver",
    ] {
        assert_eq!(
            status_of(&first, id),
            "changed",
            "{id} on a fresh host\n{}",
            first.transcript()
        );
    }
    assert_provisioned(&host, true);
    assert_eq!(
        checks::registrations(&host).len(),
        1,
        "gitlab-runner register ran once"
    );
    checks::assert_registration_env(&host, "REGISTRATION_TOKEN");

    let verify = host.tool(&["verify"], None);
    verify.assert_success("verify on the provisioned host");

    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    assert_eq!(
        checks::registrations(&host).len(),
        1,
        "the second apply registered again"
    );
}

/// 2. A `glrt-` token registers with the new flow; tags with it are refused
///    before any change.
pub fn glrt_token() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("glrt_token");
    let host = tier.boot("rp-glrt");

    let before = host.managed();
    let refused = host.apply(&["--tag-list", "docker,linux"], Some(GLRT_TOKEN));
    assert_eq!(
        refused.code(),
        Some(1),
        "tags with a glrt- token must be refused\n{}",
        refused.transcript()
    );
    assert_eq!(
        status_of(&refused, "preflight"),
        "failed",
        "refused in preflight\n{}",
        refused.transcript()
    );
    let said = format!("{}{}", refused.stdout, refused.stderr).to_lowercase();
    assert!(
        said.contains("tag"),
        "the refusal names the tags\n{}",
        refused.transcript()
    );
    before.assert_same(&host.managed(), "refused glrt- apply with tags");
    assert!(
        !host
            .sh("dpkg-query -W -f '${Status}' docker.io")
            .stdout
            .contains("installed"),
        "docker.io was installed by a refused apply"
    );

    let applied = host.apply(&[], Some(GLRT_TOKEN));
    applied.assert_applied("apply with a glrt- token");
    assert_eq!(status_of(&applied, "runner-register"), "changed");
    assert_provisioned(&host, true);
    let runner = &checks::runners(&host)[0];
    assert_eq!(
        runner.get("token").and_then(|t| t.as_str()),
        Some(GLRT_TOKEN),
        "the --token flow keeps the glrt- token as the runner's token"
    );
    checks::assert_registration_env(&host, "CI_SERVER_TOKEN");

    assert_second_apply_changes_nothing(&host, Some(GLRT_TOKEN));
}

/// 3. Docker installed but stopped and disabled: started and enabled, not
///    reinstalled.
pub fn docker_stopped_and_disabled() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("docker_stopped_and_disabled");
    let host = tier.boot("rp-stopped");
    preinstall_docker(&host);
    host.sh_ok("systemctl disable --now docker.service docker.socket");
    assert_eq!(
        host.sh("systemctl is-active docker").stdout.trim(),
        "inactive"
    );
    assert_eq!(
        host.sh("systemctl is-enabled docker").stdout.trim(),
        "disabled"
    );
    let docker_installs = || {
        host.sh(
            "grep -E ' (install|upgrade|remove|purge) (docker\\.io|containerd|runc):' \
             /var/log/dpkg.log",
        )
        .stdout
    };
    let installs_before = docker_installs();
    assert!(
        !installs_before.is_empty(),
        "dpkg.log records the setup's install"
    );

    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    applied.assert_applied("apply with docker stopped and disabled");
    assert_eq!(status_of(&applied, "docker-install"), "changed");
    assert_eq!(
        docker_installs(),
        installs_before,
        "docker packages were reinstalled or upgraded"
    );
    assert_provisioned(&host, true);

    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
}

/// A hand-kept config.toml with two runners; the first matches this host.
fn two_runner_config(host_name: &str) -> String {
    format!(
        r#"# Hand-edited: keep this comment and the order of everything.
concurrent = 4
check_interval = 0
shutdown_timeout = 0

[session_server]
  session_timeout = 1800

# The runner this host was provisioned with.
[[runners]]
  name = "{host_name}"
  url = "https://gitlab.example.com/"
  id = 101
  token = "glrt-existing-first-runner"
  token_obtained_at = 2024-01-01T00:00:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  # Job variables, kept by hand.
  environment = ["FOO=bar", "GIT_DEPTH=10"]
  [runners.cache]
    MaxUploadedArchiveSize = 0

# A second runner for another GitLab.
[[runners]]
  name = "docs-builder"
  url = "https://gitlab.other.example/"
  id = 202
  token = "glrt-existing-second-runner"
  token_obtained_at = 2024-02-01T00:00:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  [runners.custom_build_dir]
  [runners.cache]
    MaxUploadedArchiveSize = 0
"#
    )
}

/// True when `needles` appear in `haystack` in the same order.
fn in_order<'a>(needles: impl IntoIterator<Item = &'a str>, haystack: &[&str]) -> bool {
    let mut rest = haystack.iter();
    needles
        .into_iter()
        .all(|needle| rest.any(|line| *line == needle))
}

/// 4. Already registered, two runners, comments, an existing `environment`.
pub fn already_registered_two_runners() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("already_registered_two_runners");
    let host = tier.boot("rp-tworunners");
    preinstall_gitlab_runner(&host);
    let name = checks::host_name(&host);
    let original = two_runner_config(&name);
    host.write("/etc/gitlab-runner/config.toml", &original);
    fs::set_permissions(
        host.path("/etc/gitlab-runner/config.toml"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod config.toml");
    let registrations = checks::registrations(&host);

    // No token: an already registered host must not need one.
    let applied = host.apply(&[], None);
    applied.assert_applied("apply on an already registered host");
    assert_eq!(status_of(&applied, "runner-register"), "ok");
    assert_eq!(
        checks::registrations(&host),
        registrations,
        "gitlab-runner register ran on an already registered host"
    );

    let text = host.read("/etc/gitlab-runner/config.toml");
    let runners = checks::runners(&host);
    let names: Vec<_> = runners
        .iter()
        .map(|r| r.get("name").and_then(|v| v.as_str()).unwrap_or_default())
        .collect();
    assert_eq!(
        names,
        [name.as_str(), "docs-builder"],
        "runners and their order\n{text}"
    );
    assert_eq!(
        checks::environment(&runners[0]),
        ["FOO=bar", "GIT_DEPTH=10", "DOCKER_DRIVER=overlay2"],
        "existing variables kept, in order, DOCKER_DRIVER added\n{text}"
    );
    assert_eq!(
        checks::environment(&runners[1]),
        ["DOCKER_DRIVER=overlay2"],
        "\n{text}"
    );
    // Every line but the edited `environment` survives, in order: comments,
    // indentation, tokens, tables.
    let new_lines: Vec<&str> = text.lines().collect();
    let kept = original.lines().filter(|l| !l.contains("environment"));
    assert!(
        in_order(kept, &new_lines),
        "config.toml lost or reordered lines:\n--- before\n{original}--- after\n{text}"
    );
    assert_eq!(host.mode("/etc/gitlab-runner/config.toml"), 0o600);
    checks::assert_docker_ready(&host);

    assert_second_apply_changes_nothing(&host, None);
}

/// Holds apt's and dpkg's locks (fcntl, as apt takes them) for `secs`.
const HOLD_DPKG_LOCK: &str = r#"
use Fcntl qw(F_SETLK F_WRLCK SEEK_SET O_RDWR O_CREAT);
my @held;
for my $f ("/var/lib/dpkg/lock-frontend", "/var/lib/dpkg/lock") {
    sysopen(my $h, $f, O_RDWR | O_CREAT, 0640) or die "open $f: $!";
    my $lock = pack("s s x4 q q l x4", F_WRLCK, SEEK_SET, 0, 0, 0);
    fcntl($h, F_SETLK, $lock) or die "lock $f: $!";
    push @held, $h;
}
open(my $flag, ">", "/var/lib/runner-provision-tests/dpkg-lock-held") or die; close $flag;
sleep $ARGV[0];
"#;

/// 5. The dpkg lock is held by another process for 20 s when `apply` starts.
pub fn dpkg_lock_held() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("dpkg_lock_held");
    let host = tier.boot("rp-dpkglock");
    host.write("/root/hold-dpkg-lock.pl", HOLD_DPKG_LOCK);
    host.sh_ok("systemd-run --unit=hold-dpkg-lock perl /root/hold-dpkg-lock.pl 20");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !host
        .path("/var/lib/runner-provision-tests/dpkg-lock-held")
        .exists()
    {
        assert!(Instant::now() < deadline, "the lock holder did not start");
        thread::sleep(Duration::from_millis(50));
    }
    let held_since = Instant::now();
    // The lock really is held: apt refuses at once without a timeout.
    let probe = host.sh("apt-get -o DPkg::Lock::Timeout=0 check");
    assert!(
        !probe.status.success() && probe.stderr.contains("lock"),
        "the setup does not hold the dpkg lock\n{}",
        probe.transcript()
    );

    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    let waited = held_since.elapsed();
    applied.assert_applied("apply while the dpkg lock is held");
    assert!(
        waited >= Duration::from_secs(19),
        "apply finished after {waited:?}, before the lock was released: did it wait?"
    );
    // The first apt operation (runner-install) is the one that waits; on its
    // own it takes a second or two.
    let first_apt_ms = duration_ms(&applied, "runner-install");
    assert!(
        first_apt_ms >= 15_000,
        "runner-install took {first_apt_ms} ms: it did not wait for the lock\n{}",
        applied.transcript()
    );
    let said = format!("{}{}", applied.stdout, applied.stderr).to_lowercase();
    assert!(
        said.contains("waiting") && said.contains("lock"),
        "apply waited without saying so\n{}",
        applied.transcript()
    );
    assert_provisioned(&host, true);

    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
}

/// Docker's unit made slow: `systemctl start` returns at once (Type=simple)
/// but the daemon answers only after 15 s.
const SLOW_DOCKER: &str = "[Service]
Type=simple
ExecStart=
ExecStart=/bin/sh -c 'sleep 15; exec /usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS'
";

const BROKEN_DOCKER: &str = "[Service]
Type=simple
Restart=no
ExecStart=
ExecStart=/bin/sh -c 'echo \"simulated breakage: dockerd cannot start\" >&2; exit 1'
";

fn duration_ms(run: &harness::Run, id: &str) -> u64 {
    run.step(id)["duration_ms"].as_u64().unwrap_or(0)
}

/// 6. Docker slow to come up: docker-verify polls and succeeds. Then broken:
///    verify and apply fail with a diagnosis.
pub fn docker_slow_then_broken() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("docker_slow_then_broken");
    let host = tier.boot_with("rp-slowdocker", |root| {
        let dir = root.join("etc/systemd/system/docker.service.d");
        fs::create_dir_all(&dir).expect("drop-in dir");
        fs::write(dir.join("10-slow.conf"), SLOW_DOCKER).expect("drop-in");
    });

    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    applied.assert_applied("apply with a slow Docker daemon");
    assert!(
        matches!(
            status_of(&applied, "docker-verify").as_str(),
            "ok" | "changed"
        ),
        "{}",
        applied.transcript()
    );
    // The daemon came up 15 s after each (re)start; something waited for it.
    let waited: u64 = ["docker-install", "docker-driver", "docker-verify"]
        .iter()
        .map(|id| duration_ms(&applied, id))
        .sum();
    assert!(
        waited >= 10_000,
        "the slow daemon was not waited for ({waited} ms)\n{}",
        applied.transcript()
    );
    assert_provisioned(&host, true);
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));

    // Broken: the daemon cannot start at all.
    host.write(
        "/etc/systemd/system/docker.service.d/20-broken.conf",
        BROKEN_DOCKER,
    );
    host.sh("systemctl daemon-reload; systemctl restart docker");
    let before = host.managed();
    let verify = host.tool(&["verify", "--verify-timeout", "10"], None);
    assert_eq!(
        verify.code(),
        Some(1),
        "verify on a broken daemon\n{}",
        verify.transcript()
    );
    let said = format!("{}{}", verify.stdout, verify.stderr).to_lowercase();
    assert!(
        said.contains("docker")
            && (said.contains("not running")
                || said.contains("failed")
                || said.contains("inactive")
                || said.contains("cannot")
                || said.contains("not active")),
        "verify gives no diagnosis of the broken daemon\n{}",
        verify.transcript()
    );
    let broken = host.apply(&["--verify-timeout", "10"], None);
    eprintln!(
        "[{}] apply on a broken daemon:\n{}",
        host.name,
        broken.transcript()
    );
    assert_eq!(
        broken.code(),
        Some(1),
        "apply on a broken daemon\n{}",
        broken.transcript()
    );
    let failed: Vec<_> = broken
        .events()
        .into_iter()
        .filter(|e| e["event"] == "step_finished" && e["status"] == "failed")
        .collect();
    assert!(
        failed.iter().any(|e| {
            matches!(e["id"].as_str(), Some("docker-install" | "docker-verify"))
                && e["reason"].as_str().is_some_and(|r| !r.trim().is_empty())
        }),
        "a Docker step fails with a reason\n{}",
        broken.transcript()
    );
    before.assert_same(&host.managed(), "apply on a broken daemon");
}

/// The main pid of a unit in the container (its number in the container).
fn main_pid(host: &Container, unit: &str) -> String {
    host.sh_ok(&format!("systemctl show -P MainPID {unit}"))
        .trim()
        .to_string()
}

/// 7. gitlab-runner's service runs as gitlab-runner: restarted after the
///    group change, so its jobs can reach the Docker socket.
pub fn service_runs_as_gitlab_runner() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("service_runs_as_gitlab_runner");
    let host = tier.boot("rp-serviceuser");
    preinstall_gitlab_runner(&host);
    host.write(
        "/etc/systemd/system/gitlab-runner.service.d/10-user.conf",
        "[Service]\nUser=gitlab-runner\n",
    );
    // An operator who runs the service unprivileged hands it its config.
    host.sh_ok("chown -R gitlab-runner:gitlab-runner /etc/gitlab-runner");
    host.sh_ok("systemctl daemon-reload && systemctl restart gitlab-runner");
    assert_eq!(
        host.sh("systemctl is-active gitlab-runner").stdout.trim(),
        "active"
    );
    let pid_before = main_pid(&host, "gitlab-runner");
    let user = host.sh_ok(&format!("ps -o user= -p {pid_before}"));
    assert_eq!(
        user.trim(),
        "gitlab-runner",
        "the drop-in runs the service as gitlab-runner"
    );

    // The journal's cursor before apply: only what apply did is judged below.
    let cursor =
        host.sh_ok("journalctl -n 0 --show-cursor --no-pager | sed -n 's/^-- cursor: //p'");
    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    applied.assert_applied("apply with the service running as gitlab-runner");
    assert_provisioned(&host, false);
    let owner = host.sh_ok("stat -c %U:%G /etc/gitlab-runner/config.toml");
    assert_eq!(
        owner.trim(),
        "gitlab-runner:gitlab-runner",
        "config.toml's owner was not kept"
    );
    assert_eq!(
        host.sh("systemctl is-active gitlab-runner").stdout.trim(),
        "active"
    );
    let pid_after = main_pid(&host, "gitlab-runner");
    assert_ne!(pid_after, "0", "gitlab-runner is not running after apply");
    assert_ne!(
        pid_after,
        pid_before,
        "gitlab-runner was not restarted after joining group docker\n{}",
        applied.transcript()
    );
    // Stopped gracefully (SIGQUIT: running jobs finish), not by the unit's
    // SIGTERM, which aborts them.
    let journal = host.sh_ok(&format!(
        "journalctl -u gitlab-runner --no-pager -o cat --after-cursor '{}'",
        cursor.trim()
    ));
    assert!(
        journal.contains("Starting graceful shutdown")
            && !journal.contains("Starting forceful shutdown"),
        "gitlab-runner was not stopped gracefully\n{journal}"
    );
    // The service's own credentials, as a job it starts inherits them.
    let docker_gid = host.sh_ok("getent group docker | cut -d: -f3");
    let groups = host.sh_ok(&format!(
        "awk '/^Groups:/ {{ $1=\"\"; print }}' /proc/{pid_after}/status"
    ));
    assert!(
        groups.split_whitespace().any(|g| g == docker_gid.trim()),
        "the running service is not in group docker (groups {groups:?}, docker {docker_gid:?})"
    );
    let job = host.sh(&format!(
        "groups=$(awk '/^Groups:/ {{ $1=\"\"; print }}' /proc/{pid_after}/status | tr -s ' ' ',' | sed 's/^,//;s/,$//'); \
         uid=$(awk '/^Uid:/ {{ print $2 }}' /proc/{pid_after}/status); \
         gid=$(awk '/^Gid:/ {{ print $2 }}' /proc/{pid_after}/status); \
         setpriv --reuid=$uid --regid=$gid --groups=$groups docker info --format '{{{{.Driver}}}}'"
    ));
    assert!(
        job.status.success() && job.stdout.trim() == "overlay2",
        "a job with the service's credentials cannot reach the socket\n{}",
        job.transcript()
    );
    let job_runuser = host.sh("runuser -u gitlab-runner -- docker info --format '{{.Driver}}'");
    assert!(job_runuser.status.success(), "{}", job_runuser.transcript());

    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    assert_eq!(
        main_pid(&host, "gitlab-runner"),
        pid_after,
        "a converged apply restarted gitlab-runner"
    );
}

/// Temporary files next to managed files (a SIGKILL between writing one and
/// renaming it into place leaves it; the next apply must not keep it).
fn stray_temp_files(host: &Container) -> Vec<String> {
    let mut found = Vec::new();
    for dir in [
        "/etc",
        "/etc/gitlab-runner",
        "/etc/docker",
        "/etc/apt/sources.list.d",
        "/etc/apt/keyrings",
        "/etc/modules-load.d",
    ] {
        let Ok(entries) = fs::read_dir(host.path(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            // Temporary files are regular files (Debian's modules-load.d/
            // modules.conf, say, is a symbolic link).
            if !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let name = entry.file_name().to_string_lossy().into_owned();
            let temp = name.contains(".tmp")
                || name.ends_with('~')
                || (name.starts_with('.')
                    && ![".pwd.lock", ".runner_system_id"].contains(&name.as_str()))
                || [
                    "config.toml.",
                    "daemon.json.",
                    "modules.",
                    "group.",
                    "gitlab-runner.sources.",
                ]
                .iter()
                .any(|p| name.starts_with(p));
            if temp {
                found.push(format!("{dir}/{name}"));
            }
        }
    }
    found
}

/// Managed files must be whole after any kill: old content or new, never
/// truncated.
fn assert_not_torn(host: &Container, when: &str) {
    let strays = stray_temp_files(host);
    if !strays.is_empty() {
        eprintln!("[{}] {when}: temporary files left: {strays:?}", host.name);
    }
    let config = host.path("/etc/gitlab-runner/config.toml");
    if config.exists() {
        let text = fs::read_to_string(&config).expect("config.toml");
        assert!(
            text.trim().is_empty() || toml::from_str::<toml::Table>(&text).is_ok(),
            "{when}: config.toml is torn:\n{text}"
        );
        if text.contains("[[runners]]") {
            checks::runners(host);
        }
    }
    let daemon = host.path("/etc/docker/daemon.json");
    if daemon.exists() {
        let text = fs::read_to_string(&daemon).expect("daemon.json");
        assert!(
            serde_json::from_str::<serde_json::Value>(&text).is_ok(),
            "{when}: daemon.json is torn: {text:?}"
        );
    }
    let modules = host.read("/etc/modules");
    assert!(
        modules.contains("/etc/modules: kernel modules"),
        "{when}: /etc/modules lost its content: {modules:?}"
    );
    let group = host.read("/etc/group");
    assert!(group.starts_with("root:x:0:"), "{when}: /etc/group is torn");
}

/// 8. `apply` killed with SIGKILL during apt (dpkg unpacking the fresh
///    install's packages), during registration and as docker-driver starts;
///    the next `apply` converges and nothing is torn or left behind.
pub fn interrupted_apply() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("interrupted_apply");
    let host = tier.boot("rp-interrupted");
    let args = ["--output", "json", "apply"];

    // During apt: dpkg unpacking the packages of the fresh install (gitlab-runner
    // and Docker Engine, in the one transaction runner-install starts).
    let mut child = host
        .tool_command(&args, Some(LEGACY_TOKEN))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawning apply");
    let lines = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let reader = {
        let lines = lines.clone();
        let stdout = child.stdout.take().expect("stdout");
        thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                lines.lock().expect("lines").push(line);
            }
        })
    };
    let in_install = || {
        lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.contains("\"step_started\"") && l.contains("\"runner-install\""))
    };
    let deadline = Instant::now() + Duration::from_secs(300);
    let mut killed = false;
    while Instant::now() < deadline && !killed {
        if child.try_wait().expect("try_wait").is_some() {
            break;
        }
        // apt hands dpkg a directory of packages (--recursive), so the
        // package names are not on its argv: the step tells which install
        // (the first apply's only one).
        let unpacking = in_install()
            && descendants(child.id()).into_iter().any(|pid| {
                comm(pid) == "dpkg"
                    && fs::read(format!("/proc/{pid}/cmdline"))
                        .map(|c| String::from_utf8_lossy(&c).contains("--unpack"))
                        .unwrap_or(false)
            });
        if unpacking {
            thread::sleep(Duration::from_millis(500));
            kill_tree(child.id());
            killed = true;
        } else {
            thread::sleep(Duration::from_millis(20));
        }
    }
    let _ = child.wait();
    let _ = reader.join();
    assert!(
        killed,
        "dpkg never unpacked the packages during apply:\n{}",
        lines.lock().expect("lines").join("\n")
    );
    assert_not_torn(&host, "killed during apt");

    // During registration: as soon as `gitlab-runner register` runs (it is
    // quick: if it is never caught, the kill lands 3 s into the step).
    let mut caught_register = false;
    let (lines, killed) = host.kill_tool_when(&args, Some(LEGACY_TOKEN), |line, top| {
        if !(line.contains("\"step_started\"") && line.contains("\"runner-register\"")) {
            return false;
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline && !caught_register {
            caught_register = descendants(top)
                .into_iter()
                .any(|pid| comm(pid) == "gitlab-runner");
        }
        true
    });
    eprintln!(
        "[{}] killed while gitlab-runner register ran: {caught_register}",
        host.name
    );
    assert!(
        killed,
        "runner-register never started:\n{}",
        lines.join("\n")
    );
    assert_not_torn(&host, "killed during runner-register");

    // As docker-driver starts (config.toml and daemon.json writes).
    let (lines, killed) = host.kill_tool_when(&args, Some(LEGACY_TOKEN), |line, _| {
        line.contains("\"step_started\"") && line.contains("\"docker-driver\"")
    });
    assert!(
        killed,
        "the apply after the interruptions never reached docker-driver:\n{}",
        lines.join("\n")
    );
    assert_not_torn(&host, "killed during docker-driver");

    let recovered = host.apply(&[], Some(LEGACY_TOKEN));
    recovered.assert_applied("apply after three interruptions");
    assert_not_torn(&host, "after the converging apply");
    // The stand-in's own temp file (gitlab-runner killed mid-register) is
    // not the tool's to clean up.
    let strays: Vec<String> = stray_temp_files(&host)
        .into_iter()
        .filter(|name| !name.contains(".stand-in."))
        .collect();
    assert!(
        strays.is_empty(),
        "temporary files left by the interrupted runs survive a converging apply: {strays:?}"
    );
    assert_provisioned(&host, true);
    let audit = host.sh("dpkg --audit");
    assert!(
        audit.status.success() && audit.stdout.trim().is_empty(),
        "dpkg is left half-configured\n{}",
        audit.transcript()
    );

    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
}

/// Reads every process's argv on this machine (which sees the container's
/// processes too) in a loop, recording any that holds one of `secrets`.
pub struct ArgvSampler {
    stop: Arc<AtomicBool>,
    passes: Arc<AtomicUsize>,
    thread: Option<thread::JoinHandle<Vec<String>>>,
}

impl ArgvSampler {
    pub fn start(
        secrets: &'static [&'static str],
        watch_for: &'static str,
    ) -> (ArgvSampler, Arc<AtomicBool>) {
        let stop = Arc::new(AtomicBool::new(false));
        let passes = Arc::new(AtomicUsize::new(0));
        let seen_watched = Arc::new(AtomicBool::new(false));
        let thread = {
            let (stop, passes, seen_watched) = (stop.clone(), passes.clone(), seen_watched.clone());
            thread::spawn(move || {
                let mut leaks = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
                        let Ok(argv) = fs::read(entry.path().join("cmdline")) else {
                            continue;
                        };
                        let argv = String::from_utf8_lossy(&argv).replace('\0', " ");
                        if secrets.iter().any(|secret| argv.contains(secret)) {
                            leaks.push(argv.clone());
                        }
                        if argv.contains(watch_for) {
                            seen_watched.store(true, Ordering::Relaxed);
                        }
                    }
                    passes.fetch_add(1, Ordering::Relaxed);
                }
                leaks
            })
        };
        (
            ArgvSampler {
                stop,
                passes,
                thread: Some(thread),
            },
            seen_watched,
        )
    }

    /// Stops sampling; returns the argv lines that held the secret.
    pub fn finish(mut self) -> (Vec<String>, usize) {
        self.stop.store(true, Ordering::Relaxed);
        let leaks = self
            .thread
            .take()
            .expect("sampler thread")
            .join()
            .expect("sampler panicked");
        (leaks, self.passes.load(Ordering::Relaxed))
    }
}

impl Drop for ArgvSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

pub fn assert_no_secret(text: &str, secret: &str, where_: &str) {
    assert!(
        !text.contains(secret),
        "the token appears in {where_}:\n{}",
        text.lines()
            .filter(|l| l.contains(secret))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Every file under `dir` (a container path) that contains `secret`.
pub fn files_containing(host: &Container, dir: &str, secret: &str) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![host.path(dir)];
    while let Some(path) = stack.pop() {
        let Ok(meta) = fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            stack.extend(
                fs::read_dir(&path)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.path()),
            );
        } else if meta.is_file() {
            let bytes = fs::read(&path).unwrap_or_default();
            if bytes.windows(secret.len()).any(|w| w == secret.as_bytes()) {
                hits.push(
                    path.strip_prefix(&host.root)
                        .unwrap_or(&path)
                        .display()
                        .to_string(),
                );
            }
        }
    }
    hits
}

/// 9. During registration the token never appears in any argv (sampled from
///    /proc and with `ps` inside), nor in output, /var/log or the journal.
pub fn token_stays_secret() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("token_stays_secret");
    let host = tier.boot("rp-secret");
    // Unique lines only: the loop runs hundreds of times a second.
    host.write(
        "/root/ps-sampler.sh",
        "while :; do ps -eo args; done | awk '!seen[$0]++' >/root/ps-samples.log\n",
    );
    host.sh_ok("systemd-run --unit=ps-sampler sh /root/ps-sampler.sh");
    let (sampler, saw_register) = ArgvSampler::start(&[LEGACY_TOKEN], "gitlab-runner register");

    // Human output, verbose: the most the tool ever prints.
    let human = host.tool(&["-v", "apply"], Some(LEGACY_TOKEN));
    human.assert_success("verbose human apply");
    // Register again, now with JSON output and the token from a file.
    fs::remove_file(host.path("/etc/gitlab-runner/config.toml")).expect("removing config.toml");
    host.write("/root/runner-token", LEGACY_TOKEN);
    host.sh_ok("chmod 600 /root/runner-token");
    let json = host.tool(
        &[
            "-v",
            "--output",
            "json",
            "apply",
            "--token-file",
            "/root/runner-token",
        ],
        None,
    );
    json.assert_success("verbose JSON apply");
    assert_eq!(status_of(&json, "runner-register"), "changed");

    let (leaks, passes) = sampler.finish();
    host.sh("systemctl stop ps-sampler");
    assert!(passes > 10, "the argv sampler barely ran ({passes} passes)");
    assert!(
        leaks.is_empty(),
        "the token appears in argv:\n{}",
        leaks.join("\n")
    );
    let samples = host.read("/root/ps-samples.log");
    assert!(
        samples.contains("gitlab-runner"),
        "ps inside never saw gitlab-runner: the sampler did not run"
    );
    assert_no_secret(&samples, LEGACY_TOKEN, "`ps -eo args` inside the host");
    eprintln!(
        "argv sampler: {passes} passes, saw `gitlab-runner register`: {}",
        saw_register.load(Ordering::Relaxed)
    );

    assert_no_secret(&human.stdout, LEGACY_TOKEN, "stdout (human, -v)");
    assert_no_secret(&human.stderr, LEGACY_TOKEN, "stderr (human, -v)");
    assert_no_secret(&json.stdout, LEGACY_TOKEN, "--output json");
    assert_no_secret(&json.stderr, LEGACY_TOKEN, "stderr (json, -v)");
    let logs = files_containing(&host, "/var/log", LEGACY_TOKEN);
    assert!(
        logs.is_empty(),
        "the token is written under /var/log: {logs:?}"
    );
    let journal = host.sh_ok("journalctl --no-pager -o export");
    assert!(
        journal.len() > 1000,
        "the journal is empty: nothing was checked"
    );
    assert_no_secret(&journal, LEGACY_TOKEN, "the journal");
    checks::assert_registration_env(&host, "REGISTRATION_TOKEN");
}

/// Runs the tool with another profile file (written into the container).
fn with_profile(host: &Container, profile_text: &str, args: &[&str]) -> harness::Run {
    host.write("/etc/runner-provision/other.toml", profile_text);
    let argv: Vec<&str> = host
        .tool_argv(args)
        .into_iter()
        .map(|a| {
            if a == PROFILE {
                "/etc/runner-provision/other.toml"
            } else {
                a
            }
        })
        .collect();
    let mut cmd = host.command(&argv);
    cmd.env("RUNNER_TOKEN", LEGACY_TOKEN);
    let run = harness::Run::capture(&mut cmd);
    eprintln!(
        "[{}] other profile: {} -> {}",
        host.name,
        args.join(" "),
        run.status
    );
    run
}

/// Exit 1, an error that says `expect` (any of them), no panic, files unchanged.
pub fn assert_refused(
    host: &Container,
    what: &str,
    before: &harness::Snapshot,
    run: &harness::Run,
    expect: &[&str],
) {
    assert_eq!(run.code(), Some(1), "{what}: exit 1\n{}", run.transcript());
    let said = format!("{}{}", run.stdout, run.stderr).to_lowercase();
    assert!(
        !said.contains("panicked"),
        "{what}: the tool panicked\n{}",
        run.transcript()
    );
    assert!(
        expect.iter().any(|e| said.contains(&e.to_lowercase())),
        "{what}: the error does not say {expect:?}\n{}",
        run.transcript()
    );
    let diff = before.differences(&host.managed());
    assert!(
        diff.is_empty(),
        "{what}: files changed:\n  {}\n{}",
        diff.join("\n  "),
        run.transcript()
    );
}

/// 10. Bad input on a real host: clear error, exit 1, every file unchanged.
pub fn bad_input() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("bad_input");
    let host = tier.boot("rp-badinput");

    // A fresh host first.
    let before = host.managed();
    let unknown_key = TEST_PROFILE.replace("[kernel]\n", "[kernel]\ncolour = \"blue\"\n");
    let run = with_profile(&host, &unknown_key, &["apply"]);
    assert_refused(&host, "unknown profile key", &before, &run, &["colour"]);
    assert!(
        format!("{}{}", run.stdout, run.stderr).contains("other.toml"),
        "the error names the profile file\n{}",
        run.transcript()
    );

    let as_user = harness::Run::capture(
        host.command(&[
            "runuser",
            "-u",
            "tester",
            "--",
            TOOL,
            "--profile",
            PROFILE,
            "apply",
        ])
        .env("RUNNER_TOKEN", LEGACY_TOKEN),
    );
    assert_refused(&host, "not root", &before, &as_user, &["root"]);

    // Then a provisioned host with a malformed config.toml.
    host.apply(&[], Some(LEGACY_TOKEN))
        .assert_applied("apply on the fresh host");
    host.write(
        "/etc/gitlab-runner/config.toml",
        "concurrent = 1\n[[runners]]\n  name = \"unterminated\n  url = \"https://gitlab.example.com/\"\n",
    );
    let before = host.managed();
    let run = host.apply(&[], Some(LEGACY_TOKEN));
    assert_refused(
        &host,
        "malformed config.toml",
        &before,
        &run,
        &["config.toml"],
    );
    let plan = host.tool(&["plan"], None);
    assert_refused(
        &host,
        "plan with a malformed config.toml",
        &before,
        &plan,
        &["config.toml"],
    );

    // A fresh host whose gitlab-runner repository cannot be reached.
    drop(host);
    let fresh = tier.boot("rp-badrepo");
    let before = fresh.managed();
    // 192.0.2.0/24 is TEST-NET-1; the container has no route anywhere.
    let unreachable =
        TEST_PROFILE.replace("file:/srv/runner-repo/", "http://192.0.2.1/gitlab-runner/");
    let run = with_profile(&fresh, &unreachable, &["apply"]);
    assert_refused(
        &fresh,
        "unreachable apt repository",
        &before,
        &run,
        &["192.0.2.1", "repository", "apt-get update"],
    );
}
