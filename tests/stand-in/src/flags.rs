//! Command-line flags the way the real binary reads them.
//!
//! GitLab Runner uses urfave/cli v1, which parses with Go's `flag` package:
//! `-name value`, `--name value`, `-name=value` and `--name=value` are all
//! the same; a bool flag takes no separate value (`--locked=false`); the
//! first error is reported in Go's words (`flag provided but not defined:
//! -foo`). Every flag may also come from an environment variable (the
//! struct tag `env:"…"`), which the command line overrides. Arguments that
//! are not flags are collected and ignored, as the real commands ignore them.

use std::collections::HashMap;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Kind {
    Str,
    Bool,
    Int,
    /// urfave `StringSliceFlag`: repeatable; its env var is comma-separated.
    List,
}

/// One flag: its names (the first is the one code asks for), the env var
/// that can carry it, and its default.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub names: &'static [&'static str],
    pub env: Option<&'static str>,
    pub kind: Kind,
    pub default: Option<&'static str>,
}

pub const fn flag(names: &'static [&'static str], env: Option<&'static str>, kind: Kind) -> Spec {
    Spec {
        names,
        env,
        kind,
        default: None,
    }
}

pub const fn flag_default(
    names: &'static [&'static str],
    env: Option<&'static str>,
    kind: Kind,
    default: &'static str,
) -> Spec {
    Spec {
        names,
        env,
        kind,
        default: Some(default),
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `-h` / `--help` was given.
    Help,
    /// Go's error text, e.g. `flag provided but not defined: -foo`.
    Invalid(String),
}

#[derive(Debug)]
pub struct Parsed {
    specs: &'static [Spec],
    cli: HashMap<&'static str, Vec<String>>,
    env: HashMap<String, String>,
    pub positional: Vec<String>,
}

fn parse_bool(v: &str) -> Option<bool> {
    // strconv.ParseBool
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub fn parse(
    specs: &'static [Spec],
    args: &[String],
    env: &HashMap<String, String>,
) -> Result<Parsed, ParseError> {
    let mut cli: HashMap<&'static str, Vec<String>> = HashMap::new();
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        if arg == "--" {
            positional.extend(args[i..].iter().cloned());
            break;
        }
        if arg.len() < 2 || !arg.starts_with('-') {
            positional.push(arg.clone());
            continue;
        }
        let body = arg.strip_prefix("--").unwrap_or(&arg[1..]);
        if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
            return Err(ParseError::Invalid(format!("bad flag syntax: {arg}")));
        }
        let (name, inline) = match body.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (body, None),
        };
        if name == "h" || name == "help" {
            return Err(ParseError::Help);
        }
        let Some(spec) = specs.iter().find(|s| s.names.contains(&name)) else {
            return Err(ParseError::Invalid(format!(
                "flag provided but not defined: -{name}"
            )));
        };
        let value = match spec.kind {
            Kind::Bool => match inline {
                None => "true".to_string(),
                Some(v) => match parse_bool(&v) {
                    Some(b) => b.to_string(),
                    None => {
                        return Err(ParseError::Invalid(format!(
                            "invalid boolean value {v:?} for -{name}: parse error"
                        )));
                    }
                },
            },
            _ => match inline {
                Some(v) => v,
                None => {
                    let Some(v) = args.get(i) else {
                        return Err(ParseError::Invalid(format!(
                            "flag needs an argument: -{name}"
                        )));
                    };
                    i += 1;
                    v.clone()
                }
            },
        };
        if spec.kind == Kind::Int && value.parse::<i64>().is_err() {
            return Err(ParseError::Invalid(format!(
                "invalid value {value:?} for flag -{name}: parse error"
            )));
        }
        cli.entry(spec.names[0]).or_default().push(value);
    }
    Ok(Parsed {
        specs,
        cli,
        env: env.clone(),
        positional,
    })
}

impl Parsed {
    fn spec(&self, name: &str) -> &Spec {
        self.specs
            .iter()
            .find(|s| s.names[0] == name)
            .unwrap_or_else(|| panic!("no flag {name} declared"))
    }

    fn env_value(&self, spec: &Spec) -> Option<&String> {
        spec.env.and_then(|e| self.env.get(e))
    }

    /// Given on the command line or in its environment variable.
    pub fn is_set(&self, name: &str) -> bool {
        let spec = self.spec(name);
        self.cli.contains_key(spec.names[0]) || self.env_value(spec).is_some()
    }

    pub fn is_set_on_cli(&self, name: &str) -> bool {
        self.cli.contains_key(self.spec(name).names[0])
    }

    /// The flag's value: command line, else environment, else default, else "".
    pub fn string(&self, name: &str) -> String {
        let spec = self.spec(name);
        if let Some(v) = self.cli.get(spec.names[0]).and_then(|v| v.last()) {
            return v.clone();
        }
        if let Some(v) = self.env_value(spec) {
            return v.clone();
        }
        spec.default.unwrap_or("").to_string()
    }

    pub fn bool(&self, name: &str) -> Result<bool, String> {
        let spec = self.spec(name);
        if let Some(v) = self.cli.get(spec.names[0]).and_then(|v| v.last()) {
            return Ok(v == "true");
        }
        if let Some(v) = self.env_value(spec).filter(|v| !v.is_empty()) {
            return parse_bool(v).ok_or_else(|| {
                format!(
                    "could not parse {v} as bool value for flag {}: strconv.ParseBool: parsing {v:?}: invalid syntax",
                    spec.names[0]
                )
            });
        }
        Ok(spec.default == Some("true"))
    }

    pub fn int(&self, name: &str) -> Result<i64, String> {
        let spec = self.spec(name);
        let v = self.string(name);
        if v.is_empty() {
            return Ok(0);
        }
        v.parse().map_err(|_| {
            format!(
                "could not parse {v} as int value for flag {}: strconv.ParseInt: parsing {v:?}: invalid syntax",
                spec.names[0]
            )
        })
    }

    pub fn list(&self, name: &str) -> Vec<String> {
        let spec = self.spec(name);
        if let Some(v) = self.cli.get(spec.names[0]) {
            return v.clone();
        }
        match self.env_value(spec) {
            Some(v) if !v.is_empty() => v.split(',').map(|s| s.trim().to_string()).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static SPECS: &[Spec] = &[
        flag(&["url", "u"], Some("CI_SERVER_URL"), Kind::Str),
        flag_default(&["locked"], Some("REGISTER_LOCKED"), Kind::Bool, "true"),
        flag(&["maximum-timeout"], None, Kind::Int),
        flag(&["env"], Some("RUNNER_ENV"), Kind::List),
    ];

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn go_flag_forms_all_work() {
        let env = HashMap::new();
        for form in [
            &["--url", "x"][..],
            &["-url", "x"],
            &["--url=x"],
            &["-u", "x"],
        ] {
            let p = parse(SPECS, &args(form), &env).expect("parses");
            assert_eq!(p.string("url"), "x");
        }
    }

    #[test]
    fn command_line_beats_env_beats_default() {
        let env = HashMap::from([("CI_SERVER_URL".to_string(), "from-env".to_string())]);
        let p = parse(SPECS, &[], &env).expect("parses");
        assert_eq!(p.string("url"), "from-env");
        assert!(p.bool("locked").expect("bool"));
        let p = parse(SPECS, &args(&["--url", "cli", "--locked=false"]), &env).expect("parses");
        assert_eq!(p.string("url"), "cli");
        assert!(!p.bool("locked").expect("bool"));
    }

    #[test]
    fn errors_use_go_words() {
        let env = HashMap::new();
        assert_eq!(
            parse(SPECS, &args(&["--nope"]), &env).unwrap_err(),
            ParseError::Invalid("flag provided but not defined: -nope".into())
        );
        assert_eq!(
            parse(SPECS, &args(&["--url"]), &env).unwrap_err(),
            ParseError::Invalid("flag needs an argument: -url".into())
        );
        assert_eq!(
            parse(SPECS, &args(&["--locked=maybe"]), &env).unwrap_err(),
            ParseError::Invalid("invalid boolean value \"maybe\" for -locked: parse error".into())
        );
    }

    #[test]
    fn lists_repeat_or_split_env() {
        let env = HashMap::from([("RUNNER_ENV".to_string(), "A=1,B=2".to_string())]);
        let p = parse(SPECS, &[], &env).expect("parses");
        assert_eq!(p.list("env"), vec!["A=1", "B=2"]);
        let p = parse(SPECS, &args(&["--env", "C=3", "--env", "D=4"]), &env).expect("parses");
        assert_eq!(p.list("env"), vec!["C=3", "D=4"]);
    }
}
