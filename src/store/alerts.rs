//! `alert_channels` (where notifications go), `alert_rules` (which checks notify which
//! channels, how) and `maintenance_windows`.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use super::{new_id, now};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::Set;

/// The `alert_channels` table.
pub mod channel_entity {
    use sea_orm::entity::prelude::*;

    /// A notification destination.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_channels")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// Display name.
        pub name: String,
        /// `webhook`, `slack`, `email`, `pagerduty`.
        pub kind: String,
        /// Kind-specific settings (`url`, `to`, `routing_key`).
        #[sea_orm(column_type = "JsonBinary")]
        pub config: Json,
        /// Signing secret (`webhook` channels).
        pub secret: Option<String>,
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

soft_deleted!(channel_entity, org_owned);

/// The `alert_rules` table.
pub mod rule_entity {
    use sea_orm::entity::prelude::*;

    /// Which checks (one, or by labels) notify which channels.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "alert_rules")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// The check, for a per-check rule.
        pub check_id: Option<Uuid>,
        /// Labels a check must all carry, for a label rule.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub labels: Option<Json>,
        /// Channel ids (JSON array).
        #[sea_orm(column_type = "JsonBinary")]
        pub channels: Json,
        /// Notify when the incident resolves.
        pub send_on_resolved: bool,
        /// Re-notify an unacknowledged open incident this often.
        pub repeat_interval_secs: i32,
        /// Incidents opened within this many seconds go out as one notification.
        pub group_wait_secs: i32,
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

soft_deleted!(rule_entity, org_owned);

/// The `maintenance_windows` table.
pub mod window_entity {
    use sea_orm::entity::prelude::*;

    /// A period during which checks notify nobody.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "maintenance_windows")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Owning organization.
        pub org_id: Uuid,
        /// Display name.
        pub name: String,
        /// Start (of the first occurrence, when recurring).
        pub starts_at: DateTimeUtc,
        /// End, for a one-off window given with `ends_at`.
        pub ends_at: Option<DateTimeUtc>,
        /// Length of each occurrence.
        pub duration_secs: i32,
        /// Cron schedule of the starts, when recurring.
        pub recurrence: Option<String>,
        /// The checks it covers (JSON array), if given by id.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub check_ids: Option<Json>,
        /// Labels a covered check carries, if given by label.
        #[sea_orm(column_type = "JsonBinary", nullable)]
        pub labels: Option<Json>,
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

soft_deleted!(window_entity, org_owned);

pub use channel_entity::Model as Channel;
pub use rule_entity::Model as Rule;
pub use window_entity::Model as Window;

impl Rule {
    /// The channel ids.
    pub fn channel_ids(&self) -> Vec<Uuid> {
        serde_json::from_value(self.channels.clone()).unwrap_or_default()
    }
}

/// Inserts a channel.
pub async fn insert_channel(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
    kind: &str,
    config: serde_json::Value,
    secret: Option<String>,
) -> Result<Channel, DbErr> {
    let at = now();
    channel_entity::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        name: Set(name.to_owned()),
        kind: Set(kind.to_owned()),
        config: Set(config),
        secret: Set(secret),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live channel `id` of `org_id`.
pub async fn find_channel(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Channel>, DbErr> {
    super::find_live_in_org::<channel_entity::Entity>(db, org_id, id).await
}

/// The channel `id`, even if deleted since.
pub async fn find_channel_any(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Channel>, DbErr> {
    channel_entity::Entity::find_by_id(id).one(db).await
}

/// A page of the organization's live channels.
pub async fn list_channels(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<Channel>, DbErr> {
    let query = super::live_in_org::<channel_entity::Entity>(org_id);
    keyset(
        db,
        query,
        channel_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// Renames a channel and/or replaces its config.
pub async fn update_channel(
    db: &impl ConnectionTrait,
    channel: Channel,
    name: &str,
    config: serde_json::Value,
) -> Result<Channel, DbErr> {
    let mut row: channel_entity::ActiveModel = channel.into();
    row.name = Set(name.to_owned());
    row.config = Set(config);
    row.updated_at = Set(now());
    row.update(db).await
}

/// Soft-deletes a channel.
pub async fn delete_channel(db: &impl ConnectionTrait, channel: Channel) -> Result<Channel, DbErr> {
    super::soft_delete::<channel_entity::Entity>(db, channel).await
}

/// What a new rule is made of (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewRule {
    /// The check, for a per-check rule.
    pub check_id: Option<Uuid>,
    /// Labels, for a label rule.
    pub labels: Option<serde_json::Value>,
    /// Channel ids.
    pub channels: Vec<Uuid>,
    /// Notify on resolution.
    pub send_on_resolved: bool,
    /// Repeat interval in seconds.
    pub repeat_interval_secs: i32,
    /// Group wait in seconds.
    pub group_wait_secs: i32,
}

/// Inserts a rule.
pub async fn insert_rule(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    rule: NewRule,
) -> Result<Rule, DbErr> {
    let at = now();
    rule_entity::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        check_id: Set(rule.check_id),
        labels: Set(rule.labels),
        channels: Set(serde_json::json!(rule.channels)),
        send_on_resolved: Set(rule.send_on_resolved),
        repeat_interval_secs: Set(rule.repeat_interval_secs),
        group_wait_secs: Set(rule.group_wait_secs),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live rule `id` of `org_id`.
pub async fn find_rule(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Rule>, DbErr> {
    super::find_live_in_org::<rule_entity::Entity>(db, org_id, id).await
}

/// A page of the organization's live rules.
pub async fn list_rules(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<Rule>, DbErr> {
    let query = super::live_in_org::<rule_entity::Entity>(org_id);
    keyset(
        db,
        query,
        rule_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// Every live rule of the organization (matched against a check by the poller).
pub async fn all_rules(db: &impl ConnectionTrait, org_id: Uuid) -> Result<Vec<Rule>, DbErr> {
    super::live_in_org::<rule_entity::Entity>(org_id)
        .all(db)
        .await
}

/// Replaces what a rule is made of.
pub async fn update_rule(
    db: &impl ConnectionTrait,
    rule: Rule,
    new: NewRule,
) -> Result<Rule, DbErr> {
    let mut row: rule_entity::ActiveModel = rule.into();
    row.check_id = Set(new.check_id);
    row.labels = Set(new.labels);
    row.channels = Set(serde_json::json!(new.channels));
    row.send_on_resolved = Set(new.send_on_resolved);
    row.repeat_interval_secs = Set(new.repeat_interval_secs);
    row.group_wait_secs = Set(new.group_wait_secs);
    row.updated_at = Set(now());
    row.update(db).await
}

/// Soft-deletes a rule.
pub async fn delete_rule(db: &impl ConnectionTrait, rule: Rule) -> Result<Rule, DbErr> {
    super::soft_delete::<rule_entity::Entity>(db, rule).await
}

/// What a new maintenance window is made of (validated by the caller).
#[derive(Debug, Clone)]
pub struct NewWindow {
    /// Display name.
    pub name: String,
    /// First start.
    pub starts_at: DateTime<Utc>,
    /// End of a one-off window.
    pub ends_at: Option<DateTime<Utc>>,
    /// Length of each occurrence.
    pub duration_secs: i32,
    /// Cron schedule.
    pub recurrence: Option<String>,
    /// Covered checks.
    pub check_ids: Option<Vec<Uuid>>,
    /// Covered labels.
    pub labels: Option<serde_json::Value>,
}

/// Inserts a window.
pub async fn insert_window(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    window: NewWindow,
) -> Result<Window, DbErr> {
    let at = now();
    window_entity::ActiveModel {
        id: Set(new_id()),
        org_id: Set(org_id),
        name: Set(window.name),
        starts_at: Set(window.starts_at),
        ends_at: Set(window.ends_at),
        duration_secs: Set(window.duration_secs),
        recurrence: Set(window.recurrence),
        check_ids: Set(window.check_ids.map(|ids| serde_json::json!(ids))),
        labels: Set(window.labels),
        created_at: Set(at),
        updated_at: Set(at),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live window `id` of `org_id`.
pub async fn find_window(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<Window>, DbErr> {
    super::find_live_in_org::<window_entity::Entity>(db, org_id, id).await
}

/// A page of the organization's live windows.
pub async fn list_windows(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<Window>, DbErr> {
    let query = super::live_in_org::<window_entity::Entity>(org_id);
    keyset(
        db,
        query,
        window_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// Every live window of the organization.
pub async fn all_windows(db: &impl ConnectionTrait, org_id: Uuid) -> Result<Vec<Window>, DbErr> {
    super::live_in_org::<window_entity::Entity>(org_id)
        .all(db)
        .await
}

/// Replaces what a window is made of.
pub async fn update_window(
    db: &impl ConnectionTrait,
    window: Window,
    new: NewWindow,
) -> Result<Window, DbErr> {
    let mut row: window_entity::ActiveModel = window.into();
    row.name = Set(new.name);
    row.starts_at = Set(new.starts_at);
    row.ends_at = Set(new.ends_at);
    row.duration_secs = Set(new.duration_secs);
    row.recurrence = Set(new.recurrence);
    row.check_ids = Set(new.check_ids.map(|ids| serde_json::json!(ids)));
    row.labels = Set(new.labels);
    row.updated_at = Set(now());
    row.update(db).await
}

/// Soft-deletes a window.
pub async fn delete_window(db: &impl ConnectionTrait, window: Window) -> Result<Window, DbErr> {
    super::soft_delete::<window_entity::Entity>(db, window).await
}
