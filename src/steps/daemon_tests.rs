//! docker-daemon and the daemon.json write every step shares, against the
//! fake host: settings merged and converged, a log setup chosen by hand
//! kept, `hosts` refused before any change, `dockerd --validate` refusing
//! before the write, and a file dockerd refuses at start rolled back.

use serde_json::json;

use super::{Mode, Selection, StepId, run};
use crate::profile::DaemonSettings;
use crate::report::Format;
use crate::testing::FakeHost;

const LEGACY: &str = "GR1348941legacyTokenValue42";
const DAEMON_JSON: &str = "/etc/docker/daemon.json";

fn daemon(value: serde_json::Value) -> DaemonSettings {
    match value {
        serde_json::Value::Object(map) => DaemonSettings(map),
        _ => panic!("an object"),
    }
}

#[test]
fn settings_are_merged_beside_a_key_set_by_hand_and_converge() {
    let fake = FakeHost::debian12();
    fake.write(DAEMON_JSON, "{\n    \"live-restore\": true\n}\n");
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.daemon = daemon(json!({
        "registry-mirrors": ["http://127.0.0.1:5000"],
        "log-driver": "local",
    }));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    assert_eq!(
        fake.read(DAEMON_JSON),
        "{\n  \"live-restore\": true,\n  \"storage-driver\": \"overlay2\",\n  \"registry-mirrors\": [\n    \"http://127.0.0.1:5000\"\n  ],\n  \"log-driver\": \"local\"\n}\n",
        "the profile's log-driver: the built-in log-opts for json-file stay out"
    );
    assert!(
        out.captured()
            .contains("set registry-mirrors, log-driver in /etc/docker/daemon.json"),
        "{}",
        out.captured()
    );

    let before = fake.snapshot();
    let from = fake.commands().len();
    let (again, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
    assert_eq!(fake.snapshot(), before);
    assert!(
        !fake
            .ran_since(from)
            .iter()
            .any(|c| c.contains("restart docker")),
        "a converged apply restarted docker"
    );
}

#[test]
fn defaults_are_written_on_a_fresh_host_and_never_over_a_log_setup_chosen_by_hand() {
    let fake = FakeHost::debian12();
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    let written: serde_json::Value = serde_json::from_str(&fake.read(DAEMON_JSON)).expect("json");
    assert_eq!(written["log-driver"], "json-file");
    assert_eq!(
        written["log-opts"],
        json!({"max-size": "10m", "max-file": "3"})
    );

    for by_hand in [
        "{\"log-driver\": \"journald\"}",
        "{\"log-opts\": {\"max-size\": \"1g\"}}",
    ] {
        let fake = FakeHost::debian12();
        fake.write(DAEMON_JSON, by_hand);
        let (counts, out) = fake.run_steps(
            &fake.settings(Some(LEGACY)),
            &Selection::default(),
            Mode::Apply,
        );
        assert_eq!(counts.failed, 0, "{}", out.captured());
        let written: serde_json::Value =
            serde_json::from_str(&fake.read(DAEMON_JSON)).expect("json");
        let mut expected: serde_json::Value = serde_json::from_str(by_hand).expect("json");
        expected["storage-driver"] = json!("overlay2");
        assert_eq!(written, expected, "{by_hand}");
    }

    // Turned off: nothing but the storage driver.
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.daemon_defaults = DaemonSettings::default();
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    assert_eq!(
        fake.read(DAEMON_JSON),
        "{\n  \"storage-driver\": \"overlay2\"\n}\n"
    );
}

#[test]
fn a_key_the_unit_passes_as_a_flag_is_refused_before_any_change() {
    // Docker not installed yet: the packaged unit's -H fd:// is assumed.
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.daemon = daemon(json!({"hosts": ["unix:///var/run/docker.sock"]}));
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(fake.commands().is_empty(), "{:?}", fake.commands());
    assert_eq!(fake.snapshot(), before);
    let text = out.captured();
    assert!(
        text.contains("sets `hosts`, which docker.service already gives dockerd as the flag `-H fd://` (as the docker.io and docker-ce packages ship docker.service)")
            && text.contains("moby#34104"),
        "{text}"
    );

    // Installed: the unit's own ExecStart is read and named.
    let fake = FakeHost::debian12();
    fake.install(&["docker.io"]);
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert_eq!(fake.snapshot(), before);
    assert!(
        out.captured()
            .contains("(ExecStart of /lib/systemd/system/docker.service and its drop-ins)"),
        "{}",
        out.captured()
    );
    // plan warns instead.
    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    assert_eq!(plan.failed, 0, "{}", out.captured());
    assert!(
        out.captured().contains("apply will refuse"),
        "{}",
        out.captured()
    );

    // A file of the drop-in folder that is not a .conf is not read by
    // systemd: still refused.
    fake.write(
        "/etc/systemd/system/docker.service.d/hosts.conf.off",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock\n",
    );
    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    assert_eq!(plan.failed, 0, "{}", out.captured());
    assert!(
        out.captured().contains("apply will refuse"),
        "{}",
        out.captured()
    );

    // A drop-in that starts dockerd without -H: accepted.
    fake.write(
        "/etc/systemd/system/docker.service.d/hosts.conf",
        "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd --containerd=/run/containerd/containerd.sock\n",
    );
    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    assert_eq!(plan.failed, 0, "{}", out.captured());
    assert!(
        !out.captured().contains("apply will refuse"),
        "{}",
        out.captured()
    );
}

#[test]
fn a_file_dockerd_refuses_at_start_is_rolled_back_and_docker_started_again() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    // A third restart within systemd's start limit (Debian's unit: 3 in 60 s).
    settings.profile.docker.daemon = daemon(json!({"debug": true}));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(
        (counts.changed, counts.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    let good = std::fs::read(fake.root().join("etc/docker/daemon.json")).expect("read");

    settings.profile.docker.daemon = daemon(json!({"debug": true, "no-such-option": true}));
    let from = fake.commands().len();
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("\"status\":\"failed\"")
            && text.contains("dockerd did not start with the new /etc/docker/daemon.json: \\\"unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives don't match any configuration option: no-such-option\\\"; rolled back: restored the previous /etc/docker/daemon.json and started docker again"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(fake.root().join("etc/docker/daemon.json")).expect("read"),
        good,
        "the previous bytes, exactly"
    );
    assert!(
        fake.root().join("run/docker.pid").exists(),
        "docker is not running"
    );
    let ran = fake.ran_since(from);
    let at = |wanted: &str| {
        ran.iter()
            .position(|c| c == wanted)
            .unwrap_or_else(|| panic!("no `{wanted}` in {ran:?}"))
    };
    assert!(
        at("systemctl restart docker") < at("systemctl reset-failed docker.service docker.socket")
    );
    assert!(
        at("systemctl reset-failed docker.service docker.socket") < at("systemctl start docker")
    );

    // The profile fixed: nothing left to change.
    settings.profile.docker.daemon = daemon(json!({"debug": true}));
    let (again, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
}

#[test]
fn a_refused_file_that_was_not_there_before_is_removed_again() {
    let fake = FakeHost::debian12();
    fake.install(&["docker.io"]);
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.daemon = daemon(json!({"no-such-option": true}));
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerDaemon]),
        Mode::Apply,
    );
    assert_eq!(counts.failed, 1, "{}", out.captured());
    assert!(
        out.captured()
            .contains("rolled back: removed /etc/docker/daemon.json (there was none before)"),
        "{}",
        out.captured()
    );
    assert!(!fake.root().join("etc/docker/daemon.json").exists());
    assert!(fake.root().join("run/docker.pid").exists());
}

#[test]
fn dockerd_validate_refuses_before_the_file_is_written() {
    let fake = FakeHost::debian12();
    fake.install(&["docker.io"]);
    fake.write("/run/fake-dockerd-validates", "");
    fake.write(DAEMON_JSON, "{\"storage-driver\": \"overlay2\"}");
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.daemon = daemon(json!({"no-such-option": true}));
    let before = fake.snapshot();
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerDaemon]),
        Mode::Apply,
    );
    let text = out.captured();
    assert_eq!(counts.failed, 1, "{text}");
    assert!(
        text.contains("dockerd --validate refuses the new /etc/docker/daemon.json: \\\"unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives don't match any configuration option: no-such-option\\\"; nothing was changed"),
        "{text}"
    );
    assert_eq!(fake.snapshot(), before, "a file written or left behind");
    assert!(
        !fake
            .commands()
            .iter()
            .any(|c| c.display().contains("restart docker")),
        "{:?}",
        fake.commands()
    );

    // A file it accepts is written and docker restarted.
    settings.profile.docker.daemon = daemon(json!({"debug": true}));
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerDaemon]),
        Mode::Apply,
    );
    assert_eq!(
        (counts.changed, counts.failed),
        (1, 0),
        "{}",
        out.captured()
    );
    assert!(fake.read(DAEMON_JSON).contains("\"debug\": true"));
    assert!(fake.commands().iter().any(|c| c.display()
        == "dockerd --validate --config-file /etc/docker/.daemon.json.runner-provision"));
}

#[test]
fn plan_shows_the_diff_and_restarts_nothing() {
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(&settings, &Selection::default(), Mode::Apply);
    assert_eq!(counts.failed, 0, "{}", out.captured());
    settings.profile.docker.daemon =
        daemon(json!({"registry-mirrors": ["https://mirror.example.com"]}));
    let before = fake.snapshot();
    let from = fake.commands().len();
    let (plan, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerDaemon]),
        Mode::Plan,
    );
    assert_eq!(plan.pending, 1, "{}", out.captured());
    let text = out.captured();
    assert!(text.contains("+  \\\"registry-mirrors\\\": ["), "{text}");
    assert!(
        text.contains(
            "set registry-mirrors in /etc/docker/daemon.json (docker restarts if running)"
        ),
        "{text}"
    );
    assert_eq!(fake.snapshot(), before);
    assert!(fake.ran_since(from).is_empty(), "plan ran commands");
}

#[test]
fn credentials_in_a_url_stay_out_of_the_output() {
    // dockerd 23's `proxies` take URLs that may hold a password.
    let fake = FakeHost::debian12();
    let mut settings = fake.settings(Some(LEGACY));
    settings.profile.docker.daemon = daemon(json!({
        "proxies": {"http-proxy": "http://puller:s3cretProxyPass@proxy.corp:3128"},
        "allow-nondistributable-artifacts": ["https://pusher:arr4yListPass@registry.corp"]
    }));
    let (plan, out) = fake.run_steps(&settings, &Selection::default(), Mode::Plan);
    assert_eq!(plan.failed, 0, "{}", out.captured());
    assert!(
        out.captured().contains("proxy.corp:3128"),
        "{}",
        out.captured()
    );
    assert!(
        out.captured().contains("registry.corp") && !out.captured().contains("arr4yListPass"),
        "{}",
        out.captured()
    );
    assert!(
        !out.captured().contains("s3cretProxyPass"),
        "{}",
        out.captured()
    );
}

#[test]
fn an_image_gets_the_settings_without_touching_a_service() {
    // `--root` on an image tree: the file is written, and no systemctl
    // (reset-failed, restart) reaches the build machine's services.
    let fake = FakeHost::debian12();
    fake.install(&["docker.io"]);
    let settings = fake.settings(Some(LEGACY));
    let reporter = fake.reporter(Format::Json);
    let host = fake.offline_host(reporter.clone());
    let counts = run(
        &host,
        &settings,
        &Selection::of(&[StepId::DockerDaemon]),
        Mode::Apply,
        &reporter,
    );
    assert_eq!(
        (counts.failed, counts.changed),
        (0, 1),
        "{}",
        reporter.captured()
    );
    assert!(
        fake.read(DAEMON_JSON)
            .contains("\"log-driver\": \"json-file\"")
    );
    let commands = fake.ran_since(0);
    assert!(
        !commands.iter().any(|c| c.contains("systemctl")),
        "{commands:?}"
    );
}

#[test]
fn without_systemd_docker_is_restarted_by_its_init_script_and_no_systemctl_runs() {
    // A live host whose PID 1 is not systemd (a container, SysV init):
    // there is no start limit to reset, and `service` restarts dockerd.
    let fake = FakeHost::debian12();
    fake.install(&["docker.io"]);
    std::fs::remove_dir_all(fake.root().join("run/systemd")).expect("no systemd");
    let settings = fake.settings(Some(LEGACY));
    let (counts, out) = fake.run_steps(
        &settings,
        &Selection::of(&[StepId::DockerDaemon]),
        Mode::Apply,
    );
    assert_eq!(
        (counts.failed, counts.changed),
        (0, 1),
        "{}",
        out.captured()
    );
    let commands = fake.ran_since(0);
    assert!(
        commands.contains(&"service docker restart".to_string()),
        "{commands:?}"
    );
    assert!(
        !commands.iter().any(|c| c.contains("systemctl")),
        "{commands:?}"
    );
}
