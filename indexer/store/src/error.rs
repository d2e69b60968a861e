//! The store's errors.

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration (an unsupported database URL).
    #[error("{0}")]
    Config(String),
    /// The database is for another chain than the one being indexed.
    #[error("wrong chain: {0}")]
    WrongChain(String),
    /// The database schema is not one this binary can use.
    #[error("the database was written by an incompatible schema: {0}")]
    IncompatibleSchema(String),
    /// A reader (`serve`, `export`) found a database without this binary's schema: readers
    /// never migrate.
    #[error(
        "{0}: run `keymarket index` against it first (readers such as `serve` never write, so they never migrate it; that lets them run against a read-only PostgreSQL hot standby)"
    )]
    Unmigrated(String),
    /// A database operation failed.
    #[error("database error while {what}: {source}")]
    Database {
        /// What was being done.
        what: String,
        /// The error.
        source: sqlx::Error,
    },
    /// The stored data contradicts itself or a batch.
    #[error("refusing to continue: {0}")]
    Corrupt(String),
    /// A batch holds trades that are already stored (a provider answering with a log at the
    /// wrong block, now or earlier): nothing of the batch was stored. Which copy is the wrong
    /// one cannot be told here; `first` is the first block holding either.
    #[error(
        "{count} trades of blocks {from}..={to} are already stored (the first copy at block {first}): the batch was not stored"
    )]
    AlreadyStored {
        /// How many.
        count: u64,
        /// The batch's first block.
        from: u64,
        /// The batch's last block.
        to: u64,
        /// The first block holding a copy of one of them (stored or in the batch).
        first: u64,
    },
    /// Building the trades' unique index after a long backfill found a trade stored twice (see
    /// [`crate::StoreWriter::first_duplicate_block`]).
    #[error("a trade is stored twice ({0})")]
    StoredTwice(String),
    /// Another process is indexing into the same SQLite file (see [`crate::IndexLock`]).
    #[error(
        "{path} is already being indexed by {holder}; stop that indexer first, or index into another file"
    )]
    AlreadyIndexed {
        /// The database file.
        path: String,
        /// "process N", as the holder wrote it in the lock file, or "another process".
        holder: String,
    },
    /// The market changed hands: another indexer process holds its lease now (this one was
    /// cut off or too slow to renew it). The transaction was rolled back.
    #[error(
        "market {market_id} is no longer this process's (its lease of epoch {epoch} was taken over by another indexer); nothing more was written"
    )]
    NotOwner {
        /// The market's id.
        market_id: i64,
        /// The epoch of the lease this process held.
        epoch: i64,
    },
    /// The chain below a batch is no longer the one stored (a reorg while indexing): the batch
    /// was not stored.
    #[error("the chain changed at block {block} while indexing")]
    Reorged {
        /// The block whose stored hash the chain no longer has.
        block: u64,
    },
}

/// Result type of the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Whether the error is a database outage that waiting out may heal: a connection lost,
    /// reset or refused (a PostgreSQL restart or failover), the server shutting down or starting
    /// up, the pool finding no connection in time, a SQLite file locked or busy for longer than
    /// its busy timeout. The transaction open at the time was rolled back by the database.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => db_error_is_transient(source),
            _ => false,
        }
    }
}

/// The [`Error::Database`] of a failed `what`, for `map_err`.
pub(crate) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> Error {
    move |source| Error::Database {
        what: what.to_string(),
        source,
    }
}

pub(crate) fn db_error_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL SQLSTATEs: connection exceptions (08xxx), admin/crash shutdown and
            // "the database system is starting up" (57P01-57P03), a session ended for idling
            // (in a transaction, 25P03: a network that went silent mid-transaction; or outside
            // one, 57P05), a lock not granted in time (55P03), too many connections,
            // serialization failures and deadlocks (the transaction is simply retried).
            code.starts_with("08")
                || [
                    "57P01", "57P02", "57P03", "57P05", "25P03", "55P03", "53300", "40001",
                    "40P01",
                ]
                .contains(&&*code)
                // SQLite's primary result codes SQLITE_BUSY (5) and SQLITE_LOCKED (6), also
                // as the low byte of an extended code.
                || code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}
