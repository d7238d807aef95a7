//! [`Queues`]: the configured backend (Redis, Postgres or SQLite through apalis), connecting to
//! it and enqueueing jobs.

use super::{task_id, JobEnvelope, NewJob, QueueError};
use crate::config::{Config, JobsConfig};
use crate::store;
use apalis::prelude::{TaskBuilder, TaskSink};
use apalis_postgres::{PgPool, PostgresStorage};
use apalis_redis::RedisStorage;
use apalis_sqlite::{SqlitePool, SqliteStorage};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use std::sync::Arc;
use std::time::Duration;

/// How long Redis remembers an enqueued job id, so a re-routed event cannot enqueue it twice.
const REDIS_DEDUPE_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// Jobs per push to the backend.
const PUSH_CHUNK: usize = 500;
/// Jobs fetched per poll.
const FETCH_BATCH: usize = 32;

/// The backend the queues live on.
#[derive(Clone)]
pub(super) enum Backend {
    Redis(redis::aio::ConnectionManager),
    Postgres(PgPool),
    Sqlite(SqlitePool),
}

/// The job queues of this deployment: enqueueing, running workers, and counts.
#[derive(Clone)]
pub struct Queues {
    pub(super) backend: Backend,
    pub(super) db: DatabaseConnection,
    pub(super) config: Arc<JobsConfig>,
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

    /// True when the queues live in Redis (not in the system-of-record database).
    pub fn is_redis(&self) -> bool {
        matches!(self.backend, Backend::Redis(_))
    }

    /// The name `queue` has in the backend.
    pub fn backend_queue(&self, queue: &str) -> String {
        format!("{}{queue}", self.config.prefix)
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

    /// apalis-postgres settings for backend queue `name`.
    pub(super) fn pg_config(&self, name: &str) -> apalis_postgres::Config {
        apalis_postgres::Config::default()
            .queue(name)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(3)
            .batch_size(FETCH_BATCH)
    }

    /// apalis-sqlite settings for backend queue `name`.
    pub(super) fn sqlite_config(&self, name: &str) -> apalis_sqlite::Config {
        apalis_sqlite::Config::default()
            .queue(name)
            .heartbeat_interval(self.config.heartbeat)
            .missed_heartbeats(3)
            .batch_size(FETCH_BATCH)
    }
}
