//! The write path's connections: native sqlx connections, not the `Any` driver the readers use.
//! Through `Any` every text parameter costs four heap allocations (a copy into `Any`'s value, an
//! `Arc`, a `to_string` back out and another `Arc`): on SQLite the trades' four hex columns made
//! that a tenth of the indexer's instructions. On PostgreSQL the native connection also streams
//! a long backfill's raw trades with `COPY` ([`WriteTx::copy_in`]).
//!
//! Statements are built as [`Stmt`]s, whose parameters go straight into the arguments of the
//! connection that runs them, and read back as [`WriteRow`]s; the SQL is the same on both.

use sqlx::{
    Arguments, AssertSqlSafe, PgPool, Postgres, Row, Sqlite, SqlitePool, Transaction,
    error::BoxDynError,
    postgres::{PgArguments, PgRow},
    sqlite::{SqliteArguments, SqliteRow},
};

use alloy::primitives::{Address, B256};

use crate::{Backend, amount::Wei};

/// Where commits and rollbacks are written.
#[derive(Debug, Clone)]
pub(super) enum Writer {
    /// PostgreSQL: native connections, beside the readers' `Any` pool (opened at the first write).
    Postgres(PgPool),
    /// SQLite: one native connection, beside the `Any` pool's (WAL mode: readers never block it).
    Sqlite(SqlitePool),
}

impl Writer {
    /// Starts a transaction.
    pub(super) async fn begin(&self) -> Result<WriteTx, sqlx::Error> {
        Ok(match self {
            Self::Postgres(pool) => WriteTx::Postgres(pool.begin().await?),
            Self::Sqlite(pool) => WriteTx::Sqlite(pool.begin().await?),
        })
    }
}

/// A transaction on the [`Writer`].
pub(super) enum WriteTx {
    Postgres(Transaction<'static, Postgres>),
    Sqlite(Transaction<'static, Sqlite>),
}

impl WriteTx {
    /// Runs a statement; returns the number of rows it changed.
    pub(super) async fn execute(&mut self, stmt: Stmt<'_>) -> Result<u64, sqlx::Error> {
        let (sql, args, persistent) = stmt.into_parts()?;
        match (self, args) {
            (Self::Postgres(tx), Args::Postgres(args)) => {
                sqlx::query_with(AssertSqlSafe(sql), args)
                    .persistent(persistent)
                    .execute(&mut **tx)
                    .await
                    .map(|r| r.rows_affected())
            }
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
            (Self::Postgres(tx), Args::Postgres(args)) => {
                sqlx::query_with(AssertSqlSafe(sql), args)
                    .persistent(persistent)
                    .fetch_all(&mut **tx)
                    .await?
                    .into_iter()
                    .map(WriteRow::Postgres)
                    .collect()
            }
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

    /// PostgreSQL: runs `copy` (a `COPY … FROM STDIN` in the text format) and streams it
    /// `pieces` of rows, each sent as it is made; returns the rows the server stored.
    pub(super) async fn copy_in(
        &mut self,
        copy: &str,
        pieces: impl Iterator<Item = Vec<u8>>,
    ) -> Result<u64, sqlx::Error> {
        let Self::Postgres(tx) = self else {
            return Err(sqlx::Error::Protocol(
                "COPY is PostgreSQL's: this is a SQLite connection".into(),
            ));
        };
        let mut copy = tx.copy_in_raw(copy).await?;
        for piece in pieces {
            if let Err(e) = copy.send(piece).await {
                // The server is told to drop the rows; the transaction is rolled back by the
                // caller either way.
                let _ = copy.abort(e.to_string()).await;
                return Err(e);
            }
        }
        copy.finish().await
    }

    /// Commits.
    pub(super) async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(tx) => tx.commit().await,
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
    Postgres(PgArguments),
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
                let mut a = PgArguments::default();
                a.reserve(params, 0);
                Args::Postgres(a)
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
            Args::Postgres(a) => a.add(v),
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
            Args::Postgres(a) => a.add(v),
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
    Postgres(PgRow),
    Sqlite(SqliteRow),
}

impl WriteRow {
    /// Column `i`, a BIGINT.
    pub(super) fn int(&self, i: usize) -> i64 {
        match self {
            Self::Postgres(r) => r.get(i),
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
            Self::Postgres(r) => r.get(i),
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
