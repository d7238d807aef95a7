//! Building blocks every generated workload shares: labels, hardened security contexts,
//! resources with defaults, probes, and the assembly of a pod from its parts.

use super::{invalid, TemplateError};
use crate::domain::graph::{
    check_env_name, check_limit, check_quantity, escape_pointer, Resources,
};
pub(super) use crate::domain::graph::{DefaultRequests, TMP_PATH, TMP_VOLUME, WORKLOAD_REQUESTS};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar, ExecAction,
    HTTPGetAction, PersistentVolumeClaimVolumeSource, PodSecurityContext, PodSpec, PodTemplateSpec,
    Probe, ResourceRequirements, SeccompProfile, SecurityContext, TCPSocketAction, Volume,
    VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::{BTreeMap, BTreeSet};

/// `app.kubernetes.io/name`: the node id (or the derived workload's name).
pub(super) const LABEL_NAME: &str = "app.kubernetes.io/name";
/// `app.kubernetes.io/component`: the node kind.
pub(super) const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// `app.kubernetes.io/part-of`: the project.
pub(super) const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// `app.kubernetes.io/managed-by`: always `gantry`.
pub(super) const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
/// The value of `app.kubernetes.io/managed-by`.
pub(super) const MANAGED_BY: &str = "gantry";
/// Bound on `/tmp`, so a runaway writer cannot fill the node's disk.
const TMP_SIZE_LIMIT: &str = "1Gi";

/// Who an object belongs to: its name label, component label and project.
#[derive(Debug, Clone, Copy)]
pub(super) struct Owner<'a> {
    /// `app.kubernetes.io/name`.
    pub name: &'a str,
    /// `app.kubernetes.io/component`.
    pub component: &'a str,
    /// `app.kubernetes.io/part-of` and the namespace.
    pub project: &'a str,
}

impl Owner<'_> {
    /// The four standard labels.
    pub fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_NAME.to_owned(), self.name.to_owned()),
            (LABEL_COMPONENT.to_owned(), self.component.to_owned()),
            (LABEL_PART_OF.to_owned(), self.project.to_owned()),
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        ])
    }

    /// The labels selectors match on: name and part-of only, because selectors are immutable
    /// and must not change when, say, a component is renamed.
    pub fn selector_labels(&self) -> BTreeMap<String, String> {
        selector_labels(self.name, self.project)
    }

    /// A selector on [`Owner::selector_labels`].
    pub fn selector(&self) -> LabelSelector {
        LabelSelector {
            match_labels: Some(self.selector_labels()),
            ..Default::default()
        }
    }

    /// Metadata of an object named `name` in the project's namespace.
    pub fn meta(&self, name: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(self.project.to_owned()),
            labels: Some(self.labels()),
            ..Default::default()
        }
    }
}

/// The selector labels of the pods named `name` in `project`.
pub(super) fn selector_labels(name: &str, project: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (LABEL_NAME.to_owned(), name.to_owned()),
        (LABEL_PART_OF.to_owned(), project.to_owned()),
    ])
}

/// Pod-level security: non-root with the runtime's default seccomp profile. `uid` is set only
/// for images whose user we know (the official database images); for user images the image's
/// own numeric `USER` must already be non-root, which `runAsNonRoot` enforces.
pub(super) fn pod_security(uid: Option<i64>) -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: uid,
        run_as_group: uid,
        fs_group: uid,
        // Re-chowning a large data volume on every start is slow; only do it when needed.
        fs_group_change_policy: uid.map(|_| "OnRootMismatch".to_owned()),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        ..Default::default()
    }
}

/// Container-level security: read-only root, no privilege escalation, no capabilities.
pub(super) fn container_security() -> SecurityContext {
    SecurityContext {
        read_only_root_filesystem: Some(true),
        allow_privilege_escalation: Some(false),
        privileged: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: None,
        }),
        ..Default::default()
    }
}

/// Requests and limits: the memory limit defaults to the request (memory is not compressible,
/// so a pod that outgrows its request should be killed, not the neighbour); no CPU limit unless
/// given (CPU limits throttle, requests already share fairly).
pub(super) fn resources(
    given: Option<&Resources>,
    defaults: DefaultRequests,
    pointer: &str,
) -> Result<ResourceRequirements, TemplateError> {
    let empty = Resources::default();
    let given = given.unwrap_or(&empty);
    // The graph's rules: `validate` applied them already, so these refusals are a defence only.
    let checked = |field: &str, result: Result<(), String>| {
        result.map_err(|d| invalid(format!("{pointer}/{field}"), d))
    };
    let cpu_request = given.cpu_request.as_deref().unwrap_or(defaults.cpu);
    let memory_request = given.memory_request.as_deref().unwrap_or(defaults.memory);
    let memory_limit = given.memory_limit.as_deref().unwrap_or(memory_request);
    checked("cpu_request", check_quantity(cpu_request))?;
    checked("memory_request", check_quantity(memory_request))?;
    checked("memory_limit", check_quantity(memory_limit))?;
    checked(
        "memory_limit",
        check_limit(
            "memory",
            memory_limit,
            given.memory_request.as_deref(),
            defaults.memory,
        ),
    )?;
    let mut limits = BTreeMap::from([("memory".to_owned(), Quantity(memory_limit.to_owned()))]);
    if let Some(cpu_limit) = given.cpu_limit.as_deref() {
        checked("cpu_limit", check_quantity(cpu_limit))?;
        checked(
            "cpu_limit",
            check_limit("CPU", cpu_limit, given.cpu_request.as_deref(), defaults.cpu),
        )?;
        limits.insert("cpu".to_owned(), Quantity(cpu_limit.to_owned()));
    }
    Ok(ResourceRequirements {
        requests: Some(BTreeMap::from([
            ("cpu".to_owned(), Quantity(cpu_request.to_owned())),
            ("memory".to_owned(), Quantity(memory_request.to_owned())),
        ])),
        limits: Some(limits),
        claims: None,
    })
}

/// What a probe checks.
#[derive(Debug, Clone)]
pub(super) enum Check {
    /// An HTTP GET of a path on a named port.
    Http { path: String, port: String },
    /// A TCP connect to a named port.
    Tcp { port: String },
    /// A command in the container.
    Exec(Vec<String>),
}

impl Check {
    /// A probe running this check.
    pub fn probe(&self, period: i32, failures: i32) -> Probe {
        let mut probe = Probe {
            period_seconds: Some(period),
            timeout_seconds: Some(3),
            failure_threshold: Some(failures),
            ..Default::default()
        };
        match self {
            Check::Http { path, port } => {
                probe.http_get = Some(HTTPGetAction {
                    path: Some(path.clone()),
                    port: IntOrString::String(port.clone()),
                    ..Default::default()
                })
            }
            Check::Tcp { port } => {
                probe.tcp_socket = Some(TCPSocketAction {
                    port: IntOrString::String(port.clone()),
                    host: None,
                })
            }
            Check::Exec(command) => {
                probe.exec = Some(ExecAction {
                    command: Some(command.clone()),
                })
            }
        }
        probe
    }
}

/// Startup, liveness and readiness probes. The startup probe gives a slow start (migrations,
/// JIT warm-up, database recovery) up to `startup_budget_s` before liveness may restart it, so
/// liveness itself needs no initial delay.
pub(super) fn set_probes(
    container: &mut Container,
    liveness: &Check,
    readiness: &Check,
    startup_budget_s: i32,
) {
    const PERIOD: i32 = 10;
    container.startup_probe = Some(liveness.probe(PERIOD, (startup_budget_s / PERIOD).max(1)));
    container.liveness_probe = Some(liveness.probe(PERIOD, 3));
    container.readiness_probe = Some(readiness.probe(PERIOD, 3));
}

/// An `emptyDir` volume, bounded by `size_limit`.
pub(super) fn empty_dir(name: &str, size_limit: &str, memory: bool) -> Volume {
    Volume {
        name: name.to_owned(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: memory.then(|| "Memory".to_owned()),
            size_limit: Some(Quantity(size_limit.to_owned())),
        }),
        ..Default::default()
    }
}

/// A volume `name` backed by the PersistentVolumeClaim `claim`.
pub(super) fn claim_volume(name: &str, claim: &str) -> Volume {
    Volume {
        name: name.to_owned(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: claim.to_owned(),
            read_only: None,
        }),
        ..Default::default()
    }
}

/// A mount of volume `name` at `path`.
pub(super) fn mount(name: &str, path: &str, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: name.to_owned(),
        mount_path: path.to_owned(),
        read_only: read_only.then_some(true),
        ..Default::default()
    }
}

/// A volume or mount together with the pointer of what asked for it (for collision errors).
#[derive(Debug, Clone)]
pub(super) struct Sourced<T> {
    /// The value.
    pub value: T,
    /// JSON Pointer of the graph element that produced it.
    pub pointer: String,
}

/// Everything one pod is made of, before the name-collision checks.
#[derive(Debug, Default)]
pub(super) struct PodParts {
    /// Environment injected by edges and credentials (sorted by name when assembled).
    pub env: Vec<Sourced<EnvVar>>,
    /// The node's own plain environment, appended after the injected variables so that its
    /// values may reference them with `$(NAME)`.
    pub own_env: Vec<Sourced<EnvVar>>,
    /// `envFrom` sources, in edge order.
    pub env_from: Vec<EnvFromSource>,
    /// Volumes of the pod.
    pub volumes: Vec<Sourced<Volume>>,
    /// Mounts of the main container.
    pub mounts: Vec<Sourced<VolumeMount>>,
    /// Init containers, in order.
    pub init_containers: Vec<Container>,
    /// Pod template annotations.
    pub pod_annotations: BTreeMap<String, String>,
}

impl PodParts {
    /// Adds the bounded `/tmp` scratch volume.
    pub fn add_tmp(&mut self, pointer: &str) {
        self.add_mounted(
            empty_dir(TMP_VOLUME, TMP_SIZE_LIMIT, false),
            mount(TMP_VOLUME, TMP_PATH, false),
            pointer,
        );
    }

    /// Adds a volume and its mount in the main container, both asked for by `pointer`.
    pub fn add_mounted(&mut self, volume: Volume, mount: VolumeMount, pointer: &str) {
        self.volumes.push(Sourced {
            value: volume,
            pointer: pointer.to_owned(),
        });
        self.mounts.push(Sourced {
            value: mount,
            pointer: pointer.to_owned(),
        });
    }

    /// Adds the node's plain `env`, checking the names.
    pub fn add_own_env(
        &mut self,
        env: &BTreeMap<String, String>,
        pointer: &str,
    ) -> Result<(), TemplateError> {
        for (name, value) in env {
            let at = format!("{pointer}/{}", escape_pointer(name));
            check_env_name(name).map_err(|d| invalid(&at, d))?;
            self.own_env.push(Sourced {
                value: EnvVar {
                    name: name.clone(),
                    value: Some(value.clone()),
                    value_from: None,
                },
                pointer: at,
            });
        }
        Ok(())
    }

    /// Fills `container`'s env, envFrom and mounts and returns the pod's volumes, refusing
    /// duplicate variable names, volume names and mount paths (Kubernetes would keep one
    /// silently or reject the pod).
    pub fn assemble(self, container: &mut Container) -> Result<Assembled, TemplateError> {
        let mut env = self.env;
        env.sort_by(|a, b| a.value.name.cmp(&b.value.name));
        env.extend(self.own_env);
        let mut names = BTreeSet::new();
        for var in &env {
            if !names.insert(var.value.name.as_str()) {
                return Err(invalid(
                    &var.pointer,
                    format!(
                        "sets the environment variable `{}` a second time in the same container",
                        var.value.name
                    ),
                ));
            }
        }
        let mut volume_names = BTreeSet::new();
        for volume in &self.volumes {
            if !volume_names.insert(volume.value.name.as_str()) {
                return Err(invalid(
                    &volume.pointer,
                    format!(
                        "needs a pod volume named `{}`, which the pod already has; rename the node",
                        volume.value.name
                    ),
                ));
            }
        }
        let mut paths = BTreeSet::new();
        for mount in &self.mounts {
            let path = mount.value.mount_path.trim_end_matches('/');
            if !paths.insert(path.to_owned()) {
                return Err(invalid(
                    &mount.pointer,
                    format!("mounts at `{path}`, where something else is already mounted"),
                ));
            }
        }
        container.env = non_empty(env.into_iter().map(|v| v.value).collect());
        container.env_from = non_empty(self.env_from);
        container.volume_mounts = non_empty(self.mounts.into_iter().map(|m| m.value).collect());
        Ok(Assembled {
            volumes: self.volumes.into_iter().map(|v| v.value).collect(),
            init_containers: self.init_containers,
            annotations: self.pod_annotations,
        })
    }
}

/// The pod-level results of [`PodParts::assemble`].
#[derive(Debug)]
pub(super) struct Assembled {
    /// The pod's volumes.
    pub volumes: Vec<Volume>,
    /// Its init containers.
    pub init_containers: Vec<Container>,
    /// Its template annotations.
    pub annotations: BTreeMap<String, String>,
}

/// A pod template with the hardened defaults every generated pod shares.
pub(super) fn pod_template(
    owner: &Owner<'_>,
    parts: PodParts,
    mut container: Container,
    security: PodSecurityContext,
    restart_policy: Option<&str>,
) -> Result<PodTemplateSpec, TemplateError> {
    let Assembled {
        volumes,
        init_containers,
        annotations,
    } = parts.assemble(&mut container)?;
    Ok(PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(owner.labels()),
            annotations: non_empty_map(annotations),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            init_containers: non_empty(init_containers),
            volumes: non_empty(volumes),
            security_context: Some(security),
            restart_policy: restart_policy.map(str::to_owned),
            // Workloads talk to their peers, not to the Kubernetes API; no token to steal.
            automount_service_account_token: Some(false),
            // Service links would add `<NAME>_PORT=tcp://…` for every Service in the namespace,
            // clashing with the `<TARGET>_PORT` variables edges inject.
            enable_service_links: Some(false),
            ..Default::default()
        }),
    })
}

/// `Some(items)` unless empty, so that optional lists are omitted rather than written `[]`.
pub(super) fn non_empty<T>(items: Vec<T>) -> Option<Vec<T>> {
    (!items.is_empty()).then_some(items)
}

/// `Some(map)` unless empty.
pub(super) fn non_empty_map(map: BTreeMap<String, String>) -> Option<BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// FNV-1a, 64 bits: a hash that, unlike `std`'s, is specified and so stays the same across
/// Rust releases (the config hash annotation must not change when only the compiler does).
pub(super) fn fnv1a(hash: u64, bytes: &[u8]) -> u64 {
    let mut hash = hash;
    for byte in bytes {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// The FNV-1a offset basis.
pub(super) const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
