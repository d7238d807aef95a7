//! `webhooks` and `webhook_deliveries`.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use super::{new_id, now};
use crate::sealed::{SealError, SecretsCipher};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseBackend, Set, Statement};

/// A webhook delivery's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
pub enum DeliveryStatus {
    /// Waiting for its (next) attempt.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// A receiver answered 2xx.
    #[sea_orm(string_value = "delivered")]
    Delivered,
    /// Every attempt failed.
    #[sea_orm(string_value = "failed")]
    Failed,
}

stored_names!(DeliveryStatus {
    Pending => "pending",
    Delivered => "delivered",
    Failed => "failed",
});

/// The `webhooks` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A webhook subscription; `events` is a JSON array of patterns. Its `Debug` hides the
    /// secret.
    #[derive(Clone, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhooks")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// Endpoint deliveries are POSTed to.
        #[sea_orm(column_type = "Text")]
        pub url: String,
        /// Event type patterns subscribed to (JSON array).
        #[sea_orm(column_type = "JsonBinary")]
        pub events: Json,
        /// Free-text description, if any.
        #[sea_orm(column_type = "Text", nullable)]
        pub description: Option<String>,
        /// Signing secret for delivery signatures, sealed at rest (see
        /// [`super::Webhook::signing_secret`]).
        pub secret: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
        /// When the row was soft-deleted; `None` while live.
        pub deleted_at: Option<DateTimeUtc>,
        /// Id of the key that sealed `secret`; `None` = stored before encryption at rest.
        pub secret_key_id: Option<String>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Webhook")
                .field("id", &self.id)
                .field("org_id", &self.org_id)
                .field("url", &self.url)
                .field("events", &self.events)
                .field("description", &self.description)
                .field("secret", &"[redacted]")
                .field("secret_key_id", &self.secret_key_id)
                .field("created_at", &self.created_at)
                .field("updated_at", &self.updated_at)
                .field("deleted_at", &self.deleted_at)
                .finish()
        }
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

soft_deleted!(entity, org_owned);

/// The `webhook_deliveries` table.
pub mod delivery_entity {
    use sea_orm::entity::prelude::*;

    /// One event's delivery to one webhook.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "webhook_deliveries")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The webhook being delivered to.
        pub webhook_id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The outbox event id.
        pub event_id: Uuid,
        /// Event type, e.g. `workspace.created`.
        pub event_type: String,
        /// Delivery status.
        pub status: super::DeliveryStatus,
        /// Delivery attempts so far.
        pub attempts: i32,
        /// HTTP status of the last attempt, if a response came.
        pub response_code: Option<i32>,
        /// Duration of the last attempt in milliseconds.
        pub duration_ms: Option<i32>,
        /// Error of the last attempt, if it failed.
        #[sea_orm(column_type = "Text", nullable)]
        pub last_error: Option<String>,
        /// When the next attempt is due, if one is.
        pub next_attempt_at: Option<DateTimeUtc>,
        /// Worker currently holding the lease, if any.
        pub lease_owner: Option<String>,
        /// When the current lease lapses.
        pub lease_expires_at: Option<DateTimeUtc>,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
        /// When a delivery attempt succeeded.
        pub delivered_at: Option<DateTimeUtc>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use delivery_entity::Model as Delivery;
pub use entity::Model as Webhook;

/// Associated data sealing the secret of webhook `id` (a value moved to another row fails).
fn secret_aad(id: Uuid) -> String {
    format!("webhooks:{id}")
}

/// `secret` sealed for webhook `id`, as the two stored columns.
fn seal_secret(
    cipher: &SecretsCipher,
    id: Uuid,
    secret: &str,
) -> Result<(String, Option<String>), DbErr> {
    let sealed = cipher
        .seal(&secret_aad(id), secret)
        .map_err(|e| DbErr::Custom(format!("sealing a webhook secret: {e}")))?;
    Ok((sealed.ciphertext, Some(sealed.key_id)))
}

impl Webhook {
    /// The signing secret in clear, for signing a delivery.
    pub fn signing_secret(&self, cipher: &SecretsCipher) -> Result<String, SealError> {
        cipher.open(
            &secret_aad(self.id),
            self.secret_key_id.as_deref(),
            &self.secret,
        )
    }

    /// The subscribed event patterns.
    pub fn patterns(&self) -> Vec<String> {
        serde_json::from_value(self.events.clone()).unwrap_or_default()
    }
}

/// Inserts a webhook.
pub async fn insert(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    url: &str,
    events: &[String],
    description: Option<String>,
    cipher: &SecretsCipher,
    secret: &str,
) -> Result<Webhook, DbErr> {
    let at = now();
    let id = new_id();
    let (secret, secret_key_id) = seal_secret(cipher, id, secret)?;
    entity::ActiveModel {
        id: Set(id),
        org_id: Set(org_id),
        url: Set(url.to_owned()),
        events: Set(serde_json::json!(events)),
        description: Set(description),
        secret: Set(secret),
        secret_key_id: Set(secret_key_id),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live webhook `id` of `org_id`.
pub async fn find_live(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Webhook>, DbErr> {
    super::find_live_in_org::<entity::Entity>(db, org_id, id).await
}

/// A page of the organization's live webhooks.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<Webhook>, DbErr> {
    let query = super::live_in_org::<entity::Entity>(org_id);
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// Every live webhook of the organization (for routing).
pub async fn all_live_for_org(
    db: &impl ConnectionTrait,
    org_id: Uuid,
) -> Result<Vec<Webhook>, DbErr> {
    super::live_in_org::<entity::Entity>(org_id).all(db).await
}

/// Changes url, events and/or description.
pub async fn update(
    db: &impl ConnectionTrait,
    webhook: Webhook,
    url: Option<String>,
    events: Option<Vec<String>>,
    description: Option<Option<String>>,
) -> Result<Webhook, DbErr> {
    let mut row: entity::ActiveModel = webhook.into();
    if let Some(url) = url {
        row.url = Set(url);
    }
    if let Some(events) = events {
        row.events = Set(serde_json::json!(events));
    }
    if let Some(description) = description {
        row.description = Set(description);
    }
    row.updated_at = Set(now());
    row.update(db).await
}

/// Replaces the signing secret (sealed under the current key).
pub async fn set_secret(
    db: &impl ConnectionTrait,
    webhook: Webhook,
    cipher: &SecretsCipher,
    secret: &str,
) -> Result<Webhook, DbErr> {
    let (sealed, key_id) = seal_secret(cipher, webhook.id, secret)?;
    let mut row: entity::ActiveModel = webhook.into();
    row.secret = Set(sealed);
    row.secret_key_id = Set(key_id);
    row.updated_at = Set(now());
    row.update(db).await
}

/// Seals again, under the current key, every webhook secret (deleted ones too) that is
/// plaintext or sealed by another key; answers how many. Used at start-up (plaintext only) and
/// by `gantry rotate-secrets` (all stale ones).
pub async fn reseal_secrets(
    db: &impl ConnectionTrait,
    cipher: &SecretsCipher,
    plaintext_only: bool,
) -> Result<u64, DbErr> {
    let mut query = entity::Entity::find();
    query = if plaintext_only {
        query.filter(entity::Column::SecretKeyId.is_null())
    } else {
        query.filter(
            sea_orm::Condition::any()
                .add(entity::Column::SecretKeyId.is_null())
                .add(entity::Column::SecretKeyId.ne(cipher.current_key_id())),
        )
    };
    let mut count = 0;
    for webhook in query.all(db).await? {
        let clear = webhook
            .signing_secret(cipher)
            .map_err(|e| DbErr::Custom(format!("webhook {}: {e}", webhook.id)))?;
        let (sealed, key_id) = seal_secret(cipher, webhook.id, &clear)?;
        entity::Entity::update_many()
            .col_expr(entity::Column::Secret, Expr::value(sealed))
            .col_expr(entity::Column::SecretKeyId, Expr::value(key_id))
            .filter(entity::Column::Id.eq(webhook.id))
            .filter(match &webhook.secret_key_id {
                None => entity::Column::SecretKeyId.is_null(),
                Some(old) => entity::Column::SecretKeyId.eq(old.clone()),
            })
            .exec(db)
            .await?;
        count += 1;
    }
    Ok(count)
}

/// Soft-deletes the webhook.
pub async fn soft_delete(db: &impl ConnectionTrait, webhook: Webhook) -> Result<Webhook, DbErr> {
    super::soft_delete::<entity::Entity>(db, webhook).await
}

/// Records that `event_id` must be delivered to `webhook`; a second call for the same pair
/// (a re-routed event) does nothing.
pub async fn insert_delivery(
    db: &impl ConnectionTrait,
    webhook: &Webhook,
    event_id: Uuid,
    event_type: &str,
) -> Result<(), DbErr> {
    let at = now();
    let row = delivery_entity::ActiveModel {
        id: Set(new_id()),
        webhook_id: Set(webhook.id),
        org_id: Set(webhook.org_id),
        event_id: Set(event_id),
        event_type: Set(event_type.to_owned()),
        status: Set(DeliveryStatus::Pending),
        attempts: Set(0),
        response_code: Set(None),
        duration_ms: Set(None),
        last_error: Set(None),
        next_attempt_at: Set(Some(at)),
        lease_owner: Set(None),
        lease_expires_at: Set(None),
        created_at: Set(at),
        updated_at: Set(at),
        delivered_at: Set(None),
    };
    delivery_entity::Entity::insert(row)
        .on_conflict_do_nothing_on([
            delivery_entity::Column::WebhookId,
            delivery_entity::Column::EventId,
        ])
        .exec(db)
        .await?;
    Ok(())
}

/// A page of a webhook's deliveries, newest first.
pub async fn list_deliveries(
    db: &impl ConnectionTrait,
    webhook_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<Delivery>, DbErr> {
    let query =
        delivery_entity::Entity::find().filter(delivery_entity::Column::WebhookId.eq(webhook_id));
    keyset(
        db,
        query,
        delivery_entity::Column::Id,
        KeyOrder::Descending,
        page,
    )
    .await
}

/// One delivery of a webhook.
pub async fn find_delivery(
    db: &impl ConnectionTrait,
    webhook_id: Uuid,
    id: Uuid,
) -> Result<Option<Delivery>, DbErr> {
    delivery_entity::Entity::find_by_id(id)
        .filter(delivery_entity::Column::WebhookId.eq(webhook_id))
        .one(db)
        .await
}

/// Puts a delivery back to pending, due now, with a fresh attempt budget.
pub async fn redeliver(db: &impl ConnectionTrait, delivery: Delivery) -> Result<Delivery, DbErr> {
    let at = now();
    let mut row: delivery_entity::ActiveModel = delivery.into();
    row.status = Set(DeliveryStatus::Pending);
    row.attempts = Set(0);
    row.next_attempt_at = Set(Some(at));
    row.updated_at = Set(at);
    row.update(db).await
}

// `$5` / `?5` is the pending status, bound from [`DeliveryStatus`] rather than spelled here.
const CLAIM_DUE_POSTGRES: &str = "UPDATE webhook_deliveries \
    SET lease_owner = $1, lease_expires_at = $2 \
    WHERE id IN (SELECT id FROM webhook_deliveries \
      WHERE status = $5 AND next_attempt_at <= $3 \
        AND (lease_expires_at IS NULL OR lease_expires_at < $3) \
      ORDER BY next_attempt_at LIMIT $4 FOR UPDATE SKIP LOCKED) \
    RETURNING *";

const CLAIM_DUE_SQLITE: &str = "UPDATE webhook_deliveries \
    SET lease_owner = ?1, lease_expires_at = ?2 \
    WHERE id IN (SELECT id FROM webhook_deliveries \
      WHERE status = ?5 AND next_attempt_at <= ?3 \
        AND (lease_expires_at IS NULL OR lease_expires_at < ?3) \
      ORDER BY next_attempt_at LIMIT ?4) \
    RETURNING *";

/// Claims up to `limit` due pending deliveries for `owner` until `lease_until`. A sender that
/// dies mid-attempt leaves its lease; the delivery is claimed again when the lease expires.
pub async fn claim_due_deliveries(
    db: &impl ConnectionTrait,
    owner: &str,
    lease_until: chrono::DateTime<chrono::Utc>,
    limit: u64,
) -> Result<Vec<Delivery>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => CLAIM_DUE_POSTGRES,
        _ => CLAIM_DUE_SQLITE,
    };
    delivery_entity::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql,
            [
                owner.into(),
                lease_until.into(),
                now().into(),
                (limit as i64).into(),
                DeliveryStatus::Pending.into(),
            ],
        ))
        .all(db)
        .await
}

/// What one attempt came to.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    /// `delivered`, `failed`, or `pending` (to be retried at `next_attempt_at`).
    pub status: DeliveryStatus,
    /// HTTP status, if a response came.
    pub response_code: Option<i32>,
    /// How long the attempt took.
    pub duration_ms: i32,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// When to try again (pending only).
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Records an attempt made under `owner`'s lease and releases the lease. Returns false when the
/// lease was lost meanwhile (another sender owns the delivery now).
pub async fn record_attempt(
    db: &impl ConnectionTrait,
    delivery: &Delivery,
    owner: &str,
    record: &AttemptRecord,
) -> Result<bool, DbErr> {
    use sea_orm::sea_query::Expr;
    let at = now();
    let delivered_at = (record.status == DeliveryStatus::Delivered).then_some(at);
    let result = delivery_entity::Entity::update_many()
        .col_expr(
            delivery_entity::Column::Status,
            Expr::value(record.status.as_str()),
        )
        .col_expr(
            delivery_entity::Column::Attempts,
            Expr::value(delivery.attempts + 1),
        )
        .col_expr(
            delivery_entity::Column::ResponseCode,
            Expr::value(record.response_code),
        )
        .col_expr(
            delivery_entity::Column::DurationMs,
            Expr::value(record.duration_ms),
        )
        .col_expr(
            delivery_entity::Column::LastError,
            Expr::value(record.error.clone()),
        )
        .col_expr(
            delivery_entity::Column::NextAttemptAt,
            Expr::value(record.next_attempt_at),
        )
        .col_expr(
            delivery_entity::Column::DeliveredAt,
            Expr::value(delivered_at),
        )
        .col_expr(
            delivery_entity::Column::LeaseOwner,
            Expr::value(Option::<String>::None),
        )
        .col_expr(
            delivery_entity::Column::LeaseExpiresAt,
            Expr::value(Option::<chrono::DateTime<chrono::Utc>>::None),
        )
        .col_expr(delivery_entity::Column::UpdatedAt, Expr::value(at))
        .filter(delivery_entity::Column::Id.eq(delivery.id))
        .filter(delivery_entity::Column::LeaseOwner.eq(owner))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The webhook with this id, even if deleted since (a sender must know it is gone).
pub async fn find_any(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<Webhook>, DbErr> {
    entity::Entity::find_by_id(id).one(db).await
}

/// Deliveries per state (see [`delivery_counts`]).
#[derive(Debug, Clone, Default, sea_orm::FromQueryResult)]
pub struct DeliveryCounts {
    /// Ready to be attempted now.
    pub pending: Option<i64>,
    /// Waiting for a retry.
    pub scheduled: Option<i64>,
    /// Being attempted (leased).
    pub running: Option<i64>,
    /// Delivered.
    pub done: Option<i64>,
    /// Failed for good.
    pub dead: Option<i64>,
    /// Unix seconds at which the oldest ready delivery became due.
    pub oldest_pending_run_at: Option<i64>,
}

/// Deliveries that succeeded at or after `since`.
pub async fn count_delivered_since(
    db: &impl ConnectionTrait,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<u64, DbErr> {
    delivery_entity::Entity::find()
        .filter(delivery_entity::Column::Status.eq(DeliveryStatus::Delivered))
        .filter(delivery_entity::Column::DeliveredAt.gte(since))
        .count(db)
        .await
}

/// Deliveries per state, shaped like a job queue's counts for the admin API: ready now,
/// waiting for a retry, being attempted (leased), failed for good, delivered; plus when the
/// oldest ready one became due.
pub async fn delivery_counts(db: &impl ConnectionTrait) -> Result<DeliveryCounts, DbErr> {
    let backend = db.get_database_backend();
    let (p, epoch_of) = match backend {
        DatabaseBackend::Postgres => ("$1", "CAST(EXTRACT(EPOCH FROM {}) AS BIGINT)"),
        _ => ("?1", "CAST(strftime('%s', {}) AS INTEGER)"),
    };
    // The stored names, from the enum rather than repeated as literals.
    let pending = DeliveryStatus::Pending.as_str();
    let delivered = DeliveryStatus::Delivered.as_str();
    let failed = DeliveryStatus::Failed.as_str();
    let ready = format!(
        "status = '{pending}' AND (lease_expires_at IS NULL OR lease_expires_at < {p}) AND next_attempt_at <= {p}"
    );
    let oldest = epoch_of.replace(
        "{}",
        &format!("MIN(CASE WHEN {ready} THEN next_attempt_at END)"),
    );
    let sql = format!(
        "SELECT \
         SUM(CASE WHEN {ready} THEN 1 ELSE 0 END) AS pending, \
         SUM(CASE WHEN status = '{pending}' AND (lease_expires_at IS NULL OR lease_expires_at < {p}) AND next_attempt_at > {p} THEN 1 ELSE 0 END) AS scheduled, \
         SUM(CASE WHEN status = '{pending}' AND lease_expires_at >= {p} THEN 1 ELSE 0 END) AS running, \
         SUM(CASE WHEN status = '{delivered}' THEN 1 ELSE 0 END) AS done, \
         SUM(CASE WHEN status = '{failed}' THEN 1 ELSE 0 END) AS dead, \
         {oldest} AS oldest_pending_run_at \
         FROM webhook_deliveries"
    );
    use sea_orm::FromQueryResult;
    Ok(
        DeliveryCounts::find_by_statement(Statement::from_sql_and_values(
            backend,
            sql,
            [now().into()],
        ))
        .one(db)
        .await?
        .unwrap_or_default(),
    )
}

/// A page of failed deliveries across every organization, by id (the admin API shows them
/// beside dead jobs, as queue `webhooks`).
pub async fn list_failed_deliveries(
    db: &impl ConnectionTrait,
    page: &PageRequest<Uuid>,
) -> Result<Page<Delivery>, DbErr> {
    let query = delivery_entity::Entity::find()
        .filter(delivery_entity::Column::Status.eq(DeliveryStatus::Failed));
    keyset(
        db,
        query,
        delivery_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// How many live webhooks the organization has (the webhook quota).
pub async fn count_live(db: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    super::live_in_org::<entity::Entity>(org_id).count(db).await
}
