//! `/etc/modules` and `/etc/modules-load.d/*.conf`: the kernel modules loaded
//! at boot, one name a line, `#` or `;` starting a comment. No I/O.

/// Whether `module` is listed on a non-comment line. The kernel treats `-`
/// and `_` in module names alike, and so does this.
pub fn contains(text: &str, module: &str) -> bool {
    text.lines().any(|line| {
        let line = line.trim();
        !line.starts_with(['#', ';'])
            && line
                .split_whitespace()
                .next()
                .is_some_and(|name| same_module(name, module))
    })
}

/// `text` with `module` listed: unchanged, byte for byte, when it already is;
/// otherwise the original bytes followed by `module` on a line of its own,
/// terminated by a newline. A last line that had no newline gets one first,
/// so it is not joined to the module's name.
pub fn ensure(text: &str, module: &str) -> String {
    if contains(text, module) {
        return text.to_owned();
    }
    let mut out = String::with_capacity(text.len() + module.len() + 2);
    out.push_str(text);
    if !text.is_empty() && !text.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(module);
    out.push('\n');
    out
}

/// `text` without the non-comment lines that list `module`: unchanged,
/// byte for byte, when none does; every other line kept as it was.
pub fn remove(text: &str, module: &str) -> String {
    if !contains(text, module) {
        return text.to_owned();
    }
    text.split_inclusive('\n')
        .filter(|line| !contains(line, module))
        .collect()
}

fn same_module(a: &str, b: &str) -> bool {
    let norm = |c: char| if c == '-' { '_' } else { c };
    a.len() == b.len() && a.chars().map(norm).eq(b.chars().map(norm))
}

#[cfg(test)]
mod tests {

    #[test]
    fn remove_takes_back_only_the_module_line() {
        for (text, want) in [
            ("loop\n", "loop\n"),
            ("", ""),
            ("loop\noverlay\n", "loop\n"),
            ("# overlay\noverlay\nloop", "# overlay\nloop"),
            ("overlay", ""),
        ] {
            let got = remove(text, "overlay");
            assert_eq!(got, want, "{text:?}");
            assert_eq!(remove(&got, "overlay"), got);
            assert_eq!(
                remove(&ensure(want, "overlay"), "overlay"),
                want.to_string()
                    + if want.is_empty() || want.ends_with('\n') {
                        ""
                    } else {
                        "\n"
                    }
            );
        }
    }

    use super::*;

    const DEBIAN_ETC_MODULES: &str = "\
# /etc/modules: kernel modules to load at boot time.
#
# This file contains the names of kernel modules that should be loaded
# at boot time, one per line. Lines beginning with \"#\" are ignored.
";

    #[test]
    fn ensure_cases() {
        let cases: &[(&str, &str, &str)] = &[
            // (name, input, expected)
            ("already there", "loop\noverlay\n", "loop\noverlay\n"),
            ("already there, no newline", "overlay", "overlay"),
            ("already there, indented", "  overlay  \n", "  overlay  \n"),
            (
                "already there, CRLF",
                "loop\r\noverlay\r\n",
                "loop\r\noverlay\r\n",
            ),
            ("empty", "", "overlay\n"),
            ("only a newline", "\n", "\noverlay\n"),
            (
                "other modules kept",
                "loop\nbr_netfilter\n",
                "loop\nbr_netfilter\noverlay\n",
            ),
            ("no trailing newline", "loop", "loop\noverlay\n"),
            ("commented out with #", "#overlay\n", "#overlay\noverlay\n"),
            (
                "commented out with ;",
                "; overlay\n",
                "; overlay\noverlay\n",
            ),
            (
                "a longer name is not it",
                "overlayfs\n",
                "overlayfs\noverlay\n",
            ),
        ];
        for (name, input, expected) in cases {
            assert_eq!(ensure(input, "overlay"), *expected, "case {name:?}");
            assert!(
                contains(&ensure(input, "overlay"), "overlay"),
                "case {name:?}"
            );
        }
    }

    #[test]
    fn ensure_keeps_debians_stock_comments() {
        let out = ensure(DEBIAN_ETC_MODULES, "overlay");
        assert_eq!(out, format!("{DEBIAN_ETC_MODULES}overlay\n"));
        assert_eq!(ensure(&out, "overlay"), out);
    }

    #[test]
    fn contains_cases() {
        let cases: &[(&str, &str, bool)] = &[
            ("overlay\n", "overlay", true),
            ("overlay redirect_dir=on\n", "overlay", true),
            ("br-netfilter\n", "br_netfilter", true),
            ("br_netfilter\n", "br-netfilter", true),
            ("# overlay\n", "overlay", false),
            ("over\n", "overlay", false),
            ("", "overlay", false),
        ];
        for (text, module, expected) in cases {
            assert_eq!(contains(text, module), *expected, "{text:?} {module:?}");
        }
    }
}
