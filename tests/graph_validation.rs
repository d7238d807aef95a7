//! Graph validation through HTTP: `PUT …/graph` answers every problem of a graph as one 422
//! problem+json with JSON Pointers into the body, stores nothing then, and stores a valid graph.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Backend, TestApp};
use serde_json::{json, Value};

macro_rules! spawn {
    ($backend:expr, $name:expr) => {
        match TestApp::spawn($backend, $name).await {
            Some(app) => app,
            None => return,
        }
    };
}

/// A fresh project's graph URL, and a token of its owner.
async fn project_graph(app: &TestApp) -> (String, String) {
    let alice = app.token("alice");
    let org_id = app.create_org(&alice, "acme").await;
    let ws = app.create_workspace(&alice, &org_id, "dev").await;
    let project = app.create_project(&alice, &org_id, &ws, "shop").await;
    (format!("/v1/orgs/{org_id}/projects/{project}/graph"), alice)
}

/// `PUT` `graph` with `If-Match: etag`.
async fn put_graph(
    app: &TestApp,
    path: &str,
    token: &str,
    etag: &str,
    graph: Value,
) -> common::TestResponse {
    app.request(
        "PUT",
        path,
        Some(token),
        Some(json!({ "graph": graph })),
        &[("If-Match", etag)],
    )
    .await
}

/// One graph with six problems: an unknown kind, a non-DNS id, a duplicate id, an edge to a
/// missing node, a `depends_on` cycle and a `mounts` edge between the wrong kinds.
fn graph_with_problems() -> Value {
    json!({
        "nodes": [
            {"id": "web", "kind": "service",
             "spec": {"image": "nginx:1.27", "ports": [{"port": 80}]}},
            {"id": "db", "kind": "postgres", "spec": {"version": "16"}},
            {"id": "Worker_1", "kind": "job", "spec": {"image": "busybox:1.36"}},
            {"id": "web", "kind": "job", "spec": {"image": "busybox:1.36"}},
            {"id": "migrate", "kind": "job", "spec": {"image": "busybox:1.36"}},
            {"id": "seed", "kind": "job", "spec": {"image": "busybox:1.36"}},
            {"id": "settings", "kind": "config", "spec": {"data": {"LOG_LEVEL": "info"}}}
        ],
        "edges": [
            {"from": "web", "to": "cache", "kind": "connects"},
            {"from": "migrate", "to": "seed", "kind": "depends_on"},
            {"from": "seed", "to": "migrate", "kind": "depends_on"},
            {"from": "web", "to": "settings", "kind": "mounts"}
        ]
    })
}

async fn invalid_graph_is_refused_with_every_pointer(backend: Backend) {
    let app = spawn!(backend, "invalid_graph_is_refused_with_every_pointer");
    let (path, alice) = project_graph(&app).await;

    let refused = put_graph(&app, &path, &alice, "\"0\"", graph_with_problems()).await;
    refused.assert_problem(422);
    assert_eq!(
        refused.body["type"],
        "https://gantry.dev/problems/validation"
    );
    let errors = refused.body["errors"].as_array().expect("errors");
    let pointers: Vec<&str> = errors
        .iter()
        .map(|e| e["pointer"].as_str().expect("pointer"))
        .collect();
    assert_eq!(
        pointers,
        [
            "/graph/nodes/1/kind",
            "/graph/nodes/2/id",
            "/graph/nodes/3/id",
            "/graph/edges/0/to",
            "/graph/edges/2",
            "/graph/edges/3/kind",
        ],
        "{}",
        refused.text
    );
    insta::assert_json_snapshot!("graph_problems", refused.body);

    // Nothing was stored: still version 0, the empty graph, one version in the history.
    let current = app.get(&path, &alice).await;
    current.assert_status(200);
    assert_eq!(current.header("etag"), Some("\"0\""));
    assert_eq!(
        current.body,
        json!({"version": 0, "graph": {"nodes": [], "edges": []}})
    );
    let versions = app.get(&format!("{path}/versions"), &alice).await;
    versions.assert_status(200);
    assert_eq!(versions.body["items"].as_array().map(Vec::len), Some(1));

    // A spec that does not fit its kind points into the spec.
    let wrong_spec = json!({"nodes": [
        {"id": "web", "kind": "service", "spec": {"image": "nginx:1.27", "replica": 2}}
    ], "edges": []});
    let refused = put_graph(&app, &path, &alice, "\"0\"", wrong_spec).await;
    refused.assert_problem(422);
    assert_eq!(
        refused.body["errors"][0]["pointer"],
        "/graph/nodes/0/spec/replica"
    );
}

async fn valid_graph_is_stored_and_read_back(backend: Backend) {
    let app = spawn!(backend, "valid_graph_is_stored_and_read_back");
    let (path, alice) = project_graph(&app).await;
    let example = format!(
        "{}/examples/graphs/three-tier.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let graph: Value =
        serde_json::from_str(&std::fs::read_to_string(example).expect("example graph"))
            .expect("example graph is JSON");

    let stored = put_graph(&app, &path, &alice, "\"0\"", graph.clone()).await;
    stored.assert_status(200);
    assert_eq!(stored.body["version"], 1);
    assert_eq!(stored.header("etag"), Some("\"1\""));
    assert_eq!(stored.body["graph"], graph);

    let current = app.get(&path, &alice).await;
    current.assert_status(200);
    assert_eq!(current.body["version"], 1);
    assert_eq!(current.body["graph"], graph);
    let first = app.get(&format!("{path}/versions/1"), &alice).await;
    first.assert_status(200);
    assert_eq!(first.body["graph"], graph);

    // A refused replacement leaves version 1 in place.
    let refused = put_graph(&app, &path, &alice, "\"1\"", graph_with_problems()).await;
    refused.assert_problem(422);
    let current = app.get(&path, &alice).await;
    assert_eq!(current.header("etag"), Some("\"1\""));
    assert_eq!(current.body["graph"], graph);
}

async fn graphs_the_generator_would_refuse_are_not_stored(backend: Backend) {
    let app = spawn!(backend, "graphs_the_generator_would_refuse_are_not_stored");
    let (path, alice) = project_graph(&app).await;
    // Each once passed validation and was stored, then failed code generation.
    let cases = [
        (
            // A ReadWriteOnce volume under two replicas.
            json!({"nodes": [
                {"id": "web", "kind": "service", "spec": {"image": "nginx:1.27", "replicas": 2}},
                {"id": "uploads", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/data"}}
            ], "edges": [{"from": "uploads", "to": "web", "kind": "mounts"}]}),
            "/graph/edges/0",
        ),
        (
            // A Service name must start with a letter.
            json!({"nodes": [
                {"id": "1web", "kind": "service", "spec": {"image": "nginx:1.27",
                                                          "ports": [{"port": 80}]}}
            ], "edges": []}),
            "/graph/nodes/0/id",
        ),
        (
            // A memory limit below postgres' default request (512Mi).
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": {"engine": "postgres", "version": "16",
                    "storage": "1Gi", "credentials": "creds",
                    "resources": {"memory_limit": "256Mi"}}},
                {"id": "creds", "kind": "secret_ref", "spec": {"secret_name": "db"}}
            ], "edges": []}),
            "/graph/nodes/0/spec/resources/memory_limit",
        ),
    ];
    for (graph, pointer) in cases {
        let refused = put_graph(&app, &path, &alice, "\"0\"", graph).await;
        refused.assert_problem(422);
        assert_eq!(
            refused.body["errors"][0]["pointer"], pointer,
            "{}",
            refused.text
        );
    }
    let current = app.get(&path, &alice).await;
    assert_eq!(current.header("etag"), Some("\"0\""));
}

async fn problem_lists_are_capped(backend: Backend) {
    let app = spawn!(backend, "problem_lists_are_capped");
    let (path, alice) = project_graph(&app).await;
    // 150 nodes with an id that is not a DNS label: 150 problems, 100 shown.
    let nodes: Vec<Value> = (0..150)
        .map(|n| json!({"id": format!("Job{n}"), "kind": "job", "spec": {"image": "busybox:1.36"}}))
        .collect();
    let refused = put_graph(
        &app,
        &path,
        &alice,
        "\"0\"",
        json!({"nodes": nodes, "edges": []}),
    )
    .await;
    refused.assert_problem(422);
    let errors = refused.body["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[98]["pointer"], "/graph/nodes/98/id");
    assert_eq!(errors[99]["pointer"], "/graph");
    assert!(
        errors[99]["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("51 more problems not shown")),
        "{}",
        refused.text
    );
}

on_each_backend!(
    invalid_graph_is_refused_with_every_pointer,
    valid_graph_is_stored_and_read_back,
    graphs_the_generator_would_refuse_are_not_stored,
    problem_lists_are_capped
);
