//! apt's deb822 `.sources` files (sources.list(5)), rendered from a struct so
//! the same source always gives the same bytes. No I/O.

/// One repository: a `.sources` file with a single stanza.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AptSource {
    /// `deb` (or `deb deb-src`).
    pub types: String,
    pub uris: String,
    pub suites: String,
    /// Empty for a flat repository (suite ending in `/`): no `Components`.
    pub components: String,
    /// Path of the keyring that signs the repository.
    pub signed_by: Option<String>,
    /// `Trusted: yes`, for a local repository without signatures.
    pub trusted: bool,
    pub architectures: Option<String>,
}

/// The `.sources` file for `source`: fields in the order Types, URIs, Suites,
/// Components, Architectures, Signed-By, Trusted, with a trailing newline.
/// Whitespace inside a value (line breaks included) becomes one space, so a
/// value can never start a field of its own.
pub fn deb822(source: &AptSource) -> String {
    let mut fields: Vec<(&str, &str)> = vec![
        ("Types", &source.types),
        ("URIs", &source.uris),
        ("Suites", &source.suites),
        ("Components", &source.components),
    ];
    if let Some(architectures) = &source.architectures {
        fields.push(("Architectures", architectures));
    }
    if let Some(keyring) = &source.signed_by {
        fields.push(("Signed-By", keyring));
    }
    if source.trusted {
        fields.push(("Trusted", "yes"));
    }
    let mut out = String::new();
    for (name, value) in fields {
        let value = value.split_whitespace().collect::<Vec<_>>().join(" ");
        if !value.is_empty() {
            out.push_str(&format!("{name}: {value}\n"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gitlab() -> AptSource {
        AptSource {
            types: "deb".to_owned(),
            uris: "https://packages.gitlab.com/runner/gitlab-runner/debian/".to_owned(),
            suites: "bookworm".to_owned(),
            components: "main".to_owned(),
            signed_by: Some(
                "/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg".to_owned(),
            ),
            trusted: false,
            architectures: None,
        }
    }

    #[test]
    fn deb822_cases() {
        let cases: Vec<(&str, AptSource, &str)> = vec![
            (
                "signed repository",
                gitlab(),
                "Types: deb
URIs: https://packages.gitlab.com/runner/gitlab-runner/debian/
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg
",
            ),
            (
                "all fields",
                AptSource {
                    architectures: Some("amd64".to_owned()),
                    trusted: true,
                    ..gitlab()
                },
                "Types: deb
URIs: https://packages.gitlab.com/runner/gitlab-runner/debian/
Suites: bookworm
Components: main
Architectures: amd64
Signed-By: /usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg
Trusted: yes
",
            ),
            (
                "flat local repository",
                AptSource {
                    types: "deb".to_owned(),
                    uris: "file:/srv/repo".to_owned(),
                    suites: "./".to_owned(),
                    components: String::new(),
                    signed_by: None,
                    trusted: true,
                    architectures: None,
                },
                "Types: deb\nURIs: file:/srv/repo\nSuites: ./\nTrusted: yes\n",
            ),
            (
                "line breaks cannot add fields",
                AptSource {
                    components: "main\nTrusted: yes".to_owned(),
                    ..gitlab()
                },
                "Types: deb
URIs: https://packages.gitlab.com/runner/gitlab-runner/debian/
Suites: bookworm
Components: main Trusted: yes
Signed-By: /usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg
",
            ),
        ];
        for (name, source, expected) in cases {
            assert_eq!(deb822(&source), expected, "case {name:?}");
            assert_eq!(deb822(&source), deb822(&source.clone()), "case {name:?}");
        }
    }
}
