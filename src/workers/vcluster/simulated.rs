//! The `simulated` driver: the provisioner's state machine with the host "cluster" kept in the
//! database (`simulated_objects`), realistic step delays (`GANTRY_SIMULATED_DELAY_MS`) and
//! failure injection (`GANTRY_SIMULATED_FAIL`) for demos and tests. Embedded mode's default.

use super::driver::{DriverError, KubeDriver, ProjectSpec, Readiness, WorkspaceSpec};
use crate::store;
use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr, FromQueryResult, Statement};
use serde_json::json;
use std::time::Duration;

/// The steps a simulated vCluster goes through after its objects are applied, one delay each.
const STEPS: [&str; 3] = [
    "installing the vCluster chart",
    "waiting for the vCluster StatefulSet",
    "waiting for the kubeconfig Secret",
];

/// The simulated driver.
pub struct SimulatedDriver {
    db: DatabaseConnection,
    delay: Duration,
    failures: Vec<(String, Option<u32>)>,
}

impl SimulatedDriver {
    /// A driver over `db` with the configured delay and failures.
    pub fn new(
        db: DatabaseConnection,
        delay: Duration,
        failures: Vec<(String, Option<u32>)>,
    ) -> Self {
        Self {
            db,
            delay,
            failures,
        }
    }

    async fn put(
        &self,
        workspace_id: uuid::Uuid,
        kind: &str,
        namespace: &str,
        name: &str,
        spec: serde_json::Value,
    ) -> Result<(), DbErr> {
        let backend = self.db.get_database_backend();
        // Re-applying keeps the original creation time: the object already exists.
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "INSERT INTO simulated_objects (workspace_id, kind, namespace, name, spec, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (workspace_id, kind, namespace, name) DO UPDATE SET spec = EXCLUDED.spec"
            }
            _ => {
                "INSERT INTO simulated_objects (workspace_id, kind, namespace, name, spec, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
                 ON CONFLICT (workspace_id, kind, namespace, name) DO UPDATE SET spec = excluded.spec"
            }
        };
        self.db
            .execute_raw(Statement::from_sql_and_values(
                backend,
                sql,
                [
                    workspace_id.into(),
                    kind.into(),
                    namespace.into(),
                    name.into(),
                    spec.into(),
                    store::now().into(),
                ],
            ))
            .await?;
        Ok(())
    }

    async fn objects(&self, workspace_id: uuid::Uuid) -> Result<Vec<SimulatedObject>, DbErr> {
        let backend = self.db.get_database_backend();
        let p = if backend == sea_orm::DatabaseBackend::Postgres {
            "$1"
        } else {
            "?1"
        };
        SimulatedObject::find_by_statement(Statement::from_sql_and_values(
            backend,
            format!(
                "SELECT kind, namespace, name, spec, created_at FROM simulated_objects \
                 WHERE workspace_id = {p}"
            ),
            [workspace_id.into()],
        ))
        .all(&self.db)
        .await
    }

    async fn delete(
        &self,
        workspace_id: uuid::Uuid,
        kind: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<(), DbErr> {
        let backend = self.db.get_database_backend();
        // The n-th bind parameter in the backend's spelling.
        let param = |n: usize| match backend {
            sea_orm::DatabaseBackend::Postgres => format!("${n}"),
            _ => format!("?{n}"),
        };
        let mut sql = format!(
            "DELETE FROM simulated_objects WHERE workspace_id = {}",
            param(1)
        );
        let mut values: Vec<sea_orm::Value> = vec![workspace_id.into()];
        if let Some(kind) = kind {
            values.push(kind.into());
            sql.push_str(&format!(" AND kind = {}", param(values.len())));
        }
        if let Some(namespace) = namespace {
            values.push(namespace.into());
            sql.push_str(&format!(" AND namespace = {}", param(values.len())));
        }
        self.db
            .execute_raw(Statement::from_sql_and_values(backend, sql, values))
            .await?;
        Ok(())
    }

    /// How many times the workspace named `name` is still to fail (`None` = always).
    fn failure_budget(&self, name: &str) -> Option<Option<u32>> {
        self.failures
            .iter()
            .find(|(pattern, _)| pattern == name)
            .map(|(_, times)| *times)
    }
}

#[derive(Debug, FromQueryResult)]
struct SimulatedObject {
    kind: String,
    namespace: String,
    name: String,
    spec: serde_json::Value,
    created_at: DateTime<Utc>,
}

fn db_error(err: DbErr) -> DriverError {
    DriverError::Transient(format!("simulated cluster store: {err}"))
}

fn expected_objects(
    workspace: &WorkspaceSpec,
) -> Vec<(&'static str, String, String, serde_json::Value)> {
    let plan = &workspace.plan;
    let ns = workspace.namespace.clone();
    vec![
        (
            "Namespace",
            String::new(),
            ns.clone(),
            json!({"labels": {
                "gantry.dev/org-id": workspace.org_id,
                "gantry.dev/workspace-id": workspace.workspace_id,
                "app.kubernetes.io/managed-by": "gantry",
            }}),
        ),
        (
            "ResourceQuota",
            ns.clone(),
            "gantry-quota".to_owned(),
            json!({"hard": {"limits.cpu": plan.cpu, "limits.memory": plan.memory,
                            "pods": plan.pods, "requests.storage": plan.storage}}),
        ),
        (
            "LimitRange",
            ns.clone(),
            "gantry-limits".to_owned(),
            json!({}),
        ),
        (
            "NetworkPolicy",
            ns.clone(),
            "gantry-default-deny".to_owned(),
            json!({"allow": ["dns", "host-api", "same-namespace"]}),
        ),
        (
            "HelmChart",
            "kube-system".to_owned(),
            workspace.release.clone(),
            json!({"chart": "vcluster", "targetNamespace": ns, "plan": plan.name,
                   "nodePool": plan.dedicated_pool}),
        ),
    ]
}

#[async_trait::async_trait]
impl KubeDriver for SimulatedDriver {
    fn name(&self) -> &'static str {
        "simulated"
    }

    async fn apply_workspace(&self, workspace: &WorkspaceSpec) -> Result<(), DriverError> {
        for (kind, namespace, name, spec) in expected_objects(workspace) {
            self.put(workspace.workspace_id, kind, &namespace, &name, spec)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn workspace_readiness(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Readiness, DriverError> {
        let objects = self
            .objects(workspace.workspace_id)
            .await
            .map_err(db_error)?;
        let Some(chart) = objects.iter().find(|o| o.kind == "HelmChart") else {
            return Ok(Readiness::Pending {
                step: "applying host objects".to_owned(),
            });
        };
        let elapsed = (Utc::now() - chart.created_at).to_std().unwrap_or_default();
        if let Some(budget) = self.failure_budget(&workspace.name) {
            let failed_so_far = objects.iter().filter(|o| o.kind == "Failure").count() as u32;
            let must_fail = budget.is_none_or(|times| failed_so_far < times);
            if must_fail && elapsed >= self.delay {
                // Record the failure; the chart goes, so a retry starts from scratch.
                self.put(
                    workspace.workspace_id,
                    "Failure",
                    "",
                    &format!("attempt-{}", failed_so_far + 1),
                    json!({}),
                )
                .await
                .map_err(db_error)?;
                self.delete(workspace.workspace_id, Some("HelmChart"), None)
                    .await
                    .map_err(db_error)?;
                return Ok(Readiness::Failed {
                    reason: "the vCluster chart failed to install (simulated failure, \
                             GANTRY_SIMULATED_FAIL)"
                        .to_owned(),
                });
            }
        }
        let step = if self.delay.is_zero() {
            STEPS.len()
        } else {
            (elapsed.as_millis() / self.delay.as_millis()) as usize
        };
        if step < STEPS.len() {
            return Ok(Readiness::Pending {
                step: STEPS[step].to_owned(),
            });
        }
        Ok(Readiness::Ready {
            endpoint: format!(
                "https://{}.{}.svc.simulated:443",
                workspace.release, workspace.namespace
            ),
            // Base64 of a placeholder PEM: there is no real API server behind a simulation.
            ca_data: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                "-----BEGIN CERTIFICATE-----\nsimulated\n-----END CERTIFICATE-----\n",
            ),
        })
    }

    async fn delete_workspace(&self, workspace: &WorkspaceSpec) -> Result<bool, DriverError> {
        let objects = self
            .objects(workspace.workspace_id)
            .await
            .map_err(db_error)?;
        if let Some(chart) = objects.iter().find(|o| o.kind == "HelmChart") {
            // The release takes one delay to go after the chart is removed.
            self.delete(workspace.workspace_id, Some("HelmChart"), None)
                .await
                .map_err(db_error)?;
            self.put(
                workspace.workspace_id,
                "Uninstalling",
                "",
                &chart.name,
                json!({}),
            )
            .await
            .map_err(db_error)?;
            return Ok(self.delay.is_zero() && self.finish_delete(workspace).await?);
        }
        match objects.iter().find(|o| o.kind == "Uninstalling") {
            Some(marker)
                if (Utc::now() - marker.created_at)
                    .to_std()
                    .unwrap_or_default()
                    < self.delay =>
            {
                Ok(false)
            }
            _ => self.finish_delete(workspace).await,
        }
    }

    async fn drift(&self, workspace: &WorkspaceSpec) -> Result<Vec<String>, DriverError> {
        let objects = self
            .objects(workspace.workspace_id)
            .await
            .map_err(db_error)?;
        let mut drift = Vec::new();
        for (kind, namespace, name, spec) in expected_objects(workspace) {
            match objects
                .iter()
                .find(|o| o.kind == kind && o.namespace == namespace && o.name == name)
            {
                None => drift.push(format!("{kind} {name} missing")),
                Some(found) if found.spec != spec => drift.push(format!("{kind} {name} changed")),
                Some(_) => {}
            }
        }
        Ok(drift)
    }

    async fn apply_project(&self, project: &ProjectSpec) -> Result<(), DriverError> {
        // A project's objects live "inside the vCluster": their namespace is `vcluster/<ns>`.
        let id = project.workspace.workspace_id;
        let scope = format!("vcluster/{}", project.namespace);
        let mut objects = vec![
            (
                "Namespace".to_owned(),
                project.namespace.clone(),
                json!({"project_id": project.project_id}),
            ),
            (
                "ResourceQuota".to_owned(),
                "gantry-quota".to_owned(),
                json!({"hard": {"limits.cpu": project.cpu, "limits.memory": project.memory}}),
            ),
            (
                "NetworkPolicy".to_owned(),
                "gantry-default-deny".to_owned(),
                json!({}),
            ),
        ];
        for (group, role) in &project.bindings {
            // One binding per org role (owner and admin both map to `admin`).
            let org_role = group.rsplit(':').next().unwrap_or(role);
            objects.push((
                "RoleBinding".to_owned(),
                format!("gantry-{org_role}"),
                json!({"group": group, "clusterRole": role}),
            ));
        }
        for (kind, name, spec) in objects {
            self.put(id, &kind, &scope, &name, spec)
                .await
                .map_err(db_error)?;
        }
        Ok(())
    }

    async fn delete_project(&self, project: &ProjectSpec) -> Result<(), DriverError> {
        let scope = format!("vcluster/{}", project.namespace);
        self.delete(project.workspace.workspace_id, None, Some(&scope))
            .await
            .map_err(db_error)
    }
}

impl SimulatedDriver {
    async fn finish_delete(&self, workspace: &WorkspaceSpec) -> Result<bool, DriverError> {
        self.delete(workspace.workspace_id, None, None)
            .await
            .map_err(db_error)?;
        Ok(true)
    }
}
