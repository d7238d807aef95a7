//! Running one check: an HTTP request, a TCP connect, a DNS query or a TLS handshake, bounded by
//! the check's timeout, with the outbound-address policy applied at connect time (the resolved
//! address, so DNS cannot swap in an internal one after the create-time check).

use crate::domain::health::{CheckKind, Observation};
use crate::resources::health::{split_host_port, DnsTarget};
use crate::store::health_checks::HealthCheck;
use crate::webhooks::outbound::OutboundPolicy;
use crate::webhooks::sender::{unmapped, PolicyResolver};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Most body bytes kept for conditions.
const MAX_BODY: usize = 64 * 1024;

/// Runs checks; one per poller process, shared by its in-flight checks.
#[derive(Clone)]
pub struct Prober {
    http: reqwest::Client,
    policy: OutboundPolicy,
    roots: Arc<rustls::RootCertStore>,
}

impl Prober {
    /// A prober enforcing `policy`.
    pub fn new(policy: OutboundPolicy) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver::new(policy.clone())))
            // A proxy would resolve the host itself, past the policy resolver.
            .no_proxy()
            .tls_info(true)
            .pool_max_idle_per_host(4)
            .user_agent(concat!("Gantry-Health/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        Ok(Self {
            http,
            policy,
            roots: Arc::new(roots),
        })
    }

    /// Runs `check` once within its timeout.
    pub async fn probe(&self, check: &HealthCheck) -> Observation {
        let timeout = Duration::from_millis(check.timeout_ms.max(1) as u64);
        let started = Instant::now();
        let run = async {
            match CheckKind::parse(&check.kind) {
                Some(CheckKind::Http) => self.http_probe(check, timeout).await,
                Some(CheckKind::Tcp) => self.tcp_probe(&check.target).await,
                Some(CheckKind::Tls) => self.tls_probe(&check.target).await,
                Some(CheckKind::Dns) => self.dns_probe(check, timeout).await,
                None => failed(format!("unknown check kind {:?}", check.kind)),
            }
        };
        let mut seen = match tokio::time::timeout(timeout, run).await {
            Ok(seen) => seen,
            Err(_) => failed(format!("timed out after {}ms", timeout.as_millis())),
        };
        seen.response_time = started.elapsed();
        seen
    }

    async fn http_probe(&self, check: &HealthCheck, timeout: Duration) -> Observation {
        // IP-literal hosts never reach the resolver: check them here.
        if let Err(err) = self.check_literal(&check.target) {
            return failed(err);
        }
        let method = check.spec["method"]
            .as_str()
            .and_then(|m| reqwest::Method::from_bytes(m.as_bytes()).ok())
            .unwrap_or(reqwest::Method::GET);
        let mut request = self.http.request(method, &check.target).timeout(timeout);
        if let Some(headers) = check.spec["headers"].as_object() {
            for (name, value) in headers {
                if let Some(value) = value.as_str() {
                    request = request.header(name.as_str(), value);
                }
            }
        }
        if let Some(body) = check.spec["body"].as_str() {
            request = request.body(body.to_owned());
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => return failed(crate::webhooks::sender::describe(&err)),
        };
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let certificate_expiry = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|info| info.peer_certificate())
            .and_then(expiry_of);
        let body = read_body(response).await;
        Observation {
            answered: true,
            status: Some(status),
            body: Some(body),
            headers,
            certificate_expiry,
            ..Observation::default()
        }
    }

    fn check_literal(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL: {e}"))?;
        let host = parsed.host_str().unwrap_or_default();
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        match bare.parse::<IpAddr>() {
            Ok(ip) if !self.policy.permits(unmapped(ip)) => {
                Err(format!("{ip} is not a public address"))
            }
            _ => Ok(()),
        }
    }

    /// Resolves `target` under the policy and connects to its first address.
    async fn connect(&self, target: &str) -> Result<(String, tokio::net::TcpStream), String> {
        let (host, port) = split_host_port(target).ok_or("target is not host:port")?;
        let addrs = self
            .policy
            .check_host(&host, port)
            .await
            .map_err(|e| e.to_string())?;
        let mut last = String::from("no address");
        for addr in addrs {
            match tokio::net::TcpStream::connect(addr).await {
                Ok(stream) => return Ok((host, stream)),
                Err(err) => last = format!("connect {addr}: {err}"),
            }
        }
        Err(last)
    }

    async fn tcp_probe(&self, target: &str) -> Observation {
        match self.connect(target).await {
            Ok(_) => Observation {
                answered: true,
                ..Observation::default()
            },
            Err(err) => failed(err),
        }
    }

    async fn tls_probe(&self, target: &str) -> Observation {
        let (host, stream) = match self.connect(target).await {
            Ok(connected) => connected,
            Err(err) => return failed(err),
        };
        let Ok(name) = ServerName::try_from(host.clone()) else {
            return failed(format!("{host} is not a valid TLS server name"));
        };
        let verifier =
            match rustls::client::WebPkiServerVerifier::builder(self.roots.clone()).build() {
                Ok(inner) => Arc::new(RecordingVerifier {
                    inner,
                    seen: Mutex::new(None),
                }),
                Err(err) => return failed(format!("TLS verifier: {err}")),
            };
        let config = rustls::ClientConfig::builder()
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone())
            .with_no_client_auth();
        let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
        if let Err(err) = connector.connect(name, stream).await {
            return failed(format!("TLS handshake: {err}"));
        }
        let seen = verifier.seen.lock().map(|s| s.clone()).unwrap_or(None);
        let (certificate_expiry, hostname_valid) = match seen {
            Some((der, valid)) => (expiry_of(&der), Some(valid)),
            None => (None, None),
        };
        Observation {
            answered: true,
            certificate_expiry,
            hostname_valid,
            ..Observation::default()
        }
    }

    async fn dns_probe(&self, check: &HealthCheck, timeout: Duration) -> Observation {
        use hickory_resolver::config::{NameServerConfigGroup, ResolverConfig};
        use hickory_resolver::name_server::TokioConnectionProvider;
        use hickory_resolver::proto::rr::RecordType;
        use hickory_resolver::proto::ProtoErrorKind;
        let Ok(dns) = serde_json::from_value::<DnsTarget>(check.spec["dns"].clone()) else {
            return failed("stored DNS target is malformed".to_owned());
        };
        let record_type = match dns.record_type.as_str() {
            "AAAA" => RecordType::AAAA,
            "CNAME" => RecordType::CNAME,
            "MX" => RecordType::MX,
            "TXT" => RecordType::TXT,
            _ => RecordType::A,
        };
        let provider = TokioConnectionProvider::default();
        let mut builder = match &dns.resolver {
            Some(resolver) => {
                let Ok(addr) = resolver.parse::<std::net::SocketAddr>() else {
                    return failed(format!("{resolver} is not ip:port"));
                };
                if !self.policy.permits(unmapped(addr.ip())) {
                    return failed(format!("resolver {} is not a public address", addr.ip()));
                }
                let group = NameServerConfigGroup::from_ips_clear(&[addr.ip()], addr.port(), true);
                hickory_resolver::Resolver::builder_with_config(
                    ResolverConfig::from_parts(None, vec![], group),
                    provider,
                )
            }
            None => match hickory_resolver::Resolver::builder(provider) {
                Ok(builder) => builder,
                Err(err) => return failed(format!("system resolver: {err}")),
            },
        };
        let options = builder.options_mut();
        options.timeout = timeout;
        options.attempts = 1;
        options.cache_size = 0;
        let resolver = builder.build();
        match resolver.lookup(dns.name.as_str(), record_type).await {
            Ok(lookup) => Observation {
                answered: true,
                rcode: Some("NOERROR".to_owned()),
                answers: lookup.iter().map(|r| r.to_string()).collect(),
                ..Observation::default()
            },
            Err(err) => match err.proto().map(|p| p.kind()) {
                Some(ProtoErrorKind::NoRecordsFound { response_code, .. }) => Observation {
                    answered: true,
                    rcode: Some(format!("{response_code:?}").to_ascii_uppercase()),
                    ..Observation::default()
                },
                _ => failed(format!("DNS: {err}")),
            },
        }
    }
}

fn failed(error: String) -> Observation {
    Observation {
        error: Some(error),
        ..Observation::default()
    }
}

/// Reads up to [`MAX_BODY`] bytes of the body.
async fn read_body(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = MAX_BODY.saturating_sub(bytes.len());
        bytes.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if bytes.len() >= MAX_BODY {
            break;
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

/// Time left until the DER certificate's `notAfter`.
fn expiry_of(der: &[u8]) -> Option<chrono::Duration> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let not_after = cert.validity().not_after.timestamp();
    Some(chrono::Duration::seconds(
        not_after - chrono::Utc::now().timestamp(),
    ))
}

/// Verifies like WebPKI but accepts any certificate, recording the leaf and whether it
/// verified: a `tls` check reports `hostname_valid` and `certificate_expiry` of a bad
/// certificate instead of only failing the handshake.
#[derive(Debug)]
struct RecordingVerifier {
    inner: Arc<rustls::client::WebPkiServerVerifier>,
    seen: Mutex<Option<(Vec<u8>, bool)>>,
}

impl ServerCertVerifier for RecordingVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let valid = self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
            .is_ok();
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((end_entity.to_vec(), valid));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}
