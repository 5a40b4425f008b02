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
];

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Profile {
    pub description: String,
    pub runner: Runner,
    pub docker: Docker,
    pub kernel: Kernel,
    #[serde(skip_serializing_if = "Network::is_empty")]
    pub network: Network,
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
        }
    }
}

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
    /// Seconds docker-verify waits for the daemon to answer.
    pub verify_timeout: u64,
}

impl Default for Docker {
    fn default() -> Self {
        Self {
            source: DockerSource::Distro,
            group_members: vec!["gitlab-runner".to_string()],
            accept_group_risk: false,
            storage_driver: "overlay2".to_string(),
            verify_timeout: 60,
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
        let text = std::fs::read_to_string(path).map_err(|e| Error::Profile {
            path: spec.to_string(),
            message: format!("cannot read it: {}", e.kind()),
        })?;
        Ok((Self::parse(&text, spec)?, spec.to_string()))
    }

    pub fn parse(text: &str, source: &str) -> Result<Self, Error> {
        toml::from_str(text).map_err(|e| Error::Profile {
            path: source.to_string(),
            message: e.to_string().trim_end().to_string(),
        })
    }

    /// Checks what can be checked without the host. Errors say how to fix.
    pub fn validate(&self) -> Result<(), Error> {
        check_url("the GitLab URL", &self.runner.url)?;
        if let Some(repo) = &self.runner.repository {
            if repo.uri.trim().is_empty() || repo.suite.trim().is_empty() {
                return Err(Error::BadSetting {
                    what: "[runner.repository] uri and suite",
                    value: format!("{} {}", repo.uri, repo.suite),
                    allowed: "a non-empty apt URI and suite (\"./\" for a flat repository)",
                });
            }
            if !repo.key_url.is_empty() && !repo.key_url.starts_with("file:") {
                check_url("the repository key_url", &repo.key_url)?;
            }
        }
        if self.runner.executor.trim().is_empty() {
            return Err(Error::BadSetting {
                what: "executor",
                value: String::new(),
                allowed: "shell (or another GitLab Runner executor)",
            });
        }
        if self.docker.storage_driver.trim().is_empty() {
            return Err(Error::BadSetting {
                what: "storage_driver",
                value: String::new(),
                allowed: "overlay2 (or another Docker storage driver)",
            });
        }
        self.validate_network()?;
        for name in self.docker.group_members.iter().chain(&self.kernel.modules) {
            if name.is_empty() || name.contains(|c: char| c.is_whitespace() || c == '/' || c == ':')
            {
                return Err(Error::BadSetting {
                    what: "group member or module name",
                    value: name.clone(),
                    allowed: "plain names",
                });
            }
        }
        Ok(())
    }
}

impl Profile {
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

/// Printable ASCII that needs no quoting in apt.conf, systemd environment
/// files or a shell's single quotes.
fn plain_char(c: char) -> bool {
    c.is_ascii_graphic() && !matches!(c, '"' | '\\' | '\'' | '`' | '$' | ';' | '#')
}

/// An http(s) URL with a host, nothing more is needed to pass to gitlab-runner.
fn check_url(what: &'static str, url: &str) -> Result<(), Error> {
    let bad = || Error::BadUrl {
        what,
        value: url.to_string(),
    };
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if host.is_empty()
        || host.starts_with(':')
        || url.contains(|c: char| c.is_whitespace() || c.is_control())
    {
        return Err(bad());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn unknown_profile_lists_the_known_ones() {
        let err = Profile::load(Some("shell-podman")).expect_err("unknown");
        assert!(
            err.to_string().contains("shell-docker, shell-docker-ce"),
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
        for bad in [
            "gitlab.com",
            "ftp://gitlab.com/",
            "https://",
            "https:///x",
            "https://gitlab .com/",
            "",
        ] {
            assert!(check_url("url", bad).is_err(), "{bad:?} should be refused");
        }
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
}
