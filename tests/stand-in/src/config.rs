//! config.toml: read, normalised and written the way GitLab Runner 17.4 does.
//!
//! The real runner decodes the file into its `common.Config` struct and, on
//! every save, re-encodes the *whole* struct with BurntSushi/toml
//! (`common/config.go` `SaveConfig` → `defaultConfigSaver.Save`:
//! `os.MkdirAll(dir, 0700)` then `os.WriteFile(path, data, 0o600)`). So a
//! save drops every comment and any key the struct does not know, fills in
//! defaults for missing keys (`connection_max_age = "15m0s"`, `id = 0`, …),
//! and reorders keys into struct order. The encoder below copies
//! BurntSushi's layout: plain keys before sub-tables, two spaces of indent per
//! table level, a blank line before top-level tables and before every
//! `[[array-of-tables]]` entry, arrays as `["a", "b"]`.
//!
//! Differences, on purpose: keys the real struct does not know are *kept*
//! (after the known ones) instead of silently dropped, so tests can see
//! them; and the write is atomic (temp file + fsync + rename, keeping an
//! existing file's mode and owner) where the real one truncates in place.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Go's zero `time.Time` as BurntSushi writes it.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
    /// RFC 3339 text, written bare.
    Datetime(String),
    Array(Vec<Value>),
    Table(Table),
}

/// An ordered table.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table(pub Vec<(String, Value)>);

impl Table {
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_mut(&mut self, key: &str) -> Option<&mut Value> {
        self.0.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    pub fn get_str(&self, key: &str) -> Option<&str> {
        match self.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    pub fn set(&mut self, key: &str, value: Value) {
        match self.get_mut(key) {
            Some(v) => *v = value,
            None => self.0.push((key.to_string(), value)),
        }
    }

    fn set_default(&mut self, key: &str, value: Value) {
        if self.get(key).is_none() {
            self.0.push((key.to_string(), value));
        }
    }

    /// Stable sort: keys in `known` by their place there, others after, in
    /// their original order.
    fn order_by(&mut self, known: &[&str]) {
        self.0
            .sort_by_key(|(k, _)| known.iter().position(|n| n == k).unwrap_or(known.len()));
    }

    /// The `[[runners]]` entries.
    pub fn runners(&self) -> Vec<&Table> {
        match self.get("runners") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|v| match v {
                    Value::Table(t) => Some(t),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    pub fn runners_mut(&mut self) -> &mut Vec<Value> {
        if !matches!(self.get("runners"), Some(Value::Array(_))) {
            self.set("runners", Value::Array(Vec::new()));
        }
        match self.get_mut("runners") {
            Some(Value::Array(items)) => items,
            _ => unreachable!("runners was just made an array"),
        }
    }
}

/// `common.Config` field order (17.x): plain keys; tables come after anyway.
const TOP_KEYS: &[&str] = &[
    "listen_address",
    "concurrent",
    "check_interval",
    "log_level",
    "log_format",
    "user",
    "sentry_dsn",
    "connection_max_age",
    "shutdown_timeout",
    "session_server",
    "runners",
];

/// `common.RunnerConfig` → `RunnerCredentials` → `RunnerSettings` order.
const RUNNER_KEYS: &[&str] = &[
    "name",
    "limit",
    "output_limit",
    "request_concurrency",
    "unhealthy_requests_limit",
    "unhealthy_interval",
    "job_status_final_update_retry_limit",
    "url",
    "id",
    "token",
    "token_obtained_at",
    "token_expires_at",
    "tls-ca-file",
    "tls-cert-file",
    "tls-key-file",
    "executor",
    "builds_dir",
    "cache_dir",
    "clone_url",
    "environment",
    "proxy_exec",
    "pre_clone_script",
    "post_clone_script",
    "pre_get_sources_script",
    "post_get_sources_script",
    "pre_build_script",
    "post_build_script",
    "debug_trace_disabled",
    "safe_directory_checkout",
    "clean_git_config",
    "shell",
    "custom_build_dir",
    "referees",
    "cache",
    "feature_flags",
    "instance",
    "ssh",
    "docker",
    "parallels",
    "virtualbox",
    "machine",
    "kubernetes",
    "custom",
    "autoscaler",
];

const CACHE_KEYS: &[&str] = &[
    "Type",
    "Path",
    "Shared",
    "MaxUploadedArchiveSize",
    "s3",
    "gcs",
    "azure",
];

const DOCKER_KEYS: &[&str] = &[
    "host",
    "hostname",
    "helper_image",
    "tls_verify",
    "image",
    "privileged",
    "disable_entrypoint_overwrite",
    "oom_kill_disable",
    "disable_cache",
    "volumes",
    "shm_size",
    "network_mtu",
];

/// The file `gitlab-runner install` or a first `register` writes:
/// `common.NewConfig()` encoded.
pub fn new_config() -> Table {
    let mut t = Table::default();
    normalize(&mut t);
    t
}

/// What decoding into `common.Config` and encoding again does to a table:
/// defaults for missing keys, struct order, sorted map keys.
pub fn normalize(root: &mut Table) {
    root.set_default("concurrent", Value::Int(1));
    root.set_default("check_interval", Value::Int(0));
    root.set_default("connection_max_age", Value::Str("15m0s".into()));
    root.set_default("shutdown_timeout", Value::Int(0));
    if !matches!(root.get("session_server"), Some(Value::Table(_))) {
        root.set("session_server", Value::Table(Table::default()));
    }
    if let Some(Value::Table(s)) = root.get_mut("session_server") {
        s.set_default("session_timeout", Value::Int(1800));
        s.order_by(&["listen_address", "advertise_address", "session_timeout"]);
    }
    if let Some(Value::Array(items)) = root.get_mut("runners") {
        for item in items.iter_mut() {
            if let Value::Table(r) = item {
                normalize_runner(r);
            }
        }
    }
    root.order_by(TOP_KEYS);
}

fn normalize_runner(r: &mut Table) {
    r.set_default("name", Value::Str(String::new()));
    r.set_default("url", Value::Str(String::new()));
    r.set_default("id", Value::Int(0));
    r.set_default("token", Value::Str(String::new()));
    r.set_default("token_obtained_at", Value::Datetime(ZERO_TIME.into()));
    r.set_default("token_expires_at", Value::Datetime(ZERO_TIME.into()));
    r.set_default("executor", Value::Str(String::new()));
    if let Some(Value::Table(c)) = r.get_mut("cache") {
        c.set_default("MaxUploadedArchiveSize", Value::Int(0));
        c.order_by(CACHE_KEYS);
    }
    if let Some(Value::Table(d)) = r.get_mut("docker") {
        d.order_by(DOCKER_KEYS);
    }
    // A Go map: BurntSushi writes its keys sorted.
    if let Some(Value::Table(f)) = r.get_mut("feature_flags") {
        f.0.sort_by(|a, b| a.0.cmp(&b.0));
    }
    r.order_by(RUNNER_KEYS);
}

// ---------------------------------------------------------------- parsing

pub fn parse(text: &str) -> Result<Table, String> {
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e: toml_edit::TomlError| e.to_string().trim().replace('\n', " "))?;
    Ok(from_table(doc.as_table()))
}

fn from_table(t: &toml_edit::Table) -> Table {
    let mut out = Table::default();
    for (k, item) in t.iter() {
        if let Some(v) = from_item(item) {
            out.0.push((k.to_string(), v));
        }
    }
    out
}

fn from_item(item: &toml_edit::Item) -> Option<Value> {
    match item {
        toml_edit::Item::None => None,
        toml_edit::Item::Value(v) => Some(from_value(v)),
        toml_edit::Item::Table(t) => Some(Value::Table(from_table(t))),
        toml_edit::Item::ArrayOfTables(a) => Some(Value::Array(
            a.iter().map(|t| Value::Table(from_table(t))).collect(),
        )),
    }
}

fn from_value(v: &toml_edit::Value) -> Value {
    match v {
        toml_edit::Value::String(s) => Value::Str(s.value().clone()),
        toml_edit::Value::Integer(i) => Value::Int(*i.value()),
        toml_edit::Value::Float(f) => Value::Float(*f.value()),
        toml_edit::Value::Boolean(b) => Value::Bool(*b.value()),
        toml_edit::Value::Datetime(d) => Value::Datetime(d.value().to_string()),
        toml_edit::Value::Array(a) => Value::Array(a.iter().map(from_value).collect()),
        toml_edit::Value::InlineTable(t) => {
            let mut out = Table::default();
            for (k, v) in t.iter() {
                out.0.push((k.to_string(), from_value(v)));
            }
            Value::Table(out)
        }
    }
}

// ---------------------------------------------------------------- encoding

fn is_array_of_tables(v: &Value) -> bool {
    matches!(v, Value::Array(items) if !items.is_empty() && items.iter().all(|i| matches!(i, Value::Table(_))))
}

fn is_section(v: &Value) -> bool {
    matches!(v, Value::Table(_)) || is_array_of_tables(v)
}

fn quote_key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_string()
    } else {
        quote_str(k)
    }
}

/// BurntSushi's `dblQuotedReplacer`.
fn quote_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\u{c}' => out.push_str("\\f"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04x}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn encode_value(v: &Value) -> String {
    match v {
        Value::Str(s) => quote_str(s),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => {
            if f.is_nan() {
                "nan".into()
            } else if f.is_infinite() {
                if *f > 0.0 {
                    "inf".into()
                } else {
                    "-inf".into()
                }
            } else {
                let s = format!("{f}");
                if s.contains('.') { s } else { format!("{s}.0") }
            }
        }
        Value::Bool(b) => b.to_string(),
        Value::Datetime(d) => d.clone(),
        Value::Array(items) => {
            let parts: Vec<String> = items.iter().map(encode_value).collect();
            format!("[{}]", parts.join(", "))
        }
        Value::Table(t) => {
            let parts: Vec<String> =
                t.0.iter()
                    .map(|(k, v)| format!("{} = {}", quote_key(k), encode_value(v)))
                    .collect();
            format!("{{{}}}", parts.join(", "))
        }
    }
}

/// The whole file, as BurntSushi's encoder lays out `common.Config`.
pub fn encode(root: &Table) -> String {
    let mut out = String::new();
    encode_body(&mut out, &[], root);
    out
}

fn encode_body(out: &mut String, path: &[String], t: &Table) {
    let indent = "  ".repeat(path.len());
    for (k, v) in t.0.iter().filter(|(_, v)| !is_section(v)) {
        // An empty []*RunnerConfig is an array of tables with no entries:
        // BurntSushi writes nothing for it.
        if path.is_empty() && k == "runners" && matches!(v, Value::Array(a) if a.is_empty()) {
            continue;
        }
        out.push_str(&format!("{indent}{} = {}\n", quote_key(k), encode_value(v)));
    }
    for (k, v) in t.0.iter().filter(|(_, v)| is_section(v)) {
        let mut sub = path.to_vec();
        sub.push(k.clone());
        let header: Vec<String> = sub.iter().map(|s| quote_key(s)).collect();
        let header = header.join(".");
        match v {
            Value::Table(st) => {
                if sub.len() == 1 && !out.is_empty() {
                    out.push('\n');
                }
                out.push_str(&format!("{indent}[{header}]\n"));
                encode_body(out, &sub, st);
            }
            Value::Array(items) => {
                for item in items {
                    if let Value::Table(st) = item {
                        if !out.is_empty() {
                            out.push('\n');
                        }
                        out.push_str(&format!("{indent}[[{header}]]\n"));
                        encode_body(out, &sub, st);
                    }
                }
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------- files

/// `config.LoadConfig`: a missing file is not an error (nothing loaded).
pub fn load(path: &Path) -> Result<Option<Table>, String> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let mut t = parse(&text)?;
            normalize(&mut t);
            Ok(Some(t))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("open {}: {}", path.display(), e)),
    }
}

/// Create `dir` and missing parents with mode 0700 (`os.MkdirAll(dir, 0700)`).
pub fn make_dir(dir: &Path) -> std::io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// Write the whole file atomically: a new file gets mode 0600; an existing
/// one keeps its mode and owner (as the real in-place write does).
pub fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    make_dir(dir)?;
    let existing = fs::metadata(path).ok();
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "config.toml".into());
    let tmp = dir.join(format!(".{name}.stand-in.{}", std::process::id()));
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(data)?;
        if let Some(meta) = &existing {
            f.set_permissions(fs::Permissions::from_mode(meta.mode() & 0o7777))?;
            // Only root can give a file away; anyone else keeps their own.
            if nix::unistd::geteuid().is_root() {
                std::os::unix::fs::fchown(&f, Some(meta.uid()), Some(meta.gid()))?;
            }
        }
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_config_is_what_install_writes() {
        assert_eq!(
            encode(&new_config()),
            "concurrent = 1\ncheck_interval = 0\nconnection_max_age = \"15m0s\"\nshutdown_timeout = 0\n\n[session_server]\n  session_timeout = 1800\n"
        );
    }

    #[test]
    fn real_17_4_file_round_trips_byte_for_byte() {
        // A config.toml written by gitlab-runner 17.4.0 (docker executor).
        let real = include_str!("../fixtures/real-17.4-docker.toml");
        let mut t = parse(real).expect("parses");
        normalize(&mut t);
        assert_eq!(encode(&t), real);
    }

    #[test]
    fn comments_are_dropped_and_defaults_filled_like_the_real_one() {
        let text = "# managed by hand\nconcurrent = 4\n\n[[runners]]\n  name = \"a\" # first\n  url = \"https://x/\"\n  token = \"t\"\n  executor = \"shell\"\n  [runners.cache]\n";
        let mut t = parse(text).expect("parses");
        normalize(&mut t);
        let out = encode(&t);
        assert!(!out.contains('#'));
        assert!(out.starts_with("concurrent = 4\ncheck_interval = 0\n"));
        assert!(
            out.contains("  id = 0\n  token = \"t\"\n  token_obtained_at = 0001-01-01T00:00:00Z\n")
        );
        assert!(out.contains("  [runners.cache]\n    MaxUploadedArchiveSize = 0\n"));
    }

    #[test]
    fn unknown_keys_are_kept_after_known_ones() {
        let text = "[[runners]]\nmy_note = \"x\"\nname = \"a\"\n";
        let mut t = parse(text).expect("parses");
        normalize(&mut t);
        let out = encode(&t);
        let name = out.find("name = \"a\"").expect("name");
        let note = out.find("my_note = \"x\"").expect("note");
        assert!(name < note);
    }

    #[test]
    fn strings_are_escaped_as_burntsushi_does() {
        assert_eq!(quote_str("a\"b\\c\nd\u{1}"), "\"a\\\"b\\\\c\\nd\\u0001\"");
        assert_eq!(quote_key("DOCKER_DRIVER"), "DOCKER_DRIVER");
        assert_eq!(quote_key("a.b"), "\"a.b\"");
    }

    #[test]
    fn malformed_input_is_an_error() {
        assert!(parse("concurrent = \n[[runners]").is_err());
    }
}
