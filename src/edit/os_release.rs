//! `/etc/os-release` (os-release(5)): which distribution this is and whether
//! runner-provision supports it; and the kernel release string. No I/O.

/// The fields of os-release that decide support; a missing key is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OsRelease {
    pub id: String,
    pub id_like: Vec<String>,
    pub version_id: String,
    pub version_codename: String,
    pub pretty_name: String,
}

const SUPPORTED: &[(&str, &[&str])] = &[
    ("debian", &["11", "12", "13"]),
    ("ubuntu", &["20.04", "22.04", "24.04"]),
];

impl OsRelease {
    /// Debian, Ubuntu, or a distribution that says it is like one of them.
    pub fn is_apt_based(&self) -> bool {
        std::iter::once(&self.id)
            .chain(&self.id_like)
            .any(|id| id == "debian" || id == "ubuntu")
    }

    /// `Ok` for the releases runner-provision is tested on; otherwise the
    /// message to show.
    pub fn supported(&self) -> Result<(), String> {
        let known = SUPPORTED
            .iter()
            .any(|(id, versions)| self.id == *id && versions.contains(&self.version_id.as_str()));
        if known {
            return Ok(());
        }
        let name = if !self.pretty_name.is_empty() {
            self.pretty_name.clone()
        } else if !self.id.is_empty() {
            format!("{} {}", self.id, self.version_id)
                .trim_end()
                .to_owned()
        } else {
            "this operating system".to_owned()
        };
        Err(format!(
            "{name} is not supported yet: runner-provision supports Debian 11-13 and Ubuntu 20.04-24.04"
        ))
    }
}

/// Parses os-release's shell-style `KEY=value` lines: values may be "double"
/// or 'single' quoted, with backslash escapes; comments, blank lines and
/// unknown keys are ignored.
pub fn parse(text: &str) -> OsRelease {
    let mut os = OsRelease::default();
    for line in text.lines() {
        let line = line.trim();
        if line.starts_with('#') {
            continue;
        }
        let Some((key, raw)) = line.split_once('=') else {
            continue;
        };
        let value = unquote(raw);
        match key.trim() {
            "ID" => os.id = value,
            "ID_LIKE" => os.id_like = value.split_whitespace().map(str::to_owned).collect(),
            "VERSION_ID" => os.version_id = value,
            "VERSION_CODENAME" => os.version_codename = value,
            "PRETTY_NAME" => os.pretty_name = value,
            _ => {}
        }
    }
    os
}

/// One shell word: quotes removed, escapes resolved; stops at unquoted
/// whitespace (anything after it, such as a comment, is not the value).
fn unquote(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.extend(chars.by_ref().take_while(|&c| c != '\'')),
            '"' => {
                while let Some(c) = chars.next() {
                    match c {
                        '"' => break,
                        // In double quotes a backslash escapes only these.
                        '\\' => match chars.next() {
                            Some(e @ ('"' | '\\' | '$' | '`')) => out.push(e),
                            Some(e) => {
                                out.push('\\');
                                out.push(e);
                            }
                            None => out.push('\\'),
                        },
                        c => out.push(c),
                    }
                }
            }
            '\\' => out.extend(chars.next()),
            c if c.is_whitespace() => break,
            c => out.push(c),
        }
    }
    out
}

/// `(major, minor)` of a kernel release such as `6.1.0-18-amd64` or
/// `3.10.0-1160.el7.x86_64` (what `uname -r` prints); `None` for anything
/// that does not start with two dot-separated numbers.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.trim().splitn(3, '.');
    let major = parts.next()?;
    let minor = parts.next()?;
    let minor =
        &minor[..minor.len() - minor.trim_start_matches(|c: char| c.is_ascii_digit()).len()];
    if !major.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((major.parse().ok()?, minor.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEBIAN_12: &str = r#"PRETTY_NAME="Debian GNU/Linux 12 (bookworm)"
NAME="Debian GNU/Linux"
VERSION_ID="12"
VERSION="12 (bookworm)"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL="https://www.debian.org/"
SUPPORT_URL="https://www.debian.org/support"
BUG_REPORT_URL="https://bugs.debian.org/"
"#;

    const UBUNTU_24_04: &str = r#"PRETTY_NAME="Ubuntu 24.04.1 LTS"
NAME="Ubuntu"
VERSION_ID="24.04"
VERSION="24.04.1 LTS (Noble Numbat)"
VERSION_CODENAME=noble
ID=ubuntu
ID_LIKE=debian
HOME_URL="https://www.ubuntu.com/"
SUPPORT_URL="https://help.ubuntu.com/"
BUG_REPORT_URL="https://bugs.launchpad.net/ubuntu/"
PRIVACY_POLICY_URL="https://www.ubuntu.com/legal/terms-and-policies/privacy-policy"
UBUNTU_CODENAME=noble
LOGO=ubuntu-logo
"#;

    const FEDORA_41: &str = r#"NAME="Fedora Linux"
VERSION="41 (Server Edition)"
RELEASE_TYPE=stable
ID=fedora
VERSION_ID=41
VERSION_CODENAME=""
PLATFORM_ID="platform:f41"
PRETTY_NAME="Fedora Linux 41 (Server Edition)"
ANSI_COLOR="0;38;2;60;110;180"
LOGO=fedora-logo-icon
CPE_NAME="cpe:/o:fedoraproject:fedora:41"
DEFAULT_HOSTNAME="fedora"
"#;

    fn os(id: &str, id_like: &[&str], version_id: &str, codename: &str, pretty: &str) -> OsRelease {
        OsRelease {
            id: id.to_owned(),
            id_like: id_like.iter().map(|s| s.to_string()).collect(),
            version_id: version_id.to_owned(),
            version_codename: codename.to_owned(),
            pretty_name: pretty.to_owned(),
        }
    }

    #[test]
    fn parse_cases() {
        let cases: &[(&str, &str, OsRelease)] = &[
            (
                "Debian 12",
                DEBIAN_12,
                os(
                    "debian",
                    &[],
                    "12",
                    "bookworm",
                    "Debian GNU/Linux 12 (bookworm)",
                ),
            ),
            (
                "Ubuntu 24.04",
                UBUNTU_24_04,
                os(
                    "ubuntu",
                    &["debian"],
                    "24.04",
                    "noble",
                    "Ubuntu 24.04.1 LTS",
                ),
            ),
            (
                "Fedora 41",
                FEDORA_41,
                os("fedora", &[], "41", "", "Fedora Linux 41 (Server Edition)"),
            ),
            ("empty", "", OsRelease::default()),
            (
                "comments, blanks, single quotes, several ID_LIKE",
                "# written by hand\n\nID='linuxmint'\n  ID_LIKE=\"ubuntu debian\"\n",
                os("linuxmint", &["ubuntu", "debian"], "", "", ""),
            ),
            (
                "escapes",
                r#"PRETTY_NAME="A \"quoted\" \$name \\ \n"
VERSION_CODENAME=with\ space"#,
                os("", &[], "", "with space", r#"A "quoted" $name \ \n"#),
            ),
            (
                "a comment after an unquoted value",
                "ID=debian # really\nVERSION_ID=\"13\" # trixie\n",
                os("debian", &[], "13", "", ""),
            ),
            (
                "lines without = and unterminated quotes",
                "garbage\nID=\"debian\nVERSION_ID='11\n",
                os("debian", &[], "11", "", ""),
            ),
        ];
        for (name, text, expected) in cases {
            assert_eq!(parse(text), *expected, "case {name:?}");
        }
    }

    #[test]
    fn supported_cases() {
        let unsupported = |name: &str| {
            Err(format!(
                "{name} is not supported yet: runner-provision supports Debian 11-13 and Ubuntu 20.04-24.04"
            ))
        };
        let cases: &[(OsRelease, Result<(), String>)] = &[
            (parse(DEBIAN_12), Ok(())),
            (parse(UBUNTU_24_04), Ok(())),
            (os("debian", &[], "11", "bullseye", ""), Ok(())),
            (os("debian", &[], "13", "trixie", ""), Ok(())),
            (os("ubuntu", &["debian"], "20.04", "focal", ""), Ok(())),
            (os("ubuntu", &["debian"], "22.04", "jammy", ""), Ok(())),
            (
                parse(FEDORA_41),
                unsupported("Fedora Linux 41 (Server Edition)"),
            ),
            (
                os(
                    "debian",
                    &[],
                    "10",
                    "buster",
                    "Debian GNU/Linux 10 (buster)",
                ),
                unsupported("Debian GNU/Linux 10 (buster)"),
            ),
            (
                os("debian", &[], "", "forky", "Debian GNU/Linux forky/sid"),
                unsupported("Debian GNU/Linux forky/sid"),
            ),
            (
                os("ubuntu", &["debian"], "24.10", "oracular", ""),
                unsupported("ubuntu 24.10"),
            ),
            (
                os("linuxmint", &["ubuntu"], "22", "", ""),
                unsupported("linuxmint 22"),
            ),
            (OsRelease::default(), unsupported("this operating system")),
        ];
        for (os, expected) in cases {
            assert_eq!(os.supported(), *expected, "{os:?}");
        }
    }

    #[test]
    fn is_apt_based_cases() {
        let cases: &[(&str, bool)] = &[
            (DEBIAN_12, true),
            (UBUNTU_24_04, true),
            ("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n", true),
            ("ID=raspbian\nID_LIKE=debian\n", true),
            (FEDORA_41, false),
            ("ID=rocky\nID_LIKE=\"rhel centos fedora\"\n", false),
            ("", false),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).is_apt_based(), *expected, "{text:?}");
        }
    }

    #[test]
    fn kernel_version_cases() {
        let cases: &[(&str, Option<(u32, u32)>)] = &[
            ("6.18.44-fc-v669", Some((6, 18))),
            ("5.10.0-28-amd64", Some((5, 10))),
            ("4.2", Some((4, 2))),
            ("3.10.0-1160.el7.x86_64", Some((3, 10))),
            ("6.1.0-18-cloud-amd64\n", Some((6, 1))),
            ("6.8-rc1", Some((6, 8))),
            ("6", None),
            ("6.", None),
            ("+6.1", None),
            ("Linux", None),
            ("", None),
            ("99999999999.1", None),
        ];
        for (release, expected) in cases {
            assert_eq!(kernel_version(release), *expected, "{release:?}");
        }
    }
}
