//! `/v1/orgs/{org_id}/workspaces`: virtual clusters. The API records intent (`pending`,
//! `deleting`); the vCluster provisioner does the work.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::Accepted;
use crate::app::AppState;
use crate::auth::{Admin, Member, OrgAccess, Viewer};
use crate::domain::DnsLabel;
use crate::error::ApiError;
use crate::outbox::{self, EventType};
use crate::resources::workspace;
pub use crate::resources::workspace::{Condition, Plan, Progress, WorkspaceStatus, WorkspaceView};
use crate::store::{self, is_unique_violation, workspaces::Workspace};
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use sea_orm::ConnectionTrait;
use serde::Deserialize;
use uuid::Uuid;

/// Body of `POST …/workspaces`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWorkspace {
    /// DNS-1123 label, unique in the organization.
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// `shared` or `dedicated`.
    pub plan: Plan,
}

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

/// 202 with the workspace's location.
fn accepted(org_id: Uuid, view: WorkspaceView) -> Accepted<WorkspaceView> {
    Accepted {
        location: format!("/v1/orgs/{org_id}/workspaces/{}", view.id),
        body: view,
    }
}

/// A change of state an admin requests on an existing workspace.
enum Transition {
    /// To `deleting`.
    Delete,
    /// From `failed` back to `pending`.
    Retry,
}

/// Applies `transition` to the live workspace in one write transaction; answers 202.
async fn transition(
    state: &AppState,
    org_id: Uuid,
    workspace_id: Uuid,
    transition: Transition,
) -> Result<Accepted<WorkspaceView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let workspace = live_workspace(&txn, org_id, workspace_id).await?;
    let view = match transition {
        Transition::Delete => workspace::request_deletion(&txn, workspace).await?,
        Transition::Retry => workspace::retry(&txn, workspace).await?,
    };
    txn.commit().await?;
    Ok(accepted(org_id, view))
}

/// Request a workspace (admin+): answers 202 with status `pending`.
#[openapi(tag = "Workspaces")]
#[post("/v1/orgs/<org_id>/workspaces", data = "<body>")]
pub async fn create_workspace(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<CreateWorkspace>,
) -> Result<Accepted<WorkspaceView>, ApiError> {
    let CreateWorkspace { name, plan } = body.0;
    let name = DnsLabel::parse(&name).map_err(|e| ApiError::invalid("/name", e))?;
    let txn = store::begin_write(&state.db).await?;
    // The organization row is locked until commit: a concurrent DELETE of the organization
    // waits (and then sees this workspace), and concurrent creates count each other.
    access.lock(&txn).await?;
    let max = state.limits.workspaces_per_org;
    if store::workspaces::count_live(&txn, org_id).await? >= max {
        return Err(ApiError::QuotaExceeded(format!(
            "an organization may have at most {max} workspaces"
        )));
    }
    let workspace = store::workspaces::insert(&txn, org_id, name.as_str(), plan)
        .await
        .map_err(|err| {
            if is_unique_violation(&err) {
                ApiError::Conflict(format!("a workspace named {name} already exists"))
            } else {
                err.into()
            }
        })?;
    let view = WorkspaceView::from(workspace);
    outbox::record(&txn, EventType::WorkspaceRequested, org_id, view.id, &view).await?;
    txn.commit().await?;
    Ok(accepted(org_id, view))
}

/// List workspaces.
#[openapi(tag = "Workspaces")]
#[get("/v1/orgs/<org_id>/workspaces?<limit>&<cursor>")]
pub async fn list_workspaces(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<WorkspaceView>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let (rows, more) = store::workspaces::list(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |w| w.id,
        WorkspaceView::from,
    )))
}

/// Get one workspace.
#[openapi(tag = "Workspaces")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>")]
pub async fn get_workspace(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Uuid,
) -> Result<Json<WorkspaceView>, ApiError> {
    let workspace = live_workspace(&state.db, org_id, workspace_id).await?;
    Ok(Json(workspace.into()))
}

/// Request deletion (admin+): answers 202 with status `deleting`. Repeating it is harmless.
#[openapi(tag = "Workspaces")]
#[delete("/v1/orgs/<org_id>/workspaces/<workspace_id>")]
pub async fn delete_workspace(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
) -> Result<Accepted<WorkspaceView>, ApiError> {
    transition(state, org_id, workspace_id, Transition::Delete).await
}

/// Retry a failed workspace (admin+): answers 202 with status `pending` and requests it again;
/// 409 unless it is `failed`.
#[openapi(tag = "Workspaces")]
#[post("/v1/orgs/<org_id>/workspaces/<workspace_id>/retry")]
pub async fn retry_workspace(
    state: &State<AppState>,
    _access: OrgAccess<Admin>,
    org_id: Uuid,
    workspace_id: Uuid,
) -> Result<Accepted<WorkspaceView>, ApiError> {
    transition(state, org_id, workspace_id, Transition::Retry).await
}

/// A kubeconfig for a ready workspace (member+): the cluster is the vCluster's endpoint with its
/// CA, the user runs the OIDC exec plugin (`kubectl oidc-login get-token`) against the
/// configured issuer — never a static credential. 409 unless the workspace is `ready`.
#[openapi(tag = "Workspaces")]
#[get("/v1/orgs/<org_id>/workspaces/<workspace_id>/kubeconfig")]
pub async fn get_kubeconfig(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    workspace_id: Uuid,
) -> Result<super::responses::Yaml, ApiError> {
    let workspace = live_workspace(&state.db, org_id, workspace_id).await?;
    let (Some(endpoint), Some(ca), true) = (
        workspace.kube_endpoint.as_deref(),
        workspace.kube_ca.as_deref(),
        workspace.status == store::workspaces::WorkspaceStatus::Ready,
    ) else {
        return Err(ApiError::Conflict(format!(
            "workspace is {}; a kubeconfig exists once it is ready",
            workspace.status
        )));
    };
    Ok(super::responses::Yaml(
        crate::workers::vcluster::kubeconfig(
            &workspace.name,
            endpoint,
            ca,
            &state.kubeconfig_issuer,
            &state.kubeconfig_client_id,
        )
        .map_err(anyhow::Error::from)?,
    ))
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_workspace,
        list_workspaces,
        get_workspace,
        delete_workspace,
        retry_workspace,
        get_kubeconfig
    ]
}
