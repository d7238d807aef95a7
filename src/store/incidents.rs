//! `incidents` (one open per check) and `notifications` (one row per incident transition ×
//! channel: the unique index is the fleet-wide "at most once").

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use super::{is_unique_violation, new_id, now};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::Expr;
use sea_orm::{DatabaseBackend, QueryOrder, Set, Statement};

/// The `incidents` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A period during which a check was failing.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "incidents")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The failing check.
        pub check_id: Uuid,
        /// `open` or `resolved`.
        pub status: String,
        /// `down` or `degraded`.
        pub cause: String,
        /// The first failing run of the streak that opened it.
        pub opened_at: DateTimeUtc,
        /// When someone acknowledged it.
        pub acknowledged_at: Option<DateTimeUtc>,
        /// Who acknowledged it.
        pub acknowledged_by: Option<String>,
        /// When the check recovered.
        pub resolved_at: Option<DateTimeUtc>,
        /// Whether its opening was notified (false while suppressed by maintenance).
        pub opened_notified: bool,
        /// When it was last notified.
        pub last_notified_at: Option<DateTimeUtc>,
        /// Repeat notifications sent so far.
        pub repeat_count: i32,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `notifications` table.
pub mod notification_entity {
    use sea_orm::entity::prelude::*;

    /// One incident transition to be sent to one channel.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "notifications")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The incident.
        pub incident_id: Uuid,
        /// The alert channel.
        pub channel_id: Uuid,
        /// `opened`, `resolved`, `repeat-N`.
        pub transition: String,
        /// `pending`, `sent`, `failed`.
        pub status: String,
        /// Attempts so far.
        pub attempts: i32,
        /// When the next attempt is due.
        pub next_attempt_at: Option<DateTimeUtc>,
        /// Sender holding it.
        pub lease_owner: Option<String>,
        /// When the lease lapses.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// Error of the last attempt.
        #[sea_orm(column_type = "Text", nullable)]
        pub last_error: Option<String>,
        /// When it was sent.
        pub sent_at: Option<DateTimeUtc>,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as Incident;
pub use notification_entity::Model as Notification;

/// Incident states.
pub const OPEN: &str = "open";
/// A recovered incident.
pub const RESOLVED: &str = "resolved";

/// Notification states.
pub const PENDING: &str = "pending";
/// Sent.
pub const SENT: &str = "sent";
/// No attempts left.
pub const FAILED: &str = "failed";

/// Opens an incident for `check_id`; `None` when one is open already (another poller, or a
/// retried run, got there first).
pub async fn open(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    check_id: Uuid,
    cause: &str,
    opened_at: DateTime<Utc>,
) -> Result<Option<Incident>, DbErr> {
    let at = now();
    let row = entity::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        check_id: Set(check_id),
        status: Set(OPEN.to_owned()),
        cause: Set(cause.to_owned()),
        opened_at: Set(opened_at),
        acknowledged_at: Set(None),
        acknowledged_by: Set(None),
        resolved_at: Set(None),
        opened_notified: Set(false),
        last_notified_at: Set(None),
        repeat_count: Set(0),
        created_at: Set(at),
        updated_at: Set(at),
    };
    match row.insert(db).await {
        Ok(incident) => Ok(Some(incident)),
        Err(err) if is_unique_violation(&err) => Ok(None),
        Err(err) => Err(err),
    }
}

/// The open incident of a check, if any.
pub async fn open_for_check(
    db: &impl ConnectionTrait,
    check_id: Uuid,
) -> Result<Option<Incident>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::CheckId.eq(check_id))
        .filter(entity::Column::Status.eq(OPEN))
        .one(db)
        .await
}

/// Every open incident of the organization.
pub async fn open_for_org(db: &impl ConnectionTrait, org_id: Uuid) -> Result<Vec<Incident>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::OrgId.eq(org_id))
        .filter(entity::Column::Status.eq(OPEN))
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await
}

/// Resolves an incident.
pub async fn resolve(db: &impl ConnectionTrait, incident: Incident) -> Result<Incident, DbErr> {
    let at = now();
    let mut row: entity::ActiveModel = incident.into();
    row.status = Set(RESOLVED.to_owned());
    row.resolved_at = Set(Some(at));
    row.updated_at = Set(at);
    row.update(db).await
}

/// Changes the cause of an open incident (down ↔ degraded).
pub async fn set_cause(
    db: &impl ConnectionTrait,
    incident: Incident,
    cause: &str,
) -> Result<Incident, DbErr> {
    let mut row: entity::ActiveModel = incident.into();
    row.cause = Set(cause.to_owned());
    row.updated_at = Set(now());
    row.update(db).await
}

/// Marks an incident notified (its opening, or a repeat).
pub async fn mark_notified(
    db: &impl ConnectionTrait,
    incident: Incident,
    repeat: bool,
) -> Result<Incident, DbErr> {
    let at = now();
    let repeats = incident.repeat_count + i32::from(repeat);
    let mut row: entity::ActiveModel = incident.into();
    row.opened_notified = Set(true);
    row.last_notified_at = Set(Some(at));
    row.repeat_count = Set(repeats);
    row.updated_at = Set(at);
    row.update(db).await
}

/// Acknowledges an incident; `false` when it already was.
pub async fn acknowledge(
    db: &impl ConnectionTrait,
    incident: &Incident,
    by: &str,
) -> Result<bool, DbErr> {
    let at = now();
    let result = entity::Entity::update_many()
        .col_expr(entity::Column::AcknowledgedAt, Expr::value(Some(at)))
        .col_expr(
            entity::Column::AcknowledgedBy,
            Expr::value(Some(by.to_owned())),
        )
        .col_expr(entity::Column::UpdatedAt, Expr::value(at))
        .filter(entity::Column::Id.eq(incident.id))
        .filter(entity::Column::AcknowledgedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The incident `id` of `org_id`.
pub async fn find(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Incident>, DbErr> {
    entity::Entity::find_by_id(id)
        .filter(entity::Column::OrgId.eq(org_id))
        .one(db)
        .await
}

/// The incident `id`, whichever organization.
pub async fn find_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Incident>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// A page of the organization's incidents, newest first, optionally of one status.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    status: Option<&str>,
    page: &PageRequest<Uuid>,
) -> Result<Page<Incident>, DbErr> {
    let mut query = entity::Entity::find().filter(entity::Column::OrgId.eq(org_id));
    if let Some(status) = status {
        query = query.filter(entity::Column::Status.eq(status));
    }
    keyset(db, query, entity::Column::Id, KeyOrder::Descending, page).await
}

/// Records that `transition` of `incident` must go to `channel_id`, due at `due`; a second
/// call for the same triple (another poller, a retried run) does nothing. True when inserted.
pub async fn insert_notification(
    db: &impl ConnectionTrait,
    incident: &Incident,
    channel_id: Uuid,
    transition: &str,
    due: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let at = now();
    let row = notification_entity::ActiveModel {
        id: Set(new_id()),
        org_id: Set(incident.org_id),
        incident_id: Set(incident.id),
        channel_id: Set(channel_id),
        transition: Set(transition.to_owned()),
        status: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(Some(due)),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        last_error: Set(None),
        sent_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
    };
    let inserted = notification_entity::Entity::insert(row)
        .on_conflict_do_nothing_on([
            notification_entity::Column::IncidentId,
            notification_entity::Column::ChannelId,
            notification_entity::Column::Transition,
        ])
        .exec_without_returning(db)
        .await?;
    Ok(matches!(inserted, sea_orm::TryInsertResult::Inserted(1)))
}

/// The due time of a pending, not yet due `opened` notification to `channel_id`, if any: a new
/// incident within the group wait joins it.
pub async fn pending_group_due(
    db: &impl ConnectionTrait,
    channel_id: Uuid,
) -> Result<Option<DateTime<Utc>>, DbErr> {
    let row = notification_entity::Entity::find()
        .filter(notification_entity::Column::ChannelId.eq(channel_id))
        .filter(notification_entity::Column::Status.eq(PENDING))
        .filter(notification_entity::Column::Attempts.eq(0))
        .filter(notification_entity::Column::Transition.eq("opened"))
        .filter(notification_entity::Column::NextAttemptAt.gt(now()))
        .order_by_asc(notification_entity::Column::NextAttemptAt)
        .one(db)
        .await?;
    Ok(row.and_then(|n| n.next_attempt_at))
}

/// An incident's notifications, oldest first.
pub async fn notifications_of(
    db: &impl ConnectionTrait,
    incident_id: Uuid,
) -> Result<Vec<Notification>, DbErr> {
    notification_entity::Entity::find()
        .filter(notification_entity::Column::IncidentId.eq(incident_id))
        .order_by_asc(notification_entity::Column::Id)
        .all(db)
        .await
}

const CLAIM_DUE_POSTGRES: &str = "UPDATE notifications \
    SET lease_owner = $1, lease_expires_at = $2 \
    WHERE id IN (SELECT id FROM notifications \
      WHERE status = 'pending' AND next_attempt_at <= $3 \
        AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
      ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
    RETURNING *";

const CLAIM_DUE_SQLITE: &str = "UPDATE notifications \
    SET lease_owner = ?1, lease_expires_at = ?2 \
    WHERE id IN (SELECT id FROM notifications \
      WHERE status = 'pending' AND next_attempt_at <= ?3 \
        AND (lease_expires_at IS NULL OR lease_expires_at < ?3) \
      ORDER BY next_attempt_at LIMIT ?4) \
    RETURNING *";

/// Claims up to `limit` due notifications for `owner` until `lease_until`.
pub async fn claim_due_notifications(
    db: &impl ConnectionTrait,
    owner: &str,
    lease_until: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<Notification>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => CLAIM_DUE_POSTGRES,
        _ => CLAIM_DUE_SQLITE,
    };
    notification_entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql,
            [
                owner.into(),
                lease_until.into(),
                now().into(),
                (limit as i64).into(),
            ],
        ))
        .all(db)
        .await
}

/// Records an attempt made under `owner`'s lease: `status` (`sent`, `failed`, or `pending`
/// with `next_attempt_at`). False when the lease was lost meanwhile.
pub async fn record_attempt(
    db: &impl ConnectionTrait,
    notification: &Notification,
    owner: &str,
    status: &str,
    error: Option<String>,
    next_attempt_at: Option<DateTime<Utc>>,
) -> Result<bool, DbErr> {
    let at = now();
    let sent_at = (status == SENT).then_some(at);
    let result = notification_entity::Entity::update_many()
        .col_expr(
            notification_entity::Column::Status,
            Expr::value(status.to_owned()),
        )
        .col_expr(
            notification_entity::Column::Attempts,
            Expr::value(notification.attempts + 1),
        )
        .col_expr(notification_entity::Column::LastError, Expr::value(error))
        .col_expr(
            notification_entity::Column::NextAttemptAt,
            Expr::value(next_attempt_at),
        )
        .col_expr(notification_entity::Column::SentAt, Expr::value(sent_at))
        .col_expr(
            notification_entity::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            notification_entity::Column::LeaseExpiresAt,
            Expr::value(Option::<DateTime<Utc>>::None),
        )
        .col_expr(notification_entity::Column::UpdatedAt, Expr::value(at))
        .filter(notification_entity::Column::Id.eq(notification.id))
        .filter(notification_entity::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}
