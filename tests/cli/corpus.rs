//! The hostile-input corpus: profile values, config.toml, daemon.json and
//! modules layouts, symbolic-link layouts. Every case ends in a clear error
//! before any change (the tree's state, links and modes included, is the
//! same) or in a converged host (a second apply changes nothing); never a
//! panic, a write outside the root, the token in the output, or a silent
//! switch of the storage driver.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::Path;

use crate::fake_root::{FakeRoot, LEGACY};

/// Every entry below `dir`, not following links: regular files by content,
/// links by target, anything else by kind; modes included.
fn state(dir: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("entry").path();
            let rel = path
                .strip_prefix(dir)
                .expect("prefix")
                .display()
                .to_string();
            if rel == "commands.log" || rel == "stand-in.log" {
                continue;
            }
            let meta = std::fs::symlink_metadata(&path).expect("lstat");
            let what = if meta.file_type().is_symlink() {
                format!(
                    "link {}",
                    std::fs::read_link(&path).expect("readlink").display()
                )
            } else if meta.is_dir() {
                dirs.push(path.clone());
                "dir".to_string()
            } else if meta.is_file() {
                format!("{:?}", std::fs::read(&path).expect("read"))
            } else {
                "special".to_string()
            };
            out.insert(rel, format!("{:o} {what}", meta.mode()));
        }
    }
    out
}

struct Case {
    name: &'static str,
    setup: fn(&FakeRoot, &Path),
    args: &'static [&'static str],
    /// What the error must say, when the case is refused.
    refused_with: Option<&'static str>,
}

fn link(tree: &FakeRoot, target: &str, at: &str) {
    let at = tree.path().join(at);
    std::fs::create_dir_all(at.parent().expect("parent")).expect("mkdir");
    symlink(target, at).expect("symlink");
}

const BTRFS: &str = "{\"storage-driver\": \"btrfs\", \"storage-opts\": [\"btrfs.min_space=1G\"]}\n";

fn cases() -> Vec<Case> {
    vec![
        Case {
            name: "profile: URL with credentials",
            setup: |t, _| {
                t.write(
                    "site.toml",
                    "[runner]\nurl = \"https://u:hunter2pass@gitlab.example.com/\"\n",
                )
            },
            args: &["--profile-file"],
            refused_with: Some("user name or password"),
        },
        Case {
            name: "profile: executor and driver with a space",
            setup: |t, _| t.write("site.toml", "[docker]\nstorage_driver = \"overlay2 \"\n"),
            args: &["--profile-file"],
            refused_with: Some("storage_driver `overlay2 `"),
        },
        Case {
            name: "profile: name with a paragraph separator",
            setup: |t, _| t.write("site.toml", "[runner]\nname = \"a\u{2029}runcmd: [x]\"\n"),
            args: &["--profile-file"],
            refused_with: Some("runner name"),
        },
        Case {
            name: "profile: huge verify_timeout",
            setup: |t, _| {
                t.write(
                    "site.toml",
                    "[docker]\nverify_timeout = 18446744073709551615\n",
                )
            },
            args: &["--profile-file"],
            refused_with: Some("0 to 3600"),
        },
        Case {
            name: "profile: [global] listen_address with an escape sequence",
            setup: |t, _| {
                t.write(
                    "site.toml",
                    "[global]\nlisten_address = \"\\u001b[2J127.0.0.1:9252\"\n",
                )
            },
            args: &["--profile-file"],
            refused_with: Some("listen_address"),
        },
        Case {
            name: "profile: [global] concurrent as a string",
            setup: |t, _| t.write("site.toml", "[global]\nconcurrent = \"4\"\n"),
            args: &["--profile-file"],
            refused_with: Some("invalid type"),
        },
        Case {
            name: "profile: [prune] older_than with an escape sequence",
            setup: |t, _| t.write("site.toml", "[prune]\nolder_than = \"3d\\u001b[2J\"\n"),
            args: &["--profile-file"],
            refused_with: Some("older_than"),
        },
        Case {
            name: "profile: [prune] schedule not one of them",
            setup: |t, _| t.write("site.toml", "[prune]\nschedule = \"minutely\"\n"),
            args: &["--profile-file"],
            refused_with: Some("hourly"),
        },
        Case {
            name: "profile: [prune] above_percent as a string",
            setup: |t, _| t.write("site.toml", "[prune]\nabove_percent = \"80\"\n"),
            args: &["--profile-file"],
            refused_with: Some("invalid type"),
        },
        Case {
            name: "profile: [docker.daemon] a TOML date",
            setup: |t, _| t.write("site.toml", "[docker.daemon]\nbuilt = 2026-12-04\n"),
            args: &["--profile-file"],
            refused_with: Some("`built` is a TOML date or time"),
        },
        Case {
            name: "profile: [docker.daemon] inf",
            setup: |t, _| t.write("site.toml", "[docker.daemon]\nlog-opts = { n = inf }\n"),
            args: &["--profile-file"],
            refused_with: Some("`log-opts.n` is nan or inf"),
        },
        Case {
            name: "profile: [docker.daemon] storage-driver",
            setup: |t, _| t.write("site.toml", "[docker.daemon]\nstorage-driver = \"vfs\"\n"),
            args: &["--profile-file"],
            refused_with: Some("set storage_driver instead"),
        },
        Case {
            name: "profile: [docker.daemon] data-root not absolute",
            setup: |t, _| t.write("site.toml", "[docker.daemon]\ndata-root = \"docker\"\n"),
            args: &["--profile-file"],
            refused_with: Some("must be an absolute path"),
        },
        Case {
            name: "profile: [docker.daemon] a number among the mirrors",
            setup: |t, _| {
                t.write(
                    "site.toml",
                    "[docker.daemon]\nregistry-mirrors = [\"http://127.0.0.1:5000\", 5000]\n",
                )
            },
            args: &["--profile-file"],
            refused_with: Some("5000 is not a string"),
        },
        Case {
            name: "profile: [docker.daemon] hosts beside the unit's -H fd://",
            setup: |t, _| {
                t.write(
                    "site.toml",
                    "[docker.daemon]\nhosts = [\"unix:///var/run/docker.sock\"]\n",
                )
            },
            args: &["--profile-file"],
            refused_with: Some("moby#34104"),
        },
        Case {
            name: "daemon.json: a list, not an object",
            setup: |t, _| t.write("etc/docker/daemon.json", "[\"overlay2\"]\n"),
            args: &[],
            refused_with: Some("must be a JSON object"),
        },
        Case {
            name: "daemon.json: a log setup chosen by hand",
            setup: |t, _| t.write("etc/docker/daemon.json", "{\"log-driver\": \"syslog\"}\n"),
            args: &[],
            refused_with: None,
        },
        Case {
            name: "prune timer: the tool nowhere the timer looks",
            setup: |t, _| t.write("lib/systemd/systemd", ""),
            args: &["--prune-schedule", "daily"],
            refused_with: Some("none of them has it"),
        },
        Case {
            name: "prune timer: someone else's timer file",
            setup: |t, _| {
                t.write("lib/systemd/systemd", "");
                t.write("usr/bin/runner-provision", "#!/bin/sh\n");
                t.write(
                    "etc/systemd/system/runner-provision-prune.timer",
                    "[Timer]\nOnCalendar=minutely\n",
                );
            },
            args: &["--prune-schedule", "daily"],
            refused_with: Some("not written by runner-provision"),
        },
        Case {
            name: "prune timer: the cron entry a link to outside the root",
            setup: |t, outside| {
                t.write("usr/bin/runner-provision", "#!/bin/sh\n");
                std::fs::create_dir_all(t.path().join("etc/cron.d")).expect("cron.d");
                link(
                    t,
                    &outside.join("cron").display().to_string(),
                    "etc/cron.d/runner-provision-prune",
                );
            },
            args: &["--prune-schedule", "hourly"],
            refused_with: Some("symbolic link"),
        },
        Case {
            name: "prune timer: the cron entry a link to a data disk inside the root",
            setup: |t, _| {
                t.write("usr/bin/runner-provision", "#!/bin/sh\n");
                std::fs::create_dir_all(t.path().join("etc/cron.d")).expect("cron.d");
                std::fs::create_dir_all(t.path().join("srv/data")).expect("data");
                link(
                    t,
                    "/srv/data/prune-cron",
                    "etc/cron.d/runner-provision-prune",
                );
            },
            args: &["--prune-schedule", "hourly"],
            refused_with: None,
        },
        Case {
            name: "config.toml: concurrent is a table, with a token in it",
            setup: |t, _| {
                t.write(
                    "etc/gitlab-runner/config.toml",
                    "[concurrent]\n  x = 1\n\n[[runners]]\n  name = \"runner-1\"\n  url = \"https://gitlab.com/\"\n  token = \"glrt-corpus.Secret123\"\n  executor = \"shell\"\n",
                )
            },
            args: &["--concurrent", "3"],
            refused_with: Some("must be a plain value"),
        },
        Case {
            name: "config.toml: a link to a data disk, globals set through it",
            setup: |t, _| {
                t.write(
                    "srv/data/config.toml",
                    "# tuned by hand\nconcurrent = 1 # per host\n",
                );
                link(t, "/srv/data/config.toml", "etc/gitlab-runner/config.toml");
            },
            args: &["--concurrent", "3", "--listen-address", "127.0.0.1:9252"],
            refused_with: None,
        },
        Case {
            name: "config.toml: malformed, with a token in it",
            setup: |t, _| {
                t.write(
                    "etc/gitlab-runner/config.toml",
                    "[[runners]\ntoken = \"glrt-corpus.Secret123\"\n",
                )
            },
            args: &[],
            refused_with: Some("config.toml is malformed"),
        },
        Case {
            name: "config.toml: a runner with DOCKER_DRIVER=vfs and a comment",
            setup: |t, _| {
                t.write(
                "etc/gitlab-runner/config.toml",
                "[[runners]]\n  name = \"runner-1\"\n  url = \"https://gitlab.com/\"\n  token = \"t\"\n  executor = \"shell\"\n  # dind needs vfs\n  environment = [\"DOCKER_DRIVER=vfs\"]\n",
            )
            },
            args: &[],
            refused_with: Some("`vfs`"),
        },
        Case {
            name: "config.toml: a link to a file on a data disk, inside the root",
            setup: |t, _| {
                t.write("srv/data/config.toml", "concurrent = 1\n");
                link(t, "/srv/data/config.toml", "etc/gitlab-runner/config.toml");
            },
            args: &[],
            refused_with: None,
        },
        Case {
            name: "daemon.json: btrfs with its options",
            setup: |t, _| t.write("etc/docker/daemon.json", BTRFS),
            args: &[],
            refused_with: Some("--replace-storage-driver"),
        },
        Case {
            name: "daemon.json: btrfs, switch accepted",
            setup: |t, _| t.write("etc/docker/daemon.json", BTRFS),
            args: &["--replace-storage-driver"],
            refused_with: None,
        },
        Case {
            name: "daemon.json: a link to /dev/null",
            setup: |t, _| link(t, "/dev/null", "etc/docker/daemon.json"),
            args: &[],
            refused_with: Some("symbolic link to /dev/null"),
        },
        Case {
            name: "daemon.json: a FIFO",
            setup: |t, _| {
                std::fs::create_dir_all(t.path().join("etc/docker")).expect("mkdir");
                nix::unistd::mkfifo(
                    &t.path().join("etc/docker/daemon.json"),
                    nix::sys::stat::Mode::from_bits_truncate(0o644),
                )
                .expect("mkfifo");
            },
            args: &[],
            refused_with: Some("named pipe"),
        },
        Case {
            name: "daemon.json: a folder",
            setup: |t, _| {
                std::fs::create_dir_all(t.path().join("etc/docker/daemon.json")).expect("mkdir")
            },
            args: &[],
            refused_with: Some("not a regular file"),
        },
        Case {
            name: "daemon.json: 65 MiB",
            setup: |t, _| {
                std::fs::create_dir_all(t.path().join("etc/docker")).expect("mkdir");
                let f =
                    std::fs::File::create(t.path().join("etc/docker/daemon.json")).expect("create");
                f.set_len(65 * 1024 * 1024).expect("truncate");
            },
            args: &[],
            refused_with: Some("larger than 64 MiB"),
        },
        Case {
            name: "etc/docker: an absolute link to the real path outside",
            setup: |t, outside| link(t, &outside.display().to_string(), "etc/docker"),
            args: &[],
            refused_with: Some("does not exist"),
        },
        Case {
            name: "etc/docker: a relative link climbing out",
            setup: |t, _| link(t, "../../../../../../../outside", "etc/docker"),
            args: &[],
            refused_with: Some("does not exist"),
        },
        Case {
            name: "etc/docker: an absolute link to a folder inside the root",
            setup: |t, _| {
                std::fs::create_dir_all(t.path().join("srv/docker")).expect("mkdir");
                link(t, "/srv/docker", "etc/docker");
            },
            args: &[],
            refused_with: None,
        },
        Case {
            name: "modules: a link loop",
            setup: |t, _| {
                std::fs::remove_file(t.path().join("etc/modules")).expect("rm");
                link(t, "/etc/modules.b", "etc/modules");
                link(t, "/etc/modules", "etc/modules.b");
            },
            args: &[],
            // Unusable: the module goes to /etc/modules-load.d instead.
            refused_with: None,
        },
        Case {
            name: "modules: a link to the build host's file",
            setup: |t, outside| {
                std::fs::remove_file(t.path().join("etc/modules")).expect("rm");
                link(
                    t,
                    &outside.join("modules").display().to_string(),
                    "etc/modules",
                );
            },
            args: &[],
            refused_with: None,
        },
    ]
}

#[test]
fn every_hostile_input_ends_refused_before_any_change_or_converged() {
    for case in cases() {
        let tree = FakeRoot::debian12();
        // A folder beside the root that nothing may touch.
        let outside_dir = tempfile::tempdir().expect("tempdir");
        let outside = outside_dir.path().join("outside");
        std::fs::create_dir_all(&outside).expect("mkdir");
        std::fs::write(outside.join("modules"), "# the build host's\n").expect("write");
        std::fs::write(outside.join("daemon.json"), "{}\n").expect("write");
        (case.setup)(&tree, &outside);
        let outside_before = state(&outside);
        let before = state(tree.path());

        let site = tree.path().join("site.toml").display().to_string();
        let mut args: Vec<&str> = vec!["apply", "--yes", "--accept-docker-group-risk"];
        for arg in case.args {
            if *arg == "--profile-file" {
                args.extend(["--profile", site.as_str()]);
            } else {
                args.push(arg);
            }
        }
        // The profile comes after the fake root's own.
        let out = tree.run(&args, Some(LEGACY), &[]);
        let all = format!("{out}");
        let name = case.name;
        assert!(!all.contains("panicked"), "{name}: {all}");
        assert!(!all.contains(LEGACY), "{name}: token in output: {all}");
        assert!(
            !all.contains("hunter2pass") && !all.contains("glrt-corpus.Secret123"),
            "{name}: {all}"
        );
        assert_eq!(
            state(&outside),
            outside_before,
            "{name}: wrote outside the root: {all}"
        );
        match case.refused_with {
            Some(expected) => {
                assert_eq!(out.code, 1, "{name}: {all}");
                assert!(
                    all.contains(expected),
                    "{name}: should say {expected:?}: {all}"
                );
                assert_eq!(
                    state(tree.path()),
                    before,
                    "{name}: changed before refusing: {all}"
                );
                assert!(tree.log().is_empty(), "{name}: ran {:?}", tree.log());
            }
            None => {
                assert_eq!(out.code, 0, "{name}: {all}");
                let converged = state(tree.path());
                let again = tree.run(&args, Some(LEGACY), &[]);
                assert_eq!(again.code, 0, "{name}: {again}");
                assert!(again.stdout.contains("0 changed"), "{name}: {again}");
                assert_eq!(
                    state(tree.path()),
                    converged,
                    "{name}: second apply changed files"
                );
                assert_eq!(state(&outside), outside_before, "{name}");
            }
        }
    }
}
