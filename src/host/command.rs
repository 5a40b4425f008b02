//! The only place that spawns processes.
//!
//! Every command goes through [`Commands::run`]: its argv is logged (redacted),
//! its output captured, and a failure becomes a [`CommandError`] that carries
//! the argv, the exit status and the tail of stderr, all redacted. The runner
//! token is never put on an argv; where a child needs it, it travels in that
//! child's environment only, and `RUNNER_TOKEN` is removed from every child's
//! inherited environment.

use std::fmt;
use std::time::Duration;

use crate::secret::Redactor;

/// A command to run: argv plus extra environment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cmd {
    pub argv: Vec<String>,
    pub env: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    /// Text given on stdin (a script for a shell); `None`: stdin is empty.
    pub stdin: Option<String>,
}

impl Cmd {
    pub fn new(program: &str) -> Self {
        Self {
            argv: vec![program.to_string()],
            env: Vec::new(),
            timeout: None,
            stdin: None,
        }
    }

    pub fn arg(mut self, arg: impl Into<String>) -> Self {
        self.argv.push(arg.into());
        self
    }

    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.argv.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets a variable in this child's environment only. Secrets go here,
    /// never on the argv.
    pub fn env(mut self, key: &str, value: impl Into<String>) -> Self {
        self.env.push((key.to_string(), value.into()));
        self
    }

    /// Gives `text` to the child on stdin (never a secret: it is not redacted).
    pub fn stdin(mut self, text: impl Into<String>) -> Self {
        self.stdin = Some(text.into());
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    #[cfg(test)]
    pub fn program(&self) -> &str {
        &self.argv[0]
    }

    /// The argv as a shell line, for logs and errors: pasted into a shell,
    /// it runs the same command.
    pub fn display(&self) -> String {
        self.argv
            .iter()
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `text` as one word for a POSIX shell: as it is when every character is
/// one a shell takes literally, else single-quoted (a `'` inside becomes
/// `'\''`). The one quoter for every shell line the tool writes or shows.
pub fn shell_quote(text: &str) -> String {
    let literal = |c: char| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c);
    if !text.is_empty() && text.chars().all(literal) {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

/// What a finished command left behind.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// Exit code; `None` when killed by a signal or timed out.
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// A command that could not be started or did not succeed.
#[derive(Debug, thiserror::Error)]
pub struct CommandError {
    pub argv: String,
    pub status: String,
    pub stderr: String,
}

impl fmt::Display for CommandError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}` {}", self.argv, self.status)?;
        if !self.stderr.is_empty() {
            write!(f, ": {}", self.stderr)?;
        }
        Ok(())
    }
}

/// Runs commands. The real one uses duct; tests substitute a recorder.
pub trait Runner: Send + Sync {
    fn run(&self, cmd: &Cmd) -> std::io::Result<Output>;
}

/// Runs processes for real with duct: stdin empty, stdout and stderr captured.
pub struct DuctRunner;

impl Runner for DuctRunner {
    fn run(&self, cmd: &Cmd) -> std::io::Result<Output> {
        let mut expr = duct::cmd(&cmd.argv[0], &cmd.argv[1..])
            .env_remove(crate::secret::TOKEN_ENV)
            .stdout_capture()
            .stderr_capture()
            .unchecked();
        for (k, v) in &cmd.env {
            expr = expr.env(k, v);
        }
        expr = match &cmd.stdin {
            Some(text) => expr.stdin_bytes(text.as_bytes()),
            None => expr.stdin_null(),
        };
        let handle = expr.start()?;
        let (output, timed_out) = match cmd.timeout {
            None => (handle.wait()?.clone(), false),
            Some(limit) => match handle.wait_timeout(limit)? {
                Some(out) => (out.clone(), false),
                None => {
                    handle.kill()?;
                    let out = handle.wait()?.clone();
                    (out, true)
                }
            },
        };
        Ok(Output {
            code: if timed_out {
                None
            } else {
                output.status.code()
            },
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
            timed_out,
        })
    }
}

/// The command runner every step uses, through [`crate::host::Host`].
pub struct Commands {
    runner: Box<dyn Runner>,
    redactor: Redactor,
    /// `Some(dir)`: run everything as `chroot DIR …`.
    chroot: Option<String>,
    verbose: bool,
}

impl Commands {
    pub fn new(
        runner: Box<dyn Runner>,
        redactor: Redactor,
        chroot: Option<String>,
        verbose: bool,
    ) -> Self {
        Self {
            runner,
            redactor,
            chroot,
            verbose,
        }
    }

    /// Runs `cmd`; a non-zero exit is an error carrying argv, status and stderr.
    pub fn run(&self, cmd: Cmd) -> Result<Output, CommandError> {
        let out = self.run_unchecked(cmd.clone())?;
        if out.success() {
            Ok(out)
        } else {
            Err(self.failure(&cmd, &out))
        }
    }

    /// Runs `cmd` and returns its output whatever its exit status: for probes
    /// where a non-zero exit is an answer, not a failure.
    pub fn run_unchecked(&self, cmd: Cmd) -> Result<Output, CommandError> {
        let cmd = match &self.chroot {
            Some(dir) => {
                let mut wrapped = Cmd::new("chroot").arg(dir.clone()).args(cmd.argv.clone());
                wrapped.env = cmd.env.clone();
                wrapped.timeout = cmd.timeout;
                wrapped.stdin = cmd.stdin.clone();
                wrapped
            }
            None => cmd,
        };
        let line = self.redactor.redact(&cmd.display());
        if self.verbose {
            eprintln!("+ {line}");
        }
        let out = self.runner.run(&cmd).map_err(|e| CommandError {
            argv: line,
            status: "could not be started".to_string(),
            stderr: self.redactor.redact(&e.to_string()),
        })?;
        Ok(Output {
            code: out.code,
            stdout: self.redactor.redact(&out.stdout),
            stderr: self.redactor.redact(&out.stderr),
            timed_out: out.timed_out,
        })
    }

    fn failure(&self, cmd: &Cmd, out: &Output) -> CommandError {
        let status = match (out.code, out.timed_out) {
            (_, true) => "timed out".to_string(),
            (Some(code), _) => format!("exited with status {code}"),
            (None, _) => "was killed by a signal".to_string(),
        };
        CommandError {
            argv: self.redactor.redact(&cmd.display()),
            status,
            stderr: tail(&out.stderr, 12),
        }
    }
}

/// The last `lines` non-empty lines of `text`: enough stderr to diagnose a
/// failure without flooding the terminal with apt's whole transcript.
fn tail(text: &str, lines: usize) -> String {
    let kept: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let start = kept.len().saturating_sub(lines);
    kept[start..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_arguments_with_spaces() {
        let cmd = Cmd::new("runuser").args(["-l", "gitlab-runner", "-c", "docker info"]);
        assert_eq!(cmd.display(), "runuser -l gitlab-runner -c 'docker info'");
    }

    #[test]
    fn shell_quote_cases() {
        let cases: &[(&str, &str)] = &[
            ("plain", "plain"),
            ("/usr/bin/x-y_z.1", "/usr/bin/x-y_z.1"),
            ("-o=DPkg::Lock::Timeout=600", "-o=DPkg::Lock::Timeout=600"),
            ("https://gitlab.example.com/", "https://gitlab.example.com/"),
            ("", "''"),
            ("two words", "'two words'"),
            ("it's", r"'it'\''s'"),
            ("'", r"''\'''"),
            ("$(reboot)", "'$(reboot)'"),
            ("`id`", "'`id`'"),
            ("a;b", "'a;b'"),
            ("a|b&c", "'a|b&c'"),
            ("*", "'*'"),
            ("~root", "'~root'"),
            ("#x", "'#x'"),
            ("a\nb", "'a\nb'"),
            ("tab\there", "'tab\there'"),
            ("{{.Driver}}", "'{{.Driver}}'"),
            ("\\", "'\\'"),
            ("\"q\"", "'\"q\"'"),
            ("é", "'é'"),
        ];
        for (text, quoted) in cases {
            assert_eq!(shell_quote(text), *quoted, "{text:?}");
            // A shell makes the text of it again.
            let out = std::process::Command::new("sh")
                .args(["-c", &format!("printf %s {quoted}")])
                .output()
                .expect("sh runs");
            assert_eq!(String::from_utf8_lossy(&out.stdout), *text, "{quoted}");
        }
    }

    #[test]
    fn tail_keeps_the_last_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("", 2), "");
    }

    #[test]
    fn real_runner_captures_and_reports_failure_without_the_token() {
        let redactor = Redactor::default();
        redactor.add("s3cr3t-token-value");
        let commands = Commands::new(Box::new(DuctRunner), redactor, None, false);
        let err = commands
            .run(Cmd::new("sh").args(["-c", "echo s3cr3t-token-value >&2; exit 3"]))
            .expect_err("exit 3 is a failure");
        let text = err.to_string();
        assert!(text.contains("exited with status 3"), "{text}");
        assert!(!text.contains("s3cr3t-token-value"), "{text}");
        assert!(text.contains("[redacted]"), "{text}");
    }

    /// Passes wherever it runs; `runner_token_in_the_tools_environment_stays_there`
    /// runs it again in a process that has RUNNER_TOKEN.
    #[test]
    fn real_runner_does_not_pass_runner_token_to_children() {
        println!(
            "this process has RUNNER_TOKEN: {}",
            std::env::var_os(crate::secret::TOKEN_ENV).is_some()
        );
        let commands = Commands::new(Box::new(DuctRunner), Redactor::default(), None, false);
        let out = commands
            .run(Cmd::new("sh").args(["-c", "echo \"${RUNNER_TOKEN-unset}\""]))
            .expect("sh runs");
        assert_eq!(out.stdout.trim(), "unset");
    }

    #[test]
    fn runner_token_in_the_tools_environment_stays_there() {
        // Setting the variable in this (multi-threaded) process would race
        // with every other test: run the test above in a child test process
        // that has it from the start.
        let out = std::process::Command::new(std::env::current_exe().expect("test executable"))
            .args([
                "--exact",
                "host::command::tests::real_runner_does_not_pass_runner_token_to_children",
                "--nocapture",
            ])
            .env(crate::secret::TOKEN_ENV, "GR1348941inheritedTokenValue")
            .output()
            .expect("test executable runs");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("this process has RUNNER_TOKEN: true"),
            "{stdout}"
        );
        assert!(stdout.contains("1 passed"), "{stdout}");
        assert!(out.status.success(), "{stdout}");
    }

    #[test]
    fn timeout_kills_the_child() {
        let commands = Commands::new(Box::new(DuctRunner), Redactor::default(), None, false);
        let out = commands
            .run_unchecked(
                Cmd::new("sleep")
                    .arg("5")
                    .timeout(Duration::from_millis(200)),
            )
            .expect("sleep starts");
        assert!(out.timed_out);
        assert!(!out.success());
    }
}
