//! The master key: where it comes from (the environment, a file beside
//! the data directory, or a new one for a new log), and the check that it
//! is this log's. The master key never enters the data directory; the log
//! stores only its key-check value.

use std::fs;
use std::path::{Path, PathBuf};

use super::VaultError;
use crate::crypto::MasterKey;
use crate::store::{RecordSpace, Store};

/// Meta record holding the master key's check value.
const KEY_CHECK_RECORD: &[u8] = b"master_key_check";
/// Environment variable holding the master key itself (hex or base64).
pub const MASTER_KEY_ENV: &str = "VERITRAIL_MASTER_KEY";

/// Where the master key came from, for the startup message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MasterKeyOrigin {
    /// The environment variable.
    Env,
    /// An existing key file.
    File(PathBuf),
    /// A key file created now.
    Created(PathBuf),
}

/// The default master key file of a data directory: `<data>.master.key`,
/// beside the directory, never inside it.
pub fn default_master_key_path(data: &Path) -> PathBuf {
    let name = data
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "veritrail-data".into());
    let parent = data
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    parent.join(format!("{name}.master.key"))
}

fn read_key_file(path: &Path) -> Result<MasterKey, VaultError> {
    let text = fs::read_to_string(path).map_err(|e| {
        VaultError::MasterKey(format!(
            "couldn't read the master key {}: {e}",
            path.display()
        ))
    })?;
    MasterKey::parse(&text)
        .map_err(|e| VaultError::MasterKey(format!("master key file {}: {e}", path.display())))
}

fn write_key_file(path: &Path, key: &MasterKey) -> Result<(), VaultError> {
    let fail = |what: &str, e: std::io::Error| {
        VaultError::MasterKey(format!(
            "couldn't {what} the master key file {}: {e}",
            path.display()
        ))
    };
    // Never replaces an existing key: losing the master key loses every
    // sealed event.
    crate::durable::create_new(
        path,
        format!("{}\n", key.to_hex()).as_bytes(),
        crate::durable::Secrecy::Secret,
    )
    .map_err(|e| fail("create", e))
}

/// Checks, without writing, that `key` is the master key of the log in
/// `store` (its key-check value); a log that stored none accepts any key.
pub fn check_master_key(store: &dyn Store, key: &MasterKey) -> Result<(), VaultError> {
    match store.record(RecordSpace::Meta, KEY_CHECK_RECORD)? {
        Some(check) if check.as_slice() != key.check_value().as_slice() => {
            Err(VaultError::MasterKey(
                "the master key given is not this log's (its key-check value differs)".into(),
            ))
        }
        _ => Ok(()),
    }
}

/// Reads a master key: from the file `file` when one is given (a flag
/// or `VERITRAIL_MASTER_KEY_FILE`), else `env_value` (the
/// `VERITRAIL_MASTER_KEY` text), else the default file beside `data`.
/// Never creates one.
pub fn read_master_key(
    data: &Path,
    env_value: Option<&str>,
    file: Option<&Path>,
) -> Result<MasterKey, VaultError> {
    if let Some(path) = file {
        return read_key_file(path);
    }
    if let Some(text) = env_value {
        return MasterKey::parse(text)
            .map_err(|e| VaultError::MasterKey(format!("{MASTER_KEY_ENV}: {e}")));
    }
    read_key_file(&default_master_key_path(data))
}

/// Finds this log's master key as [`read_master_key`] does: `file`, else
/// `env_value`, else the default file beside `data`. A log that has
/// never stored a key-check value gets one now, and, when no key was given
/// and the default file does not exist, a new key in the default file. A log
/// with a key-check value refuses any other key and never creates one.
pub fn open_master_key(
    data: &Path,
    store: &dyn Store,
    env_value: Option<&str>,
    file: Option<&Path>,
) -> Result<(MasterKey, MasterKeyOrigin), VaultError> {
    let stored_check = store.record(RecordSpace::Meta, KEY_CHECK_RECORD)?;
    let default_path = default_master_key_path(data);
    let path = file.map(Path::to_path_buf).unwrap_or(default_path);
    let (key, origin) = if file.is_some() || (env_value.is_none() && path.exists()) {
        (read_key_file(&path)?, MasterKeyOrigin::File(path))
    } else if let Some(text) = env_value {
        (
            read_master_key(data, Some(text), None)?,
            MasterKeyOrigin::Env,
        )
    } else if stored_check.is_none() {
        let key = MasterKey::generate().map_err(|e| VaultError::Local(e.to_string()))?;
        write_key_file(&path, &key)?;
        (key, MasterKeyOrigin::Created(path))
    } else {
        return Err(VaultError::MasterKey(format!(
            "refusing to start: this log's events are encrypted, and its master key was not found at {}; \
             give it with --master-key-file FILE or {MASTER_KEY_ENV} (a new key would not open them)",
            path.display()
        )));
    };
    match stored_check {
        Some(check) if check.as_slice() != key.check_value().as_slice() => {
            return Err(VaultError::MasterKey(
                "refusing to start: the master key given is not this log's (its key-check value differs); \
                 give the key the log was created with"
                    .into(),
            ));
        }
        Some(_) => {}
        None => store.put_record(RecordSpace::Meta, KEY_CHECK_RECORD, &key.check_value())?,
    }
    Ok((key, origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_given_wins_over_the_environment_which_wins_over_the_default() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (given, env, default) = (
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
            MasterKey::generate().unwrap(),
        );
        let file = dir.path().join("given.key");
        write_key_file(&file, &given).unwrap();
        write_key_file(&default_master_key_path(&data), &default).unwrap();
        // The environment holds a key's text, as a key file does.
        let env_file = dir.path().join("env.key");
        write_key_file(&env_file, &env).unwrap();
        let env_text = std::fs::read_to_string(&env_file).unwrap();
        let env_text = env_text.trim();
        let read = |env: Option<&str>, file: Option<&Path>| {
            read_master_key(&data, env, file).unwrap().check_value()
        };
        assert_eq!(read(Some(env_text), Some(&file)), given.check_value());
        assert_eq!(read(Some(env_text), None), env.check_value());
        assert_eq!(read(None, None), default.check_value());
        assert!(read_master_key(&data, Some("not a key"), None).is_err());
    }
}
