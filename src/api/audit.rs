//! The audit trail: `GET /v1/orgs/{org_id}/audit` (admin+) and `GET /v1/admin/audit` (platform
//! admins), newest first, as JSON pages or — with `?format=ndjson`, `Accept:
//! application/x-ndjson`, or the `/export` paths — as NDJSON streams of every matching row.
//! Nothing can change or delete a row through the API.

use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use crate::app::AppState;
use crate::auth::{Admin, OrgAccess, PlatformAdmin};
use crate::error::ApiError;
use crate::store::audit::{self as audit_store, AuditFilter, AuditRow};
use crate::store::PageRequest;
use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use rocket::http::ContentType;
use rocket::request::{FromRequest, Outcome, Request};
use rocket::response::{self, Responder};
use rocket::serde::json::Json;
use rocket::{get, State};
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{OpenApi, Responses};
use rocket_okapi::request::{OpenApiFromRequest, RequestHeaderInput};
use rocket_okapi::response::OpenApiResponderInner;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

/// Rows fetched per round trip of an NDJSON export.
const EXPORT_BATCH: u64 = 500;

/// Who acted.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditActor {
    /// `user` or `service_account`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The user's `sub` or the service account's id.
    pub id: String,
}

/// What was acted on.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditTarget {
    /// `project`, `org`, `team`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// Its id, when known.
    pub id: Option<String>,
}

/// One audit entry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct AuditEntry {
    /// Entry id (increasing).
    pub id: i64,
    /// When it happened.
    pub at: DateTime<Utc>,
    /// Who acted.
    pub actor: AuditActor,
    /// `project.update`, `member.delete`, `user.sign_in`, …
    pub action: String,
    /// What was acted on.
    pub target: AuditTarget,
    /// The organization, for org-scoped actions.
    pub org_id: Option<Uuid>,
    /// The request's `X-Request-Id`.
    pub request_id: Option<String>,
    /// The client's address.
    pub source_ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// `success`, or `denied` for a refused (403) request.
    pub outcome: String,
    /// `{before, after}` of the change, secrets redacted.
    pub changes: Option<serde_json::Value>,
}

impl From<AuditRow> for AuditEntry {
    fn from(row: AuditRow) -> Self {
        Self {
            id: row.id,
            at: row.at,
            actor: AuditActor {
                kind: row.actor_type,
                id: row.actor_id,
            },
            action: row.action,
            target: AuditTarget {
                kind: row.target_type,
                id: row.target_id,
            },
            org_id: row.org_id,
            request_id: row.request_id,
            source_ip: row.source_ip,
            user_agent: row.user_agent,
            outcome: row.outcome,
            changes: row.changes,
        }
    }
}

/// Whether the client asked for NDJSON with `Accept: application/x-ndjson`.
pub struct WantsNdjson(bool);

#[rocket::async_trait]
impl<'r> FromRequest<'r> for WantsNdjson {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        let wants = req
            .headers()
            .get("Accept")
            .any(|value| value.contains("application/x-ndjson"));
        Outcome::Success(WantsNdjson(wants))
    }
}

impl<'r> OpenApiFromRequest<'r> for WantsNdjson {
    fn from_request_input(
        _gen: &mut OpenApiGenerator,
        _name: String,
        _required: bool,
    ) -> rocket_okapi::Result<RequestHeaderInput> {
        Ok(RequestHeaderInput::None)
    }
}

/// A page of entries, or every matching entry as NDJSON.
pub enum AuditAnswer {
    /// `application/json`: one page.
    Page(Json<Page<AuditEntry>>),
    /// `application/x-ndjson`: one entry per line, streamed.
    Ndjson(BoxStream<'static, Vec<u8>>),
}

impl<'r> Responder<'r, 'r> for AuditAnswer {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'r> {
        match self {
            AuditAnswer::Page(page) => page.respond_to(req),
            AuditAnswer::Ndjson(stream) => (
                ContentType::new("application", "x-ndjson"),
                rocket::response::stream::ByteStream::from(stream),
            )
                .respond_to(req),
        }
    }
}

impl OpenApiResponderInner for AuditAnswer {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        use rocket_okapi::okapi::openapi3::{MediaType, RefOr};
        let mut responses = <Json<Page<AuditEntry>> as OpenApiResponderInner>::responses(gen)?;
        if let Some(RefOr::Object(ok)) = responses.responses.get_mut("200") {
            let entry = gen.json_schema::<AuditEntry>();
            ok.content.insert(
                "application/x-ndjson".to_owned(),
                MediaType {
                    schema: Some(entry),
                    ..MediaType::default()
                },
            );
            ok.description = "A page of entries (JSON), or every matching entry, one JSON \
                              object per line (NDJSON)."
                .to_owned();
        }
        Ok(responses)
    }
}

/// The filter from the query parameters (empty = absent).
fn filter_of(
    org_id: Option<Uuid>,
    actor: Option<&str>,
    action: Option<&str>,
    target_type: Option<&str>,
    after: Option<&str>,
    before: Option<&str>,
) -> Result<AuditFilter, ApiError> {
    let time = |name: &str, raw: Option<&str>| -> Result<Option<DateTime<Utc>>, ApiError> {
        raw.filter(|r| !r.is_empty())
            .map(|r| {
                DateTime::parse_from_rfc3339(r)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|_| {
                        ApiError::BadRequest(format!("{name}={r:?} is not an RFC 3339 time"))
                    })
            })
            .transpose()
    };
    let text = |raw: Option<&str>| raw.filter(|r| !r.is_empty()).map(str::to_owned);
    Ok(AuditFilter {
        org_id,
        actor: text(actor),
        action: text(action),
        target_type: text(target_type),
        after: time("after", after)?,
        before: time("before", before)?,
    })
}

/// Every entry matching `filter`, newest first, as NDJSON chunks of [`EXPORT_BATCH`] rows.
fn export(db: sea_orm::DatabaseConnection, filter: AuditFilter) -> BoxStream<'static, Vec<u8>> {
    let state = Some((db, filter, None::<i64>));
    Box::pin(futures::stream::unfold(state, |state| async move {
        let (db, filter, after) = state?;
        let page = PageRequest {
            limit: EXPORT_BATCH,
            after,
        };
        let (rows, more) = match audit_store::list(&db, &filter, &page).await {
            Ok(found) => found,
            Err(err) => {
                // The status line is gone by now: end the stream short, and say so in the log.
                tracing::error!(%err, "audit export stopped early");
                return None;
            }
        };
        let last = rows.last().map(|r| r.id);
        let mut chunk = Vec::new();
        for row in rows {
            if serde_json::to_writer(&mut chunk, &AuditEntry::from(row)).is_ok() {
                chunk.push(b'\n');
            }
        }
        let next = (more && last.is_some()).then_some((db, filter, last));
        Some((chunk, next))
    }))
}

#[allow(clippy::too_many_arguments)]
async fn answer(
    state: &AppState,
    filter: AuditFilter,
    ndjson: bool,
    limit: Limit,
    cursor: Strict<Cursor<i64>>,
) -> Result<AuditAnswer, ApiError> {
    if ndjson {
        return Ok(AuditAnswer::Ndjson(export(state.db.clone(), filter)));
    }
    let page = page_request::<i64>(limit, cursor)?;
    let (rows, more) = audit_store::list(&state.db, &filter, &page).await?;
    Ok(AuditAnswer::Page(Json(Page::from_rows(
        rows,
        more,
        |r| r.id,
        AuditEntry::from,
    ))))
}

fn ndjson_requested(format: Option<&str>, accept: &WantsNdjson) -> Result<bool, ApiError> {
    match format {
        None | Some("") | Some("json") => Ok(accept.0),
        Some("ndjson") => Ok(true),
        Some(other) => Err(ApiError::BadRequest(format!(
            "format={other:?}: expected json or ndjson"
        ))),
    }
}

/// The organization's audit trail (admin+), newest first. `action` is exact, or a prefix
/// ending in `.` (`project.`); `after`/`before` are RFC 3339 times.
#[openapi(tag = "Audit")]
#[get("/v1/orgs/<org_id>/audit?<actor>&<action>&<target_type>&<after>&<before>&<format>&<limit>&<cursor>")]
#[allow(clippy::too_many_arguments)]
pub async fn list_org_audit(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    actor: Strict<&str>,
    action: Strict<&str>,
    target_type: Strict<&str>,
    after: Strict<&str>,
    before: Strict<&str>,
    format: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<i64>>,
    accept: WantsNdjson,
) -> Result<AuditAnswer, ApiError> {
    let filter = filter_of(
        Some(org_id),
        actor.get("actor")?,
        action.get("action")?,
        target_type.get("target_type")?,
        after.get("after")?,
        before.get("before")?,
    )?;
    let ndjson = ndjson_requested(format.get("format")?, &accept)?;
    answer(state, filter, ndjson, limit, cursor).await
}

/// The organization's audit trail as NDJSON (admin+): every matching entry, newest first.
#[openapi(tag = "Audit")]
#[get("/v1/orgs/<org_id>/audit/export?<actor>&<action>&<target_type>&<after>&<before>")]
#[allow(clippy::too_many_arguments)]
pub async fn export_org_audit(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    actor: Strict<&str>,
    action: Strict<&str>,
    target_type: Strict<&str>,
    after: Strict<&str>,
    before: Strict<&str>,
) -> Result<AuditAnswer, ApiError> {
    let filter = filter_of(
        Some(org_id),
        actor.get("actor")?,
        action.get("action")?,
        target_type.get("target_type")?,
        after.get("after")?,
        before.get("before")?,
    )?;
    Ok(AuditAnswer::Ndjson(export(state.db.clone(), filter)))
}

/// The whole audit trail (platform admins), newest first; `org_id` narrows it to one
/// organization.
#[openapi(tag = "Audit")]
#[get("/v1/admin/audit?<org_id>&<actor>&<action>&<target_type>&<after>&<before>&<format>&<limit>&<cursor>")]
#[allow(clippy::too_many_arguments)]
pub async fn list_admin_audit(
    state: &State<AppState>,
    _admin: PlatformAdmin,
    org_id: Strict<Uuid>,
    actor: Strict<&str>,
    action: Strict<&str>,
    target_type: Strict<&str>,
    after: Strict<&str>,
    before: Strict<&str>,
    format: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<i64>>,
    accept: WantsNdjson,
) -> Result<AuditAnswer, ApiError> {
    let filter = filter_of(
        org_id.get("org_id")?,
        actor.get("actor")?,
        action.get("action")?,
        target_type.get("target_type")?,
        after.get("after")?,
        before.get("before")?,
    )?;
    let ndjson = ndjson_requested(format.get("format")?, &accept)?;
    answer(state, filter, ndjson, limit, cursor).await
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: list_org_audit, export_org_audit, list_admin_audit]
}
