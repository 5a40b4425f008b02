//! Finding the token in cloud-init's stored files, in every form they hold
//! it, and overwriting it. Pure: bytes in, a verdict out.
//!
//! Forms: plain text (YAML, JSON, MIME parts sent 7bit, pickles); base64
//! (MIME parts, at any of the three byte alignments, across line breaks);
//! a whole gzip file (Terraform's `cloudinit_config` gzips by default, and
//! cloud-init keeps the raw user data); `ci-b64:` values in cloud-init's
//! JSON (how it stores bytes that are not UTF-8, such as gzip). Plain and
//! base64 forms are overwritten in place with `x`s of the same length, so
//! length-prefixed formats such as cloud-init's pickle stay valid.

use std::io::{Read as _, Write as _};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The most a compressed file may expand to before it is not checked but
/// reported (user data is at most a few hundred KiB on every cloud).
const MAX_EXPANDED: u64 = 64 << 20;

#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// No form of the token.
    Clean,
    /// The file with every form of the token overwritten.
    Rewrite(Vec<u8>),
    /// Delete the file: it holds the token where it cannot be overwritten,
    /// and cloud-init rebuilds it (its pickled datasource cache).
    Remove(String),
    /// Holds the token where it cannot be overwritten safely; the reason.
    Unsafe(String),
}

/// What to do with the file `name` (its path, for the pickle rule) whose
/// content is `bytes`, so that it no longer holds `token`.
pub fn scrub(name: &str, bytes: &[u8], token: &[u8]) -> Verdict {
    if token.is_empty() {
        return Verdict::Clean;
    }
    if is_gzip(bytes) {
        if let Ok(inner) = gunzip(bytes) {
            return match scrub(name, &inner, token) {
                Verdict::Rewrite(new) => Verdict::Rewrite(gzip(&new)),
                other => other,
            };
        }
    }
    // Compressed data inside another format (a pickle holding the raw,
    // gzipped user data) cannot be rewritten in place. Checked first: a
    // gzip member that stores its data uncompressed holds the token as
    // plain bytes, and overwriting those would break its checksum.
    if let Some(at) = embedded_gzip_with(bytes, token) {
        let reason = format!("it holds the token inside compressed data at byte {at}");
        return if is_pickle(name) {
            Verdict::Remove(format!(
                "{reason}; it is cloud-init's cached datasource, which cloud-init rebuilds from the datasource on the next boot"
            ))
        } else {
            Verdict::Unsafe(reason)
        };
    }
    // Structured values next (the same reason), then what is left.
    let mut changed = false;
    let mut out = match rewrite_ci_b64(name, bytes, token) {
        None => bytes.to_vec(),
        Some(Ok(new)) => {
            changed = true;
            new
        }
        Some(Err(verdict)) => return verdict,
    };
    changed |= overwrite_plain(&mut out, token);
    changed |= overwrite_base64(&mut out, token);
    if changed {
        Verdict::Rewrite(out)
    } else {
        Verdict::Clean
    }
}

/// Whether `bytes` hold the token in any form [`scrub`] knows.
pub fn holds(bytes: &[u8], token: &[u8]) -> bool {
    scrub("", bytes, token) != Verdict::Clean
}

fn is_pickle(name: &str) -> bool {
    name.ends_with(".pkl")
}

fn is_gzip(bytes: &[u8]) -> bool {
    bytes.starts_with(&[0x1f, 0x8b, 0x08])
}

/// The first gzip member in `bytes`, expanded (at most [`MAX_EXPANDED`]).
pub fn gunzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(bytes)
        .take(MAX_EXPANDED + 1)
        .read_to_end(&mut out)?;
    if out.len() as u64 > MAX_EXPANDED {
        return Err(std::io::Error::other("expands to more than 64 MiB"));
    }
    Ok(out)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing to a Vec cannot fail.
    let _ = encoder.write_all(bytes);
    encoder.finish().unwrap_or_default()
}

/// Overwrites every occurrence of `token` with `x`s; whether any was found.
fn overwrite_plain(out: &mut [u8], token: &[u8]) -> bool {
    let mut found = false;
    let mut i = 0;
    while i + token.len() <= out.len() {
        if &out[i..i + token.len()] == token {
            out[i..i + token.len()].fill(b'x');
            found = true;
            i += token.len();
        } else {
            i += 1;
        }
    }
    found
}

/// The base64 characters that depend on `token`'s bytes alone when it
/// starts `shift` bytes into a 3-byte group, for the token and for as many
/// `x`s: the first is searched for, the second written in its place.
fn base64_cores(token: &[u8], shift: usize) -> (Vec<u8>, Vec<u8>) {
    let core = |bytes: &[u8]| -> Vec<u8> {
        let mut padded = vec![0u8; shift];
        padded.extend_from_slice(bytes);
        let encoded = STANDARD.encode(&padded).into_bytes();
        let start_bit = 8 * shift;
        let end_bit = 8 * padded.len();
        (0..encoded.len())
            .filter(|j| 6 * j >= start_bit && 6 * j + 6 <= end_bit)
            .map(|j| encoded[j])
            .collect()
    };
    (core(token), core(&vec![b'x'; token.len()]))
}

/// Overwrites the token's base64 forms, also where a line break splits
/// them (MIME wraps base64 at 76 columns). The first and last characters
/// also hold bits of the neighbouring bytes and are kept: at most 4 bits
/// of the token's first and last characters survive.
fn overwrite_base64(out: &mut [u8], token: &[u8]) -> bool {
    // Positions of everything but line breaks, so a match can span them.
    let positions: Vec<usize> = (0..out.len())
        .filter(|&i| out[i] != b'\n' && out[i] != b'\r')
        .collect();
    let view: Vec<u8> = positions.iter().map(|&i| out[i]).collect();
    let mut found = false;
    for shift in 0..3 {
        let (core, replacement) = base64_cores(token, shift);
        if core.len() < 8 {
            continue;
        }
        let mut i = 0;
        while i + core.len() <= view.len() {
            if view[i..i + core.len()] == core[..] {
                for (k, &c) in replacement.iter().enumerate() {
                    out[positions[i + k]] = c;
                }
                found = true;
                i += core.len();
            } else {
                i += 1;
            }
        }
    }
    found
}

/// cloud-init's JSON stores bytes that are not UTF-8 as `"ci-b64:<base64>"`.
/// `None`: no such value holds the token; else the file with those values
/// re-encoded after scrubbing, or the verdict for the file when one cannot
/// be rewritten (JSON has no lengths, so re-encoding is safe outside pickles).
fn rewrite_ci_b64(name: &str, bytes: &[u8], token: &[u8]) -> Option<Result<Vec<u8>, Verdict>> {
    const MARK: &[u8] = b"ci-b64:";
    let is_b64 = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=');
    let mut out = Vec::with_capacity(bytes.len());
    let mut touched = false;
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i..].starts_with(MARK) {
            out.push(bytes[i]);
            i += 1;
            continue;
        }
        let start = i + MARK.len();
        let end = start + bytes[start..].iter().take_while(|&&b| is_b64(b)).count();
        out.extend_from_slice(&bytes[i..start]);
        let value = &bytes[start..end];
        match STANDARD.decode(value).map(|d| scrub(name, &d, token)) {
            Ok(Verdict::Rewrite(new)) if !is_pickle(name) => {
                out.extend_from_slice(STANDARD.encode(new).as_bytes());
                touched = true;
            }
            Ok(Verdict::Clean) | Err(_) => out.extend_from_slice(value),
            Ok(Verdict::Rewrite(_)) => {
                return Some(Err(Verdict::Remove(
                    "it holds the token in a ci-b64 value; it is cloud-init's cached datasource, which cloud-init rebuilds from the datasource on the next boot".into(),
                )));
            }
            Ok(Verdict::Remove(_) | Verdict::Unsafe(_)) => {
                return Some(Err(Verdict::Unsafe(
                    "it holds the token inside compressed data in a ci-b64 value".into(),
                )));
            }
        }
        i = end;
    }
    touched.then_some(Ok(out))
}

/// The offset of a gzip member after the start of `bytes` whose content
/// holds the token.
fn embedded_gzip_with(bytes: &[u8], token: &[u8]) -> Option<usize> {
    (1..bytes.len().saturating_sub(2))
        .filter(|&i| is_gzip(&bytes[i..]))
        .find(|&i| gunzip(&bytes[i..]).is_ok_and(|inner| holds(&inner, token)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &[u8] = b"GR1348941scrubMeInEveryForm";

    fn clean_after(name: &str, bytes: &[u8]) -> Vec<u8> {
        match scrub(name, bytes, TOKEN) {
            Verdict::Rewrite(new) => {
                assert_eq!(
                    scrub(name, &new, TOKEN),
                    Verdict::Clean,
                    "{name}: once is enough"
                );
                new
            }
            other => panic!("{name}: {other:?}"),
        }
    }

    #[test]
    fn nothing_to_do_is_clean() {
        assert_eq!(scrub("a", b"no secret here", TOKEN), Verdict::Clean);
        assert_eq!(scrub("a", &gzip(b"no secret"), TOKEN), Verdict::Clean);
        assert_eq!(scrub("a", b"", TOKEN), Verdict::Clean);
    }

    #[test]
    fn plain_and_pickled_forms_keep_their_length() {
        let text = [b"\x80\x04pickle:".as_slice(), TOKEN, b"\x00and ", TOKEN].concat();
        let new = clean_after("obj.pkl", &text);
        assert_eq!(new.len(), text.len());
        assert!(new.windows(TOKEN.len()).all(|w| w != TOKEN));
    }

    #[test]
    fn base64_at_every_alignment_and_across_line_breaks() {
        for prefix in ["", "a", "ab", "abc"] {
            let doc = [prefix.as_bytes(), b"token: ", TOKEN, b"\n"].concat();
            let encoded = STANDARD.encode(&doc);
            // Wrapped as MIME does, at 76 columns, and at 10 to split the token.
            for width in [76, 10] {
                let wrapped: Vec<u8> = encoded
                    .as_bytes()
                    .chunks(width)
                    .flat_map(|c| [c, b"\r\n"].concat())
                    .collect();
                let new = clean_after("user-data.txt.i", &wrapped);
                assert_eq!(new.len(), wrapped.len());
                let unwrapped: Vec<u8> = new
                    .iter()
                    .copied()
                    .filter(|b| !b"\r\n".contains(b))
                    .collect();
                let decoded = STANDARD.decode(unwrapped).expect("still base64");
                let inner = String::from_utf8_lossy(&decoded);
                assert!(!inner.contains("scrubMeInEvery"), "{inner}");
                assert!(inner.contains("xxxxxxxxxxxxxxxxxxxx"), "{inner}");
            }
        }
    }

    #[test]
    fn a_gzip_file_is_expanded_scrubbed_and_compressed_again() {
        let mime = [
            b"Content-Type: multipart/mixed; boundary=\"B\"\nMIME-Version: 1.0\n\n--B\nContent-Transfer-Encoding: 7bit\nContent-Type: text/cloud-config\n\n#cloud-config\nwrite_files:\n  - content: \"".as_slice(),
            TOKEN,
            b"\"\n--B--\n",
        ]
        .concat();
        let new = clean_after("user-data.txt", &gzip(&mime));
        let inner = gunzip(&new).expect("still gzip");
        assert_eq!(inner.len(), mime.len());
        assert!(!holds(&inner, TOKEN));
        // A gzip of base64 MIME parts.
        let b64 = [
            b"--B\nContent-Transfer-Encoding: base64\n\n".as_slice(),
            STANDARD
                .encode([b"x: ".as_slice(), TOKEN].concat())
                .as_bytes(),
        ]
        .concat();
        let new = clean_after("user-data.txt", &gzip(&b64));
        assert!(!holds(&gunzip(&new).expect("gzip"), TOKEN));
    }

    #[test]
    fn ci_b64_values_in_json_are_re_encoded() {
        let raw = gzip(&[b"#cloud-config\ntoken: ".as_slice(), TOKEN].concat());
        let json = format!(
            "{{\"userdata_raw\": \"ci-b64:{}\", \"x\": 1}}",
            STANDARD.encode(&raw)
        );
        let new = clean_after("instance-data-sensitive.json", json.as_bytes());
        let text = String::from_utf8(new).expect("utf8");
        let value = text
            .split("ci-b64:")
            .nth(1)
            .expect("kept")
            .split('"')
            .next()
            .expect("end");
        let inner = gunzip(&STANDARD.decode(value).expect("b64")).expect("gzip");
        assert!(!holds(&inner, TOKEN));
        assert!(text.ends_with("\", \"x\": 1}"), "{text}");
    }

    #[test]
    fn compressed_data_inside_a_pickle_means_removing_the_cache_elsewhere_a_report() {
        let raw = gzip(&[b"token: ".as_slice(), TOKEN].concat());
        let pickle = [b"\x80\x04\x95header".as_slice(), &raw, b"\x94trailer"].concat();
        assert!(
            matches!(scrub("/var/lib/cloud/instances/i/obj.pkl", &pickle, TOKEN), Verdict::Remove(r) if r.contains("rebuilds"))
        );
        assert!(
            matches!(scrub("/var/lib/cloud/other.bin", &pickle, TOKEN), Verdict::Unsafe(r) if r.contains("compressed data at byte 9"))
        );
    }
}
