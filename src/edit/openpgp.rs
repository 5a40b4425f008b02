//! OpenPGP public keys as apt reads them (`Signed-By` keyrings): ASCII
//! armour removed, and when each key expires, read from its packets
//! (RFC 4880: a v4 key's creation time and its latest self-signature's
//! key-expiration subpacket). Enough to tell, before `apt-get update`
//! fails with `EXPKEYSIG`, that a repository's key has run out. No I/O.

use base64::Engine;

use super::EditError;

fn shape(what: &str, message: impl Into<String>) -> EditError {
    EditError::Shape {
        what: what.to_string(),
        message: message.into(),
    }
}

/// The binary packets inside an ASCII-armoured key (what `gpg --dearmor`
/// writes). Header lines and the `=XXXX` checksum line are dropped.
pub fn dearmor(text: &str) -> Result<Vec<u8>, EditError> {
    let what = "the signing key";
    let mut body = String::new();
    let mut state = 0; // 0 before BEGIN, 1 headers, 2 body, 3 after END
    for line in text.lines() {
        let line = line.trim();
        match state {
            0 if line == "-----BEGIN PGP PUBLIC KEY BLOCK-----" => state = 1,
            1 if line.is_empty() => state = 2,
            1 if !line.contains(':') => {
                // No header block: this line is already body.
                body.push_str(line);
                state = 2;
            }
            2 if line.starts_with("-----END PGP PUBLIC KEY BLOCK-----") => {
                state = 3;
                break;
            }
            2 if line.starts_with('=') => {}
            2 => body.push_str(line),
            _ => {}
        }
    }
    if state != 3 {
        return Err(shape(
            what,
            "not an ASCII-armoured PGP public key block (BEGIN/END lines missing)",
        ));
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body)
        .map_err(|e| shape(what, format!("the armoured key does not decode: {e}")))?;
    packets(&bytes, what)?;
    Ok(bytes)
}

/// A keyring's bytes as apt reads them: armoured text, or binary packets.
fn keyring_packets(bytes: &[u8]) -> Result<Vec<u8>, EditError> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => dearmor(text),
        _ => Ok(bytes.to_vec()),
    }
}

/// One primary key of a keyring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    /// Seconds since the epoch.
    pub created: u64,
    /// Seconds since the epoch; `None`: never expires.
    pub expires: Option<u64>,
}

/// The primary keys of a keyring (armoured or binary), each with its
/// expiry. Keys of a version other than 4 are reported with `expires`
/// unknown as `None`, never as expired.
pub fn keys(bytes: &[u8], what: &str) -> Result<Vec<Key>, EditError> {
    let bytes = keyring_packets(bytes)?;
    let mut keys: Vec<Key> = Vec::new();
    // The latest self-signature's creation time of the current primary key.
    let mut latest_sig = 0;
    let mut in_primary = false;
    for (tag, body) in packets(&bytes, what)? {
        match tag {
            6 => {
                let created = match body {
                    [4, a, b, c, d, ..] => u64::from(u32::from_be_bytes([*a, *b, *c, *d])),
                    _ => 0,
                };
                keys.push(Key {
                    created,
                    expires: None,
                });
                latest_sig = 0;
                in_primary = true;
            }
            14 => in_primary = false,
            2 if in_primary => {
                let Some(sig) = signature(body) else { continue };
                // Certifications of a user id (0x10-0x13) and direct-key
                // signatures (0x1f) carry the primary key's expiry.
                let about_primary = (0x10..=0x13).contains(&sig.kind) || sig.kind == 0x1f;
                if about_primary && sig.created >= latest_sig {
                    latest_sig = sig.created;
                    if let Some(key) = keys.last_mut() {
                        key.expires = sig.key_expiry.filter(|&s| s != 0).map(|s| key.created + s);
                    }
                }
            }
            _ => {}
        }
    }
    if keys.is_empty() {
        return Err(shape(what, "holds no public key"));
    }
    Ok(keys)
}

/// Every primary key of the keyring has expired at `now` (seconds since
/// the epoch): apt will refuse what it signed. A keyring with one valid key
/// beside an old one is fine.
pub fn all_expired(keys: &[Key], now: u64) -> bool {
    !keys.is_empty() && keys.iter().all(|k| k.expires.is_some_and(|e| e <= now))
}

/// `secs` since the epoch as a UTC date, `YYYY-MM-DD`.
pub fn date(secs: u64) -> String {
    // Howard Hinnant's days-to-civil.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

struct Signature {
    kind: u8,
    created: u64,
    key_expiry: Option<u64>,
}

/// A v4 signature's type, creation time and key-expiration subpacket.
fn signature(body: &[u8]) -> Option<Signature> {
    let [4, kind, _, _, h1, h2, rest @ ..] = body else {
        return None;
    };
    let hashed_len = usize::from(u16::from_be_bytes([*h1, *h2]));
    let mut sub = rest.get(..hashed_len)?;
    let mut sig = Signature {
        kind: *kind,
        created: 0,
        key_expiry: None,
    };
    while let Some(&first) = sub.first() {
        let (len, skip) = match first {
            0..=191 => (usize::from(first), 1),
            192..=254 => (
                ((usize::from(first) - 192) << 8) + usize::from(*sub.get(1)?) + 192,
                2,
            ),
            255 => (
                u32::from_be_bytes(sub.get(1..5)?.try_into().ok()?) as usize,
                5,
            ),
        };
        let packet = sub.get(skip..skip + len)?;
        let (&kind, data) = packet.split_first()?;
        let value = || {
            data.get(..4)
                .map(|d| u64::from(u32::from_be_bytes([d[0], d[1], d[2], d[3]])))
        };
        match kind & 0x7f {
            2 => sig.created = value()?,
            9 => sig.key_expiry = value(),
            _ => {}
        }
        sub = &sub[skip + len..];
    }
    Some(sig)
}

/// The (tag, body) of each packet, old and new header formats.
fn packets<'a>(mut bytes: &'a [u8], what: &str) -> Result<Vec<(u8, &'a [u8])>, EditError> {
    let cut = || shape(what, "a packet is cut short: the key file is damaged");
    let mut out = Vec::new();
    while let Some(&header) = bytes.first() {
        if header & 0x80 == 0 {
            return Err(shape(what, "not OpenPGP data (bad packet header)"));
        }
        let (tag, len, skip) = if header & 0x40 != 0 {
            let tag = header & 0x3f;
            let o1 = usize::from(*bytes.get(1).ok_or_else(cut)?);
            match o1 {
                0..=191 => (tag, o1, 2),
                192..=223 => {
                    let o2 = usize::from(*bytes.get(2).ok_or_else(cut)?);
                    (tag, ((o1 - 192) << 8) + o2 + 192, 3)
                }
                255 => {
                    let b = bytes.get(2..6).ok_or_else(cut)?;
                    (
                        tag,
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                        6,
                    )
                }
                _ => return Err(shape(what, "partial-length packets do not belong in a key")),
            }
        } else {
            let tag = (header >> 2) & 0x0f;
            match header & 3 {
                0 => (tag, usize::from(*bytes.get(1).ok_or_else(cut)?), 2),
                1 => {
                    let b = bytes.get(1..3).ok_or_else(cut)?;
                    (tag, usize::from(u16::from_be_bytes([b[0], b[1]])), 3)
                }
                2 => {
                    let b = bytes.get(1..5).ok_or_else(cut)?;
                    (
                        tag,
                        u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize,
                        5,
                    )
                }
                _ => (tag, bytes.len() - 1, 1),
            }
        };
        let body = bytes.get(skip..skip + len).ok_or_else(cut)?;
        out.push((tag, body));
        bytes = &bytes[skip + len..];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPIRED: &str = include_str!("fixtures/expired-2020-key.asc");
    const EXPIRED_BINARY: &[u8] = include_bytes!("fixtures/expired-2020-key.gpg");
    const NO_EXPIRY: &str = include_str!("fixtures/no-expiry-key.asc");
    /// 2026-11-28, when the fixtures were made with gpg (the old key with
    /// --faked-system-time 2020-01-01 and a one-year expiry).
    const NOW: u64 = 1_795_870_118;

    #[test]
    fn dearmor_gives_what_gpg_dearmor_gives() {
        assert_eq!(dearmor(EXPIRED).expect("dearmors"), EXPIRED_BINARY);
        // CRLF line ends and no header block are accepted too.
        let crlf = EXPIRED.replace('\n', "\r\n");
        assert_eq!(dearmor(&crlf).expect("dearmors"), EXPIRED_BINARY);
    }

    #[test]
    fn expiry_read_from_the_key() {
        let cases: Vec<(&str, &[u8], Vec<Key>, bool)> = vec![
            (
                "expired in 2020, armoured",
                EXPIRED.as_bytes(),
                vec![Key {
                    created: 1_577_836_800,
                    expires: Some(1_609_372_800),
                }],
                true,
            ),
            (
                "the same, binary",
                EXPIRED_BINARY,
                vec![Key {
                    created: 1_577_836_800,
                    expires: Some(1_609_372_800),
                }],
                true,
            ),
            (
                "no expiry",
                NO_EXPIRY.as_bytes(),
                vec![Key {
                    created: 1_795_870_118,
                    expires: None,
                }],
                false,
            ),
        ];
        for (name, bytes, expected, expired) in cases {
            let found = keys(bytes, "key").expect(name);
            assert_eq!(found, expected, "{name}");
            assert_eq!(all_expired(&found, NOW), expired, "{name}");
        }
        // A keyring with the old key and a valid one is not expired.
        let mut both = EXPIRED_BINARY.to_vec();
        both.extend(dearmor(NO_EXPIRY).expect("dearmors"));
        let found = keys(&both, "keyring").expect("two keys");
        assert_eq!(found.len(), 2);
        assert!(!all_expired(&found, NOW));
        // Before its expiry, the old key was fine.
        assert!(!all_expired(
            &keys(EXPIRED_BINARY, "k").expect("key"),
            1_600_000_000
        ));
    }

    #[test]
    fn dates() {
        let cases = [
            (0, "1970-01-01"),
            (1_609_372_800, "2020-12-31"),
            (951_782_400, "2000-02-29"),
            (NOW, "2026-11-28"),
        ];
        for (secs, expected) in cases {
            assert_eq!(date(secs), expected, "{secs}");
        }
    }

    #[test]
    fn damaged_or_foreign_data_is_an_error() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("empty", Vec::new()),
            ("cut short", EXPIRED_BINARY[..EXPIRED_BINARY.len() - 7].to_vec()),
            ("not OpenPGP", b"hello, world".to_vec()),
            (
                "armour without END",
                EXPIRED.replace("-----END PGP PUBLIC KEY BLOCK-----", "").into_bytes(),
            ),
            (
                "armour that does not decode",
                "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n!!!!\n-----END PGP PUBLIC KEY BLOCK-----\n"
                    .as_bytes()
                    .to_vec(),
            ),
            ("an HTML error page", b"<html><body>404</body></html>".to_vec()),
        ];
        for (name, bytes) in cases {
            assert!(keys(&bytes, "key").is_err(), "{name}");
        }
        assert!(dearmor("<html>").is_err());
    }
}
