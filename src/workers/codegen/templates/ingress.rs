//! `ingress` → Ingress (networking.k8s.io/v1): one host, its routed paths, optional TLS.

use super::index::{Index, NodeRef};
use super::{invalid, Emitted, TemplateError};
use crate::domain::graph::{check_dns_subdomain, check_host, check_url_path, IngressSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec as K8sIngressSpec, IngressTLS, ServiceBackendPort,
};
use std::collections::BTreeSet;

/// Path types Kubernetes knows.
const PATH_TYPES: [&str; 3] = ["Prefix", "Exact", "ImplementationSpecific"];

/// The Ingress `<id>`. `exposed` lists the services its `exposes` edges name, sorted, each with
/// the edge's index.
pub(super) fn ingress(
    project: &str,
    index: &Index<'_>,
    node: NodeRef<'_>,
    spec: &IngressSpec,
    exposed: &[(String, usize)],
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    check_host(&spec.host).map_err(|d| invalid(node.at("/spec/host"), d))?;
    let exposed_ids: BTreeSet<&str> = exposed.iter().map(|(id, _)| id.as_str()).collect();
    let backend = |service: &str| -> Option<IngressBackend> {
        let port = index.main_tcp_port(service)?;
        Some(IngressBackend {
            service: Some(IngressServiceBackend {
                name: service.to_owned(),
                port: Some(ServiceBackendPort {
                    name: Some(port.name.clone()),
                    number: None,
                }),
            }),
            resource: None,
        })
    };

    let mut paths = Vec::with_capacity(spec.paths.len() + exposed_ids.len());
    let mut seen: BTreeSet<(String, String)> = BTreeSet::new();
    let mut named: BTreeSet<&str> = BTreeSet::new();
    for (k, path) in spec.paths.iter().enumerate() {
        let at = |field: &str| node.at(&format!("/spec/paths/{k}/{field}"));
        check_url_path(&path.path).map_err(|d| invalid(at("path"), d))?;
        let path_type = path.path_type.as_deref().unwrap_or("Prefix");
        if !PATH_TYPES.contains(&path_type) {
            return Err(invalid(
                at("path_type"),
                format!("must be one of {}", PATH_TYPES.join(", ")),
            ));
        }
        if !exposed_ids.contains(path.service.as_str()) {
            return Err(invalid(
                at("service"),
                format!(
                    "`{}` is not exposed by this ingress; add an `exposes` edge from `{}` to it",
                    path.service,
                    node.id()
                ),
            ));
        }
        // Exposure already checked the service has a TCP port, so a backend exists.
        let Some(backend) = backend(&path.service) else {
            return Err(invalid(at("service"), "has no TCP port to route to"));
        };
        if !seen.insert((path.path.clone(), path_type.to_owned())) {
            return Err(invalid(
                at("path"),
                "routes the same path as an earlier entry",
            ));
        }
        named.insert(path.service.as_str());
        paths.push(HTTPIngressPath {
            path: Some(path.path.clone()),
            path_type: path_type.to_owned(),
            backend,
        });
    }
    for (service, j) in exposed {
        if named.contains(service.as_str()) {
            continue;
        }
        named.insert(service.as_str());
        // An exposed service no path names is served at the root.
        if !seen.insert(("/".to_owned(), "Prefix".to_owned())) {
            return Err(invalid(
                format!("/edges/{j}"),
                format!(
                    "exposes `{service}` at `/`, which is already routed; name its path in `paths`"
                ),
            ));
        }
        let Some(backend) = backend(service) else {
            return Err(invalid(
                format!("/edges/{j}/to"),
                "has no TCP port to route to",
            ));
        };
        paths.push(HTTPIngressPath {
            path: Some("/".to_owned()),
            path_type: "Prefix".to_owned(),
            backend,
        });
    }
    if paths.is_empty() {
        return Err(invalid(
            node.at(""),
            "routes nothing; add an `exposes` edge to a service",
        ));
    }

    let tls = match &spec.tls {
        Some(tls) => {
            check_dns_subdomain(&tls.secret_name)
                .map_err(|d| invalid(node.at("/spec/tls/secret_name"), d))?;
            Some(vec![IngressTLS {
                hosts: Some(vec![spec.host.clone()]),
                secret_name: Some(tls.secret_name.clone()),
            }])
        }
        None => None,
    };
    if let Some(class) = &spec.class_name {
        check_dns_subdomain(class).map_err(|d| invalid(node.at("/spec/class_name"), d))?;
    }
    let owner = node.owner(project);
    out.push(Emitted::new(
        Ingress {
            metadata: owner.meta(node.id()),
            spec: Some(K8sIngressSpec {
                ingress_class_name: spec.class_name.clone(),
                rules: Some(vec![IngressRule {
                    host: Some(spec.host.clone()),
                    http: Some(HTTPIngressRuleValue { paths }),
                }]),
                tls,
                default_backend: None,
            }),
            status: None,
        },
        node.at("/id"),
    ));
    Ok(())
}
