//! Debian package versions (`[epoch:]upstream[-revision]`): the check a
//! version pin must pass before it reaches apt's command line, and dpkg's
//! ordering, so `plan` can say whether a changed pin upgrades or downgrades.
//! No I/O.
//!
//! The ordering is dpkg's `verrevcmp` (lib/dpkg/version.c), which Debian
//! policy 5.6.12 describes: letters sort before non-letters, `~` before
//! everything, even the end of the string; digit runs compare as numbers.
//! The `debversion` crate does the same but brings regex, chrono and
//! num-bigint along, far more than these forty lines.

use std::cmp::Ordering;

/// Why `version` cannot be a pin, or Ok. What passes is only ASCII letters,
/// digits and `. + ~ - :`, starts with a digit, and has a numeric epoch when
/// it has one: nothing apt, a shell or a log could read as anything else
/// (`=`, spaces, `*`, quotes, control characters are all refused).
pub fn check(version: &str) -> Result<(), &'static str> {
    if version.is_empty() {
        return Err("it is empty");
    }
    if version.len() > 128 {
        return Err("it is longer than 128 characters");
    }
    if let Some(c) = version
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '~' | '-' | ':')))
    {
        return Err(match c {
            '=' => "it contains `=` (give only the version, without the package name)",
            c if c.is_control() => "it contains control characters",
            c if c.is_whitespace() => "it contains spaces",
            _ => {
                "it contains a character a Debian version cannot hold (only letters, digits and . + ~ - : are allowed)"
            }
        });
    }
    let (epoch, rest) = match version.split_once(':') {
        Some((epoch, rest)) => (Some(epoch), rest),
        None => (None, version),
    };
    if epoch.is_some_and(|e| e.is_empty() || !e.bytes().all(|b| b.is_ascii_digit())) {
        return Err("its epoch (before the `:`) is not a number");
    }
    let upstream = rest.rsplit_once('-').map_or(rest, |(u, _)| u);
    if !upstream.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("it does not start with a digit");
    }
    if rest.ends_with('-') {
        return Err("its revision (after the last `-`) is empty");
    }
    Ok(())
}

/// dpkg's order of two versions.
pub fn compare(a: &str, b: &str) -> Ordering {
    let (ae, au, ar) = split(a);
    let (be, bu, br) = split(b);
    ae.cmp(&be)
        .then_with(|| verrevcmp(au, bu))
        .then_with(|| verrevcmp(ar, br))
}

/// Epoch (0 when absent), upstream version, revision ("" when absent).
fn split(version: &str) -> (u64, &str, &str) {
    let (epoch, rest) = match version.split_once(':') {
        Some((e, rest)) => (e.parse().unwrap_or(0), rest),
        None => (0, version),
    };
    let (upstream, revision) = rest.rsplit_once('-').unwrap_or((rest, ""));
    (epoch, upstream, revision)
}

/// The weight of a non-digit character (None: the end of the string).
fn order(c: Option<u8>) -> i32 {
    match c {
        None => 0,
        Some(c) if c.is_ascii_digit() => 0,
        Some(c) if c.is_ascii_alphabetic() => i32::from(c),
        Some(b'~') => -1,
        Some(c) => i32::from(c) + 256,
    }
}

fn verrevcmp(a: &str, b: &str) -> Ordering {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let (mut i, mut j) = (0, 0);
    let digit = |s: &[u8], k: usize| s.get(k).is_some_and(u8::is_ascii_digit);
    while i < a.len() || j < b.len() {
        while (i < a.len() && !digit(a, i)) || (j < b.len() && !digit(b, j)) {
            let (ac, bc) = (order(a.get(i).copied()), order(b.get(j).copied()));
            if ac != bc {
                return ac.cmp(&bc);
            }
            i += 1;
            j += 1;
        }
        while a.get(i) == Some(&b'0') {
            i += 1;
        }
        while b.get(j) == Some(&b'0') {
            j += 1;
        }
        let mut first_diff = Ordering::Equal;
        while digit(a, i) && digit(b, j) {
            if first_diff == Ordering::Equal {
                first_diff = a[i].cmp(&b[j]);
            }
            i += 1;
            j += 1;
        }
        if digit(a, i) {
            return Ordering::Greater;
        }
        if digit(b, j) {
            return Ordering::Less;
        }
        if first_diff != Ordering::Equal {
            return first_diff;
        }
    }
    Ordering::Equal
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dpkg_order() {
        use Ordering::{Equal, Greater, Less};
        let cases = [
            ("17.7.0-1", "17.7.0-1", Equal),
            ("17.8.0-1", "17.7.0-1", Greater),
            ("17.10.0-1", "17.9.0-1", Greater),
            ("17.7.0-1", "17.7.0-2", Less),
            // ~ sorts before everything, even the end.
            ("17.4.0-1~standin", "17.4.0-1", Less),
            ("17.9.0~pre.88.g5835694a-1", "17.9.0-1", Less),
            (
                "17.9.0~pre.101.g0eb97601-1",
                "17.9.0~pre.88.g5835694a-1",
                Greater,
            ),
            ("1.0~rc1", "1.0~~", Greater),
            // Letters before non-letters; + after the end.
            ("1.0a", "1.0+", Less),
            ("1.0+dfsg1", "1.0", Greater),
            // Epochs win over everything else.
            (
                "5:27.3.1-1~debian.12~bookworm",
                "27.3.1-1~debian.12~bookworm",
                Greater,
            ),
            ("1:0.1", "0:9.9", Greater),
            ("0:1.0", "1.0", Equal),
            // Leading zeros do not count.
            ("1.002", "1.2", Equal),
            ("20.10.24+dfsg1-1+deb12u1", "20.10.24+dfsg1-1+b3", Greater),
            ("", "0", Equal),
        ];
        for (a, b, expected) in cases {
            assert_eq!(compare(a, b), expected, "{a} vs {b}");
            assert_eq!(compare(b, a), expected.reverse(), "{b} vs {a}");
        }
    }

    #[test]
    fn pins_that_pass_and_why_others_do_not() {
        for good in [
            "17.5.0",
            "17.5.0-1",
            "17.9.0~pre.88.g5835694a-1",
            "5:27.3.1-1~debian.12~bookworm",
            "20.10.24+dfsg1-1+deb12u1",
            "1",
        ] {
            check(good).unwrap_or_else(|e| panic!("{good}: {e}"));
        }
        for (bad, why) in [
            ("", "empty"),
            ("17.5.0 ", "spaces"),
            ("17.5.0 gitlab-runner", "spaces"),
            ("gitlab-runner=17.5.0", "`=`"),
            ("17.5.0\n", "control"),
            ("17.5.0\u{7}", "control"),
            ("17.5.*", "character"),
            ("17.5.0;reboot", "character"),
            ("$(reboot)", "character"),
            ("17.5.0'", "character"),
            ("17.5.0\u{2028}", "spaces"),
            ("17.5.0é", "character"),
            ("v17.5.0", "digit"),
            ("-17.5.0", "digit"),
            ("latest", "digit"),
            ("a:17.5.0", "epoch"),
            (":17.5.0", "epoch"),
            ("17.5.0-", "revision"),
        ] {
            let err = check(bad).expect_err(bad);
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        assert!(check(&"1".repeat(129)).expect_err("huge").contains("128"));
    }
}
