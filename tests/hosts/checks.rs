//! Assertions about a provisioned host, read from outside the container
//! (its files through its root directory) or by commands run inside it.

use crate::harness::{Container, STAND_IN_LOG, URL};

/// The `[[runners]]` tables of the host's config.toml.
pub fn runners(host: &Container) -> Vec<toml::Table> {
    let text = host.read("/etc/gitlab-runner/config.toml");
    let config: toml::Table = toml::from_str(&text)
        .unwrap_or_else(|e| panic!("config.toml is not valid TOML ({e}):\n{text}"));
    match config.get("runners") {
        Some(toml::Value::Array(runners)) => runners
            .iter()
            .map(|r| r.as_table().expect("[[runners]] is a table").clone())
            .collect(),
        _ => Vec::new(),
    }
}

/// The `environment` list of a runner table.
pub fn environment(runner: &toml::Table) -> Vec<String> {
    match runner.get("environment") {
        Some(toml::Value::Array(vars)) => vars
            .iter()
            .map(|v| {
                v.as_str()
                    .expect("environment entries are strings")
                    .to_string()
            })
            .collect(),
        _ => Vec::new(),
    }
}

pub fn host_name(host: &Container) -> String {
    host.sh_ok("hostname").trim().to_string()
}

/// Everything issue 3 asks of a provisioned host, with exactly one runner
/// registered for URL under the host's name.
/// `runner_installed_by_tool`: the tool installed gitlab-runner (from the
/// local repository) rather than finding it installed.
pub fn assert_provisioned(host: &Container, runner_installed_by_tool: bool) {
    let status = host.sh_ok("dpkg-query -W -f '${Status}' gitlab-runner");
    assert_eq!(status, "install ok installed", "gitlab-runner package");
    if runner_installed_by_tool {
        let policy = host.sh_ok("apt-cache policy gitlab-runner");
        assert!(
            policy.contains("/srv/runner-repo"),
            "gitlab-runner does not come from the local repository:\n{policy}"
        );
    }

    // Registered once.
    let runners = runners(host);
    assert_eq!(
        runners.len(),
        1,
        "expected exactly one [[runners]]:\n{}",
        host.read("/etc/gitlab-runner/config.toml")
    );
    let runner = &runners[0];
    assert_eq!(runner.get("url").and_then(|v| v.as_str()), Some(URL));
    let name = host_name(host);
    assert_eq!(
        runner.get("name").and_then(|v| v.as_str()),
        Some(name.as_str()),
        "runner name defaults to the host name"
    );
    assert_eq!(
        runner.get("executor").and_then(|v| v.as_str()),
        Some("shell")
    );
    assert_docker_driver_everywhere(host);
    assert_eq!(
        host.mode("/etc/gitlab-runner/config.toml"),
        0o600,
        "config.toml holds the runner token: mode 0600"
    );

    assert_docker_ready(host);

    // overlay: "loaded" here means listed in /proc/filesystems (built in).
    let modules = host.read("/etc/modules");
    assert!(
        modules.lines().any(|l| l.trim() == "overlay"),
        "/etc/modules does not list overlay:\n{modules}"
    );
    assert!(host.sh_ok("cat /proc/filesystems").contains("overlay"));
}

/// `DOCKER_DRIVER=overlay2` in every runner's environment.
pub fn assert_docker_driver_everywhere(host: &Container) {
    let runners = runners(host);
    assert!(!runners.is_empty(), "no [[runners]] in config.toml");
    for runner in &runners {
        let env = environment(runner);
        assert!(
            env.iter().any(|v| v == "DOCKER_DRIVER=overlay2"),
            "runner {:?} lacks DOCKER_DRIVER=overlay2 (environment {env:?}):\n{}",
            runner.get("name"),
            host.read("/etc/gitlab-runner/config.toml")
        );
    }
}

/// Docker enabled and running under systemd, its storage driver set in
/// daemon.json, gitlab-runner in group docker, and `docker info` as
/// gitlab-runner (login environment) answering with overlay2.
pub fn assert_docker_ready(host: &Container) {
    assert_eq!(
        host.sh("systemctl is-active docker").stdout.trim(),
        "active"
    );
    assert_eq!(
        host.sh("systemctl is-enabled docker").stdout.trim(),
        "enabled"
    );
    let daemon: serde_json::Value =
        serde_json::from_str(&host.read("/etc/docker/daemon.json")).expect("daemon.json is JSON");
    assert_eq!(
        daemon["storage-driver"], "overlay2",
        "daemon.json: {daemon}"
    );
    let groups = host.sh_ok("id -nG gitlab-runner");
    assert!(
        groups.split_whitespace().any(|g| g == "docker"),
        "gitlab-runner is not in group docker: {groups}"
    );
    let info = host.sh("runuser -l gitlab-runner -c 'docker info --format {{.Driver}}'");
    assert!(
        info.status.success(),
        "docker info as gitlab-runner failed\n{}",
        info.transcript()
    );
    assert_eq!(info.stdout.trim(), "overlay2");
}

/// `apply` again: zero changes, every managed file byte-identical.
pub fn assert_second_apply_changes_nothing(host: &Container, token: Option<&str>) {
    let before = host.managed();
    let again = host.apply(&[], token);
    again.assert_converged("second apply");
    before.assert_same(&host.managed(), "second apply");
}

/// The stand-in's invocation records (STAND_IN_LOG), oldest first.
pub fn stand_in_calls(host: &Container) -> Vec<serde_json::Value> {
    let path = host.path(STAND_IN_LOG);
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("stand-in log line ({e}): {l}")))
        .collect()
}

/// The stand-in's records of `gitlab-runner register`.
pub fn registrations(host: &Container) -> Vec<serde_json::Value> {
    stand_in_calls(host)
        .into_iter()
        .filter(|call| call["argv"][1] == "register")
        .collect()
}

/// The last registration got its token in env `var`, and none ever on argv.
pub fn assert_registration_env(host: &Container, var: &str) {
    let registrations = registrations(host);
    let last = registrations
        .last()
        .unwrap_or_else(|| panic!("the stand-in recorded no `gitlab-runner register`"));
    assert_eq!(last["token_env"], var, "token channel of {last}");
    for call in &registrations {
        let argv = call["argv"].to_string();
        for secret in [crate::LEGACY_TOKEN, crate::GLRT_TOKEN] {
            assert!(!argv.contains(secret), "token on register's argv: {argv}");
        }
    }
}
