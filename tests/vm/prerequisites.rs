//! Skip or fail when the machine cannot run this tier.

use std::path::PathBuf;

/// Set to 1 (CI does) to turn every skip into a failure.
const REQUIRE: &str = "RUNNER_PROVISION_REQUIRE_VM";

/// Whether the tier must run here.
fn required() -> bool {
    std::env::var_os(REQUIRE).is_some_and(|v| v == "1")
}

/// Prints `skipped: REASON` and returns, or panics under
/// RUNNER_PROVISION_REQUIRE_VM=1.
pub fn skip(reason: &str) {
    assert!(!required(), "{REQUIRE}=1, but {reason}");
    println!("skipped: {reason}");
}

/// None when every command is on PATH and we are root; else why not.
pub fn missing(commands: &[(&str, &str)]) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not running as root".into());
    }
    let absent: Vec<String> = commands
        .iter()
        .filter(|(command, _)| which::which(command).is_err())
        .map(|(command, package)| format!("{command} (package {package})"))
        .collect();
    if absent.is_empty() {
        None
    } else {
        Some(format!(
            "not found: {}; tests/vm/install-prerequisites.sh installs them",
            absent.join(", ")
        ))
    }
}

/// The repository's root directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tool binary cargo built for this test.
pub fn tool_binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_runner-provision"))
}
