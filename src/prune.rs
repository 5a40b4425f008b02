//! `prune`: disk hygiene for hosts that build images. When the filesystem
//! holding Docker's data root is fuller than `[prune] above_percent` (or
//! always, with `--force`), removes what is older than `older_than`:
//! stopped containers, images no container uses, build cache and
//! anonymous volumes no container uses.
//!
//! What may be removed is Docker's own decision wherever Docker has one:
//! `docker container prune`, `docker image prune --all` and `docker builder
//! prune`, each with `--filter until=`, never touch a running container or
//! an image a container (running or stopped) still uses. Volumes have no
//! `until` filter (`Invalid filter 'until'` on every version), so they are
//! listed (`dangling=true`), judged here by their creation time, and
//! removed one by one with `docker volume rm`, which refuses a volume in
//! use. Named volumes are kept: someone named them to keep them.
//!
//! `--dry-run` lists the same inventory and applies the same rules without
//! removing anything. Each part is reported like a step.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use crate::Mode;
use crate::host::Host;
use crate::host::command::Cmd;
use crate::host::system::DiskUsage;
use crate::report::{Counts, Reporter, Status, StepReport};

pub struct Options {
    pub dry_run: bool,
    /// Prune whatever the disk usage.
    pub force: bool,
    pub above_percent: u64,
    /// The age limit as given (`72h`), for messages.
    pub older_than: String,
    /// The age limit in seconds.
    pub older_than_secs: u64,
}

/// A container as `docker container inspect` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Container {
    id: String,
    name: String,
    created: i64,
    running: bool,
    image_id: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Image {
    id: String,
    tags: Vec<String>,
    created: i64,
    size: u64,
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Volume {
    name: String,
    created: i64,
    anonymous: bool,
}

/// One part's outcome.
#[derive(Default)]
struct Part {
    changes: Vec<String>,
    reason: Option<String>,
    details: serde_json::Map<String, serde_json::Value>,
    /// Something was (or would be) removed.
    removed: bool,
}

/// Runs the parts in order; returns the counts for the exit code.
pub fn run(host: &Host, reporter: &Reporter, options: &Options) -> Result<Counts> {
    if !host.live {
        bail!(
            "prune works on this host's running Docker daemon, not on a --root tree: run it on the host itself"
        );
    }
    let started = Instant::now();
    let mode = Mode::dry_run(options.dry_run);
    let event = mode.step_event();
    let mut counts = Counts::default();
    let cutoff = i64::try_from(host.unix_time())
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(options.older_than_secs).unwrap_or(i64::MAX));

    // The disk first: whether to prune at all.
    reporter.step_started("disk");
    let began = Instant::now();
    let disk = disk(host, options);
    let (before, wanted) = match &disk {
        Ok((root, usage, wanted, why)) => {
            reporter.detail("data_root", json!(root));
            reporter.detail("used_percent", json!(usage.used_percent()));
            reporter.detail("above_percent", json!(options.above_percent));
            reporter.detail("used_bytes", json!(usage.used));
            let report = step("disk", Status::Ok, Vec::new(), Some(why.clone()), began);
            counts.add(report.status);
            reporter.step_finished(event, &report);
            (Some((root.clone(), *usage)), wanted.then_some(()))
        }
        Err(e) => {
            let report = step(
                "disk",
                Status::Failed,
                Vec::new(),
                Some(format!("{e:#}")),
                began,
            );
            counts.add(report.status);
            reporter.step_finished(event, &report);
            (None, None)
        }
    };

    type PartFn = fn(&Host, &Options, i64, &mut Inventory) -> Result<Part>;
    let parts: [(&'static str, PartFn); 4] = [
        ("containers", containers),
        ("images", images),
        ("build-cache", build_cache),
        ("volumes", volumes),
    ];
    let mut inventory = Inventory::default();
    let mut reclaimed: u64 = 0;
    for (id, part) in parts {
        reporter.step_started(id);
        let began = Instant::now();
        let report = match (&before, wanted) {
            (None, _) => step(
                id,
                Status::Skipped,
                Vec::new(),
                Some("disk failed".into()),
                began,
            ),
            (Some(_), None) => step(
                id,
                Status::Skipped,
                Vec::new(),
                Some("the disk is not full enough".into()),
                began,
            ),
            (Some(_), Some(())) => match part(host, options, cutoff, &mut inventory) {
                Ok(part) => {
                    if let Some(bytes) =
                        part.details.get("reclaimed_bytes").and_then(|b| b.as_u64())
                    {
                        reclaimed = reclaimed.saturating_add(bytes);
                    }
                    for (key, value) in part.details {
                        reporter.detail(&key, value);
                    }
                    let status = match (part.removed, options.dry_run) {
                        (false, _) => Status::Ok,
                        (true, true) => Status::Pending,
                        (true, false) => Status::Changed,
                    };
                    step(id, status, part.changes, part.reason, began)
                }
                Err(e) => step(
                    id,
                    Status::Failed,
                    Vec::new(),
                    Some(format!("{e:#}")),
                    began,
                ),
            },
        };
        counts.add(report.status);
        reporter.step_finished(event, &report);
    }

    // What the filesystem says was freed: Docker's own figures count
    // layers, not what the filesystem got back.
    if let (Some((root, usage)), Some(()), false) = (&before, wanted, options.dry_run) {
        reporter.step_started("space");
        let began = Instant::now();
        let report = match host.disk_usage(root) {
            Ok(after) => {
                let freed = usage.used.saturating_sub(after.used);
                reporter.detail("freed_bytes", json!(freed));
                reporter.detail("reclaimed_bytes", json!(reclaimed));
                reporter.detail("used_percent_before", json!(usage.used_percent()));
                reporter.detail("used_percent_after", json!(after.used_percent()));
                step(
                    "space",
                    Status::Ok,
                    vec![format!(
                        "freed {} on the filesystem of {root}: {}% used before, {}% after (Docker counted {})",
                        human_bytes(freed),
                        usage.used_percent(),
                        after.used_percent(),
                        human_bytes(reclaimed)
                    )],
                    None,
                    began,
                )
            }
            Err(e) => step(
                "space",
                Status::Failed,
                Vec::new(),
                Some(format!("{e:#}")),
                began,
            ),
        };
        counts.add(report.status);
        reporter.step_finished(event, &report);
    }
    reporter.summary(&counts, started.elapsed(), mode);
    Ok(counts)
}

fn step(
    id: &'static str,
    status: Status,
    changes: Vec<String>,
    reason: Option<String>,
    began: Instant,
) -> StepReport {
    StepReport {
        id,
        status,
        changes,
        reason,
        diffs: Vec::new(),
        duration: began.elapsed(),
    }
}

/// Docker's data root, its filesystem's use, whether to prune, and why.
fn disk(host: &Host, options: &Options) -> Result<(String, DiskUsage, bool, String)> {
    let out = docker(host, &["info", "--format", "{{.DockerRootDir}}"])?;
    let root = out.trim().to_string();
    if !root.starts_with('/') || root.contains('\n') {
        bail!(
            "the Docker daemon did not name its data root (docker info said `{}`): is it running? (systemctl status docker)",
            root.escape_debug()
        );
    }
    let usage = host.disk_usage(&root)?;
    let percent = usage.used_percent();
    let over = percent > options.above_percent;
    let why = match (over, options.force) {
        (true, _) => format!(
            "{percent}% of the filesystem of {root} used, more than {}%",
            options.above_percent
        ),
        (false, true) => format!(
            "{percent}% of the filesystem of {root} used, not more than {}%; pruning anyway (--force)",
            options.above_percent
        ),
        (false, false) => format!(
            "{percent}% of the filesystem of {root} used, not more than {}%: nothing to prune (--force prunes anyway)",
            options.above_percent
        ),
    };
    Ok((root, usage, over || options.force, why))
}

/// Runs `docker ARGS`; its stdout, or an error with Docker's words.
fn docker(host: &Host, args: &[&str]) -> Result<String> {
    Ok(host
        .run(Cmd::new("docker").args(args.iter().copied()))?
        .stdout)
}

/// What Docker holds, read once and shared by the parts.
#[derive(Default)]
struct Inventory {
    containers: Option<Vec<Container>>,
}

impl Inventory {
    fn containers(&mut self, host: &Host) -> Result<&[Container]> {
        if self.containers.is_none() {
            self.containers = Some(list_containers(host)?);
        }
        Ok(self.containers.as_deref().unwrap_or_default())
    }
}

/// `docker … inspect --format FORMAT` of what `ls --quiet` lists; an item
/// removed in between is left out (Docker's "No such …" for it).
fn inspect(host: &Host, kind: &str, list: &[&str], format: &str) -> Result<Vec<String>> {
    let mut ls = vec![kind, "ls", "--quiet"];
    ls.extend_from_slice(list);
    let names: BTreeSet<String> = docker(host, &ls)?
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    let out = host.probe(
        Cmd::new("docker")
            .args([kind, "inspect", "--format", format])
            .args(names),
    )?;
    let vanished = out
        .stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.contains("No such"));
    if !out.success() && !vanished {
        bail!(
            "`docker {kind} inspect` failed: {}",
            out.stderr.trim().escape_debug()
        );
    }
    Ok(out
        .stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect())
}

fn list_containers(host: &Host) -> Result<Vec<Container>> {
    inspect(
        host,
        "container",
        &["--all", "--no-trunc"],
        "{{.Id}}\t{{.Name}}\t{{.Created}}\t{{.State.Running}}\t{{.Image}}",
    )?
    .iter()
    .map(|line| {
        parse_container(line)
            .with_context(|| format!("docker container inspect said `{}`", line.escape_debug()))
    })
    .collect()
}

fn parse_container(line: &str) -> Result<Container> {
    let f: Vec<&str> = line.split('\t').collect();
    let [id, name, created, running, image] = f[..] else {
        bail!("not five fields");
    };
    Ok(Container {
        id: id.to_string(),
        name: name.trim_start_matches('/').to_string(),
        created: parse_time(created).context("no creation time")?,
        running: running == "true",
        image_id: image.to_string(),
    })
}

fn list_images(host: &Host) -> Result<Vec<Image>> {
    inspect(
        host,
        "image",
        &["--no-trunc"],
        "{{.Id}}\t{{.Created}}\t{{.Size}}\t{{json .RepoTags}}",
    )?
    .iter()
    .map(|line| {
        parse_image(line)
            .with_context(|| format!("docker image inspect said `{}`", line.escape_debug()))
    })
    .collect()
}

fn parse_image(line: &str) -> Result<Image> {
    let f: Vec<&str> = line.splitn(4, '\t').collect();
    let [id, created, size, tags] = f[..] else {
        bail!("not four fields");
    };
    Ok(Image {
        id: id.to_string(),
        tags: serde_json::from_str::<Option<Vec<String>>>(tags)
            .context("tags")?
            .unwrap_or_default(),
        created: parse_time(created).context("no creation time")?,
        size: size.parse().context("size")?,
    })
}

fn list_volumes(host: &Host) -> Result<Vec<Volume>> {
    inspect(
        host,
        "volume",
        &["--filter", "dangling=true"],
        "{{.Name}}\t{{.CreatedAt}}\t{{json .Labels}}",
    )?
    .iter()
    .map(|line| {
        parse_volume(line)
            .with_context(|| format!("docker volume inspect said `{}`", line.escape_debug()))
    })
    .collect()
}

/// Docker 23 and later label anonymous volumes; older versions name them
/// with 64 hexadecimal digits and no label.
fn parse_volume(line: &str) -> Result<Volume> {
    let f: Vec<&str> = line.splitn(3, '\t').collect();
    let [name, created, labels] = f[..] else {
        bail!("not three fields");
    };
    let labels: BTreeMap<String, String> = serde_json::from_str::<Option<_>>(labels)
        .context("labels")?
        .unwrap_or_default();
    let hex_name = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
    Ok(Volume {
        name: name.to_string(),
        created: parse_time(created).context("no creation time")?,
        anonymous: labels.contains_key("com.docker.volume.anonymous") || hex_name,
    })
}

/// The `until` filter Docker's prune commands take: an age in seconds.
fn until(options: &Options) -> String {
    format!("until={}s", options.older_than_secs)
}

/// Stopped containers created before the cutoff: what `docker container
/// prune --filter until=` removes.
fn stale_containers(containers: &[Container], cutoff: i64) -> Vec<&Container> {
    containers
        .iter()
        .filter(|c| !c.running && c.created < cutoff)
        .collect()
}

/// Images created before the cutoff that no container left after the
/// container prune uses: what `docker image prune --all --filter until=`
/// removes of the images `docker image ls` lists.
fn stale_images<'a>(images: &'a [Image], containers: &[Container], cutoff: i64) -> Vec<&'a Image> {
    let pruned: BTreeSet<&str> = stale_containers(containers, cutoff)
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    let used: BTreeSet<&str> = containers
        .iter()
        .filter(|c| !pruned.contains(c.id.as_str()))
        .map(|c| c.image_id.as_str())
        .collect();
    images
        .iter()
        .filter(|i| i.created < cutoff && !used.contains(i.id.as_str()))
        .collect()
}

/// Anonymous volumes no container uses, created before the cutoff.
fn stale_volumes(volumes: &[Volume], cutoff: i64) -> Vec<&Volume> {
    volumes
        .iter()
        .filter(|v| v.anonymous && v.created < cutoff)
        .collect()
}

fn describe_container(c: &Container) -> String {
    format!(
        "container {} ({}, created {})",
        c.name,
        short(&c.id),
        date(c.created)
    )
}

fn describe_image(i: &Image) -> String {
    let name = if i.tags.is_empty() {
        "<none>".to_string()
    } else {
        i.tags.join(", ")
    };
    format!(
        "image {name} ({}, created {}, {})",
        short(&i.id),
        date(i.created),
        human_bytes(i.size)
    )
}

fn containers(
    host: &Host,
    options: &Options,
    cutoff: i64,
    inventory: &mut Inventory,
) -> Result<Part> {
    let all = inventory.containers(host)?.to_vec();
    let mut part = Part::default();
    if options.dry_run {
        let stale = stale_containers(&all, cutoff);
        part.changes = stale
            .iter()
            .map(|c| format!("remove {}", describe_container(c)))
            .collect();
        part.removed = !stale.is_empty();
        part.details.insert("removable".into(), json!(stale.len()));
        return Ok(part);
    }
    let out = docker(
        host,
        &["container", "prune", "--force", "--filter", &until(options)],
    )?;
    let pruned = parse_prune(&out);
    for id in &pruned.deleted {
        match all.iter().find(|c| &c.id == id) {
            Some(c) => part
                .changes
                .push(format!("removed {}", describe_container(c))),
            None => part
                .changes
                .push(format!("removed container {}", short(id))),
        }
    }
    part.removed = !pruned.deleted.is_empty();
    part.details
        .insert("removed".into(), json!(pruned.deleted.len()));
    part.details
        .insert("reclaimed_bytes".into(), json!(pruned.reclaimed));
    // The containers left decide which images are in use.
    inventory.containers = None;
    Ok(part)
}

fn images(host: &Host, options: &Options, cutoff: i64, inventory: &mut Inventory) -> Result<Part> {
    let listed = list_images(host)?;
    let mut part = Part::default();
    if options.dry_run {
        let all = inventory.containers(host)?.to_vec();
        let stale = stale_images(&listed, &all, cutoff);
        part.changes = stale
            .iter()
            .map(|i| format!("remove {}", describe_image(i)))
            .collect();
        part.removed = !stale.is_empty();
        part.details.insert("removable".into(), json!(stale.len()));
        return Ok(part);
    }
    let out = docker(
        host,
        &[
            "image",
            "prune",
            "--all",
            "--force",
            "--filter",
            &until(options),
        ],
    )?;
    let pruned = parse_prune(&out);
    let mut layers = 0;
    for id in &pruned.deleted {
        match listed.iter().find(|i| &i.id == id) {
            Some(i) => part.changes.push(format!("removed {}", describe_image(i))),
            None => layers += 1,
        }
    }
    if layers > 0 {
        part.changes.push(format!(
            "removed {layers} parent or intermediate image{} of those",
            if layers == 1 { "" } else { "s" }
        ));
    }
    part.removed = !pruned.deleted.is_empty();
    part.details
        .insert("removed".into(), json!(pruned.deleted.len()));
    part.details
        .insert("reclaimed_bytes".into(), json!(pruned.reclaimed));
    Ok(part)
}

fn build_cache(host: &Host, options: &Options, _cutoff: i64, _: &mut Inventory) -> Result<Part> {
    let mut part = Part::default();
    if options.dry_run {
        // Docker names the cache entries a filter selects only as it removes
        // them; say how much cache there is.
        let df = docker(
            host,
            &[
                "system",
                "df",
                "--format",
                "{{.Type}}\t{{.TotalCount}}\t{{.Reclaimable}}",
            ],
        )?;
        let (count, size) = df
            .lines()
            .find_map(|l| {
                let f: Vec<&str> = l.split('\t').collect();
                (f.len() == 3 && f[0] == "Build Cache")
                    .then(|| (f[1].to_string(), f[2].to_string()))
            })
            .unwrap_or_else(|| ("0".into(), "0B".into()));
        if count != "0" {
            part.changes.push(format!(
                "remove the build cache entries unused for more than {} (Docker names them only as it removes them; {count} entries, {size} in all)",
                options.older_than
            ));
            part.removed = true;
        }
        return Ok(part);
    }
    let out = docker(
        host,
        &["builder", "prune", "--force", "--filter", &until(options)],
    )?;
    let pruned = parse_prune(&out);
    if !pruned.deleted.is_empty() {
        part.changes.push(format!(
            "removed {} build cache entr{} ({})",
            pruned.deleted.len(),
            if pruned.deleted.len() == 1 {
                "y"
            } else {
                "ies"
            },
            human_bytes(pruned.reclaimed)
        ));
    }
    part.removed = !pruned.deleted.is_empty();
    part.details
        .insert("removed".into(), json!(pruned.deleted.len()));
    part.details
        .insert("reclaimed_bytes".into(), json!(pruned.reclaimed));
    Ok(part)
}

fn volumes(host: &Host, options: &Options, cutoff: i64, _: &mut Inventory) -> Result<Part> {
    let listed = list_volumes(host)?;
    let stale = stale_volumes(&listed, cutoff);
    let mut part = Part::default();
    let named = listed.iter().filter(|v| !v.anonymous).count();
    if named > 0 {
        part.reason = Some(format!(
            "kept {named} named volume{} no container uses (remove them with docker volume rm)",
            if named == 1 { "" } else { "s" }
        ));
    }
    let mut removed = 0;
    for volume in stale {
        let what = format!(
            "volume {} (created {})",
            short(&volume.name),
            date(volume.created)
        );
        if options.dry_run {
            part.changes.push(format!("remove {what}"));
            removed += 1;
            continue;
        }
        // No --force: Docker refuses a volume a container started using since.
        let out = host.probe(Cmd::new("docker").args(["volume", "rm", volume.name.as_str()]))?;
        if out.success() {
            part.changes.push(format!("removed {what}"));
            removed += 1;
        } else {
            host.warn("volumes", &format!("kept {what}: {}", out.stderr.trim()));
        }
    }
    part.removed = removed > 0;
    let key = if options.dry_run {
        "removable"
    } else {
        "removed"
    };
    part.details.insert(key.into(), json!(removed));
    Ok(part)
}

/// What a `docker … prune` printed: the ids it deleted and its total.
#[derive(Debug, Default, PartialEq, Eq)]
struct Pruned {
    deleted: Vec<String>,
    reclaimed: u64,
}

/// Reads `docker container|image|builder prune` output: a `Deleted …:`
/// header, one id per line (`deleted: sha256:…` for images, `untagged:`
/// lines skipped), then `Total reclaimed space: 1.2MB`.
fn parse_prune(out: &str) -> Pruned {
    let mut pruned = Pruned::default();
    let mut in_list = false;
    for line in out.lines().map(str::trim) {
        if let Some(total) = line.strip_prefix("Total reclaimed space:") {
            pruned.reclaimed = parse_size(total.trim()).unwrap_or(0);
            in_list = false;
        } else if line.starts_with("Deleted ") && line.ends_with(':') {
            in_list = true;
        } else if line.is_empty() {
            in_list = false;
        } else if in_list {
            if let Some(id) = line.strip_prefix("deleted: ") {
                pruned.deleted.push(id.to_string());
            } else if !line.starts_with("untagged: ") {
                pruned.deleted.push(line.to_string());
            }
        }
    }
    pruned
}

/// A size as Docker prints it (go-units `HumanSize`: powers of 1000,
/// `1.5kB`, `12.3MB`, `0B`), in bytes.
fn parse_size(text: &str) -> Option<u64> {
    let split = text.find(|c: char| c.is_ascii_alphabetic())?;
    let (number, unit) = text.split_at(split);
    let number: f64 = number.trim().parse().ok()?;
    let factor = match unit.trim() {
        "B" => 1e0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "TB" => 1e12,
        "PB" => 1e15,
        _ => return None,
    };
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    Some((number * factor).round() as u64)
}

/// Bytes for people, as Docker prints them (powers of 1000).
fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes}B")
    } else {
        format!("{value:.1}{}", UNITS[unit])
    }
}

/// The first 12 hex digits of an id, as `docker ps` shows it.
fn short(id: &str) -> String {
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    hex.chars().take(12).collect()
}

/// A Unix time as an ISO date (UTC).
fn date(unix: i64) -> String {
    let days = unix.div_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// An RFC 3339 time as Docker prints it (`2020-01-02T03:04:05.123456789Z`,
/// `2026-11-28T17:30:00+01:00`), in seconds since the epoch.
fn parse_time(text: &str) -> Option<i64> {
    let text = text.trim();
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let mut rest = &text[19..];
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        rest = &fraction[digits..];
    }
    let offset = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The inverse of [`days_from_civil`].
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (
        if m <= 2 {
            yoe + era * 400 + 1
        } else {
            yoe + era * 400
        },
        m,
        d,
    )
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::host::command::{Output, Runner};
    use crate::report::Format;
    use crate::testing::{FakeHost, Machine};

    const ROOT: &str = "/var/lib/docker";
    const HOUR: i64 = 3600;

    /// A Docker daemon and client stand-in: answers the commands prune
    /// runs from its state, with Docker's rules and output formats (as
    /// Debian 12's docker.io 20.10 prints them), and keeps the filesystem's
    /// use in the fake machine in step with what it removes.
    #[derive(Default)]
    struct Daemon {
        now: i64,
        down: bool,
        containers: Vec<Container>,
        images: Vec<Image>,
        volumes: Vec<Volume>,
        /// Build cache entries: id, last used, size.
        cache: Vec<(String, i64, u64)>,
        /// Volumes a container started using after the listing.
        busy: Vec<String>,
        argv: Vec<Vec<String>>,
    }

    struct DockerRunner {
        daemon: Arc<Mutex<Daemon>>,
        machine: Arc<Mutex<Machine>>,
    }

    fn ok(stdout: String) -> Output {
        Output {
            code: Some(0),
            stdout,
            ..Output::default()
        }
    }

    fn rfc3339(unix: i64) -> String {
        let (y, m, d) = civil_from_days(unix.div_euclid(86_400));
        let s = unix.rem_euclid(86_400);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.123456789Z",
            s / 3600,
            s / 60 % 60,
            s % 60
        )
    }

    impl Runner for DockerRunner {
        fn run(&self, cmd: &Cmd) -> std::io::Result<Output> {
            let mut d = self.daemon.lock().expect("daemon");
            d.argv.push(cmd.argv.clone());
            let argv: Vec<&str> = cmd.argv.iter().map(String::as_str).collect();
            if d.down {
                return Ok(Output {
                    code: Some(1),
                    stderr: "Cannot connect to the Docker daemon at unix:///var/run/docker.sock. Is the docker daemon running?\n".into(),
                    ..Output::default()
                });
            }
            let until = |arg: &str| -> i64 {
                let secs: i64 = arg
                    .strip_prefix("until=")
                    .and_then(|s| s.strip_suffix('s'))
                    .and_then(|s| s.parse().ok())
                    .expect("until=Ns");
                d.now - secs
            };
            let mut freed = 0;
            let out = match argv.as_slice() {
                ["docker", "info", "--format", "{{.DockerRootDir}}"] => ok(format!("{ROOT}\n")),
                [
                    "docker",
                    "container",
                    "ls",
                    "--quiet",
                    "--all",
                    "--no-trunc",
                ] => ok(d.containers.iter().map(|c| format!("{}\n", c.id)).collect()),
                ["docker", "container", "inspect", "--format", _, ids @ ..] => ok(ids
                    .iter()
                    .filter_map(|id| d.containers.iter().find(|c| c.id == *id))
                    .map(|c| {
                        format!(
                            "{}\t/{}\t{}\t{}\t{}\n",
                            c.id,
                            c.name,
                            rfc3339(c.created),
                            c.running,
                            c.image_id
                        )
                    })
                    .collect()),
                // One line per tag, as `docker image ls --quiet` prints.
                ["docker", "image", "ls", "--quiet", "--no-trunc"] => ok(d
                    .images
                    .iter()
                    .flat_map(|i| vec![format!("{}\n", i.id); i.tags.len().max(1)])
                    .collect()),
                ["docker", "image", "inspect", "--format", _, ids @ ..] => ok(ids
                    .iter()
                    .filter_map(|id| d.images.iter().find(|i| i.id == *id))
                    .map(|i| {
                        format!(
                            "{}\t{}\t{}\t{}\n",
                            i.id,
                            rfc3339(i.created),
                            i.size,
                            serde_json::to_string(&i.tags).expect("json")
                        )
                    })
                    .collect()),
                [
                    "docker",
                    "volume",
                    "ls",
                    "--quiet",
                    "--filter",
                    "dangling=true",
                ] => ok(d.volumes.iter().map(|v| format!("{}\n", v.name)).collect()),
                ["docker", "volume", "inspect", "--format", _, names @ ..] => ok(names
                    .iter()
                    .filter_map(|n| d.volumes.iter().find(|v| v.name == *n))
                    .map(|v| {
                        format!(
                            "{}\t{}\tnull\n",
                            v.name,
                            rfc3339(v.created).replace(".123456789", "")
                        )
                    })
                    .collect()),
                ["docker", "system", "df", "--format", _] => ok(format!(
                    "Images\t{}\t0B (0%)\nContainers\t{}\t0B\nLocal Volumes\t{}\t0B\nBuild Cache\t{}\t{}B\n",
                    d.images.len(),
                    d.containers.len(),
                    d.volumes.len(),
                    d.cache.len(),
                    d.cache.iter().map(|c| c.2).sum::<u64>()
                )),
                [
                    "docker",
                    "container",
                    "prune",
                    "--force",
                    "--filter",
                    filter,
                ] => {
                    let cutoff = until(filter);
                    let (gone, kept): (Vec<Container>, Vec<Container>) = d
                        .containers
                        .drain(..)
                        .partition(|c| !c.running && c.created < cutoff);
                    d.containers = kept;
                    let mut text = String::new();
                    if !gone.is_empty() {
                        text.push_str("Deleted Containers:\n");
                        for c in &gone {
                            text.push_str(&format!("{}\n", c.id));
                        }
                        text.push('\n');
                    }
                    text.push_str("Total reclaimed space: 0B\n");
                    ok(text)
                }
                [
                    "docker",
                    "image",
                    "prune",
                    "--all",
                    "--force",
                    "--filter",
                    filter,
                ] => {
                    let cutoff = until(filter);
                    let used: Vec<String> =
                        d.containers.iter().map(|c| c.image_id.clone()).collect();
                    let (gone, kept): (Vec<Image>, Vec<Image>) = d
                        .images
                        .drain(..)
                        .partition(|i| i.created < cutoff && !used.contains(&i.id));
                    d.images = kept;
                    let mut text = String::new();
                    if !gone.is_empty() {
                        text.push_str("Deleted Images:\n");
                        for i in &gone {
                            for tag in &i.tags {
                                text.push_str(&format!("untagged: {tag}\n"));
                            }
                            text.push_str(&format!("deleted: {}\n", i.id));
                            // Its layer, an id of its own.
                            text.push_str(&format!("deleted: sha256:{}\n", "f".repeat(64)));
                            freed += i.size;
                        }
                        text.push('\n');
                    }
                    text.push_str(&format!("Total reclaimed space: {}\n", human_bytes(freed)));
                    ok(text)
                }
                ["docker", "builder", "prune", "--force", "--filter", filter] => {
                    let cutoff = until(filter);
                    let (gone, kept): (Vec<_>, Vec<_>) =
                        d.cache.drain(..).partition(|c| c.1 < cutoff);
                    d.cache = kept;
                    let mut text = String::new();
                    if !gone.is_empty() {
                        text.push_str("Deleted build cache objects:\n");
                        for c in &gone {
                            text.push_str(&format!("{}\n", c.0));
                            freed += c.2;
                        }
                        text.push('\n');
                    }
                    text.push_str(&format!("Total reclaimed space: {}\n", human_bytes(freed)));
                    ok(text)
                }
                ["docker", "volume", "rm", name] => {
                    if d.busy.iter().any(|b| b == name) {
                        Output {
                            code: Some(1),
                            stderr: format!(
                                "Error response from daemon: remove {name}: volume is in use - [0123]\n"
                            ),
                            ..Output::default()
                        }
                    } else {
                        d.volumes.retain(|v| v.name != *name);
                        ok(format!("{name}\n"))
                    }
                }
                _ => Output {
                    code: Some(1),
                    stderr: format!("docker stand-in: no answer for {}", cmd.display()),
                    ..Output::default()
                },
            };
            if freed > 0 {
                let mut machine = self.machine.lock().expect("machine");
                if let Some(disk) = machine.disks.get_mut(std::path::Path::new(ROOT)) {
                    disk.used -= freed;
                    disk.available += freed;
                }
            }
            Ok(out)
        }
    }

    fn id(c: char) -> String {
        std::iter::repeat_n(c, 64).collect()
    }

    fn image(c: char, tag: &str, created: i64, size: u64) -> Image {
        Image {
            id: format!("sha256:{}", id(c)),
            tags: if tag.is_empty() {
                Vec::new()
            } else {
                vec![tag.to_string()]
            },
            created,
            size,
        }
    }

    fn container(c: char, name: &str, created: i64, running: bool, image: &Image) -> Container {
        Container {
            id: id(c),
            name: name.to_string(),
            created,
            running,
            image_id: image.id.clone(),
        }
    }

    /// A CI host three days and more into its life: old and new of each kind.
    fn busy_host(fake: &FakeHost, used_percent: u64) -> Arc<Mutex<Daemon>> {
        let now = i64::try_from(fake.machine().unix_time).expect("time");
        let old = now - 100 * HOUR;
        let new = now - HOUR;
        let old_unused = image('a', "old:1", old, 7_000_000);
        let new_unused = image('b', "new:1", new, 5_000_000);
        let old_running = image('c', "service:1", old, 3_000_000);
        let old_by_new_stopped = image('d', "", old, 2_000_000);
        let old_by_old_stopped = image('e', "job:1", old, 1_000_000);
        let daemon = Daemon {
            now,
            containers: vec![
                container('1', "db", old, true, &old_running),
                container('2', "job-recent", new, false, &old_by_new_stopped),
                container('3', "job-old", old, false, &old_by_old_stopped),
            ],
            images: vec![
                old_unused,
                new_unused,
                old_running,
                old_by_new_stopped,
                old_by_old_stopped,
            ],
            volumes: vec![
                Volume {
                    name: id('7'),
                    created: old,
                    anonymous: true,
                },
                Volume {
                    name: id('8'),
                    created: new,
                    anonymous: true,
                },
                Volume {
                    name: "cache".into(),
                    created: old,
                    anonymous: false,
                },
            ],
            cache: vec![
                ("oldcache1".into(), old, 400_000),
                ("newcache1".into(), new, 300_000),
            ],
            ..Daemon::default()
        };
        fake.machine().disks.insert(
            ROOT.into(),
            DiskUsage {
                used: used_percent * 1_000_000,
                available: (100 - used_percent) * 1_000_000,
            },
        );
        Arc::new(Mutex::new(daemon))
    }

    fn options(dry_run: bool, force: bool) -> Options {
        Options {
            dry_run,
            force,
            above_percent: 80,
            older_than: "72h".into(),
            older_than_secs: 72 * 3600,
        }
    }

    fn prune(fake: &FakeHost, daemon: &Arc<Mutex<Daemon>>, options: &Options) -> (Counts, String) {
        let reporter = fake.reporter(Format::Json);
        let runner = DockerRunner {
            daemon: daemon.clone(),
            machine: fake.machine.clone(),
        };
        let host = fake.host_with(Box::new(runner), reporter.clone());
        let counts = run(&host, &reporter, options).expect("prune");
        (counts, reporter.captured())
    }

    fn event(out: &str, id: &str) -> serde_json::Value {
        out.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
            .find(|e| e["id"] == id && e["event"] != "step_started" && e["event"] != "warning")
            .unwrap_or_else(|| panic!("no {id} in\n{out}"))
    }

    fn removing(d: &Daemon) -> Vec<String> {
        d.argv
            .iter()
            .filter(|a| a.iter().any(|w| w == "prune" || w == "rm"))
            .map(|a| a.join(" "))
            .collect()
    }

    #[test]
    fn below_the_threshold_nothing_is_removed() {
        let fake = FakeHost::debian12();
        let daemon = busy_host(&fake, 80);
        let (counts, out) = prune(&fake, &daemon, &options(false, false));
        assert_eq!(
            (counts.changed, counts.failed, counts.skipped),
            (0, 0, 4),
            "{out}"
        );
        let disk = event(&out, "disk");
        assert_eq!(disk["details"]["used_percent"], 80, "{disk}");
        assert!(
            disk["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("not more than 80%"),
            "{disk}"
        );
        assert!(removing(&daemon.lock().expect("d")).is_empty());
    }

    #[test]
    fn above_the_threshold_the_old_goes_and_the_recent_and_used_stay() {
        let fake = FakeHost::debian12();
        let daemon = busy_host(&fake, 81);
        let (counts, out) = prune(&fake, &daemon, &options(false, false));
        assert_eq!((counts.changed, counts.failed), (4, 0), "{out}");
        let d = daemon.lock().expect("d");
        let names = |v: Vec<String>| v.join(",");
        assert_eq!(
            names(d.containers.iter().map(|c| c.name.clone()).collect()),
            "db,job-recent"
        );
        assert_eq!(
            names(d.images.iter().map(|i| short(&i.id)).collect()),
            format!("{},{},{}", &id('b')[..12], &id('c')[..12], &id('d')[..12])
        );
        assert_eq!(
            names(d.volumes.iter().map(|v| v.name.clone()).collect()),
            format!("{},cache", id('8'))
        );
        assert_eq!(d.cache.len(), 1);
        assert_eq!(d.cache[0].0, "newcache1");
        // Docker's own rules with the age as its `until` filter; volumes
        // one by one, never forced.
        assert_eq!(
            removing(&d),
            vec![
                "docker container prune --force --filter until=259200s".to_string(),
                "docker image prune --all --force --filter until=259200s".into(),
                "docker builder prune --force --filter until=259200s".into(),
                format!("docker volume rm {}", id('7')),
            ]
        );
        drop(d);
        let images = event(&out, "images");
        let changes = images["changes"].to_string();
        assert!(changes.contains("removed image old:1"), "{changes}");
        assert!(changes.contains("removed image job:1"), "{changes}");
        assert!(
            changes.contains("2 parent or intermediate images"),
            "{changes}"
        );
        assert_eq!(images["details"]["removed"], 4, "{images}");
        assert_eq!(images["details"]["reclaimed_bytes"], 8_000_000, "{images}");
        let containers = event(&out, "containers");
        assert!(
            containers["changes"]
                .to_string()
                .contains("removed container job-old")
        );
        let cache = event(&out, "build-cache");
        assert_eq!(cache["details"]["removed"], 1, "{cache}");
        let volumes = event(&out, "volumes");
        assert!(
            volumes["reason"]
                .as_str()
                .unwrap_or_default()
                .contains("kept 1 named volume"),
            "{volumes}"
        );
        let space = event(&out, "space");
        assert_eq!(space["details"]["freed_bytes"], 8_400_000, "{space}");
        assert_eq!(space["details"]["used_percent_after"], 73, "{space}");

        // Below the threshold now: a second run removes nothing.
        let (again, out) = prune(&fake, &daemon, &options(false, false));
        assert_eq!((again.changed, again.failed), (0, 0), "{out}");
    }

    #[test]
    fn a_dry_run_lists_what_a_run_removes_and_removes_nothing() {
        let fake = FakeHost::debian12();
        let daemon = busy_host(&fake, 90);
        let (counts, out) = prune(&fake, &daemon, &options(true, false));
        assert_eq!((counts.pending, counts.failed), (4, 0), "{out}");
        assert!(removing(&daemon.lock().expect("d")).is_empty(), "{out}");
        let listed = |id: &str| event(&out, id)["changes"].to_string();
        let containers = listed("containers");
        assert!(
            containers.contains("job-old") && !containers.contains("job-recent"),
            "{containers}"
        );
        // The image of a container the prune removes goes too; the image
        // of a recent stopped container and of a running one stay.
        let images = listed("images");
        assert!(
            images.contains("old:1") && images.contains("job:1"),
            "{images}"
        );
        assert!(
            !images.contains("new:1") && !images.contains("service:1"),
            "{images}"
        );
        assert!(!images.contains(&id('d')[..12]), "{images}");
        let volumes = listed("volumes");
        assert!(
            volumes.contains(&id('7')[..12]) && !volumes.contains(&id('8')[..12]),
            "{volumes}"
        );
        assert!(listed("build-cache").contains("2 entries"), "{out}");
        assert!(!out.contains("\"space\""), "{out}");

        // The run removes exactly what the dry run listed.
        let (_, applied) = prune(&fake, &daemon, &options(false, false));
        for part in ["containers", "volumes"] {
            let planned = event(&out, part)["changes"]
                .to_string()
                .replace("remove ", "");
            let done = event(&applied, part)["changes"]
                .to_string()
                .replace("removed ", "");
            assert_eq!(planned, done, "{part}");
        }
    }

    #[test]
    fn force_prunes_below_the_threshold() {
        let fake = FakeHost::debian12();
        let daemon = busy_host(&fake, 10);
        let (counts, out) = prune(&fake, &daemon, &options(false, true));
        assert_eq!((counts.changed, counts.failed), (4, 0), "{out}");
        assert!(
            event(&out, "disk")["reason"]
                .to_string()
                .contains("--force"),
            "{out}"
        );
    }

    #[test]
    fn a_volume_taken_into_use_meanwhile_is_kept_with_a_warning() {
        let fake = FakeHost::debian12();
        let daemon = busy_host(&fake, 95);
        daemon.lock().expect("d").busy.push(id('7'));
        let (counts, out) = prune(&fake, &daemon, &options(false, false));
        assert_eq!(counts.failed, 0, "{out}");
        assert!(out.contains("volume is in use"), "{out}");
        assert_eq!(daemon.lock().expect("d").volumes.len(), 3);
    }

    #[test]
    fn a_daemon_that_does_not_answer_fails_before_anything_is_removed() {
        let fake = FakeHost::debian12();
        let daemon = busy_host(&fake, 95);
        daemon.lock().expect("d").down = true;
        let (counts, out) = prune(&fake, &daemon, &options(false, true));
        assert_eq!((counts.failed, counts.skipped), (1, 4), "{out}");
        assert!(
            event(&out, "disk")["reason"]
                .to_string()
                .contains("Is the docker daemon running?"),
            "{out}"
        );
    }

    #[test]
    fn an_offline_root_is_refused() {
        let fake = FakeHost::debian12();
        let reporter = fake.reporter(Format::Json);
        let host = fake.offline_host(reporter.clone());
        let err = run(&host, &reporter, &options(true, false)).expect_err("refused");
        assert!(err.to_string().contains("not on a --root tree"), "{err}");
    }

    #[test]
    fn prune_output_as_docker_20_10_prints_it() {
        let containers = "Deleted Containers:\n59d1200538753dbe3aa9dafc84a4473b22846116dc0e04837b942a3a91973aca\n8662e7977c241013f699bfc91e5b605885416cf5c3abe0acc760c4ad53782ac9\n\nTotal reclaimed space: 0B\n";
        let p = parse_prune(containers);
        assert_eq!(p.deleted.len(), 2);
        assert_eq!(p.reclaimed, 0);
        let images = "Deleted Images:\nuntagged: inuse:1\ndeleted: sha256:5b69550ed66f56c3dd47d09b76eadae3b5ebe9e256d1f212e1897f834640aeb0\ndeleted: sha256:7875b4d262e52dff6346276ccbe12f46646ae1e41104efb4f3d16f0e7da47a9f\n\nTotal reclaimed space: 14B\n";
        let p = parse_prune(images);
        assert_eq!(
            p.deleted,
            vec![
                "sha256:5b69550ed66f56c3dd47d09b76eadae3b5ebe9e256d1f212e1897f834640aeb0",
                "sha256:7875b4d262e52dff6346276ccbe12f46646ae1e41104efb4f3d16f0e7da47a9f"
            ]
        );
        assert_eq!(p.reclaimed, 14);
        let cache = "Deleted build cache objects:\nua39e4u4wzcd340zz07cf0qcr\n\nTotal reclaimed space: 1.5MB\n";
        let p = parse_prune(cache);
        assert_eq!(p.deleted, vec!["ua39e4u4wzcd340zz07cf0qcr"]);
        assert_eq!(p.reclaimed, 1_500_000);
        assert_eq!(
            parse_prune("Total reclaimed space: 0B\n"),
            Pruned::default()
        );
        assert_eq!(parse_prune(""), Pruned::default());
    }

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("0B", Some(0)),
            ("14B", Some(14)),
            ("1.5kB", Some(1500)),
            ("12.34MB", Some(12_340_000)),
            ("1.024GB", Some(1_024_000_000)),
            ("2TB", Some(2_000_000_000_000)),
            ("", None),
            ("MB", None),
            ("1.5XB", None),
            ("-1MB", None),
            ("NaNMB", None),
        ] {
            assert_eq!(parse_size(text), bytes, "{text:?}");
        }
        assert_eq!(human_bytes(0), "0B");
        assert_eq!(human_bytes(999), "999B");
        assert_eq!(human_bytes(8_400_000), "8.4MB");
        assert_eq!(human_bytes(u64::MAX), "18446.7PB");
    }

    #[test]
    fn times() {
        for (text, unix) in [
            ("1970-01-01T00:00:00Z", Some(0)),
            ("2020-01-02T03:04:05Z", Some(1_577_934_245)),
            ("2026-11-28T17:30:00.291067485Z", Some(1_795_887_000)),
            ("2026-11-28T18:30:00+01:00", Some(1_795_887_000)),
            ("2026-11-28T16:00:00-01:30", Some(1_795_887_000)),
            ("2000-02-29T00:00:00Z", Some(951_782_400)),
            ("1969-12-31T23:59:59Z", Some(-1)),
            ("0001-01-01T00:00:00Z", Some(-62_135_596_800)),
            ("", None),
            ("2020-01-02", None),
            ("2020-13-02T03:04:05Z", None),
            ("2020-01-02T03:04:05", None),
            ("2020-01-02T03:04:05.Z", None),
            ("2020-01-02T03:04:05+0100", None),
            ("2020-01-02 03:04:05 +0000 UTC", None),
            ("2020-01-02T0x:04:05Z", None),
            ("２020-01-02T03:04:05Z", None),
        ] {
            assert_eq!(parse_time(text), unix, "{text:?}");
        }
        assert_eq!(date(1_577_934_245), "2020-01-02");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(-1), "1969-12-31");
    }

    #[test]
    fn inspect_lines() {
        let c = parse_container("59d1\t/job\t2026-11-28T17:30:00.291067485Z\tfalse\tsha256:5b69")
            .expect("container");
        assert_eq!((c.name.as_str(), c.running), ("job", false));
        assert!(parse_container("59d1\t/job\tyesterday\tfalse\tsha256:5b69").is_err());
        assert!(parse_container("59d1\t/job").is_err());
        let i = parse_image("sha256:5962\t2020-01-02T03:04:05Z\t7\t[\"old:1\",\"old:latest\"]")
            .expect("image");
        assert_eq!(i.tags, vec!["old:1", "old:latest"]);
        let i = parse_image("sha256:5962\t2020-01-02T03:04:05Z\t7\tnull").expect("untagged");
        assert!(i.tags.is_empty());
        assert!(parse_image("sha256:5962\t2020-01-02T03:04:05Z\tbig\t[]").is_err());
        let hex = "2a5501824c6f90d9877bbfc19bbca20bcec938da18d4cfbd04327ccb697c63db";
        let v = parse_volume(&format!("{hex}\t2026-11-28T17:30:05Z\tnull")).expect("volume");
        assert!(v.anonymous);
        let v = parse_volume("named1\t2026-11-28T17:30:00Z\t{}").expect("named");
        assert!(!v.anonymous);
        let v = parse_volume("x\t2026-11-28T17:30:00Z\t{\"com.docker.volume.anonymous\":\"\"}")
            .expect("labelled");
        assert!(v.anonymous);
        assert!(parse_volume("x\t2026\tnull").is_err());
    }
}
