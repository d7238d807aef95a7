//! Stored secrets at rest: org secret values and webhook signing secrets are sealed
//! (AES-256-GCM) with the key id beside them, plaintext rows from before are sealed on the next
//! start, `gantry rotate-secrets` moves everything to the current key, and production refuses
//! to start without `GANTRY_SECRETS_KEY`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::process::gantry;
use common::{secrets_cipher, test_config, Backend, TestApp, TEST_SECRETS_KEY};
use gantry::sealed::{key_id, SecretsCipher};
use gantry::startup::{Application, Roles};
use sea_orm::{ConnectionTrait, DatabaseBackend, Statement};
use serde_json::json;

const TOKEN: &str = "ghp_atRESTtoken0123456789";
/// A second key (32 bytes of 0x07).
const KEY_2: &str = "BwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwcHBwc=";

/// (value, key_id) of the org secret `name`, and (secret, secret_key_id) of every webhook, as
/// stored.
async fn raw_rows(
    database_url: &str,
) -> (Vec<(String, Option<String>)>, Vec<(String, Option<String>)>) {
    let db = gantry::store::connect(database_url).await.expect("connect");
    let backend = db.get_database_backend();
    let rows = |sql: &str| Statement::from_string(backend, sql.to_owned());
    let secrets = db
        .query_all_raw(rows("SELECT value, key_id FROM org_secrets ORDER BY name"))
        .await
        .expect("query")
        .into_iter()
        .map(|r| {
            (
                r.try_get("", "value").unwrap(),
                r.try_get("", "key_id").unwrap(),
            )
        })
        .collect();
    let webhooks = db
        .query_all_raw(rows("SELECT secret, secret_key_id FROM webhooks"))
        .await
        .expect("query")
        .into_iter()
        .map(|r| {
            (
                r.try_get("", "secret").unwrap(),
                r.try_get("", "secret_key_id").unwrap(),
            )
        })
        .collect();
    let _ = db.close().await;
    (secrets, webhooks)
}

async fn execute(database_url: &str, sql: &str) {
    let db = gantry::store::connect(database_url).await.expect("connect");
    let backend: DatabaseBackend = db.get_database_backend();
    db.execute_raw(Statement::from_string(backend, sql.to_owned()))
        .await
        .expect("execute");
    let _ = db.close().await;
}

async fn sealed_at_rest_and_rotated(backend: Backend) {
    let Some(app) = TestApp::spawn_with(
        backend,
        "sealed_at_rest_and_rotated",
        &[("GANTRY_OUTBOUND_ALLOW_CIDRS", "127.0.0.0/8")],
    )
    .await
    else {
        return;
    };
    let alice = app.token("alice");
    let org = app.create_org(&alice, "acme").await;
    app.request(
        "PUT",
        &format!("/v1/orgs/{org}/secrets/git-token"),
        Some(&alice),
        Some(json!({"value": TOKEN, "allowed_hosts": ["github.com"]})),
        &[],
    )
    .await
    .assert_status(204);
    let hook = app
        .request(
            "POST",
            &format!("/v1/orgs/{org}/webhooks"),
            Some(&alice),
            Some(json!({"url": "http://127.0.0.1:9/hook", "events": ["*"]})),
            &[],
        )
        .await;
    hook.assert_status(201);
    let signing = hook.body["secret"].as_str().expect("secret").to_owned();

    // Sealed under the current key: neither value is in the database in clear.
    let first = key_id(&[0x2a; 32]);
    let (secrets, webhooks) = raw_rows(&app.database_url).await;
    assert_eq!(secrets.len(), 1);
    assert!(!secrets[0].0.contains(TOKEN) && !secrets[0].0.contains("ghp_"));
    assert_eq!(secrets[0].1.as_deref(), Some(first.as_str()));
    assert!(!webhooks[0].0.contains(&signing));
    assert_eq!(webhooks[0].1.as_deref(), Some(first.as_str()));

    // A value moved to another row does not open there.
    let org_id: uuid::Uuid = org.parse().unwrap();
    let db = gantry::store::connect(&app.database_url).await.unwrap();
    assert_eq!(
        gantry::store::secrets::get_value(&db, &secrets_cipher(), org_id, "git-token")
            .await
            .unwrap()
            .as_deref(),
        Some(TOKEN)
    );
    let _ = db.close().await;

    // A row from before encryption at rest (plaintext, no key id) is sealed on the next start.
    execute(
        &app.database_url,
        "UPDATE org_secrets SET value = 'legacy-plain-value', key_id = NULL",
    )
    .await;
    let config = test_config(&app.database_url, &app.issuer, None, &[]);
    let restarted = Application::build(config, Roles::default())
        .await
        .expect("start");
    drop(restarted);
    let (secrets, _) = raw_rows(&app.database_url).await;
    assert_eq!(secrets[0].1.as_deref(), Some(first.as_str()));
    assert!(!secrets[0].0.contains("legacy-plain-value"));

    // Rotation: the new key, the old one as previous; everything moves to the new key.
    let dir = tempfile::tempdir().expect("tempdir");
    let rotate = |current: &str, previous: Option<&str>| {
        let mut cmd = gantry(dir.path());
        cmd.arg("rotate-secrets")
            .env("DATABASE_URL", &app.database_url)
            .env("GANTRY_SECRETS_KEY", current);
        if let Some(previous) = previous {
            cmd.env("GANTRY_SECRETS_KEY_PREVIOUS", previous);
        }
        cmd.output().expect("run gantry")
    };
    let output = rotate(KEY_2, Some(TEST_SECRETS_KEY));
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        String::from_utf8_lossy(&output.stdout).contains("1 org secrets and 1 webhook secrets"),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    let second = key_id(&[7; 32]);
    let (secrets, webhooks) = raw_rows(&app.database_url).await;
    assert_eq!(secrets[0].1.as_deref(), Some(second.as_str()));
    assert_eq!(webhooks[0].1.as_deref(), Some(second.as_str()));
    let db = gantry::store::connect(&app.database_url).await.unwrap();
    let rotated = SecretsCipher::new([7; 32], None);
    assert_eq!(
        gantry::store::secrets::get_value(&db, &rotated, org_id, "git-token")
            .await
            .unwrap()
            .as_deref(),
        Some("legacy-plain-value")
    );
    // The old key alone no longer opens it.
    assert!(
        gantry::store::secrets::get_value(&db, &secrets_cipher(), org_id, "git-token")
            .await
            .is_err()
    );
    let _ = db.close().await;
    // Run again: nothing left to do.
    let output = rotate(KEY_2, None);
    assert!(output.status.success());
    assert!(String::from_utf8_lossy(&output.stdout).contains("0 org secrets and 0 webhook"));
    // A key that sealed nothing, without the right previous one: refused, nothing changed.
    let output = rotate(TEST_SECRETS_KEY, None);
    assert!(!output.status.success());
    let (secrets, _) = raw_rows(&app.database_url).await;
    assert_eq!(secrets[0].1.as_deref(), Some(second.as_str()));
}

on_each_backend!(sealed_at_rest_and_rotated);

#[test]
fn production_refuses_to_start_without_a_secrets_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let output = gantry(dir.path())
        .env_remove("GANTRY_SECRETS_KEY")
        .arg("--server")
        .env("GANTRY_ENV", "production")
        .env("KEYCLOAK_ISSUER", "http://127.0.0.1:9/realms/gantry")
        .output()
        .expect("run gantry");
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("GANTRY_SECRETS_KEY"), "{err}");
    let output = gantry(dir.path())
        .env_remove("GANTRY_SECRETS_KEY")
        .arg("rotate-secrets")
        .env("GANTRY_ENV", "production")
        .output()
        .expect("run gantry");
    assert!(!output.status.success());
    assert!(!dir.path().join(".gantry/secrets.key").exists());
}

#[test]
fn development_generates_a_private_key_file_once() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    for _ in 0..2 {
        let output = gantry(dir.path())
            .env_remove("GANTRY_SECRETS_KEY")
            .arg("rotate-secrets")
            .output()
            .expect("run gantry");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let key = dir.path().join(".gantry/secrets.key");
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}
