//! Org secrets bound to hosts and sealed at rest: `org_secrets.allowed_hosts` (a JSON array;
//! existing secrets get `[]`, usable nowhere until an admin sets it), `org_secrets.key_id` and
//! `webhooks.secret_key_id` (the sealing key's id; `NULL` = a value stored before encryption at
//! rest, sealed on the next start), and `org_secrets.known_hosts` (SSH host keys to trust).

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

/// One column per statement: SQLite adds one at a time.
const UP: &[&str] = &[
    "ALTER TABLE org_secrets ADD COLUMN allowed_hosts TEXT NOT NULL DEFAULT '[]'",
    "ALTER TABLE org_secrets ADD COLUMN key_id TEXT NULL",
    "ALTER TABLE org_secrets ADD COLUMN known_hosts TEXT NULL",
    "ALTER TABLE webhooks ADD COLUMN secret_key_id TEXT NULL",
];

const DOWN: &[&str] = &[
    "ALTER TABLE webhooks DROP COLUMN secret_key_id",
    "ALTER TABLE org_secrets DROP COLUMN known_hosts",
    "ALTER TABLE org_secrets DROP COLUMN key_id",
    "ALTER TABLE org_secrets DROP COLUMN allowed_hosts",
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
        let db = manager.get_connection();
        for sql in DOWN {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }
}
