//! Health monitoring under `/v1/orgs/{org_id}`: `health-checks` (and their `results`),
//! `incidents`, `alert-channels`, `alert-rules`, `maintenance-windows` and `status` (with its
//! SSE stream).

pub mod alerts;
pub mod checks;
pub mod incidents;
pub mod maintenance;
pub mod status;

use rocket_okapi::okapi::merge::marge_spec_list;
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;

/// Every monitoring route with its OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    let parts = [
        checks::routes(settings),
        incidents::routes(settings),
        alerts::routes(settings),
        maintenance::routes(settings),
        status::routes(settings),
    ];
    let mut routes = Vec::new();
    let mut specs = Vec::new();
    for (part_routes, spec) in parts {
        routes.extend(part_routes);
        specs.push(("/".to_owned(), spec));
    }
    match marge_spec_list(&specs) {
        Ok(spec) => (routes, spec),
        // Conflicting paths are a programming error caught by the OpenAPI test.
        Err(err) => panic!("monitoring OpenAPI specs conflict: {err}"),
    }
}

/// Whether a maintenance window of the check's organization covers it now.
pub(crate) async fn in_maintenance(
    db: &impl sea_orm::ConnectionTrait,
    check: &crate::store::health_checks::HealthCheck,
) -> Result<bool, sea_orm::DbErr> {
    let now = crate::store::now();
    Ok(crate::store::alerts::all_windows(db, check.org_id)
        .await?
        .iter()
        .any(|w| {
            crate::resources::alerts::window_covers(w, check.id, &check.labels)
                && crate::resources::alerts::window_active(w, now)
        }))
}
