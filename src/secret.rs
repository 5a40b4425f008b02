//! The runner token: how it is read, held and kept out of every output.
//!
//! A [`Token`] never prints itself. Every string that leaves the process
//! (reports, JSON events, errors, command logs) passes through the shared
//! [`Redactor`], which knows the token and anything derived from it.

use std::fmt;
use std::path::Path;
use std::sync::{Arc, RwLock};

/// The environment variable operators put the token in.
pub const TOKEN_ENV: &str = "RUNNER_TOKEN";

const REDACTED: &str = "[redacted]";

/// A runner token (`glrt-…` authentication token or a legacy registration token).
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

/// The largest token file or variable read: tokens are tens of bytes, and a
/// cap keeps `--token-file /dev/zero` from reading until memory runs out.
pub const MAX_TOKEN_BYTES: u64 = 4096;

/// GitLab tokens are far longer; anything shorter than this is a typo or a
/// truncated file, and redacting it would blank ordinary words.
pub const MIN_TOKEN_CHARS: usize = 8;

impl Token {
    pub fn new(value: &str) -> Result<Self, crate::Error> {
        // A BOM (Windows editors) would make a `glrt-` token look legacy.
        let value = value.trim_start_matches('\u{feff}').trim();
        if value.is_empty() {
            return Err(crate::Error::EmptyToken);
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(crate::Error::MalformedToken);
        }
        if value.chars().count() < MIN_TOKEN_CHARS {
            return Err(crate::Error::ShortToken {
                min: MIN_TOKEN_CHARS,
            });
        }
        Ok(Self(value.to_string()))
    }

    /// The token from the `RUNNER_TOKEN` value, if it is set: an empty or
    /// whitespace-only value is the same error as an empty token file.
    pub fn from_env_value(value: Option<&str>) -> Result<Option<Self>, crate::Error> {
        match value {
            None | Some("") => Ok(None),
            Some(value) => Self::new(value).map(Some),
        }
    }

    /// Reads the token from a file such as one cloud-init's `write_files`
    /// made. Only a regular file is read (a FIFO would block, a device
    /// never end), at most [`MAX_TOKEN_BYTES`]. The second value is a
    /// warning when group or others can read the file.
    pub fn from_file(path: &Path) -> Result<(Self, Option<String>), crate::Error> {
        let text = read_small_file(path, MAX_TOKEN_BYTES, "a token").map_err(|reason| {
            crate::Error::TokenFile {
                path: path.to_path_buf(),
                reason,
            }
        })?;
        let token = Self::new(&text.contents)?;
        let warning = (text.mode & 0o077 != 0).then(|| {
            format!(
                "token file {} is readable by others (mode {:04o}): make it 0600, owned by root",
                path.display(),
                text.mode & 0o7777
            )
        });
        Ok((token, warning))
    }

    /// Reads the token of a `[[runners]]` entry's `token_file`, which must
    /// be that runner's alone: a regular file, not a symbolic link (a link
    /// planted where others can write would have root read a file of their
    /// choosing), owned by root or by `caller`, the user running the tool
    /// (not one someone else can rewrite), neither readable nor writable by
    /// group or others. Anything else is refused, naming the file and the
    /// fix.
    pub fn from_private_file(path: &Path, caller: u32) -> Result<Self, crate::Error> {
        let refused = |reason: String| crate::Error::UnsafeTokenFile {
            path: path.to_path_buf(),
            reason,
        };
        let file = match open_nonblocking(path, nix::libc::O_NOFOLLOW) {
            Ok(file) => file,
            Err(e) if e.raw_os_error() == Some(nix::libc::ELOOP) => {
                return Err(refused(
                    "it is a symbolic link; name the file itself in token_file".into(),
                ));
            }
            Err(e) => {
                return Err(crate::Error::TokenFile {
                    path: path.to_path_buf(),
                    reason: e.kind().to_string(),
                });
            }
        };
        let text = read_opened(file, MAX_TOKEN_BYTES, "a token").map_err(|reason| {
            crate::Error::TokenFile {
                path: path.to_path_buf(),
                reason,
            }
        })?;
        if text.uid != 0 && text.uid != caller {
            return Err(refused(format!(
                "it is owned by uid {}, who can change the token; `chown root:root` it",
                text.uid
            )));
        }
        if text.mode & 0o077 != 0 {
            return Err(refused(format!(
                "group or others can read or write it (mode {:04o}); `chmod 600` it, and change the token in GitLab if others can log in to this host",
                text.mode & 0o7777
            )));
        }
        Self::new(&text.contents)
    }

    /// `glrt-` tokens are runner authentication tokens (GitLab 15.10+ flow);
    /// anything else is a legacy registration token.
    pub fn is_authentication_token(&self) -> bool {
        self.0.starts_with("glrt-")
    }

    /// The value, for the one place that hands it to a child's environment.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token([redacted])")
    }
}

/// A small text file read whole: its contents, mode and owner.
pub struct SmallFile {
    pub contents: String,
    pub mode: u32,
    pub uid: u32,
}

/// Reads a regular file of at most `cap` bytes without blocking on a FIFO
/// (opened `O_NONBLOCK`, then checked to be a regular file before any read).
/// The error is a reason to put after the path.
pub fn read_small_file(path: &Path, cap: u64, what: &str) -> Result<SmallFile, String> {
    let file = open_nonblocking(path, 0).map_err(|e| e.kind().to_string())?;
    read_opened(file, cap, what)
}

/// Opens `path` for reading without blocking (a FIFO) or taking a terminal.
fn open_nonblocking(path: &Path, flags: i32) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_NOCTTY | flags)
        .open(path)
}

fn read_opened(file: std::fs::File, cap: u64, what: &str) -> Result<SmallFile, String> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let meta = file.metadata().map_err(|e| e.kind().to_string())?;
    if !meta.is_file() {
        return Err(format!(
            "not a regular file; give the path of a file holding {what}"
        ));
    }
    if meta.len() > cap {
        return Err(format!(
            "{} bytes, more than the {cap} bytes {what} can be",
            meta.len()
        ));
    }
    let mut bytes = Vec::new();
    // Read one byte past the cap: a file that grows after the stat is caught too.
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.kind().to_string())?;
    if bytes.len() as u64 > cap {
        return Err(format!("more than the {cap} bytes {what} can be"));
    }
    let contents = String::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    Ok(SmallFile {
        contents,
        mode: meta.mode(),
        uid: meta.uid(),
    })
}

/// Replaces every known secret in a string. Cheap to clone; clones share the
/// list, so a secret added once is redacted everywhere.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// Adds a token: the whole of it, and every shortened form GitLab
    /// Runner prints of it (see [`shortened_forms`]).
    pub fn add_token(&self, token: &str) {
        self.add(token);
        for short in shortened_forms(token) {
            self.add(&short);
        }
    }

    /// Adds the credentials of a proxy URL (`user:password` as written):
    /// `user:password@` whatever its length (the `:` and `@` keep it from
    /// matching ordinary words), and the password alone, as written and
    /// percent-decoded, when it is long enough not to.
    pub fn add_credentials(&self, userinfo: &str) {
        let Some((_, password)) = userinfo.split_once(':') else {
            return;
        };
        if password.is_empty() {
            return;
        }
        self.insert(&format!("{userinfo}@"));
        self.add(password);
        self.add(&percent_decode(password));
    }

    pub fn add(&self, secret: &str) {
        // Very short strings would redact ordinary words; tokens are long.
        if secret.len() < 6 {
            return;
        }
        self.insert(secret);
    }

    fn insert(&self, secret: &str) {
        if let Ok(mut secrets) = self.secrets.write() {
            if !secrets.iter().any(|s| s == secret) {
                secrets.push(secret.to_string());
                // Longest first, so a secret that contains another is fully replaced.
                secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
            }
        }
    }

    pub fn redact(&self, text: &str) -> String {
        let Ok(secrets) = self.secrets.read() else {
            return text.to_string();
        };
        let mut out = text.to_string();
        for secret in secrets.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), REDACTED);
            }
        }
        out
    }
}

/// Every shortened form of `token` that GitLab Runner's `ShortenToken`
/// (helpers/shorten_token.go) has printed, across its versions: in
/// `runner=…` log fields, build directory names and `list` output.
///
/// - before 16.0: the first 17 characters of a `GR` + 7-hex-digit token,
///   else the first 8;
/// - 16.x: after `glrt-` the 9 characters at 5..14; after `glrtr-` or
///   `glcbt-` those at 6..15; otherwise as before;
/// - 17.x and later: the prefixes `glrt-` (with an optional `t1_`..`t3_`
///   partition), `t1_`..`t3_`, `glrtr-`, `glcbt-` and `GR` + 7 hex digits
///   are stripped in that order, then the first 9 characters.
pub fn shortened_forms(token: &str) -> Vec<String> {
    fn head(s: &str, n: usize) -> Option<String> {
        s.get(..n).map(str::to_string).filter(|h| h.len() == n)
    }
    fn gr_prefix(s: &str) -> Option<&str> {
        let rest = s.strip_prefix("GR")?;
        let hex = rest.get(..7)?;
        hex.chars()
            .all(|c| c.is_ascii_hexdigit())
            .then(|| &rest[7..])
    }
    let mut forms = Vec::new();
    if token.len() < MIN_TOKEN_CHARS {
        return forms;
    }
    // Before 16.0 (and 16.x for tokens without a known prefix).
    if gr_prefix(token).is_some() && token.len() >= 17 {
        forms.extend(head(token, 17));
    }
    forms.extend(head(token, 8));
    // 16.x.
    for (prefix, at) in [("glrt-", 5), ("glrtr-", 6), ("glcbt-", 6)] {
        if token.starts_with(prefix) {
            forms.extend(token.get(at..(at + 9).min(token.len())).map(str::to_string));
        }
    }
    // 17.x and later: the three patterns applied one after the other.
    let mut rest = token;
    if let Some(r) = rest.strip_prefix("glrt-") {
        rest = ["t1_", "t2_", "t3_"]
            .iter()
            .find_map(|p| r.strip_prefix(p))
            .unwrap_or(r);
    } else if let Some(r) = ["t1_", "t2_", "t3_", "glrtr-"]
        .iter()
        .find_map(|p| rest.strip_prefix(p))
    {
        rest = r;
    }
    rest = rest.strip_prefix("glcbt-").unwrap_or(rest);
    rest = gr_prefix(rest).unwrap_or(rest);
    forms.push(rest.get(..9.min(rest.len())).unwrap_or(rest).to_string());
    forms.retain(|f| !f.is_empty() && f != token);
    forms.sort();
    forms.dedup();
    forms
}

/// Whether a configuration key names a secret: GitLab Runner's runner
/// `token`, cache credentials (`[runners.cache.s3] SecretKey`/`AccessKey`,
/// `[runners.cache.gcs] PrivateKey`, `[runners.cache.azure] AccountKey`),
/// and any key named like a password, token, secret or private key.
pub fn is_secret_key(key: &str) -> bool {
    let key: String = key
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase();
    [
        "token",
        "secret",
        "password",
        "passwd",
        "credential",
        "privatekey",
        "accesskey",
        "accountkey",
        "apikey",
        "sessionkey",
    ]
    .iter()
    .any(|word| key.contains(word))
}

/// Text shown in place of a masked value.
pub const MASKED: &str = "[masked]";

/// A line of TOML (`key = value`) or JSON (`"key": value`) with the value
/// masked when the key names a secret; other lines unchanged. For diffs
/// of files that may hold credentials (a diff's leading ` `, `+` or `-` is
/// kept).
pub fn mask_line(line: &str) -> String {
    // A diff's `--- a/path` and `+++ b/path` headers need no case of their
    // own: the space after the mark puts whitespace in any key they hold.
    let (mark, body) = match line.chars().next() {
        Some(c @ (' ' | '+' | '-')) => (&line[..c.len_utf8()], &line[c.len_utf8()..]),
        _ => ("", line),
    };
    let Some(at) = body.find(['=', ':']) else {
        return line.to_string();
    };
    let key = body[..at].trim().trim_matches(['"', '\'']);
    if key.is_empty() || key.contains(char::is_whitespace) || !is_secret_key(key) {
        return line.to_string();
    }
    // The line ends with a comma exactly when its value does (the separator
    // ends the line when the value is blank).
    let trailing_comma = if line.trim_end().ends_with(',') {
        ","
    } else {
        ""
    };
    let sep = if &body[at..=at] == "=" { " = " } else { ": " };
    format!(
        "{mark}{}{sep}\"{MASKED}\"{trailing_comma}",
        body[..at].trim_end()
    )
}

/// Every string value under a secret-named key in a TOML document (such
/// as config.toml), for the redactor; empty when the text does not parse.
pub fn toml_secrets(text: &str) -> Vec<String> {
    fn walk(item: &toml_edit::Item, key: Option<&str>, out: &mut Vec<String>) {
        match item {
            toml_edit::Item::Value(value) => value_walk(value, key, out),
            toml_edit::Item::Table(table) => {
                for (k, v) in table.iter() {
                    walk(v, Some(k), out);
                }
            }
            toml_edit::Item::ArrayOfTables(tables) => {
                for table in tables.iter() {
                    for (k, v) in table.iter() {
                        walk(v, Some(k), out);
                    }
                }
            }
            toml_edit::Item::None => {}
        }
    }
    fn value_walk(value: &toml_edit::Value, key: Option<&str>, out: &mut Vec<String>) {
        match value {
            toml_edit::Value::String(s) if key.is_some_and(is_secret_key) => {
                out.push(s.value().clone());
            }
            toml_edit::Value::InlineTable(table) => {
                for (k, v) in table.iter() {
                    value_walk(v, Some(k), out);
                }
            }
            toml_edit::Value::Array(items) => {
                for v in items.iter() {
                    value_walk(v, key, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(doc) = text.parse::<toml_edit::DocumentMut>() {
        walk(doc.as_item(), None, &mut out);
    }
    out
}

/// `%XX` escapes decoded (invalid ones kept as written).
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_token() {
        let token = Token::new("glrt-abc.defghijklmnop").expect("valid");
        assert_eq!(format!("{token:?}"), "Token([redacted])");
    }

    #[test]
    fn token_is_trimmed_and_classified() {
        let token = Token::new("  glrt-abc.defghijklmnop\n").expect("valid");
        assert!(token.is_authentication_token());
        assert_eq!(token.expose(), "glrt-abc.defghijklmnop");
        let legacy = Token::new("GR1348941abcdefghij").expect("valid");
        assert!(!legacy.is_authentication_token());
    }

    #[test]
    fn empty_and_multi_word_tokens_are_refused() {
        assert!(matches!(Token::new(" \n"), Err(crate::Error::EmptyToken)));
        assert!(matches!(
            Token::new("two words"),
            Err(crate::Error::MalformedToken)
        ));
    }

    #[test]
    fn redactor_replaces_every_occurrence_in_every_clone() {
        let redactor = Redactor::default();
        let clone = redactor.clone();
        redactor.add("glrt-abc.defghijklmnop");
        let text = "token glrt-abc.defghijklmnop and again glrt-abc.defghijklmnop.";
        assert_eq!(clone.redact(text), "token [redacted] and again [redacted].");
    }

    #[test]
    fn a_token_prefix_as_gitlab_runner_prints_it_is_redacted_too() {
        let redactor = Redactor::default();
        redactor.add_token("GR1348941abcdefghijklmn");
        assert_eq!(
            redactor.redact("Registering runner... succeeded runner=GR134894"),
            "Registering runner... succeeded runner=[redacted]"
        );
    }

    /// Each case: a token and what every version of GitLab Runner's
    /// ShortenToken prints for it (helpers/shorten_token.go).
    #[test]
    fn every_shortened_form_gitlab_runner_prints_is_known() {
        let cases: &[(&str, &[&str])] = &[
            // GR + 7 hex: old versions print 17 characters, 17.x strips the
            // prefix and prints 9.
            (
                "GR1348941abcdefghijklmn",
                &["GR134894", "GR1348941abcdefgh", "abcdefghi"],
            ),
            // glrt-: 16.x prints 5..14, 17.x the same after the prefix.
            ("glrt-Zx9yW8vU7tS6rQ5p", &["Zx9yW8vU7", "glrt-Zx9"]),
            // glrt- with a partition prefix (17.x strips both).
            (
                "glrt-t1_Zx9yW8vU7tS6rQ5p",
                &["Zx9yW8vU7", "glrt-t1_", "t1_Zx9yW8"],
            ),
            ("glrtr-Zx9yW8vU7tS6rQ5p", &["Zx9yW8vU7", "glrtr-Zx"]),
            ("t2_Zx9yW8vU7tS6rQ5p", &["Zx9yW8vU7", "t2_Zx9yW"]),
            // No known prefix: 8 characters, then 9.
            ("abcdefghijklmnop", &["abcdefgh", "abcdefghi"]),
            // GR without 7 hex digits is no GR prefix.
            ("GRzzzzzzzabcdefghijkl", &["GRzzzzzz", "GRzzzzzzz"]),
        ];
        for (token, expected) in cases {
            assert_eq!(shortened_forms(token), *expected, "{token}");
            let redactor = Redactor::default();
            redactor.add_token(token);
            for short in *expected {
                let line = format!("runner={short} is alive");
                assert_eq!(
                    redactor.redact(&line),
                    "runner=[redacted] is alive",
                    "{token}"
                );
            }
        }
        // At the edges (the redactor leaves out forms under 6 characters).
        let edges: &[(&str, &[&str])] = &[
            // The shortest token: 17.x prints what follows the prefix.
            ("glrt-abc", &["abc"]),
            // A token that is its own 8- and 9-character head has no
            // shorter form.
            ("12345678", &[]),
            // Shorter than any token: no forms.
            ("glrt-ab", &[]),
        ];
        for (token, expected) in edges {
            assert_eq!(shortened_forms(token), *expected, "{token}");
        }
    }

    #[test]
    fn a_bom_is_stripped_and_short_tokens_are_refused() {
        let token = Token::new("\u{feff}glrt-Zx9yW8vU7tS6rQ5p\r\n").expect("valid");
        assert!(token.is_authentication_token());
        assert_eq!(token.expose(), "glrt-Zx9yW8vU7tS6rQ5p");
        for short in ["abc", "glrt-ab", "\u{feff}1234567"] {
            assert!(
                matches!(Token::new(short), Err(crate::Error::ShortToken { min: 8 })),
                "{short}"
            );
        }
        assert!(Token::new("12345678").is_ok());
    }

    #[test]
    fn whitespace_only_variable_is_the_empty_token_error() {
        assert!(matches!(Token::from_env_value(None), Ok(None)));
        assert!(matches!(Token::from_env_value(Some("")), Ok(None)));
        for blank in [" ", "\n", " \t\n", "\u{feff}"] {
            assert!(
                matches!(
                    Token::from_env_value(Some(blank)),
                    Err(crate::Error::EmptyToken)
                ),
                "{blank:?}"
            );
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, " \n").expect("write");
        assert!(matches!(
            Token::from_file(&file),
            Err(crate::Error::EmptyToken)
        ));
    }

    #[test]
    fn token_files_that_are_no_regular_file_or_too_big_are_refused_at_once() {
        use std::os::unix::fs::PermissionsExt as _;
        use std::path::PathBuf;
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        let big = dir.path().join("big");
        std::fs::write(&big, "a".repeat(MAX_TOKEN_BYTES as usize + 1)).expect("write");
        for (path, reason) in [
            (PathBuf::from("/dev/zero"), "not a regular file"),
            (fifo, "not a regular file"),
            (dir.path().to_path_buf(), "not a regular file"),
            (big, "4097 bytes, more than the 4096 bytes"),
        ] {
            // On a thread, so a read that blocks (a FIFO opened without
            // O_NONBLOCK waits for a writer) fails the test instead of hanging it.
            let (sent, received) = std::sync::mpsc::channel();
            let read = path.clone();
            std::thread::spawn(move || sent.send(Token::from_file(&read).map(|_| ())));
            let text = received
                .recv_timeout(std::time::Duration::from_secs(5))
                .unwrap_or_else(|_| panic!("{path:?}: still reading after 5 s"))
                .expect_err("refused")
                .to_string();
            assert!(text.contains(reason), "{path:?}: {text}");
            assert!(text.contains(&path.display().to_string()), "{text}");
        }

        let file = dir.path().join("token");
        std::fs::write(&file, "glrt-Zx9yW8vU7tS6rQ5p\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let (token, warning) = Token::from_file(&file).expect("read");
        assert_eq!(token.expose(), "glrt-Zx9yW8vU7tS6rQ5p");
        assert_eq!(warning, None);
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let (_, warning) = Token::from_file(&file).expect("read");
        let warning = warning.expect("warned");
        assert!(
            warning.contains("readable by others (mode 0644)"),
            "{warning}"
        );
        assert!(!warning.contains("Zx9yW8"), "{warning}");
    }

    #[test]
    fn a_listed_runners_token_file_must_be_its_own_regular_root_only_file() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().expect("tempdir");
        let secret = "GR1348941privateFileToken9";
        let file = dir.path().join("images.token");
        std::fs::write(&file, format!("{secret}\n")).expect("write");
        let euid = nix::unistd::geteuid().as_raw();
        let chmod = |mode: u32| {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(mode)).expect("chmod")
        };
        for mode in [0o600, 0o400] {
            chmod(mode);
            let token = Token::from_private_file(&file, euid).expect("a root-only file");
            assert_eq!(token.expose(), secret);
        }
        let refused = |path: &Path| {
            let text = Token::from_private_file(path, euid)
                .map(|_| ())
                .expect_err("refused")
                .to_string();
            assert!(!text.contains("privateFile"), "{text}");
            text
        };
        for mode in [0o640, 0o604, 0o660, 0o602, 0o644] {
            chmod(mode);
            let text = refused(&file);
            assert!(
                text.contains(&format!("{} is refused", file.display()))
                    && text.contains(&format!("(mode {mode:04o}); `chmod 600` it")),
                "{mode:o}: {text}"
            );
        }
        chmod(0o600);
        // A link, even to a good file, and a link to nowhere.
        let link = dir.path().join("link.token");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        let dangling = dir.path().join("dangling.token");
        std::os::unix::fs::symlink(dir.path().join("gone"), &dangling).expect("symlink");
        for path in [&link, &dangling] {
            let text = refused(path);
            assert!(
                text.contains("is a symbolic link; name the file itself"),
                "{text}"
            );
        }
        // What a token file may never be, read without blocking.
        let fifo = dir.path().join("fifo.token");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
        assert!(refused(&fifo).contains("not a regular file"));
        assert!(refused(&dir.path().join("missing")).contains("not found"));
        // Someone else's file: they could swap the token (only root can
        // make one; as another user the file's own owner is the caller).
        if nix::unistd::geteuid().is_root() {
            nix::unistd::chown(&file, Some(nix::unistd::Uid::from_raw(65534)), None)
                .expect("chown");
            let text = refused(&file);
            assert!(
                text.contains("owned by uid 65534") && text.contains("chown root:root"),
                "{text}"
            );
        } else {
            let mine = std::fs::metadata(&file).expect("stat");
            assert_eq!(
                std::os::unix::fs::MetadataExt::uid(&mine),
                nix::unistd::geteuid().as_raw()
            );
        }
    }

    #[test]
    fn a_listed_runners_token_file_may_be_roots_or_the_callers_and_no_one_elses() {
        use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("images.token");
        std::fs::write(&file, "GR1348941privateFileToken9\n").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        let owner = std::fs::metadata(&file).expect("stat").uid();
        // Its owner running the tool: accepted (root's file, or this user's).
        assert!(Token::from_private_file(&file, owner).is_ok());
        let other = if owner == 0 { 1000 } else { owner + 1 };
        let by_other = Token::from_private_file(&file, other);
        if owner == 0 {
            // Root's file, whoever runs the tool.
            assert!(by_other.is_ok(), "{:?}", by_other.err());
        } else {
            let text = by_other.map(|_| ()).expect_err("refused").to_string();
            assert!(text.contains(&format!("owned by uid {owner}")), "{text}");
        }
    }

    #[test]
    fn secret_values_are_masked_in_diff_lines() {
        let cases = [
            // (line, expected)
            ("   token = \"glrt-x\"", "   token = \"[masked]\""),
            ("-  token = \"t1\"", "-  token = \"[masked]\""),
            ("+    SecretKey = \"abc\"", "+    SecretKey = \"[masked]\""),
            ("     AccessKey = \"AKIA\"", "     AccessKey = \"[masked]\""),
            ("     AccountKey = \"az\"", "     AccountKey = \"[masked]\""),
            (
                "     PrivateKey = \"-----BEGIN\"",
                "     PrivateKey = \"[masked]\"",
            ),
            (
                "+  \"password\": \"hunter2\",",
                "+  \"password\": \"[masked]\",",
            ),
            ("   name = \"runner-1\"", "   name = \"runner-1\""),
            (
                "   url = \"https://gitlab.com/\"",
                "   url = \"https://gitlab.com/\"",
            ),
            (
                "--- a/etc/gitlab-runner/config.toml",
                "--- a/etc/gitlab-runner/config.toml",
            ),
            ("@@ -1,3 +1,4 @@", "@@ -1,3 +1,4 @@"),
            (
                "+++ b/etc/token.toml\t2024-01-01 10:00:00",
                "+++ b/etc/token.toml\t2024-01-01 10:00:00",
            ),
            // Prose (a comment, a description) is no key: left as written.
            (
                "+# the runner token: see RUNNER_TOKEN",
                "+# the runner token: see RUNNER_TOKEN",
            ),
            ("   \"token\":", "   \"token\": \"[masked]\""),
            ("+token=\"x\" ,  ", "+token = \"[masked]\","),
            // A key ending in a character wider than a byte.
            ("+token_ü=\"x\"", "+token_ü = \"[masked]\""),
            (
                "   environment = [\"A=token\"]",
                "   environment = [\"A=token\"]",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(mask_line(line), expected, "{line}");
        }
    }

    #[test]
    fn config_toml_secrets_are_found_for_the_redactor() {
        let text = "concurrent = 1\n[[runners]]\n  name = \"a\"\n  token = \"glrt-runnerSecret1\"\n  [runners.cache]\n    [runners.cache.s3]\n      AccessKey = \"AKIAEXAMPLE\"\n      SecretKey = \"s3-secret-key\"\n    [runners.cache.gcs]\n      PrivateKey = \"gcs-private\"\n    [runners.cache.azure]\n      AccountKey = \"azure-key\"\n  [runners.custom]\n    opts = { password = \"inline-pw\" }\n";
        assert_eq!(
            toml_secrets(text),
            vec![
                "glrt-runnerSecret1",
                "AKIAEXAMPLE",
                "s3-secret-key",
                "gcs-private",
                "azure-key",
                "inline-pw"
            ]
        );
        assert!(toml_secrets("not [ toml").is_empty());
        // Arrays: of strings under a secret-named key, of inline tables
        // holding one.
        let text = "tokens = [\"glrt-inArray1\", \"glrt-inArray2\"]\nservices = [{ name = \"db\", password = \"pw-in-array\" }]\nvolumes = [\"/cache\"]\n";
        assert_eq!(
            toml_secrets(text),
            vec!["glrt-inArray1", "glrt-inArray2", "pw-in-array"]
        );
    }

    #[test]
    fn proxy_credentials_are_redacted_however_short() {
        let redactor = Redactor::default();
        redactor.add_credentials("u:pw");
        redactor.add_credentials("build:p%40ssw0rd-long");
        redactor.add_credentials("nopassword");
        let cases = [
            ("http://u:pw@proxy:3128", "http://[redacted]proxy:3128"),
            (
                "Acquire::http::Proxy \"http://build:p%40ssw0rd-long@p:1\";",
                "Acquire::http::Proxy \"http://[redacted]p:1\";",
            ),
            ("407 for p@ssw0rd-long", "407 for [redacted]"),
            (
                "password pw and nopassword@x",
                "password pw and nopassword@x",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(redactor.redact(text), expected, "{text}");
        }
    }

    #[test]
    fn a_password_of_six_characters_is_redacted_a_shorter_word_is_not() {
        let redactor = Redactor::default();
        redactor.add_credentials("build:hunter");
        redactor.add("short");
        assert_eq!(
            redactor.redact("407 for hunter, a short reply"),
            "407 for [redacted], a short reply"
        );
    }

    #[test]
    fn small_files_are_read_whole_up_to_the_cap_and_not_a_byte_more() {
        let dir = tempfile::tempdir().expect("tempdir");
        let exact = dir.path().join("exact");
        std::fs::write(&exact, "x".repeat(64)).expect("write");
        let file = read_small_file(&exact, 64, "a token").expect("at the cap");
        assert_eq!(file.contents, "x".repeat(64));

        let over = dir.path().join("over");
        std::fs::write(&over, "x".repeat(65)).expect("write");
        let err = read_small_file(&over, 64, "a token").err();
        assert_eq!(
            err.as_deref(),
            Some("65 bytes, more than the 64 bytes a token can be")
        );

        // A file whose size the stat does not tell (procfs says 0; so does a
        // file that grows while it is read) is cut at the cap all the same.
        let err = read_small_file(Path::new("/proc/self/status"), 64, "a token").err();
        assert_eq!(
            err.as_deref(),
            Some("more than the 64 bytes a token can be")
        );
    }

    #[test]
    fn unreadable_token_file_names_the_file_not_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("token");
        let err = Token::from_file(&missing).expect_err("missing file");
        let text = err.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("not found"), "{text}");
    }
}
