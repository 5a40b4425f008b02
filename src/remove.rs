//! `remove`: the inverse of apply, from the receipt (see `receipt`).
//!
//! Each part is reported like a step (`plan`'s pending with `--dry-run`):
//! `runners` unregisters this profile's runners and takes their entries out
//! of config.toml (every other byte of the file kept); `files` removes the
//! files the tool created (apt sources and keys, drop-ins, units, the
//! daemon.json it wrote), keeping one changed since; `groups` takes back the
//! group memberships it added; `modules` the module lines it appended;
//! `packages` purges the packages it installed only with `--purge`, and
//! otherwise says they are kept. What is done leaves the receipt, so a
//! second `remove` changes nothing.

use std::time::{Duration, Instant};

use anyhow::Result;

use crate::edit::{modules, runner_config};
use crate::host::Host;
use crate::host::command::Cmd;
use crate::receipt::{self, Receipt};
use crate::report::{Counts, Reporter, Status, StepReport};
use crate::steps::{CONFIG_TOML, Mode, prune_schedule, shutdown_unregister};

pub struct Options {
    pub dry_run: bool,
    pub purge: bool,
}

/// One part's outcome: what changed (or would), what was kept and why.
#[derive(Default)]
struct Part {
    changes: Vec<String>,
    kept: Vec<String>,
}

/// Runs every part in order; returns the counts for the exit code.
pub fn run(host: &Host, reporter: &Reporter, options: &Options) -> Result<Counts> {
    let started = Instant::now();
    let mut receipt = receipt::load(host)?;
    let mode = Mode::dry_run(options.dry_run);
    let event = mode.step_event();
    let mut counts = Counts::default();
    // The shutdown unit would unregister when stopped: it stops quietly
    // first, and the receipt follows the file it rewrote for that.
    let unit = shutdown_unregister::UNIT;
    if !options.dry_run
        && unchanged(host, &receipt, unit)?
        && shutdown_unregister::stop_quietly(host)?
    {
        if let Some(bytes) = host.files.read_bytes(unit)? {
            receipt
                .files
                .insert(unit.to_string(), crate::host::files::sha256(&bytes));
        }
    }
    type PartFn = fn(&Host, &mut Receipt, &Options) -> Result<Part>;
    let parts: [(&'static str, PartFn); 5] = [
        ("runners", runners),
        ("files", files),
        ("groups", groups),
        ("modules", module_lines),
        ("packages", packages),
    ];
    for (id, part) in parts {
        reporter.step_started(id);
        let began = Instant::now();
        let report = match part(host, &mut receipt, options) {
            Ok(part) => {
                for kept in &part.kept {
                    reporter.warning(Some(id), &format!("kept {kept}"));
                }
                let status = match (part.changes.is_empty(), options.dry_run) {
                    (true, _) if !part.kept.is_empty() => Status::Skipped,
                    (true, _) => Status::Ok,
                    (false, true) => Status::Pending,
                    (false, false) => Status::Changed,
                };
                let reason =
                    (!part.kept.is_empty()).then(|| format!("kept {}", part.kept.join("; ")));
                step(id, status, part.changes, reason, began.elapsed())
            }
            Err(e) => step(
                id,
                Status::Failed,
                Vec::new(),
                Some(format!("{e:#}")),
                began.elapsed(),
            ),
        };
        counts.add(report.status);
        reporter.step_finished(event, &report);
    }
    if !options.dry_run {
        receipt::store(host, &receipt)?;
    }
    reporter.summary(&counts, started.elapsed(), mode);
    Ok(counts)
}

/// The file is the tool's and as it wrote it.
fn unchanged(host: &Host, receipt: &Receipt, path: &str) -> Result<bool> {
    let Some(sha) = receipt.files.get(path) else {
        return Ok(false);
    };
    Ok(host
        .files
        .read_bytes(path)?
        .is_some_and(|bytes| crate::host::files::sha256(&bytes) == *sha))
}

fn step(
    id: &'static str,
    status: Status,
    changes: Vec<String>,
    reason: Option<String>,
    duration: Duration,
) -> StepReport {
    StepReport {
        id,
        status,
        changes,
        reason,
        diffs: Vec::new(),
        duration,
    }
}

/// Unregisters each recorded runner still in config.toml (GitLab Runner
/// then removes this machine's manager for a `glrt-` token, the runner for
/// a legacy one), then writes config.toml as it was without that runner's
/// entry, whatever `unregister` rewrote, so other runners keep every byte.
fn runners(host: &Host, receipt: &mut Receipt, options: &Options) -> Result<Part> {
    let mut part = Part::default();
    let text = host.files.read(CONFIG_TOML)?.unwrap_or_default();
    let present = runner_config::runners(&text).unwrap_or_default();
    for runner in receipt.runners.clone() {
        if runner_config::find(&present, &runner.url, &runner.name).is_none() {
            if !options.dry_run {
                receipt.runners.remove(&runner);
            }
            continue;
        }
        part.changes.push(format!(
            "unregister runner {} at {} and remove it from {CONFIG_TOML}",
            runner.name, runner.url
        ));
        if options.dry_run {
            continue;
        }
        let before = host.files.read(CONFIG_TOML)?.unwrap_or_default();
        let unregistered = host.probe(Cmd::new("gitlab-runner").args([
            "unregister",
            "--config",
            CONFIG_TOML,
            "--name",
            runner.name.as_str(),
        ]))?;
        if unregistered.code != Some(0) {
            host.warn(
                "runners",
                &format!(
                    "GitLab could not be told that runner {} is gone (gitlab-runner unregister failed); delete it in GitLab's runner settings",
                    runner.name
                ),
            );
        }
        let wanted = runner_config::remove_runner(&before, &runner.url, &runner.name)
            .map_err(|e| anyhow::anyhow!("{CONFIG_TOML}: {e}"))?;
        if host.files.read(CONFIG_TOML)?.as_deref() != Some(wanted.as_str()) {
            host.files
                .write_atomic(CONFIG_TOML, wanted.as_bytes(), 0o600)?;
        }
        receipt.runners.remove(&runner);
    }
    Ok(part)
}

/// Removes the files the tool created, unless changed since it wrote them.
fn files(host: &Host, receipt: &mut Receipt, options: &Options) -> Result<Part> {
    let mut part = Part::default();
    let mut units_changed = false;
    for (path, sha) in receipt.files.clone() {
        let Some(bytes) = host.files.read_bytes(&path)? else {
            if !options.dry_run {
                receipt.files.remove(&path);
            }
            continue;
        };
        if crate::host::files::sha256(&bytes) != sha {
            part.kept
                .push(format!("{path} (changed since runner-provision wrote it)"));
            continue;
        }
        part.changes.push(format!("remove {path}"));
        if options.dry_run {
            continue;
        }
        if path == prune_schedule::TIMER {
            prune_schedule::stop_and_disable(host)?;
        }
        if path == shutdown_unregister::UNIT {
            host.run(Cmd::new("systemctl").args(["disable", shutdown_unregister::UNIT_NAME]))?;
        }
        host.files.remove(&path)?;
        receipt.files.remove(&path);
        units_changed |= path.starts_with("/etc/systemd/");
    }
    if units_changed && host.live && host.os.systemd {
        host.run(Cmd::new("systemctl").arg("daemon-reload"))?;
    }
    Ok(part)
}

/// Takes back the group memberships the tool added.
fn groups(host: &Host, receipt: &mut Receipt, options: &Options) -> Result<Part> {
    let mut part = Part::default();
    for membership in receipt.memberships.clone() {
        let member = host
            .accounts
            .group(&membership.group)?
            .is_some_and(|g| g.members.contains(&membership.user));
        if member {
            part.changes.push(format!(
                "remove {} from group {} (a running service keeps it until restarted)",
                membership.user, membership.group
            ));
            if options.dry_run {
                continue;
            }
            host.run(Cmd::new("gpasswd").args([
                "--delete",
                membership.user.as_str(),
                membership.group.as_str(),
            ]))?;
        }
        if !options.dry_run {
            receipt.memberships.remove(&membership);
        }
    }
    Ok(part)
}

/// Takes back the module lines the tool appended.
fn module_lines(host: &Host, receipt: &mut Receipt, options: &Options) -> Result<Part> {
    let mut part = Part::default();
    for line in receipt.module_lines.clone() {
        let text = host.files.read(&line.file)?.unwrap_or_default();
        let wanted = modules::remove(&text, &line.module);
        if wanted != text {
            part.changes
                .push(format!("remove {} from {}", line.module, line.file));
            if options.dry_run {
                continue;
            }
            host.files
                .write_atomic(&line.file, wanted.as_bytes(), 0o644)?;
        }
        if !options.dry_run {
            receipt.module_lines.remove(&line);
        }
    }
    Ok(part)
}

/// Purges the packages the tool installed with `--purge`; else keeps them
/// (and Docker's data) and says so.
fn packages(host: &Host, receipt: &mut Receipt, options: &Options) -> Result<Part> {
    let mut part = Part::default();
    let mut installed = Vec::new();
    for package in receipt.packages.clone() {
        if host.packages()?.installed(host, &package)? {
            installed.push(package);
        } else if !options.dry_run {
            receipt.packages.remove(&package);
            receipt.holds.remove(&package);
        }
    }
    if installed.is_empty() {
        return Ok(part);
    }
    if !options.purge {
        part.kept.push(format!(
            "packages {} and Docker's data in /var/lib/docker (--purge removes the packages)",
            installed.join(" ")
        ));
        return Ok(part);
    }
    // A held package (a version pin) is one apt refuses to remove.
    let mut held = Vec::new();
    for package in &installed {
        if host.packages()?.held(host, package)? {
            held.push(package.as_str());
        }
    }
    if !held.is_empty() {
        part.changes
            .push(format!("release the hold on {}", held.join(" ")));
    }
    part.changes
        .push(format!("purge packages {}", installed.join(" ")));
    part.kept
        .push("Docker's data in /var/lib/docker (remove it yourself if you want it gone)".into());
    if options.dry_run {
        return Ok(part);
    }
    host.packages()?.unhold(host, "packages", &held)?;
    let names: Vec<&str> = installed.iter().map(String::as_str).collect();
    host.packages()?.purge(host, "packages", &names)?;
    for package in &installed {
        receipt.packages.remove(package);
        receipt.holds.remove(package);
    }
    Ok(part)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Format;
    use crate::steps::{Selection, run as steps_run};
    use crate::testing::FakeHost;

    const TOKEN: &str = "GR1348941legacyTokenValue42";

    fn apply(fake: &FakeHost) {
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let counts = steps_run(
            &host,
            &fake.settings(Some(TOKEN)),
            &Selection::default(),
            Mode::Apply,
            &reporter,
        );
        assert_eq!(counts.failed, 0, "{}", reporter.captured());
        receipt::record_run(&host).expect("receipt");
    }

    fn remove(fake: &FakeHost, dry_run: bool, purge: bool) -> (Counts, String) {
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let counts = run(&host, &reporter, &Options { dry_run, purge }).expect("remove");
        (counts, reporter.captured())
    }

    #[test]
    fn remove_takes_back_what_apply_created_and_a_second_changes_nothing() {
        let fake = FakeHost::debian12();
        apply(&fake);
        let receipt = fake.read(receipt::PATH);
        assert!(
            receipt.contains("docker.io") && receipt.contains("runner-1"),
            "{receipt}"
        );
        let applied = fake.snapshot();

        let (dry, out) = remove(&fake, true, false);
        assert!(dry.pending > 0, "{out}");
        assert_eq!(fake.snapshot(), applied, "--dry-run changed files");

        let (removed, out) = remove(&fake, false, false);
        assert_eq!(removed.failed, 0, "{out}");
        assert!(out.contains("kept packages"), "{out}");
        assert!(
            !fake
                .read("/etc/gitlab-runner/config.toml")
                .contains("runner-1")
        );
        assert!(
            fake.read("/etc/group").contains("docker:x:998:\n"),
            "{}",
            fake.read("/etc/group")
        );
        assert!(!fake.read("/etc/modules").contains("overlay"));
        assert!(!fake.root().join("etc/docker/daemon.json").exists());

        let after = fake.snapshot();
        let (again, out) = remove(&fake, false, false);
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
        assert_eq!(fake.snapshot(), after, "a second remove changed files");
    }

    #[test]
    fn a_file_changed_since_the_tool_wrote_it_is_kept() {
        let fake = FakeHost::debian12();
        apply(&fake);
        fake.write(
            "/etc/docker/daemon.json",
            "{\"storage-driver\": \"overlay2\", \"mine\": 1}\n",
        );
        let (removed, out) = remove(&fake, false, false);
        assert_eq!(removed.failed, 0, "{out}");
        assert!(
            out.contains("changed since runner-provision wrote it"),
            "{out}"
        );
        assert!(fake.root().join("etc/docker/daemon.json").exists());
    }

    #[test]
    fn an_operators_daemon_json_is_never_removed() {
        // There before apply: apply merges its keys in, and the file stays
        // the operator's (not in the receipt), so remove leaves it whole.
        let fake = FakeHost::debian12();
        fake.write("/etc/docker/daemon.json", "{\"live-restore\": true}\n");
        apply(&fake);
        let merged = fake.read("/etc/docker/daemon.json");
        assert!(
            merged.contains("live-restore") && merged.contains("log-opts"),
            "{merged}"
        );
        assert!(!fake.read(receipt::PATH).contains("daemon.json"));
        let (removed, out) = remove(&fake, false, false);
        assert_eq!(removed.failed, 0, "{out}");
        assert_eq!(fake.read("/etc/docker/daemon.json"), merged);
    }

    #[test]
    fn purging_a_pinned_package_releases_its_hold_first() {
        let fake = FakeHost::debian12();
        let mut settings = fake.settings(Some(TOKEN));
        settings.profile.runner.version = "17.7.0".into();
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let counts = steps_run(
            &host,
            &settings,
            &Selection::default(),
            Mode::Apply,
            &reporter,
        );
        assert_eq!(counts.failed, 0, "{}", reporter.captured());
        receipt::record_run(&host).expect("receipt");

        let (dry, out) = remove(&fake, true, true);
        assert_eq!(dry.failed, 0, "{out}");
        assert!(
            out.contains("release the hold on gitlab-runner gitlab-runner-helper-images"),
            "{out}"
        );
        let (removed, out) = remove(&fake, false, true);
        assert_eq!(removed.failed, 0, "{out}");
        let apt: Vec<String> = fake
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains("apt-mark unhold") || c.contains(" purge "))
            .collect();
        assert_eq!(apt.len(), 2, "{apt:#?}");
        assert_eq!(
            apt[0],
            "apt-mark unhold gitlab-runner gitlab-runner-helper-images"
        );
        assert!(
            apt[1].contains(" purge ") && apt[1].contains("gitlab-runner-helper-images"),
            "{apt:#?}"
        );
    }

    #[test]
    fn without_a_receipt_there_is_nothing_to_remove() {
        let fake = FakeHost::debian12();
        let before = fake.snapshot();
        let (counts, out) = remove(&fake, false, true);
        assert_eq!(
            (counts.changed, counts.failed, counts.skipped),
            (0, 0, 0),
            "{out}"
        );
        assert_eq!(fake.snapshot(), before);
    }
}
