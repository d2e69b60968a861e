//! One indexer per SQLite file: an indexer holds an exclusive lock on `<file>.indexer-lock` (an
//! advisory `flock`, released by the kernel however the process ends) with its process id
//! written in it, so that a second indexer started on the same file is refused in words instead
//! of interleaving its batches with the first one's. PostgreSQL needs no file lock here: there
//! the checkpoint check refuses a second writer's batch.

use std::{
    fs::{File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    path::PathBuf,
};

use sqlx::sqlite::SqliteConnectOptions;

use crate::{Error, Result};

/// The lock of an indexer on its SQLite file, held until dropped.
#[derive(Debug)]
pub struct IndexLock {
    _file: File,
}

impl IndexLock {
    /// Takes the lock of the SQLite database at `url` for this process; `None` for a database
    /// that is not a SQLite file. A lock held by another process is [`Error::AlreadyIndexed`].
    pub fn acquire(url: &str) -> Result<Option<Self>> {
        if !url.starts_with("sqlite:") {
            return Ok(None);
        }
        let options: SqliteConnectOptions = url.parse().map_err(|source| Error::Database {
            what: "reading the database URL".into(),
            source,
        })?;
        let path = options.get_filename().to_path_buf();
        if path.as_os_str().is_empty() || path.as_os_str() == ":memory:" {
            return Ok(None);
        }
        let lock_path = PathBuf::from(format!("{}.indexer-lock", path.display()));
        let cannot = |e: std::io::Error| {
            Error::Config(format!(
                "cannot lock {} for indexing: {e}",
                lock_path.display()
            ))
        };
        if let Some(dir) = lock_path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(cannot)?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(cannot)?;
        match file.try_lock() {
            Ok(()) => {
                file.set_len(0).map_err(cannot)?;
                file.rewind().map_err(cannot)?;
                write!(file, "{}", std::process::id()).map_err(cannot)?;
                Ok(Some(Self { _file: file }))
            }
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                Err(Error::AlreadyIndexed {
                    path: path.display().to_string(),
                    holder: holder
                        .trim()
                        .parse::<u32>()
                        .map_or_else(|_| "another process".into(), |pid| format!("process {pid}")),
                })
            }
            Err(TryLockError::Error(e)) => Err(cannot(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The lock is one holder's at a time (two opens of the file conflict even within one
    /// process: flock locks belong to the open file), and free again once dropped.
    #[test]
    fn a_second_indexer_is_refused_until_the_first_lets_go() {
        let path = std::env::temp_dir().join(format!(
            "keymarket-lock-{}-{}.db",
            std::process::id(),
            line!()
        ));
        let url = format!("sqlite:{}", path.display());
        let held = IndexLock::acquire(&url)
            .unwrap()
            .expect("a SQLite file is locked");
        let refused = IndexLock::acquire(&url).unwrap_err().to_string();
        assert!(
            refused.contains(&format!(
                "is already being indexed by process {}",
                std::process::id()
            )),
            "{refused}"
        );
        drop(held);
        let again = IndexLock::acquire(&url).unwrap();
        assert!(again.is_some());
        assert!(IndexLock::acquire("postgres://u@h/db").unwrap().is_none());
        drop(again);
        let _ = std::fs::remove_file(format!("{}.indexer-lock", path.display()));
    }
}
