//! `memberships`: who belongs to which organization, with which role.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use crate::domain::Role;
use sea_orm::entity::prelude::*;
use sea_orm::{QueryOrder, Set};

/// The `memberships` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A membership row; `role` holds a [`crate::domain::Role`] name.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "memberships")]
    pub struct Model {
        /// The organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        /// Subject (`sub`) of the member.
        #[sea_orm(primary_key, auto_increment = false)]
        pub user_sub: String,
        /// Role in the organization.
        pub role: String,
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

pub use entity::Model as Membership;

impl Membership {
    /// The parsed role; an unknown stored value is a data error, treated as the lowest role.
    pub fn role(&self) -> Role {
        self.role.parse().unwrap_or_else(|err| {
            tracing::error!(%err, org_id = %self.org_id, "unknown role stored; treating as viewer");
            Role::Viewer
        })
    }
}

/// The membership of `sub` in `org_id`.
pub async fn find(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    sub: &str,
) -> Result<Option<Membership>, DbErr> {
    entity::Entity::find_by_id((org_id, sub.to_owned()))
        .one(db)
        .await
}

/// Every membership of `sub`.
pub async fn of_user(db: &impl ConnectionTrait, sub: &str) -> Result<Vec<Membership>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::UserSub.eq(sub))
        .order_by_asc(entity::Column::OrgId)
        .all(db)
        .await
}

/// The ids of the organizations `sub` belongs to.
pub async fn org_ids_of(db: &impl ConnectionTrait, sub: &str) -> Result<Vec<Uuid>, DbErr> {
    Ok(of_user(db, sub)
        .await?
        .into_iter()
        .map(|m| m.org_id)
        .collect())
}

/// A page of the organization's members, ordered by `sub`.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<String>,
) -> Result<Page<Membership>, DbErr> {
    let query = entity::Entity::find().filter(entity::Column::OrgId.eq(org_id));
    keyset(
        db,
        query,
        entity::Column::UserSub,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// Adds `sub` to the organization with `role`.
pub async fn insert(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    sub: &str,
    role: Role,
) -> Result<Membership, DbErr> {
    let now = super::now();
    entity::ActiveModel {
        org_id: Set(org_id),
        user_sub: Set(sub.to_owned()),
        role: Set(role.as_str().to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await
}

/// Changes a member's role.
pub async fn update_role(
    db: &impl ConnectionTrait,
    membership: Membership,
    role: Role,
) -> Result<Membership, DbErr> {
    let mut row: entity::ActiveModel = membership.into();
    row.role = Set(role.as_str().to_owned());
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// Removes a membership.
pub async fn delete(db: &impl ConnectionTrait, membership: Membership) -> Result<(), DbErr> {
    entity::Entity::delete_by_id((membership.org_id, membership.user_sub))
        .exec(db)
        .await?;
    Ok(())
}

/// How many owners the organization has.
pub async fn count_owners(db: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::OrgId.eq(org_id))
        .filter(entity::Column::Role.eq(Role::Owner.as_str()))
        .count(db)
        .await
}
