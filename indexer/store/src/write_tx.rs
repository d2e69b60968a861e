//! The write path's connection. On SQLite the indexer writes through a native sqlx SQLite
//! connection: through the `Any` driver every text parameter costs four heap allocations (a copy
//! into `Any`'s value, an `Arc`, a `to_string` back out and another `Arc`) and the trades' four
//! hex columns made that a tenth of the indexer's instructions. On PostgreSQL it writes through
//! the `Any` pool, as readers do.
//!
//! Statements are built as [`Stmt`]s, whose parameters go straight into the arguments of the
//! connection that runs them, and read back as [`WriteRow`]s; the SQL is the same on both.

use sqlx::{
    Any, AnyPool, Arguments, AssertSqlSafe, Row, Sqlite, SqlitePool, Transaction,
    any::{AnyArguments, AnyRow},
    error::BoxDynError,
    sqlite::{SqliteArguments, SqliteRow},
};

use alloy::primitives::{Address, B256};

use crate::{Backend, amount::Wei};

/// Where commits and rollbacks are written.
#[derive(Debug, Clone)]
pub(super) enum Writer {
    /// PostgreSQL: the store's `Any` pool.
    Any(AnyPool),
    /// SQLite: one native connection, beside the `Any` pool's (WAL mode: readers never block it).
    Sqlite(SqlitePool),
}

impl Writer {
    /// Starts a transaction.
    pub(super) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        Ok(match self {
            Self::Any(pool) => WriteTx::Any(pool.begin().await?),
            Self::Sqlite(pool) => WriteTx::Sqlite(pool.begin().await?),
        })
    }
}

/// A transaction on the [`Writer`].
pub(super) enum WriteTx {
    Any(Transaction<'static, Any>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl WriteTx {
    /// Runs a statement; returns the number of rows it changed.
    pub(super) async fn execute(&mut self, stmt: Stmt<'_>) -> Result<u64, sqlx::Error> {
        let (sql, args, persistent) = stmt.into_parts()?;
        match (self, args) {
            (Self::Any(tx), Args::Any(args)) => sqlx::query_with(AssertSqlSafe(sql), args)
                .persistent(persistent)
                .execute(&mut **tx)
                .await
                .map(|r| r.rows_affected()),
            (Self::Sqlite(tx), Args::Sqlite(args)) => sqlx::query_with(AssertSqlSafe(sql), args)
                .persistent(persistent)
                .execute(&mut **tx)
                .await
                .map(|r| r.rows_affected()),
            _ => unreachable!("a statement built for the other connection"),
        }
    }

    /// Runs a statement and returns its rows.
    pub(super) async fn fetch_all(&mut self, stmt: Stmt<'_>) -> Result<Vec<WriteRow>, sqlx::Error> {
        let (sql, args, persistent) = stmt.into_parts()?;
        Ok(match (self, args) {
            (Self::Any(tx), Args::Any(args)) => sqlx::query_with(AssertSqlSafe(sql), args)
                .persistent(persistent)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(WriteRow::Any)
                .collect(),
            (Self::Sqlite(tx), Args::Sqlite(args)) => sqlx::query_with(AssertSqlSafe(sql), args)
                .persistent(persistent)
                .fetch_all(&mut **tx)
                .await?
                .into_iter()
                .map(WriteRow::Sqlite)
                .collect(),
            _ => unreachable!("a statement built for the other connection"),
        })
    }

    /// Commits.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Any(tx) => tx.commit().await,
            Self::Sqlite(tx) => tx.commit().await,
        }
    }
}

/// A statement of the write path and its parameters, in order.
pub(super) struct Stmt<'s> {
    sql: &'s str,
    args: Args,
    persistent: bool,
    /// The first parameter that failed to encode (reported when the statement runs).
    error: Option<BoxDynError>,
}

enum Args {
    Any(AnyArguments),
    Sqlite(SqliteArguments),
}

impl<'s> Stmt<'s> {
    /// A statement for `backend`'s writer with room for `params` parameters. Prepared once and
    /// cached on the connection (see [`Stmt::persistent`]).
    pub(super) fn new(backend: Backend, sql: &'s str, params: usize) -> Self {
        let args = match backend {
            Backend::Sqlite => {
                let mut a = SqliteArguments::default();
                a.reserve(params, 0);
                Args::Sqlite(a)
            }
            Backend::Postgres => {
                let mut a = AnyArguments::default();
                a.reserve(params, 0);
                Args::Any(a)
            }
        };
        Self {
            sql,
            args,
            persistent: true,
            error: None,
        }
    }

    /// Whether the connection prepares the text once and caches it (the default) or prepares it
    /// for this run only.
    pub(super) fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Binds the next parameter, an integer.
    pub(super) fn int(&mut self, v: i64) -> &mut Self {
        let added = match &mut self.args {
            Args::Any(a) => a.add(v),
            Args::Sqlite(a) => a.add(v),
        };
        self.note(added)
    }

    /// Binds the next two parameters: an amount's gwei and remainder columns.
    pub(super) fn wei(&mut self, w: Wei) -> &mut Self {
        self.int(w.gwei).int(w.rem)
    }

    /// Binds the next parameter, a text.
    /// An address, written as lowercase 0x hex (encoded on the stack: the text is copied into
    /// the arguments as any text is).
    pub(super) fn address(&mut self, a: &Address) -> &mut Self {
        self.hex(a.as_slice())
    }

    /// A 32-byte hash, written as lowercase 0x hex.
    pub(super) fn hash(&mut self, h: &B256) -> &mut Self {
        self.hex(h.as_slice())
    }

    fn hex(&mut self, bytes: &[u8]) -> &mut Self {
        let mut buf = [0u8; 2 + 2 * 32];
        let n = 2 + 2 * bytes.len();
        buf[..2].copy_from_slice(b"0x");
        alloy::hex::encode_to_slice(bytes, &mut buf[2..n]).expect("32 bytes at most");
        self.text(std::str::from_utf8(&buf[..n]).expect("hex is ASCII"))
    }

    pub(super) fn text(&mut self, v: &str) -> &mut Self {
        let added = match &mut self.args {
            Args::Any(a) => a.add(v),
            Args::Sqlite(a) => a.add(v),
        };
        self.note(added)
    }

    /// The text, the arguments and the caching choice; the first encoding error, if any.
    fn into_parts(self) -> Result<(&'s str, Args, bool), sqlx::Error> {
        match self.error {
            Some(e) => Err(sqlx::Error::Encode(e)),
            None => Ok((self.sql, self.args, self.persistent)),
        }
    }

    fn note(&mut self, added: Result<(), BoxDynError>) -> &mut Self {
        if let Err(e) = added {
            self.error.get_or_insert(e);
        }
        self
    }
}

/// A row read on the [`Writer`].
pub(super) enum WriteRow {
    Any(AnyRow),
    Sqlite(SqliteRow),
}

impl WriteRow {
    /// Column `i`, a BIGINT.
    pub(super) fn int(&self, i: usize) -> i64 {
        match self {
            Self::Any(r) => r.get(i),
            Self::Sqlite(r) => r.get(i),
        }
    }

    /// Columns `i` and `i + 1`, an amount's gwei and remainder.
    pub(super) fn wei(&self, i: usize) -> Wei {
        Wei {
            gwei: self.int(i),
            rem: self.int(i + 1),
        }
    }

    /// Column `i`, a text.
    pub(super) fn text(&self, i: usize) -> &str {
        match self {
            Self::Any(r) => r.get(i),
            Self::Sqlite(r) => r.get(i),
        }
    }

    /// Column `i`, an address or hash the store wrote as 0x hex.
    pub(super) fn parsed<T: std::str::FromStr>(&self, i: usize) -> crate::Result<T> {
        let text = self.text(i);
        text.parse().map_err(|_| {
            crate::Error::Corrupt(format!("{text:?} is not the 0x hex the store writes"))
        })
    }
}
