//! The access model beyond org roles: `teams`, `team_members`, `project_teams` (a team's role on
//! a project), `service_accounts` (org-scoped API keys, stored as SHA-256 hashes), the
//! append-only `audit_log`, and `outbox_events.request_id` (the request that caused an event).
//!
//! On Postgres a trigger refuses UPDATE, DELETE and TRUNCATE on `audit_log`, except DELETE by
//! the retention job, which sets `gantry.audit_retention = 'on'` for its transaction only.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Teams {
    Table,
    Id,
    OrgId,
    Name,
    Description,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum TeamMembers {
    Table,
    TeamId,
    UserSub,
    OrgId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum ProjectTeams {
    Table,
    ProjectId,
    TeamId,
    OrgId,
    Role,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ServiceAccounts {
    Table,
    Id,
    OrgId,
    Name,
    Role,
    KeyHash,
    KeyPrefix,
    ExpiresAt,
    LastUsedAt,
    CreatedBy,
    CreatedAt,
    UpdatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    ActorType,
    ActorId,
    Action,
    TargetType,
    TargetId,
    OrgId,
    RequestId,
    SourceIp,
    UserAgent,
    Outcome,
    Changes,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

const INDEXES: &[&str] = &[
    "CREATE UNIQUE INDEX ux_teams_org_name ON teams (org_id, name)",
    "CREATE INDEX ix_team_members_user ON team_members (org_id, user_sub)",
    "CREATE INDEX ix_project_teams_team ON project_teams (team_id)",
    "CREATE UNIQUE INDEX ux_service_accounts_key ON service_accounts (key_hash)",
    "CREATE UNIQUE INDEX ux_service_accounts_name ON service_accounts (org_id, name) \
     WHERE revoked_at IS NULL",
    "CREATE INDEX ix_audit_log_org ON audit_log (org_id, id)",
    "CREATE INDEX ix_audit_log_at ON audit_log (at)",
    "ALTER TABLE outbox_events ADD COLUMN request_id TEXT NULL",
];

const POSTGRES_APPEND_ONLY: &[&str] = &[
    "CREATE OR REPLACE FUNCTION gantry_audit_append_only() RETURNS trigger \
     LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF TG_OP = 'DELETE' AND current_setting('gantry.audit_retention', true) = 'on' THEN \
         RETURN OLD; \
       END IF; \
       RAISE EXCEPTION 'audit_log is append-only (% refused)', TG_OP; \
     END $$",
    "CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log \
     FOR EACH ROW EXECUTE FUNCTION gantry_audit_append_only()",
    "CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log \
     FOR EACH STATEMENT EXECUTE FUNCTION gantry_audit_append_only()",
];

fn org_fk<T: IntoIden + 'static, C: IntoIden + 'static>(
    table: T,
    column: C,
) -> ForeignKeyCreateStatement {
    ForeignKey::create()
        .from(table, column)
        .to(Organizations::Table, Organizations::Id)
        .to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Teams::Table)
                    .col(pk_uuid(Teams::Id))
                    .col(uuid(Teams::OrgId))
                    .col(string(Teams::Name))
                    .col(text_null(Teams::Description))
                    .col(timestamp_with_time_zone(Teams::CreatedAt))
                    .col(timestamp_with_time_zone(Teams::UpdatedAt))
                    .foreign_key(&mut org_fk(Teams::Table, Teams::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(TeamMembers::Table)
                    .col(uuid(TeamMembers::TeamId))
                    .col(string(TeamMembers::UserSub))
                    .col(uuid(TeamMembers::OrgId))
                    .col(timestamp_with_time_zone(TeamMembers::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(TeamMembers::TeamId)
                            .col(TeamMembers::UserSub),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ProjectTeams::Table)
                    .col(uuid(ProjectTeams::ProjectId))
                    .col(uuid(ProjectTeams::TeamId))
                    .col(uuid(ProjectTeams::OrgId))
                    .col(string(ProjectTeams::Role))
                    .col(timestamp_with_time_zone(ProjectTeams::CreatedAt))
                    .col(timestamp_with_time_zone(ProjectTeams::UpdatedAt))
                    .primary_key(
                        Index::create()
                            .col(ProjectTeams::ProjectId)
                            .col(ProjectTeams::TeamId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(ServiceAccounts::Table)
                    .col(pk_uuid(ServiceAccounts::Id))
                    .col(uuid(ServiceAccounts::OrgId))
                    .col(string(ServiceAccounts::Name))
                    .col(string(ServiceAccounts::Role))
                    .col(string(ServiceAccounts::KeyHash))
                    .col(string(ServiceAccounts::KeyPrefix))
                    .col(timestamp_with_time_zone_null(ServiceAccounts::ExpiresAt))
                    .col(timestamp_with_time_zone_null(ServiceAccounts::LastUsedAt))
                    .col(string(ServiceAccounts::CreatedBy))
                    .col(timestamp_with_time_zone(ServiceAccounts::CreatedAt))
                    .col(timestamp_with_time_zone(ServiceAccounts::UpdatedAt))
                    .col(timestamp_with_time_zone_null(ServiceAccounts::RevokedAt))
                    .foreign_key(&mut org_fk(ServiceAccounts::Table, ServiceAccounts::OrgId))
                    .to_owned(),
            )
            .await?;
        // No foreign key to organizations: the trail outlives what it describes.
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .col(big_pk_auto(AuditLog::Id))
                    .col(timestamp_with_time_zone(AuditLog::At))
                    .col(string(AuditLog::ActorType))
                    .col(string(AuditLog::ActorId))
                    .col(string(AuditLog::Action))
                    .col(string(AuditLog::TargetType))
                    .col(string_null(AuditLog::TargetId))
                    .col(uuid_null(AuditLog::OrgId))
                    .col(string_null(AuditLog::RequestId))
                    .col(string_null(AuditLog::SourceIp))
                    .col(text_null(AuditLog::UserAgent))
                    .col(string(AuditLog::Outcome))
                    .col(json_binary_null(AuditLog::Changes))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        for sql in INDEXES {
            db.execute_unprepared(sql).await?;
        }
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            for sql in POSTGRES_APPEND_ONLY {
                db.execute_unprepared(sql).await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared("ALTER TABLE outbox_events DROP COLUMN request_id")
            .await?;
        for table in [
            AuditLog::Table.into_iden(),
            ServiceAccounts::Table.into_iden(),
            ProjectTeams::Table.into_iden(),
            TeamMembers::Table.into_iden(),
            Teams::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        if manager.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS gantry_audit_append_only()")
                .await?;
        }
        Ok(())
    }
}
