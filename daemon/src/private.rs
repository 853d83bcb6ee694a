//! Files only the daemon's user may read: every file the daemon writes under its data,
//! state and runtime folders (history database, audit log, logs, exports, secrets,
//! cookies) is 0600 in a 0700 folder, whatever the umask.
//!
//! The process umask is set to 077 at start ([`restrict_umask`]), so files created by
//! libraries (SQLite's -wal/-shm) are private too; the helpers here create private files
//! explicitly and tighten ones a previous version or another program left wider.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode of private folders.
pub const DIR_MODE: u32 = 0o700;
/// Mode of private files.
pub const FILE_MODE: u32 = 0o600;

/// Sets the process umask to 077, so nothing the daemon creates is group- or
/// world-readable. Returns the previous umask.
pub fn restrict_umask() -> u32 {
    // SAFETY: umask has no preconditions and cannot fail.
    unsafe { libc::umask(0o077) as u32 }
}

/// Makes the process non-dumpable, as ssh-agent and gpg-agent do: other processes of the
/// same user (tool servers among them) can then neither read its `/proc/<pid>/environ`,
/// `mem` or `fd` entries nor attach a debugger. Children are dumpable again after
/// `exec`, so this does not change what tool servers can do to themselves.
pub fn make_non_dumpable() -> std::io::Result<()> {
    // SAFETY: PR_SET_DUMPABLE with 0 takes no pointers.
    let rc = unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the process is currently dumpable (for tests and `status`).
pub fn is_dumpable() -> bool {
    // SAFETY: PR_GET_DUMPABLE takes no pointers.
    unsafe { libc::prctl(libc::PR_GET_DUMPABLE, 0, 0, 0, 0) == 1 }
}

/// Creates `dir` (and missing parents) as 0700; an existing folder is tightened to 0700.
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)?;
    }
    tighten(dir, DIR_MODE)
}

/// Narrows `path`'s mode to `mode` when it grants more, with one log line. A missing path
/// is fine (nothing to protect yet).
pub fn tighten(path: &Path, mode: u32) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let current = meta.permissions().mode() & 0o7777;
    if current & !mode != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(current & mode))?;
        tracing::info!(
            path = %path.display(),
            was = %format_args!("{current:04o}"),
            now = %format_args!("{:04o}", current & mode),
            "tightened permissions of a private file or folder"
        );
    }
    Ok(())
}

/// Tightens a file and the SQLite files beside it (`-wal`, `-shm`, `-journal`).
pub fn tighten_database(db: &Path) -> std::io::Result<()> {
    tighten(db, FILE_MODE)?;
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        tighten(&PathBuf::from(name), FILE_MODE)?;
    }
    Ok(())
}

/// Opens `path` for appending, creating it 0600 (an existing file is tightened).
pub fn open_append(path: &Path) -> std::io::Result<std::fs::File> {
    if let Some(dir) = path.parent() {
        ensure_dir(dir)?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)?;
    tighten(path, FILE_MODE)?;
    Ok(file)
}

/// Writes `bytes` to `path` as a 0600 file, atomically: a private temporary file in the
/// same folder, synced, then renamed over `path`. Readers never see a partial file or a
/// moment where the content is readable by others.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// `n` random bytes from the OS, as lowercase hex.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut buf = vec![0u8; n];
    getrandom::fill(&mut buf).map_err(std::io::Error::other)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_whatever_the_starting_mode() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        ensure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let f = dir.join("log");
        drop(open_append(&f).unwrap());
        assert_eq!(mode(&f), 0o600);
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        drop(open_append(&f).unwrap());
        assert_eq!(mode(&f), 0o600);

        let db = dir.join("h.sqlite3");
        for p in [db.clone(), dir.join("h.sqlite3-wal")] {
            std::fs::write(&p, b"x").unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o664)).unwrap();
        }
        tighten_database(&db).unwrap();
        assert_eq!(mode(&db), 0o600);
        assert_eq!(mode(&dir.join("h.sqlite3-wal")), 0o600);
        // Never widens.
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o400)).unwrap();
        tighten(&db, FILE_MODE).unwrap();
        assert_eq!(mode(&db), 0o400);
    }

    #[test]
    fn atomic_writes_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("cookie");
        write_atomic(&p, b"one").unwrap();
        assert_eq!(mode(&p), 0o600);
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn random_hex_is_random() {
        let a = random_hex(32).unwrap();
        assert_eq!(a.len(), 64);
        assert!(vtuber_shared::cookie::is_well_formed(&a));
        assert_ne!(a, random_hex(32).unwrap());
    }
}
