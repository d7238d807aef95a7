//! [`WorkspaceObjects`] for real vClusters: the kinds a backup reads, listed and applied as
//! dynamic objects through the vCluster's API (server-side apply, field manager `gantry`).
use super::requests::{get_opt, kube_error};
use super::{KubernetesDriver, FIELD_MANAGER};
use crate::workers::vcluster::driver::{
    Applied, DriverError, ExecOutcome, ExecRequest, KubeObject, WorkspaceObjects, WorkspaceSpec,
};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};

/// (group, version, kind, plural, namespaced) of every kind a backup covers, in dependency
/// order (namespaces and CRDs first, workloads last).
pub const BACKED_UP_KINDS: [(&str, &str, &str, &str, bool); 16] = [
    ("", "v1", "Namespace", "namespaces", false),
    (
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
        false,
    ),
    ("", "v1", "ServiceAccount", "serviceaccounts", true),
    ("", "v1", "ConfigMap", "configmaps", true),
    ("", "v1", "Secret", "secrets", true),
    (
        "",
        "v1",
        "PersistentVolumeClaim",
        "persistentvolumeclaims",
        true,
    ),
    ("rbac.authorization.k8s.io", "v1", "Role", "roles", true),
    (
        "rbac.authorization.k8s.io",
        "v1",
        "RoleBinding",
        "rolebindings",
        true,
    ),
    (
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
    ),
    ("", "v1", "Service", "services", true),
    ("apps", "v1", "Deployment", "deployments", true),
    ("apps", "v1", "StatefulSet", "statefulsets", true),
    ("apps", "v1", "DaemonSet", "daemonsets", true),
    ("batch", "v1", "CronJob", "cronjobs", true),
    ("networking.k8s.io", "v1", "Ingress", "ingresses", true),
    ("", "v1", "Pod", "pods", true),
];

fn resource_of(kind: &str) -> Option<(ApiResource, bool)> {
    BACKED_UP_KINDS
        .iter()
        .find(|(_, _, k, _, _)| *k == kind)
        .map(|(group, version, kind, plural, namespaced)| {
            (
                ApiResource::from_gvk_with_plural(
                    &GroupVersionKind::gvk(group, version, kind),
                    plural,
                ),
                *namespaced,
            )
        })
}

#[async_trait::async_trait]
impl WorkspaceObjects for KubernetesDriver {
    async fn list_objects(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Vec<KubeObject>, DriverError> {
        let client = self.vcluster_client(workspace).await?;
        let mut objects = Vec::new();
        for (_, _, kind, _, _) in BACKED_UP_KINDS {
            let Some((resource, _)) = resource_of(kind) else {
                continue;
            };
            let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
            let list = match api.list(&ListParams::default()).await {
                Ok(list) => list,
                // A kind the API server does not serve (e.g. no CRDs installed) has nothing.
                Err(kube::Error::Api(status)) if status.code == 404 => continue,
                Err(e) => return Err(kube_error(&format!("list {kind}"), e)),
            };
            for item in list.items {
                let mut value = serde_json::to_value(&item)
                    .map_err(|e| DriverError::Permanent(format!("serializing a {kind}: {e}")))?;
                value["apiVersion"] = serde_json::json!(resource.api_version);
                value["kind"] = serde_json::json!(kind);
                objects.push(value);
            }
        }
        Ok(objects)
    }

    async fn object_exists(
        &self,
        workspace: &WorkspaceSpec,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, DriverError> {
        let (resource, namespaced) = resource_of(kind)
            .ok_or_else(|| DriverError::Permanent(format!("kind {kind} is not backed up")))?;
        let client = self.vcluster_client(workspace).await?;
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client, namespace, &resource)
        } else {
            Api::all_with(client, &resource)
        };
        Ok(get_opt(&api, name, &format!("{kind} {namespace}/{name}"))
            .await?
            .is_some())
    }

    async fn apply_object(
        &self,
        workspace: &WorkspaceSpec,
        object: &KubeObject,
    ) -> Result<Applied, DriverError> {
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let namespace = object["metadata"]["namespace"].as_str().unwrap_or_default();
        let existed = self.object_exists(workspace, kind, namespace, name).await?;
        let (resource, namespaced) = resource_of(kind)
            .ok_or_else(|| DriverError::Permanent(format!("kind {kind} is not backed up")))?;
        let client = self.vcluster_client(workspace).await?;
        let api: Api<DynamicObject> = if namespaced {
            Api::namespaced_with(client, namespace, &resource)
        } else {
            Api::all_with(client, &resource)
        };
        let params = PatchParams::apply(FIELD_MANAGER).force();
        api.patch(name, &params, &Patch::Apply(object))
            .await
            .map_err(|e| kube_error(&format!("apply {kind} {namespace}/{name}"), e))?;
        Ok(if existed {
            Applied::Updated
        } else {
            Applied::Created
        })
    }

    async fn exec(
        &self,
        _workspace: &WorkspaceSpec,
        request: &ExecRequest,
    ) -> Result<ExecOutcome, DriverError> {
        // kube's exec needs its `ws` feature (websockets), which this build does not enable.
        Ok(ExecOutcome::Failed(format!(
            "hooks are not supported by the kubernetes driver yet (pods {} in {})",
            request.pod_selector, request.namespace
        )))
    }
}
