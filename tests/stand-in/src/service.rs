//! `install`, `uninstall`, `start`, `stop`, `restart`, `status` and `run`.
//!
//! Service files are rendered from the templates the real binary uses:
//! kardianos/service's `systemdScript` (`service_systemd_linux.go`) with the
//! config GitLab Runner builds in `commands/service.go` +
//! `commands/service_linux.go` (Description "GitLab Runner",
//! `After=network.target`, `Restart=always`, arguments `run --config …
//! --working-directory … --service … [--syslog] [--user …]`, `User=` only for
//! `--init-user`), and for SysV the Debian script from
//! `helpers/service/scripts.go` (or kardianos's generic one where
//! `/lib/lsb/init-functions` or `start-stop-daemon` is missing).
//! systemd is detected as kardianos does: `/run/systemd/system` exists or
//! PID 1 is called `systemd`.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Ctx;
use crate::config;
use crate::flags::{Kind, Spec, flag, flag_default};
use crate::log::{Exit, Outcome};

pub static CONTROL_FLAGS: &[Spec] = &[
    flag_default(&["service", "n"], None, Kind::Str, "gitlab-runner"),
    flag(&["user-service"], None, Kind::Bool),
];

pub static INSTALL_FLAGS: &[Spec] = &[
    flag_default(&["service", "n"], None, Kind::Str, "gitlab-runner"),
    flag(&["user-service"], None, Kind::Bool),
    flag(&["working-directory", "d"], None, Kind::Str),
    flag(&["config", "c"], None, Kind::Str),
    flag(&["syslog"], None, Kind::Bool),
    flag(&["user", "u"], None, Kind::Str),
    flag(&["init-user", "i"], None, Kind::Str),
];

pub static RUN_FLAGS: &[Spec] = &[
    flag(&["config", "c"], Some("CONFIG_FILE"), Kind::Str),
    flag(&["listen-address"], Some("LISTEN_ADDRESS"), Kind::Str),
    flag(&["metrics-server"], None, Kind::Str),
    flag_default(&["service", "n"], None, Kind::Str, "gitlab-runner"),
    flag(&["working-directory", "d"], None, Kind::Str),
    flag(&["user", "u"], None, Kind::Str),
    flag(&["syslog"], None, Kind::Bool),
];

const EXEC_PATH: &str = "/usr/bin/gitlab-runner";

pub fn is_systemd() -> bool {
    Path::new("/run/systemd/system").exists()
        || fs::read_to_string("/proc/1/comm").is_ok_and(|c| c.trim() == "systemd")
}

/// Go text/template's `cmd` function in kardianos/service.
fn cmd(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\\\""))
}

/// `cmdEscape`.
fn cmd_escape(s: &str) -> String {
    s.replace(' ', "\\x20")
}

/// What the service runs and as whom.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub arguments: Vec<String>,
    /// `--init-user`: the init system starts the process as this user.
    pub user_name: String,
}

/// kardianos `systemdScript`, rendered (LimitNOFILE unset, no LogOutput, no
/// ChRoot, WorkingDirectory, ReloadSignal, PIDFile or SuccessExitStatus:
/// each leaves an empty line, exactly as the real template does).
pub fn systemd_unit(c: &ServiceConfig, exec_path: &str) -> String {
    let args: String = c.arguments.iter().map(|a| format!(" {}", cmd(a))).collect();
    let user = if c.user_name.is_empty() {
        String::new()
    } else {
        format!("User={}", c.user_name)
    };
    format!(
        "[Unit]\n\
Description=GitLab Runner\n\
ConditionFileIsExecutable={path}\n \n\
After=network.target \n\
\n\
[Service]\n\
StartLimitInterval=5\n\
StartLimitBurst=10\n\
ExecStart={path}{args}\n\
\n\
\n\
{user}\n\
\n\
\n\
\n\
\n\
Restart=always\n\
\n\
RestartSec=120\n\
EnvironmentFile=-/etc/sysconfig/{name}\n\
\n\
[Install]\n\
WantedBy=multi-user.target\n",
        path = cmd_escape(exec_path),
        name = c.name,
    )
}

/// `sysvDebianScript` from helpers/service/scripts.go.
pub fn sysv_debian_script(c: &ServiceConfig, exec_path: &str) -> String {
    let args: String = c.arguments.iter().map(|a| format!(" {}", cmd(a))).collect();
    let chuid = if c.user_name.is_empty() {
        String::new()
    } else {
        format!(" --chuid {}", cmd(&c.user_name))
    };
    format!(
        r#"#! /bin/bash

### BEGIN INIT INFO
# Provides:          {path}
# Required-Start:    $local_fs $remote_fs $network $syslog
# Required-Stop:     $local_fs $remote_fs $network $syslog
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: {name}
# Description:       GitLab Runner
### END INIT INFO

DESC="GitLab Runner"
USER="{user}"
NAME="{name}"
PIDFILE="/var/run/$NAME.pid"

# Read configuration variable file if it is present
[ -r /etc/default/$NAME ] && . /etc/default/$NAME

# Define LSB log_* functions.
. /lib/lsb/init-functions

## Check to see if we are running as root first.
if [ "$(id -u)" != "0" ]; then
    echo "This script must be run as root"
    exit 1
fi

do_start() {{
  start-stop-daemon --start \
     \
     \
    {chuid} \
    --pidfile "$PIDFILE" \
    --background \
    --make-pidfile \
    --exec {path} -- {args}
}}

do_stop() {{
  start-stop-daemon --stop \
    {chuid} \
    --pidfile "$PIDFILE" \
    --quiet
}}

case "$1" in
  start)
    log_daemon_msg "Starting $DESC"
    do_start
    log_end_msg $?
    ;;
  stop)
    log_daemon_msg "Stopping $DESC"
    do_stop
    log_end_msg $?
    ;;
  restart)
    $0 stop
    $0 start
    ;;
  status)
    status_of_proc -p "$PIDFILE" "$DAEMON" "$DESC"
    ;;
  *)
    echo "Usage: sudo service $0 {{start|stop|restart|status}}" >&2
    exit 1
    ;;
esac

exit 0
"#,
        path = exec_path,
        name = c.name,
        user = c.user_name,
    )
}

/// kardianos's generic `sysvScript`, for hosts without LSB init functions.
pub fn sysv_generic_script(c: &ServiceConfig, exec_path: &str) -> String {
    let args: String = c.arguments.iter().map(|a| format!(" {}", cmd(a))).collect();
    format!(
        r#"#!/bin/sh
# For RedHat and cousins:
# chkconfig: - 99 01
# description: GitLab Runner
# processname: {path}

### BEGIN INIT INFO
# Provides:          {path}
# Required-Start:
# Required-Stop:
# Default-Start:     2 3 4 5
# Default-Stop:      0 1 6
# Short-Description: {name}
# Description:       GitLab Runner
### END INIT INFO

cmd="{path}{args}"

name=$(basename $(readlink -f $0))
pid_file="/var/run/$name.pid"
stdout_log="/var/log/$name.log"
stderr_log="/var/log/$name.err"

[ -e /etc/sysconfig/$name ] && . /etc/sysconfig/$name

get_pid() {{
    cat "$pid_file"
}}

is_running() {{
    [ -f "$pid_file" ] && ps $(get_pid) > /dev/null 2>&1
}}

case "$1" in
    start)
        if is_running; then
            echo "Already started"
        else
            echo "Starting $name"
            
            $cmd >> "$stdout_log" 2>> "$stderr_log" &
            echo $! > "$pid_file"
            if ! is_running; then
                echo "Unable to start, see $stdout_log and $stderr_log"
                exit 1
            fi
        fi
    ;;
    stop)
        if is_running; then
            echo -n "Stopping $name.."
            kill $(get_pid)
            for i in $(seq 1 10)
            do
                if ! is_running; then
                    break
                fi
                echo -n "."
                sleep 1
            done
            echo
            if is_running; then
                echo "Not stopped; may still be shutting down or shutdown may have failed"
                exit 1
            else
                echo "Stopped"
                if [ -f "$pid_file" ]; then
                    rm "$pid_file"
                fi
            fi
        else
            echo "Not running"
        fi
    ;;
    restart)
        $0 stop
        if is_running; then
            echo "Unable to stop, will not attempt to start"
            exit 1
        fi
        $0 start
    ;;
    status)
        if is_running; then
            echo "Running"
        else
            echo "Stopped"
            exit 1
        fi
    ;;
    *)
    echo "Usage: $0 {{start|stop|restart|status}}"
    exit 1
    ;;
esac
exit 0
"#,
        path = exec_path,
        name = c.name,
    )
}

/// kardianos `runCommand`: exit status, stdout, and its error text.
fn run_command(program: &str, args: &[&str]) -> Result<(i32, String), String> {
    match Command::new(program).args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{program:?} failed: exec: {program:?}: executable file not found in $PATH"
        )),
        Err(e) => Err(format!("{program:?} failed: {e}")),
        Ok(o) => {
            let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
            if o.status.success() {
                Ok((0, stdout))
            } else {
                Err(format!(
                    "{program:?} failed with stderr: {}",
                    String::from_utf8_lossy(&o.stderr)
                ))
            }
        }
    }
}

fn run(program: &str, args: &[&str]) -> Result<(), String> {
    run_command(program, args).map(|_| ())
}

fn home_of(user: &str) -> Option<String> {
    let passwd = fs::read_to_string("/etc/passwd").ok()?;
    passwd.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.len() >= 7 && f[0] == user).then(|| f[5].to_string())
    })
}

/// `createServiceConfig` + `setupOSServiceConfig` (Linux).
fn service_config(
    ctx: &Ctx,
    p: &crate::flags::Parsed,
    command: &str,
    systemd: bool,
) -> Result<ServiceConfig, Exit> {
    let name = p.string("service");
    let mut arguments = vec!["run".to_string()];
    if command == "install" {
        let init_user = p.string("init-user");
        let mut config = p.string("config");
        if config.is_empty() {
            config = ctx.default_config_file().display().to_string();
        }
        if !p.is_set_on_cli("config") && !init_user.is_empty() {
            let Some(home) = home_of(&init_user) else {
                return Err(Exit::Panic(format!(
                    "Failed to get home for user {init_user:?}: user: unknown user {init_user}"
                )));
            };
            config = format!("{}/config.toml", home.trim_end_matches('/'));
        }
        arguments.extend(["--config".to_string(), config]);
        let mut wd = p.string("working-directory");
        if !p.is_set_on_cli("working-directory") {
            // homedir.New().GetWDOrEmpty(): the directory install ran in.
            wd = std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default();
        }
        if !wd.is_empty() {
            arguments.extend(["--working-directory".to_string(), wd]);
        }
    } else {
        let config = ctx.default_config_file().display().to_string();
        arguments.extend(["--config".to_string(), config]);
    }
    if !name.is_empty() {
        arguments.extend(["--service".to_string(), name.clone()]);
    }
    // "syslogging doesn't make sense for systemd systems as those log
    // straight to journald"
    let syslog_set = command == "install" && p.is_set_on_cli("syslog");
    let syslog_value = command == "install" && p.bool("syslog").unwrap_or(false);
    let syslog = if systemd {
        syslog_set && syslog_value
    } else {
        !syslog_set || syslog_value
    };
    if syslog {
        arguments.push("--syslog".to_string());
    }
    let mut user_name = String::new();
    if command == "install" {
        let user = p.string("user");
        let init_user = p.string("init-user");
        if (!user.is_empty() || !init_user.is_empty()) && ctx.uid != 0 {
            let which = if user.is_empty() { "init-user" } else { "user" };
            return Err(Exit::Fatal(format!(
                "The --{which} is not supported for non-root users"
            )));
        }
        if !user.is_empty() {
            arguments.extend(["--user".to_string(), user]);
        }
        user_name = init_user;
    }
    Ok(ServiceConfig {
        name,
        arguments,
        user_name,
    })
}

/// `RunServiceControl` for every service subcommand.
pub fn control(ctx: &mut Ctx, command: &str, args: &[String]) -> Outcome {
    let specs = if command == "install" {
        INSTALL_FLAGS
    } else {
        CONTROL_FLAGS
    };
    let p = crate::parse_flags(ctx, command, specs, args)?;
    if command == "install" && !p.string("user").is_empty() && !p.string("init-user").is_empty() {
        return Err(Exit::Fatal(
            "Only one of 'user' or 'init-user' can be specified.".into(),
        ));
    }
    let systemd = is_systemd();
    let svc = service_config(ctx, &p, command, systemd)?;
    let failed =
        |action: &str, e: String| Exit::Fatal(format!("Failed to {action} {}: {e}", svc.name));
    match command {
        "install" => {
            if p.string("user").is_empty() && p.string("init-user").is_empty() && ctx.uid == 0 {
                return Err(Exit::Fatal(
                    "Please specify user that will run gitlab-runner service".into(),
                ));
            }
            // runServiceInstall: create the config file if there is none.
            let config_path = PathBuf::from(&svc.arguments[2]);
            match config::load(&config_path) {
                Ok(Some(_)) => {}
                Ok(None) => {
                    let text = config::encode(&config::new_config());
                    config::write_atomic(&config_path, text.as_bytes())
                        .map_err(|e| Exit::Fatal(e.to_string()))?;
                }
                Err(e) => return Err(Exit::Fatal(e)),
            }
            install(&svc, systemd).map_err(|e| failed("install", e))
        }
        "uninstall" => uninstall(&svc, systemd).map_err(|e| failed("uninstall", e)),
        "start" | "stop" => {
            let r = if systemd {
                run("systemctl", &[command, &format!("{}.service", svc.name)])
            } else {
                run("service", &[&svc.name, command])
            };
            r.map_err(|e| failed(command, e))
        }
        "restart" => {
            let r = if systemd {
                run("systemctl", &["restart", &format!("{}.service", svc.name)])
            } else {
                run("service", &[&svc.name, "stop"]).and_then(|_| {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                    run("service", &[&svc.name, "start"])
                })
            };
            r.map_err(|e| failed("restart", e))
        }
        "status" => status(ctx, &svc.name, systemd),
        _ => unreachable!("not a service command: {command}"),
    }
}

fn install(svc: &ServiceConfig, systemd: bool) -> Result<(), String> {
    if systemd {
        let path = format!("/etc/systemd/system/{}.service", svc.name);
        if Path::new(&path).exists() {
            return Err(format!("Init already exists: {path}"));
        }
        fs::write(&path, systemd_unit(svc, EXEC_PATH)).map_err(|e| e.to_string())?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).map_err(|e| e.to_string())?;
        run("systemctl", &["enable", &format!("{}.service", svc.name)])?;
        run("systemctl", &["daemon-reload"])
    } else {
        let path = format!("/etc/init.d/{}", svc.name);
        if Path::new(&path).exists() {
            return Err(format!("Init already exists: {path}"));
        }
        let debian = Path::new("/lib/lsb/init-functions").exists()
            && Path::new("/sbin/start-stop-daemon").exists();
        let script = if debian {
            sysv_debian_script(svc, EXEC_PATH)
        } else {
            sysv_generic_script(svc, EXEC_PATH)
        };
        fs::write(&path, script).map_err(|e| e.to_string())?;
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        for level in ["2", "3", "4", "5"] {
            let _ = std::os::unix::fs::symlink(&path, format!("/etc/rc{level}.d/S50{}", svc.name));
        }
        for level in ["0", "1", "6"] {
            let _ = std::os::unix::fs::symlink(&path, format!("/etc/rc{level}.d/K02{}", svc.name));
        }
        Ok(())
    }
}

fn uninstall(svc: &ServiceConfig, systemd: bool) -> Result<(), String> {
    if systemd {
        run("systemctl", &["disable", &format!("{}.service", svc.name)])?;
        let path = format!("/etc/systemd/system/{}.service", svc.name);
        fs::remove_file(&path).map_err(|e| format!("remove {path}: {}", go_io_error(&e)))
    } else {
        // kardianos removes the script only; the rc?.d links stay behind.
        let path = format!("/etc/init.d/{}", svc.name);
        fs::remove_file(&path).map_err(|e| format!("remove {path}: {}", go_io_error(&e)))
    }
}

fn go_io_error(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Run a command, keeping its exit status and output even when it fails
/// (`runWithOutput`); `Err` only when it could not be started.
fn run_raw(program: &str, args: &[&str]) -> Result<(i32, String), String> {
    match Command::new(program).args(args).output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(format!(
            "{program:?} failed: exec: {program:?}: executable file not found in $PATH"
        )),
        Err(e) => Err(format!("{program:?} failed: {e}")),
        Ok(o) => Ok((
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )),
    }
}

/// `runServiceStatus`: "<name>: Service is running" on stdout, anything
/// else on stderr with exit status 1.
fn status(ctx: &mut Ctx, name: &str, systemd: bool) -> Outcome {
    const RUNNING: &str = "Service is running";
    const STOPPED: &str = "Service has stopped";
    const NOT_INSTALLED: &str = "the service is not installed";
    let description: Result<&str, String> = if systemd {
        // kardianos `systemd.Status`
        match run_raw("systemctl", &["is-active", name]) {
            Ok((_, out)) if out.starts_with("active") || out.starts_with("activating") => {
                Ok(RUNNING)
            }
            Ok((_, out)) if out.starts_with("inactive") => {
                match run_raw("systemctl", &["list-unit-files", "-t", "service", name]) {
                    Ok((_, units)) if units.contains(name) => Err(STOPPED.into()),
                    _ => Err(NOT_INSTALLED.into()),
                }
            }
            Ok((_, out)) if out.starts_with("failed") => Err("service in failed state".into()),
            _ => Err(NOT_INSTALLED.into()),
        }
    } else {
        // kardianos `sysv.Status`: `service NAME status`, running only if the
        // output starts with "Running". The Debian script's status_of_proc
        // prints "… is running", so on such hosts the real binary reports
        // "the service is not installed" even while it runs; so does this.
        match run_command("service", &[name, "status"]) {
            Ok((_, out)) if out.starts_with("Running") => Ok(RUNNING),
            Ok((_, out)) if out.starts_with("Stopped") => Err(STOPPED.into()),
            Ok(_) => Err(NOT_INSTALLED.into()),
            Err(e) => Err(e),
        }
    };
    match description {
        Ok(d) => {
            ctx.out.out(&format!("{name}: {d}\n"));
            Ok(())
        }
        Err(d) => {
            ctx.out.err(&format!("{name}: {d}\n"));
            Err(Exit::Status(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(user_name: &str, user: Option<&str>) -> ServiceConfig {
        let mut arguments: Vec<String> = [
            "run",
            "--config",
            "/etc/gitlab-runner/config.toml",
            "--working-directory",
            "/home/gitlab-runner",
            "--service",
            "gitlab-runner",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(u) = user {
            arguments.extend(["--user".to_string(), u.to_string()]);
        }
        ServiceConfig {
            name: "gitlab-runner".into(),
            arguments,
            user_name: user_name.into(),
        }
    }

    #[test]
    fn systemd_unit_matches_the_real_template_output() {
        let unit = systemd_unit(&svc("", Some("gitlab-runner")), EXEC_PATH);
        assert_eq!(unit, include_str!("../fixtures/gitlab-runner.service"));
    }

    #[test]
    fn init_user_sets_user_and_no_user_argument() {
        let unit = systemd_unit(&svc("gitlab-runner", None), EXEC_PATH);
        assert!(unit.contains("\nUser=gitlab-runner\n"));
        assert!(!unit.contains("\"--user\""));
    }

    #[test]
    fn sysv_script_runs_the_same_arguments() {
        let s = sysv_debian_script(&svc("", Some("gitlab-runner")), EXEC_PATH);
        assert!(s.contains(
            "--exec /usr/bin/gitlab-runner --  \"run\" \"--config\" \"/etc/gitlab-runner/config.toml\""
        ));
        assert!(s.contains("\"--user\" \"gitlab-runner\"\n"));
    }
}
