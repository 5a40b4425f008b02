//! Scenarios of issue 14: verify the way a job runs. A throwaway image
//! built as the shell executor starts a job (docker-build), and GitLab's
//! answer about each runner (runner-alive, from the stand-in's server folder).

use std::time::Instant;

use serde_json::Value;

use crate::LEGACY_TOKEN;
use crate::checks::{self, assert_second_apply_changes_nothing};
use crate::harness::{self, Container, PROFILE, Run, TOOL};

/// Where the stand-in reads which runners the server has deleted.
const DELETED: &str = "/var/lib/gitlab-runner-stand-in/server/deleted-runners";

/// The step event of `id` in a `verify --output json` run.
fn checked(run: &Run, id: &str) -> Value {
    run.events()
        .into_iter()
        .find(|e| e["event"] == "step_checked" && e["id"] == id)
        .unwrap_or_else(|| panic!("no step_checked event for {id}\n{}", run.transcript()))
}

/// What a build could leave behind: every image (intermediate ones too),
/// the daemon's build cache, containers, and the runner's temporary folders.
fn docker_leftovers(host: &Container) -> String {
    host.sh_ok(
        "docker images --all --no-trunc --format '{{.ID}} {{.Repository}}:{{.Tag}}' | sort; \
         echo --; docker ps --all --quiet; \
         echo --; docker system df --format '{{.Type}} {{.TotalCount}} {{.Size}}'; \
         echo --; ls -a /tmp",
    )
}

fn verify_json(host: &Container) -> Run {
    host.tool(&["--output", "json", "verify"], None)
}

/// The config.toml token of the host's runner and the shortened form
/// GitLab Runner logs: neither may appear in the tool's output.
fn runner_token_forms(host: &Container) -> Vec<String> {
    let runners = checks::runners(host);
    let token = runners[0]["token"].as_str().expect("token").to_string();
    let short: String = token.chars().take(8).collect();
    vec![token, short]
}

/// With RUNNER_PROVISION_BENCH_CHECKS=FILE: bench/checks.sh's table of what
/// each check costs on this converged host, written to FILE (measured, never
/// asserted).
fn bench_checks(host: &Container) {
    let Some(out) = std::env::var_os("RUNNER_PROVISION_BENCH_CHECKS") else {
        return;
    };
    let script = include_str!("../../bench/checks.sh");
    host.write("/root/bench-checks.sh", script);
    let table = host.sh_ok(&format!(
        "PROFILE={PROFILE} RUNS=${{RUNS:-10}} sh /root/bench-checks.sh {TOOL}"
    ));
    std::fs::write(&out, table).expect("writing the bench table");
}

/// 12. A converged host passes the build check (overlay2, nothing left
///     behind); a runner deleted on the server is reported by verify.
pub fn job_build_and_runner_on_the_server() {
    let Some(tier) = harness::tier() else { return };
    let started = Instant::now();
    let host = tier.boot("rp-jobcheck");
    host.apply(&[], Some(LEGACY_TOKEN))
        .assert_applied("apply on a fresh host");

    let before = docker_leftovers(&host);
    let verify = verify_json(&host);
    verify.assert_success("verify on a converged host");
    let build = checked(&verify, "docker-build");
    assert_eq!(build["status"], "ok", "{build}");
    assert_eq!(
        build["details"]["driver"], "overlay2",
        "the job's build used overlay2\n{build}"
    );
    assert!(build["details"]["build_ms"].is_u64(), "{build}");
    assert_eq!(
        docker_leftovers(&host),
        before,
        "the build check left an image, container, build cache or temp folder"
    );
    let name = checks::host_name(&host);
    let alive = checked(&verify, "runner-alive");
    assert_eq!(alive["status"], "ok", "{alive}");
    assert_eq!(alive["details"]["runners"][&name], "alive", "{alive}");

    bench_checks(&host);

    // The runner is deleted on the server.
    host.write(DELETED, &format!("{name}\n"));
    let managed = host.managed();
    for round in ["first", "second"] {
        let verify = verify_json(&host);
        assert_eq!(
            verify.code(),
            Some(1),
            "{round} verify with the runner deleted on the server\n{}",
            verify.transcript()
        );
        let alive = checked(&verify, "runner-alive");
        assert_eq!(alive["status"], "failed", "{alive}");
        assert_eq!(alive["details"]["runners"][&name], "deleted", "{alive}");
        let reason = alive["reason"].as_str().unwrap_or_default();
        assert!(
            reason.contains("deleted on the server")
                && reason.contains("re-register with a new token"),
            "{reason}"
        );
        let said = format!("{}{}", verify.stdout, verify.stderr);
        for form in runner_token_forms(&host) {
            assert!(
                !said.contains(&form),
                "token (or its short form) in output\n{said}"
            );
        }
        managed.assert_same(
            &host.managed(),
            &format!("{round} verify with a deleted runner"),
        );
    }

    std::fs::remove_file(host.path(DELETED)).expect("undelete");
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    eprintln!(
        "scenario job_build_and_runner_on_the_server: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// 13. Docker's data root on a full filesystem: `docker info` answers, the
///     build check fails with "disk full"; a second verify says the same
///     and changes nothing.
pub fn docker_data_root_full() {
    let Some(tier) = harness::tier() else { return };
    let started = Instant::now();
    let host = tier.boot("rp-diskfull");
    host.apply(&[], Some(LEGACY_TOKEN))
        .assert_applied("apply on a fresh host");

    // A 64 MiB tmpfs as the data root, then filled to the last byte.
    host.sh_ok(
        "systemctl stop docker.service docker.socket && \
         mount -t tmpfs -o size=64m tmpfs /var/lib/docker && \
         systemctl start docker.service && \
         for i in $(seq 50); do docker info >/dev/null 2>&1 && break; sleep 0.2; done && \
         { dd if=/dev/zero of=/var/lib/docker/filler bs=64k 2>/dev/null || true; } && \
         test \"$(df --output=avail /var/lib/docker | tail -n1 | tr -d ' ')\" -eq 0",
    );
    let managed = host.managed();
    for round in ["first", "second"] {
        let verify = verify_json(&host);
        assert_eq!(
            verify.code(),
            Some(1),
            "{round} verify on a full data root\n{}",
            verify.transcript()
        );
        let info = checked(&verify, "docker-verify");
        assert_eq!(info["status"], "ok", "docker info still answers\n{info}");
        let build = checked(&verify, "docker-build");
        assert_eq!(build["status"], "failed", "{build}");
        let reason = build["reason"].as_str().unwrap_or_default();
        assert!(reason.starts_with("disk full"), "{reason}");
        managed.assert_same(
            &host.managed(),
            &format!("{round} verify on a full data root"),
        );
    }
    host.sh_ok("rm /var/lib/docker/filler");
    let verify = verify_json(&host);
    verify.assert_success("verify once space is free again");
    eprintln!(
        "scenario docker_data_root_full: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
