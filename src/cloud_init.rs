//! `cloud-init`: user data for a fleet's new machines, and forgetting the
//! token once it has been used.
//!
//! The rendered `#cloud-config` writes the resolved profile, the token (a
//! root-only file on /run, a tmpfs) and a per-boot script; cloud-init runs
//! that script on every boot, so the first boot provisions and registers and
//! later boots re-check cheaply. The token never appears on a command line:
//! the script passes `--token-file`. `--forget-token` forgets the token only
//! once the runner is registered (deletes the file and overwrites the token
//! in cloud-init's stored copies of the user data); until then it keeps a
//! root-only copy under /var/lib/runner-provision, so a boot that failed
//! (GitLab down, apt unreachable) is retried with the token on the next one.
//!
//! The document is built as a tree and written by [`yaml`], never pasted
//! together from values.

mod scrub;
pub mod yaml;

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use crate::host::Host;
use crate::host::command::shell_quote;
use crate::profile::Profile;
use crate::secret::Token;
use crate::steps::Selection;

pub const TOKEN_PATH: &str = "/run/runner-provision/token";
pub const PROFILE_PATH: &str = "/etc/runner-provision/profile.toml";
pub const SCRIPT_PATH: &str = "/var/lib/cloud/scripts/per-boot/runner-provision";
pub const BINARY_PATH: &str = "/usr/local/bin/runner-provision";
/// The token kept across boots until the runner is registered (root only).
pub const KEPT_TOKEN_PATH: &str = "/var/lib/runner-provision/token";
const KEPT_TOKEN_DIR: &str = "/var/lib/runner-provision";

/// Where cloud-init keeps copies of the user data (its seed copies, the
/// instance folders, the pickled datasource, instance-data JSON).
const CLOUD_INIT_STATE: &[&str] = &["/var/lib/cloud", "/run/cloud-init"];

/// Files larger than this under cloud-init's folders are reported, not read.
const MAX_STATE_FILE: u64 = 64 << 20;

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

/// Attempts and time limits of every download the per-boot script makes:
/// a stalled or refusing server ends the boot's attempt, never hangs it
/// (`cloud-final` has no timeout of its own, so `power_state` would never
/// fire).
const FETCH_ATTEMPTS: u32 = 6;
const FETCH_CONNECT_SECS: u32 = 10;
const FETCH_ATTEMPT_SECS: u32 = 300;
const FETCH_TOTAL_SECS: u32 = 900;

/// The shell function `fetch URL FILE`: curl, else wget, else python3, each
/// with bounded attempts and backoff; prints why on the final failure.
fn fetch_function() -> String {
    format!(
        r#"fetch() {{
  if command -v curl >/dev/null 2>&1; then
    curl -fsSL --connect-timeout {FETCH_CONNECT_SECS} --max-time {FETCH_ATTEMPT_SECS} \
      --retry {retries} --retry-connrefused --retry-max-time {FETCH_TOTAL_SECS} -o "$2" "$1"
  elif command -v wget >/dev/null 2>&1; then
    timeout {FETCH_TOTAL_SECS} wget -nv --tries={FETCH_ATTEMPTS} --waitretry=30 --timeout={FETCH_CONNECT_SECS} \
      --retry-connrefused --retry-on-http-error=429,500,502,503,504 -O "$2" "$1"
  elif command -v python3 >/dev/null 2>&1; then
    timeout {FETCH_TOTAL_SECS} python3 - "$1" "$2" <<'PY'
import sys, time, urllib.error, urllib.request
url, out = sys.argv[1], sys.argv[2]
delay = 1
for attempt in range(1, {FETCH_ATTEMPTS} + 1):
    try:
        deadline = time.monotonic() + {FETCH_ATTEMPT_SECS}
        with urllib.request.urlopen(url, timeout={FETCH_CONNECT_SECS}) as r, open(out, "wb") as f:
            while True:
                if time.monotonic() > deadline:
                    raise TimeoutError("took longer than {FETCH_ATTEMPT_SECS} s")
                chunk = r.read(65536)
                if not chunk:
                    sys.exit(0)
                f.write(chunk)
    except urllib.error.HTTPError as e:
        print("attempt %d of {FETCH_ATTEMPTS}: %s" % (attempt, e), file=sys.stderr)
        if e.code < 500 and e.code not in (408, 429):
            sys.exit(1)
        if attempt < {FETCH_ATTEMPTS}:
            time.sleep(delay)
            delay *= 2
    except Exception as e:
        print("attempt %d of {FETCH_ATTEMPTS}: %s" % (attempt, e), file=sys.stderr)
        if attempt < {FETCH_ATTEMPTS}:
            time.sleep(delay)
            delay *= 2
sys.exit(1)
PY
  else
    echo "neither curl, wget nor python3 is installed" >&2
    return 1
  fi
}}
"#,
        retries = FETCH_ATTEMPTS - 1,
    )
}

fn script(options: &Options) -> Result<String> {
    let mut s = String::from(
        "#!/bin/sh\n\
         # Converge this host on every boot (rendered by `runner-provision cloud-init`).\n\
         set -eu\n\
         fail() { echo \"runner-provision per-boot: $*\" >&2; exit 1; }\n",
    );
    let _ = writeln!(s, "bin={BINARY_PATH}");
    match &options.binary {
        Binary::Path(path) => {
            let _ = writeln!(s, "src={}", shell_quote(path));
            s.push_str(
                "[ -f \"$src\" ] || fail \"$src is missing: the binary must be on the machine (baked into the image or on an attached disk)\"\n\
                 if ! cmp -s \"$src\" \"$bin\"; then\n  install -m 0755 \"$src\" \"$bin.new\"\n  mv \"$bin.new\" \"$bin\"\nfi\n",
            );
        }
        Binary::Url { url, sha256 } => {
            let _ = writeln!(
                s,
                "url={}\nsha={}",
                shell_quote(url),
                sha256.to_ascii_lowercase()
            );
            if !options.profile.network.http_proxy.is_empty()
                || !options.profile.network.https_proxy.is_empty()
            {
                // The download goes through [network]'s proxy: its variables,
                // read from the root-only file (never sourced: a URL may hold
                // characters a shell would act on).
                let _ = writeln!(
                    s,
                    "while IFS='=' read -r k v; do
  case $k in
    HTTP_PROXY|HTTPS_PROXY|NO_PROXY|http_proxy|https_proxy|no_proxy) export \"$k=$v\" ;;
  esac
done < {}",
                    crate::steps::network::ENV_FILE
                );
            }
            s.push_str(&fetch_function());
            let _ = write!(
                s,
                "if ! echo \"$sha  $bin\" | sha256sum -c --status - 2>/dev/null; then\n  \
                 rm -f \"$bin.new\"\n  \
                 fetch \"$url\" \"$bin.new\" || fail \"could not download $url ({FETCH_ATTEMPTS} attempts): check that this machine reaches it, then reboot or run $0\"\n  \
                 echo \"$sha  $bin.new\" | sha256sum -c --status - || fail \"$url is not the binary whose SHA-256 is $sha: publish that binary or render again with its --binary-sha256\"\n  \
                 chmod 0755 \"$bin.new\"\n  \
                 mv \"$bin.new\" \"$bin\"\nfi\n",
            );
        }
    }
    let mut args = format!("--profile {PROFILE_PATH} apply --yes");
    for (flag, ids) in [
        ("--only", &options.selection.only),
        ("--skip", &options.selection.skip),
    ] {
        if !ids.is_empty() {
            let ids: Vec<&str> = ids.iter().map(|id| id.as_str()).collect();
            let _ = write!(args, " {flag} {}", ids.join(","));
        }
    }
    // The first boot's token is on /run; a boot that ended unregistered
    // kept a copy under /var/lib for the next. Every boot scrubs:
    // cloud-init re-reads the seed (or the metadata service) on boots after
    // the first and writes its copies anew.
    let _ = writeln!(
        s,
        "for token in {TOKEN_PATH} {KEPT_TOKEN_PATH}; do\n  if [ -f \"$token\" ]; then\n    exec \"$bin\" {args} --token-file \"$token\" --forget-token\n  fi\ndone\nexec \"$bin\" {args} --forget-token"
    );
    Ok(s)
}

/// Refuses, naming the fix, what would render fine and fail on every boot.
pub fn check(options: &Options) -> Result<()> {
    match &options.binary {
        Binary::Url { url, sha256 } => {
            crate::profile::check_url("--binary-url", url)?;
            if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
                anyhow::bail!(
                    "--binary-sha256 must be 64 hexadecimal digits (the output of sha256sum)"
                );
            }
        }
        Binary::Path(path) => {
            if !path.starts_with('/') || path.contains(['\n', '\r', '\0']) {
                anyhow::bail!(
                    "--binary-path `{}` is not an absolute path: give the binary's path on the new machine, such as /mnt/payload/runner-provision",
                    path.escape_debug()
                );
            }
        }
    }
    let selection = &options.selection;
    let profile = &options.profile;
    if !profile.runners.is_empty() {
        // The user data carries one token, and forgetting it after
        // registration knows one file; several are not rendered yet.
        anyhow::bail!(
            "the profile lists its runners in [[runners]]: cloud-init user data is rendered for the single [runner] profile only (one token); use a profile with [runner], or deliver each runner's token_file to the machine yourself and run `runner-provision apply` there"
        );
    }
    if selection.includes(crate::steps::StepId::DockerGroup) && !profile.docker.accept_group_risk {
        return Err(crate::Error::DockerGroupRiskNotAccepted {
            members: profile.docker.group_members.join(", "),
        }
        .into());
    }
    let registers = selection.includes(crate::steps::StepId::RunnerRegister);
    if let Some(token) = &options.token {
        if registers && token.is_authentication_token() && !profile.runner.tags.is_empty() {
            return Err(crate::Error::TagsWithAuthToken.into());
        }
    }
    if profile.runner.require_registration && !registers {
        anyhow::bail!(
            "registration is required but runner-register is not among the steps: drop it from --skip (or add it to --only), or set require_registration = false"
        );
    }
    // The prune timer looks the tool up on the standard path only: a
    // binary elsewhere would make every boot's apply refuse the schedule.
    if let Binary::Path(path) = &options.binary {
        let dir = path.rsplit_once('/').map_or("", |(dir, _)| dir);
        let on_path = crate::edit::prune_schedule::SEARCH_PATH
            .split(':')
            .any(|d| d == dir)
            && path.ends_with("/runner-provision");
        if profile.prune.schedule != crate::profile::PruneSchedule::Off
            && selection.includes(crate::steps::StepId::PruneSchedule)
            && !on_path
        {
            anyhow::bail!(
                "[prune] schedule runs `runner-provision` from /usr/local/sbin, /usr/local/bin, /usr/sbin or /usr/bin, and --binary-path `{}` is elsewhere: bake the binary in as /usr/local/bin/runner-provision, use --binary-url (it installs there), or set [prune] schedule = \"off\"",
                path.escape_debug()
            );
        }
    }
    Ok(())
}

/// The user data as a tree: what [`render`] writes.
pub fn document(options: &Options) -> Result<Vec<(&'static str, yaml::Node)>> {
    use yaml::Node;
    check(options)?;
    let mut profile = options.profile.clone();
    // A machine given a token must end registered, or its boot is an error.
    if options.token.is_some() {
        profile.runner.require_registration = true;
    }
    let profile = toml::to_string(&profile).context("rendering the profile")?;
    let file = |path: &str, mode: &str, content: String| {
        Node::Map(vec![
            ("path", Node::str(path)),
            ("owner", Node::str("root:root")),
            ("permissions", Node::str(mode)),
            ("content", Node::Str(content)),
        ])
    };
    // A proxy password makes the profile as secret as the token.
    let network = &options.profile.network;
    let profile_mode = if network.credentials().is_empty() {
        "0644"
    } else {
        "0600"
    };
    let mut files = vec![file(PROFILE_PATH, profile_mode, profile)];
    // The network step's environment file, byte for byte as it writes it,
    // so that the first boot's download already goes through the proxy.
    let proxy = crate::steps::network::proxy_of(network);
    if !proxy.is_empty() {
        files.push(file(
            crate::steps::network::ENV_FILE,
            "0600",
            crate::edit::network::environment_file(&proxy),
        ));
    }
    if let Some(token) = &options.token {
        files.push(file(TOKEN_PATH, "0600", token.expose().to_string()));
    }
    files.push(file(SCRIPT_PATH, "0755", script(options)?));
    let mut doc = vec![("write_files", Node::Seq(files))];
    if !proxy.is_empty() {
        // cloud-init's own apt runs (package_update, packages) use it too.
        let mut apt = Vec::new();
        if !proxy.http.is_empty() {
            apt.push(("http_proxy", Node::str(proxy.http.clone())));
        }
        if !proxy.https.is_empty() {
            apt.push(("https_proxy", Node::str(proxy.https.clone())));
        }
        doc.push(("apt", Node::Map(apt)));
    }
    if let Some(state) = options.power_state {
        let mode = match state {
            PowerState::Poweroff => "poweroff",
            PowerState::Reboot => "reboot",
        };
        doc.push((
            "power_state",
            Node::Map(vec![
                ("mode", Node::str(mode)),
                (
                    "message",
                    Node::str("runner-provision: cloud-init finished"),
                ),
                ("timeout", Node::Int(30)),
                ("condition", Node::Bool(true)),
            ]),
        ));
    }
    Ok(doc)
}

/// The `#cloud-config` document.
pub fn render(options: &Options) -> Result<String> {
    let doc = document(options)?;
    let mut header = String::from("#cloud-config\n");
    let _ = writeln!(
        header,
        "# runner-provision {}: installs runner-provision and runs `apply` on every boot.",
        env!("CARGO_PKG_VERSION")
    );
    if options.token.is_some() {
        header
            .push_str("# This document holds the runner token: keep it as secret as the token.\n");
    }
    Ok(yaml::to_string(&header, &doc))
}

/// cloud-init's verbatim copy of the user data of the current instance.
const USER_DATA_COPY: &str = "/var/lib/cloud/instance/user-data.txt";

/// The token in user data that [`render`] wrote: the `content` of the
/// write_files entry for [`TOKEN_PATH`], also when the user data is gzipped
/// or a MIME multipart message (7bit or base64 parts). `None` when there is
/// none, or when it was already overwritten.
pub fn token_in_user_data(bytes: &[u8]) -> Option<String> {
    if bytes.starts_with(&[0x1f, 0x8b]) {
        return token_in_user_data(&scrub::gunzip(bytes).ok()?);
    }
    let text = String::from_utf8_lossy(bytes);
    if let Some(token) = token_in_text(&text) {
        return Some(token);
    }
    // Base64 MIME parts: each body runs from the blank line after its
    // headers to the next boundary line.
    let mut found = None;
    for part in text.split("\n--").skip(1) {
        let Some((headers, body)) = part
            .split_once("\n\n")
            .or_else(|| part.split_once("\r\n\r\n"))
        else {
            continue;
        };
        if !headers
            .to_ascii_lowercase()
            .contains("content-transfer-encoding: base64")
        {
            continue;
        }
        let encoded: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        use base64::Engine as _;
        if let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded) {
            found = found.or_else(|| token_in_user_data(&decoded));
        }
    }
    found
}

fn token_in_text(text: &str) -> Option<String> {
    let entry = format!("- path: {TOKEN_PATH}");
    let value = text
        .lines()
        .skip_while(|l| l.trim() != entry)
        .skip(1)
        .take_while(|l| l.starts_with("    "))
        .find_map(|l| l.trim_start().strip_prefix("content: "))?;
    let token = yaml::parse_scalar(value.trim_end())?;
    (!token.is_empty() && !token.chars().all(|c| c == 'x')).then_some(token)
}

/// What `apply --forget-token` did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Forgotten {
    /// Files in which the token was overwritten or which were removed.
    pub cleaned: Vec<String>,
    /// Files that hold the token where it cannot be overwritten safely,
    /// with the reason.
    pub unsafe_files: Vec<(String, String)>,
    /// The token was kept for the next boot (the runner is not registered).
    pub kept: bool,
}

/// After an apply with `--forget-token`: once the runner is registered
/// (`registered`: runner-register ended ok or changed), deletes the token
/// file and the kept copy and overwrites the token in cloud-init's stored
/// copies of the user data. Until then, keeps a root-only copy at
/// [`KEPT_TOKEN_PATH`] so the next boot retries with it: cloud-init writes
/// the token file only on an instance's first boot, and /run is emptied at
/// every reboot. Without `token`, the value is taken from cloud-init's copy
/// of the user data: on boots after the first the token file on /run is
/// gone, but cloud-init has read the seed again and written its copies anew.
pub fn forget_token(
    host: &Host,
    token: Option<&Token>,
    token_file: Option<&Path>,
    registered: bool,
) -> Result<Forgotten> {
    let mut done = Forgotten::default();
    if !registered {
        if let Some(token) = token {
            let kept = host.files.resolve(KEPT_TOKEN_PATH);
            if token_file != Some(kept.as_path()) {
                host.files.create_dir(KEPT_TOKEN_DIR, 0o700)?;
                host.files.write_atomic(
                    KEPT_TOKEN_PATH,
                    format!("{}\n", token.expose()).as_bytes(),
                    0o600,
                )?;
            }
            done.kept = true;
        }
        return Ok(done);
    }
    let value = match token {
        Some(token) => Some(token.expose().to_string()),
        None => host
            .files
            .read_bytes(USER_DATA_COPY)?
            .as_deref()
            .and_then(token_in_user_data),
    };
    if let Some(value) = value {
        host.redactor().add_token(&value);
        for dir in CLOUD_INIT_STATE {
            for file in host.files.walk(dir)? {
                let size = std::fs::metadata(host.files.resolve(&file)).map_or(0, |m| m.len());
                if size > MAX_STATE_FILE {
                    done.unsafe_files.push((
                        file,
                        format!("it is larger than {MAX_STATE_FILE} bytes and was not checked"),
                    ));
                    continue;
                }
                let Some(bytes) = host.files.read_bytes(&file)? else {
                    continue;
                };
                match scrub::scrub(&file, &bytes, value.as_bytes()) {
                    scrub::Verdict::Clean => {}
                    scrub::Verdict::Rewrite(new) => {
                        host.files.write_atomic(&file, &new, 0o600)?;
                        done.cleaned.push(file);
                    }
                    scrub::Verdict::Remove(_) => {
                        host.files.remove(&file)?;
                        done.cleaned.push(file);
                    }
                    scrub::Verdict::Unsafe(reason) => done.unsafe_files.push((file, reason)),
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
    host.files.remove(KEPT_TOKEN_PATH)?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::steps::StepId;

    fn options(binary: Binary, token: Option<&str>) -> Options {
        let mut profile = Profile::default();
        profile.docker.accept_group_risk = true;
        Options {
            binary,
            profile,
            token: token.map(|t| Token::new(t).expect("token")),
            selection: Selection::default(),
            power_state: Some(PowerState::Poweroff),
        }
    }

    #[test]
    fn a_prune_schedule_needs_the_binary_where_the_timer_looks() {
        let mut elsewhere = options(Binary::Path("/mnt/payload/runner-provision".into()), None);
        elsewhere.profile.prune.schedule = crate::profile::PruneSchedule::Daily;
        let err = format!("{:#}", check(&elsewhere).expect_err("refused"));
        assert!(
            err.contains("/mnt/payload/runner-provision") && err.contains("--binary-url"),
            "{err}"
        );
        for binary in [
            Binary::Path("/usr/local/bin/runner-provision".into()),
            Binary::Path("/usr/bin/runner-provision".into()),
            url("https://example.com/runner-provision"),
        ] {
            let mut ok = options(binary, None);
            ok.profile.prune.schedule = crate::profile::PruneSchedule::Daily;
            check(&ok).expect("on the path");
        }
        elsewhere.profile.prune.schedule = crate::profile::PruneSchedule::Off;
        check(&elsewhere).expect("no schedule");
    }

    fn url(url: &str) -> Binary {
        Binary::Url {
            url: url.into(),
            sha256: "a".repeat(64),
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
        assert!(text.contains("require_registration = true"), "{text}");
        assert_eq!(
            token_in_user_data(text.as_bytes()).as_deref(),
            Some("GR1348941secretvalue")
        );
        let scrubbed = match scrub::scrub("u", text.as_bytes(), b"GR1348941secretvalue") {
            scrub::Verdict::Rewrite(new) => new,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            token_in_user_data(&scrubbed),
            None,
            "an overwritten token is no token"
        );
        assert!(text.contains("permissions: \"0600\""), "{text}");
        assert!(
            text.contains("power_state:\n  mode: \"poweroff\""),
            "{text}"
        );
    }

    #[test]
    fn the_network_section_reaches_the_first_download_and_cloud_inits_apt() {
        let mut with_proxy = options(url("https://files.corp.example/runner-provision"), None);
        let network = &mut with_proxy.profile.network;
        network.https_proxy = "http://build:Pr0xyPw@proxy.corp:3128".to_string();
        network.no_proxy = vec![".corp".to_string()];
        let text = render(&with_proxy).expect("render");
        let profile_at = text.find(PROFILE_PATH).expect("profile");
        let env_at = text
            .find(crate::steps::network::ENV_FILE)
            .expect("env file");
        assert!(
            text[profile_at..env_at].contains("permissions: \"0600\""),
            "a profile with a proxy password is root's only: {text}"
        );
        assert!(text[env_at..].contains("permissions: \"0600\""), "{text}");
        assert!(
            text.contains("HTTPS_PROXY=http://build:Pr0xyPw@proxy.corp:3128"),
            "the step's own environment file: {text}"
        );
        assert!(
            text.contains("apt:\n  https_proxy: \"http://build:Pr0xyPw@proxy.corp:3128\""),
            "{text}"
        );
        let script = script(&with_proxy).expect("script");
        let reads = script
            .find("export \"$k=$v\" ;;\n  esac\ndone < /etc/runner-provision/network.env")
            .expect("reads the proxy");
        assert!(
            reads < script.find("fetch \"$url\"").expect("fetch"),
            "{script}"
        );
        assert!(
            !script.contains("Pr0xyPw"),
            "the script holds no password: {script}"
        );
        // Without [network]: none of it.
        let plain = render(&options(url("https://files.example/rp"), None)).expect("render");
        assert!(!plain.contains("apt:"), "{plain}");
        assert!(!plain.contains(crate::steps::network::ENV_FILE), "{plain}");
    }

    #[test]
    fn without_a_token_no_token_file_and_registration_is_not_required() {
        let text = render(&options(Binary::Path("/opt/rp".into()), None)).expect("render");
        assert!(
            !text.contains("path: /run/runner-provision/token"),
            "{text}"
        );
        assert!(!text.contains("require_registration"), "{text}");
        assert_eq!(token_in_user_data(text.as_bytes()), None);
        assert!(text.contains("exec \"$bin\" --profile /etc/runner-provision/profile.toml apply --yes --forget-token"), "{text}");
    }

    #[test]
    fn the_token_is_found_in_gzipped_and_multipart_user_data() {
        use base64::Engine as _;
        let token = "GR1348941multipartToken";
        let text = render(&options(Binary::Path("/opt/rp".into()), Some(token))).expect("render");
        let mime_7bit = format!(
            "Content-Type: multipart/mixed; boundary=\"MIMEBOUNDARY\"\nMIME-Version: 1.0\n\n--MIMEBOUNDARY\nContent-Transfer-Encoding: 7bit\nContent-Type: text/cloud-config\n\n{text}\n--MIMEBOUNDARY--\n"
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(&text);
        let mime_b64 = format!(
            "Content-Type: multipart/mixed; boundary=\"B\"\nMIME-Version: 1.0\n\n--B\nContent-Type: text/x-shellscript\n\n#!/bin/sh\n--B\nContent-Type: text/cloud-config\nContent-Transfer-Encoding: base64\n\n{}\n--B--\n",
            encoded
                .as_bytes()
                .chunks(76)
                .map(|c| String::from_utf8_lossy(c).into_owned())
                .collect::<Vec<_>>()
                .join("\n")
        );
        for user_data in [
            text.clone().into_bytes(),
            gzip(text.as_bytes()),
            mime_7bit.clone().into_bytes(),
            gzip(mime_7bit.as_bytes()),
            mime_b64.clone().into_bytes(),
            gzip(mime_b64.as_bytes()),
        ] {
            assert_eq!(token_in_user_data(&user_data).as_deref(), Some(token));
        }
    }

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).expect("gzip");
        e.finish().expect("gzip")
    }

    #[test]
    fn url_binary_is_fetched_with_bounded_attempts_and_checked_against_its_sha256() {
        let text = render(&options(url("https://example.com/rp"), None)).expect("render");
        assert!(text.contains(&format!("sha={}", "a".repeat(64))), "{text}");
        for expected in [
            "sha256sum -c",
            "--connect-timeout 10 --max-time 300",
            "--retry 5 --retry-connrefused --retry-max-time 900",
            "timeout 900 wget -nv --tries=6",
            "timeout 900 python3",
            "could not download $url (6 attempts)",
            "is not the binary whose SHA-256 is $sha",
        ] {
            assert!(text.contains(expected), "{expected}: {text}");
        }
    }

    #[test]
    fn render_refuses_what_can_only_fail_at_boot() {
        let sha = |s: &str| Binary::Url {
            url: "https://example.com/rp".into(),
            sha256: s.into(),
        };
        let mut no_risk = options(Binary::Path("/opt/rp".into()), None);
        no_risk.profile.docker.accept_group_risk = false;
        let mut tags = options(
            Binary::Path("/opt/rp".into()),
            Some("glrt-Zx9yW8vU7tS6rQ5p"),
        );
        tags.profile.runner.tags = vec!["docker".into()];
        let mut required_but_skipped = options(Binary::Path("/opt/rp".into()), None);
        required_but_skipped.profile.runner.require_registration = true;
        required_but_skipped.selection.skip = vec![StepId::RunnerRegister];
        let cases = [
            (no_risk, "--accept-docker-group-risk"),
            (tags, "tags cannot be set"),
            (options(url(""), None), "--binary-url `` is not a valid URL"),
            (
                options(url("ftp://example.com/rp"), None),
                "http:// or https://",
            ),
            (options(url("file:///srv/rp"), None), "http:// or https://"),
            (options(url("example.com/rp"), None), "http:// or https://"),
            (options(url("https://"), None), "--binary-url"),
            (options(sha("123"), None), "64 hexadecimal digits"),
            (
                options(Binary::Path("rp".into()), None),
                "not an absolute path",
            ),
            (
                options(Binary::Path("./bin/rp".into()), None),
                "not an absolute path",
            ),
            (
                required_but_skipped,
                "runner-register is not among the steps",
            ),
        ];
        for (options, expected) in cases {
            let err = format!("{:#}", render(&options).expect_err(expected));
            assert!(err.contains(expected), "{expected}: {err}");
        }
        // Skipping docker-group needs no acceptance.
        let mut skipped = options(Binary::Path("/opt/rp".into()), None);
        skipped.profile.docker.accept_group_risk = false;
        skipped.selection.skip = vec![StepId::DockerGroup];
        render(&skipped).expect("no docker-group, no risk to accept");
    }

    /// Every rendered document, parsed as cloud-init parses it (PyYAML's
    /// safe loader), is exactly the tree the tool built, whatever the
    /// runner name, binary path, URL and token hold.
    #[test]
    fn no_input_adds_a_key_as_cloud_inits_loader_reads_it() {
        let mut docs = Vec::new();
        let mut expected = Vec::new();
        for value in yaml::tests::hostile_corpus() {
            let mut with_name = options(Binary::Path(format!("/opt/{value}")), None);
            with_name.profile.runner.name.clone_from(&value);
            with_name.profile.description.clone_from(&value);
            let token = format!("glrt-{value}Zx9yW8vU7");
            let with_url = options(
                url(&format!(
                    "https://example.com/{}",
                    value.replace(char::is_whitespace, "")
                )),
                Token::new(&token).is_ok().then_some(token.as_str()),
            );
            for options in [with_name, with_url] {
                let Ok(text) = render(&options) else {
                    continue;
                };
                docs.push(text);
                expected.push(serde_json::Value::Object(
                    document(&options)
                        .expect("document")
                        .iter()
                        .map(|(k, v)| ((*k).to_string(), v.to_json()))
                        .collect(),
                ));
            }
        }
        assert!(docs.len() > 100, "{}", docs.len());
        let parsed = safe_load_all(&docs);
        for ((doc, parsed), expected) in docs.iter().zip(parsed).zip(expected) {
            assert_eq!(parsed, expected, "{doc}");
        }
    }

    /// cloud-init's loader (PyYAML `safe_load`, from Debian's python3-yaml).
    fn safe_load_all(docs: &[String]) -> Vec<serde_json::Value> {
        use std::io::Write as _;
        let program = "import json, sys, yaml\n\
            docs = json.load(sys.stdin)\n\
            json.dump([yaml.safe_load(d) for d in docs], sys.stdout)\n";
        let mut child = std::process::Command::new("/usr/bin/python3")
            .args(["-c", program])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("/usr/bin/python3 runs (Debian: apt-get install python3-yaml)");
        let input = serde_json::to_vec(docs).expect("json");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(&input)
            .expect("write");
        let out = child.wait_with_output().expect("python3");
        assert!(
            out.status.success(),
            "PyYAML could not load a document (or python3-yaml is missing: apt-get install python3-yaml): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json from python")
    }

    #[test]
    fn profile_is_embedded_and_parses_back() {
        let options = options(Binary::Path("/opt/rp".into()), None);
        let doc = document(&options).expect("document");
        let yaml::Node::Seq(files) = &doc[0].1 else {
            panic!("write_files")
        };
        let yaml::Node::Map(entries) = &files[0] else {
            panic!("entry")
        };
        let Some((_, yaml::Node::Str(content))) = entries.iter().find(|(k, _)| *k == "content")
        else {
            panic!("content")
        };
        assert_eq!(
            Profile::parse(content, "rendered").expect("parses"),
            options.profile
        );
        let text = render(&options).expect("render");
        assert!(
            text.contains("    content: |\n      description = "),
            "{text}"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("/mnt/my disk/it's"), r"'/mnt/my disk/it'\''s'");
    }

    fn later_boot_tree(token: &str) -> crate::testing::FakeHost {
        let fake = crate::testing::FakeHost::debian12();
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
        fake
    }

    #[test]
    fn forgetting_finds_the_token_in_cloud_inits_copy_on_later_boots() {
        let token = "GR1348941laterBootToken";
        let fake = later_boot_tree(token);
        let pickle = fake.root().join("var/lib/cloud/instances/i-1/obj.pkl");
        let read_only = std::os::unix::fs::PermissionsExt::from_mode(0o400);
        std::fs::set_permissions(&pickle, read_only).expect("chmod");
        let host = fake.host(fake.reporter(crate::report::Format::Json));

        let done = forget_token(&host, None, None, true).expect("forget");
        assert_eq!(
            done.cleaned,
            vec![
                "/var/lib/cloud/instances/i-1/obj.pkl",
                "/var/lib/cloud/instances/i-1/user-data.txt",
                "/run/cloud-init/combined-cloud-config.json"
            ]
        );
        assert!(done.unsafe_files.is_empty() && !done.kept);
        for file in &done.cleaned {
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
            forget_token(&host, None, None, true).expect("again"),
            Forgotten::default(),
            "nothing left to forget"
        );
    }

    #[test]
    fn an_unregistered_host_keeps_the_token_for_the_next_boot() {
        let token = "GR1348941firstBootFails";
        let fake = later_boot_tree(token);
        fake.write(TOKEN_PATH, token);
        let token_file = fake.root().join(TOKEN_PATH.trim_start_matches('/'));
        let host = fake.host(fake.reporter(crate::report::Format::Json));
        let value = Token::new(token).expect("token");
        let before = fake.read("/var/lib/cloud/instances/i-1/user-data.txt");

        // First boot: apply failed before registering.
        let done = forget_token(&host, Some(&value), Some(&token_file), false).expect("keep");
        assert!(done.kept && done.cleaned.is_empty(), "{done:?}");
        assert!(token_file.exists(), "the token file stays");
        assert_eq!(fake.read(KEPT_TOKEN_PATH), format!("{token}\n"));
        let kept = fake.root().join(KEPT_TOKEN_PATH.trim_start_matches('/'));
        let mode = |p: &Path| {
            std::os::unix::fs::PermissionsExt::mode(
                &std::fs::metadata(p).expect("stat").permissions(),
            ) & 0o777
        };
        assert_eq!(mode(&kept), 0o600);
        assert_eq!(mode(kept.parent().expect("dir")), 0o700);
        assert_eq!(
            fake.read("/var/lib/cloud/instances/i-1/user-data.txt"),
            before
        );

        // Second boot: /run is empty, the kept copy registers, then goes.
        std::fs::remove_file(&token_file).expect("reboot empties /run");
        let (again, _) = Token::from_file(&kept).expect("kept token reads");
        let done = forget_token(&host, Some(&again), Some(&kept), false).expect("still failing");
        assert!(done.kept, "kept copy is not rewritten onto itself");
        let done = forget_token(&host, Some(&again), Some(&kept), true).expect("registered");
        assert!(!done.kept && !kept.exists(), "{done:?}");
        assert!(
            !fake
                .read("/var/lib/cloud/instances/i-1/user-data.txt")
                .contains(token)
        );
    }

    #[test]
    fn gzipped_user_data_is_scrubbed_and_a_file_that_cannot_be_is_reported() {
        let token = "GR1348941gzippedUserData";
        let fake = crate::testing::FakeHost::debian12();
        let text = render(&options(Binary::Path("/opt/rp".into()), Some(token))).expect("render");
        let raw = gzip(text.as_bytes());
        let root = fake.root();
        let write = |path: &str, bytes: &[u8]| {
            let full = root.join(path.trim_start_matches('/'));
            std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
            std::fs::write(full, bytes).expect("write");
        };
        write("/var/lib/cloud/instances/i-1/user-data.txt", &raw);
        write("/var/lib/cloud/seed/nocloud/user-data", &raw);
        write(
            "/var/lib/cloud/instances/i-1/cloud-config.txt",
            text.as_bytes(),
        );
        write(
            "/var/lib/cloud/instances/i-1/obj.pkl",
            &[b"\x80\x04".as_slice(), &raw, b"."].concat(),
        );
        write(
            "/var/lib/cloud/data/odd.bin",
            &[b"\x00".as_slice(), &raw].concat(),
        );
        std::os::unix::fs::symlink("instances/i-1", root.join("var/lib/cloud/instance"))
            .expect("symlink");
        let host = fake.host(fake.reporter(crate::report::Format::Json));

        let done = forget_token(&host, None, None, true).expect("forget");
        assert_eq!(
            done.cleaned,
            vec![
                "/var/lib/cloud/instances/i-1/cloud-config.txt",
                "/var/lib/cloud/instances/i-1/obj.pkl",
                "/var/lib/cloud/instances/i-1/user-data.txt",
                "/var/lib/cloud/seed/nocloud/user-data",
            ]
        );
        assert_eq!(done.unsafe_files.len(), 1, "{done:?}");
        assert_eq!(done.unsafe_files[0].0, "/var/lib/cloud/data/odd.bin");
        assert!(
            !root.join("var/lib/cloud/instances/i-1/obj.pkl").exists(),
            "cache removed"
        );
        let after =
            std::fs::read(root.join("var/lib/cloud/instances/i-1/user-data.txt")).expect("read");
        let inner = scrub::gunzip(&after).expect("still gzip");
        assert!(!scrub::holds(&inner, token.as_bytes()));
        assert!(String::from_utf8_lossy(&inner).contains("write_files:"));
    }
}
