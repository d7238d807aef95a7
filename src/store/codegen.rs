//! `codegen_jobs` and `codegen_artifacts`: one generation of manifests from one graph version,
//! and its files (unique per job and path, so a retried job replaces rather than doubles them).

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use schemars::JsonSchema;
use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, QuerySelect, Set};
use serde::{Deserialize, Serialize};

/// Which engine generates the manifests.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    EnumIter,
    DeriveActiveEnum,
    Serialize,
    Deserialize,
    JsonSchema,
)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "snake_case")]
pub enum Engine {
    /// Deterministic templates (the same graph gives byte-identical output).
    #[default]
    #[sea_orm(string_value = "templates")]
    Templates,
    /// The templates' output refined by an OpenAI-compatible model (needs `GANTRY_LLM_*`).
    #[sea_orm(string_value = "llm")]
    Llm,
}

stored_names!(Engine {
    Templates => "templates",
    Llm => "llm",
});

/// Lifecycle of a codegen job.
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
pub enum CodegenStatus {
    /// Recorded, waiting for a runner.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Being generated.
    #[sea_orm(string_value = "running")]
    Running,
    /// Finished; artifacts are available.
    #[sea_orm(string_value = "succeeded")]
    Succeeded,
    /// Finished with an `error`.
    #[sea_orm(string_value = "failed")]
    Failed,
    /// Stopped on request.
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

stored_names!(CodegenStatus {
    Pending => "pending",
    Running => "running",
    Succeeded => "succeeded",
    Failed => "failed",
    Cancelled => "cancelled",
});

impl CodegenStatus {
    /// True once nothing will change the job any more.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            CodegenStatus::Succeeded | CodegenStatus::Failed | CodegenStatus::Cancelled
        )
    }
}

/// The `codegen_jobs` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A codegen job row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "codegen_jobs")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The project this belongs to.
        pub project_id: Uuid,
        /// Version of the project graph.
        pub graph_version: i32,
        /// Generator engine that runs the job.
        pub engine: super::Engine,
        /// Delivery target (`{"git": {...}}`), if any.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub target: Option<Json>,
        /// Job status.
        pub status: super::CodegenStatus,
        /// Progress report (JSON), if any.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub progress: Option<Json>,
        /// Failure details (JSON), if the job failed.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub error: Option<Json>,
        /// Commit the artifacts were delivered in, if delivered to Git.
        pub commit_sha: Option<String>,
        /// Whether a cancel was requested while the job ran.
        pub cancel_requested: bool,
        /// Subject (`sub`) of the caller who created it.
        pub created_by: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When a runner picked the job up.
        pub started_at: Option<DateTimeUtc>,
        /// When the job reached a final status.
        pub finished_at: Option<DateTimeUtc>,
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

/// The `codegen_artifacts` table.
pub mod artifact_entity {
    use sea_orm::entity::prelude::*;

    /// One generated file.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "codegen_artifacts")]
    pub struct Model {
        /// The codegen job that generated the file.
        #[sea_orm(primary_key, auto_increment = false)]
        pub job_id: Uuid,
        /// Path of the file inside the generated tree.
        #[sea_orm(primary_key, auto_increment = false)]
        pub path: String,
        /// Media type of the content.
        pub media_type: String,
        /// Size of the content in bytes.
        pub size: i64,
        /// Hex SHA-256 of the content.
        pub sha256: String,
        /// File content.
        #[sea_orm(column_type = "Blob")]
        pub content: Vec<u8>,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use artifact_entity::Model as Artifact;
pub use entity::Model as CodegenJob;

/// What the API records for a new job.
#[derive(Debug, Clone)]
pub struct NewCodegenJob {
    /// Organization.
    pub org_id: Uuid,
    /// Project whose graph is generated.
    pub project_id: Uuid,
    /// The graph version.
    pub graph_version: i32,
    /// The engine that generates.
    pub engine: Engine,
    /// Delivery target (`{"git": {...}}`), if any.
    pub target: Option<Json>,
    /// Subject of the caller.
    pub created_by: String,
}

/// Records a new job (status `pending`).
pub async fn insert(db: &impl ConnectionTrait, job: NewCodegenJob) -> Result<CodegenJob, DbErr> {
    let now = super::now();
    entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(job.org_id),
        project_id: Set(job.project_id),
        graph_version: Set(job.graph_version),
        engine: Set(job.engine),
        target: Set(job.target),
        status: Set(CodegenStatus::Pending),
        progress: Set(None),
        error: Set(None),
        commit_sha: Set(None),
        cancel_requested: Set(false),
        created_by: Set(job.created_by),
        created_at: Set(now),
        started_at: Set(None),
        finished_at: Set(None),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live job `id` of `org_id`.
pub async fn find_live(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<CodegenJob>, DbErr> {
    super::find_live_in_org::<entity::Entity>(db, org_id, id).await
}

/// Any job by id (the worker acts on rows it did not load through an org).
pub async fn find_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<CodegenJob>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Any job by id, locked for the rest of the transaction on Postgres (SQLite write
/// transactions are serialized already), so the API and a runner never overwrite each other's
/// status change.
pub async fn find_for_update(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<CodegenJob>, DbErr> {
    let query = entity::Entity::find_by_id(id);
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        query.lock_exclusive().one(db).await
    } else {
        query.one(db).await
    }
}

/// Filters of the job list.
#[derive(Debug, Clone, Default)]
pub struct ListFilter {
    /// Only this project's jobs.
    pub project_id: Option<Uuid>,
    /// Only jobs in this status.
    pub status: Option<CodegenStatus>,
}

/// A page of the organization's live jobs, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    filter: &ListFilter,
    page: &PageRequest<Uuid>,
) -> Result<Page<CodegenJob>, DbErr> {
    let mut query = super::live_in_org::<entity::Entity>(org_id);
    if let Some(project_id) = filter.project_id {
        query = query.filter(entity::Column::ProjectId.eq(project_id));
    }
    if let Some(status) = filter.status {
        query = query.filter(entity::Column::Status.eq(status));
    }
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// A change to a job row.
#[derive(Debug, Clone, Default)]
pub struct Transition {
    /// New status; a finished status also sets `finished_at`, `running` sets `started_at` once.
    pub status: Option<CodegenStatus>,
    /// New progress (`{step, done, total}`).
    pub progress: Option<Json>,
    /// New error (`{type, detail}`).
    pub error: Option<Json>,
    /// The pushed commit.
    pub commit_sha: Option<String>,
    /// Asks a running job to stop at its next step.
    pub cancel_requested: bool,
    /// Soft-deletes the row.
    pub deleted: bool,
}

/// Applies a transition and returns the updated row.
pub async fn transition(
    db: &impl ConnectionTrait,
    job: CodegenJob,
    change: Transition,
) -> Result<CodegenJob, DbErr> {
    let now = super::now();
    let started = job.started_at.is_some();
    let mut row: entity::ActiveModel = job.into();
    if let Some(new_status) = change.status {
        row.status = Set(new_status);
        if new_status == CodegenStatus::Running && !started {
            row.started_at = Set(Some(now));
        }
        if new_status.is_finished() {
            row.finished_at = Set(Some(now));
        }
    }
    if let Some(progress) = change.progress {
        row.progress = Set(Some(progress));
    }
    if let Some(error) = change.error {
        row.error = Set(Some(error));
    }
    if let Some(sha) = change.commit_sha {
        row.commit_sha = Set(Some(sha));
    }
    if change.cancel_requested {
        row.cancel_requested = Set(true);
    }
    if change.deleted {
        row.deleted_at = Set(Some(now));
    }
    row.updated_at = Set(now);
    row.update(db).await
}

/// Pending or running jobs whose row has not changed since before `cutoff` (work the
/// reconciler may owe a queue entry for), oldest first.
pub async fn stale_unfinished(
    db: &impl ConnectionTrait,
    cutoff: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> Result<Vec<CodegenJob>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::Status.is_in([CodegenStatus::Pending, CodegenStatus::Running]))
        .filter(entity::Column::DeletedAt.is_null())
        .filter(entity::Column::UpdatedAt.lt(cutoff))
        .order_by_asc(entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// One file to store.
#[derive(Debug, Clone)]
pub struct NewArtifact {
    /// Relative path.
    pub path: String,
    /// Media type.
    pub media_type: String,
    /// Lower-case hex SHA-256 of `content`.
    pub sha256: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// Replaces the job's artifacts with `files` (a retried job never doubles them).
pub async fn replace_artifacts(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    files: Vec<NewArtifact>,
) -> Result<(), DbErr> {
    delete_artifacts(db, job_id).await?;
    let now = super::now();
    let rows: Vec<artifact_entity::ActiveModel> = files
        .into_iter()
        .map(|file| artifact_entity::ActiveModel {
            job_id: Set(job_id),
            size: Set(file.content.len() as i64),
            path: Set(file.path),
            media_type: Set(file.media_type),
            sha256: Set(file.sha256),
            content: Set(file.content),
            created_at: Set(now),
        })
        .collect();
    // Bounded batches keep every statement under SQLite's bind-parameter limit.
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let batch: Vec<_> = rows.by_ref().take(100).collect();
        artifact_entity::Entity::insert_many(batch)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Deletes the job's artifacts.
pub async fn delete_artifacts(db: &impl ConnectionTrait, job_id: Uuid) -> Result<(), DbErr> {
    artifact_entity::Entity::delete_many()
        .filter(artifact_entity::Column::JobId.eq(job_id))
        .exec(db)
        .await?;
    Ok(())
}

/// A file's description without its bytes.
#[derive(Debug, Clone, PartialEq, Eq, sea_orm::FromQueryResult)]
pub struct ArtifactInfo {
    /// Relative path.
    pub path: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// The job's files without their bytes, by path.
pub async fn list_artifacts(
    db: &impl ConnectionTrait,
    job_id: Uuid,
) -> Result<Vec<ArtifactInfo>, DbErr> {
    artifact_entity::Entity::find()
        .select_only()
        .column(artifact_entity::Column::Path)
        .column(artifact_entity::Column::MediaType)
        .column(artifact_entity::Column::Size)
        .column(artifact_entity::Column::Sha256)
        .filter(artifact_entity::Column::JobId.eq(job_id))
        .order_by_asc(artifact_entity::Column::Path)
        .into_model::<ArtifactInfo>()
        .all(db)
        .await
}

/// One file with its bytes.
pub async fn get_artifact(
    db: &impl ConnectionTrait,
    job_id: Uuid,
    path: &str,
) -> Result<Option<Artifact>, DbErr> {
    artifact_entity::Entity::find_by_id((job_id, path.to_owned()))
        .one(db)
        .await
}

/// Every file with its bytes, by path.
pub async fn all_artifacts(
    db: &impl ConnectionTrait,
    job_id: Uuid,
) -> Result<Vec<Artifact>, DbErr> {
    artifact_entity::Entity::find()
        .filter(artifact_entity::Column::JobId.eq(job_id))
        .order_by_asc(artifact_entity::Column::Path)
        .all(db)
        .await
}

/// How many of the organization's live codegen jobs are pending or running (the in-flight
/// codegen quota).
pub async fn count_unfinished(db: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    super::live_in_org::<entity::Entity>(org_id)
        .filter(entity::Column::Status.is_in([CodegenStatus::Pending, CodegenStatus::Running]))
        .count(db)
        .await
}
