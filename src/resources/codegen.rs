//! A codegen job as the API answers it, its events carry it and the runner reads its target.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::workspace::Progress;
use crate::domain::git_target::GitTarget;
use crate::error::ApiError;
use crate::outbox::{self, EventType};
use crate::store::{self, codegen::CodegenJob};
use sea_orm::{ConnectionTrait, DbErr};

pub use crate::store::codegen::{CodegenStatus, Engine};

/// A Git repository to commit the generated files to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GitTargetSpec {
    /// Repository URL (`https://…`, `ssh://…` or `git@host:org/repo.git`; schemes allowed by
    /// `GANTRY_GIT_ALLOWED_SCHEMES`). No credentials in the URL.
    pub url: String,
    /// Branch to commit to (created when missing).
    pub branch: String,
    /// Directory inside the repository whose contents the job replaces (`.` = the root).
    pub path: String,
    /// Name of the org secret holding the credentials (`token`, `user:token`, or an SSH private
    /// key); absent: no credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_secret: Option<String>,
}

impl GitTargetSpec {
    /// The repository part the delivery needs.
    pub fn git_target(&self) -> GitTarget {
        GitTarget {
            url: self.url.clone(),
            branch: self.branch.clone(),
            path: self.path.clone(),
        }
    }
}

/// Where a succeeded job's files are delivered besides its artifacts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodegenTarget {
    /// Commit and push to a Git repository.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub git: Option<GitTargetSpec>,
}

/// Why a job failed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CodegenError {
    /// Stable machine-readable kind: `invalid_graph`, `graph_not_found`, `template`,
    /// `llm_unparseable`, `llm_rejected`, `llm_unavailable`, `git_rejected`,
    /// `git_unavailable`, `internal`.
    #[serde(rename = "type")]
    pub error_type: String,
    /// Human-readable detail.
    pub detail: String,
}

/// When the job moved.
#[derive(Debug, Clone, PartialEq, Serialize, JsonSchema)]
pub struct Timings {
    /// Submitted.
    pub created_at: DateTime<Utc>,
    /// A runner first picked it up.
    pub started_at: Option<DateTime<Utc>>,
    /// It reached succeeded, failed or cancelled.
    pub finished_at: Option<DateTime<Utc>>,
    /// Seconds from submit to start.
    pub queued_seconds: Option<f64>,
    /// Seconds from start to finish.
    pub run_seconds: Option<f64>,
}

/// A codegen job.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub struct CodegenJobView {
    /// Id.
    pub id: Uuid,
    /// Organization id.
    pub org_id: Uuid,
    /// Project id.
    pub project_id: Uuid,
    /// The graph version generated.
    pub graph_version: i32,
    /// Engine.
    pub engine: Engine,
    /// Delivery target, if any.
    pub target: Option<CodegenTarget>,
    /// Lifecycle status.
    pub status: CodegenStatus,
    /// What the runner is doing (`{step, done, total}`).
    pub progress: Option<Progress>,
    /// Why it failed.
    pub error: Option<CodegenError>,
    /// The commit pushed to `target.git` (succeeded jobs with a Git target).
    pub commit_sha: Option<String>,
    /// Cancellation was requested; a running job stops at its next step.
    pub cancel_requested: bool,
    /// Start, finish and durations.
    pub timings: Timings,
    /// Submitted.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}

fn seconds_between(from: DateTime<Utc>, to: Option<DateTime<Utc>>) -> Option<f64> {
    to.map(|to| (to - from).num_microseconds().unwrap_or(0) as f64 / 1e6)
}

impl From<CodegenJob> for CodegenJobView {
    fn from(job: CodegenJob) -> Self {
        let timings = Timings {
            created_at: job.created_at,
            started_at: job.started_at,
            finished_at: job.finished_at,
            queued_seconds: seconds_between(job.created_at, job.started_at),
            run_seconds: job
                .started_at
                .and_then(|started| seconds_between(started, job.finished_at)),
        };
        Self {
            id: job.id,
            org_id: job.org_id,
            project_id: job.project_id,
            graph_version: job.graph_version,
            engine: job.engine,
            target: job.target.and_then(|t| serde_json::from_value(t).ok()),
            status: job.status,
            progress: job.progress.and_then(|p| serde_json::from_value(p).ok()),
            error: job.error.and_then(|e| serde_json::from_value(e).ok()),
            commit_sha: job.commit_sha,
            cancel_requested: job.cancel_requested,
            timings,
            created_at: job.created_at,
            updated_at: job.updated_at,
        }
    }
}

/// Cancels `job` for good: drops any stored files, marks it cancelled and records
/// `codegen.cancelled`. The one place a job becomes cancelled, for the API (a pending job) and
/// the runner (a running job, at its next step).
pub async fn cancel(txn: &impl ConnectionTrait, job: CodegenJob) -> Result<CodegenJobView, DbErr> {
    use store::codegen::Transition;
    store::codegen::delete_artifacts(txn, job.id).await?;
    let job = store::codegen::transition(
        txn,
        job,
        Transition {
            status: Some(CodegenStatus::Cancelled),
            cancel_requested: true,
            ..Default::default()
        },
    )
    .await?;
    let view = CodegenJobView::from(job);
    outbox::record(
        txn,
        EventType::CodegenCancelled,
        view.org_id,
        view.id,
        &view,
    )
    .await?;
    Ok(view)
}

/// Handles a cancel request for the locked `job`: a pending job is cancelled at once, a
/// running one is flagged and stopped by the runner at its next step; 409 once it finished.
pub async fn request_cancel(
    txn: &impl ConnectionTrait,
    job: CodegenJob,
) -> Result<CodegenJobView, ApiError> {
    use store::codegen::Transition;
    if job.status.is_finished() {
        return Err(ApiError::Conflict(format!(
            "the job already finished ({}); only a pending or running job can be cancelled",
            job.status
        )));
    }
    if job.status == CodegenStatus::Pending {
        return Ok(cancel(txn, job).await?);
    }
    let job = store::codegen::transition(
        txn,
        job,
        Transition {
            cancel_requested: true,
            ..Default::default()
        },
    )
    .await?;
    Ok(CodegenJobView::from(job))
}
