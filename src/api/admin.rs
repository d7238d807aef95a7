//! `/v1/admin/*`: operator views for platform admins (realm role `gantry-admin`).

use crate::app::AppState;
use crate::auth::Caller;
use crate::error::ApiError;
use crate::store;
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{get, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Serialize;

/// Refuses callers without the platform admin role.
fn require_admin(caller: &Caller) -> Result<(), ApiError> {
    if caller.is_platform_admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "needs the {} realm role",
            crate::auth::ADMIN_ROLE
        )))
    }
}

/// The outbox's unpublished backlog.
#[derive(Debug, Serialize, JsonSchema)]
pub struct OutboxStatus {
    /// Events written but not yet published.
    pub backlog: u64,
    /// When the oldest unpublished event was written.
    pub oldest_unpublished_at: Option<DateTime<Utc>>,
    /// Its age in seconds (0 when the backlog is empty).
    pub oldest_unpublished_age_seconds: f64,
}

/// Outbox backlog and the age of its oldest unpublished event.
#[openapi(tag = "Admin")]
#[get("/v1/admin/outbox")]
pub async fn outbox_status(
    state: &State<AppState>,
    caller: Caller,
) -> Result<Json<OutboxStatus>, ApiError> {
    require_admin(&caller)?;
    let (backlog, oldest) = store::outbox::backlog(&state.db).await?;
    let age = oldest
        .map(|at| (Utc::now() - at).to_std().unwrap_or_default().as_secs_f64())
        .unwrap_or(0.0);
    Ok(Json(OutboxStatus {
        backlog,
        oldest_unpublished_at: oldest,
        oldest_unpublished_age_seconds: age,
    }))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: outbox_status]
}
