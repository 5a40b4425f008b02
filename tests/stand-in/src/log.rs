//! Output in the shape of GitLab Runner's own log formatter, and the way a
//! command ends.
//!
//! The real binary logs through logrus with its "runner" text formatter
//! (`helpers/formatter` / `log/runner_formatter.go`): the level as a prefix
//! (`WARNING: `, `ERROR: `, `FATAL: `, `PANIC: `, nothing for info), the
//! message padded to 50 columns, then ` key=value` fields in sorted order, all
//! on stderr. `logrus.Panicln` and `logrus.Fatalln` both end the process with
//! exit status 1 (main.go recovers the panic and calls `os.Exit(1)`).

use std::io::Write;

/// How a command ended, when it did not succeed.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// `logrus.Panicln(msg)`: printed as `PANIC: msg`, exit status 1.
    Panic(String),
    /// `logrus.Fatalln(msg)`: printed as `FATAL: msg`, exit status 1.
    Fatal(String),
    /// Output already printed; exit with this status.
    Status(i32),
}

impl Exit {
    pub fn message(&self) -> Option<&str> {
        match self {
            Exit::Panic(m) | Exit::Fatal(m) => Some(m),
            Exit::Status(_) => None,
        }
    }
}

pub type Outcome = Result<(), Exit>;

#[derive(Clone, Copy)]
pub enum Level {
    Info,
    Warning,
    Error,
    Fatal,
    Panic,
}

impl Level {
    fn prefix(self) -> &'static str {
        match self {
            Level::Info => "",
            Level::Warning => "WARNING: ",
            Level::Error => "ERROR: ",
            Level::Fatal => "FATAL: ",
            Level::Panic => "PANIC: ",
        }
    }
}

/// One log line as the runner formatter prints it (without colours, as when
/// stderr is not a terminal). The real formatter leaves the padding spaces at
/// the end of a line without fields; this one trims them.
pub fn format_line(level: Level, msg: &str, fields: &[(&str, String)]) -> String {
    let prefix = level.prefix();
    let width = 50usize.saturating_sub(prefix.len());
    let mut line = format!("{prefix}{msg:<width$} ");
    let mut sorted: Vec<_> = fields.iter().collect();
    sorted.sort_by_key(|(k, _)| *k);
    for (k, v) in sorted {
        line.push_str(&format!(" {k}={v}"));
    }
    line.truncate(line.trim_end_matches(' ').len());
    line
}

/// Where a command writes: the real stdout/stderr, or buffers for tests.
pub struct Output {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Write through to the process's streams at once (the binary), or only
    /// collect (unit tests).
    pub live: bool,
}

impl Output {
    pub fn live() -> Self {
        Output {
            stdout: Vec::new(),
            stderr: Vec::new(),
            live: true,
        }
    }

    pub fn captured() -> Self {
        Output {
            stdout: Vec::new(),
            stderr: Vec::new(),
            live: false,
        }
    }

    pub fn out(&mut self, text: &str) {
        if self.live {
            let mut o = std::io::stdout().lock();
            let _ = o.write_all(text.as_bytes());
            let _ = o.flush();
        } else {
            self.stdout.extend_from_slice(text.as_bytes());
        }
    }

    pub fn err(&mut self, text: &str) {
        if self.live {
            let mut e = std::io::stderr().lock();
            let _ = e.write_all(text.as_bytes());
            let _ = e.flush();
        } else {
            self.stderr.extend_from_slice(text.as_bytes());
        }
    }

    pub fn log(&mut self, level: Level, msg: &str, fields: &[(&str, String)]) {
        let mut line = format_line(level, msg, fields);
        line.push('\n');
        self.err(&line);
    }

    pub fn info(&mut self, msg: &str) {
        self.log(Level::Info, msg, &[]);
    }

    pub fn warn(&mut self, msg: &str) {
        self.log(Level::Warning, msg, &[]);
    }

    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_start_at_column_52_as_in_real_output() {
        // From a real 17.4.0 register: "Verifying runner... is valid" then
        // the field at column 52.
        let line = format_line(
            Level::Info,
            "Verifying runner... is valid",
            &[("runner", "Kdv9Ad4PH".into())],
        );
        assert_eq!(line.find("runner="), Some(52));
    }

    #[test]
    fn levels_are_prefixed() {
        assert_eq!(
            format_line(Level::Panic, "The url needs to be entered", &[]),
            "PANIC: The url needs to be entered"
        );
    }
}
