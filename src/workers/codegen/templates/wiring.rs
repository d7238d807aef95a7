//! What edges do to the pods at their ends: injected environment, mounted volumes, start-order
//! init containers and allowed network flows. Edges are walked in a sorted order so that the
//! result does not depend on the order of the document.

use super::index::{Index, NodeRef, PortInfo};
use super::network::{Allows, PortRef, INGRESS_CONTROLLER_NAMESPACE};
use super::pod::{self, container_security, PodParts, Sourced, FNV_OFFSET};
use super::{invalid, TemplateError};
use crate::domain::graph::{
    check_data_key, check_env_var_name, check_mount_path, connects_env, Edge, EdgeKind, Graph,
    NodeBody,
};
use k8s_openapi::api::core::v1::{
    ConfigMapEnvSource, ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, EnvVarSource,
    KeyToPath, ResourceRequirements, SecretEnvSource, SecretKeySelector, SecretVolumeSource,
    SecurityContext, Volume,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// Image of the init containers that wait for a dependency (pinned: a moving tag would make the
/// output change under the same graph).
pub(super) const WAIT_IMAGE: &str = "busybox:1.37.0";
/// Unprivileged user the wait containers run as (`nobody`; busybox's image user is root).
const WAIT_UID: i64 = 65534;
/// Pod annotation listing a workload's `depends_on` targets.
pub(super) const ANNOTATION_DEPENDS_ON: &str = "gantry.dev/depends-on";
/// Pod annotation hashing the configs a pod uses, so that editing a config rolls the pods
/// (environment from a ConfigMap is read only at start).
pub(super) const ANNOTATION_CONFIG_HASH: &str = "gantry.dev/config-hash";

/// The wiring of one node.
#[derive(Debug, Default)]
pub(super) struct Wiring {
    /// Pod parts contributed by edges.
    pub parts: PodParts,
    /// `depends_on` targets, sorted.
    pub depends_on: BTreeSet<String>,
    /// Pointer of a mount of a single-node volume (`ReadWriteOnce`), which rules out more than
    /// one replica and rolling updates.
    pub single_writer: Option<String>,
}

impl Wiring {
    /// Object annotations: the `depends_on` targets, when there are any.
    pub fn annotations(&self) -> Option<BTreeMap<String, String>> {
        if self.depends_on.is_empty() {
            return None;
        }
        let targets: Vec<&str> = self.depends_on.iter().map(String::as_str).collect();
        Some(BTreeMap::from([(
            ANNOTATION_DEPENDS_ON.to_owned(),
            targets.join(","),
        )]))
    }
}

/// The wiring of the whole graph.
#[derive(Debug, Default)]
pub(super) struct Wired {
    per_node: HashMap<String, Wiring>,
    /// Allowed network flows.
    pub allows: Allows,
    /// For each ingress id: the services it exposes, sorted, with the exposing edge's index.
    pub exposes: BTreeMap<String, Vec<(String, usize)>>,
}

impl Wired {
    /// Takes the wiring of `id` (empty when no edge touches it).
    pub fn take(&mut self, id: &str) -> Wiring {
        self.per_node.remove(id).unwrap_or_default()
    }

    /// The wiring of `id`, created on first use.
    fn of(&mut self, id: &str) -> &mut Wiring {
        self.per_node.entry(id.to_owned()).or_default()
    }
}

/// Walks every edge and collects what it does.
pub(super) fn wire(graph: &Graph, index: &Index<'_>) -> Result<Wired, TemplateError> {
    let mut wired = Wired::default();
    for node in &index.nodes {
        if node.is_runnable() {
            wired
                .allows
                .register(node.id(), node.kind(), node.at("/id"));
        }
    }

    let mut edges: Vec<(usize, &Edge)> = graph.edges.iter().enumerate().collect();
    edges.sort_by(|(ia, a), (ib, b)| {
        (a.from.as_str(), a.to.as_str(), kind_rank(a.kind), a.port)
            .cmp(&(b.from.as_str(), b.to.as_str(), kind_rank(b.kind), b.port))
            .then(ia.cmp(ib))
    });

    let mut waits: BTreeMap<String, BTreeMap<String, PortInfo>> = BTreeMap::new();
    let mut config_hashes: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    for (j, edge) in edges {
        let at = |field: &str| format!("/edges/{j}/{field}");
        let from = index
            .get(&edge.from)
            .ok_or_else(|| invalid(at("from"), format!("names no node `{}`", edge.from)))?;
        let to = index
            .get(&edge.to)
            .ok_or_else(|| invalid(at("to"), format!("names no node `{}`", edge.to)))?;
        if from.index == to.index {
            return Err(invalid(at("to"), "an edge cannot join a node to itself"));
        }
        let pairing = |expected: &str| {
            invalid(
                at("kind"),
                format!(
                    "`{}` joins {expected}; this edge joins a {} to a {}",
                    kind_name(edge.kind),
                    from.kind(),
                    to.kind()
                ),
            )
        };
        match edge.kind {
            EdgeKind::Connects => {
                if !from.is_workload()
                    || !matches!(to.node.body, NodeBody::Service(_) | NodeBody::Database(_))
                {
                    return Err(pairing(
                        "a service, job or cron_job to a service or database",
                    ));
                }
                let port = target_port(index, edge, &to, j)?;
                let [host_var, port_var] = connects_env(to.id());
                let wiring = wired.of(from.id());
                for (name, value) in [
                    (host_var, to.id().to_owned()),
                    (port_var, port.port.to_string()),
                ] {
                    wiring.parts.env.push(Sourced {
                        value: EnvVar {
                            name,
                            value: Some(value),
                            value_from: None,
                        },
                        pointer: format!("/edges/{j}"),
                    });
                }
                wired.allows.connect(from.id(), to.id(), port_ref(&port));
            }
            EdgeKind::Exposes => {
                if !matches!(from.node.body, NodeBody::Ingress(_))
                    || !matches!(to.node.body, NodeBody::Service(_))
                {
                    return Err(pairing("an ingress to a service"));
                }
                let port = index.main_tcp_port(to.id()).cloned().ok_or_else(|| {
                    invalid(
                        at("to"),
                        format!("`{}` has no TCP port for the ingress to route to", to.id()),
                    )
                })?;
                wired
                    .exposes
                    .entry(from.id().to_owned())
                    .or_default()
                    .push((to.id().to_owned(), j));
                wired.allows.allow_namespace(
                    INGRESS_CONTROLLER_NAMESPACE,
                    to.id(),
                    port_ref(&port),
                );
            }
            EdgeKind::Mounts => {
                if !to.is_runnable() {
                    return Err(pairing(
                        "a volume, config or secret_ref to a service, job, cron_job or database",
                    ));
                }
                let pointer = format!("/edges/{j}");
                let mount_path = match &from.node.body {
                    NodeBody::Volume(spec) => Some(spec.mount_path.as_str()),
                    NodeBody::Config(spec) => spec.mount_path.as_deref(),
                    NodeBody::SecretRef(spec) => spec.mount_path.as_deref(),
                    _ => None,
                };
                if let Some(path) = mount_path {
                    check_mount_path(path).map_err(|d| invalid(from.at("/spec/mount_path"), d))?;
                }
                match &from.node.body {
                    NodeBody::Volume(spec) => {
                        let mode = spec.access_mode.as_deref().unwrap_or("ReadWriteOnce");
                        let wiring = wired.of(to.id());
                        wiring.parts.add_mounted(
                            pod::claim_volume(from.id(), from.id()),
                            pod::mount(from.id(), &spec.mount_path, mode == "ReadOnlyMany"),
                            &pointer,
                        );
                        if matches!(mode, "ReadWriteOnce" | "ReadWriteOncePod") {
                            wiring.single_writer.get_or_insert(pointer);
                        }
                    }
                    NodeBody::Config(spec) => {
                        let wiring = wired.of(to.id());
                        match &spec.mount_path {
                            Some(path) => {
                                let volume = Volume {
                                    name: from.id().to_owned(),
                                    config_map: Some(ConfigMapVolumeSource {
                                        name: from.id().to_owned(),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                };
                                let mount = pod::mount(from.id(), path, true);
                                wiring.parts.add_mounted(volume, mount, &pointer);
                            }
                            None => wiring.parts.env_from.push(EnvFromSource {
                                config_map_ref: Some(ConfigMapEnvSource {
                                    name: from.id().to_owned(),
                                    optional: None,
                                }),
                                ..Default::default()
                            }),
                        }
                        let mut hash = pod::fnv1a(FNV_OFFSET, from.id().as_bytes());
                        for (key, value) in &spec.data {
                            // Lengths first, so that ("ab","c") and ("a","bc") differ.
                            hash = pod::fnv1a(hash, &(key.len() as u64).to_le_bytes());
                            hash = pod::fnv1a(hash, key.as_bytes());
                            hash = pod::fnv1a(hash, &(value.len() as u64).to_le_bytes());
                            hash = pod::fnv1a(hash, value.as_bytes());
                        }
                        config_hashes
                            .entry(to.id().to_owned())
                            .or_default()
                            .push((from.id().to_owned(), hash));
                    }
                    NodeBody::SecretRef(spec) => {
                        let wiring = wired.of(to.id());
                        match &spec.mount_path {
                            Some(path) => {
                                for (k, key) in spec.keys.iter().enumerate() {
                                    check_data_key(key).map_err(|d| {
                                        invalid(from.at(&format!("/spec/keys/{k}")), d)
                                    })?;
                                }
                                let items = spec
                                    .keys
                                    .iter()
                                    .map(|key| KeyToPath {
                                        key: key.clone(),
                                        path: key.clone(),
                                        mode: None,
                                    })
                                    .collect();
                                let volume = Volume {
                                    name: from.id().to_owned(),
                                    secret: Some(SecretVolumeSource {
                                        secret_name: Some(spec.secret_name.clone()),
                                        items: pod::non_empty(items),
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                };
                                let mount = pod::mount(from.id(), path, true);
                                wiring.parts.add_mounted(volume, mount, &pointer);
                            }
                            None if spec.keys.is_empty() => {
                                wiring.parts.env_from.push(EnvFromSource {
                                    secret_ref: Some(SecretEnvSource {
                                        name: spec.secret_name.clone(),
                                        optional: None,
                                    }),
                                    ..Default::default()
                                })
                            }
                            None => {
                                for (k, key) in spec.keys.iter().enumerate() {
                                    check_env_var_name(key).map_err(|d| {
                                        invalid(from.at(&format!("/spec/keys/{k}")), d)
                                    })?;
                                    wiring.parts.env.push(Sourced {
                                        value: secret_env(key, &spec.secret_name, key),
                                        pointer: pointer.clone(),
                                    });
                                }
                            }
                        }
                    }
                    _ => return Err(pairing(
                        "a volume, config or secret_ref to a service, job, cron_job or database",
                    )),
                }
            }
            EdgeKind::DependsOn => {
                if !from.is_runnable() || !to.is_runnable() {
                    return Err(pairing(
                        "a service, job, cron_job or database to a service, job, cron_job or \
                         database",
                    ));
                }
                wired.of(from.id()).depends_on.insert(to.id().to_owned());
                if let Some(port) = index.main_tcp_port(to.id()).cloned() {
                    wired.allows.connect(from.id(), to.id(), port_ref(&port));
                    waits
                        .entry(from.id().to_owned())
                        .or_default()
                        .insert(to.id().to_owned(), port);
                }
            }
        }
    }

    for (id, targets) in waits {
        let wiring = wired.of(&id);
        for (n, (target, port)) in targets.into_iter().enumerate() {
            wiring
                .parts
                .init_containers
                .push(wait_container(n, &target, port.port));
        }
    }
    for (id, mut hashes) in config_hashes {
        hashes.sort();
        let hash = hashes
            .iter()
            .fold(FNV_OFFSET, |acc, (_, h)| pod::fnv1a(acc, &h.to_le_bytes()));
        wired
            .of(&id)
            .parts
            .pod_annotations
            .insert(ANNOTATION_CONFIG_HASH.to_owned(), format!("{hash:016x}"));
    }
    Ok(wired)
}

/// The port a `connects` edge reaches: the one it names, or the target's first.
fn target_port(
    index: &Index<'_>,
    edge: &Edge,
    to: &NodeRef<'_>,
    j: usize,
) -> Result<PortInfo, TemplateError> {
    let ports = index.ports(to.id());
    let Some(first) = ports.first() else {
        return Err(invalid(
            format!("/edges/{j}/to"),
            format!("`{}` has no ports to connect to", to.id()),
        ));
    };
    match edge.port {
        None => Ok(first.clone()),
        Some(wanted) => ports
            .iter()
            .find(|p| p.port == wanted)
            .cloned()
            .ok_or_else(|| {
                let listening: Vec<String> = ports.iter().map(|p| p.port.to_string()).collect();
                invalid(
                    format!("/edges/{j}/port"),
                    format!(
                        "`{}` does not listen on {wanted} (it listens on {})",
                        to.id(),
                        listening.join(", ")
                    ),
                )
            }),
    }
}

/// An environment variable read from one key of an existing Secret.
pub(super) fn secret_env(name: &str, secret_name: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret_name.to_owned(),
                key: key.to_owned(),
                optional: None,
            }),
            ..Default::default()
        }),
    }
}

/// A network port of `port`.
fn port_ref(port: &PortInfo) -> PortRef {
    PortRef {
        port: port.port,
        protocol: port.protocol,
    }
}

/// An init container that blocks until `target` accepts TCP connections on `port`, so the
/// workload does not crash-loop while its dependency starts.
fn wait_container(n: usize, target: &str, port: u16) -> Container {
    let name = format!("wait-for-{target}");
    // Container names are DNS labels too; fall back to a positional name when too long.
    let name = if name.len() <= 63 {
        name
    } else {
        format!("wait-{n}")
    };
    Container {
        name,
        image: Some(WAIT_IMAGE.to_owned()),
        command: Some(vec![
            "sh".to_owned(),
            "-c".to_owned(),
            format!(
                "until nc -z -w 2 {target} {port}; do echo waiting for {target}:{port}; sleep 2; done"
            ),
        ]),
        resources: Some(ResourceRequirements {
            requests: Some(BTreeMap::from([
                ("cpu".to_owned(), Quantity("10m".to_owned())),
                ("memory".to_owned(), Quantity("16Mi".to_owned())),
            ])),
            limits: Some(BTreeMap::from([(
                "memory".to_owned(),
                Quantity("16Mi".to_owned()),
            )])),
            claims: None,
        }),
        security_context: Some(SecurityContext {
            run_as_user: Some(WAIT_UID),
            run_as_group: Some(WAIT_UID),
            ..container_security()
        }),
        ..Default::default()
    }
}

/// Order of edge kinds when sorting edges.
fn kind_rank(kind: EdgeKind) -> u8 {
    match kind {
        EdgeKind::Connects => 0,
        EdgeKind::Exposes => 1,
        EdgeKind::Mounts => 2,
        EdgeKind::DependsOn => 3,
    }
}

/// The edge kind as spelled in the document.
fn kind_name(kind: EdgeKind) -> &'static str {
    match kind {
        EdgeKind::Connects => "connects",
        EdgeKind::Exposes => "exposes",
        EdgeKind::Mounts => "mounts",
        EdgeKind::DependsOn => "depends_on",
    }
}
