//! A fake host for tests: a temporary root laid out like a Debian 12 host
//! (os-release, dpkg status, passwd, group, /proc, /sys, /run) and a command
//! runner that records every command and simulates its effect on that tree,
//! the way rustup's test process stands in for the real one.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, bail};
use nix::sys::signal::Signal;

use crate::change::Change;
use crate::host::Host;
use crate::host::command::{Cmd, Output, Runner};
use crate::host::http::HttpNetwork;
use crate::host::packages::{Package, PackageManager, Source};
use crate::host::system::System;
use crate::profile::Profile;
use crate::report::{Format, Reporter};
use crate::secret::{Redactor, Token};
use crate::steps::Settings;

pub const OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n";

/// What the fake runner saw: argv and the environment it was given.
#[derive(Clone, Debug, Default)]
pub struct Recorded {
    pub commands: Vec<Cmd>,
}

pub struct FakeRunner {
    root: PathBuf,
    pub recorded: Arc<Mutex<Recorded>>,
    /// Commands whose program is listed here fail with this stderr (only
    /// the next one when it starts with `once:`; `once-ok:` makes the next
    /// one succeed with that stderr).
    pub failing: Arc<Mutex<Vec<(String, String)>>>,
}

pub struct FakeHost {
    pub dir: tempfile::TempDir,
    pub recorded: Arc<Mutex<Recorded>>,
    pub failing: Arc<Mutex<Vec<(String, String)>>>,
    pub redactor: Redactor,
    pub machine: Arc<Mutex<Machine>>,
    epoch: Instant,
}

/// What the fake machine answers and what it was asked: the tool runs as
/// root unless a test says otherwise, time passes only by sleeping, and
/// nothing listens on the network unless a test opens it.
#[derive(Debug)]
pub struct Machine {
    pub root: bool,
    /// Time slept since the host was made: the fake clock.
    pub slept: Duration,
    /// The wall clock when the host was made, in seconds since the epoch.
    pub unix_time: u64,
    /// `host:port` pairs that accept TCP connections.
    pub listening: Vec<String>,
    /// URL -> body served with a success.
    pub urls: BTreeMap<String, Vec<u8>>,
    /// URL -> how many more requests get a 503 before it is served.
    pub unavailable: BTreeMap<String, u32>,
    /// Every HTTP request: method, URL and the network settings it used.
    pub requests: Vec<(&'static str, String, HttpNetwork)>,
    /// URL -> the TLS error its server's certificate gives (rustls' words).
    pub tls_errors: BTreeMap<String, String>,
    pub signals: Vec<(u32, Signal)>,
    /// Filesystem use by path (statvfs); a path not listed is an error.
    pub disks: BTreeMap<PathBuf, crate::host::system::DiskUsage>,
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            root: true,
            slept: Duration::ZERO,
            // Files the tests write carry the real time: start there.
            unix_time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            listening: Vec::new(),
            unavailable: BTreeMap::new(),
            urls: BTreeMap::new(),
            requests: Vec::new(),
            tls_errors: BTreeMap::new(),
            signals: Vec::new(),
            disks: BTreeMap::new(),
        }
    }
}

/// A package manager that keeps its packages in memory and records what
/// it was asked: for tests of what the steps want from the seam, apart from
/// how apt does it (the fake runner's apt-get and dpkg cover that).
#[derive(Clone, Default)]
pub struct FakePackages {
    pub log: Arc<Mutex<PackageLog>>,
}

#[derive(Debug, Default)]
pub struct PackageLog {
    pub installed: BTreeSet<String>,
    /// Names of the repositories made available.
    pub repositories: Vec<String>,
    /// Installed versions (an install without a version gets "1").
    pub versions: BTreeMap<String, String>,
    pub held: BTreeSet<String>,
    /// Each install's packages (`name` or `name=version`): one entry per transaction.
    pub transactions: Vec<Vec<String>>,
    /// Index updates: one per `prepare`.
    pub refreshes: usize,
    /// Each `hold` and `unhold` call's packages, with the action.
    pub marks: Vec<(&'static str, Vec<String>)>,
    /// How long each install takes on the host's clock.
    pub install_takes: Duration,
}

impl FakePackages {
    fn log(&self) -> std::sync::MutexGuard<'_, PackageLog> {
        self.log.lock().expect("package log lock")
    }
}

impl PackageManager for FakePackages {
    fn tools(&self) -> &'static [(&'static str, &'static str)] {
        &[]
    }

    fn installed(&self, _host: &Host, package: &str) -> Result<bool> {
        Ok(self.log().installed.contains(package))
    }

    fn probe_repository(&self, _host: &Host, _source: &Source) -> Result<()> {
        Ok(())
    }

    fn repository_changes(&self, _host: &Host, source: &Source) -> Result<Vec<Change>> {
        Ok(
            if self.log().repositories.iter().any(|r| r == source.name) {
                Vec::new()
            } else {
                vec![Change::new(format!("add the repository {}", source.name))]
            },
        )
    }

    fn prepare(&self, _host: &Host, _step: &str, sources: &[Source]) -> Result<Vec<Vec<String>>> {
        let mut log = self.log();
        log.refreshes += 1;
        let mut done = Vec::new();
        for source in sources {
            if log.repositories.iter().any(|r| r == source.name) {
                done.push(Vec::new());
            } else {
                log.repositories.push(source.name.to_string());
                done.push(vec![format!("added the repository {}", source.name)]);
            }
        }
        Ok(done)
    }

    fn install(&self, host: &Host, _step: &str, packages: &[Package]) -> Result<()> {
        let takes = self.log().install_takes;
        host.sleep(takes);
        let mut log = self.log();
        log.transactions.push(
            packages
                .iter()
                .map(|p| match &p.version {
                    Some(v) => format!("{}={v}", p.name),
                    None => p.name.clone(),
                })
                .collect(),
        );
        for p in packages {
            // apt releases the hold of a package it is told to change.
            log.held.remove(&p.name);
            log.installed.insert(p.name.clone());
            let version = p.version.clone().unwrap_or_else(|| "1".to_string());
            log.versions.insert(p.name.clone(), version);
        }
        Ok(())
    }

    fn version(&self, _host: &Host, package: &str) -> Result<Option<String>> {
        let log = self.log();
        Ok(log
            .installed
            .contains(package)
            .then(|| log.versions.get(package).cloned().unwrap_or_default()))
    }

    fn held(&self, _host: &Host, package: &str) -> Result<bool> {
        Ok(self.log().held.contains(package))
    }

    fn hold(&self, _host: &Host, _step: &str, packages: &[&str]) -> Result<()> {
        let mut log = self.log();
        log.marks
            .push(("hold", packages.iter().map(|p| p.to_string()).collect()));
        log.held.extend(packages.iter().map(|p| p.to_string()));
        Ok(())
    }

    fn unhold(&self, _host: &Host, _step: &str, packages: &[&str]) -> Result<()> {
        let mut log = self.log();
        log.marks
            .push(("unhold", packages.iter().map(|p| p.to_string()).collect()));
        for p in packages {
            log.held.remove(*p);
        }
        Ok(())
    }

    fn purge(&self, _host: &Host, _step: &str, packages: &[&str]) -> Result<()> {
        let mut log = self.log();
        for package in packages {
            log.installed.remove(*package);
        }
        Ok(())
    }
}

struct FakeSystem {
    machine: Arc<Mutex<Machine>>,
    epoch: Instant,
}

impl FakeSystem {
    fn machine(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().expect("machine lock")
    }

    fn request(&self, method: &'static str, url: &str, network: &HttpNetwork) -> Result<Vec<u8>> {
        let mut machine = self.machine();
        machine
            .requests
            .push((method, url.to_string(), network.clone()));
        if let Some(error) = machine.tls_errors.get(url) {
            bail!("{error}");
        }
        if let Some(left) = machine.unavailable.get_mut(url).filter(|n| **n > 0) {
            *left -= 1;
            bail!("http status: 503");
        }
        machine
            .urls
            .get(url)
            .cloned()
            .ok_or_else(|| anyhow!("http status: 404"))
    }
}

impl System for FakeSystem {
    fn is_root(&self) -> bool {
        self.machine().root
    }

    fn now(&self) -> Instant {
        self.epoch + self.machine().slept
    }

    fn unix_time(&self) -> u64 {
        let machine = self.machine();
        machine.unix_time + machine.slept.as_secs()
    }

    fn sleep(&self, duration: Duration) {
        self.machine().slept += duration;
    }

    fn hostname(&self) -> Result<String> {
        bail!("the fake host has no kernel host name: its root is not /")
    }

    fn signal(&self, pid: u32, signal: Signal) -> Result<()> {
        self.machine().signals.push((pid, signal));
        Ok(())
    }

    fn connect(&self, host: &str, port: u16, _timeout: Duration) -> Result<()> {
        if self.machine().listening.contains(&format!("{host}:{port}")) {
            Ok(())
        } else {
            bail!("connecting to {host}:{port}: Connection refused (os error 111)")
        }
    }

    fn disk_usage(&self, path: &Path) -> Result<crate::host::system::DiskUsage> {
        self.machine()
            .disks
            .get(path)
            .copied()
            .ok_or_else(|| anyhow!("statvfs {}: No such file or directory", path.display()))
    }

    fn head(&self, url: &str, network: &HttpNetwork, _timeout: Duration) -> Result<()> {
        self.request("HEAD", url, network).map(drop)
    }

    fn get(
        &self,
        url: &str,
        network: &HttpNetwork,
        _timeout: Duration,
        limit: u64,
    ) -> Result<Vec<u8>> {
        let body = self.request("GET", url, network)?;
        if body.len() as u64 > limit {
            bail!("body larger than {limit} bytes");
        }
        Ok(body)
    }
}

fn write(root: &Path, path: &str, text: &str) {
    let full = root.join(path.trim_start_matches('/'));
    fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
    fs::write(full, text).expect("write");
}

fn read(root: &Path, path: &str) -> String {
    fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap_or_default()
}

fn append(root: &Path, path: &str, text: &str) {
    let mut current = read(root, path);
    current.push_str(text);
    write(root, path, &current);
}

impl FakeHost {
    /// A fresh Debian 12 host with systemd, nothing installed, overlay built in.
    pub fn debian12() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write(root, "/etc/os-release", OS_RELEASE);
        write(root, "/proc/sys/kernel/osrelease", "6.1.0-28-amd64\n");
        write(root, "/etc/hostname", "runner-1\n");
        write(root, "/etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        write(root, "/etc/group", "root:x:0:\n");
        write(
            root,
            "/etc/modules",
            "# /etc/modules: kernel modules to load at boot time.\nloop\n",
        );
        write(
            root,
            "/var/lib/dpkg/status",
            "Package: dpkg\nStatus: install ok installed\n\n",
        );
        write(
            root,
            "/proc/filesystems",
            "nodev\tsysfs\nnodev\ttmpfs\n\text4\nnodev\toverlay\n",
        );
        for tool in [
            "apt-get",
            "dpkg",
            "useradd",
            "usermod",
            "systemctl",
            "runuser",
            "su",
            "modprobe",
            "gitlab-runner",
        ] {
            write(root, &format!("/usr/bin/{tool}"), "#!/bin/sh\n");
        }
        write(root, "/srv/repo/Release", "Origin: local test repository\n");
        fs::create_dir_all(root.join("run/systemd/system")).expect("mkdir");
        fs::create_dir_all(root.join("var/lib/apt/lists")).expect("mkdir");
        Self {
            dir,
            recorded: Arc::default(),
            failing: Arc::default(),
            redactor: Redactor::default(),
            machine: Arc::default(),
            epoch: Instant::now(),
        }
    }

    pub fn machine(&self) -> std::sync::MutexGuard<'_, Machine> {
        self.machine.lock().expect("machine lock")
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, path: &str, text: &str) {
        write(self.root(), path, text);
    }

    pub fn read(&self, path: &str) -> String {
        read(self.root(), path)
    }

    /// A host whose kernel and daemons are "live" (simulated in the tree).
    pub fn host(&self, reporter: Arc<Reporter>) -> Host {
        self.make_host(true, reporter)
    }

    /// The tree as `--root DIR` sees it: commands through `chroot`, no live kernel.
    pub fn offline_host(&self, reporter: Arc<Reporter>) -> Host {
        self.make_host(false, reporter)
    }

    /// A live host whose commands go to `runner` (a stand-in for one tool).
    pub fn host_with(&self, runner: Box<dyn Runner>, reporter: Arc<Reporter>) -> Host {
        Host::new(
            self.root().to_path_buf(),
            true,
            runner,
            Box::new(FakeSystem {
                machine: self.machine.clone(),
                epoch: self.epoch,
            }),
            reporter,
            self.redactor.clone(),
            false,
        )
        .expect("host")
    }

    fn make_host(&self, live: bool, reporter: Arc<Reporter>) -> Host {
        let runner = FakeRunner {
            root: self.root().to_path_buf(),
            recorded: self.recorded.clone(),
            failing: self.failing.clone(),
        };
        Host::new(
            self.root().to_path_buf(),
            live,
            Box::new(runner),
            Box::new(FakeSystem {
                machine: self.machine.clone(),
                epoch: self.epoch,
            }),
            reporter,
            self.redactor.clone(),
            false,
        )
        .expect("host")
    }

    /// Runs the selected steps in `mode` on the live host, with the JSON
    /// output captured.
    pub fn run_steps(
        &self,
        settings: &Settings,
        selection: &crate::steps::Selection,
        mode: crate::steps::Mode,
    ) -> (crate::report::Counts, Arc<Reporter>) {
        let reporter = self.reporter(Format::Json);
        let host = self.host(reporter.clone());
        let counts = crate::steps::run(&host, settings, selection, mode, &reporter);
        (counts, reporter)
    }

    pub fn reporter(&self, format: Format) -> Arc<Reporter> {
        Arc::new(Reporter::capturing(format, 0, self.redactor.clone()))
    }

    pub fn settings(&self, token: Option<&str>) -> Settings {
        let mut profile = Profile::default();
        // A local repository: no key to download.
        profile.runner.repository = Some(crate::profile::Repository {
            uri: "file:/srv/repo/".to_string(),
            suite: "./".to_string(),
            components: String::new(),
            key_url: String::new(),
        });
        profile.docker.accept_group_risk = true;
        profile.docker.verify_timeout = 1;
        let token = token.map(|t| Token::new(t).expect("token"));
        if let Some(t) = &token {
            self.redactor.add_token(t.expose());
        }
        Settings::new(profile, token)
    }

    pub fn commands(&self) -> Vec<Cmd> {
        self.recorded.lock().expect("lock").commands.clone()
    }

    /// The commands run since the `from`th, as shown (`Cmd::display`).
    pub fn ran_since(&self, from: usize) -> Vec<String> {
        self.commands()[from..].iter().map(Cmd::display).collect()
    }

    /// The commands run since the `from`th, an offline root's `chroot DIR`
    /// left out, each its arguments joined by spaces.
    pub fn ran_in_root_since(&self, from: usize) -> Vec<String> {
        self.commands()[from..]
            .iter()
            .map(|c| match c.argv.first().map(String::as_str) {
                Some("chroot") => c.argv[2..].join(" "),
                _ => c.argv.join(" "),
            })
            .collect()
    }

    /// Every regular file under the root and its bytes, for byte-identity checks.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut dirs = vec![self.root().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    let bytes = fs::read(&path).expect("read");
                    out.push((path, bytes));
                }
            }
        }
        out.sort();
        out
    }

    /// Installs packages as the fake apt would (for pre-broken hosts).
    pub fn install(&self, packages: &[&str]) {
        let runner = FakeRunner {
            root: self.root().to_path_buf(),
            recorded: Arc::default(),
            failing: Arc::default(),
        };
        for p in packages {
            runner.install(p);
        }
    }
}

fn ok(stdout: &str) -> Output {
    Output {
        code: Some(0),
        stdout: stdout.to_string(),
        stderr: String::new(),
        timed_out: false,
    }
}

fn fail(stderr: &str) -> Output {
    Output {
        code: Some(1),
        stdout: String::new(),
        stderr: stderr.to_string(),
        timed_out: false,
    }
}

impl FakeRunner {
    fn add_user(&self, name: &str) {
        if !read(&self.root, "/etc/passwd").contains(&format!("\n{name}:")) {
            append(
                &self.root,
                "/etc/passwd",
                &format!("{name}:x:999:999:GitLab Runner:/home/{name}:/bin/bash\n"),
            );
            append(&self.root, "/etc/group", &format!("{name}:x:999:\n"));
        }
    }

    /// Why dockerd (as Debian's unit starts it, with `-H fd://` when
    /// `unit_flags`) refuses the daemon.json at `path`, in its own words: a
    /// malformed file, `hosts` beside the flag (moby#34104), or a key it
    /// does not know (here: any key starting with `no-such-`).
    fn dockerd_refuses(&self, path: &str, unit_flags: bool) -> Option<String> {
        let text = read(&self.root, path);
        if text.trim().is_empty() {
            return None;
        }
        let prefix = format!("unable to configure the Docker daemon with file {path}");
        let Ok(serde_json::Value::Object(map)) = serde_json::from_str(&text) else {
            return Some(format!(
                "{prefix}: invalid character '}}' looking for beginning of value"
            ));
        };
        if unit_flags {
            if let Some(hosts) = map.get("hosts") {
                return Some(format!(
                    "{prefix}: the following directives are specified both as a flag and in the configuration file: hosts: (from flag: [fd://], from file: {hosts})"
                ));
            }
        }
        let unknown: Vec<&str> = map
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("no-such-"))
            .collect();
        (!unknown.is_empty()).then(|| {
            format!(
                "{prefix}: the following directives don't match any configuration option: {}",
                unknown.join(", ")
            )
        })
    }

    fn start_docker(&self) {
        // A new process: the environment a test gave the old one is gone.
        let _ = fs::remove_file(self.root.join("proc/4242/environ"));
        write(&self.root, "/run/docker.pid", "4242\n");
        write(&self.root, "/proc/4242/comm", "dockerd\n");
    }

    /// `package` or `package=version` (version 1 when none is given); a
    /// package already there gets the new version and, as apt does for a
    /// package it is told to install, loses a hold.
    fn install(&self, spec: &str) {
        let (package, version) = spec.split_once('=').unwrap_or((spec, "1"));
        let status = read(&self.root, "/var/lib/dpkg/status");
        let want = "install";
        let mut kept: Vec<&str> = Vec::new();
        for stanza in status.split("\n\n").filter(|s| !s.trim().is_empty()) {
            if !stanza.lines().any(|l| l == format!("Package: {package}")) {
                kept.push(stanza);
            }
        }
        let mut text: String = kept
            .iter()
            .map(|s| format!("{}\n\n", s.trim_end()))
            .collect();
        text.push_str(&format!(
            "Package: {package}\nStatus: {want} ok installed\nVersion: {version}\n\n"
        ));
        write(&self.root, "/var/lib/dpkg/status", &text);
        self.configure(package);
    }

    /// `apt-mark hold|unhold`: dpkg's selection of each package.
    fn mark(&self, action: &str, packages: &[&str]) {
        let (from, to) = match action {
            "hold" => ("Status: install ", "Status: hold "),
            _ => ("Status: hold ", "Status: install "),
        };
        let status = read(&self.root, "/var/lib/dpkg/status");
        let text: Vec<String> = status
            .split("\n\n")
            .map(|stanza| {
                let name = stanza.lines().find_map(|l| l.strip_prefix("Package: "));
                if name.is_some_and(|n| packages.contains(&n)) {
                    stanza.replace(from, to)
                } else {
                    stanza.to_string()
                }
            })
            .collect();
        write(&self.root, "/var/lib/dpkg/status", &text.join("\n\n"));
    }

    /// What the package's maintainer scripts do.
    fn configure(&self, package: &str) {
        match package {
            "gitlab-runner" => self.add_user("gitlab-runner"),
            "docker.io" | "docker-ce" => {
                append(&self.root, "/etc/group", "docker:x:998:\n");
                write(&self.root, "/usr/sbin/dockerd", "#!/bin/sh\n");
                write(
                    &self.root,
                    "/lib/systemd/system/docker.service",
                    "[Unit]\nRequires=docker.socket\n\n[Service]\nType=notify\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS\nRestart=on-failure\nStartLimitBurst=3\nStartLimitInterval=60s\n",
                );
                write(
                    &self.root,
                    "/etc/systemd/system/multi-user.target.wants/docker.service",
                    "",
                );
                self.start_docker();
            }
            _ => {}
        }
    }

    fn in_docker_group(&self, user: &str) -> bool {
        read(&self.root, "/etc/group").lines().any(|l| {
            l.starts_with("docker:")
                && l.rsplit(':')
                    .next()
                    .is_some_and(|m| m.split(',').any(|m| m == user))
        })
    }

    fn simulate(&self, cmd: &Cmd) -> Output {
        let mut argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
        // `--root DIR` runs everything through `chroot DIR`; the fake tree is DIR.
        if argv.first() == Some(&"chroot") {
            argv.drain(..2);
        }
        match argv.as_slice() {
            ["apt-get", rest @ ..] if rest.contains(&"update") => ok(""),
            ["apt-get", rest @ ..] if rest.contains(&"install") => {
                for p in rest
                    .iter()
                    .filter(|a| !a.starts_with('-') && **a != "install")
                {
                    self.install(p);
                }
                ok("")
            }
            ["apt-get", rest @ ..] if rest.contains(&"purge") => {
                let status = read(&self.root, "/var/lib/dpkg/status");
                let names: Vec<&str> = rest
                    .iter()
                    .filter(|a| !a.starts_with('-') && **a != "purge")
                    .copied()
                    .collect();
                // apt refuses to remove a held package.
                let held: Vec<&&str> = names
                    .iter()
                    .filter(|n| status.contains(&format!("Package: {n}\nStatus: hold ")))
                    .collect();
                if !held.is_empty() {
                    return fail(
                        "E: Held packages were changed and -y was used without --allow-change-held-packages.",
                    );
                }
                let kept: String = status
                    .split("\n\n")
                    .filter(|stanza| {
                        !stanza
                            .lines()
                            .find_map(|l| l.strip_prefix("Package: "))
                            .is_some_and(|n| names.contains(&n))
                    })
                    .map(|stanza| format!("{}\n\n", stanza.trim_end()))
                    .filter(|stanza| stanza.trim() != "")
                    .collect();
                write(&self.root, "/var/lib/dpkg/status", &kept);
                ok("")
            }
            ["apt-mark", action @ ("hold" | "unhold"), packages @ ..] => {
                self.mark(action, packages);
                ok("")
            }
            ["dpkg", "--configure", "-a"] => {
                let status = read(&self.root, "/var/lib/dpkg/status");
                let unpacked: Vec<String> = status
                    .split("\n\n")
                    .filter(|stanza| stanza.contains("Status: install ok unpacked"))
                    .filter_map(|stanza| {
                        stanza
                            .lines()
                            .find_map(|l| l.strip_prefix("Package: "))
                            .map(str::to_string)
                    })
                    .collect();
                write(
                    &self.root,
                    "/var/lib/dpkg/status",
                    &status.replace("install ok unpacked", "install ok installed"),
                );
                for package in unpacked {
                    self.configure(&package);
                }
                ok("")
            }
            ["useradd", .., name] => {
                self.add_user(name);
                ok("")
            }
            ["gpasswd", "--delete", user, group] => {
                let text = read(&self.root, "/etc/group");
                let new: String = text
                    .lines()
                    .map(|l| match l.strip_prefix(&format!("{group}:")) {
                        Some(rest) => {
                            let (head, members) = rest.rsplit_once(':').unwrap_or((rest, ""));
                            let kept: Vec<&str> = members
                                .split(',')
                                .filter(|m| !m.is_empty() && m != user)
                                .collect();
                            format!("{group}:{head}:{}\n", kept.join(","))
                        }
                        None => format!("{l}\n"),
                    })
                    .collect();
                write(&self.root, "/etc/group", &new);
                ok("")
            }
            [
                "gitlab-runner",
                "unregister",
                "--config",
                config,
                "--name",
                name,
            ] => {
                let text = read(&self.root, config);
                match crate::edit::runner_config::runners(&text)
                    .ok()
                    .and_then(|r| r.iter().find(|r| r.name == *name).map(|r| r.url.clone()))
                {
                    Some(url) => {
                        let new = crate::edit::runner_config::remove_runner(&text, &url, name)
                            .expect("config.toml");
                        write(&self.root, config, &new);
                        ok("Unregistering runner from GitLab succeeded")
                    }
                    None => fail(&format!("could not find a runner with the name '{name}'")),
                }
            }
            ["usermod", "--append", "--groups", group, user] => {
                let text = read(&self.root, "/etc/group");
                let new: String = text
                    .lines()
                    .map(|l| {
                        if l.starts_with(&format!("{group}:")) {
                            if l.ends_with(':') {
                                format!("{l}{user}\n")
                            } else {
                                format!("{l},{user}\n")
                            }
                        } else {
                            format!("{l}\n")
                        }
                    })
                    .collect();
                write(&self.root, "/etc/group", &new);
                ok("")
            }
            ["gitlab-runner", "register", ..] => {
                let flag = |name: &str| {
                    argv.iter()
                        .position(|a| *a == name)
                        .and_then(|i| argv.get(i + 1))
                        .copied()
                        .unwrap_or("")
                };
                let has_token = cmd
                    .env
                    .iter()
                    .any(|(k, _)| k == "REGISTRATION_TOKEN" || k == "CI_SERVER_TOKEN");
                if !has_token {
                    return fail("FATAL: Registration token is missing");
                }
                append(
                    &self.root,
                    "/etc/gitlab-runner/config.toml",
                    &format!(
                        "\n[[runners]]\n  name = \"{}\"\n  url = \"{}\"\n  token = \"t-derived\"\n  executor = \"{}\"\n  [runners.cache]\n",
                        flag("--name"),
                        flag("--url"),
                        flag("--executor")
                    ),
                );
                ok("Runner registered successfully.")
            }
            ["gitlab-runner", "verify"] => {
                // As the stand-in: names listed in the server folder's
                // deleted-runners were deleted on the server.
                let config = read(&self.root, "/etc/gitlab-runner/config.toml");
                let deleted = read(
                    &self.root,
                    "/var/lib/gitlab-runner-stand-in/server/deleted-runners",
                );
                let mut err = String::from("Running in system-mode.\n");
                let mut failed = false;
                for name in config
                    .lines()
                    .filter_map(|l| l.trim().strip_prefix("name = \""))
                    .map(|n| n.trim_end_matches('"'))
                {
                    if self
                        .root
                        .join("var/lib/gitlab-runner-stand-in/server/unreachable")
                        .exists()
                    {
                        err.push_str("ERROR: Verifying runner... client error   runner=t-derive status=\"couldn't execute POST against https://gitlab.example.com/api/v4/runners/verify: dial tcp: lookup gitlab.example.com: no such host\"\n");
                    } else if deleted.lines().any(|d| d == name) {
                        failed = true;
                        err.push_str("ERROR: Verifying runner... is removed   runner=t-derive status=\"403 Forbidden\"\n");
                    } else {
                        err.push_str("Verifying runner... is alive   runner=t-derive\n");
                    }
                }
                if failed {
                    err.push_str("FATAL: Failed to verify runners\n");
                }
                Output {
                    code: Some(i32::from(failed)),
                    stdout: String::new(),
                    stderr: err,
                    timed_out: false,
                }
            }
            ["systemctl", "enable", unit] if unit.ends_with(".timer") => {
                write(
                    &self.root,
                    &format!("/etc/systemd/system/timers.target.wants/{unit}"),
                    "",
                );
                ok("")
            }
            ["systemctl", "disable", unit]
                if unit.ends_with(".timer") || unit.ends_with(".service") =>
            {
                let wants = if unit.ends_with(".timer") {
                    "timers"
                } else {
                    "multi-user"
                };
                let _ = fs::remove_file(
                    self.root
                        .join(format!("etc/systemd/system/{wants}.target.wants"))
                        .join(unit),
                );
                ok("")
            }
            // Timers and named services (a oneshot with RemainAfterExit
            // stays active once started) run while /run/fake-active/UNIT
            // exists; stopping one runs its ExecStop from the unit file
            // loaded then, kept in /run/fake-stopped/UNIT.
            ["systemctl", "start", unit]
                if unit.ends_with(".timer") || unit.ends_with(".service") =>
            {
                write(&self.root, &format!("/run/fake-active/{unit}"), "");
                ok("")
            }
            ["systemctl", "stop", unit]
                if unit.ends_with(".timer") || unit.ends_with(".service") =>
            {
                if fs::remove_file(self.root.join("run/fake-active").join(unit)).is_ok() {
                    let loaded = read(&self.root, &format!("/etc/systemd/system/{unit}"));
                    write(&self.root, &format!("/run/fake-stopped/{unit}"), &loaded);
                }
                ok("")
            }
            ["systemctl", "is-active", "--quiet", unit]
                if unit.ends_with(".timer") || unit.ends_with(".service") =>
            {
                if self.root.join("run/fake-active").join(unit).exists() {
                    ok("")
                } else {
                    Output {
                        code: Some(3),
                        ..Output::default()
                    }
                }
            }
            ["systemctl", "enable", unit] => {
                write(
                    &self.root,
                    &format!(
                        "/etc/systemd/system/multi-user.target.wants/{}.service",
                        unit.trim_end_matches(".service")
                    ),
                    "",
                );
                ok("")
            }
            ["systemctl", "start" | "restart", "docker"] => {
                // Debian's unit: StartLimitBurst=3 in 60 s (the fake's
                // clock does not move: every start counts until reset-failed).
                let starts = read(&self.root, "/run/fake-docker-starts").len() + 1;
                write(&self.root, "/run/fake-docker-starts", &".".repeat(starts));
                if starts > 3 || self.root.join("run/fake-docker-start-limit").exists() {
                    return fail(
                        "Job for docker.service failed because start of the service was attempted too often.\nSee \"systemctl status docker.service\" and \"journalctl -xeu docker.service\" for details.\nTo force a start use \"systemctl reset-failed docker.service\"\nfollowed by \"systemctl start docker.service\" again.\n",
                    );
                }
                if let Some(error) = self.dockerd_refuses("/etc/docker/daemon.json", true) {
                    // dockerd exits; systemd retries until its start limit.
                    let _ = fs::remove_file(self.root.join("run/docker.pid"));
                    append(
                        &self.root,
                        "/run/fake-journal/docker",
                        &format!("{error}\n"),
                    );
                    append(
                        &self.root,
                        "/run/fake-journal/docker",
                        "docker.service: Main process exited, code=exited, status=1/FAILURE\nFailed to start docker.service - Docker Application Container Engine.\n",
                    );
                    write(&self.root, "/run/fake-docker-start-limit", "");
                    return fail(
                        "Job for docker.service failed because the control process exited with error code.\nSee \"systemctl status docker.service\" and \"journalctl -xeu docker.service\" for details.\n",
                    );
                }
                self.start_docker();
                ok("")
            }
            // SysV init (no systemd as PID 1): Debian's /etc/init.d/docker.
            ["service", "docker", "start" | "restart"] => {
                if self
                    .dockerd_refuses("/etc/docker/daemon.json", true)
                    .is_some()
                {
                    let _ = fs::remove_file(self.root.join("run/docker.pid"));
                    return fail("Starting Docker: docker failed!\n");
                }
                self.start_docker();
                ok("")
            }
            ["systemctl", "reset-failed", ..] => {
                let _ = fs::remove_file(self.root.join("run/fake-docker-start-limit"));
                let _ = fs::remove_file(self.root.join("run/fake-docker-starts"));
                ok("")
            }
            ["journalctl", "--unit", "docker.service", ..] => {
                ok(&read(&self.root, "/run/fake-journal/docker"))
            }
            // dockerd 23 and later has --validate (a test creates the mark).
            ["dockerd", "--help"] => {
                if self.root.join("run/fake-dockerd-validates").exists() {
                    ok(
                        "Usage:\tdockerd [OPTIONS]\n      --validate    Validate daemon configuration and exit\n",
                    )
                } else {
                    ok("Usage:\tdockerd [OPTIONS]\n      --userns-remap string\n")
                }
            }
            ["dockerd", "--validate", "--config-file", path] => {
                match self.dockerd_refuses(path, false) {
                    Some(error) => fail(&format!("{error}\n")),
                    None => ok("configuration OK\n"),
                }
            }
            [
                "systemctl",
                "kill",
                "--signal=SIGQUIT",
                "--kill-who=main",
                "gitlab-runner",
            ] => {
                // The old process exits once its jobs are done: at once,
                // unless a test keeps it busy.
                if self.root.join("proc/777/busy").exists() {
                    return ok("");
                }
                let status = read(&self.root, "/proc/777/status");
                let _ = fs::remove_dir_all(self.root.join("proc/777"));
                write(&self.root, "/run/fake-stopped-777", &status);
                ok("")
            }
            ["systemctl", "restart", "gitlab-runner"] => {
                // The restarted service picks up its account's current groups.
                let stopped = self.root.join("run/fake-stopped-777");
                let status = if stopped.exists() {
                    let text = read(&self.root, "/run/fake-stopped-777");
                    let _ = fs::remove_file(&stopped);
                    text
                } else {
                    read(&self.root, "/proc/777/status")
                };
                if !status.is_empty() {
                    write(
                        &self.root,
                        "/proc/777/status",
                        &status.replace("Groups:\t999", "Groups:\t999 998"),
                    );
                }
                // Its metrics server listens where config.toml says (IPv4
                // only here), unless a test holds the port.
                let config = read(&self.root, "/etc/gitlab-runner/config.toml");
                let listen = crate::edit::runner_globals::listen_address(&config)
                    .ok()
                    .flatten()
                    .and_then(|a| crate::edit::runner_globals::parse_listen_address(&a).ok());
                let mut table = "  sl  local_address rem_address   st\n".to_string();
                if let Some(listen) =
                    listen.filter(|_| !self.root.join("run/fake-port-taken").exists())
                {
                    let ip: std::net::Ipv4Addr = listen
                        .host
                        .parse()
                        .unwrap_or(std::net::Ipv4Addr::UNSPECIFIED);
                    let word = u32::from_le_bytes(ip.octets());
                    table.push_str(&format!(
                        "   0: {word:08X}:{:04X} 00000000:0000 0A\n",
                        listen.port
                    ));
                }
                write(&self.root, "/proc/net/tcp", &table);
                ok("")
            }
            ["systemctl", _, _] | ["systemctl", "daemon-reload"] => ok(""),
            ["update-ca-certificates", ..] => ok(""),
            ["modprobe", module] => {
                write(
                    &self.root,
                    &format!("/sys/module/{module}/initstate"),
                    "live\n",
                );
                ok("")
            }
            ["runuser", "-l", user, "-c", script] => self.docker_as(user, script),
            ["su", "-s", "/bin/bash", user, "-c", "bash -l"] => self.build_as(user, cmd),
            _ => fail(&format!("fake runner: no simulation for {}", cmd.display())),
        }
    }
}

impl FakeRunner {
    /// `docker info` as `user`, as Debian 12's docker.io 20.10 client answers:
    /// with `--format`, a failure to reach the daemon prints only a template
    /// error; without it, the full message.
    fn docker_as(&self, user: &str, script: &str) -> Output {
        let problem = if read(&self.root, "/run/docker.pid").is_empty() {
            Some(
                "ERROR: Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            )
        } else if !self.in_docker_group(user) {
            Some(
                "ERROR: Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock: Get \"http://%2Fvar%2Frun%2Fdocker.sock/v1.41/info\": dial unix /var/run/docker.sock: connect: permission denied",
            )
        } else {
            None
        };
        match (problem, script.contains("--format")) {
            (Some(_), true) => fail(
                "template: :1:2: executing \"\" at <.Driver>: nil pointer evaluating *types.Info.Driver",
            ),
            (Some(message), false) => Output {
                code: Some(1),
                stdout: format!(
                    "Client:\n Context:    default\n Debug Mode: false\n\nServer:\n{message}\n"
                ),
                stderr: "errors pretty printing info\n".to_string(),
                timed_out: false,
            },
            (None, _) => {
                let driver = if read(&self.root, "/etc/docker/daemon.json").contains("overlay2") {
                    "overlay2"
                } else {
                    "vfs"
                };
                ok(&format!("{driver}\n"))
            }
        }
    }
}

impl FakeRunner {
    /// A job's `docker build` as `user`: fails as Docker does when the daemon
    /// is down, the user may not open the socket or the data root is full
    /// (the file /var/lib/docker/FULL in the fake tree); else prints the
    /// script's marks with the driver that daemon.json selects.
    fn build_as(&self, user: &str, cmd: &Cmd) -> Output {
        let script = cmd.stdin.clone().unwrap_or_default();
        if !script.contains("docker build") {
            return fail("fake runner: a job script without docker build");
        }
        if read(&self.root, "/run/docker.pid").is_empty() {
            return fail(
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            );
        }
        if !self.in_docker_group(user) {
            return fail(
                "Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
            );
        }
        if self.root.join("var/lib/docker/FULL").exists() {
            return Output {
                code: Some(1),
                stdout: "Sending build context to Docker daemon  3.072kB\nStep 1/2 : FROM scratch\n ---> \nStep 2/2 : COPY probe /probe\nfailed to copy files: no space left on device\n".into(),
                stderr: String::new(),
                timed_out: false,
            };
        }
        let driver = if read(&self.root, "/etc/docker/daemon.json").contains("overlay2") {
            "overlay2"
        } else {
            "vfs"
        };
        ok(&format!(
            "Step 1/2 : FROM scratch\nSuccessfully built 0123456789ab\nrunner-provision-build:build_ms=42\nrunner-provision-build:driver={driver}\n"
        ))
    }
}

impl Runner for FakeRunner {
    fn run(&self, cmd: &Cmd) -> std::io::Result<Output> {
        if let Ok(mut r) = self.recorded.lock() {
            r.commands.push(cmd.clone());
        }
        // A key is a program, or a program and one of its arguments
        // ("apt-get install"): only such commands fail.
        let matches = |key: &str| match key.split_once(' ') {
            Some((program, arg)) => program == cmd.program() && cmd.argv.iter().any(|a| a == arg),
            None => key == cmd.program(),
        };
        if let Some((key, stderr)) = self
            .failing
            .lock()
            .ok()
            .and_then(|f| f.iter().find(|(p, _)| matches(p)).cloned())
        {
            // `once-ok:` succeeds with this stderr (apt's warnings), once.
            if let Some(stderr) = stderr.strip_prefix("once-ok:") {
                if let Ok(mut f) = self.failing.lock() {
                    f.retain(|(p, _)| *p != key);
                }
                let mut out = ok("");
                out.stderr = stderr.to_string();
                return Ok(out);
            }
            // `once:` fails the next such command only.
            if let Some(stderr) = stderr.strip_prefix("once:") {
                if let Ok(mut f) = self.failing.lock() {
                    f.retain(|(p, _)| *p != key);
                }
                return Ok(fail(stderr));
            }
            return Ok(fail(&stderr));
        }
        Ok(self.simulate(cmd))
    }
}
