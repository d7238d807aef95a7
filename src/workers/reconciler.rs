//! The reconciler: periodically re-enqueues routed work that has no completion, no dead job and
//! is older than `GANTRY_RECONCILE_AFTER` (probes; workspaces still pending, provisioning or
//! deleting; codegen jobs still pending or running), so work survives the loss of its job (Redis `FLUSHALL`, a deleted queue row); and
//! checks ready workspaces for drift, re-applying their host objects. A singleton across the fleet
//! (a [`super::periodic::Lease`]: on Postgres each round runs under a transaction-scoped advisory lock
//! that only one process can hold; SQLite deployments are single-node anyway). Re-enqueueing is
//! idempotent (job ids derive from event ids), so a job that is merely slow is not doubled.
//! [`WorkspaceGauges`] refreshes the workspace gauges in every publisher process, unleased.

use super::periodic::{Lease, PeriodicTask, Round, Schedule};
use super::{probe, WorkerContext};
use crate::jobs::NewJob;
use crate::outbox::EventType;
use crate::store;

/// Advisory-lock key of the reconciler (ASCII "gantry-r").
const RECONCILER_LOCK_KEY: i64 = 0x6761_6e74_7279_2d72;
/// How often the reconciler checks that the Redis queues still hold their data.
const DATA_LOSS_CHECK: std::time::Duration = std::time::Duration::from_secs(1);
/// Stranded probe events read per query.
const ROUND_LIMIT: u64 = 5_000;

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// Database failure.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Queue failure.
    #[error("{0}")]
    Queue(#[from] crate::jobs::QueueError),
}

/// The reconciler's kube driver, built on first use and kept (a failed build is retried next
/// round).
type DriverSlot = tokio::sync::OnceCell<std::sync::Arc<dyn super::vcluster::driver::KubeDriver>>;

/// The reconciler as a periodic task.
pub struct Reconciler {
    ctx: WorkerContext,
    driver: DriverSlot,
}

impl Reconciler {
    /// A reconciler; its kube driver is built on first use.
    pub fn new(ctx: WorkerContext) -> Self {
        Self {
            ctx,
            driver: DriverSlot::new(),
        }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for Reconciler {
    const NAME: &'static str = "reconciler";
    type Error = ReconcileError;

    fn schedule(&self) -> Schedule {
        Schedule::every(self.ctx.config.jobs.reconcile_interval)
    }

    fn lease(&self) -> Option<Lease> {
        Some(Lease {
            key: RECONCILER_LOCK_KEY,
        })
    }

    /// On Redis, checks every second that the queues still hold their data, so work lost to a
    /// flush is enqueued again within seconds instead of after `GANTRY_RECONCILE_AFTER`.
    async fn wake(&mut self) {
        if !self.ctx.queues.is_redis() {
            return std::future::pending::<()>().await;
        }
        loop {
            tokio::time::sleep(DATA_LOSS_CHECK).await;
            if let Ok(true) = self.ctx.queues.data_lost().await {
                return;
            }
        }
    }

    async fn round(&mut self) -> Result<Round, ReconcileError> {
        reconcile_once(&self.ctx, &self.driver).await?;
        Ok(Round::Idle)
    }
}

/// One round (run under the reconciler's lease); returns how many jobs were enqueued again.
pub async fn reconcile_once(
    ctx: &WorkerContext,
    driver: &DriverSlot,
) -> Result<usize, ReconcileError> {
    // After the queue backend lost its data every unfinished routed job is gone, however
    // young: enqueue them all now rather than waiting out `GANTRY_RECONCILE_AFTER`.
    let cutoff = if ctx.queues.claim_data_loss().await? {
        tracing::warn!("the job queues lost their data (or this is their first start): re-enqueueing all unfinished routed work");
        store::now()
    } else {
        store::now()
            - chrono::Duration::from_std(ctx.config.jobs.reconcile_after)
                .unwrap_or(chrono::Duration::seconds(120))
    };
    // Page through every stranded probe event (after a data loss that can be many rounds'
    // worth; a merely slow job re-enqueued again is a no-op).
    let mut enqueued = 0;
    let mut after = 0;
    loop {
        let stranded = store::jobs::stranded_probe_events(
            &ctx.db,
            probe::EVENT_TYPE,
            cutoff,
            after,
            ROUND_LIMIT,
        )
        .await?;
        let full = stranded.len() as u64 >= ROUND_LIMIT;
        after = stranded.last().map_or(after, |event| event.id);
        let jobs: Vec<NewJob> = stranded
            .into_iter()
            .map(|event| NewJob {
                job_id: event.event_id,
                attempt: 1,
                retry_base: 0,
                enqueued_at: store::now(),
                args: crate::jobs::command_args(probe::EVENT_TYPE, event.payload, None),
                run_after: None,
            })
            .collect();
        let new = ctx.queues.enqueue(probe::QUEUE, jobs).await?;
        ctx.metrics
            .reconciler_requeued_total
            .with_label_values(&[probe::QUEUE])
            .inc_by(new as u64);
        enqueued += new;
        if !full {
            break;
        }
    }
    enqueued += stranded_workspaces(ctx, cutoff).await?;
    enqueued += stranded_codegen_jobs(ctx, cutoff).await?;
    // Under the same lease: only one process repairs a drifted workspace.
    repair_drift(ctx, driver).await;
    if enqueued > 0 {
        tracing::warn!(
            enqueued,
            queue = probe::QUEUE,
            "reconciler re-enqueued work that had no live job"
        );
    }
    Ok(enqueued)
}

/// Workspaces still pending, provisioning or deleting without progress since `cutoff`: their
/// command event is enqueued again (a live job with the same id makes this a no-op).
async fn stranded_workspaces(
    ctx: &WorkerContext,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<usize, ReconcileError> {
    use store::workspaces::WorkspaceStatus;
    let stale = store::workspaces::stale_in(
        &ctx.db,
        &[
            WorkspaceStatus::Pending,
            WorkspaceStatus::Provisioning,
            WorkspaceStatus::Deleting,
        ],
        cutoff,
        ROUND_LIMIT,
    )
    .await?;
    let commands = stale.into_iter().map(|workspace| {
        let event_type = if workspace.status == WorkspaceStatus::Deleting {
            EventType::WorkspaceDeletionRequested
        } else {
            EventType::WorkspaceRequested
        };
        (workspace.id, event_type)
    });
    requeue_commands(ctx, commands).await
}

/// Codegen jobs still pending or running without progress since `cutoff`: their
/// `codegen.requested` event is enqueued again (a live job with the same id makes this a no-op).
async fn stranded_codegen_jobs(
    ctx: &WorkerContext,
    cutoff: chrono::DateTime<chrono::Utc>,
) -> Result<usize, ReconcileError> {
    let stale = store::codegen::stale_unfinished(&ctx.db, cutoff, ROUND_LIMIT).await?;
    let commands = stale
        .into_iter()
        .map(|job| (job.id, EventType::CodegenRequested));
    requeue_commands(ctx, commands).await
}

/// Enqueues the latest command event of each `(aggregate id, event type)` on the queue the
/// registry routes that event type to (as the publisher did).
async fn requeue_commands(
    ctx: &WorkerContext,
    commands: impl Iterator<Item = (uuid::Uuid, EventType)>,
) -> Result<usize, ReconcileError> {
    let mut by_queue: std::collections::BTreeMap<&'static str, Vec<NewJob>> = Default::default();
    for (aggregate_id, event_type) in commands {
        let Some(queue) = super::registry::queue_for(event_type) else {
            continue;
        };
        if let Some(event) =
            store::outbox::latest_for_aggregate(&ctx.db, aggregate_id, event_type.as_str()).await?
        {
            by_queue.entry(queue).or_default().push(NewJob {
                job_id: event.event_id,
                attempt: 1,
                retry_base: 0,
                enqueued_at: store::now(),
                args: crate::jobs::command_args(
                    event_type.as_str(),
                    event.payload,
                    event.request_id,
                ),
                run_after: None,
            });
        }
    }
    let mut enqueued = 0;
    for (queue, jobs) in by_queue {
        let new = ctx.queues.enqueue(queue, jobs).await?;
        ctx.metrics
            .reconciler_requeued_total
            .with_label_values(&[queue])
            .inc_by(new as u64);
        enqueued += new;
    }
    Ok(enqueued)
}

/// Checks ready workspaces against their host objects; re-applies and reports drift.
async fn repair_drift(ctx: &WorkerContext, slot: &DriverSlot) {
    let driver = match slot
        .get_or_try_init(|| super::vcluster::driver_from_config(ctx))
        .await
    {
        Ok(driver) => driver,
        Err(err) => {
            tracing::debug!(%err, "no kube driver; drift is not checked");
            return;
        }
    };
    let ready = match store::workspaces::ready(&ctx.db, ROUND_LIMIT).await {
        Ok(ready) => ready,
        Err(err) => {
            tracing::warn!(%err, "could not list ready workspaces");
            return;
        }
    };
    for workspace in ready {
        if let Err(err) = super::vcluster::repair_drift(ctx, driver.as_ref(), workspace).await {
            tracing::warn!(%err, "drift check failed");
        }
    }
}

/// Refreshes the workspace gauges every `GANTRY_RECONCILE_INTERVAL` (every publisher process
/// does, so any one of them serves the alert).
pub struct WorkspaceGauges {
    ctx: WorkerContext,
}

impl WorkspaceGauges {
    /// The gauge refresher.
    pub fn new(ctx: WorkerContext) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for WorkspaceGauges {
    const NAME: &'static str = "workspace-gauges";
    type Error = sea_orm::DbErr;

    fn schedule(&self) -> Schedule {
        Schedule::every(self.ctx.config.jobs.reconcile_interval)
    }

    async fn round(&mut self) -> Result<Round, sea_orm::DbErr> {
        refresh_workspace_gauges(&self.ctx).await?;
        Ok(Round::Idle)
    }
}

/// Sets `gantry_workspaces{status}` and `gantry_workspace_oldest_unready_age_seconds`.
async fn refresh_workspace_gauges(ctx: &WorkerContext) -> Result<(), sea_orm::DbErr> {
    let (counts, oldest) = store::workspaces::status_summary(&ctx.db).await?;
    for status in <store::workspaces::WorkspaceStatus as sea_orm::Iterable>::iter() {
        let n = counts
            .iter()
            .find(|(s, _)| *s == status)
            .map_or(0, |(_, n)| *n);
        ctx.metrics
            .workspaces
            .with_label_values(&[status.as_str()])
            .set(n);
    }
    let age = oldest
        .map(|at| {
            (store::now() - at)
                .to_std()
                .unwrap_or_default()
                .as_secs_f64()
        })
        .unwrap_or(0.0);
    ctx.metrics.workspace_oldest_unready_age_seconds.set(age);
    Ok(())
}
