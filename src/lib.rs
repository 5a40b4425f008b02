//! runner-provision: turn a Linux host into a GitLab Runner shell-executor
//! host that builds Docker images, idempotently. See the README for use;
//! DESIGN of the modules: `cli` parses, `steps` decide, `host` does every
//! I/O, `edit` transforms text without I/O, `report` prints.

mod change;
pub mod cli;
mod cloud_init;
mod edit;
mod error;
mod host;
mod profile;
mod prune;
mod receipt;
mod remove;
mod report;
mod secret;
mod steps;
#[cfg(test)]
mod testing;

pub use secret::Redactor;

use error::Error;

/// Which command is running the steps: the engine, the output and the steps'
/// own preflight all read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Converge: check, apply what is pending, check again.
    Apply,
    /// Read-only: what apply would change.
    Plan,
    /// Read-only: is the host healthy.
    Verify,
}

impl Mode {
    /// Plan for `--dry-run`, apply otherwise (remove and prune).
    pub fn dry_run(dry_run: bool) -> Mode {
        if dry_run { Mode::Plan } else { Mode::Apply }
    }

    /// The JSON event that ends a step in this mode: apply finishes steps,
    /// plan and verify check them.
    pub fn step_event(self) -> &'static str {
        if self == Mode::Apply {
            "step_finished"
        } else {
            "step_checked"
        }
    }
}
