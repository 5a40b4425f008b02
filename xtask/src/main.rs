//! `cargo xtask dist`: every release artifact from one command.
//!
//! Into target/dist/: the portable binary (glibc 2.17 baseline, built with
//! cargo-zigbuild), the Debian package (cargo-deb: the binary, one man page
//! per subcommand, bash/zsh/fish completions, README, changelog, copyright
//! and the built-in profiles) and SHA256SUMS. It installs nothing: the tools
//! it calls are checked first and named, with how to get them, when missing.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail, ensure};
use clap::CommandFactory;
use clap_complete::Shell;

use runner_provision::cli::Cli;

/// The target triple the portable binary is built for, and the glibc
/// version cargo-zigbuild links it against (zig ships that glibc's stubs).
const TRIPLE: &str = "x86_64-unknown-linux-gnu";
const GLIBC: &str = "2.17";
/// The release binary must stay small (issue 9).
const MAX_BINARY_BYTES: u64 = 6 * 1024 * 1024;
const PACKAGE: &str = "runner-provision";

const USAGE: &str = "usage: cargo xtask dist

Builds target/dist/: the portable runner-provision binary (x86_64 Linux,
glibc 2.17 or later), runner-provision_<version>-1_amd64.deb and SHA256SUMS.
Needs cargo-zigbuild and cargo-deb (cargo install --locked cargo-zigbuild
cargo-deb), zig (python3 -m venv V && V/bin/pip install ziglang, then V/bin on
PATH) and objdump (binutils).";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["dist"] => dist(),
        ["-h" | "--help" | "help"] => {
            println!("{USAGE}");
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

fn dist() -> Result<()> {
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    ensure!(
        target == root.join("target"),
        "cargo xtask dist writes to <workspace>/target (the .deb's assets name it); unset CARGO_TARGET_DIR"
    );
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    check_tools(&cargo)?;

    let version = env!("CARGO_PKG_VERSION");
    let commit = output(Command::new("git").args(["rev-parse", "--short=12", "HEAD"]))
        .unwrap_or_else(|_| "unknown (not built from a git checkout)".into());

    // 1. The portable binary.
    step("building the portable binary (cargo zigbuild, glibc 2.17)");
    run(Command::new(&cargo)
        .current_dir(&root)
        .args(["zigbuild", "--release", "--locked", "-p", PACKAGE])
        .args(["--bin", PACKAGE, "--target"])
        .arg(format!("{TRIPLE}.{GLIBC}"))
        .env("RUNNER_PROVISION_COMMIT", &commit)
        .env("RUNNER_PROVISION_GLIBC", GLIBC))?;
    let binary = target.join(TRIPLE).join("release").join(PACKAGE);
    check_binary(&binary, &commit)?;

    // 2. Man pages and completions, from the same clap definitions.
    let assets = target.join("assets");
    if assets.exists() {
        fs::remove_dir_all(&assets).with_context(|| format!("removing {}", assets.display()))?;
    }
    let man = assets.join("man");
    let completions = assets.join("completions");
    fs::create_dir_all(&man)?;
    fs::create_dir_all(&completions)?;
    clap_mangen::generate_to(Cli::command(), &man).context("writing man pages")?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut Cli::command(), PACKAGE, &completions)
            .with_context(|| format!("writing the {shell} completion"))?;
    }

    // 3. The Debian package and the folder of artifacts.
    let dist = target.join("dist");
    if dist.exists() {
        fs::remove_dir_all(&dist).with_context(|| format!("removing {}", dist.display()))?;
    }
    fs::create_dir_all(&dist)?;
    step("building the Debian package (cargo deb)");
    run(Command::new(&cargo)
        .current_dir(&root)
        .args([
            "deb",
            "--no-build",
            "--no-strip",
            "-p",
            PACKAGE,
            "--target",
            TRIPLE,
        ])
        .arg("--output")
        .arg(&dist))?;
    let portable = format!("{PACKAGE}-{version}-x86_64-linux");
    fs::copy(&binary, dist.join(&portable))
        .with_context(|| format!("copying {} into {}", binary.display(), dist.display()))?;

    let mut names: Vec<String> = fs::read_dir(&dist)?
        .map(|e| Ok(e?.file_name().to_string_lossy().into_owned()))
        .collect::<Result<_>>()?;
    names.sort();
    let deb = format!("{PACKAGE}_{version}-1_amd64.deb");
    ensure!(
        names == [portable.clone(), deb.clone()] || names == [deb.clone(), portable.clone()],
        "target/dist holds {names:?}, expected {portable} and {deb}"
    );
    let sums = output(Command::new("sha256sum").current_dir(&dist).args(&names))?;
    fs::write(dist.join("SHA256SUMS"), format!("{sums}\n"))?;

    println!("{}:", dist.display());
    for name in names.iter().chain(["SHA256SUMS".to_string()].iter()) {
        let size = fs::metadata(dist.join(name))?.len();
        println!("  {name}  ({size} bytes)");
    }
    Ok(())
}

/// Every tool the build calls, checked before anything is built.
fn check_tools(cargo: &std::ffi::OsStr) -> Result<()> {
    let mut missing = Vec::new();
    for (sub, fix) in [
        ("zigbuild", "cargo install --locked cargo-zigbuild"),
        ("deb", "cargo install --locked cargo-deb"),
    ] {
        if output(Command::new(cargo).args([sub, "--help"])).is_err() {
            missing.push(format!("cargo-{sub} ({fix})"));
        }
    }
    let zig = output(Command::new("zig").arg("version"))
        .or_else(|_| output(Command::new("python3").args(["-m", "ziglang", "version"])));
    if zig.is_err() {
        missing.push(
            "zig (python3 -m venv V && V/bin/pip install ziglang, then put V/bin on PATH)".into(),
        );
    }
    if output(Command::new("objdump").arg("--version")).is_err() {
        missing.push("objdump (apt-get install binutils)".into());
    }
    if !missing.is_empty() {
        bail!("cargo xtask dist needs:\n  {}", missing.join("\n  "));
    }
    Ok(())
}

/// Size, glibc symbol versions and the long version of the built binary.
fn check_binary(binary: &Path, commit: &str) -> Result<()> {
    let size = fs::metadata(binary)
        .with_context(|| format!("{} was not built", binary.display()))?
        .len();
    ensure!(
        size < MAX_BINARY_BYTES,
        "{} is {size} bytes; the release binary must stay under {MAX_BINARY_BYTES}",
        binary.display()
    );
    let symbols = output(Command::new("objdump").arg("-T").arg(binary))?;
    let newest = newest_glibc(&symbols).context("objdump -T shows no GLIBC_ symbol version")?;
    ensure!(
        newest <= parse_version(GLIBC).expect("a version"),
        "{} needs GLIBC_{}.{}, above the {GLIBC} baseline",
        binary.display(),
        newest.0,
        newest.1
    );
    let long = output(Command::new(binary).arg("--version"))?;
    ensure!(
        long.contains(&format!("commit: {commit}"))
            && long.contains(&format!("glibc baseline: {GLIBC}")),
        "{} --version does not name commit {commit} and glibc {GLIBC}:\n{long}",
        binary.display()
    );
    println!(
        "{}: {size} bytes, newest symbol GLIBC_{}.{}",
        binary.display(),
        newest.0,
        newest.1
    );
    Ok(())
}

/// The highest `GLIBC_x.y` version named in `objdump -T` output.
fn newest_glibc(objdump: &str) -> Option<(u32, u32)> {
    objdump
        .split(|c: char| c.is_whitespace() || c == '(' || c == ')')
        .filter_map(|word| word.strip_prefix("GLIBC_"))
        .filter_map(parse_version)
        .max()
}

fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().map_or(Some(0), |m| m.parse().ok())?;
    Some((major, minor))
}

fn step(what: &str) {
    eprintln!("== {what}");
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    ensure!(status.success(), "{cmd:?} failed ({status})");
    Ok(())
}

fn output(cmd: &mut Command) -> Result<String> {
    let out = cmd.output().with_context(|| format!("running {cmd:?}"))?;
    ensure!(
        out.status.success(),
        "{cmd:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn newest_glibc_reads_objdump_versions() {
        let objdump = "\
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.2.5) write
0000000000000000      DF *UND*  0000000000000000 (GLIBC_2.17) clock_gettime
0000000000000000  w   D  *UND*  0000000000000000  GLIBC_2.3.4 __cxa
0000000000000000      DF *UND*  0000000000000000 (GLIBC_PRIVATE) x
";
        assert_eq!(newest_glibc(objdump), Some((2, 17)));
        assert_eq!(newest_glibc("no versions here"), None);
        assert_eq!(
            newest_glibc("(GLIBC_2.34) __libc_start_main\n(GLIBC_2.9) pipe2"),
            Some((2, 34))
        );
    }

    #[test]
    fn every_subcommand_gets_a_man_page() {
        let dir = std::env::temp_dir().join(format!("xtask-man-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        clap_mangen::generate_to(Cli::command(), &dir).expect("man pages");
        for sub in Cli::command().get_subcommands() {
            let page = dir.join(format!("runner-provision-{}.1", sub.get_name()));
            let text = std::fs::read_to_string(&page)
                .unwrap_or_else(|e| panic!("{}: {e}", page.display()));
            assert!(text.contains(".TH"), "{}", page.display());
        }
        let prune = std::fs::read_to_string(dir.join("runner-provision-prune.1")).expect("prune");
        assert!(
            prune.contains("older\\-than") && prune.contains("dry\\-run"),
            "{prune}"
        );
        std::fs::remove_dir_all(&dir).expect("cleanup");
    }

    #[test]
    fn versions_compare_numerically() {
        assert!(parse_version("2.9") < parse_version("2.17"));
        assert_eq!(parse_version("2"), Some((2, 0)));
        assert_eq!(parse_version("2.x"), None);
        assert_eq!(parse_version("PRIVATE"), None);
    }
}
