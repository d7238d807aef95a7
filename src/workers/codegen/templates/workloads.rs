//! `service` → Deployment (+ Service, PodDisruptionBudget, HorizontalPodAutoscaler);
//! `job` → Job; `cron_job` → CronJob.

use super::checks;
use super::index::{Index, NodeRef};
use super::pod::{
    self, container_security, pod_security, pod_template, set_probes, Check, Owner, PodParts,
    WORKLOAD_REQUESTS,
};
use super::wiring::Wiring;
use super::{invalid, Emitted, TemplateError};
use crate::domain::graph::{
    check_cron, check_image, check_url_path, CronJobSpec, JobSpec, Resources, ServiceSpec,
};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec, MetricSpec,
    MetricTarget, ResourceMetricSource,
};
use k8s_openapi::api::batch::v1::{
    CronJob, CronJobSpec as K8sCronJobSpec, Job, JobSpec as K8sJobSpec, JobTemplateSpec,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, Service, ServicePort, ServiceSpec as K8sServiceSpec,
    TopologySpreadConstraint,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;

/// Retries of a Job (and of each CronJob run) unless the graph says otherwise.
const DEFAULT_BACKOFF_LIMIT: u32 = 3;
/// Default target CPU utilisation of an autoscaled service, in percent of the request.
const DEFAULT_TARGET_CPU: u32 = 75;
/// How long a service may take to start before liveness checks may restart it.
const SERVICE_STARTUP_BUDGET_S: i32 = 300;
/// CronJob runs missed by more than this are skipped rather than started late in a burst.
const STARTING_DEADLINE_S: i64 = 300;
/// Time zone of every schedule, so runs do not depend on the controller manager's zone.
pub(super) const SCHEDULE_TIME_ZONE: &str = "Etc/UTC";

/// What the three workload kinds have in common.
struct WorkloadSpec<'a> {
    image: &'a str,
    command: &'a [String],
    args: &'a [String],
    env: &'a BTreeMap<String, String>,
    resources: Option<&'a Resources>,
}

/// `WorkloadSpec::from(spec)` for each workload node kind: the graph declares the container
/// fields once per kind (each kind's schema is its own contract), the templates read them once.
macro_rules! workload_spec_from {
    ($($kind:ty),+) => {$(
        impl<'a> From<&'a $kind> for WorkloadSpec<'a> {
            fn from(spec: &'a $kind) -> Self {
                WorkloadSpec {
                    image: &spec.image,
                    command: &spec.command,
                    args: &spec.args,
                    env: &spec.env,
                    resources: spec.resources.as_ref(),
                }
            }
        }
    )+};
}

workload_spec_from!(ServiceSpec, JobSpec, CronJobSpec);

/// The container and pod parts of a workload node, with the wiring applied.
fn workload_container(
    node: &NodeRef<'_>,
    spec: &WorkloadSpec<'_>,
    parts: &mut PodParts,
) -> Result<Container, TemplateError> {
    check_image(spec.image).map_err(|d| invalid(node.at("/spec/image"), d))?;
    parts.add_own_env(spec.env, &node.at("/spec/env"))?;
    parts.add_tmp(&node.at("/id"));
    Ok(Container {
        name: node.id().to_owned(),
        image: Some(spec.image.to_owned()),
        command: pod::non_empty(spec.command.to_vec()),
        args: pod::non_empty(spec.args.to_vec()),
        resources: Some(pod::resources(
            spec.resources,
            WORKLOAD_REQUESTS,
            &node.at("/spec/resources"),
        )?),
        security_context: Some(container_security()),
        ..Default::default()
    })
}

/// Object metadata carrying the `depends_on` annotation when there is one.
fn workload_meta(owner: &Owner<'_>, wiring: &Wiring) -> ObjectMeta {
    let mut meta = owner.meta(owner.name);
    meta.annotations = wiring.annotations();
    meta
}

/// The Deployment `<id>` and what goes with it.
pub(super) fn service(
    project: &str,
    index: &Index<'_>,
    node: NodeRef<'_>,
    spec: &ServiceSpec,
    mut wiring: Wiring,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    let owner = node.owner(project);
    let ports = index.ports(node.id());
    let mut parts = std::mem::take(&mut wiring.parts);
    let mut container = workload_container(&node, &WorkloadSpec::from(spec), &mut parts)?;
    container.ports = pod::non_empty(
        ports
            .iter()
            .map(|p| ContainerPort {
                container_port: i32::from(p.port),
                name: Some(p.name.clone()),
                protocol: Some(p.protocol.to_owned()),
                ..Default::default()
            })
            .collect(),
    );
    let probes = spec.probes.clone().unwrap_or_default();
    for (path, field) in [
        (&probes.liveness_path, "liveness_path"),
        (&probes.readiness_path, "readiness_path"),
    ] {
        if let Some(path) = path {
            check_url_path(path)
                .map_err(|d| invalid(node.at(&format!("/spec/probes/{field}")), d))?;
        }
    }
    // Probes need a TCP port; a UDP-only service has nothing an HTTP/TCP check can reach.
    if let Some(main) = index.main_tcp_port(node.id()) {
        let check = |path: &Option<String>| match path {
            Some(path) => Check::Http {
                path: path.clone(),
                port: main.name.clone(),
            },
            None => Check::Tcp {
                port: main.name.clone(),
            },
        };
        set_probes(
            &mut container,
            &check(&probes.liveness_path),
            &check(&probes.readiness_path),
            SERVICE_STARTUP_BUDGET_S,
        );
    }

    // With autoscaling the HPA owns the replica count: a fixed `replicas` would be reset on
    // every apply of these manifests.
    let (replicas, min_replicas, max_replicas) = match &spec.autoscaling {
        Some(scaling) => {
            let at = |field: &str| node.at(&format!("/spec/autoscaling/{field}"));
            if scaling.min_replicas < 1 {
                return Err(invalid(at("min_replicas"), "must be at least 1"));
            }
            if scaling.max_replicas < scaling.min_replicas {
                return Err(invalid(
                    at("max_replicas"),
                    "must be at least `min_replicas`",
                ));
            }
            checks::int32(scaling.max_replicas).map_err(|d| invalid(at("max_replicas"), d))?;
            (None, scaling.min_replicas, scaling.max_replicas)
        }
        None => {
            let replicas = spec.replicas.unwrap_or(1);
            let count =
                checks::int32(replicas).map_err(|d| invalid(node.at("/spec/replicas"), d))?;
            (Some(count), replicas, replicas)
        }
    };
    if let Some(pointer) = &wiring.single_writer {
        if max_replicas > 1 {
            return Err(invalid(
                pointer,
                format!(
                    "mounts a ReadWriteOnce volume into `{}`, which may run {max_replicas} \
                     replicas on different nodes; use ReadWriteMany or one replica",
                    node.id()
                ),
            ));
        }
    }
    let strategy = if wiring.single_writer.is_some() {
        // The old pod must release the single-node volume before the new one can attach it.
        DeploymentStrategy {
            type_: Some("Recreate".to_owned()),
            rolling_update: None,
        }
    } else {
        // Add before removing, so capacity never dips during a rollout.
        DeploymentStrategy {
            type_: Some("RollingUpdate".to_owned()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".to_owned())),
                max_unavailable: Some(IntOrString::Int(0)),
            }),
        }
    };

    let mut template = pod_template(&owner, parts, container, pod_security(None), None)?;
    if max_replicas > 1 {
        if let Some(pod_spec) = template.spec.as_mut() {
            pod_spec.topology_spread_constraints = Some(spread(&owner));
        }
    }
    out.push(Emitted::new(
        Deployment {
            metadata: workload_meta(&owner, &wiring),
            spec: Some(DeploymentSpec {
                replicas,
                selector: owner.selector(),
                strategy: Some(strategy),
                template,
                ..Default::default()
            }),
            status: None,
        },
        node.at("/id"),
    ));

    if !ports.is_empty() {
        out.push(Emitted::new(
            Service {
                metadata: owner.meta(node.id()),
                spec: Some(K8sServiceSpec {
                    type_: Some("ClusterIP".to_owned()),
                    selector: Some(owner.selector_labels()),
                    ports: Some(
                        ports
                            .iter()
                            .map(|p| ServicePort {
                                name: Some(p.name.clone()),
                                port: i32::from(p.port),
                                target_port: Some(IntOrString::String(p.name.clone())),
                                protocol: Some(p.protocol.to_owned()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                    ..Default::default()
                }),
                status: None,
            },
            node.at("/id"),
        ));
    }

    if min_replicas > 1 {
        out.push(Emitted::new(
            PodDisruptionBudget {
                metadata: owner.meta(node.id()),
                spec: Some(PodDisruptionBudgetSpec {
                    max_unavailable: Some(IntOrString::Int(1)),
                    selector: Some(owner.selector()),
                    // A crash-looping pod must not block node drains.
                    unhealthy_pod_eviction_policy: Some("AlwaysAllow".to_owned()),
                    min_available: None,
                }),
                status: None,
            },
            node.at("/id"),
        ));
    }

    if let Some(scaling) = &spec.autoscaling {
        let target = scaling.target_cpu_utilization.unwrap_or(DEFAULT_TARGET_CPU);
        let at = node.at("/spec/autoscaling/target_cpu_utilization");
        if target == 0 {
            return Err(invalid(at, "must be at least 1"));
        }
        let target = checks::int32(target).map_err(|d| invalid(&at, d))?;
        out.push(Emitted::new(
            HorizontalPodAutoscaler {
                metadata: owner.meta(node.id()),
                spec: Some(HorizontalPodAutoscalerSpec {
                    scale_target_ref: CrossVersionObjectReference {
                        api_version: Some("apps/v1".to_owned()),
                        kind: "Deployment".to_owned(),
                        name: node.id().to_owned(),
                    },
                    min_replicas: Some(i32::try_from(min_replicas).unwrap_or(i32::MAX)),
                    max_replicas: i32::try_from(max_replicas).unwrap_or(i32::MAX),
                    metrics: Some(vec![MetricSpec {
                        type_: "Resource".to_owned(),
                        resource: Some(ResourceMetricSource {
                            name: "cpu".to_owned(),
                            target: MetricTarget {
                                type_: "Utilization".to_owned(),
                                average_utilization: Some(target),
                                average_value: None,
                                value: None,
                            },
                        }),
                        ..Default::default()
                    }]),
                    behavior: None,
                }),
                status: None,
            },
            node.at("/id"),
        ));
    }
    Ok(())
}

/// Spread replicas over nodes and zones when the scheduler can, so one failure does not take
/// every replica (`ScheduleAnyway`: never leave a pod pending over it).
fn spread(owner: &Owner<'_>) -> Vec<TopologySpreadConstraint> {
    ["kubernetes.io/hostname", "topology.kubernetes.io/zone"]
        .into_iter()
        .map(|key| TopologySpreadConstraint {
            max_skew: 1,
            topology_key: key.to_owned(),
            when_unsatisfiable: "ScheduleAnyway".to_owned(),
            label_selector: Some(owner.selector()),
            ..Default::default()
        })
        .collect()
}

/// The Job spec shared by `job` and each run of a `cron_job`.
fn job_spec(
    owner: &Owner<'_>,
    node: &NodeRef<'_>,
    spec: &WorkloadSpec<'_>,
    backoff_limit: Option<u32>,
    parts: PodParts,
) -> Result<K8sJobSpec, TemplateError> {
    let mut parts = parts;
    let container = workload_container(node, spec, &mut parts)?;
    let backoff = checks::int32(backoff_limit.unwrap_or(DEFAULT_BACKOFF_LIMIT))
        .map_err(|d| invalid(node.at("/spec/backoff_limit"), d))?;
    Ok(K8sJobSpec {
        backoff_limit: Some(backoff),
        // The Job controller retries with new pods; a restarting container would hide failures
        // from `backoffLimit`.
        template: pod_template(owner, parts, container, pod_security(None), Some("Never"))?,
        ..Default::default()
    })
}

/// The Job `<id>`.
pub(super) fn job(
    project: &str,
    node: NodeRef<'_>,
    spec: &JobSpec,
    mut wiring: Wiring,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    let owner = node.owner(project);
    let parts = std::mem::take(&mut wiring.parts);
    let job_spec = job_spec(
        &owner,
        &node,
        &WorkloadSpec::from(spec),
        spec.backoff_limit,
        parts,
    )?;
    out.push(Emitted::new(
        Job {
            metadata: workload_meta(&owner, &wiring),
            spec: Some(job_spec),
            status: None,
        },
        node.at("/id"),
    ));
    Ok(())
}

/// The CronJob `<id>`.
pub(super) fn cron_job(
    project: &str,
    node: NodeRef<'_>,
    spec: &CronJobSpec,
    mut wiring: Wiring,
    out: &mut Vec<Emitted>,
) -> Result<(), TemplateError> {
    check_cron(&spec.schedule).map_err(|d| invalid(node.at("/spec/schedule"), d))?;
    let policy = spec.concurrency_policy.as_deref().unwrap_or("Forbid");
    if !matches!(policy, "Allow" | "Forbid" | "Replace") {
        return Err(invalid(
            node.at("/spec/concurrency_policy"),
            "must be `Allow`, `Forbid` or `Replace`",
        ));
    }
    let owner = node.owner(project);
    let parts = std::mem::take(&mut wiring.parts);
    let job_spec = job_spec(&owner, &node, &WorkloadSpec::from(spec), None, parts)?;
    out.push(Emitted::new(
        CronJob {
            metadata: workload_meta(&owner, &wiring),
            spec: Some(cron_spec(&owner, &spec.schedule, policy, job_spec)),
            status: None,
        },
        node.at("/id"),
    ));
    Ok(())
}

/// A CronJob spec around `job`.
pub(super) fn cron_spec(
    owner: &Owner<'_>,
    schedule: &str,
    concurrency_policy: &str,
    job: K8sJobSpec,
) -> K8sCronJobSpec {
    K8sCronJobSpec {
        schedule: schedule.to_owned(),
        time_zone: Some(SCHEDULE_TIME_ZONE.to_owned()),
        concurrency_policy: Some(concurrency_policy.to_owned()),
        starting_deadline_seconds: Some(STARTING_DEADLINE_S),
        successful_jobs_history_limit: Some(3),
        failed_jobs_history_limit: Some(3),
        job_template: JobTemplateSpec {
            metadata: Some(ObjectMeta {
                labels: Some(owner.labels()),
                ..Default::default()
            }),
            spec: Some(job),
        },
        suspend: None,
    }
}
