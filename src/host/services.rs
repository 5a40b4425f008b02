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
    /// The parent's pid (`PPid:`).
    pub ppid: u32,
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

    /// Every live process: pid, command name and parent pid (zombies,
    /// which have stopped, left out).
    fn process_table(&self) -> Result<Vec<(u32, String, u32)>> {
        let mut table = Vec::new();
        for entry in self.files.list("/proc")? {
            let Ok(pid) = entry.parse::<u32>() else {
                continue;
            };
            // A process can exit between listing and reading: not an error.
            let Ok(Some(status)) = self.files.read(&format!("/proc/{pid}/status")) else {
                continue;
            };
            if is_zombie(&status) {
                continue;
            }
            let field = |name: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(name))
                    .map(str::trim)
            };
            let name = field("Name:").unwrap_or_default().to_string();
            let ppid = field("PPid:").and_then(|v| v.parse().ok()).unwrap_or(0);
            table.push((pid, name, ppid));
        }
        Ok(table)
    }

    /// The runner service's own processes: every `gitlab-runner` with no
    /// `gitlab-runner` among its ancestors (a job's helpers, such as
    /// `gitlab-runner artifacts-uploader`, run under the job's shell).
    pub fn runner_main_pids(&self) -> Result<Vec<u32>> {
        let table = self.process_table()?;
        let parent = |pid: u32| {
            table
                .iter()
                .find(|p| p.0 == pid)
                .map(|p| (p.1.as_str(), p.2))
        };
        Ok(table
            .iter()
            .filter(|(_, name, _)| name == RUNNER)
            .filter(|(_, _, ppid)| {
                let mut up = *ppid;
                // Bounded: a table read while processes come and go could loop.
                for _ in 0..64 {
                    match parent(up) {
                        Some((name, _)) if name == RUNNER => return false,
                        Some((_, next)) if next != up && up > 1 => up = next,
                        _ => return true,
                    }
                }
                true
            })
            .map(|(pid, _, _)| *pid)
            .collect())
    }

    /// The runner's running jobs: the child processes of its main processes
    /// (the shell executor starts each job as one: `bash --login`, or `su …`
    /// with `--user`). Executors that run jobs elsewhere (docker) have none.
    pub fn runner_jobs(&self, pids: &[u32]) -> Result<usize> {
        Ok(self
            .process_table()?
            .iter()
            .filter(|(_, _, ppid)| pids.contains(ppid))
            .count())
    }

    /// Stops gitlab-runner without killing a running job: SIGQUIT to its
    /// main process (GitLab Runner then takes no new job and exits when its
    /// running jobs have ended; `commands/multi.go`) and a wait of up to
    /// `timeout` that says how many jobs it waits for; `why` ends the
    /// warning's sentence. Returns the jobs it waited for and the seconds
    /// it took, `None` when no runner runs. A runner still busy at the
    /// timeout is an error that says what happens next.
    pub fn stop_runner_gracefully(
        &self,
        step: &str,
        timeout: std::time::Duration,
        why: &str,
    ) -> Result<Option<(usize, u64)>> {
        use nix::sys::signal::Signal;
        if !self.live {
            return Ok(None);
        }
        let pids = self.runner_main_pids()?;
        if pids.is_empty() {
            return Ok(None);
        }
        let started = self.now();
        let jobs = self.runner_jobs(&pids)?;
        let secs = timeout.as_secs();
        if jobs > 0 {
            self.warn(
                step,
                &format!(
                    "{RUNNER} is running {}: stopping it gracefully (SIGQUIT: it takes no new job) and waiting up to {secs} s for {} to finish before it {why}",
                    plural(jobs, "job"),
                    if jobs == 1 { "it" } else { "them" }
                ),
            );
        }
        self.progress(&format!(
            "stopping {RUNNER} gracefully (SIGQUIT), waiting for {}",
            plural(jobs, "running job")
        ));
        if self.os.systemd {
            self.run(Cmd::new("systemctl").args([
                "kill",
                "--signal=SIGQUIT",
                "--kill-who=main",
                RUNNER,
            ]))?;
        } else {
            for pid in &pids {
                self.signal(*pid, Signal::SIGQUIT)
                    .with_context(|| format!("telling {RUNNER} to stop"))?;
            }
        }
        let deadline = self.now() + timeout;
        let mut waiting_for = jobs;
        loop {
            let alive: Vec<u32> = pids
                .iter()
                .copied()
                .filter(|pid| self.is_comm(*pid, RUNNER))
                .collect();
            if alive.is_empty() {
                break;
            }
            let left = self.runner_jobs(&alive)?;
            if left != waiting_for {
                waiting_for = left;
                self.progress(&format!(
                    "stopping {RUNNER} gracefully (SIGQUIT), waiting for {}",
                    plural(left, "running job")
                ));
            }
            if self.now() >= deadline {
                let then = if self.os.systemd {
                    "systemd starts it again when they have ended (the packaged unit has Restart=always, RestartSec=120), or run apply again then".to_string()
                } else {
                    format!("start it again then with `service {RUNNER} start`, or run apply again")
                };
                anyhow::bail!(
                    "{RUNNER} (pid {}) got SIGQUIT and is still finishing {} after {secs} s: it takes no new job and exits when they end; {then}. Raise [runner] shutdown_timeout (--shutdown-timeout) to wait longer, or run `systemctl restart {RUNNER}` to abort the jobs",
                    alive
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                    plural(left, "running job")
                );
            }
            self.sleep(std::time::Duration::from_millis(200));
        }
        Ok(Some((jobs, (self.now() - started).as_secs())))
    }

    /// Restarts gitlab-runner without killing a running job: the graceful
    /// stop above, then a start. The packaged unit sends SIGTERM on stop,
    /// which aborts jobs, so `systemctl restart` alone is not graceful.
    /// `why` ends the sentence ("so that it listens on …"). `None` when no
    /// runner runs (it reads the new settings when it starts).
    pub fn restart_runner_gracefully(
        &self,
        step: &str,
        timeout: std::time::Duration,
        why: &str,
    ) -> Result<Option<String>> {
        let Some((jobs, waited)) =
            self.stop_runner_gracefully(step, timeout, &format!("restarts {why}"))?
        else {
            return Ok(None);
        };
        self.progress(&format!("starting {RUNNER}"));
        // restart, not start: under systemd the unit may be waiting out
        // RestartSec after the exit; restart starts it now either way.
        self.service(RUNNER, "restart")?;
        Ok(Some(if jobs > 0 {
            format!(
                "restarted {RUNNER} gracefully {why}, after its {} finished ({waited} s)",
                plural(jobs, "running job")
            )
        } else {
            // Jobs of executors that run them elsewhere (docker) are not
            // child processes: waited for all the same, not counted.
            format!("restarted {RUNNER} gracefully (SIGQUIT, it exited after {waited} s) {why}")
        }))
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
                    && !is_zombie(&s)
            })
    }

    /// The TCP addresses something listens on in this network namespace
    /// (/proc/net/tcp and tcp6).
    pub fn tcp_listeners(&self) -> Result<Vec<(std::net::IpAddr, u16)>> {
        let mut found = Vec::new();
        for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
            if let Some(text) = self.files.read(table)? {
                found.extend(parse_tcp_listeners(&text));
            }
        }
        Ok(found)
    }
}

const RUNNER: &str = "gitlab-runner";

fn is_zombie(status: &str) -> bool {
    status
        .lines()
        .any(|l| l.starts_with("State:") && l.contains('Z'))
}

fn plural(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The listening sockets of a /proc/net/tcp or tcp6 table: state `0A`, the
/// local address in the kernel's hex (each 32-bit word in host byte order,
/// little-endian here), the port big-endian.
fn parse_tcp_listeners(text: &str) -> Vec<(std::net::IpAddr, u16)> {
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields.get(3) != Some(&"0A") {
                return None;
            }
            let (addr, port) = fields.get(1)?.split_once(':')?;
            let port = u16::from_str_radix(port, 16).ok()?;
            let words: Vec<u32> = (0..addr.len() / 8)
                .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
                .collect::<Option<_>>()?;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let ip = match bytes.len() {
                4 => std::net::IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?),
                16 => std::net::IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?),
                _ => return None,
            };
            Some((ip, port))
        })
        .collect()
}

fn parse_status(pid: u32, status: &str, comm: &str) -> Option<Process> {
    let mut name = None;
    let mut uid = None;
    let mut ppid = 0;
    let mut groups = Vec::new();
    for line in status.lines() {
        if let Some(v) = line.strip_prefix("Name:") {
            name = Some(v.trim());
        } else if let Some(v) = line.strip_prefix("PPid:") {
            ppid = v.trim().parse().unwrap_or(0);
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
        ppid,
        uid: uid?,
        groups,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parsing_reads_uid_and_groups() {
        let status = "Name:\tgitlab-runner\nUmask:\t0022\nPPid:\t1\nUid:\t999\t999\t999\t999\nGid:\t999\t999\t999\t999\nGroups:\t999 998 \n";
        assert_eq!(
            parse_status(42, status, "gitlab-runner"),
            Some(Process {
                pid: 42,
                ppid: 1,
                uid: 999,
                groups: vec![999, 998]
            })
        );
        assert_eq!(parse_status(42, status, "dockerd"), None);
    }

    #[test]
    fn listening_sockets_are_read_from_the_kernel_tables() {
        let v4 = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n   0: 0100007F:2424 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1\n   1: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 2 1\n   2: 0100007F:2424 0100007F:9C40 01 00000000:00000000 00:00000000 00000000     0        0 3 1\n";
        assert_eq!(
            parse_tcp_listeners(v4),
            vec![
                ("127.0.0.1".parse().expect("ip"), 9252),
                ("0.0.0.0".parse().expect("ip"), 22)
            ]
        );
        let v6 = "  sl  local_address                         remote_address                        st\n   0: 00000000000000000000000001000000:2424 00000000000000000000000000000000:0000 0A\n   1: 00000000000000000000000000000000:0050 00000000000000000000000000000000:0000 0A\n   2: garbage\n";
        assert_eq!(
            parse_tcp_listeners(v6),
            vec![
                ("::1".parse().expect("ip"), 9252),
                ("::".parse().expect("ip"), 80)
            ]
        );
        assert!(parse_tcp_listeners("").is_empty());
    }
}
