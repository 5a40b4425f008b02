//! Hosts set up by hand, then adopted (issue 15): GitLab's and Docker's
//! documented manual steps replayed inside the container against signed
//! local copies of their repositories' layouts, then `apply`. No second
//! source or key, no second runner, `apt-get update` still clean, `verify`
//! passes, and the second apply changes nothing.
//!
//! The repositories are signed with a key made for each run
//! (`signed-repo.sh`, gpg on this machine), so apt inside the host checks
//! `Signed-By` for real. Docker's packages are stand-ins
//! (`docker-ce-stand-in.sh`: Debian's docker.io renamed docker-ce, and
//! empty docker-ce-cli and containerd.io).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::LEGACY_TOKEN;
use crate::checks::{self, assert_docker_ready, assert_second_apply_changes_nothing};
use crate::harness::{self, Container, PROFILE, Run, STAND_IN_LOG, TEST_PROFILE, URL};

/// Where GitLab's script puts the repository's key (`gpg --dearmor`ed).
const GITLAB_KEYRING: &str = "/usr/share/keyrings/runner_gitlab-runner-archive-keyring.gpg";
/// GitLab's script's source file.
const GITLAB_LIST: &str = "/etc/apt/sources.list.d/runner_gitlab-runner.list";
/// The token typed into `gitlab-runner register` by hand (stand-in: never sent).
const BY_HAND_TOKEN: &str = "GR1348941-by-hand-7d2c";
/// The test profile's flat runner repository, replaced in these scenarios.
const FLAT_RUNNER_REPOSITORY: &str = r#"[runner.repository]
uri = "file:/srv/runner-repo/"
suite = "./"
components = ""
key_url = ""
"#;

fn here() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hosts/adopt")
}

/// gpg and ar on this machine, or why not (CI installs them: .ci/run).
fn tools_missing() -> Option<String> {
    for (tool, package) in [("gpg", "gnupg"), ("gpgconf", "gnupg"), ("ar", "binutils")] {
        if which::which(tool).is_err() {
            return Some(format!("{tool} not found (apt-get install {package})"));
        }
    }
    None
}

/// Starts an adoption scenario, or says why it is skipped (a failure under
/// RUNNER_PROVISION_REQUIRE_HOSTS=1).
fn tier() -> Option<harness::Tier> {
    let tier = harness::tier()?;
    if let Some(reason) = tools_missing() {
        if std::env::var("RUNNER_PROVISION_REQUIRE_HOSTS").as_deref() == Ok("1") {
            panic!(
                "RUNNER_PROVISION_REQUIRE_HOSTS=1 but the adoption scenarios cannot run: {reason}"
            );
        }
        eprintln!("skipped: {reason}");
        return None;
    }
    Some(tier)
}

fn run_here(cmd: &mut Command) -> String {
    let out = cmd
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .output()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The first file in `dir` whose name starts with `prefix` and ends in .deb.
fn deb_in(dir: &Path, prefix: &str) -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.starts_with(prefix) && name.ends_with(".deb")
        })
        .collect();
    found.sort();
    found
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no {prefix}*.deb in {}", dir.display()))
}

fn codename(host: &Container) -> String {
    host.sh_ok(". /etc/os-release && echo \"$VERSION_CODENAME\"")
        .trim()
        .to_string()
}

/// The events of a plan (`step_checked`) or apply for step `id`.
fn checked(run: &Run, id: &str) -> Value {
    run.events()
        .into_iter()
        .find(|e| (e["event"] == "step_checked" || e["event"] == "step_finished") && e["id"] == id)
        .unwrap_or_else(|| panic!("no event for {id}\n{}", run.transcript()))
}

fn changes(event: &Value) -> Vec<String> {
    event["changes"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

fn warnings(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter(|e| e["event"] == "warning")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

/// `apt-get update` of every source succeeds with no error, and no warning
/// about the adopted repositories (two definitions of one repository, a
/// signature apt cannot check). The image's own unsigned flat mirror may
/// warn about itself.
fn assert_apt_update_clean(host: &Container, what: &str) {
    let update = host.sh("apt-get update -q");
    assert!(
        update.status.success(),
        "{what}: apt-get update\n{}",
        update.transcript()
    );
    for line in update.stdout.lines().chain(update.stderr.lines()) {
        let ours = [
            "/srv/gitlab",
            "/srv/docker",
            "Signed-By",
            "GPG",
            "signature",
        ]
        .iter()
        .any(|s| line.contains(s));
        assert!(
            !(line.starts_with("E:") || (line.starts_with("W:") && ours)),
            "{what}: apt-get update complains: {line}\n{}",
            update.transcript()
        );
    }
}

fn plan(host: &Container) -> Run {
    let run = host.tool(&["--output", "json", "plan"], None);
    assert_eq!(run.code(), Some(0), "plan\n{}", run.transcript());
    run
}

/// GitLab's manual recipe on a fresh host, then `apply`.
pub fn gitlab_manual_setup_adopted() {
    let Some(tier) = tier() else { return };
    let started = std::time::Instant::now();
    let host = tier.boot("rp-adopt-gitlab");
    let suite = codename(&host);

    // GitLab's repository layout (packages.gitlab.com/runner/gitlab-runner/debian),
    // holding the stand-in, signed with a key made now.
    let repo = host.path("/srv/gitlab/debian");
    // gitlab-runner and, as in GitLab's repository since 17.7, the helper
    // images package it depends on.
    let runner_deb = deb_in(tier.runner_repo(), "gitlab-runner_");
    let helper_deb = deb_in(tier.runner_repo(), "gitlab-runner-helper-images_");
    run_here(
        Command::new("sh")
            .arg(here().join("signed-repo.sh"))
            .arg(&repo)
            .args([suite.as_str(), "main"])
            .arg(&runner_deb)
            .arg(&helper_deb),
    );

    // What GitLab's script.deb.sh leaves: the key de-armoured into
    // /usr/share/keyrings and a one-line source (with deb-src) naming it.
    std::fs::create_dir_all(host.path("/usr/share/keyrings")).expect("keyrings dir");
    std::fs::copy(repo.join("gpgkey.gpg"), host.path(GITLAB_KEYRING)).expect("keyring");
    host.write(
        GITLAB_LIST,
        &format!(
            "# this file was generated by packages.gitlab.com for\n# the repository at https://packages.gitlab.com/runner/gitlab-runner\n\ndeb [signed-by={GITLAB_KEYRING}] file:/srv/gitlab/debian/ {suite} main\ndeb-src [signed-by={GITLAB_KEYRING}] file:/srv/gitlab/debian/ {suite} main\n"
        ),
    );
    assert_apt_update_clean(&host, "GitLab's source added by hand");

    // The profile names GitLab's repository (at its local address) and no runner.
    assert!(TEST_PROFILE.contains(FLAT_RUNNER_REPOSITORY));
    host.write(
        PROFILE,
        &TEST_PROFILE.replace(
            FLAT_RUNNER_REPOSITORY,
            "[runner.repository]\nuri = \"file:/srv/gitlab/{id}/\"\nsuite = \"{codename}\"\ncomponents = \"main\"\nkey_url = \"file:/srv/gitlab/debian/gpgkey\"\n",
        ),
    );

    // Before gitlab-runner is installed, plan uses GitLab's source as it is.
    let planned = plan(&host);
    let install = checked(&planned, "runner-install");
    assert_eq!(install["status"], "pending", "{}", planned.transcript());
    let planned_changes = changes(&install);
    assert!(
        planned_changes.contains(&"install package gitlab-runner".to_string())
            && !planned_changes
                .iter()
                .any(|c| c.contains("apt source") || c.contains("signing key")),
        "GitLab's source used as it is: no second source, no second key\n{}",
        planned.transcript()
    );

    // The rest of the manual recipe.
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q gitlab-runner");
    host.sh_ok(&format!(
        "GITLAB_RUNNER_STAND_IN_LOG={STAND_IN_LOG} gitlab-runner register -n --url {URL} \
         --registration-token {BY_HAND_TOKEN} --executor shell --description 'My Runner'"
    ));
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker.io");
    host.sh_ok("usermod -aG docker gitlab-runner");
    assert_eq!(checks::registrations(&host).len(), 1, "registered by hand");
    let apt_before = host.snapshot(&[
        "/etc/apt/sources.list",
        "/etc/apt/sources.list.d",
        "/etc/apt/keyrings",
        "/usr/share/keyrings",
    ]);

    // The plan names the runner it adopts.
    let planned = plan(&host);
    assert_eq!(
        checked(&planned, "runner-register")["status"],
        "ok",
        "{}",
        planned.transcript()
    );
    assert!(
        warnings(&planned)
            .iter()
            .any(|w| w.contains("the runner \"My Runner\" registered at")
                && w.contains("is taken as this host's runner")),
        "{}",
        planned.transcript()
    );

    // A token is at hand, as on any host: it must not register a second runner.
    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    applied.assert_applied("apply on a host set up by hand");
    assert_eq!(checked(&applied, "runner-install")["status"], "ok");
    assert_eq!(checked(&applied, "runner-register")["status"], "ok");
    assert_eq!(
        checks::registrations(&host).len(),
        1,
        "no second registration"
    );
    let runners = checks::runners(&host);
    assert_eq!(
        runners.len(),
        1,
        "{}",
        host.read("/etc/gitlab-runner/config.toml")
    );
    assert_eq!(
        runners[0].get("name").and_then(|v| v.as_str()),
        Some("My Runner")
    );
    checks::assert_docker_driver_everywhere(&host);
    apt_before.assert_same(
        &host.snapshot(&[
            "/etc/apt/sources.list",
            "/etc/apt/sources.list.d",
            "/etc/apt/keyrings",
            "/usr/share/keyrings",
        ]),
        "apply: no second source or key, GitLab's untouched",
    );
    assert_apt_update_clean(&host, "after apply");
    assert_docker_ready(&host);

    host.tool(&["verify"], None)
        .assert_success("verify on the adopted host");
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    assert_eq!(
        checks::registrations(&host).len(),
        1,
        "the second apply registered"
    );
    eprintln!(
        "scenario gitlab_manual_setup_adopted: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// Docker's manual recipe (its repository and docker-ce), then `apply`
/// with the default profile (docker-ce kept) and with `source = "docker-ce"`
/// (the missing package installed through Docker's source as it is).
pub fn docker_repository_adopted() {
    let Some(tier) = tier() else { return };
    let started = std::time::Instant::now();
    let host = tier.boot("rp-adopt-docker");
    let suite = codename(&host);

    // Docker's repository layout (download.docker.com/linux/debian), signed.
    let debs = host.path("/srv/docker-debs");
    run_here(
        Command::new("sh")
            .arg(here().join("docker-ce-stand-in.sh"))
            .arg(deb_in(&tier.mirror(), "docker.io_"))
            .arg(&debs),
    );
    let mut signed = Command::new("sh");
    signed
        .arg(here().join("signed-repo.sh"))
        .arg(host.path("/srv/docker"))
        .args([suite.as_str(), "stable"]);
    for package in ["docker-ce_", "docker-ce-cli_", "containerd.io_"] {
        signed.arg(deb_in(&debs, package));
    }
    run_here(&mut signed);

    // docs.docker.com's steps: the armoured key in /etc/apt/keyrings,
    // docker.list with arch= and signed-by, then the packages (containerd.io
    // left out here, so the tool has to install it through that source).
    host.sh_ok(
        "install -m 0755 -d /etc/apt/keyrings && cp /srv/docker/gpgkey /etc/apt/keyrings/docker.asc \
         && chmod a+r /etc/apt/keyrings/docker.asc",
    );
    host.sh_ok(
        r#"echo "deb [arch=$(dpkg --print-architecture) signed-by=/etc/apt/keyrings/docker.asc] file:/srv/docker $(. /etc/os-release && echo "$VERSION_CODENAME") stable" > /etc/apt/sources.list.d/docker.list"#,
    );
    assert_apt_update_clean(&host, "Docker's source added by hand");
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q docker-ce docker-ce-cli");
    assert_eq!(
        host.sh("systemctl is-active docker").stdout.trim(),
        "active"
    );

    // The default profile (docker.io): docker-ce is kept, with a note.
    let planned = plan(&host);
    let docker = checked(&planned, "docker-install");
    assert_eq!(docker["status"], "ok", "{}", planned.transcript());
    assert!(
        warnings(&planned).iter().any(|w| w.starts_with(
            "docker-ce is installed: it is kept as Docker Engine instead of the profile's docker.io"
        )),
        "{}",
        planned.transcript()
    );

    // A docker-ce profile naming Docker's repository at its local address.
    let profile = TEST_PROFILE.replace("source = \"distro\"", "source = \"docker-ce\"");
    assert_ne!(profile, TEST_PROFILE);
    host.write(
        PROFILE,
        &format!(
            "{profile}\n[docker.repository]\nuri = \"file:/srv/docker\"\nsuite = \"{{codename}}\"\ncomponents = \"stable\"\nkey_url = \"file:/srv/docker/gpgkey\"\n"
        ),
    );
    let planned = plan(&host);
    let docker = checked(&planned, "docker-install");
    assert_eq!(
        changes(&docker),
        vec!["install package containerd.io".to_string()],
        "Docker's source used as it is\n{}",
        planned.transcript()
    );
    let docker_apt = ["/etc/apt/sources.list.d/docker.list", "/etc/apt/keyrings"];
    let before = host.snapshot(&docker_apt);

    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    applied.assert_applied("apply with Docker's repository set up by hand");
    assert_eq!(checked(&applied, "docker-install")["status"], "changed");
    before.assert_same(
        &host.snapshot(&docker_apt),
        "apply: Docker's source and key untouched",
    );
    assert!(
        !host.path("/etc/apt/sources.list.d/docker.sources").exists(),
        "a second Docker source was written"
    );
    let policy = host.sh_ok("apt-cache policy containerd.io");
    assert!(
        host.sh_ok("dpkg-query -W -f '${Status}' containerd.io") == "install ok installed"
            && policy.contains("/srv/docker"),
        "containerd.io from Docker's source:\n{policy}"
    );
    assert_ne!(
        host.sh("dpkg-query -W -f '${Status}' docker.io").stdout,
        "install ok installed",
        "docker.io must not replace docker-ce"
    );
    assert_eq!(
        host.sh_ok("dpkg-query -W -f '${Status}' docker-ce"),
        "install ok installed"
    );
    assert_apt_update_clean(&host, "after apply");
    checks::assert_provisioned(&host, true);

    host.tool(&["verify"], None)
        .assert_success("verify on the adopted host");
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));

    // The repository's key is rotated (as GitLab's was): the repository is
    // signed again with a new key, which key_url now serves. The host's
    // docker.asc is the old one, so apt-get update fails with NO_PUBKEY;
    // the next install downloads the key again and retries once.
    run_here(&mut signed);
    host.sh_ok("dpkg --remove containerd.io");
    let applied = host.apply(&[], Some(LEGACY_TOKEN));
    applied.assert_applied("apply after the key was rotated");
    assert_eq!(checked(&applied, "docker-install")["status"], "changed");
    assert!(
        warnings(&applied).iter().any(|w| w
            .contains("apt does not accept the signing key of file:/srv/docker")
            && w.contains("retrying once")),
        "{}",
        applied.transcript()
    );
    assert_eq!(
        host.read("/etc/apt/keyrings/docker.asc"),
        host.read("/srv/docker/gpgkey"),
        "docker.asc holds the new key"
    );
    assert_apt_update_clean(&host, "after the key was downloaded again");
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    eprintln!(
        "scenario docker_repository_adopted: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
