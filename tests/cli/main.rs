//! Tier 2: the binary under a fake root.
