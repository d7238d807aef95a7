//! `users`: one row per Keycloak `sub`, created on first sight.

use sea_orm::entity::prelude::*;
use sea_orm::sea_query::OnConflict;
use sea_orm::Set;

/// The `users` table.
pub mod entity {
    use sea_orm::entity::prelude::*;

    /// A user as last seen in a token.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "users")]
    pub struct Model {
        /// Internal user id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Subject claim from the identity provider.
        #[sea_orm(unique)]
        pub sub: String,
        /// `preferred_username` claim, if sent.
        pub preferred_username: Option<String>,
        /// `email` claim, if sent.
        pub email: Option<String>,
        /// When the user was first seen.
        pub created_at: DateTimeUtc,
        /// When the user last made a request.
        pub last_seen_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub use entity::Model as User;

/// Creates the user on first sight, or refreshes its username and email.
pub async fn upsert_seen(
    db: &impl ConnectionTrait,
    sub: &str,
    preferred_username: Option<&str>,
    email: Option<&str>,
) -> Result<(), DbErr> {
    let now = super::now();
    let row = entity::ActiveModel {
        id: Set(super::new_id()),
        sub: Set(sub.to_owned()),
        preferred_username: Set(preferred_username.map(str::to_owned)),
        email: Set(email.map(str::to_owned)),
        created_at: Set(now),
        last_seen_at: Set(now),
    };
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::column(entity::Column::Sub)
                .update_columns([
                    entity::Column::PreferredUsername,
                    entity::Column::Email,
                    entity::Column::LastSeenAt,
                ])
                .to_owned(),
        )
        .exec_without_returning(db)
        .await?;
    Ok(())
}

/// The user with this `sub`, if it has ever been seen.
pub async fn find_by_sub(db: &impl ConnectionTrait, sub: &str) -> Result<Option<User>, DbErr> {
    entity::Entity::find()
        .filter(entity::Column::Sub.eq(sub))
        .one(db)
        .await
}

/// Locks the user row `sub` for the rest of the transaction (Postgres; SQLite write
/// transactions are serialized already), so two concurrent creates by one user count each
/// other (the per-user quotas). The row exists: it is stored on first sight of a token.
pub async fn lock(db: &impl ConnectionTrait, sub: &str) -> Result<(), DbErr> {
    use sea_orm::QuerySelect;
    let query = entity::Entity::find().filter(entity::Column::Sub.eq(sub));
    if db.get_database_backend() == sea_orm::DatabaseBackend::Postgres {
        query.lock_exclusive().one(db).await?;
    }
    Ok(())
}
