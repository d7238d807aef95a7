//! `dead_jobs` (jobs that exhausted their attempts or failed permanently, with their last error;
//! a deleted one is kept as discarded so the reconciler does not bring it back)
//! and the probe job kind's bookkeeping: `probe_batches` and `probe_runs`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum DeadJobs {
    Table,
    Id,
    Queue,
    Payload,
    Attempts,
    LastError,
    DiedAt,
    DiscardedAt,
}

#[derive(DeriveIden)]
enum ProbeBatches {
    Table,
    Id,
    Total,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProbeRuns {
    Table,
    EventId,
    BatchId,
    EnqueuedAt,
    CompletedAt,
    Executions,
}

const INDEXES: &[&str] = &[
    "CREATE INDEX ix_dead_jobs_queue ON dead_jobs (queue, died_at)",
    "CREATE INDEX ix_probe_runs_batch ON probe_runs (batch_id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(DeadJobs::Table)
                    .col(pk_uuid(DeadJobs::Id))
                    .col(string(DeadJobs::Queue))
                    .col(json_binary(DeadJobs::Payload))
                    .col(integer(DeadJobs::Attempts))
                    .col(text(DeadJobs::LastError))
                    .col(timestamp_with_time_zone(DeadJobs::DiedAt))
                    .col(timestamp_with_time_zone_null(DeadJobs::DiscardedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProbeBatches::Table)
                    .col(pk_uuid(ProbeBatches::Id))
                    .col(integer(ProbeBatches::Total))
                    .col(timestamp_with_time_zone(ProbeBatches::CreatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProbeRuns::Table)
                    .col(pk_uuid(ProbeRuns::EventId))
                    .col(uuid(ProbeRuns::BatchId))
                    .col(timestamp_with_time_zone(ProbeRuns::EnqueuedAt))
                    .col(timestamp_with_time_zone(ProbeRuns::CompletedAt))
                    .col(integer(ProbeRuns::Executions))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProbeRuns::Table, ProbeRuns::BatchId)
                            .to(ProbeBatches::Table, ProbeBatches::Id),
                    )
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in INDEXES {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(ProbeRuns::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(ProbeBatches::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(DeadJobs::Table).to_owned())
            .await
    }
}
