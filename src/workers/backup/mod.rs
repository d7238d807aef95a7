//! The backup executor (`--workers backup-executor`, queue `backup`): turns `backup.requested`
//! into an encrypted, deduplicated backup of a workspace's objects and `restore.requested`
//! into a verified restore; [`scheduler::BackupScheduler`] turns due policies into
//! `backup.requested`, applies retention and collects unreferenced chunks.
//!
//! A backup: `pre` hooks → list the selected objects through the driver → canonical stream →
//! fastcdc chunks → zstd → AES-256-GCM under the workspace data key → stored by HMAC id (chunks
//! already stored are reused) → the sealed manifest, stored last → `post` hooks → status,
//! stats and event in one transaction. A backup exists only once its manifest does: a crash
//! before leaves the row `running`, and the rescued job makes it again (stored chunks are
//! reused, so nothing is doubled). A restore authenticates the manifest and every chunk
//! (AEAD tag and content hash) before it applies anything, then applies in dependency order.

pub mod archive;
pub mod bench;
pub mod crypto;
pub mod keys;
pub mod scheduler;
pub mod storage;

use super::vcluster::driver::{
    Applied, DriverError, ExecOutcome, ExecRequest, KubeObject, WorkspaceObjects, WorkspaceSpec,
};
use super::WorkerContext;
use crate::config::KubeDriverKind;
use crate::jobs::{Command, Job, JobEnvelope, JobError};
use crate::outbox::{self, EventType};
use crate::resources::backup::{
    policy_spec, BackupStats, BackupView, CreateRestore, Existing, FailureView, Hook, ObjectChange,
    ObjectFailure, OnError, PolicySpec, RestoreResult, RestoreView,
};
use crate::store::backups::{
    self as backup_store, Backup, BackupChange, BackupStatus, Restore, RestoreChange, RestoreStatus,
};
use crate::store::{self, workspaces as ws_store};
use archive::{ChunkEntry, Manifest, Selection};
use bytes::Bytes;
use crypto::DataKey;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use storage::WorkspaceStorage;
use uuid::Uuid;

/// Queue name.
pub const QUEUE: &str = BackupExecutor::QUEUE;
/// Chunks uploaded or downloaded at once per job.
const TRANSFER_CONCURRENCY: usize = 8;
/// Default bound on a hook.
const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest manifest a restore accepts (decompressed).
const MANIFEST_LIMIT: usize = 1 << 30;

/// Why a run stopped short of success.
#[derive(Debug)]
pub enum Failure {
    /// Will fail again: recorded at once.
    Permanent(FailureView),
    /// Worth another attempt (storage, network, database).
    Retryable(FailureView),
}

impl Failure {
    /// A failure that another attempt would repeat.
    pub fn permanent(error_type: &str, detail: impl Into<String>) -> Self {
        Failure::Permanent(FailureView {
            error_type: error_type.to_owned(),
            detail: detail.into(),
        })
    }

    /// A failure worth another attempt.
    pub fn retryable(error_type: &str, detail: impl Into<String>) -> Self {
        Failure::Retryable(FailureView {
            error_type: error_type.to_owned(),
            detail: detail.into(),
        })
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(err: sea_orm::DbErr) -> Self {
        Failure::retryable("internal", format!("database: {err}"))
    }
}

impl From<storage::StorageError> for Failure {
    fn from(err: storage::StorageError) -> Self {
        Failure::retryable("storage", err.0)
    }
}

impl From<DriverError> for Failure {
    fn from(err: DriverError) -> Self {
        match err {
            DriverError::Transient(detail) => Failure::retryable("driver", detail),
            DriverError::Permanent(detail) => Failure::permanent("driver", detail),
        }
    }
}

impl From<tokio::task::JoinError> for Failure {
    fn from(err: tokio::task::JoinError) -> Self {
        Failure::retryable("internal", format!("a worker thread failed: {err}"))
    }
}

/// Why a backup or restore attempt failed, as the job runtime sees it.
#[derive(Debug, thiserror::Error)]
#[error("{error_type}: {detail}")]
pub struct BackupRunError {
    /// The recorded error's type.
    pub error_type: String,
    /// What went wrong.
    pub detail: String,
    /// Whether another attempt may succeed.
    pub retryable: bool,
}

impl From<BackupRunError> for JobError {
    /// Retryable unless the failure is permanent or out of attempts.
    fn from(err: BackupRunError) -> Self {
        JobError::failed(err.retryable, err)
    }
}

/// The part of a `backup.requested` / `restore.requested` event's data the executor reads.
#[derive(Debug, serde::Deserialize)]
pub struct Target {
    /// The backup's or restore's id.
    pub id: Uuid,
}

/// The backup job kind; its driver and storage are built on first use and kept.
#[derive(Default)]
pub struct BackupExecutor {
    objects: tokio::sync::OnceCell<Arc<dyn WorkspaceObjects>>,
    storage: tokio::sync::OnceCell<(Arc<dyn object_store::ObjectStore>, String)>,
}

/// The objects driver the configuration selects.
pub async fn objects_driver(ctx: &WorkerContext) -> Result<Arc<dyn WorkspaceObjects>, Failure> {
    let config = &ctx.config.provisioner;
    Ok(match config.driver {
        KubeDriverKind::Simulated => Arc::new(super::vcluster::simulated::SimulatedDriver::new(
            ctx.db.clone(),
            config.simulated_delay,
            config.simulated_failures.clone(),
        )),
        KubeDriverKind::Kubernetes => Arc::new(
            super::vcluster::kubernetes::KubernetesDriver::from_env(
                super::vcluster::kubernetes::KubeSettings {
                    endpoint_template: config.vcluster_endpoint.clone(),
                    chart_version: config.vcluster_chart_version.clone(),
                    ..Default::default()
                },
            )
            .await?,
        ),
    })
}

impl BackupExecutor {
    async fn objects(&self, ctx: &WorkerContext) -> Result<Arc<dyn WorkspaceObjects>, Failure> {
        self.objects
            .get_or_try_init(|| objects_driver(ctx))
            .await
            .cloned()
    }

    async fn storage(
        &self,
        ctx: &WorkerContext,
        prefix: &str,
    ) -> Result<WorkspaceStorage, Failure> {
        let (store, base) = self
            .storage
            .get_or_try_init(|| async { storage::open(&ctx.config.backup.storage) })
            .await?;
        Ok(WorkspaceStorage::new(store.clone(), base, prefix))
    }
}

#[async_trait::async_trait]
impl Job for BackupExecutor {
    const QUEUE: &'static str = "backup";
    const EVENT_TYPES: &'static [EventType] =
        &[EventType::BackupRequested, EventType::RestoreRequested];
    const DEFAULT_CONCURRENCY: usize = 2;
    type Args = Command<Target>;

    async fn run(
        &self,
        ctx: &WorkerContext,
        args: Self::Args,
        job: &JobEnvelope,
    ) -> Result<(), JobError> {
        let id = args.data.id;
        let is_backup = match args.event_type {
            EventType::BackupRequested => true,
            EventType::RestoreRequested => false,
            other => return Err(JobError::Permanent(format!("backup queue got {other}"))),
        };
        let outcome = if is_backup {
            make_backup(ctx, self, id).await
        } else {
            run_restore(ctx, self, id).await
        };
        let max_attempts = ctx.config.jobs.queue(QUEUE).max_attempts;
        let (error, retryable) = match outcome {
            Ok(()) => return Ok(()),
            Err(Failure::Permanent(error)) => (error, false),
            Err(Failure::Retryable(error)) if job.is_last_attempt(max_attempts) => (error, false),
            Err(Failure::Retryable(error)) => (error, true),
        };
        if !retryable {
            if is_backup {
                fail_backup(ctx, id, &error).await?;
            } else {
                fail_restore(ctx, id, &error).await?;
            }
        }
        Err(BackupRunError {
            error_type: error.error_type,
            detail: error.detail,
            retryable,
        }
        .into())
    }
}

fn progress(step: &str, done: u32, total: u32) -> serde_json::Value {
    json!({"step": step, "done": done, "total": total})
}

/// Steps of a backup, for progress.
const BACKUP_STEPS: u32 = 5;

/// Writes a backup change with its event (if any) in one transaction.
async fn record_backup(
    ctx: &WorkerContext,
    backup: Backup,
    change: BackupChange,
    event: Option<EventType>,
) -> Result<Backup, sea_orm::DbErr> {
    let txn = store::begin_write(&ctx.db).await?;
    let updated = backup_store::change_backup(&txn, backup, change).await?;
    if let Some(event) = event {
        let view = BackupView::from(updated.clone());
        outbox::record(&txn, event, updated.org_id, updated.id, &view).await?;
    }
    txn.commit().await?;
    Ok(updated)
}

/// Marks a backup failed with its event (unless it already finished).
async fn fail_backup(ctx: &WorkerContext, id: Uuid, error: &FailureView) -> Result<(), JobError> {
    let Some(backup) = backup_store::find_backup_any(&ctx.db, id).await? else {
        return Ok(());
    };
    if backup.status.is_finished() {
        return Ok(());
    }
    tracing::warn!(backup_id = %id, error_type = %error.error_type, detail = %error.detail, "backup failed");
    record_backup(
        ctx,
        backup,
        BackupChange {
            status: Some(BackupStatus::Failed),
            error: Some(json!(error)),
            ..Default::default()
        },
        Some(EventType::BackupFailed),
    )
    .await?;
    ctx.metrics
        .backups_total
        .with_label_values(&["failed"])
        .inc();
    Ok(())
}

/// What a `pre` or `post` phase left behind.
#[derive(Debug, Default)]
struct HookReport {
    /// Failures of hooks with `on_error: continue`.
    warnings: Vec<String>,
    /// The failure of a hook with `on_error: fail`.
    fatal: Option<String>,
}

/// Runs one phase's hooks in order; stops at the first fatal failure.
async fn run_hooks(
    driver: &dyn WorkspaceObjects,
    workspace: &WorkspaceSpec,
    phase: &str,
    hooks: &[Hook],
) -> Result<HookReport, Failure> {
    let mut report = HookReport::default();
    for (i, hook) in hooks.iter().enumerate() {
        let timeout = hook
            .timeout
            .as_deref()
            .and_then(|t| crate::domain::backup::parse_timeout(t).ok())
            .unwrap_or(DEFAULT_HOOK_TIMEOUT);
        let request = ExecRequest {
            namespace: hook.namespace.clone(),
            pod_selector: hook.pod_selector.clone(),
            container: hook.container.clone(),
            command: hook.command.clone(),
        };
        let outcome = match tokio::time::timeout(timeout, driver.exec(workspace, &request)).await {
            Ok(Ok(ExecOutcome::Succeeded)) => None,
            Ok(Ok(ExecOutcome::Failed(reason))) => Some(reason),
            Ok(Err(DriverError::Permanent(reason))) => Some(reason),
            Ok(Err(err @ DriverError::Transient(_))) => return Err(err.into()),
            Err(_) => Some(format!(
                "timed out after {}",
                humantime::format_duration(timeout)
            )),
        };
        let Some(reason) = outcome else { continue };
        let message = format!("{phase} hook {i} ({}): {reason}", hook.command.join(" "));
        match hook.on_error {
            OnError::Continue => report.warnings.push(message),
            OnError::Fail => {
                report.fatal = Some(message);
                return Ok(report);
            }
        }
    }
    Ok(report)
}

/// The selection of a policy spec.
fn selection_of(spec: &PolicySpec) -> Selection {
    Selection {
        include_namespaces: spec.include_namespaces.clone(),
        exclude_namespaces: spec.exclude_namespaces.clone(),
        labels: spec
            .label_selector
            .as_deref()
            .and_then(|s| crate::domain::backup::LabelSelector::parse(s).ok()),
    }
}

/// What uploading the stream stored.
struct Uploaded {
    /// Chunks of the stream, in order.
    chunks: Vec<ChunkEntry>,
    /// Distinct chunk ids (for the references).
    distinct: Vec<String>,
    /// Chunks newly stored (id, sealed size).
    new: Vec<(String, i64)>,
    /// Distinct chunks that were stored already.
    reused: u64,
}

/// The stream's chunks: (offset, length, content id), in order.
pub async fn cut_stream(
    key: Arc<DataKey>,
    stream: Bytes,
) -> Result<Vec<(usize, usize, String)>, Failure> {
    Ok(tokio::task::spawn_blocking(move || {
        archive::chunk_bounds(&stream)
            .into_iter()
            .map(|(offset, length)| {
                let id = key.chunk_id(&stream[offset..offset + length]);
                (offset, length, id)
            })
            .collect()
    })
    .await?)
}

/// One chunk as stored: zstd, then sealed with its id as associated data.
pub fn seal_chunk(key: &DataKey, id: &str, plain: &[u8]) -> Result<Vec<u8>, Failure> {
    let packed = archive::compress(plain)
        .map_err(|e| Failure::retryable("internal", format!("zstd: {e}")))?;
    Ok(key.seal(id.as_bytes(), &packed)?)
}

/// Seals and stores the chunks of `cut` whose id is not in `known` (each once); answers
/// (id, sealed size) of each stored chunk.
pub async fn store_new_chunks(
    storage: &WorkspaceStorage,
    key: Arc<DataKey>,
    stream: &Bytes,
    cut: &[(usize, usize, String)],
    known: &HashSet<String>,
) -> Result<Vec<(String, i64)>, Failure> {
    let mut queued = HashSet::new();
    let todo: Vec<(usize, usize, String)> = cut
        .iter()
        .filter(|(_, _, id)| !known.contains(id) && queued.insert(id.clone()))
        .cloned()
        .collect();
    futures::stream::iter(todo.into_iter().map(|(offset, length, id)| {
        let key = key.clone();
        let plain = stream.slice(offset..offset + length);
        let storage = storage.clone();
        async move {
            let sealed_id = id.clone();
            let blob =
                tokio::task::spawn_blocking(move || seal_chunk(&key, &sealed_id, &plain)).await??;
            let size = blob.len() as i64;
            storage.put_chunk(&id, blob).await?;
            Ok::<_, Failure>((id, size))
        }
    }))
    .buffer_unordered(TRANSFER_CONCURRENCY)
    .try_collect()
    .await
}

/// The manifest as stored: JSON, zstd, sealed with `manifest:<backup id>` as associated data.
pub fn seal_manifest(key: &DataKey, manifest: &Manifest) -> Result<Vec<u8>, Failure> {
    let plain = serde_json::to_vec(manifest)
        .map_err(|e| Failure::permanent("internal", format!("manifest: {e}")))?;
    let packed = zstd::bulk::compress(&plain, archive::MANIFEST_ZSTD_LEVEL)
        .map_err(|e| Failure::retryable("internal", format!("zstd: {e}")))?;
    Ok(key.seal(manifest_aad(manifest.backup_id).as_bytes(), &packed)?)
}

/// Chunks `stream`, stores the chunks the workspace does not have yet, and records them.
async fn upload_stream(
    ctx: &WorkerContext,
    storage: &WorkspaceStorage,
    key: Arc<DataKey>,
    workspace_id: Uuid,
    stream: Bytes,
) -> Result<Uploaded, Failure> {
    let cut = cut_stream(key.clone(), stream.clone()).await?;
    let mut seen = HashSet::new();
    let distinct: Vec<String> = cut
        .iter()
        .filter(|(_, _, id)| seen.insert(id.clone()))
        .map(|(_, _, id)| id.clone())
        .collect();
    let existing = backup_store::existing_chunks(&ctx.db, workspace_id, &distinct).await?;
    let new = store_new_chunks(storage, key, &stream, &cut, &existing).await?;
    // Recorded only once stored: a chunk row always has its object.
    backup_store::insert_chunks(&ctx.db, workspace_id, &new).await?;
    Ok(Uploaded {
        chunks: cut
            .into_iter()
            .map(|(_, length, id)| ChunkEntry {
                id,
                length: length as u64,
            })
            .collect(),
        reused: (distinct.len() - new.len()) as u64,
        distinct,
        new,
    })
}

/// Makes backup `id` (idempotent: a finished backup is left alone, a running one is made
/// again from the start, reusing what is stored).
async fn make_backup(ctx: &WorkerContext, exec: &BackupExecutor, id: Uuid) -> Result<(), Failure> {
    let Some(mut backup) = backup_store::find_backup_any(&ctx.db, id).await? else {
        return Ok(());
    };
    if backup.status.is_finished() || backup.deleted_at.is_some() {
        return Ok(());
    }
    let started = Instant::now();
    keys::master_key(ctx)?;
    let workspace = ws_store::find_any(&ctx.db, backup.workspace_id)
        .await?
        .filter(|w| w.deleted_at.is_none())
        .ok_or_else(|| Failure::permanent("workspace", "the workspace is gone"))?;
    let key = Arc::new(keys::data_key(ctx, workspace.id, true).await?);
    let change = BackupChange {
        status: Some(BackupStatus::Running),
        progress: Some(progress("pre hooks", 0, BACKUP_STEPS)),
        key_id: Some(key.id.clone()),
        ..Default::default()
    };
    let first_run = backup.status == BackupStatus::Pending;
    backup = record_backup(
        ctx,
        backup,
        change,
        first_run.then_some(EventType::BackupStarted),
    )
    .await?;

    let spec = match backup.policy_id {
        Some(policy_id) => backup_store::find_policy_any(&ctx.db, policy_id)
            .await?
            .map(|p| policy_spec(&p)),
        None => None,
    };
    let driver = exec.objects(ctx).await?;
    let wspec = super::vcluster::workspace_spec(ctx, &workspace);
    let hooks = spec.as_ref().map(|s| s.hooks.clone()).unwrap_or_default();
    let pre = run_hooks(driver.as_ref(), &wspec, "pre", &hooks.pre).await?;
    if let Some(fatal) = pre.fatal {
        return Err(Failure::permanent("hook", fatal));
    }

    backup = step(ctx, backup, "listing objects", 1).await?;
    let selection = spec.as_ref().map(selection_of).unwrap_or_default();
    let objects: Vec<KubeObject> = driver
        .list_objects(&wspec)
        .await?
        .into_iter()
        .filter(|o| selection.selects(o))
        .collect();
    let count = objects.len() as u64;
    let (stream, index) = tokio::task::spawn_blocking(move || archive::serialize(objects)).await?;
    let logical = stream.len() as u64;

    backup = step(ctx, backup, "storing chunks", 2).await?;
    let storage = exec.storage(ctx, &backup.storage_prefix).await?;
    let uploaded = upload_stream(
        ctx,
        &storage,
        key.clone(),
        workspace.id,
        Bytes::from(stream),
    )
    .await?;

    backup = step(ctx, backup, "storing the manifest", 3).await?;
    let manifest = Manifest {
        version: 1,
        backup_id: backup.id,
        workspace_id: workspace.id,
        key_id: key.id.clone(),
        objects: index,
        chunks: uploaded.chunks,
    };
    let manifest_key = key.clone();
    let sealed =
        tokio::task::spawn_blocking(move || seal_manifest(&manifest_key, &manifest)).await??;
    let manifest_size = sealed.len() as u64;
    storage.put_manifest(backup.id, sealed).await?;

    backup = step(ctx, backup, "post hooks", 4).await?;
    let post = run_hooks(driver.as_ref(), &wspec, "post", &hooks.post).await?;
    let mut warnings = pre.warnings;
    warnings.extend(post.warnings);
    let stored_new = uploaded.new.iter().map(|(_, s)| *s as u64).sum::<u64>() + manifest_size;
    let stats = BackupStats {
        objects: count,
        bytes_logical: logical,
        bytes_stored_new: stored_new,
        chunks_new: uploaded.new.len() as u64,
        chunks_reused: uploaded.reused,
        duration_seconds: started.elapsed().as_secs_f64(),
    };
    let (status, event, error) = match (post.fatal, warnings.is_empty()) {
        (Some(fatal), _) => (
            BackupStatus::Failed,
            EventType::BackupFailed,
            Some(FailureView {
                error_type: "hook".to_owned(),
                detail: fatal,
            }),
        ),
        (None, true) => (BackupStatus::Succeeded, EventType::BackupSucceeded, None),
        (None, false) => (
            BackupStatus::PartiallyFailed,
            EventType::BackupSucceeded,
            Some(FailureView {
                error_type: "hook".to_owned(),
                detail: warnings.join("; "),
            }),
        ),
    };
    let txn = store::begin_write(&ctx.db).await?;
    backup_store::insert_refs(&txn, backup.id, &uploaded.distinct).await?;
    let done = backup_store::change_backup(
        &txn,
        backup,
        BackupChange {
            status: Some(status),
            progress: Some(progress("done", BACKUP_STEPS, BACKUP_STEPS)),
            stats: Some(json!(stats)),
            error: error.map(|e| json!(e)),
            ..Default::default()
        },
    )
    .await?;
    let view = BackupView::from(done.clone());
    outbox::record(&txn, event, done.org_id, done.id, &view).await?;
    txn.commit().await?;

    let metrics = &ctx.metrics;
    metrics
        .backups_total
        .with_label_values(&[status.as_str()])
        .inc();
    metrics
        .backup_duration_seconds
        .observe(stats.duration_seconds);
    metrics
        .backup_bytes_total
        .with_label_values(&["logical"])
        .inc_by(logical);
    metrics
        .backup_bytes_total
        .with_label_values(&["stored"])
        .inc_by(stored_new);
    if status.is_restorable() {
        metrics
            .backup_last_success_timestamp_seconds
            .with_label_values(&[&workspace.id.to_string()])
            .set(store::now().timestamp() as f64);
    }
    if let Some(policy_id) = done.policy_id {
        if let Err(err) = scheduler::retention_for_policy(ctx, policy_id).await {
            tracing::warn!(%err, %policy_id, "retention after a backup failed; the scheduler retries");
        }
    }
    Ok(())
}

/// Records progress.
async fn step(
    ctx: &WorkerContext,
    backup: Backup,
    what: &str,
    done: u32,
) -> Result<Backup, Failure> {
    Ok(record_backup(
        ctx,
        backup,
        BackupChange {
            progress: Some(progress(what, done, BACKUP_STEPS)),
            ..Default::default()
        },
        None,
    )
    .await?)
}

/// Associated data of a backup's manifest.
fn manifest_aad(backup_id: Uuid) -> String {
    format!("manifest:{backup_id}")
}

// ---------------------------------------------------------------- restores

/// Steps of a restore, for progress.
const RESTORE_STEPS: u32 = 3;

async fn record_restore(
    ctx: &WorkerContext,
    restore: Restore,
    change: RestoreChange,
    event: Option<EventType>,
) -> Result<Restore, sea_orm::DbErr> {
    let txn = store::begin_write(&ctx.db).await?;
    let updated = backup_store::change_restore(&txn, restore, change).await?;
    if let Some(event) = event {
        let view = RestoreView::from(updated.clone());
        outbox::record(&txn, event, updated.org_id, updated.id, &view).await?;
    }
    txn.commit().await?;
    Ok(updated)
}

async fn fail_restore(ctx: &WorkerContext, id: Uuid, error: &FailureView) -> Result<(), JobError> {
    let Some(restore) = backup_store::find_restore_any(&ctx.db, id).await? else {
        return Ok(());
    };
    if matches!(
        restore.status,
        RestoreStatus::Succeeded | RestoreStatus::Failed
    ) {
        return Ok(());
    }
    tracing::warn!(restore_id = %id, error_type = %error.error_type, detail = %error.detail, "restore failed");
    record_restore(
        ctx,
        restore,
        RestoreChange {
            status: Some(RestoreStatus::Failed),
            error: Some(json!(error)),
            ..Default::default()
        },
        Some(EventType::RestoreFailed),
    )
    .await?;
    Ok(())
}

fn integrity(detail: impl Into<String>) -> Failure {
    Failure::permanent("integrity", detail)
}

/// Downloads and authenticates the manifest and every chunk; answers the objects, in stream
/// order. Nothing is applied before this returns.
pub async fn verified_objects(
    storage: &WorkspaceStorage,
    key: Arc<DataKey>,
    backup_id: Uuid,
) -> Result<Vec<KubeObject>, Failure> {
    let sealed = storage
        .get_manifest(backup_id)
        .await?
        .ok_or_else(|| integrity("the manifest is missing from the storage"))?;
    let packed = key
        .open(manifest_aad(backup_id).as_bytes(), &sealed)
        .map_err(|_| integrity("the manifest does not authenticate"))?;
    let plain = archive::decompress(&packed, MANIFEST_LIMIT)
        .map_err(|e| integrity(format!("the manifest does not decompress: {e}")))?;
    let mut manifest: Manifest = serde_json::from_slice(&plain)
        .map_err(|e| integrity(format!("the manifest does not parse: {e}")))?;
    manifest.locate();
    if manifest.backup_id != backup_id || manifest.key_id != key.id {
        return Err(integrity("the manifest belongs to another backup or key"));
    }
    let parts: Vec<Vec<u8>> = futures::stream::iter(manifest.chunks.iter().cloned().map(|entry| {
        let key = key.clone();
        let storage = storage.clone();
        async move {
            let sealed = storage
                .get_chunk(&entry.id)
                .await?
                .ok_or_else(|| integrity(format!("chunk {} is missing", entry.id)))?;
            tokio::task::spawn_blocking(move || -> Result<Vec<u8>, Failure> {
                let packed = key
                    .open(entry.id.as_bytes(), &sealed)
                    .map_err(|_| integrity(format!("chunk {} does not authenticate", entry.id)))?;
                let plain = archive::decompress(&packed, entry.length as usize).map_err(|e| {
                    integrity(format!("chunk {} does not decompress: {e}", entry.id))
                })?;
                if plain.len() as u64 != entry.length || key.chunk_id(&plain) != entry.id {
                    return Err(integrity(format!(
                        "chunk {} does not match its content hash",
                        entry.id
                    )));
                }
                Ok(plain)
            })
            .await?
        }
    }))
    .buffered(TRANSFER_CONCURRENCY)
    .try_collect()
    .await?;
    let stream = parts.concat();
    manifest
        .objects
        .iter()
        .map(|entry| {
            let start = entry.offset as usize;
            let end = start + entry.length as usize;
            let bytes = stream
                .get(start..end)
                .ok_or_else(|| integrity("an object lies outside the stream"))?;
            serde_json::from_slice(bytes)
                .map_err(|e| integrity(format!("object {}/{}: {e}", entry.kind, entry.name)))
        })
        .collect()
}

/// The objects a restore applies, renamed and in dependency order.
fn restore_plan(objects: Vec<KubeObject>, options: &CreateRestore) -> Vec<KubeObject> {
    let mapping = options.namespace_mapping.clone().unwrap_or_default();
    let mut plan: Vec<KubeObject> = objects
        .into_iter()
        .filter(|object| {
            let (kind, namespace, name) = archive::identity(object);
            let ns = if kind == "Namespace" { name } else { namespace };
            options
                .namespaces
                .as_ref()
                .is_none_or(|only| ns.is_empty() || only.contains(&ns))
        })
        .map(|mut object| {
            let (kind, namespace, name) = archive::identity(&object);
            if kind == "Namespace" {
                if let Some(new) = mapping.get(&name) {
                    object["metadata"]["name"] = json!(new);
                }
            } else if let Some(new) = mapping.get(&namespace) {
                object["metadata"]["namespace"] = json!(new);
            }
            object
        })
        .collect();
    plan.sort_by_cached_key(|o| {
        let (kind, namespace, name) = archive::identity(o);
        (archive::apply_rank(&kind), namespace, kind, name)
    });
    plan
}

/// Runs restore `id` (idempotent: a finished restore is left alone; applying is server-side
/// apply, so a repeated run changes nothing more).
async fn run_restore(ctx: &WorkerContext, exec: &BackupExecutor, id: Uuid) -> Result<(), Failure> {
    let Some(mut restore) = backup_store::find_restore_any(&ctx.db, id).await? else {
        return Ok(());
    };
    if matches!(
        restore.status,
        RestoreStatus::Succeeded | RestoreStatus::Failed
    ) {
        return Ok(());
    }
    keys::master_key(ctx)?;
    let options: CreateRestore = serde_json::from_value(restore.spec.clone()).unwrap_or_default();
    let first_run = restore.status == RestoreStatus::Pending;
    restore = record_restore(
        ctx,
        restore,
        RestoreChange {
            status: Some(RestoreStatus::Running),
            progress: Some(progress("verifying every chunk", 0, RESTORE_STEPS)),
            ..Default::default()
        },
        first_run.then_some(EventType::RestoreStarted),
    )
    .await?;
    let backup = backup_store::find_backup_any(&ctx.db, restore.backup_id)
        .await?
        .filter(|b| b.status.is_restorable() && b.deleted_at.is_none())
        .ok_or_else(|| Failure::permanent("backup", "the backup is no longer restorable"))?;
    let target = ws_store::find_any(&ctx.db, restore.target_workspace_id)
        .await?
        .filter(|w| w.deleted_at.is_none())
        .ok_or_else(|| Failure::permanent("workspace", "the target workspace is gone"))?;
    let key = Arc::new(keys::data_key(ctx, backup.workspace_id, false).await?);
    if backup.key_id.as_deref() != Some(key.id.as_str()) {
        return Err(Failure::permanent(
            "key",
            "the backup was made under another data key",
        ));
    }
    let storage = exec.storage(ctx, &backup.storage_prefix).await?;
    let objects = verified_objects(&storage, key, backup.id).await?;

    restore = record_restore(
        ctx,
        restore,
        RestoreChange {
            progress: Some(progress("applying objects", 2, RESTORE_STEPS)),
            ..Default::default()
        },
        None,
    )
    .await?;
    let driver = exec.objects(ctx).await?;
    let wspec = super::vcluster::workspace_spec(ctx, &target);
    let existing = options.existing.unwrap_or_default();
    let dry_run = options.dry_run.unwrap_or(false);
    let mut result = RestoreResult::default();
    for object in restore_plan(objects, &options) {
        let (kind, namespace, name) = archive::identity(&object);
        let exists = driver
            .object_exists(&wspec, &kind, &namespace, &name)
            .await?;
        let action = match (exists, existing) {
            (false, _) => "create",
            (true, Existing::Update) => "update",
            (true, Existing::Skip) => "skip",
        };
        let change = ObjectChange {
            action: action.to_owned(),
            kind: kind.clone(),
            namespace: namespace.clone(),
            name: name.clone(),
        };
        if action == "skip" {
            result.skipped += 1;
        } else if dry_run {
            if action == "create" {
                result.created += 1;
            } else {
                result.updated += 1;
            }
        } else {
            match driver.apply_object(&wspec, &object).await {
                Ok(Applied::Created) => result.created += 1,
                Ok(Applied::Updated) => result.updated += 1,
                Err(err) => {
                    result.failed.push(ObjectFailure {
                        kind,
                        namespace,
                        name,
                        reason: err.to_string(),
                    });
                    continue;
                }
            }
        }
        result.changes.push(change);
    }
    let (status, event, error) = if result.failed.is_empty() {
        (RestoreStatus::Succeeded, EventType::RestoreSucceeded, None)
    } else {
        (
            RestoreStatus::Failed,
            EventType::RestoreFailed,
            Some(json!(FailureView {
                error_type: "apply".to_owned(),
                detail: format!("{} objects could not be applied", result.failed.len()),
            })),
        )
    };
    record_restore(
        ctx,
        restore,
        RestoreChange {
            status: Some(status),
            progress: Some(progress("done", RESTORE_STEPS, RESTORE_STEPS)),
            result: Some(json!(result)),
            error,
        },
        Some(event),
    )
    .await?;
    Ok(())
}
