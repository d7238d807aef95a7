//! The codegen runner (`--workers codegen-runner`, queue `codegen`): turns one version of a
//! project's infrastructure graph into Kubernetes manifests, stored as the job's artifacts and
//! optionally pushed to a Git repository.
//!
//! A job runs in steps — validate, generate, (refine with the LLM), store, (deliver to Git) — and
//! checks between steps, on the locked row, whether it was cancelled or deleted. It is
//! idempotent: a finished row is acknowledged without work, artifacts are replaced (unique per
//! job and path), and a retry after the files were stored delivers the stored files instead of
//! generating again. Results, status and the follow-up event are written in one transaction.
//! Invalid input fails the job at once (a permanent error); network errors are retried by the
//! job runtime, and the last attempt's failure is recorded on the row.

pub mod bundle;
pub mod git;
pub mod llm;
pub mod objects;
pub mod templates;

use super::WorkerContext;
use crate::domain::git_target::host_allowed;
use crate::domain::graph::{self, Graph};
use crate::jobs::{Command, Job, JobEnvelope, JobError};
use crate::outbox::{self, EventType};
use crate::resources::codegen::{CodegenError, CodegenJobView, CodegenTarget};
use crate::resources::workspace::Progress;
use crate::store::{self, codegen as job_store, codegen::CodegenJob, codegen::Transition};
use crate::webhooks::outbound::OutboundPolicy;
use objects::Object;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Queue name.
pub const QUEUE: &str = CodegenRunner::QUEUE;
/// Media type of every manifest.
pub const YAML: &str = "application/yaml";

/// One output file of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Relative path inside the bundle (`deployment-web.yaml`, `kustomization.yaml`).
    pub path: String,
    /// Media type (`application/yaml`).
    pub media_type: String,
    /// The bytes.
    pub content: Vec<u8>,
}

/// Why a run stopped short of success.
#[derive(Debug)]
enum Failure {
    /// Will fail again: recorded on the row at once.
    Permanent(CodegenError),
    /// Worth another attempt (network, database).
    Retryable(CodegenError),
}

impl Failure {
    fn permanent(error_type: &str, detail: impl Into<String>) -> Self {
        Failure::Permanent(CodegenError {
            error_type: error_type.to_owned(),
            detail: detail.into(),
        })
    }

    /// A permanent failure naming every validation problem (`pointer: detail; …`).
    fn invalid(error_type: &str, problems: &[crate::error::FieldError]) -> Self {
        let detail = problems
            .iter()
            .map(|p| format!("{}: {}", p.pointer, p.detail))
            .collect::<Vec<_>>()
            .join("; ");
        Failure::permanent(error_type, detail)
    }

    fn retryable(error_type: &str, detail: impl Into<String>) -> Self {
        Failure::Retryable(CodegenError {
            error_type: error_type.to_owned(),
            detail: detail.into(),
        })
    }
}

impl From<sea_orm::DbErr> for Failure {
    fn from(err: sea_orm::DbErr) -> Self {
        Failure::retryable("internal", format!("database: {err}"))
    }
}

/// Why a codegen attempt failed, as the job runtime sees it (the failure is also recorded on
/// the job's row when it is final).
#[derive(Debug, thiserror::Error)]
pub enum CodegenRunError {
    /// Invalid input or a refusal: it would fail again.
    #[error("{error_type}: {detail}")]
    Permanent {
        /// The recorded error's type (`validation`, `git`, …).
        error_type: String,
        /// What went wrong.
        detail: String,
    },
    /// A retryable failure on the job's last attempt.
    #[error("{error_type}: {detail} (attempt {attempt}, no attempts left)")]
    Exhausted {
        /// The recorded error's type.
        error_type: String,
        /// What went wrong.
        detail: String,
        /// The attempt that failed.
        attempt: u32,
    },
    /// Worth another attempt (network, database).
    #[error("{error_type}: {detail}")]
    Retryable {
        /// The error's type.
        error_type: String,
        /// What went wrong.
        detail: String,
    },
}

impl CodegenRunError {
    /// True unless another attempt may succeed.
    pub fn is_permanent(&self) -> bool {
        !matches!(self, CodegenRunError::Retryable { .. })
    }
}

impl From<CodegenRunError> for JobError {
    /// Retryable unless the failure is permanent or out of attempts.
    fn from(err: CodegenRunError) -> Self {
        JobError::failed(!err.is_permanent(), err)
    }
}

/// The part of a `codegen.requested` event's data the runner reads.
#[derive(Debug, serde::Deserialize)]
pub struct CodegenTargetJob {
    /// The codegen job's id.
    pub id: Uuid,
}

/// The codegen job kind.
#[derive(Debug, Default)]
pub struct CodegenRunner;

#[async_trait::async_trait]
impl Job for CodegenRunner {
    const QUEUE: &'static str = "codegen";
    const EVENT_TYPES: &'static [EventType] = &[EventType::CodegenRequested];
    const DEFAULT_CONCURRENCY: usize = 4;
    type Args = Command<CodegenTargetJob>;

    async fn run(
        &self,
        ctx: &WorkerContext,
        args: Self::Args,
        job: &JobEnvelope,
    ) -> Result<(), JobError> {
        let job_id = args.data.id;
        let max_attempts = ctx.config.jobs.queue(QUEUE).max_attempts;
        let failure = match run(ctx, job_id).await {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        let error = match failure {
            Failure::Permanent(error) => {
                let err = CodegenRunError::Permanent {
                    error_type: error.error_type.clone(),
                    detail: error.detail.clone(),
                };
                record_failure(ctx, job_id, error).await?;
                err
            }
            Failure::Retryable(error) if job.is_last_attempt(max_attempts) => {
                let err = CodegenRunError::Exhausted {
                    error_type: error.error_type.clone(),
                    detail: error.detail.clone(),
                    attempt: job.attempt,
                };
                record_failure(ctx, job_id, error).await?;
                err
            }
            Failure::Retryable(error) => CodegenRunError::Retryable {
                error_type: error.error_type,
                detail: error.detail,
            },
        };
        Err(error.into())
    }
}

/// The steps of a job, for `progress`.
fn steps(job: &CodegenJob) -> Vec<&'static str> {
    let mut steps = vec!["validate", "generate"];
    if job.engine == job_store::Engine::Llm {
        steps.push("refine");
    }
    steps.push("store");
    if target_of(job).and_then(|t| t.git).is_some() {
        steps.push("deliver");
    }
    steps
}

fn target_of(job: &CodegenJob) -> Option<CodegenTarget> {
    job.target
        .clone()
        .and_then(|t| serde_json::from_value(t).ok())
}

fn progress(step: &str, done: usize, total: usize) -> serde_json::Value {
    serde_json::to_value(Progress {
        step: step.to_owned(),
        done: done as u32,
        total: total as u32,
    })
    .unwrap_or_default()
}

/// What a step boundary found on the locked row.
enum Checkpoint {
    /// Go on with this row.
    Continue(Box<CodegenJob>),
    /// Stop without error: finished, deleted or now cancelled.
    Stop,
}

/// Moves the job to `step` (and to `running`, with `codegen.started`, on its first step) unless
/// it was cancelled, deleted or finished meanwhile; a requested cancellation is recorded here
/// with its event.
async fn checkpoint(
    ctx: &WorkerContext,
    job_id: Uuid,
    step: &'static str,
) -> Result<Checkpoint, Failure> {
    let txn = store::begin_write(&ctx.db).await?;
    let Some(job) = lock_unfinished(&txn, job_id).await? else {
        return Ok(Checkpoint::Stop);
    };
    if job.cancel_requested {
        crate::resources::codegen::cancel(&txn, job).await?;
        txn.commit().await?;
        return Ok(Checkpoint::Stop);
    }
    let all = steps(&job);
    let done = all.iter().position(|s| *s == step).unwrap_or(0);
    let first_run = job.status == job_store::CodegenStatus::Pending;
    let job = job_store::transition(
        &txn,
        job,
        Transition {
            status: first_run.then_some(job_store::CodegenStatus::Running),
            progress: Some(progress(step, done, all.len())),
            ..Default::default()
        },
    )
    .await?;
    if first_run {
        let view = CodegenJobView::from(job.clone());
        outbox::record(&txn, EventType::CodegenStarted, view.org_id, view.id, &view).await?;
    }
    txn.commit().await?;
    Ok(Checkpoint::Continue(Box::new(job)))
}

/// Runs one job to its end (or to a failure the caller records).
async fn run(ctx: &WorkerContext, job_id: Uuid) -> Result<(), Failure> {
    // A retry of a job whose files were stored already only delivers them again.
    let resumed_delivery = job_store::find_any(&ctx.db, job_id)
        .await?
        .and_then(|job| job.progress)
        .and_then(|p| p.get("step").and_then(|s| s.as_str()).map(str::to_owned))
        .as_deref()
        == Some("deliver");
    let Checkpoint::Continue(job) = checkpoint(ctx, job_id, "validate").await? else {
        return Ok(());
    };
    let git = target_of(&job).and_then(|t| t.git);
    let resumed_delivery = resumed_delivery && git.is_some();
    let files = match (resumed_delivery, git.is_some()) {
        (true, _) => {
            let stored = job_store::all_artifacts(&ctx.db, job.id).await?;
            if stored.is_empty() {
                generate_and_store(ctx, job_id, &job, true).await?
            } else {
                Generated::Stored(
                    stored
                        .into_iter()
                        .map(|a| GeneratedFile {
                            path: a.path,
                            media_type: a.media_type,
                            content: a.content,
                        })
                        .collect(),
                )
            }
        }
        (false, has_git) => generate_and_store(ctx, job_id, &job, has_git).await?,
    };
    let Generated::Stored(files) = files else {
        return Ok(());
    };
    let Some(git) = git else {
        return Ok(());
    };
    let Checkpoint::Continue(job) = checkpoint(ctx, job_id, "deliver").await? else {
        return Ok(());
    };
    // The allowed schemes may have changed since the job was submitted.
    git::check_target(
        &git.git_target(),
        &ctx.config.codegen.git_allowed_schemes,
        "",
    )
    .map_err(|problems| Failure::invalid("git_rejected", &problems))?;
    let secret = match &git.credentials_secret {
        None => None,
        Some(name) => {
            let secret = store::secrets::find_for_use(&ctx.db, job.org_id, name)
                .await?
                .ok_or_else(|| {
                    Failure::permanent(
                        "git_rejected",
                        format!("the org secret {name:?} named by the target no longer exists"),
                    )
                })?;
            // Checked again here: an admin may have narrowed the secret's hosts since submit.
            if !host_allowed(&secret.binding.allowed_hosts, &git.url) {
                return Err(Failure::permanent(
                    "git_rejected",
                    format!(
                        "the org secret {name:?} may not be sent to this repository's host \
                         (its allowed_hosts: {:?})",
                        secret.binding.allowed_hosts
                    ),
                ));
            }
            let value = secret.value(&ctx.secrets).map_err(|e| {
                Failure::permanent("git_rejected", format!("the org secret {name:?}: {e}"))
            })?;
            Some((value, secret.binding.known_hosts))
        }
    };
    let outbound = OutboundPolicy::new(ctx.config.outbound_allow.clone());
    let project = store::projects::find_any(&ctx.db, job.project_id).await?;
    let message = format!(
        "gantry: manifests for project {} (graph version {})\n\nCodegen job {}\n",
        project.as_ref().map_or("?", |p| p.name.as_str()),
        job.graph_version,
        job.id
    );
    let sha = git::deliver(git::Delivery {
        target: &git.git_target(),
        files: &files,
        credentials: secret.as_ref().map(|(value, _)| value.as_str()),
        message: &message,
        timeout: ctx.config.codegen.git_timeout,
        outbound: &outbound,
        known_hosts: secret.as_ref().and_then(|(_, k)| k.as_deref()),
    })
    .await
    .map_err(|err| {
        if err.is_retryable() {
            Failure::retryable("git_unavailable", err.to_string())
        } else {
            Failure::permanent("git_rejected", err.to_string())
        }
    })?;
    finish(ctx, job_id, None, Some(sha), kinds_of_files(&files)).await
}

/// What generation ended with.
enum Generated {
    /// Cancelled or deleted between steps: nothing more to do.
    Stopped,
    /// Succeeded (no Git target): recorded already.
    Finished,
    /// Stored, waiting for delivery to Git.
    Stored(Vec<GeneratedFile>),
}

/// Validates, generates (and refines), then stores the files: with the job's success when there
/// is no Git target, or with progress `deliver` when there is.
async fn generate_and_store(
    ctx: &WorkerContext,
    job_id: Uuid,
    job: &CodegenJob,
    has_git: bool,
) -> Result<Generated, Failure> {
    let stored = store::projects::find_version(&ctx.db, job.project_id, job.graph_version)
        .await?
        .ok_or_else(|| {
            Failure::permanent(
                "graph_not_found",
                format!("the project has no graph version {}", job.graph_version),
            )
        })?;
    let graph = validated(&stored.graph)?;
    let project = store::projects::find_any(&ctx.db, job.project_id)
        .await?
        .ok_or_else(|| Failure::permanent("graph_not_found", "the project no longer exists"))?;

    let Checkpoint::Continue(job) = checkpoint(ctx, job_id, "generate").await? else {
        return Ok(Generated::Stopped);
    };
    let target = templates::Target {
        project: project.name.clone(),
    };
    let mut objects = templates::generate(&graph, &target)
        .map_err(|e| Failure::permanent("template", e.to_string()))?;

    if job.engine == job_store::Engine::Llm {
        let Checkpoint::Continue(_) = checkpoint(ctx, job_id, "refine").await? else {
            return Ok(Generated::Stopped);
        };
        objects = refine(ctx, &graph, &objects).await?;
    }
    let files = templates::render(&objects, &target)
        .map_err(|e| Failure::permanent("template", e.to_string()))?;

    let Checkpoint::Continue(_) = checkpoint(ctx, job_id, "store").await? else {
        return Ok(Generated::Stopped);
    };
    if has_git {
        let txn = store::begin_write(&ctx.db).await?;
        let Some(job) = lock_unfinished(&txn, job_id).await? else {
            return Ok(Generated::Stopped);
        };
        job_store::replace_artifacts(&txn, job_id, new_artifacts(&files)).await?;
        let all = steps(&job);
        job_store::transition(
            &txn,
            job,
            Transition {
                progress: Some(progress("deliver", all.len() - 1, all.len())),
                ..Default::default()
            },
        )
        .await?;
        txn.commit().await?;
        Ok(Generated::Stored(files))
    } else {
        let mut kinds = BTreeMap::new();
        for object in &objects {
            *kinds.entry(object.kind().to_owned()).or_insert(0) += 1;
        }
        finish(ctx, job_id, Some(&files), None, kinds).await?;
        Ok(Generated::Finished)
    }
}

/// The graph document as a typed graph, or the job's permanent failure naming every problem.
fn validated(document: &serde_json::Value) -> Result<Graph, Failure> {
    graph::validate(document, "").map_err(|problems| Failure::invalid("invalid_graph", &problems))
}

/// Refines the templates' objects with the configured model.
async fn refine(
    ctx: &WorkerContext,
    graph: &Graph,
    objects: &[Object],
) -> Result<Vec<Object>, Failure> {
    let Some(config) = ctx.config.codegen.llm.as_ref() else {
        return Err(Failure::permanent(
            "llm_rejected",
            "the llm engine is not configured on this runner (GANTRY_LLM_BASE_URL, \
             GANTRY_LLM_MODEL)",
        ));
    };
    let client = llm::LlmClient::new(
        config,
        ctx.config.codegen.llm_timeout,
        ctx.config.codegen.llm_max_attempts,
    )
    .map_err(|e| Failure::permanent("llm_rejected", e.to_string()))?
    .with_max_calls(ctx.config.codegen.llm_max_calls);
    client.refine(graph, objects).await.map_err(|err| {
        if err.is_retryable() {
            Failure::retryable("llm_unavailable", err.to_string())
        } else if matches!(err, llm::LlmError::Unusable { .. }) {
            Failure::permanent("llm_unparseable", err.to_string())
        } else if matches!(err, llm::LlmError::Budget { .. }) {
            // Spent: running the job again would only spend another budget.
            Failure::permanent("llm_unavailable", err.to_string())
        } else {
            Failure::permanent("llm_rejected", err.to_string())
        }
    })
}

fn new_artifacts(files: &[GeneratedFile]) -> Vec<job_store::NewArtifact> {
    files
        .iter()
        .map(|f| job_store::NewArtifact {
            path: f.path.clone(),
            media_type: f.media_type.clone(),
            sha256: bundle::sha256_hex(&f.content),
            content: f.content.clone(),
        })
        .collect()
}

/// Counts objects per kind from stored YAML files (a resumed delivery has no typed objects).
fn kinds_of_files(files: &[GeneratedFile]) -> BTreeMap<String, u64> {
    let mut kinds = BTreeMap::new();
    for file in files {
        if file.path == "kustomization.yaml" {
            continue;
        }
        if let Ok(text) = std::str::from_utf8(&file.content) {
            if let Ok(object) = Object::from_yaml(text) {
                *kinds.entry(object.kind().to_owned()).or_insert(0) += 1;
            }
        }
    }
    kinds
}

/// Records success: the files (when not stored yet), status, commit and `codegen.succeeded`, in
/// one transaction; then counts the objects by kind.
async fn finish(
    ctx: &WorkerContext,
    job_id: Uuid,
    files: Option<&[GeneratedFile]>,
    commit_sha: Option<String>,
    kinds: BTreeMap<String, u64>,
) -> Result<(), Failure> {
    let txn = store::begin_write(&ctx.db).await?;
    let Some(job) = lock_unfinished(&txn, job_id).await? else {
        return Ok(());
    };
    if let Some(files) = files {
        job_store::replace_artifacts(&txn, job_id, new_artifacts(files)).await?;
    }
    let total = steps(&job).len();
    let job = job_store::transition(
        &txn,
        job,
        Transition {
            status: Some(job_store::CodegenStatus::Succeeded),
            progress: Some(progress("done", total, total)),
            commit_sha,
            ..Default::default()
        },
    )
    .await?;
    let view = CodegenJobView::from(job);
    outbox::record(
        &txn,
        EventType::CodegenSucceeded,
        view.org_id,
        view.id,
        &view,
    )
    .await?;
    txn.commit().await?;

    for (kind, count) in kinds {
        ctx.metrics
            .codegen_objects_total
            .with_label_values(&[&kind])
            .inc_by(count);
    }
    Ok(())
}

/// The job, locked for `txn`, unless it is gone, deleted or already finished (cancelled, or
/// finished by an earlier attempt): then the run has nothing left to record.
async fn lock_unfinished(
    txn: &sea_orm::DatabaseTransaction,
    job_id: Uuid,
) -> Result<Option<CodegenJob>, sea_orm::DbErr> {
    let job = job_store::find_for_update(txn, job_id).await?;
    Ok(job.filter(|job| job.deleted_at.is_none() && !job.status.is_finished()))
}

/// Records a failure with `codegen.failed`, unless the job finished or was deleted meanwhile.
async fn record_failure(
    ctx: &WorkerContext,
    job_id: Uuid,
    error: CodegenError,
) -> Result<(), JobError> {
    let txn = store::begin_write(&ctx.db).await?;
    let Some(job) = lock_unfinished(&txn, job_id).await? else {
        return Ok(());
    };
    tracing::warn!(job_id = %job_id, error_type = %error.error_type, detail = %error.detail, "codegen job failed");
    let job = job_store::transition(
        &txn,
        job,
        Transition {
            status: Some(job_store::CodegenStatus::Failed),
            error: Some(serde_json::to_value(&error).unwrap_or_default()),
            ..Default::default()
        },
    )
    .await?;
    let view = CodegenJobView::from(job);
    outbox::record(&txn, EventType::CodegenFailed, view.org_id, view.id, &view).await?;
    txn.commit().await?;
    Ok(())
}
