//! Profiles: the settings of a runner host, from built-in defaults, a
//! profile (embedded in the binary or a file), the environment and flags,
//! in that order of precedence. Field names are the flags' names.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::Error;

/// Profiles shipped inside the binary; the first is the default.
pub const EMBEDDED: &[(&str, &str)] = &[
    (
        "shell-docker",
        include_str!("../profiles/shell-docker.toml"),
    ),
    (
        "shell-docker-ce",
        include_str!("../profiles/shell-docker-ce.toml"),
    ),
    (
        "shell-docker-fleet",
        include_str!("../profiles/shell-docker-fleet.toml"),
    ),
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    pub description: String,
    pub runner: Runner,
    /// Several runners on one host; empty: the single `[runner]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub runners: Vec<ListedRunner>,
    pub docker: Docker,
    pub kernel: Kernel,
    #[serde(skip_serializing_if = "Network::is_empty")]
    pub network: Network,
    #[serde(skip_serializing_if = "Prune::is_default")]
    pub prune: Prune,
    #[serde(skip_serializing_if = "Global::is_empty")]
    pub global: Global,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Runner {
    pub url: String,
    /// Empty: the host name.
    pub name: String,
    pub executor: String,
    pub tags: Vec<String>,
    pub install: Install,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// Ending without a registered runner for this URL and name is a
    /// failure, not a skip (the rendered cloud-init user data sets it).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub require_registration: bool,
    /// A systemd unit unregisters this host's runners when it shuts down
    /// (for instances that go away: autoscaled and spot machines).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unregister_on_shutdown: bool,
    /// Seconds running jobs may take to finish when the runner stops.
    #[serde(skip_serializing_if = "is_default_shutdown_timeout")]
    pub shutdown_timeout: u64,
    /// Pin: exactly this GitLab Runner release ("17.5.0", apt version
    /// 17.5.0-1; a version with its revision is used as it is), with its
    /// helper-images package from 17.7 on, both held. Empty: the
    /// repository's newest, not held.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
}

pub const DEFAULT_SHUTDOWN_TIMEOUT: u64 = 300;
const MAX_SHUTDOWN_TIMEOUT: u64 = 86_400;

fn is_default_shutdown_timeout(secs: &u64) -> bool {
    *secs == DEFAULT_SHUTDOWN_TIMEOUT
}

impl Default for Runner {
    fn default() -> Self {
        Self {
            url: "https://gitlab.com/".to_string(),
            name: String::new(),
            executor: "shell".to_string(),
            tags: Vec::new(),
            install: Install::PackageRepo,
            repository: None,
            require_registration: false,
            unregister_on_shutdown: false,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            version: String::new(),
        }
    }
}

/// One `[[runners]]` entry: a runner registered under its own name, with
/// its own token source. `[runner]` then holds only what the host shares
/// (install, repository, require_registration, unregister_on_shutdown,
/// shutdown_timeout).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListedRunner {
    /// Required: the host name would be the same for every runner.
    pub name: String,
    pub url: String,
    pub executor: String,
    pub tags: Vec<String>,
    /// Jobs this runner runs at once (config.toml's `limit`); 0: no limit
    /// but the global `concurrent`.
    #[serde(skip_serializing_if = "is_zero")]
    pub limit: u32,
    /// `KEY=value` entries for the runner's `environment`, set at
    /// registration (DOCKER_DRIVER is docker-driver's).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub environment: Vec<String>,
    /// The environment variable that holds this runner's token.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_env: String,
    /// The file (root only) that holds this runner's token.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub token_file: String,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Default for ListedRunner {
    fn default() -> Self {
        Self {
            name: String::new(),
            url: "https://gitlab.com/".to_string(),
            executor: "shell".to_string(),
            tags: Vec::new(),
            limit: 0,
            environment: Vec::new(),
            token_env: String::new(),
            token_file: String::new(),
        }
    }
}

impl ListedRunner {
    /// Where its token comes from, in the profile's words (never the token).
    pub fn token_source(&self) -> String {
        if self.token_env.is_empty() {
            format!("token_file {}", self.token_file)
        } else {
            format!("token_env {}", self.token_env)
        }
    }
}

/// The `[runner]` keys that say which runner to register: with
/// `[[runners]]` each entry says it, and a `[runner]` that says it too
/// would leave unclear which applies.
pub const SINGLE_RUNNER_KEYS: &[&str] = &["url", "name", "executor", "tags"];

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Install {
    /// From an apt repository: GitLab's, or `[runner.repository]`.
    #[default]
    PackageRepo,
    /// gitlab-runner must already be installed (images, custom packaging).
    Present,
}

/// An apt repository that provides the `gitlab-runner` package.
/// `{id}` and `{codename}` are replaced from /etc/os-release.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Repository {
    pub uri: String,
    pub suite: String,
    /// Empty for a flat repository.
    pub components: String,
    /// URL of the ASCII-armoured signing key; empty marks the source
    /// `Trusted: yes` (for local test repositories only).
    pub key_url: String,
}

impl Default for Repository {
    /// GitLab's own repository, as its install documentation sets it up.
    fn default() -> Self {
        Self {
            uri: "https://packages.gitlab.com/runner/gitlab-runner/{id}/".to_string(),
            suite: "{codename}".to_string(),
            components: "main".to_string(),
            key_url: "https://packages.gitlab.com/runner/gitlab-runner/gpgkey".to_string(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Docker {
    pub source: DockerSource,
    pub group_members: Vec<String>,
    pub accept_group_risk: bool,
    pub storage_driver: String,
    /// Another driver already set in daemon.json or a runner's environment:
    /// refused unless true (switching hides the old driver's images).
    pub replace_storage_driver: bool,
    /// Seconds docker-verify waits for the daemon to answer (and docker-build
    /// for its build).
    pub verify_timeout: u64,
    /// Build a throwaway image as a job would (docker-build); false or
    /// `--skip-build` turns it off.
    pub build_check: bool,
    /// The other engine's package already installed (docker-ce where the
    /// source says distro, docker.io where it says docker-ce) is kept as
    /// Docker Engine unless this is true: then the source's packages are
    /// installed and apt removes the other engine (the packages conflict).
    pub replace_engine: bool,
    /// Docker's apt repository for `source = "docker-ce"`; default: Docker's own.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<Repository>,
    /// Pin: the engine and its client at exactly this apt version (as
    /// `apt-cache madison docker.io` lists it), held. Empty: the newest, not held.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// daemon.json keys and values (`[docker.daemon]`): each written whole,
    /// replacing the file's value; keys not listed are kept.
    #[serde(skip_serializing_if = "DaemonSettings::is_empty")]
    pub daemon: DaemonSettings,
    /// daemon.json keys written only where neither daemon.json nor
    /// `[docker.daemon]` sets any of them (built in: bounded json-file
    /// logs): a setup chosen by hand is left as it is. An empty table or
    /// `--no-daemon-defaults` turns them off.
    pub daemon_defaults: DaemonSettings,
}

/// daemon.json keys and their values, read from a TOML table (tables
/// become objects, arrays, strings, integers, booleans and finite floats
/// stay what they are); a TOML date or time, nan or inf is refused when the
/// profile is read.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct DaemonSettings(pub serde_json::Map<String, serde_json::Value>);

impl DaemonSettings {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The built-in `[docker.daemon_defaults]`: json-file logs of at most 3
    /// files of 10 MB per container (dockerd's own default grows without
    /// bound), the defaults docs.docker.com suggests for json-file.
    pub fn bounded_logs() -> Self {
        let mut map = serde_json::Map::new();
        map.insert("log-driver".into(), "json-file".into());
        map.insert(
            "log-opts".into(),
            serde_json::json!({"max-size": "10m", "max-file": "3"}),
        );
        Self(map)
    }
}

impl<'de> Deserialize<'de> for DaemonSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // The toml crate hands a table's keys over sorted: new keys reach
        // daemon.json in that order.
        let map = serde_json::Map::<String, serde_json::Value>::deserialize(deserializer)?;
        for (key, value) in &map {
            crate::edit::daemon_json::check_from_toml(key, value)
                .map_err(serde::de::Error::custom)?;
        }
        Ok(Self(map))
    }
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            source: DockerSource::Distro,
            group_members: vec!["gitlab-runner".to_string()],
            accept_group_risk: false,
            storage_driver: "overlay2".to_string(),
            replace_storage_driver: false,
            verify_timeout: 60,
            build_check: true,
            replace_engine: false,
            repository: None,
            version: String::new(),
            daemon: DaemonSettings::default(),
            daemon_defaults: DaemonSettings::bounded_logs(),
        }
    }
}

impl Repository {
    /// Docker's own repository, as docs.docker.com sets it up.
    pub fn docker() -> Self {
        Self {
            uri: "https://download.docker.com/linux/{id}".to_string(),
            suite: "{codename}".to_string(),
            components: "stable".to_string(),
            key_url: "https://download.docker.com/linux/{id}/gpg".to_string(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum DockerSource {
    /// The distribution's docker.io package.
    #[default]
    Distro,
    /// Docker's own repository (docker-ce, docker-ce-cli, containerd.io).
    DockerCe,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Kernel {
    pub modules: Vec<String>,
}

impl Default for Kernel {
    fn default() -> Self {
        Self {
            modules: vec!["overlay".to_string()],
        }
    }
}

/// A corporate network: one proxy and one set of CA certificates, applied
/// to apt, the tool's own HTTP, registration, the runner service and dockerd.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// `http://[user:password@]host:port` for plain-HTTP requests; empty: none.
    pub http_proxy: String,
    /// The proxy for HTTPS requests (usually the same URL); empty: none.
    pub https_proxy: String,
    /// Hosts, domains (`.corp`) and addresses reached without the proxy.
    pub no_proxy: Vec<String>,
    /// PEM files on the host holding the CA certificates to trust.
    pub ca_files: Vec<String>,
    /// Also add the certificates to the system trust store (update-ca-certificates).
    pub install_ca_system_wide: bool,
    /// Docker registries (`host[:port]`) that dockerd trusts the CA for.
    pub ca_registries: Vec<String>,
}

impl Network {
    pub fn is_empty(&self) -> bool {
        self == &Network::default()
    }

    /// The `user:password` parts of the proxy URLs, for the redactor.
    pub fn credentials(&self) -> Vec<String> {
        [&self.http_proxy, &self.https_proxy]
            .into_iter()
            .filter_map(|url| crate::edit::network::parse_proxy(url).ok()?.userinfo)
            .collect()
    }
}

/// Disk hygiene: what `runner-provision prune` removes, when, and the
/// optional timer that runs it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Prune {
    /// How often a systemd timer (a cron.d entry without systemd) runs
    /// `runner-provision prune` with these settings; `off`: no timer.
    pub schedule: PruneSchedule,
    /// Prune only when the filesystem holding Docker's data root is more
    /// than this full (percent of its space; 0: whenever anything is used).
    pub above_percent: u64,
    /// Only what is older than this: `72h`, `3d`, `90m`, `1h30m`.
    pub older_than: String,
}

pub const DEFAULT_PRUNE_ABOVE_PERCENT: u64 = 80;
pub const DEFAULT_PRUNE_OLDER_THAN: &str = "72h";

impl Default for Prune {
    fn default() -> Self {
        Self {
            schedule: PruneSchedule::Off,
            above_percent: DEFAULT_PRUNE_ABOVE_PERCENT,
            older_than: DEFAULT_PRUNE_OLDER_THAN.to_string(),
        }
    }
}

impl Prune {
    pub fn is_default(&self) -> bool {
        self == &Prune::default()
    }

    /// `older_than` in seconds (validated first).
    pub fn older_than_secs(&self) -> Result<u64, Error> {
        parse_age(&self.older_than).map_err(|reason| {
            // A huge value is quoted by its head only.
            let mut value: String = self.older_than.escape_debug().take(40).collect();
            if value.len() < self.older_than.escape_debug().count() {
                value.push('…');
            }
            Error::BadAge { value, reason }
        })
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum PruneSchedule {
    /// No timer: run `runner-provision prune` yourself.
    #[default]
    Off,
    /// Every hour.
    Hourly,
    /// Every day.
    Daily,
    /// Every week.
    Weekly,
}

/// The longest age accepted: ten years, in seconds. Past it nothing would
/// ever be pruned, which is what `schedule = "off"` is for.
const MAX_AGE_SECS: u64 = 10 * 366 * 86_400;

/// An age such as `72h`, `3d`, `90m`, `45s`, `2w` or `1h30m`: whole numbers,
/// each followed by its unit, nothing else. Returns seconds, at least 1.
pub fn parse_age(text: &str) -> Result<u64, String> {
    if text.is_empty() {
        return Err("it is empty".into());
    }
    let mut total: u64 = 0;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3_600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "`{}` is not a unit (s, m, h, d or w)",
                    c.escape_debug()
                ));
            }
        };
        if number.is_empty() {
            return Err(format!("the unit `{c}` has no number before it"));
        }
        let n: u64 = number
            .parse()
            .map_err(|_| "a number is too large".to_string())?;
        number.clear();
        total = n
            .checked_mul(unit)
            .and_then(|secs| total.checked_add(secs))
            .filter(|t| *t <= MAX_AGE_SECS)
            .ok_or_else(|| "it is longer than ten years".to_string())?;
    }
    if !number.is_empty() {
        return Err("a number has no unit (s, m, h, d or w)".into());
    }
    if total == 0 {
        return Err("it is zero: everything would count as old".into());
    }
    Ok(total)
}
/// config.toml's global settings (GitLab Runner's `common.Config`): each one
/// left out is not managed, and keeps whatever the file has.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Global {
    /// Jobs the runner process runs at once, over all its runners.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
    /// Seconds between asking GitLab for jobs (0: GitLab Runner's default, 3).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub check_interval: Option<u32>,
    /// config.toml's `shutdown_timeout`: seconds a *forceful* stop (SIGTERM,
    /// SIGINT) waits for aborted jobs and executor providers before the
    /// process exits (0: GitLab Runner's default, 30). Not the graceful
    /// wait, which is `[runner] shutdown_timeout`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shutdown_timeout: Option<u32>,
    /// `host:port` of the Prometheus metrics server; `""` removes the key
    /// (no metrics server).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen_address: Option<String>,
}

impl Global {
    pub fn is_empty(&self) -> bool {
        self == &Global::default()
    }
}

/// The largest `concurrent` accepted.
pub const MAX_CONCURRENT: u32 = 10_000;
/// The longest `check_interval` accepted: an hour.
pub const MAX_CHECK_INTERVAL: u32 = 3600;
/// The longest config.toml `shutdown_timeout` accepted: a day.
pub const MAX_GLOBAL_SHUTDOWN_TIMEOUT: u32 = 86_400;

/// The largest profile file read: a profile is a few hundred bytes, and a
/// cap keeps `--profile /dev/zero` from reading until memory runs out.
const MAX_PROFILE_BYTES: u64 = 1 << 20;

impl Profile {
    /// Loads a profile by embedded name or path; `None` is the default profile.
    /// Returns the profile and where it came from.
    pub fn load(spec: Option<&str>) -> Result<(Self, String), Error> {
        let spec = spec.unwrap_or(EMBEDDED[0].0);
        if let Some((name, text)) = EMBEDDED.iter().find(|(name, _)| *name == spec) {
            return Ok((
                Self::parse(text, &format!("{name} (built in)"))?,
                (*name).to_string(),
            ));
        }
        let path = Path::new(spec);
        let looks_like_path = spec.contains('/') || spec.ends_with(".toml") || path.exists();
        if !looks_like_path {
            return Err(Error::UnknownProfile {
                name: spec.to_string(),
                known: EMBEDDED
                    .iter()
                    .map(|(n, _)| *n)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let text = crate::secret::read_small_file(path, MAX_PROFILE_BYTES, "a profile")
            .map_err(|reason| Error::Profile {
                path: spec.to_string(),
                message: format!("cannot read it: {reason}"),
            })?
            .contents;
        Ok((Self::parse(&text, spec)?, spec.to_string()))
    }

    pub fn parse(text: &str, source: &str) -> Result<Self, Error> {
        let profile: Self = toml::from_str(text).map_err(|e| Error::Profile {
            path: source.to_string(),
            // The parser quotes the line it stopped at: a proxy URL's
            // password there is hidden (the redactor does not know it yet).
            message: crate::edit::network::hide_userinfo(e.to_string().trim_end()),
        })?;
        if !profile.runners.is_empty() {
            // Defaults cannot tell "url left out" from "url set to the
            // default": the text can.
            let table: toml::Table = toml::from_str(text).map_err(|e| Error::Profile {
                path: source.to_string(),
                message: crate::edit::network::hide_userinfo(e.to_string().trim_end()),
            })?;
            let set: Vec<&str> = table
                .get("runner")
                .and_then(toml::Value::as_table)
                .map(|runner| {
                    SINGLE_RUNNER_KEYS
                        .iter()
                        .copied()
                        .filter(|k| runner.contains_key(*k))
                        .collect()
                })
                .unwrap_or_default();
            if !set.is_empty() {
                return Err(Error::Profile {
                    path: source.to_string(),
                    message: format!(
                        "[runner] sets {} and [[runners]] lists runners, so it is unclear which runner they are for: move them into each [[runners]] entry (with [[runners]], [runner] keeps only what the host shares: install, repository, require_registration, unregister_on_shutdown, shutdown_timeout)",
                        set.join(", ")
                    ),
                });
            }
        }
        Ok(profile)
    }

    /// The profile as TOML that parses back to it: with `[[runners]]`,
    /// `[runner]` leaves out the keys each entry sets (their defaults would
    /// read as a second runner).
    pub fn to_toml(&self) -> anyhow::Result<String> {
        let text = toml::to_string(self)?;
        if self.runners.is_empty() {
            return Ok(text);
        }
        let mut doc: toml_edit::DocumentMut = text.parse()?;
        if let Some(runner) = doc
            .get_mut("runner")
            .and_then(toml_edit::Item::as_table_mut)
        {
            for key in SINGLE_RUNNER_KEYS {
                runner.remove(key);
            }
        }
        Ok(doc.to_string())
    }

    /// The GitLab URL the host's network settings are for: the single
    /// runner's, or the first listed runner's (validation makes every
    /// listed runner use the same host when a CA is given).
    pub fn gitlab_url(&self) -> &str {
        self.runners
            .first()
            .map_or(self.runner.url.as_str(), |r| r.url.as_str())
    }

    /// Checks what can be checked without the host. Errors say how to fix.
    pub fn validate(&self) -> Result<(), Error> {
        check_gitlab_url("the GitLab URL", &self.runner.url)?;
        self.validate_runners()?;
        for (section, repo) in [
            ("[runner.repository] uri and suite", &self.runner.repository),
            ("[docker.repository] uri and suite", &self.docker.repository),
        ] {
            let Some(repo) = repo else { continue };
            if repo.uri.trim().is_empty() || repo.suite.trim().is_empty() {
                return Err(Error::BadSetting {
                    what: section,
                    value: format!("{} {}", repo.uri, repo.suite),
                    allowed: "a non-empty apt URI and suite (\"./\" for a flat repository)",
                });
            }
            if !repo.key_url.is_empty() && !repo.key_url.starts_with("file:") {
                check_url("the repository key_url", &repo.key_url)?;
            }
        }
        if !EXECUTORS.contains(&self.runner.executor.as_str()) {
            return Err(Error::BadSetting {
                what: "executor",
                value: self.runner.executor.escape_debug().to_string(),
                allowed: "GitLab Runner's executors: shell (what this tool sets up), custom, docker, docker-autoscaler, docker-windows, docker+machine, instance, kubernetes, parallels, ssh, virtualbox",
            });
        }
        if !STORAGE_DRIVERS.contains(&self.docker.storage_driver.as_str()) {
            return Err(Error::BadSetting {
                what: "storage_driver",
                value: self.docker.storage_driver.escape_debug().to_string(),
                allowed: "Docker's storage drivers: overlay2 (the default), fuse-overlayfs, btrfs, zfs, vfs, devicemapper, overlayfs, native",
            });
        }
        if self.docker.verify_timeout > MAX_VERIFY_TIMEOUT {
            return Err(Error::BadSetting {
                what: "verify_timeout (--verify-timeout)",
                value: self.docker.verify_timeout.to_string(),
                allowed: "seconds from 0 to 3600",
            });
        }
        if !(1..=MAX_SHUTDOWN_TIMEOUT).contains(&self.runner.shutdown_timeout) {
            return Err(Error::BadSetting {
                what: "shutdown_timeout",
                value: self.runner.shutdown_timeout.to_string(),
                allowed: "seconds from 1 to 86400",
            });
        }
        if bad_name(&self.runner.name) {
            return Err(Error::BadSetting {
                what: "runner name (--name)",
                value: self.runner.name.escape_debug().to_string(),
                allowed: "a name without control characters, line breaks or leading or trailing spaces (empty: the host name)",
            });
        }
        check_tags(&self.runner.tags)?;
        self.validate_network()?;
        self.prune.older_than_secs()?;
        if self.prune.above_percent > 99 {
            return Err(Error::BadSetting {
                what: "[prune] above_percent",
                value: self.prune.above_percent.to_string(),
                allowed: "percentages from 0 to 99 (0: whenever anything is used)",
            });
        }
        self.validate_global()?;
        self.validate_versions()?;
        self.validate_daemon()?;
        // Each goes on usermod's or modprobe's command line: a name that
        // starts with `-` would be read as an option there.
        for name in &self.docker.group_members {
            if !account_name(name) {
                return Err(Error::BadSetting {
                    what: "[docker] group_members entry",
                    value: name.escape_debug().to_string(),
                    allowed: "user names as useradd takes them: letters, digits, _ . - (not first), up to 32",
                });
            }
        }
        for name in &self.kernel.modules {
            if name.is_empty()
                || name.starts_with('-')
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
            {
                return Err(Error::BadSetting {
                    what: "[kernel] modules entry",
                    value: name.escape_debug().to_string(),
                    allowed: "kernel module names: letters, digits, _ and - (not first), such as overlay",
                });
            }
        }
        Ok(())
    }
}

/// A user or group name as useradd and groupadd take it by default.
pub(crate) fn account_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 32
        && !name.starts_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c) || c == '$')
        && !name[..name.len() - 1].contains('$')
}

/// Characters a runner name cannot hold: control characters and line or
/// paragraph separators (YAML and some logs break lines there); leading or
/// trailing spaces do not survive GitLab's forms.
fn bad_name(name: &str) -> bool {
    name.chars()
        .any(|c| c.is_control() || (c.is_whitespace() && c != ' '))
        || name.trim() != name
}

fn check_tags(tags: &[String]) -> Result<(), Error> {
    for tag in tags {
        if tag.trim().is_empty() || tag.contains(',') || tag.chars().any(char::is_control) {
            return Err(Error::BadSetting {
                what: "runner tag",
                value: tag.escape_debug().to_string(),
                allowed: "non-empty tags without commas or control characters",
            });
        }
    }
    Ok(())
}

/// A POSIX environment variable name.
fn variable_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

impl Profile {
    /// `[[runners]]`: each entry complete and valid on its own, no runner
    /// twice. Errors name the entry by its position and name.
    fn validate_runners(&self) -> Result<(), Error> {
        let mut seen: Vec<(String, &str)> = Vec::new();
        for (i, runner) in self.runners.iter().enumerate() {
            let at = |problem: String| {
                Error::Runners(format!(
                    "entry {} ({}): {problem}",
                    i + 1,
                    if runner.name.is_empty() {
                        "no name".to_string()
                    } else {
                        format!("name \"{}\"", runner.name.escape_debug())
                    }
                ))
            };
            if runner.name.is_empty() {
                return Err(at(
                    "name is required: every runner on the host needs its own name (the host name would be the same for all)".into(),
                ));
            }
            if bad_name(&runner.name) {
                return Err(at("the name holds control characters, line breaks or leading or trailing spaces: give a plain name".into()));
            }
            check_gitlab_url("a [[runners]] url", &runner.url)?;
            if !EXECUTORS.contains(&runner.executor.as_str()) {
                return Err(at(format!(
                    "executor `{}` is not one of GitLab Runner's executors: {}",
                    runner.executor.escape_debug(),
                    EXECUTORS.join(", ")
                )));
            }
            check_tags(&runner.tags)?;
            for entry in &runner.environment {
                let key = entry.split_once('=').map(|(k, _)| k);
                let plain = !entry.contains(',')
                    && entry.trim() == entry
                    && !entry.chars().any(char::is_control);
                match key {
                    Some(key) if variable_name(key) && plain => {
                        if key == "DOCKER_DRIVER" {
                            return Err(at(
                                "environment sets DOCKER_DRIVER, which docker-driver sets from [docker] storage_driver: set storage_driver instead".into(),
                            ));
                        }
                    }
                    _ => {
                        return Err(at(format!(
                            "environment entry `{}` is not KEY=value with a variable name, no commas, control characters or leading or trailing spaces (gitlab-runner register reads the entries comma-separated)",
                            entry.escape_debug()
                        )));
                    }
                }
            }
            match (runner.token_env.is_empty(), runner.token_file.is_empty()) {
                (true, true) => {
                    return Err(at(
                        "no token source: set token_env = \"VARIABLE\" (the environment variable holding its token) or token_file = \"/path\" (a root-only file holding it)".into(),
                    ));
                }
                (false, false) => {
                    return Err(at(
                        "both token_env and token_file are set: keep the one that holds this runner's token".into(),
                    ));
                }
                (false, true) if !variable_name(&runner.token_env) => {
                    return Err(at(format!(
                        "token_env `{}` is not an environment variable name (letters, digits and _, not starting with a digit)",
                        runner.token_env.escape_debug()
                    )));
                }
                (true, false)
                    if !runner.token_file.starts_with('/')
                        || runner.token_file.chars().any(char::is_control) =>
                {
                    return Err(at(format!(
                        "token_file `{}` is not an absolute path",
                        runner.token_file.escape_debug()
                    )));
                }
                _ => {}
            }
            let url = crate::edit::runner_config::normalize_url(&runner.url);
            if seen.iter().any(|(u, n)| *u == url && *n == runner.name) {
                return Err(at(format!(
                    "runner \"{}\" at {} is listed twice: keep one entry",
                    runner.name.escape_debug(),
                    runner.url
                )));
            }
            if seen.iter().any(|(_, n)| *n == runner.name) {
                return Err(at(format!(
                    "the name \"{}\" is already used by another entry: gitlab-runner verify and unregister pick a runner by name, so names must differ on one host",
                    runner.name.escape_debug()
                )));
            }
            seen.push((url, &runner.name));
        }
        if !self.network.ca_files.is_empty() {
            let hosts: std::collections::BTreeSet<Option<String>> = self
                .runners
                .iter()
                .map(|r| crate::edit::network::certs_dir_host(&r.url))
                .collect();
            if hosts.len() > 1 {
                return Err(Error::Runners(
                    "[network] ca_files is set and the runners use different GitLab hosts: the CA is installed for one GitLab host, so list runners of one GitLab instance (or give no CA)".into(),
                ));
            }
        }
        Ok(())
    }

    /// Version pins: what apt takes as `package=version` and nothing else.
    /// `[docker.daemon]` and `[docker.daemon_defaults]`: what dockerd
    /// would refuse at start, or what belongs to another setting, refused
    /// before any change. Keys the tool does not know pass through (dockerd
    /// checks them; apply rolls back a file it refuses).
    fn validate_daemon(&self) -> Result<(), Error> {
        use serde_json::Value;
        for (table, settings) in [
            ("[docker.daemon]", &self.docker.daemon),
            ("[docker.daemon_defaults]", &self.docker.daemon_defaults),
        ] {
            for (key, value) in &settings.0 {
                let bad = |message: &str| Error::BadDaemonSetting {
                    table,
                    key: key.escape_debug().to_string(),
                    message: message.to_string(),
                };
                // dockerd's options are lowercase words joined by `-`; and
                // nothing of the file is printed to a terminal with a
                // control character in it (plan lists keys and diffs).
                if key.is_empty()
                    || !key
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                {
                    return Err(bad(
                        "is not one of dockerd's option names (lowercase letters, digits and -, such as log-driver)",
                    ));
                }
                if let Some(found) = control_in(value) {
                    return Err(bad(&format!(
                        "holds a control character (in {}): dockerd takes none",
                        found.escape_debug()
                    )));
                }
                match (key.as_str(), value) {
                    ("storage-driver" | "storage-opts", _) => {
                        return Err(bad(
                            "the storage driver is [docker] storage_driver's (--storage-driver), which also keeps storage-opts that belong to another driver out of daemon.json: set storage_driver instead (storage-opts for it stay in daemon.json as you wrote them)",
                        ));
                    }
                    ("data-root", Value::String(path))
                        if !path.starts_with('/')
                            || path.contains(|c: char| c.is_control())
                            || path.split('/').any(|part| part == "..") =>
                    {
                        return Err(bad(
                            "must be an absolute path without `..` or control characters, such as \"/srv/docker\"",
                        ));
                    }
                    ("data-root", Value::String(_)) => {}
                    ("data-root", _) => {
                        return Err(bad(
                            "must be a string: an absolute path such as \"/srv/docker\"",
                        ));
                    }
                    ("registry-mirrors" | "insecure-registries" | "dns" | "dns-search", value) => {
                        let Value::Array(items) = value else {
                            return Err(bad(
                                "must be a list of strings, such as [\"https://mirror.example.com\"]",
                            ));
                        };
                        for item in items {
                            let Value::String(text) = item else {
                                return Err(bad(&format!(
                                    "must be a list of strings, and {item} is not a string"
                                )));
                            };
                            if key == "registry-mirrors" {
                                check_mirror(text).map_err(|why| bad(&why))?;
                            }
                        }
                    }
                    ("log-driver", value) if !value.is_string() => {
                        return Err(bad("must be a string, such as \"json-file\""));
                    }
                    ("log-opts", Value::Object(opts)) => {
                        if let Some((name, opt)) = opts.iter().find(|(_, v)| !v.is_string()) {
                            return Err(bad(&format!(
                                "dockerd takes only strings here, and `{}` is {opt}: quote it ({} = \"{}\")",
                                name.escape_debug(),
                                name.escape_debug(),
                                opt.to_string().trim_matches('"')
                            )));
                        }
                    }
                    ("log-opts", _) => {
                        return Err(bad(
                            "must be a table of strings, such as { max-size = \"10m\", max-file = \"3\" }",
                        ));
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn validate_versions(&self) -> Result<(), Error> {
        for (what, version, example) in [
            (
                "runner.version (--runner-version)",
                &self.runner.version,
                "a GitLab Runner release such as 17.5.0 (apt version 17.5.0-1), or an apt version as `apt-cache madison gitlab-runner` lists it",
            ),
            (
                "docker.version (--docker-version)",
                &self.docker.version,
                "an apt version as `apt-cache madison docker.io` (or docker-ce) lists it, such as 20.10.24+dfsg1-1+deb12u1 or 5:27.3.1-1~debian.12~bookworm",
            ),
        ] {
            if version.is_empty() {
                continue;
            }
            if let Err(reason) = crate::edit::deb_version::check(version) {
                let mut value = version.escape_debug().to_string();
                if value.len() > 64 {
                    value = format!("{}…", value.chars().take(64).collect::<String>());
                }
                return Err(Error::BadVersion {
                    what,
                    value,
                    reason,
                    example,
                });
            }
        }
        if !self.runner.version.is_empty() && self.runner.install == Install::Present {
            return Err(Error::PinWithoutInstall {
                version: self.runner.version.clone(),
            });
        }
        Ok(())
    }

    /// `[network]`: proxy URLs, no_proxy entries, CA paths and registries
    /// that every file they go into (apt.conf, systemd environment files,
    /// shell) can hold without quoting.
    fn validate_network(&self) -> Result<(), Error> {
        let network = &self.network;
        for (what, url) in [
            ("[network] http_proxy", &network.http_proxy),
            ("[network] https_proxy", &network.https_proxy),
        ] {
            if !url.is_empty() {
                crate::edit::network::parse_proxy(url)
                    .map_err(|message| Error::BadProxy { what, message })?;
            }
        }
        for entry in &network.no_proxy {
            if entry.is_empty() || !entry.chars().all(plain_char) || entry.contains(',') {
                return Err(Error::BadSetting {
                    what: "[network] no_proxy entry",
                    value: entry.escape_debug().to_string(),
                    allowed: "host names, domains (.corp), addresses or CIDR ranges, one per list item",
                });
            }
        }
        for path in &network.ca_files {
            if !path.starts_with('/') || !path.chars().all(plain_char) {
                return Err(Error::BadSetting {
                    what: "[network] ca_files entry",
                    value: path.escape_debug().to_string(),
                    allowed: "absolute paths of PEM files on the host",
                });
            }
        }
        for registry in &network.ca_registries {
            let ok = !registry.is_empty()
                && !registry.starts_with(['.', ':', '-'])
                && registry != ".."
                && !registry.contains("..")
                && registry
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
            if !ok {
                return Err(Error::BadSetting {
                    what: "[network] ca_registries entry",
                    value: registry.escape_debug().to_string(),
                    allowed: "registry host names with an optional port, such as registry.corp.example:5050",
                });
            }
        }
        if !network.ca_registries.is_empty() && network.ca_files.is_empty() {
            return Err(Error::BadSetting {
                what: "[network] ca_registries",
                value: network.ca_registries.join(", "),
                allowed: "registries to trust the CA for: give the CA in ca_files too",
            });
        }
        if network.install_ca_system_wide && network.ca_files.is_empty() {
            return Err(Error::BadSetting {
                what: "[network] install_ca_system_wide",
                value: "true".to_string(),
                allowed: "true only with ca_files to install",
            });
        }
        Ok(())
    }
}

impl Profile {
    /// `[global]`: GitLab Runner's ranges (it refuses `concurrent` below 1
    /// at start) and a metrics address it can listen on.
    fn validate_global(&self) -> Result<(), Error> {
        let global = &self.global;
        if let Some(n) = global.concurrent {
            if !(1..=MAX_CONCURRENT).contains(&n) {
                return Err(Error::BadSetting {
                    what: "[global] concurrent (--concurrent)",
                    value: n.to_string(),
                    allowed: "a number of jobs from 1 to 10000 (GitLab Runner refuses to start below 1)",
                });
            }
        }
        if let Some(secs) = global.check_interval {
            if secs > MAX_CHECK_INTERVAL {
                return Err(Error::BadSetting {
                    what: "[global] check_interval (--check-interval)",
                    value: secs.to_string(),
                    allowed: "seconds from 0 to 3600 (0: GitLab Runner's default, 3)",
                });
            }
        }
        if let Some(secs) = global.shutdown_timeout {
            if secs > MAX_GLOBAL_SHUTDOWN_TIMEOUT {
                return Err(Error::BadSetting {
                    what: "[global] shutdown_timeout (--global-shutdown-timeout)",
                    value: secs.to_string(),
                    allowed: "seconds from 0 to 86400 (0: GitLab Runner's default, 30)",
                });
            }
        }
        if let Some(address) = &global.listen_address {
            if !address.is_empty() {
                crate::edit::runner_globals::parse_listen_address(address).map_err(|reason| {
                    Error::BadListenAddress {
                        value: shorten(&address.escape_debug().to_string()),
                        reason,
                    }
                })?;
            }
        }
        Ok(())
    }
}

/// A value quoted back in an error, cut to a readable length.
fn shorten(value: &str) -> String {
    match value.char_indices().nth(80) {
        Some((at, _)) => format!("{}…", &value[..at]),
        None => value.to_string(),
    }
}

/// Printable ASCII that needs no quoting in apt.conf, systemd environment
/// files or a shell's single quotes.
fn plain_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'' | '`' | '$' | ';' | '#')
}

/// An http(s) URL with a host and an optional port, and nothing that
/// would land on gitlab-runner's argv unseen: credentials in a URL go on
/// `register`'s command line and into config.toml, so they are refused (and
/// never quoted back).
/// A registry mirror as dockerd takes it: an http:// or https:// URL
/// without credentials (dockerd logs in with `docker login`'s, not the
/// URL's).
fn check_mirror(url: &str) -> Result<(), String> {
    let shown = url.escape_debug().to_string();
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(format!(
            "`{shown}` is not a URL: give http://host[:port] or https://host[:port]"
        ));
    };
    if !matches!(scheme, "http" | "https") {
        return Err(format!("`{shown}` must start with http:// or https://"));
    }
    if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(format!("`{shown}` contains spaces or control characters"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(
            "a mirror URL holds a user name or password, which dockerd does not use (and every `docker info` would show): remove it and log in to the mirror with `docker login`".to_string(),
        );
    }
    if authority.is_empty() {
        return Err(format!("`{shown}` names no host"));
    }
    Ok(())
}

pub(crate) fn check_url(what: &'static str, url: &str) -> Result<(), Error> {
    let bad = |reason: &str| {
        let value = match url.split_once("://") {
            Some((scheme, rest))
                if rest
                    .split(['/', '?', '#'])
                    .next()
                    .is_some_and(|a| a.contains('@')) =>
            {
                let after = rest.split_once('@').map_or("", |(_, host)| host);
                format!("{scheme}://***@{after}")
            }
            _ => url.to_string(),
        };
        // A query or fragment may hold a credential: never quoted back.
        let value = match value.find(['?', '#']) {
            Some(at) => format!("{}{}***", &value[..at], &value[at..=at]),
            None => value,
        };
        Error::BadUrl {
            what,
            value: value.escape_debug().to_string(),
            reason: reason.to_string(),
        }
    };
    if url.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err(bad("it contains spaces or control characters"));
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(bad("the scheme must be http:// or https://"));
    }
    let uri: http::Uri = url.parse().map_err(|_| bad("it is not a URL"))?;
    let authority = uri.authority().map_or("", http::uri::Authority::as_str);
    if authority.contains('@') {
        return Err(bad(
            "it holds a user name or password (user:password@), which would end up on a command line and in config.toml",
        ));
    }
    let host = uri.host().unwrap_or_default();
    if host.is_empty() {
        return Err(bad("it has no host name"));
    }
    if let Some(port) = authority
        .strip_prefix(host)
        .and_then(|r| r.strip_prefix(':'))
    {
        if !port.parse::<u16>().is_ok_and(|p| p != 0) {
            return Err(bad("the port is not a number from 1 to 65535"));
        }
    }
    Ok(())
}

/// The first key or string below `value` that holds a control character.
fn control_in(value: &serde_json::Value) -> Option<String> {
    use serde_json::Value;
    match value {
        Value::String(text) => text.contains(char::is_control).then(|| text.clone()),
        Value::Array(items) => items.iter().find_map(control_in),
        Value::Object(map) => map.iter().find_map(|(k, v)| {
            if k.contains(char::is_control) {
                Some(k.clone())
            } else {
                control_in(v)
            }
        }),
        _ => None,
    }
}

/// A GitLab instance's URL: [`check_url`], and no query or fragment, which
/// GitLab Runner would keep in config.toml and send with every request
/// (`?private_token=` there would be a credential on every job request).
pub(crate) fn check_gitlab_url(what: &'static str, url: &str) -> Result<(), Error> {
    check_url(what, url)?;
    if url.contains(['?', '#']) {
        let shown = format!("{}***", &url[..=url.find(['?', '#']).unwrap_or(0)]);
        return Err(Error::BadUrl {
            what,
            value: shown.escape_debug().to_string(),
            reason: "it has a query (?...) or fragment (#...): give the instance's address alone, such as https://gitlab.example.com/".into(),
        });
    }
    Ok(())
}

/// GitLab Runner's executors, as its `executors/*` packages register them
/// (`common.RegisterExecutorProvider`, GitLab Runner 17).
pub const EXECUTORS: &[&str] = &[
    "custom",
    "docker",
    "docker-autoscaler",
    "docker-windows",
    "docker+machine",
    "instance",
    "kubernetes",
    "parallels",
    "shell",
    "ssh",
    "virtualbox",
];

/// Docker's storage drivers (graph drivers, and the containerd snapshotters
/// daemon.json can name when the containerd image store is on).
pub const STORAGE_DRIVERS: &[&str] = &[
    "overlay2",
    "fuse-overlayfs",
    "btrfs",
    "zfs",
    "vfs",
    "devicemapper",
    "overlayfs",
    "native",
];

/// The longest docker-verify wait accepted: an hour.
pub const MAX_VERIFY_TIMEOUT: u64 = 3600;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_that_are_no_regular_file_or_too_big_are_refused_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo.toml");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat((MAX_PROFILE_BYTES + 1) as usize)).expect("write");
        for (spec, reason) in [
            ("/dev/zero".to_string(), "not a regular file"),
            (fifo.display().to_string(), "not a regular file"),
            (big.display().to_string(), "more than the 1048576 bytes"),
        ] {
            let err = Profile::load(Some(&spec)).expect_err("refused").to_string();
            assert!(err.contains(reason) && err.contains(&spec), "{err}");
        }
    }

    #[test]
    fn every_embedded_profile_parses_and_validates() {
        for (name, text) in EMBEDDED {
            let profile = Profile::parse(text, name).expect(name);
            profile.validate().expect(name);
            assert!(
                !profile.description.is_empty(),
                "{name} needs a description"
            );
        }
    }

    #[test]
    fn default_profile_equals_built_in_defaults_but_description() {
        let (profile, source) = Profile::load(None).expect("default");
        assert_eq!(source, "shell-docker");
        let defaults = Profile {
            description: profile.description.clone(),
            ..Profile::default()
        };
        assert_eq!(profile, defaults);
    }

    #[test]
    fn missing_keys_take_defaults() {
        let profile = Profile::parse(
            "[runner]\nurl = \"https://gitlab.example.com/\"\n",
            "t.toml",
        )
        .expect("parse");
        assert_eq!(profile.runner.url, "https://gitlab.example.com/");
        assert_eq!(profile.runner.executor, "shell");
        assert_eq!(profile.docker.storage_driver, "overlay2");
        assert_eq!(profile.kernel.modules, vec!["overlay"]);
    }

    #[test]
    fn unknown_key_names_key_and_file() {
        let err = Profile::parse(
            "[docker]\nstorage_drivr = \"overlay2\"\n",
            "/etc/rp/site.toml",
        )
        .expect_err("unknown key");
        let text = err.to_string();
        assert!(text.contains("storage_drivr"), "{text}");
        assert!(text.contains("/etc/rp/site.toml"), "{text}");
    }

    #[test]
    fn a_broken_line_with_a_proxy_password_is_not_quoted_with_it() {
        let err = Profile::parse(
            "[network]\nhttp_proxy = \"http://build:Pr0xyPw-9@proxy:3128\n",
            "/etc/rp/site.toml",
        )
        .expect_err("unterminated string");
        let text = err.to_string();
        assert!(text.contains("/etc/rp/site.toml"), "{text}");
        assert!(!text.contains("Pr0xyPw-9"), "{text}");
    }

    #[test]
    fn unknown_profile_lists_the_known_ones() {
        let err = Profile::load(Some("shell-podman")).expect_err("unknown");
        assert!(
            err.to_string()
                .contains("shell-docker, shell-docker-ce, shell-docker-fleet"),
            "{err}"
        );
    }

    #[test]
    fn unreadable_profile_path_is_an_error() {
        let err = Profile::load(Some("/nonexistent/p.toml")).expect_err("missing");
        assert!(err.to_string().contains("/nonexistent/p.toml"), "{err}");
    }

    #[test]
    fn urls() {
        for good in [
            "https://gitlab.com/",
            "http://10.0.0.1:8080",
            "https://gitlab.example.com/sub/path",
        ] {
            check_url("url", good).expect(good);
        }
        for (bad, why) in [
            ("gitlab.com", "scheme"),
            ("ftp://gitlab.com/", "scheme"),
            ("file:///srv/x", "scheme"),
            ("https://", "not a URL"),
            ("https:///x", "not a URL"),
            ("https://gitlab .com/", "spaces"),
            ("https://gitlab.com/\u{2028}", "spaces"),
            ("", "scheme"),
            ("https://:443/", "no host"),
            ("https://gitlab.com:99999/", "port"),
            ("https://gitlab.com:0/", "port"),
            ("https://gitlab.com:12a/", "port"),
            ("https://gitlab.com:/", "port"),
            (
                "https://user:hunter2secret@gitlab.com/",
                "user name or password",
            ),
            ("https://tokenonly@gitlab.com/", "user name or password"),
            ("https://tokenonly@gitlab.com/?x", "user name or password"),
        ] {
            let err = check_url("url", bad).expect_err(bad).to_string();
            assert!(err.contains(why), "{bad:?}: {err}");
            assert!(
                !err.contains("hunter2secret") && !err.contains("tokenonly"),
                "{err}"
            );
        }
    }

    #[test]
    fn gitlab_urls_have_no_query_or_fragment() {
        check_gitlab_url("url", "https://gitlab.example.com/sub/").expect("a path is fine");
        for bad in [
            "https://gitlab.com/?private_token=hunter2secret",
            "https://gitlab.com/#hunter2secret",
            "https://gitlab.com?hunter2secret",
        ] {
            let err = check_gitlab_url("url", bad).expect_err(bad).to_string();
            assert!(err.contains("query") && err.contains("fragment"), "{err}");
            assert!(!err.contains("hunter2secret"), "{err}");
        }
        // Other URLs (a key or binary URL may be a presigned download) keep
        // their query, which an error never quotes back.
        check_url("url", "https://s3.example.com/key?X-Amz-Signature=abc").expect("query");
        let err = check_url("url", "https://s3.example.com:0/k?sig=hunter2secret")
            .expect_err("port")
            .to_string();
        assert!(
            !err.contains("hunter2secret") && err.contains("k?***"),
            "{err}"
        );
    }

    fn refused(edit: impl Fn(&mut Profile)) -> String {
        let mut profile = Profile::default();
        edit(&mut profile);
        profile.validate().expect_err("refused").to_string()
    }

    #[test]
    fn names_that_would_be_options_on_a_command_line_are_refused() {
        for bad in ["--help", "-rf", "a b", "a:b", "", "x$y", &"a".repeat(33)] {
            let err = refused(|p| p.docker.group_members = vec![bad.to_string()]);
            assert!(err.contains("group_members"), "{bad:?}: {err}");
        }
        for bad in ["-r", "overlay fuse", "../overlay", "over\nlay", ""] {
            let err = refused(|p| p.kernel.modules = vec![bad.to_string()]);
            assert!(err.contains("[kernel] modules"), "{bad:?}: {err}");
        }
        let mut profile = Profile::default();
        profile.docker.group_members = vec![
            "gitlab-runner".into(),
            "ci_2.user".into(),
            "machine$".into(),
        ];
        profile.kernel.modules = vec!["overlay".into(), "br_netfilter".into(), "nf-nat".into()];
        profile.validate().expect("plain names");
    }

    #[test]
    fn settings_that_could_only_fail_later_are_refused() {
        let err = refused(|p| p.runner.executor = "bogus".into());
        assert!(
            err.contains("`bogus`") && err.contains("docker+machine"),
            "{err}"
        );
        let err = refused(|p| p.runner.executor = String::new());
        assert!(err.contains("executor"), "{err}");
        let err = refused(|p| p.docker.storage_driver = "overlay2 ".into());
        assert!(
            err.contains("`overlay2 `") && err.contains("overlay2 (the default)"),
            "{err}"
        );
        let err = refused(|p| p.docker.storage_driver = "overlay3".into());
        assert!(err.contains("storage_driver"), "{err}");
        let err = refused(|p| p.docker.verify_timeout = u64::MAX);
        assert!(
            err.contains("18446744073709551615") && err.contains("0 to 3600"),
            "{err}"
        );
        let err = refused(|p| p.runner.name = "a\nb".into());
        assert!(err.contains("a\\nb"), "{err}");
        let err = refused(|p| p.runner.name = "runner\u{2028}x".into());
        assert!(err.contains("runner name"), "{err}");
        let err = refused(|p| p.runner.tags = vec!["a,b".into()]);
        assert!(err.contains("tag"), "{err}");
        for executor in EXECUTORS {
            let mut profile = Profile::default();
            profile.runner.executor = (*executor).to_string();
            profile.validate().expect(executor);
        }
        let mut profile = Profile::default();
        profile.docker.verify_timeout = MAX_VERIFY_TIMEOUT;
        profile.validate().expect("an hour");
        let err = refused(|p| p.runner.shutdown_timeout = 0);
        assert!(
            err.contains("shutdown_timeout") && err.contains("1 to 86400"),
            "{err}"
        );
        let err = refused(|p| p.runner.shutdown_timeout = u64::MAX);
        assert!(err.contains("shutdown_timeout"), "{err}");
    }

    const TWO_RUNNERS: &str = "[[runners]]\nname = \"build\"\nurl = \"https://gitlab.example.com/\"\ntoken_env = \"BUILD_TOKEN\"\n\n[[runners]]\nname = \"images\"\nurl = \"https://gitlab.example.com/\"\ntags = [\"docker\"]\nlimit = 2\nenvironment = [\"DOCKER_BUILDKIT=1\"]\ntoken_file = \"/etc/runner-provision/images.token\"\n";

    #[test]
    fn listed_runners_parse_with_defaults_and_the_host_wide_runner_keys() {
        let text = format!("[runner]\nrequire_registration = true\n\n{TWO_RUNNERS}");
        let profile = Profile::parse(&text, "t.toml").expect("parse");
        profile.validate().expect("valid");
        assert!(profile.runner.require_registration);
        assert_eq!(profile.runners.len(), 2);
        assert_eq!(profile.runners[0].executor, "shell");
        assert_eq!(profile.runners[0].limit, 0);
        assert_eq!(profile.runners[1].limit, 2);
        assert_eq!(
            profile.runners[1].token_source(),
            "token_file /etc/runner-provision/images.token"
        );
        assert_eq!(profile.gitlab_url(), "https://gitlab.example.com/");
        // `profiles show` of a file prints what parses back the same.
        let shown = profile.to_toml().expect("render");
        assert_eq!(
            Profile::parse(&shown, "shown").expect("parse back"),
            profile
        );
        // A single-runner profile renders without a runners key.
        let single = Profile::default().to_toml().expect("render");
        assert_eq!(
            single,
            toml::to_string(&Profile::default()).expect("render"),
            "a single-runner profile renders as before"
        );
        assert!(!single.contains("runners"), "{single}");
    }

    #[test]
    fn a_runner_table_that_names_a_runner_beside_listed_runners_is_refused() {
        for key in [
            "url = \"https://gitlab.com/\"",
            "name = \"\"",
            "executor = \"shell\"",
            "tags = []",
        ] {
            let text = format!("[runner]\n{key}\n\n{TWO_RUNNERS}");
            let err = Profile::parse(&text, "/etc/rp/fleet.toml")
                .expect_err(key)
                .to_string();
            let name = key.split(' ').next().unwrap_or_default();
            assert!(
                err.contains("/etc/rp/fleet.toml")
                    && err.contains(&format!(
                        "[runner] sets {name} and [[runners]] lists runners"
                    ))
                    && err.contains("move them into each [[runners]] entry"),
                "{err}"
            );
        }
        // Without [[runners]] the same keys are the single runner's.
        Profile::parse("[runner]\nurl = \"https://gitlab.com/\"\n", "t").expect("single");
    }

    #[test]
    fn listed_runners_that_could_only_fail_later_are_refused() {
        let refused_runners = |edit: &dyn Fn(&mut Vec<ListedRunner>)| {
            let mut profile = Profile::parse(TWO_RUNNERS, "t").expect("parse");
            edit(&mut profile.runners);
            profile.validate().expect_err("refused").to_string()
        };
        type Edit = Box<dyn Fn(&mut Vec<ListedRunner>)>;
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "no name",
                Box::new(|r| r[0].name.clear()),
                "entry 1 (no name): name is required",
            ),
            (
                "control",
                Box::new(|r| r[0].name = "a\u{7}b".into()),
                "control characters",
            ),
            (
                "separator",
                Box::new(|r| r[0].name = "a\u{2028}b".into()),
                "line breaks",
            ),
            (
                "spaces",
                Box::new(|r| r[0].name = " build".into()),
                "leading or trailing spaces",
            ),
            (
                "twice",
                Box::new(|r| {
                    r[1] = r[0].clone();
                    r[1].url = "https://GITLAB.example.com".into();
                }),
                "entry 2 (name \"build\"): runner \"build\" at https://GITLAB.example.com is listed twice",
            ),
            (
                "same name elsewhere",
                Box::new(|r| {
                    r[1].name = "build".into();
                    r[1].url = "https://other.example.com/".into();
                }),
                "names must differ on one host",
            ),
            (
                "bad url",
                Box::new(|r| r[1].url = "gitlab.example.com".into()),
                "http:// or https://",
            ),
            (
                "url with password",
                Box::new(|r| r[1].url = "https://u:hunter2pw@gitlab.example.com/".into()),
                "user name or password",
            ),
            (
                "executor",
                Box::new(|r| r[1].executor = "bogus".into()),
                "executor `bogus` is not one of",
            ),
            (
                "tag",
                Box::new(|r| r[1].tags = vec!["a,b".into()]),
                "runner tag",
            ),
            (
                "empty tag",
                Box::new(|r| r[1].tags = vec![String::new()]),
                "runner tag",
            ),
            (
                "no source",
                Box::new(|r| r[0].token_env.clear()),
                "no token source: set token_env",
            ),
            (
                "both sources",
                Box::new(|r| r[0].token_file = "/run/t".into()),
                "both token_env and token_file are set",
            ),
            (
                "bad variable",
                Box::new(|r| r[0].token_env = "1TOKEN".into()),
                "token_env `1TOKEN` is not an environment variable name",
            ),
            (
                "variable with =",
                Box::new(|r| r[0].token_env = "A=B".into()),
                "is not an environment variable name",
            ),
            (
                "relative file",
                Box::new(|r| r[1].token_file = "images.token".into()),
                "token_file `images.token` is not an absolute path",
            ),
            (
                "file with newline",
                Box::new(|r| r[1].token_file = "/run/a\nb".into()),
                "is not an absolute path",
            ),
            (
                "env without =",
                Box::new(|r| r[1].environment = vec!["DOCKER_BUILDKIT".into()]),
                "is not KEY=value",
            ),
            (
                "env with comma",
                Box::new(|r| r[1].environment = vec!["A=1,B=2".into()]),
                "comma-separated",
            ),
            (
                "env empty key",
                Box::new(|r| r[1].environment = vec!["=1".into()]),
                "is not KEY=value",
            ),
            (
                "env control",
                Box::new(|r| r[1].environment = vec!["A=1\n".into()]),
                "is not KEY=value",
            ),
            (
                "env space",
                Box::new(|r| r[1].environment = vec![" A=1".into()]),
                "is not KEY=value",
            ),
            (
                "env driver",
                Box::new(|r| r[1].environment = vec!["DOCKER_DRIVER=vfs".into()]),
                "set storage_driver instead",
            ),
        ];
        for (what, edit, expected) in cases {
            let err = refused_runners(&*edit);
            assert!(err.contains(expected), "{what}: {err}");
            assert!(!err.contains("hunter2pw"), "{what}: {err}");
        }
        let mut profile = Profile::parse(TWO_RUNNERS, "t").expect("parse");
        profile.network.ca_files = vec!["/etc/ssl/corp.pem".into()];
        profile.validate().expect("one GitLab host");
        profile.runners[1].url = "https://other.example.com/".into();
        let err = profile.validate().expect_err("two hosts").to_string();
        assert!(err.contains("different GitLab hosts"), "{err}");
    }

    #[test]
    fn listed_runner_values_of_the_wrong_type_or_range_name_the_key() {
        for (value, key) in [
            ("limit = -1", "limit"),
            ("limit = 4294967296", "limit"),
            ("limit = \"2\"", "limit"),
            ("tags = \"docker\"", "tags"),
            ("environment = \"A=1\"", "environment"),
            ("token_env = 5", "token_env"),
            ("token = \"GR1348941inlineTokenValue\"", "token"),
        ] {
            let text = format!("[[runners]]\nname = \"build\"\n{value}\n");
            let err = Profile::parse(&text, "t.toml")
                .expect_err(value)
                .to_string();
            assert!(
                err.contains(key) && err.contains("t.toml"),
                "{value}: {err}"
            );
        }
        let err = Profile::parse("runners = 3\n", "t.toml")
            .expect_err("not an array")
            .to_string();
        assert!(err.contains("runners"), "{err}");
        // A huge list parses and is checked entry by entry (the profile's
        // 1 MiB cap bounds it).
        let many: String = (0..2000)
            .map(|i| format!("[[runners]]\nname = \"r{i}\"\ntoken_env = \"T{i}\"\n"))
            .collect();
        let profile = Profile::parse(&many, "many.toml").expect("parse");
        profile.validate().expect("2000 distinct runners");
    }

    #[test]
    fn ages() {
        for (text, secs) in [
            ("72h", 259_200),
            ("3d", 259_200),
            ("90m", 5_400),
            ("1h30m", 5_400),
            ("45s", 45),
            ("2w", 1_209_600),
            ("1s", 1),
            ("0h1s", 1),
            ("3660d", 316_224_000),
        ] {
            assert_eq!(parse_age(text), Ok(secs), "{text}");
        }
        for (text, why) in [
            ("", "empty"),
            ("0h", "zero"),
            ("72", "no unit"),
            ("h", "no number"),
            ("72 h", "not a unit"),
            ("72H", "not a unit"),
            ("-1h", "not a unit"),
            ("1.5h", "not a unit"),
            ("72h\n", "not a unit"),
            ("3y", "not a unit"),
            ("３h", "not a unit"),
            ("3661d", "ten years"),
            ("99999999999999999999999s", "too large"),
            ("18446744073709551615w", "ten years"),
        ] {
            let err = parse_age(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
    }

    #[test]
    fn prune_settings_are_checked_before_any_change() {
        let profile = Profile::parse(
            "[prune]\nabove_percent = 90\nolder_than = \"1h30m\"\n",
            "t.toml",
        )
        .expect("parse");
        profile.validate().expect("valid");
        assert_eq!(profile.prune.older_than_secs().expect("age"), 5_400);
        let err = refused(|p| p.prune.older_than = "72 hours".into());
        assert!(
            err.contains("`72 hours`") && err.contains("such as 72h, 3d"),
            "{err}"
        );
        let err = refused(|p| p.prune.older_than = "1h\u{7}".into());
        assert!(err.contains("1h\\u{7}"), "{err}");
        let err = refused(|p| p.prune.older_than = format!("{}s", "9".repeat(100_000)));
        assert!(err.contains("too large") && err.len() < 300, "{err}");
        let err = refused(|p| p.prune.above_percent = 100);
        assert!(
            err.contains("above_percent") && err.contains("0 to 99"),
            "{err}"
        );
        let err = refused(|p| p.prune.above_percent = u64::MAX);
        assert!(err.contains("18446744073709551615"), "{err}");
        for (text, why) in [
            ("[prune]\nabove_percent = -1\n", "above_percent"),
            ("[prune]\nabove_percent = \"80\"\n", "above_percent"),
            ("[prune]\nolder_than = 72\n", "older_than"),
            ("[prune]\nolder_then = \"72h\"\n", "older_then"),
        ] {
            let err = Profile::parse(text, "/etc/rp/site.toml")
                .expect_err(text)
                .to_string();
            assert!(
                err.contains(why) && err.contains("/etc/rp/site.toml"),
                "{err}"
            );
        }
        // Defaults are not written out: profiles without [prune] stay as they were.
        let text = toml::to_string(&Profile::default()).expect("toml");
        assert!(!text.contains("[prune]"), "{text}");
    }

    #[test]
    fn version_pins_parse_and_hostile_ones_are_refused() {
        let profile = Profile::parse(
            "[runner]\nversion = \"17.5.0\"\n[docker]\nversion = \"5:27.3.1-1~debian.12~bookworm\"\n",
            "t.toml",
        )
        .expect("parse");
        profile.validate().expect("valid pins");
        assert_eq!(profile.runner.version, "17.5.0");
        // No pin is the default, and is not written back out.
        let text = toml::to_string(&Profile::default()).expect("serialize");
        assert!(!text.contains("version"), "{text}");
        for (toml, why) in [
            ("[runner]\nversion = 17\n", "invalid type"),
            ("[runner]\nversion = [\"17.5.0\"]\n", "invalid type"),
            ("[docker]\nversion = true\n", "invalid type"),
            ("[runner]\nversoin = \"17.5.0\"\n", "versoin"),
        ] {
            let err = Profile::parse(toml, "t.toml").expect_err(toml).to_string();
            assert!(err.contains(why) && err.contains("t.toml"), "{toml}: {err}");
        }
        let huge = "1".repeat(10_000);
        for (runner, docker, why) in [
            ("17.5.0 ", "", "spaces"),
            ("\t17.5.0", "", "control"),
            ("17.5.0\u{0}", "", "control"),
            ("gitlab-runner=17.5.0", "", "`=`"),
            (huge.as_str(), "", "128"),
            ("", "27.3.1|sh", "character"),
            ("", "~1", "digit"),
        ] {
            let err = refused(|p| {
                p.runner.version = runner.into();
                p.docker.version = docker.into();
            });
            assert!(
                err.contains(why) && err.contains("version pin"),
                "{runner:?} {docker:?}: {err}"
            );
            assert!(err.len() < 1_000, "long values are cut: {err}");
        }
        let err = refused(|p| {
            p.runner.version = "17.5.0".into();
            p.runner.install = Install::Present;
        });
        assert!(err.contains("install = \"package-repo\""), "{err}");
    }

    #[test]
    fn repository_table_parses() {
        let profile = Profile::parse(
            "[runner.repository]\nuri = \"file:/srv/repo/\"\nsuite = \"./\"\ncomponents = \"\"\nkey_url = \"\"\n",
            "t.toml",
        )
        .expect("parse");
        let repo = profile.runner.repository.expect("repository");
        assert_eq!(repo.uri, "file:/srv/repo/");
        assert!(repo.key_url.is_empty());
    }

    #[test]
    fn global_settings_parse_and_hostile_values_are_refused() {
        let profile = Profile::parse(
            "[global]\nconcurrent = 4\ncheck_interval = 0\nshutdown_timeout = 30\nlisten_address = \"127.0.0.1:9252\"\n",
            "t.toml",
        )
        .expect("parse");
        assert_eq!(profile.global.concurrent, Some(4));
        assert_eq!(
            profile.global.listen_address.as_deref(),
            Some("127.0.0.1:9252")
        );
        profile.validate().expect("valid");
        assert!(Profile::default().global.is_empty());

        for (text, says) in [
            ("[global]\nconcurrent = \"4\"\n", "invalid type"),
            ("[global]\nconcurrent = -1\n", "concurrent"),
            ("[global]\nconcurrent = 99999999999\n", "concurrent"),
            ("[global]\ncheck_interval = 1.5\n", "check_interval"),
            ("[global]\nlisten_address = 9252\n", "listen_address"),
            ("[global]\nconcurent = 4\n", "concurent"),
            ("global = 4\n", "global"),
        ] {
            let err = Profile::parse(text, "t.toml").expect_err(text).to_string();
            assert!(
                err.contains(says) && err.contains("t.toml"),
                "{text}: {err}"
            );
        }
        let huge = "a".repeat(100_000);
        for (edit, says) in [
            (
                Global {
                    concurrent: Some(0),
                    ..Global::default()
                },
                "1 to 10000",
            ),
            (
                Global {
                    concurrent: Some(10_001),
                    ..Global::default()
                },
                "1 to 10000",
            ),
            (
                Global {
                    check_interval: Some(3601),
                    ..Global::default()
                },
                "0 to 3600",
            ),
            (
                Global {
                    shutdown_timeout: Some(86_401),
                    ..Global::default()
                },
                "0 to 86400",
            ),
            (
                Global {
                    listen_address: Some("9252".into()),
                    ..Global::default()
                },
                "no port",
            ),
            (
                Global {
                    listen_address: Some("127.0.0.1:0".into()),
                    ..Global::default()
                },
                "1 to 65535",
            ),
            (
                Global {
                    listen_address: Some(" :9252".into()),
                    ..Global::default()
                },
                "spaces",
            ),
            (
                Global {
                    listen_address: Some("x\u{1b}[2J:9252".into()),
                    ..Global::default()
                },
                "\\u{1b}",
            ),
            (
                Global {
                    listen_address: Some(format!("{huge}:1")),
                    ..Global::default()
                },
                "neither",
            ),
        ] {
            let err = refused(|p| p.global = edit.clone());
            assert!(err.contains(says), "{edit:?}: {err}");
            assert!(
                !err.contains('\u{1b}'),
                "control characters are escaped: {err}"
            );
        }
        for ok in [
            Global {
                concurrent: Some(1),
                check_interval: Some(0),
                shutdown_timeout: Some(0),
                listen_address: Some(String::new()),
            },
            Global {
                concurrent: Some(10_000),
                check_interval: Some(3600),
                shutdown_timeout: Some(86_400),
                listen_address: Some("[::1]:9252".into()),
            },
        ] {
            let profile = Profile {
                global: ok.clone(),
                ..Profile::default()
            };
            assert!(profile.validate().is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn global_settings_survive_the_profile_cloud_init_writes() {
        let (fleet, _) = Profile::load(Some("shell-docker-fleet")).expect("embedded");
        assert!(!fleet.global.is_empty());
        let fleet = Profile {
            global: fleet.global,
            ..Profile::default()
        };
        let text = toml::to_string(&fleet).expect("serialize");
        assert!(text.contains("[global]"), "{text}");
        assert_eq!(Profile::parse(&text, "rendered").expect("parse"), fleet);
        // Keys left out stay out: not managed.
        let partial = Profile {
            global: Global {
                concurrent: Some(2),
                ..Global::default()
            },
            ..Profile::default()
        };
        let text = toml::to_string(&partial).expect("serialize");
        assert!(
            !text.contains("listen_address") && !text.contains("check_interval"),
            "{text}"
        );
        assert_eq!(Profile::parse(&text, "rendered").expect("parse"), partial);
        let text = toml::to_string(&Profile::default()).expect("serialize");
        assert!(!text.contains("[global]"), "{text}");
    }

    /// `(table, key)` of every scalar or array under `value` (`[[runners]]`
    /// entries count as the table `runners`).
    fn keys_of(
        prefix: &str,
        table: &toml::Table,
        out: &mut std::collections::BTreeSet<(String, String)>,
    ) {
        for (key, value) in table {
            let path = if prefix.is_empty() {
                key.clone()
            } else {
                format!("{prefix}.{key}")
            };
            match value {
                toml::Value::Table(t) => keys_of(&path, t, out),
                toml::Value::Array(a) if a.iter().all(toml::Value::is_table) && !a.is_empty() => {
                    for t in a.iter().filter_map(toml::Value::as_table) {
                        keys_of(&path, t, out);
                    }
                }
                _ => {
                    out.insert((prefix.to_string(), key.clone()));
                }
            }
        }
    }

    /// `(table, key)` of every `key = …` line (or `# key = …`) in the TOML
    /// blocks of a Markdown text, under the table header above it.
    fn documented_keys(markdown: &str) -> std::collections::BTreeSet<(String, String)> {
        let mut found = std::collections::BTreeSet::new();
        let mut in_toml = false;
        let mut table = String::new();
        for line in markdown.lines() {
            let line = line.trim();
            if line.starts_with("```") {
                in_toml = line == "```toml";
                table.clear();
                continue;
            }
            if !in_toml {
                continue;
            }
            if let Some(header) = line.strip_prefix('[') {
                let header = header.trim_start_matches('[');
                table = header.split(']').next().unwrap_or_default().to_string();
                continue;
            }
            let line = line.trim_start_matches("# ");
            if let Some((key, _)) = line.split_once(" = ") {
                if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                    found.insert((table.clone(), key.to_string()));
                }
            }
        }
        found
    }

    #[test]
    fn the_readme_documents_every_profile_key_and_the_fleet_profile_uses_issue_12s() {
        let mut full = Profile::default();
        full.runner.repository = Some(Repository::default());
        full.runner.require_registration = true;
        full.runner.unregister_on_shutdown = true;
        full.runner.shutdown_timeout = 1;
        full.runner.version = "17.5.0".into();
        full.runners = vec![ListedRunner {
            name: "a".into(),
            limit: 1,
            environment: vec!["A=1".into()],
            token_env: "T".into(),
            token_file: "/t".into(),
            ..ListedRunner::default()
        }];
        full.docker.repository = Some(Repository::docker());
        full.docker.version = "1".into();
        full.network.http_proxy = "http://proxy:3128".into();
        full.prune.schedule = PruneSchedule::Daily;
        full.global = Global {
            concurrent: Some(1),
            check_interval: Some(1),
            shutdown_timeout: Some(1),
            listen_address: Some(String::new()),
        };
        let toml::Value::Table(table) = toml::Value::try_from(&full).expect("serialize") else {
            panic!("a profile is a table");
        };
        let mut keys = std::collections::BTreeSet::new();
        keys_of("", &table, &mut keys);
        assert!(keys.len() > 40, "{keys:?}");
        let documented = documented_keys(include_str!("../README.md"));
        // [docker.daemon] and [docker.daemon_defaults] hold dockerd's keys,
        // not the profile's: README documents the tables and examples.
        let missing: Vec<String> = keys
            .difference(&documented)
            .filter(|(table, _)| !table.starts_with("docker.daemon"))
            .map(|(table, key)| format!("[{table}] {key}"))
            .collect();
        assert!(
            missing.is_empty(),
            "README.md's profile reference (its ```toml blocks) lacks: {}",
            missing.join(", ")
        );

        // The example fleet profile shows issue 12's keys.
        let text = include_str!("../profiles/shell-docker-fleet.toml");
        let (fleet, _) = Profile::load(Some("shell-docker-fleet")).expect("embedded");
        let runners = &fleet.runners;
        assert!(runners.len() >= 2);
        assert!(runners.iter().any(|r| !r.tags.is_empty()));
        assert!(runners.iter().any(|r| r.limit > 0));
        assert!(runners.iter().any(|r| !r.environment.is_empty()));
        assert!(runners.iter().any(|r| !r.token_env.is_empty()));
        assert!(runners.iter().any(|r| !r.token_file.is_empty()));
        assert!(!fleet.runner.version.is_empty());
        assert!(
            text.contains("\n# version = \""),
            "docker.version, shown: {text}"
        );
        assert_ne!(fleet.runner.shutdown_timeout, DEFAULT_SHUTDOWN_TIMEOUT);
        assert!(fleet.docker.daemon.0.contains_key("log-opts"));
        assert!(
            text.contains("\n# registry-mirrors = ["),
            "a mirror, shown: {text}"
        );
        let global = &fleet.global;
        assert!(
            global.concurrent.is_some()
                && global.check_interval.is_some()
                && global.shutdown_timeout.is_some()
                && global.listen_address.is_some(),
            "{global:?}"
        );
        assert_ne!(fleet.prune.schedule, PruneSchedule::Off);
    }

    #[test]
    fn daemon_settings_map_toml_to_json() {
        let profile = Profile::parse(
            "[docker.daemon]\nregistry-mirrors = [\"https://mirror.example.com\"]\n\"data-root\" = \"/srv/docker\"\nlive-restore = true\nmax-concurrent-downloads = 6\nlog-opts = { max-size = \"10m\" }\ndefault-address-pools = [{ base = \"10.10.0.0/16\", size = 24 }]\n",
            "t.toml",
        )
        .expect("parse");
        profile.validate().expect("valid");
        assert_eq!(
            serde_json::Value::Object(profile.docker.daemon.0.clone()).to_string(),
            r#"{"data-root":"/srv/docker","default-address-pools":[{"base":"10.10.0.0/16","size":24}],"live-restore":true,"log-opts":{"max-size":"10m"},"max-concurrent-downloads":6,"registry-mirrors":["https://mirror.example.com"]}"#
        );
        // Built in: bounded json-file logs; an empty table turns them off.
        assert_eq!(
            Profile::default().docker.daemon_defaults,
            DaemonSettings::bounded_logs()
        );
        let off = Profile::parse("[docker.daemon_defaults]\n", "t.toml").expect("parse");
        assert!(off.docker.daemon_defaults.is_empty());
        // Both survive the TOML the tool writes (profiles show, cloud-init).
        for parsed in [&profile, &off] {
            let text = parsed.to_toml().expect("serialize");
            assert_eq!(
                &Profile::parse(&text, "rendered").expect("parse"),
                parsed,
                "{text}"
            );
        }
    }

    #[test]
    fn daemon_values_json_cannot_hold_are_refused_when_read() {
        let cases: &[(&str, &str)] = &[
            (
                "[docker.daemon]\nbuilt = 1979-05-27T07:32:00Z\n",
                "`built` is a TOML date or time, which JSON has no type for: quote it as a string",
            ),
            (
                "[docker.daemon]\nlog-opts = { when = 07:32:00 }\n",
                "`log-opts.when` is a TOML date or time",
            ),
            (
                "[docker.daemon]\nratio = nan\n",
                "`ratio` is nan or inf, which JSON cannot hold: give a finite number",
            ),
            (
                "[docker.daemon_defaults]\nlimits = [1, -inf]\n",
                "`limits[1]` is nan or inf",
            ),
        ];
        for (text, expected) in cases {
            let err = Profile::parse(text, "t.toml").expect_err(text).to_string();
            assert!(err.contains(expected), "{text}: {err}");
            assert!(err.contains("t.toml"), "{err}");
        }
        // A finite float is JSON's too.
        let fine = Profile::parse("[docker.daemon]\nratio = 1.5\n", "t.toml").expect("parse");
        assert_eq!(fine.docker.daemon.0["ratio"], serde_json::json!(1.5));
    }

    #[test]
    fn daemon_settings_dockerd_would_refuse_are_refused() {
        let set = |table: &str, text: &str| -> String {
            let profile = Profile::parse(&format!("[docker.{table}]\n{text}\n"), "t.toml")
                .unwrap_or_else(|e| panic!("{text}: {e}"));
            profile.validate().expect_err(text).to_string()
        };
        let cases: &[(&str, &str, &str)] = &[
            (
                "daemon",
                "\"a\\u001b[2Jb\" = 1",
                "is not one of dockerd's option names",
            ),
            (
                "daemon",
                "Debug = true",
                "is not one of dockerd's option names",
            ),
            (
                "daemon",
                "labels = [\"ok\", \"a\\nb\"]",
                "`labels`: holds a control character (in a\\nb)",
            ),
            (
                "daemon",
                "log-opts = { \"ta\\u0007g\" = \"x\" }",
                "`log-opts`: holds a control character",
            ),
            (
                "daemon",
                "storage-driver = \"btrfs\"",
                "[docker.daemon] `storage-driver`: the storage driver is [docker] storage_driver's (--storage-driver)",
            ),
            (
                "daemon_defaults",
                "storage-opts = [\"overlay2.size=5G\"]",
                "[docker.daemon_defaults] `storage-opts`: the storage driver is [docker] storage_driver's",
            ),
            (
                "daemon",
                "data-root = \"var/lib/docker\"",
                "`data-root`: must be an absolute path",
            ),
            (
                "daemon",
                "data-root = \"/srv/../etc\"",
                "`data-root`: must be an absolute path without `..`",
            ),
            ("daemon", "data-root = 5", "`data-root`: must be a string"),
            (
                "daemon",
                "registry-mirrors = [\"https://m.example.com\", 5000]",
                "`registry-mirrors`: must be a list of strings, and 5000 is not a string",
            ),
            (
                "daemon",
                "registry-mirrors = \"https://m.example.com\"",
                "`registry-mirrors`: must be a list of strings",
            ),
            (
                "daemon",
                "registry-mirrors = [\"mirror.example.com\"]",
                "`mirror.example.com` is not a URL",
            ),
            (
                "daemon",
                "registry-mirrors = [\"ftp://mirror.example.com\"]",
                "must start with http:// or https://",
            ),
            (
                "daemon",
                "registry-mirrors = [\"https://u:p@mirror.example.com\"]",
                "holds a user name or password",
            ),
            (
                "daemon",
                "log-opts = { max-size = \"10m\", max-file = 3 }",
                "`log-opts`: dockerd takes only strings here, and `max-file` is 3: quote it (max-file = \"3\")",
            ),
            (
                "daemon",
                "log-opts = \"max-size=10m\"",
                "must be a table of strings",
            ),
            (
                "daemon",
                "log-driver = true",
                "`log-driver`: must be a string",
            ),
            (
                "daemon",
                "insecure-registries = [true]",
                "`insecure-registries`: must be a list of strings",
            ),
        ];
        for (table, text, expected) in cases {
            let err = set(table, text);
            assert!(err.contains(expected), "{text}: {err}");
        }
        // A key the tool does not know passes: dockerd is the judge.
        let unknown =
            Profile::parse("[docker.daemon]\nno-such-option = true\n", "t.toml").expect("parse");
        unknown.validate().expect("passed through");
    }
}
