//! `audit_log`: the append-only trail of writes, sign-ins and denials. Rows are only inserted
//! and, by the retention job, deleted (on Postgres a trigger refuses anything else).

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseBackend, Set, Statement};

/// The `audit_log` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One audit row.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        /// Insertion order; pages run newest first by it.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// When it happened.
        pub at: DateTimeUtc,
        /// `user` or `service_account`.
        pub actor_type: String,
        /// The user's `sub` or the service account's id.
        pub actor_id: String,
        /// `project.update`, `user.sign_in`, …
        pub action: String,
        /// Kind of the thing acted on.
        pub target_type: String,
        /// Its id, if known.
        pub target_id: Option<String>,
        /// The organization, for org-scoped actions.
        pub org_id: Option<Uuid>,
        /// The request's `X-Request-Id`.
        pub request_id: Option<String>,
        /// The client's address.
        pub source_ip: Option<String>,
        /// The client's `User-Agent`.
        pub user_agent: Option<String>,
        /// `success` or `denied`.
        pub outcome: String,
        /// `{before, after}` with secrets redacted.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub changes: Option<Json>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as AuditRow;

/// A row to insert.
#[derive(Debug, Clone)]
pub struct NewEntry {
    /// `user` or `service_account`.
    pub actor_type: &'static str,
    /// The actor's id.
    pub actor_id: String,
    /// The action.
    pub action: String,
    /// Kind of target.
    pub target_type: String,
    /// Target id.
    pub target_id: Option<String>,
    /// Organization.
    pub org_id: Option<Uuid>,
    /// Request id.
    pub request_id: Option<String>,
    /// Client address.
    pub source_ip: Option<String>,
    /// Client user agent.
    pub user_agent: Option<String>,
    /// `success` or `denied`.
    pub outcome: &'static str,
    /// `{before, after}`, already redacted.
    pub changes: Option<Json>,
}

/// Inserts one row in the caller's transaction (or on its own).
pub async fn insert(db: &impl ConnectionTrait, entry: NewEntry) -> Result<(), DbErr> {
    entity::ActiveModel {
        at: Set(super::now()),
        actor_type: Set(entry.actor_type.to_owned()),
        actor_id: Set(entry.actor_id),
        action: Set(entry.action),
        target_type: Set(entry.target_type),
        target_id: Set(entry.target_id),
        org_id: Set(entry.org_id),
        request_id: Set(entry.request_id),
        source_ip: Set(entry.source_ip),
        user_agent: Set(entry.user_agent.map(|ua| ua.chars().take(512).collect())),
        outcome: Set(entry.outcome.to_owned()),
        changes: Set(entry.changes),
        ..Default::default()
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Which rows to list.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Only this organization's rows (`None`: every row, for platform admins).
    pub org_id: Option<Uuid>,
    /// Actor id (`sub` or service account id).
    pub actor: Option<String>,
    /// Exact action, or a prefix ending in `.` (`project.`).
    pub action: Option<String>,
    /// Target type.
    pub target_type: Option<String>,
    /// At or after this time.
    pub after: Option<DateTime<Utc>>,
    /// Before this time.
    pub before: Option<DateTime<Utc>>,
}

/// A page of rows matching `filter`, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    filter: &AuditFilter,
    page: &PageRequest<i64>,
) -> Result<Page<AuditRow>, DbErr> {
    use entity::Column;
    let mut query = entity::Entity::find();
    if let Some(org_id) = filter.org_id {
        query = query.filter(Column::OrgId.eq(org_id));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(Column::ActorId.eq(actor.clone()));
    }
    if let Some(action) = &filter.action {
        query = if action.ends_with('.') {
            query.filter(Column::Action.starts_with(action.clone()))
        } else {
            query.filter(Column::Action.eq(action.clone()))
        };
    }
    if let Some(target_type) = &filter.target_type {
        query = query.filter(Column::TargetType.eq(target_type.clone()));
    }
    if let Some(after) = filter.after {
        query = query.filter(Column::At.gte(after));
    }
    if let Some(before) = filter.before {
        query = query.filter(Column::At.lt(before));
    }
    keyset(db, query, Column::Id, KeyOrder::Descending, page).await
}

/// Deletes rows older than `cutoff`, at most `batch` of them; returns how many went. The only
/// delete the Postgres trigger lets through, by a flag set for this transaction alone.
pub async fn delete_older_than(
    db: &DatabaseConnection,
    cutoff: DateTime<Utc>,
    batch: u64,
) -> Result<u64, DbErr> {
    let txn = super::begin_write(db).await?;
    let backend = txn.get_database_backend();
    if backend == DatabaseBackend::Postgres {
        txn.execute_unprepared("SET LOCAL gantry.audit_retention = 'on'")
            .await?;
    }
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE at < $1 ORDER BY id LIMIT $2)"
        }
        _ => {
            "DELETE FROM audit_log WHERE id IN \
             (SELECT id FROM audit_log WHERE at < ? ORDER BY id LIMIT ?)"
        }
    };
    let result = txn
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [cutoff.into(), (batch as i64).into()],
        ))
        .await?;
    txn.commit().await?;
    Ok(result.rows_affected())
}
