//! The `probe` job kind: a no-op that records its completion once per event id, for
//! smoke-testing the pipeline (`POST /v1/admin/probes`), the crash tests and the benchmark.

use super::WorkerContext;
use crate::jobs::{Command, Job, JobEnvelope, JobError};
use crate::outbox::EventType;
use crate::store;

/// Queue name.
pub const QUEUE: &str = Probe::QUEUE;
/// The command event routed to this queue (written by a probe batch request).
pub use crate::resources::probe::EVENT_TYPE;

/// Arguments of a probe job (the event's data).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct ProbeArgs {
    /// The batch this probe belongs to.
    pub batch_id: uuid::Uuid,
    /// Simulated work per run, in milliseconds (for crash tests and benchmarks).
    #[serde(default)]
    pub delay_ms: u64,
    /// The first this-many attempts fail (retryably), to exercise retries and dead jobs.
    #[serde(default)]
    pub fail_attempts: u32,
}

/// The probe job kind.
#[derive(Debug, Default)]
pub struct Probe;

#[async_trait::async_trait]
impl Job for Probe {
    const QUEUE: &'static str = "probe";
    const EVENT_TYPES: &'static [EventType] = &[EventType::ProbeRequested];
    const DEFAULT_CONCURRENCY: usize = 16;
    type Args = Command<ProbeArgs>;

    async fn run(
        &self,
        ctx: &WorkerContext,
        args: Self::Args,
        job: &JobEnvelope,
    ) -> Result<(), JobError> {
        let args = args.data;
        if args.delay_ms > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(args.delay_ms)).await;
        }
        if job.attempt <= args.fail_attempts {
            return Err(JobError::Retryable(format!(
                "probe told to fail its first {} attempts",
                args.fail_attempts
            )));
        }
        store::jobs::record_probe_run(&ctx.db, job.job_id, args.batch_id, job.enqueued_at).await?;
        Ok(())
    }
}
