//! Docker's `/etc/docker/daemon.json`: reading the storage driver and
//! setting it, merging the profile's `[docker.daemon]` keys, keeping the
//! other keys and their order. No I/O.

use serde_json::{Map, Value};

use super::{EditError, FIX};

const WHAT: &str = "daemon.json";

/// The prefix of a storage driver's `storage-opts` (`dm.` for devicemapper).
fn opts_prefix(driver: &str) -> &str {
    match driver {
        "devicemapper" => "dm",
        other => other,
    }
}

/// The storage driver daemon.json sets: `storage-driver`, or without it the
/// driver its `storage-opts` are for (`btrfs.min_space=…` means btrfs, as
/// dockerd would have picked it on a btrfs /var/lib/docker).
pub fn configured_driver(text: &str) -> Result<Option<String>, EditError> {
    let Some(map) = parse(text)? else {
        return Ok(None);
    };
    match map.get("storage-driver") {
        Some(Value::String(driver)) if !driver.is_empty() => return Ok(Some(driver.clone())),
        Some(Value::String(_)) | None => {}
        Some(_) => {
            return Err(EditError::Shape {
                what: WHAT.to_owned(),
                message: format!("\"storage-driver\" must be a string; {FIX}"),
            });
        }
    }
    Ok(storage_opts(&map)?.iter().find_map(|opt| {
        let (prefix, _) = opt.split_once('.')?;
        Some(match prefix {
            "dm" => "devicemapper".to_owned(),
            other => other.to_owned(),
        })
    }))
}

fn storage_opts(map: &Map<String, Value>) -> Result<Vec<String>, EditError> {
    let shape = || EditError::Shape {
        what: WHAT.to_owned(),
        message: format!("\"storage-opts\" must be a list of strings; {FIX}"),
    };
    match map.get("storage-opts") {
        None => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(shape))
            .collect(),
        Some(_) => Err(shape()),
    }
}

/// `text` with `"storage-driver": driver`, and the `storage-opts` meant for
/// another driver removed (the key too when none is left): dockerd refuses
/// to start with another driver's options. Returns the options removed.
/// Unchanged, byte for byte, when the driver is set and no option is foreign.
pub fn set_storage_driver(text: &str, driver: &str) -> Result<(String, Vec<String>), EditError> {
    let mut map = parse(text)?.unwrap_or_default();
    let opts = storage_opts(&map)?;
    let own = format!("{}.", opts_prefix(driver));
    let (kept, dropped): (Vec<String>, Vec<String>) = opts
        .into_iter()
        .partition(|opt| opt.starts_with(&own) || !opt.contains('.'));
    let wanted = Value::String(driver.to_owned());
    if map.get("storage-driver") == Some(&wanted) && dropped.is_empty() {
        return Ok((text.to_owned(), dropped));
    }
    map.insert("storage-driver".to_owned(), wanted);
    if !dropped.is_empty() {
        if kept.is_empty() {
            map.shift_remove("storage-opts");
        } else {
            map.insert(
                "storage-opts".to_owned(),
                Value::Array(kept.into_iter().map(Value::String).collect()),
            );
        }
    }
    Ok((render(map)?, dropped))
}

/// The file's top-level keys and their values (none for blank text).
pub fn settings(text: &str) -> Result<Map<String, Value>, EditError> {
    Ok(parse(text)?.unwrap_or_default())
}

/// `text` with each key of `set` holding exactly its value, written whole
/// (replaced where it is, a new key appended in `set`'s order); every other
/// key kept. Unchanged, byte for byte, when each key already holds its
/// value (objects compare without regard to their keys' order).
pub fn merge(text: &str, set: &Map<String, Value>) -> Result<String, EditError> {
    let mut map = parse(text)?.unwrap_or_default();
    let mut changed = false;
    for (key, value) in set {
        if map.get(key) != Some(value) {
            map.insert(key.clone(), value.clone());
            changed = true;
        }
    }
    if !changed {
        return Ok(text.to_owned());
    }
    render(map)
}

/// The keys of `set` whose value `text` does not hold yet, in `set`'s order.
pub fn differing(text: &str, set: &Map<String, Value>) -> Result<Vec<String>, EditError> {
    let map = parse(text)?.unwrap_or_default();
    Ok(set
        .iter()
        .filter(|(key, value)| map.get(*key) != Some(*value))
        .map(|(key, _)| key.clone())
        .collect())
}

/// A TOML key the toml crate uses for a date or time inside a serde map:
/// the one TOML type that would arrive as an object (tested below).
const TOML_DATETIME: &str = "$__toml_private_datetime";

/// Checks a value read from TOML into JSON: TOML has no null, so a null is
/// a float JSON cannot hold (nan, inf, which serde_json reads as null), and
/// an object holding only [`TOML_DATETIME`] is a TOML date or time, which
/// dockerd's JSON has no type for. `key` names the value in the message.
pub fn check_from_toml(key: &str, value: &Value) -> Result<(), String> {
    match value {
        Value::Null => Err(format!(
            "`{key}` is nan or inf, which JSON cannot hold: give a finite number"
        )),
        Value::Object(map) if map.len() == 1 && map.contains_key(TOML_DATETIME) => Err(format!(
            "`{key}` is a TOML date or time, which JSON has no type for: quote it as a string"
        )),
        Value::Object(map) => map
            .iter()
            .try_for_each(|(k, v)| check_from_toml(&format!("{key}.{k}"), v)),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, v)| check_from_toml(&format!("{key}[{i}]"), v)),
        Value::Bool(_) | Value::Number(_) | Value::String(_) => Ok(()),
    }
}

/// Pretty-printed as dockerd's documentation shows it: two spaces, a
/// trailing newline.
fn render(map: Map<String, Value>) -> Result<String, EditError> {
    let mut out =
        serde_json::to_string_pretty(&Value::Object(map)).map_err(|err| EditError::Json {
            what: WHAT.to_owned(),
            message: err.to_string(),
        })?;
    out.push('\n');
    Ok(out)
}

/// The top-level object, or `None` for blank text.
fn parse(text: &str) -> Result<Option<Map<String, Value>>, EditError> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    // serde_json's syntax errors name a line and column, never the input.
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(Some(map)),
        Ok(_) => Err(EditError::Shape {
            what: WHAT.to_owned(),
            message: format!("the top level must be a JSON object ({{ ... }}); {FIX}"),
        }),
        Err(err) => Err(EditError::Json {
            what: WHAT.to_owned(),
            message: format!("{err}; {FIX}"),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A daemon.json an operator has already tuned.
    const TUNED: &str = r#"{
    "log-driver": "json-file",
    "log-opts": {"max-size": "10m", "max-file": "3"},
    "storage-driver": "overlay2",
    "registry-mirrors": ["https://mirror.example.com"]
}"#;

    fn ok<T>(result: Result<T, EditError>) -> T {
        result.unwrap_or_else(|err| panic!("unexpected error: {err}"))
    }

    /// `set_storage_driver` on files without storage options: unchanged
    /// byte for byte when set; else replaced where it is or added at the
    /// end, pretty-printed (two spaces, trailing newline).
    #[test]
    fn set_cases_without_storage_opts() {
        let cases: &[(&str, &str, &str)] = &[
            // (name, input, expected)
            ("already there", TUNED, TUNED),
            (
                "already there, compact",
                r#"{"storage-driver":"overlay2"}"#,
                r#"{"storage-driver":"overlay2"}"#,
            ),
            ("empty", "", "{\n  \"storage-driver\": \"overlay2\"\n}\n"),
            ("blank", " \n", "{\n  \"storage-driver\": \"overlay2\"\n}\n"),
            (
                "empty object",
                "{}",
                "{\n  \"storage-driver\": \"overlay2\"\n}\n",
            ),
            (
                "replaced where it is",
                r#"{"storage-driver": "vfs", "debug": true}"#,
                "{\n  \"storage-driver\": \"overlay2\",\n  \"debug\": true\n}\n",
            ),
            (
                "added at the end, others kept in order",
                r#"{"log-driver": "journald", "debug": false, "bip": "10.1.0.1/24"}"#,
                "{\n  \"log-driver\": \"journald\",\n  \"debug\": false,\n  \"bip\": \"10.1.0.1/24\",\n  \"storage-driver\": \"overlay2\"\n}\n",
            ),
        ];
        for (name, input, expected) in cases {
            let (out, dropped) = ok(set_storage_driver(input, "overlay2"));
            assert_eq!(out, *expected, "case {name:?}");
            assert!(dropped.is_empty(), "case {name:?}");
            assert_eq!(
                ok(set_storage_driver(&out, "overlay2")).0,
                out,
                "case {name:?}"
            );
        }
    }

    #[test]
    fn another_driver_in_a_tuned_file_keeps_the_rest() {
        let (out, _) = ok(set_storage_driver(TUNED, "fuse-overlayfs"));
        let expected = r#"{
  "log-driver": "json-file",
  "log-opts": {
    "max-size": "10m",
    "max-file": "3"
  },
  "storage-driver": "fuse-overlayfs",
  "registry-mirrors": [
    "https://mirror.example.com"
  ]
}
"#;
        assert_eq!(out, expected);
    }

    #[test]
    fn errors() {
        let cases: &[(&str, &str, &str)] = &[
            // (name, input, expected message)
            (
                "malformed",
                "{\"storage-driver\": }",
                "daemon.json is not valid JSON: expected value at line 1 column 20; fix or remove the file, then run again",
            ),
            (
                "trailing comma",
                "{\"debug\": true,\n}",
                "daemon.json is not valid JSON: trailing comma at line 2 column 1; fix or remove the file, then run again",
            ),
            (
                "an array",
                "[]",
                "daemon.json: the top level must be a JSON object ({ ... }); fix or remove the file, then run again",
            ),
            (
                "a string",
                "\"overlay2\"",
                "daemon.json: the top level must be a JSON object ({ ... }); fix or remove the file, then run again",
            ),
        ];
        for (name, input, expected) in cases {
            let set = set_storage_driver(input, "overlay2");
            assert_eq!(
                set.map_err(|e| e.to_string()),
                Err(expected.to_string()),
                "case {name:?}"
            );
            assert_eq!(
                configured_driver(input).map_err(|e| e.to_string()),
                Err(expected.to_string()),
                "case {name:?}"
            );
        }
    }

    #[test]
    fn configured_driver_cases() {
        let cases: &[(&str, Option<&str>)] = &[
            ("", None),
            ("{}", None),
            (TUNED, Some("overlay2")),
            (r#"{"storage-driver": "btrfs"}"#, Some("btrfs")),
            (r#"{"storage-driver": ""}"#, None),
            (
                r#"{"storage-opts": ["btrfs.min_space=10G"]}"#,
                Some("btrfs"),
            ),
            (
                r#"{"storage-opts": ["dm.basesize=20G"]}"#,
                Some("devicemapper"),
            ),
            (r#"{"storage-opts": []}"#, None),
        ];
        for (text, expected) in cases {
            assert_eq!(ok(configured_driver(text)).as_deref(), *expected, "{text}");
        }
        for bad in [
            r#"{"storage-driver": 2}"#,
            r#"{"storage-opts": "x"}"#,
            r#"{"storage-opts": [1]}"#,
        ] {
            assert!(configured_driver(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn set_storage_driver_cases() {
        let cases: &[(&str, &str, &str, &[&str])] = &[
            // (name, input, expected, removed options)
            ("already there", TUNED, TUNED, &[]),
            (
                "own options kept, byte for byte",
                r#"{"storage-driver": "overlay2", "storage-opts": ["overlay2.size=10G"]}"#,
                r#"{"storage-driver": "overlay2", "storage-opts": ["overlay2.size=10G"]}"#,
                &[],
            ),
            (
                "empty",
                "",
                "{\n  \"storage-driver\": \"overlay2\"\n}\n",
                &[],
            ),
            (
                "btrfs and its options",
                r#"{"storage-driver": "btrfs", "storage-opts": ["btrfs.min_space=10G"], "debug": true}"#,
                "{\n  \"storage-driver\": \"overlay2\",\n  \"debug\": true\n}\n",
                &["btrfs.min_space=10G"],
            ),
            (
                "foreign options go, own stay",
                r#"{"storage-opts": ["dm.basesize=20G", "overlay2.size=5G"]}"#,
                "{\n  \"storage-opts\": [\n    \"overlay2.size=5G\"\n  ],\n  \"storage-driver\": \"overlay2\"\n}\n",
                &["dm.basesize=20G"],
            ),
        ];
        for (name, input, expected, removed) in cases {
            let (out, dropped) = ok(set_storage_driver(input, "overlay2"));
            assert_eq!(out, *expected, "case {name:?}");
            assert_eq!(dropped, *removed, "case {name:?}");
            let (again, none) = ok(set_storage_driver(&out, "overlay2"));
            assert_eq!(again, out, "case {name:?}");
            assert!(none.is_empty(), "case {name:?}");
        }
    }

    fn object(text: &str) -> Map<String, Value> {
        match serde_json::from_str(text) {
            Ok(Value::Object(map)) => map,
            other => panic!("not an object: {other:?}"),
        }
    }

    /// `merge`: unchanged byte for byte when every key holds its value;
    /// else each key replaced where it is or appended, every other key kept
    /// in its place; each case run twice.
    #[test]
    fn merge_cases() {
        let logs =
            r#"{"log-driver": "json-file", "log-opts": {"max-size": "10m", "max-file": "3"}}"#;
        let cases: &[(&str, &str, &str, &str)] = &[
            // (name, input, set, expected)
            ("already there", TUNED, logs, TUNED),
            (
                "already there, another key order inside an object",
                "{\"log-opts\":{\"max-file\":\"3\",\"max-size\":\"10m\"},\"log-driver\":\"json-file\"}",
                logs,
                "{\"log-opts\":{\"max-file\":\"3\",\"max-size\":\"10m\"},\"log-driver\":\"json-file\"}",
            ),
            ("nothing to set, blank file", "", "{}", ""),
            (
                "empty",
                "",
                r#"{"debug": true}"#,
                "{\n  \"debug\": true\n}\n",
            ),
            (
                "replaced where it is, whole",
                r#"{"log-opts": {"max-size": "1g", "compress": "true"}, "debug": true}"#,
                r#"{"log-opts": {"max-size": "10m"}}"#,
                "{\n  \"log-opts\": {\n    \"max-size\": \"10m\"\n  },\n  \"debug\": true\n}\n",
            ),
            (
                "appended in the set's order, others kept",
                r#"{"storage-driver": "overlay2", "live-restore": true}"#,
                r#"{"registry-mirrors": ["http://127.0.0.1:5000"], "log-driver": "local"}"#,
                "{\n  \"storage-driver\": \"overlay2\",\n  \"live-restore\": true,\n  \"registry-mirrors\": [\n    \"http://127.0.0.1:5000\"\n  ],\n  \"log-driver\": \"local\"\n}\n",
            ),
            (
                "a number is a number, not its string",
                r#"{"max-concurrent-downloads": "6"}"#,
                r#"{"max-concurrent-downloads": 6}"#,
                "{\n  \"max-concurrent-downloads\": 6\n}\n",
            ),
        ];
        for (name, input, set, expected) in cases {
            let set = object(set);
            let out = ok(merge(input, &set));
            assert_eq!(out, *expected, "case {name:?}");
            assert_eq!(ok(merge(&out, &set)), out, "case {name:?}");
            assert!(ok(differing(&out, &set)).is_empty(), "case {name:?}");
        }
        assert_eq!(
            ok(differing(
                TUNED,
                &object(
                    r#"{"log-driver": "local", "debug": true, "log-opts": {"max-file": "3", "max-size": "10m"}}"#
                )
            )),
            ["log-driver", "debug"]
        );
    }

    #[test]
    fn merge_refuses_what_it_cannot_edit() {
        let set = object(r#"{"debug": true}"#);
        for bad in ["{\"debug\": ", "[]", "\"x\"", "{\"a\": 1,}"] {
            assert!(merge(bad, &set).is_err(), "{bad}");
            assert!(settings(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn values_from_toml_that_json_cannot_hold() {
        let datetime: Value = serde_json::json!({"$__toml_private_datetime": "1979-05-27"});
        assert!(check_from_toml("d", &datetime).is_err());
        assert!(check_from_toml("n", &Value::Null).is_err());
        let nested = serde_json::json!({"a": [1, {"b": null}]});
        assert_eq!(
            check_from_toml("k", &nested),
            Err(
                "`k.a[1].b` is nan or inf, which JSON cannot hold: give a finite number"
                    .to_string()
            )
        );
        assert!(check_from_toml("ok", &serde_json::json!({"a": [1, "x", true, 1.5]})).is_ok());
    }
}
