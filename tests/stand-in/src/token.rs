//! Offline stand-ins for what the GitLab server would hand out, and time.
//!
//! A hash, not a secret: the stand-in only needs values that are stable for
//! the same input (so tests can compare bytes) and that never contain the
//! registration token they were derived from. FNV-1a is enough for that and
//! needs no dependency.

fn fnv1a(data: &[u8], seed: u64) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed.wrapping_mul(0x100_0000_01b3);
    for b in data {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    // Final avalanche (from splitmix64) so near inputs differ everywhere.
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

/// What `POST /api/v4/runners` would return for this URL, description and
/// registration token: a runner id and a 20-character runner token (the
/// legacy format, as in `token = "Sa4Bq7EbUNTmKSstAqoh"`).
pub fn legacy_registration(url: &str, name: &str, registration_token: &str) -> (i64, String) {
    let mut round = 0u64;
    loop {
        let input = format!("{url}\n{name}\n{registration_token}\n{round}");
        let id = (fnv1a(input.as_bytes(), 100) % 90_000_000) as i64 + 10_000_000;
        let token: String = (0..20)
            .map(|i| {
                ALPHABET[(fnv1a(input.as_bytes(), 200 + i) % ALPHABET.len() as u64) as usize]
                    as char
            })
            .collect();
        if registration_token.is_empty() || !token.contains(registration_token) {
            return (id, token);
        }
        round += 1;
    }
}

/// The runner id `POST /api/v4/runners/verify` would return for a `glrt-`
/// token.
pub fn verified_id(url: &str, token: &str) -> i64 {
    (fnv1a(format!("{url}\n{token}").as_bytes(), 300) % 90_000_000) as i64 + 10_000_000
}

/// The short form the real runner logs (`runner=…`): for `glrt-` tokens the
/// 9 characters after the prefix, otherwise the first 8.
pub fn short(token: &str) -> String {
    match token.strip_prefix("glrt-") {
        Some(rest) => rest.chars().take(9).collect(),
        None => token.chars().take(8).collect(),
    }
}

/// Seconds since the epoch as RFC 3339 UTC (`2024-09-26T03:24:18Z`), as Go's
/// `time.Now().UTC().Truncate(time.Second)` is encoded.
pub fn rfc3339(epoch: i64) -> String {
    let days = epoch.div_euclid(86_400);
    let secs = epoch.rem_euclid(86_400);
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Now, or the fixed time tests set in `GITLAB_RUNNER_STAND_IN_NOW` (epoch
/// seconds, or an RFC 3339 UTC time used as written).
pub fn now(fixed: Option<&str>) -> String {
    match fixed {
        Some(v) if v.chars().all(|c| c.is_ascii_digit()) && !v.is_empty() => {
            rfc3339(v.parse().unwrap_or(0))
        }
        Some(v) if !v.is_empty() => v.to_string(),
        _ => {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs() as i64)
                .unwrap_or(0);
            rfc3339(secs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_727_321_058), "2024-09-26T03:24:18Z");
        assert_eq!(now(Some("2024-01-02T03:04:05Z")), "2024-01-02T03:04:05Z");
    }

    #[test]
    fn runner_token_is_stable_and_does_not_contain_the_registration_token() {
        let a = legacy_registration("https://gitlab.com/", "host", "GR1348941secret");
        let b = legacy_registration("https://gitlab.com/", "host", "GR1348941secret");
        assert_eq!(a, b);
        assert_eq!(a.1.len(), 20);
        assert!(!a.1.contains("GR1348941secret"));
        assert_ne!(
            a,
            legacy_registration("https://gitlab.com/", "other", "GR1348941secret")
        );
    }

    #[test]
    fn short_tokens() {
        assert_eq!(short("glrt-Kdv9Ad4PHqJGyoyKQCp5"), "Kdv9Ad4PH");
        assert_eq!(short("4hjjA7meXXXX"), "4hjjA7me");
    }
}
