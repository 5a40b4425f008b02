//! runner-register: a `[[runners]]` entry for this URL and name in config.toml.

use anyhow::Result;

use super::{CONFIG_TOML, Change, Mode, Settings, State, Step, StepId, WantedRunner};
use crate::edit::runner_config;
use crate::host::Host;
use crate::host::command::Cmd;
use crate::secret::Token;

const ID: StepId = StepId::RunnerRegister;

pub struct RunnerRegister;

/// The runners of config.toml; a missing file has none, a malformed one is
/// an error that names the file and is never "fixed" by rewriting it.
pub fn runners(host: &Host) -> Result<Option<Vec<runner_config::Runner>>> {
    let Some(text) = host.files.read(CONFIG_TOML)? else {
        return Ok(None);
    };
    runner_config::runners(&text).map(Some).map_err(|e| {
        crate::Error::MalformedFile {
            path: CONFIG_TOML.into(),
            message: e.to_string(),
        }
        .into()
    })
}

/// Attempts of `gitlab-runner register` when GitLab answers as a server
/// that is starting or restarting does (a 502 for a minute is normal), and
/// the first wait; each wait doubles (5, 10, 20, 40 s: 75 s in all).
const REGISTER_ATTEMPTS: u32 = 5;
const REGISTER_FIRST_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Whether a failed registration is worth trying again: the server or the
/// way to it was down, not the request refused (a bad token is a 403).
fn transient(stderr: &str) -> bool {
    let stderr = stderr.to_ascii_lowercase();
    [
        "502",
        "503",
        "504",
        "bad gateway",
        "service unavailable",
        "gateway timeout",
        "connection refused",
        "connection reset",
        "timeout",
        "no such host",
        "temporary failure in name resolution",
        "network is unreachable",
    ]
    .iter()
    .any(|s| stderr.contains(s))
}

fn register_with_retries(host: &Host, cmd: Cmd, url: &str) -> Result<()> {
    let mut wait = REGISTER_FIRST_WAIT;
    for attempt in 1.. {
        match host.run(cmd.clone()) {
            Ok(_) => return Ok(()),
            Err(e) if attempt < REGISTER_ATTEMPTS && transient(&e.stderr) => {
                host.warn(
                    ID.as_str(),
                    &format!(
                        "gitlab-runner register failed (attempt {attempt} of {REGISTER_ATTEMPTS}), GitLab may be starting: trying again in {} s",
                        wait.as_secs()
                    ),
                );
                host.sleep(wait);
                wait *= 2;
            }
            Err(e) => return Err(diagnose(e, url)),
        }
    }
    unreachable!("the loop returns")
}

fn describe_flow(token: Option<&Token>) -> &'static str {
    match token {
        Some(t) if t.is_authentication_token() => "runner authentication token",
        _ => "registration token",
    }
}

impl Step for RunnerRegister {
    fn needs(&self) -> &'static [StepId] {
        &[StepId::Network, StepId::RunnerInstall]
    }

    fn preflight(&self, host: &Host, settings: &Settings, _mode: Mode) -> Result<()> {
        if settings.listed() {
            return preflight_listed(host, settings);
        }
        runners(host)?;
        // The name it would register under, before anything is installed.
        settings.runner_name(host)?;
        let authentication = settings
            .token
            .as_ref()
            .is_some_and(|t| t.is_authentication_token());
        if authentication && !settings.profile.runner.tags.is_empty() {
            return Err(crate::Error::TagsWithAuthToken.into());
        }
        Ok(())
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        if settings.listed() {
            return check_listed(host, settings);
        }
        let runner = &settings.profile.runner;
        let name = settings.runner_name(host)?;
        let existing = runners(host)?.unwrap_or_default();
        if runner_config::find(&existing, &runner.url, &name).is_some() {
            return Ok(State::Done);
        }
        let others = runner_config::at_url(&existing, &runner.url);
        // The profile names no runner: one registered at its URL (by hand,
        // as "My Runner") is this host's runner, whatever its name.
        if runner.name.is_empty() && !others.is_empty() {
            return Ok(State::Done);
        }
        if settings.token.is_none() && !host.live {
            // An image: every instance registers itself at boot.
            return Ok(State::NotApplicable(
                "image (--root): the instance registers at boot".to_string(),
            ));
        }
        if settings.token.is_none() && runner.require_registration {
            return Err(crate::Error::RegistrationRequired {
                name,
                url: runner.url.clone(),
            }
            .into());
        }
        if settings.token.is_none() {
            let why = format!(
                "not registered: no runner {name} for {} in {CONFIG_TOML} and no token; put the token in RUNNER_TOKEN or a file given to --token-file, then run apply again",
                runner.url
            );
            host.warn(ID.as_str(), &why);
            return Ok(State::Skipped(why));
        }
        let mut change = format!(
            "register runner {name} at {} (executor {}, with a {})",
            runner.url,
            runner.executor,
            describe_flow(settings.token.as_ref())
        );
        if !others.is_empty() {
            let names: Vec<String> = others.iter().map(|r| format!("{:?}", r.name)).collect();
            change.push_str(&format!(
                "; the runner {} registered at this URL under another name stays as it is",
                names.join(", ")
            ));
        }
        Ok(State::Pending(vec![Change::new(change)]))
    }

    /// As `check`, and says which runner a profile without a name adopts.
    fn plan_check(&self, host: &Host, settings: &Settings) -> Result<State> {
        let state = self.check(host, settings)?;
        let runner = &settings.profile.runner;
        if state == State::Done && runner.name.is_empty() {
            let existing = runners(host)?.unwrap_or_default();
            let name = settings.runner_name(host)?;
            if runner_config::find(&existing, &runner.url, &name).is_none() {
                if let Some(adopted) = runner_config::at_url(&existing, &runner.url).first() {
                    host.warn(
                        ID.as_str(),
                        &format!(
                            "the runner {:?} registered at {} is taken as this host's runner (the profile names none); it is not registered again",
                            adopted.name, runner.url
                        ),
                    );
                }
            }
        }
        Ok(state)
    }

    fn apply(&self, host: &Host, settings: &Settings) -> Result<Vec<String>> {
        if settings.listed() {
            return apply_listed(host, settings);
        }
        let wanted = settings.wanted_runners(host)?;
        let wanted = wanted
            .first()
            .ok_or_else(|| anyhow::anyhow!("no runner to register"))?;
        Ok(vec![register(host, settings, wanted)?])
    }
}

/// `gitlab-runner register` for one runner; records it for `remove`.
fn register(host: &Host, settings: &Settings, runner: &WantedRunner<'_>) -> Result<String> {
    let name = &runner.name;
    let token = runner
        .token
        .ok_or_else(|| anyhow::anyhow!("registering needs a token"))?;
    host.progress(&format!("gitlab-runner register {name}"));
    let mut cmd = Cmd::new("gitlab-runner").args([
        "register",
        "--non-interactive",
        "--config",
        CONFIG_TOML,
        "--url",
        runner.url,
        "--name",
        name,
        "--executor",
        runner.executor,
    ]);
    if let Some(ca) = super::network::runner_ca_file(settings) {
        cmd = cmd.args(["--tls-ca-file", ca.as_str()]);
    }
    // Registration reaches GitLab through the proxy (Go reads these).
    for (name, value) in super::network::proxy(settings).variables() {
        cmd = cmd.env(name, value);
    }
    if !runner.tags.is_empty() {
        cmd = cmd.args(["--tag-list".to_string(), runner.tags.join(",")]);
    }
    if runner.limit > 0 {
        cmd = cmd.args(["--limit".to_string(), runner.limit.to_string()]);
    }
    // The runner's variables may be secrets: in the environment, which
    // register reads comma-separated (validation refuses commas), not on
    // argv.
    if !runner.environment.is_empty() {
        cmd = cmd.env("RUNNER_ENV", runner.environment.join(","));
    }
    // The token travels in the child's environment, never on its argv
    // (argv is world-readable in /proc and `ps`).
    cmd = if token.is_authentication_token() {
        cmd.env("CI_SERVER_TOKEN", token.expose())
    } else {
        cmd.env("REGISTRATION_TOKEN", token.expose())
    };
    register_with_retries(host, cmd, runner.url)?;
    host.note(|r| {
        r.runners.insert(crate::receipt::RunnerRef {
            url: runner.url.to_string(),
            name: name.clone(),
        });
    });
    Ok(format!(
        "registered runner {name} at {} with a {}",
        runner.url,
        describe_flow(Some(token))
    ))
}

/// `[[runners]]`: config.toml readable, no tags with a `glrt-` token, and
/// the runners of config.toml the profile does not list reported (they are
/// left as they are: taking a runner away is `remove`'s or the operator's).
fn preflight_listed(host: &Host, settings: &Settings) -> Result<()> {
    let existing = runners(host)?.unwrap_or_default();
    let wanted = settings.wanted_runners(host)?;
    for runner in &wanted {
        let authentication = runner.token.is_some_and(Token::is_authentication_token);
        if authentication && !runner.tags.is_empty() {
            return Err(crate::Error::Runners(format!(
                "runner {:?}: tags cannot be set when registering with a runner authentication token (glrt-…): GitLab keeps them on the server; set them in the runner's settings in GitLab, or remove this entry's tags",
                runner.name
            ))
            .into());
        }
    }
    for unlisted in unlisted(&existing, &wanted) {
        host.warn(
            ID.as_str(),
            &format!(
                "runner {:?} at {} is in {CONFIG_TOML} but not in the profile: left as it is (unregister it with `gitlab-runner unregister --name {:?}` if it should go)",
                unlisted.name, unlisted.url, unlisted.name
            ),
        );
    }
    Ok(())
}

/// The runners of config.toml that no profile runner matches (URL and name).
fn unlisted<'a>(
    existing: &'a [runner_config::Runner],
    wanted: &[WantedRunner<'_>],
) -> Vec<&'a runner_config::Runner> {
    existing
        .iter()
        .filter(|r| {
            !wanted
                .iter()
                .any(|w| runner_config::find(std::slice::from_ref(*r), w.url, &w.name).is_some())
        })
        .collect()
}

/// `[[runners]]`: pending for each listed runner not in config.toml that
/// has a token; those without one are skipped (failed with
/// require_registration), or left to the instance in an image.
fn check_listed(host: &Host, settings: &Settings) -> Result<State> {
    let existing = runners(host)?.unwrap_or_default();
    let require = settings.profile.runner.require_registration;
    let mut changes = Vec::new();
    let mut without_token = Vec::new();
    let mut at_boot = false;
    for runner in settings.wanted_runners(host)? {
        if runner_config::find(&existing, runner.url, &runner.name).is_some() {
            continue;
        }
        let source = runner.token_source.clone().unwrap_or_default();
        match runner.token {
            Some(token) => {
                let mut change = format!(
                    "register runner {} at {} (executor {}",
                    runner.name, runner.url, runner.executor
                );
                if !runner.tags.is_empty() {
                    change.push_str(&format!(", tags {}", runner.tags.join(",")));
                }
                if runner.limit > 0 {
                    change.push_str(&format!(", limit {}", runner.limit));
                }
                if !runner.environment.is_empty() {
                    let keys: Vec<&str> = runner
                        .environment
                        .iter()
                        .filter_map(|e| e.split_once('=').map(|(k, _)| k))
                        .collect();
                    change.push_str(&format!(", environment {}", keys.join(" ")));
                }
                change.push_str(&format!(", with a {})", describe_flow(Some(token))));
                changes.push(Change::new(change));
            }
            None if !host.live => at_boot = true,
            None if require => {
                return Err(crate::Error::ListedRegistrationRequired {
                    name: runner.name.clone(),
                    url: runner.url.to_string(),
                    from: source,
                }
                .into());
            }
            None => without_token.push(format!(
                "{} at {} (no token in its {source})",
                runner.name, runner.url
            )),
        }
    }
    if !changes.is_empty() {
        return Ok(State::Pending(changes));
    }
    if !without_token.is_empty() {
        let why = format!(
            "not registered: {}; put each token where its entry's token_env or token_file says, then run apply again",
            without_token.join("; ")
        );
        host.warn(ID.as_str(), &why);
        return Ok(State::Skipped(why));
    }
    if at_boot {
        return Ok(State::NotApplicable(
            "image (--root): the instance registers at boot".to_string(),
        ));
    }
    Ok(State::Done)
}

/// Registers each listed runner that check found pending; one that fails
/// does not keep the others from registering, and fails the step.
fn apply_listed(host: &Host, settings: &Settings) -> Result<Vec<String>> {
    let existing = runners(host)?.unwrap_or_default();
    let mut done = Vec::new();
    let mut failed = Vec::new();
    for runner in settings.wanted_runners(host)? {
        if runner.token.is_none()
            || runner_config::find(&existing, runner.url, &runner.name).is_some()
        {
            continue;
        }
        match register(host, settings, &runner) {
            Ok(line) => done.push(line),
            Err(e) => failed.push(format!("runner {}: {e:#}", runner.name)),
        }
    }
    if !failed.is_empty() {
        let mut message = failed.join("\n");
        if !done.is_empty() {
            message.push_str(&format!(" (done: {})", done.join("; ")));
        }
        anyhow::bail!(message);
    }
    Ok(done)
}

/// A registration that failed on GitLab's certificate says how to fix it.
fn diagnose(error: crate::host::command::CommandError, url: &str) -> anyhow::Error {
    let untrusted = [
        "x509:",
        "tls: failed to verify certificate",
        "certificate signed by unknown authority",
    ]
    .iter()
    .any(|m| error.stderr.contains(m));
    if untrusted {
        let why = error
            .stderr
            .split("x509: ")
            .nth(1)
            .and_then(|rest| rest.lines().next())
            .map(|r| r.trim_end_matches('"').to_string())
            .unwrap_or_else(|| "certificate not trusted".to_string());
        return anyhow::Error::new(error).context(format!(
            "GitLab at {url} presents a TLS certificate this host does not trust ({why}): put your CA certificate (PEM) in [network] ca_files (or --ca-files) and run apply again"
        ));
    }
    error.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::command::CommandError;

    #[test]
    fn a_certificate_error_says_how_to_fix_it() {
        let error = CommandError {
            argv: "gitlab-runner register".into(),
            status: "exited with status 1".into(),
            stderr: "ERROR: Registering runner... failed  runner=GR134894 status=couldn't execute POST against https://gitlab.corp:8443/api/v4/runners: Post \"https://gitlab.corp:8443/api/v4/runners\": tls: failed to verify certificate: x509: certificate signed by unknown authority\nPANIC: Failed to register the runner.".into(),
        };
        let text = format!("{:#}", diagnose(error, "https://gitlab.corp:8443/"));
        assert!(text.starts_with("GitLab at https://gitlab.corp:8443/ presents a TLS certificate this host does not trust (certificate signed by unknown authority): put your CA certificate (PEM) in [network] ca_files"), "{text}");
        assert!(
            text.contains("PANIC: Failed to register the runner."),
            "the original stays: {text}"
        );
        let other = CommandError {
            argv: "gitlab-runner register".into(),
            status: "exited with status 1".into(),
            stderr: "PANIC: Invalid executor specified".into(),
        };
        assert!(!format!("{:#}", diagnose(other, "u")).contains("certificate"));
    }
}
