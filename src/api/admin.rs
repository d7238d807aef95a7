//! `/v1/admin/*`: operator views for platform admins (realm role `gantry-admin`).

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Accepted, NoContent};
use crate::app::AppState;
use crate::auth::PlatformAdmin;
use crate::error::ApiError;
use crate::jobs::admin::DeadJobAction;
use crate::resources::probe::ProbeRequest;
use crate::store;
use chrono::{DateTime, Utc};
use rocket::futures::stream::{BoxStream, StreamExt};
use rocket::response::stream::{Event, EventStream};
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The outbox's unpublished backlog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OutboxStatus {
    /// Events written but not yet published.
    pub backlog: u64,
    /// When the oldest unpublished event was written.
    pub oldest_unpublished_at: Option<DateTime<Utc>>,
    /// Its age in seconds (0 when the backlog is empty).
    pub oldest_unpublished_age_seconds: f64,
}

/// Outbox backlog and the age of its oldest unpublished event.
#[openapi(tag = "Admin")]
#[get("/v1/admin/outbox")]
pub async fn outbox_status(
    state: &State<AppState>,
    _admin: PlatformAdmin,
) -> Result<Json<OutboxStatus>, ApiError> {
    Ok(Json(outbox_snapshot(&state.db).await?))
}

/// Every queue's job counts.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueuesStatus {
    /// `redis`, `postgres` or `sqlite`.
    pub backend: String,
    /// One entry per queue.
    pub queues: Vec<QueueStatus>,
}

/// One queue's job counts.
#[derive(Debug, Serialize, JsonSchema)]
pub struct QueueStatus {
    /// Queue name.
    pub queue: String,
    /// Ready to run now.
    pub pending: u64,
    /// Held by a worker.
    pub running: u64,
    /// Waiting for a later run time (retries with backoff).
    pub scheduled: u64,
    /// Dead: no attempts left or a permanent failure, kept with the last error.
    pub dead: u64,
    /// Finished and still remembered by the backend.
    pub done: u64,
    /// Finished within the last hour (webhooks: delivered within the last hour).
    pub done_last_hour: u64,
    /// Age in seconds of the oldest ready job (`null` when none is ready, or on Redis, which
    /// keeps no enqueue times).
    pub oldest_pending_age_seconds: Option<f64>,
}

/// Job counts per queue.
#[openapi(tag = "Admin")]
#[get("/v1/admin/queues")]
pub async fn queues_status(
    state: &State<AppState>,
    _admin: PlatformAdmin,
) -> Result<Json<QueuesStatus>, ApiError> {
    Ok(Json(queues_snapshot(&state.queues).await?))
}

async fn queues_snapshot(queues: &crate::jobs::Queues) -> Result<QueuesStatus, ApiError> {
    let all = queues
        .stats_of_all()
        .await
        .map_err(queue_error)?
        .into_iter()
        .map(|(queue, stats)| QueueStatus::new(queue, stats))
        .collect();
    Ok(QueuesStatus {
        backend: queues.backend_name().to_owned(),
        queues: all,
    })
}

async fn outbox_snapshot(db: &sea_orm::DatabaseConnection) -> Result<OutboxStatus, ApiError> {
    let (backlog, oldest) = store::outbox::backlog(db).await?;
    Ok(OutboxStatus {
        backlog,
        oldest_unpublished_at: oldest,
        oldest_unpublished_age_seconds: oldest.map(age_seconds).unwrap_or(0.0),
    })
}

/// One sample of the live feed: every queue's counts and the outbox backlog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct StatsSample {
    /// When the sample was taken.
    pub at: DateTime<Utc>,
    /// Job counts per queue.
    pub queues: QueuesStatus,
    /// The outbox backlog.
    pub outbox: OutboxStatus,
}

/// Bounds of `interval_ms` of the live feed.
const STREAM_INTERVAL_MS: std::ops::RangeInclusive<u64> = 250..=60_000;
/// Default `interval_ms` of the live feed.
const STREAM_DEFAULT_INTERVAL_MS: u64 = 2_000;

/// Live queue statistics as Server-Sent Events: an `event: stats` with a [`StatsSample`] at
/// once and then every `interval_ms` (250..=60000, default 2000) until the client leaves. A
/// sample that cannot be taken (database or Redis down) is sent as `event: error` with the
/// problem detail, and sampling goes on.
#[openapi(tag = "Admin")]
#[get("/v1/admin/stats/stream?<interval_ms>")]
pub async fn stats_stream(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    interval_ms: Option<u64>,
    mut shutdown: rocket::Shutdown,
) -> Result<EventStream<BoxStream<'static, Event>>, ApiError> {
    let interval_ms = interval_ms.unwrap_or(STREAM_DEFAULT_INTERVAL_MS);
    if !STREAM_INTERVAL_MS.contains(&interval_ms) {
        return Err(ApiError::BadRequest(format!(
            "interval_ms must be between {} and {}",
            STREAM_INTERVAL_MS.start(),
            STREAM_INTERVAL_MS.end()
        )));
    }
    let queues = state.queues.clone();
    let db = state.db.clone();
    let samples = rocket::async_stream::stream! {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(interval_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = &mut shutdown => break,
            }
            let sample = async {
                Ok::<_, ApiError>(StatsSample {
                    at: Utc::now(),
                    queues: queues_snapshot(&queues).await?,
                    outbox: outbox_snapshot(&db).await?,
                })
            };
            yield match sample.await {
                Ok(sample) => Event::json(&sample).event("stats"),
                Err(err) => Event::data(err.to_string()).event("error"),
            };
        }
    }
    .boxed();
    Ok(EventStream::from(samples).heartbeat(std::time::Duration::from_secs(15)))
}

impl QueueStatus {
    fn new(queue: &str, stats: crate::jobs::admin::QueueStats) -> Self {
        Self {
            queue: queue.to_owned(),
            pending: stats.pending,
            running: stats.running,
            scheduled: stats.scheduled,
            dead: stats.dead,
            done: stats.done,
            done_last_hour: stats.done_last_hour,
            oldest_pending_age_seconds: stats.oldest_pending_at.map(age_seconds),
        }
    }
}

/// Seconds since `at` (0 for a time in the future).
fn age_seconds(at: DateTime<Utc>) -> f64 {
    (Utc::now() - at).to_std().unwrap_or_default().as_secs_f64()
}

fn queue_error(err: crate::jobs::QueueError) -> ApiError {
    match err {
        crate::jobs::QueueError::Database(err) => err.into(),
        other => ApiError::Unavailable(other.to_string()),
    }
}

/// A job as the admin API shows it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct JobView {
    /// Job id (the id of the event that caused it).
    pub id: Uuid,
    /// Queue name.
    pub queue: String,
    /// `pending`, `scheduled`, `running`, `done` or `dead`.
    pub state: String,
    /// Attempt number (1 for the first run).
    pub attempt: u32,
    /// When the first attempt was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// When it may run (live jobs).
    pub run_at: Option<DateTime<Utc>>,
    /// The last error (dead jobs).
    pub last_error: Option<String>,
    /// The job's arguments.
    pub args: serde_json::Value,
}

impl From<crate::jobs::admin::JobView> for JobView {
    fn from(job: crate::jobs::admin::JobView) -> Self {
        Self {
            id: job.job_id,
            queue: job.queue,
            state: job.state.to_owned(),
            attempt: job.attempt,
            enqueued_at: job.enqueued_at,
            run_at: job.run_at,
            last_error: job.last_error,
            args: redact_secrets(job.args),
        }
    }
}

/// What a redacted value is replaced with.
pub const REDACTED: &str = "[redacted]";

/// Object keys whose values are never shown (matched case-insensitively as substrings).
const SECRET_KEY_PARTS: [&str; 9] = [
    "secret",
    "password",
    "passwd",
    "token",
    "api_key",
    "apikey",
    "private_key",
    "credential",
    "authorization",
];

/// `args` with secrets replaced by [`REDACTED`]: values under secret-looking keys, and the
/// password of URLs with credentials (`https://user:pass@host` keeps `user`). Job arguments
/// should never carry secrets; this makes sure the admin API does not show one that slipped in.
pub fn redact_secrets(args: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match args {
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(key, value)| {
                    let lower = key.to_ascii_lowercase();
                    if SECRET_KEY_PARTS.iter().any(|part| lower.contains(part)) && !value.is_null()
                    {
                        (key, Value::String(REDACTED.to_owned()))
                    } else {
                        (key, redact_secrets(value))
                    }
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.into_iter().map(redact_secrets).collect()),
        Value::String(text) => Value::String(redact_url_password(text)),
        other => other,
    }
}

/// `text` with the password of a `scheme://user:password@host…` URL replaced.
fn redact_url_password(text: String) -> String {
    let Some(scheme_end) = text.find("://") else {
        return text;
    };
    let rest = &text[scheme_end + 3..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let Some(at) = authority.rfind('@') else {
        return text;
    };
    let Some(colon) = authority[..at].find(':') else {
        return text;
    };
    let start = scheme_end + 3 + colon + 1;
    let end = scheme_end + 3 + at;
    format!("{}{REDACTED}{}", &text[..start], &text[end..])
}

/// The job states `GET /v1/admin/jobs?state=` accepts.
pub(crate) const JOB_STATES: [&str; 5] = ["pending", "scheduled", "running", "done", "dead"];

/// The queue (default `probe`) and state (default `dead`) `list_jobs` lists, checked.
fn job_filter<'q>(
    queue: Option<&'q str>,
    state: Option<&'q str>,
) -> Result<(&'q str, &'q str), ApiError> {
    let job_state = state.unwrap_or("dead");
    if !JOB_STATES.contains(&job_state) {
        return Err(ApiError::BadRequest(format!(
            "state must be one of {}, got {job_state:?}",
            JOB_STATES.join(", ")
        )));
    }
    let queue = queue.unwrap_or(crate::workers::probe::QUEUE);
    if queue != crate::jobs::admin::WEBHOOKS_QUEUE
        && crate::workers::registry::job_kind(queue).is_none()
    {
        return Err(ApiError::BadRequest(format!("unknown queue {queue:?}")));
    }
    Ok((queue, job_state))
}

/// Jobs of a queue (default `probe`) in a state (default `dead`), paged. Queue `webhooks` lists
/// failed webhook deliveries as its dead jobs (with their last error; redeliver them through
/// the webhook's deliveries).
#[openapi(tag = "Admin")]
#[get("/v1/admin/jobs?<queue>&<state>&<limit>&<cursor>")]
pub async fn list_jobs(
    app: &State<AppState>,
    _admin: PlatformAdmin,
    queue: Strict<&str>,
    state: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<String>>,
) -> Result<Json<Page<JobView>>, ApiError> {
    let queue = queue.get("queue")?;
    let state = state.get("state")?;
    let (queue, job_state) = job_filter(queue, state)?;
    let page = page_request::<String>(limit, cursor)?;
    let (jobs, more) = app
        .queues
        .list(queue, job_state, page.after.as_deref(), page.limit)
        .await
        .map_err(queue_error)?;
    Ok(Json(Page::from_rows(
        jobs,
        more,
        |job| job.cursor.clone(),
        JobView::from,
    )))
}

/// A job by id (its latest attempt), live or dead.
#[openapi(tag = "Admin")]
#[get("/v1/admin/jobs/<id>")]
pub async fn get_job(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    id: Uuid,
) -> Result<Json<JobView>, ApiError> {
    if let Some(dead) = store::jobs::find_dead(&state.db, id).await? {
        if dead.discarded_at.is_some() {
            return Err(ApiError::NotFound);
        }
        return Ok(Json(crate::jobs::admin::dead_view(dead).into()));
    }
    let job = state
        .queues
        .find(id)
        .await
        .map_err(queue_error)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(job.into()))
}

/// Runs a dead job again with a fresh set of attempts; `202` with the job as queued. A job
/// that is not dead answers 409.
#[openapi(tag = "Admin")]
#[post("/v1/admin/jobs/<id>/retry")]
pub async fn retry_job(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    id: Uuid,
) -> Result<Accepted<JobView>, ApiError> {
    match state.queues.retry_dead(id).await.map_err(queue_error)? {
        DeadJobAction::Done(view) => Ok(Accepted {
            location: format!("/v1/admin/jobs/{id}"),
            body: view.into(),
        }),
        DeadJobAction::Discarded => Err(ApiError::NotFound),
        DeadJobAction::NotDead => Err(not_dead(state, id).await?),
    }
}

/// The queues whose dead jobs can be retried: every registered queue.
fn retry_queue_schema(_gen: &mut schemars::gen::SchemaGenerator) -> schemars::schema::Schema {
    let queues: Vec<&str> = crate::workers::registry::queue_names().collect();
    crate::domain::schema::string_enum(&queues)
}

/// `POST /v1/admin/jobs/retry` body: which dead jobs to run again.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFilter {
    /// The queue whose dead jobs are retried (not `webhooks`: redeliver those).
    #[schemars(schema_with = "retry_queue_schema")]
    pub queue: String,
    /// At most this many (1..=10000, default 1000), oldest ids first.
    #[schemars(range(min = 1, max = 10000))]
    pub limit: Option<u64>,
}

/// The outcome of a bulk retry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct RetriedJobs {
    /// How many dead jobs were queued again.
    pub retried: u64,
    /// Their ids.
    pub ids: Vec<Uuid>,
}

/// Runs the dead jobs of a queue again, each with a fresh set of attempts (as `retry` does one
/// by one); `202` with how many. Queue `webhooks` answers 422: failed deliveries are redelivered
/// through their webhook.
#[openapi(tag = "Admin")]
#[post("/v1/admin/jobs/retry", data = "<body>")]
pub async fn retry_jobs(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    body: JsonBody<RetryFilter>,
) -> Result<Accepted<RetriedJobs>, ApiError> {
    let RetryFilter { queue, limit } = body.0;
    if queue == crate::jobs::admin::WEBHOOKS_QUEUE {
        return Err(ApiError::invalid(
            "/queue",
            "failed webhook deliveries are redelivered through their webhook",
        ));
    }
    if crate::workers::registry::job_kind(&queue).is_none() {
        return Err(ApiError::invalid(
            "/queue",
            format!("unknown queue {queue:?}"),
        ));
    }
    let limit = limit.unwrap_or(1000);
    if !(1..=10_000).contains(&limit) {
        return Err(ApiError::invalid("/limit", "must be between 1 and 10000"));
    }
    let retried = state
        .queues
        .retry_dead_of(&queue, limit)
        .await
        .map_err(queue_error)?;
    Ok(Accepted {
        location: format!("/v1/admin/jobs?queue={queue}&state=pending"),
        body: RetriedJobs {
            retried: retried.len() as u64,
            ids: retried.into_iter().map(|job| job.job_id).collect(),
        },
    })
}

/// 409 for a live job, 404 for an unknown one.
async fn not_dead(state: &AppState, id: Uuid) -> Result<ApiError, ApiError> {
    Ok(match state.queues.find(id).await.map_err(queue_error)? {
        Some(job) => ApiError::Conflict(format!(
            "job {id} is {}; only dead jobs can be retried or deleted",
            job.state
        )),
        None => ApiError::NotFound,
    })
}

/// Discards a dead job: `204`, and it is gone from the API (its record is kept so the
/// reconciler does not bring it back). A job that is not dead answers 409.
#[openapi(tag = "Admin")]
#[delete("/v1/admin/jobs/<id>")]
pub async fn delete_job(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    id: Uuid,
) -> Result<NoContent, ApiError> {
    if store::jobs::discard_dead(&state.db, id).await? {
        return Ok(NoContent);
    }
    match store::jobs::find_dead(&state.db, id).await? {
        Some(_) => Err(ApiError::NotFound),
        None => Err(not_dead(state, id).await?),
    }
}

/// `POST /v1/admin/probes` body.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProbes {
    /// How many probe jobs (1..=10000).
    #[schemars(range(min = 1, max = 10000))]
    pub count: i64,
    /// Simulated work per probe run in milliseconds (0..=60000, default 0).
    #[schemars(range(min = 0, max = 60000))]
    pub delay_ms: Option<i64>,
    /// Each probe fails (retryably) its first this-many attempts (0..=100, default 0), to
    /// exercise retries and dead jobs.
    #[schemars(range(min = 0, max = 100))]
    pub fail_attempts: Option<i64>,
}

/// A probe batch's progress.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProbeBatch {
    /// Batch id.
    pub batch_id: Uuid,
    /// Probe jobs requested.
    pub total: u64,
    /// Distinct probe jobs completed (never above `total`).
    pub completed: u64,
    /// Handler runs (above `completed` only when a job was re-delivered).
    pub executions: u64,
    /// When the first probe job was enqueued.
    pub first_enqueued_at: Option<DateTime<Utc>>,
    /// When the last probe job completed.
    pub last_completed_at: Option<DateTime<Utc>>,
}

/// Writes `count` probe events through the outbox in one transaction; `202` with the batch.
#[openapi(tag = "Admin")]
#[post("/v1/admin/probes", data = "<body>")]
pub async fn create_probes(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    body: JsonBody<CreateProbes>,
) -> Result<Accepted<ProbeBatch>, ApiError> {
    let CreateProbes {
        count,
        delay_ms,
        fail_attempts,
    } = body.0;
    let request = ProbeRequest::parse(count, delay_ms.unwrap_or(0), fail_attempts.unwrap_or(0))?;
    let batch_id = crate::resources::probe::request_batch(&state.db, request).await?;
    Ok(Accepted {
        location: format!("/v1/admin/probes/{batch_id}"),
        body: ProbeBatch {
            batch_id,
            total: count as u64,
            completed: 0,
            executions: 0,
            first_enqueued_at: None,
            last_completed_at: None,
        },
    })
}

/// A probe batch's progress.
#[openapi(tag = "Admin")]
#[get("/v1/admin/probes/<batch_id>")]
pub async fn get_probes(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    batch_id: Uuid,
) -> Result<Json<ProbeBatch>, ApiError> {
    let batch = store::jobs::find_probe_batch(&state.db, batch_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let stats = store::jobs::probe_stats(&state.db, batch_id).await?;
    Ok(Json(ProbeBatch {
        batch_id,
        total: batch.total.max(0) as u64,
        completed: stats.completed.max(0) as u64,
        executions: stats.executions.unwrap_or(0).max(0) as u64,
        first_enqueued_at: stats.first_enqueued_at,
        last_completed_at: stats.last_completed_at,
    }))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: outbox_status, queues_status, stats_stream, list_jobs, get_job, retry_job, retry_jobs, delete_job, create_probes, get_probes]
}
