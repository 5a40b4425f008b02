//! The one way user data becomes YAML: a small document tree and its
//! emitter. No value is ever pasted into the text: every string goes
//! through [`scalar`], which writes it as a literal block only when it is
//! plain printable ASCII lines, and otherwise as a double-quoted scalar
//! with everything outside printable ASCII escaped. PyYAML (cloud-init's
//! loader) treats U+0085, U+2028 and U+2029 as line breaks and refuses raw
//! C0/C1 controls, so none of them ever appears unescaped; whatever a value
//! holds, the parsed document has exactly the keys the tree has.

use std::fmt::Write as _;

/// A node of the document.
#[derive(Clone, Debug, PartialEq)]
pub enum Node {
    Str(String),
    Int(i64),
    Bool(bool),
    /// A mapping with fixed keys (the tool's own: `[a-z_]+`).
    Map(Vec<(&'static str, Node)>),
    Seq(Vec<Node>),
}

impl Node {
    pub fn str(s: impl Into<String>) -> Self {
        Node::Str(s.into())
    }

    /// The same tree as JSON, for tests that compare with what a YAML
    /// loader parsed.
    #[cfg(test)]
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Node::Str(s) => serde_json::Value::String(s.clone()),
            Node::Int(i) => serde_json::Value::from(*i),
            Node::Bool(b) => serde_json::Value::Bool(*b),
            Node::Map(entries) => serde_json::Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), v.to_json()))
                    .collect(),
            ),
            Node::Seq(items) => serde_json::Value::Array(items.iter().map(Node::to_json).collect()),
        }
    }
}

/// The document for a top-level mapping, after `header` (comment lines).
pub fn to_string(header: &str, root: &[(&'static str, Node)]) -> String {
    let mut out = header.to_string();
    write_map(&mut out, root, 0, false);
    out
}

fn key(k: &str) -> &str {
    assert!(
        !k.is_empty() && k.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
        "keys are the tool's own identifiers"
    );
    k
}

/// Writes `entries` at `indent`; the first line starts with `- ` two
/// columns to the left when the map is a sequence item.
fn write_map(out: &mut String, entries: &[(&'static str, Node)], indent: usize, item: bool) {
    for (i, (k, v)) in entries.iter().enumerate() {
        if i == 0 && item {
            let _ = write!(out, "{}- ", " ".repeat(indent - 2));
        } else {
            out.push_str(&" ".repeat(indent));
        }
        out.push_str(key(k));
        out.push(':');
        write_value(out, v, indent);
    }
}

fn write_value(out: &mut String, v: &Node, indent: usize) {
    match v {
        Node::Str(s) => {
            out.push(' ');
            out.push_str(&scalar(s, indent + 2));
            out.push('\n');
        }
        Node::Int(i) => {
            let _ = writeln!(out, " {i}");
        }
        Node::Bool(b) => {
            let _ = writeln!(out, " {b}");
        }
        Node::Map(entries) if entries.is_empty() => out.push_str(" {}\n"),
        Node::Seq(items) if items.is_empty() => out.push_str(" []\n"),
        Node::Map(entries) => {
            out.push('\n');
            write_map(out, entries, indent + 2, false);
        }
        Node::Seq(items) => {
            out.push('\n');
            for item in items {
                match item {
                    Node::Map(entries) if !entries.is_empty() => {
                        write_map(out, entries, indent + 4, true);
                    }
                    other => {
                        let _ = write!(out, "{}-", " ".repeat(indent + 2));
                        write_value(out, other, indent + 2);
                    }
                }
            }
        }
    }
}

/// A string as a YAML scalar whose lines (after the first) are indented by
/// `indent`: a literal block for readable multi-line text, a plain scalar
/// for an absolute path, else double-quoted and escaped.
pub fn scalar(s: &str, indent: usize) -> String {
    if is_plain_path(s) {
        return s.to_string();
    }
    if let Some(block) = literal_block(s, indent) {
        return block;
    }
    double_quoted(s)
}

/// `/etc/x.toml` and the like: nothing in them is special to YAML.
fn is_plain_path(s: &str) -> bool {
    s.len() > 1
        && s.starts_with('/')
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'_' | b'.' | b'-'))
}

fn literal_block(s: &str, indent: usize) -> Option<String> {
    let printable = |c: char| c == '\n' || c == '\t' || (' '..='~').contains(&c);
    if !s.contains('\n') || !s.chars().all(printable) {
        return None;
    }
    let body = s.trim_end_matches('\n');
    let first = body.lines().find(|l| !l.is_empty())?;
    let trailing = s.len() - body.len();
    let chomp = match trailing {
        0 => "-",
        1 => "",
        _ => "+",
    };
    // Text whose first line starts with a blank needs its indentation
    // stated, or the loader would take that blank as indentation.
    let indicator = if first.starts_with([' ', '\t']) || body.starts_with('\n') {
        "2"
    } else {
        ""
    };
    let mut out = format!("|{indicator}{chomp}");
    let pad = " ".repeat(indent);
    for line in s[..body.len()].split('\n') {
        out.push('\n');
        if !line.is_empty() {
            out.push_str(&pad);
            out.push_str(line);
        }
    }
    // Kept trailing line breaks (`|+`) beyond the one that ends the scalar.
    for _ in 1..trailing {
        out.push('\n');
    }
    Some(out)
}

/// `s` double-quoted: printable ASCII as is, `"` and `\` escaped, every
/// other character as `\n`, `\t`, `\xXX`, `\uXXXX` or `\UXXXXXXXX`.
pub fn double_quoted(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            ' '..='~' => out.push(c),
            c if (c as u32) <= 0xFF => {
                let _ = write!(out, "\\x{:02X}", c as u32);
            }
            c if (c as u32) <= 0xFFFF => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => {
                let _ = write!(out, "\\U{:08X}", c as u32);
            }
        }
    }
    out.push('"');
    out
}

/// The inverse of [`double_quoted`] (and of plain scalars): for reading
/// back a value the tool wrote. `None` for anything it would not write.
pub fn parse_scalar(text: &str) -> Option<String> {
    let Some(inner) = text.strip_prefix('"') else {
        return (!text.is_empty() && !text.contains([' ', '"', '\\', '#']))
            .then(|| text.to_string());
    };
    let inner = inner.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '"' {
            return None;
        }
        if c != '\\' {
            out.push(c);
            continue;
        }
        let hex = |chars: &mut std::str::Chars, n: usize| -> Option<char> {
            let digits: String = chars.by_ref().take(n).collect();
            (digits.len() == n)
                .then(|| u32::from_str_radix(&digits, 16).ok())
                .flatten()
                .and_then(char::from_u32)
        };
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'x' => out.push(hex(&mut chars, 2)?),
            'u' => out.push(hex(&mut chars, 4)?),
            'U' => out.push(hex(&mut chars, 8)?),
            _ => return None,
        }
    }
    Some(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Strings that have broken YAML emitters: line breaks PyYAML knows
    /// and JSON does not, controls, indicators, quotes, comments, keys.
    pub fn hostile_corpus() -> Vec<String> {
        let mut corpus: Vec<String> = [
            "",
            " ",
            "x",
            "a\u{2028}zz: injected",
            "a\u{2029}runcmd: [reboot]",
            "a\u{0085}- b",
            "a\rb",
            "a\r\nb: c",
            "\n",
            "\n\n",
            "a\n",
            "a\n\n",
            " a\n b\n",
            "\ta\n",
            "x\n  y: 1\nz",
            "key: value",
            "a #comment",
            "# comment",
            "'single'",
            "\"double\"",
            "back\\slash",
            "\\x41",
            "--- ",
            "...",
            "---\nruncmd: [x]",
            "*alias",
            "&anchor a",
            "!!python/object:os.system",
            "!tag",
            "|",
            "|-\n x",
            ">",
            "%YAML 1.1",
            "@at",
            "`tick",
            "{a: b}",
            "[a, b]",
            "- a",
            "? a",
            ": a",
            "a: ",
            "yes",
            "no",
            "on",
            "off",
            "null",
            "~",
            "0644",
            "0x10",
            "1e3",
            ".inf",
            "true",
            "\u{feff}bom",
            "\u{0}nul",
            "\u{7f}del",
            "\u{80}c1",
            "\u{9f}",
            "\u{a0}nbsp",
            "\u{200b}zw",
            "\u{d7ff}\u{e000}\u{fffd}",
            "\u{ffff}",
            "\u{1f600} emoji",
            "\u{10ffff}",
            "line\u{2028}",
            "/etc/plain/path",
            "/",
            "/with space",
            "trailing space \n next",
            "a\u{b}b\u{c}c",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for c in (0u32..0x20)
            .chain(0x7f..0xa0)
            .chain([0x2028, 0x2029, 0xfeff])
        {
            let c = char::from_u32(c).expect("char");
            corpus.push(format!("a{c}b: c"));
            corpus.push(format!("{c}\nz: 1\n"));
        }
        corpus
    }

    pub fn document(value: &str) -> Vec<(&'static str, Node)> {
        vec![
            (
                "write_files",
                Node::Seq(vec![
                    Node::Map(vec![
                        ("path", Node::str(value)),
                        ("content", Node::str(value)),
                    ]),
                    Node::Map(vec![
                        ("path", Node::str("/etc/x")),
                        ("content", Node::str(value)),
                    ]),
                ]),
            ),
            (
                "power_state",
                Node::Map(vec![
                    ("message", Node::str(value)),
                    ("timeout", Node::Int(30)),
                    ("condition", Node::Bool(true)),
                ]),
            ),
            ("zz", Node::Seq(vec![Node::str(value), Node::str("end")])),
        ]
    }

    #[test]
    fn every_hostile_string_reads_back_as_itself() {
        for value in hostile_corpus() {
            for indent in [2, 6] {
                let text = double_quoted(&value);
                assert_eq!(
                    parse_scalar(&text).as_deref(),
                    Some(value.as_str()),
                    "{text}"
                );
                let s = scalar(&value, indent);
                assert!(
                    s.chars()
                        .all(|c| c == '\n' || c == '\t' || (' '..='~').contains(&c)),
                    "only printable ASCII, tabs and \\n: {s:?}"
                );
            }
        }
    }

    #[test]
    fn readable_forms_for_ordinary_text() {
        let cases = [
            (
                "/etc/runner-provision/profile.toml",
                "/etc/runner-provision/profile.toml",
            ),
            ("0644", "\"0644\""),
            ("root:root", "\"root:root\""),
            ("a\nb\n", "|\n    a\n    b"),
            ("a\nb", "|-\n    a\n    b"),
            ("a\n\nb\n\n", "|+\n    a\n\n    b\n"),
            ("  x\ny\n", "|2\n      x\n    y"),
            ("a\u{2028}b\n", "\"a\\u2028b\\n\""),
        ];
        for (value, expected) in cases {
            assert_eq!(scalar(value, 4), expected, "{value:?}");
        }
    }

    #[test]
    fn the_emitter_nests_sequences_of_maps() {
        let text = to_string("#cloud-config\n", &document("v"));
        assert_eq!(
            text,
            "#cloud-config\nwrite_files:\n  - path: \"v\"\n    content: \"v\"\n  - path: /etc/x\n    content: \"v\"\npower_state:\n  message: \"v\"\n  timeout: 30\n  condition: true\nzz:\n  - \"v\"\n  - \"end\"\n"
        );
    }
}
