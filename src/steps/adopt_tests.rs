//! Hosts set up by hand, adopted: a runner registered under another name,
//! repository sources and keys written by GitLab's and Docker's
//! instructions, the other Docker Engine package already there.

use super::{Mode, Selection, StepId};
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

    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
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

    let (first, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(first.failed, 0, "{}", out.captured());
    assert_eq!(registrations(&fake), 0, "{}", out.captured());
    let config = fake.read("/etc/gitlab-runner/config.toml");
    assert_eq!(config.matches("[[runners]]").count(), 1, "{config}");
    assert!(
        config.contains(r#"environment = ["DOCKER_DRIVER=overlay2"]"#),
        "the adopted runner gets DOCKER_DRIVER:\n{config}"
    );

    let before = fake.snapshot();
    let (second, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(
        (second.changed, second.failed),
        (0, 0),
        "{}",
        out.captured()
    );
    assert!(fake.snapshot() == before, "the second apply changed a file");
    let (verify, out) = fake.run_steps(&settings, &Selection::default(), Mode::Verify);
    assert_eq!(verify.failed, 0, "{}", out.captured());
}

#[test]
fn a_named_runner_is_registered_beside_another_at_the_same_url() {
    let fake = FakeHost::debian12();
    fake.install(&["gitlab-runner", "docker.io"]);
    fake.write("/etc/gitlab-runner/config.toml", MY_RUNNER);
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.runner.name = "build-1".to_string();

    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Plan,
    );
    let text = out.captured();
    assert_eq!(plan.pending, 1, "{text}");
    assert!(
        text.contains(r#"register runner build-1 at https://gitlab.com/"#)
            && text.contains(r#"the runner \"My Runner\" registered at this URL under another name stays as it is"#),
        "plan names both runners: {text}"
    );

    let (apply, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Apply,
    );
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    assert_eq!(registrations(&fake), 1);
    let config = fake.read("/etc/gitlab-runner/config.toml");
    assert!(
        config.contains("name = \"My Runner\"") && config.contains("name = \"build-1\""),
        "{config}"
    );
    let (again, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Apply,
    );
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
    let (apply, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::RunnerRegister]),
        Mode::Apply,
    );
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    assert_eq!(registrations(&fake), 1);
}

/// GitLab's repository as its script sets it up, at a local path (no
/// network in unit tests): dists/bookworm, a one-line source in
/// runner_gitlab-runner.list, a binary keyring in /usr/share/keyrings.
struct GitlabByHand {
    fake: FakeHost,
    settings: Settings,
    key_url_path: std::path::PathBuf,
}

const LIST: &str = "/etc/apt/sources.list.d/runner_gitlab-runner.list";
const KEYRING: &str = "/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg";
const OWN: &str = "/etc/apt/sources.list.d/gitlab-runner.sources";
const EXPIRED_KEY: &[u8] = include_bytes!("../edit/fixtures/expired-2020-key.gpg");
const NEW_KEY: &str = include_str!("../edit/fixtures/no-expiry-key.asc");

impl GitlabByHand {
    fn new(suite: &str) -> Self {
        let fake = FakeHost::debian12();
        fake.write("/srv/gitlab/debian/dists/bookworm/InRelease", "signed\n");
        let key_url_path = fake.root().join("srv/gitlab/gpgkey");
        std::fs::write(&key_url_path, NEW_KEY).expect("key");
        fake.write(
            LIST,
            &format!("# this file was generated by packages.gitlab.com for\n# the repository at https://packages.gitlab.com/runner/gitlab-runner\n\ndeb [signed-by={KEYRING}] file:///srv/gitlab/debian/ {suite} main\ndeb-src [signed-by={KEYRING}] file:///srv/gitlab/debian/ {suite} main\n"),
        );
        let new_key = crate::edit::openpgp::dearmor(NEW_KEY).expect("key");
        let full = fake.root().join(KEYRING.trim_start_matches('/'));
        std::fs::create_dir_all(full.parent().expect("dir")).expect("mkdir");
        std::fs::write(full, new_key).expect("keyring");
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.runner.repository = Some(crate::profile::Repository {
            uri: "file:/srv/gitlab/{id}".to_string(),
            suite: "{codename}".to_string(),
            components: "main".to_string(),
            key_url: format!("file:{}", key_url_path.display()),
        });
        Self {
            fake,
            settings,
            key_url_path,
        }
    }

    fn updates(&self) -> Vec<String> {
        self.fake
            .commands()
            .iter()
            .map(|c| c.display())
            .filter(|c| c.contains("apt-get") && c.contains("update"))
            .collect()
    }
}

#[test]
fn gitlabs_own_source_is_used_as_it_is() {
    let by_hand = GitlabByHand::new("bookworm");
    let fake = &by_hand.fake;
    let list_before = fake.read(LIST);
    let (plan, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert_eq!(plan.pending, 1, "{text}");
    assert!(text.contains("install package gitlab-runner"), "{text}");
    assert!(
        !text.contains("apt source") && !text.contains("signing key"),
        "no second source, no second key: {text}"
    );

    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    assert_eq!(
        fake.read(LIST),
        list_before,
        "the operator's source is untouched"
    );
    assert!(!fake.root().join(OWN.trim_start_matches('/')).exists());
    assert!(
        !fake
            .root()
            .join("etc/apt/keyrings/gitlab-runner.asc")
            .exists()
    );
}

#[test]
fn a_wrong_suite_is_edited_in_place_with_a_diff() {
    let by_hand = GitlabByHand::new("bullseye");
    let fake = &by_hand.fake;
    let (_, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert!(
        text.contains("set the suite of the existing apt source /etc/apt/sources.list.d/runner_gitlab-runner.list to bookworm"),
        "{text}"
    );
    assert!(
        text.contains("-deb [signed-by=/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg] file:///srv/gitlab/debian/ bullseye main")
            && text.contains("+deb [signed-by=/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg] file:///srv/gitlab/debian/ bookworm main"),
        "the diff: {text}"
    );
    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    let list = fake.read(LIST);
    assert!(
        list.starts_with("# this file was generated") && !list.contains("bullseye"),
        "{list}"
    );
    assert!(!fake.root().join(OWN.trim_start_matches('/')).exists());
}

#[test]
fn the_tools_earlier_source_beside_gitlabs_is_removed() {
    let by_hand = GitlabByHand::new("bookworm");
    let fake = &by_hand.fake;
    // What earlier versions of the tool wrote beside GitLab's file.
    fake.write(
        OWN,
        "Types: deb\nURIs: file:/srv/gitlab/debian\nSuites: bookworm\nComponents: main\nSigned-By: /etc/apt/keyrings/gitlab-runner.asc\n",
    );
    let (_, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert!(
        text.contains("remove /etc/apt/sources.list.d/gitlab-runner.sources: /etc/apt/sources.list.d/runner_gitlab-runner.list already defines the repository"),
        "{text}"
    );
    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    assert!(!fake.root().join(OWN.trim_start_matches('/')).exists());
}

#[test]
fn an_expired_key_is_shown_in_plan_and_refreshed() {
    let by_hand = GitlabByHand::new("bookworm");
    let fake = &by_hand.fake;
    std::fs::write(
        fake.root().join(KEYRING.trim_start_matches('/')),
        EXPIRED_KEY,
    )
    .expect("old key");
    let (_, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert!(
        text.contains(&format!(
            "download the signing key file:{} to {KEYRING} again: the key there expired on 2020-12-31",
            by_hand.key_url_path.display()
        )),
        "{text}"
    );
    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    assert_eq!((apply.changed, apply.failed), (1, 0), "{}", out.captured());
    let keyring =
        std::fs::read(fake.root().join(KEYRING.trim_start_matches('/'))).expect("keyring");
    assert_eq!(
        keyring,
        crate::edit::openpgp::dearmor(NEW_KEY).expect("key"),
        "a .gpg keyring gets the key de-armoured, as gpg --dearmor writes it"
    );
}

#[test]
fn a_rotated_key_is_downloaded_again_and_the_update_retried_once() {
    let by_hand = GitlabByHand::new("bookworm");
    let fake = &by_hand.fake;
    // A key apt does not know (rotated upstream); its expiry cannot tell.
    std::fs::write(
        fake.root().join(KEYRING.trim_start_matches('/')),
        b"not a key",
    )
    .expect("key");
    fake.failing.lock().expect("lock").push((
        "apt-get".to_string(),
        "once:W: GPG error: file:/srv/gitlab/debian bookworm InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 3F01618A51312F3F\nE: The repository 'file:/srv/gitlab/debian bookworm InRelease' is not signed.".to_string(),
    ));
    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!((apply.changed, apply.failed), (1, 0), "{text}");
    assert!(
        text.contains("apt does not accept the signing key of file:/srv/gitlab/debian")
            && text.contains("retrying once"),
        "{text}"
    );
    assert_eq!(by_hand.updates().len(), 2, "{:?}", by_hand.updates());
    assert!(
        text.contains(
            "refreshed the signing key /usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg"
        ),
        "{text}"
    );
}

#[test]
fn a_key_that_still_fails_puts_every_file_back() {
    let by_hand = GitlabByHand::new("bullseye");
    let fake = &by_hand.fake;
    let list_before = fake.read(LIST);
    let key_before = std::fs::read(fake.root().join(KEYRING.trim_start_matches('/'))).expect("key");
    fake.failing.lock().expect("lock").push((
        "apt-get".to_string(),
        "W: GPG error: file:/srv/gitlab/debian bookworm InRelease: EXPKEYSIG 3F01618A51312F3F GitLab B.V.".to_string(),
    ));
    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(apply.failed, 1, "{text}");
    assert!(text.contains("files put back as they were"), "{text}");
    assert_eq!(
        by_hand.updates().len(),
        2,
        "one retry only: {:?}",
        by_hand.updates()
    );
    assert_eq!(fake.read(LIST), list_before, "the suite edit is undone");
    assert_eq!(
        std::fs::read(fake.root().join(KEYRING.trim_start_matches('/'))).expect("key"),
        key_before
    );
    assert!(!fake.root().join(OWN.trim_start_matches('/')).exists());
}

#[test]
fn the_engine_already_there_is_kept_unless_the_profile_asks_to_replace_it() {
    use crate::profile::DockerSource;
    let cases = [
        (DockerSource::Distro, "docker-ce", "docker.io"),
        (
            DockerSource::DockerCe,
            "docker.io",
            "docker-ce docker-ce-cli containerd.io",
        ),
    ];
    for (source, installed, wanted) in cases {
        let fake = FakeHost::debian12();
        fake.install(&[installed]);
        let mut settings = fake.settings(Some(LEGACY));
        settings.profile.docker.source = source;
        let (plan, out) = fake.run_steps(
            &settings,
            &Selection::of(&[StepId::DockerInstall]),
            Mode::Plan,
        );
        let text = out.captured();
        assert_eq!((plan.pending, plan.failed), (0, 0), "{source:?}: {text}");
        assert!(
            text.contains(&format!(
                "{installed} is installed: it is kept as Docker Engine instead of the profile's {wanted}"
            )),
            "{source:?}: {text}"
        );
        let (apply, out) = fake.run_steps(
            &settings,
            &Selection::of(&[StepId::DockerInstall]),
            Mode::Apply,
        );
        assert_eq!(
            (apply.changed, apply.failed),
            (0, 0),
            "{source:?}: {}",
            out.captured()
        );
        assert!(
            !fake.commands().iter().any(|c| c.program() == "apt-get"),
            "{source:?}: nothing installed"
        );

        settings.profile.docker.replace_engine = true;
        let (plan, out) = fake.run_steps(
            &settings,
            &Selection::of(&[StepId::DockerInstall]),
            Mode::Plan,
        );
        let text = out.captured();
        assert_eq!(plan.pending, 1, "{source:?}: {text}");
        assert!(
            text.contains(&format!(
                "install {} {wanted}",
                if wanted.contains(' ') {
                    "packages"
                } else {
                    "package"
                }
            )),
            "{source:?}: {text}"
        );
    }
}

#[test]
fn dockers_own_source_by_hand_is_used_for_docker_ce() {
    let fake = FakeHost::debian12();
    fake.write("/srv/docker/dists/bookworm/InRelease", "signed\n");
    let key = fake.root().join("srv/docker/gpg");
    std::fs::write(&key, NEW_KEY).expect("key");
    fake.write("/etc/apt/keyrings/docker.asc", NEW_KEY);
    // Docker's instructions: docker.list, arch= and signed-by, no slash.
    let list = "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] file:/srv/docker bookworm stable\n";
    fake.write("/etc/apt/sources.list.d/docker.list", list);
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.source = crate::profile::DockerSource::DockerCe;
    settings.profile.docker.repository = Some(crate::profile::Repository {
        uri: "file:/srv/docker/".to_string(),
        suite: "{codename}".to_string(),
        components: "stable".to_string(),
        key_url: format!("file:{}", key.display()),
    });
    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Plan,
    );
    let text = out.captured();
    assert_eq!((plan.pending, plan.failed), (1, 0), "{text}");
    assert!(
        text.contains("install packages docker-ce docker-ce-cli containerd.io"),
        "{text}"
    );
    assert!(
        !text.contains("apt source") && !text.contains("signing key"),
        "{text}"
    );
    let (apply, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerInstall]),
        Mode::Apply,
    );
    assert_eq!(apply.failed, 0, "{}", out.captured());
    assert_eq!(fake.read("/etc/apt/sources.list.d/docker.list"), list);
    assert!(
        !fake
            .root()
            .join("etc/apt/sources.list.d/docker.sources")
            .exists()
    );
}

#[test]
fn a_key_apt_refuses_with_only_a_warning_is_downloaded_again() {
    // apt keeps its older lists of a repository whose new signature does
    // not verify, and says so as a warning: exit 0.
    let by_hand = GitlabByHand::new("bookworm");
    let fake = &by_hand.fake;
    fake.failing.lock().expect("lock").push((
        "apt-get".to_string(),
        "once-ok:W: An error occurred during the signature verification. The repository is not updated and the previous index files will be used. GPG error: file:/srv/gitlab/debian bookworm InRelease: The following signatures couldn't be verified because the public key is not available: NO_PUBKEY 3F01618A51312F3F".to_string(),
    ));
    let (apply, out) = fake.run_steps(
        &by_hand.settings,
        &Selection::of(&[StepId::RunnerInstall]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!((apply.changed, apply.failed), (1, 0), "{text}");
    assert!(text.contains("retrying once"), "{text}");
    assert_eq!(by_hand.updates().len(), 2, "{:?}", by_hand.updates());
}
