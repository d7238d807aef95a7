//! NetworkPolicies: deny everything, allow DNS, then allow exactly what the graph's edges say.
//!
//! Every allowed flow is recorded on both ends (egress from the client, ingress to the server),
//! because with a default deny in both directions a flow needs both to pass.

use super::pod::{selector_labels, Owner};
use super::Emitted;
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyEgressRule, NetworkPolicyIngressRule, NetworkPolicyPeer,
    NetworkPolicyPort, NetworkPolicySpec,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// Namespace label every namespace carries (set by the API server since Kubernetes 1.22).
const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Namespace of the ingress controller allowed to reach exposed services.
///
/// Assumption: the cluster runs ingress-nginx in its conventional `ingress-nginx` namespace.
/// Another controller (Traefik, HAProxy, a Gateway) needs this namespace changed, or exposed
/// services will be unreachable through the Ingress.
pub(super) const INGRESS_CONTROLLER_NAMESPACE: &str = "ingress-nginx";

/// One end of an allowed flow.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Peer {
    /// Pods of this project with this `app.kubernetes.io/name`.
    Pods(String),
    /// Every pod of the namespace with this name.
    Namespace(String),
}

/// A destination port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct PortRef {
    /// Port number (on the pod; generated Services use the same number).
    pub port: u16,
    /// `TCP` or `UDP`.
    pub protocol: &'static str,
}

/// Who a policy's pods are: component label and the pointer of the node behind them.
#[derive(Debug, Clone)]
struct PodGroup {
    component: &'static str,
    origin: String,
}

/// Every allowed flow, by pod group.
#[derive(Debug, Default)]
pub(super) struct Allows {
    groups: BTreeMap<String, PodGroup>,
    ingress: BTreeMap<String, BTreeMap<Peer, BTreeSet<PortRef>>>,
    egress: BTreeMap<String, BTreeMap<Peer, BTreeSet<PortRef>>>,
}

impl Allows {
    /// Declares the pods named `name` (labels of their policies, origin for error messages).
    pub fn register(&mut self, name: &str, component: &'static str, origin: String) {
        self.groups
            .insert(name.to_owned(), PodGroup { component, origin });
    }

    /// Allows pods `from` to open connections to pods `to` on `port`.
    pub fn connect(&mut self, from: &str, to: &str, port: PortRef) {
        self.egress
            .entry(from.to_owned())
            .or_default()
            .entry(Peer::Pods(to.to_owned()))
            .or_default()
            .insert(port);
        self.ingress
            .entry(to.to_owned())
            .or_default()
            .entry(Peer::Pods(from.to_owned()))
            .or_default()
            .insert(port);
    }

    /// Allows every pod of `namespace` to reach pods `to` on `port` (the ingress controller;
    /// its egress is its own namespace's business).
    pub fn allow_namespace(&mut self, namespace: &str, to: &str, port: PortRef) {
        self.ingress
            .entry(to.to_owned())
            .or_default()
            .entry(Peer::Namespace(namespace.to_owned()))
            .or_default()
            .insert(port);
    }
}

/// The project-wide policies plus one `<name>-ingress` / `<name>-egress` per pod group with
/// allowed flows.
pub(super) fn policies(allows: &Allows, project: &str, out: &mut Vec<Emitted>) {
    let project_owner = |name: &'static str| Owner {
        name,
        component: "network-policy",
        project,
    };

    // Nothing gets in or out unless a later policy says so (policies are additive).
    let deny = project_owner("default-deny");
    out.push(Emitted::new(
        NetworkPolicy {
            metadata: deny.meta("default-deny"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Ingress".to_owned(), "Egress".to_owned()]),
                ..Default::default()
            }),
        },
        String::new(),
    ));

    // Name resolution for every pod: CoreDNS/kube-dns in kube-system, UDP and TCP (large
    // answers fall back to TCP). Clusters with NodeLocal DNSCache need its link-local address
    // allowed as well.
    let dns = project_owner("allow-dns");
    out.push(Emitted::new(
        NetworkPolicy {
            metadata: dns.meta("allow-dns"),
            spec: Some(NetworkPolicySpec {
                pod_selector: Some(LabelSelector::default()),
                policy_types: Some(vec!["Egress".to_owned()]),
                egress: Some(vec![NetworkPolicyEgressRule {
                    to: Some(vec![NetworkPolicyPeer {
                        namespace_selector: Some(match_labels([(
                            NAMESPACE_NAME_LABEL,
                            "kube-system",
                        )])),
                        pod_selector: Some(match_labels([("k8s-app", "kube-dns")])),
                        ip_block: None,
                    }]),
                    ports: Some(
                        ["UDP", "TCP"]
                            .into_iter()
                            .map(|protocol| policy_port(PortRef { port: 53, protocol }))
                            .collect(),
                    ),
                }]),
                ..Default::default()
            }),
        },
        String::new(),
    ));

    for (direction, flows) in [("ingress", &allows.ingress), ("egress", &allows.egress)] {
        for (name, peers) in flows {
            let (component, origin) = match allows.groups.get(name) {
                Some(group) => (group.component, group.origin.clone()),
                None => ("network-policy", String::new()),
            };
            let owner = Owner {
                name,
                component,
                project,
            };
            let rules = peers
                .iter()
                .map(|(peer, ports)| (peer_selector(peer, project), ports_of(ports)));
            let mut spec = NetworkPolicySpec {
                pod_selector: Some(owner.selector()),
                ..Default::default()
            };
            if direction == "ingress" {
                spec.policy_types = Some(vec!["Ingress".to_owned()]);
                spec.ingress = Some(
                    rules
                        .map(|(peer, ports)| NetworkPolicyIngressRule {
                            from: Some(vec![peer]),
                            ports: Some(ports),
                        })
                        .collect(),
                );
            } else {
                spec.policy_types = Some(vec!["Egress".to_owned()]);
                spec.egress = Some(
                    rules
                        .map(|(peer, ports)| NetworkPolicyEgressRule {
                            to: Some(vec![peer]),
                            ports: Some(ports),
                        })
                        .collect(),
                );
            }
            out.push(Emitted::new(
                NetworkPolicy {
                    metadata: owner.meta(&format!("{name}-{direction}")),
                    spec: Some(spec),
                },
                origin,
            ));
        }
    }
}

/// A selector matching exactly these labels.
fn match_labels<const N: usize>(labels: [(&str, &str); N]) -> LabelSelector {
    LabelSelector {
        match_labels: Some(
            labels
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// The policy peer for `peer`.
fn peer_selector(peer: &Peer, project: &str) -> NetworkPolicyPeer {
    match peer {
        // A pod selector alone means "in this policy's namespace", which is the project's.
        Peer::Pods(name) => NetworkPolicyPeer {
            pod_selector: Some(LabelSelector {
                match_labels: Some(selector_labels(name, project)),
                ..Default::default()
            }),
            ..Default::default()
        },
        Peer::Namespace(namespace) => NetworkPolicyPeer {
            namespace_selector: Some(match_labels([(NAMESPACE_NAME_LABEL, namespace.as_str())])),
            ..Default::default()
        },
    }
}

/// Policy ports, in order.
fn ports_of(ports: &BTreeSet<PortRef>) -> Vec<NetworkPolicyPort> {
    ports.iter().copied().map(policy_port).collect()
}

/// One policy port.
fn policy_port(port: PortRef) -> NetworkPolicyPort {
    NetworkPolicyPort {
        port: Some(IntOrString::Int(i32::from(port.port))),
        protocol: Some(port.protocol.to_owned()),
        end_port: None,
    }
}
