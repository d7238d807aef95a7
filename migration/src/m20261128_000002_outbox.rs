//! `outbox_events`: every state change's event, written in the change's own transaction.

use sea_orm_migration::sea_orm::DatabaseBackend;
use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum OutboxEvents {
    Table,
    Id,
    EventId,
    OrgId,
    AggregateType,
    AggregateId,
    EventType,
    Payload,
    CreatedAt,
    PublishedAt,
    Attempts,
    LeaseOwner,
    LeaseExpiresAt,
}

/// Postgres extra: a NOTIFY that wakes publishers when a writing transaction commits.
const POSTGRES_EXTRAS: &[&str] = &[
    "CREATE FUNCTION gantry_outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$ \
     BEGIN PERFORM pg_notify('gantry_outbox', ''); RETURN NULL; END $$",
    "CREATE TRIGGER outbox_events_notify AFTER INSERT ON outbox_events \
     FOR EACH STATEMENT EXECUTE FUNCTION gantry_outbox_notify()",
];

const INDEXES: &[&str] = &[
    "CREATE INDEX ix_outbox_unpublished ON outbox_events (id) WHERE published_at IS NULL",
    "CREATE INDEX ix_outbox_org ON outbox_events (org_id, id)",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(OutboxEvents::Table)
                    .col(big_pk_auto(OutboxEvents::Id))
                    .col(uuid_uniq(OutboxEvents::EventId))
                    .col(uuid(OutboxEvents::OrgId))
                    .col(string(OutboxEvents::AggregateType))
                    .col(uuid(OutboxEvents::AggregateId))
                    .col(string(OutboxEvents::EventType))
                    .col(json_binary(OutboxEvents::Payload))
                    .col(timestamp_with_time_zone(OutboxEvents::CreatedAt))
                    .col(timestamp_with_time_zone_null(OutboxEvents::PublishedAt))
                    .col(integer(OutboxEvents::Attempts).default(0))
                    .col(string_null(OutboxEvents::LeaseOwner))
                    .col(timestamp_with_time_zone_null(OutboxEvents::LeaseExpiresAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for statement in INDEXES {
            db.execute_unprepared(statement).await?;
        }
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            for statement in POSTGRES_EXTRAS {
                db.execute_unprepared(statement).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DatabaseBackend::Postgres {
            manager
                .get_connection()
                .execute_unprepared("DROP FUNCTION IF EXISTS gantry_outbox_notify() CASCADE")
                .await?;
        }
        manager
            .drop_table(Table::drop().table(OutboxEvents::Table).to_owned())
            .await
    }
}
