//! `gantry bench`: throughput and latency of the job queues and the outbox publisher, measured
//! in process against the real backends, and the speed of the `templates` codegen engine.
//! Results are one `key=value` line on stdout so that `bench/compare.sh` can put them beside
//! the peers' (BullMQ, graphile-worker).

use crate::config::{Config, QueueConfig};
use crate::jobs::{Job, JobEnvelope, JobError, NewJob, Queues};
use crate::metrics::Metrics;
use crate::store;
use crate::workers::outbox_publisher::OutboxPublisher;
use crate::workers::WorkerContext;
use sea_orm::{ConnectionTrait, Statement};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{watch, Notify};

/// Queue the benchmark's no-op jobs run on.
const BENCH_QUEUE: &str = "bench";
/// Jobs per enqueue call (the peers enqueue in batches of 1000 too).
const ENQUEUE_BATCH: usize = 1_000;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Bad arguments or missing services.
    #[error("{0}")]
    Setup(String),
    /// Database failure.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Queue failure.
    #[error("{0}")]
    Queue(#[from] crate::jobs::QueueError),
    /// The codegen engine refused or failed on the synthetic graph.
    #[error("codegen: {0}")]
    Codegen(String),
}

/// Which queue backend `bench queue` measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum QueueBackend {
    /// The Redis backend on `REDIS_URL`.
    Redis,
    /// The Postgres backend on `DATABASE_URL` (must be `postgres://…`).
    Postgres,
    /// The SQLite backend on a temporary file.
    Sqlite,
}

/// Deletes the benchmark's Redis keys (its queue prefix is unique to the run).
async fn delete_keys(url: &str, prefix: &str) {
    let Ok(client) = redis::Client::open(url) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = match redis::cmd("KEYS")
        .arg(format!("{prefix}*"))
        .query_async(&mut conn)
        .await
    {
        Ok(keys) => keys,
        Err(_) => return,
    };
    for chunk in keys.chunks(500) {
        let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query_async(&mut conn).await;
    }
}

/// Percentile (0..=100) of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

struct NoOp {
    done: AtomicU64,
    latencies_ms: Mutex<Vec<f64>>,
    last_done: Mutex<Option<Instant>>,
    all_done: Notify,
    total: u64,
}

/// The benchmark's job kind: a shared [`NoOp`] counter.
struct BenchJob(Arc<NoOp>);

#[async_trait::async_trait]
impl Job for BenchJob {
    const QUEUE: &'static str = BENCH_QUEUE;
    const EVENT_TYPES: &'static [crate::outbox::EventType] = &[];
    const DEFAULT_CONCURRENCY: usize = 8;
    // The benchmark's jobs carry no arguments worth reading.
    type Args = serde::de::IgnoredAny;

    async fn run(
        &self,
        _: &WorkerContext,
        _: Self::Args,
        job: &JobEnvelope,
    ) -> Result<(), JobError> {
        self.0.done_one(job)
    }
}

impl NoOp {
    fn done_one(&self, job: &JobEnvelope) -> Result<(), JobError> {
        let latency = (chrono::Utc::now() - job.enqueued_at)
            .to_std()
            .unwrap_or_default();
        if let Ok(mut latencies) = self.latencies_ms.lock() {
            latencies.push(latency.as_secs_f64() * 1000.0);
        }
        if let Ok(mut last) = self.last_done.lock() {
            *last = Some(Instant::now());
        }
        if self.done.fetch_add(1, Ordering::SeqCst) + 1 >= self.total {
            self.all_done.notify_one();
        }
        Ok(())
    }
}

/// Holds a temporary directory alive for an SQLite database.
type TempGuard = Option<tempfile::TempDir>;

async fn bench_context(
    base: &Config,
    database_url: String,
    redis_url: Option<String>,
) -> Result<WorkerContext, BenchError> {
    let mut config = base.clone();
    config.database_url = database_url;
    config.redis_url = redis_url;
    config.jobs.prefix = format!("bench-{}:", uuid::Uuid::new_v4().simple());
    let db = crate::app::open_database(&config)
        .await
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let queues = Queues::connect(&config, &db).await?;
    let metrics = Arc::new(Metrics::new().map_err(|e| BenchError::Setup(e.to_string()))?);
    let secrets =
        crate::sealed::SecretsCipher::ephemeral().map_err(|e| BenchError::Setup(e.to_string()))?;
    Ok(WorkerContext {
        db,
        redis: None,
        config: Arc::new(config),
        metrics,
        queues,
        secrets: Arc::new(secrets),
    })
}

fn sqlite_url() -> Result<(String, TempGuard), BenchError> {
    let dir = tempfile::tempdir().map_err(|e| BenchError::Setup(e.to_string()))?;
    let url = format!("sqlite://{}/bench.db?mode=rwc", dir.path().display());
    Ok((url, Some(dir)))
}

/// A worker context on `backend` with a fresh queue prefix (SQLite on a temporary file).
async fn backend_context(
    base: &Config,
    backend: QueueBackend,
) -> Result<(WorkerContext, TempGuard), BenchError> {
    let (database_url, redis_url, guard) = match backend {
        QueueBackend::Redis => {
            let redis = base
                .redis_url
                .clone()
                .ok_or_else(|| BenchError::Setup("--backend redis needs REDIS_URL".into()))?;
            let (url, guard) = sqlite_url()?;
            (url, Some(redis), guard)
        }
        QueueBackend::Postgres => {
            if !base.database_url.starts_with("postgres") {
                return Err(BenchError::Setup(
                    "--backend postgres needs DATABASE_URL=postgres://…".into(),
                ));
            }
            (base.database_url.clone(), None, None)
        }
        QueueBackend::Sqlite => {
            let (url, guard) = sqlite_url()?;
            (url, None, guard)
        }
    };
    let ctx = bench_context(base, database_url, redis_url).await?;
    Ok((ctx, guard))
}

/// Enqueues a flood of `flood` jobs on one queue (handlers taking 5 ms each, 50 at once), then
/// one job on another queue; prints how long that job waited to start and how many flood jobs
/// were still queued when it did.
pub async fn fairness(
    base: &Config,
    backend: QueueBackend,
    flood: u64,
) -> Result<String, BenchError> {
    if flood == 0 {
        return Err(BenchError::Setup("--flood must be at least 1".into()));
    }
    let (mut ctx, _guard) = backend_context(base, backend).await?;
    let mut config = (*ctx.config).clone();
    for (queue, concurrency) in [(BENCH_QUEUE, 50), (URGENT_QUEUE, 1)] {
        config.jobs.queues.insert(
            queue,
            QueueConfig {
                max_attempts: 1,
                concurrency,
            },
        );
    }
    ctx.config = Arc::new(config);
    let handler = Arc::new(NoOp {
        done: AtomicU64::new(0),
        latencies_ms: Mutex::new(Vec::new()),
        last_done: Mutex::new(None),
        all_done: Notify::new(),
        total: flood,
    });
    let urgent = Arc::new(Notify::new());
    // Enqueue the whole flood before any worker runs: "queued", as in the case.
    let mut enqueued = 0;
    while enqueued < flood {
        let n = (flood - enqueued).min(ENQUEUE_BATCH as u64);
        ctx.queues.enqueue(BENCH_QUEUE, no_op_jobs(n)).await?;
        enqueued += n;
    }
    let (stop, shutdown) = watch::channel(false);
    let workers = tokio::spawn(crate::jobs::run_workers(
        ctx.clone(),
        ctx.queues.clone(),
        vec![
            crate::jobs::kind(SlowBenchJob(handler.clone())),
            crate::jobs::kind(UrgentJob(urgent.clone())),
        ],
        shutdown,
    ));
    // Let the flood get going, then submit the one job.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started_wait = urgent.notified();
    tokio::pin!(started_wait);
    started_wait.as_mut().enable();
    let submitted = Instant::now();
    ctx.queues.enqueue(URGENT_QUEUE, no_op_jobs(1)).await?;
    let waited = tokio::time::timeout(Duration::from_secs(120), started_wait)
        .await
        .map(|()| submitted.elapsed());
    let flood_done = handler.done.load(Ordering::SeqCst);
    let _ = stop.send(true);
    let _ = workers.await;
    if let Some(url) = &ctx.config.redis_url {
        delete_keys(url, &ctx.config.jobs.prefix).await;
    }
    let waited = waited.map_err(|_| {
        BenchError::Setup("the job behind the flood did not start within 120 s".into())
    })?;
    Ok(format!(
        "bench=fairness backend=gantry-{} flood={flood} start_ms={:.1} flood_still_queued={}",
        backend_name(backend),
        waited.as_secs_f64() * 1000.0,
        flood.saturating_sub(flood_done),
    ))
}

/// `redis`, `postgres` or `sqlite`.
fn backend_name(backend: QueueBackend) -> &'static str {
    match backend {
        QueueBackend::Redis => "redis",
        QueueBackend::Postgres => "postgres",
        QueueBackend::Sqlite => "sqlite",
    }
}

/// Queue of the fairness benchmark's single job.
const URGENT_QUEUE: &str = "bench-urgent";

/// The fairness flood's job kind: 5 ms of (simulated) work, then counted.
struct SlowBenchJob(Arc<NoOp>);

#[async_trait::async_trait]
impl Job for SlowBenchJob {
    const QUEUE: &'static str = BENCH_QUEUE;
    const EVENT_TYPES: &'static [crate::outbox::EventType] = &[];
    const DEFAULT_CONCURRENCY: usize = 50;
    type Args = serde::de::IgnoredAny;

    async fn run(
        &self,
        _: &WorkerContext,
        _: Self::Args,
        job: &JobEnvelope,
    ) -> Result<(), JobError> {
        tokio::time::sleep(Duration::from_millis(5)).await;
        self.0.done_one(job)
    }
}

/// The fairness benchmark's single job: says when it started.
struct UrgentJob(Arc<Notify>);

#[async_trait::async_trait]
impl Job for UrgentJob {
    const QUEUE: &'static str = URGENT_QUEUE;
    const EVENT_TYPES: &'static [crate::outbox::EventType] = &[];
    const DEFAULT_CONCURRENCY: usize = 1;
    type Args = serde::de::IgnoredAny;

    async fn run(&self, _: &WorkerContext, _: Self::Args, _: &JobEnvelope) -> Result<(), JobError> {
        self.0.notify_one();
        Ok(())
    }
}

/// Rounds of a soak run; the resident set is read after the first and after the last.
const SOAK_ROUNDS: u64 = 10;

/// The process's resident set size in KiB (`VmRSS` of `/proc/self/status`; 0 where absent).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// Enqueues `jobs` no-op jobs with `concurrency` workers consuming them; prints jobs/s and
/// enqueue→done latency. With `soak`, the jobs go in [`SOAK_ROUNDS`] rounds, each enqueued once
/// the previous one is done, and the line adds the resident set after the first round and at the
/// end (a leak shows as growth between them).
pub async fn queue(
    base: &Config,
    backend: QueueBackend,
    jobs: u64,
    concurrency: usize,
    soak: bool,
) -> Result<String, BenchError> {
    if jobs == 0 || concurrency == 0 {
        return Err(BenchError::Setup(
            "--jobs and --concurrency must be at least 1".into(),
        ));
    }
    let (mut ctx, _guard) = backend_context(base, backend).await?;
    let mut config = (*ctx.config).clone();
    config.jobs.queues.insert(
        BENCH_QUEUE,
        QueueConfig {
            max_attempts: 1,
            concurrency,
        },
    );
    ctx.config = Arc::new(config);
    let handler = Arc::new(NoOp {
        done: AtomicU64::new(0),
        latencies_ms: Mutex::new(Vec::with_capacity(jobs as usize)),
        last_done: Mutex::new(None),
        all_done: Notify::new(),
        total: jobs,
    });
    let (stop, shutdown) = watch::channel(false);
    let workers = tokio::spawn(crate::jobs::run_workers(
        ctx.clone(),
        ctx.queues.clone(),
        vec![crate::jobs::kind(BenchJob(handler.clone()))],
        shutdown,
    ));
    // Let the workers register before the clock starts (the peers do the same).
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    let rounds = if soak { SOAK_ROUNDS.min(jobs) } else { 1 };
    let mut enqueued = 0;
    let mut rss_start = 0;
    for round in 0..rounds {
        // Round r enqueues up to the r-th share of the jobs, then waits for all of them.
        let target = jobs * (round + 1) / rounds;
        while enqueued < target {
            let n = (target - enqueued).min(ENQUEUE_BATCH as u64);
            let batch = no_op_jobs(n);
            ctx.queues.enqueue(BENCH_QUEUE, batch).await?;
            enqueued += n;
        }
        wait_done(&handler, target).await?;
        if round == 0 {
            rss_start = rss_kib();
        }
    }
    let rss_end = rss_kib();
    let finished = handler
        .last_done
        .lock()
        .ok()
        .and_then(|l| *l)
        .unwrap_or_else(Instant::now);
    let elapsed = finished.duration_since(started).as_secs_f64().max(1e-9);
    let mut latencies = handler
        .latencies_ms
        .lock()
        .map(|l| l.clone())
        .unwrap_or_default();
    latencies.sort_by(|a, b| a.total_cmp(b));
    let _ = stop.send(true);
    let _ = workers.await;
    if let Some(url) = &ctx.config.redis_url {
        delete_keys(url, &ctx.config.jobs.prefix).await;
    }
    let name = backend_name(backend);
    let mut line = format!(
        "backend=gantry-{name} jobs={jobs} concurrency={concurrency} jobs_per_sec={:.1} p50_ms={:.2} p99_ms={:.2}",
        jobs as f64 / elapsed,
        percentile(&latencies, 50.0),
        percentile(&latencies, 99.0),
    );
    if soak {
        let growth = if rss_start > 0 {
            (rss_end as f64 - rss_start as f64) / rss_start as f64 * 100.0
        } else {
            0.0
        };
        line.push_str(&format!(
            " soak_rounds={rounds} rss_start_kib={rss_start} rss_end_kib={rss_end} rss_growth_pct={growth:.1}"
        ));
    }
    Ok(line)
}

/// `n` no-op jobs enqueued now.
fn no_op_jobs(n: u64) -> Vec<NewJob> {
    let now = chrono::Utc::now();
    (0..n)
        .map(|_| NewJob {
            job_id: uuid::Uuid::new_v4(),
            attempt: 1,
            retry_base: 0,
            enqueued_at: now,
            args: serde_json::Value::Null,
            run_after: None,
        })
        .collect()
}

/// Waits until `handler` has run `target` jobs (at most ten minutes).
async fn wait_done(handler: &NoOp, target: u64) -> Result<(), BenchError> {
    let timeout = Duration::from_secs(600);
    if tokio::time::timeout(timeout, async {
        while handler.done.load(Ordering::SeqCst) < target {
            tokio::select! {
                _ = handler.all_done.notified() => {}
                _ = tokio::time::sleep(Duration::from_millis(20)) => {}
            }
        }
    })
    .await
    .is_err()
    {
        return Err(BenchError::Setup(format!(
            "only {} of {target} jobs finished within {timeout:?}",
            handler.done.load(Ordering::SeqCst)
        )));
    }
    Ok(())
}

/// Events written (and not measured) before the measured window: the pools open their
/// connections and the first statements are prepared.
const OUTBOX_WARMUP: Duration = Duration::from_secs(1);

/// Writes `rate` events per second for `seconds` seconds while one publisher runs; prints the
/// commit → published lag. The publisher is started and has finished its first round before
/// anything is written, and the first [`OUTBOX_WARMUP`] of writes is not measured: the figure is
/// the steady state, not process start-up. Each tick's events share an aggregate id, so every
/// event's lag is measured from the moment its own transaction committed.
pub async fn outbox(base: &Config, rate: u64, seconds: u64) -> Result<String, BenchError> {
    if rate == 0 || seconds == 0 {
        return Err(BenchError::Setup(
            "--rate and --seconds must be at least 1".into(),
        ));
    }
    let (database_url, _guard) = if base.database_url.starts_with("postgres") {
        (base.database_url.clone(), None)
    } else {
        sqlite_url()?
    };
    let mut ctx = bench_context(base, database_url, None).await?;
    let mut config = (*ctx.config).clone();
    // A stream nobody reads would only grow; measure publication itself.
    config.redis_url = None;
    ctx.config = Arc::new(config);
    let (stop, shutdown) = watch::channel(false);
    let publisher = tokio::spawn(crate::workers::periodic::run(
        ctx.clone(),
        OutboxPublisher::new(ctx.clone()),
        shutdown,
    ));
    wait_for_first_round(
        &ctx,
        <OutboxPublisher as crate::workers::periodic::PeriodicTask>::NAME,
    )
    .await?;

    const TICK: Duration = Duration::from_millis(100);
    let per_tick = (rate as f64 * TICK.as_secs_f64()).max(1.0);
    let mut owed = 0.0;
    let mut written = 0u64;
    // Aggregate id of each measured tick → when its transaction committed.
    let mut committed: std::collections::HashMap<uuid::Uuid, chrono::DateTime<chrono::Utc>> =
        std::collections::HashMap::new();
    let mut ticker = tokio::time::interval(TICK);
    let started = Instant::now();
    let measured_from = started + OUTBOX_WARMUP;
    let deadline = measured_from + Duration::from_secs(seconds);
    let run_started_at = chrono::Utc::now();
    while Instant::now() < deadline {
        ticker.tick().await;
        owed += per_tick;
        let n = owed.floor() as u64;
        owed -= n as f64;
        let tick_id = uuid::Uuid::new_v4();
        let txn = store::begin_write(&ctx.db).await?;
        let events = (0..n)
            .map(|_| store::outbox::NewEvent {
                event_id: uuid::Uuid::new_v4(),
                org_id: uuid::Uuid::nil(),
                aggregate_type: "bench",
                aggregate_id: tick_id,
                event_type: "bench.tick",
                payload: serde_json::Value::Null,
            })
            .collect();
        store::outbox::insert_bulk(&txn, events).await?;
        txn.commit().await?;
        if Instant::now() >= measured_from {
            committed.insert(tick_id, chrono::Utc::now());
            written += n;
        }
    }
    // Wait for the publisher to drain.
    let drain_deadline = Instant::now() + Duration::from_secs(60);
    while store::outbox::backlog(&ctx.db).await?.0 > 0 && Instant::now() < drain_deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop.send(true);
    let _ = publisher.await;
    let backend = ctx.db.get_database_backend();
    let rows = ctx
        .db
        .query_all_raw(Statement::from_sql_and_values(
            backend,
            store::sql_for(
                backend,
                "SELECT aggregate_id, published_at FROM outbox_events \
                 WHERE event_type = 'bench.tick' AND published_at IS NOT NULL AND created_at >= $1",
            ),
            [run_started_at.into()],
        ))
        .await?;
    let mut lags: Vec<f64> = rows
        .iter()
        .filter_map(|row| {
            let tick: uuid::Uuid = row.try_get("", "aggregate_id").ok()?;
            let published: chrono::DateTime<chrono::Utc> = row.try_get("", "published_at").ok()?;
            let committed = committed.get(&tick)?;
            // A batch can be published before the writer reads the clock after its commit.
            Some(((published - *committed).num_microseconds()? as f64 / 1000.0).max(0.0))
        })
        .collect();
    lags.sort_by(|a, b| a.total_cmp(b));
    // The benchmark's rows are no use to anyone afterwards (Postgres runs use a real database).
    ctx.db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            store::sql_for(
                backend,
                "DELETE FROM outbox_events WHERE event_type = 'bench.tick' AND created_at >= $1",
            ),
            [run_started_at.into()],
        ))
        .await?;
    let name = if backend == sea_orm::DatabaseBackend::Postgres {
        "postgres"
    } else {
        "sqlite"
    };
    Ok(format!(
        "bench=outbox backend={name} rate={rate} seconds={seconds} events={written} published={} lag_p50_ms={:.2} lag_p99_ms={:.2} lag_max_ms={:.2}",
        lags.len(),
        percentile(&lags, 50.0),
        percentile(&lags, 99.0),
        lags.last().copied().unwrap_or(0.0),
    ))
}

/// Waits until periodic task `task` has completed a round (so it is listening for wake-ups).
async fn wait_for_first_round(ctx: &WorkerContext, task: &str) -> Result<(), BenchError> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while ctx
        .metrics
        .periodic_runs_total
        .with_label_values(&[task, "completed"])
        .get()
        == 0
    {
        if Instant::now() >= deadline {
            return Err(BenchError::Setup(format!(
                "{task} did not complete a round within 30 s"
            )));
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Runs of generate+render the codegen benchmark times (the first also warms caches).
const CODEGEN_RUNS: usize = 5;

/// A valid synthetic graph of `nodes` nodes: repeating units of ten (ingress → web → api →
/// postgres, a worker with a volume, a migration job, a report cron job, a config and the
/// database credentials) wired with every edge kind; leftovers are plain services.
pub fn synthetic_graph(nodes: usize) -> serde_json::Value {
    use serde_json::json;
    let mut out_nodes = Vec::with_capacity(nodes);
    let mut edges = Vec::new();
    let units = nodes / 10;
    for u in 0..units {
        let id = |name: &str| format!("{name}-{u:04}");
        let (web, api, worker, db, creds) =
            (id("web"), id("api"), id("worker"), id("db"), id("creds"));
        let (settings, data, migrate, report, edge) = (
            id("settings"),
            id("data"),
            id("migrate"),
            id("report"),
            id("edge"),
        );
        let mut database = json!({
            "engine": "postgres", "version": "16.4", "storage": "20Gi", "credentials": creds,
        });
        if u % 2 == 0 {
            database["backup"] = json!({"schedule": "15 3 * * *", "retention_days": 7});
        }
        let mut config =
            json!({"data": {"LOG_LEVEL": "info", "POOL_SIZE": "20", "REGION": "eu-west-1"}});
        if u % 2 == 1 {
            config["mount_path"] = json!("/etc/app");
        }
        out_nodes.extend([
            json!({"id": edge, "kind": "ingress", "spec": {
                "host": format!("{web}.example.com"), "tls": {"secret_name": format!("{web}-tls")}}}),
            json!({"id": web, "kind": "service", "spec": {
                "image": "ghcr.io/acme/web:1.0.0", "ports": [{"port": 8080}], "replicas": 3,
                "probes": {"liveness_path": "/healthz", "readiness_path": "/readyz"}}}),
            json!({"id": api, "kind": "service", "spec": {
                "image": "ghcr.io/acme/api:1.0.0",
                "ports": [{"port": 9000}, {"name": "metrics", "port": 9100}],
                "env": {"RUST_LOG": "info"},
                "resources": {"cpu_request": "250m", "cpu_limit": "1", "memory_request": "256Mi"},
                "autoscaling": {"min_replicas": 2, "max_replicas": 8}}}),
            json!({"id": worker, "kind": "service", "spec": {
                "image": "ghcr.io/acme/worker:1.0.0", "args": ["work"]}}),
            json!({"id": db, "kind": "database", "spec": database}),
            json!({"id": creds, "kind": "secret_ref", "spec": {
                "secret_name": creds, "keys": ["POSTGRES_DB", "POSTGRES_PASSWORD", "POSTGRES_USER"]}}),
            json!({"id": settings, "kind": "config", "spec": config}),
            json!({"id": data, "kind": "volume", "spec": {"size": "5Gi", "mount_path": "/var/lib/worker"}}),
            json!({"id": migrate, "kind": "job", "spec": {
                "image": "ghcr.io/acme/migrate:1.0.0", "command": ["/migrate", "up"]}}),
            json!({"id": report, "kind": "cron_job", "spec": {
                "schedule": "*/10 * * * *", "image": "ghcr.io/acme/report:1.0.0"}}),
        ]);
        for (from, to, kind) in [
            (&edge, &web, "exposes"),
            (&web, &api, "connects"),
            (&api, &db, "connects"),
            (&worker, &db, "connects"),
            (&worker, &api, "connects"),
            (&creds, &api, "mounts"),
            (&creds, &worker, "mounts"),
            (&creds, &migrate, "mounts"),
            (&settings, &api, "mounts"),
            (&settings, &worker, "mounts"),
            (&data, &worker, "mounts"),
            (&migrate, &db, "connects"),
            (&migrate, &db, "depends_on"),
            (&report, &api, "connects"),
            (&api, &db, "depends_on"),
        ] {
            edges.push(json!({"from": from, "to": to, "kind": kind}));
        }
    }
    for i in 0..nodes - units * 10 {
        out_nodes.push(
            json!({"id": format!("extra-{i:04}"), "kind": "service", "spec": {
            "image": "ghcr.io/acme/extra:1.0.0", "ports": [{"port": 8080}]}}),
        );
    }
    json!({"nodes": out_nodes, "edges": edges})
}

/// Median of `values` (sorted in place).
fn median_ms(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    percentile(values, 50.0)
}

/// Times the `templates` engine (generate, then render) on a synthetic graph of `nodes` nodes.
pub fn codegen(nodes: usize) -> Result<String, BenchError> {
    use crate::workers::codegen::templates::{generate, render, Target};
    if nodes == 0 {
        return Err(BenchError::Setup("--nodes must be at least 1".into()));
    }
    let document = synthetic_graph(nodes);
    let graph = crate::domain::graph::validate(&document, "").map_err(|errors| {
        BenchError::Codegen(format!("the synthetic graph does not validate: {errors:?}"))
    })?;
    let target = Target {
        project: "bench".to_owned(),
    };
    let (mut generate_ms, mut render_ms, mut total_ms) = (Vec::new(), Vec::new(), Vec::new());
    let (mut objects_count, mut files_count, mut bytes) = (0, 0, 0);
    for _ in 0..CODEGEN_RUNS {
        let started = Instant::now();
        let objects = generate(&graph, &target).map_err(|e| BenchError::Codegen(e.to_string()))?;
        let generated = Instant::now();
        let files = render(&objects, &target).map_err(|e| BenchError::Codegen(e.to_string()))?;
        let rendered = Instant::now();
        generate_ms.push((generated - started).as_secs_f64() * 1000.0);
        render_ms.push((rendered - generated).as_secs_f64() * 1000.0);
        total_ms.push((rendered - started).as_secs_f64() * 1000.0);
        objects_count = objects.len();
        files_count = files.len();
        bytes = files.iter().map(|f| f.content.len()).sum::<usize>();
    }
    Ok(format!(
        "bench=codegen nodes={nodes} objects={objects_count} files={files_count} bytes={bytes} runs={CODEGEN_RUNS} generate_ms_p50={:.2} render_ms_p50={:.2} total_ms_p50={:.2}",
        median_ms(&mut generate_ms),
        median_ms(&mut render_ms),
        median_ms(&mut total_ms),
    ))
}
