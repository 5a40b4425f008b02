//! Every file the tool reads or writes, resolved under the host's root.
//!
//! Paths resolve as they would for a process chrooted into the root: every
//! lookup is `openat2` with `RESOLVE_IN_ROOT` from a handle on the root, so
//! an absolute symbolic link (`etc/docker -> /srv/elsewhere`, a systemd
//! `.wants` link), a relative one climbing with `../..`, or `..` itself never
//! leads outside it. Nothing here opens a path string under the root any
//! other way; [`Files::resolve`] exists for what must hand a path to another
//! program (`chroot`) or reach a live socket.
//!
//! Reads take regular files only (a FIFO would hang, `/dev/zero` never
//! ends), up to [`MAX_READ`] bytes. Writes are atomic: a temporary file in
//! the folder of the real file (a symbolic link is followed to its target
//! inside the root and the target edited, the link kept), given the mode and
//! owner of the file it replaces (only from a regular file, never with
//! group or world write) or the mode asked for, fsynced, then renamed over
//! the target and the folder fsynced. A reader, a crash or a SIGKILL sees
//! the old file or the new one, never half of one; the temporary file is
//! removed if the write fails before the rename.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, SystemTime};

use anyhow::{Context, Result, bail};
use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat2, readlinkat, renameat};
use nix::sys::stat::{FileStat, Mode, SFlag, fchmod, fstat, fstatat, mkdirat};
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, unlinkat};

/// The largest file the tool reads: config files are kilobytes, dpkg's
/// status a few megabytes; anything bigger is not what it looks like.
pub const MAX_READ: u64 = 64 * 1024 * 1024;

/// Symbolic links followed for one path before giving up, as the kernel does.
const MAX_LINKS: usize = 40;

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
    log: Rc<RefCell<Written>>,
}

/// What this run wrote, for the receipt: files it created (that did not
/// exist before), the SHA-256 of every file it wrote last, files it removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Written {
    pub created: std::collections::BTreeSet<String>,
    pub sha256: std::collections::BTreeMap<String, String>,
    pub removed: std::collections::BTreeSet<String>,
}

/// Hex SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// What kind of thing a path is, after following links inside the root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Other(&'static str),
}

fn kind(stat: &FileStat) -> Kind {
    match SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) {
        SFlag::S_IFREG => Kind::File,
        SFlag::S_IFDIR => Kind::Dir,
        SFlag::S_IFLNK => Kind::Other("a symbolic link"),
        SFlag::S_IFCHR => Kind::Other("a character device"),
        SFlag::S_IFBLK => Kind::Other("a block device"),
        SFlag::S_IFIFO => Kind::Other("a named pipe (FIFO)"),
        SFlag::S_IFSOCK => Kind::Other("a socket"),
        _ => Kind::Other("not a regular file"),
    }
}

fn errno(e: Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

/// `path` relative to the root, for openat2: `/etc/x` → `etc/x`, `/` → `.`.
fn relative(path: &str) -> &str {
    let rel = path.trim_start_matches('/');
    if rel.is_empty() { "." } else { rel }
}

/// The folder and last component of an absolute path.
fn split(path: &str) -> Result<(&str, &str)> {
    let trimmed = path.trim_end_matches('/');
    let (parent, name) = trimmed.rsplit_once('/').unwrap_or(("", trimmed));
    if name.is_empty() || name == "." || name == ".." {
        bail!("{path} names a folder, not a file");
    }
    Ok((if parent.is_empty() { "/" } else { parent }, name))
}

impl Files {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            cache: Rc::default(),
            log: Rc::default(),
        }
    }

    /// What this run wrote and removed so far.
    pub fn written(&self) -> Written {
        self.log.borrow().clone()
    }

    fn cacheable(path: &str) -> bool {
        path.starts_with("/etc/") || path.starts_with("/var/lib/")
    }

    /// Drops every kept copy (a command ran).
    pub fn forget(&self) {
        self.cache.borrow_mut().clear();
    }

    fn is_live_root(&self) -> bool {
        self.root == Path::new("/")
    }

    /// Opens `path` as a process chrooted into the root would.
    fn open(&self, path: &str, flags: OFlag, mode: Mode) -> io::Result<OwnedFd> {
        let root = std::fs::File::open(&self.root)?;
        let how = OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .mode(mode)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        // EAGAIN: a rename elsewhere in the tree raced the lookup; try again.
        for _ in 0..16 {
            match openat2(root.as_fd(), relative(path), how) {
                Err(Errno::EAGAIN) => continue,
                Err(Errno::ENOSYS | Errno::EPERM) if self.is_live_root() => {
                    // No openat2 (Linux < 5.6, or a seccomp filter): on the
                    // live root nothing can lead outside it anyway.
                    return nix::fcntl::open(
                        Path::new("/").join(relative(path)).as_path(),
                        flags | OFlag::O_CLOEXEC,
                        mode,
                    )
                    .map_err(errno);
                }
                Err(Errno::ENOSYS) => {
                    return Err(io::Error::other(
                        "--root needs openat2 (Linux 5.6 or later) to keep every path inside the root",
                    ));
                }
                other => return other.map_err(errno),
            }
        }
        Err(errno(Errno::EAGAIN))
    }

    /// The folder holding `path`, opened for reading (inside the root), and
    /// the last component.
    fn parent<'p>(&self, path: &'p str) -> Result<(OwnedFd, &'p str)> {
        let (parent, name) = split(path)?;
        let dir = self
            .open(parent, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .with_context(|| format!("opening the folder {parent}"))?;
        Ok((dir, name))
    }

    /// What `path` is, following links inside the root; `None` if missing.
    pub fn kind(&self, path: &str) -> Result<Option<Kind>> {
        match self.open(path, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => Ok(Some(kind(
                &fstat(&fd)
                    .map_err(errno)
                    .with_context(|| format!("reading {path}"))?,
            ))),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                Ok(None)
            }
            Err(e) => Err(e).with_context(|| format!("reading {path}")),
        }
    }

    /// The file's text, shared with the cache: for large files read often
    /// (dpkg's status).
    pub fn read_shared(&self, path: &str) -> Result<Option<Rc<String>>> {
        if let Some(kept) = self.cache.borrow().get(path) {
            return Ok(kept.clone());
        }
        let text = match self.read_bytes(path)? {
            Some(bytes) => {
                Some(Rc::new(String::from_utf8(bytes).with_context(|| {
                    format!("reading {path}: not UTF-8 text")
                })?))
            }
            None => None,
        };
        if Self::cacheable(path) {
            self.cache
                .borrow_mut()
                .insert(path.to_string(), text.clone());
        }
        Ok(text)
    }

    /// `path` (absolute, as on the host) joined to the root, for handing to
    /// another program or reaching a live socket. Never open it to read or
    /// write the tree: a link in it could lead outside the root.
    pub fn resolve(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    pub fn exists(&self, path: &str) -> bool {
        matches!(self.kind(path), Ok(Some(_)))
    }

    pub fn is_dir(&self, path: &str) -> bool {
        matches!(self.kind(path), Ok(Some(Kind::Dir)))
    }

    pub fn is_file(&self, path: &str) -> bool {
        matches!(self.kind(path), Ok(Some(Kind::File)))
    }

    /// The file's text, or `None` when it does not exist. Any other failure
    /// (permissions, not UTF-8, not a regular file) is an error: state that
    /// cannot be read is never assumed.
    pub fn read(&self, path: &str) -> Result<Option<String>> {
        Ok(self
            .read_shared(path)?
            .map(|text| text.as_str().to_string()))
    }

    /// Like [`Files::read`] for files that may hold binary data.
    pub fn read_bytes(&self, path: &str) -> Result<Option<Vec<u8>>> {
        // O_NONBLOCK: opening a FIFO must not wait for a writer.
        let fd = match self.open(
            path,
            OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {path}")),
        };
        let stat = fstat(&fd)
            .map_err(errno)
            .with_context(|| format!("reading {path}"))?;
        let what = match kind(&stat) {
            Kind::File => None,
            Kind::Dir => Some("a folder"),
            Kind::Other(what) => Some(what),
        };
        if let Some(what) = what {
            bail!(
                "reading {path}: it is {what}, not a regular file; make it a regular file or remove it"
            );
        }
        let mut bytes = Vec::new();
        std::fs::File::from(fd)
            .take(MAX_READ + 1)
            .read_to_end(&mut bytes)
            .with_context(|| format!("reading {path}"))?;
        if bytes.len() as u64 > MAX_READ {
            bail!(
                "reading {path}: it is larger than {} MiB, which no file the tool reads should be",
                MAX_READ / 1024 / 1024
            );
        }
        Ok(Some(bytes))
    }

    /// Names of the entries of a folder; empty when it does not exist.
    pub fn list(&self, path: &str) -> Result<Vec<String>> {
        let fd = match self.open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("listing {path}")),
        };
        list_fd(fd).with_context(|| format!("listing {path}"))
    }

    /// Mode bits (permissions only) of a file, if it exists.
    #[cfg(test)]
    pub fn mode(&self, path: &str) -> Result<Option<u32>> {
        match self.open(path, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => Ok(Some(
                fstat(&fd)
                    .map_err(errno)
                    .with_context(|| format!("reading the mode of {path}"))?
                    .st_mode
                    & 0o7777,
            )),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading the mode of {path}")),
        }
    }

    /// When the file was last modified, if it exists.
    pub fn modified(&self, path: &str) -> Result<Option<SystemTime>> {
        match self.open(path, OFlag::O_PATH, Mode::empty()) {
            Ok(fd) => {
                let stat = fstat(&fd)
                    .map_err(errno)
                    .with_context(|| format!("reading {path}"))?;
                let secs = u64::try_from(stat.st_mtime).unwrap_or(0);
                Ok(Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {path}")),
        }
    }

    /// Creates a folder (and its parents) with `mode` for the ones it creates.
    /// Each component is looked up inside the root, links included.
    pub fn create_dir(&self, path: &str, mode: u32) -> Result<()> {
        let mut prefix = String::new();
        let mut parent = self
            .open("/", OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .context("opening the root")?;
        for name in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            prefix.push('/');
            prefix.push_str(name);
            let flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY;
            parent = match self.open(&prefix, flags, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match mkdirat(&parent, name, Mode::from_bits_truncate(mode)) {
                        Ok(()) => {}
                        Err(Errno::EEXIST) => bail!(
                            "creating {path}: {prefix} is a symbolic link to a folder that does not exist; create its target or remove the link"
                        ),
                        Err(e) => {
                            return Err(errno(e)).with_context(|| format!("creating {prefix}"));
                        }
                    }
                    self.open(&prefix, flags, Mode::empty())
                        .with_context(|| format!("creating {prefix}"))?
                }
                Err(e) if e.kind() == io::ErrorKind::NotADirectory => {
                    bail!("creating {path}: {prefix} is not a folder")
                }
                Err(e) => return Err(e).with_context(|| format!("creating {path}")),
            };
        }
        Ok(())
    }

    /// Checks, without changing anything, that [`Files::create_dir`] can
    /// make `path`: every component that exists is a folder (links followed
    /// inside the root), and none is a link to nowhere.
    pub fn check_dir_creatable(&self, path: &str) -> Result<()> {
        let mut prefix = String::new();
        for name in path.split('/').filter(|c| !c.is_empty() && *c != ".") {
            prefix.push('/');
            prefix.push_str(name);
            match self.kind(&prefix)? {
                Some(Kind::Dir) => continue,
                Some(_) => bail!("{prefix} is not a folder; {path} cannot be made there"),
                None => {
                    let (dir, last) = self.parent(&prefix)?;
                    if fstatat(&dir, last, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok() {
                        bail!(
                            "{prefix} is a symbolic link to a folder that does not exist (inside the root); create its target or remove the link"
                        );
                    }
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    /// Checks, without changing anything, that `path` can be written once
    /// its own folder exists: a symbolic link must lead (inside the root) to
    /// a place whose folder exists.
    pub fn check_writable(&self, path: &str) -> Result<()> {
        let (folder, _) = split(path)?;
        self.check_dir_creatable(folder)?;
        let target = self.write_target(path)?;
        if target != path {
            let (target_folder, _) = split(&target)?;
            if self.kind(target_folder)? != Some(Kind::Dir) {
                bail!(
                    "{path} is a symbolic link to {target}, whose folder {target_folder} does not exist inside the root; create it or remove the link"
                );
            }
            if let Some(Kind::Other(what)) = self.kind(&target)? {
                bail!(
                    "{path} leads to {target}, which is {what}, not a regular file; make it a regular file or remove it"
                );
            }
        }
        Ok(())
    }

    /// Where a write of `path` really lands: symbolic links at the end of
    /// the path are followed, inside the root, to the file they name.
    fn write_target(&self, path: &str) -> Result<String> {
        let mut current = path.to_string();
        for _ in 0..MAX_LINKS {
            let (parent, name) = split(&current)?;
            let (dir, _) = match self.parent(&current) {
                Ok(found) => found,
                // A missing folder is reported by the write itself.
                Err(_) => return Ok(current),
            };
            let is_link = matches!(
                fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW),
                Ok(stat) if SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK
            );
            if !is_link {
                return Ok(current);
            }
            let target = readlinkat(&dir, name)
                .map_err(errno)
                .with_context(|| format!("reading the link {current}"))?;
            let target = target.to_string_lossy();
            current = if target.starts_with('/') {
                target.into_owned()
            } else {
                format!("{}/{target}", parent.trim_end_matches('/'))
            };
        }
        bail!("writing {path}: too many levels of symbolic links")
    }

    /// Replaces `path` with `content` atomically. An existing regular file
    /// keeps its owner and its mode, less group and world write (and less
    /// every world bit when `new_mode` has none: a secret stays private); a
    /// new one gets `new_mode` and root's ownership. A symbolic link is
    /// followed inside the root and its target replaced; anything else that
    /// is not a regular file is refused.
    pub fn write_atomic(&self, path: &str, content: &[u8], new_mode: u32) -> Result<()> {
        self.cache.borrow_mut().remove(path);
        let target = self.write_target(path)?;
        self.cache.borrow_mut().remove(&target);
        let (dir, name) = self
            .parent(&target)
            .with_context(|| format!("writing {path}"))?;
        let existing = match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(stat) => match kind(&stat) {
                Kind::File => Some(stat),
                Kind::Dir => {
                    bail!("writing {path}: {target} is a folder; remove it or make it a file")
                }
                Kind::Other(what) => bail!(
                    "writing {path}: {target} is {what}, not a regular file; make it a regular file or remove it"
                ),
            },
            Err(Errno::ENOENT) => None,
            Err(e) => return Err(errno(e)).with_context(|| format!("writing {path}")),
        };
        let mode = existing
            .as_ref()
            .map_or(new_mode, |stat| safe_mode(stat.st_mode & 0o7777, new_mode));
        remove_stale_temporaries(&dir, name)
            .with_context(|| format!("writing {path}: removing stale temporary files"))?;
        let (temp_name, temp) = create_temporary(&dir, name)
            .with_context(|| format!("writing {path}: creating a temporary file beside it"))?;
        let written = (|| -> Result<()> {
            // Mode first, then content: a secret never sits in a readable file.
            fchmod(&temp, Mode::from_bits_truncate(mode))
                .map_err(errno)
                .with_context(|| format!("writing {path}: setting mode {mode:o}"))?;
            if let Some(stat) = &existing {
                fchown(
                    &temp,
                    Some(Uid::from_raw(stat.st_uid)),
                    Some(Gid::from_raw(stat.st_gid)),
                )
                .map_err(errno)
                .with_context(|| format!("writing {path}: keeping its owner"))?;
            }
            let mut file = std::fs::File::from(temp);
            file.write_all(content)
                .with_context(|| format!("writing {path}"))?;
            file.sync_all()
                .with_context(|| format!("writing {path}: fsync"))?;
            renameat(&dir, temp_name.as_str(), &dir, name)
                .map_err(errno)
                .with_context(|| format!("writing {path}: renaming the temporary file into place"))
        })();
        if let Err(e) = written {
            let _ = unlinkat(&dir, temp_name.as_str(), UnlinkatFlags::NoRemoveDir);
            return Err(e);
        }
        nix::unistd::fsync(&dir)
            .map_err(errno)
            .with_context(|| format!("writing {path}: fsync of its folder"))?;
        let mut log = self.log.borrow_mut();
        if existing.is_none() && !log.removed.remove(path) {
            log.created.insert(path.to_string());
        }
        log.sha256.insert(path.to_string(), sha256(content));
        Ok(())
    }

    /// Opens a folder (inside the root) to take a lock on.
    pub fn open_dir(&self, path: &str) -> Result<std::fs::File> {
        let fd = self
            .open(path, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty())
            .with_context(|| format!("opening {path}"))?;
        Ok(std::fs::File::from(fd))
    }

    /// Every regular file below `path`, not following symbolic links;
    /// empty when `path` does not exist.
    pub fn walk(&self, path: &str) -> Result<Vec<String>> {
        let mut found = Vec::new();
        let mut folders = vec![path.trim_end_matches('/').to_string()];
        while let Some(folder) = folders.pop() {
            let fd = match self.open(&folder, OFlag::O_RDONLY | OFlag::O_DIRECTORY, Mode::empty()) {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e).with_context(|| format!("listing {folder}")),
            };
            let dir = fd
                .try_clone()
                .with_context(|| format!("listing {folder}"))?;
            for name in list_fd(fd).with_context(|| format!("listing {folder}"))? {
                let child = format!("{folder}/{name}");
                let stat = fstatat(&dir, name.as_str(), AtFlags::AT_SYMLINK_NOFOLLOW)
                    .map_err(errno)
                    .with_context(|| format!("reading {child}"))?;
                match kind(&stat) {
                    Kind::Dir => folders.push(child),
                    Kind::File => found.push(child),
                    Kind::Other(_) => {}
                }
            }
        }
        found.sort();
        Ok(found)
    }

    /// Is `path` itself a symbolic link (not followed)?
    pub fn is_symlink(&self, path: &str) -> bool {
        let Ok((dir, name)) = self.parent(path) else {
            return false;
        };
        fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).is_ok_and(|stat| {
            SFlag::from_bits_truncate(stat.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFLNK
        })
    }

    /// Removes a file (a symbolic link itself, not its target); a missing
    /// file is fine.
    pub fn remove(&self, path: &str) -> Result<()> {
        self.cache.borrow_mut().remove(path);
        let (dir, name) = match self.parent(path) {
            Ok(found) => found,
            Err(e)
                if e.chain().any(|c| {
                    c.downcast_ref::<io::Error>()
                        .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
                }) =>
            {
                return Ok(());
            }
            Err(e) => return Err(e).with_context(|| format!("removing {path}")),
        };
        match unlinkat(&dir, name, UnlinkatFlags::NoRemoveDir) {
            Ok(()) => {
                let mut log = self.log.borrow_mut();
                log.sha256.remove(path);
                if !log.created.remove(path) {
                    log.removed.insert(path.to_string());
                }
                Ok(())
            }
            Err(Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno(e)).with_context(|| format!("removing {path}")),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// The entries of an open folder, sorted, without `.` and `..`.
fn list_fd(fd: OwnedFd) -> io::Result<Vec<String>> {
    let mut dir = nix::dir::Dir::from_fd(fd).map_err(errno)?;
    let mut names = Vec::new();
    for entry in dir.iter() {
        let entry = entry.map_err(errno)?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsStr::from_bytes(name).to_string_lossy().into_owned());
        }
    }
    names.sort();
    Ok(names)
}

/// The mode a rewritten file keeps: its own, less setuid/setgid/sticky and
/// group or world write; a file created private (`new_mode` without world
/// bits, such as config.toml's 0600) loses every world bit too.
pub fn safe_mode(existing: u32, new_mode: u32) -> u32 {
    let mut mode = existing & 0o755;
    if new_mode & 0o007 == 0 {
        mode &= 0o750;
    }
    mode
}

/// `.NAME.PID-N.tmp`: the pid of the writer is in the name, so that a later
/// run removes only what a dead process left.
fn temporary_name(name: &str, serial: u32) -> String {
    format!(".{name}.{}-{serial}.tmp", std::process::id())
}

fn create_temporary(dir: &OwnedFd, name: &str) -> io::Result<(String, OwnedFd)> {
    let seed = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    for attempt in 0..100u32 {
        let temp = temporary_name(name, seed.wrapping_add(attempt));
        match nix::fcntl::openat(
            dir,
            temp.as_str(),
            OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        ) {
            Ok(fd) => return Ok((temp, fd)),
            Err(Errno::EEXIST) => continue,
            Err(e) => return Err(errno(e)),
        }
    }
    Err(errno(Errno::EEXIST))
}

/// Removes temporary files that an earlier write of `name` left behind when
/// it was killed between creating and renaming them (they may hold a copy
/// of config.toml, tokens included). Only names of this module's own
/// pattern whose writer is no longer running are touched: another run's
/// file in the middle of its write is left alone.
fn remove_stale_temporaries(dir: &OwnedFd, name: &str) -> io::Result<()> {
    let prefix = format!(".{name}.");
    for file in list_fd(dir.try_clone()?)? {
        let Some((pid, serial)) = file
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .and_then(|middle| middle.split_once('-'))
        else {
            continue;
        };
        let (Ok(pid), Ok(_)) = (pid.parse::<i32>(), serial.parse::<u32>()) else {
            continue;
        };
        if pid <= 0 || writer_alive(pid) {
            continue;
        }
        match unlinkat(dir, file.as_str(), UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(errno(e)),
        }
    }
    Ok(())
}

/// Is process `pid` running (signal 0 reaches it, or it exists under
/// another user)?
fn writer_alive(pid: i32) -> bool {
    !matches!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
        Err(Errno::ESRCH)
    )
}
#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::{PermissionsExt, symlink};

    use super::*;

    /// A root inside a temporary folder, with a sibling folder outside it
    /// that no operation may touch.
    struct Tree {
        _dir: tempfile::TempDir,
        files: Files,
        outside: PathBuf,
    }

    fn tree() -> Tree {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        fs::create_dir_all(root.join("etc")).expect("mkdir");
        fs::create_dir_all(&outside).expect("mkdir");
        fs::write(outside.join("daemon.json"), "{\"outside\": true}\n").expect("write");
        Tree {
            _dir: dir,
            files: Files::new(&root),
            outside,
        }
    }

    impl Tree {
        fn outside_listing(&self) -> Vec<(String, Vec<u8>)> {
            let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&self.outside)
                .expect("read_dir")
                .map(|e| {
                    let path = e.expect("entry").path();
                    let bytes = fs::read(&path).unwrap_or_default();
                    (path.display().to_string(), bytes)
                })
                .collect();
            out.sort();
            out
        }

        fn link(&self, target: &str, at: &str) {
            let at = self.files.resolve(at);
            fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
            symlink(target, at).expect("symlink");
        }
    }

    #[test]
    fn absolute_and_climbing_links_resolve_inside_the_root() {
        let t = tree();
        let outside = t.outside.display().to_string();
        // An absolute link to the folder outside, by its real path: inside
        // the root that path does not exist.
        t.link(&outside, "/etc/docker");
        let before = t.outside_listing();
        assert_eq!(t.files.read("/etc/docker/daemon.json").expect("read"), None);
        assert!(t.files.create_dir("/etc/docker", 0o755).is_err());
        assert!(
            t.files
                .write_atomic("/etc/docker/daemon.json", b"{}\n", 0o644)
                .is_err()
        );
        assert_eq!(t.outside_listing(), before);

        // A relative link climbing far above the root stops at the root.
        let t = tree();
        t.link("../../../../../../../../outside", "/etc/docker");
        let before = t.outside_listing();
        assert_eq!(t.files.read("/etc/docker/daemon.json").expect("read"), None);
        t.files
            .create_dir("/outside", 0o755)
            .expect("mkdir in root");
        t.files
            .write_atomic("/etc/docker/daemon.json", b"{}\n", 0o644)
            .expect("write");
        assert_eq!(t.outside_listing(), before, "nothing written outside");
        assert_eq!(
            fs::read_to_string(t.files.resolve("/outside/daemon.json")).expect("inside"),
            "{}\n"
        );

        // `..` in the path itself stops at the root too.
        let t = tree();
        assert_eq!(t.files.read("/../outside/daemon.json").expect("read"), None);
        assert_eq!(t.files.list("/..").expect("list"), vec!["etc"]);
    }

    #[test]
    fn a_link_to_an_absolute_path_is_followed_inside_the_root() {
        let t = tree();
        t.files.create_dir("/srv/data", 0o755).expect("mkdir");
        t.files
            .write_atomic("/srv/data/config.toml", b"a = 1\n", 0o600)
            .expect("write");
        t.link("/srv/data/config.toml", "/etc/gitlab-runner/config.toml");
        assert_eq!(
            t.files
                .read("/etc/gitlab-runner/config.toml")
                .expect("read")
                .as_deref(),
            Some("a = 1\n")
        );
        t.files
            .write_atomic("/etc/gitlab-runner/config.toml", b"a = 2\n", 0o600)
            .expect("write");
        let link = t.files.resolve("/etc/gitlab-runner/config.toml");
        assert!(
            fs::symlink_metadata(&link)
                .expect("lstat")
                .file_type()
                .is_symlink(),
            "the link is kept"
        );
        assert_eq!(
            fs::read_to_string(t.files.resolve("/srv/data/config.toml")).expect("target"),
            "a = 2\n"
        );
        // Through a relative link and a link to a link as well.
        t.link("../srv/data/config.toml", "/etc/relative.toml");
        t.link("/etc/relative.toml", "/etc/chained.toml");
        t.files
            .write_atomic("/etc/chained.toml", b"a = 3\n", 0o600)
            .expect("write");
        assert_eq!(
            fs::read_to_string(t.files.resolve("/srv/data/config.toml")).expect("target"),
            "a = 3\n"
        );
        // systemd's absolute .wants links are judged inside the root.
        t.files
            .create_dir("/lib/systemd/system", 0o755)
            .expect("mkdir");
        t.link(
            "/lib/systemd/system/docker.service",
            "/etc/systemd/system/multi-user.target.wants/docker.service",
        );
        assert!(
            !t.files
                .exists("/etc/systemd/system/multi-user.target.wants/docker.service")
        );
        t.files
            .write_atomic("/lib/systemd/system/docker.service", b"[Unit]\n", 0o644)
            .expect("write");
        assert!(
            t.files
                .exists("/etc/systemd/system/multi-user.target.wants/docker.service")
        );
    }

    #[test]
    fn loops_dangling_links_and_non_regular_files_are_clear_errors() {
        let t = tree();
        t.link("/etc/b.json", "/etc/a.json");
        t.link("/etc/a.json", "/etc/b.json");
        let err = t.files.read("/etc/a.json").expect_err("loop");
        assert!(format!("{err:#}").contains("/etc/a.json"), "{err:#}");
        let err = t
            .files
            .write_atomic("/etc/a.json", b"{}", 0o644)
            .expect_err("loop");
        assert!(format!("{err:#}").contains("symbolic links"), "{err:#}");

        // A dangling link: nothing to read; a write creates its target.
        t.link("/etc/docker-real/daemon.json", "/etc/dangling.json");
        assert_eq!(t.files.read("/etc/dangling.json").expect("read"), None);
        t.files
            .create_dir("/etc/docker-real", 0o755)
            .expect("mkdir");
        t.files
            .write_atomic("/etc/dangling.json", b"{}\n", 0o644)
            .expect("write");
        assert_eq!(
            t.files.mode("/etc/docker-real/daemon.json").expect("mode"),
            Some(0o644)
        );

        // A link to a folder that does not exist: creating through it fails
        // with the reason, never elsewhere.
        t.link("/nowhere", "/etc/docker");
        let err = t
            .files
            .create_dir("/etc/docker", 0o755)
            .expect_err("dangling");
        assert!(format!("{err:#}").contains("does not exist"), "{err:#}");

        // /dev/null, a FIFO, a folder: not regular files, never read or
        // replaced, and no mode is taken from them.
        t.link("/dev/null", "/etc/null.json");
        fs::create_dir_all(t.files.resolve("/dev")).expect("mkdir");
        symlink("/dev/null", t.files.resolve("/dev/null")).expect("link");
        let fifo = t.files.resolve("/etc/fifo.json");
        nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o666)).expect("mkfifo");
        for path in ["/etc/fifo.json", "/etc"] {
            let err = t.files.read(path).expect_err(path);
            assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
            assert!(t.files.write_atomic(path, b"{}", 0o644).is_err(), "{path}");
        }
        assert_eq!(t.outside_listing().len(), 1);
    }

    #[test]
    fn a_real_device_is_neither_read_nor_replaced() {
        // The live root's /dev/null (a character device), reached from `/`.
        let files = Files::new("/");
        let err = files.read("/dev/null").expect_err("device");
        assert!(format!("{err:#}").contains("character device"), "{err:#}");
        assert!(files.read("/dev/zero").is_err(), "/dev/zero never ends");
    }

    #[test]
    fn rewritten_files_never_keep_group_or_world_write() {
        let t = tree();
        for (existing, new_mode, expected) in [
            (0o666, 0o644, 0o644),
            (0o777, 0o644, 0o755),
            (0o4755, 0o644, 0o755),
            (0o644, 0o600, 0o640),
            (0o640, 0o600, 0o640),
            (0o600, 0o644, 0o600),
        ] {
            assert_eq!(safe_mode(existing, new_mode), expected, "{existing:o}");
            t.files.write_atomic("/etc/f", b"x", 0o644).expect("write");
            fs::set_permissions(
                t.files.resolve("/etc/f"),
                fs::Permissions::from_mode(existing),
            )
            .expect("chmod");
            t.files
                .write_atomic("/etc/f", b"y", new_mode)
                .expect("rewrite");
            assert_eq!(t.files.mode("/etc/f").expect("mode"), Some(expected));
        }
    }

    #[test]
    fn huge_files_are_refused() {
        let t = tree();
        let big = fs::File::create(t.files.resolve("/etc/big")).expect("create");
        big.set_len(MAX_READ + 1).expect("sparse file");
        let err = t.files.read("/etc/big").expect_err("too big");
        assert!(format!("{err:#}").contains("larger than 64 MiB"), "{err:#}");
    }

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
    fn a_write_removes_temporaries_a_dead_writer_left_and_nothing_else() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = Files::new(dir.path());
        files.create_dir("/etc", 0o755).expect("mkdir");
        files
            .write_atomic("/etc/config.toml", b"a = 1\n", 0o600)
            .expect("write");
        // A process that has exited: its pid is free (until reused).
        let mut child = std::process::Command::new("true").spawn().expect("spawn");
        let dead = child.id();
        child.wait().expect("wait");
        let live = std::process::id();
        let parent_pid = nix::unistd::getppid();
        for name in [
            format!(".config.toml.{dead}-1.tmp"),
            format!(".config.toml.{parent_pid}-7.tmp"),
            format!(".config.toml.{live}-99.tmp"),
            ".config.toml.keepme-please.tmp".to_string(),
            format!(".other.toml.{dead}-1.tmp"),
        ] {
            fs::write(files.resolve(&format!("/etc/{name}")), "x").expect("plant");
        }
        files
            .write_atomic("/etc/config.toml", b"a = 2\n", 0o600)
            .expect("rewrite");
        let mut expected = vec![
            format!(".config.toml.{parent_pid}-7.tmp"),
            format!(".config.toml.{live}-99.tmp"),
            ".config.toml.keepme-please.tmp".to_string(),
            format!(".other.toml.{dead}-1.tmp"),
            "config.toml".to_string(),
        ];
        expected.sort();
        assert_eq!(files.list("/etc").expect("list"), expected);
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
