//! Org secrets through HTTP: write-only values, admin+ writes, member+ listing, validation, and
//! isolation between organizations. No response ever contains a value.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp, TestResponse};
use serde_json::{json, Value};

macro_rules! spawn {
    ($backend:expr, $name:expr) => {
        match TestApp::spawn($backend, $name).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// Values that must never come back.
const TOKEN: &str = "ghp_s3cr3tTOKENvalue0123456789";
const TOKEN_2: &str = "deploy-bot:glpat-an0ther-s3cret";
const SSH_KEY: &str = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n-----END OPENSSH PRIVATE KEY-----\n";

/// Asserts no secret value (or a recognizable piece of one) is in `response`.
#[track_caller]
fn assert_hidden(response: &TestResponse) {
    for value in [
        TOKEN,
        TOKEN_2,
        SSH_KEY,
        "glpat-an0ther",
        "b3BlbnNzaC1rZXktdjE",
    ] {
        assert!(
            !response.text.contains(value),
            "a secret value leaked: {}",
            response.text
        );
    }
    assert!(
        !response.text.contains("\"value\""),
        "a value field: {}",
        response.text
    );
}

async fn put(app: &TestApp, token: &str, path: &str, body: Value) -> TestResponse {
    let response = app.request("PUT", path, Some(token), Some(body), &[]).await;
    assert_hidden(&response);
    response
}

async fn get(app: &TestApp, token: &str, path: &str) -> TestResponse {
    let response = app.get(path, token).await;
    assert_hidden(&response);
    response
}

async fn delete(app: &TestApp, token: &str, path: &str) -> TestResponse {
    let response = app.delete(path, token).await;
    assert_hidden(&response);
    response
}

/// The names listed at `secrets`, in order.
async fn names(app: &TestApp, token: &str, secrets: &str) -> Vec<String> {
    let response = get(app, token, secrets).await;
    response.assert_status(200);
    response.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["name"].as_str().expect("name").to_owned())
        .collect()
}

/// The stored value, read the way the codegen worker reads it.
async fn stored_value(app: &TestApp, org: &str, name: &str) -> Option<String> {
    let db = gantry::store::connect(&app.database_url)
        .await
        .expect("connect");
    let org = org.parse().expect("uuid");
    let value = gantry::store::secrets::get_value(&db, &common::secrets_cipher(), org, name)
        .await
        .expect("query");
    let _ = db.close().await;
    value
}

async fn secret_lifecycle(backend: Backend) {
    let app = spawn!(backend, "secret_lifecycle");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.add_member(&alice, &org, "ada", "admin").await;
    let ada = app.token("ada");
    let secrets = format!("/v1/orgs/{org}/secrets");

    assert_eq!(names(&app, &alice, &secrets).await, Vec::<String>::new());
    let created = put(
        &app,
        &alice,
        &format!("{secrets}/git-token"),
        json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
    )
    .await;
    created.assert_status(204);
    assert!(created.text.is_empty(), "204 has no body: {}", created.text);
    put(
        &app,
        &alice,
        &format!("{secrets}/deploy-key"),
        json!({"value": SSH_KEY, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);

    let list = get(&app, &alice, &secrets).await;
    list.assert_status(200);
    insta::assert_json_snapshot!("secret_list", list.body, {
        ".items[].created_at" => "[datetime]", ".items[].updated_at" => "[datetime]"
    });
    assert_eq!(
        stored_value(&app, &org, "git-token").await.as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        stored_value(&app, &org, "deploy-key").await.as_deref(),
        Some(SSH_KEY)
    );

    // Replacing keeps who created it and when; only the value and updated_at change.
    let before = list.body["items"][1].clone();
    put(
        &app,
        &ada,
        &format!("{secrets}/git-token"),
        json!({"value": TOKEN_2, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);
    let after = get(&app, &alice, &secrets).await.body["items"][1].clone();
    assert_eq!(after["name"], "git-token");
    assert_eq!(after["created_by"], "alice");
    assert_eq!(after["created_at"], before["created_at"]);
    let parse = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("timestamp")).expect("rfc3339")
    };
    assert!(parse(&after["updated_at"]) >= parse(&before["updated_at"]));
    assert_eq!(
        stored_value(&app, &org, "git-token").await.as_deref(),
        Some(TOKEN_2)
    );
    assert_eq!(
        names(&app, &alice, &secrets).await,
        ["deploy-key", "git-token"]
    );

    // Cursor pagination, by name.
    let first = get(&app, &alice, &format!("{secrets}?limit=1")).await;
    first.assert_status(200);
    assert_eq!(first.body["items"][0]["name"], "deploy-key");
    let cursor = first.body["next_cursor"].as_str().expect("a next page");
    let second = get(&app, &alice, &format!("{secrets}?limit=1&cursor={cursor}")).await;
    assert_eq!(second.body["items"][0]["name"], "git-token");
    assert_eq!(second.body["next_cursor"], Value::Null);

    let deleted = delete(&app, &ada, &format!("{secrets}/git-token")).await;
    deleted.assert_status(204);
    assert_eq!(names(&app, &alice, &secrets).await, ["deploy-key"]);
    assert_eq!(stored_value(&app, &org, "git-token").await, None);
    delete(&app, &ada, &format!("{secrets}/git-token"))
        .await
        .assert_problem(404);
    delete(&app, &ada, &format!("{secrets}/never-existed"))
        .await
        .assert_problem(404);
    // Deleted, then set again: a fresh secret.
    put(
        &app,
        &ada,
        &format!("{secrets}/git-token"),
        json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);
    let recreated = get(&app, &alice, &secrets).await;
    assert_eq!(recreated.body["items"][1]["created_by"], "ada");
}

async fn secret_roles(backend: Backend) {
    let app = spawn!(backend, "secret_roles");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    for (sub, role) in [("vic", "viewer"), ("mia", "member"), ("ada", "admin")] {
        app.add_member(&alice, &org, sub, role).await;
    }
    let (vic, mia, ada) = (app.token("vic"), app.token("mia"), app.token("ada"));
    let secrets = format!("/v1/orgs/{org}/secrets");
    let secret = format!("{secrets}/git-token");

    for token in [&vic, &mia] {
        put(
            &app,
            token,
            &secret,
            json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
        )
        .await
        .assert_problem(403);
    }
    assert_eq!(stored_value(&app, &org, "git-token").await, None);
    put(
        &app,
        &ada,
        &secret,
        json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);

    // Members list names (to reference them in jobs); viewers do not.
    get(&app, &vic, &secrets).await.assert_problem(403);
    assert_eq!(names(&app, &mia, &secrets).await, ["git-token"]);
    assert_eq!(names(&app, &ada, &secrets).await, ["git-token"]);

    for token in [&vic, &mia] {
        delete(&app, token, &secret).await.assert_problem(403);
    }
    assert_eq!(names(&app, &alice, &secrets).await, ["git-token"]);
    delete(&app, &ada, &secret).await.assert_status(204);

    // A platform admin may do everything.
    let root = app.admin_token("root");
    put(
        &app,
        &root,
        &secret,
        json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);
    assert_eq!(names(&app, &root, &secrets).await, ["git-token"]);
    delete(&app, &root, &secret).await.assert_status(204);
}

async fn secret_isolation(backend: Backend) {
    let app = spawn!(backend, "secret_isolation");
    let alice = app.token("alice");
    let mallory = app.token("mallory");
    let a = app.create_org(&alice, "org-a").await;
    let b = app.create_org(&mallory, "org-b").await;
    put(
        &app,
        &alice,
        &format!("/v1/orgs/{a}/secrets/git-token"),
        json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);
    put(
        &app,
        &alice,
        &format!("/v1/orgs/{a}/secrets/only-in-a"),
        json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);

    let unknown = get(
        &app,
        &mallory,
        &format!("/v1/orgs/{}", uuid::Uuid::new_v4()),
    )
    .await;
    unknown.assert_problem(404);
    // Another organization's secrets: 404 like an organization that exists nowhere.
    for response in [
        get(&app, &mallory, &format!("/v1/orgs/{a}/secrets")).await,
        put(
            &app,
            &mallory,
            &format!("/v1/orgs/{a}/secrets/git-token"),
            json!({"value": TOKEN_2, "allowed_hosts": ["github.com"]}),
        )
        .await,
        put(
            &app,
            &mallory,
            &format!("/v1/orgs/{a}/secrets/new-one"),
            json!({"value": TOKEN_2, "allowed_hosts": ["github.com"]}),
        )
        .await,
        delete(&app, &mallory, &format!("/v1/orgs/{a}/secrets/git-token")).await,
    ] {
        response.assert_problem(404);
        assert_eq!(response.body, unknown.body);
    }
    assert_eq!(
        stored_value(&app, &a, "git-token").await.as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        names(&app, &alice, &format!("/v1/orgs/{a}/secrets")).await,
        ["git-token", "only-in-a"]
    );

    // The same name in two organizations: two secrets.
    put(
        &app,
        &mallory,
        &format!("/v1/orgs/{b}/secrets/git-token"),
        json!({"value": TOKEN_2, "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);
    assert_eq!(
        names(&app, &mallory, &format!("/v1/orgs/{b}/secrets")).await,
        ["git-token"]
    );
    assert_eq!(
        stored_value(&app, &a, "git-token").await.as_deref(),
        Some(TOKEN)
    );
    assert_eq!(
        stored_value(&app, &b, "git-token").await.as_deref(),
        Some(TOKEN_2)
    );
    // A's secret is not B's to delete, even by name.
    delete(&app, &mallory, &format!("/v1/orgs/{b}/secrets/only-in-a"))
        .await
        .assert_problem(404);
    assert_eq!(
        stored_value(&app, &a, "only-in-a").await.as_deref(),
        Some(TOKEN)
    );
}

async fn secret_validation(backend: Backend) {
    let app = spawn!(backend, "secret_validation");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let secrets = format!("/v1/orgs/{org}/secrets");
    let pointers = |response: &TestResponse| -> Vec<String> {
        response.body["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| e["pointer"].as_str().expect("pointer").to_owned())
            .collect()
    };

    for name in [
        "Git-Token",
        "git_token",
        "-git",
        "git-",
        "a.b",
        &"a".repeat(64),
    ] {
        let response = put(
            &app,
            &alice,
            &format!("{secrets}/{name}"),
            json!({"value": TOKEN, "allowed_hosts": ["github.com"]}),
        )
        .await;
        response.assert_problem(422);
        assert_eq!(pointers(&response), ["/name"], "{name}");
    }
    let empty = put(
        &app,
        &alice,
        &format!("{secrets}/git-token"),
        json!({"value": "", "allowed_hosts": ["github.com"]}),
    )
    .await;
    empty.assert_problem(422);
    assert_eq!(pointers(&empty), ["/value"]);
    let both = put(
        &app,
        &alice,
        &format!("{secrets}/Bad_Name"),
        json!({"value": "", "allowed_hosts": ["github.com"]}),
    )
    .await;
    assert_eq!(pointers(&both), ["/name", "/value"]);

    let limit = 64 * 1024;
    let too_big = put(
        &app,
        &alice,
        &format!("{secrets}/big"),
        json!({"value": "x".repeat(limit + 1), "allowed_hosts": ["github.com"]}),
    )
    .await;
    too_big.assert_problem(422);
    assert_eq!(pointers(&too_big), ["/value"]);
    put(
        &app,
        &alice,
        &format!("{secrets}/big"),
        json!({"value": "x".repeat(limit), "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);

    // Wrong shapes are refused without quoting what was sent.
    for (body, pointer) in [
        (
            json!({"value": 987654321, "allowed_hosts": ["github.com"]}),
            "/value",
        ),
        (
            json!({"value": ["ghp_array_secret"], "allowed_hosts": ["github.com"]}),
            "/value",
        ),
        (json!({"allowed_hosts": ["github.com"]}), "/value"),
        (
            json!({"value": TOKEN, "extra": 1, "allowed_hosts": ["github.com"]}),
            "",
        ),
    ] {
        let response = put(&app, &alice, &format!("{secrets}/git-token"), body.clone()).await;
        response.assert_problem(422);
        let pointer_seen = pointers(&response);
        if !pointer.is_empty() {
            assert_eq!(pointer_seen, [pointer], "{body}");
        }
        assert!(!response.text.contains("987654321"), "{}", response.text);
        assert!(
            !response.text.contains("ghp_array_secret"),
            "{}",
            response.text
        );
    }
    let malformed = app
        .request(
            "PUT",
            &format!("{secrets}/git-token"),
            Some(&alice),
            None,
            &[("Content-Type", "application/json")],
        )
        .await;
    assert!(malformed.status.code >= 400, "{}", malformed.text);

    // Nothing was stored by the refused requests (only `big`).
    assert_eq!(names(&app, &alice, &secrets).await, ["big"]);
    get(&app, &alice, &format!("{secrets}?limit=0"))
        .await
        .assert_problem(400);
}

async fn secrets_go_with_their_org(backend: Backend) {
    let app = spawn!(backend, "secrets_go_with_their_org");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    put(
        &app,
        &alice,
        &format!("/v1/orgs/{org}/secrets/git"),
        json!({"value": "s3cret", "allowed_hosts": ["github.com"]}),
    )
    .await
    .assert_status(204);
    assert_eq!(
        stored_value(&app, &org, "git").await.as_deref(),
        Some("s3cret")
    );
    app.delete(&format!("/v1/orgs/{org}"), &alice)
        .await
        .assert_status(204);
    assert_eq!(stored_value(&app, &org, "git").await, None);
}

async fn secrets_are_bound_to_hosts(backend: Backend) {
    let app = spawn!(backend, "secrets_are_bound_to_hosts");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let secret = format!("/v1/orgs/{org}/secrets/git-token");
    let pointers = |response: &TestResponse| -> Vec<String> {
        response.body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors: {} {}", response.status, response.text))
            .iter()
            .map(|e| e["pointer"].as_str().expect("pointer").to_owned())
            .collect()
    };

    // A new secret must say where it may be sent.
    let missing = put(&app, &alice, &secret, json!({"value": TOKEN})).await;
    missing.assert_problem(422);
    assert_eq!(pointers(&missing), ["/allowed_hosts"]);
    let bad = put(
        &app,
        &alice,
        &secret,
        json!({"value": TOKEN, "allowed_hosts": ["github.com", "https://x.example/", "*.corp", "h:99999"]}),
    )
    .await;
    bad.assert_problem(422);
    assert_eq!(
        pointers(&bad),
        ["/allowed_hosts/1", "/allowed_hosts/2", "/allowed_hosts/3"]
    );
    let no_value = put(&app, &alice, &secret, json!({"allowed_hosts": []})).await;
    assert_eq!(pointers(&no_value), ["/value"]);
    let bad_known = put(
        &app,
        &alice,
        &secret,
        json!({"value": TOKEN, "allowed_hosts": [], "known_hosts": "not a key"}),
    )
    .await;
    assert_eq!(pointers(&bad_known), ["/known_hosts"]);

    put(
        &app,
        &alice,
        &secret,
        json!({"value": TOKEN, "allowed_hosts": ["GitHub.com", "git.example.com:8443", "github.com"]}),
    )
    .await
    .assert_status(204);
    let listed = get(&app, &alice, &format!("/v1/orgs/{org}/secrets")).await;
    assert_eq!(
        listed.body["items"][0]["allowed_hosts"],
        json!(["github.com", "git.example.com:8443"])
    );
    assert_eq!(listed.body["items"][0]["known_hosts"], Value::Null);

    // The binding alone can change (the admin need not know the write-only value).
    let known = "github.com ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl";
    put(
        &app,
        &alice,
        &secret,
        json!({"allowed_hosts": ["gitlab.com"], "known_hosts": known}),
    )
    .await
    .assert_status(204);
    let listed = get(&app, &alice, &format!("/v1/orgs/{org}/secrets")).await;
    assert_eq!(
        listed.body["items"][0]["allowed_hosts"],
        json!(["gitlab.com"])
    );
    assert_eq!(listed.body["items"][0]["known_hosts"], known);
    assert_eq!(
        stored_value(&app, &org, "git-token").await.as_deref(),
        Some(TOKEN)
    );
    // Setting only the value keeps the binding.
    put(&app, &alice, &secret, json!({"value": TOKEN_2}))
        .await
        .assert_status(204);
    let listed = get(&app, &alice, &format!("/v1/orgs/{org}/secrets")).await;
    assert_eq!(
        listed.body["items"][0]["allowed_hosts"],
        json!(["gitlab.com"])
    );
    assert_eq!(
        stored_value(&app, &org, "git-token").await.as_deref(),
        Some(TOKEN_2)
    );
}

on_each_backend!(
    secrets_are_bound_to_hosts,
    secret_lifecycle,
    secrets_go_with_their_org,
    secret_roles,
    secret_isolation,
    secret_validation
);
