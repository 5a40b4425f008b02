//! Puts the commit and the glibc baseline into `--version`'s long form.
//!
//! `cargo xtask dist` sets both (RUNNER_PROVISION_COMMIT,
//! RUNNER_PROVISION_GLIBC) for the portable build. A plain `cargo build`
//! asks git for the commit and getconf for the build machine's glibc: a
//! binary linked there needs at most that version.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=RUNNER_PROVISION_COMMIT");
    println!("cargo:rerun-if-env-changed=RUNNER_PROVISION_GLIBC");

    let commit = std::env::var("RUNNER_PROVISION_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown (not built from a git checkout)".into());
    let glibc = std::env::var("RUNNER_PROVISION_GLIBC")
        .ok()
        .filter(|g| !g.is_empty())
        .or_else(build_machine_glibc)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=RUNNER_PROVISION_COMMIT={commit}");
    println!("cargo:rustc-env=RUNNER_PROVISION_GLIBC={glibc}");
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// The checked-out commit; rebuilt when HEAD or the branch it names moves.
fn git_commit() -> Option<String> {
    let commit = output("git", &["rev-parse", "--short=12", "HEAD"])?;
    for path in ["HEAD", "packed-refs"] {
        if let Some(p) = output("git", &["rev-parse", "--git-path", path]) {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"])
        && let Some(p) = output("git", &["rev-parse", "--git-path", &branch])
    {
        println!("cargo:rerun-if-changed={p}");
    }
    Some(commit)
}

/// "2.36 (the build machine's)" from `getconf GNU_LIBC_VERSION` ("glibc 2.36").
fn build_machine_glibc() -> Option<String> {
    let text = output("getconf", &["GNU_LIBC_VERSION"])?;
    let version = text.strip_prefix("glibc ")?;
    Some(format!("{version} (the build machine's)"))
}
