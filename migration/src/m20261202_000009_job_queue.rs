//! `job_queue`: Gantry's own job table for the SQL queue backends (Postgres, SQLite), replacing
//! apalis-postgres' `apalis.jobs` and apalis-sqlite's `Jobs`. One row per attempt; claims and
//! completions are batched statements over the partial indexes below. Times are Unix
//! milliseconds on both backends so that one set of queries serves both.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Same DDL on both backends (partial indexes exist on both).
const UP: &[&str] = &[
    "CREATE TABLE job_queue (
        id TEXT NOT NULL PRIMARY KEY,
        queue TEXT NOT NULL,
        job_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        state TEXT NOT NULL,
        run_at BIGINT NOT NULL,
        lock_by TEXT NULL,
        locked_until BIGINT NULL,
        done_at BIGINT NULL,
        payload TEXT NOT NULL
    )",
    // Claims: the ready jobs of one queue in run_at order.
    "CREATE INDEX ix_job_queue_ready ON job_queue (queue, run_at, id) WHERE state = 'pending'",
    // Rescue: running jobs whose lease ran out (heartbeats and releases by holder scan the
    // same few rows: only what is running).
    "CREATE INDEX ix_job_queue_running ON job_queue (locked_until) WHERE state = 'running'",
    // Retention and the admin's done listing.
    "CREATE INDEX ix_job_queue_done ON job_queue (queue, done_at) WHERE state = 'done'",
    // No index on job_id: every index is written again on each of a row's three versions
    // (pending, running, done); a lookup by job id goes through the primary key instead (the
    // task ids of its possible attempts).
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for sql in UP {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .get_connection()
            .execute_unprepared("DROP TABLE job_queue")
            .await?;
        Ok(())
    }
}
