//! `verify`: asks "the server" whether each runner's token is still valid.
//!
//! Modelled on GitLab Runner 17.4's `commands/verify.go` and
//! `network/gitlab.go` `VerifyRunner`: one log line per selected runner,
//! `is valid` (`glrt-` tokens) or `is alive` (legacy) for a live runner;
//! `is not valid` (info level, `glrt-`) or `ERROR: … is removed` with
//! `status=403 Forbidden` (legacy) for a runner deleted on the server; a
//! request that never reached the server logs `ERROR: … client error` and
//! still counts as verified. Any runner not verified ends in
//! `FATAL: Failed to verify runners` (exit 1) unless `--delete`, which
//! rewrites config.toml without it and logs `Updated PATH`.
//!
//! The server is a folder the test prepares (`GITLAB_RUNNER_STAND_IN_SERVER`,
//! default /var/lib/gitlab-runner-stand-in/server): a file `deleted-runners`
//! lists, one a line, the names of runners deleted on the server; a file
//! `unreachable` makes every request fail as if the host had no network.

use std::path::PathBuf;

use crate::Ctx;
use crate::config::{self, Table, Value};
use crate::log::{Exit, Level, Outcome};
use crate::runners::VERIFY_FLAGS;
use crate::token;

const DEFAULT_SERVER: &str = "/var/lib/gitlab-runner-stand-in/server";

/// What the server says about one runner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Answer {
    Alive,
    Deleted,
    Unreachable,
}

struct Server {
    dir: PathBuf,
}

/// The folder that stands in for GitLab (`GITLAB_RUNNER_STAND_IN_SERVER`).
pub fn server_dir(ctx: &Ctx) -> PathBuf {
    ctx.env
        .get("GITLAB_RUNNER_STAND_IN_SERVER")
        .filter(|d| !d.is_empty())
        .map_or_else(|| PathBuf::from(DEFAULT_SERVER), PathBuf::from)
}

impl Server {
    fn from(ctx: &Ctx) -> Self {
        Self {
            dir: server_dir(ctx),
        }
    }

    fn answer(&self, name: &str) -> Answer {
        if self.dir.join("unreachable").exists() {
            return Answer::Unreachable;
        }
        let deleted = std::fs::read_to_string(self.dir.join("deleted-runners")).unwrap_or_default();
        if deleted.lines().any(|l| l.trim() == name) {
            Answer::Deleted
        } else {
            Answer::Alive
        }
    }
}

/// A field value as logrus's text formatter writes one that has spaces.
fn quoted(value: &str) -> String {
    format!("{value:?}")
}

fn field(r: &Table, key: &str) -> String {
    r.get_str(key).unwrap_or("").to_string()
}

/// The host part of a URL, for the resolver's error message.
fn host_of(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split(['/', ':']).next().unwrap_or(rest)
}

pub fn verify(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let p = crate::parse_flags(ctx, "verify", VERIFY_FLAGS, args)?;
    crate::user_mode_warning(ctx, true);
    let path = match p.string("config") {
        c if c.is_empty() => ctx.default_config_file(),
        c => PathBuf::from(c),
    };
    let mut cfg = match config::load(&path) {
        Ok(c) => c.unwrap_or_else(config::new_config),
        Err(e) => return Err(Exit::Fatal(e)),
    };
    let delete = p.bool("delete").map_err(Exit::Fatal)?;
    let (name, url, tok) = (p.string("name"), p.string("url"), p.string("token"));
    let selector = !name.is_empty() || !url.is_empty() || !tok.is_empty();
    let server = Server::from(ctx);

    // selectRunners, then VerifyRunner for each selected one.
    let mut keep = Vec::new();
    let mut selected = 0;
    for r in cfg.runners() {
        let (r_name, r_url, r_token) = (field(r, "name"), field(r, "url"), field(r, "token"));
        let same_as = r_url == url && r_token == tok;
        if selector && !(r_name == name || same_as) {
            keep.push(true);
            continue;
        }
        selected += 1;
        let glrt = r_token.starts_with("glrt-");
        let short = ("runner", token::short(&r_token));
        let ok = match server.answer(&r_name) {
            Answer::Alive => {
                let word = if glrt { "is valid" } else { "is alive" };
                ctx.out.log(
                    Level::Info,
                    &format!("Verifying runner... {word}"),
                    &[short],
                );
                true
            }
            Answer::Deleted if glrt => {
                ctx.out
                    .log(Level::Info, "Verifying runner... is not valid", &[short]);
                false
            }
            Answer::Deleted => {
                ctx.out.log(
                    Level::Error,
                    "Verifying runner... is removed",
                    &[short, ("status", quoted("403 Forbidden"))],
                );
                false
            }
            Answer::Unreachable => {
                let base = r_url.trim_end_matches('/');
                let status = format!(
                    "couldn't execute POST against {base}/api/v4/runners/verify: Post \"{base}/api/v4/runners/verify\": dial tcp: lookup {} on 127.0.0.53:53: no such host",
                    host_of(&r_url)
                );
                ctx.out.log(
                    Level::Error,
                    "Verifying runner... client error",
                    &[short, ("status", quoted(&status))],
                );
                true
            }
        };
        keep.push(ok);
    }
    if selector && selected == 0 {
        return Err(Exit::Fatal(
            "no runner matches the filtering parameters".into(),
        ));
    }
    if keep.iter().all(|k| *k) {
        return Ok(());
    }
    if !delete {
        return Err(Exit::Fatal("Failed to verify runners".into()));
    }
    let mut i = 0;
    cfg.runners_mut().retain(|v| {
        let k = !matches!(v, Value::Table(_)) || keep.get(i).copied().unwrap_or(true);
        if matches!(v, Value::Table(_)) {
            i += 1;
        }
        k
    });
    config::normalize(&mut cfg);
    config::write_atomic(&path, config::encode(&cfg).as_bytes())
        .map_err(|e| Exit::Fatal(format!("Failed to update {} {e}", path.display())))?;
    ctx.out.info(&format!("Updated {}", path.display()));
    Ok(())
}
