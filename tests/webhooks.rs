//! Webhook management through HTTP: secrets shown once, rotation, validation, outbound-address
//! safety, roles.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp};
use serde_json::json;

macro_rules! spawn {
    ($backend:expr, $name:expr) => {
        match TestApp::spawn($backend, $name).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// A public address literal: accepted without any DNS lookup or connection.
const PUBLIC_URL: &str = "https://93.184.215.14/hooks/gantry";

async fn webhook_lifecycle(backend: Backend) {
    let app = spawn!(backend, "webhook_lifecycle");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let hooks = format!("/v1/orgs/{org}/webhooks");

    let created = app
        .post(
            &hooks,
            &alice,
            json!({"url": PUBLIC_URL, "events": ["workspace.*", "codegen.succeeded"], "description": "CI"}),
        )
        .await;
    created.assert_status(201);
    let id = created.id();
    assert_eq!(
        created.header("location"),
        Some(format!("{hooks}/{id}").as_str())
    );
    let secret = created.body["secret"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("whsec_"));
    insta::assert_json_snapshot!("webhook_created", created.body, {
        ".id" => "[uuid]", ".org_id" => "[uuid]", ".secret" => "[secret]",
        ".created_at" => "[datetime]", ".updated_at" => "[datetime]"
    });

    // The secret is never shown again.
    let got = app.get(&format!("{hooks}/{id}"), &alice).await;
    got.assert_status(200);
    assert!(got.body.get("secret").is_none());
    assert!(!got.text.contains(&secret));
    let list = app.get(&hooks, &alice).await;
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert!(!list.text.contains(&secret));

    let patched = app
        .patch(
            &format!("{hooks}/{id}"),
            &alice,
            json!({"events": ["*"], "description": null}),
        )
        .await;
    patched.assert_status(200);
    assert_eq!(patched.body["events"], json!(["*"]));
    assert!(patched.body["description"].is_null());
    assert_eq!(patched.body["url"], PUBLIC_URL);

    let rotated = app
        .post(&format!("{hooks}/{id}/rotate-secret"), &alice, json!({}))
        .await;
    rotated.assert_status(200);
    let new_secret = rotated.body["secret"].as_str().expect("secret");
    assert!(new_secret.starts_with("whsec_"));
    assert_ne!(new_secret, secret);

    let deliveries = app.get(&format!("{hooks}/{id}/deliveries"), &alice).await;
    deliveries.assert_status(200);
    assert_eq!(deliveries.body["items"], json!([]));
    app.post(
        &format!("{hooks}/{id}/deliveries/{}/redeliver", uuid::Uuid::new_v4()),
        &alice,
        json!({}),
    )
    .await
    .assert_problem(404);

    app.delete(&format!("{hooks}/{id}"), &alice)
        .await
        .assert_status(204);
    app.get(&format!("{hooks}/{id}"), &alice)
        .await
        .assert_problem(404);
}

async fn webhook_validation_and_roles(backend: Backend) {
    let app = spawn!(backend, "webhook_validation_and_roles");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let hooks = format!("/v1/orgs/{org}/webhooks");

    let pointer_of =
        |body: &serde_json::Value| body["errors"][0]["pointer"].as_str().map(str::to_owned);
    let empty = app
        .post(&hooks, &alice, json!({"url": PUBLIC_URL, "events": []}))
        .await;
    empty.assert_problem(422);
    assert_eq!(pointer_of(&empty.body).as_deref(), Some("/events"));
    let bad_pattern = app
        .post(
            &hooks,
            &alice,
            json!({"url": PUBLIC_URL, "events": ["workspace.*", "Bad"]}),
        )
        .await;
    bad_pattern.assert_problem(422);
    assert_eq!(pointer_of(&bad_pattern.body).as_deref(), Some("/events/1"));

    // Outbound safety: loopback, private, link-local (cloud metadata), non-http are refused.
    for url in [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.0.0.5/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "ftp://93.184.215.14/hook",
        "https://user:pass@93.184.215.14/hook",
    ] {
        let refused = app
            .post(&hooks, &alice, json!({"url": url, "events": ["*"]}))
            .await;
        refused.assert_problem(422);
        assert_eq!(pointer_of(&refused.body).as_deref(), Some("/url"), "{url}");
    }

    let created = app
        .post(&hooks, &alice, json!({"url": PUBLIC_URL, "events": ["*"]}))
        .await;
    created.assert_status(201);
    let id = created.id();
    let private = app
        .patch(
            &format!("{hooks}/{id}"),
            &alice,
            json!({"url": "http://192.168.0.10/"}),
        )
        .await;
    private.assert_problem(422);

    // Admin+ only; outsiders see nothing.
    app.add_member(&alice, &org, "mia", "member").await;
    let mia = app.token("mia");
    app.get(&hooks, &mia).await.assert_problem(403);
    app.post(&hooks, &mia, json!({"url": PUBLIC_URL, "events": ["*"]}))
        .await
        .assert_problem(403);
    app.post(&format!("{hooks}/{id}/rotate-secret"), &mia, json!({}))
        .await
        .assert_problem(403);
    let mallory = app.token("mallory");
    app.get(&format!("{hooks}/{id}"), &mallory)
        .await
        .assert_problem(404);
    let other = app.create_org(&mallory, "evil").await;
    app.get(&format!("/v1/orgs/{other}/webhooks/{id}"), &mallory)
        .await
        .assert_problem(404);
}

on_each_backend!(webhook_lifecycle, webhook_validation_and_roles);
