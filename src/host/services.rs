//! Services and processes: enabled/running state read from the filesystem
//! and /proc, start/enable/restart through systemctl where systemd is PID 1
//! and through `service`/`update-rc.d` elsewhere.

use anyhow::{Context, Result};

use super::Host;
use super::command::{Cmd, CommandError};

/// A process found in /proc.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Process {
    pub pid: u32,
    pub uid: u32,
    /// Supplementary groups (the `Groups:` line of /proc/PID/status).
    pub groups: Vec<u32>,
}

impl Host {
    /// Is `unit` enabled? systemd: a symlink in some `*.wants` folder of
    /// /etc/systemd/system; SysV: an S link in /etc/rc2.d. Where the init
    /// system is unknown (offline root) either counts.
    pub fn service_enabled(&self, name: &str) -> Result<bool> {
        let unit = format!("{name}.service");
        let systemd = self.systemd_wants(&unit)?;
        let sysv = self
            .files
            .list("/etc/rc2.d")?
            .iter()
            .any(|f| f.starts_with('S') && f.get(3..) == Some(name));
        Ok(if !self.live {
            systemd || sysv
        } else if self.os.systemd {
            systemd
        } else {
            sysv
        })
    }

    fn systemd_wants(&self, unit: &str) -> Result<bool> {
        for dir in self.files.list("/etc/systemd/system")? {
            if dir.ends_with(".wants")
                && self
                    .files
                    .exists(&format!("/etc/systemd/system/{dir}/{unit}"))
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn service_enable(&self, name: &str) -> Result<(), CommandError> {
        if self.os.systemd || !self.live {
            self.run(Cmd::new("systemctl").args(["enable", name]))
                .map(drop)
        } else {
            self.run(Cmd::new("update-rc.d").args([name, "defaults"]))
                .map(drop)
        }
    }

    /// `action` is start, stop or restart.
    pub fn service(&self, name: &str, action: &str) -> Result<(), CommandError> {
        if self.os.systemd {
            self.run(Cmd::new("systemctl").args([action, name]))
                .map(drop)
        } else {
            self.run(Cmd::new("service").args([name, action])).map(drop)
        }
    }

    /// Is the process named in `pidfile` alive and called `comm`?
    pub fn pidfile_running(&self, pidfile: &str, comm: &str) -> Result<bool> {
        let Some(text) = self.files.read(pidfile)? else {
            return Ok(false);
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            return Ok(false);
        };
        Ok(self
            .files
            .read(&format!("/proc/{pid}/comm"))
            .ok()
            .flatten()
            .is_some_and(|c| c.trim() == comm))
    }

    /// Every live process whose command name is `comm`.
    pub fn processes(&self, comm: &str) -> Result<Vec<Process>> {
        let mut found = Vec::new();
        for entry in self.files.list("/proc")? {
            let Ok(pid) = entry.parse::<u32>() else {
                continue;
            };
            // A process can exit between listing and reading: not an error.
            let Ok(Some(status)) = self.files.read(&format!("/proc/{pid}/status")) else {
                continue;
            };
            if let Some(process) = parse_status(pid, &status, comm) {
                found.push(process);
            }
        }
        Ok(found)
    }

    /// The environment of a live process (`/proc/PID/environ`); `None` when
    /// it has exited.
    pub fn process_environment(&self, pid: u32) -> Result<Option<Vec<(String, String)>>> {
        let Some(bytes) = self.files.read_bytes(&format!("/proc/{pid}/environ"))? else {
            return Ok(None);
        };
        Ok(Some(
            bytes
                .split(|b| *b == 0)
                .filter_map(|entry| {
                    let entry = String::from_utf8_lossy(entry);
                    let (k, v) = entry.split_once('=')?;
                    Some((k.to_string(), v.to_string()))
                })
                .collect(),
        ))
    }

    /// Restarts a service without killing its work: SIGQUIT to each of its
    /// processes named `comm` (GitLab Runner then takes no new job and exits
    /// when its running jobs have ended), waits up to `timeout` for them to
    /// exit, then restarts the service. Returns false when they were still
    /// finishing jobs at the timeout: the service was not restarted then
    /// (systemd's `Restart=` starts it when they end).
    pub fn restart_gracefully(
        &self,
        name: &str,
        comm: &str,
        timeout: std::time::Duration,
    ) -> Result<bool> {
        use nix::sys::signal::Signal;
        let pids: Vec<u32> = self.processes(comm)?.iter().map(|p| p.pid).collect();
        for pid in &pids {
            self.signal(*pid, Signal::SIGQUIT)
                .with_context(|| format!("telling {comm} to stop"))?;
        }
        let deadline = self.now() + timeout;
        while pids.iter().any(|pid| {
            self.files.exists(&format!("/proc/{pid}/status")) && self.is_comm(*pid, comm)
        }) {
            if self.now() >= deadline {
                return Ok(false);
            }
            self.sleep(std::time::Duration::from_millis(100));
        }
        self.service(name, "restart")?;
        Ok(true)
    }

    /// Restarts service `name` when its process (`comm`, pid in `pidfile`)
    /// runs on a live host, so that it reads a changed configuration (`why`:
    /// "to apply /etc/docker/daemon.json"); says whether it did. A failed
    /// restart says whether the old process still runs or the service is
    /// down now.
    pub fn restart_if_running(
        &self,
        name: &str,
        pidfile: &str,
        comm: &str,
        why: &str,
    ) -> Result<bool> {
        if !self.live || !self.pidfile_running(pidfile, comm)? {
            return Ok(false);
        }
        self.progress(&format!("restarting {name}"));
        if let Err(e) = self.service(name, "restart") {
            let state = if self.pidfile_running(pidfile, comm)? {
                format!("{name} is still running with its old settings")
            } else {
                format!("{name} is stopped now; fix the cause, then run apply again")
            };
            return Err(anyhow::Error::new(e).context(format!("restarting {name} {why} ({state})")));
        }
        Ok(true)
    }

    fn is_comm(&self, pid: u32, comm: &str) -> bool {
        // A zombie keeps its /proc entry until reaped: it has stopped.
        self.files
            .read(&format!("/proc/{pid}/status"))
            .ok()
            .flatten()
            .is_some_and(|s| {
                s.lines()
                    .any(|l| l.starts_with("Name:") && l[5..].trim() == comm)
                    && !s
                        .lines()
                        .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
    }
}

fn parse_status(pid: u32, status: &str, comm: &str) -> Option<Process> {
    let mut name = None;
    let mut uid = None;
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("Uid:") {
            uid = v.split_whitespace().next().and_then(|u| u.parse().ok());
        } else if let Some(v) = line.strip_prefix("Groups:") {
            groups = v
                .split_whitespace()
                .filter_map(|g| g.parse().ok())
                .collect();
        }
    }
    (name? == comm).then_some(Process {
        pid,
        uid: uid?,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing_reads_uid_and_groups() {
        let status = "Name:\tgitlab-runner\nUmask:\t0022\nUid:\t999\t999\t999\t999\nGid:\t999\t999\t999\t999\nGroups:\t999 998 \n";
        assert_eq!(
            parse_status(42, status, "gitlab-runner"),
            Some(Process {
                pid: 42,
                uid: 999,
                groups: vec![999, 998]
            })
        );
        assert_eq!(parse_status(42, status, "dockerd"), None);
    }
}
