//! The log's two signing keys: ECDSA P-256 (note type 0x02) and Ed25519 (type 0x01,
//! which tlog-tiles requires of a witnessed log). Generation, PKCS#8 PEM encoding, and
//! the key files in a directory.
//!
//! This is the one part of `note` that touches the filesystem. Invariants: a private key
//! file is created with mode 0600 in the same call that creates it (never readable by
//! others, not even briefly), an existing key file is never overwritten, and secrets are
//! never printed (`Debug` shows only public keys).

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use ed25519_dalek::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, KeypairBytes};
use p256::elliptic_curve::Generate as _;
use p256::pkcs8::LineEnding;
use p256::pkcs8::der::zeroize::Zeroizing;

use super::{EcdsaSigner, Ed25519Signer, NoteError, NoteSigner};

/// File name of the ECDSA P-256 private key (PKCS#8 PEM) in a key directory.
pub const ECDSA_KEY_FILE: &str = "log-ecdsa.pem";
/// File name of the Ed25519 private key (PKCS#8 PEM) in a key directory.
pub const ED25519_KEY_FILE: &str = "log-ed25519.pem";

/// What went wrong generating, writing or loading keys.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the operating system's random number generator failed: {0}")]
    Random(String),
    #[error("{} already exists; refusing to overwrite a key (move it away first)", .0.display())]
    AlreadyExists(PathBuf),
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
    #[error("{}: not a PKCS#8 PEM {algorithm} private key ({reason})", path.display())]
    BadKeyFile {
        path: PathBuf,
        algorithm: &'static str,
        reason: String,
    },
    #[error("encoding the {algorithm} key as PKCS#8 failed: {reason}")]
    Encode {
        algorithm: &'static str,
        reason: String,
    },
    #[error("invalid secret key: {0}")]
    InvalidSecret(&'static str),
    #[error(transparent)]
    Note(#[from] NoteError),
}

/// The log's private keys.
pub struct LogKeys {
    pub ecdsa: p256::ecdsa::SigningKey,
    pub ed25519: ed25519_dalek::SigningKey,
}

/// The log's two signers, both named after the log's origin.
pub struct LogSigners {
    pub ecdsa: EcdsaSigner,
    pub ed25519: Ed25519Signer,
}

/// The verifier keys (`name+hex8+base64`) that check the log's signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogVerifierKeys {
    pub ecdsa: String,
    pub ed25519: String,
}

impl LogKeys {
    /// Fresh keys from the operating system's random number generator.
    pub fn generate() -> Result<LogKeys, KeyError> {
        let ecdsa =
            p256::ecdsa::SigningKey::try_generate().map_err(|e| KeyError::Random(e.to_string()))?;
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        let ed25519 = ed25519_dalek::SigningKey::from_bytes(&seed);
        Ok(LogKeys { ecdsa, ed25519 })
    }

    /// Keys from given secret bytes: the P-256 scalar (big-endian, in 1..n) and the
    /// Ed25519 seed. For deterministic tests and for callers with their own randomness.
    pub fn from_secret_bytes(
        ecdsa_scalar: &[u8; 32],
        ed25519_seed: &[u8; 32],
    ) -> Result<LogKeys, KeyError> {
        let ecdsa = p256::ecdsa::SigningKey::from_slice(ecdsa_scalar)
            .map_err(|_| KeyError::InvalidSecret("P-256 scalar must be in 1..n"))?;
        Ok(LogKeys {
            ecdsa,
            ed25519: ed25519_dalek::SigningKey::from_bytes(ed25519_seed),
        })
    }

    /// Signers for checkpoints of the log `origin` (key name = origin, as
    /// c2sp.org/tlog-checkpoint recommends).
    pub fn signers(&self, origin: &str) -> Result<LogSigners, NoteError> {
        Ok(LogSigners {
            ecdsa: EcdsaSigner::new(origin, self.ecdsa.clone())?,
            ed25519: Ed25519Signer::new(origin, self.ed25519.clone())?,
        })
    }

    pub fn verifier_keys(&self, origin: &str) -> Result<LogVerifierKeys, NoteError> {
        let s = self.signers(origin)?;
        Ok(LogVerifierKeys {
            ecdsa: s.ecdsa.verifier_key(),
            ed25519: s.ed25519.verifier_key(),
        })
    }

    /// PKCS#8 PEM of the ECDSA key.
    pub fn ecdsa_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        p256::pkcs8::EncodePrivateKey::to_pkcs8_pem(&self.ecdsa, LineEnding::LF).map_err(|e| {
            KeyError::Encode {
                algorithm: "ECDSA P-256",
                reason: e.to_string(),
            }
        })
    }

    /// PKCS#8 PEM of the Ed25519 key, in the v1 form of RFC 8410 (seed only, no public
    /// key), which is what OpenSSL writes and the only form OpenSSL 3.0 reads.
    pub fn ed25519_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        KeypairBytes {
            secret_key: self.ed25519.to_bytes(),
            public_key: None,
        }
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| KeyError::Encode {
            algorithm: "Ed25519",
            reason: e.to_string(),
        })
    }

    /// Writes [`ECDSA_KEY_FILE`] and [`ED25519_KEY_FILE`] into `dir` (created with mode
    /// 0700 if missing). Refuses if either file exists; on failure, removes any file this
    /// call created. Returns the paths written.
    pub fn write_to_dir(&self, dir: &Path) -> Result<[PathBuf; 2], KeyError> {
        create_private_dir(dir)?;
        let ecdsa_path = dir.join(ECDSA_KEY_FILE);
        let ed25519_path = dir.join(ED25519_KEY_FILE);
        // Check both before writing either, so a half-populated directory is not made
        // worse; create_new below still closes the race.
        for path in [&ecdsa_path, &ed25519_path] {
            if path.symlink_metadata().is_ok() {
                return Err(KeyError::AlreadyExists(path.clone()));
            }
        }
        let (ecdsa_pem, ed25519_pem) = (self.ecdsa_pem()?, self.ed25519_pem()?);
        write_private_file(&ecdsa_path, ecdsa_pem.as_bytes())?;
        if let Err(e) = write_private_file(&ed25519_path, ed25519_pem.as_bytes()) {
            let _ = fs::remove_file(&ecdsa_path);
            return Err(e);
        }
        Ok([ecdsa_path, ed25519_path])
    }

    /// Loads both keys from `dir`. Never creates anything.
    pub fn load_from_dir(dir: &Path) -> Result<LogKeys, KeyError> {
        let ecdsa_path = dir.join(ECDSA_KEY_FILE);
        let ed25519_path = dir.join(ED25519_KEY_FILE);
        let ecdsa_pem = read_pem(&ecdsa_path)?;
        let ecdsa =
            <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&ecdsa_pem)
                .map_err(|e| KeyError::BadKeyFile {
                    path: ecdsa_path,
                    algorithm: "ECDSA P-256",
                    reason: e.to_string(),
                })?;
        let ed25519_pem = read_pem(&ed25519_path)?;
        let ed25519 = ed25519_dalek::SigningKey::from_pkcs8_pem(&ed25519_pem).map_err(|e| {
            KeyError::BadKeyFile {
                path: ed25519_path,
                algorithm: "Ed25519",
                reason: e.to_string(),
            }
        })?;
        Ok(LogKeys { ecdsa, ed25519 })
    }
}

impl fmt::Debug for LogKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKeys")
            .field("ecdsa_public", &self.ecdsa.verifying_key())
            .field("ed25519_public", &self.ed25519.verifying_key())
            .finish_non_exhaustive()
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.to_owned(),
        source,
    }
}

fn create_private_dir(dir: &Path) -> Result<(), KeyError> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err(dir))
}

/// Creates `path` (which must not exist) with mode 0600 and writes `contents`, durably.
fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), KeyError> {
    crate::durable::create_new(path, contents, crate::durable::Secrecy::Secret).map_err(|e| {
        if e.kind() == io::ErrorKind::AlreadyExists {
            KeyError::AlreadyExists(path.to_owned())
        } else {
            KeyError::Io {
                path: path.to_owned(),
                source: e,
            }
        }
    })
}

fn read_pem(path: &Path) -> Result<Zeroizing<String>, KeyError> {
    fs::read_to_string(path)
        .map(Zeroizing::new)
        .map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_no_secret() {
        let keys = LogKeys::from_secret_bytes(&[7u8; 32], &[9u8; 32]).unwrap();
        let debug = format!("{keys:?}");
        assert!(!debug.contains("0707070707"), "{debug}");
        assert!(!debug.contains("[7, 7, 7"), "{debug}");
    }

    #[test]
    fn pem_files_are_pkcs8() {
        let keys = LogKeys::from_secret_bytes(&[7u8; 32], &[9u8; 32]).unwrap();
        let ecdsa = keys.ecdsa_pem().unwrap();
        let ed = keys.ed25519_pem().unwrap();
        assert!(ecdsa.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        assert!(ed.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        // RFC 8410 v1: 48 bytes of DER, version 0, no public key.
        let der = KeypairBytes::from_pkcs8_pem(&ed).unwrap();
        assert!(der.public_key.is_none());
        assert_eq!(ed.lines().nth(1).unwrap().len(), 64);
        // Each decodes back to its key.
        let back =
            <p256::ecdsa::SigningKey as p256::pkcs8::DecodePrivateKey>::from_pkcs8_pem(&ecdsa)
                .unwrap();
        assert_eq!(back.to_bytes(), keys.ecdsa.to_bytes());
        let back = ed25519_dalek::SigningKey::from_pkcs8_pem(&ed).unwrap();
        assert_eq!(back.to_bytes(), keys.ed25519.to_bytes());
    }

    #[test]
    fn out_of_range_scalar_is_refused() {
        for scalar in [[0u8; 32], [0xff; 32]] {
            assert!(matches!(
                LogKeys::from_secret_bytes(&scalar, &[0u8; 32]),
                Err(KeyError::InvalidSecret(_))
            ));
        }
    }

    #[test]
    fn generated_keys_differ() {
        let a = LogKeys::generate().unwrap();
        let b = LogKeys::generate().unwrap();
        assert_ne!(a.ecdsa.to_bytes(), b.ecdsa.to_bytes());
        assert_ne!(a.ed25519.to_bytes(), b.ed25519.to_bytes());
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generate_write_load_round_trip() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let keys = LogKeys::generate().unwrap();
        let written = keys.write_to_dir(&dir).unwrap();
        assert_eq!(
            written,
            [dir.join(ECDSA_KEY_FILE), dir.join(ED25519_KEY_FILE)]
        );
        #[cfg(unix)]
        {
            assert_eq!(mode(&written[0]), 0o600);
            assert_eq!(mode(&written[1]), 0o600);
            assert_eq!(mode(&dir), 0o700);
        }
        let loaded = LogKeys::load_from_dir(&dir).unwrap();
        let origin = "example.com/log";
        assert_eq!(
            loaded.verifier_keys(origin).unwrap(),
            keys.verifier_keys(origin).unwrap()
        );
        // And the loaded keys sign notes the original verifiers accept.
        let signers = loaded.signers(origin).unwrap();
        let mut note = crate::note::Note::new(
            "example.com/log\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n",
        )
        .unwrap();
        note.sign(&signers.ecdsa).unwrap();
        note.sign(&signers.ed25519).unwrap();
        let orig = keys.signers(origin).unwrap();
        let (e, d) = (orig.ecdsa.verifier(), orig.ed25519.verifier());
        assert_eq!(note.verify(&[&e, &d]).unwrap().len(), 2);
    }

    #[test]
    fn existing_key_files_are_never_overwritten() {
        let tmp = tempfile::tempdir().unwrap();
        let keys = LogKeys::generate().unwrap();
        keys.write_to_dir(tmp.path()).unwrap();
        let before = fs::read(tmp.path().join(ED25519_KEY_FILE)).unwrap();
        let other = LogKeys::generate().unwrap();
        assert!(matches!(
            other.write_to_dir(tmp.path()),
            Err(KeyError::AlreadyExists(p)) if p == tmp.path().join(ECDSA_KEY_FILE)
        ));
        assert_eq!(fs::read(tmp.path().join(ED25519_KEY_FILE)).unwrap(), before);

        // Only the second file present: still refused, and the first is not created.
        let tmp = tempfile::tempdir().unwrap();
        fs::write(tmp.path().join(ED25519_KEY_FILE), b"mine").unwrap();
        assert!(matches!(
            keys.write_to_dir(tmp.path()),
            Err(KeyError::AlreadyExists(p)) if p == tmp.path().join(ED25519_KEY_FILE)
        ));
        assert!(!tmp.path().join(ECDSA_KEY_FILE).exists());
        assert_eq!(
            fs::read(tmp.path().join(ED25519_KEY_FILE)).unwrap(),
            b"mine"
        );
    }

    #[test]
    fn loading_fails_loudly() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            LogKeys::load_from_dir(tmp.path()),
            Err(KeyError::Io { .. })
        ));
        // Loading never creates anything.
        assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 0);
        let keys = LogKeys::generate().unwrap();
        keys.write_to_dir(tmp.path()).unwrap();
        // Swapped files: each holds the other algorithm's key.
        let e = fs::read(tmp.path().join(ECDSA_KEY_FILE)).unwrap();
        let d = fs::read(tmp.path().join(ED25519_KEY_FILE)).unwrap();
        fs::write(tmp.path().join(ECDSA_KEY_FILE), d).unwrap();
        fs::write(tmp.path().join(ED25519_KEY_FILE), e).unwrap();
        assert!(matches!(
            LogKeys::load_from_dir(tmp.path()),
            Err(KeyError::BadKeyFile {
                algorithm: "ECDSA P-256",
                ..
            })
        ));
    }

    #[test]
    fn signers_need_a_valid_origin() {
        let keys = LogKeys::from_secret_bytes(&[7u8; 32], &[9u8; 32]).unwrap();
        assert!(keys.signers("example.com/log").is_ok());
        assert!(matches!(
            keys.signers("has space"),
            Err(NoteError::InvalidKeyName(_))
        ));
    }
}
