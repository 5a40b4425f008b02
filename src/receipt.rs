//! The receipt: what runner-provision created on this host, so that
//! `remove` takes back exactly that and nothing it did not make (as
//! nix-installer's receipt does).
//!
//! Kept in /var/lib/runner-provision/receipt.json (root only, written
//! atomically). `apply` merges into it what each run created: files that did
//! not exist before (with the SHA-256 of what the tool last wrote, so a file
//! changed by someone else since is kept), packages installed, accounts
//! created, group memberships added, runners registered, module lines
//! appended. Any step records through [`Host::note`] and by writing files
//! through `host.files`; nothing else is needed. A converged apply records
//! nothing and leaves the receipt byte-identical.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::host::Host;

pub const PATH: &str = "/var/lib/runner-provision/receipt.json";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Receipt {
    /// Files the tool created, with the SHA-256 of what it last wrote.
    pub files: BTreeMap<String, String>,
    pub packages: BTreeSet<String>,
    pub accounts: BTreeSet<String>,
    pub memberships: BTreeSet<Membership>,
    pub runners: BTreeSet<RunnerRef>,
    pub module_lines: BTreeSet<ModuleLine>,
    /// Packages the tool held (`apt-mark hold`, for a version pin) that
    /// were not held before: the holds apply releases when the pin goes
    /// away. A hold made by hand is never here. Left out when empty, so
    /// receipts of hosts without pins read as before.
    #[serde(skip_serializing_if = "BTreeSet::is_empty")]
    pub holds: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Membership {
    pub user: String,
    pub group: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunnerRef {
    pub url: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModuleLine {
    pub file: String,
    pub module: String,
}

impl Receipt {
    pub fn is_empty(&self) -> bool {
        self == &Receipt::default()
    }

    /// Adds `other`'s entries to this one.
    pub fn merge(&mut self, other: &Receipt) {
        self.files
            .extend(other.files.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.packages.extend(other.packages.iter().cloned());
        self.accounts.extend(other.accounts.iter().cloned());
        self.memberships.extend(other.memberships.iter().cloned());
        self.runners.extend(other.runners.iter().cloned());
        self.module_lines.extend(other.module_lines.iter().cloned());
        self.holds.extend(other.holds.iter().cloned());
    }

    /// Takes `other`'s holds out of this one (the holds a run released).
    pub fn forget(&mut self, other: &Receipt) {
        for hold in &other.holds {
            self.holds.remove(hold);
        }
    }
}

/// The receipt on the host; an empty one when there is none. A receipt
/// whose entries the tool could not have written (a relative path, a
/// package or account name apt or useradd would not take, an option-like
/// `-name`) is refused: `remove` acts on what it lists.
pub fn load(host: &Host) -> Result<Receipt> {
    let unreadable = || {
        format!(
            "{PATH} is not a receipt runner-provision can read: move it away to start a new one"
        )
    };
    match host.files.read(PATH)? {
        None => Ok(Receipt::default()),
        Some(text) => {
            let receipt: Receipt = serde_json::from_str(&text).with_context(unreadable)?;
            receipt
                .check()
                .map_err(|why| anyhow::anyhow!("{why}"))
                .with_context(unreadable)?;
            Ok(receipt)
        }
    }
}

impl Receipt {
    /// Every entry is one the tool could have written.
    fn check(&self) -> Result<(), String> {
        let path = |p: &str| {
            p.starts_with('/')
                && !p.split('/').any(|c| c == ".." || c == ".")
                && !p.contains("//")
                && !p.chars().any(char::is_control)
        };
        // Debian policy 5.6.1: lowercase letters, digits, + - . ; two or
        // more, starting with a letter or digit.
        let package = |n: &str| {
            n.len() >= 2
                && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && n.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
        };
        let account = crate::profile::account_name;
        let plain =
            |t: &str| !t.is_empty() && !t.starts_with('-') && !t.chars().any(char::is_control);
        for (file, sha) in &self.files {
            if !path(file) {
                return Err(format!(
                    "file entry {file:?} is not an absolute, plain path"
                ));
            }
            if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(format!("file entry {file:?} has no SHA-256"));
            }
        }
        if let Some(p) = self
            .packages
            .iter()
            .chain(&self.holds)
            .find(|p| !package(p))
        {
            return Err(format!("package entry {p:?} is not a Debian package name"));
        }
        let names = self
            .accounts
            .iter()
            .chain(self.memberships.iter().flat_map(|m| [&m.user, &m.group]));
        if let Some(n) = names.into_iter().find(|n| !account(n)) {
            return Err(format!(
                "account or group entry {n:?} is not a user or group name"
            ));
        }
        if let Some(r) = self
            .runners
            .iter()
            .find(|r| !plain(&r.name) || !plain(&r.url))
        {
            return Err(format!(
                "runner entry {:?} is not a runner name and URL",
                r.name
            ));
        }
        for line in &self.module_lines {
            let module = !line.module.is_empty()
                && !line.module.starts_with('-')
                && line
                    .module
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c));
            if !path(&line.file) || !module {
                return Err(format!(
                    "module entry {:?} in {:?} is not a module name in a modules file",
                    line.module, line.file
                ));
            }
        }
        Ok(())
    }
}

/// Writes `receipt` (removes the file when it is empty); nothing when the
/// file already says the same.
pub fn store(host: &Host, receipt: &Receipt) -> Result<()> {
    if receipt.is_empty() {
        return host.files.remove(PATH);
    }
    let mut text = serde_json::to_string_pretty(receipt).context("rendering the receipt")?;
    text.push('\n');
    if host.files.read(PATH)?.as_deref() == Some(text.as_str()) {
        return Ok(());
    }
    host.files.create_dir("/var/lib/runner-provision", 0o700)?;
    host.files.write_atomic(PATH, text.as_bytes(), 0o600)
}

/// After an apply: the receipt with what this run created added, the files
/// it rewrote given their new checksum, the files it removed taken out.
pub fn record_run(host: &Host) -> Result<()> {
    let written = host.files.written();
    let noted = host.noted();
    let forgotten = host.forgotten();
    if written.created.is_empty()
        && written.removed.is_empty()
        && noted.is_empty()
        && forgotten.is_empty()
        && written.sha256.keys().all(|p| p == PATH)
    {
        return Ok(());
    }
    let mut receipt = load(host)?;
    let before = receipt.clone();
    receipt.merge(&noted);
    receipt.forget(&forgotten);
    for path in written.created.iter().filter(|p| *p != PATH) {
        if let Some(sha) = written.sha256.get(path) {
            receipt.files.insert(path.clone(), sha.clone());
        }
    }
    for (path, sha) in &written.sha256 {
        if let Some(kept) = receipt.files.get_mut(path) {
            kept.clone_from(sha);
        }
    }
    for path in &written.removed {
        receipt.files.remove(path);
    }
    if receipt != before {
        store(host, &receipt)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Format;
    use crate::steps::{Mode, Selection, run};
    use crate::testing::FakeHost;

    fn apply(fake: &FakeHost) {
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let counts = run(
            &host,
            &fake.settings(Some("GR1348941legacyTokenValue42")),
            &Selection::default(),
            Mode::Apply,
            &reporter,
        );
        assert_eq!(counts.failed, 0, "{}", reporter.captured());
        record_run(&host).expect("receipt");
    }

    #[test]
    fn an_apply_records_what_it_created_and_a_converged_one_nothing() {
        let fake = FakeHost::debian12();
        apply(&fake);
        let text = fake.read(PATH);
        let receipt: Receipt = serde_json::from_str(&text).expect("receipt");
        let daemon = fake.read("/etc/docker/daemon.json");
        assert_eq!(
            receipt.files.get("/etc/docker/daemon.json"),
            Some(&crate::host::files::sha256(daemon.as_bytes()))
        );
        assert!(receipt.packages.contains("docker.io"));
        assert!(receipt.memberships.contains(&Membership {
            user: "gitlab-runner".into(),
            group: "docker".into()
        }));
        assert_eq!(receipt.runners.len(), 1);
        assert!(!text.contains("legacyTokenValue"), "{text}");
        // /etc/modules existed: its line is recorded, the file is not.
        assert!(!receipt.files.contains_key("/etc/modules"));
        assert_eq!(receipt.module_lines.len(), 1);

        let before = fake.snapshot();
        apply(&fake);
        assert_eq!(
            fake.snapshot(),
            before,
            "a converged apply rewrote the receipt"
        );
    }

    #[test]
    fn a_file_created_and_removed_in_one_run_is_not_recorded() {
        let fake = FakeHost::debian12();
        let host = fake.offline_host(fake.reporter(Format::Json));
        host.files.create_dir("/usr/sbin", 0o755).expect("mkdir");
        host.files
            .write_atomic("/usr/sbin/policy-rc.d", b"exit 101\n", 0o755)
            .expect("write");
        host.files.remove("/usr/sbin/policy-rc.d").expect("remove");
        host.files
            .write_atomic("/etc/kept.conf", b"one\n", 0o644)
            .expect("write");
        host.files
            .write_atomic("/etc/kept.conf", b"two\n", 0o644)
            .expect("rewrite");
        let written = host.files.written();
        assert!(!written.created.contains("/usr/sbin/policy-rc.d"));
        assert!(!written.removed.contains("/usr/sbin/policy-rc.d"));
        assert!(written.created.contains("/etc/kept.conf"));
        assert_eq!(
            written.sha256.get("/etc/kept.conf"),
            Some(&crate::host::files::sha256(b"two\n"))
        );
        record_run(&host).expect("record");
        let receipt = load(&host).expect("load");
        assert_eq!(receipt.files.len(), 1, "{receipt:?}");
    }

    #[test]
    fn an_unreadable_receipt_is_an_error_that_says_what_to_do() {
        let fake = FakeHost::debian12();
        fake.write(PATH, "{\"files\": 3}");
        let host = fake.host(fake.reporter(Format::Json));
        let err = format!("{:#}", load(&host).expect_err("malformed"));
        assert!(err.contains("move it away"), "{err}");
    }

    #[test]
    fn a_receipt_listing_what_the_tool_never_writes_is_refused() {
        let sha = "0".repeat(64);
        for (entries, why) in [
            (format!(r#""files": {{"etc/x": "{sha}"}}"#), "plain path"),
            (
                format!(r#""files": {{"/etc/../shadow": "{sha}"}}"#),
                "plain path",
            ),
            (r#""files": {"/etc/x": "abc"}"#.to_string(), "SHA-256"),
            (
                r#""packages": ["--allow-remove-essential"]"#.to_string(),
                "package",
            ),
            (r#""packages": ["Docker.IO"]"#.to_string(), "package"),
            (r#""holds": ["-a"]"#.to_string(), "package"),
            (r#""accounts": ["-root"]"#.to_string(), "account"),
            (
                r#""memberships": [{"user": "gitlab-runner", "group": "a:b"}]"#.to_string(),
                "account",
            ),
            (
                r#""runners": [{"url": "https://g/", "name": "--all"}]"#.to_string(),
                "runner",
            ),
            (
                r#""module_lines": [{"file": "/etc/modules", "module": "overlay\nx"}]"#.to_string(),
                "module",
            ),
        ] {
            let fake = FakeHost::debian12();
            fake.write(PATH, &format!("{{{entries}}}"));
            let host = fake.host(fake.reporter(Format::Json));
            let err = format!("{:#}", load(&host).expect_err(&entries));
            assert!(
                err.contains(why) && err.contains("move it away"),
                "{entries}: {err}"
            );
        }
        let fake = FakeHost::debian12();
        apply(&fake);
        let host = fake.host(fake.reporter(Format::Json));
        let receipt = load(&host).expect("what apply writes is read back");
        assert!(!receipt.is_empty());
    }
}
