//! Each workspace's data key: made on first use, stored wrapped by the master key, unwrapped
//! in memory per job. A key wrapped by `GANTRY_BACKUP_MASTER_KEY_PREVIOUS` is re-wrapped with
//! the current master key the first time it is used (rotation needs no downtime: run with both
//! keys until every workspace has been backed up or restored once, then drop the previous).

use super::crypto::{fingerprint, CryptoError, DataKey};
use super::Failure;
use crate::store::backups as backup_store;
use crate::workers::WorkerContext;
use uuid::Uuid;

impl From<CryptoError> for Failure {
    fn from(err: CryptoError) -> Self {
        match err {
            CryptoError::Integrity(detail) => Failure::permanent("integrity", detail),
            CryptoError::Key(detail) => Failure::permanent("key", detail),
            CryptoError::Random => Failure::retryable("internal", err.to_string()),
        }
    }
}

/// The master key, or the `not_configured` failure.
pub fn master_key(ctx: &WorkerContext) -> Result<[u8; 32], Failure> {
    ctx.config.backup.master_key.ok_or_else(|| {
        Failure::permanent(
            "not_configured",
            "GANTRY_BACKUP_MASTER_KEY is not set on the backup executor",
        )
    })
}

/// The workspace's data key; `create` makes one when it has none yet (backups do, restores
/// do not).
pub async fn data_key(
    ctx: &WorkerContext,
    workspace_id: Uuid,
    create: bool,
) -> Result<DataKey, Failure> {
    let master = master_key(ctx)?;
    let current = fingerprint(&master);
    for _ in 0..2 {
        if let Some(row) = backup_store::find_key(&ctx.db, workspace_id).await? {
            if row.master_key_id == current {
                return Ok(DataKey::unwrap(&row.key_id, &row.wrapped_key, &master)?);
            }
            let previous = ctx.config.backup.previous_master_key;
            let Some(previous) = previous.filter(|p| fingerprint(p) == row.master_key_id) else {
                return Err(Failure::permanent(
                    "key",
                    format!(
                        "data key {} is wrapped by master key {}, which is neither \
                         GANTRY_BACKUP_MASTER_KEY nor GANTRY_BACKUP_MASTER_KEY_PREVIOUS",
                        row.key_id, row.master_key_id
                    ),
                ));
            };
            let key = DataKey::unwrap(&row.key_id, &row.wrapped_key, &previous)?;
            let wrapped = key.wrap(&master)?;
            backup_store::rewrap_key(&ctx.db, row, wrapped, current.clone()).await?;
            tracing::info!(%workspace_id, key_id = %key.id, "data key re-wrapped with the current master key");
            return Ok(key);
        }
        if !create {
            return Err(Failure::permanent(
                "key",
                "the workspace has no data key (no backup was ever made)",
            ));
        }
        let key = DataKey::generate()?;
        // Two executors may race here: the first insert wins, both then read it back.
        backup_store::insert_key(
            &ctx.db,
            workspace_id,
            &key.id,
            &key.wrap(&master)?,
            &current,
        )
        .await?;
    }
    Err(Failure::retryable(
        "key",
        "the data key could not be stored",
    ))
}
