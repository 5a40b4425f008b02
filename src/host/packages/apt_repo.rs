//! An apt repository as a deb822 `.sources` file plus its signing key in
//! /etc/apt/keyrings, the way GitLab's and Docker's install guides set them up,
//! unless a source already on the host defines it (any file, either format):
//! that one is used as it is, or edited in place, never doubled.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Source;
use super::apt::{apt_refresh, apt_update};
use crate::change::Change;
use crate::edit::apt_entries::{self, Decision};
use crate::edit::{apt_source, diff, openpgp};
use crate::host::Host;
use crate::profile::Repository;

const SOURCES_LIST: &str = "/etc/apt/sources.list";
const SOURCES_PARTS: &str = "/etc/apt/sources.list.d";

/// Rounds of the repository probe (each tries InRelease, then Release).
const PROBE_ROUNDS: u32 = 3;

pub struct AptRepo {
    /// File name stem: `gitlab-runner` → gitlab-runner.sources / gitlab-runner.asc.
    pub name: &'static str,
    pub repository: Repository,
}

impl AptRepo {
    pub fn of(source: &Source) -> Self {
        Self {
            name: source.name,
            repository: source.repository.clone(),
        }
    }

    pub fn sources_path(&self) -> String {
        format!("/etc/apt/sources.list.d/{}.sources", self.name)
    }

    fn key_path(&self) -> String {
        format!("/etc/apt/keyrings/{}.asc", self.name)
    }

    /// The .sources file as it should be on this host.
    pub fn render(&self, host: &Host) -> String {
        let os = &host.os.release;
        let fill = |s: &str| {
            s.replace("{id}", &os.id)
                .replace("{codename}", &os.version_codename)
        };
        let trusted = self.repository.key_url.is_empty();
        apt_source::deb822(&apt_source::AptSource {
            types: "deb".to_string(),
            uris: fill(&self.repository.uri),
            suites: fill(&self.repository.suite),
            components: fill(&self.repository.components),
            signed_by: (!trusted).then(|| self.key_path()),
            trusted,
            architectures: None,
        })
    }

    /// `{id}` and `{codename}` filled in from /etc/os-release.
    fn fill(&self, host: &Host, text: &str) -> String {
        let os = &host.os.release;
        text.replace("{id}", &os.id)
            .replace("{codename}", &os.version_codename)
    }

    /// Every file apt reads sources from, in apt's order.
    fn source_files(host: &Host) -> Result<Vec<apt_entries::SourceFile>> {
        let mut paths = vec![SOURCES_LIST.to_string()];
        for name in host.files.list(SOURCES_PARTS)? {
            paths.push(format!("{SOURCES_PARTS}/{name}"));
        }
        let mut files = Vec::new();
        for path in paths {
            if apt_entries::Format::of(&path).is_none() || host.files.is_dir(&path) {
                continue;
            }
            if let Some(text) = host.files.read(&path)? {
                files.push(apt_entries::SourceFile { path, text });
            }
        }
        Ok(files)
    }

    /// How the host gets this repository: an entry already there (used as
    /// it is, or its suite edited in place), or the tool's own file.
    fn decision(&self, host: &Host) -> Result<Decision> {
        let uri = self.fill(host, &self.repository.uri);
        let suite = self.fill(host, &self.repository.suite);
        let components = self.fill(host, &self.repository.components);
        let wanted = apt_entries::Wanted {
            uri: &uri,
            suite: &suite,
            components: &components,
        };
        let files = Self::source_files(host)?;
        apt_entries::decide(&files, &wanted, &self.sources_path()).map_err(Into::into)
    }

    /// The keyring files the source in use names, or the tool's own key.
    fn keyrings(&self, decision: &Decision) -> Vec<String> {
        match decision {
            Decision::Use { keyrings, .. } | Decision::Edit { keyrings, .. } => keyrings.clone(),
            Decision::Write if self.repository.key_url.is_empty() => Vec::new(),
            Decision::Write => vec![self.key_path()],
        }
    }

    /// What would change: the source file (with a diff), a missing key, and
    /// the tool's own earlier file when another now defines the repository.
    pub fn changes(&self, host: &Host) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        let decision = self.decision(host)?;
        match &decision {
            Decision::Use { .. } => {}
            Decision::Edit { path, text, .. } => {
                let current = host.files.read(path)?.unwrap_or_default();
                changes.push(Change::file(
                    format!(
                        "set the suite of the existing apt source {path} to {} (edited in place)",
                        self.fill(host, &self.repository.suite)
                    ),
                    diff::unified(path, &current, text),
                ));
            }
            Decision::Write => {
                let path = self.sources_path();
                let current = host.files.read(&path)?.unwrap_or_default();
                let wanted = self.render(host);
                if current != wanted {
                    changes.push(Change::file(
                        format!("write apt source {path}"),
                        diff::unified(&path, &current, &wanted),
                    ));
                }
            }
        }
        if let Some(own) = self.own_to_remove(host, &decision)? {
            changes.push(Change::file(
                format!(
                    "remove {}: {} already defines the repository (two definitions break apt-get update)",
                    self.sources_path(),
                    decision_path(&decision)
                ),
                diff::unified(&self.sources_path(), &own, ""),
            ));
        }
        if !self.repository.key_url.is_empty() {
            for keyring in self.keyrings(&decision) {
                if !host.files.exists(&keyring) {
                    changes.push(Change::new(format!(
                        "download the signing key {} to {keyring}",
                        self.key_url(host)
                    )));
                } else if let Some(expired) = self.expired(host, &keyring)? {
                    changes.push(Change::new(format!(
                        "download the signing key {} to {keyring} again: the key there expired on {} (apt would refuse the repository with EXPKEYSIG)",
                        self.key_url(host),
                        openpgp::date(expired)
                    )));
                }
            }
        }
        Ok(changes)
    }

    /// When every key in `keyring` has expired, the latest expiry. A keyring
    /// whose expiry cannot be read (another key format, damaged) is not
    /// judged here: apt-get update says what is wrong with it.
    fn expired(&self, host: &Host, keyring: &str) -> Result<Option<u64>> {
        let Some(bytes) = host.files.read_bytes(keyring)? else {
            return Ok(None);
        };
        let Ok(keys) = openpgp::keys(&bytes, keyring) else {
            return Ok(None);
        };
        Ok(openpgp::all_expired(&keys, host.unix_time())
            .then(|| keys.iter().filter_map(|k| k.expires).max())
            .flatten())
    }

    fn key_url(&self, host: &Host) -> String {
        self.fill(host, &self.repository.key_url)
    }

    /// The text of the tool's own source when it is to be removed.
    fn own_to_remove(&self, host: &Host, decision: &Decision) -> Result<Option<String>> {
        match decision {
            Decision::Use {
                remove_own: true, ..
            }
            | Decision::Edit {
                remove_own: true, ..
            } => host.files.read(&self.sources_path()),
            _ => Ok(None),
        }
    }

    /// Writes what `changes` listed; returns what it did.
    fn apply(&self, host: &Host, decision: &Decision, step: &str) -> Result<Vec<String>> {
        let mut done = Vec::new();
        if !self.repository.key_url.is_empty() {
            for keyring in self.keyrings(decision) {
                if !host.files.exists(&keyring) {
                    self.fetch_key(host, &keyring)?;
                    done.push(format!("added signing key {keyring}"));
                } else if self.expired(host, &keyring)?.is_some() {
                    host.warn(
                        step,
                        &format!(
                            "the signing key {keyring} has expired: downloading it again from {}",
                            self.key_url(host)
                        ),
                    );
                    self.fetch_key(host, &keyring)?;
                    done.push(format!("refreshed the expired signing key {keyring}"));
                }
            }
        }
        if self.own_to_remove(host, decision)?.is_some() {
            host.files.remove(&self.sources_path())?;
            done.push(format!(
                "removed {}: {} defines the repository",
                self.sources_path(),
                decision_path(decision)
            ));
        }
        match decision {
            Decision::Use { .. } => {}
            Decision::Edit { path, text, .. } => {
                host.files
                    .write_atomic(path, text.as_bytes(), 0o644)
                    .with_context(|| format!("editing the apt source {path}"))?;
                done.push(format!(
                    "set the suite of {path} to {}",
                    self.fill(host, &self.repository.suite)
                ));
            }
            Decision::Write => {
                let path = self.sources_path();
                let wanted = self.render(host);
                if host.files.read(&path)?.as_deref() != Some(wanted.as_str()) {
                    host.files.create_dir(SOURCES_PARTS, 0o755)?;
                    host.files
                        .write_atomic(&path, wanted.as_bytes(), 0o644)
                        .with_context(|| format!("adding the apt source {path}"))?;
                    done.push(format!("wrote apt source {path}"));
                }
            }
        }
        Ok(done)
    }

    /// Downloads the key from `key_url` into `keyring`: as it comes (ASCII
    /// armour) for `.asc`, de-armoured for any other name (apt reads a
    /// binary keyring there, as `gpg --dearmor` writes it).
    fn fetch_key(&self, host: &Host, keyring: &str) -> Result<()> {
        let url = self.key_url(host);
        host.progress(&format!("downloading {url}"));
        let key = host.fetch(&url)?;
        let text = String::from_utf8_lossy(&key);
        let bytes = if keyring.ends_with(".asc") {
            if !text.contains("BEGIN PGP PUBLIC KEY BLOCK") {
                bail!("{url} is not an ASCII-armoured PGP public key; check the profile's key_url");
            }
            key.clone()
        } else {
            openpgp::dearmor(&text).with_context(|| {
                format!(
                    "{url} is not an ASCII-armoured PGP public key; check the profile's key_url"
                )
            })?
        };
        if let Some(dir) = keyring
            .rsplit_once('/')
            .map(|(d, _)| d)
            .filter(|d| !d.is_empty())
        {
            host.files.create_dir(dir, 0o755)?;
        }
        host.files.write_atomic(keyring, &bytes, 0o644)
    }

    /// Checks, before anything changes, that the repository answers: its
    /// `InRelease` or `Release` file is there.
    pub fn probe(&self, host: &Host) -> Result<()> {
        let os = &host.os.release;
        let fill = |s: &str| {
            s.replace("{id}", &os.id)
                .replace("{codename}", &os.version_codename)
        };
        let uri = fill(&self.repository.uri);
        let suite = fill(&self.repository.suite);
        let base = uri.trim_end_matches('/');
        let dir = if suite.ends_with('/') {
            format!("{base}/{}", suite.trim_end_matches('/'))
        } else {
            format!("{base}/dists/{suite}")
        };
        let candidates = [format!("{dir}/InRelease"), format!("{dir}/Release")];
        if let Some(path) = base
            .strip_prefix("file://")
            .or_else(|| base.strip_prefix("file:"))
        {
            let local = |c: &str| c.replacen(base, path, 1);
            if candidates.iter().any(|c| host.files.exists(&local(c))) {
                return Ok(());
            }
            bail!(
                "the apt repository {uri} (suite {suite}) has no Release file at {}",
                local(&candidates[1])
            );
        }
        // A repository behind a proxy or CDN that is restarting answers
        // 5xx or refuses for a moment: a few rounds with backoff (2, 4 s),
        // bounded; a 404 for both files is an answer, not an outage.
        let mut last = None;
        let mut wait = Duration::from_secs(2);
        for round in 1..=PROBE_ROUNDS {
            for candidate in &candidates {
                match host.reachable(candidate, Duration::from_secs(15)) {
                    Ok(()) => return Ok(()),
                    Err(e) => last = Some(e),
                }
            }
            let answered = last
                .as_ref()
                .is_some_and(|e| format!("{e:#}").contains("status: 404"));
            if answered || round == PROBE_ROUNDS {
                break;
            }
            host.sleep(wait);
            wait *= 2;
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no candidate URL"))
            .context(format!(
                "the apt repository {uri} (suite {suite}) cannot be reached"
            )))
    }
}

/// Makes every repository in `repos` available and updates apt's lists
/// once: from the one source file that serves a single repository (when
/// the lists are fresh), or all of them. When the update fails for a
/// repository's key (`EXPKEYSIG`, `NO_PUBKEY`: the key expired or was
/// rotated), downloads the keys again from their `key_url`, says so, and
/// retries once. When it still fails, every file this changed is put back
/// as it was (a source the tool added is removed), so an unreachable
/// repository does not break every later `apt-get update`. Returns what it
/// did, one list per repository.
pub fn add_and_refresh_all(host: &Host, step: &str, repos: &[AptRepo]) -> Result<Vec<Vec<String>>> {
    let mut before = Vec::new();
    let mut planned = Vec::new();
    for repo in repos {
        let decision = repo.decision(host)?;
        let keyrings = repo.keyrings(&decision);
        let mut touched: Vec<String> = vec![repo.sources_path()];
        if let Decision::Edit { path, .. } = &decision {
            touched.push(path.clone());
        }
        touched.extend(keyrings.iter().cloned());
        for path in touched {
            let bytes = host.files.read_bytes(&path)?;
            before.push((path, bytes));
        }
        planned.push((decision, keyrings));
    }
    let put_back = |e: anyhow::Error, what: &str| -> Result<Vec<Vec<String>>> {
        for (path, bytes) in &before {
            match bytes {
                Some(bytes) => host.files.write_atomic(path, bytes, 0o644)?,
                None if host.files.exists(path) => host.files.remove(path)?,
                None => {}
            }
        }
        Err(e.context(format!(
            "updating apt's lists with {what} (files put back as they were)"
        )))
    };
    let mut done = Vec::new();
    for (repo, (decision, _)) in repos.iter().zip(&planned) {
        match repo.apply(host, decision, step) {
            Ok(did) => done.push(did),
            Err(e) => return put_back(e, &repo.sources_path()),
        }
    }
    // One repository: an update of the file that serves it is enough when
    // the lists are fresh. Several: one update of everything.
    let serving = match (repos, planned.first()) {
        ([repo], Some((decision, _))) => Some(match decision {
            Decision::Write => repo.sources_path(),
            other => decision_path(other).to_string(),
        }),
        _ => None,
    };
    let what = serving
        .clone()
        .unwrap_or_else(|| "every source".to_string());
    let update = |host: &Host| -> Result<Option<crate::host::command::Output>> {
        match &serving {
            Some(path) => apt_refresh(host, step, Some(path)),
            None => apt_update(host, step, None).map(Some).map_err(Into::into),
        }
    };
    // A failed update, or one that kept the old lists because the
    // signature no longer verifies (a warning, exit 0): the key's fault?
    let refused = |result: &Result<Option<crate::host::command::Output>>| match result {
        Err(e) => key_problem(&format!("{e:#}")),
        Ok(Some(out)) => key_problem(&out.stderr) || key_problem(&out.stdout),
        Ok(None) => false,
    };
    let mut result = update(host);
    let refreshable: Vec<(usize, &AptRepo, &Vec<String>)> = repos
        .iter()
        .zip(&planned)
        .enumerate()
        .filter(|(_, (repo, (_, keyrings)))| {
            !repo.repository.key_url.is_empty() && !keyrings.is_empty()
        })
        .map(|(i, (repo, (_, keyrings)))| (i, repo, keyrings))
        .collect();
    if refused(&result) && !refreshable.is_empty() {
        for (i, repo, keyrings) in &refreshable {
            host.warn(
                step,
                &format!(
                    "apt does not accept the signing key of {} (expired or replaced): downloading it again from {} into {} and retrying once",
                    repo.fill(host, &repo.repository.uri),
                    repo.key_url(host),
                    keyrings.join(", ")
                ),
            );
            for keyring in *keyrings {
                if let Err(e) = repo.fetch_key(host, keyring) {
                    return put_back(e, &what);
                }
                done[*i].push(format!("refreshed the signing key {keyring}"));
            }
        }
        result = match &serving {
            Some(path) => apt_update(host, step, Some(path))
                .map(Some)
                .map_err(Into::into),
            None => apt_update(host, step, None).map(Some).map_err(Into::into),
        };
    }
    if let Ok(Some(out)) = &result {
        if refused(&result) {
            // apt goes on with its old lists of the repository: an
            // install from them would be stale or fail later.
            let uris: Vec<String> = repos
                .iter()
                .map(|r| r.fill(host, &r.repository.uri))
                .collect();
            result = Err(anyhow::anyhow!(
                "apt does not accept the signing key of {}: {}",
                uris.join(" or "),
                out.stderr.trim()
            ));
        }
    }
    if let Err(e) = result {
        return put_back(e, &what);
    }
    Ok(done)
}

/// apt-get update's words for a signature made by a key the keyring lacks
/// or holds expired: gpgv's status codes (Debian 12 and older, Ubuntu) and
/// sqv's messages (Debian 13's apt).
fn key_problem(message: &str) -> bool {
    [
        "EXPKEYSIG",
        "NO_PUBKEY",
        "KEYEXPIRED",
        "Missing key",
        "OpenPGP signature verification failed",
    ]
    .iter()
    .any(|word| message.contains(word))
}

/// The source file a decision keeps or edits.
fn decision_path(decision: &Decision) -> &str {
    match decision {
        Decision::Use { path, .. } | Decision::Edit { path, .. } => path,
        Decision::Write => "",
    }
}

#[cfg(test)]
mod tests {
    use super::key_problem;

    #[test]
    fn key_problems_in_apt_get_updates_words() {
        let cases = [
            (
                "W: GPG error: https://packages.gitlab.com/runner/gitlab-runner/debian bookworm InRelease: The following signatures were invalid: EXPKEYSIG 3F01618A51312F3F GitLab B.V. (package repository signing key) <packages@gitlab.com>",
                true,
            ),
            (
                "W: GPG error: file:/srv/docker bookworm InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 7EA0A9C3F273FCD8",
                true,
            ),
            (
                "W: OpenPGP signature verification failed: file:/srv/docker trixie InRelease: Sub-process /usr/bin/sqv returned an error code (1), error message is: Missing key 9DC858229FC7DD38854AE2D88D81803C0EBFCD88, which is needed to verify signature.",
                true,
            ),
            (
                "E: Failed to fetch https://packages.gitlab.com/runner/gitlab-runner/debian/dists/bookworm/InRelease  Could not resolve 'packages.gitlab.com'",
                false,
            ),
            ("E: Conflicting values set for option Signed-By", false),
        ];
        for (message, expected) in cases {
            assert_eq!(key_problem(message), expected, "{message}");
        }
    }
}
