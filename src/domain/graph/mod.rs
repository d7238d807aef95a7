//! The infrastructure graph stored per project version: typed nodes joined by typed edges.
//!
//! A graph is `{"nodes": [...], "edges": [...]}`. Every node has an `id` (a DNS-1123 label, which
//! becomes the name of the Kubernetes objects it generates), a `kind` and a `spec` whose shape the
//! kind decides. Edges join two nodes by id with a `kind`. [`validate`] turns a JSON document into
//! a [`Graph`] or into every problem found, each with a JSON Pointer to the offending field.
//!
//! The model lives in `model` (and what generated objects use in `generated`); validation runs
//! in passes, one module per concern: `structure` (envelope, node fields and ids), `spec` (each
//! kind's own rules), `edges`, `references` (fields naming other nodes), `refusals` (what the
//! templates would refuse) and `cycles`. Kubernetes' own value rules are in [`crate::domain::k8s`].

mod cycles;
mod edges;
mod generated;
mod model;
mod problems;
mod references;
mod refusals;
mod spec;
mod structure;
#[cfg(test)]
mod test_support;

pub use generated::{
    connects_env, database_data_claim, DefaultRequests, BACKUP_SUFFIX, DATA_VOLUME,
    MAX_CRON_JOB_NAME, MAX_STATEFUL_SET_NAME, PGDATA, PGPASSWORD, REDISCLI_AUTH, SHM_PATH,
    SHM_VOLUME, TMP_PATH, TMP_VOLUME, WORKLOAD_REQUESTS,
};
pub use model::{
    empty_graph, Autoscaling, ConfigSpec, CronJobSpec, DatabaseBackup, DatabaseEngine,
    DatabaseSpec, Edge, EdgeKind, Graph, IngressPath, IngressSpec, IngressTls, JobSpec, Node,
    NodeBody, Port, Probes, Resources, SecretRefSpec, ServiceSpec, VolumeSpec, EDGE_KINDS,
    NODE_KINDS,
};
pub use problems::{escape_pointer, typed};
pub use spec::check_limit;
pub use structure::{check_envelope, check_node_id};
// The Kubernetes value rules lived here before `domain::k8s`; callers still find them here.
pub use crate::domain::k8s::cron::check_cron;
pub use crate::domain::k8s::names::{
    check_data_key, check_dns1035_label, check_dns_subdomain, check_env_name, check_env_var_name,
    check_host, check_image, check_image_tag, check_mount_path, check_port_name, check_url_path,
};
pub use crate::domain::k8s::quantity::{
    check_quantity, check_size, compare_quantities, is_quantity, QuantityValue,
};

use crate::error::FieldError;
use cycles::check_dependency_cycles;
use edges::{check_mount_paths, read_edges};
use problems::{NodeIndex, Problems};
use references::check_references;
use refusals::{check_generated_names, check_pods};
use serde_json::Value;
use structure::{build_graph, read_nodes};

/// Most nodes a graph may have.
pub const MAX_NODES: usize = 5_000;
/// Most edges a graph may have.
pub const MAX_EDGES: usize = 20_000;
/// Most replicas a service may ask for (fixed or autoscaled).
pub const MAX_REPLICAS: u32 = 1_000;
/// Most retries a job may ask for.
pub const MAX_BACKOFF_LIMIT: u32 = 100;
/// Most days of database backups kept.
pub const MAX_RETENTION_DAYS: u32 = 3_650;
/// Most problems [`validate`] returns: past it, the first `MAX_PROBLEMS - 1` and one more
/// saying how many were left out, so that a broken 5 000-node graph does not answer megabytes.
pub const MAX_PROBLEMS: usize = 100;

/// Parses and checks a graph document. `prefix` is prepended to every pointer (`/graph` for a
/// request body's `graph` field, empty for a bare document). On failure every problem found is
/// returned, ordered by the node or edge it concerns, up to [`MAX_PROBLEMS`]: when there are
/// more, the last entry, at `prefix` itself, says how many more there are.
///
/// A graph that validates is one the `templates` engine generates: every rule it would refuse
/// is checked here, so a stored version always generates.
pub fn validate(document: &Value, prefix: &str) -> Result<Graph, Vec<FieldError>> {
    validate_all(document, prefix).map_err(|problems| cap_problems(problems, prefix))
}

/// At most [`MAX_PROBLEMS`] of `problems`, the last one counting those left out.
fn cap_problems(mut problems: Vec<FieldError>, prefix: &str) -> Vec<FieldError> {
    if problems.len() <= MAX_PROBLEMS {
        return problems;
    }
    let kept = MAX_PROBLEMS - 1;
    let hidden = problems.len() - kept;
    problems.truncate(kept);
    problems.push(FieldError::new(
        prefix,
        format!("{hidden} more problems not shown; fix these and validate again"),
    ));
    problems
}

/// [`validate`] without the cap on the number of problems.
fn validate_all(document: &Value, prefix: &str) -> Result<Graph, Vec<FieldError>> {
    check_envelope(document, prefix)?;
    // check_envelope guarantees two arrays of objects; the fallbacks are never taken.
    let empty = Vec::new();
    let node_values = document
        .get("nodes")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let edge_values = document
        .get("edges")
        .and_then(Value::as_array)
        .unwrap_or(&empty);

    let mut problems = Problems::new(prefix);
    // Refuse oversized graphs before doing work proportional to their size.
    if node_values.len() > MAX_NODES {
        problems.root("/nodes", format!("at most {MAX_NODES} nodes are allowed"));
    }
    if edge_values.len() > MAX_EDGES {
        problems.root("/edges", format!("at most {MAX_EDGES} edges are allowed"));
    }
    if !problems.is_empty() {
        return Err(problems.into_sorted());
    }

    let nodes = read_nodes(node_values, &mut problems);
    let index = NodeIndex::new(&nodes);
    check_generated_names(&nodes, &mut problems);
    let edges = read_edges(edge_values, &nodes, &index, &mut problems);
    check_mount_paths(&nodes, &edges, &mut problems);
    check_references(&nodes, &edges, &index, &mut problems);
    check_pods(&nodes, &edges, &index, &mut problems);
    check_dependency_cycles(&nodes, &edges, &mut problems);

    if !problems.is_empty() {
        return Err(problems.into_sorted());
    }
    build_graph(nodes, &edges).ok_or_else(|| {
        // Every node and edge parsed without a problem, so this cannot happen; answer with a
        // problem rather than panic if it ever does.
        vec![FieldError::new(
            if prefix.is_empty() { "/" } else { prefix },
            "the graph could not be assembled",
        )]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::graph::test_support::{problems, realistic};
    use serde_json::json;

    #[test]
    fn empty_graph_is_valid() {
        let graph = validate(&empty_graph(), "/graph").expect("valid");
        assert!(graph.nodes.is_empty() && graph.edges.is_empty());
    }

    #[test]
    fn realistic_graph_is_valid_and_typed() {
        let graph = validate(&realistic(), "/graph").unwrap_or_else(|e| panic!("{e:#?}"));
        assert_eq!(graph.nodes.len(), 7);
        assert_eq!(graph.edges.len(), 10);
        let Some(NodeBody::Database(db)) = graph.node("db").map(|n| &n.body) else {
            panic!("db is a database");
        };
        assert_eq!(db.engine, DatabaseEngine::Postgres);
        assert_eq!(db.credentials.as_deref(), Some("db-credentials"));
        assert_eq!(graph.edges[2].port, Some(8080));
        assert_eq!(graph.edges[8].kind, EdgeKind::DependsOn);
        // The typed graph serializes back to a document that validates to the same graph.
        let round_trip = serde_json::to_value(&graph).expect("serialize");
        assert_eq!(validate(&round_trip, ""), Ok(graph));
    }

    #[test]
    fn pointers_carry_the_prefix() {
        let document = json!({"nodes": [{"id": "Web", "kind": "service",
                                         "spec": {"image": "nginx"}}], "edges": []});
        let errors = validate(&document, "/graph").unwrap_err();
        assert_eq!(errors[0].pointer, "/graph/nodes/0/id");
    }

    #[test]
    fn collects_problems_of_every_node_and_edge() {
        let document = json!({"nodes": [
            {"id": "A", "kind": "service", "spec": {"image": "nginx"}},
            {"id": "b", "kind": "nope", "spec": {}}
        ], "edges": [
            {"from": "A", "to": "ghost", "kind": "connects"},
            {"from": "b", "to": "A", "kind": "links"}
        ]});
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            pointers,
            [
                "/nodes/0/id",
                "/nodes/1/kind",
                "/edges/0/to",
                "/edges/1/kind"
            ]
        );
    }

    #[test]
    fn the_largest_graphs_validate_in_one_pass() {
        // 1 000 ingresses exposing 4 services each, and 16 000 connects: the limits, reached.
        let ingresses = 1_000;
        let services = MAX_NODES - ingresses;
        let mut nodes: Vec<Value> = Vec::with_capacity(MAX_NODES);
        let mut edges: Vec<Value> = Vec::with_capacity(MAX_EDGES);
        for k in 0..ingresses {
            let paths: Vec<Value> = (1..4)
                .map(|n| json!({"path": format!("/p{n}"), "service": format!("s{}", 4 * k + n)}))
                .collect();
            nodes.push(json!({"id": format!("i{k}"), "kind": "ingress",
                              "spec": {"host": format!("h{k}.example.com"), "paths": paths}}));
            for n in 0..4 {
                edges.push(
                    json!({"from": format!("i{k}"), "to": format!("s{}", 4 * k + n),
                                  "kind": "exposes"}),
                );
            }
        }
        for s in 0..services {
            nodes.push(json!({"id": format!("s{s}"), "kind": "service",
                              "spec": {"image": "app:1", "ports": [{"port": 8080}]}}));
            for step in 1..=4 {
                edges.push(
                    json!({"from": format!("s{s}"), "to": format!("s{}", (s + step) % services),
                                  "kind": "connects"}),
                );
            }
        }
        assert_eq!((nodes.len(), edges.len()), (MAX_NODES, MAX_EDGES));
        let graph = validate(&json!({"nodes": nodes, "edges": edges}), "")
            .unwrap_or_else(|e| panic!("{:#?}", &e[..e.len().min(5)]));
        assert_eq!(graph.edges.len(), MAX_EDGES);
    }

    #[test]
    fn size_limits() {
        let nodes: Vec<Value> = (0..=MAX_NODES).map(|_| json!({})).collect();
        let edges: Vec<Value> = (0..=MAX_EDGES).map(|_| json!({})).collect();
        let found = problems(&json!({"nodes": nodes, "edges": edges}));
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].0, "/nodes");
        assert!(found[0].1.contains("5000"));
        assert_eq!(found[1].0, "/edges");
        assert!(found[1].1.contains("20000"));
    }

    #[test]
    fn problems_are_capped() {
        let nodes: Vec<Value> = (0..150)
            .map(|n| json!({"id": format!("N{n}"), "kind": "config", "spec": {"data": {}}}))
            .collect();
        let document = json!({"nodes": nodes, "edges": []});
        let errors = validate(&document, "/graph").unwrap_err();
        assert_eq!(errors.len(), MAX_PROBLEMS);
        assert_eq!(errors[MAX_PROBLEMS - 2].pointer, "/graph/nodes/98/id");
        let last = &errors[MAX_PROBLEMS - 1];
        assert_eq!(last.pointer, "/graph");
        assert!(
            last.detail.starts_with("51 more problems not shown"),
            "{last:?}"
        );
        // A bare document: the pointer of the whole document is empty.
        let errors = validate(&document, "").unwrap_err();
        assert_eq!(errors.last().map(|e| e.pointer.as_str()), Some(""));
        // Exactly the cap: every problem is shown.
        let nodes: Vec<Value> = (0..MAX_PROBLEMS)
            .map(|n| json!({"id": format!("N{n}"), "kind": "config", "spec": {"data": {}}}))
            .collect();
        let errors = validate(&json!({"nodes": nodes, "edges": []}), "").unwrap_err();
        assert_eq!(errors.len(), MAX_PROBLEMS);
        assert!(errors.iter().all(|e| e.pointer.ends_with("/id")));
        // The envelope's problems are capped too.
        let errors = validate(&json!({"nodes": vec![1; 300], "edges": []}), "").unwrap_err();
        assert_eq!(errors.len(), MAX_PROBLEMS);
    }

    #[test]
    fn example_graphs_validate() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/graphs");
        let mut checked = 0;
        for entry in std::fs::read_dir(&dir).expect("examples/graphs exists") {
            let path = entry.expect("directory entry").path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("readable");
            let document: Value = serde_json::from_str(&text).expect("JSON");
            if let Err(errors) = validate(&document, "") {
                panic!("{} does not validate: {errors:#?}", path.display());
            }
            checked += 1;
        }
        assert!(checked >= 3, "expected the example graphs, found {checked}");
    }

    #[test]
    fn readme_example_validates() {
        let readme = include_str!("../../../README.md");
        let section = readme
            .split("\n## Infrastructure graph\n")
            .nth(1)
            .expect("README has the section");
        let example = section
            .split("```json\n")
            .nth(1)
            .and_then(|rest| rest.split("```").next())
            .expect("the section opens with a JSON example");
        let document: Value = serde_json::from_str(example).expect("the example is JSON");
        if let Err(errors) = validate(&document, "") {
            panic!("the README example does not validate: {errors:#?}");
        }
    }

    #[test]
    fn never_panics_on_odd_documents() {
        let odd = [
            json!(null),
            json!("graph"),
            json!({"nodes": null, "edges": null}),
            json!({"nodes": [{}], "edges": [{}]}),
            json!({"nodes": [{"id": null, "kind": null, "spec": null}],
                   "edges": [{"from": null, "to": null, "kind": null, "port": null}]}),
            json!({"nodes": [{"id": "", "kind": "", "spec": []}], "edges": [{"port": -1}]}),
            json!({"nodes": [{"id": "ä", "kind": "volume", "spec": {"size": "1ä",
                                                                    "mount_path": "/ä"}}],
                   "edges": [{"from": "ä", "to": "ä", "kind": "mounts", "port": 1.5}]}),
            json!({"nodes": [{"id": "a", "kind": "service",
                              "spec": {"image": "x", "env": {"": ""}, "ports": [{"port": 1,
                                       "name": ""}]}}],
                   "edges": [{"from": "a", "to": "a", "kind": "depends_on", "port": 99999}]}),
        ];
        for document in odd {
            assert!(validate(&document, "/graph").is_err(), "{document}");
        }
    }
}
