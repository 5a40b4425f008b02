//! dpkg's database, `/var/lib/dpkg/status`: deb822 stanzas separated by blank
//! lines, one per package (per architecture). No I/O.
//!
//! The file is a few megabytes on a full host: this scans it once, borrowing
//! lines, and allocates only for the answer.

/// What dpkg records of one package: its `Status:` and `Version:` values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub status: String,
    pub version: Option<String>,
}

/// The `Status:` and `Version:` of `package`. With several stanzas for the
/// name (multiarch) an installed one wins, else the first.
pub fn entry(text: &str, package: &str) -> Option<Entry> {
    let mut found: Option<(&str, Option<&str>)> = None;
    let mut is_package = false;
    let mut stanza_status: Option<&str> = None;
    let mut stanza_version: Option<&str> = None;
    // A trailing empty line closes the last stanza.
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if let Some(status) = stanza_status.filter(|_| is_package) {
                if state_is_installed(status) {
                    found = Some((status, stanza_version));
                    break;
                }
                found.get_or_insert((status, stanza_version));
            }
            is_package = false;
            stanza_status = None;
            stanza_version = None;
        } else if let Some(name) = field(line, "Package") {
            is_package = name == package;
        } else if let Some(status) = field(line, "Status") {
            stanza_status = Some(status);
        } else if let Some(version) = field(line, "Version") {
            stanza_version = Some(version);
        }
    }
    found.map(|(status, version)| Entry {
        status: status.to_owned(),
        version: version.map(str::to_owned),
    })
}

/// The `Status:` value (`want flag state`, e.g. `install ok installed`) of
/// `package`. With several stanzas for the name (multiarch) an installed one
/// wins, else the first.
pub fn status(text: &str, package: &str) -> Option<String> {
    entry(text, package).map(|e| e.status)
}

/// The version of `package` when it is installed.
pub fn installed_version(text: &str, package: &str) -> Option<String> {
    entry(text, package)
        .filter(|e| state_is_installed(&e.status))
        .and_then(|e| e.version)
}

/// Whether `package` is held (`apt-mark hold`: dpkg's selection `hold`):
/// apt then upgrades it only when told to change held packages.
pub fn held(text: &str, package: &str) -> bool {
    entry(text, package).is_some_and(|e| e.status.split_whitespace().next() == Some("hold"))
}

/// Whether `package` is installed: its state is `installed`, whatever is
/// wanted of it (`install ok installed`, `hold ok installed`). Removed with
/// config files left (`deinstall ok config-files`), half-installed and
/// unpacked packages are not.
pub fn installed(text: &str, package: &str) -> bool {
    status(text, package).is_some_and(|s| state_is_installed(&s))
}

fn state_is_installed(status: &str) -> bool {
    let mut words = status.split_whitespace();
    let (_want, flag, state) = (words.next(), words.next(), words.next());
    flag == Some("ok") && state == Some("installed")
}

/// The value of `name: value` when `line` is that field.
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    line.strip_prefix(name)?.strip_prefix(':').map(str::trim)
}

/// Does some package sit in a state that only a killed dpkg run leaves
/// (`half-installed`, `half-configured`, `unpacked`, `triggers-awaited`)?
pub fn interrupted(text: &str) -> bool {
    text.lines().any(|line| {
        line.strip_prefix("Status:").is_some_and(|status| {
            matches!(
                status.split_whitespace().last(),
                Some("half-installed" | "half-configured" | "unpacked" | "triggers-awaited")
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An excerpt of a Debian 12 host's status file.
    const STATUS: &str = "\
Package: ca-certificates
Status: install ok installed
Priority: optional
Section: misc
Installed-Size: 384
Maintainer: Julien Cristau <jcristau@debian.org>
Architecture: all
Multi-Arch: foreign
Version: 20230311
Depends: openssl (>= 1.1.1), debconf (>= 0.5) | debconf-2.0
Conffiles:
 /etc/ca-certificates.conf 2d2ff0f1cb2a5cf7e2ac1a5b3d3c2d7e
Description: Common CA certificates
 Contains the certificate authorities shipped with Mozilla's browser to allow
 SSL-based applications to check for the authenticity of SSL connections.
 .
 Please note that Debian can neither confirm nor deny whether the

Package: docker.io
Status: install ok installed
Priority: optional
Section: admin
Installed-Size: 126434
Maintainer: Debian Go Packaging Team <team+pkg-go@tracker.debian.org>
Architecture: amd64
Source: docker.io (20.10.24+dfsg1-1)
Version: 20.10.24+dfsg1-1+b3
Depends: adduser, containerd (>= 1.4~), iptables, runc (>= 1.0.0~rc2~), tini (>= 0.19.0), libc6 (>= 2.34)
Description: Linux container runtime
 Docker complements kernel namespacing with a high-level API which operates at
 the process level.

Package: docker-ce
Status: deinstall ok config-files
Priority: optional
Section: admin
Installed-Size: 97042
Maintainer: Docker <support@docker.com>
Architecture: amd64
Version: 5:27.3.1-1~debian.12~bookworm
Conffiles:
 /etc/default/docker 2b8a86e1b1c8e9e1e5a3d0bd9b5b7b53
Description: Docker: the open-source application container engine

Package: libc6
Status: install ok installed
Architecture: i386
Multi-Arch: same
Version: 2.36-9+deb12u9

Package: libc6
Status: hold ok installed
Architecture: amd64
Multi-Arch: same
Version: 2.36-9+deb12u9

Package: containerd
Status: install reinstreq half-installed
Architecture: amd64
Version: 1.6.20~ds1-1+b1

Package: runc
Status: install ok unpacked
Architecture: amd64
Version: 1.1.5+ds1-1+deb12u1

Package: tini
Version: 0.19.0-1
Status: install ok installed
Architecture: amd64
Description: tiny but valid init for containers";

    #[test]
    fn cases() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            // (package, status, installed)
            ("docker.io", Some("install ok installed"), true),
            ("docker-ce", Some("deinstall ok config-files"), false),
            ("ca-certificates", Some("install ok installed"), true),
            ("libc6", Some("install ok installed"), true),
            (
                "containerd",
                Some("install reinstreq half-installed"),
                false,
            ),
            ("runc", Some("install ok unpacked"), false),
            // Status after Package but not right after it; last stanza
            // without a final newline.
            ("tini", Some("install ok installed"), true),
            ("gitlab-runner", None, false),
            ("docker", None, false),
            // A field value is not a package name.
            ("Docker", None, false),
        ];
        for (package, status_value, is_installed) in cases {
            assert_eq!(
                status(STATUS, package).as_deref(),
                *status_value,
                "{package}"
            );
            assert_eq!(installed(STATUS, package), *is_installed, "{package}");
        }
    }

    #[test]
    fn versions_and_holds() {
        let cases: &[(&str, Option<&str>, bool)] = &[
            // (package, installed version, held)
            ("docker.io", Some("20.10.24+dfsg1-1+b3"), false),
            // Removed, config files kept: no installed version.
            ("docker-ce", None, false),
            // Multiarch: the installed stanza's version, the held one's
            // selection is not the one that counts.
            ("libc6", Some("2.36-9+deb12u9"), false),
            ("runc", None, false),
            // Version before Status in the stanza.
            ("tini", Some("0.19.0-1"), false),
            ("gitlab-runner", None, false),
        ];
        for (package, version, is_held) in cases {
            assert_eq!(
                installed_version(STATUS, package).as_deref(),
                *version,
                "{package}"
            );
            assert_eq!(held(STATUS, package), *is_held, "{package}");
        }
        let text = "Package: gitlab-runner\nStatus: hold ok installed\nVersion: 17.7.0-1\n\nPackage: gitlab-runner-helper-images\nVersion: 17.7.0-1\nStatus: install ok installed\n";
        assert!(held(text, "gitlab-runner"));
        assert!(!held(text, "gitlab-runner-helper-images"));
        assert_eq!(
            installed_version(text, "gitlab-runner-helper-images").as_deref(),
            Some("17.7.0-1")
        );
        // A stanza without a version (damaged file) has none to report.
        assert_eq!(
            installed_version("Package: p\nStatus: install ok installed\n", "p"),
            None
        );
    }

    #[test]
    fn want_does_not_matter_only_state() {
        let cases: &[(&str, bool)] = &[
            ("install ok installed", true),
            ("hold ok installed", true),
            ("deinstall ok installed", true),
            ("install ok config-files", false),
            ("install reinstreq installed", false),
            ("install ok", false),
            ("", false),
        ];
        for (status_value, expected) in cases {
            let text = format!("Package: p\nStatus: {status_value}\n");
            assert_eq!(installed(&text, "p"), *expected, "{status_value:?}");
        }
    }

    #[test]
    fn fast_on_a_full_status_file() {
        // About 3 MB, the package asked for last.
        let mut text = String::new();
        for i in 0..6000 {
            text.push_str(&format!("Package: pkg{i}\nStatus: install ok installed\n"));
            for _ in 0..10 {
                text.push_str(" A long description line, continued as dpkg writes it, padded.\n");
            }
            text.push('\n');
        }
        text.push_str("Package: docker.io\nStatus: install ok installed\n");
        assert!(text.len() > 3_000_000);
        let start = std::time::Instant::now();
        for _ in 0..10 {
            assert!(installed(&text, "docker.io"));
            assert!(!installed(&text, "docker-ce"));
        }
        // Generous for an unoptimized test build; a per-line allocation or a
        // quadratic scan would be far slower.
        assert!(start.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn interrupted_states() {
        let cases = [
            ("Package: a\nStatus: install ok installed\n", false),
            ("Package: a\nStatus: deinstall ok config-files\n", false),
            ("Package: a\nStatus: install ok unpacked\n", true),
            (
                "Package: a\nStatus: install reinstreq half-installed\n",
                true,
            ),
            ("Package: a\nStatus: install ok half-configured\n", true),
            ("Package: a\nStatus: install ok triggers-awaited\n", true),
            ("", false),
        ];
        for (text, expected) in cases {
            assert_eq!(interrupted(text), expected, "{text:?}");
        }
    }
}
