//! Background workers: the names the CLI accepts and the runtime that hosts them.
//!
//! Each worker will be a module here with the same shape (job type, queue, concurrency,
//! handler). Until the spine lands, a selected worker only holds its place in the process and
//! stops cleanly on shutdown.

use clap::ValueEnum;
use std::fmt;
use tokio::sync::watch;

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

/// Runs the selected workers until `shutdown` turns true.
pub async fn run(workers: Vec<WorkerName>, mut shutdown: watch::Receiver<bool>) {
    for worker in &workers {
        tracing::info!(worker = %worker, "worker started (no job kinds registered yet)");
    }
    while !*shutdown.borrow() {
        if shutdown.changed().await.is_err() {
            break;
        }
    }
    for worker in &workers {
        tracing::info!(worker = %worker, "worker stopped");
    }
}
