//! The notifier: claims due notifications with a lease (`FOR UPDATE SKIP LOCKED` on Postgres),
//! sends each channel's group as one message (incidents opened within a rule's `group_wait`
//! share a due time, so they are claimed together), and records the outcome on the row, which
//! `GET …/incidents/{id}` shows. Failures are retried with exponential backoff and full jitter
//! up to `GANTRY_NOTIFY_MAX_ATTEMPTS`.

use super::channels::{AlertItem, ChannelSender};
use crate::store::{self, incidents};
use crate::workers::backoff::full_jitter;
use crate::workers::periodic::{PeriodicTask, Round, Schedule};
use crate::workers::WorkerContext;
use sea_orm::DbErr;
use std::collections::BTreeMap;
use std::time::Duration;

/// Notifications claimed per round.
const BATCH: u64 = 100;

/// Sends recorded notifications.
pub struct Notifier {
    ctx: WorkerContext,
    owner: String,
    sender: Option<ChannelSender>,
}

impl Notifier {
    /// A notifier for this process.
    pub fn new(ctx: WorkerContext) -> Self {
        let policy =
            crate::webhooks::outbound::OutboundPolicy::new(ctx.config.outbound_allow.clone());
        let sender = match ChannelSender::new(policy, ctx.config.health.clone()) {
            Ok(sender) => Some(sender),
            Err(err) => {
                tracing::error!(%err, "cannot build the alert HTTP client; notifications are not sent");
                None
            }
        };
        Self {
            owner: format!("notifier-{}", uuid::Uuid::new_v4().simple()),
            ctx,
            sender,
        }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for Notifier {
    const NAME: &'static str = "health-notifier";
    type Error = DbErr;

    fn schedule(&self) -> Schedule {
        let interval = self.ctx.config.health.poll_interval;
        Schedule {
            interval,
            jitter: interval / 5,
            after_error: interval.max(Duration::from_secs(1)),
        }
    }

    async fn round(&mut self) -> Result<Round, DbErr> {
        let Some(sender) = self.sender.clone() else {
            return Ok(Round::Idle);
        };
        let lease = self.ctx.config.health.notify_timeout * 3 + Duration::from_secs(5);
        let until = store::now() + chrono::Duration::from_std(lease).unwrap_or_default();
        let claimed =
            incidents::claim_due_notifications(&self.ctx.db, &self.owner, until, BATCH).await?;
        let full = claimed.len() as u64 == BATCH;
        let mut groups: BTreeMap<uuid::Uuid, Vec<incidents::Notification>> = BTreeMap::new();
        for notification in claimed {
            groups
                .entry(notification.channel_id)
                .or_default()
                .push(notification);
        }
        for (channel_id, group) in groups {
            self.send_group(&sender, channel_id, group).await?;
        }
        Ok(if full { Round::Again } else { Round::Idle })
    }
}

impl Notifier {
    async fn send_group(
        &self,
        sender: &ChannelSender,
        channel_id: uuid::Uuid,
        group: Vec<incidents::Notification>,
    ) -> Result<(), DbErr> {
        let db = &self.ctx.db;
        let channel = store::alerts::find_channel_any(db, channel_id)
            .await?
            .filter(|c| c.deleted_at.is_none());
        let Some(channel) = channel else {
            for n in &group {
                incidents::record_attempt(
                    db,
                    n,
                    &self.owner,
                    incidents::FAILED,
                    Some("the alert channel was deleted".to_owned()),
                    None,
                )
                .await?;
            }
            return Ok(());
        };
        let mut items = Vec::new();
        for n in &group {
            let Some(incident) = incidents::find_any(db, n.incident_id).await? else {
                continue;
            };
            let check = store::health_checks::find_any(db, incident.check_id).await?;
            items.push(AlertItem {
                incident_id: incident.id,
                check_id: incident.check_id,
                check_name: check.as_ref().map(|c| c.name.clone()).unwrap_or_default(),
                transition: n.transition.clone(),
                cause: incident.cause.clone(),
                target: check.map(|c| c.target).unwrap_or_default(),
            });
        }
        let message_id = group.first().map(|n| n.id.to_string()).unwrap_or_default();
        let outcome = sender.send(&channel, &items, &message_id).await;
        let config = &self.ctx.config.health;
        for n in &group {
            let (status, error, next) = match &outcome {
                Ok(()) => (incidents::SENT, None, None),
                Err(err) if (n.attempts + 1) as u32 >= config.notify_max_attempts => {
                    (incidents::FAILED, Some(err.clone()), None)
                }
                Err(err) => {
                    let delay = full_jitter(
                        config.notify_backoff_base,
                        config.notify_backoff_cap,
                        (n.attempts + 1) as u32,
                    );
                    let next = store::now() + chrono::Duration::from_std(delay).unwrap_or_default();
                    (incidents::PENDING, Some(err.clone()), Some(next))
                }
            };
            let result = match status {
                incidents::SENT => "sent",
                incidents::FAILED => "failed",
                _ => "retry",
            };
            self.ctx
                .metrics
                .notifications_total
                .with_label_values(&[channel.kind.as_str(), result])
                .inc();
            if let Some(err) = &error {
                tracing::warn!(notification = %n.id, channel = %channel.id, %err, result, "notification attempt failed");
            }
            incidents::record_attempt(db, n, &self.owner, status, error, next).await?;
        }
        Ok(())
    }
}
