//! `dead_jobs`, the probe job kind's `probe_batches` / `probe_runs`, and read-only views of the
//! apalis job tables (Postgres `apalis.jobs`, SQLite `Jobs`) for the admin API.

use super::now;
use super::paging::{keyset, KeyOrder, Page, PageRequest};
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
    /// The event (and job) id.
    pub event_id: Uuid,
    /// The event data (the job's arguments).
    pub payload: Json,
}

/// Published `event_type` events older than `published_before` without a completed probe run
/// or a dead job.
pub async fn stranded_probe_events(
    db: &impl ConnectionTrait,
    event_type: &str,
    published_before: DateTime<Utc>,
    limit: u64,
) -> Result<Vec<StrandedEvent>, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT o.event_id, o.payload FROM outbox_events o \
             WHERE o.event_type = $1 AND o.published_at IS NOT NULL AND o.published_at < $2 \
             AND NOT EXISTS (SELECT 1 FROM probe_runs r WHERE r.event_id = o.event_id) \
             AND NOT EXISTS (SELECT 1 FROM dead_jobs d WHERE d.id = o.event_id) \
             ORDER BY o.id LIMIT $3"
        }
        _ => {
            "SELECT o.event_id, o.payload FROM outbox_events o \
             WHERE o.event_type = ?1 AND o.published_at IS NOT NULL AND o.published_at < ?2 \
             AND NOT EXISTS (SELECT 1 FROM probe_runs r WHERE r.event_id = o.event_id) \
             AND NOT EXISTS (SELECT 1 FROM dead_jobs d WHERE d.id = o.event_id) \
             ORDER BY o.id LIMIT ?3"
        }
    };
    StrandedEvent::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [
            event_type.into(),
            published_before.into(),
            (limit as i64).into(),
        ],
    ))
    .all(db)
    .await
}

/// Job counts of one queue as the SQL job backends store them.
#[derive(Debug, Clone, Default, FromQueryResult)]
pub struct QueueCounts {
    /// Ready to run now.
    pub pending: Option<i64>,
    /// Waiting for their `run_at` (retries with backoff, delayed jobs).
    pub scheduled: Option<i64>,
    /// Held by a worker.
    pub running: Option<i64>,
    /// Finished (kept until vacuumed).
    pub done: Option<i64>,
    /// Failed at the backend level with no attempts left (our layer records its own dead jobs).
    pub dead: Option<i64>,
    /// Unix seconds of the oldest ready job.
    pub oldest_pending_run_at: Option<i64>,
}

const COUNTS_POSTGRES: &str = "SELECT \
    SUM(CASE WHEN (status IN ('Pending','Queued') OR (status = 'Failed' AND attempts < max_attempts)) AND run_at <= now() THEN 1 ELSE 0 END) AS pending, \
    SUM(CASE WHEN (status IN ('Pending','Queued') OR (status = 'Failed' AND attempts < max_attempts)) AND run_at > now() THEN 1 ELSE 0 END) AS scheduled, \
    SUM(CASE WHEN status = 'Running' THEN 1 ELSE 0 END) AS running, \
    CAST(NULL AS BIGINT) AS done, \
    SUM(CASE WHEN status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) THEN 1 ELSE 0 END) AS dead, \
    CAST(EXTRACT(EPOCH FROM MIN(CASE WHEN status IN ('Pending','Queued') AND run_at <= now() THEN run_at END)) AS BIGINT) AS oldest_pending_run_at \
    FROM apalis.jobs WHERE job_type = $1 AND status IN ('Pending','Queued','Running','Failed','Killed')";

const COUNTS_SQLITE: &str = "SELECT \
    SUM(CASE WHEN (status IN ('Pending','Queued') OR (status = 'Failed' AND attempts < max_attempts)) AND run_at <= strftime('%s','now') THEN 1 ELSE 0 END) AS pending, \
    SUM(CASE WHEN (status IN ('Pending','Queued') OR (status = 'Failed' AND attempts < max_attempts)) AND run_at > strftime('%s','now') THEN 1 ELSE 0 END) AS scheduled, \
    SUM(CASE WHEN status = 'Running' THEN 1 ELSE 0 END) AS running, \
    CAST(NULL AS INTEGER) AS done, \
    SUM(CASE WHEN status = 'Killed' OR (status = 'Failed' AND attempts >= max_attempts) THEN 1 ELSE 0 END) AS dead, \
    MIN(CASE WHEN status IN ('Pending','Queued') AND run_at <= strftime('%s','now') THEN run_at END) AS oldest_pending_run_at \
    FROM Jobs WHERE job_type = ?1 AND status IN ('Pending','Queued','Running','Failed','Killed')";

/// Index that keeps the per-state counts below from reading finished jobs (created after
/// apalis' own tables exist).
pub async fn ensure_status_index(db: &impl ConnectionTrait) -> Result<(), DbErr> {
    let sql = match db.get_database_backend() {
        DatabaseBackend::Postgres => {
            "CREATE INDEX IF NOT EXISTS gantry_jobs_type_status ON apalis.jobs (job_type, status)"
        }
        _ => "CREATE INDEX IF NOT EXISTS gantry_jobs_type_status ON Jobs (job_type, status)",
    };
    db.execute_unprepared(sql).await?;
    Ok(())
}

/// Finished (`Done`) apalis jobs of `job_type` still remembered.
pub async fn count_done(db: &impl ConnectionTrait, job_type: &str) -> Result<u64, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        n: i64,
    }
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => {
            "SELECT COUNT(*) AS n FROM apalis.jobs WHERE job_type = $1 AND status = 'Done'"
        }
        _ => "SELECT COUNT(*) AS n FROM Jobs WHERE job_type = ?1 AND status = 'Done'",
    };
    let row = Row::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [job_type.into()],
    ))
    .one(db)
    .await?;
    Ok(row.map_or(0, |r| r.n.max(0) as u64))
}

/// Counts of the unfinished apalis jobs of `job_type` (the prefixed queue name); `done` is
/// left out (see [`count_done`]) because it is the one state that grows with traffic.
pub async fn sql_queue_counts(
    db: &impl ConnectionTrait,
    job_type: &str,
) -> Result<QueueCounts, DbErr> {
    let backend = db.get_database_backend();
    let sql = match backend {
        DatabaseBackend::Postgres => COUNTS_POSTGRES,
        _ => COUNTS_SQLITE,
    };
    Ok(
        QueueCounts::find_by_statement(Statement::from_sql_and_values(
            backend,
            sql,
            [job_type.into()],
        ))
        .one(db)
        .await?
        .unwrap_or_default(),
    )
}

/// Which of `ids` (apalis task ids) already exist in the SQL job table.
pub async fn existing_task_ids(
    db: &impl ConnectionTrait,
    ids: &[String],
) -> Result<std::collections::HashSet<String>, DbErr> {
    #[derive(FromQueryResult)]
    struct Row {
        id: String,
    }
    let backend = db.get_database_backend();
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let sql = match backend {
            DatabaseBackend::Postgres => "SELECT id FROM apalis.jobs WHERE id = ANY($1)".to_owned(),
            _ => format!(
                "SELECT id FROM Jobs WHERE id IN ({})",
                (1..=chunk.len())
                    .map(|i| format!("?{i}"))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
        };
        let values: Vec<sea_orm::Value> = match backend {
            DatabaseBackend::Postgres => vec![chunk.to_vec().into()],
            _ => chunk.iter().map(|id| id.clone().into()).collect(),
        };
        let rows = Row::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
            .all(db)
            .await?;
        found.extend(rows.into_iter().map(|r| r.id));
    }
    Ok(found)
}

/// One apalis job row, for the admin API.
#[derive(Debug, Clone, FromQueryResult)]
pub struct SqlJobRow {
    /// apalis task id.
    pub id: String,
    /// Prefixed queue name.
    pub job_type: String,
    /// apalis status (`Pending`, `Running`, `Done`, `Failed`, `Killed`, …).
    pub status: String,
    /// Attempts apalis made.
    pub attempts: i32,
    /// Unix seconds it may run at.
    pub run_at: i64,
    /// The encoded job (JSON bytes).
    pub job: Vec<u8>,
}

/// Job rows of `job_type` in a state (`pending`, `scheduled`, `running`, `done`), after
/// `after` (task id order), at most `limit + 1`.
pub async fn sql_jobs(
    db: &impl ConnectionTrait,
    job_type: &str,
    state: &str,
    after: Option<&str>,
    limit: u64,
) -> Result<Vec<SqlJobRow>, DbErr> {
    let backend = db.get_database_backend();
    let (table, run_at, now_expr, p) = match backend {
        DatabaseBackend::Postgres => (
            "apalis.jobs",
            "CAST(EXTRACT(EPOCH FROM run_at) AS BIGINT)",
            "now()",
            ["$1", "$2", "$3"],
        ),
        _ => ("Jobs", "run_at", "strftime('%s','now')", ["?1", "?2", "?3"]),
    };
    let condition = match state {
        "pending" => format!("status IN ('Pending','Queued') AND run_at <= {now_expr}"),
        "scheduled" => format!("status IN ('Pending','Queued') AND run_at > {now_expr}"),
        "running" => "status = 'Running'".to_owned(),
        _ => "status = 'Done'".to_owned(),
    };
    let job_column = if backend == DatabaseBackend::Postgres {
        "job"
    } else {
        "CAST(job AS BLOB)"
    };
    let sql = format!(
        "SELECT id, job_type, status, attempts, {run_at} AS run_at, {job_column} AS job FROM {table} \
         WHERE job_type = {} AND {condition} AND id > {} ORDER BY id LIMIT {}",
        p[0], p[1], p[2]
    );
    SqlJobRow::find_by_statement(Statement::from_sql_and_values(
        backend,
        sql,
        [
            job_type.into(),
            after.unwrap_or("").into(),
            ((limit + 1) as i64).into(),
        ],
    ))
    .all(db)
    .await
}

/// Deletes finished (`Done`) apalis jobs of `job_type` that finished before `cutoff`; returns
/// how many.
pub async fn delete_finished_before(
    db: &impl ConnectionTrait,
    job_type: &str,
    cutoff: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let backend = db.get_database_backend();
    let statement = match backend {
        DatabaseBackend::Postgres => Statement::from_sql_and_values(
            backend,
            "DELETE FROM apalis.jobs WHERE job_type = $1 AND status = 'Done' AND done_at < $2",
            [job_type.into(), cutoff.into()],
        ),
        _ => Statement::from_sql_and_values(
            backend,
            "DELETE FROM Jobs WHERE job_type = ?1 AND status = 'Done' AND done_at < ?2",
            [job_type.into(), cutoff.timestamp().into()],
        ),
    };
    Ok(db.execute_raw(statement).await?.rows_affected())
}

/// Job rows of `job_type` among the task `ids`.
pub async fn sql_jobs_by_ids(
    db: &impl ConnectionTrait,
    job_type: &str,
    ids: &[String],
) -> Result<Vec<SqlJobRow>, DbErr> {
    let backend = db.get_database_backend();
    let (sql, values): (String, Vec<sea_orm::Value>) = match backend {
        DatabaseBackend::Postgres => (
            "SELECT id, job_type, status, attempts, CAST(EXTRACT(EPOCH FROM run_at) AS BIGINT) AS run_at, job \
             FROM apalis.jobs WHERE job_type = $1 AND id = ANY($2)"
                .to_owned(),
            vec![job_type.into(), ids.to_vec().into()],
        ),
        _ => {
            let placeholders = (2..ids.len() + 2)
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(",");
            let mut values: Vec<sea_orm::Value> = vec![job_type.into()];
            values.extend(ids.iter().map(|id| id.clone().into()));
            (
                format!(
                    "SELECT id, job_type, status, attempts, run_at, CAST(job AS BLOB) AS job \
                     FROM Jobs WHERE job_type = ?1 AND id IN ({placeholders})"
                ),
                values,
            )
        }
    };
    SqlJobRow::find_by_statement(Statement::from_sql_and_values(backend, sql, values))
        .all(db)
        .await
}
