//! Result retention: raw results older than `GANTRY_HEALTH_RESULT_RETENTION` become hourly
//! rollups (runs, successes, response-time sum) and are deleted; rollups older than
//! `GANTRY_HEALTH_ROLLUP_RETENTION` are deleted. One process at a time (a fleet-wide lease).

use crate::store::{self, health_checks::Rollup};
use crate::workers::periodic::{Lease, PeriodicTask, Round, Schedule};
use crate::workers::WorkerContext;
use chrono::{DurationRound, TimeDelta};
use sea_orm::{DbErr, TransactionTrait};
use std::collections::BTreeMap;
use std::time::Duration;

/// Results rolled up per round.
const BATCH: u64 = 5000;

/// Rolls up and prunes results.
pub struct Retention {
    ctx: WorkerContext,
}

impl Retention {
    /// The task for this process.
    pub fn new(ctx: WorkerContext) -> Self {
        Self { ctx }
    }
}

#[async_trait::async_trait]
impl PeriodicTask for Retention {
    const NAME: &'static str = "health-retention";
    type Error = DbErr;

    fn schedule(&self) -> Schedule {
        Schedule {
            interval: Duration::from_secs(300),
            jitter: Duration::from_secs(30),
            after_error: Duration::from_secs(60),
        }
    }

    fn lease(&self) -> Option<Lease> {
        // ASCII "gantry-r".
        Some(Lease {
            key: 0x6761_6e74_7279_2d72,
        })
    }

    async fn round(&mut self) -> Result<Round, DbErr> {
        let config = &self.ctx.config.health;
        let now = store::now();
        let cutoff = now - chrono::Duration::from_std(config.result_retention).unwrap_or_default();
        let rows = store::health_checks::results_before(&self.ctx.db, cutoff, BATCH).await?;
        let full = rows.len() as u64 == BATCH;
        let mut hours: BTreeMap<(uuid::Uuid, chrono::DateTime<chrono::Utc>), Rollup> =
            BTreeMap::new();
        let mut ids = Vec::with_capacity(rows.len());
        for row in rows {
            let hour = row.at.duration_trunc(TimeDelta::hours(1)).unwrap_or(row.at);
            let entry = hours.entry((row.check_id, hour)).or_insert(Rollup {
                check_id: row.check_id,
                hour,
                total: 0,
                successes: 0,
                response_time_sum_ms: 0,
            });
            entry.total += 1;
            entry.successes += i32::from(row.success);
            entry.response_time_sum_ms += i64::from(row.response_time_ms);
            ids.push(row.id);
        }
        let txn = self.ctx.db.begin().await?;
        for rollup in hours.into_values() {
            store::health_checks::add_rollup(&txn, rollup).await?;
        }
        for chunk in ids.chunks(500) {
            store::health_checks::delete_results(&txn, chunk.to_vec()).await?;
        }
        let rollup_cutoff =
            now - chrono::Duration::from_std(config.rollup_retention).unwrap_or_default();
        store::health_checks::delete_rollups_before(&txn, rollup_cutoff).await?;
        txn.commit().await?;
        Ok(if full { Round::Again } else { Round::Idle })
    }
}
