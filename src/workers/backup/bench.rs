//! `gantry bench backup --objects N`: the backup pipeline (canonical stream → fastcdc → HMAC
//! ids → zstd → AES-256-GCM → local object store, manifest last) on N synthetic objects, a
//! second unchanged backup, and a verified restore, beside `tar | zstd | openssl enc` (and its
//! reverse) on the same serialized data. One `key=value` line on stdout.

use super::archive::{self, ChunkEntry, Manifest};
use super::crypto::DataKey;
use super::storage::WorkspaceStorage;
use super::{cut_stream, seal_manifest, store_new_chunks, verified_objects, Failure};
use bytes::Bytes;
use serde_json::json;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BackupBenchError {
    /// Setting up (temporary folder, storage, the peer pipeline).
    #[error("{0}")]
    Setup(String),
    /// The pipeline failed.
    #[error("{}: {}", .0.error_type, .0.detail)]
    Pipeline(crate::resources::backup::FailureView),
}

impl From<Failure> for BackupBenchError {
    fn from(failure: Failure) -> Self {
        let (Failure::Permanent(view) | Failure::Retryable(view)) = failure;
        BackupBenchError::Pipeline(view)
    }
}

/// N objects shaped like a workspace's: config maps, deployments and services in 20
/// namespaces, about 1 KiB each, no two alike.
pub fn synthetic_objects(n: usize) -> Vec<serde_json::Value> {
    (0..n)
        .map(|i| {
            let namespace = format!("team-{}", i % 20);
            match i % 4 {
                0 | 1 => json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": format!("config-{i}"), "namespace": namespace,
                                 "labels": {"app": format!("app-{}", i % 50), "tier": "web"}},
                    "data": {"settings.yaml": format!("replicas: {}\nfeature_flags: [{}]\nowner: team-{}\n{}",
                        i % 7, i % 13, i % 20, "# padding line for a realistic size\n".repeat(20))}}),
                2 => json!({"apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": format!("deploy-{i}"), "namespace": namespace,
                                 "labels": {"app": format!("app-{}", i % 50)}},
                    "spec": {"replicas": 1 + i % 3, "selector": {"matchLabels": {"app": format!("app-{i}")}},
                        "template": {"metadata": {"labels": {"app": format!("app-{i}")}},
                            "spec": {"containers": [{"name": "main", "image": format!("registry.example.com/app:{}.{}", i % 9, i % 17),
                                "ports": [{"containerPort": 8080}],
                                "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                              "limits": {"cpu": "500m", "memory": "512Mi"}},
                                "env": [{"name": "INSTANCE", "value": format!("{i}")},
                                        {"name": "LOG_LEVEL", "value": "info"}]}]}}}}),
                _ => json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": format!("svc-{i}"), "namespace": namespace},
                    "spec": {"selector": {"app": format!("app-{i}")},
                             "ports": [{"port": 80, "targetPort": 8080, "protocol": "TCP"}],
                             "type": "ClusterIP"}}),
            }
        })
        .collect()
}

fn mb_per_s(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64().max(1e-9)
}

/// One backup of `stream` into `storage`; answers (time, new stored bytes, chunk ids).
async fn one_backup(
    storage: &WorkspaceStorage,
    key: &Arc<DataKey>,
    stream: &Bytes,
    index: &[archive::ObjectEntry],
    known: &HashSet<String>,
) -> Result<(Duration, u64, HashSet<String>, uuid::Uuid), BackupBenchError> {
    let started = Instant::now();
    let backup_id = uuid::Uuid::now_v7();
    let cut = cut_stream(key.clone(), stream.clone()).await?;
    let new = store_new_chunks(storage, key.clone(), stream, &cut, known).await?;
    let manifest = Manifest {
        version: 1,
        backup_id,
        workspace_id: uuid::Uuid::nil(),
        key_id: key.id.clone(),
        objects: index.to_vec(),
        chunks: cut
            .iter()
            .map(|(_, length, id)| ChunkEntry {
                id: id.clone(),
                length: *length as u64,
            })
            .collect(),
    };
    let sealed = seal_manifest(key, &manifest)?;
    let manifest_size = sealed.len() as u64;
    storage
        .put_manifest(backup_id, sealed)
        .await
        .map_err(Failure::from)?;
    let took = started.elapsed();
    let stored = new.iter().map(|(_, s)| *s as u64).sum::<u64>() + manifest_size;
    let ids = cut.into_iter().map(|(_, _, id)| id).collect();
    Ok((took, stored, ids, backup_id))
}

/// Runs `script` with `sh -c` and answers how long it took.
fn timed_shell(script: &str) -> Result<Duration, BackupBenchError> {
    let started = Instant::now();
    let status = std::process::Command::new("sh")
        .args(["-c", script])
        .status()
        .map_err(|e| BackupBenchError::Setup(format!("sh: {e}")))?;
    if !status.success() {
        return Err(BackupBenchError::Setup(format!(
            "the peer pipeline failed ({status}): {script}"
        )));
    }
    Ok(started.elapsed())
}

/// The benchmark; answers its one line of results.
pub async fn run(objects: usize) -> Result<String, BackupBenchError> {
    let setup = |e: std::io::Error| BackupBenchError::Setup(e.to_string());
    let dir = tempfile::tempdir().map_err(setup)?;
    let (stream, index) = archive::serialize(synthetic_objects(objects));
    let logical = stream.len();
    let stream = Bytes::from(stream);
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir.path())
        .map_err(|e| BackupBenchError::Setup(e.to_string()))?;
    let storage = WorkspaceStorage::new(Arc::new(store), "", "bench/workspace");
    let key = Arc::new(DataKey::generate().map_err(Failure::from)?);

    let (first, first_stored, ids, first_id) =
        one_backup(&storage, &key, &stream, &index, &HashSet::new()).await?;
    let (second, second_stored, _, _) = one_backup(&storage, &key, &stream, &index, &ids).await?;
    let started = Instant::now();
    let restored = verified_objects(&storage, key.clone(), first_id).await?;
    let restore = started.elapsed();
    if restored.len() != objects {
        return Err(BackupBenchError::Setup(format!(
            "restored {} of {objects} objects",
            restored.len()
        )));
    }

    // The peer: the same bytes through tar, zstd -3 and openssl (AES-256-CTR), and back.
    let peer = dir.path().join("peer");
    std::fs::create_dir_all(&peer).map_err(setup)?;
    std::fs::write(peer.join("objects.jsonl"), &stream).map_err(setup)?;
    let p = peer.display();
    let pipeline = timed_shell(&format!(
        "tar -C {p} -cf - objects.jsonl | zstd -3 -q -c | \
         openssl enc -aes-256-ctr -pbkdf2 -pass pass:bench -out {p}/objects.tar.zst.enc"
    ))?;
    let pipeline_restore = timed_shell(&format!(
        "mkdir -p {p}/out && openssl enc -d -aes-256-ctr -pbkdf2 -pass pass:bench \
         -in {p}/objects.tar.zst.enc | zstd -d -q -c | tar -C {p}/out -xf -"
    ))?;

    let first_mbps = mb_per_s(logical, first);
    let pipeline_mbps = mb_per_s(logical, pipeline);
    Ok(format!(
        "bench=backup objects={objects} logical_bytes={logical} \
         first_mb_s={first_mbps:.1} first_stored_bytes={first_stored} \
         second_mb_s={:.1} second_stored_bytes={second_stored} second_new_pct={:.3} \
         second_speedup={:.1} restore_mb_s={:.1} pipeline_mb_s={pipeline_mbps:.1} \
         pipeline_restore_mb_s={:.1} first_vs_pipeline_pct={:.0}",
        mb_per_s(logical, second),
        second_stored as f64 * 100.0 / logical as f64,
        first.as_secs_f64() / second.as_secs_f64().max(1e-9),
        mb_per_s(logical, restore),
        mb_per_s(logical, pipeline_restore),
        first_mbps * 100.0 / pipeline_mbps.max(1e-9),
    ))
}
