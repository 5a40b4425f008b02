//! image-identity: an image tree (`--root`) carries no identity of the
//! machine it was built on, so every instance made from it is its own
//! runner manager.
//!
//! GitLab Runner keeps its system id (the manager's identity in GitLab) in
//! `.runner_system_id` next to config.toml, made on first start as
//! `s_` + HMAC-SHA256 of the machine id (/var/lib/dbus/machine-id, else
//! /etc/machine-id), or random (`r_…`) without one
//! (`commands/internal/configfile/system_id.go`). Either file left in an
//! image makes every instance the same manager: the system id file is
//! removed and the machine id emptied (systemd makes a new one at first
//! boot; an empty file, not a missing one, is what it expects), and a
//! D-Bus copy of it removed (Debian's dbus recreates it as a link to
//! /etc/machine-id). A live host keeps its identity.

use anyhow::Result;

use super::{Change, Settings, State, Step};
use crate::host::Host;

pub struct ImageIdentity;

pub const SYSTEM_ID: &str = "/etc/gitlab-runner/.runner_system_id";
const MACHINE_ID: &str = "/etc/machine-id";
const DBUS_MACHINE_ID: &str = "/var/lib/dbus/machine-id";

/// Does `path` hold a machine id? Empty and `uninitialized` (systemd's
/// first-boot marker) do not; a symbolic link (Debian links the D-Bus file
/// to /etc/machine-id) is another file's name and does not count.
fn machine_id_set(host: &Host, path: &str) -> Result<bool> {
    if host.files.is_symlink(path) {
        return Ok(false);
    }
    Ok(host.files.read_bytes(path)?.is_some_and(|bytes| {
        let text = String::from_utf8_lossy(&bytes);
        !matches!(text.trim(), "" | "uninitialized")
    }))
}

impl Step for ImageIdentity {
    fn check(&self, host: &Host, _settings: &Settings) -> Result<State> {
        if host.live {
            // A running machine's identity is its own: nothing to do.
            return Ok(State::Done);
        }
        let mut changes = Vec::new();
        if host.files.exists(SYSTEM_ID) || host.files.is_symlink(SYSTEM_ID) {
            changes.push(Change::new(format!(
                "remove {SYSTEM_ID} (each instance makes its own runner system id)"
            )));
        }
        if machine_id_set(host, MACHINE_ID)? {
            changes.push(Change::new(format!(
                "empty {MACHINE_ID} (systemd makes a new one at first boot; GitLab Runner derives its system id from it)"
            )));
        }
        if machine_id_set(host, DBUS_MACHINE_ID)? {
            changes.push(Change::new(format!("remove {DBUS_MACHINE_ID}")));
        }
        Ok(State::from_changes(changes))
    }

    fn apply(&self, host: &Host, _settings: &Settings) -> Result<Vec<String>> {
        let mut done = Vec::new();
        if host.files.exists(SYSTEM_ID) || host.files.is_symlink(SYSTEM_ID) {
            host.files.remove(SYSTEM_ID)?;
            done.push(format!("removed {SYSTEM_ID}"));
        }
        if machine_id_set(host, MACHINE_ID)? {
            host.files.write_atomic(MACHINE_ID, b"", 0o444)?;
            done.push(format!("emptied {MACHINE_ID}"));
        }
        if machine_id_set(host, DBUS_MACHINE_ID)? {
            host.files.remove(DBUS_MACHINE_ID)?;
            done.push(format!("removed {DBUS_MACHINE_ID}"));
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::report::{Format, Reporter};
    use crate::steps::{Mode, Selection, run};
    use crate::testing::FakeHost;

    const ID: &str = "0123456789abcdef0123456789abcdef\n";

    fn image(fake: &FakeHost, reporter: Arc<Reporter>) -> Host {
        fake.offline_host(reporter)
    }

    fn only() -> Selection {
        Selection::of(&[crate::steps::StepId::ImageIdentity])
    }

    fn go(fake: &FakeHost, mode: Mode) -> (crate::report::Counts, String) {
        let reporter = fake.reporter(Format::Json);
        let host = image(fake, reporter.clone());
        let counts = run(&host, &fake.settings(None), &only(), mode, &reporter);
        (counts, reporter.captured())
    }

    #[test]
    fn an_image_loses_the_system_id_and_the_machine_id_once() {
        let fake = FakeHost::debian12();
        fake.write(SYSTEM_ID, "s_0123456789ab");
        fake.write(MACHINE_ID, ID);
        fake.write(DBUS_MACHINE_ID, ID);

        let (plan, out) = go(&fake, Mode::Plan);
        assert_eq!((plan.pending, plan.failed), (1, 0), "{out}");
        assert!(
            out.contains(SYSTEM_ID) && out.contains(DBUS_MACHINE_ID),
            "{out}"
        );
        let (applied, out) = go(&fake, Mode::Apply);
        assert_eq!((applied.changed, applied.failed), (1, 0), "{out}");
        assert!(
            !fake
                .root()
                .join("etc/gitlab-runner/.runner_system_id")
                .exists()
        );
        assert!(!fake.root().join("var/lib/dbus/machine-id").exists());
        // Emptied, not removed: systemd fills an empty file at first boot.
        assert_eq!(fake.read(MACHINE_ID), "");
        assert!(fake.root().join("etc/machine-id").exists());

        let before = fake.snapshot();
        let (again, out) = go(&fake, Mode::Apply);
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
        assert_eq!(fake.snapshot(), before);
    }

    #[test]
    fn an_uninitialized_machine_id_and_a_link_are_left_alone() {
        let fake = FakeHost::debian12();
        fake.write(MACHINE_ID, "uninitialized\n");
        // Debian's layout: the D-Bus file is a link to systemd's.
        std::fs::create_dir_all(fake.root().join("var/lib/dbus")).expect("mkdir");
        std::os::unix::fs::symlink(
            "/etc/machine-id",
            fake.root().join("var/lib/dbus/machine-id"),
        )
        .expect("symlink");
        let (plan, out) = go(&fake, Mode::Plan);
        assert_eq!((plan.pending, plan.failed), (0, 0), "{out}");
        assert_eq!(fake.read(MACHINE_ID), "uninitialized\n");
        assert!(fake.root().join("var/lib/dbus/machine-id").is_symlink());
    }

    #[test]
    fn a_live_host_keeps_its_identity() {
        let fake = FakeHost::debian12();
        fake.write(SYSTEM_ID, "s_0123456789ab");
        fake.write(MACHINE_ID, ID);
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let counts = run(&host, &fake.settings(None), &only(), Mode::Apply, &reporter);
        assert_eq!((counts.changed, counts.failed), (0, 0));
        assert_eq!(fake.read(MACHINE_ID), ID);
        assert_eq!(fake.read(SYSTEM_ID), "s_0123456789ab");
    }

    #[test]
    fn an_image_without_a_token_is_not_registered_and_not_warned_about() {
        let fake = FakeHost::debian12();
        let reporter = fake.reporter(Format::Json);
        let host = image(&fake, reporter.clone());
        let counts = run(
            &host,
            &fake.settings(None),
            &Selection::default(),
            Mode::Apply,
            &reporter,
        );
        let out = reporter.captured();
        assert_eq!(counts.failed, 0, "{out}");
        assert!(out.contains("the instance registers at boot"), "{out}");
        assert!(
            !out.contains("\"event\":\"warning\",\"id\":\"runner-register\""),
            "{out}"
        );
        assert!(
            !fake
                .commands()
                .iter()
                .any(|c| c.display().contains("register")),
            "registered an image"
        );
    }
}
