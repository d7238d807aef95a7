//! What the vCluster provisioner records: progress, conditions and the vCluster's CA on
//! `workspaces`; status, quota and error on `projects` (each a namespace in its vCluster); and
//! `simulated_objects`, the host "cluster" of the simulated driver.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Progress,
    Conditions,
    KubeCa,
    ProvisionStartedAt,
}

#[derive(DeriveIden)]
enum Projects {
    Table,
    Status,
    QuotaCpu,
    QuotaMemory,
    Error,
}

#[derive(DeriveIden)]
enum SimulatedObjects {
    Table,
    WorkspaceId,
    Kind,
    Namespace,
    Name,
    Spec,
    CreatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite adds one column per ALTER TABLE.
        for column in [
            json_binary_null(Workspaces::Progress),
            json_binary_null(Workspaces::Conditions),
            text_null(Workspaces::KubeCa),
            timestamp_with_time_zone_null(Workspaces::ProvisionStartedAt),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Workspaces::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            string(Projects::Status).default("pending").to_owned(),
            string(Projects::QuotaCpu).default("2").to_owned(),
            string(Projects::QuotaMemory).default("4Gi").to_owned(),
            text_null(Projects::Error),
        ] {
            let mut column = column;
            manager
                .alter_table(
                    Table::alter()
                        .table(Projects::Table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_table(
                Table::create()
                    .table(SimulatedObjects::Table)
                    .col(uuid(SimulatedObjects::WorkspaceId))
                    .col(string(SimulatedObjects::Kind))
                    .col(string(SimulatedObjects::Namespace))
                    .col(string(SimulatedObjects::Name))
                    .col(json_binary(SimulatedObjects::Spec))
                    .col(timestamp_with_time_zone(SimulatedObjects::CreatedAt))
                    .primary_key(
                        Index::create()
                            .col(SimulatedObjects::WorkspaceId)
                            .col(SimulatedObjects::Kind)
                            .col(SimulatedObjects::Namespace)
                            .col(SimulatedObjects::Name),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SimulatedObjects::Table).to_owned())
            .await?;
        for column in [
            Projects::Status,
            Projects::QuotaCpu,
            Projects::QuotaMemory,
            Projects::Error,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Projects::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        for column in [
            Workspaces::Progress,
            Workspaces::Conditions,
            Workspaces::KubeCa,
            Workspaces::ProvisionStartedAt,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Workspaces::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
