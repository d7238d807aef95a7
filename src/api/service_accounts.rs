//! `/v1/orgs/{org_id}/service-accounts`: API keys for machines (CI, scripts). A key is shown
//! once, at creation and on rotation; only its SHA-256 is stored. A key acts in its own
//! organization with the account's role, never as a platform admin, and stops working the
//! moment it is rotated, revoked or past `expires_at`.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::guard::{key_hash, API_KEY_PREFIX};
use crate::auth::{Admin, OrgAccess};
use crate::domain::names::DisplayName;
use crate::domain::Role;
use crate::error::ApiError;
use crate::store::{self, is_unique_violation, service_accounts::ServiceAccount};
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Characters of a key kept to tell keys apart (`gtk_` and 8 more).
const KEY_PREFIX_LEN: usize = 12;

/// Body of `POST …/service-accounts`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateServiceAccount {
    /// Unique among the organization's live accounts.
    #[schemars(length(min = 1, max = 100))]
    pub name: String,
    /// Its role in the organization (at most the creator's own).
    pub role: Role,
    /// When the key stops working (RFC 3339, in the future); never when absent.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A service account (never with its key).
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceAccountView {
    /// Account id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// Name.
    pub name: String,
    /// Role in the organization.
    pub role: Role,
    /// The key's first characters (`gtk_` and 8 more), to tell keys apart.
    pub key_prefix: String,
    /// When the key stops working.
    pub expires_at: Option<DateTime<Utc>>,
    /// Last use of the key (to the minute).
    pub last_used_at: Option<DateTime<Utc>>,
    /// Who created it.
    pub created_by: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it or its key last changed.
    pub updated_at: DateTime<Utc>,
}

impl From<ServiceAccount> for ServiceAccountView {
    fn from(a: ServiceAccount) -> Self {
        Self {
            role: a.role(),
            id: a.id,
            org_id: a.org_id,
            name: a.name,
            key_prefix: a.key_prefix,
            expires_at: a.expires_at,
            last_used_at: a.last_used_at,
            created_by: a.created_by,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// A service account with its key, answered once.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceAccountWithKey {
    /// The account.
    #[serde(flatten)]
    pub account: ServiceAccountView,
    /// The API key (`gtk_…`, 256 random bits): send it as `Authorization: Bearer <key>`. It is
    /// not stored and cannot be shown again.
    pub key: String,
}

/// A new key, its hash and its prefix.
fn new_key() -> Result<(String, String, String), ApiError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| ApiError::Internal(anyhow::anyhow!("no randomness for an API key")))?;
    let key = format!("{API_KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let prefix = key.chars().take(KEY_PREFIX_LEN).collect();
    Ok((key_hash(&key), prefix, key))
}

/// List live service accounts (admin+), oldest first.
#[openapi(tag = "Service accounts")]
#[get("/v1/orgs/<org_id>/service-accounts?<limit>&<cursor>")]
pub async fn list_service_accounts(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<ServiceAccountView>>, ApiError> {
    let page = page_request::<Uuid>(limit, cursor)?;
    let (rows, more) = store::service_accounts::list(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |a| a.id,
        ServiceAccountView::from,
    )))
}

/// Create a service account (admin+; its role at most the creator's): answers its key once.
#[openapi(tag = "Service accounts")]
#[post("/v1/orgs/<org_id>/service-accounts", data = "<body>")]
pub async fn create_service_account(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<CreateServiceAccount>,
) -> Result<Created<ServiceAccountWithKey>, ApiError> {
    let CreateServiceAccount {
        name,
        role,
        expires_at,
    } = body.0;
    let name = DisplayName::parse(&name)
        .map_err(|err| ApiError::invalid("/name", err))?
        .into_string();
    if !access.role.allows(role) {
        return Err(ApiError::Forbidden(format!(
            "a service account's role can be at most yours ({})",
            access.role
        )));
    }
    if expires_at.is_some_and(|at| at <= store::now()) {
        return Err(ApiError::invalid("/expires_at", "must be in the future"));
    }
    let (hash, prefix, key) = new_key()?;
    let txn = store::begin_write(&state.db).await?;
    let access = access.recheck(&txn).await?;
    let account = store::service_accounts::insert(
        &txn,
        store::service_accounts::NewServiceAccount {
            org_id,
            name: name.clone(),
            role,
            key_hash: hash,
            key_prefix: prefix,
            expires_at,
            created_by: access.caller.sub.clone(),
        },
    )
    .await
    .map_err(|err| {
        if is_unique_violation(&err) {
            ApiError::Conflict(format!("a service account named {name:?} already exists"))
        } else {
            err.into()
        }
    })?;
    let view = ServiceAccountView::from(account);
    crate::audit::target("service_account", view.id);
    crate::audit::changes(None::<()>, Some(&view));
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/service-accounts/{}", view.id),
        body: ServiceAccountWithKey { account: view, key },
    })
}

/// One service account (admin+).
#[openapi(tag = "Service accounts")]
#[get("/v1/orgs/<org_id>/service-accounts/<account_id>")]
pub async fn get_service_account(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    account_id: Uuid,
) -> Result<Json<ServiceAccountView>, ApiError> {
    let account = store::service_accounts::find_live(&state.db, org_id, account_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(account.into()))
}

/// Replace a service account's key (admin+): the old key stops working at once; answers the
/// new key once.
#[openapi(tag = "Service accounts")]
#[post("/v1/orgs/<org_id>/service-accounts/<account_id>/rotate")]
pub async fn rotate_service_account(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    account_id: Uuid,
) -> Result<Json<ServiceAccountWithKey>, ApiError> {
    let (hash, prefix, key) = new_key()?;
    let txn = store::begin_write(&state.db).await?;
    let access = access.recheck(&txn).await?;
    let account = store::service_accounts::find_live(&txn, org_id, account_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access.require(account.role())?;
    let account = store::service_accounts::rotate(&txn, account, hash, prefix).await?;
    let view = ServiceAccountView::from(account);
    txn.commit().await?;
    Ok(Json(ServiceAccountWithKey { account: view, key }))
}

/// Revoke a service account (admin+): its key stops working at once.
#[openapi(tag = "Service accounts")]
#[delete("/v1/orgs/<org_id>/service-accounts/<account_id>")]
pub async fn delete_service_account(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    account_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let access = access.recheck(&txn).await?;
    let account = store::service_accounts::find_live(&txn, org_id, account_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access.require(account.role())?;
    let before = ServiceAccountView::from(account.clone());
    store::service_accounts::revoke(&txn, account).await?;
    crate::audit::changes(Some(&before), None::<()>);
    txn.commit().await?;
    Ok(NoContent)
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings:
        list_service_accounts, create_service_account, get_service_account,
        rotate_service_account, delete_service_account
    ]
}
