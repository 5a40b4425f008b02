//! Version pins and the one apt transaction of a fresh install, on the fake
//! host: through apt's own code (the fake runner's apt-get, apt-mark and
//! dpkg status) and through the package-manager seam (`FakePackages`).

use std::sync::Arc;

use super::{Mode, Selection, StepId, run};
use crate::profile::DockerSource;
use crate::report::{Counts, Format, Reporter};
use crate::steps::Settings;
use crate::testing::{FakeHost, FakePackages};

const LEGACY: &str = "GR1348941legacyTokenValue42";

fn go(fake: &FakeHost, settings: &Settings, mode: Mode) -> (Counts, Arc<Reporter>) {
    go_only(fake, settings, mode, &[])
}

fn go_only(
    fake: &FakeHost,
    settings: &Settings,
    mode: Mode,
    only: &[StepId],
) -> (Counts, Arc<Reporter>) {
    fake.run_steps(settings, &Selection::of(only), mode)
}

/// The commands the fake runner saw whose program is `program`.
fn spawned(fake: &FakeHost, program: &str) -> Vec<String> {
    fake.commands()
        .iter()
        .filter(|c| c.program() == program)
        .map(|c| c.display())
        .collect()
}

/// The step_finished line of `id`.
fn finished(out: &str, id: &str) -> String {
    out.lines()
        .find(|l| l.contains("step_finished") && l.contains(&format!("\"id\":\"{id}\"")))
        .unwrap_or_else(|| panic!("no step_finished for {id}:\n{out}"))
        .to_string()
}

#[test]
fn a_fresh_apply_runs_apt_get_update_and_install_once_for_both_steps() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let text = out.captured();
    assert_eq!(counts.failed, 0, "{text}");
    let apt = spawned(&fake, "apt-get");
    let updates: Vec<&String> = apt.iter().filter(|c| c.contains(" update")).collect();
    let installs: Vec<&String> = apt.iter().filter(|c| c.contains(" install ")).collect();
    assert_eq!(updates.len(), 1, "{apt:#?}");
    assert_eq!(installs.len(), 1, "{apt:#?}");
    assert!(
        installs[0].ends_with(" gitlab-runner docker.io"),
        "{}",
        installs[0]
    );
    // Without a pin: no version on the command line, nothing held.
    assert!(
        !installs[0].contains("--allow-downgrades"),
        "{}",
        installs[0]
    );
    assert!(spawned(&fake, "apt-mark").is_empty());
    for (id, what) in [
        ("runner-install", "installed package gitlab-runner"),
        ("docker-install", "installed package docker.io"),
    ] {
        let line = finished(&text, id);
        assert!(
            line.contains("\"status\":\"changed\"") && line.contains(what),
            "{line}"
        );
    }
    // docker-install still did its own work after the shared install.
    assert!(
        finished(&text, "docker-install")
            .contains("one apt transaction for runner-install and docker-install"),
        "{text}"
    );

    let before = fake.snapshot();
    let (again, out) = go(&fake, &settings, Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
    assert_eq!(
        spawned(&fake, "apt-get").len(),
        apt.len(),
        "nothing more from apt"
    );
    assert_eq!(fake.snapshot(), before, "a converged apply changed files");
}

#[test]
fn one_step_alone_installs_alone_and_a_failed_shared_install_falls_back_to_each_step() {
    // --only docker-install: its own transaction, no runner package.
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = go_only(&fake, &settings, Mode::Apply, &[StepId::DockerInstall]);
    assert_eq!(
        (counts.changed, counts.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    let apt = spawned(&fake, "apt-get");
    assert!(apt.iter().any(|c| c.ends_with(" docker.io")), "{apt:#?}");
    assert!(!apt.iter().any(|c| c.contains("gitlab-runner")), "{apt:#?}");

    // The shared apt-get install fails once: each step then installs its
    // own, and both end changed.
    let fake = FakeHost::debian12();
    fake.failing.lock().expect("lock").push((
        "apt-get install".into(),
        "once:E: Sub-process /usr/bin/dpkg returned an error code (1)".into(),
    ));
    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let text = out.captured();
    assert_eq!(counts.failed, 0, "{text}");
    assert!(
        text.contains("in one apt transaction failed, so each installs its own")
            && text.contains("dpkg returned an error code"),
        "{text}"
    );
    let installs: Vec<String> = spawned(&fake, "apt-get")
        .into_iter()
        .filter(|c| c.contains(" install "))
        .collect();
    assert_eq!(installs.len(), 3, "shared, then one each: {installs:#?}");
    assert!(finished(&text, "runner-install").contains("\"status\":\"changed\""));
    assert!(finished(&text, "docker-install").contains("\"status\":\"changed\""));
}

#[test]
fn a_runner_pin_installs_exactly_that_version_with_its_helper_images_and_holds_both() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.runner.version = "17.7.0".into();

    let (plan, out) = go(&fake, &settings, Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    assert!(
        text.contains("install packages gitlab-runner 17.7.0-1, gitlab-runner-helper-images 17.7.0-1 (runner.version)"),
        "{text}"
    );
    assert!(
        text.contains("hold gitlab-runner gitlab-runner-helper-images (apt-mark hold: upgrades, unattended-upgrades too, leave them where runner.version pins them)"),
        "{text}"
    );

    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let text = out.captured();
    assert_eq!(counts.failed, 0, "{text}");
    let installs: Vec<String> = spawned(&fake, "apt-get")
        .into_iter()
        .filter(|c| c.contains(" install "))
        .collect();
    assert_eq!(installs.len(), 1, "{installs:#?}");
    assert!(
        installs[0].contains("--allow-downgrades --allow-change-held-packages")
            && installs[0].ends_with(
                " gitlab-runner=17.7.0-1 gitlab-runner-helper-images=17.7.0-1 docker.io"
            ),
        "one transaction, the runner and its helper images at the pin: {}",
        installs[0]
    );
    assert_eq!(
        spawned(&fake, "apt-mark"),
        ["apt-mark hold gitlab-runner gitlab-runner-helper-images"]
    );
    let status = fake.read("/var/lib/dpkg/status");
    for package in ["gitlab-runner", "gitlab-runner-helper-images"] {
        assert!(
            status.contains(&format!(
                "Package: {package}\nStatus: hold ok installed\nVersion: 17.7.0-1\n"
            )),
            "{status}"
        );
    }
    // docker.io is not pinned: not held.
    assert!(
        status.contains("Package: docker.io\nStatus: install ok installed"),
        "{status}"
    );
    assert!(
        finished(&text, "runner-install")
            .contains("held gitlab-runner gitlab-runner-helper-images")
    );

    let before = fake.snapshot();
    let commands = fake.commands().len();
    let (again, out) = go(&fake, &settings, Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
    assert_eq!(fake.snapshot(), before);
    assert!(
        !fake.commands()[commands..]
            .iter()
            .any(|c| c.program() == "apt-get" || c.program() == "apt-mark"),
        "a converged pin runs no apt"
    );

    // An explicit upgrade: the new pin, shown as from → to, one install of
    // both packages, still held, then converged.
    settings.profile.runner.version = "17.8.0".into();
    let (plan, out) = go(&fake, &settings, Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    assert!(
        text.contains("\"id\":\"runner-install\",\"status\":\"pending\""),
        "{text}"
    );
    for line in [
        "upgrade gitlab-runner 17.7.0-1 → 17.8.0-1 (runner.version)",
        "upgrade gitlab-runner-helper-images 17.7.0-1 → 17.8.0-1 (runner.version)",
    ] {
        assert!(text.contains(line), "{line}: {text}");
    }
    assert!(
        !text.contains("\"hold gitlab"),
        "still held, no new hold: {text}"
    );
    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let text = out.captured();
    assert_eq!((counts.changed, counts.failed), (1, 0), "{text}");
    assert!(
        finished(&text, "runner-install").contains("upgraded gitlab-runner 17.7.0-1 → 17.8.0-1"),
        "{text}"
    );
    let status = fake.read("/var/lib/dpkg/status");
    assert!(
        status.contains("Package: gitlab-runner\nStatus: hold ok installed\nVersion: 17.8.0-1\n"),
        "{status}"
    );
    let (again, out) = go(&fake, &settings, Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());

    // And down again: a downgrade, said so.
    settings.profile.runner.version = "17.7.0-1".into();
    let (plan, out) = go(&fake, &settings, Mode::Plan);
    assert!(
        out.captured()
            .contains("downgrade gitlab-runner 17.8.0-1 → 17.7.0-1 (runner.version)"),
        "{}",
        out.captured()
    );
    assert_eq!(plan.failed, 0);

    // The pin removed: nothing moves, and plan says the hold stays (no
    // receipt here, so the hold is not known as the tool's: as one made by
    // hand, or by a version of the tool that did not record its holds).
    settings.profile.runner.version = String::new();
    let (plan, out) = go(&fake, &settings, Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    assert!(
        text.contains("\"id\":\"runner-install\",\"status\":\"ok\""),
        "{text}"
    );
    assert!(
        text.contains("held (apt-mark hold) but runner.version pins no version")
            && text.contains("apt-mark unhold gitlab-runner gitlab-runner-helper-images"),
        "{text}"
    );
}

#[test]
fn a_pin_before_17_7_has_no_helper_images_package() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.runner.version = "17.5.0".into();
    let (plan, out) = go_only(&fake, &settings, Mode::Plan, &[StepId::RunnerInstall]);
    assert_eq!(plan.failed, 0, "{}", out.captured());
    assert!(
        out.captured().contains("hold gitlab-runner (apt-mark hold: upgrades, unattended-upgrades too, leave it where runner.version pins it)"),
        "{}",
        out.captured()
    );
    let (counts, out) = go_only(&fake, &settings, Mode::Apply, &[StepId::RunnerInstall]);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    let apt = spawned(&fake, "apt-get");
    assert!(
        apt.iter().any(|c| c.ends_with(" gitlab-runner=17.5.0-1")),
        "{apt:#?}"
    );
    assert!(!apt.iter().any(|c| c.contains("helper-images")), "{apt:#?}");
    assert_eq!(spawned(&fake, "apt-mark"), ["apt-mark hold gitlab-runner"]);

    // Released by hand at the pinned version: held again, nothing installed.
    let status = fake.read("/var/lib/dpkg/status");
    let held = "Package: gitlab-runner\nStatus: hold ok installed\n";
    assert!(status.contains(held), "{status}");
    fake.write(
        "/var/lib/dpkg/status",
        &status.replace(
            held,
            "Package: gitlab-runner\nStatus: install ok installed\n",
        ),
    );
    let commands = fake.commands().len();
    let (counts, out) = go_only(&fake, &settings, Mode::Apply, &[StepId::RunnerInstall]);
    assert_eq!(
        (counts.changed, counts.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    let run: Vec<String> = fake.commands()[commands..]
        .iter()
        .map(|c| c.display())
        .collect();
    assert_eq!(run, ["apt-mark hold gitlab-runner"]);
    assert!(fake.read("/var/lib/dpkg/status").contains(held));
}

#[test]
fn a_docker_pin_installs_and_holds_the_engine_and_client_at_that_version() {
    for (source, version, pinned, free) in [
        (
            DockerSource::Distro,
            "20.10.24+dfsg1-1+deb12u1",
            vec!["docker.io"],
            vec![],
        ),
        (
            DockerSource::DockerCe,
            "5:27.3.1-1~debian.12~bookworm",
            vec!["docker-ce", "docker-ce-cli"],
            vec!["containerd.io"],
        ),
    ] {
        let fake = FakeHost::debian12();
        let packages = FakePackages::default();
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.docker.source = source;
        settings.profile.docker.version = version.into();
        let reporter = fake.reporter(Format::Json);
        let host = fake
            .host(reporter.clone())
            .with_packages(Box::new(packages.clone()));
        let selection = Selection::of(&[StepId::DockerInstall]);
        let counts = run(&host, &settings, &selection, Mode::Apply, &reporter);
        assert_eq!(counts.failed, 0, "{}", reporter.captured());
        let log = packages.log.lock().expect("log");
        let mut expected: Vec<String> = pinned.iter().map(|p| format!("{p}={version}")).collect();
        expected.extend(free.iter().map(|p| p.to_string()));
        assert_eq!(log.transactions, vec![expected], "{source:?}");
        let held: Vec<&str> = log.held.iter().map(String::as_str).collect();
        let mut want = pinned.clone();
        want.sort_unstable();
        assert_eq!(
            held, want,
            "{source:?}: containerd.io keeps its own versions"
        );
    }
}

#[test]
fn a_pinned_version_the_repository_lacks_fails_saying_how_to_find_one() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.runner.version = "17.99.0".into();
    fake.failing.lock().expect("lock").push((
        "apt-get install".into(),
        "E: Version '17.99.0-1' for 'gitlab-runner' was not found".into(),
    ));
    let (counts, out) = go_only(&fake, &settings, Mode::Apply, &[StepId::RunnerInstall]);
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("installing the pinned gitlab-runner 17.99.0-1")
            && text.contains("apt-cache madison gitlab-runner"),
        "{text}"
    );
    assert!(spawned(&fake, "apt-mark").is_empty(), "nothing held");
}

#[test]
fn bad_pins_are_refused_before_any_change() {
    for (runner, docker, why) in [
        ("gitlab-runner=17.5.0", "", "`=`"),
        ("17.5.0 ", "", "spaces"),
        ("17.5.0\n", "", "control characters"),
        ("latest", "", "start with a digit"),
        ("", "27.3.1;reboot", "character"),
        ("", "$(id)", "character"),
    ] {
        let fake = FakeHost::debian12();
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.runner.version = runner.into();
        settings.profile.docker.version = docker.into();
        let before = fake.snapshot();
        let (counts, out) = go(&fake, &settings, Mode::Apply);
        let text = out.captured();
        assert_eq!(counts.failed, 1, "{runner:?} {docker:?}: {text}");
        assert!(
            text.contains("cannot be a version pin") && text.contains(why),
            "{text}"
        );
        assert!(fake.commands().is_empty(), "{runner:?}: nothing ran");
        assert_eq!(fake.snapshot(), before);
    }
}

#[test]
fn the_fleet_profile_parses_and_plans_its_pin() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    let (fleet, _) = crate::profile::Profile::load(Some("shell-docker-fleet")).expect("fleet");
    fleet.validate().expect("valid");
    let repository = settings.profile.runner.repository.take();
    settings.profile = fleet;
    settings.profile.runner.repository = repository;
    settings.profile.docker.accept_group_risk = true;
    let before = fake.snapshot();
    let (plan, out) = go(&fake, &settings, Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    assert!(
        text.contains("install packages gitlab-runner 17.11.0-1, gitlab-runner-helper-images 17.11.0-1 (runner.version)"),
        "{text}"
    );
    assert_eq!(fake.snapshot(), before, "plan changes nothing");
}

#[test]
fn a_version_change_stops_the_running_runner_gracefully_before_apt_does() {
    // Since 17.7 with its helper images package moving too; before, alone.
    for (from, to) in [("17.7.0", "17.8.0"), ("17.5.0", "17.6.0")] {
        let fake = FakeHost::debian12();
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.runner.version = from.into();
        let (counts, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!(counts.failed, 0, "{}", out.captured());
        // The service runs one shell-executor job.
        fake.write(
            "/proc/777/status",
            "Name:\tgitlab-runner\nState:\tS (sleeping)\nPPid:\t1\nUid:\t0\t0\t0\t0\n",
        );
        fake.write(
            "/proc/778/status",
            "Name:\tbash\nState:\tS (sleeping)\nPPid:\t777\n",
        );

        settings.profile.runner.version = to.into();
        let (plan, out) = go_only(&fake, &settings, Mode::Plan, &[StepId::RunnerInstall]);
        assert_eq!(plan.failed, 0, "{}", out.captured());
        assert!(
            out.captured()
                .contains("stop gitlab-runner gracefully first"),
            "{to}: {}",
            out.captured()
        );

        let commands = fake.commands().len();
        let (counts, out) = go_only(&fake, &settings, Mode::Apply, &[StepId::RunnerInstall]);
        let text = out.captured();
        assert_eq!((counts.changed, counts.failed), (1, 0), "{text}");
        let run: Vec<String> = fake.commands()[commands..]
            .iter()
            .map(|c| c.display())
            .filter(|c| !c.contains(" update"))
            .collect();
        let quit = run
            .iter()
            .position(|c| c == "systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner")
            .unwrap_or_else(|| panic!("{to}: no graceful stop: {run:#?}"));
        let install = run
            .iter()
            .position(|c| c.contains(" install ") && c.contains(&format!("gitlab-runner={to}-1")))
            .unwrap_or_else(|| panic!("{to}: no install: {run:#?}"));
        assert!(quit < install, "stopped before apt: {run:#?}");
        assert!(
            text.contains("gitlab-runner is running 1 job: stopping it gracefully")
                && finished(&text, "runner-install").contains("its 1 running job finished"),
            "{text}"
        );
    }
}

#[test]
fn the_shared_install_counts_in_the_time_of_the_step_that_runs_it() {
    let fake = FakeHost::debian12();
    let packages = FakePackages::default();
    packages.log.lock().expect("log").install_takes = std::time::Duration::from_secs(7);
    let settings = fake.settings(Some(LEGACY));
    let reporter = fake.reporter(Format::Json);
    let host = fake
        .host(reporter.clone())
        .with_packages(Box::new(packages.clone()));
    let selection = Selection::of(&[StepId::RunnerInstall, StepId::DockerInstall]);
    let counts = run(&host, &settings, &selection, Mode::Apply, &reporter);
    let text = reporter.captured();
    assert_eq!((counts.changed, counts.failed), (2, 0), "{text}");
    assert_eq!(packages.log.lock().expect("log").transactions.len(), 1);
    let duration = |id: &str| -> u64 {
        let line = finished(&text, id);
        let value: serde_json::Value = serde_json::from_str(&line).expect("json");
        value["duration_ms"].as_u64().expect("duration_ms")
    };
    assert!(duration("runner-install") >= 7000, "{text}");
    assert!(duration("docker-install") < 7000, "{text}");
}

/// `go`, then the receipt recorded as `apply` records it.
fn go_recorded(fake: &FakeHost, settings: &Settings, mode: Mode) -> (Counts, String) {
    let reporter = fake.reporter(Format::Json);
    let host = fake.host(reporter.clone());
    let counts = run(&host, settings, &Selection::default(), mode, &reporter);
    if mode == Mode::Apply {
        crate::receipt::record_run(&host).expect("receipt");
    }
    (counts, reporter.captured())
}

fn dpkg_status_of(fake: &FakeHost, package: &str) -> String {
    let status = fake.read("/var/lib/dpkg/status");
    let start = status
        .find(&format!("Package: {package}\n"))
        .unwrap_or_else(|| panic!("{package} in {status}"));
    status[start..]
        .lines()
        .nth(1)
        .unwrap_or_default()
        .to_string()
}

#[test]
fn a_hold_the_tool_made_is_released_when_its_pin_goes_away_and_one_made_by_hand_stays() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    let (counts, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!(counts.failed, 0, "{text}");
    // The operator holds docker.io by hand (as `apt-mark hold docker.io` does).
    let status = fake.read("/var/lib/dpkg/status");
    fake.write(
        "/var/lib/dpkg/status",
        &status.replace(
            "Package: docker.io\nStatus: install ok installed\n",
            "Package: docker.io\nStatus: hold ok installed\n",
        ),
    );
    assert_eq!(
        dpkg_status_of(&fake, "docker.io"),
        "Status: hold ok installed"
    );
    let installed = fake.read("/var/lib/dpkg/status");
    let docker_version = installed
        .split("Package: docker.io\n")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("Version: ")))
        .expect("docker.io's version")
        .to_string();

    // Both pinned: the runner's packages held by the tool, docker.io
    // already held (the operator's hold, not recorded as the tool's).
    settings.profile.runner.version = "17.7.0".into();
    settings.profile.docker.version = docker_version;
    let (counts, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!(counts.failed, 0, "{text}");
    let receipt: crate::receipt::Receipt =
        serde_json::from_str(&fake.read(crate::receipt::PATH)).expect("receipt");
    assert_eq!(
        receipt.holds.iter().map(String::as_str).collect::<Vec<_>>(),
        ["gitlab-runner", "gitlab-runner-helper-images"]
    );

    // Both pins removed: plan shows the release of the tool's holds, and
    // warns about the operator's, which stays.
    settings.profile.runner.version = String::new();
    settings.profile.docker.version = String::new();
    let (plan, text) = go_recorded(&fake, &settings, Mode::Plan);
    assert_eq!(plan.failed, 0, "{text}");
    assert!(
        text.contains("release the hold on gitlab-runner gitlab-runner-helper-images (apt-mark unhold: runner.version pins no version now, and the hold was runner-provision's; upgrades move them again)")
            && text.contains("\"id\":\"runner-install\",\"status\":\"pending\""),
        "{text}"
    );
    assert!(
        text.contains("docker.io held (apt-mark hold) but docker.version pins no version")
            && !text.contains("gitlab-runner held (apt-mark hold)")
            && !text.contains("release the hold on docker.io"),
        "{text}"
    );
    let marks = spawned(&fake, "apt-mark").len();
    let (counts, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!((counts.changed, counts.failed), (1, 0), "{text}");
    assert_eq!(
        spawned(&fake, "apt-mark")[marks..],
        ["apt-mark unhold gitlab-runner gitlab-runner-helper-images"]
    );
    assert!(
        finished(&text, "runner-install").contains(
            "released the hold on gitlab-runner gitlab-runner-helper-images (apt-mark unhold; runner.version pins no version)"
        ),
        "{text}"
    );
    for package in ["gitlab-runner", "gitlab-runner-helper-images"] {
        assert_eq!(
            dpkg_status_of(&fake, package),
            "Status: install ok installed"
        );
    }
    assert_eq!(
        dpkg_status_of(&fake, "docker.io"),
        "Status: hold ok installed"
    );
    let receipt = fake.read(crate::receipt::PATH);
    assert!(!receipt.contains("holds"), "{receipt}");

    // Converged: nothing more to release, files byte-identical.
    let before = fake.snapshot();
    let (again, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{text}");
    assert_eq!(fake.snapshot(), before);
    assert_eq!(spawned(&fake, "apt-mark").len(), marks + 1);
}

#[test]
fn a_released_hold_is_not_warned_about_before_or_after() {
    // The tool's own hold on docker.io: with the pin gone, plan shows its
    // release and no "held but nothing pins" warning (that one is for holds
    // made by hand); once released, nothing is held and nothing is warned.
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    let (counts, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!(counts.failed, 0, "{text}");
    let installed = fake.read("/var/lib/dpkg/status");
    settings.profile.docker.version = installed
        .split("Package: docker.io\n")
        .nth(1)
        .and_then(|rest| rest.lines().find_map(|l| l.strip_prefix("Version: ")))
        .expect("docker.io's version")
        .to_string();
    let (counts, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!(counts.failed, 0, "{text}");
    assert_eq!(
        dpkg_status_of(&fake, "docker.io"),
        "Status: hold ok installed"
    );

    settings.profile.docker.version = String::new();
    let (plan, text) = go_recorded(&fake, &settings, Mode::Plan);
    assert_eq!(plan.failed, 0, "{text}");
    assert!(text.contains("release the hold on docker.io"), "{text}");
    assert!(!text.contains("held (apt-mark hold) but"), "{text}");

    let (counts, text) = go_recorded(&fake, &settings, Mode::Apply);
    assert_eq!((counts.changed, counts.failed), (1, 0), "{text}");
    assert_eq!(
        dpkg_status_of(&fake, "docker.io"),
        "Status: install ok installed"
    );
    for mode in [Mode::Plan, Mode::Apply] {
        let (counts, text) = go_recorded(&fake, &settings, mode);
        assert_eq!((counts.changed, counts.failed), (0, 0), "{text}");
        assert!(!text.contains("held (apt-mark hold)"), "{text}");
    }
}
