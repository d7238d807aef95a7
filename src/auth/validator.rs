//! Token validation: one code path for Keycloak tokens and embedded dev tokens.

use super::keys::{family_of, KeySet, VerificationKey, ACCEPTED_ALGORITHMS};
use super::token_cache::VerifiedTokens;
use super::{AuthError, ADMIN_ROLE};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{decode, decode_header, Validation};
use serde::Deserialize;
use std::time::{Duration, Instant};
use tokio::sync::{Mutex, RwLock};

/// Seconds of clock skew tolerated on `exp` and `nbf`.
pub const LEEWAY_SECONDS: u64 = 30;
/// An unknown `kid` triggers at most one JWKS refetch per this interval.
pub const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// Who a valid token says the caller is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Keycloak `sub`.
    pub sub: String,
    /// `preferred_username`.
    pub preferred_username: Option<String>,
    /// `email`.
    pub email: Option<String>,
    /// Has realm role `gantry-admin`.
    pub is_platform_admin: bool,
    /// `exp`: when the token stops being valid (Unix seconds); long-lived responses such as
    /// event streams end then.
    pub expires_at: u64,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

impl Audience {
    fn contains(&self, wanted: &str) -> bool {
        match self {
            Audience::One(a) => a == wanted,
            Audience::Many(all) => all.iter().any(|a| a == wanted),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
struct RealmAccess {
    #[serde(default)]
    roles: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    aud: Option<Audience>,
    azp: Option<String>,
    preferred_username: Option<String>,
    email: Option<String>,
    /// Keycloak's token type: `Bearer` for access tokens, `ID` for ID tokens, `Refresh`, ….
    typ: Option<String>,
    #[serde(default)]
    realm_access: RealmAccess,
}

/// The only `typ` an API bearer may carry: ID and refresh tokens of the same realm are
/// signed by the same keys and must not be usable as access tokens.
pub const ACCESS_TOKEN_TYPE: &str = "Bearer";

/// Where verification keys come from.
enum KeySource {
    /// A fixed set (the embedded dev key).
    Static(KeySet),
    /// A Keycloak realm's JWKS, fetched and cached.
    Remote(RemoteKeys),
}

struct RemoteKeys {
    issuer: String,
    explicit_jwks_uri: Option<String>,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// When an unknown `kid` last caused a refetch.
    last_refetch: Mutex<Option<Instant>>,
}

#[derive(Deserialize)]
struct Discovery {
    jwks_uri: String,
}

impl RemoteKeys {
    async fn key(
        &self,
        kid: &str,
        verified: &VerifiedTokens,
    ) -> Result<Option<VerificationKey>, AuthError> {
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(Some(key.clone()));
        }
        // One refresher at a time; the others wait and then look again.
        let mut last_refetch = self.last_refetch.lock().await;
        if let Some(key) = self.keys.read().await.get(kid) {
            return Ok(Some(key.clone()));
        }
        if last_refetch.is_some_and(|at| at.elapsed() < REFETCH_INTERVAL) {
            return Ok(None);
        }
        *last_refetch = Some(Instant::now());
        let fetched = self.fetch().await?;
        tracing::info!(keys = fetched.len(), "fetched JWKS");
        let found = fetched.get(kid).cloned();
        self.replace(fetched, verified).await;
        Ok(found)
    }

    /// Installs a freshly fetched key set; a key that disappeared was revoked or retired, so
    /// every token verified with the old set is checked again.
    async fn replace(&self, fetched: KeySet, verified: &VerifiedTokens) {
        let mut keys = self.keys.write().await;
        if fetched.drops_any_of(&keys) {
            verified.clear();
            tracing::info!("the JWKS dropped a key; verified tokens forgotten");
        }
        *keys = fetched;
    }

    async fn fetch(&self) -> Result<KeySet, AuthError> {
        let jwks_uri = match &self.explicit_jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.issuer);
                let discovery: Discovery = self.get_json(&url).await?;
                discovery.jwks_uri
            }
        };
        let jwks: JwkSet = self.get_json(&jwks_uri).await?;
        Ok(KeySet::from_jwks(&jwks))
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str) -> Result<T, AuthError> {
        let response = self
            .http
            .get(url)
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| AuthError::KeySet(format!("GET {url}: {e}")))?;
        response
            .json()
            .await
            .map_err(|e| AuthError::KeySet(format!("GET {url}: {e}")))
    }
}

/// Validates bearer tokens for one issuer and audience.
pub struct TokenValidator {
    issuer: String,
    audience: String,
    source: KeySource,
    verified: VerifiedTokens,
}

impl TokenValidator {
    /// A validator for a Keycloak realm; keys are fetched on first use. Fails when the HTTP
    /// client cannot be built (never falls back to one without timeouts).
    pub fn keycloak(
        issuer: &str,
        audience: &str,
        jwks_uri: Option<String>,
    ) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthError::KeySet(format!("cannot build the JWKS HTTP client: {e}")))?;
        Ok(Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            source: KeySource::Remote(RemoteKeys {
                issuer: issuer.to_owned(),
                explicit_jwks_uri: jwks_uri,
                http,
                keys: RwLock::new(KeySet::default()),
                last_refetch: Mutex::new(None),
            }),
            verified: VerifiedTokens::default(),
        })
    }

    /// A validator over a fixed key set (the embedded dev issuer).
    pub fn with_static_keys(issuer: &str, audience: &str, jwks: &JwkSet) -> Self {
        Self {
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            source: KeySource::Static(KeySet::from_jwks(jwks)),
            verified: VerifiedTokens::default(),
        }
    }

    /// Fetches the remote key set now (at start-up) so the first request does not wait.
    pub async fn warm_up(&self) -> Result<(), AuthError> {
        if let KeySource::Remote(remote) = &self.source {
            // The start-up fetch does not count against the refetch budget: a key rotated
            // right after start must still be picked up on first sight.
            let keys = remote.fetch().await?;
            remote.replace(keys, &self.verified).await;
        }
        Ok(())
    }

    async fn key(&self, kid: &str) -> Result<Option<VerificationKey>, AuthError> {
        match &self.source {
            KeySource::Static(keys) => Ok(keys.get(kid).cloned()),
            KeySource::Remote(remote) => remote.key(kid, &self.verified).await,
        }
    }

    /// Checks `token` and returns the identity it carries; a token that passed before and has
    /// not expired is answered from memory.
    pub async fn validate(&self, token: &str) -> Result<Identity, AuthError> {
        if let Some(identity) = self.verified.get(token) {
            return Ok(identity);
        }
        let identity = self.verify(token).await?;
        self.verified.insert(token, &identity);
        Ok(identity)
    }

    /// The full check: header, key, signature, time, issuer, audience and type.
    async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let header = decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        let alg = header.alg;
        if !ACCEPTED_ALGORITHMS.contains(&alg) {
            return Err(AuthError::Algorithm(format!("{alg:?}")));
        }
        let kid = header.kid.ok_or(AuthError::UnknownKey(None))?;
        let key = self
            .key(&kid)
            .await?
            .ok_or_else(|| AuthError::UnknownKey(Some(kid.clone())))?;
        // The algorithm must fit the key: an RSA key never verifies an ES256 token, and a key
        // that pins its algorithm accepts only that one.
        if family_of(alg) != Some(key.family) || key.algorithm.is_some_and(|pinned| pinned != alg) {
            return Err(AuthError::Algorithm(format!("{alg:?} for key {kid}")));
        }

        let mut validation = Validation::new(alg);
        validation.leeway = LEEWAY_SECONDS;
        validation.validate_exp = true;
        validation.validate_nbf = true;
        validation.validate_aud = false; // checked below: `aud` or `azp`, as Keycloak issues them
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "sub"]);
        let claims = decode::<Claims>(token, &key.key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?
            .claims;

        let audience_ok = claims
            .aud
            .as_ref()
            .is_some_and(|aud| aud.contains(&self.audience))
            || claims.azp.as_deref() == Some(self.audience.as_str());
        if !audience_ok {
            return Err(AuthError::Audience(self.audience.clone()));
        }
        if claims.typ.as_deref() != Some(ACCESS_TOKEN_TYPE) {
            return Err(AuthError::TokenType(claims.typ.unwrap_or_default()));
        }
        if claims.sub.is_empty() {
            return Err(AuthError::Invalid("empty sub".to_owned()));
        }
        Ok(Identity {
            is_platform_admin: claims.realm_access.roles.iter().any(|r| r == ADMIN_ROLE),
            sub: claims.sub,
            preferred_username: claims.preferred_username,
            email: claims.email,
            expires_at: claims.exp,
        })
    }
}
