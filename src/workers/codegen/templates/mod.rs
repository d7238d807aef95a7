//! The `templates` engine: turns a validated infrastructure graph into typed Kubernetes objects
//! with production defaults, and writes them as a kustomization.
//!
//! Output is deterministic: the same graph gives byte-identical files, whatever the order of
//! its nodes and edges (nodes are walked by id, edges in a sorted order, maps are `BTreeMap`s,
//! and objects are sorted by file name). Anything the graph asks for that Kubernetes would
//! reject is refused with a JSON Pointer into the graph rather than written. A graph that
//! passed [`validate`](crate::domain::graph::validate) is never refused: validation checks
//! every rule these refusals stand for (with the same helpers), so they are only a defence for
//! graphs built some other way.
//!
//! What each node kind becomes:
//! - `service` → Deployment, plus a Service when it has ports, a PodDisruptionBudget when more
//!   than one replica runs, a HorizontalPodAutoscaler when it autoscales;
//! - `job` → Job; `cron_job` → CronJob;
//! - `database` → StatefulSet + headless Service (+ `<id>-backup` CronJob and claim);
//! - `config` → ConfigMap; `volume` → PersistentVolumeClaim; `ingress` → Ingress;
//! - `secret_ref` → nothing: the Secret exists already and its values never pass through here.
//!
//! Plus NetworkPolicies: `default-deny`, `allow-dns`, and `<id>-ingress`/`<id>-egress` for the
//! flows the edges allow.

mod checks;
mod database;
mod index;
mod ingress;
mod network;
mod pod;
mod storage;
mod wiring;
mod workloads;

use super::objects::{Object, ObjectError};
use super::GeneratedFile;
use crate::domain::graph::{check_dns_subdomain, Graph, NodeBody};
use crate::domain::DnsLabel;
use std::collections::BTreeMap;

/// Media type of every generated file.
const MEDIA_TYPE: &str = "application/yaml";
/// Name of the kustomization file.
const KUSTOMIZATION: &str = "kustomization.yaml";

/// Where the generated objects go.
#[derive(Debug, Clone)]
pub struct Target {
    /// Project name: the namespace, and `app.kubernetes.io/part-of`.
    pub project: String,
}

/// Why the templates could not generate.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// The graph asks for something the templates cannot express.
    #[error("{pointer}: {detail}")]
    Invalid {
        /// JSON Pointer into the graph (empty for the graph as a whole or the target).
        pointer: String,
        /// What is wrong.
        detail: String,
    },
}

/// A [`TemplateError::Invalid`] at `pointer`.
fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> TemplateError {
    TemplateError::Invalid {
        pointer: pointer.into(),
        detail: detail.into(),
    }
}

/// One generated object and the pointer of the graph element it comes from (to name the
/// culprit when two nodes would generate the same object).
struct Emitted {
    object: Object,
    origin: String,
}

impl Emitted {
    /// `object`, generated because of the element at `origin`.
    fn new(object: impl Into<Object>, origin: String) -> Self {
        Self {
            object: object.into(),
            origin,
        }
    }
}

/// Builds the typed objects for a graph, sorted by file name.
pub fn generate(graph: &Graph, target: &Target) -> Result<Vec<Object>, TemplateError> {
    let project = target.project.as_str();
    DnsLabel::parse(project).map_err(|d| {
        invalid(
            "",
            format!("the project name `{project}` is the namespace, so it {d}"),
        )
    })?;
    let index = index::Index::build(graph)?;
    let mut wired = wiring::wire(graph, &index)?;
    let mut out: Vec<Emitted> = Vec::with_capacity(graph.nodes.len() * 3 + 2);
    for node in &index.nodes {
        let wiring = wired.take(node.id());
        match &node.node.body {
            NodeBody::Service(spec) => {
                workloads::service(project, &index, *node, spec, wiring, &mut out)?
            }
            NodeBody::Job(spec) => workloads::job(project, *node, spec, wiring, &mut out)?,
            NodeBody::CronJob(spec) => workloads::cron_job(project, *node, spec, wiring, &mut out)?,
            NodeBody::Database(spec) => database::database(
                project,
                &index,
                *node,
                spec,
                wiring,
                &mut wired.allows,
                &mut out,
            )?,
            NodeBody::Config(spec) => storage::config(project, *node, spec, &mut out)?,
            NodeBody::Volume(spec) => storage::volume(project, *node, spec, &mut out)?,
            NodeBody::SecretRef(spec) => {
                check_dns_subdomain(&spec.secret_name)
                    .map_err(|d| invalid(node.at("/spec/secret_name"), d))?;
            }
            NodeBody::Ingress(spec) => {
                let exposed = wired.exposes.remove(node.id()).unwrap_or_default();
                let mut exposed = exposed;
                exposed.sort();
                exposed.dedup_by(|a, b| a.0 == b.0);
                ingress::ingress(project, &index, *node, spec, &exposed, &mut out)?
            }
        }
    }
    network::policies(&wired.allows, project, &mut out);

    // Two nodes must not write the same object (say a volume `db-backup` next to the backup
    // claim of a database `db`): one would silently replace the other. `validate` refuses such
    // ids already; this catches any generated name it does not know about.
    let mut files: BTreeMap<String, Emitted> = BTreeMap::new();
    for emitted in out {
        let file = emitted.object.file_name();
        if let Some(earlier) = files.get(&file) {
            let pointer = if emitted.origin.is_empty() {
                earlier.origin.clone()
            } else {
                emitted.origin.clone()
            };
            return Err(invalid(
                pointer,
                format!(
                    "generates the {} `{}`, which another node generates too; rename one",
                    emitted.object.kind(),
                    emitted.object.name()
                ),
            ));
        }
        files.insert(file, emitted);
    }
    Ok(files.into_values().map(|e| e.object).collect())
}

/// The kustomization listing every object file.
#[derive(serde::Serialize)]
struct Kustomization<'a> {
    #[serde(rename = "apiVersion")]
    api_version: &'static str,
    kind: &'static str,
    namespace: &'a str,
    resources: Vec<&'a str>,
}

/// Writes objects as files, plus `kustomization.yaml`; files sorted by path.
pub fn render(objects: &[Object], target: &Target) -> Result<Vec<GeneratedFile>, ObjectError> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for object in objects {
        let path = object.file_name();
        if path == KUSTOMIZATION || files.contains_key(&path) {
            return Err(ObjectError::Serialize(format!(
                "two objects would be written to `{path}`"
            )));
        }
        files.insert(path, object.to_yaml()?.into_bytes());
    }
    let kustomization = Kustomization {
        api_version: "kustomize.config.k8s.io/v1beta1",
        kind: "Kustomization",
        namespace: &target.project,
        resources: files.keys().map(String::as_str).collect(),
    };
    let kustomization = serde_saphyr::to_string(&kustomization)
        .map_err(|e| ObjectError::Serialize(e.to_string()))?;
    files.insert(KUSTOMIZATION.to_owned(), kustomization.into_bytes());
    Ok(files
        .into_iter()
        .map(|(path, content)| GeneratedFile {
            path,
            media_type: MEDIA_TYPE.to_owned(),
            content,
        })
        .collect())
}
