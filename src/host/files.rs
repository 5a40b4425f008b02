//! Every file the tool reads or writes, resolved under the host's root.
//!
//! Writes are atomic: a temporary file in the same folder, written, given the
//! mode and owner of the file it replaces (or the mode asked for), fsynced,
//! then renamed over the target and the folder fsynced. A reader, a crash or a
//! SIGKILL sees the old file or the new one, never half of one; the temporary
//! file is removed if the write fails before the rename.

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs;
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use anyhow::{Context, Result};

/// The host's filesystem as seen from `root` (`/` on a live host).
///
/// Text read from /etc and /var/lib is kept, so that the steps' preflight,
/// check and re-check read each file once per run. The copy is dropped when
/// this module writes or removes the file, and all copies are dropped
/// whenever a command runs ([`Files::forget`]), since a command may change
/// anything. Live state (/proc, /sys, /run) is never kept.
#[derive(Clone, Debug)]
pub struct Files {
    root: PathBuf,
    cache: Rc<RefCell<HashMap<String, Option<Rc<String>>>>>,
}

impl Files {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cache: Rc::default(),
        }
    }

    fn cacheable(path: &str) -> bool {
        path.starts_with("/etc/") || path.starts_with("/var/lib/")
    }

    /// Drops every kept copy (a command ran).
    pub fn forget(&self) {
        self.cache.borrow_mut().clear();
    }

    /// The file's text, shared with the cache: for large files read often
    /// (dpkg's status).
    pub fn read_shared(&self, path: &str) -> Result<Option<Rc<String>>> {
        if let Some(kept) = self.cache.borrow().get(path) {
            return Ok(kept.clone());
        }
        let text = match fs::read(self.resolve(path)) {
            Ok(bytes) => {
                Some(Rc::new(String::from_utf8(bytes).with_context(|| {
                    format!("reading {path}: not UTF-8 text")
                })?))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        if Self::cacheable(path) {
            self.cache
                .borrow_mut()
                .insert(path.to_string(), text.clone());
        }
        Ok(text)
    }

    /// `path` (absolute, as on the host) resolved under the root.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn exists(&self, path: &str) -> bool {
        self.resolve(path).exists()
    }

    pub fn is_dir(&self, path: &str) -> bool {
        self.resolve(path).is_dir()
    }

    /// The file's text, or `None` when it does not exist. Any other failure
    /// (permissions, not UTF-8) is an error: state that cannot be read is
    /// never assumed.
    pub fn read(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .read_shared(path)?
            .map(|text| text.as_str().to_string()))
    }

    /// Like [`Files::read`] for files that may hold binary data.
    pub fn read_bytes(&self, path: &str) -> Result<Option<Vec<u8>>> {
        match fs::read(self.resolve(path)) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {path}")),
        }
    }

    /// Names of the entries of a folder; empty when it does not exist.
    pub fn list(&self, path: &str) -> Result<Vec<String>> {
        match fs::read_dir(self.resolve(path)) {
            Ok(entries) => {
                let mut names = Vec::new();
                for entry in entries {
                    let entry = entry.with_context(|| format!("listing {path}"))?;
                    names.push(entry.file_name().to_string_lossy().into_owned());
                }
                names.sort();
                Ok(names)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("listing {path}")),
        }
    }

    /// Mode bits (permissions only) of a file, if it exists.
    pub fn mode(&self, path: &str) -> Result<Option<u32>> {
        match fs::metadata(self.resolve(path)) {
            Ok(meta) => Ok(Some(meta.permissions().mode() & 0o7777)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the mode of {path}")),
        }
    }

    /// Creates a folder (and its parents) with `mode` for the ones it creates.
    pub fn create_dir(&self, path: &str, mode: u32) -> Result<()> {
        let full = self.resolve(path);
        if full.is_dir() {
            return Ok(());
        }
        fs::DirBuilder::new()
            .recursive(true)
            .mode(mode)
            .create(&full)
            .with_context(|| format!("creating {path}"))
    }

    /// Replaces `path` with `content` atomically. An existing file keeps its
    /// mode and owner; a new one gets `new_mode` and root's ownership.
    pub fn write_atomic(&self, path: &str, content: &[u8], new_mode: u32) -> Result<()> {
        self.cache.borrow_mut().remove(path);
        let full = self.resolve(path);
        let dir = full
            .parent()
            .with_context(|| format!("writing {path}: it has no parent folder"))?;
        let existing = match fs::metadata(&full) {
            Ok(meta) => Some(meta),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("writing {path}")),
        };
        let name = full
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        remove_stale_temporaries(dir, &name)?;
        let mut temp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .rand_bytes(TEMP_RANDOM)
            .tempfile_in(dir)
            .with_context(|| {
                format!(
                    "writing {path}: creating a temporary file in {}",
                    dir.display()
                )
            })?;
        let mode = existing
            .as_ref()
            .map_or(new_mode, |m| m.permissions().mode() & 0o7777);
        // Mode first, then content: a secret never sits in a world-readable file.
        fs::set_permissions(temp.path(), fs::Permissions::from_mode(mode))
            .with_context(|| format!("writing {path}: setting mode {mode:o}"))?;
        if let Some(meta) = &existing {
            std::os::unix::fs::fchown(temp.as_file(), Some(meta.uid()), Some(meta.gid()))
                .with_context(|| format!("writing {path}: keeping its owner"))?;
        }
        temp.write_all(content)
            .with_context(|| format!("writing {path}"))?;
        temp.as_file()
            .sync_all()
            .with_context(|| format!("writing {path}: fsync"))?;
        temp.persist(&full)
            .map_err(|e| e.error)
            .with_context(|| format!("writing {path}: renaming the temporary file into place"))?;
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("writing {path}: fsync of {}", dir.display()))?;
        Ok(())
    }

    /// Every regular file below `path`, not following symbolic links;
    /// empty when `path` does not exist.
    pub fn walk(&self, path: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut folders = vec![path.trim_end_matches('/').to_string()];
        while let Some(folder) = folders.pop() {
            for name in self.list(&folder)? {
                let child = format!("{folder}/{name}");
                let meta = fs::symlink_metadata(self.resolve(&child))
                    .with_context(|| format!("reading {child}"))?;
                if meta.is_dir() {
                    folders.push(child);
                } else if meta.is_file() {
                    found.push(child);
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Removes a file; a missing file is fine.
    pub fn remove(&self, path: &str) -> Result<()> {
        self.cache.borrow_mut().remove(path);
        match fs::remove_file(self.resolve(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e).with_context(|| format!("removing {path}")),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Random characters in a temporary file's name: `.NAME.XXXXXX.tmp`.
const TEMP_RANDOM: usize = 6;

/// Removes temporary files that an earlier write of `name` left behind when
/// it was killed between creating and renaming them (they may hold a copy
/// of config.toml, tokens included). Only names of this module's own
/// pattern are touched.
fn remove_stale_temporaries(dir: &Path, name: &str) -> Result<()> {
    let prefix = format!(".{name}.");
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {}", dir.display()))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let middle = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"));
        if middle
            .is_some_and(|m| m.len() == TEMP_RANDOM && m.chars().all(|c| c.is_ascii_alphanumeric()))
        {
            fs::remove_file(entry.path())
                .with_context(|| format!("removing the stale {}", entry.path().display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_keeps_mode_of_existing_file_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        files
            .create_dir("/etc/gitlab-runner", 0o700)
            .expect("mkdir");
        files
            .write_atomic("/etc/gitlab-runner/config.toml", b"a = 1\n", 0o600)
            .expect("write");
        fs::set_permissions(
            files.resolve("/etc/gitlab-runner/config.toml"),
            fs::Permissions::from_mode(0o640),
        )
        .expect("chmod");
        files
            .write_atomic("/etc/gitlab-runner/config.toml", b"a = 2\n", 0o600)
            .expect("rewrite");
        assert_eq!(
            files.mode("/etc/gitlab-runner/config.toml").expect("mode"),
            Some(0o640)
        );
        assert_eq!(
            files
                .read("/etc/gitlab-runner/config.toml")
                .expect("read")
                .as_deref(),
            Some("a = 2\n")
        );
        assert_eq!(
            files.list("/etc/gitlab-runner").expect("list"),
            vec!["config.toml"]
        );
        assert_eq!(files.mode("/etc/gitlab-runner").expect("mode"), Some(0o700));
    }

    #[test]
    fn new_file_gets_the_mode_asked_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        files.write_atomic("/token", b"x", 0o600).expect("write");
        assert_eq!(files.mode("/token").expect("mode"), Some(0o600));
    }

    #[test]
    fn missing_file_reads_as_none_and_unreadable_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        assert_eq!(files.read("/etc/modules").expect("read"), None);
        fs::create_dir_all(files.resolve("/etc/modules")).expect("mkdir");
        files.forget();
        assert!(
            files.read("/etc/modules").is_err(),
            "a folder where a file should be is an error"
        );
    }

    #[test]
    fn a_write_removes_temporaries_a_killed_write_left_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        files.create_dir("/etc", 0o755).expect("mkdir");
        files
            .write_atomic("/etc/config.toml", b"a = 1\n", 0o600)
            .expect("write");
        for name in [
            ".config.toml.abc123.tmp",
            ".config.toml.keepme-please.tmp",
            ".other.toml.abc123.tmp",
        ] {
            fs::write(files.resolve(&format!("/etc/{name}")), "x").expect("plant");
        }
        files
            .write_atomic("/etc/config.toml", b"a = 2\n", 0o600)
            .expect("rewrite");
        assert_eq!(
            files.list("/etc").expect("list"),
            vec![
                ".config.toml.keepme-please.tmp",
                ".other.toml.abc123.tmp",
                "config.toml"
            ]
        );
    }

    #[test]
    fn text_is_read_once_until_a_write_or_a_command() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        files.create_dir("/etc", 0o755).expect("mkdir");
        files
            .write_atomic("/etc/group", b"docker:x:998:\n", 0o644)
            .expect("write");
        assert_eq!(
            files.read("/etc/group").expect("read").as_deref(),
            Some("docker:x:998:\n")
        );
        // Changed behind its back (as a command would): the kept copy stands...
        fs::write(files.resolve("/etc/group"), "docker:x:998:gitlab-runner\n").expect("write");
        assert_eq!(
            files.read("/etc/group").expect("read").as_deref(),
            Some("docker:x:998:\n")
        );
        // ...until a command runs (Host::run calls forget).
        files.forget();
        assert_eq!(
            files.read("/etc/group").expect("read").as_deref(),
            Some("docker:x:998:gitlab-runner\n")
        );
        // Its own writes are seen at once.
        files
            .write_atomic("/etc/group", b"new\n", 0o644)
            .expect("write");
        assert_eq!(
            files.read("/etc/group").expect("read").as_deref(),
            Some("new\n")
        );
        // Live state is never kept.
        files.create_dir("/run", 0o755).expect("mkdir");
        fs::write(files.resolve("/run/docker.pid"), "1\n").expect("write");
        assert_eq!(
            files.read("/run/docker.pid").expect("read").as_deref(),
            Some("1\n")
        );
        fs::write(files.resolve("/run/docker.pid"), "2\n").expect("write");
        assert_eq!(
            files.read("/run/docker.pid").expect("read").as_deref(),
            Some("2\n")
        );
    }
}
