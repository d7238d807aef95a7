//! Database migrations for Gantry (SeaORM), applied by `gantry migrate` and on every start.

pub use sea_orm_migration::prelude::*;

mod m20261128_000001_tenancy;
mod m20261128_000002_outbox;
mod m20261128_000003_webhooks;
mod m20261129_000004_jobs;
mod m20261129_000005_provisioning;
mod m20261129_000006_codegen;
mod m20261202_000007_backups;
mod m20261202_000008_health;
mod m20261202_000009_job_queue;
mod m20261202_000010_secrets_at_rest;
mod m20261204_000011_access;

/// Every migration, in the order it is applied.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261128_000001_tenancy::Migration),
            Box::new(m20261128_000002_outbox::Migration),
            Box::new(m20261128_000003_webhooks::Migration),
            Box::new(m20261129_000004_jobs::Migration),
            Box::new(m20261129_000005_provisioning::Migration),
            Box::new(m20261129_000006_codegen::Migration),
            Box::new(m20261202_000008_health::Migration),
            Box::new(m20261202_000009_job_queue::Migration),
            Box::new(m20261202_000007_backups::Migration),
            Box::new(m20261202_000010_secrets_at_rest::Migration),
            Box::new(m20261204_000011_access::Migration),
        ]
    }
}
