//! Job queues and the shared worker runtime.
//!
//! One apalis queue per job kind, on Redis (apalis-redis) when `REDIS_URL` is set and otherwise
//! on the system-of-record database (apalis-postgres / apalis-sqlite). apalis provides storage,
//! locking, heartbeats and orphan rescue; this module adds what our contract needs on top:
//! job ids derived from event ids (a re-routed event cannot create a second job), retries with
//! exponential backoff and full jitter up to a per-queue attempt limit, permanent errors, dead
//! jobs kept with their last error, and metrics. A worker module implements [`Job`] and adds one
//! entry to [`crate::workers::registry::JOB_KINDS`]; the runtime deserializes its arguments once.

pub mod admin;
mod envelope;
mod error;
mod job;
mod queues;
mod runtime;

pub use envelope::{command_args, task_id, Command, JobEnvelope, NewJob};
pub use error::{JobError, QueueError};
pub use job::{kind, ErasedJob, Job, JobKind};
use queues::Backend;
pub use queues::Queues;
pub use runtime::{run_workers, Runner};
