//! The infrastructure graph stored per project version: typed nodes joined by typed edges.
//!
//! A graph is `{"nodes": [...], "edges": [...]}`. Every node has an `id` (a DNS-1123 label, which
//! becomes the name of the Kubernetes objects it generates), a `kind` and a `spec` whose shape the
//! kind decides. Edges join two nodes by id with a `kind`. [`validate`] turns a JSON document into
//! a [`Graph`] or into every problem found, each with a JSON Pointer to the offending field.

use crate::domain::DnsLabel;
use crate::error::FieldError;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// The graph every new project starts with.
pub fn empty_graph() -> Value {
    json!({"nodes": [], "edges": []})
}

/// A validated infrastructure graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Graph {
    /// The things to run and the things they use.
    pub nodes: Vec<Node>,
    /// How nodes are joined (required, like `nodes`; may be empty).
    pub edges: Vec<Edge>,
}

/// One node: an id, a kind and the kind's spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    /// Unique in the graph; a DNS-1123 label. Names the generated objects.
    pub id: String,
    /// The kind and its spec.
    #[serde(flatten)]
    pub body: NodeBody,
}

/// A node's `kind` and its typed `spec`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", content = "spec", rename_all = "snake_case")]
pub enum NodeBody {
    /// A long-running container workload (Deployment + Service).
    Service(ServiceSpec),
    /// A run-to-completion workload (Job).
    Job(JobSpec),
    /// A scheduled workload (CronJob).
    CronJob(CronJobSpec),
    /// A database (StatefulSet + PVC template + headless Service).
    Database(DatabaseSpec),
    /// Non-secret configuration (ConfigMap).
    Config(ConfigSpec),
    /// A reference to an existing Secret; its values are never in the graph or the output.
    SecretRef(SecretRefSpec),
    /// A persistent volume claim.
    Volume(VolumeSpec),
    /// HTTP(S) entry from outside the cluster (Ingress).
    Ingress(IngressSpec),
}

/// Every node kind, as spelled in `kind`.
pub const NODE_KINDS: [&str; 8] = [
    "service",
    "job",
    "cron_job",
    "database",
    "config",
    "secret_ref",
    "volume",
    "ingress",
];

impl NodeBody {
    /// The kind as spelled in the document.
    pub fn kind(&self) -> &'static str {
        match self {
            NodeBody::Service(_) => "service",
            NodeBody::Job(_) => "job",
            NodeBody::CronJob(_) => "cron_job",
            NodeBody::Database(_) => "database",
            NodeBody::Config(_) => "config",
            NodeBody::SecretRef(_) => "secret_ref",
            NodeBody::Volume(_) => "volume",
            NodeBody::Ingress(_) => "ingress",
        }
    }
}

/// A container port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Port {
    /// Port name (an IANA service name, ≤ 15 chars); default `http` for the first port, else
    /// `port-<number>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The port the container listens on (1–65535).
    pub port: u16,
    /// `TCP` (default) or `UDP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

/// CPU and memory, as Kubernetes quantities (`250m`, `512Mi`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// CPU request (default `100m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_request: Option<String>,
    /// CPU limit (default: none, to avoid throttling; set one to cap).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_limit: Option<String>,
    /// Memory request (default `128Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_request: Option<String>,
    /// Memory limit (default: equal to the request).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_limit: Option<String>,
}

/// Health probes of a service (HTTP paths on its first port; TCP when no path is set).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Probes {
    /// HTTP path of the liveness probe (default: a TCP check of the first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub liveness_path: Option<String>,
    /// HTTP path of the readiness probe (default: a TCP check of the first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness_path: Option<String>,
}

/// Horizontal autoscaling on CPU utilisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Autoscaling {
    /// Fewest replicas (≥ 1).
    pub min_replicas: u32,
    /// Most replicas (≥ `min_replicas`).
    pub max_replicas: u32,
    /// Target average CPU utilisation in percent (default 75).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_cpu_utilization: Option<u32>,
}

/// `kind: service`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Container image reference (pin a tag or digest).
    pub image: String,
    /// Ports the container listens on; the first is the service's main port.
    #[serde(default)]
    pub ports: Vec<Port>,
    /// Plain environment variables (secrets come from `secret_ref` nodes).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Replicas (default 1; ignored as a fixed count when `autoscaling` is set).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<u32>,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Liveness and readiness probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probes: Option<Probes>,
    /// Horizontal autoscaling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub autoscaling: Option<Autoscaling>,
    /// Container command (overrides the image's entrypoint).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Container arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
}

/// `kind: job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// Container image reference.
    pub image: String,
    /// Container command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Container arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Plain environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Retries before the Job fails (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff_limit: Option<u32>,
}

/// `kind: cron_job`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CronJobSpec {
    /// Five-field cron schedule (`*/5 * * * *`).
    pub schedule: String,
    /// Container image reference.
    pub image: String,
    /// Container command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Container arguments.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// Plain environment variables.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// `Forbid` (default), `Allow` or `Replace`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency_policy: Option<String>,
}

/// Database engines the templates know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DatabaseEngine {
    /// PostgreSQL (port 5432).
    Postgres,
    /// MySQL (port 3306).
    Mysql,
    /// Redis (port 6379).
    Redis,
}

/// Scheduled logical backups of a database into a PVC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseBackup {
    /// Five-field cron schedule.
    pub schedule: String,
    /// Size of the backup volume (default `10Gi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
    /// Days of dumps kept (default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// `kind: database`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSpec {
    /// The engine.
    pub engine: DatabaseEngine,
    /// Engine version, used as the image tag (`16`).
    pub version: String,
    /// Data volume size (`20Gi`).
    pub storage: String,
    /// Storage class (default: the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
    /// Requests and limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// Secret (a `secret_ref` node id) holding the engine's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,
    /// Scheduled backups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup: Option<DatabaseBackup>,
}

/// `kind: config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigSpec {
    /// Keys and values (non-secret).
    pub data: BTreeMap<String, String>,
    /// Where mounted workloads see the keys as files; absent: as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}

/// `kind: secret_ref`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretRefSpec {
    /// Name of the existing Secret in the namespace.
    pub secret_name: String,
    /// Keys exposed as environment variables (default: every key, via `envFrom`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<String>,
    /// Where mounted workloads see the keys as files; absent: as environment variables.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount_path: Option<String>,
}

/// `kind: volume`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// Requested size (`5Gi`).
    pub size: String,
    /// Where mounted workloads see it.
    pub mount_path: String,
    /// `ReadWriteOnce` (default), `ReadWriteMany` or `ReadOnlyMany`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_mode: Option<String>,
    /// Storage class (default: the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage_class: Option<String>,
}

/// One routed path of an ingress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressPath {
    /// URL path (`/api`).
    pub path: String,
    /// The `service` node it routes to; needs an `exposes` edge from the ingress to it.
    pub service: String,
    /// `Prefix` (default) or `Exact`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_type: Option<String>,
}

/// TLS of an ingress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressTls {
    /// Secret holding the certificate (for example issued by cert-manager).
    pub secret_name: String,
}

/// `kind: ingress`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngressSpec {
    /// Host name served.
    pub host: String,
    /// Routed paths; a service exposed by an edge but named by no path is served at `/`.
    #[serde(default)]
    pub paths: Vec<IngressPath>,
    /// TLS; absent: plain HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<IngressTls>,
    /// Ingress class (default: the cluster's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_name: Option<String>,
}

/// How two nodes are joined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Workload → service/database: network allow plus `<TARGET>_HOST`/`<TARGET>_PORT` env.
    Connects,
    /// Ingress → service: the service is routed from the ingress.
    Exposes,
    /// Volume/config/secret_ref → workload: mounted (or injected as env).
    Mounts,
    /// Workload → workload: start order; cycles are rejected.
    DependsOn,
}

/// Every edge kind, as spelled in `kind`.
pub const EDGE_KINDS: [&str; 4] = ["connects", "exposes", "mounts", "depends_on"];

/// One edge.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Source node id.
    pub from: String,
    /// Target node id.
    pub to: String,
    /// Edge kind.
    pub kind: EdgeKind,
    /// `connects`: the target port (default: the target's first port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

impl Graph {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

impl Port {
    /// The port's name as generated: its own, else `http` for the first port (`index` 0) and
    /// `port-<number>` for the others.
    pub fn name_or_default(&self, index: usize) -> String {
        match &self.name {
            Some(name) => name.clone(),
            None if index == 0 => "http".to_owned(),
            None => format!("port-{}", self.port),
        }
    }
}

impl DatabaseEngine {
    /// The port the engine listens on (the target of `connects` edges).
    pub const fn port(self) -> u16 {
        match self {
            DatabaseEngine::Postgres => 5432,
            DatabaseEngine::Mysql => 3306,
            DatabaseEngine::Redis => 6379,
        }
    }

    /// The engine as spelled in the document.
    pub const fn as_str(self) -> &'static str {
        match self {
            DatabaseEngine::Postgres => "postgres",
            DatabaseEngine::Mysql => "mysql",
            DatabaseEngine::Redis => "redis",
        }
    }

    /// The Secret key holding the password the official image reads.
    pub const fn password_key(self) -> &'static str {
        match self {
            DatabaseEngine::Postgres => "POSTGRES_PASSWORD",
            DatabaseEngine::Mysql => "MYSQL_ROOT_PASSWORD",
            DatabaseEngine::Redis => "REDIS_PASSWORD",
        }
    }

    /// Whether the official image refuses to start without that password (redis runs without
    /// one, reachable only through the network policies).
    pub const fn requires_credentials(self) -> bool {
        !matches!(self, DatabaseEngine::Redis)
    }

    /// Requests of the database's container when the graph sets none: postgres and mysql
    /// default to 128 MB buffers, so the general 128Mi would get them OOM-killed under load.
    pub const fn default_requests(self) -> DefaultRequests {
        match self {
            DatabaseEngine::Postgres | DatabaseEngine::Mysql => DefaultRequests {
                cpu: "250m",
                memory: "512Mi",
            },
            DatabaseEngine::Redis => DefaultRequests {
                cpu: "100m",
                memory: "256Mi",
            },
        }
    }

    /// Where the data claim is mounted in the database's container.
    pub const fn data_path(self) -> &'static str {
        match self {
            // The parent of PGDATA: the data directory is then a subdirectory (initdb refuses a
            // volume root holding `lost+found`), the layout the 18+ images require.
            DatabaseEngine::Postgres => "/var/lib/postgresql",
            DatabaseEngine::Mysql => "/var/lib/mysql",
            DatabaseEngine::Redis => "/data",
        }
    }

    /// Directories besides the data directory the engine writes, as `(pod volume, path)`;
    /// `/tmp` included. The root filesystem is read-only, so each is an `emptyDir`.
    pub const fn scratch(self) -> &'static [(&'static str, &'static str)] {
        match self {
            DatabaseEngine::Postgres => &[("run", "/var/run/postgresql"), (TMP_VOLUME, TMP_PATH)],
            DatabaseEngine::Mysql => &[
                ("run", "/var/run/mysqld"),
                ("files", "/var/lib/mysql-files"),
                (TMP_VOLUME, TMP_PATH),
            ],
            DatabaseEngine::Redis => &[(TMP_VOLUME, TMP_PATH)],
        }
    }

    /// Every `(pod volume, path)` the database's own pod uses: data, scratch and, for
    /// postgres, `/dev/shm`. A `mounts` edge onto the database must avoid these names and paths.
    pub fn pod_volumes(self) -> Vec<(&'static str, &'static str)> {
        let mut volumes = vec![(DATA_VOLUME, self.data_path())];
        volumes.extend_from_slice(self.scratch());
        if self == DatabaseEngine::Postgres {
            volumes.push((SHM_VOLUME, SHM_PATH));
        }
        volumes
    }

    /// Environment variables the database's container sets itself, besides its credentials.
    pub const fn own_env(self) -> &'static [&'static str] {
        match self {
            DatabaseEngine::Postgres => &[PGDATA],
            DatabaseEngine::Mysql | DatabaseEngine::Redis => &[],
        }
    }

    /// Variables the credentials set besides the password and the listed keys: redis-cli
    /// (probes, backups) reads the password from `REDISCLI_AUTH`.
    pub const fn credential_aliases(self) -> &'static [&'static str] {
        match self {
            DatabaseEngine::Redis => &[REDISCLI_AUTH],
            DatabaseEngine::Postgres | DatabaseEngine::Mysql => &[],
        }
    }

    /// Whether the listed keys of the credentials Secret become variables of the database's
    /// container (postgres and mysql read `*_USER`, `*_DATABASE`… from there; redis does not).
    pub const fn injects_listed_keys(self) -> bool {
        !matches!(self, DatabaseEngine::Redis)
    }
}

// What the generated objects use themselves. They live here, next to the rules that keep the
// graph clear of them, and the templates take them from here, so the two cannot drift apart.

/// Requests of a container when the graph sets none, as Kubernetes quantities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultRequests {
    /// CPU request.
    pub cpu: &'static str,
    /// Memory request (and, unless the graph sets one, the memory limit).
    pub memory: &'static str,
}

/// Requests of a service, job or cron_job container when the graph sets none.
pub const WORKLOAD_REQUESTS: DefaultRequests = DefaultRequests {
    cpu: "100m",
    memory: "128Mi",
};

/// Pod volume every generated pod has for scratch space, since root filesystems are read-only.
pub const TMP_VOLUME: &str = "tmp";
/// Where the scratch volume is mounted.
pub const TMP_PATH: &str = "/tmp";
/// Name of a database's data claim template, and so of the pod volume holding its data.
pub const DATA_VOLUME: &str = "data";
/// Memory-backed pod volume of postgres pods for parallel queries' shared memory.
pub const SHM_VOLUME: &str = "shm";
/// Where the shared-memory volume is mounted.
pub const SHM_PATH: &str = "/dev/shm";
/// Where the postgres image keeps its data; the templates set it below
/// [`DatabaseEngine::data_path`].
pub const PGDATA: &str = "PGDATA";
/// The password variable `pg_dump` reads in postgres backup pods.
pub const PGPASSWORD: &str = "PGPASSWORD";
/// The password variable `redis-cli` reads.
pub const REDISCLI_AUTH: &str = "REDISCLI_AUTH";
/// Suffix of the backup CronJob and claim of a database with `backup` (`<id>-backup`).
pub const BACKUP_SUFFIX: &str = "-backup";
/// Longest CronJob name: the controller appends an 11-character suffix to name its Jobs, and
/// Job names must stay within 63 characters.
pub const MAX_CRON_JOB_NAME: usize = 52;
/// Longest StatefulSet name: its pods carry a `controller-revision-hash` label of the name plus
/// an 11-character suffix, and label values stop at 63 characters.
pub const MAX_STATEFUL_SET_NAME: usize = 52;

/// `orders-db` → `ORDERS_DB_HOST`, `ORDERS_DB_PORT`: the variables a `connects` edge to
/// `target` injects into its source.
pub fn connects_env(target: &str) -> [String; 2] {
    let prefix = target.to_ascii_uppercase().replace('-', "_");
    [format!("{prefix}_HOST"), format!("{prefix}_PORT")]
}

/// The name of the claim the StatefulSet of database `id` creates for its data
/// (`<template>-<statefulset>-<ordinal>`, one replica).
pub fn database_data_claim(id: &str) -> String {
    format!("{DATA_VOLUME}-{id}-0")
}

impl EdgeKind {
    /// The kind as spelled in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            EdgeKind::Connects => "connects",
            EdgeKind::Exposes => "exposes",
            EdgeKind::Mounts => "mounts",
            EdgeKind::DependsOn => "depends_on",
        }
    }

    /// Parses a kind as spelled in the document.
    fn parse(value: &str) -> Option<Self> {
        match value {
            "connects" => Some(EdgeKind::Connects),
            "exposes" => Some(EdgeKind::Exposes),
            "mounts" => Some(EdgeKind::Mounts),
            "depends_on" => Some(EdgeKind::DependsOn),
            _ => None,
        }
    }

    /// Node kinds an edge of this kind may start at and end at.
    fn pairing(self) -> (&'static [&'static str], &'static [&'static str]) {
        const WORKLOADS: &[&str] = &["service", "job", "cron_job"];
        const RUNNABLE: &[&str] = &["service", "job", "cron_job", "database"];
        match self {
            EdgeKind::Connects => (WORKLOADS, &["service", "database"]),
            EdgeKind::Exposes => (&["ingress"], &["service"]),
            EdgeKind::Mounts => (&["volume", "config", "secret_ref"], RUNNABLE),
            EdgeKind::DependsOn => (RUNNABLE, RUNNABLE),
        }
    }
}

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

/// Where a problem is, for ordering the answer: the graph itself, one node or one edge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Place {
    Root,
    Node(usize),
    Edge(usize),
}

/// The problems found so far, with pointers under `prefix`.
struct Problems<'p> {
    prefix: &'p str,
    found: Vec<(Place, FieldError)>,
}

impl<'p> Problems<'p> {
    fn new(prefix: &'p str) -> Self {
        Self {
            prefix,
            found: Vec::new(),
        }
    }

    fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    fn push(&mut self, place: Place, pointer: String, detail: impl Into<String>) {
        self.found.push((place, FieldError::new(pointer, detail)));
    }

    /// A problem with the graph as a whole, at `{prefix}{suffix}`.
    fn root(&mut self, suffix: &str, detail: impl Into<String>) {
        let pointer = format!("{}{suffix}", self.prefix);
        self.push(Place::Root, pointer, detail);
    }

    /// A problem with node `i`, at `{prefix}/nodes/{i}{suffix}`.
    fn node(&mut self, i: usize, suffix: &str, detail: impl Into<String>) {
        let pointer = format!("{}/nodes/{i}{suffix}", self.prefix);
        self.push(Place::Node(i), pointer, detail);
    }

    /// A problem with edge `j`, at `{prefix}/edges/{j}{suffix}`.
    fn edge(&mut self, j: usize, suffix: &str, detail: impl Into<String>) {
        let pointer = format!("{}/edges/{j}{suffix}", self.prefix);
        self.push(Place::Edge(j), pointer, detail);
    }

    /// Records `result`'s error, if any, at node `i`'s `suffix`.
    fn check_node(&mut self, i: usize, suffix: &str, result: Result<(), String>) {
        if let Err(detail) = result {
            self.node(i, suffix, detail);
        }
    }

    /// The problems grouped by node and edge (nodes first), in the order found within each.
    fn into_sorted(mut self) -> Vec<FieldError> {
        // A stable sort keeps the order in which one node's or edge's problems were found.
        self.found.sort_by_key(|(place, _)| *place);
        self.found.into_iter().map(|(_, error)| error).collect()
    }
}

/// What the first pass learnt about one node; `None` parts had a problem.
struct NodeEntry<'a> {
    id: Option<&'a str>,
    kind: Option<&'static str>,
    body: Option<NodeBody>,
}

/// Node ids to the index of the first node carrying them.
struct NodeIndex<'a>(HashMap<&'a str, usize>);

impl<'a> NodeIndex<'a> {
    fn new(nodes: &[NodeEntry<'a>]) -> Self {
        let mut map = HashMap::with_capacity(nodes.len());
        for (i, node) in nodes.iter().enumerate() {
            if let Some(id) = node.id {
                map.entry(id).or_insert(i);
            }
        }
        Self(map)
    }

    fn get(&self, id: &str) -> Option<usize> {
        self.0.get(id).copied()
    }
}

/// The fields a node may have.
const NODE_FIELDS: [&str; 3] = ["id", "kind", "spec"];
/// The fields an edge may have.
const EDGE_FIELDS: [&str; 4] = ["from", "to", "kind", "port"];

/// First pass over the nodes: fields, ids, kinds, and each spec parsed into its kind's type.
fn read_nodes<'a>(values: &'a [Value], problems: &mut Problems) -> Vec<NodeEntry<'a>> {
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

/// A DNS-1035 label: a DNS-1123 label that starts with a letter (Service names).
pub fn check_dns1035_label(value: &str) -> Result<(), String> {
    DnsLabel::parse(value)?;
    if value.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` must start with a letter, because it names a Kubernetes Service"
        ))
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

/// Deserializes `value` as `T`, keeping the path of the first error as a JSON Pointer (relative
/// to `value`); request bodies use it too, so every 422 points the same way.
pub fn typed<T: DeserializeOwned>(value: &Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let mut pointer = serde_path_to_pointer(err.path());
        let message = err.inner().to_string();
        // serde reports a missing field at its parent; point at the field itself.
        if let Some(field) = message
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next())
        {
            pointer.push('/');
            pointer.push_str(&escape_pointer(field));
        }
        (pointer, message)
    })
}

/// Converts a `serde_path_to_error` path into a JSON Pointer.
fn serde_path_to_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut pointer = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => pointer.push_str(&format!("/{index}")),
            Segment::Map { key } => pointer.push_str(&format!("/{}", escape_pointer(key))),
            // A variant name is not a member of the document: it has no pointer token.
            Segment::Enum { .. } | Segment::Unknown => {}
        }
    }
    pointer
}

/// The rules of one node's spec that need nothing but the spec.
fn check_spec(i: usize, body: &NodeBody, p: &mut Problems) {
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

/// What the edge pass learnt about one edge.
struct EdgeEntry {
    from: usize,
    to: usize,
    kind: EdgeKind,
    port: Option<u16>,
    /// No problem was found with this edge, so later passes may rely on it.
    sound: bool,
}

/// Second pass: each edge's fields, endpoints, pairing and ports.
fn read_edges(
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

/// `a service`, `a service or database`, `a service, job or cron_job`.
fn either(kinds: &[&str]) -> String {
    match kinds {
        [] => String::new(),
        [only] => with_article(only),
        [first, middle @ .., last] => {
            let mut text = with_article(first);
            for kind in middle {
                text.push_str(", ");
                text.push_str(kind);
            }
            format!("{text} or {last}")
        }
    }
}

/// `a service`, `an ingress`.
fn with_article(kind: &str) -> String {
    if kind.starts_with(['a', 'e', 'i', 'o', 'u']) {
        format!("an {kind}")
    } else {
        format!("a {kind}")
    }
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
fn check_mount_paths(nodes: &[NodeEntry], edges: &[Option<EdgeEntry>], p: &mut Problems) {
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

/// Node ids must not be names the templates derive for another node's objects: a database
/// with `backup` names its backup CronJob, claim and pods `<id>-backup`, and its StatefulSet
/// creates the claim `data-<id>-0`, which a volume of that name would replace. Either would
/// make two nodes share objects or pods; the problem is at the later node's id.
fn check_generated_names(nodes: &[NodeEntry], p: &mut Problems) {
    // Derived name → (database node, what it names, the only kind it clashes with).
    let mut derived: HashMap<String, (usize, String, Option<&str>)> = HashMap::new();
    for (d, node) in nodes.iter().enumerate() {
        let (Some(id), Some(NodeBody::Database(spec))) = (node.id, &node.body) else {
            continue;
        };
        if spec.backup.is_some() {
            derived.insert(
                format!("{id}{BACKUP_SUFFIX}"),
                (
                    d,
                    format!("the backup CronJob and claim of database `{id}`"),
                    None,
                ),
            );
        }
        derived.insert(
            database_data_claim(id),
            (
                d,
                format!("the data claim of database `{id}`"),
                Some("volume"),
            ),
        );
    }
    if derived.is_empty() {
        return;
    }
    for (n, node) in nodes.iter().enumerate() {
        let Some(id) = node.id else {
            continue;
        };
        let Some((d, what, only)) = derived.get(id) else {
            continue;
        };
        if *d == n || only.is_some_and(|kind| node.kind != Some(kind)) {
            continue;
        }
        if n > *d {
            p.node(
                n,
                "/id",
                format!("`{id}` is already the name of {what} (node {d}); rename one of them"),
            );
        } else {
            p.node(
                *d,
                "/id",
                format!(
                    "`{id}` would be the name of {what}, but node {n} has that id; rename one of \
                     them"
                ),
            );
        }
    }
}

/// Who sets an environment variable of a pod, for the problem naming a clash.
struct EnvSetter {
    /// Where a clash with an earlier setter is reported.
    place: Place,
    /// The pointer suffix below the node or edge.
    suffix: String,
    /// How a later clash names this setter.
    name: String,
}

/// The variables set so far in one pod, and by whom.
#[derive(Default)]
struct PodEnv(HashMap<String, String>);

impl PodEnv {
    /// Records `var` as set by `setter`, reporting it when something set it earlier. Setters
    /// are added in the order the container sees them, so the later one is the clash.
    fn set(&mut self, var: &str, setter: &EnvSetter, pod: &str, p: &mut Problems) {
        match self.0.get(var) {
            Some(first) => {
                let detail = format!(
                    "sets `{var}` in `{pod}`'s container, already set there by {first}; rename \
                     one of them"
                );
                match setter.place {
                    Place::Node(i) => p.node(i, &setter.suffix, detail),
                    Place::Edge(j) => p.edge(j, &setter.suffix, detail),
                    Place::Root => p.root(&setter.suffix, detail),
                }
            }
            None => {
                self.0.insert(var.to_owned(), setter.name.clone());
            }
        }
    }
}

/// How many replicas of a service may run at once.
fn max_replicas(spec: &ServiceSpec) -> u32 {
    match &spec.autoscaling {
        Some(scaling) => scaling.max_replicas,
        None => spec.replicas.unwrap_or(1),
    }
}

/// What edges put into pods, checked against what the pods hold already: pod volume names and
/// mount paths the generated pods use themselves, environment variables set twice in one
/// container (edges, credentials, the node's own `env`), and single-node volumes on services
/// that may run several replicas.
fn check_pods(
    nodes: &[NodeEntry],
    edges: &[Option<EdgeEntry>],
    index: &NodeIndex,
    p: &mut Problems,
) {
    let id_of = |n: usize| nodes.get(n).and_then(|node| node.id).unwrap_or_default();
    let body_of = |n: usize| nodes.get(n).and_then(|node| node.body.as_ref());

    // What each runnable node's pod sets before any edge: a database's own variables and
    // credentials. Clashes among those are the credentials' problem (check_references).
    let mut env: HashMap<usize, PodEnv> = HashMap::new();
    for (t, node) in nodes.iter().enumerate() {
        let Some(NodeBody::Database(spec)) = &node.body else {
            continue;
        };
        let pod = env.entry(t).or_default();
        let engine = spec.engine;
        for var in engine.own_env() {
            pod.0
                .insert((*var).to_owned(), format!("the {} image", engine.as_str()));
        }
        let secret = spec
            .credentials
            .as_deref()
            .and_then(|id| index.get(id))
            .and_then(body_of);
        if let Some(NodeBody::SecretRef(secret)) = secret {
            let by = "its credentials".to_owned();
            let mut vars: Vec<&str> = vec![engine.password_key()];
            vars.extend_from_slice(engine.credential_aliases());
            if engine.injects_listed_keys() {
                vars.extend(secret.keys.iter().map(String::as_str));
            }
            for var in vars {
                pod.0.entry(var.to_owned()).or_insert_with(|| by.clone());
            }
        }
    }

    for (j, edge) in edges.iter().enumerate() {
        let Some(edge) = edge.as_ref().filter(|e| e.sound) else {
            continue;
        };
        let (from_id, to_id) = (id_of(edge.from), id_of(edge.to));
        match edge.kind {
            EdgeKind::Connects => {
                let setter = EnvSetter {
                    place: Place::Edge(j),
                    suffix: String::new(),
                    name: format!("edge {j} (connects to `{to_id}`)"),
                };
                let pod = env.entry(edge.from).or_default();
                for var in connects_env(to_id) {
                    pod.set(&var, &setter, from_id, p);
                }
            }
            EdgeKind::Mounts => {
                let (Some(source), Some(target)) = (body_of(edge.from), body_of(edge.to)) else {
                    continue;
                };
                check_mount_into_pod(j, from_id, source, to_id, target, p);
                if let NodeBody::SecretRef(secret) = source {
                    if secret.mount_path.is_none() {
                        let setter = EnvSetter {
                            place: Place::Edge(j),
                            suffix: String::new(),
                            name: format!("edge {j} (secret_ref `{from_id}`)"),
                        };
                        let pod = env.entry(edge.to).or_default();
                        // Malformed keys are reported at the secret_ref; only sound ones count.
                        for key in secret.keys.iter().filter(|key| {
                            check_data_key(key).is_ok() && check_env_var_name(key).is_ok()
                        }) {
                            pod.set(key, &setter, to_id, p);
                        }
                    }
                }
            }
            EdgeKind::DependsOn => {
                // The wait for the target is an init container `wait-for-<target>`, which may
                // not share its name with the workload's own container (named by its id).
                if from_id == format!("wait-for-{to_id}") {
                    p.edge(
                        j,
                        "",
                        format!(
                            "`{from_id}` would get an init container `wait-for-{to_id}` named \
                             like its own container; rename the node"
                        ),
                    );
                }
            }
            EdgeKind::Exposes => {}
        }
    }

    // The node's own `env` comes last in the container, after everything edges inject.
    for (t, node) in nodes.iter().enumerate() {
        let own = match &node.body {
            Some(NodeBody::Service(spec)) => &spec.env,
            Some(NodeBody::Job(spec)) => &spec.env,
            Some(NodeBody::CronJob(spec)) => &spec.env,
            _ => continue,
        };
        let Some(pod) = env.get_mut(&t) else {
            // Nothing injected, so nothing to clash with.
            continue;
        };
        for var in own.keys() {
            let setter = EnvSetter {
                place: Place::Node(t),
                suffix: format!("/spec/env/{}", escape_pointer(var)),
                name: "its `env`".to_owned(),
            };
            pod.set(var, &setter, id_of(t), p);
        }
    }
}

/// One `mounts` edge `j` of `source` into `target`'s pod: the pod volume it adds (named after
/// the source) and its path must not be ones the pod uses itself, and a single-node volume
/// cannot serve a service that may run replicas on several nodes.
fn check_mount_into_pod(
    j: usize,
    source_id: &str,
    source: &NodeBody,
    target_id: &str,
    target: &NodeBody,
    p: &mut Problems,
) {
    let path = match source {
        NodeBody::Volume(spec) => Some(spec.mount_path.as_str()),
        NodeBody::Config(spec) => spec.mount_path.as_deref(),
        NodeBody::SecretRef(spec) => spec.mount_path.as_deref(),
        _ => None,
    };
    // Without a path the source is injected as variables and adds no pod volume.
    let Some(path) = path else {
        return;
    };
    let own = match target {
        NodeBody::Service(_) | NodeBody::Job(_) | NodeBody::CronJob(_) => {
            vec![(TMP_VOLUME, TMP_PATH)]
        }
        NodeBody::Database(spec) => spec.engine.pod_volumes(),
        _ => Vec::new(),
    };
    if let Some((_, used_at)) = own.iter().find(|(name, _)| *name == source_id) {
        p.edge(
            j,
            "",
            format!(
                "would add a pod volume named `{source_id}` to `{target_id}`, whose pod already \
                 has one by that name (for `{used_at}`); rename `{source_id}`"
            ),
        );
    }
    let normalized = path.trim_end_matches('/');
    if let Some((name, _)) = own.iter().find(|(_, at)| *at == normalized) {
        p.edge(
            j,
            "",
            format!(
                "mount path `{path}` on `{target_id}` is where its pod already mounts its own \
                 `{name}` volume; choose another path"
            ),
        );
    }
    if let (NodeBody::Volume(volume), NodeBody::Service(service)) = (source, target) {
        let mode = volume.access_mode.as_deref().unwrap_or("ReadWriteOnce");
        let replicas = max_replicas(service);
        if mode == "ReadWriteOnce" && replicas > 1 {
            p.edge(
                j,
                "",
                format!(
                    "mounts the ReadWriteOnce volume `{source_id}` into `{target_id}`, which may \
                     run {replicas} replicas on different nodes; use ReadWriteMany or one replica"
                ),
            );
        }
    }
}

/// Node fields naming other nodes: database credentials and ingress paths.
fn check_references(
    nodes: &[NodeEntry],
    edges: &[Option<EdgeEntry>],
    index: &NodeIndex,
    p: &mut Problems,
) {
    let kind_of = |id: &str| index.get(id).and_then(|n| nodes.get(n)).map(|n| n.kind);
    // Every exposes edge by its ingress, sound or not (a broken one is reported already and
    // should not add "routes nothing"); grouped once so each ingress does not scan every edge.
    let mut exposes: HashMap<usize, Vec<(usize, &EdgeEntry)>> = HashMap::new();
    for (j, edge) in edges.iter().enumerate() {
        if let Some(edge) = edge.as_ref().filter(|e| e.kind == EdgeKind::Exposes) {
            exposes.entry(edge.from).or_default().push((j, edge));
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        match &node.body {
            Some(NodeBody::Database(spec)) => {
                if let Some(credentials) = &spec.credentials {
                    match kind_of(credentials) {
                        None => p.node(i, "/spec/credentials", format!("no node `{credentials}`")),
                        Some(Some("secret_ref")) => {
                            let secret = index
                                .get(credentials)
                                .and_then(|n| nodes.get(n))
                                .and_then(|n| n.body.as_ref());
                            if let Some(NodeBody::SecretRef(secret)) = secret {
                                check_credentials(i, spec, credentials, secret, p);
                            }
                        }
                        Some(None) => {}
                        Some(Some(other)) => p.node(
                            i,
                            "/spec/credentials",
                            format!("`{credentials}` is a {other}, not a secret_ref"),
                        ),
                    }
                }
            }
            Some(NodeBody::Ingress(spec)) => {
                let exposes = exposes.get(&i).map(Vec::as_slice).unwrap_or_default();
                check_ingress_routes(i, spec, exposes, nodes, index, p)
            }
            _ => {}
        }
    }
}

/// The Secret a database's `credentials` names, as the database and its backup use it: the
/// password is always read by its key, so a Secret listing its keys must list it; for postgres
/// and mysql the other listed keys become variables too, so they must be variable names and
/// not ones the pods set themselves.
fn check_credentials(
    i: usize,
    spec: &DatabaseSpec,
    secret_id: &str,
    secret: &SecretRefSpec,
    p: &mut Problems,
) {
    let engine = spec.engine;
    let password = engine.password_key();
    if !secret.keys.is_empty() && !secret.keys.iter().any(|k| k == password) {
        p.node(
            i,
            "/spec/credentials",
            format!(
                "`{secret_id}` lists its keys without `{password}`, which {} needs; add it to \
                 its `keys`",
                engine.as_str()
            ),
        );
    }
    if !engine.injects_listed_keys() {
        return;
    }
    let mut taken: Vec<&str> = engine.own_env().to_vec();
    taken.extend_from_slice(engine.credential_aliases());
    if engine == DatabaseEngine::Postgres && spec.backup.is_some() {
        taken.push(PGPASSWORD);
    }
    for key in secret.keys.iter().filter(|k| *k != password) {
        if check_data_key(key).is_err() {
            // Reported at the secret_ref.
            continue;
        }
        if secret.mount_path.is_some() {
            // Without a mount path the key was checked as a variable name at the secret_ref.
            if let Err(detail) = check_env_var_name(key) {
                p.node(
                    i,
                    "/spec/credentials",
                    format!(
                        "`{secret_id}` lists the key `{key}`, which becomes an environment \
                         variable of the database: {detail}"
                    ),
                );
                continue;
            }
        }
        if taken.contains(&key.as_str()) {
            p.node(
                i,
                "/spec/credentials",
                format!(
                    "`{secret_id}` lists the key `{key}`, which the generated {} pods set \
                     themselves; leave it out of `keys`",
                    engine.as_str()
                ),
            );
        }
    }
}

/// An ingress's paths name services it exposes, and at most one service is served at `/`.
fn check_ingress_routes(
    i: usize,
    spec: &IngressSpec,
    exposes: &[(usize, &EdgeEntry)],
    nodes: &[NodeEntry],
    index: &NodeIndex,
    p: &mut Problems,
) {
    let ingress_id = nodes.get(i).and_then(|n| n.id).unwrap_or_default();
    let exposed: HashSet<usize> = exposes.iter().map(|(_, e)| e.to).collect();
    if exposes.is_empty() {
        p.node(
            i,
            "",
            format!("ingress `{ingress_id}` routes nothing; add an `exposes` edge to a service"),
        );
    }
    let mut named = HashSet::new();
    for (j, path) in spec.paths.iter().enumerate() {
        let pointer = format!("/spec/paths/{j}/service");
        let service = path.service.as_str();
        let Some(target) = index.get(service) else {
            p.node(i, &pointer, format!("no node `{service}`"));
            continue;
        };
        named.insert(target);
        match nodes.get(target).and_then(|n| n.kind) {
            Some("service") => {}
            Some(other) => {
                p.node(
                    i,
                    &pointer,
                    format!("`{service}` is a {other}, not a service"),
                );
                continue;
            }
            None => continue,
        }
        if !exposed.contains(&target) {
            p.node(
                i,
                &pointer,
                format!(
                    "ingress `{ingress_id}` has no `exposes` edge to `{service}`; add \
                     {{\"from\": \"{ingress_id}\", \"to\": \"{service}\", \"kind\": \"exposes\"}}"
                ),
            );
        }
    }
    // A service exposed but named by no path is served at `/`; two would collide there.
    let mut root_owner: Option<String> = spec
        .paths
        .iter()
        .find(|path| path.path == "/")
        .map(|path| path.service.clone());
    for (j, edge) in exposes.iter().filter(|(_, e)| e.sound) {
        if named.contains(&edge.to) {
            continue;
        }
        let to_id = nodes.get(edge.to).and_then(|n| n.id).unwrap_or_default();
        match &root_owner {
            Some(owner) => p.edge(
                *j,
                "",
                format!(
                    "`{to_id}` is named by no path of ingress `{ingress_id}`, so it would be \
                     served at `/`, which `{owner}` already is; add a `paths` entry for it"
                ),
            ),
            None => root_owner = Some(to_id.to_owned()),
        }
    }
}

/// `depends_on` edges must not form a cycle: one problem per cycle group, at one of its edges.
fn check_dependency_cycles(nodes: &[NodeEntry], edges: &[Option<EdgeEntry>], p: &mut Problems) {
    let mut successors: Vec<Vec<(usize, usize)>> = vec![Vec::new(); nodes.len()];
    for (j, edge) in edges.iter().enumerate() {
        if let Some(edge) = edge
            .as_ref()
            .filter(|e| e.sound && e.kind == EdgeKind::DependsOn)
        {
            if let Some(list) = successors.get_mut(edge.from) {
                list.push((edge.to, j));
            }
        }
    }
    for cycle in find_cycles(&successors) {
        let Some(&(_, _, closing_edge)) = cycle.iter().max_by_key(|(_, _, j)| *j) else {
            continue;
        };
        let id = |n: usize| nodes.get(n).and_then(|n| n.id).unwrap_or_default();
        let mut names: Vec<&str> = cycle.iter().map(|(from, _, _)| id(*from)).collect();
        let start = names.first().copied().unwrap_or_default();
        // Name a long cycle by its start so the detail stays readable.
        const SHOWN: usize = 12;
        let length = names.len();
        let text = if length > SHOWN {
            names.truncate(SHOWN);
            format!(
                "{} → … ({} more) → {start}",
                names.join(" → "),
                length - SHOWN
            )
        } else {
            format!("{} → {start}", names.join(" → "))
        };
        p.edge(closing_edge, "", format!("`depends_on` cycle: {text}"));
    }
}

/// One cycle in each strongly connected group of more than one node of the graph given as
/// `successors[node] = [(next node, edge index)]`, as `(from, to, edge)` steps. Iterative
/// (Tarjan's algorithm with an explicit stack), so long chains cannot overflow the call stack.
fn find_cycles(successors: &[Vec<(usize, usize)>]) -> Vec<Vec<(usize, usize, usize)>> {
    let n = successors.len();
    let mut order: Vec<Option<usize>> = vec![None; n];
    let mut low = vec![0usize; n];
    let mut on_stack = vec![false; n];
    let mut stack: Vec<usize> = Vec::new();
    let mut group_of: Vec<Option<usize>> = vec![None; n];
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut counter = 0usize;

    for root in 0..n {
        if order[root].is_some() {
            continue;
        }
        // Frames of the simulated recursion: a node and the next successor to look at.
        let mut frames: Vec<(usize, usize)> = vec![(root, 0)];
        order[root] = Some(counter);
        low[root] = counter;
        counter += 1;
        stack.push(root);
        on_stack[root] = true;
        while let Some(&(node, next)) = frames.last() {
            if let Some(&(succ, _)) = successors[node].get(next) {
                if let Some(frame) = frames.last_mut() {
                    frame.1 += 1;
                }
                match order[succ] {
                    None => {
                        order[succ] = Some(counter);
                        low[succ] = counter;
                        counter += 1;
                        stack.push(succ);
                        on_stack[succ] = true;
                        frames.push((succ, 0));
                    }
                    Some(succ_order) if on_stack[succ] => {
                        low[node] = low[node].min(succ_order);
                    }
                    Some(_) => {}
                }
                continue;
            }
            frames.pop();
            if let Some(&(parent, _)) = frames.last() {
                low[parent] = low[parent].min(low[node]);
            }
            if Some(low[node]) == order[node] {
                let mut group = Vec::new();
                while let Some(member) = stack.pop() {
                    on_stack[member] = false;
                    group.push(member);
                    if member == node {
                        break;
                    }
                }
                if group.len() > 1 {
                    for &member in &group {
                        group_of[member] = Some(groups.len());
                    }
                    groups.push(group);
                }
            }
        }
    }

    // In each group, the shortest cycle through its first node (breadth-first search).
    let mut via: Vec<Option<(usize, usize)>> = vec![None; n];
    let mut cycles = Vec::with_capacity(groups.len());
    for (g, group) in groups.iter().enumerate() {
        let Some(&start) = group.iter().min() else {
            continue;
        };
        let mut queue = VecDeque::from([start]);
        let mut closing: Option<(usize, usize)> = None;
        'search: while let Some(node) = queue.pop_front() {
            for &(succ, edge) in &successors[node] {
                if group_of[succ] != Some(g) {
                    continue;
                }
                if succ == start {
                    closing = Some((node, edge));
                    break 'search;
                }
                if via[succ].is_none() {
                    via[succ] = Some((node, edge));
                    queue.push_back(succ);
                }
            }
        }
        let Some((last, closing_edge)) = closing else {
            continue;
        };
        let mut steps = vec![(last, start, closing_edge)];
        let mut node = last;
        while node != start {
            let Some((prev, edge)) = via[node] else {
                break;
            };
            steps.push((prev, node, edge));
            node = prev;
        }
        steps.reverse();
        cycles.push(steps);
    }
    cycles
}

/// Assembles the typed graph once every node and edge is known to be sound.
fn build_graph(nodes: Vec<NodeEntry>, edges: &[Option<EdgeEntry>]) -> Option<Graph> {
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

/// `value` is one of `allowed`.
fn one_of(value: &str, allowed: &[&str]) -> Result<(), String> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(format!(
            "unknown value `{value}`; one of: {}",
            allowed.join(", ")
        ))
    }
}

/// A container image reference: non-empty, no whitespace or control characters.
pub fn check_image(image: &str) -> Result<(), String> {
    if image.is_empty() {
        Err("must not be empty".to_owned())
    } else if image.chars().any(char::is_whitespace) {
        Err("an image reference must not contain whitespace".to_owned())
    } else if image.chars().any(char::is_control) {
        Err("an image reference must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

/// A string usable as an image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub fn check_image_tag(tag: &str) -> Result<(), String> {
    let mut chars = tag.chars();
    let valid = match chars.next() {
        None => return Err("must not be empty".to_owned()),
        Some(first) => {
            (first.is_ascii_alphanumeric() || first == '_')
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
        }
    };
    if !valid || tag.len() > 128 {
        return Err(
            "must be an image tag: up to 128 letters, digits, `_`, `.` and `-`, not starting with \
             `.` or `-`"
                .to_owned(),
        );
    }
    Ok(())
}

/// A C identifier, as the names in a node's `env` must be: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn check_env_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a valid environment variable name: letters, digits and `_`, not \
             starting with a digit"
        ))
    }
}

/// A variable name Kubernetes accepts on every version (the classic rule,
/// `[-._a-zA-Z][-._a-zA-Z0-9]*`): secret keys injected as variables must be one. Looser than
/// [`check_env_name`], so that keys such as `spring.profiles.active` still work.
pub fn check_env_var_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let valid = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` becomes an environment variable, so it must be letters, digits, `_`, `-` \
             and `.`, not starting with a digit"
        ))
    }
}

/// An IANA service name, as Kubernetes port names must be.
pub fn check_port_name(name: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 15
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.bytes().any(|b| b.is_ascii_lowercase())
        && !name.starts_with('-')
        && !name.ends_with('-')
        && !name.contains("--");
    if valid {
        Ok(())
    } else {
        Err(
            "a port name has 1–15 lowercase letters, digits and single inner `-`, with at least \
             one letter"
                .to_owned(),
        )
    }
}

/// A ConfigMap or Secret key: `[-._a-zA-Z0-9]+`, at most 253 characters, not `.` or `..`.
pub fn check_data_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let valid = key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && key != "..";
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a valid key: up to 253 letters, digits, `-`, `_` and `.`"
        ))
    }
}

/// A DNS-1123 subdomain: dot-separated DNS-1123 labels, at most 253 characters.
pub fn check_dns_subdomain(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.len() > 253 {
        return Err("must be at most 253 characters".to_owned());
    }
    for label in name.split('.') {
        if DnsLabel::parse(label).is_err() {
            return Err(format!(
                "`{name}` is not a DNS-1123 subdomain: dot-separated labels of lowercase letters, \
                 digits and `-`"
            ));
        }
    }
    Ok(())
}

/// An ingress host: a DNS-1123 subdomain, optionally behind a `*.` wildcard; not an IP address.
pub fn check_host(host: &str) -> Result<(), String> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Err("must be a DNS name, not an IP address".to_owned());
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    check_dns_subdomain(name)
        .map_err(|_| format!("`{host}` is not a DNS name (a `*.` prefix is allowed)"))
}

/// A container mount path: absolute, not the root, no `..` segment, and none of what
/// Kubernetes refuses in a mount path (`:`, control characters).
pub fn check_mount_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err("must be an absolute path (start with `/`)".to_owned());
    }
    if path.split('/').any(|segment| segment == "..") {
        return Err("must not contain `..`".to_owned());
    }
    if path.contains(':') || path.chars().any(char::is_control) {
        return Err("must not contain `:` or control characters".to_owned());
    }
    // `/` and `//` both mean the root, which would hide the whole image.
    if path.trim_end_matches('/').is_empty() {
        return Err("must not be the root directory".to_owned());
    }
    Ok(())
}

/// A URL path: starts with `/`, no whitespace or control characters.
pub fn check_url_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        Err("must start with `/`".to_owned())
    } else if path.chars().any(char::is_whitespace) {
        Err("must not contain whitespace".to_owned())
    } else if path.chars().any(char::is_control) {
        Err("must not contain control characters".to_owned())
    } else {
        Ok(())
    }
}

/// Suffixes of Kubernetes quantities besides decimal exponents (`1e3`), with the power of ten
/// and the power of 1024 each stands for.
const QUANTITY_SUFFIXES: [(&str, i64, u32); 16] = [
    ("", 0, 0),
    ("n", -9, 0),
    ("u", -6, 0),
    ("m", -3, 0),
    ("k", 3, 0),
    ("M", 6, 0),
    ("G", 9, 0),
    ("T", 12, 0),
    ("P", 15, 0),
    ("E", 18, 0),
    ("Ki", 0, 1),
    ("Mi", 0, 2),
    ("Gi", 0, 3),
    ("Ti", 0, 4),
    ("Pi", 0, 5),
    ("Ei", 0, 6),
];

/// The exact value of a non-negative Kubernetes quantity, for comparisons: floating point
/// would call `0.3` and `300m` different.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuantityValue {
    /// Decimal digits, most significant first, without leading or trailing zeros; empty for 0.
    digits: Vec<u8>,
    /// The value is `digits` × 10^`exponent`.
    exponent: i64,
}

impl QuantityValue {
    /// Parses `value`: a decimal number (`1`, `0.5`, `.5`) followed by a suffix (`m`, `k`,
    /// `Mi`, `G`, …) or a decimal exponent of up to three digits (`1e3`); `None` otherwise.
    pub fn parse(value: &str) -> Option<Self> {
        let number_end = value
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(value.len());
        let (number, suffix) = value.split_at(number_end);
        if !number.bytes().any(|b| b.is_ascii_digit())
            || number.bytes().filter(|&b| b == b'.').count() > 1
        {
            return None;
        }
        let (mut exponent, binary) = match QUANTITY_SUFFIXES.iter().find(|(s, _, _)| *s == suffix) {
            Some((_, ten, two)) => (*ten, *two),
            None => {
                // A decimal exponent: `e` or `E`, an optional sign, one to three digits.
                let exponent = suffix.strip_prefix(['e', 'E'])?;
                let digits = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
                if digits.is_empty()
                    || digits.len() > 3
                    || !digits.bytes().all(|b| b.is_ascii_digit())
                {
                    return None;
                }
                (exponent.parse::<i64>().ok()?, 0)
            }
        };
        let mut digits = Vec::with_capacity(number.len() + 2 * binary as usize);
        let mut in_fraction = false;
        for byte in number.bytes() {
            if byte == b'.' {
                in_fraction = true;
            } else {
                digits.push(byte - b'0');
                if in_fraction {
                    exponent -= 1;
                }
            }
        }
        for _ in 0..binary {
            multiply_digits(&mut digits, 1024);
        }
        // Leading zeros say nothing; trailing ones move into the exponent.
        let leading = digits.iter().take_while(|&&d| d == 0).count();
        digits.drain(..leading);
        while digits.last() == Some(&0) {
            digits.pop();
            exponent += 1;
        }
        if digits.is_empty() {
            exponent = 0;
        }
        Some(Self { digits, exponent })
    }

    /// Whether the quantity is zero.
    pub fn is_zero(&self) -> bool {
        self.digits.is_empty()
    }

    /// The power of ten just above the value (`0.5` → 0, `250` → 3), for ordering.
    fn magnitude(&self) -> i64 {
        i64::try_from(self.digits.len())
            .unwrap_or(i64::MAX)
            .saturating_add(self.exponent)
    }
}

impl Ord for QuantityValue {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.is_zero(), other.is_zero()) {
            (true, true) => std::cmp::Ordering::Equal,
            (true, false) => std::cmp::Ordering::Less,
            (false, true) => std::cmp::Ordering::Greater,
            // Same magnitude: digit by digit, and with no trailing zeros the longer is larger.
            (false, false) => self
                .magnitude()
                .cmp(&other.magnitude())
                .then_with(|| self.digits.cmp(&other.digits)),
        }
    }
}

impl PartialOrd for QuantityValue {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// `digits` (most significant first) × `factor`, in place.
fn multiply_digits(digits: &mut Vec<u8>, factor: u32) {
    let mut carry = 0u64;
    for digit in digits.iter_mut().rev() {
        let product = u64::from(*digit) * u64::from(factor) + carry;
        *digit = (product % 10) as u8;
        carry = product / 10;
    }
    while carry > 0 {
        digits.insert(0, (carry % 10) as u8);
        carry /= 10;
    }
}

/// Whether `value` is a non-negative Kubernetes quantity: a decimal number (`1`, `0.5`, `.5`)
/// followed by a suffix (`m`, `k`, `Mi`, `G`, …) or a decimal exponent (`1e3`).
pub fn is_quantity(value: &str) -> bool {
    QuantityValue::parse(value).is_some()
}

/// How quantity `a` compares with quantity `b`, exactly; `None` when either is not one.
pub fn compare_quantities(a: &str, b: &str) -> Option<std::cmp::Ordering> {
    Some(QuantityValue::parse(a)?.cmp(&QuantityValue::parse(b)?))
}

/// A Kubernetes quantity.
pub fn check_quantity(value: &str) -> Result<(), String> {
    if is_quantity(value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a Kubernetes quantity (like `250m`, `0.5`, `128Mi`, `1G`)"
        ))
    }
}

/// A storage size: a Kubernetes quantity above zero.
pub fn check_size(value: &str) -> Result<(), String> {
    check_quantity(value)?;
    match QuantityValue::parse(value) {
        Some(size) if !size.is_zero() => Ok(()),
        _ => Err("must be more than zero".to_owned()),
    }
}

/// Shorthands Kubernetes CronJobs accept instead of five fields.
const CRON_MACROS: [&str; 7] = [
    "@yearly",
    "@annually",
    "@monthly",
    "@weekly",
    "@daily",
    "@midnight",
    "@hourly",
];
/// Month names, `jan` = 1.
const MONTH_NAMES: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
/// Weekday names, `sun` = 0.
const DAY_NAMES: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field of a cron schedule: its name, value range and names (first name = `min`).
struct CronField {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
}

/// The five fields, in order.
const CRON_FIELDS: [CronField; 5] = [
    CronField {
        name: "minute",
        min: 0,
        max: 59,
        names: &[],
    },
    CronField {
        name: "hour",
        min: 0,
        max: 23,
        names: &[],
    },
    CronField {
        name: "day of month",
        min: 1,
        max: 31,
        names: &[],
    },
    CronField {
        name: "month",
        min: 1,
        max: 12,
        names: &MONTH_NAMES,
    },
    CronField {
        name: "day of week",
        min: 0,
        max: 7,
        names: &DAY_NAMES,
    },
];

/// A five-field cron schedule (`*/5 * * * *`, `0 3 * * MON-FRI`) or a macro (`@daily`).
pub fn check_cron(schedule: &str) -> Result<(), String> {
    let schedule = schedule.trim();
    if schedule.starts_with('@') {
        return if CRON_MACROS.contains(&schedule) {
            Ok(())
        } else {
            Err(format!(
                "unknown schedule `{schedule}`; macros: {}",
                CRON_MACROS.join(", ")
            ))
        };
    }
    let fields: Vec<&str> = schedule.split_whitespace().collect();
    if fields.len() != CRON_FIELDS.len() {
        return Err(format!(
            "a cron schedule has 5 fields (minute hour day-of-month month day-of-week), not {}",
            fields.len()
        ));
    }
    for (text, field) in fields.iter().zip(CRON_FIELDS.iter()) {
        check_cron_field(text, field)
            .map_err(|why| format!("{} field `{text}`: {why}", field.name))?;
    }
    Ok(())
}

/// One cron field: a comma list of `*`, `?` (day fields), `v` or `a-b`, each with an optional
/// `/step`.
fn check_cron_field(text: &str, field: &CronField) -> Result<(), String> {
    for item in text.split(',') {
        let (range, step) = match item.split_once('/') {
            Some((range, step)) => (range, Some(step)),
            None => (item, None),
        };
        if let Some(step) = step {
            if !step.parse::<u32>().is_ok_and(|s| s > 0) {
                return Err(format!("step `{step}` must be a positive number"));
            }
        }
        // `?` means "any" in the two day fields only.
        let day_field = field.names.len() == DAY_NAMES.len() || field.name == "day of month";
        if range == "*" || (range == "?" && day_field) {
            continue;
        }
        let (low, high) = match range.split_once('-') {
            Some((low, high)) => (low, Some(high)),
            None => (range, None),
        };
        let low = cron_value(low, field)?;
        if let Some(high) = high {
            let high = cron_value(high, field)?;
            if high < low {
                return Err(format!("range `{range}` runs backwards"));
            }
        }
    }
    Ok(())
}

/// A number or name within a cron field's range.
fn cron_value(token: &str, field: &CronField) -> Result<u32, String> {
    if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
        return match token.parse::<u32>() {
            Ok(value) if (field.min..=field.max).contains(&value) => Ok(value),
            _ => Err(format!("`{token}` is outside {}–{}", field.min, field.max)),
        };
    }
    let position = field
        .names
        .iter()
        .position(|name| name.eq_ignore_ascii_case(token));
    match position.and_then(|p| u32::try_from(p).ok()) {
        Some(p) => Ok(field.min + p),
        None => Err(format!(
            "`{token}` is not a number or name this field accepts"
        )),
    }
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

/// Escapes one JSON Pointer reference token (RFC 6901).
pub fn escape_pointer(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ingress → web → api → postgres, with the database's credentials, api's config and a
    /// migration job: every node kind but volume and cron_job, every edge kind.
    fn realistic() -> Value {
        json!({
            "nodes": [
                {"id": "edge", "kind": "ingress", "spec": {
                    "host": "shop.example.com",
                    "paths": [
                        {"path": "/", "service": "web"},
                        {"path": "/api", "service": "api", "path_type": "Prefix"}
                    ],
                    "tls": {"secret_name": "shop-example-com-tls"}
                }},
                {"id": "web", "kind": "service", "spec": {
                    "image": "ghcr.io/acme/web:1.4.2",
                    "ports": [{"port": 3000}],
                    "env": {"API_URL": "http://api:8080"},
                    "replicas": 2,
                    "probes": {"readiness_path": "/healthz"}
                }},
                {"id": "api", "kind": "service", "spec": {
                    "image": "ghcr.io/acme/api@sha256:0123456789abcdef",
                    "ports": [{"name": "http", "port": 8080}, {"name": "metrics", "port": 9090}],
                    "resources": {"cpu_request": "250m", "memory_request": "256Mi",
                                  "memory_limit": "512Mi"},
                    "autoscaling": {"min_replicas": 2, "max_replicas": 10,
                                    "target_cpu_utilization": 70}
                }},
                {"id": "migrate", "kind": "job", "spec": {
                    "image": "ghcr.io/acme/api:1.4.2", "command": ["/app/migrate"],
                    "backoff_limit": 2
                }},
                {"id": "db", "kind": "database", "spec": {
                    "engine": "postgres", "version": "16.4", "storage": "20Gi",
                    "credentials": "db-credentials",
                    "backup": {"schedule": "0 3 * * *", "retention_days": 14}
                }},
                {"id": "db-credentials", "kind": "secret_ref", "spec": {
                    "secret_name": "shop-db", "keys": ["POSTGRES_PASSWORD"]
                }},
                {"id": "api-config", "kind": "config", "spec": {
                    "data": {"LOG_LEVEL": "info", "features.json": "{}"},
                    "mount_path": "/etc/api"
                }}
            ],
            "edges": [
                {"from": "edge", "to": "web", "kind": "exposes"},
                {"from": "edge", "to": "api", "kind": "exposes"},
                {"from": "web", "to": "api", "kind": "connects", "port": 8080},
                {"from": "api", "to": "db", "kind": "connects"},
                {"from": "migrate", "to": "db", "kind": "connects", "port": 5432},
                {"from": "db-credentials", "to": "api", "kind": "mounts"},
                {"from": "db-credentials", "to": "migrate", "kind": "mounts"},
                {"from": "api-config", "to": "api", "kind": "mounts"},
                {"from": "api", "to": "migrate", "kind": "depends_on"},
                {"from": "migrate", "to": "db", "kind": "depends_on"}
            ]
        })
    }

    /// Every problem of `document` (bare, no prefix) as `(pointer, detail)`.
    fn problems(document: &Value) -> Vec<(String, String)> {
        match validate(document, "") {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| (e.pointer, e.detail)).collect(),
        }
    }

    /// Asserts that `document` has a problem at `pointer` whose detail mentions `word`.
    #[track_caller]
    fn assert_problem(document: &Value, pointer: &str, word: &str) {
        let found = problems(document);
        assert!(
            found
                .iter()
                .any(|(p, detail)| p == pointer && detail.contains(word)),
            "expected a problem at {pointer} mentioning {word:?}; got {found:#?}"
        );
    }

    /// `realistic()` with `change` applied.
    fn realistic_with(change: impl FnOnce(&mut Value)) -> Value {
        let mut document = realistic();
        change(&mut document);
        document
    }

    /// A one-service graph whose service spec is `spec`.
    fn service(spec: Value) -> Value {
        json!({"nodes": [{"id": "web", "kind": "service", "spec": spec}], "edges": []})
    }

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
    fn dependency_cycles() {
        let workload = json!({"image": "busybox"});
        let node = |id: &str| json!({"id": id, "kind": "job", "spec": workload});
        let dep = |from: &str, to: &str| json!({"from": from, "to": to, "kind": "depends_on"});
        let document = json!({
            "nodes": [node("a"), node("b"), node("c"), node("d"), node("e"), node("f")],
            "edges": [dep("a", "b"), dep("b", "c"), dep("c", "a"), dep("d", "e"), dep("e", "d"),
                      dep("c", "d"), dep("a", "f")]
        });
        let found = problems(&document);
        assert_eq!(
            found,
            [
                (
                    "/edges/2".to_owned(),
                    "`depends_on` cycle: a → b → c → a".to_owned()
                ),
                (
                    "/edges/4".to_owned(),
                    "`depends_on` cycle: d → e → d".to_owned()
                ),
            ]
        );
        // A diamond is not a cycle.
        let diamond = json!({
            "nodes": [node("a"), node("b"), node("c"), node("d")],
            "edges": [dep("a", "b"), dep("a", "c"), dep("b", "d"), dep("c", "d")]
        });
        assert!(validate(&diamond, "").is_ok());
    }

    #[test]
    fn long_chains_do_not_overflow_the_stack() {
        let count = MAX_NODES;
        let nodes: Vec<Value> = (0..count)
            .map(|i| json!({"id": format!("n{i}"), "kind": "job", "spec": {"image": "busybox"}}))
            .collect();
        let mut edges: Vec<Value> = (1..count)
            .map(|i| {
                json!({"from": format!("n{}", i - 1), "to": format!("n{i}"), "kind": "depends_on"})
            })
            .collect();
        assert!(validate(&json!({"nodes": nodes, "edges": edges}), "").is_ok());
        edges.push(json!({"from": format!("n{}", count - 1), "to": "n0", "kind": "depends_on"}));
        let found = problems(&json!({"nodes": nodes, "edges": edges}));
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].0, format!("/edges/{}", count - 1));
        assert!(found[0].1.contains("n0 → n1 → "), "{}", found[0].1);
        assert!(found[0].1.ends_with("more) → n0"), "{}", found[0].1);
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
    fn service_spec_rules() {
        let document = service(json!({
            "image": "my image",
            "ports": [
                {"port": 0},
                {"name": "http", "port": 80},
                {"name": "Metrics", "port": 9090},
                {"name": "web", "port": 80},
                {"name": "much-too-long-name", "port": 81, "protocol": "SCTP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53}
            ],
            "env": {"1BAD": "x", "GOOD_1": "y", "with-dash": "z"},
            "replicas": 1001,
            "resources": {"cpu_request": "a lot", "memory_limit": "12Q"},
            "autoscaling": {"min_replicas": 0, "max_replicas": 2000, "target_cpu_utilization": 0},
            "probes": {"liveness_path": "healthz"}
        }));
        assert_problem(&document, "/nodes/0/spec/image", "whitespace");
        assert_problem(&document, "/nodes/0/spec/ports/0/port", "1 to 65535");
        assert_problem(
            &document,
            "/nodes/0/spec/ports/1/name",
            "duplicate port name `http`",
        );
        assert_problem(&document, "/nodes/0/spec/ports/2/name", "lowercase");
        assert_problem(
            &document,
            "/nodes/0/spec/ports/3/port",
            "duplicate port 80/TCP: ports/1",
        );
        assert_problem(&document, "/nodes/0/spec/ports/4/protocol", "TCP, UDP");
        assert!(!problems(&document)
            .iter()
            .any(|(p, _)| p.starts_with("/nodes/0/spec/ports/6")));
        assert_problem(&document, "/nodes/0/spec/ports/4/name", "1–15");
        assert_problem(&document, "/nodes/0/spec/env/1BAD", "environment variable");
        assert_problem(
            &document,
            "/nodes/0/spec/env/with-dash",
            "environment variable",
        );
        assert_problem(&document, "/nodes/0/spec/replicas", "1000");
        assert_problem(&document, "/nodes/0/spec/resources/cpu_request", "quantity");
        assert_problem(
            &document,
            "/nodes/0/spec/resources/memory_limit",
            "quantity",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/autoscaling/min_replicas",
            "at least 1",
        );
        assert_problem(&document, "/nodes/0/spec/autoscaling/max_replicas", "1000");
        assert_problem(
            &document,
            "/nodes/0/spec/autoscaling/target_cpu_utilization",
            "1 to 100",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/probes/liveness_path",
            "start with `/`",
        );
        assert!(!problems(&document)
            .iter()
            .any(|(p, _)| p == "/nodes/0/spec/env/GOOD_1"));

        assert_problem(
            &service(json!({"image": ""})),
            "/nodes/0/spec/image",
            "empty",
        );
        assert_problem(
            &service(json!({"image": "nginx",
                            "autoscaling": {"min_replicas": 5, "max_replicas": 2}})),
            "/nodes/0/spec/autoscaling/max_replicas",
            "min_replicas (5)",
        );
        assert_problem(
            &service(json!({"image": "nginx", "probes": {"readiness_path": "/ready"}})),
            "/nodes/0/spec/probes",
            "need a port",
        );
    }

    #[test]
    fn job_and_cron_job_spec_rules() {
        let document = json!({"nodes": [
            {"id": "once", "kind": "job", "spec": {"image": "a\tb", "backoff_limit": 101,
                                                   "env": {"A B": "x"}}},
            {"id": "tick", "kind": "cron_job", "spec": {"image": "busybox", "schedule": "* * * *",
                                                        "concurrency_policy": "Sometimes"}},
            {"id": "tock", "kind": "cron_job", "spec": {"image": "busybox",
                                                        "schedule": "61 * * * *"}},
            {"id": "tack", "kind": "cron_job", "spec": {"image": "busybox",
                                                        "schedule": "@fortnightly"}}
        ], "edges": []});
        assert_problem(&document, "/nodes/0/spec/image", "whitespace");
        assert_problem(&document, "/nodes/0/spec/backoff_limit", "100");
        assert_problem(&document, "/nodes/0/spec/env/A B", "environment variable");
        assert_problem(&document, "/nodes/1/spec/schedule", "5 fields");
        assert_problem(
            &document,
            "/nodes/1/spec/concurrency_policy",
            "Allow, Forbid, Replace",
        );
        assert_problem(&document, "/nodes/2/spec/schedule", "minute field `61`");
        assert_problem(&document, "/nodes/3/spec/schedule", "@daily");
    }

    #[test]
    fn cron_schedules() {
        for ok in [
            "*/5 * * * *",
            "0 3 * * *",
            "0 0 1 1 *",
            "15,45 8-18 * * MON-FRI",
            "0 12 ? JAN-dec 0",
            "0 0 * * 7",
            "0-30/10 * 1-31/2 */3 ?",
            "@hourly",
            "  0 4 * * sun  ",
        ] {
            assert_eq!(check_cron(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "* * * *",
            "* * * * * *",
            "60 * * * *",
            "* 24 * * *",
            "* * 0 * *",
            "* * * 13 *",
            "* * * * 8",
            "*/0 * * * *",
            "5-1 * * * *",
            "? * * * *",
            "* * * ? *",
            "1,,2 * * * *",
            "* * * * MONDAY",
            "* * * JAN-FOO *",
            "@every 5m",
            "CRON_TZ=UTC 0 * * * *",
            "99999999999 * * * *",
        ] {
            assert!(check_cron(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn quantities() {
        for ok in [
            "1", "0", "100m", "0.5", ".5", "1.5Gi", "128Mi", "1G", "2Ti", "1e3", "5E-2", "1E",
        ] {
            assert!(is_quantity(ok), "{ok}");
        }
        for bad in [
            "", "m", "Gi", "-1", "1.2.3", "1 Gi", "1gb", "1GiB", "12Q", "1e", "1e1234", "½",
        ] {
            assert!(!is_quantity(bad), "{bad}");
        }
        assert!(check_size("0Gi").is_err());
        assert!(check_size("0.000e5").is_err());
        assert!(check_size("10Gi").is_ok());
        // Exact: a float would make 1e-999 zero.
        assert!(check_size("1e-999").is_ok());
    }

    #[test]
    fn quantities_compare_exactly() {
        use std::cmp::Ordering::{Equal, Greater, Less};
        for (a, b, expected) in [
            ("0.3", "300m", Equal),
            ("0.1", "100m", Equal),
            (".5", "500m", Equal),
            ("1Gi", "1024Mi", Equal),
            ("1Gi", "1073741824", Equal),
            ("1k", "1e3", Equal),
            ("1E", "1e18", Equal),
            ("1Ei", "1152921504606846976", Equal),
            ("0", "0m", Equal),
            ("00100.00", "1e2", Equal),
            ("1Gi", "1G", Greater),
            ("999m", "1", Less),
            ("0.125Gi", "128Mi", Equal),
            ("128Mi", "0.5Gi", Less),
            ("1e-999", "0", Greater),
            ("1.0000000000000000001", "1", Greater),
            ("12", "120m", Greater),
        ] {
            assert_eq!(compare_quantities(a, b), Some(expected), "{a} vs {b}");
            assert_eq!(
                compare_quantities(b, a),
                Some(expected.reverse()),
                "{b} vs {a}"
            );
        }
        assert_eq!(compare_quantities("lots", "1"), None);
    }

    #[test]
    fn limits_are_at_least_their_requests() {
        let with = |kind: &str, spec: Value| json!({"nodes": [{"id": "x", "kind": kind, "spec": spec}], "edges": []});
        // Against the request given…
        assert_problem(
            &service(json!({"image": "x", "resources": {"memory_request": "1Gi",
                                                         "memory_limit": "512Mi"}})),
            "/nodes/0/spec/resources/memory_limit",
            "memory request (`1Gi`)",
        );
        // …or the default of the kind: 100m for a job, 512Mi for postgres.
        assert_problem(
            &with(
                "job",
                json!({"image": "x", "resources": {"cpu_limit": "50m"}}),
            ),
            "/nodes/0/spec/resources/cpu_limit",
            "`100m`, the default",
        );
        let mut database = with(
            "database",
            json!({"engine": "postgres", "version": "16", "storage": "1Gi",
                   "resources": {"memory_limit": "256Mi"}}),
        );
        assert_problem(
            &database,
            "/nodes/0/spec/resources/memory_limit",
            "`512Mi`, the default",
        );
        database["nodes"][0]["spec"]["engine"] = json!("redis");
        assert!(validate(&database, "").is_ok(), "redis asks for 256Mi");
        // Equal values in other units are fine.
        let document = service(json!({"image": "x", "resources": {
            "cpu_request": "0.3", "cpu_limit": "300m",
            "memory_request": "1Gi", "memory_limit": "1024Mi"}}));
        assert!(validate(&document, "").is_ok());
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

    #[test]
    fn ids_clash_with_names_a_database_generates() {
        let document = json!({"nodes": [
            {"id": "db-backup", "kind": "job", "spec": {"image": "x"}},
            {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi", "backup": {"schedule": "@daily"}}},
            {"id": "data-db-0", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/x"}},
            {"id": "cache", "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi"}},
            {"id": "cache-backup", "kind": "cron_job", "spec": {"image": "x",
                                                               "schedule": "@daily"}}
        ], "edges": []});
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert_eq!(pointers, ["/nodes/1/id", "/nodes/2/id"]);
        assert_problem(&document, "/nodes/1/id", "node 0 has that id");
        assert_problem(
            &document,
            "/nodes/2/id",
            "data claim of database `db` (node 1)",
        );
    }

    #[test]
    fn database_credentials_fit_the_engine() {
        let database = |engine: &str, keys: Value, mount: Option<&str>, backup: bool| {
            let mut secret = json!({"secret_name": "s", "keys": keys});
            if let Some(path) = mount {
                secret["mount_path"] = json!(path);
            }
            let mut spec = json!({"engine": engine, "version": "16", "storage": "1Gi",
                                  "credentials": "creds"});
            if backup {
                spec["backup"] = json!({"schedule": "@daily"});
            }
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": spec},
                {"id": "creds", "kind": "secret_ref", "spec": secret}
            ], "edges": []})
        };
        let credentials = "/nodes/0/spec/credentials";
        assert_problem(
            &json!({"nodes": [{"id": "db", "kind": "database", "spec": {
                "engine": "mysql", "version": "8", "storage": "1Gi"}}], "edges": []}),
            credentials,
            "mysql needs credentials",
        );
        assert_problem(
            &database("postgres", json!(["POSTGRES_USER"]), None, false),
            credentials,
            "without `POSTGRES_PASSWORD`",
        );
        assert_problem(
            &database(
                "postgres",
                json!(["POSTGRES_PASSWORD", "PGDATA"]),
                None,
                false,
            ),
            credentials,
            "`PGDATA`, which the generated postgres pods set",
        );
        assert_problem(
            &database(
                "postgres",
                json!(["POSTGRES_PASSWORD", "PGPASSWORD"]),
                None,
                true,
            ),
            credentials,
            "`PGPASSWORD`",
        );
        assert!(
            validate(
                &database(
                    "postgres",
                    json!(["POSTGRES_PASSWORD", "PGPASSWORD"]),
                    None,
                    false
                ),
                ""
            )
            .is_ok(),
            "PGPASSWORD is only set in backup pods"
        );
        assert_problem(
            &database(
                "mysql",
                json!(["MYSQL_ROOT_PASSWORD", "1x"]),
                Some("/run/s"),
                false,
            ),
            credentials,
            "becomes an environment variable",
        );
        // Without a mount path the key is reported where it is listed.
        assert_problem(
            &database("mysql", json!(["MYSQL_ROOT_PASSWORD", "1x"]), None, false),
            "/nodes/1/spec/keys/1",
            "becomes an environment variable",
        );
        // Redis injects only the password, so other keys may be anything.
        assert!(validate(
            &database("redis", json!(["REDIS_PASSWORD", "PGDATA"]), None, false),
            ""
        )
        .is_ok());
    }

    #[test]
    fn values_kubernetes_refuses_in_paths_and_images() {
        let document = json!({"nodes": [
            {"id": "a", "kind": "service", "spec": {"image": "x\u{7f}", "ports": [{"port": 80}],
                                                   "probes": {"readiness_path": "/r\u{0}"}}},
            {"id": "v", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/a:b"}},
            {"id": "w", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "//"}}
        ], "edges": []});
        assert_problem(&document, "/nodes/0/spec/image", "control characters");
        assert_problem(
            &document,
            "/nodes/0/spec/probes/readiness_path",
            "control characters",
        );
        assert_problem(&document, "/nodes/1/spec/mount_path", "`:`");
        assert_problem(&document, "/nodes/2/spec/mount_path", "root directory");
    }

    #[test]
    fn a_workload_named_like_its_wait_container_is_refused() {
        let document = json!({"nodes": [
            {"id": "wait-for-db", "kind": "job", "spec": {"image": "migrate:1"}},
            {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi"}}
        ], "edges": [
            {"from": "wait-for-db", "to": "db", "kind": "depends_on"}
        ]});
        let errors = validate(&document, "").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].pointer, "/edges/0");
        assert!(errors[0].detail.contains("init container"), "{errors:?}");
    }

    #[test]
    fn edges_must_not_clash_with_what_pods_hold() {
        let document = json!({"nodes": [
            {"id": "web", "kind": "service", "spec": {"image": "x", "replicas": 3,
                "env": {"DB_PORT": "1"}}},
            {"id": "db", "kind": "database", "spec": {"engine": "postgres", "version": "16",
                "storage": "1Gi", "credentials": "creds"}},
            {"id": "creds", "kind": "secret_ref", "spec": {"secret_name": "s"}},
            {"id": "tmp", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/scratch"}},
            {"id": "shared", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/shared",
                                                        "access_mode": "ReadWriteMany"}},
            {"id": "conf", "kind": "config", "spec": {"data": {}, "mount_path": "/dev/shm/"}},
            {"id": "token", "kind": "secret_ref", "spec": {"secret_name": "t",
                                                          "keys": ["DB_HOST", "POSTGRES_PASSWORD"]}},
            {"id": "edge", "kind": "ingress", "spec": {"host": "x.example.com"}},
            {"id": "dns", "kind": "service", "spec": {"image": "x",
                "ports": [{"port": 53, "protocol": "UDP"}]}}
        ], "edges": [
            {"from": "web", "to": "db", "kind": "connects"},
            {"from": "tmp", "to": "web", "kind": "mounts"},
            {"from": "shared", "to": "web", "kind": "mounts"},
            {"from": "conf", "to": "db", "kind": "mounts"},
            {"from": "token", "to": "web", "kind": "mounts"},
            {"from": "token", "to": "db", "kind": "mounts"},
            {"from": "edge", "to": "dns", "kind": "exposes"}
        ]});
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            pointers,
            [
                "/nodes/0/spec/env/DB_PORT",
                "/edges/1",
                "/edges/1",
                "/edges/3",
                "/edges/4",
                "/edges/5",
                "/edges/6/to"
            ]
        );
        assert_problem(
            &document,
            "/nodes/0/spec/env/DB_PORT",
            "edge 0 (connects to `db`)",
        );
        assert_problem(&document, "/edges/1", "pod volume named `tmp`");
        assert_problem(
            &document,
            "/edges/1",
            "ReadWriteOnce volume `tmp` into `web`",
        );
        assert_problem(&document, "/edges/3", "`/dev/shm/` on `db`");
        assert_problem(&document, "/edges/4", "`DB_HOST` in `web`'s container");
        assert_problem(
            &document,
            "/edges/5",
            "already set there by its credentials",
        );
        assert_problem(&document, "/edges/6/to", "first port (53/UDP)");
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
    fn database_spec_rules() {
        let document = json!({"nodes": [
            {"id": "db", "kind": "database", "spec": {
                "engine": "postgres", "version": "16 beta", "storage": "lots",
                "storage_class": "Fast_SSD", "credentials": "nowhere",
                "backup": {"schedule": "daily", "storage": "0", "retention_days": 0}
            }},
            {"id": "db2", "kind": "database", "spec": {
                "engine": "mysql", "version": "", "storage": "1Gi", "credentials": "db"
            }}
        ], "edges": []});
        assert_problem(&document, "/nodes/0/spec/version", "image tag");
        assert_problem(&document, "/nodes/0/spec/storage", "quantity");
        assert_problem(
            &document,
            "/nodes/0/spec/storage_class",
            "DNS-1123 subdomain",
        );
        assert_problem(&document, "/nodes/0/spec/credentials", "no node `nowhere`");
        assert_problem(&document, "/nodes/0/spec/backup/schedule", "5 fields");
        assert_problem(&document, "/nodes/0/spec/backup/storage", "more than zero");
        assert_problem(&document, "/nodes/0/spec/backup/retention_days", "3650");
        assert_problem(&document, "/nodes/1/spec/version", "empty");
        assert_problem(
            &document,
            "/nodes/1/spec/credentials",
            "`db` is a database, not a secret_ref",
        );
    }

    #[test]
    fn config_secret_and_volume_spec_rules() {
        let document = json!({"nodes": [
            {"id": "cfg", "kind": "config", "spec": {
                "data": {"ok.key": "1", "bad key": "2", "a/b": "3", "..": "4"},
                "mount_path": "etc/app"
            }},
            {"id": "sec", "kind": "secret_ref", "spec": {
                "secret_name": "My.Secret", "keys": ["", "token", "token"],
                "mount_path": "/run/../etc"
            }},
            {"id": "vol", "kind": "volume", "spec": {
                "size": "5 Gi", "mount_path": "data", "access_mode": "ReadWriteSometimes",
                "storage_class": "-fast"
            }}
        ], "edges": []});
        assert_problem(&document, "/nodes/0/spec/data/bad key", "not a valid key");
        assert_problem(&document, "/nodes/0/spec/data/a~1b", "not a valid key");
        assert_problem(&document, "/nodes/0/spec/data/..", "not a valid key");
        assert_problem(&document, "/nodes/0/spec/mount_path", "absolute");
        assert_problem(&document, "/nodes/1/spec/secret_name", "DNS-1123 subdomain");
        assert_problem(&document, "/nodes/1/spec/keys/0", "empty");
        assert_problem(&document, "/nodes/1/spec/keys/2", "duplicate key `token`");
        assert_problem(&document, "/nodes/1/spec/mount_path", "`..`");
        assert_problem(&document, "/nodes/2/spec/size", "quantity");
        assert_problem(&document, "/nodes/2/spec/mount_path", "absolute");
        assert_problem(
            &document,
            "/nodes/2/spec/access_mode",
            "ReadWriteOnce, ReadWriteMany",
        );
        assert_problem(
            &document,
            "/nodes/2/spec/storage_class",
            "DNS-1123 subdomain",
        );
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert!(!pointers.contains(&"/nodes/0/spec/data/ok.key".to_owned()));
    }

    #[test]
    fn ingress_spec_rules() {
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"] = json!({
                "host": "Shop.Example.com",
                "paths": [
                    {"path": "/", "service": "web"},
                    {"path": "api", "service": "api"},
                    {"path": "/", "service": "api", "path_type": "Regex"},
                    {"path": "/db", "service": "db"},
                    {"path": "/ghost", "service": "ghost"},
                    {"path": "/worker", "service": "worker"}
                ],
                "tls": {"secret_name": "not_valid"},
                "class_name": "nginx"
            });
            d["nodes"].as_array_mut().expect("nodes").push(json!(
                {"id": "worker", "kind": "service", "spec": {"image": "w", "ports": [{"port": 1}]}}
            ));
        });
        assert_problem(&document, "/nodes/0/spec/host", "DNS name");
        assert_problem(&document, "/nodes/0/spec/paths/1/path", "start with `/`");
        assert_problem(
            &document,
            "/nodes/0/spec/paths/2/path",
            "duplicate path `/`: paths/0",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/paths/2/path_type",
            "Prefix, Exact",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/paths/3/service",
            "database, not a service",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/paths/4/service",
            "no node `ghost`",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/paths/5/service",
            "no `exposes` edge to `worker`",
        );
        assert_problem(
            &document,
            "/nodes/0/spec/tls/secret_name",
            "DNS-1123 subdomain",
        );

        for ok in [
            "example.com",
            "*.example.com",
            "localhost",
            "a-b.c1.example",
        ] {
            assert_eq!(check_host(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "*.",
            "10.0.0.1",
            "::1",
            "exa mple.com",
            "*example.com",
            "a..b",
            "a.*.b",
        ] {
            assert!(check_host(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ingress_routes() {
        // Two exposed services named by no path would both be served at `/`.
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"]["paths"] = json!([]);
        });
        assert_problem(
            &document,
            "/edges/1",
            "served at `/`, which `web` already is",
        );
        // A path at `/` owns the root too.
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"]["paths"] = json!([{"path": "/", "service": "web"}]);
        });
        assert_problem(&document, "/edges/1", "which `web` already is");
        // One unnamed service is served at `/`.
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"]["paths"] = json!([{"path": "/api", "service": "api"}]);
        });
        assert!(validate(&document, "").is_ok());
        // An ingress that exposes nothing routes nothing.
        let document = json!({"nodes": [{"id": "edge", "kind": "ingress",
                                         "spec": {"host": "example.com"}}], "edges": []});
        assert_problem(&document, "/nodes/0", "routes nothing");
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
        let readme = include_str!("../../README.md");
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
