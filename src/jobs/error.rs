//! Why a job or a queue access failed.

use sea_orm::DbErr;

/// A job's own failure as the runtime holds it: any error, boxed, with its cause chain.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a job failed, with its cause. [`JobError::is_retryable`] decides between another attempt
/// and a dead job; the rendered message is what logs and the dead job's `last_error` show.
/// Worker modules turn their own errors into [`JobError::Failed`] (an `impl From` beside the
/// error), so the runtime knows no worker.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job's arguments do not fit its kind: every attempt would fail the same way.
    #[error("permanent: bad {queue} job arguments: {source}")]
    BadArgs {
        /// The queue whose kind refused them.
        queue: &'static str,
        /// The deserialization error.
        #[source]
        source: serde_json::Error,
    },
    /// The system-of-record database failed (retryable).
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// A job queue failed (retryable).
    #[error("{0}")]
    Queue(#[from] QueueError),
    /// The job's work failed with `source`; another attempt follows when `retryable`.
    #[error("{prefix}{source}", prefix = if *.retryable { "" } else { "permanent: " })]
    Failed {
        /// Whether another attempt may succeed.
        retryable: bool,
        /// What failed.
        #[source]
        source: BoxError,
    },
    /// A condition the job itself reports (no underlying error) that is worth another attempt.
    #[error("{0}")]
    Retryable(String),
    /// A condition the job itself reports that will not change on retry: the job dies at once.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl JobError {
    /// A failure of the job's work: retried when `retryable`, else the job dies at once.
    pub fn failed(retryable: bool, source: impl Into<BoxError>) -> Self {
        JobError::Failed {
            retryable,
            source: source.into(),
        }
    }

    /// True when another attempt may succeed (after backoff); false makes the job dead at once.
    pub fn is_retryable(&self) -> bool {
        match self {
            JobError::BadArgs { .. } | JobError::Permanent(_) => false,
            JobError::Database(_) | JobError::Queue(_) | JobError::Retryable(_) => true,
            JobError::Failed { retryable, .. } => *retryable,
        }
    }
}

/// Why queue access failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The system-of-record database failed.
    #[error("database: {0}")]
    Database(#[from] DbErr),
    /// Redis failed.
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    /// The queue storage refused (e.g. a job that cannot be encoded).
    #[error("job storage: {0}")]
    Storage(String),
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::Command;

    /// A worker's error, as a worker module would define it.
    #[derive(Debug, thiserror::Error)]
    #[error("{0}")]
    struct WorkerFailure(&'static str);

    #[test]
    fn errors_keep_their_class_and_message_shape() {
        let transient = JobError::failed(true, WorkerFailure("503 from the API"));
        assert!(transient.is_retryable());
        assert_eq!(transient.to_string(), "503 from the API");
        assert!(std::error::Error::source(&transient).is_some());
        let refused = JobError::failed(false, WorkerFailure("403 forbidden"));
        assert!(!refused.is_retryable());
        assert_eq!(refused.to_string(), "permanent: 403 forbidden");
        let db = JobError::from(DbErr::Custom("gone".into()));
        assert!(db.is_retryable());
        assert!(db.to_string().starts_with("database: "));
        assert!(
            std::error::Error::source(&db).is_some(),
            "the cause is kept"
        );
        let told = JobError::Retryable("probe told to fail its first 2 attempts".into());
        assert!(told.is_retryable());
        assert_eq!(told.to_string(), "probe told to fail its first 2 attempts");
    }

    #[test]
    fn bad_arguments_are_permanent_and_name_the_queue() {
        let err = serde_json::from_value::<Command<uuid::Uuid>>(serde_json::json!({}))
            .map(|_| ())
            .map_err(|source| JobError::BadArgs {
                queue: "probe",
                source,
            })
            .expect_err("no event_type");
        assert!(!err.is_retryable());
        assert!(err
            .to_string()
            .starts_with("permanent: bad probe job arguments: "));
        assert!(std::error::Error::source(&err).is_some());
    }
}
