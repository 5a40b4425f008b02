//! The command line: clap types whose doc comments are the help text, and
//! each subcommand's `run`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::{ArgAction, Args, CommandFactory, Parser, Subcommand};

use crate::Mode;
use crate::cloud_init;
use crate::host::Host;
use crate::host::command::DuctRunner;
use crate::host::system::RealSystem;
use crate::profile::{DockerSource, EMBEDDED, Profile, PruneSchedule};
use crate::report::{Format, Reporter, Status};
use crate::secret::{Redactor, TOKEN_ENV, Token};
use crate::steps::{self, Selection, Settings, StepId};

/// Turn this Linux host into a GitLab Runner shell-executor host that builds
/// Docker images: idempotent, checkable, quiet under cloud-init.
///
/// The runner token comes from the RUNNER_TOKEN environment variable or
/// --token-file, never from a flag: argv is world-readable.
/// `--version`'s long form: version, commit and the oldest glibc the binary
/// runs on (see build.rs).
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("RUNNER_PROVISION_COMMIT"),
    "\nglibc baseline: ",
    env!("RUNNER_PROVISION_GLIBC"),
);

#[derive(Debug, Parser)]
#[command(
    name = "runner-provision",
    version,
    long_version = LONG_VERSION,
    help_expected = true,
    propagate_version = true
)]
pub struct Cli {
    /// A built-in profile name (see `profiles list`) or the path of a profile file
    #[arg(
        long,
        global = true,
        value_name = "NAME|PATH",
        env = "RUNNER_PROVISION_PROFILE"
    )]
    profile: Option<String>,

    /// Output format: plain lines or spinners for people, or JSON Lines
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "human",
        env = "RUNNER_PROVISION_OUTPUT"
    )]
    output: Format,

    /// Work on the filesystem tree at DIR (an image being built) instead of
    /// this host: commands run in `chroot DIR`, live-only actions are skipped
    #[arg(long, global = true, value_name = "DIR")]
    root: Option<PathBuf>,

    /// Show more: every command run (repeatable)
    #[arg(short, long, global = true, action = ArgAction::Count)]
    verbose: u8,

    /// Show only warnings, changes, failures and the summary
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    quiet: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Converge the host; exit 0 if every step ended ok, changed or skipped, 1 otherwise
    Apply(ApplyArgs),
    /// Show each step's state and what would change (with diffs); changes nothing
    Plan(PlanArgs),
    /// Check a provisioned host; each failure comes with a diagnosis; changes nothing
    Verify(VerifyArgs),
    /// List or show the built-in profiles
    #[command(subcommand)]
    Profiles(ProfilesCommand),
    /// Print #cloud-config user data that installs this tool and runs `apply` on every boot
    CloudInit(CloudInitArgs),
    /// Take back what apply created (from its receipt): runners, files, groups, module lines; packages only with --purge
    Remove(RemoveArgs),
    /// Free disk: remove old stopped containers, unused images, build cache and
    /// anonymous volumes when Docker's filesystem is fuller than [prune] above_percent
    Prune(PruneArgs),
    /// Print a shell completion script
    Completions(CompletionsArgs),
}

/// Settings that override the profile (the environment variables override it too).
#[derive(Debug, Clone, Args)]
struct SettingsArgs {
    /// GitLab instance URL
    #[arg(long, env = "RUNNER_PROVISION_URL")]
    url: Option<String>,
    /// Runner name (default: the host name)
    #[arg(long, env = "RUNNER_PROVISION_NAME")]
    name: Option<String>,
    /// GitLab Runner executor
    #[arg(long, env = "RUNNER_PROVISION_EXECUTOR")]
    executor: Option<String>,
    /// Runner tags, comma-separated (legacy registration tokens only)
    #[arg(long, value_delimiter = ',', env = "RUNNER_PROVISION_TAG_LIST")]
    tag_list: Option<Vec<String>>,
    /// Where Docker Engine comes from
    #[arg(long, value_enum, env = "RUNNER_PROVISION_DOCKER_SOURCE")]
    docker_source: Option<DockerSource>,
    /// Docker storage driver for daemon.json and DOCKER_DRIVER
    #[arg(long, env = "RUNNER_PROVISION_STORAGE_DRIVER")]
    storage_driver: Option<String>,
    /// Accept that membership in group docker is root-equivalent
    #[arg(long)]
    accept_docker_group_risk: bool,
    /// Switch to --storage-driver even where Docker or a runner has another
    /// driver set (the images and containers of the old one are hidden)
    #[arg(long, env = "RUNNER_PROVISION_REPLACE_STORAGE_DRIVER")]
    replace_storage_driver: bool,
    /// Seconds docker-verify waits for the daemon to answer
    #[arg(long, value_name = "SECS")]
    verify_timeout: Option<u64>,
    /// Pin GitLab Runner to this release (17.5.0) and hold it
    #[arg(long, value_name = "VERSION", env = "RUNNER_PROVISION_RUNNER_VERSION")]
    runner_version: Option<String>,
    /// Pin Docker Engine to this apt version and hold it
    #[arg(long, value_name = "VERSION", env = "RUNNER_PROVISION_DOCKER_VERSION")]
    docker_version: Option<String>,
    /// Do not build the throwaway image that docker-build uses to prove a job can build
    #[arg(long)]
    skip_build: bool,
    /// Leave out the profile's [docker.daemon_defaults] (bounded json-file logs in the default profile)
    #[arg(long)]
    no_daemon_defaults: bool,
    /// Proxy for HTTP requests: http://[user:password@]host:port
    #[arg(long, value_name = "URL", env = "RUNNER_PROVISION_HTTP_PROXY")]
    http_proxy: Option<String>,
    /// Proxy for HTTPS requests: http://[user:password@]host:port
    #[arg(long, value_name = "URL", env = "RUNNER_PROVISION_HTTPS_PROXY")]
    https_proxy: Option<String>,
    /// Hosts, domains (.corp) and addresses reached without the proxy, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOSTS",
        env = "RUNNER_PROVISION_NO_PROXY"
    )]
    no_proxy: Option<Vec<String>>,
    /// PEM files with CA certificates to trust, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "PATHS",
        env = "RUNNER_PROVISION_CA_FILES"
    )]
    ca_files: Option<Vec<String>>,
    /// Docker registries (host[:port]) that dockerd trusts the CA for, comma-separated
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "HOSTS",
        env = "RUNNER_PROVISION_CA_REGISTRIES"
    )]
    ca_registries: Option<Vec<String>>,
    /// Also install the CA certificates into the system trust store
    #[arg(long)]
    install_ca_system_wide: bool,
    /// Install a systemd unit that unregisters this host's runners when it shuts down
    #[arg(long)]
    unregister_on_shutdown: bool,
    /// Seconds running jobs may take to finish when the runner stops
    #[arg(long, value_name = "SECS")]
    shutdown_timeout: Option<u64>,
    /// config.toml's `concurrent`: jobs the runner runs at once
    #[arg(long, value_name = "N", env = "RUNNER_PROVISION_CONCURRENT")]
    concurrent: Option<u32>,
    /// config.toml's `check_interval`: seconds between job requests (0: GitLab Runner's default)
    #[arg(long, value_name = "SECS", env = "RUNNER_PROVISION_CHECK_INTERVAL")]
    check_interval: Option<u32>,
    /// config.toml's `shutdown_timeout`: seconds a forceful stop waits for aborted jobs
    #[arg(
        long,
        value_name = "SECS",
        env = "RUNNER_PROVISION_GLOBAL_SHUTDOWN_TIMEOUT"
    )]
    global_shutdown_timeout: Option<u32>,
    /// config.toml's `listen_address`: host:port of the Prometheus metrics server ("" removes it)
    #[arg(
        long,
        value_name = "HOST:PORT",
        env = "RUNNER_PROVISION_LISTEN_ADDRESS"
    )]
    listen_address: Option<String>,
    /// How often a timer runs `runner-provision prune` with this profile's [prune] settings
    #[arg(long, value_enum, env = "RUNNER_PROVISION_PRUNE_SCHEDULE")]
    prune_schedule: Option<PruneSchedule>,
    /// Prune (by the timer) only above this use of Docker's filesystem, in percent
    #[arg(
        long,
        value_name = "PERCENT",
        env = "RUNNER_PROVISION_PRUNE_ABOVE_PERCENT"
    )]
    prune_above_percent: Option<u64>,
    /// Prune (by the timer) only what is older than this: 72h, 3d, 90m, 1h30m
    #[arg(long, value_name = "AGE", env = "RUNNER_PROVISION_PRUNE_OLDER_THAN")]
    prune_older_than: Option<String>,
    /// Read the runner token from this file (else from RUNNER_TOKEN)
    #[arg(long, value_name = "PATH")]
    token_file: Option<PathBuf>,
    /// Fail (instead of skipping runner-register) when the host ends
    /// without a registered runner for this URL and name
    #[arg(long, env = "RUNNER_PROVISION_REQUIRE_REGISTRATION")]
    require_registration: bool,
}

#[derive(Debug, Clone, Args)]
struct SelectionArgs {
    /// Run only these steps (preflight always runs: it refuses bad input before any change)
    #[arg(long, value_name = "ID", num_args = 1.., value_delimiter = ',')]
    only: Vec<StepId>,
    /// Leave these steps out (preflight always runs)
    #[arg(long, value_name = "ID", num_args = 1.., value_delimiter = ',')]
    skip: Vec<StepId>,
}

#[derive(Debug, Args)]
struct ApplyArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Do not ask for confirmation at a terminal
    #[arg(short, long)]
    yes: bool,
    /// After applying, delete the --token-file (if given) and overwrite the
    /// token in cloud-init's stored copies of the user data
    #[arg(long)]
    forget_token: bool,
    /// Seconds to wait for another apply on this host (or root) to finish
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    lock_timeout: u64,
}

#[derive(Debug, Args)]
struct RemoveArgs {
    /// Show what would be removed and kept; change nothing
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: exit 0 when nothing is left to remove, 2 when something is, 1 on error
    #[arg(long, requires = "dry_run")]
    detailed_exitcode: bool,
    /// Also purge the packages apply installed (Docker's data in /var/lib/docker stays)
    #[arg(long)]
    purge: bool,
    /// Seconds to wait for an apply on this host (or root) to finish
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    lock_timeout: u64,
}

impl RemoveArgs {
    fn run(self, global: &Global) -> Result<u8> {
        let reporter = global.reporter();
        let host = global.host(reporter.clone())?;
        if host.live && !host.is_root() && !self.dry_run {
            return Err(crate::Error::NotRoot.into());
        }
        let _lock = if self.dry_run {
            None
        } else {
            Some(host.lock_apply(std::time::Duration::from_secs(self.lock_timeout))?)
        };
        let counts = crate::remove::run(
            &host,
            &reporter,
            &crate::remove::Options {
                dry_run: self.dry_run,
                purge: self.purge,
            },
        )?;
        Ok(dry_run_exit_code(&counts, self.detailed_exitcode))
    }
}

#[derive(Debug, Args)]
struct PruneArgs {
    /// Show what would be removed; remove nothing
    #[arg(long)]
    dry_run: bool,
    /// With --dry-run: exit 0 when nothing would be removed, 2 when something would, 1 on error
    #[arg(long, requires = "dry_run")]
    detailed_exitcode: bool,
    /// Prune whatever the use of Docker's filesystem (the age limit still holds)
    #[arg(long)]
    force: bool,
    /// Prune only when the filesystem holding Docker's data root is more than this full, in percent
    #[arg(
        long,
        value_name = "PERCENT",
        env = "RUNNER_PROVISION_PRUNE_ABOVE_PERCENT"
    )]
    above_percent: Option<u64>,
    /// Remove only what is older than this: 72h, 3d, 90m, 1h30m
    #[arg(long, value_name = "AGE", env = "RUNNER_PROVISION_PRUNE_OLDER_THAN")]
    older_than: Option<String>,
    /// Seconds to wait for an apply (or another prune) on this host to finish
    #[arg(long, value_name = "SECS", default_value_t = 600,
          value_parser = clap::value_parser!(u64).range(0..=86400))]
    lock_timeout: u64,
}

impl PruneArgs {
    fn run(self, global: &Global) -> Result<u8> {
        let (mut profile, _) = Profile::load(global.profile.as_deref())?;
        if let Some(percent) = self.above_percent {
            profile.prune.above_percent = percent;
        }
        if let Some(age) = &self.older_than {
            profile.prune.older_than.clone_from(age);
        }
        profile.validate()?;
        let options = crate::prune::Options {
            dry_run: self.dry_run,
            force: self.force,
            above_percent: profile.prune.above_percent,
            older_than_secs: profile.prune.older_than_secs()?,
            older_than: profile.prune.older_than,
        };
        let reporter = global.reporter();
        let host = global.host(reporter.clone())?;
        if !self.dry_run && !host.is_root() {
            return Err(crate::Error::NotRoot.into());
        }
        // Never beside an apply (which may restart Docker), nor another prune.
        let _lock = if self.dry_run {
            None
        } else {
            Some(host.lock_apply(std::time::Duration::from_secs(self.lock_timeout))?)
        };
        let counts = crate::prune::run(&host, &reporter, &options)?;
        Ok(dry_run_exit_code(&counts, self.detailed_exitcode))
    }
}

#[derive(Debug, Args)]
struct PlanArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    selection: SelectionArgs,
    /// Exit 0 when converged, 2 when changes are pending, 1 on error
    #[arg(long)]
    detailed_exitcode: bool,
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    selection: SelectionArgs,
}

#[derive(Debug, Subcommand)]
enum ProfilesCommand {
    /// List the built-in profiles
    List,
    /// Print a built-in profile (or a profile file) as TOML
    Show {
        /// Profile name or path
        name: String,
    },
}

#[derive(Debug, Args)]
struct CloudInitArgs {
    #[command(flatten)]
    settings: SettingsArgs,
    #[command(flatten)]
    selection: SelectionArgs,
    /// URL the new host downloads this tool from (with --binary-sha256)
    #[arg(long, requires = "binary_sha256", conflicts_with = "binary_path")]
    binary_url: Option<String>,
    /// SHA-256 of the binary at --binary-url, checked before it runs
    #[arg(long, value_name = "HEX")]
    binary_sha256: Option<String>,
    /// Path of the binary on the new host (baked into the image, or on an attached disk)
    #[arg(long, value_name = "PATH", required_unless_present = "binary_url")]
    binary_path: Option<String>,
    /// Power the machine off or reboot it when cloud-init is done
    #[arg(long, value_enum)]
    power_state: Option<cloud_init::PowerState>,
}

#[derive(Debug, Args)]
struct CompletionsArgs {
    /// The shell to complete for
    shell: clap_complete::Shell,
}

/// What every subcommand that looks at a host shares.
struct Global {
    profile: Option<String>,
    output: Format,
    root: Option<PathBuf>,
    verbosity: i8,
    redactor: Redactor,
}

impl Cli {
    /// `--output json` was asked for.
    pub fn json_output(&self) -> bool {
        self.output == Format::Json
    }

    /// Runs the command; returns the process exit code.
    pub fn run(self, redactor: Redactor) -> Result<u8> {
        let global = Global {
            profile: self.profile,
            output: self.output,
            root: self.root,
            verbosity: if self.quiet {
                -1
            } else {
                i8::try_from(self.verbose).unwrap_or(i8::MAX)
            },
            redactor,
        };
        match self.command {
            Command::Apply(args) => args.run(&global),
            Command::Plan(args) => args.run(&global),
            Command::Verify(args) => args.run(&global),
            Command::Profiles(cmd) => cmd.run(),
            Command::CloudInit(args) => args.run(&global),
            Command::Remove(args) => args.run(&global),
            Command::Prune(args) => args.run(&global),
            Command::Completions(args) => {
                clap_complete::generate(
                    args.shell,
                    &mut Cli::command(),
                    "runner-provision",
                    &mut std::io::stdout(),
                );
                Ok(0)
            }
        }
    }
}

impl SettingsArgs {
    /// The profile with environment and flags laid over it, and the token.
    fn resolve(&self, global: &Global) -> Result<Settings> {
        let (mut profile, _source) = Profile::load(global.profile.as_deref())?;
        let runner = &mut profile.runner;
        if let Some(url) = &self.url {
            runner.url.clone_from(url);
        }
        if let Some(name) = &self.name {
            runner.name.clone_from(name);
        }
        if let Some(executor) = &self.executor {
            runner.executor.clone_from(executor);
        }
        if let Some(tags) = &self.tag_list {
            runner.tags = tags.iter().filter(|t| !t.is_empty()).cloned().collect();
        }
        if self.unregister_on_shutdown {
            runner.unregister_on_shutdown = true;
        }
        if let Some(secs) = self.shutdown_timeout {
            runner.shutdown_timeout = secs;
        }
        if let Some(version) = &self.runner_version {
            runner.version.clone_from(version);
        }
        let prune = &mut profile.prune;
        if let Some(schedule) = self.prune_schedule {
            prune.schedule = schedule;
        }
        if let Some(percent) = self.prune_above_percent {
            prune.above_percent = percent;
        }
        if let Some(age) = &self.prune_older_than {
            prune.older_than.clone_from(age);
        }
        let docker = &mut profile.docker;
        if let Some(source) = self.docker_source {
            docker.source = source;
        }
        if let Some(driver) = &self.storage_driver {
            docker.storage_driver.clone_from(driver);
        }
        if self.accept_docker_group_risk {
            docker.accept_group_risk = true;
        }
        if self.require_registration {
            profile.runner.require_registration = true;
        }
        if self.replace_storage_driver {
            docker.replace_storage_driver = true;
        }
        if let Some(secs) = self.verify_timeout {
            docker.verify_timeout = secs;
        }
        if let Some(version) = &self.docker_version {
            docker.version.clone_from(version);
        }
        if self.skip_build {
            docker.build_check = false;
        }
        if self.no_daemon_defaults {
            docker.daemon_defaults = crate::profile::DaemonSettings::default();
        }
        let globals = &mut profile.global;
        if let Some(n) = self.concurrent {
            globals.concurrent = Some(n);
        }
        if let Some(secs) = self.check_interval {
            globals.check_interval = Some(secs);
        }
        if let Some(secs) = self.global_shutdown_timeout {
            globals.shutdown_timeout = Some(secs);
        }
        if let Some(address) = &self.listen_address {
            globals.listen_address = Some(address.clone());
        }
        let network = &mut profile.network;
        if let Some(url) = &self.http_proxy {
            network.http_proxy.clone_from(url);
        }
        if let Some(url) = &self.https_proxy {
            network.https_proxy.clone_from(url);
        }
        let list = |items: &Vec<String>| -> Vec<String> {
            items.iter().filter(|i| !i.is_empty()).cloned().collect()
        };
        if let Some(hosts) = &self.no_proxy {
            network.no_proxy = list(hosts);
        }
        if let Some(paths) = &self.ca_files {
            network.ca_files = list(paths);
        }
        if let Some(registries) = &self.ca_registries {
            network.ca_registries = list(registries);
        }
        if self.install_ca_system_wide {
            network.install_ca_system_wide = true;
        }
        // Proxy passwords are redacted everywhere, from before the first
        // message that could quote them.
        for userinfo in network.credentials() {
            global.redactor.add_credentials(&userinfo);
            // Every user can read a process's argv (ps): a password there
            // has leaked before this line runs; say where it belongs.
            if std::env::args().any(|arg| arg.contains(&format!("{userinfo}@"))) {
                bail!(
                    "--http-proxy/--https-proxy hold a password, and a command line is readable by every user on this host: put the proxy URL in RUNNER_PROVISION_HTTP_PROXY / RUNNER_PROVISION_HTTPS_PROXY or the profile's [network] instead (and change the password if others use this host)"
                );
            }
        }
        profile.validate()?;
        if !profile.runners.is_empty() {
            return self.resolve_listed(global, profile);
        }
        let token = match &self.token_file {
            Some(path) => {
                let (token, warning) = Token::from_file(path)?;
                if let Some(warning) = warning {
                    global.reporter().warning(None, &warning);
                }
                Some(token)
            }
            None => match std::env::var(TOKEN_ENV) {
                Err(std::env::VarError::NotPresent) => None,
                Err(std::env::VarError::NotUnicode(_)) => {
                    return Err(crate::Error::MalformedToken.into());
                }
                Ok(value) => Token::from_env_value(Some(&value))?,
            },
        };
        if let Some(token) = &token {
            global.redactor.add_token(token.expose());
        }
        Ok(Settings::new(profile, token))
    }
}

impl SettingsArgs {
    /// A profile with `[[runners]]`: each runner's token from its own
    /// source. The flags and variables that describe the single runner
    /// would leave unclear which runner they mean, so they are refused.
    fn resolve_listed(&self, global: &Global, profile: Profile) -> Result<Settings> {
        let single = [
            ("--url / RUNNER_PROVISION_URL", self.url.is_some()),
            ("--name / RUNNER_PROVISION_NAME", self.name.is_some()),
            (
                "--executor / RUNNER_PROVISION_EXECUTOR",
                self.executor.is_some(),
            ),
            (
                "--tag-list / RUNNER_PROVISION_TAG_LIST",
                self.tag_list.is_some(),
            ),
            ("--token-file", self.token_file.is_some()),
        ];
        let given: Vec<&str> = single
            .iter()
            .filter(|(_, set)| *set)
            .map(|(what, _)| *what)
            .collect();
        if !given.is_empty() {
            bail!(
                "{} set the single [runner], and the profile lists its runners in [[runners]]: set url, name, executor, tags and the token source (token_env or token_file) in each [[runners]] entry instead",
                given.join(", ")
            );
        }
        let claimed = profile.runners.iter().any(|r| r.token_env == TOKEN_ENV);
        if std::env::var_os(TOKEN_ENV).is_some() && !claimed {
            bail!(
                "{TOKEN_ENV} is set, and the profile lists its runners in [[runners]], each with its own token source: unset {TOKEN_ENV}, or name it as token_env of the runner whose token it is"
            );
        }
        let mut runner_tokens = Vec::new();
        for runner in &profile.runners {
            let token = listed_token(runner)
                .with_context(|| format!("runner {:?}'s {}", runner.name, runner.token_source()))?;
            if let Some(token) = &token {
                global.redactor.add_token(token.expose());
            }
            runner_tokens.push(token);
        }
        Ok(Settings {
            profile,
            token: None,
            runner_tokens,
        })
    }
}

/// One `[[runners]]` entry's token: none when its variable is unset or
/// empty or its file does not exist (a runner already registered needs
/// none, and cloud-init's /run is empty after a reboot); an error when the
/// source holds something that is no token, or the file is not the
/// runner's alone (see [`Token::from_private_file`]).
fn listed_token(runner: &crate::profile::ListedRunner) -> Result<Option<Token>> {
    if !runner.token_env.is_empty() {
        return match std::env::var(&runner.token_env) {
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(crate::Error::MalformedToken.into()),
            Ok(value) => Ok(Token::from_env_value(Some(&value))?),
        };
    }
    let path = std::path::Path::new(&runner.token_file);
    match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        _ => {}
    }
    let caller = nix::unistd::geteuid().as_raw();
    Ok(Some(Token::from_private_file(path, caller)?))
}

impl SelectionArgs {
    fn resolve(&self) -> Selection {
        Selection {
            only: self.only.clone(),
            skip: self.skip.clone(),
        }
    }
}

/// What `apply`, `plan` and `verify` share before their steps run: the
/// resolved settings and selection, the output and the host.
struct Run {
    settings: Settings,
    selection: Selection,
    reporter: Arc<Reporter>,
    host: Host,
}

impl Run {
    fn steps(&self, mode: Mode) -> crate::report::Counts {
        steps::run(
            &self.host,
            &self.settings,
            &self.selection,
            mode,
            &self.reporter,
        )
    }
}

impl Global {
    /// Resolves everything a run needs; bad input fails here, before any change.
    fn prepare(&self, settings: &SettingsArgs, selection: &SelectionArgs) -> Result<Run> {
        let settings = settings.resolve(self)?;
        let selection = selection.resolve();
        let reporter = self.reporter();
        let host = self.host(reporter.clone())?;
        Ok(Run {
            settings,
            selection,
            reporter,
            host,
        })
    }

    fn reporter(&self) -> Arc<Reporter> {
        Arc::new(Reporter::new(
            self.output,
            self.verbosity,
            self.redactor.clone(),
        ))
    }

    fn host(&self, reporter: Arc<Reporter>) -> Result<Host> {
        let (root, live) = match &self.root {
            Some(dir) => {
                if !dir.is_dir() {
                    bail!(
                        "--root {}: no such folder; give the root of the tree to work on",
                        dir.display()
                    );
                }
                let dir = dir
                    .canonicalize()
                    .with_context(|| format!("resolving --root {}", dir.display()))?;
                let live = dir == std::path::Path::new("/");
                (dir, live)
            }
            None => (PathBuf::from("/"), true),
        };
        Host::new(
            root,
            live,
            Box::new(DuctRunner),
            Box::new(RealSystem),
            reporter,
            self.redactor.clone(),
            self.verbosity > 0,
        )
    }
}

impl ApplyArgs {
    fn run(self, global: &Global) -> Result<u8> {
        let run = global.prepare(&self.settings, &self.selection)?;
        let interactive = global.output == Format::Human
            && std::io::stdin().is_terminal()
            && std::io::stdout().is_terminal();
        if interactive && !self.yes {
            let planned = run.steps(Mode::Plan);
            if planned.failed > 0 {
                return Ok(1);
            }
            if planned.pending == 0 {
                return Ok(0);
            }
            if !confirm("Apply these changes?")? {
                println!("Nothing was changed.");
                return Ok(1);
            }
        }
        // One apply at a time; held until this run ends (forgetting the token included).
        let _lock = run
            .host
            .lock_apply(std::time::Duration::from_secs(self.lock_timeout))?;
        // What the plan read may have changed while the question was open
        // (or while another apply held the lock): read it again.
        run.host.files.forget();
        let (counts, statuses) = steps::run_with_statuses(
            &run.host,
            &run.settings,
            &run.selection,
            Mode::Apply,
            &run.reporter,
        );
        // What this run created, for `remove`: recorded after a failure
        // too, since whatever was created is there.
        crate::receipt::record_run(&run.host)?;
        let mut failed = counts.failed > 0;
        if self.forget_token {
            let registered = statuses.iter().any(|(id, status)| {
                *id == StepId::RunnerRegister && matches!(status, Status::Ok | Status::Changed)
            });
            let token_file = self.settings.token_file.as_deref();
            let forgotten = cloud_init::forget_token(
                &run.host,
                run.settings.token.as_ref(),
                token_file,
                registered,
            )?;
            if forgotten.kept {
                run.reporter.warning(
                    None,
                    &format!(
                        "the runner is not registered yet: the token is kept in {} (root only) for the next boot or apply, and forgotten once registered",
                        cloud_init::KEPT_TOKEN_PATH
                    ),
                );
            }
            for file in &forgotten.cleaned {
                run.reporter
                    .warning(None, &format!("overwrote the runner token in {file}"));
            }
            for (file, reason) in &forgotten.unsafe_files {
                run.reporter.warning(
                    None,
                    &format!(
                        "{file} still holds the runner token: {reason}; delete the file by hand"
                    ),
                );
                failed = true;
            }
        }
        Ok(if failed { 1 } else { 0 })
    }
}

fn confirm(question: &str) -> Result<bool> {
    print!("{question} [y/N] ");
    std::io::stdout().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .context("reading the answer")?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes" | "Yes"))
}

/// The exit status of plan and of `--dry-run`: 1 on a failure; with
/// `--detailed-exitcode`, 2 when something would change; otherwise 0.
fn dry_run_exit_code(counts: &crate::report::Counts, detailed: bool) -> u8 {
    if counts.failed > 0 {
        1
    } else if detailed && counts.pending > 0 {
        2
    } else {
        0
    }
}

impl PlanArgs {
    fn run(self, global: &Global) -> Result<u8> {
        let counts = global
            .prepare(&self.settings, &self.selection)?
            .steps(Mode::Plan);
        Ok(dry_run_exit_code(&counts, self.detailed_exitcode))
    }
}

impl VerifyArgs {
    fn run(self, global: &Global) -> Result<u8> {
        let counts = global
            .prepare(&self.settings, &self.selection)?
            .steps(Mode::Verify);
        Ok(if counts.failed > 0 { 1 } else { 0 })
    }
}

impl ProfilesCommand {
    fn run(self) -> Result<u8> {
        match self {
            ProfilesCommand::List => {
                for (i, (name, text)) in EMBEDDED.iter().enumerate() {
                    let profile = Profile::parse(text, name)?;
                    let default = if i == 0 { " (default)" } else { "" };
                    println!("{name}{default}\t{}", profile.description);
                }
            }
            ProfilesCommand::Show { name } => match EMBEDDED.iter().find(|(n, _)| *n == name) {
                Some((_, text)) => print!("{text}"),
                None => {
                    let (profile, _) = Profile::load(Some(&name))?;
                    print!("{}", profile.to_toml().context("rendering the profile")?);
                }
            },
        }
        Ok(0)
    }
}

impl CloudInitArgs {
    fn run(self, global: &Global) -> Result<u8> {
        let settings = self.settings.resolve(global)?;
        let selection = self.selection.resolve();
        let binary = match (self.binary_url, self.binary_sha256, self.binary_path) {
            (Some(url), Some(sha256), _) => cloud_init::Binary::Url { url, sha256 },
            (_, _, Some(path)) => cloud_init::Binary::Path(path),
            _ => bail!("give --binary-path, or --binary-url with --binary-sha256"),
        };
        let user_data = cloud_init::render(&cloud_init::Options {
            binary,
            profile: settings.profile,
            token: settings.token,
            selection,
            power_state: self.power_state,
        })?;
        print!("{user_data}");
        Ok(0)
    }
}
