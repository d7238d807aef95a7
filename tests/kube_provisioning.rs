//! The provisioner with the `kubernetes` driver, as a real worker process talking to an
//! in-process fake API server through `KUBECONFIG`: a workspace times out and fails, is
//! retried once the vCluster comes up (re-applying changes nothing), gets project namespaces
//! through the vCluster's kubeconfig, and is torn down in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;

use common::process::{gantry, signal, ChildGuard as Worker};
use common::{eventually, Backend, TestApp};
use fake_kube::{kubeconfig, FakeKube};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

const CA_PEM: &str = "-----BEGIN CERTIFICATE-----\ntest\n-----END CERTIFICATE-----\n";

async fn wait_for(app: &TestApp, token: &str, path: &str, done: impl Fn(&Value) -> bool) -> Value {
    eventually(Duration::from_secs(60), || async {
        let response = app.get(path, token).await;
        if done(&response.body) {
            Ok(response.body)
        } else {
            Err(format!("{path}: {}", response.body))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_driver_end_to_end() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "kubernetes_driver_end_to_end").await else {
        return;
    };
    let fake = FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig_path = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig_path,
        kubeconfig(&fake.uri(), None, "host-token"),
    )
    .expect("write");
    let worker = Worker(
        gantry(dir.path())
            .args(["--workers", "outbox-publisher,vcluster-provisioner"])
            .env("DATABASE_URL", &app.database_url)
            .env("GANTRY_KUBE_DRIVER", "kubernetes")
            .env("KUBECONFIG", &kubeconfig_path)
            .env("GANTRY_PROVISION_TIMEOUT", "2s")
            .env("GANTRY_OUTBOX_POLL_INTERVAL", "100ms")
            .env("GANTRY_RECONCILE_INTERVAL", "1h")
            // Every vCluster's API is the fake too.
            .env("GANTRY_VCLUSTER_ENDPOINT", fake.uri())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker"),
    );
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let ws = app.create_workspace(&alice, &org, "dev").await;
    let path = format!("/v1/orgs/{org}/workspaces/{ws}");
    let hex = ws.replace('-', "");
    let namespace = format!("gantry-ws-{}", &hex[hex.len() - 12..]);
    let release = format!("vc-{}", &hex[hex.len() - 12..]);

    // Nothing comes up on the "cluster": the host objects are applied, then the timeout fails it.
    let failed = wait_for(&app, &alice, &path, |w| w["status"] == "failed").await;
    assert!(
        failed["error"]
            .as_str()
            .unwrap_or("")
            .contains("GANTRY_PROVISION_TIMEOUT"),
        "{failed}"
    );
    let labels = &fake.get("namespaces", "", &namespace).expect("namespace")["metadata"]["labels"];
    assert_eq!(labels["gantry.dev/workspace-id"], ws.as_str());
    assert!(fake
        .get("resourcequotas", &namespace, "gantry-quota")
        .is_some());
    assert!(fake.get("helmcharts", "kube-system", &release).is_some());
    let versions = fake.resource_versions();

    // The vCluster comes up; a retry finds it ready, and re-applying changed nothing.
    fake.set_statefulset(&namespace, &release, 1);
    fake.put_kubeconfig_secret(
        &namespace,
        &release,
        &[
            ("config", &kubeconfig(&fake.uri(), None, "vcluster-token")),
            ("certificate-authority", CA_PEM),
        ],
    );
    app.post(&format!("{path}/retry"), &alice, json!({}))
        .await
        .assert_status(202);
    let ready = wait_for(&app, &alice, &path, |w| w["status"] == "ready").await;
    assert_eq!(ready["kube_endpoint"], fake.uri().as_str(), "{ready}");
    let after = fake.resource_versions();
    for (object, version) in &versions {
        if object.contains("gantry-quota") || object.contains("helmcharts") {
            assert_eq!(after.get(object), Some(version), "{object} was rewritten");
        }
    }

    // A project becomes a namespace inside the vCluster, with its bindings.
    let project = app.create_project(&alice, &org, &ws, "web").await;
    wait_for(
        &app,
        &alice,
        &format!("/v1/orgs/{org}/projects/{project}"),
        |p| p["status"] == "ready",
    )
    .await;
    assert!(fake.get("namespaces", "", "web").is_some());
    assert!(!fake.names("rolebindings", "web").is_empty());

    // Deletion: the chart goes first; the namespace once the release is gone.
    app.delete(&path, &alice).await.assert_status(202);
    eventually(Duration::from_secs(30), || async {
        match fake.get("helmcharts", "kube-system", &release) {
            Some(_) => Err("chart never removed"),
            None => Ok(()),
        }
    })
    .await;
    assert!(
        fake.get("namespaces", "", &namespace).is_some(),
        "namespace went before the release"
    );
    fake.remove("statefulsets", &namespace, &release);
    eventually(Duration::from_secs(60), || async {
        match app.get(&path, &alice).await.status.code {
            404 => Ok(()),
            code => Err(format!("workspace never deleted: {code}")),
        }
    })
    .await;
    assert!(fake.get("namespaces", "", &namespace).is_none());

    let mut worker = worker;
    signal(&worker.0, false);
    assert!(worker.0.wait().expect("wait").success());
}
