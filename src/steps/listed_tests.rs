//! `[[runners]]` against a fake host: each listed runner registered once
//! with its own token, flags and environment; a runner the profile does not
//! list reported and kept; no token in argv or output.

use std::sync::Arc;

use super::{Mode, Selection, Settings, StepId, run};
use crate::profile::{ListedRunner, Profile};
use crate::report::{Counts, Format, Reporter};
use crate::secret::Token;
use crate::testing::FakeHost;

const BUILD_TOKEN: &str = "GR1348941buildTokenValue77";
const IMAGES_TOKEN: &str = "GR1348941imagesTokenValue88";
const CONFIG: &str = "/etc/gitlab-runner/config.toml";

fn listed(name: &str) -> ListedRunner {
    ListedRunner {
        name: name.to_string(),
        url: "https://gitlab.example.com/".to_string(),
        token_env: format!("{}_TOKEN", name.to_ascii_uppercase()),
        ..ListedRunner::default()
    }
}

/// Two runners: `build` (shell, no tags) and `images` (tags, a limit, an
/// environment variable), with the tokens given.
fn fleet(fake: &FakeHost, tokens: [Option<&str>; 2]) -> Settings {
    let mut settings = fake.settings(None);
    let mut images = listed("images");
    images.tags = vec!["docker".into(), "images".into()];
    images.limit = 2;
    images.environment = vec!["DOCKER_BUILDKIT=1".into()];
    settings.profile.runners = vec![listed("build"), images];
    settings.runner_tokens = tokens
        .iter()
        .map(|t| {
            t.map(|t| {
                fake.redactor.add_token(t);
                Token::new(t).expect("token")
            })
        })
        .collect();
    settings.profile.validate().expect("valid");
    settings
}

fn go(fake: &FakeHost, settings: &Settings, mode: Mode) -> (Counts, Arc<Reporter>) {
    let selection = Selection::of(&[StepId::RunnerRegister, StepId::DockerDriver]);
    fake.run_steps(settings, &selection, mode)
}

fn no_token_anywhere(fake: &FakeHost, outputs: &[&str]) {
    for token in [BUILD_TOKEN, IMAGES_TOKEN] {
        for cmd in fake.commands() {
            assert!(
                !cmd.argv.iter().any(|a| a.contains(token)),
                "token on argv: {}",
                cmd.display()
            );
        }
        for out in outputs {
            assert!(!out.contains(token), "token in output: {out}");
        }
    }
}

#[test]
fn each_listed_runner_is_registered_once_with_its_own_token_and_settings() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let settings = fleet(&fake, [Some(BUILD_TOKEN), Some(IMAGES_TOKEN)]);

    let (plan, planned) = go(&fake, &settings, Mode::Plan);
    let planned = planned.captured();
    assert_eq!((plan.pending, plan.failed), (2, 0), "{planned}");
    assert!(
        planned.contains("register runner build at https://gitlab.example.com/ (executor shell, with a registration token)"),
        "{planned}"
    );
    assert!(
        planned.contains("register runner images at https://gitlab.example.com/ (executor shell, tags docker,images, limit 2, environment DOCKER_BUILDKIT, with a registration token)"),
        "{planned}"
    );

    let (applied, out) = go(&fake, &settings, Mode::Apply);
    let applied_out = out.captured();
    assert_eq!((applied.changed, applied.failed), (2, 0), "{applied_out}");
    let registers: Vec<_> = fake
        .commands()
        .into_iter()
        .filter(|c| c.argv.get(1).is_some_and(|a| a == "register"))
        .collect();
    assert_eq!(registers.len(), 2);
    let (build, images) = (&registers[0], &registers[1]);
    assert!(build.argv.contains(&"build".to_string()));
    assert!(!build.argv.contains(&"--tag-list".to_string()));
    assert!(!build.argv.contains(&"--limit".to_string()));
    assert!(!build.env.iter().any(|(k, _)| k == "RUNNER_ENV"));
    assert!(
        build
            .env
            .contains(&("REGISTRATION_TOKEN".into(), BUILD_TOKEN.into()))
    );
    let images_argv = images.argv.join(" ");
    assert!(
        images_argv.contains("--name images --executor shell --tag-list docker,images --limit 2"),
        "{images_argv}"
    );
    assert!(
        images
            .env
            .contains(&("RUNNER_ENV".into(), "DOCKER_BUILDKIT=1".into()))
    );
    assert!(
        images
            .env
            .contains(&("REGISTRATION_TOKEN".into(), IMAGES_TOKEN.into()))
    );
    let config = fake.read(CONFIG);
    assert_eq!(config.matches("[[runners]]").count(), 2, "{config}");
    assert_eq!(
        config.matches("DOCKER_DRIVER=overlay2").count(),
        2,
        "{config}"
    );

    let before = fake.snapshot();
    let commands = fake.commands().len();
    let (again, out) = go(&fake, &settings, Mode::Apply);
    let again_out = out.captured();
    assert_eq!((again.changed, again.failed), (0, 0), "{again_out}");
    assert_eq!(fake.snapshot(), before, "byte-identical");
    assert_eq!(fake.commands().len(), commands, "nothing spawned");
    no_token_anywhere(&fake, &[&planned, &applied_out, &again_out]);
}

#[test]
fn a_runner_the_profile_no_longer_lists_is_reported_and_kept() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let mut settings = fleet(&fake, [Some(BUILD_TOKEN), Some(IMAGES_TOKEN)]);
    let (applied, out) = go(&fake, &settings, Mode::Apply);
    assert_eq!(applied.failed, 0, "{}", out.captured());

    settings.profile.runners.pop();
    settings.runner_tokens.pop();
    let before = fake.snapshot();
    for mode in [Mode::Plan, Mode::Apply, Mode::Verify] {
        let (counts, out) = go(&fake, &settings, mode);
        let out = out.captured();
        assert_eq!(
            (counts.changed, counts.pending, counts.failed),
            (0, 0, 0),
            "{out}"
        );
        assert!(
            out.contains("runner \\\"images\\\" at https://gitlab.example.com/ is in /etc/gitlab-runner/config.toml but not in the profile: left as it is"),
            "{mode:?}: {out}"
        );
    }
    assert_eq!(fake.snapshot(), before, "the unlisted runner is kept");
    assert!(fake.read(CONFIG).contains("name = \"images\""));
}

#[test]
fn a_runner_without_a_token_is_skipped_the_others_register() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let settings = fleet(&fake, [Some(BUILD_TOKEN), None]);
    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let out = out.captured();
    assert_eq!(counts.failed, 0, "{out}");
    assert!(fake.read(CONFIG).contains("name = \"build\""));
    assert!(!fake.read(CONFIG).contains("name = \"images\""));
    let (again, out) = go(&fake, &settings, Mode::Apply);
    let out = out.captured();
    assert_eq!((again.changed, again.skipped), (0, 1), "{out}");
    assert!(
        out.contains("not registered: images at https://gitlab.example.com/ (no token in its token_env IMAGES_TOKEN)"),
        "{out}"
    );

    let mut required = settings.clone();
    required.profile.runner.require_registration = true;
    let (counts, out) = go(&fake, &required, Mode::Apply);
    let out = out.captured();
    assert_eq!(counts.failed, 1, "{out}");
    assert!(
        out.contains("runner images (https://gitlab.example.com/) is not registered and its token source (token_env IMAGES_TOKEN) gave no token"),
        "{out}"
    );
}

#[test]
fn one_failed_registration_does_not_keep_the_other_runner_unregistered() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let settings = fleet(&fake, [Some(BUILD_TOKEN), Some(IMAGES_TOKEN)]);
    // The first registration (build) is refused; images is next.
    fake.failing.lock().expect("lock").push((
        "gitlab-runner".to_string(),
        "once:PANIC: Failed to register the runner. 403 Forbidden".to_string(),
    ));
    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let out = out.captured();
    assert_eq!(counts.failed, 1, "{out}");
    // The failure names the runner and GitLab's answer, and what was done besides.
    assert!(out.contains("runner build: "), "{out}");
    assert!(out.contains("403 Forbidden"), "{out}");
    assert!(
        out.contains("(done: registered runner images at https://gitlab.example.com/"),
        "{out}"
    );
    assert!(fake.read(CONFIG).contains("name = \"images\""), "{out}");
    no_token_anywhere(&fake, &[&out]);
}

#[test]
fn tags_with_an_authentication_token_are_refused_before_any_change() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let settings = fleet(
        &fake,
        [Some(BUILD_TOKEN), Some("glrt-imagesAuthToken0123456")],
    );
    let before = fake.snapshot();
    let (counts, out) = go(&fake, &settings, Mode::Apply);
    let out = out.captured();
    assert_eq!((counts.failed, counts.changed), (1, 0), "{out}");
    assert!(
        out.contains("runner \\\"images\\\": tags cannot be set"),
        "{out}"
    );
    assert_eq!(fake.snapshot(), before);
    assert!(!out.contains("glrt-imagesAuthToken0123456"), "{out}");
}

#[test]
fn the_shutdown_unit_unregisters_every_listed_runner() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner"]);
    let mut settings = fleet(&fake, [None, None]);
    settings.profile.runner.unregister_on_shutdown = true;
    let reporter = fake.reporter(Format::Json);
    let host = fake.offline_host(reporter.clone());
    let selection = Selection::of(&[StepId::ShutdownUnregister]);
    let counts = run(&host, &settings, &selection, Mode::Apply, &reporter);
    assert_eq!(counts.failed, 0, "{}", reporter.captured());
    let unit = fake.read(super::shutdown_unregister::UNIT);
    for name in ["build", "images"] {
        assert!(unit.contains(&format!("--name \"{name}\"\n")), "{unit}");
    }
}

#[test]
fn the_example_fleet_profile_parses_and_plans() {
    let (profile, _) = Profile::load(Some("shell-docker-fleet")).expect("embedded");
    profile.validate().expect("valid");
    assert_eq!(profile.runners.len(), 2);
    assert!(profile.runners[0].tags.is_empty());
    assert!(!profile.runners[1].tags.is_empty() && profile.runners[1].limit > 0);
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let mut settings = fake.settings(None);
    settings.profile.runners = profile.runners.clone();
    settings.runner_tokens = vec![
        Some(Token::new(BUILD_TOKEN).expect("token")),
        Some(Token::new(IMAGES_TOKEN).expect("token")),
    ];
    fake.redactor.add_token(BUILD_TOKEN);
    fake.redactor.add_token(IMAGES_TOKEN);
    let (plan, out) = go(&fake, &settings, Mode::Plan);
    let out = out.captured();
    assert_eq!((plan.pending, plan.failed), (2, 0), "{out}");
    assert!(out.contains("register runner build"), "{out}");
    assert!(out.contains("register runner images"), "{out}");
}

#[test]
fn an_image_leaves_listed_runners_without_a_token_to_the_instance() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    let mut settings = fleet(&fake, [None, None]);
    // Even where a live host would fail without a token: the image has none
    // by design, each instance registers at boot.
    settings.profile.runner.require_registration = true;
    let reporter = fake.reporter(Format::Json);
    let host = fake.offline_host(reporter.clone());
    let selection = Selection::of(&[StepId::RunnerRegister]);
    let counts = run(&host, &settings, &selection, Mode::Apply, &reporter);
    let out = reporter.captured();
    assert_eq!((counts.failed, counts.skipped), (0, 1), "{out}");
    assert!(
        out.contains("image (--root): the instance registers at boot"),
        "{out}"
    );
    assert!(!out.contains("not registered"), "{out}");
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
}
