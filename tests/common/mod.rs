//! Test harness: a fresh database per test (SQLite file or a new Postgres database), a
//! Keycloak-shaped token issuer on loopback, and the real application behind Rocket's client.
#![allow(dead_code)]

pub mod issuer;
pub mod process;

use gantry::config::Config;
use gantry::startup::{Application, Roles};
use rocket::http::{ContentType, Header, Status};
use rocket::local::asynchronous::Client;
use serde_json::Value;
use std::collections::HashMap;
use std::fmt::Display;
use std::future::Future;
use std::io::Write;
use std::time::{Duration, Instant};

pub use issuer::TestIssuer;

/// Which system of record a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh SQLite file.
    Sqlite,
    /// A fresh database on `GANTRY_TEST_DATABASE_URL`.
    Postgres,
}

/// Says, where a person running the tests will see it (not captured), that a test was skipped
/// for a missing service. When `CI` is set the service is part of the contract, so the test
/// fails instead: a green CI run must not hide tests that never ran.
#[track_caller]
pub fn report_skip(test: &str, why: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{test}: {why}, and CI is set: CI must provide every service the tests use");
    }
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// `GANTRY_TEST_REDIS_URL` without a trailing `/`; `None` (a skip, a failure under `CI`)
/// when it is not set.
#[track_caller]
pub fn test_redis_url(test: &str) -> Option<String> {
    match std::env::var("GANTRY_TEST_REDIS_URL") {
        Ok(url) => Some(url.trim_end_matches('/').to_owned()),
        Err(_) => {
            report_skip(test, "GANTRY_TEST_REDIS_URL is not set");
            None
        }
    }
}

/// `GANTRY_SECRETS_KEY` of every test app (32 bytes of 0x2a, base64), unless a test sets its own.
pub const TEST_SECRETS_KEY: &str = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio=";

/// The cipher the test apps seal stored secrets with (to read them the way workers do).
pub fn secrets_cipher() -> gantry::sealed::SecretsCipher {
    gantry::sealed::SecretsCipher::new([0x2a; 32], None)
}

/// How often [`eventually`] checks again.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Runs `probe` until it returns `Ok` and returns that value. After `timeout` it panics with
/// the last `Err`, which should say what was seen instead of the awaited state.
pub async fn eventually<T, E, F, Fut>(timeout: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
    E: Display,
{
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(seen) if Instant::now() >= deadline => {
                panic!("not reached within {timeout:?}: {seen}")
            }
            Err(_) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// A database made for one test and dropped afterwards.
pub enum TestDatabase {
    /// SQLite in a temporary directory.
    Sqlite(tempfile::TempDir),
    /// A Postgres database: (admin URL, database name).
    Postgres(String, String),
}

impl TestDatabase {
    /// Creates the database; `None` (with a skip notice) when Postgres is not configured.
    pub async fn create(backend: Backend, test: &str) -> Option<(Self, String)> {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                let url = format!("sqlite://{}/gantry.db?mode=rwc", dir.path().display());
                Some((TestDatabase::Sqlite(dir), url))
            }
            Backend::Postgres => {
                let Ok(admin_url) = std::env::var("GANTRY_TEST_DATABASE_URL") else {
                    report_skip(test, "GANTRY_TEST_DATABASE_URL is not set");
                    return None;
                };
                let name = format!("gantry_test_{}", uuid::Uuid::new_v4().simple());
                let admin = sea_orm::Database::connect(&admin_url)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("GANTRY_TEST_DATABASE_URL is set but unreachable: {e}")
                    });
                use sea_orm::ConnectionTrait;
                admin
                    .execute_unprepared(&format!("CREATE DATABASE {name}"))
                    .await
                    .expect("create test database");
                let _ = admin.close().await;
                let url = with_database(&admin_url, &name);
                Some((TestDatabase::Postgres(admin_url, name), url))
            }
        }
    }
}

/// `url` with its database name replaced by `name`.
pub fn with_database(url: &str, name: &str) -> String {
    let mut parsed = reqwest::Url::parse(url).expect("valid database URL");
    parsed.set_path(&format!("/{name}"));
    parsed.to_string()
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        if let TestDatabase::Postgres(admin_url, name) = self {
            let (admin_url, name) = (admin_url.clone(), name.clone());
            // Drop runs outside any runtime we may block; use a private one on a thread.
            let _ = std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                runtime.block_on(async {
                    use sea_orm::ConnectionTrait;
                    if let Ok(admin) = sea_orm::Database::connect(&admin_url).await {
                        let _ = admin
                            .execute_unprepared(&format!(
                                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                            ))
                            .await;
                        let _ = admin.close().await;
                    }
                });
            })
            .join();
        }
    }
}

/// A response, with the body parsed as JSON when it is JSON.
#[derive(Debug)]
pub struct TestResponse {
    /// Status.
    pub status: Status,
    /// Headers (lower-cased names).
    pub headers: HashMap<String, String>,
    /// Body as JSON (`Null` when empty or not JSON).
    pub body: Value,
    /// Body as text.
    pub text: String,
}

impl TestResponse {
    /// A header value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// Asserts the status, printing the body when it differs.
    #[track_caller]
    pub fn assert_status(&self, status: u16) -> &Self {
        assert_eq!(
            self.status.code, status,
            "unexpected status; body: {}",
            self.text
        );
        self
    }

    /// Asserts a problem+json error with `status`.
    #[track_caller]
    pub fn assert_problem(&self, status: u16) -> &Self {
        self.assert_status(status);
        assert_eq!(
            self.header("content-type"),
            Some("application/problem+json"),
            "body: {}",
            self.text
        );
        assert_eq!(self.body["status"], status, "body: {}", self.text);
        assert!(
            self.body["type"]
                .as_str()
                .is_some_and(|t| t.starts_with("https://gantry.dev/problems/")),
            "body: {}",
            self.text
        );
        self
    }

    /// The `id` field of the body.
    pub fn id(&self) -> String {
        self.body["id"].as_str().expect("body has an id").to_owned()
    }
}

/// The application under test.
pub struct TestApp {
    /// Rocket's in-process client (the full request pipeline: guards, fairings, catchers).
    pub client: Client,
    /// The token issuer the app trusts.
    pub issuer: TestIssuer,
    /// The database URL the app uses.
    pub database_url: String,
    /// Held until the test ends, then dropped.
    _database: TestDatabase,
}

impl TestApp {
    /// Starts the app on `backend`; `None` when that backend is not available here.
    pub async fn spawn(backend: Backend, test: &str) -> Option<TestApp> {
        Self::spawn_with(backend, test, &[]).await
    }

    /// Like [`TestApp::spawn`], with extra configuration variables.
    pub async fn spawn_with(
        backend: Backend,
        test: &str,
        extra: &[(&str, &str)],
    ) -> Option<TestApp> {
        gantry::install_crypto_provider();
        let (database, database_url) = TestDatabase::create(backend, test).await?;
        let issuer = TestIssuer::start().await;
        let config = test_config(&database_url, &issuer, None, extra);
        // The binary's own start-up path, so tests see the wiring production runs.
        let roles = Roles {
            server: true,
            workers: Vec::new(),
        };
        let application = Application::build(config, roles).await.expect("build app");
        let client = Client::tracked(application.into_rocket())
            .await
            .expect("rocket client");
        Some(TestApp {
            client,
            issuer,
            database_url,
            _database: database,
        })
    }

    /// A token for `sub` from the trusted issuer.
    pub fn token(&self, sub: &str) -> String {
        self.issuer.token(sub)
    }

    /// A platform-admin token.
    pub fn admin_token(&self, sub: &str) -> String {
        self.issuer.admin_token(sub)
    }

    /// Sends a request with an optional bearer token and JSON body.
    pub async fn request(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> TestResponse {
        let method = method.parse().expect("method");
        let mut request = self.client.req(method, path.to_owned());
        if let Some(token) = token {
            request.add_header(Header::new("Authorization", format!("Bearer {token}")));
        }
        for (name, value) in headers {
            request.add_header(Header::new(name.to_string(), value.to_string()));
        }
        if let Some(body) = body {
            request.add_header(ContentType::JSON);
            request.set_body(body.to_string());
        }
        let response = request.dispatch().await;
        let status = response.status();
        let headers = response
            .headers()
            .iter()
            .map(|h| (h.name().as_str().to_ascii_lowercase(), h.value().to_owned()))
            .collect();
        let text = response.into_string().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        TestResponse {
            status,
            headers,
            body,
            text,
        }
    }

    /// GET with a token.
    pub async fn get(&self, path: &str, token: &str) -> TestResponse {
        self.request("GET", path, Some(token), None, &[]).await
    }

    /// POST JSON with a token.
    pub async fn post(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.request("POST", path, Some(token), Some(body), &[])
            .await
    }

    /// PATCH JSON with a token.
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> TestResponse {
        self.request("PATCH", path, Some(token), Some(body), &[])
            .await
    }

    /// DELETE with a token.
    pub async fn delete(&self, path: &str, token: &str) -> TestResponse {
        self.request("DELETE", path, Some(token), None, &[]).await
    }

    /// Replaces a project's graph at `graph_path` (read, then write with its ETag); returns
    /// the new version.
    pub async fn put_graph(&self, token: &str, graph_path: &str, graph: Value) -> i64 {
        let current = self.get(graph_path, token).await;
        current.assert_status(200);
        let etag = current.header("etag").expect("etag").to_owned();
        let response = self
            .request(
                "PUT",
                graph_path,
                Some(token),
                Some(serde_json::json!({ "graph": graph })),
                &[("If-Match", &etag)],
            )
            .await;
        response.assert_status(200);
        response.body["version"].as_i64().expect("version")
    }

    /// Creates an organization owned by `token`'s user; returns its id.
    pub async fn create_org(&self, token: &str, slug: &str) -> String {
        let response = self
            .post(
                "/v1/orgs",
                token,
                serde_json::json!({"name": slug, "slug": slug}),
            )
            .await;
        response.assert_status(201);
        response.id()
    }

    /// Adds `sub` to the org with `role`.
    pub async fn add_member(&self, token: &str, org_id: &str, sub: &str, role: &str) {
        self.post(
            &format!("/v1/orgs/{org_id}/members"),
            token,
            serde_json::json!({"user_sub": sub, "role": role}),
        )
        .await
        .assert_status(201);
    }

    /// Creates a workspace; returns its id.
    pub async fn create_workspace(&self, token: &str, org_id: &str, name: &str) -> String {
        let response = self
            .post(
                &format!("/v1/orgs/{org_id}/workspaces"),
                token,
                serde_json::json!({"name": name, "plan": "shared"}),
            )
            .await;
        response.assert_status(202);
        response.id()
    }

    /// Creates a project in a workspace; returns its id.
    pub async fn create_project(
        &self,
        token: &str,
        org_id: &str,
        workspace_id: &str,
        name: &str,
    ) -> String {
        let response = self
            .post(
                &format!("/v1/orgs/{org_id}/projects"),
                token,
                serde_json::json!({"name": name, "workspace_id": workspace_id}),
            )
            .await;
        response.assert_status(201);
        response.id()
    }
}

/// A configuration pointing at `database_url` and trusting `issuer`.
pub fn test_config(
    database_url: &str,
    issuer: &TestIssuer,
    redis_url: Option<String>,
    extra: &[(&str, &str)],
) -> Config {
    let mut vars: HashMap<&str, String> = HashMap::new();
    for (name, value) in extra {
        vars.insert(name, value.to_string());
    }
    vars.insert("DATABASE_URL", database_url.to_owned());
    vars.insert("KEYCLOAK_ISSUER", issuer.issuer());
    vars.insert("KEYCLOAK_AUDIENCE", "gantry".to_owned());
    vars.insert("GANTRY_LOG", "warn".to_owned());
    vars.entry("GANTRY_SECRETS_KEY")
        .or_insert_with(|| TEST_SECRETS_KEY.to_owned());
    // Scenarios send hundreds of writes as one caller in a few milliseconds; the write limit
    // is exercised by the tests that set it, and stays out of the way of the rest.
    vars.entry("GANTRY_RATE_LIMIT_WRITES_PER_SECOND")
        .or_insert_with(|| "0".to_owned());
    // The role and isolation matrices create a workspace, webhook, … per case; the quotas have
    // their own tests (tests/security.rs), which set them.
    for quota in [
        "GANTRY_QUOTA_ORGS_PER_USER",
        "GANTRY_QUOTA_WORKSPACES_PER_ORG",
        "GANTRY_QUOTA_PROJECTS_PER_WORKSPACE",
        "GANTRY_QUOTA_WEBHOOKS_PER_ORG",
        "GANTRY_QUOTA_CODEGEN_PENDING_PER_ORG",
        "GANTRY_QUOTA_STREAMS_PER_USER",
    ] {
        vars.entry(quota).or_insert_with(|| "1000".to_owned());
    }
    if let Some(redis_url) = redis_url {
        vars.insert("REDIS_URL", redis_url);
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test config")
}

/// Turns async scenarios into one test per backend, named `scenario::backend`.
///
/// `on_each_backend!(a, b)` runs `fn a(backend: Backend)` on SQLite and on Postgres.
/// `on_each_backend!({ sqlite: Mode::Sqlite, redis: Mode::Redis } => a, b)` runs each scenario
/// once per `label: value` with that value as its argument (paths resolve as in the caller).
#[macro_export]
macro_rules! on_each_backend {
    (@scenario $name:ident { $($label:ident: $backend:expr),+ $(,)? }) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $label() {
                    super::$name($backend).await
                }
            )+
        }
    };
    ($backends:tt => $($name:ident),+ $(,)?) => {
        $( $crate::on_each_backend!(@scenario $name $backends); )+
    };
    ($($name:ident),+ $(,)?) => {
        $crate::on_each_backend!(
            {
                sqlite: $crate::common::Backend::Sqlite,
                postgres: $crate::common::Backend::Postgres,
            } => $($name),+
        );
    };
}
