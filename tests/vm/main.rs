//! Tier 3: a QEMU virtual machine booted with cloud-init.
