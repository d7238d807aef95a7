//! `/v1/orgs/{org_id}/incidents`: incidents (viewer+ to read, member+ to acknowledge).

use crate::api::pagination::{page_request, Cursor, Limit, Page, Strict};
use crate::app::AppState;
use crate::auth::{Member, OrgAccess, Viewer};
use crate::error::ApiError;
use crate::resources::health::IncidentView;
use crate::store::{self, incidents::Incident};
use rocket::serde::json::Json;
use rocket::{get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use uuid::Uuid;

async fn incident_of(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Incident, ApiError> {
    store::incidents::find(db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// List incidents, newest first (`status=open|resolved`).
#[openapi(tag = "Incidents")]
#[get("/v1/orgs/<org_id>/incidents?<status>&<limit>&<cursor>")]
pub async fn list_incidents(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    status: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<IncidentView>>, ApiError> {
    let status = status.get("status")?;
    if let Some(s) = status.filter(|s| !matches!(*s, "open" | "resolved")) {
        return Err(ApiError::BadRequest(format!(
            "status={s:?}: expected open or resolved"
        )));
    }
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::incidents::list(&state.db, org_id, status, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |i| i.id,
        |i| IncidentView::new(i, Vec::new()),
    )))
}

/// Get one incident with the notifications sent for it.
#[openapi(tag = "Incidents")]
#[get("/v1/orgs/<org_id>/incidents/<incident_id>")]
pub async fn get_incident(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    incident_id: Uuid,
) -> Result<Json<IncidentView>, ApiError> {
    let incident = incident_of(&state.db, org_id, incident_id).await?;
    let notifications = store::incidents::notifications_of(&state.db, incident.id).await?;
    Ok(Json(IncidentView::new(incident, notifications)))
}

/// Acknowledge an incident (member+): repeats stop; `409` when it already was.
#[openapi(tag = "Incidents")]
#[post("/v1/orgs/<org_id>/incidents/<incident_id>/acknowledge")]
pub async fn acknowledge_incident(
    state: &State<AppState>,
    access: OrgAccess<Member>,
    org_id: Uuid,
    incident_id: Uuid,
) -> Result<Json<IncidentView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let incident = incident_of(&txn, org_id, incident_id).await?;
    let incident = crate::workers::health::acknowledge(&txn, incident, &access.caller.sub)
        .await?
        .ok_or_else(|| ApiError::Conflict("the incident is already acknowledged".to_owned()))?;
    let notifications = store::incidents::notifications_of(&txn, incident.id).await?;
    txn.commit().await?;
    Ok(Json(IncidentView::new(incident, notifications)))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: list_incidents, get_incident, acknowledge_incident]
}
