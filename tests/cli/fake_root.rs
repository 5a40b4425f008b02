//! A temporary tree shaped like a fresh Debian 12 host, and helpers to run
//! the binary on it.

use std::fmt;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const LEGACY: &str = "GR1348941tier2LegacyToken";

pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl fmt::Display for Out {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

impl Out {
    pub fn from_output(out: std::process::Output) -> Self {
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// A count from the JSON summary event.
    pub fn summary(&self, field: &str) -> u64 {
        let line = self
            .stdout
            .lines()
            .find(|l| l.contains("\"event\":\"summary\""))
            .expect("summary event");
        let value: serde_json::Value = serde_json::from_str(line).expect("json");
        value[field].as_u64().expect("count")
    }
}

fn fakebin() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fakebin")
}

/// The stand-in gitlab-runner, built once per test process.
fn stand_in() -> PathBuf {
    static PATH: std::sync::OnceLock<Result<PathBuf, String>> = std::sync::OnceLock::new();
    PATH.get_or_init(crate::stand_in::stand_in_binary)
        .clone()
        .expect("the stand-in gitlab-runner")
}

pub fn run_program(program: &str, args: &[String], env: &[(&str, &str)]) -> Out {
    run_with_input(program, args, env, None)
}

/// Runs `program`, writing `input` to its standard input when given.
pub fn run_with_input(
    program: &str,
    args: &[String],
    env: &[(&str, &str)],
    input: Option<&str>,
) -> Out {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_remove("RUNNER_TOKEN")
        .env_remove("RUNNER_PROVISION_PROFILE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("run");
    let mut stdin = child.stdin.take().expect("stdin");
    if let Some(input) = input {
        stdin.write_all(input.as_bytes()).expect("write stdin");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("wait");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub fn run_binary(args: &[String], token: Option<&str>, env: &[(&str, &str)]) -> Out {
    let mut env = env.to_vec();
    if let Some(token) = token {
        env.push(("RUNNER_TOKEN", token));
    }
    run_program(env!("CARGO_BIN_EXE_runner-provision"), args, &env)
}

pub struct FakeRoot {
    dir: tempfile::TempDir,
}

impl FakeRoot {
    pub fn debian12() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = Self { dir };
        tree.write("etc/os-release", "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n");
        tree.write("etc/hostname", "runner-1\n");
        tree.write("etc/passwd", "root:x:0:0:root:/root:/bin/bash\n");
        tree.write("etc/group", "root:x:0:\n");
        tree.write("etc/modules", "# /etc/modules\nloop\n");
        tree.write(
            "var/lib/dpkg/status",
            "Package: dpkg\nStatus: install ok installed\n\n",
        );
        for tool in ["apt-get", "dpkg", "useradd", "usermod", "systemctl"] {
            tree.write(&format!("usr/bin/{tool}"), "#!/bin/sh\n");
        }
        std::fs::create_dir_all(tree.path().join("var/lib/apt/lists")).expect("mkdir");
        tree.profile();
        tree
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    pub fn write(&self, rel: &str, text: &str) {
        let path = self.path().join(rel);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    pub fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path().join(rel)).unwrap_or_default()
    }

    pub fn mode(&self, rel: &str) -> u32 {
        std::fs::metadata(self.path().join(rel))
            .expect("metadata")
            .permissions()
            .mode()
            & 0o7777
    }

    /// The commands the fake chroot saw, one line each.
    pub fn log(&self) -> Vec<String> {
        self.read("commands.log")
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Every file under the tree but the logs the stand-ins append to.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut out = Vec::new();
        let mut dirs = vec![self.path().to_path_buf()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("read_dir") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    dirs.push(path);
                } else if !path.ends_with("commands.log") && !path.ends_with("stand-in.log") {
                    out.push((path.clone(), std::fs::read(&path).expect("read")));
                }
            }
        }
        out.sort();
        out
    }

    /// A profile whose gitlab-runner repository is local and whose key is a
    /// file, so nothing is fetched from the network.
    fn profile(&self) -> PathBuf {
        let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/fixtures/test-key.asc");
        let path = self.path().join("profile.toml");
        if !path.exists() {
            let text = format!(
                "description = \"tier 2\"\n[runner.repository]\nuri = \"file:/srv/repo/\"\nsuite = \"./\"\ncomponents = \"\"\nkey_url = \"file:{}\"\n",
                key.display()
            );
            std::fs::write(&path, text).expect("profile");
        }
        path
    }

    /// The binary's argv and environment for `args` on this tree, with the
    /// fake chroot first on PATH.
    fn invocation(
        &self,
        args: &[&str],
        token: Option<&str>,
    ) -> (Vec<String>, Vec<(String, String)>) {
        let mut argv = vec![
            "--root".to_string(),
            self.path().display().to_string(),
            "--profile".to_string(),
            self.profile().display().to_string(),
        ];
        argv.extend(args.iter().map(|a| a.to_string()));
        let path = format!(
            "{}:{}",
            fakebin().display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut env = vec![
            ("PATH".to_string(), path),
            (
                "FAKE_LOG".to_string(),
                self.path().join("commands.log").display().to_string(),
            ),
            (
                "GITLAB_RUNNER_STAND_IN_LOG".to_string(),
                self.path().join("stand-in.log").display().to_string(),
            ),
            ("STAND_IN".to_string(), stand_in().display().to_string()),
        ];
        if let Some(token) = token {
            env.push(("RUNNER_TOKEN".to_string(), token.to_string()));
        }
        (argv, env)
    }

    /// Runs the binary with `--root` on this tree and the fake chroot on PATH.
    pub fn run(&self, args: &[&str], token: Option<&str>, env: &[(&str, &str)]) -> Out {
        let (argv, mut all_env) = self.invocation(args, token);
        all_env.extend(env.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let env: Vec<(&str, &str)> = all_env
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        run_program(env!("CARGO_BIN_EXE_runner-provision"), &argv, &env)
    }

    /// Runs the binary at a terminal (`script` gives it a pseudo-terminal)
    /// and types `answer` at it.
    pub fn run_at_terminal(&self, args: &[&str], token: Option<&str>, answer: &str) -> Out {
        let (argv, env) = self.invocation(args, token);
        let quoted: Vec<String> =
            std::iter::once(env!("CARGO_BIN_EXE_runner-provision").to_string())
                .chain(argv)
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect();
        let script_args = ["-q", "-e", "-c", &quoted.join(" "), "/dev/null"].map(str::to_string);
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        run_with_input("script", &script_args, &env, Some(answer))
    }

    /// Starts the binary at a terminal (as [`FakeRoot::run_at_terminal`])
    /// with its standard input and output piped to the test.
    pub fn spawn_at_terminal(&self, args: &[&str], token: Option<&str>) -> std::process::Child {
        let (argv, env) = self.invocation(args, token);
        let quoted: Vec<String> =
            std::iter::once(env!("CARGO_BIN_EXE_runner-provision").to_string())
                .chain(argv)
                .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
                .collect();
        let mut cmd = Command::new("script");
        cmd.args(["-q", "-e", "-c", &quoted.join(" "), "/dev/null"])
            .env_remove("RUNNER_TOKEN")
            .env_remove("RUNNER_PROVISION_PROFILE")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("script")
    }

    /// Starts the binary on this tree without waiting for it.
    pub fn spawn(&self, args: &[&str], token: Option<&str>) -> std::process::Child {
        let (argv, env) = self.invocation(args, token);
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_runner-provision"));
        cmd.args(argv)
            .env_remove("RUNNER_TOKEN")
            .env_remove("RUNNER_PROVISION_PROFILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        for (k, v) in &env {
            cmd.env(k, v);
        }
        cmd.spawn().expect("spawn")
    }

    pub fn apply(&self, extra: &[&str], token: Option<&str>) -> Out {
        let mut args = vec!["apply", "--yes", "--accept-docker-group-risk"];
        args.extend_from_slice(extra);
        self.run(&args, token, &[])
    }
}
