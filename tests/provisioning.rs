//! The vCluster provisioner end to end in embedded style: the API in process, the worker as the
//! real binary with the `simulated` driver. A workspace is followed on the SSE stream until
//! ready, gets a kubeconfig, fails and is retried, and is deleted with its projects.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, signal, ChildGuard as Worker};
use common::{eventually, Backend, TestApp};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

fn start_worker(app: &TestApp, dir: &std::path::Path) -> Worker {
    let child = gantry(dir)
        .args(["--workers", "outbox-publisher,vcluster-provisioner"])
        .env("DATABASE_URL", &app.database_url)
        .env("GANTRY_SIMULATED_DELAY_MS", "200")
        .env("GANTRY_SIMULATED_FAIL", "flaky:1")
        .env("GANTRY_OUTBOX_POLL_INTERVAL", "100ms")
        .env("GANTRY_JOB_HEARTBEAT", "1s")
        .env("GANTRY_RECONCILE_INTERVAL", "500ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn worker");
    Worker(child)
}

/// Reads the org's SSE stream until an event of `until_type` about `workspace` arrives; returns
/// the event types seen about that workspace, in order.
async fn follow_stream(
    app: &TestApp,
    token: &str,
    org: &str,
    workspace: &str,
    until_type: &str,
) -> Vec<String> {
    let mut response = app
        .client
        .get(format!("/v1/orgs/{org}/events/stream"))
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {token}"),
        ))
        .header(rocket::http::Header::new("Last-Event-ID", "0"))
        .dispatch()
        .await;
    assert_eq!(response.status().code, 200);
    let mut text = String::new();
    let mut buffer = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let seen: Vec<String> = text
            .split("\n\n")
            .filter_map(|frame| {
                let data = frame.lines().find_map(|l| l.strip_prefix("data:"))?;
                let event: Value = serde_json::from_str(data.trim()).ok()?;
                (event["aggregate"]["id"] == workspace)
                    .then(|| event["type"].as_str().map(str::to_owned))?
            })
            .collect();
        if seen.iter().any(|t| t == until_type) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "no {until_type} on the stream: {seen:?}"
        );
        match tokio::time::timeout(Duration::from_secs(10), response.read(&mut buffer)).await {
            Ok(Ok(0)) | Err(_) => panic!("stream ended before {until_type}: {seen:?}"),
            Ok(Ok(n)) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
            Ok(Err(e)) => panic!("stream read failed: {e}"),
        }
    }
}

/// The simulated objects of `kind` in `namespace`: (name, spec), by name.
async fn simulated(
    db: &sea_orm::DatabaseConnection,
    kind: &str,
    namespace: &str,
) -> Vec<(String, Value)> {
    use sea_orm::ConnectionTrait;
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT name, spec FROM simulated_objects WHERE kind = '{kind}' AND namespace = '{namespace}' ORDER BY name"
            ),
        ))
        .await
        .expect("query");
    rows.iter()
        .map(|row| {
            let name: String = row.try_get("", "name").expect("name");
            let spec: Value = row.try_get("", "spec").expect("spec");
            (name, spec)
        })
        .collect()
}

async fn wait_status(app: &TestApp, token: &str, path: &str, status: &str) -> Value {
    eventually(Duration::from_secs(60), || async {
        let response = app.get(path, token).await;
        if response.status.code == 200 && response.body["status"] == status {
            Ok(response.body)
        } else {
            Err(format!("never {status}: {}", response.body))
        }
    })
    .await
}

async fn workspace_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "workspace_lifecycle").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = start_worker(&app, dir.path());
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;

    // Requested → provisioning → ready, watched on the SSE stream; a project created meanwhile
    // gets its namespace once the workspace is ready.
    let dev = app.create_workspace(&alice, &org, "dev").await;
    let early = app.create_project(&alice, &org, &dev, "early").await;
    let seen = follow_stream(&app, &alice, &org, &dev, "workspace.ready").await;
    assert_eq!(
        seen,
        [
            "workspace.requested",
            "workspace.provisioning",
            "workspace.ready"
        ],
        "{seen:?}"
    );
    let ready = app
        .get(&format!("/v1/orgs/{org}/workspaces/{dev}"), &alice)
        .await;
    ready.assert_status(200);
    assert_eq!(ready.body["status"], "ready");
    assert_eq!(
        ready.body["progress"],
        json!({"step": "ready", "done": 4, "total": 4})
    );
    let endpoint = ready.body["kube_endpoint"]
        .as_str()
        .expect("endpoint")
        .to_owned();
    assert!(ready.body["conditions"]
        .as_array()
        .expect("conditions")
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True"));

    let early_path = format!("/v1/orgs/{org}/projects/{early}");
    let early = wait_status(&app, &alice, &early_path, "ready").await;
    assert_eq!(early["quota"], json!({"cpu": "2", "memory": "4Gi"}));

    // A project in the ready workspace becomes a namespace with its quota and role bindings.
    let web = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &alice,
            json!({"name": "web", "workspace_id": dev, "quota": {"cpu": "500m", "memory": "1Gi"}}),
        )
        .await;
    web.assert_status(201);
    assert_eq!(web.body["status"], "pending");
    let web_id = web.body["id"].as_str().expect("id").to_owned();
    wait_status(
        &app,
        &alice,
        &format!("/v1/orgs/{org}/projects/{web_id}"),
        "ready",
    )
    .await;
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("db");
    let bindings = simulated(&db, "RoleBinding", "vcluster/web").await;
    assert_eq!(
        bindings,
        [
            (
                "gantry-admin".to_owned(),
                json!({"group": format!("gantry:{org}:admin"), "clusterRole": "admin"})
            ),
            (
                "gantry-member".to_owned(),
                json!({"group": format!("gantry:{org}:member"), "clusterRole": "edit"})
            ),
            (
                "gantry-owner".to_owned(),
                json!({"group": format!("gantry:{org}:owner"), "clusterRole": "admin"})
            ),
            (
                "gantry-viewer".to_owned(),
                json!({"group": format!("gantry:{org}:viewer"), "clusterRole": "view"})
            ),
        ]
    );
    let quota = simulated(&db, "ResourceQuota", "vcluster/web").await;
    assert_eq!(
        quota[0].1["hard"],
        json!({"limits.cpu": "500m", "limits.memory": "1Gi"})
    );
    app.post(
        &format!("/v1/orgs/{org}/projects"),
        &alice,
        json!({"name": "bad", "workspace_id": dev, "quota": {"cpu": "lots", "memory": "1Gi"}}),
    )
    .await
    .assert_problem(422);

    // Drift: the host quota disappears; the reconciler notices, re-applies and says so.
    let ws_path = format!("/v1/orgs/{org}/workspaces/{dev}");
    use sea_orm::ConnectionTrait;
    db.execute_unprepared("DELETE FROM simulated_objects WHERE kind = 'ResourceQuota' AND name = 'gantry-quota' AND namespace LIKE 'gantry-ws-%'")
        .await
        .expect("delete quota");
    let seen = follow_stream(&app, &alice, &org, &dev, "workspace.drifted").await;
    assert!(seen.contains(&"workspace.drifted".to_owned()));
    let drifted = app.get(&ws_path, &alice).await;
    assert!(
        drifted.body["conditions"]
            .as_array()
            .expect("conditions")
            .iter()
            .any(|c| c["type"] == "Drifted"
                && c["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("ResourceQuota gantry-quota missing")),
        "{}",
        drifted.body
    );
    let host_quota = db
        .query_one_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM simulated_objects WHERE kind = 'ResourceQuota' AND namespace LIKE 'gantry-ws-%'",
        ))
        .await
        .expect("count")
        .expect("row");
    assert_eq!(
        host_quota.try_get::<i64>("", "n").expect("n"),
        1,
        "quota re-applied"
    );

    // A kubeconfig that authenticates with OIDC, never a static secret.
    let kubeconfig = app
        .client
        .get(format!("/v1/orgs/{org}/workspaces/{dev}/kubeconfig"))
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {alice}"),
        ))
        .dispatch()
        .await;
    assert_eq!(kubeconfig.status().code, 200);
    assert_eq!(
        kubeconfig.content_type().map(|c| c.to_string()),
        Some("application/yaml".to_owned())
    );
    let text = kubeconfig.into_string().await.expect("body");
    assert!(text.contains(&format!("server: {endpoint}")), "{text}");
    assert!(text.contains("certificate-authority-data: "), "{text}");
    assert!(text.contains("oidc-login"), "{text}");
    assert!(text.contains("--oidc-issuer-url="), "{text}");
    // Its own Keycloak client by default, so kubectl's cached tokens are not API bearers.
    assert!(text.contains("--oidc-client-id=gantry-kubectl"), "{text}");
    assert!(
        !text.contains("token:") && !text.contains("client-key"),
        "{text}"
    );
    app.add_member(&alice, &org, "victor", "viewer").await;
    app.get(
        &format!("/v1/orgs/{org}/workspaces/{dev}/kubeconfig"),
        &app.token("victor"),
    )
    .await
    .assert_problem(403);
    app.get(
        &format!("/v1/orgs/{org}/workspaces/{dev}/kubeconfig"),
        &app.token("mallory"),
    )
    .await
    .assert_problem(404);

    // A workspace whose first attempt fails, then is retried by an admin.
    let flaky = app.create_workspace(&alice, &org, "flaky").await;
    let path = format!("/v1/orgs/{org}/workspaces/{flaky}");
    let failed = wait_status(&app, &alice, &path, "failed").await;
    assert!(failed["error"]
        .as_str()
        .expect("error")
        .contains("simulated failure"));
    app.get(&format!("{path}/kubeconfig"), &alice)
        .await
        .assert_problem(409);
    app.post(&format!("{path}/retry"), &app.token("victor"), json!({}))
        .await
        .assert_problem(403);
    let retried = app.post(&format!("{path}/retry"), &alice, json!({})).await;
    retried.assert_status(202);
    assert_eq!(retried.body["status"], "pending");
    assert_eq!(retried.body["error"], Value::Null);
    wait_status(&app, &alice, &path, "ready").await;
    app.post(&format!("{path}/retry"), &alice, json!({}))
        .await
        .assert_problem(409);

    // Deletion takes the workspace and its projects away.
    app.delete(&format!("/v1/orgs/{org}/workspaces/{dev}"), &alice)
        .await
        .assert_status(202);
    let seen = follow_stream(&app, &alice, &org, &dev, "workspace.deleted").await;
    assert!(
        seen.ends_with(&[
            "workspace.deletion_requested".to_owned(),
            "workspace.deleted".to_owned()
        ]),
        "{seen:?}"
    );
    app.get(&format!("/v1/orgs/{org}/workspaces/{dev}"), &alice)
        .await
        .assert_problem(404);
    let projects = app.get(&format!("/v1/orgs/{org}/projects"), &alice).await;
    projects.assert_status(200);
    assert_eq!(projects.body["items"], json!([]), "{}", projects.body);

    let mut worker = worker;
    signal(&worker.0, false);
    assert!(worker.0.wait().expect("wait").success());
}

on_each_backend!(workspace_lifecycle);
