//! The backup executor's tables: `backup_policies` (schedule, retention, selectors, hooks),
//! `backups` (one run: status, stats, key id; unique per policy and due time so a scheduler
//! round that is repeated cannot double a run), `backup_chunks` (content-addressed encrypted
//! chunks per workspace) with `backup_chunk_refs` (which backup uses which chunk), `backup_keys`
//! (each workspace's data key, wrapped by the master key) and `backup_restores`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum BackupPolicies {
    Table,
    Id,
    OrgId,
    WorkspaceId,
    Name,
    Spec,
    Enabled,
    NextRunAt,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Backups {
    Table,
    Id,
    OrgId,
    WorkspaceId,
    PolicyId,
    ScheduledFor,
    Status,
    Progress,
    Stats,
    Error,
    KeyId,
    StorageLocation,
    StoragePrefix,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum BackupChunks {
    Table,
    WorkspaceId,
    ChunkId,
    StoredSize,
    CreatedAt,
}

#[derive(DeriveIden)]
enum BackupChunkRefs {
    Table,
    BackupId,
    ChunkId,
}

#[derive(DeriveIden)]
enum BackupKeys {
    Table,
    WorkspaceId,
    KeyId,
    WrappedKey,
    MasterKeyId,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum BackupRestores {
    Table,
    Id,
    OrgId,
    BackupId,
    SourceWorkspaceId,
    TargetWorkspaceId,
    Spec,
    Status,
    Progress,
    Result,
    Error,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(BackupPolicies::Table)
                    .col(uuid(BackupPolicies::Id).primary_key())
                    .col(uuid(BackupPolicies::OrgId))
                    .col(uuid(BackupPolicies::WorkspaceId))
                    .col(string(BackupPolicies::Name))
                    .col(json_binary(BackupPolicies::Spec))
                    .col(boolean(BackupPolicies::Enabled).default(true))
                    .col(timestamp_with_time_zone_null(BackupPolicies::NextRunAt))
                    .col(timestamp_with_time_zone(BackupPolicies::CreatedAt))
                    .col(timestamp_with_time_zone(BackupPolicies::UpdatedAt))
                    .col(timestamp_with_time_zone_null(BackupPolicies::DeletedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("backup_policies_due")
                    .table(BackupPolicies::Table)
                    .col(BackupPolicies::NextRunAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Backups::Table)
                    .col(uuid(Backups::Id).primary_key())
                    .col(uuid(Backups::OrgId))
                    .col(uuid(Backups::WorkspaceId))
                    .col(uuid_null(Backups::PolicyId))
                    .col(timestamp_with_time_zone_null(Backups::ScheduledFor))
                    .col(string(Backups::Status))
                    .col(json_binary_null(Backups::Progress))
                    .col(json_binary_null(Backups::Stats))
                    .col(json_binary_null(Backups::Error))
                    .col(string_null(Backups::KeyId))
                    .col(string(Backups::StorageLocation))
                    .col(string(Backups::StoragePrefix))
                    .col(timestamp_with_time_zone(Backups::CreatedAt))
                    .col(timestamp_with_time_zone_null(Backups::StartedAt))
                    .col(timestamp_with_time_zone_null(Backups::FinishedAt))
                    .col(timestamp_with_time_zone(Backups::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Backups::DeletedAt))
                    .to_owned(),
            )
            .await?;
        // One run per policy and due time: a repeated scheduler round inserts nothing.
        manager
            .create_index(
                Index::create()
                    .name("backups_policy_due_once")
                    .table(Backups::Table)
                    .col(Backups::PolicyId)
                    .col(Backups::ScheduledFor)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("backups_workspace")
                    .table(Backups::Table)
                    .col(Backups::WorkspaceId)
                    .col(Backups::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BackupChunks::Table)
                    .col(uuid(BackupChunks::WorkspaceId))
                    .col(string(BackupChunks::ChunkId))
                    .col(big_integer(BackupChunks::StoredSize))
                    .col(timestamp_with_time_zone(BackupChunks::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(BackupChunks::WorkspaceId)
                            .col(BackupChunks::ChunkId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BackupChunkRefs::Table)
                    .col(uuid(BackupChunkRefs::BackupId))
                    .col(string(BackupChunkRefs::ChunkId))
                    .primary_key(
                        Index::create()
                            .col(BackupChunkRefs::BackupId)
                            .col(BackupChunkRefs::ChunkId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("backup_chunk_refs_chunk")
                    .table(BackupChunkRefs::Table)
                    .col(BackupChunkRefs::ChunkId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BackupKeys::Table)
                    .col(uuid(BackupKeys::WorkspaceId).primary_key())
                    .col(string(BackupKeys::KeyId))
                    .col(text(BackupKeys::WrappedKey))
                    .col(string(BackupKeys::MasterKeyId))
                    .col(timestamp_with_time_zone(BackupKeys::CreatedAt))
                    .col(timestamp_with_time_zone(BackupKeys::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(BackupRestores::Table)
                    .col(uuid(BackupRestores::Id).primary_key())
                    .col(uuid(BackupRestores::OrgId))
                    .col(uuid(BackupRestores::BackupId))
                    .col(uuid(BackupRestores::SourceWorkspaceId))
                    .col(uuid(BackupRestores::TargetWorkspaceId))
                    .col(json_binary(BackupRestores::Spec))
                    .col(string(BackupRestores::Status))
                    .col(json_binary_null(BackupRestores::Progress))
                    .col(json_binary_null(BackupRestores::Result))
                    .col(json_binary_null(BackupRestores::Error))
                    .col(timestamp_with_time_zone(BackupRestores::CreatedAt))
                    .col(timestamp_with_time_zone_null(BackupRestores::StartedAt))
                    .col(timestamp_with_time_zone_null(BackupRestores::FinishedAt))
                    .col(timestamp_with_time_zone(BackupRestores::UpdatedAt))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            BackupRestores::Table.into_iden(),
            BackupKeys::Table.into_iden(),
            BackupChunkRefs::Table.into_iden(),
            BackupChunks::Table.into_iden(),
            Backups::Table.into_iden(),
            BackupPolicies::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
