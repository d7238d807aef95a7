//! Audit retention: deletes audit rows older than `GANTRY_AUDIT_RETENTION` (default 400 days),
//! in batches, hourly. The only writer allowed to delete them (see `store::audit`).

use super::periodic::{PeriodicTask, Round, Schedule};
use super::WorkerContext;
use crate::store;
use std::time::Duration;

/// Rows deleted per statement, so a first run over a long backlog holds no long lock.
const BATCH: u64 = 5_000;

/// How often the task looks for expired rows at most: hourly, or a quarter of the retention
/// when that is shorter (down to a second).
const INTERVAL: Duration = Duration::from_secs(3600);

/// The periodic task.
pub struct AuditRetention {
    ctx: WorkerContext,
}

impl AuditRetention {
    /// A task on `ctx`.
    pub fn new(ctx: WorkerContext) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for AuditRetention {
    const NAME: &'static str = "audit-retention";
    type Error = sea_orm::DbErr;

    fn schedule(&self) -> Schedule {
        let interval =
            (self.ctx.config.audit_retention / 4).clamp(Duration::from_secs(1), INTERVAL);
        Schedule {
            interval,
            jitter: interval / 60,
            after_error: interval.min(Duration::from_secs(60)),
        }
    }

    async fn round(&mut self) -> Result<Round, sea_orm::DbErr> {
        let retention = chrono::Duration::from_std(self.ctx.config.audit_retention)
            .unwrap_or(chrono::Duration::MAX);
        let Some(cutoff) = store::now().checked_sub_signed(retention) else {
            return Ok(Round::Idle);
        };
        let deleted = store::audit::delete_older_than(&self.ctx.db, cutoff, BATCH).await?;
        if deleted > 0 {
            tracing::info!(deleted, %cutoff, "expired audit rows deleted");
        }
        Ok(if deleted >= BATCH {
            Round::Again
        } else {
            Round::Idle
        })
    }
}
