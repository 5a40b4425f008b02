//! Tier 3: real hosts in systemd-nspawn containers.
