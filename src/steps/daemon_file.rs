//! Writing /etc/docker/daemon.json and restarting dockerd to read it, for
//! every step that changes the file (docker-driver, docker-daemon): checked
//! first by `dockerd --validate` where dockerd has it (23.0 and later;
//! Debian 12's docker.io 20.10 has not), written atomically, and rolled
//! back when dockerd does not come back up: the previous bytes restored (or
//! the file removed when there was none), systemd's start limit reset,
//! Docker started again, and the step failed quoting dockerd's own error.

use anyhow::{Result, bail};

use super::{DAEMON_JSON, StepId};
use crate::host::Host;
use crate::host::command::Cmd;

/// Where the candidate file is written for `dockerd --validate` (beside the
/// real one; removed at once).
const CANDIDATE: &str = "/etc/docker/.daemon.json.runner-provision";

/// Writes `new` over daemon.json (whose bytes were `before`) and restarts a
/// running dockerd; what it did goes to `done`. An error after the write
/// says whether the previous file is back and Docker runs again.
pub(super) fn write_and_restart(
    host: &Host,
    step: StepId,
    before: Option<&[u8]>,
    new: &str,
    done: &mut Vec<String>,
) -> Result<()> {
    host.files.create_dir("/etc/docker", 0o755)?;
    validate(host, new)?;
    host.files
        .write_atomic(DAEMON_JSON, new.as_bytes(), 0o644)?;
    let since = host.unix_time();
    if host.live && host.os.systemd {
        // Every start counts against the unit's start limit (Debian's: 3
        // in 60 s), and a fresh apply starts Docker with its install and
        // restarts it for the driver and the settings: without a reset, the
        // next restart within the minute is refused before dockerd runs.
        host.probe(Cmd::new("systemctl").args(["reset-failed", "docker.service"]))?;
    }
    let why = format!("to apply {DAEMON_JSON}");
    match host.restart_if_running("docker", "/run/docker.pid", "dockerd", &why) {
        Ok(true) => {
            done.push("restarted docker".to_string());
            Ok(())
        }
        Ok(false) => Ok(()),
        Err(restart) => {
            let quoted = dockerd_error(host, since)
                .unwrap_or_else(|| last_line(&format!("{restart:#}")).to_string());
            let back = roll_back(host, step, before);
            let reason = format!(
                "dockerd did not start with the new {DAEMON_JSON}: \"{}\"",
                quoted.trim()
            );
            match back {
                Ok(restored) => bail!(
                    "{reason}; rolled back: {restored} and started docker again; fix the setting in the profile and run apply again"
                ),
                Err(e) => bail!(
                    "{reason}; rolling back failed, docker may be down: {e:#}; restore {DAEMON_JSON} by hand and run `systemctl reset-failed docker && systemctl start docker`"
                ),
            }
        }
    }
}

/// `dockerd --validate --config-file` on the new text, where dockerd has
/// the flag; a refusal changes nothing.
fn validate(host: &Host, new: &str) -> Result<()> {
    if host.which("dockerd").is_none() {
        return Ok(());
    }
    // A dockerd that cannot even print its help (an image's, under
    // chroot) has nothing to say about the file.
    let Ok(help) = host.probe(Cmd::new("dockerd").arg("--help")) else {
        return Ok(());
    };
    if !format!("{}{}", help.stdout, help.stderr).contains("--validate") {
        return Ok(());
    }
    host.files.write_atomic(CANDIDATE, new.as_bytes(), 0o600)?;
    let checked = host.probe(Cmd::new("dockerd").args(["--validate", "--config-file", CANDIDATE]));
    host.files.remove(CANDIDATE)?;
    let checked = checked?;
    if checked.code != Some(0) {
        let said = format!("{}\n{}", checked.stdout, checked.stderr);
        bail!(
            "dockerd --validate refuses the new {DAEMON_JSON}: \"{}\"; nothing was changed: fix the setting in the profile and run apply again",
            last_line(&said.replace(CANDIDATE, DAEMON_JSON)).trim()
        );
    }
    Ok(())
}

/// The previous file back, systemd's start limit reset (a failed start
/// and systemd's own retries count against it), Docker started. Says what
/// it restored.
fn roll_back(host: &Host, step: StepId, before: Option<&[u8]>) -> Result<String> {
    let restored = match before {
        Some(bytes) => {
            host.files.write_atomic(DAEMON_JSON, bytes, 0o644)?;
            format!("restored the previous {DAEMON_JSON}")
        }
        None => {
            host.files.remove(DAEMON_JSON)?;
            format!("removed {DAEMON_JSON} (there was none before)")
        }
    };
    host.warn(
        step.as_str(),
        &format!("dockerd did not start with the new {DAEMON_JSON}: {restored}"),
    );
    if host.os.systemd {
        // docker.socket fails with the service when the start limit is hit.
        host.probe(Cmd::new("systemctl").args([
            "reset-failed",
            "docker.service",
            "docker.socket",
        ]))?;
    }
    host.service("docker", "start")?;
    Ok(restored)
}

/// dockerd's own error line from the journal of docker.service since
/// `since` (seconds since the epoch), when systemd keeps one.
fn dockerd_error(host: &Host, since: u64) -> Option<String> {
    if !host.os.systemd {
        return None;
    }
    let journal = host
        .probe(Cmd::new("journalctl").args([
            "--unit",
            "docker.service",
            "--since",
            &format!("@{since}"),
            "--no-pager",
            "--output",
            "cat",
        ]))
        .ok()?;
    error_line(&journal.stdout)
}

/// The line of a journal that says why dockerd stopped: the last one in
/// dockerd's words (`unable to configure the Docker daemon …`, `failed to
/// start daemon …`, a fatal log entry), not systemd's.
fn error_line(journal: &str) -> Option<String> {
    const DOCKERD: &[&str] = &[
        "unable to configure the Docker daemon",
        "failed to start daemon",
        "level=fatal",
        "Error starting daemon",
    ];
    journal
        .lines()
        .rev()
        .find(|line| DOCKERD.iter().any(|mark| line.contains(mark)))
        .map(str::to_string)
}

fn last_line(text: &str) -> &str {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockerds_own_line_is_found_among_systemds() {
        let journal = "Starting docker.service - Docker Application Container Engine...\nunable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives are specified both as a flag and in the configuration file: hosts: (from flag: [fd://], from file: [unix:///var/run/docker.sock])\ndocker.service: Main process exited, code=exited, status=1/FAILURE\ndocker.service: Failed with result 'exit-code'.\nFailed to start docker.service - Docker Application Container Engine.\n";
        assert_eq!(
            error_line(journal).as_deref(),
            Some(
                "unable to configure the Docker daemon with file /etc/docker/daemon.json: the following directives are specified both as a flag and in the configuration file: hosts: (from flag: [fd://], from file: [unix:///var/run/docker.sock])"
            )
        );
        let fatal = "time=\"2026-12-04T17:00:00Z\" level=info msg=\"Starting up\"\nfailed to start daemon: error initializing graphdriver: driver not supported\ndocker.service: Failed with result 'exit-code'.\n";
        assert_eq!(
            error_line(fatal).as_deref(),
            Some("failed to start daemon: error initializing graphdriver: driver not supported")
        );
        assert_eq!(
            error_line("docker.service: Failed with result 'exit-code'.\n"),
            None
        );
        assert_eq!(error_line(""), None);
    }
}
