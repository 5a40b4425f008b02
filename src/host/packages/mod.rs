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

pub trait PackageManager {
    /// The programs it runs, each with the package that provides it; the
    /// preflight requires them.
    fn tools(&self) -> &'static [(&'static str, &'static str)];

    /// Is `package` installed (and configured)?
    fn installed(&self, host: &Host, package: &str) -> Result<bool>;

    /// Checks, before anything changes, that `source` answers.
    fn probe_repository(&self, host: &Host, source: &Source) -> Result<()>;

    /// What [`PackageManager::ensure_repository`] would change, with diffs.
    fn repository_changes(&self, host: &Host, source: &Source) -> Result<Vec<Change>>;

    /// Makes `source` available (a source already on the host is used as it
    /// is) and refreshes the package index from it; when that fails, every
    /// file it changed is put back. Returns what it did.
    fn ensure_repository(&self, host: &Host, step: &str, source: &Source) -> Result<Vec<String>>;

    /// Makes the index usable for an install from the distribution itself.
    fn refresh(&self, host: &Host, step: &str) -> Result<()>;

    /// Installs `packages` in one transaction, non-interactively, keeping
    /// existing configuration files, after finishing an interrupted earlier
    /// run and waiting (visibly) for a lock held by another process.
    fn install(&self, host: &Host, step: &str, packages: &[&str]) -> Result<()>;

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
