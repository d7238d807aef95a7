//! A workspace (one vCluster) as the API answers it and its events carry it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::ApiError;
use crate::outbox::{self, EventType};
use crate::store::{self, workspaces::Workspace};
use sea_orm::{ConnectionTrait, DbErr};

pub use crate::store::workspaces::{Plan, WorkspaceStatus};

/// Progress of a long-running step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Progress {
    /// What is happening now.
    pub step: String,
    /// Steps done.
    pub done: u32,
    /// Steps in all.
    pub total: u32,
}

/// An observed condition, Kubernetes style.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Condition {
    /// `Applied`, `Ready`, `Drifted`, `Deleted`.
    #[serde(rename = "type")]
    pub condition_type: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable detail.
    pub message: String,
    /// When `status` last changed.
    pub last_transition_time: DateTime<Utc>,
}

/// A workspace (one vCluster).
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkspaceView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// DNS-1123 label, unique in the organization.
    pub name: String,
    /// Plan.
    pub plan: Plan,
    /// Lifecycle status.
    pub status: WorkspaceStatus,
    /// API endpoint of the virtual cluster, once ready.
    pub kube_endpoint: Option<String>,
    /// Why provisioning failed, if it did.
    pub error: Option<String>,
    /// What the provisioner is doing (while provisioning or deleting).
    pub progress: Option<Progress>,
    /// Observed conditions (`Applied`, `Ready`, `Drifted`, …).
    pub conditions: Vec<Condition>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<Workspace> for WorkspaceView {
    fn from(w: Workspace) -> Self {
        Self {
            id: w.id,
            org_id: w.org_id,
            plan: w.plan,
            status: w.status,
            name: w.name,
            kube_endpoint: w.kube_endpoint,
            error: w.error,
            progress: w.progress.and_then(|p| serde_json::from_value(p).ok()),
            conditions: w
                .conditions
                .and_then(|c| serde_json::from_value(c).ok())
                .unwrap_or_default(),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// Requests deletion of `workspace` and records `workspace.deletion_requested`; repeating the
/// request is harmless: only the first records the command event.
pub async fn request_deletion(
    txn: &impl ConnectionTrait,
    workspace: Workspace,
) -> Result<WorkspaceView, DbErr> {
    if workspace.status == WorkspaceStatus::Deleting {
        return Ok(WorkspaceView::from(workspace));
    }
    let workspace = store::workspaces::mark_deleting(txn, workspace).await?;
    let view = WorkspaceView::from(workspace);
    outbox::record(
        txn,
        EventType::WorkspaceDeletionRequested,
        view.org_id,
        view.id,
        &view,
    )
    .await?;
    Ok(view)
}

/// Requests a failed `workspace` again (back to `pending`, with `workspace.requested`); 409
/// unless it is `failed`.
pub async fn retry(
    txn: &impl ConnectionTrait,
    workspace: Workspace,
) -> Result<WorkspaceView, ApiError> {
    if workspace.status != WorkspaceStatus::Failed {
        return Err(ApiError::Conflict(format!(
            "workspace is {}; only a failed workspace can be retried",
            workspace.status
        )));
    }
    let workspace = store::workspaces::transition(
        txn,
        workspace,
        store::workspaces::Transition {
            status: Some(WorkspaceStatus::Pending),
            error: Some(None),
            started: Some(false),
            ..Default::default()
        },
    )
    .await?;
    let view = WorkspaceView::from(workspace);
    outbox::record(
        txn,
        EventType::WorkspaceRequested,
        view.org_id,
        view.id,
        &view,
    )
    .await?;
    Ok(view)
}
