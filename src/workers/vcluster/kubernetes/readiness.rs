//! How far a workspace's vCluster is, read from the host cluster.
use super::objects::kubeconfig_secret_name;
use super::requests::get_opt;
use super::KubernetesDriver;
use crate::workers::vcluster::driver::{DriverError, Readiness, WorkspaceSpec};
use base64::Engine as _;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DynamicObject};
use kube::config::Kubeconfig;
use serde_json::Value;

impl KubernetesDriver {
    /// How far the workspace's vCluster is: its `HelmChart`, StatefulSet and kubeconfig Secret.
    pub(super) async fn readiness_of(
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
}

/// Not ready yet, waiting for `step`.
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
/// A non-empty value of a Secret.
pub(super) fn secret_data<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
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
