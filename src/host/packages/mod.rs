//! The package manager: package queries, repository sources, installs and
//! the wait for its lock, behind one trait. The steps say what they want
//! ("gitlab-runner installed from this repository"); the implementation for
//! the host's family, chosen from os-release, says how. apt is the only one
//! today; another (dnf) is one module beside `apt.rs` and its fake.

mod apt;
mod apt_repo;

use anyhow::Result;

use super::Host;
use crate::change::Change;
use crate::edit::os_release::OsRelease;
use crate::profile::Repository;

/// A repository the host should install from: the profile's description,
/// and the name the tool gives the files it writes for it.
#[derive(Clone, Debug)]
pub struct Source {
    /// File name stem: `gitlab-runner` → gitlab-runner.sources / gitlab-runner.asc.
    pub name: &'static str,
    pub repository: Repository,
}

/// A package to install: whatever version the repositories offer, or
/// exactly one (a pin).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Package {
    pub name: String,
    pub version: Option<String>,
}

impl Package {
    pub fn any(name: &str) -> Self {
        Self {
            name: name.to_string(),
            version: None,
        }
    }

    pub fn exactly(name: &str, version: &str) -> Self {
        Self {
            name: name.to_string(),
            version: Some(version.to_string()),
        }
    }
}

impl std::fmt::Display for Package {
    /// `name`, or `name version` for a pin, in the operator's words.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.version {
            Some(version) => write!(f, "{} {version}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

pub trait PackageManager {
    /// The programs it runs, each with the package that provides it; the
    /// preflight requires them.
    fn tools(&self) -> &'static [(&'static str, &'static str)];

    /// Is `package` installed (and configured)?
    fn installed(&self, host: &Host, package: &str) -> Result<bool>;

    /// The installed version of `package`; None when it is not installed.
    fn version(&self, host: &Host, package: &str) -> Result<Option<String>>;

    /// Is `package` held (automatic upgrades leave it where it is)?
    fn held(&self, host: &Host, package: &str) -> Result<bool>;

    /// Holds `packages` at their installed versions.
    fn hold(&self, host: &Host, step: &str, packages: &[&str]) -> Result<()>;

    /// Releases the hold on `packages`.
    fn unhold(&self, host: &Host, step: &str, packages: &[&str]) -> Result<()>;

    /// Checks, before anything changes, that `source` answers.
    fn probe_repository(&self, host: &Host, source: &Source) -> Result<()>;

    /// What [`PackageManager::ensure_repository`] would change, with diffs.
    fn repository_changes(&self, host: &Host, source: &Source) -> Result<Vec<Change>>;

    /// Makes every source in `sources` available (a source already on the
    /// host is used as it is) and the package index usable for an install
    /// from them and from the distribution, with one index update at most;
    /// when that fails, every file it changed is put back. Returns what it
    /// did, one list per source.
    fn prepare(&self, host: &Host, step: &str, sources: &[Source]) -> Result<Vec<Vec<String>>>;

    /// Installs `packages` in one transaction, non-interactively, keeping
    /// existing configuration files, after finishing an interrupted earlier
    /// run and waiting (visibly) for a lock held by another process. A
    /// package with a version is installed at exactly that version, up or
    /// down, held or not.
    fn install(&self, host: &Host, step: &str, packages: &[Package]) -> Result<()>;

    /// Removes `packages` and their configuration files in one transaction
    /// (`remove --purge`).
    fn purge(&self, host: &Host, step: &str, packages: &[&str]) -> Result<()>;
}

/// The package manager of an OS family, if the tool knows it.
pub fn for_os(os: &OsRelease) -> Option<Box<dyn PackageManager>> {
    if os.is_apt_based() {
        return Some(Box::new(apt::Apt));
    }
    None
}
