//! A probe batch request (`POST /v1/admin/probes`): its limits and the events it writes.

use crate::error::{ApiError, FieldError};
use crate::store;
use sea_orm::DatabaseConnection;
use uuid::Uuid;

/// The command event a probe batch writes, one per probe (routed to the `probe` queue).
pub const EVENT_TYPE: &str = crate::outbox::EventType::ProbeRequested.as_str();
/// Most probe jobs one request may create: a fuzzer or a typo must not flood the queues.
pub const MAX_PROBES: i64 = 10_000;

/// A checked probe batch request.
#[derive(Debug, Clone, Copy)]
pub struct ProbeRequest {
    /// How many probe jobs.
    pub count: i64,
    /// Simulated work per probe run in milliseconds.
    pub delay_ms: i64,
    /// Each probe fails (retryably) its first this-many attempts.
    pub fail_attempts: i64,
}

impl ProbeRequest {
    /// Checks the limits (1..=10000 probes, 0..=60000 ms, 0..=100 failures), naming each
    /// field out of range.
    pub fn parse(count: i64, delay_ms: i64, fail_attempts: i64) -> Result<Self, ApiError> {
        let mut errors = Vec::new();
        if !(1..=MAX_PROBES).contains(&count) {
            errors.push(FieldError::new("/count", "must be between 1 and 10000"));
        }
        if !(0..=60_000).contains(&delay_ms) {
            errors.push(FieldError::new("/delay_ms", "must be between 0 and 60000"));
        }
        if !(0..=100).contains(&fail_attempts) {
            errors.push(FieldError::new(
                "/fail_attempts",
                "must be between 0 and 100",
            ));
        }
        if !errors.is_empty() {
            return Err(ApiError::Validation(errors));
        }
        Ok(Self {
            count,
            delay_ms,
            fail_attempts,
        })
    }
}

/// Writes the batch row and `count` probe events through the outbox in one transaction;
/// returns the batch id.
pub async fn request_batch(
    db: &DatabaseConnection,
    request: ProbeRequest,
) -> Result<Uuid, ApiError> {
    let ProbeRequest {
        count,
        delay_ms,
        fail_attempts,
    } = request;
    let batch_id = store::new_id();
    let txn = store::begin_write(db).await?;
    store::jobs::insert_probe_batch(&txn, batch_id, count as i32).await?;
    let data = serde_json::json!({
        "batch_id": batch_id,
        "delay_ms": delay_ms,
        "fail_attempts": fail_attempts,
    });
    let events = (0..count)
        .map(|_| store::outbox::NewEvent {
            event_id: Uuid::new_v4(),
            org_id: Uuid::nil(),
            aggregate_type: crate::outbox::EventType::ProbeRequested.aggregate_type(),
            aggregate_id: batch_id,
            event_type: EVENT_TYPE,
            payload: data.clone(),
        })
        .collect();
    store::outbox::insert_bulk(&txn, events).await?;
    txn.commit().await?;
    Ok(batch_id)
}
