//! The spec rules, one test per node kind or concern.

use super::*;
use crate::domain::graph::test_support::{assert_problem, problems, realistic_with, service};
use crate::domain::graph::validate;
use serde_json::{json, Value};

#[test]
fn service_spec_rules() {
    let document = service(json!({
        "image": "my image",
        "ports": [
            {"port": 0},
            {"name": "http", "port": 80},
            {"name": "Metrics", "port": 9090},
            {"name": "web", "port": 80},
            {"name": "much-too-long-name", "port": 81, "protocol": "SCTP"},
            {"name": "dns", "port": 53, "protocol": "UDP"},
            {"name": "dns-tcp", "port": 53}
        ],
        "env": {"1BAD": "x", "GOOD_1": "y", "with-dash": "z"},
        "replicas": 1001,
        "resources": {"cpu_request": "a lot", "memory_limit": "12Q"},
        "autoscaling": {"min_replicas": 0, "max_replicas": 2000, "target_cpu_utilization": 0},
        "probes": {"liveness_path": "healthz"}
    }));
    assert_problem(&document, "/nodes/0/spec/image", "whitespace");
    assert_problem(&document, "/nodes/0/spec/ports/0/port", "1 to 65535");
    assert_problem(
        &document,
        "/nodes/0/spec/ports/1/name",
        "duplicate port name `http`",
    );
    assert_problem(&document, "/nodes/0/spec/ports/2/name", "lowercase");
    assert_problem(
        &document,
        "/nodes/0/spec/ports/3/port",
        "duplicate port 80/TCP: ports/1",
    );
    assert_problem(&document, "/nodes/0/spec/ports/4/protocol", "TCP, UDP");
    assert!(!problems(&document)
        .iter()
        .any(|(p, _)| p.starts_with("/nodes/0/spec/ports/6")));
    assert_problem(&document, "/nodes/0/spec/ports/4/name", "1–15");
    assert_problem(&document, "/nodes/0/spec/env/1BAD", "environment variable");
    assert_problem(
        &document,
        "/nodes/0/spec/env/with-dash",
        "environment variable",
    );
    assert_problem(&document, "/nodes/0/spec/replicas", "1000");
    assert_problem(&document, "/nodes/0/spec/resources/cpu_request", "quantity");
    assert_problem(
        &document,
        "/nodes/0/spec/resources/memory_limit",
        "quantity",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/autoscaling/min_replicas",
        "at least 1",
    );
    assert_problem(&document, "/nodes/0/spec/autoscaling/max_replicas", "1000");
    assert_problem(
        &document,
        "/nodes/0/spec/autoscaling/target_cpu_utilization",
        "1 to 100",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/probes/liveness_path",
        "start with `/`",
    );
    assert!(!problems(&document)
        .iter()
        .any(|(p, _)| p == "/nodes/0/spec/env/GOOD_1"));

    assert_problem(
        &service(json!({"image": ""})),
        "/nodes/0/spec/image",
        "empty",
    );
    assert_problem(
        &service(json!({"image": "nginx",
                        "autoscaling": {"min_replicas": 5, "max_replicas": 2}})),
        "/nodes/0/spec/autoscaling/max_replicas",
        "min_replicas (5)",
    );
    assert_problem(
        &service(json!({"image": "nginx", "probes": {"readiness_path": "/ready"}})),
        "/nodes/0/spec/probes",
        "need a port",
    );
}

#[test]
fn job_and_cron_job_spec_rules() {
    let document = json!({"nodes": [
        {"id": "once", "kind": "job", "spec": {"image": "a\tb", "backoff_limit": 101,
                                               "env": {"A B": "x"}}},
        {"id": "tick", "kind": "cron_job", "spec": {"image": "busybox", "schedule": "* * * *",
                                                    "concurrency_policy": "Sometimes"}},
        {"id": "tock", "kind": "cron_job", "spec": {"image": "busybox",
                                                    "schedule": "61 * * * *"}},
        {"id": "tack", "kind": "cron_job", "spec": {"image": "busybox",
                                                    "schedule": "@fortnightly"}}
    ], "edges": []});
    assert_problem(&document, "/nodes/0/spec/image", "whitespace");
    assert_problem(&document, "/nodes/0/spec/backoff_limit", "100");
    assert_problem(&document, "/nodes/0/spec/env/A B", "environment variable");
    assert_problem(&document, "/nodes/1/spec/schedule", "5 fields");
    assert_problem(
        &document,
        "/nodes/1/spec/concurrency_policy",
        "Allow, Forbid, Replace",
    );
    assert_problem(&document, "/nodes/2/spec/schedule", "minute field `61`");
    assert_problem(&document, "/nodes/3/spec/schedule", "@daily");
}

#[test]
fn limits_are_at_least_their_requests() {
    let with = |kind: &str, spec: Value| json!({"nodes": [{"id": "x", "kind": kind, "spec": spec}], "edges": []});
    // Against the request given…
    assert_problem(
        &service(json!({"image": "x", "resources": {"memory_request": "1Gi",
                                                     "memory_limit": "512Mi"}})),
        "/nodes/0/spec/resources/memory_limit",
        "memory request (`1Gi`)",
    );
    // …or the default of the kind: 100m for a job, 512Mi for postgres.
    assert_problem(
        &with(
            "job",
            json!({"image": "x", "resources": {"cpu_limit": "50m"}}),
        ),
        "/nodes/0/spec/resources/cpu_limit",
        "`100m`, the default",
    );
    let mut database = with(
        "database",
        json!({"engine": "postgres", "version": "16", "storage": "1Gi",
               "resources": {"memory_limit": "256Mi"}}),
    );
    assert_problem(
        &database,
        "/nodes/0/spec/resources/memory_limit",
        "`512Mi`, the default",
    );
    database["nodes"][0]["spec"]["engine"] = json!("redis");
    assert!(validate(&database, "").is_ok(), "redis asks for 256Mi");
    // Equal values in other units are fine.
    let document = service(json!({"image": "x", "resources": {
        "cpu_request": "0.3", "cpu_limit": "300m",
        "memory_request": "1Gi", "memory_limit": "1024Mi"}}));
    assert!(validate(&document, "").is_ok());
}

#[test]
fn values_kubernetes_refuses_in_paths_and_images() {
    let document = json!({"nodes": [
        {"id": "a", "kind": "service", "spec": {"image": "x\u{7f}", "ports": [{"port": 80}],
                                               "probes": {"readiness_path": "/r\u{0}"}}},
        {"id": "v", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/a:b"}},
        {"id": "w", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "//"}}
    ], "edges": []});
    assert_problem(&document, "/nodes/0/spec/image", "control characters");
    assert_problem(
        &document,
        "/nodes/0/spec/probes/readiness_path",
        "control characters",
    );
    assert_problem(&document, "/nodes/1/spec/mount_path", "`:`");
    assert_problem(&document, "/nodes/2/spec/mount_path", "root directory");
}

#[test]
fn database_spec_rules() {
    let document = json!({"nodes": [
        {"id": "db", "kind": "database", "spec": {
            "engine": "postgres", "version": "16 beta", "storage": "lots",
            "storage_class": "Fast_SSD", "credentials": "nowhere",
            "backup": {"schedule": "daily", "storage": "0", "retention_days": 0}
        }},
        {"id": "db2", "kind": "database", "spec": {
            "engine": "mysql", "version": "", "storage": "1Gi", "credentials": "db"
        }}
    ], "edges": []});
    assert_problem(&document, "/nodes/0/spec/version", "image tag");
    assert_problem(&document, "/nodes/0/spec/storage", "quantity");
    assert_problem(
        &document,
        "/nodes/0/spec/storage_class",
        "DNS-1123 subdomain",
    );
    assert_problem(&document, "/nodes/0/spec/credentials", "no node `nowhere`");
    assert_problem(&document, "/nodes/0/spec/backup/schedule", "5 fields");
    assert_problem(&document, "/nodes/0/spec/backup/storage", "more than zero");
    assert_problem(&document, "/nodes/0/spec/backup/retention_days", "3650");
    assert_problem(&document, "/nodes/1/spec/version", "empty");
    assert_problem(
        &document,
        "/nodes/1/spec/credentials",
        "`db` is a database, not a secret_ref",
    );
}

#[test]
fn config_secret_and_volume_spec_rules() {
    let document = json!({"nodes": [
        {"id": "cfg", "kind": "config", "spec": {
            "data": {"ok.key": "1", "bad key": "2", "a/b": "3", "..": "4"},
            "mount_path": "etc/app"
        }},
        {"id": "sec", "kind": "secret_ref", "spec": {
            "secret_name": "My.Secret", "keys": ["", "token", "token"],
            "mount_path": "/run/../etc"
        }},
        {"id": "vol", "kind": "volume", "spec": {
            "size": "5 Gi", "mount_path": "data", "access_mode": "ReadWriteSometimes",
            "storage_class": "-fast"
        }}
    ], "edges": []});
    assert_problem(&document, "/nodes/0/spec/data/bad key", "not a valid key");
    assert_problem(&document, "/nodes/0/spec/data/a~1b", "not a valid key");
    assert_problem(&document, "/nodes/0/spec/data/..", "not a valid key");
    assert_problem(&document, "/nodes/0/spec/mount_path", "absolute");
    assert_problem(&document, "/nodes/1/spec/secret_name", "DNS-1123 subdomain");
    assert_problem(&document, "/nodes/1/spec/keys/0", "empty");
    assert_problem(&document, "/nodes/1/spec/keys/2", "duplicate key `token`");
    assert_problem(&document, "/nodes/1/spec/mount_path", "`..`");
    assert_problem(&document, "/nodes/2/spec/size", "quantity");
    assert_problem(&document, "/nodes/2/spec/mount_path", "absolute");
    assert_problem(
        &document,
        "/nodes/2/spec/access_mode",
        "ReadWriteOnce, ReadWriteMany",
    );
    assert_problem(
        &document,
        "/nodes/2/spec/storage_class",
        "DNS-1123 subdomain",
    );
    let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
    assert!(!pointers.contains(&"/nodes/0/spec/data/ok.key".to_owned()));
}

#[test]
fn ingress_spec_rules() {
    let document = realistic_with(|d| {
        d["nodes"][0]["spec"] = json!({
            "host": "Shop.Example.com",
            "paths": [
                {"path": "/", "service": "web"},
                {"path": "api", "service": "api"},
                {"path": "/", "service": "api", "path_type": "Regex"},
                {"path": "/db", "service": "db"},
                {"path": "/ghost", "service": "ghost"},
                {"path": "/worker", "service": "worker"}
            ],
            "tls": {"secret_name": "not_valid"},
            "class_name": "nginx"
        });
        d["nodes"].as_array_mut().expect("nodes").push(json!(
            {"id": "worker", "kind": "service", "spec": {"image": "w", "ports": [{"port": 1}]}}
        ));
    });
    assert_problem(&document, "/nodes/0/spec/host", "DNS name");
    assert_problem(&document, "/nodes/0/spec/paths/1/path", "start with `/`");
    assert_problem(
        &document,
        "/nodes/0/spec/paths/2/path",
        "duplicate path `/`: paths/0",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/paths/2/path_type",
        "Prefix, Exact",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/paths/3/service",
        "database, not a service",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/paths/4/service",
        "no node `ghost`",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/paths/5/service",
        "no `exposes` edge to `worker`",
    );
    assert_problem(
        &document,
        "/nodes/0/spec/tls/secret_name",
        "DNS-1123 subdomain",
    );

    for ok in [
        "example.com",
        "*.example.com",
        "localhost",
        "a-b.c1.example",
    ] {
        assert_eq!(check_host(ok), Ok(()), "{ok}");
    }
    for bad in [
        "",
        "*.",
        "10.0.0.1",
        "::1",
        "exa mple.com",
        "*example.com",
        "a..b",
        "a.*.b",
    ] {
        assert!(check_host(bad).is_err(), "{bad}");
    }
}
