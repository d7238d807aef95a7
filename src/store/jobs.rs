//! `job_queue` (the SQL queue backend: every job attempt, claimed and settled in batches),
//! `dead_jobs`, and the probe job kind's `probe_batches` / `probe_runs`.

use super::paging::{keyset, KeyOrder, Page, PageRequest};
use super::{now, placeholders, sql_for};
use chrono::{DateTime, Utc};
use sea_orm::entity::prelude::*;
use sea_orm::{DatabaseBackend, FromQueryResult, Set, Statement};

/// The `dead_jobs` table.
pub mod dead_entity {
    use sea_orm::entity::prelude::*;

    /// A job that exhausted its attempts or failed permanently, kept with its last error.
    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_jobs")]
    pub struct Model {
        /// Job id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Queue the job ran on.
        pub queue: String,
        /// The job arguments (JSON).
        #[sea_orm(column_type = "JsonBinary")]
        pub payload: Json,
        /// Attempts made before it died.
        pub attempts: i32,
        /// Error of the last attempt.
        #[sea_orm(column_type = "Text")]
        pub last_error: String,
        /// When the job went dead.
        pub died_at: DateTimeUtc,
        /// When an operator discarded it; `None` while listed.
        pub discarded_at: Option<DateTimeUtc>,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// The `probe_batches` table.
pub mod probe_batch_entity {
    use sea_orm::entity::prelude::*;

    /// One `POST /v1/admin/probes`.
    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "probe_batches")]
    pub struct Model {
        /// Job id.
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: Uuid,
        /// Number of probe jobs in the batch.
        pub total: i32,
        /// When the row was inserted.
        pub created_at: DateTimeUtc,
    }

    /// No relations are declared; queries join explicitly.
    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

/// A dead job row.
pub type DeadJob = dead_entity::Model;

/// Records a dead job; a second death of the same job replaces the first record.
pub async fn insert_dead(
    db: &impl ConnectionTrait,
    id: Uuid,
    queue: &str,
    payload: Json,
    attempts: i32,
    last_error: &str,
) -> Result<(), DbErr> {
    dead_entity::Entity::delete_by_id(id).exec(db).await?;
    dead_entity::ActiveModel {
        id: Set(id),
        queue: Set(queue.to_owned()),
        payload: Set(payload),
        attempts: Set(attempts),
        last_error: Set(last_error.to_owned()),
        died_at: Set(now()),
        discarded_at: Set(None),
    }
    .insert(db)
    .await?;
    Ok(())
}

/// Dead jobs, optionally of one queue, newest id order, paged by id.
pub async fn list_dead(
    db: &impl ConnectionTrait,
    queue: Option<&str>,
    page: &PageRequest<Uuid>,
) -> Result<Page<DeadJob>, DbErr> {
    let mut query = dead_entity::Entity::find().filter(dead_entity::Column::DiscardedAt.is_null());
    if let Some(queue) = queue {
        query = query.filter(dead_entity::Column::Queue.eq(queue));
    }
    keyset(
        db,
        query,
        dead_entity::Column::Id,
        KeyOrder::Ascending,
        page,
    )
    .await
}

/// One dead job record, discarded or not.
pub async fn find_dead(db: &impl ConnectionTrait, id: Uuid) -> Result<Option<DeadJob>, DbErr> {
    dead_entity::Entity::find_by_id(id).one(db).await
}

/// Removes a dead job that is being retried; true when it existed.
pub async fn delete_dead(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    Ok(dead_entity::Entity::delete_by_id(id)
        .exec(db)
        .await?
        .rows_affected
        > 0)
}

/// Discards a dead job (an operator's delete): it disappears from the API but its record stays,
/// so the reconciler knows the work was given up. True when it was dead and not yet discarded.
pub async fn discard_dead(db: &impl ConnectionTrait, id: Uuid) -> Result<bool, DbErr> {
    let result = dead_entity::Entity::update_many()
        .col_expr(
            dead_entity::Column::DiscardedAt,
            sea_orm::sea_query::Expr::value(now()),
        )
        .filter(dead_entity::Column::Id.eq(id))
        .filter(dead_entity::Column::DiscardedAt.is_null())
        .exec(db)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Dead-job count per queue.
pub async fn count_dead(db: &impl ConnectionTrait, queue: &str) -> Result<u64, DbErr> {
    dead_entity::Entity::find()
        .filter(dead_entity::Column::Queue.eq(queue))
        .filter(dead_entity::Column::DiscardedAt.is_null())
        .count(db)
        .await
}

/// Creates a probe batch row (inside the caller's transaction).
pub async fn insert_probe_batch(
    db: &impl ConnectionTrait,
    id: Uuid,
    total: i32,
) -> Result<probe_batch_entity::Model, DbErr> {
    probe_batch_entity::ActiveModel {
        id: Set(id),
        total: Set(total),
        created_at: Set(now()),
    }
    .insert(db)
    .await
}

/// A probe batch.
pub async fn find_probe_batch(
    db: &impl ConnectionTrait,
    id: Uuid,
) -> Result<Option<probe_batch_entity::Model>, DbErr> {
    probe_batch_entity::Entity::find_by_id(id).one(db).await
}

/// Records one run of a probe job: the first run inserts its row, later runs (re-deliveries)
/// only count an execution. Returns nothing; the row is the proof.
pub async fn record_probe_run(
    db: &impl ConnectionTrait,
    event_id: Uuid,
    batch_id: Uuid,
    enqueued_at: DateTime<Utc>,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "INSERT INTO probe_runs (event_id, batch_id, enqueued_at, completed_at, executions) \
             VALUES ($1, $2, $3, $4, 1) \
             ON CONFLICT (event_id) DO UPDATE SET executions = probe_runs.executions + 1"
        }
        _ => {
            "INSERT INTO probe_runs (event_id, batch_id, enqueued_at, completed_at, executions) \
             VALUES (?1, ?2, ?3, ?4, 1) \
             ON CONFLICT (event_id) DO UPDATE SET executions = probe_runs.executions + 1"
        }
    };
    db.execute_raw(Statement::from_sql_and_values(
        backend,
        sql,
        [
            event_id.into(),
            batch_id.into(),
            enqueued_at.into(),
            now().into(),
        ],
    ))
    .await?;
    Ok(())
}

/// What a probe batch came to.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ProbeStats {
    /// Distinct probe jobs completed.
    pub completed: i64,
    /// Handler runs (above `completed` only after re-deliveries).
    pub executions: Option<i64>,
    /// When the first probe job was enqueued.
    pub first_enqueued_at: Option<DateTime<Utc>>,
    /// When the last probe job completed.
    pub last_completed_at: Option<DateTime<Utc>>,
}

/// Aggregates a batch's probe runs.
pub async fn probe_stats(db: &impl ConnectionTrait, batch_id: Uuid) -> Result<ProbeStats, DbErr> {
    let backend = db.get_database_backend();
    let placeholder = if backend == DatabaseBackend::Postgres {
        "$1"
    } else {
        "?1"
    };
    let sql = format!(
        "SELECT COUNT(*) AS completed, CAST(SUM(executions) AS BIGINT) AS executions, \
         MIN(enqueued_at) AS first_enqueued_at, MAX(completed_at) AS last_completed_at \
         FROM probe_runs WHERE batch_id = {placeholder}"
    );
    let stats = ProbeStats::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [batch_id.into()],
    ))
    .one(db)
    .await?;
    Ok(stats.unwrap_or(ProbeStats {
        completed: 0,
        executions: Some(0),
        first_enqueued_at: None,
        last_completed_at: None,
    }))
}

/// A routed probe event that has no completed run and no dead job: work the reconciler owes.
#[derive(Debug, Clone, FromQueryResult)]
pub struct StrandedEvent {
    /// The outbox row id (the page key).
    pub id: i64,
    /// The event (and job) id.
    pub event_id: Uuid,
    /// The event data (the job's arguments).
    pub payload: Json,
}

/// Published `event_type` events older than `published_before` without a completed probe run
/// or a dead job, after outbox row `after_id`, oldest first, at most `limit`.
pub async fn stranded_probe_events(
    db: &impl ConnectionTrait,
    event_type: &str,
    published_before: DateTime<Utc>,
    after_id: i64,
    limit: u64,
) -> Result<Vec<StrandedEvent>, DbErr> {
    let backend = db.get_database_backend();
    let sql = "SELECT o.id, o.event_id, o.payload FROM outbox_events o \
         WHERE o.event_type = $1 AND o.published_at IS NOT NULL AND o.published_at < $2 \
         AND o.id > $3 \
         AND NOT EXISTS (SELECT 1 FROM probe_runs r WHERE r.event_id = o.event_id) \
         AND NOT EXISTS (SELECT 1 FROM dead_jobs d WHERE d.id = o.event_id) \
         ORDER BY o.id LIMIT $4";
    StrandedEvent::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql_for(backend, sql),
        [
            event_type.into(),
            published_before.into(),
            after_id.into(),
            (limit as i64).into(),
        ],
    ))
    .all(db)
    .await
}

// --- job_queue: the SQL queue backend (Postgres and SQLite) ---------------------------------
//
// One row per attempt, `id` = the attempt's task id. States: `pending` (due at `run_at`, which
// may lie ahead: scheduled), `running` (leased by `lock_by` until `locked_until`), `done`
// (settled: completed, retried as a new row, or dead). Times are Unix milliseconds. Claims,
// completions and inserts are one statement per batch; the queries are written with `$n`
// placeholders and rewritten to `?n` for SQLite.

/// Rows per multi-row statement (7 parameters each stays far below both backends' limits).
const QUEUE_CHUNK: usize = 500;

/// One attempt to insert into `job_queue`.
#[derive(Debug, Clone)]
pub struct QueuedJob {
    /// Task id of the attempt (primary key: inserting it twice is a no-op).
    pub id: String,
    /// Prefixed queue name.
    pub queue: String,
    /// Logical job id.
    pub job_id: Uuid,
    /// Attempt number.
    pub attempt: i32,
    /// Unix ms it may run at.
    pub run_at: i64,
    /// The encoded envelope (JSON).
    pub payload: String,
}

/// Inserts attempts that are not there yet (an attempt already queued or finished is skipped);
/// returns how many were new.
pub async fn push_jobs(db: &impl ConnectionTrait, jobs: &[QueuedJob]) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let mut inserted = 0;
    for chunk in jobs.chunks(QUEUE_CHUNK) {
        let rows = (0..chunk.len())
            .map(|i| format!("({},'pending')", placeholders(i * 6 + 1, 6)))
            .collect::<Vec<_>>()
            .join(",");
        let sql = format!(
            "INSERT INTO job_queue (id, queue, job_id, attempt, run_at, payload, state) \
             VALUES {rows} ON CONFLICT (id) DO NOTHING"
        );
        let mut values: Vec<sea_orm::Value> = Vec::with_capacity(chunk.len() * 6);
        for job in chunk {
            values.extend([
                job.id.clone().into(),
                job.queue.clone().into(),
                job.job_id.to_string().into(),
                job.attempt.into(),
                job.run_at.into(),
                job.payload.clone().into(),
            ]);
        }
        let statement = Statement::from_sql_and_values(backend, sql_for(backend, &sql), values);
        inserted += db.execute_raw(statement).await?.rows_affected();
    }
    Ok(inserted)
}

/// A claimed attempt: its task id and encoded envelope.
#[derive(Debug, Clone, FromQueryResult)]
pub struct ClaimedJob {
    /// Task id.
    pub id: String,
    /// The encoded envelope.
    pub payload: String,
}

/// Leases up to `limit` due jobs of `queue` to `holder` until `lease_until` (oldest first);
/// concurrent claimers skip each other's rows on Postgres.
pub async fn claim_jobs(
    db: &impl ConnectionTrait,
    queue: &str,
    holder: &str,
    limit: usize,
    now_ms: i64,
    lease_until: i64,
) -> Result<Vec<ClaimedJob>, DbErr> {
    let backend = db.get_database_backend();
    let lock = if backend == DatabaseBackend::Postgres {
        " FOR UPDATE SKIP LOCKED"
    } else {
        ""
    };
    let sql = format!(
        "UPDATE job_queue SET state = 'running', lock_by = $1, locked_until = $2 \
         WHERE id IN (SELECT id FROM job_queue WHERE queue = $3 AND state = 'pending' \
         AND run_at <= $4 ORDER BY run_at, id LIMIT $5{lock}) RETURNING id, payload"
    );
    ClaimedJob::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql_for(backend, &sql),
        [
            holder.into(),
            lease_until.into(),
            queue.into(),
            now_ms.into(),
            (limit as i64).into(),
        ],
    ))
    .all(db)
    .await
}

/// Marks running attempts settled (`done`).
pub async fn complete_jobs(
    db: &impl ConnectionTrait,
    ids: &[String],
    now_ms: i64,
) -> Result<(), DbErr> {
    let backend = db.get_database_backend();
    for chunk in ids.chunks(QUEUE_CHUNK) {
        let sql = format!(
            "UPDATE job_queue SET state = 'done', done_at = $1, lock_by = NULL, \
             locked_until = NULL WHERE state = 'running' AND id IN ({})",
            placeholders(2, chunk.len())
        );
        let mut values: Vec<sea_orm::Value> = vec![now_ms.into()];
        values.extend(chunk.iter().map(|id| id.clone().into()));
        db.execute_raw(Statement::from_sql_and_values(
            backend,
            sql_for(backend, &sql),
            values,
        ))
        .await?;
    }
    Ok(())
}

/// Extends the leases `holder` has (its heartbeat).
pub async fn extend_leases(
    db: &impl ConnectionTrait,
    holder: &str,
    lease_until: i64,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = "UPDATE job_queue SET locked_until = $1 WHERE state = 'running' AND lock_by = $2";
    Ok(db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql_for(backend, sql),
            [lease_until.into(), holder.into()],
        ))
        .await?
        .rows_affected())
}

/// Gives back what `holder` still leases (a stopping worker): ready again at once.
pub async fn release_jobs(db: &impl ConnectionTrait, holder: &str) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = "UPDATE job_queue SET state = 'pending', lock_by = NULL, locked_until = NULL \
               WHERE state = 'running' AND lock_by = $1";
    Ok(db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql_for(backend, sql),
            [holder.into()],
        ))
        .await?
        .rows_affected())
}

/// Makes running jobs whose lease ran out (their worker died) ready again; returns how many.
pub async fn rescue_expired(db: &impl ConnectionTrait, now_ms: i64) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = "UPDATE job_queue SET state = 'pending', lock_by = NULL, locked_until = NULL \
               WHERE state = 'running' AND locked_until < $1";
    Ok(db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql_for(backend, sql),
            [now_ms.into()],
        ))
        .await?
        .rows_affected())
}

/// Job counts of one queue in the SQL queue backend.
#[derive(Debug, Clone, Default, FromQueryResult)]
pub struct QueueCounts {
    /// Ready to run now.
    pub pending: Option<i64>,
    /// Waiting for their `run_at` (retries with backoff, delayed jobs).
    pub scheduled: Option<i64>,
    /// Held by a worker.
    pub running: Option<i64>,
    /// Unix ms of the oldest ready job.
    pub oldest_pending_run_at: Option<i64>,
}

/// Counts the unfinished jobs of `queue` (finished ones: [`count_done`]).
pub async fn queue_counts(
    db: &impl ConnectionTrait,
    queue: &str,
    now_ms: i64,
) -> Result<QueueCounts, DbErr> {
    let backend = db.get_database_backend();
    let sql = "SELECT \
        CAST(SUM(CASE WHEN state = 'pending' AND run_at <= $2 THEN 1 ELSE 0 END) AS BIGINT) AS pending, \
        CAST(SUM(CASE WHEN state = 'pending' AND run_at > $2 THEN 1 ELSE 0 END) AS BIGINT) AS scheduled, \
        CAST(SUM(CASE WHEN state = 'running' THEN 1 ELSE 0 END) AS BIGINT) AS running, \
        MIN(CASE WHEN state = 'pending' AND run_at <= $2 THEN run_at END) AS oldest_pending_run_at \
        FROM job_queue WHERE queue = $1 AND state IN ('pending', 'running')";
    Ok(
        QueueCounts::find_by_statement(Statement::from_sql_and_values(
            backend,
            sql_for(backend, sql),
            [queue.into(), now_ms.into()],
        ))
        .one(db)
        .await?
        .unwrap_or_default(),
    )
}

/// Finished attempts of `queue` still remembered.
pub async fn count_done(db: &impl ConnectionTrait, queue: &str) -> Result<u64, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        n: i64,
    }
    let backend = db.get_database_backend();
    let sql = "SELECT COUNT(*) AS n FROM job_queue WHERE queue = $1 AND state = 'done'";
    let row = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql_for(backend, sql),
        [queue.into()],
    ))
    .one(db)
    .await?;
    Ok(row.map_or(0, |r| r.n.max(0) as u64))
}

/// Attempts of `queue` finished at or after `since_ms` (Unix ms) and still remembered.
pub async fn count_done_since(
    db: &impl ConnectionTrait,
    queue: &str,
    since_ms: i64,
) -> Result<u64, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        n: i64,
    }
    let backend = db.get_database_backend();
    let sql =
        "SELECT COUNT(*) AS n FROM job_queue WHERE queue = $1 AND state = 'done' AND done_at >= $2";
    let row = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql_for(backend, sql),
        [queue.into(), since_ms.into()],
    ))
    .one(db)
    .await?;
    Ok(row.map_or(0, |r| r.n.max(0) as u64))
}

/// One `job_queue` row, for the admin API.
#[derive(Debug, Clone, FromQueryResult)]
pub struct QueueRow {
    /// Task id.
    pub id: String,
    /// Prefixed queue name.
    pub queue: String,
    /// `pending`, `running` or `done`.
    pub state: String,
    /// Unix ms it may run at.
    pub run_at: i64,
    /// The encoded envelope.
    pub payload: String,
}

/// Rows of `queue` in an admin state (`pending`, `scheduled`, `running`, `done`) after task id
/// `after`, at most `limit + 1` (to tell whether more follow).
pub async fn list_queue(
    db: &impl ConnectionTrait,
    queue: &str,
    state: &str,
    after: Option<&str>,
    limit: u64,
    now_ms: i64,
) -> Result<Vec<QueueRow>, DbErr> {
    let backend = db.get_database_backend();
    let condition = match state {
        "pending" => "state = 'pending' AND run_at <= $4",
        "scheduled" => "state = 'pending' AND run_at > $4",
        "running" => "state = 'running' AND $4 = $4",
        _ => "state = 'done' AND $4 = $4",
    };
    let sql = format!(
        "SELECT id, queue, state, run_at, payload FROM job_queue \
         WHERE queue = $1 AND {condition} AND id > $2 ORDER BY id LIMIT $3"
    );
    QueueRow::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql_for(backend, &sql),
        [
            queue.into(),
            after.unwrap_or("").into(),
            ((limit + 1) as i64).into(),
            now_ms.into(),
        ],
    ))
    .all(db)
    .await
}

/// The latest attempt among task ids `ids` (a job's possible attempts), in whichever queue.
pub async fn latest_attempt(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<Option<QueueRow>, DbErr> {
    let backend = db.get_database_backend();
    let sql = format!(
        "SELECT id, queue, state, run_at, payload FROM job_queue WHERE id IN ({}) \
         ORDER BY attempt DESC LIMIT 1",
        placeholders(1, ids.len())
    );
    let values: Vec<sea_orm::Value> = ids.iter().map(|id| id.clone().into()).collect();
    QueueRow::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql_for(backend, &sql),
        values,
    ))
    .one(db)
    .await
}

/// Deletes finished attempts of `queue` settled before `cutoff_ms`; returns how many.
pub async fn delete_finished_before(
    db: &impl ConnectionTrait,
    queue: &str,
    cutoff_ms: i64,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let sql = "DELETE FROM job_queue WHERE queue = $1 AND state = 'done' AND done_at < $2";
    Ok(db
        .execute_raw(Statement::from_sql_and_values(
            backend,
            sql_for(backend, sql),
            [queue.into(), cutoff_ms.into()],
        ))
        .await?
        .rows_affected())
}
