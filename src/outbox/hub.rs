//! The event hub: one reader of `outbox_events` per server process that fans new events out
//! to every open event stream (a tokio broadcast), instead of a database poll per stream.
//! It wakes on Postgres `NOTIFY` (the outbox trigger) and otherwise polls; a stream catches
//! up from the database by its cursor, and again whenever it falls behind the broadcast.

use crate::auth::access_cache::AccessCache;
use crate::resources::list_cache::ProjectListCache;
use crate::store::outbox::{self as outbox_store, StoredEvent};
use sea_orm::{DatabaseBackend, DatabaseConnection};
use std::sync::{Arc, Weak};
use std::time::Duration;
use tokio::sync::broadcast;

/// How often the hub looks for new events when no `NOTIFY` wakes it.
pub const HUB_POLL_INTERVAL: Duration = Duration::from_millis(250);
/// Events read per round.
const HUB_BATCH: u64 = 500;
/// Events buffered per subscriber before it lags (and then catches up from the database).
const HUB_CAPACITY: usize = 1024;
/// Pause after a failed read.
const HUB_ERROR_BACKOFF: Duration = Duration::from_secs(1);

/// Fans committed events out to subscribers; cheap to clone.
#[derive(Clone)]
pub struct EventHub {
    sender: Arc<broadcast::Sender<Arc<StoredEvent>>>,
}

impl EventHub {
    /// Starts the hub's reader on the current runtime; it stops when the last hub is dropped.
    /// Every event it reads also passes through `access` (organization and membership changes
    /// made by any process invalidate it) and `lists` (project changes forget their
    /// organization's pages), which are trusted only while it reads.
    pub fn start(
        db: DatabaseConnection,
        access: Arc<AccessCache>,
        lists: Arc<ProjectListCache>,
    ) -> Self {
        let (sender, _) = broadcast::channel(HUB_CAPACITY);
        let sender = Arc::new(sender);
        let weak = Arc::downgrade(&sender);
        tokio::spawn(async move {
            let caches = Caches {
                access: &access,
                lists: &lists,
            };
            feed(db, weak, caches).await;
            caches.set_trusted(false);
        });
        Self { sender }
    }

    /// A receiver of every event committed from now on (all organizations).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<StoredEvent>> {
        self.sender.subscribe()
    }
}

/// The caches every event the hub reads passes through.
#[derive(Clone, Copy)]
struct Caches<'a> {
    access: &'a AccessCache,
    lists: &'a ProjectListCache,
}

impl Caches<'_> {
    fn observe(&self, event: &StoredEvent) {
        self.access.observe(event);
        self.lists.observe(event);
    }

    fn set_trusted(&self, trusted: bool) {
        self.access.set_trusted(trusted);
        self.lists.set_trusted(trusted);
    }
}

/// The reader loop: from the newest event at start, broadcast each new one in id order.
async fn feed(
    db: DatabaseConnection,
    sender: Weak<broadcast::Sender<Arc<StoredEvent>>>,
    caches: Caches<'_>,
) {
    let mut listener = listen(&db).await;
    let mut last = loop {
        match outbox_store::latest_id(&db).await {
            Ok(id) => break id,
            Err(err) => {
                tracing::warn!(%err, "event hub cannot read the outbox; retrying");
                tokio::time::sleep(HUB_ERROR_BACKOFF).await;
                if sender.strong_count() == 0 {
                    return;
                }
            }
        }
    };
    loop {
        let Some(sender) = sender.upgrade() else {
            return;
        };
        match outbox_store::list_after(&db, last, HUB_BATCH).await {
            Ok(rows) => {
                let full = rows.len() as u64 == HUB_BATCH;
                for row in rows {
                    last = row.id;
                    caches.observe(&row);
                    // No receivers is not an error: nobody is streaming right now.
                    let _ = sender.send(Arc::new(row));
                }
                drop(sender);
                caches.set_trusted(true);
                if full {
                    continue;
                }
            }
            Err(err) => {
                drop(sender);
                caches.set_trusted(false);
                tracing::warn!(%err, "event hub read failed; retrying");
                tokio::time::sleep(HUB_ERROR_BACKOFF).await;
                continue;
            }
        }
        match listener.as_mut() {
            Some(pg) => {
                tokio::select! {
                    received = pg.recv() => if let Err(err) = received {
                        tracing::warn!(%err, "event hub LISTEN failed; polling");
                        listener = None;
                    },
                    _ = tokio::time::sleep(HUB_POLL_INTERVAL) => {}
                }
            }
            None => tokio::time::sleep(HUB_POLL_INTERVAL).await,
        }
    }
}

/// `LISTEN` on the outbox channel (Postgres only; `None` means poll).
async fn listen(db: &DatabaseConnection) -> Option<sea_orm::sqlx::postgres::PgListener> {
    if db.get_database_backend() != DatabaseBackend::Postgres {
        return None;
    }
    let pool = db.get_postgres_connection_pool();
    let mut listener = sea_orm::sqlx::postgres::PgListener::connect_with(pool)
        .await
        .map_err(|err| tracing::warn!(%err, "event hub cannot LISTEN; polling"))
        .ok()?;
    listener
        .listen(crate::workers::outbox_publisher::NOTIFY_CHANNEL)
        .await
        .map_err(|err| tracing::warn!(%err, "event hub cannot LISTEN; polling"))
        .ok()?;
    Some(listener)
}
