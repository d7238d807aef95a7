//! The tenancy API through HTTP: organizations, members, workspaces, projects, graphs.
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

async fn org_lifecycle(backend: Backend) {
    let app = spawn!(backend, "org_lifecycle");
    let alice = app.token("alice");

    let created = app
        .post(
            "/v1/orgs",
            &alice,
            json!({"name": "Acme Inc", "slug": "acme"}),
        )
        .await;
    created.assert_status(201);
    let org_id = created.id();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/orgs/{org_id}").as_str())
    );
    insta::assert_json_snapshot!("org_created", created.body, {
        ".id" => "[uuid]", ".created_at" => "[datetime]", ".updated_at" => "[datetime]"
    });

    let me = app.get("/v1/me", &alice).await;
    me.assert_status(200);
    insta::assert_json_snapshot!("me", me.body, {
        ".orgs[].id" => "[uuid]"
    });

    app.post("/v1/orgs", &alice, json!({"name": "Other", "slug": "acme"}))
        .await
        .assert_problem(409);

    let renamed = app
        .patch(
            &format!("/v1/orgs/{org_id}"),
            &alice,
            json!({"name": "Acme Corp"}),
        )
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.body["name"], "Acme Corp");
    assert_eq!(renamed.body["slug"], "acme");

    let list = app.get("/v1/orgs", &alice).await;
    list.assert_status(200);
    assert_eq!(list.body["items"].as_array().map(Vec::len), Some(1));
    assert!(list.body["next_cursor"].is_null());

    // Bob sees none of it.
    let bob = app.token("bob");
    let bobs = app.get("/v1/orgs", &bob).await;
    assert_eq!(bobs.body["items"].as_array().map(Vec::len), Some(0));
    app.get(&format!("/v1/orgs/{org_id}"), &bob)
        .await
        .assert_problem(404);
    app.get("/v1/orgs?all=true", &bob).await.assert_problem(403);

    // A platform admin sees everything.
    let admin = app.admin_token("root");
    let all = app.get("/v1/orgs?all=true", &admin).await;
    assert_eq!(all.body["items"].as_array().map(Vec::len), Some(1));
    app.get(&format!("/v1/orgs/{org_id}"), &admin)
        .await
        .assert_status(200);

    // Soft delete: gone for everyone, and the slug is free again.
    app.delete(&format!("/v1/orgs/{org_id}"), &alice)
        .await
        .assert_status(204);
    app.get(&format!("/v1/orgs/{org_id}"), &alice)
        .await
        .assert_problem(404);
    app.delete(&format!("/v1/orgs/{org_id}"), &alice)
        .await
        .assert_problem(404);
    app.post("/v1/orgs", &alice, json!({"name": "Acme", "slug": "acme"}))
        .await
        .assert_status(201);
}

async fn validation_errors(backend: Backend) {
    let app = spawn!(backend, "validation_errors");
    let alice = app.token("alice");

    let malformed = app
        .request(
            "POST",
            "/v1/orgs",
            Some(&alice),
            None,
            &[("Content-Type", "application/json")],
        )
        .await;
    malformed.assert_problem(400);
    let raw = app
        .client
        .post("/v1/orgs")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {alice}"),
        ))
        .header(rocket::http::ContentType::JSON)
        .body("{\"name\": ")
        .dispatch()
        .await;
    assert_eq!(raw.status().code, 400);

    let invalid = app
        .post(
            "/v1/orgs",
            &alice,
            json!({"name": "", "slug": "Not A Label"}),
        )
        .await;
    invalid.assert_problem(422);
    insta::assert_json_snapshot!("org_validation", invalid.body);

    let missing = app.post("/v1/orgs", &alice, json!({"name": "x"})).await;
    missing.assert_problem(422);
    assert_eq!(missing.body["errors"][0]["pointer"], "/slug");

    let wrong_type = app
        .post("/v1/orgs", &alice, json!({"name": 5, "slug": "x"}))
        .await;
    wrong_type.assert_problem(422);
    assert_eq!(wrong_type.body["errors"][0]["pointer"], "/name");

    let org_id = app.create_org(&alice, "acme").await;
    let bad_plan = app
        .post(
            &format!("/v1/orgs/{org_id}/workspaces"),
            &alice,
            json!({"name": "dev", "plan": "huge"}),
        )
        .await;
    bad_plan.assert_problem(422);
    assert_eq!(bad_plan.body["errors"][0]["pointer"], "/plan");

    let bad_name = app
        .post(
            &format!("/v1/orgs/{org_id}/workspaces"),
            &alice,
            json!({"name": "Dev_1", "plan": "shared"}),
        )
        .await;
    bad_name.assert_problem(422);
    assert_eq!(bad_name.body["errors"][0]["pointer"], "/name");

    app.get("/v1/orgs?limit=0", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/orgs?limit=201", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/orgs?cursor=%%%", &alice)
        .await
        .assert_problem(400);
    app.get("/v1/nothing-here", &alice)
        .await
        .assert_problem(404);
}

async fn members_and_owners(backend: Backend) {
    let app = spawn!(backend, "members_and_owners");
    let alice = app.token("alice");
    let bob = app.token("bob");
    let carol = app.token("carol");
    let org_id = app.create_org(&alice, "acme").await;
    let members = format!("/v1/orgs/{org_id}/members");

    let added = app
        .post(
            &members,
            &alice,
            json!({"user_sub": "bob", "role": "admin"}),
        )
        .await;
    added.assert_status(201);
    assert_eq!(
        added.header("location"),
        Some(format!("{members}/bob").as_str())
    );
    insta::assert_json_snapshot!("member_added", added.body, {
        ".org_id" => "[uuid]", ".created_at" => "[datetime]", ".updated_at" => "[datetime]"
    });
    app.post(
        &members,
        &alice,
        json!({"user_sub": "bob", "role": "viewer"}),
    )
    .await
    .assert_problem(409);
    app.post(&members, &alice, json!({"user_sub": "x", "role": "root"}))
        .await
        .assert_problem(422);

    // An admin manages members but not owners.
    app.post(
        &members,
        &bob,
        json!({"user_sub": "carol", "role": "member"}),
    )
    .await
    .assert_status(201);
    app.post(&members, &bob, json!({"user_sub": "dave", "role": "owner"}))
        .await
        .assert_problem(403);
    app.patch(&format!("{members}/alice"), &bob, json!({"role": "member"}))
        .await
        .assert_problem(403);
    app.delete(&format!("{members}/alice"), &bob)
        .await
        .assert_problem(403);
    // A member cannot manage members.
    app.post(
        &members,
        &carol,
        json!({"user_sub": "erin", "role": "viewer"}),
    )
    .await
    .assert_problem(403);

    // The last owner cannot be demoted or removed.
    app.patch(
        &format!("{members}/alice"),
        &alice,
        json!({"role": "admin"}),
    )
    .await
    .assert_problem(409);
    app.delete(&format!("{members}/alice"), &alice)
        .await
        .assert_problem(409);

    // With a second owner, the first may step down.
    app.patch(&format!("{members}/bob"), &alice, json!({"role": "owner"}))
        .await
        .assert_status(200);
    app.patch(
        &format!("{members}/alice"),
        &alice,
        json!({"role": "viewer"}),
    )
    .await
    .assert_status(200);
    app.patch(&format!("{members}/bob"), &bob, json!({"role": "admin"}))
        .await
        .assert_problem(409);

    // A member may leave on its own.
    app.delete(&format!("{members}/carol"), &carol)
        .await
        .assert_status(204);
    app.get(&format!("/v1/orgs/{org_id}"), &carol)
        .await
        .assert_problem(404);
    app.patch(
        &format!("{members}/nobody"),
        &bob,
        json!({"role": "viewer"}),
    )
    .await
    .assert_problem(404);

    let list = app.get(&format!("{members}?limit=1"), &bob).await;
    list.assert_status(200);
    let first = list.body["items"][0]["user_sub"].clone();
    let cursor = list.body["next_cursor"]
        .as_str()
        .expect("more pages")
        .to_owned();
    let next = app
        .get(&format!("{members}?limit=1&cursor={cursor}"), &bob)
        .await;
    assert_ne!(next.body["items"][0]["user_sub"], first);
}

async fn workspaces_and_projects(backend: Backend) {
    let app = spawn!(backend, "workspaces_and_projects");
    let alice = app.token("alice");
    let org_id = app.create_org(&alice, "acme").await;
    app.add_member(&alice, &org_id, "mia", "member").await;
    app.add_member(&alice, &org_id, "vic", "viewer").await;
    let mia = app.token("mia");
    let vic = app.token("vic");

    let created = app
        .post(
            &format!("/v1/orgs/{org_id}/workspaces"),
            &alice,
            json!({"name": "dev", "plan": "dedicated"}),
        )
        .await;
    created.assert_status(202);
    let ws = created.id();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/orgs/{org_id}/workspaces/{ws}").as_str())
    );
    assert_eq!(created.body["status"], "pending");
    insta::assert_json_snapshot!("workspace_requested", created.body, {
        ".id" => "[uuid]", ".org_id" => "[uuid]",
        ".created_at" => "[datetime]", ".updated_at" => "[datetime]"
    });
    app.post(
        &format!("/v1/orgs/{org_id}/workspaces"),
        &alice,
        json!({"name": "dev", "plan": "shared"}),
    )
    .await
    .assert_problem(409);
    // Members may not manage workspaces; viewers may read them.
    app.post(
        &format!("/v1/orgs/{org_id}/workspaces"),
        &mia,
        json!({"name": "other", "plan": "shared"}),
    )
    .await
    .assert_problem(403);
    app.get(&format!("/v1/orgs/{org_id}/workspaces/{ws}"), &vic)
        .await
        .assert_status(200);

    let project = app
        .post(
            &format!("/v1/orgs/{org_id}/projects"),
            &mia,
            json!({"name": "shop", "workspace_id": ws}),
        )
        .await;
    project.assert_status(201);
    let project_id = project.id();
    insta::assert_json_snapshot!("project_created", project.body, {
        ".id" => "[uuid]", ".org_id" => "[uuid]", ".workspace_id" => "[uuid]",
        ".created_at" => "[datetime]", ".updated_at" => "[datetime]"
    });
    app.post(
        &format!("/v1/orgs/{org_id}/projects"),
        &mia,
        json!({"name": "shop", "workspace_id": ws}),
    )
    .await
    .assert_problem(409);
    let unknown_ws = app
        .post(
            &format!("/v1/orgs/{org_id}/projects"),
            &mia,
            json!({"name": "x", "workspace_id": uuid::Uuid::new_v4()}),
        )
        .await;
    unknown_ws.assert_problem(422);
    assert_eq!(unknown_ws.body["errors"][0]["pointer"], "/workspace_id");
    app.post(
        &format!("/v1/orgs/{org_id}/projects"),
        &vic,
        json!({"name": "nope", "workspace_id": ws}),
    )
    .await
    .assert_problem(403);

    let filtered = app
        .get(
            &format!("/v1/orgs/{org_id}/projects?workspace_id={ws}"),
            &vic,
        )
        .await;
    assert_eq!(filtered.body["items"].as_array().map(Vec::len), Some(1));
    let other = app
        .get(
            &format!(
                "/v1/orgs/{org_id}/projects?workspace_id={}",
                uuid::Uuid::new_v4()
            ),
            &vic,
        )
        .await;
    assert_eq!(other.body["items"].as_array().map(Vec::len), Some(0));

    let renamed = app
        .patch(
            &format!("/v1/orgs/{org_id}/projects/{project_id}"),
            &mia,
            json!({"name": "store"}),
        )
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.body["name"], "store");

    // Deleting the org is refused while it has a live workspace.
    app.delete(&format!("/v1/orgs/{org_id}"), &alice)
        .await
        .assert_problem(409);
    let deleting = app
        .delete(&format!("/v1/orgs/{org_id}/workspaces/{ws}"), &alice)
        .await;
    deleting.assert_status(202);
    assert_eq!(deleting.body["status"], "deleting");
    app.post(
        &format!("/v1/orgs/{org_id}/projects"),
        &mia,
        json!({"name": "late", "workspace_id": ws}),
    )
    .await
    .assert_problem(409);

    app.delete(&format!("/v1/orgs/{org_id}/projects/{project_id}"), &mia)
        .await
        .assert_status(204);
    app.get(&format!("/v1/orgs/{org_id}/projects/{project_id}"), &mia)
        .await
        .assert_problem(404);
    app.delete(&format!("/v1/orgs/{org_id}"), &alice)
        .await
        .assert_status(204);
}

async fn graph_versions(backend: Backend) {
    let app = spawn!(backend, "graph_versions");
    let alice = app.token("alice");
    let org_id = app.create_org(&alice, "acme").await;
    let ws = app.create_workspace(&alice, &org_id, "dev").await;
    let project = app.create_project(&alice, &org_id, &ws, "shop").await;
    let graph_path = format!("/v1/orgs/{org_id}/projects/{project}/graph");

    let initial = app.get(&graph_path, &alice).await;
    initial.assert_status(200);
    assert_eq!(
        initial.body,
        json!({"version": 0, "graph": {"nodes": [], "edges": []}})
    );
    let etag0 = initial.header("etag").expect("etag").to_owned();

    let graph1 = json!({"nodes": [{"id": "web", "kind": "service",
                                   "spec": {"image": "nginx:1.27", "ports": [{"port": 80}]}}],
                        "edges": []});
    let put = |graph: serde_json::Value, if_match: Option<String>| {
        let app = &app;
        let alice = alice.clone();
        let graph_path = graph_path.clone();
        async move {
            let headers: Vec<(&str, String)> = if_match
                .map(|tag| vec![("If-Match", tag)])
                .unwrap_or_default();
            let headers: Vec<(&str, &str)> =
                headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
            app.request(
                "PUT",
                &graph_path,
                Some(&alice),
                Some(json!({"graph": graph})),
                &headers,
            )
            .await
        }
    };

    put(graph1.clone(), None).await.assert_problem(428);
    put(graph1.clone(), Some("\"7\"".to_owned()))
        .await
        .assert_problem(412);
    let v1 = put(graph1.clone(), Some(etag0.clone())).await;
    v1.assert_status(200);
    assert_eq!(v1.body["version"], 1);
    let etag1 = v1.header("etag").expect("etag").to_owned();
    assert_ne!(etag1, etag0);

    // The old ETag is now stale.
    put(graph1.clone(), Some(etag0)).await.assert_problem(412);
    let invalid = put(json!({"nodes": {}}), Some(etag1.clone())).await;
    invalid.assert_problem(422);
    assert_eq!(invalid.body["errors"][0]["pointer"], "/graph/nodes");

    let graph2 = json!({
        "nodes": [
            {"id": "web", "kind": "service",
             "spec": {"image": "nginx:1.27", "ports": [{"port": 80}]}},
            {"id": "db", "kind": "database",
             "spec": {"engine": "redis", "version": "7.4", "storage": "1Gi"}}
        ],
        "edges": [{"from": "web", "to": "db", "kind": "connects"}]
    });
    let v2 = put(graph2.clone(), Some(etag1)).await;
    v2.assert_status(200);
    assert_eq!(v2.body["version"], 2);

    let current = app.get(&graph_path, &alice).await;
    assert_eq!(current.body["graph"], graph2);
    assert_eq!(current.header("etag"), Some("\"2\""));

    let versions = app.get(&format!("{graph_path}/versions"), &alice).await;
    versions.assert_status(200);
    let numbers: Vec<_> = versions.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|v| v["version"].as_i64())
        .collect();
    assert_eq!(numbers, [Some(0), Some(1), Some(2)]);
    insta::assert_json_snapshot!("graph_versions", versions.body, {
        ".items[].created_at" => "[datetime]"
    });
    let old = app.get(&format!("{graph_path}/versions/1"), &alice).await;
    old.assert_status(200);
    assert_eq!(old.body["graph"], graph1);
    app.get(&format!("{graph_path}/versions/9"), &alice)
        .await
        .assert_problem(404);

    let project_view = app
        .get(&format!("/v1/orgs/{org_id}/projects/{project}"), &alice)
        .await;
    assert_eq!(project_view.body["graph_version"], 2);
}

async fn pagination(backend: Backend) {
    let app = spawn!(backend, "pagination");
    let alice = app.token("alice");
    for i in 0..5 {
        app.create_org(&alice, &format!("org-{i}")).await;
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/orgs?limit=2&cursor={c}"),
            None => "/v1/orgs?limit=2".to_owned(),
        };
        let page = app.get(&path, &alice).await;
        page.assert_status(200);
        let items = page.body["items"].as_array().expect("items").clone();
        assert!(items.len() <= 2);
        seen.extend(
            items
                .iter()
                .map(|o| o["slug"].as_str().unwrap_or_default().to_owned()),
        );
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(seen, ["org-0", "org-1", "org-2", "org-3", "org-4"]);
}

on_each_backend!(
    org_lifecycle,
    validation_errors,
    members_and_owners,
    workspaces_and_projects,
    graph_versions,
    pagination
);
