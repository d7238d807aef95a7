//! Graph documents and assertions the graph's unit tests share.

use super::validate;
use serde_json::{json, Value};

/// ingress → web → api → postgres, with the database's credentials, api's config and a
/// migration job: every node kind but volume and cron_job, every edge kind.
pub(super) fn realistic() -> Value {
    json!({
        "nodes": [
            {"id": "edge", "kind": "ingress", "spec": {
                "host": "shop.example.com",
                "paths": [
                    {"path": "/", "service": "web"},
                    {"path": "/api", "service": "api", "path_type": "Prefix"}
                ],
                "tls": {"secret_name": "shop-example-com-tls"}
            }},
            {"id": "web", "kind": "service", "spec": {
                "image": "ghcr.io/acme/web:1.4.2",
                "ports": [{"port": 3000}],
                "env": {"API_URL": "http://api:8080"},
                "replicas": 2,
                "probes": {"readiness_path": "/healthz"}
            }},
            {"id": "api", "kind": "service", "spec": {
                "image": "ghcr.io/acme/api@sha256:0123456789abcdef",
                "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
                "resources": {"cpu_request": "250m", "memory_request": "256Mi",
                              "memory_limit": "512Mi"},
                "autoscaling": {"min_replicas": 2, "max_replicas": 10,
                                "target_cpu_utilization": 70}
            }},
            {"id": "migrate", "kind": "job", "spec": {
                "image": "ghcr.io/acme/api:1.4.2", "command": ["/app/migrate"],
                "backoff_limit": 2
            }},
            {"id": "db", "kind": "database", "spec": {
                "engine": "postgres", "version": "16.4", "storage": "20Gi",
                "credentials": "db-credentials",
                "backup": {"schedule": "0 3 * * *", "retention_days": 14}
            }},
            {"id": "db-credentials", "kind": "secret_ref", "spec": {
                "secret_name": "shop-db", "keys": ["POSTGRES_PASSWORD"]
            }},
            {"id": "api-config", "kind": "config", "spec": {
                "data": {"LOG_LEVEL": "info", "features.json": "{}"},
                "mount_path": "/etc/api"
            }}
        ],
        "edges": [
            {"from": "edge", "to": "web", "kind": "exposes"},
            {"from": "edge", "to": "api", "kind": "exposes"},
            {"from": "web", "to": "api", "kind": "connects", "port": 8080},
            {"from": "api", "to": "db", "kind": "connects"},
            {"from": "migrate", "to": "db", "kind": "connects", "port": 5432},
            {"from": "db-credentials", "to": "api", "kind": "mounts"},
            {"from": "db-credentials", "to": "migrate", "kind": "mounts"},
            {"from": "api-config", "to": "api", "kind": "mounts"},
            {"from": "api", "to": "migrate", "kind": "depends_on"},
            {"from": "migrate", "to": "db", "kind": "depends_on"}
        ]
    })
}

/// Every problem of `document` (bare, no prefix) as `(pointer, detail)`.
pub(super) fn problems(document: &Value) -> Vec<(String, String)> {
    match validate(document, "") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| (e.pointer, e.detail)).collect(),
    }
}

/// Asserts that `document` has a problem at `pointer` whose detail mentions `word`.
#[track_caller]
pub(super) fn assert_problem(document: &Value, pointer: &str, word: &str) {
    let found = problems(document);
    assert!(
        found
            .iter()
            .any(|(p, detail)| p == pointer && detail.contains(word)),
        "expected a problem at {pointer} mentioning {word:?}; got {found:#?}"
    );
}

/// `realistic()` with `change` applied.
pub(super) fn realistic_with(change: impl FnOnce(&mut Value)) -> Value {
    let mut document = realistic();
    change(&mut document);
    document
}

/// A one-service graph whose service spec is `spec`.
pub(super) fn service(spec: Value) -> Value {
    json!({"nodes": [{"id": "web", "kind": "service", "spec": spec}], "edges": []})
}
