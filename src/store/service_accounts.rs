//! `service_accounts`: org-scoped API keys for machines. Only the SHA-256 of a key is stored;
//! a revoked account keeps its row (with `revoked_at`) for the audit trail.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use crate::domain::Role;
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::Set;

/// The `service_accounts` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// One service account.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "service_accounts")]
    pub struct Model {
        /// Account id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// The organization it acts in.
        pub org_id: Uuid,
        /// Unique among the organization's live accounts.
        pub name: String,
        /// Its role in the organization.
        pub role: String,
        /// Hex SHA-256 of the key.
        pub key_hash: String,
        /// The key's first characters, to tell keys apart.
        pub key_prefix: String,
        /// When the key stops working, if ever.
        pub expires_at: Option<DateTimeUtc>,
        /// Last authenticated use (written at most once a minute).
        pub last_used_at: Option<DateTimeUtc>,
        /// Who created it (`sub`).
        pub created_by: String,
        /// When it was created.
        pub created_at: DateTimeUtc,
        /// When it (or its key) last changed.
        pub updated_at: DateTimeUtc,
        /// When it was revoked.
        pub revoked_at: Option<DateTimeUtc>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as ServiceAccount;

impl ServiceAccount {
    /// The parsed role (an unknown stored value counts as viewer).
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or(Role::Viewer)
    }
}

/// What a new account is.
#[derive(Debug, Clone)]
pub struct NewServiceAccount {
    /// Organization.
    pub org_id: Uuid,
    /// Name.
    pub name: String,
    /// Role.
    pub role: Role,
    /// Hash of its first key.
    pub key_hash: String,
    /// Prefix of that key.
    pub key_prefix: String,
    /// Expiry.
    pub expires_at: Option<DateTime<Utc>>,
    /// Creator's `sub`.
    pub created_by: String,
}

/// Creates an account.
pub async fn insert(
    db: &impl ConnectionTrait,
    new: NewServiceAccount,
) -> Result<ServiceAccount, DbErr> {
    let now = super::now();
    entity::ActiveModel {
        id: Set(super::new_id()),
        org_id: Set(new.org_id),
        name: Set(new.name),
        role: Set(new.role.as_str().to_owned()),
        key_hash: Set(new.key_hash),
        key_prefix: Set(new.key_prefix),
        expires_at: Set(new.expires_at),
        last_used_at: Set(None),
        created_by: Set(new.created_by),
        created_at: Set(now),
        updated_at: Set(now),
        revoked_at: Set(None),
    }
    .insert(db)
    .await
}

/// The live (unrevoked) account `id` of `org_id`.
pub async fn find_live(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Option<ServiceAccount>, DbErr> {
    entity::Entity::find_by_id(id)
        .filter(entity::Column::OrgId.eq(org_id))
        .filter(entity::Column::RevokedAt.is_null())
        .one(db)
        .await
}

/// The live account whose key hashes to `key_hash`.
pub async fn find_by_key_hash(
    db: &impl ConnectionTrait,
    key_hash: &str,
) -> Result<Option<ServiceAccount>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::KeyHash.eq(key_hash))
        .filter(entity::Column::RevokedAt.is_null())
        .one(db)
        .await
}

/// A page of the organization's live accounts, oldest first.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<Uuid>,
) -> Result<Page<ServiceAccount>, DbErr> {
    let query = entity::Entity::find()
        .filter(entity::Column::OrgId.eq(org_id))
        .filter(entity::Column::RevokedAt.is_null());
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// Replaces the account's key; the old one stops working with this commit.
pub async fn rotate(
    db: &impl ConnectionTrait,
    account: ServiceAccount,
    key_hash: String,
    key_prefix: String,
) -> Result<ServiceAccount, DbErr> {
    let mut row: entity::ActiveModel = account.into();
    row.key_hash = Set(key_hash);
    row.key_prefix = Set(key_prefix);
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// Revokes the account: its key stops working with this commit.
pub async fn revoke(
    db: &impl ConnectionTrait,
    account: ServiceAccount,
) -> Result<ServiceAccount, DbErr> {
    let now = super::now();
    let mut row: entity::ActiveModel = account.into();
    // The hash is kept unique: a revoked row must not block a future key (it cannot collide).
    row.revoked_at = Set(Some(now));
    row.updated_at = Set(now);
    row.update(db).await
}

/// Records a use of the account's key.
pub async fn touch(db: &impl ConnectionTrait, id: Uuid, at: DateTime<Utc>) -> Result<(), DbErr> {
    entity::Entity::update_many()
        .col_expr(entity::Column::LastUsedAt, Expr::value(at))
        .filter(entity::Column::Id.eq(id))
        .exec(db)
        .await?;
    Ok(())
}
