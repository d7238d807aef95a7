//! `/v1/orgs/{org_id}/health-checks`: checks (member+ to write, viewer+ to read) and their
//! results.

use super::in_maintenance;
use crate::api::body::JsonBody;
use crate::api::pagination::{page_request, Cursor, Limit, Page, Strict};
use crate::api::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::{Member, OrgAccess, Viewer};
use crate::error::ApiError;
use crate::resources::health::{CheckInput, CheckPatch, HealthCheckView, ResultView};
use crate::store::{self, health_checks::HealthCheck};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use uuid::Uuid;

async fn live_check(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<HealthCheck, ApiError> {
    store::health_checks::find_live(db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

async fn view(
    db: &impl sea_orm::ConnectionTrait,
    check: &HealthCheck,
) -> Result<HealthCheckView, ApiError> {
    Ok(HealthCheckView::new(
        check,
        in_maintenance(db, check).await?,
    ))
}

/// Create a health check (member+). Its target must pass the outbound-address policy; its
/// first run is spread over its interval.
#[openapi(tag = "Health checks")]
#[post("/v1/orgs/<org_id>/health-checks", data = "<body>")]
pub async fn create_check(
    state: &State<AppState>,
    access: OrgAccess<Member>,
    org_id: Uuid,
    body: JsonBody<CheckInput>,
) -> Result<Created<HealthCheckView>, ApiError> {
    let new = body
        .0
        .validate(&state.outbound, state.health.min_interval)
        .await?;
    let id = store::new_id();
    let first = crate::workers::health::first_due(id, new.interval_ms, store::now());
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let check = store::health_checks::insert(&txn, org_id, id, new, first).await?;
    let view = view(&txn, &check).await?;
    crate::audit::target("health_check", id);
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/health-checks/{id}"),
        body: view,
    })
}

/// List health checks.
#[openapi(tag = "Health checks")]
#[get("/v1/orgs/<org_id>/health-checks?<limit>&<cursor>")]
pub async fn list_checks(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<HealthCheckView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::health_checks::list(&state.db, org_id, &page).await?;
    let mut items = Vec::with_capacity(rows.len());
    for check in &rows {
        items.push(view(&state.db, check).await?);
    }
    let mut page = Page::from_rows(rows, more, |c| c.id, |_| ());
    let next_cursor = page.next_cursor.take();
    Ok(Json(Page { items, next_cursor }))
}

/// Get one health check.
#[openapi(tag = "Health checks")]
#[get("/v1/orgs/<org_id>/health-checks/<check_id>")]
pub async fn get_check(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    check_id: Uuid,
) -> Result<Json<HealthCheckView>, ApiError> {
    let check = live_check(&state.db, org_id, check_id).await?;
    Ok(Json(view(&state.db, &check).await?))
}

/// Change a health check (member+); `enabled: false` pauses it. The kind cannot change.
#[openapi(tag = "Health checks")]
#[patch("/v1/orgs/<org_id>/health-checks/<check_id>", data = "<body>")]
pub async fn update_check(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    check_id: Uuid,
    body: JsonBody<CheckPatch>,
) -> Result<Json<HealthCheckView>, ApiError> {
    let current = live_check(&state.db, org_id, check_id).await?;
    let new = CheckInput::from_stored(&current)
        .merged(body.0)
        .validate(&state.outbound, state.health.min_interval)
        .await?;
    let txn = store::begin_write(&state.db).await?;
    let check = live_check(&txn, org_id, check_id).await?;
    let check = store::health_checks::update(&txn, check, new).await?;
    let view = view(&txn, &check).await?;
    txn.commit().await?;
    Ok(Json(view))
}

/// Delete a health check (member+); an open incident stays as it is.
#[openapi(tag = "Health checks")]
#[delete("/v1/orgs/<org_id>/health-checks/<check_id>")]
pub async fn delete_check(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    check_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let check = live_check(&txn, org_id, check_id).await?;
    store::health_checks::soft_delete(&txn, check).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// A check's results, oldest first: `after` is an RFC 3339 time or a previous page's cursor.
#[openapi(tag = "Health checks")]
#[get("/v1/orgs/<org_id>/health-checks/<check_id>/results?<after>&<limit>&<cursor>")]
pub async fn list_results(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    check_id: Uuid,
    after: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<ResultView>>, ApiError> {
    let after = after.get("after")?;
    let since = after
        .map(|a| {
            chrono::DateTime::parse_from_rfc3339(a)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|_| ApiError::BadRequest(format!("after={a:?} is not an RFC 3339 time")))
        })
        .transpose()?;
    let page = page_request(limit, cursor)?;
    let check = live_check(&state.db, org_id, check_id).await?;
    let (rows, more) =
        store::health_checks::list_results(&state.db, check.id, since, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |r| r.id,
        ResultView::from,
    )))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_check,
        list_checks,
        get_check,
        update_check,
        delete_check,
        list_results
    ]
}
