//! SQL over HTTP's engine: one analyst's read-only query over the indexed tables, under a time
//! limit and a row cap.
//!
//! The database does the refusing. On SQLite the queries run on their own small pool of
//! connections opened read-only (`SQLITE_OPEN_READONLY`) with `PRAGMA query_only`, and the time
//! limit is a progress handler inside SQLite that interrupts the statement; on PostgreSQL they run
//! in a `READ ONLY` transaction that is always rolled back, with `statement_timeout`, as a role
//! that may only `SELECT` the indexed tables ([`READER_ROLE`]). Before that, a cheap look at the
//! text: exactly one statement, and on SQLite one that starts like a query (`SELECT`, `WITH`,
//! `VALUES`, `EXPLAIN` of one): `ATTACH` and `PRAGMA` change a connection without writing the
//! file, so the read-only connection would let them through, and SQLite applies a flag `PRAGMA`
//! while compiling it — such statements never reach SQLite. Anything else the text check misses (`WITH …
//! DELETE`) is refused by the database and reported as [`SqlError::Forbidden`].

use std::{sync::Arc, time::Duration};

use futures::TryStreamExt;
use serde::{Serialize, Serializer};
use sqlx::{
    postgres::PgConnectOptions,
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions},
};
use tokio::sync::OnceCell;

mod budget;
mod pg_text;
mod postgres;
mod sqlite;
#[cfg(test)]
mod tests;
mod text;

use postgres::{PgReader, pg_setup, run_postgres};
use sqlite::run_sqlite;
use text::scan;

/// The PostgreSQL role the queries run as: it may log in (where the server's `pg_hba.conf`
/// allows it without a password, or once an administrator gives it one) and `SELECT` the
/// indexed tables, nothing else.
pub const READER_ROLE: &str = "keymarket_reader";

/// The limits of one query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SqlLimits {
    /// How long a query may run before the database stops it.
    pub time_limit: Duration,
    /// Rows returned at most; a longer result is cut there (and said to be truncated).
    pub max_rows: usize,
    /// The answer's size at most, counted as its JSON (every value as written out, escapes
    /// included): a bigger answer is refused ([`SqlError::TooLarge`]) as soon as the rows read
    /// so far pass it, so a query's memory is bounded by this, not by its result.
    pub max_bytes: usize,
    /// One value's size at most (a string or blob, as JSON). On SQLite also the database's own
    /// limit (`SQLITE_LIMIT_LENGTH`), so that no bigger value is even built.
    pub max_value_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        Self {
            time_limit: Duration::from_secs(5),
            max_rows: 10_000,
            max_bytes: 16 << 20,
            max_value_bytes: 1 << 20,
        }
    }
}

/// A query's answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SqlResult {
    /// The result's column names, in order.
    pub columns: Vec<String>,
    /// The rows, each with one cell per column.
    pub rows: Vec<Vec<Cell>>,
    /// Whether rows beyond [`SqlLimits::max_rows`] were left out.
    pub truncated: bool,
}

/// One value of a result.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    /// SQL NULL.
    Null,
    /// A boolean (PostgreSQL).
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Float(f64),
    /// An exact decimal that is not an `i64` (PostgreSQL `NUMERIC`, e.g. `avg` or a large
    /// `sum`), written out in full.
    Decimal(String),
    /// Text.
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl Cell {
    /// The cell as CSV text: empty for NULL, `0x…` hex for bytes.
    pub fn to_text(&self) -> String {
        match self {
            Self::Null => String::new(),
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => float_text(*f).map_or_else(|| f.to_string(), str::to_owned),
            Self::Decimal(s) | Self::Text(s) => s.clone(),
            Self::Blob(b) => crate::hex(b),
        }
    }
}

/// JSON: null, a boolean, a number (integers and floats), or a string (text, `0x…` hex bytes,
/// and decimals that are not `i64`s, exact).
impl Serialize for Cell {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => s.serialize_none(),
            Self::Bool(b) => s.serialize_bool(*b),
            Self::Int(i) => s.serialize_i64(*i),
            // JSON has no infinity nor NaN (serde would write `null`): said in words.
            Self::Float(f) => match float_text(*f) {
                Some(t) => s.serialize_str(t),
                None => s.serialize_f64(*f),
            },
            Self::Decimal(t) | Self::Text(t) => s.serialize_str(t),
            Self::Blob(b) => s.serialize_str(&crate::hex(b)),
        }
    }
}

/// A float JSON cannot hold as a number, in words: `"Infinity"`, `"-Infinity"`, `"NaN"`.
fn float_text(f: f64) -> Option<&'static str> {
    if f.is_nan() {
        Some("NaN")
    } else if f.is_infinite() {
        Some(if f > 0.0 { "Infinity" } else { "-Infinity" })
    } else {
        None
    }
}

/// Why a query gave no result.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// The query is malformed or refers to something that does not exist (the database's
    /// message), or it is not exactly one statement.
    #[error("{0}")]
    Invalid(String),
    /// The query would change something (a write, a schema change, `ATTACH`, a `PRAGMA`…):
    /// refused, nothing changed.
    #[error("{0}")]
    Forbidden(String),
    /// The query ran past the time limit and the database stopped it.
    #[error("the query ran for longer than {} and was stopped", human(*.0))]
    TimedOut(Duration),
    /// The answer, or one value of it, is bigger than the limits allow
    /// ([`SqlLimits::max_bytes`], [`SqlLimits::max_value_bytes`]): refused, not cut.
    #[error("{0}")]
    TooLarge(String),
    /// The reader could not be set up (PostgreSQL: the role, its grants, its login).
    #[error("SQL queries cannot be run: {0}")]
    Setup(String),
    /// The database failed otherwise (connection lost, pool exhausted…).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

fn human(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{} s", d.as_secs())
    } else {
        format!("{} ms", d.as_millis())
    }
}

/// Runs analysts' queries (see the module docs). Cheap to clone.
#[derive(Debug, Clone)]
pub struct SqlRunner {
    limits: SqlLimits,
    backend: Reader,
}

#[derive(Debug, Clone)]
enum Reader {
    Sqlite(SqlitePool),
    Postgres(Arc<PgReader>),
}

/// How a [`crate::Store`] reaches its database, for a [`SqlRunner`].
#[derive(Clone)]
pub(crate) enum SqlTarget {
    Sqlite(SqliteConnectOptions),
    Postgres(PgConnectOptions),
}

impl std::fmt::Debug for SqlTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(o) => write!(f, "Sqlite({})", o.get_filename().display()),
            Self::Postgres(o) => write!(f, "Postgres({}/{:?})", o.get_host(), o.get_database()),
        }
    }
}

/// Connections of the query pool: two queries at a time, whatever the API's own pool does.
pub(super) const CONNECTIONS: u32 = 2;

impl crate::StoreReader {
    /// A runner of read-only queries over this store's database, on a pool of its own (opened
    /// at the first query), so runaway queries cannot take the connections the API's other
    /// readers and the indexer use.
    pub fn sql_runner(&self, limits: SqlLimits) -> SqlRunner {
        let backend = match &self.sql_target {
            SqlTarget::Sqlite(options) => {
                let options = options
                    .clone()
                    .read_only(true)
                    .create_if_missing(false)
                    .pragma("query_only", "ON")
                    .busy_timeout(Duration::from_secs(10));
                let options = sqlx::ConnectOptions::disable_statement_logging(options);
                let max_value = i32::try_from(limits.max_value_bytes).unwrap_or(i32::MAX);
                Reader::Sqlite(
                    SqlitePoolOptions::new()
                        .max_connections(CONNECTIONS)
                        .after_connect(move |conn, _| {
                            Box::pin(
                                async move { budget::limit_sqlite_length(conn, max_value).await },
                            )
                        })
                        .connect_lazy_with(options),
                )
            }
            SqlTarget::Postgres(options) => Reader::Postgres(Arc::new(PgReader {
                options: options.clone(),
                ready: OnceCell::new(),
            })),
        };
        SqlRunner { limits, backend }
    }
}

impl SqlRunner {
    /// The limits.
    pub fn limits(&self) -> SqlLimits {
        self.limits
    }

    /// Runs `sql`, one read-only statement.
    pub async fn run(&self, sql: &str) -> Result<SqlResult, SqlError> {
        let text = scan(sql);
        if text.statements == 0 {
            return Err(SqlError::Invalid("the query is empty".into()));
        }
        match &self.backend {
            // One statement: 400 rather than 403 whatever the others would do (`SELECT 1;
            // SELECT 2` is refused just the same), and nothing ran. PostgreSQL refuses several
            // statements in a prepared statement itself (its dollar quotes are not scanned here).
            Reader::Sqlite(_) if text.statements > 1 => Err(SqlError::Invalid(format!(
                "send exactly one statement per request; this text holds {} (separated by `;`)",
                text.statements
            ))),
            Reader::Sqlite(_) if text.pragma_function => Err(SqlError::Forbidden(
                "table-valued PRAGMA functions (pragma_…) are not run here: they read the server's settings and files".into(),
            )),
            Reader::Sqlite(_) if text.load_extension => Err(SqlError::Forbidden(
                "load_extension is not run here: it would load code into the server".into(),
            )),
            Reader::Sqlite(pool) => run_sqlite(pool, self.limits, sql, &text.leading).await,
            Reader::Postgres(reader) => {
                let ready = reader
                    .ready
                    .get_or_try_init(|| pg_setup(&reader.options))
                    .await?;
                let limit = self.limits.time_limit;
                // statement_timeout stops the query on the server; this is the backstop should
                // the server not answer at all.
                match tokio::time::timeout(
                    limit + Duration::from_secs(2),
                    run_postgres(ready, self.limits, sql),
                )
                .await
                {
                    Ok(result) => result,
                    Err(_) => Err(SqlError::TimedOut(limit)),
                }
            }
        }
    }
}

/// Reads at most `max_rows` rows of a query's stream (one more tells whether it was cut), each
/// converted by `convert` and charged to the answer's byte budget; (rows, truncated). Shared by
/// both databases.
pub(super) async fn collect_capped<R>(
    mut stream: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    limits: SqlLimits,
    map: impl Fn(sqlx::Error) -> SqlError,
    convert: impl Fn(&R) -> Result<Vec<Cell>, SqlError>,
) -> Result<(Vec<Vec<Cell>>, bool), SqlError> {
    let mut rows = Vec::new();
    let mut budget = budget::Budget::new(&limits);
    while let Some(row) = stream.try_next().await.map_err(&map)? {
        if rows.len() == limits.max_rows {
            return Ok((rows, true));
        }
        let row = convert(&row)?;
        budget.charge(&row, rows.len() + 1)?;
        rows.push(row);
    }
    Ok((rows, false))
}
