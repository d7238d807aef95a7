//! What the generated objects use themselves. It lives here, next to the rules that keep the
//! graph clear of it, and the templates take it from here, so the two cannot drift apart.

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
