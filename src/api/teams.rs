//! `/v1/orgs/{org_id}/teams`: groups of members, and the roles teams hold on projects
//! (`/v1/orgs/{org_id}/projects/{project_id}/teams`). Admins manage both; a user's role on a
//! project is the highest of its org role and its teams' roles there.

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Created, NoContent};
use crate::app::AppState;
use crate::auth::{Admin, OrgAccess, Viewer};
use crate::domain::{DnsLabel, Role};
use crate::error::ApiError;
use crate::outbox::{self, EventType};
use crate::store::{self, is_unique_violation, teams::Team};
use chrono::{DateTime, Utc};
use rocket::serde::json::Json;
use rocket::{delete, get, patch, post, put, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use sea_orm::ConnectionTrait;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest team description.
const MAX_DESCRIPTION_LEN: usize = 1024;

/// Body of `POST …/teams`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTeam {
    /// DNS-1123 label, unique in the organization (it names the team's OIDC group
    /// `gantry:<org_id>:team:<name>`).
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: String,
    /// Free text.
    #[schemars(length(max = 1024))]
    pub description: Option<String>,
}

/// Body of `PATCH …/teams/{team_id}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTeam {
    /// New name.
    #[schemars(
        regex(pattern = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"),
        length(min = 1, max = 63)
    )]
    pub name: Option<String>,
    /// New description (`null` clears it).
    #[serde(default, deserialize_with = "super::body::present_or_null")]
    #[schemars(with = "Option<String>", length(max = 1024))]
    pub description: Option<Option<String>>,
}

/// Body of `PUT …/projects/{project_id}/teams/{team_id}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AssignTeam {
    /// The team's role on the project: `viewer`, `member` or `admin`.
    pub role: Role,
}

/// A team.
#[derive(Debug, Serialize, JsonSchema)]
pub struct TeamView {
    /// Team id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// DNS label.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The `sub`s of its members (on `GET …/teams/{team_id}` and writes; absent in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<String>>,
    /// When it was created.
    pub created_at: DateTime<Utc>,
    /// When it last changed.
    pub updated_at: DateTime<Utc>,
}

impl TeamView {
    fn of(team: Team, members: Option<Vec<String>>) -> Self {
        Self {
            id: team.id,
            org_id: team.org_id,
            name: team.name,
            description: team.description,
            members,
            created_at: team.created_at,
            updated_at: team.updated_at,
        }
    }
}

/// A team's role on a project.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectTeamView {
    /// The project.
    pub project_id: Uuid,
    /// The team.
    pub team_id: Uuid,
    /// The team's name.
    pub team: String,
    /// Its role on the project.
    pub role: Role,
}

/// The teams of a project.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ProjectTeamList {
    /// Every team assigned to the project, by name.
    pub items: Vec<ProjectTeamView>,
}

fn parse_name(raw: &str) -> Result<String, ApiError> {
    DnsLabel::parse(raw)
        .map(DnsLabel::into_string)
        .map_err(|err| ApiError::invalid("/name", err))
}

fn parse_description(raw: Option<String>) -> Result<Option<String>, ApiError> {
    match raw {
        Some(text) if text.chars().count() > MAX_DESCRIPTION_LEN => Err(ApiError::invalid(
            "/description",
            format!("must be at most {MAX_DESCRIPTION_LEN} characters"),
        )),
        other => Ok(other),
    }
}

fn name_taken(name: &str) -> impl Fn(sea_orm::DbErr) -> ApiError + '_ {
    move |err| {
        if is_unique_violation(&err) {
            ApiError::Conflict(format!("a team named {name} already exists"))
        } else {
            err.into()
        }
    }
}

async fn team_of(db: &impl ConnectionTrait, org_id: Uuid, team_id: Uuid) -> Result<Team, ApiError> {
    store::teams::find(db, org_id, team_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// List teams, by name.
#[openapi(tag = "Teams")]
#[get("/v1/orgs/<org_id>/teams?<limit>&<cursor>")]
pub async fn list_teams(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    limit: Limit,
    cursor: Strict<Cursor<String>>,
) -> Result<Json<Page<TeamView>>, ApiError> {
    let page = page_request::<String>(limit, cursor)?;
    let (rows, more) = store::teams::list(&state.db, org_id, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |t| t.name.clone(),
        |t| TeamView::of(t, None),
    )))
}

/// Create a team (admin+).
#[openapi(tag = "Teams")]
#[post("/v1/orgs/<org_id>/teams", data = "<body>")]
pub async fn create_team(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    body: JsonBody<CreateTeam>,
) -> Result<Created<TeamView>, ApiError> {
    let CreateTeam { name, description } = body.0;
    let name = parse_name(&name)?;
    let description = parse_description(description)?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let team = store::teams::insert(&txn, org_id, &name, description)
        .await
        .map_err(name_taken(&name))?;
    let view = TeamView::of(team, Some(Vec::new()));
    outbox::record(&txn, EventType::TeamCreated, org_id, view.id, &view).await?;
    txn.commit().await?;
    Ok(Created {
        location: format!("/v1/orgs/{org_id}/teams/{}", view.id),
        body: view,
    })
}

/// One team with its members.
#[openapi(tag = "Teams")]
#[get("/v1/orgs/<org_id>/teams/<team_id>")]
pub async fn get_team(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    team_id: Uuid,
) -> Result<Json<TeamView>, ApiError> {
    let team = team_of(&state.db, org_id, team_id).await?;
    let members = store::teams::members(&state.db, team.id).await?;
    Ok(Json(TeamView::of(team, Some(members))))
}

/// Rename a team or change its description (admin+).
#[openapi(tag = "Teams")]
#[patch("/v1/orgs/<org_id>/teams/<team_id>", data = "<body>")]
pub async fn update_team(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    team_id: Uuid,
    body: JsonBody<UpdateTeam>,
) -> Result<Json<TeamView>, ApiError> {
    let UpdateTeam { name, description } = body.0;
    let name = name.map(|n| parse_name(&n)).transpose()?;
    let description = description.map(parse_description).transpose()?;
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let team = team_of(&txn, org_id, team_id).await?;
    let before = TeamView::of(team.clone(), None);
    let taken = name.clone().unwrap_or_default();
    let team = store::teams::update(&txn, team, name, description)
        .await
        .map_err(name_taken(&taken))?;
    let members = store::teams::members(&txn, team.id).await?;
    let view = TeamView::of(team, Some(members));
    crate::audit::changes(Some(&before), Some(&view));
    outbox::record(&txn, EventType::TeamUpdated, org_id, view.id, &view).await?;
    txn.commit().await?;
    Ok(Json(view))
}

/// Delete a team (admin+): its members keep their org roles; the roles it held on projects go.
#[openapi(tag = "Teams")]
#[delete("/v1/orgs/<org_id>/teams/<team_id>")]
pub async fn delete_team(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    team_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let team = team_of(&txn, org_id, team_id).await?;
    let members = store::teams::members(&txn, team.id).await?;
    let projects = store::teams::delete(&txn, &team).await?;
    let view = TeamView::of(team, Some(members));
    crate::audit::changes(Some(&view), None::<()>);
    let data = serde_json::json!({"team": &view, "id": view.id, "projects": projects});
    outbox::record(&txn, EventType::TeamDeleted, org_id, view.id, data).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Put a member of the organization in a team (admin+; idempotent).
#[openapi(tag = "Teams")]
#[put("/v1/orgs/<org_id>/teams/<team_id>/members/<user_sub>")]
pub async fn add_team_member(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    team_id: Uuid,
    user_sub: &str,
) -> Result<Json<TeamView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let team = team_of(&txn, org_id, team_id).await?;
    if store::members::find(&txn, org_id, user_sub)
        .await?
        .is_none()
    {
        return Err(ApiError::invalid(
            "/user_sub",
            format!("{user_sub} is not a member of the organization; add them first"),
        ));
    }
    let added = store::teams::add_member(&txn, &team, user_sub).await?;
    let members = store::teams::members(&txn, team.id).await?;
    let view = TeamView::of(team, Some(members));
    if added {
        let data = serde_json::json!({"team": &view, "user_sub": user_sub});
        outbox::record(&txn, EventType::TeamMemberAdded, org_id, view.id, data).await?;
    }
    txn.commit().await?;
    Ok(Json(view))
}

/// Take a user out of a team (admin+).
#[openapi(tag = "Teams")]
#[delete("/v1/orgs/<org_id>/teams/<team_id>/members/<user_sub>")]
pub async fn remove_team_member(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    team_id: Uuid,
    user_sub: &str,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let team = team_of(&txn, org_id, team_id).await?;
    if !store::teams::remove_member(&txn, team.id, user_sub).await? {
        return Err(ApiError::NotFound);
    }
    let view = TeamView::of(team, None);
    let data = serde_json::json!({"team": &view, "user_sub": user_sub});
    outbox::record(&txn, EventType::TeamMemberRemoved, org_id, view.id, data).await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// The teams assigned to a project, with their roles.
#[openapi(tag = "Teams")]
#[get("/v1/orgs/<org_id>/projects/<project_id>/teams")]
pub async fn list_project_teams(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Uuid,
) -> Result<Json<ProjectTeamList>, ApiError> {
    store::projects::find_live(&state.db, org_id, project_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let items = store::teams::grants_on(&state.db, project_id)
        .await?
        .into_iter()
        .map(|(team, role)| ProjectTeamView {
            project_id,
            team_id: team.id,
            team: team.name,
            role,
        })
        .collect();
    Ok(Json(ProjectTeamList { items }))
}

/// Give a team a role on a project, or change it (admin+). The project's namespace gets a
/// RoleBinding for the team's group.
#[openapi(tag = "Teams")]
#[put(
    "/v1/orgs/<org_id>/projects/<project_id>/teams/<team_id>",
    data = "<body>"
)]
pub async fn assign_project_team(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    project_id: Uuid,
    team_id: Uuid,
    body: JsonBody<AssignTeam>,
) -> Result<Json<ProjectTeamView>, ApiError> {
    let role = body.0.role;
    if role == Role::Owner {
        return Err(ApiError::invalid(
            "/role",
            "a team's role on a project is viewer, member or admin",
        ));
    }
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    store::projects::find_live(&txn, org_id, project_id)
        .await?
        .ok_or(ApiError::NotFound)?;
    let team = team_of(&txn, org_id, team_id).await?;
    let grant = store::teams::assign(&txn, &team, project_id, role).await?;
    let view = ProjectTeamView {
        project_id,
        team_id: team.id,
        team: team.name,
        role: grant.role(),
    };
    let data = serde_json::json!({
        "id": team.id, "project_id": project_id, "team": &view.team, "role": role,
    });
    outbox::record(&txn, EventType::TeamProjectAssigned, org_id, team.id, data).await?;
    txn.commit().await?;
    Ok(Json(view))
}

/// Remove a team's role on a project (admin+).
#[openapi(tag = "Teams")]
#[delete("/v1/orgs/<org_id>/projects/<project_id>/teams/<team_id>")]
pub async fn unassign_project_team(
    state: &State<AppState>,
    access: OrgAccess<Admin>,
    org_id: Uuid,
    project_id: Uuid,
    team_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    access.recheck(&txn).await?;
    let team = team_of(&txn, org_id, team_id).await?;
    if !store::teams::unassign(&txn, project_id, team.id).await? {
        return Err(ApiError::NotFound);
    }
    let data = serde_json::json!({"id": team.id, "project_id": project_id, "team": &team.name});
    outbox::record(
        &txn,
        EventType::TeamProjectUnassigned,
        org_id,
        team.id,
        data,
    )
    .await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![settings:
        list_teams, create_team, get_team, update_team, delete_team,
        add_team_member, remove_team_member,
        list_project_teams, assign_project_team, unassign_project_team
    ]
}
