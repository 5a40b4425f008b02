//! `.runner_system_id`: the identity of this runner manager (the machine),
//! as GitLab Runner 17.x keeps it (`commands/internal/configfile/system_id.go`).
//!
//! The file lives next to config.toml. Loading the config reads it and keeps
//! its value only when it matches `^[sr]_[0-9a-zA-Z]{12}$` (after trimming);
//! otherwise a new id is made and written (mode 0600, no newline):
//! `s_` + the first 12 hex digits of HMAC-SHA256(key = the machine id,
//! message = "gitlab-runner"), where the machine id is
//! /var/lib/dbus/machine-id or else /etc/machine-id, trimmed
//! (denisbrodbeck/machineid); when neither gives one, `r_` + 12 random
//! letters and digits. So two machines cloned from one image share an id
//! unless the image has neither the file nor a machine id.

use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use hmac::{Hmac, Mac};
use sha2::Sha256;

const CHARSET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";

/// A value the real runner accepts from the file.
pub fn valid(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("s_").or_else(|| id.strip_prefix("r_")) else {
        return false;
    };
    rest.len() == 12 && rest.bytes().all(|b| b.is_ascii_alphanumeric())
}

/// The machine id the way machineid.ID() reads it: the D-Bus file first,
/// then systemd's; a read error on the first falls through to the second.
/// `root` is `/` except in tests.
pub fn machine_id(root: &Path) -> Option<String> {
    let read = |p: &str| fs::read_to_string(root.join(p)).ok();
    let id = read("var/lib/dbus/machine-id").or_else(|| read("etc/machine-id"))?;
    Some(id.trim().to_string())
}

/// `GenerateUniqueSystemID`: derived from a non-empty machine id, else random.
pub fn generate(machine_id: Option<&str>) -> String {
    match machine_id.filter(|m| !m.is_empty()) {
        Some(m) => {
            let mut mac =
                Hmac::<Sha256>::new_from_slice(m.as_bytes()).expect("HMAC takes any key length");
            mac.update(b"gitlab-runner");
            let hex: String = mac
                .finalize()
                .into_bytes()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("s_{}", &hex[..12])
        }
        None => {
            let mut bytes = [0u8; 12];
            // The kernel's random source; a failure leaves zeros, which
            // still makes a valid (if unlucky) id.
            if let Ok(mut f) = fs::File::open("/dev/urandom") {
                let _ = f.read_exact(&mut bytes);
            }
            let id: String = bytes
                .iter()
                .map(|b| CHARSET[usize::from(*b) % CHARSET.len()] as char)
                .collect();
            format!("r_{id}")
        }
    }
}

/// Reads the id next to `config_path`, or makes and saves one. A failure to
/// save only warns in the real runner: the id is still used for this run.
pub fn ensure(config_path: &Path, root: &Path) -> Option<String> {
    let dir = config_path.parent()?;
    let path = dir.join(".runner_system_id");
    if let Ok(text) = fs::read_to_string(&path) {
        let id = text.trim();
        if valid(id) {
            return Some(id.to_string());
        }
    }
    let id = generate(machine_id(root).as_deref());
    let _ = crate::config::make_dir(dir);
    let saved = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(id.as_bytes()));
    if saved.is_err() {
        eprintln!(
            "WARNING: Couldn't save new system ID on state file.  state_file={} system_id={id}",
            path.display()
        );
    }
    Some(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_from_the_machine_id_like_the_real_runner() {
        // HMAC-SHA256(key "0123456789abcdef0123456789abcdef", "gitlab-runner"),
        // computed independently with `openssl dgst -sha256 -hmac`.
        let id = generate(Some("0123456789abcdef0123456789abcdef"));
        assert_eq!(id, "s_ee3af03959fe");
        assert_eq!(id, generate(Some("0123456789abcdef0123456789abcdef")));
        assert_ne!(id, generate(Some("fedcba9876543210fedcba9876543210")));
    }

    #[test]
    fn without_a_machine_id_it_is_random() {
        let a = generate(None);
        let b = generate(Some(""));
        assert!(a.starts_with("r_") && valid(&a), "{a}");
        assert!(b.starts_with("r_") && valid(&b), "{b}");
        assert_ne!(a, b);
    }

    #[test]
    fn the_dbus_file_wins_and_an_empty_one_counts_as_none() {
        let root = tempfile::tempdir().expect("tempdir");
        fs::create_dir_all(root.path().join("etc")).expect("etc");
        fs::create_dir_all(root.path().join("var/lib/dbus")).expect("dbus");
        fs::write(root.path().join("etc/machine-id"), "etc-id\n").expect("write");
        assert_eq!(machine_id(root.path()).as_deref(), Some("etc-id"));
        fs::write(root.path().join("var/lib/dbus/machine-id"), "").expect("write");
        assert_eq!(machine_id(root.path()).as_deref(), Some(""));
        assert!(generate(machine_id(root.path()).as_deref()).starts_with("r_"));
    }

    #[test]
    fn an_existing_valid_file_is_kept_and_an_invalid_one_replaced() {
        let root = tempfile::tempdir().expect("tempdir");
        let config = root.path().join("etc/gitlab-runner/config.toml");
        fs::create_dir_all(config.parent().expect("dir")).expect("dir");
        let file = config.with_file_name(".runner_system_id");
        fs::write(&file, "s_abcdefABCDEF\n").expect("write");
        assert_eq!(
            ensure(&config, root.path()).as_deref(),
            Some("s_abcdefABCDEF")
        );
        fs::write(&file, "garbage").expect("write");
        let made = ensure(&config, root.path()).expect("id");
        assert!(valid(&made), "{made}");
        assert_eq!(fs::read_to_string(&file).expect("read"), made);
    }
}
