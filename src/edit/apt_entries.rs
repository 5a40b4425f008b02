//! The entries of apt's source files, in both of apt's forms (sources.list(5)):
//! one-line `.list` files (`deb [opts] URI SUITE COMPONENT…`) and deb822
//! `.sources` stanzas. Recognises a repository whatever the file's name and
//! spelling (`signed-by=`/`Signed-By:`, `arch=`, a URI with or without its
//! trailing slash), decides whether an existing entry already serves it, and
//! edits an entry's suite in place. No I/O.

use super::EditError;

/// The two file formats apt reads from sources.list.d.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `*.list` (and /etc/apt/sources.list): one entry per line.
    OneLine,
    /// `*.sources`: deb822 stanzas separated by blank lines.
    Deb822,
}

impl Format {
    /// The format apt reads a file in, from its name; `None` for names apt
    /// ignores in sources.list.d (`.bak`, `.save`, `.disabled`…).
    pub fn of(path: &str) -> Option<Format> {
        let name = path.rsplit('/').next().unwrap_or(path);
        let valid = |stem: &str| {
            !stem.is_empty()
                && stem
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        };
        if let Some(stem) = name.strip_suffix(".list") {
            return valid(stem).then_some(Format::OneLine);
        }
        if let Some(stem) = name.strip_suffix(".sources") {
            return valid(stem).then_some(Format::Deb822);
        }
        None
    }
}

/// One enabled entry (a line, or a stanza) of a source file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `deb`, `deb-src`.
    pub types: Vec<String>,
    pub uris: Vec<String>,
    pub suites: Vec<String>,
    pub components: Vec<String>,
    /// The `signed-by` value as written: keyring paths or fingerprints,
    /// comma- or space-separated; an inline key is kept as `(inline key)`.
    pub signed_by: Option<String>,
    /// 0-based lines of the file this entry spans.
    lines: std::ops::Range<usize>,
}

impl Entry {
    /// The keyring files named by `signed-by` (not fingerprints or inline keys).
    pub fn keyrings(&self) -> Vec<&str> {
        self.signed_by
            .as_deref()
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|s| s.starts_with('/'))
            .collect()
    }

    fn is_binary(&self) -> bool {
        self.types.iter().any(|t| t == "deb")
    }

    fn has_uri(&self, uri: &str) -> bool {
        let want = normalize_uri(uri);
        self.uris.iter().any(|u| normalize_uri(u) == want)
    }

    /// Serves `suite` and `component` (a flat repository has no component).
    fn serves(&self, suite: &str, component: &str) -> bool {
        let suite_ok = self
            .suites
            .iter()
            .any(|s| s.trim_end_matches('/') == suite.trim_end_matches('/'));
        let component_ok = component.is_empty()
            || component
                .split_whitespace()
                .all(|c| self.components.iter().any(|have| have == c));
        suite_ok && component_ok
    }
}

/// A URI as apt compares them: scheme and host in lower case, `file:///x`
/// as `file:/x`, no trailing slash.
pub fn normalize_uri(uri: &str) -> String {
    let uri = uri.trim();
    let uri = match uri.strip_prefix("file://") {
        Some(rest) if rest.starts_with('/') => format!("file:{rest}"),
        _ => uri.to_string(),
    };
    let (head, path) = match uri.find("://") {
        Some(i) => {
            let after = &uri[i + 3..];
            let end = after.find('/').map_or(uri.len(), |j| i + 3 + j);
            (uri[..end].to_ascii_lowercase(), &uri[end..])
        }
        None => match uri.split_once(':') {
            Some((scheme, _)) => (scheme.to_ascii_lowercase(), &uri[scheme.len()..]),
            None => (String::new(), uri.as_str()),
        },
    };
    format!("{head}{}", path.trim_end_matches('/'))
}

/// The enabled entries of a source file's `text`.
pub fn parse(text: &str, format: Format, what: &str) -> Result<Vec<Entry>, EditError> {
    match format {
        Format::OneLine => parse_one_line(text, what),
        Format::Deb822 => parse_deb822(text, what),
    }
}

fn shape(what: &str, line: usize, message: &str) -> EditError {
    EditError::Shape {
        what: what.to_string(),
        message: format!("line {}: {message}", line + 1),
    }
}

fn parse_one_line(text: &str, what: &str) -> Result<Vec<Entry>, EditError> {
    let mut entries = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let (kind, rest) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| shape(what, n, "an entry needs a type, a URI and a suite"))?;
        let rest = rest.trim_start();
        let (options, rest) = match rest.strip_prefix('[') {
            Some(inner) => {
                let (opts, after) = inner
                    .split_once(']')
                    .ok_or_else(|| shape(what, n, "`[` of the options is never closed"))?;
                (opts, after)
            }
            None => ("", rest),
        };
        let mut words = rest.split_whitespace();
        let (Some(uri), Some(suite)) = (words.next(), words.next()) else {
            return Err(shape(what, n, "an entry needs a type, a URI and a suite"));
        };
        let mut signed_by = None;
        for option in options.split_whitespace() {
            let Some((key, value)) = option.split_once('=') else {
                continue;
            };
            let key = key.trim_end_matches(['+', '-']);
            if key.eq_ignore_ascii_case("signed-by") {
                signed_by = Some(value.to_string());
            }
        }
        entries.push(Entry {
            types: vec![kind.to_string()],
            uris: vec![uri.to_string()],
            suites: vec![suite.to_string()],
            components: words.map(str::to_string).collect(),
            signed_by,
            lines: n..n + 1,
        });
    }
    Ok(entries)
}

fn parse_deb822(text: &str, what: &str) -> Result<Vec<Entry>, EditError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut entries = Vec::new();
    let mut start = 0;
    while start < lines.len() {
        let mut end = start;
        while end < lines.len() && !lines[end].trim().is_empty() {
            end += 1;
        }
        if end > start {
            if let Some(entry) = stanza(&lines[start..end], start, what)? {
                entries.push(entry);
            }
        }
        start = end + 1;
    }
    Ok(entries)
}

/// Fields of one stanza, continuation lines joined with a space; comment
/// lines (`#` in the first column) skipped.
fn fields(lines: &[&str], first: usize, what: &str) -> Result<Vec<(String, String)>, EditError> {
    let mut fields: Vec<(String, String)> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        if line.starts_with('#') {
            continue;
        }
        if line.starts_with([' ', '\t']) {
            let Some((_, value)) = fields.last_mut() else {
                return Err(shape(
                    what,
                    first + i,
                    "a continuation line before any field",
                ));
            };
            value.push(' ');
            value.push_str(line.trim());
            continue;
        }
        let (name, value) = line
            .split_once(':')
            .ok_or_else(|| shape(what, first + i, "expected `Field: value`"))?;
        fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    Ok(fields)
}

fn stanza(lines: &[&str], first: usize, what: &str) -> Result<Option<Entry>, EditError> {
    let fields = fields(lines, first, what)?;
    if fields.is_empty() {
        return Ok(None);
    }
    let get = |name: &str| {
        fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    if get("enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
        return Ok(None);
    }
    let words = |name: &str| -> Vec<String> {
        get(name)
            .unwrap_or_default()
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let entry = Entry {
        types: words("types"),
        uris: words("uris"),
        suites: words("suites"),
        components: words("components"),
        signed_by: get("signed-by").map(|v| {
            if v.contains("BEGIN PGP") {
                "(inline key)".to_string()
            } else {
                v.split_whitespace().collect::<Vec<_>>().join(" ")
            }
        }),
        lines: first..first + lines.len(),
    };
    if entry.types.is_empty() || entry.uris.is_empty() || entry.suites.is_empty() {
        return Err(shape(
            what,
            first,
            "a stanza needs Types, URIs and Suites (or `Enabled: no`)",
        ));
    }
    Ok(Some(entry))
}

/// A source file as read from the host: its path and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    pub path: String,
    pub text: String,
}

/// What to do so that apt has exactly one definition of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// An entry in `path` already serves the repository: use it as it is.
    /// `keyrings` are the files its `signed-by` names.
    Use {
        path: String,
        keyrings: Vec<String>,
        /// The tool's own file also names the repository: remove it.
        remove_own: bool,
    },
    /// Entries in `path` name the repository with another suite: rewrite
    /// the file as `text` (those entries' suite replaced, nothing else).
    Edit {
        path: String,
        text: String,
        keyrings: Vec<String>,
        /// The tool's own file also names the repository: remove it.
        remove_own: bool,
    },
    /// No file names the repository: write the tool's own.
    Write,
}

/// The repository the tool wants, with `{id}` and `{codename}` filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wanted<'a> {
    pub uri: &'a str,
    pub suite: &'a str,
    /// Space-separated; empty for a flat repository.
    pub components: &'a str,
}

/// Decides, from every source file apt reads, how to make `wanted` available
/// without a second definition. Files are taken in the order given (apt's:
/// sources.list, then sources.list.d by name); the first entry that serves
/// wins, else the first file that names the URI is edited. `own` is the
/// file the tool writes: a source it wrote earlier is recognised like any
/// other, but an operator's file comes first, and when both name the
/// repository (two definitions, which apt refuses when their Signed-By
/// differ) the tool's own is to be removed. Files that do not parse are an
/// error naming the file.
pub fn decide(files: &[SourceFile], wanted: &Wanted, own: &str) -> Result<Decision, EditError> {
    let mut parsed = Vec::new();
    for file in files.iter().filter(|f| f.path != own) {
        let Some(format) = Format::of(&file.path) else {
            continue;
        };
        parsed.push((file, parse(&file.text, format, &file.path)?));
    }
    let mut own_names_it = false;
    if let Some(file) = files.iter().find(|f| f.path == own) {
        let entries = parse(&file.text, Format::of(own).unwrap_or(Format::Deb822), own)?;
        own_names_it = entries.iter().any(|e| e.has_uri(wanted.uri));
        parsed.push((file, entries));
    }
    let remove_own = |path: &str| own_names_it && path != own;
    for (file, entries) in &parsed {
        if let Some(entry) = entries.iter().find(|e| {
            e.is_binary() && e.has_uri(wanted.uri) && e.serves(wanted.suite, wanted.components)
        }) {
            return Ok(Decision::Use {
                path: file.path.clone(),
                keyrings: entry.keyrings().iter().map(|k| k.to_string()).collect(),
                remove_own: remove_own(&file.path),
            });
        }
    }
    for (file, entries) in &parsed {
        let Some(first) = entries
            .iter()
            .find(|e| e.is_binary() && e.has_uri(wanted.uri))
        else {
            continue;
        };
        if first.serves(wanted.suite, "") {
            return Err(EditError::Shape {
                what: file.path.clone(),
                message: format!(
                    "line {}: names {} {} without component {}; add it to that entry or remove the entry, then run again",
                    first.lines.start + 1,
                    wanted.uri,
                    wanted.suite,
                    wanted.components
                ),
            });
        }
        let format = Format::of(&file.path).unwrap_or(Format::OneLine);
        let text = set_suite(&file.text, format, entries, wanted.uri, wanted.suite);
        return Ok(Decision::Edit {
            path: file.path.clone(),
            text,
            keyrings: first.keyrings().iter().map(|k| k.to_string()).collect(),
            remove_own: remove_own(&file.path),
        });
    }
    Ok(Decision::Write)
}

/// `text` with the suite of every entry for `uri` (deb and deb-src) set to
/// `suite`; every other byte kept.
fn set_suite(text: &str, format: Format, entries: &[Entry], uri: &str, suite: &str) -> String {
    let mut lines: Vec<String> = text.split_inclusive('\n').map(str::to_string).collect();
    for entry in entries.iter().filter(|e| e.has_uri(uri)) {
        let old = &entry.suites[0];
        for line in &mut lines[entry.lines.clone()] {
            match format {
                Format::OneLine => {
                    *line = replace_word_after_uri(line, old, suite);
                }
                Format::Deb822 => {
                    let is_suites = line
                        .split_once(':')
                        .is_some_and(|(n, _)| n.trim().eq_ignore_ascii_case("suites"));
                    if is_suites && !line.starts_with('#') {
                        let (name, _) = line.split_once(':').unwrap_or_default();
                        let end = if line.ends_with('\n') { "\n" } else { "" };
                        *line = format!("{name}: {suite}{end}");
                    }
                }
            }
        }
    }
    lines.concat()
}

/// The one-line entry `line` with its suite (the word after the URI) replaced.
fn replace_word_after_uri(line: &str, old: &str, new: &str) -> String {
    let words = word_ranges(line);
    // The type, then `[options]` (which may hold spaces), then URI and suite.
    let mut i = 1;
    if words
        .get(1)
        .is_some_and(|w| line[w.clone()].starts_with('['))
    {
        while i < words.len() && !line[words[i].clone()].ends_with(']') {
            i += 1;
        }
        i += 1;
    }
    match words.get(i + 1) {
        Some(range) if &line[range.clone()] == old => {
            format!("{}{new}{}", &line[..range.start], &line[range.end..])
        }
        _ => line.to_string(),
    }
}

/// Byte ranges of the whitespace-separated words of `line`.
fn word_ranges(line: &str) -> Vec<std::ops::Range<usize>> {
    let mut ranges = Vec::new();
    let mut start = None;
    for (i, c) in line.char_indices() {
        match (c.is_whitespace(), start) {
            (true, Some(s)) => {
                ranges.push(s..i);
                start = None;
            }
            (false, None) => start = Some(i),
            _ => {}
        }
    }
    if let Some(s) = start {
        ranges.push(s..line.len());
    }
    ranges
}

#[cfg(test)]
mod tests {
    use super::*;

    const GITLAB: &str = "https://packages.gitlab.com/runner/gitlab-runner/debian/";
    const KEYRING: &str = "/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg";

    fn wanted() -> Wanted<'static> {
        Wanted {
            uri: GITLAB,
            suite: "bookworm",
            components: "main",
        }
    }

    fn file(path: &str, text: &str) -> SourceFile {
        SourceFile {
            path: path.to_string(),
            text: text.to_string(),
        }
    }

    const OWN: &str = "/etc/apt/sources.list.d/gitlab-runner.sources";

    fn used(path: &str, keyrings: &[&str]) -> Decision {
        Decision::Use {
            path: path.to_string(),
            keyrings: keyrings.iter().map(|k| k.to_string()).collect(),
            remove_own: false,
        }
    }

    #[test]
    fn recognises_every_spelling_of_the_repository() {
        let cases: Vec<(&str, SourceFile, Decision)> = vec![
            (
                "the tool's own deb822 file: already converged",
                file(
                    "/etc/apt/sources.list.d/gitlab-runner.sources",
                    "Types: deb\nURIs: https://packages.gitlab.com/runner/gitlab-runner/debian/\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/gitlab-runner.asc\n",
                ),
                used(
                    "/etc/apt/sources.list.d/gitlab-runner.sources",
                    &["/etc/apt/keyrings/gitlab-runner.asc"],
                ),
            ),
            (
                "GitLab's script: one-line with signed-by, deb-src beside it",
                file(
                    "/etc/apt/sources.list.d/runner_gitlab-runner.list",
                    &format!(
                        "# this file was generated by packages.gitlab.com\n\ndeb [signed-by={KEYRING}] {GITLAB} bookworm main\ndeb-src [signed-by={KEYRING}] {GITLAB} bookworm main\n"
                    ),
                ),
                used(
                    "/etc/apt/sources.list.d/runner_gitlab-runner.list",
                    &[KEYRING],
                ),
            ),
            (
                "arch= first, spaces inside the brackets, no trailing slash",
                file(
                    "/etc/apt/sources.list.d/ci.list",
                    &format!(
                        "deb [ arch=amd64 signed-by={KEYRING} ] https://packages.gitlab.com/runner/gitlab-runner/debian bookworm main\n"
                    ),
                ),
                used("/etc/apt/sources.list.d/ci.list", &[KEYRING]),
            ),
            (
                "upper-case option and host, file:// spelling elsewhere",
                file(
                    "/etc/apt/sources.list",
                    &format!(
                        "deb file:///srv/debian ./\ndeb [Signed-By={KEYRING} arch=amd64,arm64] https://PACKAGES.gitlab.com/runner/gitlab-runner/debian/ bookworm main contrib\n"
                    ),
                ),
                used("/etc/apt/sources.list", &[KEYRING]),
            ),
            (
                "deb822 with lower-case field names, two types, two suites, a comment",
                file(
                    "/etc/apt/sources.list.d/runner.sources",
                    "# by hand\ntypes: deb deb-src\nuris: https://packages.gitlab.com/runner/gitlab-runner/debian\nsuites: bullseye bookworm\n# keep\ncomponents: main\nsigned-by: /etc/apt/keyrings/a.gpg\n",
                ),
                used(
                    "/etc/apt/sources.list.d/runner.sources",
                    &["/etc/apt/keyrings/a.gpg"],
                ),
            ),
            (
                "no signed-by at all (key in trusted.gpg.d)",
                file(
                    "/etc/apt/sources.list.d/gitlab.list",
                    &format!("deb {GITLAB} bookworm main\n"),
                ),
                used("/etc/apt/sources.list.d/gitlab.list", &[]),
            ),
            (
                "deb822 with an inline key",
                file(
                    "/etc/apt/sources.list.d/gitlab.sources",
                    &format!(
                        "Types: deb\nURIs: {GITLAB}\nSuites: bookworm\nComponents: main\nSigned-By:\n -----BEGIN PGP PUBLIC KEY BLOCK-----\n .\n mQINBF\n -----END PGP PUBLIC KEY BLOCK-----\n"
                    ),
                ),
                used("/etc/apt/sources.list.d/gitlab.sources", &[]),
            ),
            (
                "a commented-out line and a disabled stanza do not count",
                file(
                    "/etc/apt/sources.list.d/gitlab.sources",
                    &format!(
                        "Types: deb\nURIs: {GITLAB}\nSuites: bookworm\nComponents: main\nEnabled: no\n"
                    ),
                ),
                Decision::Write,
            ),
            (
                "another repository only",
                file(
                    "/etc/apt/sources.list",
                    "deb http://deb.debian.org/debian bookworm main\n#deb https://packages.gitlab.com/runner/gitlab-runner/debian/ bookworm main\n",
                ),
                Decision::Write,
            ),
            (
                "a file name apt ignores",
                file(
                    "/etc/apt/sources.list.d/runner_gitlab-runner.list.save",
                    &format!("deb {GITLAB} bookworm main\n"),
                ),
                Decision::Write,
            ),
            (
                "only deb-src does not serve the package",
                file(
                    "/etc/apt/sources.list.d/src.list",
                    &format!("deb-src {GITLAB} bookworm main\n"),
                ),
                Decision::Write,
            ),
        ];
        for (name, source, expected) in cases {
            let files = [source.clone()];
            assert_eq!(
                decide(&files, &wanted(), OWN).expect("decides"),
                expected,
                "case {name:?}"
            );
            // Deciding reads only: the same input, the same answer.
            assert_eq!(
                decide(&files, &wanted(), OWN).expect("decides"),
                expected,
                "case {name:?}"
            );
        }
    }

    #[test]
    fn a_wrong_suite_is_edited_in_place() {
        let cases: Vec<(&str, SourceFile, &str)> = vec![
            (
                "one-line after a release upgrade, deb-src too, comments kept",
                file(
                    "/etc/apt/sources.list.d/runner_gitlab-runner.list",
                    &format!(
                        "# generated\ndeb [signed-by={KEYRING}] {GITLAB} bullseye main # old\ndeb-src [signed-by={KEYRING}] {GITLAB} bullseye main\ndeb http://deb.debian.org/debian bullseye main\n"
                    ),
                ),
                "# generated\ndeb [signed-by=/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg] https://packages.gitlab.com/runner/gitlab-runner/debian/ bookworm main # old\ndeb-src [signed-by=/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg] https://packages.gitlab.com/runner/gitlab-runner/debian/ bookworm main\ndeb http://deb.debian.org/debian bullseye main\n",
            ),
            (
                "one-line without options, no final newline",
                file(
                    "/etc/apt/sources.list",
                    "deb https://packages.gitlab.com/runner/gitlab-runner/debian bullseye main",
                ),
                "deb https://packages.gitlab.com/runner/gitlab-runner/debian bookworm main",
            ),
            (
                "the tool's own deb822 file",
                file(
                    "/etc/apt/sources.list.d/gitlab-runner.sources",
                    &format!(
                        "Types: deb\nURIs: {GITLAB}\nSuites: bullseye\nComponents: main\nSigned-By: /etc/apt/keyrings/gitlab-runner.asc\n"
                    ),
                ),
                "Types: deb\nURIs: https://packages.gitlab.com/runner/gitlab-runner/debian/\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/gitlab-runner.asc\n",
            ),
        ];
        for (name, source, expected) in cases {
            let path = source.path.clone();
            let files = [source];
            let Decision::Edit { path: p, text, .. } =
                decide(&files, &wanted(), OWN).expect("decides")
            else {
                panic!("case {name:?}: expected an edit");
            };
            assert_eq!(p, path, "case {name:?}");
            assert_eq!(text, expected, "case {name:?}");
            // Edited once, the file serves the repository: nothing more to do.
            let again = [file(&path, &text)];
            assert!(
                matches!(
                    decide(&again, &wanted(), OWN).expect("decides"),
                    Decision::Use { .. }
                ),
                "case {name:?}"
            );
        }
    }

    #[test]
    fn the_first_serving_entry_wins_over_a_later_or_a_wrong_one() {
        let files = [
            file(
                "/etc/apt/sources.list.d/a-old.list",
                &format!("deb {GITLAB} bullseye main\n"),
            ),
            file(
                "/etc/apt/sources.list.d/gitlab-runner.sources",
                &format!("Types: deb\nURIs: {GITLAB}\nSuites: bookworm\nComponents: main\n"),
            ),
        ];
        assert_eq!(
            decide(&files, &wanted(), OWN).expect("decides"),
            used("/etc/apt/sources.list.d/gitlab-runner.sources", &[])
        );
    }

    #[test]
    fn the_tools_own_earlier_source_beside_the_operators_is_removed() {
        // The state the tool itself left before it recognised sources: apt
        // refuses both ("Conflicting values set for option Signed-By").
        let operators = file(
            "/etc/apt/sources.list.d/runner_gitlab-runner.list",
            &format!("deb [signed-by={KEYRING}] {GITLAB} bookworm main\n"),
        );
        let own = file(
            OWN,
            &format!(
                "Types: deb\nURIs: {GITLAB}\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/gitlab-runner.asc\n"
            ),
        );
        // Whatever order the files come in, the operator's wins.
        for files in [
            [own.clone(), operators.clone()],
            [operators.clone(), own.clone()],
        ] {
            assert_eq!(
                decide(&files, &wanted(), OWN).expect("decides"),
                Decision::Use {
                    path: operators.path.clone(),
                    keyrings: vec![KEYRING.to_string()],
                    remove_own: true,
                }
            );
        }
    }

    #[test]
    fn flat_repositories_and_components() {
        let flat = Wanted {
            uri: "file:/srv/runner-repo/",
            suite: "./",
            components: "",
        };
        let files = [file(
            "/etc/apt/sources.list.d/local.list",
            "deb [trusted=yes] file:///srv/runner-repo ./\n",
        )];
        assert_eq!(
            decide(&files, &flat, OWN).expect("decides"),
            used("/etc/apt/sources.list.d/local.list", &[])
        );
        // A component the entry lacks: a second entry would conflict with
        // it, and editing it is the operator's call: refused, saying why.
        let files = [file(
            "/etc/apt/sources.list.d/gitlab.list",
            &format!("deb {GITLAB} bookworm contrib\n"),
        )];
        let err = decide(&files, &wanted(), OWN)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("line 1: names") && err.contains("component main"),
            "{err}"
        );
    }

    #[test]
    fn malformed_files_are_errors_that_name_the_file_and_line() {
        let cases = [
            (
                "/etc/apt/sources.list",
                "deb [signed-by=/k https://x bookworm\n",
            ),
            ("/etc/apt/sources.list", "\ndeb\n"),
            ("/etc/apt/sources.list.d/x.list", "deb https://x\n"),
            (
                "/etc/apt/sources.list.d/x.sources",
                "Types: deb\nno colon here\n",
            ),
            (
                "/etc/apt/sources.list.d/x.sources",
                "Types: deb\nURIs: https://x\n",
            ),
            ("/etc/apt/sources.list.d/x.sources", " continuation\n"),
        ];
        for (path, text) in cases {
            let err = decide(&[file(path, text)], &wanted(), OWN)
                .expect_err("refused")
                .to_string();
            assert!(err.starts_with(path), "{path} {text:?}: {err}");
            assert!(err.contains("line "), "{path} {text:?}: {err}");
        }
    }

    #[test]
    fn uri_normalisation() {
        let cases = [
            (
                "https://packages.gitlab.com/x/",
                "https://packages.gitlab.com/x",
            ),
            (
                "HTTPS://Packages.GitLab.com/X/",
                "https://packages.gitlab.com/X",
            ),
            ("file:///srv/repo/", "file:/srv/repo"),
            ("file:/srv/repo", "file:/srv/repo"),
            ("http://host", "http://host"),
        ];
        for (input, expected) in cases {
            assert_eq!(normalize_uri(input), expected, "{input}");
        }
    }

    #[test]
    fn file_names_apt_reads() {
        let cases = [
            ("/etc/apt/sources.list", Some(Format::OneLine)),
            (
                "/etc/apt/sources.list.d/runner_gitlab-runner.list",
                Some(Format::OneLine),
            ),
            (
                "/etc/apt/sources.list.d/docker.sources",
                Some(Format::Deb822),
            ),
            ("/etc/apt/sources.list.d/docker.list.save", None),
            ("/etc/apt/sources.list.d/docker.list~", None),
            ("/etc/apt/sources.list.d/my docker.list", None),
            ("/etc/apt/sources.list.d/.list", None),
        ];
        for (path, expected) in cases {
            assert_eq!(Format::of(path), expected, "{path}");
        }
    }
}
