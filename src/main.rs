use std::process::ExitCode;

use clap::Parser;

use runner_provision::Redactor;
use runner_provision::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Shared with every output path, so a token read anywhere is redacted
    // everywhere, this error message included.
    let redactor = Redactor::default();
    match cli.run(redactor.clone()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            eprintln!("error: {}", redactor.redact(&format!("{err:#}")));
            ExitCode::from(1)
        }
    }
}
