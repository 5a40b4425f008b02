//! Expected, fixable failures. Each message says what is wrong and how to fix
//! it; none ever contains the runner token. Unexpected failures travel as
//! `anyhow` errors with short context instead.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "runner-provision must run as root to change this host: run it with sudo, or use --root DIR to work on a directory tree"
    )]
    NotRoot,
    #[error(
        "the runner token is empty: put the token in RUNNER_TOKEN or in the file given to --token-file"
    )]
    EmptyToken,
    #[error(
        "the runner token contains spaces or control characters: the file or variable must hold the token alone"
    )]
    MalformedToken,
    #[error(
        "the runner token is shorter than {min} characters, so it cannot be a GitLab token: check that the file or variable holds the whole token"
    )]
    ShortToken { min: usize },
    #[error("cannot read token file {}: {reason}; make it a file readable by root (for example mode 0600, owner root)", path.display())]
    TokenFile { path: PathBuf, reason: String },
    #[error("{0}")]
    UnsupportedOs(String),
    #[error(
        "kernel {found} is too old: the overlay2 storage driver needs Linux 4.2 or later; upgrade the kernel"
    )]
    KernelTooOld { found: String },
    #[error("`{tool}` was not found on PATH: install the package `{package}` and run again")]
    MissingTool { tool: String, package: String },
    #[error(
        "{what} `{value}` is not a valid URL: {reason}; give an http:// or https:// URL such as https://gitlab.example.com/"
    )]
    BadUrl {
        what: &'static str,
        value: String,
        reason: String,
    },
    #[error(
        "registration is required but there is no runner {name} for {url} in /etc/gitlab-runner/config.toml and no token: put the token in RUNNER_TOKEN or a file given to --token-file (a cloud-init boot keeps it in /var/lib/runner-provision/token until registered), or set require_registration = false for an image that registers later"
    )]
    RegistrationRequired { name: String, url: String },
    #[error(
        "tags cannot be set when registering with a runner authentication token (glrt-…): GitLab keeps them on the server; set them in the runner's settings in GitLab, or remove --tag-list / [runner] tags"
    )]
    TagsWithAuthToken,
    #[error(
        "adding {members} to group docker gives them root on this host (anyone who can talk to the Docker daemon can mount / into a container); accept it with --accept-docker-group-risk or `accept_group_risk = true` in the profile's [docker] table, or skip the step with --skip docker-group"
    )]
    DockerGroupRiskNotAccepted { members: String },
    #[error(
        "there is no profile named `{name}`: the built-in profiles are {known}; or give the path of a profile file"
    )]
    UnknownProfile { name: String, known: String },
    #[error("profile {path}: {message}")]
    Profile { path: String, message: String },
    #[error("{} is malformed: {message}; fix or remove the file, then run again (it was not changed)", path.display())]
    MalformedFile { path: PathBuf, message: String },
    #[error(
        "{what}: {message}; give it as http://host:port or http://user:password@host:port (percent-encode special characters in the password)"
    )]
    BadProxy { what: &'static str, message: String },
    #[error(
        "[prune] older_than `{value}` is not an age: {reason}; give whole numbers with units, such as 72h, 3d, 90m or 1h30m"
    )]
    BadAge { value: String, reason: String },
    #[error(
        "the profile's [global] listen_address (--listen-address) `{value}` {reason}: give host:port, such as 127.0.0.1:9252 (GitLab Runner's metrics port; \":9252\" listens on every interface), or \"\" for no metrics server"
    )]
    BadListenAddress { value: String, reason: String },
    #[error("the profile's {what} `{value}` cannot be a version pin: {reason}; give {example}")]
    BadVersion {
        what: &'static str,
        value: String,
        reason: &'static str,
        example: &'static str,
    },
    #[error(
        "the profile pins runner.version `{version}` but says install = \"present\", where the tool installs nothing: remove the pin, or set install = \"package-repo\""
    )]
    PinWithoutInstall { version: String },
    #[error("the profile's {what} `{value}` is not one of {allowed}")]
    BadSetting {
        what: &'static str,
        value: String,
        allowed: &'static str,
    },
    #[error(
        "{place} sets the storage driver `{found}`, not `{wanted}`: switching hides the images and containers Docker keeps for {found} (and {found}'s storage-opts would stop dockerd from starting); accept the switch with --replace-storage-driver, `replace_storage_driver = true` in the profile's [docker] table or RUNNER_PROVISION_REPLACE_STORAGE_DRIVER=true, or keep it with --storage-driver {found}"
    )]
    OtherStorageDriver {
        place: String,
        found: String,
        wanted: String,
    },
    #[error(
        "runner {names} deleted on the server: GitLab no longer accepts its token; re-register with a new token (`gitlab-runner verify --delete` removes it from config.toml, then run apply with the new token in RUNNER_TOKEN or --token-file)"
    )]
    RunnerDeletedOnServer { names: String },
    #[error("the profile's [[runners]]: {0}")]
    Runners(String),
    #[error(
        "runner {name} ({url}) is not registered and its token source ({from}) gave no token: put the token there, or set require_registration = false for an image that registers later"
    )]
    ListedRegistrationRequired {
        name: String,
        url: String,
        from: String,
    },
    #[error("token file {} is refused: {reason}", path.display())]
    UnsafeTokenFile { path: PathBuf, reason: String },
    #[error("the profile's {table} `{key}`: {message}")]
    BadDaemonSetting {
        table: &'static str,
        key: String,
        message: String,
    },
    #[error(
        "the profile's {table} sets `{key}`, which docker.service already gives dockerd as the flag `{flag}` ({unit}): dockerd refuses to start when a setting comes both as a flag and from daemon.json (moby#34104); remove `{key}` from {table}, or override ExecStart in a drop-in under /etc/systemd/system/docker.service.d/ without that flag"
    )]
    DaemonFlagConflict {
        table: &'static str,
        key: String,
        flag: String,
        unit: String,
    },
}
