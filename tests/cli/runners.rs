//! `[[runners]]` through the binary: tokens from each runner's own source
//! (a variable, a file), the stand-in's config.toml, refusals before any
//! change, and no token in argv, output or logs.

use std::os::unix::fs::PermissionsExt as _;

use crate::fake_root::FakeRoot;

const BUILD: &str = "GR1348941fleetBuildToken01";
const IMAGES: &str = "GR1348941fleetImagesToken02";
const CONFIG: &str = "etc/gitlab-runner/config.toml";

/// A fleet profile on `tree` (keeping its local repository) whose `images`
/// token is in `token_file`.
fn fleet(tree: &FakeRoot, token_file: &std::path::Path, runners_extra: &str) {
    let text = tree.read("profile.toml");
    let base = text.split("\n# fleet\n").next().unwrap_or_default();
    tree.write(
        "profile.toml",
        &format!(
            "{base}\n# fleet\n[[runners]]\nname = \"build\"\nurl = \"https://gitlab.example.com/\"\ntoken_env = \"BUILD_TOKEN\"\n\n[[runners]]\nname = \"images\"\nurl = \"https://gitlab.example.com/\"\ntags = [\"docker\", \"images\"]\nlimit = 2\nenvironment = [\"DOCKER_BUILDKIT=1\"]\ntoken_file = \"{}\"\n{runners_extra}",
            token_file.display()
        ),
    );
}

fn token_file(dir: &tempfile::TempDir, value: &str) -> std::path::PathBuf {
    let path = dir.path().join("images.token");
    std::fs::write(&path, format!("{value}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    path
}

fn no_token_in(tree: &FakeRoot, outs: &[&crate::fake_root::Out]) {
    let log = tree.log().join("\n");
    let recorded = tree.read("stand-in.log");
    for token in [BUILD, IMAGES] {
        assert!(!log.contains(token), "token on an argv: {log}");
        assert!(!recorded.contains(token), "{recorded}");
        for out in outs {
            assert!(
                !out.stdout.contains(token) && !out.stderr.contains(token),
                "{out}"
            );
        }
    }
}

#[test]
fn each_listed_runner_registers_once_as_gitlab_runner_writes_it_and_a_second_apply_changes_nothing()
{
    let tree = FakeRoot::debian12();
    let secrets = tempfile::tempdir().expect("tempdir");
    fleet(&tree, &token_file(&secrets, IMAGES), "");
    let env = [("BUILD_TOKEN", BUILD)];
    let plan = tree.run(&["plan", "--accept-docker-group-risk"], None, &env);
    assert_eq!(plan.code, 0, "{plan}");
    assert!(plan.stdout.contains("runner-register: pending"), "{plan}");
    let mut args = vec!["apply", "--yes", "--accept-docker-group-risk"];
    let first = tree.run(&args, None, &env);
    assert_eq!(first.code, 0, "{first}");
    assert!(
        first.stdout.contains(
            "registered runner build at https://gitlab.example.com/ with a registration token"
        ) && first.stdout.contains(
            "registered runner images at https://gitlab.example.com/ with a registration token"
        ),
        "{first}"
    );
    let config = tree.read(CONFIG);
    assert_eq!(config.matches("[[runners]]").count(), 2, "{config}");
    assert!(config.contains("  name = \"build\"\n"), "{config}");
    assert!(config.contains("  name = \"images\"\n"), "{config}");
    assert!(config.contains("  limit = 2\n"), "{config}");
    assert!(
        config.contains("environment = [\"DOCKER_BUILDKIT=1\", \"DOCKER_DRIVER=overlay2\"]"),
        "{config}"
    );
    assert!(
        config.contains("environment = [\"DOCKER_DRIVER=overlay2\"]"),
        "build gets DOCKER_DRIVER too: {config}"
    );
    let recorded = tree.read("stand-in.log");
    assert_eq!(
        recorded
            .matches("\"token_env\":\"REGISTRATION_TOKEN\"")
            .count(),
        2,
        "{recorded}"
    );

    args.extend(["--output", "json"]);
    let before = tree.snapshot();
    let log_before = tree.log().len();
    let second = tree.run(&args, None, &env);
    assert_eq!(second.code, 0, "{second}");
    assert_eq!(second.summary("changed"), 0, "{second}");
    assert_eq!(tree.snapshot(), before, "byte-identical");
    assert_eq!(tree.log().len(), log_before, "{:?}", tree.log());
    no_token_in(&tree, &[&plan, &first, &second]);

    // Once registered, neither token is needed: the file gone, the variable unset.
    std::fs::remove_file(secrets.path().join("images.token")).expect("rm");
    let third = tree.run(&args, None, &[]);
    assert_eq!(third.code, 0, "{third}");
    assert_eq!(third.summary("changed"), 0, "{third}");
    assert_eq!(tree.snapshot(), before);

    // `remove` takes back both runners apply registered (from its receipt).
    let receipt = tree.read("var/lib/runner-provision/receipt.json");
    assert!(
        receipt.contains("\"build\"") && receipt.contains("\"images\""),
        "{receipt}"
    );
    let removed = tree.run(&["remove"], None, &[]);
    // (The fake chroot simulates no gpasswd, so the groups part fails here;
    // the real-host scenarios run remove whole.)
    assert!(removed.stdout.contains("runners: changed"), "{removed}");
    assert!(
        removed
            .stdout
            .contains("unregister runner build at https://gitlab.example.com/")
            && removed
                .stdout
                .contains("unregister runner images at https://gitlab.example.com/"),
        "{removed}"
    );
    let config = tree.read(CONFIG);
    assert!(!config.contains("[[runners]]"), "{config}");
}

#[test]
fn a_runner_left_out_of_the_profile_is_reported_by_plan_and_apply_and_kept() {
    let tree = FakeRoot::debian12();
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = token_file(&secrets, IMAGES);
    fleet(&tree, &file, "");
    let env = [("BUILD_TOKEN", BUILD)];
    let first = tree.run(
        &["apply", "--yes", "--accept-docker-group-risk"],
        None,
        &env,
    );
    assert_eq!(first.code, 0, "{first}");
    // The profile without `images`.
    let profile = tree.read("profile.toml");
    let cut = profile.rfind("\n[[runners]]").expect("second entry");
    tree.write("profile.toml", &profile[..cut]);
    let before = tree.snapshot();
    for args in [
        &["plan"][..],
        &["apply", "--yes", "--accept-docker-group-risk"][..],
    ] {
        let out = tree.run(args, None, &env);
        assert_eq!(out.code, 0, "{out}");
        assert!(
            out.stdout.contains("runner \"images\" at https://gitlab.example.com/ is in /etc/gitlab-runner/config.toml but not in the profile: left as it is"),
            "{args:?}: {out}"
        );
    }
    assert_eq!(tree.snapshot(), before, "kept, byte for byte");
}

#[test]
fn listed_runner_input_is_refused_before_any_change_and_never_echoes_a_token() {
    let tree = FakeRoot::debian12();
    let secrets = tempfile::tempdir().expect("tempdir");
    let file = token_file(&secrets, IMAGES);
    fleet(&tree, &file, "");
    let empty = secrets.path().join("empty.token");
    std::fs::write(&empty, "\n").expect("write");
    let open = secrets.path().join("open.token");
    std::fs::write(&open, format!("{IMAGES} {IMAGES}\n")).expect("write");
    for path in [&empty, &open] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }
    // The right token, where others can read it, or behind a link.
    let shared = secrets.path().join("shared.token");
    std::fs::write(&shared, format!("{IMAGES}\n")).expect("write");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let link = secrets.path().join("link.token");
    std::os::unix::fs::symlink(&file, &link).expect("symlink");
    let before = tree.snapshot();
    let apply = ["apply", "--yes", "--accept-docker-group-risk"];
    let with = |extra: &[&'static str]| -> Vec<&'static str> {
        apply.iter().copied().chain(extra.iter().copied()).collect()
    };
    type Env = Vec<(&'static str, &'static str)>;
    let cases: Vec<(Vec<&str>, Env, &str)> = vec![
        (
            with(&["--url", "https://gitlab.example.com/"]),
            vec![("BUILD_TOKEN", BUILD)],
            "--url / RUNNER_PROVISION_URL set the single [runner]",
        ),
        (
            with(&[]),
            vec![("BUILD_TOKEN", BUILD), ("RUNNER_PROVISION_NAME", "x")],
            "--name / RUNNER_PROVISION_NAME set the single [runner]",
        ),
        (
            with(&["--token-file", "/dev/null"]),
            vec![],
            "--token-file set the single [runner]",
        ),
        (
            with(&[]),
            vec![("RUNNER_TOKEN", BUILD)],
            "RUNNER_TOKEN is set, and the profile lists its runners",
        ),
        (
            with(&[]),
            vec![("BUILD_TOKEN", "short")],
            "runner \"build\"'s token_env BUILD_TOKEN: the runner token is shorter than 8 characters",
        ),
        (
            with(&[]),
            vec![("BUILD_TOKEN", " \t")],
            "the runner token is empty",
        ),
    ];
    for (args, env, expected) in cases {
        let out = tree.run(&args, None, &env);
        assert_eq!(out.code, 1, "{args:?} {env:?}: {out}");
        assert!(out.stderr.contains(expected), "{args:?} {env:?}: {out}");
        no_token_in(&tree, &[&out]);
    }
    // A token file that is no token: empty, two words, a directory, a FIFO;
    // or not the runner's alone: readable by others, a link.
    let fifo = secrets.path().join("fifo.token");
    nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).expect("mkfifo");
    for (path, expected) in [
        (empty.clone(), "the runner token is empty"),
        (open.clone(), "spaces or control characters"),
        (secrets.path().to_path_buf(), "not a regular file"),
        (fifo, "not a regular file"),
        (
            shared,
            "is refused: group or others can read or write it (mode 0644); `chmod 600` it",
        ),
        (link, "is refused: it is a symbolic link"),
    ] {
        fleet(&tree, &path, "");
        let out = tree.run(&apply, None, &[("BUILD_TOKEN", BUILD)]);
        assert_eq!(out.code, 1, "{path:?}: {out}");
        assert!(
            out.stderr.contains("runner \"images\"'s token_file") && out.stderr.contains(expected),
            "{path:?}: {out}"
        );
        no_token_in(&tree, &[&out]);
    }
    // Profiles: a duplicate, a [runner] that names a runner too.
    for (extra, expected) in [
        (
            "\n[[runners]]\nname = \"build\"\nurl = \"https://gitlab.example.com\"\ntoken_env = \"OTHER\"\n",
            "is listed twice",
        ),
        (
            "\n[runner]\nname = \"host\"\n",
            "[runner] sets name and [[runners]] lists runners",
        ),
    ] {
        fleet(&tree, &file, extra);
        let out = tree.run(&apply, None, &[("BUILD_TOKEN", BUILD)]);
        assert_eq!(out.code, 1, "{extra}: {out}");
        assert!(out.stderr.contains(expected), "{extra}: {out}");
    }
    // The profile file was rewritten by the test; nothing else changed.
    let after: Vec<_> = tree
        .snapshot()
        .into_iter()
        .filter(|(p, _)| !p.ends_with("profile.toml"))
        .collect();
    let before: Vec<_> = before
        .into_iter()
        .filter(|(p, _)| !p.ends_with("profile.toml"))
        .collect();
    assert_eq!(after, before);
    assert!(tree.log().is_empty(), "{:?}", tree.log());
}

#[test]
fn cloud_init_refuses_a_profile_with_listed_runners() {
    let tree = FakeRoot::debian12();
    let secrets = tempfile::tempdir().expect("tempdir");
    fleet(&tree, &token_file(&secrets, IMAGES), "");
    let out = tree.run(
        &[
            "cloud-init",
            "--binary-path",
            "/opt/rp",
            "--accept-docker-group-risk",
        ],
        None,
        &[("BUILD_TOKEN", BUILD)],
    );
    assert_eq!(out.code, 1, "{out}");
    assert!(
        out.stderr
            .contains("cloud-init user data is rendered for the single [runner] profile only"),
        "{out}"
    );
    no_token_in(&tree, &[&out]);
}
