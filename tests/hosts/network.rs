//! Issue 11's scenarios: a corporate network inside the container, on its
//! own loopback only (the container has no other interface): a forward
//! proxy (tinyproxy, with a password), an apt mirror that answers only
//! requests that came through it (tinyproxy's `Via` header), the runner
//! repository over HTTP, and a
//! GitLab-like HTTPS endpoint (`gitlab.corp.test` in /etc/hosts) whose
//! certificate an openssl-made CA signed, which the stand-in's `register`
//! really contacts and verifies.

use crate::checks::{self, assert_second_apply_changes_nothing};
use crate::harness::{self, Container, PROFILE};
use crate::{GLRT_TOKEN, LEGACY_TOKEN};

const SERVER: &str = include_str!("fixtures/corp_server.py");
const PASSWORD: &str = "Pr0xy-LeakCanary-93c1";
const PROXY: &str = "127.0.0.1:3128";
const GITLAB: &str = "https://gitlab.corp.test:8443/";
/// GitLab Runner cuts the port off: this is the file it reads.
const RUNNER_CA: &str = "/etc/gitlab-runner/certs/gitlab.corp.test.crt";

/// Files of the network step, byte for byte around a converged run.
const NETWORK_FILES: &[&str] = &[
    "/etc/apt/apt.conf.d",
    "/etc/runner-provision",
    "/etc/gitlab-runner/certs",
    "/etc/systemd/system/gitlab-runner.service.d",
    "/etc/systemd/system/docker.service.d",
    "/etc/docker/certs.d/registry.corp.test:5050",
];

/// Installs the servers' packages from the local mirror, makes a CA and a
/// server certificate for gitlab.corp.test, and starts the HTTPS endpoint.
fn corp_base(host: &Container, packages: &str) {
    host.write("/root/corp/corp_server.py", SERVER);
    host.sh_ok(&format!(
        "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends {packages} >/dev/null"
    ));
    host.sh_ok(
        "echo '127.0.0.1 mirror.corp.test runner-repo.corp.test gitlab.corp.test' >>/etc/hosts",
    );
    host.sh_ok(
        "set -e; mkdir -p /var/log/corp /etc/ssl/corp; cd /root/corp
         openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout ca.key -out ca.pem -subj '/CN=Corp Test Root CA' -days 2 2>/dev/null
         openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
           -keyout server.key -out server.csr -subj '/CN=gitlab.corp.test' 2>/dev/null
         printf 'subjectAltName=DNS:gitlab.corp.test\\nbasicConstraints=CA:FALSE\\n' >ext
         openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
           -out server.pem -days 2 -extfile ext 2>/dev/null
         cp ca.pem /etc/ssl/corp/root.pem
         systemd-run --unit=corp-gitlab python3 /root/corp/corp_server.py --port 8443 \
           --tls /root/corp/server.pem /root/corp/server.key --log /var/log/corp/gitlab.log",
    );
    wait_for_port(host, 8443);
}

fn wait_for_port(host: &Container, port: u16) {
    host.exec(&[
        "python3",
        "-c",
        &format!(
            "import socket, time\nfor _ in range(100):\n    try:\n        socket.create_connection(('127.0.0.1', {port}), 1)\n        break\n    except OSError:\n        time.sleep(0.1)\nelse:\n    raise SystemExit('nothing listens on port {port}')"
        ),
    ])
    .assert_success(&format!("waiting for port {port}"));
}

/// A profile: the test repositories, this GitLab, and `network` as given.
fn profile(repository_uri: &str, network: &str) -> String {
    format!(
        r#"description = "network scenarios"
[runner]
url = "{GITLAB}"
[runner.repository]
uri = "{repository_uri}"
suite = "./"
components = ""
key_url = ""
[docker]
accept_group_risk = true
verify_timeout = 60
{network}"#
    )
}

fn proxy_network(port: u16, ca_file: &str) -> String {
    format!(
        r#"[network]
http_proxy = "http://build:{PASSWORD}@127.0.0.1:{port}"
https_proxy = "http://build:{PASSWORD}@127.0.0.1:{port}"
no_proxy = ["localhost"]
ca_files = ["{ca_file}"]
ca_registries = ["registry.corp.test:5050"]
"#
    )
}

fn assert_no_password(run: &harness::Run, what: &str) {
    assert!(
        !run.stdout.contains(PASSWORD) && !run.stderr.contains(PASSWORD),
        "{what}: the proxy password is in the output\n{}",
        run.transcript()
    );
}

fn main_pid(host: &Container, unit: &str) -> String {
    host.sh_ok(&format!("systemctl show -p MainPID --value {unit}"))
        .trim()
        .to_string()
}

fn environ(host: &Container, unit: &str) -> String {
    let pid = main_pid(host, unit);
    host.sh_ok(&format!("tr '\\0' '\\n' </proc/{pid}/environ"))
}

/// Proxy: every layer goes through tinyproxy (with a password); the mirror
/// refuses anything else. A second apply changes nothing; removing
/// [network] takes it all back.
pub fn proxy() {
    let Some(tier) = harness::tier() else { return };
    let started = std::time::Instant::now();
    let host = tier.boot("rp-net-proxy");
    corp_base(&host, "tinyproxy python3 openssl");
    host.write(
        "/root/corp/tinyproxy.conf",
        &format!(
            "User tinyproxy\nGroup tinyproxy\nPort 3128\nListen 127.0.0.1\nTimeout 60\n\
             LogFile \"/var/log/corp/proxy.log\"\nLogLevel Connect\nMaxClients 20\n\
             Allow 127.0.0.1\nBasicAuth build {PASSWORD}\n"
        ),
    );
    host.sh_ok(
        "set -e; systemctl stop tinyproxy; systemctl disable -q tinyproxy
         touch /var/log/corp/proxy.log; chown tinyproxy /var/log/corp/proxy.log
         systemd-run --unit=corp-proxy tinyproxy -d -c /root/corp/tinyproxy.conf
         systemd-run --unit=corp-mirror python3 /root/corp/corp_server.py --port 8080 \\
           --root /srv/debian --require-via --log /var/log/corp/mirror.log
         systemd-run --unit=corp-repo python3 /root/corp/corp_server.py --port 8081 \\
           --root /srv/runner-repo --log /var/log/corp/runner-repo.log
         echo 'deb [trusted=yes] http://mirror.corp.test:8080/ ./' >/etc/apt/sources.list
         rm -rf /var/lib/apt/lists/*",
    );
    for port in [3128, 8080, 8081] {
        wait_for_port(&host, port);
    }
    // Reachable only as configured: apt without the proxy is refused.
    let direct = host.sh("apt-get update -q 2>&1");
    assert!(
        direct.stdout.contains("403"),
        "the mirror must refuse requests that bypass the proxy\n{}",
        direct.transcript()
    );
    host.sh_ok("rm -rf /var/lib/apt/lists/*");

    let repo = "http://runner-repo.corp.test:8081/";
    // Bad input, before any change: a CA file that is not PEM, a proxy that
    // does not answer.
    let before = host.managed();
    host.sh_ok("openssl x509 -in /etc/ssl/corp/root.pem -outform der -out /etc/ssl/corp/root.der");
    host.write(
        PROFILE,
        &profile(repo, &proxy_network(3128, "/etc/ssl/corp/root.der")),
    );
    let bad = host.apply(&[], Some(LEGACY_TOKEN));
    assert_eq!(bad.code(), Some(1), "{}", bad.transcript());
    let text = format!("{}{}", bad.stdout, bad.stderr);
    assert!(
        text.contains("/etc/ssl/corp/root.der"),
        "{}",
        bad.transcript()
    );
    assert!(text.contains("no PEM certificate"), "{}", bad.transcript());
    assert_no_password(&bad, "non-PEM CA");
    host.write(
        PROFILE,
        &profile(repo, &proxy_network(3999, "/etc/ssl/corp/root.pem")),
    );
    let bad = host.apply(&[], Some(LEGACY_TOKEN));
    assert_eq!(bad.code(), Some(1), "{}", bad.transcript());
    assert!(
        bad.stdout
            .contains("the proxy 127.0.0.1:3999 does not answer"),
        "{}",
        bad.transcript()
    );
    assert_no_password(&bad, "unreachable proxy");
    before.assert_same(&host.managed(), "refused runs");
    assert!(
        !host.path(RUNNER_CA).exists(),
        "nothing written before the refusal"
    );

    // The real thing.
    host.write(
        PROFILE,
        &profile(repo, &proxy_network(3128, "/etc/ssl/corp/root.pem")),
    );
    let plan = host.tool(&["plan"], Some(LEGACY_TOKEN));
    assert!(
        plan.stdout.contains("+Acquire::https::Proxy"),
        "{}",
        plan.transcript()
    );
    assert_no_password(&plan, "plan with diffs");
    let first = host.apply(&[], Some(LEGACY_TOKEN));
    first.assert_applied("apply behind the proxy");
    assert_no_password(&first, "apply");
    // Provisioned as anywhere else (the runner repository is the HTTP one here).
    checks::assert_docker_ready(&host);
    checks::assert_docker_driver_everywhere(&host);
    assert_eq!(checks::registrations(&host).len(), 1, "registered once");

    let log = host.read("/var/log/corp/proxy.log");
    for wanted in [
        "GET http://mirror.corp.test:8080/",      // apt
        "CONNECT runner-repo.corp.test:8081",     // the tool's repository probe (ureq tunnels)
        "GET http://runner-repo.corp.test:8081/", // apt, the runner repository
        "CONNECT gitlab.corp.test:8443",          // gitlab-runner register
    ] {
        assert!(log.contains(wanted), "proxy log lacks {wanted:?}:\n{log}");
    }
    assert!(!log.contains(PASSWORD));
    let gitlab = host.read("/var/log/corp/gitlab.log");
    assert!(
        gitlab.contains("POST /api/v4/runners via=no"),
        "TLS tunnel to GitLab: {gitlab}"
    );
    let config = host.read("/etc/gitlab-runner/config.toml");
    assert!(
        config.contains(&format!("tls-ca-file = \"{RUNNER_CA}\"")),
        "{config}"
    );
    assert!(
        host.read(RUNNER_CA)
            .ends_with(&host.read("/etc/ssl/corp/root.pem"))
    );
    let info = host.sh_ok("docker info --format '{{.HTTPProxy}} {{.HTTPSProxy}} {{.NoProxy}}'");
    assert_eq!(
        info.trim(),
        "http://xxxxx:xxxxx@127.0.0.1:3128 http://xxxxx:xxxxx@127.0.0.1:3128 localhost",
        "docker info reports the proxy (credentials masked by Docker)"
    );
    assert_eq!(
        host.read("/etc/docker/certs.d/registry.corp.test:5050/ca.crt"),
        host.read(RUNNER_CA)
    );
    assert!(
        environ(&host, "gitlab-runner")
            .contains(&format!("HTTPS_PROXY=http://build:{PASSWORD}@{PROXY}")),
        "the runner service has the proxy"
    );
    assert_eq!(host.mode("/etc/runner-provision/network.env"), 0o600);
    host.sh_ok("apt-get update -q >/dev/null");
    let verify = host.tool(&["--output", "json", "verify"], None);
    verify.assert_success("verify behind the proxy");
    let network = verify
        .events()
        .into_iter()
        .find(|e| e["event"] == "step_checked" && e["id"] == "network")
        .unwrap_or_else(|| panic!("no network check\n{}", verify.transcript()));
    let details = &network["details"];
    for (layer, wanted) in [
        ("apt_proxy", serde_json::json!(true)),
        ("gitlab_runner_proxy", serde_json::json!("yes")),
        ("dockerd_proxy", serde_json::json!("yes")),
        (
            "gitlab_runner_ca",
            serde_json::json!(format!("yes ({RUNNER_CA})")),
        ),
        ("gitlab_tls", serde_json::json!("trusted")),
    ] {
        assert_eq!(details[layer], wanted, "verify's {layer}: {network}");
    }
    assert_no_password(&verify, "verify");

    // Converged: zero changes, files byte-identical, no restart.
    let files = host.snapshot(NETWORK_FILES);
    let pids = (main_pid(&host, "gitlab-runner"), main_pid(&host, "docker"));
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    files.assert_same(&host.snapshot(NETWORK_FILES), "second apply");
    assert_eq!(
        pids,
        (main_pid(&host, "gitlab-runner"), main_pid(&host, "docker")),
        "no restart"
    );

    // [network] removed: the tool's files go, the services lose the proxy;
    // gitlab-runner stops on SIGQUIT (graceful), not SIGTERM.
    host.write(PROFILE, &profile(repo, ""));
    let removed = host.apply(&[], Some(LEGACY_TOKEN));
    removed.assert_applied("apply without [network]");
    assert_eq!(
        removed.step("network")["status"],
        "changed",
        "{}",
        removed.transcript()
    );
    for gone in [
        "/etc/apt/apt.conf.d/90runner-provision-network",
        "/etc/runner-provision/network.env",
        "/etc/runner-provision/ca.pem",
        RUNNER_CA,
        "/etc/systemd/system/docker.service.d/runner-provision-network.conf",
        "/etc/docker/certs.d/registry.corp.test:5050/ca.crt",
    ] {
        assert!(!host.path(gone).exists(), "{gone} was left behind");
    }
    let info = host.sh_ok("docker info --format '{{.HTTPSProxy}}'");
    assert_eq!(info.trim(), "", "dockerd restarted without the proxy");
    assert!(!environ(&host, "gitlab-runner").contains("HTTPS_PROXY="));
    let journal = host.sh_ok("journalctl -u gitlab-runner --no-pager -o cat");
    assert!(
        journal.contains("Starting graceful shutdown") && journal.contains("StopSignal=sigquit"),
        "stopped gracefully:\n{journal}"
    );
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    eprintln!(
        "scenario network_proxy: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Internal CA: registration against a GitLab whose certificate an internal
/// CA signed fails with a clear certificate error until the CA is given;
/// then it registers, and a new CA is a change shown in plan.
pub fn internal_ca() {
    let Some(tier) = harness::tier() else { return };
    let started = std::time::Instant::now();
    let host = tier.boot("rp-net-ca");
    corp_base(&host, "python3 openssl");
    let apply = |token: &str| {
        host.tool(
            &[
                "--output",
                "json",
                "apply",
                "--only",
                "network,runner-install,runner-register",
            ],
            Some(token),
        )
    };

    host.write(PROFILE, &profile("file:/srv/runner-repo/", ""));
    let untrusted = apply(GLRT_TOKEN);
    assert_eq!(untrusted.code(), Some(1), "{}", untrusted.transcript());
    let reason = untrusted.step("runner-register")["reason"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        reason.starts_with(&format!(
            "GitLab at {GITLAB} presents a TLS certificate this host does not trust (certificate signed by unknown authority): put your CA certificate (PEM) in [network] ca_files"
        )),
        "{}",
        untrusted.transcript()
    );
    assert!(checks::runners(&host).is_empty(), "nothing registered");
    assert!(
        !host.path("/var/log/corp/gitlab.log").exists(),
        "the handshake failed before any request"
    );

    let network = "[network]\nca_files = [\"/etc/ssl/corp/root.pem\"]\n";
    host.write(PROFILE, &profile("file:/srv/runner-repo/", network));
    let plan = host.tool(&["plan", "--only", "network"], None);
    assert!(
        plan.stdout.contains(&format!("+++ b{RUNNER_CA}")),
        "{}",
        plan.transcript()
    );
    let trusted = apply(GLRT_TOKEN);
    trusted.assert_applied("apply with the CA");
    assert_eq!(trusted.step("runner-register")["status"], "changed");
    checks::assert_registration_env(&host, "CI_SERVER_TOKEN");
    let gitlab = host.read("/var/log/corp/gitlab.log");
    assert!(
        gitlab.contains("POST /api/v4/runners/verify via=no"),
        "{gitlab}"
    );
    // GitLab Runner finds the CA in its certificate folder by the host name
    // without the port, also without --tls-ca-file.
    host.sh_ok(&format!(
        "REGISTRATION_TOKEN={LEGACY_TOKEN} gitlab-runner register -n --url {GITLAB} \
         --executor shell --name by-hand --config /root/by-hand.toml >/dev/null 2>&1"
    ));
    assert!(
        host.read("/var/log/corp/gitlab.log")
            .contains("POST /api/v4/runners via=no")
    );

    let files = host.snapshot(NETWORK_FILES);
    let again = apply(GLRT_TOKEN);
    again.assert_converged("second apply");
    files.assert_same(&host.snapshot(NETWORK_FILES), "second apply");

    // A new CA file content is a change shown in plan, never silent.
    host.sh_ok(
        "cd /root/corp && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
         -keyout ca2.key -out /etc/ssl/corp/root.pem -subj '/CN=Corp Test Root CA 2' -days 2 2>/dev/null",
    );
    let plan = host.tool(&["plan", "--detailed-exitcode", "--only", "network"], None);
    assert_eq!(plan.code(), Some(2), "{}", plan.transcript());
    assert!(
        plan.stdout.contains(&format!("write {RUNNER_CA}")),
        "{}",
        plan.transcript()
    );
    assert!(
        plan.stdout.contains(&format!("+++ b{RUNNER_CA}")),
        "the certificate's diff: {}",
        plan.transcript()
    );
    eprintln!(
        "scenario network_internal_ca: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
