//! `/v1/orgs/{org_id}/workspaces/{workspace_id}/backup-policies`, `…/backups` and
//! `…/restores`: encrypted, deduplicated backups of a workspace's objects. The API records
//! intent (`pending`) with its command event; the backup executor does the work.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Accepted, Created, NoContent};
use crate::app::AppState;
use crate::auth::{Admin, OrgAccess, Viewer};
use crate::error::ApiError;
use crate::resources::backup::{
    self, BackupView, CreateBackup, CreatePolicy, CreateRestore, PolicyView, RestoreView,
    UpdatePolicy,
};
use crate::store::backups::{self as backup_store, Backup, BackupFilter, BackupStatus};
use crate::store::{self, workspaces::Workspace};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use sea_orm::ConnectionTrait;
use uuid::Uuid;

/// A live workspace of the organization, or 404.
async fn live_workspace(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
) -> Result<Workspace, ApiError> {
    store::workspaces::find_live(db, org_id, workspace_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A live policy of the workspace, or 404.
async fn live_policy(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    policy_id: Uuid,
) -> Result<backup_store::BackupPolicy, ApiError> {
    live_workspace(db, org_id, workspace_id).await?;
    backup_store::find_policy(db, org_id, workspace_id, policy_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// A live backup of the workspace, or 404.
async fn live_backup(
    db: &impl ConnectionTrait,
    org_id: Uuid,
    workspace_id: Uuid,
    backup_id: Uuid,
) -> Result<Backup, ApiError> {
    live_workspace(db, org_id, workspace_id).await?;
    backup_store::find_backup(db, org_id, workspace_id, backup_id)
        .await?
        .ok_or(ApiError::NotFound)
}

fn workspace_path(org_id: Uuid, workspace_id: Uuid) -> String {
    format!("/v1/orgs/{org_id}/workspaces/{workspace_id}")
}

/// Create a backup policy (admin+; the workspace must be on the dedicated plan).
#[openapi(tag = "Backups")]
#[post(
    "/v1/orgs/<org_id>/workspaces/<workspace_id>/backup-policies",
    data = "<body>"
)]
pub async fn create_backup_policy(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
    body: JsonBody<CreatePolicy>,
) -> Result<Created<PolicyView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let workspace = live_workspace(&txn, org_id, workspace_id).await?;
    let view = backup::create_policy(&txn, &workspace, body.0).await?;
    crate::audit::target("backup_policy", view.id);
    txn.commit().await?;
    Ok(Created {
        location: format!(
            "{}/backup-policies/{}",
            workspace_path(org_id, workspace_id),
            view.id
        ),
        body: view,
    })
}

/// List the workspace's backup policies.
#[openapi(tag = "Backups")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>/backup-policies?<limit>&<cursor>")]
pub async fn list_backup_policies(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<PolicyView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    live_workspace(&state.db, org_id, workspace_id).await?;
    let (rows, more) = backup_store::list_policies(&state.db, org_id, workspace_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |p| p.id,
        PolicyView::from,
    )))
}

/// Get one backup policy.
#[openapi(tag = "Backups")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>/backup-policies/<policy_id>")]
pub async fn get_backup_policy(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Uuid,
    policy_id: Uuid,
) -> Result<Json<PolicyView>, ApiError> {
    let policy = live_policy(&state.db, org_id, workspace_id, policy_id).await?;
    Ok(Json(policy.into()))
}

/// Change a backup policy (admin+); the result is checked as a whole.
#[openapi(tag = "Backups")]
#[patch(
    "/v1/orgs/<org_id>/workspaces/<workspace_id>/backup-policies/<policy_id>",
    data = "<body>"
)]
pub async fn update_backup_policy(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
    policy_id: Uuid,
    body: JsonBody<UpdatePolicy>,
) -> Result<Json<PolicyView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let policy = live_policy(&txn, org_id, workspace_id, policy_id).await?;
    let view = backup::update_policy(&txn, policy, body.0).await?;
    txn.commit().await?;
    Ok(Json(view))
}

/// Delete a backup policy (admin+, soft); its backups stay until deleted or expired.
#[openapi(tag = "Backups")]
#[delete("/v1/orgs/<org_id>/workspaces/<workspace_id>/backup-policies/<policy_id>")]
pub async fn delete_backup_policy(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
    policy_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let policy = live_policy(&txn, org_id, workspace_id, policy_id).await?;
    backup_store::delete_policy(&txn, policy).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Request a backup now (admin+): answers 202 with status `pending`.
#[openapi(tag = "Backups")]
#[post("/v1/orgs/<org_id>/workspaces/<workspace_id>/backups", data = "<body>")]
pub async fn create_backup(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
    body: JsonBody<CreateBackup>,
) -> Result<Accepted<BackupView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let workspace = live_workspace(&txn, org_id, workspace_id).await?;
    backup::require_dedicated(&workspace)?;
    if let Some(policy_id) = body.0.policy_id {
        backup_store::find_policy(&txn, org_id, workspace_id, policy_id)
            .await?
            .ok_or_else(|| ApiError::invalid("/policy_id", "no such policy in this workspace"))?;
    }
    let view = backup::request_backup(
        &txn,
        &workspace,
        body.0.policy_id,
        None,
        &state.backup_storage,
    )
    .await?;
    txn.commit().await?;
    Ok(Accepted {
        location: format!(
            "{}/backups/{}",
            workspace_path(org_id, workspace_id),
            view.id
        ),
        body: view,
    })
}

/// The list filter from the raw query parameters (a bad value is `400`).
fn backup_filter(status: Option<&str>, policy_id: Option<&str>) -> Result<BackupFilter, ApiError> {
    let status = match status {
        None => None,
        Some(raw) => Some(
            <BackupStatus as sea_orm::Iterable>::iter()
                .find(|s| s.as_str() == raw)
                .ok_or_else(|| ApiError::BadRequest(format!("status {raw:?} is not a status")))?,
        ),
    };
    let policy_id = match policy_id {
        None => None,
        Some(raw) => Some(
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::BadRequest(format!("policy_id {raw:?} is not a UUID")))?,
        ),
    };
    Ok(BackupFilter { status, policy_id })
}

/// List the workspace's backups, newest first; filter by `status` and `policy_id`.
#[openapi(tag = "Backups")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>/backups?<status>&<policy_id>&<limit>&<cursor>")]
#[allow(clippy::too_many_arguments)]
pub async fn list_backups(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Uuid,
    status: Strict<&str>,
    policy_id: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<BackupView>>, ApiError> {
    let status = status.get("status")?;
    let policy_id = policy_id.get("policy_id")?;
    let page = page_request(limit, cursor)?;
    let filter = backup_filter(status, policy_id)?;
    live_workspace(&state.db, org_id, workspace_id).await?;
    let (rows, more) =
        backup_store::list_backups(&state.db, org_id, workspace_id, &filter, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |b| b.id,
        BackupView::from,
    )))
}

/// Get one backup.
#[openapi(tag = "Backups")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>/backups/<backup_id>")]
pub async fn get_backup(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Uuid,
    backup_id: Uuid,
) -> Result<Json<BackupView>, ApiError> {
    let backup = live_backup(&state.db, org_id, workspace_id, backup_id).await?;
    Ok(Json(backup.into()))
}

/// Delete a backup (admin+, soft); its chunks go once no other backup uses them. 409 while
/// it is pending or running.
#[openapi(tag = "Backups")]
#[delete("/v1/orgs/<org_id>/workspaces/<workspace_id>/backups/<backup_id>")]
pub async fn delete_backup(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
    backup_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let backup = live_backup(&txn, org_id, workspace_id, backup_id).await?;
    backup::delete_backup(&txn, backup).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Restore a backup (admin+): answers 202 with the restore, status `pending`. The target is
/// a live workspace of the same organization (default: the backup's own).
#[openapi(tag = "Backups")]
#[post(
    "/v1/orgs/<org_id>/workspaces/<workspace_id>/backups/<backup_id>/restore",
    data = "<body>"
)]
pub async fn restore_backup(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
    backup_id: Uuid,
    body: JsonBody<CreateRestore>,
) -> Result<Accepted<RestoreView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let backup = live_backup(&txn, org_id, workspace_id, backup_id).await?;
    let target_id = body.0.target_workspace_id.unwrap_or(workspace_id);
    let target = store::workspaces::find_live(&txn, org_id, target_id)
        .await?
        .ok_or_else(|| {
            ApiError::invalid(
                "/target_workspace_id",
                "no such workspace in this organization",
            )
        })?;
    let view = backup::request_restore(&txn, &backup, &target, body.0).await?;
    txn.commit().await?;
    Ok(Accepted {
        location: format!(
            "{}/restores/{}",
            workspace_path(org_id, workspace_id),
            view.id
        ),
        body: view,
    })
}

/// Get one restore (addressed under the backup's workspace).
#[openapi(tag = "Backups")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>/restores/<restore_id>")]
pub async fn get_restore(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Uuid,
    restore_id: Uuid,
) -> Result<Json<RestoreView>, ApiError> {
    live_workspace(&state.db, org_id, workspace_id).await?;
    let restore = backup_store::find_restore(&state.db, org_id, workspace_id, restore_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(restore.into()))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_backup_policy,
        list_backup_policies,
        get_backup_policy,
        update_backup_policy,
        delete_backup_policy,
        create_backup,
        list_backups,
        get_backup,
        delete_backup,
        restore_backup,
        get_restore
    ]
}
