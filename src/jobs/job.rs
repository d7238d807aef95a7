//! The [`Job`] trait a worker module implements, and the erased form the runtime holds.

use super::{JobEnvelope, JobError};
use crate::workers::WorkerContext;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use std::sync::Arc;

/// A job kind: the one thing a worker module writes (crates.io's `BackgroundJob` is the model).
/// Register it with one entry in [`crate::workers::registry::JOB_KINDS`].
#[async_trait::async_trait]
pub trait Job: Send + Sync + 'static {
    /// Queue name (one queue per kind); its knobs are `GANTRY_QUEUE_<QUEUE>_…`.
    const QUEUE: &'static str;
    /// The command event types the outbox publisher routes to this queue.
    const EVENT_TYPES: &'static [crate::outbox::EventType];
    /// Jobs run at once per process when `GANTRY_QUEUE_<QUEUE>_CONCURRENCY` is unset.
    const DEFAULT_CONCURRENCY: usize;
    /// The arguments, read from the stored `{event_type, data}` once per attempt; arguments
    /// that do not parse make the job dead at once ([`JobError::BadArgs`]).
    type Args: DeserializeOwned + Send;

    /// Runs one attempt. Must be idempotent: delivery is at least once.
    async fn run(
        &self,
        ctx: &WorkerContext,
        args: Self::Args,
        attempt: &JobEnvelope,
    ) -> Result<(), JobError>;

    /// Called once when the job becomes dead (after its dead-job row is written).
    async fn on_dead(&self, _ctx: &WorkerContext, _attempt: &JobEnvelope, _error: &JobError) {}
}

/// A [`Job`] with its argument type erased, as the runtime holds it.
#[async_trait::async_trait]
pub trait ErasedJob: Send + Sync + 'static {
    /// The kind's queue.
    fn queue(&self) -> &'static str;
    /// Deserializes the arguments and runs the attempt.
    async fn handle(&self, ctx: &WorkerContext, attempt: &JobEnvelope) -> Result<(), JobError>;
    /// See [`Job::on_dead`].
    async fn on_dead(&self, ctx: &WorkerContext, attempt: &JobEnvelope, error: &JobError);
}

/// Erases a [`Job`]'s argument type.
struct Typed<J>(J);

#[async_trait::async_trait]
impl<J: Job> ErasedJob for Typed<J> {
    fn queue(&self) -> &'static str {
        J::QUEUE
    }

    async fn handle(&self, ctx: &WorkerContext, attempt: &JobEnvelope) -> Result<(), JobError> {
        let args = J::Args::deserialize(&attempt.args).map_err(|source| JobError::BadArgs {
            queue: J::QUEUE,
            source,
        })?;
        self.0.run(ctx, args, attempt).await
    }

    async fn on_dead(&self, ctx: &WorkerContext, attempt: &JobEnvelope, error: &JobError) {
        self.0.on_dead(ctx, attempt, error).await;
    }
}

/// A job kind ready for [`super::run_workers`].
pub type JobKind = Arc<dyn ErasedJob>;

/// Wraps `job` for [`super::run_workers`].
pub fn kind<J: Job>(job: J) -> JobKind {
    Arc::new(Typed(job))
}
