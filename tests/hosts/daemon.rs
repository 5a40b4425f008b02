//! daemon.json beyond the storage driver on a real host (issue 12, item
//! 4): the profile's `[docker.daemon]` merged into a daemon.json that holds
//! a key set by hand, seen by the running dockerd; a key docker.service
//! already passes as a flag refused up front; a change dockerd refuses at
//! start rolled back, Docker running again with the file it had.

use serde_json::Value;

use crate::LEGACY_TOKEN;
use crate::checks::{assert_docker_ready, assert_second_apply_changes_nothing};
use crate::harness::{self, Container, PROFILE, TEST_PROFILE};
use crate::scenarios::WallTime;

const DAEMON_JSON: &str = "/etc/docker/daemon.json";

/// Set by hand before the tool ever ran: kept through every apply.
const BY_HAND: &str = "{\n    \"live-restore\": true\n}\n";

/// The settings under test: a mirror on the container's loopback (nothing
/// needs to answer there) and the `local` log driver, not dockerd's
/// default, so `docker info` proves the file was read.
const DAEMON: &str = "\n[docker.daemon]\nregistry-mirrors = [\"http://127.0.0.1:5000\"]\nlog-driver = \"local\"\nlog-opts = { max-size = \"5m\", max-file = \"2\" }\n";

fn profile(extra: &str) -> String {
    format!("{TEST_PROFILE}{DAEMON}{extra}")
}

fn daemon_json(host: &Container) -> Value {
    serde_json::from_str(&host.read(DAEMON_JSON)).expect("daemon.json is JSON")
}

fn docker_pid(host: &Container) -> String {
    host.sh_ok("systemctl show --property MainPID --value docker")
        .trim()
        .to_string()
}

/// One scenario: settings applied and seen by dockerd, kept key, second
/// apply 0 changes; `hosts` refused before any change; a key dockerd does
/// not know rolled back; the good profile converges again.
pub fn docker_daemon_settings() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("docker_daemon_settings");
    let host = tier.boot("rp-daemon");
    host.write(DAEMON_JSON, BY_HAND);
    host.write(PROFILE, &profile(""));

    let first = host.apply(&[], Some(LEGACY_TOKEN));
    first.assert_applied("apply with [docker.daemon]");
    assert_eq!(
        first.step("docker-daemon")["status"],
        "changed",
        "{}",
        first.transcript()
    );
    let daemon = daemon_json(&host);
    assert_eq!(
        daemon["live-restore"], true,
        "the key set by hand: {daemon}"
    );
    assert_eq!(daemon["storage-driver"], "overlay2", "{daemon}");
    assert_eq!(
        daemon["registry-mirrors"],
        serde_json::json!(["http://127.0.0.1:5000"]),
        "{daemon}"
    );
    assert_eq!(daemon["log-driver"], "local", "{daemon}");
    assert_eq!(
        daemon["log-opts"],
        serde_json::json!({"max-size": "5m", "max-file": "2"}),
        "{daemon}"
    );
    // [docker.daemon] sets log keys: the built-in defaults stay out.
    assert_ne!(daemon["log-driver"], "json-file");
    assert_docker_ready(&host);
    let info = host.sh_ok(
        "docker info --format '{{json .RegistryConfig.Mirrors}} {{.LoggingDriver}} {{.LiveRestoreEnabled}}'",
    );
    assert_eq!(
        info.trim(),
        "[\"http://127.0.0.1:5000/\"] local true",
        "the running dockerd reads the file"
    );
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    let good = host.read(DAEMON_JSON);
    let pid = docker_pid(&host);

    // `hosts` beside docker.service's `-H fd://`: refused before any change.
    host.write(
        PROFILE,
        &profile("hosts = [\"unix:///var/run/docker.sock\"]\n"),
    );
    let refused = host.apply(&[], None);
    assert_eq!(refused.code(), Some(1), "{}", refused.transcript());
    let preflight = refused.step("preflight");
    let reason = preflight["reason"].as_str().unwrap_or_default();
    assert!(
        preflight["status"] == "failed"
            && reason.contains("`hosts`")
            && reason.contains("-H fd://")
            && reason.contains("/lib/systemd/system/docker.service"),
        "{}",
        refused.transcript()
    );
    assert_eq!(host.read(DAEMON_JSON), good, "daemon.json changed");
    assert_eq!(docker_pid(&host), pid, "docker restarted");

    // A key dockerd 20.10 does not know: plan shows the diff and restarts
    // nothing; apply writes it, dockerd refuses to start, the file is
    // rolled back and Docker started again.
    host.write(PROFILE, &profile("no-such-option = true\n"));
    let plan = host.tool(&["plan", "--detailed-exitcode"], None);
    assert_eq!(plan.code(), Some(2), "{}", plan.transcript());
    assert!(
        plan.stdout.contains("+  \"no-such-option\": true"),
        "{}",
        plan.transcript()
    );
    assert_eq!(docker_pid(&host), pid, "plan restarted docker");
    let broken = host.apply(&[], None);
    assert_eq!(broken.code(), Some(1), "{}", broken.transcript());
    let step = broken.step("docker-daemon");
    let reason = step["reason"].as_str().unwrap_or_default();
    assert!(
        step["status"] == "failed"
            && reason.contains(
                "the following directives don't match any configuration option: no-such-option"
            )
            && reason.contains("rolled back"),
        "the step fails quoting dockerd and says it rolled back\n{}",
        broken.transcript()
    );
    assert_eq!(
        host.read(DAEMON_JSON),
        good,
        "daemon.json is not what it was"
    );
    assert_eq!(
        host.sh("systemctl is-active docker").stdout.trim(),
        "active",
        "docker is not running again"
    );
    assert!(
        host.sh("docker info --format '{{.LoggingDriver}}'")
            .stdout
            .contains("local")
    );

    // The good profile again: nothing to change, Docker as before.
    host.write(PROFILE, &profile(""));
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    assert_eq!(host.read(DAEMON_JSON), good);
}
