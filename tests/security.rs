//! Security hardening through the public surface: token types, strict input, quotas, the write
//! rate limit, event-stream limits, and the binary's refusal to serve dev auth on a network.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{free_port, gantry, serve};
use common::{eventually, Backend, TestApp, TestResponse};
use rocket::http::Header;
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

macro_rules! spawn {
    ($backend:expr, $name:expr, $extra:expr) => {
        match TestApp::spawn_with($backend, $name, $extra).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// Asserts a `quota-exceeded` problem with `status`.
#[track_caller]
fn assert_quota(response: &TestResponse, status: u16, what: &str) {
    response.assert_problem(status);
    assert_eq!(
        response.body["type"], "https://gantry.dev/problems/quota-exceeded",
        "{what}: {}",
        response.text
    );
}

/// A graph the code generator accepts.
fn small_graph(image: &str) -> Value {
    json!({"nodes": [{"id": "web", "kind": "service",
                      "spec": {"image": image, "ports": [{"port": 80}]}}],
           "edges": []})
}

/// Tokens of other types from the same realm (ID, refresh, none) are not API bearers.
async fn only_bearer_tokens(backend: Backend) {
    let app = spawn!(backend, "only_bearer_tokens", &[]);
    let issuer = &app.issuer;
    app.get("/v1/me", &app.token("alice"))
        .await
        .assert_status(200);
    for typ in [Some("ID"), Some("Refresh"), Some("bearer "), None] {
        let mut claims = issuer.claims("alice");
        match typ {
            Some(typ) => claims.insert("typ".into(), json!(typ)),
            None => claims.remove("typ"),
        };
        let refused = app.get("/v1/me", &issuer.sign(&claims)).await;
        refused.assert_problem(401);
        assert!(
            refused
                .header("www-authenticate")
                .is_some_and(|h| h.contains("invalid_token")),
            "typ {typ:?}: {:?}",
            refused.headers
        );
    }
}

/// Query parameters, bodies and methods the document does not allow are refused, not ignored.
async fn strict_input(backend: Backend) {
    let app = spawn!(backend, "strict_input", &[]);
    let alice = app.token("alice");
    let admin = app.admin_token("root");
    for query in [
        "limit=abc",
        "limit=0",
        "limit=201",
        "limit=99999999999999999999999",
        "cursor=not-a-uuid",
    ] {
        app.get(&format!("/v1/orgs?{query}"), &alice)
            .await
            .assert_problem(400);
    }
    // An empty value is neither a value nor absent.
    for query in ["cursor=", "all=", "limit="] {
        app.get(&format!("/v1/orgs?{query}"), &alice)
            .await
            .assert_problem(400);
    }
    app.get("/v1/orgs?limit=200", &alice)
        .await
        .assert_status(200);

    // A body that is not a JSON object is a validation error of the whole body.
    for body in [json!([]), json!("acme"), json!(5), json!(null)] {
        let refused = app.post("/v1/orgs", &alice, body.clone()).await;
        refused.assert_problem(422);
        assert_eq!(refused.body["errors"][0]["pointer"], "", "{body}");
    }

    // An undeclared method on a known path (`QUERY` is sent on the wire: see below).
    for method in ["DELETE", "PUT"] {
        let refused = app
            .request(method, "/v1/orgs", Some(&alice), None, &[])
            .await;
        refused.assert_problem(405);
        let allow = refused.header("allow").unwrap_or_default().to_owned();
        assert!(
            allow.contains("GET") && allow.contains("POST"),
            "{method}: Allow {allow:?}"
        );
    }

    // A literal path is its own resource, not an id of its parameterized sibling.
    let retry = app.get("/v1/admin/jobs/retry", &admin).await;
    retry.assert_problem(405);
    assert_eq!(retry.header("allow"), Some("POST"));

    // Probe floods are capped (the document says so too).
    for count in [0, 10_001] {
        let refused = app
            .post("/v1/admin/probes", &admin, json!({"count": count}))
            .await;
        refused.assert_problem(422);
        assert_eq!(refused.body["errors"][0]["pointer"], "/count");
    }
    app.post("/v1/admin/probes", &admin, json!({"count": 10_000}))
        .await
        .assert_status(202);
}

/// Every tenancy quota answers `quota-exceeded` at its limit; graph history is pruned.
async fn quotas(backend: Backend) {
    let app = spawn!(
        backend,
        "quotas",
        &[
            ("GANTRY_QUOTA_ORGS_PER_USER", "2"),
            ("GANTRY_QUOTA_WORKSPACES_PER_ORG", "1"),
            ("GANTRY_QUOTA_PROJECTS_PER_WORKSPACE", "1"),
            ("GANTRY_QUOTA_WEBHOOKS_PER_ORG", "1"),
            ("GANTRY_QUOTA_CODEGEN_PENDING_PER_ORG", "1"),
            ("GANTRY_GRAPH_VERSIONS_KEPT", "2"),
        ]
    );
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.create_org(&alice, "acme-two").await;
    let third = app
        .post(
            "/v1/orgs",
            &alice,
            json!({"name": "Three", "slug": "three"}),
        )
        .await;
    assert_quota(&third, 422, "orgs per user");
    // The quota is per user: someone else still may.
    app.create_org(&app.token("bob"), "bobs").await;

    let ws = app.create_workspace(&alice, &org, "dev").await;
    let second_ws = app
        .post(
            &format!("/v1/orgs/{org}/workspaces"),
            &alice,
            json!({"name": "prod", "plan": "shared"}),
        )
        .await;
    assert_quota(&second_ws, 422, "workspaces per org");

    let project = app.create_project(&alice, &org, &ws, "shop").await;
    let second_project = app
        .post(
            &format!("/v1/orgs/{org}/projects"),
            &alice,
            json!({"name": "blog", "workspace_id": ws}),
        )
        .await;
    assert_quota(&second_project, 422, "projects per workspace");

    let hooks = format!("/v1/orgs/{org}/webhooks");
    let hook = json!({"url": "https://93.184.215.14/hooks/gantry", "events": ["*"]});
    let first_hook = app.post(&hooks, &alice, hook.clone()).await;
    first_hook.assert_status(201);
    assert_quota(
        &app.post(&hooks, &alice, hook.clone()).await,
        422,
        "webhooks per org",
    );
    // Deleting one frees its place.
    app.delete(&format!("{hooks}/{}", first_hook.id()), &alice)
        .await
        .assert_status(204);
    app.post(&hooks, &alice, hook).await.assert_status(201);

    // Graph history keeps the newest versions only.
    let graph_path = format!("/v1/orgs/{org}/projects/{project}/graph");
    for (i, image) in ["nginx:1.25", "nginx:1.26", "nginx:1.27"]
        .iter()
        .enumerate()
    {
        let version = app.put_graph(&alice, &graph_path, small_graph(image)).await;
        assert_eq!(version, i as i64 + 1);
    }
    let versions = app.get(&format!("{graph_path}/versions"), &alice).await;
    versions.assert_status(200);
    let kept: Vec<i64> = versions.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(kept, [2, 3], "{}", versions.text);
    app.get(&format!("{graph_path}/versions/1"), &alice)
        .await
        .assert_problem(404);

    // Codegen jobs in flight: no worker runs here, so the first stays pending.
    let jobs = format!("/v1/orgs/{org}/codegen-jobs");
    app.post(&jobs, &alice, json!({"project_id": project}))
        .await
        .assert_status(202);
    assert_quota(
        &app.post(&jobs, &alice, json!({"project_id": project}))
            .await,
        429,
        "codegen jobs pending per org",
    );
}

/// Writes past the per-caller budget are `429 rate-limited` with `Retry-After`; reads and other
/// callers are not affected.
async fn write_rate_limit(backend: Backend) {
    let app = spawn!(
        backend,
        "write_rate_limit",
        &[
            ("GANTRY_RATE_LIMIT_WRITES_PER_SECOND", "1"),
            ("GANTRY_RATE_LIMIT_WRITE_BURST", "3"),
        ]
    );
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let path = format!("/v1/orgs/{org}/workspaces");
    let mut limited = None;
    for i in 0..10 {
        let response = app
            .post(&path, &alice, json!({"name": format!("ws-{i}")}))
            .await;
        if response.status.code == 429 {
            limited = Some((i, response));
            break;
        }
    }
    let (after, refused) = limited.expect("the write limit never answered 429");
    assert!(after >= 2, "refused after only {after} writes");
    refused.assert_problem(429);
    assert_eq!(
        refused.body["type"],
        "https://gantry.dev/problems/rate-limited"
    );
    let retry_after: u64 = refused
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "Retry-After {retry_after}");
    app.get(&path, &alice).await.assert_status(200);
    app.create_org(&app.token("bob"), "bobs").await;
}

/// Opens an event stream (the response's body is the stream).
async fn open_stream<'c>(
    app: &'c TestApp,
    path: &str,
    token: &str,
) -> rocket::local::asynchronous::LocalResponse<'c> {
    app.client
        .get(path.to_owned())
        .header(Header::new("Authorization", format!("Bearer {token}")))
        .dispatch()
        .await
}

/// Whether the stream's body ends within `within`.
async fn ends_within(
    response: rocket::local::asynchronous::LocalResponse<'_>,
    within: Duration,
) -> bool {
    tokio::time::timeout(within, response.into_string())
        .await
        .is_ok()
}

/// Streams count against a per-user quota, end at the token's `exp`, and end once the caller is
/// no longer a member (re-checked every `GANTRY_STREAM_RECHECK_INTERVAL`).
async fn event_stream_limits(backend: Backend) {
    let app = spawn!(
        backend,
        "event_stream_limits",
        &[
            ("GANTRY_QUOTA_STREAMS_PER_USER", "1"),
            ("GANTRY_STREAM_RECHECK_INTERVAL", "1s"),
        ]
    );
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.add_member(&alice, &org, "bob", "viewer").await;
    let bob = app.token("bob");
    let path = format!("/v1/orgs/{org}/events/stream");

    let bobs_stream = open_stream(&app, &path, &bob).await;
    assert_eq!(bobs_stream.status().code, 200);
    let second = open_stream(&app, &path, &bob).await;
    assert_eq!(second.status().code, 429);
    let body: Value = serde_json::from_str(&second.into_string().await.unwrap_or_default())
        .expect("problem json");
    assert_eq!(body["type"], "https://gantry.dev/problems/quota-exceeded");

    // Removing bob ends his open stream at the next re-check.
    app.delete(&format!("/v1/orgs/{org}/members/bob"), &alice)
        .await
        .assert_status(204);
    assert!(
        ends_within(bobs_stream, Duration::from_secs(20)).await,
        "a removed member's stream stayed open"
    );

    // A token that expires in two seconds: the stream ends then, and its slot is free again.
    let mut claims = app.issuer.claims("alice");
    claims.insert(
        "exp".into(),
        json!(jsonwebtoken::get_current_timestamp() + 2),
    );
    let short = app.issuer.sign(&claims);
    let expiring = open_stream(&app, &path, &short).await;
    assert_eq!(expiring.status().code, 200);
    assert!(
        ends_within(expiring, Duration::from_secs(20)).await,
        "a stream outlived its token"
    );
    let again = open_stream(&app, &path, &alice).await;
    assert_eq!(again.status().code, 200, "the slot was not given back");
}

/// Deleting an org while a workspace is being created in it never leaves a live workspace in a
/// deleted org: one of the two requests loses (the org row is locked by both).
async fn org_delete_races_workspace_create(backend: Backend) {
    let app = spawn!(backend, "org_delete_races_workspace_create", &[]);
    let alice = app.token("alice");
    for round in 0..15 {
        let org = app.create_org(&alice, &format!("race-{round}")).await;
        let create_path = format!("/v1/orgs/{org}/workspaces");
        let org_path = format!("/v1/orgs/{org}");
        let (created, deleted) = tokio::join!(
            app.post(
                &create_path,
                &alice,
                json!({"name": "dev", "plan": "shared"})
            ),
            app.delete(&org_path, &alice),
        );
        let created = created.status.code;
        let deleted = deleted.status.code;
        assert!(
            !(created == 202 && deleted == 204),
            "round {round}: the workspace was created and the org deleted"
        );
        assert!(
            created == 202 || deleted == 204,
            "round {round}: neither won ({created}, {deleted})"
        );
    }
}

on_each_backend!(
    org_delete_races_workspace_create,
    only_bearer_tokens,
    strict_input,
    quotas,
    write_rate_limit,
    event_stream_limits
);

/// With embedded dev auth, a non-loopback `ROCKET_ADDRESS` is refused (exit 2) unless
/// `GANTRY_ALLOW_DEV_AUTH_ON_NETWORK=true`.
#[test]
fn dev_auth_is_not_served_on_a_network_address() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = gantry(dir.path())
        .arg("--server")
        .env("ROCKET_ADDRESS", "0.0.0.0")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("run gantry");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("GANTRY_ALLOW_DEV_AUTH_ON_NETWORK"),
        "the message names the override: {stderr}"
    );

    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        gantry::install_crypto_provider();
        let (_server, base) = serve(
            gantry(dir.path())
                .arg("--server")
                .env("ROCKET_ADDRESS", "0.0.0.0")
                .env("GANTRY_ALLOW_DEV_AUTH_ON_NETWORK", "true"),
        )
        .await;
        let live = reqwest::get(format!("{base}/health/live"))
            .await
            .expect("live");
        assert_eq!(live.status(), 200);
    });
}

/// `GANTRY_METRICS_PORT` serves `/metrics` alone on that port and not on `ROCKET_PORT`.
#[test]
fn metrics_can_have_their_own_port() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        gantry::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let metrics_port = free_port();
        let (_server, base) = serve(
            gantry(dir.path())
                .arg("--server")
                .env("GANTRY_METRICS_PORT", metrics_port.to_string()),
        )
        .await;
        let metrics_url = format!("http://127.0.0.1:{metrics_port}/metrics");
        let metrics = eventually(Duration::from_secs(30), || async {
            reqwest::get(&metrics_url)
                .await
                .map_err(|e| format!("metrics port not serving: {e}"))
        })
        .await;
        assert_eq!(metrics.status(), 200);
        let text = metrics.text().await.unwrap_or_default();
        assert!(text.contains("# TYPE"), "{text}");
        let main = reqwest::get(format!("{base}/metrics"))
            .await
            .expect("main port");
        assert_eq!(main.status(), 404, "/metrics is still on ROCKET_PORT");
    });
}

/// A method Rocket has no name for (`QUERY`, `FOO`) on a known path is `405` with `Allow` on the
/// wire too (Rocket refuses it before routing); on an unknown path it stays `404`/`400`.
#[test]
fn unknown_methods_are_405_on_the_wire() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        gantry::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let (_server, base) = serve(gantry(dir.path()).arg("--server")).await;
        let client = reqwest::Client::new();
        let mut answers = Vec::new();
        for method in ["QUERY", "FOO"] {
            let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
            let response = client
                .request(method.clone(), format!("{base}/v1/orgs"))
                .send()
                .await
                .expect("send");
            let allow = response
                .headers()
                .get("allow")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let content_type = response
                .headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            answers.push((method, response.status().as_u16(), allow, content_type));
        }
        for (method, status, allow, content_type) in answers {
            assert_eq!(status, 405, "{method}");
            assert!(
                allow.contains("GET") && allow.contains("POST"),
                "{method}: {allow:?}"
            );
            assert_eq!(content_type, "application/problem+json", "{method}");
        }
    });
}
