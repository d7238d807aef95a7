//! Counts and listings of queued jobs for the admin API and the `gantry_queue_depth` gauge.

use super::{Backend, JobEnvelope, QueueError, Queues};
use crate::store;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

/// The name webhook deliveries have beside the job queues: they are scheduled from their rows
/// (not a job queue), and their `failed` deliveries are listed like dead jobs.
pub const WEBHOOKS_QUEUE: &str = "webhooks";

/// Ids the Redis done set may hold before it is cleared.
const DONE_SET_LIMIT: u64 = 100_000;

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

/// What became of an operator's action on a dead job.
#[derive(Debug)]
pub enum DeadJobAction<T> {
    /// Done; here is the result.
    Done(T),
    /// The job was dead and has been discarded: gone from the API.
    Discarded,
    /// No dead job has this id (it may be live, or unknown).
    NotDead,
}

impl Queues {
    /// Counts the jobs of `queue` in every state (the admin view).
    pub async fn stats(&self, queue: &str) -> Result<QueueStats, QueueError> {
        self.counts(queue, true).await
    }

    /// Counts every registered queue's jobs in every state, then the webhook deliveries as
    /// queue [`WEBHOOKS_QUEUE`] (they are scheduled from their rows, shown like a queue).
    pub async fn stats_of_all(&self) -> Result<Vec<(&'static str, QueueStats)>, QueueError> {
        let mut all = Vec::new();
        for queue in crate::workers::registry::queue_names() {
            all.push((queue, self.stats(queue).await?));
        }
        let webhooks = store::webhooks::delivery_counts(&self.db).await?;
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        all.push((
            WEBHOOKS_QUEUE,
            QueueStats {
                pending: n(webhooks.pending),
                running: n(webhooks.running),
                scheduled: n(webhooks.scheduled),
                dead: n(webhooks.dead),
                done: n(webhooks.done),
                oldest_pending_at: webhooks
                    .oldest_pending_run_at
                    .and_then(|s| DateTime::from_timestamp(s, 0)),
            },
        ));
        Ok(all)
    }

    /// Runs dead job `job_id` again with a fresh set of attempts; the job as queued.
    pub async fn retry_dead(
        &self,
        job_id: uuid::Uuid,
    ) -> Result<DeadJobAction<JobView>, QueueError> {
        let dead = match store::jobs::find_dead(&self.db, job_id).await? {
            Some(dead) if dead.discarded_at.is_none() => dead,
            Some(_) => return Ok(DeadJobAction::Discarded),
            None => return Ok(DeadJobAction::NotDead),
        };
        let mut view = dead_view(dead.clone());
        // A retried job gets fresh attempts; its earlier attempts' ids are taken, so number on.
        let attempt = (dead.attempts.max(0) as u32) + 1;
        let job = super::NewJob {
            job_id,
            attempt,
            retry_base: attempt - 1,
            enqueued_at: view.enqueued_at,
            args: view.args.clone(),
            run_after: None,
        };
        self.enqueue(&dead.queue, vec![job]).await?;
        store::jobs::delete_dead(&self.db, job_id).await?;
        view.state = "pending";
        view.attempt = attempt;
        view.last_error = None;
        Ok(DeadJobAction::Done(view))
    }

    /// Counts the unfinished jobs of `queue` (`done` left at 0): what the depth gauge needs,
    /// cheap enough to run every heartbeat in every worker process.
    pub async fn depth(&self, queue: &str) -> Result<QueueStats, QueueError> {
        self.counts(queue, false).await
    }

    async fn counts(&self, queue: &str, include_done: bool) -> Result<QueueStats, QueueError> {
        let name = self.backend_queue(queue);
        let our_dead = store::jobs::count_dead(&self.db, queue).await?;
        match &self.backend {
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                let pending: u64 = conn.llen(format!("{name}:active")).await?;
                let scheduled = cardinality(&mut conn, &format!("{name}:scheduled")).await?;
                let done = if include_done {
                    cardinality(&mut conn, &format!("{name}:done")).await?
                } else {
                    0
                };
                let dead = cardinality(&mut conn, &format!("{name}:dead")).await?;
                let workers: Vec<String> = conn.zrange(format!("{name}:workers"), 0, -1).await?;
                let mut running = 0u64;
                for worker in workers {
                    let n = cardinality(&mut conn, &format!("{name}:inflight:{worker}")).await?;
                    running += n;
                }
                // The ready list is appended at its tail, so its head is the oldest ready job.
                let head: Option<String> = conn.lindex(format!("{name}:active"), 0).await?;
                let oldest_pending_at = match head {
                    Some(id) => {
                        let data: Option<Vec<u8>> = conn.hget(format!("{name}:data"), id).await?;
                        data.and_then(|d| serde_json::from_slice::<JobEnvelope>(&d).ok())
                            .map(|job| job.enqueued_at)
                    }
                    None => None,
                };
                Ok(QueueStats {
                    pending,
                    running,
                    scheduled,
                    dead: dead + our_dead,
                    done,
                    oldest_pending_at,
                })
            }
            Backend::Postgres(_) | Backend::Sqlite(_) => {
                let counts = store::jobs::sql_queue_counts(&self.db, &name).await?;
                let done = if include_done {
                    store::jobs::count_done(&self.db, &name).await?
                } else {
                    0
                };
                let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
                Ok(QueueStats {
                    pending: n(counts.pending),
                    running: n(counts.running),
                    scheduled: n(counts.scheduled),
                    dead: n(counts.dead) + our_dead,
                    done,
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
        if queue == WEBHOOKS_QUEUE {
            return self.list_failed_deliveries(state, cursor, limit).await;
        }
        if state == "dead" {
            let after = cursor.and_then(|c| c.parse().ok());
            let (rows, more) =
                store::jobs::list_dead(&self.db, Some(queue), &store::PageRequest { limit, after })
                    .await?;
            return Ok((rows.into_iter().map(dead_view).collect(), more));
        }
        match &self.backend {
            Backend::Redis(conn) => self.list_redis(conn, queue, state, cursor, limit).await,
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
                        Some(view(
                            queue,
                            job,
                            sql_state(&row.status, row.run_at),
                            DateTime::from_timestamp(row.run_at, 0),
                            row.id,
                        ))
                    })
                    .collect();
                Ok((views, more))
            }
        }
    }

    /// Redis keeps ready jobs in a list, scheduled ones in a sorted set, running ones in
    /// per-worker sets and finished ids in a set; pages are offsets into those.
    async fn list_redis(
        &self,
        conn: &redis::aio::ConnectionManager,
        queue: &str,
        state: &str,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<JobView>, bool), QueueError> {
        let name = self.backend_queue(queue);
        let mut conn = conn.clone();
        let offset: isize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0);
        let end = offset + limit as isize; // one extra, to know whether more follow
        let ids: Vec<String> = match state {
            "pending" => conn.lrange(format!("{name}:active"), offset, end).await?,
            "scheduled" => {
                conn.zrange(format!("{name}:scheduled"), offset, end)
                    .await?
            }
            "running" | "done" => {
                let mut ids: Vec<String> = if state == "done" {
                    conn.smembers(format!("{name}:done")).await?
                } else {
                    let workers: Vec<String> =
                        conn.zrange(format!("{name}:workers"), 0, -1).await?;
                    let mut ids = Vec::new();
                    for worker in workers {
                        let members: Vec<String> =
                            conn.smembers(format!("{name}:inflight:{worker}")).await?;
                        ids.extend(members);
                    }
                    ids
                };
                ids.sort();
                ids.into_iter()
                    .skip(offset.max(0) as usize)
                    .take(limit as usize + 1)
                    .collect()
            }
            _ => Vec::new(),
        };
        let more = ids.len() as u64 > limit;
        let mut views = Vec::new();
        for (index, id) in ids.into_iter().take(limit as usize).enumerate() {
            let data: Option<Vec<u8>> = conn.hget(format!("{name}:data"), &id).await?;
            let Some(job) = data.and_then(|d| serde_json::from_slice::<JobEnvelope>(&d).ok())
            else {
                continue;
            };
            let next = (offset + index as isize + 1).to_string();
            let mut job_view = view(queue, job, redis_state(state), None, next);
            if state == "scheduled" {
                let score: Option<f64> = conn.zscore(format!("{name}:scheduled"), &id).await?;
                job_view.run_at = score.and_then(|s| DateTime::from_timestamp(s as i64, 0));
            }
            views.push(job_view);
        }
        Ok((views, more))
    }

    /// A live (not dead) job by id, in whichever queue and attempt it is.
    pub async fn find(&self, job_id: uuid::Uuid) -> Result<Option<JobView>, QueueError> {
        // Attempts beyond the limits only happen after operator retries; 200 covers them.
        let task_ids: Vec<String> = (1..=MAX_ATTEMPT_LOOKUP)
            .map(|attempt| super::task_id(job_id, attempt).to_string())
            .collect();
        for queue in crate::workers::registry::queue_names() {
            let name = self.backend_queue(queue);
            let mut best: Option<JobView> = None;
            match &self.backend {
                Backend::Redis(conn) => {
                    let mut conn = conn.clone();
                    let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                        .arg(format!("{name}:data"))
                        .arg(&task_ids)
                        .query_async(&mut conn)
                        .await?;
                    for (task_id, value) in task_ids.iter().zip(values) {
                        let Some(job) =
                            value.and_then(|v| serde_json::from_slice::<JobEnvelope>(&v).ok())
                        else {
                            continue;
                        };
                        let status: Option<String> = conn
                            .hget(format!("{name}:meta:{task_id}"), "status")
                            .await?;
                        let state = match status.as_deref() {
                            Some("Running") => "running",
                            Some("Done") => "done",
                            Some("Failed") | Some("Killed") => "dead",
                            _ => {
                                let scheduled: Option<f64> =
                                    conn.zscore(format!("{name}:scheduled"), task_id).await?;
                                if scheduled.is_some() {
                                    "scheduled"
                                } else {
                                    "pending"
                                }
                            }
                        };
                        if best.as_ref().is_none_or(|b| b.attempt < job.attempt) {
                            best = Some(view(queue, job, state, None, task_id.clone()));
                        }
                    }
                }
                Backend::Postgres(_) | Backend::Sqlite(_) => {
                    for row in store::jobs::sql_jobs_by_ids(&self.db, &name, &task_ids).await? {
                        let Ok(job) = serde_json::from_slice::<JobEnvelope>(&row.job) else {
                            continue;
                        };
                        if best.as_ref().is_none_or(|b| b.attempt < job.attempt) {
                            let state = sql_state(&row.status, row.run_at);
                            let run_at = DateTime::from_timestamp(row.run_at, 0);
                            best = Some(view(queue, job, state, run_at, row.id));
                        }
                    }
                }
            }
            if best.is_some() {
                return Ok(best);
            }
        }
        Ok(None)
    }

    /// Forgets jobs of `queues` that finished more than `GANTRY_JOB_RETENTION` ago, so the
    /// backend does not grow without bound.
    pub async fn forget_finished(&self, queues: &[&str]) {
        let retention = self.config.retention;
        for queue in queues {
            let name = self.backend_queue(queue);
            let result = match &self.backend {
                Backend::Redis(conn) => {
                    let mut storage = apalis_redis::RedisStorage::<JobEnvelope>::new(conn.clone())
                        .with_config(self.redis_config(&name));
                    let vacuumed =
                        apalis_core::backend::Vacuum::vacuum_before(&mut storage, retention)
                            .await
                            .map(|n| n as u64)
                            .map_err(|e| QueueError::Storage(e.to_string()));
                    // The done set holds bare ids; bound it rather than let it grow forever.
                    let mut conn = conn.clone();
                    let done_key = format!("{name}:done");
                    match cardinality(&mut conn, &done_key).await {
                        Ok(n) if n > DONE_SET_LIMIT => {
                            let _: Result<(), _> = conn.del(&done_key).await;
                        }
                        _ => {}
                    }
                    vacuumed
                }
                Backend::Postgres(_) | Backend::Sqlite(_) => {
                    let cutoff = Utc::now()
                        - chrono::Duration::from_std(retention)
                            .unwrap_or(chrono::Duration::days(1));
                    store::jobs::delete_finished_before(&self.db, &name, cutoff)
                        .await
                        .map_err(QueueError::from)
                }
            };
            match result {
                Ok(0) => {}
                Ok(n) => tracing::debug!(queue, forgotten = n, "forgot finished jobs"),
                Err(err) => tracing::warn!(queue, %err, "could not forget finished jobs"),
            }
        }
    }

    /// Refreshes `gantry_queue_depth` for `queues`.
    pub async fn refresh_depth(&self, metrics: &crate::metrics::Metrics, queues: &[&str]) {
        for queue in queues {
            match self.depth(queue).await {
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

/// Highest attempt number looked up when finding a job by id.
const MAX_ATTEMPT_LOOKUP: u32 = 200;

fn view(
    queue: &str,
    job: JobEnvelope,
    state: &'static str,
    run_at: Option<DateTime<Utc>>,
    cursor: String,
) -> JobView {
    JobView {
        job_id: job.job_id,
        queue: queue.to_owned(),
        state,
        attempt: job.attempt,
        enqueued_at: job.enqueued_at,
        run_at,
        last_error: None,
        args: job.args,
        cursor,
    }
}

/// Our state name for an apalis SQL status.
fn sql_state(status: &str, run_at: i64) -> &'static str {
    match status {
        "Running" => "running",
        "Done" => "done",
        "Killed" => "dead",
        "Failed" => "pending",
        _ if run_at > Utc::now().timestamp() => "scheduled",
        _ => "pending",
    }
}

fn redis_state(state: &str) -> &'static str {
    match state {
        "pending" => "pending",
        "scheduled" => "scheduled",
        "running" => "running",
        _ => "done",
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

impl Queues {
    /// Failed webhook deliveries as dead jobs of queue `webhooks` (no other state is listed:
    /// live deliveries are in each webhook's deliveries).
    async fn list_failed_deliveries(
        &self,
        state: &str,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<JobView>, bool), QueueError> {
        if state != "dead" {
            return Ok((Vec::new(), false));
        }
        let after = cursor.and_then(|c| c.parse().ok());
        let (rows, more) =
            store::webhooks::list_failed_deliveries(&self.db, &store::PageRequest { limit, after })
                .await?;
        Ok((rows.into_iter().map(failed_delivery_view).collect(), more))
    }
}

/// A failed webhook delivery as a dead job: its id, attempts and last error; the arguments say
/// which webhook, organization and event it was for.
pub fn failed_delivery_view(row: store::webhooks::Delivery) -> JobView {
    JobView {
        job_id: row.id,
        queue: WEBHOOKS_QUEUE.to_owned(),
        state: "dead",
        attempt: row.attempts.max(0) as u32,
        enqueued_at: row.created_at,
        run_at: None,
        last_error: row.last_error,
        args: serde_json::json!({
            "webhook_id": row.webhook_id,
            "org_id": row.org_id,
            "event_id": row.event_id,
            "event_type": row.event_type,
            "response_code": row.response_code,
        }),
        cursor: row.id.to_string(),
    }
}
