//! runner-globals: `[global]`'s keys at the top of config.toml
//! (`concurrent`, `check_interval`, `shutdown_timeout`, `listen_address`),
//! every other byte of the file kept.
//!
//! What takes effect how (GitLab Runner's `commands/multi.go`): the running
//! process stats config.toml every 3 s (`ReloadConfigInterval`) and loads it
//! again when its modification time changed; `updateWorkers` reads
//! `concurrent`, `feedRunners` reads `check_interval` and the stop paths read
//! `shutdown_timeout` from the loaded config each time, so those three need
//! no restart. The metrics server is set up once, in `run()`, from
//! `listen_address`: a new address needs a restart, done gracefully
//! (running jobs finish first).

use std::time::Duration;

use anyhow::{Context, Result};

use super::{CONFIG_TOML, Change, Mode, Settings, State, Step, StepId};
use crate::edit::{diff, runner_globals};
use crate::host::Host;

const ID: StepId = StepId::RunnerGlobals;

pub struct RunnerGlobals;

/// config.toml's text ("" when there is none yet).
fn current(host: &Host) -> Result<String> {
    Ok(host.files.read(CONFIG_TOML)?.unwrap_or_default())
}

/// The metrics address a running runner should listen on but does not:
/// the file already names it, the process started before (or its restart
/// was cut short). `None` when nothing is to restart.
fn not_listening(host: &Host, text: &str) -> Result<Option<String>> {
    if !host.live {
        return Ok(None);
    }
    let Some(address) = runner_globals::listen_address(text)? else {
        return Ok(None);
    };
    let Ok(wanted) = runner_globals::parse_listen_address(&address) else {
        // GitLab Runner logs "invalid listen address" and runs without
        // metrics; a restart would not change that. Preflight refuses a
        // bad profile value, so this is someone else's.
        return Ok(None);
    };
    let pids = host.runner_main_pids()?;
    if pids.is_empty() || overridden(host, &pids)?.is_some() {
        return Ok(None);
    }
    let listening = host.tcp_listeners()?.into_iter().any(|(ip, port)| {
        port == wanted.port
            && match wanted.ip() {
                Some(want) => ip == want,
                // Every interface (`:9252`) listens on the unspecified
                // address; a host name resolves to whatever it resolves to.
                None if wanted.host.is_empty() => ip.is_unspecified(),
                None => true,
            }
    });
    Ok((!listening).then_some(address))
}

/// The metrics address a running runner was given on its command line
/// (`--listen-address`) or in its environment (`LISTEN_ADDRESS`, e.g. from
/// /etc/sysconfig/gitlab-runner): it wins over config.toml's
/// (`listenAddress()` in GitLab Runner's commands/config.go), so a restart
/// would not move the metrics server.
fn overridden(host: &Host, pids: &[u32]) -> Result<Option<String>> {
    for pid in pids {
        let argv: Vec<String> = host
            .files
            .read_bytes(&format!("/proc/{pid}/cmdline"))?
            .unwrap_or_default()
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        for (i, arg) in argv.iter().enumerate() {
            if let Some(value) = arg.strip_prefix("--listen-address=") {
                return Ok(Some(value.to_string()));
            }
            if arg == "--listen-address" {
                return Ok(Some(argv.get(i + 1).cloned().unwrap_or_default()));
            }
        }
        // Only root reads another user's environment; a plan run as
        // someone else judges by the command line alone.
        let env = host
            .process_environment(*pid)
            .ok()
            .flatten()
            .unwrap_or_default();
        if let Some((_, value)) = env
            .iter()
            .find(|(k, v)| k == "LISTEN_ADDRESS" && !v.is_empty())
        {
            return Ok(Some(value.clone()));
        }
    }
    Ok(None)
}

/// Waits (up to 10 s) for a restarted runner's metrics server to listen.
fn wait_for_metrics(host: &Host, text: &str) -> Result<()> {
    let deadline = host.now() + Duration::from_secs(10);
    while let Some(address) = not_listening(host, text)? {
        if host.now() >= deadline {
            anyhow::bail!(
                "gitlab-runner restarted but does not listen on {address} after 10 s: another program may hold the port, or the address is not this host's (see `journalctl -u gitlab-runner`: \"Failed to create listener for metrics server\"); free the port or choose another listen_address"
            );
        }
        host.sleep(Duration::from_millis(200));
    }
    Ok(())
}

impl Step for RunnerGlobals {
    fn needs(&self) -> &'static [StepId] {
        &[StepId::RunnerInstall]
    }

    fn preflight(&self, host: &Host, settings: &Settings, mode: Mode) -> Result<()> {
        let global = &settings.profile.global;
        if global.is_empty() {
            return Ok(());
        }
        // A file the edit cannot parse is refused before any step changes anything.
        runner_globals::changes(&current(host)?, global)
            .map_err(anyhow::Error::from)
            .with_context(|| format!("reading {CONFIG_TOML}"))?;
        if let Some(address) = global.listen_address.as_deref().filter(|a| !a.is_empty()) {
            let parsed = runner_globals::parse_listen_address(address)
                .map_err(|reason| anyhow::anyhow!("listen_address {address}: {reason}"))?;
            if host.live {
                if let Some(flag) = overridden(host, &host.runner_main_pids()?)? {
                    host.warn(
                        ID.as_str(),
                        &format!(
                            "gitlab-runner runs with --listen-address / LISTEN_ADDRESS {flag}, which wins over config.toml's listen_address: its metrics stay there until that setting goes"
                        ),
                    );
                }
            }
            let local =
                parsed.ip().is_some_and(|ip| ip.is_loopback()) || parsed.host == "localhost";
            if !local && mode != Mode::Verify {
                host.warn(
                    ID.as_str(),
                    &format!(
                        "listen_address {address} is reachable from other hosts: GitLab Runner serves /metrics, /debug/jobs/list and /debug/pprof there without authentication; prefer 127.0.0.1 behind a scraper, or firewall the port"
                    ),
                );
            }
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let global = &settings.profile.global;
        if global.is_empty() {
            return Ok(State::Done);
        }
        let text = current(host)?;
        let keys = runner_globals::changes(&text, global)?;
        if keys.is_empty() {
            return Ok(State::from_changes(
                not_listening(host, &text)?
                    .map(|address| {
                        Change::new(format!(
                            "restart gitlab-runner gracefully (SIGQUIT: running jobs finish): its metrics server does not listen on {address} yet"
                        ))
                    })
                    .into_iter()
                    .collect(),
            ));
        }
        let new = runner_globals::set(&text, global)?;
        let pids = if host.live {
            host.runner_main_pids()?
        } else {
            Vec::new()
        };
        let restart = keys.iter().any(|k| k.contains("listen_address"))
            && !pids.is_empty()
            && overridden(host, &pids)?.is_none();
        let mut changes = vec![Change::file(
            format!(
                "{} in {CONFIG_TOML} ({})",
                keys.join(", "),
                if restart {
                    "the metrics server moves only when gitlab-runner restarts: a graceful restart follows"
                } else {
                    "gitlab-runner reloads it by itself within 3 s, no restart"
                }
            ),
            diff::unified(CONFIG_TOML, &text, &new),
        )];
        if restart {
            changes.push(Change::new(
                "restart gitlab-runner gracefully (SIGQUIT: running jobs finish) for its new listen_address",
            ));
        }
        Ok(State::Pending(changes))
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        let global = &settings.profile.global;
        let mut done = Vec::new();
        let text = current(host)?;
        let keys = runner_globals::changes(&text, global)?;
        if !keys.is_empty() {
            let new = runner_globals::set(&text, global)?;
            host.files
                .create_dir("/etc/gitlab-runner", 0o700)
                .context("creating /etc/gitlab-runner")?;
            host.files
                .write_atomic(CONFIG_TOML, new.as_bytes(), 0o600)?;
            done.push(format!("{} in {CONFIG_TOML}", keys.join(", ")));
        }
        let moved = keys.iter().any(|k| k.contains("listen_address"))
            && host.live
            && overridden(host, &host.runner_main_pids()?)?.is_none();
        let text = current(host)?;
        if moved || not_listening(host, &text)?.is_some() {
            let why = match runner_globals::listen_address(&text)? {
                Some(address) => format!("so that its metrics server listens on {address}"),
                None => "so that it stops its metrics server".to_string(),
            };
            let timeout = Duration::from_secs(settings.profile.runner.shutdown_timeout);
            if let Some(restarted) = host.restart_runner_gracefully(ID.as_str(), timeout, &why)? {
                done.push(restarted);
                wait_for_metrics(host, &text)?;
            }
        }
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Global;
    use crate::report::{Counts, Format, Reporter};
    use crate::steps::{Selection, run};
    use crate::testing::FakeHost;
    use std::sync::Arc;

    const TOKEN: &str = "GR1348941legacyTokenValue42";
    const RUNNER: &str = "Name:\tgitlab-runner\nState:\tS (sleeping)\nPPid:\t1\nUid:\t0\t0\t0\t0\n";

    fn go(fake: &FakeHost, settings: &Settings, mode: Mode) -> (Counts, Arc<Reporter>) {
        fake.run_steps(settings, &Selection::of(&[ID]), mode)
    }

    /// A registered host whose runner service runs (pid 777).
    fn registered() -> (FakeHost, Settings) {
        let fake = FakeHost::debian12();
        let settings = fake.settings(Some(TOKEN));
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let counts = run(
            &host,
            &settings,
            &Selection::default(),
            Mode::Apply,
            &reporter,
        );
        assert_eq!(counts.failed, 0, "{}", reporter.captured());
        fake.write("/proc/777/status", RUNNER);
        (fake, settings)
    }

    #[test]
    fn reloaded_settings_are_written_once_without_a_restart() {
        let (fake, mut settings) = registered();
        let before = fake.read(CONFIG_TOML);
        settings.profile.global = Global {
            concurrent: Some(4),
            check_interval: Some(5),
            shutdown_timeout: Some(30),
            listen_address: None,
        };
        let (plan, out) = go(&fake, &settings, Mode::Plan);
        let text = out.captured();
        assert_eq!(plan.pending, 1, "{text}");
        assert!(
            text.contains("+concurrent = 4") && text.contains("reloads it by itself"),
            "{text}"
        );
        assert_eq!(fake.read(CONFIG_TOML), before, "plan changes nothing");

        let spawned = fake.commands().len();
        let (applied, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{}",
            out.captured()
        );
        let config = fake.read(CONFIG_TOML);
        for line in [
            "concurrent = 4\n",
            "check_interval = 5\n",
            "shutdown_timeout = 30\n",
        ] {
            assert!(config.contains(line), "{config}");
        }
        let runner_part = |t: &str| t[t.find("[[runners]]").expect("runner")..].to_string();
        assert_eq!(
            runner_part(&config),
            runner_part(&before),
            "runners untouched"
        );
        assert_eq!(
            fake.ran_since(0)[spawned..],
            [] as [String; 0],
            "no restart"
        );

        let snapshot = fake.snapshot();
        let (again, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
        assert_eq!(fake.snapshot(), snapshot);
    }

    #[test]
    fn a_new_listen_address_restarts_the_runner_gracefully_and_once() {
        let (fake, mut settings) = registered();
        settings.profile.global.listen_address = Some("127.0.0.1:9252".into());
        let (plan, out) = go(&fake, &settings, Mode::Plan);
        assert_eq!(plan.pending, 1, "{}", out.captured());
        assert!(
            out.captured().contains("a graceful restart follows"),
            "{}",
            out.captured()
        );

        let spawned = fake.commands().len();
        let (applied, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{}",
            out.captured()
        );
        assert_eq!(
            fake.ran_since(0)[spawned..],
            [
                "systemctl kill --signal=SIGQUIT --kill-who=main gitlab-runner",
                "systemctl restart gitlab-runner"
            ]
        );
        assert!(
            fake.read(CONFIG_TOML)
                .contains("listen_address = \"127.0.0.1:9252\"\n")
        );

        let snapshot = fake.snapshot();
        let spawned = fake.commands().len();
        let (again, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());
        assert_eq!(fake.snapshot(), snapshot);
        assert_eq!(
            fake.ran_since(0).len(),
            spawned,
            "listening: no second restart"
        );

        // A runner started before the change (its restart cut short) is
        // found by the next run: nothing listens there (sshd on the same
        // address, something on the same port of another address).
        fake.write(
            "/proc/net/tcp",
            "  sl  local_address rem_address   st\n   0: 0100007F:0016 00000000:0000 0A\n   1: 0500000A:2424 00000000:0000 0A\n",
        );
        let (plan, out) = go(&fake, &settings, Mode::Plan);
        assert_eq!(plan.pending, 1, "{}", out.captured());
        assert!(
            out.captured()
                .contains("does not listen on 127.0.0.1:9252 yet"),
            "{}",
            out.captured()
        );
        let (applied, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{}",
            out.captured()
        );

        // A port another program holds: the restarted runner cannot listen,
        // which apply waits 10 s (on the host's clock) to conclude.
        fake.write("/run/fake-port-taken", "");
        settings.profile.global.listen_address = Some("127.0.0.1:9300".into());
        let slept = fake.machine().slept;
        let (failed, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!(failed.failed, 1, "{}", out.captured());
        let waited = fake.machine().slept - slept;
        assert!(
            waited >= Duration::from_secs(10) && waited < Duration::from_secs(11),
            "{waited:?}"
        );
        assert!(
            out.captured().contains("another program may hold the port"),
            "{}",
            out.captured()
        );
    }

    #[test]
    fn every_interface_needs_the_unspecified_address_a_host_name_any() {
        // The runner listens on 127.0.0.1:9252 only.
        let loopback =
            "  sl  local_address rem_address   st\n   0: 0100007F:2424 00000000:0000 0A\n";
        for (address, listening) in [
            (":9252", false),
            ("localhost:9252", true),
            ("127.0.0.1:9252", true),
        ] {
            let (fake, mut settings) = registered();
            settings.profile.global.listen_address = Some(address.into());
            let (applied, out) = go(&fake, &settings, Mode::Apply);
            assert_eq!(applied.failed, 0, "{address}: {}", out.captured());
            // Only every interface is reachable from other hosts.
            assert_eq!(
                out.captured().contains("is reachable from other hosts"),
                address == ":9252",
                "{address}: {}",
                out.captured()
            );
            fake.write("/proc/net/tcp", loopback);
            let (plan, out) = go(&fake, &settings, Mode::Plan);
            assert_eq!(
                plan.pending == 0,
                listening,
                "{address}: {}",
                out.captured()
            );
            assert_eq!(
                out.captured()
                    .contains(&format!("does not listen on {address} yet")),
                !listening,
                "{address}: {}",
                out.captured()
            );
        }
    }

    #[test]
    fn no_runner_running_means_no_restart_and_no_file_means_a_new_one() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        let mut settings = fake.settings(None);
        settings.profile.global = Global {
            concurrent: Some(2),
            listen_address: Some(":9252".into()),
            ..Global::default()
        };
        let (applied, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!(
            (applied.changed, applied.failed),
            (1, 0),
            "{}",
            out.captured()
        );
        assert_eq!(
            fake.read(CONFIG_TOML),
            "listen_address = \":9252\"\nconcurrent = 2\n"
        );
        assert!(fake.ran_since(0).is_empty(), "{:?}", fake.ran_since(0));
        let warned = out.captured();
        assert!(warned.contains("reachable from other hosts"), "{warned}");
        let mode = std::fs::metadata(fake.root().join("etc/gitlab-runner/config.toml"))
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o777)
            .expect("mode");
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn a_malformed_config_toml_is_refused_before_any_change() {
        let fake = FakeHost::debian12();
        fake.install(&["gitlab-runner"]);
        let broken = "concurrent = 1\ntoken = \"glrt-SECRETSECRETSECRET\n";
        fake.write(CONFIG_TOML, broken);
        let mut settings = fake.settings(None);
        settings.profile.global.concurrent = Some(3);
        let before = fake.snapshot();
        let (applied, out) = go(&fake, &settings, Mode::Apply);
        let text = out.captured();
        assert_eq!(applied.failed, 1, "{text}");
        assert!(
            text.contains("preflight") && text.contains("line 2"),
            "{text}"
        );
        assert!(!text.contains("SECRETSECRET"), "{text}");
        assert_eq!(fake.snapshot(), before);
    }

    #[test]
    fn the_fleet_profile_parses_and_plans_its_globals() {
        let (fake, settings) = registered();
        let (fleet, _) =
            crate::profile::Profile::load(Some("shell-docker-fleet")).expect("embedded");
        fleet.validate().expect("valid");
        let settings = Settings {
            profile: crate::profile::Profile {
                runner: crate::profile::Runner {
                    repository: settings.profile.runner.repository.clone(),
                    // The fleet's version pin would move the installed
                    // runner first; pin_tests plans it.
                    version: String::new(),
                    ..fleet.runner.clone()
                },
                ..fleet
            },
            ..settings
        };
        let reporter = fake.reporter(Format::Json);
        let host = fake.host(reporter.clone());
        let before = fake.snapshot();
        let counts = run(
            &host,
            &settings,
            &Selection::default(),
            Mode::Plan,
            &reporter,
        );
        let text = reporter.captured();
        assert_eq!(counts.failed, 0, "{text}");
        for line in [
            "+concurrent = 4",
            "+check_interval = 3",
            "+shutdown_timeout = 30",
            "+listen_address = \\\"127.0.0.1:9252\\\"",
        ] {
            assert!(text.contains(line), "{line}: {text}");
        }
        assert_eq!(fake.snapshot(), before, "plan changes nothing");
    }

    #[test]
    fn a_listen_address_flag_on_the_running_runner_wins_and_is_not_restarted_for() {
        let (fake, mut settings) = registered();
        fake.write(
            "/proc/777/cmdline",
            "/usr/bin/gitlab-runner\0run\0--listen-address\0:9999\0",
        );
        settings.profile.global.listen_address = Some("127.0.0.1:9252".into());
        let spawned = fake.commands().len();
        let (applied, out) = go(&fake, &settings, Mode::Apply);
        let text = out.captured();
        assert_eq!((applied.changed, applied.failed), (1, 0), "{text}");
        assert!(
            text.contains("--listen-address / LISTEN_ADDRESS :9999, which wins over config.toml's listen_address"),
            "{text}"
        );
        assert_eq!(fake.ran_since(0).len(), spawned, "no restart: {text}");
        let (again, out) = go(&fake, &settings, Mode::Apply);
        assert_eq!((again.changed, again.failed), (0, 0), "{}", out.captured());

        // The same from its environment (/etc/sysconfig/gitlab-runner).
        fake.write("/proc/777/cmdline", "/usr/bin/gitlab-runner\0run\0");
        fake.write("/proc/777/environ", "PATH=/usr/bin\0LISTEN_ADDRESS=:9999\0");
        let (plan, out) = go(&fake, &settings, Mode::Plan);
        assert_eq!(plan.pending, 0, "{}", out.captured());
        assert!(
            out.captured().contains("LISTEN_ADDRESS :9999, which wins"),
            "{}",
            out.captured()
        );

        // An empty LISTEN_ADDRESS (and any other variable) overrides nothing:
        // the runner does not listen where config.toml says, so it restarts.
        fake.write("/proc/777/environ", "PATH=/usr/bin\0LISTEN_ADDRESS=\0");
        let (plan, out) = go(&fake, &settings, Mode::Plan);
        assert_eq!(plan.pending, 1, "{}", out.captured());
        assert!(!out.captured().contains("which wins"), "{}", out.captured());
    }
}
