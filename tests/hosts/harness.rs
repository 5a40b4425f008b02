//! Boots throwaway Debian hosts in systemd-nspawn containers and runs the tool
//! in them as `sudo runner-provision …` would run on a real host.
//!
//! Owns: the cached base image (built by `build-image.sh`), the per-run local
//! apt repository of the stand-in `gitlab-runner`, the container's lifetime
//! (an RAII guard that powers it off and removes its directory, also on
//! panic), and running commands inside it. It never installs or reconfigures
//! anything on the machine that runs the tests: containers have their own
//! network namespace (`--private-network`, only `lo`), so Docker's bridge and
//! iptables rules stay inside, and apt inside reads only local mirrors
//! bind-mounted read-only.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Cached images, one directory per image key (see build-image.sh).
pub const CACHE_ROOT: &str = "/var/cache/runner-provision-tests";
/// Containers' root directories. Not tmpfs: Docker's overlay2 inside needs a
/// real file system under /var/lib/docker.
pub const WORK_ROOT: &str = "/var/tmp/runner-provision-hosts";
const PATH_INSIDE: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// Where the tool and its test profile live inside a container.
pub const TOOL: &str = "/usr/local/sbin/runner-provision";
/// Where the Debian package installs it (the release scenarios).
pub const PACKAGED_TOOL: &str = "/usr/bin/runner-provision";
pub const PROFILE: &str = "/etc/runner-provision/hosts.toml";
/// The stand-in gitlab-runner appends one JSON line per invocation here
/// (argv, which env var carried the token; never the token itself).
pub const STAND_IN_LOG: &str = "/var/lib/runner-provision-tests/stand-in.jsonl";
/// The URL every scenario registers against (not on loopback: the stand-in
/// does not connect to it).
pub const URL: &str = "https://gitlab.example.com/";
/// Any command in a container that runs longer than this is killed, so a
/// hanging tool fails the test instead of hanging CI.
const COMMAND_TIMEOUT_SECS: u32 = 600;

/// The test profile: the default profile, with the runner repository pointed
/// at the local one and the group risk accepted.
pub const TEST_PROFILE: &str = test_profile! {
    description: "real-host tier: local repositories, no network",
    url: "https://gitlab.example.com/",
    name: "",
    repository: "file:/srv/runner-repo/",
    verify_timeout: 60,
};

/// Files the tool manages or may touch, checked byte for byte around runs
/// that must change nothing. Directories stand for every file in them.
pub const MANAGED: &[&str] = &[
    "/etc/gitlab-runner/config.toml",
    "/etc/docker/daemon.json",
    "/etc/modules",
    "/etc/modules-load.d",
    "/etc/group",
    "/etc/gshadow",
    "/etc/passwd",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d",
    "/etc/apt/keyrings",
    "/var/lib/dpkg/status",
];

/// Scenarios share this machine's two cores and run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());
static FIXTURE: OnceLock<Result<Fixture, String>> = OnceLock::new();
/// The release scenarios' runner repository (a static stand-in: it must
/// run on bullseye's older glibc too).
static STATIC_RUNNER_REPO: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// What every scenario needs, built once per test process.
pub struct Fixture {
    /// CACHE_ROOT/<key>: `rootfs/` (the image) and `debian/` (the mirror).
    image: PathBuf,
    /// Flat apt repository holding the stand-in gitlab-runner .deb.
    runner_repo: PathBuf,
    tool: PathBuf,
}

/// A scenario's claim on the tier: holds the lock that serializes scenarios.
pub struct Tier {
    fixture: &'static Fixture,
    _serial: MutexGuard<'static, ()>,
}

/// Starts a scenario, or returns None after printing why it is skipped.
/// With RUNNER_PROVISION_REQUIRE_HOSTS=1 (CI) a missing prerequisite fails
/// instead, so the tier can never pass by skipping.
pub fn tier() -> Option<Tier> {
    if let Some(reason) = missing_prerequisite() {
        return skip(&reason);
    }
    let serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let fixture = match FIXTURE.get_or_init(Fixture::build) {
        Ok(fixture) => fixture,
        Err(e) => panic!("building the real-host tier's fixture: {e}"),
    };
    Some(Tier {
        fixture,
        _serial: serial,
    })
}

/// Prints why a scenario is skipped, or fails it under
/// RUNNER_PROVISION_REQUIRE_HOSTS=1.
pub fn skip<T>(reason: &str) -> Option<T> {
    if std::env::var("RUNNER_PROVISION_REQUIRE_HOSTS").as_deref() == Ok("1") {
        panic!("RUNNER_PROVISION_REQUIRE_HOSTS=1 but the real-host tier cannot run: {reason}");
    }
    eprintln!("skipped: {reason}");
    None
}

fn missing_prerequisite() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("the real-host tier needs root (systemd-nspawn, debootstrap)".into());
    }
    let search = format!(
        "{}:/usr/local/sbin:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    );
    for (tool, package) in [
        ("debootstrap", "debootstrap"),
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("flock", "util-linux"),
        ("dpkg-deb", "dpkg"),
        ("kill", "procps"),
    ] {
        if which::which_in(tool, Some(&search), "/").is_err() {
            return Some(format!("{tool} not found (apt-get install {package})"));
        }
    }
    None
}

impl Fixture {
    fn build() -> Result<Fixture, String> {
        let image = image_for("bookworm")?;
        let tool = PathBuf::from(env!("CARGO_BIN_EXE_runner-provision"));
        let stand_in = crate::stand_in::stand_in_binary()?;
        let runner_repo = runner_repo(&stand_in, "runner-repo")?;
        Ok(Fixture {
            image,
            runner_repo,
            tool,
        })
    }
}

/// The cached image of a Debian release (build-image.sh builds it once).
fn image_for(release: &str) -> Result<PathBuf, String> {
    let started = Instant::now();
    let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts");
    let out = Command::new("sh")
        .arg(here.join("build-image.sh"))
        .arg(CACHE_ROOT)
        .arg(release)
        .env("PATH", sbin_path())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("running build-image.sh: {e}"))?;
    if !out.status.success() {
        return Err(format!("build-image.sh {release} failed ({})", out.status));
    }
    let image = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    eprintln!(
        "{release} image {} ready in {:.1}s",
        image.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(image)
}

/// This test process's run directory (removed once the process is gone).
fn run_dir() -> Result<PathBuf, String> {
    fs::create_dir_all(WORK_ROOT).map_err(|e| format!("creating {WORK_ROOT}: {e}"))?;
    remove_stale_runs();
    Ok(Path::new(WORK_ROOT).join(format!("run-{}", std::process::id())))
}

/// The stand-in's versions in the tier's repository, as GitLab's repository
/// spells releases: both from 17.7 on, so each comes with its own
/// gitlab-runner-helper-images package and depends on exactly it (a pin of
/// the older one must install both in one transaction). An unpinned install
/// gets the newer one, as from GitLab's repository.
pub const RUNNER_VERSIONS: [&str; 2] = ["17.7.0-1", "17.8.0-1"];

/// Shell that installs the newest stand-in gitlab-runner straight from the
/// repository's files, with its helper-images package (no apt source added:
/// that is the tool's job). Prints nothing.
pub const INSTALL_STAND_IN_BY_HAND: &str = "v=$(ls /srv/runner-repo | sed -n 's/^gitlab-runner_\\(.*\\)_amd64\\.deb$/\\1/p' | sort -V | tail -n1) && \
     helper=/srv/runner-repo/gitlab-runner-helper-images_${v}_all.deb && \
     if [ ! -e \"$helper\" ]; then helper=; fi && \
     DEBIAN_FRONTEND=noninteractive apt-get install -y -q /srv/runner-repo/gitlab-runner_${v}_amd64.deb $helper >/dev/null";

/// A flat apt repository holding the stand-in's packages (every version in
/// RUNNER_VERSIONS and their helper images), built from `stand_in`.
fn runner_repo(stand_in: &Path, name: &str) -> Result<PathBuf, String> {
    let run_dir = run_dir()?;
    let debs = run_dir.join(format!("{name}-debs"));
    let runner_repo = run_dir.join(name);
    fs::create_dir_all(&debs).map_err(|e| format!("creating {}: {e}", debs.display()))?;
    let stand_in_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/stand-in");
    for version in RUNNER_VERSIONS {
        run_host(
            Command::new("sh")
                .arg(stand_in_dir.join("build-deb.sh"))
                .arg(stand_in)
                .arg(&debs)
                .env("STAND_IN_VERSION", version)
                // gzip: a few seconds per package where xz takes half a minute.
                .env("STAND_IN_COMPRESS", "gzip"),
        )?;
    }
    run_host(
        Command::new("sh")
            .arg(stand_in_dir.join("build-repo.sh"))
            .arg(&debs)
            .arg(&runner_repo),
    )?;
    Ok(runner_repo)
}

/// The stand-in linked statically (glibc's crt-static), so it runs on any
/// release's glibc, as GitLab's static Go binary does. Its own target
/// directory keeps the flags from rebuilding the workspace's.
fn static_stand_in() -> Result<PathBuf, String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let target_dir = manifest.join("target/stand-in-static");
    let triple = "x86_64-unknown-linux-gnu";
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "-q", "--locked", "-p", "gitlab-runner-stand-in"])
        .args(["--target", triple])
        .current_dir(manifest)
        .env("CARGO_TARGET_DIR", &target_dir)
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .status()
        .map_err(|e| format!("building the static stand-in: {e}"))?;
    let path = target_dir.join(triple).join("debug/gitlab-runner");
    if !status.success() || !path.is_file() {
        return Err(format!(
            "building the static stand-in ({status}) did not produce {}",
            path.display()
        ));
    }
    Ok(path)
}

/// The Debian package `cargo xtask dist` made (RUNNER_PROVISION_DEB names
/// another), or why there is none.
pub fn dist_deb() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os("RUNNER_PROVISION_DEB") {
        return Ok(PathBuf::from(path));
    }
    let dist = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/dist");
    let debs: Vec<PathBuf> = fs::read_dir(&dist)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                .collect()
        })
        .unwrap_or_default();
    match &debs[..] {
        [deb] => Ok(deb.clone()),
        [] => Err(format!(
            "no .deb in {}: run `cargo xtask dist` first (README, Install)",
            dist.display()
        )),
        _ => Err(format!("more than one .deb in {}", dist.display())),
    }
}

/// Removes run directories of test processes that are gone.
fn remove_stale_runs() {
    let Ok(entries) = fs::read_dir(WORK_ROOT) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let gone = match name.strip_prefix("run-") {
            Some(pid) => !Path::new("/proc").join(pid).exists(),
            None => false,
        };
        if gone {
            remove_tree(&entry.path());
        }
    }
}

fn sbin_path() -> String {
    "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into()
}

pub fn remove_tree(path: &Path) {
    let _ = Command::new("rm")
        .arg("-rf")
        .arg("--one-file-system")
        .arg(path)
        .status();
}

/// Runs a command on this machine (never one that changes its configuration).
pub fn run_host(cmd: &mut Command) -> Result<String, String> {
    let out = cmd
        .env("PATH", sbin_path())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{cmd:?}: {}\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A booted container; powered off and removed when dropped.
pub struct Container {
    pub name: String,
    dir: PathBuf,
    /// The container's root directory, as seen from this machine.
    pub root: PathBuf,
    nspawn: Option<Child>,
    /// The container's PID 1, as seen from this machine.
    leader: u32,
    /// The tool's path inside: TOOL, or PACKAGED_TOOL on a release host.
    pub tool: &'static str,
}

impl Tier {
    /// The cached Debian mirror (Docker Engine and its dependencies), as
    /// seen from this machine; /srv/debian inside a container.
    pub fn mirror(&self) -> PathBuf {
        self.fixture.image.join("debian")
    }

    /// The stand-in gitlab-runner's flat repository, as seen from this
    /// machine; /srv/runner-repo inside a container.
    pub fn runner_repo(&self) -> &Path {
        &self.fixture.runner_repo
    }

    /// Boots a fresh copy of the image as host `name`, with the tool at TOOL,
    /// the test profile at PROFILE and fresh package lists (as on any host).
    pub fn boot(&self, name: &str) -> Container {
        self.boot_with(name, |_| {})
    }

    /// As `boot`, with `prepare` editing the root directory before it boots.
    pub fn boot_with(&self, name: &str, prepare: impl FnOnce(&Path)) -> Container {
        self.boot_from(name, &self.fixture.image.join("rootfs"), prepare)
    }

    /// The cached base image's root directory (read only: copy it first).
    pub fn image(&self) -> PathBuf {
        self.fixture.image.join("rootfs")
    }

    /// The local Debian mirror and the stand-in's repository, for a tree
    /// that is not booted (bind them at /srv/debian and /srv/runner-repo).
    pub fn mirrors(&self) -> (PathBuf, PathBuf) {
        (
            self.fixture.image.join("debian"),
            self.fixture.runner_repo.clone(),
        )
    }

    /// The tool's binary on this machine.
    pub fn tool_binary(&self) -> &Path {
        &self.fixture.tool
    }

    /// As `boot_with`, from a copy of the root directory `image` (an image
    /// tree a scenario built) instead of the cached base image.
    pub fn boot_from(&self, name: &str, image: &Path, prepare: impl FnOnce(&Path)) -> Container {
        let fixture = self.fixture;
        boot_image(
            name,
            image,
            &fixture.image.join("debian"),
            &fixture.runner_repo,
            Some(&fixture.tool),
            prepare,
        )
    }

    /// Boots a fresh host of Debian `release` (bullseye, bookworm, trixie)
    /// without the tool: the scenario installs the package `deb`, copied to
    /// /root. Its stand-in gitlab-runner is the static one.
    pub fn boot_release(&self, name: &str, release: &str, deb: &Path) -> Container {
        let image = image_for(release).unwrap_or_else(|e| panic!("{e}"));
        let repo = STATIC_RUNNER_REPO
            .get_or_init(|| static_stand_in().and_then(|s| runner_repo(&s, "runner-repo-static")))
            .as_ref()
            .unwrap_or_else(|e| panic!("the static stand-in's repository: {e}"));
        let file_name = deb.file_name().expect("a .deb file name").to_owned();
        let mut host = boot_image(
            name,
            &image.join("rootfs"),
            &image.join("debian"),
            repo,
            None,
            |root| {
                fs::copy(deb, root.join("root").join(&file_name))
                    .unwrap_or_else(|e| panic!("copying {} into the host: {e}", deb.display()));
            },
        );
        host.tool = PACKAGED_TOOL;
        host
    }
}

/// Boots a copy of the root directory `rootfs`, with `mirror` and
/// `runner_repo` bind-mounted read-only and `tool` (if any) copied to TOOL.
fn boot_image(
    name: &str,
    rootfs: &Path,
    mirror: &Path,
    runner_repo: &Path,
    tool: Option<&Path>,
    prepare: impl FnOnce(&Path),
) -> Container {
    let started = Instant::now();
    let dir = Path::new(WORK_ROOT).join(name);
    remove_tree(&dir);
    fs::create_dir_all(&dir).expect("creating the container directory");
    let root = dir.join("rootfs");
    run_host(
        Command::new("cp")
            .args(["-a", "--reflink=auto"])
            .arg(rootfs)
            .arg(&root),
    )
    .expect("copying the image");
    if let Some(tool) = tool {
        let inside = root.join(TOOL.trim_start_matches('/'));
        fs::copy(tool, &inside).expect("copying the tool into the image");
        fs::set_permissions(&inside, fs::Permissions::from_mode(0o755)).expect("chmod tool");
    }
    // The image carries the build machine's name; each host gets its own
    // (the tool's default runner name), resolvable so sudo stays quiet.
    fs::write(root.join("etc/hostname"), format!("{name}\n")).expect("hostname");
    fs::write(
        root.join("etc/hosts"),
        format!("127.0.0.1\tlocalhost\n127.0.1.1\t{name}\n::1\tlocalhost ip6-localhost\n"),
    )
    .expect("hosts");
    let profile = root.join(PROFILE.trim_start_matches('/'));
    fs::create_dir_all(profile.parent().expect("profile dir")).expect("profile dir");
    fs::write(&profile, TEST_PROFILE).expect("writing the test profile");
    fs::create_dir_all(root.join("var/lib/runner-provision-tests")).expect("log dir");
    prepare(&root);

    let console = fs::File::create(dir.join("console.log")).expect("console log");
    let nspawn = Command::new("systemd-nspawn")
        .env("PATH", sbin_path())
        .env("SYSTEMD_NSPAWN_API_VFS_WRITABLE", "1")
        .arg("--boot")
        .arg("--directory")
        .arg(&root)
        .args([
            "--register=no",
            "--keep-unit",
            "--console=pipe",
            "--capability=all",
            "--system-call-filter=add_key keyctl bpf",
            "--private-network",
        ])
        .arg(format!("--machine={name}"))
        .arg(bind_ro(mirror, "/srv/debian"))
        .arg(bind_ro(runner_repo, "/srv/runner-repo"))
        .stdin(Stdio::null())
        .stdout(console.try_clone().expect("console log"))
        .stderr(console)
        .spawn()
        .expect("starting systemd-nspawn");
    let mut container = Container {
        name: name.to_string(),
        dir,
        root,
        nspawn: Some(nspawn),
        leader: 0,
        tool: TOOL,
    };
    container.wait_for_boot();
    // Docker needs writable cgroups; nspawn mounts them read-only.
    container.sh_ok(
        "mount -o remount,rw /sys/fs/cgroup; \
             for d in /sys/fs/cgroup/*/; do mount -o remount,rw,bind \"$d\"; done",
    );
    container.sh_ok("apt-get update -q");
    eprintln!("[{name}] booted in {:.1}s", started.elapsed().as_secs_f64());
    container
}

fn bind_ro(source: &Path, target: &str) -> String {
    format!("--bind-ro={}:{target}", source.display())
}

/// The result of one command in a container.
pub struct Run {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

impl Run {
    /// Runs `cmd` to completion, capturing its output.
    pub fn capture(cmd: &mut Command) -> Run {
        let started = Instant::now();
        let out = cmd
            .output()
            .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
        Run::from_output(out, started.elapsed())
    }

    pub fn from_output(out: Output, duration: Duration) -> Run {
        Run {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            duration,
        }
    }

    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }

    /// stdout and stderr, for assertion messages.
    pub fn transcript(&self) -> String {
        format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.status, self.stdout, self.stderr
        )
    }

    /// The JSON Lines events of an `--output json` run.
    pub fn events(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .filter(|line| !line.trim().is_empty())
            .map(|line| {
                serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "stdout line is not JSON ({e}): {line}\n{}",
                        self.transcript()
                    )
                })
            })
            .collect()
    }

    pub fn summary(&self) -> Value {
        let summaries: Vec<Value> = self
            .events()
            .into_iter()
            .filter(|e| e["event"] == "summary")
            .collect();
        assert_eq!(
            summaries.len(),
            1,
            "expected exactly one summary event\n{}",
            self.transcript()
        );
        summaries.into_iter().next().expect("one summary")
    }

    /// The step_finished event of step `id`.
    pub fn step(&self, id: &str) -> Value {
        self.events()
            .into_iter()
            .find(|e| e["event"] == "step_finished" && e["id"] == id)
            .unwrap_or_else(|| panic!("no step_finished event for {id}\n{}", self.transcript()))
    }

    pub fn assert_success(&self, what: &str) {
        assert_eq!(self.code(), Some(0), "{what} failed\n{}", self.transcript());
    }

    /// Exit 0 and a summary without failures.
    pub fn assert_applied(&self, what: &str) {
        self.assert_success(what);
        assert_eq!(
            self.summary()["failed"],
            0,
            "{what}: failed steps\n{}",
            self.transcript()
        );
    }

    /// A second apply on a converged host: exit 0, "changed":0.
    pub fn assert_converged(&self, what: &str) {
        self.assert_applied(what);
        assert_eq!(
            self.summary()["changed"],
            0,
            "{what}: a converged host must report zero changes\n{}",
            self.transcript()
        );
        for event in self.events() {
            if event["event"] == "step_finished" {
                assert_ne!(
                    event["status"], "changed",
                    "{what}: step changed on a converged host: {event}"
                );
            }
        }
    }
}

/// Byte-for-byte copies of files in a container, with their modes.
#[derive(PartialEq, Eq)]
pub struct Snapshot(BTreeMap<String, Option<(u32, Vec<u8>)>>);

impl Snapshot {
    /// Names of the files that differ between two snapshots.
    pub fn differences(&self, other: &Snapshot) -> Vec<String> {
        let mut names: Vec<&String> = self.0.keys().chain(other.0.keys()).collect();
        names.sort();
        names.dedup();
        names
            .into_iter()
            .filter(|name| self.0.get(*name) != other.0.get(*name))
            .map(|name| {
                let show = |s: &Snapshot| match s.0.get(name) {
                    None | Some(None) => "absent".to_string(),
                    Some(Some((mode, bytes))) => format!("mode {mode:o}, {} bytes", bytes.len()),
                };
                format!("{name}: {} -> {}", show(self), show(other))
            })
            .collect()
    }

    pub fn assert_same(&self, after: &Snapshot, what: &str) {
        let diff = self.differences(after);
        assert!(
            diff.is_empty(),
            "{what}: files changed:\n  {}",
            diff.join("\n  ")
        );
    }
}

impl Container {
    /// Waits until the container's systemd reports running (or degraded).
    fn wait_for_boot(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(120);
        let nspawn_pid = self.nspawn.as_ref().expect("nspawn").id();
        let own_pid_ns = fs::read_link("/proc/self/ns/pid").ok();
        let mut state = String::new();
        while Instant::now() < deadline {
            self.assert_nspawn_alive();
            // The container's init is the child of systemd-nspawn that lives
            // in another PID namespace (nspawn forks helpers that do not).
            if self.leader == 0 || !Path::new(&format!("/proc/{}", self.leader)).exists() {
                self.leader = 0;
                let children =
                    fs::read_to_string(format!("/proc/{nspawn_pid}/task/{nspawn_pid}/children"))
                        .unwrap_or_default();
                for pid in children.split_whitespace() {
                    let ns = fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
                    if ns.is_some() && ns != own_pid_ns {
                        self.leader = pid.parse().expect("pid");
                    }
                }
            }
            if self.leader != 0 {
                let out = self.exec(&["systemctl", "is-system-running"]);
                state = out.stdout.trim().to_string();
                if state == "running" || state == "degraded" {
                    return;
                }
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "{}: systemd did not finish booting (leader {}, state {state:?})\n{}",
            self.name,
            self.leader,
            self.console_log()
        );
    }

    fn assert_nspawn_alive(&mut self) {
        if let Some(status) = self
            .nspawn
            .as_mut()
            .and_then(|child| child.try_wait().ok().flatten())
        {
            panic!(
                "{}: systemd-nspawn exited ({status})\n{}",
                self.name,
                self.console_log()
            );
        }
    }

    /// `systemctl poweroff` inside, then waits for the container to end;
    /// its root directory stays until the guard is dropped.
    pub fn poweroff(&mut self) {
        let _ = self.exec(&["systemctl", "poweroff"]);
        let deadline = Instant::now() + Duration::from_secs(120);
        let nspawn = self.nspawn.as_mut().expect("the container is running");
        while !matches!(nspawn.try_wait(), Ok(Some(_))) {
            assert!(
                Instant::now() < deadline,
                "{}: did not power off within 120 s",
                self.name
            );
            thread::sleep(Duration::from_millis(100));
        }
        self.leader = 0;
    }

    pub fn console_log(&self) -> String {
        fs::read_to_string(self.dir.join("console.log")).unwrap_or_default()
    }

    /// `nsenter` into every namespace of the container, with a clean
    /// environment as a login would have. Killed after COMMAND_TIMEOUT_SECS.
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new("timeout");
        cmd.env_clear()
            .env("PATH", PATH_INSIDE)
            .env("LANG", "C.UTF-8")
            .env("HOME", "/root")
            .env("TERM", "dumb")
            .args(["--kill-after=10", &COMMAND_TIMEOUT_SECS.to_string()])
            .args(["nsenter", "-t", &self.leader.to_string(), "-a", "--"])
            .args(argv)
            .stdin(Stdio::null());
        cmd
    }

    pub fn exec(&self, argv: &[&str]) -> Run {
        let started = Instant::now();
        let out = self
            .command(argv)
            .output()
            .unwrap_or_else(|e| panic!("running {argv:?} in {}: {e}", self.name));
        Run::from_output(out, started.elapsed())
    }

    pub fn sh(&self, script: &str) -> Run {
        self.exec(&["sh", "-c", script])
    }

    /// Runs a shell script that must succeed; returns its stdout.
    pub fn sh_ok(&self, script: &str) -> String {
        let run = self.sh(script);
        assert!(
            run.status.success(),
            "{}: `{script}` failed\n{}",
            self.name,
            run.transcript()
        );
        run.stdout
    }

    /// The argv of `sudo runner-provision --profile PROFILE ARGS…`, run as
    /// root from a login shell would run it.
    pub fn tool_argv<'a>(&self, args: &[&'a str]) -> Vec<&'a str> {
        let mut argv = vec![
            // -E keeps the (clean) environment: RUNNER_TOKEN and the
            // stand-in's log path. Not --preserve-env=RUNNER_TOKEN: sudo
            // logs variables named there, with their values, to the journal.
            "sudo",
            "-E",
            self.tool,
            "--profile",
            PROFILE,
        ];
        argv.extend_from_slice(args);
        argv
    }

    /// The tool's command, with the token (if any) in its environment only.
    pub fn tool_command(&self, args: &[&str], token: Option<&str>) -> Command {
        let mut cmd = self.command(&self.tool_argv(args));
        cmd.env("GITLAB_RUNNER_STAND_IN_LOG", STAND_IN_LOG);
        if let Some(token) = token {
            cmd.env("RUNNER_TOKEN", token);
        }
        cmd
    }

    /// Runs `sudo runner-provision --profile PROFILE ARGS…`.
    pub fn tool(&self, args: &[&str], token: Option<&str>) -> Run {
        let started = Instant::now();
        let out = self
            .tool_command(args, token)
            .output()
            .expect("running runner-provision");
        let run = Run::from_output(out, started.elapsed());
        eprintln!(
            "[{}] runner-provision {} -> {} in {:.1}s",
            self.name,
            args.join(" "),
            run.status,
            run.duration.as_secs_f64()
        );
        run
    }

    /// `apply --output json` with extra arguments.
    pub fn apply(&self, extra: &[&str], token: Option<&str>) -> Run {
        let mut args = vec!["--output", "json", "apply"];
        args.extend_from_slice(extra);
        self.tool(&args, token)
    }

    /// The path of `path` (absolute inside the container) from this machine.
    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn read(&self, path: &str) -> String {
        fs::read_to_string(self.path(path))
            .unwrap_or_else(|e| panic!("{}: reading {path}: {e}", self.name))
    }

    pub fn write(&self, path: &str, text: &str) {
        let full = self.path(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("creating parent dir");
        fs::write(&full, text).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }

    pub fn mode(&self, path: &str) -> u32 {
        fs::metadata(self.path(path))
            .unwrap_or_else(|e| panic!("{}: stat {path}: {e}", self.name))
            .mode()
            & 0o7777
    }

    /// Copies of `paths` (files, or directories standing for their files).
    /// Symbolic links are recorded as their target, never followed (they
    /// point into the container, not this machine).
    pub fn snapshot(&self, paths: &[&str]) -> Snapshot {
        let mut files = BTreeMap::new();
        for path in paths {
            let full = self.path(path);
            match fs::symlink_metadata(&full) {
                Ok(meta) if meta.is_dir() => {
                    let mut entries: Vec<_> = fs::read_dir(&full)
                        .expect("read_dir")
                        .flatten()
                        .map(|e| e.file_name().to_string_lossy().into_owned())
                        .collect();
                    entries.sort();
                    files.insert(format!("{path}/"), Some((meta.mode() & 0o7777, Vec::new())));
                    for entry in entries {
                        let child = format!("{path}/{entry}");
                        files.insert(child.clone(), read_entry(&self.path(&child)));
                    }
                }
                _ => {
                    files.insert(path.to_string(), read_entry(&full));
                }
            }
        }
        Snapshot(files)
    }

    /// Snapshot of every managed file (MANAGED).
    pub fn managed(&self) -> Snapshot {
        self.snapshot(MANAGED)
    }

    /// Runs the tool in the container, streaming its stdout lines (and the
    /// pid of the run's top process) to `on_line` until it returns true;
    /// then kills the whole process tree (SIGKILL).
    /// Returns the lines seen and whether the kill happened.
    pub fn kill_tool_when(
        &self,
        args: &[&str],
        token: Option<&str>,
        mut on_line: impl FnMut(&str, u32) -> bool,
    ) -> (Vec<String>, bool) {
        let mut child = self
            .tool_command(args, token)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawning runner-provision");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = Vec::new();
        let mut killed = false;
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap_or_default();
            let stop = on_line(&line, child.id());
            lines.push(line);
            if stop {
                kill_tree(child.id());
                killed = true;
                break;
            }
        }
        let _ = child.wait();
        (lines, killed)
    }
}

fn read_entry(path: &Path) -> Option<(u32, Vec<u8>)> {
    let meta = fs::symlink_metadata(path).ok()?;
    if meta.file_type().is_symlink() {
        let target = fs::read_link(path).ok()?;
        return Some((0o120000, target.to_string_lossy().into_owned().into_bytes()));
    }
    let bytes = fs::read(path).ok()?;
    Some((meta.mode() & 0o7777, bytes))
}

/// The pids of `pid` and all its descendants (from /proc, this machine's view).
pub fn descendants(pid: u32) -> Vec<u32> {
    let mut found = vec![pid];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        let tasks = fs::read_dir(format!("/proc/{parent}/task"))
            .into_iter()
            .flatten();
        for task in tasks.flatten() {
            let children = fs::read_to_string(task.path().join("children")).unwrap_or_default();
            for child in children.split_whitespace() {
                match child.parse::<u32>() {
                    Ok(child) if !found.contains(&child) => found.push(child),
                    _ => {}
                }
            }
        }
        i += 1;
    }
    found
}

/// The command name of a process (`comm`).
pub fn comm(pid: u32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// SIGKILLs `pid` and every descendant, by id, as a power cut would stop them.
pub fn kill_tree(pid: u32) {
    // Stop them first so none can fork or reap while the list is taken.
    let pids = descendants(pid);
    let ids: Vec<String> = pids.iter().map(u32::to_string).collect();
    // Some may exit between listing and signalling: kill's complaints about
    // those are noise.
    let _ = Command::new("kill")
        .arg("-STOP")
        .args(&ids)
        .stderr(Stdio::null())
        .status();
    let pids = descendants(pid);
    let ids: Vec<String> = pids.iter().map(u32::to_string).collect();
    let _ = Command::new("kill")
        .arg("-KILL")
        .args(&ids)
        .stderr(Stdio::null())
        .status();
}

impl Drop for Container {
    fn drop(&mut self) {
        let Some(mut nspawn) = self.nspawn.take() else {
            return;
        };
        if self.leader != 0 {
            let _ = Command::new("timeout")
                .args(["10", "nsenter", "-t", &self.leader.to_string(), "-a"])
                .args(["systemctl", "poweroff"])
                .env("PATH", sbin_path())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = nspawn.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(100));
        }
        if let Ok(None) = nspawn.try_wait() {
            // Killing the PID namespace's init kills everything in it.
            if self.leader != 0 {
                let _ = Command::new("kill")
                    .args(["-KILL", &self.leader.to_string()])
                    .status();
            }
            let _ = nspawn.kill();
            let _ = nspawn.wait();
        }
        if thread::panicking() {
            let log = self.console_log();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            eprintln!(
                "[{}] console (last lines):\n{}",
                self.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
        if std::env::var_os("RUNNER_PROVISION_KEEP_HOSTS").is_some() {
            eprintln!("[{}] kept in {}", self.name, self.dir.display());
        } else {
            remove_tree(&self.dir);
        }
    }
}
