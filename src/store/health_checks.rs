//! `health_checks` (definition, hysteresis state, schedule, lease), `health_check_results` and
//! `health_check_rollups`.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use super::{new_id, now};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{DatabaseBackend, QueryOrder, QuerySelect, Set, Statement};

/// The `health_checks` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A health check of an organization.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "health_checks")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// Display name.
        pub name: String,
        /// `http`, `tcp`, `dns` or `tls`.
        pub kind: String,
        /// URL, `host:port`, or the DNS name.
        #[sea_orm(column_type = "Text")]
        pub target: String,
        /// Kind-specific settings (HTTP method/headers/body; DNS record type and resolver).
        #[sea_orm(column_type = "JsonBinary")]
        pub spec: Json,
        /// Condition expressions (JSON array of strings).
        #[sea_orm(column_type = "JsonBinary")]
        pub conditions: Json,
        /// Labels (JSON object of strings).
        #[sea_orm(column_type = "JsonBinary")]
        pub labels: Json,
        /// Run every this many milliseconds.
        pub interval_ms: i32,
        /// Bound on one run, in milliseconds.
        pub timeout_ms: i32,
        /// Failing runs in a row before the state changes.
        pub failure_threshold: i32,
        /// Succeeding runs in a row before the state changes.
        pub success_threshold: i32,
        /// False: paused.
        pub enabled: bool,
        /// Hysteresis state: `unknown`, `up`, `degraded`, `down`.
        pub state: String,
        /// When the displayed status last changed.
        pub status_since: DateTimeUtc,
        /// Failing runs in a row.
        pub consecutive_failures: i32,
        /// Succeeding runs in a row.
        pub consecutive_successes: i32,
        /// When the next run is due.
        pub next_run_at: DateTimeUtc,
        /// Poller holding the check, if any.
        pub lease_owner: Option<String>,
        /// When its lease lapses.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// When it last ran.
        pub last_checked_at: Option<DateTimeUtc>,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
        /// When the row was soft-deleted; `None` while live.
        pub deleted_at: Option<DateTimeUtc>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

soft_deleted!(entity, org_owned);

/// The `health_check_results` table.
pub mod result_entity {
    use sea_orm::entity::prelude::*;

    /// One run of a check.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "health_check_results")]
    pub struct Model {
        /// Primary key (time-ordered).
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The check.
        pub check_id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// When the run started.
        pub at: DateTimeUtc,
        /// Every condition held.
        pub success: bool,
        /// `up`, `degraded` or `down`.
        pub outcome: String,
        /// Time to the answer.
        pub response_time_ms: i32,
        /// `[{expr, success, actual}]`.
        #[sea_orm(column_type = "JsonBinary")]
        pub conditions: Json,
        /// Why the target did not answer.
        #[sea_orm(column_type = "Text", nullable)]
        pub error: Option<String>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `health_check_rollups` table.
pub mod rollup_entity {
    use sea_orm::entity::prelude::*;

    /// One hour of a check's results, aggregated.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "health_check_rollups")]
    pub struct Model {
        /// The check.
        #[sea_orm(primary_key, auto_increment = false)]
        pub check_id: Uuid,
        /// Start of the hour.
        #[sea_orm(primary_key, auto_increment = false)]
        pub hour: DateTimeUtc,
        /// Runs.
        pub total: i32,
        /// Succeeding runs.
        pub successes: i32,
        /// Sum of response times.
        pub response_time_sum_ms: i64,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as HealthCheck;
pub use result_entity::Model as CheckResult;
pub use rollup_entity::Model as Rollup;

/// What a new check is made of (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewCheck {
    /// Display name.
    pub name: String,
    /// Kind name.
    pub kind: &'static str,
    /// Target.
    pub target: String,
    /// Kind-specific settings.
    pub spec: serde_json::Value,
    /// Condition expressions.
    pub conditions: Vec<String>,
    /// Labels.
    pub labels: serde_json::Value,
    /// Interval.
    pub interval_ms: i32,
    /// Timeout.
    pub timeout_ms: i32,
    /// Failure threshold.
    pub failure_threshold: i32,
    /// Success threshold.
    pub success_threshold: i32,
    /// Enabled.
    pub enabled: bool,
}

/// Inserts a check, first due at `first_run_at` (spread over its interval by the caller).
pub async fn insert(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
    check: NewCheck,
    first_run_at: DateTime<Utc>,
) -> Result<HealthCheck, DbErr> {
    let at = now();
    entity::ActiveModel {
        id: Set(id),
        org_id: Set(org_id),
        name: Set(check.name),
        kind: Set(check.kind.to_owned()),
        target: Set(check.target),
        spec: Set(check.spec),
        conditions: Set(serde_json::json!(check.conditions)),
        labels: Set(check.labels),
        interval_ms: Set(check.interval_ms),
        timeout_ms: Set(check.timeout_ms),
        failure_threshold: Set(check.failure_threshold),
        success_threshold: Set(check.success_threshold),
        enabled: Set(check.enabled),
        state: Set("unknown".to_owned()),
        status_since: Set(at),
        consecutive_failures: Set(0),
        consecutive_successes: Set(0),
        next_run_at: Set(first_run_at),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        last_checked_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// Replaces a check's definition (its state and schedule are kept).
pub async fn update(
    db: &impl ConnectionTrait,
    check: HealthCheck,
    new: NewCheck,
) -> Result<HealthCheck, DbErr> {
    let paused_changed = check.enabled != new.enabled;
    let mut row: entity::ActiveModel = check.into();
    row.name = Set(new.name);
    row.target = Set(new.target);
    row.spec = Set(new.spec);
    row.conditions = Set(serde_json::json!(new.conditions));
    row.labels = Set(new.labels);
    row.interval_ms = Set(new.interval_ms);
    row.timeout_ms = Set(new.timeout_ms);
    row.failure_threshold = Set(new.failure_threshold);
    row.success_threshold = Set(new.success_threshold);
    row.enabled = Set(new.enabled);
    let at = now();
    if paused_changed {
        row.status_since = Set(at);
    }
    row.updated_at = Set(at);
    row.update(db).await
}

/// The live check `id` of `org_id`.
pub async fn find_live(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<HealthCheck>, DbErr> {
    super::find_live_in_org::<entity::Entity>(db, org_id, id).await
}

/// The check `id`, live or not (a poller must learn it is gone).
pub async fn find_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<HealthCheck>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// A page of the organization's live checks.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<HealthCheck>, DbErr> {
    let query = super::live_in_org::<entity::Entity>(org_id);
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// Every live check of the organization (the status overview).
pub async fn all_live(db: &impl ConnectionTrait, org_id: Uuid) -> Result<Vec<HealthCheck>, DbErr> {
    super::live_in_org::<entity::Entity>(org_id)
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await
}

/// Soft-deletes the check.
pub async fn soft_delete(
    db: &impl ConnectionTrait,
    check: HealthCheck,
) -> Result<HealthCheck, DbErr> {
    super::soft_delete::<entity::Entity>(db, check).await
}

const CLAIM_DUE_POSTGRES: &str = "UPDATE health_checks \
    SET lease_owner = $1, lease_expires_at = $2 + (timeout_ms + 5000) * INTERVAL '1 millisecond' \
    WHERE id IN (SELECT id FROM health_checks \
      WHERE deleted_at IS NULL AND enabled AND next_run_at <= $2 \
        AND (lease_expires_at IS NULL OR lease_expires_at < $2) \
      ORDER BY next_run_at LIMIT $3 FOR UPDATE SKIP LOCKED) \
    RETURNING *";

// SQLite has one writer at a time, so the UPDATE itself is the lock. Times are stored as
// RFC 3339 text, which compares in time order.
const CLAIM_DUE_SQLITE: &str = "UPDATE health_checks \
    SET lease_owner = ?1, lease_expires_at = ?4 \
    WHERE id IN (SELECT id FROM health_checks \
      WHERE deleted_at IS NULL AND enabled AND next_run_at <= ?2 \
        AND (lease_expires_at IS NULL OR lease_expires_at < ?2) \
      ORDER BY next_run_at LIMIT ?3) \
    RETURNING *";

/// Claims up to `limit` due checks for `owner`. The lease lasts the check's timeout plus 5 s
/// on Postgres (`max_timeout` plus 5 s for all on SQLite); a poller that dies mid-check leaves
/// it, and the check is claimed again when it lapses.
pub async fn claim_due(
    db: &impl ConnectionTrait,
    owner: &str,
    limit: u64,
    max_timeout: std::time::Duration,
) -> Result<Vec<HealthCheck>, DbErr> {
    let backend = db.get_database_backend();
    let at = now();
    let statement = match backend {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            backend,
            CLAIM_DUE_POSTGRES,
            [owner.into(), at.into(), (limit as i64).into()],
        ),
        _ => {
            let until = at
                + chrono::Duration::from_std(max_timeout).unwrap_or(chrono::Duration::hours(1))
                + chrono::Duration::seconds(5);
            Statement::from_sql_and_values(
                backend,
                CLAIM_DUE_SQLITE,
                [owner.into(), at.into(), (limit as i64).into(), until.into()],
            )
        }
    };
    entity::Entity::find().from_raw_sql(statement).all(db).await
}

/// What one run changes on its check.
#[derive(Debug, Clone)]
pub struct RunUpdate {
    /// New hysteresis state.
    pub state: String,
    /// New `status_since`, when the displayed status changed.
    pub status_since: Option<DateTime<Utc>>,
    /// Failing runs in a row.
    pub failures: i32,
    /// Succeeding runs in a row.
    pub successes: i32,
    /// When the next run is due.
    pub next_run_at: DateTime<Utc>,
    /// When this run started.
    pub checked_at: DateTime<Utc>,
}

/// Records a run's effect and releases `owner`'s lease. False when the lease was lost (another
/// poller owns the check now, or it was deleted or changed): the caller then writes nothing.
pub async fn finish_run(
    db: &impl ConnectionTrait,
    check: &HealthCheck,
    owner: &str,
    update: &RunUpdate,
) -> Result<bool, DbErr> {
    let mut query = entity::Entity::update_many()
        .col_expr(entity::Column::State, Expr::value(update.state.clone()))
        .col_expr(
            entity::Column::ConsecutiveFailures,
            Expr::value(update.failures),
        )
        .col_expr(
            entity::Column::ConsecutiveSuccesses,
            Expr::value(update.successes),
        )
        .col_expr(entity::Column::NextRunAt, Expr::value(update.next_run_at))
        .col_expr(
            entity::Column::LastCheckedAt,
            Expr::value(Some(update.checked_at)),
        )
        .col_expr(
            entity::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            entity::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        );
    if let Some(since) = update.status_since {
        query = query.col_expr(entity::Column::StatusSince, Expr::value(since));
    }
    let result = query
        .filter(entity::Column::Id.eq(check.id))
        .filter(entity::Column::LeaseOwner.eq(owner))
        .filter(entity::Column::DeletedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Sets `status_since` (the displayed status changed without a run: maintenance began or
/// ended).
pub async fn set_status_since(
    db: &impl ConnectionTrait,
    id: Uuid,
    at: DateTime<Utc>,
) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(entity::Column::StatusSince, Expr::value(at))
        .filter(entity::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}

/// A new result row.
#[derive(Debug, Clone)]
pub struct NewResult {
    /// When the run started.
    pub at: DateTime<Utc>,
    /// Every condition held.
    pub success: bool,
    /// `up`, `degraded`, `down`.
    pub outcome: &'static str,
    /// Time to the answer.
    pub response_time_ms: i32,
    /// `[{expr, success, actual}]`.
    pub conditions: serde_json::Value,
    /// Why the target did not answer.
    pub error: Option<String>,
}

/// Inserts a result.
pub async fn insert_result(
    db: &impl ConnectionTrait,
    check: &HealthCheck,
    result: NewResult,
) -> Result<CheckResult, DbErr> {
    result_entity::ActiveModel {
        id: Set(new_id()),
        check_id: Set(check.id),
        org_id: Set(check.org_id),
        at: Set(result.at),
        success: Set(result.success),
        outcome: Set(result.outcome.to_owned()),
        response_time_ms: Set(result.response_time_ms),
        conditions: Set(result.conditions),
        error: Set(result.error),
    }
    .insert(db)
    .await
}

/// A page of a check's results, oldest first, after `since` when given.
pub async fn list_results(
    db: &impl ConnectionTrait,
    check_id: Uuid,
    since: Option<DateTime<Utc>>,
    page: &PageRequest<Uuid>,
) -> Result<Page<CheckResult>, DbErr> {
    let mut query =
        result_entity::Entity::find().filter(result_entity::Column::CheckId.eq(check_id));
    if let Some(since) = since {
        query = query.filter(result_entity::Column::At.gt(since));
    }
    keyset(
        db,
        query,
        result_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// `(success, response_time_ms)` of every raw result of the check since `since`.
pub async fn results_since(
    db: &impl ConnectionTrait,
    check_id: Uuid,
    since: DateTime<Utc>,
) -> Result<Vec<(bool, i32)>, DbErr> {
    result_entity::Entity::find()
        .select_only()
        .column(result_entity::Column::Success)
        .column(result_entity::Column::ResponseTimeMs)
        .filter(result_entity::Column::CheckId.eq(check_id))
        .filter(result_entity::Column::At.gte(since))
        .into_tuple()
        .all(db)
        .await
}

/// `(total, successes)` of the check's rollups from `since` up to `until`.
pub async fn rollup_totals(
    db: &impl ConnectionTrait,
    check_id: Uuid,
    since: DateTime<Utc>,
    until: DateTime<Utc>,
) -> Result<(i64, i64), DbErr> {
    let rows: Vec<Rollup> = rollup_entity::Entity::find()
        .filter(rollup_entity::Column::CheckId.eq(check_id))
        .filter(rollup_entity::Column::Hour.gte(since))
        .filter(rollup_entity::Column::Hour.lt(until))
        .all(db)
        .await?;
    Ok(rows.iter().fold((0, 0), |(t, s), r| {
        (t + i64::from(r.total), s + i64::from(r.successes))
    }))
}

/// Up to `limit` raw results older than `before` (for rolling up).
pub async fn results_before(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<CheckResult>, DbErr> {
    result_entity::Entity::find()
        .filter(result_entity::Column::At.lt(before))
        .order_by_asc(result_entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// Adds `rollup`'s counts to its hour (creating it).
pub async fn add_rollup(db: &impl ConnectionTrait, rollup: Rollup) -> Result<(), DbErr> {
    use rollup_entity::Column;
    let row = rollup_entity::ActiveModel {
        check_id: Set(rollup.check_id),
        hour: Set(rollup.hour),
        total: Set(rollup.total),
        successes: Set(rollup.successes),
        response_time_sum_ms: Set(rollup.response_time_sum_ms),
    };
    rollup_entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([Column::CheckId, Column::Hour])
                .value(
                    Column::Total,
                    Expr::col((rollup_entity::Entity, Column::Total)).add(rollup.total),
                )
                .value(
                    Column::Successes,
                    Expr::col((rollup_entity::Entity, Column::Successes)).add(rollup.successes),
                )
                .value(
                    Column::ResponseTimeSumMs,
                    Expr::col((rollup_entity::Entity, Column::ResponseTimeSumMs))
                        .add(rollup.response_time_sum_ms),
                )
                .to_owned(),
        )
        .exec(db)
        .await?;
    Ok(())
}

/// Deletes the results `ids`.
pub async fn delete_results(db: &impl ConnectionTrait, ids: Vec<Uuid>) -> Result<u64, DbErr> {
    let result = result_entity::Entity::delete_many()
        .filter(result_entity::Column::Id.is_in(ids))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Deletes rollups older than `before`.
pub async fn delete_rollups_before(
    db: &impl ConnectionTrait,
    before: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = rollup_entity::Entity::delete_many()
        .filter(rollup_entity::Column::Hour.lt(before))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Live checks per hysteresis state and enabled flag (the `gantry_health_checks_total` gauge).
pub async fn count_by_state(db: &impl ConnectionTrait) -> Result<Vec<(String, bool, i64)>, DbErr> {
    entity::Entity::find()
        .select_only()
        .column(entity::Column::State)
        .column(entity::Column::Enabled)
        .column_as(entity::Column::Id.count(), "n")
        .filter(entity::Column::DeletedAt.is_null())
        .group_by(entity::Column::State)
        .group_by(entity::Column::Enabled)
        .into_tuple()
        .all(db)
        .await
}
