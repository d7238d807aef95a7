//! `org_secrets`: write-only values an organization stores for its jobs (Git credentials).
//!
//! Only [`get_value`] reads a value, for the worker that uses it; listings select the metadata
//! columns alone, so a value is never loaded where it could end up in a response or a log.

use super::now;
use super::paging::{keyset_into, KeyOrder, Page, PageRequest};
use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::{FromQueryResult, QuerySelect, Set};

/// The `org_secrets` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A secret row. Its `Debug` hides the value.
    #[derive(Clone, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "org_secrets")]
    pub struct Model {
        /// Owning organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub org_id: Uuid,
        /// Secret name, unique within the organization.
        #[sea_orm(primary_key, auto_increment = false)]
        pub name: String,
        /// The secret value; read only by [`super::get_value`].
        #[sea_orm(column_type = "Text")]
        pub value: String,
        /// Subject (`sub`) of the caller who created it.
        pub created_by: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Model")
                .field("org_id", &self.org_id)
                .field("name", &self.name)
                .field("value", &"[redacted]")
                .field("created_by", &self.created_by)
                .field("created_at", &self.created_at)
                .field("updated_at", &self.updated_at)
                .finish()
        }
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// What may be shown about a secret: everything but its value.
#[derive(Debug, Clone, PartialEq, Eq, FromQueryResult)]
pub struct SecretInfo {
    /// Name, unique in the organization.
    pub name: String,
    /// `sub` of who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTimeUtc,
    /// When its value was last set.
    pub updated_at: DateTimeUtc,
}

/// Sets the secret `name` of `org_id` to `value`, creating it (recording `created_by`) or
/// replacing the value of an existing one in one statement, so concurrent puts cannot collide.
pub async fn put(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
    value: &str,
    created_by: &str,
) -> Result<(), DbErr> {
    let at = now();
    let row = entity::ActiveModel {
        org_id: Set(org_id),
        name: Set(name.to_owned()),
        value: Set(value.to_owned()),
        created_by: Set(created_by.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
    };
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::OrgId, entity::Column::Name])
                .update_columns([entity::Column::Value, entity::Column::UpdatedAt])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// A page of the organization's secrets (metadata only), ordered by name.
pub async fn list(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    page: &PageRequest<String>,
) -> Result<Page<SecretInfo>, DbErr> {
    let query = entity::Entity::find()
        .select_only()
        .columns([
            entity::Column::Name,
            entity::Column::CreatedBy,
            entity::Column::CreatedAt,
            entity::Column::UpdatedAt,
        ])
        .filter(entity::Column::OrgId.eq(org_id));
    keyset_into(db, query, entity::Column::Name, KeyOrder::Ascending, page).await
}

/// The value of the secret `name` of `org_id`, for the worker that uses it. Never put it in a
/// response, an event or a log line.
pub async fn get_value(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
) -> Result<Option<String>, DbErr> {
    entity::Entity::find_by_id((org_id, name.to_owned()))
        .select_only()
        .column(entity::Column::Value)
        .into_tuple::<String>()
        .one(db)
        .await
}

/// Whether `org_id` has a secret called `name` (without loading its value).
pub async fn exists(db: &impl ConnectionTrait, org_id: Uuid, name: &str) -> Result<bool, DbErr> {
    Ok(entity::Entity::find_by_id((org_id, name.to_owned()))
        .select_only()
        .column(entity::Column::Name)
        .into_tuple::<String>()
        .one(db)
        .await?
        .is_some())
}

/// Deletes the secret `name` of `org_id`; false when there was none.
pub async fn delete(db: &impl ConnectionTrait, org_id: Uuid, name: &str) -> Result<bool, DbErr> {
    let result = entity::Entity::delete_many()
        .filter(entity::Column::OrgId.eq(org_id))
        .filter(entity::Column::Name.eq(name))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Deletes every secret of the organization (when it is deleted: a value must not outlive the
/// only org that could use it); answers how many.
pub async fn delete_all(db: &impl ConnectionTrait, org_id: Uuid) -> Result<u64, DbErr> {
    let result = entity::Entity::delete_many()
        .filter(entity::Column::OrgId.eq(org_id))
        .exec(db)
        .await?;
    Ok(result.rows_affected)
}
