//! What docker.service gives dockerd as flags: the unit's `ExecStart=`
//! (after its drop-ins) and the daemon.json keys those flags set. dockerd
//! refuses to start when a setting comes both as a flag and from
//! daemon.json (moby#34104: `hosts` beside Debian's and Docker's `-H
//! fd://`), so apply refuses such a key before writing it. No I/O.

/// The command line the unit starts dockerd with: the last `ExecStart=` of
/// `units` (the unit file, then its drop-ins in order; an empty
/// `ExecStart=` clears those before it), with `$DOCKER_OPTS` and
/// `${DOCKER_OPTS}` replaced by `docker_opts` (Debian's unit reads them
/// from /etc/default/docker). `None` when no file sets it.
pub fn exec_start(units: &[&str], docker_opts: &str) -> Option<String> {
    let mut found: Option<String> = None;
    for text in units {
        let mut in_service = false;
        // systemd joins a line that ends in a backslash with the next one.
        let joined = text.replace("\\\n", " ");
        for line in joined.lines().map(str::trim) {
            if line.starts_with('[') {
                in_service = line == "[Service]";
                continue;
            }
            let Some(value) = line.strip_prefix("ExecStart=").filter(|_| in_service) else {
                continue;
            };
            let value = value.trim();
            found = (!value.is_empty()).then(|| value.to_owned());
        }
    }
    found.map(|line| {
        line.replace("${DOCKER_OPTS}", docker_opts)
            .replace("$DOCKER_OPTS", docker_opts)
    })
}

/// The value of `NAME=` in an environment file such as /etc/default/docker
/// (quotes removed; a commented line does not count).
pub fn env_value(text: &str, name: &str) -> Option<String> {
    text.lines()
        .rev()
        .map(str::trim)
        .find_map(|line| line.strip_prefix(name)?.strip_prefix('='))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_owned())
}

/// dockerd's flags whose daemon.json key is not the flag's name.
const KEYS: &[(&str, &str)] = &[
    ("-H", "hosts"),
    ("--host", "hosts"),
    ("-D", "debug"),
    ("-l", "log-level"),
    ("-G", "group"),
    ("-b", "bridge"),
    ("-p", "pidfile"),
    ("-g", "graph"),
    ("--add-runtime", "runtimes"),
    ("--authorization-plugin", "authorization-plugins"),
    ("--default-address-pool", "default-address-pools"),
    ("--default-ulimit", "default-ulimits"),
    ("--dns-opt", "dns-opts"),
    ("--exec-opt", "exec-opts"),
    ("--insecure-registry", "insecure-registries"),
    ("--label", "labels"),
    ("--log-opt", "log-opts"),
    ("--node-generic-resource", "node-generic-resources"),
    ("--registry-mirror", "registry-mirrors"),
    ("--storage-opt", "storage-opts"),
];

/// The daemon.json keys the flags of `command_line` set, each with the
/// flag as written (`-H fd://`), in order.
pub fn flag_keys(command_line: &str) -> Vec<(String, String)> {
    let words: Vec<&str> = command_line
        .split_whitespace()
        .map(|w| w.trim_matches(['"', '\'']))
        .collect();
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate().skip(1) {
        if !word.starts_with('-') || *word == "-" || *word == "--" {
            continue;
        }
        let (flag, inline) = match word.split_once('=') {
            Some((flag, value)) => (flag, Some(value)),
            // `-Hfd://`: a short flag with its value attached.
            None if !word.starts_with("--") && word.len() > 2 => (&word[..2], Some(&word[2..])),
            None => (*word, None),
        };
        let key = KEYS
            .iter()
            .find(|(f, _)| *f == flag)
            .map(|(_, k)| (*k).to_owned())
            .or_else(|| flag.strip_prefix("--").map(str::to_owned));
        let Some(key) = key else { continue };
        let value = inline.or_else(|| {
            words
                .get(i + 1)
                .copied()
                .filter(|next| !next.starts_with('-'))
        });
        let shown = match (inline, value) {
            (Some(_), _) | (None, None) => (*word).to_owned(),
            (None, Some(value)) => format!("{word} {value}"),
        };
        found.push((key, shown));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Debian 12's docker.io 20.10 unit, as the package ships it.
    const DEBIAN: &str = "[Unit]\nDescription=Docker Application Container Engine\nRequires=docker.socket\n\n[Service]\nType=notify\nEnvironmentFile=-/etc/default/docker\nExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock $DOCKER_OPTS\nExecReload=/bin/kill -s HUP $MAINPID\nRestart=on-failure\nStartLimitBurst=3\nStartLimitInterval=60s\n\n[Install]\nWantedBy=multi-user.target\n";

    #[test]
    fn exec_start_of_the_unit_and_its_drop_ins() {
        assert_eq!(
            exec_start(&[DEBIAN], "").as_deref(),
            Some("/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock ")
        );
        assert_eq!(
            exec_start(&[DEBIAN], "--debug").as_deref(),
            Some("/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock --debug")
        );
        // The usual override: clear, then a command line without -H.
        let drop_in = "[Service]\nExecStart=\nExecStart=/usr/sbin/dockerd \\\n  --containerd=/run/containerd/containerd.sock\n";
        assert_eq!(
            exec_start(&[DEBIAN, drop_in], "").as_deref(),
            Some("/usr/sbin/dockerd    --containerd=/run/containerd/containerd.sock")
        );
        // Cleared and not set again: no ExecStart (systemd refuses such a unit).
        assert_eq!(exec_start(&[DEBIAN, "[Service]\nExecStart=\n"], ""), None);
        // Only [Service] counts; a drop-in that sets something else keeps it.
        assert_eq!(exec_start(&["[Unit]\nExecStart=/bin/false\n"], ""), None);
        assert!(
            exec_start(&[DEBIAN, "[Service]\nEnvironment=HTTP_PROXY=x\n"], "")
                .is_some_and(|l| l.contains("-H fd://"))
        );
    }

    #[test]
    fn flags_and_their_keys() {
        let keys = |line: &str| -> Vec<(String, String)> { flag_keys(line) };
        assert_eq!(
            keys("/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock "),
            vec![
                ("hosts".to_owned(), "-H fd://".to_owned()),
                (
                    "containerd".to_owned(),
                    "--containerd=/run/containerd/containerd.sock".to_owned()
                ),
            ]
        );
        assert_eq!(
            keys(
                "dockerd -Hunix:///x.sock --registry-mirror https://m --debug --log-opt max-size=1m"
            ),
            vec![
                ("hosts".to_owned(), "-Hunix:///x.sock".to_owned()),
                (
                    "registry-mirrors".to_owned(),
                    "--registry-mirror https://m".to_owned()
                ),
                ("debug".to_owned(), "--debug".to_owned()),
                ("log-opts".to_owned(), "--log-opt max-size=1m".to_owned()),
            ]
        );
        assert_eq!(
            keys("/usr/bin/dockerd --data-root=/srv/docker"),
            vec![("data-root".to_owned(), "--data-root=/srv/docker".to_owned())]
        );
        // The program itself and plain words are no flags.
        assert!(keys("/usr/bin/dockerd").is_empty());
        assert!(keys("").is_empty());
    }

    #[test]
    fn environment_file_values() {
        let text = "# DOCKER_OPTS=\"--dns 8.8.8.8\"\nDOCKER_OPTS=\"-H tcp://0.0.0.0:2375\"\n";
        assert_eq!(
            env_value(text, "DOCKER_OPTS").as_deref(),
            Some("-H tcp://0.0.0.0:2375")
        );
        assert_eq!(env_value("#DOCKER_OPTS=x\n", "DOCKER_OPTS"), None);
        assert_eq!(env_value("", "DOCKER_OPTS"), None);
    }
}
