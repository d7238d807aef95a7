//! The one typed configuration, loaded once from the environment (and `.env` if present).

mod areas;
mod env;

pub use areas::{
    BackupConfig, BackupStorage, CodegenConfig, HealthConfig, JobsConfig, KubeDriverKind,
    LimitsConfig, LlmConfig, OutboxConfig, PlanConfig, ProvisionerConfig, QueueConfig,
    SecretsKeyConfig, WebhookConfig,
};
use env::{check_http_url, duration, number, parse_failures};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Default database: an SQLite file next to the process (embedded mode).
pub const DEFAULT_DATABASE_URL: &str = "sqlite://gantry.db?mode=rwc";
/// Default audience a token must carry (`aud` or `azp`).
pub const DEFAULT_AUDIENCE: &str = "gantry";
/// Default OIDC client of generated kubeconfigs: a client of its own, so the tokens kubectl
/// caches on disk are not API bearers (they lack the API audience).
pub const DEFAULT_KUBECONFIG_CLIENT_ID: &str = "gantry-kubectl";

/// Deployment environment: decides log format and whether dev auth may exist.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// Laptops, tests: human logs, dev tokens allowed without Keycloak.
    Development,
    /// Real deployments: JSON logs, Keycloak required, no dev tokens.
    Production,
}

/// Where tokens come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfig {
    /// A Keycloak realm (`KEYCLOAK_ISSUER`), keys from its JWKS.
    Keycloak {
        /// `iss` every token must carry, e.g. `https://sso.example.com/realms/gantry`.
        issuer: String,
        /// Explicit JWKS URI; `None` = discover it from the issuer.
        jwks_uri: Option<String>,
    },
    /// Embedded dev auth: tokens minted by `gantry dev-token` with a local key.
    Embedded,
}

/// Everything Gantry reads from its environment.
#[derive(Debug, Clone)]
pub struct Config {
    /// `DATABASE_URL`: `postgres://…` or `sqlite://…`.
    pub database_url: String,
    /// `REDIS_URL`: unset means no Redis.
    pub redis_url: Option<String>,
    /// `ROCKET_ADDRESS`.
    pub address: IpAddr,
    /// `ROCKET_PORT`.
    pub port: u16,
    /// `KEYCLOAK_ISSUER` / `KEYCLOAK_JWKS_URI`.
    pub auth: AuthConfig,
    /// `KEYCLOAK_AUDIENCE`.
    pub audience: String,
    /// `GANTRY_ENV`.
    pub environment: Environment,
    /// `GANTRY_LOG`: a tracing filter.
    pub log_filter: String,
    /// `GANTRY_DATA_DIR`: local state such as the dev signing key.
    pub data_dir: PathBuf,
    /// `GANTRY_SHUTDOWN_TIMEOUT`: how long in-flight work may take after SIGTERM.
    pub shutdown_timeout: Duration,
    /// The outbox publisher's knobs.
    pub outbox: OutboxConfig,
    /// `GANTRY_OUTBOUND_ALLOW_CIDRS`: non-public ranges webhooks may reach anyway.
    pub outbound_allow: Vec<ipnet::IpNet>,
    /// How webhook deliveries are attempted.
    pub webhooks: WebhookConfig,
    /// Job queues and the worker runtime.
    pub jobs: JobsConfig,
    /// The vCluster provisioner.
    pub provisioner: ProvisionerConfig,
    /// The codegen runner (LLM engine, Git delivery).
    pub codegen: CodegenConfig,
    /// The health poller and notifier.
    pub health: HealthConfig,
    /// The backup executor (keys, storage, scheduler).
    pub backup: BackupConfig,
    /// `GANTRY_SECRETS_KEY` / `GANTRY_SECRETS_KEY_PREVIOUS`: encryption at rest of secrets.
    pub secrets: SecretsKeyConfig,
    /// Quotas, the write rate limit and event-stream limits.
    pub limits: LimitsConfig,
    /// `GANTRY_ALLOW_DEV_AUTH_ON_NETWORK`: serve embedded dev auth on a non-loopback address.
    pub allow_dev_auth_on_network: bool,
    /// `GANTRY_METRICS_PORT`: serve `/metrics` on this port (and not on `ROCKET_PORT`).
    pub metrics_port: Option<u16>,
    /// `GANTRY_AUDIT_RETENTION`: audit rows are kept this long (default 400d).
    pub audit_retention: Duration,
}

/// A configuration value that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {variable}: {reason}")]
pub struct ConfigError {
    /// The environment variable at fault.
    pub variable: &'static str,
    /// Why its value was refused.
    pub reason: String,
}

/// A [`ConfigError`] for `variable`.
fn invalid(variable: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        reason: reason.into(),
    }
}

impl Config {
    /// Reads `.env` (if present) and then the process environment.
    pub fn load() -> Result<Self, ConfigError> {
        // A missing .env is normal; a malformed one is worth refusing.
        match dotenvy::dotenv() {
            Ok(_) => {}
            Err(e) if e.not_found() => {}
            Err(e) => return Err(invalid(".env", e.to_string())),
        }
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Builds the configuration from any variable lookup (tests pass a map).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let var = |name: &str| get(name).filter(|v| !v.trim().is_empty());

        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        if !(database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://")
            || database_url.starts_with("sqlite:"))
        {
            return Err(invalid(
                "DATABASE_URL",
                "must start with postgres://, postgresql:// or sqlite:",
            ));
        }

        let redis_url = var("REDIS_URL");
        if let Some(url) = &redis_url {
            if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
                return Err(invalid(
                    "REDIS_URL",
                    "must start with redis:// or rediss://",
                ));
            }
        }

        let address = match var("ROCKET_ADDRESS") {
            None => IpAddr::from([127, 0, 0, 1]),
            Some(v) => v
                .parse()
                .map_err(|_| invalid("ROCKET_ADDRESS", format!("{v:?} is not an IP address")))?,
        };
        let port = match var("ROCKET_PORT") {
            None => 8000,
            Some(v) => v
                .parse()
                .map_err(|_| invalid("ROCKET_PORT", format!("{v:?} is not a port (0-65535)")))?,
        };

        let environment = match var("GANTRY_ENV").as_deref() {
            None | Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(invalid(
                    "GANTRY_ENV",
                    format!("{other:?} is not one of: development, production"),
                ))
            }
        };

        let audience = var("KEYCLOAK_AUDIENCE").unwrap_or_else(|| DEFAULT_AUDIENCE.to_owned());
        let jwks_uri = var("KEYCLOAK_JWKS_URI");
        if let Some(uri) = &jwks_uri {
            check_http_url("KEYCLOAK_JWKS_URI", uri)?;
        }
        let auth = match var("KEYCLOAK_ISSUER") {
            Some(issuer) => {
                check_http_url("KEYCLOAK_ISSUER", &issuer)?;
                AuthConfig::Keycloak {
                    issuer: issuer.trim_end_matches('/').to_owned(),
                    jwks_uri,
                }
            }
            None if jwks_uri.is_some() => {
                return Err(invalid(
                    "KEYCLOAK_JWKS_URI",
                    "is set but KEYCLOAK_ISSUER is not; set both or neither",
                ))
            }
            None => AuthConfig::Embedded,
        };

        let log_filter = var("GANTRY_LOG").unwrap_or_else(|| "info".to_owned());
        tracing_subscriber::EnvFilter::try_new(&log_filter)
            .map_err(|e| invalid("GANTRY_LOG", e.to_string()))?;

        let data_dir =
            PathBuf::from(var("GANTRY_DATA_DIR").unwrap_or_else(|| ".gantry".to_owned()));

        let shutdown_timeout = duration(&var, "GANTRY_SHUTDOWN_TIMEOUT", Duration::from_secs(30))?;

        let outbox = OutboxConfig {
            poll_interval: duration(
                &var,
                "GANTRY_OUTBOX_POLL_INTERVAL",
                Duration::from_millis(500),
            )?,
            lease: duration(&var, "GANTRY_OUTBOX_LEASE", Duration::from_secs(30))?,
            batch_size: number(&var, "GANTRY_OUTBOX_BATCH_SIZE", 200, 1..=10_000)?,
            stream_key: var("GANTRY_EVENT_STREAM").unwrap_or_else(|| "gantry:events".to_owned()),
            stream_maxlen: number(&var, "GANTRY_EVENT_STREAM_MAXLEN", 100_000, 1..=u64::MAX)?,
        };
        if outbox.lease < Duration::from_secs(1) {
            return Err(invalid("GANTRY_OUTBOX_LEASE", "must be at least 1s"));
        }

        let outbound_allow = crate::webhooks::outbound::OutboundPolicy::parse_allow_list(
            &var("GANTRY_OUTBOUND_ALLOW_CIDRS").unwrap_or_default(),
        )
        .map_err(|e| invalid("GANTRY_OUTBOUND_ALLOW_CIDRS", e))?;

        let webhooks = WebhookConfig {
            max_attempts: number(&var, "GANTRY_WEBHOOK_MAX_ATTEMPTS", 8, 1..=100)? as u32,
            timeout: duration(&var, "GANTRY_WEBHOOK_TIMEOUT", Duration::from_secs(10))?,
            backoff_base: duration(&var, "GANTRY_WEBHOOK_BACKOFF_BASE", Duration::from_secs(30))?,
            backoff_cap: duration(
                &var,
                "GANTRY_WEBHOOK_BACKOFF_CAP",
                Duration::from_secs(1800),
            )?,
            concurrency: number(&var, "GANTRY_WEBHOOK_CONCURRENCY", 8, 1..=256)? as usize,
        };
        if webhooks.timeout.is_zero() {
            return Err(invalid("GANTRY_WEBHOOK_TIMEOUT", "must be more than 0"));
        }

        let default_max_attempts = number(&var, "GANTRY_JOB_MAX_ATTEMPTS", 5, 1..=100)? as u32;
        let mut queues = std::collections::BTreeMap::new();
        // One entry per registered job kind, named after its queue.
        for spec in crate::workers::registry::JOB_KINDS {
            queues.insert(
                spec.queue,
                QueueConfig {
                    max_attempts: number(
                        &var,
                        spec.max_attempts_var,
                        u64::from(default_max_attempts),
                        1..=100,
                    )? as u32,
                    concurrency: number(
                        &var,
                        spec.concurrency_var,
                        spec.default_concurrency as u64,
                        1..=1024,
                    )? as usize,
                },
            );
        }
        let jobs = JobsConfig {
            prefix: var("GANTRY_QUEUE_PREFIX").unwrap_or_else(|| "gantry:".to_owned()),
            backoff_base: duration(&var, "GANTRY_JOB_BACKOFF_BASE", Duration::from_secs(1))?,
            backoff_cap: duration(&var, "GANTRY_JOB_BACKOFF_CAP", Duration::from_secs(300))?,
            heartbeat: duration(&var, "GANTRY_JOB_HEARTBEAT", Duration::from_secs(5))?,
            reconcile_interval: duration(
                &var,
                "GANTRY_RECONCILE_INTERVAL",
                Duration::from_secs(30),
            )?,
            reconcile_after: duration(&var, "GANTRY_RECONCILE_AFTER", Duration::from_secs(120))?,
            retention: duration(&var, "GANTRY_JOB_RETENTION", Duration::from_secs(24 * 3600))?,
            queues,
        };
        if jobs.heartbeat < Duration::from_secs(1) {
            return Err(invalid("GANTRY_JOB_HEARTBEAT", "must be at least 1s"));
        }
        if jobs.retention < Duration::from_secs(60) {
            return Err(invalid("GANTRY_JOB_RETENTION", "must be at least 1m"));
        }
        if jobs.reconcile_interval.is_zero() {
            return Err(invalid("GANTRY_RECONCILE_INTERVAL", "must be more than 0"));
        }

        let provisioner = ProvisionerConfig {
            driver: match var("GANTRY_KUBE_DRIVER").as_deref() {
                None | Some("simulated") => KubeDriverKind::Simulated,
                Some("kubernetes") => KubeDriverKind::Kubernetes,
                Some(other) => {
                    return Err(invalid(
                        "GANTRY_KUBE_DRIVER",
                        format!("{other:?} is not one of: simulated, kubernetes"),
                    ))
                }
            },
            simulated_delay: Duration::from_millis(number(
                &var,
                "GANTRY_SIMULATED_DELAY_MS",
                1500,
                0..=600_000,
            )?),
            simulated_failures: parse_failures(&var("GANTRY_SIMULATED_FAIL").unwrap_or_default())?,
            timeout: duration(&var, "GANTRY_PROVISION_TIMEOUT", Duration::from_secs(600))?,
            kubeconfig_client_id: var("GANTRY_KUBECONFIG_CLIENT_ID")
                .unwrap_or_else(|| DEFAULT_KUBECONFIG_CLIENT_ID.to_owned()),
            vcluster_endpoint: var("GANTRY_VCLUSTER_ENDPOINT"),
            vcluster_chart_version: var("GANTRY_VCLUSTER_CHART_VERSION")
                .unwrap_or_else(|| "0.20.0".to_owned()),
            shared: PlanConfig {
                cpu: var("GANTRY_PLAN_SHARED_CPU").unwrap_or_else(|| "2".to_owned()),
                memory: var("GANTRY_PLAN_SHARED_MEMORY").unwrap_or_else(|| "4Gi".to_owned()),
                pods: number(&var, "GANTRY_PLAN_SHARED_PODS", 50, 1..=100_000)? as u32,
                storage: var("GANTRY_PLAN_SHARED_STORAGE").unwrap_or_else(|| "10Gi".to_owned()),
                pool: None,
            },
            dedicated: PlanConfig {
                cpu: var("GANTRY_PLAN_DEDICATED_CPU").unwrap_or_else(|| "8".to_owned()),
                memory: var("GANTRY_PLAN_DEDICATED_MEMORY").unwrap_or_else(|| "16Gi".to_owned()),
                pods: number(&var, "GANTRY_PLAN_DEDICATED_PODS", 200, 1..=100_000)? as u32,
                storage: var("GANTRY_PLAN_DEDICATED_STORAGE").unwrap_or_else(|| "100Gi".to_owned()),
                pool: Some(
                    var("GANTRY_PLAN_DEDICATED_POOL")
                        .unwrap_or_else(|| "gantry.dev/pool=dedicated".to_owned()),
                ),
            },
        };
        if let Some(pool) = &provisioner.dedicated.pool {
            if !pool.contains('=') {
                return Err(invalid("GANTRY_PLAN_DEDICATED_POOL", "must be key=value"));
            }
        }

        let llm = match (var("GANTRY_LLM_BASE_URL"), var("GANTRY_LLM_MODEL")) {
            (None, None) => None,
            (Some(base_url), Some(model)) => {
                check_http_url("GANTRY_LLM_BASE_URL", &base_url)?;
                Some(LlmConfig {
                    base_url: base_url.trim_end_matches('/').to_owned(),
                    api_key: var("GANTRY_LLM_API_KEY"),
                    model,
                })
            }
            (Some(_), None) => {
                return Err(invalid(
                    "GANTRY_LLM_MODEL",
                    "is required when GANTRY_LLM_BASE_URL is set",
                ))
            }
            (None, Some(_)) => {
                return Err(invalid(
                    "GANTRY_LLM_BASE_URL",
                    "is required when GANTRY_LLM_MODEL is set",
                ))
            }
        };
        let git_allowed_schemes: Vec<String> = var("GANTRY_GIT_ALLOWED_SCHEMES")
            .unwrap_or_else(|| "https,ssh".to_owned())
            .split(',')
            .map(|s| s.trim().to_ascii_lowercase())
            .filter(|s| !s.is_empty())
            .collect();
        if let Some(bad) = git_allowed_schemes
            .iter()
            .find(|s| !matches!(s.as_str(), "https" | "http" | "ssh" | "file"))
        {
            return Err(invalid(
                "GANTRY_GIT_ALLOWED_SCHEMES",
                format!("{bad:?} is not one of: https, http, ssh, file"),
            ));
        }
        let codegen = CodegenConfig {
            llm,
            llm_timeout: duration(&var, "GANTRY_LLM_TIMEOUT", Duration::from_secs(120))?,
            llm_max_attempts: number(&var, "GANTRY_LLM_MAX_ATTEMPTS", 3, 1..=10)? as u32,
            llm_max_calls: number(&var, "GANTRY_LLM_MAX_CALLS", 10, 1..=1000)? as u32,
            git_allowed_schemes,
            git_timeout: duration(&var, "GANTRY_GIT_TIMEOUT", Duration::from_secs(120))?,
        };

        let health = HealthConfig {
            poll_interval: duration(
                &var,
                "GANTRY_HEALTH_POLL_INTERVAL",
                Duration::from_millis(500),
            )?,
            min_interval: duration(&var, "GANTRY_HEALTH_MIN_INTERVAL", Duration::from_secs(10))?,
            concurrency: number(&var, "GANTRY_HEALTH_CONCURRENCY", 256, 1..=10_000)? as usize,
            result_retention: duration(
                &var,
                "GANTRY_HEALTH_RESULT_RETENTION",
                Duration::from_secs(7 * 24 * 3600),
            )?,
            rollup_retention: duration(
                &var,
                "GANTRY_HEALTH_ROLLUP_RETENTION",
                Duration::from_secs(90 * 24 * 3600),
            )?,
            smtp_url: var("GANTRY_SMTP_URL"),
            smtp_from: var("GANTRY_SMTP_FROM").unwrap_or_else(|| "gantry@localhost".to_owned()),
            pagerduty_url: var("GANTRY_PAGERDUTY_URL")
                .unwrap_or_else(|| "https://events.pagerduty.com/v2/enqueue".to_owned()),
            notify_max_attempts: number(&var, "GANTRY_NOTIFY_MAX_ATTEMPTS", 8, 1..=100)? as u32,
            notify_backoff_base: duration(
                &var,
                "GANTRY_NOTIFY_BACKOFF_BASE",
                Duration::from_secs(10),
            )?,
            notify_backoff_cap: duration(
                &var,
                "GANTRY_NOTIFY_BACKOFF_CAP",
                Duration::from_secs(600),
            )?,
            notify_timeout: duration(&var, "GANTRY_NOTIFY_TIMEOUT", Duration::from_secs(10))?,
        };
        if health.min_interval < Duration::from_secs(1) {
            return Err(invalid("GANTRY_HEALTH_MIN_INTERVAL", "must be at least 1s"));
        }
        if health.poll_interval.is_zero() {
            return Err(invalid(
                "GANTRY_HEALTH_POLL_INTERVAL",
                "must be more than 0",
            ));
        }
        if let Some(url) = &health.smtp_url {
            if !url.starts_with("smtp://") {
                return Err(invalid("GANTRY_SMTP_URL", "must be smtp://host:port"));
            }
        }
        check_http_url("GANTRY_PAGERDUTY_URL", &health.pagerduty_url)?;
        let backup = backup_config(&var, &data_dir)?;
        let secrets = SecretsKeyConfig {
            current: key_var(&var, "GANTRY_SECRETS_KEY")?,
            previous: key_var(&var, "GANTRY_SECRETS_KEY_PREVIOUS")?,
        };
        if secrets.previous.is_some() && secrets.current.is_none() {
            return Err(invalid(
                "GANTRY_SECRETS_KEY_PREVIOUS",
                "is set but GANTRY_SECRETS_KEY is not",
            ));
        }

        let limits = LimitsConfig {
            orgs_per_user: number(&var, "GANTRY_QUOTA_ORGS_PER_USER", 10, 1..=1_000_000)?,
            workspaces_per_org: number(&var, "GANTRY_QUOTA_WORKSPACES_PER_ORG", 10, 1..=1_000_000)?,
            projects_per_workspace: number(
                &var,
                "GANTRY_QUOTA_PROJECTS_PER_WORKSPACE",
                100,
                1..=1_000_000,
            )?,
            graph_versions_kept: number(&var, "GANTRY_GRAPH_VERSIONS_KEPT", 200, 1..=1_000_000)?,
            codegen_pending_per_org: number(
                &var,
                "GANTRY_QUOTA_CODEGEN_PENDING_PER_ORG",
                20,
                1..=1_000_000,
            )?,
            webhooks_per_org: number(&var, "GANTRY_QUOTA_WEBHOOKS_PER_ORG", 20, 1..=1_000_000)?,
            streams_per_user: number(&var, "GANTRY_QUOTA_STREAMS_PER_USER", 10, 1..=1_000_000)?,
            writes_per_second: number(
                &var,
                "GANTRY_RATE_LIMIT_WRITES_PER_SECOND",
                20,
                0..=1_000_000,
            )? as u32,
            write_burst: number(&var, "GANTRY_RATE_LIMIT_WRITE_BURST", 100, 1..=1_000_000)? as u32,
            stream_recheck: duration(
                &var,
                "GANTRY_STREAM_RECHECK_INTERVAL",
                Duration::from_secs(30),
            )?,
        };
        if limits.stream_recheck.is_zero() || limits.stream_recheck > Duration::from_secs(30) {
            return Err(invalid(
                "GANTRY_STREAM_RECHECK_INTERVAL",
                "must be more than 0 and at most 30s",
            ));
        }
        let allow_dev_auth_on_network = match var("GANTRY_ALLOW_DEV_AUTH_ON_NETWORK").as_deref() {
            None | Some("false" | "0") => false,
            Some("true" | "1") => true,
            Some(other) => {
                return Err(invalid(
                    "GANTRY_ALLOW_DEV_AUTH_ON_NETWORK",
                    format!("{other:?} is not one of: true, false"),
                ))
            }
        };
        let metrics_port = match var("GANTRY_METRICS_PORT") {
            None => None,
            Some(v) => Some(
                v.parse::<u16>()
                    .ok()
                    .filter(|p| *p != port)
                    .ok_or_else(|| {
                        invalid(
                            "GANTRY_METRICS_PORT",
                            format!("{v:?} is not a port (0-65535) other than ROCKET_PORT"),
                        )
                    })?,
            ),
        };

        Ok(Self {
            database_url,
            redis_url,
            address,
            port,
            auth,
            audience,
            environment,
            log_filter,
            data_dir,
            shutdown_timeout,
            outbox,
            outbound_allow,
            webhooks,
            jobs,
            provisioner,
            codegen,
            health,
            backup,
            secrets,
            limits,
            allow_dev_auth_on_network,
            metrics_port,
            audit_retention: duration(
                &var,
                "GANTRY_AUDIT_RETENTION",
                Duration::from_secs(400 * 24 * 3600),
            )?,
        })
    }

    /// Refuses embedded dev auth in production; checked before serving or running workers.
    pub fn check_production_auth(&self) -> Result<(), ConfigError> {
        if self.environment == Environment::Production && self.auth == AuthConfig::Embedded {
            return Err(invalid(
                "KEYCLOAK_ISSUER",
                "is required when GANTRY_ENV=production (embedded dev auth is for development only)",
            ));
        }
        Ok(())
    }

    /// Refuses to serve embedded dev auth beyond loopback: anyone who can reach the port could
    /// otherwise use tokens minted from the local key (exit 2 unless explicitly allowed).
    pub fn check_dev_auth_exposure(&self) -> Result<(), ConfigError> {
        if self.auth == AuthConfig::Embedded
            && !self.address.is_loopback()
            && !self.allow_dev_auth_on_network
        {
            return Err(invalid(
                "ROCKET_ADDRESS",
                format!(
                    "{} is not a loopback address, and embedded dev auth (no KEYCLOAK_ISSUER) \
                     must not be served on a network; set KEYCLOAK_ISSUER, bind 127.0.0.1, or \
                     set GANTRY_ALLOW_DEV_AUTH_ON_NETWORK=true to accept the risk",
                    self.address
                ),
            ));
        }
        Ok(())
    }
}

impl Config {
    /// Refuses production without `GANTRY_SECRETS_KEY` (a generated key file is for
    /// development only); checked before serving or running workers.
    pub fn check_production_secrets(&self) -> Result<(), ConfigError> {
        if self.environment == Environment::Production && self.secrets.current.is_none() {
            return Err(invalid(
                "GANTRY_SECRETS_KEY",
                "is required when GANTRY_ENV=production (32 bytes, base64: openssl rand -base64 32)",
            ));
        }
        Ok(())
    }
}

/// A 32-byte key given as base64.
fn key_var(
    var: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Result<Option<[u8; 32]>, ConfigError> {
    use base64::Engine;
    let Some(text) = var(name) else {
        return Ok(None);
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .map_err(|_| invalid(name, "is not base64"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(Some)
        .map_err(|_| invalid(name, format!("must be 32 bytes, got {}", bytes.len())))
}

/// `GANTRY_BACKUP_*` (and the `AWS_*` settings of an `s3://` storage).
fn backup_config(
    var: &impl Fn(&str) -> Option<String>,
    data_dir: &std::path::Path,
) -> Result<BackupConfig, ConfigError> {
    let master_key = key_var(var, "GANTRY_BACKUP_MASTER_KEY")?;
    let previous_master_key = key_var(var, "GANTRY_BACKUP_MASTER_KEY_PREVIOUS")?;
    if previous_master_key.is_some() && master_key.is_none() {
        return Err(invalid(
            "GANTRY_BACKUP_MASTER_KEY_PREVIOUS",
            "is set but GANTRY_BACKUP_MASTER_KEY is not",
        ));
    }
    let storage = match var("GANTRY_BACKUP_STORAGE") {
        None => BackupStorage::File {
            path: data_dir.join("backups"),
        },
        Some(url) => {
            if let Some(path) = url.strip_prefix("file://") {
                if path.is_empty() {
                    return Err(invalid("GANTRY_BACKUP_STORAGE", "file:// needs a path"));
                }
                BackupStorage::File {
                    path: PathBuf::from(path),
                }
            } else if let Some(rest) = url.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    return Err(invalid("GANTRY_BACKUP_STORAGE", "s3:// needs a bucket"));
                }
                let endpoint = var("AWS_ENDPOINT_URL").or_else(|| var("AWS_ENDPOINT"));
                if let Some(endpoint) = &endpoint {
                    check_http_url("AWS_ENDPOINT_URL", endpoint)?;
                }
                BackupStorage::S3 {
                    bucket: bucket.to_owned(),
                    prefix: prefix.trim_matches('/').to_owned(),
                    endpoint,
                    region: var("AWS_REGION")
                        .or_else(|| var("AWS_DEFAULT_REGION"))
                        .unwrap_or_else(|| "us-east-1".to_owned()),
                    access_key_id: var("AWS_ACCESS_KEY_ID"),
                    secret_access_key: var("AWS_SECRET_ACCESS_KEY"),
                    allow_http: matches!(var("AWS_ALLOW_HTTP").as_deref(), Some("true" | "1")),
                }
            } else {
                return Err(invalid(
                    "GANTRY_BACKUP_STORAGE",
                    format!("{url:?} must start with file:// or s3://"),
                ));
            }
        }
    };
    let scheduler_interval = duration(
        var,
        "GANTRY_BACKUP_SCHEDULER_INTERVAL",
        Duration::from_secs(30),
    )?;
    if scheduler_interval.is_zero() {
        return Err(invalid(
            "GANTRY_BACKUP_SCHEDULER_INTERVAL",
            "must be more than 0",
        ));
    }
    Ok(BackupConfig {
        master_key,
        previous_master_key,
        storage,
        scheduler_interval,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_are_embedded_mode() {
        let config = load(&[]).expect("defaults are valid");
        assert_eq!(config.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(config.port, 8000);
        assert_eq!(config.address.to_string(), "127.0.0.1");
        assert_eq!(config.auth, AuthConfig::Embedded);
        assert_eq!(config.audience, "gantry");
        assert_eq!(config.environment, Environment::Development);
        assert_eq!(config.shutdown_timeout, Duration::from_secs(30));
        assert!(config.redis_url.is_none());
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("ROCKET_PORT", "eighty"),
            ("ROCKET_ADDRESS", "localhost:80"),
            ("DATABASE_URL", "mysql://x"),
            ("REDIS_URL", "http://x"),
            ("GANTRY_ENV", "staging"),
            ("KEYCLOAK_ISSUER", "not a url"),
            ("GANTRY_SHUTDOWN_TIMEOUT", "soon"),
            ("GANTRY_OUTBOX_BATCH_SIZE", "0"),
            ("GANTRY_OUTBOX_LEASE", "100ms"),
            ("GANTRY_OUTBOUND_ALLOW_CIDRS", "127.0.0.1/99"),
            ("GANTRY_WEBHOOK_MAX_ATTEMPTS", "0"),
            ("GANTRY_WEBHOOK_TIMEOUT", "0s"),
            ("GANTRY_BACKUP_MASTER_KEY", "c2hvcnQ="),
            ("GANTRY_BACKUP_STORAGE", "ftp://x"),
        ] {
            let err = load(&[(var, value)]).expect_err(var);
            assert_eq!(err.variable, var);
            assert!(err.to_string().contains(var));
        }
    }

    #[test]
    fn production_requires_keycloak() {
        let embedded = load(&[("GANTRY_ENV", "production")]).expect("loads");
        let err = embedded.check_production_auth().expect_err("must refuse");
        assert_eq!(err.variable, "KEYCLOAK_ISSUER");
        let ok = load(&[
            ("GANTRY_ENV", "production"),
            ("KEYCLOAK_ISSUER", "https://sso.example.com/realms/gantry/"),
        ])
        .expect("valid");
        assert_eq!(
            ok.auth,
            AuthConfig::Keycloak {
                issuer: "https://sso.example.com/realms/gantry".into(),
                jwks_uri: None
            }
        );
    }
}
