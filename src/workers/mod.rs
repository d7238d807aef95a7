//! Background workers: the names the CLI accepts, their shared context, and the runtime that
//! hosts them.
//!
//! The outbox publisher runs here, with the spine's own job kinds (probe) and the reconciler.
//! The vCluster provisioner consumes the `vcluster` queue, the codegen runner the `codegen`
//! queue. The other roles (backups, health) are accepted and hosted but have no job kinds
//! registered until their issues land.

pub mod backoff;
pub mod codegen;
pub mod outbox_publisher;
pub mod probe;
pub mod reconciler;
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
}

/// The queue a command event is routed to (its job id is the event id), if any.
pub fn queue_for_event(event_type: &str) -> Option<&'static str> {
    match event_type {
        probe::EVENT_TYPE => Some(probe::QUEUE),
        "workspace.requested"
        | "workspace.deletion_requested"
        | "project.created"
        | "project.deleted" => Some(vcluster::QUEUE),
        "codegen.requested" => Some(codegen::QUEUE),
        _ => None,
    }
}

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
        match worker {
            WorkerName::OutboxPublisher => {
                // The publisher role also runs the spine's own consumers: webhook deliveries.
                let publisher = outbox_publisher::OutboxPublisher::new(ctx.clone());
                tasks.spawn(publisher.run(shutdown.clone()));
                tasks.spawn(webhook_sender::run(ctx.clone(), shutdown.clone()));
                // …and the spine's own job queues, and the reconciler.
                tasks.spawn(crate::jobs::run_workers(
                    ctx.clone(),
                    ctx.queues.clone(),
                    vec![probe::kind()],
                    shutdown.clone(),
                ));
                tasks.spawn(reconciler::run(ctx.clone(), shutdown.clone()));
            }
            WorkerName::CodegenRunner => {
                tasks.spawn(crate::jobs::run_workers(
                    ctx.clone(),
                    ctx.queues.clone(),
                    vec![codegen::kind()],
                    shutdown.clone(),
                ));
            }
            WorkerName::VclusterProvisioner => {
                tasks.spawn(crate::jobs::run_workers(
                    ctx.clone(),
                    ctx.queues.clone(),
                    vec![vcluster::kind()],
                    shutdown.clone(),
                ));
            }
            other => {
                let mut shutdown = shutdown.clone();
                tasks.spawn(async move {
                    tracing::info!(worker = %other, "worker started (no job kinds registered yet)");
                    while !*shutdown.borrow() {
                        if shutdown.changed().await.is_err() {
                            break;
                        }
                    }
                    tracing::info!(worker = %other, "worker stopped");
                });
            }
        }
    }
    while let Some(result) = tasks.join_next().await {
        if let Err(err) = result {
            tracing::error!(%err, "a worker task failed");
        }
    }
}
