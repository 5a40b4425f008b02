//! `gitlab-runner register`, offline.
//!
//! Follows `commands/register.go` (17.x): the same flags and env vars, the
//! same order of questions (`ask` panics with "The <key> needs to be entered"
//! in non-interactive mode), the legacy registration-token flow and the
//! `glrt-` runner-authentication-token flow with its refusal of server-side
//! settings. Where the real one calls the GitLab API (`RegisterRunner`,
//! `VerifyRunner`) this one derives the answer from a hash (see `token`).

use std::io::BufRead;
use std::path::PathBuf;

use crate::Ctx;
use crate::config::{self, Table, Value, ZERO_TIME};
use crate::flags::{Kind, Spec, flag, flag_default};
use crate::log::{Exit, Level, Outcome};
use crate::token;

/// `RegisterCommand` and the embedded `common.RunnerConfig` fields that
/// matter for a shell-executor host (names, aliases and env vars as in the
/// struct tags). Executor-specific flags other than `--docker-image` are not
/// accepted.
pub static FLAGS: &[Spec] = &[
    flag(&["config", "c"], Some("CONFIG_FILE"), Kind::Str),
    flag(
        &["template-config"],
        Some("TEMPLATE_CONFIG_FILE"),
        Kind::Str,
    ),
    flag(&["tag-list"], Some("RUNNER_TAG_LIST"), Kind::Str),
    flag(
        &["non-interactive", "n"],
        Some("REGISTER_NON_INTERACTIVE"),
        Kind::Bool,
    ),
    flag(&["leave-runner"], Some("REGISTER_LEAVE_RUNNER"), Kind::Bool),
    flag(
        &["registration-token", "r"],
        Some("REGISTRATION_TOKEN"),
        Kind::Str,
    ),
    flag(&["run-untagged"], Some("REGISTER_RUN_UNTAGGED"), Kind::Bool),
    flag_default(&["locked"], Some("REGISTER_LOCKED"), Kind::Bool, "true"),
    flag(&["access-level"], Some("REGISTER_ACCESS_LEVEL"), Kind::Str),
    flag(
        &["maximum-timeout"],
        Some("REGISTER_MAXIMUM_TIMEOUT"),
        Kind::Int,
    ),
    flag(&["paused"], Some("REGISTER_PAUSED"), Kind::Bool),
    flag(
        &["maintenance-note"],
        Some("REGISTER_MAINTENANCE_NOTE"),
        Kind::Str,
    ),
    // common.RunnerConfig
    flag(&["name", "description"], Some("RUNNER_NAME"), Kind::Str),
    flag(&["limit"], Some("RUNNER_LIMIT"), Kind::Int),
    flag(&["output-limit"], Some("RUNNER_OUTPUT_LIMIT"), Kind::Int),
    flag(
        &["request-concurrency"],
        Some("RUNNER_REQUEST_CONCURRENCY"),
        Kind::Int,
    ),
    // common.RunnerCredentials
    flag(&["url", "u"], Some("CI_SERVER_URL"), Kind::Str),
    flag(&["token", "t"], Some("CI_SERVER_TOKEN"), Kind::Str),
    flag(&["tls-ca-file"], Some("CI_SERVER_TLS_CA_FILE"), Kind::Str),
    flag(
        &["tls-cert-file"],
        Some("CI_SERVER_TLS_CERT_FILE"),
        Kind::Str,
    ),
    flag(&["tls-key-file"], Some("CI_SERVER_TLS_KEY_FILE"), Kind::Str),
    // common.RunnerSettings
    flag(&["executor"], Some("RUNNER_EXECUTOR"), Kind::Str),
    flag(&["builds-dir"], Some("RUNNER_BUILDS_DIR"), Kind::Str),
    flag(&["cache-dir"], Some("RUNNER_CACHE_DIR"), Kind::Str),
    flag(&["clone-url"], Some("CLONE_URL"), Kind::Str),
    flag(&["env"], Some("RUNNER_ENV"), Kind::List),
    flag(
        &["pre-get-sources-script"],
        Some("RUNNER_PRE_GET_SOURCES_SCRIPT"),
        Kind::Str,
    ),
    flag(
        &["post-get-sources-script"],
        Some("RUNNER_POST_GET_SOURCES_SCRIPT"),
        Kind::Str,
    ),
    flag(
        &["pre-build-script"],
        Some("RUNNER_PRE_BUILD_SCRIPT"),
        Kind::Str,
    ),
    flag(
        &["post-build-script"],
        Some("RUNNER_POST_BUILD_SCRIPT"),
        Kind::Str,
    ),
    flag(
        &["debug-trace-disabled"],
        Some("RUNNER_DEBUG_TRACE_DISABLED"),
        Kind::Bool,
    ),
    flag(&["shell"], Some("RUNNER_SHELL"), Kind::Str),
    flag(
        &["custom_build_dir-enabled"],
        Some("CUSTOM_BUILD_DIR_ENABLED"),
        Kind::Bool,
    ),
    flag(&["docker-image"], Some("DOCKER_IMAGE"), Kind::Str),
];

/// `common.GetExecutorNames()` on Linux.
const EXECUTORS: &[&str] = &[
    "custom",
    "docker",
    "docker-autoscaler",
    "docker-windows",
    "docker+machine",
    "instance",
    "kubernetes",
    "parallels",
    "shell",
    "ssh",
    "virtualbox",
];

const RESERVED_ARGS: &str = "Runner configuration other than name and executor configuration is reserved (specifically --locked, \
--access-level, --run-untagged, --maximum-timeout, --paused, --tag-list, and --maintenance-note) \
and cannot be specified when registering with a runner authentication token. \
This configuration is specified on the GitLab server. \
Please try again without specifying any of those arguments. \
For more information, see https://docs.gitlab.com/ci/runners/new_creation_workflow/#changes-to-the-gitlab-runner-register-command-syntax";

const LEGACY_PARAMS_IGNORED: &str = "You have specified an authentication token in the legacy parameter --registration-token. \
This has triggered the 'legacy-compatible registration process' which has resulted in the \
following command line parameters being ignored: --locked, --access-level, --run-untagged, \
--maximum-timeout, --paused, --tag-list, and --maintenance-note. \
For more information, see https://docs.gitlab.com/ci/runners/new_creation_workflow/#changes-to-the-gitlab-runner-register-command-syntax\
These parameters and the legacy-compatible registration process will be removed \
in a future GitLab Runner release. ";

const DEPRECATED_REGISTRATION_TOKEN: &str = "Support for registration tokens and runner parameters in the 'register' command has been deprecated in \
GitLab Runner 15.6 and will be replaced with support for authentication tokens. \
For more information, see https://docs.gitlab.com/ci/runners/new_creation_workflow/";

struct Asker<'a> {
    p: &'a crate::flags::Parsed,
    non_interactive: bool,
    /// The `--name` flag's default: `newRegisterCommand` presets the field
    /// to `os.Hostname()`, and clihelpers turns preset fields into defaults.
    hostname: String,
}

impl Asker<'_> {
    /// `RegisterCommand.ask`: the flag/env value, or (interactive) a line
    /// from stdin.
    fn ask(
        &self,
        ctx: &mut Ctx,
        key: &str,
        prompt: &str,
        allow_empty: bool,
    ) -> Result<String, Exit> {
        let mut result = self.p.string(key).trim().to_string();
        if key == "name" && !self.p.is_set("name") {
            result = self.hostname.clone();
        }
        if self.non_interactive {
            if result.is_empty() && !allow_empty {
                return Err(Exit::Panic(format!("The {key} needs to be entered")));
            }
            return Ok(result);
        }
        loop {
            ctx.out.out(&format!("{prompt}\n"));
            if !result.is_empty() {
                ctx.out.out(&format!("[{result}]: "));
            }
            let mut line = String::new();
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .map_err(|e| Exit::Panic(e.to_string()))?;
            if n == 0 {
                return Err(Exit::Panic(
                    "Unexpected EOF. Did you mean to use --non-interactive?".into(),
                ));
            }
            let line = line.trim();
            if !line.is_empty() {
                result = line.to_string();
                return Ok(result);
            }
            if allow_empty || !result.is_empty() {
                return Ok(result);
            }
        }
    }
}

/// The API call the real one makes at this point, through the proxy and
/// with the CA it is given (see `server`); a failure is logged and ends
/// registration as the real one's does.
fn contact(
    ctx: &mut Ctx,
    url: &str,
    path: &str,
    p: &crate::flags::Parsed,
    failed: &str,
    token: &str,
    panic: &str,
) -> Result<(), Exit> {
    match crate::server::post(ctx, url, path, &p.string("tls-ca-file")) {
        Ok(_) => Ok(()),
        Err(status) => {
            ctx.out.log(
                Level::Error,
                failed,
                &[("runner", token::short(token)), ("status", status)],
            );
            Err(Exit::Panic(panic.into()))
        }
    }
}

fn is_runner_token(token: &str) -> bool {
    token.starts_with("glrt-")
}

pub fn run(ctx: &mut Ctx, args: &[String]) -> Outcome {
    let p = crate::parse_flags(ctx, "register", FLAGS, args)?;
    crate::user_mode_warning(ctx, true);

    let bad = |e: String| Exit::Fatal(e);
    let asker = Asker {
        p: &p,
        non_interactive: p.bool("non-interactive").map_err(bad)?,
        hostname: ctx.hostname.clone(),
    };
    let locked = p.bool("locked").map_err(bad)?;
    let run_untagged = p.bool("run-untagged").map_err(bad)?;
    let paused = p.bool("paused").map_err(bad)?;
    let maximum_timeout = p.int("maximum-timeout").map_err(bad)?;
    let access_level = p.string("access-level");
    if !["", "not_protected", "ref_protected"].contains(&access_level.as_str()) {
        return Err(Exit::Panic(
            "Given access-level is not valid. Refer to gitlab-runner register -h for the correct options."
                .into(),
        ));
    }

    let config_path = match p.string("config") {
        c if c.is_empty() => ctx.default_config_file(),
        c => PathBuf::from(c),
    };
    let template = load_template(ctx, &p)?;

    // configfile.Load: a malformed file stops registration before any
    // question is asked, and the file is left alone.
    let mut cfg = match config::load(&config_path) {
        Ok(Some(c)) => c,
        Ok(None) => config::new_config(),
        Err(e) => return Err(Exit::Panic(e)),
    };
    let _ = crate::system_id::ensure(&config_path, std::path::Path::new("/"));

    let mut runner = Runner {
        name: {
            let n = p.string("name");
            if n.is_empty() {
                ctx.hostname.clone()
            } else {
                n
            }
        },
        id: 0,
        token_obtained_at: ZERO_TIME.to_string(),
        ..Runner::default()
    };

    // askRunner
    runner.url = asker.ask(
        ctx,
        "url",
        "Enter the GitLab instance URL (for example, https://gitlab.com/):",
        false,
    )?;
    runner.token = p.string("token");
    if !runner.token.is_empty() && !is_runner_token(&runner.token) {
        ctx.out.info("Token specified trying to verify runner...");
        ctx.out
            .warn("If you want to register use the '-r' instead of '-t'.");
        ctx.out.log(
            Level::Info,
            "Verifying runner... is valid",
            &[("runner", token::short(&runner.token))],
        );
    } else {
        if runner.token.is_empty() || !is_runner_token(&runner.token) {
            runner.token = asker.ask(
                ctx,
                "registration-token",
                "Enter the registration token:",
                false,
            )?;
        }
        if !is_runner_token(&runner.token) {
            runner.name = asker.ask(ctx, "name", "Enter a description for the runner:", false)?;
            // doLegacyRegisterRunner
            let tag_list = asker.ask(
                ctx,
                "tag-list",
                "Enter tags for the runner (comma-separated):",
                true,
            )?;
            let _note = asker.ask(
                ctx,
                "maintenance-note",
                "Enter optional maintenance note for the runner:",
                true,
            )?;
            let _run_untagged = run_untagged || tag_list.is_empty();
            let _ = (locked, paused, maximum_timeout);
            ctx.out.warn(DEPRECATED_REGISTRATION_TOKEN);
            let registration_token = std::mem::take(&mut runner.token);
            contact(
                ctx,
                &runner.url,
                "runners",
                &p,
                "Registering runner... failed",
                &registration_token,
                "Failed to register the runner.",
            )?;
            let (id, runner_token) =
                token::legacy_registration(&runner.url, &runner.name, &registration_token);
            ctx.out.log(
                Level::Info,
                "Registering runner... succeeded",
                &[("runner", token::short(&registration_token))],
            );
            runner.id = id;
            runner.token = runner_token;
            runner.token_obtained_at = token::now(
                ctx.env
                    .get("GITLAB_RUNNER_STAND_IN_NOW")
                    .map(String::as_str),
            );
        } else {
            if cfg
                .runners()
                .iter()
                .any(|r| r.get_str("token") == Some(runner.token.as_str()))
            {
                ctx.out
                    .warn("A runner with this system ID and token has already been registered.");
            }
            // ensureServerConfigArgsEmpty
            let tag_list = p.string("tag-list");
            let note = p.string("maintenance-note");
            if !(locked
                && access_level.is_empty()
                && !run_untagged
                && maximum_timeout == 0
                && !paused
                && tag_list.is_empty()
                && note.is_empty())
            {
                if p.string("registration-token") == runner.token {
                    ctx.out.warn(LEGACY_PARAMS_IGNORED);
                } else {
                    return Err(Exit::Fatal(RESERVED_ARGS.into()));
                }
            }
            // verifyRunner
            contact(
                ctx,
                &runner.url,
                "runners/verify",
                &p,
                "Verifying runner... failed",
                &runner.token,
                "Failed to verify the runner.",
            )?;
            ctx.out.log(
                Level::Info,
                "Verifying runner... is valid",
                &[("runner", token::short(&runner.token))],
            );
            runner.id = token::verified_id(&runner.url, &runner.token);
            runner.token_obtained_at = token::now(
                ctx.env
                    .get("GITLAB_RUNNER_STAND_IN_NOW")
                    .map(String::as_str),
            );
            runner.name = asker.ask(
                ctx,
                "name",
                "Enter a name for the runner. This is stored only in the local config.toml file:",
                false,
            )?;
        }
    }

    // askExecutor + askExecutorOptions
    let executors = EXECUTORS.join(", ");
    runner.executor = asker.ask(
        ctx,
        "executor",
        &format!("Enter an executor: {executors}:"),
        true,
    )?;
    if !EXECUTORS.contains(&runner.executor.as_str()) {
        return Err(Exit::Panic("Invalid executor specified".into()));
    }
    if matches!(
        runner.executor.as_str(),
        "docker" | "docker+machine" | "docker-autoscaler" | "docker-windows"
    ) {
        runner.docker_image = Some(asker.ask(
            ctx,
            "docker-image",
            "Enter the default Docker image (for example, ruby:3.3):",
            false,
        )?);
    }
    runner.limit = p.int("limit").map_err(bad)?;
    runner.output_limit = p.int("output-limit").map_err(bad)?;
    runner.request_concurrency = p.int("request-concurrency").map_err(bad)?;
    for (field, key) in [
        (&mut runner.tls_ca_file, "tls-ca-file"),
        (&mut runner.tls_cert_file, "tls-cert-file"),
        (&mut runner.tls_key_file, "tls-key-file"),
        (&mut runner.builds_dir, "builds-dir"),
        (&mut runner.cache_dir, "cache-dir"),
        (&mut runner.clone_url, "clone-url"),
        (&mut runner.pre_get_sources_script, "pre-get-sources-script"),
        (
            &mut runner.post_get_sources_script,
            "post-get-sources-script",
        ),
        (&mut runner.pre_build_script, "pre-build-script"),
        (&mut runner.post_build_script, "post-build-script"),
        (&mut runner.shell, "shell"),
    ] {
        *field = p.string(key);
    }
    runner.environment = p.list("env");
    runner.debug_trace_disabled = p.bool("debug-trace-disabled").map_err(bad)?;
    runner.custom_build_dir_enabled = p.bool("custom_build_dir-enabled").map_err(bad)?;

    let mut table = runner.to_table();
    if let Some(t) = template {
        merge_missing(&mut table, &t);
    }
    cfg.runners_mut().push(Value::Table(table));
    config::normalize(&mut cfg);
    let text = config::encode(&cfg);
    config::write_atomic(&config_path, text.as_bytes()).map_err(|e| {
        Exit::Panic(format!(
            "saving the file: open {}: {}",
            config_path.display(),
            e
        ))
    })?;

    let concurrent = match cfg.get("concurrent") {
        Some(Value::Int(i)) => *i,
        _ => 1,
    };
    if concurrent < runner.limit {
        ctx.out.warn(&format!(
            "The specified runner job concurrency limit ({}) is larger than current global concurrency limit ({concurrent}). \
             The global concurrent limit will not be increased and takes precedence.",
            runner.limit
        ));
    }
    if concurrent < runner.request_concurrency {
        ctx.out.warn(&format!(
            "The specified runner request concurrency ({}) is larger than the current global concurrent limit ({concurrent}). \
             The global concurrent limit will not be increased and takes precedence.",
            runner.request_concurrency
        ));
    }
    ctx.out.info("Runner registered successfully. Feel free to start it, but if it's running already the config should be automatically reloaded!\n");
    ctx.out.info(&format!(
        "Configuration (with the authentication token) was saved in {:?}",
        config_path.display().to_string()
    ));
    Ok(())
}

/// `--template-config`: the file must hold exactly one `[[runners]]`; its
/// keys fill in what registration left unset (`mergo.Merge`), never its token.
fn load_template(ctx: &mut Ctx, p: &crate::flags::Parsed) -> Result<Option<Table>, Exit> {
    let path = p.string("template-config");
    if path.is_empty() {
        return Ok(None);
    }
    ctx.out.info(&format!(
        "Merging configuration from template file {path:?}"
    ));
    let fail = |e: String| {
        Exit::Fatal(format!(
            "Could not handle configuration merging from template file  error=couldn't load configuration template file: {e}"
        ))
    };
    let t = match config::load(std::path::Path::new(&path)) {
        Ok(Some(t)) => t,
        Ok(None) => config::new_config(),
        Err(e) => return Err(fail(e)),
    };
    let runners = t.runners();
    if runners.len() != 1 {
        return Err(Exit::Fatal(
            "Could not handle configuration merging from template file  error=configuration template must contain exactly one [[runners]] entry".into(),
        ));
    }
    let mut r = runners[0].clone();
    r.0.retain(|(k, _)| k != "token");
    Ok(Some(r))
}

fn merge_missing(dst: &mut Table, src: &Table) {
    for (k, v) in &src.0 {
        match (dst.get_mut(k), v) {
            (None, _) => dst.0.push((k.clone(), v.clone())),
            (Some(Value::Table(d)), Value::Table(s)) => merge_missing(d, s),
            (Some(Value::Str(d)), Value::Str(s)) if d.is_empty() => *d = s.clone(),
            (Some(Value::Int(0)), Value::Int(s)) => dst.set(k, Value::Int(*s)),
            _ => {}
        }
    }
}

/// The `[[runners]]` entry register adds, before it is laid out.
#[derive(Default, Debug)]
pub struct Runner {
    pub name: String,
    pub limit: i64,
    pub output_limit: i64,
    pub request_concurrency: i64,
    pub url: String,
    pub id: i64,
    pub token: String,
    pub token_obtained_at: String,
    pub tls_ca_file: String,
    pub tls_cert_file: String,
    pub tls_key_file: String,
    pub executor: String,
    pub builds_dir: String,
    pub cache_dir: String,
    pub clone_url: String,
    pub environment: Vec<String>,
    pub pre_get_sources_script: String,
    pub post_get_sources_script: String,
    pub pre_build_script: String,
    pub post_build_script: String,
    pub debug_trace_disabled: bool,
    pub shell: String,
    pub custom_build_dir_enabled: bool,
    pub docker_image: Option<String>,
}

impl Runner {
    /// Field order and omitempty rules of `common.RunnerConfig` (17.4).
    pub fn to_table(&self) -> Table {
        let mut t = Table::default();
        let s = |v: &str| Value::Str(v.to_string());
        t.set("name", s(&self.name));
        for (k, v) in [
            ("limit", self.limit),
            ("output_limit", self.output_limit),
            ("request_concurrency", self.request_concurrency),
        ] {
            if v != 0 {
                t.set(k, Value::Int(v));
            }
        }
        t.set("url", s(&self.url));
        t.set("id", Value::Int(self.id));
        t.set("token", s(&self.token));
        t.set(
            "token_obtained_at",
            Value::Datetime(self.token_obtained_at.clone()),
        );
        t.set("token_expires_at", Value::Datetime(ZERO_TIME.into()));
        for (k, v) in [
            ("tls-ca-file", &self.tls_ca_file),
            ("tls-cert-file", &self.tls_cert_file),
            ("tls-key-file", &self.tls_key_file),
        ] {
            if !v.is_empty() {
                t.set(k, s(v));
            }
        }
        t.set("executor", s(&self.executor));
        for (k, v) in [
            ("builds_dir", &self.builds_dir),
            ("cache_dir", &self.cache_dir),
            ("clone_url", &self.clone_url),
        ] {
            if !v.is_empty() {
                t.set(k, s(v));
            }
        }
        if !self.environment.is_empty() {
            t.set(
                "environment",
                Value::Array(self.environment.iter().map(|e| s(e)).collect()),
            );
        }
        for (k, v) in [
            ("pre_get_sources_script", &self.pre_get_sources_script),
            ("post_get_sources_script", &self.post_get_sources_script),
            ("pre_build_script", &self.pre_build_script),
            ("post_build_script", &self.post_build_script),
        ] {
            if !v.is_empty() {
                t.set(k, s(v));
            }
        }
        if self.debug_trace_disabled {
            t.set("debug_trace_disabled", Value::Bool(true));
        }
        if !self.shell.is_empty() {
            t.set("shell", s(&self.shell));
        }
        let mut custom_build_dir = Table::default();
        if self.custom_build_dir_enabled {
            custom_build_dir.set("enabled", Value::Bool(true));
        }
        t.set("custom_build_dir", Value::Table(custom_build_dir));
        let mut cache = Table::default();
        cache.set("MaxUploadedArchiveSize", Value::Int(0));
        for sub in ["s3", "gcs", "azure"] {
            cache.set(sub, Value::Table(Table::default()));
        }
        t.set("cache", Value::Table(cache));
        if let Some(image) = &self.docker_image {
            let mut d = Table::default();
            d.set("tls_verify", Value::Bool(false));
            d.set("image", s(image));
            d.set("privileged", Value::Bool(false));
            d.set("disable_entrypoint_overwrite", Value::Bool(false));
            d.set("oom_kill_disable", Value::Bool(false));
            d.set("disable_cache", Value::Bool(false));
            d.set("volumes", Value::Array(vec![s("/cache")]));
            d.set("shm_size", Value::Int(0));
            d.set("network_mtu", Value::Int(0));
            t.set("docker", Value::Table(d));
        }
        t
    }
}
