//! The codegen runner's tables: `codegen_jobs` (one generation of manifests from one graph
//! version), `codegen_artifacts` (its files, unique per job and path so a retried job never
//! doubles them) and `org_secrets` (write-only values such as Git credentials).

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum CodegenJobs {
    Table,
    Id,
    OrgId,
    ProjectId,
    GraphVersion,
    Engine,
    Target,
    Status,
    Progress,
    Error,
    CommitSha,
    CancelRequested,
    CreatedBy,
    CreatedAt,
    StartedAt,
    FinishedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum CodegenArtifacts {
    Table,
    JobId,
    Path,
    MediaType,
    Size,
    Sha256,
    Content,
    CreatedAt,
}

#[derive(DeriveIden)]
enum OrgSecrets {
    Table,
    OrgId,
    Name,
    Value,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(CodegenJobs::Table)
                    .col(uuid(CodegenJobs::Id).primary_key())
                    .col(uuid(CodegenJobs::OrgId))
                    .col(uuid(CodegenJobs::ProjectId))
                    .col(integer(CodegenJobs::GraphVersion))
                    .col(string(CodegenJobs::Engine))
                    .col(json_binary_null(CodegenJobs::Target))
                    .col(string(CodegenJobs::Status))
                    .col(json_binary_null(CodegenJobs::Progress))
                    .col(json_binary_null(CodegenJobs::Error))
                    .col(string_null(CodegenJobs::CommitSha))
                    .col(boolean(CodegenJobs::CancelRequested).default(false))
                    .col(string(CodegenJobs::CreatedBy))
                    .col(timestamp_with_time_zone(CodegenJobs::CreatedAt))
                    .col(timestamp_with_time_zone_null(CodegenJobs::StartedAt))
                    .col(timestamp_with_time_zone_null(CodegenJobs::FinishedAt))
                    .col(timestamp_with_time_zone(CodegenJobs::UpdatedAt))
                    .col(timestamp_with_time_zone_null(CodegenJobs::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(CodegenJobs::Table, CodegenJobs::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("codegen_jobs_org_created")
                    .table(CodegenJobs::Table)
                    .col(CodegenJobs::OrgId)
                    .col(CodegenJobs::CreatedAt)
                    .col(CodegenJobs::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(CodegenArtifacts::Table)
                    .col(uuid(CodegenArtifacts::JobId))
                    .col(string(CodegenArtifacts::Path))
                    .col(string(CodegenArtifacts::MediaType))
                    .col(big_integer(CodegenArtifacts::Size))
                    .col(string(CodegenArtifacts::Sha256))
                    .col(blob(CodegenArtifacts::Content))
                    .col(timestamp_with_time_zone(CodegenArtifacts::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(CodegenArtifacts::JobId)
                            .col(CodegenArtifacts::Path),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(CodegenArtifacts::Table, CodegenArtifacts::JobId)
                            .to(CodegenJobs::Table, CodegenJobs::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(OrgSecrets::Table)
                    .col(uuid(OrgSecrets::OrgId))
                    .col(string(OrgSecrets::Name))
                    .col(text(OrgSecrets::Value))
                    .col(string(OrgSecrets::CreatedBy))
                    .col(timestamp_with_time_zone(OrgSecrets::CreatedAt))
                    .col(timestamp_with_time_zone(OrgSecrets::UpdatedAt))
                    .primary_key(Index::create().col(OrgSecrets::OrgId).col(OrgSecrets::Name))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            OrgSecrets::Table.into_iden(),
            CodegenArtifacts::Table.into_iden(),
            CodegenJobs::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
