//! Node fields naming other nodes: database credentials and ingress paths.

use super::edges::EdgeEntry;
use super::generated::PGPASSWORD;
use super::model::{DatabaseEngine, DatabaseSpec, EdgeKind, IngressSpec, NodeBody, SecretRefSpec};
use super::problems::{NodeEntry, NodeIndex, Problems};
use crate::domain::k8s::names::{check_data_key, check_env_var_name};
use std::collections::{HashMap, HashSet};

/// Node fields naming other nodes: database credentials and ingress paths.
pub(super) fn check_references(
    nodes: &[NodeEntry],
    edges: &[Option<EdgeEntry>],
    index: &NodeIndex,
    p: &mut Problems,
) {
    let kind_of = |id: &str| index.get(id).and_then(|n| nodes.get(n)).map(|n| n.kind);
    // Every exposes edge by its ingress, sound or not (a broken one is reported already and
    // should not add "routes nothing"); grouped once so each ingress does not scan every edge.
    let mut exposes: HashMap<usize, Vec<(usize, &EdgeEntry)>> = HashMap::new();
    for (j, edge) in edges.iter().enumerate() {
        if let Some(edge) = edge.as_ref().filter(|e| e.kind == EdgeKind::Exposes) {
            exposes.entry(edge.from).or_default().push((j, edge));
        }
    }
    for (i, node) in nodes.iter().enumerate() {
        match &node.body {
            Some(NodeBody::Database(spec)) => {
                if let Some(credentials) = &spec.credentials {
                    match kind_of(credentials) {
                        None => p.node(i, "/spec/credentials", format!("no node `{credentials}`")),
                        Some(Some("secret_ref")) => {
                            let secret = index
                                .get(credentials)
                                .and_then(|n| nodes.get(n))
                                .and_then(|n| n.body.as_ref());
                            if let Some(NodeBody::SecretRef(secret)) = secret {
                                check_credentials(i, spec, credentials, secret, p);
                            }
                        }
                        Some(None) => {}
                        Some(Some(other)) => p.node(
                            i,
                            "/spec/credentials",
                            format!("`{credentials}` is a {other}, not a secret_ref"),
                        ),
                    }
                }
            }
            Some(NodeBody::Ingress(spec)) => {
                let exposes = exposes.get(&i).map(Vec::as_slice).unwrap_or_default();
                check_ingress_routes(i, spec, exposes, nodes, index, p)
            }
            _ => {}
        }
    }
}

/// The Secret a database's `credentials` names, as the database and its backup use it: the
/// password is always read by its key, so a Secret listing its keys must list it; for postgres
/// and mysql the other listed keys become variables too, so they must be variable names and
/// not ones the pods set themselves.
fn check_credentials(
    i: usize,
    spec: &DatabaseSpec,
    secret_id: &str,
    secret: &SecretRefSpec,
    p: &mut Problems,
) {
    let engine = spec.engine;
    let password = engine.password_key();
    if !secret.keys.is_empty() && !secret.keys.iter().any(|k| k == password) {
        p.node(
            i,
            "/spec/credentials",
            format!(
                "`{secret_id}` lists its keys without `{password}`, which {} needs; add it to \
                 its `keys`",
                engine.as_str()
            ),
        );
    }
    if !engine.injects_listed_keys() {
        return;
    }
    let mut taken: Vec<&str> = engine.own_env().to_vec();
    taken.extend_from_slice(engine.credential_aliases());
    if engine == DatabaseEngine::Postgres && spec.backup.is_some() {
        taken.push(PGPASSWORD);
    }
    for key in secret.keys.iter().filter(|k| *k != password) {
        if check_data_key(key).is_err() {
            // Reported at the secret_ref.
            continue;
        }
        if secret.mount_path.is_some() {
            // Without a mount path the key was checked as a variable name at the secret_ref.
            if let Err(detail) = check_env_var_name(key) {
                p.node(
                    i,
                    "/spec/credentials",
                    format!(
                        "`{secret_id}` lists the key `{key}`, which becomes an environment \
                         variable of the database: {detail}"
                    ),
                );
                continue;
            }
        }
        if taken.contains(&key.as_str()) {
            p.node(
                i,
                "/spec/credentials",
                format!(
                    "`{secret_id}` lists the key `{key}`, which the generated {} pods set \
                     themselves; leave it out of `keys`",
                    engine.as_str()
                ),
            );
        }
    }
}

/// An ingress's paths name services it exposes, and at most one service is served at `/`.
fn check_ingress_routes(
    i: usize,
    spec: &IngressSpec,
    exposes: &[(usize, &EdgeEntry)],
    nodes: &[NodeEntry],
    index: &NodeIndex,
    p: &mut Problems,
) {
    let ingress_id = nodes.get(i).and_then(|n| n.id).unwrap_or_default();
    let exposed: HashSet<usize> = exposes.iter().map(|(_, e)| e.to).collect();
    if exposes.is_empty() {
        p.node(
            i,
            "",
            format!("ingress `{ingress_id}` routes nothing; add an `exposes` edge to a service"),
        );
    }
    let mut named = HashSet::new();
    for (j, path) in spec.paths.iter().enumerate() {
        let pointer = format!("/spec/paths/{j}/service");
        let service = path.service.as_str();
        let Some(target) = index.get(service) else {
            p.node(i, &pointer, format!("no node `{service}`"));
            continue;
        };
        named.insert(target);
        match nodes.get(target).and_then(|n| n.kind) {
            Some("service") => {}
            Some(other) => {
                p.node(
                    i,
                    &pointer,
                    format!("`{service}` is a {other}, not a service"),
                );
                continue;
            }
            None => continue,
        }
        if !exposed.contains(&target) {
            p.node(
                i,
                &pointer,
                format!(
                    "ingress `{ingress_id}` has no `exposes` edge to `{service}`; add \
                     {{\"from\": \"{ingress_id}\", \"to\": \"{service}\", \"kind\": \"exposes\"}}"
                ),
            );
        }
    }
    // A service exposed but named by no path is served at `/`; two would collide there.
    let mut root_owner: Option<String> = spec
        .paths
        .iter()
        .find(|path| path.path == "/")
        .map(|path| path.service.clone());
    for (j, edge) in exposes.iter().filter(|(_, e)| e.sound) {
        if named.contains(&edge.to) {
            continue;
        }
        let to_id = nodes.get(edge.to).and_then(|n| n.id).unwrap_or_default();
        match &root_owner {
            Some(owner) => p.edge(
                *j,
                "",
                format!(
                    "`{to_id}` is named by no path of ingress `{ingress_id}`, so it would be \
                     served at `/`, which `{owner}` already is; add a `paths` entry for it"
                ),
            ),
            None => root_owner = Some(to_id.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::domain::graph::test_support::{assert_problem, realistic_with};
    use crate::domain::graph::validate;
    use serde_json::{json, Value};

    #[test]
    fn database_credentials_fit_the_engine() {
        let database = |engine: &str, keys: Value, mount: Option<&str>, backup: bool| {
            let mut secret = json!({"secret_name": "s", "keys": keys});
            if let Some(path) = mount {
                secret["mount_path"] = json!(path);
            }
            let mut spec = json!({"engine": engine, "version": "16", "storage": "1Gi",
                                  "credentials": "creds"});
            if backup {
                spec["backup"] = json!({"schedule": "@daily"});
            }
            json!({"nodes": [
                {"id": "db", "kind": "database", "spec": spec},
                {"id": "creds", "kind": "secret_ref", "spec": secret}
            ], "edges": []})
        };
        let credentials = "/nodes/0/spec/credentials";
        assert_problem(
            &json!({"nodes": [{"id": "db", "kind": "database", "spec": {
                "engine": "mysql", "version": "8", "storage": "1Gi"}}], "edges": []}),
            credentials,
            "mysql needs credentials",
        );
        assert_problem(
            &database("postgres", json!(["POSTGRES_USER"]), None, false),
            credentials,
            "without `POSTGRES_PASSWORD`",
        );
        assert_problem(
            &database(
                "postgres",
                json!(["POSTGRES_PASSWORD", "PGDATA"]),
                None,
                false,
            ),
            credentials,
            "`PGDATA`, which the generated postgres pods set",
        );
        assert_problem(
            &database(
                "postgres",
                json!(["POSTGRES_PASSWORD", "PGPASSWORD"]),
                None,
                true,
            ),
            credentials,
            "`PGPASSWORD`",
        );
        assert!(
            validate(
                &database(
                    "postgres",
                    json!(["POSTGRES_PASSWORD", "PGPASSWORD"]),
                    None,
                    false
                ),
                ""
            )
            .is_ok(),
            "PGPASSWORD is only set in backup pods"
        );
        assert_problem(
            &database(
                "mysql",
                json!(["MYSQL_ROOT_PASSWORD", "1x"]),
                Some("/run/s"),
                false,
            ),
            credentials,
            "becomes an environment variable",
        );
        // Without a mount path the key is reported where it is listed.
        assert_problem(
            &database("mysql", json!(["MYSQL_ROOT_PASSWORD", "1x"]), None, false),
            "/nodes/1/spec/keys/1",
            "becomes an environment variable",
        );
        // Redis injects only the password, so other keys may be anything.
        assert!(validate(
            &database("redis", json!(["REDIS_PASSWORD", "PGDATA"]), None, false),
            ""
        )
        .is_ok());
    }

    #[test]
    fn ingress_routes() {
        // Two exposed services named by no path would both be served at `/`.
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"]["paths"] = json!([]);
        });
        assert_problem(
            &document,
            "/edges/1",
            "served at `/`, which `web` already is",
        );
        // A path at `/` owns the root too.
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"]["paths"] = json!([{"path": "/", "service": "web"}]);
        });
        assert_problem(&document, "/edges/1", "which `web` already is");
        // One unnamed service is served at `/`.
        let document = realistic_with(|d| {
            d["nodes"][0]["spec"]["paths"] = json!([{"path": "/api", "service": "api"}]);
        });
        assert!(validate(&document, "").is_ok());
        // An ingress that exposes nothing routes nothing.
        let document = json!({"nodes": [{"id": "edge", "kind": "ingress",
                                         "spec": {"host": "example.com"}}], "edges": []});
        assert_problem(&document, "/nodes/0", "routes nothing");
    }
}
