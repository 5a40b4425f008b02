//! The files `[network]` puts on a host, rendered from the settings, and the
//! rules for proxy URLs and GitLab Runner's certificate file names. No I/O:
//! the same settings always give the same bytes, so a second apply finds
//! every file as it wants it.

/// First line of every file the tool writes for `[network]`: how a later run
/// tells its own files (which it may remove) from the operator's.
pub const MARKER: &str =
    "Managed by runner-provision ([network] of its profile); changes are overwritten.";

/// A proxy URL taken apart: `scheme://[user:password@]host[:port][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    pub scheme: String,
    /// `user:password` as written (percent-encoded), if any.
    pub userinfo: Option<String>,
    pub host: String,
    pub port: u16,
}

/// Parses a proxy URL. The error never quotes the URL (it may hold a password).
pub fn parse_proxy(url: &str) -> Result<ProxyUrl, String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| "not a URL (it needs http:// in front)".to_string())?;
    if scheme != "http" && scheme != "https" {
        return Err(format!("the scheme `{scheme}` is not http or https"));
    }
    if let Some(c) = url
        .chars()
        .find(|c| !c.is_ascii_graphic() || matches!(c, '"' | '\\' | '\'' | '`' | '$' | ';' | '#'))
    {
        return Err(format!(
            "it contains {} (spaces, quotes, `\\`, `$`, `;`, `#` and control characters are not allowed)",
            c.escape_debug()
        ));
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?']) {
        return Err("a proxy URL has no path or query".to_string());
    }
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((userinfo, hostport)) => (Some(userinfo.to_string()), hostport),
        None => (None, authority),
    };
    let (host, port) = match hostport.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || hostport.starts_with('[') => {
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| "the port is not a number from 1 to 65535".to_string())?;
            (host, port)
        }
        _ => (hostport, if scheme == "https" { 443 } else { 80 }),
    };
    if host.is_empty() || host.contains(['@', ':']) && !host.starts_with('[') {
        return Err("it has no host name".to_string());
    }
    Ok(ProxyUrl {
        scheme: scheme.to_string(),
        userinfo,
        host: host.to_string(),
        port,
    })
}

/// `text` with the `user:password@` of every `scheme://` URL in it
/// replaced, for messages that quote text which may hold one.
pub fn hide_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (head, tail) = rest.split_at(at + 3);
        out.push_str(head);
        let authority_end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '/' | '"' | '\'' | '?' | '#'))
            .unwrap_or(tail.len());
        match tail[..authority_end].rfind('@') {
            Some(userinfo_end) => {
                out.push_str("[redacted]@");
                rest = &tail[userinfo_end + 1..];
            }
            None => rest = tail,
        }
    }
    out.push_str(rest);
    out
}

/// The proxy settings every layer gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Proxy {
    pub http: String,
    pub https: String,
    pub no_proxy: Vec<String>,
}

impl Proxy {
    /// The environment variables, upper and lower case (curl and apt read
    /// the lower-case ones, Go programs either), in a fixed order.
    pub fn variables(&self) -> Vec<(&'static str, String)> {
        let no_proxy = self.no_proxy.join(",");
        let mut vars = Vec::new();
        for (upper, lower, value) in [
            ("HTTP_PROXY", "http_proxy", &self.http),
            ("HTTPS_PROXY", "https_proxy", &self.https),
            ("NO_PROXY", "no_proxy", &no_proxy),
        ] {
            if !value.is_empty() {
                vars.push((upper, value.clone()));
                vars.push((lower, value.clone()));
            }
        }
        vars
    }

    pub fn is_empty(&self) -> bool {
        self.http.is_empty() && self.https.is_empty()
    }
}

/// A systemd `EnvironmentFile=` with the proxy variables (values are
/// validated to need no quoting).
pub fn environment_file(proxy: &Proxy) -> String {
    let mut out = format!("# {MARKER}\n");
    for (name, value) in proxy.variables() {
        out.push_str(&format!("{name}={value}\n"));
    }
    out
}

/// A systemd drop-in that loads `environment_file` into the service.
pub fn service_drop_in(environment_file: &str) -> String {
    format!("# {MARKER}\n[Service]\nEnvironmentFile={environment_file}\n")
}

/// The apt.conf drop-in: the proxies, `DIRECT` for the no_proxy entries
/// apt can match (exact host names and addresses; apt has no domain or
/// range matching), and `CaInfo` for the HTTPS hosts given.
pub fn apt_conf(proxy: &Proxy, ca_hosts: &[String], ca_bundle: &str) -> String {
    let mut out = format!("// {MARKER}\n");
    if !proxy.http.is_empty() {
        out.push_str(&format!("Acquire::http::Proxy \"{}\";\n", proxy.http));
    }
    if !proxy.https.is_empty() {
        out.push_str(&format!("Acquire::https::Proxy \"{}\";\n", proxy.https));
    }
    if !proxy.is_empty() {
        for host in proxy.no_proxy.iter().filter(|h| apt_host(h)) {
            for scheme in ["http", "https"] {
                out.push_str(&format!("Acquire::{scheme}::Proxy::{host} \"DIRECT\";\n"));
            }
        }
    }
    for host in ca_hosts {
        out.push_str(&format!(
            "Acquire::https::{host}::CaInfo \"{ca_bundle}\";\n"
        ));
    }
    out
}

/// A no_proxy entry apt can use as a per-host setting.
fn apt_host(entry: &str) -> bool {
    !entry.starts_with(['.', '*'])
        && !entry.contains(['/', ':'])
        && entry
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-'))
}

/// A bundle of certificate blocks behind the marker (Go's and OpenSSL's PEM
/// readers skip text outside the blocks).
pub fn ca_bundle(certificates: &[String]) -> String {
    let mut out = format!("# {MARKER}\n");
    for cert in certificates {
        out.push_str(cert);
    }
    out
}

/// The host part of a URL as GitLab Runner computes it for its certificate
/// folder (`network/client.go`: `strings.Split(url.Host, ":")[0]`): the port
/// is cut off, so `https://gitlab.corp:8443/` reads `gitlab.corp.crt`.
/// `None` for an IPv6 literal, whose cut leaves `[` (GitLab Runner then
/// looks for `[.crt`; pass the CA with --tls-ca-file instead).
pub fn certs_dir_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = authority.split(':').next()?;
    (!host.is_empty() && !host.starts_with('[')).then(|| host.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_urls() {
        let ok: &[(&str, Option<&str>, &str, u16)] = &[
            ("http://proxy.corp:3128", None, "proxy.corp", 3128),
            ("http://proxy.corp:3128/", None, "proxy.corp", 3128),
            ("http://proxy.corp", None, "proxy.corp", 80),
            ("https://proxy.corp", None, "proxy.corp", 443),
            (
                "http://u:p%40ss@127.0.0.1:8888",
                Some("u:p%40ss"),
                "127.0.0.1",
                8888,
            ),
            ("http://[::1]:3128", None, "[::1]", 3128),
        ];
        for (url, userinfo, host, port) in ok {
            let parsed = parse_proxy(url).unwrap_or_else(|e| panic!("{url}: {e}"));
            assert_eq!(parsed.userinfo.as_deref(), *userinfo, "{url}");
            assert_eq!((parsed.host.as_str(), parsed.port), (*host, *port), "{url}");
        }
        let bad = [
            "proxy.corp:3128",
            "socks5://proxy:1080",
            "http://proxy:99999",
            "http://proxy:0",
            "http://:3128",
            "http://proxy/path",
            "http://u:Xsec ret9@proxy:3128",
            "http://u:Xsec\"ret9@proxy:3128",
            "http://u:Xsec$ret9@proxy:3128",
            "http://u:Xsecret9@proxy:x",
            "http://proxy:3128\n",
            "",
        ];
        for url in bad {
            let err = parse_proxy(url).expect_err(url);
            assert!(
                !err.contains("Xsec") && !err.contains("ret9"),
                "{err} quotes the password"
            );
        }
        assert_eq!(
            parse_proxy("http://user:s3cret@p:1")
                .expect("ok")
                .userinfo
                .as_deref(),
            Some("user:s3cret")
        );
        assert_eq!(
            parse_proxy("http://user@p:1")
                .expect("ok")
                .userinfo
                .as_deref(),
            Some("user")
        );
    }

    fn corp() -> Proxy {
        Proxy {
            http: "http://proxy.corp:3128".to_string(),
            https: "http://proxy.corp:3128".to_string(),
            no_proxy: vec![
                "localhost".to_string(),
                "127.0.0.1".to_string(),
                ".corp".to_string(),
                "10.0.0.0/8".to_string(),
            ],
        }
    }

    #[test]
    fn renders() {
        let cases: Vec<(&str, String, String)> = vec![
            (
                "environment file",
                environment_file(&corp()),
                format!(
                    "# {MARKER}\nHTTP_PROXY=http://proxy.corp:3128\nhttp_proxy=http://proxy.corp:3128\nHTTPS_PROXY=http://proxy.corp:3128\nhttps_proxy=http://proxy.corp:3128\nNO_PROXY=localhost,127.0.0.1,.corp,10.0.0.0/8\nno_proxy=localhost,127.0.0.1,.corp,10.0.0.0/8\n"
                ),
            ),
            (
                "environment file, https only",
                environment_file(&Proxy {
                    https: "http://p:1".into(),
                    ..Proxy::default()
                }),
                format!("# {MARKER}\nHTTPS_PROXY=http://p:1\nhttps_proxy=http://p:1\n"),
            ),
            (
                "drop-in",
                service_drop_in("/etc/runner-provision/network.env"),
                format!(
                    "# {MARKER}\n[Service]\nEnvironmentFile=/etc/runner-provision/network.env\n"
                ),
            ),
            (
                "apt: proxies, exact hosts direct, CA for one host",
                apt_conf(
                    &corp(),
                    &["packages.corp".to_string()],
                    "/etc/runner-provision/ca.pem",
                ),
                format!(
                    "// {MARKER}\nAcquire::http::Proxy \"http://proxy.corp:3128\";\nAcquire::https::Proxy \"http://proxy.corp:3128\";\nAcquire::http::Proxy::localhost \"DIRECT\";\nAcquire::https::Proxy::localhost \"DIRECT\";\nAcquire::http::Proxy::127.0.0.1 \"DIRECT\";\nAcquire::https::Proxy::127.0.0.1 \"DIRECT\";\nAcquire::https::packages.corp::CaInfo \"/etc/runner-provision/ca.pem\";\n"
                ),
            ),
            (
                "apt: CA only",
                apt_conf(&Proxy::default(), &["packages.corp".to_string()], "/x.pem"),
                format!("// {MARKER}\nAcquire::https::packages.corp::CaInfo \"/x.pem\";\n"),
            ),
            (
                "bundle",
                ca_bundle(&[
                    "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n".to_string(),
                ]),
                format!(
                    "# {MARKER}\n-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n"
                ),
            ),
        ];
        for (name, got, expected) in cases {
            assert_eq!(got, expected, "case {name}");
        }
        // The same settings give the same bytes.
        assert_eq!(environment_file(&corp()), environment_file(&corp()));
    }

    #[test]
    fn userinfo_is_hidden_in_quoted_text() {
        let cases = [
            ("no url here", "no url here"),
            ("http://proxy:3128", "http://proxy:3128"),
            (
                "2 | http_proxy = \"http://u:s3cret@proxy:3128\n  |  ^",
                "2 | http_proxy = \"http://[redacted]@proxy:3128\n  |  ^",
            ),
            (
                "a http://u:p@x/y and https://v:q@z:1 end",
                "a http://[redacted]@x/y and https://[redacted]@z:1 end",
            ),
            ("https://gitlab.com/a@b", "https://gitlab.com/a@b"),
        ];
        for (text, expected) in cases {
            assert_eq!(hide_userinfo(text), expected, "{text}");
        }
    }

    #[test]
    fn certs_dir_host_follows_gitlab_runner() {
        let cases = [
            ("https://gitlab.corp/", Some("gitlab.corp")),
            ("https://gitlab.corp:8443/", Some("gitlab.corp")),
            ("https://gitlab.corp:8443/sub/path", Some("gitlab.corp")),
            ("http://10.1.2.3:8080", Some("10.1.2.3")),
            ("https://[::1]:8443/", None),
            ("gitlab.corp", None),
        ];
        for (url, expected) in cases {
            assert_eq!(certs_dir_host(url).as_deref(), expected, "{url}");
        }
    }
}
