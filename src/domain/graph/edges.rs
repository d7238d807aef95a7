//! The edge pass: each edge's fields, endpoints, pairing and ports, and mount paths per workload.

use super::model::{EdgeKind, NodeBody, EDGE_KINDS};
use super::problems::{either, escape_pointer, with_article, NodeEntry, NodeIndex, Problems};
use super::structure::EDGE_FIELDS;
use serde_json::Value;
use std::collections::HashMap;

/// What the edge pass learnt about one edge.
pub(super) struct EdgeEntry {
    pub(super) from: usize,
    pub(super) to: usize,
    pub(super) kind: EdgeKind,
    pub(super) port: Option<u16>,
    /// No problem was found with this edge, so later passes may rely on it.
    pub(super) sound: bool,
}

/// Second pass: each edge's fields, endpoints, pairing and ports.
pub(super) fn read_edges(
    values: &[Value],
    nodes: &[NodeEntry],
    index: &NodeIndex,
    problems: &mut Problems,
) -> Vec<Option<EdgeEntry>> {
    let mut first_edge: HashMap<(usize, usize, &str), usize> = HashMap::new();
    let mut edges = Vec::with_capacity(values.len());
    for (j, value) in values.iter().enumerate() {
        let Some(object) = value.as_object() else {
            edges.push(None);
            continue;
        };
        let mut sound = true;
        for key in object.keys() {
            if !EDGE_FIELDS.contains(&key.as_str()) {
                problems.edge(
                    j,
                    &format!("/{}", escape_pointer(key)),
                    "unknown field; an edge has only `from`, `to`, `kind` and `port`",
                );
                sound = false;
            }
        }
        let mut endpoint = |field: &str| match object.get(field) {
            None => {
                problems.edge(j, &format!("/{field}"), "is required");
                None
            }
            Some(Value::String(id)) => {
                let found = index.get(id);
                if found.is_none() {
                    problems.edge(j, &format!("/{field}"), format!("no node `{id}`"));
                }
                found
            }
            Some(_) => {
                problems.edge(j, &format!("/{field}"), "must be a string");
                None
            }
        };
        let from = endpoint("from");
        let to = endpoint("to");
        let kind = match object.get("kind") {
            None => {
                problems.edge(j, "/kind", "is required");
                None
            }
            Some(Value::String(kind)) => {
                let parsed = EdgeKind::parse(kind);
                if parsed.is_none() {
                    problems.edge(
                        j,
                        "/kind",
                        format!("unknown kind `{kind}`; one of: {}", EDGE_KINDS.join(", ")),
                    );
                }
                parsed
            }
            Some(_) => {
                problems.edge(j, "/kind", "must be a string");
                None
            }
        };
        let port = match object.get("port") {
            None | Some(Value::Null) => None,
            Some(value) => match value.as_u64().and_then(|n| u16::try_from(n).ok()) {
                Some(port) if port > 0 => {
                    if kind.is_some_and(|k| k != EdgeKind::Connects) {
                        problems.edge(j, "/port", "only `connects` edges take a port");
                        sound = false;
                    }
                    Some(port)
                }
                _ => {
                    problems.edge(j, "/port", "must be an integer from 1 to 65535");
                    sound = false;
                    None
                }
            },
        };
        let (Some(from), Some(to), Some(kind)) = (from, to, kind) else {
            edges.push(None);
            continue;
        };
        let mut entry = EdgeEntry {
            from,
            to,
            kind,
            port,
            sound: false,
        };
        let from_id = nodes.get(from).and_then(|n| n.id).unwrap_or_default();
        let to_id = nodes.get(to).and_then(|n| n.id).unwrap_or_default();
        if from == to {
            problems.edge(
                j,
                "",
                format!("an edge cannot join node `{from_id}` to itself"),
            );
            edges.push(Some(entry));
            continue;
        }
        if let Some(first) = first_edge.get(&(from, to, kind.as_str())) {
            problems.edge(
                j,
                "",
                format!(
                    "duplicate edge: edge {first} already joins `{from_id}` to `{to_id}` with `{}`",
                    kind.as_str()
                ),
            );
            edges.push(Some(entry));
            continue;
        }
        first_edge.insert((from, to, kind.as_str()), j);
        let from_node = nodes.get(from);
        let to_node = nodes.get(to);
        let (Some(from_kind), Some(to_kind)) =
            (from_node.and_then(|n| n.kind), to_node.and_then(|n| n.kind))
        else {
            // A node with a bad kind is reported already; its edges cannot be judged.
            edges.push(Some(entry));
            continue;
        };
        let (sources, targets) = kind.pairing();
        if !sources.contains(&from_kind) || !targets.contains(&to_kind) {
            problems.edge(
                j,
                "/kind",
                format!(
                    "a `{}` edge goes from {} to {}, not from {} (`{from_id}`) to {} (`{to_id}`)",
                    kind.as_str(),
                    either(sources),
                    either(targets),
                    with_article(from_kind),
                    with_article(to_kind)
                ),
            );
            edges.push(Some(entry));
            continue;
        }
        if matches!(kind, EdgeKind::Connects | EdgeKind::Exposes) {
            if let Some(target_ports) = to_node.and_then(|n| n.body.as_ref()).map(listening_ports) {
                if target_ports.is_empty() {
                    problems.edge(
                        j,
                        "/to",
                        format!(
                            "`{to_id}` declares no ports; a `{}` target needs one",
                            kind.as_str()
                        ),
                    );
                    sound = false;
                } else if let Some(port) = port {
                    if !target_ports.contains(&port) {
                        let list: Vec<String> = target_ports.iter().map(u16::to_string).collect();
                        problems.edge(
                            j,
                            "/port",
                            format!(
                                "`{to_id}` does not listen on {port}; its ports: {}",
                                list.join(", ")
                            ),
                        );
                        sound = false;
                    }
                }
            }
        }
        if kind == EdgeKind::Exposes {
            if let Some(NodeBody::Service(spec)) = to_node.and_then(|n| n.body.as_ref()) {
                // The ingress routes HTTP to the main (first) port; UDP cannot carry it.
                if let Some(first) = spec
                    .ports
                    .first()
                    .filter(|port| port.protocol.as_deref() == Some("UDP"))
                {
                    problems.edge(
                        j,
                        "/to",
                        format!(
                            "`{to_id}`'s first port ({}/UDP) is the one an ingress routes HTTP \
                             to; list a TCP port first",
                            first.port
                        ),
                    );
                    sound = false;
                }
            }
        }
        entry.sound = sound;
        edges.push(Some(entry));
    }
    edges
}

/// The ports a node can be reached on (empty for kinds that serve nothing).
fn listening_ports(body: &NodeBody) -> Vec<u16> {
    match body {
        NodeBody::Service(spec) => spec.ports.iter().map(|p| p.port).collect(),
        NodeBody::Database(spec) => vec![spec.engine.port()],
        _ => Vec::new(),
    }
}

/// Two `mounts` onto one workload must not share a mount path.
pub(super) fn check_mount_paths(
    nodes: &[NodeEntry],
    edges: &[Option<EdgeEntry>],
    p: &mut Problems,
) {
    let mut first_mount: HashMap<(usize, &str), usize> = HashMap::new();
    for (j, edge) in edges.iter().enumerate() {
        let Some(edge) = edge
            .as_ref()
            .filter(|e| e.sound && e.kind == EdgeKind::Mounts)
        else {
            continue;
        };
        let path = match nodes.get(edge.from).and_then(|n| n.body.as_ref()) {
            Some(NodeBody::Volume(spec)) => Some(spec.mount_path.as_str()),
            Some(NodeBody::Config(spec)) => spec.mount_path.as_deref(),
            Some(NodeBody::SecretRef(spec)) => spec.mount_path.as_deref(),
            _ => None,
        };
        let Some(path) = path else {
            continue;
        };
        // `/data` and `/data/` are the same directory.
        let normalized = if path.len() > 1 {
            path.trim_end_matches('/')
        } else {
            path
        };
        match first_mount.get(&(edge.to, normalized)) {
            Some(first) => {
                let to_id = nodes.get(edge.to).and_then(|n| n.id).unwrap_or_default();
                p.edge(
                    j,
                    "",
                    format!("mount path `{path}` on `{to_id}` is already used by edge {first}"),
                );
            }
            None => {
                first_mount.insert((edge.to, normalized), j);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::graph::test_support::{assert_problem, problems, realistic_with};
    use serde_json::json;

    #[test]
    fn edge_fields() {
        let spec = json!({"image": "nginx", "ports": [{"port": 80}]});
        let document = json!({"nodes": [
            {"id": "a", "kind": "service", "spec": spec},
            {"id": "b", "kind": "service", "spec": spec}
        ], "edges": [
            {"to": "b", "kind": "connects"},
            {"from": "a", "to": "nope", "kind": "connects"},
            {"from": "a", "to": "b", "kind": "calls"},
            {"from": "a", "to": "b", "kind": "connects", "weight": 1},
            {"from": "a", "to": "b", "kind": "depends_on", "port": 80},
            {"from": "a", "to": "b", "kind": "connects", "port": 0},
            {"from": "a", "to": 5, "kind": "connects"}
        ]});
        assert_problem(&document, "/edges/0/from", "required");
        assert_problem(&document, "/edges/1/to", "no node `nope`");
        assert_problem(
            &document,
            "/edges/2/kind",
            "unknown kind `calls`; one of: connects",
        );
        assert_problem(&document, "/edges/3/weight", "unknown field");
        assert_problem(&document, "/edges/4/port", "only `connects`");
        assert_problem(&document, "/edges/5/port", "1 to 65535");
        assert_problem(&document, "/edges/6/to", "string");
    }

    #[test]
    fn self_and_duplicate_edges() {
        let document = realistic_with(|d| {
            let edges = d["edges"].as_array_mut().expect("edges");
            edges.push(json!({"from": "api", "to": "api", "kind": "depends_on"}));
            edges.push(json!({"from": "api", "to": "db", "kind": "connects", "port": 5432}));
        });
        assert_problem(&document, "/edges/10", "itself");
        assert_problem(&document, "/edges/11", "duplicate edge: edge 3");
    }

    #[test]
    fn edge_pairing() {
        let document = realistic_with(|d| {
            let edges = d["edges"].as_array_mut().expect("edges");
            edges.push(json!({"from": "db", "to": "api", "kind": "connects"}));
            edges.push(json!({"from": "web", "to": "api", "kind": "exposes"}));
            edges.push(json!({"from": "api-config", "to": "edge", "kind": "mounts"}));
            edges.push(json!({"from": "edge", "to": "web", "kind": "depends_on"}));
            edges.push(json!({"from": "api", "to": "api-config", "kind": "connects"}));
        });
        assert_problem(
            &document,
            "/edges/10/kind",
            "a `connects` edge goes from a service, job or cron_job to a service or database, \
             not from a database (`db`)",
        );
        assert_problem(&document, "/edges/11/kind", "from an ingress to a service");
        assert_problem(&document, "/edges/12/kind", "to an ingress (`edge`)");
        assert_problem(&document, "/edges/13/kind", "`depends_on`");
        assert_problem(&document, "/edges/14/kind", "to a config (`api-config`)");
    }

    #[test]
    fn connect_and_expose_targets_need_ports() {
        let document = json!({"nodes": [
            {"id": "worker", "kind": "service", "spec": {"image": "worker:1"}},
            {"id": "api", "kind": "service", "spec": {"image": "api:1", "ports": [{"port": 80}]}},
            {"id": "db", "kind": "database",
             "spec": {"engine": "redis", "version": "7", "storage": "1Gi"}},
            {"id": "edge", "kind": "ingress", "spec": {"host": "example.com"}}
        ], "edges": [
            {"from": "api", "to": "worker", "kind": "connects"},
            {"from": "worker", "to": "api", "kind": "connects", "port": 81},
            {"from": "worker", "to": "db", "kind": "connects", "port": 5432},
            {"from": "edge", "to": "worker", "kind": "exposes"},
            {"from": "worker", "to": "db", "kind": "depends_on"},
            {"from": "edge", "to": "api", "kind": "exposes"}
        ]});
        assert_problem(&document, "/edges/0/to", "declares no ports");
        assert_problem(
            &document,
            "/edges/1/port",
            "does not listen on 81; its ports: 80",
        );
        assert_problem(&document, "/edges/2/port", "its ports: 6379");
        assert_problem(&document, "/edges/3/to", "declares no ports");
        assert_eq!(problems(&document).len(), 4, "{:#?}", problems(&document));
    }

    #[test]
    fn mounts_share_no_path_on_one_workload() {
        let document = realistic_with(|d| {
            let nodes = d["nodes"].as_array_mut().expect("nodes");
            // ReadWriteMany: `api` and `web` run several replicas.
            nodes.push(json!({"id": "data", "kind": "volume",
                              "spec": {"size": "1Gi", "mount_path": "/etc/api/",
                                       "access_mode": "ReadWriteMany"}}));
            let edges = d["edges"].as_array_mut().expect("edges");
            edges.push(json!({"from": "data", "to": "api", "kind": "mounts"}));
            // The same volume on another workload is fine.
            edges.push(json!({"from": "data", "to": "web", "kind": "mounts"}));
        });
        let found = problems(&document);
        assert_eq!(found.len(), 1, "{found:#?}");
        assert_problem(
            &document,
            "/edges/10",
            "`/etc/api/` on `api` is already used by edge 7",
        );
    }
}
