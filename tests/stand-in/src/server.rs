//! Talking to GitLab, for real, where the test allows it.
//!
//! The real `gitlab-runner register` POSTs to `<url>/api/v4/runners` (or
//! `/api/v4/runners/verify` for a `glrt-` token) through the proxy of
//! `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY` (Go's `http.ProxyFromEnvironment`)
//! and verifies the server's certificate against the system's CAs plus the
//! CA file (`--tls-ca-file`, else `<certs dir>/<host>.crt` where `<host>` is
//! the URL's host with the port cut off: `network/client.go`). This one
//! does the same, but only when the URL's host resolves to loopback
//! addresses: tests never reach any other address. Elsewhere registration
//! stays offline, as before.

use std::net::ToSocketAddrs;
use std::path::PathBuf;
use std::time::Duration;

use crate::Ctx;

/// GitLab Runner's certificate folder (`CertificateDirectory`).
fn certificate_directory(ctx: &Ctx) -> PathBuf {
    if ctx.uid == 0 {
        return PathBuf::from("/etc/gitlab-runner/certs");
    }
    let home = ctx.env.get("HOME").cloned().unwrap_or_default();
    PathBuf::from(home).join(".gitlab-runner/certs")
}

/// `scheme`, `host` (port cut off) and `host:port` of a URL.
fn split(url: &str) -> Option<(String, String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority = rest.split(['/', '?', '#']).next()?.to_string();
    let host = authority.split(':').next()?.to_string();
    let port = if scheme == "https" { 443 } else { 80 };
    let host_port = if authority.contains(':') {
        authority.clone()
    } else {
        format!("{authority}:{port}")
    };
    Some((scheme.to_string(), host, host_port))
}

/// Does every address of `host_port` belong to loopback? (A name that does
/// not resolve is not contacted either.)
fn loopback_only(host_port: &str) -> bool {
    match host_port.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        }
        Err(_) => false,
    }
}

/// Go's proxy choice: the scheme's variable (upper case first), unless
/// NO_PROXY matches the host.
fn proxy_for(ctx: &Ctx, scheme: &str, host: &str) -> Option<String> {
    let get = |names: &[&str]| {
        names
            .iter()
            .find_map(|n| ctx.env.get(*n).filter(|v| !v.is_empty()).cloned())
    };
    if host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    {
        return None;
    }
    let no_proxy = get(&["NO_PROXY", "no_proxy"]).unwrap_or_default();
    let bypass = no_proxy.split(',').map(str::trim).any(|entry| {
        !entry.is_empty()
            && (entry == "*"
                || entry == host
                || (entry.starts_with('.') && host.ends_with(entry))
                || host.ends_with(&format!(".{entry}")))
    });
    if bypass {
        return None;
    }
    match scheme {
        "https" => get(&["HTTPS_PROXY", "https_proxy"]),
        _ => get(&["HTTP_PROXY", "http_proxy"]),
    }
}

/// What contacting GitLab came to.
pub enum Contact {
    /// The URL is not on loopback: registration stays offline.
    Offline,
    Answered,
}

/// POSTs to `<url>/api/v4/<path>` as the real client would. `Err` is the
/// text the real one puts after `status=`.
pub fn post(ctx: &Ctx, url: &str, path: &str, tls_ca_file: &str) -> Result<Contact, String> {
    let Some((scheme, host, host_port)) = split(url) else {
        return Ok(Contact::Offline);
    };
    if !loopback_only(&host_port) {
        return Ok(Contact::Offline);
    }
    let endpoint = format!("{}/api/v4/{path}", url.trim_end_matches('/'));
    let ca_file = if tls_ca_file.is_empty() {
        let candidate = certificate_directory(ctx).join(format!("{host}.crt"));
        candidate.exists().then_some(candidate)
    } else {
        Some(PathBuf::from(tls_ca_file))
    };
    let mut roots = Vec::new();
    let system = std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap_or_default();
    let extra = ca_file
        .as_ref()
        .and_then(|f| std::fs::read(f).ok())
        .unwrap_or_default();
    for item in ureq::tls::parse_pem(&system).chain(ureq::tls::parse_pem(&extra)) {
        if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
            roots.push(cert);
        }
    }
    let mut config = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(30)))
        .http_status_as_error(false)
        .tls_config(
            ureq::tls::TlsConfig::builder()
                .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
                .build(),
        )
        .proxy(None);
    if let Some(proxy) = proxy_for(ctx, &scheme, &host) {
        let proxy = ureq::Proxy::new(&proxy).map_err(|e| format!("proxyconnect tcp: {e}"))?;
        config = config.proxy(Some(proxy));
    }
    let agent: ureq::Agent = config.build().into();
    let failed =
        |e: String| format!("couldn't execute POST against {endpoint}: Post \"{endpoint}\": {e}");
    let response = agent
        .post(&endpoint)
        .header("Content-Type", "application/json")
        .send("{}")
        .map_err(|e| failed(go_words(&e)))?;
    let status = response.status().as_u16();
    if (200..300).contains(&status) {
        Ok(Contact::Answered)
    } else {
        Err(format!(
            "{status} {}",
            response.status().canonical_reason().unwrap_or("")
        ))
    }
}

/// The error as Go's crypto/tls and net/http word it, where they differ.
fn go_words(e: &ureq::Error) -> String {
    let text = e.to_string();
    if text.contains("UnknownIssuer") {
        "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            .to_string()
    } else if text.contains("NotValidForName") {
        "tls: failed to verify certificate: x509: certificate is not valid for this name"
            .to_string()
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(env: &[(&str, &str)]) -> Ctx {
        let mut ctx = Ctx::from_process();
        ctx.env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        ctx
    }

    #[test]
    fn port_is_cut_from_the_certificate_file_name() {
        assert_eq!(
            split("https://gitlab.corp:8443/x"),
            Some((
                "https".into(),
                "gitlab.corp".into(),
                "gitlab.corp:8443".into()
            ))
        );
        assert_eq!(
            split("https://gitlab.corp/"),
            Some((
                "https".into(),
                "gitlab.corp".into(),
                "gitlab.corp:443".into()
            ))
        );
    }

    #[test]
    fn proxy_choice_follows_go() {
        let c = ctx(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("NO_PROXY", "localhost,.internal,skip.me"),
        ]);
        assert_eq!(
            proxy_for(&c, "https", "gitlab.corp").as_deref(),
            Some("http://p:1")
        );
        assert_eq!(proxy_for(&c, "http", "gitlab.corp"), None);
        assert_eq!(proxy_for(&c, "https", "a.internal"), None);
        assert_eq!(proxy_for(&c, "https", "skip.me"), None);
        assert_eq!(proxy_for(&c, "https", "127.0.0.1"), None);
        let lower = ctx(&[("https_proxy", "http://q:2")]);
        assert_eq!(
            proxy_for(&lower, "https", "x").as_deref(),
            Some("http://q:2")
        );
    }

    #[test]
    fn addresses_other_than_loopback_are_never_contacted() {
        let c = ctx(&[]);
        // Not resolvable, or not loopback: offline, without a connection.
        assert!(matches!(
            post(&c, "https://gitlab.invalid/", "runners", ""),
            Ok(Contact::Offline)
        ));
        assert!(matches!(
            post(&c, "https://192.0.2.1/", "runners", ""),
            Ok(Contact::Offline)
        ));
    }
}
