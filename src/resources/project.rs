//! A project as the API answers it and its events carry it.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::store::projects::Project;

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
        Self {
            id: p.id,
            org_id: p.org_id,
            workspace_id: p.workspace_id,
            name: p.name,
            graph_version: p.graph_version,
            status: p.status,
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
