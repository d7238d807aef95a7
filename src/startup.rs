//! Turns a loaded [`Config`] into a running process: database, queues, metrics, the worker
//! context and the HTTP surface ([`Application::build`]), then runs the chosen roles until a
//! signal stops them ([`Application::run_until_stopped`]). Also the non-serving commands'
//! library side (logging set-up, `dev-token`), so `main.rs` only parses and dispatches.

use crate::app;
use crate::auth::dev::{DevKeyError, DevSigner};
use crate::config::{AuthConfig, Config, Environment};
use crate::jobs::{QueueError, Queues};
use crate::metrics::Metrics;
use crate::workers::{self, WorkerContext, WorkerName};
use rocket::{Build, Rocket};
use std::sync::Arc;
use std::time::Duration;

/// Log target of the process's lifecycle lines: the binary's, as before they moved here, so
/// filters and log queries keyed on `gantry` keep matching them.
const LOG_TARGET: &str = "gantry";

/// Installs the tracing subscriber: human-readable lines, JSON in production, on stderr.
pub fn init_logging(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log_filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if config.environment == Environment::Production {
        builder.json().flatten_event(true).init();
    } else {
        builder.init();
    }
}

/// What one process runs: the REST API and/or some workers (every process serves
/// `/health/*` and `/metrics`).
#[derive(Debug, Clone, Default)]
pub struct Roles {
    /// Serve the REST API.
    pub server: bool,
    /// The workers to run, without duplicates.
    pub workers: Vec<WorkerName>,
}

/// Why the application could not be built. The message is the context; the cause is
/// [`std::error::Error::source`].
#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    /// Connecting to or migrating the system of record failed.
    #[error("cannot open or migrate the database")]
    Database(#[source] sea_orm::DbErr),
    /// The metrics registry refused a metric.
    #[error("cannot register metrics")]
    Metrics(#[source] prometheus::Error),
    /// The job queue backend could not be opened.
    #[error("cannot open the job queues")]
    Queues(#[source] QueueError),
    /// `REDIS_URL` does not parse as a Redis URL.
    #[error("REDIS_URL is not usable")]
    Redis(#[source] redis::RedisError),
    /// The key sealing stored secrets could not be loaded (or is missing in production).
    #[error("cannot load the secrets key")]
    SecretsKey(#[source] crate::sealed::SealError),
    /// Stored plaintext secrets could not be sealed at start-up.
    #[error("cannot seal stored secrets")]
    Sealing(#[source] sea_orm::DbErr),
    /// The Rocket instance (API or operational surface) could not be assembled.
    #[error("cannot build the server")]
    Server(#[source] app::BuildError),
}

/// The server stopped with an error (after the workers were stopped); already logged.
#[derive(Debug, thiserror::Error)]
#[error("server failed: {0}")]
pub struct ServeError(#[source] Box<rocket::Error>);

/// A process ready to run its roles: everything opened and assembled, nothing started yet.
pub struct Application {
    config: Config,
    rocket: Rocket<Build>,
    /// `/metrics` on `GANTRY_METRICS_PORT`, when set.
    metrics_rocket: Option<Rocket<Build>>,
    server: bool,
    workers: Vec<WorkerName>,
    worker_ctx: WorkerContext,
}

impl Application {
    /// Opens and migrates the database, registers metrics, opens the job queues and builds the
    /// worker context and the HTTP surface (the REST API when `roles.server`, else only
    /// `/health/*` and `/metrics`).
    pub async fn build(config: Config, roles: Roles) -> Result<Application, StartupError> {
        // Before the database: production without GANTRY_SECRETS_KEY must not start at all.
        let secrets = Arc::new(
            crate::sealed::SecretsCipher::from_config(&config).map_err(StartupError::SecretsKey)?,
        );
        let db = app::open_database(&config)
            .await
            .map_err(StartupError::Database)?;
        seal_plaintext_secrets(&db, &secrets)
            .await
            .map_err(StartupError::Sealing)?;
        let metrics = Arc::new(Metrics::new().map_err(StartupError::Metrics)?);
        let queues = Queues::connect(&config, &db)
            .await
            .map_err(StartupError::Queues)?;
        let redis = config
            .redis_url
            .as_deref()
            .map(redis::Client::open)
            .transpose()
            .map_err(StartupError::Redis)?;
        let worker_ctx = WorkerContext {
            db: db.clone(),
            redis,
            config: Arc::new(config.clone()),
            metrics: metrics.clone(),
            queues: queues.clone(),
            secrets: secrets.clone(),
        };
        let metrics_rocket = app::build_metrics(&config, db.clone(), metrics.clone())
            .map_err(StartupError::Server)?;
        let rocket = if roles.server {
            app::build(&config, db, metrics, queues, secrets).await
        } else {
            app::build_ops(&config, db, metrics)
        }
        .map_err(StartupError::Server)?;
        Ok(Application {
            config,
            rocket,
            metrics_rocket,
            server: roles.server,
            workers: roles.workers,
            worker_ctx,
        })
    }

    /// The assembled HTTP surface without starting anything, for driving in process (the
    /// tests use Rocket's local client on it).
    pub fn into_rocket(self) -> Rocket<Build> {
        self.rocket
    }

    /// Starts the workers, serves until SIGINT/SIGTERM, then stops the workers within
    /// `GANTRY_SHUTDOWN_TIMEOUT`.
    pub async fn run_until_stopped(self) -> Result<(), ServeError> {
        let Application {
            config,
            rocket,
            metrics_rocket,
            server,
            workers: selected,
            worker_ctx,
        } = self;
        let metrics_server = match metrics_rocket {
            Some(metrics_rocket) => {
                let ignited = metrics_rocket.ignite().await.map_err(|err| {
                    tracing::error!(target: LOG_TARGET, %err, "metrics server failed");
                    ServeError(Box::new(err))
                })?;
                let stop = ignited.shutdown();
                tracing::info!(target: LOG_TARGET, port = config.metrics_port, "serving /metrics");
                Some((stop, tokio::spawn(ignited.launch())))
            }
            None => None,
        };
        let (stop_workers, worker_shutdown) = tokio::sync::watch::channel(false);
        let worker_task = (!selected.is_empty())
            .then(|| tokio::spawn(workers::run(worker_ctx, selected, worker_shutdown)));

        // Rocket handles SIGINT/SIGTERM itself: it stops accepting, lets in-flight requests
        // finish within the grace period, then returns, and the workers are stopped after it.
        tracing::info!(target: LOG_TARGET, address = %config.address, port = config.port, api = server, "serving");
        let served = rocket.launch().await.map(drop).map_err(|err| {
            tracing::error!(target: LOG_TARGET, %err, "server failed");
            ServeError(Box::new(err))
        });

        tracing::info!(target: LOG_TARGET, "shutting down");
        if let Some((stop, task)) = metrics_server {
            stop.notify();
            let _ = task.await;
        }
        let _ = stop_workers.send(true);
        if let Some(task) = worker_task {
            if tokio::time::timeout(config.shutdown_timeout, task)
                .await
                .is_err()
            {
                tracing::warn!(target: LOG_TARGET, "workers did not stop within GANTRY_SHUTDOWN_TIMEOUT");
            }
        }
        served
    }
}

/// Seals the values stored before encryption at rest (org secrets, webhook signing secrets)
/// under the current key; a no-op once done. Runs on every start, so an upgrade needs no
/// manual step.
async fn seal_plaintext_secrets(
    db: &sea_orm::DatabaseConnection,
    cipher: &crate::sealed::SecretsCipher,
) -> Result<(), sea_orm::DbErr> {
    let secrets = crate::store::secrets::reseal_values(db, cipher, true).await?;
    let webhooks = crate::store::webhooks::reseal_secrets(db, cipher, true).await?;
    if secrets + webhooks > 0 {
        tracing::info!(target: LOG_TARGET, secrets, webhooks, "sealed plaintext secrets at rest");
    }
    Ok(())
}

/// What `gantry rotate-secrets` re-sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotated {
    /// Org secret values.
    pub secrets: u64,
    /// Webhook signing secrets.
    pub webhooks: u64,
}

/// Why `gantry rotate-secrets` failed.
#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    /// No usable key.
    #[error(transparent)]
    Key(#[from] crate::sealed::SealError),
    /// The database refused, or a value opened with neither key.
    #[error("{0}")]
    Database(#[from] sea_orm::DbErr),
}

/// `gantry rotate-secrets`: seals every stored secret that is plaintext or sealed by another
/// key (`GANTRY_SECRETS_KEY_PREVIOUS`) again under `GANTRY_SECRETS_KEY`.
pub async fn rotate_secrets(config: &Config) -> Result<Rotated, RotateError> {
    let cipher = crate::sealed::SecretsCipher::from_config(config)?;
    let db = app::open_database(config).await?;
    let secrets = crate::store::secrets::reseal_values(&db, &cipher, false).await?;
    let webhooks = crate::store::webhooks::reseal_secrets(&db, &cipher, false).await?;
    let _ = db.close().await;
    Ok(Rotated { secrets, webhooks })
}

/// Why `gantry dev-token` refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum DevTokenError {
    /// Production never trusts the dev key.
    #[error("dev-token is refused when GANTRY_ENV=production; use Keycloak tokens")]
    Production,
    /// With Keycloak configured, the dev key is not trusted either.
    #[error(
        "dev-token is refused because KEYCLOAK_ISSUER is set ({issuer}); get a token from Keycloak"
    )]
    KeycloakConfigured {
        /// The configured issuer.
        issuer: String,
    },
    /// `--sub` was blank.
    #[error("--sub must not be empty")]
    EmptySubject,
    /// The dev key could not be loaded, created or used.
    #[error(transparent)]
    Key(#[from] DevKeyError),
}

impl DevTokenError {
    /// True when the request itself is refused (a usage error), false when minting failed.
    pub fn is_refusal(&self) -> bool {
        !matches!(self, DevTokenError::Key(_))
    }
}

/// A bearer token for `sub` signed by the local dev key (embedded auth only).
pub fn mint_dev_token(
    config: &Config,
    sub: &str,
    email: Option<&str>,
    admin: bool,
    ttl: Duration,
) -> Result<String, DevTokenError> {
    if config.environment == Environment::Production {
        return Err(DevTokenError::Production);
    }
    if let AuthConfig::Keycloak { issuer, .. } = &config.auth {
        return Err(DevTokenError::KeycloakConfigured {
            issuer: issuer.clone(),
        });
    }
    if sub.trim().is_empty() {
        return Err(DevTokenError::EmptySubject);
    }
    let signer = DevSigner::load_or_create(&config.data_dir)?;
    Ok(signer.mint(sub, email, admin, ttl, &config.audience)?)
}
