//! Encryption at rest of stored secrets (org secrets, webhook signing secrets): AES-256-GCM
//! under `GANTRY_SECRETS_KEY`, with the key's id stored beside each value so a value sealed by
//! `GANTRY_SECRETS_KEY_PREVIOUS` still opens after a rotation (and `gantry rotate-secrets`
//! re-seals it under the current key).
//!
//! A stored value is `base64(version ‖ nonce ‖ ciphertext+tag)`; the associated data names the
//! row (`org_secrets:<org>:<name>`, `webhooks:<id>`) so a value copied into another row does not
//! open there.

use crate::config::{Config, Environment};
use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::Aes256Gcm;
use aws_lc_rs::digest;
use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// File in the data dir holding the generated key (embedded mode only).
pub const KEY_FILE: &str = "secrets.key";
/// Format version in front of every sealed value.
const VERSION: u8 = 1;
/// AES-GCM nonce length.
const NONCE_LEN: usize = 12;

/// Why a value could not be sealed or opened, or the key not loaded.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// No key with the stored id is configured (the key changed without
    /// `GANTRY_SECRETS_KEY_PREVIOUS`).
    #[error("the value is sealed by key {0}, which is neither GANTRY_SECRETS_KEY nor GANTRY_SECRETS_KEY_PREVIOUS")]
    UnknownKey(String),
    /// The tag did not match: the stored value was changed, truncated or moved to another row.
    #[error("the stored value does not open (changed, truncated or moved)")]
    Integrity,
    /// The system's random source failed.
    #[error("the system random source failed")]
    Random,
    /// Production needs an explicit key.
    #[error("GANTRY_SECRETS_KEY is required when GANTRY_ENV=production (32 bytes, base64)")]
    MissingInProduction,
    /// The generated key file could not be read or written.
    #[error("secrets key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The generated key file does not hold a 32-byte base64 key.
    #[error("secrets key file {0} is not a 32-byte base64 key")]
    Corrupt(PathBuf),
}

/// One key: its bytes and public id. `Debug` shows the id only.
#[derive(Clone)]
struct Key {
    id: String,
    bytes: [u8; 32],
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("id", &self.id)
            .field("bytes", &"[redacted]")
            .finish()
    }
}

impl Key {
    fn new(bytes: [u8; 32]) -> Self {
        Self {
            id: key_id(&bytes),
            bytes,
        }
    }
}

/// The public id of a key: 16 hex digits of SHA-256 over a context prefix and the key.
pub fn key_id(key: &[u8; 32]) -> String {
    let mut input = b"gantry-secrets-key:".to_vec();
    input.extend_from_slice(key);
    hex::encode(&digest::digest(&digest::SHA256, &input).as_ref()[..8])
}

/// A value as stored: the ciphertext (base64) and the id of the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed {
    /// `base64(version ‖ nonce ‖ ciphertext+tag)`.
    pub ciphertext: String,
    /// [`key_id`] of the sealing key.
    pub key_id: String,
}

impl std::fmt::Debug for Sealed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealed")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// Seals and opens stored secrets with the current key (and the previous one, for reading).
#[derive(Debug, Clone)]
pub struct SecretsCipher {
    current: Key,
    previous: Option<Key>,
}

impl SecretsCipher {
    /// A cipher sealing with `current` and opening with `current` or `previous`.
    pub fn new(current: [u8; 32], previous: Option<[u8; 32]>) -> Self {
        Self {
            current: Key::new(current),
            previous: previous.map(Key::new),
        }
    }

    /// A cipher with a fresh random key, for throwaway databases (benchmarks).
    pub fn ephemeral() -> Result<Self, SealError> {
        let mut key = [0u8; 32];
        SystemRandom::new()
            .fill(&mut key)
            .map_err(|_| SealError::Random)?;
        Ok(Self::new(key, None))
    }

    /// The cipher of `config`: `GANTRY_SECRETS_KEY` (+ `_PREVIOUS`); without it, production
    /// refuses and development loads (or creates, 0600) `<data dir>/secrets.key`.
    pub fn from_config(config: &Config) -> Result<Self, SealError> {
        match config.secrets.current {
            Some(key) => Ok(Self::new(key, config.secrets.previous)),
            None if config.environment == Environment::Production => {
                Err(SealError::MissingInProduction)
            }
            None => Ok(Self::new(
                load_or_create_key(&config.data_dir)?,
                config.secrets.previous,
            )),
        }
    }

    /// The id of the key new values are sealed with.
    pub fn current_key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plaintext` for the row named by `aad`.
    pub fn seal(&self, aad: &str, plaintext: &str) -> Result<Sealed, SealError> {
        let cipher =
            Aes256Gcm::new_from_slice(&self.current.bytes).map_err(|_| SealError::Integrity)?;
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SealError::Random)?;
        let sealed = cipher
            .encrypt(
                &aes_gcm::Nonce::from(nonce),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Integrity)?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(Sealed {
            ciphertext: BASE64.encode(out),
            key_id: self.current.id.clone(),
        })
    }

    /// Opens a stored value of the row named by `aad`. `key_id` `None` is a value stored before
    /// encryption at rest (plaintext), returned as it is until start-up or `rotate-secrets`
    /// seals it.
    pub fn open(&self, aad: &str, key_id: Option<&str>, stored: &str) -> Result<String, SealError> {
        let Some(key_id) = key_id else {
            return Ok(stored.to_owned());
        };
        let key = [Some(&self.current), self.previous.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == key_id)
            .ok_or_else(|| SealError::UnknownKey(key_id.to_owned()))?;
        let blob = BASE64.decode(stored).map_err(|_| SealError::Integrity)?;
        if blob.len() < 1 + NONCE_LEN + 16 || blob[0] != VERSION {
            return Err(SealError::Integrity);
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&blob[1..1 + NONCE_LEN]);
        let plain = Aes256Gcm::new_from_slice(&key.bytes)
            .map_err(|_| SealError::Integrity)?
            .decrypt(
                &aes_gcm::Nonce::from(nonce),
                Payload {
                    msg: &blob[1 + NONCE_LEN..],
                    aad: aad.as_bytes(),
                },
            )
            .map_err(|_| SealError::Integrity)?;
        String::from_utf8(plain).map_err(|_| SealError::Integrity)
    }

    /// Whether a value sealed by `key_id` (`None`: plaintext) needs sealing again.
    pub fn is_stale(&self, key_id: Option<&str>) -> bool {
        key_id != Some(self.current.id.as_str())
    }
}

/// Reads `<data_dir>/secrets.key`, creating it (random, 0600, directory 0700) when absent.
fn load_or_create_key(data_dir: &Path) -> Result<[u8; 32], SealError> {
    let path = data_dir.join(KEY_FILE);
    let io = |source| SealError::Io {
        path: path.clone(),
        source,
    };
    let mut dirs = std::fs::DirBuilder::new();
    dirs.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        dirs.mode(0o700);
    }
    dirs.create(data_dir).map_err(io)?;
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let mut key = [0u8; 32];
            SystemRandom::new()
                .fill(&mut key)
                .map_err(|_| SealError::Random)?;
            let encoded = BASE64.encode(key);
            let mut options = std::fs::OpenOptions::new();
            options.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt;
                options.mode(0o600);
            }
            // create_new: of two processes racing here, one writes and both read its key.
            match options.open(&path) {
                Ok(mut file) => {
                    file.write_all(encoded.as_bytes()).map_err(io)?;
                    file.sync_all().map_err(io)?;
                    encoded
                }
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                    std::fs::read_to_string(&path).map_err(io)?
                }
                Err(e) => return Err(io(e)),
            }
        }
        Err(e) => return Err(io(e)),
    };
    BASE64
        .decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .ok_or(SealError::Corrupt(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_opens_and_rotates() {
        let old = SecretsCipher::new([1; 32], None);
        let sealed = old.seal("org_secrets:a:b", "hunter2").expect("seal");
        assert!(!sealed.ciphertext.contains("hunter2"));
        assert_eq!(
            old.open("org_secrets:a:b", Some(&sealed.key_id), &sealed.ciphertext)
                .expect("open"),
            "hunter2"
        );
        // Another row's associated data does not open it.
        assert!(old
            .open("org_secrets:a:c", Some(&sealed.key_id), &sealed.ciphertext)
            .is_err());
        let rotated = SecretsCipher::new([2; 32], Some([1; 32]));
        assert!(rotated.is_stale(Some(&sealed.key_id)));
        assert_eq!(
            rotated
                .open("org_secrets:a:b", Some(&sealed.key_id), &sealed.ciphertext)
                .expect("previous key opens"),
            "hunter2"
        );
        let dropped = SecretsCipher::new([2; 32], None);
        assert!(matches!(
            dropped.open("org_secrets:a:b", Some(&sealed.key_id), &sealed.ciphertext),
            Err(SealError::UnknownKey(_))
        ));
        assert!(!format!("{rotated:?}").contains("[1, 1"));
    }

    #[test]
    fn generated_key_file_is_private_and_stable() {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        let first = load_or_create_key(&data).expect("created");
        let second = load_or_create_key(&data).expect("read back");
        assert_eq!(first, second);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(data.join(KEY_FILE))
                .expect("metadata")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
