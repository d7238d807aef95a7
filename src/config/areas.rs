//! The per-area settings: outbox, webhooks, job queues, the vCluster provisioner, codegen.

use std::time::Duration;

/// Which host-cluster driver the provisioner uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KubeDriverKind {
    /// kube-rs against a real (K3s) host cluster.
    Kubernetes,
    /// The same state machine with objects kept in the database (embedded mode).
    Simulated,
}

/// The codegen runner's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct CodegenConfig {
    /// The `llm` engine's endpoint; `None` when `GANTRY_LLM_BASE_URL` is unset (engine refused).
    pub llm: Option<LlmConfig>,
    /// `GANTRY_LLM_TIMEOUT`: one chat-completions request.
    pub llm_timeout: Duration,
    /// `GANTRY_LLM_MAX_ATTEMPTS`: answers that fail to parse before the job fails.
    pub llm_max_attempts: u32,
    /// `GANTRY_LLM_MAX_CALLS`: chat-completions requests one job may send in all (answers ×
    /// HTTP tries).
    pub llm_max_calls: u32,
    /// `GANTRY_GIT_ALLOWED_SCHEMES`: URL schemes `target.git.url` may use.
    pub git_allowed_schemes: Vec<String>,
    /// `GANTRY_GIT_TIMEOUT`: one git command (clone, push).
    pub git_timeout: Duration,
}

/// An OpenAI-compatible chat-completions endpoint.
#[derive(Clone, PartialEq)]
pub struct LlmConfig {
    /// `GANTRY_LLM_BASE_URL`: up to `/v1` (the client appends `/chat/completions`).
    pub base_url: String,
    /// `GANTRY_LLM_API_KEY`: sent as a bearer token when set.
    pub api_key: Option<String>,
    /// `GANTRY_LLM_MODEL`.
    pub model: String,
}

impl std::fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never reaches a log line.
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .field("model", &self.model)
            .finish()
    }
}

/// Keys sealing stored secrets at rest. Its `Debug` shows whether a key is set, never the key.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretsKeyConfig {
    /// `GANTRY_SECRETS_KEY`: seals new values; `None` = generated into the data dir
    /// (development only).
    pub current: Option<[u8; 32]>,
    /// `GANTRY_SECRETS_KEY_PREVIOUS`: still opens values sealed before a rotation.
    pub previous: Option<[u8; 32]>,
}

impl std::fmt::Debug for SecretsKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsKeyConfig")
            .field("current", &self.current.map(|_| "<redacted>"))
            .field("previous", &self.previous.map(|_| "<redacted>"))
            .finish()
    }
}

/// vCluster provisioner knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionerConfig {
    /// `GANTRY_KUBE_DRIVER`: `simulated` (default) or `kubernetes`.
    pub driver: KubeDriverKind,
    /// `GANTRY_SIMULATED_DELAY_MS`: how long each simulated step takes.
    pub simulated_delay: Duration,
    /// `GANTRY_SIMULATED_FAIL`: workspace names whose simulated provisioning fails, each
    /// `name` (always) or `name:N` (the first N attempts).
    pub simulated_failures: Vec<(String, Option<u32>)>,
    /// `GANTRY_PROVISION_TIMEOUT`: how long a workspace may take to become ready (or go away).
    pub timeout: Duration,
    /// `GANTRY_KUBECONFIG_CLIENT_ID`: OIDC client id in generated kubeconfigs (default
    /// `gantry-kubectl`).
    pub kubeconfig_client_id: String,
    /// `GANTRY_VCLUSTER_ENDPOINT`: how a vCluster's API is reached, with `{release}` and
    /// `{namespace}` filled in (default `https://{release}.{namespace}.svc:443`).
    pub vcluster_endpoint: Option<String>,
    /// `GANTRY_VCLUSTER_CHART_VERSION`: version of the `vcluster` chart installed.
    pub vcluster_chart_version: String,
    /// Plans: `shared` and `dedicated`.
    pub shared: PlanConfig,
    /// The dedicated plan.
    pub dedicated: PlanConfig,
}

/// A plan's resources (`GANTRY_PLAN_<PLAN>_…`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanConfig {
    /// `…_CPU`: CPU limit of the workspace namespace.
    pub cpu: String,
    /// `…_MEMORY`: memory limit.
    pub memory: String,
    /// `…_PODS`: pod count limit.
    pub pods: u32,
    /// `…_STORAGE`: storage requests limit.
    pub storage: String,
    /// `GANTRY_PLAN_DEDICATED_POOL`: `key=value` node label (and toleration) of the dedicated
    /// pool; `None` for shared.
    pub pool: Option<String>,
}

/// Per-queue settings after defaults are applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueConfig {
    /// Attempts before a failing job becomes dead.
    pub max_attempts: u32,
    /// Jobs run at once per process.
    pub concurrency: usize,
}

/// Job-queue knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobsConfig {
    /// `GANTRY_QUEUE_PREFIX`: prepended to every queue name in the backend (Redis keys,
    /// `job_queue.queue`), so several deployments can share one Redis.
    pub prefix: String,
    /// `GANTRY_JOB_BACKOFF_BASE`: first retry ceiling; doubles per attempt (full jitter).
    pub backoff_base: Duration,
    /// `GANTRY_JOB_BACKOFF_CAP`: largest retry ceiling.
    pub backoff_cap: Duration,
    /// `GANTRY_JOB_HEARTBEAT`: how often a worker proves it is alive (and polls when idle);
    /// a dead worker's jobs are rescued after three missed heartbeats.
    pub heartbeat: Duration,
    /// `GANTRY_RECONCILE_INTERVAL`: how often the reconciler looks for work without a live job.
    pub reconcile_interval: Duration,
    /// `GANTRY_RECONCILE_AFTER`: how long routed work may stay unfinished before the reconciler
    /// enqueues it again.
    pub reconcile_after: Duration,
    /// `GANTRY_JOB_RETENTION`: how long finished jobs are remembered by the queue backend (they
    /// also guard against routing an event twice, so keep it well above `GANTRY_OUTBOX_LEASE`).
    pub retention: Duration,
    /// Per-queue settings (`GANTRY_JOB_MAX_ATTEMPTS` and `GANTRY_QUEUE_<NAME>_…`).
    pub queues: std::collections::BTreeMap<&'static str, QueueConfig>,
}

impl JobsConfig {
    /// Settings of `queue` (defaults for a queue not in `workers::registry::JOB_KINDS`).
    pub fn queue(&self, queue: &str) -> QueueConfig {
        self.queues.get(queue).cloned().unwrap_or(QueueConfig {
            max_attempts: 5,
            concurrency: 8,
        })
    }
}

/// Webhook delivery knobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookConfig {
    /// `GANTRY_WEBHOOK_MAX_ATTEMPTS`: attempts before a delivery is `failed`.
    pub max_attempts: u32,
    /// `GANTRY_WEBHOOK_TIMEOUT`: bound on one attempt.
    pub timeout: Duration,
    /// `GANTRY_WEBHOOK_BACKOFF_BASE`: first retry ceiling; it doubles per attempt (full jitter).
    pub backoff_base: Duration,
    /// `GANTRY_WEBHOOK_BACKOFF_CAP`: largest retry ceiling.
    pub backoff_cap: Duration,
    /// `GANTRY_WEBHOOK_CONCURRENCY`: attempts in flight per process.
    pub concurrency: usize,
}

/// How the outbox publisher claims and routes events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxConfig {
    /// `GANTRY_OUTBOX_POLL_INTERVAL`: wait between polls when idle (the only delay on SQLite;
    /// on Postgres `LISTEN/NOTIFY` wakes the publisher at once).
    pub poll_interval: Duration,
    /// `GANTRY_OUTBOX_LEASE`: how long a claimed batch is held before another publisher may
    /// re-claim it (a crashed publisher's events come back after this).
    pub lease: Duration,
    /// `GANTRY_OUTBOX_BATCH_SIZE`: events claimed at once.
    pub batch_size: u64,
    /// `GANTRY_EVENT_STREAM`: the Redis stream every event is appended to.
    pub stream_key: String,
    /// `GANTRY_EVENT_STREAM_MAXLEN`: approximate length the stream is trimmed to.
    pub stream_maxlen: u64,
}

/// The health poller's and notifier's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthConfig {
    /// `GANTRY_HEALTH_POLL_INTERVAL`: how often a poller looks for due checks.
    pub poll_interval: Duration,
    /// `GANTRY_HEALTH_MIN_INTERVAL`: the smallest check interval accepted (the contract's 10s;
    /// lowered only by tests).
    pub min_interval: Duration,
    /// `GANTRY_HEALTH_CONCURRENCY`: checks in flight per poller process.
    pub concurrency: usize,
    /// `GANTRY_HEALTH_RESULT_RETENTION`: raw results are kept this long, then rolled up hourly.
    pub result_retention: Duration,
    /// `GANTRY_HEALTH_ROLLUP_RETENTION`: hourly rollups are kept this long.
    pub rollup_retention: Duration,
    /// `GANTRY_SMTP_URL`: `smtp://host:port` for email channels (unset: email is refused).
    pub smtp_url: Option<String>,
    /// `GANTRY_SMTP_FROM`: sender address of alert emails.
    pub smtp_from: String,
    /// `GANTRY_PAGERDUTY_URL`: Events API v2 endpoint for `pagerduty` channels without a `url`.
    pub pagerduty_url: String,
    /// `GANTRY_NOTIFY_MAX_ATTEMPTS`: attempts before a notification is `failed`.
    pub notify_max_attempts: u32,
    /// `GANTRY_NOTIFY_BACKOFF_BASE`: first retry ceiling; doubles per attempt (full jitter).
    pub notify_backoff_base: Duration,
    /// `GANTRY_NOTIFY_BACKOFF_CAP`: largest retry ceiling.
    pub notify_backoff_cap: Duration,
    /// `GANTRY_NOTIFY_TIMEOUT`: bound on one notification attempt.
    pub notify_timeout: Duration,
}

/// The backup executor's settings.
#[derive(Clone, PartialEq, Eq)]
pub struct BackupConfig {
    /// `GANTRY_BACKUP_MASTER_KEY`: 32 bytes that wrap every workspace data key; `None` leaves
    /// backups disabled (backups and restores fail with `not_configured`).
    pub master_key: Option<[u8; 32]>,
    /// `GANTRY_BACKUP_MASTER_KEY_PREVIOUS`: the key before a rotation; data keys still wrapped
    /// by it are unwrapped with it and re-wrapped with the current one.
    pub previous_master_key: Option<[u8; 32]>,
    /// `GANTRY_BACKUP_STORAGE`: where chunks and manifests go.
    pub storage: BackupStorage,
    /// `GANTRY_BACKUP_SCHEDULER_INTERVAL`: how often due policies and retention are checked.
    pub scheduler_interval: Duration,
}

impl std::fmt::Debug for BackupConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Keys never reach a log line.
        f.debug_struct("BackupConfig")
            .field("master_key", &self.master_key.map(|_| "<redacted>"))
            .field(
                "previous_master_key",
                &self.previous_master_key.map(|_| "<redacted>"),
            )
            .field("storage", &self.storage)
            .field("scheduler_interval", &self.scheduler_interval)
            .finish()
    }
}

/// Where backups are stored.
#[derive(Clone, PartialEq, Eq)]
pub enum BackupStorage {
    /// A local folder (`file:///path`).
    File {
        /// The folder.
        path: std::path::PathBuf,
    },
    /// An S3-compatible bucket (`s3://bucket/prefix`).
    S3 {
        /// Bucket.
        bucket: String,
        /// Prefix inside the bucket (may be empty).
        prefix: String,
        /// `AWS_ENDPOINT_URL`: e.g. MinIO's address; `None` = AWS.
        endpoint: Option<String>,
        /// `AWS_REGION` / `AWS_DEFAULT_REGION` (default `us-east-1`).
        region: String,
        /// `AWS_ACCESS_KEY_ID`.
        access_key_id: Option<String>,
        /// `AWS_SECRET_ACCESS_KEY`.
        secret_access_key: Option<String>,
        /// `AWS_ALLOW_HTTP`: plain HTTP endpoints allowed.
        allow_http: bool,
    },
}

impl BackupStorage {
    /// The URL recorded on each backup (`file:///…` or `s3://bucket/prefix`).
    pub fn location(&self) -> String {
        match self {
            BackupStorage::File { path } => format!("file://{}", path.display()),
            BackupStorage::S3 { bucket, prefix, .. } if prefix.is_empty() => {
                format!("s3://{bucket}")
            }
            BackupStorage::S3 { bucket, prefix, .. } => format!("s3://{bucket}/{prefix}"),
        }
    }
}

impl std::fmt::Debug for BackupStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The secret key never reaches a log line.
        f.write_str(&self.location())
    }
}

/// Tenancy quotas, the write rate limit and event-stream limits (README "Security").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitsConfig {
    /// `GANTRY_QUOTA_ORGS_PER_USER`: organizations one user may create (owns).
    pub orgs_per_user: u64,
    /// `GANTRY_QUOTA_WORKSPACES_PER_ORG`: live workspaces per organization.
    pub workspaces_per_org: u64,
    /// `GANTRY_QUOTA_PROJECTS_PER_WORKSPACE`: live projects per workspace.
    pub projects_per_workspace: u64,
    /// `GANTRY_GRAPH_VERSIONS_KEPT`: graph versions kept per project; older ones are pruned.
    pub graph_versions_kept: u64,
    /// `GANTRY_QUOTA_CODEGEN_PENDING_PER_ORG`: codegen jobs pending or running per organization.
    pub codegen_pending_per_org: u64,
    /// `GANTRY_QUOTA_WEBHOOKS_PER_ORG`: live webhooks per organization.
    pub webhooks_per_org: u64,
    /// `GANTRY_QUOTA_STREAMS_PER_USER`: SSE streams one user may hold open per process.
    pub streams_per_user: u64,
    /// `GANTRY_RATE_LIMIT_WRITES_PER_SECOND`: sustained writes per caller (0 = no limit).
    pub writes_per_second: u32,
    /// `GANTRY_RATE_LIMIT_WRITE_BURST`: writes a caller may make at once.
    pub write_burst: u32,
    /// `GANTRY_STREAM_RECHECK_INTERVAL`: how often an open stream re-checks membership.
    pub stream_recheck: Duration,
}
