//! What the templates would refuse: node ids clashing with names they derive, and edges putting
//! into pods what the pods already hold.

use super::edges::EdgeEntry;
use super::generated::{connects_env, database_data_claim, BACKUP_SUFFIX, TMP_PATH, TMP_VOLUME};
use super::model::{EdgeKind, NodeBody};
use super::problems::{escape_pointer, NodeEntry, NodeIndex, Place, Problems};
use super::spec::max_replicas;
use crate::domain::k8s::names::{check_data_key, check_env_var_name};
use std::collections::HashMap;

/// Node ids must not be names the templates derive for another node's objects: a database
/// with `backup` names its backup CronJob, claim and pods `<id>-backup`, and its StatefulSet
/// creates the claim `data-<id>-0`, which a volume of that name would replace. Either would
/// make two nodes share objects or pods; the problem is at the later node's id.
pub(super) fn check_generated_names(nodes: &[NodeEntry], p: &mut Problems) {
    // Derived name → (database node, what it names, the only kind it clashes with).
    let mut derived: HashMap<String, (usize, String, Option<&str>)> = HashMap::new();
    for (d, node) in nodes.iter().enumerate() {
        let (Some(id), Some(NodeBody::Database(spec))) = (node.id, &node.body) else {
            continue;
        };
        if spec.backup.is_some() {
            derived.insert(
                format!("{id}{BACKUP_SUFFIX}"),
                (
                    d,
                    format!("the backup CronJob and claim of database `{id}`"),
                    None,
                ),
            );
        }
        derived.insert(
            database_data_claim(id),
            (
                d,
                format!("the data claim of database `{id}`"),
                Some("volume"),
            ),
        );
    }
    if derived.is_empty() {
        return;
    }
    for (n, node) in nodes.iter().enumerate() {
        let Some(id) = node.id else {
            continue;
        };
        let Some((d, what, only)) = derived.get(id) else {
            continue;
        };
        if *d == n || only.is_some_and(|kind| node.kind != Some(kind)) {
            continue;
        }
        if n > *d {
            p.node(
                n,
                "/id",
                format!("`{id}` is already the name of {what} (node {d}); rename one of them"),
            );
        } else {
            p.node(
                *d,
                "/id",
                format!(
                    "`{id}` would be the name of {what}, but node {n} has that id; rename one of \
                     them"
                ),
            );
        }
    }
}

/// Who sets an environment variable of a pod, for the problem naming a clash.
struct EnvSetter {
    /// Where a clash with an earlier setter is reported.
    place: Place,
    /// The pointer suffix below the node or edge.
    suffix: String,
    /// How a later clash names this setter.
    name: String,
}

/// The variables set so far in one pod, and by whom.
#[derive(Default)]
struct PodEnv(HashMap<String, String>);

impl PodEnv {
    /// Records `var` as set by `setter`, reporting it when something set it earlier. Setters
    /// are added in the order the container sees them, so the later one is the clash.
    fn set(&mut self, var: &str, setter: &EnvSetter, pod: &str, p: &mut Problems) {
        match self.0.get(var) {
            Some(first) => {
                let detail = format!(
                    "sets `{var}` in `{pod}`'s container, already set there by {first}; rename \
                     one of them"
                );
                match setter.place {
                    Place::Node(i) => p.node(i, &setter.suffix, detail),
                    Place::Edge(j) => p.edge(j, &setter.suffix, detail),
                    Place::Root => p.root(&setter.suffix, detail),
                }
            }
            None => {
                self.0.insert(var.to_owned(), setter.name.clone());
            }
        }
    }
}

/// What edges put into pods, checked against what the pods hold already: pod volume names and
/// mount paths the generated pods use themselves, environment variables set twice in one
/// container (edges, credentials, the node's own `env`), and single-node volumes on services
/// that may run several replicas.
pub(super) fn check_pods(
    nodes: &[NodeEntry],
    edges: &[Option<EdgeEntry>],
    index: &NodeIndex,
    p: &mut Problems,
) {
    let id_of = |n: usize| nodes.get(n).and_then(|node| node.id).unwrap_or_default();
    let body_of = |n: usize| nodes.get(n).and_then(|node| node.body.as_ref());

    // What each runnable node's pod sets before any edge: a database's own variables and
    // credentials. Clashes among those are the credentials' problem (check_references).
    let mut env: HashMap<usize, PodEnv> = HashMap::new();
    for (t, node) in nodes.iter().enumerate() {
        let Some(NodeBody::Database(spec)) = &node.body else {
            continue;
        };
        let pod = env.entry(t).or_default();
        let engine = spec.engine;
        for var in engine.own_env() {
            pod.0
                .insert((*var).to_owned(), format!("the {} image", engine.as_str()));
        }
        let secret = spec
            .credentials
            .as_deref()
            .and_then(|id| index.get(id))
            .and_then(body_of);
        if let Some(NodeBody::SecretRef(secret)) = secret {
            let by = "its credentials".to_owned();
            let mut vars: Vec<&str> = vec![engine.password_key()];
            vars.extend_from_slice(engine.credential_aliases());
            if engine.injects_listed_keys() {
                vars.extend(secret.keys.iter().map(String::as_str));
            }
            for var in vars {
                pod.0.entry(var.to_owned()).or_insert_with(|| by.clone());
            }
        }
    }

    for (j, edge) in edges.iter().enumerate() {
        let Some(edge) = edge.as_ref().filter(|e| e.sound) else {
            continue;
        };
        let (from_id, to_id) = (id_of(edge.from), id_of(edge.to));
        match edge.kind {
            EdgeKind::Connects => {
                let setter = EnvSetter {
                    place: Place::Edge(j),
                    suffix: String::new(),
                    name: format!("edge {j} (connects to `{to_id}`)"),
                };
                let pod = env.entry(edge.from).or_default();
                for var in connects_env(to_id) {
                    pod.set(&var, &setter, from_id, p);
                }
            }
            EdgeKind::Mounts => {
                let (Some(source), Some(target)) = (body_of(edge.from), body_of(edge.to)) else {
                    continue;
                };
                check_mount_into_pod(j, from_id, source, to_id, target, p);
                if let NodeBody::SecretRef(secret) = source {
                    if secret.mount_path.is_none() {
                        let setter = EnvSetter {
                            place: Place::Edge(j),
                            suffix: String::new(),
                            name: format!("edge {j} (secret_ref `{from_id}`)"),
                        };
                        let pod = env.entry(edge.to).or_default();
                        // Malformed keys are reported at the secret_ref; only sound ones count.
                        for key in secret.keys.iter().filter(|key| {
                            check_data_key(key).is_ok() && check_env_var_name(key).is_ok()
                        }) {
                            pod.set(key, &setter, to_id, p);
                        }
                    }
                }
            }
            EdgeKind::DependsOn => {
                // The wait for the target is an init container `wait-for-<target>`, which may
                // not share its name with the workload's own container (named by its id).
                if from_id == format!("wait-for-{to_id}") {
                    p.edge(
                        j,
                        "",
                        format!(
                            "`{from_id}` would get an init container `wait-for-{to_id}` named \
                             like its own container; rename the node"
                        ),
                    );
                }
            }
            EdgeKind::Exposes => {}
        }
    }

    // The node's own `env` comes last in the container, after everything edges inject.
    for (t, node) in nodes.iter().enumerate() {
        let own = match &node.body {
            Some(NodeBody::Service(spec)) => &spec.env,
            Some(NodeBody::Job(spec)) => &spec.env,
            Some(NodeBody::CronJob(spec)) => &spec.env,
            _ => continue,
        };
        let Some(pod) = env.get_mut(&t) else {
            // Nothing injected, so nothing to clash with.
            continue;
        };
        for var in own.keys() {
            let setter = EnvSetter {
                place: Place::Node(t),
                suffix: format!("/spec/env/{}", escape_pointer(var)),
                name: "its `env`".to_owned(),
            };
            pod.set(var, &setter, id_of(t), p);
        }
    }
}

/// One `mounts` edge `j` of `source` into `target`'s pod: the pod volume it adds (named after
/// the source) and its path must not be ones the pod uses itself, and a single-node volume
/// cannot serve a service that may run replicas on several nodes.
fn check_mount_into_pod(
    j: usize,
    source_id: &str,
    source: &NodeBody,
    target_id: &str,
    target: &NodeBody,
    p: &mut Problems,
) {
    let path = match source {
        NodeBody::Volume(spec) => Some(spec.mount_path.as_str()),
        NodeBody::Config(spec) => spec.mount_path.as_deref(),
        NodeBody::SecretRef(spec) => spec.mount_path.as_deref(),
        _ => None,
    };
    // Without a path the source is injected as variables and adds no pod volume.
    let Some(path) = path else {
        return;
    };
    let own = match target {
        NodeBody::Service(_) | NodeBody::Job(_) | NodeBody::CronJob(_) => {
            vec![(TMP_VOLUME, TMP_PATH)]
        }
        NodeBody::Database(spec) => spec.engine.pod_volumes(),
        _ => Vec::new(),
    };
    if let Some((_, used_at)) = own.iter().find(|(name, _)| *name == source_id) {
        p.edge(
            j,
            "",
            format!(
                "would add a pod volume named `{source_id}` to `{target_id}`, whose pod already \
                 has one by that name (for `{used_at}`); rename `{source_id}`"
            ),
        );
    }
    let normalized = path.trim_end_matches('/');
    if let Some((name, _)) = own.iter().find(|(_, at)| *at == normalized) {
        p.edge(
            j,
            "",
            format!(
                "mount path `{path}` on `{target_id}` is where its pod already mounts its own \
                 `{name}` volume; choose another path"
            ),
        );
    }
    if let (NodeBody::Volume(volume), NodeBody::Service(service)) = (source, target) {
        let mode = volume.access_mode.as_deref().unwrap_or("ReadWriteOnce");
        let replicas = max_replicas(service);
        if mode == "ReadWriteOnce" && replicas > 1 {
            p.edge(
                j,
                "",
                format!(
                    "mounts the ReadWriteOnce volume `{source_id}` into `{target_id}`, which may \
                     run {replicas} replicas on different nodes; use ReadWriteMany or one replica"
                ),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::graph::test_support::{assert_problem, problems};
    use crate::domain::graph::validate;
    use serde_json::json;

    #[test]
    fn ids_clash_with_names_a_database_generates() {
        let document = json!({"nodes": [
            {"id": "db-backup", "kind": "job", "spec": {"image": "x"}},
            {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi", "backup": {"schedule": "@daily"}}},
            {"id": "data-db-0", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/x"}},
            {"id": "cache", "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi"}},
            {"id": "cache-backup", "kind": "cron_job", "spec": {"image": "x",
                                                               "schedule": "@daily"}}
        ], "edges": []});
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert_eq!(pointers, ["/nodes/1/id", "/nodes/2/id"]);
        assert_problem(&document, "/nodes/1/id", "node 0 has that id");
        assert_problem(
            &document,
            "/nodes/2/id",
            "data claim of database `db` (node 1)",
        );
    }

    #[test]
    fn a_workload_named_like_its_wait_container_is_refused() {
        let document = json!({"nodes": [
            {"id": "wait-for-db", "kind": "job", "spec": {"image": "migrate:1"}},
            {"id": "db", "kind": "database", "spec": {"engine": "redis", "version": "7",
                "storage": "1Gi"}}
        ], "edges": [
            {"from": "wait-for-db", "to": "db", "kind": "depends_on"}
        ]});
        let errors = validate(&document, "").unwrap_err();
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert_eq!(errors[0].pointer, "/edges/0");
        assert!(errors[0].detail.contains("init container"), "{errors:?}");
    }

    #[test]
    fn edges_must_not_clash_with_what_pods_hold() {
        let document = json!({"nodes": [
            {"id": "web", "kind": "service", "spec": {"image": "x", "replicas": 3,
                "env": {"DB_PORT": "1"}}},
            {"id": "db", "kind": "database", "spec": {"engine": "postgres", "version": "16",
                "storage": "1Gi", "credentials": "creds"}},
            {"id": "creds", "kind": "secret_ref", "spec": {"secret_name": "s"}},
            {"id": "tmp", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/scratch"}},
            {"id": "shared", "kind": "volume", "spec": {"size": "1Gi", "mount_path": "/shared",
                                                        "access_mode": "ReadWriteMany"}},
            {"id": "conf", "kind": "config", "spec": {"data": {}, "mount_path": "/dev/shm/"}},
            {"id": "token", "kind": "secret_ref", "spec": {"secret_name": "t",
                                                          "keys": ["DB_HOST", "POSTGRES_PASSWORD"]}},
            {"id": "edge", "kind": "ingress", "spec": {"host": "x.example.com"}},
            {"id": "dns", "kind": "service", "spec": {"image": "x",
                "ports": [{"port": 53, "protocol": "UDP"}]}}
        ], "edges": [
            {"from": "web", "to": "db", "kind": "connects"},
            {"from": "tmp", "to": "web", "kind": "mounts"},
            {"from": "shared", "to": "web", "kind": "mounts"},
            {"from": "conf", "to": "db", "kind": "mounts"},
            {"from": "token", "to": "web", "kind": "mounts"},
            {"from": "token", "to": "db", "kind": "mounts"},
            {"from": "edge", "to": "dns", "kind": "exposes"}
        ]});
        let pointers: Vec<String> = problems(&document).into_iter().map(|(p, _)| p).collect();
        assert_eq!(
            pointers,
            [
                "/nodes/0/spec/env/DB_PORT",
                "/edges/1",
                "/edges/1",
                "/edges/3",
                "/edges/4",
                "/edges/5",
                "/edges/6/to"
            ]
        );
        assert_problem(
            &document,
            "/nodes/0/spec/env/DB_PORT",
            "edge 0 (connects to `db`)",
        );
        assert_problem(&document, "/edges/1", "pod volume named `tmp`");
        assert_problem(
            &document,
            "/edges/1",
            "ReadWriteOnce volume `tmp` into `web`",
        );
        assert_problem(&document, "/edges/3", "`/dev/shm/` on `db`");
        assert_problem(&document, "/edges/4", "`DB_HOST` in `web`'s container");
        assert_problem(
            &document,
            "/edges/5",
            "already set there by its credentials",
        );
        assert_problem(&document, "/edges/6/to", "first port (53/UDP)");
    }
}
