//! `organizations`: tenants. Soft-deleted rows are invisible to every query here.

use super::members;
use super::paging::{keyset, KeyOrder, Page, PageRequest};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::{Expr, ExprTrait, IntoCondition};
use sea_orm::{JoinType, QueryOrder, QuerySelect, RelationDef, Set};

/// The `organizations` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// An organization row.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "organizations")]
    pub struct Model {
        /// Primary key.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Display name.
        pub name: String,
        /// URL-safe unique handle.
        pub slug: String,
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

soft_deleted!(entity);

pub use entity::Model as Org;

/// Inserts a new organization.
pub async fn insert(db: &impl ConnectionTrait, name: &str, slug: &str) -> Result<Org, DbErr> {
    let now = super::now();
    entity::ActiveModel {
        id: Set(super::new_id()),
        name: Set(name.to_owned()),
        slug: Set(slug.to_owned()),
        created_at: Set(now),
        updated_at: Set(now),
        deleted_at: Set(None),
    }
    .insert(db)
    .await
}

/// The join from an organization to `sub`'s membership in it.
fn membership_of(sub: &str) -> RelationDef {
    let sub = sub.to_owned();
    entity::Entity::belongs_to(members::entity::Entity)
        .from(entity::Column::Id)
        .to(members::entity::Column::OrgId)
        .on_condition(move |_org, membership| {
            Expr::col((membership, members::entity::Column::UserSub))
                .eq(sub.clone())
                .into_condition()
        })
        .into()
}

/// The live organization with this id and `sub`'s membership in it, in one query: every
/// org-scoped request asks both.
pub async fn find_live_with_membership(
    db: &impl ConnectionTrait,
    id: Uuid,
    sub: &str,
) -> Result<Option<(Org, Option<members::Membership>)>, DbErr> {
    entity::Entity::find_by_id(id)
        .filter(entity::Column::DeletedAt.is_null())
        .join(JoinType::LeftJoin, membership_of(sub))
        .select_also(members::entity::Entity)
        .one(db)
        .await
}

/// Every live organization `sub` belongs to with that membership, ordered by id (one query).
pub async fn live_with_membership_of(
    db: &impl ConnectionTrait,
    sub: &str,
) -> Result<Vec<(Org, members::Membership)>, DbErr> {
    let rows = super::live::<entity::Entity>()
        .join(JoinType::InnerJoin, membership_of(sub))
        .select_also(members::entity::Entity)
        .order_by_asc(entity::Column::Id)
        .all(db)
        .await?;
    // An inner join always has the membership; the pair type is the left join's.
    Ok(rows
        .into_iter()
        .filter_map(|(org, membership)| membership.map(|m| (org, m)))
        .collect())
}

/// A page of every live organization (platform admins).
pub async fn list_all(
    db: &impl ConnectionTrait,
    page: &PageRequest<Uuid>,
) -> Result<Page<Org>, DbErr> {
    let query = super::live::<entity::Entity>();
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// A page of the live organizations `sub` belongs to.
pub async fn list_for_member(
    db: &impl ConnectionTrait,
    sub: &str,
    page: &PageRequest<Uuid>,
) -> Result<Page<Org>, DbErr> {
    let org_ids = members::org_ids_of(db, sub).await?;
    let query = super::live::<entity::Entity>().filter(entity::Column::Id.is_in(org_ids));
    keyset(db, query, entity::Column::Id, KeyOrder::Ascending, page).await
}

/// Changes name and/or slug.
pub async fn update(
    db: &impl ConnectionTrait,
    org: Org,
    name: Option<String>,
    slug: Option<String>,
) -> Result<Org, DbErr> {
    let mut row: entity::ActiveModel = org.into();
    if let Some(name) = name {
        row.name = Set(name);
    }
    if let Some(slug) = slug {
        row.slug = Set(slug);
    }
    row.updated_at = Set(super::now());
    row.update(db).await
}

/// Soft-deletes the organization.
pub async fn soft_delete(db: &impl ConnectionTrait, org: Org) -> Result<Org, DbErr> {
    super::soft_delete::<entity::Entity>(db, org).await
}

/// The live organization, locked for the rest of the transaction (Postgres `FOR UPDATE`), so
/// concurrent member changes cannot both remove "the other" last owner.
pub async fn find_live_for_update(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<Org>, DbErr> {
    entity::Entity::find_by_id(id)
        .filter(entity::Column::DeletedAt.is_null())
        .lock_exclusive()
        .one(db)
        .await
}

/// How many live organizations `sub` owns (the orgs-per-user quota).
pub async fn count_owned_live(db: &impl ConnectionTrait, sub: &str) -> Result<u64, DbErr> {
    let owned: Vec<Uuid> = super::members::of_user(db, sub)
        .await?
        .into_iter()
        .filter(|m| m.role() == crate::domain::Role::Owner)
        .map(|m| m.org_id)
        .collect();
    if owned.is_empty() {
        return Ok(0);
    }
    entity::Entity::find()
        .filter(entity::Column::Id.is_in(owned))
        .filter(entity::Column::DeletedAt.is_null())
        .count(db)
        .await
}
