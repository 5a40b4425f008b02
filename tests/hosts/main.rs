//! Tier 3: real hosts in systemd-nspawn containers.
//!
//! Each test boots a fresh Debian 12 host (systemd as PID 1, apt, dpkg,
//! accounts, Docker Engine, no network but local apt mirrors), runs the tool
//! in it as `sudo runner-provision apply` would run, checks the result from
//! outside, and ends with a second `apply` that must change nothing. One
//! test, one scenario (issue 3); they run one at a time. Root only: without
//! root, debootstrap or systemd-nspawn each test prints "skipped: …", unless
//! RUNNER_PROVISION_REQUIRE_HOSTS=1 makes that a failure (CI). See README.md.

#[macro_use]
#[path = "../support/test_profile.rs"]
mod test_profile;
mod adopt;
mod checks;
mod cloud_init;
mod daemon;
mod globals;
mod harness;
mod job_checks;
mod lifecycle;
mod network;
mod pins;
mod prune;
mod releases;
mod runners;
mod scenarios;
#[path = "../support/stand_in.rs"]
mod stand_in;

/// A legacy registration token (not `glrt-`): registered with the
/// `--registration-token` flow, the token in env REGISTRATION_TOKEN.
pub const LEGACY_TOKEN: &str = "GR1348941-legacy-LeakCanary-7f3e9a";
/// A runner authentication token (`glrt-`): the `--token` flow.
pub const GLRT_TOKEN: &str = "glrt-LeakCanary-5d1c88b2e4";

/// 1. Fresh host, sudo one-shot.
#[test]
fn fresh_host() {
    scenarios::fresh_host();
}

/// 2. `glrt-` token: new registration flow; tags with it refused up front.
#[test]
fn glrt_token() {
    scenarios::glrt_token();
}

/// 3. Docker installed but stopped and disabled.
#[test]
fn docker_stopped_and_disabled() {
    scenarios::docker_stopped_and_disabled();
}

/// 4. Already registered, config.toml with two runners.
#[test]
fn already_registered_two_runners() {
    scenarios::already_registered_two_runners();
}

/// 5. dpkg lock held by another process when `apply` starts.
#[test]
fn dpkg_lock_held() {
    scenarios::dpkg_lock_held();
}

/// 6. Docker daemon slow to come up, then broken.
#[test]
fn docker_slow_then_broken() {
    scenarios::docker_slow_then_broken();
}

/// 7. The runner service running as gitlab-runner itself.
#[test]
fn service_runs_as_gitlab_runner() {
    scenarios::service_runs_as_gitlab_runner();
}

/// 8. `apply` killed with SIGKILL at several points.
#[test]
fn interrupted_apply() {
    scenarios::interrupted_apply();
}

/// 9. The token never shows in argv, output, logs or the journal.
#[test]
fn token_stays_secret() {
    scenarios::token_stays_secret();
}

/// 10. Bad input: clear error, exit 1, every file unchanged.
#[test]
fn bad_input() {
    scenarios::bad_input();
}

/// 11. Golden image: `--root` apply on an image tree, instances booted from
///     it register at boot, install nothing, and are distinct managers.
#[test]
fn golden_image() {
    lifecycle::golden_image();
}

/// 12. Build as a job, nothing left behind; a runner deleted on the server.
#[test]
fn job_build_and_runner_on_the_server() {
    job_checks::job_build_and_runner_on_the_server();
}

/// 13. Docker's data root full: docker info answers, the build says disk full.
#[test]
fn docker_data_root_full() {
    job_checks::docker_data_root_full();
}

/// 14. Shutdown: the unit unregisters this host's runner, after the runner
///     stopped gracefully, before the network went down.
#[test]
fn shutdown_unregisters() {
    lifecycle::shutdown_unregisters();
}

/// 15a. Behind a proxy: apt, the tool, registration, the runner and dockerd
///      all go through it; [network] removed takes it back.
#[test]
fn network_proxy() {
    network::proxy();
}

/// 15b. A GitLab with an internal CA.
#[test]
fn network_internal_ca() {
    network::internal_ca();
}

/// Release axis: the .deb from `cargo xtask dist` on Debian 11.
#[test]
fn packaged_bullseye() {
    releases::packaged_on("bullseye");
}

/// Release axis: the .deb from `cargo xtask dist` on Debian 12.
#[test]
fn packaged_bookworm() {
    releases::packaged_on("bookworm");
}

/// Release axis: the .deb from `cargo xtask dist` on Debian 13.
#[test]
fn packaged_trixie() {
    releases::packaged_on("trixie");
}

/// 16. remove after a converged apply, remove again (0 changes), apply
///     again: the same files as the first apply.
#[test]
fn remove_round_trip() {
    lifecycle::remove_round_trip();
}

/// 17. cloud-init's per-boot script by hand: downloads from the container's
///     loopback through refusals and 503s, a failed first boot keeps the
///     token, the second boot registers and forgets it.
#[test]
fn cloud_init_per_boot() {
    cloud_init::per_boot_script();
}

/// Adoption: GitLab's manual recipe (its repository layout and keyring,
/// "My Runner" registered by hand, Docker, the group), then apply.
#[test]
fn gitlab_manual_setup_adopted() {
    adopt::gitlab_manual_setup_adopted();
}

/// Adoption: Docker's repository layout and a stand-in docker-ce, then apply.
#[test]
fn docker_repository_adopted() {
    adopt::docker_repository_adopted();
}

/// 19. `[global]` reloaded by the running runner without a restart; a new
///     listen_address restarts it gracefully only after a held job ended.
#[test]
fn globals_and_a_held_job() {
    globals::globals_and_a_held_job();
}

/// 20. Prune: the timer apply installs, its service run on a data root
///     with old and recent images, containers, build cache and volumes.
#[test]
fn prune_timer() {
    prune::prune_timer();
}

/// 21. A pinned older runner with its helper images, held, then an
///     explicit upgrade by changing the pin.
#[test]
fn pinned_runner_then_upgrade() {
    pins::pinned_runner_then_upgrade();
}

/// 22. Two runners from one profile, each with its own token source; a
///     runner the profile does not list is reported and kept.
#[test]
fn several_runners() {
    runners::several_runners();
}

/// 23. `[docker.daemon]` merged into a daemon.json with a key set by hand,
///     seen by dockerd; `hosts` refused up front; a key dockerd refuses at
///     start rolled back, Docker running again.
#[test]
fn docker_daemon_settings() {
    daemon::docker_daemon_settings();
}
