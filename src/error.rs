//! `ApiError`: every error the HTTP API can answer, mapped once to `application/problem+json`.

use rocket::http::{ContentType, Header, Status};
use rocket::request::{Outcome, Request};
use rocket::response::{self, Responder, Response};
use rocket_okapi::gen::OpenApiGenerator;
use rocket_okapi::okapi::openapi3::{MediaType, Responses};
use rocket_okapi::response::OpenApiResponderInner;
use rocket_okapi::util::add_content_response;
use schemars::JsonSchema;
use serde::Serialize;
use std::io::Cursor;

/// Base of the stable problem `type` URIs.
pub const PROBLEM_BASE: &str = "https://gantry.dev/problems/";

/// One field that failed validation: a JSON Pointer into the request body and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FieldError {
    /// JSON Pointer (RFC 6901) to the offending value in the request body.
    pub pointer: String,
    /// What is wrong with it.
    pub detail: String,
}

impl FieldError {
    /// A field error at `pointer`.
    pub fn new(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            detail: detail.into(),
        }
    }
}

/// An RFC 9457 problem document as Gantry sends it.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Problem {
    /// Stable URI naming the kind of problem.
    #[serde(rename = "type")]
    pub problem_type: String,
    /// Short human summary of the kind of problem.
    pub title: String,
    /// The HTTP status code.
    pub status: u16,
    /// What went wrong in this occurrence.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Validation errors (only on 422).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

/// Every error an API handler or guard can produce.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed (bad JSON syntax, bad query parameter).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// No valid bearer token. The reason is logged, never sent.
    #[error("unauthorized")]
    Unauthorized,
    /// The caller is known but lacks the role for this action.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The resource does not exist, or the caller may not know that it exists.
    #[error("not found")]
    NotFound,
    /// The request conflicts with the current state (duplicate name, last owner, …).
    #[error("conflict: {0}")]
    Conflict(String),
    /// `If-Match` does not match the current version.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// A conditional header is required (`If-Match`).
    #[error("precondition required: {0}")]
    PreconditionRequired(String),
    /// The body has the wrong media type.
    #[error("unsupported media type: {0}")]
    UnsupportedMediaType(String),
    /// The body is too large.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The body parsed but its values are not acceptable.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A quota on how many of something may exist is reached (422 `quota-exceeded`): deleting
    /// some, or a higher limit, is needed.
    #[error("quota exceeded: {0}")]
    QuotaExceeded(String),
    /// A quota on how many of something may be in flight is reached (429 `quota-exceeded`):
    /// it frees up by itself (jobs finish, streams close).
    #[error("quota exceeded (in flight): {0}")]
    InFlightQuotaExceeded(String),
    /// The caller writes faster than its rate limit (429 `rate-limited` with `Retry-After`).
    #[error("rate limited; retry after {retry_after_secs}s")]
    RateLimited {
        /// Whole seconds until a write is admitted again (at least 1).
        retry_after_secs: u64,
    },
    /// The method is not declared on this path (405 with `Allow`).
    #[error("method not allowed; allowed: {0}")]
    MethodNotAllowed(String),
    /// A dependency (database, Redis) is unavailable.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Anything else: logged with its cause chain, answered as a bare 500.
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(err: sea_orm::DbErr) -> Self {
        ApiError::Internal(anyhow::Error::new(err).context("database error"))
    }
}

impl ApiError {
    /// A single-field validation error.
    pub fn invalid(pointer: impl Into<String>, detail: impl Into<String>) -> Self {
        ApiError::Validation(vec![FieldError::new(pointer, detail)])
    }

    /// A copy for the catcher (an internal error keeps its message, not its cause chain).
    pub fn duplicate(&self) -> ApiError {
        match self {
            ApiError::BadRequest(d) => ApiError::BadRequest(d.clone()),
            ApiError::Unauthorized => ApiError::Unauthorized,
            ApiError::Forbidden(d) => ApiError::Forbidden(d.clone()),
            ApiError::NotFound => ApiError::NotFound,
            ApiError::Conflict(d) => ApiError::Conflict(d.clone()),
            ApiError::PreconditionFailed(d) => ApiError::PreconditionFailed(d.clone()),
            ApiError::PreconditionRequired(d) => ApiError::PreconditionRequired(d.clone()),
            ApiError::UnsupportedMediaType(d) => ApiError::UnsupportedMediaType(d.clone()),
            ApiError::PayloadTooLarge => ApiError::PayloadTooLarge,
            ApiError::Validation(e) => ApiError::Validation(e.clone()),
            ApiError::QuotaExceeded(d) => ApiError::QuotaExceeded(d.clone()),
            ApiError::InFlightQuotaExceeded(d) => ApiError::InFlightQuotaExceeded(d.clone()),
            ApiError::RateLimited { retry_after_secs } => ApiError::RateLimited {
                retry_after_secs: *retry_after_secs,
            },
            ApiError::MethodNotAllowed(d) => ApiError::MethodNotAllowed(d.clone()),
            ApiError::Unavailable(d) => ApiError::Unavailable(d.clone()),
            ApiError::Internal(e) => ApiError::Internal(anyhow::anyhow!("{e:#}")),
        }
    }

    /// The HTTP status this error answers with.
    pub fn status(&self) -> Status {
        match self {
            ApiError::BadRequest(_) => Status::BadRequest,
            ApiError::Unauthorized => Status::Unauthorized,
            ApiError::Forbidden(_) => Status::Forbidden,
            ApiError::NotFound => Status::NotFound,
            ApiError::Conflict(_) => Status::Conflict,
            ApiError::PreconditionFailed(_) => Status::PreconditionFailed,
            ApiError::PreconditionRequired(_) => Status::PreconditionRequired,
            ApiError::UnsupportedMediaType(_) => Status::UnsupportedMediaType,
            ApiError::PayloadTooLarge => Status::PayloadTooLarge,
            ApiError::Validation(_) => Status::UnprocessableEntity,
            ApiError::QuotaExceeded(_) => Status::UnprocessableEntity,
            ApiError::InFlightQuotaExceeded(_) | ApiError::RateLimited { .. } => {
                Status::TooManyRequests
            }
            ApiError::MethodNotAllowed(_) => Status::MethodNotAllowed,
            ApiError::Unavailable(_) => Status::ServiceUnavailable,
            ApiError::Internal(_) => Status::InternalServerError,
        }
    }

    /// The problem document for this error.
    pub fn to_problem(&self) -> Problem {
        let status = self.status();
        let (slug, title, detail, errors) = match self {
            ApiError::BadRequest(d) => ("bad-request", "Bad request", Some(d.clone()), None),
            ApiError::Unauthorized => (
                "unauthorized",
                "Unauthorized",
                Some("a valid bearer token is required".to_owned()),
                None,
            ),
            ApiError::Forbidden(d) => ("forbidden", "Forbidden", Some(d.clone()), None),
            ApiError::NotFound => (
                "not-found",
                "Not found",
                Some("no such resource".to_owned()),
                None,
            ),
            ApiError::Conflict(d) => ("conflict", "Conflict", Some(d.clone()), None),
            ApiError::PreconditionFailed(d) => (
                "precondition-failed",
                "Precondition failed",
                Some(d.clone()),
                None,
            ),
            ApiError::PreconditionRequired(d) => (
                "precondition-required",
                "Precondition required",
                Some(d.clone()),
                None,
            ),
            ApiError::UnsupportedMediaType(d) => (
                "unsupported-media-type",
                "Unsupported media type",
                Some(d.clone()),
                None,
            ),
            ApiError::PayloadTooLarge => (
                "payload-too-large",
                "Payload too large",
                Some("the request body is larger than allowed".to_owned()),
                None,
            ),
            ApiError::Validation(errors) => (
                "validation",
                "Validation failed",
                Some("the request body has invalid values".to_owned()),
                Some(errors.clone()),
            ),
            ApiError::QuotaExceeded(d) | ApiError::InFlightQuotaExceeded(d) => {
                ("quota-exceeded", "Quota exceeded", Some(d.clone()), None)
            }
            ApiError::RateLimited { retry_after_secs } => (
                "rate-limited",
                "Too many requests",
                Some(format!(
                    "too many writes; retry after {retry_after_secs} second(s)"
                )),
                None,
            ),
            ApiError::MethodNotAllowed(allowed) => (
                "method-not-allowed",
                "Method not allowed",
                Some(format!("this path allows {allowed}")),
                None,
            ),
            ApiError::Unavailable(d) => {
                ("unavailable", "Service unavailable", Some(d.clone()), None)
            }
            ApiError::Internal(_) => ("internal", "Internal server error", None, None),
        };
        Problem {
            problem_type: format!("{PROBLEM_BASE}{slug}"),
            title: title.to_owned(),
            status: status.code,
            detail,
            errors,
        }
    }

    /// A generic problem for a status that no handler produced (unknown route, …).
    pub fn for_status(status: Status) -> ApiError {
        match status.code {
            400 => ApiError::BadRequest("the request could not be understood".to_owned()),
            401 => ApiError::Unauthorized,
            403 => ApiError::Forbidden("not allowed".to_owned()),
            404 => ApiError::NotFound,
            413 => ApiError::PayloadTooLarge,
            415 => ApiError::UnsupportedMediaType("expected application/json".to_owned()),
            422 => ApiError::Validation(vec![]),
            503 => ApiError::Unavailable("a dependency is unavailable".to_owned()),
            _ => ApiError::Internal(anyhow::anyhow!("unhandled status {status}")),
        }
    }
}

/// Problem `Content-Type`.
pub fn problem_content_type() -> ContentType {
    ContentType::new("application", "problem+json")
}

impl<'r> Responder<'r, 'static> for ApiError {
    fn respond_to(self, req: &'r Request<'_>) -> response::Result<'static> {
        match &self {
            ApiError::Internal(err) => {
                tracing::error!(error = ?err, path = %req.uri(), "internal error");
            }
            ApiError::Unavailable(what) => {
                tracing::warn!(what = %what, path = %req.uri(), "dependency unavailable");
            }
            _ => {}
        }
        let problem = self.to_problem();
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut builder = Response::build();
        builder
            .status(self.status())
            .header(problem_content_type())
            .sized_body(body.len(), Cursor::new(body));
        match &self {
            ApiError::Unauthorized => {
                builder.header(Header::new(
                    "WWW-Authenticate",
                    "Bearer error=\"invalid_token\"",
                ));
            }
            ApiError::RateLimited { retry_after_secs } => {
                builder.header(Header::new("Retry-After", retry_after_secs.to_string()));
            }
            ApiError::MethodNotAllowed(allowed) => {
                builder.header(Header::new("Allow", allowed.clone()));
            }
            _ => {}
        }
        Ok(builder.finalize())
    }
}

/// Statuses every authenticated route may answer with (documented once).
const DOCUMENTED_ERRORS: &[(u16, &str)] = &[
    (
        400,
        "Malformed request (bad JSON syntax, bad query parameter)",
    ),
    (401, "Missing or invalid bearer token"),
    (403, "The caller's role does not allow this action"),
    (404, "Not found, or not visible to the caller"),
    (409, "Conflicts with the current state"),
    (
        422,
        "Validation failed (`errors` lists `{pointer, detail}`), or a quota is reached (`quota-exceeded`)",
    ),
    (
        429,
        "Too many writes (`rate-limited`, with `Retry-After`) or too much in flight (`quota-exceeded`)",
    ),
];

impl OpenApiResponderInner for ApiError {
    fn responses(gen: &mut OpenApiGenerator) -> rocket_okapi::Result<Responses> {
        let schema = gen.json_schema::<Problem>();
        let mut responses = Responses::default();
        for (code, description) in DOCUMENTED_ERRORS {
            let media = MediaType {
                schema: Some(schema.clone()),
                ..MediaType::default()
            };
            add_content_response(&mut responses, *code, "application/problem+json", media)?;
            if let Some(rocket_okapi::okapi::openapi3::RefOr::Object(response)) =
                responses.responses.get_mut(&code.to_string())
            {
                response.description = (*description).to_owned();
            }
        }
        Ok(responses)
    }
}

/// Error kept for the catcher: guards that fail store their `ApiError` here so the catcher can
/// answer with the exact problem document.
pub struct CachedError(pub std::sync::Mutex<Option<ApiError>>);

/// Keeps `err` for the catcher; the first error wins, as it is the one that stopped the request.
fn keep_error(req: &Request<'_>, err: &ApiError) {
    let cached = req.local_cache(|| CachedError(std::sync::Mutex::new(None)));
    if let Ok(mut slot) = cached.0.lock() {
        if slot.is_none() {
            *slot = Some(err.duplicate());
        }
    }
}

/// Fails a request guard with `err`, keeping it for the catcher.
pub fn fail<T>(req: &Request<'_>, err: ApiError) -> Outcome<T, ApiError> {
    keep_error(req, &err);
    Outcome::Error((err.status(), err))
}

/// Fails a data guard with `err`, keeping it for the catcher.
pub fn fail_data<'r, T>(
    req: &Request<'_>,
    err: ApiError,
) -> rocket::data::Outcome<'r, T, ApiError> {
    keep_error(req, &err);
    rocket::data::Outcome::Error((err.status(), err))
}
