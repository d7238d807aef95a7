//! Embedded dev auth: a local ES256 key in the data directory signs Keycloak-shaped tokens
//! (`gantry dev-token`); the server validates them through the same [`TokenValidator`].

use super::validator::TokenValidator;
use super::ADMIN_ROLE;
use aws_lc_rs::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use serde::Serialize;
use std::fs::{self, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Issuer of dev tokens, shaped like a Keycloak realm URL.
pub const DEV_ISSUER: &str = "http://localhost/realms/gantry-dev";
/// `azp` of dev tokens (the "client" that minted them).
pub const DEV_CLIENT: &str = "gantry-dev-token";
/// File name of the dev signing key (PKCS#8 DER) inside the data directory.
pub const KEY_FILE: &str = "dev-signing-key.p8";

/// Problems with the dev signing key.
#[derive(Debug, thiserror::Error)]
pub enum DevKeyError {
    /// Reading or writing the key file failed.
    #[error("dev signing key {path}: {source}")]
    Io {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The key file holds no usable key.
    #[error("dev signing key {0} is not a P-256 PKCS#8 key; delete it to create a new one")]
    Corrupt(PathBuf),
    /// Key generation or signing failed.
    #[error("dev signing failed: {0}")]
    Crypto(String),
}

/// The local signing key and its public JWKS.
pub struct DevSigner {
    encoding_key: EncodingKey,
    kid: String,
    jwks: JwkSet,
}

#[derive(Serialize)]
struct RealmAccess {
    roles: Vec<String>,
}

#[derive(Serialize)]
struct DevClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    azp: &'a str,
    typ: &'a str,
    iat: u64,
    nbf: u64,
    exp: u64,
    preferred_username: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    realm_access: RealmAccess,
}

impl DevSigner {
    /// Loads the key from `data_dir`, creating it (mode 0600, directory 0700) on first use.
    pub fn load_or_create(data_dir: &Path) -> Result<Self, DevKeyError> {
        let path = data_dir.join(KEY_FILE);
        let io_err = |source| DevKeyError::Io {
            path: path.clone(),
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(data_dir)
            .map_err(io_err)?;
        let pkcs8 = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let generated = EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING)
                    .and_then(|k| k.to_pkcs8v1())
                    .map_err(|e| DevKeyError::Crypto(e.to_string()))?;
                // create_new: if two processes race, exactly one writes and both read its key.
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&path)
                {
                    Ok(mut file) => {
                        file.write_all(generated.as_ref()).map_err(io_err)?;
                        file.sync_all().map_err(io_err)?;
                        generated.as_ref().to_vec()
                    }
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                        fs::read(&path).map_err(io_err)?
                    }
                    Err(e) => return Err(io_err(e)),
                }
            }
            Err(e) => return Err(io_err(e)),
        };
        Self::from_pkcs8(&pkcs8).ok_or(DevKeyError::Corrupt(path))
    }

    fn from_pkcs8(pkcs8: &[u8]) -> Option<Self> {
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).ok()?;
        let point = pair.public_key().as_ref();
        // Uncompressed SEC1 point: 0x04 || X (32 bytes) || Y (32 bytes).
        if point.len() != 65 || point[0] != 4 {
            return None;
        }
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, point);
        let kid = format!("dev-{}", &URL_SAFE_NO_PAD.encode(digest.as_ref())[..16]);
        let jwks: JwkSet = serde_json::from_value(serde_json::json!({
            "keys": [{
                "kty": "EC",
                "crv": "P-256",
                "use": "sig",
                "alg": "ES256",
                "kid": kid,
                "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
            }]
        }))
        .ok()?;
        Some(Self {
            encoding_key: EncodingKey::from_ec_der(pkcs8),
            kid,
            jwks,
        })
    }

    /// The public key set (what a Keycloak realm would publish).
    pub fn jwks(&self) -> &JwkSet {
        &self.jwks
    }

    /// A validator that accepts this signer's tokens for `audience`.
    pub fn validator(&self, audience: &str) -> TokenValidator {
        TokenValidator::with_static_keys(DEV_ISSUER, audience, &self.jwks)
    }

    /// Mints a bearer token for `sub`.
    pub fn mint(
        &self,
        sub: &str,
        email: Option<&str>,
        admin: bool,
        ttl: Duration,
        audience: &str,
    ) -> Result<String, DevKeyError> {
        let now = jsonwebtoken::get_current_timestamp();
        let roles = if admin {
            vec![ADMIN_ROLE.to_owned(), "default-roles-gantry-dev".to_owned()]
        } else {
            vec!["default-roles-gantry-dev".to_owned()]
        };
        let claims = DevClaims {
            iss: DEV_ISSUER,
            sub,
            aud: audience,
            azp: DEV_CLIENT,
            typ: "Bearer",
            iat: now,
            nbf: now,
            exp: now + ttl.as_secs(),
            preferred_username: sub,
            email,
            realm_access: RealmAccess { roles },
        };
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        encode(&header, &claims, &self.encoding_key).map_err(|e| DevKeyError::Crypto(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn minted_tokens_validate_and_key_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let signer = DevSigner::load_or_create(dir.path()).expect("create");
        let mode = fs::metadata(dir.path().join(KEY_FILE))
            .expect("key file")
            .permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );

        let again = DevSigner::load_or_create(dir.path()).expect("reload");
        assert_eq!(again.kid, signer.kid, "the key is reused, not regenerated");

        let token = signer
            .mint(
                "alice",
                Some("a@example.com"),
                true,
                Duration::from_secs(60),
                "gantry",
            )
            .expect("mint");
        let identity = again
            .validator("gantry")
            .validate(&token)
            .await
            .expect("valid");
        assert_eq!(identity.sub, "alice");
        assert!(identity.is_platform_admin);
        assert!(again.validator("other").validate(&token).await.is_err());
    }
}
