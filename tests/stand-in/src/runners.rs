//! `list` and `unregister` (and `verify`'s flags): the commands that read and rewrite the
//! `[[runners]]` of an existing config.toml.

use std::path::PathBuf;

use crate::Ctx;
use crate::config::{self, Table, Value};
use crate::flags::{Kind, Spec, flag};
use crate::log::{Exit, Level, Outcome};
use crate::token;

pub static LIST_FLAGS: &[Spec] = &[flag(&["config", "c"], Some("CONFIG_FILE"), Kind::Str)];

pub static VERIFY_FLAGS: &[Spec] = &[
    flag(&["config", "c"], Some("CONFIG_FILE"), Kind::Str),
    flag(&["delete"], None, Kind::Bool),
    flag(&["name", "n"], Some("RUNNER_NAME"), Kind::Str),
    flag(&["url", "u"], Some("CI_SERVER_URL"), Kind::Str),
    flag(&["token", "t"], Some("CI_SERVER_TOKEN"), Kind::Str),
];

pub static UNREGISTER_FLAGS: &[Spec] = &[
    flag(&["config", "c"], Some("CONFIG_FILE"), Kind::Str),
    flag(&["url", "u"], Some("CI_SERVER_URL"), Kind::Str),
    flag(&["token", "t"], Some("CI_SERVER_TOKEN"), Kind::Str),
    flag(&["name", "n"], Some("RUNNER_NAME"), Kind::Str),
    flag(&["all-runners"], Some("ALL_RUNNERS"), Kind::Bool),
];

fn config_path(ctx: &Ctx, p: &crate::flags::Parsed) -> PathBuf {
    match p.string("config") {
        c if c.is_empty() => ctx.default_config_file(),
        c => PathBuf::from(c),
    }
}

/// `loadConfig`: reading the config also reads (or makes) the system id.
fn load(path: &std::path::Path) -> Result<Table, Exit> {
    let cfg = match config::load(path) {
        Ok(c) => c.unwrap_or_else(config::new_config),
        Err(e) => return Err(Exit::Fatal(e)),
    };
    let _ = crate::system_id::ensure(path, std::path::Path::new("/"));
    Ok(cfg)
}

fn field(r: &Table, key: &str) -> String {
    r.get_str(key).unwrap_or("").to_string()
}

/// Like the real one: one line per runner on stderr, token included.
pub fn list(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let p = crate::parse_flags(ctx, "list", LIST_FLAGS, args)?;
    let path = config_path(ctx, &p);
    let cfg = load(&path)?;
    ctx.out.log(
        Level::Info,
        "Listing configured runners",
        &[("ConfigFile", path.display().to_string())],
    );
    for r in cfg.runners() {
        ctx.out.log(
            Level::Info,
            &field(r, "name"),
            &[
                ("Executor", field(r, "executor")),
                ("Token", field(r, "token")),
                ("URL", field(r, "url")),
            ],
        );
    }
    Ok(())
}

/// Removes the chosen runners from config.toml and saves the whole file.
pub fn unregister(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let p = crate::parse_flags(ctx, "unregister", UNREGISTER_FLAGS, args)?;
    crate::user_mode_warning(ctx, false);
    let path = config_path(ctx, &p);
    let mut cfg = load(&path)?;
    let all = p.bool("all-runners").map_err(Exit::Fatal)?;
    let (name, tok) = (p.string("name"), p.string("token"));
    let keep: Vec<bool> = if all {
        cfg.runners().iter().map(|_| false).collect()
    } else {
        let matches = |r: &Table| match (name.is_empty(), tok.is_empty()) {
            (false, false) => field(r, "name") == name && field(r, "token") == tok,
            (true, false) => field(r, "token") == tok,
            (false, true) => field(r, "name") == name,
            (true, true) => false,
        };
        if name.is_empty() && tok.is_empty() {
            return Err(Exit::Fatal(
                "at least one of --name or --token must be specified".into(),
            ));
        }
        let runners = cfg.runners();
        let Some(first) = runners.iter().position(|r| matches(r)) else {
            return Err(Exit::Fatal(if tok.is_empty() {
                format!("could not find a runner with the name '{name}'")
            } else {
                "could not find a runner with the token".to_string()
            }));
        };
        (0..runners.len()).map(|i| i != first).collect()
    };
    let system_id = crate::system_id::ensure(&path, std::path::Path::new("/"));
    let items = cfg.runners_mut();
    let mut i = 0;
    items.retain(|v| {
        let k = keep.get(i).copied().unwrap_or(true);
        i += 1;
        if !k && let Value::Table(r) = v {
            let t = r.get_str("token").unwrap_or("");
            // commands/unregister.go: a runner authentication token removes
            // only this machine's manager (DELETE /runners/managers with the
            // system id); any other token deletes the runner.
            let line = if t.starts_with("glrt-") {
                crate::log::format_line(
                    Level::Info,
                    "Unregistering runner manager from GitLab succeeded",
                    &[
                        ("runner", token::short(t)),
                        ("system_id", system_id.clone().unwrap_or_default()),
                    ],
                )
            } else {
                crate::log::format_line(
                    Level::Info,
                    "Unregistering runner from GitLab succeeded",
                    &[("runner", token::short(t))],
                )
            };
            ctx.out.err(&format!("{line}\n"));
        }
        k
    });
    config::normalize(&mut cfg);
    config::write_atomic(&path, config::encode(&cfg).as_bytes())
        .map_err(|e| Exit::Fatal(format!("saving the file: {e}")))?;
    Ok(())
}
