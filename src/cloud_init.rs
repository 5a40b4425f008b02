//! `cloud-init`: user data for a fleet's new machines, and forgetting the
//! token once it has been used.
//!
//! The rendered `#cloud-config` writes the resolved profile, the token (a
//! root-only file on /run, a tmpfs, so it never reaches the disk through
//! this file) and a per-boot script; cloud-init runs that script on every
//! boot, so the first boot provisions and registers and later boots re-check
//! cheaply. The token never appears on a command line: the script passes
//! `--token-file`, and `--forget-token` then deletes the file and overwrites
//! the token in cloud-init's own stored copies of the user data.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::host::Host;
use crate::profile::Profile;
use crate::secret::Token;
use crate::steps::Selection;

pub const TOKEN_PATH: &str = "/run/runner-provision/token";
pub const PROFILE_PATH: &str = "/etc/runner-provision/profile.toml";
pub const SCRIPT_PATH: &str = "/var/lib/cloud/scripts/per-boot/runner-provision";
pub const BINARY_PATH: &str = "/usr/local/bin/runner-provision";

/// Where cloud-init keeps copies of the user data.
const CLOUD_INIT_STATE: &[&str] = &["/var/lib/cloud/instances", "/run/cloud-init"];

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum PowerState {
    Poweroff,
    Reboot,
}

/// Where the new machine gets this tool from.
#[derive(Clone, Debug)]
pub enum Binary {
    Url {
        url: String,
        sha256: String,
    },
    /// Already on the machine (baked into the image, or on an attached disk).
    Path(String),
}

pub struct Options {
    pub binary: Binary,
    pub profile: Profile,
    pub token: Option<Token>,
    pub selection: Selection,
    pub power_state: Option<PowerState>,
}

/// Quotes a string for a POSIX shell.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A YAML double-quoted scalar; JSON's string syntax is valid YAML.
fn yaml_string(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

fn block(out: &mut String, text: &str) {
    out.push_str("    content: |\n");
    for line in text.lines() {
        if line.is_empty() {
            out.push('\n');
        } else {
            let _ = writeln!(out, "      {line}");
        }
    }
}

fn script(options: &Options) -> Result<String> {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Converge this host on every boot (rendered by `runner-provision cloud-init`).\n\
         set -eu\n",
    );
    let _ = writeln!(s, "bin={BINARY_PATH}");
    match &options.binary {
        Binary::Path(path) => {
            let _ = writeln!(s, "src={}", sh_quote(path));
            s.push_str("if ! cmp -s \"$src\" \"$bin\"; then\n  install -m 0755 \"$src\" \"$bin.new\"\n  mv \"$bin.new\" \"$bin\"\nfi\n");
        }
        Binary::Url { url, sha256 } => {
            if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                anyhow::bail!(
                    "--binary-sha256 must be 64 hexadecimal digits (the output of sha256sum)"
                );
            }
            let _ = writeln!(
                s,
                "url={}\nsha={}",
                sh_quote(url),
                sha256.to_ascii_lowercase()
            );
            s.push_str(
                "if ! echo \"$sha  $bin\" | sha256sum -c --status - 2>/dev/null; then\n  \
                 if command -v curl >/dev/null; then curl -fsSL --retry 5 -o \"$bin.new\" \"$url\"; else wget -q -O \"$bin.new\" \"$url\"; fi\n  \
                 echo \"$sha  $bin.new\" | sha256sum -c --quiet -\n  \
                 chmod 0755 \"$bin.new\"\n  \
                 mv \"$bin.new\" \"$bin\"\nfi\n",
            );
        }
    }
    let mut args = format!("--profile {PROFILE_PATH} apply --yes");
    if !options.selection.only.is_empty() {
        let _ = write!(
            args,
            " --only {}",
            options
                .selection
                .only
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    if !options.selection.skip.is_empty() {
        let _ = write!(
            args,
            " --skip {}",
            options
                .selection
                .skip
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    // Every boot scrubs: cloud-init re-reads the seed (or the metadata
    // service) on boots after the first and writes its copies anew.
    let _ = writeln!(s, "token={TOKEN_PATH}");
    let _ = writeln!(
        s,
        "if [ -f \"$token\" ]; then\n  exec \"$bin\" {args} --token-file \"$token\" --forget-token\nfi"
    );
    let _ = writeln!(s, "exec \"$bin\" {args} --forget-token");
    Ok(s)
}

/// The `#cloud-config` document.
pub fn render(options: &Options) -> Result<String> {
    let profile = toml::to_string(&options.profile).context("rendering the profile")?;
    let mut out = String::from("#cloud-config\n");
    let _ = writeln!(
        out,
        "# runner-provision {}: installs runner-provision and runs `apply` on every boot.",
        env!("CARGO_PKG_VERSION")
    );
    if options.token.is_some() {
        out.push_str("# This document holds the runner token: keep it as secret as the token.\n");
    }
    out.push_str("write_files:\n");
    let _ = writeln!(
        out,
        "  - path: {PROFILE_PATH}\n    owner: root:root\n    permissions: \"0644\""
    );
    block(&mut out, &profile);
    if let Some(token) = &options.token {
        let _ = writeln!(
            out,
            "  - path: {TOKEN_PATH}\n    owner: root:root\n    permissions: \"0600\"\n    content: {}",
            yaml_string(token.expose())
        );
    }
    let _ = writeln!(
        out,
        "  - path: {SCRIPT_PATH}\n    owner: root:root\n    permissions: \"0755\""
    );
    block(&mut out, &script(options)?);
    if let Some(state) = options.power_state {
        let mode = match state {
            PowerState::Poweroff => "poweroff",
            PowerState::Reboot => "reboot",
        };
        let _ = writeln!(
            out,
            "power_state:\n  mode: {mode}\n  message: {}\n  timeout: 30\n  condition: true",
            yaml_string("runner-provision: cloud-init finished")
        );
    }
    Ok(out)
}

/// `text` with every occurrence of `secret` overwritten by `x`s of the same
/// length (so length-prefixed formats such as cloud-init's pickle stay
/// valid); `None` when it does not occur.
pub fn scrub(text: &[u8], secret: &[u8]) -> Option<Vec<u8>> {
    if secret.is_empty() || text.len() < secret.len() {
        return None;
    }
    let mut out = text.to_vec();
    let mut found = false;
    let mut i = 0;
    while i + secret.len() <= out.len() {
        if &out[i..i + secret.len()] == secret {
            out[i..i + secret.len()].fill(b'x');
            found = true;
            i += secret.len();
        } else {
            i += 1;
        }
    }
    found.then_some(out)
}

/// cloud-init's verbatim copy of the user data of the current instance.
const USER_DATA_COPY: &str = "/var/lib/cloud/instance/user-data.txt";

/// The token in user data that [`render`] wrote: the `content` of the
/// write_files entry for [`TOKEN_PATH`]. `None` when there is none, or when
/// it was already overwritten.
pub fn token_in_user_data(text: &str) -> Option<String> {
    let entry = format!("  - path: {TOKEN_PATH}");
    let value = text
        .lines()
        .skip_while(|l| *l != entry)
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim_start().strip_prefix("content: "))?;
    let token: String = serde_json::from_str(value).ok()?;
    (!token.is_empty() && !token.chars().all(|c| c == 'x')).then_some(token)
}

/// Deletes the token file, if any, and overwrites the token in
/// cloud-init's stored copies of the user data; returns the files it
/// rewrote. Without `token`, the value is taken from cloud-init's copy of
/// the user data: on boots after the first the token file on /run is gone,
/// but cloud-init has read the seed again and written its copies anew.
pub fn forget_token(
    host: &Host,
    token: Option<&Token>,
    token_file: Option<&Path>,
) -> Result<Vec<String>> {
    let value = match token {
        Some(token) => Some(token.expose().to_string()),
        None => host
            .files
            .read(USER_DATA_COPY)?
            .as_deref()
            .and_then(token_in_user_data),
    };
    let mut cleaned = Vec::new();
    if let Some(value) = value {
        host.redactor().add_token(&value);
        for dir in CLOUD_INIT_STATE {
            for file in host.files.walk(dir)? {
                let Some(bytes) = host.files.read_bytes(&file)? else {
                    continue;
                };
                if let Some(new) = scrub(&bytes, value.as_bytes()) {
                    host.files.write_atomic(&file, &new, 0o600)?;
                    cleaned.push(file);
                }
            }
        }
    }
    if let Some(path) = token_file {
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                return Err(e).with_context(|| format!("removing {}", path.display()));
            }
            _ => {}
        }
    }
    Ok(cleaned)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(binary: Binary, token: Option<&str>) -> Options {
        Options {
            binary,
            profile: Profile::default(),
            token: token.map(|t| Token::new(t).expect("token")),
            selection: Selection::default(),
            power_state: Some(PowerState::Poweroff),
        }
    }

    #[test]
    fn token_is_in_write_files_only_never_in_the_script() {
        let text = render(&options(
            Binary::Path("/mnt/payload/runner-provision".into()),
            Some("GR1348941secretvalue"),
        ))
        .expect("render");
        assert!(text.starts_with("#cloud-config\n"));
        assert_eq!(text.matches("GR1348941secretvalue").count(), 1, "{text}");
        let token_entry = text.find(TOKEN_PATH).expect("token file");
        let script_entry = text.find(SCRIPT_PATH).expect("script");
        let token_at = text.find("GR1348941secretvalue").expect("token");
        assert!(token_entry < token_at && token_at < script_entry, "{text}");
        assert!(
            text.contains("--token-file \"$token\" --forget-token"),
            "{text}"
        );
        assert_eq!(
            token_in_user_data(&text).as_deref(),
            Some("GR1348941secretvalue")
        );
        let scrubbed = scrub(text.as_bytes(), b"GR1348941secretvalue").expect("found");
        let scrubbed = String::from_utf8(scrubbed).expect("utf8");
        assert_eq!(
            token_in_user_data(&scrubbed),
            None,
            "an overwritten token is no token"
        );
        assert!(text.contains("permissions: \"0600\""), "{text}");
        assert!(text.contains("power_state:\n  mode: poweroff"), "{text}");
    }

    #[test]
    fn without_a_token_no_token_file() {
        let text = render(&options(Binary::Path("/opt/rp".into()), None)).expect("render");
        assert!(
            !text.contains("path: /run/runner-provision/token"),
            "{text}"
        );
        assert_eq!(token_in_user_data(&text), None);
        assert!(text.contains("exec \"$bin\" --profile /etc/runner-provision/profile.toml apply --yes --forget-token"), "{text}");
    }

    #[test]
    fn url_binary_is_checked_against_its_sha256() {
        let sha = "a".repeat(64);
        let text = render(&options(
            Binary::Url {
                url: "https://example.com/rp".into(),
                sha256: sha.clone(),
            },
            None,
        ))
        .expect("render");
        assert!(text.contains(&format!("sha={sha}")), "{text}");
        assert!(text.contains("sha256sum -c"), "{text}");
        let bad = render(&options(
            Binary::Url {
                url: "https://example.com/rp".into(),
                sha256: "123".into(),
            },
            None,
        ));
        assert!(bad.is_err());
    }

    #[test]
    fn profile_is_embedded_and_parses_back() {
        let text = render(&options(Binary::Path("/opt/rp".into()), None)).expect("render");
        let start = text.find("    content: |\n").expect("content") + "    content: |\n".len();
        let end = text[start..].find("  - path:").expect("next entry") + start;
        let profile: String = text[start..end]
            .lines()
            .map(|l| format!("{}\n", l.strip_prefix("      ").unwrap_or(l)))
            .collect();
        assert_eq!(
            Profile::parse(&profile, "rendered").expect("parses"),
            Profile::default()
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(sh_quote("/mnt/my disk/it's"), r"'/mnt/my disk/it'\''s'");
    }

    #[test]
    fn scrub_overwrites_every_occurrence_keeping_length() {
        let text = b"a: glrt-sec.ret123\nb: glrt-sec.ret123";
        let out = scrub(text, b"glrt-sec.ret123").expect("found");
        assert_eq!(out.len(), text.len());
        assert_eq!(out, b"a: xxxxxxxxxxxxxxx\nb: xxxxxxxxxxxxxxx".to_vec());
        assert_eq!(scrub(b"nothing here", b"glrt-sec.ret123"), None);
    }

    #[test]
    fn forgetting_finds_the_token_in_cloud_inits_copy_on_later_boots() {
        let fake = crate::testing::FakeHost::debian12();
        let token = "GR1348941laterBootToken";
        let text = render(&options(Binary::Path("/opt/rp".into()), Some(token))).expect("render");
        fake.write("/var/lib/cloud/instances/i-1/user-data.txt", &text);
        fake.write(
            "/var/lib/cloud/instances/i-1/obj.pkl",
            &format!("\u{1}pickle{token}\u{0}"),
        );
        fake.write(
            "/run/cloud-init/combined-cloud-config.json",
            &format!("{{\"content\": \"{token}\"}}"),
        );
        fake.write(
            "/var/lib/cloud/instances/i-1/boot-finished",
            "no secret here",
        );
        std::os::unix::fs::symlink("instances/i-1", fake.root().join("var/lib/cloud/instance"))
            .expect("symlink");
        let pickle = fake.root().join("var/lib/cloud/instances/i-1/obj.pkl");
        let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o400);
        std::fs::set_permissions(&pickle, read_only).expect("chmod");
        let host = fake.host(fake.reporter(crate::report::Format::Json));

        let cleaned = forget_token(&host, None, None).expect("forget");
        assert_eq!(
            cleaned,
            vec![
                "/var/lib/cloud/instances/i-1/obj.pkl",
                "/var/lib/cloud/instances/i-1/user-data.txt",
                "/run/cloud-init/combined-cloud-config.json"
            ]
        );
        for file in &cleaned {
            assert!(!fake.read(file).contains(token), "{file}");
        }
        assert_eq!(
            fake.read("/var/lib/cloud/instances/i-1/obj.pkl").len(),
            token.len() + 8,
            "length kept"
        );
        let mode = std::fs::metadata(&pickle).expect("stat").permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o400,
            "mode kept"
        );
        assert_eq!(
            forget_token(&host, None, None).expect("again"),
            Vec::<String>::new(),
            "nothing left to forget"
        );
    }
}
