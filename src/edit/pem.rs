//! PEM certificate bundles: the certificate blocks of a file, checked to be
//! certificates a TLS library can load. No I/O.

use super::EditError;

const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
const END: &str = "-----END CERTIFICATE-----";

/// The certificate blocks of `text`, each as `BEGIN…END\n` with the line
/// breaks normalised, in file order. Text between blocks (comments, as
/// OpenSSL writes them) is dropped. An error when there is no certificate,
/// a block is cut short or does not decode, or the file holds a private key.
pub fn certificates(text: &str, what: &str) -> Result<Vec<String>, EditError> {
    let shape = |message: String| EditError::Shape {
        what: what.to_string(),
        message,
    };
    if text.contains("PRIVATE KEY-----") {
        return Err(shape(
            "it holds a private key; give only the CA certificates (never a key) and keep the key elsewhere".to_string(),
        ));
    }
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        match (&mut current, line) {
            (None, BEGIN) => current = Some(format!("{BEGIN}\n")),
            (None, _) => {}
            (Some(block), END) => {
                block.push_str(END);
                block.push('\n');
                blocks.push(std::mem::take(block));
                current = None;
            }
            (Some(_), l) if l.starts_with("-----") => {
                return Err(shape(format!(
                    "line {}: a new PEM block starts before the certificate's END line",
                    n + 1
                )));
            }
            (Some(block), l) => {
                block.push_str(l);
                block.push('\n');
            }
        }
    }
    if current.is_some() {
        return Err(shape(
            "the last certificate has no END line (the file is cut short)".to_string(),
        ));
    }
    if blocks.is_empty() {
        return Err(shape(format!(
            "no PEM certificate in it (a `{BEGIN}` block); convert a DER file with `openssl x509 -inform der -in FILE -out FILE.pem`"
        )));
    }
    for (i, block) in blocks.iter().enumerate() {
        let parsed: Vec<_> = ureq::tls::parse_pem(block.as_bytes()).collect();
        let ok = matches!(parsed.as_slice(), [Ok(ureq::tls::PemItem::Certificate(_))]);
        if !ok {
            return Err(shape(format!(
                "certificate {} of {} does not decode (damaged base64)",
                i + 1,
                blocks.len()
            )));
        }
    }
    Ok(blocks)
}

/// A self-signed test CA, as openssl writes it (for tests elsewhere).
#[cfg(test)]
pub fn tests_ca() -> &'static str {
    tests::CA
}

/// Another one.
#[cfg(test)]
pub fn tests_second_ca() -> &'static str {
    "-----BEGIN CERTIFICATE-----
MIIBqzCCAVGgAwIBAgIUZnoSsbp/ekkHTn3g0h1aKOZobGEwCgYIKoZIzj0EAwIw
KjEoMCYGA1UEAwwfcnVubmVyLXByb3Zpc2lvbiBzZWNvbmQgdGVzdCBDQTAgFw0y
NjExMjgxMjM1MzRaGA8yMTI2MTEwNDEyMzUzNFowKjEoMCYGA1UEAwwfcnVubmVy
LXByb3Zpc2lvbiBzZWNvbmQgdGVzdCBDQTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABL12IMb6QpcR2klWoPUUj1Z7KOQABAFd14XVhe2oTv1Znwciq1Z/CB6UAUW6
28WHAyck2jJfWFMsjg/GsE2wKs6jUzBRMB0GA1UdDgQWBBQoGDuUQK4R2QqMzUit
WaTmnY2kOTAfBgNVHSMEGDAWgBQoGDuUQK4R2QqMzUitWaTmnY2kOTAPBgNVHRMB
Af8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIQC2dj2pCWuzBjdbSpgWjLQDBLMu
dlloEvVcomvXTXWwHwIgE4y+1dlnHxWZ0dnyO8oXs/xSpuIwdu3d4Q26IgM0+Jc=
-----END CERTIFICATE-----
"
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real certificate (a self-signed test CA), as openssl writes it.
    pub const CA: &str = "-----BEGIN CERTIFICATE-----
MIIBnTCCAUOgAwIBAgIUH2mujMqwRS92lN0lbdceiY2SobEwCgYIKoZIzj0EAwIw
IzEhMB8GA1UEAwwYcnVubmVyLXByb3Zpc2lvbiB0ZXN0IENBMCAXDTI2MTEyODEy
MzIxNFoYDzIxMjYxMTA0MTIzMjE0WjAjMSEwHwYDVQQDDBhydW5uZXItcHJvdmlz
aW9uIHRlc3QgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNCAARAMsEWhxwE7MrS
QpCUzKK5rPxPkhlzxtdujOSvTB+kwfV0tDx32lIurXdPF5SeML5YiNhC5v44EIk0
xRAipCDVo1MwUTAdBgNVHQ4EFgQUxjF6ojx67X6R4lsUjZeDnDLgiZcwHwYDVR0j
BBgwFoAUxjF6ojx67X6R4lsUjZeDnDLgiZcwDwYDVR0TAQH/BAUwAwEB/zAKBggq
hkjOPQQDAgNIADBFAiAipmOCGSfYNTmYb9lrkC8YT1jG08IzBRYR3lVxKCgKvwIh
AORpeaVCPY+l+aPvrT+6cNIG1E24Sbd+qV56VIIXOfV6
-----END CERTIFICATE-----
";

    #[test]
    fn certificate_cases() {
        let two = format!("{CA}{CA}");
        let crlf = CA.replace('\n', "\r\n");
        let with_text = format!("Subject: test CA\n{CA}\ntrailing words\n");
        let ok: &[(&str, &str, usize)] = &[
            ("one", CA, 1),
            ("already normalised: same bytes", CA, 1),
            ("two", &two, 2),
            ("CRLF line ends", &crlf, 1),
            ("text around", &with_text, 1),
        ];
        for (name, text, count) in ok {
            let blocks = certificates(text, "ca.pem").unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(blocks.len(), *count, "{name}");
            for block in &blocks {
                assert_eq!(block, CA, "{name}: normalised to openssl's form");
            }
        }
        let cut = &CA[..CA.len() - 30];
        let damaged = CA.replacen("MIIB", "M!IB", 1);
        let key = format!("{CA}-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");
        let bad: &[(&str, &str, &str)] = &[
            ("empty", "", "no PEM certificate"),
            (
                "DER bytes as text",
                "0\u{82}\u{1}\u{9d}0\u{82}",
                "no PEM certificate",
            ),
            ("cut short", cut, "no END line"),
            ("damaged", &damaged, "does not decode"),
            ("private key", &key, "private key"),
            (
                "nested",
                "-----BEGIN CERTIFICATE-----\n-----BEGIN CERTIFICATE-----\n",
                "line 2",
            ),
        ];
        for (name, text, wanted) in bad {
            let err = certificates(text, "ca.pem").expect_err(name).to_string();
            assert!(err.contains(wanted), "{name}: {err}");
            assert!(err.starts_with("ca.pem"), "{name}: {err}");
        }
    }
}
