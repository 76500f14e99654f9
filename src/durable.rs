//! Durable files: the one place that writes a whole file so that a crash
//! leaves either the old contents or the new ones, never a mix.
//!
//! The sequence is always the same: a temporary file in the same directory
//! (so the rename cannot cross file systems), write, fsync the file, rename
//! it into place (or hard-link it, when an existing file must never be
//! replaced), fsync the directory so the new name itself is durable. A file
//! that holds a secret is created with mode 0600, so it is never readable by
//! others, not even briefly.
//!
//! Invariant: on any error the target path is untouched (the old file, or
//! no file) and the temporary file is removed, with one exception that the
//! error names: a new file that took its name, complete and durable, but
//! whose temporary name could not be removed.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// Who may read the file once it is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Secrecy {
    /// Mode 0600: keys, tokens, anything a local user must not read.
    Secret,
    /// The process's umask decides (state files, snapshots' companions).
    Public,
}

/// Replaces `path` with `contents` atomically and durably.
pub fn replace(path: &Path, contents: &[u8], secrecy: Secrecy) -> io::Result<()> {
    let mut file = PendingFile::create(path, secrecy)?;
    file.write_all(contents)?;
    file.commit()
}

/// Creates `path`, which must not exist (`AlreadyExists` otherwise), with
/// `contents`, atomically and durably: the file appears complete or not at
/// all, and an existing file is never overwritten.
pub fn create_new(path: &Path, contents: &[u8], secrecy: Secrecy) -> io::Result<()> {
    let mut file = PendingFile::create(path, secrecy)?;
    file.write_all(contents)?;
    file.commit_new()
}

/// Renames `from` to `to` (a file or a directory, in the same file system)
/// and makes the rename durable by syncing `to`'s directory.
pub fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)?;
    sync_dir(&parent_of(to))
}

/// Makes the entries of directory `dir` durable (new, renamed or removed names).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// A file being written next to its final `path`; it takes that name only
/// on [`PendingFile::commit`]. Dropped without a commit, it is removed.
pub struct PendingFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl PendingFile {
    /// Opens a new temporary file in `path`'s directory.
    pub fn create(path: &Path, secrecy: Secrecy) -> io::Result<PendingFile> {
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let tmp = parent_of(path).join(format!(
            ".{}.{}.tmp",
            name.to_string_lossy(),
            std::process::id()
        ));
        // A temporary name left over from an earlier run may be a hard link
        // to a committed file (see `commit_new`): unlink it rather than open
        // and truncate it, which would change that file in place.
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if secrecy == Secrecy::Secret {
            // The mode applies at creation (minus the umask); set_permissions
            // below makes it exactly 0600 whatever the umask.
            std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        }
        let file = options.open(&tmp)?;
        let pending = PendingFile {
            file: Some(file),
            tmp,
            path: path.to_path_buf(),
        };
        #[cfg(unix)]
        if secrecy == Secrecy::Secret
            && let Some(f) = &pending.file
        {
            f.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
        }
        Ok(pending)
    }

    fn file(&mut self) -> io::Result<&mut File> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the file was already committed"))
    }

    fn sync_and_close(&mut self) -> io::Result<()> {
        self.file()?.sync_all()?;
        self.file = None;
        Ok(())
    }

    /// Syncs the file and renames it over the final path.
    pub fn commit(mut self) -> io::Result<()> {
        self.sync_and_close()?;
        fs::rename(&self.tmp, &self.path)?;
        // From here the temporary name is gone: nothing to clean up.
        self.tmp = PathBuf::new();
        sync_dir(&parent_of(&self.path))
    }

    /// Syncs the file and renames it over the final path, leaving the
    /// directory unsynced: for writers of many files, which then call
    /// [`sync_dir`] once per directory before relying on any new name.
    pub fn commit_without_dir_sync(mut self) -> io::Result<()> {
        self.sync_and_close()?;
        fs::rename(&self.tmp, &self.path)?;
        self.tmp = PathBuf::new();
        Ok(())
    }

    /// Syncs the file and gives it the final path, which must not exist.
    pub fn commit_new(self) -> io::Result<()> {
        self.commit_new_removing_with(|tmp| fs::remove_file(tmp))
    }

    /// [`PendingFile::commit_new`], removing the temporary name with
    /// `remove` (tests inject a failing one).
    fn commit_new_removing_with(
        mut self,
        remove: impl FnOnce(&Path) -> io::Result<()>,
    ) -> io::Result<()> {
        self.sync_and_close()?;
        // A hard link fails with AlreadyExists instead of replacing.
        fs::hard_link(&self.tmp, &self.path)?;
        // From here the file exists under its final name, complete: an
        // error must say so, or a caller would think nothing was created
        // (and a retry would meet AlreadyExists).
        let tmp = std::mem::take(&mut self.tmp);
        let removed = remove(&tmp);
        sync_dir(&parent_of(&self.path))?;
        removed.map_err(|e| {
            io::Error::new(
                e.kind(),
                format!(
                    "{} was created, but its temporary name {} could not be removed ({e}); remove it by hand",
                    self.path.display(),
                    tmp.display()
                ),
            )
        })
    }
}

impl Write for PendingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}

impl Drop for PendingFile {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            self.file = None;
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut n: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    }

    #[test]
    fn replace_writes_the_whole_file_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        replace(&p, b"one", Secrecy::Public).unwrap();
        replace(&p, b"two", Secrecy::Public).unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(names(dir.path()), ["state.json"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_secret_is_mode_0600_whatever_the_file_was() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        fs::write(&p, b"old").unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o644)).unwrap();
        replace(&p, b"secret", Secrecy::Secret).unwrap();
        assert_eq!(
            fs::metadata(&p).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let q = dir.path().join("token");
        create_new(&q, b"secret", Secrecy::Secret).unwrap();
        assert_eq!(
            fs::metadata(&q).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn create_new_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("key.pem");
        create_new(&p, b"first", Secrecy::Secret).unwrap();
        let e = create_new(&p, b"second", Secrecy::Secret).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"first");
        assert_eq!(names(dir.path()), ["key.pem"]);
    }

    #[test]
    fn a_temporary_that_cannot_be_removed_after_the_link_is_not_reported_as_a_failed_create() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        let mut file = PendingFile::create(&p, Secrecy::Secret).unwrap();
        file.write_all(b"secret").unwrap();
        let e = file
            .commit_new_removing_with(|_| {
                Err(io::Error::new(io::ErrorKind::PermissionDenied, "injected"))
            })
            .unwrap_err();
        // The error says what happened: the file exists, complete; only its
        // temporary name is left over.
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        let text = e.to_string();
        assert!(
            text.contains(&format!("{} was created", p.display())),
            "{text}"
        );
        assert!(text.contains("injected"), "{text}");
        assert_eq!(fs::read(&p).unwrap(), b"secret");
        let tmp = format!(".token.{}.tmp", std::process::id());
        assert_eq!(names(dir.path()), [tmp.as_str(), "token"]);
        assert!(text.contains(&tmp), "{text}");
        // The file is there, so creating it again is refused as before.
        let again = create_new(&p, b"other", Secrecy::Secret).unwrap_err();
        assert_eq!(again.kind(), io::ErrorKind::AlreadyExists);
        assert_eq!(fs::read(&p).unwrap(), b"secret");
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_intact() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state.json");
        replace(&p, b"old", Secrecy::Public).unwrap();
        // A directory in the way of the rename: the new file cannot take the name.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), b"x").unwrap();
        assert!(replace(&blocked, b"new", Secrecy::Public).is_err());
        assert!(blocked.is_dir());
        // A write abandoned half way never reaches the final name.
        let mut half = PendingFile::create(&p, Secrecy::Public).unwrap();
        half.write_all(b"ne").unwrap();
        drop(half);
        assert_eq!(fs::read(&p).unwrap(), b"old");
        assert_eq!(names(dir.path()), ["blocked", "state.json"]);
        // No directory to write in: an error, nothing created.
        let missing = dir.path().join("no-such-dir").join("state.json");
        assert!(replace(&missing, b"new", Secrecy::Public).is_err());
    }

    #[test]
    fn rename_moves_and_syncs() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.new");
        let b = dir.path().join("a");
        replace(&a, b"x", Secrecy::Secret).unwrap();
        rename(&a, &b).unwrap();
        assert_eq!(names(dir.path()), ["a"]);
    }
}
