//! The transactional outbox as clients see it: every change has its event, a failed change has
//! none, and the events list and SSE stream show one organization's events only, in order.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp};
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

macro_rules! spawn {
    ($backend:expr, $name:expr) => {
        match TestApp::spawn($backend, $name).await {
            Some(app) => app,
            None => return,
        }
    };
}

async fn outbox_rows(app: &TestApp) -> i64 {
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("db");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT COUNT(*) AS n FROM outbox_events",
        ))
        .await
        .expect("count")
        .expect("row");
    let n: i64 = row.try_get("", "n").expect("n");
    let _ = db.close().await;
    n
}

fn types(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn every_change_has_its_event(backend: Backend) {
    let app = spawn!(backend, "every_change_has_its_event");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.patch(
        &format!("/v1/orgs/{org}"),
        &alice,
        json!({"name": "Acme 2"}),
    )
    .await
    .assert_status(200);
    app.add_member(&alice, &org, "bob", "viewer").await;
    app.patch(
        &format!("/v1/orgs/{org}/members/bob"),
        &alice,
        json!({"role": "member"}),
    )
    .await
    .assert_status(200);
    app.delete(&format!("/v1/orgs/{org}/members/bob"), &alice)
        .await
        .assert_status(204);
    let ws = app.create_workspace(&alice, &org, "dev").await;
    let project = app.create_project(&alice, &org, &ws, "shop").await;
    app.patch(
        &format!("/v1/orgs/{org}/projects/{project}"),
        &alice,
        json!({"name": "store"}),
    )
    .await
    .assert_status(200);
    app.request(
        "PUT",
        &format!("/v1/orgs/{org}/projects/{project}/graph"),
        Some(&alice),
        Some(json!({"graph": {"nodes": [], "edges": []}})),
        &[("If-Match", "\"0\"")],
    )
    .await
    .assert_status(200);
    app.delete(&format!("/v1/orgs/{org}/projects/{project}"), &alice)
        .await
        .assert_status(204);
    app.delete(&format!("/v1/orgs/{org}/workspaces/{ws}"), &alice)
        .await
        .assert_status(202);
    // Repeating a deletion request records no second command.
    app.delete(&format!("/v1/orgs/{org}/workspaces/{ws}"), &alice)
        .await
        .assert_status(202);

    let page = app.get(&format!("/v1/orgs/{org}/events"), &alice).await;
    page.assert_status(200);
    assert_eq!(
        types(&page.body),
        [
            "org.created",
            "org.updated",
            "member.added",
            "member.role_changed",
            "member.removed",
            "workspace.requested",
            "project.created",
            "project.updated",
            "project.graph_updated",
            "project.deleted",
            "workspace.deletion_requested",
        ]
    );
    let first = &page.body["items"][0];
    assert_eq!(first["org_id"], org.as_str());
    assert_eq!(first["aggregate"], json!({"type": "org", "id": org}));
    assert_eq!(first["data"]["slug"], "acme");
    let requested = &page.body["items"][5];
    assert_eq!(
        requested["aggregate"],
        json!({"type": "workspace", "id": ws})
    );
    assert_eq!(requested["data"]["status"], "pending");
    insta::assert_json_snapshot!("event_envelope", first, {
        ".id" => "[uuid]", ".org_id" => "[uuid]", ".aggregate.id" => "[uuid]",
        ".occurred_at" => "[datetime]", ".data.id" => "[uuid]",
        ".data.created_at" => "[datetime]", ".data.updated_at" => "[datetime]",
        ".request_id" => "[request-id]"
    });

    // Filters and cursors.
    let filtered = app
        .get(
            &format!("/v1/orgs/{org}/events?type=workspace.*,org.created"),
            &alice,
        )
        .await;
    assert_eq!(
        types(&filtered.body),
        [
            "org.created",
            "workspace.requested",
            "workspace.deletion_requested"
        ]
    );
    let first_two = app
        .get(&format!("/v1/orgs/{org}/events?limit=2"), &alice)
        .await;
    assert_eq!(types(&first_two.body), ["org.created", "org.updated"]);
    let cursor = first_two.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let rest = app
        .get(
            &format!("/v1/orgs/{org}/events?after={cursor}&limit=1"),
            &alice,
        )
        .await;
    assert_eq!(types(&rest.body), ["member.added"]);
    let end = page.body["next_cursor"]
        .as_str()
        .expect("cursor")
        .to_owned();
    let empty = app
        .get(&format!("/v1/orgs/{org}/events?after={end}"), &alice)
        .await;
    assert_eq!(types(&empty.body), Vec::<String>::new());
    assert_eq!(
        empty.body["next_cursor"],
        end.as_str(),
        "pollers keep their cursor"
    );
    app.get(&format!("/v1/orgs/{org}/events?after=abc"), &alice)
        .await
        .assert_problem(400);

    // Another org's events never show, and outsiders get 404.
    let mallory = app.token("mallory");
    let other = app.create_org(&mallory, "evil").await;
    let theirs = app.get(&format!("/v1/orgs/{other}/events"), &mallory).await;
    assert_eq!(types(&theirs.body), ["org.created"]);
    app.get(&format!("/v1/orgs/{org}/events"), &mallory)
        .await
        .assert_problem(404);
    app.get(&format!("/v1/orgs/{org}/events/stream"), &mallory)
        .await
        .assert_problem(404);
}

async fn failed_changes_leave_no_event(backend: Backend) {
    let app = spawn!(backend, "failed_changes_leave_no_event");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let ws = app.create_workspace(&alice, &org, "dev").await;
    app.create_project(&alice, &org, &ws, "shop").await;
    let before = outbox_rows(&app).await;
    assert_eq!(before, 3);

    // Each of these fails inside (or before) its transaction.
    app.post("/v1/orgs", &alice, json!({"name": "x", "slug": "acme"}))
        .await
        .assert_problem(409);
    app.create_org(&app.token("bob"), "bobs").await;
    app.post(
        &format!("/v1/orgs/{org}/workspaces"),
        &alice,
        json!({"name": "dev", "plan": "shared"}),
    )
    .await
    .assert_problem(409);
    app.post(
        &format!("/v1/orgs/{org}/projects"),
        &alice,
        json!({"name": "shop", "workspace_id": ws}),
    )
    .await
    .assert_problem(409);
    app.patch(
        &format!("/v1/orgs/{org}/members/alice"),
        &alice,
        json!({"role": "viewer"}),
    )
    .await
    .assert_problem(409);
    app.delete(&format!("/v1/orgs/{org}"), &alice)
        .await
        .assert_problem(409);
    assert_eq!(
        outbox_rows(&app).await,
        before + 1,
        "only bob's org.created was added"
    );
}

async fn sse_stream_resumes_and_is_scoped(backend: Backend) {
    let app = spawn!(backend, "sse_stream_resumes_and_is_scoped");
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.create_workspace(&alice, &org, "dev").await;
    let mallory = app.token("mallory");
    app.create_org(&mallory, "evil").await;

    // Resume from the beginning with Last-Event-ID: 0.
    let response = app
        .client
        .get(format!("/v1/orgs/{org}/events/stream"))
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {alice}"),
        ))
        .header(rocket::http::Header::new("Last-Event-ID", "0"))
        .dispatch()
        .await;
    assert_eq!(response.status().code, 200);
    assert_eq!(
        response.content_type().map(|c| c.to_string()),
        Some("text/event-stream".to_owned())
    );
    let mut response = response;
    let mut text = String::new();
    let mut buffer = [0u8; 4096];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    // A third event arrives while the stream is open.
    app.create_workspace(&alice, &org, "prod").await;
    while text.matches("\n\n").count() < 3 && std::time::Instant::now() < deadline {
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(5),
            response.read(&mut buffer),
        )
        .await;
        match read {
            Ok(Ok(0)) | Err(_) => break,
            Ok(Ok(n)) => text.push_str(&String::from_utf8_lossy(&buffer[..n])),
            Ok(Err(e)) => panic!("stream read failed: {e}"),
        }
    }
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event:"))
        .map(str::trim)
        .collect();
    assert_eq!(
        events,
        ["org.created", "workspace.requested", "workspace.requested"],
        "{text}"
    );
    assert!(text.lines().any(|l| l.starts_with("id:")), "{text}");
    assert!(
        !text.contains("\"evil\""),
        "another org's event leaked: {text}"
    );
    let data: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data:"))
        .filter_map(|d| serde_json::from_str(d.trim()).ok())
        .collect();
    // `all` holds for no events at all: the stream must carry some for the check to mean anything.
    assert!(!data.is_empty(), "{text}");
    assert!(data.iter().all(|d| d["org_id"] == org.as_str()), "{text}");
}

on_each_backend!(
    every_change_has_its_event,
    failed_changes_leave_no_event,
    sse_stream_resumes_and_is_scoped
);
