//! The file transport's directory: where it may be, and how it and its files are created.
//!
//! Messages are private, and a directory other users can write lets them read or replace what
//! is put there (a path under a shared `/tmp` can be created first by anyone). So the
//! directory must not be writable by every user, must belong to agentd's user (or root), and
//! every existing directory above it that every user can write must have the sticky bit. It
//! is created `0700` and its files `0600`.

use std::io;
use std::path::{Path, PathBuf};

/// Why `dir` is no place for messages, or `None` when it is fine (or does not exist yet and
/// would be created under safe parents). Reads only metadata.
pub(crate) fn unsafe_reason(dir: &Path) -> Option<String> {
    #[cfg(unix)]
    {
        unix::unsafe_reason(dir)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Creates `dir` and its missing parents, readable by agentd's user only.
pub(crate) async fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder.create(dir).await
}

/// Creates (or truncates) `path`, readable by agentd's user only.
pub(crate) async fn create_private_file(path: &Path) -> io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// [`unsafe_reason`] off the async runtime, as an I/O error when the directory is unsafe.
pub(crate) async fn check_before_writing(dir: &Path) -> io::Result<()> {
    let dir: PathBuf = dir.to_path_buf();
    match tokio::task::spawn_blocking(move || unsafe_reason(&dir)).await {
        Ok(None) => Ok(()),
        Ok(Some(reason)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, reason)),
        Err(join) => Err(io::Error::other(join)),
    }
}

#[cfg(unix)]
mod unix {
    use std::os::unix::fs::MetadataExt;
    use std::path::Path;

    const WORLD_WRITABLE: u32 = 0o002;
    const STICKY: u32 = 0o1000;

    pub(super) fn unsafe_reason(dir: &Path) -> Option<String> {
        let me = rustix::process::geteuid().as_raw();
        let trusted = |uid: u32| uid == me || uid == 0;
        match std::fs::symlink_metadata(dir) {
            Ok(link) => {
                if link.file_type().is_symlink() && !trusted(link.uid()) {
                    return Some(format!(
                        "{} is a symbolic link made by another user (uid {})",
                        dir.display(),
                        link.uid()
                    ));
                }
                let meta = match std::fs::metadata(dir) {
                    Ok(meta) => meta,
                    Err(e) => return Some(format!("{}: {e}", dir.display())),
                };
                if !meta.is_dir() {
                    return Some(format!("{} is not a directory", dir.display()));
                }
                if meta.mode() & WORLD_WRITABLE != 0 {
                    return Some(format!(
                        "{} is writable by every user (mode {:o}), so others could read or \
                         replace the messages; use a directory only agentd can write, such as \
                         a relative `dir` (inside the data directory)",
                        dir.display(),
                        meta.mode() & 0o7777
                    ));
                }
                if !trusted(meta.uid()) {
                    return Some(format!(
                        "{} belongs to another user (uid {}), who could read the messages",
                        dir.display(),
                        meta.uid()
                    ));
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Some(format!("{}: {e}", dir.display())),
        }
        let absolute = std::path::absolute(dir).unwrap_or_else(|_| dir.to_path_buf());
        for parent in absolute.ancestors().skip(1) {
            let Ok(meta) = std::fs::metadata(parent) else {
                continue;
            };
            let mode = meta.mode();
            if mode & WORLD_WRITABLE != 0 && mode & STICKY == 0 {
                return Some(format!(
                    "{} is writable by every user without the sticky bit (mode {:o}), so \
                     anyone could replace {}",
                    parent.display(),
                    mode & 0o7777,
                    dir.display()
                ));
            }
        }
        None
    }
}
