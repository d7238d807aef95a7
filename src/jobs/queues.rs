//! [`Queues`]: the configured backend (Redis, Postgres or SQLite), connecting to it and the
//! batch operations the runtime and the admin API use: push, claim, complete, extend leases,
//! release, rescue and forget.
//!
//! Why not apalis' own storages: see the README ("Job queues: storage"). In short, every
//! operation here is one round trip per batch (a push of 500, a claim of up to 100, an
//! acknowledgement of everything finished since the last one), and SQLite's queue writes go
//! through one connection, so the embedded mode never contends for its write lock.

use super::redis_queue::{self, Keys};
use super::{task_id, JobEnvelope, NewJob, QueueError};
use crate::config::{Config, JobsConfig};
use crate::store;
use sea_orm::{DatabaseBackend, DatabaseConnection};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

/// The backend the queues live on.
#[derive(Clone)]
pub(super) enum Backend {
    /// Redis (`REDIS_URL` set).
    Redis(redis::aio::ConnectionManager),
    /// The Postgres system-of-record database.
    Postgres(DatabaseConnection),
    /// The SQLite database, through a pool of one connection: the queue's single writer.
    Sqlite(DatabaseConnection),
}

/// The job queues of this deployment: enqueueing, running workers, and counts.
#[derive(Clone)]
pub struct Queues {
    pub(super) backend: Backend,
    pub(super) db: DatabaseConnection,
    pub(super) config: Arc<JobsConfig>,
    /// Per queue: woken when this process enqueues, so a local worker claims at once instead
    /// of at its next poll.
    wakers: Arc<Mutex<HashMap<String, Arc<Notify>>>>,
}

/// Now, in Unix milliseconds (the queues' clock on every backend).
pub(super) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

impl Queues {
    /// Connects to the configured backend (the SQL backends' table comes with the migrations).
    pub async fn connect(config: &Config, db: &DatabaseConnection) -> Result<Self, QueueError> {
        let backend = match &config.redis_url {
            // Lazy: a process starts (and reports Redis in /health/ready) while Redis is down;
            // the connection manager connects on first use and reconnects after failures.
            Some(url) => Backend::Redis(redis::aio::ConnectionManager::new_lazy_with_config(
                redis::Client::open(url.as_str())?,
                redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(Duration::from_secs(5)))
                    .set_response_timeout(Some(Duration::from_secs(10))),
            )?),
            None => match db.get_database_backend() {
                DatabaseBackend::Postgres => Backend::Postgres(db.clone()),
                _ => Backend::Sqlite(store::connect_single_writer(&config.database_url).await?),
            },
        };
        Ok(Self {
            backend,
            db: db.clone(),
            config: Arc::new(config.jobs.clone()),
            wakers: Arc::default(),
        })
    }

    /// `redis`, `postgres` or `sqlite`.
    pub fn backend_name(&self) -> &'static str {
        match self.backend {
            Backend::Redis(_) => "redis",
            Backend::Postgres(_) => "postgres",
            Backend::Sqlite(_) => "sqlite",
        }
    }

    /// True when the queues live in Redis (not in the system-of-record database).
    pub fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// The name `queue` has in the backend.
    pub fn backend_queue(&self, queue: &str) -> String {
        format!("{}{queue}", self.config.prefix)
    }

    /// How long a claim lasts without a heartbeat: three missed heartbeats.
    pub(super) fn lease(&self) -> Duration {
        self.config.heartbeat * 3
    }

    /// The in-process wake-up of `queue`.
    pub(super) fn waker(&self, queue: &str) -> Arc<Notify> {
        let mut wakers = match self.wakers.lock() {
            Ok(wakers) => wakers,
            Err(poisoned) => poisoned.into_inner(),
        };
        wakers.entry(queue.to_owned()).or_default().clone()
    }

    /// The Redis key whose absence means the queues lost their data (a `FLUSHALL`, or a Redis
    /// restarted without persistence), since every job went with it.
    fn sentinel_key(&self) -> String {
        format!("{}queues-sentinel", self.config.prefix)
    }

    /// True while the Redis queues have lost their data since [`Self::claim_data_loss`] last
    /// ran (the sentinel key is missing); always false on the SQL backends, whose queues live in
    /// the system-of-record database.
    pub async fn data_lost(&self) -> Result<bool, QueueError> {
        match &self.backend {
            Backend::Redis(conn) => {
                let exists: bool = redis::cmd("EXISTS")
                    .arg(self.sentinel_key())
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(!exists)
            }
            Backend::Postgres(_) | Backend::Sqlite(_) => Ok(false),
        }
    }

    /// Sets the sentinel key if it is missing and says whether it was: true means the Redis
    /// queues may have lost jobs (or this deployment's first start), so every unfinished
    /// routed piece of work should be enqueued again now. Always false on the SQL backends.
    pub async fn claim_data_loss(&self) -> Result<bool, QueueError> {
        match &self.backend {
            Backend::Redis(conn) => {
                let set: Option<String> = redis::cmd("SET")
                    .arg(self.sentinel_key())
                    .arg(chrono::Utc::now().to_rfc3339())
                    .arg("NX")
                    .query_async(&mut conn.clone())
                    .await?;
                Ok(set.is_some())
            }
            Backend::Postgres(_) | Backend::Sqlite(_) => Ok(false),
        }
    }

    /// Enqueues jobs on `queue`. A job whose attempt is already enqueued (or was, and ran, and
    /// is still remembered) is skipped; returns how many were new.
    pub async fn enqueue(&self, queue: &str, jobs: Vec<NewJob>) -> Result<usize, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let name = self.backend_queue(queue);
        let now = now_ms();
        let mut rows = Vec::with_capacity(jobs.len());
        for job in jobs {
            let run_at = now
                + job
                    .run_after
                    .map_or(0, |delay| delay.as_millis().min(i64::MAX as u128) as i64);
            let id = task_id(job.job_id, job.attempt);
            let envelope = JobEnvelope {
                job_id: job.job_id,
                attempt: job.attempt,
                retry_base: job.retry_base,
                enqueued_at: job.enqueued_at,
                args: job.args,
            };
            let payload = serde_json::to_string(&envelope)
                .map_err(|e| QueueError::Storage(format!("cannot encode a job: {e}")))?;
            rows.push(store::jobs::QueuedJob {
                id,
                queue: name.clone(),
                job_id: envelope.job_id,
                attempt: envelope.attempt.min(i32::MAX as u32) as i32,
                run_at,
                payload,
            });
        }
        let new = match &self.backend {
            Backend::Redis(conn) => {
                let jobs: Vec<_> = rows
                    .into_iter()
                    .map(|row| (row.id, row.run_at, row.payload))
                    .collect();
                redis_queue::push(conn, &Keys::of(&name), &jobs, now).await?
            }
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                store::jobs::push_jobs(db, &rows).await?
            }
        };
        if new > 0 {
            self.waker(queue).notify_waiters();
        }
        Ok(new as usize)
    }

    /// Leases up to `limit` due jobs of `queue` to `holder`: `(task id, encoded envelope)`.
    pub(super) async fn claim(
        &self,
        queue: &str,
        holder: &str,
        limit: usize,
    ) -> Result<Vec<(String, String)>, QueueError> {
        let name = self.backend_queue(queue);
        let now = now_ms();
        let until = now + self.lease().as_millis() as i64;
        Ok(match &self.backend {
            Backend::Redis(conn) => {
                redis_queue::claim(conn, &Keys::of(&name), limit, now, until).await?
            }
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                store::jobs::claim_jobs(db, &name, holder, limit, now, until)
                    .await?
                    .into_iter()
                    .map(|job| (job.id, job.payload))
                    .collect()
            }
        })
    }

    /// Settles finished attempts of `queue`.
    pub(super) async fn complete(&self, queue: &str, ids: &[String]) -> Result<(), QueueError> {
        if ids.is_empty() {
            return Ok(());
        }
        let name = self.backend_queue(queue);
        match &self.backend {
            Backend::Redis(conn) => {
                redis_queue::complete(conn, &Keys::of(&name), ids, now_ms()).await?
            }
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                store::jobs::complete_jobs(db, ids, now_ms()).await?
            }
        }
        Ok(())
    }

    /// Extends the leases `holder` has on `queue` (`ids`: what it holds, for Redis).
    pub(super) async fn extend(
        &self,
        queue: &str,
        holder: &str,
        ids: &[String],
    ) -> Result<(), QueueError> {
        let until = now_ms() + self.lease().as_millis() as i64;
        match &self.backend {
            Backend::Redis(conn) => {
                let keys = Keys::of(&self.backend_queue(queue));
                redis_queue::extend(conn, &keys, ids, until).await?
            }
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                store::jobs::extend_leases(db, holder, until).await?;
            }
        }
        Ok(())
    }

    /// Gives back what `holder` still leases on `queue`: ready again at once.
    pub(super) async fn release(
        &self,
        queue: &str,
        holder: &str,
        ids: &[String],
    ) -> Result<u64, QueueError> {
        Ok(match &self.backend {
            Backend::Redis(conn) => {
                let keys = Keys::of(&self.backend_queue(queue));
                redis_queue::release(conn, &keys, ids).await?
            }
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                store::jobs::release_jobs(db, holder).await?
            }
        })
    }

    /// Makes jobs of `queues` whose lease ran out (their worker died or lost its backend)
    /// ready again; returns how many.
    pub async fn rescue_expired(&self, queues: &[&str]) -> Result<u64, QueueError> {
        let now = now_ms();
        match &self.backend {
            Backend::Redis(conn) => {
                let mut rescued = 0;
                for queue in queues {
                    let keys = Keys::of(&self.backend_queue(queue));
                    rescued += redis_queue::rescue(conn, &keys, now).await?;
                }
                Ok(rescued)
            }
            // One statement covers every queue of the table.
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                Ok(store::jobs::rescue_expired(db, now).await?)
            }
        }
    }

    /// Forgets attempts of `queue` settled more than `retention` ago; returns how many.
    pub(super) async fn forget_before(
        &self,
        queue: &str,
        retention: Duration,
    ) -> Result<u64, QueueError> {
        let cutoff = now_ms() - retention.as_millis().min(i64::MAX as u128) as i64;
        let name = self.backend_queue(queue);
        Ok(match &self.backend {
            Backend::Redis(conn) => redis_queue::forget(conn, &Keys::of(&name), cutoff).await?,
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                store::jobs::delete_finished_before(db, &name, cutoff).await?
            }
        })
    }
}
