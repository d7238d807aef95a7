//! The vCluster provisioner (`--workers vcluster-provisioner`, queue `vcluster`): turns
//! `workspace.requested` into a ready vCluster, `workspace.deletion_requested` into nothing
//! left, and `project.created` / `project.deleted` into namespaces inside the vCluster, through
//! a [`driver::KubeDriver`] (`kubernetes` or `simulated`).
//!
//! Each run is idempotent: it re-reads the workspace row, re-applies (server-side apply is a
//! no-op when nothing changed) and resumes waiting, so a re-delivered or rescued job continues
//! where the last one stopped. Status changes are written with their event in one transaction.

pub mod driver;
pub mod kubernetes;
pub mod simulated;

use super::WorkerContext;
use crate::config::{KubeDriverKind, PlanConfig};
use crate::jobs::{Command, Job, JobEnvelope, JobError};
use crate::outbox::{self, EventType};
use crate::store;
use crate::store::projects::{Project, ProjectStatus};
use crate::store::workspaces::{self as ws_store, Transition, Workspace, WorkspaceStatus};
use driver::{DriverError, KubeDriver, PlanSpec, ProjectSpec, Readiness, WorkspaceSpec};
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Longest pause between readiness polls.
const MAX_POLL: Duration = Duration::from_secs(10);
/// Steps of provisioning, for progress.
const TOTAL_STEPS: u32 = 4;

// The kubeconfig users download, written with the YAML serializer.
mod kubeconfig_file;
pub use kubeconfig_file::{kubeconfig, KubeconfigError};

/// The driver the configuration selects.
pub async fn driver_from_config(ctx: &WorkerContext) -> Result<Arc<dyn KubeDriver>, DriverError> {
    let config = &ctx.config.provisioner;
    match config.driver {
        KubeDriverKind::Simulated => Ok(Arc::new(simulated::SimulatedDriver::new(
            ctx.db.clone(),
            config.simulated_delay,
            config.simulated_failures.clone(),
        ))),
        KubeDriverKind::Kubernetes => Ok(Arc::new(
            kubernetes::KubernetesDriver::from_env(kubernetes::KubeSettings {
                endpoint_template: config.vcluster_endpoint.clone(),
                chart_version: config.vcluster_chart_version.clone(),
                ..kubernetes::KubeSettings::default()
            })
            .await?,
        )),
    }
}

/// The spec a driver gets for a workspace row.
pub fn workspace_spec(ctx: &WorkerContext, workspace: &Workspace) -> WorkspaceSpec {
    let plans = &ctx.config.provisioner;
    let plan: &PlanConfig = if workspace.plan == ws_store::Plan::Dedicated {
        &plans.dedicated
    } else {
        &plans.shared
    };
    let namespace = WorkspaceSpec::namespace_for(workspace.id);
    WorkspaceSpec {
        workspace_id: workspace.id,
        org_id: workspace.org_id,
        name: workspace.name.clone(),
        release: format!("vc-{}", &namespace["gantry-ws-".len()..]),
        namespace,
        plan: PlanSpec {
            name: workspace.plan.as_str().to_owned(),
            cpu: plan.cpu.clone(),
            memory: plan.memory.clone(),
            pods: plan.pods,
            storage: plan.storage.clone(),
            dedicated_pool: plan.pool.clone(),
        },
    }
}

/// Org roles → cluster roles inside a project namespace, bound to the OIDC group
/// `gantry:<org_id>:<role>`.
const ROLE_BINDINGS: [(&str, &str); 4] = [
    ("owner", "admin"),
    ("admin", "admin"),
    ("member", "edit"),
    ("viewer", "view"),
];

/// Team roles on a project → cluster roles, bound to the OIDC group
/// `gantry:<org_id>:team:<team>`.
fn team_cluster_role(role: crate::domain::Role) -> &'static str {
    match role {
        crate::domain::Role::Viewer => "view",
        crate::domain::Role::Member => "edit",
        crate::domain::Role::Admin | crate::domain::Role::Owner => "admin",
    }
}

/// The spec a driver gets for a project row and the teams assigned to it.
pub fn project_spec(
    ctx: &WorkerContext,
    workspace: &Workspace,
    project: &Project,
    teams: &[(store::teams::Team, crate::domain::Role)],
) -> ProjectSpec {
    ProjectSpec {
        workspace: workspace_spec(ctx, workspace),
        project_id: project.id,
        namespace: project.name.clone(),
        cpu: project.quota_cpu.clone(),
        memory: project.quota_memory.clone(),
        bindings: ROLE_BINDINGS
            .iter()
            .map(|(org_role, cluster_role)| {
                (
                    format!("gantry:{}:{org_role}", project.org_id),
                    (*cluster_role).to_owned(),
                )
            })
            .chain(teams.iter().map(|(team, role)| {
                (
                    format!("gantry:{}:team:{}", project.org_id, team.name),
                    team_cluster_role(*role).to_owned(),
                )
            }))
            .collect(),
    }
}

/// Creates a project's namespace in its (ready) workspace and records the outcome with its
/// event. A transient driver error is returned for the job runtime to retry.
async fn apply_project(
    ctx: &WorkerContext,
    driver: &dyn KubeDriver,
    workspace: &Workspace,
    project: Project,
) -> Result<(), JobError> {
    let (new_status, error, event) = match driver
        .apply_project(&project_spec(
            ctx,
            workspace,
            &project,
            &store::teams::grants_on(&ctx.db, project.id).await?,
        ))
        .await
    {
        Ok(()) => (ProjectStatus::Ready, None, EventType::ProjectReady),
        Err(DriverError::Permanent(reason)) => (
            ProjectStatus::Failed,
            Some(reason),
            EventType::ProjectFailed,
        ),
        Err(err) => return Err(err.into()),
    };
    let txn = store::begin_write(&ctx.db).await?;
    let updated = store::projects::set_status(&txn, project, new_status, error).await?;
    let view = crate::resources::project::ProjectView::from(updated.clone());
    outbox::record(&txn, event, updated.org_id, updated.id, &view).await?;
    txn.commit().await?;
    Ok(())
}

/// Handles `project.created` / `project.deleted`.
async fn project_command(
    ctx: &WorkerContext,
    driver: &dyn KubeDriver,
    event_type: EventType,
    project_id: uuid::Uuid,
) -> Result<(), JobError> {
    let Some(project) = store::projects::find_any(&ctx.db, project_id).await? else {
        return Ok(());
    };
    let Some(workspace) = ws_store::find_any(&ctx.db, project.workspace_id).await? else {
        return Ok(());
    };
    // Projects of a workspace that is not ready yet are created when it becomes ready.
    if workspace.status != WorkspaceStatus::Ready {
        return Ok(());
    }
    match event_type {
        EventType::ProjectCreated => {
            if project.deleted_at.is_some() || project.status != ProjectStatus::Pending {
                return Ok(());
            }
            apply_project(ctx, driver, &workspace, project).await
        }
        _ => driver
            .delete_project(&project_spec(ctx, &workspace, &project, &[]))
            .await
            .map_err(JobError::from),
    }
}

/// Compares a ready workspace's host objects with what Gantry applied; on drift, records it
/// (condition `Drifted`, event `workspace.drifted`) and re-applies. Returns the drift found.
pub async fn repair_drift(
    ctx: &WorkerContext,
    driver: &dyn KubeDriver,
    workspace: Workspace,
) -> Result<Vec<String>, JobError> {
    let spec = workspace_spec(ctx, &workspace);
    let drift = driver.drift(&spec).await?;
    if drift.is_empty() {
        return Ok(drift);
    }
    tracing::warn!(workspace_id = %workspace.id, ?drift, "workspace drifted; re-applying");
    driver.apply_workspace(&spec).await?;
    let message = format!("re-applied after drift: {}", drift.join("; "));
    let mut conditions: Vec<serde_json::Value> = workspace
        .conditions
        .clone()
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_default();
    conditions.retain(|c| c["type"] != "Drifted");
    conditions.push(condition("Drifted", false, "Repaired", &message));
    record(
        ctx,
        workspace,
        Transition {
            conditions: Some(serde_json::Value::Array(conditions)),
            ..Default::default()
        },
        Some(EventType::WorkspaceDrifted),
    )
    .await?;
    Ok(drift)
}

fn progress(step: &str, done: u32) -> serde_json::Value {
    json!({"step": step, "done": done, "total": TOTAL_STEPS})
}

fn condition(kind: &str, status: bool, reason: &str, message: &str) -> serde_json::Value {
    json!({
        "type": kind,
        "status": if status { "True" } else { "False" },
        "reason": reason,
        "message": message,
        "last_transition_time": store::now(),
    })
}

/// The vCluster job kind; its driver is built on first use and kept.
#[derive(Default)]
pub struct Provisioner {
    driver: tokio::sync::OnceCell<Arc<dyn KubeDriver>>,
}

/// The part of a workspace or project event's data the provisioner reads.
#[derive(Debug, serde::Deserialize)]
pub struct Target {
    /// The workspace, project or team id.
    pub id: uuid::Uuid,
    /// The project of a `team.project_*` event.
    #[serde(default)]
    pub project_id: Option<uuid::Uuid>,
}

/// The projects a `team.deleted` event lists (`data.projects`).
fn projects_of(args: &serde_json::Value) -> Vec<uuid::Uuid> {
    args["data"]["projects"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|id| id.as_str().and_then(|id| id.parse().ok()))
                .collect()
        })
        .unwrap_or_default()
}

/// Applies a live, ready project's namespace again (its teams changed). A project not ready
/// yet gets its teams when it is created; one in a workspace not ready, when that is.
async fn reapply_project(
    ctx: &WorkerContext,
    driver: &dyn KubeDriver,
    project_id: uuid::Uuid,
) -> Result<(), JobError> {
    let Some(project) = store::projects::find_any(&ctx.db, project_id).await? else {
        return Ok(());
    };
    if project.deleted_at.is_some() || project.status != ProjectStatus::Ready {
        return Ok(());
    }
    let Some(workspace) = ws_store::find_any(&ctx.db, project.workspace_id).await? else {
        return Ok(());
    };
    if workspace.status != WorkspaceStatus::Ready {
        return Ok(());
    }
    apply_project(ctx, driver, &workspace, project).await
}

impl Provisioner {
    async fn driver(&self, ctx: &WorkerContext) -> Result<Arc<dyn KubeDriver>, JobError> {
        self.driver
            .get_or_try_init(|| driver_from_config(ctx))
            .await
            .cloned()
            .map_err(JobError::from)
    }
}

/// Writes a transition with its event (if any) in one transaction, on the row as it is now
/// (locked): if its status or deletion changed since `workspace` was read (an API `DELETE`
/// during provisioning), nothing is written and `None` says the job was superseded.
async fn record(
    ctx: &WorkerContext,
    workspace: Workspace,
    change: Transition,
    event: Option<EventType>,
) -> Result<Option<Workspace>, JobError> {
    let txn = store::begin_write(&ctx.db).await?;
    let Some(current) = ws_store::find_for_update(&txn, workspace.id).await? else {
        return Ok(None);
    };
    if current.status != workspace.status || current.deleted_at != workspace.deleted_at {
        tracing::info!(workspace_id = %workspace.id, was = %workspace.status.as_str(), now = %current.status.as_str(), "workspace changed under the provisioner; leaving it to the newer request");
        return Ok(None);
    }
    let updated = ws_store::transition(&txn, current, change).await?;
    if let Some(event) = event {
        let view = crate::resources::workspace::WorkspaceView::from(updated.clone());
        outbox::record(&txn, event, updated.org_id, updated.id, &view).await?;
    }
    txn.commit().await?;
    Ok(Some(updated))
}

async fn provision(
    ctx: &WorkerContext,
    driver: &dyn KubeDriver,
    mut workspace: Workspace,
) -> Result<(), JobError> {
    if workspace.status == WorkspaceStatus::Pending {
        let Some(updated) = record(
            ctx,
            workspace,
            Transition {
                status: Some(WorkspaceStatus::Provisioning),
                progress: Some(progress("applying host objects", 0)),
                started: Some(true),
                ..Default::default()
            },
            Some(EventType::WorkspaceProvisioning),
        )
        .await?
        else {
            return Ok(());
        };
        workspace = updated;
    } else if workspace.status != WorkspaceStatus::Provisioning {
        // Ready, failed, deleting or deleted: nothing to do (a re-delivered job).
        return Ok(());
    }
    let spec = workspace_spec(ctx, &workspace);
    match driver.apply_workspace(&spec).await {
        Ok(()) => {}
        Err(DriverError::Permanent(reason)) => {
            return fail(ctx, workspace, &format!("applying host objects: {reason}")).await
        }
        Err(err) => return Err(err.into()),
    }
    let started = workspace.provision_started_at.unwrap_or_else(store::now);
    let timeout = ctx.config.provisioner.timeout;
    let mut last_step = String::new();
    let mut pause = Duration::from_millis(200);
    loop {
        match driver.workspace_readiness(&spec).await? {
            Readiness::Ready { endpoint, ca_data } => {
                let Some(workspace) = record(
                    ctx,
                    workspace,
                    Transition {
                        status: Some(WorkspaceStatus::Ready),
                        progress: Some(progress("ready", TOTAL_STEPS)),
                        conditions: Some(json!([
                            condition("Applied", true, "Applied", "host objects applied"),
                            condition("Ready", true, "VClusterReady", "the vCluster answers"),
                        ])),
                        endpoint: Some((endpoint, ca_data)),
                        error: Some(None),
                        ..Default::default()
                    },
                    Some(EventType::WorkspaceReady),
                )
                .await?
                else {
                    return Ok(());
                };
                // Projects created while it was coming up get their namespaces now.
                let pending = store::projects::in_workspace_with_status(
                    &ctx.db,
                    workspace.id,
                    ProjectStatus::Pending,
                )
                .await?;
                for project in pending {
                    apply_project(ctx, driver, &workspace, project).await?;
                }
                return Ok(());
            }
            Readiness::Failed { reason } => return fail(ctx, workspace, &reason).await,
            Readiness::Pending { step } => {
                let waited = (store::now() - started).to_std().unwrap_or_default();
                if waited >= timeout {
                    return fail(
                        ctx,
                        workspace,
                        &format!(
                            "not ready after {} (GANTRY_PROVISION_TIMEOUT); last step: {step}",
                            humantime::format_duration(timeout)
                        ),
                    )
                    .await;
                }
                if step != last_step {
                    let done = match step.as_str() {
                        s if s.contains("chart") => 1,
                        s if s.contains("StatefulSet") => 2,
                        _ => 3,
                    };
                    let Some(updated) = record(
                        ctx,
                        workspace,
                        Transition {
                            progress: Some(progress(&step, done)),
                            conditions: Some(json!([condition(
                                "Applied",
                                true,
                                "Applied",
                                "host objects applied"
                            )])),
                            ..Default::default()
                        },
                        None,
                    )
                    .await?
                    else {
                        return Ok(());
                    };
                    workspace = updated;
                    last_step = step;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(MAX_POLL);
            }
        }
    }
}

async fn fail(ctx: &WorkerContext, workspace: Workspace, reason: &str) -> Result<(), JobError> {
    tracing::warn!(workspace_id = %workspace.id, reason, "workspace provisioning failed");
    record(
        ctx,
        workspace,
        Transition {
            status: Some(WorkspaceStatus::Failed),
            error: Some(Some(reason.to_owned())),
            conditions: Some(json!([condition(
                "Ready",
                false,
                "ProvisioningFailed",
                reason
            )])),
            started: Some(false),
            ..Default::default()
        },
        Some(EventType::WorkspaceFailed),
    )
    .await?;
    Ok(())
}

async fn tear_down(
    ctx: &WorkerContext,
    driver: &dyn KubeDriver,
    mut workspace: Workspace,
) -> Result<(), JobError> {
    if workspace.status != WorkspaceStatus::Deleting {
        return Ok(());
    }
    let Some(updated) = record(
        ctx,
        workspace,
        Transition {
            progress: Some(json!({"step": "removing the vCluster", "done": 0, "total": 2})),
            ..Default::default()
        },
        None,
    )
    .await?
    else {
        return Ok(());
    };
    workspace = updated;
    let spec = workspace_spec(ctx, &workspace);
    let started = Instant::now();
    let mut pause = Duration::from_millis(200);
    while !driver.delete_workspace(&spec).await? {
        if started.elapsed() >= ctx.config.provisioner.timeout {
            // Deletion keeps being retried by the job runtime; the status stays `deleting`.
            return Err(JobError::Retryable(
                "the vCluster release is still going after GANTRY_PROVISION_TIMEOUT".to_owned(),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
    // A workspace's projects go with it.
    let txn = store::begin_write(&ctx.db).await?;
    let Some(current) = ws_store::find_for_update(&txn, workspace.id).await? else {
        return Ok(());
    };
    if current.status != WorkspaceStatus::Deleting {
        return Ok(());
    }
    let updated = ws_store::transition(
        &txn,
        current,
        Transition {
            status: Some(WorkspaceStatus::Deleted),
            progress: Some(json!({"step": "deleted", "done": 2, "total": 2})),
            deleted: true,
            ..Default::default()
        },
    )
    .await?;
    store::projects::soft_delete_all_in_workspace(&txn, updated.id).await?;
    let view = crate::resources::workspace::WorkspaceView::from(updated.clone());
    outbox::record(
        &txn,
        EventType::WorkspaceDeleted,
        updated.org_id,
        updated.id,
        &view,
    )
    .await?;
    txn.commit().await?;
    Ok(())
}

#[async_trait::async_trait]
impl Job for Provisioner {
    const QUEUE: &'static str = "vcluster";
    const EVENT_TYPES: &'static [EventType] = &[
        EventType::WorkspaceRequested,
        EventType::WorkspaceDeletionRequested,
        EventType::ProjectCreated,
        EventType::ProjectDeleted,
        EventType::TeamProjectAssigned,
        EventType::TeamProjectUnassigned,
        EventType::TeamDeleted,
    ];
    const DEFAULT_CONCURRENCY: usize = 8;
    type Args = Command<Target>;

    async fn run(
        &self,
        ctx: &WorkerContext,
        args: Self::Args,
        job: &JobEnvelope,
    ) -> Result<(), JobError> {
        let id = args.data.id;
        let driver = self.driver(ctx).await?;
        match args.event_type {
            EventType::TeamProjectAssigned | EventType::TeamProjectUnassigned => {
                let project_id = args.data.project_id.unwrap_or(id);
                reapply_project(ctx, driver.as_ref(), project_id).await
            }
            EventType::TeamDeleted => {
                for project_id in projects_of(&job.args) {
                    reapply_project(ctx, driver.as_ref(), project_id).await?;
                }
                Ok(())
            }
            event_type @ (EventType::ProjectCreated | EventType::ProjectDeleted) => {
                project_command(ctx, driver.as_ref(), event_type, id).await
            }
            event_type
            @ (EventType::WorkspaceRequested | EventType::WorkspaceDeletionRequested) => {
                let Some(workspace) = ws_store::find_any(&ctx.db, id).await? else {
                    return Ok(());
                };
                if event_type == EventType::WorkspaceRequested {
                    provision(ctx, driver.as_ref(), workspace).await
                } else {
                    tear_down(ctx, driver.as_ref(), workspace).await
                }
            }
            other => Err(JobError::Permanent(format!("vcluster queue got {other}"))),
        }
    }

    /// A job that died (attempts exhausted, or a permanent error) records its failure on the
    /// row it was for, so nothing stays `provisioning` / `pending` forever.
    async fn on_dead(&self, ctx: &WorkerContext, attempt: &JobEnvelope, error: &JobError) {
        use serde::Deserialize;
        let Ok(args) = Command::<Target>::deserialize(&attempt.args) else {
            return;
        };
        let reason = format!("gave up after attempt {}: {error}", attempt.attempt);
        if let Err(err) = record_death(ctx, args.event_type, args.data.id, &reason).await {
            tracing::warn!(id = %args.data.id, %err, "could not record a dead vcluster job on its row");
        }
    }
}

/// Records a dead job's final failure: a workspace still being provisioned fails, a deletion
/// keeps `deleting` with the error shown, a pending project fails.
async fn record_death(
    ctx: &WorkerContext,
    event_type: EventType,
    id: uuid::Uuid,
    reason: &str,
) -> Result<(), JobError> {
    match event_type {
        EventType::WorkspaceRequested | EventType::WorkspaceDeletionRequested => {
            let Some(workspace) = ws_store::find_any(&ctx.db, id).await? else {
                return Ok(());
            };
            match workspace.status {
                WorkspaceStatus::Pending | WorkspaceStatus::Provisioning
                    if event_type == EventType::WorkspaceRequested =>
                {
                    fail(ctx, workspace, reason).await
                }
                WorkspaceStatus::Deleting
                    if event_type == EventType::WorkspaceDeletionRequested =>
                {
                    record(
                        ctx,
                        workspace,
                        Transition {
                            error: Some(Some(reason.to_owned())),
                            ..Default::default()
                        },
                        None,
                    )
                    .await?;
                    Ok(())
                }
                _ => Ok(()),
            }
        }
        EventType::ProjectCreated => {
            let Some(project) = store::projects::find_any(&ctx.db, id).await? else {
                return Ok(());
            };
            if project.status != ProjectStatus::Pending || project.deleted_at.is_some() {
                return Ok(());
            }
            let txn = store::begin_write(&ctx.db).await?;
            let updated = store::projects::set_status(
                &txn,
                project,
                ProjectStatus::Failed,
                Some(reason.to_owned()),
            )
            .await?;
            let view = crate::resources::project::ProjectView::from(updated.clone());
            outbox::record(
                &txn,
                EventType::ProjectFailed,
                updated.org_id,
                updated.id,
                &view,
            )
            .await?;
            txn.commit().await?;
            Ok(())
        }
        _ => Ok(()),
    }
}
