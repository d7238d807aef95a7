//! Health monitoring: `health_checks` (definition, hysteresis state, schedule and lease),
//! `health_check_results` (raw), `health_check_rollups` (hourly), `incidents`,
//! `alert_channels`, `alert_rules`, `notifications` (one row per incident transition ×
//! channel: the fleet-wide dedupe) and `maintenance_windows`.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum HealthChecks {
    Table,
    Id,
    OrgId,
    Name,
    Kind,
    Target,
    Spec,
    Conditions,
    Labels,
    IntervalMs,
    TimeoutMs,
    FailureThreshold,
    SuccessThreshold,
    Enabled,
    State,
    StatusSince,
    ConsecutiveFailures,
    ConsecutiveSuccesses,
    NextRunAt,
    LeaseOwner,
    LeaseExpiresAt,
    LastCheckedAt,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum HealthCheckResults {
    Table,
    Id,
    CheckId,
    OrgId,
    At,
    Success,
    Outcome,
    ResponseTimeMs,
    Conditions,
    Error,
}

#[derive(DeriveIden)]
enum HealthCheckRollups {
    Table,
    CheckId,
    Hour,
    Total,
    Successes,
    ResponseTimeSumMs,
}

#[derive(DeriveIden)]
enum Incidents {
    Table,
    Id,
    OrgId,
    CheckId,
    Status,
    Cause,
    OpenedAt,
    AcknowledgedAt,
    AcknowledgedBy,
    ResolvedAt,
    OpenedNotified,
    LastNotifiedAt,
    RepeatCount,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum AlertChannels {
    Table,
    Id,
    OrgId,
    Name,
    Kind,
    Config,
    Secret,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum AlertRules {
    Table,
    Id,
    OrgId,
    CheckId,
    Labels,
    Channels,
    SendOnResolved,
    RepeatIntervalSecs,
    GroupWaitSecs,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    OrgId,
    IncidentId,
    ChannelId,
    Transition,
    Status,
    Attempts,
    NextAttemptAt,
    LeaseOwner,
    LeaseExpiresAt,
    LastError,
    SentAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum MaintenanceWindows {
    Table,
    Id,
    OrgId,
    Name,
    StartsAt,
    EndsAt,
    DurationSecs,
    Recurrence,
    CheckIds,
    Labels,
    CreatedAt,
    UpdatedAt,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Organizations {
    Table,
    Id,
}

const INDEXES: &[&str] = &[
    "CREATE INDEX ix_health_checks_org ON health_checks (org_id) WHERE deleted_at IS NULL",
    // The pollers' claim: due, enabled, live checks in schedule order.
    "CREATE INDEX ix_health_checks_due ON health_checks (next_run_at) \
     WHERE deleted_at IS NULL AND enabled",
    "CREATE INDEX ix_health_check_results_check ON health_check_results (check_id, at)",
    "CREATE INDEX ix_health_check_results_at ON health_check_results (at)",
    // One open incident per check, whichever poller sees the failure first.
    "CREATE UNIQUE INDEX ux_incidents_open ON incidents (check_id) WHERE status = 'open'",
    "CREATE INDEX ix_incidents_org ON incidents (org_id, id)",
    "CREATE INDEX ix_alert_channels_org ON alert_channels (org_id) WHERE deleted_at IS NULL",
    "CREATE INDEX ix_alert_rules_org ON alert_rules (org_id) WHERE deleted_at IS NULL",
    // At most one notification per incident transition and channel, across the fleet.
    "CREATE UNIQUE INDEX ux_notifications_transition ON notifications \
     (incident_id, channel_id, transition)",
    "CREATE INDEX ix_notifications_due ON notifications (next_attempt_at) \
     WHERE status = 'pending'",
    "CREATE INDEX ix_maintenance_windows_org ON maintenance_windows (org_id) \
     WHERE deleted_at IS NULL",
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
                    .table(HealthChecks::Table)
                    .col(pk_uuid(HealthChecks::Id))
                    .col(uuid(HealthChecks::OrgId))
                    .col(string(HealthChecks::Name))
                    .col(string(HealthChecks::Kind))
                    .col(text(HealthChecks::Target))
                    .col(json_binary(HealthChecks::Spec))
                    .col(json_binary(HealthChecks::Conditions))
                    .col(json_binary(HealthChecks::Labels))
                    .col(integer(HealthChecks::IntervalMs))
                    .col(integer(HealthChecks::TimeoutMs))
                    .col(integer(HealthChecks::FailureThreshold))
                    .col(integer(HealthChecks::SuccessThreshold))
                    .col(boolean(HealthChecks::Enabled))
                    .col(string(HealthChecks::State))
                    .col(timestamp_with_time_zone(HealthChecks::StatusSince))
                    .col(integer(HealthChecks::ConsecutiveFailures).default(0))
                    .col(integer(HealthChecks::ConsecutiveSuccesses).default(0))
                    .col(timestamp_with_time_zone(HealthChecks::NextRunAt))
                    .col(string_null(HealthChecks::LeaseOwner))
                    .col(timestamp_with_time_zone_null(HealthChecks::LeaseExpiresAt))
                    .col(timestamp_with_time_zone_null(HealthChecks::LastCheckedAt))
                    .col(timestamp_with_time_zone(HealthChecks::CreatedAt))
                    .col(timestamp_with_time_zone(HealthChecks::UpdatedAt))
                    .col(timestamp_with_time_zone_null(HealthChecks::DeletedAt))
                    .foreign_key(&mut org_fk(HealthChecks::Table, HealthChecks::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HealthCheckResults::Table)
                    .col(pk_uuid(HealthCheckResults::Id))
                    .col(uuid(HealthCheckResults::CheckId))
                    .col(uuid(HealthCheckResults::OrgId))
                    .col(timestamp_with_time_zone(HealthCheckResults::At))
                    .col(boolean(HealthCheckResults::Success))
                    .col(string(HealthCheckResults::Outcome))
                    .col(integer(HealthCheckResults::ResponseTimeMs))
                    .col(json_binary(HealthCheckResults::Conditions))
                    .col(text_null(HealthCheckResults::Error))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HealthCheckRollups::Table)
                    .col(uuid(HealthCheckRollups::CheckId))
                    .col(timestamp_with_time_zone(HealthCheckRollups::Hour))
                    .col(integer(HealthCheckRollups::Total))
                    .col(integer(HealthCheckRollups::Successes))
                    .col(big_integer(HealthCheckRollups::ResponseTimeSumMs))
                    .primary_key(
                        Index::create()
                            .col(HealthCheckRollups::CheckId)
                            .col(HealthCheckRollups::Hour),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Incidents::Table)
                    .col(pk_uuid(Incidents::Id))
                    .col(uuid(Incidents::OrgId))
                    .col(uuid(Incidents::CheckId))
                    .col(string(Incidents::Status))
                    .col(string(Incidents::Cause))
                    .col(timestamp_with_time_zone(Incidents::OpenedAt))
                    .col(timestamp_with_time_zone_null(Incidents::AcknowledgedAt))
                    .col(string_null(Incidents::AcknowledgedBy))
                    .col(timestamp_with_time_zone_null(Incidents::ResolvedAt))
                    .col(boolean(Incidents::OpenedNotified).default(false))
                    .col(timestamp_with_time_zone_null(Incidents::LastNotifiedAt))
                    .col(integer(Incidents::RepeatCount).default(0))
                    .col(timestamp_with_time_zone(Incidents::CreatedAt))
                    .col(timestamp_with_time_zone(Incidents::UpdatedAt))
                    .foreign_key(&mut org_fk(Incidents::Table, Incidents::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertChannels::Table)
                    .col(pk_uuid(AlertChannels::Id))
                    .col(uuid(AlertChannels::OrgId))
                    .col(string(AlertChannels::Name))
                    .col(string(AlertChannels::Kind))
                    .col(json_binary(AlertChannels::Config))
                    .col(string_null(AlertChannels::Secret))
                    .col(timestamp_with_time_zone(AlertChannels::CreatedAt))
                    .col(timestamp_with_time_zone(AlertChannels::UpdatedAt))
                    .col(timestamp_with_time_zone_null(AlertChannels::DeletedAt))
                    .foreign_key(&mut org_fk(AlertChannels::Table, AlertChannels::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(AlertRules::Table)
                    .col(pk_uuid(AlertRules::Id))
                    .col(uuid(AlertRules::OrgId))
                    .col(uuid_null(AlertRules::CheckId))
                    .col(json_binary_null(AlertRules::Labels))
                    .col(json_binary(AlertRules::Channels))
                    .col(boolean(AlertRules::SendOnResolved))
                    .col(integer(AlertRules::RepeatIntervalSecs))
                    .col(integer(AlertRules::GroupWaitSecs))
                    .col(timestamp_with_time_zone(AlertRules::CreatedAt))
                    .col(timestamp_with_time_zone(AlertRules::UpdatedAt))
                    .col(timestamp_with_time_zone_null(AlertRules::DeletedAt))
                    .foreign_key(&mut org_fk(AlertRules::Table, AlertRules::OrgId))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(Notifications::Table)
                    .col(pk_uuid(Notifications::Id))
                    .col(uuid(Notifications::OrgId))
                    .col(uuid(Notifications::IncidentId))
                    .col(uuid(Notifications::ChannelId))
                    .col(string(Notifications::Transition))
                    .col(string(Notifications::Status))
                    .col(integer(Notifications::Attempts).default(0))
                    .col(timestamp_with_time_zone_null(Notifications::NextAttemptAt))
                    .col(string_null(Notifications::LeaseOwner))
                    .col(timestamp_with_time_zone_null(Notifications::LeaseExpiresAt))
                    .col(text_null(Notifications::LastError))
                    .col(timestamp_with_time_zone_null(Notifications::SentAt))
                    .col(timestamp_with_time_zone(Notifications::CreatedAt))
                    .col(timestamp_with_time_zone(Notifications::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(MaintenanceWindows::Table)
                    .col(pk_uuid(MaintenanceWindows::Id))
                    .col(uuid(MaintenanceWindows::OrgId))
                    .col(string(MaintenanceWindows::Name))
                    .col(timestamp_with_time_zone(MaintenanceWindows::StartsAt))
                    .col(timestamp_with_time_zone_null(MaintenanceWindows::EndsAt))
                    .col(integer(MaintenanceWindows::DurationSecs))
                    .col(string_null(MaintenanceWindows::Recurrence))
                    .col(json_binary_null(MaintenanceWindows::CheckIds))
                    .col(json_binary_null(MaintenanceWindows::Labels))
                    .col(timestamp_with_time_zone(MaintenanceWindows::CreatedAt))
                    .col(timestamp_with_time_zone(MaintenanceWindows::UpdatedAt))
                    .col(timestamp_with_time_zone_null(MaintenanceWindows::DeletedAt))
                    .foreign_key(&mut org_fk(
                        MaintenanceWindows::Table,
                        MaintenanceWindows::OrgId,
                    ))
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
        for table in [
            MaintenanceWindows::Table.into_iden(),
            Notifications::Table.into_iden(),
            AlertRules::Table.into_iden(),
            AlertChannels::Table.into_iden(),
            Incidents::Table.into_iden(),
            HealthCheckRollups::Table.into_iden(),
            HealthCheckResults::Table.into_iden(),
            HealthChecks::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}
