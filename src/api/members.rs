//! `/v1/orgs/{org_id}/members`: who belongs to an organization.
//!
//! Admins manage members; only owners add, change or remove owners; the last owner can be
//! neither removed nor demoted. Any member may remove itself (leave).

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::{Admin, OrgAccess, Viewer};
use crate::domain::Role;
use crate::error::ApiError;
use crate::outbox::{self, EventType};
pub use crate::resources::member::MemberView;
use crate::store::{self, is_unique_violation, members::Membership};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use sea_orm::ConnectionTrait;
use serde::Deserialize;
use uuid::Uuid;

/// Longest accepted `user_sub`.
const MAX_SUB_LEN: usize = 255;

/// Body of `POST …/members`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AddMember {
    /// Keycloak `sub` of the user (the user need not have signed in yet).
    #[schemars(regex(pattern = r"^\s*\S.*$"), length(min = 1, max = 255))]
    pub user_sub: String,
    /// Role to grant.
    pub role: Role,
}

/// Body of `PATCH …/members/{user_sub}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMember {
    /// New role.
    pub role: Role,
}

/// The trimmed `user_sub` of a new member (422 when empty or too long).
fn parse_user_sub(raw: &str) -> Result<String, ApiError> {
    let user_sub = raw.trim();
    if user_sub.is_empty() || user_sub.chars().count() > MAX_SUB_LEN {
        return Err(ApiError::invalid(
            "/user_sub",
            format!("must be 1 to {MAX_SUB_LEN} characters"),
        ));
    }
    Ok(user_sub.to_owned())
}

fn require_owner_for_owners(role: Role, touches_owner: bool) -> Result<(), ApiError> {
    if touches_owner && role != Role::Owner {
        return Err(ApiError::Forbidden(
            "only owners can add, change or remove owners".to_owned(),
        ));
    }
    Ok(())
}

async fn ensure_not_last_owner(
    db: &impl ConnectionTrait,
    target: &Membership,
) -> Result<(), ApiError> {
    if target.role() == Role::Owner && store::members::count_owners(db, target.org_id).await? <= 1 {
        return Err(ApiError::Conflict(
            "the last owner cannot be removed or demoted; make someone else owner first".to_owned(),
        ));
    }
    Ok(())
}

/// List members.
#[openapi(tag = "Members")]
#[get("/v1/orgs/<org_id>/members?<limit>&<cursor>")]
pub async fn list_members(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<String>>,
) -> Result<Json<Page<MemberView>>, ApiError> {
    let page = page_request::<String>(limit, cursor)?;
    let (rows, more) = store::members::list(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |m| m.user_sub.clone(),
        MemberView::from,
    )))
}

/// Add a member (admin+; owners only to add an owner).
#[openapi(tag = "Members")]
#[post("/v1/orgs/<org_id>/members", data = "<body>")]
pub async fn add_member(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<AddMember>,
) -> Result<Created<MemberView>, ApiError> {
    let AddMember { user_sub, role } = body.0;
    let user_sub = parse_user_sub(&user_sub)?;
    let txn = store::begin_write(&state.db).await?;
    let access = access.lock(&txn).await?;
    require_owner_for_owners(access.role, role == Role::Owner)?;
    let member = store::members::insert(&txn, org_id, &user_sub, role)
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                ApiError::Conflict(format!("{user_sub} is already a member"))
            } else {
                err.into()
            }
        })?;
    let view = MemberView::from(member);
    crate::audit::target("member", &user_sub);
    outbox::record(&txn, EventType::MemberAdded, org_id, org_id, &view).await?;
    txn.commit().await?;
    // This process forgets at once; others when their event hub reads the event.
    state.access_cache.invalidate();
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/members/{user_sub}"),
        body: view,
    })
}

/// Change a member's role (admin+; owners only when an owner is involved).
#[openapi(tag = "Members")]
#[patch("/v1/orgs/<org_id>/members/<user_sub>", data = "<body>")]
pub async fn update_member(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    user_sub: &str,
    body: JsonBody<UpdateMember>,
) -> Result<Json<MemberView>, ApiError> {
    let new_role = body.0.role;
    let txn = store::begin_write(&state.db).await?;
    let access = access.lock(&txn).await?;
    let target = store::members::find(&txn, org_id, user_sub)
        .await?
        .ok_or(ApiError::NotFound)?;
    require_owner_for_owners(
        access.role,
        target.role() == Role::Owner || new_role == Role::Owner,
    )?;
    if new_role != Role::Owner {
        ensure_not_last_owner(&txn, &target).await?;
    }
    let previous_role = target.role();
    let before = MemberView::from(target.clone());
    let member = store::members::update_role(&txn, target, new_role).await?;
    let view = MemberView::from(member);
    crate::audit::changes(Some(&before), Some(&view));
    let data = serde_json::json!({"member": &view, "previous_role": previous_role});
    outbox::record(&txn, EventType::MemberRoleChanged, org_id, org_id, data).await?;
    txn.commit().await?;
    // This process forgets at once; others when their event hub reads the event.
    state.access_cache.invalidate();
    Ok(Json(view))
}

/// Remove a member (admin+, or the member itself; owners only to remove an owner).
#[openapi(tag = "Members")]
#[delete("/v1/orgs/<org_id>/members/<user_sub>")]
pub async fn remove_member(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    user_sub: &str,
) -> Result<NoContent, ApiError> {
    let leaving = user_sub == access.caller.sub;
    let txn = store::begin_write(&state.db).await?;
    let access = access.lock(&txn).await?;
    if !leaving {
        access.require(Role::Admin)?;
    }
    let target = store::members::find(&txn, org_id, user_sub)
        .await?
        .ok_or(ApiError::NotFound)?;
    if !leaving {
        require_owner_for_owners(access.role, target.role() == Role::Owner)?;
    }
    ensure_not_last_owner(&txn, &target).await?;
    let view = MemberView::from(target.clone());
    store::members::delete(&txn, target).await?;
    // Team roles on projects come with org membership; leaving the org leaves its teams.
    store::teams::remove_from_all(&txn, org_id, user_sub).await?;
    outbox::record(&txn, EventType::MemberRemoved, org_id, org_id, &view).await?;
    txn.commit().await?;
    // This process forgets at once; others when their event hub reads the event.
    state.access_cache.invalidate();
    Ok(NoContent)
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings: list_members, add_member, update_member, remove_member]
}
