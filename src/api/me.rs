//! `/v1/me`: the caller and its organizations.

use crate::app::AppState;
use crate::auth::Caller;
use crate::domain::Role;
use crate::error::ApiError;
use crate::store;
use rocket::serde::json::Json;
use rocket::{get, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Serialize;
use uuid::Uuid;

/// An organization the caller belongs to, with the caller's role.
#[derive(Debug, Serialize, JsonSchema)]
pub struct MyOrg {
    /// Organization id.
    pub id: Uuid,
    /// Display name.
    pub name: String,
    /// Slug.
    pub slug: String,
    /// The caller's role in it.
    pub role: Role,
}

/// The caller.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Me {
    /// Keycloak `sub`.
    pub sub: String,
    /// `preferred_username` from the token.
    pub preferred_username: Option<String>,
    /// `email` from the token.
    pub email: Option<String>,
    /// Holds the `gantry-admin` realm role.
    pub is_platform_admin: bool,
    /// Organizations the caller is a member of.
    pub orgs: Vec<MyOrg>,
}

/// Who am I, and where do I belong?
#[openapi(tag = "Me")]
#[get("/v1/me")]
pub async fn get_me(state: &State<AppState>, caller: Caller) -> Result<Json<Me>, ApiError> {
    let cached = match &caller.service_account {
        // A service account belongs to its one organization, with its own role.
        Some(account) => Some(
            store::orgs::find_live_with_membership(&state.db, account.org_id, &caller.sub)
                .await?
                .map(|(org, _)| vec![(org, account.role)])
                .unwrap_or_default(),
        ),
        None => state.access_cache.memberships(&caller.sub),
    };
    let orgs = match cached {
        Some(orgs) => orgs,
        None => {
            let ticket = state.access_cache.ticket();
            let orgs: Vec<(store::orgs::Org, Role)> =
                store::orgs::live_with_membership_of(&state.db, &caller.sub)
                    .await?
                    .into_iter()
                    .map(|(org, membership)| (org, membership.role()))
                    .collect();
            if let Some(ticket) = ticket {
                state
                    .access_cache
                    .remember_memberships(ticket, &caller.sub, &orgs);
            }
            orgs
        }
    };
    Ok(Json(Me {
        sub: caller.sub,
        preferred_username: caller.preferred_username,
        email: caller.email,
        is_platform_admin: caller.is_platform_admin,
        orgs: orgs
            .into_iter()
            .map(|(org, role)| MyOrg {
                id: org.id,
                name: org.name,
                slug: org.slug,
                role,
            })
            .collect(),
    }))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: get_me]
}
