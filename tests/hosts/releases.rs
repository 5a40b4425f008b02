//! The release axis (issue 9): on a fresh Debian 11, 12 and 13 host, the
//! package `cargo xtask dist` made is installed with apt, then the fresh-host
//! scenario runs with the installed binary, a second apply changes nothing,
//! and the man pages and bash completion work.

use std::time::Instant;

use crate::LEGACY_TOKEN;
use crate::checks::{self, assert_provisioned, assert_second_apply_changes_nothing};
use crate::harness::{self, PACKAGED_TOOL, TOOL};

/// What installing the package may not touch: accounts, services, the
/// tool's managed files (dpkg's own database aside).
const UNTOUCHED_BY_INSTALL: &[&str] = &[
    "/etc/passwd",
    "/etc/group",
    "/etc/shadow",
    "/etc/gshadow",
    "/etc/systemd/system",
    "/etc/gitlab-runner",
    "/etc/docker",
    "/etc/modules",
    "/etc/modules-load.d",
    "/etc/apt/sources.list",
    "/etc/apt/sources.list.d",
    "/etc/apt/keyrings",
];

/// Files the package must ship (dpkg -L).
const SHIPPED: &[&str] = &[
    PACKAGED_TOOL,
    "/usr/share/man/man1/runner-provision.1.gz",
    "/usr/share/man/man1/runner-provision-apply.1.gz",
    "/usr/share/man/man1/runner-provision-plan.1.gz",
    "/usr/share/man/man1/runner-provision-verify.1.gz",
    "/usr/share/man/man1/runner-provision-cloud-init.1.gz",
    "/usr/share/bash-completion/completions/runner-provision",
    "/usr/share/zsh/vendor-completions/_runner-provision",
    "/usr/share/fish/vendor_completions.d/runner-provision.fish",
    "/usr/share/doc/runner-provision/copyright",
    "/usr/share/doc/runner-provision/changelog.Debian.gz",
    "/usr/share/doc/runner-provision/README.md",
    "/usr/share/doc/runner-provision/profiles/shell-docker.toml",
    "/usr/share/doc/runner-provision/profiles/shell-docker-ce.toml",
    "/usr/share/doc/runner-provision/profiles/shell-docker-fleet.toml",
];

pub fn packaged_on(release: &'static str) {
    let Some(tier) = harness::tier() else { return };
    let deb = match harness::dist_deb() {
        Ok(deb) => deb,
        Err(reason) => {
            harness::skip::<()>(&reason);
            return;
        }
    };
    let started = Instant::now();
    let host = tier.boot_release(&format!("rp-{release}"), release, &deb);
    let name = deb
        .file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned();

    // apt installs the package and changes nothing else.
    let before = host.snapshot(UNTOUCHED_BY_INSTALL);
    let units = "systemctl list-unit-files --no-legend --no-pager | sort";
    let units_before = host.sh_ok(units);
    host.sh_ok(&format!(
        "cd /root && DEBIAN_FRONTEND=noninteractive apt-get install -y -q ./{name}"
    ));
    before.assert_same(
        &host.snapshot(UNTOUCHED_BY_INSTALL),
        "installing the package",
    );
    assert_eq!(
        units_before,
        host.sh_ok(units),
        "installing the package changed units"
    );
    let listed = host.sh_ok("dpkg -L runner-provision");
    for path in SHIPPED {
        assert!(
            listed.lines().any(|l| l == *path),
            "{release}: the package lacks {path}:\n{listed}"
        );
    }
    assert!(
        !host.path(TOOL).exists(),
        "the scenario must run the packaged binary, not a copied one"
    );
    let version = host.sh_ok("runner-provision --version");
    assert!(
        version.contains("glibc baseline: 2.17"),
        "{release}: the package holds the portable binary:\n{version}"
    );

    // No symbol needs a glibc above the baseline it states.
    let symbols = harness::Run::capture(
        std::process::Command::new("objdump")
            .arg("-T")
            .arg(host.path(PACKAGED_TOOL)),
    );
    symbols.assert_success("objdump -T on the packaged binary (package binutils)");
    let newest = newest_glibc(&symbols.stdout).expect("GLIBC_ symbol versions");
    assert!(
        newest <= (2, 17),
        "{release}: the packaged binary needs GLIBC_{}.{}",
        newest.0,
        newest.1
    );

    // The fresh-host scenario, with the packaged binary.
    let first = host.apply(&[], Some(LEGACY_TOKEN));
    first.assert_applied(&format!("apply on a fresh {release} host"));
    for id in [
        "runner-install",
        "runner-register",
        "docker-install",
        "docker-group",
        "overlay-module",
        "docker-driver",
    ] {
        assert_eq!(
            first.step(id)["status"],
            "changed",
            "{release}: {id} on a fresh host\n{}",
            first.transcript()
        );
    }
    assert_provisioned(&host, true);
    assert_eq!(checks::registrations(&host).len(), 1);
    checks::assert_registration_env(&host, "REGISTRATION_TOKEN");
    host.tool(&["verify"], None)
        .assert_success(&format!("verify on {release}"));
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));

    // man and bash completion, as an operator would use them.
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q man-db bash-completion");
    for page in ["runner-provision", "runner-provision-apply"] {
        let man = host.sh_ok(&format!("MANPAGER=cat MANWIDTH=100 man {page}"));
        assert!(
            man.contains("NAME") && man.contains(page) && man.contains("--profile"),
            "{release}: man {page}:\n{man}"
        );
    }
    let completion = host.sh_ok(
        r#"bash -c '
        . /usr/share/bash-completion/bash_completion
        if type _comp_load >/dev/null 2>&1; then _comp_load runner-provision; else _completion_loader runner-provision; fi
        spec=$(complete -p runner-provision) || exit 1
        f=${spec#*-F }; f=${f%% *}
        COMP_WORDS=(runner-provision pl); COMP_CWORD=1
        COMP_LINE="runner-provision pl"; COMP_POINT=${#COMP_LINE}
        "$f" runner-provision pl runner-provision
        echo "${COMPREPLY[*]}"'"#,
    );
    assert_eq!(
        completion.trim(),
        "plan",
        "{release}: bash completes `runner-provision pl`"
    );
    eprintln!(
        "scenario packaged_{release}: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// The highest `GLIBC_2.N` version `objdump -T` names.
fn newest_glibc(objdump: &str) -> Option<(u32, u32)> {
    objdump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(|v| {
            let mut parts = v.split('.');
            Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
        })
        .max()
}
