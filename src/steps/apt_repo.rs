//! An apt repository as a deb822 `.sources` file plus its signing key in
//! /etc/apt/keyrings, the way GitLab's and Docker's install guides set them up.

use std::time::Duration;

use anyhow::{Context, Result, bail};

use super::Change;
use crate::edit::{apt_source, diff};
use crate::host::Host;
use crate::profile::Repository;

pub struct AptRepo {
    /// File name stem: `gitlab-runner` → gitlab-runner.sources / gitlab-runner.asc.
    pub name: &'static str,
    pub repository: Repository,
}

impl AptRepo {
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

    /// What would change: the source file (with a diff) and a missing key.
    pub fn changes(&self, host: &Host) -> Result<Vec<Change>> {
        let mut changes = Vec::new();
        let path = self.sources_path();
        let current = host.files.read(&path)?.unwrap_or_default();
        let wanted = self.render(host);
        if current != wanted {
            changes.push(Change::file(
                format!("write apt source {path}"),
                diff::unified(&path, &current, &wanted),
            ));
        }
        if !self.repository.key_url.is_empty() && !host.files.exists(&self.key_path()) {
            changes.push(Change::new(format!(
                "download the signing key {} to {}",
                self.repository.key_url,
                self.key_path()
            )));
        }
        Ok(changes)
    }

    /// Writes key and source; returns what it did.
    pub fn apply(&self, host: &Host) -> Result<Vec<String>> {
        let mut done = Vec::new();
        if !self.repository.key_url.is_empty() && !host.files.exists(&self.key_path()) {
            host.progress(&format!("downloading {}", self.repository.key_url));
            let key = host.fetch(&self.repository.key_url)?;
            if !String::from_utf8_lossy(&key).contains("BEGIN PGP PUBLIC KEY BLOCK") {
                anyhow::bail!(
                    "{} is not an ASCII-armoured PGP public key; check [runner.repository] key_url",
                    self.repository.key_url
                );
            }
            host.files.create_dir("/etc/apt/keyrings", 0o755)?;
            host.files.write_atomic(&self.key_path(), &key, 0o644)?;
            done.push(format!("added signing key {}", self.key_path()));
        }
        let path = self.sources_path();
        let wanted = self.render(host);
        if host.files.read(&path)?.as_deref() != Some(wanted.as_str()) {
            host.files.create_dir("/etc/apt/sources.list.d", 0o755)?;
            host.files
                .write_atomic(&path, wanted.as_bytes(), 0o644)
                .with_context(|| format!("adding the apt source {path}"))?;
            done.push(format!("wrote apt source {path}"));
        }
        Ok(done)
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
        let mut last = None;
        for candidate in &candidates {
            match host.reachable(candidate, Duration::from_secs(15)) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| anyhow::anyhow!("no candidate URL"))
            .context(format!(
                "the apt repository {uri} (suite {suite}) cannot be reached"
            )))
    }

    /// Writes key and source and updates apt's lists; when the update fails,
    /// puts the source back as it was, so that an unreachable repository
    /// does not break every later `apt-get update` on the host.
    pub fn add_and_refresh(&self, host: &Host, step: &str) -> Result<Vec<String>> {
        let path = self.sources_path();
        let before = host.files.read(&path)?;
        let key_before = host.files.exists(&self.key_path());
        let done = self.apply(host)?;
        if let Err(e) = host.apt_refresh(step, Some(&path)) {
            match &before {
                Some(text) => host.files.write_atomic(&path, text.as_bytes(), 0o644)?,
                None => host.files.remove(&path)?,
            }
            if !key_before {
                host.files.remove(&self.key_path())?;
            }
            return Err(e.context(format!("updating apt's lists with {path} (removed again)")));
        }
        Ok(done)
    }
}
