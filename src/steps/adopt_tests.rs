//! Hosts set up by hand, adopted: a runner registered under another name,
//! repository sources and keys written by GitLab's and Docker's
//! instructions, the other Docker Engine package already there.

use std::sync::Arc;

use super::{Mode, Selection, StepId, run};
use crate::report::{Counts, Format, Reporter};
use crate::steps::Settings;
use crate::testing::FakeHost;

const LEGACY: &str = "GR1348941adoptTokenValue77";

/// config.toml as `gitlab-runner register … --description "My Runner"`
/// leaves it (GitLab Runner 17.4's format), the URL without its slash.
const MY_RUNNER: &str = r#"concurrent = 1
check_interval = 0

[session_server]
  session_timeout = 1800

[[runners]]
  name = "My Runner"
  url = "https://gitlab.com"
  id = 0
  token = "t-by-hand"
  executor = "shell"
  [runners.cache]
"#;

fn go(
    fake: &FakeHost,
    settings: &Settings,
    selection: &Selection,
    mode: Mode,
) -> (Counts, Arc<Reporter>) {
    let reporter = fake.reporter(Format::Json);
    let host = fake.host(reporter.clone());
    let counts = run(&host, settings, selection, mode, &reporter);
    (counts, reporter)
}

fn registrations(fake: &FakeHost) -> usize {
    fake.commands()
        .iter()
        .filter(|c| c.argv.get(1).map(String::as_str) == Some("register"))
        .count()
}

#[test]
fn a_runner_registered_by_hand_is_adopted_when_the_profile_names_none() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    fake.write("/etc/gitlab-runner/config.toml", MY_RUNNER);
    let settings = fake.settings(Some(LEGACY));
    assert!(settings.profile.runner.name.is_empty());

    let (plan, out) = go(&fake, &settings, &Selection::default(), Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.failed, 0, "{text}");
    assert!(
        text.contains(r#""id":"runner-register","status":"ok""#),
        "{text}"
    );
    assert!(
        text.contains(r#"the runner \"My Runner\" registered at https://gitlab.com/ is taken as this host's runner"#),
        "{text}"
    );

    let (first, out) = go(&fake, &settings, &Selection::default(), Mode::Apply);
    assert_eq!(first.failed, 0, "{}", out.captured());
    assert_eq!(registrations(&fake), 0, "{}", out.captured());
    let config = fake.read("/etc/gitlab-runner/config.toml");
    assert_eq!(config.matches("[[runners]]").count(), 1, "{config}");
    assert!(
        config.contains(r#"environment = ["DOCKER_DRIVER=overlay2"]"#),
        "the adopted runner gets DOCKER_DRIVER:\n{config}"
    );

    let before = fake.snapshot();
    let (second, out) = go(&fake, &settings, &Selection::default(), Mode::Apply);
    assert_eq!(
        (second.changed, second.failed),
        (0, 0),
        "{}",
        out.captured()
    );
    assert!(fake.snapshot() == before, "the second apply changed a file");
    let (verify, out) = go(&fake, &settings, &Selection::default(), Mode::Verify);
    assert_eq!(verify.failed, 0, "{}", out.captured());
}

#[test]
fn a_named_runner_is_registered_beside_another_at_the_same_url() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    fake.write("/etc/gitlab-runner/config.toml", MY_RUNNER);
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.runner.name = "build-1".to_string();

    let (plan, out) = go(&fake, &settings, &only(StepId::RunnerRegister), Mode::Plan);
    let text = out.captured();
    assert_eq!(plan.pending, 1, "{text}");
    assert!(
        text.contains(r#"register runner build-1 at https://gitlab.com/"#)
            && text.contains(r#"the runner \"My Runner\" registered at this URL under another name stays as it is"#),
        "plan names both runners: {text}"
    );

    let (apply, out) = go(&fake, &settings, &only(StepId::RunnerRegister), Mode::Apply);
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    assert_eq!(registrations(&fake), 1);
    let config = fake.read("/etc/gitlab-runner/config.toml");
    assert!(
        config.contains("name = \"My Runner\"") && config.contains("name = \"build-1\""),
        "{config}"
    );
    let (again, out) = go(&fake, &settings, &only(StepId::RunnerRegister), Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
}

#[test]
fn a_runner_at_another_url_is_not_adopted() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner"]);
    fake.write(
        "/etc/gitlab-runner/config.toml",
        &MY_RUNNER.replace("https://gitlab.com", "https://gitlab.example.org"),
    );
    let settings = fake.settings(Some(LEGACY));
    let (apply, out) = go(&fake, &settings, &only(StepId::RunnerRegister), Mode::Apply);
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    assert_eq!(registrations(&fake), 1);
}

fn only(id: StepId) -> Selection {
    Selection {
        only: vec![id],
        skip: Vec::new(),
    }
}
