//! Sending one message to one alert channel: `webhook` (signed like webhooks), `slack`
//! (incoming-webhook JSON), `email` (SMTP via lettre), `pagerduty` (Events API v2, one event per
//! incident with `dedup_key` = incident id). Every URL goes through the outbound policy.

use crate::config::HealthConfig;
use crate::store::alerts::Channel;
use crate::webhooks::outbound::OutboundPolicy;
use crate::webhooks::sender::{AttemptOutcome, PolicyResolver, WebhookSender};
use serde_json::json;
use std::sync::Arc;

/// One incident in a message.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AlertItem {
    /// The incident.
    pub incident_id: uuid::Uuid,
    /// The check.
    pub check_id: uuid::Uuid,
    /// The check's name.
    pub check_name: String,
    /// `opened`, `resolved`, `repeat-N`, `test`.
    pub transition: String,
    /// `down` or `degraded`.
    pub cause: String,
    /// The check's target.
    pub target: String,
}

/// Sends messages to channels.
#[derive(Clone)]
pub struct ChannelSender {
    http: reqwest::Client,
    webhooks: WebhookSender,
    config: HealthConfig,
}

impl ChannelSender {
    /// A sender enforcing `policy`.
    pub fn new(policy: OutboundPolicy, config: HealthConfig) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .timeout(config.notify_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(PolicyResolver::new(policy.clone())))
            // A proxy would resolve the host itself, past the policy resolver.
            .no_proxy()
            .user_agent(concat!("Gantry-Alerts/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let webhooks = WebhookSender::new(policy, config.notify_timeout)?;
        Ok(Self {
            http,
            webhooks,
            config,
        })
    }

    /// Sends `items` (one group) to `channel`; `Err` says why it failed.
    pub async fn send(
        &self,
        channel: &Channel,
        items: &[AlertItem],
        message_id: &str,
    ) -> Result<(), String> {
        let url = channel.config["url"].as_str().map(str::to_owned);
        match channel.kind.as_str() {
            "webhook" => {
                let url = url.ok_or("channel has no url")?;
                let body = json!({
                    "type": "health.notification",
                    "id": message_id,
                    "channel_id": channel.id,
                    "incidents": items,
                });
                let (outcome, _) = self
                    .webhooks
                    .send(
                        &url,
                        channel.secret.as_deref().unwrap_or_default(),
                        "health.notification",
                        message_id,
                        body.to_string().into_bytes(),
                    )
                    .await;
                match outcome {
                    AttemptOutcome::Delivered { .. } => Ok(()),
                    AttemptOutcome::Failed { error, .. } => Err(error),
                }
            }
            "slack" => {
                let url = url.ok_or("channel has no url")?;
                self.post(&url, &json!({ "text": summary(items) })).await
            }
            "pagerduty" => {
                let url = url.unwrap_or_else(|| self.config.pagerduty_url.clone());
                let key = channel.config["routing_key"].as_str().unwrap_or_default();
                for item in items {
                    let action = if item.transition == "resolved" {
                        "resolve"
                    } else {
                        "trigger"
                    };
                    let event = json!({
                        "routing_key": key,
                        "event_action": action,
                        "dedup_key": item.incident_id,
                        "payload": {
                            "summary": line(item),
                            "source": item.target,
                            "severity": if item.cause == "down" { "critical" } else { "warning" },
                            "custom_details": item,
                        },
                    });
                    self.post(&url, &event).await?;
                }
                Ok(())
            }
            "email" => self.email(channel, items).await,
            other => Err(format!("unknown channel kind {other:?}")),
        }
    }

    async fn post(&self, url: &str, body: &serde_json::Value) -> Result<(), String> {
        let response = self
            .http
            .post(url)
            .json(body)
            .send()
            .await
            .map_err(|e| crate::webhooks::sender::describe(&e))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("receiver answered {}", response.status()))
        }
    }

    async fn email(&self, channel: &Channel, items: &[AlertItem]) -> Result<(), String> {
        use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
        let smtp = self
            .config
            .smtp_url
            .as_deref()
            .ok_or("GANTRY_SMTP_URL is not configured")?;
        let parsed = reqwest::Url::parse(smtp).map_err(|e| format!("GANTRY_SMTP_URL: {e}"))?;
        let host = parsed.host_str().ok_or("GANTRY_SMTP_URL has no host")?;
        let port = parsed.port().unwrap_or(25);
        let to: Vec<String> =
            serde_json::from_value(channel.config["to"].clone()).unwrap_or_default();
        let mut message = Message::builder()
            .from(
                self.config
                    .smtp_from
                    .parse()
                    .map_err(|e| format!("GANTRY_SMTP_FROM: {e}"))?,
            )
            .subject(format!("[Gantry] {}", headline(items)));
        for address in &to {
            message = message.to(address.parse().map_err(|e| format!("{address}: {e}"))?);
        }
        let message = message
            .body(summary(items))
            .map_err(|e| format!("building the email: {e}"))?;
        let transport = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host)
            .port(port)
            .timeout(Some(self.config.notify_timeout))
            .build();
        transport
            .send(message)
            .await
            .map(|_| ())
            .map_err(|e| format!("SMTP: {e}"))
    }
}

fn line(item: &AlertItem) -> String {
    match item.transition.as_str() {
        "resolved" => format!(
            "RESOLVED: {} ({}) is up again",
            item.check_name, item.target
        ),
        "test" => "Test notification from Gantry".to_owned(),
        _ => format!(
            "{}: {} ({}) is {}",
            item.cause.to_ascii_uppercase(),
            item.check_name,
            item.target,
            item.cause
        ),
    }
}

fn headline(items: &[AlertItem]) -> String {
    match items {
        [one] => line(one),
        many => format!("{} health incidents", many.len()),
    }
}

fn summary(items: &[AlertItem]) -> String {
    items.iter().map(line).collect::<Vec<_>>().join("\n")
}
