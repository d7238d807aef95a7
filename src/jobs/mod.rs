//! Job queues and the shared worker runtime.
//!
//! One queue per job kind, on Redis when `REDIS_URL` is set and otherwise in the
//! system-of-record database (`job_queue`, Postgres or SQLite). Storage is ours (`queues`,
//! `redis_queue`, `store::jobs`): claims, acknowledgements and pushes are one round trip per
//! batch, leases are heartbeated and rescued when they run out. apalis runs the workers
//! (concurrency, shutdown) over that storage (`runtime::QueueSource`). On top: job ids derived
//! from event ids (a re-routed event cannot create a second job), retries with
//! exponential backoff and full jitter up to a per-queue attempt limit, permanent errors, dead
//! jobs kept with their last error, and metrics. A worker module implements [`Job`] and adds one
//! entry to [`crate::workers::registry::JOB_KINDS`]; the runtime deserializes its arguments once.

pub mod admin;
mod envelope;
mod error;
mod job;
mod queues;
mod redis_queue;
mod runtime;

pub use envelope::{command_args, task_id, Command, JobEnvelope, NewJob};
pub use error::{JobError, QueueError};
pub use job::{kind, ErasedJob, Job, JobKind};
use queues::Backend;
pub use queues::Queues;
pub use runtime::{run_workers, Claimed, QueueSource, Runner};
