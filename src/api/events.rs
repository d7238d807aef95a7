//! `/v1/orgs/{org_id}/events`: the organization's events, read from the outbox (so it works in
//! embedded mode too), as a cursor-paged list and as a Server-Sent Events stream.

use super::headers::{Header, HeaderSpec};
use super::pagination::{parse_limit, Limit, Strict};
use crate::app::AppState;
use crate::auth::streams::StreamSlot;
use crate::auth::{Caller, OrgAccess, Viewer};
use crate::error::ApiError;
use crate::outbox::Envelope;
use crate::store::outbox::StoredEvent;
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
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

/// How often an idle stream sends a heartbeat comment.
const STREAM_HEARTBEAT: Duration = Duration::from_secs(15);
/// Events fetched per catch-up read of a stream.
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
    after: Strict<&str>,
    limit: Limit,
    r#type: Strict<&str>,
) -> Result<Json<EventPage>, ApiError> {
    let after = after.get("after")?;
    let r#type = r#type.get("type")?;
    let limit = parse_limit(limit)?;
    let after = after.map(parse_cursor).transpose()?;
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
/// new event. Heartbeat comments keep idle connections open. The stream ends when the token
/// expires or the caller is no longer a member (re-checked periodically); a user may hold a
/// bounded number of streams open (429 `quota-exceeded` past it).
#[openapi(tag = "Events")]
#[get("/v1/orgs/<org_id>/events/stream?<after>&<type>")]
pub async fn stream_events(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    after: Strict<&str>,
    r#type: Strict<&str>,
    last_event_id: LastEventId,
    shutdown: Shutdown,
) -> Result<EventStream<BoxStream<'static, Event>>, ApiError> {
    let after = after.get("after")?;
    let r#type = r#type.get("type")?;
    let resume = last_event_id
        .value
        .as_deref()
        .or(after)
        .filter(|a| !a.is_empty());
    let cursor = match resume {
        Some(value) => Some(parse_cursor(value)?),
        None => None,
    };
    let filter = TypeFilter::parse(r#type.unwrap_or_default());
    let events = live_events(state, access.caller, org_id, cursor, filter, shutdown).await?;
    Ok(EventStream::from(events).heartbeat(STREAM_HEARTBEAT))
}

/// What one open stream needs after its request is gone.
struct StreamContext {
    db: sea_orm::DatabaseConnection,
    caller: Caller,
    org_id: Uuid,
    filter: TypeFilter,
    recheck: Duration,
    /// Held for the stream's lifetime: its place in the caller's stream quota.
    _slot: StreamSlot,
}

/// Why a stream's wait ended.
enum Wake {
    Event(Result<Arc<StoredEvent>, RecvError>),
    Recheck,
    Stop,
}

/// The organization's events after `cursor` (default: the newest) as SSE events: caught up
/// from the database, then fed by the process's event hub, until the server shuts down, the
/// token expires or the caller loses access. Takes a slot of the caller's stream quota.
pub(crate) async fn live_events(
    state: &AppState,
    caller: Caller,
    org_id: Uuid,
    cursor: Option<i64>,
    filter: TypeFilter,
    mut shutdown: Shutdown,
) -> Result<BoxStream<'static, Event>, ApiError> {
    let max = state.limits.streams_per_user;
    let slot = state
        .open_streams
        .acquire(&caller.sub, max)
        .ok_or_else(|| {
            ApiError::InFlightQuotaExceeded(format!(
                "at most {max} event streams may be open at once per user; close one first"
            ))
        })?;
    // Subscribe before reading the cursor and catching up, so nothing committed in between
    // is missed (duplicates are dropped by id).
    let mut events = state.event_hub.subscribe();
    let mut cursor = match cursor {
        Some(cursor) => cursor,
        None => store::outbox::latest_id_for_org(&state.db, org_id).await?,
    };
    let expires_at = std::time::UNIX_EPOCH + Duration::from_secs(caller.expires_at);
    let until_expiry = expires_at
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    let ctx = StreamContext {
        db: state.db.clone(),
        caller,
        org_id,
        filter,
        recheck: state.limits.stream_recheck,
        _slot: slot,
    };
    Ok(rocket::async_stream::stream! {
        // Bind the whole context: the block would otherwise capture only the fields it reads
        // and drop the quota slot as soon as the response is built.
        let ctx = ctx;
        let expiry = tokio::time::sleep(until_expiry);
        tokio::pin!(expiry);
        let mut recheck = tokio::time::interval_at(
            tokio::time::Instant::now() + ctx.recheck,
            ctx.recheck,
        );
        let mut catch_up = true;
        loop {
            if catch_up {
                catch_up = false;
                loop {
                    let rows = match store::outbox::list_for_org(&ctx.db, ctx.org_id, Some(cursor), &ctx.filter, STREAM_BATCH).await {
                        Ok((rows, _)) => rows,
                        Err(err) => {
                            tracing::warn!(%err, org_id = %ctx.org_id, "event stream catch-up failed; retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                            continue;
                        }
                    };
                    let done = (rows.len() as u64) < STREAM_BATCH;
                    for row in rows {
                        cursor = row.id;
                        yield sse_event(&row);
                    }
                    if done {
                        break;
                    }
                }
            }
            let wake = tokio::select! {
                _ = &mut shutdown => Wake::Stop,
                _ = &mut expiry => Wake::Stop,
                _ = recheck.tick() => Wake::Recheck,
                received = events.recv() => Wake::Event(received),
            };
            match wake {
                Wake::Stop => break,
                Wake::Recheck => {
                    match OrgAccess::<Viewer>::check(&ctx.db, ctx.caller.clone(), ctx.org_id).await {
                        Ok(_) => {}
                        Err(ApiError::NotFound | ApiError::Forbidden(_)) => break,
                        // A database hiccup is not a revocation; check again next time.
                        Err(err) => tracing::warn!(%err, "event stream access re-check failed"),
                    }
                }
                Wake::Event(Ok(row)) => {
                    if row.org_id == ctx.org_id && row.id > cursor && ctx.filter.matches(&row.event_type) {
                        cursor = row.id;
                        yield sse_event(&row);
                    }
                }
                // Fell behind the broadcast: read what was missed from the database.
                Wake::Event(Err(RecvError::Lagged(_))) => catch_up = true,
                Wake::Event(Err(RecvError::Closed)) => break,
            }
        }
    }
    .boxed())
}

/// One stored event as an SSE event.
fn sse_event(row: &StoredEvent) -> Event {
    Event::json(&Envelope::from(row))
        .id(row.id.to_string())
        .event(row.event_type.clone())
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: list_events, stream_events]
}
