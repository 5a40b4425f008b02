//! Docker's `/etc/docker/daemon.json`: reading a key and merging one in,
//! keeping the other keys and their order. No I/O.

use serde_json::{Map, Value};

use super::{EditError, FIX};

const WHAT: &str = "daemon.json";

/// The value of the top-level `key`; blank text (no file yet) has none.
pub fn get(text: &str, key: &str) -> Result<Option<Value>, EditError> {
    Ok(parse(text)?.and_then(|mut map| map.remove(key)))
}

/// `text` with `"key": value` at the top level.
///
/// Unchanged, byte for byte, when the key already has that value. Otherwise
/// the key is replaced where it is, or added at the end, and the document is
/// written back pretty-printed (two spaces, trailing newline): JSON has no
/// comments to lose, and dockerd does not care about layout.
pub fn merge(text: &str, key: &str, value: &Value) -> Result<String, EditError> {
    let mut map = parse(text)?.unwrap_or_default();
    if map.get(key) == Some(value) {
        return Ok(text.to_owned());
    }
    map.insert(key.to_owned(), value.clone());
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
    use serde_json::json;

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

    #[test]
    fn merge_cases() {
        let overlay2 = json!("overlay2");
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
            let out = ok(merge(input, "storage-driver", &overlay2));
            assert_eq!(out, *expected, "case {name:?}");
            assert_eq!(
                ok(merge(&out, "storage-driver", &overlay2)),
                out,
                "case {name:?}"
            );
        }
    }

    #[test]
    fn merge_into_a_tuned_file_keeps_the_rest() {
        let out = ok(merge(TUNED, "storage-driver", &json!("fuse-overlayfs")));
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
            let merged = merge(input, "storage-driver", &json!("overlay2"));
            assert_eq!(
                merged.map_err(|e| e.to_string()),
                Err(expected.to_string()),
                "case {name:?}"
            );
            assert_eq!(
                get(input, "storage-driver").map_err(|e| e.to_string()),
                Err(expected.to_string()),
                "case {name:?}"
            );
        }
    }

    #[test]
    fn get_cases() {
        let cases: &[(&str, &str, Option<serde_json::Value>)] = &[
            (TUNED, "storage-driver", Some(json!("overlay2"))),
            (
                TUNED,
                "log-opts",
                Some(json!({"max-size": "10m", "max-file": "3"})),
            ),
            (TUNED, "data-root", None),
            ("", "storage-driver", None),
            ("{}", "storage-driver", None),
        ];
        for (text, key, expected) in cases {
            assert_eq!(ok(get(text, key)), *expected, "{key} in {text:?}");
        }
    }
}
