//! `workspaces`: a vCluster per row; the API records intent, the provisioner acts on it.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use schemars::JsonSchema;
use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};

/// Lifecycle of a workspace.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, Serialize, JsonSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum WorkspaceStatus {
    /// Recorded, waiting for the provisioner.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Being created.
    #[sea_orm(string_value = "provisioning")]
    Provisioning,
    /// Usable.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// Provisioning failed (see `error`).
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Deletion requested.
    #[sea_orm(string_value = "deleting")]
    Deleting,
    /// Removed.
    #[sea_orm(string_value = "deleted")]
    Deleted,
}

stored_names!(WorkspaceStatus {
    Pending => "pending",
    Provisioning => "provisioning",
    Ready => "ready",
    Failed => "failed",
    Deleting => "deleting",
    Deleted => "deleted",
});

/// Workspace plan: where and how big the virtual cluster is.
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
pub enum Plan {
    /// Small limits on shared nodes.
    #[sea_orm(string_value = "shared")]
    Shared,
    /// A dedicated node pool, larger limits.
    #[sea_orm(string_value = "dedicated")]
    Dedicated,
}

stored_names!(Plan {
    Shared => "shared",
    Dedicated => "dedicated",
});

/// The `workspaces` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A workspace row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "workspaces")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// Name.
        pub name: String,
        /// Plan the workspace was created on.
        pub plan: super::Plan,
        /// Workspace status.
        pub status: super::WorkspaceStatus,
        /// vCluster API endpoint, once provisioned.
        pub kube_endpoint: Option<String>,
        /// Last provisioning failure, if any.
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
        /// Provisioning progress (JSON), if any.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub progress: Option<Json>,
        /// Readiness conditions (JSON), if any.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub conditions: Option<Json>,
        /// CA certificate of the vCluster API (PEM), once provisioned.
        #[sea_orm(column_type = "Text", nullable)]
        pub kube_ca: Option<String>,
        /// When provisioning began.
        pub provision_started_at: Option<DateTimeUtc>,
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

soft_deleted!(entity, org_owned);

pub use entity::Model as Workspace;

/// Records a new workspace request (status `pending`).
pub async fn insert(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
    plan: Plan,
) -> Result<Workspace, DbErr> {
    let now = super::now();
    entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(org_id),
        name: Set(name.to_owned()),
        plan: Set(plan),
        status: Set(WorkspaceStatus::Pending),
        kube_endpoint: Set(None),
        error: Set(None),
        progress: Set(None),
        conditions: Set(None),
        kube_ca: Set(None),
        provision_started_at: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live workspace `id` of `org_id`.
pub async fn find_live(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Workspace>, DbErr> {
    super::find_live_in_org::<entity::Entity>(db, org_id, id).await
}

/// A page of the organization's live workspaces.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<Workspace>, DbErr> {
    let query = super::live_in_org::<entity::Entity>(org_id);
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// Marks the workspace for deletion (status `deleting`); the provisioner removes it.
pub async fn mark_deleting(
    db: &impl ConnectionTrait,
    workspace: Workspace,
) -> Result<Workspace, DbErr> {
    let mut row: entity::ActiveModel = workspace.into();
    row.status = Set(WorkspaceStatus::Deleting);
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// How many of the organization's workspaces are neither deleting nor deleted.
pub async fn count_active(db: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    super::live_in_org::<entity::Entity>(org_id)
        .filter(
            entity::Column::Status.is_not_in([WorkspaceStatus::Deleting, WorkspaceStatus::Deleted]),
        )
        .count(db)
        .await
}

/// Workspaces per status, and when the oldest one still pending or provisioning was last
/// changed (for the "stuck provisioning" gauge).
pub async fn status_summary(
    db: &impl ConnectionTrait,
) -> Result<
    (
        Vec<(WorkspaceStatus, i64)>,
        Option<chrono::DateTime<chrono::Utc>>,
    ),
    DbErr,
> {
    #[derive(Debug, sea_orm::FromQueryResult)]
    struct Count {
        status: WorkspaceStatus,
        n: i64,
    }
    let counts = entity::Entity::find()
        .select_only()
        .column(entity::Column::Status)
        .column_as(entity::Column::Id.count(), "n")
        .group_by(entity::Column::Status)
        .into_model::<Count>()
        .all(db)
        .await?;
    let oldest_unready = entity::Entity::find()
        .filter(
            entity::Column::Status.is_in([WorkspaceStatus::Pending, WorkspaceStatus::Provisioning]),
        )
        .filter(entity::Column::DeletedAt.is_null())
        .order_by_asc(entity::Column::UpdatedAt)
        .one(db)
        .await?
        .map(|w| w.updated_at);
    Ok((
        counts.into_iter().map(|c| (c.status, c.n)).collect(),
        oldest_unready,
    ))
}

/// Any workspace by id (the provisioner acts on rows it did not load through an org).
pub async fn find_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Workspace>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Any workspace by id, locked for the rest of the transaction on Postgres (SQLite write
/// transactions are serialized already), so a provisioner's status change and an API
/// `DELETE` never overwrite each other.
pub async fn find_for_update(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Workspace>, DbErr> {
    let query = entity::Entity::find_by_id(id);
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        query.lock_exclusive().one(db).await
    } else {
        query.one(db).await
    }
}

/// The provisioner's view of a workspace's state change.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// New status.
    pub status: Option<WorkspaceStatus>,
    /// New progress (`{step, done, total}`).
    pub progress: Option<Json>,
    /// New conditions.
    pub conditions: Option<Json>,
    /// Endpoint and CA of the ready vCluster.
    pub endpoint: Option<(String, String)>,
    /// Error text (`Some(None)` clears it).
    pub error: Option<Option<String>>,
    /// Marks provisioning as started now (`Some(true)`) or clears the mark (`Some(false)`).
    pub started: Option<bool>,
    /// Soft-deletes the row.
    pub deleted: bool,
}

/// Applies a transition to a workspace and returns the updated row.
pub async fn transition(
    db: &impl ConnectionTrait,
    workspace: Workspace,
    change: Transition,
) -> Result<Workspace, DbErr> {
    let now = super::now();
    let mut row: entity::ActiveModel = workspace.into();
    if let Some(status) = change.status {
        row.status = Set(status);
    }
    if let Some(progress) = change.progress {
        row.progress = Set(Some(progress));
    }
    if let Some(conditions) = change.conditions {
        row.conditions = Set(Some(conditions));
    }
    if let Some((endpoint, ca)) = change.endpoint {
        row.kube_endpoint = Set(Some(endpoint));
        row.kube_ca = Set(Some(ca));
    }
    if let Some(error) = change.error {
        row.error = Set(error);
    }
    match change.started {
        Some(true) => row.provision_started_at = Set(Some(now)),
        Some(false) => row.provision_started_at = Set(None),
        None => {}
    }
    if change.deleted {
        row.deleted_at = Set(Some(now));
    }
    row.updated_at = Set(now);
    row.update(db).await
}

/// Ready workspaces (for the drift check), oldest first, at most `limit`.
pub async fn ready(db: &impl ConnectionTrait, limit: u64) -> Result<Vec<Workspace>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::Status.eq(WorkspaceStatus::Ready))
        .filter(entity::Column::DeletedAt.is_null())
        .order_by_asc(entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Workspaces in one of `statuses` whose row has not changed since before `cutoff` (work the
/// reconciler may owe a job for).
pub async fn stale_in(
    db: &impl ConnectionTrait,
    statuses: &[WorkspaceStatus],
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> Result<Vec<Workspace>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::Status.is_in(statuses.iter().copied()))
        .filter(entity::Column::DeletedAt.is_null())
        .filter(entity::Column::UpdatedAt.lt(cutoff))
        .order_by_asc(entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// How many live (not deleted) workspaces the organization has (the workspace quota).
pub async fn count_live(db: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    super::live_in_org::<entity::Entity>(org_id).count(db).await
}
