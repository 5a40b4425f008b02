//! What a step (or the package manager for it) would change, in the
//! operator's words; a file's change carries its unified diff.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub summary: String,
    pub diff: Option<String>,
}

impl Change {
    pub fn new(summary: impl Into<String>) -> Self {
        Self {
            summary: summary.into(),
            diff: None,
        }
    }

    pub fn file(summary: impl Into<String>, diff: String) -> Self {
        Self {
            summary: summary.into(),
            diff: (!diff.is_empty()).then_some(diff),
        }
    }
}
