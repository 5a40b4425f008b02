//! The tool's own HTTP (repository probes, key downloads): through the
//! profile's proxy, trusting its CA certificates besides the system's. Used
//! by [`RealSystem`](super::system::RealSystem) only.

use std::time::Duration;

use anyhow::{Context, Result};

/// How the tool's own requests reach the network.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HttpNetwork {
    pub http_proxy: String,
    pub https_proxy: String,
    pub no_proxy: Vec<String>,
    /// PEM certificate blocks to trust besides the system's.
    pub ca_certificates: Vec<String>,
}

/// The system's bundle, as Debian's ca-certificates writes it.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// An agent for `url`: its scheme's proxy (none: ureq's default, which
/// reads the environment), and the CA certificates when there are any.
pub fn agent(network: &HttpNetwork, url: &str, timeout: Duration) -> Result<ureq::Agent> {
    let mut config = ureq::Agent::config_builder().timeout_global(Some(timeout));
    let proxy = if url.starts_with("https:") {
        &network.https_proxy
    } else {
        &network.http_proxy
    };
    if !proxy.is_empty() {
        let parsed = crate::edit::network::parse_proxy(proxy)
            .map_err(|e| anyhow::anyhow!("the proxy URL: {e}"))?;
        let mut builder = ureq::Proxy::builder(ureq::ProxyProtocol::Http)
            .host(&parsed.host)
            .port(parsed.port);
        if let Some((user, password)) = parsed.userinfo.as_deref().and_then(|u| u.split_once(':')) {
            builder = builder.username(user).password(password);
        }
        for entry in &network.no_proxy {
            builder = builder.no_proxy(entry);
        }
        let proxy = builder
            .build()
            .map_err(|e| anyhow::anyhow!("the proxy URL: {e}"))?;
        config = config.proxy(Some(proxy));
    }
    if !network.ca_certificates.is_empty() {
        let system = std::fs::read(SYSTEM_BUNDLE).unwrap_or_default();
        let extra = network.ca_certificates.concat();
        let mut roots = Vec::new();
        for item in ureq::tls::parse_pem(&system).chain(ureq::tls::parse_pem(extra.as_bytes())) {
            if let Ok(ureq::tls::PemItem::Certificate(cert)) = item {
                roots.push(cert);
            }
        }
        let tls = ureq::tls::TlsConfig::builder()
            .root_certs(ureq::tls::RootCerts::new_with_certs(&roots))
            .build();
        config = config.tls_config(tls);
    }
    Ok(config.build().into())
}

/// A TCP connection to `host:port` opens within `timeout` (for a proxy
/// that must answer before anything changes).
pub fn connect(host: &str, port: u16, timeout: Duration) -> Result<()> {
    use std::net::ToSocketAddrs;
    let name = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = (name, port)
        .to_socket_addrs()
        .with_context(|| format!("resolving {host}"))?
        .collect();
    let mut last = None;
    for addr in addrs {
        match std::net::TcpStream::connect_timeout(&addr, timeout) {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e).with_context(|| format!("connecting to {host}:{port}")),
        None => anyhow::bail!("{host} has no address"),
    }
}
