//! `projects` and `project_graph_versions`: a project holds its current graph, and every
//! version it ever had is kept.

use super::paging::{keyset, keyset_into, KeyOrder, Page, PageRequest};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{FromQueryResult, QueryOrder, QuerySelect, Set};

/// The `projects` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A project row with its current graph.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "projects")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// Workspace the project lives in.
        pub workspace_id: Uuid,
        /// Name.
        pub name: String,
        /// Current graph version.
        pub graph_version: i32,
        /// Current graph document (JSON).
        #[sea_orm(column_type = "JsonBinary")]
        pub graph: Json,
        /// Project status.
        pub status: super::ProjectStatus,
        /// CPU quota (Kubernetes quantity).
        pub quota_cpu: String,
        /// Memory quota (Kubernetes quantity).
        pub quota_memory: String,
        /// Last failure, if any.
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
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

/// A project's namespace state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum ProjectStatus {
    /// Waiting for its workspace or the provisioner.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Its namespace exists in the vCluster.
    #[sea_orm(string_value = "ready")]
    Ready,
    /// Creating its namespace failed.
    #[sea_orm(string_value = "failed")]
    Failed,
}

stored_names!(ProjectStatus {
    Pending => "pending",
    Ready => "ready",
    Failed => "failed",
});

/// The `project_graph_versions` table.
pub mod version_entity {
    use sea_orm::entity::prelude::*;

    /// One stored graph version.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "project_graph_versions")]
    pub struct Model {
        /// The project this belongs to.
        #[sea_orm(primary_key, auto_increment = false)]
        pub project_id: Uuid,
        /// Graph version number.
        #[sea_orm(primary_key, auto_increment = false)]
        pub version: i32,
        /// Owning organization.
        pub org_id: Uuid,
        /// The graph document of this version (JSON).
        #[sea_orm(column_type = "JsonBinary")]
        pub graph: Json,
        /// Subject (`sub`) of the caller who saved it.
        pub created_by: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as Project;
pub use version_entity::Model as GraphVersion;

/// Inserts a project with version 0 of its graph (`graph`, normally empty).
#[allow(clippy::too_many_arguments)]
pub async fn insert(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    name: &str,
    graph: Json,
    quota: (&str, &str),
    created_by: &str,
) -> Result<Project, DbErr> {
    let now = super::now();
    let project = entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(org_id),
        workspace_id: Set(workspace_id),
        name: Set(name.to_owned()),
        graph_version: Set(0),
        graph: Set(graph.clone()),
        status: Set(ProjectStatus::Pending),
        quota_cpu: Set(quota.0.to_owned()),
        quota_memory: Set(quota.1.to_owned()),
        error: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(db)
    .await?;
    insert_version(db, &project, 0, graph, created_by).await?;
    Ok(project)
}

async fn insert_version(
    db: &impl ConnectionTrait,
    project: &Project,
    version: i32,
    graph: Json,
    created_by: &str,
) -> Result<GraphVersion, DbErr> {
    version_entity::ActiveModel {
        project_id: Set(project.id),
        version: Set(version),
        org_id: Set(project.org_id),
        graph: Set(graph),
        created_by: Set(created_by.to_owned()),
        created_at: Set(project.updated_at),
    }
    .insert(db)
    .await
}

/// The live project `id` of `org_id`.
pub async fn find_live(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Project>, DbErr> {
    super::find_live_in_org::<entity::Entity>(db, org_id, id).await
}

/// The live project, locked for the rest of the transaction (Postgres `FOR UPDATE`; SQLite
/// has one writer anyway), so concurrent graph writes queue instead of failing their version
/// check.
pub async fn find_live_for_update(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Project>, DbErr> {
    entity::Entity::find_by_id(id)
        .filter(entity::Column::OrgId.eq(org_id))
        .filter(entity::Column::DeletedAt.is_null())
        .lock_exclusive()
        .one(db)
        .await
}

/// A project row without its graph: what a list shows (the graph is the row's bulk, and
/// decoding it is most of a list's cost).
#[derive(Debug, Clone, PartialEq, FromQueryResult)]
pub struct ProjectSummary {
    /// Primary key.
    pub id: Uuid,
    /// Owning organization.
    pub org_id: Uuid,
    /// Workspace the project lives in.
    pub workspace_id: Uuid,
    /// Name.
    pub name: String,
    /// Current graph version.
    pub graph_version: i32,
    /// Project status.
    pub status: ProjectStatus,
    /// CPU quota (Kubernetes quantity).
    pub quota_cpu: String,
    /// Memory quota (Kubernetes quantity).
    pub quota_memory: String,
    /// Last failure, if any.
    pub error: Option<String>,
    /// When the row was inserted.
    pub created_at: DateTimeUtc,
    /// When the row last changed.
    pub updated_at: DateTimeUtc,
}

impl From<Project> for ProjectSummary {
    fn from(p: Project) -> Self {
        Self {
            id: p.id,
            org_id: p.org_id,
            workspace_id: p.workspace_id,
            name: p.name,
            graph_version: p.graph_version,
            status: p.status,
            quota_cpu: p.quota_cpu,
            quota_memory: p.quota_memory,
            error: p.error,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A page of the organization's live projects (without their graphs), optionally of one
/// workspace.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Option<Uuid>,
    page: &PageRequest<Uuid>,
) -> Result<Page<ProjectSummary>, DbErr> {
    use entity::Column;
    let mut query = super::live_in_org::<entity::Entity>(org_id)
        .select_only()
        .columns([
            Column::Id,
            Column::OrgId,
            Column::WorkspaceId,
            Column::Name,
            Column::GraphVersion,
            Column::Status,
            Column::QuotaCpu,
            Column::QuotaMemory,
            Column::Error,
            Column::CreatedAt,
            Column::UpdatedAt,
        ]);
    if let Some(workspace_id) = workspace_id {
        query = query.filter(entity::Column::WorkspaceId.eq(workspace_id));
    }
    keyset_into(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// Renames the project.
pub async fn rename(
    db: &impl ConnectionTrait,
    project: Project,
    name: String,
) -> Result<Project, DbErr> {
    let mut row: entity::ActiveModel = project.into();
    row.name = Set(name);
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// Soft-deletes the project.
pub async fn soft_delete(db: &impl ConnectionTrait, project: Project) -> Result<Project, DbErr> {
    super::soft_delete::<entity::Entity>(db, project).await
}

/// Stores `graph` as the version after `expected_version`. Returns `None` when the project's
/// version is no longer `expected_version` (a concurrent writer won): the compare-and-set is in
/// the `UPDATE … WHERE graph_version = expected`, so it holds under concurrency on both backends.
pub async fn put_graph(
    db: &impl ConnectionTrait,
    project: &Project,
    expected_version: i32,
    graph: Json,
    created_by: &str,
) -> Result<Option<Project>, DbErr> {
    let next = expected_version + 1;
    let now = super::now();
    let result = entity::Entity::update_many()
        .col_expr(entity::Column::GraphVersion, Expr::value(next))
        .col_expr(entity::Column::Graph, Expr::value(graph.clone()))
        .col_expr(entity::Column::UpdatedAt, Expr::value(now))
        .filter(entity::Column::Id.eq(project.id))
        .filter(entity::Column::GraphVersion.eq(expected_version))
        .filter(entity::Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    if result.rows_affected == 0 {
        return Ok(None);
    }
    let updated = Project {
        graph_version: next,
        graph: graph.clone(),
        updated_at: now,
        ..project.clone()
    };
    insert_version(db, &updated, next, graph, created_by).await?;
    Ok(Some(updated))
}

/// A page of the project's graph versions, oldest first.
pub async fn list_versions(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    page: &PageRequest<i32>,
) -> Result<Page<GraphVersion>, DbErr> {
    let query =
        version_entity::Entity::find().filter(version_entity::Column::ProjectId.eq(project_id));
    keyset(
        db,
        query,
        version_entity::Column::Version,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// One graph version of the project.
pub async fn find_version(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    version: i32,
) -> Result<Option<GraphVersion>, DbErr> {
    version_entity::Entity::find_by_id((project_id, version))
        .one(db)
        .await
}

/// Soft-deletes every live project of a workspace (the workspace is gone).
pub async fn soft_delete_all_in_workspace(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
) -> Result<u64, DbErr> {
    let now = super::now();
    let result = entity::Entity::update_many()
        .col_expr(
            entity::Column::DeletedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .col_expr(
            entity::Column::UpdatedAt,
            sea_orm::sea_query::Expr::value(now),
        )
        .filter(entity::Column::WorkspaceId.eq(workspace_id))
        .filter(entity::Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Any project by id (the provisioner acts on rows it did not load through an org).
pub async fn find_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Project>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Live projects of a workspace in `status`.
pub async fn in_workspace_with_status(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
    wanted: ProjectStatus,
) -> Result<Vec<Project>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::WorkspaceId.eq(workspace_id))
        .filter(entity::Column::DeletedAt.is_null())
        .filter(entity::Column::Status.eq(wanted))
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await
}

/// Sets a project's namespace status (and error).
pub async fn set_status(
    db: &impl ConnectionTrait,
    project: Project,
    new_status: ProjectStatus,
    error: Option<String>,
) -> Result<Project, DbErr> {
    let mut row: entity::ActiveModel = project.into();
    row.status = Set(new_status);
    row.error = Set(error);
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// How many live projects the workspace has (the project quota).
pub async fn count_live_in_workspace(
    db: &impl ConnectionTrait,
    workspace_id: Uuid,
) -> Result<u64, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::WorkspaceId.eq(workspace_id))
        .filter(entity::Column::DeletedAt.is_null())
        .count(db)
        .await
}

/// Deletes the project's graph versions older than the newest `keep` (version 0, the empty
/// start, is pruned like the others).
pub async fn prune_versions(
    db: &impl ConnectionTrait,
    project_id: Uuid,
    newest: i32,
    keep: u64,
) -> Result<u64, DbErr> {
    let oldest_kept = i64::from(newest) - i64::try_from(keep).unwrap_or(i64::MAX) + 1;
    if oldest_kept <= 0 {
        return Ok(0);
    }
    let result = version_entity::Entity::delete_many()
        .filter(version_entity::Column::ProjectId.eq(project_id))
        .filter(version_entity::Column::Version.lt(oldest_kept))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
