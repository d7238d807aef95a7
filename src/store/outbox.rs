//! `outbox_events`: events written in the same transaction as the change they describe.
//!
//! On Postgres every writer takes a transaction-scoped advisory lock before inserting, so ids
//! are assigned in commit order: a reader that has seen id N will never later see an id below
//! N appear. (A bare sequence does not give that: a transaction can take id 5, commit after
//! the one that took id 6, and a cursor at 6 would skip it.) SQLite has one writer at a time.

use super::now;
use super::paging::{keyset, KeyOrder, Page, PageRequest};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseBackend, QueryOrder, QuerySelect, Set, Statement};

/// Advisory-lock key that orders outbox writers on Postgres (ASCII "gantry-o").
const OUTBOX_WRITE_LOCK_KEY: i64 = 0x6761_6e74_7279_2d6f;

/// The `outbox_events` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One event.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "outbox_events")]
    pub struct Model {
        /// Commit-ordered sequence number; readers page by it.
        #[sea_orm(primary_key)]
        pub id: i64,
        /// Globally unique event id.
        #[sea_orm(unique)]
        pub event_id: Uuid,
        /// Organization the event belongs to.
        pub org_id: Uuid,
        /// Kind of resource the event is about, e.g. `workspace`.
        pub aggregate_type: String,
        /// Id of that resource.
        pub aggregate_id: Uuid,
        /// Event type, e.g. `workspace.created`.
        pub event_type: String,
        /// Event or job payload (JSON).
        #[sea_orm(column_type = "JsonBinary")]
        pub payload: Json,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the publisher handed it on; `None` while pending.
        pub published_at: Option<DateTimeUtc>,
        /// Publish attempts so far.
        pub attempts: i32,
        /// Worker currently holding the lease, if any.
        pub lease_owner: Option<String>,
        /// When the current lease lapses.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// The `X-Request-Id` of the request (or the job) that caused the event.
        pub request_id: Option<String>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as StoredEvent;

/// What to insert.
#[derive(Debug, Clone)]
pub struct NewEvent {
    /// Globally unique event id (consumers dedupe by it).
    pub event_id: Uuid,
    /// Tenant.
    pub org_id: Uuid,
    /// `org`, `workspace`, `project`, …
    pub aggregate_type: &'static str,
    /// Id of the aggregate.
    pub aggregate_id: Uuid,
    /// `aggregate.verb`.
    pub event_type: &'static str,
    /// Event-specific data.
    pub payload: Json,
}

/// Takes the outbox write lock until the caller's transaction ends (Postgres only: SQLite has
/// one writer anyway), so outbox ids are assigned in commit order.
async fn lock_writes(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    if db.get_database_backend() == DatabaseBackend::Postgres {
        db.execute_raw(Statement::from_sql_and_values(
            DatabaseBackend::Postgres,
            "SELECT pg_advisory_xact_lock($1)",
            [OUTBOX_WRITE_LOCK_KEY.into()],
        ))
        .await?;
    }
    Ok(())
}

/// Inserts events inside the caller's transaction, in order.
pub async fn insert_all(
    db: &impl ConnectionTrait,
    events: Vec<NewEvent>,
) -> Result<Vec<StoredEvent>, DbErr> {
    if events.is_empty() {
        return Ok(Vec::new());
    }
    // The request's audit row goes in first: nothing else should wait on the outbox lock.
    super::scope::record_write(db).await?;
    lock_writes(db).await?;
    let created_at = now();
    let mut stored = Vec::with_capacity(events.len());
    for event in events {
        stored.push(new_row(event, created_at).insert(db).await?);
    }
    Ok(stored)
}

/// The row of a new, unpublished event.
fn new_row(event: NewEvent, created_at: chrono::DateTime<chrono::Utc>) -> entity::ActiveModel {
    entity::ActiveModel {
        event_id: Set(event.event_id),
        org_id: Set(event.org_id),
        aggregate_type: Set(event.aggregate_type.to_owned()),
        aggregate_id: Set(event.aggregate_id),
        event_type: Set(event.event_type.to_owned()),
        payload: Set(event.payload),
        created_at: Set(created_at),
        published_at: Set(None),
        attempts: Set(0),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        // The request (or job) this task works for; see `store::scope`.
        request_id: Set(super::scope::request_id()),
        ..Default::default()
    }
}

/// Inserts many events inside the caller's transaction without reading them back (multi-row
/// inserts, for large batches such as probes).
pub async fn insert_bulk(db: &impl ConnectionTrait, events: Vec<NewEvent>) -> Result<(), DbErr> {
    if events.is_empty() {
        return Ok(());
    }
    lock_writes(db).await?;
    let created_at = now();
    let mut events = events.into_iter().peekable();
    // 1,000 rows × 12 columns stays under both backends' bind-parameter limits.
    while events.peek().is_some() {
        let chunk: Vec<entity::ActiveModel> = events
            .by_ref()
            .take(1_000)
            .map(|event| new_row(event, created_at))
            .collect();
        entity::Entity::insert_many(chunk)
            .exec_without_returning(db)
            .await?;
    }
    Ok(())
}

/// Which event types a reader wants: exact names or `prefix.*` patterns.
#[derive(Debug, Clone, Default)]
pub struct TypeFilter {
    /// Exact event types.
    pub exact: Vec<String>,
    /// Prefixes (from `workspace.*`, stored as `workspace.`).
    pub prefixes: Vec<String>,
}

impl TypeFilter {
    /// Parses comma-separated patterns such as `workspace.*,codegen.succeeded`.
    pub fn parse(patterns: &str) -> Self {
        let mut filter = TypeFilter::default();
        for pattern in patterns.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match pattern.strip_suffix('*') {
                Some(prefix) => filter.prefixes.push(prefix.to_owned()),
                None => filter.exact.push(pattern.to_owned()),
            }
        }
        filter
    }

    /// True when `event_type` passes.
    pub fn matches(&self, event_type: &str) -> bool {
        (self.exact.is_empty() && self.prefixes.is_empty())
            || self.exact.iter().any(|e| e == event_type)
            || self
                .prefixes
                .iter()
                .any(|p| event_type.starts_with(p.as_str()))
    }

    fn condition(&self) -> Option<sea_orm::Condition> {
        if self.exact.is_empty() && self.prefixes.is_empty() {
            return None;
        }
        let mut any = sea_orm::Condition::any();
        if !self.exact.is_empty() {
            any = any.add(entity::Column::EventType.is_in(self.exact.clone()));
        }
        for prefix in &self.prefixes {
            any = any.add(entity::Column::EventType.starts_with(prefix.as_str()));
        }
        Some(any)
    }
}

/// Events of one organization after `after`, oldest first.
pub async fn list_for_org(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    after: Option<i64>,
    types: &TypeFilter,
    limit: u64,
) -> Result<Page<StoredEvent>, DbErr> {
    let mut query = entity::Entity::find().filter(entity::Column::OrgId.eq(org_id));
    if let Some(condition) = types.condition() {
        query = query.filter(condition);
    }
    let page = PageRequest { limit, after };
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, &page).await
}

/// Events of every organization after `after`, oldest first (the event hub's one read).
pub async fn list_after(
    db: &impl ConnectionTrait,
    after: i64,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::Id.gt(after))
        .order_by_asc(entity::Column::Id)
        .limit(limit)
        .all(db)
        .await
}

/// The newest event id of all (0 when there is none).
pub async fn latest_id(db: &impl ConnectionTrait) -> Result<i64, DbErr> {
    let latest = entity::Entity::find()
        .order_by_desc(entity::Column::Id)
        .one(db)
        .await?;
    Ok(latest.map_or(0, |event| event.id))
}

/// The newest event id of an organization (where a fresh stream starts).
pub async fn latest_id_for_org(db: &impl ConnectionTrait, org_id: Uuid) -> Result<i64, DbErr> {
    let latest = entity::Entity::find()
        .filter(entity::Column::OrgId.eq(org_id))
        .order_by_desc(entity::Column::Id)
        .one(db)
        .await?;
    Ok(latest.map_or(0, |event| event.id))
}

const CLAIM_POSTGRES: &str = "UPDATE outbox_events \
    SET lease_owner = $1, lease_expires_at = $2, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM outbox_events \
      WHERE published_at IS NULL AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
      ORDER BY id LIMIT $4 FOR UPDATE SKIP LOCKED) \
    RETURNING *";

/// SQLite has one writer at a time, so the claim needs no row locks.
const CLAIM_SQLITE: &str = "UPDATE outbox_events \
    SET lease_owner = ?, lease_expires_at = ?, attempts = attempts + 1 \
    WHERE id IN (SELECT id FROM outbox_events \
      WHERE published_at IS NULL AND (lease_expires_at IS NULL OR lease_expires_at < ?) \
      ORDER BY id LIMIT ?) \
    RETURNING *";

/// Claims up to `limit` unpublished events in id order for `owner` until `lease_until`.
/// Events leased by someone else are skipped until that lease expires (a crashed publisher's
/// batch comes back); on Postgres concurrent claimers skip each other's rows (`SKIP LOCKED`).
pub async fn claim_unpublished(
    db: &impl ConnectionTrait,
    owner: &str,
    lease_until: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> Result<Vec<StoredEvent>, DbErr> {
    let backend = db.get_database_backend();
    let statement = match backend {
        DatabaseBackend::Postgres => CLAIM_POSTGRES,
        _ => CLAIM_SQLITE,
    };
    let mut rows = entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            statement,
            [
                owner.into(),
                lease_until.into(),
                now().into(),
                (limit as i64).into(),
            ],
        ))
        .all(db)
        .await?;
    rows.sort_by_key(|row| row.id);
    Ok(rows)
}

/// Marks events published, if `owner` still holds their lease. Returns how many were marked.
pub async fn mark_published(
    db: &impl ConnectionTrait,
    owner: &str,
    ids: &[i64],
) -> Result<u64, DbErr> {
    if ids.is_empty() {
        return Ok(0);
    }
    let result = give_back_lease(owner, ids)
        .col_expr(
            entity::Column::PublishedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(entity::Column::PublishedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}

/// Gives a lease back early (routing failed), so the events are claimed again at once.
pub async fn release(db: &impl ConnectionTrait, owner: &str, ids: &[i64]) -> Result<(), DbErr> {
    if ids.is_empty() {
        return Ok(());
    }
    give_back_lease(owner, ids).exec(db).await?;
    Ok(())
}

/// The update that clears the lease on those of `ids` that `owner` still holds (a lease lost to
/// another publisher is left alone).
fn give_back_lease(owner: &str, ids: &[i64]) -> sea_orm::UpdateMany<entity::Entity> {
    entity::Entity::update_many()
        .col_expr(
            entity::Column::LeaseOwner,
            sea_orm::sea_query::Expr::value(Option::<String>::None),
        )
        .col_expr(
            entity::Column::LeaseExpiresAt,
            sea_orm::sea_query::Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .filter(entity::Column::Id.is_in(ids.iter().copied()))
        .filter(entity::Column::LeaseOwner.eq(owner))
}

/// The unpublished backlog: how many events, and when the oldest was written.
pub async fn backlog(
    db: &impl ConnectionTrait,
) -> Result<(u64, Option<chrono::DateTime<chrono::Utc>>), DbErr> {
    let count = entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .count(db)
        .await?;
    let oldest = entity::Entity::find()
        .filter(entity::Column::PublishedAt.is_null())
        .order_by_asc(entity::Column::Id)
        .one(db)
        .await?
        .map(|event| event.created_at);
    Ok((count, oldest))
}

/// The event with this event id.
pub async fn find_by_event_id(
    db: &impl ConnectionTrait,
    event_id: Uuid,
) -> Result<Option<StoredEvent>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::EventId.eq(event_id))
        .one(db)
        .await
}

/// The newest published event of `event_type` about `aggregate_id`.
pub async fn latest_for_aggregate(
    db: &impl ConnectionTrait,
    aggregate_id: Uuid,
    event_type: &str,
) -> Result<Option<StoredEvent>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::AggregateId.eq(aggregate_id))
        .filter(entity::Column::EventType.eq(event_type))
        .filter(entity::Column::PublishedAt.is_not_null())
        .order_by_desc(entity::Column::Id)
        .one(db)
        .await
}

/// Signalled after a transaction that inserted outbox rows commits on SQLite, so an outbox
/// publisher in this process publishes at once instead of at its next poll (Postgres has
/// `NOTIFY` for this, across processes).
pub fn committed() -> &'static tokio::sync::Notify {
    static COMMITTED: std::sync::LazyLock<tokio::sync::Notify> =
        std::sync::LazyLock::new(tokio::sync::Notify::new);
    &COMMITTED
}

/// Installs [`committed`]'s hooks on a new SQLite connection: the update hook notes an insert
/// into `outbox_events`, the commit hook (which runs as the commit is about to land) signals.
pub(super) async fn watch_commits(
    conn: &mut sea_orm::sqlx::SqliteConnection,
) -> Result<(), sea_orm::sqlx::Error> {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    let wrote = Arc::new(AtomicBool::new(false));
    let mut handle = conn.lock_handle().await?;
    let noted = wrote.clone();
    handle.set_update_hook(move |change| {
        if change.table == "outbox_events" {
            noted.store(true, Ordering::Relaxed);
        }
    });
    let rolled_back = wrote.clone();
    handle.set_commit_hook(move || {
        if wrote.swap(false, Ordering::Relaxed) {
            committed().notify_one();
        }
        true
    });
    handle.set_rollback_hook(move || rolled_back.store(false, Ordering::Relaxed));
    Ok(())
}
