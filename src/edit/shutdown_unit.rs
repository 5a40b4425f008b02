//! The systemd files that unregister this host's runners when it shuts
//! down: a unit whose `ExecStop` runs `gitlab-runner unregister` for each
//! runner, and a drop-in that makes the runner service stop gracefully.
//!
//! Order at shutdown (systemd stops units in the reverse of their start
//! order): gitlab-runner.service first (the unit is `Before=` it), with
//! SIGQUIT to its main process only (`KillMode=mixed`): GitLab Runner then
//! takes no new job and exits when its running jobs end, up to
//! `TimeoutStopSec`; then this unit's `ExecStop`, while the network is still
//! up (the unit is `After=network-online.target`).

/// First line of both files: what the tool may replace and remove.
pub const MARKER: &str = "# Managed by runner-provision";

/// Quotes one argument for an `Exec*=` line: double quotes, with `\` and
/// `"` escaped, and `%` (specifiers) and `$` (variables) doubled.
pub fn quote(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('"');
    for c in arg.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The unit: started at boot (it does nothing then), stopped at shutdown.
/// `names` are the runners to unregister, `config` config.toml's path,
/// `env_file` an optional environment file (the proxy).
pub fn unit(gitlab_runner: &str, config: &str, names: &[String], env_file: &str) -> String {
    let mut text = format!(
        "{MARKER}: unregisters this host's runners when it shuts down.\n\
[Unit]\n\
Description=Unregister this host's GitLab runners at shutdown\n\
Wants=network-online.target\n\
After=network-online.target network.target\n\
Before=gitlab-runner.service\n\
\n\
[Service]\n\
Type=oneshot\n\
RemainAfterExit=yes\n\
ExecStart=/bin/true\n\
EnvironmentFile=-{env_file}\n"
    );
    // `-`: one runner that cannot be unregistered (already deleted on the
    // server) does not keep the others registered.
    for name in names {
        text.push_str(&format!(
            "ExecStop=-{gitlab_runner} unregister --config {} --name {}\n",
            quote(config),
            quote(name)
        ));
    }
    text.push_str("TimeoutStopSec=120\n\n[Install]\nWantedBy=multi-user.target\n");
    text
}

/// The drop-in for gitlab-runner.service: a graceful stop.
pub fn graceful_stop(timeout_secs: u64) -> String {
    format!(
        "{MARKER}: running jobs finish before the runner stops (SIGQUIT, up to {timeout_secs} s).\n\
[Service]\n\
KillSignal=SIGQUIT\n\
KillMode=mixed\n\
TimeoutStopSec={timeout_secs}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_quoted_for_systemd() {
        for (arg, quoted) in [
            ("build-1", "\"build-1\""),
            ("a b", "\"a b\""),
            ("100%", "\"100%%\""),
            ("$HOME", "\"$$HOME\""),
            ("say \"hi\"", "\"say \\\"hi\\\"\""),
            ("back\\slash", "\"back\\\\slash\""),
        ] {
            assert_eq!(quote(arg), quoted, "{arg}");
        }
    }

    #[test]
    fn the_same_input_renders_the_same_bytes() {
        let names = vec!["runner-1".to_string()];
        let a = unit(
            "/usr/bin/gitlab-runner",
            "/etc/gitlab-runner/config.toml",
            &names,
            "/e",
        );
        let b = unit(
            "/usr/bin/gitlab-runner",
            "/etc/gitlab-runner/config.toml",
            &names,
            "/e",
        );
        assert_eq!(a, b);
        assert!(a.starts_with(MARKER));
        assert_eq!(graceful_stop(300), graceful_stop(300));
    }

    #[test]
    fn one_exec_stop_per_runner_by_name_never_by_token() {
        let names = vec!["build".to_string(), "deploy %i".to_string()];
        let text = unit(
            "/usr/bin/gitlab-runner",
            "/etc/gitlab-runner/config.toml",
            &names,
            "/e",
        );
        let stops: Vec<&str> = text
            .lines()
            .filter(|l| l.starts_with("ExecStop="))
            .collect();
        assert_eq!(
            stops,
            vec![
                "ExecStop=-/usr/bin/gitlab-runner unregister --config \"/etc/gitlab-runner/config.toml\" --name \"build\"",
                "ExecStop=-/usr/bin/gitlab-runner unregister --config \"/etc/gitlab-runner/config.toml\" --name \"deploy %%i\"",
            ]
        );
        assert!(!text.contains("--token"));
        assert!(text.contains("Before=gitlab-runner.service"));
        assert!(text.contains("After=network-online.target"));
    }

    #[test]
    fn the_runner_stops_with_sigquit_to_its_main_process_only() {
        let text = graceful_stop(42);
        assert!(text.contains("KillSignal=SIGQUIT\n"));
        assert!(text.contains("KillMode=mixed\n"));
        assert!(text.contains("TimeoutStopSec=42\n"));
    }
}
