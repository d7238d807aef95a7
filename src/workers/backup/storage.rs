//! Where sealed chunks and manifests live, through the `object_store` crate: a local folder
//! (`file:///path`) or an S3-compatible bucket (`s3://bucket/prefix`, `AWS_*` settings). Paths
//! are `<prefix>/<org_id>/<workspace_id>/chunks/<id>` and `…/manifests/<backup_id>`.

use crate::config::BackupStorage;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use std::sync::Arc;

/// Why the storage failed (always worth a retry: it is the network or the disk).
#[derive(Debug, thiserror::Error)]
#[error("storage: {0}")]
pub struct StorageError(pub String);

impl From<object_store::Error> for StorageError {
    fn from(err: object_store::Error) -> Self {
        StorageError(err.to_string())
    }
}

/// One workspace's corner of the backup storage.
#[derive(Clone)]
pub struct WorkspaceStorage {
    store: Arc<dyn ObjectStore>,
    root: String,
}

/// Opens the configured storage (creating a local folder when needed).
pub fn open(storage: &BackupStorage) -> Result<(Arc<dyn ObjectStore>, String), StorageError> {
    match storage {
        BackupStorage::File { path } => {
            std::fs::create_dir_all(path)
                .map_err(|e| StorageError(format!("creating {}: {e}", path.display())))?;
            let store = object_store::local::LocalFileSystem::new_with_prefix(path)?;
            Ok((Arc::new(store), String::new()))
        }
        BackupStorage::S3 {
            bucket,
            prefix,
            endpoint,
            region,
            access_key_id,
            secret_access_key,
            allow_http,
        } => {
            let mut builder = object_store::aws::AmazonS3Builder::new()
                .with_bucket_name(bucket)
                .with_region(region)
                .with_allow_http(*allow_http);
            if let Some(endpoint) = endpoint {
                // S3-compatible stores (MinIO, moto) are addressed by path, not virtual host.
                builder = builder
                    .with_endpoint(endpoint)
                    .with_virtual_hosted_style_request(false);
            }
            if let (Some(id), Some(secret)) = (access_key_id, secret_access_key) {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
            }
            Ok((Arc::new(builder.build()?), prefix.clone()))
        }
    }
}

impl WorkspaceStorage {
    /// The workspace's part of `storage`, under `prefix` (`<org_id>/<workspace_id>`).
    pub fn new(store: Arc<dyn ObjectStore>, base: &str, prefix: &str) -> Self {
        let root = if base.is_empty() {
            prefix.to_owned()
        } else {
            format!("{base}/{prefix}")
        };
        WorkspaceStorage { store, root }
    }

    fn chunk_path(&self, id: &str) -> Path {
        Path::from(format!("{}/chunks/{id}", self.root))
    }

    fn manifest_path(&self, backup_id: uuid::Uuid) -> Path {
        Path::from(format!("{}/manifests/{backup_id}", self.root))
    }

    /// Stores a sealed chunk.
    pub async fn put_chunk(&self, id: &str, blob: Vec<u8>) -> Result<(), StorageError> {
        self.store
            .put(&self.chunk_path(id), PutPayload::from(blob))
            .await?;
        Ok(())
    }

    /// A sealed chunk, or `None` when it is missing.
    pub async fn get_chunk(&self, id: &str) -> Result<Option<Bytes>, StorageError> {
        get_opt(self.store.as_ref(), &self.chunk_path(id)).await
    }

    /// Deletes a chunk (absent is fine).
    pub async fn delete_chunk(&self, id: &str) -> Result<(), StorageError> {
        delete_opt(self.store.as_ref(), &self.chunk_path(id)).await
    }

    /// Stores a sealed manifest: the backup exists from here on.
    pub async fn put_manifest(
        &self,
        backup_id: uuid::Uuid,
        blob: Vec<u8>,
    ) -> Result<(), StorageError> {
        self.store
            .put(&self.manifest_path(backup_id), PutPayload::from(blob))
            .await?;
        Ok(())
    }

    /// A sealed manifest, or `None` when it is missing.
    pub async fn get_manifest(&self, backup_id: uuid::Uuid) -> Result<Option<Bytes>, StorageError> {
        get_opt(self.store.as_ref(), &self.manifest_path(backup_id)).await
    }

    /// Deletes a manifest (absent is fine).
    pub async fn delete_manifest(&self, backup_id: uuid::Uuid) -> Result<(), StorageError> {
        delete_opt(self.store.as_ref(), &self.manifest_path(backup_id)).await
    }
}

async fn get_opt(store: &dyn ObjectStore, path: &Path) -> Result<Option<Bytes>, StorageError> {
    match store.get(path).await {
        Ok(result) => Ok(Some(result.bytes().await?)),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

async fn delete_opt(store: &dyn ObjectStore, path: &Path) -> Result<(), StorageError> {
    match store.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(err) => Err(err.into()),
    }
}
