//! The `kubernetes` vCluster driver against an in-process fake Kubernetes API server: what it
//! applies for a workspace and a project, that re-applying changes nothing, how it reads
//! readiness, tears down in order, reports drift, and classifies API errors.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "common/fake_kube.rs"]
mod fake_kube;

use base64::Engine as _;
use fake_kube::{kubeconfig, FakeKube, Fault};
use gantry::workers::vcluster::driver::{
    DriverError, KubeDriver, PlanSpec, ProjectSpec, Readiness, WorkspaceSpec,
};
use gantry::workers::vcluster::kubernetes::{KubeSettings, KubernetesDriver, VClusterAccess};
use serde_json::{json, Value};
use uuid::Uuid;

const HELM_NAMESPACE: &str = "kube-system";

/// A CA certificate (self-signed, test only) as vCluster would write it.
const CA_PEM: &str = "-----BEGIN CERTIFICATE-----
MIIBjjCCATOgAwIBAgIUNpo7m54p2zYMdH3xYzKxtUzfG7kwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQdmNsdXN0ZXItdGVzdC1jYTAgFw0yNjExMjkwMTM5MjlaGA8y
MTI2MTEwNTAxMzkyOVowGzEZMBcGA1UEAwwQdmNsdXN0ZXItdGVzdC1jYTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABN/KsNAMm1SfniV0MJ/TENKjLMbVBFqxhHG/
ocB6yTF6uFhp46sDrvbKsE5cVjIQ3mDJxr/WMoCpSZ3FBJw3QWejUzBRMB0GA1Ud
DgQWBBSLd3AWENH2X/iUObtPx9653lVWITAfBgNVHSMEGDAWgBSLd3AWENH2X/iU
ObtPx9653lVWITAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0kAMEYCIQCp
5b7ak1P6AvzYukp6inUJe0tJM2CF4LJR3bAXTBjPnQIhAKmyLe+VTn3C5EpO4XUN
imNBNTvb0kZM4td5TNnzzM+7
-----END CERTIFICATE-----
";

fn shared_plan() -> PlanSpec {
    PlanSpec {
        name: "shared".into(),
        cpu: "4".into(),
        memory: "8Gi".into(),
        pods: 50,
        storage: "20Gi".into(),
        dedicated_pool: None,
    }
}

fn dedicated_plan() -> PlanSpec {
    PlanSpec {
        name: "dedicated".into(),
        cpu: "16".into(),
        memory: "64Gi".into(),
        pods: 200,
        storage: "200Gi".into(),
        dedicated_pool: Some("gantry.dev/pool=dedicated".into()),
    }
}

fn workspace(plan: PlanSpec) -> WorkspaceSpec {
    let workspace_id = Uuid::new_v4();
    let namespace = WorkspaceSpec::namespace_for(workspace_id);
    WorkspaceSpec {
        workspace_id,
        org_id: Uuid::new_v4(),
        name: "dev".into(),
        // As the provisioner names releases.
        release: format!("vc-{}", &namespace["gantry-ws-".len()..]),
        namespace,
        plan,
    }
}

fn project(workspace: &WorkspaceSpec, bindings: &[(&str, &str)]) -> ProjectSpec {
    ProjectSpec {
        workspace: workspace.clone(),
        project_id: Uuid::new_v4(),
        namespace: "shop".into(),
        cpu: "2".into(),
        memory: "4Gi".into(),
        bindings: bindings
            .iter()
            .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
            .collect(),
    }
}

fn settings() -> KubeSettings {
    KubeSettings {
        vcluster_client: VClusterAccess::SameAsHost,
        ..KubeSettings::default()
    }
}

fn driver(fake: &FakeKube) -> KubernetesDriver {
    KubernetesDriver::new(fake.client(), settings())
}

fn str_at<'a>(value: &'a Value, pointer: &str) -> &'a str {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {pointer} in {value:#}"))
}

fn chart_values(fake: &FakeKube, ws: &WorkspaceSpec) -> Value {
    let chart = fake
        .get("helmcharts", HELM_NAMESPACE, &ws.release)
        .expect("HelmChart applied");
    serde_json::from_str(str_at(&chart, "/spec/valuesContent"))
        .expect("valuesContent is JSON (valid YAML)")
}

fn assert_permanent(result: Result<impl std::fmt::Debug, DriverError>, needle: &str) {
    match result {
        Err(DriverError::Permanent(message)) => {
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            )
        }
        other => panic!("expected a permanent error mentioning {needle:?}, got {other:?}"),
    }
}

fn assert_transient(result: Result<impl std::fmt::Debug, DriverError>, needle: &str) {
    match result {
        Err(DriverError::Transient(message)) => {
            assert!(
                message.contains(needle),
                "{message:?} should mention {needle:?}"
            )
        }
        other => panic!("expected a transient error mentioning {needle:?}, got {other:?}"),
    }
}

#[tokio::test]
async fn apply_workspace_creates_the_labelled_host_objects() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    assert_eq!(driver.name(), "kubernetes");
    driver.apply_workspace(&ws).await.expect("apply");

    let ns = fake
        .get("namespaces", "", &ws.namespace)
        .expect("namespace");
    assert_eq!(
        str_at(&ns, "/metadata/labels/gantry.dev~1org-id"),
        ws.org_id.to_string()
    );
    assert_eq!(
        str_at(&ns, "/metadata/labels/gantry.dev~1workspace-id"),
        ws.workspace_id.to_string()
    );
    assert_eq!(
        str_at(&ns, "/metadata/labels/app.kubernetes.io~1managed-by"),
        "gantry"
    );
    assert_eq!(str_at(&ns, "/metadata/managedFields/0/manager"), "gantry");

    let quota = fake
        .get("resourcequotas", &ws.namespace, "gantry-quota")
        .expect("quota");
    assert_eq!(
        quota["spec"]["hard"],
        json!({
            "limits.cpu": "4", "requests.cpu": "4",
            "limits.memory": "8Gi", "requests.memory": "8Gi",
            "requests.storage": "20Gi", "pods": "50"
        })
    );
    let limits = fake
        .get("limitranges", &ws.namespace, "gantry-limits")
        .expect("limit range");
    assert_eq!(
        limits["spec"]["limits"],
        json!([{
            "type": "Container",
            "default": { "cpu": "500m", "memory": "512Mi" },
            "defaultRequest": { "cpu": "100m", "memory": "128Mi" }
        }])
    );

    let deny = fake
        .get("networkpolicies", &ws.namespace, "gantry-default-deny")
        .expect("policy");
    assert_eq!(deny["spec"]["podSelector"], json!({}));
    assert_eq!(deny["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        deny["spec"]["ingress"],
        json!([{ "from": [{ "podSelector": {} }] }])
    );
    assert_eq!(
        deny["spec"]["egress"],
        json!([
            { "to": [{ "podSelector": {} }] },
            {
                "to": [{
                    "namespaceSelector": { "matchLabels": { "kubernetes.io/metadata.name": "kube-system" } },
                    "podSelector": { "matchLabels": { "k8s-app": "kube-dns" } }
                }],
                "ports": [{ "port": 53, "protocol": "UDP" }, { "port": 53, "protocol": "TCP" }]
            },
            { "ports": [{ "port": 443, "protocol": "TCP" }, { "port": 6443, "protocol": "TCP" }] }
        ])
    );
    let api = fake
        .get(
            "networkpolicies",
            &ws.namespace,
            "gantry-allow-vcluster-api",
        )
        .expect("api policy");
    assert_eq!(
        api["spec"]["podSelector"]["matchLabels"],
        json!({ "app": "vcluster", "release": ws.release })
    );
    assert_eq!(
        api["spec"]["ingress"],
        json!([{ "ports": [{ "port": 8443, "protocol": "TCP" }] }])
    );

    let chart = fake
        .get("helmcharts", HELM_NAMESPACE, &ws.release)
        .expect("HelmChart in kube-system");
    assert_eq!(str_at(&chart, "/apiVersion"), "helm.cattle.io/v1");
    assert_eq!(str_at(&chart, "/kind"), "HelmChart");
    assert_eq!(
        str_at(&chart, "/metadata/labels/gantry.dev~1workspace-id"),
        ws.workspace_id.to_string()
    );
    assert_eq!(str_at(&chart, "/spec/chart"), "vcluster");
    assert_eq!(str_at(&chart, "/spec/repo"), "https://charts.loft.sh");
    assert_eq!(str_at(&chart, "/spec/version"), "0.20.0");
    assert_eq!(str_at(&chart, "/spec/targetNamespace"), ws.namespace);
    let values = chart_values(&fake, &ws);
    assert_eq!(
        values["controlPlane"]["distro"]["k3s"]["enabled"],
        json!(true)
    );
    assert_eq!(
        values["controlPlane"]["statefulSet"]["resources"]["limits"],
        json!({ "cpu": "1", "memory": "1Gi" })
    );
    assert!(
        values["controlPlane"]["statefulSet"]
            .get("scheduling")
            .is_none(),
        "shared: no pinning"
    );
    let endpoint = format!("https://{}.{}.svc:443", ws.release, ws.namespace);
    assert_eq!(values["exportKubeConfig"]["server"], json!(endpoint));
    assert_eq!(
        values["controlPlane"]["proxy"]["extraSANs"],
        json!([format!("{}.{}.svc", ws.release, ws.namespace)])
    );
    assert_eq!(
        values["sync"]["toHost"]["networkPolicies"]["enabled"],
        json!(true)
    );

    // Every write was a server-side apply with field manager gantry, forced.
    for request in fake.requests().iter().filter(|r| r.method == "PATCH") {
        assert!(request.path.contains("fieldManager=gantry"), "{request:?}");
        assert!(request.path.contains("force=true"), "{request:?}");
    }
}

#[tokio::test]
async fn dedicated_plan_pins_the_vcluster_to_its_pool() {
    let fake = FakeKube::start().await;
    let ws = workspace(dedicated_plan());
    driver(&fake).apply_workspace(&ws).await.expect("apply");

    let quota = fake
        .get("resourcequotas", &ws.namespace, "gantry-quota")
        .expect("quota");
    assert_eq!(str_at(&quota, "/spec/hard/limits.cpu"), "16");
    assert_eq!(str_at(&quota, "/spec/hard/pods"), "200");

    let values = chart_values(&fake, &ws);
    let scheduling = &values["controlPlane"]["statefulSet"]["scheduling"];
    assert_eq!(
        scheduling["nodeSelector"],
        json!({ "gantry.dev/pool": "dedicated" })
    );
    assert_eq!(
        scheduling["tolerations"],
        json!([{ "key": "gantry.dev/pool", "operator": "Equal", "value": "dedicated", "effect": "NoSchedule" }])
    );
    assert_eq!(
        values["controlPlane"]["statefulSet"]["resources"]["limits"],
        json!({ "cpu": "2", "memory": "4Gi" })
    );
    assert_eq!(
        values["sync"]["toHost"]["pods"]["enforceTolerations"],
        json!(["gantry.dev/pool=dedicated:NoSchedule"])
    );
    assert_eq!(
        values["sync"]["fromHost"]["nodes"]["selector"]["labels"],
        json!({ "gantry.dev/pool": "dedicated" })
    );
}

#[tokio::test]
async fn reapplying_a_workspace_changes_nothing() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(dedicated_plan());
    driver.apply_workspace(&ws).await.expect("first apply");
    let versions = fake.resource_versions();
    let (writes, changes) = (fake.writes(), fake.changes());
    assert_eq!(
        versions.len(),
        2 + 6,
        "kube-system, default and ours: {versions:?}"
    );

    driver.apply_workspace(&ws).await.expect("second apply");
    assert_eq!(fake.resource_versions(), versions);
    assert_eq!(fake.changes(), changes, "no object changed");
    assert_eq!(fake.writes(), writes + 6, "each object was applied again");
}

#[tokio::test]
async fn readiness_is_pending_until_the_vcluster_is_up() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());

    let step = |r: Readiness| match r {
        Readiness::Pending { step } => step,
        other => panic!("expected pending, got {other:?}"),
    };
    let before = step(driver.workspace_readiness(&ws).await.expect("readiness"));
    assert!(before.contains("HelmChart"), "{before}");

    driver.apply_workspace(&ws).await.expect("apply");
    let no_sts = step(driver.workspace_readiness(&ws).await.expect("readiness"));
    assert!(no_sts.contains("StatefulSet"), "{no_sts}");

    fake.set_statefulset(&ws.namespace, &ws.release, 0);
    let not_ready = step(driver.workspace_readiness(&ws).await.expect("readiness"));
    assert!(not_ready.contains("(0/1)"), "{not_ready}");

    fake.set_statefulset(&ws.namespace, &ws.release, 1);
    let no_secret = step(driver.workspace_readiness(&ws).await.expect("readiness"));
    assert!(
        no_secret.contains(&format!("vc-{}", ws.release)),
        "{no_secret}"
    );

    fake.mark_vcluster_ready(&ws.namespace, &ws.release, CA_PEM);
    let ready = driver.workspace_readiness(&ws).await.expect("readiness");
    assert_eq!(
        ready,
        Readiness::Ready {
            endpoint: format!("https://{}.{}.svc:443", ws.release, ws.namespace),
            ca_data: base64::engine::general_purpose::STANDARD.encode(CA_PEM),
        }
    );
}

#[tokio::test]
async fn readiness_uses_the_endpoint_template_and_the_kubeconfig_ca() {
    let fake = FakeKube::start().await;
    let settings = KubeSettings {
        endpoint_template: Some("https://{release}.{namespace}.vc.example.com".into()),
        ..settings()
    };
    let driver = KubernetesDriver::new(fake.client(), settings);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    let endpoint = format!("https://{}.{}.vc.example.com", ws.release, ws.namespace);
    let values = chart_values(&fake, &ws);
    assert_eq!(values["exportKubeConfig"]["server"], json!(endpoint));
    assert_eq!(
        values["controlPlane"]["proxy"]["extraSANs"],
        json!([format!("{}.{}.vc.example.com", ws.release, ws.namespace)])
    );

    // Only a kubeconfig, no separate `certificate-authority` key.
    fake.set_statefulset(&ws.namespace, &ws.release, 1);
    let config = kubeconfig("https://localhost:8443", Some(CA_PEM), "t");
    fake.put_kubeconfig_secret(&ws.namespace, &ws.release, &[("config", &config)]);
    assert_eq!(
        driver.workspace_readiness(&ws).await.expect("readiness"),
        Readiness::Ready {
            endpoint,
            ca_data: base64::engine::general_purpose::STANDARD.encode(CA_PEM)
        }
    );
}

#[tokio::test]
async fn a_failed_helm_install_is_failed() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    fake.fail_helm_chart(
        HELM_NAMESPACE,
        &ws.release,
        "chart vcluster-0.20.0 not found",
    );

    match driver.workspace_readiness(&ws).await.expect("readiness") {
        Readiness::Failed { reason } => {
            assert!(
                reason.contains("chart vcluster-0.20.0 not found"),
                "{reason}"
            );
            assert!(
                reason.contains(&format!("helm-install-{}", ws.release)),
                "{reason}"
            );
        }
        other => panic!("expected failed, got {other:?}"),
    }
    // Re-applying the chart (e.g. a retry) leaves its status to the controller.
    driver.apply_workspace(&ws).await.expect("re-apply");
    assert!(matches!(
        driver.workspace_readiness(&ws).await,
        Ok(Readiness::Failed { .. })
    ));
}

#[tokio::test]
async fn delete_removes_the_chart_then_the_namespace_once_the_release_is_gone() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    fake.mark_vcluster_ready(&ws.namespace, &ws.release, CA_PEM);

    assert!(
        !driver.delete_workspace(&ws).await.expect("delete"),
        "the release is still there"
    );
    assert!(
        fake.get("helmcharts", HELM_NAMESPACE, &ws.release)
            .is_none(),
        "HelmChart deleted"
    );
    assert!(
        fake.get("namespaces", "", &ws.namespace).is_some(),
        "namespace kept while the release runs"
    );
    assert!(!driver.delete_workspace(&ws).await.expect("delete again"));

    // helm-controller's uninstall removes the release.
    fake.remove("statefulsets", &ws.namespace, &ws.release);
    // The namespace terminates for a while (finalizer) before it is gone.
    fake.set_finalizers("namespaces", "", &ws.namespace, &["kubernetes"]);
    assert!(
        !driver.delete_workspace(&ws).await.expect("delete"),
        "namespace still terminating"
    );
    let ns = fake
        .get("namespaces", "", &ws.namespace)
        .expect("terminating namespace");
    assert_eq!(str_at(&ns, "/status/phase"), "Terminating");

    fake.remove("namespaces", "", &ws.namespace);
    assert!(
        driver.delete_workspace(&ws).await.expect("delete"),
        "nothing left"
    );
    assert!(fake.names("resourcequotas", &ws.namespace).is_empty());
    assert!(driver
        .delete_workspace(&ws)
        .await
        .expect("delete is idempotent"));
}

#[tokio::test]
async fn delete_waits_for_the_helm_chart_finalizer() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    fake.set_finalizers(
        "helmcharts",
        HELM_NAMESPACE,
        &ws.release,
        &["wrangler.cattle.io/on-helm-chart-remove"],
    );

    assert!(!driver.delete_workspace(&ws).await.expect("delete"));
    let chart = fake
        .get("helmcharts", HELM_NAMESPACE, &ws.release)
        .expect("chart being uninstalled");
    assert!(chart.pointer("/metadata/deletionTimestamp").is_some());
    assert!(
        fake.get("namespaces", "", &ws.namespace).is_some(),
        "namespace kept during the uninstall"
    );

    fake.remove("helmcharts", HELM_NAMESPACE, &ws.release);
    assert!(driver.delete_workspace(&ws).await.expect("delete"));
    assert!(fake.get("namespaces", "", &ws.namespace).is_none());
}

#[tokio::test]
async fn drift_lists_missing_and_changed_objects_and_apply_repairs_them() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        Vec::<String>::new()
    );

    fake.remove("resourcequotas", &ws.namespace, "gantry-quota");
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        vec!["ResourceQuota gantry-quota missing".to_owned()]
    );
    driver.apply_workspace(&ws).await.expect("repair");
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        Vec::<String>::new()
    );

    // Someone edits the quota and the chart, and deletes a policy.
    fake.put(
        "resourcequotas",
        &ws.namespace,
        "gantry-quota",
        json!({ "spec": { "hard": { "limits.cpu": "8" } } }),
    );
    fake.put(
        "helmcharts",
        HELM_NAMESPACE,
        &ws.release,
        json!({ "spec": { "version": "0.19.0" } }),
    );
    fake.remove("networkpolicies", &ws.namespace, "gantry-default-deny");
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        vec![
            "ResourceQuota gantry-quota: limits.cpu is 8, expected 4".to_owned(),
            "NetworkPolicy gantry-default-deny missing".to_owned(),
            format!(
                "HelmChart {HELM_NAMESPACE}/{}: spec.version differs from what Gantry applied",
                ws.release
            ),
        ]
    );
    driver.apply_workspace(&ws).await.expect("repair");
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        Vec::<String>::new()
    );

    // The API server may canonicalize quantities: the same amount is not drift.
    fake.put(
        "resourcequotas",
        &ws.namespace,
        "gantry-quota",
        json!({ "spec": { "hard": { "limits.cpu": "4000m", "limits.memory": "8192Mi" } } }),
    );
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        Vec::<String>::new()
    );

    fake.remove("namespaces", "", &ws.namespace);
    let drift = driver.drift(&ws).await.expect("drift");
    assert_eq!(drift[0], format!("Namespace {} missing", ws.namespace));
    assert_eq!(
        drift.len(),
        5,
        "namespace, quota, limit range and two policies: {drift:?}"
    );
}

#[tokio::test]
async fn apply_project_creates_the_namespace_quota_policy_and_bindings() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    let org = ws.org_id;
    let admins = format!("gantry:{org}:admin");
    let owners = format!("gantry:{org}:owner");
    let members = format!("gantry:{org}:member");
    let prj = project(
        &ws,
        &[(&admins, "admin"), (&members, "edit"), (&owners, "admin")],
    );
    driver.apply_project(&prj).await.expect("apply project");

    let ns = fake
        .get("namespaces", "", "shop")
        .expect("project namespace");
    assert_eq!(
        str_at(&ns, "/metadata/labels/gantry.dev~1project-id"),
        prj.project_id.to_string()
    );
    assert_eq!(
        str_at(&ns, "/metadata/labels/gantry.dev~1org-id"),
        org.to_string()
    );
    let quota = fake
        .get("resourcequotas", "shop", "gantry-quota")
        .expect("quota");
    assert_eq!(
        quota["spec"]["hard"],
        json!({ "limits.cpu": "2", "limits.memory": "4Gi" })
    );
    assert!(
        fake.get("limitranges", "shop", "gantry-limits").is_some(),
        "defaults for the limits quota"
    );
    let policy = fake
        .get("networkpolicies", "shop", "gantry-default-deny")
        .expect("policy");
    assert_eq!(policy["spec"]["policyTypes"], json!(["Ingress", "Egress"]));
    assert_eq!(
        policy["spec"]["ingress"],
        json!([{ "from": [{ "podSelector": {} }] }])
    );
    assert_eq!(
        policy["spec"]["egress"][0],
        json!({ "to": [{ "podSelector": {} }] })
    );

    assert_eq!(
        fake.names("rolebindings", "shop"),
        vec!["gantry-admin", "gantry-edit"]
    );
    let admin = fake
        .get("rolebindings", "shop", "gantry-admin")
        .expect("admin binding");
    assert_eq!(
        admin["roleRef"],
        json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "admin" })
    );
    let mut groups = [admins.clone(), owners.clone()];
    groups.sort();
    assert_eq!(
        admin["subjects"],
        json!(groups
            .iter()
            .map(|g| json!({ "apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": g }))
            .collect::<Vec<_>>())
    );
    let edit = fake
        .get("rolebindings", "shop", "gantry-edit")
        .expect("edit binding");
    assert_eq!(edit["subjects"][0]["name"], json!(members));

    // Re-applying changes nothing; a role no longer granted loses its binding.
    let versions = fake.resource_versions();
    driver.apply_project(&prj).await.expect("re-apply");
    assert_eq!(fake.resource_versions(), versions);
    let fewer = ProjectSpec {
        bindings: vec![(admins, "admin".into())],
        ..prj
    };
    driver
        .apply_project(&fewer)
        .await
        .expect("apply fewer bindings");
    assert_eq!(fake.names("rolebindings", "shop"), vec!["gantry-admin"]);
}

#[tokio::test]
async fn delete_project_removes_its_namespace() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    let prj = project(&ws, &[("g", "view")]);
    driver.apply_project(&prj).await.expect("apply project");
    driver.delete_project(&prj).await.expect("delete project");
    assert!(fake.get("namespaces", "", "shop").is_none());
    assert!(fake.names("rolebindings", "shop").is_empty());
    driver.delete_project(&prj).await.expect("absent is fine");
}

#[tokio::test]
async fn projects_cannot_take_over_system_namespaces() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    for namespace in ["kube-system", "default"] {
        let prj = ProjectSpec {
            namespace: namespace.into(),
            ..project(&ws, &[("g", "admin")])
        };
        assert_permanent(driver.apply_project(&prj).await, namespace);
        assert_permanent(driver.delete_project(&prj).await, namespace);
    }
    assert!(fake.get("namespaces", "", "kube-system").is_some());
    assert_eq!(fake.writes(), 0);
}

#[tokio::test]
async fn projects_reach_the_vcluster_with_the_kubeconfig_from_its_secret() {
    let fake = FakeKube::start().await;
    let settings = KubeSettings {
        vcluster_client: VClusterAccess::FromSecret,
        // Here the fake is the vCluster's API server too.
        endpoint_template: Some(fake.uri()),
        ..KubeSettings::default()
    };
    let driver = KubernetesDriver::new(fake.client(), settings);
    let ws = workspace(shared_plan());
    let prj = project(&ws, &[("g", "view")]);
    driver.apply_workspace(&ws).await.expect("apply workspace");

    assert_transient(
        driver.apply_project(&prj).await,
        &format!("vc-{}", ws.release),
    );

    let config = kubeconfig("https://localhost:8443", Some(CA_PEM), "vcluster-token");
    fake.put_kubeconfig_secret(&ws.namespace, &ws.release, &[("config", &config)]);
    driver.apply_project(&prj).await.expect("apply project");
    assert!(fake.get("namespaces", "", "shop").is_some());
    let project_writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/shop"))
        .collect();
    assert!(!project_writes.is_empty());
    for request in project_writes {
        assert_eq!(
            request.authorization.as_deref(),
            Some("Bearer vcluster-token"),
            "{request:?}"
        );
    }
    driver.delete_project(&prj).await.expect("delete project");
    assert!(fake.get("namespaces", "", "shop").is_none());

    fake.put_kubeconfig_secret(
        &ws.namespace,
        &ws.release,
        &[("config", "not: [a kubeconfig")],
    );
    assert_permanent(driver.apply_project(&prj).await, "kubeconfig");
}

#[tokio::test]
async fn api_errors_are_classified() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    let fault = |method, plural, code, reason: &'static str| Fault {
        method: Some(method),
        plural: Some(plural),
        code,
        reason,
        message: format!("injected {code}"),
    };

    fake.inject_fault(fault("PATCH", "resourcequotas", 403, "Forbidden"));
    assert_permanent(driver.apply_workspace(&ws).await, "ResourceQuota");
    fake.clear_faults();

    fake.inject_fault(fault("PATCH", "networkpolicies", 422, "Invalid"));
    assert_permanent(driver.apply_workspace(&ws).await, "422");
    fake.clear_faults();

    fake.inject_fault(fault("GET", "statefulsets", 401, "Unauthorized"));
    driver.apply_workspace(&ws).await.expect("apply");
    assert_permanent(driver.workspace_readiness(&ws).await, "401");
    fake.clear_faults();

    fake.inject_fault(fault("PATCH", "helmcharts", 500, "InternalError"));
    assert_transient(driver.apply_workspace(&ws).await, "500");
    fake.clear_faults();

    fake.inject_fault(fault("DELETE", "helmcharts", 409, "Conflict"));
    assert_transient(driver.delete_workspace(&ws).await, "409");
    fake.clear_faults();

    // No HelmChart CRD: not an absent object but a resource type the cluster lacks.
    fake.stop_serving("helmcharts");
    assert_permanent(driver.apply_workspace(&ws).await, "HelmChart");
    assert_permanent(driver.workspace_readiness(&ws).await, "HelmChart");
}

#[tokio::test]
async fn writing_into_a_terminating_namespace_is_transient() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    fake.set_finalizers("namespaces", "", &ws.namespace, &["kubernetes"]);
    fake.remove("helmcharts", HELM_NAMESPACE, &ws.release);
    assert!(!driver.delete_workspace(&ws).await.expect("delete"));
    fake.remove("resourcequotas", &ws.namespace, "gantry-quota");
    assert_transient(driver.apply_workspace(&ws).await, "being terminated");
}

#[tokio::test]
async fn an_unreachable_api_server_is_transient() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = listener.local_addr().expect("address");
    drop(listener);
    gantry::install_crypto_provider();
    let config = kube::Config::new(format!("http://{address}").parse().expect("uri"));
    let client = kube::Client::try_from(config).expect("client");
    let driver = KubernetesDriver::new(client, settings());
    assert_transient(
        driver.apply_workspace(&workspace(shared_plan())).await,
        "Namespace",
    );
}

/// Every namespace Gantry manages enforces Pod Security `restricted` (host and vCluster), the
/// vCluster's own pod is configured to pass it, and relaxing the label is drift that apply repairs.
#[tokio::test]
async fn namespaces_enforce_pod_security_restricted() {
    let fake = FakeKube::start().await;
    let driver = driver(&fake);
    let ws = workspace(shared_plan());
    driver.apply_workspace(&ws).await.expect("apply");
    let prj = project(&ws, &[]);
    driver.apply_project(&prj).await.expect("apply project");

    for ns in [
        fake.get("namespaces", "", &ws.namespace)
            .expect("host namespace"),
        fake.get("namespaces", "", "shop")
            .expect("project namespace"),
    ] {
        for (mode, value) in [
            ("enforce", "restricted"),
            ("enforce-version", "latest"),
            ("warn", "restricted"),
            ("audit", "restricted"),
        ] {
            assert_eq!(
                str_at(
                    &ns,
                    &format!("/metadata/labels/pod-security.kubernetes.io~1{mode}")
                ),
                value,
                "{ns}"
            );
        }
    }

    let values = chart_values(&fake, &ws);
    let security = &values["controlPlane"]["statefulSet"]["security"];
    assert_eq!(security["podSecurityContext"]["runAsNonRoot"], true);
    assert_eq!(
        security["podSecurityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let container = &security["containerSecurityContext"];
    assert_eq!(container["allowPrivilegeEscalation"], false);
    assert_eq!(container["capabilities"]["drop"], json!(["ALL"]));

    fake.put(
        "namespaces",
        "",
        &ws.namespace,
        json!({ "metadata": { "labels": { "pod-security.kubernetes.io/enforce": "privileged" } } }),
    );
    let drift = driver.drift(&ws).await.expect("drift");
    assert!(
        drift
            .iter()
            .any(|d| d.contains("pod-security.kubernetes.io/enforce")),
        "{drift:?}"
    );
    driver.apply_workspace(&ws).await.expect("repair");
    assert_eq!(
        driver.drift(&ws).await.expect("drift"),
        Vec::<String>::new()
    );
}
