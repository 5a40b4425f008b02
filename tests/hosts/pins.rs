//! Version pins on a real host: the tier's repository holds the stand-in
//! gitlab-runner at 17.7.0-1 and 17.8.0-1, each depending on exactly its own
//! gitlab-runner-helper-images, as GitLab's repository does since 17.7.

use crate::LEGACY_TOKEN;
use crate::harness::{self, Container, PROFILE, RUNNER_VERSIONS, TEST_PROFILE};
use crate::scenarios::WallTime;

/// dpkg's `Status` and `Version` of `package`.
fn dpkg(host: &Container, package: &str) -> String {
    host.sh_ok(&format!(
        "dpkg-query -W -f '${{Status}} ${{Version}}' {package}"
    ))
}

/// apt transactions so far (/var/log/apt/history.log's Commandline lines).
fn apt_transactions(host: &Container) -> Vec<String> {
    host.sh_ok("grep '^Commandline:' /var/log/apt/history.log || true")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The test profile with `[runner] version = VERSION` and `[docker]
/// version = DOCKER`.
fn pinned(version: &str, docker: &str) -> String {
    TEST_PROFILE
        .replacen(
            "[runner]\n",
            &format!("[runner]\nversion = \"{version}\"\n"),
            1,
        )
        .replacen(
            "[docker]\n",
            &format!("[docker]\nversion = \"{docker}\"\n"),
            1,
        )
}

fn changes_of(run: &harness::Run, id: &str) -> Vec<String> {
    run.step(id)["changes"]
        .as_array()
        .map(|c| {
            c.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// 21. A pinned older runner: installed with its helper images in the same
///     apt transaction as Docker Engine (pinned too, at the mirror's
///     version), all held (an upgrade passes them by); a second apply
///     changes nothing; the runner's pin moved: an explicit upgrade, still
///     held; again nothing to change; the runner's pin removed: the holds
///     the tool made for it released, Docker's kept.
pub fn pinned_runner_then_upgrade() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("pinned_runner_then_upgrade");
    let host = tier.boot("rp-pins");
    let [older, newer] = RUNNER_VERSIONS;

    // Why the helper images must come in the same transaction: apt asked
    // for the older runner alone picks the newest helper package and gives up.
    host.sh_ok(
        "echo 'deb [trusted=yes] file:/srv/runner-repo ./' >/tmp/by-hand.list && \
         apt-get -q update -o Dir::Etc::SourceList=/tmp/by-hand.list -o Dir::Etc::SourceParts=- \
           -o APT::Get::List-Cleanup=0 >/dev/null",
    );
    let alone = host.sh(&format!(
        "apt-get -s install gitlab-runner={older} -o Dir::Etc::SourceList=/tmp/by-hand.list \
         -o Dir::Etc::SourceParts=- 2>&1; status=$?; rm /tmp/by-hand.list; exit $status"
    ));
    assert!(
        !alone.status.success()
            && alone.stdout.contains("held broken packages")
            && alone.stdout.contains(&format!(
                "Depends: gitlab-runner-helper-images (= {older}) but {newer} is to be installed"
            )),
        "the stand-in repository must reproduce GitLab's dependency\n{}",
        alone.transcript()
    );

    // Docker Engine pinned too, at the version the mirror has (as
    // `apt-cache madison docker.io` lists it).
    let docker = host
        .sh_ok("apt-cache madison docker.io | awk 'NR == 1 { print $3 }'")
        .trim()
        .to_string();
    assert!(!docker.is_empty(), "no docker.io in the mirror");
    host.write(PROFILE, &pinned("17.7.0", &docker));
    let plan = host.tool(&["--output", "json", "plan"], None);
    plan.assert_success("plan with a pin");
    let planned = plan
        .events()
        .into_iter()
        .find(|e| e["id"] == "runner-install" && e["event"] == "step_checked")
        .expect("runner-install checked");
    let text = planned.to_string();
    assert!(
        text.contains(&format!(
            "install packages gitlab-runner {older}, gitlab-runner-helper-images {older} (runner.version)"
        )) && text.contains("hold gitlab-runner gitlab-runner-helper-images"),
        "{}",
        plan.transcript()
    );

    let transactions = apt_transactions(&host).len();
    let first = host.apply(&[], Some(LEGACY_TOKEN));
    first.assert_applied("apply with runner.version = 17.7.0");
    let installed = apt_transactions(&host);
    assert_eq!(
        installed.len() - transactions,
        1,
        "one apt transaction for the runner, its helper images and Docker:\n{}",
        installed.join("\n")
    );
    let together = installed.last().expect("one transaction");
    for spec in [
        &format!("gitlab-runner={older}"),
        &format!("gitlab-runner-helper-images={older}"),
        &format!("docker.io={docker}"),
    ] {
        assert!(together.contains(spec.as_str()), "{spec}: {together}");
    }
    assert!(
        changes_of(&first, "runner-install").iter().any(|c| c
            == &format!("installed packages gitlab-runner {older}, gitlab-runner-helper-images {older} (one apt transaction for runner-install and docker-install)")),
        "{}",
        first.transcript()
    );
    assert!(
        changes_of(&first, "docker-install")
            .iter()
            .any(|c| c.starts_with(&format!(
                "installed package docker.io {docker} (one apt transaction"
            ))),
        "{}",
        first.transcript()
    );
    for package in ["gitlab-runner", "gitlab-runner-helper-images"] {
        assert_eq!(dpkg(&host, package), format!("hold ok installed {older}"));
    }
    assert_eq!(
        dpkg(&host, "docker.io"),
        format!("hold ok installed {docker}")
    );
    assert_eq!(
        host.sh_ok("apt-mark showhold"),
        "docker.io\ngitlab-runner\ngitlab-runner-helper-images\n"
    );
    // What unattended-upgrades would do: the newer version is there, held
    // packages stay.
    let upgrade = host.sh_ok("apt-get -s upgrade");
    assert!(
        !upgrade.contains("Inst gitlab-runner"),
        "an upgrade moved a held package:\n{upgrade}"
    );
    host.sh_ok("systemctl is-active gitlab-runner docker");

    let converged = host.managed();
    let second = host.apply(&[], Some(LEGACY_TOKEN));
    second.assert_converged("second apply with the pin");
    converged.assert_same(&host.managed(), "second apply with the pin");

    // The pin moved: an explicit upgrade, shown from → to.
    host.write(PROFILE, &pinned("17.8.0", &docker));
    let plan = host.tool(&["--output", "json", "plan", "--detailed-exitcode"], None);
    assert_eq!(plan.code(), Some(2), "{}", plan.transcript());
    assert!(
        plan.stdout.contains(&format!(
            "upgrade gitlab-runner {older} → {newer} (runner.version)"
        )) && plan.stdout.contains(&format!(
            "upgrade gitlab-runner-helper-images {older} → {newer} (runner.version)"
        )),
        "{}",
        plan.transcript()
    );
    let upgrade = host.apply(&[], Some(LEGACY_TOKEN));
    upgrade.assert_applied("apply with runner.version = 17.8.0");
    assert_eq!(
        upgrade.step("runner-install")["status"],
        "changed",
        "{}",
        upgrade.transcript()
    );
    assert!(
        changes_of(&upgrade, "runner-install")
            .contains(&format!("upgraded gitlab-runner {older} → {newer}")),
        "{}",
        upgrade.transcript()
    );
    for package in ["gitlab-runner", "gitlab-runner-helper-images"] {
        assert_eq!(dpkg(&host, package), format!("hold ok installed {newer}"));
    }
    host.sh_ok("systemctl is-active gitlab-runner");
    assert_eq!(
        crate::checks::runners(&host).len(),
        1,
        "still one runner after the upgrade"
    );

    let upgraded = host.managed();
    let again = host.apply(&[], Some(LEGACY_TOKEN));
    again.assert_converged("apply after the upgrade");
    upgraded.assert_same(&host.managed(), "apply after the upgrade");

    // The runner's pin removed: the holds the tool made for it are
    // released (upgrades move it again); Docker's pin stays, and its hold.
    host.write(
        PROFILE,
        &TEST_PROFILE.replacen(
            "[docker]\n",
            &format!("[docker]\nversion = \"{docker}\"\n"),
            1,
        ),
    );
    let plan = host.tool(&["--output", "json", "plan", "--detailed-exitcode"], None);
    assert_eq!(plan.code(), Some(2), "{}", plan.transcript());
    assert!(
        plan.stdout.contains(
            "release the hold on gitlab-runner gitlab-runner-helper-images (apt-mark unhold: runner.version pins no version now"
        ),
        "{}",
        plan.transcript()
    );
    let released = host.apply(&[], Some(LEGACY_TOKEN));
    released.assert_applied("apply without the runner's pin");
    for package in ["gitlab-runner", "gitlab-runner-helper-images"] {
        assert_eq!(
            dpkg(&host, package),
            format!("install ok installed {newer}")
        );
    }
    assert_eq!(host.sh_ok("apt-mark showhold"), "docker.io\n");
    let unpinned = host.managed();
    let last = host.apply(&[], Some(LEGACY_TOKEN));
    last.assert_converged("apply after the release");
    unpinned.assert_same(&host.managed(), "apply after the release");
}
