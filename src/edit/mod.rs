//! Pure text transforms and parsers for the files runner-provision reads and
//! edits: `/etc/modules`, GitLab Runner's `config.toml`, Docker's
//! `daemon.json`, `/etc/os-release`, dpkg's status file, `/etc/group`,
//! `/etc/passwd`, apt `.sources` files and the entries of existing source
//! files, and unified diffs for `plan`.
//!
//! Nothing here does I/O: every function takes the file's text and returns
//! text or facts. Reading, writing and paths belong to `host::files`; callers
//! add the path to errors as `anyhow` context.

pub mod apt_entries;
pub mod apt_source;
pub mod daemon_json;
pub mod deb_version;
pub mod diff;
pub mod docker_unit;
pub mod dpkg_status;
pub mod etc_group;
pub mod etc_passwd;
pub mod modules;
pub mod network;
pub mod openpgp;
pub mod os_release;
pub mod pem;
pub mod prune_schedule;
pub mod runner_config;
pub mod runner_globals;
pub mod shutdown_unit;

/// A file that cannot be edited as it is. Messages never quote the file's
/// content (a config.toml holds the runner token): only positions and the
/// parser's short description.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error("{what} is not valid TOML: {message}")]
    Toml { what: String, message: String },
    #[error("{what} is not valid JSON: {message}")]
    Json { what: String, message: String },
    #[error("{what}: {message}")]
    Shape { what: String, message: String },
}

/// The advice every message ends with: these files are the operator's.
const FIX: &str = "fix or remove the file, then run again";
