//! Several runners per host (issue 12, item 1) on a real host: a profile
//! with two `[[runners]]` entries, each with its own token source.

use std::os::unix::fs::PermissionsExt as _;

use crate::checks::{self, environment, registrations};
use crate::harness::{self, Container, PROFILE, Run, Snapshot, TEST_PROFILE, URL};
use crate::scenarios::{ArgvSampler, WallTime, assert_no_secret, assert_refused, files_containing};
use crate::{GLRT_TOKEN, LEGACY_TOKEN};

/// `build`'s token: a runner authentication token, in this variable.
const BUILD_ENV: &str = "BUILD_RUNNER_TOKEN";
/// `images`' token: a registration token (it sets tags), in this file.
const IMAGES_TOKEN: &str = "/etc/runner-provision/images.token";
const CONFIG: &str = "/etc/gitlab-runner/config.toml";
const RECEIPT: &str = "/var/lib/runner-provision/receipt.json";

const BUILD: &str = "[[runners]]\nname = \"build\"\nurl = \"https://gitlab.example.com/\"\nexecutor = \"shell\"\ntoken_env = \"BUILD_RUNNER_TOKEN\"\n";
const IMAGES: &str = "[[runners]]\nname = \"images\"\nurl = \"https://gitlab.example.com/\"\nexecutor = \"shell\"\ntags = [\"docker\", \"images\"]\nlimit = 2\nenvironment = [\"DOCKER_BUILDKIT=1\", \"IMAGE_REGISTRY=registry.example.com\"]\ntoken_file = \"/etc/runner-provision/images.token\"\n";

/// A runner registered by hand, which the profile does not list (its
/// DOCKER_DRIVER already set: docker-driver sets it for every runner).
const BY_HAND: &str = "\n# registered by hand, not in the profile\n[[runners]]\n  name = \"by-hand\"\n  url = \"https://gitlab.example.com/\"\n  id = 4711\n  token = \"hand-made-runner-token-0815\"\n  executor = \"shell\"\n  environment = [\"DOCKER_DRIVER=overlay2\", \"KEEP=me\"]\n";

/// The tier's profile with `entries` as its `[[runners]]` ([runner] then
/// holds only what the host shares).
fn fleet(entries: &[&str]) -> String {
    let single =
        "url = \"https://gitlab.example.com/\"\nname = \"\"\nexecutor = \"shell\"\ntags = []\n";
    assert!(TEST_PROFILE.contains(single), "{TEST_PROFILE}");
    format!(
        "{}\n{}",
        TEST_PROFILE.replacen(single, "", 1),
        entries.join("\n")
    )
}

/// The tool with `build`'s token in its variable (RUNNER_TOKEN unset).
fn run(host: &Container, args: &[&str]) -> Run {
    let mut cmd = host.tool_command(args, None);
    cmd.env(BUILD_ENV, GLRT_TOKEN);
    let run = Run::capture(&mut cmd);
    eprintln!(
        "[{}] runner-provision {} -> {} in {:.1}s",
        host.name,
        args.join(" "),
        run.status,
        run.duration.as_secs_f64()
    );
    run
}

fn apply(host: &Container) -> Run {
    run(host, &["--output", "json", "apply"])
}

/// Writes `images`' token file, root's, with `mode`.
fn token_file(host: &Container, path: &str, mode: u32) {
    host.write(path, &format!("{LEGACY_TOKEN}\n"));
    std::fs::set_permissions(host.path(path), std::fs::Permissions::from_mode(mode))
        .expect("chmod token file");
}

/// Every managed file, the receipt and the token file.
fn files(host: &Container) -> Snapshot {
    let mut paths = harness::MANAGED.to_vec();
    paths.extend([RECEIPT, IMAGES_TOKEN]);
    host.snapshot(&paths)
}

fn warnings(run: &Run) -> Vec<String> {
    run.events()
        .into_iter()
        .filter(|e| e["event"] == "warning")
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

fn str_of<'a>(runner: &'a toml::Table, key: &str) -> Option<&'a str> {
    runner.get(key).and_then(|v| v.as_str())
}

/// The stand-in's `register` call for runner `name` (exactly one).
fn registration_of(host: &Container, name: &str) -> serde_json::Value {
    let calls: Vec<_> = registrations(host)
        .into_iter()
        .filter(|call| {
            let argv: Vec<&str> = call["argv"]
                .as_array()
                .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
                .unwrap_or_default();
            argv.windows(2).any(|w| w == ["--name", name])
        })
        .collect();
    assert_eq!(calls.len(), 1, "register calls for {name}: {calls:#?}");
    calls.into_iter().next().expect("one")
}

fn argv_of(call: &serde_json::Value) -> Vec<String> {
    call["argv"]
        .as_array()
        .expect("argv")
        .iter()
        .map(|v| v.as_str().unwrap_or_default().to_string())
        .collect()
}

/// The runner token the stand-in makes of `images`' registration token:
/// the same binary registering once more into a scratch file (token in
/// its environment only; no log).
fn runner_token_from(host: &Container, name: &str) -> String {
    let out = Run::capture(
        host.command(&[
            "sh",
            "-c",
            &format!(
                "rm -rf /tmp/derive && mkdir /tmp/derive && gitlab-runner register --non-interactive --config /tmp/derive/config.toml --url {URL} --name {name} --executor shell >/dev/null 2>&1 && cat /tmp/derive/config.toml && rm -rf /tmp/derive"
            ),
        ])
        .env("REGISTRATION_TOKEN", LEGACY_TOKEN),
    );
    assert!(out.status.success(), "{}", out.transcript());
    let config: toml::Table = toml::from_str(&out.stdout).expect("scratch config.toml");
    config["runners"][0]["token"]
        .as_str()
        .expect("token")
        .to_string()
}

/// 22. Two runners from one profile: `build` (shell, its runner
///     authentication token in a variable) and `images` (tags, limit,
///     environment, its registration token in a root-only file). A token
///     file others can read, or a link, is refused before any change; a
///     missing one leaves `images` unregistered and says so. Each registers
///     once with its own token (never in argv, output, logs or the
///     journal), each gets DOCKER_DRIVER; a runner added by hand is
///     reported by apply and verify and kept byte for byte; the next apply
///     changes nothing; `images` taken out of the profile stays registered
///     and is reported.
pub fn several_runners() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("several_runners");
    let host = tier.boot("rp-fleet");
    host.write(PROFILE, &fleet(&[BUILD, IMAGES]));
    let (sampler, saw_register) =
        ArgvSampler::start(&[LEGACY_TOKEN, GLRT_TOKEN], "gitlab-runner register");
    let mut outputs = Vec::new();

    // Hostile token files, on the fresh host: refused before any change.
    let fresh = host.managed();
    token_file(&host, IMAGES_TOKEN, 0o644);
    let open = apply(&host);
    assert_refused(
        &host,
        "a token file others can read",
        &fresh,
        &open,
        &[
            "token file /etc/runner-provision/images.token is refused: group or others can read or write it (mode 0644)",
        ],
    );
    std::fs::remove_file(host.path(IMAGES_TOKEN)).expect("rm");
    token_file(&host, "/root/images.token", 0o600);
    std::os::unix::fs::symlink("/root/images.token", host.path(IMAGES_TOKEN)).expect("symlink");
    let link = apply(&host);
    assert_refused(
        &host,
        "a token file that is a link",
        &fresh,
        &link,
        &["images.token is refused: it is a symbolic link"],
    );
    std::fs::remove_file(host.path(IMAGES_TOKEN)).expect("rm");
    std::fs::remove_file(host.path("/root/images.token")).expect("rm");
    assert_eq!(
        checks::stand_in_calls(&host),
        Vec::<serde_json::Value>::new()
    );

    // No token file yet: build registers, images waits for its token.
    let first = apply(&host);
    first.assert_applied("apply without images' token file");
    assert!(
        warnings(&first).iter().any(|w| w.contains(
            "not registered: images at https://gitlab.example.com/ (no token in its token_file /etc/runner-provision/images.token)"
        )),
        "{}",
        first.transcript()
    );
    let names = |host: &Container| -> Vec<String> {
        checks::runners(host)
            .iter()
            .map(|r| str_of(r, "name").unwrap_or_default().to_string())
            .collect()
    };
    assert_eq!(names(&host), ["build"]);

    // The token arrives: plan shows images' registration, apply does it.
    token_file(&host, IMAGES_TOKEN, 0o600);
    let plan = run(&host, &["--output", "json", "plan", "--detailed-exitcode"]);
    assert_eq!(plan.code(), Some(2), "{}", plan.transcript());
    assert!(
        plan.stdout.contains(
            "register runner images at https://gitlab.example.com/ (executor shell, tags docker,images, limit 2, environment DOCKER_BUILDKIT IMAGE_REGISTRY, with a registration token)"
        ) && !plan.stdout.contains("register runner build"),
        "{}",
        plan.transcript()
    );
    let second = apply(&host);
    second.assert_applied("apply with images' token file");
    assert_eq!(
        second.step("runner-register")["status"],
        "changed",
        "{}",
        second.transcript()
    );
    outputs.extend([open, link, first, plan, second]);

    // config.toml: the two runners, as registered.
    let runners = checks::runners(&host);
    assert_eq!(names(&host), ["build", "images"], "{}", host.read(CONFIG));
    for runner in &runners {
        assert_eq!(str_of(runner, "url"), Some(URL));
        assert_eq!(str_of(runner, "executor"), Some("shell"));
    }
    let (build, images) = (&runners[0], &runners[1]);
    assert_eq!(environment(build), ["DOCKER_DRIVER=overlay2"]);
    assert_eq!(
        environment(images),
        [
            "DOCKER_BUILDKIT=1",
            "IMAGE_REGISTRY=registry.example.com",
            "DOCKER_DRIVER=overlay2"
        ]
    );
    assert_eq!(images.get("limit").and_then(|v| v.as_integer()), Some(2));
    assert!(build.get("limit").is_none_or(|v| v.as_integer() == Some(0)));
    assert_eq!(host.mode(CONFIG), 0o600);
    checks::assert_docker_ready(&host);

    // Each registered once, by root, with its own token through its own
    // variable: build's `glrt-` token is the runner's token; images' token
    // is what the stand-in makes of its registration token.
    let build_call = registration_of(&host, "build");
    let images_call = registration_of(&host, "images");
    assert_eq!(registrations(&host).len(), 2);
    assert_eq!(build_call["token_env"], "CI_SERVER_TOKEN", "{build_call}");
    assert_eq!(
        images_call["token_env"], "REGISTRATION_TOKEN",
        "{images_call}"
    );
    assert_eq!(build_call["euid"], 0);
    let build_argv = argv_of(&build_call);
    let images_argv = argv_of(&images_call);
    assert!(
        !build_argv
            .iter()
            .any(|a| a == "--tag-list" || a == "--limit"),
        "{build_argv:?}"
    );
    for pair in [
        ["--tag-list", "docker,images"],
        ["--limit", "2"],
        ["--url", URL],
    ] {
        assert!(
            images_argv.windows(2).any(|w| w == pair),
            "{pair:?} in {images_argv:?}"
        );
    }
    assert!(
        !images_argv.iter().any(|a| a.contains("IMAGE_REGISTRY")),
        "the runner's environment travels in RUNNER_ENV, not argv: {images_argv:?}"
    );
    assert_eq!(str_of(build, "token"), Some(GLRT_TOKEN));

    // The next apply changes nothing.
    let registered = files(&host);
    apply(&host).assert_converged("apply after both registrations");
    registered.assert_same(&files(&host), "apply after both registrations");

    // A runner registered by hand, not in the profile: reported, kept.
    let mut config = host.read(CONFIG);
    config.push_str(BY_HAND);
    host.write(CONFIG, &config);
    let reported = "runner \"by-hand\" at https://gitlab.example.com/ is in /etc/gitlab-runner/config.toml but not in the profile: left as it is";
    let before = files(&host);
    let converged = apply(&host);
    converged.assert_converged("apply with a runner added by hand");
    before.assert_same(&files(&host), "apply with a runner added by hand");
    assert!(
        warnings(&converged).iter().any(|w| w.starts_with(reported)),
        "{}",
        converged.transcript()
    );
    assert!(host.read(CONFIG).ends_with(BY_HAND));
    let verify = run(&host, &["--output", "json", "verify"]);
    verify.assert_success("verify with a runner added by hand");
    assert!(
        warnings(&verify).iter().any(|w| w.starts_with(reported)),
        "{}",
        verify.transcript()
    );
    before.assert_same(&files(&host), "verify");

    // images taken out of the profile: still registered, reported.
    host.write(PROFILE, &fleet(&[BUILD]));
    let calls = checks::stand_in_calls(&host).len();
    let without = apply(&host);
    without.assert_converged("apply without images in the profile");
    before.assert_same(&files(&host), "apply without images in the profile");
    let left = warnings(&without);
    assert!(
        left.iter().any(|w| w.starts_with(
            "runner \"images\" at https://gitlab.example.com/ is in /etc/gitlab-runner/config.toml but not in the profile: left as it is"
        )) && left.iter().any(|w| w.starts_with(reported)),
        "{}",
        without.transcript()
    );
    assert!(
        !checks::stand_in_calls(&host)[calls..]
            .iter()
            .any(|c| c["argv"][1] == "unregister"),
        "apply unregistered a runner"
    );
    outputs.extend([converged, verify, without]);

    // No token anywhere it could leak.
    let (leaks, passes) = sampler.finish();
    assert!(passes > 10, "the argv sampler barely ran ({passes} passes)");
    assert!(leaks.is_empty(), "a token in argv:\n{}", leaks.join("\n"));
    eprintln!(
        "argv sampler: {passes} passes, saw `gitlab-runner register`: {}",
        saw_register.load(std::sync::atomic::Ordering::Relaxed)
    );
    let journal = host.sh_ok("journalctl --no-pager -o export");
    assert!(journal.len() > 1000, "the journal is empty");
    for token in [LEGACY_TOKEN, GLRT_TOKEN] {
        for out in &outputs {
            assert_no_secret(&out.stdout, token, "stdout");
            assert_no_secret(&out.stderr, token, "stderr");
        }
        assert_no_secret(&journal, token, "the journal");
        let logs = files_containing(&host, "/var/log", token);
        assert!(logs.is_empty(), "a token under /var/log: {logs:?}");
        assert_no_secret(&host.read(RECEIPT), token, "the receipt");
    }
    // Last (its token in the environment of a command of this test only).
    assert_eq!(
        str_of(images, "token"),
        Some(runner_token_from(&host, "images").as_str()),
        "images registered with another registration token"
    );
}
