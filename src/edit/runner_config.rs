//! GitLab Runner's `/etc/gitlab-runner/config.toml` (format: GitLab Runner's
//! `common/config.go`): reading the `[[runners]]` entries and setting a
//! variable in each runner's `environment`, keeping the file's comments,
//! order and layout (toml_edit). No I/O.
//!
//! The token never leaves this module: [`Runner`] has no field for it, and
//! errors give positions, not the offending line.

use toml_edit::{Array, DocumentMut, Item, TableLike, Value};

use super::{EditError, FIX};

const WHAT: &str = "config.toml";

/// One `[[runners]]` entry, without its token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Runner {
    pub name: String,
    pub url: String,
    pub executor: String,
    /// `"KEY=value"` entries, in file order.
    pub environment: Vec<String>,
}

/// The `[[runners]]` entries in file order. Blank text (no runner registered
/// yet) has none.
pub fn runners(text: &str) -> Result<Vec<Runner>, EditError> {
    let mut doc = parse(text)?;
    let Some(item) = doc.get_mut("runners") else {
        return Ok(Vec::new());
    };
    runner_tables(item)?
        .into_iter()
        .enumerate()
        .map(|(i, table)| {
            Ok(Runner {
                name: string_field(table, "name", i)?,
                url: string_field(table, "url", i)?,
                executor: string_field(table, "executor", i)?,
                environment: match table.get("environment") {
                    None => Vec::new(),
                    Some(item) => env_entries(item, i)?
                        .iter()
                        .map(|&s| s.to_owned())
                        .collect(),
                },
            })
        })
        .collect()
}

/// The runner registered for `url` under `name`. URLs match ignoring trailing
/// slashes and the case of scheme and host, as GitLab treats them; names
/// match exactly.
pub fn find<'a>(runners: &'a [Runner], url: &str, name: &str) -> Option<&'a Runner> {
    let want = normalize_url(url);
    runners
        .iter()
        .find(|r| r.name == name && normalize_url(&r.url) == want)
}

/// The runners registered for `url` under any name, in file order (URLs
/// compared as in [`find`]).
pub fn at_url<'a>(runners: &'a [Runner], url: &str) -> Vec<&'a Runner> {
    let want = normalize_url(url);
    runners
        .iter()
        .filter(|r| normalize_url(&r.url) == want)
        .collect()
}

/// The value of `key` in the runner's `environment`; the last entry wins when
/// there are several, as it does in the job's shell.
pub fn env_value<'a>(runner: &'a Runner, key: &str) -> Option<&'a str> {
    runner
        .environment
        .iter()
        .rev()
        .find_map(|entry| entry.split_once('=').filter(|(k, _)| *k == key))
        .map(|(_, v)| v)
}

/// `text` with `KEY=value` in the `environment` of every `[[runners]]` entry.
///
/// Unchanged, byte for byte, when every runner already has it (or there is
/// no runner). An entry `KEY=other` is replaced in place and later duplicates
/// of `KEY` are dropped; a missing entry is appended in the array's own style;
/// a runner without `environment` gets `environment = ["KEY=value"]` after
/// its last key, indented like it, before its sub-tables.
pub fn set_env(text: &str, key: &str, value: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let Some(item) = doc.get_mut("runners") else {
        return Ok(text.to_owned());
    };
    let entry = format!("{key}={value}");
    let mut changed = false;
    for (i, table) in runner_tables(item)?.into_iter().enumerate() {
        changed |= set_env_in(table, key, &entry, i)?;
    }
    Ok(if changed {
        doc.to_string()
    } else {
        text.to_owned()
    })
}

fn set_env_in(
    table: &mut dyn TableLike,
    key: &str,
    entry: &str,
    index: usize,
) -> Result<bool, EditError> {
    let Some(item) = table.get_mut("environment") else {
        add_key_like_last(table, "environment", Array::from_iter([entry]).into());
        return Ok(true);
    };
    let same_key: Vec<usize> = env_entries(item, index)?
        .iter()
        .enumerate()
        .filter(|(_, e)| e.split_once('=').is_some_and(|(k, _)| k == key))
        .map(|(pos, _)| pos)
        .collect();
    let Some(array) = item.as_array_mut() else {
        return Err(not_env_array(index));
    };
    match same_key.split_first() {
        None => {
            push_like_last(array, entry);
            Ok(true)
        }
        Some((&first, rest)) => {
            let settled = same_key
                .iter()
                .all(|&pos| array.get(pos).and_then(Value::as_str) == Some(entry));
            if settled {
                return Ok(false);
            }
            for &pos in rest.iter().rev() {
                array.remove(pos);
            }
            array.replace(first, entry);
            Ok(true)
        }
    }
}

/// Adds `key = value` to `table` after its last key/value, indented like it
/// (`gitlab-runner register` indents by two), so it renders before the
/// table's sub-tables.
fn add_key_like_last(table: &mut dyn TableLike, key: &str, mut value: Value) {
    let last = table
        .iter()
        .filter(|(_, item)| item.is_value())
        .last()
        .map(|(k, _)| k.to_owned());
    let mut indent = String::new();
    if let Some((last_key, item)) = last.as_deref().and_then(|k| table.get_key_value_mut(k)) {
        let prefix = raw(last_key.leaf_decor().prefix());
        let line_start = prefix.rsplit('\n').next().unwrap_or("");
        if line_start.trim().is_empty() {
            line_start.clone_into(&mut indent);
        }
        // Space before an inline table's `}` stays before it.
        if let Some(last_value) = item.as_value_mut() {
            let suffix = raw(last_value.decor().suffix()).to_owned();
            if suffix.trim().is_empty() {
                last_value.decor_mut().set_suffix("");
                value.decor_mut().set_suffix(suffix);
            }
        }
    }
    table.insert(key, Item::Value(value));
    if let Some(mut new_key) = table.key_mut(key) {
        new_key.leaf_decor_mut().set_prefix(indent);
    }
}

/// Appends `entry` to `array` in the array's own layout: on its own line,
/// indented like the last entry, when entries are one a line; comments after
/// the last entry stay with it.
fn push_like_last(array: &mut Array, entry: &str) {
    let mut value = Value::from(entry);
    let trailing = raw(Some(array.trailing())).to_owned();
    let trailing_comma = array.trailing_comma();
    let Some(last) = array.iter_mut().last() else {
        array.push(entry);
        return;
    };
    let prefix = raw(last.decor().prefix());
    let indent = prefix
        .rfind('\n')
        .map_or(" ", |nl| &prefix[nl..])
        .to_owned();
    // Everything between the last entry and `]`: comments up to the last
    // line break go between the last entry and the new one.
    let after = format!("{}{trailing}", raw(last.decor().suffix()));
    let (head, tail) = after.split_at(after.rfind('\n').unwrap_or(0));
    let head = if head.trim().is_empty() { "" } else { head };
    last.decor_mut().set_suffix("");
    value.decor_mut().set_prefix(format!("{head}{indent}"));
    if trailing_comma {
        array.set_trailing(tail);
    } else {
        value.decor_mut().set_suffix(tail);
        array.set_trailing("");
    }
    array.push_formatted(value);
}

/// A decor part as text ("" when absent).
fn raw(part: Option<&toml_edit::RawString>) -> &str {
    part.and_then(toml_edit::RawString::as_str).unwrap_or("")
}

/// config.toml parsed for an edit, with the position-only error every
/// config.toml edit gives.
pub(crate) fn parse_document(text: &str) -> Result<DocumentMut, EditError> {
    parse(text)
}

fn parse(text: &str) -> Result<DocumentMut, EditError> {
    text.parse::<DocumentMut>().map_err(|err| {
        // TomlError's Display quotes the source line, which may hold the
        // token: report only where and what.
        let at = err
            .span()
            .and_then(|span| text.get(..span.start))
            .map(|before| {
                let line = before.matches('\n').count() + 1;
                let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
                format!("line {line}, column {column}: ")
            })
            .unwrap_or_default();
        EditError::Toml {
            what: WHAT.to_owned(),
            message: format!("{at}{}; {FIX}", err.message()),
        }
    })
}

/// The runner tables of `runners`: `[[runners]]` as gitlab-runner writes it,
/// or the equivalent inline `runners = [{ ... }]`.
fn runner_tables(item: &mut Item) -> Result<Vec<&mut dyn TableLike>, EditError> {
    let shape_error = || shape("`runners` must be an array of tables ([[runners]])".to_owned());
    match item {
        Item::ArrayOfTables(tables) => {
            Ok(tables.iter_mut().map(|t| t as &mut dyn TableLike).collect())
        }
        Item::Value(Value::Array(array)) => array
            .iter_mut()
            .map(|v| {
                v.as_inline_table_mut()
                    .map(|t| t as &mut dyn TableLike)
                    .ok_or_else(shape_error)
            })
            .collect(),
        _ => Err(shape_error()),
    }
}

fn string_field(table: &dyn TableLike, key: &str, index: usize) -> Result<String, EditError> {
    match table.get(key) {
        None => Ok(String::new()),
        Some(item) => item.as_str().map(str::to_owned).ok_or_else(|| {
            shape(format!(
                "`{key}` of [[runners]] entry {} must be a string",
                index + 1
            ))
        }),
    }
}

fn env_entries(item: &Item, index: usize) -> Result<Vec<&str>, EditError> {
    item.as_array()
        .and_then(|array| array.iter().map(Value::as_str).collect::<Option<Vec<_>>>())
        .ok_or_else(|| not_env_array(index))
}

fn not_env_array(index: usize) -> EditError {
    shape(format!(
        "`environment` of [[runners]] entry {} must be an array of \"KEY=value\" strings",
        index + 1
    ))
}

fn shape(problem: String) -> EditError {
    EditError::Shape {
        what: WHAT.to_owned(),
        message: format!("{problem}; {FIX}"),
    }
}

/// `text` without the `[[runners]]` entries for `url` (compared as in
/// [`find`]) and `name`: unchanged, byte for byte, when there is none; every
/// other byte of the file (other runners, comments, global keys) kept. A
/// `runners` left empty goes too.
pub fn remove_runner(text: &str, url: &str, name: &str) -> Result<String, EditError> {
    let mut doc = parse(text)?;
    let want = normalize_url(url);
    let matches = |t: &dyn TableLike| {
        t.get("name").and_then(Item::as_str) == Some(name)
            && t.get("url")
                .and_then(Item::as_str)
                .is_some_and(|u| normalize_url(u) == want)
    };
    let Some(item) = doc.get_mut("runners") else {
        return Ok(text.to_owned());
    };
    let (before, after) = match item {
        Item::ArrayOfTables(tables) => {
            let before = tables.len();
            tables.retain(|t| !matches(t));
            (before, tables.len())
        }
        Item::Value(Value::Array(array)) => {
            let before = array.len();
            array.retain(|v| !v.as_inline_table().is_some_and(|t| matches(t)));
            (before, array.len())
        }
        _ => {
            return Err(shape(
                "`runners` must be an array of tables ([[runners]])".to_owned(),
            ));
        }
    };
    if before == after {
        return Ok(text.to_owned());
    }
    if after == 0 {
        doc.remove("runners");
    }
    Ok(doc.to_string())
}

/// Scheme and host lowercased, trailing slashes dropped; the path keeps its
/// case (GitLab group paths are case-sensitive in URLs).
pub(crate) fn normalize_url(url: &str) -> String {
    let url = url.trim().trim_end_matches('/');
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    format!(
        "{}://{}{path}",
        scheme.to_ascii_lowercase(),
        host.to_ascii_lowercase()
    )
}

#[cfg(test)]
mod tests {

    #[test]
    fn remove_runner_takes_out_only_that_runner() {
        let head = "# keep me\nconcurrent = 4\n\n[session_server]\n  session_timeout = 1800\n";
        let ours = "\n[[runners]]\n  name = \"host-1\"\n  url = \"https://GitLab.example.com\"\n  token = \"t1\"\n  executor = \"shell\"\n  [runners.cache]\n";
        let other = "\n[[runners]]\n  # theirs\n  name = \"other\"\n  url = \"https://gitlab.example.com/\"\n  token = \"t2\"\n";
        for (case, text, want) in [
            (
                "absent: byte-identical",
                format!("{head}{other}"),
                format!("{head}{other}"),
            ),
            ("no runners at all", head.to_string(), head.to_string()),
            (
                "the only runner: back to the file before it",
                format!("{head}{ours}"),
                head.to_string(),
            ),
            (
                "first of two",
                format!("{head}{ours}{other}"),
                format!("{head}{other}"),
            ),
            (
                "last of two",
                format!("{head}{other}{ours}"),
                format!("{head}{other}"),
            ),
        ] {
            let got = remove_runner(&text, "https://gitlab.example.com/", "host-1").expect(case);
            assert_eq!(got, want, "{case}");
            let again = remove_runner(&got, "https://gitlab.example.com/", "host-1").expect(case);
            assert_eq!(again, got, "{case}: second run");
        }
        assert!(remove_runner("runners = 3\n", "https://x/", "a").is_err());
        assert!(remove_runner("[[runners]\n", "https://x/", "a").is_err());
    }

    use super::*;

    /// As `gitlab-runner register` writes it (17.x), plus an operator's
    /// comments: two runners, the first with other variables already set.
    const REGISTERED: &str = r#"concurrent = 2
check_interval = 0
connection_max_age = "15m0s"
shutdown_timeout = 0

[session_server]
  session_timeout = 1800

# Builds images for the platform group.
[[runners]]
  name = "build-1"
  url = "https://gitlab.example.com/"
  id = 4711
  token = "glrt-t1.SECRETSECRETSECRET"
  token_obtained_at = 2025-01-15T09:30:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  environment = ["GIT_DEPTH=10", "DOCKER_DRIVER=vfs"] # vfs until overlay works
  [runners.custom_build_dir]
  [runners.cache]
    MaxUploadedArchiveSize = 0
    [runners.cache.s3]
    [runners.cache.gcs]
    [runners.cache.azure]

[[runners]]
  name = "build-2"
  url = "https://gitlab.example.com"
  id = 4712
  token = "glrt-t2.SECRETSECRETSECRET"
  token_obtained_at = 2025-01-15T09:31:00Z
  token_expires_at = 0001-01-01T00:00:00Z
  executor = "shell"
  # no environment yet
  [runners.custom_build_dir]
  [runners.cache]
    MaxUploadedArchiveSize = 0
    [runners.cache.s3]
    [runners.cache.gcs]
    [runners.cache.azure]
"#;

    fn ok<T>(result: Result<T, EditError>) -> T {
        result.unwrap_or_else(|err| panic!("unexpected error: {err}"))
    }

    fn err<T: std::fmt::Debug>(result: Result<T, EditError>) -> EditError {
        result.expect_err("expected an error")
    }

    #[test]
    fn set_env_cases() {
        let cases: &[(&str, &str, &str)] = &[
            // (name, input, expected)
            (
                "already there",
                "[[runners]]\n  name = \"a\"\n  environment = [\"A=1\", \"DOCKER_DRIVER=overlay2\"]\n",
                "[[runners]]\n  name = \"a\"\n  environment = [\"A=1\", \"DOCKER_DRIVER=overlay2\"]\n",
            ),
            (
                "already there, odd spacing kept",
                "[[runners]]\nenvironment=[ 'DOCKER_DRIVER=overlay2' ]   # set by hand\n",
                "[[runners]]\nenvironment=[ 'DOCKER_DRIVER=overlay2' ]   # set by hand\n",
            ),
            ("empty file", "", ""),
            ("no runners", "concurrent = 1\n", "concurrent = 1\n"),
            (
                "other value replaced in place",
                "[[runners]]\n  environment = [\"A=1\", \"DOCKER_DRIVER=vfs\", \"B=2\"]\n",
                "[[runners]]\n  environment = [\"A=1\", \"DOCKER_DRIVER=overlay2\", \"B=2\"]\n",
            ),
            (
                "already there twice",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER=overlay2\", \"DOCKER_DRIVER=overlay2\"]\n",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER=overlay2\", \"DOCKER_DRIVER=overlay2\"]\n",
            ),
            (
                "duplicates collapse to the first",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER=vfs\", \"A=1\", \"DOCKER_DRIVER=aufs\"]\n",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER=overlay2\", \"A=1\"]\n",
            ),
            (
                "appended inline",
                "[[runners]]\n  environment = [\"A=1\"]\n",
                "[[runners]]\n  environment = [\"A=1\", \"DOCKER_DRIVER=overlay2\"]\n",
            ),
            (
                "appended to an empty array",
                "[[runners]]\n  environment = []\n",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER=overlay2\"]\n",
            ),
            (
                "appended one a line, comments kept",
                "[[runners]]\n  environment = [\n    # build settings\n    \"A=1\",\n    \"B=2\", # why B\n  ]\n",
                "[[runners]]\n  environment = [\n    # build settings\n    \"A=1\",\n    \"B=2\", # why B\n    \"DOCKER_DRIVER=overlay2\",\n  ]\n",
            ),
            (
                "appended one a line, no trailing comma",
                "[[runners]]\n  environment = [\n    \"A=1\",\n    \"B=2\" # why B\n  ]\n",
                "[[runners]]\n  environment = [\n    \"A=1\",\n    \"B=2\", # why B\n    \"DOCKER_DRIVER=overlay2\"\n  ]\n",
            ),
            (
                "appended inline, spacing kept",
                "[[runners]]\n  environment = [ \"A=1\" ]\n",
                "[[runners]]\n  environment = [ \"A=1\", \"DOCKER_DRIVER=overlay2\" ]\n",
            ),
            (
                "a key that only starts the same is another key",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER_X=1\"]\n",
                "[[runners]]\n  environment = [\"DOCKER_DRIVER_X=1\", \"DOCKER_DRIVER=overlay2\"]\n",
            ),
            (
                "added after the runner's keys, before its sub-tables",
                "[[runners]]\n  name = \"a\"\n  executor = \"shell\"\n  [runners.cache]\n    Type = \"s3\"\n",
                "[[runners]]\n  name = \"a\"\n  executor = \"shell\"\n  environment = [\"DOCKER_DRIVER=overlay2\"]\n  [runners.cache]\n    Type = \"s3\"\n",
            ),
            (
                "added to a runner without keys",
                "[[runners]]\n[runners.cache]\n",
                "[[runners]]\nenvironment = [\"DOCKER_DRIVER=overlay2\"]\n[runners.cache]\n",
            ),
            (
                "inline runners",
                "runners = [{ name = \"a\" }]\n",
                "runners = [{ name = \"a\", environment = [\"DOCKER_DRIVER=overlay2\"] }]\n",
            ),
        ];
        for (name, input, expected) in cases {
            let out = ok(set_env(input, "DOCKER_DRIVER", "overlay2"));
            assert_eq!(out, *expected, "case {name:?}");
            assert_eq!(
                ok(set_env(&out, "DOCKER_DRIVER", "overlay2")),
                out,
                "case {name:?}: a second run changes nothing"
            );
        }
    }

    #[test]
    fn set_env_on_a_registered_config() {
        let out = ok(set_env(REGISTERED, "DOCKER_DRIVER", "overlay2"));
        let expected = REGISTERED
            .replace(
                "\"DOCKER_DRIVER=vfs\"] # vfs",
                "\"DOCKER_DRIVER=overlay2\"] # vfs",
            )
            .replace(
                "  # no environment yet\n",
                "  environment = [\"DOCKER_DRIVER=overlay2\"]\n  # no environment yet\n",
            );
        assert_eq!(out, expected);

        let runners = ok(runners(&out));
        assert_eq!(runners.len(), 2);
        assert_eq!(
            runners[0].environment,
            ["GIT_DEPTH=10", "DOCKER_DRIVER=overlay2"]
        );
        assert_eq!(runners[1].environment, ["DOCKER_DRIVER=overlay2"]);
        // Still where gitlab-runner looks, not in a sub-table.
        let doc: DocumentMut = ok(parse(&out));
        for runner in doc["runners"].as_array_of_tables().into_iter().flatten() {
            assert!(runner["cache"].get("environment").is_none());
            assert!(runner["custom_build_dir"].get("environment").is_none());
        }
        assert_eq!(ok(set_env(&out, "DOCKER_DRIVER", "overlay2")), out);
    }

    #[test]
    fn set_env_errors() {
        let cases: &[(&str, &str, &str)] = &[
            // (name, input, part of the message)
            ("malformed", "[[runners]\nname = 1\n", "line 1, column"),
            (
                "runners is a table",
                "[runners]\nname = \"a\"\n",
                "array of tables",
            ),
            (
                "runners is a string",
                "runners = \"a\"\n",
                "array of tables",
            ),
            (
                "environment is a string",
                "[[runners]]\nenvironment = \"A=1\"\n",
                "entry 1",
            ),
            (
                "environment holds a number",
                "[[runners]]\n[[runners]]\nenvironment = [\"A=1\", 2]\n",
                "entry 2",
            ),
        ];
        for (name, input, part) in cases {
            let message = err(set_env(input, "DOCKER_DRIVER", "overlay2")).to_string();
            assert!(message.contains(part), "case {name:?}: {message}");
            assert!(
                message.starts_with("config.toml"),
                "case {name:?}: {message}"
            );
            assert!(message.ends_with(FIX), "case {name:?}: {message}");
        }
    }

    #[test]
    fn toml_errors_do_not_quote_the_file() {
        let broken =
            REGISTERED.replace("glrt-t1.SECRETSECRETSECRET\"", "glrt-t1.SECRETSECRETSECRET");
        for message in [
            err(set_env(&broken, "DOCKER_DRIVER", "overlay2")).to_string(),
            err(runners(&broken)).to_string(),
        ] {
            assert!(!message.contains("SECRET"), "{message}");
            assert!(message.contains("line 14, column"), "{message}");
        }
    }

    #[test]
    fn runners_cases() {
        let runner = |name: &str, url: &str, env: &[&str]| Runner {
            name: name.to_owned(),
            url: url.to_owned(),
            executor: "shell".to_owned(),
            environment: env.iter().map(|s| s.to_string()).collect(),
        };
        let cases: Vec<(&str, &str, Vec<Runner>)> = vec![
            ("empty", "", vec![]),
            ("blank", " \n\n", vec![]),
            ("no runners", "concurrent = 1\n", vec![]),
            (
                "registered",
                REGISTERED,
                vec![
                    runner(
                        "build-1",
                        "https://gitlab.example.com/",
                        &["GIT_DEPTH=10", "DOCKER_DRIVER=vfs"],
                    ),
                    runner("build-2", "https://gitlab.example.com", &[]),
                ],
            ),
            (
                "missing fields are empty",
                "[[runners]]\n",
                vec![Runner {
                    name: String::new(),
                    url: String::new(),
                    executor: String::new(),
                    environment: vec![],
                }],
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(ok(runners(input)), expected, "case {name:?}");
        }
        let message = err(runners("[[runners]]\nname = 3\n")).to_string();
        assert!(
            message.contains("`name` of [[runners]] entry 1"),
            "{message}"
        );
        assert!(matches!(err(runners("a = ")), EditError::Toml { .. }));
    }

    #[test]
    fn find_cases() {
        let all = ok(runners(REGISTERED));
        let cases: &[(&str, &str, Option<&str>)] = &[
            // (url, name, expected url of the match)
            (
                "https://gitlab.example.com/",
                "build-1",
                Some("https://gitlab.example.com/"),
            ),
            (
                "https://gitlab.example.com",
                "build-1",
                Some("https://gitlab.example.com/"),
            ),
            (
                "HTTPS://GitLab.Example.com//",
                "build-2",
                Some("https://gitlab.example.com"),
            ),
            ("https://gitlab.example.com/", "Build-1", None),
            ("https://gitlab.com/", "build-1", None),
            ("https://gitlab.example.com/sub", "build-1", None),
        ];
        for (url, name, expected) in cases {
            let found = find(&all, url, name).map(|r| r.url.as_str());
            assert_eq!(found, *expected, "{url} {name}");
        }
    }

    #[test]
    fn at_url_cases() {
        let all = ok(runners(REGISTERED));
        let cases: &[(&str, &[&str])] = &[
            ("https://gitlab.example.com/", &["build-1", "build-2"]),
            ("HTTPS://gitlab.example.com", &["build-1", "build-2"]),
            ("https://gitlab.com/", &[]),
            ("https://gitlab.example.com/sub", &[]),
        ];
        for (url, expected) in cases {
            let names: Vec<&str> = at_url(&all, url).iter().map(|r| r.name.as_str()).collect();
            assert_eq!(names, *expected, "{url}");
        }
    }

    #[test]
    fn env_value_cases() {
        let runner = |env: &[&str]| Runner {
            name: String::new(),
            url: String::new(),
            executor: String::new(),
            environment: env.iter().map(|s| s.to_string()).collect(),
        };
        let cases: &[(&[&str], Option<&str>)] = &[
            (&["DOCKER_DRIVER=overlay2"], Some("overlay2")),
            (
                &["A=1", "DOCKER_DRIVER=vfs", "DOCKER_DRIVER=overlay2"],
                Some("overlay2"),
            ),
            (&["DOCKER_DRIVER="], Some("")),
            (&["DOCKER_DRIVER=a=b"], Some("a=b")),
            (&["DOCKER_DRIVER_X=1", "DOCKER_DRIVER"], None),
            (&[], None),
        ];
        for (env, expected) in cases {
            assert_eq!(
                env_value(&runner(env), "DOCKER_DRIVER"),
                *expected,
                "{env:?}"
            );
        }
    }
}
