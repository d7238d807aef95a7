//! The `simulated` driver: the provisioner's state machine with the host "cluster" kept in the
//! database (`simulated_objects`), realistic step delays (`GANTRY_SIMULATED_DELAY_MS`) and
//! failure injection (`GANTRY_SIMULATED_FAIL`) for demos and tests. Embedded mode's default.

use super::driver::{
    Applied, DriverError, ExecOutcome, ExecRequest, KubeDriver, KubeObject, ProjectSpec, Readiness,
    WorkspaceObjects, WorkspaceSpec, POD_SECURITY_LABELS,
};
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

/// Adds the Pod Security `restricted` labels every managed namespace carries.
fn with_pod_security(mut labels: serde_json::Value) -> serde_json::Value {
    if let Some(map) = labels.as_object_mut() {
        for (key, value) in POD_SECURITY_LABELS {
            map.insert(key.to_owned(), value.into());
        }
    }
    labels
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
            json!({"labels": with_pod_security(json!({
                "gantry.dev/org-id": workspace.org_id,
                "gantry.dev/workspace-id": workspace.workspace_id,
                "app.kubernetes.io/managed-by": "gantry",
            }))}),
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
                json!({"project_id": project.project_id, "labels": with_pod_security(json!({}))}),
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
            // One binding per org role (owner and admin both map to `admin`) and per team.
            let name = match group.split_once(":team:") {
                Some((_, team)) => format!("gantry-team-{team}"),
                None => format!("gantry-{}", group.rsplit(':').next().unwrap_or(role)),
            };
            objects.push((
                "RoleBinding".to_owned(),
                name,
                json!({"group": group, "clusterRole": role}),
            ));
        }
        // Bindings are replaced as a set, so a team taken off the project loses its binding.
        self.delete(id, Some("RoleBinding"), Some(&scope))
            .await
            .map_err(db_error)?;
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

/// Scope (the `namespace` column) of objects inside the simulated vCluster.
const VCLUSTER_SCOPE: &str = "vcluster/";

/// The namespace an object lives in (`""` for namespaces themselves and cluster-scoped kinds).
fn object_namespace(object: &KubeObject) -> String {
    if object["kind"] == "Namespace" {
        return String::new();
    }
    object["metadata"]["namespace"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// The `apiVersion` of the kinds the simulated cluster knows without one.
fn api_version_of(kind: &str) -> &'static str {
    match kind {
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" => "apps/v1",
        "NetworkPolicy" | "Ingress" => "networking.k8s.io/v1",
        "Role" | "RoleBinding" | "ClusterRole" | "ClusterRoleBinding" => {
            "rbac.authorization.k8s.io/v1"
        }
        "CronJob" | "Job" => "batch/v1",
        "CustomResourceDefinition" => "apiextensions.k8s.io/v1",
        _ => "v1",
    }
}

impl SimulatedObject {
    /// The row as a Kubernetes object: rows written by restores (or seeded by tests) hold the
    /// whole object; rows the provisioner wrote hold a spec, wrapped here.
    fn as_kube_object(&self) -> KubeObject {
        let namespace = self
            .namespace
            .strip_prefix(VCLUSTER_SCOPE)
            .unwrap_or_default()
            .to_owned();
        let mut object = if self.spec.get("apiVersion").is_some() {
            self.spec.clone()
        } else {
            json!({"apiVersion": api_version_of(&self.kind), "kind": self.kind, "spec": self.spec})
        };
        object["kind"] = json!(self.kind);
        if !object["metadata"].is_object() {
            object["metadata"] = json!({});
        }
        object["metadata"]["name"] = json!(self.name);
        if self.kind != "Namespace" && !namespace.is_empty() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        object
    }
}

#[async_trait::async_trait]
impl WorkspaceObjects for SimulatedDriver {
    async fn list_objects(
        &self,
        workspace: &WorkspaceSpec,
    ) -> Result<Vec<KubeObject>, DriverError> {
        let objects = self
            .objects(workspace.workspace_id)
            .await
            .map_err(db_error)?;
        Ok(objects
            .iter()
            .filter(|o| o.namespace.starts_with(VCLUSTER_SCOPE))
            .map(SimulatedObject::as_kube_object)
            .collect())
    }

    async fn object_exists(
        &self,
        workspace: &WorkspaceSpec,
        kind: &str,
        namespace: &str,
        name: &str,
    ) -> Result<bool, DriverError> {
        let scope = if kind == "Namespace" {
            format!("{VCLUSTER_SCOPE}{name}")
        } else {
            format!("{VCLUSTER_SCOPE}{namespace}")
        };
        let objects = self
            .objects(workspace.workspace_id)
            .await
            .map_err(db_error)?;
        Ok(objects
            .iter()
            .any(|o| o.kind == kind && o.namespace == scope && o.name == name))
    }

    async fn apply_object(
        &self,
        workspace: &WorkspaceSpec,
        object: &KubeObject,
    ) -> Result<Applied, DriverError> {
        let kind = object["kind"].as_str().unwrap_or_default().to_owned();
        let name = object["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if kind.is_empty() || name.is_empty() {
            return Err(DriverError::Permanent(
                "an object needs a kind and metadata.name".to_owned(),
            ));
        }
        let namespace = object_namespace(object);
        let existed = self
            .object_exists(workspace, &kind, &namespace, &name)
            .await?;
        let scope = if kind == "Namespace" {
            format!("{VCLUSTER_SCOPE}{name}")
        } else {
            format!("{VCLUSTER_SCOPE}{namespace}")
        };
        self.put(workspace.workspace_id, &kind, &scope, &name, object.clone())
            .await
            .map_err(db_error)?;
        Ok(if existed {
            Applied::Updated
        } else {
            Applied::Created
        })
    }

    /// Pods are `Pod` objects; `false` exits 1, `sleep N` sleeps N seconds, anything else
    /// succeeds. Every run is recorded as a `HookRun` row (scope `hooks/<namespace>`).
    async fn exec(
        &self,
        workspace: &WorkspaceSpec,
        request: &ExecRequest,
    ) -> Result<ExecOutcome, DriverError> {
        let selector = crate::domain::backup::LabelSelector::parse(&request.pod_selector)
            .map_err(DriverError::Permanent)?;
        let scope = format!("{VCLUSTER_SCOPE}{}", request.namespace);
        let objects = self
            .objects(workspace.workspace_id)
            .await
            .map_err(db_error)?;
        let pods: Vec<String> = objects
            .iter()
            .filter(|o| o.kind == "Pod" && o.namespace == scope)
            .filter(|o| {
                let labels = o.as_kube_object()["metadata"]["labels"].clone();
                let labels: std::collections::BTreeMap<String, String> =
                    serde_json::from_value(labels).unwrap_or_default();
                selector.matches(&labels)
            })
            .map(|o| o.name.clone())
            .collect();
        self.put(
            workspace.workspace_id,
            "HookRun",
            &format!("hooks/{}", request.namespace),
            &format!("{}", Utc::now().timestamp_nanos_opt().unwrap_or_default()),
            json!({"command": request.command, "pods": pods}),
        )
        .await
        .map_err(db_error)?;
        if pods.is_empty() {
            return Ok(ExecOutcome::Failed(format!(
                "no pod in {} matches {}",
                request.namespace, request.pod_selector
            )));
        }
        match request.command.first().map(String::as_str) {
            Some("false") => Ok(ExecOutcome::Failed("exit status 1".to_owned())),
            Some("sleep") => {
                let seconds: f64 = request
                    .command
                    .get(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(1.0);
                tokio::time::sleep(Duration::from_secs_f64(seconds.clamp(0.0, 3600.0))).await;
                Ok(ExecOutcome::Succeeded)
            }
            _ => Ok(ExecOutcome::Succeeded),
        }
    }
}
