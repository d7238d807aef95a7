//! The real `gantry` binary as a user runs it: exit codes, config errors, dev tokens,
//! migrations (also two at once on Postgres), OpenAPI drift, and a served API with curl-like
//! calls and a graceful SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use serde_json::{json, Value};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use common::eventually;
use common::process::{gantry, signal, spawn_serving, wait_for_exit};

fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("run gantry")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn no_role_prints_help_and_exits_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(&mut gantry(dir.path()));
    assert_eq!(output.status.code(), Some(2));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        stderr(&output)
    );
    assert!(
        all.contains("--server") && all.contains("--all-workers"),
        "{all}"
    );
}

#[test]
fn unknown_worker_exits_2_naming_valid_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(gantry(dir.path()).args(["--workers", "outbox-publisher,nope"]));
    assert_eq!(output.status.code(), Some(2));
    let err = stderr(&output);
    for name in [
        "outbox-publisher",
        "codegen-runner",
        "vcluster-provisioner",
        "backup-executor",
        "health-poller",
    ] {
        assert!(err.contains(name), "{err}");
    }
}

#[test]
fn bad_config_fails_with_one_line_naming_the_variable() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (var, value) in [
        ("ROCKET_PORT", "eighty"),
        ("DATABASE_URL", "mysql://db"),
        ("GANTRY_ENV", "staging"),
    ] {
        let output = run(gantry(dir.path()).arg("--server").env(var, value));
        assert_eq!(output.status.code(), Some(2), "{var}");
        let err = stderr(&output);
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert!(err.contains(var), "{err}");
    }
    let output = run(gantry(dir.path())
        .arg("--server")
        .env("GANTRY_ENV", "production"));
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("KEYCLOAK_ISSUER"));
}

#[test]
fn dev_token_is_refused_in_production_and_with_keycloak() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(gantry(dir.path())
        .args(["dev-token", "--sub", "alice"])
        .env("GANTRY_ENV", "production"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("GANTRY_ENV=production"),
        "{}",
        stderr(&output)
    );
    assert!(output.stdout.is_empty());

    let output = run(gantry(dir.path())
        .args(["dev-token", "--sub", "alice"])
        .env("KEYCLOAK_ISSUER", "https://sso.example.com/realms/gantry"));
    assert_eq!(output.status.code(), Some(2));
    assert!(
        stderr(&output).contains("KEYCLOAK_ISSUER"),
        "{}",
        stderr(&output)
    );
    assert!(
        !dir.path().join(".gantry").exists(),
        "no key is created when refused"
    );
}

#[test]
fn dev_token_creates_a_private_key_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first =
        run(gantry(dir.path()).args(["dev-token", "--sub", "alice", "--admin", "--ttl", "2h"]));
    assert!(first.status.success(), "{}", stderr(&first));
    let token = String::from_utf8_lossy(&first.stdout).trim().to_owned();
    assert_eq!(token.split('.').count(), 3);
    let key = dir.path().join(".gantry").join(gantry::auth::dev::KEY_FILE);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let before = std::fs::read(&key).expect("read key");
    let second = run(gantry(dir.path()).args(["dev-token", "--sub", "bob"]));
    assert!(second.status.success());
    assert_eq!(
        std::fs::read(&key).expect("read key"),
        before,
        "the key is reused"
    );
    let bad_ttl = run(gantry(dir.path()).args(["dev-token", "--sub", "bob", "--ttl", "soon"]));
    assert_eq!(bad_ttl.status.code(), Some(2));
}

#[test]
fn print_openapi_matches_the_committed_document() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = run(gantry(dir.path()).arg("print-openapi"));
    assert!(output.status.success());
    let printed: Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(printed["openapi"], "3.0.0");
    let committed_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("openapi/openapi.json");
    let committed: Value = serde_json::from_str(
        &std::fs::read_to_string(&committed_path).expect("openapi/openapi.json is committed"),
    )
    .expect("committed JSON");
    assert!(
        printed == committed,
        "openapi/openapi.json is stale: run `cargo run -- print-openapi > openapi/openapi.json`"
    );
    // Every route is documented with the bearer scheme and problem responses.
    let schemes = &printed["components"]["securitySchemes"]["bearer"];
    assert_eq!(schemes["scheme"], "bearer");
    let get_org = &printed["paths"]["/v1/orgs/{org_id}"]["get"];
    assert!(get_org["responses"]["404"]["content"]["application/problem+json"].is_object());
    assert!(get_org["security"].is_array());
}

#[test]
fn migrate_applies_and_is_repeatable_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let output = run(gantry(dir.path()).arg("migrate"));
        assert!(output.status.success(), "{}", stderr(&output));
    }
    assert!(
        dir.path().join("gantry.db").exists(),
        "default DATABASE_URL is gantry.db"
    );
}

#[tokio::test]
async fn concurrent_migrations_on_postgres_are_serialized() {
    let Some((_db, url)) =
        common::TestDatabase::create(common::Backend::Postgres, "concurrent_migrations").await
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let children: Vec<Child> = (0..3)
        .map(|_| {
            gantry(dir.path())
                .arg("migrate")
                .env("DATABASE_URL", &url)
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let output = child.wait_with_output().expect("wait");
        assert!(output.status.success(), "{}", stderr(&output));
    }
}

struct Server {
    child: Child,
    base: String,
}

impl Server {
    async fn start(dir: &Path, database_url: &str) -> Server {
        let (child, port) = spawn_serving(
            gantry(dir)
                .args(["--server", "--all-workers"])
                .env("DATABASE_URL", database_url)
                .stdout(Stdio::null())
                .stderr(Stdio::piped()),
        )
        .await;
        let base = format!("http://127.0.0.1:{port}");
        eventually(Duration::from_secs(30), || async {
            match reqwest::get(format!("{base}/health/ready")).await {
                Ok(r) if r.status().is_success() => Ok(()),
                other => Err(format!("server did not become ready: {other:?}")),
            }
        })
        .await;
        Server { child, base }
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        signal(&self.child, false);
        wait_for_exit(&mut self.child, Duration::from_secs(30))
            .expect("server did not stop on SIGTERM")
    }
}

async fn newcomer_walkthrough(database_url: &str) {
    gantry::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(dir.path(), database_url).await;
    let token_output = run(gantry(dir.path()).args([
        "dev-token",
        "--sub",
        "alice",
        "--email",
        "alice@example.com",
    ]));
    assert!(token_output.status.success(), "{}", stderr(&token_output));
    let token = String::from_utf8_lossy(&token_output.stdout)
        .trim()
        .to_owned();
    let http = reqwest::Client::new();
    let base = &server.base;

    let org = http
        .post(format!("{base}/v1/orgs"))
        .bearer_auth(&token)
        .json(&json!({"name": "Acme", "slug": "acme"}))
        .send()
        .await
        .expect("create org");
    assert_eq!(org.status(), 201);
    let org: Value = org.json().await.expect("json");
    let org_id = org["id"].as_str().expect("id");

    let ws = http
        .post(format!("{base}/v1/orgs/{org_id}/workspaces"))
        .bearer_auth(&token)
        .json(&json!({"name": "dev", "plan": "shared"}))
        .send()
        .await
        .expect("create workspace");
    assert_eq!(ws.status(), 202);
    assert!(ws.headers().contains_key("location"));
    let ws: Value = ws.json().await.expect("json");
    assert_eq!(ws["status"], "pending");

    let project = http
        .post(format!("{base}/v1/orgs/{org_id}/projects"))
        .bearer_auth(&token)
        .json(&json!({"name": "shop", "workspace_id": ws["id"]}))
        .send()
        .await
        .expect("create project");
    assert_eq!(project.status(), 201);
    let project: Value = project.json().await.expect("json");
    let graph_url = format!(
        "{base}/v1/orgs/{org_id}/projects/{}/graph",
        project["id"].as_str().expect("id")
    );

    let mut etag = http
        .get(&graph_url)
        .bearer_auth(&token)
        .send()
        .await
        .expect("get graph")
        .headers()["etag"]
        .to_str()
        .expect("etag")
        .to_owned();
    for version in 1..=2 {
        let put = http
            .put(&graph_url)
            .bearer_auth(&token)
            .header("If-Match", &etag)
            .json(&json!({"graph": {"nodes": [{
                "id": format!("n{version}"), "kind": "service", "spec": {"image": "nginx:1.27"}
            }], "edges": []}}))
            .send()
            .await
            .expect("put graph");
        assert_eq!(put.status(), 200);
        etag = put.headers()["etag"].to_str().expect("etag").to_owned();
        let body: Value = put.json().await.expect("json");
        assert_eq!(body["version"], version);
    }
    let versions: Value = http
        .get(format!("{graph_url}/versions"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("versions")
        .json()
        .await
        .expect("json");
    assert_eq!(versions["items"].as_array().map(Vec::len), Some(3));

    let swagger = http
        .get(format!("{base}/swagger-ui/"))
        .send()
        .await
        .expect("swagger");
    assert_eq!(swagger.status(), 200);
    let rapidoc = http
        .get(format!("{base}/rapidoc/"))
        .send()
        .await
        .expect("rapidoc");
    assert_eq!(rapidoc.status(), 200);

    let status = server.terminate();
    assert_eq!(status.code(), Some(0), "SIGTERM exits 0");
}

#[tokio::test]
async fn newcomer_walkthrough_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = format!("sqlite://{}/walkthrough.db?mode=rwc", dir.path().display());
    newcomer_walkthrough(&url).await;
}

#[tokio::test]
async fn newcomer_walkthrough_on_postgres() {
    let Some((_db, url)) = common::TestDatabase::create(
        common::Backend::Postgres,
        "newcomer_walkthrough_on_postgres",
    )
    .await
    else {
        return;
    };
    newcomer_walkthrough(&url).await;
}

/// The port of a listener that closes each connection unanswered, held for the rest of the
/// test process: a dead service no other process can take the port of.
fn closing_listener_port() -> u16 {
    let listener =
        std::net::TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).expect("bind listener");
    let port = listener.local_addr().expect("listener address").port();
    std::thread::spawn(move || {
        for connection in listener.incoming() {
            drop(connection);
        }
    });
    port
}

#[test]
fn readiness_names_what_is_down() {
    // A Redis URL whose port this test holds and closes every connection on (so no other
    // process can take it and answer): ready is 503 and names Redis; live stays 200.
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        gantry::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let dead_redis = format!("redis://127.0.0.1:{}", closing_listener_port());
        let (mut child, port) = spawn_serving(
            gantry(dir.path())
                .arg("--server")
                .env("REDIS_URL", &dead_redis)
                .stderr(Stdio::null()),
        )
        .await;
        let base = format!("http://127.0.0.1:{port}");
        let live = eventually(Duration::from_secs(30), || async {
            reqwest::get(format!("{base}/health/live"))
                .await
                .map_err(|e| format!("server did not start: {e}"))
        })
        .await;
        assert_eq!(live.status(), 200);
        let ready = reqwest::get(format!("{base}/health/ready"))
            .await
            .expect("ready");
        assert_eq!(ready.status(), 503);
        let body: Value = ready.json().await.expect("json");
        // Anonymous callers learn what is down, never why (no address, no driver error).
        assert_eq!(body["detail"], "redis: down", "{body}");
        let _ = child.kill();
        let _ = child.wait();
    });
}

#[tokio::test]
async fn readiness_checks_redis_when_configured() {
    let Some(redis_url) = common::test_redis_url("readiness_checks_redis_when_configured") else {
        return;
    };
    gantry::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, port) = spawn_serving(
        gantry(dir.path())
            .arg("--server")
            .env("REDIS_URL", &redis_url)
            .stderr(Stdio::null()),
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/health/ready");
    let ready = eventually(Duration::from_secs(30), || async {
        reqwest::get(&url)
            .await
            .map_err(|e| format!("server did not start: {e}"))
    })
    .await;
    let status = ready.status();
    let body: Value = ready.json().await.expect("json");
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(status, 200, "{body}; is Redis reachable at {redis_url}?");
    assert_eq!(body["checks"]["redis"], "ok");
    assert_eq!(body["checks"]["database"], "ok");
}
