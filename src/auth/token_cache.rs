//! Verified tokens remembered until they expire, so a client polling with one token pays for
//! the signature check once rather than on every request (an RSA verification is most of an
//! authenticated request's CPU). Only the token's own claims are cached: membership and
//! organization state are read from the database on every request.

use super::validator::{Identity, LEEWAY_SECONDS};
use moka::sync::Cache;
use moka::Expiry;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Bound on remembered tokens; past it the least recently used are evicted.
pub const TOKEN_CACHE_CAPACITY: u64 = 10_000;

/// The SHA-256 of a token's text: the cache never holds a usable bearer.
type TokenDigest = [u8; 32];

/// Tokens that passed every check, by digest, each until its `exp` (plus the tolerated skew).
pub struct VerifiedTokens {
    cache: Cache<TokenDigest, Arc<Identity>>,
}

/// Each entry lives until its own token expires.
struct UntilExpiry;

impl Expiry<TokenDigest, Arc<Identity>> for UntilExpiry {
    fn expire_after_create(
        &self,
        _key: &TokenDigest,
        identity: &Arc<Identity>,
        _created_at: Instant,
    ) -> Option<Duration> {
        Some(Duration::from_secs(
            valid_until(identity).saturating_sub(now_seconds()),
        ))
    }
}

/// The last second at which the token is still accepted, the same bound `jsonwebtoken`
/// applies on a full check.
fn valid_until(identity: &Identity) -> u64 {
    identity.expires_at.saturating_add(LEEWAY_SECONDS)
}

fn now_seconds() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

fn digest(token: &str) -> TokenDigest {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(TOKEN_CACHE_CAPACITY)
                .expire_after(UntilExpiry)
                .build(),
        }
    }
}

impl VerifiedTokens {
    /// The identity of a token verified before and not expired since.
    pub fn get(&self, token: &str) -> Option<Identity> {
        let identity = self.cache.get(&digest(token))?;
        // Entries expire on their own, but eviction is lazy: the deadline is checked here too,
        // so a cached token is refused at exactly the second a full check would refuse it.
        (now_seconds() <= valid_until(&identity)).then(|| Identity::clone(&identity))
    }

    /// Remembers a token that just passed every check.
    pub fn insert(&self, token: &str, identity: &Identity) {
        self.cache.insert(digest(token), Arc::new(identity.clone()));
    }

    /// Forgets every token (the issuer's key set lost a key: tokens it signed must be
    /// checked again, and fail).
    pub fn clear(&self) {
        self.cache.invalidate_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(expires_at: u64) -> Identity {
        Identity {
            sub: "alice".to_owned(),
            preferred_username: None,
            email: None,
            is_platform_admin: false,
            expires_at,
        }
    }

    #[test]
    fn a_remembered_token_is_returned_until_it_expires() {
        let tokens = VerifiedTokens::default();
        let live = identity(now_seconds() + 600);
        tokens.insert("live-token", &live);
        assert_eq!(tokens.get("live-token"), Some(live));
        assert_eq!(tokens.get("other-token"), None);

        // Past `exp` and the skew allowance: refused even before eviction runs.
        tokens.insert("old-token", &identity(now_seconds() - LEEWAY_SECONDS - 1));
        assert_eq!(tokens.get("old-token"), None);
    }

    #[test]
    fn clear_forgets_every_token() {
        let tokens = VerifiedTokens::default();
        tokens.insert("live-token", &identity(now_seconds() + 600));
        tokens.clear();
        assert_eq!(tokens.get("live-token"), None);
    }
}
