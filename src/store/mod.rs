//! The system of record: connecting, migrating, and one module of queries per entity.

/// Implements `as_str` (the stored and wire name, the same as the `string_value` the enum's
/// `DeriveActiveEnum` stores) and `Display` for a string-backed stored enum.
macro_rules! stored_names {
    ($enum:ident { $($variant:ident => $name:literal),+ $(,)? }) => {
        impl $enum {
            /// Stored (and wire) name.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($enum::$variant => $name,)+
                }
            }
        }

        impl std::fmt::Display for $enum {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

/// Implements [`SoftDeleted`] (and, with `org_owned`, [`OrgOwned`]) for the entity of the
/// module `$entity`, whose table has `deleted_at` and `updated_at` (and `org_id`) columns.
macro_rules! soft_deleted {
    ($entity:ident) => {
        impl $crate::store::SoftDeleted for $entity::Entity {
            const DELETED_AT: $entity::Column = $entity::Column::DeletedAt;
            const UPDATED_AT: $entity::Column = $entity::Column::UpdatedAt;
        }
    };
    ($entity:ident, org_owned) => {
        soft_deleted!($entity);

        impl $crate::store::OrgOwned for $entity::Entity {
            const ORG_ID: $entity::Column = $entity::Column::OrgId;
        }
    };
}

pub mod alerts;
pub mod audit;
pub mod backups;
pub mod codegen;
pub mod health_checks;
pub mod incidents;
pub mod jobs;
pub mod members;
pub mod orgs;
pub mod outbox;
pub mod paging;
pub mod projects;
pub mod scope;
pub mod secrets;
pub mod service_accounts;
pub mod teams;
pub mod users;
pub mod webhooks;
pub mod workspaces;
mod write_txn;

pub use paging::{split_page, PageRequest};
pub use write_txn::{begin_write, WriteTxn};

use chrono::{DateTime, SubsecRound, Utc};
use migration::{Migrator, MigratorTrait};
use sea_orm::sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sea_orm::{
    ActiveModelBehavior, ActiveModelTrait, ColumnTrait, ConnectOptions, ConnectionTrait, Database,
    DatabaseBackend, DatabaseConnection, DbErr, EntityTrait, IntoActiveModel, PrimaryKeyTrait,
    QueryFilter, Select, SqlErr, Statement, TransactionTrait,
};
use std::time::Duration;

/// Advisory-lock key that serializes migrations across processes on Postgres (ASCII "gantry-m").
const MIGRATION_LOCK_KEY: i64 = 0x6761_6e74_7279_2d6d;

/// Opens the pool for `database_url` with settings suited to each backend.
pub async fn connect(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(10))
        // The pool's default pings every connection it hands out: one extra round trip per
        // query. Only a connection idle long enough to have been dropped is checked.
        .test_before_acquire_if_idle_for(IDLE_BEFORE_PING);
    if database_url.starts_with("sqlite:") {
        // WAL lets readers run beside the single writer; the busy timeout makes concurrent
        // writers wait instead of failing with SQLITE_BUSY.
        options
            .max_connections(8)
            .map_sqlx_sqlite_opts(sqlite_options)
            .map_sqlx_sqlite_pool_opts(|pool| {
                pool.after_connect(|conn, _| Box::pin(outbox::watch_commits(conn)))
            });
    } else {
        options.max_connections(20);
    }
    Database::connect(options).await
}

/// A pooled connection idle at least this long is pinged before use.
const IDLE_BEFORE_PING: Duration = Duration::from_secs(30);

/// WAL lets readers run beside the single writer; `synchronous = NORMAL` is WAL's usual
/// pairing (no fsync per commit, still never a corrupt database); the busy timeout makes
/// concurrent writers wait instead of failing with `SQLITE_BUSY`.
fn sqlite_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
    options
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(Duration::from_secs(10))
        .foreign_keys(true)
}

/// A pool of exactly one connection to SQLite database `database_url`: the job queue's
/// writer. Every queue statement of the process goes through it in turn, so queue traffic never
/// contends with itself for SQLite's one write lock (other writers wait on the busy timeout).
pub async fn connect_single_writer(database_url: &str) -> Result<DatabaseConnection, DbErr> {
    let mut options = ConnectOptions::new(database_url.to_owned());
    options
        .sqlx_logging(false)
        .connect_timeout(Duration::from_secs(10))
        .acquire_timeout(Duration::from_secs(30))
        .min_connections(1)
        .max_connections(1)
        .map_sqlx_sqlite_opts(sqlite_options);
    Database::connect(options).await
}

/// Applies pending migrations. On Postgres, concurrent starters serialize on an advisory lock
/// held for the migration transaction, so two processes never migrate at once.
pub async fn migrate(db: &DatabaseConnection) -> Result<(), DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            let txn = db.begin().await?;
            txn.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "SELECT pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await?;
            Migrator::up(&txn, None).await?;
            txn.commit().await
        }
        _ => {
            // SQLite DDL is transactional: migrating inside an immediate transaction makes a
            // second process starting at the same moment wait, then find nothing to do.
            let txn = begin_write(db).await?;
            Migrator::up(&*txn, None).await?;
            txn.commit().await
        }
    }
}

/// Answers whether the database responds.
pub async fn ping(db: &DatabaseConnection) -> Result<(), DbErr> {
    db.ping().await
}

/// Current time at the precision every backend stores (microseconds).
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// A new time-ordered id (UUIDv7), so ordering by id is ordering by creation.
pub fn new_id() -> uuid::Uuid {
    uuid::Uuid::now_v7()
}

/// True when `err` is a unique-constraint violation.
pub fn is_unique_violation(err: &DbErr) -> bool {
    matches!(err.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
}

/// A table whose rows are soft-deleted: `deleted_at` is `NULL` while a row is live.
pub trait SoftDeleted: EntityTrait {
    /// When the row was soft-deleted; `NULL` while live.
    const DELETED_AT: Self::Column;
    /// When the row last changed.
    const UPDATED_AT: Self::Column;
}

/// A soft-deleted table whose rows each belong to one organization.
pub trait OrgOwned: SoftDeleted {
    /// The owning organization.
    const ORG_ID: Self::Column;
}

/// Every live row of `E` (callers add filters, order or page).
pub fn live<E: SoftDeleted>() -> Select<E> {
    E::find().filter(E::DELETED_AT.is_null())
}

/// The organization's live rows of `E` (callers add filters, order or page).
pub fn live_in_org<E: OrgOwned>(org_id: uuid::Uuid) -> Select<E> {
    live::<E>().filter(E::ORG_ID.eq(org_id))
}

/// The live row `id` of `org_id`: `None` when it is gone or belongs to another organization.
pub async fn find_live_in_org<E>(
    db: &impl ConnectionTrait,
    org_id: uuid::Uuid,
    id: uuid::Uuid,
) -> Result<Option<E::Model>, DbErr>
where
    E: OrgOwned,
    <E::PrimaryKey as PrimaryKeyTrait>::ValueType: From<uuid::Uuid>,
{
    E::find_by_id(id)
        .filter(E::ORG_ID.eq(org_id))
        .filter(E::DELETED_AT.is_null())
        .one(db)
        .await
}

/// Soft-deletes `row` (sets `deleted_at` and `updated_at` to now) and returns it as stored.
pub async fn soft_delete<E>(db: &impl ConnectionTrait, row: E::Model) -> Result<E::Model, DbErr>
where
    E: SoftDeleted,
    E::Model: IntoActiveModel<E::ActiveModel>,
    E::ActiveModel: ActiveModelBehavior + Send,
{
    let at = now();
    let mut active = row.into_active_model();
    active.set(E::DELETED_AT, Some(at).into());
    active.set(E::UPDATED_AT, at.into());
    active.update(db).await
}

/// `sql`, written with Postgres' `$n` placeholders, as `backend` spells them (`?n` on SQLite).
pub fn sql_for(backend: DatabaseBackend, sql: &str) -> String {
    match backend {
        DatabaseBackend::Postgres => sql.to_owned(),
        _ => sql.replace('$', "?"),
    }
}

/// `$from, $from+1, …` for `count` values (an `IN (…)` list), for [`sql_for`].
pub fn placeholders(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use sea_orm::{ActiveEnum, Iterable};

    /// Every stored enum's `as_str` (used for labels, messages and views) is its stored value,
    /// and the wire name serde writes where it serializes one.
    fn check<E: ActiveEnum<Value = String> + Iterable + Copy + std::fmt::Display>(
        as_str: fn(E) -> &'static str,
    ) {
        for value in E::iter() {
            assert_eq!(value.to_value(), as_str(value));
            assert_eq!(value.to_string(), as_str(value));
        }
    }

    #[test]
    fn stored_names_match_as_str() {
        check(super::workspaces::WorkspaceStatus::as_str);
        check(super::workspaces::Plan::as_str);
        check(super::projects::ProjectStatus::as_str);
        check(super::codegen::CodegenStatus::as_str);
        check(super::codegen::Engine::as_str);
        check(super::webhooks::DeliveryStatus::as_str);
    }

    #[test]
    fn wire_names_match_stored_names() {
        use super::codegen::CodegenStatus;
        use super::workspaces::{Plan, WorkspaceStatus};
        for status in WorkspaceStatus::iter() {
            assert_eq!(serde_json::json!(status), status.as_str());
        }
        for plan in Plan::iter() {
            assert_eq!(serde_json::json!(plan), plan.as_str());
        }
        for status in CodegenStatus::iter() {
            assert_eq!(serde_json::json!(status), status.as_str());
        }
        for engine in super::codegen::Engine::iter() {
            assert_eq!(serde_json::json!(engine), engine.as_str());
        }
    }
}
