//! Submitting a codegen job: checking it against the project, its graph and the configuration,
//! then recording it with its `codegen.requested` event; and parsing the list filter.

use super::{CodegenJobView, CreateCodegenJob, Engine, GitTargetSpec};
use crate::app::AppState;
use crate::domain::git_target::{host_allowed, remote_host_port};
use crate::domain::graph;
use crate::error::{ApiError, FieldError};
use crate::outbox::{self, EventType};
use crate::store::{self, projects::Project};
use crate::webhooks::outbound::OutboundError;
use crate::workers::codegen::git::check_target;
use sea_orm::ConnectionTrait;
use uuid::Uuid;

/// Checks a submission against the project, its graph and the configuration; answers the graph
/// version to generate, or every problem at once.
async fn check_submission(
    state: &AppState,
    db: &impl ConnectionTrait,
    org_id: Uuid,
    body: &CreateCodegenJob,
    engine: Engine,
) -> Result<i32, ApiError> {
    let project = store::projects::find_live(db, org_id, body.project_id)
        .await?
        .ok_or_else(|| ApiError::invalid("/project_id", "no such project in this organization"))?;
    let mut errors = Vec::new();
    let version = body.graph_version.unwrap_or(project.graph_version);
    check_graph_version(db, &project, version, &mut errors).await?;
    if engine == Engine::Llm && state.codegen.llm.is_none() {
        errors.push(FieldError::new(
            "/engine",
            "the llm engine is not configured on this server (GANTRY_LLM_BASE_URL, \
             GANTRY_LLM_MODEL)",
        ));
    }
    if let Some(git) = body.target.as_ref().and_then(|t| t.git.as_ref()) {
        check_git_target(state, db, org_id, git, &mut errors).await?;
    }
    if errors.is_empty() {
        Ok(version)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// The project has graph `version` and it is valid.
async fn check_graph_version(
    db: &impl ConnectionTrait,
    project: &Project,
    version: i32,
    errors: &mut Vec<FieldError>,
) -> Result<(), ApiError> {
    let Some(stored) = store::projects::find_version(db, project.id, version).await? else {
        errors.push(FieldError::new(
            "/graph_version",
            format!(
                "the project has no graph version {version} (current: {})",
                project.graph_version
            ),
        ));
        return Ok(());
    };
    if let Err(problems) = graph::validate(&stored.graph, "") {
        errors.extend(problems.into_iter().map(|problem| {
            FieldError::new(
                "/graph_version",
                format!(
                    "graph version {version} is invalid at {}: {}",
                    problem.pointer, problem.detail
                ),
            )
        }));
    }
    Ok(())
}

/// The Git target is allowed by the configuration, its host passes the outbound policy, and
/// its credentials secret exists and may be sent to that host.
async fn check_git_target(
    state: &AppState,
    db: &impl ConnectionTrait,
    org_id: Uuid,
    git: &GitTargetSpec,
    errors: &mut Vec<FieldError>,
) -> Result<(), ApiError> {
    match check_target(&git.git_target(), &state.codegen.git_allowed_schemes, "") {
        Err(problems) => errors.extend(problems),
        Ok(()) => {
            if let Some((host, port)) = remote_host_port(&git.url) {
                // A name that does not resolve now may later: the worker checks again (and
                // pins the address). One resolving to a non-public address is refused, without
                // saying which address.
                if let Err(OutboundError::NotPublic { .. }) =
                    state.outbound.check_host(&host, port).await
                {
                    errors.push(FieldError::new(
                        "/target/git/url",
                        format!("{host} does not resolve to a public address"),
                    ));
                }
            }
        }
    }
    if let Some(secret) = &git.credentials_secret {
        match store::secrets::binding(db, org_id, secret).await? {
            None => errors.push(FieldError::new(
                "/target/git/credentials_secret",
                format!("no org secret named {secret:?}"),
            )),
            Some(binding) if !host_allowed(&binding.allowed_hosts, &git.url) => {
                errors.push(FieldError::new(
                    "/target/git/credentials_secret",
                    format!(
                        "the org secret {secret:?} may not be sent to this URL's host (its \
                         allowed_hosts: {:?}; an admin can change them with PUT \
                         …/secrets/{secret})",
                        binding.allowed_hosts
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Checks `body` and records the job (`pending`) with its `codegen.requested` event in `txn`.
pub(super) async fn submit(
    state: &AppState,
    txn: &impl ConnectionTrait,
    org_id: Uuid,
    created_by: &str,
    body: CreateCodegenJob,
) -> Result<CodegenJobView, ApiError> {
    let engine = body.engine.unwrap_or_default();
    let graph_version = check_submission(state, txn, org_id, &body, engine).await?;
    let target = body
        .target
        .filter(|t| t.git.is_some())
        .map(|t| {
            serde_json::to_value(t)
                .map_err(|e| ApiError::Internal(anyhow::anyhow!("serializing the target: {e}")))
        })
        .transpose()?;
    let job = store::codegen::insert(
        txn,
        store::codegen::NewCodegenJob {
            org_id,
            project_id: body.project_id,
            graph_version,
            engine,
            target,
            created_by: created_by.to_owned(),
        },
    )
    .await?;
    let view = CodegenJobView::from(job);
    outbox::record(txn, EventType::CodegenRequested, org_id, view.id, &view).await?;
    Ok(view)
}

/// The list filter from the raw `project_id` and `status` query parameters (empty = absent).
pub(super) fn list_filter(
    project_id: Option<&str>,
    status: Option<&str>,
) -> Result<store::codegen::ListFilter, ApiError> {
    let project_id = match project_id {
        None => None,
        Some(raw) => Some(
            Uuid::parse_str(raw)
                .map_err(|_| ApiError::BadRequest(format!("project_id {raw:?} is not a UUID")))?,
        ),
    };
    let status = match status {
        None => None,
        Some(raw) => Some(
            <store::codegen::CodegenStatus as sea_orm::Iterable>::iter()
                .find(|s| s.as_str() == raw)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "status {raw:?} is not one of: {}",
                        <store::codegen::CodegenStatus as sea_orm::Iterable>::iter()
                            .map(|s| s.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?,
        ),
    };
    Ok(store::codegen::ListFilter { project_id, status })
}
