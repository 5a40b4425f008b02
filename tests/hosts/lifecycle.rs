//! Scenarios of issue 13: golden images built with `--root`, and what
//! instances booted from them do.
//!
//! An image tree is a copy of the cached base image, provisioned from
//! outside with `runner-provision --root TREE apply` through
//! packer/root-apply.sh, the script the Packer example runs: a private mount
//! and PID namespace (`unshare`) with /proc, /dev, /sys and a tmpfs /run,
//! here also the local mirrors bound read-only at /srv/debian and
//! /srv/runner-repo. Everything mounted or started there ends with the
//! namespace. The build machine of a real image runs systemd (as Packer's
//! do), which packages' scripts and GitLab Runner's service installer detect
//! by /run/systemd/system; this test machine's PID 1 is not systemd, so
//! IMAGE_SYSTEMD=1 makes the script create that folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::GLRT_TOKEN;
use crate::checks::{self, assert_provisioned, assert_second_apply_changes_nothing};
use crate::harness::{self, Run, STAND_IN_LOG, TEST_PROFILE, TOOL, Tier, WORK_ROOT};
use crate::scenarios::WallTime;

/// Files of an image that the build manages, checked byte for byte.
const IMAGE_FILES: &[&str] = &[
    "/etc/gitlab-runner",
    "/etc/docker/daemon.json",
    "/etc/modules",
    "/etc/group",
    "/etc/gshadow",
    "/etc/passwd",
    "/etc/machine-id",
    "/etc/apt/sources.list.d",
    "/etc/systemd/system/multi-user.target.wants",
    "/var/lib/dpkg/status",
    "/usr/sbin/policy-rc.d",
];

/// A throwaway image tree; removed when dropped.
pub struct ImageTree {
    dir: PathBuf,
    pub root: PathBuf,
}

impl ImageTree {
    /// A copy of the cached base image, carrying the tool and the profile
    /// its instances apply at boot.
    pub fn copy(tier: &Tier, name: &str) -> ImageTree {
        let dir = Path::new(WORK_ROOT).join(name);
        harness::remove_tree(&dir);
        fs::create_dir_all(&dir).expect("creating the image directory");
        let root = dir.join("rootfs");
        harness::run_host(Command::new("cp").arg("-a").arg(tier.image()).arg(&root))
            .expect("copying the base image");
        let tree = ImageTree { dir, root };
        fs::copy(tier.tool_binary(), tree.path(TOOL)).expect("copying the tool");
        tree.write(harness::PROFILE, TEST_PROFILE);
        fs::create_dir_all(tree.path("/var/lib/runner-provision-tests")).expect("log dir");
        tree
    }

    pub fn path(&self, path: &str) -> PathBuf {
        self.root.join(path.trim_start_matches('/'))
    }

    fn write(&self, path: &str, text: &str) {
        let full = self.path(path);
        fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        fs::write(full, text).expect("write");
    }

    pub fn read(&self, path: &str) -> String {
        fs::read_to_string(self.path(path)).unwrap_or_default()
    }

    /// `runner-provision --root TREE --profile … --output json ARGS…` from
    /// outside the tree, as an image builder runs it.
    pub fn tool(&self, tier: &Tier, args: &[&str]) -> Run {
        let (debian, runner_repo) = tier.mirrors();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("packer/root-apply.sh");
        let profile = self.path(harness::PROFILE);
        let mut cmd = Command::new("sh");
        cmd.arg(script)
            .arg(&self.root)
            .arg("--profile")
            .arg(&profile)
            .args(["--output", "json"])
            .args(args)
            .env("RUNNER_PROVISION", tier.tool_binary())
            .env(
                "BIND_RO",
                format!(
                    "{}:/srv/debian {}:/srv/runner-repo",
                    debian.display(),
                    runner_repo.display()
                ),
            )
            // This machine's PID 1 is not systemd; the image's instances' is.
            .env("IMAGE_SYSTEMD", "1")
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("GITLAB_RUNNER_STAND_IN_LOG", STAND_IN_LOG)
            .env_remove("RUNNER_TOKEN");
        let run = Run::capture(&mut cmd);
        eprintln!(
            "[image] runner-provision --root {} -> {} in {:.1}s",
            args.join(" "),
            run.status,
            run.duration.as_secs_f64()
        );
        run
    }

    pub fn apply(&self, tier: &Tier) -> Run {
        self.tool(tier, &["apply"])
    }

    pub fn snapshot(&self) -> Vec<(String, Option<Vec<u8>>)> {
        let mut files = Vec::new();
        for path in IMAGE_FILES {
            let full = self.path(path);
            if full.is_dir() {
                let mut names: Vec<String> = fs::read_dir(&full)
                    .expect("read_dir")
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                names.sort();
                for name in names {
                    let child = full.join(&name);
                    let bytes = fs::read_link(&child)
                        .map(|t| t.to_string_lossy().into_owned().into_bytes())
                        .or_else(|_| fs::read(&child))
                        .ok();
                    files.push((format!("{path}/{name}"), bytes));
                }
            } else {
                files.push((path.to_string(), fs::read(&full).ok()));
            }
        }
        files
    }

    /// What a golden image holds: both packages, Docker enabled, the group,
    /// overlay and the driver persisted; and no registration, no token, no
    /// identity of the build machine, nothing of the build left behind.
    pub fn assert_golden(&self) {
        let status = self.read("/var/lib/dpkg/status");
        for package in ["gitlab-runner", "docker.io"] {
            assert!(
                status.contains(&format!("Package: {package}\nStatus: install ok installed")),
                "{package} is not installed in the image"
            );
        }
        let wants = self.path("/etc/systemd/system/multi-user.target.wants");
        for unit in ["docker.service", "gitlab-runner.service"] {
            assert!(
                wants.join(unit).is_symlink(),
                "{unit} is not enabled in the image"
            );
        }
        let docker = self
            .read("/etc/group")
            .lines()
            .find(|l| l.starts_with("docker:"))
            .unwrap_or_default()
            .to_string();
        assert!(
            docker
                .rsplit(':')
                .next()
                .unwrap_or_default()
                .split(',')
                .any(|m| m == "gitlab-runner"),
            "gitlab-runner is not in group docker: {docker}"
        );
        assert!(
            self.read("/etc/modules")
                .lines()
                .any(|l| l.trim() == "overlay"),
            "overlay is not persisted in /etc/modules"
        );
        assert!(
            self.read("/etc/docker/daemon.json")
                .contains("\"storage-driver\": \"overlay2\""),
            "daemon.json: {}",
            self.read("/etc/docker/daemon.json")
        );
        let config = self.read("/etc/gitlab-runner/config.toml");
        assert!(
            !config.contains("[[runners]]") && !config.contains("token"),
            "the image is registered:\n{config}"
        );
        assert!(
            !self.path("/etc/gitlab-runner/.runner_system_id").exists(),
            "the image carries a runner system id"
        );
        assert_eq!(
            self.read("/etc/machine-id"),
            "",
            "the image carries a machine id (GitLab Runner derives its system id from it)"
        );
        let dbus = self.path("/var/lib/dbus/machine-id");
        assert!(
            dbus.is_symlink() || !dbus.exists(),
            "the image carries a D-Bus machine id"
        );
        assert!(
            !self.path("/usr/sbin/policy-rc.d").exists(),
            "the build's policy-rc.d was left in the image"
        );
        let calls = self.read(STAND_IN_LOG);
        assert!(
            !calls.contains("\"register\""),
            "gitlab-runner register ran while building the image:\n{calls}"
        );
    }
}

impl Drop for ImageTree {
    fn drop(&mut self) {
        if std::env::var_os("RUNNER_PROVISION_KEEP_HOSTS").is_some() {
            eprintln!("[image] kept in {}", self.dir.display());
        } else {
            harness::remove_tree(&self.dir);
        }
    }
}

fn status_of(run: &Run, id: &str) -> String {
    run.step(id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Golden image: built with `--root` from outside, then booted twice.
pub fn golden_image() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("golden_image");
    let image = ImageTree::copy(&tier, "rp-golden-image");
    assert_ne!(
        image.read("/etc/machine-id").trim(),
        "",
        "the base image should carry a machine id for this test to mean anything"
    );

    let built = image.apply(&tier);
    built.assert_applied("--root apply on the image tree");
    for id in [
        "runner-install",
        "docker-install",
        "docker-group",
        "overlay-module",
        "docker-driver",
        "image-identity",
    ] {
        assert_eq!(
            status_of(&built, id),
            "changed",
            "{id}\n{}",
            built.transcript()
        );
    }
    assert_eq!(status_of(&built, "runner-register"), "skipped");
    assert_eq!(status_of(&built, "docker-verify"), "skipped");
    image.assert_golden();

    // An image builder's smoke check (`gitlab-runner list`) makes a system
    // id, as GitLab Runner does whenever it loads its config: the next
    // apply takes it out again, and the one after changes nothing.
    let list = Run::capture(
        Command::new("chroot")
            .arg(&image.root)
            .args(["gitlab-runner", "list"])
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    );
    list.assert_success("gitlab-runner list in the image");
    assert!(
        image.path("/etc/gitlab-runner/.runner_system_id").exists(),
        "the stand-in makes .runner_system_id on loading its config, as GitLab Runner does"
    );
    let again = image.apply(&tier);
    again.assert_applied("second --root apply");
    assert_eq!(again.summary()["changed"], 1, "{}", again.transcript());
    assert_eq!(status_of(&again, "image-identity"), "changed");
    image.assert_golden();
    let before = image.snapshot();
    let third = image.apply(&tier);
    third.assert_converged("third --root apply");
    assert!(
        before == image.snapshot(),
        "a converged --root apply changed files"
    );

    // Two instances of the image: the per-boot apply registers, installs
    // nothing, and the host is ready; each is its own runner manager.
    let mut system_ids = Vec::new();
    let mut machine_ids = Vec::new();
    for name in ["rp-golden-a", "rp-golden-b"] {
        let host = tier.boot_from(name, &image.root, |_| {});
        let packages = host.snapshot(&["/var/lib/dpkg/status", "/var/log/dpkg.log"]);
        let boot = host.apply(&[], Some(GLRT_TOKEN));
        boot.assert_applied("per-boot apply on an instance of the golden image");
        for id in ["runner-install", "docker-install"] {
            assert_eq!(status_of(&boot, id), "ok", "{id}\n{}", boot.transcript());
        }
        assert_eq!(status_of(&boot, "runner-register"), "changed");
        packages.assert_same(
            &host.snapshot(&["/var/lib/dpkg/status", "/var/log/dpkg.log"]),
            "the per-boot apply on a golden image",
        );
        assert_provisioned(&host, false);
        host.tool(&["verify"], None)
            .assert_success("verify on an instance of the golden image");
        assert_second_apply_changes_nothing(&host, Some(GLRT_TOKEN));

        let id = host.read("/etc/gitlab-runner/.runner_system_id");
        assert!(
            id.starts_with("s_") && id.len() == 14,
            "{name}: system id {id:?} is not derived from a machine id"
        );
        system_ids.push(id);
        machine_ids.push(host.read("/etc/machine-id").trim().to_string());
        assert_eq!(checks::registrations(&host).len(), 1);
    }
    assert_ne!(
        machine_ids[0], machine_ids[1],
        "instances of one image share a machine id"
    );
    assert_ne!(
        system_ids[0], system_ids[1],
        "instances of one image are the same runner manager"
    );
}

/// Shutdown: with `--unregister-on-shutdown`, powering the host off
/// unregisters this host's runner (only), after the runner service stopped
/// gracefully and before the network went down.
pub fn shutdown_unregisters() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("shutdown_unregisters");
    let mut host = tier.boot_with("rp-shutdown", |root| {
        // A persistent journal, read from outside after the power-off.
        fs::create_dir_all(root.join("var/log/journal")).expect("journal dir");
        // A network that goes down at shutdown: systemd-networkd (lo only,
        // the container has a private network) and its network.target.
        let wants = root.join("etc/systemd/system/multi-user.target.wants");
        fs::create_dir_all(&wants).expect("wants");
        std::os::unix::fs::symlink(
            "/lib/systemd/system/systemd-networkd.service",
            wants.join("systemd-networkd.service"),
        )
        .expect("enabling systemd-networkd");
        // The stand-in records the unit's calls in its log.
        let drop_in = root.join("etc/systemd/system/runner-provision-unregister.service.d");
        fs::create_dir_all(&drop_in).expect("drop-in dir");
        fs::write(
            drop_in.join("test-log.conf"),
            format!("[Service]\nEnvironment=GITLAB_RUNNER_STAND_IN_LOG={STAND_IN_LOG}\n"),
        )
        .expect("drop-in");
    });
    let applied = host.apply(&["--unregister-on-shutdown"], Some(GLRT_TOKEN));
    applied.assert_applied("apply with --unregister-on-shutdown");
    assert_eq!(status_of(&applied, "shutdown-unregister"), "changed");
    assert_eq!(
        host.sh("systemctl is-active runner-provision-unregister.service")
            .stdout
            .trim(),
        "active"
    );
    assert_eq!(
        host.sh("systemctl show -p KillSignal --value gitlab-runner.service")
            .stdout
            .trim(),
        "3",
        "gitlab-runner.service stops with SIGQUIT"
    );
    let again = host.apply(&["--unregister-on-shutdown"], Some(GLRT_TOKEN));
    again.assert_converged("second apply with --unregister-on-shutdown");

    // Another runner in the same config.toml, not this host's profile's.
    host.sh_ok(
        "CI_SERVER_TOKEN=glrt-another-fleet-runner gitlab-runner register --non-interactive \
         --url https://other.example.com/ --name other --executor shell >/dev/null 2>&1",
    );
    let name = checks::host_name(&host);
    let system_id = host.read("/etc/gitlab-runner/.runner_system_id");
    host.poweroff();

    let unregisters: Vec<serde_json::Value> = host
        .read(STAND_IN_LOG)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|call| call["argv"].get(1).and_then(|a| a.as_str()) == Some("unregister"))
        .collect();
    assert_eq!(unregisters.len(), 1, "{unregisters:?}");
    let argv: Vec<&str> = unregisters[0]["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .filter_map(|a| a.as_str())
        .collect();
    assert!(
        argv.windows(2).any(|w| w == ["--name", name.as_str()]),
        "unregistered by this host's runner name: {argv:?}"
    );
    assert!(
        !argv.iter().any(|a| a.contains("glrt-")),
        "a token on argv: {argv:?}"
    );
    let config = host.read("/etc/gitlab-runner/config.toml");
    assert!(
        !config.contains(&format!("name = \"{name}\"")) && config.contains("name = \"other\""),
        "only this host's runner leaves config.toml:\n{config}"
    );

    let journal = Run::capture(
        Command::new("journalctl")
            .arg("--directory")
            .arg(host.path("/var/log/journal"))
            .args(["--no-pager", "--output", "short-monotonic"]),
    );
    journal.assert_success("reading the container's journal");
    let lines: Vec<&str> = journal.stdout.lines().collect();
    let find = |what: &str, pred: &dyn Fn(&str) -> bool| {
        lines
            .iter()
            .position(|l| pred(l))
            .unwrap_or_else(|| panic!("journal: no line for {what}\n{}", journal.stdout))
    };
    let graceful = find("the runner's graceful shutdown", &|l| {
        l.contains("Starting graceful shutdown")
    });
    let stopped = find("gitlab-runner.service stopped", &|l| {
        l.contains("Stopped gitlab-runner.service") || l.contains("Stopped GitLab Runner")
    });
    let unregistered = find("the unregistration", &|l| {
        l.contains("Unregistering runner manager from GitLab succeeded")
    });
    let network_down = find("network.target stopped", &|l| {
        l.contains("Stopped target network.target") || l.contains("Stopped target Network")
    });
    assert!(
        graceful < stopped && stopped < unregistered && unregistered < network_down,
        "order: graceful {graceful}, stopped {stopped}, unregistered {unregistered}, network down {network_down}\n{}",
        journal.stdout
    );
    assert!(
        lines[unregistered].contains(system_id.trim()),
        "the manager removed is this machine's ({system_id}): {}",
        lines[unregistered]
    );
}

/// The tool's run with a fixed clock for the stand-in (`token_obtained_at`),
/// so that registering again writes the same bytes.
fn tool_at_fixed_time(host: &crate::harness::Container, args: &[&str], token: Option<&str>) -> Run {
    let run = Run::capture(
        host.tool_command(args, token)
            .env("GITLAB_RUNNER_STAND_IN_NOW", "2026-11-28T12:00:00Z"),
    );
    eprintln!(
        "[{}] runner-provision {} -> {}",
        host.name,
        args.join(" "),
        run.status
    );
    run
}

/// Files a round trip must leave as a first apply left them.
const ROUND_TRIP: &[&str] = &[
    "/etc/gitlab-runner/config.toml",
    "/etc/docker",
    "/etc/modules",
    "/etc/group",
    "/etc/gshadow",
    "/etc/apt/sources.list.d",
    "/etc/apt/keyrings",
    "/var/lib/dpkg/status",
    "/var/lib/runner-provision/receipt.json",
];

/// `remove` after a converged apply, `remove` again (nothing), `apply`
/// again (the same files as the first apply).
pub fn remove_round_trip() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("remove_round_trip");
    let host = tier.boot("rp-remove");
    // Someone else's runner in the same config.toml, registered by hand.
    host.sh_ok(&format!(
        "{} && \
         GITLAB_RUNNER_STAND_IN_NOW=2026-11-28T12:00:00Z CI_SERVER_TOKEN=glrt-someone-elses-runner \
         gitlab-runner register --non-interactive --url https://other.example.com/ \
         --name other --executor shell >/dev/null 2>&1",
        harness::INSTALL_STAND_IN_BY_HAND
    ));
    let first = tool_at_fixed_time(&host, &["--output", "json", "apply"], Some(GLRT_TOKEN));
    first.assert_applied("first apply");
    let applied = host.snapshot(ROUND_TRIP);
    let receipt = host.read("/var/lib/runner-provision/receipt.json");
    assert_eq!(host.mode("/var/lib/runner-provision/receipt.json"), 0o600);
    for recorded in [
        "docker.io",
        "/etc/docker/daemon.json",
        "\"group\": \"docker\"",
        "overlay",
    ] {
        assert!(
            receipt.contains(recorded),
            "receipt lacks {recorded}:\n{receipt}"
        );
    }
    assert!(
        !receipt.contains("\"gitlab-runner\"\n") && !receipt.contains("glrt-"),
        "receipt records a package it did not install, or a token:\n{receipt}"
    );

    let dry = host.tool(
        &[
            "--output",
            "json",
            "remove",
            "--dry-run",
            "--detailed-exitcode",
        ],
        None,
    );
    assert_eq!(dry.code(), Some(2), "{}", dry.transcript());
    applied.assert_same(&host.snapshot(ROUND_TRIP), "remove --dry-run");

    let config_before = host.read("/etc/gitlab-runner/config.toml");
    let name = checks::host_name(&host);
    let removed = host.tool(&["--output", "json", "remove"], None);
    removed.assert_applied("remove");
    assert!(
        removed.stdout.contains("kept packages docker.io"),
        "remove says what it kept\n{}",
        removed.transcript()
    );
    // Only this host's runner left config.toml; every other byte stayed.
    let start = config_before
        .find(&format!("[[runners]]\n  name = \"{name}\""))
        .expect("our runner in config.toml");
    let end = config_before[start + 1..]
        .find("[[runners]]")
        .map_or(config_before.len(), |i| start + 1 + i);
    let mut expected = config_before.clone();
    expected.replace_range(start..end, "");
    let expected = expected.replace("\n\n\n", "\n\n");
    let config_after = host.read("/etc/gitlab-runner/config.toml");
    assert!(
        config_after == expected || config_after.trim_end() == expected.trim_end(),
        "config.toml after remove:\n{config_after}\nexpected:\n{expected}"
    );
    assert!(config_after.contains("name = \"other\""));
    let unregisters: Vec<String> = checks::stand_in_calls(&host)
        .into_iter()
        .filter(|c| c["argv"].get(1).and_then(|a| a.as_str()) == Some("unregister"))
        .map(|c| c["argv"].to_string())
        .collect();
    assert_eq!(unregisters.len(), 1, "{unregisters:?}");
    assert!(
        unregisters[0].contains(&format!("\"--name\",\"{name}\"")),
        "{unregisters:?}"
    );
    let recorded: serde_json::Value = serde_json::from_str(&receipt).expect("receipt is JSON");
    for path in recorded["files"].as_object().expect("files").keys() {
        assert!(
            !host.path(path).exists(),
            "{path}, created by apply, is still there"
        );
    }
    assert!(
        !host.path("/etc/docker/daemon.json").exists(),
        "daemon.json the tool wrote is gone"
    );
    let groups = host.sh_ok("id -nG gitlab-runner");
    assert!(
        !groups.split_whitespace().any(|g| g == "docker"),
        "still in docker: {groups}"
    );
    assert!(
        !host
            .read("/etc/modules")
            .lines()
            .any(|l| l.trim() == "overlay")
    );
    assert_eq!(
        host.sh_ok("dpkg-query -W -f '${Status}' docker.io"),
        "install ok installed",
        "packages stay without --purge"
    );

    let after_remove = host.snapshot(ROUND_TRIP);
    let again = host.tool(&["--output", "json", "remove"], None);
    again.assert_applied("second remove");
    assert_eq!(again.summary()["changed"], 0, "{}", again.transcript());
    after_remove.assert_same(&host.snapshot(ROUND_TRIP), "second remove");

    let reapplied = tool_at_fixed_time(&host, &["--output", "json", "apply"], Some(GLRT_TOKEN));
    reapplied.assert_applied("apply after remove");
    applied.assert_same(
        &host.snapshot(ROUND_TRIP),
        "apply after remove (round trip)",
    );
    host.tool(&["verify"], None)
        .assert_success("verify after the round trip");
}
