//! A small stateful fake Kubernetes API server on loopback, for driver tests: wiremock's
//! `MockServer` (already our test HTTP server) with one `Respond` implementation that keeps the
//! objects. It serves GET (object and list, with equality label selectors), server-side apply
//! (`PATCH` with `application/apply-patch+yaml`: create or merge, `resourceVersion` bumped only
//! when the content changes, `managedFields` recording the manager) and DELETE (finalizers
//! respected, namespaces cascade) for the resource types the vCluster driver uses. Tests drive
//! the parts a real cluster's controllers would play (vCluster becoming ready, a failing Helm
//! job, finalizers) through its helpers, inject faults, and inspect objects and write counts.
//!
//! Simplifications: an apply merges the applied fields over the stored object (objects merge
//! recursively, lists and scalars are replaced) instead of tracking field ownership, so a field
//! dropped from a later apply is kept; POST/PUT are not served (the driver never uses them).
#![allow(dead_code)]

use base64::Engine as _;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// A resource type the fake serves.
struct ResourceType {
    group_version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
}

const RESOURCE_TYPES: &[ResourceType] = &[
    ResourceType {
        group_version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        namespaced: false,
    },
    ResourceType {
        group_version: "v1",
        kind: "ResourceQuota",
        plural: "resourcequotas",
        namespaced: true,
    },
    ResourceType {
        group_version: "v1",
        kind: "LimitRange",
        plural: "limitranges",
        namespaced: true,
    },
    ResourceType {
        group_version: "v1",
        kind: "Secret",
        plural: "secrets",
        namespaced: true,
    },
    ResourceType {
        group_version: "apps/v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        namespaced: true,
    },
    ResourceType {
        group_version: "networking.k8s.io/v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        namespaced: true,
    },
    ResourceType {
        group_version: "rbac.authorization.k8s.io/v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        namespaced: true,
    },
    ResourceType {
        group_version: "helm.cattle.io/v1",
        kind: "HelmChart",
        plural: "helmcharts",
        namespaced: true,
    },
];

fn resource_type(plural: &str) -> &'static ResourceType {
    RESOURCE_TYPES
        .iter()
        .find(|t| t.plural == plural)
        .unwrap_or_else(|| panic!("the fake does not serve {plural}"))
}

/// (plural, namespace — empty for cluster-scoped objects, name)
type Key = (String, String, String);

/// An error the fake answers with instead of serving matching requests.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP method to match (`PATCH`, `GET`, `DELETE`), any when `None`.
    pub method: Option<&'static str>,
    /// Resource plural to match (`resourcequotas`), any when `None`.
    pub plural: Option<&'static str>,
    /// HTTP status code.
    pub code: u16,
    /// Status `reason` (`Forbidden`, `InternalError`, `Conflict`).
    pub reason: &'static str,
    /// Status `message`.
    pub message: String,
}

/// One request the fake received.
#[derive(Debug, Clone)]
pub struct RecordedRequest {
    /// HTTP method.
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<Key, Value>,
    last_resource_version: u64,
    writes: u64,
    changes: u64,
    faults: Vec<Fault>,
    unserved: BTreeSet<String>,
    requests: Vec<RecordedRequest>,
}

/// The fake API server. Dropping it stops it.
pub struct FakeKube {
    server: MockServer,
    state: Arc<Mutex<State>>,
}

struct Handler(Arc<Mutex<State>>);

impl Respond for Handler {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        lock(&self.0).handle(request)
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeKube {
    /// Starts a fake holding only the namespaces every cluster has (`default`, `kube-system`).
    pub async fn start() -> Self {
        let server = MockServer::builder()
            .disable_request_recording()
            .start()
            .await;
        let state = Arc::new(Mutex::new(State::default()));
        Mock::given(any())
            .respond_with(Handler(state.clone()))
            .mount(&server)
            .await;
        let fake = Self { server, state };
        for namespace in ["default", "kube-system"] {
            fake.put(
                "namespaces",
                "",
                namespace,
                json!({ "status": { "phase": "Active" } }),
            );
        }
        fake
    }

    /// `http://127.0.0.1:<port>`.
    pub fn uri(&self) -> String {
        self.server.uri()
    }

    /// A kube client for this server (plain HTTP, no credentials).
    pub fn client(&self) -> kube::Client {
        gantry::install_crypto_provider();
        let config = kube::Config::new(self.uri().parse().expect("the fake's URI is valid"));
        kube::Client::try_from(config).expect("a client for the fake")
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// A stored object (`namespace` empty for cluster-scoped ones).
    pub fn get(&self, plural: &str, namespace: &str, name: &str) -> Option<Value> {
        self.state()
            .objects
            .get(&key(plural, namespace, name))
            .cloned()
    }

    /// Names of the stored objects of one type in one namespace.
    pub fn names(&self, plural: &str, namespace: &str) -> Vec<String> {
        self.state()
            .objects
            .keys()
            .filter(|(p, ns, _)| p == plural && ns == namespace)
            .map(|(_, _, name)| name.clone())
            .collect()
    }

    /// Every stored object's `resourceVersion`, keyed `plural/namespace/name`.
    pub fn resource_versions(&self) -> BTreeMap<String, String> {
        self.state()
            .objects
            .iter()
            .map(|((plural, ns, name), object)| {
                (
                    format!("{plural}/{ns}/{name}"),
                    resource_version(object).to_owned(),
                )
            })
            .collect()
    }

    /// Write requests received (apply and delete), whether or not they changed anything.
    pub fn writes(&self) -> u64 {
        self.state().writes
    }

    /// Writes that changed stored content.
    pub fn changes(&self) -> u64 {
        self.state().changes
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Stores an object as a controller would (merging `object` over what is stored), with a
    /// new `resourceVersion`. `apiVersion`, `kind` and name/namespace metadata are filled in.
    pub fn put(&self, plural: &str, namespace: &str, name: &str, object: Value) {
        let mut state = self.state();
        let key = key(plural, namespace, name);
        let mut merged = state
            .objects
            .get(&key)
            .cloned()
            .unwrap_or_else(|| skeleton(resource_type(plural), namespace, name));
        merge(&mut merged, object);
        state.store(key, merged);
    }

    /// Removes an object outright (ignoring finalizers, as when a controller finishes);
    /// removing a namespace removes its objects. Whether it existed.
    pub fn remove(&self, plural: &str, namespace: &str, name: &str) -> bool {
        self.state().remove(&key(plural, namespace, name))
    }

    /// Gives an object finalizers, so that DELETE only marks it as terminating.
    pub fn set_finalizers(&self, plural: &str, namespace: &str, name: &str, finalizers: &[&str]) {
        self.put(
            plural,
            namespace,
            name,
            json!({ "metadata": { "finalizers": finalizers } }),
        );
    }

    /// Plays vCluster coming up: the release's StatefulSet with `ready` of 1 replicas ready.
    pub fn set_statefulset(&self, namespace: &str, release: &str, ready: i32) {
        self.put(
            "statefulsets",
            namespace,
            release,
            json!({
                "metadata": { "labels": { "app": "vcluster", "release": release } },
                "spec": {
                    "replicas": 1,
                    "serviceName": format!("{release}-headless"),
                    "selector": { "matchLabels": { "app": "vcluster", "release": release } },
                    "template": { "metadata": { "labels": { "app": "vcluster", "release": release } } }
                },
                "status": { "replicas": 1, "readyReplicas": ready, "availableReplicas": ready }
            }),
        );
    }

    /// Plays vCluster writing its kubeconfig Secret `vc-<release>`; `data` values are raw
    /// (the fake base64-encodes them as the API does).
    pub fn put_kubeconfig_secret(&self, namespace: &str, release: &str, data: &[(&str, &str)]) {
        let engine = base64::engine::general_purpose::STANDARD;
        let data: Map<String, Value> = data
            .iter()
            .map(|(k, v)| ((*k).to_owned(), Value::String(engine.encode(v))))
            .collect();
        self.put(
            "secrets",
            namespace,
            &format!("vc-{release}"),
            json!({ "type": "Opaque", "data": data }),
        );
    }

    /// Plays a ready vCluster: its StatefulSet ready and its kubeconfig Secret written (with a
    /// kubeconfig whose CA is `ca_pem`, and `ca_pem` as `certificate-authority`).
    pub fn mark_vcluster_ready(&self, namespace: &str, release: &str, ca_pem: &str) {
        self.set_statefulset(namespace, release, 1);
        let kubeconfig = kubeconfig("https://localhost:8443", Some(ca_pem), "vcluster-token");
        self.put_kubeconfig_secret(
            namespace,
            release,
            &[("config", &kubeconfig), ("certificate-authority", ca_pem)],
        );
    }

    /// Plays helm-controller giving up on a chart: condition `Failed=True` with `message`.
    pub fn fail_helm_chart(&self, namespace: &str, name: &str, message: &str) {
        self.put(
            "helmcharts",
            namespace,
            name,
            json!({
                "status": {
                    "jobName": format!("helm-install-{name}"),
                    "conditions": [
                        { "type": "JobCreated", "status": "True", "reason": "Job created",
                          "message": format!("Applying HelmChart using Job {namespace}/helm-install-{name}") },
                        { "type": "Failed", "status": "True", "reason": "Job failed", "message": message }
                    ]
                }
            }),
        );
    }

    /// From now on, requests matching `fault` get its error.
    pub fn inject_fault(&self, fault: Fault) {
        self.state().faults.push(fault);
    }

    /// Removes every injected fault.
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// Stops serving a resource type, as a cluster without its CRD: 404 with no object named.
    pub fn stop_serving(&self, plural: &str) {
        self.state().unserved.insert(plural.to_owned());
    }
}

/// A kubeconfig for `server` with a bearer token, and the CA if given (else TLS unchecked).
pub fn kubeconfig(server: &str, ca_pem: Option<&str>, token: &str) -> String {
    let cluster = match ca_pem {
        Some(pem) => json!({
            "server": server,
            "certificate-authority-data": base64::engine::general_purpose::STANDARD.encode(pem),
        }),
        None => json!({ "server": server, "insecure-skip-tls-verify": true }),
    };
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{ "name": "vcluster", "cluster": cluster }],
        "users": [{ "name": "vcluster", "user": { "token": token } }],
        "contexts": [{ "name": "vcluster", "context": { "cluster": "vcluster", "user": "vcluster" } }],
        "current-context": "vcluster",
    });
    serde_saphyr::to_string(&config).expect("a kubeconfig serializes")
}

fn key(plural: &str, namespace: &str, name: &str) -> Key {
    (plural.to_owned(), namespace.to_owned(), name.to_owned())
}

fn skeleton(rt: &ResourceType, namespace: &str, name: &str) -> Value {
    let mut metadata = json!({ "name": name });
    if rt.namespaced {
        metadata["namespace"] = json!(namespace);
    }
    json!({ "apiVersion": rt.group_version, "kind": rt.kind, "metadata": metadata })
}

fn resource_version(object: &Value) -> &str {
    object
        .pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// Merges `patch` into `target`: objects recursively, everything else replaced.
fn merge(target: &mut Value, patch: Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (k, v) in patch {
                match target.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        target.insert(k, v);
                    }
                }
            }
        }
        (target, patch) => *target = patch,
    }
}

/// The object without the fields the server changes on every write.
fn content(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("resourceVersion");
    }
    object
}

fn status_response(code: u16, reason: &str, message: &str, details: Value) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "details": details,
        "code": code,
    }))
}

/// What a real API server answers for a path it does not serve (e.g. a missing CRD).
fn not_served() -> ResponseTemplate {
    status_response(
        404,
        "NotFound",
        "the server could not find the requested resource",
        json!({}),
    )
}

fn not_found(rt: &ResourceType, name: &str) -> ResponseTemplate {
    let group = rt
        .group_version
        .rsplit_once('/')
        .map(|(g, _)| g)
        .unwrap_or_default();
    let qualified = if group.is_empty() {
        rt.plural.to_owned()
    } else {
        format!("{}.{group}", rt.plural)
    };
    status_response(
        404,
        "NotFound",
        &format!("{qualified} \"{name}\" not found"),
        json!({ "name": name, "group": group, "kind": rt.plural }),
    )
}

fn bad_request(message: &str) -> ResponseTemplate {
    status_response(400, "BadRequest", message, json!({}))
}

/// Whether an object's labels satisfy a selector of `k=v`, `k==v`, `k!=v`, `k` and `!k` terms.
fn selector_matches(selector: &str, object: &Value) -> bool {
    let labels = object
        .pointer("/metadata/labels")
        .and_then(Value::as_object);
    let label = |k: &str| labels.and_then(|l| l.get(k.trim())).and_then(Value::as_str);
    selector
        .split(',')
        .filter(|t| !t.trim().is_empty())
        .all(|term| {
            if let Some((k, v)) = term.split_once("!=") {
                label(k) != Some(v.trim())
            } else if let Some((k, v)) = term.split_once("==").or_else(|| term.split_once('=')) {
                label(k) == Some(v.trim())
            } else if let Some(k) = term.trim().strip_prefix('!') {
                label(k).is_none()
            } else {
                label(term).is_some()
            }
        })
}

impl State {
    fn store(&mut self, key: Key, mut object: Value) -> bool {
        if let Some(old) = self.objects.get(&key) {
            if content(old) == content(&object) {
                return false;
            }
        }
        self.last_resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(self.last_resource_version.to_string());
        if object.pointer("/metadata/uid").is_none() {
            object["metadata"]["uid"] = json!(format!("uid-{}", self.last_resource_version));
            object["metadata"]["creationTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        self.objects.insert(key, object);
        self.changes += 1;
        true
    }

    fn remove(&mut self, key: &Key) -> bool {
        let existed = self.objects.remove(key).is_some();
        if existed && key.0 == "namespaces" {
            let namespace = key.2.clone();
            self.objects.retain(|(_, ns, _), _| *ns != namespace);
        }
        if existed {
            self.changes += 1;
        }
        existed
    }

    fn handle(&mut self, request: &Request) -> ResponseTemplate {
        let method = request.method.as_str().to_owned();
        let path = request.url.path().to_owned();
        let query: BTreeMap<String, String> = request.url.query_pairs().into_owned().collect();
        self.requests.push(RecordedRequest {
            method: method.clone(),
            path: match request.url.query() {
                Some(q) => format!("{path}?{q}"),
                None => path.clone(),
            },
            authorization: request
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
        });

        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group_version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => ((*version).to_owned(), rest),
            ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
            _ => return not_served(),
        };
        let (namespace, plural, name) = match rest {
            ["namespaces"] => ("", "namespaces", None),
            ["namespaces", name] => ("", "namespaces", Some(*name)),
            ["namespaces", ns, plural] => (*ns, *plural, None),
            ["namespaces", ns, plural, name] => (*ns, *plural, Some(*name)),
            [plural] => ("", *plural, None),
            [plural, name] => ("", *plural, Some(*name)),
            _ => return not_served(),
        };
        let Some(rt) = RESOURCE_TYPES.iter().find(|t| {
            t.plural == plural
                && t.group_version == group_version
                && !self.unserved.contains(plural)
        }) else {
            return not_served();
        };
        // A namespaced object addressed without a namespace, or a cluster-scoped one with one.
        if name.is_some() && rt.namespaced == namespace.is_empty() {
            return not_served();
        }
        if let Some(fault) = self
            .faults
            .iter()
            .find(|f| f.method.is_none_or(|m| m == method) && f.plural.is_none_or(|p| p == plural))
        {
            return status_response(fault.code, fault.reason, &fault.message, json!({}));
        }

        match (method.as_str(), name) {
            ("GET", Some(name)) => match self.objects.get(&key(plural, namespace, name)) {
                Some(object) => ResponseTemplate::new(200).set_body_json(object),
                None => not_found(rt, name),
            },
            ("GET", None) => self.list(rt, namespace, query.get("labelSelector")),
            ("PATCH", Some(name)) => {
                self.writes += 1;
                self.apply(rt, namespace, name, request, &query)
            }
            ("DELETE", Some(name)) => {
                self.writes += 1;
                self.delete(rt, namespace, name)
            }
            _ => status_response(
                405,
                "MethodNotAllowed",
                "the fake serves GET, PATCH (apply) and DELETE",
                json!({}),
            ),
        }
    }

    fn list(
        &self,
        rt: &ResourceType,
        namespace: &str,
        selector: Option<&String>,
    ) -> ResponseTemplate {
        let items: Vec<&Value> = self
            .objects
            .iter()
            .filter(|((plural, ns, _), _)| {
                plural == rt.plural && (namespace.is_empty() || ns == namespace)
            })
            .map(|(_, object)| object)
            .filter(|object| selector.is_none_or(|s| selector_matches(s, object)))
            .collect();
        ResponseTemplate::new(200).set_body_json(json!({
            "apiVersion": rt.group_version,
            "kind": format!("{}List", rt.kind),
            "metadata": { "resourceVersion": self.last_resource_version.to_string() },
            "items": items,
        }))
    }

    fn apply(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        request: &Request,
        query: &BTreeMap<String, String>,
    ) -> ResponseTemplate {
        let content_type = request
            .headers
            .get("content-type")
            .and_then(|v| v.to_str().ok());
        if content_type != Some("application/apply-patch+yaml") {
            return status_response(
                415,
                "UnsupportedMediaType",
                &format!("the fake only serves server-side apply, not {content_type:?}"),
                json!({}),
            );
        }
        let Some(manager) = query.get("fieldManager").filter(|m| !m.is_empty()) else {
            return bad_request(
                "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value",
            );
        };
        // kube sends apply bodies as JSON, which is YAML.
        let Ok(mut applied) = serde_json::from_slice::<Value>(&request.body) else {
            return bad_request("the apply body is not JSON");
        };
        if applied.get("apiVersion").and_then(Value::as_str) != Some(rt.group_version)
            || applied.get("kind").and_then(Value::as_str) != Some(rt.kind)
        {
            return bad_request(&format!(
                "apply body must be {} {}",
                rt.group_version, rt.kind
            ));
        }
        if applied.pointer("/metadata/name").and_then(Value::as_str) != Some(name) {
            return bad_request("the name of the object does not match the name on the URL");
        }
        match applied
            .pointer("/metadata/namespace")
            .and_then(Value::as_str)
        {
            Some(ns) if ns != namespace => {
                return bad_request(
                    "the namespace of the object does not match the namespace on the URL",
                )
            }
            _ => {}
        }
        let key = key(rt.plural, namespace, name);
        let existing = self.objects.get(&key).cloned();
        if rt.namespaced {
            let Some(ns) = self.objects.get(&self::key("namespaces", "", namespace)) else {
                return not_found(resource_type("namespaces"), namespace);
            };
            if existing.is_none() && ns.pointer("/metadata/deletionTimestamp").is_some() {
                return status_response(
                    403,
                    "Forbidden",
                    &format!(
                        "{} \"{name}\" is forbidden: unable to create new content in namespace {namespace} because it is being terminated",
                        rt.plural
                    ),
                    json!({ "name": name, "kind": rt.plural }),
                );
            }
            applied["metadata"]["namespace"] = json!(namespace);
        }
        // Status is a subresource: an apply to the object does not touch it.
        if let Some(body) = applied.as_object_mut() {
            body.remove("status");
        }
        let mut object = existing.unwrap_or_else(|| {
            let mut fresh = skeleton(rt, namespace, name);
            if rt.plural == "namespaces" {
                fresh["status"] = json!({ "phase": "Active" });
            }
            fresh
        });
        merge(&mut object, applied);
        object["metadata"]["managedFields"] = json!([{
            "manager": manager,
            "operation": "Apply",
            "apiVersion": rt.group_version,
            "fieldsType": "FieldsV1",
            "fieldsV1": {}
        }]);
        self.store(key.clone(), object);
        ResponseTemplate::new(200).set_body_json(&self.objects[&key])
    }

    fn delete(&mut self, rt: &ResourceType, namespace: &str, name: &str) -> ResponseTemplate {
        let key = key(rt.plural, namespace, name);
        let Some(object) = self.objects.get(&key).cloned() else {
            return not_found(rt, name);
        };
        let has_finalizers = object
            .pointer("/metadata/finalizers")
            .and_then(Value::as_array)
            .is_some_and(|f| !f.is_empty());
        if has_finalizers {
            let mut terminating = object;
            terminating["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
            if rt.plural == "namespaces" {
                terminating["status"] = json!({ "phase": "Terminating" });
            }
            self.store(key.clone(), terminating);
            return ResponseTemplate::new(200).set_body_json(&self.objects[&key]);
        }
        self.remove(&key);
        ResponseTemplate::new(200).set_body_json(object)
    }
}
