//! The graph's shape: the envelope, each node's fields, id and kind, its spec parsed into the
//! kind's type, and the typed graph assembled at the end.

use super::edges::EdgeEntry;
use super::generated::{BACKUP_SUFFIX, MAX_CRON_JOB_NAME, MAX_STATEFUL_SET_NAME};
use super::model::{Edge, Graph, Node, NodeBody, NODE_KINDS};
use super::problems::{escape_pointer, typed, NodeEntry, Problems};
use super::spec::check_spec;
use crate::domain::k8s::names::check_dns1035_label;
use crate::domain::DnsLabel;
use crate::error::FieldError;
use serde_json::Value;
use std::collections::HashMap;

/// The fields a node may have.
const NODE_FIELDS: [&str; 3] = ["id", "kind", "spec"];
/// The fields an edge may have.
pub(super) const EDGE_FIELDS: [&str; 4] = ["from", "to", "kind", "port"];

/// First pass over the nodes: fields, ids, kinds, and each spec parsed into its kind's type.
pub(super) fn read_nodes<'a>(values: &'a [Value], problems: &mut Problems) -> Vec<NodeEntry<'a>> {
    let mut first_with_id: HashMap<&str, usize> = HashMap::with_capacity(values.len());
    let mut nodes = Vec::with_capacity(values.len());
    for (i, value) in values.iter().enumerate() {
        let Some(object) = value.as_object() else {
            // Unreachable after check_envelope; keep the indices aligned regardless.
            nodes.push(NodeEntry {
                id: None,
                kind: None,
                body: None,
            });
            continue;
        };
        for key in object.keys() {
            if !NODE_FIELDS.contains(&key.as_str()) {
                problems.node(
                    i,
                    &format!("/{}", escape_pointer(key)),
                    "unknown field; a node has only `id`, `kind` and `spec`",
                );
            }
        }

        let id = match object.get("id") {
            None => {
                problems.node(i, "/id", "is required");
                None
            }
            Some(Value::String(id)) => {
                if let Err(detail) = DnsLabel::parse(id) {
                    problems.node(i, "/id", detail);
                }
                match first_with_id.get(id.as_str()) {
                    Some(first) => problems.node(
                        i,
                        "/id",
                        format!("duplicate id `{id}`: node {first} already has it"),
                    ),
                    None => {
                        first_with_id.insert(id, i);
                    }
                }
                // Keep even a malformed id so edges naming it do not add follow-on problems.
                Some(id.as_str())
            }
            Some(_) => {
                problems.node(i, "/id", "must be a string");
                None
            }
        };

        let kind = match object.get("kind") {
            None => {
                problems.node(i, "/kind", "is required");
                None
            }
            Some(Value::String(kind)) => {
                let known = NODE_KINDS.iter().copied().find(|k| k == kind);
                if known.is_none() {
                    problems.node(
                        i,
                        "/kind",
                        format!("unknown kind `{kind}`; one of: {}", NODE_KINDS.join(", ")),
                    );
                }
                known
            }
            Some(_) => {
                problems.node(i, "/kind", "must be a string");
                None
            }
        };

        let body = match (kind, object.get("spec")) {
            (_, None) => {
                problems.node(i, "/spec", "is required");
                None
            }
            (None, Some(_)) => None,
            (Some(kind), Some(spec)) => match parse_spec(kind, spec) {
                Ok(body) => {
                    check_spec(i, &body, problems);
                    Some(body)
                }
                Err((suffix, detail)) => {
                    problems.node(i, &format!("/spec{suffix}"), detail);
                    None
                }
            },
        };
        if let (Some(id), Some(body)) = (id, &body) {
            // A malformed label is reported above; only the kind's own limits are left.
            if DnsLabel::parse(id).is_ok() {
                problems.check_node(i, "/id", check_node_id(id, body));
            }
        }
        nodes.push(NodeEntry { id, kind, body });
    }
    nodes
}

/// A node id: a DNS-1123 label, plus what the objects the node's kind becomes ask of it. A
/// service with ports and a database name a Kubernetes Service (a DNS-1035 label: it starts
/// with a letter); CronJob and StatefulSet names are shorter than labels, because controllers
/// derive longer names and labels from them.
pub fn check_node_id(id: &str, body: &NodeBody) -> Result<(), String> {
    DnsLabel::parse(id)?;
    let kind = body.kind();
    let too_long = |max: usize, why: &str| {
        Err(format!(
            "must be at most {max} characters for a {kind} (this one has {}): {why}",
            id.len()
        ))
    };
    match body {
        NodeBody::Service(spec) if !spec.ports.is_empty() => check_dns1035_label(id),
        NodeBody::CronJob(_) if id.len() > MAX_CRON_JOB_NAME => too_long(
            MAX_CRON_JOB_NAME,
            "the CronJob controller appends 11 characters to name its Jobs",
        ),
        NodeBody::Database(spec) => {
            check_dns1035_label(id)?;
            if spec.backup.is_some() && id.len() + BACKUP_SUFFIX.len() > MAX_CRON_JOB_NAME {
                too_long(
                    MAX_CRON_JOB_NAME - BACKUP_SUFFIX.len(),
                    "its backup CronJob `<id>-backup` must fit in 52 characters",
                )
            } else if id.len() > MAX_STATEFUL_SET_NAME {
                too_long(
                    MAX_STATEFUL_SET_NAME,
                    "the StatefulSet controller labels its pods with the name plus 11 characters",
                )
            } else {
                Ok(())
            }
        }
        _ => Ok(()),
    }
}

/// Deserializes `spec` as the spec of `kind`; on failure the pointer below `spec` and the reason.
fn parse_spec(kind: &str, spec: &Value) -> Result<NodeBody, (String, String)> {
    match kind {
        "service" => typed(spec).map(NodeBody::Service),
        "job" => typed(spec).map(NodeBody::Job),
        "cron_job" => typed(spec).map(NodeBody::CronJob),
        "database" => typed(spec).map(NodeBody::Database),
        "config" => typed(spec).map(NodeBody::Config),
        "secret_ref" => typed(spec).map(NodeBody::SecretRef),
        "volume" => typed(spec).map(NodeBody::Volume),
        "ingress" => typed(spec).map(NodeBody::Ingress),
        other => Err((String::new(), format!("unknown kind `{other}`"))),
    }
}

/// Assembles the typed graph once every node and edge is known to be sound.
pub(super) fn build_graph(nodes: Vec<NodeEntry>, edges: &[Option<EdgeEntry>]) -> Option<Graph> {
    let ids: Vec<Option<&str>> = nodes.iter().map(|n| n.id).collect();
    let id = |i: usize| ids.get(i).copied().flatten().map(str::to_owned);
    let typed_edges = edges
        .iter()
        .map(|edge| {
            let edge = edge.as_ref()?;
            Some(Edge {
                from: id(edge.from)?,
                to: id(edge.to)?,
                kind: edge.kind,
                port: edge.port,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    let typed_nodes = nodes
        .into_iter()
        .map(|node| {
            Some(Node {
                id: node.id?.to_owned(),
                body: node.body?,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(Graph {
        nodes: typed_nodes,
        edges: typed_edges,
    })
}

/// Checks the graph envelope; pointers start with `prefix`.
pub fn check_envelope(graph: &Value, prefix: &str) -> Result<(), Vec<FieldError>> {
    let Some(object) = graph.as_object() else {
        return Err(vec![FieldError::new(
            if prefix.is_empty() { "/" } else { prefix },
            "must be an object with `nodes` and `edges` arrays",
        )]);
    };
    let mut errors = Vec::new();
    for key in ["nodes", "edges"] {
        match object.get(key) {
            Some(Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    if !item.is_object() {
                        errors.push(FieldError::new(
                            format!("{prefix}/{key}/{i}"),
                            "must be an object",
                        ));
                    }
                }
            }
            Some(_) => errors.push(FieldError::new(
                format!("{prefix}/{key}"),
                "must be an array",
            )),
            None => errors.push(FieldError::new(format!("{prefix}/{key}"), "is required")),
        }
    }
    for key in object.keys() {
        if key != "nodes" && key != "edges" {
            errors.push(FieldError::new(
                format!("{prefix}/{}", escape_pointer(key)),
                "unknown field; a graph has only `nodes` and `edges`",
            ));
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::graph::empty_graph;
    use crate::domain::graph::test_support::{assert_problem, problems, service};
    use crate::domain::graph::validate;
    use serde_json::json;

    #[test]
    fn envelope() {
        assert!(check_envelope(&empty_graph(), "/graph").is_ok());
        let errors = check_envelope(&json!({"nodes": {}, "extra/x": 1}), "/graph").unwrap_err();
        let pointers: Vec<_> = errors.iter().map(|e| e.pointer.as_str()).collect();
        assert_eq!(
            pointers,
            ["/graph/nodes", "/graph/edges", "/graph/extra~1x"]
        );
        assert!(check_envelope(&json!([]), "/graph").is_err());
        assert!(check_envelope(&json!({"nodes": [1], "edges": []}), "/graph").is_err());
        let errors = validate(&json!({"nodes": [], "edges": [[]]}), "/graph").unwrap_err();
        assert_eq!(errors[0].pointer, "/graph/edges/0");
    }

    #[test]
    fn node_ids() {
        let spec = json!({"image": "nginx"});
        let document = json!({"nodes": [
            {"kind": "service", "spec": spec},
            {"id": 7, "kind": "service", "spec": spec},
            {"id": "Web_1", "kind": "service", "spec": spec},
            {"id": "web", "kind": "service", "spec": spec},
            {"id": "web", "kind": "service", "spec": spec},
            {"id": "x".repeat(64), "kind": "service", "spec": spec}
        ], "edges": []});
        assert_problem(&document, "/nodes/0/id", "required");
        assert_problem(&document, "/nodes/1/id", "string");
        assert_problem(&document, "/nodes/2/id", "DNS-1123");
        assert_problem(&document, "/nodes/4/id", "duplicate id `web`: node 3");
        assert_problem(&document, "/nodes/5/id", "63");
        assert!(!problems(&document).iter().any(|(p, _)| p == "/nodes/3/id"));
    }

    #[test]
    fn node_kinds_and_fields() {
        let document = json!({"nodes": [
            {"id": "a", "kind": "postgres", "spec": {}},
            {"id": "b", "spec": {}},
            {"id": "c", "kind": 1, "spec": {}},
            {"id": "d", "kind": "service"},
            {"id": "e", "kind": "service", "spec": {"image": "nginx"}, "name/x": "e"}
        ], "edges": []});
        assert_problem(
            &document,
            "/nodes/0/kind",
            "unknown kind `postgres`; one of: service",
        );
        assert_problem(&document, "/nodes/1/kind", "required");
        assert_problem(&document, "/nodes/2/kind", "string");
        assert_problem(&document, "/nodes/3/spec", "required");
        assert_problem(&document, "/nodes/4/name~1x", "unknown field");
    }

    #[test]
    fn spec_shape_errors_point_into_the_spec() {
        assert_problem(&service(json!({})), "/nodes/0/spec/image", "missing field");
        assert_problem(
            &service(json!({"image": "nginx", "replica": 2})),
            "/nodes/0/spec/replica",
            "unknown field",
        );
        assert_problem(
            &service(json!({"image": "nginx", "ports": [{"port": "80"}]})),
            "/nodes/0/spec/ports/0/port",
            "invalid type",
        );
        assert_problem(
            &service(json!({"image": "nginx", "ports": [{"port": 70000}]})),
            "/nodes/0/spec/ports/0/port",
            "u16",
        );
        assert_problem(&service(json!("nginx")), "/nodes/0/spec", "invalid type");
        let document = json!({"nodes": [{"id": "db", "kind": "database",
            "spec": {"engine": "mongo", "version": "7", "storage": "1Gi"}}], "edges": []});
        assert_problem(&document, "/nodes/0/spec/engine", "unknown variant `mongo`");
    }

    #[test]
    fn ids_fit_the_objects_they_name() {
        let document = json!({"nodes": [
            {"id": "1api", "kind": "service", "spec": {"image": "x", "ports": [{"port": 80}]}},
            {"id": "1worker", "kind": "service", "spec": {"image": "x"}},
            {"id": "9db", "kind": "database", "spec": {"engine": "redis", "version": "7",
                                                       "storage": "1Gi"}},
            {"id": "r".repeat(53), "kind": "cron_job", "spec": {"image": "x",
                                                                "schedule": "@daily"}},
            {"id": "r".repeat(52), "kind": "cron_job", "spec": {"image": "x",
                                                                "schedule": "@daily"}},
            {"id": "d".repeat(46), "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi", "backup": {"schedule": "@daily"}}},
            {"id": "e".repeat(45), "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi", "backup": {"schedule": "@daily"}}},
            {"id": "f".repeat(53), "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi"}},
            {"id": "2", "kind": "job", "spec": {"image": "x"}}
        ], "edges": []});
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            pointers,
            [
                "/nodes/0/id",
                "/nodes/2/id",
                "/nodes/3/id",
                "/nodes/5/id",
                "/nodes/7/id"
            ]
        );
        assert_problem(&document, "/nodes/0/id", "start with a letter");
        assert_problem(
            &document,
            "/nodes/3/id",
            "at most 52 characters for a cron_job",
        );
        assert_problem(
            &document,
            "/nodes/5/id",
            "at most 45 characters for a database",
        );
        assert_problem(
            &document,
            "/nodes/7/id",
            "at most 52 characters for a database",
        );
    }
}
