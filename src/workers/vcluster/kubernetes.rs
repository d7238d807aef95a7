//! The `kubernetes` driver: kube-rs against a host K3s cluster. Workspaces become a host
//! namespace (quota, limits, default-deny network policy) plus a K3s `HelmChart` that installs
//! vCluster; projects become namespaces inside that vCluster. Every write is a server-side apply
//! with field manager `gantry`, so re-applying the same spec changes nothing.

use super::driver::{DriverError, KubeDriver, PlanSpec, ProjectSpec, Readiness, WorkspaceSpec};
use crate::domain::k8s::quantity::compare_quantities;
use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec, Secret,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::Status;
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
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

/// Port the vCluster API server (its proxy) listens on inside its pod; the Service maps 443 to it.
const VCLUSTER_API_PORT: i32 = 8443;
/// Default container requests/limits of the `LimitRange`s.
const DEFAULT_REQUEST_CPU: &str = "100m";
const DEFAULT_REQUEST_MEMORY: &str = "128Mi";
const DEFAULT_LIMIT_CPU: &str = "500m";
const DEFAULT_LIMIT_MEMORY: &str = "512Mi";
const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";

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

    fn helm_chart_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.settings.helm_namespace,
            &helm_chart_resource(),
        )
    }

    fn helm_chart_label(&self, workspace: &WorkspaceSpec) -> String {
        format!(
            "HelmChart {}/{}",
            self.settings.helm_namespace, workspace.release
        )
    }

    /// The `HelmChart` installing the workspace's vCluster.
    fn helm_chart(&self, workspace: &WorkspaceSpec) -> DynamicObject {
        let mut chart = DynamicObject::new(&workspace.release, &helm_chart_resource())
            .within(&self.settings.helm_namespace);
        chart.metadata.labels = Some(workspace_labels(workspace));
        chart.data = json!({ "spec": self.helm_chart_spec(workspace) });
        chart
    }

    fn helm_chart_spec(&self, workspace: &WorkspaceSpec) -> Value {
        json!({
            "chart": "vcluster",
            "repo": self.settings.chart_repo,
            "version": self.settings.chart_version,
            "targetNamespace": workspace.namespace,
            // Leave a failed install failed (condition `Failed`), so readiness reports it
            // instead of the controller uninstalling and reinstalling in a loop.
            "failurePolicy": "abort",
            "valuesContent": self.values_content(workspace),
        })
    }

    /// The chart values. There is no YAML serializer among our dependencies, and JSON is valid
    /// YAML, so `valuesContent` is JSON text (pretty-printed for `kubectl get -o yaml` readers).
    fn values_content(&self, workspace: &WorkspaceSpec) -> String {
        let values = vcluster_values(workspace, &self.endpoint(workspace));
        serde_json::to_string_pretty(&values).expect("a JSON value always serializes")
    }

    fn workspace_network_policies(&self, workspace: &WorkspaceSpec) -> [NetworkPolicy; 2] {
        let api_server_peers = (!self.settings.api_server_cidrs.is_empty()).then(|| {
            self.settings
                .api_server_cidrs
                .iter()
                .map(|cidr| NetworkPolicyPeer {
                    ip_block: Some(IPBlock {
                        cidr: cidr.clone(),
                        except: None,
                    }),
                    ..Default::default()
                })
                .collect()
        });
        let mut egress = default_deny_egress();
        egress.push(NetworkPolicyEgressRule {
            to: api_server_peers,
            ports: Some(vec![tcp_port(443), tcp_port(6443)]),
        });
        let default_deny = NetworkPolicy {
            metadata: meta(
                DEFAULT_DENY_POLICY_NAME,
                &workspace.namespace,
                workspace_labels(workspace),
            ),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
                ingress: Some(vec![same_namespace_ingress()]),
                egress: Some(egress),
            }),
        };
        let vcluster_api = NetworkPolicy {
            metadata: meta(
                VCLUSTER_API_POLICY_NAME,
                &workspace.namespace,
                workspace_labels(workspace),
            ),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(BTreeMap::from([
                        ("app".to_owned(), "vcluster".to_owned()),
                        ("release".to_owned(), workspace.release.clone()),
                    ])),
                    match_expressions: None,
                }),
                policy_types: Some(vec!["Ingress".to_owned()]),
                ingress: Some(vec![NetworkPolicyIngressRule {
                    from: None,
                    ports: Some(vec![tcp_port(VCLUSTER_API_PORT)]),
                }]),
                egress: None,
            }),
        };
        [default_deny, vcluster_api]
    }

    /// A client for the API server of the workspace's vCluster.
    async fn vcluster_client(&self, workspace: &WorkspaceSpec) -> Result<Client, DriverError> {
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

#[async_trait::async_trait]
impl KubeDriver for KubernetesDriver {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn apply_workspace(&self, workspace: &WorkspaceSpec) -> Result<(), DriverError> {
        let client = &self.client;
        let ns = &workspace.namespace;
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some(workspace_labels(workspace)),
                ..Default::default()
            },
            ..Default::default()
        };
        apply(
            &Api::<Namespace>::all(client.clone()),
            "Namespace",
            &namespace,
        )
        .await?;

        let quota = resource_quota(
            ns,
            workspace_labels(workspace),
            workspace_quota(&workspace.plan),
        );
        apply(
            &Api::<ResourceQuota>::namespaced(client.clone(), ns),
            "ResourceQuota",
            &quota,
        )
        .await?;
        let limits = limit_range(ns, workspace_labels(workspace));
        apply(
            &Api::<LimitRange>::namespaced(client.clone(), ns),
            "LimitRange",
            &limits,
        )
        .await?;
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        for policy in self.workspace_network_policies(workspace) {
            apply(&policies, "NetworkPolicy", &policy).await?;
        }
        apply(
            &self.helm_chart_api(),
            "HelmChart",
            &self.helm_chart(workspace),
        )
        .await?;
        Ok(())
    }

    async fn workspace_readiness(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Readiness, DriverError> {
        let ns = &workspace.namespace;
        let chart_label = self.helm_chart_label(workspace);
        let Some(chart) = get_opt(&self.helm_chart_api(), &workspace.release, &chart_label).await?
        else {
            return Ok(pending(format!("waiting for {chart_label}")));
        };
        if let Some(reason) = helm_chart_failure(&chart) {
            return Ok(Readiness::Failed {
                reason: format!("vCluster install failed: {reason}"),
            });
        }

        let sts_label = format!("StatefulSet {ns}/{}", workspace.release);
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        let Some(sts) = get_opt(&statefulsets, &workspace.release, &sts_label).await? else {
            return Ok(pending(format!("waiting for the vCluster {sts_label}")));
        };
        let ready = sts
            .status
            .as_ref()
            .and_then(|s| s.ready_replicas)
            .unwrap_or(0);
        if ready < 1 {
            let wanted = sts.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            return Ok(pending(format!(
                "waiting for the vCluster {sts_label} to become ready ({ready}/{wanted})"
            )));
        }

        let secret_name = kubeconfig_secret_name(workspace);
        let secret_label = format!("Secret {ns}/{secret_name}");
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), ns);
        let Some(secret) = get_opt(&secrets, &secret_name, &secret_label).await? else {
            return Ok(pending(format!(
                "waiting for the vCluster kubeconfig {secret_label}"
            )));
        };
        let Some(ca_data) = ca_data(&secret) else {
            return Ok(pending(format!(
                "waiting for the CA in the vCluster kubeconfig {secret_label}"
            )));
        };
        Ok(Readiness::Ready {
            endpoint: self.endpoint(workspace),
            ca_data,
        })
    }

    async fn delete_workspace(&self, workspace: &WorkspaceSpec) -> Result<bool, DriverError> {
        let ns = &workspace.namespace;
        let chart_label = self.helm_chart_label(workspace);
        let charts = self.helm_chart_api();
        delete_if_present(&charts, &workspace.release, &chart_label).await?;
        // helm-controller keeps the HelmChart (finalizer) until its uninstall job has run.
        if get_opt(&charts, &workspace.release, &chart_label)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let sts_label = format!("StatefulSet {ns}/{}", workspace.release);
        let statefulsets: Api<StatefulSet> = Api::namespaced(self.client.clone(), ns);
        if get_opt(&statefulsets, &workspace.release, &sts_label)
            .await?
            .is_some()
        {
            return Ok(false);
        }
        let ns_label = format!("Namespace {ns}");
        let namespaces: Api<Namespace> = Api::all(self.client.clone());
        delete_if_present(&namespaces, ns, &ns_label).await?;
        // A namespace terminates asynchronously: done only once it is gone.
        Ok(get_opt(&namespaces, ns, &ns_label).await?.is_none())
    }

    async fn drift(&self, workspace: &WorkspaceSpec) -> Result<Vec<String>, DriverError> {
        let ns = &workspace.namespace;
        let client = &self.client;
        let mut drift = Vec::new();

        let ns_label = format!("Namespace {ns}");
        match get_opt(&Api::<Namespace>::all(client.clone()), ns, &ns_label).await? {
            None => drift.push(format!("{ns_label} missing")),
            Some(namespace) => label_drift(
                &ns_label,
                &namespace.metadata,
                &workspace_labels(workspace),
                &mut drift,
            ),
        }

        let quota_label = format!("ResourceQuota {QUOTA_NAME}");
        let quotas: Api<ResourceQuota> = Api::namespaced(client.clone(), ns);
        match get_opt(&quotas, QUOTA_NAME, &quota_label).await? {
            None => drift.push(format!("{quota_label} missing")),
            Some(quota) => {
                let actual = quota.spec.and_then(|s| s.hard).unwrap_or_default();
                for (resource, expected) in workspace_quota(&workspace.plan) {
                    match actual.get(&resource) {
                        None => drift.push(format!(
                            "{quota_label}: {resource} missing (expected {expected})"
                        )),
                        Some(Quantity(actual)) if !quantities_equal(actual, &expected) => drift
                            .push(format!(
                                "{quota_label}: {resource} is {actual}, expected {expected}"
                            )),
                        Some(_) => {}
                    }
                }
            }
        }

        let limit_label = format!("LimitRange {LIMIT_RANGE_NAME}");
        let limit_ranges: Api<LimitRange> = Api::namespaced(client.clone(), ns);
        if get_opt(&limit_ranges, LIMIT_RANGE_NAME, &limit_label)
            .await?
            .is_none()
        {
            drift.push(format!("{limit_label} missing"));
        }
        let policies: Api<NetworkPolicy> = Api::namespaced(client.clone(), ns);
        for name in [DEFAULT_DENY_POLICY_NAME, VCLUSTER_API_POLICY_NAME] {
            let label = format!("NetworkPolicy {name}");
            if get_opt(&policies, name, &label).await?.is_none() {
                drift.push(format!("{label} missing"));
            }
        }

        let chart_label = self.helm_chart_label(workspace);
        match get_opt(&self.helm_chart_api(), &workspace.release, &chart_label).await? {
            None => drift.push(format!("{chart_label} missing")),
            Some(chart) => {
                let expected = self.helm_chart_spec(workspace);
                for field in [
                    "chart",
                    "repo",
                    "version",
                    "targetNamespace",
                    "valuesContent",
                ] {
                    let actual = chart.data.pointer(&format!("/spec/{field}"));
                    if actual != expected.get(field) {
                        drift.push(format!(
                            "{chart_label}: spec.{field} differs from what Gantry applied"
                        ));
                    }
                }
            }
        }
        Ok(drift)
    }

    async fn apply_project(&self, project: &ProjectSpec) -> Result<(), DriverError> {
        refuse_system_namespace(&project.namespace)?;
        let client = self.vcluster_client(&project.workspace).await?;
        let ns = &project.namespace;
        let labels = project_labels(project);
        let namespace = Namespace {
            metadata: ObjectMeta {
                name: Some(ns.clone()),
                labels: Some(labels.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        apply(
            &Api::<Namespace>::all(client.clone()),
            "Namespace",
            &namespace,
        )
        .await?;
        let hard = BTreeMap::from([
            ("limits.cpu".to_owned(), project.cpu.clone()),
            ("limits.memory".to_owned(), project.memory.clone()),
        ]);
        apply(
            &Api::<ResourceQuota>::namespaced(client.clone(), ns),
            "ResourceQuota",
            &resource_quota(ns, labels.clone(), hard),
        )
        .await?;
        // A `limits.*` quota rejects pods without limits: give containers defaults.
        apply(
            &Api::<LimitRange>::namespaced(client.clone(), ns),
            "LimitRange",
            &limit_range(ns, labels.clone()),
        )
        .await?;
        let policy = NetworkPolicy {
            metadata: meta(DEFAULT_DENY_POLICY_NAME, ns, labels.clone()),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
                ingress: Some(vec![same_namespace_ingress()]),
                egress: Some(default_deny_egress()),
            }),
        };
        apply(
            &Api::<NetworkPolicy>::namespaced(client.clone(), ns),
            "NetworkPolicy",
            &policy,
        )
        .await?;

        let bindings: Api<RoleBinding> = Api::namespaced(client.clone(), ns);
        let desired = role_bindings(ns, &labels, &project.bindings);
        for binding in &desired {
            apply(&bindings, "RoleBinding", binding).await?;
        }
        // Bindings Gantry made earlier for roles no longer granted are removed.
        let wanted: BTreeSet<&str> = desired
            .iter()
            .filter_map(|b| b.metadata.name.as_deref())
            .collect();
        let selector = format!("{LABEL_MANAGED_BY}={FIELD_MANAGER}");
        let existing = bindings
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| kube_error(&format!("list RoleBindings in {ns}"), e))?;
        for stale in existing.items {
            let Some(name) = stale.metadata.name.as_deref() else {
                continue;
            };
            if !wanted.contains(name) {
                delete_if_present(&bindings, name, &format!("RoleBinding {ns}/{name}")).await?;
            }
        }
        Ok(())
    }

    async fn delete_project(&self, project: &ProjectSpec) -> Result<(), DriverError> {
        refuse_system_namespace(&project.namespace)?;
        let client = self.vcluster_client(&project.workspace).await?;
        let ns = &project.namespace;
        delete_if_present(
            &Api::<Namespace>::all(client),
            ns,
            &format!("Namespace {ns}"),
        )
        .await
    }
}

/// Namespaces of the vCluster itself, which no project may take over (or delete).
fn refuse_system_namespace(namespace: &str) -> Result<(), DriverError> {
    if namespace == "default" || namespace.starts_with("kube-") {
        return Err(DriverError::Permanent(format!(
            "namespace {namespace} belongs to the vCluster itself and cannot be a project"
        )));
    }
    Ok(())
}

/// K3s' `HelmChart` custom resource.
fn helm_chart_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart"))
}

/// The Secret vCluster writes its kubeconfig into.
fn kubeconfig_secret_name(workspace: &WorkspaceSpec) -> String {
    format!("vc-{}", workspace.release)
}

fn workspace_labels(workspace: &WorkspaceSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ORG_ID.to_owned(), workspace.org_id.to_string()),
        (
            LABEL_WORKSPACE_ID.to_owned(),
            workspace.workspace_id.to_string(),
        ),
        (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
    ])
}

fn project_labels(project: &ProjectSpec) -> BTreeMap<String, String> {
    let mut labels = workspace_labels(&project.workspace);
    labels.insert(LABEL_PROJECT_ID.to_owned(), project.project_id.to_string());
    labels
}

fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..Default::default()
    }
}

/// The host namespace's quota: the plan's CPU and memory bound both requests and limits.
fn workspace_quota(plan: &PlanSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("limits.cpu".to_owned(), plan.cpu.clone()),
        ("requests.cpu".to_owned(), plan.cpu.clone()),
        ("limits.memory".to_owned(), plan.memory.clone()),
        ("requests.memory".to_owned(), plan.memory.clone()),
        ("requests.storage".to_owned(), plan.storage.clone()),
        ("pods".to_owned(), plan.pods.to_string()),
    ])
}

fn resource_quota(
    namespace: &str,
    labels: BTreeMap<String, String>,
    hard: BTreeMap<String, String>,
) -> ResourceQuota {
    ResourceQuota {
        metadata: meta(QUOTA_NAME, namespace, labels),
        spec: Some(ResourceQuotaSpec {
            hard: Some(hard.into_iter().map(|(k, v)| (k, Quantity(v))).collect()),
            ..Default::default()
        }),
        status: None,
    }
}

fn limit_range(namespace: &str, labels: BTreeMap<String, String>) -> LimitRange {
    let quantities = |cpu: &str, memory: &str| {
        Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu.to_owned())),
            ("memory".to_owned(), Quantity(memory.to_owned())),
        ]))
    };
    LimitRange {
        metadata: meta(LIMIT_RANGE_NAME, namespace, labels),
        spec: Some(LimitRangeSpec {
            limits: vec![LimitRangeItem {
                type_: "Container".to_owned(),
                default: quantities(DEFAULT_LIMIT_CPU, DEFAULT_LIMIT_MEMORY),
                default_request: quantities(DEFAULT_REQUEST_CPU, DEFAULT_REQUEST_MEMORY),
                ..Default::default()
            }],
        }),
    }
}

fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    }
}

fn tcp_port(number: i32) -> NetworkPolicyPort {
    port("TCP", number)
}

/// Every pod of the same namespace (an empty pod selector without a namespace selector).
fn same_namespace_peer() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..Default::default()
    }
}

fn same_namespace_ingress() -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(vec![same_namespace_peer()]),
        ports: None,
    }
}

/// Egress every default-deny policy allows: the same namespace, and DNS in `kube-system`.
fn default_deny_egress() -> Vec<NetworkPolicyEgressRule> {
    let kube_dns = NetworkPolicyPeer {
        namespace_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                "kube-system".to_owned(),
            )])),
            match_expressions: None,
        }),
        pod_selector: Some(LabelSelector {
            match_labels: Some(BTreeMap::from([(
                "k8s-app".to_owned(),
                "kube-dns".to_owned(),
            )])),
            match_expressions: None,
        }),
        ip_block: None,
    };
    vec![
        NetworkPolicyEgressRule {
            to: Some(vec![same_namespace_peer()]),
            ports: None,
        },
        NetworkPolicyEgressRule {
            to: Some(vec![kube_dns]),
            ports: Some(vec![port("UDP", 53), port("TCP", 53)]),
        },
    ]
}

/// The vCluster chart values (vCluster 0.20 `vcluster.yaml` layout) for a workspace's plan.
fn vcluster_values(workspace: &WorkspaceSpec, endpoint: &str) -> Value {
    let dedicated = workspace.plan.dedicated_pool.is_some();
    let (requests, limits) = if dedicated {
        (
            json!({ "cpu": "500m", "memory": "1Gi" }),
            json!({ "cpu": "2", "memory": "4Gi" }),
        )
    } else {
        (
            json!({ "cpu": "100m", "memory": "256Mi" }),
            json!({ "cpu": "1", "memory": "1Gi" }),
        )
    };
    let extra_sans: Vec<String> = reqwest::Url::parse(endpoint)
        .ok()
        .and_then(|url| url.host_str().map(str::to_owned))
        .into_iter()
        .collect();
    let mut values = json!({
        "controlPlane": {
            "distro": {
                "k3s": {
                    "enabled": true,
                    "resources": {
                        "requests": { "cpu": "40m", "memory": "64Mi" },
                        "limits": { "cpu": "100m", "memory": "256Mi" }
                    }
                }
            },
            "statefulSet": {
                "resources": { "requests": requests, "limits": limits }
            },
            "proxy": { "extraSANs": extra_sans }
        },
        "exportKubeConfig": { "server": endpoint },
        "sync": {
            // Projects' NetworkPolicies only take effect on the host if they are synced.
            "toHost": { "networkPolicies": { "enabled": true } }
        }
    });
    if let Some((key, value)) = workspace
        .plan
        .dedicated_pool
        .as_deref()
        .and_then(|p| p.split_once('='))
    {
        values["controlPlane"]["statefulSet"]["scheduling"] = json!({
            "nodeSelector": { key: value },
            "tolerations": [
                { "key": key, "operator": "Equal", "value": value, "effect": "NoSchedule" }
            ]
        });
        // Workloads inside the vCluster land on the same pool.
        values["sync"]["toHost"]["pods"] =
            json!({ "enforceTolerations": [format!("{key}={value}:NoSchedule")] });
        values["sync"]["fromHost"] =
            json!({ "nodes": { "enabled": true, "selector": { "labels": { key: value } } } });
    }
    values
}

/// One `RoleBinding` per cluster role (`gantry-<role>`), with every group granted that role as
/// a subject, so two groups with the same role cannot fight over one object name.
fn role_bindings(
    namespace: &str,
    labels: &BTreeMap<String, String>,
    bindings: &[(String, String)],
) -> Vec<RoleBinding> {
    let mut by_role: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (group, role) in bindings {
        by_role
            .entry(role.as_str())
            .or_default()
            .insert(group.as_str());
    }
    by_role
        .into_iter()
        .map(|(role, groups)| RoleBinding {
            metadata: meta(&role_binding_name(role), namespace, labels.clone()),
            role_ref: RoleRef {
                api_group: RBAC_API_GROUP.to_owned(),
                kind: "ClusterRole".to_owned(),
                name: role.to_owned(),
            },
            subjects: Some(
                groups
                    .into_iter()
                    .map(|group| Subject {
                        api_group: Some(RBAC_API_GROUP.to_owned()),
                        kind: "Group".to_owned(),
                        name: group.to_owned(),
                        namespace: None,
                    })
                    .collect(),
            ),
        })
        .collect()
}

/// `gantry-<role>`, with characters an object name cannot hold (`system:foo`) replaced.
fn role_binding_name(role: &str) -> String {
    let role: String = role
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("gantry-{role}")
}

fn pending(step: String) -> Readiness {
    Readiness::Pending { step }
}

/// The reason of a `Failed=True` condition of a K3s `HelmChart`, if it has one.
fn helm_chart_failure(chart: &DynamicObject) -> Option<String> {
    let conditions = chart.data.pointer("/status/conditions")?.as_array()?;
    let failed = conditions.iter().find(|c| {
        c.get("type").and_then(Value::as_str) == Some("Failed")
            && c.get("status").and_then(Value::as_str) == Some("True")
    })?;
    let text = |key: &str| {
        failed
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    let mut reason = match (text("reason"), text("message")) {
        (Some(reason), Some(message)) => format!("{reason}: {message}"),
        (Some(one), None) | (None, Some(one)) => one.to_owned(),
        (None, None) => "the Helm job failed".to_owned(),
    };
    if let Some(job) = chart
        .data
        .pointer("/status/jobName")
        .and_then(Value::as_str)
    {
        reason.push_str(&format!(" (job {job})"));
    }
    Some(reason)
}

fn secret_data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()?
        .get(key)
        .map(|b| b.0.as_slice())
        .filter(|b| !b.is_empty())
}

/// The vCluster API server's CA, base64: the Secret's `certificate-authority` (PEM), else the
/// `certificate-authority-data` of the kubeconfig in `config`.
fn ca_data(secret: &Secret) -> Option<String> {
    if let Some(pem) = secret_data(secret, "certificate-authority") {
        return Some(base64::engine::general_purpose::STANDARD.encode(pem));
    }
    let text = std::str::from_utf8(secret_data(secret, "config")?).ok()?;
    let kubeconfig = Kubeconfig::from_yaml(text).ok()?;
    kubeconfig
        .clusters
        .into_iter()
        .find_map(|c| c.cluster?.certificate_authority_data)
        .filter(|s| !s.is_empty())
}

fn label_drift(
    what: &str,
    metadata: &ObjectMeta,
    expected: &BTreeMap<String, String>,
    drift: &mut Vec<String>,
) {
    for (key, value) in expected {
        match metadata.labels.as_ref().and_then(|l| l.get(key)) {
            None => drift.push(format!("{what}: label {key} missing (expected {value})")),
            Some(actual) if actual != value => {
                drift.push(format!("{what}: label {key} is {actual}, expected {value}"))
            }
            Some(_) => {}
        }
    }
}

/// Whether two Kubernetes quantities are the same amount (`1` = `1000m`, `1Gi` = `1024Mi`);
/// the API server may canonicalize what it was given. Compared exactly by the domain's one
/// quantity parser; unparseable ones compare as text.
fn quantities_equal(a: &str, b: &str) -> bool {
    let (a, b) = (a.trim(), b.trim());
    match compare_quantities(a, b) {
        Some(order) => order.is_eq(),
        None => a == b,
    }
}

/// Server-side apply (field manager `gantry`, forced: Gantry owns these fields) of a `kind`.
async fn apply<K>(api: &Api<K>, kind: &str, object: &K) -> Result<K, DriverError>
where
    K: Resource + Clone + DeserializeOwned + Serialize + Debug,
{
    let meta = object.meta();
    let Some(name) = meta.name.as_deref() else {
        return Err(DriverError::Permanent(format!("a {kind} without a name")));
    };
    let what = match meta.namespace.as_deref() {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    };
    let params = PatchParams::apply(FIELD_MANAGER).force();
    api.patch(name, &params, &Patch::Apply(object))
        .await
        .map_err(|e| kube_error(&format!("apply {what}"), e))
}

/// A GET where an absent object is `None`. A 404 naming no object means the API server does
/// not serve the resource at all (e.g. the HelmChart CRD is missing): that is an error.
async fn get_opt<K>(api: &Api<K>, name: &str, what: &str) -> Result<Option<K>, DriverError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.get(name).await {
        Ok(object) => Ok(Some(object)),
        Err(kube::Error::Api(status)) if is_object_not_found(&status) => Ok(None),
        Err(e) => Err(kube_error(&format!("get {what}"), e)),
    }
}

/// DELETE where an absent object is success.
async fn delete_if_present<K>(api: &Api<K>, name: &str, what: &str) -> Result<(), DriverError>
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(e) => Err(kube_error(&format!("delete {what}"), e)),
    }
}

fn is_object_not_found(status: &Status) -> bool {
    status.code == 404 && status.details.as_ref().is_some_and(|d| !d.name.is_empty())
}

/// Maps a kube error: network trouble, 5xx, conflicts, throttling and writes into a namespace
/// that is still terminating are worth retrying; everything else (401, 403, 404 of a resource
/// type, 400/422 invalid objects, bad configuration) will fail the same way again.
fn kube_error(action: &str, error: kube::Error) -> DriverError {
    match &error {
        kube::Error::Api(status) => {
            let text = if status.message.is_empty() {
                status.reason.as_str()
            } else {
                status.message.as_str()
            };
            let message = format!("{action}: {} {text}", status.code);
            let transient = matches!(status.code, 408 | 409 | 425 | 429 | 500..=599)
                || (status.code == 403 && status.message.contains("being terminated"));
            if transient {
                DriverError::Transient(message)
            } else {
                DriverError::Permanent(message)
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::ReadEvents(_) => {
            DriverError::Transient(format!("{action}: {error}"))
        }
        _ => DriverError::Permanent(format!("{action}: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_compare_by_amount() {
        assert!(quantities_equal("1", "1000m"));
        assert!(quantities_equal("8Gi", "8192Mi"));
        assert!(quantities_equal("0.5", "500m"));
        assert!(quantities_equal("1e3", "1k"));
        assert!(!quantities_equal("4", "8"));
        assert!(!quantities_equal("8Gi", "8G"));
        assert!(quantities_equal("weird", "weird"));
        assert!(quantities_equal(" 2Gi", "2048Mi "));
        // Exact, where floating point would round both to the same number.
        assert!(!quantities_equal("1Ei", "1152921504606846977"));
    }

    #[test]
    fn role_binding_names_are_valid_object_names() {
        assert_eq!(role_binding_name("admin"), "gantry-admin");
        assert_eq!(
            role_binding_name("system:Aggregate"),
            "gantry-system-aggregate"
        );
    }
}
