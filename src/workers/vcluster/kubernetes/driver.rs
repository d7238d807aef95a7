//! [`KubeDriver`] for the host cluster: applying and deleting workspaces and projects.
use super::objects::{
    default_deny_egress, limit_range, meta, namespace, project_labels, resource_quota,
    role_bindings, same_namespace_ingress, workspace_labels, workspace_quota,
};
use super::requests::{apply, delete_if_present, get_opt, kube_error};
use super::{KubernetesDriver, DEFAULT_DENY_POLICY_NAME, FIELD_MANAGER, LABEL_MANAGED_BY};
use crate::workers::vcluster::driver::{
    DriverError, KubeDriver, ProjectSpec, Readiness, WorkspaceSpec,
};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicySpec};
use k8s_openapi::api::rbac::v1::RoleBinding;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams};
use std::collections::{BTreeMap, BTreeSet};

#[async_trait::async_trait]
impl KubeDriver for KubernetesDriver {
    fn name(&self) -> &'static str {
        "kubernetes"
    }

    async fn apply_workspace(&self, workspace: &WorkspaceSpec) -> Result<(), DriverError> {
        let client = &self.client;
        let ns = &workspace.namespace;
        apply(
            &Api::<Namespace>::all(client.clone()),
            "Namespace",
            &namespace(ns, workspace_labels(workspace)),
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
        self.readiness_of(workspace).await
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
        self.find_drift(workspace).await
    }
    async fn apply_project(&self, project: &ProjectSpec) -> Result<(), DriverError> {
        refuse_system_namespace(&project.namespace)?;
        let client = self.vcluster_client(&project.workspace).await?;
        let ns = &project.namespace;
        let labels = project_labels(project);
        apply(
            &Api::<Namespace>::all(client.clone()),
            "Namespace",
            &namespace(ns, labels.clone()),
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
