//! runner-alive: GitLab still knows each registered runner.
//!
//! `gitlab-runner verify` (commands/verify.go, network/gitlab.go
//! `VerifyRunner`) asks `POST /api/v4/runners/verify` for every runner of
//! config.toml and logs one line per runner, in file order: `is alive` /
//! `is valid` (200), `is removed` / `is not valid` (403: deleted on the
//! server), `client error` (no answer: the request never reached GitLab) or
//! `failed` (any other status). It reads the tokens from config.toml itself,
//! so no token is on its argv; its lines carry a shortened token
//! (`runner=…`), so they are parsed here and never printed.

use std::time::Duration;

use anyhow::Result;
use serde_json::{Map, Value};

use super::runner_register::runners;
use super::{Settings, State, Step, StepId, require_tool};
use crate::host::Host;
use crate::host::command::Cmd;

pub struct RunnerAlive;

/// GitLab's answer about one runner.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Answer {
    Alive,
    Deleted,
    /// No answer, or an answer other than 200/403 (the status, without token).
    Unreachable(String),
}

impl Answer {
    fn word(&self) -> &'static str {
        match self {
            Answer::Alive => "alive",
            Answer::Deleted => "deleted",
            Answer::Unreachable(_) => "unreachable",
        }
    }
}

/// The answers in `gitlab-runner verify`'s output, in order.
fn answers(output: &str) -> Vec<Answer> {
    output
        .lines()
        .filter_map(|line| {
            let (_, rest) = line.split_once("Verifying runner...")?;
            let rest = rest.trim_start();
            Some(
                if rest.starts_with("is alive") || rest.starts_with("is valid") {
                    Answer::Alive
                } else if rest.starts_with("is removed") || rest.starts_with("is not valid") {
                    Answer::Deleted
                } else {
                    Answer::Unreachable(status_field(rest))
                },
            )
        })
        .collect()
}

/// The `status=` field of a log line (logrus quotes values with spaces);
/// the line's other fields (a shortened token among them) are dropped.
fn status_field(rest: &str) -> String {
    let Some((_, after)) = rest.split_once("status=") else {
        return "no status".to_string();
    };
    let value = match after.strip_prefix('"') {
        Some(quoted) => quoted.split('"').next().unwrap_or(quoted),
        None => after.split_whitespace().next().unwrap_or(after),
    };
    value.chars().take(200).collect()
}

impl Step for RunnerAlive {
    fn needs(&self) -> &'static [StepId] {
        &[StepId::RunnerRegister]
    }

    fn check(&self, host: &Host, settings: &Settings) -> Result<State> {
        if !host.live {
            return Ok(State::NotApplicable("offline root".to_string()));
        }
        if !host.is_root() {
            // As another user, gitlab-runner reads ~/.gitlab-runner/config.toml.
            return Ok(State::NotApplicable(
                "not root: gitlab-runner verify reads /etc/gitlab-runner/config.toml as root"
                    .to_string(),
            ));
        }
        let registered = runners(host)?.unwrap_or_default();
        if registered.is_empty() {
            return Ok(State::NotApplicable("no runner in config.toml".to_string()));
        }
        // Not a preflight check: on a fresh host runner-install provides it.
        require_tool(host, "gitlab-runner", "gitlab-runner")?;
        let limit = settings.profile.docker.verify_timeout;
        host.progress("asking GitLab about each runner");
        let out = host.probe(
            Cmd::new("gitlab-runner")
                .arg("verify")
                .timeout(Duration::from_secs(limit)),
        )?;
        let mut found = answers(&format!("{}\n{}", out.stderr, out.stdout));
        if out.timed_out {
            found.resize(
                registered.len(),
                Answer::Unreachable(format!("no answer within {limit} s")),
            );
        }
        if found.len() != registered.len() {
            let fatal = format!("{}\n{}", out.stderr, out.stdout)
                .lines()
                .find_map(|l| l.trim().strip_prefix("FATAL: ").map(str::to_string))
                .unwrap_or_else(|| format!("exit status {:?}", out.code));
            anyhow::bail!(
                "`gitlab-runner verify` answered for {} of {} runners: {fatal}",
                found.len(),
                registered.len()
            );
        }
        let mut details = Map::new();
        for (runner, answer) in registered.iter().zip(&found) {
            details.insert(runner.name.clone(), Value::from(answer.word()));
        }
        host.detail("runners", Value::Object(details));

        let deleted: Vec<&str> = registered
            .iter()
            .zip(&found)
            .filter(|(_, a)| **a == Answer::Deleted)
            .map(|(r, _)| r.name.as_str())
            .collect();
        if !deleted.is_empty() {
            return Err(crate::Error::RunnerDeletedOnServer {
                names: deleted.join(", "),
            }
            .into());
        }
        let unreachable: Vec<String> = registered
            .iter()
            .zip(&found)
            .filter_map(|(r, a)| match a {
                Answer::Unreachable(status) => Some(format!("{}: {status}", r.name)),
                _ => None,
            })
            .collect();
        if unreachable.is_empty() {
            Ok(State::Done)
        } else {
            // No network is not a verdict on the runner: reported, not failed.
            Ok(State::NotApplicable(format!(
                "GitLab unreachable ({})",
                unreachable.join("; ")
            )))
        }
    }

    /// `plan` asks no server: `gitlab-runner verify` runs in apply and verify.
    fn plan_check(&self, _host: &Host, _settings: &Settings) -> Result<State> {
        Ok(State::NotApplicable(
            "asks GitLab only in apply and verify".to_string(),
        ))
    }

    fn apply(&self, _host: &Host, _settings: &Settings) -> Result<Vec<String>> {
        // check never finds work to do: a deleted runner needs a new token.
        Ok(Vec::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_of_gitlab_runner_17_is_read() {
        let out = "Runtime platform                                    arch=amd64 os=linux\n\
Running in system-mode.\n\
\n\
Verifying runner... is valid                        correlation_id=01J runner=abcdefghi\n\
Verifying runner... is alive                        runner=Sa4Bq7Eb\n\
Verifying runner... is not valid                    runner=zyxwvutsr\n\
ERROR: Verifying runner... is removed               runner=Tk9pQ2rs status=\"403 Forbidden\"\n\
ERROR: Verifying runner... client error             runner=Tk9pQ2rs status=\"couldn't execute POST against https://gitlab.example.com/api/v4/runners/verify: dial tcp: lookup gitlab.example.com: no such host\"\n\
ERROR: Verifying runner... failed                   runner=Tk9pQ2rs status=\"502 Bad Gateway\"\n";
        let got = answers(out);
        assert_eq!(
            got,
            vec![
                Answer::Alive,
                Answer::Alive,
                Answer::Deleted,
                Answer::Deleted,
                Answer::Unreachable("couldn't execute POST against https://gitlab.example.com/api/v4/runners/verify: dial tcp: lookup gitlab.example.com: no such host".into()),
                Answer::Unreachable("502 Bad Gateway".into()),
            ]
        );
        assert!(answers("FATAL: nothing\n").is_empty());
    }
}
