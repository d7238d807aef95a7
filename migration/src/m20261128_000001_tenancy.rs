//! Users, organizations, memberships, workspaces, projects and their graph versions.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Sub,
    PreferredUsername,
    Email,
    CreatedAt,
    LastSeenAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
    Name,
    Slug,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Memberships {
    Table,
    OrgId,
    UserSub,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Id,
    OrgId,
    Name,
    Plan,
    Status,
    KubeEndpoint,
    Error,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Id,
    OrgId,
    WorkspaceId,
    Name,
    GraphVersion,
    Graph,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum ProjectGraphVersions {
    Table,
    ProjectId,
    Version,
    OrgId,
    Graph,
    CreatedBy,
    CreatedAt,
}

/// Partial unique indexes: names are unique among rows that are not soft-deleted.
/// The syntax is the same on Postgres and SQLite.
const PARTIAL_UNIQUE_INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX ux_organizations_slug ON organizations (slug) WHERE deleted_at IS NULL",
    "CREATE UNIQUE INDEX ux_workspaces_org_name ON workspaces (org_id, name) WHERE deleted_at IS NULL",
    "CREATE UNIQUE INDEX ux_projects_workspace_name ON projects (workspace_id, name) WHERE deleted_at IS NULL",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Users::Table)
                    .col(pk_uuid(Users::Id))
                    .col(string_uniq(Users::Sub))
                    .col(string_null(Users::PreferredUsername))
                    .col(string_null(Users::Email))
                    .col(timestamp_with_time_zone(Users::CreatedAt))
                    .col(timestamp_with_time_zone(Users::LastSeenAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Organizations::Table)
                    .col(pk_uuid(Organizations::Id))
                    .col(string(Organizations::Name))
                    .col(string(Organizations::Slug))
                    .col(timestamp_with_time_zone(Organizations::CreatedAt))
                    .col(timestamp_with_time_zone(Organizations::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Organizations::DeletedAt))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Memberships::Table)
                    .col(uuid(Memberships::OrgId))
                    .col(string(Memberships::UserSub))
                    .col(string(Memberships::Role))
                    .col(timestamp_with_time_zone(Memberships::CreatedAt))
                    .col(timestamp_with_time_zone(Memberships::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(Memberships::OrgId)
                            .col(Memberships::UserSub),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Memberships::Table, Memberships::OrgId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_memberships_user_sub")
                    .table(Memberships::Table)
                    .col(Memberships::UserSub)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Workspaces::Table)
                    .col(pk_uuid(Workspaces::Id))
                    .col(uuid(Workspaces::OrgId))
                    .col(string(Workspaces::Name))
                    .col(string(Workspaces::Plan))
                    .col(string(Workspaces::Status))
                    .col(string_null(Workspaces::KubeEndpoint))
                    .col(text_null(Workspaces::Error))
                    .col(timestamp_with_time_zone(Workspaces::CreatedAt))
                    .col(timestamp_with_time_zone(Workspaces::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Workspaces::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Workspaces::Table, Workspaces::OrgId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Projects::Table)
                    .col(pk_uuid(Projects::Id))
                    .col(uuid(Projects::OrgId))
                    .col(uuid(Projects::WorkspaceId))
                    .col(string(Projects::Name))
                    .col(integer(Projects::GraphVersion))
                    .col(json_binary(Projects::Graph))
                    .col(timestamp_with_time_zone(Projects::CreatedAt))
                    .col(timestamp_with_time_zone(Projects::UpdatedAt))
                    .col(timestamp_with_time_zone_null(Projects::DeletedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Projects::Table, Projects::OrgId)
                            .to(Organizations::Table, Organizations::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Projects::Table, Projects::WorkspaceId)
                            .to(Workspaces::Table, Workspaces::Id),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_projects_org_id")
                    .table(Projects::Table)
                    .col(Projects::OrgId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ProjectGraphVersions::Table)
                    .col(uuid(ProjectGraphVersions::ProjectId))
                    .col(integer(ProjectGraphVersions::Version))
                    .col(uuid(ProjectGraphVersions::OrgId))
                    .col(json_binary(ProjectGraphVersions::Graph))
                    .col(string(ProjectGraphVersions::CreatedBy))
                    .col(timestamp_with_time_zone(ProjectGraphVersions::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(ProjectGraphVersions::ProjectId)
                            .col(ProjectGraphVersions::Version),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(ProjectGraphVersions::Table, ProjectGraphVersions::ProjectId)
                            .to(Projects::Table, Projects::Id),
                    )
                    .to_owned(),
            )
            .await?;

        let db = manager.get_connection();
        for statement in PARTIAL_UNIQUE_INDEXES {
            db.execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ProjectGraphVersions::Table.into_iden(),
            Projects::Table.into_iden(),
            Workspaces::Table.into_iden(),
            Memberships::Table.into_iden(),
            Organizations::Table.into_iden(),
            Users::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
