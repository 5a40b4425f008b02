//! A stand-in for the `gitlab-runner` executable, for tests.
//!
//! GitLab's package repository is unreachable where the tests run, so the
//! real binary cannot be installed. This one accepts the real command line
//! (flags, aliases and environment variables of GitLab Runner **17.4**,
//! urfave/cli v1 + Go `flag` parsing), writes `config.toml` byte for byte as
//! 17.4.0 does, and writes the same systemd unit / SysV script on `install`,
//! but talks to a GitLab server only at loopback addresses (`register`'s
//! API call, over TLS with the CA it is given and through the proxy of its
//! environment: see `server`): tokens and runner ids are derived from a
//! hash, and `run` only waits for a signal.
//!
//! Sources copied (gitlab-org/gitlab-runner, read from its GitHub mirror
//! `gitlabhq/gitlab-runner`): `commands/register.go`, `common/config.go`,
//! `commands/service.go`, `commands/service_linux.go`,
//! `helpers/service/scripts.go`, `main.go`, and kardianos/service
//! `service_systemd_linux.go` / `service_sysv_linux.go`. The config.toml
//! layout was checked against a file a real 17.4.0 wrote
//! (`fixtures/real-17.4-docker.toml`).
//!
//! For tests: `GITLAB_RUNNER_STAND_IN_LOG=PATH` appends one JSON line per
//! invocation (argv, which env var carried a token, uid, euid; never a
//! token value); `GITLAB_RUNNER_STAND_IN_NOW` fixes `token_obtained_at`.

mod config;
mod flags;
mod log;
mod record;
mod register;
mod run;
mod runners;
mod server;
mod service;
mod system_id;
mod token;
mod verify;

use std::collections::HashMap;
use std::path::PathBuf;

use log::{Exit, Level, Outcome, Output};

pub const VERSION: &str = "17.4.0-stand-in";
const REVISION: &str = "standin0";

/// Everything a command reads from its surroundings, so tests can fake it.
pub struct Ctx {
    pub env: HashMap<String, String>,
    pub uid: u32,
    pub hostname: String,
    pub out: Output,
}

impl Ctx {
    pub fn from_process() -> Self {
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .map(|h| h.trim().to_string())
            .unwrap_or_default();
        Ctx {
            env: std::env::vars().collect(),
            uid: nix::unistd::getuid().as_raw(),
            hostname,
            out: Output::live(),
        }
    }

    /// `GetDefaultConfigFile`: /etc/gitlab-runner for root, else
    /// ~/.gitlab-runner, else the current directory.
    pub fn default_config_file(&self) -> PathBuf {
        if self.uid == 0 {
            return PathBuf::from("/etc/gitlab-runner/config.toml");
        }
        match self.env.get("HOME").filter(|h| !h.is_empty()) {
            Some(home) => PathBuf::from(home).join(".gitlab-runner/config.toml"),
            None => std::env::current_dir()
                .unwrap_or_default()
                .join("config.toml"),
        }
    }
}

/// Parse a subcommand's flags; on error print what urfave/cli prints.
pub fn parse_flags(
    ctx: &mut Ctx,
    command: &str,
    specs: &'static [flags::Spec],
    args: &[String],
) -> Result<flags::Parsed, Exit> {
    match flags::parse(specs, args, &ctx.env) {
        Ok(p) => Ok(p),
        Err(flags::ParseError::Help) => {
            ctx.out.out(&command_help(command, specs));
            Err(Exit::Status(0))
        }
        Err(flags::ParseError::Invalid(e)) => {
            ctx.out.out(&format!("Incorrect Usage: {e}\n\n"));
            ctx.out.out(&command_help(command, specs));
            Err(Exit::Fatal(e))
        }
    }
}

fn command_help(command: &str, specs: &[flags::Spec]) -> String {
    let mut s = format!(
        "NAME:\n   gitlab-runner {command}\n\nUSAGE:\n   gitlab-runner {command} [command options] [arguments...]\n\nOPTIONS:\n"
    );
    for spec in specs {
        let names: Vec<String> = spec
            .names
            .iter()
            .map(|n| {
                if n.len() == 1 {
                    format!("-{n}")
                } else {
                    format!("--{n}")
                }
            })
            .collect();
        let env = spec.env.map(|e| format!(" [${e}]")).unwrap_or_default();
        s.push_str(&format!("   {}{env}\n", names.join(", ")));
    }
    s
}

/// `userModeWarning` from commands/helpers.
pub fn user_mode_warning(ctx: &mut Ctx, with_run: bool) {
    if ctx.uid == 0 {
        ctx.out.info("Running in system-mode.");
    } else {
        ctx.out.warn("Running in user-mode.");
        if with_run {
            ctx.out
                .warn("The user-mode requires you to manually start builds processing:");
            ctx.out.warn("$ gitlab-runner run");
            ctx.out.warn("Use sudo for system-mode:");
            ctx.out.warn("$ sudo gitlab-runner...");
        }
    }
    ctx.out.info("");
}

fn version_text() -> String {
    format!(
        "Version:      {VERSION}\nGit revision: {REVISION}\nGit branch:   stand-in\nGO version:   none (Rust stand-in)\nBuilt:        unknown\nOS/Arch:      linux/amd64\n"
    )
}

const APP_HELP: &str = "NAME:
   gitlab-runner - a GitLab Runner (test stand-in)

USAGE:
   gitlab-runner [global options] command [command options] [arguments...]

COMMANDS:
   list        List all configured runners
   run         run multi runner service
   register    register a new runner
   install     install service
   uninstall   uninstall service
   start       start service
   stop        stop service
   restart     restart service
   status      get status of a service
   unregister  unregister specific runner
   verify      verify all registered runners
   help, h     Shows a list of commands or help for one command

GLOBAL OPTIONS:
   --cpuprofile value           write cpu profile to file [$CPU_PROFILE]
   --debug                      debug mode [$RUNNER_DEBUG]
   --log-format value           Choose log format (options: runner, text, json) [$LOG_FORMAT]
   --log-level value, -l value  Log level (options: debug, info, warn, error, fatal, panic) [$LOG_LEVEL]
   --help, -h                   show help
   --version, -v                print the version
";

static GLOBAL_FLAGS: &[flags::Spec] = &[
    flags::flag(&["cpuprofile"], Some("CPU_PROFILE"), flags::Kind::Str),
    flags::flag(&["debug"], Some("RUNNER_DEBUG"), flags::Kind::Bool),
    flags::flag(&["log-format"], Some("LOG_FORMAT"), flags::Kind::Str),
    flags::flag(&["log-level", "l"], Some("LOG_LEVEL"), flags::Kind::Str),
    flags::flag(&["version", "v"], None, flags::Kind::Bool),
];

/// Run one invocation (`args` without the program name).
pub fn dispatch(ctx: &mut Ctx, args: &[String]) -> Outcome {
    // Global options end at the first non-flag argument: the command.
    let split = args
        .iter()
        .position(|a| !a.starts_with('-'))
        .unwrap_or(args.len());
    let (global, rest) = args.split_at(split);
    // A global option's value (`-l debug`) is not the command.
    let (global, rest) = match global.last().map(String::as_str) {
        Some(
            "-l" | "--log-level" | "-log-level" | "--log-format" | "-log-format" | "--cpuprofile"
            | "-cpuprofile",
        ) if !rest.is_empty() => {
            let n = split + 1;
            (&args[..n], &args[n..])
        }
        _ => (global, rest),
    };
    let g = match flags::parse(GLOBAL_FLAGS, global, &ctx.env) {
        Ok(g) => g,
        Err(flags::ParseError::Help) => {
            ctx.out.out(APP_HELP);
            return Ok(());
        }
        Err(flags::ParseError::Invalid(e)) => {
            ctx.out.out(&format!("Incorrect Usage. {e}\n\n{APP_HELP}"));
            return Err(Exit::Fatal(e));
        }
    };
    if g.bool("version").unwrap_or(false) {
        ctx.out.out(&version_text());
        return Ok(());
    }
    let Some((command, sub_args)) = rest.split_first() else {
        ctx.out.out(APP_HELP);
        return Ok(());
    };
    if command != "help" && command != "h" {
        ctx.out.log(
            Level::Info,
            "Runtime platform",
            &[
                ("arch", "amd64".into()),
                ("os", "linux".into()),
                ("pid", std::process::id().to_string()),
                ("revision", REVISION.into()),
                ("version", VERSION.into()),
            ],
        );
    }
    match command.as_str() {
        "register" => register::run(ctx, sub_args),
        "install" | "uninstall" | "start" | "stop" | "restart" | "status" => {
            service::control(ctx, command, sub_args)
        }
        "run" => run::run_service(ctx, sub_args),
        "list" => runners::list(ctx, sub_args),
        "verify" => verify::verify(ctx, sub_args),
        "unregister" => runners::unregister(ctx, sub_args),
        "help" | "h" => {
            ctx.out.out(APP_HELP);
            Ok(())
        }
        other => Err(Exit::Fatal(format!("Command {other} not found."))),
    }
}

fn main() {
    let argv: Vec<String> = std::env::args().collect();
    let mut ctx = Ctx::from_process();
    record::append(&ctx.env, &argv);
    let code = match dispatch(&mut ctx, argv.get(1..).unwrap_or(&[])) {
        Ok(()) => 0,
        Err(Exit::Status(code)) => code,
        Err(e @ (Exit::Panic(_) | Exit::Fatal(_))) => {
            let level = if matches!(e, Exit::Panic(_)) {
                Level::Panic
            } else {
                Level::Fatal
            };
            ctx.out.log(level, e.message().unwrap_or(""), &[]);
            1
        }
    };
    std::process::exit(code);
}

#[cfg(test)]
mod tests;
