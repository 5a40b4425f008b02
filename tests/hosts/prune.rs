//! Disk hygiene on a real host (issue 12): the prune timer apply installs,
//! its service started as the timer would start it, on a Docker data root
//! holding old and recent images, containers, build cache and volumes.
//!
//! "Old" without waiting days: an image's age is its config's `created`,
//! which `docker import` sets to now, so old images are `docker load`ed from
//! a tarball made here with `created` in 2020 (what Docker's `until`
//! filter reads); containers, build cache and volumes get their age from
//! the clock, so the profile's `older_than` is seconds and the scenario
//! waits that long between making the old things and the recent ones.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::LEGACY_TOKEN;
use crate::checks::assert_second_apply_changes_nothing;
use crate::harness::{self, Container, PROFILE, TEST_PROFILE};

const SERVICE: &str = "/etc/systemd/system/runner-provision-prune.service";
const TIMER: &str = "/etc/systemd/system/runner-provision-prune.timer";
/// What counts as old here: long enough for a build and an apply to stay
/// "recent", short enough to wait for.
const OLDER_THAN_SECS: u64 = 25;

/// A shell function that `docker load`s a one-layer image NAME whose
/// config says it was created at CREATED (RFC 3339), in docker save's
/// layout: manifest.json, the config named by its SHA-256, the layer tar.
const LOAD_IMAGE: &str = r#"
load_image() {
  d=$(mktemp -d); echo "$3" > "$d/data.txt"; mkdir "$d/layer"
  tar -C "$d" --mtime=@0 --owner=0 --group=0 -cf "$d/layer/layer.tar" data.txt
  diff=$(sha256sum "$d/layer/layer.tar" | cut -d' ' -f1)
  printf '{"architecture":"amd64","os":"linux","created":"%s","config":{"Cmd":["/data.txt"]},"rootfs":{"type":"layers","diff_ids":["sha256:%s"]}}' "$2" "$diff" > "$d/config.json"
  cid=$(sha256sum "$d/config.json" | cut -d' ' -f1); mv "$d/config.json" "$d/$cid.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":["layer/layer.tar"]}]' "$cid" "$1" > "$d/manifest.json"
  tar -C "$d" -cf - manifest.json "$cid.json" layer/layer.tar | docker load
  rm -r "$d"
}
"#;

/// A BuildKit build of a one-file image FROM scratch: build cache entries.
fn build(host: &Container, tag: &str, content: &str) {
    host.sh_ok(&format!(
        "mkdir -p /root/ctx-{tag} && cd /root/ctx-{tag} && echo {content} > file && \
         printf 'FROM scratch\\nCOPY file /file\\n' > Dockerfile && \
         DOCKER_BUILDKIT=1 docker build -q -t built:{tag} . >/dev/null"
    ));
}

/// The build cache's entry ids (`docker system df -v`).
fn cache_ids(host: &Container) -> Vec<String> {
    host.sh_ok("docker system df -v | sed -n '/^CACHE ID/,/^$/p' | tail -n +2 | cut -d' ' -f1")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn images(host: &Container) -> String {
    host.sh_ok("docker image ls --format '{{.Repository}}:{{.Tag}}' | sort | tr '\\n' ' '")
}

/// The event of part `id` in a prune run's JSON lines.
fn part(events: &[Value], id: &str) -> Value {
    events
        .iter()
        .find(|e| e["id"] == id && (e["event"] == "step_finished" || e["event"] == "step_checked"))
        .cloned()
        .unwrap_or_else(|| panic!("no event for {id}: {events:?}"))
}

pub fn prune_timer() {
    let Some(tier) = harness::tier() else { return };
    let started = Instant::now();
    let host = tier.boot("rp-prune");
    // A low threshold: whatever this machine's disk holds, it is "full".
    host.write(
        PROFILE,
        &format!(
            "{TEST_PROFILE}\n[prune]\nschedule = \"daily\"\nabove_percent = 0\nolder_than = \"{OLDER_THAN_SECS}s\"\n"
        ),
    );
    host.apply(&[], Some(LEGACY_TOKEN))
        .assert_applied("apply with a prune schedule");
    assert_eq!(
        host.sh_ok("systemctl is-enabled runner-provision-prune.timer; systemctl is-active runner-provision-prune.timer"),
        "enabled\nactive\n"
    );
    assert!(
        host.read(SERVICE).contains(&format!(
            "ExecStart=runner-provision --output json prune --older-than {OLDER_THAN_SECS}s --above-percent 0\n"
        )),
        "{}",
        host.read(SERVICE)
    );

    // The old: an image created in 2020, a stopped container of it, a
    // build and its cache, an anonymous volume no container uses.
    let old_made = Instant::now();
    host.sh_ok(&format!(
        "{LOAD_IMAGE}
         load_image old:1 2020-01-02T03:04:05Z old
         load_image used:1 2020-01-02T03:04:05Z used
         docker create --name old-stopped old:1 /data.txt >/dev/null
         docker rm \"$(docker create -v /scratch old:1 /data.txt)\" >/dev/null
         docker volume ls --quiet --filter dangling=true > /root/old-volumes"
    ));
    build(&host, "a", "first");
    let old_cache = cache_ids(&host);
    let old_volume = host.read("/root/old-volumes").trim().to_string();
    assert_eq!(old_volume.len(), 64, "one anonymous volume: {old_volume}");

    // The second apply changes nothing (timer files included), while the
    // old things age.
    let timer_files = host.snapshot(&[SERVICE, TIMER]);
    assert_second_apply_changes_nothing(&host, Some(LEGACY_TOKEN));
    timer_files.assert_same(&host.snapshot(&[SERVICE, TIMER]), "second apply");
    let age = Duration::from_secs(OLDER_THAN_SECS + 2);
    if let Some(left) = age.checked_sub(old_made.elapsed()) {
        std::thread::sleep(left);
    }

    // The recent: an imported image (created now), a stopped container of
    // the 2020 image `used:1` (which keeps it), a build, a volume.
    host.sh_ok(
        "cd /root && echo recent > recent.txt && tar -cf recent.tar recent.txt && \
         docker import recent.tar recent:1 >/dev/null && \
         docker create --name recent-stopped used:1 /data.txt >/dev/null && \
         docker rm \"$(docker create -v /scratch used:1 /data.txt)\" >/dev/null",
    );
    build(&host, "b", "second");
    let recent_cache: Vec<String> = cache_ids(&host)
        .into_iter()
        .filter(|id| !old_cache.contains(id))
        .collect();
    assert!(
        !recent_cache.is_empty(),
        "the second build made cache entries"
    );
    let before = images(&host);
    assert_eq!(before, "built:a built:b old:1 recent:1 used:1 ");

    // A dry run lists the old and removes nothing.
    let dry = host.tool(
        &[
            "--output",
            "json",
            "prune",
            "--dry-run",
            "--detailed-exitcode",
        ],
        None,
    );
    assert_eq!(dry.code(), Some(2), "{}", dry.transcript());
    let listed = dry.events();
    let planned = part(&listed, "images")["changes"].to_string();
    assert!(
        planned.contains("old:1") && planned.contains("built:a"),
        "{planned}"
    );
    assert!(
        !planned.contains("recent:1")
            && !planned.contains("used:1")
            && !planned.contains("built:b"),
        "{planned}"
    );
    assert_eq!(images(&host), before, "the dry run removed images");

    // The timer's service, started as the timer starts it.
    host.sh_ok("systemctl start runner-provision-prune.service");
    let result = host.sh_ok("systemctl show -p Result --value runner-provision-prune.service");
    assert_eq!(result.trim(), "success");
    let journal =
        host.sh_ok("journalctl -u runner-provision-prune.service -o cat --no-pager | grep '^{'");
    let events: Vec<Value> = journal
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = events
        .iter()
        .find(|e| e["event"] == "summary")
        .expect("summary");
    assert_eq!(summary["failed"], 0, "{journal}");

    // Its report lists what went; Docker agrees.
    let removed_containers = part(&events, "containers")["changes"].to_string();
    assert!(
        removed_containers.contains("removed container old-stopped"),
        "{removed_containers}"
    );
    assert!(
        !removed_containers.contains("recent-stopped"),
        "{removed_containers}"
    );
    let removed_images = part(&events, "images")["changes"].to_string();
    assert!(
        removed_images.contains("removed image old:1")
            && removed_images.contains("removed image built:a"),
        "{removed_images}"
    );
    assert!(
        !removed_images.contains("recent:1") && !removed_images.contains("used:1"),
        "{removed_images}"
    );
    assert_eq!(images(&host), "built:b recent:1 used:1 ");
    let cache = part(&events, "build-cache");
    assert!(
        cache["details"]["removed"].as_u64().unwrap_or(0) >= 1,
        "{cache}"
    );
    let cache_after = cache_ids(&host);
    assert!(
        old_cache.iter().any(|id| !cache_after.contains(id)),
        "no old cache entry went: {old_cache:?} {cache_after:?}"
    );
    for id in &recent_cache {
        assert!(cache_after.contains(id), "recent cache entry {id} went");
    }
    let volumes = part(&events, "volumes")["changes"].to_string();
    assert!(volumes.contains(&old_volume[..12]), "{volumes}");
    let left = host.sh_ok("docker volume ls --quiet");
    assert!(
        !left.contains(&old_volume) && left.lines().count() == 1,
        "{left}"
    );
    assert_eq!(
        host.sh_ok("docker ps --all --format '{{.Names}}'").trim(),
        "recent-stopped"
    );
    let space = part(&events, "space");
    assert!(space["details"]["freed_bytes"].is_u64(), "{space}");
    eprintln!("prune report: {}", space["changes"]);

    // remove takes the timer back with the rest.
    host.tool(&["--output", "json", "remove"], None)
        .assert_success("remove");
    assert!(!host.path(SERVICE).exists() && !host.path(TIMER).exists());
    let enabled = host.sh("systemctl is-enabled runner-provision-prune.timer");
    assert_ne!(enabled.stdout.trim(), "enabled", "{}", enabled.transcript());
    eprintln!(
        "scenario prune_timer: passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
