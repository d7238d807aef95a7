//! Bearer-token validation against a Keycloak-shaped issuer on loopback: every rejection is a
//! 401 problem+json with `WWW-Authenticate`, and the reason never reaches the client.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::issuer::RsaKey;
use common::{Backend, TestApp, TestResponse};
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde_json::{json, Map, Value};
use std::time::Duration;

async fn app(name: &str) -> TestApp {
    TestApp::spawn(Backend::Sqlite, name)
        .await
        .expect("SQLite is always available")
}

async fn me(app: &TestApp, token: &str) -> TestResponse {
    app.get("/v1/me", token).await
}

#[track_caller]
fn assert_refused(response: &TestResponse, case: &str) {
    assert_eq!(response.status.code, 401, "{case}: {}", response.text);
    assert_eq!(
        response.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\""),
        "{case}"
    );
    assert_eq!(
        response.header("content-type"),
        Some("application/problem+json"),
        "{case}"
    );
    // One generic body for every reason: the reason is logged, not sent.
    assert_eq!(
        response.body,
        json!({
            "type": "https://gantry.dev/problems/unauthorized",
            "title": "Unauthorized",
            "status": 401,
            "detail": "a valid bearer token is required"
        }),
        "{case}"
    );
}

fn with(mut claims: Map<String, Value>, key: &str, value: Value) -> Map<String, Value> {
    claims.insert(key.to_owned(), value);
    claims
}

fn without(mut claims: Map<String, Value>, key: &str) -> Map<String, Value> {
    claims.remove(key);
    claims
}

fn now() -> i64 {
    jsonwebtoken::get_current_timestamp() as i64
}

#[tokio::test]
async fn valid_keycloak_token_is_accepted_and_user_recorded() {
    let app = app("valid_token").await;
    let response = me(&app, &app.token("alice")).await;
    response.assert_status(200);
    assert_eq!(response.body["sub"], "alice");
    assert_eq!(response.body["email"], "alice@example.com");
    assert_eq!(response.body["is_platform_admin"], false);

    let admin = me(&app, &app.admin_token("root")).await;
    assert_eq!(admin.body["is_platform_admin"], true);

    // The user row exists after first sight.
    use sea_orm::{ConnectionTrait, Statement};
    let db = sea_orm::Database::connect(&app.database_url)
        .await
        .expect("db");
    let row = db
        .query_one_raw(Statement::from_string(
            db.get_database_backend(),
            "SELECT preferred_username, email FROM users WHERE sub = 'alice'",
        ))
        .await
        .expect("query")
        .expect("alice is stored");
    let email: String = row.try_get("", "email").expect("email");
    assert_eq!(email, "alice@example.com");
}

#[tokio::test]
async fn audience_rules_follow_keycloak() {
    let app = app("audience").await;
    let base = app.issuer.claims("alice");
    // aud as a single string.
    let single = with(base.clone(), "aud", json!("gantry"));
    me(&app, &app.issuer.sign(&single)).await.assert_status(200);
    // aud lacks gantry but azp is gantry (Keycloak's default for its own client).
    let azp = with(
        with(base.clone(), "aud", json!("account")),
        "azp",
        json!("gantry"),
    );
    me(&app, &app.issuer.sign(&azp)).await.assert_status(200);
    // Neither.
    let neither = with(
        with(base.clone(), "aud", json!(["account"])),
        "azp",
        json!("other"),
    );
    assert_refused(
        &me(&app, &app.issuer.sign(&neither)).await,
        "wrong aud and azp",
    );
    let no_aud = with(without(base, "aud"), "azp", json!("other"));
    assert_refused(&me(&app, &app.issuer.sign(&no_aud)).await, "no aud");
}

#[tokio::test]
async fn every_attack_is_refused() {
    let app = app("attacks").await;
    let issuer = &app.issuer;
    let base = issuer.claims("mallory");

    // Missing, wrong scheme, garbage.
    let missing = app.request("GET", "/v1/me", None, None, &[]).await;
    assert_refused(&missing, "missing token");
    let basic = app
        .request(
            "GET",
            "/v1/me",
            None,
            None,
            &[("Authorization", "Basic YWxpY2U6c2VjcmV0")],
        )
        .await;
    assert_refused(&basic, "basic scheme");
    assert_refused(&me(&app, "not.a.jwt").await, "garbage");
    assert_refused(&me(&app, "").await, "empty");

    // alg=none, with and without a signature segment.
    let payload = URL_SAFE_NO_PAD.encode(Value::Object(base.clone()).to_string());
    for header in [
        json!({"alg": "none", "typ": "JWT", "kid": issuer.key.kid}),
        json!({"alg": "None", "typ": "JWT"}),
    ] {
        let head = URL_SAFE_NO_PAD.encode(header.to_string());
        assert_refused(&me(&app, &format!("{head}.{payload}.")).await, "alg none");
        assert_refused(
            &me(&app, &format!("{head}.{payload}")).await,
            "alg none, 2 parts",
        );
    }

    // HS256 signed with the public key as the secret (DER, PEM and the JWK modulus).
    let public_pem = format!(
        "-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n",
        base64::engine::general_purpose::STANDARD.encode(&issuer.key.public_der)
    );
    let modulus = issuer.key.jwk["n"].as_str().unwrap_or_default().to_owned();
    for secret in [
        issuer.key.public_der.clone(),
        public_pem.into_bytes(),
        modulus.into_bytes(),
    ] {
        for alg in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let mut header = Header::new(alg);
            header.kid = Some(issuer.key.kid.clone());
            let token = encode(&header, &base, &EncodingKey::from_secret(&secret)).expect("sign");
            assert_refused(&me(&app, &token).await, "HMAC with the public key");
        }
    }

    // Expired beyond the 30 s leeway; within the leeway it is still accepted.
    let expired = with(base.clone(), "exp", json!(now() - 120));
    assert_refused(&me(&app, &issuer.sign(&expired)).await, "expired");
    let barely = with(base.clone(), "exp", json!(now() - 10));
    me(&app, &issuer.sign(&barely)).await.assert_status(200);
    assert_refused(
        &me(&app, &issuer.sign(&without(base.clone(), "exp"))).await,
        "no exp",
    );

    // Not yet valid.
    let future = with(base.clone(), "nbf", json!(now() + 120));
    assert_refused(&me(&app, &issuer.sign(&future)).await, "nbf in the future");

    // Wrong issuer, including another realm on the same server.
    for iss in [
        json!("https://evil.example.com/realms/test"),
        json!(format!("{}/realms/other", app.issuer.server.uri())),
    ] {
        let wrong = with(base.clone(), "iss", iss);
        assert_refused(&me(&app, &issuer.sign(&wrong)).await, "wrong iss");
    }
    assert_refused(
        &me(&app, &issuer.sign(&without(base.clone(), "iss"))).await,
        "no iss",
    );

    // Signed by another key that claims the published kid.
    let impostor = RsaKey::generate(&issuer.key.kid);
    let forged = issuer.sign_with(&impostor, Algorithm::RS256, &base);
    assert_refused(&me(&app, &forged).await, "forged signature");

    // The JWK pins RS256: the same key under another algorithm is refused.
    let other_alg = issuer.sign_with(&issuer.key, Algorithm::RS512, &base);
    assert_refused(
        &me(&app, &other_alg).await,
        "algorithm not pinned by the key",
    );
    let ps = issuer.sign_with(&issuer.key, Algorithm::PS256, &base);
    assert_refused(&me(&app, &ps).await, "PS256 with an RS256 key");

    // The RSA-OAEP encryption key in the JWKS is never a signing key.
    let mut enc_header = Header::new(Algorithm::RS256);
    enc_header.kid = Some("enc-key".to_owned());
    let via_enc = encode(&enc_header, &base, &issuer.key.encoding).expect("sign");
    assert_refused(&me(&app, &via_enc).await, "encryption key used for signing");

    // A tampered payload.
    let good = issuer.sign(&base);
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD
        .encode(Value::Object(with(base.clone(), "sub", json!("admin"))).to_string());
    assert_refused(&me(&app, &parts.join(".")).await, "tampered payload");
}

#[tokio::test]
async fn unknown_kid_refetches_at_most_once_per_interval() {
    let app = app("unknown_kid").await;
    let issuer = &app.issuer;
    me(&app, &app.token("alice")).await.assert_status(200);
    let fetched_at_start = issuer.jwks_fetches().await;
    assert_eq!(fetched_at_start, 1, "the JWKS is fetched once at start-up");

    // A rotated key that is not published yet: one refetch, then 401.
    let rotated = RsaKey::generate("rotated-key");
    let claims = issuer.claims("alice");
    let token = issuer.sign_with(&rotated, Algorithm::RS256, &claims);
    assert_refused(&me(&app, &token).await, "unknown kid");
    assert_eq!(
        issuer.jwks_fetches().await,
        2,
        "one refetch for an unknown kid"
    );

    // Within 30 s, more unknown kids cause no further fetches (no amplification).
    for i in 0..5 {
        let other = RsaKey::generate(&format!("junk-{i}"));
        let token = issuer.sign_with(&other, Algorithm::RS256, &claims);
        assert_refused(&me(&app, &token).await, "unknown kid, rate-limited");
    }
    assert_eq!(issuer.jwks_fetches().await, 2, "refetch is rate-limited");
    // Known keys keep working from the cache.
    me(&app, &app.token("alice")).await.assert_status(200);
}

#[tokio::test]
async fn rotated_key_is_picked_up() {
    let app = app("rotation").await;
    let issuer = &app.issuer;
    let rotated = RsaKey::generate("rotated-key");
    issuer
        .publish(vec![issuer.key.jwk.clone(), rotated.jwk.clone()])
        .await;
    let token = issuer.sign_with(&rotated, Algorithm::RS256, &issuer.claims("alice"));
    me(&app, &token).await.assert_status(200);
    assert_eq!(
        issuer.jwks_fetches().await,
        1,
        "exactly one refetch after publish"
    );
}

#[tokio::test]
async fn health_and_metrics_need_no_token() {
    let app = app("health").await;
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/v1/openapi.json",
    ] {
        let response = app.request("GET", path, None, None, &[]).await;
        response.assert_status(200);
    }
    let metrics = app.request("GET", "/metrics", None, None, &[]).await;
    assert!(metrics.text.contains("gantry_http_requests_total{"));
    assert!(
        metrics.text.contains("route=\"/health/live\""),
        "{}",
        metrics.text
    );
    assert!(metrics
        .text
        .contains("gantry_http_request_duration_seconds_bucket"));
    // Route templates, not raw paths, label requests.
    app.get(
        &format!("/v1/orgs/{}", uuid::Uuid::new_v4()),
        &app.token("a"),
    )
    .await
    .assert_problem(404);
    let metrics = app.request("GET", "/metrics", None, None, &[]).await;
    assert!(
        metrics.text.contains("route=\"/v1/orgs/<org_id>\""),
        "{}",
        metrics.text
    );
}

// Verified tokens are remembered until they expire; these pin what that cache must never
// change: a revoked key, an expired token, a removed member and a deleted organization are
// all refused on the very next request.

#[tokio::test]
async fn a_key_dropped_from_the_jwks_ends_the_tokens_it_signed() {
    let app = app("revoked_key").await;
    let issuer = &app.issuer;
    let old_token = app.token("alice");
    me(&app, &old_token).await.assert_status(200);
    // Answered from the cache this time.
    me(&app, &old_token).await.assert_status(200);

    // The issuer replaces its key; the first token signed with the new one refetches the set.
    let replacement = RsaKey::generate("replacement-key");
    issuer.publish(vec![replacement.jwk.clone()]).await;
    let new_token = issuer.sign_with(&replacement, Algorithm::RS256, &issuer.claims("alice"));
    me(&app, &new_token).await.assert_status(200);
    assert_refused(
        &me(&app, &old_token).await,
        "a remembered token whose key left the JWKS",
    );
    me(&app, &new_token).await.assert_status(200);
}

#[tokio::test]
async fn a_remembered_token_is_refused_once_it_expires() {
    let app = app("cached_expiry").await;
    // Accepted for two more seconds (30 s of skew are tolerated past `exp`).
    let claims = with(
        app.issuer.claims("alice"),
        "exp",
        json!(now() - validator_leeway() + 2),
    );
    let token = app.issuer.sign(&claims);
    me(&app, &token).await.assert_status(200);
    tokio::time::sleep(Duration::from_millis(3_500)).await;
    assert_refused(&me(&app, &token).await, "a remembered token past exp");
}

fn validator_leeway() -> i64 {
    gantry::auth::validator::LEEWAY_SECONDS as i64
}

#[tokio::test]
async fn removed_members_and_deleted_orgs_are_refused_on_the_next_request() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::spawn(backend, "cache_membership").await else {
            continue;
        };
        let owner = app.token("owner");
        let bob = app.token("bob");
        let org = app.create_org(&owner, "cache-membership").await;
        app.add_member(&owner, &org, "bob", "member").await;
        let projects = format!("/v1/orgs/{org}/projects");
        app.get(&projects, &bob).await.assert_status(200);
        app.get(&projects, &bob).await.assert_status(200);

        app.delete(&format!("/v1/orgs/{org}/members/bob"), &owner)
            .await
            .assert_status(204);
        app.get(&projects, &bob).await.assert_problem(404);
        let listed = app.get("/v1/me", &bob).await;
        listed.assert_status(200);
        assert_eq!(
            listed.body["orgs"],
            json!([]),
            "{backend:?}: {}",
            listed.text
        );

        app.get(&projects, &owner).await.assert_status(200);
        app.delete(&format!("/v1/orgs/{org}"), &owner)
            .await
            .assert_status(204);
        app.get(&projects, &owner).await.assert_problem(404);
    }
}

/// A remembered project list is forgotten by the change that made it stale, before that
/// change's answer: the writer reads its own writes.
#[tokio::test]
async fn project_lists_are_forgotten_by_the_changes_to_them() {
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some(app) = TestApp::spawn(backend, "project_list_cache").await else {
            continue;
        };
        let owner = app.token("owner");
        let org = app.create_org(&owner, "list-cache").await;
        let ws = app.create_workspace(&owner, &org, "dev").await;
        let web = app.create_project(&owner, &org, &ws, "web").await;
        let list = format!("/v1/orgs/{org}/projects");
        let names = || async {
            let page = app.get(&list, &owner).await;
            page.assert_status(200);
            page.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| {
                    format!(
                        "{}@{}",
                        p["name"].as_str().unwrap(),
                        p["graph_version"].as_i64().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        };
        // The hub must be reading before anything is remembered.
        common::eventually(Duration::from_secs(10), || async {
            let first = names().await;
            (first == ["web@0"])
                .then_some(())
                .ok_or(format!("{first:?}"))
        })
        .await;
        assert_eq!(names().await, ["web@0"]);
        let project = format!("{list}/{web}");
        app.patch(&project, &owner, json!({"name": "shop"}))
            .await
            .assert_status(200);
        assert_eq!(names().await, ["shop@0"], "{backend:?}: rename");
        app.put_graph(
            &owner,
            &format!("{project}/graph"),
            json!({"nodes": [], "edges": []}),
        )
        .await;
        assert_eq!(names().await, ["shop@1"], "{backend:?}: graph");
        app.create_project(&owner, &org, &ws, "api").await;
        assert_eq!(names().await.len(), 2, "{backend:?}: create");
        app.delete(&project, &owner).await.assert_status(204);
        assert_eq!(names().await, ["api@0"], "{backend:?}: delete");
    }
}

/// Two server processes on one database: a membership removed through one is refused by the
/// other once its event hub has read the `member.removed` event (on Postgres, woken by NOTIFY),
/// though the other had the membership remembered.
#[tokio::test]
async fn a_change_through_one_server_reaches_the_other_servers_memory() {
    use common::process::{gantry, serve};
    gantry::install_crypto_provider();
    for backend in [Backend::Sqlite, Backend::Postgres] {
        let Some((_database, url)) =
            common::TestDatabase::create(backend, "access_cache_two_servers").await
        else {
            continue;
        };
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let server = || {
            let mut cmd = gantry(dir.path());
            cmd.arg("--server")
                .env("DATABASE_URL", &url)
                .env("GANTRY_DATA_DIR", &data)
                .env("GANTRY_RATE_LIMIT_WRITES_PER_SECOND", "0");
            cmd
        };
        let (_first, first) = serve(&mut server()).await;
        let (_second, second) = serve(&mut server()).await;
        let token = |sub: &str| {
            let output = gantry(dir.path())
                .args(["dev-token", "--sub", sub])
                .env("DATABASE_URL", &url)
                .env("GANTRY_DATA_DIR", &data)
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap().trim().to_owned()
        };
        let (owner, bob) = (token("owner"), token("bob"));
        let http = reqwest::Client::new();
        let call = |method: reqwest::Method, url: String, token: &str, body: Option<Value>| {
            let mut request = http.request(method, url).bearer_auth(token);
            if let Some(body) = body {
                request = request.json(&body);
            }
            async move { request.send().await.unwrap() }
        };
        let created = call(
            reqwest::Method::POST,
            format!("{first}/v1/orgs"),
            &owner,
            Some(json!({"name": "two", "slug": "two-servers"})),
        )
        .await;
        assert_eq!(created.status(), 201);
        let org = created.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let added = call(
            reqwest::Method::POST,
            format!("{first}/v1/orgs/{org}/members"),
            &owner,
            Some(json!({"user_sub": "bob", "role": "viewer"})),
        )
        .await;
        assert_eq!(added.status(), 201);
        let projects = format!("{second}/v1/orgs/{org}/projects");
        let (projects, bob_token, call) = (&projects, &bob, &call);
        let answers = |wanted: u16| {
            common::eventually(Duration::from_secs(10), move || async move {
                let status = call(reqwest::Method::GET, projects.clone(), bob_token, None)
                    .await
                    .status();
                (status == wanted).then_some(()).ok_or(status)
            })
        };
        // The second server reads the membership, then remembers it.
        answers(200).await;

        // A project list the second server remembers is forgotten when the first adds one.
        let listed = |token: &str| {
            let token = token.to_owned();
            async move {
                call(reqwest::Method::GET, projects.clone(), &token, None)
                    .await
                    .json::<Value>()
                    .await
                    .unwrap()["items"]
                    .as_array()
                    .map_or(0, Vec::len)
            }
        };
        assert_eq!(listed(&owner).await, 0);
        assert_eq!(listed(&owner).await, 0);
        let workspace = call(
            reqwest::Method::POST,
            format!("{first}/v1/orgs/{org}/workspaces"),
            &owner,
            Some(json!({"name": "dev", "plan": "shared"})),
        )
        .await;
        assert_eq!(workspace.status(), 202);
        let workspace_id = workspace.json::<Value>().await.unwrap()["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let project = call(
            reqwest::Method::POST,
            format!("{first}/v1/orgs/{org}/projects"),
            &owner,
            Some(json!({"name": "web", "workspace_id": workspace_id})),
        )
        .await;
        assert_eq!(project.status(), 201);
        common::eventually(Duration::from_secs(10), || async {
            let n = listed(&owner).await;
            (n == 1).then_some(()).ok_or(n)
        })
        .await;

        let removed = call(
            reqwest::Method::DELETE,
            format!("{first}/v1/orgs/{org}/members/bob"),
            &owner,
            None,
        )
        .await;
        assert_eq!(removed.status(), 204);
        answers(404).await;
        let me = call(reqwest::Method::GET, format!("{second}/v1/me"), &bob, None).await;
        assert_eq!(me.json::<Value>().await.unwrap()["orgs"], json!([]));
    }
}
