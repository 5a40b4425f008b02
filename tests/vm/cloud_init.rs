//! A VM provisions itself from the user data `runner-provision cloud-init`
//! prints, then a second boot of the same disk changes nothing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

use crate::prerequisites::{missing, repo, skip, tool_binary};
use crate::qemu::{self, Boot, Image, Results};
use crate::secret;

/// What the payload disk holds, as the guest sees it.
const PAYLOAD_MOUNT: &str = "/mnt/payload";

/// The first boot installs Docker Engine under emulation (about 3 minutes)
/// and pulls package lists through QEMU's user network.
const FIRST_BOOT_TIMEOUT: Duration = Duration::from_secs(15 * 60);
const SECOND_BOOT_TIMEOUT: Duration = Duration::from_secs(8 * 60);

#[test]
fn cloud_init_provisions_a_vm_and_the_second_boot_changes_nothing() {
    if let Some(reason) = missing(&[
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
        ("cloud-localds", "cloud-image-utils"),
        ("debootstrap", "debootstrap"),
        ("mkfs.ext4", "e2fsprogs"),
        ("dpkg-deb", "dpkg"),
        ("chroot", "coreutils"),
    ]) {
        skip(&reason);
        return;
    }
    let work = tempfile::Builder::new()
        .prefix("rp-vm-")
        .tempdir_in("/var/tmp")
        .expect("a work directory in /var/tmp")
        .keep();
    eprintln!("vm: working in {}", work.display());
    match provision_and_reboot(&work) {
        Ok(timings) => {
            eprintln!("vm: timings: {timings}");
            let _ = fs::remove_dir_all(&work);
        }
        // Kept for a look at the disks, logs and results.
        Err(e) => panic!("{e:#}\n(kept {})", work.display()),
    }
}

fn provision_and_reboot(work: &Path) -> Result<String> {
    let mut timings = Vec::new();
    let mut timed = |what: &str, since: Instant| {
        let took = since.elapsed();
        eprintln!("vm: {what}: {:.0} s", took.as_secs_f64());
        timings.push(format!("{what} {:.0} s", took.as_secs_f64()));
    };

    let started = Instant::now();
    let image = Image::get(&repo())?;
    timed("image", started);

    let started = Instant::now();
    let payload = work.join("payload.img");
    build_payload(work, &payload)?;
    let token = legacy_token();
    let user_data = work.join("user-data");
    render_user_data(work, &token, &user_data)?;
    check_schema_in_image(&image, &user_data)?;
    let meta_data = work.join("meta-data");
    fs::write(
        &meta_data,
        "instance-id: rp-vm-test-1\nlocal-hostname: rp-vm\n",
    )?;
    let seed = work.join("seed.iso");
    qemu::nocloud_seed(&seed, &user_data, &meta_data)?;
    let disk = work.join("disk.qcow2");
    image.overlay(&disk)?;
    timed("payload, user data and seed", started);

    let needles = secret::needles(&token);
    // The search must be able to see the token where it really is.
    ensure!(
        secret::betrays(&fs::read(&user_data)?, &needles),
        "the rendered user data does not hold the token in any form the search knows"
    );

    let boot = |n: u32, kernel_args, timeout| Boot {
        image: &image,
        disk: &disk,
        payload: &payload,
        seed: &seed,
        results: work.join(format!("results{n}.img")),
        serial: work.join(format!("serial{n}.log")),
        kernel_args,
        timeout,
    };

    // Boot 1: only the user data's power_state can end it.
    let first = boot(1, "", FIRST_BOOT_TIMEOUT);
    let took = first.run().context("first boot")?;
    eprintln!("vm: first boot: {:.0} s", took.as_secs_f64());
    timings.push(format!("first boot {:.0} s", took.as_secs_f64()));
    let results = first.results_into(&work.join("results1"))?;
    check_first_boot(&results)?;
    check_token_absent(&results, &first.serial, &needles)?;

    // Boot 2: the image's rp-poweroff.service ends it once cloud-init is done.
    let second = boot(2, "rp.poweroff", SECOND_BOOT_TIMEOUT);
    let took = second.run().context("second boot")?;
    eprintln!("vm: second boot: {:.0} s", took.as_secs_f64());
    timings.push(format!("second boot {:.0} s", took.as_secs_f64()));
    let results = second.results_into(&work.join("results2"))?;
    check_second_boot(&results)?;
    check_token_absent(&results, &second.serial, &needles)?;

    Ok(timings.join(", "))
}

/// The payload disk: the tool binary and a flat apt repository holding the
/// stand-in gitlab-runner package.
fn build_payload(work: &Path, image: &Path) -> Result<()> {
    let dir = work.join("payload");
    fs::create_dir_all(&dir)?;
    fs::copy(tool_binary(), dir.join("runner-provision")).context("copying the tool")?;
    let stand_in = stand_in_binary()?;
    let debs = work.join("debs");
    qemu::run(
        Command::new(repo().join("tests/stand-in/build-deb.sh"))
            .arg(&stand_in)
            .arg(&debs),
    )?;
    qemu::run(
        Command::new(repo().join("tests/stand-in/build-repo.sh"))
            .arg(&debs)
            .arg(dir.join("repo")),
    )?;
    let size = fs::metadata(dir.join("runner-provision"))?.len() + (64 << 20);
    qemu::ext4_from_dir(image, "rp-payload", &dir, size)
}

/// The stand-in gitlab-runner, built (or rebuilt when stale) for this run.
fn stand_in_binary() -> Result<PathBuf> {
    crate::stand_in::stand_in_binary().map_err(anyhow::Error::msg)
}

/// A legacy registration token, new for every run so that nothing left from
/// an earlier run can satisfy or spoil the searches.
fn legacy_token() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("GR1348941vmTest{:08x}{:08x}", std::process::id(), nanos)
}

/// A profile like the default one, but installing gitlab-runner from the
/// payload disk's repository and accepting the docker group's risk.
const PROFILE: &str = test_profile! {
    description: "VM test: shell executor, gitlab-runner from the payload disk",
    url: "https://gitlab.example.test/",
    name: "rp-vm-test",
    repository: "file:/mnt/payload/repo/",
    verify_timeout: 180,
};

/// Exactly what `runner-provision cloud-init` prints, written to `path`.
fn render_user_data(work: &Path, token: &str, path: &Path) -> Result<()> {
    let profile = work.join("profile.toml");
    fs::write(&profile, PROFILE)?;
    let output = Command::new(tool_binary())
        .arg("--profile")
        .arg(&profile)
        .arg("cloud-init")
        .arg("--binary-path")
        .arg(format!("{PAYLOAD_MOUNT}/runner-provision"))
        .args(["--power-state", "poweroff"])
        .env("RUNNER_TOKEN", token)
        .stdin(Stdio::null())
        .output()
        .context("running runner-provision cloud-init")?;
    ensure!(
        output.status.success(),
        "runner-provision cloud-init exited with {}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.stdout.starts_with(b"#cloud-config\n"),
        "cloud-init printed no #cloud-config: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    fs::write(path, &output.stdout)?;
    Ok(())
}

/// `cloud-init schema` of the image's own cloud-init, run in its tree.
fn check_schema_in_image(image: &Image, user_data: &Path) -> Result<()> {
    let name = format!("rp-schema-{}.yaml", std::process::id());
    let inside = image.rootfs().join("tmp").join(&name);
    fs::copy(user_data, &inside)?;
    let output = Command::new("chroot")
        .arg(image.rootfs())
        .args(["cloud-init", "schema", "--config-file"])
        .arg(format!("/tmp/{name}"))
        .stdin(Stdio::null())
        .output();
    let _ = fs::remove_file(&inside);
    let output = output.context("running cloud-init schema in the image")?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    ensure!(
        output.status.success() && text.contains("Valid"),
        "cloud-init schema rejects the rendered user data ({}): {text}",
        output.status
    );
    Ok(())
}

/// The tool's human summary lines in cloud-init's output log, oldest first.
fn summaries(results: &Results) -> Vec<String> {
    results
        .copied("/var/log/cloud-init-output.log")
        .lines()
        .filter(|line| line.starts_with("summary: "))
        .map(str::to_owned)
        .collect()
}

/// The number before `word` in a summary line ("summary: 3 ok, 5 changed, ...").
fn count(summary: &str, word: &str) -> Option<u32> {
    let words: Vec<&str> = summary
        .split([' ', ','])
        .filter(|w| !w.is_empty())
        .collect();
    words
        .windows(2)
        .find(|pair| pair[1] == word)
        .and_then(|pair| pair[0].parse().ok())
}

fn check_cloud_init_done(results: &Results) -> Result<()> {
    let status = results.out("cloud-init-status");
    ensure!(
        results.rc("cloud-init-status") == 0 && status.contains("status: done"),
        "cloud-init status --long (exit {}):\n{status}",
        results.rc("cloud-init-status")
    );
    let log = results.copied("/var/log/cloud-init.log");
    let problems: Vec<&str> = log
        .lines()
        .filter(|line| {
            line.contains("[ERROR]")
                || line.contains("[CRITICAL]")
                || line.contains("Traceback")
                // The boot-time schema check of the merged configuration.
                || line.contains("Invalid cloud-config provided")
        })
        .collect();
    ensure!(
        problems.is_empty(),
        "cloud-init.log has errors:\n{}",
        problems.join("\n")
    );
    Ok(())
}

/// What a converged host looks like from the inside; shared by both boots.
fn check_host_converged(results: &Results) -> Result<()> {
    let initstate = results.out("overlay-initstate");
    ensure!(
        initstate.trim() == "live",
        "overlay is not a loaded module: /sys/module/overlay/initstate: {initstate}"
    );
    let modules = results.out("etc-modules");
    ensure!(
        modules.lines().any(|line| line.trim() == "overlay"),
        "/etc/modules does not list overlay:\n{modules}"
    );
    let driver = results.out("docker-driver");
    ensure!(
        results.rc("docker-driver") == 0 && driver.trim() == "overlay2",
        "`runuser -l gitlab-runner -c 'docker info'` (exit {}): driver {driver:?}\n{}",
        results.rc("docker-driver"),
        results.out("docker-info")
    );
    ensure!(
        results
            .out("docker-info")
            .contains("Storage Driver: overlay2"),
        "docker info as gitlab-runner:\n{}",
        results.out("docker-info")
    );
    let id = results.out("id-gitlab-runner");
    ensure!(
        id.contains("(docker)"),
        "gitlab-runner is not in group docker: {id}"
    );

    let stat = results.out("config-toml-stat");
    ensure!(
        stat.trim() == "600 root:root",
        "/etc/gitlab-runner/config.toml mode and owner: {stat}"
    );
    let config: toml::Table = results
        .out("config-toml")
        .parse()
        .context("parsing config.toml from the guest")?;
    let runners = config
        .get("runners")
        .and_then(|r| r.as_array())
        .context("config.toml has no [[runners]]")?;
    ensure!(
        runners.len() == 1,
        "config.toml has {} [[runners]]",
        runners.len()
    );
    let runner = &runners[0];
    ensure!(
        runner.get("name").and_then(|v| v.as_str()) == Some("rp-vm-test")
            && runner.get("url").and_then(|v| v.as_str()) == Some("https://gitlab.example.test/")
            && runner.get("executor").and_then(|v| v.as_str()) == Some("shell"),
        "the runner in config.toml is not the profile's: {runner:?}"
    );
    let environment: Vec<&str> = runner
        .get("environment")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
        .unwrap_or_default();
    ensure!(
        environment.contains(&"DOCKER_DRIVER=overlay2"),
        "config.toml's runner environment lacks DOCKER_DRIVER=overlay2: {environment:?}"
    );

    let daemon: serde_json::Value = serde_json::from_str(&results.out("daemon-json"))
        .context("parsing /etc/docker/daemon.json from the guest")?;
    ensure!(
        daemon["storage-driver"] == "overlay2",
        "/etc/docker/daemon.json: {daemon}"
    );

    let installed = results.out("runner-provision-stat");
    ensure!(
        installed.starts_with("755 root:root "),
        "/usr/local/bin/runner-provision: {installed}"
    );
    // The tool agrees, read-only: healthy, and nothing left to change.
    ensure!(
        results.rc("rp-verify") == 0,
        "runner-provision verify in the guest (exit {}):\n{}",
        results.rc("rp-verify"),
        results.out("rp-verify")
    );
    ensure!(
        results.rc("rp-plan") == 0,
        "runner-provision plan --detailed-exitcode in the guest (exit {}, 2 = changes pending):\n{}",
        results.rc("rp-plan"),
        results.out("rp-plan")
    );
    ensure!(
        results.rc("token-file-stat") != 0,
        "the token file is still there: /run/runner-provision/token {}",
        results.out("token-file-stat")
    );
    Ok(())
}

fn check_first_boot(results: &Results) -> Result<()> {
    check_cloud_init_done(results)?;
    check_host_converged(results)?;
    let per_boot = results.out("per-boot-stat");
    ensure!(
        per_boot.trim() == "755 root:root",
        "/var/lib/cloud/scripts/per-boot/runner-provision: {per_boot}"
    );
    let summaries = summaries(results);
    ensure!(
        summaries.len() == 1,
        "expected one apply summary in cloud-init-output.log after the first boot, found {summaries:?}"
    );
    let summary = &summaries[0];
    ensure!(
        count(summary, "failed") == Some(0) && count(summary, "changed").is_some_and(|n| n > 0),
        "first apply: {summary}"
    );
    Ok(())
}

fn check_second_boot(results: &Results) -> Result<()> {
    check_cloud_init_done(results)?;
    check_host_converged(results)?;
    let boots = results.out("boots");
    ensure!(
        boots.lines().filter(|l| !l.trim().is_empty()).count() >= 2,
        "the journal does not know two boots:\n{boots}"
    );
    let summaries = summaries(results);
    ensure!(
        summaries.len() == 2,
        "expected two apply summaries in cloud-init-output.log after the second boot, found {summaries:?}"
    );
    let summary = &summaries[1];
    ensure!(
        count(summary, "changed") == Some(0) && count(summary, "failed") == Some(0),
        "the second boot's apply changed something: {summary}\n{}",
        results.out("cloud-final-journal")
    );
    Ok(())
}

/// The token is in no log, no cloud-init state, not in the journal and not
/// on the serial console.
fn check_token_absent(results: &Results, serial: &Path, needles: &[Vec<u8>]) -> Result<()> {
    let mut found = secret::files_betraying(&results.copies(), needles);
    for path in [results.dir.join("journal.out"), serial.to_path_buf()] {
        if secret::betrays(
            &fs::read(&path).with_context(|| format!("reading {}", path.display()))?,
            needles,
        ) {
            found.push(path);
        }
    }
    ensure!(
        found.is_empty(),
        "the token is in: {}",
        found
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

#[test]
fn summary_counts_are_read_by_word() {
    let line = "summary: 3 ok, 5 changed, 0 skipped, 0 failed (12.3s)";
    assert_eq!(count(line, "ok"), Some(3));
    assert_eq!(count(line, "changed"), Some(5));
    assert_eq!(count(line, "failed"), Some(0));
    assert_eq!(count(line, "missing"), None);
}
