//! A project as the API answers it and its events carry it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{graph, DnsLabel};
use crate::error::{ApiError, FieldError};
use crate::outbox::{self, EventType};
use crate::store::projects::{Project, ProjectSummary};
use crate::store::{self, is_unique_violation, workspaces::WorkspaceStatus};
use sea_orm::{ConnectionTrait, DbErr};

/// A project.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// Workspace the project lives in.
    pub workspace_id: Uuid,
    /// DNS-1123 label, unique in the workspace.
    pub name: String,
    /// Current graph version (0 = the empty graph it started with).
    pub graph_version: i32,
    /// Its namespace in the workspace's vCluster: `pending` (until the workspace is ready and
    /// the provisioner created it), `ready` or `failed`.
    pub status: String,
    /// The namespace's `ResourceQuota`.
    pub quota: ProjectQuota,
    /// Why creating the namespace failed, if it did.
    pub error: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Project> for ProjectView {
    fn from(p: Project) -> Self {
        ProjectSummary::from(p).into()
    }
}

impl From<ProjectSummary> for ProjectView {
    fn from(p: ProjectSummary) -> Self {
        Self {
            id: p.id,
            org_id: p.org_id,
            workspace_id: p.workspace_id,
            name: p.name,
            graph_version: p.graph_version,
            status: p.status.as_str().to_owned(),
            quota: ProjectQuota {
                cpu: p.quota_cpu,
                memory: p.quota_memory,
            },
            error: p.error,
            created_at: p.created_at,
            updated_at: p.updated_at,
        }
    }
}

/// A project namespace's `ResourceQuota` (Kubernetes quantities).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectQuota {
    /// `limits.cpu`, e.g. `2` or `500m`.
    pub cpu: String,
    /// `limits.memory`, e.g. `4Gi`.
    pub memory: String,
}

impl ProjectQuota {
    /// The quota a project gets when none is asked for.
    pub fn default_quota() -> Self {
        Self {
            cpu: "2".to_owned(),
            memory: "4Gi".to_owned(),
        }
    }

    /// Checks both values are Kubernetes quantities (422 naming each one that is not).
    pub fn checked(self) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        if !graph::is_quantity(&self.cpu) {
            errors.push(FieldError::new(
                "/quota/cpu",
                "must be a Kubernetes quantity such as 2 or 500m",
            ));
        }
        if !graph::is_quantity(&self.memory) {
            errors.push(FieldError::new(
                "/quota/memory",
                "must be a Kubernetes quantity such as 4Gi",
            ));
        }
        if errors.is_empty() {
            Ok(self)
        } else {
            Err(ApiError::Validation(errors))
        }
    }
}

/// Maps a unique violation on the name to 409.
pub fn name_taken(name: &str) -> impl FnOnce(DbErr) -> ApiError + '_ {
    move |err| {
        if is_unique_violation(&err) {
            ApiError::Conflict(format!(
                "a project named {name} already exists in this workspace"
            ))
        } else {
            err.into()
        }
    }
}

/// Creates a project in a live workspace of the organization (422 for an unknown workspace,
/// 409 for one being deleted or a taken name) and records `project.created`.
pub async fn create(
    txn: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    name: &DnsLabel,
    quota: &ProjectQuota,
    created_by: &str,
    max_projects: u64,
) -> Result<ProjectView, ApiError> {
    let workspace = store::workspaces::find_live(txn, org_id, workspace_id)
        .await?
        .ok_or_else(|| {
            ApiError::invalid("/workspace_id", "no such workspace in this organization")
        })?;
    if matches!(
        workspace.status,
        WorkspaceStatus::Deleting | WorkspaceStatus::Deleted
    ) {
        return Err(ApiError::Conflict(
            "the workspace is being deleted".to_owned(),
        ));
    }
    // The workspace row is the parent of the count: locked, concurrent creates count each other.
    store::workspaces::find_for_update(txn, workspace.id).await?;
    if store::projects::count_live_in_workspace(txn, workspace.id).await? >= max_projects {
        return Err(ApiError::QuotaExceeded(format!(
            "a workspace may have at most {max_projects} projects"
        )));
    }
    let project = store::projects::insert(
        txn,
        org_id,
        workspace_id,
        name.as_str(),
        graph::empty_graph(),
        (&quota.cpu, &quota.memory),
        created_by,
    )
    .await
    .map_err(name_taken(name.as_str()))?;
    let view = ProjectView::from(project);
    outbox::record(txn, EventType::ProjectCreated, org_id, view.id, &view).await?;
    Ok(view)
}

/// Validates `new_graph` (422 with every problem), stores it as the next version of `project`
/// (pruning versions older than the newest `versions_kept`)
/// (412 if another writer got there first) and records `project.graph_updated`.
pub async fn replace_graph(
    txn: &impl ConnectionTrait,
    project: &Project,
    new_graph: serde_json::Value,
    created_by: &str,
    versions_kept: u64,
) -> Result<Project, ApiError> {
    graph::validate(&new_graph, "/graph").map_err(ApiError::Validation)?;
    let updated =
        store::projects::put_graph(txn, project, project.graph_version, new_graph, created_by)
            .await?
            .ok_or_else(|| {
                ApiError::PreconditionFailed("the graph changed concurrently".to_owned())
            })?;
    // Bounded history: only the newest versions are kept.
    store::projects::prune_versions(txn, updated.id, updated.graph_version, versions_kept).await?;
    let data = serde_json::json!({
        "project_id": updated.id,
        "workspace_id": updated.workspace_id,
        "version": updated.graph_version,
    });
    outbox::record(
        txn,
        EventType::ProjectGraphUpdated,
        project.org_id,
        updated.id,
        data,
    )
    .await?;
    Ok(updated)
}
