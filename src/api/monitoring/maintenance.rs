//! `/v1/orgs/{org_id}/maintenance-windows` (member+ to write, viewer+ to read): while a window
//! covers a check it still runs and records, its status is `maintenance`, and nothing is
//! notified; a check still failing when the window ends notifies once.

use crate::api::body::JsonBody;
use crate::api::pagination::{page_request, Cursor, Limit, Page, Strict};
use crate::api::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::{Member, OrgAccess, Viewer};
use crate::error::ApiError;
use crate::resources::alerts::{WindowInput, WindowPatch, WindowView};
use crate::store;
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use uuid::Uuid;

/// Create a maintenance window (member+).
#[openapi(tag = "Alerting")]
#[post("/v1/orgs/<org_id>/maintenance-windows", data = "<body>")]
pub async fn create_window(
    state: &State<AppState>,
    access: OrgAccess<Member>,
    org_id: Uuid,
    body: JsonBody<WindowInput>,
) -> Result<Created<WindowView>, ApiError> {
    let window = body.0.validate()?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let window = store::alerts::insert_window(&txn, org_id, window).await?;
    crate::audit::target("maintenance_window", window.id);
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/maintenance-windows/{}", window.id),
        body: WindowView::new(&window, store::now()),
    })
}

/// List maintenance windows.
#[openapi(tag = "Alerting")]
#[get("/v1/orgs/<org_id>/maintenance-windows?<limit>&<cursor>")]
pub async fn list_windows(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<WindowView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::alerts::list_windows(&state.db, org_id, &page).await?;
    let now = store::now();
    Ok(Json(Page::from_rows(
        rows,
        more,
        |w| w.id,
        |w| WindowView::new(&w, now),
    )))
}

/// Get one maintenance window.
#[openapi(tag = "Alerting")]
#[get("/v1/orgs/<org_id>/maintenance-windows/<window_id>")]
pub async fn get_window(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    window_id: Uuid,
) -> Result<Json<WindowView>, ApiError> {
    let window = store::alerts::find_window(&state.db, org_id, window_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(WindowView::new(&window, store::now())))
}

/// Change a maintenance window (member+): its name, times, recurrence or what it covers.
#[openapi(tag = "Alerting")]
#[patch("/v1/orgs/<org_id>/maintenance-windows/<window_id>", data = "<body>")]
pub async fn update_window(
    state: &State<AppState>,
    access: OrgAccess<Member>,
    org_id: Uuid,
    window_id: Uuid,
    body: JsonBody<WindowPatch>,
) -> Result<Json<WindowView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let window = store::alerts::find_window(&txn, org_id, window_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let now = store::now();
    let before = WindowView::new(&window, now);
    let new = body.0.apply_to(&window).validate()?;
    let window = store::alerts::update_window(&txn, window, new).await?;
    let view = WindowView::new(&window, now);
    crate::audit::changes(Some(&before), Some(&view));
    txn.commit().await?;
    Ok(Json(view))
}

/// Delete (end) a maintenance window (member+).
#[openapi(tag = "Alerting")]
#[delete("/v1/orgs/<org_id>/maintenance-windows/<window_id>")]
pub async fn delete_window(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    window_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let window = store::alerts::find_window(&txn, org_id, window_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    store::alerts::delete_window(&txn, window).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_window,
        list_windows,
        get_window,
        update_window,
        delete_window
    ]
}
