//! docker-verify: `docker info`, as the runner account with a login
//! environment (as a shell job runs), answers with the expected driver.

use std::time::Duration;

use anyhow::Result;

use super::{Change, Mode, Settings, State, Step, StepId, require_tool};
use crate::host::Host;
use crate::host::command::{Cmd, Output};

pub struct DockerVerify;

const ACCOUNT: &str = "gitlab-runner";

/// Why `docker info` did not answer as it should, with the fix.
#[derive(Debug, thiserror::Error)]
enum Diagnosis {
    #[error(
        "{ACCOUNT} cannot open /var/run/docker.sock (permission denied): it is not in group docker, or the process that runs jobs started before it joined; run the docker-group step, then `systemctl restart gitlab-runner`"
    )]
    SocketPermission,
    #[error(
        "the Docker daemon is not running or not answering: start it with `systemctl start docker` (or `service docker start`) and read `journalctl -u docker` or /var/log/docker.log for why it stopped"
    )]
    DaemonDown,
    #[error("Docker uses the storage driver {found}, not {wanted}: {hint}")]
    WrongDriver {
        found: String,
        wanted: String,
        hint: &'static str,
    },
    #[error("`docker info` as {ACCOUNT} failed: {0}")]
    Other(String),
}

enum Answer {
    Driver(String),
    NotYet,
}

fn docker_info(host: &Host) -> Result<Answer> {
    let out: Output = host.probe(
        Cmd::new("runuser")
            .args(["-l", ACCOUNT, "-c", "docker info --format '{{.Driver}}'"])
            .timeout(Duration::from_secs(30)),
    )?;
    if out.success() {
        return Ok(Answer::Driver(out.stdout.trim().to_string()));
    }
    if out.timed_out {
        return Ok(Answer::NotYet);
    }
    if let Some(answer) = diagnose_message(&out)? {
        return Ok(answer);
    }
    // Docker 20.10's client (Debian 12's docker.io) prints only a template
    // error such as `nil pointer evaluating *types.Info.Driver` when `--format`
    // meets a daemon it could not reach: ask the socket, then the client
    // without a template, whose full message names the cause.
    if host.docker_driver_via_socket().ok().flatten().is_none() {
        return Ok(Answer::NotYet);
    }
    if !account_may_use_socket(host)? {
        return Err(Diagnosis::SocketPermission.into());
    }
    let full = host.probe(
        Cmd::new("runuser")
            .args(["-l", ACCOUNT, "-c", "docker info"])
            .timeout(Duration::from_secs(30)),
    )?;
    if let Some(answer) = diagnose_message(&full)? {
        return Ok(answer);
    }
    Err(Diagnosis::Other(last_lines(&format!("{}\n{}", out.stderr, full.stderr))).into())
}

/// The diagnosis a client message carries, if it names a known cause.
fn diagnose_message(out: &Output) -> Result<Option<Answer>> {
    let text = format!("{}\n{}", out.stderr, out.stdout).to_lowercase();
    if text.contains("permission denied") {
        return Err(Diagnosis::SocketPermission.into());
    }
    if text.contains("cannot connect to the docker daemon")
        || text.contains("is the docker daemon running")
    {
        return Ok(Some(Answer::NotYet));
    }
    Ok(None)
}

/// The last few non-empty lines of a message, for an error.
fn last_lines(text: &str) -> String {
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines[lines.len().saturating_sub(4)..].join("; ")
}

/// Whether the socket's owner, group and mode let the runner account open
/// it (true when there is no socket or account to judge by).
fn account_may_use_socket(host: &Host) -> Result<bool> {
    let (Some(socket), Some(user)) = (host.docker_socket_access()?, host.accounts.user(ACCOUNT)?)
    else {
        return Ok(true);
    };
    let groups = host.accounts.group("docker")?;
    let in_group = user.gid == socket.gid
        || groups.is_some_and(|g| g.gid == socket.gid && g.members.contains(&user.name));
    Ok((user.uid == socket.uid && socket.mode & 0o600 == 0o600)
        || (in_group && socket.mode & 0o060 == 0o060)
        || socket.mode & 0o006 == 0o006)
}

fn judge(found: String, wanted: &str) -> Result<State> {
    if found == wanted {
        return Ok(State::Done);
    }
    let hint = if found == "vfs" {
        "overlay is unavailable to the daemon (is the overlay module loaded? see the overlay-module step and `dmesg`)"
    } else {
        "the daemon has not picked up /etc/docker/daemon.json; restart docker"
    };
    Err(Diagnosis::WrongDriver {
        found,
        wanted: wanted.to_string(),
        hint,
    }
    .into())
}

impl Step for DockerVerify {
    fn needs(&self) -> &'static [StepId] {
        &[
            StepId::DockerInstall,
            StepId::DockerGroup,
            StepId::DockerDriver,
        ]
    }

    fn preflight(&self, host: &Host, _settings: &Settings, _mode: Mode) -> Result<()> {
        if host.live {
            require_tool(host, "runuser", "util-linux")
        } else {
            Ok(())
        }
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        if !host.live {
            return Ok(State::NotApplicable("offline root".to_string()));
        }
        match docker_info(host)? {
            Answer::Driver(found) => judge(found, &settings.profile.docker.storage_driver),
            Answer::NotYet => Ok(not_answering(settings)),
        }
    }

    /// Asks the daemon over its socket (no process) and infers from the
    /// socket's owner and mode whether the runner account may use it.
    fn plan_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        if !host.live {
            return Ok(State::NotApplicable("offline root".to_string()));
        }
        let Some(found) = host.docker_driver_via_socket()? else {
            return Ok(not_answering(settings));
        };
        if !account_may_use_socket(host)? {
            return Err(Diagnosis::SocketPermission.into());
        }
        judge(found, &settings.profile.docker.storage_driver)
    }

    /// Waits with backoff for the daemon to answer on its socket (cheap, in
    /// process), then runs `docker info` as the runner account once.
    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let limit = Duration::from_secs(settings.profile.docker.verify_timeout);
        let deadline = host.now() + limit;
        let mut delay = Duration::from_millis(100);
        loop {
            host.progress("waiting for the Docker daemon");
            if host.docker_driver_via_socket().ok().flatten().is_some() {
                if let Answer::Driver(found) = docker_info(host)? {
                    judge(found, &settings.profile.docker.storage_driver)?;
                    return Ok(Vec::new());
                }
            }
            let now = host.now();
            if now >= deadline {
                return Err(anyhow::Error::new(Diagnosis::DaemonDown).context(format!(
                    "no answer from the Docker daemon within {} s",
                    limit.as_secs()
                )));
            }
            host.sleep(delay.min(deadline - now));
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

fn not_answering(settings: &Settings) -> State {
    State::Pending(vec![Change::new(format!(
        "wait up to {} s for the Docker daemon, which does not answer now",
        settings.profile.docker.verify_timeout
    ))])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn output(stderr: &str) -> Output {
        Output {
            code: Some(1),
            stderr: stderr.to_string(),
            ..Output::default()
        }
    }

    #[test]
    fn either_words_of_a_daemon_not_running_mean_not_yet() {
        for text in [
            "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?",
            "Cannot connect to the Docker daemon at tcp://127.0.0.1:2375",
            "error during connect: Is the docker daemon running?",
        ] {
            let answer = diagnose_message(&output(text)).expect("no error");
            assert!(matches!(answer, Some(Answer::NotYet)), "{text}");
        }
        let other = diagnose_message(&output("template: :1:2: nil pointer")).expect("no error");
        assert!(other.is_none());
        assert!(
            diagnose_message(&output(
                "dial unix /var/run/docker.sock: connect: permission denied"
            ))
            .is_err()
        );
    }

    #[test]
    fn a_wrong_driver_is_explained_by_what_it_is() {
        assert_eq!(
            judge("overlay2".into(), "overlay2").expect("same"),
            State::Done
        );
        let vfs = judge("vfs".into(), "overlay2")
            .expect_err("vfs")
            .to_string();
        assert!(
            vfs.contains("overlay is unavailable to the daemon"),
            "{vfs}"
        );
        let btrfs = judge("btrfs".into(), "overlay2")
            .expect_err("btrfs")
            .to_string();
        assert!(
            btrfs.contains("has not picked up /etc/docker/daemon.json"),
            "{btrfs}"
        );
    }

    #[test]
    fn an_error_keeps_the_last_four_lines_that_say_something() {
        assert_eq!(
            last_lines("one\n\n  two  \nthree\n \nfour\nfive\n"),
            "two; three; four; five"
        );
        assert_eq!(last_lines("only\n\n"), "only");
        assert_eq!(last_lines(""), "");
    }
}
