//! The invocation log tests read: `GITLAB_RUNNER_STAND_IN_LOG=PATH` gets one
//! JSON line per run, `{"argv":[…],"token_env":…,"uid":N,"euid":N}`.
//!
//! `token_env` names the environment variable that carried a token
//! (`CI_SERVER_TOKEN` or `REGISTRATION_TOKEN`), or is null; the token itself
//! is never written. argv is written as given (argv[0] included): a token
//! passed on the command line shows up there, which is what a test that
//! checks "the token is never on argv" needs to see.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;

pub const TOKEN_ENV_VARS: &[&str] = &["CI_SERVER_TOKEN", "REGISTRATION_TOKEN"];

pub fn line(env: &HashMap<String, String>, argv: &[String], uid: u32, euid: u32) -> String {
    let token_env = TOKEN_ENV_VARS
        .iter()
        .find(|v| env.get(**v).is_some_and(|t| !t.is_empty()))
        .copied();
    let mut s = serde_json::json!({
        "argv": argv,
        "token_env": token_env,
        "uid": uid,
        "euid": euid,
    })
    .to_string();
    s.push('\n');
    s
}

pub fn append(env: &HashMap<String, String>, argv: &[String]) {
    let Some(path) = env
        .get("GITLAB_RUNNER_STAND_IN_LOG")
        .filter(|p| !p.is_empty())
    else {
        return;
    };
    let text = line(
        env,
        argv,
        nix::unistd::getuid().as_raw(),
        nix::unistd::geteuid().as_raw(),
    );
    // One write of one line with O_APPEND: lines from concurrent runs do not mix.
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o644)
        .open(path)
    {
        let _ = f.write_all(text.as_bytes());
    }
}
