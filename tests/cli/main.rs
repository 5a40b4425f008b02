//! Tier 2: the binary under a fake root.
//!
//! Each test lays out a temporary tree shaped like a Debian 12 host and runs
//! the real binary with `--root` on it. Commands then go through `chroot
//! DIR …`; a stand-in `chroot` (tests/cli/fakebin) first on PATH records
//! them and simulates apt, useradd, usermod and systemctl on the tree, and
//! hands `gitlab-runner` to the stand-in executable from tests/stand-in.

mod corpus;
mod fake_root;
mod runners;
#[path = "../support/stand_in.rs"]
mod stand_in;

use fake_root::{FakeRoot, LEGACY, run_binary};

#[test]
fn apply_converges_and_a_second_apply_changes_nothing() {
    let tree = FakeRoot::debian12();
    let first = tree.apply(&["--output", "json"], Some(LEGACY));
    assert_eq!(first.code, 0, "{first}");
    assert!(first.stdout.contains("\"event\":\"summary\""), "{first}");
    assert!(first.summary("changed") >= 5, "{first}");
    assert!(
        tree.read("etc/gitlab-runner/config.toml")
            .contains("DOCKER_DRIVER=overlay2")
    );
    assert_eq!(tree.mode("etc/gitlab-runner/config.toml"), 0o600);
    assert!(
        tree.read("etc/apt/keyrings/gitlab-runner.asc")
            .contains("BEGIN PGP PUBLIC KEY BLOCK")
    );
    assert!(
        tree.read("etc/apt/sources.list.d/gitlab-runner.sources")
            .contains("Signed-By: /etc/apt/keyrings/gitlab-runner.asc")
    );
    assert!(
        tree.read("etc/group")
            .contains("docker:x:998:gitlab-runner")
    );
    assert!(tree.read("etc/modules").ends_with("loop\noverlay\n"));

    let before = tree.snapshot();
    let log_before = tree.log().len();
    let second = tree.apply(&["--output", "json"], Some(LEGACY));
    assert_eq!(second.code, 0, "{second}");
    assert_eq!(second.summary("changed"), 0, "{second}");
    assert_eq!(
        tree.snapshot(),
        before,
        "the second apply must leave every file byte-identical"
    );
    assert_eq!(
        tree.log().len(),
        log_before,
        "the second apply ran commands: {:?}",
        tree.log()
    );
}

#[test]
fn the_token_appears_nowhere_the_binary_writes() {
    for token in [LEGACY, "glrt-tier2.AuthTokenValue987654"] {
        let tree = FakeRoot::debian12();
        for format in ["json", "human"] {
            let out = tree.apply(&["--output", format, "-v"], Some(token));
            assert_eq!(out.code, 0, "{out}");
            assert!(
                !out.stdout.contains(token) && !out.stderr.contains(token),
                "{out}"
            );
        }
        let log = tree.log().join("\n");
        assert!(log.contains("gitlab-runner register"), "{log}");
        assert!(!log.contains(token), "token on an argv: {log}");
        let recorded = tree.read("stand-in.log");
        let expected = if token.starts_with("glrt-") {
            "CI_SERVER_TOKEN"
        } else {
            "REGISTRATION_TOKEN"
        };
        assert!(
            recorded.contains(&format!("\"token_env\":\"{expected}\"")),
            "{recorded}"
        );
        assert!(!recorded.contains(token), "{recorded}");
    }
}

#[test]
fn a_failing_command_is_reported_with_its_stderr_and_no_token() {
    let tree = FakeRoot::debian12();
    let out = tree.run(
        &["apply", "--yes", "--accept-docker-group-risk"],
        Some(LEGACY),
        &[("FAKE_APT_FAIL", "1")],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("runner-install: failed"), "{out}");
    assert!(
        out.stdout
            .contains("E: Unable to locate package gitlab-runner"),
        "{out}"
    );
    assert!(
        out.stdout
            .contains("runner-register: skipped (runner-install failed)"),
        "{out}"
    );
    assert!(out.stdout.contains("overlay-module: changed"), "{out}");
    assert!(!out.stdout.contains(LEGACY), "{out}");
}

#[test]
fn plan_shows_diffs_exits_2_with_detailed_exitcode_and_changes_nothing() {
    let tree = FakeRoot::debian12();
    let before = tree.snapshot();
    let out = tree.run(&["plan", "--detailed-exitcode"], None, &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stdout.contains("+++ b/etc/modules"), "{out}");
    assert!(out.stdout.contains("+overlay"), "{out}");
    assert!(out.stdout.contains("pending"), "{out}");
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty(), "plan ran {:?}", tree.log());

    tree.apply(&[], Some(LEGACY));
    let out = tree.run(&["plan", "--detailed-exitcode"], Some(LEGACY), &[]);
    assert_eq!(out.code, 0, "{out}");
    let out = tree.run(&["verify"], Some(LEGACY), &[]);
    assert_eq!(out.code, 0, "{out}");
    // Offline root: docker-verify, docker-build and runner-alive are skipped; verify
    // counts no changes.
    assert!(
        out.stdout.contains("summary: 13 ok, 3 skipped, 0 failed"),
        "{out}"
    );
}

#[test]
fn malformed_config_toml_is_an_error_and_never_rewritten() {
    let tree = FakeRoot::debian12();
    tree.write(
        "etc/gitlab-runner/config.toml",
        "concurrent = 1\n[[runners]\n token = \"glrt-in.BrokenFile1234\"\n",
    );
    let before = tree.snapshot();
    let out = tree.apply(&[], Some(LEGACY));
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stdout
            .contains("/etc/gitlab-runner/config.toml is malformed"),
        "{out}"
    );
    assert!(out.stdout.contains("fix or remove the file"), "{out}");
    assert!(!out.stdout.contains("glrt-in.BrokenFile1234"), "{out}");
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty());
}

#[test]
fn two_runners_with_comments_both_get_the_driver_and_keep_the_rest() {
    let tree = FakeRoot::debian12();
    let config = "# managed by hand\nconcurrent = 2\n\n[[runners]]\n  # the first\n  name = \"runner-1\"\n  url = \"https://gitlab.com/\"\n  token = \"t1\"\n  executor = \"shell\"\n  environment = [\"FOO=bar\"]\n\n[[runners]]\n  name = \"other\"\n  url = \"https://gitlab.example.com/\"\n  token = \"t2\"\n  executor = \"shell\"\n";
    tree.write("etc/gitlab-runner/config.toml", config);
    let out = tree.apply(&[], Some(LEGACY));
    assert_eq!(out.code, 0, "{out}");
    let after = tree.read("etc/gitlab-runner/config.toml");
    assert!(
        !tree.log().iter().any(|l| l.contains("register")),
        "registered again: {:?}",
        tree.log()
    );
    assert!(
        after.contains("# managed by hand\n") && after.contains("  # the first\n"),
        "{after}"
    );
    assert!(
        after.contains("environment = [\"FOO=bar\", \"DOCKER_DRIVER=overlay2\"]"),
        "{after}"
    );
    assert_eq!(
        after.matches("DOCKER_DRIVER=overlay2").count(),
        2,
        "{after}"
    );
}

#[test]
fn plan_masks_every_secret_of_config_toml() {
    let tree = FakeRoot::debian12();
    let secrets = [
        "glrt-existingRunnerSecret",
        "AKIAEXAMPLEACCESS",
        "s3SecretKeyValue",
        "gcsPrivateKeyValue",
        "azureAccountKeyValue",
        "t9",
    ];
    let config = format!(
        "concurrent = 1\n\n[[runners]]\n  name = \"runner-1\"\n  url = \"https://gitlab.com/\"\n  token = \"{}\"\n  executor = \"shell\"\n  [runners.cache]\n    [runners.cache.s3]\n      AccessKey = \"{}\"\n      SecretKey = \"{}\"\n    [runners.cache.gcs]\n      PrivateKey = \"{}\"\n    [runners.cache.azure]\n      AccountKey = \"{}\"\n\n[[runners]]\n  name = \"short\"\n  url = \"https://gitlab.example.com/\"\n  token = \"{}\"\n  executor = \"shell\"\n",
        secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]
    );
    tree.write("etc/gitlab-runner/config.toml", &config);
    for output in ["human", "json"] {
        let out = tree.run(
            &[
                "plan",
                "-v",
                "--output",
                output,
                "--accept-docker-group-risk",
            ],
            Some(LEGACY),
            &[],
        );
        let all = format!("{out}");
        assert!(all.contains("config.toml"), "a diff of config.toml: {all}");
        assert!(all.contains("[masked]"), "{all}");
        for secret in &secrets[..5] {
            assert!(!all.contains(secret), "{secret} in {output} output: {all}");
        }
        assert!(
            !all.contains("\"t9\""),
            "short token in {output} output: {all}"
        );
    }
    assert_eq!(tree.read("etc/gitlab-runner/config.toml"), config);
}

#[test]
fn bad_input_is_refused_with_a_fix_and_nothing_changes() {
    let tree = FakeRoot::debian12();
    // Outside the tree, in a folder of its own (not the shared temp folder).
    let outside = tempfile::tempdir().expect("tempdir");
    let profile = outside.path().join("site.toml");
    std::fs::write(&profile, "[docker]\nstorage_drivr = \"overlay2\"\n").expect("write profile");
    let unreadable = outside.path().join("no-such-token");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "--profile".into(),
                profile.display().to_string(),
                "apply".into(),
            ],
            "storage_drivr",
        ),
        (
            vec!["--profile".into(), "shell-podman".into(), "apply".into()],
            "shell-docker, shell-docker-ce, shell-docker-fleet",
        ),
        (
            vec!["apply".into(), "--url".into(), "gitlab.example.com".into()],
            "http:// or https://",
        ),
        (
            vec![
                "apply".into(),
                "--token-file".into(),
                unreadable.display().to_string(),
            ],
            "cannot read token file",
        ),
    ];
    let before = tree.snapshot();
    for (args, expected) in cases {
        let mut all = vec!["--root".to_string(), tree.path().display().to_string()];
        all.extend(args.clone());
        let out = run_binary(&all, None, &[]);
        assert_eq!(out.code, 1, "{args:?}: {out}");
        assert!(
            out.stderr.contains(expected),
            "{args:?} should say {expected:?}: {out}"
        );
    }
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty());
}

#[test]
fn a_bad_step_id_is_a_usage_error_that_lists_the_steps() {
    let tree = FakeRoot::debian12();
    let before = tree.snapshot();
    for args in [
        ["apply", "--only", "docker-magic"],
        ["apply", "--skip", "preflight"],
        ["plan", "--only", ""],
        ["verify", "--skip", "network,"],
    ] {
        let mut all = vec!["--root".to_string(), tree.path().display().to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let out = run_binary(&all, None, &[]);
        assert_eq!(out.code, 2, "{args:?}: {out}");
        assert!(
            out.stderr.contains("runner-install") && out.stderr.contains("docker-verify"),
            "{args:?} should list the steps: {out}"
        );
        assert!(
            !out.stderr.contains("preflight,") && !out.stderr.contains(", preflight"),
            "preflight cannot be chosen: {out}"
        );
    }
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty());
}

#[test]
fn settings_that_could_only_fail_later_are_refused_before_any_change() {
    let tree = FakeRoot::debian12();
    let cases: &[(&[&str], &str)] = &[
        (&["--executor", "bogus"], "executor `bogus` is not one of"),
        (
            &["--url", "https://deploy:hunter2pass@gitlab.example.com/"],
            "user name or password",
        ),
        (&["--url", "https://gitlab.example.com:70000/"], "port"),
        (&["--url", "https://:443/"], "no host name"),
        (
            &["--url", "ftp://gitlab.example.com/"],
            "http:// or https://",
        ),
        (
            &["--storage-driver", "overlay2 "],
            "storage_driver `overlay2 `",
        ),
        (&["--storage-driver", "aufs2"], "Docker's storage drivers"),
        (
            &["--verify-timeout", "18446744073709551615"],
            "seconds from 0 to 3600",
        ),
        (&["--name", "a\u{2028}b"], "runner name"),
        (
            &["--runner-version", "gitlab-runner=17.5.0"],
            "runner.version (--runner-version) `gitlab-runner=17.5.0` cannot be a version pin: it contains `=`",
        ),
        (
            &["--docker-version", "27.3.1 docker-ce"],
            "docker.version (--docker-version) `27.3.1 docker-ce` cannot be a version pin: it contains spaces",
        ),
    ];
    let before = tree.snapshot();
    for (args, expected) in cases {
        let mut all = vec!["apply", "--yes", "--accept-docker-group-risk"];
        all.extend_from_slice(args);
        let out = tree.run(&all, Some(LEGACY), &[]);
        assert_eq!(out.code, 1, "{args:?}: {out}");
        assert!(
            out.stderr.contains(expected),
            "{args:?} should say {expected:?}: {out}"
        );
        assert!(!out.stderr.contains("panicked"), "{out}");
        assert!(!format!("{out}").contains("hunter2pass"), "{out}");
    }
    for (var, value) in [
        ("RUNNER_PROVISION_RUNNER_VERSION", "$(reboot)"),
        ("RUNNER_PROVISION_DOCKER_VERSION", "1:2;3"),
    ] {
        let out = tree.run(
            &["apply", "--yes", "--accept-docker-group-risk"],
            Some(LEGACY),
            &[(var, value)],
        );
        assert_eq!(out.code, 1, "{var}: {out}");
        assert!(
            out.stderr.contains("cannot be a version pin"),
            "{var}: {out}"
        );
    }
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty(), "{:?}", tree.log());
}

#[test]
fn token_input_is_checked_before_any_change() {
    let tree = FakeRoot::debian12();
    // Outside the tree, in a folder of its own (not the shared temp folder).
    let outside = tempfile::tempdir().expect("tempdir");
    let blank = outside.path().join("blank-token");
    std::fs::write(&blank, " \n").expect("write");
    let root = tree.path().display().to_string();
    let before = tree.snapshot();
    let cases: Vec<(Vec<String>, Option<&str>, &str)> = vec![
        (vec![], Some(" \t "), "the runner token is empty"),
        (
            vec!["--token-file".into(), blank.display().to_string()],
            None,
            "the runner token is empty",
        ),
        (
            vec!["--token-file".into(), "/dev/zero".into()],
            None,
            "not a regular file",
        ),
        (vec![], Some("\u{feff}abc"), "shorter than 8 characters"),
    ];
    for (extra, token, expected) in cases {
        let mut args = vec!["--root".to_string(), root.clone(), "apply".into()];
        args.extend(extra.clone());
        let out = run_binary(&args, token, &[]);
        assert_eq!(out.code, 1, "{extra:?}: {out}");
        assert!(out.stderr.contains(expected), "{extra:?}: {out}");
    }
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty());
}

#[test]
fn forget_token_keeps_the_token_until_the_runner_is_registered() {
    let tree = FakeRoot::debian12();
    let token_file = tree.path().join("../first-boot-token");
    std::fs::write(&token_file, format!("{LEGACY}\n")).expect("write");
    let token_file = token_file.display().to_string();
    // A first boot that fails before registering: a preflight refusal.
    let first = tree.run(
        &[
            "apply",
            "--yes",
            "--require-registration",
            "--token-file",
            &token_file,
            "--forget-token",
        ],
        None,
        &[],
    );
    assert_eq!(first.code, 1, "{first}");
    assert!(
        first.stderr.contains("--accept-docker-group-risk")
            || first.stdout.contains("--accept-docker-group-risk"),
        "{first}"
    );
    assert!(
        std::path::Path::new(&token_file).exists(),
        "the token file stays: {first}"
    );
    let kept = "var/lib/runner-provision/token";
    assert_eq!(tree.read(kept), format!("{LEGACY}\n"));
    assert_eq!(tree.mode(kept), 0o600);
    assert!(!format!("{first}").contains(LEGACY), "{first}");
    // The next boot: /run is empty, the kept copy registers and is forgotten.
    std::fs::remove_file(&token_file).expect("reboot");
    let kept_path = tree.path().join(kept).display().to_string();
    let second = tree.apply(
        &[
            "--require-registration",
            "--token-file",
            &kept_path,
            "--forget-token",
        ],
        None,
    );
    assert_eq!(second.code, 0, "{second}");
    assert!(!tree.path().join(kept).exists(), "{second}");
    assert!(
        tree.read("etc/gitlab-runner/config.toml")
            .contains("[[runners]]")
    );
    // Later boots: no token, a matching runner, nothing to do.
    let third = tree.apply(
        &[
            "--output",
            "json",
            "--require-registration",
            "--forget-token",
        ],
        None,
    );
    assert_eq!(third.code, 0, "{third}");
    assert_eq!(third.summary("changed"), 0, "{third}");
}

#[test]
fn there_is_no_flag_that_takes_the_token() {
    let out = run_binary(
        &["apply".into(), "--token".into(), LEGACY.into()],
        None,
        &[],
    );
    assert_eq!(out.code, 2, "{out}");
    assert!(
        !out.stderr.contains(LEGACY),
        "clap must not echo it back: {out}"
    );
}

#[test]
fn a_proxy_password_on_the_command_line_is_refused_and_never_echoed() {
    let tree = FakeRoot::debian12();
    let before = tree.snapshot();
    let url = "http://build:Pr0xyPassw0rd9@127.0.0.1:9";
    let out = tree.run(&["plan", "--https-proxy", url], None, &[]);
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("RUNNER_PROVISION_HTTPS_PROXY"), "{out}");
    assert!(!format!("{out}").contains("Pr0xyPassw0rd9"), "{out}");
    assert_eq!(tree.snapshot(), before);
    // From the environment it is accepted, and redacted wherever it shows.
    let out = tree.run(&["plan"], None, &[("RUNNER_PROVISION_HTTPS_PROXY", url)]);
    assert!(!format!("{out}").contains("Pr0xyPassw0rd9"), "{out}");
    assert!(
        !out.stderr.contains("RUNNER_PROVISION_HTTPS_PROXY"),
        "{out}"
    );
}

#[test]
fn not_root_is_refused_before_any_change() {
    // As root, drop to nobody; as anyone else, run as is.
    let args = ["apply".to_string(), "--yes".to_string()];
    let out = if nix::unistd::geteuid().is_root() {
        let bin = env!("CARGO_BIN_EXE_runner-provision").to_string();
        let mut all = vec![
            "--reuid=65534".to_string(),
            "--regid=65534".into(),
            "--clear-groups".into(),
            bin,
        ];
        all.extend(args);
        fake_root::run_program("setpriv", &all, &[])
    } else {
        run_binary(&args, None, &[])
    };
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("must run as root"), "{out}");
    assert!(out.stdout.contains("sudo"), "{out}");
}

#[test]
fn profiles_list_show_and_completions() {
    let out = run_binary(&["profiles".into(), "list".into()], None, &[]);
    assert_eq!(out.code, 0);
    assert!(out.stdout.starts_with("shell-docker (default)\t"), "{out}");
    let out = run_binary(
        &["profiles".into(), "show".into(), "shell-docker".into()],
        None,
        &[],
    );
    assert_eq!(out.stdout, include_str!("../../profiles/shell-docker.toml"));
    let out = run_binary(&["completions".into(), "bash".into()], None, &[]);
    assert_eq!(out.code, 0);
    assert!(
        out.stdout.contains("complete -F _runner__provision")
            && out.stdout.contains("runner-provision"),
        "{out}"
    );
}

#[test]
fn long_version_names_the_commit_and_the_glibc_baseline() {
    let out = run_binary(&["--version".into()], None, &[]);
    assert_eq!(out.code, 0, "{out}");
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        lines[0],
        concat!("runner-provision ", env!("CARGO_PKG_VERSION")),
        "{out}"
    );
    let commit = lines[1].strip_prefix("commit: ").expect("a commit line");
    assert!(!commit.is_empty(), "{out}");
    let glibc = lines[2]
        .strip_prefix("glibc baseline: ")
        .expect("a glibc line");
    assert!(
        glibc.starts_with("2.") || glibc == "unknown",
        "a glibc version: {out}"
    );
    // The short form stays one line.
    let out = run_binary(&["-V".into()], None, &[]);
    assert_eq!(out.stdout.lines().count(), 1, "{out}");
}

#[test]
fn cloud_init_user_data_carries_the_token_only_in_its_file() {
    let out = run_binary(
        &[
            "cloud-init".into(),
            "--binary-path".into(),
            "/mnt/payload/runner-provision".into(),
            "--accept-docker-group-risk".into(),
        ],
        Some(LEGACY),
        &[],
    );
    assert_eq!(out.code, 0, "{out}");
    let text = &out.stdout;
    assert!(text.starts_with("#cloud-config\n"), "{text}");
    assert_eq!(text.matches(LEGACY).count(), 1, "{text}");
    assert!(text.contains("accept_group_risk = true"), "{text}");
    assert!(
        text.contains("--token-file \"$token\" --forget-token"),
        "{text}"
    );
}

#[test]
fn offline_root_skips_live_actions() {
    let tree = FakeRoot::debian12();
    let out = tree.apply(&[], Some(LEGACY));
    assert_eq!(out.code, 0, "{out}");
    assert!(
        out.stdout.contains("docker-verify: skipped (offline root)"),
        "{out}"
    );
    assert!(
        !tree
            .log()
            .iter()
            .any(|l| l.contains("modprobe") || l.contains("start")),
        "{:?}",
        tree.log()
    );
}

#[test]
fn at_a_terminal_apply_shows_the_plan_and_asks_first() {
    if fake_root::run_program("script", &["--version".to_string()], &[]).code != 0 {
        println!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let tree = FakeRoot::debian12();
    let before = tree.snapshot();
    let no = tree.run_at_terminal(
        &["apply", "--accept-docker-group-risk"],
        Some(LEGACY),
        "n\n",
    );
    assert_eq!(no.code, 1, "{no}");
    assert!(no.stdout.contains("Apply these changes? [y/N]"), "{no}");
    assert!(
        no.stdout.contains("+overlay"),
        "the plan's diffs come first: {no}"
    );
    assert!(no.stdout.contains("Nothing was changed."), "{no}");
    assert!(!no.stdout.contains(LEGACY), "{no}");
    assert_eq!(tree.snapshot(), before, "answering no changes nothing");
    assert!(tree.log().is_empty(), "{:?}", tree.log());

    let yes = tree.run_at_terminal(
        &["apply", "--accept-docker-group-risk"],
        Some(LEGACY),
        "y\n",
    );
    assert_eq!(yes.code, 0, "{yes}");
    assert!(
        tree.read("etc/gitlab-runner/config.toml")
            .contains("DOCKER_DRIVER=overlay2"),
        "{yes}"
    );
    let converged =
        tree.run_at_terminal(&["apply", "--accept-docker-group-risk"], Some(LEGACY), "");
    assert_eq!(converged.code, 0, "{converged}");
    assert!(
        !converged.stdout.contains("Apply these changes?"),
        "nothing to ask when converged: {converged}"
    );
}

#[test]
fn a_second_apply_waits_for_the_first_saying_who_holds_the_lock_then_gives_up() {
    let tree = FakeRoot::debian12();
    std::fs::create_dir_all(tree.path().join("run")).expect("mkdir");
    let lock = std::fs::File::open(tree.path().join("run")).expect("open");
    lock.lock().expect("lock");
    let before = tree.snapshot();
    let started = std::time::Instant::now();
    let out = tree.apply(&["--lock-timeout", "1"], Some(LEGACY));
    assert_eq!(out.code, 1, "{out}");
    let holder = format!("process {}", std::process::id());
    assert!(
        out.stderr.contains(&holder) || out.stdout.contains(&holder),
        "names the holder: {out}"
    );
    assert!(out.stdout.contains("waiting up to 1 s"), "{out}");
    assert!(out.stderr.contains("--lock-timeout"), "{out}");
    assert!(started.elapsed() >= std::time::Duration::from_secs(1));
    assert_eq!(tree.snapshot(), before, "nothing changed while locked out");
    assert!(tree.log().is_empty(), "{:?}", tree.log());

    // plan and verify take no lock.
    let plan = tree.run(&["plan"], None, &[]);
    assert_eq!(plan.code, 0, "{plan}");
    drop(lock);
    let out = tree.apply(&["--lock-timeout", "1"], Some(LEGACY));
    assert_eq!(out.code, 0, "{out}");
}

#[test]
fn two_applies_at_once_register_once_and_both_end_converged() {
    for _ in 0..3 {
        let tree = FakeRoot::debian12();
        let args = [
            "apply",
            "--yes",
            "--accept-docker-group-risk",
            "--output",
            "json",
        ];
        let first = tree.spawn(&args, Some(LEGACY));
        let second = tree.spawn(&args, Some(LEGACY));
        for child in [first, second] {
            let out = fake_root::Out::from_output(child.wait_with_output().expect("wait"));
            assert_eq!(out.code, 0, "{out}");
        }
        let config = tree.read("etc/gitlab-runner/config.toml");
        assert_eq!(config.matches("[[runners]]").count(), 1, "{config}");
        let registrations = tree
            .log()
            .iter()
            .filter(|l| l.contains("gitlab-runner register"))
            .count();
        assert_eq!(registrations, 1, "{:?}", tree.log());
        let leftovers: Vec<_> = tree
            .snapshot()
            .into_iter()
            .filter(|(p, _)| p.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

#[test]
fn an_edit_made_while_the_question_is_open_is_kept() {
    use std::io::{Read, Write};
    if fake_root::run_program("script", &["--version".to_string()], &[]).code != 0 {
        println!("skipped: `script` (util-linux) is not installed");
        return;
    }
    let tree = FakeRoot::debian12();
    // Only overlay-module: no command runs between the question and the
    // write that could make the tool read the file again by chance.
    let mut child = tree.spawn_at_terminal(
        &[
            "apply",
            "--accept-docker-group-risk",
            "--only",
            "overlay-module",
        ],
        Some(LEGACY),
    );
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("Apply these changes?") {
        let n = stdout.read(&mut buf).expect("read");
        assert!(n > 0, "no question: {}", String::from_utf8_lossy(&seen));
        seen.extend_from_slice(&buf[..n]);
    }
    // The operator edits a file the plan read, then answers yes.
    tree.write("etc/modules", "# /etc/modules\nloop\nbr_netfilter\n");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"y\n")
        .expect("answer");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).expect("read");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{rest}");
    assert_eq!(
        tree.read("etc/modules"),
        "# /etc/modules\nloop\nbr_netfilter\noverlay\n",
        "the edit is kept and overlay added after it"
    );
}

/// packer/gitlab-runner.pkr.hcl is valid for Packer (Debian's packer 1.6.6
/// has the amazon-chroot builder). Without packer: skipped with a message,
/// a failure when RUNNER_PROVISION_REQUIRE_PACKER=1 (CI installs it).
#[test]
fn the_packer_example_validates() {
    let Ok(packer) = which::which("packer") else {
        if std::env::var("RUNNER_PROVISION_REQUIRE_PACKER").as_deref() == Ok("1") {
            panic!(
                "RUNNER_PROVISION_REQUIRE_PACKER=1 but packer is not installed (apt-get install packer)"
            );
        }
        eprintln!("skipped: packer not found (apt-get install packer)");
        return;
    };
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packer");
    let home = tempfile::tempdir().expect("tempdir");
    let out = std::process::Command::new(packer)
        .args(["validate", "gitlab-runner.pkr.hcl"])
        .current_dir(&dir)
        .env("HOME", home.path())
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("running packer");
    assert!(
        out.status.success(),
        "packer validate failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let broken = home.path().join("broken.pkr.hcl");
    let text = std::fs::read_to_string(dir.join("gitlab-runner.pkr.hcl")).expect("template");
    std::fs::write(
        &broken,
        text.replace(
            "ena_support = true",
            "ena_support = true\n  no_such_key = 1",
        ),
    )
    .expect("write");
    let out = std::process::Command::new(which::which("packer").expect("packer"))
        .arg("validate")
        .arg(&broken)
        .current_dir(home.path())
        .env("HOME", home.path())
        .env("CHECKPOINT_DISABLE", "1")
        .output()
        .expect("running packer");
    assert!(
        !out.status.success(),
        "packer validate accepts anything: the check proves nothing"
    );
}

#[test]
fn usage_errors_exit_2_but_never_look_like_pending_changes_and_json_gets_an_error_event() {
    let tree = FakeRoot::debian12();
    let root = tree.path().display().to_string();
    let before = tree.snapshot();
    let run = |args: &[&str]| {
        let mut all = vec!["--root".to_string(), root.clone()];
        all.extend(args.iter().map(|a| a.to_string()));
        run_binary(&all, None, &[])
    };
    for args in [
        &["apply", "--only", "bogus"][..],
        &["apply", "--only", ""],
        &["apply", "--skip", "preflight"],
        &["verify", "--bogus-flag"],
    ] {
        let out = run(args);
        assert_eq!(out.code, 2, "{args:?}: {out}");
    }
    // With --detailed-exitcode, 2 means changes pending: a usage error is 1.
    let out = run(&["plan", "--detailed-exitcode", "--only", "bogus"]);
    assert_eq!(out.code, 1, "{out}");
    let out = run(&["plan", "--detailed-exitcode", "--url", "gitlab.example.com"]);
    assert_eq!(out.code, 1, "{out}");

    for (args, kind, code) in [
        (
            &["--output", "json", "apply", "--only", "bogus"][..],
            "usage",
            2,
        ),
        (
            &["--output=json", "plan", "--skip", "preflight"],
            "usage",
            2,
        ),
        (
            &["--output", "json", "plan", "--url", "ftp://x/"],
            "error",
            1,
        ),
        (
            &[
                "--output",
                "json",
                "--profile",
                "/nonexistent/p.toml",
                "verify",
            ],
            "error",
            1,
        ),
    ] {
        let out = run(args);
        assert_eq!(out.code, code, "{args:?}: {out}");
        let lines: Vec<serde_json::Value> = out
            .stdout
            .lines()
            .map(|l| serde_json::from_str(l).expect("every stdout line is JSON"))
            .collect();
        let error = lines
            .iter()
            .find(|e| e["event"] == "error")
            .unwrap_or_else(|| panic!("{args:?}: no error event: {out}"));
        assert_eq!(error["kind"], kind, "{out}");
        assert_eq!(error["exit_code"], code, "{out}");
        assert!(!error["message"].as_str().unwrap_or("").is_empty(), "{out}");
    }
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty());
}

#[test]
fn prune_refuses_bad_settings_and_a_root_tree_before_any_change() {
    let tree = FakeRoot::debian12();
    let before = tree.snapshot();
    let root = tree.path().display().to_string();
    let cases: &[(&[&str], &str)] = &[
        // --dry-run throughout: were a check missing, nothing on this
        // machine would be removed.
        (
            &["prune", "--dry-run", "--older-than", "72 hours"],
            "such as 72h, 3d",
        ),
        (&["prune", "--dry-run", "--older-than", "0s"], "it is zero"),
        (&["prune", "--dry-run", "--older-than", ""], "it is empty"),
        (&["prune", "--dry-run", "--above-percent", "100"], "0 to 99"),
        (
            &["--root", &root, "prune", "--dry-run"],
            "not on a --root tree",
        ),
    ];
    for (args, expected) in cases {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let out = run_binary(&args, None, &[]);
        assert_eq!(out.code, 1, "{args:?}: {out}");
        assert!(
            out.stderr.contains(expected),
            "{args:?} should say {expected:?}: {out}"
        );
    }
    let out = run_binary(
        &[
            "prune".into(),
            "--dry-run".into(),
            "--above-percent".into(),
            "-1".into(),
        ],
        None,
        &[],
    );
    assert_eq!(out.code, 2, "{out}");
    let out = run_binary(
        &[
            "prune".into(),
            "--dry-run".into(),
            "--older-than".into(),
            "1x".into(),
        ],
        None,
        &[("RUNNER_PROVISION_OUTPUT", "json")],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stdout.contains("\"event\":\"error\""), "{out}");
    let out = run_binary(&["prune".into(), "--detailed-exitcode".into()], None, &[]);
    assert_eq!(out.code, 2, "--detailed-exitcode needs --dry-run: {out}");
    // The timer's settings on apply and plan: checked the same way.
    let out = tree.run(&["plan", "--prune-schedule", "minutely"], None, &[]);
    assert_eq!(out.code, 2, "{out}");
    assert!(out.stderr.contains("hourly, daily, weekly"), "{out}");
    let out = tree.run(
        &[
            "plan",
            "--prune-schedule",
            "daily",
            "--prune-older-than",
            "1d\u{1b}[2J",
        ],
        None,
        &[],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("1d\\u{1b}[2J"), "{out}");
    let out = tree.run(
        &["plan"],
        None,
        &[("RUNNER_PROVISION_PRUNE_ABOVE_PERCENT", "101")],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(out.stderr.contains("0 to 99"), "{out}");
    assert_eq!(tree.snapshot(), before);
    assert!(tree.log().is_empty());
}

#[test]
fn global_settings_from_flags_and_environment_converge_and_bad_ones_change_nothing() {
    let tree = FakeRoot::debian12();
    let before = tree.snapshot();
    for (args, env, says) in [
        (vec!["--concurrent", "0"], vec![], "1 to 10000"),
        (vec!["--listen-address", "127.0.0.1"], vec![], "no port"),
        (
            vec![],
            vec![("RUNNER_PROVISION_CHECK_INTERVAL", "4000")],
            "0 to 3600",
        ),
        (vec!["--concurrent=-3"], vec![], "--concurrent"),
        (
            vec![],
            vec![("RUNNER_PROVISION_LISTEN_ADDRESS", "a b:1")],
            "spaces",
        ),
    ] {
        let mut all = vec!["apply", "--yes", "--accept-docker-group-risk"];
        all.extend(args.iter().copied());
        let out = tree.run(&all, Some(LEGACY), &env);
        assert_ne!(out.code, 0, "{args:?} {env:?}: {out}");
        assert!(
            out.stderr.contains(says) || out.stdout.contains(says),
            "{says}: {out}"
        );
        assert_eq!(tree.snapshot(), before, "{args:?} {env:?}: nothing changed");
    }

    let out = tree.run(
        &[
            "apply",
            "--yes",
            "--accept-docker-group-risk",
            "--concurrent",
            "6",
        ],
        Some(LEGACY),
        &[
            ("RUNNER_PROVISION_LISTEN_ADDRESS", "127.0.0.1:9252"),
            ("RUNNER_PROVISION_GLOBAL_SHUTDOWN_TIMEOUT", "45"),
        ],
    );
    assert_eq!(out.code, 0, "{out}");
    let config = tree.read("etc/gitlab-runner/config.toml");
    for line in [
        "concurrent = 6\n",
        "shutdown_timeout = 45\n",
        "listen_address = \"127.0.0.1:9252\"\n",
    ] {
        assert!(config.contains(line), "{line}: {config}");
    }
    let converged = tree.snapshot();
    let again = tree.run(
        &[
            "--output",
            "json",
            "apply",
            "--yes",
            "--accept-docker-group-risk",
            "--concurrent",
            "6",
        ],
        Some(LEGACY),
        &[
            ("RUNNER_PROVISION_LISTEN_ADDRESS", "127.0.0.1:9252"),
            ("RUNNER_PROVISION_GLOBAL_SHUTDOWN_TIMEOUT", "45"),
        ],
    );
    assert_eq!(again.summary("changed"), 0, "{again}");
    assert_eq!(tree.snapshot(), converged);
}
