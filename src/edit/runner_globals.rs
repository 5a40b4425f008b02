//! The global settings at the top of GitLab Runner's config.toml
//! (`concurrent`, `check_interval`, `shutdown_timeout`, `listen_address`;
//! `common.Config` in GitLab Runner's `common/config.go`), set keeping every
//! other byte of the file: comments, order, the `[[runners]]` entries and
//! keys the tool does not manage. No I/O.
//!
//! Only the keys of the root table are touched, so this edit is independent
//! of how many runners the file lists. Errors give positions, never the
//! file's text (it holds runner tokens).

use toml_edit::{DocumentMut, Item, Value};

use super::{EditError, FIX};
use crate::profile::Global;

const WHAT: &str = "config.toml";

/// What `set` would change, one line per key, in the operator's words.
pub fn changes(text: &str, want: &Global) -> Result<Vec<String>, EditError> {
    let doc = parse(text)?;
    let mut out = Vec::new();
    for (key, wanted) in wanted(want) {
        let current = doc.get(key);
        match (current, &wanted) {
            (Some(item), _) if !item.is_value() => return Err(not_a_value(key)),
            (None, None) => {}
            (Some(item), Some(v)) if same(item, v) => {}
            (None, Some(v)) => out.push(format!("set {key} = {}", show(v))),
            (Some(_), Some(v)) => out.push(format!("set {key} = {}", show(v))),
            (Some(_), None) => out.push(format!("remove {key}")),
        }
    }
    Ok(out)
}

/// `text` with each managed global key at its wanted value: unchanged, byte
/// for byte, when it already is. A key's comment and spacing stay with it;
/// a new key goes after the last global key, before the first table;
/// `listen_address = ""` in the profile removes the key.
pub fn set(text: &str, want: &Global) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let mut changed = false;
    for (key, wanted) in wanted(want) {
        let current = doc.get_mut(key);
        match (current, wanted) {
            (Some(item), _) if !item.is_value() => return Err(not_a_value(key)),
            (None, None) => {}
            (Some(item), Some(v)) if same(item, &v) => {}
            (Some(item), Some(mut v)) => {
                if let Some(old) = item.as_value() {
                    *v.decor_mut() = old.decor().clone();
                }
                *item = Item::Value(v);
                changed = true;
            }
            (None, Some(v)) => {
                doc.insert(key, Item::Value(v));
                changed = true;
            }
            (Some(_), None) => {
                doc.remove(key);
                changed = true;
            }
        }
    }
    Ok(if changed {
        doc.to_string()
    } else {
        text.to_owned()
    })
}

/// config.toml's `listen_address`, if it has one.
pub fn listen_address(text: &str) -> Result<Option<String>, EditError> {
    let doc = parse(text)?;
    Ok(doc
        .get("listen_address")
        .and_then(Item::as_str)
        .filter(|a| !a.is_empty())
        .map(str::to_owned))
}

/// A metrics address as GitLab Runner listens on it (`net.Listen("tcp", …)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenAddress {
    /// An IP address, a host name, or empty (every interface).
    pub host: String,
    pub port: u16,
}

impl ListenAddress {
    /// The IP address when the host is one; `None` for every interface.
    pub fn ip(&self) -> Option<std::net::IpAddr> {
        self.host.parse().ok()
    }
}

/// `host:port`, `[v6]:port` or `:port`, with a port from 1 to 65535 and a
/// host that is an IP address or a DNS name. GitLab Runner also takes a
/// host without a port (then 9252); the profile asks for the port, so what
/// the file says is what listens. The error is the reason, for a message.
pub fn parse_listen_address(text: &str) -> Result<ListenAddress, String> {
    if text.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err("contains spaces or control characters".into());
    }
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (v6, after) = rest
            .split_once(']')
            .ok_or("has a `[` without its `]`".to_string())?;
        if v6.parse::<std::net::Ipv6Addr>().is_err() {
            return Err("has no IPv6 address between `[` and `]`".into());
        }
        let port = after
            .strip_prefix(':')
            .ok_or("has no port after the IPv6 address".to_string())?;
        (v6.to_owned(), port)
    } else {
        let (host, port) = text
            .rsplit_once(':')
            .ok_or("has no port (host:port)".to_string())?;
        if host.contains("//") {
            return Err("is a URL; give only host:port".into());
        }
        if host.contains(':') {
            return Err("is an IPv6 address without brackets ([::1]:9252)".into());
        }
        (host.to_owned(), port)
    };
    let port = match port.parse::<u16>() {
        Ok(p) if p != 0 && port.chars().all(|c| c.is_ascii_digit()) => p,
        _ => return Err("has a port that is not a number from 1 to 65535".into()),
    };
    let dns_name = |h: &str| {
        h.len() <= 253
            && h.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            })
    };
    if !host.is_empty() && host.parse::<std::net::IpAddr>().is_err() && !dns_name(&host) {
        return Err("has a host that is neither an IP address nor a host name".into());
    }
    Ok(ListenAddress { host, port })
}

/// The managed keys in GitLab Runner's order, each with the value wanted
/// (`None`: absent). Keys the profile leaves out are not listed.
fn wanted(want: &Global) -> Vec<(&'static str, Option<Value>)> {
    let mut out = Vec::new();
    if let Some(address) = &want.listen_address {
        out.push((
            "listen_address",
            (!address.is_empty()).then(|| Value::from(address.as_str())),
        ));
    }
    for (key, value) in [
        ("concurrent", want.concurrent),
        ("check_interval", want.check_interval),
        ("shutdown_timeout", want.shutdown_timeout),
    ] {
        if let Some(n) = value {
            out.push((key, Some(Value::from(i64::from(n)))));
        }
    }
    out
}

fn same(item: &Item, want: &Value) -> bool {
    match (item.as_value(), want) {
        (Some(Value::Integer(a)), Value::Integer(b)) => a.value() == b.value(),
        (Some(Value::String(a)), Value::String(b)) => a.value() == b.value(),
        _ => false,
    }
}

fn show(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{:?}", s.value()),
        other => other.to_string().trim().to_owned(),
    }
}

fn not_a_value(key: &str) -> EditError {
    EditError::Shape {
        what: WHAT.to_owned(),
        message: format!(
            "`{key}` must be a plain value at the top of the file, not a table; {FIX}"
        ),
    }
}

fn parse(text: &str) -> Result<DocumentMut, EditError> {
    // The same position-only error as every config.toml edit.
    super::runner_config::parse_document(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// As `gitlab-runner register` writes it (17.x), plus an operator's comments.
    const REGISTERED: &str = r#"# Managed by hand too.
concurrent = 1 # raise on bigger hosts
check_interval = 0
connection_max_age = "15m0s"
shutdown_timeout = 0

[session_server]
  session_timeout = 1800

[[runners]]
  name = "build-1"
  url = "https://gitlab.example.com/"
  token = "glrt-t1.SECRETSECRETSECRET"
  executor = "shell"
"#;

    fn global(
        concurrent: Option<u32>,
        check: Option<u32>,
        shutdown: Option<u32>,
        listen: Option<&str>,
    ) -> Global {
        Global {
            concurrent,
            check_interval: check,
            shutdown_timeout: shutdown,
            listen_address: listen.map(str::to_owned),
        }
    }

    #[test]
    fn globals_are_set_keeping_every_other_byte() {
        let cases: Vec<(&str, String, Global, String)> = vec![
            (
                "already converged: byte-identical",
                REGISTERED.to_owned(),
                global(Some(1), Some(0), Some(0), None),
                REGISTERED.to_owned(),
            ),
            (
                "nothing managed: byte-identical",
                REGISTERED.to_owned(),
                Global::default(),
                REGISTERED.to_owned(),
            ),
            (
                "a value replaced, its comment kept",
                REGISTERED.to_owned(),
                global(Some(4), None, None, None),
                REGISTERED.replace("concurrent = 1 #", "concurrent = 4 #"),
            ),
            (
                "all four: listen_address added after the last global key",
                REGISTERED.to_owned(),
                global(Some(8), Some(5), Some(120), Some("127.0.0.1:9252")),
                REGISTERED
                    .replace("concurrent = 1 #", "concurrent = 8 #")
                    .replace("check_interval = 0", "check_interval = 5")
                    .replace(
                        "shutdown_timeout = 0\n",
                        "shutdown_timeout = 120\nlisten_address = \"127.0.0.1:9252\"\n",
                    ),
            ),
            (
                "listen_address = \"\" removes the key",
                REGISTERED.replace(
                    "check_interval = 0\n",
                    "check_interval = 0\nlisten_address = \":9252\"\n",
                ),
                global(None, None, None, Some("")),
                REGISTERED.to_owned(),
            ),
            (
                "listen_address = \"\" where there is none: byte-identical",
                REGISTERED.to_owned(),
                global(None, None, None, Some("")),
                REGISTERED.to_owned(),
            ),
            (
                "a value of the wrong type is replaced",
                REGISTERED.replace("check_interval = 0", "check_interval = \"3\""),
                global(None, Some(3), None, None),
                REGISTERED.replace("check_interval = 0", "check_interval = 3"),
            ),
            (
                "the same number written otherwise is left as it is",
                REGISTERED.replace("concurrent = 1 #", "concurrent = 0x4 #"),
                global(Some(4), None, None, None),
                REGISTERED.replace("concurrent = 1 #", "concurrent = 0x4 #"),
            ),
            (
                "no file yet: the keys alone",
                String::new(),
                global(Some(2), None, None, Some("[::1]:9252")),
                "listen_address = \"[::1]:9252\"\nconcurrent = 2\n".to_owned(),
            ),
            (
                "a file of runners only: keys go before the first table",
                "[[runners]]\n  name = \"a\"\n".to_owned(),
                global(Some(3), None, None, None),
                "concurrent = 3\n[[runners]]\n  name = \"a\"\n".to_owned(),
            ),
        ];
        for (case, text, want, expected) in cases {
            let got = set(&text, &want).expect(case);
            assert_eq!(got, expected, "{case}");
            let again = set(&got, &want).expect(case);
            assert_eq!(again, got, "{case}: second run");
            assert!(changes(&got, &want).expect(case).is_empty(), "{case}");
            // What the file parses to: the runners are untouched.
            let before = super::super::runner_config::runners(&text).expect(case);
            let after = super::super::runner_config::runners(&got).expect(case);
            assert_eq!(before, after, "{case}");
        }
    }

    #[test]
    fn changes_name_each_key() {
        let want = global(Some(4), Some(0), None, Some("127.0.0.1:9252"));
        assert_eq!(
            changes(REGISTERED, &want).expect("changes"),
            vec![
                "set listen_address = \"127.0.0.1:9252\"".to_string(),
                "set concurrent = 4".to_string(),
            ]
        );
        let with = REGISTERED.replace("shutdown_timeout = 0\n", "listen_address = \":1\"\n");
        assert_eq!(
            changes(&with, &global(None, None, None, Some(""))).expect("changes"),
            vec!["remove listen_address".to_string()]
        );
        assert_eq!(listen_address(&with).expect("read"), Some(":1".to_string()));
        assert_eq!(listen_address(REGISTERED).expect("read"), None);
    }

    #[test]
    fn malformed_files_are_errors_that_quote_nothing() {
        let want = global(Some(2), None, None, None);
        for (case, text, says) in [
            (
                "broken TOML",
                "token = \"glrt-SECRETSECRET\nconcurrent = 1\n",
                "line 1",
            ),
            (
                "a table where a value goes",
                "[concurrent]\n  a = 1\n",
                "table",
            ),
        ] {
            let err = set(text, &want).expect_err(case).to_string();
            assert!(err.contains(says), "{case}: {err}");
            assert!(!err.contains("SECRETSECRET"), "{case}: {err}");
            assert!(changes(text, &want).is_err(), "{case}");
        }
    }

    #[test]
    fn listen_addresses_parse_as_go_listens() {
        for (text, host, port) in [
            ("127.0.0.1:9252", "127.0.0.1", 9252),
            (":9252", "", 9252),
            ("[::1]:9252", "::1", 9252),
            ("[::]:1", "::", 1),
            ("localhost:65535", "localhost", 65535),
            ("metrics.corp.example:9252", "metrics.corp.example", 9252),
        ] {
            let parsed = parse_listen_address(text).expect(text);
            assert_eq!((parsed.host.as_str(), parsed.port), (host, port), "{text}");
        }
        for (text, why) in [
            ("", "no port"),
            ("127.0.0.1", "no port"),
            ("127.0.0.1:", "port"),
            ("127.0.0.1:0", "port"),
            ("127.0.0.1:65536", "port"),
            ("127.0.0.1:+80", "port"),
            ("127.0.0.1:92a", "port"),
            ("::1:9252", "without brackets"),
            ("[::1]9252", "no port"),
            ("[zz]:9252", "IPv6"),
            ("[::1:9252", "without its"),
            ("host name:9252", "spaces"),
            ("a\n:9252", "control"),
            ("ex_ample:9252", "neither"),
            ("-bad.example:9252", "neither"),
            ("http://x:9252", "URL"),
        ] {
            let err = parse_listen_address(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
        }
        let huge = format!("{}:9252", "a".repeat(300));
        assert!(parse_listen_address(&huge).is_err());
    }
}
