//! Teams, service accounts, the audit trail and request ids, through the public surface on
//! SQLite and Postgres.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, ChildGuard};
use common::{eventually, Backend, TestApp, TestResponse};
use serde_json::{json, Value};
use std::process::Stdio;
use std::time::Duration;

/// A three-node graph any project accepts.
fn graph() -> Value {
    json!({"nodes": [], "edges": []})
}

async fn put_graph_as(app: &TestApp, token: &str, path: &str) -> TestResponse {
    app.request(
        "PUT",
        path,
        Some(token),
        Some(json!({"graph": graph()})),
        &[("If-Match", "*")],
    )
    .await
}

async fn events_of(app: &TestApp, token: &str, org: &str, types: &str) -> Vec<Value> {
    let page = app
        .get(
            &format!("/v1/orgs/{org}/events?after=0&limit=200&type={types}"),
            token,
        )
        .await;
    page.assert_status(200);
    page.body["items"].as_array().cloned().unwrap_or_default()
}

async fn audit(app: &TestApp, token: &str, org: &str, query: &str) -> Vec<Value> {
    let page = app
        .get(&format!("/v1/orgs/{org}/audit?limit=200&{query}"), token)
        .await;
    page.assert_status(200);
    page.body["items"].as_array().cloned().unwrap_or_default()
}

async fn teams_grant_project_roles(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "teams_grant_project_roles").await else {
        return;
    };
    let alice = app.token("alice");
    let bob = app.token("bob");
    let org = app.create_org(&alice, "acme").await;
    app.add_member(&alice, &org, "bob", "viewer").await;
    let ws = app.create_workspace(&alice, &org, "dev").await;
    let web = app.create_project(&alice, &org, &ws, "web").await;
    let api = app.create_project(&alice, &org, &ws, "api").await;
    let teams = format!("/v1/orgs/{org}/teams");

    // Create, with the contract's checks.
    let created = app
        .post(
            &teams,
            &alice,
            json!({"name": "web-devs", "description": "front end"}),
        )
        .await;
    created.assert_status(201);
    let team = created.id();
    assert_eq!(
        created.header("location"),
        Some(format!("/v1/orgs/{org}/teams/{team}").as_str())
    );
    app.post(&teams, &alice, json!({"name": "web-devs"}))
        .await
        .assert_problem(409);
    app.post(&teams, &alice, json!({"name": "Web Devs"}))
        .await
        .assert_problem(422);
    app.post(&teams, &bob, json!({"name": "mine"}))
        .await
        .assert_problem(403);

    // Members of a team are members of the organization.
    let team_path = format!("{teams}/{team}");
    app.request(
        "PUT",
        &format!("{team_path}/members/carol"),
        Some(&alice),
        None,
        &[],
    )
    .await
    .assert_problem(422);
    let added = app
        .request(
            "PUT",
            &format!("{team_path}/members/bob"),
            Some(&alice),
            None,
            &[],
        )
        .await;
    added.assert_status(200);
    assert_eq!(added.body["members"], json!(["bob"]));
    app.request(
        "PUT",
        &format!("{team_path}/members/bob"),
        Some(&alice),
        None,
        &[],
    )
    .await
    .assert_status(200);

    // A viewer cannot write a graph until a team gives them member on that project.
    let web_graph = format!("/v1/orgs/{org}/projects/{web}/graph");
    let api_graph = format!("/v1/orgs/{org}/projects/{api}/graph");
    put_graph_as(&app, &bob, &web_graph)
        .await
        .assert_problem(403);
    let assign = format!("/v1/orgs/{org}/projects/{web}/teams/{team}");
    app.request(
        "PUT",
        &assign,
        Some(&alice),
        Some(json!({"role": "owner"})),
        &[],
    )
    .await
    .assert_problem(422);
    app.request(
        "PUT",
        &assign,
        Some(&bob),
        Some(json!({"role": "member"})),
        &[],
    )
    .await
    .assert_problem(403);
    let assigned = app
        .request(
            "PUT",
            &assign,
            Some(&alice),
            Some(json!({"role": "member"})),
            &[],
        )
        .await;
    assigned.assert_status(200);
    assert_eq!(assigned.body["role"], "member");
    assert_eq!(assigned.body["team"], "web-devs");
    let listed = app
        .get(&format!("/v1/orgs/{org}/projects/{web}/teams"), &bob)
        .await;
    listed.assert_status(200);
    assert_eq!(listed.body["items"][0]["team_id"], team.as_str());

    put_graph_as(&app, &bob, &web_graph)
        .await
        .assert_status(200);
    // Only that project, and only its graph and codegen jobs.
    put_graph_as(&app, &bob, &api_graph)
        .await
        .assert_problem(403);
    app.patch(
        &format!("/v1/orgs/{org}/projects/{web}"),
        &bob,
        json!({"name": "renamed"}),
    )
    .await
    .assert_problem(403);
    app.delete(&format!("/v1/orgs/{org}/projects/{web}"), &bob)
        .await
        .assert_problem(403);
    let job = app
        .post(
            &format!("/v1/orgs/{org}/codegen-jobs"),
            &bob,
            json!({"project_id": web}),
        )
        .await;
    assert_ne!(job.status.code, 403, "team member may submit: {}", job.text);
    app.post(
        &format!("/v1/orgs/{org}/codegen-jobs"),
        &bob,
        json!({"project_id": api}),
    )
    .await
    .assert_problem(403);

    // Out of the team, the grant is gone on the next request.
    app.delete(&format!("{team_path}/members/bob"), &alice)
        .await
        .assert_status(204);
    put_graph_as(&app, &bob, &web_graph)
        .await
        .assert_problem(403);
    app.request(
        "PUT",
        &format!("{team_path}/members/bob"),
        Some(&alice),
        None,
        &[],
    )
    .await
    .assert_status(200);
    put_graph_as(&app, &bob, &web_graph)
        .await
        .assert_status(200);
    // Leaving the organization leaves its teams.
    app.delete(&format!("/v1/orgs/{org}/members/bob"), &alice)
        .await
        .assert_status(204);
    let after_leaving = app.get(&team_path, &alice).await;
    after_leaving.assert_status(200);
    assert_eq!(after_leaving.body["members"], json!([]));

    // Rename, list, unassign, delete.
    let renamed = app
        .patch(
            &team_path,
            &alice,
            json!({"name": "frontend", "description": null}),
        )
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.body["name"], "frontend");
    assert_eq!(renamed.body["description"], Value::Null);
    let list = app.get(&teams, &alice).await;
    list.assert_status(200);
    assert_eq!(list.body["items"][0]["name"], "frontend");
    app.delete(&assign, &alice).await.assert_status(204);
    app.delete(&assign, &alice).await.assert_problem(404);
    app.delete(&team_path, &alice).await.assert_status(204);
    app.get(&team_path, &alice).await.assert_problem(404);

    // Another organization's team is 404.
    let other = app.create_org(&bob, "other").await;
    app.get(&format!("/v1/orgs/{other}/teams/{team}"), &bob)
        .await
        .assert_problem(404);

    let seen: Vec<String> = events_of(&app, &alice, &org, "team.*")
        .await
        .iter()
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    for expected in [
        "team.created",
        "team.member_added",
        "team.project_assigned",
        "team.member_removed",
        "team.updated",
        "team.project_unassigned",
        "team.deleted",
    ] {
        assert!(seen.iter().any(|t| t == expected), "{expected} in {seen:?}");
    }
}

async fn service_accounts_act_with_their_role(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "service_accounts_act_with_their_role").await else {
        return;
    };
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let other = app.create_org(&alice, "other").await;
    let ws = app.create_workspace(&alice, &org, "dev").await;
    let accounts = format!("/v1/orgs/{org}/service-accounts");

    let created = app
        .post(&accounts, &alice, json!({"name": "ci", "role": "member"}))
        .await;
    created.assert_status(201);
    let key = created.body["key"].as_str().expect("key once").to_owned();
    let id = created.id();
    assert!(key.starts_with("gtk_") && key.len() >= 4 + 43, "{key}");
    assert_eq!(created.body["role"], "member");
    assert_eq!(created.body["key_prefix"], &key[..12]);
    app.post(&accounts, &alice, json!({"name": "ci", "role": "member"}))
        .await
        .assert_problem(409);
    app.post(
        &accounts,
        &alice,
        json!({"name": "old", "role": "viewer", "expires_at": "2020-01-01T00:00:00Z"}),
    )
    .await
    .assert_problem(422);

    // Lists never show keys.
    let list = app.get(&accounts, &alice).await;
    list.assert_status(200);
    assert_eq!(list.body["items"][0]["id"], id.as_str());
    assert!(list.body["items"][0].get("key").is_none());
    assert!(!list.text.contains(&key));

    // The key acts as a member of its own organization, nowhere else, never as an admin.
    app.get(&format!("/v1/orgs/{org}/projects"), &key)
        .await
        .assert_status(200);
    app.create_project(&key, &org, &ws, "from-ci").await;
    app.delete(&format!("/v1/orgs/{org}/workspaces/{ws}"), &key)
        .await
        .assert_problem(403);
    app.get(&format!("/v1/orgs/{other}/projects"), &key)
        .await
        .assert_problem(404);
    app.get("/v1/admin/queues", &key).await.assert_problem(403);
    app.post(
        &accounts,
        &key,
        json!({"name": "escalate", "role": "admin"}),
    )
    .await
    .assert_problem(403);
    app.post("/v1/orgs", &key, json!({"name": "Mine", "slug": "mine"}))
        .await
        .assert_problem(403);
    let orgs = app.get("/v1/orgs", &key).await;
    orgs.assert_status(200);
    assert_eq!(orgs.body["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(orgs.body["items"][0]["id"], org.as_str());
    let me = app.get("/v1/me", &key).await;
    me.assert_status(200);
    assert_eq!(me.body["orgs"][0]["id"], org.as_str());
    assert_eq!(me.body["is_platform_admin"], false);
    let used = app.get(&format!("{accounts}/{id}"), &alice).await;
    used.assert_status(200);
    assert!(used.body["last_used_at"].is_string(), "{}", used.text);

    // Rotation ends the old key at once; deletion ends the account.
    let rotated = app
        .post(&format!("{accounts}/{id}/rotate"), &alice, json!({}))
        .await;
    rotated.assert_status(200);
    let new_key = rotated.body["key"].as_str().expect("new key").to_owned();
    assert_ne!(new_key, key);
    app.get(&format!("/v1/orgs/{org}/projects"), &key)
        .await
        .assert_problem(401);
    app.get(&format!("/v1/orgs/{org}/projects"), &new_key)
        .await
        .assert_status(200);
    app.delete(&format!("{accounts}/{id}"), &alice)
        .await
        .assert_status(204);
    app.get(&format!("/v1/orgs/{org}/projects"), &new_key)
        .await
        .assert_problem(401);
    app.get(&format!("{accounts}/{id}"), &alice)
        .await
        .assert_problem(404);
    app.get("/v1/me", "gtk_not-a-key").await.assert_problem(401);

    // An expiring key stops at its time.
    let soon = (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339();
    let expiring = app
        .post(
            &accounts,
            &alice,
            json!({"name": "short", "role": "viewer", "expires_at": soon}),
        )
        .await;
    expiring.assert_status(201);
    let short_key = expiring.body["key"].as_str().expect("key").to_owned();
    app.get(&format!("/v1/orgs/{org}/projects"), &short_key)
        .await
        .assert_status(200);
    tokio::time::sleep(Duration::from_millis(2500)).await;
    app.get(&format!("/v1/orgs/{org}/projects"), &short_key)
        .await
        .assert_problem(401);

    // Writes by a key are audited as the service account.
    let by_key = audit(&app, &alice, &org, &format!("actor={id}")).await;
    assert!(
        by_key.iter().any(
            |e| e["actor"] == json!({"type": "service_account", "id": id})
                && e["action"] == "project.create"
        ),
        "{by_key:?}"
    );
}

async fn audit_records_writes_denials_and_sign_ins(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "audit_records_writes").await else {
        return;
    };
    let alice = app.token("alice");
    let bob = app.token("bob");
    let org = app.create_org(&alice, "acme").await;
    app.add_member(&alice, &org, "bob", "viewer").await;
    let ws = app.create_workspace(&alice, &org, "dev").await;
    let project = app.create_project(&alice, &org, &ws, "web").await;
    let project_path = format!("/v1/orgs/{org}/projects/{project}");

    // A write, traced by the caller's request id.
    let renamed = app
        .request(
            "PATCH",
            &project_path,
            Some(&alice),
            Some(json!({"name": "shop"})),
            &[
                ("X-Request-Id", "req-audit-1"),
                ("User-Agent", "audit-test/1.0"),
            ],
        )
        .await;
    renamed.assert_status(200);
    assert_eq!(renamed.header("x-request-id"), Some("req-audit-1"));
    let rows = audit(&app, &alice, &org, "action=project.update").await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    let row = &rows[0];
    assert_eq!(row["actor"], json!({"type": "user", "id": "alice"}));
    assert_eq!(row["target"], json!({"type": "project", "id": project}));
    assert_eq!(row["org_id"], org.as_str());
    assert_eq!(row["request_id"], "req-audit-1");
    assert_eq!(row["user_agent"], "audit-test/1.0");
    assert_eq!(row["outcome"], "success");
    assert!(row["at"].is_string() && row["id"].is_i64());
    assert_eq!(row["changes"]["after"]["name"], "shop", "{row}");

    // The event of that write carries the same id.
    let events = events_of(&app, &alice, &org, "project.updated").await;
    assert_eq!(events[0]["request_id"], "req-audit-1", "{events:?}");

    // A denied write is recorded as denied.
    app.delete(&project_path, &bob).await.assert_problem(403);
    let denied = audit(&app, &alice, &org, "actor=bob").await;
    assert!(
        denied
            .iter()
            .any(|e| e["action"] == "project.delete" && e["outcome"] == "denied"),
        "{denied:?}"
    );
    // Creates name what they created; other writes are recorded too.
    let creates = audit(&app, &alice, &org, "action=project.create").await;
    assert_eq!(creates[0]["target"]["id"], project.as_str());
    let hook = app
        .post(
            &format!("/v1/orgs/{org}/webhooks"),
            &alice,
            json!({"url": "https://93.184.215.14/hook", "events": ["project.*"]}),
        )
        .await;
    hook.assert_status(201);
    let hooks = audit(&app, &alice, &org, "target_type=webhook").await;
    assert_eq!(hooks[0]["action"], "webhook.create");
    assert_eq!(hooks[0]["target"]["id"], hook.id().as_str());
    let secret = hook.body["secret"].as_str().expect("secret");
    let trail = app
        .get(&format!("/v1/orgs/{org}/audit?limit=200"), &alice)
        .await;
    assert!(
        !trail.text.contains(secret),
        "a secret reached the audit trail"
    );
    // Prefix filter and time window.
    let projects = audit(&app, &alice, &org, "action=project.").await;
    assert!(projects.len() >= 2);
    let future = audit(&app, &alice, &org, "after=2999-01-01T00:00:00Z").await;
    assert!(future.is_empty());
    app.get(&format!("/v1/orgs/{org}/audit?after=yesterday"), &alice)
        .await
        .assert_problem(400);

    // NDJSON export, three ways.
    for (path, headers) in [
        (format!("/v1/orgs/{org}/audit?format=ndjson"), vec![]),
        (format!("/v1/orgs/{org}/audit/export"), vec![]),
        (
            format!("/v1/orgs/{org}/audit"),
            vec![("Accept", "application/x-ndjson")],
        ),
    ] {
        let export = app
            .request("GET", &path, Some(&alice), None, &headers)
            .await;
        export.assert_status(200);
        assert_eq!(export.header("content-type"), Some("application/x-ndjson"));
        let lines: Vec<Value> = export
            .text
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect();
        assert!(lines.len() >= 5, "{path}: {}", export.text);
        assert!(lines.iter().any(|l| l["action"] == "project.update"));
    }

    // Admins only; platform admins see everything, sign-ins included.
    app.get(&format!("/v1/orgs/{org}/audit"), &bob)
        .await
        .assert_problem(403);
    app.get("/v1/admin/audit", &alice).await.assert_problem(403);
    let root = app.admin_token("root");
    let all = app
        .get("/v1/admin/audit?action=user.sign_in&limit=200", &root)
        .await;
    all.assert_status(200);
    let signed_in: Vec<&str> = all.body["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["actor"]["id"].as_str())
        .collect();
    assert!(
        signed_in.contains(&"alice") && signed_in.contains(&"bob"),
        "{signed_in:?}"
    );
    let one_org = app
        .get(&format!("/v1/admin/audit?org_id={org}&limit=1"), &root)
        .await;
    one_org.assert_status(200);
    assert_eq!(one_org.body["items"][0]["org_id"], org.as_str());
    assert!(one_org.body["next_cursor"].is_string());

    // No route changes the trail, and on Postgres the database refuses it too.
    app.delete(&format!("/v1/orgs/{org}/audit"), &alice)
        .await
        .assert_problem(405);
    if backend == Backend::Postgres {
        use sea_orm::ConnectionTrait;
        let db = sea_orm::Database::connect(&app.database_url)
            .await
            .expect("db");
        for sql in [
            "UPDATE audit_log SET outcome = 'forged'",
            "DELETE FROM audit_log",
            "TRUNCATE audit_log",
        ] {
            let refused = db.execute_unprepared(sql).await;
            assert!(refused.is_err(), "{sql} was allowed");
        }
    }
}

fn start_worker(app: &TestApp, dir: &std::path::Path, extra: &[(&str, &str)]) -> ChildGuard {
    let mut command = gantry(dir);
    command
        .args(["--workers", "outbox-publisher,vcluster-provisioner"])
        .env("DATABASE_URL", &app.database_url)
        .env("GANTRY_SIMULATED_DELAY_MS", "50")
        .env("GANTRY_OUTBOX_POLL_INTERVAL", "100ms")
        .env("GANTRY_JOB_HEARTBEAT", "1s")
        .env("GANTRY_RECONCILE_INTERVAL", "500ms")
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in extra {
        command.env(name, value);
    }
    ChildGuard(command.spawn().expect("spawn worker"))
}

async fn simulated_bindings(app: &TestApp, namespace: &str) -> Vec<(String, Value)> {
    use sea_orm::ConnectionTrait;
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("db");
    let rows = db
        .query_all_raw(sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!(
                "SELECT name, spec FROM simulated_objects WHERE kind = 'RoleBinding' \
                 AND namespace = 'vcluster/{namespace}' ORDER BY name"
            ),
        ))
        .await
        .expect("query");
    rows.iter()
        .map(|row| {
            (
                row.try_get::<String>("", "name").expect("name"),
                row.try_get::<Value>("", "spec").expect("spec"),
            )
        })
        .collect()
}

async fn request_ids_and_team_bindings_reach_the_workers(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "request_ids_reach_workers").await else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let _worker = start_worker(&app, dir.path(), &[("GANTRY_AUDIT_RETENTION", "3s")]);
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;

    // request → event → job → result event, one id.
    let created = app
        .request(
            "POST",
            &format!("/v1/orgs/{org}/workspaces"),
            Some(&alice),
            Some(json!({"name": "dev", "plan": "shared"})),
            &[("X-Request-Id", "trace-ws-1")],
        )
        .await;
    created.assert_status(202);
    let ws = created.id();
    let ready = eventually(Duration::from_secs(60), || async {
        let events = events_of(&app, &alice, &org, "workspace.ready").await;
        events.into_iter().next().ok_or("not ready yet")
    })
    .await;
    assert_eq!(ready["request_id"], "trace-ws-1", "{ready}");
    let requested = events_of(&app, &alice, &org, "workspace.requested").await;
    assert_eq!(requested[0]["request_id"], "trace-ws-1");

    // A team's role on a ready project becomes a RoleBinding for its group, and goes with it.
    let project = app.create_project(&alice, &org, &ws, "web").await;
    let project_path = format!("/v1/orgs/{org}/projects/{project}");
    eventually(Duration::from_secs(60), || async {
        let p = app.get(&project_path, &alice).await;
        (p.body["status"] == "ready").then_some(()).ok_or(p.text)
    })
    .await;
    let team = app
        .post(
            &format!("/v1/orgs/{org}/teams"),
            &alice,
            json!({"name": "admin"}),
        )
        .await
        .id();
    app.request(
        "PUT",
        &format!("{project_path}/teams/{team}"),
        Some(&alice),
        Some(json!({"role": "viewer"})),
        &[],
    )
    .await
    .assert_status(200);
    let expected = (
        "gantry-team-admin".to_owned(),
        json!({"group": format!("gantry:{org}:team:admin"), "clusterRole": "view"}),
    );
    eventually(Duration::from_secs(30), || async {
        let bindings = simulated_bindings(&app, "web").await;
        bindings
            .contains(&expected)
            .then_some(())
            .ok_or(format!("{bindings:?}"))
    })
    .await;
    // The org role bindings are untouched by a team named like a role.
    let bindings = simulated_bindings(&app, "web").await;
    assert!(bindings.contains(&(
        "gantry-admin".to_owned(),
        json!({"group": format!("gantry:{org}:admin"), "clusterRole": "admin"})
    )));
    app.delete(&format!("/v1/orgs/{org}/teams/{team}"), &alice)
        .await
        .assert_status(204);
    eventually(Duration::from_secs(30), || async {
        let bindings = simulated_bindings(&app, "web").await;
        (!bindings.iter().any(|(name, _)| name == "gantry-team-admin"))
            .then_some(())
            .ok_or(format!("{bindings:?}"))
    })
    .await;

    // Retention (3 s here) removes old rows, through the Postgres trigger's one exception.
    let root = app.admin_token("root");
    eventually(Duration::from_secs(30), || async {
        let rows = app
            .get("/v1/admin/audit?action=workspace.create", &root)
            .await;
        rows.body["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
            .then_some(())
            .ok_or(rows.text)
    })
    .await;
}

on_each_backend!(
    teams_grant_project_roles,
    service_accounts_act_with_their_role,
    audit_records_writes_denials_and_sign_ins,
    request_ids_and_team_bindings_reach_the_workers,
);
