//! What a job is on the wire: the stored envelope, command arguments, a job to enqueue, and
//! the task id derived from the job id.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// What the queue stores for every job: our id, the attempt number and the kind's arguments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEnvelope {
    /// Logical job id: the id of the event that caused it, the same across retries.
    pub job_id: Uuid,
    /// 1 for the first run, +1 per retry.
    pub attempt: u32,
    /// Attempts used before an operator's retry (0 until then): the attempt limit counts from
    /// here, so a retried dead job gets a fresh set of attempts.
    #[serde(default)]
    pub retry_base: u32,
    /// When the first attempt was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// The job kind's arguments.
    pub args: serde_json::Value,
}

impl JobEnvelope {
    /// True when a retryable failure of this attempt would make the job dead (the attempt
    /// limit counts from `retry_base`), so a handler can record the failure on its own row.
    pub fn is_last_attempt(&self, max_attempts: u32) -> bool {
        self.attempt.saturating_sub(self.retry_base) >= max_attempts
    }
}

/// A command event's job arguments: its type, data and the request that caused it
/// (`{"event_type", "data", "request_id"}`; the runtime runs the job in that request's scope,
/// so the events it records carry the id too).
pub fn command_args(
    event_type: &str,
    data: serde_json::Value,
    request_id: Option<String>,
) -> serde_json::Value {
    match request_id {
        Some(id) => serde_json::json!({ "event_type": event_type, "data": data, "request_id": id }),
        None => serde_json::json!({ "event_type": event_type, "data": data }),
    }
}

/// The request id a job's arguments carry, if any.
pub fn request_id_of(args: &serde_json::Value) -> Option<String> {
    args.get("request_id")?.as_str().map(str::to_owned)
}

/// A command event's job arguments as a job kind reads them: `{"event_type", "data"}`, with
/// `data` typed by the kind.
#[derive(Debug, Clone, Deserialize)]
pub struct Command<D> {
    /// The event type that caused the job (one of the kind's [`Job::EVENT_TYPES`]).
    pub event_type: crate::outbox::EventType,
    /// The event's data.
    pub data: D,
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// Logical job id (the event id).
    pub job_id: Uuid,
    /// Attempt number (1 unless retrying).
    pub attempt: u32,
    /// Attempts used before an operator's retry (see [`JobEnvelope::retry_base`]).
    pub retry_base: u32,
    /// When the first attempt was enqueued.
    pub enqueued_at: DateTime<Utc>,
    /// Arguments.
    pub args: serde_json::Value,
    /// Delay before it may run.
    pub run_after: Option<Duration>,
}

/// The task id of a job's attempt (a ULID string): derived from the job id, so enqueueing the
/// same attempt twice is refused by the backend instead of running twice.
pub fn task_id(job_id: Uuid, attempt: u32) -> String {
    let bits = job_id.as_u128() ^ u128::from(attempt.saturating_sub(1));
    ulid::Ulid::from(bits).to_string()
}
