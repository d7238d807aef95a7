//! The backup executor end to end: the API in process, the publisher and the executor as the
//! real binary with the `simulated` driver (whose "cluster" is the `simulated_objects` table,
//! seeded here as a user's objects would be). On SQLite with file storage and on Postgres +
//! Redis with S3 (a moto server on loopback). Covered: a backup and an unchanged second one
//! (deduplicated), restores (skip, update, dry run with a namespace mapping), a corrupted chunk
//! (restore refused), master-key rotation, retention that never expires the last good backup,
//! hooks with `on_error`, the scheduler (missed runs once, two schedulers at once), a worker
//! killed mid-backup, and the API's refusals (shared plan, bad cron/zone/selector).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;
#[path = "common/fake_kube.rs"]
mod fake_kube;

use base64::Engine;
use common::process::{free_port, gantry, signal, ChildGuard};
use common::{eventually, report_skip, test_redis_url, Backend, TestApp};
use sea_orm::ConnectionTrait;
use serde_json::{json, Value};
use std::process::{Command, Stdio};
use std::time::Duration;

const KEY_A: [u8; 32] = [7u8; 32];
const KEY_B: [u8; 32] = [9u8; 32];

fn b64(key: &[u8; 32]) -> String {
    base64::engine::general_purpose::STANDARD.encode(key)
}

/// Where data, queues and backups live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// SQLite, its queues, a local folder.
    Sqlite,
    /// Postgres, Redis queues, S3 (moto).
    PostgresRedisS3,
}

/// A moto S3 server on loopback, killed when dropped.
struct Moto {
    _child: ChildGuard,
    endpoint: String,
}

impl Moto {
    /// Starts `moto_server` (installed by `.ci/run`); `None` (a skip, a failure under CI)
    /// when it is not installed.
    async fn start(test: &str) -> Option<Moto> {
        let port = free_port();
        let child = match Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => ChildGuard(child),
            Err(e) => {
                report_skip(test, &format!("moto_server is not installed ({e})"));
                return None;
            }
        };
        let endpoint = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        eventually(Duration::from_secs(30), || {
            let client = client.clone();
            let url = format!("{endpoint}/backups");
            async move {
                // Creating the bucket is also the readiness probe.
                match client.put(&url).send().await {
                    Ok(r) if r.status().is_success() => Ok(()),
                    Ok(r) => Err(format!("moto answered {}", r.status())),
                    Err(e) => Err(format!("moto not up: {e}")),
                }
            }
        })
        .await;
        Some(Moto {
            _child: child,
            endpoint,
        })
    }
}

/// The API in process plus the environment of worker processes.
struct Scenario {
    app: TestApp,
    env: Vec<(String, String)>,
    dir: tempfile::TempDir,
    storage_dir: Option<std::path::PathBuf>,
    token: String,
    org: String,
    ws: String,
    db: sea_orm::DatabaseConnection,
    redis: Option<(String, String)>,
    _moto: Option<Moto>,
}

impl Drop for Scenario {
    /// Removes this scenario's Redis keys (they all carry its prefix).
    fn drop(&mut self) {
        let Some((url, prefix)) = &self.redis else {
            return;
        };
        let Ok(mut conn) = redis::Client::open(url.as_str()).and_then(|c| c.get_connection())
        else {
            return;
        };
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}*"))
            .query(&mut conn)
            .unwrap_or_default();
        for chunk in keys.chunks(500) {
            let _: Result<(), _> = redis::cmd("DEL").arg(chunk).query(&mut conn);
        }
    }
}

impl Scenario {
    async fn start(mode: Mode, test: &str) -> Option<Self> {
        let prefix = format!("test-{}:", uuid::Uuid::new_v4().simple());
        let dir = tempfile::tempdir().expect("tempdir");
        let mut env: Vec<(String, String)> = vec![
            ("GANTRY_JOB_HEARTBEAT".into(), "1s".into()),
            ("GANTRY_OUTBOX_POLL_INTERVAL".into(), "100ms".into()),
            ("GANTRY_RECONCILE_INTERVAL".into(), "1s".into()),
            ("GANTRY_BACKUP_SCHEDULER_INTERVAL".into(), "300ms".into()),
            ("GANTRY_QUEUE_PREFIX".into(), prefix.clone()),
            ("GANTRY_EVENT_STREAM".into(), format!("{prefix}events")),
            ("GANTRY_JOB_BACKOFF_BASE".into(), "100ms".into()),
            ("GANTRY_BACKUP_MASTER_KEY".into(), b64(&KEY_A)),
        ];
        let mut redis = None;
        let mut moto = None;
        let mut storage_dir = None;
        let backend = match mode {
            Mode::Sqlite => {
                let path = dir.path().join("backups");
                env.push((
                    "GANTRY_BACKUP_STORAGE".into(),
                    format!("file://{}", path.display()),
                ));
                storage_dir = Some(path);
                Backend::Sqlite
            }
            Mode::PostgresRedisS3 => {
                let url = test_redis_url(test)?;
                let server = Moto::start(test).await?;
                env.push(("REDIS_URL".into(), url.clone()));
                env.push(("GANTRY_BACKUP_STORAGE".into(), "s3://backups/gantry".into()));
                env.push(("AWS_ENDPOINT_URL".into(), server.endpoint.clone()));
                env.push(("AWS_ALLOW_HTTP".into(), "true".into()));
                env.push(("AWS_ACCESS_KEY_ID".into(), "testing".into()));
                env.push(("AWS_SECRET_ACCESS_KEY".into(), "testing".into()));
                env.push(("AWS_REGION".into(), "us-east-1".into()));
                redis = Some((url, prefix));
                moto = Some(server);
                Backend::Postgres
            }
        };
        let app_env: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let app = TestApp::spawn_with(backend, test, &app_env).await?;
        env.push(("DATABASE_URL".into(), app.database_url.clone()));
        let token = app.token("alice");
        let org = app.create_org(&token, "acme").await;
        let ws = app
            .post(
                &format!("/v1/orgs/{org}/workspaces"),
                &token,
                json!({"name": "prod", "plan": "dedicated"}),
            )
            .await;
        ws.assert_status(202);
        let ws = ws.id();
        let db = sea_orm::Database::connect(&app.database_url)
            .await
            .expect("connect");
        Some(Self {
            app,
            env,
            dir,
            storage_dir,
            token,
            org,
            ws,
            db,
            redis,
            _moto: moto,
        })
    }

    /// The publisher and the backup executor as one process, with `overrides` on top.
    fn worker_with(&self, overrides: &[(&str, &str)]) -> ChildGuard {
        let mut cmd = gantry(self.dir.path());
        cmd.args(["--workers", "outbox-publisher,backup-executor"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in &self.env {
            cmd.env(name, value);
        }
        for (name, value) in overrides {
            if value.is_empty() {
                cmd.env_remove(name);
            } else {
                cmd.env(name, value);
            }
        }
        ChildGuard(cmd.spawn().expect("spawn worker"))
    }

    fn worker(&self) -> ChildGuard {
        self.worker_with(&[])
    }

    fn ws_path(&self) -> String {
        format!("/v1/orgs/{}/workspaces/{}", self.org, self.ws)
    }

    /// Puts an object into the simulated vCluster, as a user's `kubectl apply` would.
    async fn seed(&self, object: Value) {
        let kind = object["kind"].as_str().unwrap().to_owned();
        let name = object["metadata"]["name"].as_str().unwrap().to_owned();
        let scope = if kind == "Namespace" {
            format!("vcluster/{name}")
        } else {
            format!(
                "vcluster/{}",
                object["metadata"]["namespace"].as_str().unwrap()
            )
        };
        let backend = self.db.get_database_backend();
        let sql = match backend {
            sea_orm::DatabaseBackend::Postgres => {
                "INSERT INTO simulated_objects (workspace_id, kind, namespace, name, spec, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (workspace_id, kind, namespace, name) \
                 DO UPDATE SET spec = EXCLUDED.spec"
            }
            _ => {
                "INSERT INTO simulated_objects (workspace_id, kind, namespace, name, spec, created_at) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (workspace_id, kind, namespace, name) \
                 DO UPDATE SET spec = excluded.spec"
            }
        };
        self.db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                sql,
                [
                    uuid::Uuid::parse_str(&self.ws).unwrap().into(),
                    kind.into(),
                    scope.into(),
                    name.into(),
                    object.into(),
                    chrono::Utc::now().into(),
                ],
            ))
            .await
            .expect("seed");
    }

    /// The simulated objects of `kind` named `name` in the vCluster namespace `ns`.
    async fn object(&self, kind: &str, ns: &str, name: &str) -> Option<Value> {
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                format!(
                    "SELECT spec FROM simulated_objects WHERE kind = '{kind}' AND \
                     namespace = 'vcluster/{ns}' AND name = '{name}'"
                ),
            ))
            .await
            .expect("query");
        rows.first()
            .map(|row| row.try_get("", "spec").expect("spec"))
    }

    async fn remove(&self, kind: &str, ns: &str, name: &str) {
        self.db
            .execute_unprepared(&format!(
                "DELETE FROM simulated_objects WHERE kind = '{kind}' AND \
                 namespace = 'vcluster/{ns}' AND name = '{name}'"
            ))
            .await
            .expect("delete");
    }

    async fn count(&self, sql: &str) -> i64 {
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                sql.to_owned(),
            ))
            .await
            .expect("count");
        rows[0].try_get_by_index::<i64>(0).expect("n")
    }

    /// A namespace `shop` with configuration, a workload, a database pod, and what a backup
    /// never takes (an event, a controller-owned pod, a service-account token).
    async fn seed_shop(&self) {
        self.seed(json!({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": "shop", "labels": {"team": "a"}}}))
            .await;
        for i in 0..40 {
            self.seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": format!("cfg-{i}"), "namespace": "shop",
                             "labels": {"app": "web"}, "resourceVersion": format!("{i}")},
                "data": {"value": format!("{i}-{}", "x".repeat(2000))}}))
                .await;
        }
        self.seed(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"replicas": 2}, "status": {"readyReplicas": 2}}))
            .await;
        self.seed(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "db-0", "namespace": "shop", "labels": {"app": "db"}}}))
            .await;
        self.seed(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web-abc", "namespace": "shop", "labels": {"app": "web"},
                         "ownerReferences": [{"kind": "ReplicaSet", "name": "web-1", "controller": true}]}}))
            .await;
        self.seed(json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/service-account-token",
            "metadata": {"name": "default-token", "namespace": "shop"}}))
            .await;
        self.seed(json!({"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "ev-1", "namespace": "shop"}}))
            .await;
    }

    async fn request_backup(&self, body: Value) -> String {
        let response = self
            .app
            .post(&format!("{}/backups", self.ws_path()), &self.token, body)
            .await;
        response.assert_status(202);
        assert_eq!(response.body["status"], "pending", "{}", response.text);
        let id = response.id();
        assert_eq!(
            response.header("location"),
            Some(format!("{}/backups/{id}", self.ws_path()).as_str())
        );
        id
    }

    async fn wait_backup(&self, id: &str, statuses: &[&str]) -> Value {
        let path = format!("{}/backups/{id}", self.ws_path());
        eventually(Duration::from_secs(90), || async {
            let response = self.app.get(&path, &self.token).await;
            let status = response.body["status"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            if statuses.contains(&status.as_str()) {
                Ok(response.body)
            } else {
                Err(format!("backup never {statuses:?}: {}", response.text))
            }
        })
        .await
    }

    async fn restore(&self, backup: &str, body: Value) -> Value {
        let response = self
            .app
            .post(
                &format!("{}/backups/{backup}/restore", self.ws_path()),
                &self.token,
                body,
            )
            .await;
        response.assert_status(202);
        let id = response.id();
        let location = response.header("location").unwrap().to_owned();
        assert_eq!(location, format!("{}/restores/{id}", self.ws_path()));
        eventually(Duration::from_secs(90), || async {
            let response = self.app.get(&location, &self.token).await;
            match response.body["status"].as_str() {
                Some("succeeded" | "failed") => Ok(response.body),
                _ => Err(format!("restore never finished: {}", response.text)),
            }
        })
        .await
    }

    async fn create_policy(&self, body: Value) -> String {
        let response = self
            .app
            .post(
                &format!("{}/backup-policies", self.ws_path()),
                &self.token,
                body,
            )
            .await;
        response.assert_status(201);
        response.id()
    }

    /// Event types about `id`, in order.
    async fn events_about(&self, id: &str) -> Vec<String> {
        let response = self
            .app
            .get(
                &format!("/v1/orgs/{}/events?after=0&limit=200", self.org),
                &self.token,
            )
            .await;
        response.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["aggregate"]["id"] == id)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Flips one bit in the middle of one stored chunk (file or S3 storage).
    async fn corrupt_one_chunk(&self) {
        let rows = self
            .db
            .query_all_raw(sea_orm::Statement::from_string(
                self.db.get_database_backend(),
                "SELECT chunk_id FROM backup_chunks ORDER BY chunk_id".to_owned(),
            ))
            .await
            .expect("chunks");
        let id: String = rows[0].try_get("", "chunk_id").expect("chunk_id");
        let flip = |mut bytes: Vec<u8>| {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
            bytes
        };
        match (&self.storage_dir, &self._moto) {
            (Some(root), _) => {
                let path = root.join(&self.org).join(&self.ws).join("chunks").join(&id);
                let bytes = std::fs::read(&path).expect("read chunk");
                std::fs::write(&path, flip(bytes)).expect("write chunk");
            }
            (None, Some(moto)) => {
                use object_store::ObjectStoreExt;
                let store = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name("backups")
                    .with_region("us-east-1")
                    .with_endpoint(&moto.endpoint)
                    .with_allow_http(true)
                    .with_virtual_hosted_style_request(false)
                    .with_access_key_id("testing")
                    .with_secret_access_key("testing")
                    .build()
                    .expect("s3 client");
                let path = object_store::path::Path::from(format!(
                    "gantry/{}/{}/chunks/{id}",
                    self.org, self.ws
                ));
                let bytes = store
                    .get(&path)
                    .await
                    .expect("get chunk")
                    .bytes()
                    .await
                    .expect("chunk body");
                store
                    .put(&path, flip(bytes.to_vec()).into())
                    .await
                    .expect("put chunk");
            }
            (None, None) => unreachable!("every scenario has a storage"),
        }
    }

    /// Sets a policy's next due time, as the scheduler would have left it.
    async fn set_next_run(&self, policy: &str, at: chrono::DateTime<chrono::Utc>) {
        let backend = self.db.get_database_backend();
        self.db
            .execute_raw(sea_orm::Statement::from_sql_and_values(
                backend,
                match backend {
                    sea_orm::DatabaseBackend::Postgres => {
                        "UPDATE backup_policies SET next_run_at = $1 WHERE id = $2"
                    }
                    _ => "UPDATE backup_policies SET next_run_at = ?1 WHERE id = ?2",
                },
                [at.into(), uuid::Uuid::parse_str(policy).unwrap().into()],
            ))
            .await
            .expect("set next_run_at");
    }

    /// Stored chunk files (file storage only).
    fn chunk_files(&self) -> Vec<std::path::PathBuf> {
        let Some(root) = &self.storage_dir else {
            return Vec::new();
        };
        let dir = root.join(&self.org).join(&self.ws).join("chunks");
        std::fs::read_dir(dir)
            .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
            .unwrap_or_default()
    }
}

async fn backup_and_restore(mode: Mode) {
    let Some(s) = Scenario::start(mode, "backup_and_restore").await else {
        return;
    };
    s.seed_shop().await;
    let _worker = s.worker();

    // A first backup stores everything once.
    let first = s.request_backup(json!({})).await;
    let done = s.wait_backup(&first, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let stats = &done["stats"];
    // Namespace + 40 ConfigMaps + Deployment + the db Pod; not the event, the owned pod, the
    // token secret.
    assert_eq!(stats["objects"], 43, "{done}");
    assert!(stats["chunks_new"].as_u64().unwrap() >= 1, "{done}");
    assert!(stats["bytes_logical"].as_u64().unwrap() > 80_000, "{done}");
    assert!(done["key_id"].is_string(), "{done}");
    assert_eq!(
        done["storage"]["prefix"],
        format!("{}/{}", s.org, s.ws),
        "{done}"
    );
    assert_eq!(done["progress"]["step"], "done");
    let location = done["storage"]["location"].as_str().unwrap();
    match mode {
        Mode::Sqlite => assert!(location.starts_with("file://"), "{done}"),
        Mode::PostgresRedisS3 => assert_eq!(location, "s3://backups/gantry", "{done}"),
    }
    let events = eventually(Duration::from_secs(20), || async {
        let events = s.events_about(&first).await;
        if events.len() >= 3 {
            Ok(events)
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    assert_eq!(
        events,
        ["backup.requested", "backup.started", "backup.succeeded"]
    );

    // An unchanged second backup stores no chunk again: only its manifest is new.
    let second = s.request_backup(json!({})).await;
    let again = s.wait_backup(&second, &["succeeded", "failed"]).await;
    assert_eq!(again["status"], "succeeded", "{again}");
    assert_eq!(again["stats"]["chunks_new"], 0, "{again}");
    assert_eq!(
        again["stats"]["chunks_reused"], stats["chunks_new"],
        "{again}"
    );
    let stored = again["stats"]["bytes_stored_new"].as_u64().unwrap();
    let logical = again["stats"]["bytes_logical"].as_u64().unwrap();
    assert!(stored * 100 < logical, "stored {stored} of {logical}");
    assert_eq!(again["key_id"], done["key_id"]);

    // Listing, newest first, with filters.
    let list = s
        .app
        .get(
            &format!("{}/backups?status=succeeded", s.ws_path()),
            &s.token,
        )
        .await;
    list.assert_status(200);
    let ids: Vec<&str> = list.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
    s.app
        .get(&format!("{}/backups?status=nope", s.ws_path()), &s.token)
        .await
        .assert_problem(400);

    // Lose one object, change another: a restore with `skip` brings back the lost one only.
    s.remove("ConfigMap", "shop", "cfg-3").await;
    s.seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "cfg-4", "namespace": "shop"}, "data": {"value": "edited"}}))
        .await;
    let restore = s.restore(&first, json!({"existing": "skip"})).await;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert_eq!(restore["result"]["created"], 1, "{restore}");
    assert_eq!(restore["result"]["skipped"], 42, "{restore}");
    assert_eq!(restore["result"]["failed"], json!([]));
    let back = s
        .object("ConfigMap", "shop", "cfg-3")
        .await
        .expect("restored");
    assert!(back["data"]["value"].as_str().unwrap().starts_with("3-"));
    assert!(back["metadata"].get("resourceVersion").is_none(), "{back}");
    assert_eq!(
        s.object("ConfigMap", "shop", "cfg-4").await.unwrap()["data"]["value"],
        "edited"
    );

    // `update` puts the backed-up version back.
    let restore = s
        .restore(
            &first,
            json!({"existing": "update", "namespaces": ["shop"]}),
        )
        .await;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert_eq!(restore["result"]["updated"], 43, "{restore}");
    assert!(
        s.object("ConfigMap", "shop", "cfg-4").await.unwrap()["data"]["value"]
            .as_str()
            .unwrap()
            .starts_with("4-")
    );

    // A dry run into a renamed namespace lists what it would create and changes nothing.
    let before = s.count("SELECT COUNT(*) FROM simulated_objects").await;
    let dry = s
        .restore(
            &first,
            json!({"dry_run": true, "namespace_mapping": {"shop": "shop-copy"}}),
        )
        .await;
    assert_eq!(dry["status"], "succeeded", "{dry}");
    assert_eq!(dry["result"]["created"], 43, "{dry}");
    let changes = dry["result"]["changes"].as_array().unwrap();
    assert_eq!(changes[0]["kind"], "Namespace", "namespaces first: {dry}");
    assert_eq!(changes[0]["name"], "shop-copy");
    assert!(changes
        .iter()
        .skip(1)
        .all(|c| c["namespace"] == "shop-copy"));
    assert_eq!(
        s.count("SELECT COUNT(*) FROM simulated_objects").await,
        before
    );
    assert!(s
        .object("Namespace", "shop-copy", "shop-copy")
        .await
        .is_none());

    // Deleting a backup: 204, then 404; its chunks stay while the other backup uses them.
    s.app
        .delete(&format!("{}/backups/{second}", s.ws_path()), &s.token)
        .await
        .assert_status(204);
    s.app
        .get(&format!("{}/backups/{second}", s.ws_path()), &s.token)
        .await
        .assert_problem(404);
    let chunks = stats["chunks_new"].as_i64().unwrap();
    eventually(Duration::from_secs(20), || async {
        let refs = s
            .count(&format!(
                "SELECT COUNT(*) FROM backup_chunk_refs WHERE backup_id = '{second}'"
            ))
            .await;
        if refs == 0 {
            Ok(())
        } else {
            Err(format!("{refs} references of the deleted backup left"))
        }
    })
    .await;
    assert_eq!(s.count("SELECT COUNT(*) FROM backup_chunks").await, chunks);
}

async fn corrupted_chunk(mode: Mode) {
    let Some(s) = Scenario::start(mode, "corrupted_chunk").await else {
        return;
    };
    s.seed_shop().await;
    let _worker = s.worker();
    let backup = s.request_backup(json!({})).await;
    let done = s.wait_backup(&backup, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    // One flipped bit in one stored chunk, in the folder or in the bucket.
    s.corrupt_one_chunk().await;
    s.remove("ConfigMap", "shop", "cfg-1").await;
    s.remove("Deployment", "shop", "web").await;

    let restore = s.restore(&backup, json!({})).await;
    assert_eq!(restore["status"], "failed", "{restore}");
    assert_eq!(restore["error"]["type"], "integrity", "{restore}");
    // Nothing was applied: the lost objects are still lost.
    assert!(s.object("ConfigMap", "shop", "cfg-1").await.is_none());
    assert!(s.object("Deployment", "shop", "web").await.is_none());
    let events = s.events_about(restore["id"].as_str().unwrap()).await;
    assert_eq!(
        events,
        ["restore.requested", "restore.started", "restore.failed"]
    );
}

async fn key_rotation(mode: Mode) {
    let Some(s) = Scenario::start(mode, "key_rotation").await else {
        return;
    };
    s.seed_shop().await;
    let backup = {
        let _worker = s.worker();
        let backup = s.request_backup(json!({})).await;
        let done = s.wait_backup(&backup, &["succeeded", "failed"]).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        backup
    };
    let wrapped_before = s.count("SELECT COUNT(*) FROM backup_keys").await;
    assert_eq!(wrapped_before, 1);

    // Rotated: B is current, A previous. The restore works and the data key is re-wrapped.
    s.remove("ConfigMap", "shop", "cfg-9").await;
    {
        let (b, a) = (b64(&KEY_B), b64(&KEY_A));
        let _worker = s.worker_with(&[
            ("GANTRY_BACKUP_MASTER_KEY", &b),
            ("GANTRY_BACKUP_MASTER_KEY_PREVIOUS", &a),
        ]);
        let restore = s.restore(&backup, json!({})).await;
        assert_eq!(restore["status"], "succeeded", "{restore}");
        assert_eq!(restore["result"]["created"], 1, "{restore}");
    }
    // Only B now: still restorable (the key is wrapped by B).
    s.remove("ConfigMap", "shop", "cfg-9").await;
    {
        let b = b64(&KEY_B);
        let _worker = s.worker_with(&[("GANTRY_BACKUP_MASTER_KEY", &b)]);
        let restore = s.restore(&backup, json!({})).await;
        assert_eq!(restore["status"], "succeeded", "{restore}");
        // A new backup under B reuses the same data key and its chunks.
        let next = s.request_backup(json!({})).await;
        let done = s.wait_backup(&next, &["succeeded", "failed"]).await;
        assert_eq!(done["status"], "succeeded", "{done}");
    }
    // A wrong master key cannot open it: the restore fails with `key`, nothing applied.
    s.remove("ConfigMap", "shop", "cfg-9").await;
    {
        let wrong = b64(&[1u8; 32]);
        let _worker = s.worker_with(&[("GANTRY_BACKUP_MASTER_KEY", &wrong)]);
        let restore = s.restore(&backup, json!({})).await;
        assert_eq!(restore["status"], "failed", "{restore}");
        assert_eq!(restore["error"]["type"], "key", "{restore}");
        assert!(s.object("ConfigMap", "shop", "cfg-9").await.is_none());
    }
}

async fn retention(mode: Mode) {
    let Some(s) = Scenario::start(mode, "retention").await else {
        return;
    };
    s.seed_shop().await;
    let policy = s
        .create_policy(json!({"name": "nightly", "schedule": "0 3 * * *",
                              "retention": {"keep_last": 2}}))
        .await;
    let _worker = s.worker();
    let mut ids = Vec::new();
    for round in 0..3 {
        // Each backup changes something, so each stores chunks of its own.
        s.seed(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": format!("round-{round}"), "namespace": "shop"},
            "data": {"v": "y".repeat(300_000 + round)}}))
            .await;
        let id = s.request_backup(json!({"policy_id": policy})).await;
        let done = s.wait_backup(&id, &["succeeded", "failed"]).await;
        assert_eq!(done["status"], "succeeded", "{done}");
        ids.push(id);
    }
    // keep_last 2: the oldest is expired (with its event), the two newest stay.
    let oldest = s.wait_backup(&ids[0], &["expired"]).await;
    assert_eq!(oldest["status"], "expired");
    assert!(s
        .events_about(&ids[0])
        .await
        .contains(&"backup.expired".to_owned()));
    for id in &ids[1..] {
        let b = s
            .app
            .get(&format!("{}/backups/{id}", s.ws_path()), &s.token)
            .await;
        assert_eq!(b.body["status"], "succeeded", "{}", b.text);
    }
    // Its chunks that no live backup uses are gone from the storage and the table.
    eventually(Duration::from_secs(20), || async {
        let orphans = s
            .count(
                "SELECT COUNT(*) FROM backup_chunks c WHERE NOT EXISTS \
                 (SELECT 1 FROM backup_chunk_refs r WHERE r.chunk_id = c.chunk_id)",
            )
            .await;
        if orphans == 0 {
            Ok(())
        } else {
            Err(format!("{orphans} unreferenced chunks left"))
        }
    })
    .await;
    if s.storage_dir.is_some() {
        let stored = s.count("SELECT COUNT(*) FROM backup_chunks").await;
        assert_eq!(s.chunk_files().len() as i64, stored);
    }

    // max_age that every backup exceeds: the newest succeeded one is never expired. (A yearly
    // schedule: an hourly one fired during a run at the top of the hour, and its backup was
    // rightly the newest.)
    let strict = s
        .create_policy(json!({"name": "strict", "schedule": "@yearly",
                              "retention": {"max_age": "1s"}}))
        .await;
    let only = s.request_backup(json!({"policy_id": strict})).await;
    s.wait_backup(&only, &["succeeded"]).await;
    // A failed run does not count as good: it cannot push the good one out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let kept = s
        .app
        .get(&format!("{}/backups/{only}", s.ws_path()), &s.token)
        .await;
    assert_eq!(kept.body["status"], "succeeded", "{}", kept.text);
    let newer = s.request_backup(json!({"policy_id": strict})).await;
    s.wait_backup(&newer, &["succeeded"]).await;
    s.wait_backup(&only, &["expired"]).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let kept = s
        .app
        .get(&format!("{}/backups/{newer}", s.ws_path()), &s.token)
        .await;
    assert_eq!(kept.body["status"], "succeeded", "{}", kept.text);
}

async fn hooks(mode: Mode) {
    let Some(s) = Scenario::start(mode, "hooks").await else {
        return;
    };
    s.seed_shop().await;
    let hook = |command: Value, on_error: &str, timeout: Option<&str>| {
        let mut hook = json!({"namespace": "shop", "pod_selector": "app=db",
                              "command": command, "on_error": on_error});
        if let Some(timeout) = timeout {
            hook["timeout"] = json!(timeout);
        }
        hook
    };
    let ok = s
        .create_policy(
            json!({"name": "ok", "schedule": "@daily", "retention": {"keep_last": 5},
            "hooks": {"pre": [hook(json!(["fsfreeze", "--freeze", "/data"]), "fail", None)],
                      "post": [hook(json!(["fsfreeze", "--unfreeze", "/data"]), "fail", None)]}}),
        )
        .await;
    let tolerant = s
        .create_policy(
            json!({"name": "tolerant", "schedule": "@daily", "retention": {"keep_last": 5},
            "hooks": {"pre": [hook(json!(["false"]), "continue", None)]}}),
        )
        .await;
    let strict = s
        .create_policy(
            json!({"name": "strict", "schedule": "@daily", "retention": {"keep_last": 5},
            "hooks": {"pre": [hook(json!(["false"]), "fail", None)]}}),
        )
        .await;
    let slow = s
        .create_policy(
            json!({"name": "slow", "schedule": "@daily", "retention": {"keep_last": 5},
            "hooks": {"pre": [hook(json!(["sleep", "30"]), "fail", Some("1s"))]}}),
        )
        .await;
    let _worker = s.worker();

    let id = s.request_backup(json!({"policy_id": ok})).await;
    let done = s
        .wait_backup(&id, &["succeeded", "failed", "partially_failed"])
        .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    let runs = s
        .count("SELECT COUNT(*) FROM simulated_objects WHERE kind = 'HookRun'")
        .await;
    assert_eq!(runs, 2, "one pre and one post run");

    let id = s.request_backup(json!({"policy_id": tolerant})).await;
    let done = s
        .wait_backup(&id, &["succeeded", "failed", "partially_failed"])
        .await;
    assert_eq!(done["status"], "partially_failed", "{done}");
    assert_eq!(done["error"]["type"], "hook", "{done}");
    assert_eq!(done["stats"]["objects"], 43, "the backup went on: {done}");

    let id = s.request_backup(json!({"policy_id": strict})).await;
    let done = s
        .wait_backup(&id, &["succeeded", "failed", "partially_failed"])
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert_eq!(done["error"]["type"], "hook", "{done}");
    assert!(done["stats"].is_null(), "nothing stored: {done}");
    let events = eventually(Duration::from_secs(20), || async {
        let events = s.events_about(&id).await;
        if events.last().map(String::as_str) == Some("backup.failed") {
            Ok(events)
        } else {
            Err(format!("{events:?}"))
        }
    })
    .await;
    assert_eq!(
        events,
        ["backup.requested", "backup.started", "backup.failed"]
    );

    let id = s.request_backup(json!({"policy_id": slow})).await;
    let done = s
        .wait_backup(&id, &["succeeded", "failed", "partially_failed"])
        .await;
    assert_eq!(done["status"], "failed", "{done}");
    assert!(
        done["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("timed out"),
        "{done}"
    );
}

async fn scheduler(mode: Mode) {
    let Some(s) = Scenario::start(mode, "scheduler").await else {
        return;
    };
    s.seed_shop().await;
    let policy = s
        .create_policy(
            json!({"name": "hourly", "schedule": "@hourly", "timezone": "Europe/Berlin",
                              "retention": {"keep_last": 10}}),
        )
        .await;
    let view = s
        .app
        .get(
            &format!("{}/backup-policies/{policy}", s.ws_path()),
            &s.token,
        )
        .await;
    let next: chrono::DateTime<chrono::Utc> =
        view.body["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > chrono::Utc::now(), "{}", view.text);
    // Every process was down for three due times: the policy is long overdue.
    let overdue = chrono::Utc::now() - chrono::Duration::hours(3);
    s.set_next_run(&policy, overdue).await;
    // Two executors at once (on SQLite there is no lease at all): still one run.
    let _one = s.worker();
    let _two = s.worker();
    let list_path = format!("{}/backups?policy_id={policy}", s.ws_path());
    let items = eventually(Duration::from_secs(60), || async {
        let list = s.app.get(&list_path, &s.token).await;
        let items = list.body["items"].as_array().cloned().unwrap_or_default();
        if items.iter().any(|b| b["status"] == "succeeded") {
            Ok(items)
        } else {
            Err(format!("no scheduled backup yet: {}", list.text))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let list = s.app.get(&list_path, &s.token).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "missed runs run once: {}",
        list.text
    );
    assert_eq!(items[0]["policy_id"], policy.as_str());
    assert!(items[0]["scheduled_for"].is_string());
    let view = s
        .app
        .get(
            &format!("{}/backup-policies/{policy}", s.ws_path()),
            &s.token,
        )
        .await;
    let next: chrono::DateTime<chrono::Utc> =
        view.body["next_run_at"].as_str().unwrap().parse().unwrap();
    assert!(next > chrono::Utc::now(), "{}", view.text);

    // A round that sees a due time it already ran (as after a crash between two steps) adds
    // nothing and moves the due time on.
    let scheduled: chrono::DateTime<chrono::Utc> =
        items[0]["scheduled_for"].as_str().unwrap().parse().unwrap();
    s.set_next_run(&policy, scheduled).await;
    eventually(Duration::from_secs(30), || async {
        let view = s
            .app
            .get(
                &format!("{}/backup-policies/{policy}", s.ws_path()),
                &s.token,
            )
            .await;
        let next: chrono::DateTime<chrono::Utc> =
            view.body["next_run_at"].as_str().unwrap().parse().unwrap();
        if next > chrono::Utc::now() {
            Ok(())
        } else {
            Err(format!("the due time never moved: {}", view.text))
        }
    })
    .await;
    let list = s.app.get(&list_path, &s.token).await;
    assert_eq!(
        list.body["items"].as_array().unwrap().len(),
        1,
        "{}",
        list.text
    );
}

async fn crash_mid_backup(mode: Mode) {
    let Some(s) = Scenario::start(mode, "crash_mid_backup").await else {
        return;
    };
    s.seed_shop().await;
    // The pre hook takes 4 s: the executor is killed (-9) while the backup is running.
    let policy = s
        .create_policy(
            json!({"name": "slow", "schedule": "@daily", "retention": {"keep_last": 5},
            "hooks": {"pre": [{"namespace": "shop", "pod_selector": "app=db",
                               "command": ["sleep", "4"], "on_error": "fail", "timeout": "1m"}]}}),
        )
        .await;
    let first = s.worker();
    let id = s.request_backup(json!({"policy_id": policy})).await;
    s.wait_backup(&id, &["running"]).await;
    eventually(Duration::from_secs(30), || async {
        let runs = s
            .count("SELECT COUNT(*) FROM simulated_objects WHERE kind = 'HookRun'")
            .await;
        if runs >= 1 {
            Ok(())
        } else {
            Err("the hook never ran")
        }
    })
    .await;
    signal(&first.0, true);
    drop(first);
    // No half backup: still running, no manifest, nothing referenced.
    let row = s
        .app
        .get(&format!("{}/backups/{id}", s.ws_path()), &s.token)
        .await;
    assert_eq!(row.body["status"], "running", "{}", row.text);
    assert_eq!(
        s.count(&format!(
            "SELECT COUNT(*) FROM backup_chunk_refs WHERE backup_id = '{id}'"
        ))
        .await,
        0
    );

    // A new executor rescues the job and finishes it once.
    let _second = s.worker();
    let done = s.wait_backup(&id, &["succeeded", "failed"]).await;
    assert_eq!(done["status"], "succeeded", "{done}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let events = s.events_about(&id).await;
    assert_eq!(
        events,
        ["backup.requested", "backup.started", "backup.succeeded"],
        "{events:?}"
    );
    let list = s
        .app
        .get(&format!("{}/backups", s.ws_path()), &s.token)
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    // The restore of the rescued backup works.
    s.remove("ConfigMap", "shop", "cfg-0").await;
    let restore = s.restore(&id, json!({})).await;
    assert_eq!(restore["status"], "succeeded", "{restore}");
    assert!(s.object("ConfigMap", "shop", "cfg-0").await.is_some());
}

on_each_backend!(
    { sqlite: Mode::Sqlite, postgres_redis_s3: Mode::PostgresRedisS3 } =>
    backup_and_restore, corrupted_chunk, key_rotation, retention, hooks, scheduler, crash_mid_backup
);

/// The API's refusals, on both databases (no worker needed).
async fn refusals(backend: Backend) {
    let Some(app) = TestApp::spawn(backend, "backup_refusals").await else {
        return;
    };
    let token = app.token("alice");
    let org = app.create_org(&token, "acme").await;
    let shared = app.create_workspace(&token, &org, "small").await;
    let shared_path = format!("/v1/orgs/{org}/workspaces/{shared}");
    let policy = json!({"name": "nightly", "schedule": "0 3 * * *", "retention": {"keep_last": 7}});
    for (path, body) in [
        (format!("{shared_path}/backup-policies"), policy.clone()),
        (format!("{shared_path}/backups"), json!({})),
    ] {
        let response = app.post(&path, &token, body).await;
        response.assert_problem(422);
        assert_eq!(
            response.body["errors"],
            json!([{"pointer": "/workspace_id", "detail": "backups need the dedicated plan"}]),
            "{path}"
        );
    }
    let dedicated = app
        .post(
            &format!("/v1/orgs/{org}/workspaces"),
            &token,
            json!({"name": "big", "plan": "dedicated"}),
        )
        .await;
    let path = format!(
        "/v1/orgs/{org}/workspaces/{}/backup-policies",
        dedicated.id()
    );
    let bad = app
        .post(
            &path,
            &token,
            json!({"name": "Bad Name", "schedule": "0 3 * *", "timezone": "Mars/Olympus",
                   "retention": {"keep_last": 0, "max_age": "soon"},
                   "label_selector": "app=we b",
                   "hooks": {"pre": [{"namespace": "shop", "pod_selector": "app=db",
                                      "command": [], "timeout": "2h", "on_error": "fail"}]}}),
        )
        .await;
    bad.assert_problem(422);
    let mut pointers: Vec<&str> = bad.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort_unstable();
    assert_eq!(
        pointers,
        [
            "/hooks/pre/0/command",
            "/hooks/pre/0/timeout",
            "/label_selector",
            "/name",
            "/retention/keep_last",
            "/retention/max_age",
            "/schedule",
        ],
        "{}",
        bad.text
    );
    let zone = app
        .post(
            &path,
            &token,
            json!({"name": "x", "schedule": "@daily", "timezone": "Mars/Olympus",
                   "retention": {}}),
        )
        .await;
    zone.assert_problem(422);
    let mut pointers: Vec<&str> = zone.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["pointer"].as_str().unwrap())
        .collect();
    pointers.sort_unstable();
    assert_eq!(pointers, ["/retention", "/timezone"], "{}", zone.text);

    // A good policy: 201 + Location, then read, patch (checked again), delete.
    let created = app
        .post(
            &path,
            &token,
            json!({"name": "nightly", "schedule": "0 3 * * *", "timezone": "Europe/Berlin",
                   "retention": {"keep_last": 7, "max_age": "30d"},
                   "include_namespaces": ["shop"], "label_selector": "app=web,tier!=cache"}),
        )
        .await;
    created.assert_status(201);
    assert_eq!(created.body["timezone"], "Europe/Berlin");
    assert_eq!(created.body["enabled"], true);
    let id = created.id();
    assert_eq!(
        created.header("location"),
        Some(format!("{path}/{id}").as_str())
    );
    let patched = app
        .patch(&format!("{path}/{id}"), &token, json!({"enabled": false}))
        .await;
    patched.assert_status(200);
    assert!(patched.body["next_run_at"].is_null(), "{}", patched.text);
    app.patch(&format!("{path}/{id}"), &token, json!({"schedule": "nope"}))
        .await
        .assert_problem(422);
    let list = app.get(&path, &token).await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    app.delete(&format!("{path}/{id}"), &token)
        .await
        .assert_status(204);
    app.get(&format!("{path}/{id}"), &token)
        .await
        .assert_problem(404);
    // A backup that does not exist cannot be restored; a restore of another workspace's id
    // is 404.
    let ws_path = format!("/v1/orgs/{org}/workspaces/{}", dedicated.id());
    app.post(
        &format!("{ws_path}/backups/{}/restore", uuid::Uuid::new_v4()),
        &token,
        json!({}),
    )
    .await
    .assert_problem(404);
    app.get(
        &format!("{ws_path}/restores/{}", uuid::Uuid::new_v4()),
        &token,
    )
    .await
    .assert_problem(404);
    // A pending backup cannot be restored or deleted yet (409).
    let pending = app
        .post(&format!("{ws_path}/backups"), &token, json!({}))
        .await;
    pending.assert_status(202);
    let backup_path = format!("{ws_path}/backups/{}", pending.id());
    app.post(&format!("{backup_path}/restore"), &token, json!({}))
        .await
        .assert_problem(409);
    app.delete(&backup_path, &token).await.assert_problem(409);
}

on_each_backend!(refusals);

/// The `kubernetes` driver against the in-process fake API server: a backup lists the
/// vCluster's objects through its API (the kubeconfig Secret vCluster writes), and a restore
/// server-side applies a lost one back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_driver_backup_and_restore() {
    let Some(app) = TestApp::spawn(Backend::Sqlite, "kubernetes_driver_backup").await else {
        return;
    };
    let fake = fake_kube::FakeKube::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig_path = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig_path,
        fake_kube::kubeconfig(&fake.uri(), None, "host-token"),
    )
    .expect("write");
    let token = app.token("alice");
    let org = app.create_org(&token, "acme").await;
    let ws = app
        .post(
            &format!("/v1/orgs/{org}/workspaces"),
            &token,
            json!({"name": "prod", "plan": "dedicated"}),
        )
        .await
        .id();
    let hex = ws.replace('-', "");
    let namespace = format!("gantry-ws-{}", &hex[hex.len() - 12..]);
    let release = format!("vc-{}", &hex[hex.len() - 12..]);
    // What vCluster writes once it is up: its kubeconfig (here: the fake plays both APIs).
    fake.put_kubeconfig_secret(
        &namespace,
        &release,
        &[(
            "config",
            &fake_kube::kubeconfig(&fake.uri(), None, "vcluster-token"),
        )],
    );
    fake.put(
        "namespaces",
        "",
        "shop",
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "shop"}}),
    );
    fake.put(
        "secrets",
        "shop",
        "db-password",
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db-password",
               "namespace": "shop"}, "data": {"password": "c2VjcmV0"}}),
    );
    let _worker = ChildGuard(
        gantry(dir.path())
            .args(["--workers", "outbox-publisher,backup-executor"])
            .env("DATABASE_URL", &app.database_url)
            .env("GANTRY_KUBE_DRIVER", "kubernetes")
            .env("KUBECONFIG", &kubeconfig_path)
            .env("GANTRY_VCLUSTER_ENDPOINT", fake.uri())
            .env("GANTRY_OUTBOX_POLL_INTERVAL", "100ms")
            .env("GANTRY_BACKUP_MASTER_KEY", b64(&KEY_A))
            .env(
                "GANTRY_BACKUP_STORAGE",
                format!("file://{}", dir.path().join("backups").display()),
            )
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn worker"),
    );
    let ws_path = format!("/v1/orgs/{org}/workspaces/{ws}");
    let created = app
        .post(&format!("{ws_path}/backups"), &token, json!({}))
        .await;
    created.assert_status(202);
    let backup = created.id();
    let done = eventually(Duration::from_secs(60), || async {
        let b = app
            .get(&format!("{ws_path}/backups/{backup}"), &token)
            .await;
        match b.body["status"].as_str() {
            Some("succeeded" | "failed") => Ok(b.body),
            _ => Err(format!("{}", b.body)),
        }
    })
    .await;
    assert_eq!(done["status"], "succeeded", "{done}");
    assert!(done["stats"]["objects"].as_u64().unwrap() >= 2, "{done}");

    assert!(fake.remove("secrets", "shop", "db-password"));
    let restore = app
        .post(
            &format!("{ws_path}/backups/{backup}/restore"),
            &token,
            json!({"namespaces": ["shop"]}),
        )
        .await;
    restore.assert_status(202);
    let location = restore.header("location").unwrap().to_owned();
    let finished = eventually(Duration::from_secs(60), || async {
        let r = app.get(&location, &token).await;
        match r.body["status"].as_str() {
            Some("succeeded" | "failed") => Ok(r.body),
            _ => Err(format!("{}", r.body)),
        }
    })
    .await;
    assert_eq!(finished["status"], "succeeded", "{finished}");
    assert_eq!(finished["result"]["created"], 1, "{finished}");
    let secret = fake
        .get("secrets", "shop", "db-password")
        .expect("restored");
    assert_eq!(secret["data"]["password"], "c2VjcmV0");
}
