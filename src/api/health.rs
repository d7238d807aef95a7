//! `/health/live`, `/health/ready` and `/metrics`: no token needed.

use crate::app::OpsState;
use crate::error::ApiError;
use crate::store;
use rocket::serde::json::Json;
use rocket::{get, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Serialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// How long one dependency check may take.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// Health answer.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Each dependency checked and its state (`ok`, `not configured`).
    pub checks: BTreeMap<String, String>,
}

/// The process is running.
#[openapi(tag = "Health")]
#[get("/health/live")]
pub async fn live() -> Json<Health> {
    Json(Health {
        status: "ok".to_owned(),
        checks: BTreeMap::new(),
    })
}

async fn check_redis(client: &redis::Client) -> Result<(), String> {
    let ping = async {
        let mut conn = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut conn).await
    };
    match tokio::time::timeout(CHECK_TIMEOUT, ping).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    }
}

/// 200 when the database (and Redis, if configured) answer; otherwise 503 naming what is down
/// (`database: down`). The causes are logged, never answered: the endpoint is anonymous.
#[openapi(tag = "Health")]
#[get("/health/ready")]
pub async fn ready(state: &State<OpsState>) -> Result<Json<Health>, ApiError> {
    let mut checks = BTreeMap::new();
    let mut down = Vec::new();
    let database = match tokio::time::timeout(CHECK_TIMEOUT, store::ping(&state.db)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("timed out".to_owned()),
    };
    match database {
        Ok(()) => {
            checks.insert("database".to_owned(), "ok".to_owned());
        }
        Err(err) => {
            tracing::warn!(component = "database", %err, "readiness check failed");
            down.push("database: down");
        }
    }
    match &state.redis {
        Some(client) => match check_redis(client).await {
            Ok(()) => {
                checks.insert("redis".to_owned(), "ok".to_owned());
            }
            Err(err) => {
                tracing::warn!(component = "redis", %err, "readiness check failed");
                down.push("redis: down");
            }
        },
        None => {
            checks.insert("redis".to_owned(), "not configured".to_owned());
        }
    }
    if !down.is_empty() {
        return Err(ApiError::Unavailable(down.join("; ")));
    }
    Ok(Json(Health {
        status: "ok".to_owned(),
        checks,
    }))
}

/// Path of the Prometheus endpoint (on `ROCKET_PORT`, or alone on `GANTRY_METRICS_PORT`).
pub const METRICS_PATH: &str = "/metrics";

/// Prometheus metrics in text format.
#[openapi(tag = "Health")]
#[get("/metrics")]
pub async fn metrics(state: &State<OpsState>) -> Result<String, ApiError> {
    state
        .metrics
        .render()
        .map_err(|e| ApiError::Internal(anyhow::Error::new(e)))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: live, ready, metrics]
}

/// Only `/metrics`, for the separate metrics port.
pub fn metrics_routes() -> Vec<rocket::Route> {
    rocket::routes![metrics]
}

/// The same routes for a process that serves nothing else (worker-only).
pub fn ops_routes() -> Vec<rocket::Route> {
    routes(&OpenApiSettings::default()).0
}
