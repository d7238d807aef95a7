//! Keys and sealing: each workspace has one random data key, wrapped (AES-256-GCM) by the
//! master key and stored with its `key_id`; chunks and manifests are sealed with AES-256-GCM
//! under the data key (random 96-bit nonce per message, the chunk id or manifest name as
//! associated data, so a blob cannot be swapped for another), and chunk ids are an HMAC-SHA256
//! of the plaintext under a key derived from the data key — equal chunks dedupe without
//! revealing their content. The plaintext data key never leaves memory.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use aws_lc_rs::{digest, hmac};
use base64::Engine;

/// Format version written in front of every sealed blob.
const SEALED_VERSION: u8 = 1;
/// Nonce length of AES-GCM.
const NONCE_LEN: usize = 12;
/// Associated data of a wrapped data key.
const WRAP_AAD: &[u8] = b"gantry-backup-data-key";

/// Why a blob or key did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The AEAD tag or the content hash did not match: the data was changed or truncated.
    #[error("integrity: {0}")]
    Integrity(String),
    /// No key wraps this data key (the master key changed without
    /// `GANTRY_BACKUP_MASTER_KEY_PREVIOUS`).
    #[error("key: {0}")]
    Key(String),
    /// The system's random source failed.
    #[error("random: the system random source failed")]
    Random,
}

fn random<const N: usize>() -> Result<[u8; N], CryptoError> {
    let mut bytes = [0u8; N];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CryptoError::Random)?;
    Ok(bytes)
}

/// A short public fingerprint of a master key (which one wrapped a data key).
pub fn fingerprint(master: &[u8; 32]) -> String {
    let mut input = b"gantry-backup-master-key:".to_vec();
    input.extend_from_slice(master);
    hex::encode(&digest::digest(&digest::SHA256, &input).as_ref()[..8])
}

/// `version ‖ nonce ‖ AES-256-GCM(key, plaintext, aad)`.
fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Key("length".into()))?;
    let nonce_bytes: [u8; NONCE_LEN] = random()?;
    let nonce = aes_gcm::Nonce::from(nonce_bytes);
    let sealed = cipher
        .encrypt(
            &nonce,
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| CryptoError::Integrity("encryption failed".into()))?;
    let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
    out.push(SEALED_VERSION);
    out.extend_from_slice(&nonce_bytes);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Opens what [`seal_with`] wrote; any change to a byte is an integrity error.
fn open_with(key: &[u8; 32], aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
    if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != SEALED_VERSION {
        return Err(CryptoError::Integrity("truncated or unknown format".into()));
    }
    let cipher = Aes256Gcm::new_from_slice(key).map_err(|_| CryptoError::Key("length".into()))?;
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(&blob[1..1 + NONCE_LEN]);
    let nonce = aes_gcm::Nonce::from(nonce_bytes);
    cipher
        .decrypt(
            &nonce,
            Payload {
                msg: &blob[1 + NONCE_LEN..],
                aad,
            },
        )
        .map_err(|_| CryptoError::Integrity("authentication tag mismatch".into()))
}

/// A workspace's data key in memory.
pub struct DataKey {
    /// Its id (on every backup encrypted under it).
    pub id: String,
    secret: [u8; 32],
    mac: hmac::Key,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key itself never reaches a log line.
        f.debug_struct("DataKey").field("id", &self.id).finish()
    }
}

impl DataKey {
    /// A data key from its bytes.
    pub fn new(id: String, secret: [u8; 32]) -> Self {
        // The chunk-id key is derived, so one stored secret serves both purposes.
        let derive = hmac::Key::new(hmac::HMAC_SHA256, &secret);
        let mac_key = hmac::sign(&derive, b"gantry-backup-chunk-id");
        DataKey {
            id,
            secret,
            mac: hmac::Key::new(hmac::HMAC_SHA256, mac_key.as_ref()),
        }
    }

    /// A fresh random data key with a new id.
    pub fn generate() -> Result<Self, CryptoError> {
        Ok(DataKey::new(uuid::Uuid::new_v4().to_string(), random()?))
    }

    /// The content address of a plaintext chunk (hex HMAC-SHA256).
    pub fn chunk_id(&self, plaintext: &[u8]) -> String {
        hex::encode(hmac::sign(&self.mac, plaintext).as_ref())
    }

    /// Seals `plaintext` with `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
        seal_with(&self.secret, aad, plaintext)
    }

    /// Opens a sealed blob.
    pub fn open(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, CryptoError> {
        open_with(&self.secret, aad, blob)
    }

    /// The key wrapped by `master`, as stored (base64).
    pub fn wrap(&self, master: &[u8; 32]) -> Result<String, CryptoError> {
        let mut aad = WRAP_AAD.to_vec();
        aad.extend_from_slice(self.id.as_bytes());
        Ok(
            base64::engine::general_purpose::STANDARD.encode(seal_with(
                master,
                &aad,
                &self.secret,
            )?),
        )
    }

    /// Unwraps a stored key with `master`.
    pub fn unwrap(id: &str, wrapped: &str, master: &[u8; 32]) -> Result<Self, CryptoError> {
        let blob = base64::engine::general_purpose::STANDARD
            .decode(wrapped)
            .map_err(|_| CryptoError::Key("the wrapped key is not base64".into()))?;
        let mut aad = WRAP_AAD.to_vec();
        aad.extend_from_slice(id.as_bytes());
        let secret = open_with(master, &aad, &blob).map_err(|_| {
            CryptoError::Key(format!("data key {id} does not open with this master key"))
        })?;
        let secret: [u8; 32] = secret
            .as_slice()
            .try_into()
            .map_err(|_| CryptoError::Key("a data key must be 32 bytes".into()))?;
        Ok(DataKey::new(id.to_owned(), secret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_tamper() {
        let key = DataKey::generate().expect("random");
        let sealed = key.seal(b"chunk-1", b"hello").expect("seal");
        assert_eq!(key.open(b"chunk-1", &sealed).expect("open"), b"hello");
        assert!(key.open(b"chunk-2", &sealed).is_err(), "wrong aad");
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(matches!(
                key.open(b"chunk-1", &bad),
                Err(CryptoError::Integrity(_))
            ));
        }
        assert_eq!(key.chunk_id(b"x"), key.chunk_id(b"x"));
        assert_ne!(key.chunk_id(b"x"), key.chunk_id(b"y"));
    }

    #[test]
    fn wrap_and_rotate() {
        let (old, new) = ([1u8; 32], [2u8; 32]);
        let key = DataKey::generate().expect("random");
        let wrapped = key.wrap(&old).expect("wrap");
        assert!(DataKey::unwrap(&key.id, &wrapped, &new).is_err());
        let back = DataKey::unwrap(&key.id, &wrapped, &old).expect("unwrap");
        assert_eq!(back.chunk_id(b"a"), key.chunk_id(b"a"));
        assert_ne!(fingerprint(&old), fingerprint(&new));
    }
}
