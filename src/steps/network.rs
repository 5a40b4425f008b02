//! network: the profile's `[network]` (proxy and CA certificates) wherever
//! a runner host needs it: apt, GitLab Runner's certificate folder, the
//! runner service's and dockerd's environment, Docker's per-registry
//! certificates and, when asked, the system trust store. Registration and
//! the tool's own HTTP read the same settings (see runner-register and
//! [`configure_host`]).
//!
//! Every file it writes starts with [`network::MARKER`]; with `[network]`
//! emptied, the files that carry it are removed again, and nothing else.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};

use super::{Change, Mode, Settings, State, Step, StepId, require_tool};
use crate::edit::network::{self, MARKER, Proxy};
use crate::edit::{diff, pem};
use crate::host::Host;
use crate::host::command::Cmd;
use crate::host::http::HttpNetwork;

const ID: StepId = StepId::Network;

pub struct Network;

pub const ENV_FILE: &str = "/etc/runner-provision/network.env";
pub const CA_BUNDLE: &str = "/etc/runner-provision/ca.pem";
pub const APT_CONF: &str = "/etc/apt/apt.conf.d/90runner-provision-network";
pub const RUNNER_CERTS: &str = "/etc/gitlab-runner/certs";
const DOCKER_CERTS: &str = "/etc/docker/certs.d";
const SYSTEM_STORE: &str = "/usr/local/share/ca-certificates";
const SYSTEM_PREFIX: &str = "runner-provision-";
const DROP_IN: &str = "runner-provision-network.conf";

/// Which part of the host a file configures (what must be told after it changed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layer {
    Apt,
    Runner,
    Docker,
    SystemStore,
    /// The shared environment file: both services.
    Services,
}

struct Managed {
    path: String,
    /// `None`: should not exist (removed only when it is the tool's).
    content: Option<String>,
    mode: u32,
    layer: Layer,
}

pub fn proxy(settings: &Settings) -> Proxy {
    proxy_of(&settings.profile.network)
}

/// The proxy settings of a `[network]` section.
pub fn proxy_of(n: &crate::profile::Network) -> Proxy {
    Proxy {
        http: n.http_proxy.clone(),
        https: n.https_proxy.clone(),
        no_proxy: n.no_proxy.clone(),
    }
}

/// The certificate blocks of every `ca_files` entry, read from the host.
pub fn certificates(host: &Host, settings: &Settings) -> Result<Vec<String>> {
    let mut all: Vec<String> = Vec::new();
    for path in &settings.profile.network.ca_files {
        // Bytes, not text: a DER file gets the "not PEM" advice, not "not UTF-8".
        let bytes = host
            .files
            .read_bytes(path)?
            .ok_or_else(|| anyhow::anyhow!("[network] ca_files: {path} does not exist; copy the CA certificate (PEM) there or fix the path"))?;
        let text = String::from_utf8_lossy(&bytes);
        let blocks = pem::certificates(&text, path).context("[network] ca_files")?;
        for block in blocks {
            if !all.contains(&block) {
                all.push(block);
            }
        }
    }
    Ok(all)
}

/// The GitLab URL's file in GitLab Runner's certificate folder, when a CA is set.
pub fn runner_ca_file(settings: &Settings) -> Option<String> {
    if settings.profile.network.ca_files.is_empty() {
        return None;
    }
    network::certs_dir_host(settings.profile.gitlab_url())
        .map(|h| format!("{RUNNER_CERTS}/{h}.crt"))
}

/// Validates `[network]` against the host and points the tool's own HTTP
/// at the proxy and CA. Runs in preflight, whatever steps are selected.
pub fn configure_host(host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
    let n = &settings.profile.network;
    let certs = certificates(host, settings)?;
    host.use_network(HttpNetwork {
        http_proxy: n.http_proxy.clone(),
        https_proxy: n.https_proxy.clone(),
        no_proxy: n.no_proxy.clone(),
        ca_certificates: certs,
    });
    if host.live && mode != Mode::Verify {
        let mut seen = Vec::new();
        for url in [&n.http_proxy, &n.https_proxy] {
            if url.is_empty() || seen.contains(&url) {
                continue;
            }
            seen.push(url);
            let parsed =
                network::parse_proxy(url).map_err(|e| anyhow::anyhow!("[network] proxy: {e}"))?;
            if let Err(e) = host.connect(&parsed.host, parsed.port, Duration::from_secs(5)) {
                let e = e.context(format!(
                    "the proxy {}:{} does not answer: check [network] http_proxy / https_proxy and that the proxy runs",
                    parsed.host, parsed.port
                ));
                if mode == Mode::Plan {
                    host.warn(ID.as_str(), &format!("apply will fail: {e:#}"));
                } else {
                    return Err(e);
                }
            }
        }
    }
    Ok(())
}

/// Every file the step manages, as it should be.
fn wanted(host: &Host, settings: &Settings) -> Result<Vec<Managed>> {
    let n = &settings.profile.network;
    let proxy = proxy(settings);
    let certs = certificates(host, settings)?;
    let bundle = (!certs.is_empty()).then(|| network::ca_bundle(&certs));
    let mut files = Vec::new();
    let mut add = |path: String, content: Option<String>, mode: u32, layer: Layer| {
        files.push(Managed {
            path,
            content,
            mode,
            layer,
        });
    };
    let proxied = !proxy.is_empty();
    // The proxy URL may hold a password: the environment file is root's only.
    add(
        ENV_FILE.to_string(),
        proxied.then(|| network::environment_file(&proxy)),
        0o600,
        Layer::Services,
    );
    for (service, layer) in [("gitlab-runner", Layer::Runner), ("docker", Layer::Docker)] {
        add(
            format!("/etc/systemd/system/{service}.service.d/{DROP_IN}"),
            proxied.then(|| network::service_drop_in(ENV_FILE)),
            0o644,
            layer,
        );
    }
    add(CA_BUNDLE.to_string(), bundle.clone(), 0o644, Layer::Apt);
    let ca_hosts: Vec<String> = settings
        .profile
        .runner
        .repository
        .as_ref()
        .filter(|_| bundle.is_some())
        .and_then(|r| r.uri.strip_prefix("https://"))
        .and_then(|rest| rest.split(['/', ':']).next())
        .filter(|h| !h.is_empty() && !h.contains('{'))
        .map(|h| vec![h.to_string()])
        .unwrap_or_default();
    let apt =
        (proxied || !ca_hosts.is_empty()).then(|| network::apt_conf(&proxy, &ca_hosts, CA_BUNDLE));
    add(APT_CONF.to_string(), apt, 0o644, Layer::Apt);

    // GitLab Runner's certificate folder: this URL's file; other files of ours go.
    let runner_file = runner_ca_file(settings);
    if let Some(path) = &runner_file {
        add(path.clone(), bundle.clone(), 0o644, Layer::Runner);
    }
    for name in host.files.list(RUNNER_CERTS)? {
        let path = format!("{RUNNER_CERTS}/{name}");
        if Some(&path) != runner_file.as_ref() {
            add(path, None, 0o644, Layer::Runner);
        }
    }
    // Docker: ca.crt for each registry named; others of ours go.
    let registry_files: Vec<String> = n
        .ca_registries
        .iter()
        .map(|r| format!("{DOCKER_CERTS}/{r}/ca.crt"))
        .collect();
    for path in &registry_files {
        add(path.clone(), bundle.clone(), 0o644, Layer::Docker);
    }
    for dir in host.files.list(DOCKER_CERTS)? {
        if !host.files.is_dir(&format!("{DOCKER_CERTS}/{dir}")) {
            continue;
        }
        let path = format!("{DOCKER_CERTS}/{dir}/ca.crt");
        if !registry_files.contains(&path) {
            add(path, None, 0o644, Layer::Docker);
        }
    }
    // The system store wants one certificate per file; ours go by name.
    let system: Vec<String> = if n.install_ca_system_wide {
        certs.clone()
    } else {
        Vec::new()
    };
    let names: Vec<String> = (1..=system.len())
        .map(|i| format!("{SYSTEM_STORE}/{SYSTEM_PREFIX}{i}.crt"))
        .collect();
    for (path, cert) in names.iter().zip(&system) {
        add(path.clone(), Some(cert.clone()), 0o644, Layer::SystemStore);
    }
    for name in host.files.list(SYSTEM_STORE)? {
        let path = format!("{SYSTEM_STORE}/{name}");
        if name.starts_with(SYSTEM_PREFIX) && name.ends_with(".crt") && !names.contains(&path) {
            add(path, None, 0o644, Layer::SystemStore);
        }
    }
    Ok(files)
}

/// Is the file at `path` one the tool wrote (so it may remove it)?
fn ours(path: &str, text: &str) -> bool {
    path.starts_with(&format!("{SYSTEM_STORE}/{SYSTEM_PREFIX}"))
        || text.lines().take(1).any(|l| l.contains(MARKER))
}

/// (file, current text, wanted text) for each file that must change.
fn pending_files(
    host: &Host,
    settings: &Settings,
) -> Result<Vec<(Managed, String, Option<String>)>> {
    let mut out = Vec::new();
    for file in wanted(host, settings)? {
        let current = host.files.read(&file.path)?;
        match (&file.content, current) {
            (Some(want), Some(have)) if *want == have => {}
            (Some(_), current) => {
                let current = current.unwrap_or_default();
                let want = file.content.clone();
                out.push((file, current, want));
            }
            (None, Some(have)) if ours(&file.path, &have) => out.push((file, have, None)),
            (None, _) => {}
        }
    }
    Ok(out)
}

/// The processes among `pids` whose environment lacks a proxy variable of
/// the profile (a service started before its drop-in was written).
fn stale_processes(host: &Host, settings: &Settings, pids: &[u32]) -> Result<Vec<u32>> {
    // Only systemd gives a service the drop-in's environment (and an
    // offline root has no systemd running: `os.systemd` is false there).
    if !host.os.systemd {
        return Ok(Vec::new());
    }
    let wanted = proxy(settings).variables();
    let mut stale = Vec::new();
    for pid in pids {
        let Some(env) = host.process_environment(*pid)? else {
            continue;
        };
        let has = |k: &str, v: &str| env.iter().any(|(ek, ev)| ek == k && ev == v);
        let missing = wanted.iter().any(|(k, v)| !has(k, v));
        if missing {
            stale.push(*pid);
        }
    }
    Ok(stale)
}

fn runner_pids(host: &Host) -> Result<Vec<u32>> {
    Ok(host
        .processes("gitlab-runner")?
        .iter()
        .map(|p| p.pid)
        .collect())
}

fn docker_pids(host: &Host) -> Result<Vec<u32>> {
    let Some(text) = host.files.read("/run/docker.pid")? else {
        return Ok(Vec::new());
    };
    Ok(text
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|_| {
            host.pidfile_running("/run/docker.pid", "dockerd")
                .unwrap_or(false)
        })
        .into_iter()
        .collect())
}

impl Step for Network {
    fn preflight(&self, host: &Host, settings: &Settings, _mode: Mode) -> Result<()> {
        if settings.profile.network.install_ca_system_wide {
            require_tool(host, "update-ca-certificates", "ca-certificates")?;
        }
        wanted(host, settings).map(drop)
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let mut changes = Vec::new();
        for (file, current, want) in pending_files(host, settings)? {
            let new = want.clone().unwrap_or_default();
            let verb = if want.is_none() { "remove" } else { "write" };
            changes.push(Change::file(
                format!("{verb} {} ({})", file.path, describe(file.layer)),
                diff::unified(&file.path, &current, &new),
            ));
        }
        if !proxy(settings).is_empty() {
            for (service, pids) in [
                ("gitlab-runner", runner_pids(host)?),
                ("docker", docker_pids(host)?),
            ] {
                let stale = stale_processes(host, settings, &pids)?;
                if !stale.is_empty() {
                    changes.push(Change::new(format!(
                        "restart {service}{}: it runs without the proxy (pid {})",
                        if service == "gitlab-runner" {
                            " gracefully (SIGQUIT: running jobs finish)"
                        } else {
                            ""
                        },
                        stale
                            .iter()
                            .map(u32::to_string)
                            .collect::<Vec<_>>()
                            .join(", ")
                    )));
                }
            }
        }
        Ok(State::from_changes(changes))
    }

    /// Per layer, whether it uses the proxy and trusts the CA (JSON
    /// `details`), and a TLS handshake with GitLab the way the tool's own
    /// HTTP makes it (through the proxy, with the CA).
    fn verify_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let state = self.check(host, settings)?;
        let n = &settings.profile.network;
        if n.is_empty() {
            return Ok(state);
        }
        let proxy = proxy(settings);
        let uses = |pids: &[u32]| -> Result<Value> {
            if !host.live || pids.is_empty() {
                return Ok(json!("not running"));
            }
            let stale = stale_processes(host, settings, pids)?;
            Ok(json!(if proxy.is_empty() {
                "no proxy configured"
            } else if stale.is_empty() {
                "yes"
            } else {
                "no: restart it (apply does)"
            }))
        };
        let ca = !n.ca_files.is_empty();
        let runner_ca = runner_ca_file(settings);
        let trusts = |path: Option<&str>| -> Result<Value> {
            Ok(match path {
                Some(path) if host.files.exists(path) => json!(format!("yes ({path})")),
                Some(path) => json!(format!("no: {path} is missing")),
                None => json!("no CA configured"),
            })
        };
        host.detail(
            "apt_proxy",
            json!(!proxy.is_empty() && host.files.exists(APT_CONF)),
        );
        host.detail("gitlab_runner_proxy", uses(&runner_pids(host)?)?);
        host.detail("gitlab_runner_ca", trusts(runner_ca.as_deref())?);
        host.detail("dockerd_proxy", uses(&docker_pids(host)?)?);
        let registries: Vec<Value> = n
            .ca_registries
            .iter()
            .map(|r| {
                let path = format!("{DOCKER_CERTS}/{r}/ca.crt");
                json!({"registry": r, "trusts_ca": host.files.exists(&path)})
            })
            .collect();
        host.detail("dockerd_registries", Value::Array(registries));
        host.detail(
            "system_store",
            json!(if n.install_ca_system_wide {
                "installed"
            } else {
                "not asked"
            }),
        );
        let url = settings.profile.gitlab_url();
        if host.live && ca && url.starts_with("https://") {
            match host.reachable(url, Duration::from_secs(15)) {
                Ok(()) => host.detail("gitlab_tls", json!("trusted")),
                Err(e) => {
                    let text = format!("{e:#}");
                    // An HTTP status came over the TLS connection: the
                    // handshake, which is what this checks, succeeded.
                    if text.contains("http status") {
                        host.detail("gitlab_tls", json!("trusted"));
                        return Ok(state);
                    }
                    if text.contains("certificate") || text.contains("UnknownIssuer") {
                        anyhow::bail!(
                            "GitLab at {url} presents a certificate the CA in [network] ca_files does not sign ({text}): give the CA that signed it"
                        );
                    }
                    host.detail("gitlab_tls", json!(format!("not checked: {text}")));
                }
            }
        }
        Ok(state)
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let mut done = Vec::new();
        let mut touched: Vec<Layer> = Vec::new();
        let mut units_changed = false;
        for (file, _, want) in pending_files(host, settings)? {
            match &want {
                Some(text) => {
                    let dir = file.path.rsplit_once('/').map_or("/", |(d, _)| d);
                    let dir_mode = if dir.starts_with("/etc/gitlab-runner")
                        || dir == "/etc/runner-provision"
                    {
                        0o700
                    } else {
                        0o755
                    };
                    host.files.create_dir(dir, dir_mode)?;
                    host.files
                        .write_atomic(&file.path, text.as_bytes(), file.mode)?;
                    done.push(format!("wrote {}", file.path));
                }
                None => {
                    host.files.remove(&file.path)?;
                    done.push(format!("removed {}", file.path));
                }
            }
            touched.push(file.layer);
            units_changed |= file.path.starts_with("/etc/systemd/");
        }
        let changed = |layer: Layer| touched.contains(&layer);
        if changed(Layer::SystemStore) {
            host.progress("update-ca-certificates");
            host.run(Cmd::new("update-ca-certificates").arg("--fresh"))?;
            done.push("updated the system trust store".to_string());
        }
        if !host.live {
            return Ok(done);
        }
        let systemd = host.os.systemd;
        let services_changed = changed(Layer::Services);
        // Only a drop-in is systemd's to read; certificates are the services'.
        if systemd && units_changed {
            host.run(Cmd::new("systemctl").arg("daemon-reload"))?;
        }
        let docker = docker_pids(host)?;
        let docker_stale = !stale_processes(host, settings, &docker)?.is_empty();
        if !docker.is_empty() && (services_changed || changed(Layer::Docker) || docker_stale) {
            host.progress("restarting docker");
            host.service("docker", "restart")
                .context("restarting docker for its proxy and certificates")?;
            done.push("restarted docker".to_string());
        }
        let runner = runner_pids(host)?;
        let runner_stale = !stale_processes(host, settings, &runner)?.is_empty();
        let runner_env_changed = services_changed || changed(Layer::Runner) && systemd;
        if !runner.is_empty() && (runner_env_changed || runner_stale) {
            let timeout = Duration::from_secs(settings.profile.runner.shutdown_timeout);
            if let Some(restarted) =
                host.restart_runner_gracefully(ID.as_str(), timeout, "with the new proxy settings")?
            {
                done.push(restarted);
            }
        }
        Ok(done)
    }
}

fn describe(layer: Layer) -> &'static str {
    match layer {
        Layer::Apt => "apt",
        Layer::Runner => "gitlab-runner",
        Layer::Docker => "dockerd",
        Layer::SystemStore => "system trust store",
        Layer::Services => "proxy for gitlab-runner and dockerd",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::report::{Counts, Format, Reporter};
    use crate::steps::{Selection, run};
    use crate::testing::FakeHost;

    const TOKEN: &str = "GR1348941legacyTokenValue42";
    const PASSWORD: &str = "Pr0xyPassw0rd";

    fn ca() -> String {
        // The test CA of edit::pem's tests.
        crate::edit::pem::tests_ca().to_string()
    }

    /// A proxy port on loopback where the fake machine accepts connections
    /// (preflight only checks that the proxy answers).
    fn listening(fake: &FakeHost) -> u16 {
        let port = 3128;
        fake.machine().listening.push(format!("127.0.0.1:{port}"));
        port
    }

    fn corporate(fake: &FakeHost, port: u16) -> Settings {
        let mut settings = fake.settings(Some(TOKEN));
        settings.profile.runner.url = "https://gitlab.corp.example:8443/".to_string();
        let n = &mut settings.profile.network;
        n.http_proxy = format!("http://build:{PASSWORD}@127.0.0.1:{port}");
        n.https_proxy = n.http_proxy.clone();
        n.no_proxy = vec!["localhost".to_string(), ".corp.example".to_string()];
        n.ca_files = vec!["/etc/ssl/corp-root.pem".to_string()];
        n.ca_registries = vec!["registry.corp.example:5050".to_string()];
        n.install_ca_system_wide = true;
        for userinfo in n.credentials() {
            fake.redactor.add_credentials(&userinfo);
        }
        fake.write("/etc/ssl/corp-root.pem", &ca());
        fake.write("/usr/sbin/update-ca-certificates", "#!/bin/sh\n");
        settings
    }

    const RUNNER: &str = "Name:\tgitlab-runner\nState:\tS (sleeping)\nPPid:\t1\nUid:\t0\t0\t0\t0\n";

    /// gitlab-runner (pid 777) and dockerd (pid 4242) run with `environ`.
    fn running(fake: &FakeHost, environ: &str) {
        fake.write("/proc/777/status", RUNNER);
        fake.write("/proc/777/environ", environ);
        fake.write("/run/docker.pid", "4242\n");
        fake.write("/proc/4242/comm", "dockerd\n");
        fake.write("/proc/4242/environ", environ);
    }

    /// `/proc/PID/environ` with the variables of `settings`' proxy that
    /// `keep` keeps, after PATH.
    fn environ(settings: &Settings, keep: impl Fn(&str) -> bool) -> String {
        let vars = proxy(settings).variables();
        let kept = vars.iter().filter(|(k, _)| keep(k));
        std::iter::once("PATH=/usr/bin\0".to_string())
            .chain(kept.map(|(k, v)| format!("{k}={v}\0")))
            .collect()
    }

    fn mode_of(fake: &FakeHost, path: &str) -> u32 {
        std::fs::metadata(fake.root().join(path.trim_start_matches('/')))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .expect("mode")
    }

    fn go(
        fake: &FakeHost,
        settings: &Settings,
        only: &[&str],
        mode: Mode,
    ) -> (Counts, Arc<Reporter>) {
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let selection = Selection {
            only: only
                .iter()
                .map(|id| clap::ValueEnum::from_str(id, false).expect("a step id"))
                .collect(),
            skip: Vec::new(),
        };
        let counts = run(&host, settings, &selection, mode, &reporter);
        (counts, reporter)
    }

    #[test]
    fn converges_shows_diffs_without_the_password_and_a_second_apply_changes_nothing() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        let (plan, out) = go(&fake, &settings, &["network"], Mode::Plan);
        let text = out.captured();
        assert_eq!((plan.pending, plan.failed), (1, 0), "{text}");
        for path in [
            APT_CONF,
            ENV_FILE,
            "/etc/systemd/system/gitlab-runner.service.d/runner-provision-network.conf",
            "/etc/systemd/system/docker.service.d/runner-provision-network.conf",
            "/etc/gitlab-runner/certs/gitlab.corp.example.crt",
            "/etc/docker/certs.d/registry.corp.example:5050/ca.crt",
            "/usr/local/share/ca-certificates/runner-provision-1.crt",
        ] {
            assert!(text.contains(&format!("write {path}")), "{path}: {text}");
        }
        assert!(
            text.contains("write /etc/gitlab-runner/certs/gitlab.corp.example.crt (gitlab-runner)"),
            "the layer is named: {text}"
        );
        assert!(text.contains("+Acquire::http::Proxy"), "diff shown: {text}");
        assert!(!text.contains(PASSWORD), "{text}");

        let (applied, out) = go(&fake, &settings, &["network"], Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{}",
            out.captured()
        );
        let env = fake.read(ENV_FILE);
        assert!(
            env.contains(&format!("HTTPS_PROXY=http://build:{PASSWORD}@127.0.0.1:")),
            "{env}"
        );
        assert_eq!(
            std::fs::metadata(fake.root().join(ENV_FILE.trim_start_matches('/')))
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
                .expect("mode"),
            0o600,
            "the file with the password is root's only"
        );
        for (dir, want) in [
            ("/etc/runner-provision", 0o700),
            ("/etc/gitlab-runner/certs", 0o700),
            ("/etc/docker/certs.d/registry.corp.example:5050", 0o755),
        ] {
            assert_eq!(mode_of(&fake, dir), want, "{dir}");
        }
        assert!(
            fake.read("/etc/gitlab-runner/certs/gitlab.corp.example.crt")
                .ends_with(&ca())
        );
        assert_eq!(
            fake.read("/usr/local/share/ca-certificates/runner-provision-1.crt"),
            ca()
        );
        let commands: Vec<String> = fake.ran_since(0);
        assert!(
            commands.contains(&"update-ca-certificates --fresh".to_string()),
            "{commands:?}"
        );
        // New drop-ins for both services: systemd reads them again.
        assert!(
            commands.contains(&"systemctl daemon-reload".to_string()),
            "{commands:?}"
        );
        assert!(
            commands.iter().all(|c| !c.contains(PASSWORD)),
            "{commands:?}"
        );
        assert!(!out.captured().contains(PASSWORD));

        let before = fake.snapshot();
        let ran = fake.commands().len();
        let (again, out) = go(&fake, &settings, &["network"], Mode::Apply);
        assert_eq!((again.changed, again.ok), (0, 2), "{}", out.captured());
        assert_eq!(fake.snapshot(), before, "byte-identical");
        assert_eq!(fake.commands().len(), ran, "a converged run spawns nothing");
    }

    #[test]
    fn verify_reports_each_layer_and_shakes_hands_with_gitlab_through_the_proxy() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        go(&fake, &settings, &["network"], Mode::Apply);
        let url = settings.profile.runner.url.clone();
        // GitLab answering 404 still completed the TLS handshake.
        let (_, out) = go(&fake, &settings, &["network"], Mode::Verify);
        assert!(
            out.captured().contains("\"gitlab_tls\":\"trusted\""),
            "{}",
            out.captured()
        );
        fake.machine().urls.insert(url.clone(), Vec::new());
        let (verified, out) = go(&fake, &settings, &["network"], Mode::Verify);
        let text = out.captured();
        assert_eq!((verified.ok, verified.failed), (2, 0), "{text}");
        for detail in [
            "\"apt_proxy\":true",
            "\"gitlab_runner_ca\":\"yes (/etc/gitlab-runner/certs/gitlab.corp.example.crt)\"",
            "\"dockerd_registries\":[{\"registry\":\"registry.corp.example:5050\",\"trusts_ca\":true}]",
            "\"system_store\":\"installed\"",
            "\"gitlab_tls\":\"trusted\"",
        ] {
            assert!(text.contains(detail), "{detail}: {text}");
        }
        assert!(!text.contains(PASSWORD), "{text}");
        let machine = fake.machine();
        let (method, requested, network) = machine.requests.last().expect("a request");
        assert_eq!((*method, requested.as_str()), ("HEAD", url.as_str()));
        assert!(network.https_proxy.contains(&format!("127.0.0.1:{port}")));
        assert_eq!(network.ca_certificates, vec![ca()], "with the CA");
    }

    #[test]
    fn registration_gets_the_ca_file_and_the_proxy_in_its_environment() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        let (applied, out) = go(
            &fake,
            &settings,
            &["network", "runner-install", "runner-register"],
            Mode::Apply,
        );
        assert_eq!(applied.failed, 0, "{}", out.captured());
        let register = fake
            .commands()
            .into_iter()
            .find(|c| c.argv.get(1).map(String::as_str) == Some("register"))
            .expect("registered");
        let argv = register.display();
        assert!(
            argv.contains("--tls-ca-file /etc/gitlab-runner/certs/gitlab.corp.example.crt"),
            "{argv}"
        );
        assert!(!argv.contains(PASSWORD), "{argv}");
        for name in ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "NO_PROXY"] {
            assert!(
                register.env.iter().any(|(k, _)| k == name),
                "{name}: {:?}",
                register.env
            );
        }
    }

    #[test]
    fn a_new_ca_is_a_change_shown_in_plan() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        go(&fake, &settings, &["network"], Mode::Apply);
        fake.write(
            "/etc/ssl/corp-root.pem",
            &format!("# comment\n{}{}", ca(), ca()),
        );
        let (plan, _) = go(&fake, &settings, &["network"], Mode::Plan);
        assert_eq!(
            plan.pending, 0,
            "the same certificate twice is one certificate"
        );
        // A different certificate: every copy changes, shown as a diff.
        let second = crate::edit::pem::tests_second_ca().to_string();
        fake.write("/etc/ssl/corp-root.pem", &second);
        let (plan, out) = go(&fake, &settings, &["network"], Mode::Plan);
        let text = out.captured();
        assert_eq!(plan.pending, 1, "{text}");
        assert!(
            text.contains("write /etc/gitlab-runner/certs/gitlab.corp.example.crt"),
            "{text}"
        );
        assert!(
            text.contains("-----BEGIN CERTIFICATE-----"),
            "diff of the certificate: {text}"
        );
    }

    #[test]
    fn bad_ca_files_are_refused_before_any_change() {
        for (content, wanted) in [
            ("not a certificate\n", "no PEM certificate"),
            ("\n", "no PEM certificate"),
            ("", "no PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\nMIIB\n", "no END line"),
        ] {
            let fake = FakeHost::debian12();
            let port = listening(&fake);
            let settings = corporate(&fake, port);
            fake.write("/etc/ssl/corp-root.pem", content);
            if content.is_empty() {
                // A DER file: bytes that are not text, let alone PEM.
                std::fs::write(
                    fake.root().join("etc/ssl/corp-root.pem"),
                    [0x30, 0x82, 0x01, 0x9d, 0x30, 0x82, 0xff, 0xfe],
                )
                .expect("write DER");
            }
            let before = fake.snapshot();
            let (counts, out) = go(&fake, &settings, &[], Mode::Apply);
            let text = out.captured();
            assert_eq!(counts.failed, 1, "{text}");
            assert!(text.contains("/etc/ssl/corp-root.pem"), "{text}");
            assert!(text.contains(wanted), "{text}");
            assert!(fake.commands().is_empty());
            assert_eq!(fake.snapshot(), before);
        }
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        std::fs::remove_file(fake.root().join("etc/ssl/corp-root.pem")).expect("rm");
        let (counts, out) = go(&fake, &settings, &[], Mode::Apply);
        assert_eq!(counts.failed, 1);
        assert!(
            out.captured().contains("does not exist"),
            "{}",
            out.captured()
        );
    }

    #[test]
    fn an_unreachable_proxy_is_refused_before_any_change_and_plan_warns() {
        let fake = FakeHost::debian12();
        // Nothing listens on the fake machine unless a test says so.
        let port = 3128;
        let settings = corporate(&fake, port);
        let before = fake.snapshot();
        let (counts, out) = go(&fake, &settings, &[], Mode::Apply);
        let text = out.captured();
        assert_eq!(counts.failed, 1, "{text}");
        assert!(
            text.contains(&format!("the proxy 127.0.0.1:{port} does not answer")),
            "{text}"
        );
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(fake.commands().is_empty());
        assert_eq!(fake.snapshot(), before);
        let (plan, out) = go(&fake, &settings, &[], Mode::Plan);
        assert_eq!(plan.failed, 0, "{}", out.captured());
        assert!(
            out.captured().contains("apply will fail"),
            "{}",
            out.captured()
        );
    }

    #[test]
    fn removing_network_removes_only_the_tools_files() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        go(&fake, &settings, &["network"], Mode::Apply);
        fake.write("/etc/gitlab-runner/certs/other.example.crt", &ca());
        fake.write("/etc/docker/certs.d/other:5000/ca.crt", &ca());
        fake.write("/usr/local/share/ca-certificates/corp.crt", &ca());
        let mut plain = fake.settings(Some(TOKEN));
        plain.profile.runner.url = settings.profile.runner.url.clone();
        let (plan, out) = go(&fake, &plain, &["network"], Mode::Plan);
        let text = out.captured();
        assert_eq!(plan.pending, 1, "{text}");
        assert!(text.contains(&format!("remove {APT_CONF}")), "{text}");
        let (applied, out) = go(&fake, &plain, &["network"], Mode::Apply);
        assert_eq!(applied.changed, 1, "{}", out.captured());
        for gone in [
            APT_CONF,
            ENV_FILE,
            CA_BUNDLE,
            "/etc/systemd/system/docker.service.d/runner-provision-network.conf",
            "/etc/gitlab-runner/certs/gitlab.corp.example.crt",
            "/etc/docker/certs.d/registry.corp.example:5050/ca.crt",
            "/usr/local/share/ca-certificates/runner-provision-1.crt",
        ] {
            assert!(
                !fake.root().join(gone.trim_start_matches('/')).exists(),
                "{gone}"
            );
        }
        for kept in [
            "/etc/gitlab-runner/certs/other.example.crt",
            "/etc/docker/certs.d/other:5000/ca.crt",
            "/usr/local/share/ca-certificates/corp.crt",
        ] {
            assert_eq!(fake.read(kept), ca(), "{kept} is the operator's");
        }
        let (again, _) = go(&fake, &plain, &["network"], Mode::Apply);
        assert_eq!(again.changed, 0);
    }

    #[test]
    fn services_running_without_the_proxy_are_restarted_and_only_those() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        go(&fake, &settings, &["network"], Mode::Apply);
        let older: String = proxy(&settings)
            .variables()
            .iter()
            .map(|(k, _)| format!("{k}=http://old.corp.example:8080\0"))
            .collect();
        for (case, env, stale) in [
            ("all six variables", environ(&settings, |_| true), false),
            ("no proxy variable", environ(&settings, |_| false), true),
            ("an older proxy in every variable", older, true),
            (
                "the lowercase variables and NO_PROXY only",
                environ(&settings, |k| k != "HTTP_PROXY" && k != "HTTPS_PROXY"),
                true,
            ),
        ] {
            running(&fake, &env);
            let (plan, out) = go(&fake, &settings, &["network"], Mode::Plan);
            let text = out.captured();
            assert_eq!(plan.pending, usize::from(stale), "{case}: {text}");
            for restart in [
                "restart gitlab-runner gracefully (SIGQUIT: running jobs finish): it runs without the proxy (pid 777)",
                "restart docker: it runs without the proxy (pid 4242)",
            ] {
                assert_eq!(text.contains(restart), stale, "{case}: {text}");
            }
            let ran = fake.commands().len();
            let (applied, out) = go(&fake, &settings, &["network"], Mode::Apply);
            assert_eq!(applied.changed, usize::from(stale), "{}", out.captured());
            let restarts: &[&str] = if stale {
                // Their files are as wanted: no daemon-reload.
                &[
                    "systemctl restart docker",
                    "systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner",
                    "systemctl restart gitlab-runner",
                ]
            } else {
                &[]
            };
            assert_eq!(fake.ran_since(0)[ran..], *restarts, "{case}");
            let (plan, out) = go(&fake, &settings, &["network"], Mode::Plan);
            assert_eq!(plan.pending, 0, "{case}: restarted: {}", out.captured());
        }
    }

    #[test]
    fn an_offline_root_gets_the_files_without_a_probe_a_reload_or_a_restart() {
        let fake = FakeHost::debian12();
        // Nothing listens: the proxy is the target machine's, not this one's.
        let settings = corporate(&fake, 3128);
        running(&fake, "PATH=/usr/bin\0");
        let offline = |mode: Mode| {
            let reporter = fake.reporter(Format::Json);
            let host = fake.offline_host(reporter.clone());
            let only = Selection::of(&[ID]);
            (run(&host, &settings, &only, mode, &reporter), reporter)
        };
        let (applied, out) = offline(Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{}",
            out.captured()
        );
        assert!(fake.root().join(ENV_FILE.trim_start_matches('/')).exists());
        assert_eq!(
            fake.ran_since(0),
            [format!(
                "chroot {} update-ca-certificates --fresh",
                fake.root().display()
            )]
        );
        // What runs under its /proc is no service of that root's.
        let (plan, out) = offline(Mode::Plan);
        assert_eq!(plan.pending, 0, "{}", out.captured());
    }

    #[test]
    fn a_changed_layer_reloads_systemd_and_restarts_only_the_services_it_configures() {
        let fake = FakeHost::debian12();
        // No proxy: the CA alone, for GitLab.
        let mut settings = fake.settings(Some(TOKEN));
        settings.profile.runner.url = "https://gitlab.corp.example:8443/".to_string();
        settings.profile.network.ca_files = vec!["/etc/ssl/corp-root.pem".to_string()];
        fake.write("/etc/ssl/corp-root.pem", &ca());
        let (applied, out) = go(&fake, &settings, &["network"], Mode::Apply);
        assert_eq!(applied.changed, 1, "{}", out.captured());
        running(&fake, "PATH=/usr/bin\0");

        // A new CA: GitLab Runner's copy changes (there is no registry's).
        let ran = fake.commands().len();
        fake.write(
            "/etc/ssl/corp-root.pem",
            crate::edit::pem::tests_second_ca(),
        );
        let (applied, out) = go(&fake, &settings, &["network"], Mode::Apply);
        assert_eq!(applied.changed, 1, "{}", out.captured());
        assert_eq!(
            fake.ran_since(0)[ran..],
            [
                "systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner",
                "systemctl restart gitlab-runner",
            ],
            "no unit changed: no daemon-reload"
        );

        // A registry to trust: dockerd's layer alone.
        let ran = fake.commands().len();
        settings.profile.network.ca_registries = vec!["registry.corp.example:5050".to_string()];
        let (applied, out) = go(&fake, &settings, &["network"], Mode::Apply);
        assert_eq!(applied.changed, 1, "{}", out.captured());
        assert_eq!(fake.ran_since(0)[ran..], ["systemctl restart docker"]);
    }

    #[test]
    fn verify_says_whether_the_runner_uses_the_proxy_and_does_not_probe_it() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        go(&fake, &settings, &["network"], Mode::Apply);
        // The proxy is down now: verify reports the layers, it refuses nothing.
        fake.machine().listening.clear();
        fake.write("/proc/777/status", RUNNER);
        fake.write("/proc/777/environ", &environ(&settings, |_| true));
        let runner_ca = "/etc/gitlab-runner/certs/gitlab.corp.example.crt";
        std::fs::remove_file(fake.root().join(runner_ca.trim_start_matches('/'))).expect("rm");
        let (_, out) = go(&fake, &settings, &["network"], Mode::Verify);
        let text = out.captured();
        assert!(!text.contains("does not answer"), "{text}");
        for detail in [
            "\"gitlab_runner_proxy\":\"yes\"".to_string(),
            "\"dockerd_proxy\":\"not running\"".to_string(),
            format!("\"gitlab_runner_ca\":\"no: {runner_ca} is missing\""),
        ] {
            assert!(text.contains(&detail), "{detail}: {text}");
        }
        fake.write("/proc/777/environ", "PATH=/usr/bin\0");
        let (_, out) = go(&fake, &settings, &["network"], Mode::Verify);
        assert!(
            out.captured()
                .contains("\"gitlab_runner_proxy\":\"no: restart it (apply does)\""),
            "{}",
            out.captured()
        );
    }

    #[test]
    fn verify_shakes_hands_with_gitlab_only_with_a_ca_and_fails_on_a_certificate_it_does_not_sign()
    {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let mut settings = corporate(&fake, port);
        let url = settings.profile.runner.url.clone();
        let n = &mut settings.profile.network;
        n.ca_files.clear();
        n.ca_registries.clear();
        n.install_ca_system_wide = false;
        go(&fake, &settings, &["network"], Mode::Apply);
        let (verified, out) = go(&fake, &settings, &["network"], Mode::Verify);
        let text = out.captured();
        assert_eq!(verified.failed, 0, "{text}");
        assert!(!text.contains("gitlab_tls"), "the proxy alone: {text}");
        assert!(fake.machine().requests.is_empty());

        let settings = corporate(&fake, port);
        go(&fake, &settings, &["network"], Mode::Apply);
        // A CA of the same name that did not sign GitLab's certificate.
        fake.machine().tls_errors.insert(
            url,
            "rustls: invalid peer certificate: BadSignature".to_string(),
        );
        let (verified, out) = go(&fake, &settings, &["network"], Mode::Verify);
        let text = out.captured();
        assert_eq!(verified.failed, 1, "{text}");
        assert!(
            text.contains("presents a certificate the CA in [network] ca_files does not sign"),
            "{text}"
        );
        assert!(text.contains("give the CA that signed it"), "{text}");
    }

    #[test]
    fn apt_trusts_the_ca_for_the_runner_repository_when_its_uri_names_a_host() {
        for (uri, host) in [
            (
                "https://packages.corp.example/gitlab/debian",
                Some("packages.corp.example"),
            ),
            (
                "https://packages.corp.example:8443/debian",
                Some("packages.corp.example"),
            ),
            // Not a host yet (a placeholder), or none at all.
            ("https://{id}.mirror.corp.example/debian", None),
            ("https:///debian", None),
        ] {
            let fake = FakeHost::debian12();
            let mut settings = fake.settings(Some(TOKEN));
            settings.profile.network.ca_files = vec!["/etc/ssl/corp-root.pem".to_string()];
            fake.write("/etc/ssl/corp-root.pem", &ca());
            let repository = settings.profile.runner.repository.as_mut();
            repository.expect("a repository").uri = uri.to_string();
            let (applied, out) = go(&fake, &settings, &["network"], Mode::Apply);
            assert_eq!(applied.failed, 0, "{uri}: {}", out.captured());
            let apt = fake.root().join(APT_CONF.trim_start_matches('/'));
            match host {
                Some(host) => assert_eq!(
                    fake.read(APT_CONF),
                    format!("// {MARKER}\nAcquire::https::{host}::CaInfo \"{CA_BUNDLE}\";\n"),
                    "{uri}"
                ),
                None => assert!(!apt.exists(), "{uri}: {}", fake.read(APT_CONF)),
            }
        }
    }

    #[test]
    fn the_system_store_without_update_ca_certificates_is_refused_naming_its_package() {
        let fake = FakeHost::debian12();
        let port = listening(&fake);
        let settings = corporate(&fake, port);
        std::fs::remove_file(fake.root().join("usr/sbin/update-ca-certificates")).expect("rm");
        let before = fake.snapshot();
        let (counts, out) = go(&fake, &settings, &["network"], Mode::Apply);
        let text = out.captured();
        assert_eq!(counts.failed, 1, "{text}");
        assert!(
            text.contains("`update-ca-certificates` was not found on PATH: install the package `ca-certificates`"),
            "{text}"
        );
        assert!(fake.commands().is_empty());
        assert_eq!(fake.snapshot(), before);
    }
}
