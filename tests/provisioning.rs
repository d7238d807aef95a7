//! The vCluster provisioner end to end in embedded style: the API in process, the worker as the
//! real binary with the `simulated` driver. A workspace is followed on the SSE stream until
//! ready, gets a kubeconfig, fails and is retried, and is deleted with its projects.

mod common;

use common::process::{gantry, signal};
use common::{Backend, TestApp};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use tokio::io::AsyncReadExt;

/// The provisioner (and the publisher that routes its commands), killed when dropped.
struct Worker(Child);

impl Drop for Worker {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn start_worker(app: &TestApp, dir: &std::path::Path) -> Worker {
    let child = gantry(dir)
        .args(["--workers", "outbox-publisher,vcluster-provisioner"])
        .env("DATABASE_URL", &app.database_url)
        .env("GANTRY_SIMULATED_DELAY_MS", "200")
        .env("GANTRY_SIMULATED_FAIL", "flaky:1")
        .env("GANTRY_OUTBOX_POLL_INTERVAL", "100ms")
        .env("GANTRY_JOB_HEARTBEAT", "1s")
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

async fn wait_status(app: &TestApp, token: &str, path: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let response = app.get(path, token).await;
        if response.status.code == 200 && response.body["status"] == status {
            return response.body.clone();
        }
        assert!(
            Instant::now() < deadline,
            "never {status}: {}",
            response.body
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn workspace_lifecycle(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "workspace_lifecycle").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let worker = start_worker(&app, dir.path());
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;

    // Requested → provisioning → ready, watched on the SSE stream.
    let dev = app.create_workspace(&alice, &org, "dev").await;
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

    // A project in it, and a kubeconfig that authenticates with OIDC, never a static secret.
    app.create_project(&alice, &org, &dev, "web").await;
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

mod workspace_lifecycle {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::workspace_lifecycle(crate::common::Backend::Sqlite).await
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::workspace_lifecycle(crate::common::Backend::Postgres).await
    }
}
