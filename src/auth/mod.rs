//! Authentication: Keycloak-shaped JWTs validated against a JWKS (remote or the local dev key),
//! and the request guard that turns a bearer token into a [`Caller`].

pub mod access;
pub mod access_cache;
pub mod dev;
pub mod guard;
pub mod keys;
pub mod rate;
pub mod streams;
pub mod token_cache;
pub mod validator;

pub use access::{Admin, Member, OrgAccess, Owner, PlatformAdmin, Viewer};
pub use guard::{Caller, ServiceAccountCaller};
pub use validator::{Identity, TokenValidator};

/// Realm role that makes a user a platform admin.
pub const ADMIN_ROLE: &str = "gantry-admin";

/// Why a token was refused. Logged, never sent to the client.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer …` header.
    #[error("missing bearer token")]
    Missing,
    /// The header or token is not a well-formed JWT.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// The algorithm is not one of the accepted asymmetric ones.
    #[error("algorithm {0} is not accepted")]
    Algorithm(String),
    /// No key with this `kid` (even after a refetch).
    #[error("unknown key id {0:?}")]
    UnknownKey(Option<String>),
    /// Signature, expiry, nbf or issuer check failed.
    #[error("token rejected: {0}")]
    Invalid(String),
    /// Neither `aud` contains the audience nor `azp` equals it.
    #[error("token is not for audience {0:?}")]
    Audience(String),
    /// `typ` is not `Bearer` (an ID or refresh token, or none at all).
    #[error("token type {0:?} is not Bearer")]
    TokenType(String),
    /// The key set could not be fetched.
    #[error("key set unavailable: {0}")]
    KeySet(String),
}
