//! The worker runtime: one apalis worker per job kind, fed by a [`QueueSource`] (our apalis
//! backend over [`Queues`]), each attempt settled as done, retried with backoff, or dead;
//! leases heartbeated, acknowledgements batched, expired leases rescued, queue depth and
//! retention kept up while the workers run.

use super::{JobEnvelope, JobKind, NewJob, QueueError, Queues};
use crate::store;
use crate::workers::WorkerContext;
use apalis::prelude::{Data, Monitor, Task, WorkerBuilder, WorkerBuilderExt};
use apalis_core::backend::{Backend, BackendConfig};
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Notify};
use uuid::Uuid;

/// Poll interval of an idle worker when nothing in this process woke it.
const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Most jobs claimed in one round trip.
const MAX_CLAIM: usize = 200;
/// Queues run at least this many at once get as many again claimed ahead (see `Lease`);
/// fewer (slow kinds: codegen, vcluster) claim only what they can start, so that another
/// process with a free slot gets the next job.
const PREFETCH_FROM: usize = 16;
/// Most acknowledgements sent in one round trip.
const MAX_ACK: usize = 1_000;
/// Longest pause after a backend error (doubling from 100 ms).
const MAX_ERROR_PAUSE: Duration = Duration::from_secs(5);
/// How often finished jobs older than the retention are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// One claimed attempt as a worker receives it.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The attempt's task id (what is acknowledged).
    task_id: String,
    /// The stored envelope.
    envelope: JobEnvelope,
}

/// What one worker of one queue in this process holds: its leases, the claimed attempts
/// waiting for a free slot, and the channel its finished attempts are acknowledged through.
struct Lease {
    queues: Queues,
    queue: &'static str,
    /// The holder name the SQL backends record in `lock_by`.
    holder: String,
    /// Task ids claimed and not yet acknowledged (heartbeated, released at shutdown).
    held: Mutex<HashSet<String>>,
    /// Attempts claimed whose handler has not finished (running or waiting for a slot).
    outstanding: AtomicUsize,
    /// Signalled when a handler finishes: room to claim more.
    finished: Notify,
    /// Most attempts outstanding at once: the concurrency, plus as many again prefetched for a
    /// busy queue so that the next batch is claimed while this one runs.
    capacity: usize,
    /// Room needed before the next claim (1 without prefetch, else the concurrency).
    refill: usize,
    acks: mpsc::UnboundedSender<String>,
    /// The claimed attempts, for the worker's [`QueueSource`] (which takes the receiver while
    /// it runs and puts it back when dropped).
    ready: Mutex<Option<mpsc::UnboundedReceiver<Claimed>>>,
}

/// Locks a mutex, taking over a poisoned one (the data stays consistent: sets and options).
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Lease {
    fn held_ids(&self) -> Vec<String> {
        lock(&self.held).iter().cloned().collect()
    }

    /// A handler finished (whatever its outcome): room for one more.
    fn finish_one(&self) {
        self.outstanding.fetch_sub(1, Ordering::AcqRel);
        self.finished.notify_one();
    }

    /// Claims the next batch of at most `limit`, waiting (woken by a local enqueue or the poll
    /// interval) while the queue is empty and pausing with backoff while the backend fails.
    async fn next_batch(&self, limit: usize) -> Vec<Claimed> {
        let waker = self.queues.waker(self.queue);
        let mut pause = Duration::from_millis(100);
        loop {
            let notified = waker.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.queues.claim(self.queue, &self.holder, limit).await {
                Ok(rows) if !rows.is_empty() => {
                    let mut batch = Vec::with_capacity(rows.len());
                    let mut held = lock(&self.held);
                    for (task_id, payload) in rows {
                        match serde_json::from_str::<JobEnvelope>(&payload) {
                            Ok(envelope) => {
                                held.insert(task_id.clone());
                                batch.push(Claimed { task_id, envelope });
                            }
                            Err(err) => {
                                // Nothing can run it; settle it so it does not come back.
                                tracing::error!(queue = self.queue, task_id, %err, "undecodable job dropped");
                                let _ = self.acks.send(task_id);
                            }
                        }
                    }
                    drop(held);
                    if !batch.is_empty() {
                        return batch;
                    }
                }
                Ok(_) => {
                    pause = Duration::from_millis(100);
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(POLL_INTERVAL) => {}
                    }
                }
                Err(err) => {
                    tracing::warn!(queue = self.queue, %err, ?pause, "cannot claim jobs; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_ERROR_PAUSE);
                }
            }
        }
    }
}

/// Claims while there is room (fewer than `capacity` outstanding) and hands the claimed
/// attempts to the worker; ends when `stop` turns true.
async fn claim_loop(
    lease: Arc<Lease>,
    ready: mpsc::UnboundedSender<Claimed>,
    mut stop: watch::Receiver<bool>,
) {
    while !*stop.borrow() {
        let finished = lease.finished.notified();
        tokio::pin!(finished);
        finished.as_mut().enable();
        let outstanding = lease.outstanding.load(Ordering::Acquire);
        // Claim in batches: wait until a whole refill fits (one slot for a queue without
        // prefetch, a concurrency's worth for one with), not one job per finished job.
        if outstanding + lease.refill > lease.capacity {
            tokio::select! {
                _ = &mut finished => {}
                _ = stop.changed() => {}
            }
            continue;
        }
        let limit = (lease.capacity - outstanding).min(MAX_CLAIM);
        let batch = tokio::select! {
            batch = lease.next_batch(limit) => batch,
            _ = stop.changed() => return,
        };
        lease.outstanding.fetch_add(batch.len(), Ordering::AcqRel);
        for job in batch {
            if ready.send(job).is_err() {
                return;
            }
        }
    }
}

/// Acknowledges finished attempts in batches: whatever finished while the previous batch was
/// on its way goes in the next one. When `stop` turns true it sends what is left and ends.
async fn acknowledge(
    lease: Arc<Lease>,
    mut acks: mpsc::UnboundedReceiver<String>,
    mut stop: watch::Receiver<bool>,
) {
    let mut batch = Vec::new();
    loop {
        let stopping = tokio::select! {
            biased;
            id = acks.recv() => match id {
                Some(id) => {
                    batch.push(id);
                    false
                }
                None => true,
            },
            _ = stop.changed() => true,
        };
        while batch.len() < MAX_ACK || stopping {
            match acks.try_recv() {
                Ok(id) => batch.push(id),
                Err(_) => break,
            }
        }
        if !batch.is_empty() {
            send_acks(&lease, &batch, stopping).await;
            let mut held = lock(&lease.held);
            for id in &batch {
                held.remove(id);
            }
            drop(held);
            batch.clear();
        }
        if stopping {
            return;
        }
    }
}

/// Sends one batch of acknowledgements, retrying while the backend fails (the attempts stay
/// held, so heartbeated: nobody else runs them meanwhile); when stopping, tries once more at
/// most, since the process is going (unacknowledged attempts run again after their lease).
async fn send_acks(lease: &Lease, batch: &[String], stopping: bool) {
    let mut pause = Duration::from_millis(100);
    for attempt in 1.. {
        match lease.queues.complete(lease.queue, batch).await {
            Ok(()) => return,
            Err(err) if stopping && attempt >= 2 => {
                tracing::warn!(queue = lease.queue, %err, "cannot acknowledge jobs at shutdown; they run again after their lease");
                return;
            }
            Err(err) => {
                tracing::warn!(queue = lease.queue, %err, "cannot acknowledge jobs; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_ERROR_PAUSE);
            }
        }
    }
}

/// The apalis backend of one worker: yields the attempts the claim loop claimed, one at a
/// time; apalis polls it only when the worker has a free slot.
pub struct QueueSource {
    lease: Arc<Lease>,
    ready: Option<mpsc::UnboundedReceiver<Claimed>>,
}

impl QueueSource {
    fn new(lease: Arc<Lease>) -> Self {
        let ready = lock(&lease.ready).take();
        Self { lease, ready }
    }
}

impl Drop for QueueSource {
    /// Puts the receiver back, so a restarted worker picks up what was claimed.
    fn drop(&mut self) {
        if let Some(ready) = self.ready.take() {
            *lock(&self.lease.ready) = Some(ready);
        }
    }
}

impl Backend for QueueSource {
    type Task = Task<Claimed>;
    type Error = QueueError;

    fn poll_ready(
        &mut self,
        _: &mut Context<'_>,
        _: &apalis_core::worker::context::WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn poll_next(
        &mut self,
        cx: &mut Context<'_>,
        _: &apalis_core::worker::context::WorkerContext,
    ) -> Poll<Option<Result<Self::Task, Self::Error>>> {
        match self.ready.as_mut() {
            Some(ready) => ready
                .poll_recv(cx)
                .map(|job| job.map(|job| Ok(Task::new(job)))),
            // Another source of this worker holds the receiver (it is being replaced).
            None => Poll::Pending,
        }
    }

    fn poll_close(
        &mut self,
        _: &mut Context<'_>,
        _: &apalis_core::worker::context::WorkerContext,
    ) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }
}

impl BackendConfig for QueueSource {
    type Args = Claimed;
    type Id = apalis_core::task::task_id::RandomId;
    type Kind = apalis_core::backend::finalize::Ephemeral;
    type Config = ();
    type Layer = apalis_core::layers::Identity;

    fn config(&self) -> &Self::Config {
        &()
    }

    fn middleware(&mut self, _: &mut apalis_core::worker::context::WorkerContext) -> Self::Layer {
        apalis_core::layers::Identity::new()
    }
}

/// One queue's handler with what it needs to retry, bury, acknowledge and measure.
pub struct Runner {
    ctx: WorkerContext,
    queues: Queues,
    kind: JobKind,
    max_attempts: u32,
    lease: Arc<Lease>,
}

async fn run_job(job: Claimed, runner: Data<Arc<Runner>>) -> Result<(), QueueError> {
    let result = runner.run(&job.envelope).await;
    runner.lease.finish_one();
    match result {
        Ok(()) => {
            let _ = runner.lease.acks.send(job.task_id);
            Ok(())
        }
        Err(err) => {
            // The outcome could not be recorded: stop heartbeating it, so it runs again once
            // its lease runs out (by then the backend is likely back).
            lock(&runner.lease.held).remove(&job.task_id);
            tracing::warn!(queue = runner.kind.queue(), job_id = %job.envelope.job_id, %err, "could not settle a job; it runs again after its lease");
            Err(err)
        }
    }
}

impl Runner {
    /// Runs one job and settles its outcome: done, retried later, or dead. An error returned
    /// here (the outcome could not be recorded) leaves the attempt to run again.
    async fn run(&self, job: &JobEnvelope) -> Result<(), QueueError> {
        let queue = self.kind.queue();
        let metrics = &self.ctx.metrics;
        let busy = metrics.worker_busy.with_label_values(&[queue]);
        busy.inc();
        let started = Instant::now();
        // The job runs in the scope of the request that caused it: its events carry that id.
        let result = match super::envelope::request_id_of(&job.args) {
            Some(request_id) => {
                let scope = std::sync::Arc::new(crate::audit::RequestScope::job(request_id));
                crate::audit::scoped(scope, self.kind.handle(&self.ctx, job)).await
            }
            None => self.kind.handle(&self.ctx, job).await,
        };
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
                let payload = serde_json::to_value(job).unwrap_or_default();
                store::jobs::insert_dead(
                    &self.ctx.db,
                    job.job_id,
                    queue,
                    payload,
                    job.attempt as i32,
                    &err.to_string(),
                )
                .await?;
                self.kind.on_dead(&self.ctx, job, &err).await;
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
/// jobs finish within `GANTRY_SHUTDOWN_TIMEOUT`, acknowledges them, and gives back what was
/// claimed but not finished (anything a crash leaves behind is rescued when its lease runs
/// out, three missed heartbeats later).
pub async fn run_workers(
    ctx: WorkerContext,
    queues: Queues,
    kinds: Vec<JobKind>,
    mut shutdown: watch::Receiver<bool>,
) {
    if kinds.is_empty() {
        return;
    }
    // Our source never fails (it pauses and retries inside), so a restart is only ever
    // needed for a worker that failed on its own; restart it at once.
    let mut monitor = Monitor::new()
        .shutdown_timeout(ctx.config.shutdown_timeout)
        .should_restart(|worker, err| {
            tracing::warn!(worker = worker.name(), %err, "job worker failed; restarting it");
            true
        });
    let mut names = Vec::new();
    let mut leases = Vec::new();
    let mut tasks = Vec::new();
    let (stop_claiming, claiming_stopped) = watch::channel(false);
    let (stop_acking, acking_stopped) = watch::channel(false);
    for kind in kinds {
        let queue = kind.queue();
        let queue_config = ctx.config.jobs.queue(queue);
        let concurrency = queue_config.concurrency.max(1);
        let prefetch = concurrency >= PREFETCH_FROM;
        names.push(queue);
        let (acks, ack_queue) = mpsc::unbounded_channel();
        let (claimed, ready) = mpsc::unbounded_channel();
        let lease = Arc::new(Lease {
            queues: queues.clone(),
            queue,
            holder: format!(
                "{}:{}:{}",
                queues.backend_queue(queue),
                std::process::id(),
                Uuid::new_v4().simple()
            ),
            held: Mutex::default(),
            outstanding: AtomicUsize::new(0),
            finished: Notify::new(),
            capacity: if prefetch {
                concurrency * 2
            } else {
                concurrency
            },
            refill: if prefetch { concurrency } else { 1 },
            acks,
            ready: Mutex::new(Some(ready)),
        });
        tasks.push(tokio::spawn(acknowledge(
            lease.clone(),
            ack_queue,
            acking_stopped.clone(),
        )));
        tasks.push(tokio::spawn(claim_loop(
            lease.clone(),
            claimed,
            claiming_stopped.clone(),
        )));
        let runner = Arc::new(Runner {
            ctx: ctx.clone(),
            queues: queues.clone(),
            kind,
            max_attempts: queue_config.max_attempts,
            lease: lease.clone(),
        });
        let source_lease = lease.clone();
        let holder = lease.holder.clone();
        monitor = monitor.register(move |restarts| {
            WorkerBuilder::new(format!("{holder}:{restarts}"))
                .backend(QueueSource::new(source_lease.clone()))
                .data(runner.clone())
                .concurrency(concurrency)
                .build(run_job)
        });
        leases.push(lease);
    }
    tracing::info!(backend = queues.backend_name(), queues = ?names, "job workers started");
    for queue in &names {
        ctx.metrics.touch_queue(queue);
    }
    let upkeep = tokio::spawn(upkeep(
        queues.clone(),
        ctx.metrics.clone(),
        names.clone(),
        leases.clone(),
        ctx.config.jobs.heartbeat,
        shutdown.clone(),
    ));
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
    // In-flight handlers are done (or past the shutdown timeout): stop claiming, send the
    // last acknowledgements, then give back whatever is still held (claimed but never
    // started, or still running past the deadline) so another process runs it at once.
    let _ = stop_claiming.send(true);
    let _ = stop_acking.send(true);
    for task in tasks {
        let _ = task.await;
    }
    upkeep.abort();
    let _ = upkeep.await;
    for lease in &leases {
        let ids = lease.held_ids();
        if ids.is_empty() {
            continue;
        }
        match queues.release(lease.queue, &lease.holder, &ids).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(
                queue = lease.queue,
                released = n,
                "gave unfinished jobs back"
            ),
            Err(err) => {
                tracing::warn!(queue = lease.queue, %err, "cannot give unfinished jobs back; they return when their lease runs out")
            }
        }
    }
    tracing::info!(queues = ?names, "job workers stopped");
}

/// Every heartbeat: extend this process's leases, rescue expired ones (any process's), refresh
/// the depth gauge; every minute: forget finished jobs past the retention.
async fn upkeep(
    queues: Queues,
    metrics: Arc<crate::metrics::Metrics>,
    names: Vec<&'static str>,
    leases: Vec<Arc<Lease>>,
    every: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut forgot_at: Option<Instant> = None;
    while !*shutdown.borrow() {
        for lease in &leases {
            let ids = lease.held_ids();
            if ids.is_empty() {
                continue;
            }
            if let Err(err) = queues.extend(lease.queue, &lease.holder, &ids).await {
                tracing::warn!(queue = lease.queue, %err, "cannot extend job leases");
            }
        }
        match queues.rescue_expired(&names).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(rescued = n, "jobs of a lost worker are ready again"),
            Err(err) => tracing::warn!(%err, "cannot rescue expired jobs"),
        }
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
