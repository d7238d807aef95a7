//! The webhook sender: claims due pending deliveries with a lease, sends each (signed, policy-
//! checked, bounded), and records the outcome: `delivered`, `pending` again after an
//! exponential-backoff-with-full-jitter delay, or `failed` when no attempts are left. A
//! [`PeriodicTask`] of the `outbox-publisher` role.

use super::backoff::full_jitter;
use super::periodic::{PeriodicTask, Round, Schedule};
use super::WorkerContext;
use crate::outbox::Envelope;
use crate::store::outbox as outbox_store;
use crate::store::webhooks::{self as webhook_store, AttemptRecord, Delivery, DeliveryStatus};
use crate::webhooks::outbound::OutboundPolicy;
use crate::webhooks::sender::{AttemptOutcome, WebhookSender};
use chrono::Utc;
use rocket::futures::stream::{self, StreamExt};
use std::time::Duration;

/// Deliveries claimed per round.
const BATCH: u64 = 50;
/// Wait between rounds when nothing was due.
const IDLE_POLL: Duration = Duration::from_millis(500);

/// The webhook sender as a periodic task.
pub struct WebhookSenderTask {
    ctx: WorkerContext,
    sender: WebhookSender,
    owner: String,
    lease: Duration,
}

impl WebhookSenderTask {
    /// A sender with a unique lease-owner name; fails when the HTTP client cannot be built.
    pub fn new(ctx: WorkerContext) -> Result<Self, reqwest::Error> {
        let config = &ctx.config.webhooks;
        let sender = WebhookSender::new(
            OutboundPolicy::new(ctx.config.outbound_allow.clone()),
            config.timeout,
        )?;
        let owner = format!(
            "webhooks:{}:{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        // Long enough for every attempt of a batch at the configured concurrency.
        let lease = config.timeout * (BATCH as u32).div_ceil(config.concurrency as u32) * 2
            + Duration::from_secs(5);
        Ok(Self {
            ctx,
            sender,
            owner,
            lease,
        })
    }
}

#[async_trait::async_trait]
impl PeriodicTask for WebhookSenderTask {
    const NAME: &'static str = "webhook-sender";
    type Error = sea_orm::DbErr;

    fn schedule(&self) -> Schedule {
        Schedule::every(IDLE_POLL)
    }

    async fn start(&mut self) {
        tracing::info!(owner = %self.owner, "webhook sender started");
    }

    /// Claims a batch of due deliveries and attempts them; attempts in flight are finished
    /// before the round ends.
    async fn round(&mut self) -> Result<Round, sea_orm::DbErr> {
        let (ctx, sender, owner) = (&self.ctx, &self.sender, &self.owner);
        let lease_until = Utc::now()
            + chrono::Duration::from_std(self.lease).unwrap_or(chrono::Duration::minutes(5));
        let due = webhook_store::claim_due_deliveries(&ctx.db, owner, lease_until, BATCH).await?;
        let claimed = due.len();
        stream::iter(due)
            .for_each_concurrent(ctx.config.webhooks.concurrency, |delivery| async move {
                if let Err(err) = attempt(ctx, sender, owner, &delivery).await {
                    tracing::warn!(%err, delivery = %delivery.id, "recording a webhook attempt failed");
                }
            })
            .await;
        Ok(if claimed as u64 == BATCH {
            Round::Again
        } else {
            Round::Idle
        })
    }
}

async fn attempt(
    ctx: &WorkerContext,
    sender: &WebhookSender,
    owner: &str,
    delivery: &Delivery,
) -> Result<(), sea_orm::DbErr> {
    let config = &ctx.config.webhooks;
    let webhook = webhook_store::find_any(&ctx.db, delivery.webhook_id).await?;
    let event = outbox_store::find_by_event_id(&ctx.db, delivery.event_id).await?;
    let (outcome, elapsed) = match (webhook, event) {
        (Some(webhook), Some(event)) if webhook.deleted_at.is_none() => {
            // A secret that does not open (key dropped without rotating) is the database's
            // error here: the attempt stays pending until an operator fixes the keys.
            let secret = webhook
                .signing_secret(&ctx.secrets)
                .map_err(|e| sea_orm::DbErr::Custom(format!("webhook {}: {e}", webhook.id)))?;
            let body = serde_json::to_vec(&Envelope::from(&event)).unwrap_or_default();
            sender
                .send(
                    &webhook.url,
                    &secret,
                    &event.event_type,
                    &event.event_id.to_string(),
                    body,
                )
                .await
        }
        (Some(_), Some(_)) | (None, _) => {
            let record = AttemptRecord {
                status: DeliveryStatus::Failed,
                response_code: None,
                duration_ms: 0,
                error: Some("the webhook was deleted".to_owned()),
                next_attempt_at: None,
            };
            webhook_store::record_attempt(&ctx.db, delivery, owner, &record).await?;
            return Ok(());
        }
        (Some(_), None) => (
            AttemptOutcome::Failed {
                status: None,
                error: "the event is no longer stored".to_owned(),
            },
            Duration::ZERO,
        ),
    };
    let attempts = delivery.attempts as u32 + 1;
    let duration_ms = elapsed.as_millis().min(i32::MAX as u128) as i32;
    let (record, label) = match outcome {
        AttemptOutcome::Delivered { status } => (
            AttemptRecord {
                status: DeliveryStatus::Delivered,
                response_code: Some(i32::from(status)),
                duration_ms,
                error: None,
                next_attempt_at: None,
            },
            "delivered",
        ),
        AttemptOutcome::Failed { status, error } if attempts < config.max_attempts => {
            let delay = full_jitter(config.backoff_base, config.backoff_cap, attempts);
            (
                AttemptRecord {
                    status: DeliveryStatus::Pending,
                    response_code: status.map(i32::from),
                    duration_ms,
                    error: Some(error),
                    next_attempt_at: Some(
                        Utc::now() + chrono::Duration::from_std(delay).unwrap_or_default(),
                    ),
                },
                "retry",
            )
        }
        AttemptOutcome::Failed { status, error } => (
            AttemptRecord {
                status: DeliveryStatus::Failed,
                response_code: status.map(i32::from),
                duration_ms,
                error: Some(error),
                next_attempt_at: None,
            },
            "failed",
        ),
    };
    if webhook_store::record_attempt(&ctx.db, delivery, owner, &record).await? {
        ctx.metrics
            .webhook_deliveries_total
            .with_label_values(&[label])
            .inc();
    }
    Ok(())
}
