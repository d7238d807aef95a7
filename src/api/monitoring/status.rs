//! `/v1/orgs/{org_id}/status`: the status overview, and its SSE stream of `health.*` and
//! `incident.*` events.

use crate::api::events::{live_events, LastEventId};
use crate::app::AppState;
use crate::auth::{OrgAccess, Viewer};
use crate::error::ApiError;
use crate::resources::status::{overview, StatusView};
use crate::store::outbox::TypeFilter;
use rocket::futures::stream::BoxStream;
use rocket::response::stream::{Event, EventStream};
use rocket::serde::json::Json;
use rocket::{get, Shutdown, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use std::time::Duration;
use uuid::Uuid;

/// The event types the status stream carries.
const STATUS_EVENTS: &str = "health.*,incident.*";

/// Every check's status, uptime over 24h/7d/30d, latency p50/p95 over 24h, open incidents.
#[openapi(tag = "Health checks")]
#[get("/v1/orgs/<org_id>/status")]
pub async fn get_status(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
) -> Result<Json<StatusView>, ApiError> {
    Ok(Json(overview(&state.db, org_id).await?))
}

/// Live status changes as Server-Sent Events (`health.*` and `incident.*` events, framed like
/// `…/events/stream`); resumes after `Last-Event-ID`.
#[openapi(tag = "Health checks")]
#[get("/v1/orgs/<org_id>/status/stream")]
pub async fn stream_status(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    last_event_id: LastEventId,
    shutdown: Shutdown,
) -> Result<EventStream<BoxStream<'static, Event>>, ApiError> {
    let cursor =
        match last_event_id.value.as_deref().filter(|v| !v.is_empty()) {
            Some(value) => Some(value.parse::<i64>().ok().filter(|v| *v >= 0).ok_or_else(
                || ApiError::BadRequest(format!("{value:?} is not an event cursor")),
            )?),
            None => None,
        };
    let events = live_events(
        state,
        access.caller,
        org_id,
        cursor,
        TypeFilter::parse(STATUS_EVENTS),
        shutdown,
    )
    .await?;
    Ok(EventStream::from(events).heartbeat(Duration::from_secs(15)))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: get_status, stream_status]
}
