//! `/v1/orgs/{org_id}/codegen-jobs`: generating Kubernetes manifests from a project's graph.
//! The API records the job (`pending`) with its `codegen.requested` event; the codegen runner
//! does the work and stores the files, which are served here one by one or as a `.tar.gz`.

mod download;
mod submit;

use super::body::JsonBody;
use super::pagination::{page_request, Cursor, Limit, Page, Strict};
use super::responses::{Accepted, NoContent};
use crate::app::AppState;
use crate::auth::{OrgAccess, Viewer};
use crate::domain::Role;
use crate::error::ApiError;
pub use crate::resources::codegen::{
    CodegenError, CodegenJobView, CodegenStatus, CodegenTarget, Engine, GitTargetSpec, Timings,
};
use crate::store::{self, codegen::CodegenJob};
pub use download::FileDownload;
use rocket::serde::json::Json;
use rocket::{delete, get, post, State};
use rocket_okapi::okapi::openapi3::OpenApi;
use rocket_okapi::settings::OpenApiSettings;
use rocket_okapi::{openapi, openapi_get_routes_spec};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Body of `POST …/codegen-jobs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCodegenJob {
    /// The project whose graph is generated.
    pub project_id: Uuid,
    /// The graph version (default: the project's current version).
    #[serde(default)]
    pub graph_version: Option<i32>,
    /// `templates` (default) or `llm`.
    #[serde(default)]
    pub engine: Option<Engine>,
    /// Delivery target.
    #[serde(default)]
    pub target: Option<CodegenTarget>,
}

/// One generated file.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct ArtifactView {
    /// Relative path (`deployment-web.yaml`).
    pub path: String,
    /// Media type.
    pub media_type: String,
    /// Size in bytes.
    pub size: i64,
    /// Lower-case hex SHA-256 of the content.
    pub sha256: String,
}

/// The files of a job.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ArtifactList {
    /// Every file, by path.
    pub items: Vec<ArtifactView>,
}

/// Submit a codegen job (member+, or a team's member role on the project): answers 202 with
/// status `pending`.
#[openapi(tag = "Codegen")]
#[post("/v1/orgs/<org_id>/codegen-jobs", data = "<body>")]
pub async fn create_codegen_job(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    body: JsonBody<CreateCodegenJob>,
) -> Result<Accepted<CodegenJobView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let access = access.lock(&txn).await?;
    access
        .require_on_project(&txn, body.0.project_id, Role::Member)
        .await?;
    let max = state.limits.codegen_pending_per_org;
    if store::codegen::count_unfinished(&txn, org_id).await? >= max {
        return Err(ApiError::InFlightQuotaExceeded(format!(
            "at most {max} codegen jobs may be pending or running per organization; \
             wait for some to finish"
        )));
    }
    let view = submit::submit(state, &txn, org_id, &access.caller.sub, body.0).await?;
    txn.commit().await?;
    Ok(Accepted {
        location: format!("/v1/orgs/{org_id}/codegen-jobs/{}", view.id),
        body: view,
    })
}

/// List codegen jobs, oldest first; filter by `project_id` and `status`.
#[openapi(tag = "Codegen")]
#[get("/v1/orgs/<org_id>/codegen-jobs?<project_id>&<status>&<limit>&<cursor>")]
pub async fn list_codegen_jobs(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    project_id: Strict<&str>,
    status: Strict<&str>,
    limit: Limit,
    cursor: Strict<Cursor<Uuid>>,
) -> Result<Json<Page<CodegenJobView>>, ApiError> {
    let project_id = project_id.get("project_id")?;
    let status = status.get("status")?;
    let page = page_request(limit, cursor)?;
    let filter = submit::list_filter(project_id, status)?;
    let (rows, more) = store::codegen::list(&state.db, org_id, &filter, &page).await?;
    Ok(Json(Page::from_rows(
        rows,
        more,
        |j| j.id,
        CodegenJobView::from,
    )))
}

/// Loads a live job of the organization.
async fn live_job(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<CodegenJob, ApiError> {
    store::codegen::find_live(db, org_id, job_id)
        .await?
        .ok_or(ApiError::NotFound)
}

/// Like [`live_job`], with the row locked for the caller's write transaction.
async fn live_job_for_update(
    db: &impl sea_orm::ConnectionTrait,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<CodegenJob, ApiError> {
    store::codegen::find_for_update(db, job_id)
        .await?
        .filter(|job| job.org_id == org_id && job.deleted_at.is_none())
        .ok_or(ApiError::NotFound)
}

/// Get one codegen job.
#[openapi(tag = "Codegen")]
#[get("/v1/orgs/<org_id>/codegen-jobs/<job_id>")]
pub async fn get_codegen_job(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<Json<CodegenJobView>, ApiError> {
    let job = live_job(&state.db, org_id, job_id).await?;
    Ok(Json(job.into()))
}

/// Cancel a job (member+): a pending job is cancelled at once and never runs; a running one
/// stops at its next step. 409 when it already finished.
#[openapi(tag = "Codegen")]
#[post("/v1/orgs/<org_id>/codegen-jobs/<job_id>/cancel")]
pub async fn cancel_codegen_job(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<Accepted<CodegenJobView>, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let job = live_job_for_update(&txn, org_id, job_id).await?;
    access
        .require_on_project(&txn, job.project_id, Role::Member)
        .await?;
    let view = crate::resources::codegen::request_cancel(&txn, job).await?;
    txn.commit().await?;
    Ok(Accepted {
        location: format!("/v1/orgs/{org_id}/codegen-jobs/{job_id}"),
        body: view,
    })
}

/// Delete a job (member+; soft): it disappears from the API with its artifacts; a pending or
/// running job is stopped as by cancel.
#[openapi(tag = "Codegen")]
#[delete("/v1/orgs/<org_id>/codegen-jobs/<job_id>")]
pub async fn delete_codegen_job(
    state: &State<AppState>,
    access: OrgAccess<Viewer>,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<NoContent, ApiError> {
    let txn = store::begin_write(&state.db).await?;
    let job = live_job_for_update(&txn, org_id, job_id).await?;
    access
        .require_on_project(&txn, job.project_id, Role::Member)
        .await?;
    store::codegen::transition(
        &txn,
        job,
        store::codegen::Transition {
            cancel_requested: true,
            deleted: true,
            ..Default::default()
        },
    )
    .await?;
    txn.commit().await?;
    Ok(NoContent)
}

/// List a job's files (path, media type, size, sha256).
#[openapi(tag = "Codegen")]
#[get("/v1/orgs/<org_id>/codegen-jobs/<job_id>/artifacts")]
pub async fn list_codegen_artifacts(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<Json<ArtifactList>, ApiError> {
    let job = live_job(&state.db, org_id, job_id).await?;
    let items = store::codegen::list_artifacts(&state.db, job.id)
        .await?
        .into_iter()
        .map(|a| ArtifactView {
            path: a.path,
            media_type: a.media_type,
            size: a.size,
            sha256: a.sha256,
        })
        .collect();
    Ok(Json(ArtifactList { items }))
}

/// Download one file of a job.
#[openapi(tag = "Codegen")]
#[get("/v1/orgs/<org_id>/codegen-jobs/<job_id>/artifacts/<path>")]
pub async fn get_codegen_artifact(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    job_id: Uuid,
    path: &str,
) -> Result<FileDownload, ApiError> {
    let job = live_job(&state.db, org_id, job_id).await?;
    let artifact = store::codegen::get_artifact(&state.db, job.id, path)
        .await?
        .ok_or(ApiError::NotFound)?;
    Ok(FileDownload {
        content_type: artifact.media_type,
        file_name: None,
        sha256: Some(artifact.sha256),
        body: artifact.content,
    })
}

/// Download every file of a job as one `.tar.gz`.
#[openapi(tag = "Codegen")]
#[get("/v1/orgs/<org_id>/codegen-jobs/<job_id>/bundle")]
pub async fn get_codegen_bundle(
    state: &State<AppState>,
    _access: OrgAccess<Viewer>,
    org_id: Uuid,
    job_id: Uuid,
) -> Result<FileDownload, ApiError> {
    let job = live_job(&state.db, org_id, job_id).await?;
    let artifacts = store::codegen::all_artifacts(&state.db, job.id).await?;
    if artifacts.is_empty() {
        return Err(ApiError::Conflict(format!(
            "the job has no artifacts (status {})",
            job.status
        )));
    }
    let files: Vec<(String, Vec<u8>)> =
        artifacts.into_iter().map(|a| (a.path, a.content)).collect();
    let body = crate::workers::codegen::bundle::tar_gz(&files)
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("building the bundle: {e}")))?;
    Ok(FileDownload {
        content_type: "application/gzip".to_owned(),
        file_name: Some(format!("codegen-{job_id}.tar.gz")),
        sha256: None,
        body,
    })
}

/// Routes of this module with their OpenAPI spec.
pub fn routes(settings: &OpenApiSettings) -> (Vec<rocket::Route>, OpenApi) {
    openapi_get_routes_spec![
        settings: create_codegen_job,
        list_codegen_jobs,
        get_codegen_job,
        cancel_codegen_job,
        delete_codegen_job,
        list_codegen_artifacts,
        get_codegen_artifact,
        get_codegen_bundle
    ]
}
