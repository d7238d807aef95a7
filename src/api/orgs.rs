//! `/v1/orgs`: organizations.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::{Admin, Caller, OrgAccess, Owner, Viewer};
use crate::domain::{DisplayName, DnsLabel, Role};
use crate::error::{ApiError, FieldError};
use crate::outbox::{self, EventType};
pub use crate::resources::org::OrgView;
use crate::store::{self, is_unique_violation};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::Deserialize;
use uuid::Uuid;

/// Body of `POST /v1/orgs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrg {
    /// Display name (1–100 characters).
    #[schemars(
        regex(
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        ),
        length(min = 1, max = 100)
    )]
    pub name: String,
    /// Unique DNS-1123 label.
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub slug: String,
}

/// Body of `PATCH /v1/orgs/{org_id}`; absent fields are unchanged.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateOrg {
    /// New display name.
    #[schemars(
        regex(
            pattern = r"^[^\u0000-\u001f\u007f-\u009f]*[^\s\u0000-\u001f\u007f-\u009f][^\u0000-\u001f\u007f-\u009f]*$"
        ),
        length(min = 1, max = 100)
    )]
    pub name: Option<String>,
    /// New slug.
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub slug: Option<String>,
}

fn parse_name(name: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    DisplayName::parse(name)
        .map(DisplayName::into_string)
        .map_err(|e| errors.push(FieldError::new("/name", e)))
        .ok()
}

fn parse_slug(slug: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    DnsLabel::parse(slug)
        .map(DnsLabel::into_string)
        .map_err(|e| errors.push(FieldError::new("/slug", e)))
        .ok()
}

fn slug_taken(err: sea_orm::DbErr) -> ApiError {
    if is_unique_violation(&err) {
        ApiError::Conflict("an organization with this slug already exists".to_owned())
    } else {
        err.into()
    }
}

/// Create an organization; the caller becomes its owner.
#[openapi(tag = "Organizations")]
#[post("/v1/orgs", data = "<body>")]
pub async fn create_org(
    state: &State<AppState>,
    caller: Caller,
    body: JsonBody<CreateOrg>,
) -> Result<Created<OrgView>, ApiError> {
    let mut errors = Vec::new();
    let name = parse_name(&body.0.name, &mut errors);
    let slug = parse_slug(&body.0.slug, &mut errors);
    if caller.service_account.is_some() {
        return Err(ApiError::Forbidden(
            "a service account acts only in its own organization; it cannot create one".to_owned(),
        ));
    }
    let (Some(name), Some(slug)) = (name, slug) else {
        return Err(ApiError::Validation(errors));
    };
    let txn = store::begin_write(&state.db).await?;
    // The user row is the parent of the count: locked, two concurrent creates cannot both
    // pass the quota.
    store::users::lock(&txn, &caller.sub).await?;
    let max = state.limits.orgs_per_user;
    if store::orgs::count_owned_live(&txn, &caller.sub).await? >= max {
        return Err(ApiError::QuotaExceeded(format!(
            "a user may own at most {max} organizations"
        )));
    }
    let org = store::orgs::insert(&txn, &name, &slug)
        .await
        .map_err(slug_taken)?;
    store::members::insert(&txn, org.id, &caller.sub, Role::Owner).await?;
    let view = OrgView::from(org);
    outbox::record(&txn, EventType::OrgCreated, view.id, view.id, &view).await?;
    txn.commit().await?;
    // This process forgets at once; others when their event hub reads the event.
    state.access_cache.invalidate();
    Ok(Created {
        location: format!("/v1/orgs/{}", view.id),
        body: view,
    })
}

/// List the caller's organizations (`?all=true`: every organization, platform admins only).
#[openapi(tag = "Organizations")]
#[get("/v1/orgs?<limit>&<cursor>&<all>")]
pub async fn list_orgs(
    state: &State<AppState>,
    caller: Caller,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
    all: Strict<bool>,
) -> Result<Json<Page<OrgView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = if all.get("all")? == Some(true) {
        if !caller.is_platform_admin {
            return Err(ApiError::Forbidden(
                "all=true needs the gantry-admin realm role".to_owned(),
            ));
        }
        store::orgs::list_all(&state.db, &page).await?
    } else if let Some(account) = &caller.service_account {
        // A service account belongs to its one organization.
        let own = store::orgs::find_live_with_membership(&state.db, account.org_id, &caller.sub)
            .await?
            .map(|(org, _)| org)
            .filter(|org| page.after.is_none_or(|after| org.id > after));
        (own.into_iter().collect(), false)
    } else {
        store::orgs::list_for_member(&state.db, &caller.sub, &page).await?
    };
    Ok(Json(Page::from_rows(rows, more, |o| o.id, OrgView::from)))
}

/// Get one organization.
#[openapi(tag = "Organizations")]
#[get("/v1/orgs/<org_id>")]
pub async fn get_org(access: OrgAccess<Viewer>, org_id: Uuid) -> Result<Json<OrgView>, ApiError> {
    // The guard loaded the organization of this path's id.
    debug_assert_eq!(access.org.id, org_id);
    Ok(Json(access.org.into()))
}

/// Rename an organization or change its slug (admin+).
#[openapi(tag = "Organizations")]
#[patch("/v1/orgs/<org_id>", data = "<body>")]
pub async fn update_org(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<UpdateOrg>,
) -> Result<Json<OrgView>, ApiError> {
    let mut errors = Vec::new();
    let name = body.0.name.as_deref().map(|n| parse_name(n, &mut errors));
    let slug = body.0.slug.as_deref().map(|s| parse_slug(s, &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    debug_assert_eq!(access.org.id, org_id);
    let txn = store::begin_write(&state.db).await?;
    let access = access.recheck(&txn).await?;
    let org = store::orgs::update(&txn, access.org, name.flatten(), slug.flatten())
        .await
        .map_err(slug_taken)?;
    let view = OrgView::from(org);
    outbox::record(&txn, EventType::OrgUpdated, view.id, view.id, &view).await?;
    txn.commit().await?;
    // This process forgets at once; others when their event hub reads the event.
    state.access_cache.invalidate();
    Ok(Json(view))
}

/// Delete an organization (owner). Refused (409) while it has workspaces that are not being
/// deleted, so no virtual cluster is orphaned.
#[openapi(tag = "Organizations")]
#[delete("/v1/orgs/<org_id>")]
pub async fn delete_org(
    state: &State<AppState>,
    access: OrgAccess<Owner>,
    org_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    // Locked like workspace creation locks it, so a workspace created concurrently is either
    // counted here (409) or refused there (the organization is gone).
    let access = access.lock(&txn).await?;
    let active = store::workspaces::count_active(&txn, org_id).await?;
    if active > 0 {
        return Err(ApiError::Conflict(format!(
            "the organization still has {active} workspace(s); delete them first"
        )));
    }
    let org = store::orgs::soft_delete(&txn, access.org).await?;
    // Secrets are write-only credentials: nothing may read them once the org is gone.
    store::secrets::delete_all(&txn, org.id).await?;
    outbox::record(
        &txn,
        EventType::OrgDeleted,
        org.id,
        org.id,
        OrgView::from(org),
    )
    .await?;
    txn.commit().await?;
    // This process forgets at once; others when their event hub reads the event.
    state.access_cache.invalidate();
    Ok(NoContent)
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: create_org, list_orgs, get_org, update_org, delete_org]
}
