//! The image, the disks and one boot of the virtual machine.
//!
//! Disks are found in the guest by label or serial, never by order:
//! the root file system is LABEL=root, the payload LABEL=rp-payload (mounted
//! read-only at /mnt/payload), the results disk has serial rp-results, the
//! NoCloud seed is LABEL=cidata.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

/// Where build-image.sh keeps its images (shared with the other tiers' caches).
pub const CACHE_ROOT: &str = "/var/cache/runner-provision-tests";

/// A built image: raw root disk, kernel, initramfs and the tree they came from.
pub struct Image {
    pub dir: PathBuf,
}

impl Image {
    /// Builds the image or reuses the cached one; build output goes to stderr.
    pub fn get(repo: &Path) -> Result<Image> {
        let script = repo.join("tests/vm/build-image.sh");
        let output = Command::new(&script)
            .arg(CACHE_ROOT)
            .stderr(Stdio::inherit())
            .output()
            .with_context(|| format!("running {}", script.display()))?;
        ensure!(
            output.status.success(),
            "{} failed ({})",
            script.display(),
            output.status
        );
        let dir = PathBuf::from(String::from_utf8(output.stdout)?.trim());
        ensure!(
            dir.join("ready").is_file(),
            "{} is not ready",
            dir.display()
        );
        Ok(Image { dir })
    }

    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// A copy-on-write overlay of the cached disk, so the cache stays clean.
    pub fn overlay(&self, path: &Path) -> Result<()> {
        run(Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2", "-F", "raw", "-b"])
            .arg(self.dir.join("disk.img"))
            .arg(path))
    }
}

/// One boot: what to attach and how long the machine may run.
pub struct Boot<'a> {
    pub image: &'a Image,
    pub disk: &'a Path,
    pub payload: &'a Path,
    pub seed: &'a Path,
    /// Created empty here; the guest writes a tar archive to it at shutdown.
    pub results: PathBuf,
    /// Everything the guest printed on its serial console.
    pub serial: PathBuf,
    /// Extra kernel command line words (e.g. `rp.poweroff`).
    pub kernel_args: &'a str,
    pub timeout: Duration,
}

impl Boot<'_> {
    /// Boots and waits until the guest powers itself off; returns how long it ran.
    pub fn run(&self) -> Result<Duration> {
        create_sparse(&self.results, 256 << 20)?;
        let drive = |path: &Path, extra: &str| -> std::ffi::OsString {
            let mut arg = std::ffi::OsString::from("file=");
            arg.push(path);
            arg.push(extra);
            arg
        };
        let mut serial = std::ffi::OsString::from("file:");
        serial.push(&self.serial);
        let mut command = Command::new("qemu-system-x86_64");
        command
            .args([
                "-accel",
                "tcg,thread=multi",
                "-cpu",
                "max",
                "-smp",
                "2",
                "-m",
                "2048",
            ])
            .args(["-display", "none", "-monitor", "none", "-no-reboot"])
            .arg("-serial")
            .arg(serial)
            .arg("-kernel")
            .arg(self.image.dir.join("vmlinuz"))
            .arg("-initrd")
            .arg(self.image.dir.join("initrd.img"))
            .arg("-append")
            .arg(format!(
                "root=LABEL=root rw console=ttyS0 {}",
                self.kernel_args
            ))
            .arg("-drive")
            .arg(drive(self.disk, ",if=virtio,format=qcow2"))
            .arg("-drive")
            .arg(drive(self.payload, ",if=virtio,format=raw,readonly=on"))
            .arg("-drive")
            .arg(drive(self.seed, ",if=virtio,format=raw,readonly=on"))
            .arg("-drive")
            .arg(drive(&self.results, ",if=none,format=raw,id=results"))
            .args(["-device", "virtio-blk-pci,drive=results,serial=rp-results"])
            .args([
                "-netdev",
                "user,id=n0",
                "-device",
                "virtio-net-pci,netdev=n0",
            ])
            .args(["-device", "virtio-rng-pci"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = command.spawn().context("starting qemu-system-x86_64")?;
        let status = loop {
            if let Some(status) = child.try_wait()? {
                break status;
            }
            if started.elapsed() > self.timeout {
                // Our own child, by its id.
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "the guest did not power off within {:?}; its console ends with:\n{}",
                    self.timeout,
                    tail(&self.serial, 40)
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        };
        let mut stderr = String::new();
        if let Some(mut pipe) = child.stderr.take() {
            use std::io::Read;
            let _ = pipe.read_to_string(&mut stderr);
        }
        ensure!(
            status.success(),
            "qemu-system-x86_64 exited with {status}: {stderr}"
        );
        Ok(started.elapsed())
    }

    /// Unpacks what the guest wrote to the results disk into `dir`.
    pub fn results_into(&self, dir: &Path) -> Result<Results> {
        fs::create_dir_all(dir)?;
        run(Command::new("tar")
            .arg("-xf")
            .arg(&self.results)
            .arg("-C")
            .arg(dir))
        .with_context(|| {
            format!(
                "no results from the guest (rp-results.service did not run?); its console ends with:\n{}",
                tail(&self.serial, 40)
            )
        })?;
        ensure!(
            dir.join("collected-at").is_file(),
            "the results disk holds no complete collection"
        );
        Ok(Results {
            dir: dir.to_path_buf(),
        })
    }
}

/// What rp-collect-results (baked into the image) gathered in the guest.
pub struct Results {
    pub dir: PathBuf,
}

impl Results {
    /// The output (stdout and stderr) of a command the collector ran.
    pub fn out(&self, name: &str) -> String {
        fs::read_to_string(self.dir.join(format!("{name}.out")))
            .unwrap_or_else(|e| panic!("results have no {name}.out: {e}"))
    }

    /// The exit status of a command the collector ran.
    pub fn rc(&self, name: &str) -> i32 {
        let text = fs::read_to_string(self.dir.join(format!("{name}.rc")))
            .unwrap_or_else(|e| panic!("results have no {name}.rc: {e}"));
        text.trim()
            .parse()
            .unwrap_or_else(|e| panic!("{name}.rc is not a number ({text:?}): {e}"))
    }

    /// A file copied from the guest, by its path there.
    pub fn copied(&self, guest_path: &str) -> String {
        let path = self.copies().join(guest_path.trim_start_matches('/'));
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{} from the guest: {e}", guest_path))
    }

    /// The copies of /var/log, /var/lib/cloud and /run/cloud-init.
    pub fn copies(&self) -> PathBuf {
        self.dir.join("copies")
    }
}

/// A file of `size` bytes of zeros that takes no space.
pub fn create_sparse(path: &Path, size: u64) -> Result<()> {
    let file = fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    file.set_len(size)?;
    Ok(())
}

/// An ext4 image labelled `label` holding the tree at `dir`.
pub fn ext4_from_dir(path: &Path, label: &str, dir: &Path, size: u64) -> Result<()> {
    create_sparse(path, size)?;
    run(Command::new("mkfs.ext4")
        .args(["-q", "-F", "-L", label, "-d"])
        .arg(dir)
        .arg(path))
}

/// A NoCloud seed (LABEL=cidata) holding `user_data` and `meta_data`.
pub fn nocloud_seed(path: &Path, user_data: &Path, meta_data: &Path) -> Result<()> {
    run(Command::new("cloud-localds")
        .arg(path)
        .arg(user_data)
        .arg(meta_data))
}

/// Runs a command to completion; an error carries its argv, status and stderr.
pub fn run(command: &mut Command) -> Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("starting {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} exited with {}: {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The last `lines` lines of a text file, or a note that it cannot be read.
pub fn tail(path: &Path, lines: usize) -> String {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}
