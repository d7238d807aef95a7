//! `/v1/orgs/{org_id}/secrets`: write-only values (Git credentials) that jobs reference by
//! name, each bound to the hosts it may be sent to. Admins set and delete them; members list
//! their names and bindings. No endpoint, event or log line ever carries a value.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::NoContent;
use crate::app::AppState;
use crate::auth::{Admin, Member, OrgAccess};
use crate::domain::git_target::{parse_allowed_host, MAX_ALLOWED_HOSTS};
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
/// Largest accepted `known_hosts`, in bytes.
pub const MAX_KNOWN_HOSTS_BYTES: usize = 64 * 1024;

/// A secret as listed: its name and history, never its value.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SecretView {
    /// Name (a DNS-1123 label), as jobs reference it.
    pub name: String,
    /// Hosts (`host` or `host:port`) the value may be sent to; `[]` = usable nowhere.
    pub allowed_hosts: Vec<String>,
    /// SSH host keys (`known_hosts` lines) trusted for ssh deliveries, if set.
    pub known_hosts: Option<String>,
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
            allowed_hosts: store::secrets::parse_hosts(&s.allowed_hosts),
            known_hosts: s.known_hosts,
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
    /// Required for a new secret; omit it to change only the binding of an existing one.
    #[serde(default)]
    #[schemars(length(min = 1, max = 65536))]
    pub value: Option<SecretValue>,
    /// Hosts the value may be sent to, `host` (that host on the scheme's default port: 443,
    /// 80, 22) or `host:port`, e.g. `["github.com", "git.example.com:8443"]`. Required for a
    /// new secret; omitted, an existing secret keeps its list.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
    /// SSH `known_hosts` lines (`ssh-keyscan` output). When set, ssh deliveries with this
    /// secret refuse any host key not listed; `""` clears it (unknown keys accepted on first
    /// use). Omitted, an existing secret keeps its value.
    #[serde(default)]
    pub known_hosts: Option<String>,
}

/// Checks a put, every problem at once; answers the normalized allowed hosts.
fn check_put(name: &str, body: &PutSecret, exists: bool) -> Result<Option<Vec<String>>, ApiError> {
    let mut errors = Vec::new();
    // The name is a path segment; `/name` points at it as if it were a body field.
    if let Err(e) = DnsLabel::parse(name) {
        errors.push(FieldError::new("/name", e));
    }
    match &body.value {
        None if !exists => errors.push(FieldError::new("/value", "is required for a new secret")),
        None => {}
        Some(SecretValue(value)) if value.is_empty() => {
            errors.push(FieldError::new("/value", "must not be empty"))
        }
        Some(SecretValue(value)) if value.len() > MAX_VALUE_BYTES => errors.push(FieldError::new(
            "/value",
            format!("must be at most {MAX_VALUE_BYTES} bytes"),
        )),
        Some(_) => {}
    }
    let hosts = match &body.allowed_hosts {
        None if !exists => {
            errors.push(FieldError::new(
                "/allowed_hosts",
                "is required for a new secret: the hosts its value may be sent to",
            ));
            None
        }
        None => None,
        Some(hosts) if hosts.len() > MAX_ALLOWED_HOSTS => {
            errors.push(FieldError::new(
                "/allowed_hosts",
                format!("must have at most {MAX_ALLOWED_HOSTS} entries"),
            ));
            None
        }
        Some(hosts) => {
            let mut normalized = Vec::with_capacity(hosts.len());
            for (i, host) in hosts.iter().enumerate() {
                match parse_allowed_host(host) {
                    Ok(host) if !normalized.contains(&host) => normalized.push(host),
                    Ok(_) => {}
                    Err(e) => errors.push(FieldError::new(format!("/allowed_hosts/{i}"), e)),
                }
            }
            Some(normalized)
        }
    };
    if let Some(known_hosts) = &body.known_hosts {
        if let Err(e) = check_known_hosts(known_hosts) {
            errors.push(FieldError::new("/known_hosts", e));
        }
    }
    if errors.is_empty() {
        Ok(hosts)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// `known_hosts` text: lines of `hosts keytype key [comment]` (or with a leading `@marker`),
/// blank lines and `#` comments.
fn check_known_hosts(text: &str) -> Result<(), String> {
    if text.len() > MAX_KNOWN_HOSTS_BYTES {
        return Err(format!("must be at most {MAX_KNOWN_HOSTS_BYTES} bytes"));
    }
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        if line.starts_with('@') {
            fields.next();
        }
        let (_hosts, key_type, key) = (fields.next(), fields.next(), fields.next());
        let typed = key_type.is_some_and(|t| {
            ["ssh-", "ecdsa-sha2-", "sk-"]
                .iter()
                .any(|prefix| t.starts_with(prefix))
        });
        if !typed || key.is_none() {
            return Err(format!(
                "line {} is not a known_hosts entry (hosts, key type, key)",
                i + 1
            ));
        }
    }
    Ok(())
}

/// Create a secret or change its value and binding (admin+). A new secret needs `value` and
/// `allowed_hosts`. Answers `204` without the value.
#[openapi(tag = "Secrets")]
#[put("/v1/orgs/<org_id>/secrets/<name>", data = "<body>")]
pub async fn put_secret(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    name: &str,
    body: JsonBody<PutSecret>,
) -> Result<NoContent, ApiError> {
    let body = body.0;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let exists = store::secrets::binding(&txn, org_id, name).await?.is_some();
    let hosts = check_put(name, &body, exists)?;
    let write = store::secrets::SecretWrite {
        value: body.value.as_ref().map(|v| v.0.as_str()),
        allowed_hosts: hosts.as_deref(),
        known_hosts: body.known_hosts.as_deref(),
    };
    store::secrets::put(
        &txn,
        &state.secrets,
        org_id,
        name,
        &write,
        &access.caller.sub,
    )
    .await?;
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
    limit: Limit,
    cursor: Strict<Cursor<String>>,
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
