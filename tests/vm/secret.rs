//! Finding a token in files, in clear or base64-encoded (cloud-init keeps
//! MIME parts and write_files contents base64-encoded at times).

use std::path::{Path, PathBuf};

/// The byte strings that betray `token`: the token itself and the core of its
/// base64 encoding at each of the three alignments it can start at.
pub fn needles(token: &str) -> Vec<Vec<u8>> {
    let mut needles = vec![token.as_bytes().to_vec()];
    for shift in 0..3 {
        let mut padded = vec![b'\0'; shift];
        padded.extend_from_slice(token.as_bytes());
        let encoded = base64(&padded);
        // Drop the characters that depend on the unknown neighbours.
        let start = if shift == 0 {
            0
        } else {
            (shift * 8).div_ceil(6)
        };
        let end = encoded.len() - 4;
        needles.push(encoded.as_bytes()[start..end].to_vec());
    }
    needles
}

/// Whether `haystack` holds any of `needles`.
pub fn betrays(haystack: &[u8], needles: &[Vec<u8>]) -> bool {
    needles.iter().any(|needle| {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_slice())
    })
}

/// Every file under `dir` (recursively, symlinks not followed) that holds
/// one of `needles`.
pub fn files_betraying(dir: &Path, needles: &[Vec<u8>]) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| e.path()));
            }
        } else if meta.is_file() && std::fs::read(&path).is_ok_and(|bytes| betrays(&bytes, needles))
        {
            found.push(path);
        }
    }
    found.sort();
    found
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn base64_matches_the_rfc_4648_vectors() {
    for (plain, encoded) in [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ] {
        assert_eq!(base64(plain.as_bytes()), encoded);
    }
}

#[test]
fn a_token_is_found_in_clear_and_in_base64_at_any_offset() {
    let token = "GR1348941testTOKENvalue";
    let needles = needles(token);
    assert!(betrays(format!("x: {token}\n").as_bytes(), &needles));
    for prefix in ["", "a", "ab", "abc", "content: "] {
        let encoded = base64(format!("{prefix}{token} and more").as_bytes());
        assert!(
            betrays(encoded.as_bytes(), &needles),
            "missed the token in base64 after {prefix:?}: {encoded}"
        );
    }
    assert!(!betrays(b"GR1348941testTOKENvalu", &needles));
    assert!(!betrays(
        base64(b"something else entirely").as_bytes(),
        &needles
    ));
}
