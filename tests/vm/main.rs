//! Tier 3: a QEMU virtual machine booted with cloud-init, and the Vagrantfile.
//!
//! `cloud_init`: a Debian image (tests/vm/build-image.sh, cached) boots under
//! QEMU's software emulation with a NoCloud seed holding exactly what
//! `runner-provision cloud-init` printed; the machine provisions itself, powers
//! itself off, and is checked from outside through a results disk. A second
//! boot of the same disk must change nothing.
//!
//! `vagrantfile`: `vagrant validate` of vagrant/Vagrantfile, and what its
//! provisioners would run.
//!
//! Needs root, QEMU, cloud-localds and debootstrap (see
//! tests/vm/install-prerequisites.sh); without them each test prints
//! `skipped: <reason>` and passes, unless RUNNER_PROVISION_REQUIRE_VM=1.

#[macro_use]
#[path = "../support/test_profile.rs"]
mod test_profile;
mod cloud_init;
mod prerequisites;
mod qemu;
mod secret;
#[path = "../support/stand_in.rs"]
mod stand_in;
mod vagrantfile;
