//! The graph as the templates walk it: nodes sorted by id (so output does not depend on document
//! order), looked up by id, with every node's ports resolved once.

use super::database::engine_info;
use super::pod::Owner;
use super::{invalid, TemplateError};
use crate::domain::graph::{self, Graph, Node, NodeBody};
use std::collections::HashMap;

/// A node and its position in the document (for JSON Pointers).
#[derive(Debug, Clone, Copy)]
pub(super) struct NodeRef<'g> {
    /// Index in `graph.nodes`.
    pub index: usize,
    /// The node.
    pub node: &'g Node,
}

impl<'g> NodeRef<'g> {
    /// The node id.
    pub fn id(&self) -> &'g str {
        &self.node.id
    }

    /// The node kind as spelled in the document.
    pub fn kind(&self) -> &'static str {
        self.node.body.kind()
    }

    /// JSON Pointer to this node, followed by `suffix` (`/spec/storage`).
    pub fn at(&self, suffix: &str) -> String {
        format!("/nodes/{}{suffix}", self.index)
    }

    /// The labels owner of the objects this node generates.
    pub fn owner<'a>(&'a self, project: &'a str) -> Owner<'a> {
        Owner {
            name: self.id(),
            component: self.kind(),
            project,
        }
    }

    /// Whether the node runs containers that edges may wire (env, mounts, waits).
    pub fn is_runnable(&self) -> bool {
        self.is_workload() || matches!(self.node.body, NodeBody::Database(_))
    }

    /// Whether the node is a service, job or cron_job (what may open connections).
    pub fn is_workload(&self) -> bool {
        matches!(
            self.node.body,
            NodeBody::Service(_) | NodeBody::Job(_) | NodeBody::CronJob(_)
        )
    }
}

/// One port a node listens on, with its resolved name and protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct PortInfo {
    /// Port name (given, or `http` for the first and `port-<n>` for the others).
    pub name: String,
    /// Port number.
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}

/// The graph, indexed.
pub(super) struct Index<'g> {
    /// Every node, sorted by id.
    pub nodes: Vec<NodeRef<'g>>,
    by_id: HashMap<&'g str, NodeRef<'g>>,
    ports: HashMap<&'g str, Vec<PortInfo>>,
}

impl<'g> Index<'g> {
    /// Indexes `graph`, refusing ids that cannot name Kubernetes objects and duplicate ids.
    pub fn build(graph: &'g Graph) -> Result<Self, TemplateError> {
        let mut nodes: Vec<NodeRef<'g>> = graph
            .nodes
            .iter()
            .enumerate()
            .map(|(index, node)| NodeRef { index, node })
            .collect();
        nodes.sort_by(|a, b| a.id().cmp(b.id()).then(a.index.cmp(&b.index)));
        let mut by_id = HashMap::with_capacity(nodes.len());
        let mut ports = HashMap::new();
        for node in &nodes {
            check_id(node)?;
            if let Some(first) = by_id.insert(node.id(), *node) {
                return Err(invalid(
                    node.at("/id"),
                    format!("duplicates the id of /nodes/{}", first.index),
                ));
            }
            match &node.node.body {
                NodeBody::Service(spec) => {
                    ports.insert(node.id(), resolve_ports(node, &spec.ports)?);
                }
                NodeBody::Database(spec) => {
                    let engine = engine_info(spec.engine);
                    ports.insert(
                        node.id(),
                        vec![PortInfo {
                            name: engine.name.to_owned(),
                            port: engine.port,
                            protocol: "TCP",
                        }],
                    );
                }
                _ => {}
            }
        }
        Ok(Self {
            nodes,
            by_id,
            ports,
        })
    }

    /// The node with this id.
    pub fn get(&self, id: &str) -> Option<NodeRef<'g>> {
        self.by_id.get(id).copied()
    }

    /// The ports a node listens on (empty for nodes without any).
    pub fn ports(&self, id: &str) -> &[PortInfo] {
        self.ports.get(id).map(Vec::as_slice).unwrap_or(&[])
    }

    /// The port probes and ingresses use: the first, when it is TCP (HTTP and TCP checks cannot
    /// reach a UDP port).
    pub fn main_tcp_port(&self, id: &str) -> Option<&PortInfo> {
        self.ports(id).first().filter(|p| p.protocol == "TCP")
    }
}

/// Node ids name Kubernetes objects, so they must be DNS labels, and the length limits of the
/// objects they name apply (the graph's rule, which `validate` applies too).
fn check_id(node: &NodeRef<'_>) -> Result<(), TemplateError> {
    graph::check_node_id(node.id(), &node.node.body).map_err(|d| invalid(node.at("/id"), d))
}

/// Resolves port names and protocols, refusing duplicates Kubernetes would reject.
fn resolve_ports(
    node: &NodeRef<'_>,
    ports: &[graph::Port],
) -> Result<Vec<PortInfo>, TemplateError> {
    let mut resolved: Vec<PortInfo> = Vec::with_capacity(ports.len());
    for (k, port) in ports.iter().enumerate() {
        if port.port == 0 {
            return Err(invalid(
                node.at(&format!("/spec/ports/{k}/port")),
                "must be between 1 and 65535",
            ));
        }
        let name = match &port.name {
            Some(name) => {
                graph::check_port_name(name)
                    .map_err(|d| invalid(node.at(&format!("/spec/ports/{k}/name")), d))?;
                name.clone()
            }
            None if k == 0 => "http".to_owned(),
            None => format!("port-{}", port.port),
        };
        let protocol = match port.protocol.as_deref() {
            None | Some("TCP") => "TCP",
            Some("UDP") => "UDP",
            Some(_) => {
                return Err(invalid(
                    node.at(&format!("/spec/ports/{k}/protocol")),
                    "must be `TCP` or `UDP`",
                ))
            }
        };
        if let Some(same) = resolved.iter().position(|p| p.name == name) {
            return Err(invalid(
                node.at(&format!("/spec/ports/{k}")),
                format!("has the name `{name}` of port {same}; port names must be unique"),
            ));
        }
        if let Some(same) = resolved
            .iter()
            .position(|p| p.port == port.port && p.protocol == protocol)
        {
            return Err(invalid(
                node.at(&format!("/spec/ports/{k}/port")),
                format!("repeats port {same}"),
            ));
        }
        resolved.push(PortInfo {
            name,
            port: port.port,
            protocol,
        });
    }
    Ok(resolved)
}
