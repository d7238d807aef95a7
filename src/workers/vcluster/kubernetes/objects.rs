//! The host and vCluster objects the driver applies: namespaces' quota, limits and network
//! policies, the `HelmChart` installing vCluster with its values, and project role bindings.
use super::{
    KubernetesDriver, DEFAULT_DENY_POLICY_NAME, FIELD_MANAGER, LABEL_MANAGED_BY, LABEL_ORG_ID,
    LABEL_PROJECT_ID, LABEL_WORKSPACE_ID, LIMIT_RANGE_NAME, QUOTA_NAME, VCLUSTER_API_POLICY_NAME,
};
use crate::workers::vcluster::driver::{PlanSpec, ProjectSpec, WorkspaceSpec, POD_SECURITY_LABELS};
use k8s_openapi::api::core::v1::{
    LimitRange, LimitRangeItem, LimitRangeSpec, Namespace, ResourceQuota, ResourceQuotaSpec,
};
use k8s_openapi::api::networking::v1::{
    IPBlock, NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::api::rbac::v1::{RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Port the vCluster API server (its proxy) listens on inside its pod; the Service maps 443 to it.
const VCLUSTER_API_PORT: i32 = 8443;
/// Default container requests/limits of the `LimitRange`s.
const DEFAULT_REQUEST_CPU: &str = "100m";
const DEFAULT_REQUEST_MEMORY: &str = "128Mi";
const DEFAULT_LIMIT_CPU: &str = "500m";
const DEFAULT_LIMIT_MEMORY: &str = "512Mi";
const RBAC_API_GROUP: &str = "rbac.authorization.k8s.io";
impl KubernetesDriver {
    /// The `HelmChart`s in the Helm namespace.
    pub(super) fn helm_chart_api(&self) -> Api<DynamicObject> {
        Api::namespaced_with(
            self.client.clone(),
            &self.settings.helm_namespace,
            &helm_chart_resource(),
        )
    }

    /// How problems and drift name the workspace's `HelmChart`.
    pub(super) fn helm_chart_label(&self, workspace: &WorkspaceSpec) -> String {
        format!(
            "HelmChart {}/{}",
            self.settings.helm_namespace, workspace.release
        )
    }

    /// The `HelmChart` installing the workspace's vCluster.
    pub(super) fn helm_chart(&self, workspace: &WorkspaceSpec) -> DynamicObject {
        let mut chart = DynamicObject::new(&workspace.release, &helm_chart_resource())
            .within(&self.settings.helm_namespace);
        chart.metadata.labels = Some(workspace_labels(workspace));
        chart.data = json!({ "spec": self.helm_chart_spec(workspace) });
        chart
    }

    /// The `spec` of the workspace's `HelmChart`, as applied and as drift compares it.
    pub(super) fn helm_chart_spec(&self, workspace: &WorkspaceSpec) -> Value {
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

    /// The chart values. JSON is valid YAML, so `valuesContent` is JSON text (pretty-printed for
    /// `kubectl get -o yaml` readers).
    #[allow(
        clippy::expect_used,
        reason = "a serde_json::Value has string keys only, so serializing it cannot fail"
    )]
    fn values_content(&self, workspace: &WorkspaceSpec) -> String {
        let values = vcluster_values(workspace, &self.endpoint(workspace));
        serde_json::to_string_pretty(&values).expect("a JSON value always serializes")
    }

    /// The host namespace's default-deny policy and the one letting clients reach the vCluster API.
    pub(super) fn workspace_network_policies(
        &self,
        workspace: &WorkspaceSpec,
    ) -> [NetworkPolicy; 2] {
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
}

/// K3s' `HelmChart` custom resource.
fn helm_chart_resource() -> ApiResource {
    ApiResource::from_gvk(&GroupVersionKind::gvk("helm.cattle.io", "v1", "HelmChart"))
}
/// The Secret vCluster writes its kubeconfig into.
pub(super) fn kubeconfig_secret_name(workspace: &WorkspaceSpec) -> String {
    format!("vc-{}", workspace.release)
}
/// Labels of a workspace's host objects.
pub(super) fn workspace_labels(workspace: &WorkspaceSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_ORG_ID.to_owned(), workspace.org_id.to_string()),
        (
            LABEL_WORKSPACE_ID.to_owned(),
            workspace.workspace_id.to_string(),
        ),
        (LABEL_MANAGED_BY.to_owned(), FIELD_MANAGER.to_owned()),
    ])
}
/// Labels of a project's objects inside the vCluster.
pub(super) fn project_labels(project: &ProjectSpec) -> BTreeMap<String, String> {
    let mut labels = workspace_labels(&project.workspace);
    labels.insert(LABEL_PROJECT_ID.to_owned(), project.project_id.to_string());
    labels
}
/// The labels of a managed namespace: the owner labels plus [`POD_SECURITY_LABELS`].
pub(super) fn namespace_labels(mut labels: BTreeMap<String, String>) -> BTreeMap<String, String> {
    for (key, value) in POD_SECURITY_LABELS {
        labels.insert(key.to_owned(), value.to_owned());
    }
    labels
}
/// A namespace Gantry manages (a workspace's on the host, a project's in its vCluster), under
/// Pod Security `restricted`.
pub(super) fn namespace(name: &str, labels: BTreeMap<String, String>) -> Namespace {
    Namespace {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(namespace_labels(labels)),
            ..Default::default()
        },
        ..Default::default()
    }
}
/// Metadata of a namespaced object Gantry manages.
pub(super) fn meta(name: &str, namespace: &str, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(namespace.to_owned()),
        labels: Some(labels),
        ..Default::default()
    }
}
/// The host namespace's quota: the plan's CPU and memory bound both requests and limits.
pub(super) fn workspace_quota(plan: &PlanSpec) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("limits.cpu".to_owned(), plan.cpu.clone()),
        ("requests.cpu".to_owned(), plan.cpu.clone()),
        ("limits.memory".to_owned(), plan.memory.clone()),
        ("requests.memory".to_owned(), plan.memory.clone()),
        ("requests.storage".to_owned(), plan.storage.clone()),
        ("pods".to_owned(), plan.pods.to_string()),
    ])
}
/// A `ResourceQuota` with these `hard` limits.
pub(super) fn resource_quota(
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
/// The `LimitRange` giving containers default requests and limits.
pub(super) fn limit_range(namespace: &str, labels: BTreeMap<String, String>) -> LimitRange {
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
/// A network policy port.
fn port(protocol: &str, number: i32) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(number)),
        protocol: Some(protocol.to_owned()),
        end_port: None,
    }
}
/// A TCP network policy port.
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
/// Ingress from every pod of the same namespace.
pub(super) fn same_namespace_ingress() -> NetworkPolicyIngressRule {
    NetworkPolicyIngressRule {
        from: Some(vec![same_namespace_peer()]),
        ports: None,
    }
}
/// Egress every default-deny policy allows: the same namespace, and DNS in `kube-system`.
pub(super) fn default_deny_egress() -> Vec<NetworkPolicyEgressRule> {
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
                "resources": { "requests": requests, "limits": limits },
                // The host namespace enforces Pod Security `restricted`, the vCluster's own
                // pod included: non-root, no privilege escalation, no capabilities, seccomp.
                "security": {
                    "podSecurityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 12345,
                        "runAsGroup": 12345,
                        "fsGroup": 12345,
                        "seccompProfile": { "type": "RuntimeDefault" }
                    },
                    "containerSecurityContext": {
                        "allowPrivilegeEscalation": false,
                        "runAsNonRoot": true,
                        "runAsUser": 12345,
                        "runAsGroup": 12345,
                        "capabilities": { "drop": ["ALL"] },
                        "seccompProfile": { "type": "RuntimeDefault" }
                    }
                }
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
pub(super) fn role_bindings(
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
#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn role_binding_names_are_valid_object_names() {
        assert_eq!(role_binding_name("admin"), "gantry-admin");
        assert_eq!(
            role_binding_name("system:Aggregate"),
            "gantry-system-aggregate"
        );
    }
}
