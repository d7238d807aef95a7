//! `/v1/orgs/{org_id}/webhooks`: subscriptions to the organization's events (admin+), their
//! signing secrets and their deliveries.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Accepted, Created, NoContent};
use crate::app::AppState;
use crate::auth::{Admin, OrgAccess};
use crate::error::{ApiError, FieldError};
use crate::store::{self, webhooks::Delivery, webhooks::Webhook};
use crate::webhooks::{check_pattern, generate_secret, MAX_PATTERNS};
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest accepted URL and description.
const MAX_URL_LEN: usize = 2048;
const MAX_DESCRIPTION_LEN: usize = 500;

/// A webhook (its secret is shown only when created or rotated).
#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// Where events are POSTed.
    pub url: String,
    /// Event patterns: `*`, `workspace.*`, `codegen.succeeded`, …
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

impl From<&Webhook> for WebhookView {
    fn from(w: &Webhook) -> Self {
        Self {
            id: w.id,
            org_id: w.org_id,
            url: w.url.clone(),
            events: w.patterns(),
            description: w.description.clone(),
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A webhook with its signing secret (answered once, on create and on rotate).
#[derive(Debug, Serialize, JsonSchema)]
pub struct WebhookWithSecret {
    /// The webhook.
    #[serde(flatten)]
    pub webhook: WebhookView,
    /// HMAC-SHA256 signing secret; store it now, it is not shown again.
    pub secret: String,
}

/// Body of `POST …/webhooks`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhook {
    /// Public http(s) URL.
    pub url: String,
    /// Event patterns (at least one).
    #[schemars(length(min = 1))]
    pub events: Vec<String>,
    /// Free text.
    pub description: Option<String>,
}

/// Body of `PATCH …/webhooks/{id}`; absent fields are unchanged.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateWebhook {
    /// New URL.
    pub url: Option<String>,
    /// New event patterns (at least one).
    #[schemars(length(min = 1))]
    pub events: Option<Vec<String>>,
    /// New description (`null` clears it).
    #[serde(default, deserialize_with = "super::body::present_or_null")]
    pub description: Option<Option<String>>,
}

/// One delivery of an event to a webhook.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DeliveryView {
    /// Id.
    pub id: Uuid,
    /// Webhook id.
    pub webhook_id: Uuid,
    /// The event delivered (also sent as `Gantry-Delivery`).
    pub event_id: Uuid,
    /// Its type.
    pub event_type: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made.
    pub attempts: i32,
    /// HTTP status of the last attempt.
    pub response_code: Option<i32>,
    /// Duration of the last attempt, in milliseconds.
    pub duration_ms: Option<i32>,
    /// Error of the last attempt.
    pub last_error: Option<String>,
    /// When the next attempt is due (pending only).
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// When it was delivered.
    pub delivered_at: Option<DateTime<Utc>>,
    /// Creation time.
    pub created_at: DateTime<Utc>,
}

impl From<Delivery> for DeliveryView {
    fn from(d: Delivery) -> Self {
        Self {
            id: d.id,
            webhook_id: d.webhook_id,
            event_id: d.event_id,
            event_type: d.event_type,
            status: d.status.as_str().to_owned(),
            attempts: d.attempts,
            response_code: d.response_code,
            duration_ms: d.duration_ms,
            last_error: d.last_error,
            next_attempt_at: d.next_attempt_at,
            delivered_at: d.delivered_at,
            created_at: d.created_at,
        }
    }
}

fn check_events(events: &[String], errors: &mut Vec<FieldError>) {
    if events.is_empty() {
        errors.push(FieldError::new(
            "/events",
            "must name at least one event pattern",
        ));
    }
    if events.len() > MAX_PATTERNS {
        errors.push(FieldError::new(
            "/events",
            format!("at most {MAX_PATTERNS} patterns"),
        ));
    }
    for (i, pattern) in events.iter().enumerate() {
        if let Err(e) = check_pattern(pattern) {
            errors.push(FieldError::new(format!("/events/{i}"), e));
        }
    }
}

fn check_description(description: Option<&str>, errors: &mut Vec<FieldError>) {
    if description.is_some_and(|d| d.chars().count() > MAX_DESCRIPTION_LEN) {
        errors.push(FieldError::new(
            "/description",
            format!("at most {MAX_DESCRIPTION_LEN} characters"),
        ));
    }
}

async fn check_url(state: &AppState, url: &str, errors: &mut Vec<FieldError>) {
    if url.len() > MAX_URL_LEN {
        errors.push(FieldError::new(
            "/url",
            format!("at most {MAX_URL_LEN} characters"),
        ));
        return;
    }
    if let Err(e) = state.outbound.check_url(url).await {
        errors.push(FieldError::new("/url", e.to_string()));
    }
}

/// Checks a new webhook's events, description and URL, answering every problem at once.
async fn check_new_webhook(
    state: &AppState,
    url: &str,
    events: &[String],
    description: Option<&str>,
) -> Result<(), ApiError> {
    let mut errors = Vec::new();
    check_events(events, &mut errors);
    check_description(description, &mut errors);
    check_url(state, url, &mut errors).await;
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::Validation(errors))
    }
}

fn new_secret() -> Result<String, ApiError> {
    generate_secret().map_err(|_| ApiError::Internal(anyhow::anyhow!("no randomness for a secret")))
}

async fn live_webhook(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    id: Uuid,
) -> Result<Webhook, ApiError> {
    store::webhooks::find_live(db, org_id, id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Subscribe a URL to the organization's events (admin+). The answer carries the signing
/// secret, once.
#[openapi(tag = "Webhooks")]
#[post("/v1/orgs/<org_id>/webhooks", data = "<body>")]
pub async fn create_webhook(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<CreateWebhook>,
) -> Result<Created<WebhookWithSecret>, ApiError> {
    let CreateWebhook {
        url,
        events,
        description,
    } = body.0;
    check_new_webhook(state, &url, &events, description.as_deref()).await?;
    let secret = new_secret()?;
    let txn = store::begin_write(&state.db).await?;
    access.lock(&txn).await?;
    let max = state.limits.webhooks_per_org;
    if store::webhooks::count_live(&txn, org_id).await? >= max {
        return Err(ApiError::QuotaExceeded(format!(
            "an organization may have at most {max} webhooks"
        )));
    }
    let webhook = store::webhooks::insert(
        &txn,
        org_id,
        &url,
        &events,
        description,
        &state.secrets,
        &secret,
    )
    .await?;
    crate::audit::target("webhook", webhook.id);
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/webhooks/{}", webhook.id),
        body: WebhookWithSecret {
            webhook: WebhookView::from(&webhook),
            secret,
        },
    })
}

/// List webhooks (admin+).
#[openapi(tag = "Webhooks")]
#[get("/v1/orgs/<org_id>/webhooks?<limit>&<cursor>")]
pub async fn list_webhooks(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<WebhookView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::webhooks::list(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |w| w.id,
        |w| WebhookView::from(&w),
    )))
}

/// Get one webhook (admin+).
#[openapi(tag = "Webhooks")]
#[get("/v1/orgs/<org_id>/webhooks/<webhook_id>")]
pub async fn get_webhook(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    webhook_id: Uuid,
) -> Result<Json<WebhookView>, ApiError> {
    let webhook = live_webhook(&state.db, org_id, webhook_id).await?;
    Ok(Json(WebhookView::from(&webhook)))
}

/// Change a webhook's URL, events or description (admin+).
#[openapi(tag = "Webhooks")]
#[patch("/v1/orgs/<org_id>/webhooks/<webhook_id>", data = "<body>")]
pub async fn update_webhook(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    webhook_id: Uuid,
    body: JsonBody<UpdateWebhook>,
) -> Result<Json<WebhookView>, ApiError> {
    let UpdateWebhook {
        url,
        events,
        description,
    } = body.0;
    let mut errors = Vec::new();
    if let Some(events) = &events {
        check_events(events, &mut errors);
    }
    check_description(description.as_ref().and_then(|d| d.as_deref()), &mut errors);
    if let Some(url) = &url {
        check_url(state, url, &mut errors).await;
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let txn = store::begin_write(&state.db).await?;
    let webhook = live_webhook(&txn, org_id, webhook_id).await?;
    let webhook = store::webhooks::update(&txn, webhook, url, events, description).await?;
    txn.commit().await?;
    Ok(Json(WebhookView::from(&webhook)))
}

/// Delete a webhook (admin+); pending deliveries are not attempted any more.
#[openapi(tag = "Webhooks")]
#[delete("/v1/orgs/<org_id>/webhooks/<webhook_id>")]
pub async fn delete_webhook(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    webhook_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let webhook = live_webhook(&txn, org_id, webhook_id).await?;
    store::webhooks::soft_delete(&txn, webhook).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Replace the signing secret (admin+); the new secret is answered once.
#[openapi(tag = "Webhooks")]
#[post("/v1/orgs/<org_id>/webhooks/<webhook_id>/rotate-secret")]
pub async fn rotate_secret(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    webhook_id: Uuid,
) -> Result<Json<WebhookWithSecret>, ApiError> {
    let secret = new_secret()?;
    let txn = store::begin_write(&state.db).await?;
    let webhook = live_webhook(&txn, org_id, webhook_id).await?;
    let webhook = store::webhooks::set_secret(&txn, webhook, &state.secrets, &secret).await?;
    txn.commit().await?;
    Ok(Json(WebhookWithSecret {
        webhook: WebhookView::from(&webhook),
        secret,
    }))
}

/// A webhook's deliveries, newest first (admin+).
#[openapi(tag = "Webhooks")]
#[get("/v1/orgs/<org_id>/webhooks/<webhook_id>/deliveries?<limit>&<cursor>")]
pub async fn list_deliveries(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    webhook_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<DeliveryView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let webhook = live_webhook(&state.db, org_id, webhook_id).await?;
    let (rows, more) = store::webhooks::list_deliveries(&state.db, webhook.id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |d| d.id,
        DeliveryView::from,
    )))
}

/// Deliver an event again (admin+): the delivery becomes pending with a fresh attempt budget.
#[openapi(tag = "Webhooks")]
#[post("/v1/orgs/<org_id>/webhooks/<webhook_id>/deliveries/<delivery_id>/redeliver")]
pub async fn redeliver(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    webhook_id: Uuid,
    delivery_id: Uuid,
) -> Result<Accepted<DeliveryView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let webhook = live_webhook(&txn, org_id, webhook_id).await?;
    let delivery = store::webhooks::find_delivery(&txn, webhook.id, delivery_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let delivery = store::webhooks::redeliver(&txn, delivery).await?;
    txn.commit().await?;
    Ok(Accepted {
        location: format!("/v1/orgs/{org_id}/webhooks/{webhook_id}/deliveries"),
        body: DeliveryView::from(delivery),
    })
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_webhook,
        list_webhooks,
        get_webhook,
        update_webhook,
        delete_webhook,
        rotate_secret,
        list_deliveries,
        redeliver
    ]
}
