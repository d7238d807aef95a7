//! The graph's types: nodes, their kinds' specs and edges, with their serde and JSON Schema shape.

use super::generated::{
    DefaultRequests, DATA_VOLUME, PGDATA, REDISCLI_AUTH, SHM_PATH, SHM_VOLUME, TMP_PATH, TMP_VOLUME,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::BTreeMap;

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
    pub(super) fn parse(value: &str) -> Option<Self> {
        match value {
            "connects" => Some(EdgeKind::Connects),
            "exposes" => Some(EdgeKind::Exposes),
            "mounts" => Some(EdgeKind::Mounts),
            "depends_on" => Some(EdgeKind::DependsOn),
            _ => None,
        }
    }

    /// Node kinds an edge of this kind may start at and end at.
    pub(super) fn pairing(self) -> (&'static [&'static str], &'static [&'static str]) {
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
