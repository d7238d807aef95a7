//! Write transactions, one at a time per SQLite file in this process.
//!
//! SQLite has one write lock. Writers that ask for it at once are put to sleep by SQLite's
//! busy handler, which polls with growing sleeps (up to 100 ms each), so under concurrent
//! writes a transaction could wait most of a second while the lock sat free. Here the
//! process's writers queue on a fair async mutex instead and take the lock in turn, each the
//! moment the last one commits; readers never wait for either (WAL). Other processes on the
//! same file still meet at SQLite's lock, with its busy timeout. Postgres needs none of this.

use sea_orm::{
    ConnectionTrait, DatabaseBackend, DatabaseConnection, DatabaseTransaction, DbBackend, DbErr,
    ExecResult, QueryResult, SqliteTransactionMode, Statement, TransactionOptions,
    TransactionTrait,
};
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::OwnedMutexGuard;

/// Longest a writer waits for its turn: SQLite's own busy timeout.
const WAIT_FOR_TURN: Duration = Duration::from_secs(10);

/// One gate per database file.
fn gate_of(file: PathBuf) -> Arc<tokio::sync::Mutex<()>> {
    static GATES: OnceLock<Mutex<HashMap<PathBuf, Arc<tokio::sync::Mutex<()>>>>> = OnceLock::new();
    let gates = GATES.get_or_init(Mutex::default);
    let mut gates = gates.lock().unwrap_or_else(|e| e.into_inner());
    gates.entry(file).or_default().clone()
}

/// A transaction that will write, holding this process's turn at the SQLite write lock (if
/// any) until it commits, rolls back or is dropped.
pub struct WriteTxn {
    txn: DatabaseTransaction,
    _turn: Option<OwnedMutexGuard<()>>,
}

impl WriteTxn {
    /// Records the current API write's audit row in this transaction (once per request; see
    /// [`super::scope`]), commits, then lets the next writer go.
    pub async fn commit(self) -> Result<(), DbErr> {
        super::scope::record_write(&self.txn).await?;
        self.txn.commit().await
    }

    /// Rolls back, then lets the next writer go.
    pub async fn rollback(self) -> Result<(), DbErr> {
        self.txn.rollback().await
    }
}

/// Begins a transaction that will write. On SQLite it waits for this process's turn, then
/// starts `IMMEDIATE`, taking the write lock up front: a deferred transaction that reads and
/// then writes cannot wait for the lock (SQLite fails the upgrade with `SQLITE_BUSY` at once
/// when another process wrote meanwhile), while an immediate one waits up to the busy timeout.
pub async fn begin_write(db: &DatabaseConnection) -> Result<WriteTxn, DbErr> {
    match db.get_database_backend() {
        DatabaseBackend::Sqlite => {
            let file = db
                .get_sqlite_connection_pool()
                .connect_options()
                .get_filename()
                .to_path_buf();
            let turn = tokio::time::timeout(WAIT_FOR_TURN, gate_of(file).lock_owned())
                .await
                .map_err(|_| {
                    DbErr::Custom(format!(
                        "no turn at the SQLite write lock within {WAIT_FOR_TURN:?}"
                    ))
                })?;
            let txn = db
                .begin_with_options(TransactionOptions {
                    sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
                    ..TransactionOptions::default()
                })
                .await?;
            Ok(WriteTxn {
                txn,
                _turn: Some(turn),
            })
        }
        _ => Ok(WriteTxn {
            txn: db.begin().await?,
            _turn: None,
        }),
    }
}

impl std::ops::Deref for WriteTxn {
    type Target = DatabaseTransaction;

    fn deref(&self) -> &DatabaseTransaction {
        &self.txn
    }
}

#[async_trait::async_trait]
impl ConnectionTrait for WriteTxn {
    fn get_database_backend(&self) -> DbBackend {
        self.txn.get_database_backend()
    }

    async fn execute_raw(&self, stmt: Statement) -> Result<ExecResult, DbErr> {
        self.txn.execute_raw(stmt).await
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        self.txn.execute_unprepared(sql).await
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<QueryResult>, DbErr> {
        self.txn.query_one_raw(stmt).await
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<QueryResult>, DbErr> {
        self.txn.query_all_raw(stmt).await
    }

    fn support_returning(&self) -> bool {
        self.txn.support_returning()
    }
}
