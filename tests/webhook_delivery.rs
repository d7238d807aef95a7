//! Webhook deliveries end to end: a publisher process POSTs signed envelopes to a receiver on
//! loopback, retries with backoff, gives up after the configured attempts, never follows
//! redirects, re-checks the destination at send time, and redelivers on request.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use aws_lc_rs::hmac;
use common::process::{gantry, signal};
use common::{eventually, Backend, TestApp};
use serde_json::{json, Value};
use std::process::{Child, Stdio};
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const ALLOW_LOOPBACK: (&str, &str) = ("GANTRY_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8");

fn start_publisher(database_url: &str, allow_loopback: bool) -> (Child, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cmd = gantry(dir.path());
    cmd.args(["--workers", "outbox-publisher"])
        .env("DATABASE_URL", database_url)
        .env("GANTRY_OUTBOX_POLL_INTERVAL", "50ms")
        .env("GANTRY_WEBHOOK_BACKOFF_BASE", "50ms")
        .env("GANTRY_WEBHOOK_BACKOFF_CAP", "200ms")
        .env("GANTRY_WEBHOOK_MAX_ATTEMPTS", "3")
        .env("GANTRY_WEBHOOK_TIMEOUT", "2s")
        // A proxy that refuses every connection: deliveries go direct (`.no_proxy()`), or the
        // delivery tests fail.
        .env("HTTP_PROXY", "http://127.0.0.1:9")
        .env("HTTPS_PROXY", "http://127.0.0.1:9")
        .env("ALL_PROXY", "http://127.0.0.1:9")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if allow_loopback {
        cmd.env(ALLOW_LOOPBACK.0, ALLOW_LOOPBACK.1);
    }
    (cmd.spawn().expect("spawn publisher"), dir)
}

/// Waits until the webhook's only delivery reaches a final state; returns it.
async fn final_delivery(app: &TestApp, token: &str, org: &str, hook: &str) -> Value {
    let path = format!("/v1/orgs/{org}/webhooks/{hook}/deliveries");
    eventually(Duration::from_secs(30), || async {
        let page = app.get(&path, token).await;
        page.assert_status(200);
        match page.body["items"]
            .as_array()
            .and_then(|items| items.first())
        {
            Some(delivery) if delivery["status"] != "pending" => Ok(delivery.clone()),
            _ => Err(format!("delivery did not finish: {}", page.text)),
        }
    })
    .await
}

fn hex_hmac(secret: &str, message: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::sign(&key, message)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

async fn create_hook(app: &TestApp, token: &str, org: &str, url: String) -> (String, String) {
    let created = app
        .post(
            &format!("/v1/orgs/{org}/webhooks"),
            token,
            json!({"url": url, "events": ["workspace.*"]}),
        )
        .await;
    created.assert_status(201);
    (
        created.id(),
        created.body["secret"].as_str().expect("secret").to_owned(),
    )
}

async fn signed_delivery_with_retries(backend: Backend) {
    let Some(app) =
        TestApp::spawn_with(backend, "signed_delivery_with_retries", &[ALLOW_LOOPBACK]).await
    else {
        return;
    };
    let receiver = MockServer::start().await;
    // Two failures, then success.
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .with_priority(1)
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/hook"))
        .respond_with(ResponseTemplate::new(204))
        .with_priority(2)
        .mount(&receiver)
        .await;
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let (hook, secret) = create_hook(&app, &alice, &org, format!("{}/hook", receiver.uri())).await;
    let ws = app.create_workspace(&alice, &org, "dev").await;

    let (mut publisher, _dir) = start_publisher(&app.database_url, true);
    let delivery = final_delivery(&app, &alice, &org, &hook).await;
    signal(&publisher, false);
    assert_eq!(publisher.wait().expect("wait").code(), Some(0));

    assert_eq!(delivery["status"], "delivered", "{delivery}");
    assert_eq!(delivery["attempts"], 3);
    assert_eq!(delivery["response_code"], 204);
    assert!(delivery["delivered_at"].is_string());

    let requests = receiver.received_requests().await.expect("recorded");
    assert_eq!(requests.len(), 3);
    let last = requests.last().expect("a request");
    let header = |name: &str| {
        last.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(header("gantry-event"), "workspace.requested");
    assert_eq!(
        header("gantry-delivery"),
        delivery["event_id"].as_str().expect("id")
    );
    assert_eq!(header("content-type"), "application/json");
    // Verify the signature as a receiver would: HMAC-SHA256(secret, "<t>.<raw body>").
    let signature = header("gantry-signature");
    let (t, v1) = signature
        .split_once(",v1=")
        .and_then(|(t, v1)| Some((t.strip_prefix("t=")?, v1)))
        .expect("t=…,v1=…");
    let age = chrono::Utc::now().timestamp() - t.parse::<i64>().expect("unix seconds");
    assert!((0..60).contains(&age));
    let mut message = format!("{t}.").into_bytes();
    message.extend_from_slice(&last.body);
    assert_eq!(v1, hex_hmac(&secret, &message));
    let envelope: Value = serde_json::from_slice(&last.body).expect("JSON body");
    assert_eq!(envelope["type"], "workspace.requested");
    assert_eq!(envelope["aggregate"]["id"], ws.as_str());
    assert_eq!(envelope["id"], delivery["event_id"]);
}

async fn failures_redirects_and_redelivery(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        "failures_redirects_and_redelivery",
        &[ALLOW_LOOPBACK],
    )
    .await
    else {
        return;
    };
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/down"))
        .respond_with(ResponseTemplate::new(500))
        .mount(&receiver)
        .await;
    Mock::given(method("POST"))
        .and(path("/moved"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}/elsewhere", receiver.uri())),
        )
        .mount(&receiver)
        .await;
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let (down, _) = create_hook(&app, &alice, &org, format!("{}/down", receiver.uri())).await;
    let (moved, _) = create_hook(&app, &alice, &org, format!("{}/moved", receiver.uri())).await;
    app.create_workspace(&alice, &org, "dev").await;

    let (mut publisher, _dir) = start_publisher(&app.database_url, true);
    let failed = final_delivery(&app, &alice, &org, &down).await;
    assert_eq!(failed["status"], "failed", "{failed}");
    assert_eq!(failed["attempts"], 3, "GANTRY_WEBHOOK_MAX_ATTEMPTS");
    assert_eq!(failed["response_code"], 500);
    assert!(failed["last_error"]
        .as_str()
        .is_some_and(|e| e.contains("500")));
    let redirected = final_delivery(&app, &alice, &org, &moved).await;
    assert_eq!(redirected["status"], "failed");
    assert_eq!(redirected["response_code"], 302);
    let requests = receiver.received_requests().await.expect("recorded");
    assert!(
        requests.iter().all(|r| r.url.path() != "/elsewhere"),
        "a redirect was followed"
    );

    // An operator sees the failed deliveries beside dead jobs, as queue `webhooks`.
    let root = app.admin_token("root");
    let dead = app
        .get("/v1/admin/jobs?queue=webhooks&state=dead", &root)
        .await;
    dead.assert_status(200);
    let items = dead.body["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{}", dead.text);
    let listed = items
        .iter()
        .find(|job| job["id"] == failed["id"])
        .expect("the failed delivery is listed");
    assert_eq!(listed["queue"], "webhooks");
    assert_eq!(listed["state"], "dead");
    assert_eq!(listed["attempt"], 3);
    assert_eq!(listed["last_error"], failed["last_error"]);
    assert_eq!(listed["args"]["webhook_id"], down.as_str());
    assert_eq!(listed["args"]["event_type"], "workspace.requested");
    let first = app
        .get("/v1/admin/jobs?queue=webhooks&state=dead&limit=1", &root)
        .await;
    first.assert_status(200);
    let cursor = first.body["next_cursor"].as_str().expect("a second page");
    let second = app
        .get(
            &format!("/v1/admin/jobs?queue=webhooks&state=dead&limit=1&cursor={cursor}"),
            &root,
        )
        .await;
    second.assert_status(200);
    assert_ne!(second.body["items"][0]["id"], first.body["items"][0]["id"]);
    app.get("/v1/admin/jobs?queue=webhooks", &alice)
        .await
        .assert_status(403);

    // The receiver recovers; an admin redelivers.
    receiver.reset().await;
    Mock::given(method("POST"))
        .and(path("/down"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let again = app
        .post(
            &format!(
                "/v1/orgs/{org}/webhooks/{down}/deliveries/{}/redeliver",
                failed["id"].as_str().expect("id")
            ),
            &alice,
            json!({}),
        )
        .await;
    again.assert_status(202);
    assert_eq!(again.body["status"], "pending");
    let delivered = final_delivery(&app, &alice, &org, &down).await;
    assert_eq!(delivered["status"], "delivered");
    let dead = app.get("/v1/admin/jobs?queue=webhooks", &root).await;
    assert_eq!(
        dead.body["items"].as_array().map(Vec::len),
        Some(1),
        "a redelivered delivery is no longer dead: {}",
        dead.text
    );
    assert_eq!(
        delivered["attempts"], 1,
        "redelivery starts a fresh attempt budget"
    );
    signal(&publisher, false);
    assert_eq!(publisher.wait().expect("wait").code(), Some(0));
}

/// The destination is checked again when sending: a sender that does not allow loopback
/// refuses to POST there even though the webhook was accepted when created.
async fn destination_rechecked_at_send_time(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        "destination_rechecked_at_send_time",
        &[ALLOW_LOOPBACK],
    )
    .await
    else {
        return;
    };
    let receiver = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200))
        .mount(&receiver)
        .await;
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    // By name, so the send goes through the policy-checking resolver.
    let port = receiver.address().port();
    let (hook, _) = create_hook(&app, &alice, &org, format!("http://localhost:{port}/hook")).await;
    app.create_workspace(&alice, &org, "dev").await;

    let (mut publisher, _dir) = start_publisher(&app.database_url, false);
    let delivery = final_delivery(&app, &alice, &org, &hook).await;
    signal(&publisher, false);
    assert_eq!(publisher.wait().expect("wait").code(), Some(0));
    assert_eq!(delivery["status"], "failed", "{delivery}");
    assert!(
        delivery["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not public")),
        "{delivery}"
    );
    assert!(delivery["response_code"].is_null());
    let requests = receiver.received_requests().await.expect("recorded");
    assert!(requests.is_empty(), "nothing may reach a refused address");
}

on_each_backend!(
    signed_delivery_with_retries,
    failures_redirects_and_redelivery,
    destination_rechecked_at_send_time
);
