//! Job queues and the shared worker runtime.
//!
//! One apalis queue per job kind, on Redis (apalis-redis) when `REDIS_URL` is set and otherwise
//! on the system-of-record database (apalis-postgres / apalis-sqlite). apalis provides storage,
//! locking, heartbeats and orphan rescue; this module adds what our contract needs on top:
//! job ids derived from event ids (a re-routed event cannot create a second job), retries with
//! exponential backoff and full jitter up to a per-queue attempt limit, permanent errors, dead
//! jobs kept with their last error, and metrics. A worker module implements [`Job`] and adds one
//! entry to [`crate::workers::registry::JOB_KINDS`]; the runtime deserializes its arguments once.

pub mod admin;

use crate::config::{Config, JobsConfig};
use crate::store;
use crate::workers::codegen::CodegenRunError;
use crate::workers::vcluster::driver::DriverError;
use crate::workers::WorkerContext;
use apalis::prelude::{
    BackendExt, Data, Monitor, TaskBuilder, TaskId, TaskSink, WorkerBuilder, WorkerBuilderExt,
};
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use chrono::{DateTime, Utc};
use sea_orm::{DatabaseBackend, DatabaseConnection, DbErr};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// How long Redis remembers an enqueued job id, so a re-routed event cannot enqueue it twice.
const REDIS_DEDUPE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Poll interval of an idle worker (apalis otherwise polls once per heartbeat).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often finished jobs older than the retention are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);
/// Jobs per push to the backend.
const PUSH_CHUNK: usize = 500;
/// Jobs fetched per poll.
const FETCH_BATCH: usize = 32;

/// What apalis stores for every job: our id, the attempt number and the kind's arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEnvelope {
    /// Logical job id: the id of the event that caused it, the same across retries.
    pub job_id: Uuid,
    /// 1 for the first run, +1 per retry.
    pub attempt: u32,
    /// Attempts used before an operator's retry (0 until then): the attempt limit counts from
    /// here, so a retried dead job gets a fresh set of attempts.
    #[serde(default)]
    pub retry_base: u32,
    /// When the first attempt was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// The job kind's arguments.
    pub args: serde_json::Value,
}

impl JobEnvelope {
    /// True when a retryable failure of this attempt would make the job dead (the attempt
    /// limit counts from `retry_base`), so a handler can record the failure on its own row.
    pub fn is_last_attempt(&self, max_attempts: u32) -> bool {
        self.attempt.saturating_sub(self.retry_base) >= max_attempts
    }
}

/// A command event's job arguments: its type and data (`{"event_type", "data"}`).
pub fn command_args(event_type: &str, data: serde_json::Value) -> serde_json::Value {
    serde_json::json!({ "event_type": event_type, "data": data })
}

/// A command event's job arguments as a job kind reads them: `{"event_type", "data"}`, with
/// `data` typed by the kind.
#[derive(Debug, Clone, Deserialize)]
pub struct Command<D> {
    /// The event type that caused the job (one of the kind's [`Job::EVENT_TYPES`]).
    pub event_type: crate::outbox::EventType,
    /// The event's data.
    pub data: D,
}

/// Why a job failed, with its cause. [`JobError::is_retryable`] decides between another attempt
/// and a dead job; the rendered message is what logs and the dead job's `last_error` show.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job's arguments do not fit its kind: every attempt would fail the same way.
    #[error("permanent: bad {queue} job arguments: {source}")]
    BadArgs {
        /// The queue whose kind refused them.
        queue: &'static str,
        /// The deserialization error.
        #[source]
        source: serde_json::Error,
    },
    /// The system-of-record database failed (retryable).
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// A job queue failed (retryable).
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// An outbound HTTP request failed (retryable).
    #[error("http: {0}")]
    Http(#[from] reqwest::Error),
    /// A host-cluster driver failed; retryable when the driver says it is transient.
    #[error("{prefix}{0}", prefix = if matches!(.0, DriverError::Permanent(_)) { "permanent: " } else { "" })]
    Driver(#[from] DriverError),
    /// A codegen run failed; retryable unless the failure is permanent or out of attempts.
    #[error("{prefix}{0}", prefix = if .0.is_permanent() { "permanent: " } else { "" })]
    Codegen(#[from] CodegenRunError),
    /// A condition the job itself reports (no underlying error) that is worth another attempt.
    #[error("{0}")]
    Retryable(String),
    /// A condition the job itself reports that will not change on retry: the job dies at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl JobError {
    /// True when another attempt may succeed (after backoff); false makes the job dead at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::BadArgs { .. } | JobError::Permanent(_) => false,
            JobError::Database(_)
            | JobError::Queue(_)
            | JobError::Http(_)
            | JobError::Retryable(_) => true,
            JobError::Driver(err) => matches!(err, DriverError::Transient(_)),
            JobError::Codegen(err) => !err.is_permanent(),
        }
    }
}

/// A job kind: the one thing a worker module writes (crates.io's `BackgroundJob` is the model).
/// Register it with one entry in [`crate::workers::registry::JOB_KINDS`].
#[async_trait::async_trait]
pub trait Job: Send + Sync + 'static {
    /// Queue name (one queue per kind); its knobs are `GANTRY_QUEUE_<QUEUE>_…`.
    const QUEUE: &'static str;
    /// The command event types the outbox publisher routes to this queue.
    const EVENT_TYPES: &'static [crate::outbox::EventType];
    /// Jobs run at once per process when `GANTRY_QUEUE_<QUEUE>_CONCURRENCY` is unset.
    const DEFAULT_CONCURRENCY: usize;
    /// The arguments, read from the stored `{event_type, data}` once per attempt; arguments
    /// that do not parse make the job dead at once ([`JobError::BadArgs`]).
    type Args: DeserializeOwned + Send;

    /// Runs one attempt. Must be idempotent: apalis delivers at least once.
    async fn run(
        &self,
        ctx: &WorkerContext,
        args: Self::Args,
        attempt: &JobEnvelope,
    ) -> Result<(), JobError>;

    /// Called once when the job becomes dead (after its dead-job row is written).
    async fn on_dead(&self, _ctx: &WorkerContext, _attempt: &JobEnvelope, _error: &JobError) {}
}

/// A [`Job`] with its argument type erased, as the runtime holds it.
#[async_trait::async_trait]
pub trait ErasedJob: Send + Sync + 'static {
    /// The kind's queue.
    fn queue(&self) -> &'static str;
    /// Deserializes the arguments and runs the attempt.
    async fn handle(&self, ctx: &WorkerContext, attempt: &JobEnvelope) -> Result<(), JobError>;
    /// See [`Job::on_dead`].
    async fn on_dead(&self, ctx: &WorkerContext, attempt: &JobEnvelope, error: &JobError);
}

/// Erases a [`Job`]'s argument type.
struct Typed<J>(J);

#[async_trait::async_trait]
impl<J: Job> ErasedJob for Typed<J> {
    fn queue(&self) -> &'static str {
        J::QUEUE
    }

    async fn handle(&self, ctx: &WorkerContext, attempt: &JobEnvelope) -> Result<(), JobError> {
        let args = J::Args::deserialize(&attempt.args).map_err(|source| JobError::BadArgs {
            queue: J::QUEUE,
            source,
        })?;
        self.0.run(ctx, args, attempt).await
    }

    async fn on_dead(&self, ctx: &WorkerContext, attempt: &JobEnvelope, error: &JobError) {
        self.0.on_dead(ctx, attempt, error).await;
    }
}

/// A job kind ready for [`run_workers`].
pub type JobKind = Arc<dyn ErasedJob>;

/// Wraps `job` for [`run_workers`].
pub fn kind<J: Job>(job: J) -> JobKind {
    Arc::new(Typed(job))
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Logical job id (the event id).
    pub job_id: Uuid,
    /// Attempt number (1 unless retrying).
    pub attempt: u32,
    /// Attempts used before an operator's retry (see [`JobEnvelope::retry_base`]).
    pub retry_base: u32,
    /// When the first attempt was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// Arguments.
    pub args: serde_json::Value,
    /// Delay before it may run.
    pub run_after: Option<Duration>,
}

/// Why queue access failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The system-of-record database failed.
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The apalis storage refused.
    #[error("job storage: {0}")]
    Storage(String),
}

#[derive(Clone)]
enum Backend {
    Redis(redis::aio::ConnectionManager),
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The job queues of this deployment: enqueueing, running workers, and counts.
#[derive(Clone)]
pub struct Queues {
    backend: Backend,
    db: DatabaseConnection,
    config: Arc<JobsConfig>,
}

/// The apalis task id of a job's attempt: derived from the job id, so enqueueing the same
/// attempt twice is refused by the backend (or by our pre-check) instead of running twice.
pub fn task_id(job_id: Uuid, attempt: u32) -> TaskId {
    let bits = job_id.as_u128() ^ u128::from(attempt.saturating_sub(1));
    TaskId::from_ulid(ulid::Ulid::from(bits))
}

impl Queues {
    /// Connects to the configured backend and installs apalis' tables (SQL backends).
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
                DatabaseBackend::Postgres => {
                    let pool = db.get_postgres_connection_pool().clone();
                    PostgresStorage::setup(&pool)
                        .await
                        .map_err(|e| QueueError::Storage(e.to_string()))?;
                    store::jobs::ensure_status_index(db).await?;
                    Backend::Postgres(pool)
                }
                _ => {
                    // apalis tunes its pool's connections (synchronous = off); keep that away
                    // from the system-of-record pool.
                    let options: apalis_sqlite::SqliteConnectOptions = config
                        .database_url
                        .parse()
                        .map_err(|e: sea_orm::sqlx::Error| QueueError::Storage(e.to_string()))?;
                    let pool = apalis_sqlite::SqlitePoolOptions::new()
                        .max_connections(4)
                        .connect_with(
                            options
                                .journal_mode(sea_orm::sqlx::sqlite::SqliteJournalMode::Wal)
                                .busy_timeout(Duration::from_secs(10)),
                        )
                        .await
                        .map_err(|e| QueueError::Storage(e.to_string()))?;
                    // apalis' migrator takes no lock on SQLite: a process starting beside
                    // another can lose the race once; the second try finds the tables there.
                    let mut tries = 0;
                    while let Err(err) = SqliteStorage::setup(&pool).await {
                        tries += 1;
                        if tries >= 5 {
                            return Err(QueueError::Storage(err.to_string()));
                        }
                        tokio::time::sleep(Duration::from_millis(200 * tries)).await;
                    }
                    store::jobs::ensure_status_index(db).await?;
                    Backend::Sqlite(pool)
                }
            },
        };
        Ok(Self {
            backend,
            db: db.clone(),
            config: Arc::new(config.jobs.clone()),
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

    /// The name `queue` has in the backend.
    pub fn backend_queue(&self, queue: &str) -> String {
        format!("{}{queue}", self.config.prefix)
    }

    /// Enqueues jobs on `queue`. A job whose attempt is already enqueued (or was, and ran) is
    /// skipped; returns how many were new.
    pub async fn enqueue(&self, queue: &str, jobs: Vec<NewJob>) -> Result<usize, QueueError> {
        if jobs.is_empty() {
            return Ok(0);
        }
        let name = self.backend_queue(queue);
        let jobs = match &self.backend {
            Backend::Redis(_) => jobs,
            Backend::Postgres(_) | Backend::Sqlite(_) => {
                let ids: Vec<String> = jobs
                    .iter()
                    .map(|j| task_id(j.job_id, j.attempt).to_string())
                    .collect();
                let existing = store::jobs::existing_task_ids(&self.db, &ids).await?;
                jobs.into_iter()
                    .zip(ids)
                    .filter(|(_, id)| !existing.contains(id))
                    .map(|(job, _)| job)
                    .collect()
            }
        };
        let count = jobs.len();
        if count == 0 {
            return Ok(0);
        }
        let redis = matches!(self.backend, Backend::Redis(_));
        let tasks: Vec<_> = jobs
            .into_iter()
            .map(|job| {
                let mut builder = TaskBuilder::new(JobEnvelope {
                    job_id: job.job_id,
                    attempt: job.attempt,
                    retry_base: job.retry_base,
                    enqueued_at: job.enqueued_at,
                    args: job.args,
                })
                .task_id(task_id(job.job_id, job.attempt));
                if redis {
                    builder = builder.idempotency_key(format!("{}:{}", job.job_id, job.attempt));
                }
                if let Some(delay) = job.run_after {
                    builder = builder.run_after(delay);
                }
                builder.build()
            })
            .collect();
        // Bounded pushes: apalis-redis passes a push as one script call (7 arguments per job).
        for chunk in tasks.chunks(PUSH_CHUNK) {
            self.push(&name, chunk.to_vec()).await?;
        }
        Ok(count)
    }

    async fn push(
        &self,
        name: &str,
        tasks: Vec<apalis::prelude::Task<JobEnvelope>>,
    ) -> Result<(), QueueError> {
        let mut stream = futures::stream::iter(tasks);
        let result = match &self.backend {
            Backend::Redis(conn) => {
                let mut storage = RedisStorage::<JobEnvelope>::new(conn.clone())
                    .with_config(self.redis_config(name));
                storage
                    .push_all(&mut stream)
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Postgres(pool) => {
                let mut storage =
                    PostgresStorage::<JobEnvelope>::new(pool).with_config(self.pg_config(name));
                storage
                    .push_all(&mut stream)
                    .await
                    .map_err(|e| e.to_string())
            }
            Backend::Sqlite(pool) => {
                let mut storage =
                    SqliteStorage::<JobEnvelope>::new(pool).with_config(self.sqlite_config(name));
                storage
                    .push_all(&mut stream)
                    .await
                    .map_err(|e| e.to_string())
            }
        };
        result.map_err(QueueError::Storage)
    }

    pub(crate) fn redis_config(&self, name: &str) -> apalis_redis::Config {
        apalis_redis::Config::default()
            .queue(name)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(3)
            .batch_size(FETCH_BATCH)
            .idempotency_ttl(Some(REDIS_DEDUPE_TTL))
    }

    fn pg_config(&self, name: &str) -> apalis_postgres::Config {
        apalis_postgres::Config::default()
            .queue(name)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(3)
            .batch_size(FETCH_BATCH)
    }

    fn sqlite_config(&self, name: &str) -> apalis_sqlite::Config {
        apalis_sqlite::Config::default()
            .queue(name)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(3)
            .batch_size(FETCH_BATCH)
    }

    fn register(&self, monitor: Monitor, runner: Arc<Runner>, concurrency: usize) -> Monitor {
        let name = self.backend_queue(runner.kind.queue());
        // A restarted worker registers under a new name: the old one may still look alive.
        let instance = format!("{name}:{}:{}", std::process::id(), Uuid::new_v4().simple());
        // The three storages are different types behind the same worker shape.
        macro_rules! register_on {
            ($storage:expr) => {{
                let storage = $storage.poll_with_interval(POLL_INTERVAL);
                monitor.register(move |restarts| {
                    WorkerBuilder::new(format!("{instance}:{restarts}"))
                        .backend(storage.clone())
                        .data(runner.clone())
                        .concurrency(concurrency)
                        .build(run_job)
                })
            }};
        }
        match &self.backend {
            Backend::Redis(conn) => register_on!(RedisStorage::<JobEnvelope>::new(conn.clone())
                .with_config(self.redis_config(&name))),
            Backend::Postgres(pool) => register_on!(
                PostgresStorage::<JobEnvelope>::new(pool).with_config(self.pg_config(&name))
            ),
            Backend::Sqlite(pool) => register_on!(
                SqliteStorage::<JobEnvelope>::new(pool).with_config(self.sqlite_config(&name))
            ),
        }
    }
}

/// One queue's handler with what it needs to retry, bury and measure.
pub struct Runner {
    ctx: WorkerContext,
    queues: Queues,
    kind: JobKind,
    max_attempts: u32,
}

async fn run_job(
    job: JobEnvelope,
    runner: Data<Arc<Runner>>,
) -> Result<(), apalis::prelude::BoxDynError> {
    runner.run(job).await.map_err(Into::into)
}

impl Runner {
    /// Runs one job and settles its outcome: done, retried later, or dead. An error returned
    /// here (the outcome could not be recorded) leaves the job to apalis to run again.
    async fn run(&self, job: JobEnvelope) -> Result<(), QueueError> {
        let queue = self.kind.queue();
        let metrics = &self.ctx.metrics;
        let busy = metrics.worker_busy.with_label_values(&[queue]);
        busy.inc();
        let started = Instant::now();
        let result = self.kind.handle(&self.ctx, &job).await;
        busy.dec();
        metrics
            .job_duration_seconds
            .with_label_values(&[queue])
            .observe(started.elapsed().as_secs_f64());
        let outcome = match result {
            Ok(()) => "completed",
            Err(reason)
                if reason.is_retryable()
                    && job.attempt.saturating_sub(job.retry_base) < self.max_attempts =>
            {
                let config = &self.queues.config;
                let delay = crate::workers::backoff::full_jitter(
                    config.backoff_base,
                    config.backoff_cap,
                    job.attempt.saturating_sub(job.retry_base),
                );
                tracing::info!(queue, job_id = %job.job_id, attempt = job.attempt, ?delay, %reason, "job failed; retrying");
                self.queues
                    .enqueue(
                        queue,
                        vec![NewJob {
                            job_id: job.job_id,
                            attempt: job.attempt + 1,
                            retry_base: job.retry_base,
                            enqueued_at: job.enqueued_at,
                            args: job.args.clone(),
                            run_after: Some(delay),
                        }],
                    )
                    .await?;
                "retried"
            }
            Err(err) => {
                tracing::warn!(queue, job_id = %job.job_id, attempt = job.attempt, %err, "job is dead");
                let payload = serde_json::to_value(&job).unwrap_or_default();
                store::jobs::insert_dead(
                    &self.ctx.db,
                    job.job_id,
                    queue,
                    payload,
                    job.attempt as i32,
                    &err.to_string(),
                )
                .await?;
                self.kind.on_dead(&self.ctx, &job, &err).await;
                "dead"
            }
        };
        metrics
            .jobs_total
            .with_label_values(&[queue, outcome])
            .inc();
        Ok(())
    }
}

/// Runs workers for `kinds` until `shutdown` turns true; then stops claiming and lets in-flight
/// jobs finish within `GANTRY_SHUTDOWN_TIMEOUT` (unfinished ones are rescued by another
/// process after the orphan timeout).
pub async fn run_workers(
    ctx: WorkerContext,
    queues: Queues,
    kinds: Vec<JobKind>,
    mut shutdown: watch::Receiver<bool>,
) {
    if kinds.is_empty() {
        return;
    }
    // A worker whose backend failed under it (Redis restarted or flushed: its registration is
    // gone and every fetch fails) is rebuilt, which registers it again.
    let mut monitor = Monitor::new()
        .shutdown_timeout(ctx.config.shutdown_timeout)
        .should_restart(|worker, err| {
            tracing::warn!(worker = worker.name(), %err, "job worker failed; restarting it in 1s");
            // The callback is synchronous; pausing here keeps a backend outage from turning into
            // a hot restart loop (it only ever runs while a backend is failing).
            std::thread::sleep(Duration::from_secs(1));
            true
        });
    let mut names = Vec::new();
    for kind in kinds {
        let queue_config = ctx.config.jobs.queue(kind.queue());
        names.push(kind.queue());
        let runner = Arc::new(Runner {
            ctx: ctx.clone(),
            queues: queues.clone(),
            kind,
            max_attempts: queue_config.max_attempts,
        });
        monitor = queues.register(monitor, runner, queue_config.concurrency);
    }
    tracing::info!(backend = queues.backend_name(), queues = ?names, "job workers started");
    for queue in &names {
        ctx.metrics.touch_queue(queue);
    }
    let depth = tokio::spawn({
        let (queues, metrics, names, mut shutdown) = (
            queues.clone(),
            ctx.metrics.clone(),
            names.clone(),
            shutdown.clone(),
        );
        let every = ctx.config.jobs.heartbeat;
        async move {
            let mut forgot_at: Option<Instant> = None;
            while !*shutdown.borrow() {
                queues.refresh_depth(&metrics, &names).await;
                if forgot_at.is_none_or(|at| at.elapsed() >= FORGET_EVERY) {
                    queues.forget_finished(&names).await;
                    forgot_at = Some(Instant::now());
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    });
    let signal = async move {
        while !*shutdown.borrow() {
            if shutdown.changed().await.is_err() {
                break;
            }
        }
        Ok(())
    };
    if let Err(err) = monitor.run_with_signal(signal).await {
        tracing::warn!(%err, "job workers stopped with an error");
    }
    depth.abort();
    tracing::info!(queues = ?names, "job workers stopped");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_keep_their_class_and_message_shape() {
        let transient = JobError::from(DriverError::Transient("503 from the API".into()));
        assert!(transient.is_retryable());
        assert_eq!(transient.to_string(), "503 from the API");
        let refused = JobError::from(DriverError::Permanent("403 forbidden".into()));
        assert!(!refused.is_retryable());
        assert_eq!(refused.to_string(), "permanent: 403 forbidden");
        let db = JobError::from(DbErr::Custom("gone".into()));
        assert!(db.is_retryable());
        assert!(db.to_string().starts_with("database: "));
        assert!(
            std::error::Error::source(&db).is_some(),
            "the cause is kept"
        );
        let told = JobError::Retryable("probe told to fail its first 2 attempts".into());
        assert!(told.is_retryable());
        assert_eq!(told.to_string(), "probe told to fail its first 2 attempts");
        let codegen = JobError::from(CodegenRunError::Exhausted {
            error_type: "git".into(),
            detail: "push refused".into(),
            attempt: 3,
        });
        assert!(!codegen.is_retryable());
        assert_eq!(
            codegen.to_string(),
            "permanent: git: push refused (attempt 3, no attempts left)"
        );
    }

    #[test]
    fn bad_arguments_are_permanent_and_name_the_queue() {
        let err = serde_json::from_value::<Command<uuid::Uuid>>(serde_json::json!({}))
            .map(|_| ())
            .map_err(|source| JobError::BadArgs {
                queue: "probe",
                source,
            })
            .expect_err("no event_type");
        assert!(!err.is_retryable());
        assert!(err
            .to_string()
            .starts_with("permanent: bad probe job arguments: "));
        assert!(std::error::Error::source(&err).is_some());
    }
}
