//! Behaviour tests: the binary's commands against a temp config file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::log::{Exit, Output};
use crate::{Ctx, dispatch};

const NOW: &str = "2024-09-26T03:24:18Z";

fn ctx(env: &[(&str, &str)]) -> Ctx {
    let mut env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("GITLAB_RUNNER_STAND_IN_NOW".into(), NOW.into());
    Ctx {
        env,
        uid: 0,
        hostname: "ci-host-1".into(),
        out: Output::captured(),
    }
}

fn run(ctx: &mut Ctx, args: &[&str]) -> Result<(), Exit> {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    dispatch(ctx, &args)
}

fn register_shell(config: &Path, env: &[(&str, &str)], extra: &[&str]) -> (Ctx, Result<(), Exit>) {
    let mut c = ctx(env);
    let cfg = config.display().to_string();
    let mut args = vec![
        "register",
        "--non-interactive",
        "--config",
        &cfg,
        "--url",
        "https://gitlab.example.com/",
        "--executor",
        "shell",
    ];
    args.extend_from_slice(extra);
    let r = run(&mut c, &args);
    (c, r)
}

fn temp_config() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("etc/gitlab-runner/config.toml");
    (dir, path)
}

#[test]
fn fresh_register_writes_the_real_17_4_bytes() {
    let (_dir, path) = temp_config();
    let (c, r) = register_shell(&path, &[("REGISTRATION_TOKEN", "GR1348941regtoken")], &[]);
    assert_eq!(r, Ok(()), "{}", c.out.stderr_text());
    let written = std::fs::read_to_string(&path).expect("config written");
    assert_eq!(written, include_str!("../fixtures/register-shell.toml"));
    assert!(!written.contains("GR1348941regtoken"));

    use std::os::unix::fs::PermissionsExt;
    let mode = |p: &Path| std::fs::metadata(p).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode(&path), 0o600);
    assert_eq!(mode(path.parent().expect("dir")), 0o700);
    assert!(
        c.out
            .stderr_text()
            .contains("Runner registered successfully.")
    );
}

#[test]
fn second_register_appends_and_keeps_the_first() {
    let (_dir, path) = temp_config();
    let (_, r) = register_shell(&path, &[("REGISTRATION_TOKEN", "GR1348941regtoken")], &[]);
    assert_eq!(r, Ok(()));
    let first = std::fs::read_to_string(&path).expect("config");
    let (c, r) = register_shell(
        &path,
        &[("CI_SERVER_TOKEN", "glrt-abcdefghijklmnopqrst")],
        &["--name", "second"],
    );
    assert_eq!(r, Ok(()), "{}", c.out.stderr_text());
    let both = std::fs::read_to_string(&path).expect("config");
    assert!(
        both.starts_with(&first),
        "first runner kept byte for byte:\n{both}"
    );
    let second = &both[first.len()..];
    assert!(second.starts_with("\n[[runners]]\n  name = \"second\"\n"));
    assert!(second.contains("  token = \"glrt-abcdefghijklmnopqrst\"\n"));
    assert_eq!(both.matches("[[runners]]").count(), 2);
}

#[test]
fn existing_file_is_reencoded_keeping_every_runner_and_key() {
    let (_dir, path) = temp_config();
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(
        &path,
        "# hand-written\nconcurrent = 4\n\n[[runners]]\n  name = \"old\"\n  url = \"https://a/\"\n  token = \"t1\"\n  executor = \"shell\"\n  environment = [\"DOCKER_DRIVER=overlay2\"]\n",
    )
    .expect("write");
    let (c, r) = register_shell(&path, &[("REGISTRATION_TOKEN", "GR1348941x")], &[]);
    assert_eq!(r, Ok(()), "{}", c.out.stderr_text());
    let out = std::fs::read_to_string(&path).expect("config");
    assert!(
        !out.contains("# hand-written"),
        "comments are dropped as the real one does"
    );
    assert!(out.starts_with("concurrent = 4\n"));
    assert!(out.contains("  name = \"old\"\n"));
    assert!(out.contains("  environment = [\"DOCKER_DRIVER=overlay2\"]\n"));
    assert!(out.contains("  name = \"ci-host-1\"\n"));
}

#[test]
fn runner_token_with_tag_list_is_refused_with_the_real_message() {
    let (_dir, path) = temp_config();
    let (c, r) = register_shell(
        &path,
        &[("CI_SERVER_TOKEN", "glrt-abcdefghijklmnopqrst")],
        &["--tag-list", "docker,shell"],
    );
    let Err(Exit::Fatal(msg)) = r else {
        panic!("expected a fatal error, got {r:?}; {}", c.out.stderr_text());
    };
    assert!(msg.starts_with(
        "Runner configuration other than name and executor configuration is reserved (specifically --locked, --access-level, --run-untagged, --maximum-timeout, --paused, --tag-list, and --maintenance-note) and cannot be specified when registering with a runner authentication token."
    ));
    assert!(!path.exists(), "nothing written");
}

#[test]
fn runner_token_given_as_registration_token_only_warns() {
    let (_dir, path) = temp_config();
    let (c, r) = register_shell(
        &path,
        &[("REGISTRATION_TOKEN", "glrt-abcdefghijklmnopqrst")],
        &["--tag-list", "docker"],
    );
    assert_eq!(r, Ok(()));
    assert!(c.out.stderr_text().contains("WARNING: You have specified an authentication token in the legacy parameter --registration-token."));
    let out = std::fs::read_to_string(&path).expect("config");
    assert!(out.contains("token = \"glrt-abcdefghijklmnopqrst\""));
}

#[test]
fn missing_url_or_token_panics_like_the_real_one() {
    let (_dir, path) = temp_config();
    let cfg = path.display().to_string();
    let mut c = ctx(&[]);
    let r = run(
        &mut c,
        &[
            "register",
            "--non-interactive",
            "--config",
            &cfg,
            "--executor",
            "shell",
        ],
    );
    assert_eq!(r, Err(Exit::Panic("The url needs to be entered".into())));
    let mut c = ctx(&[]);
    let r = run(
        &mut c,
        &[
            "register",
            "-n",
            "-c",
            &cfg,
            "-u",
            "https://gitlab.example.com/",
            "--executor",
            "shell",
        ],
    );
    assert_eq!(
        r,
        Err(Exit::Panic(
            "The registration-token needs to be entered".into()
        ))
    );
    assert!(!path.exists());
}

#[test]
fn unknown_flag_is_an_error() {
    let mut c = ctx(&[]);
    let r = run(&mut c, &["register", "--non-interactive", "--no-such-flag"]);
    assert_eq!(
        r,
        Err(Exit::Fatal(
            "flag provided but not defined: -no-such-flag".into()
        ))
    );
    assert!(
        c.out
            .stdout_text()
            .starts_with("Incorrect Usage: flag provided but not defined")
    );
}

#[test]
fn malformed_config_is_an_error_and_the_file_is_untouched() {
    let (_dir, path) = temp_config();
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    let broken = "concurrent = 1\n[[runners]\n  name = \"x\"\n";
    std::fs::write(&path, broken).expect("write");
    let (_, r) = register_shell(&path, &[("REGISTRATION_TOKEN", "GR1348941x")], &[]);
    assert!(matches!(r, Err(Exit::Panic(_))), "{r:?}");
    assert_eq!(std::fs::read_to_string(&path).expect("read"), broken);

    let mut c = ctx(&[]);
    let r = run(&mut c, &["list", "--config", &path.display().to_string()]);
    assert!(matches!(r, Err(Exit::Fatal(_))), "{r:?}");
}

#[test]
fn log_records_which_env_var_held_the_token_never_its_value() {
    let env: HashMap<String, String> = [("CI_SERVER_TOKEN", "glrt-secretsecretsecret")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let argv = vec!["gitlab-runner".to_string(), "register".into(), "-n".into()];
    let line = crate::record::line(&env, &argv, 0, 0);
    assert!(!line.contains("secret"));
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert_eq!(v["token_env"], "CI_SERVER_TOKEN");
    assert_eq!(v["argv"][1], "register");
    assert_eq!(v["uid"], 0);
    assert!(line.ends_with("}\n"));

    let line = crate::record::line(&HashMap::new(), &argv, 1000, 0);
    let v: serde_json::Value = serde_json::from_str(&line).expect("json");
    assert!(v["token_env"].is_null());
    assert_eq!(v["euid"], 0);
}

#[test]
fn list_prints_runners_to_stderr_and_unregister_removes_by_name() {
    let (_dir, path) = temp_config();
    let cfg = path.display().to_string();
    register_shell(
        &path,
        &[("REGISTRATION_TOKEN", "GR1348941a")],
        &["--name", "one"],
    )
    .1
    .expect("one");
    register_shell(
        &path,
        &[("REGISTRATION_TOKEN", "GR1348941b")],
        &["--name", "two"],
    )
    .1
    .expect("two");
    let mut c = ctx(&[]);
    run(&mut c, &["list", "-c", &cfg]).expect("list");
    let err = c.out.stderr_text();
    assert!(err.contains("\none ") && err.contains("\ntwo "), "{err}");
    assert!(err.contains("Executor=shell"));
    assert!(c.out.stdout_text().is_empty());

    let mut c = ctx(&[]);
    run(&mut c, &["unregister", "-c", &cfg, "--name", "one"]).expect("unregister");
    let out = std::fs::read_to_string(&path).expect("config");
    assert!(!out.contains("name = \"one\""));
    assert!(out.contains("name = \"two\""));

    let mut c = ctx(&[]);
    let r = run(&mut c, &["unregister", "-c", &cfg, "--name", "nope"]);
    assert_eq!(
        r,
        Err(Exit::Fatal(
            "could not find a runner with the name 'nope'".into()
        ))
    );

    let mut c = ctx(&[]);
    run(&mut c, &["unregister", "-c", &cfg, "--all-runners"]).expect("all");
    let out = std::fs::read_to_string(&path).expect("config");
    assert!(!out.contains("[[runners]]"));
}

#[test]
fn version_block() {
    let mut c = ctx(&[]);
    run(&mut c, &["--version"]).expect("version");
    assert!(
        c.out
            .stdout_text()
            .starts_with("Version:      17.4.0-stand-in\n")
    );
    let mut c = ctx(&[]);
    run(&mut c, &["-v"]).expect("version");
    assert!(c.out.stdout_text().contains("OS/Arch:      linux/amd64"));
}

fn verify_with(config: &Path, server: &Path, extra: &[&str]) -> (Ctx, Result<(), Exit>) {
    let server = server.display().to_string();
    let mut c = ctx(&[("GITLAB_RUNNER_STAND_IN_SERVER", &server)]);
    let cfg = config.display().to_string();
    let mut args = vec!["verify", "--config", &cfg];
    args.extend_from_slice(extra);
    let r = run(&mut c, &args);
    (c, r)
}

#[test]
fn verify_reports_alive_deleted_and_unreachable_as_17_4_does() {
    let (dir, path) = temp_config();
    let (_, r) = register_shell(
        &path,
        &[("REGISTRATION_TOKEN", "GR1348941regtoken")],
        &["--name", "legacy"],
    );
    assert_eq!(r, Ok(()));
    let (_, r) = register_shell(
        &path,
        &[("CI_SERVER_TOKEN", "glrt-abcdefghijklmnopqrst")],
        &["--name", "modern"],
    );
    assert_eq!(r, Ok(()));
    let server = dir.path().join("server");
    std::fs::create_dir_all(&server).expect("mkdir");

    let (c, r) = verify_with(&path, &server, &[]);
    assert_eq!(r, Ok(()));
    let err = c.out.stderr_text();
    assert!(err.contains("Verifying runner... is alive"), "{err}");
    assert!(err.contains("Verifying runner... is valid"), "{err}");
    assert!(!err.contains("abcdefghijklmnopqrst"), "{err}");

    std::fs::write(server.join("deleted-runners"), "modern\n").expect("write");
    let before = std::fs::read(&path).expect("config");
    let (c, r) = verify_with(&path, &server, &[]);
    assert_eq!(r, Err(Exit::Fatal("Failed to verify runners".into())));
    assert!(
        c.out
            .stderr_text()
            .contains("Verifying runner... is not valid"),
        "{}",
        c.out.stderr_text()
    );
    assert_eq!(
        std::fs::read(&path).expect("config"),
        before,
        "no --delete: untouched"
    );

    std::fs::write(server.join("deleted-runners"), "legacy\n").expect("write");
    let (c, r) = verify_with(&path, &server, &[]);
    assert!(r.is_err());
    assert!(
        c.out
            .stderr_text()
            .contains("ERROR: Verifying runner... is removed"),
        "{}",
        c.out.stderr_text()
    );

    let (c, r) = verify_with(&path, &server, &["--delete"]);
    assert_eq!(r, Ok(()), "{}", c.out.stderr_text());
    let left = std::fs::read_to_string(&path).expect("config");
    assert!(!left.contains("\"legacy\""), "{left}");
    assert!(left.contains("\"modern\""), "{left}");

    std::fs::write(server.join("unreachable"), "").expect("write");
    let (c, r) = verify_with(&path, &server, &[]);
    assert_eq!(r, Ok(()), "a client error still counts as verified");
    assert!(
        c.out
            .stderr_text()
            .contains("ERROR: Verifying runner... client error"),
        "{}",
        c.out.stderr_text()
    );
}
