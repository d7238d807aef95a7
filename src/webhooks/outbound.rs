//! Outbound-address safety: a webhook may only reach public addresses, unless an operator allows
//! a range (`GANTRY_OUTBOUND_ALLOW_CIDRS`, e.g. `127.0.0.0/8` for tests). Checked when a webhook is
//! created and again, on the resolved address, right before each delivery (against DNS
//! rebinding).

use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

/// Ranges that are never a public destination (IANA special-purpose registries, RFC 6890 and
/// successors, as of 2026): loopback, private, shared, link-local, documentation, benchmarking,
/// multicast, reserved, and the IPv6 equivalents, including IPv4-mapped and NAT64 forms.
/// Kept here because no maintained crate ships the registries (`IpAddr::is_global` is still
/// unstable; the crates that copy it are single releases); whole blocks are refused even where
/// the registry carves a reachable piece out (e.g. `192.0.0.9`), erring on the safe side.
const NON_PUBLIC: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.0.2.0/24",
    "192.88.99.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "198.51.100.0/24",
    "203.0.113.0/24",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "255.255.255.255/32",
    "::/128",
    "::1/128",
    "::ffff:0:0/96",
    "64:ff9b::/96",
    "64:ff9b:1::/48",
    "100::/64",
    "2001::/23",
    "2001:db8::/32",
    "3fff::/20",
    "5f00::/16",
    "2002::/16",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

/// Why a destination is refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OutboundError {
    /// Not an absolute http(s) URL with a host.
    #[error("must be an absolute http:// or https:// URL with a host")]
    NotHttp,
    /// Credentials in the URL would leak into logs and deliveries.
    #[error("must not contain a user name or password")]
    Credentials,
    /// The host did not resolve.
    #[error("host {0} does not resolve")]
    Unresolvable(String),
    /// The host resolves to an address that is not public. The message leaves the address out:
    /// it would tell a tenant about the internal network.
    #[error("{host} does not resolve to a public address")]
    NotPublic {
        /// The URL's host.
        host: String,
        /// The offending address.
        addr: IpAddr,
    },
}

/// The outbound policy: public addresses plus the operator's allowed ranges.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allowed: Vec<IpNet>,
}

impl OutboundPolicy {
    /// A policy allowing `allowed` in addition to public addresses.
    pub fn new(allowed: Vec<IpNet>) -> Self {
        Self { allowed }
    }

    /// Parses `GANTRY_OUTBOUND_ALLOW_CIDRS`: comma-separated CIDRs.
    pub fn parse_allow_list(value: &str) -> Result<Vec<IpNet>, String> {
        value
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .map_err(|_| format!("{s:?} is not a CIDR"))
            })
            .collect()
    }

    /// True when `addr` may be contacted.
    pub fn permits(&self, addr: IpAddr) -> bool {
        if self.allowed.iter().any(|net| net.contains(&addr)) {
            return true;
        }
        !NON_PUBLIC
            .iter()
            .filter_map(|range| range.parse::<IpNet>().ok())
            .any(|net| net.contains(&addr))
    }

    /// Checks the URL's shape, resolves its host and checks every address; returns the addresses
    /// (a sender pins the connection to one of them, so DNS cannot change the answer later).
    pub async fn check_url(&self, url: &str) -> Result<Vec<SocketAddr>, OutboundError> {
        let parsed = reqwest::Url::parse(url).map_err(|_| OutboundError::NotHttp)?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(OutboundError::NotHttp);
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(OutboundError::Credentials);
        }
        let host = parsed.host_str().ok_or(OutboundError::NotHttp)?.to_owned();
        let port = parsed
            .port_or_known_default()
            .ok_or(OutboundError::NotHttp)?;
        self.check_host(&host, port).await
    }

    /// Resolves `host` (a name or an IP literal, brackets allowed) and checks every address;
    /// returns the addresses to connect to (health checks' `host:port` targets use this too).
    pub async fn check_host(
        &self,
        host: &str,
        port: u16,
    ) -> Result<Vec<SocketAddr>, OutboundError> {
        let host = host.to_owned();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = match bare.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((bare, port))
                .await
                .map_err(|_| OutboundError::Unresolvable(host.clone()))?
                .collect(),
        };
        if addrs.is_empty() {
            return Err(OutboundError::Unresolvable(host));
        }
        for addr in &addrs {
            // An IPv4-mapped IPv6 address is judged as the IPv4 address it carries.
            let ip = match addr.ip() {
                IpAddr::V6(v6) => v6
                    .to_ipv4_mapped()
                    .map(IpAddr::V4)
                    .unwrap_or(IpAddr::V6(v6)),
                v4 => v4,
            };
            if !self.permits(ip) {
                return Err(OutboundError::NotPublic {
                    host: host.clone(),
                    addr: addr.ip(),
                });
            }
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_parse() {
        for range in NON_PUBLIC {
            assert!(range.parse::<IpNet>().is_ok(), "{range}");
        }
    }

    #[tokio::test]
    async fn refuses_non_public_destinations() {
        let policy = OutboundPolicy::default();
        for url in [
            "http://127.0.0.1/hook",
            "http://localhost:8080/hook",
            "http://10.1.2.3/",
            "http://192.168.1.1/",
            "http://169.254.169.254/latest/meta-data",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://[fd00::1]/",
            "http://0.0.0.0/",
            "http://100.64.0.1/",
            "http://198.18.0.1/",
            "http://240.0.0.1/",
            "http://[2001:db8::1]/",
            "http://[3fff::1]/",
            "http://[5f00::1]/",
            "http://[64:ff9b::a00:1]/",
            "http://[fe80::1]/",
            "http://[ff02::1]/",
        ] {
            assert!(
                matches!(
                    policy.check_url(url).await,
                    Err(OutboundError::NotPublic { .. })
                ),
                "{url}"
            );
        }
        assert_eq!(
            policy.check_url("ftp://example.com/").await,
            Err(OutboundError::NotHttp)
        );
        assert_eq!(
            policy.check_url("https://user:pw@93.184.215.14/").await,
            Err(OutboundError::Credentials)
        );
        assert!(policy.check_url("https://93.184.215.14/hook").await.is_ok());
    }

    #[tokio::test]
    async fn allow_list_opens_a_range() {
        let allowed = OutboundPolicy::parse_allow_list("127.0.0.0/8, ::1/128").expect("valid");
        let policy = OutboundPolicy::new(allowed);
        assert!(policy.check_url("http://127.0.0.1:9000/hook").await.is_ok());
        assert!(policy.check_url("http://10.0.0.1/").await.is_err());
        assert!(OutboundPolicy::parse_allow_list("10.0.0.0/33").is_err());
    }
}
