//! A set of verification keys taken from a JWKS, restricted to asymmetric signing keys.

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use std::collections::HashMap;

/// Algorithms Gantry accepts. Everything else (`none`, HS*, …) is refused before any key is used.
pub const ACCEPTED_ALGORITHMS: [Algorithm; 5] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::ES256,
    Algorithm::PS256,
];

/// The key family an algorithm needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyFamily {
    /// RSA keys (RS*, PS*).
    Rsa,
    /// EC P-256 keys (ES256).
    Ec,
}

/// The family `alg` verifies with, if it is accepted at all.
pub fn family_of(alg: Algorithm) -> Option<KeyFamily> {
    match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 | Algorithm::PS256 => {
            Some(KeyFamily::Rsa)
        }
        Algorithm::ES256 => Some(KeyFamily::Ec),
        _ => None,
    }
}

/// One verification key.
#[derive(Clone)]
pub struct VerificationKey {
    /// The decoding key.
    pub key: DecodingKey,
    /// Its family; a token's algorithm must match it.
    pub family: KeyFamily,
    /// The algorithm the JWK pins, if any.
    pub algorithm: Option<Algorithm>,
}

/// Keys by `kid`.
#[derive(Clone, Default)]
pub struct KeySet {
    keys: HashMap<String, VerificationKey>,
}

impl KeySet {
    /// Keeps only RSA and EC keys meant for signatures; symmetric (`oct`) keys are dropped so a
    /// JWKS can never turn into an HMAC secret.
    pub fn from_jwks(jwks: &JwkSet) -> Self {
        let mut keys = HashMap::new();
        for jwk in &jwks.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            if matches!(
                jwk.common.public_key_use,
                Some(PublicKeyUse::Encryption) | Some(PublicKeyUse::Other(_))
            ) {
                continue;
            }
            let family = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => KeyFamily::Rsa,
                AlgorithmParameters::EllipticCurve(_) => KeyFamily::Ec,
                _ => continue,
            };
            let algorithm = match jwk.common.key_algorithm {
                None => None,
                Some(alg) => match key_algorithm(alg) {
                    Some(alg) if family_of(alg) == Some(family) => Some(alg),
                    // Keycloak also publishes RSA-OAEP encryption keys; skip anything unusable.
                    _ => continue,
                },
            };
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => {
                    keys.insert(
                        kid,
                        VerificationKey {
                            key,
                            family,
                            algorithm,
                        },
                    );
                }
                Err(err) => tracing::warn!(%err, kid, "skipping unusable JWK"),
            }
        }
        Self { keys }
    }

    /// The key with this id.
    pub fn get(&self, kid: &str) -> Option<&VerificationKey> {
        self.keys.get(kid)
    }

    /// How many keys the set holds.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// True when the set holds no key.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// True when some key of `previous` is missing here (the issuer revoked or retired it).
    pub fn drops_any_of(&self, previous: &KeySet) -> bool {
        previous.keys.keys().any(|kid| !self.keys.contains_key(kid))
    }
}

fn key_algorithm(alg: KeyAlgorithm) -> Option<Algorithm> {
    Some(match alg {
        KeyAlgorithm::RS256 => Algorithm::RS256,
        KeyAlgorithm::RS384 => Algorithm::RS384,
        KeyAlgorithm::RS512 => Algorithm::RS512,
        KeyAlgorithm::ES256 => Algorithm::ES256,
        KeyAlgorithm::PS256 => Algorithm::PS256,
        _ => return None,
    })
}
