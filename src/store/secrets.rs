//! `org_secrets`: write-only values an organization stores for its jobs (Git credentials), each
//! bound to the hosts it may be sent to and sealed at rest (see [`crate::sealed`]).
//!
//! Only [`find_for_use`] (and [`get_value`]) read a value, for the worker that uses it; listings
//! select the metadata columns alone, so a value is never loaded where it could end up in a
//! response or a log.

use super::now;
use super::paging::{keyset_into, KeyOrder, Page, PageRequest};
use crate::sealed::{SealError, Sealed, SecretsCipher};
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
        /// The value, sealed (plaintext while `key_id` is `None`); opened only through
        /// [`super::StoredSecret::value`].
        #[sea_orm(column_type = "Text")]
        pub value: String,
        /// Subject (`sub`) of the caller who created it.
        pub created_by: String,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
        /// When the row last changed.
        pub updated_at: DateTimeUtc,
        /// Hosts (`host` or `host:port`) the value may be sent to, as a JSON array.
        #[sea_orm(column_type = "Text")]
        pub allowed_hosts: String,
        /// Id of the key that sealed `value`; `None` = stored before encryption at rest.
        pub key_id: Option<String>,
        /// SSH `known_hosts` lines to trust (then unknown host keys are refused).
        #[sea_orm(column_type = "Text", nullable)]
        pub known_hosts: Option<String>,
    }

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("Model")
                .field("org_id", &self.org_id)
                .field("name", &self.name)
                .field("value", &"[redacted]")
                .field("key_id", &self.key_id)
                .field("allowed_hosts", &self.allowed_hosts)
                .field("known_hosts", &self.known_hosts)
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
    /// Allowed hosts, as the stored JSON array (see [`parse_hosts`]).
    pub allowed_hosts: String,
    /// Trusted SSH host keys, if set.
    pub known_hosts: Option<String>,
}

/// Where a secret may be used, without its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// `host` or `host:port` entries.
    pub allowed_hosts: Vec<String>,
    /// Trusted SSH host keys, if set.
    pub known_hosts: Option<String>,
}

/// A secret as the worker uses it: sealed value plus binding. `Debug` hides the value.
#[derive(Clone)]
pub struct StoredSecret {
    org_id: Uuid,
    name: String,
    value: String,
    key_id: Option<String>,
    /// Where it may be used.
    pub binding: Binding,
}

impl std::fmt::Debug for StoredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredSecret")
            .field("name", &self.name)
            .field("value", &"[redacted]")
            .field("binding", &self.binding)
            .finish()
    }
}

impl StoredSecret {
    /// The value in clear.
    pub fn value(&self, cipher: &SecretsCipher) -> Result<String, SealError> {
        cipher.open(
            &value_aad(self.org_id, &self.name),
            self.key_id.as_deref(),
            &self.value,
        )
    }
}

/// Parses the stored JSON array of allowed hosts (a broken one allows nothing).
pub fn parse_hosts(json: &str) -> Vec<String> {
    serde_json::from_str(json).unwrap_or_default()
}

/// Associated data of the value of secret `name` of `org_id`.
fn value_aad(org_id: Uuid, name: &str) -> String {
    format!("org_secrets:{org_id}:{name}")
}

fn seal(cipher: &SecretsCipher, org_id: Uuid, name: &str, value: &str) -> Result<Sealed, DbErr> {
    cipher
        .seal(&value_aad(org_id, name), value)
        .map_err(|e| DbErr::Custom(format!("sealing secret {name:?}: {e}")))
}

/// What a put changes; `None` leaves a field as it is (a new secret needs `value` and
/// `allowed_hosts`, which the API checks). `Debug` hides the value.
#[derive(Default)]
pub struct SecretWrite<'a> {
    /// New value.
    pub value: Option<&'a str>,
    /// New allowed hosts.
    pub allowed_hosts: Option<&'a [String]>,
    /// New known_hosts (`Some("")` clears it).
    pub known_hosts: Option<&'a str>,
}

impl std::fmt::Debug for SecretWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretWrite")
            .field("value", &self.value.map(|_| "[redacted]"))
            .field("allowed_hosts", &self.allowed_hosts)
            .field("known_hosts", &self.known_hosts)
            .finish()
    }
}

/// Creates the secret `name` of `org_id` (recording `created_by`; `write.value` and
/// `write.allowed_hosts` should be set) or changes the given fields of an existing one, in one
/// statement so concurrent puts cannot collide. The value is sealed under the current key.
pub async fn put(
    db: &impl ConnectionTrait,
    cipher: &SecretsCipher,
    org_id: Uuid,
    name: &str,
    write: &SecretWrite<'_>,
    created_by: &str,
) -> Result<(), DbErr> {
    let at = now();
    let hosts = write
        .allowed_hosts
        .map(serde_json::to_string)
        .transpose()
        .map_err(|e| DbErr::Custom(format!("allowed_hosts: {e}")))?;
    let known_hosts = write
        .known_hosts
        .map(|k| Some(k.to_owned()).filter(|k| !k.trim().is_empty()));
    let mut update = vec![entity::Column::UpdatedAt];
    let mut row = entity::ActiveModel {
        org_id: Set(org_id),
        name: Set(name.to_owned()),
        created_by: Set(created_by.to_owned()),
        created_at: Set(at),
        updated_at: Set(at),
        allowed_hosts: Set(hosts.clone().unwrap_or_else(|| "[]".to_owned())),
        known_hosts: Set(known_hosts.clone().flatten()),
        value: Set(String::new()),
        key_id: Set(None),
    };
    if let Some(value) = write.value {
        let sealed = seal(cipher, org_id, name, value)?;
        row.value = Set(sealed.ciphertext);
        row.key_id = Set(Some(sealed.key_id));
        update.extend([entity::Column::Value, entity::Column::KeyId]);
    }
    if hosts.is_some() {
        update.push(entity::Column::AllowedHosts);
    }
    if known_hosts.is_some() {
        update.push(entity::Column::KnownHosts);
    }
    entity::Entity::insert(row)
        .on_conflict(
            OnConflict::columns([entity::Column::OrgId, entity::Column::Name])
                .update_columns(update)
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
            entity::Column::AllowedHosts,
            entity::Column::KnownHosts,
        ])
        .filter(entity::Column::OrgId.eq(org_id));
    keyset_into(db, query, entity::Column::Name, KeyOrder::Ascending, page).await
}

/// The secret `name` of `org_id` with its (sealed) value, for the worker that uses it. Never
/// put its value in a response, an event or a log line.
pub async fn find_for_use(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
) -> Result<Option<StoredSecret>, DbErr> {
    Ok(entity::Entity::find_by_id((org_id, name.to_owned()))
        .one(db)
        .await?
        .map(|row| StoredSecret {
            org_id,
            name: row.name,
            value: row.value,
            key_id: row.key_id,
            binding: Binding {
                allowed_hosts: parse_hosts(&row.allowed_hosts),
                known_hosts: row.known_hosts,
            },
        }))
}

/// The value of the secret `name` of `org_id` in clear (a value that does not open is an
/// error). Never put it in a response, an event or a log line.
pub async fn get_value(
    db: &impl ConnectionTrait,
    cipher: &SecretsCipher,
    org_id: Uuid,
    name: &str,
) -> Result<Option<String>, DbErr> {
    find_for_use(db, org_id, name)
        .await?
        .map(|s| {
            s.value(cipher)
                .map_err(|e| DbErr::Custom(format!("secret {name:?}: {e}")))
        })
        .transpose()
}

/// Where the secret `name` of `org_id` may be used (without loading its value); `None` when
/// there is no such secret.
pub async fn binding(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    name: &str,
) -> Result<Option<Binding>, DbErr> {
    Ok(entity::Entity::find_by_id((org_id, name.to_owned()))
        .select_only()
        .columns([entity::Column::AllowedHosts, entity::Column::KnownHosts])
        .into_tuple::<(String, Option<String>)>()
        .one(db)
        .await?
        .map(|(hosts, known_hosts)| Binding {
            allowed_hosts: parse_hosts(&hosts),
            known_hosts,
        }))
}

/// Seals again, under the current key, every value that is plaintext (`plaintext_only`, at
/// start-up) or sealed by any other key (`gantry rotate-secrets`); answers how many.
pub async fn reseal_values(
    db: &impl ConnectionTrait,
    cipher: &SecretsCipher,
    plaintext_only: bool,
) -> Result<u64, DbErr> {
    let query = entity::Entity::find().filter(if plaintext_only {
        sea_orm::Condition::all().add(entity::Column::KeyId.is_null())
    } else {
        sea_orm::Condition::any()
            .add(entity::Column::KeyId.is_null())
            .add(entity::Column::KeyId.ne(cipher.current_key_id()))
    });
    let mut count = 0;
    for row in query.all(db).await? {
        let clear = cipher
            .open(
                &value_aad(row.org_id, &row.name),
                row.key_id.as_deref(),
                &row.value,
            )
            .map_err(|e| DbErr::Custom(format!("secret {:?}: {e}", row.name)))?;
        let sealed = seal(cipher, row.org_id, &row.name, &clear)?;
        // Only if nobody changed it meanwhile (a put seals under the current key anyway).
        entity::Entity::update_many()
            .col_expr(entity::Column::Value, Expr::value(sealed.ciphertext))
            .col_expr(entity::Column::KeyId, Expr::value(Some(sealed.key_id)))
            .filter(entity::Column::OrgId.eq(row.org_id))
            .filter(entity::Column::Name.eq(row.name.clone()))
            .filter(entity::Column::Value.eq(row.value.clone()))
            .exec(db)
            .await?;
        count += 1;
    }
    Ok(count)
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
