//! The backup scheduler (a periodic task of the `backup-executor` role, one across the fleet
//! through a Postgres advisory lock per round, trivially single on SQLite). Each round:
//!
//! 1. every enabled policy whose due time has come gets one backup (`backup.requested`) for
//!    that due time, and its next due time is the first one after *now* — so runs missed while
//!    every process was down run once, not once per missed time. The backup row, its event and
//!    the policy's new due time are one transaction, and `(policy, due time)` is unique, so a
//!    round repeated after a crash cannot double a run;
//! 2. retention: expired backups (by `keep_last` / `max_age`; never a policy's newest
//!    restorable one) are marked `expired` with `backup.expired`, and chunks no live backup
//!    references are deleted;
//! 3. backups and restores left pending or running for `GANTRY_RECONCILE_AFTER` get their
//!    command enqueued again (idempotent: job ids are event ids);
//! 4. the backup gauges are refreshed.

use super::{storage, Failure};
use crate::jobs::NewJob;
use crate::outbox::{self, EventType};
use crate::resources::backup::{self, policy_spec, BackupView};
use crate::store::backups::{self as backup_store, BackupChange, BackupStatus};
use crate::store::{self, workspaces::Plan};
use crate::workers::periodic::{Lease, PeriodicTask, Round, Schedule};
use crate::workers::WorkerContext;
use std::collections::BTreeSet;
use uuid::Uuid;

/// Advisory-lock key of the scheduler (ASCII "gantry-b").
const SCHEDULER_LOCK_KEY: i64 = 0x6761_6e74_7279_2d62;
/// Policies, backups or restores looked at per round at most.
const ROUND_LIMIT: u64 = 1_000;

/// Why a round failed.
#[derive(Debug, thiserror::Error)]
pub enum SchedulerError {
    /// Database failure.
    #[error("database: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// Queue failure.
    #[error("{0}")]
    Queue(#[from] crate::jobs::QueueError),
    /// Storage failure (collecting chunks).
    #[error("{0}")]
    Storage(#[from] storage::StorageError),
}

impl From<Failure> for SchedulerError {
    fn from(failure: Failure) -> Self {
        let (Failure::Permanent(view) | Failure::Retryable(view)) = failure;
        SchedulerError::Storage(storage::StorageError(format!(
            "{}: {}",
            view.error_type, view.detail
        )))
    }
}

/// The scheduler as a periodic task.
pub struct BackupScheduler {
    ctx: WorkerContext,
}

impl BackupScheduler {
    /// The scheduler.
    pub fn new(ctx: WorkerContext) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for BackupScheduler {
    const NAME: &'static str = "backup-scheduler";
    type Error = SchedulerError;

    fn schedule(&self) -> Schedule {
        Schedule::every(self.ctx.config.backup.scheduler_interval)
    }

    fn lease(&self) -> Option<Lease> {
        Some(Lease {
            key: SCHEDULER_LOCK_KEY,
        })
    }

    async fn round(&mut self) -> Result<Round, SchedulerError> {
        let scheduled = schedule_due(&self.ctx).await?;
        retention_round(&self.ctx).await?;
        requeue_stranded(&self.ctx).await?;
        refresh_gauges(&self.ctx).await?;
        Ok(if scheduled as u64 >= ROUND_LIMIT {
            Round::Again
        } else {
            Round::Idle
        })
    }
}

/// Step 1: one backup per due policy; answers how many were requested.
pub async fn schedule_due(ctx: &WorkerContext) -> Result<usize, SchedulerError> {
    let now = store::now();
    let mut requested = 0;
    for policy in backup_store::due_policies(&ctx.db, now, ROUND_LIMIT).await? {
        let Some(due) = policy.next_run_at else {
            continue;
        };
        let spec = policy_spec(&policy);
        let next = crate::domain::backup::Schedule::parse(&spec.schedule, &spec.timezone)
            .ok()
            .and_then(|s| s.next_after(now));
        let txn = store::begin_write(&ctx.db).await?;
        // Only the round that moves the due time requests the run.
        if !backup_store::advance_policy(&txn, policy.id, due, next).await? {
            continue;
        }
        let workspace = store::workspaces::find_any(&txn, policy.workspace_id)
            .await?
            .filter(|w| w.deleted_at.is_none() && w.plan == Plan::Dedicated);
        // A round repeated after a crash finds its backup: the due time just moves on.
        let done_before = backup_store::scheduled_exists(&txn, policy.id, due).await?;
        if let (Some(workspace), false) = (workspace, done_before) {
            // `(policy, due time)` is unique: a concurrent round's insert fails this
            // transaction as a whole, and the next round finds that backup.
            backup::request_backup(
                &txn,
                &workspace,
                Some(policy.id),
                Some(due),
                &ctx.config.backup.storage,
            )
            .await?;
            requested += 1;
        }
        txn.commit().await?;
    }
    Ok(requested)
}

/// Step 2 for every live policy, then chunk collection for every workspace with backups.
async fn retention_round(ctx: &WorkerContext) -> Result<(), SchedulerError> {
    let mut workspaces = BTreeSet::new();
    for policy in backup_store::live_policies(&ctx.db, ROUND_LIMIT).await? {
        expire_for_policy(ctx, policy.id).await?;
        workspaces.insert(policy.workspace_id);
    }
    workspaces.extend(backup_store::workspaces_with_dead_backups(&ctx.db, ROUND_LIMIT).await?);
    for workspace_id in workspaces {
        collect_chunks(ctx, workspace_id).await?;
    }
    Ok(())
}

/// Retention of one policy, then chunk collection in its workspace.
pub async fn retention_for_policy(
    ctx: &WorkerContext,
    policy_id: Uuid,
) -> Result<(), SchedulerError> {
    if let Some(workspace_id) = expire_for_policy(ctx, policy_id).await? {
        collect_chunks(ctx, workspace_id).await?;
    }
    Ok(())
}

/// Marks the policy's expired backups; answers its workspace.
async fn expire_for_policy(
    ctx: &WorkerContext,
    policy_id: Uuid,
) -> Result<Option<Uuid>, SchedulerError> {
    let Some(policy) = backup_store::find_policy_any(&ctx.db, policy_id).await? else {
        return Ok(None);
    };
    let spec = policy_spec(&policy);
    let max_age = spec
        .retention
        .max_age
        .as_deref()
        .and_then(|a| crate::domain::backup::parse_age(a).ok())
        .and_then(|a| chrono::Duration::from_std(a).ok());
    let keep_last = spec.retention.keep_last.map(|n| n.max(1) as usize);
    let restorable = backup_store::policy_backups(
        &ctx.db,
        policy.id,
        &[BackupStatus::Succeeded, BackupStatus::PartiallyFailed],
    )
    .await?;
    let now = store::now();
    // Index 0 is the newest restorable backup: never expired.
    for (rank, backup) in restorable.into_iter().enumerate().skip(1) {
        let finished = backup.finished_at.unwrap_or(backup.created_at);
        let too_many = keep_last.is_some_and(|n| rank >= n);
        let too_old = max_age.is_some_and(|age| now - finished > age);
        if !(too_many || too_old) {
            continue;
        }
        let txn = store::begin_write(&ctx.db).await?;
        let Some(current) = backup_store::find_backup_for_update(&txn, backup.id).await? else {
            continue;
        };
        if !current.status.is_restorable() {
            continue;
        }
        let expired = backup_store::change_backup(
            &txn,
            current,
            BackupChange {
                status: Some(BackupStatus::Expired),
                ..Default::default()
            },
        )
        .await?;
        let view = BackupView::from(expired.clone());
        outbox::record(
            &txn,
            EventType::BackupExpired,
            expired.org_id,
            expired.id,
            &view,
        )
        .await?;
        txn.commit().await?;
        tracing::info!(backup_id = %expired.id, %policy_id, "backup expired by retention");
    }
    Ok(Some(policy.workspace_id))
}

/// Deletes the workspace's chunks (and dead manifests) no restorable backup references. Waits
/// while a backup of the workspace runs: it may be counting on a chunk being there.
pub async fn collect_chunks(
    ctx: &WorkerContext,
    workspace_id: Uuid,
) -> Result<usize, SchedulerError> {
    if backup_store::has_unfinished(&ctx.db, workspace_id).await? {
        return Ok(0);
    }
    let Some(workspace) = store::workspaces::find_any(&ctx.db, workspace_id).await? else {
        return Ok(0);
    };
    let (store_, base) = storage::open(&ctx.config.backup.storage)?;
    let prefix = backup::storage_prefix(workspace.org_id, workspace.id);
    let storage = storage::WorkspaceStorage::new(store_, &base, &prefix);
    for dead in backup_store::dead_backups_with_refs(&ctx.db, workspace_id).await? {
        storage.delete_manifest(dead).await?;
    }
    backup_store::drop_dead_refs(&ctx.db, workspace_id).await?;
    let unreferenced = backup_store::unreferenced_chunks(&ctx.db, workspace_id).await?;
    for id in &unreferenced {
        storage.delete_chunk(id).await?;
    }
    backup_store::delete_chunks(&ctx.db, workspace_id, &unreferenced).await?;
    if !unreferenced.is_empty() {
        tracing::info!(%workspace_id, deleted = unreferenced.len(), "unreferenced backup chunks deleted");
    }
    Ok(unreferenced.len())
}

/// Step 3: commands of stranded backups and restores, enqueued again.
async fn requeue_stranded(ctx: &WorkerContext) -> Result<usize, SchedulerError> {
    let cutoff = store::now()
        - chrono::Duration::from_std(ctx.config.jobs.reconcile_after)
            .unwrap_or(chrono::Duration::seconds(120));
    let mut commands: Vec<(Uuid, EventType)> =
        backup_store::stale_unfinished(&ctx.db, cutoff, ROUND_LIMIT)
            .await?
            .into_iter()
            .map(|b| (b.id, EventType::BackupRequested))
            .collect();
    commands.extend(
        backup_store::stale_restores(&ctx.db, cutoff, ROUND_LIMIT)
            .await?
            .into_iter()
            .map(|r| (r.id, EventType::RestoreRequested)),
    );
    let mut jobs = Vec::new();
    for (id, event_type) in commands {
        if let Some(event) =
            store::outbox::latest_for_aggregate(&ctx.db, id, event_type.as_str()).await?
        {
            jobs.push(NewJob {
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
    if jobs.is_empty() {
        return Ok(0);
    }
    Ok(ctx.queues.enqueue(super::QUEUE, jobs).await?)
}

/// Step 4: the last-success gauges per workspace and per policy, and each policy's interval.
async fn refresh_gauges(ctx: &WorkerContext) -> Result<(), SchedulerError> {
    let metrics = &ctx.metrics;
    for (workspace_id, at) in backup_store::last_successes(&ctx.db).await? {
        metrics
            .backup_last_success_timestamp_seconds
            .with_label_values(&[&workspace_id.to_string()])
            .set(at.timestamp() as f64);
    }
    metrics.backup_policy_interval_seconds.reset();
    metrics.backup_policy_last_success_timestamp_seconds.reset();
    let now = store::now();
    for policy in backup_store::live_policies(&ctx.db, ROUND_LIMIT).await? {
        if !policy.enabled {
            continue;
        }
        let spec = policy_spec(&policy);
        let Some(interval) = crate::domain::backup::Schedule::parse(&spec.schedule, &spec.timezone)
            .ok()
            .and_then(|s| s.interval_after(now))
        else {
            continue;
        };
        let labels = [policy.id.to_string(), policy.workspace_id.to_string()];
        let labels = [labels[0].as_str(), labels[1].as_str()];
        metrics
            .backup_policy_interval_seconds
            .with_label_values(&labels)
            .set(interval.as_secs_f64());
        let last = backup_store::policy_backups(
            &ctx.db,
            policy.id,
            &[BackupStatus::Succeeded, BackupStatus::PartiallyFailed],
        )
        .await?
        .first()
        .and_then(|b| b.finished_at)
        .unwrap_or(policy.created_at);
        metrics
            .backup_policy_last_success_timestamp_seconds
            .with_label_values(&labels)
            .set(last.timestamp() as f64);
    }
    Ok(())
}
