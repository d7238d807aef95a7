//! Counts and listings of queued jobs for the admin API and the `gantry_queue_depth` gauge.

use super::{Backend, JobEnvelope, QueueError, Queues};
use crate::store;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

/// Jobs per state in one queue.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct QueueStats {
    /// Ready to run now.
    pub pending: u64,
    /// Held by a worker.
    pub running: u64,
    /// Waiting for a later run time (retries with backoff).
    pub scheduled: u64,
    /// Dead: exhausted or permanent failures, kept with their last error.
    pub dead: u64,
    /// Finished and still remembered by the backend.
    pub done: u64,
    /// When the oldest ready job became ready.
    pub oldest_pending_at: Option<DateTime<Utc>>,
}

/// One job as the admin API shows it.
#[derive(Debug, Clone)]
pub struct JobView {
    /// Logical job id.
    pub job_id: uuid::Uuid,
    /// Queue (without the prefix).
    pub queue: String,
    /// `pending`, `scheduled`, `running`, `done` or `dead`.
    pub state: &'static str,
    /// Attempt number.
    pub attempt: u32,
    /// When the first attempt was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it may run (not for dead jobs).
    pub run_at: Option<DateTime<Utc>>,
    /// Last error (dead jobs).
    pub last_error: Option<String>,
    /// Arguments.
    pub args: serde_json::Value,
    /// Paging key.
    pub cursor: String,
}

impl Queues {
    /// Counts the jobs of `queue` in every state.
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        let name = self.backend_queue(queue);
        let our_dead = store::jobs::count_dead(&self.db, queue).await?;
        match &self.backend {
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let pending: u64 = conn.llen(format!("{name}:active")).await?;
                let scheduled = cardinality(&mut conn, &format!("{name}:scheduled")).await?;
                let done = cardinality(&mut conn, &format!("{name}:done")).await?;
                let dead = cardinality(&mut conn, &format!("{name}:dead")).await?;
                let workers: Vec<String> = conn.zrange(format!("{name}:workers"), 0, -1).await?;
                let mut running = 0u64;
                for worker in workers {
                    let n = cardinality(&mut conn, &format!("{name}:inflight:{worker}")).await?;
                    running += n;
                }
                Ok(QueueStats {
                    pending,
                    running,
                    scheduled,
                    dead: dead + our_dead,
                    done,
                    // Redis lists do not keep enqueue times; the oldest ready job is unknown.
                    oldest_pending_at: None,
                })
            }
            Backend::Postgres(_) | Backend::Sqlite(_) => {
                let counts = store::jobs::sql_queue_counts(&self.db, &name).await?;
                let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
                Ok(QueueStats {
                    pending: n(counts.pending),
                    running: n(counts.running),
                    scheduled: n(counts.scheduled),
                    dead: n(counts.dead) + our_dead,
                    done: n(counts.done),
                    oldest_pending_at: counts
                        .oldest_pending_run_at
                        .and_then(|s| DateTime::from_timestamp(s, 0)),
                })
            }
        }
    }

    /// Lists jobs of `queue` in `state`, after `cursor`, at most `limit` (+ whether more follow).
    /// Dead jobs come from `dead_jobs` on every backend; live jobs are listed from the SQL job
    /// tables (on Redis only dead jobs can be listed).
    pub async fn list(
        &self,
        queue: &str,
        state: &str,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<JobView>, bool), QueueError> {
        if state == "dead" {
            let after = cursor.and_then(|c| c.parse().ok());
            let (rows, more) =
                store::jobs::list_dead(&self.db, Some(queue), &store::PageRequest { limit, after })
                    .await?;
            return Ok((rows.into_iter().map(dead_view).collect(), more));
        }
        match &self.backend {
            Backend::Redis(_) => Ok((Vec::new(), false)),
            Backend::Postgres(_) | Backend::Sqlite(_) => {
                let rows = store::jobs::sql_jobs(
                    &self.db,
                    &self.backend_queue(queue),
                    state,
                    cursor,
                    limit,
                )
                .await?;
                let (rows, more) = store::split_page(rows, limit);
                let views = rows
                    .into_iter()
                    .filter_map(|row| {
                        let job: JobEnvelope = serde_json::from_slice(&row.job).ok()?;
                        Some(JobView {
                            job_id: job.job_id,
                            queue: queue.to_owned(),
                            state: match state {
                                "pending" => "pending",
                                "scheduled" => "scheduled",
                                "running" => "running",
                                _ => "done",
                            },
                            attempt: job.attempt,
                            enqueued_at: job.enqueued_at,
                            run_at: DateTime::from_timestamp(row.run_at, 0),
                            last_error: None,
                            args: job.args,
                            cursor: row.id,
                        })
                    })
                    .collect();
                Ok((views, more))
            }
        }
    }

    /// Refreshes `gantry_queue_depth` for `queues`.
    pub async fn refresh_depth(&self, metrics: &crate::metrics::Metrics, queues: &[&str]) {
        for queue in queues {
            match self.stats(queue).await {
                Ok(stats) => {
                    for (state, value) in [
                        ("pending", stats.pending),
                        ("running", stats.running),
                        ("scheduled", stats.scheduled),
                        ("dead", stats.dead),
                    ] {
                        metrics
                            .queue_depth
                            .with_label_values(&[queue, state])
                            .set(value as i64);
                    }
                }
                Err(err) => tracing::warn!(queue, %err, "could not count queued jobs"),
            }
        }
    }
}

/// Members of a Redis set or sorted set (apalis-redis uses both), 0 when the key is absent.
async fn cardinality(
    conn: &mut redis::aio::ConnectionManager,
    key: &str,
) -> Result<u64, redis::RedisError> {
    let kind: String = redis::cmd("TYPE").arg(key).query_async(conn).await?;
    match kind.as_str() {
        "set" => conn.scard(key).await,
        "zset" => conn.zcard(key).await,
        "list" => conn.llen(key).await,
        _ => Ok(0),
    }
}

/// A dead job as the admin API shows it.
pub fn dead_view(row: store::jobs::DeadJob) -> JobView {
    let job: Option<JobEnvelope> = serde_json::from_value(row.payload.clone()).ok();
    JobView {
        job_id: row.id,
        queue: row.queue,
        state: "dead",
        attempt: row.attempts.max(0) as u32,
        enqueued_at: job.as_ref().map(|j| j.enqueued_at).unwrap_or(row.died_at),
        run_at: None,
        last_error: Some(row.last_error),
        args: job.map(|j| j.args).unwrap_or(serde_json::Value::Null),
        cursor: row.id.to_string(),
    }
}
