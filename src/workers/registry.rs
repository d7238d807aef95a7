//! The one table of what runs in each worker role: job kinds ([`JOB_KINDS`]) and periodic tasks
//! ([`PERIODIC_TASKS`]). Everything else is derived from it: the job kinds a role consumes, the
//! event → queue routing ([`queue_for_event`]), the per-queue knobs
//! (`GANTRY_QUEUE_<NAME>_MAX_ATTEMPTS` / `_CONCURRENCY`, see `config`), the admin API's queue
//! list and the metrics' born-at-start series.
//!
//! # Adding a worker
//!
//! 1. Write one module under `src/workers/`: a type implementing [`crate::jobs::Job`] (queue,
//!    the command events it consumes, default concurrency, typed arguments, `run`) or
//!    [`super::periodic::PeriodicTask`] (name, schedule, optional lease, `round`).
//! 2. Add one entry here: `job_kind!(WorkerName::Role, your::Job, "QUEUE")` to [`JOB_KINDS`]
//!    (the literal is the queue name in capitals, for the variable names) or
//!    `periodic_task!(WorkerName::Role, your::Task, your::Task::new)` to [`PERIODIC_TASKS`].
//!
//! A new role also needs its variant in [`WorkerName`].

use super::{
    audit_retention, backup, codegen, health, outbox_publisher, periodic, probe, reconciler,
    vcluster, webhook_sender,
};
use super::{WorkerContext, WorkerName};
use crate::jobs::{Job, JobKind};
use crate::outbox::EventType;
use futures::future::BoxFuture;
use tokio::sync::watch;

/// One job kind: who runs it, its queue and knobs, what is routed to it, and how to build it.
#[derive(Clone, Copy)]
pub struct JobKindEntry {
    /// The worker role that consumes the queue.
    pub role: WorkerName,
    /// Queue name (one per kind).
    pub queue: &'static str,
    /// Command event types routed to the queue.
    pub events: &'static [EventType],
    /// Jobs run at once per process when the concurrency variable is unset.
    pub default_concurrency: usize,
    /// `GANTRY_QUEUE_<NAME>_MAX_ATTEMPTS`: overrides `GANTRY_JOB_MAX_ATTEMPTS` for this queue.
    pub max_attempts_var: &'static str,
    /// `GANTRY_QUEUE_<NAME>_CONCURRENCY`: jobs of this queue run at once per process.
    pub concurrency_var: &'static str,
    /// Builds the kind for the runtime.
    pub build: fn() -> JobKind,
}

/// One periodic task: who runs it and how to start it.
#[derive(Clone, Copy)]
pub struct PeriodicEntry {
    /// The worker role that runs it.
    pub role: WorkerName,
    /// The task's name (its `task` metric label).
    pub name: &'static str,
    /// Runs it until shutdown.
    pub spawn: fn(WorkerContext, watch::Receiver<bool>) -> BoxFuture<'static, ()>,
}

/// A [`JobKindEntry`] for `$job` (a [`Job`] with `Default`) in `$role`; `$upper` is the queue
/// name in capitals (checked by a test).
macro_rules! job_kind {
    ($role:expr, $job:ty, $upper:literal) => {
        JobKindEntry {
            role: $role,
            queue: <$job as Job>::QUEUE,
            events: <$job as Job>::EVENT_TYPES,
            default_concurrency: <$job as Job>::DEFAULT_CONCURRENCY,
            max_attempts_var: concat!("GANTRY_QUEUE_", $upper, "_MAX_ATTEMPTS"),
            concurrency_var: concat!("GANTRY_QUEUE_", $upper, "_CONCURRENCY"),
            build: || crate::jobs::kind(<$job>::default()),
        }
    };
}

/// A [`PeriodicEntry`] for `$task` in `$role`, built by `$new(ctx)`.
macro_rules! periodic_task {
    ($role:expr, $task:ty, $new:expr) => {
        PeriodicEntry {
            role: $role,
            name: <$task as periodic::PeriodicTask>::NAME,
            spawn: |ctx, shutdown| {
                let task: $task = $new(ctx.clone());
                Box::pin(periodic::run(ctx, task, shutdown))
            },
        }
    };
}

/// Every job kind, one entry each.
pub static JOB_KINDS: &[JobKindEntry] = &[
    job_kind!(WorkerName::OutboxPublisher, probe::Probe, "PROBE"),
    job_kind!(WorkerName::CodegenRunner, codegen::CodegenRunner, "CODEGEN"),
    job_kind!(
        WorkerName::VclusterProvisioner,
        vcluster::Provisioner,
        "VCLUSTER"
    ),
    job_kind!(WorkerName::BackupExecutor, backup::BackupExecutor, "BACKUP"),
];

/// Every periodic task, one entry each.
pub static PERIODIC_TASKS: &[PeriodicEntry] = &[
    periodic_task!(
        WorkerName::OutboxPublisher,
        outbox_publisher::OutboxPublisher,
        outbox_publisher::OutboxPublisher::new
    ),
    PeriodicEntry {
        role: WorkerName::OutboxPublisher,
        name: <webhook_sender::WebhookSenderTask as periodic::PeriodicTask>::NAME,
        // The only task whose construction can fail (its HTTP client).
        spawn: |ctx, shutdown| {
            Box::pin(async move {
                match webhook_sender::WebhookSenderTask::new(ctx.clone()) {
                    Ok(task) => periodic::run(ctx, task, shutdown).await,
                    Err(err) => tracing::error!(
                        %err,
                        "cannot build the webhook HTTP client; webhooks are not sent"
                    ),
                }
            })
        },
    },
    periodic_task!(
        WorkerName::OutboxPublisher,
        reconciler::Reconciler,
        reconciler::Reconciler::new
    ),
    periodic_task!(
        WorkerName::OutboxPublisher,
        reconciler::WorkspaceGauges,
        reconciler::WorkspaceGauges::new
    ),
    periodic_task!(
        WorkerName::OutboxPublisher,
        audit_retention::AuditRetention,
        audit_retention::AuditRetention::new
    ),
    periodic_task!(
        WorkerName::HealthPoller,
        health::Poller,
        health::Poller::new
    ),
    periodic_task!(
        WorkerName::HealthPoller,
        health::notify::Notifier,
        health::notify::Notifier::new
    ),
    periodic_task!(
        WorkerName::HealthPoller,
        health::retention::Retention,
        health::retention::Retention::new
    ),
    periodic_task!(
        WorkerName::BackupExecutor,
        backup::scheduler::BackupScheduler,
        backup::scheduler::BackupScheduler::new
    ),
];

/// The queue a command event is routed to (its job id is the event id), if any.
pub fn queue_for(event_type: EventType) -> Option<&'static str> {
    JOB_KINDS
        .iter()
        .find(|kind| kind.events.contains(&event_type))
        .map(|kind| kind.queue)
}

/// [`queue_for`] by stored name (an outbox row); names Gantry does not know route nowhere.
pub fn queue_for_event(event_type: &str) -> Option<&'static str> {
    EventType::parse(event_type).and_then(queue_for)
}

/// The registered job kind consuming `queue`, if any.
pub fn job_kind(queue: &str) -> Option<&'static JobKindEntry> {
    JOB_KINDS.iter().find(|kind| kind.queue == queue)
}

/// Every queue name, in registry order.
pub fn queue_names() -> impl Iterator<Item = &'static str> {
    JOB_KINDS.iter().map(|kind| kind.queue)
}

/// The job kinds `role` consumes.
pub fn job_kinds_of(role: WorkerName) -> Vec<JobKind> {
    JOB_KINDS
        .iter()
        .filter(|kind| kind.role == role)
        .map(|kind| (kind.build)())
        .collect()
}

/// The periodic tasks `role` runs.
pub fn periodic_tasks_of(role: WorkerName) -> impl Iterator<Item = &'static PeriodicEntry> {
    PERIODIC_TASKS.iter().filter(move |task| task.role == role)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variable_names_follow_the_queue_name() {
        for kind in JOB_KINDS {
            let upper = kind.queue.to_ascii_uppercase();
            assert_eq!(
                kind.max_attempts_var,
                format!("GANTRY_QUEUE_{upper}_MAX_ATTEMPTS")
            );
            assert_eq!(
                kind.concurrency_var,
                format!("GANTRY_QUEUE_{upper}_CONCURRENCY")
            );
            assert_eq!((kind.build)().queue(), kind.queue);
        }
    }

    #[test]
    fn each_queue_and_event_is_registered_once() {
        let mut queues: Vec<_> = queue_names().collect();
        queues.sort_unstable();
        queues.dedup();
        assert_eq!(queues.len(), JOB_KINDS.len());
        let mut events: Vec<_> = JOB_KINDS
            .iter()
            .flat_map(|k| k.events.iter().map(|e| e.as_str()))
            .collect();
        let count = events.len();
        events.sort_unstable();
        events.dedup();
        assert_eq!(events.len(), count, "an event routed to two queues");
    }

    #[test]
    fn routing_is_as_documented() {
        for (event, queue) in [
            ("probe.requested", Some("probe")),
            ("workspace.requested", Some("vcluster")),
            ("workspace.deletion_requested", Some("vcluster")),
            ("project.created", Some("vcluster")),
            ("project.deleted", Some("vcluster")),
            ("codegen.requested", Some("codegen")),
            ("backup.requested", Some("backup")),
            ("restore.requested", Some("backup")),
            ("backup.succeeded", None),
            ("workspace.ready", None),
        ] {
            assert_eq!(queue_for_event(event), queue, "{event}");
            let typed = EventType::parse(event).expect("a known event type");
            assert_eq!(queue_for(typed), queue, "{event}");
        }
    }

    #[test]
    fn knobs_and_defaults_are_unchanged() {
        let knobs: Vec<_> = JOB_KINDS
            .iter()
            .map(|k| (k.queue, k.default_concurrency, k.role))
            .collect();
        assert_eq!(
            knobs,
            [
                ("probe", 16, WorkerName::OutboxPublisher),
                ("codegen", 4, WorkerName::CodegenRunner),
                ("vcluster", 8, WorkerName::VclusterProvisioner),
                ("backup", 2, WorkerName::BackupExecutor),
            ]
        );
    }
}
