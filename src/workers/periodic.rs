//! One shape for the loops that are not queue jobs (outbox publisher, webhook sender,
//! reconciler, schedulers to come): a [`PeriodicTask`] says what one round does and how often;
//! [`run`] owns the loop — interval plus jitter, an optional wake-up (e.g. `NOTIFY`), an optional
//! fleet-wide singleton lease, shutdown, and per-round logs and metrics
//! (`gantry_periodic_runs_total{task,outcome}`, `gantry_periodic_round_duration_seconds{task}`).
//!
//! A task is registered with one entry in [`super::registry::PERIODIC_TASKS`].

use super::WorkerContext;
use sea_orm::{DatabaseBackend, DbErr};
use std::fmt::Display;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a task runs and how long it pauses after a failed round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    /// Pause after an idle round.
    pub interval: Duration,
    /// Up to this much is added at random to each pause, so a fleet's rounds spread out.
    pub jitter: Duration,
    /// Pause after a failed round.
    pub after_error: Duration,
}

impl Schedule {
    /// Every `interval`, no jitter, the same pause after a failure.
    pub fn every(interval: Duration) -> Self {
        Self {
            interval,
            jitter: Duration::ZERO,
            after_error: interval,
        }
    }
}

/// What a round found, which decides when the next one runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Nothing more to do now: wait for the interval (or a wake-up).
    Idle,
    /// More work is waiting (a full batch): run again at once.
    Again,
}

/// A fleet-wide singleton lease: on Postgres each round runs under a session-level advisory
/// lock (on a connection held for the round, with no transaction open) that only one process
/// can hold (a process that cannot take it skips the
/// round); SQLite deployments are single-node, so no lock is taken there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    /// The advisory-lock key (one per task).
    pub key: i64,
}

/// A loop that is not a queue job: the one thing such a worker module writes.
#[async_trait::async_trait]
pub trait PeriodicTask: Send + 'static {
    /// Name in logs and the `task` label.
    const NAME: &'static str;
    /// Why a round failed (logged; the loop goes on after [`Schedule::after_error`]).
    type Error: Display + Send;

    /// How often it runs.
    fn schedule(&self) -> Schedule;

    /// The singleton lease each round runs under, if the task must not run twice at once.
    fn lease(&self) -> Option<Lease> {
        None
    }

    /// Called once before the first round (e.g. to start listening for wake-ups).
    async fn start(&mut self) {}

    /// Resolves when the task should run before its interval is up (e.g. on `NOTIFY`); the
    /// default never does.
    async fn wake(&mut self) {
        std::future::pending::<()>().await
    }

    /// One round.
    async fn round(&mut self) -> Result<Round, Self::Error>;
}

/// Round outcomes, the `outcome` label of `gantry_periodic_runs_total`.
pub const OUTCOMES: [&str; 3] = ["completed", "failed", "skipped"];

/// Runs `task` until `shutdown` turns true; a round in progress is finished first.
pub async fn run<T: PeriodicTask>(
    ctx: WorkerContext,
    mut task: T,
    mut shutdown: watch::Receiver<bool>,
) {
    let name = T::NAME;
    let schedule = task.schedule();
    task.start().await;
    tracing::info!(
        task = name,
        interval = ?schedule.interval,
        lease = task.lease().is_some(),
        "periodic task started"
    );
    while !*shutdown.borrow() {
        let started = Instant::now();
        let (outcome, wait) = match one_round(&ctx, &mut task).await {
            Ok(Some(Round::Again)) => ("completed", None),
            Ok(Some(Round::Idle)) => ("completed", Some(schedule.interval)),
            Ok(None) => ("skipped", Some(schedule.interval)),
            Err(err) => {
                tracing::warn!(task = name, %err, "periodic round failed; retrying");
                ("failed", Some(schedule.after_error))
            }
        };
        let elapsed = started.elapsed();
        tracing::debug!(task = name, outcome, ?elapsed, "periodic round");
        ctx.metrics
            .periodic_runs_total
            .with_label_values(&[name, outcome])
            .inc();
        ctx.metrics
            .periodic_round_duration_seconds
            .with_label_values(&[name])
            .observe(elapsed.as_secs_f64());
        let Some(wait) = wait else { continue };
        tokio::select! {
            _ = tokio::time::sleep(wait + jitter(schedule.jitter)) => {}
            _ = shutdown.changed() => {}
            _ = task.wake() => {}
        }
    }
    tracing::info!(task = name, "periodic task stopped");
}

/// Why a round failed: the lease could not be taken or released, or the task failed.
enum RoundError<E> {
    Lease(DbErr),
    Task(E),
}

impl<E: Display> Display for RoundError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RoundError::Lease(err) => write!(f, "lease: database: {err}"),
            RoundError::Task(err) => err.fmt(f),
        }
    }
}

/// One round under the task's lease; `None` when another process holds it.
async fn one_round<T: PeriodicTask>(
    ctx: &WorkerContext,
    task: &mut T,
) -> Result<Option<Round>, RoundError<T::Error>> {
    let key = task.lease().map_or(0, |lease| lease.key);
    let lease = match task.lease() {
        Some(lease) => match take_lease(ctx, lease).await.map_err(RoundError::Lease)? {
            Held::Elsewhere => return Ok(None),
            held => held,
        },
        None => Held::NotNeeded,
    };
    let round = task.round().await;
    if let Held::Here(conn) = lease {
        release_lease(conn, key).await.map_err(RoundError::Lease)?;
    }
    round.map(Some).map_err(RoundError::Task)
}

/// The state of a task's lease for one round.
enum Held {
    /// Taken: a session-level advisory lock on this pooled connection, kept out of the pool
    /// for the round. No transaction stays open meanwhile (a round makes network calls).
    Here(sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Postgres>),
    /// Another process holds it.
    Elsewhere,
    /// No lock is needed (SQLite, or no lease).
    NotNeeded,
}

async fn take_lease(ctx: &WorkerContext, lease: Lease) -> Result<Held, DbErr> {
    if ctx.db.get_database_backend() != DatabaseBackend::Postgres {
        return Ok(Held::NotNeeded);
    }
    let mut conn = ctx
        .db
        .get_postgres_connection_pool()
        .acquire()
        .await
        .map_err(|e| DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    let locked: bool = sea_orm::sqlx::query_scalar("SELECT pg_try_advisory_lock($1)")
        .bind(lease.key)
        .fetch_one(&mut *conn)
        .await
        .map_err(|e| DbErr::Query(sea_orm::RuntimeErr::SqlxError(e.into())))?;
    Ok(if locked {
        Held::Here(conn)
    } else {
        Held::Elsewhere
    })
}

/// Releases a lease taken by [`take_lease`]. If the unlock fails, the connection is closed
/// instead of returned to the pool, which ends its session and so releases the lock anyway.
async fn release_lease(
    mut conn: sea_orm::sqlx::pool::PoolConnection<sea_orm::sqlx::Postgres>,
    key: i64,
) -> Result<(), DbErr> {
    let unlocked = sea_orm::sqlx::query_scalar::<_, bool>("SELECT pg_advisory_unlock($1)")
        .bind(key)
        .fetch_one(&mut *conn)
        .await;
    match unlocked {
        Ok(_) => Ok(()),
        Err(err) => {
            let _ = sea_orm::sqlx::Connection::close(conn.detach()).await;
            Err(DbErr::Query(sea_orm::RuntimeErr::SqlxError(err.into())))
        }
    }
}

/// A random duration in `[0, max]`.
fn jitter(max: Duration) -> Duration {
    // Without randomness, no jitter is a safe (if less spread) choice.
    super::backoff::random_fraction().map_or(Duration::ZERO, |fraction| max.mul_f64(fraction))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_its_bound() {
        assert_eq!(jitter(Duration::ZERO), Duration::ZERO);
        for _ in 0..100 {
            assert!(jitter(Duration::from_millis(50)) <= Duration::from_millis(50));
        }
    }
}
