//! The pure part of a backup: which objects are backed up, their canonical serialization, the
//! content-defined chunking of the stream (fastcdc), zstd per chunk, and the manifest that
//! lists objects (by offset into the stream) and chunks. No I/O.

use crate::domain::backup::LabelSelector;
use crate::workers::vcluster::driver::KubeObject;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Smallest chunk.
pub const CHUNK_MIN: u32 = 16 * 1024;
/// Average chunk.
pub const CHUNK_AVG: u32 = 64 * 1024;
/// Largest chunk.
pub const CHUNK_MAX: u32 = 256 * 1024;
/// zstd level of chunks and manifests.
pub const ZSTD_LEVEL: i32 = 3;

/// Metadata fields the API server sets: never backed up, so an unchanged object serializes
/// to the same bytes every time and a restore does not carry stale ones.
const VOLATILE_METADATA: [&str; 7] = [
    "resourceVersion",
    "uid",
    "creationTimestamp",
    "generation",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
];

/// What a policy selects.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only these namespaces (all when empty).
    pub include_namespaces: Vec<String>,
    /// Never these.
    pub exclude_namespaces: Vec<String>,
    /// Only objects whose labels match.
    pub labels: Option<LabelSelector>,
}

/// `kind`, `namespace` (`""` when cluster-scoped) and `name` of an object.
pub fn identity(object: &KubeObject) -> (String, String, String) {
    let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
    let kind = text(&object["kind"]);
    let namespace = if kind == "Namespace" {
        String::new()
    } else {
        text(&object["metadata"]["namespace"])
    };
    (kind, namespace, text(&object["metadata"]["name"]))
}

/// Objects a backup never takes: events, pods a controller owns (the controller is backed
/// up and recreates them), and service-account token secrets (the cluster mints them).
pub fn is_skipped(object: &KubeObject) -> bool {
    let kind = object["kind"].as_str().unwrap_or_default();
    match kind {
        "Event" => true,
        "Pod" => object["metadata"]["ownerReferences"]
            .as_array()
            .is_some_and(|owners| owners.iter().any(|o| o["controller"] == true)),
        "Secret" => object["type"] == "kubernetes.io/service-account-token",
        _ => false,
    }
}

impl Selection {
    /// Whether `object` is backed up.
    pub fn selects(&self, object: &KubeObject) -> bool {
        if is_skipped(object) {
            return false;
        }
        let (kind, namespace, name) = identity(object);
        // A namespace is selected by its own name.
        let ns = if kind == "Namespace" {
            &name
        } else {
            &namespace
        };
        if !ns.is_empty() {
            if !self.include_namespaces.is_empty() && !self.include_namespaces.contains(ns) {
                return false;
            }
            if self.exclude_namespaces.contains(ns) {
                return false;
            }
        }
        match &self.labels {
            None => true,
            Some(selector) => {
                let labels: BTreeMap<String, String> =
                    serde_json::from_value(object["metadata"]["labels"].clone())
                        .unwrap_or_default();
                selector.matches(&labels)
            }
        }
    }
}

/// `value` with object keys sorted at every level.
fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = serde_json::Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

/// The object as backed up: volatile metadata and `status` dropped, keys sorted, compact JSON.
pub fn canonical(object: &KubeObject) -> Vec<u8> {
    let mut object = object.clone();
    if let Some(map) = object.as_object_mut() {
        map.remove("status");
    }
    if let Some(meta) = object["metadata"].as_object_mut() {
        for field in VOLATILE_METADATA {
            meta.remove(field);
        }
    }
    serde_json::to_vec(&sorted(&object)).unwrap_or_default()
}

/// One object's place in the stream. Stored compactly as `[kind, namespace, name, length]`:
/// offsets follow from the lengths (each object is followed by a newline), see
/// [`Manifest::locate`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "PackedEntry", from = "PackedEntry")]
pub struct ObjectEntry {
    /// Kind.
    pub kind: String,
    /// Namespace (`""` when cluster-scoped).
    pub namespace: String,
    /// Name.
    pub name: String,
    /// Offset of its canonical JSON in the stream.
    pub offset: u64,
    /// Its length.
    pub length: u64,
}

/// How an [`ObjectEntry`] is stored.
type PackedEntry = (String, String, String, u64);

impl From<ObjectEntry> for PackedEntry {
    fn from(entry: ObjectEntry) -> Self {
        (entry.kind, entry.namespace, entry.name, entry.length)
    }
}

impl From<PackedEntry> for ObjectEntry {
    fn from((kind, namespace, name, length): PackedEntry) -> Self {
        ObjectEntry {
            kind,
            namespace,
            name,
            offset: 0,
            length,
        }
    }
}

/// One chunk of the stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkEntry {
    /// Content address (HMAC of the plaintext).
    pub id: String,
    /// Plaintext length.
    pub length: u64,
}

/// What a backup holds; sealed and stored last.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// The backup.
    pub backup_id: uuid::Uuid,
    /// The workspace backed up.
    pub workspace_id: uuid::Uuid,
    /// The data key.
    pub key_id: String,
    /// Objects, in stream order.
    pub objects: Vec<ObjectEntry>,
    /// Chunks, in stream order; concatenated they are the stream.
    pub chunks: Vec<ChunkEntry>,
}

impl Manifest {
    /// Sets each object's offset from the lengths before it (after reading a stored manifest).
    pub fn locate(&mut self) {
        let mut offset = 0;
        for entry in &mut self.objects {
            entry.offset = offset;
            offset += entry.length + 1;
        }
    }
}

/// zstd level of manifests (written once per backup, read once per restore: worth more
/// effort than chunks).
pub const MANIFEST_ZSTD_LEVEL: i32 = 9;

/// The serialized stream of `objects` (sorted by kind, namespace and name, so the same
/// objects always give the same bytes) and its index.
pub fn serialize(mut objects: Vec<KubeObject>) -> (Vec<u8>, Vec<ObjectEntry>) {
    objects.sort_by_cached_key(identity);
    let mut stream = Vec::new();
    let mut index = Vec::with_capacity(objects.len());
    for object in &objects {
        let (kind, namespace, name) = identity(object);
        let bytes = canonical(object);
        index.push(ObjectEntry {
            kind,
            namespace,
            name,
            offset: stream.len() as u64,
            length: bytes.len() as u64,
        });
        stream.extend_from_slice(&bytes);
        stream.push(b'\n');
    }
    (stream, index)
}

/// Content-defined cut points of `stream`: (offset, length) of each chunk.
pub fn chunk_bounds(stream: &[u8]) -> Vec<(usize, usize)> {
    fastcdc::v2020::FastCDC::new(stream, CHUNK_MIN, CHUNK_AVG, CHUNK_MAX)
        .map(|chunk| (chunk.offset, chunk.length))
        .collect()
}

/// zstd of a chunk or manifest.
pub fn compress(data: &[u8]) -> std::io::Result<Vec<u8>> {
    zstd::bulk::compress(data, ZSTD_LEVEL)
}

/// Inverse of [`compress`], refusing output longer than `limit`.
pub fn decompress(data: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    zstd::bulk::decompress(data, limit)
}

/// Restore order: namespaces, CRDs, configuration and access, then workloads, then the rest.
pub fn apply_rank(kind: &str) -> u8 {
    match kind {
        "Namespace" => 0,
        "CustomResourceDefinition" => 1,
        "ServiceAccount"
        | "ConfigMap"
        | "Secret"
        | "PersistentVolumeClaim"
        | "Role"
        | "RoleBinding"
        | "ClusterRole"
        | "ClusterRoleBinding"
        | "ResourceQuota"
        | "LimitRange"
        | "NetworkPolicy" => 2,
        "Service" => 3,
        "Deployment" | "StatefulSet" | "DaemonSet" | "ReplicaSet" | "Job" | "CronJob" | "Pod" => 4,
        _ => 5,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn canonical_is_stable_and_drops_volatile_fields() {
        let a = json!({"kind": "ConfigMap", "metadata": {"name": "x", "namespace": "a",
                       "resourceVersion": "7", "uid": "u"}, "data": {"b": "2", "a": "1"},
                       "status": {"x": 1}});
        let b = json!({"data": {"a": "1", "b": "2"}, "metadata": {"namespace": "a", "name": "x",
                       "resourceVersion": "8"}, "kind": "ConfigMap"});
        assert_eq!(canonical(&a), canonical(&b));
        assert!(!String::from_utf8_lossy(&canonical(&a)).contains("resourceVersion"));
    }

    #[test]
    fn skips_and_selects() {
        let owned = json!({"kind": "Pod", "metadata": {"name": "p", "namespace": "a",
                           "ownerReferences": [{"controller": true}]}});
        let token = json!({"kind": "Secret", "type": "kubernetes.io/service-account-token",
                           "metadata": {"name": "t", "namespace": "a"}});
        let event = json!({"kind": "Event", "metadata": {"name": "e", "namespace": "a"}});
        let web = json!({"kind": "ConfigMap", "metadata": {"name": "w", "namespace": "a",
                         "labels": {"app": "web"}}});
        let all = Selection::default();
        assert!(!all.selects(&owned) && !all.selects(&token) && !all.selects(&event));
        assert!(all.selects(&web));
        let only_b = Selection {
            include_namespaces: vec!["b".into()],
            ..Selection::default()
        };
        assert!(!only_b.selects(&web));
        let cache = Selection {
            labels: LabelSelector::parse("app!=web").ok(),
            ..Selection::default()
        };
        assert!(!cache.selects(&web));
    }

    #[test]
    fn manifests_store_lengths_and_locate_offsets() {
        let objects: Vec<KubeObject> = (0..5)
            .map(|i| {
                json!({"kind": "ConfigMap", "metadata": {"name": format!("c{i}"),
                            "namespace": "a"}, "data": {"v": "x".repeat(i * 10)}})
            })
            .collect();
        let (stream, index) = serialize(objects);
        let manifest = Manifest {
            version: 1,
            backup_id: uuid::Uuid::nil(),
            workspace_id: uuid::Uuid::nil(),
            key_id: "k".into(),
            objects: index.clone(),
            chunks: Vec::new(),
        };
        let text = serde_json::to_string(&manifest).unwrap_or_default();
        assert!(!text.contains("offset"), "{text}");
        let mut back: Manifest = serde_json::from_str(&text).unwrap_or(manifest);
        back.locate();
        assert_eq!(back.objects, index);
        let last = &index[4];
        assert_eq!(
            stream.len() as u64,
            last.offset + last.length + 1,
            "every object ends with a newline"
        );
    }

    #[test]
    fn unchanged_streams_chunk_identically() {
        let objects: Vec<KubeObject> = (0..3000)
            .map(|i| {
                json!({"kind": "ConfigMap", "metadata": {"name": format!("c{i}"),
                            "namespace": "a"}, "data": {"v": format!("{i}-{}", "x".repeat(80))}})
            })
            .collect();
        let (one, _) = serialize(objects.clone());
        let mut changed = objects;
        changed[1500]["data"]["v"] = json!("changed");
        let (two, _) = serialize(changed);
        let a = chunk_bounds(&one);
        let b = chunk_bounds(&two);
        assert!(a.len() > 2);
        let same = |(o, l): &(usize, usize), s: &[u8]| s[*o..o + l].to_vec();
        let first: std::collections::HashSet<_> = a.iter().map(|c| same(c, &one)).collect();
        let reused = b.iter().filter(|c| first.contains(&same(c, &two))).count();
        // One change touches one or two chunks; the rest dedupe.
        assert!(reused + 2 >= b.len(), "{reused} of {}", b.len());
    }
}
