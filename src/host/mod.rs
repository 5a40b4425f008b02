//! The one context every step receives: the root, the command runner, the
//! OS facts, accounts, the machine (uid, clock, signals, network) and the
//! output. Steps reach the host only through it.

pub mod accounts;
pub mod command;
pub mod docker_api;
pub mod files;
pub mod http;
pub mod lock;
pub mod os;
pub mod packages;
pub mod services;
pub mod system;

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::report::Reporter;
use crate::secret::Redactor;
use accounts::Accounts;
use command::{Cmd, CommandError, Commands, Output, Runner};
use files::Files;
use http::HttpNetwork;
use os::OsFacts;
use packages::PackageManager;
use system::System;

pub struct Host {
    pub files: Files,
    pub accounts: Accounts,
    pub os: OsFacts,
    /// The running kernel and daemons belong to this tree (`--root` not given).
    pub live: bool,
    commands: Commands,
    system: Box<dyn System>,
    /// `None` where the tool knows no package manager for the OS (the
    /// preflight refuses such an OS first).
    packages: Option<Box<dyn PackageManager>>,
    /// The proxy and CA certificates of the tool's own HTTP.
    network: RefCell<HttpNetwork>,
    reporter: Arc<Reporter>,
    redactor: Redactor,
    /// What this run created besides files, for the receipt.
    noted: RefCell<crate::receipt::Receipt>,
    /// What this run took back (a hold released), out of the receipt.
    forgotten: RefCell<crate::receipt::Receipt>,
}

impl Host {
    /// A host rooted at `root`. `live` is false for `--root DIR`: commands then
    /// run through `chroot DIR`, and live-only actions are skipped.
    pub fn new(
        root: PathBuf,
        live: bool,
        runner: Box<dyn Runner>,
        system: Box<dyn System>,
        reporter: Arc<Reporter>,
        redactor: Redactor,
        verbose: bool,
    ) -> Result<Self> {
        let files = Files::new(&root);
        let chroot = (!live).then(|| root.display().to_string());
        let os = OsFacts::detect(&files, live)?;
        let package_manager = packages::for_os(&os.release);
        Ok(Self {
            accounts: Accounts::new(files.clone()),
            files,
            os,
            live,
            commands: Commands::new(runner, redactor.clone(), chroot, verbose),
            packages: package_manager,
            system,
            network: RefCell::default(),
            reporter,
            redactor,
            noted: RefCell::default(),
            forgotten: RefCell::default(),
        })
    }

    /// Records something this run created (a package, an account, a group
    /// membership, a runner, a module line) for the receipt `remove` reads.
    pub fn note(&self, add: impl FnOnce(&mut crate::receipt::Receipt)) {
        add(&mut self.noted.borrow_mut());
    }

    /// What this run noted so far.
    pub fn noted(&self) -> crate::receipt::Receipt {
        self.noted.borrow().clone()
    }

    /// Records something this run took back (a hold it released), to come
    /// out of the receipt.
    pub fn forget(&self, add: impl FnOnce(&mut crate::receipt::Receipt)) {
        add(&mut self.forgotten.borrow_mut());
    }

    /// What this run took back so far.
    pub fn forgotten(&self) -> crate::receipt::Receipt {
        self.forgotten.borrow().clone()
    }

    /// Runs a command; non-zero exit is an error with argv, status and stderr.
    pub fn run(&self, cmd: Cmd) -> Result<Output, CommandError> {
        self.files.forget();
        self.commands.run(cmd)
    }

    /// Runs a command whose exit status is an answer, not a failure.
    pub fn probe(&self, cmd: Cmd) -> Result<Output, CommandError> {
        self.files.forget();
        self.commands.run_unchecked(cmd)
    }

    /// A warning tied to a step, shown at once (e.g. while waiting for a lock).
    pub fn warn(&self, step: &str, message: &str) {
        self.reporter
            .warning(Some(step), &self.redactor.redact(message));
    }

    /// A fact the running step found, reported with its end (JSON `details`).
    pub fn detail(&self, key: &str, value: serde_json::Value) {
        self.reporter.detail(key, value);
    }

    /// Progress text for the step that is running (spinner message or a plain line at -v).
    pub fn progress(&self, message: &str) {
        self.reporter.progress(&self.redactor.redact(message));
    }

    /// Finds a tool on PATH, or in the standard folders of a root other than `/`.
    pub fn which(&self, tool: &str) -> Option<PathBuf> {
        if self.files.root() == std::path::Path::new("/") {
            return which::which(tool).ok();
        }
        const PATHS: &[&str] = &[
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ];
        // Looked up inside the root: a link to an absolute path means that
        // path in the tree, as it will for `chroot DIR`.
        PATHS
            .iter()
            .map(|dir| format!("{dir}/{tool}"))
            .find(|path| self.files.is_file(path))
            .map(|path| self.files.resolve(&path))
    }

    /// The host's package manager (apt on Debian and Ubuntu).
    pub fn packages(&self) -> Result<&dyn PackageManager> {
        match &self.packages {
            Some(manager) => Ok(manager.as_ref()),
            None => bail!(
                "no supported package manager on this OS (ID={}): runner-provision installs with apt (Debian, Ubuntu)",
                self.os.release.id
            ),
        }
    }

    /// Another package manager (the tests' fake).
    #[cfg(test)]
    pub fn with_packages(mut self, manager: Box<dyn PackageManager>) -> Self {
        self.packages = Some(manager);
        self
    }

    /// The effective user is root.
    pub fn is_root(&self) -> bool {
        self.system.is_root()
    }

    pub fn now(&self) -> Instant {
        self.system.now()
    }

    pub fn sleep(&self, duration: Duration) {
        self.system.sleep(duration);
    }

    /// Sends `signal` to process `pid`; a process already gone is no error.
    pub fn signal(&self, pid: u32, signal: nix::sys::signal::Signal) -> Result<()> {
        self.system.signal(pid, signal)
    }

    /// Size and use of the filesystem holding `path` on the running system
    /// (not under the root: the daemon that names the path runs here).
    pub fn disk_usage(&self, path: &str) -> Result<system::DiskUsage> {
        self.system.disk_usage(std::path::Path::new(path))
    }

    /// The proxy and CA certificates the tool's own HTTP uses from now on.
    pub fn use_network(&self, network: HttpNetwork) {
        *self.network.borrow_mut() = network;
    }

    /// Does a TCP connection to `host:port` open within `timeout`?
    pub fn connect(&self, host: &str, port: u16, timeout: Duration) -> Result<()> {
        self.system.connect(host, port, timeout)
    }

    /// Does `url` answer 200 to a HEAD request, within `timeout`? (`Err`
    /// says why not.) For checking a repository before changing anything.
    pub fn reachable(&self, url: &str, timeout: Duration) -> Result<()> {
        self.system
            .head(url, &self.network.borrow(), timeout)
            .with_context(|| format!("no answer from {url}"))
    }

    /// Downloads a URL (http, https) or reads a local `file:` URL or path.
    pub fn fetch(&self, url: &str) -> Result<Vec<u8>> {
        if let Some(path) = url
            .strip_prefix("file://")
            .or_else(|| url.strip_prefix("file:"))
        {
            return std::fs::read(path).with_context(|| format!("reading {path}"));
        }
        if !(url.starts_with("https://") || url.starts_with("http://")) {
            bail!("cannot fetch {url}: only http, https and file URLs are supported");
        }
        self.system
            .get(
                url,
                &self.network.borrow(),
                Duration::from_secs(60),
                16 * 1024 * 1024,
            )
            .with_context(|| format!("downloading {url}"))
    }

    /// The host name: the running kernel's, or /etc/hostname of another root.
    pub fn hostname(&self) -> Result<String> {
        let name = if self.files.root() == std::path::Path::new("/") {
            self.system.hostname().context("reading the host name")?
        } else {
            self.files.read("/etc/hostname")?.unwrap_or_default()
        };
        let name = name.trim().to_string();
        if name.is_empty() {
            bail!("the host has no name: set [runner] name in the profile or --name");
        }
        if name.chars().any(|c| c.is_control() || c.is_whitespace()) {
            bail!(
                "the host name `{}` holds spaces or control characters: fix /etc/hostname, or set [runner] name in the profile or --name",
                name.escape_debug()
            );
        }
        Ok(name)
    }

    /// Seconds since the epoch, for judging dates read from files (a
    /// signing key's expiry).
    pub fn unix_time(&self) -> u64 {
        self.system.unix_time()
    }

    pub fn redactor(&self) -> &Redactor {
        &self.redactor
    }
}
