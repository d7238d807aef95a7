//! `/v1/orgs/{org_id}/secrets`: write-only values (Git credentials) that jobs reference by
//! name. Admins set and delete them; members list their names. No endpoint, event or log line
//! ever carries a value.

use super::body::JsonBody;
use super::pagination::{page_request, Page};
use super::responses::NoContent;
use crate::app::AppState;
use crate::auth::{Admin, Member, OrgAccess};
use crate::domain::DnsLabel;
use crate::error::{ApiError, FieldError};
use crate::store::{self, secrets::SecretInfo};
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{delete, get, put, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Largest accepted secret value, in bytes.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;

/// A secret as listed: its name and history, never its value.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SecretView {
    /// Name (a DNS-1123 label), as jobs reference it.
    pub name: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When its value was last set.
    pub updated_at: DateTime<Utc>,
    /// `sub` of who created it.
    pub created_by: String,
}

impl From<SecretInfo> for SecretView {
    fn from(s: SecretInfo) -> Self {
        Self {
            name: s.name,
            created_at: s.created_at,
            updated_at: s.updated_at,
            created_by: s.created_by,
        }
    }
}

/// A secret value: a string whose `Debug` and deserialization errors never show it. Its
/// schema is the plain string's.
#[derive(JsonSchema)]
#[schemars(transparent)]
pub struct SecretValue(String);

impl std::fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretValue([redacted])")
    }
}

impl<'de> Deserialize<'de> for SecretValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // serde's own message for a wrong type quotes the value (`invalid type: integer
        // `1234`…`): take any JSON value and answer without it.
        match serde_json::Value::deserialize(deserializer)? {
            serde_json::Value::String(value) => Ok(SecretValue(value)),
            _ => Err(serde::de::Error::custom("must be a string")),
        }
    }
}

/// Body of `PUT …/secrets/{name}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutSecret {
    /// The value (1 byte to 64 KiB): a token, `user:token`, or an SSH private key. Write-only.
    pub value: SecretValue,
}

/// Checks the name and value of a put, every problem at once.
fn check_put(name: &str, value: &str) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    // The name is a path segment; `/name` points at it as if it were a body field.
    if let Err(e) = DnsLabel::parse(name) {
        errors.push(FieldError::new("/name", e));
    }
    if value.is_empty() {
        errors.push(FieldError::new("/value", "must not be empty"));
    } else if value.len() > MAX_VALUE_BYTES {
        errors.push(FieldError::new(
            "/value",
            format!("must be at most {MAX_VALUE_BYTES} bytes"),
        ));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// Create a secret or replace its value (admin+). Answers `204` without the value.
#[openapi(tag = "Secrets")]
#[put("/v1/orgs/<org_id>/secrets/<name>", data = "<body>")]
pub async fn put_secret(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    name: &str,
    body: JsonBody<PutSecret>,
) -> Result<NoContent, ApiError> {
    let value = body.0.value.0;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    check_put(name, &value)?;
    store::secrets::put(&txn, org_id, name, &value, &access.caller.sub).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// List the organization's secrets by name (member+): names and dates, never values.
#[openapi(tag = "Secrets")]
#[get("/v1/orgs/<org_id>/secrets?<limit>&<cursor>")]
pub async fn list_secrets(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    limit: Option<i64>,
    cursor: Option<&str>,
) -> Result<Json<Page<SecretView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::secrets::list(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |s| s.name.clone(),
        SecretView::from,
    )))
}

/// Delete a secret (admin+). Jobs that name it fail validation from then on.
#[openapi(tag = "Secrets")]
#[delete("/v1/orgs/<org_id>/secrets/<name>")]
pub async fn delete_secret(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    name: &str,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    if !store::secrets::delete(&txn, org_id, name).await? {
        return Err(ApiError::NotFound);
    }
    txn.commit().await?;
    Ok(NoContent)
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: put_secret, list_secrets, delete_secret]
}
