//! The backup tables: `backup_policies`, `backups`, `backup_chunks` + `backup_chunk_refs`
//! (content-addressed chunks and which backup uses them), `backup_keys` (wrapped data keys)
//! and `backup_restores`. Every query for them lives here.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use sea_orm::entity::prelude::*;
use sea_orm::{FromQueryResult, QueryOrder, QuerySelect, Set, Statement};
use serde::{Deserialize, Serialize};

/// Lifecycle of a backup.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum BackupStatus {
    /// Requested, waiting for an executor.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Being made.
    #[sea_orm(string_value = "running")]
    Running,
    /// Its manifest is stored: restorable.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Failed (see `error`); nothing restorable.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Stored, but a `post` hook with `on_error: continue` failed.
    #[sea_orm(string_value = "partially_failed")]
    PartiallyFailed,
    /// Removed by retention.
    #[sea_orm(string_value = "expired")]
    Expired,
    /// Deleted by a user.
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

stored_names!(BackupStatus {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    PartiallyFailed => "partially_failed",
    Expired => "expired",
    Deleted => "deleted",
});

impl BackupStatus {
    /// True once the executor will not touch it again.
    pub fn is_finished(self) -> bool {
        !matches!(self, BackupStatus::Pending | BackupStatus::Running)
    }

    /// True when its manifest exists and it can be restored.
    pub fn is_restorable(self) -> bool {
        matches!(
            self,
            BackupStatus::Succeeded | BackupStatus::PartiallyFailed
        )
    }
}

/// Lifecycle of a restore.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum RestoreStatus {
    /// Requested.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Verifying and applying.
    #[sea_orm(string_value = "running")]
    Running,
    /// Every selected object was applied (or, for a dry run, listed).
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Refused (integrity) or failed; see `error` and `result.failed`.
    #[sea_orm(string_value = "failed")]
    Failed,
}

stored_names!(RestoreStatus {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
});

/// The `backup_policies` table.
pub mod policy_entity {
    use sea_orm::entity::prelude::*;

    /// A backup policy row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "backup_policies")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The workspace it backs up.
        pub workspace_id: Uuid,
        /// Name.
        pub name: String,
        /// Schedule, time zone, retention, selectors and hooks (JSON).
        #[sea_orm(column_type = "JsonBinary")]
        pub spec: Json,
        /// Whether the scheduler runs it.
        pub enabled: bool,
        /// The next due time (UTC); `None` while disabled.
        pub next_run_at: Option<DateTimeUtc>,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
        /// When the row was soft-deleted; `None` while live.
        pub deleted_at: Option<DateTimeUtc>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

soft_deleted!(policy_entity, org_owned);

/// The `backups` table.
pub mod backup_entity {
    use sea_orm::entity::prelude::*;

    /// A backup row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "backups")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The workspace backed up.
        pub workspace_id: Uuid,
        /// The policy that scheduled it (or whose selectors it uses), if any.
        pub policy_id: Option<Uuid>,
        /// The due time it was scheduled for (scheduled runs only).
        pub scheduled_for: Option<DateTimeUtc>,
        /// Status.
        pub status: super::BackupStatus,
        /// `{step, done, total}`.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub progress: Option<Json>,
        /// Statistics of a stored backup.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub stats: Option<Json>,
        /// `{type, detail}` of a failure.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub error: Option<Json>,
        /// Id of the workspace data key it is encrypted under.
        pub key_id: Option<String>,
        /// Storage URL (`file:///…`, `s3://bucket/prefix`).
        pub storage_location: String,
        /// The workspace's prefix inside the storage.
        pub storage_prefix: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When an executor started it.
        pub started_at: Option<DateTimeUtc>,
        /// When it reached a final status.
        pub finished_at: Option<DateTimeUtc>,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
        /// When a user deleted it.
        pub deleted_at: Option<DateTimeUtc>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

soft_deleted!(backup_entity, org_owned);

/// The `backup_keys` table.
pub mod key_entity {
    use sea_orm::entity::prelude::*;

    /// A workspace's wrapped data key.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "backup_keys")]
    pub struct Model {
        /// The workspace.
        #[sea_orm(primary_key, auto_increment = false)]
        pub workspace_id: Uuid,
        /// The data key's id (stays the same across master-key rotations).
        pub key_id: String,
        /// Base64 of nonce ‖ AES-256-GCM(master key, data key).
        #[sea_orm(column_type = "Text")]
        pub wrapped_key: String,
        /// Fingerprint of the master key that wrapped it.
        pub master_key_id: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When it was last re-wrapped.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `backup_restores` table.
pub mod restore_entity {
    use sea_orm::entity::prelude::*;

    /// A restore row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "backup_restores")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The backup restored.
        pub backup_id: Uuid,
        /// The backup's workspace.
        pub source_workspace_id: Uuid,
        /// Where objects are applied.
        pub target_workspace_id: Uuid,
        /// Namespaces, mapping, dry run, existing (JSON).
        #[sea_orm(column_type = "JsonBinary")]
        pub spec: Json,
        /// Status.
        pub status: super::RestoreStatus,
        /// `{step, done, total}`.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub progress: Option<Json>,
        /// `{created, updated, skipped, failed}`.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub result: Option<Json>,
        /// `{type, detail}` of a failure.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub error: Option<Json>,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When an executor started it.
        pub started_at: Option<DateTimeUtc>,
        /// When it finished.
        pub finished_at: Option<DateTimeUtc>,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use backup_entity::Model as Backup;
pub use key_entity::Model as BackupKey;
pub use policy_entity::Model as BackupPolicy;
pub use restore_entity::Model as Restore;

// ---------------------------------------------------------------- policies

/// Records a new policy.
pub async fn insert_policy(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    name: &str,
    spec: Json,
    enabled: bool,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<BackupPolicy, DbErr> {
    let now = super::now();
    policy_entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(org_id),
        workspace_id: Set(workspace_id),
        name: Set(name.to_owned()),
        spec: Set(spec),
        enabled: Set(enabled),
        next_run_at: Set(next_run_at),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live policy `id` of the workspace.
pub async fn find_policy(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<BackupPolicy>, DbErr> {
    Ok(
        super::find_live_in_org::<policy_entity::Entity>(db, org_id, id)
            .await?
            .filter(|p| p.workspace_id == workspace_id),
    )
}

/// Any policy by id (the executor acts on rows it did not load through an org).
pub async fn find_policy_any(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<BackupPolicy>, DbErr> {
    policy_entity::Entity::find_by_id(id).one(db).await
}

/// A page of the workspace's live policies, oldest first.
pub async fn list_policies(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<BackupPolicy>, DbErr> {
    let query = super::live_in_org::<policy_entity::Entity>(org_id)
        .filter(policy_entity::Column::WorkspaceId.eq(workspace_id));
    keyset(
        db,
        query,
        policy_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// Replaces a policy's name, spec, enabled flag and next due time.
pub async fn update_policy(
    db: &impl ConnectionTrait,
    policy: BackupPolicy,
    name: String,
    spec: Json,
    enabled: bool,
    next_run_at: Option<DateTime<Utc>>,
) -> Result<BackupPolicy, DbErr> {
    let mut row: policy_entity::ActiveModel = policy.into();
    row.name = Set(name);
    row.spec = Set(spec);
    row.enabled = Set(enabled);
    row.next_run_at = Set(next_run_at);
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// Soft-deletes a policy.
pub async fn delete_policy(db: &impl ConnectionTrait, policy: BackupPolicy) -> Result<(), DbErr> {
    super::soft_delete::<policy_entity::Entity>(db, policy).await?;
    Ok(())
}

/// Enabled live policies due at `now`, oldest due first.
pub async fn due_policies(
    db: &impl ConnectionTrait,
    now: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<BackupPolicy>, DbErr> {
    super::live::<policy_entity::Entity>()
        .filter(policy_entity::Column::Enabled.eq(true))
        .filter(policy_entity::Column::NextRunAt.lte(now))
        .order_by_asc(policy_entity::Column::NextRunAt)
        .limit(limit)
        .all(db)
        .await
}

/// Every live policy (retention walks them), by id.
pub async fn live_policies(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<BackupPolicy>, DbErr> {
    super::live::<policy_entity::Entity>()
        .order_by_asc(policy_entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Moves a policy's next due time, only if it is still `expected` (so two rounds cannot both
/// advance it); answers whether this call moved it.
pub async fn advance_policy(
    db: &impl ConnectionTrait,
    id: Uuid,
    expected: DateTime<Utc>,
    next: Option<DateTime<Utc>>,
) -> Result<bool, DbErr> {
    let result = policy_entity::Entity::update_many()
        .col_expr(policy_entity::Column::NextRunAt, Expr::value(next))
        .col_expr(policy_entity::Column::UpdatedAt, Expr::value(super::now()))
        .filter(policy_entity::Column::Id.eq(id))
        .filter(policy_entity::Column::NextRunAt.eq(expected))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

// ---------------------------------------------------------------- backups

/// What is recorded for a new backup.
#[derive(Debug, Clone)]
pub struct NewBackup {
    /// Organization.
    pub org_id: Uuid,
    /// Workspace.
    pub workspace_id: Uuid,
    /// Policy whose selectors and hooks it uses, if any.
    pub policy_id: Option<Uuid>,
    /// Due time (scheduled runs).
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Storage URL.
    pub storage_location: String,
    /// Prefix of the workspace inside the storage.
    pub storage_prefix: String,
}

/// Records a new backup (status `pending`).
pub async fn insert_backup(db: &impl ConnectionTrait, new: NewBackup) -> Result<Backup, DbErr> {
    let now = super::now();
    backup_entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(new.org_id),
        workspace_id: Set(new.workspace_id),
        policy_id: Set(new.policy_id),
        scheduled_for: Set(new.scheduled_for),
        status: Set(BackupStatus::Pending),
        progress: Set(None),
        stats: Set(None),
        error: Set(None),
        key_id: Set(None),
        storage_location: Set(new.storage_location),
        storage_prefix: Set(new.storage_prefix),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live backup `id` of the workspace.
pub async fn find_backup(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<Backup>, DbErr> {
    Ok(
        super::find_live_in_org::<backup_entity::Entity>(db, org_id, id)
            .await?
            .filter(|b| b.workspace_id == workspace_id),
    )
}

/// Whether the policy already has a backup for the due time `due`.
pub async fn scheduled_exists(
    db: &impl ConnectionTrait,
    policy_id: Uuid,
    due: DateTime<Utc>,
) -> Result<bool, DbErr> {
    Ok(backup_entity::Entity::find()
        .filter(backup_entity::Column::PolicyId.eq(policy_id))
        .filter(backup_entity::Column::ScheduledFor.eq(due))
        .one(db)
        .await?
        .is_some())
}

/// Any backup by id.
pub async fn find_backup_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Backup>, DbErr> {
    backup_entity::Entity::find_by_id(id).one(db).await
}

/// Any backup by id, locked for the rest of the transaction on Postgres.
pub async fn find_backup_for_update(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Backup>, DbErr> {
    let query = backup_entity::Entity::find_by_id(id);
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        query.lock_exclusive().one(db).await
    } else {
        query.one(db).await
    }
}

/// Filters of the backup list.
#[derive(Debug, Clone, Default)]
pub struct BackupFilter {
    /// Only this status.
    pub status: Option<BackupStatus>,
    /// Only this policy's backups.
    pub policy_id: Option<Uuid>,
}

/// A page of the workspace's live backups, newest first.
pub async fn list_backups(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    filter: &BackupFilter,
    page: &PageRequest<Uuid>,
) -> Result<Page<Backup>, DbErr> {
    let mut query = super::live_in_org::<backup_entity::Entity>(org_id)
        .filter(backup_entity::Column::WorkspaceId.eq(workspace_id));
    if let Some(status) = filter.status {
        query = query.filter(backup_entity::Column::Status.eq(status));
    }
    if let Some(policy_id) = filter.policy_id {
        query = query.filter(backup_entity::Column::PolicyId.eq(policy_id));
    }
    keyset(
        db,
        query,
        backup_entity::Column::Id,
        KeyOrder::Descending,
        page,
    )
    .await
}

/// A change to a backup row.
#[derive(Debug, Clone, Default)]
pub struct BackupChange {
    /// New status (`running` sets `started_at` once; a finished status sets `finished_at`).
    pub status: Option<BackupStatus>,
    /// New progress.
    pub progress: Option<Json>,
    /// New stats.
    pub stats: Option<Json>,
    /// New error.
    pub error: Option<Json>,
    /// The key id.
    pub key_id: Option<String>,
    /// Soft-deletes the row (a user's delete).
    pub deleted: bool,
}

/// Applies a change and returns the row as stored.
pub async fn change_backup(
    db: &impl ConnectionTrait,
    backup: Backup,
    change: BackupChange,
) -> Result<Backup, DbErr> {
    let now = super::now();
    let started = backup.started_at.is_some();
    let mut row: backup_entity::ActiveModel = backup.into();
    if let Some(status) = change.status {
        row.status = Set(status);
        if status == BackupStatus::Running && !started {
            row.started_at = Set(Some(now));
        }
        if status.is_finished() {
            row.finished_at = Set(Some(now));
        }
    }
    if let Some(progress) = change.progress {
        row.progress = Set(Some(progress));
    }
    if let Some(stats) = change.stats {
        row.stats = Set(Some(stats));
    }
    if let Some(error) = change.error {
        row.error = Set(Some(error));
    }
    if let Some(key_id) = change.key_id {
        row.key_id = Set(Some(key_id));
    }
    if change.deleted {
        row.deleted_at = Set(Some(now));
    }
    row.updated_at = Set(now);
    row.update(db).await
}

/// The policy's backups in `statuses` (live or not), newest first.
pub async fn policy_backups(
    db: &impl ConnectionTrait,
    policy_id: Uuid,
    statuses: &[BackupStatus],
) -> Result<Vec<Backup>, DbErr> {
    backup_entity::Entity::find()
        .filter(backup_entity::Column::PolicyId.eq(policy_id))
        .filter(backup_entity::Column::Status.is_in(statuses.iter().copied()))
        .filter(backup_entity::Column::DeletedAt.is_null())
        .order_by_desc(backup_entity::Column::Id)
        .all(db)
        .await
}

/// Whether the workspace has a backup pending or running (chunk GC waits for it).
pub async fn has_unfinished(db: &impl ConnectionTrait, workspace_id: Uuid) -> Result<bool, DbErr> {
    Ok(backup_entity::Entity::find()
        .filter(backup_entity::Column::WorkspaceId.eq(workspace_id))
        .filter(backup_entity::Column::Status.is_in([BackupStatus::Running]))
        .one(db)
        .await?
        .is_some())
}

/// Backups still pending or running whose row has not changed since `cutoff`.
pub async fn stale_unfinished(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Backup>, DbErr> {
    backup_entity::Entity::find()
        .filter(backup_entity::Column::Status.is_in([BackupStatus::Pending, BackupStatus::Running]))
        .filter(backup_entity::Column::UpdatedAt.lt(cutoff))
        .order_by_asc(backup_entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The newest succeeded backup of each workspace that has one: (workspace, finished_at).
pub async fn last_successes(
    db: &impl ConnectionTrait,
) -> Result<Vec<(Uuid, DateTime<Utc>)>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        workspace_id: Uuid,
        finished_at: Option<DateTime<Utc>>,
    }
    let rows = backup_entity::Entity::find()
        .select_only()
        .column(backup_entity::Column::WorkspaceId)
        .column_as(backup_entity::Column::FinishedAt.max(), "finished_at")
        .filter(
            backup_entity::Column::Status
                .is_in([BackupStatus::Succeeded, BackupStatus::PartiallyFailed]),
        )
        .group_by(backup_entity::Column::WorkspaceId)
        .into_model::<Row>()
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.finished_at.map(|at| (r.workspace_id, at)))
        .collect())
}

// ---------------------------------------------------------------- chunks

/// The chunk ids of `ids` the workspace already stores.
pub async fn existing_chunks(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        chunk_id: String,
    }
    let mut found = std::collections::HashSet::new();
    for batch in ids.chunks(500) {
        let placeholders = placeholders(db, 2, batch.len());
        let mut values: Vec<sea_orm::Value> = vec![workspace_id.into()];
        values.extend(batch.iter().map(|id| id.clone().into()));
        let rows = Row::find_by_statement(Statement::from_sql_and_values(
            db.get_database_backend(),
            format!(
                "SELECT chunk_id FROM backup_chunks WHERE workspace_id = {} AND chunk_id IN ({placeholders})",
                param(db, 1)
            ),
            values,
        ))
        .all(db)
        .await?;
        found.extend(rows.into_iter().map(|r| r.chunk_id));
    }
    Ok(found)
}

/// The n-th bind parameter in the backend's spelling.
fn param(db: &impl ConnectionTrait, n: usize) -> String {
    super::sql_for(db.get_database_backend(), &format!("${n}"))
}

/// `count` parameters starting at `first`, comma-separated, in the backend's spelling.
fn placeholders(db: &impl ConnectionTrait, first: usize, count: usize) -> String {
    super::sql_for(
        db.get_database_backend(),
        &super::placeholders(first, count),
    )
}

/// Records stored chunks (already present ones are left as they are).
pub async fn insert_chunks(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    chunks: &[(String, i64)],
) -> Result<(), DbErr> {
    let now = super::now();
    for batch in chunks.chunks(200) {
        let mut sql = String::from(
            "INSERT INTO backup_chunks (workspace_id, chunk_id, stored_size, created_at) VALUES ",
        );
        let mut values: Vec<sea_orm::Value> = Vec::new();
        for (i, (id, size)) in batch.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = values.len();
            sql.push_str(&format!(
                "({}, {}, {}, {})",
                param(db, n + 1),
                param(db, n + 2),
                param(db, n + 3),
                param(db, n + 4)
            ));
            values.extend([
                workspace_id.into(),
                id.clone().into(),
                (*size).into(),
                now.into(),
            ]);
        }
        sql.push_str(" ON CONFLICT (workspace_id, chunk_id) DO NOTHING");
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Records which chunks `backup_id` uses (idempotent).
pub async fn insert_refs(
    db: &impl ConnectionTrait,
    backup_id: Uuid,
    chunk_ids: &[String],
) -> Result<(), DbErr> {
    for batch in chunk_ids.chunks(400) {
        let mut sql = String::from("INSERT INTO backup_chunk_refs (backup_id, chunk_id) VALUES ");
        let mut values: Vec<sea_orm::Value> = Vec::new();
        for (i, id) in batch.iter().enumerate() {
            if i > 0 {
                sql.push_str(", ");
            }
            let n = values.len();
            sql.push_str(&format!("({}, {})", param(db, n + 1), param(db, n + 2)));
            values.extend([backup_id.into(), id.clone().into()]);
        }
        sql.push_str(" ON CONFLICT (backup_id, chunk_id) DO NOTHING");
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// A backup (aliased `b`) whose chunks no longer need to be kept: expired, deleted or failed.
const DEAD_BACKUP: &str =
    "(b.status IN ('expired', 'deleted', 'failed') OR b.deleted_at IS NOT NULL)";

/// Drops the chunk references of backups that are expired, deleted or failed.
pub async fn drop_dead_refs(db: &impl ConnectionTrait, workspace_id: Uuid) -> Result<(), DbErr> {
    let sql = format!(
        "DELETE FROM backup_chunk_refs WHERE backup_id IN (SELECT b.id FROM backups b \
         WHERE b.workspace_id = {} AND {DEAD_BACKUP})",
        param(db, 1)
    );
    db.execute_raw(Statement::from_sql_and_values(
        db.get_database_backend(),
        sql,
        [workspace_id.into()],
    ))
    .await?;
    Ok(())
}

/// Workspaces with expired, deleted or failed backups that still hold chunk references.
pub async fn workspaces_with_dead_backups(
    db: &impl ConnectionTrait,
    limit: u64,
) -> Result<Vec<Uuid>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        workspace_id: Uuid,
    }
    let rows = Row::find_by_statement(Statement::from_string(
        db.get_database_backend(),
        format!(
            "SELECT DISTINCT b.workspace_id FROM backups b JOIN backup_chunk_refs r ON r.backup_id = b.id \
             WHERE {DEAD_BACKUP} LIMIT {limit}"
        ),
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.workspace_id).collect())
}

/// The workspace's expired, deleted or failed backups that still hold chunk references
/// (their manifests are deleted with them).
pub async fn dead_backups_with_refs(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
) -> Result<Vec<Uuid>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        id: Uuid,
    }
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT DISTINCT b.id FROM backups b JOIN backup_chunk_refs r ON r.backup_id = b.id \
             WHERE b.workspace_id = {} AND {DEAD_BACKUP}",
            param(db, 1)
        ),
        [workspace_id.into()],
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The workspace's chunks no backup references any more.
pub async fn unreferenced_chunks(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
) -> Result<Vec<String>, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        chunk_id: String,
    }
    let rows = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT c.chunk_id FROM backup_chunks c WHERE c.workspace_id = {} AND NOT EXISTS \
             (SELECT 1 FROM backup_chunk_refs r JOIN backups b ON b.id = r.backup_id \
              WHERE r.chunk_id = c.chunk_id AND b.workspace_id = c.workspace_id)",
            param(db, 1)
        ),
        [workspace_id.into()],
    ))
    .all(db)
    .await?;
    Ok(rows.into_iter().map(|r| r.chunk_id).collect())
}

/// Forgets chunks that were deleted from the storage.
pub async fn delete_chunks(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    ids: &[String],
) -> Result<(), DbErr> {
    for batch in ids.chunks(500) {
        let sql = format!(
            "DELETE FROM backup_chunks WHERE workspace_id = {} AND chunk_id IN ({})",
            param(db, 1),
            placeholders(db, 2, batch.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![workspace_id.into()];
        values.extend(batch.iter().map(|id| id.clone().into()));
        db.execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            values,
        ))
        .await?;
    }
    Ok(())
}

/// How many chunks the workspace stores.
pub async fn chunk_count(db: &impl ConnectionTrait, workspace_id: Uuid) -> Result<u64, DbErr> {
    #[derive(sea_orm::FromQueryResult)]
    struct Row {
        n: i64,
    }
    let row = Row::find_by_statement(Statement::from_sql_and_values(
        db.get_database_backend(),
        format!(
            "SELECT COUNT(*) AS n FROM backup_chunks WHERE workspace_id = {}",
            param(db, 1)
        ),
        [workspace_id.into()],
    ))
    .one(db)
    .await?;
    Ok(row.map_or(0, |r| r.n.max(0) as u64))
}

// ---------------------------------------------------------------- keys

/// The workspace's wrapped data key, if it has one.
pub async fn find_key(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
) -> Result<Option<BackupKey>, DbErr> {
    key_entity::Entity::find_by_id(workspace_id).one(db).await
}

/// Stores the workspace's first data key; answers false when another process stored one first.
pub async fn insert_key(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    key_id: &str,
    wrapped_key: &str,
    master_key_id: &str,
) -> Result<bool, DbErr> {
    let now = super::now();
    let sql = format!(
        "INSERT INTO backup_keys (workspace_id, key_id, wrapped_key, master_key_id, created_at, updated_at) \
         VALUES ({}, {}, {}, {}, {}, {}) ON CONFLICT (workspace_id) DO NOTHING",
        param(db, 1),
        param(db, 2),
        param(db, 3),
        param(db, 4),
        param(db, 5),
        param(db, 6)
    );
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            sql,
            [
                workspace_id.into(),
                key_id.into(),
                wrapped_key.into(),
                master_key_id.into(),
                now.into(),
                now.into(),
            ],
        ))
        .await?;
    Ok(result.rows_affected() == 1)
}

/// Replaces the wrapping of a data key (master-key rotation).
pub async fn rewrap_key(
    db: &impl ConnectionTrait,
    key: BackupKey,
    wrapped_key: String,
    master_key_id: String,
) -> Result<BackupKey, DbErr> {
    let mut row: key_entity::ActiveModel = key.into();
    row.wrapped_key = Set(wrapped_key);
    row.master_key_id = Set(master_key_id);
    row.updated_at = Set(super::now());
    row.update(db).await
}

// ---------------------------------------------------------------- restores

/// What is recorded for a new restore.
#[derive(Debug, Clone)]
pub struct NewRestore {
    /// Organization.
    pub org_id: Uuid,
    /// The backup.
    pub backup_id: Uuid,
    /// The backup's workspace.
    pub source_workspace_id: Uuid,
    /// Where it is applied.
    pub target_workspace_id: Uuid,
    /// Options (JSON).
    pub spec: Json,
}

/// Records a new restore (status `pending`).
pub async fn insert_restore(db: &impl ConnectionTrait, new: NewRestore) -> Result<Restore, DbErr> {
    let now = super::now();
    restore_entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(new.org_id),
        backup_id: Set(new.backup_id),
        source_workspace_id: Set(new.source_workspace_id),
        target_workspace_id: Set(new.target_workspace_id),
        spec: Set(new.spec),
        status: Set(RestoreStatus::Pending),
        progress: Set(None),
        result: Set(None),
        error: Set(None),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// The restore `id` of the organization's workspace (as source).
pub async fn find_restore(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    id: Uuid,
) -> Result<Option<Restore>, DbErr> {
    restore_entity::Entity::find_by_id(id)
        .filter(restore_entity::Column::OrgId.eq(org_id))
        .filter(restore_entity::Column::SourceWorkspaceId.eq(workspace_id))
        .one(db)
        .await
}

/// Any restore by id.
pub async fn find_restore_any(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Restore>, DbErr> {
    restore_entity::Entity::find_by_id(id).one(db).await
}

/// A change to a restore row.
#[derive(Debug, Clone, Default)]
pub struct RestoreChange {
    /// New status.
    pub status: Option<RestoreStatus>,
    /// New progress.
    pub progress: Option<Json>,
    /// New result.
    pub result: Option<Json>,
    /// New error.
    pub error: Option<Json>,
}

/// Applies a change and returns the row as stored.
pub async fn change_restore(
    db: &impl ConnectionTrait,
    restore: Restore,
    change: RestoreChange,
) -> Result<Restore, DbErr> {
    let now = super::now();
    let started = restore.started_at.is_some();
    let mut row: restore_entity::ActiveModel = restore.into();
    if let Some(status) = change.status {
        row.status = Set(status);
        if status == RestoreStatus::Running && !started {
            row.started_at = Set(Some(now));
        }
        if matches!(status, RestoreStatus::Succeeded | RestoreStatus::Failed) {
            row.finished_at = Set(Some(now));
        }
    }
    if let Some(progress) = change.progress {
        row.progress = Set(Some(progress));
    }
    if let Some(result) = change.result {
        row.result = Set(Some(result));
    }
    if let Some(error) = change.error {
        row.error = Set(Some(error));
    }
    row.updated_at = Set(now);
    row.update(db).await
}

/// Restores still pending or running whose row has not changed since `cutoff`.
pub async fn stale_restores(
    db: &impl ConnectionTrait,
    cutoff: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Restore>, DbErr> {
    restore_entity::Entity::find()
        .filter(
            restore_entity::Column::Status.is_in([RestoreStatus::Pending, RestoreStatus::Running]),
        )
        .filter(restore_entity::Column::UpdatedAt.lt(cutoff))
        .order_by_asc(restore_entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}
