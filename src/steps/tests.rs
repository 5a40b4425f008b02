//! Every step against a fake host: pending → apply → done → apply again
//! changes nothing, refusals before any change, and the token kept out of
//! argv and output.

use std::time::Duration;

use super::{Mode, Selection, StepId, registry, run};
use crate::profile::DockerSource;
use crate::report::Format;
use crate::steps::Settings;
use crate::testing::FakeHost;

const LEGACY: &str = "GR1348941legacyTokenValue42";
const AUTH: &str = "glrt-auth.TokenValue0123456789";

/// Steps with nothing to change on a fresh Debian 12 host: network has no
/// `[network]` to apply (its own tests cover it), docker-verify,
/// docker-build and runner-alive only check, image-identity has nothing to
/// do on a live host (its own tests cover images), shutdown-unregister is
/// off by default, and so is prune-schedule; runner-globals has no
/// `[global]` to set (its own tests cover it).
const NOTHING_TO_DO_ON_A_FRESH_HOST: [StepId; 8] = [
    StepId::Network,
    StepId::RunnerGlobals,
    StepId::ShutdownUnregister,
    StepId::PruneSchedule,
    StepId::DockerVerify,
    StepId::DockerBuild,
    StepId::ImageIdentity,
    StepId::RunnerAlive,
];

/// Every step, preflight included: what a run reports on.
fn reported() -> usize {
    registry().len() + 1
}

fn changing_on_a_fresh_host() -> impl Iterator<Item = StepId> {
    registry()
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !NOTHING_TO_DO_ON_A_FRESH_HOST.contains(id))
}

#[test]
fn full_apply_converges_and_a_second_apply_changes_nothing() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (first, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(first.failed, 0, "{}", out.captured());
    assert_eq!(
        first.changed,
        changing_on_a_fresh_host().count(),
        "{}",
        out.captured()
    );

    let before = fake.snapshot();
    let commands_before = fake.commands().len();
    let (second, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(
        (second.changed, second.failed, second.skipped),
        (0, 0, 0),
        "{}",
        out.captured()
    );
    assert_eq!(
        fake.snapshot(),
        before,
        "a converged apply must leave every file byte-identical"
    );
    let spawned: Vec<String> = fake.ran_since(commands_before);
    assert_eq!(
        spawned,
        vec![
            "runuser -l gitlab-runner -c 'docker info --format '\\''{{.Driver}}'\\'''",
            "su -s /bin/bash gitlab-runner -c 'bash -l'",
            "gitlab-runner verify"
        ],
        "a converged apply spawns only docker info, the job's build and the runner's verify"
    );

    let config = fake.read("/etc/gitlab-runner/config.toml");
    assert!(config.contains("name = \"runner-1\""), "{config}");
    assert!(config.contains("DOCKER_DRIVER=overlay2"), "{config}");
    assert!(
        fake.read("/etc/docker/daemon.json")
            .contains("\"storage-driver\": \"overlay2\"")
    );
    assert_eq!(
        fake.read("/etc/modules"),
        "# /etc/modules: kernel modules to load at boot time.\nloop\noverlay\n"
    );
}

#[test]
fn every_step_converges_on_its_own() {
    for id in changing_on_a_fresh_host() {
        let fake = FakeHost::debian12();
        let settings = fake.settings(Some(LEGACY));
        fake.run_steps(&settings, &Selection::without(&[id]), Mode::Apply);

        let (plan, out) = fake.run_steps(&settings, &Selection::of(&[id]), Mode::Plan);
        assert_eq!(
            (plan.pending, plan.failed),
            (1, 0),
            "{id} should be pending: {}",
            out.captured()
        );
        let (applied, out) = fake.run_steps(&settings, &Selection::of(&[id]), Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{id} should change: {}",
            out.captured()
        );
        let (plan, out) = fake.run_steps(&settings, &Selection::of(&[id]), Mode::Plan);
        assert_eq!(
            (plan.pending, plan.ok),
            (0, 2),
            "{id} should be done: {}",
            out.captured()
        );
        let before = fake.snapshot();
        let (again, out) = fake.run_steps(&settings, &Selection::of(&[id]), Mode::Apply);
        assert_eq!(
            again.changed,
            0,
            "{id} changed on a second apply: {}",
            out.captured()
        );
        assert_eq!(
            fake.snapshot(),
            before,
            "{id} touched files on a second apply"
        );
    }
}

#[test]
fn the_token_is_never_on_argv_nor_in_output() {
    for (token, variable) in [(LEGACY, "REGISTRATION_TOKEN"), (AUTH, "CI_SERVER_TOKEN")] {
        let fake = FakeHost::debian12();
        let settings = fake.settings(Some(token));
        let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
        assert_eq!(counts.failed, 0, "{}", out.captured());
        let commands = fake.commands();
        for cmd in &commands {
            assert!(
                !cmd.argv.iter().any(|a| a.contains(token)),
                "token on argv: {}",
                cmd.display()
            );
        }
        let register = commands
            .iter()
            .find(|c| c.argv.get(1).map(String::as_str) == Some("register"))
            .expect("registered");
        assert_eq!(
            register.env,
            vec![(variable.to_string(), token.to_string())]
        );
        assert!(!out.captured().contains(token), "{}", out.captured());
    }
}

#[test]
fn malformed_config_toml_is_refused_before_any_change() {
    let fake = FakeHost::debian12();
    fake.write(
        "/etc/gitlab-runner/config.toml",
        "concurrent = 1\n[[runners]\n  token = \"glrt-secret.InBrokenFile\"\n",
    );
    let before = fake.snapshot();
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1);
    assert_eq!(counts.skipped, reported() - 1);
    assert!(
        fake.commands().is_empty(),
        "nothing may run: {:?}",
        fake.commands()
    );
    assert_eq!(fake.snapshot(), before);
    let text = out.captured();
    assert!(
        text.contains("/etc/gitlab-runner/config.toml is malformed"),
        "{text}"
    );
    assert!(!text.contains("glrt-secret.InBrokenFile"), "{text}");
}

/// The engine teaches the redactor what config.toml holds (a runner
/// registered by hand, cache credentials) before any step runs, and the
/// token registration wrote once it has, even when registration is the
/// last step: whatever prints them afterwards prints `[redacted]`.
#[test]
fn secrets_in_config_toml_are_redacted_from_the_start_and_after_registration() {
    let fake = FakeHost::debian12();
    fake.write(
        "/etc/gitlab-runner/config.toml",
        "concurrent = 1\n[[runners]]\n  name = \"by-hand\"\n  url = \"https://gitlab.example/\"\n  token = \"glrt-byHand.Token0042\"\n  executor = \"shell\"\n  [runners.cache]\n    [runners.cache.s3]\n      SecretKey = \"s3-secret-by-hand\"\n",
    );
    let settings = fake.settings(Some(LEGACY));
    let selection = Selection::of(&[StepId::RunnerInstall, StepId::RunnerRegister]);
    let reporter = fake.reporter(Format::Json);
    let host = fake.host(reporter.clone());
    let counts = run(&host, &settings, &selection, Mode::Apply, &reporter);
    assert_eq!(
        (counts.failed, counts.changed),
        (0, 2),
        "{}",
        reporter.captured()
    );
    let config = fake.read("/etc/gitlab-runner/config.toml");
    assert!(config.contains("token = \"t-derived\""), "{config}");
    host.warn(
        "test",
        "glrt-byHand.Token0042, s3-secret-by-hand, t-derived",
    );
    let text = reporter.captured();
    assert!(
        text.contains("[redacted], [redacted], [redacted]"),
        "{text}"
    );
}

/// In a plan, a step whose dependency still has work is judged by that
/// dependency (its own state now says nothing about what apply will find):
/// on a fresh host, the group membership waits for the runner's package,
/// the daemon's answers for Docker.
#[test]
fn a_plan_reports_steps_after_a_pending_dependency_as_waiting_on_it() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    let reasons: Vec<(String, String)> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event"] == "step_checked" && e["status"] == "pending")
        .filter_map(|e| Some((e["id"].as_str()?.into(), e["reason"].as_str()?.into())))
        .collect();
    for (id, after) in [
        ("runner-register", "runner-install"),
        ("docker-group", "runner-install"),
        ("docker-verify", "docker-install"),
        // Waiting makes a step pending in turn.
        ("docker-build", "docker-verify"),
        ("runner-alive", "runner-register"),
        ("shutdown-unregister", "runner-install"),
    ] {
        assert!(
            reasons.contains(&(id.into(), format!("after {after}"))),
            "{id}: {text}"
        );
    }
}

#[test]
fn malformed_daemon_json_is_refused_before_any_change() {
    let fake = FakeHost::debian12();
    fake.write("/etc/docker/daemon.json", "{\"log-driver\": ");
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(&fake.settings(None), &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(fake.commands().is_empty());
    assert_eq!(fake.snapshot(), before);
    assert!(
        out.captured()
            .contains("/etc/docker/daemon.json is malformed"),
        "{}",
        out.captured()
    );
}

#[test]
fn tags_with_an_authentication_token_are_refused_before_any_change() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(AUTH));
    settings.profile.runner.tags = vec!["docker".to_string()];
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1);
    assert!(fake.commands().is_empty());
    assert_eq!(fake.snapshot(), before);
    assert!(
        out.captured().contains("tags cannot be set"),
        "{}",
        out.captured()
    );

    // Without tags it registers, and plan and apply name the flow by the token.
    settings.profile.runner.tags.clear();
    for (mode, said) in [
        (
            Mode::Plan,
            "(executor shell, with a runner authentication token)",
        ),
        (Mode::Apply, "with a runner authentication token"),
    ] {
        let (counts, out) =
            fake.run_steps(&settings, &Selection::of(&[StepId::RunnerRegister]), mode);
        let text = out.captured();
        assert_eq!(counts.failed, 0, "{text}");
        assert!(text.contains(said), "{text}");
        assert!(!text.contains("registration token"), "{text}");
    }
}

#[test]
fn a_host_without_a_name_is_refused_before_any_change_unless_a_name_is_given() {
    let fake = FakeHost::debian12();
    fake.write("/etc/hostname", "\n");
    let before = fake.snapshot();
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
    assert_eq!(fake.snapshot(), before);
    assert!(
        out.captured()
            .contains("set [runner] name in the profile or --name"),
        "{}",
        out.captured()
    );

    let mut named = settings.clone();
    named.profile.runner.name = "build-1".to_string();
    let (counts, out) = fake.run_steps(&named, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
}

#[test]
fn another_storage_driver_is_refused_before_any_change_unless_accepted() {
    let btrfs = "{\n  \"storage-driver\": \"btrfs\",\n  \"storage-opts\": [\"btrfs.min_space=10G\"],\n  \"debug\": true\n}\n";
    let vfs_runner = "[[runners]]\n  name = \"runner-1\"\n  url = \"https://gitlab.com/\"\n  token = \"t\"\n  executor = \"shell\"\n  # dind in this pipeline needs vfs\n  environment = [\"DOCKER_DRIVER=vfs\"]\n";
    for (path, text, named) in [
        (
            "/etc/docker/daemon.json",
            btrfs,
            "/etc/docker/daemon.json sets the storage driver `btrfs`",
        ),
        (
            "/etc/gitlab-runner/config.toml",
            vfs_runner,
            "runner runner-1's environment in /etc/gitlab-runner/config.toml sets the storage driver `vfs`",
        ),
    ] {
        let fake = FakeHost::debian12();
        fake.write(path, text);
        let before = fake.snapshot();
        let settings = fake.settings(Some(LEGACY));
        let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
        let text_out = out.captured();
        assert_eq!(counts.failed, 1, "{text_out}");
        assert!(fake.commands().is_empty(), "{:?}", fake.commands());
        assert_eq!(fake.snapshot(), before, "nothing changed");
        assert!(text_out.contains(named), "{text_out}");
        assert!(text_out.contains("--replace-storage-driver"), "{text_out}");
        assert!(
            text_out.contains("replace_storage_driver = true"),
            "{text_out}"
        );

        // plan shows the switch and warns that apply will refuse.
        let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
        assert_eq!(counts.failed, 0, "{}", out.captured());
        assert!(
            out.captured().contains("apply will refuse"),
            "{}",
            out.captured()
        );
        assert_eq!(fake.snapshot(), before);
    }

    // Accepted: the driver and its options go, and the output says what is hidden.
    let fake = FakeHost::debian12();
    fake.write("/etc/docker/daemon.json", btrfs);
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.replace_storage_driver = true;
    // The plan names both before apply does it.
    let (_, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerDriver]),
        Mode::Plan,
    );
    let text_out = out.captured();
    assert!(text_out.contains("replaces btrfs: images"), "{text_out}");
    assert!(
        text_out.contains("removes storage-opts btrfs.min_space=10G"),
        "{text_out}"
    );
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    let text_out = out.captured();
    assert_eq!(counts.failed, 0, "{text_out}");
    assert_eq!(
        fake.read("/etc/docker/daemon.json"),
        "{\n  \"storage-driver\": \"overlay2\",\n  \"debug\": true,\n  \"log-driver\": \"json-file\",\n  \"log-opts\": {\n    \"max-size\": \"10m\",\n    \"max-file\": \"3\"\n  }\n}\n"
    );
    assert!(
        text_out.contains("switched the storage driver from btrfs to overlay2"),
        "{text_out}"
    );
    assert!(text_out.contains("/var/lib/docker/btrfs"), "{text_out}");
    assert!(text_out.contains("btrfs.min_space=10G"), "{text_out}");
    let (second, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(
        (second.changed, second.failed),
        (0, 0),
        "{}",
        out.captured()
    );
}

#[test]
fn docker_group_needs_the_risk_accepted_but_plan_only_warns() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.accept_group_risk = false;
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(fake.commands().is_empty());
    assert!(
        out.captured().contains("--accept-docker-group-risk"),
        "{}",
        out.captured()
    );

    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    assert_eq!(plan.failed, 0, "{}", out.captured());
    assert!(
        out.captured().contains("\"event\":\"warning\""),
        "{}",
        out.captured()
    );
}

#[test]
fn adding_to_group_docker_warns_that_it_is_root_equivalent() {
    let fake = FakeHost::debian12();
    let (_, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::default(),
        Mode::Apply,
    );
    assert!(
        out.captured().contains("root-equivalent"),
        "{}",
        out.captured()
    );
}

#[test]
fn registration_is_tried_again_while_gitlab_answers_502_and_not_for_a_bad_token() {
    let register_runs = |fake: &FakeHost| {
        fake.commands()
            .iter()
            .filter(|c| c.display().starts_with("gitlab-runner register"))
            .count()
    };
    // A 502 once: waits 5 s (the fake clock), then registers.
    let fake = FakeHost::debian12();
    fake.failing.lock().expect("lock").push((
        "gitlab-runner".to_string(),
        "once:ERROR: Registering runner... failed status=502 Bad Gateway".to_string(),
    ));
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 0, "{}", out.captured());
    assert_eq!(register_runs(&fake), 2);
    assert_eq!(fake.machine().slept, std::time::Duration::from_secs(5));
    assert!(
        out.captured().contains("attempt 1 of 5"),
        "{}",
        out.captured()
    );

    // Down all along: five attempts, 75 s of waiting, then a failure.
    let fake = FakeHost::debian12();
    fake.failing.lock().expect("lock").push((
        "gitlab-runner".to_string(),
        "dial tcp gitlab.example.com:443: connect: connection refused".to_string(),
    ));
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert_eq!(register_runs(&fake), 5);
    assert_eq!(fake.machine().slept, std::time::Duration::from_secs(75));

    // A refused token is final.
    let fake = FakeHost::debian12();
    fake.failing.lock().expect("lock").push((
        "gitlab-runner".to_string(),
        "ERROR: Registering runner... forbidden (check registration token)".to_string(),
    ));
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert_eq!(register_runs(&fake), 1);
    assert_eq!(fake.machine().slept, std::time::Duration::ZERO);
}

#[test]
fn a_failed_step_skips_its_dependents_and_not_the_others() {
    let fake = FakeHost::debian12();
    fake.failing.lock().expect("lock").push((
        "apt-get".to_string(),
        "E: Unable to locate package".to_string(),
    ));
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.global.concurrent = Some(4);
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    let text = out.captured();
    assert_eq!(
        counts.failed, 2,
        "runner-install and docker-install: {text}"
    );
    for dependent in ["runner-register", "runner-globals"] {
        assert!(
            text.contains(&format!("\"id\":\"{dependent}\",\"status\":\"skipped\"")),
            "{text}"
        );
    }
    assert!(
        !fake.root().join("etc/gitlab-runner/config.toml").exists(),
        "no config.toml written for a runner that is not installed"
    );
    assert!(text.contains("runner-install failed"), "{text}");
    assert!(
        text.contains("\"id\":\"overlay-module\",\"status\":\"changed\""),
        "{text}"
    );
    assert!(
        text.contains("\"id\":\"docker-driver\",\"status\":\"changed\""),
        "{text}"
    );
    assert!(
        text.contains("E: Unable to locate package"),
        "the error carries stderr: {text}"
    );
}

#[test]
fn without_a_token_registration_is_skipped_with_a_hint_and_verify_fails() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(None);
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    assert!(
        out.captured().contains("RUNNER_TOKEN"),
        "{}",
        out.captured()
    );
    let (verify, out) = fake.run_steps(&settings, &Selection::default(), Mode::Verify);
    assert_eq!(verify.failed, 1, "{}", out.captured());
    assert!(
        out.captured().contains("not registered"),
        "{}",
        out.captured()
    );
}

#[test]
fn when_registration_is_required_ending_unregistered_is_a_failure() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(None);
    settings.profile.runner.require_registration = true;
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(
        out.captured().contains("registration is required"),
        "{}",
        out.captured()
    );
    // With the token the same profile registers, and later runs (no token,
    // a matching runner) are ok.
    let mut with_token = fake.settings(Some(LEGACY));
    with_token.profile = settings.profile.clone();
    let (counts, out) = fake.run_steps(&with_token, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(
        (counts.failed, counts.changed),
        (0, 0),
        "{}",
        out.captured()
    );
}

#[test]
fn stopped_docker_is_started_not_reinstalled() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    std::fs::remove_file(fake.root().join("run/docker.pid")).expect("stop docker");
    let n = fake.commands().len();
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Apply,
    );
    assert_eq!(counts.changed, 1, "{}", out.captured());
    let run: Vec<String> = fake.ran_since(n);
    assert_eq!(run, vec!["systemctl start docker"]);
}

#[test]
fn a_runner_service_running_as_the_account_is_restarted_after_the_group_change() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.install(&["gitlab-runner", "docker.io"]);
    // The service runs as gitlab-runner (uid 999) with only its own group.
    fake.write(
        "/proc/777/status",
        "Name:\tgitlab-runner\nUid:\t999\t999\t999\t999\nGroups:\t999\n",
    );
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerGroup]),
        Mode::Apply,
    );
    assert_eq!(
        (counts.changed, counts.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    let run: Vec<String> = fake.ran_since(0);
    assert_eq!(
        run,
        vec![
            "usermod --append --groups docker gitlab-runner",
            "systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner",
            "systemctl restart gitlab-runner"
        ],
        "a graceful stop (SIGQUIT) before the start"
    );
    let (again, _) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerGroup]),
        Mode::Plan,
    );
    assert_eq!(again.pending, 0);
}

#[test]
fn offline_root_persists_files_and_skips_live_actions() {
    let fake = FakeHost::debian12();
    let reporter = fake.reporter(Format::Json);
    let host = fake.offline_host(reporter.clone());
    let counts = run(
        &host,
        &fake.settings(Some(LEGACY)),
        &Selection::default(),
        Mode::Apply,
        &reporter,
    );
    let text = reporter.captured();
    assert_eq!(counts.failed, 0, "{text}");
    assert!(
        text.contains("\"id\":\"docker-verify\",\"status\":\"skipped\""),
        "{text}"
    );
    assert!(text.contains("offline root"), "{text}");
    let commands: Vec<String> = fake.ran_since(0);
    assert!(
        commands
            .iter()
            .all(|c| c.starts_with(&format!("chroot {}", fake.root().display()))),
        "{commands:?}"
    );
    assert!(
        !commands
            .iter()
            .any(|c| c.contains("modprobe") || c.contains("start") || c.contains("runuser")),
        "{commands:?}"
    );
    assert!(fake.read("/etc/modules").contains("overlay"));
}

#[test]
fn an_image_gets_docker_installed_and_enabled_never_started() {
    let fake = FakeHost::debian12();
    fake.install(&["docker.io"]);
    let _ = std::fs::remove_file(
        fake.root()
            .join("etc/systemd/system/multi-user.target.wants/docker.service"),
    );
    let reporter = fake.reporter(Format::Json);
    let host = fake.offline_host(reporter.clone());
    let settings = fake.settings(None);
    let counts = run(
        &host,
        &settings,
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Apply,
        &reporter,
    );
    let text = reporter.captured();
    assert_eq!((counts.changed, counts.failed), (1, 0), "{text}");
    let commands: Vec<String> = fake.ran_since(0);
    assert!(
        commands
            .iter()
            .any(|c| c.ends_with("systemctl enable docker")),
        "{commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.contains("start")),
        "{commands:?}"
    );
}

#[test]
fn a_kept_engine_says_a_docker_pin_is_not_applied_only_when_there_is_one() {
    let fake = FakeHost::debian12();
    fake.install(&["docker-ce"]);
    let mut settings = fake.settings(None);
    let (_, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert!(
        text.contains("docker-ce is installed: it is kept"),
        "{text}"
    );
    assert!(!text.contains("is not applied"), "{text}");
    settings.profile.docker.version = "20.10.24+dfsg1-1+deb12u1".into();
    let (_, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert!(
        text.contains("docker.version 20.10.24+dfsg1-1+deb12u1 is not applied"),
        "{text}"
    );
}

#[test]
fn the_service_manager_docker_install_uses_is_required() {
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/systemctl")).expect("rm systemctl");
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("`systemctl` was not found on PATH: install the package `systemd`"),
        "{text}"
    );
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
}

#[test]
fn docker_verify_diagnoses_permission_and_driver() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);

    fake.write(
        "/etc/group",
        &fake
            .read("/etc/group")
            .replace("docker:x:998:gitlab-runner", "docker:x:998:"),
    );
    // Docker 20.10's `docker info --format` says only "nil pointer": the
    // diagnosis comes from the socket and the client's full message.
    let server = serve_info(&fake, "overlay2");
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Verify,
    );
    server.join().expect("server");
    std::fs::remove_file(fake.root().join("var/run/docker.sock")).expect("rm socket");
    assert_eq!(counts.failed, 1);
    assert!(
        !out.captured().contains("nil pointer"),
        "{}",
        out.captured()
    );
    assert!(
        out.captured().contains("permission denied"),
        "{}",
        out.captured()
    );
    assert!(
        out.captured().contains("docker-group step"),
        "{}",
        out.captured()
    );

    fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerGroup]),
        Mode::Apply,
    );
    fake.write("/etc/docker/daemon.json", "{}\n");
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Verify,
    );
    assert_eq!(counts.failed, 1);
    assert!(
        out.captured().contains("storage driver vfs"),
        "{}",
        out.captured()
    );

    std::fs::remove_file(fake.root().join("run/docker.pid")).expect("stop docker");
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 1);
    assert!(
        out.captured().contains("not running or not answering"),
        "{}",
        out.captured()
    );
}

#[test]
fn plan_shows_diffs_and_changes_nothing() {
    let fake = FakeHost::debian12();
    fake.write(
        "/etc/gitlab-runner/config.toml",
        "concurrent = 1\n\n[[runners]]\n  name = \"runner-1\"\n  url = \"https://gitlab.com\"\n  token = \"t\"\n  executor = \"shell\"\n",
    );
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(&fake.settings(None), &Selection::default(), Mode::Plan);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    assert!(counts.pending > 0);
    assert_eq!(fake.snapshot(), before);
    assert!(
        fake.commands().is_empty(),
        "plan spawned {:?}",
        fake.commands()
    );
    let text = out.captured();
    assert!(
        text.contains("+  environment = [\\\"DOCKER_DRIVER=overlay2\\\"]"),
        "{text}"
    );
    assert!(text.contains("+overlay"), "{text}");
}

/// A Docker daemon stand-in on the fake root's socket that answers `/info`.
fn serve_info(fake: &FakeHost, driver: &'static str) -> std::thread::JoinHandle<()> {
    use std::io::{Read, Write};
    use std::os::unix::fs::PermissionsExt;
    let path = fake.root().join("var/run/docker.sock");
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let listener = std::os::unix::net::UnixListener::bind(&path).expect("bind");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).expect("chmod");
    // A plan that never asks (a step left out by mistake) must fail the
    // test, not hang it: the stand-in stops waiting after a while.
    listener.set_nonblocking(true).expect("nonblocking");
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(20);
    std::thread::spawn(move || {
        let accepted = loop {
            match listener.accept() {
                Ok((conn, _)) => break Some(conn),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if std::time::Instant::now() > give_up {
                        break None;
                    }
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
                Err(_) => break None,
            }
        };
        if let Some(mut conn) = accepted {
            conn.set_nonblocking(false).expect("blocking");
            let mut request = [0u8; 512];
            let _ = conn.read(&mut request);
            let body = format!("{{\"Driver\":\"{driver}\",\"ServerVersion\":\"20.10\"}}");
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n{body}"
            );
        }
    })
}

#[test]
fn plan_asks_the_daemon_over_its_socket_without_spawning() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    let n = fake.commands().len();

    let server = serve_info(&fake, "overlay2");
    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Plan,
    );
    server.join().expect("server");
    assert_eq!(
        (plan.ok, plan.pending, plan.failed),
        (2, 0, 0),
        "{}",
        out.captured()
    );
    assert_eq!(fake.commands().len(), n, "plan spawned a process");

    std::fs::remove_file(fake.root().join("var/run/docker.sock")).expect("rm socket");
    let server = serve_info(&fake, "vfs");
    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Plan,
    );
    server.join().expect("server");
    assert_eq!(plan.failed, 1, "{}", out.captured());
    assert!(
        out.captured().contains("storage driver vfs"),
        "{}",
        out.captured()
    );

    std::fs::remove_file(fake.root().join("var/run/docker.sock")).expect("rm socket");
    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Plan,
    );
    assert_eq!(plan.pending, 1, "no daemon: pending, {}", out.captured());
}

#[test]
fn plan_judges_the_runner_accounts_access_by_the_sockets_owner_group_and_mode() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    let socket = fake.root().join("var/run/docker.sock");
    // The socket belongs to whoever runs the test: the accounts are made
    // around its owner and group.
    let server = serve_info(&fake, "overlay2");
    let meta = std::fs::metadata(&socket).expect("socket");
    let (owner, group) = (meta.uid(), meta.gid());
    let (other_uid, other_gid) = (owner + 1, group + 1);
    // (mode, account uid, its primary gid, docker's gid, docker's members, may use)
    let cases = [
        (0o660, other_uid, other_gid, group, "", false),
        (0o660, other_uid, other_gid, group, "gitlab-runner", true),
        (0o660, other_uid, group, other_gid, "", true),
        (
            0o660,
            other_uid,
            other_gid,
            other_gid,
            "gitlab-runner",
            false,
        ),
        (0o600, owner, other_gid, other_gid, "", true),
        (0o600, other_uid, other_gid, group, "gitlab-runner", false),
        (0o606, other_uid, other_gid, other_gid, "", true),
    ];
    let mut server = Some(server);
    for (mode, uid, gid, docker_gid, members, allowed) in cases {
        if server.is_none() {
            std::fs::remove_file(&socket).expect("rm socket");
            server = Some(serve_info(&fake, "overlay2"));
        }
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(mode)).expect("chmod");
        fake.write(
            "/etc/passwd",
            &format!(
                "root:x:0:0:root:/root:/bin/bash\ngitlab-runner:x:{uid}:{gid}:GitLab Runner:/home/gitlab-runner:/bin/bash\n"
            ),
        );
        fake.write(
            "/etc/group",
            &format!("root:x:0:\ndocker:x:{docker_gid}:{members}\n"),
        );
        let (plan, out) = fake.run_steps(
            &settings,
            &Selection::of(&[StepId::DockerVerify]),
            Mode::Plan,
        );
        server.take().expect("server").join().expect("server");
        let text = out.captured();
        let case = format!("mode {mode:o}, uid {uid}, gid {gid}, docker {docker_gid}:{members}");
        assert_eq!(plan.failed == 0, allowed, "{case}: {text}");
        assert_eq!(
            text.contains("cannot open /var/run/docker.sock (permission denied)"),
            !allowed,
            "{case}: {text}"
        );
    }
}

#[test]
fn a_template_error_with_a_usable_socket_asks_the_client_again_for_the_cause() {
    // Docker 20.10's client prints only a template error; the socket answers
    // and anyone may open it, so the full `docker info` names the cause:
    // here the daemon behind it is not running (yet), not a permission.
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    std::fs::remove_file(fake.root().join("run/docker.pid")).expect("stop docker");
    let server = serve_info(&fake, "overlay2");
    let n = fake.commands().len();
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Verify,
    );
    server.join().expect("server");
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("for the Docker daemon, which does not answer now"),
        "{text}"
    );
    assert!(!text.contains("permission denied"), "{text}");
    let asked: Vec<String> = fake.ran_since(n);
    assert_eq!(
        asked,
        [
            "runuser -l gitlab-runner -c 'docker info --format '\\''{{.Driver}}'\\'''",
            "runuser -l gitlab-runner -c 'docker info'"
        ]
    );
}

#[test]
fn an_unreachable_repository_is_refused_before_any_change() {
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("srv/repo/Release")).expect("rm");
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::default(),
        Mode::Apply,
    );
    assert_eq!(
        (counts.failed, counts.skipped),
        (1, reported() - 1),
        "{}",
        out.captured()
    );
    assert!(
        out.captured().contains("has no Release file"),
        "{}",
        out.captured()
    );
    assert!(fake.commands().is_empty());
    assert_eq!(fake.snapshot(), before);
    let (plan, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::default(),
        Mode::Plan,
    );
    assert_eq!(plan.failed, 0, "plan warns only: {}", out.captured());
    assert!(
        out.captured().contains("apply will fail"),
        "{}",
        out.captured()
    );
}

#[test]
fn a_converged_host_does_not_need_the_runner_repository() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (first, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(first.failed, 0, "{}", out.captured());
    // Nothing to install: the repository is not asked, so its outage is no failure.
    std::fs::remove_file(fake.root().join("srv/repo/Release")).expect("rm");
    for mode in [Mode::Plan, Mode::Apply] {
        let (counts, out) = fake.run_steps(&settings, &Selection::default(), mode);
        let text = out.captured();
        assert_eq!((counts.changed, counts.failed), (0, 0), "{text}");
        assert!(
            text.contains(r#""id":"runner-install","status":"ok""#),
            "{text}"
        );
        assert!(!text.contains("Release"), "{text}");
    }
}

#[test]
fn gitlab_runner_not_on_path_is_installed_unless_the_profile_says_present() {
    use crate::profile::Install;
    let installed = |fake: &FakeHost| {
        std::fs::read_to_string(fake.root().join("var/lib/dpkg/status"))
            .is_ok_and(|s| s.contains("Package: gitlab-runner\n"))
    };
    // A fresh host has no gitlab-runner anywhere: installed from the repository.
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/gitlab-runner")).expect("rm");
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!((counts.changed, counts.failed), (1, 0), "{text}");
    assert!(installed(&fake), "{text}");

    // install = "present": it must be there already, as a package or on PATH.
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.runner.install = Install::Present;
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    assert_eq!(
        (counts.failed, counts.changed),
        (0, 1),
        "{}",
        out.captured()
    );
    assert!(!installed(&fake), "on PATH: not installed");
    std::fs::remove_file(fake.root().join("usr/bin/gitlab-runner")).expect("rm");
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains(
            "gitlab-runner is not installed and the profile says install = \\\"present\\\""
        ),
        "{text}"
    );
    assert!(!installed(&fake));
}

#[test]
fn the_repository_probe_tries_again_while_the_server_answers_503() {
    let release = "https://repo.example.com/runner/dists/bookworm/Release";
    let settings = |fake: &FakeHost| {
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.runner.repository = Some(crate::profile::Repository {
            uri: "https://repo.example.com/runner/".into(),
            suite: "bookworm".into(),
            components: "main".into(),
            key_url: String::new(),
        });
        settings
    };
    for (outages, slept, fails) in [(0, 0, false), (2, 6, false), (3, 6, true)] {
        let fake = FakeHost::debian12();
        fake.machine()
            .urls
            .insert(release.into(), b"Origin: x\n".to_vec());
        fake.machine().unavailable.insert(release.into(), outages);
        let (_, out) = fake.run_steps(
            &settings(&fake),
            &Selection::of(&[StepId::RunnerInstall]),
            Mode::Plan,
        );
        assert_eq!(
            fake.machine().slept,
            std::time::Duration::from_secs(slept),
            "{outages} outages: {}",
            out.captured()
        );
        assert_eq!(
            out.captured().contains("apply will fail"),
            fails,
            "{}",
            out.captured()
        );
    }
    // Not there at all (404): an answer, no waiting.
    let fake = FakeHost::debian12();
    let (_, out) = fake.run_steps(
        &settings(&fake),
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Plan,
    );
    assert_eq!(fake.machine().slept, std::time::Duration::ZERO);
    assert!(
        out.captured().contains("apply will fail"),
        "{}",
        out.captured()
    );
}

#[test]
fn an_interrupted_dpkg_is_finished_before_installing() {
    let fake = FakeHost::debian12();
    fake.write(
        "/var/lib/dpkg/status",
        "Package: docker.io\nStatus: install ok unpacked\n\n",
    );
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::default(),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 0, "{}", out.captured());
    let run: Vec<String> = fake.ran_since(0);
    let configure = run
        .iter()
        .position(|c| c == "dpkg --configure -a")
        .expect("dpkg --configure -a ran");
    let install = run
        .iter()
        .position(|c| c.contains(" install "))
        .expect("install ran");
    assert!(configure < install, "{run:?}");
    assert!(
        out.captured().contains("dpkg was interrupted"),
        "{}",
        out.captured()
    );
}

#[test]
fn the_registry_names_each_step_once_and_as_the_command_line_does() {
    use clap::ValueEnum;
    let ids: Vec<StepId> = registry().iter().map(|(id, _)| *id).collect();
    for (i, id) in ids.iter().enumerate() {
        assert!(!ids[i + 1..].contains(id), "{id} registered twice");
        let value = id.to_possible_value().expect("selectable");
        assert_eq!(value.get_name(), id.as_str());
        assert_eq!(StepId::from_str(id.as_str(), false), Ok(*id));
    }
    // The selectable ids are exactly the registered steps; preflight is neither.
    assert_eq!(StepId::value_variants(), ids.as_slice());
    assert!(StepId::Preflight.to_possible_value().is_none());
    assert!(!ids.contains(&StepId::Preflight));
    for (id, step) in registry() {
        for need in step.needs() {
            let position = |x: &StepId| ids.iter().position(|i| i == x);
            assert!(
                position(need) < position(id),
                "{id} needs {need}, which must run before it"
            );
        }
    }
}

#[test]
fn selection_runs_only_and_leaves_out_skip() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::without(&[StepId::DockerGroup]),
        Mode::Plan,
    );
    let text = out.captured();
    assert_eq!(
        counts.ok + counts.pending + counts.skipped + counts.failed,
        reported() - 1,
        "{text}"
    );
    assert!(!text.contains("\"id\":\"docker-group\""), "{text}");
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Plan,
    );
    let text = out.captured();
    assert_eq!(
        counts.ok + counts.pending,
        2,
        "preflight and the step: {text}"
    );
    assert!(text.contains("\"id\":\"overlay-module\""), "{text}");
}

#[test]
fn docker_build_builds_as_a_job_reports_driver_and_diagnoses_a_full_disk() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);

    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerBuild]),
        Mode::Verify,
    );
    let text = out.captured();
    assert_eq!((counts.ok, counts.failed), (2, 0), "{text}");
    let event = text
        .lines()
        .find(|l| l.contains("\"step_checked\"") && l.contains("docker-build"))
        .expect("docker-build event");
    let event: serde_json::Value = serde_json::from_str(event).expect("json");
    assert_eq!(event["details"]["driver"], "overlay2", "{event}");
    assert!(event["details"]["build_ms"].is_u64(), "{event}");
    let build = fake
        .commands()
        .into_iter()
        .rev()
        .find(|c| c.program() == "su")
        .expect("the build ran through su, as the shell executor starts a job");
    let script = build.stdin.unwrap_or_default();
    assert!(
        script.contains("export DOCKER_DRIVER=overlay2\n"),
        "the runner's environment reaches the job: {script}"
    );

    fake.write("/var/lib/docker/FULL", "");
    let n = fake.commands().len();
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerBuild]),
        Mode::Verify,
    );
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(out.captured().contains("disk full"), "{}", out.captured());
    assert!(
        fake.commands()[n..]
            .iter()
            .any(|c| c.display().contains("label=runner-provision.build-check")),
        "a failed build looks for leftovers: {:?}",
        fake.commands()
    );

    let mut off = settings.clone();
    off.profile.docker.build_check = false;
    let n = fake.commands().len();
    let (counts, out) = fake.run_steps(&off, &Selection::of(&[StepId::DockerBuild]), Mode::Verify);
    assert_eq!(
        (counts.skipped, counts.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    assert_eq!(fake.commands().len(), n, "turned off: nothing spawned");
}

#[test]
fn not_root_apply_is_refused_before_any_change_and_plan_warns() {
    let fake = FakeHost::debian12();
    fake.machine().root = false;
    let settings = fake.settings(Some(LEGACY));
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    let text = out.captured();
    assert_eq!(
        (counts.failed, counts.skipped),
        (1, reported() - 1),
        "{text}"
    );
    assert!(text.contains("must run as root"), "{text}");
    assert!(fake.commands().is_empty());
    assert_eq!(fake.snapshot(), before);

    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    assert!(text.contains("not running as root"), "{text}");
}

#[test]
fn a_kernel_older_than_4_2_is_refused_before_any_change() {
    for (release, refused) in [
        ("4.1.52-generic", true),
        ("4.2.0", false),
        ("3.10.0-1160.el7", true),
    ] {
        let fake = FakeHost::debian12();
        fake.write("/proc/sys/kernel/osrelease", &format!("{release}\n"));
        let before = fake.snapshot();
        let (plan, out) = fake.run_steps(
            &fake.settings(Some(LEGACY)),
            &Selection::default(),
            Mode::Plan,
        );
        let text = out.captured();
        assert_eq!(plan.failed == 1, refused, "{release}: {text}");
        assert_eq!(
            text.contains(&format!("kernel {release} is too old")),
            refused,
            "{release}: {text}"
        );
        assert_eq!(fake.snapshot(), before);
    }
}

#[test]
fn a_missing_tool_is_refused_before_any_change_naming_its_package() {
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/usermod")).expect("rm usermod");
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::default(),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(
        (counts.failed, counts.skipped),
        (1, reported() - 1),
        "{text}"
    );
    assert!(
        text.contains("`usermod` was not found on PATH: install the package `passwd`"),
        "{text}"
    );
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
    assert_eq!(fake.snapshot(), before);
}

#[test]
fn runuser_is_required_to_ask_docker_as_the_runner_account() {
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/runuser")).expect("rm runuser");
    let (counts, out) = fake.run_steps(
        &fake.settings(Some(LEGACY)),
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("`runuser` was not found on PATH: install the package `util-linux`"),
        "{text}"
    );
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
}

#[test]
fn su_is_required_only_where_a_jobs_build_will_run() {
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/su")).expect("rm su");
    let mut settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerBuild]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("`su` was not found on PATH: install the package `util-linux`"),
        "{text}"
    );
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());

    // --skip-build: no build, no su needed.
    settings.profile.docker.build_check = false;
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerBuild]),
        Mode::Apply,
    );
    assert_eq!(
        (counts.failed, counts.skipped),
        (0, 1),
        "{}",
        out.captured()
    );
}

#[test]
fn a_daemon_json_that_cannot_be_written_is_refused_before_any_change() {
    // docker-daemon writes daemon.json too; docker-driver alone must refuse it as well.
    for (selection, steps) in [
        (Selection::default(), reported()),
        (Selection::of(&[StepId::DockerDriver]), 2),
        (Selection::of(&[StepId::DockerDaemon]), 2),
    ] {
        let fake = FakeHost::debian12();
        std::fs::create_dir_all(fake.root().join("etc/docker")).expect("mkdir");
        let before = fake.snapshot();
        // A link to a folder that does not exist inside the root: the write
        // could not land, so preflight says so while nothing has changed.
        let link = fake.root().join("etc/docker/daemon.json");
        std::os::unix::fs::symlink("/srv/gone/daemon.json", &link).expect("symlink");
        let (counts, out) = fake.run_steps(&fake.settings(Some(LEGACY)), &selection, Mode::Apply);
        let text = out.captured();
        assert_eq!((counts.failed, counts.skipped), (1, steps - 1), "{text}");
        assert!(
            text.contains("/etc/docker/daemon.json is a symbolic link to /srv/gone/daemon.json"),
            "{text}"
        );
        assert!(fake.commands().is_empty(), "{:?}", fake.commands());
        // (the snapshot cannot follow the dangling link)
        std::fs::remove_file(&link).expect("rm link");
        assert_eq!(fake.snapshot(), before);
    }
}

#[test]
fn docker_verify_waits_with_backoff_up_to_its_timeout_on_the_host_clock() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    std::fs::remove_file(fake.root().join("run/docker.pid")).expect("stop docker");
    settings.profile.docker.verify_timeout = 30;
    let slept = fake.machine().slept;
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerVerify]),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(out.captured().contains("within 30 s"), "{}", out.captured());
    // 0.1 s doubling to 2 s, cut at the deadline: exactly the timeout.
    assert_eq!(fake.machine().slept - slept, Duration::from_secs(30));
}

#[test]
fn a_graceful_restart_says_how_many_jobs_it_waits_for_on_the_host_clock() {
    let fake = FakeHost::debian12();
    fake.write(
        "/proc/777/status",
        "Name:\tgitlab-runner\nState:\tS (sleeping)\nPPid:\t1\nUid:\t0\t0\t0\t0\n",
    );
    // A shell-executor job: the runner's child; a job's own gitlab-runner
    // helper is not a second runner.
    fake.write(
        "/proc/778/status",
        "Name:\tbash\nState:\tS (sleeping)\nPPid:\t777\n",
    );
    fake.write(
        "/proc/779/status",
        "Name:\tgitlab-runner\nState:\tS (sleeping)\nPPid:\t778\nUid:\t0\t0\t0\t0\n",
    );
    fake.write("/proc/777/busy", "");
    let reporter = fake.reporter(Format::Json);
    let host = fake.host(reporter.clone());
    assert_eq!(host.runner_main_pids().expect("pids"), vec![777]);
    let err = host
        .restart_runner_gracefully("network", Duration::from_secs(60), "for the test")
        .expect_err("still busy at the timeout")
        .to_string();
    assert!(
        err.contains("still finishing 1 running job after 60 s")
            && err.contains("shutdown_timeout"),
        "{err}"
    );
    let out = reporter.captured();
    assert!(
        out.contains("gitlab-runner is running 1 job: stopping it gracefully")
            && out.contains("waiting up to 60 s"),
        "{out}"
    );
    assert!(fake.machine().slept >= Duration::from_secs(60));
    let run: Vec<String> = fake.ran_since(0);
    assert_eq!(
        run,
        vec!["systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner"],
        "no restart while a job runs"
    );

    std::fs::remove_file(fake.root().join("proc/777/busy")).expect("the job ended");
    let done = host
        .restart_runner_gracefully("network", Duration::from_secs(60), "for the test")
        .expect("restart")
        .expect("it ran");
    assert!(
        done.contains(
            "restarted gitlab-runner gracefully for the test, after its 1 running job finished"
        ),
        "{done}"
    );
    let run: Vec<String> = fake.ran_since(0);
    assert_eq!(
        run[1..],
        [
            "systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner",
            "systemctl restart gitlab-runner"
        ]
    );

    // Nothing runs: nothing to restart.
    std::fs::remove_dir_all(fake.root().join("proc")).expect("all stopped");
    assert!(
        host.restart_runner_gracefully("network", Duration::from_secs(60), "")
            .expect("nothing to do")
            .is_none()
    );
}

#[test]
fn runner_alive_reports_a_runner_deleted_on_the_server() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);

    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerAlive]),
        Mode::Verify,
    );
    let text = out.captured();
    assert_eq!((counts.ok, counts.failed), (2, 0), "{text}");
    assert!(
        text.contains("\"runners\":{\"runner-1\":\"alive\"}"),
        "{text}"
    );
    assert!(
        fake.commands()
            .iter()
            .any(|c| c.argv == ["gitlab-runner", "verify"]),
        "no token, no flag: gitlab-runner reads config.toml itself"
    );

    fake.write(
        "/var/lib/gitlab-runner-stand-in/server/deleted-runners",
        "runner-1\n",
    );
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerAlive]),
        Mode::Verify,
    );
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("runner runner-1 deleted on the server")
            && text.contains("re-register with a new token"),
        "{text}"
    );
    assert!(text.contains("\"runner-1\":\"deleted\""), "{text}");
    assert!(
        !text.contains("t-derive"),
        "no shortened token in output: {text}"
    );
}

#[test]
fn steps_install_through_the_package_manager_in_one_transaction() {
    use crate::testing::FakePackages;
    for (source, repositories, engine) in [
        (
            DockerSource::Distro,
            vec!["gitlab-runner"],
            vec!["docker.io"],
        ),
        (
            DockerSource::DockerCe,
            vec!["gitlab-runner", "docker"],
            vec!["docker-ce", "docker-ce-cli", "containerd.io"],
        ),
    ] {
        let fake = FakeHost::debian12();
        let packages = FakePackages::default();
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.docker.source = source;
        let selection = Selection::of(&[StepId::RunnerInstall, StepId::DockerInstall]);
        let apply = |mode| {
            let reporter = fake.reporter(Format::Json);
            let host = fake
                .host(reporter.clone())
                .with_packages(Box::new(packages.clone()));
            (run(&host, &settings, &selection, mode, &reporter), reporter)
        };
        let (counts, out) = apply(Mode::Apply);
        assert_eq!(
            (counts.changed, counts.failed),
            (2, 0),
            "{}",
            out.captured()
        );
        {
            let log = packages.log.lock().expect("log");
            assert_eq!(log.repositories, repositories);
            let mut together = vec!["gitlab-runner"];
            together.extend(engine.iter().copied());
            assert_eq!(log.transactions, vec![together]);
            assert_eq!(log.refreshes, 1, "one index update for both");
        }
        // Each step reports its own packages.
        let text = out.captured();
        for (id, package) in [
            ("runner-install", "gitlab-runner"),
            ("docker-install", engine[0]),
        ] {
            let line = text
                .lines()
                .find(|l| l.contains("step_finished") && l.contains(&format!("\"id\":\"{id}\"")))
                .unwrap_or_else(|| panic!("{id}: {text}"));
            assert!(
                line.contains("\"changed\"")
                    && line.contains(package)
                    && line.contains("one apt transaction for runner-install and docker-install"),
                "{line}"
            );
        }
        let spawned: Vec<String> = fake.ran_since(0);
        assert!(
            !spawned
                .iter()
                .any(|c| c.contains("apt") || c.contains("dpkg")),
            "the steps went around the package manager: {spawned:?}"
        );

        let (again, out) = apply(Mode::Apply);
        assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
        assert_eq!(packages.log.lock().expect("log").transactions.len(), 1);
    }
}

/// A step that answers from a script: its checks in order, then its apply.
struct Scripted {
    checks: std::sync::Mutex<Vec<anyhow::Result<super::State>>>,
    apply: std::sync::Mutex<Option<anyhow::Result<Vec<String>>>>,
    plan_check: Option<super::State>,
}

impl Scripted {
    fn new(checks: Vec<anyhow::Result<super::State>>, apply: anyhow::Result<Vec<String>>) -> Self {
        Self {
            checks: std::sync::Mutex::new(checks.into_iter().rev().collect()),
            apply: std::sync::Mutex::new(Some(apply)),
            plan_check: None,
        }
    }
}

impl super::Step for Scripted {
    fn check(
        &self,
        _host: &crate::host::Host,
        _settings: &Settings,
    ) -> anyhow::Result<super::State> {
        self.checks
            .lock()
            .expect("lock")
            .pop()
            .expect("a scripted check")
    }

    fn plan_check(
        &self,
        host: &crate::host::Host,
        settings: &Settings,
    ) -> anyhow::Result<super::State> {
        match &self.plan_check {
            Some(state) => Ok(state.clone()),
            None => self.check(host, settings),
        }
    }

    fn apply(
        &self,
        _host: &crate::host::Host,
        _settings: &Settings,
    ) -> anyhow::Result<Vec<String>> {
        self.apply.lock().expect("lock").take().expect("one apply")
    }
}

#[test]
fn the_engine_judges_each_step_by_its_check_after_apply() {
    use super::{Change, State};
    use crate::report::Status;
    let pending = || {
        Ok(State::Pending(vec![Change::file(
            "write /etc/x",
            "+x".into(),
        )]))
    };
    let did = || Ok(vec!["wrote /etc/x".to_string()]);
    type Case = (
        &'static str,
        Mode,
        Option<StepId>,
        Scripted,
        Status,
        Option<&'static str>,
        &'static [&'static str],
    );
    let cases: Vec<Case> = vec![
        (
            "apply returns but the step is still pending: failed",
            Mode::Apply,
            None,
            Scripted::new(
                vec![pending(), Ok(State::Pending(vec![Change::new("still x")]))],
                did(),
            ),
            Status::Failed,
            Some("still pending after apply: still x"),
            &["wrote /etc/x"],
        ),
        (
            "the check after apply fails: failed",
            Mode::Apply,
            None,
            Scripted::new(vec![pending(), Err(anyhow::anyhow!("unreadable"))], did()),
            Status::Failed,
            Some("checking after apply: unreadable"),
            &[],
        ),
        (
            "apply fails",
            Mode::Apply,
            None,
            Scripted::new(vec![pending()], Err(anyhow::anyhow!("no space left"))),
            Status::Failed,
            Some("no space left"),
            &[],
        ),
        (
            "apply did something and the step is done: changed",
            Mode::Apply,
            None,
            Scripted::new(vec![pending(), Ok(State::Done)], did()),
            Status::Changed,
            None,
            &["wrote /etc/x"],
        ),
        (
            "apply had nothing to do after all: ok",
            Mode::Apply,
            None,
            Scripted::new(vec![pending(), Ok(State::Done)], Ok(Vec::new())),
            Status::Ok,
            None,
            &[],
        ),
        (
            "done: ok, apply not called",
            Mode::Apply,
            None,
            Scripted::new(vec![Ok(State::Done)], Err(anyhow::anyhow!("not called"))),
            Status::Ok,
            None,
            &[],
        ),
        (
            "the check fails",
            Mode::Apply,
            None,
            Scripted::new(vec![Err(anyhow::anyhow!("cannot read"))], did()),
            Status::Failed,
            Some("cannot read"),
            &[],
        ),
        (
            "not applicable: skipped, also in verify",
            Mode::Verify,
            None,
            Scripted::new(vec![Ok(State::NotApplicable("offline root".into()))], did()),
            Status::Skipped,
            Some("offline root"),
            &[],
        ),
        (
            "skipped in apply",
            Mode::Apply,
            None,
            Scripted::new(vec![Ok(State::Skipped("no token".into()))], did()),
            Status::Skipped,
            Some("no token"),
            &[],
        ),
        (
            "skipped is a failure in verify",
            Mode::Verify,
            None,
            Scripted::new(vec![Ok(State::Skipped("no token".into()))], did()),
            Status::Failed,
            Some("no token"),
            &[],
        ),
        (
            "pending is a failure in verify, with what is left",
            Mode::Verify,
            None,
            Scripted::new(vec![pending()], did()),
            Status::Failed,
            Some("not converged"),
            &["write /etc/x"],
        ),
        (
            "pending in a plan",
            Mode::Plan,
            None,
            Scripted::new(vec![pending()], did()),
            Status::Pending,
            None,
            &["write /etc/x"],
        ),
        (
            "a plan judges a step after a pending one by that one",
            Mode::Plan,
            Some(StepId::DockerInstall),
            Scripted::new(vec![], did()),
            Status::Pending,
            Some("after docker-install"),
            &[],
        ),
    ];
    let fake = FakeHost::debian12();
    let settings = fake.settings(None);
    for (name, mode, waiting_on, step, status, reason, changes) in cases {
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let report = super::run_step(
            &host,
            &settings,
            StepId::OverlayModule,
            &step,
            mode,
            waiting_on,
            &reporter,
            &mut Vec::new,
        );
        assert_eq!(report.status, status, "{name}");
        assert_eq!(report.reason.as_deref(), reason, "{name}");
        assert_eq!(report.changes, changes, "{name}");
        assert_eq!(report.id, "overlay-module", "{name}");
        let diffs: &[&str] = if mode == Mode::Plan && waiting_on.is_none() {
            &["+x"]
        } else {
            &[]
        };
        assert_eq!(report.diffs, diffs, "{name}");
    }

    // plan asks plan_check, apply and verify ask check.
    let mut step = Scripted::new(vec![Ok(State::Done)], did());
    step.plan_check = Some(State::NotApplicable("cheaper probe".into()));
    let reporter = fake.reporter(Format::Json);
    let host = fake.host(reporter.clone());
    let plan = super::run_step(
        &host,
        &settings,
        StepId::DockerVerify,
        &step,
        Mode::Plan,
        None,
        &reporter,
        &mut Vec::new,
    );
    assert_eq!(plan.reason.as_deref(), Some("cheaper probe"));
    let verify = super::run_step(
        &host,
        &settings,
        StepId::DockerVerify,
        &step,
        Mode::Verify,
        None,
        &reporter,
        &mut Vec::new,
    );
    assert_eq!(verify.status, Status::Ok);
}

#[test]
fn without_root_verify_neither_builds_nor_asks_gitlab() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    fake.machine().root = false;
    let n = fake.commands().len();
    for id in [StepId::DockerBuild, StepId::RunnerAlive] {
        let (counts, out) = fake.run_steps(&settings, &Selection::of(&[id]), Mode::Verify);
        let text = out.captured();
        assert_eq!((counts.skipped, counts.failed), (1, 0), "{id}: {text}");
        assert!(text.contains("not root"), "{id}: {text}");
    }
    assert_eq!(fake.commands().len(), n, "{:?}", &fake.commands()[n..]);
}

#[test]
fn several_modules_are_listed_in_one_file_and_all_kept() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(None);
    // Three, so the third builds on the text the first two left.
    settings.profile.kernel.modules = vec!["overlay".into(), "br_netfilter".into(), "ip_vs".into()];
    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Plan,
    );
    assert_eq!(plan.pending, 1, "{}", out.captured());
    for module in ["overlay", "br_netfilter", "ip_vs"] {
        assert!(
            out.captured()
                .contains(&format!("list {module} in /etc/modules")),
            "{}",
            out.captured()
        );
    }
    let (applied, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Apply,
    );
    assert_eq!(
        (applied.changed, applied.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    assert_eq!(
        fake.read("/etc/modules"),
        "# /etc/modules: kernel modules to load at boot time.\nloop\noverlay\nbr_netfilter\nip_vs\n"
    );
    let run: Vec<String> = fake.ran_since(0);
    assert_eq!(
        run,
        vec!["modprobe br_netfilter", "modprobe ip_vs"],
        "overlay is built in"
    );
    let (again, _) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Apply,
    );
    assert_eq!(again.changed, 0);
}

#[test]
fn modprobe_is_required_only_for_a_module_not_loaded_yet() {
    // overlay is built in (in /proc/filesystems): nothing to load, no modprobe needed.
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/modprobe")).expect("rm modprobe");
    let settings = fake.settings(None);
    let (applied, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Apply,
    );
    assert_eq!(
        (applied.changed, applied.failed),
        (1, 0),
        "{}",
        out.captured()
    );

    // br_netfilter is neither live nor listed: refused before any change.
    let fake = FakeHost::debian12();
    std::fs::remove_file(fake.root().join("usr/bin/modprobe")).expect("rm modprobe");
    let mut settings = fake.settings(None);
    settings.profile.kernel.modules = vec!["overlay".into(), "br_netfilter".into()];
    let before = fake.snapshot();
    let (applied, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!((applied.failed, applied.skipped), (1, 1), "{text}");
    assert!(
        text.contains("`modprobe` was not found on PATH: install the package `kmod`"),
        "{text}"
    );
    assert_eq!(fake.snapshot(), before);

    // An image (--root) loads nothing, so it needs no modprobe either.
    let reporter = fake.reporter(Format::Json);
    let host = fake.offline_host(reporter.clone());
    let applied = run(
        &host,
        &settings,
        &Selection::of(&[StepId::OverlayModule]),
        Mode::Apply,
        &reporter,
    );
    assert_eq!(
        (applied.changed, applied.failed),
        (1, 0),
        "{}",
        reporter.captured()
    );
}

#[test]
fn runner_alive_without_network_is_skipped_not_failed() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    fake.write("/var/lib/gitlab-runner-stand-in/server/unreachable", "");
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerAlive]),
        Mode::Verify,
    );
    let text = out.captured();
    assert_eq!((counts.skipped, counts.failed), (1, 0), "{text}");
    assert!(
        text.contains("GitLab unreachable (runner-1: couldn't execute POST"),
        "{text}"
    );
    assert!(text.contains("\"runner-1\":\"unreachable\""), "{text}");
    assert!(
        !text.contains("t-derive"),
        "no shortened token in output: {text}"
    );
}

#[test]
fn every_built_in_profile_plans_and_converges_on_a_fresh_host() {
    for (name, text) in crate::profile::EMBEDDED {
        let fake = FakeHost::debian12();
        // Where the package installs the tool (a prune timer runs it from there).
        fake.write("/usr/bin/runner-provision", "#!/bin/sh\n");
        let mut settings = fake.settings(Some(LEGACY));
        let local = settings.profile.runner.repository.clone();
        settings.profile = crate::profile::Profile::parse(text, name).expect(name);
        // The fake host has no network: the local repository, and the
        // group risk accepted as an operator would.
        settings.profile.runner.repository = local;
        settings.profile.docker.source = crate::profile::DockerSource::Distro;
        settings.profile.docker.accept_group_risk = true;
        settings.profile.docker.verify_timeout = 1;
        let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
        assert_eq!(plan.failed, 0, "{name}: {}", out.captured());
        assert!(plan.pending > 0, "{name}: {}", out.captured());
        let (applied, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
        assert_eq!(applied.failed, 0, "{name}: {}", out.captured());
        let (again, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
        assert_eq!(
            (again.changed, again.failed),
            (0, 0),
            "{name}: {}",
            out.captured()
        );
    }
}
