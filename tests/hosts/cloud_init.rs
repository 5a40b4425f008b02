//! 17: the cloud-init per-boot script run by hand on a real host, as
//! cloud-init would run it: the user data's files written where
//! `write_files` puts them, the binary downloaded from an HTTP server on the
//! container's own loopback (its own network namespace; no other address),
//! a first boot that fails before registering, and a second boot of the same
//! disk (fresh /run) that registers with the token kept for it.

use std::io::Read as _;
use std::process::Command;

use crate::LEGACY_TOKEN;
use crate::checks;
use crate::harness::{self, Container, PROFILE, STAND_IN_LOG};
use crate::scenarios::WallTime;

const SCRIPT: &str = "/var/lib/cloud/scripts/per-boot/runner-provision";
const RUN_TOKEN: &str = "/run/runner-provision/token";
const KEPT_TOKEN: &str = "/var/lib/runner-provision/token";
const BINARY: &str = "/usr/local/bin/runner-provision";
const PORT: u16 = 8080;

/// A loopback HTTP server that answers 503 to its first `failures`
/// requests, then serves /srv/www; it starts listening after `delay` seconds
/// (connections before that are refused). Requests go to REQUESTS (not
/// /tmp: nspawn mounts a tmpfs there that this machine does not see).
const SERVER: &str = r#"
import http.server, os, sys, time
root, failures, port, delay = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
count = 0
class Handler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        global count
        count += 1
        with open("/var/lib/rp-test-requests", "a") as log:
            log.write("%d %s\n" % (count, self.path))
        if count <= failures:
            self.send_error(503)
            return
        super().do_GET()
    def log_message(self, *args):
        pass
time.sleep(delay)
os.chdir(root)
http.server.HTTPServer(("127.0.0.1", port), Handler).serve_forever()
"#;

const REQUESTS: &str = "/var/lib/rp-test-requests";

/// Starts the server on the container's loopback, ending the one started
/// before (by its pid).
fn start_server(host: &Container, dir: &str, failures: u32, delay: u32) {
    host.write("/srv/serve.py", SERVER);
    host.sh_ok(&format!(
        "if [ -f /srv/serve.pid ]; then kill $(cat /srv/serve.pid) 2>/dev/null; sleep 0.5; fi; rm -f {REQUESTS}"
    ));
    host.sh_ok(&format!(
        "setsid python3 /srv/serve.py {dir} {failures} {PORT} {delay} </dev/null >/var/log/rp-serve.log 2>&1 & echo $! >/srv/serve.pid"
    ));
}

fn requests(host: &Container) -> usize {
    std::fs::read_to_string(host.path(REQUESTS))
        .unwrap_or_default()
        .lines()
        .count()
}

/// The per-boot script, run as cloud-final runs it (root, no terminal).
fn run_script(host: &Container) -> harness::Run {
    let run = harness::Run::capture(
        host.command(&["sh", SCRIPT])
            .env("GITLAB_RUNNER_STAND_IN_LOG", STAND_IN_LOG),
    );
    eprintln!(
        "[per-boot] exit {} in {:.1}s",
        run.status,
        run.duration.as_secs_f64()
    );
    run
}

/// `runner-provision cloud-init` on this machine, as an operator runs it.
fn render(tier: &harness::Tier, host: &Container, sha256: &str) -> String {
    let out = Command::new(tier.tool_binary())
        .arg("--profile")
        .arg(host.path(PROFILE))
        .args([
            "cloud-init",
            "--binary-url",
            &format!("http://127.0.0.1:{PORT}/runner-provision"),
            "--binary-sha256",
            sha256,
            "--accept-docker-group-risk",
        ])
        .env("RUNNER_TOKEN", LEGACY_TOKEN)
        .output()
        .expect("runner-provision cloud-init");
    assert!(out.status.success(), "cloud-init render: {out:?}");
    String::from_utf8(out.stdout).expect("utf-8 user data")
}

/// What cloud-init does with the user data on an instance's first boot:
/// its `write_files` (parsed by PyYAML, cloud-init's loader, on this
/// machine) written with their modes, and its copies of the user data
/// (gzipped, as Terraform sends it) under /var/lib/cloud.
fn first_boot_of_cloud_init(host: &Container, user_data: &str) {
    let parsed = Command::new("/usr/bin/python3")
        .args([
            "-c",
            "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(user_data.as_bytes())?;
            child.wait_with_output()
        })
        .expect("python3 with PyYAML (python3-yaml)");
    assert!(parsed.status.success(), "PyYAML: {parsed:?}");
    let doc: serde_json::Value = serde_json::from_slice(&parsed.stdout).expect("json");
    let files = doc["write_files"].as_array().expect("write_files");
    assert_eq!(files.len(), 3, "profile, token, script: {doc}");
    for file in files {
        let path = file["path"].as_str().expect("path");
        let mode =
            u32::from_str_radix(file["permissions"].as_str().expect("mode"), 8).expect("octal");
        write_inside(host, path, file["content"].as_str().expect("content"), mode);
    }
    let gz = {
        use std::io::Write as _;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(user_data.as_bytes()).expect("gzip");
        e.finish().expect("gzip")
    };
    let instance = host.path("/var/lib/cloud/instances/iid-rp-ci");
    std::fs::create_dir_all(&instance).expect("instance dir");
    std::fs::write(instance.join("user-data.txt"), &gz).expect("user-data.txt");
    std::fs::write(instance.join("cloud-config.txt"), user_data).expect("cloud-config.txt");
    host.sh_ok("chmod 0600 /var/lib/cloud/instances/iid-rp-ci/*; ln -sfn /var/lib/cloud/instances/iid-rp-ci /var/lib/cloud/instance");
}

/// Writes a file from inside the container (/run is the container's own
/// tmpfs, which this machine does not see).
fn write_inside(host: &Container, path: &str, content: &str, mode: u32) {
    use std::io::Write as _;
    let mut child = host
        .command(&[
            "sh",
            "-c",
            &format!(
                "umask 077; mkdir -p \"$(dirname {path})\" && cat >{path} && chmod {mode:o} {path}"
            ),
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("writing inside the container");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(content.as_bytes())
        .expect("write");
    assert!(child.wait().expect("wait").success(), "writing {path}");
}

/// The mode of a file, read inside the container.
fn mode_inside(host: &Container, path: &str) -> String {
    host.sh_ok(&format!("stat -c %a {path}")).trim().to_string()
}

/// Files under `dir` that hold the token, plain or gzipped.
fn token_holders(host: &Container, dir: &str) -> Vec<String> {
    let mut found = Vec::new();
    let listing = host.sh_ok(&format!("find {dir} -type f 2>/dev/null || true"));
    for path in listing.lines() {
        let bytes = std::fs::read(host.path(path)).unwrap_or_default();
        let mut expanded = Vec::new();
        let _ = flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut expanded);
        let holds = |b: &[u8]| {
            b.windows(LEGACY_TOKEN.len())
                .any(|w| w == LEGACY_TOKEN.as_bytes())
        };
        if holds(&bytes) || holds(&expanded) {
            found.push(path.to_string());
        }
    }
    found
}

pub fn per_boot_script() {
    let Some(tier) = harness::tier() else { return };
    let _time = WallTime::start("cloud_init_per_boot");
    let host = tier.boot("rp-ci");
    // The server's python3; curl comes in on the second boot, so the first
    // download takes the python3 path and the second curl's.
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3 >/dev/null");
    host.sh_ok("! command -v curl && ! command -v wget");
    host.sh_ok(&format!(
        "mkdir -p /srv/www && cp {} /srv/www/runner-provision",
        harness::TOOL
    ));
    let sha = host
        .sh_ok("sha256sum /srv/www/runner-provision | cut -c1-64")
        .trim()
        .to_string();

    // Render refuses what would fail at every boot, before printing anything.
    let bad = Command::new(tier.tool_binary())
        .args([
            "cloud-init",
            "--binary-url",
            "file:///srv/www/runner-provision",
            "--binary-sha256",
            &sha,
            "--accept-docker-group-risk",
        ])
        .output()
        .expect("render");
    assert_eq!(bad.status.code(), Some(1), "{bad:?}");
    assert!(
        bad.stdout.is_empty()
            && String::from_utf8_lossy(&bad.stderr).contains("http:// or https://"),
        "{bad:?}"
    );

    let user_data = render(&tier, &host, &sha);
    first_boot_of_cloud_init(&host, &user_data);
    assert_eq!(mode_inside(&host, RUN_TOKEN), "600");

    // A server that is down: a wrong file makes the boot fail clearly.
    host.sh_ok("mkdir -p /srv/wrong && echo not-the-binary > /srv/wrong/runner-provision");
    start_server(&host, "/srv/wrong", 0, 0);
    host.sh_ok("sleep 1");
    let wrong = run_script(&host);
    assert_eq!(wrong.status.code(), Some(1), "{}", wrong.transcript());
    assert!(
        wrong
            .transcript()
            .contains("is not the binary whose SHA-256 is"),
        "{}",
        wrong.transcript()
    );
    assert!(
        !host.path(BINARY).exists(),
        "a wrong download is never installed"
    );

    // Boot 1: the server starts 2 s late (connections refused) and then
    // answers 503 once; the python3 fetch retries with backoff and gets
    // it. The runner repository is unreachable, so apply fails before
    // registering: the token must be kept for the next boot.
    start_server(&host, "/srv/www", 1, 2);
    host.sh_ok("mkdir -p /tmp/empty && mount --bind /tmp/empty /srv/runner-repo");
    let boot1 = run_script(&host);
    assert_eq!(boot1.status.code(), Some(1), "{}", boot1.transcript());
    assert!(
        boot1.stderr.contains("attempt 1 of 6") && boot1.stderr.contains("503"),
        "{}",
        boot1.transcript()
    );
    assert!(requests(&host) >= 2, "retried after the 503");
    assert_eq!(
        host.sh_ok(&format!("sha256sum {BINARY} | cut -c1-64"))
            .trim(),
        sha
    );
    assert!(checks::registrations(&host).is_empty(), "not registered");
    assert!(
        boot1
            .transcript()
            .contains("is kept in /var/lib/runner-provision/token"),
        "{}",
        boot1.transcript()
    );
    assert_eq!(host.mode(KEPT_TOKEN), 0o600);
    assert_eq!(host.mode("/var/lib/runner-provision"), 0o700);
    host.sh_ok(&format!("test -f {RUN_TOKEN}")); // the token file stays
    assert!(!boot1.transcript().contains(LEGACY_TOKEN));

    // Boot 2: the same disk booted again (/run is empty, the repository is
    // back); curl now fetches, through two 503s, a binary to replace.
    host.sh_ok("sync");
    let second = tier.boot_from("rp-ci-2", &host.path("/"), |_| {});
    drop(host);
    let host = second;
    // A new boot has an empty /run.
    host.sh_ok(&format!("! test -e {RUN_TOKEN}"));
    host.sh_ok("DEBIAN_FRONTEND=noninteractive apt-get install -y -q curl >/dev/null");
    host.sh_ok(&format!("rm -f {BINARY}"));
    start_server(&host, "/srv/www", 2, 0);
    host.sh_ok("sleep 1");
    let boot2 = run_script(&host);
    assert_eq!(boot2.status.code(), Some(0), "{}", boot2.transcript());
    assert_eq!(requests(&host), 3, "curl retried the two 503s");
    assert_eq!(checks::registrations(&host).len(), 1, "registered once");
    assert!(!host.path(KEPT_TOKEN).exists(), "forgotten once registered");
    assert_eq!(token_holders(&host, "/var/lib/cloud"), Vec::<String>::new());
    assert_eq!(
        token_holders(&host, "/var/lib/runner-provision"),
        Vec::<String>::new()
    );
    assert!(!boot2.transcript().contains(LEGACY_TOKEN));

    // Boot 3 (same boot, the script again): no token anywhere, the runner
    // registered, nothing to do, exit 0.
    let boot3 = run_script(&host);
    assert_eq!(boot3.status.code(), Some(0), "{}", boot3.transcript());
    assert!(
        boot3.transcript().contains(" 0 changed,"),
        "{}",
        boot3.transcript()
    );
    assert_eq!(checks::registrations(&host).len(), 1);

    // A host whose runner is gone and that has no token ends in an error
    // (require_registration), not in "done".
    host.sh_ok("rm -f /etc/gitlab-runner/config.toml");
    let gone = run_script(&host);
    assert_eq!(gone.status.code(), Some(1), "{}", gone.transcript());
    assert!(
        gone.transcript().contains("registration is required"),
        "{}",
        gone.transcript()
    );
}
