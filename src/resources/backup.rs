//! Backup policies, backups and restores as the API answers them and their events carry them,
//! the request bodies, and the service functions the handlers call (one per action).

use super::workspace::Progress;
use crate::config::BackupStorage;
use crate::domain::backup::{parse_age, parse_timeout, LabelSelector, Schedule, ScheduleError};
use crate::domain::DnsLabel;
use crate::error::{ApiError, FieldError};
use crate::outbox::{self, EventType};
use crate::store::backups::{
    self as backup_store, Backup, BackupChange, BackupPolicy, NewBackup, NewRestore, Restore,
};
use crate::store::workspaces::{Plan, Workspace};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use uuid::Uuid;

pub use crate::store::backups::{BackupStatus, RestoreStatus};

/// The one refusal of a workspace that is not on the dedicated plan.
pub const NEEDS_DEDICATED: &str = "backups need the dedicated plan";

/// How many backups a policy keeps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep the newest N succeeded backups (1–1000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_last: Option<u32>,
    /// Expire backups older than this (`30d`, `12h`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
}

/// What a hook does when its command fails or times out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnError {
    /// The backup fails.
    Fail,
    /// The backup goes on (and ends `partially_failed`).
    Continue,
}

/// A command run in the pods a selector picks, before or after the backup.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    /// Namespace of the pods.
    pub namespace: String,
    /// Label selector of the pods (`app=db`).
    pub pod_selector: String,
    /// Container (default: the pod's first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container: Option<String>,
    /// The command and its arguments (no shell).
    pub command: Vec<String>,
    /// Bound on the command (`30s` default, 1s–1h).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// `fail` or `continue`.
    pub on_error: OnError,
}

/// Hooks around a backup.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Hooks {
    /// Run before the objects are listed.
    #[serde(default)]
    pub pre: Vec<Hook>,
    /// Run after the manifest is stored.
    #[serde(default)]
    pub post: Vec<Hook>,
}

/// What a policy selects and when it runs (stored as the policy's spec).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PolicySpec {
    /// Cron (five fields) or a macro (`@daily`).
    pub schedule: String,
    /// IANA zone the schedule is read in.
    pub timezone: String,
    /// Retention.
    pub retention: Retention,
    /// Only these namespaces (all when empty).
    #[serde(default)]
    pub include_namespaces: Vec<String>,
    /// Never these namespaces.
    #[serde(default)]
    pub exclude_namespaces: Vec<String>,
    /// Only objects whose labels match.
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Hooks.
    #[serde(default)]
    pub hooks: Hooks,
}

/// Body of `POST …/backup-policies`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePolicy {
    /// Name (DNS-1123 label).
    pub name: String,
    /// Cron (five fields) or `@daily`, `@hourly`, …
    pub schedule: String,
    /// IANA time zone (default `UTC`).
    #[serde(default)]
    pub timezone: Option<String>,
    /// Retention (at least one of `keep_last`, `max_age`).
    pub retention: Retention,
    /// Only these namespaces.
    #[serde(default)]
    pub include_namespaces: Option<Vec<String>>,
    /// Never these namespaces.
    #[serde(default)]
    pub exclude_namespaces: Option<Vec<String>>,
    /// Equality-based label selector (`app=web,tier!=cache`).
    #[serde(default)]
    pub label_selector: Option<String>,
    /// Pre and post hooks.
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Whether the scheduler runs it (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// Body of `PATCH …/backup-policies/{id}`: any field of [`CreatePolicy`].
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePolicy {
    /// New name.
    #[serde(default)]
    pub name: Option<String>,
    /// New schedule.
    #[serde(default)]
    pub schedule: Option<String>,
    /// New time zone.
    #[serde(default)]
    pub timezone: Option<String>,
    /// New retention.
    #[serde(default)]
    pub retention: Option<Retention>,
    /// New namespaces.
    #[serde(default)]
    pub include_namespaces: Option<Vec<String>>,
    /// New excluded namespaces.
    #[serde(default)]
    pub exclude_namespaces: Option<Vec<String>>,
    /// New selector (`""` removes it).
    #[serde(default)]
    pub label_selector: Option<String>,
    /// New hooks.
    #[serde(default)]
    pub hooks: Option<Hooks>,
    /// Enable or disable.
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A backup policy.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct PolicyView {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub org_id: Uuid,
    /// Workspace backed up.
    pub workspace_id: Uuid,
    /// Name.
    pub name: String,
    /// Schedule, zone, retention, selectors, hooks.
    #[serde(flatten)]
    pub spec: PolicySpec,
    /// Whether the scheduler runs it.
    pub enabled: bool,
    /// Next due time (UTC); `null` while disabled.
    pub next_run_at: Option<DateTime<Utc>>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

/// A policy row's spec; a spec that no longer parses (never written by this code) reads as
/// an empty daily policy rather than failing the whole list.
pub fn policy_spec(policy: &BackupPolicy) -> PolicySpec {
    serde_json::from_value(policy.spec.clone()).unwrap_or_else(|_| PolicySpec {
        schedule: "@daily".to_owned(),
        timezone: "UTC".to_owned(),
        retention: Retention {
            keep_last: Some(1),
            max_age: None,
        },
        include_namespaces: Vec::new(),
        exclude_namespaces: Vec::new(),
        label_selector: None,
        hooks: Hooks::default(),
    })
}

impl From<BackupPolicy> for PolicyView {
    fn from(policy: BackupPolicy) -> Self {
        PolicyView {
            spec: policy_spec(&policy),
            id: policy.id,
            org_id: policy.org_id,
            workspace_id: policy.workspace_id,
            name: policy.name,
            enabled: policy.enabled,
            next_run_at: policy.next_run_at,
            created_at: policy.created_at,
            updated_at: policy.updated_at,
        }
    }
}

/// Why a backup or restore failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct FailureView {
    /// Stable kind: `integrity`, `hook`, `storage`, `driver`, `not_configured`, `key`,
    /// `internal`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// Readable detail.
    pub detail: String,
}

/// What a stored backup holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BackupStats {
    /// Objects backed up.
    pub objects: u64,
    /// Bytes of their canonical serialization.
    pub bytes_logical: u64,
    /// Bytes stored by this backup (new encrypted chunks and the manifest).
    pub bytes_stored_new: u64,
    /// Chunks this backup stored.
    pub chunks_new: u64,
    /// Chunks already stored by an earlier backup.
    pub chunks_reused: u64,
    /// How long making it took.
    pub duration_seconds: f64,
}

/// Where a backup's data lives.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct StorageView {
    /// Storage URL (`file:///…`, `s3://bucket/prefix`).
    pub location: String,
    /// The workspace's prefix in it (`<org_id>/<workspace_id>`).
    pub prefix: String,
}

/// A backup.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct BackupView {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub org_id: Uuid,
    /// Workspace.
    pub workspace_id: Uuid,
    /// The policy it ran for (or whose selectors it used).
    pub policy_id: Option<Uuid>,
    /// Due time, for scheduled runs.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// pending → running → succeeded | failed | partially_failed | expired | deleted.
    pub status: BackupStatus,
    /// `{step, done, total}`.
    pub progress: Option<Progress>,
    /// Statistics, once stored.
    pub stats: Option<BackupStats>,
    /// Why it failed.
    pub error: Option<FailureView>,
    /// The workspace data key it is encrypted under.
    pub key_id: Option<String>,
    /// Where it lives.
    pub storage: StorageView,
    /// Requested.
    pub created_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Backup> for BackupView {
    fn from(backup: Backup) -> Self {
        BackupView {
            id: backup.id,
            org_id: backup.org_id,
            workspace_id: backup.workspace_id,
            policy_id: backup.policy_id,
            scheduled_for: backup.scheduled_for,
            status: backup.status,
            progress: backup.progress.and_then(|p| serde_json::from_value(p).ok()),
            stats: backup.stats.and_then(|s| serde_json::from_value(s).ok()),
            error: backup.error.and_then(|e| serde_json::from_value(e).ok()),
            key_id: backup.key_id,
            storage: StorageView {
                location: backup.storage_location,
                prefix: backup.storage_prefix,
            },
            created_at: backup.created_at,
            started_at: backup.started_at,
            finished_at: backup.finished_at,
            updated_at: backup.updated_at,
        }
    }
}

/// Body of `POST …/backups`.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateBackup {
    /// Use this policy's selectors and hooks (and count it for its retention); none: the whole
    /// workspace, no hooks.
    #[serde(default)]
    pub policy_id: Option<Uuid>,
}

/// What to do with objects that already exist in the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Existing {
    /// Leave them as they are.
    #[default]
    Skip,
    /// Server-side apply the backed-up version over them.
    Update,
}

/// Body of `POST …/backups/{id}/restore`; also the restore's stored options.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRestore {
    /// Workspace to restore into (same organization; default the backup's).
    #[serde(default)]
    pub target_workspace_id: Option<Uuid>,
    /// Only these namespaces of the backup.
    #[serde(default)]
    pub namespaces: Option<Vec<String>>,
    /// Rename namespaces on the way (`{"old": "new"}`).
    #[serde(default)]
    pub namespace_mapping: Option<BTreeMap<String, String>>,
    /// List what would change; change nothing.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// `skip` (default) or `update`.
    #[serde(default)]
    pub existing: Option<Existing>,
}

/// An object a restore could not apply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectFailure {
    /// Kind.
    pub kind: String,
    /// Namespace (`""` for cluster-scoped objects).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Why.
    pub reason: String,
}

/// One change a restore made (or, dry run, would make).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ObjectChange {
    /// `create`, `update` or `skip`.
    pub action: String,
    /// Kind.
    pub kind: String,
    /// Namespace in the target.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// What a restore did.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct RestoreResult {
    /// Objects created.
    pub created: u64,
    /// Objects updated.
    pub updated: u64,
    /// Objects left as they were.
    pub skipped: u64,
    /// Objects that could not be applied.
    pub failed: Vec<ObjectFailure>,
    /// Every change, in apply order (dry runs: what would change).
    pub changes: Vec<ObjectChange>,
}

/// A restore.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct RestoreView {
    /// Id.
    pub id: Uuid,
    /// Organization.
    pub org_id: Uuid,
    /// The backup restored.
    pub backup_id: Uuid,
    /// The backup's workspace.
    pub workspace_id: Uuid,
    /// Where objects are applied.
    pub target_workspace_id: Uuid,
    /// The options it was requested with.
    pub options: CreateRestore,
    /// pending → running → succeeded | failed.
    pub status: RestoreStatus,
    /// `{step, done, total}`.
    pub progress: Option<Progress>,
    /// Counts and failures.
    pub result: Option<RestoreResult>,
    /// Why it failed (`integrity` when a chunk or the manifest did not authenticate).
    pub error: Option<FailureView>,
    /// Requested.
    pub created_at: DateTime<Utc>,
    /// Started.
    pub started_at: Option<DateTime<Utc>>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Restore> for RestoreView {
    fn from(restore: Restore) -> Self {
        RestoreView {
            id: restore.id,
            org_id: restore.org_id,
            backup_id: restore.backup_id,
            workspace_id: restore.source_workspace_id,
            target_workspace_id: restore.target_workspace_id,
            options: serde_json::from_value(restore.spec).unwrap_or_default(),
            status: restore.status,
            progress: restore
                .progress
                .and_then(|p| serde_json::from_value(p).ok()),
            result: restore.result.and_then(|r| serde_json::from_value(r).ok()),
            error: restore.error.and_then(|e| serde_json::from_value(e).ok()),
            created_at: restore.created_at,
            started_at: restore.started_at,
            finished_at: restore.finished_at,
            updated_at: restore.updated_at,
        }
    }
}

/// 422 unless the workspace is on the dedicated plan.
pub fn require_dedicated(workspace: &Workspace) -> Result<(), ApiError> {
    if workspace.plan == Plan::Dedicated {
        Ok(())
    } else {
        Err(ApiError::invalid("/workspace_id", NEEDS_DEDICATED))
    }
}

/// Checks a spec; answers its parsed schedule, or every problem at once.
pub fn check_spec(name: &str, spec: &PolicySpec) -> Result<Schedule, ApiError> {
    let mut errors = Vec::new();
    if let Err(e) = DnsLabel::parse(name) {
        errors.push(FieldError::new("/name", e.to_string()));
    }
    let schedule = match Schedule::parse(&spec.schedule, &spec.timezone) {
        Ok(schedule) => Some(schedule),
        Err(ScheduleError::Cron(detail)) => {
            errors.push(FieldError::new("/schedule", detail));
            None
        }
        Err(ScheduleError::Zone(detail)) => {
            errors.push(FieldError::new("/timezone", detail));
            None
        }
    };
    let retention = &spec.retention;
    if retention.keep_last.is_none() && retention.max_age.is_none() {
        errors.push(FieldError::new(
            "/retention",
            "give at least one of keep_last and max_age",
        ));
    }
    if let Some(n) = retention.keep_last {
        if !(1..=1000).contains(&n) {
            errors.push(FieldError::new(
                "/retention/keep_last",
                "must be between 1 and 1000",
            ));
        }
    }
    if let Some(age) = &retention.max_age {
        if let Err(e) = parse_age(age) {
            errors.push(FieldError::new("/retention/max_age", e));
        }
    }
    for (field, list) in [
        ("include_namespaces", &spec.include_namespaces),
        ("exclude_namespaces", &spec.exclude_namespaces),
    ] {
        for (i, ns) in list.iter().enumerate() {
            if let Err(e) = DnsLabel::parse(ns) {
                errors.push(FieldError::new(format!("/{field}/{i}"), e.to_string()));
            }
        }
    }
    if let Some(selector) = &spec.label_selector {
        if let Err(e) = LabelSelector::parse(selector) {
            errors.push(FieldError::new("/label_selector", e));
        }
    }
    for (phase, hooks) in [("pre", &spec.hooks.pre), ("post", &spec.hooks.post)] {
        for (i, hook) in hooks.iter().enumerate() {
            let at = format!("/hooks/{phase}/{i}");
            if let Err(e) = DnsLabel::parse(&hook.namespace) {
                errors.push(FieldError::new(format!("{at}/namespace"), e.to_string()));
            }
            if let Err(e) = LabelSelector::parse(&hook.pod_selector) {
                errors.push(FieldError::new(format!("{at}/pod_selector"), e));
            }
            if hook.command.is_empty() || hook.command[0].is_empty() {
                errors.push(FieldError::new(
                    format!("{at}/command"),
                    "give the command and its arguments",
                ));
            }
            if let Some(timeout) = &hook.timeout {
                if let Err(e) = parse_timeout(timeout) {
                    errors.push(FieldError::new(format!("{at}/timeout"), e));
                }
            }
        }
    }
    match schedule {
        Some(schedule) if errors.is_empty() => Ok(schedule),
        _ => Err(ApiError::Validation(errors)),
    }
}

fn to_json(value: &impl Serialize) -> Result<serde_json::Value, ApiError> {
    serde_json::to_value(value)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("serializing a backup spec: {e}")))
}

/// Records a policy for the (dedicated) workspace.
pub async fn create_policy(
    txn: &impl ConnectionTrait,
    workspace: &Workspace,
    body: CreatePolicy,
) -> Result<PolicyView, ApiError> {
    require_dedicated(workspace)?;
    let spec = PolicySpec {
        schedule: body.schedule,
        timezone: body.timezone.unwrap_or_else(|| "UTC".to_owned()),
        retention: body.retention,
        include_namespaces: body.include_namespaces.unwrap_or_default(),
        exclude_namespaces: body.exclude_namespaces.unwrap_or_default(),
        label_selector: body.label_selector.filter(|s| !s.trim().is_empty()),
        hooks: body.hooks.unwrap_or_default(),
    };
    let schedule = check_spec(&body.name, &spec)?;
    let enabled = body.enabled.unwrap_or(true);
    let next = enabled
        .then(|| schedule.next_after(crate::store::now()))
        .flatten();
    let policy = backup_store::insert_policy(
        txn,
        workspace.org_id,
        workspace.id,
        &body.name,
        to_json(&spec)?,
        enabled,
        next,
    )
    .await?;
    Ok(policy.into())
}

/// Applies a patch to a policy (the whole result is checked again).
pub async fn update_policy(
    txn: &impl ConnectionTrait,
    policy: BackupPolicy,
    patch: UpdatePolicy,
) -> Result<PolicyView, ApiError> {
    let mut spec = policy_spec(&policy);
    let old_schedule = (spec.schedule.clone(), spec.timezone.clone());
    let name = patch.name.unwrap_or_else(|| policy.name.clone());
    if let Some(schedule) = patch.schedule {
        spec.schedule = schedule;
    }
    if let Some(zone) = patch.timezone {
        spec.timezone = zone;
    }
    if let Some(retention) = patch.retention {
        spec.retention = retention;
    }
    if let Some(list) = patch.include_namespaces {
        spec.include_namespaces = list;
    }
    if let Some(list) = patch.exclude_namespaces {
        spec.exclude_namespaces = list;
    }
    if let Some(selector) = patch.label_selector {
        spec.label_selector = Some(selector).filter(|s| !s.trim().is_empty());
    }
    if let Some(hooks) = patch.hooks {
        spec.hooks = hooks;
    }
    let schedule = check_spec(&name, &spec)?;
    let enabled = patch.enabled.unwrap_or(policy.enabled);
    // The due time moves only when the schedule changed or the policy was (re-)enabled.
    let unchanged = old_schedule == (spec.schedule.clone(), spec.timezone.clone());
    let next = match (enabled, policy.next_run_at) {
        (false, _) => None,
        (true, Some(due)) if unchanged && policy.enabled => Some(due),
        (true, _) => schedule.next_after(crate::store::now()),
    };
    let updated =
        backup_store::update_policy(txn, policy, name, to_json(&spec)?, enabled, next).await?;
    Ok(updated.into())
}

/// The workspace's prefix inside the storage.
pub fn storage_prefix(org_id: Uuid, workspace_id: Uuid) -> String {
    format!("{org_id}/{workspace_id}")
}

/// Records a backup (`pending`) with its `backup.requested` event. Scheduled runs pass their
/// due time, which makes a second insert for the same due time a unique violation.
pub async fn request_backup(
    txn: &impl ConnectionTrait,
    workspace: &Workspace,
    policy_id: Option<Uuid>,
    scheduled_for: Option<DateTime<Utc>>,
    storage: &BackupStorage,
) -> Result<BackupView, sea_orm::DbErr> {
    let backup = backup_store::insert_backup(
        txn,
        NewBackup {
            org_id: workspace.org_id,
            workspace_id: workspace.id,
            policy_id,
            scheduled_for,
            storage_location: storage.location(),
            storage_prefix: storage_prefix(workspace.org_id, workspace.id),
        },
    )
    .await?;
    let view = BackupView::from(backup);
    outbox::record(txn, EventType::BackupRequested, view.org_id, view.id, &view).await?;
    Ok(view)
}

/// Deletes a backup (soft): it answers 404 from now on and its chunks are collected once no
/// other backup uses them. 409 while it is pending or running.
pub async fn delete_backup(txn: &impl ConnectionTrait, backup: Backup) -> Result<(), ApiError> {
    if !backup.status.is_finished() {
        return Err(ApiError::Conflict(format!(
            "the backup is {}; delete it once it finished",
            backup.status
        )));
    }
    backup_store::change_backup(
        txn,
        backup,
        BackupChange {
            status: Some(BackupStatus::Deleted),
            deleted: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(())
}

/// Records a restore of `backup` into `target` with its `restore.requested` event; 409
/// unless the backup is restorable.
pub async fn request_restore(
    txn: &impl ConnectionTrait,
    backup: &Backup,
    target: &Workspace,
    body: CreateRestore,
) -> Result<RestoreView, ApiError> {
    if !backup.status.is_restorable() {
        return Err(ApiError::Conflict(format!(
            "the backup is {}; only a succeeded backup can be restored",
            backup.status
        )));
    }
    let mut errors = Vec::new();
    for (i, ns) in body.namespaces.iter().flatten().enumerate() {
        if let Err(e) = DnsLabel::parse(ns) {
            errors.push(FieldError::new(format!("/namespaces/{i}"), e.to_string()));
        }
    }
    for (from, to) in body.namespace_mapping.iter().flatten() {
        if let Err(e) = DnsLabel::parse(to) {
            errors.push(FieldError::new(
                format!(
                    "/namespace_mapping/{}",
                    from.replace('~', "~0").replace('/', "~1")
                ),
                e.to_string(),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let spec = CreateRestore {
        target_workspace_id: Some(target.id),
        existing: Some(body.existing.unwrap_or_default()),
        dry_run: Some(body.dry_run.unwrap_or(false)),
        ..body
    };
    let restore = backup_store::insert_restore(
        txn,
        NewRestore {
            org_id: backup.org_id,
            backup_id: backup.id,
            source_workspace_id: backup.workspace_id,
            target_workspace_id: target.id,
            spec: to_json(&spec)?,
        },
    )
    .await?;
    let view = RestoreView::from(restore);
    outbox::record(
        txn,
        EventType::RestoreRequested,
        view.org_id,
        view.id,
        &view,
    )
    .await?;
    Ok(view)
}
