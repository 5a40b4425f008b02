//! The stand-in gitlab-runner executable for the test tiers that run the
//! binary (included with `#[path]` by tests/cli, tests/hosts, tests/vm).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The stand-in gitlab-runner, next to the test executable. Built here with
/// `cargo build -p gitlab-runner-stand-in` (a no-op when up to date):
/// `cargo test` alone builds only the stand-in's test harness, not its binary.
/// `RUNNER_PROVISION_STAND_IN=PATH` names a prebuilt one instead.
pub fn stand_in_binary() -> Result<PathBuf, String> {
    if let Ok(path) = std::env::var("RUNNER_PROVISION_STAND_IN") {
        return Ok(PathBuf::from(path));
    }
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    // target/debug/deps/TEST-HASH -> target/debug/gitlab-runner
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .ok_or("no target directory above the test executable")?;
    let target_dir = profile_dir.parent().ok_or("no target directory")?;
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut build = Command::new(cargo);
    build
        .args(["build", "-q", "-p", "gitlab-runner-stand-in"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("CARGO_TARGET_DIR", target_dir);
    if profile_dir
        .file_name()
        .is_some_and(|name| name == "release")
    {
        build.arg("--release");
    }
    let status = build
        .status()
        .map_err(|e| format!("running cargo build -p gitlab-runner-stand-in: {e}"))?;
    let path = profile_dir.join("gitlab-runner");
    if !status.success() || !path.is_file() {
        return Err(format!(
            "cargo build -p gitlab-runner-stand-in ({status}) did not produce {}",
            path.display()
        ));
    }
    Ok(path)
}
