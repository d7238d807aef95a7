//! Background workers: the names the CLI accepts, their shared context, and the runtime that
//! hosts them.
//!
//! What each role runs is one table, [`registry`] (which also says how to add a worker): the
//! `outbox-publisher` role runs the outbox publisher, the webhook sender, the reconciler and the
//! spine's own job kind (`probe`); the vCluster provisioner consumes the `vcluster` queue, the
//! codegen runner the `codegen` queue, the backup executor the `backup` queue (and the backup
//! scheduler); the health poller runs the `health` periodic tasks (poller, notifier,
//! retention).

pub mod audit_retention;
pub mod backoff;
pub mod backup;
pub mod codegen;
pub mod health;
pub mod outbox_publisher;
pub mod periodic;
pub mod probe;
pub mod reconciler;
pub mod registry;
pub mod vcluster;
pub mod webhook_sender;

use crate::config::Config;
use crate::metrics::Metrics;
use clap::ValueEnum;
use sea_orm::DatabaseConnection;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

/// What every worker gets: the database, Redis (if configured), configuration and metrics.
#[derive(Clone)]
pub struct WorkerContext {
    /// The system of record.
    pub db: DatabaseConnection,
    /// Redis, when `REDIS_URL` is set.
    pub redis: Option<redis::Client>,
    /// The configuration.
    pub config: Arc<Config>,
    /// The process's metrics.
    pub metrics: Arc<Metrics>,
    /// The job queues.
    pub queues: crate::jobs::Queues,
    /// Opens stored secrets (org secrets, webhook signing secrets).
    pub secrets: Arc<crate::sealed::SecretsCipher>,
}

pub use registry::queue_for_event;

/// Every worker role, as named on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ValueEnum)]
pub enum WorkerName {
    /// Publishes outbox events to queues, the event stream and webhooks.
    OutboxPublisher,
    /// Turns project graphs into Kubernetes manifests.
    CodegenRunner,
    /// Provisions workspaces as vClusters.
    VclusterProvisioner,
    /// Runs scheduled backups.
    BackupExecutor,
    /// Polls health checks.
    HealthPoller,
}

impl WorkerName {
    /// The command-line name.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkerName::OutboxPublisher => "outbox-publisher",
            WorkerName::CodegenRunner => "codegen-runner",
            WorkerName::VclusterProvisioner => "vcluster-provisioner",
            WorkerName::BackupExecutor => "backup-executor",
            WorkerName::HealthPoller => "health-poller",
        }
    }

    /// Every worker.
    pub fn all() -> Vec<WorkerName> {
        WorkerName::value_variants().to_vec()
    }
}

impl fmt::Display for WorkerName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Runs the selected workers until `shutdown` turns true, then waits for each to finish its
/// current round.
pub async fn run(ctx: WorkerContext, workers: Vec<WorkerName>, shutdown: watch::Receiver<bool>) {
    let mut tasks = tokio::task::JoinSet::new();
    for worker in workers {
        let kinds = registry::job_kinds_of(worker);
        let mut hosted = !kinds.is_empty();
        if hosted {
            tasks.spawn(crate::jobs::run_workers(
                ctx.clone(),
                ctx.queues.clone(),
                kinds,
                shutdown.clone(),
            ));
        }
        for task in registry::periodic_tasks_of(worker) {
            hosted = true;
            tasks.spawn((task.spawn)(ctx.clone(), shutdown.clone()));
        }
        if !hosted {
            let mut shutdown = shutdown.clone();
            tasks.spawn(async move {
                tracing::info!(worker = %worker, "worker started (no job kinds registered yet)");
                while !*shutdown.borrow() {
                    if shutdown.changed().await.is_err() {
                        break;
                    }
                }
                tracing::info!(worker = %worker, "worker stopped");
            });
        }
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(err) = result {
            tracing::error!(%err, "a worker task failed");
        }
    }
}
