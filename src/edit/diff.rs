//! Unified diffs of a file's old and new text, for `plan`. No I/O.

use similar::TextDiff;

/// A unified diff with `--- a/path` and `+++ b/path` headers and three lines
/// of context; empty when nothing changes. Values of secret-named keys
/// (config.toml's runner `token`, cache credentials, passwords) are masked
/// on every line, changed or context: a diff goes to the terminal and JSON.
pub fn unified(path: &str, old: &str, new: &str) -> String {
    if old == new {
        return String::new();
    }
    let path = path.trim_start_matches('/');
    let diff = TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(&format!("a/{path}"), &format!("b/{path}"))
        .to_string();
    diff.split_inclusive('\n')
        .map(|line| match line.strip_suffix('\n') {
            Some(body) => format!("{}\n", crate::secret::mask_line(body)),
            None => crate::secret::mask_line(line),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unified_cases() {
        let cases: &[(&str, &str, &str, &str)] = &[
            // (name, old, new, expected)
            ("unchanged", "loop\n", "loop\n", ""),
            ("both empty", "", "", ""),
            (
                "a line added",
                "loop\n",
                "loop\noverlay\n",
                "--- a/etc/modules\n+++ b/etc/modules\n@@ -1 +1,2 @@\n loop\n+overlay\n",
            ),
            (
                "new file",
                "",
                "overlay\n",
                "--- a/etc/modules\n+++ b/etc/modules\n@@ -0,0 +1 @@\n+overlay\n",
            ),
            (
                "three lines of context",
                "1\n2\n3\n4\n5\n6\n7\n8\n",
                "1\n2\n3\n4\nfive\n6\n7\n8\n",
                "--- a/etc/modules\n+++ b/etc/modules\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n",
            ),
            (
                "last line without newline",
                "loop",
                "loop\noverlay\n",
                "--- a/etc/modules\n+++ b/etc/modules\n@@ -1 +1,2 @@\n-loop\n\\ No newline at end of file\n+loop\n+overlay\n",
            ),
            (
                "a secret in context and in a change is masked",
                "[[runners]]\n  token = \"glrt-old\"\n  name = \"a\"\n",
                "[[runners]]\n  token = \"glrt-old\"\n  name = \"b\"\n  SecretKey = \"s3\"\n",
                "--- a/etc/modules\n+++ b/etc/modules\n@@ -1,3 +1,4 @@\n [[runners]]\n   token = \"[masked]\"\n-  name = \"a\"\n+  name = \"b\"\n+  SecretKey = \"[masked]\"\n",
            ),
        ];
        for (name, old, new, expected) in cases {
            assert_eq!(
                unified("/etc/modules", old, new),
                *expected,
                "case {name:?}"
            );
        }
    }
}
