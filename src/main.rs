use std::ffi::OsString;
use std::process::ExitCode;

use clap::Parser;

use runner_provision::Redactor;
use runner_provision::cli::Cli;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    // Shared with every output path, so a token read anywhere is redacted
    // everywhere, this error message included.
    let redactor = Redactor::default();
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(err) if err.exit_code() == 0 => {
            // --help, --version
            let _ = err.print();
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            // 2 is a usage error, except where plan --detailed-exitcode
            // gives 2 its own meaning: changes pending.
            let code = if detailed_plan(&args) { 1 } else { 2 };
            let text = redactor.redact(&err.render().to_string());
            if json_asked(&args) {
                print_json_error(&text, "usage", code);
            }
            eprint!("{text}");
            return ExitCode::from(code);
        }
    };
    let json = cli.json_output();
    match cli.run(redactor.clone()) {
        Ok(code) => ExitCode::from(code),
        Err(err) => {
            let text = redactor.redact(&format!("{err:#}"));
            if json {
                print_json_error(&text, "error", 1);
            }
            eprintln!("error: {text}");
            ExitCode::from(1)
        }
    }
}

/// The `error` event: what stopped the run before or outside its steps.
fn print_json_error(message: &str, kind: &str, exit_code: u8) {
    let event = serde_json::json!({
        "event": "error",
        "kind": kind,
        "message": message.trim_end(),
        "exit_code": exit_code,
    });
    println!("{event}");
}

/// `--output json` (or `--output=json`, or RUNNER_PROVISION_OUTPUT=json) on
/// a command line clap could not parse.
fn json_asked(args: &[OsString]) -> bool {
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let flag = args
        .windows(2)
        .filter(|w| w[0] == "--output")
        .map(|w| w[1].clone())
        .chain(
            args.iter()
                .filter_map(|a| a.strip_prefix("--output=").map(str::to_string)),
        )
        .last();
    match flag {
        Some(value) => value == "json",
        None => std::env::var("RUNNER_PROVISION_OUTPUT").is_ok_and(|v| v == "json"),
    }
}

fn detailed_plan(args: &[OsString]) -> bool {
    args.iter().any(|a| a == "plan") && args.iter().any(|a| a == "--detailed-exitcode")
}
