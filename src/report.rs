//! Human and JSON Lines output. Every string passes through the redactor
//! before it is printed.
//!
//! Human output at a terminal shows an indicatif spinner per step; without a
//! terminal (cloud-init, CI) it prints one plain line per event, so logs such
//! as /var/log/cloud-init-output.log read top to bottom. `--output json`
//! prints one JSON object per line on stdout; its field names are stable and
//! documented in the README.

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value, json};

use crate::Mode;
use crate::secret::Redactor;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Lines for people: spinners at a terminal, plain lines elsewhere.
    Human,
    /// JSON Lines on stdout, one event per line.
    Json,
}

/// How a step ended (apply) or stands (plan, verify).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok,
    Changed,
    Pending,
    Skipped,
    Failed,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Changed => "changed",
            Status::Pending => "pending",
            Status::Skipped => "skipped",
            Status::Failed => "failed",
        }
    }
}

/// One step's outcome as reported.
#[derive(Clone, Debug)]
pub struct StepReport {
    pub id: &'static str,
    pub status: Status,
    pub changes: Vec<String>,
    /// Why it was skipped or failed, or the diagnosis.
    pub reason: Option<String>,
    /// Unified diffs of files (plan only).
    pub diffs: Vec<String>,
    pub duration: Duration,
}

#[derive(Default, Debug, Clone, Copy)]
pub struct Counts {
    pub ok: usize,
    pub changed: usize,
    pub pending: usize,
    pub skipped: usize,
    pub failed: usize,
}

impl Counts {
    pub fn add(&mut self, status: Status) {
        match status {
            Status::Ok => self.ok += 1,
            Status::Changed => self.changed += 1,
            Status::Pending => self.pending += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
        }
    }
}

pub struct Reporter {
    format: Format,
    terminal: bool,
    verbosity: i8,
    redactor: Redactor,
    spinner: Mutex<Option<ProgressBar>>,
    /// Facts the running step found (a build's driver and time, each
    /// runner's answer from GitLab), reported with its end.
    details: Mutex<serde_json::Map<String, Value>>,
    /// Where lines go when not to stdout (tests read them back).
    captured: Option<Mutex<String>>,
}

impl Reporter {
    /// `verbosity`: -1 quiet, 0 normal, 1+ verbose.
    pub fn new(format: Format, verbosity: i8, redactor: Redactor) -> Self {
        Self {
            format,
            terminal: std::io::stdout().is_terminal() && format == Format::Human,
            verbosity,
            redactor,
            spinner: Mutex::new(None),
            details: Mutex::default(),
            captured: None,
        }
    }

    /// A reporter that keeps every line instead of printing it.
    #[cfg(test)]
    pub fn capturing(format: Format, verbosity: i8, redactor: Redactor) -> Self {
        Self {
            terminal: false,
            captured: Some(Mutex::new(String::new())),
            ..Self::new(format, verbosity, redactor)
        }
    }

    /// Everything a capturing reporter was given, one line per event.
    #[cfg(test)]
    pub fn captured(&self) -> String {
        self.captured
            .as_ref()
            .and_then(|c| c.lock().ok().map(|c| c.clone()))
            .unwrap_or_default()
    }

    fn write(&self, text: &str) {
        if let Some(captured) = &self.captured {
            if let Ok(mut c) = captured.lock() {
                c.push_str(text);
                c.push('\n');
            }
            return;
        }
        let mut out = std::io::stdout().lock();
        // A closed stdout (a pipe whose reader left) must not abort a
        // provisioning run half-way: output is best effort.
        let _ = writeln!(out, "{text}");
    }

    fn line(&self, text: &str) {
        let text = self.redactor.redact(text);
        let spinner = self.spinner.lock().ok().and_then(|s| s.clone());
        match spinner {
            Some(bar) => bar.println(text),
            None => self.write(&text),
        }
    }

    fn event(&self, value: Value) {
        self.write(&self.redactor.redact(&value.to_string()));
    }

    pub fn step_started(&self, id: &'static str) {
        match self.format {
            Format::Json => self.event(json!({"event": "step_started", "id": id})),
            Format::Human if self.terminal => {
                let bar = ProgressBar::new_spinner();
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:16} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(id);
                bar.enable_steady_tick(Duration::from_millis(100));
                if let Ok(mut s) = self.spinner.lock() {
                    *s = Some(bar);
                }
            }
            Format::Human => {
                if self.verbosity > 0 {
                    self.line(&format!("{id}: checking"));
                }
            }
        }
    }

    /// What the running step is doing now.
    pub fn progress(&self, message: &str) {
        if let Ok(s) = self.spinner.lock() {
            if let Some(bar) = s.as_ref() {
                bar.set_message(self.redactor.redact(message));
                return;
            }
        }
        if self.format == Format::Human && self.verbosity > 0 {
            self.line(&format!("  {message}"));
        }
    }

    pub fn warning(&self, step: Option<&str>, message: &str) {
        match self.format {
            Format::Json => self.event(json!({"event": "warning", "id": step, "message": message})),
            Format::Human => match step {
                Some(step) => self.line(&format!("warning: {step}: {message}")),
                None => self.line(&format!("warning: {message}")),
            },
        }
    }

    /// A fact the running step found, shown with its end: `details` in
    /// JSON, a `  key: value` line for people.
    pub fn detail(&self, key: &str, value: Value) {
        if let Ok(mut d) = self.details.lock() {
            d.insert(key.to_string(), value);
        }
    }

    /// The end of a step in `apply`, or its state in `plan` and `verify`.
    pub fn step_finished(&self, event: &str, step: &StepReport) {
        if let Ok(mut s) = self.spinner.lock() {
            if let Some(bar) = s.take() {
                bar.finish_and_clear();
            }
        }
        let details = self
            .details
            .lock()
            .map(|mut d| std::mem::take(&mut *d))
            .unwrap_or_default();
        match self.format {
            Format::Json => {
                let mut value = json!({
                    "event": event,
                    "id": step.id,
                    "status": step.status.as_str(),
                    "changes": step.changes,
                    "reason": step.reason,
                    "duration_ms": u64::try_from(step.duration.as_millis()).unwrap_or(u64::MAX),
                });
                if !step.diffs.is_empty() {
                    value["diff"] = Value::String(step.diffs.concat());
                }
                if !details.is_empty() {
                    value["details"] = Value::Object(details);
                }
                self.event(value);
            }
            Format::Human => {
                let quiet_hides =
                    self.verbosity < 0 && matches!(step.status, Status::Ok | Status::Skipped);
                if quiet_hides {
                    return;
                }
                let mut head = format!("{}: {}", step.id, step.status.as_str());
                if let Some(reason) = &step.reason {
                    head.push_str(&format!(" ({reason})"));
                }
                if step.duration >= Duration::from_secs(1) {
                    head.push_str(&format!(" [{:.1}s]", step.duration.as_secs_f64()));
                }
                self.line(&head);
                for (key, value) in &details {
                    match value {
                        Value::String(text) => self.line(&format!("  {key}: {text}")),
                        Value::Object(map) => {
                            for (name, v) in map {
                                let v = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                                self.line(&format!("  {key} {name}: {v}"));
                            }
                        }
                        other => self.line(&format!("  {key}: {other}")),
                    }
                }
                for change in &step.changes {
                    self.line(&format!("  - {change}"));
                }
                for diff in &step.diffs {
                    for diff_line in diff.lines() {
                        self.line(&format!("    {diff_line}"));
                    }
                }
            }
        }
    }

    pub fn summary(&self, counts: &Counts, duration: Duration, mode: Mode) {
        match self.format {
            Format::Json => {
                let mut value = json!({
                    "event": "summary",
                    "ok": counts.ok,
                    "changed": counts.changed,
                    "skipped": counts.skipped,
                    "failed": counts.failed,
                    "duration_ms": u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                });
                if mode == Mode::Plan {
                    value["pending"] = json!(counts.pending);
                }
                self.event(value);
            }
            Format::Human => {
                // Each command counts what it can do: apply changes, plan
                // finds pending changes, verify only judges.
                let middle = match mode {
                    Mode::Apply => format!(" {} changed,", counts.changed),
                    Mode::Plan => format!(" {} pending,", counts.pending),
                    Mode::Verify => String::new(),
                };
                self.line(&format!(
                    "summary: {} ok,{middle} {} skipped, {} failed ({:.1}s)",
                    counts.ok,
                    counts.skipped,
                    counts.failed,
                    duration.as_secs_f64()
                ));
            }
        }
    }
}
