//! The `Caller` request guard: a valid bearer token, its user row ensured.

use crate::error::fail;
use crate::error::ApiError;
use crate::state::AppState;
use crate::store;
use rocket::request::{FromRequest, Outcome, Request};
use rocket_okapi::okapi::openapi3::{
    Object, SecurityRequirement, SecurityScheme, SecuritySchemeData,
};
use rocket_okapi::request::RequestHeaderInput;

/// Name of the bearer security scheme in the OpenAPI document.
pub const SECURITY_SCHEME: &str = "bearer";

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Keycloak `sub`.
    pub sub: String,
    /// `preferred_username`, if the token had one.
    pub preferred_username: Option<String>,
    /// `email`, if the token had one.
    pub email: Option<String>,
    /// Holds realm role `gantry-admin`.
    pub is_platform_admin: bool,
    /// When the caller's token expires (Unix seconds).
    pub expires_at: u64,
    /// Set when the caller is a service account (an API key), not a user.
    pub service_account: Option<ServiceAccountCaller>,
}

/// A service account calling with its API key: it acts in one organization with one role.
#[derive(Debug, Clone)]
pub struct ServiceAccountCaller {
    /// Account id.
    pub id: uuid::Uuid,
    /// The organization it belongs to (it is unknown everywhere else).
    pub org_id: uuid::Uuid,
    /// Its role there.
    pub role: crate::domain::Role,
}

impl Caller {
    /// Who this is, for the audit trail.
    pub fn actor(&self) -> crate::audit::Actor {
        match &self.service_account {
            Some(account) => crate::audit::Actor::ServiceAccount(account.id),
            None => crate::audit::Actor::User(self.sub.clone()),
        }
    }
}

/// Prefix of every Gantry API key.
pub const API_KEY_PREFIX: &str = "gtk_";

/// How stale `last_used_at` may get before a use writes it again.
const LAST_USED_RESOLUTION: chrono::Duration = chrono::Duration::seconds(60);

fn bearer_token<'a>(req: &'a Request<'_>) -> Option<&'a str> {
    let value = req.headers().get_one("Authorization")?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

#[rocket::async_trait]
impl<'r> FromRequest<'r> for Caller {
    type Error = ApiError;

    async fn from_request(req: &'r Request<'_>) -> Outcome<Self, ApiError> {
        authenticate(req).await
    }
}

/// Authenticates the request's bearer token, storing the user on first sight; shared by every
/// guard that needs a caller, so each answers 401 the same way and first.
pub async fn authenticate(req: &Request<'_>) -> Outcome<Caller, ApiError> {
    let state = match managed_state(req) {
        Ok(state) => state,
        Err(err) => return fail(req, err),
    };
    let Some(token) = bearer_token(req) else {
        tracing::info!(reason = "missing bearer token", path = %req.uri(), "request refused");
        return fail(req, ApiError::Unauthorized);
    };
    if token.starts_with(API_KEY_PREFIX) {
        return match authenticate_key(state, token).await {
            Ok(caller) => rate_limited(req, state, caller),
            Err(err) => fail(req, err),
        };
    }
    let identity = match state.validator.validate(token).await {
        Ok(identity) => identity,
        Err(reason) => {
            tracing::info!(%reason, path = %req.uri(), "token refused");
            return fail(req, ApiError::Unauthorized);
        }
    };
    if state.users_seen.needs_upsert(&identity) {
        if let Err(err) = store_user(state, &identity).await {
            return fail(req, err.into());
        }
        state.users_seen.remember(&identity);
    }
    let caller = Caller {
        sub: identity.sub,
        preferred_username: identity.preferred_username,
        email: identity.email,
        is_platform_admin: identity.is_platform_admin,
        expires_at: identity.expires_at,
        service_account: None,
    };
    rate_limited(req, state, caller)
}

/// Admits `caller` unless this is a write over its rate limit; records it as the actor.
fn rate_limited(req: &Request<'_>, state: &AppState, caller: Caller) -> Outcome<Caller, ApiError> {
    crate::audit::set_actor(caller.actor());
    // Guards may authenticate more than once per request; the write is counted once.
    let counted = req.local_cache(|| RateCounted(std::sync::atomic::AtomicBool::new(false)));
    if is_write(req) && !counted.0.swap(true, std::sync::atomic::Ordering::Relaxed) {
        if let Err(wait) = state.write_limiter.check(&caller.sub) {
            tracing::info!(sub = %caller.sub, path = %req.uri(), "write rate limited");
            return fail(
                req,
                ApiError::RateLimited {
                    retry_after_secs: wait.as_secs_f64().ceil().max(1.0) as u64,
                },
            );
        }
    }
    Outcome::Success(caller)
}

/// Stores a user on first sight in this process: a user never seen before gets its row and a
/// `user.sign_in` audit row in one transaction; a known one has its profile refreshed.
async fn store_user(
    state: &AppState,
    identity: &crate::auth::Identity,
) -> Result<(), sea_orm::DbErr> {
    let known = store::users::find_by_sub(&state.db, &identity.sub).await?;
    let txn = store::begin_write(&state.db).await?;
    store::users::upsert_seen(
        &txn,
        &identity.sub,
        identity.preferred_username.as_deref(),
        identity.email.as_deref(),
    )
    .await?;
    if known.is_none() {
        crate::audit::record_sign_in(&txn, &identity.sub).await?;
    }
    txn.commit().await
}

/// The hex SHA-256 of an API key, as stored.
pub fn key_hash(key: &str) -> String {
    hex::encode(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        key.as_bytes(),
    ))
}

/// Authenticates an API key (`gtk_…`): a live, unexpired service account, or 401.
async fn authenticate_key(state: &AppState, key: &str) -> Result<Caller, ApiError> {
    let account = store::service_accounts::find_by_key_hash(&state.db, &key_hash(key))
        .await?
        .ok_or_else(|| {
            tracing::info!(reason = "unknown or revoked API key", "request refused");
            ApiError::Unauthorized
        })?;
    let now = store::now();
    if account.expires_at.is_some_and(|at| at <= now) {
        tracing::info!(account = %account.id, reason = "expired API key", "request refused");
        return Err(ApiError::Unauthorized);
    }
    if account
        .last_used_at
        .is_none_or(|at| now - at >= LAST_USED_RESOLUTION)
    {
        store::service_accounts::touch(&state.db, account.id, now).await?;
    }
    Ok(Caller {
        sub: format!("service-account:{}", account.id),
        preferred_username: Some(account.name.clone()),
        email: None,
        is_platform_admin: false,
        expires_at: account
            .expires_at
            .map_or(u64::MAX, |at| at.timestamp().max(0) as u64),
        service_account: Some(ServiceAccountCaller {
            id: account.id,
            org_id: account.org_id,
            role: account.role(),
        }),
    })
}

/// Methods that change state, counted by the write rate limit.
fn is_write(req: &Request<'_>) -> bool {
    use rocket::http::Method;
    matches!(
        req.method(),
        Method::Post | Method::Put | Method::Patch | Method::Delete
    )
}

/// Whether the request's write was already counted by the rate limit.
struct RateCounted(std::sync::atomic::AtomicBool);

/// The application state a guard reads; a 500 if the server was built without it.
pub fn managed_state<'a>(req: &'a Request<'_>) -> Result<&'a AppState, ApiError> {
    req.rocket()
        .state::<AppState>()
        .ok_or_else(|| ApiError::Internal(anyhow::anyhow!("AppState not managed")))
}

/// Documents a guard that authenticates the caller as needing the bearer scheme: one impl of
/// `OpenApiFromRequest` for every such guard (a blanket impl over a marker trait is not allowed
/// for a foreign trait).
macro_rules! documented_as_bearer {
    ($guard:ty $(where $param:ident: $bound:path)?) => {
        impl<'r $(, $param: $bound)?> rocket_okapi::request::OpenApiFromRequest<'r> for $guard {
            fn from_request_input(
                _gen: &mut rocket_okapi::gen::OpenApiGenerator,
                _name: String,
                _required: bool,
            ) -> rocket_okapi::Result<rocket_okapi::request::RequestHeaderInput> {
                Ok($crate::auth::guard::bearer_security())
            }
        }
    };
}
pub(crate) use documented_as_bearer;

documented_as_bearer!(Caller);

/// The bearer security requirement every authenticated route documents.
pub fn bearer_security() -> RequestHeaderInput {
    let scheme = SecurityScheme {
        description: Some(
            "Keycloak access token (or `gantry dev-token` in embedded mode), or a service \
             account's API key (`gtk_…`)."
                .to_owned(),
        ),
        data: SecuritySchemeData::Http {
            scheme: "bearer".to_owned(),
            bearer_format: Some("JWT".to_owned()),
        },
        extensions: Object::default(),
    };
    let mut requirement = SecurityRequirement::new();
    requirement.insert(SECURITY_SCHEME.to_owned(), Vec::new());
    RequestHeaderInput::Security(SECURITY_SCHEME.to_owned(), scheme, requirement)
}

/// Remembers which identities are already stored, so a user row is written on first sight
/// (and when the username or email changes), not on every request.
#[derive(Default)]
pub struct SeenUsers {
    seen: std::sync::Mutex<std::collections::HashMap<String, StoredProfile>>,
}

/// `preferred_username` and `email` as last stored.
type StoredProfile = (Option<String>, Option<String>);

/// Bound on remembered identities; past it the memory starts over (costing one upsert each).
const SEEN_USERS_CAPACITY: usize = 10_000;

impl SeenUsers {
    fn needs_upsert(&self, identity: &crate::auth::Identity) -> bool {
        let Ok(seen) = self.seen.lock() else {
            return true;
        };
        seen.get(&identity.sub)
            != Some(&(identity.preferred_username.clone(), identity.email.clone()))
    }

    fn remember(&self, identity: &crate::auth::Identity) {
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= SEEN_USERS_CAPACITY {
                seen.clear();
            }
            seen.insert(
                identity.sub.clone(),
                (identity.preferred_username.clone(), identity.email.clone()),
            );
        }
    }
}
