//! vagrant/Vagrantfile: `vagrant validate` accepts it (and rejects it when the
//! binary is missing), and its provisioners pass the token only through the
//! environment. No box can be downloaded here, so nothing boots.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

use crate::prerequisites::{missing, repo, skip, tool_binary};

fn vagrantfile_dir() -> PathBuf {
    repo().join("vagrant")
}

/// `vagrant validate` of the repository's Vagrantfile with `env` set; Vagrant's
/// own state goes to a temporary directory, not into the repository.
fn vagrant_validate(state: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new("vagrant");
    command
        .arg("validate")
        .args(args)
        .current_dir(vagrantfile_dir())
        .env("VAGRANT_HOME", state.join("home"))
        .env("VAGRANT_DOTFILE_PATH", state.join("dotfile"))
        .env("VAGRANT_CHECKPOINT_DISABLE", "1")
        .env("VAGRANT_NO_COLOR", "1")
        .env_remove("RUNNER_TOKEN")
        .env_remove("RUNNER_PROVISION_BOX")
        .env_remove("RUNNER_PROVISION_PROFILE")
        .env_remove("RUNNER_PROVISION_BINARY")
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("running vagrant validate")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn vagrant_validate_accepts_the_vagrantfile_and_rejects_a_missing_binary() {
    if let Some(reason) = missing(&[("vagrant", "vagrant")]) {
        skip(&reason);
        return;
    }
    let state = tempfile::tempdir().expect("a temporary directory");
    let binary = tool_binary();
    let binary = binary.to_str().expect("a UTF-8 binary path");

    // With vagrant-libvirt, the libvirt provider's settings are checked too;
    // VirtualBox is not packaged in Debian, so its block is only parsed.
    let plugins = Command::new("vagrant")
        .args(["plugin", "list"])
        .env("VAGRANT_HOME", state.path().join("home"))
        .stdin(Stdio::null())
        .output()
        .expect("running vagrant plugin list");
    let libvirt = text(&plugins).contains("vagrant-libvirt");
    let provider_args: &[&str] = if libvirt {
        &[]
    } else {
        skip("vagrant-libvirt is not installed: validating without provider settings");
        &["--ignore-provider"]
    };
    let provider_env = [("VAGRANT_DEFAULT_PROVIDER", "libvirt")];

    let output = vagrant_validate(
        state.path(),
        provider_args,
        &[provider_env[0], ("RUNNER_PROVISION_BINARY", binary)],
    );
    assert!(
        output.status.success() && text(&output).contains("validated successfully"),
        "vagrant validate: {}",
        text(&output)
    );

    // A profile given as a host file is uploaded by its own provisioner.
    let profile = state.path().join("profile.toml");
    std::fs::write(&profile, "description = \"x\"\n").expect("writing a profile");
    let output = vagrant_validate(
        state.path(),
        provider_args,
        &[
            provider_env[0],
            ("RUNNER_PROVISION_BINARY", binary),
            ("RUNNER_PROVISION_PROFILE", profile.to_str().expect("UTF-8")),
        ],
    );
    assert!(
        output.status.success(),
        "vagrant validate with a profile file: {}",
        text(&output)
    );

    // Validation really reads our file: a binary that is not there fails it.
    let output = vagrant_validate(
        state.path(),
        provider_args,
        &[
            provider_env[0],
            ("RUNNER_PROVISION_BINARY", "/nonexistent/runner-provision"),
        ],
    );
    assert!(
        !output.status.success()
            && text(&output).contains("/nonexistent/runner-provision")
            && text(&output).contains("cargo xtask dist"),
        "vagrant validate accepted a missing binary: {}",
        text(&output)
    );
}

/// Loads the Vagrantfile with a `Vagrant.configure` that records every
/// setting and provisioner, and prints them as JSON.
const RECORDER: &str = r#"
require "json"
class Recorder
  def initialize; @settings = {}; end
  def to_h; @settings.transform_values { |v| v.is_a?(Recorder) ? v.to_h : v }; end
  def respond_to_missing?(*) = true
  def method_missing(name, *args, **options, &block)
    key = name.to_s
    options = options.transform_keys(&:to_s)
    case key
    when /=\z/ then @settings[key.chomp("=")] = args[0]
    when "provision" then (@settings["provision"] ||= []) << { "name" => args[0] }.merge(options)
    when "synced_folder" then (@settings["synced_folder"] ||= []) << args + [options]
    when "provider"
      provider = Recorder.new
      block&.call(provider)
      (@settings["provider"] ||= {})[args[0].to_s] = provider.to_h
    else @settings[key] ||= Recorder.new
    end
  end
end
module Vagrant
  def self.configure(_version)
    config = Recorder.new
    yield config
    $recorded = config.to_h
  end
end
load ARGV[0]
puts JSON.generate($recorded)
"#;

fn recorded_config(env: &[(&str, &str)]) -> Value {
    let mut command = Command::new("ruby");
    command
        .args(["-e", RECORDER])
        .arg(vagrantfile_dir().join("Vagrantfile"))
        .env_remove("RUNNER_TOKEN")
        .env_remove("RUNNER_PROVISION_BOX")
        .env_remove("RUNNER_PROVISION_PROFILE")
        .env("RUNNER_PROVISION_BINARY", tool_binary())
        .stdin(Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("running ruby");
    assert!(
        output.status.success(),
        "loading the Vagrantfile: {}",
        text(&output)
    );
    serde_json::from_slice(&output.stdout).expect("the recorder's JSON")
}

fn provisioner<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["vm"]["provision"]
        .as_array()
        .and_then(|all| all.iter().find(|p| p["name"] == name))
        .unwrap_or_else(|| panic!("no provisioner {name}: {config}"))
}

#[test]
fn vagrantfile_passes_the_token_in_the_environment_and_runs_apply() {
    if which::which("ruby").is_err() {
        skip("ruby not found (package ruby, a dependency of vagrant)");
        return;
    }
    let token = "GR1348941vagrantTestToken";
    let config = recorded_config(&[("RUNNER_TOKEN", token)]);

    assert_eq!(config["vm"]["box"], "debian/bookworm64", "{config}");
    for provider in ["libvirt", "virtualbox"] {
        assert_eq!(
            config["vm"]["provider"][provider]["memory"], 2048,
            "provider {provider}: {config}"
        );
    }
    let binary = provisioner(&config, "binary");
    assert_eq!(binary["type"], "file");
    assert_eq!(binary["source"], tool_binary().to_str().expect("UTF-8"));

    let apply = provisioner(&config, "apply");
    assert_eq!(apply["type"], "shell");
    assert_eq!(apply["env"]["RUNNER_TOKEN"], token, "{apply}");
    assert_eq!(apply["env"]["RUNNER_PROVISION_PROFILE"], "shell-docker");
    let script = apply["inline"].as_str().expect("an inline script");
    assert!(
        !script.contains(token),
        "the token is in the script: {script}"
    );
    assert!(
        script.contains(
            r#"runner-provision --profile "${RUNNER_PROVISION_PROFILE:-shell-docker}" apply --yes --accept-docker-group-risk"#
        ),
        "{script}"
    );
    let syntax = Command::new("sh")
        .args(["-n", "-c", script])
        .output()
        .expect("running sh -n");
    assert!(syntax.status.success(), "sh -n: {}", text(&syntax));
    assert!(
        !provisioner(&config, "converged")["inline"]
            .as_str()
            .expect("an inline script")
            .contains(token)
    );

    // Without a token on the host, none is passed (not even an empty one).
    let config = recorded_config(&[("RUNNER_PROVISION_BOX", "generic/debian12")]);
    assert_eq!(config["vm"]["box"], "generic/debian12");
    let apply = provisioner(&config, "apply");
    assert!(apply["env"].get("RUNNER_TOKEN").is_none(), "{apply}");
}

#[test]
fn a_missing_binary_stops_only_the_commands_that_provision() {
    if which::which("ruby").is_err() {
        skip("ruby not found (package ruby, a dependency of vagrant)");
        return;
    }
    // Loaded as `vagrant destroy` (or status, ssh, halt) loads it: the
    // recorder's ARGV[0] is the Vagrantfile's path, not a provisioning command.
    let output = Command::new("ruby")
        .args(["-e", RECORDER])
        .arg(vagrantfile_dir().join("Vagrantfile"))
        .env("RUNNER_PROVISION_BINARY", "/nonexistent/runner-provision")
        .stdin(Stdio::null())
        .output()
        .expect("running ruby");
    assert!(
        output.status.success(),
        "a missing binary must not stop a command that does not provision: {}",
        text(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("/nonexistent/runner-provision") && stderr.contains("cargo xtask dist"),
        "the warning names the path and how to build it: {stderr}"
    );
    let config: Value = serde_json::from_slice(&output.stdout).expect("the recorder's JSON");
    let names: Vec<&Value> = config["vm"]["provision"]
        .as_array()
        .expect("provisioners")
        .iter()
        .map(|p| &p["name"])
        .collect();
    assert!(
        !names.iter().any(|n| *n == "binary"),
        "no file provisioner for a missing binary: {names:?}"
    );
}
