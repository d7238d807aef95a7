//! The `kubernetes` driver: kube-rs against a host K3s cluster. Workspaces become a host
//! namespace (quota, limits, default-deny network policy) plus a K3s `HelmChart` that installs
//! vCluster; projects become namespaces inside that vCluster. Every write is a server-side apply
//! with field manager `gantry`, so re-applying the same spec changes nothing.
//!
//! `driver` implements [`KubeDriver`](super::driver::KubeDriver) from the parts: `objects`
//! builds what is applied, `readiness` and `drift` read the cluster back, `requests` wraps the
//! API calls (apply, get, delete) and maps their errors.

mod drift;
mod driver;
mod objects;
mod readiness;
mod requests;
mod workspace_objects;
pub use workspace_objects::BACKED_UP_KINDS;

use super::driver::{DriverError, WorkspaceSpec};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::Client;
use objects::kubeconfig_secret_name;
use readiness::secret_data;
use requests::get_opt;
use std::time::Duration;

/// The server-side-apply field manager of every object Gantry writes.
pub const FIELD_MANAGER: &str = "gantry";
/// Name of the `ResourceQuota` in host and project namespaces.
pub const QUOTA_NAME: &str = "gantry-quota";
/// Name of the `LimitRange` (default container requests/limits) in host and project namespaces.
pub const LIMIT_RANGE_NAME: &str = "gantry-limits";
/// Name of the default-deny `NetworkPolicy` in host and project namespaces.
pub const DEFAULT_DENY_POLICY_NAME: &str = "gantry-default-deny";
/// Name of the host `NetworkPolicy` that lets clients (the provisioner, users) reach the
/// vCluster API server pod through the default deny.
pub const VCLUSTER_API_POLICY_NAME: &str = "gantry-allow-vcluster-api";
/// Label carrying the organization id.
pub const LABEL_ORG_ID: &str = "gantry.dev/org-id";
/// Label carrying the workspace id.
pub const LABEL_WORKSPACE_ID: &str = "gantry.dev/workspace-id";
/// Label carrying the project id (project namespaces inside the vCluster).
pub const LABEL_PROJECT_ID: &str = "gantry.dev/project-id";
/// The standard label saying who manages an object.
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// How the driver reaches the API server of a workspace's vCluster (for projects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VClusterAccess {
    /// With the kubeconfig vCluster writes into Secret `vc-<release>` (key `config`) in the
    /// workspace namespace, against the workspace endpoint. Production.
    #[default]
    FromSecret,
    /// With the host client itself (tests, where one fake API server plays both).
    SameAsHost,
}
/// Settings of the `kubernetes` driver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeSettings {
    /// Namespace of the K3s `HelmChart` objects (K3s' helm-controller watches `kube-system`).
    pub helm_namespace: String,
    /// Helm repository of the vCluster chart.
    pub chart_repo: String,
    /// Pinned vCluster chart version.
    pub chart_version: String,
    /// Public URL of a vCluster API server, with `{release}` and `{namespace}` placeholders
    /// (e.g. `https://{release}.{namespace}.example.com`); `None` means the in-cluster Service
    /// `https://<release>.<namespace>.svc:443`.
    pub endpoint_template: Option<String>,
    /// How to reach the vCluster API for projects.
    pub vcluster_client: VClusterAccess,
    /// CIDRs of the host API server (egress on 443/6443 is allowed only to them); empty allows
    /// those two ports to any address, because the host API server runs on the nodes'
    /// addresses, which no pod or namespace selector can name.
    pub api_server_cidrs: Vec<String>,
    /// Read timeout of the clients this driver builds (`from_env`, vCluster clients).
    pub request_timeout: Option<Duration>,
}
impl Default for KubeSettings {
    fn default() -> Self {
        Self {
            helm_namespace: "kube-system".to_owned(),
            chart_repo: "https://charts.loft.sh".to_owned(),
            chart_version: "0.20.0".to_owned(),
            endpoint_template: None,
            vcluster_client: VClusterAccess::FromSecret,
            api_server_cidrs: Vec::new(),
            request_timeout: Some(Duration::from_secs(30)),
        }
    }
}
/// The driver that provisions workspaces on a real (K3s) host cluster.
#[derive(Clone)]
pub struct KubernetesDriver {
    client: Client,
    settings: KubeSettings,
}

impl KubernetesDriver {
    /// A driver talking to the host cluster through `client`.
    pub fn new(client: Client, settings: KubeSettings) -> Self {
        Self { client, settings }
    }

    /// A driver for the cluster the environment points at: `KUBECONFIG` / `~/.kube/config`,
    /// else the in-cluster service account (what `kube::Client::try_default` does, plus the
    /// settings' read timeout so a hung API server cannot stall a job forever).
    pub async fn from_env(settings: KubeSettings) -> Result<Self, DriverError> {
        crate::install_crypto_provider();
        let mut config = kube::Config::infer().await.map_err(|e| {
            DriverError::Permanent(format!(
                "no Kubernetes configuration (KUBECONFIG or in-cluster): {e}"
            ))
        })?;
        if settings.request_timeout.is_some() {
            config.read_timeout = settings.request_timeout;
        }
        let client = Client::try_from(config).map_err(|e| {
            DriverError::Permanent(format!("cannot build the Kubernetes client: {e}"))
        })?;
        Ok(Self::new(client, settings))
    }

    /// The driver's settings.
    pub fn settings(&self) -> &KubeSettings {
        &self.settings
    }

    /// API server URL of a workspace's vCluster.
    pub fn endpoint(&self, workspace: &WorkspaceSpec) -> String {
        match &self.settings.endpoint_template {
            Some(template) => template
                .replace("{release}", &workspace.release)
                .replace("{namespace}", &workspace.namespace),
            None => format!(
                "https://{}.{}.svc:443",
                workspace.release, workspace.namespace
            ),
        }
    }

    /// A client for the API server of the workspace's vCluster.
    pub(super) async fn vcluster_client(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Client, DriverError> {
        if self.settings.vcluster_client == VClusterAccess::SameAsHost {
            return Ok(self.client.clone());
        }
        let secret_name = kubeconfig_secret_name(workspace);
        let what = format!("Secret {}/{secret_name}", workspace.namespace);
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &workspace.namespace);
        let secret = get_opt(&secrets, &secret_name, &what)
            .await?
            .ok_or_else(|| {
                DriverError::Transient(format!("{what} not found: the vCluster is not ready"))
            })?;
        let kubeconfig = secret_data(&secret, "config")
            .ok_or_else(|| DriverError::Transient(format!("{what} has no `config` yet")))?;
        let kubeconfig = std::str::from_utf8(kubeconfig)
            .map_err(|e| DriverError::Permanent(format!("{what}: `config` is not UTF-8: {e}")))
            .and_then(|text| {
                Kubeconfig::from_yaml(text).map_err(|e| {
                    DriverError::Permanent(format!("{what}: `config` is not a kubeconfig: {e}"))
                })
            })?;
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
                .await
                .map_err(|e| DriverError::Permanent(format!("{what}: unusable kubeconfig: {e}")))?;
        // vCluster writes `https://localhost:8443` unless told otherwise; always dial the
        // workspace endpoint (the chart's extraSANs cover its host name).
        let endpoint = self.endpoint(workspace);
        config.cluster_url = endpoint.parse().map_err(|e| {
            DriverError::Permanent(format!("invalid vCluster endpoint {endpoint:?}: {e}"))
        })?;
        if self.settings.request_timeout.is_some() {
            config.read_timeout = self.settings.request_timeout;
        }
        crate::install_crypto_provider();
        Client::try_from(config)
            .map_err(|e| DriverError::Permanent(format!("cannot build a vCluster client: {e}")))
    }
}
