//! Drift: what differs between a workspace's host objects and what Gantry applied.
use super::objects::{namespace_labels, workspace_labels, workspace_quota};
use super::requests::get_opt;
use super::{
    KubernetesDriver, DEFAULT_DENY_POLICY_NAME, LIMIT_RANGE_NAME, QUOTA_NAME,
    VCLUSTER_API_POLICY_NAME,
};
use crate::domain::k8s::quantity::compare_quantities;
use crate::workers::vcluster::driver::{DriverError, WorkspaceSpec};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::Api;
use std::collections::BTreeMap;

impl KubernetesDriver {
    /// What differs between the host objects of a workspace and what Gantry applied.
    pub(super) async fn find_drift(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Vec<String>, DriverError> {
        let ns = &workspace.namespace;
        let client = &self.client;
        let mut drift = Vec::new();

        let ns_label = format!("Namespace {ns}");
        match get_opt(&Api::<Namespace>::all(client.clone()), ns, &ns_label).await? {
            None => drift.push(format!("{ns_label} missing")),
            Some(namespace) => label_drift(
                &ns_label,
                &namespace.metadata,
                &namespace_labels(workspace_labels(workspace)),
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
}

/// Expected labels missing or different on an object.
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
}
