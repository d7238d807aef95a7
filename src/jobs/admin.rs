//! Counts and listings of queued jobs for the admin API and the `gantry_queue_depth` gauge.

use super::queues::now_ms;
use super::redis_queue::Keys;
use super::{Backend, JobEnvelope, QueueError, Queues};
use crate::store;
use chrono::{DateTime, Utc};
use redis::AsyncCommands;

/// The name webhook deliveries have beside the job queues: they are scheduled from their rows
/// (not a job queue), and their `failed` deliveries are listed like dead jobs.
pub const WEBHOOKS_QUEUE: &str = "webhooks";

/// The window of [`QueueStats::done_last_hour`].
pub const DONE_WINDOW: std::time::Duration = std::time::Duration::from_secs(3600);

/// Unix ms one [`DONE_WINDOW`] ago.
fn done_window_start_ms() -> i64 {
    now_ms() - DONE_WINDOW.as_millis() as i64
}

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
    /// Finished within the last hour ([`DONE_WINDOW`]).
    pub done_last_hour: u64,
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
        let delivered_recently =
            store::webhooks::count_delivered_since(&self.db, Utc::now() - DONE_WINDOW).await?;
        let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
        all.push((
            WEBHOOKS_QUEUE,
            QueueStats {
                pending: n(webhooks.pending),
                running: n(webhooks.running),
                scheduled: n(webhooks.scheduled),
                dead: n(webhooks.dead),
                done: n(webhooks.done),
                done_last_hour: delivered_recently,
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

    /// Runs again up to `limit` dead jobs of `queue` (oldest ids first), each like
    /// [`Queues::retry_dead`]; the jobs as queued.
    pub async fn retry_dead_of(&self, queue: &str, limit: u64) -> Result<Vec<JobView>, QueueError> {
        let mut retried = Vec::new();
        let mut after = None;
        while (retried.len() as u64) < limit {
            let page = store::PageRequest {
                limit: (limit - retried.len() as u64).min(BULK_PAGE),
                after,
            };
            let (dead, more) = store::jobs::list_dead(&self.db, Some(queue), &page).await?;
            after = dead.last().map(|row| row.id);
            for row in dead {
                // Another operator may have retried or discarded it meanwhile: skip it then.
                if let DeadJobAction::Done(view) = self.retry_dead(row.id).await? {
                    retried.push(view);
                }
            }
            if !more {
                break;
            }
        }
        Ok(retried)
    }

    /// Counts the unfinished jobs of `queue` (`done` left at 0): what the depth gauge needs,
    /// cheap enough to run every heartbeat in every worker process.
    pub async fn depth(&self, queue: &str) -> Result<QueueStats, QueueError> {
        self.counts(queue, false).await
    }

    async fn counts(&self, queue: &str, include_done: bool) -> Result<QueueStats, QueueError> {
        let name = self.backend_queue(queue);
        let dead = store::jobs::count_dead(&self.db, queue).await?;
        match &self.backend {
            Backend::Redis(conn) => {
                let keys = Keys::of(&name);
                let now = now_ms();
                let mut pipe = redis::pipe();
                pipe.llen(&keys.pending)
                    .zcount(&keys.scheduled, "-inf", now)
                    .zcard(&keys.scheduled)
                    .zcard(&keys.running)
                    .zcard(&keys.done)
                    .zcount(&keys.done, done_window_start_ms(), "+inf")
                    .lindex(&keys.pending, 0);
                let (pending, due, scheduled, running, done, done_recently, head): (
                    u64,
                    u64,
                    u64,
                    u64,
                    u64,
                    u64,
                    Option<String>,
                ) = pipe.query_async(&mut conn.clone()).await?;
                // The ready list is appended at its tail, so its head is the oldest ready job.
                let oldest_pending_at = match head {
                    Some(id) => {
                        let data: Option<String> = conn.clone().hget(&keys.data, id).await?;
                        data.and_then(|d| serde_json::from_str::<JobEnvelope>(&d).ok())
                            .map(|job| job.enqueued_at)
                    }
                    None => None,
                };
                Ok(QueueStats {
                    // Due scheduled jobs are ready; the next claim moves them to the list.
                    pending: pending + due,
                    running,
                    scheduled: scheduled - due.min(scheduled),
                    dead,
                    done: if include_done { done } else { 0 },
                    done_last_hour: if include_done { done_recently } else { 0 },
                    oldest_pending_at,
                })
            }
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                let counts = store::jobs::queue_counts(db, &name, now_ms()).await?;
                let (done, done_last_hour) = if include_done {
                    (
                        store::jobs::count_done(db, &name).await?,
                        store::jobs::count_done_since(db, &name, done_window_start_ms()).await?,
                    )
                } else {
                    (0, 0)
                };
                let n = |v: Option<i64>| v.unwrap_or(0).max(0) as u64;
                Ok(QueueStats {
                    pending: n(counts.pending),
                    running: n(counts.running),
                    scheduled: n(counts.scheduled),
                    dead,
                    done,
                    done_last_hour,
                    oldest_pending_at: counts
                        .oldest_pending_run_at
                        .and_then(DateTime::from_timestamp_millis),
                })
            }
        }
    }

    /// Lists jobs of `queue` in `state`, after `cursor`, at most `limit` (+ whether more follow).
    /// Dead jobs come from `dead_jobs` on every backend; live ones from the queue backend.
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
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                let name = self.backend_queue(queue);
                let rows =
                    store::jobs::list_queue(db, &name, state, cursor, limit, now_ms()).await?;
                let (rows, more) = store::split_page(rows, limit);
                let views = rows
                    .into_iter()
                    .filter_map(|row| {
                        let job: JobEnvelope = serde_json::from_str(&row.payload).ok()?;
                        let state = sql_state(&row.state, row.run_at);
                        Some(view(
                            queue,
                            job,
                            state,
                            DateTime::from_timestamp_millis(row.run_at),
                            row.id,
                        ))
                    })
                    .collect();
                Ok((views, more))
            }
        }
    }

    /// Redis keeps ready jobs in a list and the others in sorted sets; pages are offsets.
    async fn list_redis(
        &self,
        conn: &redis::aio::ConnectionManager,
        queue: &str,
        state: &str,
        cursor: Option<&str>,
        limit: u64,
    ) -> Result<(Vec<JobView>, bool), QueueError> {
        let keys = Keys::of(&self.backend_queue(queue));
        let mut conn = conn.clone();
        let offset: isize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0).max(0);
        let end = offset + limit as isize; // one extra, to know whether more follow
        let ids: Vec<(String, Option<f64>)> = match state {
            "pending" => {
                let ids: Vec<String> = conn.lrange(&keys.pending, offset, end).await?;
                ids.into_iter().map(|id| (id, None)).collect()
            }
            "scheduled" => conn.zrange_withscores(&keys.scheduled, offset, end).await?,
            "running" => conn.zrange_withscores(&keys.running, offset, end).await?,
            _ => conn.zrange_withscores(&keys.done, offset, end).await?,
        };
        let more = ids.len() as u64 > limit;
        let ids: Vec<_> = ids.into_iter().take(limit as usize).collect();
        if ids.is_empty() {
            return Ok((Vec::new(), false));
        }
        let bodies: Vec<Option<String>> = redis::cmd("HMGET")
            .arg(&keys.data)
            .arg(ids.iter().map(|(id, _)| id).collect::<Vec<_>>())
            .query_async(&mut conn)
            .await?;
        let state = live_state(state);
        let views = ids
            .into_iter()
            .zip(bodies)
            .enumerate()
            .filter_map(|(index, ((_, score), body))| {
                let job = serde_json::from_str::<JobEnvelope>(&body?).ok()?;
                let next = (offset + index as isize + 1).to_string();
                let run_at = match state {
                    "scheduled" => score.and_then(|ms| DateTime::from_timestamp_millis(ms as i64)),
                    _ => None,
                };
                Some(view(queue, job, state, run_at, next))
            })
            .collect();
        Ok((views, more))
    }

    /// A live (not dead) job by id: its latest attempt, in whichever queue.
    pub async fn find(&self, job_id: uuid::Uuid) -> Result<Option<JobView>, QueueError> {
        // Attempts beyond the limits only happen after operator retries; 200 covers them.
        let task_ids: Vec<String> = (1..=MAX_ATTEMPT_LOOKUP)
            .map(|attempt| super::task_id(job_id, attempt))
            .collect();
        match &self.backend {
            Backend::Postgres(db) | Backend::Sqlite(db) => {
                let Some(row) = store::jobs::latest_attempt(db, &task_ids).await? else {
                    return Ok(None);
                };
                let Some(queue) = row.queue.strip_prefix(self.config.prefix.as_str()) else {
                    return Ok(None);
                };
                let Ok(job) = serde_json::from_str::<JobEnvelope>(&row.payload) else {
                    return Ok(None);
                };
                let state = sql_state(&row.state, row.run_at);
                let run_at = DateTime::from_timestamp_millis(row.run_at);
                Ok(Some(view(queue, job, state, run_at, row.id)))
            }
            Backend::Redis(conn) => {
                let mut conn = conn.clone();
                for queue in crate::workers::registry::queue_names() {
                    let keys = Keys::of(&self.backend_queue(queue));
                    let bodies: Vec<Option<String>> = redis::cmd("HMGET")
                        .arg(&keys.data)
                        .arg(&task_ids)
                        .query_async(&mut conn)
                        .await?;
                    let Some((task_id, body)) = task_ids
                        .iter()
                        .zip(bodies)
                        .filter_map(|(id, body)| Some((id, body?)))
                        .next_back()
                    else {
                        continue;
                    };
                    let Ok(job) = serde_json::from_str::<JobEnvelope>(&body) else {
                        continue;
                    };
                    let mut pipe = redis::pipe();
                    pipe.zscore(&keys.running, task_id)
                        .zscore(&keys.done, task_id)
                        .zscore(&keys.scheduled, task_id);
                    let (running, done, scheduled): (Option<f64>, Option<f64>, Option<f64>) =
                        pipe.query_async(&mut conn).await?;
                    let (state, run_at) = match (running, done, scheduled) {
                        (Some(_), _, _) => ("running", None),
                        (_, Some(_), _) => ("done", None),
                        (_, _, Some(at)) if at as i64 > now_ms() => {
                            ("scheduled", DateTime::from_timestamp_millis(at as i64))
                        }
                        _ => ("pending", None),
                    };
                    return Ok(Some(view(queue, job, state, run_at, task_id.clone())));
                }
                Ok(None)
            }
        }
    }

    /// Forgets jobs of `queues` that finished more than `GANTRY_JOB_RETENTION` ago, so the
    /// backend does not grow without bound.
    pub async fn forget_finished(&self, queues: &[&str]) {
        for queue in queues {
            match self.forget_before(queue, self.config.retention).await {
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

/// Dead jobs read per page by [`Queues::retry_dead_of`] (the store's largest page).
const BULK_PAGE: u64 = 200;

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

/// The admin state of a `job_queue` row.
fn sql_state(state: &str, run_at_ms: i64) -> &'static str {
    match state {
        "running" => "running",
        "done" => "done",
        _ if run_at_ms > now_ms() => "scheduled",
        _ => "pending",
    }
}

/// The admin state name for a listed live state.
fn live_state(state: &str) -> &'static str {
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
