//! The codegen runner end to end: the API in process, the publisher and the runner as the real
//! binary. A graph is stored, a job submitted; it completes through the outbox and the `codegen`
//! queue, and its artifacts and bundle are downloaded — on SQLite and on Postgres + Redis. Also:
//! cancellation (pending and running), a failing LLM, LLM refinement, a runner killed mid-job,
//! and delivery to a local bare Git repository with credentials from an org secret.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::{gantry, ChildGuard};
use common::{eventually, test_redis_url, Backend, TestApp};
use serde_json::{json, Value};
use std::io::Read;
use std::process::Stdio;
use std::time::Duration;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

/// Where data and queues live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// SQLite holds data and queues.
    Sqlite,
    /// Postgres holds data, Redis the queues.
    PostgresRedis,
    /// Postgres holds data and queues.
    Postgres,
}

/// The API in process plus the environment of worker processes.
struct Scenario {
    app: TestApp,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    token: String,
    org: String,
    project: String,
    redis: Option<(String, String)>,
}

impl Drop for Scenario {
    /// Removes this scenario's Redis keys (they all carry its prefix).
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

fn example(name: &str) -> Value {
    let path = format!("{}/examples/graphs/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(&path).expect("example graph"))
        .expect("example graph is JSON")
}

impl Scenario {
    async fn start(mode: Mode, test: &str, extra: &[(&str, String)]) -> Option<Self> {
        let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
        let mut env: Vec<(String, String)> = vec![
            ("GANTRY_JOB_HEARTBEAT".into(), "1s".into()),
            ("GANTRY_OUTBOX_POLL_INTERVAL".into(), "100ms".into()),
            ("GANTRY_RECONCILE_INTERVAL".into(), "1s".into()),
            ("GANTRY_QUEUE_PREFIX".into(), prefix.clone()),
            ("GANTRY_EVENT_STREAM".into(), format!("{prefix}events")),
            ("GANTRY_JOB_BACKOFF_BASE".into(), "100ms".into()),
            ("GANTRY_GIT_ALLOWED_SCHEMES".into(), "https,file".into()),
        ];
        for (name, value) in extra {
            env.push(((*name).to_owned(), value.clone()));
        }
        let mut redis = None;
        let backend = match mode {
            Mode::Sqlite => Backend::Sqlite,
            Mode::PostgresRedis => {
                let url = test_redis_url(test)?;
                env.push(("REDIS_URL".into(), url.clone()));
                redis = Some((url, prefix));
                Backend::Postgres
            }
            Mode::Postgres => Backend::Postgres,
        };
        let app_env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = TestApp::spawn_with(backend, test, &app_env).await?;
        env.push(("DATABASE_URL".into(), app.database_url.clone()));
        let token = app.token("alice");
        let org = app.create_org(&token, "acme").await;
        let workspace = app.create_workspace(&token, &org, "main").await;
        let project = app.create_project(&token, &org, &workspace, "shop").await;
        Some(Self {
            app,
            env,
            dir: tempfile::tempdir().expect("tempdir"),
            token,
            org,
            project,
            redis,
        })
    }

    /// The publisher and the codegen runner, as one process.
    fn worker(&self) -> ChildGuard {
        let mut cmd = gantry(self.dir.path());
        cmd.args(["--workers", "outbox-publisher,codegen-runner"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        ChildGuard(cmd.spawn().expect("spawn worker"))
    }

    async fn put_graph(&self, graph: Value) -> i64 {
        let path = format!("/v1/orgs/{}/projects/{}/graph", self.org, self.project);
        self.app.put_graph(&self.token, &path, graph).await
    }

    fn jobs_path(&self) -> String {
        format!("/v1/orgs/{}/codegen-jobs", self.org)
    }

    async fn submit(&self, body: Value) -> Value {
        let response = self.app.post(&self.jobs_path(), &self.token, body).await;
        response.assert_status(202);
        assert_eq!(response.body["status"], "pending", "{}", response.body);
        let location = response.header("location").expect("Location").to_owned();
        assert_eq!(
            location,
            format!(
                "{}/{}",
                self.jobs_path(),
                response.body["id"].as_str().unwrap()
            )
        );
        response.body.clone()
    }

    async fn wait_for(&self, job_id: &str, statuses: &[&str]) -> Value {
        let path = format!("{}/{job_id}", self.jobs_path());
        eventually(Duration::from_secs(90), || async {
            let response = self.app.get(&path, &self.token).await;
            response.assert_status(200);
            let status = response.body["status"].as_str().unwrap_or_default();
            if statuses.contains(&status) {
                Ok(response.body.clone())
            } else {
                Err(format!("job never reached {statuses:?}: {}", response.body))
            }
        })
        .await
    }

    /// Event types about `aggregate`, oldest first.
    async fn events_about(&self, aggregate: &str) -> Vec<String> {
        let response = self
            .app
            .get(
                &format!("/v1/orgs/{}/events?limit=200", self.org),
                &self.token,
            )
            .await;
        response.assert_status(200);
        response.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["aggregate"]["id"] == aggregate)
            .filter_map(|e| e["type"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The files of a `.tar.gz`, by path.
fn untar(bytes: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(bytes));
    let mut files = Vec::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let mut content = Vec::new();
        entry.read_to_end(&mut content).expect("read entry");
        files.push((entry.path().expect("path").display().to_string(), content));
    }
    files
}

fn sha256_hex(bytes: &[u8]) -> String {
    gantry::workers::codegen::bundle::sha256_hex(bytes)
}

async fn generate_and_download(mode: Mode) {
    let Some(s) = Scenario::start(mode, "generate_and_download", &[]).await else {
        return;
    };
    let _worker = s.worker();
    let version = s.put_graph(example("three-tier.json")).await;
    let submitted = s
        .submit(json!({"project_id": s.project, "engine": "templates"}))
        .await;
    assert_eq!(submitted["graph_version"], version);
    assert_eq!(submitted["engine"], "templates");
    let job_id = submitted["id"].as_str().unwrap().to_owned();

    let job = s.wait_for(&job_id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert!(job["error"].is_null());
    assert_eq!(job["progress"]["done"], job["progress"]["total"]);
    assert!(job["timings"]["started_at"].is_string());
    assert!(job["timings"]["finished_at"].is_string());
    assert!(job["timings"]["run_seconds"].as_f64().unwrap() >= 0.0);

    // The artifacts: one file per object plus kustomization.yaml, each downloadable and
    // matching its listed size and digest.
    let listed = s
        .app
        .get(&format!("{}/{job_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    listed.assert_status(200);
    let items = listed.body["items"].as_array().expect("items").clone();
    let paths: Vec<&str> = items.iter().map(|a| a["path"].as_str().unwrap()).collect();
    assert!(paths.contains(&"kustomization.yaml"), "{paths:?}");
    assert!(
        paths.iter().any(|p| p.starts_with("deployment-")),
        "{paths:?}"
    );
    assert!(
        paths.iter().any(|p| p.starts_with("networkpolicy-")),
        "{paths:?}"
    );
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "listed by path");
    for item in &items {
        let path = item["path"].as_str().unwrap();
        let file = s
            .app
            .get(
                &format!("{}/{job_id}/artifacts/{path}", s.jobs_path()),
                &s.token,
            )
            .await;
        file.assert_status(200);
        assert_eq!(file.header("content-type"), Some("application/yaml"));
        assert_eq!(item["media_type"], "application/yaml");
        assert_eq!(item["size"].as_u64().unwrap() as usize, file.text.len());
        assert_eq!(item["sha256"], sha256_hex(file.text.as_bytes()));
        if path != "kustomization.yaml" {
            gantry::workers::codegen::objects::Object::from_yaml(&file.text)
                .unwrap_or_else(|e| panic!("{path} does not parse back: {e}"));
        }
    }
    s.app
        .get(
            &format!("{}/{job_id}/artifacts/nope.yaml", s.jobs_path()),
            &s.token,
        )
        .await
        .assert_problem(404);

    // The bundle holds exactly the same files.
    let bundle = s
        .app
        .client
        .get(format!("{}/{job_id}/bundle", s.jobs_path()))
        .header(rocket::http::Header::new(
            "Authorization",
            format!("Bearer {}", s.token),
        ))
        .dispatch()
        .await;
    assert_eq!(bundle.status().code, 200);
    assert_eq!(
        bundle.content_type().map(|c| c.to_string()).as_deref(),
        Some("application/gzip")
    );
    let bytes = bundle.into_bytes().await.expect("bundle bytes");
    let files = untar(&bytes);
    let bundled: Vec<(&str, String)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), sha256_hex(c)))
        .collect();
    let listed: Vec<(&str, String)> = items
        .iter()
        .map(|a| {
            (
                a["path"].as_str().unwrap(),
                a["sha256"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(bundled, listed);

    // The lifecycle went through the outbox.
    let events = s.events_about(&job_id).await;
    assert_eq!(
        events,
        ["codegen.requested", "codegen.started", "codegen.succeeded"]
    );

    // The same graph again gives byte-identical files.
    let again = s.submit(json!({"project_id": s.project})).await;
    let again_id = again["id"].as_str().unwrap();
    s.wait_for(again_id, &["succeeded"]).await;
    let second = s
        .app
        .get(&format!("{}/{again_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    assert_eq!(second.body["items"], json!(items));

    // Filters, cancel of a finished job, soft delete.
    let filtered = s
        .app
        .get(
            &format!(
                "{}?project_id={}&status=succeeded",
                s.jobs_path(),
                s.project
            ),
            &s.token,
        )
        .await;
    filtered.assert_status(200);
    assert_eq!(filtered.body["items"].as_array().unwrap().len(), 2);
    let none = s
        .app
        .get(&format!("{}?status=failed", s.jobs_path()), &s.token)
        .await;
    assert_eq!(none.body["items"], json!([]));
    s.app
        .get(&format!("{}?status=done", s.jobs_path()), &s.token)
        .await
        .assert_problem(400);
    s.app
        .post(
            &format!("{}/{job_id}/cancel", s.jobs_path()),
            &s.token,
            json!({}),
        )
        .await
        .assert_problem(409);
    s.app
        .delete(&format!("{}/{job_id}", s.jobs_path()), &s.token)
        .await
        .assert_status(204);
    s.app
        .get(&format!("{}/{job_id}", s.jobs_path()), &s.token)
        .await
        .assert_problem(404);
    s.app
        .get(&format!("{}/{job_id}/bundle", s.jobs_path()), &s.token)
        .await
        .assert_problem(404);
}

async fn submit_validation(mode: Mode) {
    let Some(s) = Scenario::start(mode, "submit_validation", &[]).await else {
        return;
    };
    let post = |body: Value| {
        let path = s.jobs_path();
        let token = s.token.clone();
        let app = &s.app;
        async move { app.post(&path, &token, body).await }
    };
    let unknown_project = post(json!({"project_id": uuid::Uuid::new_v4()})).await;
    unknown_project.assert_problem(422);
    assert_eq!(unknown_project.body["errors"][0]["pointer"], "/project_id");

    let response = post(json!({"project_id": s.project, "graph_version": 7})).await;
    response.assert_problem(422);
    assert_eq!(response.body["errors"][0]["pointer"], "/graph_version");

    // The llm engine without GANTRY_LLM_* is refused at submit.
    let response = post(json!({"project_id": s.project, "engine": "llm"})).await;
    response.assert_problem(422);
    assert_eq!(response.body["errors"][0]["pointer"], "/engine");

    let response = post(json!({"project_id": s.project, "engine": "magic"})).await;
    response.assert_problem(422);

    let response = post(json!({
        "project_id": s.project,
        "target": {"git": {"url": "ftp://example.com/repo.git", "branch": "main", "path": "k8s"}}
    }))
    .await;
    response.assert_problem(422);
    assert_eq!(response.body["errors"][0]["pointer"], "/target/git/url");

    let response = post(json!({
        "project_id": s.project,
        "target": {"git": {"url": "https://example.com/repo.git", "branch": "main", "path": "k8s",
                           "credentials_secret": "missing"}}
    }))
    .await;
    response.assert_problem(422);
    assert_eq!(
        response.body["errors"][0]["pointer"],
        "/target/git/credentials_secret"
    );

    // A viewer may read but not submit.
    s.app.add_member(&s.token, &s.org, "victor", "viewer").await;
    let viewer = s.app.token("victor");
    s.app
        .post(&s.jobs_path(), &viewer, json!({"project_id": s.project}))
        .await
        .assert_problem(403);
    s.app.get(&s.jobs_path(), &viewer).await.assert_status(200);
}

async fn cancel_pending(mode: Mode) {
    let Some(s) = Scenario::start(mode, "cancel_pending", &[]).await else {
        return;
    };
    s.put_graph(example("three-tier.json")).await;
    // No runner yet: the job stays pending until cancelled, and never runs afterwards.
    let job = s.submit(json!({"project_id": s.project})).await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let cancel_path = format!("{}/{job_id}/cancel", s.jobs_path());
    let cancelled = s.app.post(&cancel_path, &s.token, json!({})).await;
    cancelled.assert_status(202);
    assert_eq!(cancelled.body["status"], "cancelled");

    let _worker = s.worker();
    // A later job completes, so the runner has seen the queue; the cancelled one never ran.
    let later = s.submit(json!({"project_id": s.project})).await;
    s.wait_for(later["id"].as_str().unwrap(), &["succeeded"])
        .await;
    let job = s.wait_for(&job_id, &["cancelled"]).await;
    assert!(job["timings"]["started_at"].is_null(), "{job}");
    let artifacts = s
        .app
        .get(&format!("{}/{job_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    assert_eq!(artifacts.body["items"], json!([]));
    s.app
        .post(&cancel_path, &s.token, json!({}))
        .await
        .assert_problem(409);
    eventually(Duration::from_secs(20), || async {
        let events = s.events_about(&job_id).await;
        if events == ["codegen.requested", "codegen.cancelled"] {
            Ok(())
        } else {
            Err(format!("events: {events:?}"))
        }
    })
    .await;
}

/// An OpenAI-style chat-completions answer carrying `content`.
fn completion(content: &str) -> Value {
    json!({
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": content}}]
    })
}

/// The templates' output for a graph, as multi-document YAML (what a faithful model returns).
fn templates_yaml(graph: &Value, project: &str) -> String {
    use gantry::workers::codegen::templates;
    let graph = gantry::domain::graph::validate(graph, "").expect("valid graph");
    let objects = templates::generate(
        &graph,
        &templates::Target {
            project: project.to_owned(),
        },
    )
    .expect("generate");
    objects
        .iter()
        .map(|o| o.to_yaml().expect("yaml"))
        .collect::<Vec<_>>()
        .join("---\n")
}

async fn llm_engine(mode: Mode) {
    let llm = MockServer::start().await;
    let graph = example("three-tier.json");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion(&format!(
                "```yaml\n{}```",
                templates_yaml(&graph, "shop")
            ))),
        )
        .mount(&llm)
        .await;
    let extra = [
        ("GANTRY_LLM_BASE_URL", format!("{}/v1", llm.uri())),
        ("GANTRY_LLM_MODEL", "test-model".to_owned()),
        ("GANTRY_LLM_API_KEY", "sk-test".to_owned()),
    ];
    let Some(s) = Scenario::start(mode, "llm_engine", &extra).await else {
        return;
    };
    let _worker = s.worker();
    s.put_graph(graph).await;
    let job = s
        .submit(json!({"project_id": s.project, "engine": "llm"}))
        .await;
    let job = s
        .wait_for(job["id"].as_str().unwrap(), &["succeeded", "failed"])
        .await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["engine"], "llm");
    assert_eq!(
        job["progress"]["total"], 4,
        "validate, generate, refine, store"
    );
    let requests = llm.received_requests().await.expect("requests");
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer sk-test")
    );
}

async fn llm_failure(mode: Mode) {
    let llm = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200).set_body_json(completion("I cannot do YAML today.")),
        )
        .mount(&llm)
        .await;
    let extra = [
        ("GANTRY_LLM_BASE_URL", format!("{}/v1", llm.uri())),
        ("GANTRY_LLM_MODEL", "test-model".to_owned()),
        ("GANTRY_LLM_MAX_ATTEMPTS", "2".to_owned()),
    ];
    let Some(s) = Scenario::start(mode, "llm_failure", &extra).await else {
        return;
    };
    let _worker = s.worker();
    s.put_graph(example("three-tier.json")).await;
    let job = s
        .submit(json!({"project_id": s.project, "engine": "llm"}))
        .await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let job = s.wait_for(&job_id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["type"], "llm_unparseable", "{job}");
    assert!(!job["error"]["detail"].as_str().unwrap().is_empty());
    // Answers that never parse are a permanent failure: asked twice, never retried as a job.
    assert_eq!(llm.received_requests().await.unwrap().len(), 2);
    let artifacts = s
        .app
        .get(&format!("{}/{job_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    assert_eq!(artifacts.body["items"], json!([]));
    eventually(Duration::from_secs(20), || async {
        let events = s.events_about(&job_id).await;
        if events.last().map(String::as_str) == Some("codegen.failed") {
            Ok(())
        } else {
            Err(format!("events: {events:?}"))
        }
    })
    .await;
}

async fn cancel_running(mode: Mode) {
    // The model answers slowly, so the job is running (refine) when the cancel arrives.
    let llm = MockServer::start().await;
    let graph = example("three-tier.json");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(&templates_yaml(&graph, "shop")))
                .set_delay(Duration::from_secs(3)),
        )
        .mount(&llm)
        .await;
    let extra = [
        ("GANTRY_LLM_BASE_URL", format!("{}/v1", llm.uri())),
        ("GANTRY_LLM_MODEL", "test-model".to_owned()),
    ];
    let Some(s) = Scenario::start(mode, "cancel_running", &extra).await else {
        return;
    };
    let _worker = s.worker();
    s.put_graph(graph).await;
    let job = s
        .submit(json!({"project_id": s.project, "engine": "llm"}))
        .await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let running = s.wait_for(&job_id, &["running"]).await;
    assert!(running["timings"]["started_at"].is_string());
    let cancel = s
        .app
        .post(
            &format!("{}/{job_id}/cancel", s.jobs_path()),
            &s.token,
            json!({}),
        )
        .await;
    cancel.assert_status(202);
    assert_eq!(cancel.body["cancel_requested"], true);
    let job = s.wait_for(&job_id, &["cancelled", "succeeded"]).await;
    assert_eq!(job["status"], "cancelled", "{job}");
    let artifacts = s
        .app
        .get(&format!("{}/{job_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    assert_eq!(artifacts.body["items"], json!([]));
}

async fn crash_mid_job(mode: Mode) {
    // The model answers slowly, so the runner is killed (-9) while the job is running; a new
    // runner rescues the job and finishes it once: one `started`, one `succeeded`, no doubled
    // artifacts.
    let llm = MockServer::start().await;
    let graph = example("three-tier.json");
    Mock::given(method("POST"))
        .and(path("/v1/chat/completions"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(completion(&templates_yaml(&graph, "shop")))
                .set_delay(Duration::from_secs(2)),
        )
        .mount(&llm)
        .await;
    let extra = [
        ("GANTRY_LLM_BASE_URL", format!("{}/v1", llm.uri())),
        ("GANTRY_LLM_MODEL", "test-model".to_owned()),
    ];
    let Some(s) = Scenario::start(mode, "crash_mid_job", &extra).await else {
        return;
    };
    s.put_graph(graph).await;
    let job = s
        .submit(json!({"project_id": s.project, "engine": "llm"}))
        .await;
    let job_id = job["id"].as_str().unwrap().to_owned();
    let first = s.worker();
    s.wait_for(&job_id, &["running"]).await;
    eventually(Duration::from_secs(30), || async {
        if llm.received_requests().await.unwrap_or_default().is_empty() {
            Err("the runner never asked the model")
        } else {
            Ok(())
        }
    })
    .await;
    common::process::signal(&first.0, true);
    drop(first);

    let _second = s.worker();
    let job = s.wait_for(&job_id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let artifacts = s
        .app
        .get(&format!("{}/{job_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    let paths: Vec<&str> = artifacts.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["path"].as_str().unwrap())
        .collect();
    let mut unique = paths.clone();
    unique.dedup();
    assert_eq!(paths, unique);
    assert_eq!(
        paths.len(),
        19,
        "18 objects + kustomization.yaml: {paths:?}"
    );
    let events = eventually(Duration::from_secs(20), || async {
        let events = s.events_about(&job_id).await;
        if events.last().map(String::as_str) == Some("codegen.succeeded") {
            Ok(events)
        } else {
            Err(format!("events: {events:?}"))
        }
    })
    .await;
    assert_eq!(
        events,
        ["codegen.requested", "codegen.started", "codegen.succeeded"]
    );
}

fn git(args: &[&str]) -> String {
    let output = std::process::Command::new("git")
        .args(args)
        .output()
        .expect("git");
    assert!(
        output.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

async fn git_delivery(mode: Mode) {
    let Some(s) = Scenario::start(mode, "git_delivery", &[]).await else {
        return;
    };
    let remote = tempfile::tempdir().expect("tempdir");
    let bare = remote.path().join("platform.git");
    git(&["init", "--bare", "--quiet", bare.to_str().unwrap()]);
    let url = format!("file://{}", bare.display());

    // Credentials live in a write-only org secret; file:// ignores them, but they must travel.
    s.app
        .request(
            "PUT",
            &format!("/v1/orgs/{}/secrets/git-token", s.org),
            Some(&s.token),
            Some(json!({"value": "s3cr3t-token", "allowed_hosts": ["github.com"]})),
            &[],
        )
        .await
        .assert_status(204);

    let _worker = s.worker();
    let version = s.put_graph(example("three-tier.json")).await;
    let job = s
        .submit(json!({
            "project_id": s.project,
            "target": {"git": {"url": url, "branch": "deploy", "path": "clusters/shop",
                               "credentials_secret": "git-token"}}
        }))
        .await;
    assert_eq!(job["target"]["git"]["branch"], "deploy");
    let job_id = job["id"].as_str().unwrap().to_owned();
    let job = s.wait_for(&job_id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(
        job["progress"]["total"], 4,
        "validate, generate, store, deliver"
    );
    let sha = job["commit_sha"].as_str().expect("commit sha").to_owned();
    let git_dir = bare.to_str().unwrap();
    assert_eq!(git(&["--git-dir", git_dir, "rev-parse", "deploy"]), sha);
    let message = git(&["--git-dir", git_dir, "log", "-1", "--format=%B", "deploy"]);
    assert!(message.contains("shop"), "{message}");
    assert!(
        message.contains(&format!("graph version {version}")),
        "{message}"
    );
    assert!(message.contains(&job_id), "{message}");
    let tree = git(&[
        "--git-dir",
        git_dir,
        "ls-tree",
        "-r",
        "--name-only",
        "deploy",
    ]);
    let artifacts = s
        .app
        .get(&format!("{}/{job_id}/artifacts", s.jobs_path()), &s.token)
        .await;
    let mut expected: Vec<String> = artifacts.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| format!("clusters/shop/{}", a["path"].as_str().unwrap()))
        .collect();
    expected.sort();
    let mut committed: Vec<String> = tree.lines().map(str::to_owned).collect();
    committed.sort();
    assert_eq!(committed, expected);
    let kustomization = git(&[
        "--git-dir",
        git_dir,
        "show",
        "deploy:clusters/shop/kustomization.yaml",
    ]);
    assert!(kustomization.contains("Kustomization"));
    // The secret never shows up in the job.
    let job_text = s
        .app
        .get(&format!("{}/{job_id}", s.jobs_path()), &s.token)
        .await
        .text;
    assert!(!job_text.contains("s3cr3t-token"));
}

/// Fairness: a flood of queued probe jobs does not starve the `codegen` queue. The codegen job
/// submitted behind 20,000 queued probes (each 20 ms of simulated work, so the flood needs
/// tens of seconds) succeeds while most of the flood is still waiting: each queue is claimed
/// on its own, never behind another queue's backlog.
async fn not_starved_by_a_probe_flood(mode: Mode) {
    // The most one request may ask for (`count` is capped at 10,000).
    const FLOOD: u64 = 10_000;
    let Some(s) = Scenario::start(mode, "not_starved_by_a_probe_flood", &[]).await else {
        return;
    };
    s.put_graph(example("three-tier.json")).await;
    let admin = s.app.admin_token("operator");
    let flood = s
        .app
        .post(
            "/v1/admin/probes",
            &admin,
            json!({"count": FLOOD, "delay_ms": 20}),
        )
        .await;
    flood.assert_status(202);
    let batch = flood.body["batch_id"]
        .as_str()
        .expect("batch_id")
        .to_owned();
    let probes_completed = || async {
        let progress = s
            .app
            .get(&format!("/v1/admin/probes/{batch}"), &admin)
            .await;
        progress.assert_status(200);
        progress.body["completed"].as_u64().expect("completed")
    };
    let _worker = s.worker();
    // The flood is published and being worked on before the codegen job is submitted.
    eventually(Duration::from_secs(60), || async {
        let done = probes_completed().await;
        if done > 0 {
            Ok(())
        } else {
            Err("no probe completed yet".to_owned())
        }
    })
    .await;
    let submitted = s
        .submit(json!({"project_id": s.project, "engine": "templates"}))
        .await;
    let job_id = submitted["id"].as_str().unwrap().to_owned();
    let job = s.wait_for(&job_id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let done = probes_completed().await;
    assert!(
        done < FLOOD / 2,
        "the codegen job waited behind the flood: {done} of {FLOOD} probes had completed"
    );
}

/// A secret goes only to the hosts it is bound to, and git targets only to allowed addresses:
/// refused at submit (422) and again by the worker (`git_rejected`) when the binding narrowed
/// meanwhile; the remote never sees a connection.
async fn git_secret_binding(mode: Mode) {
    let extra = [
        ("GANTRY_GIT_ALLOWED_SCHEMES", "https,http,file".to_owned()),
        ("GANTRY_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8".to_owned()),
    ];
    let Some(s) = Scenario::start(mode, "git_secret_binding", &extra).await else {
        return;
    };
    let s = &s;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    let secret_path = format!("/v1/orgs/{}/secrets/git-token", s.org);
    let put_secret = |hosts: Value| {
        let body = json!({"value": "s3cr3t-token", "allowed_hosts": hosts});
        let path = secret_path.clone();
        async move {
            s.app
                .request("PUT", &path, Some(&s.token), Some(body), &[])
                .await
                .assert_status(204);
        }
    };
    put_secret(json!(["github.com"])).await;
    s.put_graph(example("three-tier.json")).await;
    let post = |url: String| {
        let body = json!({
            "project_id": s.project,
            "target": {"git": {"url": url, "branch": "main", "path": "k8s",
                               "credentials_secret": "git-token"}}
        });
        let path = s.jobs_path();
        async move {
            s.app
                .request("POST", &path, Some(&s.token), Some(body), &[])
                .await
        }
    };
    let repo = format!("http://127.0.0.1:{port}/acme/deploy.git");

    // Submit: a host the secret is not bound to.
    for url in [
        "https://attacker.example/acme/deploy.git".to_owned(),
        "https://github.com:8443/acme/deploy.git".to_owned(),
        repo.clone(),
    ] {
        let response = post(url.clone()).await;
        response.assert_problem(422);
        assert_eq!(
            response.body["errors"][0]["pointer"], "/target/git/credentials_secret",
            "{url}: {}",
            response.text
        );
    }

    // Bound to the repository's host:port: accepted; then an admin narrows the binding before
    // the worker runs, and the worker refuses to send it.
    put_secret(json!([format!("127.0.0.1:{port}")])).await;
    let job = post(repo.clone()).await;
    job.assert_status(202);
    let job_id = job.id();
    put_secret(json!(["github.com"])).await;
    let _worker = s.worker();
    let job = s.wait_for(&job_id, &["succeeded", "failed"]).await;
    assert_eq!(job["status"], "failed", "{job}");
    assert_eq!(job["error"]["type"], "git_rejected", "{job}");
    assert!(!job.to_string().contains("s3cr3t-token"));
    assert!(
        listener.accept().is_err(),
        "the worker connected to the repository anyway"
    );
}

/// Git URLs pass the outbound policy at submit; the message never shows the resolved address.
async fn git_target_address_policy(mode: Mode) {
    let extra = [(
        "GANTRY_GIT_ALLOWED_SCHEMES",
        "https,http,ssh,file".to_owned(),
    )];
    let Some(s) = Scenario::start(mode, "git_target_address_policy", &extra).await else {
        return;
    };
    s.put_graph(example("three-tier.json")).await;
    for url in [
        "http://localhost:8080/acme/deploy.git",
        "https://10.1.2.3/acme/deploy.git",
        "ssh://git@169.254.169.254/acme/deploy.git",
        "git@localhost:acme/deploy.git",
    ] {
        let response = s
            .app
            .request(
                "POST",
                &s.jobs_path(),
                Some(&s.token),
                Some(json!({
                    "project_id": s.project,
                    "target": {"git": {"url": url, "branch": "main", "path": "k8s"}}
                })),
                &[],
            )
            .await;
        response.assert_problem(422);
        assert_eq!(
            response.body["errors"][0]["pointer"], "/target/git/url",
            "{url}: {}",
            response.text
        );
        if url.contains("localhost") {
            let text = &response.text;
            assert!(
                !text.contains("127.0.0.1") && !text.contains("::1"),
                "{text}"
            );
        }
    }
}

on_each_backend!(
    { sqlite: Mode::Sqlite, postgres_redis: Mode::PostgresRedis } =>
    git_secret_binding,
    git_target_address_policy,
    generate_and_download,
    submit_validation,
    cancel_pending,
    cancel_running,
    llm_failure,
    git_delivery,
    crash_mid_job,
);
on_each_backend!(
    { sqlite: Mode::Sqlite, postgres: Mode::Postgres, postgres_redis: Mode::PostgresRedis } =>
    not_starved_by_a_probe_flood,
);
// The mock model answers the same way whatever holds the queues: SQLite is enough.
on_each_backend!({ sqlite: Mode::Sqlite } => llm_engine);
