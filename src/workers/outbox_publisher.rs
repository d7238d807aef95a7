//! The outbox publisher: claims unpublished events in id order with a lease, routes each one,
//! then marks it published.
//!
//! Routing: command events (see `workers::registry::queue_for_event`) become jobs on their queue, with
//! the event id as job id; every event is appended to the Redis stream (`XADD … MAXLEN ~ n`) when Redis
//! is configured (without Redis the events API and SSE read the outbox directly), and a pending
//! `webhook_deliveries` row is recorded for each matching webhook, in the same transaction that
//! marks the batch published. Delivery is at-least-once: a publisher that dies between `XADD` and the
//! mark leaves its batch leased; once the lease expires another publisher routes it again, and
//! consumers deduplicate by event `id`. A [`PeriodicTask`]: woken by `NOTIFY` on Postgres, polling
//! every `GANTRY_OUTBOX_POLL_INTERVAL` otherwise.

use super::periodic::{PeriodicTask, Round, Schedule};
use super::WorkerContext;
use crate::jobs::NewJob;
use crate::outbox::Envelope;
use crate::store::outbox::{self as outbox_store, StoredEvent};
use crate::store::webhooks::{self as webhook_store, Webhook};
use chrono::Utc;
use sea_orm::sqlx::postgres::PgListener;
use sea_orm::DatabaseBackend;
use std::collections::hash_map::{Entry, HashMap};
use std::time::{Duration, Instant};

/// Postgres channel the outbox trigger notifies on commit.
pub const NOTIFY_CHANNEL: &str = "gantry_outbox";
/// Pause between an in-process commit signal (SQLite) and the round it wakes.
const COMMIT_SETTLE: Duration = Duration::from_millis(1);
/// How often the backlog gauge is refreshed while busy.
const BACKLOG_REFRESH: Duration = Duration::from_secs(1);
/// Pause after a failed round (database or Redis down) before trying again.
const ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Why a publishing round failed; the batch's lease is released so it is retried at once.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The database refused a claim or a mark.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Redis refused the stream append.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// A job queue refused the command events.
    #[error("{0}")]
    Queue(#[from] crate::jobs::QueueError),
}

/// One publisher: a lease owner with its connections.
pub struct OutboxPublisher {
    ctx: WorkerContext,
    owner: String,
    redis: Option<redis::aio::MultiplexedConnection>,
    /// `LISTEN` on [`NOTIFY_CHANNEL`] (Postgres), set up when the task starts.
    listener: Option<PgListener>,
    backlog_refreshed: Option<Instant>,
}

impl OutboxPublisher {
    /// A publisher with a unique lease-owner name.
    pub fn new(ctx: WorkerContext) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "gantry".to_owned());
        let owner = format!(
            "{host}:{}:{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            ctx,
            owner,
            redis: None,
            listener: None,
            backlog_refreshed: None,
        }
    }

    async fn redis(
        &mut self,
    ) -> Result<Option<&mut redis::aio::MultiplexedConnection>, PublishError> {
        let Some(client) = &self.ctx.redis else {
            return Ok(None);
        };
        if self.redis.is_none() {
            self.redis = Some(client.get_multiplexed_async_connection().await?);
        }
        Ok(self.redis.as_mut())
    }

    /// Claims, routes and marks one batch; returns how many events it published.
    pub async fn publish_batch(&mut self) -> Result<usize, PublishError> {
        let config = &self.ctx.config.outbox;
        let lease_until = Utc::now()
            + chrono::Duration::from_std(config.lease).unwrap_or(chrono::Duration::seconds(30));
        let batch = outbox_store::claim_unpublished(
            &self.ctx.db,
            &self.owner,
            lease_until,
            config.batch_size,
        )
        .await?;
        if batch.is_empty() {
            return Ok(0);
        }
        let ids: Vec<i64> = batch.iter().map(|e| e.id).collect();
        if let Err(err) = self.route(&batch).await {
            // Give the batch back now rather than after the lease; a dropped connection is
            // re-opened on the next round.
            self.redis = None;
            outbox_store::release(&self.ctx.db, &self.owner, &ids).await?;
            return Err(err);
        }
        let marked = self.record_deliveries_and_mark(&batch, &ids).await?;
        if marked < ids.len() as u64 {
            // Our lease expired mid-batch and another publisher took over; it will route those
            // events again (at-least-once), which consumers tolerate.
            tracing::warn!(
                claimed = ids.len(),
                marked,
                "outbox lease expired before the batch was marked; raise GANTRY_OUTBOX_LEASE"
            );
        }
        let now = Utc::now();
        for event in &batch {
            let lag = (now - event.created_at).to_std().unwrap_or_default();
            self.ctx
                .metrics
                .outbox_lag_seconds
                .observe(lag.as_secs_f64());
        }
        self.ctx.metrics.outbox_published_total.inc_by(marked);
        Ok(batch.len())
    }

    /// Records webhook deliveries and marks the batch published, atomically: a crash between the
    /// two cannot leave an event published without its deliveries.
    async fn record_deliveries_and_mark(
        &self,
        batch: &[StoredEvent],
        ids: &[i64],
    ) -> Result<u64, PublishError> {
        let txn = crate::store::begin_write(&self.ctx.db).await?;
        let mut webhooks_by_org: HashMap<uuid::Uuid, Vec<Webhook>> = HashMap::new();
        for event in batch {
            let webhooks = match webhooks_by_org.entry(event.org_id) {
                Entry::Occupied(cached) => cached.into_mut(),
                Entry::Vacant(slot) => {
                    slot.insert(webhook_store::all_live_for_org(&txn, event.org_id).await?)
                }
            };
            // A webhook gets the events committed after it was created, never earlier ones.
            for webhook in webhooks.iter().filter(|w| w.created_at <= event.created_at) {
                if crate::webhooks::matches(&webhook.patterns(), &event.event_type) {
                    webhook_store::insert_delivery(
                        &txn,
                        webhook,
                        event.event_id,
                        &event.event_type,
                    )
                    .await?;
                }
            }
        }
        let marked = outbox_store::mark_published(&txn, &self.owner, ids).await?;
        txn.commit().await?;
        Ok(marked)
    }

    async fn route(&mut self, batch: &[StoredEvent]) -> Result<(), PublishError> {
        self.enqueue_commands(batch).await?;
        self.append_to_stream(batch).await
    }

    /// Command events become jobs on their queue, with the event id as job id: routing the same
    /// event again (a re-claimed batch) finds the job already there and adds nothing.
    async fn enqueue_commands(&self, batch: &[StoredEvent]) -> Result<(), PublishError> {
        let mut by_queue: HashMap<&'static str, Vec<NewJob>> = HashMap::new();
        let now = crate::store::now();
        for event in batch {
            if let Some(queue) = super::registry::queue_for_event(&event.event_type) {
                by_queue.entry(queue).or_default().push(NewJob {
                    job_id: event.event_id,
                    attempt: 1,
                    retry_base: 0,
                    enqueued_at: now,
                    args: crate::jobs::command_args(
                        &event.event_type,
                        event.payload.clone(),
                        event.request_id.clone(),
                    ),
                    run_after: None,
                });
            }
        }
        for (queue, jobs) in by_queue {
            self.ctx.queues.enqueue(queue, jobs).await?;
        }
        Ok(())
    }

    async fn append_to_stream(&mut self, batch: &[StoredEvent]) -> Result<(), PublishError> {
        let key = self.ctx.config.outbox.stream_key.clone();
        let maxlen = self.ctx.config.outbox.stream_maxlen;
        let Some(redis) = self.redis().await? else {
            return Ok(());
        };
        let mut pipe = redis::pipe();
        for event in batch {
            let envelope = serde_json::to_string(&Envelope::from(event)).unwrap_or_default();
            pipe.cmd("XADD")
                .arg(&key)
                .arg("MAXLEN")
                .arg("~")
                .arg(maxlen)
                .arg("*")
                .arg("id")
                .arg(event.event_id.to_string())
                .arg("type")
                .arg(&event.event_type)
                .arg("org_id")
                .arg(event.org_id.to_string())
                .arg("cursor")
                .arg(event.id)
                .arg("envelope")
                .arg(envelope)
                .ignore();
        }
        pipe.query_async::<()>(redis).await?;
        Ok(())
    }

    async fn refresh_backlog(&self) {
        match outbox_store::backlog(&self.ctx.db).await {
            Ok((count, _)) => self.ctx.metrics.outbox_backlog.set(count as i64),
            Err(err) => tracing::warn!(%err, "could not read the outbox backlog"),
        }
    }

    async fn listen(&self) -> Option<PgListener> {
        if self.ctx.db.get_database_backend() != DatabaseBackend::Postgres {
            return None;
        }
        let pool = self.ctx.db.get_postgres_connection_pool();
        let mut listener = match PgListener::connect_with(pool).await {
            Ok(listener) => listener,
            Err(err) => {
                tracing::warn!(%err, "cannot LISTEN; the outbox publisher will poll");
                return None;
            }
        };
        match listener.listen(NOTIFY_CHANNEL).await {
            Ok(()) => Some(listener),
            Err(err) => {
                tracing::warn!(%err, "cannot LISTEN; the outbox publisher will poll");
                None
            }
        }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for OutboxPublisher {
    const NAME: &'static str = "outbox-publisher";
    type Error = PublishError;

    fn schedule(&self) -> Schedule {
        Schedule {
            after_error: ERROR_BACKOFF,
            ..Schedule::every(self.ctx.config.outbox.poll_interval)
        }
    }

    async fn start(&mut self) {
        self.listener = self.listen().await;
        tracing::info!(owner = %self.owner, notify = self.listener.is_some(), "outbox publisher started");
    }

    /// Woken by `NOTIFY` on commit (Postgres) or by a commit in this process (SQLite's commit
    /// hook); otherwise the poll interval decides.
    async fn wake(&mut self) {
        let Some(listener) = self.listener.as_mut() else {
            if self.ctx.db.get_database_backend() == DatabaseBackend::Sqlite {
                outbox_store::committed().notified().await;
                // The hook runs just before the commit lands; a moment later it is visible,
                // and a burst of commits is published in one round.
                tokio::time::sleep(COMMIT_SETTLE).await;
                return;
            }
            return std::future::pending().await;
        };
        if let Err(err) = listener.recv().await {
            tracing::warn!(%err, "LISTEN connection lost; polling until it is back");
        }
    }

    /// Publishes one batch; a full batch means more may be waiting, so it runs again at once.
    async fn round(&mut self) -> Result<Round, PublishError> {
        let full_batch = self.ctx.config.outbox.batch_size as usize;
        let result = self.publish_batch().await;
        let idle = !matches!(result, Ok(n) if n >= full_batch);
        if idle
            || self
                .backlog_refreshed
                .is_none_or(|at| at.elapsed() >= BACKLOG_REFRESH)
        {
            self.refresh_backlog().await;
            self.backlog_refreshed = Some(Instant::now());
        }
        result.map(|_| if idle { Round::Idle } else { Round::Again })
    }
}
