//! An apt repository as a deb822 `.sources` file plus its signing key in
//! /etc/apt/keyrings, the way GitLab's and Docker's install guides set them up.

use anyhow::{Context, Result};

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
}
