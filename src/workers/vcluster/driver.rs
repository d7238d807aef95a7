//! The one interface the vCluster provisioner drives, implemented by the `kubernetes` driver
//! (kube-rs against a host K3s cluster) and the `simulated` driver (embedded mode). The worker
//! never knows which one runs.

use uuid::Uuid;

/// A workspace plan's resources, from configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSpec {
    /// `shared` or `dedicated`.
    pub name: String,
    /// `ResourceQuota` `limits.cpu` / `requests.cpu` of the host namespace (e.g. `4`).
    pub cpu: String,
    /// `ResourceQuota` `limits.memory` / `requests.memory` (e.g. `8Gi`).
    pub memory: String,
    /// `ResourceQuota` `pods`.
    pub pods: u32,
    /// `ResourceQuota` `requests.storage`.
    pub storage: String,
    /// Node selector and toleration of the dedicated pool (dedicated plan only), as
    /// `key=value`; `None` for shared nodes.
    pub dedicated_pool: Option<String>,
}

/// Everything a driver needs to know about a workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceSpec {
    /// Workspace id.
    pub workspace_id: Uuid,
    /// Owning organization.
    pub org_id: Uuid,
    /// Workspace name (DNS-1123 label, unique in the org).
    pub name: String,
    /// Host namespace: `gantry-ws-<last 12 hex of the id>` (ids are UUIDv7: the head is a
    /// timestamp, the tail is random).
    pub namespace: String,
    /// The vCluster release name (also the HelmChart name).
    pub release: String,
    /// Resources of its plan.
    pub plan: PlanSpec,
}

impl WorkspaceSpec {
    /// Host namespace of a workspace.
    pub fn namespace_for(workspace_id: Uuid) -> String {
        let hex = workspace_id.simple().to_string();
        format!("gantry-ws-{}", &hex[hex.len() - 12..])
    }
}

/// Pod Security admission labels on every namespace Gantry manages: `restricted` is enforced
/// (and warned/audited) at the latest policy version, so a privileged pod created inside a
/// vCluster is refused both by the vCluster's API server and, once synced, by the host's.
pub const POD_SECURITY_LABELS: [(&str, &str); 4] = [
    ("pod-security.kubernetes.io/enforce", "restricted"),
    ("pod-security.kubernetes.io/enforce-version", "latest"),
    ("pod-security.kubernetes.io/warn", "restricted"),
    ("pod-security.kubernetes.io/audit", "restricted"),
];
/// A project as a namespace inside its workspace's vCluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectSpec {
    /// The workspace it lives in.
    pub workspace: WorkspaceSpec,
    /// Project id.
    pub project_id: Uuid,
    /// Namespace name inside the vCluster (the project name).
    pub namespace: String,
    /// `ResourceQuota` `limits.cpu`.
    pub cpu: String,
    /// `ResourceQuota` `limits.memory`.
    pub memory: String,
    /// `RoleBinding`s: (OIDC group, cluster role) pairs, e.g. (`gantry:<org>:admin`, `admin`).
    pub bindings: Vec<(String, String)>,
}

/// Where a workspace's vCluster stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Readiness {
    /// Still coming up; `step` says what is awaited (for progress).
    Pending {
        /// What is awaited, e.g. `waiting for the vCluster StatefulSet`.
        step: String,
    },
    /// Usable.
    Ready {
        /// API server URL of the vCluster.
        endpoint: String,
        /// PEM CA bundle of that API server, base64 (as in a kubeconfig's
        /// `certificate-authority-data`).
        ca_data: String,
    },
    /// Will not become ready without intervention.
    Failed {
        /// Readable reason.
        reason: String,
    },
}

/// Why a driver call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DriverError {
    /// Worth retrying (network, 5xx, conflicts).
    #[error("{0}")]
    Transient(String),
    /// Will fail again (403, invalid object, missing CRD).
    #[error("{0}")]
    Permanent(String),
}

impl From<DriverError> for crate::jobs::JobError {
    /// Retryable when the driver says the failure is transient.
    fn from(err: DriverError) -> Self {
        crate::jobs::JobError::failed(matches!(err, DriverError::Transient(_)), err)
    }
}

/// A host-cluster driver.
#[async_trait::async_trait]
pub trait KubeDriver: Send + Sync + 'static {
    /// `kubernetes` or `simulated`.
    fn name(&self) -> &'static str;

    /// Applies (server-side apply, field manager `gantry`) the workspace's host objects:
    /// namespace (labelled with org and workspace ids), `ResourceQuota`, `LimitRange`,
    /// default-deny `NetworkPolicy` (allowing the host API and DNS), and the `HelmChart`
    /// installing vCluster with the plan's values. Re-applying is a no-op.
    async fn apply_workspace(&self, workspace: &WorkspaceSpec) -> Result<(), DriverError>;

    /// Whether the vCluster is ready (StatefulSet ready and kubeconfig Secret present).
    async fn workspace_readiness(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Readiness, DriverError>;

    /// Tears the workspace down: removes the HelmChart, and once the release is gone the
    /// namespace. Returns true when nothing is left (call again until then).
    async fn delete_workspace(&self, workspace: &WorkspaceSpec) -> Result<bool, DriverError>;

    /// Host objects of a ready workspace that are missing or differ from what Gantry applied
    /// (empty when none).
    async fn drift(&self, workspace: &WorkspaceSpec) -> Result<Vec<String>, DriverError>;

    /// Creates (applies) a project's namespace, quota, default-deny policy and role bindings
    /// inside the workspace's vCluster.
    async fn apply_project(&self, project: &ProjectSpec) -> Result<(), DriverError>;

    /// Deletes a project's namespace inside the vCluster (absent is fine).
    async fn delete_project(&self, project: &ProjectSpec) -> Result<(), DriverError>;
}

/// An object inside a workspace's vCluster, as JSON (`apiVersion`, `kind`, `metadata`, …).
pub type KubeObject = serde_json::Value;

/// How a command run in a pod ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExecOutcome {
    /// Exit status 0 in every selected pod.
    Succeeded,
    /// A non-zero exit (or no pod matched), with what was seen.
    Failed(String),
}

/// What [`WorkspaceObjects::apply_object`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// The object did not exist.
    Created,
    /// It existed and was server-side applied over.
    Updated,
}

/// A command to run in the pods a selector picks (backup hooks).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    /// Namespace of the pods.
    pub namespace: String,
    /// Label selector of the pods.
    pub pod_selector: String,
    /// Container (default: the pod's first).
    pub container: Option<String>,
    /// Command and arguments.
    pub command: Vec<String>,
}

/// Reading and writing the objects inside a workspace's vCluster: what backups list, restores
/// apply and hooks exec into. Implemented by the `simulated` and `kubernetes` drivers.
#[async_trait::async_trait]
pub trait WorkspaceObjects: Send + Sync + 'static {
    /// Every object inside the workspace's vCluster (of the kinds the driver backs up).
    async fn list_objects(&self, workspace: &WorkspaceSpec)
        -> Result<Vec<KubeObject>, DriverError>;

    /// Whether an object exists (`namespace` empty for cluster-scoped kinds).
    async fn object_exists(
        &self,
        workspace: &WorkspaceSpec,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, DriverError>;

    /// Server-side applies an object (field manager `gantry`).
    async fn apply_object(
        &self,
        workspace: &WorkspaceSpec,
        object: &KubeObject,
    ) -> Result<Applied, DriverError>;

    /// Runs a command in every pod the selector picks; the caller bounds it with a timeout.
    async fn exec(
        &self,
        workspace: &WorkspaceSpec,
        request: &ExecRequest,
    ) -> Result<ExecOutcome, DriverError>;
}
