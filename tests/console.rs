//! The operator console and the admin endpoints it needs: its files served from the binary,
//! its log-in (config, the embedded dev log-in for loopback clients only), the live stats
//! feed, bulk retry of dead jobs, done-in-the-last-hour counts, and redacted job arguments.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, spawn_serving, ChildGuard};
use common::{eventually, test_redis_url, Backend, TestApp};
use gantry::config::Config;
use gantry::startup::{Application, Roles};
use rocket::http::Status;
use rocket::local::asynchronous::Client;
use serde_json::{json, Value};
use std::net::SocketAddr;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncReadExt;

#[tokio::test]
async fn console_files_are_served_from_the_binary() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "console_files").await else {
        return;
    };
    let page = app.request("GET", "/console/", None, None, &[]).await;
    page.assert_status(200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(page.text.contains(r#"src="app.js""#), "{}", page.text);
    let csp = page.header("content-security-policy").expect("CSP");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    // The realm is the one other origin the console talks to (the OIDC token exchange).
    let realm = reqwest::Url::parse(&app.issuer.issuer()).unwrap();
    assert!(csp.contains(&realm.origin().ascii_serialization()), "{csp}");
    assert_eq!(page.header("x-frame-options"), Some("DENY"));

    for (file, content_type) in [
        ("app.js", "text/javascript"),
        ("api.js", "text/javascript"),
        ("pages.js", "text/javascript"),
        ("style.css", "text/css; charset=utf-8"),
    ] {
        let asset = app
            .request("GET", &format!("/console/{file}"), None, None, &[])
            .await;
        asset.assert_status(200);
        assert_eq!(asset.header("content-type"), Some(content_type), "{file}");
        assert!(!asset.text.is_empty());
    }
    app.request("GET", "/console/missing.js", None, None, &[])
        .await
        .assert_status(404);
    app.request("GET", "/console/../Cargo.toml", None, None, &[])
        .await
        .assert_status(404);
    let bare = app.request("GET", "/console", None, None, &[]).await;
    bare.assert_status(308);
    assert_eq!(bare.header("location"), Some("/console/"));
}

#[tokio::test]
async fn with_keycloak_the_console_uses_oidc_and_there_is_no_dev_login() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "console_keycloak").await else {
        return;
    };
    let config = app
        .request("GET", "/v1/console/config", None, None, &[])
        .await;
    config.assert_status(200);
    assert_eq!(
        config.body,
        json!({
            "auth": "keycloak",
            "issuer": app.issuer.issuer(),
            "client_id": "gantry-console",
            "dev_login": false,
        })
    );
    app.request("POST", "/v1/console/dev-token", None, None, &[])
        .await
        .assert_problem(404);
}

/// The embedded application (no `KEYCLOAK_ISSUER`: dev auth) on a fresh SQLite file.
async fn embedded_client(dir: &std::path::Path) -> Client {
    gantry::install_crypto_provider();
    let database_url = format!("sqlite://{}/gantry.db?mode=rwc", dir.display());
    let data_dir = dir.join("data").display().to_string();
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        "GANTRY_DATA_DIR" => Some(data_dir.clone()),
        "GANTRY_LOG" => Some("warn".to_owned()),
        _ => None,
    })
    .expect("config");
    let roles = Roles {
        server: true,
        workers: Vec::new(),
    };
    let application = Application::build(config, roles).await.expect("build");
    Client::tracked(application.into_rocket())
        .await
        .expect("client")
}

#[tokio::test]
async fn embedded_dev_login_mints_an_admin_token_for_loopback_clients_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let client = embedded_client(dir.path()).await;

    let config: Value = client
        .get("/v1/console/config")
        .dispatch()
        .await
        .into_json()
        .await
        .expect("json");
    assert_eq!(
        config,
        json!({"auth": "embedded", "issuer": null, "client_id": null, "dev_login": true})
    );

    let loopback: SocketAddr = "127.0.0.1:50123".parse().unwrap();
    let minted = client
        .post("/v1/console/dev-token")
        .remote(loopback)
        .dispatch()
        .await;
    assert_eq!(minted.status(), Status::Ok);
    let minted: Value = minted.into_json().await.expect("json");
    assert_eq!(minted["token_type"], "Bearer");
    assert_eq!(minted["sub"], "local");
    assert!(minted["expires_in"].as_u64().unwrap() > 0);
    let token = minted["access_token"].as_str().expect("token");

    // The token is an ordinary bearer token of the same API: the local user is a platform admin.
    let me: Value = client
        .get("/v1/me")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {token}"),
        ))
        .dispatch()
        .await
        .into_json()
        .await
        .expect("json");
    assert_eq!(me["sub"], "local");
    assert_eq!(me["is_platform_admin"], true);
    let queues = client
        .get("/v1/admin/queues")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {token}"),
        ))
        .dispatch()
        .await;
    assert_eq!(queues.status(), Status::Ok);

    // Not from another host, whatever a forwarding header claims.
    for remote in ["10.1.2.3:4000", "[2001:db8::1]:4000"] {
        let refused = client
            .post("/v1/console/dev-token")
            .remote(remote.parse().unwrap())
            .header(rocket::http::Header::new("X-Real-IP", "127.0.0.1"))
            .header(rocket::http::Header::new("X-Forwarded-For", "127.0.0.1"))
            .dispatch()
            .await;
        assert_eq!(refused.status(), Status::Forbidden, "{remote}");
        assert_eq!(
            refused.content_type().map(|c| c.to_string()),
            Some("application/problem+json".to_owned())
        );
    }
}

/// Where the queues live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Sqlite,
    Postgres,
    Redis,
}

/// The API in process plus one `outbox-publisher` worker process (which runs the probe queue).
struct Scenario {
    app: TestApp,
    admin: String,
    _worker: ChildGuard,
    _dir: tempfile::TempDir,
    redis: Option<(String, String)>,
}

impl Drop for Scenario {
    /// Leaves the shared Redis as it was: every key of this scenario carries its prefix.
    fn drop(&mut self) {
        let Some((url, prefix)) = &self.redis else {
            return;
        };
        let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

impl Scenario {
    async fn start(mode: Mode, test: &str) -> Option<Self> {
        let redis_url = match mode {
            Mode::Redis => Some(test_redis_url(test)?),
            _ => None,
        };
        let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(&str, String)> = vec![
            ("GANTRY_OUTBOX_POLL_INTERVAL", "100ms".into()),
            ("GANTRY_JOB_HEARTBEAT", "1s".into()),
            ("GANTRY_QUEUE_PROBE_MAX_ATTEMPTS", "2".into()),
            ("GANTRY_JOB_BACKOFF_BASE", "50ms".into()),
            ("GANTRY_JOB_BACKOFF_CAP", "100ms".into()),
            ("GANTRY_SHUTDOWN_TIMEOUT", "5s".into()),
            ("GANTRY_QUEUE_PREFIX", prefix.clone()),
            ("GANTRY_EVENT_STREAM", format!("{prefix}events")),
        ];
        if let Some(url) = &redis_url {
            env.push(("REDIS_URL", url.clone()));
        }
        let backend = match mode {
            Mode::Sqlite => Backend::Sqlite,
            _ => Backend::Postgres,
        };
        let app_env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let app = TestApp::spawn_with(backend, test, &app_env).await?;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cmd = gantry(dir.path());
        cmd.args(["--workers", "outbox-publisher"])
            .env("DATABASE_URL", &app.database_url)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in &env {
            cmd.env(name, value);
        }
        let (child, _port) = spawn_serving(&mut cmd).await;
        let admin = app.admin_token("operator");
        Some(Self {
            app,
            admin,
            _worker: ChildGuard(child),
            _dir: dir,
            redis: redis_url.map(|url| (url, prefix)),
        })
    }

    async fn probe_queue(&self) -> Value {
        let queues = self.app.get("/v1/admin/queues", &self.admin).await;
        queues.assert_status(200);
        queues.body["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["queue"] == "probe")
            .expect("probe queue")
            .clone()
    }

    async fn dead_probes(&self) -> Vec<Value> {
        let page = self
            .app
            .get(
                "/v1/admin/jobs?queue=probe&state=dead&limit=100",
                &self.admin,
            )
            .await;
        page.assert_status(200);
        page.body["items"].as_array().expect("items").clone()
    }
}

async fn bulk_retry_runs_every_dead_job_again(mode: Mode) {
    let Some(scenario) = Scenario::start(mode, "bulk_retry").await else {
        return;
    };
    // Two attempts allowed, both fail: dead. The retry's attempt 3 succeeds.
    let batch = scenario
        .app
        .post(
            "/v1/admin/probes",
            &scenario.admin,
            json!({"count": 4, "fail_attempts": 2}),
        )
        .await;
    batch.assert_status(202);
    let batch_id = batch.body["batch_id"].as_str().expect("batch").to_owned();
    eventually(Duration::from_secs(60), || async {
        let dead = scenario.dead_probes().await;
        if dead.len() == 4 {
            Ok(())
        } else {
            Err(format!("dead: {dead:?}"))
        }
    })
    .await;
    assert_eq!(scenario.probe_queue().await["dead"], 4);

    // Filter checks first: only known job queues, a sane limit, admins only.
    for (body, pointer) in [
        (json!({"queue": "webhooks"}), "/queue"),
        (json!({"queue": "nope"}), "/queue"),
        (json!({"queue": "probe", "limit": 0}), "/limit"),
    ] {
        let refused = scenario
            .app
            .post("/v1/admin/jobs/retry", &scenario.admin, body.clone())
            .await;
        refused.assert_problem(422);
        assert!(refused.text.contains(pointer), "{body}: {}", refused.text);
    }
    scenario
        .app
        .post(
            "/v1/admin/jobs/retry",
            &scenario.app.token("member"),
            json!({"queue": "probe"}),
        )
        .await
        .assert_problem(403);

    // A limit takes the oldest ids first and leaves the rest dead.
    let some = scenario
        .app
        .post(
            "/v1/admin/jobs/retry",
            &scenario.admin,
            json!({"queue": "probe", "limit": 1}),
        )
        .await;
    some.assert_status(202);
    assert_eq!(some.body["retried"], 1, "{}", some.body);
    let rest = scenario
        .app
        .post(
            "/v1/admin/jobs/retry",
            &scenario.admin,
            json!({"queue": "probe"}),
        )
        .await;
    rest.assert_status(202);
    assert_eq!(rest.body["retried"], 3, "{}", rest.body);
    assert_eq!(rest.body["ids"].as_array().expect("ids").len(), 3);

    eventually(Duration::from_secs(60), || async {
        let progress = scenario
            .app
            .get(&format!("/v1/admin/probes/{batch_id}"), &scenario.admin)
            .await;
        if progress.body["completed"] == 4 {
            Ok(())
        } else {
            Err(format!("progress: {}", progress.body))
        }
    })
    .await;
    assert!(scenario.dead_probes().await.is_empty());
    // Every retried job finished just now, so it counts in the last hour.
    let probe = eventually(Duration::from_secs(30), || async {
        let probe = scenario.probe_queue().await;
        if probe["done_last_hour"].as_u64() >= Some(4) {
            Ok(probe)
        } else {
            Err(format!("probe queue: {probe}"))
        }
    })
    .await;
    assert_eq!(probe["dead"], 0);
    assert!(probe["done_last_hour"].as_u64() <= probe["done"].as_u64());
    // Nothing left to retry is not an error.
    let none = scenario
        .app
        .post(
            "/v1/admin/jobs/retry",
            &scenario.admin,
            json!({"queue": "probe"}),
        )
        .await;
    none.assert_status(202);
    assert_eq!(none.body["retried"], 0);
}

on_each_backend!({ sqlite: Mode::Sqlite, postgres: Mode::Postgres, redis: Mode::Redis }
    => bulk_retry_runs_every_dead_job_again);

/// Reads SSE events from a streaming response until `count` complete events arrived.
async fn read_events(
    response: &mut rocket::local::asynchronous::LocalResponse<'_>,
    count: usize,
) -> Vec<(String, Value)> {
    let mut text = String::new();
    let mut buf = [0u8; 4096];
    loop {
        let events: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|chunk| chunk.contains("data:"))
            .filter_map(|chunk| {
                let event = chunk
                    .lines()
                    .find_map(|l| l.strip_prefix("event:"))?
                    .trim()
                    .to_owned();
                let data: String = chunk
                    .lines()
                    .filter_map(|l| l.strip_prefix("data:"))
                    .map(str::trim)
                    .collect();
                Some((event, serde_json::from_str(&data).ok()?))
            })
            .collect();
        if events.len() >= count && text.ends_with("\n\n") {
            return events;
        }
        let n = tokio::time::timeout(Duration::from_secs(30), response.read(&mut buf))
            .await
            .expect("an event within 30s")
            .expect("read");
        assert!(n > 0, "stream ended early: {text}");
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

#[tokio::test]
async fn stats_stream_sends_samples_to_admins() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "stats_stream").await else {
        return;
    };
    let admin = app.admin_token("operator");
    let mut response = app
        .client
        .get("/v1/admin/stats/stream?interval_ms=250")
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {admin}"),
        ))
        .dispatch()
        .await;
    assert_eq!(response.status(), Status::Ok);
    assert_eq!(
        response.content_type().map(|c| c.to_string()).as_deref(),
        Some("text/event-stream")
    );
    let events = read_events(&mut response, 2).await;
    for (event, sample) in &events {
        assert_eq!(event, "stats");
        assert!(sample["at"].is_string(), "{sample}");
        assert_eq!(sample["queues"]["backend"], "sqlite");
        let probe = sample["queues"]["queues"]
            .as_array()
            .expect("queues")
            .iter()
            .find(|q| q["queue"] == "probe")
            .expect("probe");
        for field in [
            "pending",
            "running",
            "scheduled",
            "dead",
            "done",
            "done_last_hour",
        ] {
            assert!(probe[field].is_u64(), "{field}: {probe}");
        }
        assert_eq!(sample["outbox"]["backlog"], 0);
    }
    drop(response);

    app.get("/v1/admin/stats/stream", &app.token("member"))
        .await
        .assert_problem(403);
    app.get("/v1/admin/stats/stream?interval_ms=10", &admin)
        .await
        .assert_problem(400);
}

#[tokio::test]
async fn job_arguments_are_shown_with_secrets_redacted() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "redacted_args").await else {
        return;
    };
    let admin = app.admin_token("operator");
    let db = gantry::store::connect(&app.database_url)
        .await
        .expect("connect");
    let id = uuid::Uuid::new_v4();
    let envelope = json!({
        "job_id": id,
        "attempt": 2,
        "enqueued_at": "2026-01-01T00:00:00Z",
        "args": {
            "event_type": "codegen.requested",
            "data": {
                "password": "hunter2",
                "Api_Key": "k-123",
                "git": {"url": "https://bob:s3cret@git.example.com/repo.git", "branch": "main"},
                "headers": [{"authorization": "Bearer abc"}],
                "token_ttl": null,
                "count": 3
            }
        }
    });
    gantry::store::jobs::insert_dead(&db, id, "probe", envelope, 2, "boom")
        .await
        .expect("insert dead job");

    let expected = json!({
        "event_type": "codegen.requested",
        "data": {
            "password": "[redacted]",
            "Api_Key": "[redacted]",
            "git": {"url": "https://bob:[redacted]@git.example.com/repo.git", "branch": "main"},
            "headers": [{"authorization": "[redacted]"}],
            "token_ttl": null,
            "count": 3
        }
    });
    let job = app.get(&format!("/v1/admin/jobs/{id}"), &admin).await;
    job.assert_status(200);
    assert_eq!(job.body["args"], expected);
    let list = app
        .get("/v1/admin/jobs?queue=probe&state=dead", &admin)
        .await;
    list.assert_status(200);
    assert_eq!(list.body["items"][0]["args"], expected);
    assert!(!list.text.contains("hunter2") && !list.text.contains("s3cret"));
}
