//! docker-build: a throwaway image built the way a shell-executor job would
//! build it, so a host that answers `docker info` but cannot build (storage
//! driver that cannot mount, full or read-only data root, a socket the job
//! may not open) is caught before the first pipeline.
//!
//! GitLab Runner's shell executor (shells/bash.go `GetConfiguration`) starts
//! every job as `su -s /bin/bash gitlab-runner -c 'bash -l'` with the job
//! script on stdin, the runner's `environment` entries exported by that
//! script. The probe does the same: a one-file context, `FROM scratch`, no
//! registry and no network; the image is removed by the script's own exit
//! trap, and by the tool when the script could not finish.

use std::time::Duration;

use anyhow::Result;
use serde_json::json;

use super::{CONFIG_TOML, Mode, Settings, State, Step, StepId, require_tool};
use crate::edit::runner_config;
use crate::host::Host;
use crate::host::command::{Cmd, shell_quote};

pub struct DockerBuild;

const ACCOUNT: &str = "gitlab-runner";
/// Label on every probe image, so leftovers can be found and removed.
const LABEL: &str = "runner-provision.build-check";
const MARK: &str = "runner-provision-build:";

/// Why the build failed, in the operator's words, with the fix.
#[derive(Debug, thiserror::Error)]
enum Diagnosis {
    #[error(
        "disk full: the filesystem that holds Docker's data root (`docker info --format '{{{{.DockerRootDir}}}}'`, usually /var/lib/docker) has no space left, so every job's `docker build` fails although `docker info` answers; free space (`docker system prune`, `df -h /var/lib/docker`) or move `data-root` in /etc/docker/daemon.json to a larger filesystem"
    )]
    DiskFull,
    #[error(
        "Docker's data root is on a read-only filesystem: builds cannot write layers; remount it read-write or move `data-root` in /etc/docker/daemon.json"
    )]
    ReadOnly,
    #[error(
        "the storage driver cannot mount image layers on the data root's filesystem ({0}): overlay2 needs ext4 or xfs (ftype=1) under the data root and a kernel with overlay; see `dmesg` and the overlay-module step"
    )]
    DriverCannotMount(String),
    #[error(
        "permission denied on the Docker socket: a job running as {ACCOUNT} cannot open /var/run/docker.sock; run the docker-group step, then restart gitlab-runner"
    )]
    SocketPermission,
    #[error(
        "the Docker daemon is down: a job cannot reach it; start it with `systemctl start docker` and read `journalctl -u docker`"
    )]
    DaemonDown,
    #[error(
        "the build did not finish within {0} s (raise --verify-timeout, or see `journalctl -u docker`)"
    )]
    TimedOut(u64),
    #[error("a job's `docker build` failed: {0}")]
    Other(String),
}

/// `KEY=value` entries of the shell runners' `environment`, in file order.
fn job_environment(host: &Host) -> Result<Vec<String>> {
    let text = host.files.read(CONFIG_TOML)?.unwrap_or_default();
    Ok(runner_config::runners(&text)?
        .into_iter()
        .filter(|r| r.executor == "shell")
        .flat_map(|r| r.environment)
        .filter(|e| e.split_once('=').is_some_and(|(k, _)| valid_name(k)))
        .collect())
}

fn valid_name(key: &str) -> bool {
    !key.is_empty()
        && !key.starts_with(|c: char| c.is_ascii_digit())
        && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The job script: exports, a one-file context, the build, the driver that
/// stored the image and the build's time, then removal on any exit.
pub fn job_script(environment: &[String]) -> String {
    let mut script = String::from("set -eo pipefail\n");
    for entry in environment {
        script.push_str(&format!("export {}\n", shell_quote(entry)));
    }
    script.push_str(&format!(
        r#"tag="runner-provision-build-check:$$"
dir=$(mktemp -d)
trap 'docker image rm --force "$tag" >/dev/null 2>&1 || true; rm -rf "$dir"' EXIT
printf 'runner-provision build check\n' >"$dir/probe"
printf 'FROM scratch\nCOPY probe /probe\n' >"$dir/Dockerfile"
start=$(date +%s%N)
docker build --no-cache --force-rm --label {LABEL}=1 --tag "$tag" "$dir" 2>&1
end=$(date +%s%N)
echo "{MARK}build_ms=$(( (end - start) / 1000000 ))"
echo "{MARK}driver=$(docker image inspect --format '{{{{.GraphDriver.Name}}}}' "$tag")"
"#
    ));
    script
}

/// The diagnosis for a failed build's output.
fn diagnose(text: &str) -> Diagnosis {
    let lower = text.to_lowercase();
    if lower.contains("no space left on device") || lower.contains("disk quota exceeded") {
        Diagnosis::DiskFull
    } else if lower.contains("read-only file system") {
        Diagnosis::ReadOnly
    } else if lower.contains("permission denied")
        && lower.contains("docker")
        && lower.contains("sock")
    {
        Diagnosis::SocketPermission
    } else if lower.contains("cannot connect to the docker daemon") {
        Diagnosis::DaemonDown
    } else if let Some(line) = text.lines().find(|l| {
        let l = l.to_lowercase();
        l.contains("overlay mount")
            || l.contains("failed to mount")
            || l.contains("driver not supported")
            || (l.contains("mount") && l.contains("invalid argument"))
    }) {
        Diagnosis::DriverCannotMount(line.trim().to_string())
    } else {
        let lines: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        Diagnosis::Other(lines[lines.len().saturating_sub(3)..].join("; "))
    }
}

/// What the script printed after `MARK`.
fn marked<'a>(stdout: &'a str, key: &str) -> Option<&'a str> {
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(MARK)?.strip_prefix(key)?.strip_prefix('='))
        .map(str::trim)
}

/// Removes probe images a killed script left (found by their label).
fn remove_leftovers(host: &Host) {
    let listed = host.probe(
        Cmd::new("docker")
            .args(["images", "--quiet", "--filter", &format!("label={LABEL}")])
            .timeout(Duration::from_secs(30)),
    );
    if let Ok(out) = listed {
        let ids: Vec<&str> = out.stdout.split_whitespace().collect();
        if !ids.is_empty() {
            let _ = host.probe(
                Cmd::new("docker")
                    .args(["image", "rm", "--force"])
                    .args(ids)
                    .timeout(Duration::from_secs(30)),
            );
        }
    }
}

impl Step for DockerBuild {
    fn needs(&self) -> &'static [StepId] {
        &[StepId::DockerVerify]
    }

    fn preflight(&self, host: &Host, settings: &Settings, _mode: Mode) -> Result<()> {
        if host.live && settings.profile.docker.build_check {
            require_tool(host, "su", "util-linux")?;
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        if !host.live {
            return Ok(State::NotApplicable("offline root".to_string()));
        }
        if !host.is_root() {
            // su would ask for a password: only root starts a job as the runner.
            return Ok(State::NotApplicable(
                "not root: only root can start a job as gitlab-runner".to_string(),
            ));
        }
        if !settings.profile.docker.build_check {
            return Ok(State::NotApplicable(
                "turned off (--skip-build or [docker] build_check = false)".to_string(),
            ));
        }
        let limit = settings.profile.docker.verify_timeout;
        host.progress(&format!("building a throwaway image as {ACCOUNT}"));
        let out = host.probe(
            Cmd::new("su")
                .args(["-s", "/bin/bash", ACCOUNT, "-c", "bash -l"])
                .stdin(job_script(&job_environment(host)?))
                .timeout(Duration::from_secs(limit)),
        )?;
        if out.timed_out {
            remove_leftovers(host);
            return Err(Diagnosis::TimedOut(limit).into());
        }
        let driver = marked(&out.stdout, "driver").filter(|d| !d.is_empty());
        if !out.success() || driver.is_none() {
            remove_leftovers(host);
            return Err(diagnose(&format!("{}\n{}", out.stdout, out.stderr)).into());
        }
        let driver = driver.unwrap_or_default();
        host.detail("driver", json!(driver));
        if let Some(ms) = marked(&out.stdout, "build_ms").and_then(|m| m.parse::<u64>().ok()) {
            host.detail("build_ms", json!(ms));
        }
        let wanted = &settings.profile.docker.storage_driver;
        if driver != wanted {
            anyhow::bail!(
                "a job's build stored its image with the storage driver {driver}, not {wanted}: the daemon has not picked up /etc/docker/daemon.json; restart docker"
            );
        }
        Ok(State::Done)
    }

    /// `plan` changes nothing and spawns nothing: the build runs in `apply`
    /// and `verify`.
    fn plan_check(&self, _host: &Host, _settings: &Settings) -> Result<State> {
        Ok(State::NotApplicable(
            "builds only in apply and verify".to_string(),
        ))
    }

    fn apply(&self, _host: &Host, _settings: &Settings) -> Result<Vec<String>> {
        // check never finds work to do: it passes or names the fault.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_named_in_the_operators_words() {
        let cases = [
            (
                "Step 2/2 : COPY probe /probe\nfailed to copy files: copy file range failed: no space left on device",
                "disk full",
            ),
            (
                "Got permission denied while trying to connect to the Docker daemon socket at unix:///var/run/docker.sock",
                "permission denied on the Docker socket",
            ),
            (
                "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
                "daemon is down",
            ),
            (
                "Error response from daemon: error creating overlay mount to /var/lib/docker/overlay2/x/merged: invalid argument",
                "cannot mount image layers",
            ),
            (
                "mkdir /var/lib/docker/tmp/docker-builder1: read-only file system",
                "read-only filesystem",
            ),
            // Each way the storage driver says it cannot mount, alone.
            (
                "error creating overlay mount to /var/lib/docker/overlay2/x/merged: no such device",
                "cannot mount image layers",
            ),
            (
                "failed to mount /tmp/containerd-mount123: operation not permitted",
                "cannot mount image layers",
            ),
            (
                "Error starting daemon: error initializing graphdriver: driver not supported",
                "cannot mount image layers",
            ),
            (
                "mount source: \"overlay\", target: \"/x\": invalid argument",
                "cannot mount image layers",
            ),
            // An invalid argument that is no mount is another failure.
            (
                "unknown flag: --squash\ninvalid argument \"x\" for \"--tag\" flag",
                "failed: unknown flag: --squash; invalid argument",
            ),
            (
                "something else\nentirely",
                "failed: something else; entirely",
            ),
        ];
        for (output, want) in cases {
            let got = diagnose(output).to_string();
            assert!(got.contains(want), "{output:?} -> {got}");
        }
    }

    #[test]
    fn the_script_exports_the_runner_environment_quoted() {
        let script = job_script(&["DOCKER_DRIVER=overlay2".into(), "A=it's $(x)".into()]);
        assert!(
            script.contains("export DOCKER_DRIVER=overlay2\n"),
            "{script}"
        );
        assert!(script.contains(r"export 'A=it'\''s $(x)'"), "{script}");
        assert!(script.contains("FROM scratch"));
        assert!(script.contains("trap "));
    }

    /// Answers the build (`su`) with `build` and `docker images` with `leftover`.
    struct FailedBuild {
        build: (i32, &'static str),
        leftover: &'static str,
        seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    }

    impl crate::host::command::Runner for FailedBuild {
        fn run(&self, cmd: &Cmd) -> std::io::Result<crate::host::command::Output> {
            self.seen.lock().expect("lock").push(cmd.display());
            let (code, stdout) = match cmd.argv[..2].join(" ").as_str() {
                "su -s" => self.build,
                "docker images" => (0, self.leftover),
                _ => (0, ""),
            };
            Ok(crate::host::command::Output {
                code: Some(code),
                stdout: stdout.to_string(),
                ..Default::default()
            })
        }
    }

    #[test]
    fn a_failed_build_removes_the_images_it_left_and_only_those() {
        let full = (1, "failed to copy files: no space left on device\n");
        // Exit 0 without the driver line: the script did not get that far.
        let cut_short = (0, "Successfully built 0123abcd\n");
        for (build, leftover, said, removed) in [
            (
                full,
                "1a2b3c\n4d5e6f\n",
                "disk full",
                Some("docker image rm --force 1a2b3c 4d5e6f"),
            ),
            (full, "", "disk full", None),
            (
                cut_short,
                "9f9f9f\n",
                "a job's `docker build` failed: Successfully built 0123abcd",
                Some("docker image rm --force 9f9f9f"),
            ),
        ] {
            let fake = crate::testing::FakeHost::debian12();
            let seen = std::sync::Arc::default();
            let runner = FailedBuild {
                build,
                leftover,
                seen: std::sync::Arc::clone(&seen),
            };
            let reporter = fake.reporter(crate::report::Format::Json);
            let host = fake.host_with(Box::new(runner), reporter);
            let settings = fake.settings(None);
            let err = DockerBuild
                .check(&host, &settings)
                .expect_err("the build failed");
            assert!(err.to_string().contains(said), "{err}");
            let seen = seen.lock().expect("lock").clone();
            let rm: Vec<&String> = seen.iter().filter(|c| c.contains(" rm ")).collect();
            assert_eq!(rm.first().map(|c| c.as_str()), removed, "{seen:#?}");
            assert!(rm.len() <= 1, "{seen:#?}");
        }
    }

    #[test]
    fn only_shell_variable_names_are_exported() {
        // `export 1A=x` or `export A-B=x` fails the whole script under `set -e`.
        for (name, valid) in [
            ("DOCKER_DRIVER", true),
            ("_private1", true),
            ("a", true),
            ("", false),
            ("1A", false),
            ("A-B", false),
            ("A B", false),
            ("É", false),
        ] {
            assert_eq!(valid_name(name), valid, "{name:?}");
        }
    }

    #[test]
    fn marks_are_read_from_the_output() {
        let out = "Step 1/2 : FROM scratch\nrunner-provision-build:build_ms=812\nrunner-provision-build:driver=overlay2\n";
        assert_eq!(marked(out, "driver"), Some("overlay2"));
        assert_eq!(marked(out, "build_ms"), Some("812"));
        assert_eq!(marked(out, "nothing"), None);
    }
}
