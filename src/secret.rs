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

impl Token {
    pub fn new(value: &str) -> Result<Self, crate::Error> {
        let value = value.trim();
        if value.is_empty() {
            return Err(crate::Error::EmptyToken);
        }
        if value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(crate::Error::MalformedToken);
        }
        Ok(Self(value.to_string()))
    }

    /// Reads the token from a file such as one cloud-init's `write_files` made.
    pub fn from_file(path: &Path) -> Result<Self, crate::Error> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::Error::TokenFile {
            path: path.to_path_buf(),
            reason: e.kind().to_string(),
        })?;
        Self::new(&text)
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

/// Replaces every known secret in a string. Cheap to clone; clones share the
/// list, so a secret added once is redacted everywhere.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Vec<String>>>,
}

impl Redactor {
    /// Adds a token: the whole of it, and the 8-character prefix that
    /// `gitlab-runner register` prints as `runner=…` (GitLab's short token).
    pub fn add_token(&self, token: &str) {
        self.add(token);
        if token.len() >= 16 {
            if let Some(prefix) = token.get(..8) {
                self.add(prefix);
            }
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
    fn unreadable_token_file_names_the_file_not_the_content() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("token");
        let err = Token::from_file(&missing).expect_err("missing file");
        let text = err.to_string();
        assert!(text.contains(&missing.display().to_string()), "{text}");
        assert!(text.contains("not found"), "{text}");
    }
}
