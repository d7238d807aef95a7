//! The rules of one node's spec that need nothing but the spec.

use super::generated::{DefaultRequests, WORKLOAD_REQUESTS};
use super::model::{DatabaseEngine, NodeBody, Port, Resources, ServiceSpec};
use super::problems::{escape_pointer, one_of, Problems};
use super::{MAX_BACKOFF_LIMIT, MAX_REPLICAS, MAX_RETENTION_DAYS};
use crate::domain::k8s::cron::check_cron;
use crate::domain::k8s::names::{
    check_data_key, check_dns_subdomain, check_env_name, check_env_var_name, check_host,
    check_image, check_image_tag, check_mount_path, check_port_name, check_url_path,
};
use crate::domain::k8s::quantity::{check_quantity, check_size, compare_quantities};
use std::collections::{BTreeMap, HashMap, HashSet};

/// The rules of one node's spec that need nothing but the spec.
pub(super) fn check_spec(i: usize, body: &NodeBody, p: &mut Problems) {
    match body {
        NodeBody::Service(spec) => {
            p.check_node(i, "/spec/image", check_image(&spec.image));
            check_ports(i, &spec.ports, p);
            check_env(i, &spec.env, p);
            if let Some(replicas) = spec.replicas {
                if replicas > MAX_REPLICAS {
                    p.node(
                        i,
                        "/spec/replicas",
                        format!("must be at most {MAX_REPLICAS}"),
                    );
                }
            }
            check_resources(i, spec.resources.as_ref(), WORKLOAD_REQUESTS, p);
            if let Some(probes) = &spec.probes {
                if spec.ports.is_empty()
                    && (probes.liveness_path.is_some() || probes.readiness_path.is_some())
                {
                    p.node(
                        i,
                        "/spec/probes",
                        "probes need a port; declare one in `ports`",
                    );
                }
                for (field, path) in [
                    ("liveness_path", &probes.liveness_path),
                    ("readiness_path", &probes.readiness_path),
                ] {
                    if let Some(path) = path {
                        p.check_node(i, &format!("/spec/probes/{field}"), check_url_path(path));
                    }
                }
            }
            if let Some(scaling) = &spec.autoscaling {
                if scaling.min_replicas < 1 {
                    p.node(i, "/spec/autoscaling/min_replicas", "must be at least 1");
                }
                if scaling.max_replicas > MAX_REPLICAS {
                    p.node(
                        i,
                        "/spec/autoscaling/max_replicas",
                        format!("must be at most {MAX_REPLICAS}"),
                    );
                } else if scaling.max_replicas < scaling.min_replicas {
                    p.node(
                        i,
                        "/spec/autoscaling/max_replicas",
                        format!("must be at least min_replicas ({})", scaling.min_replicas),
                    );
                }
                if let Some(target) = scaling.target_cpu_utilization {
                    if !(1..=100).contains(&target) {
                        p.node(
                            i,
                            "/spec/autoscaling/target_cpu_utilization",
                            "must be a percentage from 1 to 100",
                        );
                    }
                }
            }
        }
        NodeBody::Job(spec) => {
            p.check_node(i, "/spec/image", check_image(&spec.image));
            check_env(i, &spec.env, p);
            check_resources(i, spec.resources.as_ref(), WORKLOAD_REQUESTS, p);
            if let Some(limit) = spec.backoff_limit {
                if limit > MAX_BACKOFF_LIMIT {
                    p.node(
                        i,
                        "/spec/backoff_limit",
                        format!("must be at most {MAX_BACKOFF_LIMIT}"),
                    );
                }
            }
        }
        NodeBody::CronJob(spec) => {
            p.check_node(i, "/spec/schedule", check_cron(&spec.schedule));
            p.check_node(i, "/spec/image", check_image(&spec.image));
            check_env(i, &spec.env, p);
            check_resources(i, spec.resources.as_ref(), WORKLOAD_REQUESTS, p);
            if let Some(policy) = &spec.concurrency_policy {
                p.check_node(
                    i,
                    "/spec/concurrency_policy",
                    one_of(policy, &["Allow", "Forbid", "Replace"]),
                );
            }
        }
        NodeBody::Database(spec) => {
            let version = check_image_tag(&spec.version).and_then(|()| {
                // PGDATA is named after the major version (`/var/lib/postgresql/<major>/docker`).
                let numbered = spec.version.starts_with(|c: char| c.is_ascii_digit());
                if spec.engine == DatabaseEngine::Postgres && !numbered {
                    Err(
                        "must start with the major version (`16`, `16.4`): postgres keeps its \
                         data in a directory named after it"
                            .to_owned(),
                    )
                } else {
                    Ok(())
                }
            });
            p.check_node(i, "/spec/version", version);
            if spec.credentials.is_none() && spec.engine.requires_credentials() {
                p.node(
                    i,
                    "/spec/credentials",
                    format!(
                        "{} needs credentials: the id of a secret_ref whose Secret holds `{}`",
                        spec.engine.as_str(),
                        spec.engine.password_key()
                    ),
                );
            }
            p.check_node(i, "/spec/storage", check_size(&spec.storage));
            if let Some(class) = &spec.storage_class {
                p.check_node(i, "/spec/storage_class", check_dns_subdomain(class));
            }
            check_resources(
                i,
                spec.resources.as_ref(),
                spec.engine.default_requests(),
                p,
            );
            if let Some(backup) = &spec.backup {
                p.check_node(i, "/spec/backup/schedule", check_cron(&backup.schedule));
                if let Some(storage) = &backup.storage {
                    p.check_node(i, "/spec/backup/storage", check_size(storage));
                }
                if let Some(days) = backup.retention_days {
                    if !(1..=MAX_RETENTION_DAYS).contains(&days) {
                        p.node(
                            i,
                            "/spec/backup/retention_days",
                            format!("must be from 1 to {MAX_RETENTION_DAYS}"),
                        );
                    }
                }
            }
        }
        NodeBody::Config(spec) => {
            for key in spec.data.keys() {
                p.check_node(
                    i,
                    &format!("/spec/data/{}", escape_pointer(key)),
                    check_data_key(key),
                );
            }
            if let Some(path) = &spec.mount_path {
                p.check_node(i, "/spec/mount_path", check_mount_path(path));
            }
        }
        NodeBody::SecretRef(spec) => {
            p.check_node(
                i,
                "/spec/secret_name",
                check_dns_subdomain(&spec.secret_name),
            );
            let mut seen = HashSet::new();
            for (k, key) in spec.keys.iter().enumerate() {
                let pointer = format!("/spec/keys/{k}");
                if let Err(detail) = check_data_key(key) {
                    p.node(i, &pointer, detail);
                } else if !seen.insert(key.as_str()) {
                    p.node(i, &pointer, format!("duplicate key `{key}`"));
                } else if spec.mount_path.is_none() {
                    // Without a mount path, listed keys become variables of each workload.
                    p.check_node(i, &pointer, check_env_var_name(key));
                }
            }
            if let Some(path) = &spec.mount_path {
                p.check_node(i, "/spec/mount_path", check_mount_path(path));
            }
        }
        NodeBody::Volume(spec) => {
            p.check_node(i, "/spec/size", check_size(&spec.size));
            p.check_node(i, "/spec/mount_path", check_mount_path(&spec.mount_path));
            if let Some(mode) = &spec.access_mode {
                p.check_node(
                    i,
                    "/spec/access_mode",
                    one_of(mode, &["ReadWriteOnce", "ReadWriteMany", "ReadOnlyMany"]),
                );
            }
            if let Some(class) = &spec.storage_class {
                p.check_node(i, "/spec/storage_class", check_dns_subdomain(class));
            }
        }
        NodeBody::Ingress(spec) => {
            p.check_node(i, "/spec/host", check_host(&spec.host));
            let mut first_with_path: HashMap<&str, usize> = HashMap::new();
            for (j, path) in spec.paths.iter().enumerate() {
                let at = format!("/spec/paths/{j}");
                match check_url_path(&path.path) {
                    Err(detail) => p.node(i, &format!("{at}/path"), detail),
                    Ok(()) => {
                        if let Some(first) = first_with_path.get(path.path.as_str()) {
                            p.node(
                                i,
                                &format!("{at}/path"),
                                format!("duplicate path `{}`: paths/{first} has it", path.path),
                            );
                        } else {
                            first_with_path.insert(&path.path, j);
                        }
                    }
                }
                if let Some(kind) = &path.path_type {
                    p.check_node(
                        i,
                        &format!("{at}/path_type"),
                        one_of(kind, &["Prefix", "Exact"]),
                    );
                }
            }
            if let Some(tls) = &spec.tls {
                p.check_node(
                    i,
                    "/spec/tls/secret_name",
                    check_dns_subdomain(&tls.secret_name),
                );
            }
            if let Some(class) = &spec.class_name {
                p.check_node(i, "/spec/class_name", check_dns_subdomain(class));
            }
        }
    }
}

/// Port numbers, names and protocols of one service.
fn check_ports(i: usize, ports: &[Port], p: &mut Problems) {
    let mut numbers: HashMap<(u16, &str), usize> = HashMap::new();
    let mut names: HashMap<String, usize> = HashMap::new();
    for (k, port) in ports.iter().enumerate() {
        let at = format!("/spec/ports/{k}");
        // The same number may serve TCP and UDP (DNS does), as Kubernetes allows.
        let protocol = port.protocol.as_deref().unwrap_or("TCP");
        if port.port == 0 {
            p.node(i, &format!("{at}/port"), "must be from 1 to 65535");
        } else if let Some(first) = numbers.get(&(port.port, protocol)) {
            p.node(
                i,
                &format!("{at}/port"),
                format!(
                    "duplicate port {}/{protocol}: ports/{first} has it",
                    port.port
                ),
            );
        } else {
            numbers.insert((port.port, protocol), k);
        }
        let name_ok = match port.name.as_deref().map(check_port_name) {
            Some(Err(detail)) => {
                p.node(i, &format!("{at}/name"), detail);
                false
            }
            _ => true,
        };
        // Compare the names as generated, so a default cannot collide with an explicit one.
        let name = port.name_or_default(k);
        if !name_ok {
            // Reported above; a malformed name says nothing useful about collisions.
        } else if let Some(first) = names.get(&name) {
            let pointer = if port.name.is_some() {
                format!("{at}/name")
            } else {
                at.clone()
            };
            p.node(
                i,
                &pointer,
                format!("duplicate port name `{name}`: ports/{first} has it"),
            );
        } else {
            names.insert(name, k);
        }
        if let Some(protocol) = &port.protocol {
            p.check_node(
                i,
                &format!("{at}/protocol"),
                one_of(protocol, &["TCP", "UDP"]),
            );
        }
    }
}

/// Environment variable names.
fn check_env(i: usize, env: &BTreeMap<String, String>, p: &mut Problems) {
    for name in env.keys() {
        p.check_node(
            i,
            &format!("/spec/env/{}", escape_pointer(name)),
            check_env_name(name),
        );
    }
}

/// Resource requests and limits: quantities, and no limit below its request (Kubernetes
/// refuses such a pod). A request the graph leaves out is `defaults`', which is what the pod
/// gets.
fn check_resources(
    i: usize,
    resources: Option<&Resources>,
    defaults: DefaultRequests,
    p: &mut Problems,
) {
    let Some(resources) = resources else {
        return;
    };
    for (field, value) in [
        ("cpu_request", &resources.cpu_request),
        ("cpu_limit", &resources.cpu_limit),
        ("memory_request", &resources.memory_request),
        ("memory_limit", &resources.memory_limit),
    ] {
        if let Some(value) = value {
            p.check_node(
                i,
                &format!("/spec/resources/{field}"),
                check_quantity(value),
            );
        }
    }
    for (resource, request, default, limit_field, limit) in [
        (
            "CPU",
            &resources.cpu_request,
            defaults.cpu,
            "cpu_limit",
            &resources.cpu_limit,
        ),
        (
            "memory",
            &resources.memory_request,
            defaults.memory,
            "memory_limit",
            &resources.memory_limit,
        ),
    ] {
        let Some(limit) = limit else {
            continue;
        };
        p.check_node(
            i,
            &format!("/spec/resources/{limit_field}"),
            check_limit(resource, limit, request.as_deref(), default),
        );
    }
}

/// A limit is at least its request (`request`, else `default`); quantities compared exactly.
/// Malformed quantities are reported on their own and pass here.
pub fn check_limit(
    resource: &str,
    limit: &str,
    request: Option<&str>,
    default: &str,
) -> Result<(), String> {
    let shown = match request {
        Some(request) => format!("`{request}`"),
        None => format!("`{default}`, the default"),
    };
    match compare_quantities(limit, request.unwrap_or(default)) {
        Some(std::cmp::Ordering::Less) => {
            Err(format!("must be at least the {resource} request ({shown})"))
        }
        _ => Ok(()),
    }
}

/// How many replicas of a service may run at once.
pub(super) fn max_replicas(spec: &ServiceSpec) -> u32 {
    match &spec.autoscaling {
        Some(scaling) => scaling.max_replicas,
        None => spec.replicas.unwrap_or(1),
    }
}

#[cfg(test)]
mod tests;
