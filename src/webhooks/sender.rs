//! Sends one webhook delivery: a signed `POST` of the envelope through a client whose DNS
//! resolver applies the outbound policy at connect time (so a host cannot pass the create-time
//! check and later resolve to an internal address), with no redirects and a bounded timeout.

use super::outbound::OutboundPolicy;
use super::signature_header;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Resolves names and refuses any answer containing a non-permitted address (the outbound
/// policy at connect time, for any reqwest client).
pub struct PolicyResolver {
    policy: OutboundPolicy,
}

impl PolicyResolver {
    /// A resolver enforcing `policy`.
    pub fn new(policy: OutboundPolicy) -> Self {
        Self { policy }
    }
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if let Some(bad) = addrs.iter().find(|a| !policy.permits(unmapped(a.ip()))) {
                return Err(format!("{host} resolves to {}, which is not public", bad.ip()).into());
            }
            let addrs: Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// `ip`, or the IPv4 address an IPv4-mapped IPv6 address carries.
pub fn unmapped(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// A 2xx answer.
    Delivered {
        /// HTTP status.
        status: u16,
    },
    /// Anything else: a non-2xx answer (redirects included: they are not followed), a timeout,
    /// a connection error, or a refused destination.
    Failed {
        /// HTTP status, if a response came.
        status: Option<u16>,
        /// What went wrong.
        error: String,
    },
}

/// A reusable sender.
#[derive(Clone)]
pub struct WebhookSender {
    client: reqwest::Client,
    policy: OutboundPolicy,
}

impl WebhookSender {
    /// A sender with `timeout` per attempt, enforcing `policy`.
    pub fn new(policy: OutboundPolicy, timeout: Duration) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver {
                policy: policy.clone(),
            }))
            // A proxy would resolve the host itself, past the policy resolver.
            .no_proxy()
            .user_agent(concat!("Gantry-Webhooks/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self { client, policy })
    }

    /// POSTs `body` (the envelope JSON) to `url`, signed with `secret`; returns the outcome and
    /// how long it took.
    pub async fn send(
        &self,
        url: &str,
        secret: &str,
        event_type: &str,
        event_id: &str,
        body: Vec<u8>,
    ) -> (AttemptOutcome, Duration) {
        let started = Instant::now();
        // IP-literal hosts never reach the resolver: check them here.
        if let Err(err) = self.check_literal(url) {
            return (
                AttemptOutcome::Failed {
                    status: None,
                    error: err,
                },
                started.elapsed(),
            );
        }
        let timestamp = chrono::Utc::now().timestamp();
        let signature = signature_header(secret, timestamp, &body);
        let result = self
            .client
            .post(url)
            .header("Content-Type", "application/json")
            .header("Gantry-Event", event_type)
            .header("Gantry-Delivery", event_id)
            .header("Gantry-Signature", signature)
            .body(body)
            .send()
            .await;
        let outcome = match result {
            Ok(response) if response.status().is_success() => AttemptOutcome::Delivered {
                status: response.status().as_u16(),
            },
            Ok(response) => AttemptOutcome::Failed {
                status: Some(response.status().as_u16()),
                error: format!("receiver answered {}", response.status()),
            },
            Err(err) => AttemptOutcome::Failed {
                status: None,
                error: describe(&err),
            },
        };
        (outcome, started.elapsed())
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
}

/// The error with its causes, on one line (reqwest hides the useful part in `source()`).
pub(crate) fn describe(err: &reqwest::Error) -> String {
    let mut text = if err.is_timeout() {
        "timed out".to_owned()
    } else {
        err.to_string()
    };
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
