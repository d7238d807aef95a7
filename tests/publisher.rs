//! The outbox publisher as a real process: it routes every event to the Redis stream and marks
//! it published, wakes on commit, survives `kill -9` without losing an event, and stops cleanly
//! on SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, signal};
use common::{eventually, test_redis_url, Backend, TestApp, TestDatabase};
use sea_orm::{ConnectionTrait, DatabaseConnection, Statement};
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::process::{Child, Stdio};
use std::time::Duration;

fn start_publisher(dir: &std::path::Path, database_url: &str, env: &[(&str, String)]) -> Child {
    let mut cmd = gantry(dir);
    cmd.args(["--workers", "outbox-publisher"])
        .env("DATABASE_URL", database_url)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    for (name, value) in env {
        cmd.env(name, value);
    }
    cmd.spawn().expect("spawn publisher")
}

async fn count(db: &DatabaseConnection, sql: &str) -> i64 {
    let row = db
        .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .expect("query")
        .expect("row");
    row.try_get("", "n").expect("n")
}

async fn wait_until_published(db: &DatabaseConnection, timeout: Duration) {
    eventually(timeout, || async {
        let left = count(
            db,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL",
        )
        .await;
        match left {
            0 => Ok(()),
            _ => Err(format!("{left} events still unpublished")),
        }
    })
    .await
}

/// Every entry of `stream`: event id → how many times it was appended, plus the envelopes.
async fn read_stream(redis_url: &str, stream: &str) -> (HashMap<String, usize>, Vec<Value>) {
    let client = redis::Client::open(redis_url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("GANTRY_TEST_REDIS_URL is set but Redis is unreachable");
    let entries: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(stream)
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let mut seen = HashMap::new();
    let mut envelopes = Vec::new();
    for entry in entries.ids {
        let id: String = entry.get("id").expect("id field");
        *seen.entry(id).or_insert(0) += 1;
        let envelope: String = entry.get("envelope").expect("envelope field");
        envelopes.push(serde_json::from_str(&envelope).expect("envelope JSON"));
    }
    let _: () = redis::cmd("DEL")
        .arg(stream)
        .query_async(&mut conn)
        .await
        .expect("DEL");
    (seen, envelopes)
}

async fn event_ids(db: &DatabaseConnection) -> HashSet<String> {
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT event_id FROM outbox_events",
        ))
        .await
        .expect("query");
    rows.iter()
        .map(|row| {
            let id: uuid::Uuid = row.try_get("", "event_id").expect("event_id");
            id.to_string()
        })
        .collect()
}

async fn routes_events_and_stops_on_sigterm(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "routes_events_and_stops_on_sigterm").await else {
        return;
    };
    let redis = if backend == Backend::Postgres {
        match test_redis_url("routes_events_and_stops_on_sigterm") {
            Some(url) => Some(url),
            None => return,
        }
    } else {
        None
    };
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.create_workspace(&alice, &org, "dev").await;

    let stream = format!("gantry:test:{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut env = vec![
        ("GANTRY_EVENT_STREAM", stream.clone()),
        // On Postgres NOTIFY must wake the publisher, so polling is made slow to prove it.
        ("GANTRY_OUTBOX_POLL_INTERVAL", "10s".to_owned()),
    ];
    if backend == Backend::Sqlite {
        env[1].1 = "50ms".to_owned();
    }
    if let Some(url) = &redis {
        env.push(("REDIS_URL", url.clone()));
    }
    let mut publisher = start_publisher(dir.path(), &app.database_url, &env);
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("db");
    wait_until_published(&db, Duration::from_secs(20)).await;

    // New events are picked up promptly: by NOTIFY on Postgres, by the short poll on SQLite.
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.create_project(
        &alice,
        &org,
        &app.create_workspace(&alice, &org, "prod").await,
        "shop",
    )
    .await;
    wait_until_published(&db, Duration::from_secs(5)).await;

    let admin = app.admin_token("root");
    let status = app.get("/v1/admin/outbox", &admin).await;
    status.assert_status(200);
    assert_eq!(status.body["backlog"], 0);
    app.get("/v1/admin/outbox", &alice)
        .await
        .assert_problem(403);

    signal(&publisher, false);
    let exit = publisher.wait().expect("wait");
    assert_eq!(exit.code(), Some(0), "SIGTERM exits 0");

    if let Some(url) = &redis {
        let (seen, envelopes) = read_stream(url, &stream).await;
        let expected = event_ids(&db).await;
        assert_eq!(seen.keys().cloned().collect::<HashSet<_>>(), expected);
        assert!(
            seen.values().all(|n| *n == 1),
            "no duplicates without a crash"
        );
        let types: Vec<&str> = envelopes
            .iter()
            .filter_map(|e| e["type"].as_str())
            .collect();
        assert_eq!(
            types,
            [
                "org.created",
                "workspace.requested",
                "workspace.requested",
                "project.created"
            ]
        );
        assert_eq!(envelopes[0]["org_id"], json!(org));
        assert_eq!(envelopes[0]["aggregate"]["type"], "org");
    }
}

/// `kill -9` publishers repeatedly mid-run: every event still reaches the stream (duplicates
/// allowed, bounded by what was in flight), and every row ends published.
async fn publisher_crashes_lose_nothing(backend: Backend) {
    const EVENTS: i64 = 3000;
    if backend == Backend::Sqlite {
        // The crash test needs Redis to observe routing; SQLite has no Redis stream.
        return;
    }
    let Some((_database, database_url)) =
        TestDatabase::create(backend, "publisher_crashes_lose_nothing").await
    else {
        return;
    };
    let Some(redis) = test_redis_url("publisher_crashes_lose_nothing") else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let migrate = gantry(dir.path())
        .arg("migrate")
        .env("DATABASE_URL", &database_url)
        .status()
        .expect("migrate");
    assert!(migrate.success());
    let db = sea_orm::Database::connect(&database_url).await.expect("db");
    db.execute_unprepared(&format!(
        "INSERT INTO outbox_events (event_id, org_id, aggregate_type, aggregate_id, event_type, \
         payload, created_at, attempts) \
         SELECT gen_random_uuid(), gen_random_uuid(), 'probe', gen_random_uuid(), 'probe.requested', \
         jsonb_build_object('n', n), now(), 0 FROM generate_series(1, {EVENTS}) AS n"
    ))
    .await
    .expect("insert events");

    let stream = format!("gantry:test:{}", uuid::Uuid::new_v4().simple());
    let env = vec![
        ("REDIS_URL", redis.clone()),
        ("GANTRY_EVENT_STREAM", stream.clone()),
        ("GANTRY_OUTBOX_BATCH_SIZE", "50".to_owned()),
        ("GANTRY_OUTBOX_LEASE", "2s".to_owned()),
        ("GANTRY_OUTBOX_POLL_INTERVAL", "100ms".to_owned()),
    ];
    let mut publishers: Vec<Child> = (0..2)
        .map(|_| start_publisher(dir.path(), &database_url, &env))
        .collect();
    let mut kills = 0;
    let mut kills_mid_run = 0;
    for round in 0..6 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        let victim = round % publishers.len();
        let left = count(
            &db,
            "SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL",
        )
        .await;
        if left > 0 {
            kills_mid_run += 1;
        }
        signal(&publishers[victim], true);
        let _ = publishers[victim].wait();
        kills += 1;
        publishers[victim] = start_publisher(dir.path(), &database_url, &env);
    }
    assert!(
        kills_mid_run > 0,
        "no publisher was killed while work was left"
    );
    wait_until_published(&db, Duration::from_secs(60)).await;
    for publisher in &mut publishers {
        signal(publisher, false);
        assert_eq!(publisher.wait().expect("wait").code(), Some(0));
    }

    let (seen, _) = read_stream(&redis, &stream).await;
    let expected = event_ids(&db).await;
    assert_eq!(expected.len() as i64, EVENTS);
    let missing = expected.iter().filter(|id| !seen.contains_key(*id)).count();
    assert_eq!(missing, 0, "events lost from the stream");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= kills * 50,
        "{duplicates} duplicates after {kills} kills of batch 50"
    );
    let unpublished = count(
        &db,
        "SELECT COUNT(*) AS n FROM outbox_events WHERE published_at IS NULL OR lease_owner IS NOT NULL",
    )
    .await;
    assert_eq!(unpublished, 0);
}

on_each_backend!(
    routes_events_and_stops_on_sigterm,
    publisher_crashes_lose_nothing
);

/// The publisher records one pending delivery per matching webhook and event, and routing the
/// same events again (a re-claimed batch) records nothing twice.
async fn routes_events_to_matching_webhooks(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "routes_events_to_matching_webhooks").await else {
        return;
    };
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    let hook = |events: serde_json::Value| json!({"url": "https://93.184.215.14/hooks/gantry", "events": events});
    let workspaces_hook = app
        .post(
            &format!("/v1/orgs/{org}/webhooks"),
            &alice,
            hook(json!(["workspace.*"])),
        )
        .await;
    workspaces_hook.assert_status(201);
    let workspaces_hook = workspaces_hook.id();
    let everything = app
        .post(
            &format!("/v1/orgs/{org}/webhooks"),
            &alice,
            hook(json!(["*"])),
        )
        .await
        .id();
    let ws = app.create_workspace(&alice, &org, "dev").await;
    app.create_project(&alice, &org, &ws, "shop").await;
    // Another org's events never reach this org's webhooks.
    app.create_org(&app.token("mallory"), "evil").await;

    let dir = tempfile::tempdir().expect("tempdir");
    let env = vec![("GANTRY_OUTBOX_POLL_INTERVAL", "50ms".to_owned())];
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("db");
    for round in 0..2 {
        let mut publisher = start_publisher(dir.path(), &app.database_url, &env);
        wait_until_published(&db, Duration::from_secs(20)).await;
        signal(&publisher, false);
        assert_eq!(publisher.wait().expect("wait").code(), Some(0));
        if round == 0 {
            // Pretend every event was re-claimed: route them all again.
            db.execute_unprepared("UPDATE outbox_events SET published_at = NULL")
                .await
                .expect("reset");
        }
    }

    let deliveries = |id: String| {
        let app = &app;
        let alice = alice.clone();
        let org = org.clone();
        async move {
            let page = app
                .get(&format!("/v1/orgs/{org}/webhooks/{id}/deliveries"), &alice)
                .await;
            page.assert_status(200);
            let mut types: Vec<String> = page.body["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|d| {
                    assert_eq!(d["status"], "pending");
                    d["event_type"].as_str().unwrap_or_default().to_owned()
                })
                .collect();
            types.sort();
            types
        }
    };
    assert_eq!(deliveries(workspaces_hook).await, ["workspace.requested"]);
    assert_eq!(
        deliveries(everything).await,
        ["project.created", "workspace.requested"],
        "events before the webhook existed are not delivered; none twice"
    );
}

on_each_backend!(routes_events_to_matching_webhooks);
