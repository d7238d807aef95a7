//! `/v1/orgs/{org_id}/projects`: projects (namespaces in a workspace) and their versioned graph.

use super::body::JsonBody;
use super::headers::{Header, HeaderSpec};
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Created, JsonText, NoContent, Tagged};
use crate::app::AppState;
use crate::auth::{Member, OrgAccess, Viewer};
use crate::domain::DnsLabel;
use crate::error::ApiError;
use crate::outbox::{self, EventType};
use crate::resources::project;
pub use crate::resources::project::{ProjectQuota, ProjectView};
use crate::store::{self, projects::Project};
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `POST …/projects`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// DNS-1123 label, unique in the workspace.
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Workspace of the same organization.
    pub workspace_id: Uuid,
    /// The namespace's quota (default `{"cpu": "2", "memory": "4Gi"}`).
    pub quota: Option<ProjectQuota>,
}

/// Body of `PATCH …/projects/{project_id}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    /// New name.
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: Option<String>,
}

/// The current graph and its version.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GraphView {
    /// Version number (0 for a new project).
    pub version: i32,
    /// The graph: `{"nodes": [...], "edges": [...]}`.
    #[schemars(with = "crate::domain::graph::Graph")]
    pub graph: serde_json::Value,
}

/// Body of `PUT …/graph`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PutGraph {
    /// The new graph: `{"nodes": [...], "edges": [...]}`.
    #[schemars(with = "crate::domain::graph::Graph")]
    pub graph: serde_json::Value,
}

/// One stored graph version without its body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GraphVersionSummary {
    /// Version number.
    pub version: i32,
    /// `sub` of whoever stored it.
    pub created_by: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// One stored graph version with its body.
#[derive(Debug, Serialize, JsonSchema)]
pub struct GraphVersionView {
    /// Version number.
    pub version: i32,
    /// The graph as stored.
    #[schemars(with = "crate::domain::graph::Graph")]
    pub graph: serde_json::Value,
    /// `sub` of whoever stored it.
    pub created_by: String,
    /// When it was stored.
    pub created_at: DateTime<Utc>,
}

/// The entity tag of a graph version.
fn etag(version: i32) -> String {
    format!("\"{version}\"")
}

/// The `If-Match` header of a graph replacement.
pub struct IfMatchHeader;

impl HeaderSpec for IfMatchHeader {
    const NAME: &'static str = "If-Match";
    const DESCRIPTION: &'static str =
        "The `ETag` of the graph being replaced. Missing: 428; stale: 412.";
    const REQUIRED: bool = true;
}

/// The `If-Match` request header, if present.
pub type IfMatch = Header<IfMatchHeader>;

impl IfMatch {
    /// 428 without the header, 412 unless it names `version`.
    fn require(&self, version: i32) -> Result<(), ApiError> {
        if self.value.is_none() {
            return Err(ApiError::PreconditionRequired(
                "send If-Match with the graph's current ETag".to_owned(),
            ));
        }
        if !self.matches(version) {
            return Err(ApiError::PreconditionFailed(format!(
                "the graph changed; the current ETag is {}",
                etag(version)
            )));
        }
        Ok(())
    }

    /// True when the header names `version` (or is `*`).
    fn matches(&self, version: i32) -> bool {
        let Some(value) = &self.value else {
            return false;
        };
        let wanted = etag(version);
        value.split(',').map(str::trim).any(|tag| {
            let tag = tag.strip_prefix("W/").unwrap_or(tag);
            tag == "*" || tag == wanted || tag == version.to_string()
        })
    }
}

async fn live_project(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    project_id: Uuid,
) -> Result<Project, ApiError> {
    store::projects::find_live(db, org_id, project_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Create a project in a workspace (member+).
#[openapi(tag = "Projects")]
#[post("/v1/orgs/<org_id>/projects", data = "<body>")]
pub async fn create_project(
    state: &State<AppState>,
    access: OrgAccess<Member>,
    org_id: Uuid,
    body: JsonBody<CreateProject>,
) -> Result<Created<ProjectView>, ApiError> {
    let CreateProject {
        name,
        workspace_id,
        quota,
    } = body.0;
    let name = DnsLabel::parse(&name).map_err(|e| ApiError::invalid("/name", e))?;
    let quota = quota
        .unwrap_or_else(ProjectQuota::default_quota)
        .checked()?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let view = project::create(
        &txn,
        org_id,
        workspace_id,
        &name,
        &quota,
        &access.caller.sub,
        state.limits.projects_per_workspace,
    )
    .await?;
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/projects/{}", view.id),
        body: view,
    })
}

/// List projects, optionally of one workspace.
#[openapi(tag = "Projects")]
#[get("/v1/orgs/<org_id>/projects?<workspace_id>&<limit>&<cursor>")]
pub async fn list_projects(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    workspace_id: Strict<Uuid>,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<JsonText<Page<ProjectView>>, ApiError> {
    let workspace_id = workspace_id.get("workspace_id")?;
    let page = page_request(limit, cursor)?;
    // Platform UIs poll this list: pages are remembered until a project of the org changes.
    let key = (org_id, workspace_id, page.limit, page.after);
    if let Some(json) = state.project_lists.page(&key) {
        return Ok(JsonText::new(json));
    }
    let ticket = state.project_lists.ticket(org_id);
    let (rows, more) = store::projects::list(&state.db, org_id, workspace_id, &page).await?;
    let answer = Page::from_rows(rows, more, |p| p.id, ProjectView::from);
    let json: std::sync::Arc<str> = serde_json::to_string(&answer)
        .map_err(|err| ApiError::Internal(err.into()))?
        .into();
    if let Some(ticket) = ticket {
        state.project_lists.remember(ticket, key, json.clone());
    }
    Ok(JsonText::new(json))
}

/// Get one project.
#[openapi(tag = "Projects")]
#[get("/v1/orgs/<org_id>/projects/<project_id>")]
pub async fn get_project(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Uuid,
) -> Result<Json<ProjectView>, ApiError> {
    Ok(Json(
        live_project(&state.db, org_id, project_id).await?.into(),
    ))
}

/// Rename a project (member+).
#[openapi(tag = "Projects")]
#[patch("/v1/orgs/<org_id>/projects/<project_id>", data = "<body>")]
pub async fn update_project(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    project_id: Uuid,
    body: JsonBody<UpdateProject>,
) -> Result<Json<ProjectView>, ApiError> {
    let name = body
        .0
        .name
        .map(|n| DnsLabel::parse(&n).map_err(|e| ApiError::invalid("/name", e)))
        .transpose()?;
    let txn = store::begin_write(&state.db).await?;
    let project = live_project(&txn, org_id, project_id).await?;
    let view = match name {
        Some(name) if name.as_str() != project.name => {
            let project = store::projects::rename(&txn, project, name.as_str().to_owned())
                .await
                .map_err(project::name_taken(name.as_str()))?;
            let view = ProjectView::from(project);
            outbox::record(&txn, EventType::ProjectUpdated, org_id, view.id, &view).await?;
            view
        }
        _ => ProjectView::from(project),
    };
    txn.commit().await?;
    Ok(Json(view))
}

/// Delete a project (member+).
#[openapi(tag = "Projects")]
#[delete("/v1/orgs/<org_id>/projects/<project_id>")]
pub async fn delete_project(
    state: &State<AppState>,
    _access: OrgAccess<Member>,
    org_id: Uuid,
    project_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let project = live_project(&txn, org_id, project_id).await?;
    let project = store::projects::soft_delete(&txn, project).await?;
    let view = ProjectView::from(project);
    outbox::record(&txn, EventType::ProjectDeleted, org_id, view.id, &view).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// The current graph, with its version as `ETag`.
#[openapi(tag = "Projects")]
#[get("/v1/orgs/<org_id>/projects/<project_id>/graph")]
pub async fn get_graph(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Uuid,
) -> Result<Tagged<GraphView>, ApiError> {
    let project = live_project(&state.db, org_id, project_id).await?;
    Ok(Tagged {
        etag: etag(project.graph_version),
        body: GraphView {
            version: project.graph_version,
            graph: project.graph,
        },
    })
}

/// Store a new graph version (member+ in the organization, or through a team's role on the
/// project). `If-Match` must carry the current `ETag`.
#[openapi(tag = "Projects")]
#[put("/v1/orgs/<org_id>/projects/<project_id>/graph", data = "<body>")]
pub async fn put_graph(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Uuid,
    if_match: IfMatch,
    body: JsonBody<PutGraph>,
) -> Result<Tagged<GraphView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    // Locked: a concurrent PUT waits, then sees this one's version (`If-Match: *` succeeds,
    // a stale version gets 412).
    let project = store::projects::find_live_for_update(&txn, org_id, project_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    access
        .require_on_project(&txn, project.id, crate::domain::Role::Member)
        .await?;
    if_match.require(project.graph_version)?;
    let updated = project::replace_graph(
        &txn,
        &project,
        body.0.graph,
        &access.caller.sub,
        state.limits.graph_versions_kept,
    )
    .await?;
    txn.commit().await?;
    Ok(Tagged {
        etag: etag(updated.graph_version),
        body: GraphView {
            version: updated.graph_version,
            graph: updated.graph,
        },
    })
}

/// Every stored version of the graph, oldest first.
#[openapi(tag = "Projects")]
#[get("/v1/orgs/<org_id>/projects/<project_id>/graph/versions?<limit>&<cursor>")]
pub async fn list_graph_versions(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<i32>>,
) -> Result<Json<Page<GraphVersionSummary>>, ApiError> {
    let page = page_request(limit, cursor)?;
    let project = live_project(&state.db, org_id, project_id).await?;
    let (rows, more) = store::projects::list_versions(&state.db, project.id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |v| v.version,
        |v| GraphVersionSummary {
            version: v.version,
            created_by: v.created_by,
            created_at: v.created_at,
        },
    )))
}

/// One stored version of the graph.
#[openapi(tag = "Projects")]
#[get("/v1/orgs/<org_id>/projects/<project_id>/graph/versions/<version>")]
pub async fn get_graph_version(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Uuid,
    version: i32,
) -> Result<Tagged<GraphVersionView>, ApiError> {
    let project = live_project(&state.db, org_id, project_id).await?;
    let stored = store::projects::find_version(&state.db, project.id, version)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(Tagged {
        etag: etag(stored.version),
        body: GraphVersionView {
            version: stored.version,
            graph: stored.graph,
            created_by: stored.created_by,
            created_at: stored.created_at,
        },
    })
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_project,
        list_projects,
        get_project,
        update_project,
        delete_project,
        get_graph,
        put_graph,
        list_graph_versions,
        get_graph_version
    ]
}
