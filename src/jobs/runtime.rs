//! The worker runtime: one apalis worker per job kind, each attempt settled as done, retried
//! with backoff, or dead; queue depth and retention kept up while the workers run.

use super::queues::Backend;
use super::{JobEnvelope, JobKind, NewJob, QueueError, Queues};
use crate::store;
use crate::workers::WorkerContext;
use apalis::prelude::{BackendExt, Data, Monitor, WorkerBuilder, WorkerBuilderExt};
use apalis_postgres::PostgresStorage;
use apalis_redis::RedisStorage;
use apalis_sqlite::SqliteStorage;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use uuid::Uuid;

/// Poll interval of an idle worker (apalis otherwise polls once per heartbeat).
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// How often finished jobs older than the retention are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

impl Queues {
    /// Registers `runner`'s worker on `monitor`, on whichever backend the queues use.
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
            Err(reason) if reason.is_retryable() && !job.is_last_attempt(self.max_attempts) => {
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
