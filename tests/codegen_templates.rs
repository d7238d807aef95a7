//! The `templates` codegen engine: golden bundles of the example graphs, and the properties
//! every bundle must have (round-trips, determinism, production defaults, refusals).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use gantry::domain::graph::{validate, Graph, NodeBody};
use gantry::workers::codegen::objects::Object;
use gantry::workers::codegen::templates::{generate, render, Target, TemplateError};
use gantry::workers::codegen::GeneratedFile;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};

const EXAMPLES: [&str; 3] = ["three-tier", "cron-worker", "stateful-database"];

fn document(name: &str) -> Value {
    let path = format!("{}/examples/graphs/{name}.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn parse(document: &Value) -> Graph {
    match validate(document, "") {
        Ok(graph) => graph,
        Err(errors) => panic!("the graph does not validate: {errors:?}"),
    }
}

fn example(name: &str) -> Graph {
    parse(&document(name))
}

fn target() -> Target {
    Target {
        project: "acme-shop".to_owned(),
    }
}

fn build(graph: &Graph) -> (Vec<Object>, Vec<GeneratedFile>) {
    let objects = generate(graph, &target()).unwrap();
    let files = render(&objects, &target()).unwrap();
    (objects, files)
}

/// The whole bundle as one multi-document YAML, each file under a `# path` header.
fn bundle(files: &[GeneratedFile]) -> String {
    files
        .iter()
        .map(|f| format!("---\n# {}\n{}", f.path, String::from_utf8_lossy(&f.content)))
        .collect()
}

fn yaml_values(files: &[GeneratedFile]) -> BTreeMap<String, Value> {
    files
        .iter()
        .map(|f| {
            let text = String::from_utf8(f.content.clone()).unwrap();
            (
                f.path.clone(),
                serde_saphyr::from_str::<Value>(&text).unwrap(),
            )
        })
        .collect()
}

fn error_pointer(graph: &Graph) -> String {
    match generate(graph, &target()) {
        Ok(objects) => panic!("expected a refusal, got {} objects", objects.len()),
        Err(TemplateError::Invalid { pointer, detail }) => {
            assert!(!detail.is_empty());
            pointer
        }
    }
}

/// A graph straight from JSON, skipping `validate` (the engine must cope on its own).
fn raw(document: Value) -> Graph {
    serde_json::from_value(document).unwrap()
}

#[test]
fn golden_three_tier() {
    let (_, files) = build(&example("three-tier"));
    insta::assert_snapshot!("three_tier", bundle(&files));
}

#[test]
fn golden_cron_worker() {
    let (_, files) = build(&example("cron-worker"));
    insta::assert_snapshot!("cron_worker", bundle(&files));
}

#[test]
fn golden_stateful_database() {
    let (_, files) = build(&example("stateful-database"));
    insta::assert_snapshot!("stateful_database", bundle(&files));
}

#[test]
fn every_document_parses_back_into_the_same_object() {
    for name in EXAMPLES {
        let (objects, files) = build(&example(name));
        assert_eq!(files.len(), objects.len() + 1, "{name}");
        for object in &objects {
            let file = files.iter().find(|f| f.path == object.file_name()).unwrap();
            assert_eq!(file.media_type, "application/yaml");
            let text = String::from_utf8(file.content.clone()).unwrap();
            let parsed = Object::from_yaml(&text)
                .unwrap_or_else(|e| panic!("{name} {}: {e}\n{text}", file.path));
            assert_eq!(&parsed, object, "{name} {}", file.path);
        }
    }
}

#[test]
fn generating_twice_is_byte_identical() {
    for name in EXAMPLES {
        let (_, first) = build(&example(name));
        let (_, second) = build(&example(name));
        assert_eq!(first, second, "{name}");
    }
}

#[test]
fn node_and_edge_order_do_not_change_the_output() {
    for name in EXAMPLES {
        let original = document(name);
        let (_, expected) = build(&parse(&original));
        let permutations: [fn(&mut Vec<Value>); 3] = [
            |items| items.reverse(),
            |items| {
                let len = items.len();
                items.rotate_left(len / 2);
            },
            |items| {
                // Odd positions first, then even ones.
                let (odd, even): (Vec<_>, Vec<_>) =
                    items.drain(..).enumerate().partition(|(i, _)| i % 2 == 1);
                items.extend(odd.into_iter().chain(even).map(|(_, v)| v));
            },
        ];
        for (p, permute) in permutations.iter().enumerate() {
            let mut shuffled = original.clone();
            for key in ["nodes", "edges"] {
                let items = shuffled[key].as_array_mut().unwrap();
                permute(items);
            }
            assert_ne!(
                shuffled, original,
                "{name}: permutation {p} changed nothing"
            );
            let (_, files) = build(&parse(&shuffled));
            assert_eq!(files, expected, "{name}: permutation {p}");
        }
    }
}

#[test]
fn files_are_sorted_and_the_kustomization_lists_every_other_file() {
    for name in EXAMPLES {
        let (_, files) = build(&example(name));
        let paths: Vec<&str> = files.iter().map(|f| f.path.as_str()).collect();
        let mut sorted = paths.clone();
        sorted.sort();
        assert_eq!(paths, sorted, "{name}");
        let values = yaml_values(&files);
        let kustomization = &values["kustomization.yaml"];
        assert_eq!(
            kustomization["apiVersion"],
            "kustomize.config.k8s.io/v1beta1"
        );
        assert_eq!(kustomization["kind"], "Kustomization");
        assert_eq!(kustomization["namespace"], "acme-shop");
        let listed: Vec<&str> = kustomization["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r.as_str().unwrap())
            .collect();
        let others: Vec<&str> = paths
            .iter()
            .copied()
            .filter(|p| *p != "kustomization.yaml")
            .collect();
        assert_eq!(listed, others, "{name}");
    }
}

#[test]
fn no_secret_is_ever_generated() {
    for name in EXAMPLES {
        let (_, files) = build(&example(name));
        for (path, value) in yaml_values(&files) {
            assert_ne!(value["kind"], "Secret", "{name} {path}");
        }
        let text = bundle(&files);
        assert!(!text.contains("kind: Secret\n"), "{name}");
        // Secret values reach containers only by reference.
        assert!(!text.contains("stringData"), "{name}");
    }
}

#[test]
fn every_object_and_pod_template_carries_the_standard_labels() {
    for name in EXAMPLES {
        let (_, files) = build(&example(name));
        for (path, value) in yaml_values(&files) {
            if path == "kustomization.yaml" {
                continue;
            }
            let mut label_sets = vec![("metadata", &value["metadata"]["labels"])];
            for pointer in [
                "/spec/template/metadata/labels",
                "/spec/jobTemplate/spec/template/metadata/labels",
            ] {
                if let Some(labels) = value.pointer(pointer) {
                    label_sets.push((pointer, labels));
                }
            }
            for (at, labels) in label_sets {
                assert_eq!(
                    labels["app.kubernetes.io/part-of"], "acme-shop",
                    "{path} {at}"
                );
                assert_eq!(
                    labels["app.kubernetes.io/managed-by"], "gantry",
                    "{path} {at}"
                );
                assert!(labels["app.kubernetes.io/name"].is_string(), "{path} {at}");
                assert!(
                    labels["app.kubernetes.io/component"].is_string(),
                    "{path} {at}"
                );
            }
            assert_eq!(value["metadata"]["namespace"], "acme-shop", "{path}");
        }
    }
}

#[test]
fn hardened_pods_everywhere() {
    for name in EXAMPLES {
        let (_, files) = build(&example(name));
        for (path, value) in yaml_values(&files) {
            let pod = value
                .pointer("/spec/template/spec")
                .or_else(|| value.pointer("/spec/jobTemplate/spec/template/spec"));
            let Some(pod) = pod else { continue };
            assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{path}");
            assert_eq!(
                pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault",
                "{path}"
            );
            assert_eq!(pod["automountServiceAccountToken"], false, "{path}");
            let containers = pod["containers"].as_array().unwrap().iter();
            let init = pod["initContainers"].as_array().into_iter().flatten();
            for container in containers.chain(init) {
                let security = &container["securityContext"];
                assert_eq!(security["readOnlyRootFilesystem"], true, "{path}");
                assert_eq!(security["allowPrivilegeEscalation"], false, "{path}");
                assert_eq!(security["capabilities"]["drop"], json!(["ALL"]), "{path}");
                assert!(
                    container["resources"]["requests"]["cpu"].is_string(),
                    "{path}"
                );
                assert!(
                    container["resources"]["limits"]["memory"].is_string(),
                    "{path}"
                );
            }
            let tmp = pod["containers"][0]["volumeMounts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m["mountPath"] == "/tmp");
            assert!(tmp, "{path}: no writable /tmp");
        }
    }
}

fn deployments(objects: &[Object]) -> Vec<&k8s_openapi::api::apps::v1::Deployment> {
    objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(d.as_ref()),
            _ => None,
        })
        .collect()
}

fn names_of(objects: &[Object], kind: &str) -> BTreeSet<String> {
    objects
        .iter()
        .filter(|o| o.kind() == kind)
        .map(|o| o.name().to_owned())
        .collect()
}

#[test]
fn a_pdb_exists_exactly_when_more_than_one_replica_runs() {
    let mut seen_pdb = false;
    for name in EXAMPLES {
        let graph = example(name);
        let (objects, _) = build(&graph);
        let pdbs = names_of(&objects, "PodDisruptionBudget");
        seen_pdb |= !pdbs.is_empty();
        for node in &graph.nodes {
            if let NodeBody::Service(spec) = &node.body {
                let min = match &spec.autoscaling {
                    Some(scaling) => scaling.min_replicas,
                    None => spec.replicas.unwrap_or(1),
                };
                assert_eq!(pdbs.contains(&node.id), min > 1, "{name} {}", node.id);
            }
        }
        // Only services get one.
        let services: BTreeSet<String> = deployments(&objects)
            .iter()
            .filter_map(|d| d.metadata.name.clone())
            .collect();
        assert!(pdbs.is_subset(&services), "{name}");
    }
    assert!(seen_pdb);
}

#[test]
fn an_hpa_exists_exactly_when_a_service_autoscales() {
    let mut seen_hpa = false;
    for name in EXAMPLES {
        let graph = example(name);
        let (objects, _) = build(&graph);
        let hpas = names_of(&objects, "HorizontalPodAutoscaler");
        let autoscaled: BTreeSet<String> = graph
            .nodes
            .iter()
            .filter(|n| matches!(&n.body, NodeBody::Service(s) if s.autoscaling.is_some()))
            .map(|n| n.id.clone())
            .collect();
        assert_eq!(hpas, autoscaled, "{name}");
        seen_hpa |= !hpas.is_empty();
        for deployment in deployments(&objects) {
            let spec = deployment.spec.as_ref().unwrap();
            let id = deployment.metadata.name.clone().unwrap();
            // The HPA owns the replica count of what it scales.
            assert_eq!(spec.replicas.is_none(), hpas.contains(&id), "{name} {id}");
        }
    }
    assert!(seen_hpa);
}

#[test]
fn probes_exist_exactly_when_a_container_has_ports() {
    for name in EXAMPLES {
        let (objects, _) = build(&example(name));
        for object in &objects {
            let pod = match object {
                Object::Deployment(d) => d.spec.as_ref().unwrap().template.spec.as_ref(),
                Object::StatefulSet(s) => s.spec.as_ref().unwrap().template.spec.as_ref(),
                Object::Job(j) => j.spec.as_ref().unwrap().template.spec.as_ref(),
                Object::CronJob(c) => c
                    .spec
                    .as_ref()
                    .unwrap()
                    .job_template
                    .spec
                    .as_ref()
                    .unwrap()
                    .template
                    .spec
                    .as_ref(),
                _ => continue,
            };
            for container in &pod.unwrap().containers {
                let ports = container.ports.as_ref().is_some_and(|p| !p.is_empty());
                let at = format!("{name} {} {}", object.file_name(), container.name);
                assert_eq!(container.liveness_probe.is_some(), ports, "{at}");
                assert_eq!(container.readiness_probe.is_some(), ports, "{at}");
                assert_eq!(container.startup_probe.is_some(), ports, "{at}");
            }
        }
    }
}

#[test]
fn edges_become_environment_network_policies_and_waits() {
    let (_, files) = build(&example("three-tier"));
    let values = yaml_values(&files);
    let env = |file: &str| -> BTreeMap<String, Value> {
        values[file]["spec"]["template"]["spec"]["containers"][0]["env"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["name"].as_str().unwrap().to_owned(), e.clone()))
            .collect()
    };
    let web = env("deployment-web.yaml");
    assert_eq!(web["API_HOST"]["value"], "api");
    assert_eq!(web["API_PORT"]["value"], "9000");
    let api = env("deployment-api.yaml");
    assert_eq!(api["SHOP_DB_HOST"]["value"], "shop-db");
    assert_eq!(api["SHOP_DB_PORT"]["value"], "5432");
    assert_eq!(
        api["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"],
        json!({"name": "shop-db-credentials", "key": "POSTGRES_PASSWORD"})
    );
    let db = env("statefulset-shop-db.yaml");
    assert_eq!(
        db["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"],
        "shop-db-credentials"
    );

    let ingress_from = |file: &str| values[file]["spec"]["ingress"].clone();
    assert_eq!(
        ingress_from("networkpolicy-shop-db-ingress.yaml"),
        json!([{
            "from": [{"podSelector": {"matchLabels": {
                "app.kubernetes.io/name": "api", "app.kubernetes.io/part-of": "acme-shop"}}}],
            "ports": [{"port": 5432, "protocol": "TCP"}]
        }])
    );
    assert_eq!(
        ingress_from("networkpolicy-web-ingress.yaml"),
        json!([{
            "from": [{"namespaceSelector": {"matchLabels": {
                "kubernetes.io/metadata.name": "ingress-nginx"}}}],
            "ports": [{"port": 8080, "protocol": "TCP"}]
        }])
    );
    assert_eq!(
        values["networkpolicy-api-egress.yaml"]["spec"]["egress"][0]["ports"],
        json!([{"port": 5432, "protocol": "TCP"}])
    );
    let deny = &values["networkpolicy-default-deny.yaml"]["spec"];
    assert_eq!(deny["podSelector"], json!({}));
    assert_eq!(deny["policyTypes"], json!(["Ingress", "Egress"]));
    assert!(values.contains_key("networkpolicy-allow-dns.yaml"));

    let ingress = &values["ingress-edge.yaml"]["spec"];
    assert_eq!(ingress["tls"][0]["secretName"], "shop-example-com-tls");
    assert_eq!(ingress["rules"][0]["http"]["paths"][0]["path"], "/");
    assert_eq!(
        ingress["rules"][0]["http"]["paths"][0]["backend"]["service"],
        json!({"name": "web", "port": {"name": "http"}})
    );

    let (_, files) = build(&example("stateful-database"));
    let values = yaml_values(&files);
    let job = &values["job-orders-migrate.yaml"];
    assert_eq!(
        job["metadata"]["annotations"]["gantry.dev/depends-on"],
        "orders-db"
    );
    let wait = &job["spec"]["template"]["spec"]["initContainers"][0];
    assert_eq!(wait["name"], "wait-for-orders-db");
    assert!(wait["command"][2]
        .as_str()
        .unwrap()
        .contains("nc -z -w 2 orders-db 5432"));
    assert_eq!(wait["securityContext"]["runAsUser"], 65534);
    assert!(values.contains_key("cronjob-orders-db-backup.yaml"));
    assert!(values.contains_key("persistentvolumeclaim-orders-db-backup.yaml"));
    assert!(values.contains_key("networkpolicy-orders-db-backup-egress.yaml"));
}

#[test]
fn a_database_may_wait_for_what_it_depends_on() {
    let graph = parse(&json!({"nodes": [
        {"id": "vault", "kind": "service", "spec": {"image": "x:1", "ports": [{"port": 8200}]}},
        {"id": "cache", "kind": "database", "spec": {"engine": "redis", "version": "7.4", "storage": "1Gi"}}
    ], "edges": [{"from": "cache", "to": "vault", "kind": "depends_on"}]}));
    let (_, files) = build(&graph);
    let values = yaml_values(&files);
    let sts = &values["statefulset-cache.yaml"];
    assert_eq!(
        sts["metadata"]["annotations"]["gantry.dev/depends-on"],
        "vault"
    );
    assert_eq!(
        sts["spec"]["template"]["spec"]["initContainers"][0]["name"],
        "wait-for-vault"
    );
    assert!(values.contains_key("networkpolicy-cache-egress.yaml"));
    assert!(values.contains_key("networkpolicy-vault-ingress.yaml"));
}

/// The pointers of every problem `validate` finds in `document`; empty when it is valid.
fn validation_pointers(document: &Value) -> Vec<String> {
    match validate(document, "") {
        Ok(_) => Vec::new(),
        Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
    }
}

/// Asserts that `validate` refuses `document` with a problem at `pointer`.
#[track_caller]
fn assert_refused_at(document: &Value, pointer: &str) {
    let pointers = validation_pointers(document);
    assert!(
        pointers.iter().any(|p| p == pointer),
        "expected validate to refuse at {pointer}, got {pointers:?} for {document}"
    );
}

#[test]
fn a_database_without_credentials_is_refused_when_its_image_needs_them() {
    for engine in ["postgres", "mysql"] {
        let document = json!({"nodes": [
            {"id": "db", "kind": "database", "spec": {"engine": engine, "version": "16", "storage": "1Gi"}}
        ], "edges": []});
        assert_refused_at(&document, "/nodes/0/spec/credentials");
        // The engine still refuses it on its own, at the same place.
        assert_eq!(error_pointer(&raw(document)), "/nodes/0/spec/credentials");
    }
    // Redis runs without a password (reachable only through the network policies).
    let graph = parse(&json!({"nodes": [
        {"id": "cache", "kind": "database", "spec": {"engine": "redis", "version": "7.4", "storage": "1Gi"}}
    ], "edges": []}));
    assert!(generate(&graph, &target()).is_ok());
}

/// Graphs the engine refuses on its own (they skip `validate`), with the pointer it names.
fn engine_refusals() -> Vec<(Value, &'static str)> {
    vec![
        (
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7", "storage": "lots"}}
            ], "edges": []}),
            "/nodes/0/spec/storage",
        ),
        (
            json!({"nodes": [
                {"id": "a", "kind": "service", "spec": {"image": "x:1"}}
            ], "edges": [{"from": "a", "to": "ghost", "kind": "connects"}]}),
            "/edges/0/to",
        ),
        (
            json!({"nodes": [
                {"id": "a", "kind": "service", "spec": {"image": "x:1"}},
                {"id": "a", "kind": "job", "spec": {"image": "x:1"}}
            ], "edges": []}),
            "/nodes/1/id",
        ),
        (
            json!({"nodes": [
                {"id": "a", "kind": "service", "spec": {"image": "x:1", "ports": [{"port": 80}]}},
                {"id": "b", "kind": "service", "spec": {"image": "x:1"}}
            ], "edges": [{"from": "b", "to": "a", "kind": "connects", "port": 81}]}),
            "/edges/0/port",
        ),
        (
            json!({"nodes": [
                {"id": "a", "kind": "service", "spec": {"image": "x:1", "replicas": 2}},
                {"id": "v", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/data"}}
            ], "edges": [{"from": "v", "to": "a", "kind": "mounts"}]}),
            "/edges/0",
        ),
        (
            json!({"nodes": [
                {"id": "a", "kind": "service", "spec": {"image": "x:1",
                    "resources": {"memory_request": "1Gi", "memory_limit": "512Mi"}}}
            ], "edges": []}),
            "/nodes/0/spec/resources/memory_limit",
        ),
        (
            json!({"nodes": [
                {"id": "c", "kind": "config", "spec": {"data": {"A": "1"}}},
                {"id": "a", "kind": "service", "spec": {"image": "x:1"}}
            ], "edges": [{"from": "a", "to": "c", "kind": "mounts"}]}),
            "/edges/0/kind",
        ),
        (
            // A volume named like the backup claim of database `db`.
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7",
                    "storage": "1Gi", "backup": {"schedule": "@daily"}}},
                {"id": "db-backup", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/x"}}
            ], "edges": []}),
            "/nodes/1/id",
        ),
        (
            json!({"nodes": [
                {"id": "w", "kind": "cron_job", "spec": {"schedule": "every day", "image": "x:1"}}
            ], "edges": []}),
            "/nodes/0/spec/schedule",
        ),
        (
            json!({"nodes": [
                {"id": "a", "kind": "service", "spec": {"image": "x:1", "env": {"DB_HOST": "x"}}},
                {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7", "storage": "1Gi"}}
            ], "edges": [{"from": "a", "to": "db", "kind": "connects"}]}),
            "/nodes/0/spec/env/DB_HOST",
        ),
        (
            json!({"nodes": [
                {"id": "i", "kind": "ingress", "spec": {"host": "x.example.com",
                    "paths": [{"path": "/api", "service": "a"}]}},
                {"id": "a", "kind": "service", "spec": {"image": "x:1", "ports": [{"port": 80}]}}
            ], "edges": []}),
            "/nodes/0/spec/paths/0/service",
        ),
        // The refusals below used to pass `validate`, so such graphs were stored and then
        // failed to generate.
        (
            json!({"nodes": [
                {"id": "1api", "kind": "service", "spec": {"image": "x:1", "ports": [{"port": 80}]}}
            ], "edges": []}),
            "/nodes/0/id",
        ),
        (
            json!({"nodes": [
                {"id": "9cache", "kind": "database", "spec": {"engine": "redis", "version": "7", "storage": "1Gi"}}
            ], "edges": []}),
            "/nodes/0/id",
        ),
        (
            json!({"nodes": [
                {"id": "r".repeat(53), "kind": "cron_job", "spec": {"schedule": "@daily", "image": "x:1"}}
            ], "edges": []}),
            "/nodes/0/id",
        ),
        (
            json!({"nodes": [
                {"id": "d".repeat(46), "kind": "database", "spec": {"engine": "redis", "version": "7",
                    "storage": "1Gi", "backup": {"schedule": "@daily"}}}
            ], "edges": []}),
            "/nodes/0/id",
        ),
        (
            // Below the default CPU request of a job (100m).
            json!({"nodes": [
                {"id": "j", "kind": "job", "spec": {"image": "x:1", "resources": {"cpu_limit": "50m"}}}
            ], "edges": []}),
            "/nodes/0/spec/resources/cpu_limit",
        ),
        (
            // Below the default memory request of postgres (512Mi).
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": {"engine": "postgres", "version": "16",
                    "storage": "1Gi", "credentials": "s", "resources": {"memory_limit": "256Mi"}}},
                {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s"}}
            ], "edges": []}),
            "/nodes/0/spec/resources/memory_limit",
        ),
        (
            json!({"nodes": [
                {"id": "i", "kind": "ingress", "spec": {"host": "x.example.com"}},
                {"id": "dns", "kind": "service", "spec": {"image": "x:1",
                    "ports": [{"port": 53, "protocol": "UDP"}, {"port": 8080}]}}
            ], "edges": [{"from": "i", "to": "dns", "kind": "exposes"}]}),
            "/edges/0/to",
        ),
        (
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": {"engine": "mysql", "version": "8",
                    "storage": "1Gi", "credentials": "s"}},
                {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s", "keys": ["MYSQL_USER"]}}
            ], "edges": []}),
            "/nodes/0/spec/credentials",
        ),
        (
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": {"engine": "postgres", "version": "latest",
                    "storage": "1Gi", "credentials": "s"}},
                {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s"}}
            ], "edges": []}),
            "/nodes/0/spec/version",
        ),
        (
            json!({"nodes": [
                {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s", "keys": ["1bad"]}},
                {"id": "a", "kind": "job", "spec": {"image": "x:1"}}
            ], "edges": [{"from": "s", "to": "a", "kind": "mounts"}]}),
            "/nodes/0/spec/keys/0",
        ),
        (
            json!({"nodes": [
                {"id": "v", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/srv/a:b"}},
                {"id": "a", "kind": "job", "spec": {"image": "x:1"}}
            ], "edges": [{"from": "v", "to": "a", "kind": "mounts"}]}),
            "/nodes/0/spec/mount_path",
        ),
        (
            json!({"nodes": [
                {"id": "data", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/srv"}},
                {"id": "cache", "kind": "database", "spec": {"engine": "redis", "version": "7", "storage": "1Gi"}}
            ], "edges": [{"from": "data", "to": "cache", "kind": "mounts"}]}),
            "/edges/0",
        ),
    ]
}

#[test]
fn refusals_point_at_the_offending_value() {
    for (document, expected) in engine_refusals() {
        assert_eq!(
            error_pointer(&raw(document.clone())),
            expected,
            "{document}"
        );
    }
}

#[test]
fn validate_refuses_what_the_engine_refuses_with_the_same_pointer() {
    for (document, expected) in engine_refusals() {
        assert_refused_at(&document, expected);
    }
}

#[test]
fn validate_refuses_pod_clashes_the_engine_refuses_elsewhere() {
    // The engine notices these while assembling a pod and names the pod's node; `validate`
    // names the edge that causes them.
    let cases = [
        // A pod volume named like the scratch volume every pod has.
        json!({"nodes": [
            {"id": "tmp", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/scratch"}},
            {"id": "a", "kind": "job", "spec": {"image": "x:1"}}],
            "edges": [{"from": "tmp", "to": "a", "kind": "mounts"}]}),
        // A mount at the scratch directory.
        json!({"nodes": [
            {"id": "v", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/tmp/"}},
            {"id": "a", "kind": "job", "spec": {"image": "x:1"}}],
            "edges": [{"from": "v", "to": "a", "kind": "mounts"}]}),
        // A mount over a database's scratch directory.
        json!({"nodes": [
            {"id": "c", "kind": "config", "spec": {"data": {"a": "1"}, "mount_path": "/var/run/mysqld"}},
            {"id": "db", "kind": "database", "spec": {"engine": "mysql", "version": "8",
                "storage": "1Gi", "credentials": "s"}},
            {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s"}}],
            "edges": [{"from": "c", "to": "db", "kind": "mounts"}]}),
        // A secret mounted into the database that its credentials already inject.
        json!({"nodes": [
            {"id": "db", "kind": "database", "spec": {"engine": "postgres", "version": "16",
                "storage": "1Gi", "credentials": "s"}},
            {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s",
                "keys": ["POSTGRES_PASSWORD"]}}],
            "edges": [{"from": "s", "to": "db", "kind": "mounts"}]}),
    ];
    for document in cases {
        assert_refused_at(&document, "/edges/0");
        assert!(
            generate(&raw(document.clone()), &target()).is_err(),
            "{document}"
        );
    }
    // A secret key clashing with what a `connects` edge injects: at the later edge.
    let document = json!({"nodes": [
        {"id": "a", "kind": "service", "spec": {"image": "x:1"}},
        {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7", "storage": "1Gi"}},
        {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s", "keys": ["DB_PORT"]}}],
        "edges": [{"from": "a", "to": "db", "kind": "connects"},
                  {"from": "s", "to": "a", "kind": "mounts"}]});
    assert_eq!(validation_pointers(&document), ["/edges/1"]);
    assert!(generate(&raw(document), &target()).is_err());
}

#[test]
fn validate_refuses_ids_that_share_a_databases_generated_names() {
    // The engine writes these without complaint, but the job's pods would carry the backup's
    // labels (and the policies of both would merge); the volume would become the database's
    // data claim.
    let database = json!({"id": "db", "kind": "database", "spec": {"engine": "redis",
        "version": "7", "storage": "1Gi", "backup": {"schedule": "@daily"}}});
    for (other, pointer) in [
        (
            json!({"id": "db-backup", "kind": "job", "spec": {"image": "x:1"}}),
            "/nodes/1/id",
        ),
        (
            json!({"id": "data-db-0", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/x"}}),
            "/nodes/1/id",
        ),
    ] {
        assert_refused_at(&json!({"nodes": [database, other], "edges": []}), pointer);
        // At the later node, whichever it is.
        assert_refused_at(
            &json!({"nodes": [other, database], "edges": []}),
            "/nodes/1/id",
        );
    }
    // A config may be called `data-db-0`: it makes no claim.
    let document = json!({"nodes": [database,
        {"id": "data-db-0", "kind": "config", "spec": {"data": {}}}], "edges": []});
    assert!(validate(&document, "").is_ok());
}

/// Every graph file in `examples/graphs`.
fn example_documents() -> Vec<(String, Value)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/graphs");
    let mut documents: Vec<(String, Value)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().and_then(|e| e.to_str()) == Some("json"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (
                path.display().to_string(),
                serde_json::from_str(&text).unwrap(),
            )
        })
        .collect();
    documents.sort_by(|a, b| a.0.cmp(&b.0));
    documents
}

#[test]
fn every_example_and_benchmark_graph_validates_and_generates() {
    let mut documents = example_documents();
    assert!(documents.len() >= 3, "expected the example graphs");
    // Whole units of ten, leftovers, and sizes around them.
    for nodes in [1, 9, 10, 11, 25, 57, 250] {
        documents.push((
            format!("synthetic_graph({nodes})"),
            gantry::bench::synthetic_graph(nodes),
        ));
    }
    for (name, document) in documents {
        let graph = match validate(&document, "") {
            Ok(graph) => graph,
            Err(errors) => panic!("{name} does not validate: {errors:#?}"),
        };
        let objects = generate(&graph, &target())
            .unwrap_or_else(|e| panic!("{name} validates but does not generate: {e}"));
        render(&objects, &target()).unwrap_or_else(|e| panic!("{name} does not render: {e}"));
    }
}

/// A small deterministic pseudo-random generator (xorshift64*), so the property test needs no
/// dependency and fails the same way every run.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())].clone()
    }
}

/// An id for a node of `kind`: mostly ordinary, sometimes one the templates derive names from
/// or reserve (a volume `tmp`, a job `db-backup`) or one at a length limit.
fn random_id(random: &mut Random, kind: &str) -> String {
    let tricky = random.chance(30);
    match kind {
        "service" if tricky => random.pick(&["1api", "db-backup", "tmp"]).to_owned(),
        "service" => random.pick(&["web", "api", "dns", "worker"]).to_owned(),
        "job" if tricky => random
            .pick(&["db-backup", "cache-backup", "data-db-0"])
            .to_owned(),
        "job" => random.pick(&["migrate", "seed"]).to_owned(),
        "cron_job" if tricky => match random.below(3) {
            0 => "r".repeat(52),
            1 => "r".repeat(53),
            _ => "db-backup".to_owned(),
        },
        "cron_job" => "report".to_owned(),
        "database" if tricky => match random.below(3) {
            0 => "d".repeat(45),
            1 => "d".repeat(46),
            _ => "9db".to_owned(),
        },
        "database" => random.pick(&["db", "cache"]).to_owned(),
        "config" if tricky => random.pick(&["tmp", "run", "shm", "files"]).to_owned(),
        "config" => random.pick(&["settings", "flags"]).to_owned(),
        "secret_ref" if tricky => random.pick(&["data", "tmp", "run"]).to_owned(),
        "secret_ref" => random.pick(&["creds", "tokens"]).to_owned(),
        "volume" if tricky => random
            .pick(&[
                "data",
                "tmp",
                "db-backup",
                "cache-backup",
                "data-db-0",
                "data-cache-0",
                "files",
                "shm",
            ])
            .to_owned(),
        "volume" => random.pick(&["uploads", "scratch"]).to_owned(),
        _ => random.pick(&["edge", "public"]).to_owned(),
    }
}

/// A random spec for a node of `kind`, from values close to the rules' edges.
fn random_spec(random: &mut Random, kind: &str) -> Value {
    let env_sets = [
        json!({}),
        json!({}),
        json!({"DB_HOST": "x"}),
        json!({"API_PORT": "1"}),
        json!({"CACHE_HOST": "x", "LOG": "1"}),
        json!({"TOKEN": "x"}),
        json!({"POSTGRES_PASSWORD": "x"}),
    ];
    let resources = [
        json!({"memory_limit": "64Mi"}),
        json!({"memory_limit": "128Mi"}),
        json!({"memory_limit": "0.125Gi"}),
        json!({"cpu_limit": "50m"}),
        json!({"cpu_limit": "0.1"}),
        json!({"cpu_request": "0.3", "cpu_limit": "300m"}),
        json!({"cpu_request": "1", "cpu_limit": "999m"}),
        json!({"memory_request": "1Gi", "memory_limit": "1024Mi"}),
        json!({"memory_limit": "256Mi"}),
        json!({"memory_limit": "512Mi", "cpu_limit": "250m"}),
    ];
    let mut spec = match kind {
        "service" => {
            let mut ports = Vec::new();
            for k in 0..random.below(3) {
                ports.push(random.pick(&[
                    json!({"port": 8080 + k}),
                    json!({"port": 53 + k, "protocol": "UDP"}),
                    json!({"port": 9100 + k, "name": format!("metrics-{k}")}),
                ]));
            }
            let image = if random.chance(5) { "x\u{1}:1" } else { "x:1" };
            let mut spec = json!({"image": image, "ports": ports, "env": random.pick(&env_sets)});
            match random.below(4) {
                0 => spec["replicas"] = json!(2),
                1 => spec["autoscaling"] = json!({"min_replicas": 1, "max_replicas": 3}),
                2 => spec["autoscaling"] = json!({"min_replicas": 1, "max_replicas": 1}),
                _ => {}
            }
            if random.chance(20) && !spec["ports"].as_array().is_some_and(Vec::is_empty) {
                spec["probes"] = json!({"readiness_path": "/ready"});
            }
            spec
        }
        "job" => json!({"image": "x:1", "env": random.pick(&env_sets)}),
        "cron_job" => json!({"image": "x:1", "schedule": random.pick(&["@daily", "*/5 * * * *"]),
                             "env": random.pick(&env_sets)}),
        "database" => {
            let engine = random.pick(&["postgres", "mysql", "redis"]);
            let version = if random.chance(15) { "latest" } else { "16.4" };
            let mut spec = json!({"engine": engine, "version": version,
                                  "storage": random.pick(&["1Gi", "1Gi", "1e-9"])});
            if random.chance(50) {
                spec["backup"] = json!({"schedule": "@daily"});
            }
            spec
        }
        "config" => {
            let mut spec = json!({"data": {"A": "1", "spring.profiles": "x"}});
            if random.chance(60) {
                spec["mount_path"] = json!(random.pick(&[
                    "/etc/app",
                    "/etc/app",
                    "/tmp",
                    "/var/lib/postgresql",
                    "/data/",
                    "/dev/shm"
                ]));
            }
            spec
        }
        "secret_ref" => {
            let keys = random.pick(&[
                json!([]),
                json!([]),
                json!(["POSTGRES_PASSWORD"]),
                json!(["POSTGRES_PASSWORD", "POSTGRES_USER"]),
                json!(["POSTGRES_PASSWORD", "PGDATA"]),
                json!(["POSTGRES_PASSWORD", "PGPASSWORD"]),
                json!(["MYSQL_ROOT_PASSWORD", "tls.crt"]),
                json!(["MYSQL_ROOT_PASSWORD", "MYSQL_DATABASE"]),
                json!(["REDIS_PASSWORD", "REDISCLI_AUTH"]),
                json!(["REDIS_PASSWORD"]),
                json!(["TOKEN"]),
                json!(["DB_HOST"]),
                json!(["1bad"]),
            ]);
            let mut spec = json!({"secret_name": "s", "keys": keys});
            if random.chance(30) {
                spec["mount_path"] = json!(random.pick(&["/run/secrets", "/tmp"]));
            }
            spec
        }
        "volume" => {
            let path = random.pick(&[
                "/srv/",
                "/uploads",
                "/data",
                "/tmp",
                "/var/lib/mysql",
                "/dev/shm",
                "/var/run/mysqld",
                "/var/lib/mysql-files",
            ]);
            let mut spec = json!({"size": "1Gi", "mount_path": path});
            if random.chance(50) {
                spec["access_mode"] = json!(random.pick(&["ReadWriteMany", "ReadOnlyMany"]));
            }
            spec
        }
        _ => json!({"host": "x.example.com"}),
    };
    if matches!(kind, "service" | "job" | "cron_job" | "database") && random.chance(30) {
        spec["resources"] = random.pick(&resources);
    }
    spec
}

/// A random graph, mostly valid but for a few values close to the rules' edges, so that each
/// rule is exercised on graphs that would otherwise be stored.
fn random_graph(random: &mut Random) -> Value {
    let kinds = [
        "service",
        "service",
        "job",
        "cron_job",
        "database",
        "config",
        "secret_ref",
        "volume",
    ];
    let mut nodes: Vec<Value> = Vec::new();
    for _ in 0..1 + random.below(5) {
        let kind = random.pick(&kinds);
        let id = random_id(random, kind);
        if nodes.iter().any(|n| n["id"] == id.as_str()) && random.chance(90) {
            continue;
        }
        nodes.push(json!({"id": id, "kind": kind, "spec": random_spec(random, kind)}));
    }
    let kind_of = |node: &Value| node["kind"].as_str().unwrap_or_default().to_owned();
    let ids_of = |nodes: &[Value], allowed: &[&str]| -> Vec<String> {
        nodes
            .iter()
            .filter(|n| allowed.contains(&kind_of(n).as_str()))
            .map(|n| n["id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    // Databases mostly name an existing secret_ref as credentials.
    let needs_secret = nodes.iter().any(|n| kind_of(n) == "database");
    if needs_secret && ids_of(&nodes, &["secret_ref"]).is_empty() && random.chance(90) {
        nodes.push(json!({"id": "creds", "kind": "secret_ref",
                          "spec": random_spec(random, "secret_ref")}));
    }
    let secrets = ids_of(&nodes, &["secret_ref"]);
    for node in nodes.iter_mut() {
        if kind_of(node) == "database" && !secrets.is_empty() && random.chance(90) {
            node["spec"]["credentials"] = json!(random.pick(&secrets));
        }
    }

    let workloads = ["service", "job", "cron_job"];
    let runnable = ["service", "job", "cron_job", "database"];
    let mut edges: Vec<Value> = Vec::new();
    let add_edge = |edges: &mut Vec<Value>, from: String, to: String, kind: &str| {
        let same =
            |e: &Value| e["from"] == from.as_str() && e["to"] == to.as_str() && e["kind"] == kind;
        if from != to && !edges.iter().any(same) {
            edges.push(json!({"from": from, "to": to, "kind": kind}));
        }
    };
    // An ingress exposing one service, sometimes naming it in a path.
    let services = ids_of(&nodes, &["service"]);
    if !services.is_empty() && random.chance(40) {
        let service = random.pick(&services);
        let id = random_id(random, "ingress");
        let mut spec = json!({"host": "x.example.com"});
        if random.chance(50) {
            spec["paths"] = json!([{"path": "/api", "service": service}]);
        }
        nodes.push(json!({"id": id, "kind": "ingress", "spec": spec}));
        add_edge(&mut edges, id, service, "exposes");
    }
    for _ in 0..random.below(6) {
        let kind = random.pick(&["connects", "connects", "mounts", "mounts", "depends_on"]);
        let (sources, targets): (&[&str], &[&str]) = match kind {
            "connects" => (&workloads, &["service", "database"]),
            "mounts" => (&["volume", "config", "secret_ref"], &runnable),
            _ => (&runnable, &runnable),
        };
        let (from, to) = (ids_of(&nodes, sources), ids_of(&nodes, targets));
        if from.is_empty() || to.is_empty() {
            continue;
        }
        let (from, to) = (random.pick(&from), random.pick(&to));
        // Dependencies point backwards in the document, so they rarely form cycles.
        let position = |id: &str| nodes.iter().position(|n| n["id"] == id);
        if kind == "depends_on" && position(&from) < position(&to) {
            add_edge(&mut edges, to, from, kind);
        } else {
            add_edge(&mut edges, from, to, kind);
        }
    }
    json!({"nodes": nodes, "edges": edges})
}

/// The property this module exists for: a graph that validates (and so may be stored) always
/// generates. Random graphs probe the rules' edges; a failure prints the graph.
#[test]
fn graphs_that_validate_always_generate() {
    let mut random = Random(0x9e37_79b9_7f4a_7c15);
    let (mut valid, mut refused) = (0, 0);
    for _ in 0..5_000 {
        let document = random_graph(&mut random);
        let Ok(graph) = validate(&document, "") else {
            refused += 1;
            continue;
        };
        valid += 1;
        let objects = generate(&graph, &target()).unwrap_or_else(|e| {
            panic!(
                "validates but does not generate: {e}\n{}",
                serde_json::to_string_pretty(&document).unwrap_or_default()
            )
        });
        render(&objects, &target()).unwrap();
    }
    // Both sides must be exercised for the property to say anything.
    eprintln!("{valid} random graphs validated and generated, {refused} were refused");
    assert!(
        valid > 1_000 && refused > 1_000,
        "{valid} valid, {refused} refused"
    );
}

#[test]
fn odd_graphs_are_refused_or_generated_but_never_panic() {
    let odd = [
        json!({"nodes": [], "edges": []}),
        json!({"nodes": [{"id": "a", "kind": "service", "spec": {"image": "x:1"}}],
               "edges": [{"from": "a", "to": "a", "kind": "depends_on"}]}),
        json!({"nodes": [{"id": "a", "kind": "service", "spec": {"image": "x:1",
               "ports": [{"port": 0}]}}], "edges": []}),
        json!({"nodes": [{"id": "A_b", "kind": "config", "spec": {"data": {}}}], "edges": []}),
        json!({"nodes": [{"id": "a", "kind": "service", "spec": {"image": "x:1",
               "ports": [{"port": 53, "protocol": "UDP"}]}}], "edges": []}),
        json!({"nodes": [{"id": "a", "kind": "service", "spec": {"image": "x:1",
               "autoscaling": {"min_replicas": 0, "max_replicas": 4294967295u32}}}], "edges": []}),
        json!({"nodes": [{"id": "a", "kind": "service", "spec": {"image": "x:1",
               "replicas": 4294967295u32}}], "edges": []}),
        json!({"nodes": [{"id": "i", "kind": "ingress", "spec": {"host": "x.example.com"}}],
               "edges": []}),
        json!({"nodes": [{"id": "db", "kind": "database", "spec": {"engine": "postgres",
               "version": "latest", "storage": "1Gi", "credentials": "db"}}], "edges": []}),
        json!({"nodes": [
            {"id": "s", "kind": "secret_ref", "spec": {"secret_name": "s", "keys": ["1bad"]}},
            {"id": "a", "kind": "job", "spec": {"image": "x:1"}}],
            "edges": [{"from": "s", "to": "a", "kind": "mounts"}]}),
        json!({"nodes": [
            {"id": "tmp", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/tmp"}},
            {"id": "a", "kind": "job", "spec": {"image": "x:1"}}],
            "edges": [{"from": "tmp", "to": "a", "kind": "mounts"}]}),
    ];
    for document in odd {
        let graph = raw(document.clone());
        if let Ok(objects) = generate(&graph, &target()) {
            render(&objects, &target()).unwrap();
        }
    }
    // An empty graph still locks the namespace down.
    let (objects, _) = build(&raw(json!({"nodes": [], "edges": []})));
    assert_eq!(names_of(&objects, "NetworkPolicy").len(), 2);
    // The project is the namespace, so it must be a DNS label.
    let bad_target = Target {
        project: "Acme Shop".to_owned(),
    };
    assert!(generate(&example("three-tier"), &bad_target).is_err());
}

#[test]
fn the_benchmark_graph_is_valid_and_generates() {
    let document = gantry::bench::synthetic_graph(250);
    let graph = parse(&document);
    assert_eq!(graph.nodes.len(), 250);
    let (objects, files) = build(&graph);
    assert!(objects.len() > 250);
    assert_eq!(files.len(), objects.len() + 1);
}
