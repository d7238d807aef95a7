//! `/v1/orgs/{org_id}/events`: the organization's events, read from the outbox (so it works in
//! embedded mode too), as a cursor-paged list and as a Server-Sent Events stream.

use super::headers::{Header, HeaderSpec};
use super::pagination::parse_limit;
use crate::app::AppState;
use crate::auth::{OrgAccess, Viewer};
use crate::error::ApiError;
use crate::outbox::Envelope;
use crate::store::{self, outbox::TypeFilter};
use rocket::futures::stream::{BoxStream, StreamExt};
use rocket::response::stream::{Event, EventStream};
use rocket::serde::json::Json;
use rocket::{get, Shutdown, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Serialize;
use std::time::Duration;
use uuid::Uuid;

/// How often an open stream looks for new events.
const STREAM_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How often an idle stream sends a heartbeat comment.
const STREAM_HEARTBEAT: Duration = Duration::from_secs(15);
/// Events fetched per poll of a stream.
const STREAM_BATCH: u64 = 100;

/// A page of events.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EventPage {
    /// Events, oldest first.
    pub items: Vec<Envelope>,
    /// Pass as `?after=` to continue; when there are no new events it is the cursor you sent,
    /// so a poller can keep using it.
    pub next_cursor: Option<String>,
}

fn parse_cursor(value: &str) -> Result<i64, ApiError> {
    value
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{value:?} is not an event cursor")))
}

/// The organization's events after a cursor, oldest first (`type` filters: `workspace.*`,
/// `org.created,project.*`).
#[openapi(tag = "Events")]
#[get("/v1/orgs/<org_id>/events?<after>&<limit>&<type>")]
pub async fn list_events(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    after: Option<&str>,
    limit: Option<i64>,
    r#type: Option<&str>,
) -> Result<Json<EventPage>, ApiError> {
    let limit = parse_limit(limit)?;
    let after = after
        .filter(|a| !a.is_empty())
        .map(parse_cursor)
        .transpose()?;
    let filter = TypeFilter::parse(r#type.unwrap_or_default());
    let (rows, _more) =
        store::outbox::list_for_org(&state.db, org_id, after, &filter, limit).await?;
    let next_cursor = rows.last().map(|e| e.id).or(after).map(|id| id.to_string());
    Ok(Json(EventPage {
        items: rows.iter().map(Envelope::from).collect(),
        next_cursor,
    }))
}

/// The `Last-Event-ID` header an `EventSource` sends when it reconnects.
pub struct LastEventIdHeader;

impl HeaderSpec for LastEventIdHeader {
    const NAME: &'static str = "Last-Event-ID";
    const DESCRIPTION: &'static str = "Resume after this event cursor (sent by EventSource).";
    const REQUIRED: bool = false;
}

/// The `Last-Event-ID` request header, if present.
pub type LastEventId = Header<LastEventIdHeader>;

/// Server-Sent Events: each event's `id:` is its cursor, `event:` its type and `data:` the
/// envelope. Resumes after `Last-Event-ID` (or `?after=`); without either it starts with the next
/// new event. Heartbeat comments keep idle connections open.
#[openapi(tag = "Events")]
#[get("/v1/orgs/<org_id>/events/stream?<after>&<type>")]
pub async fn stream_events(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    after: Option<&str>,
    r#type: Option<&str>,
    last_event_id: LastEventId,
    shutdown: Shutdown,
) -> Result<EventStream<BoxStream<'static, Event>>, ApiError> {
    let resume = last_event_id
        .value
        .as_deref()
        .or(after)
        .filter(|a| !a.is_empty());
    let cursor = match resume {
        Some(value) => parse_cursor(value)?,
        None => store::outbox::latest_id_for_org(&state.db, org_id).await?,
    };
    let filter = TypeFilter::parse(r#type.unwrap_or_default());
    let events = poll_events(state.db.clone(), org_id, cursor, filter, shutdown);
    Ok(EventStream::from(events).heartbeat(STREAM_HEARTBEAT))
}

/// The organization's events after `cursor` as SSE events, polled until the server shuts down.
pub(crate) fn poll_events(
    db: sea_orm::DatabaseConnection,
    org_id: Uuid,
    mut cursor: i64,
    filter: TypeFilter,
    mut shutdown: Shutdown,
) -> BoxStream<'static, Event> {
    rocket::async_stream::stream! {
        let mut poll = tokio::time::interval(STREAM_POLL_INTERVAL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = poll.tick() => {}
                _ = &mut shutdown => break,
            }
            let rows = match store::outbox::list_for_org(&db, org_id, Some(cursor), &filter, STREAM_BATCH).await {
                Ok((rows, _)) => rows,
                Err(err) => {
                    tracing::warn!(%err, %org_id, "event stream read failed; retrying");
                    continue;
                }
            };
            for row in rows {
                cursor = row.id;
                yield Event::json(&Envelope::from(&row))
                    .id(row.id.to_string())
                    .event(row.event_type.clone());
            }
        }
    }
    .boxed()
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: list_events, stream_events]
}
