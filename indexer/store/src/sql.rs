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

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use futures::TryStreamExt;
use serde::{Serialize, Serializer};
use sqlx::{
    AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
    sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions, SqliteRow},
};
use tokio::sync::OnceCell;
use tracing::{info, warn};

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

/// The PostgreSQL side, set up at the first query (the role needs a connection).
struct PgReader {
    /// The store's own connection options (its user owns the tables).
    options: PgConnectOptions,
    ready: OnceCell<PgReady>,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("host", &self.options.get_host())
            .field("database", &self.options.get_database())
            .finish_non_exhaustive()
    }
}

struct PgReady {
    pool: PgPool,
    /// Whether the pool logs in as the store's user and switches to [`READER_ROLE`] in each
    /// transaction (the role could not log in itself).
    set_role: bool,
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
const CONNECTIONS: u32 = 2;

impl crate::Store {
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
                            Box::pin(async move {
                                crate::sql_budget::limit_sqlite_length(conn, max_value).await
                            })
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

/// The words SQLite statements start with (its grammar's `cmd`).
const STATEMENTS: [&str; 23] = [
    "ALTER",
    "ANALYZE",
    "ATTACH",
    "BEGIN",
    "COMMIT",
    "CREATE",
    "DELETE",
    "DETACH",
    "DROP",
    "END",
    "EXPLAIN",
    "INSERT",
    "PRAGMA",
    "REINDEX",
    "RELEASE",
    "REPLACE",
    "ROLLBACK",
    "SAVEPOINT",
    "SELECT",
    "UPDATE",
    "VACUUM",
    "VALUES",
    "WITH",
];

/// Whether a statement starting with these words is a query (`WITH … DELETE` passes here and
/// is refused by the read-only connection).
fn is_query(leading: &[String]) -> bool {
    let query =
        |w: Option<&String>| w.is_some_and(|w| ["SELECT", "WITH", "VALUES"].contains(&w.as_str()));
    match leading.first().map(String::as_str) {
        Some("EXPLAIN") if leading.get(1).is_some_and(|w| w == "QUERY") => {
            leading.get(2).is_some_and(|w| w == "PLAN") && query(leading.get(3))
        }
        Some("EXPLAIN") => query(leading.get(1)),
        _ => query(leading.first()),
    }
}

async fn run_sqlite(
    pool: &SqlitePool,
    limits: SqlLimits,
    sql: &str,
    leading: &[String],
) -> Result<SqlResult, SqlError> {
    let starts_a_statement = leading
        .first()
        .is_some_and(|w| STATEMENTS.contains(&w.as_str()));
    if starts_a_statement && !is_query(leading) {
        // Refused before SQLite sees it: compiling a PRAGMA already applies it (flag pragmas
        // such as query_only take effect in sqlite3_prepare, even under EXPLAIN).
        return Err(SqlError::Forbidden(format!(
            "only queries are run (SELECT, WITH … SELECT, VALUES, EXPLAIN [QUERY PLAN] of one): this is {}",
            match leading[0].as_str() {
                "EXPLAIN" => leading.join(" "),
                first if first.starts_with(['A', 'E', 'I', 'O', 'U']) => {
                    format!("an {first} statement")
                }
                first => format!("a {first} statement"),
            }
        )));
    }
    let mut conn = pool.acquire().await?;
    let deadline = Instant::now() + limits.time_limit;
    let stopped = Arc::new(AtomicBool::new(false));
    {
        let stopped = stopped.clone();
        // Every ~10k virtual-machine steps; a query past its deadline is interrupted by SQLite
        // (SQLITE_INTERRUPT). Each query sets its own handler, replacing the last one's.
        conn.lock_handle()
            .await?
            .set_progress_handler(10_000, move || {
                let go_on = Instant::now() < deadline;
                if !go_on {
                    stopped.store(true, Ordering::Relaxed);
                }
                go_on
            });
    }
    let map = |e: sqlx::Error| sqlite_error(e, &stopped, limits.time_limit, limits.max_value_bytes);
    let statement = (&mut *conn)
        .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
        .await
        .map_err(map)?;
    if !starts_a_statement {
        // Not a statement at all (`SELEC 1`): SQLite's parser refused it at its first token,
        // before compiling anything; should it ever accept one, it is still not run.
        return Err(SqlError::Forbidden(
            "only queries are run (SELECT, WITH … SELECT, VALUES, EXPLAIN [QUERY PLAN] of one)"
                .into(),
        ));
    }
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    // One row holds as many values as columns: each value is capped so that a whole row fits
    // the answer's budget before SQLite builds it (a row of 2,000 one-MiB blobs is refused, not
    // built); the connection's own cap is set back after the query, whatever it did.
    let cap = limits
        .max_value_bytes
        .min(limits.max_bytes / columns.len().max(1));
    let length = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    crate::sql_budget::limit_sqlite_length(&mut conn, length(cap)).await?;
    let map = |e: sqlx::Error| sqlite_error(e, &stopped, limits.time_limit, cap);
    let collected =
        collect_capped(statement.query().fetch(&mut *conn), limits, map, sqlite_row).await;
    crate::sql_budget::limit_sqlite_length(&mut conn, length(limits.max_value_bytes)).await?;
    let (rows, truncated) = collected?;
    conn.lock_handle().await?.remove_progress_handler();
    Ok(SqlResult {
        columns,
        rows,
        truncated,
    })
}

/// Reads at most `max_rows` rows of a query's stream (one more tells whether it was cut), each
/// converted by `convert` and charged to the answer's byte budget; (rows, truncated). Shared by
/// both databases.
async fn collect_capped<R>(
    mut stream: impl futures::Stream<Item = Result<R, sqlx::Error>> + Unpin,
    limits: SqlLimits,
    map: impl Fn(sqlx::Error) -> SqlError,
    convert: impl Fn(&R) -> Result<Vec<Cell>, SqlError>,
) -> Result<(Vec<Vec<Cell>>, bool), SqlError> {
    let mut rows = Vec::new();
    let mut budget = crate::sql_budget::Budget::new(&limits);
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

fn sqlite_error(
    e: sqlx::Error,
    stopped: &AtomicBool,
    limit: Duration,
    max_value: usize,
) -> SqlError {
    let sqlx::Error::Database(d) = &e else {
        return SqlError::Database(e);
    };
    let code = d
        .code()
        .and_then(|c| c.parse::<u32>().ok())
        .unwrap_or_default();
    match code & 0xff {
        // SQLITE_INTERRUPT: our progress handler said stop.
        9 if stopped.load(Ordering::Relaxed) => SqlError::TimedOut(limit),
        // SQLITE_READONLY (a read-only connection, query_only) and SQLITE_AUTH.
        8 | 23 => SqlError::Forbidden(format!(
            "the query would change the database, which is read-only here ({})",
            d.message()
        )),
        // SQLITE_TOOBIG: a value past SQLITE_LIMIT_LENGTH (our per-value cap).
        18 => SqlError::TooLarge(format!(
            "a value of the answer is over the limit of {} per value ({})",
            crate::sql_budget::bytes(max_value),
            d.message()
        )),
        // A function the connection does not allow (load_extension): refused, not malformed.
        1 if d.message().contains("not authorized") => SqlError::Forbidden(format!(
            "the query calls what is not allowed here ({})",
            d.message()
        )),
        // SQLITE_ERROR (syntax, unknown table or column…), SQLITE_MISMATCH, SQLITE_RANGE.
        1 | 20 | 25 => SqlError::Invalid(d.message().to_owned()),
        _ => SqlError::Database(e),
    }
}

fn sqlite_row(row: &SqliteRow) -> Result<Vec<Cell>, SqlError> {
    (0..row.columns().len())
        .map(|i| {
            let v = row.try_get_raw(i)?;
            if v.is_null() {
                return Ok(Cell::Null);
            }
            let ty = v.type_info().name().to_owned();
            Ok(match ty.as_str() {
                "INTEGER" => Cell::Int(row.try_get_unchecked(i)?),
                "REAL" => Cell::Float(row.try_get_unchecked(i)?),
                "BLOB" => Cell::Blob(row.try_get_unchecked(i)?),
                _ => Cell::Text(row.try_get_unchecked(i)?),
            })
        })
        .collect()
}

/// Creates [`READER_ROLE`] if missing, grants it `SELECT` on the tables, and opens the pool:
/// logged in as the role where the server lets it, otherwise as the store's user switching to
/// the role in each transaction — refused for a superuser, who could switch back
/// (`set_config('role', 'none', …)` inside the query) and read the server's files.
async fn pg_setup(options: &PgConnectOptions) -> Result<PgReady, SqlError> {
    let setup = |what: &str, e: sqlx::Error| SqlError::Setup(format!("{what}: {e}"));
    let mut admin = PgConnection::connect_with(options).await?;
    const EXISTS: &str =
        "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'keymarket_reader')";
    let exists: bool = sqlx::query_scalar(EXISTS).fetch_one(&mut admin).await?;
    if !exists
        && let Err(e) = admin
            .execute("CREATE ROLE keymarket_reader LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE")
            .await
    {
        // Another process may have created it at the same moment.
        let exists: bool = sqlx::query_scalar(EXISTS).fetch_one(&mut admin).await?;
        if !exists {
            return Err(setup(
                "cannot create the role keymarket_reader (create it as an administrator: CREATE ROLE keymarket_reader LOGIN)",
                e,
            ));
        }
    }
    for grant in [
        "GRANT USAGE ON SCHEMA public TO keymarket_reader",
        "GRANT SELECT ON ALL TABLES IN SCHEMA public TO keymarket_reader",
    ] {
        admin
            .execute(grant)
            .await
            .map_err(|e| setup("cannot grant keymarket_reader SELECT on the tables", e))?;
    }
    let reader_options = options.clone().username(READER_ROLE).password("");
    let direct = PgConnection::connect_with(&reader_options).await;
    let (pool_options, set_role) = match direct {
        Ok(c) => {
            let _ = c.close().await;
            (reader_options, false)
        }
        Err(e) => {
            let superuser: bool =
                sqlx::query_scalar("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
                    .fetch_one(&mut admin)
                    .await?;
            if superuser {
                return Err(SqlError::Setup(format!(
                    "the role keymarket_reader cannot log in ({e}), and switching to it from a superuser could be undone by the query; let it log in (pg_hba.conf, or a password) or connect the store as an ordinary user"
                )));
            }
            // Membership, so that SET ROLE is allowed (PostgreSQL 16 does not give it to the
            // role's creator); harmless if it is already there or cannot be given.
            let _ = admin
                .execute("GRANT keymarket_reader TO CURRENT_USER")
                .await;
            warn!(target: "store::sql", error = %e, "keymarket_reader cannot log in: switching to it in each transaction");
            (options.clone(), true)
        }
    };
    let _ = admin.close().await;
    info!(target: "store::sql", set_role, "SQL reader ready");
    let pool_options = sqlx::ConnectOptions::disable_statement_logging(pool_options);
    Ok(PgReady {
        pool: PgPoolOptions::new()
            .max_connections(CONNECTIONS)
            .connect_lazy_with(pool_options),
        set_role,
    })
}

async fn run_postgres(
    ready: &PgReady,
    limits: SqlLimits,
    sql: &str,
) -> Result<SqlResult, SqlError> {
    let mut conn = ready.pool.acquire().await?;
    // Rolled back when dropped, whatever happens (it is never committed).
    let mut tx = conn.begin_with("BEGIN READ ONLY").await?;
    let ms = limits.time_limit.as_millis().max(1);
    (&mut *tx)
        .execute(AssertSqlSafe(format!(
            "SET LOCAL statement_timeout = {ms}{}",
            if ready.set_role {
                "; SET LOCAL ROLE keymarket_reader"
            } else {
                ""
            }
        )))
        .await?;
    let map = |e: sqlx::Error| pg_error(e, limits.time_limit);
    let statement = (&mut *tx)
        .prepare(AssertSqlSafe(sql.to_owned()).into_sql_str())
        .await
        .map_err(map)?;
    let columns: Vec<String> = statement
        .columns()
        .iter()
        .map(|c| c.name().to_owned())
        .collect();
    let (rows, truncated) = collect_capped(statement.query().fetch(&mut *tx), limits, map, |row| {
        pg_row(row, &columns)
    })
    .await?;
    tx.rollback().await?;
    Ok(SqlResult {
        columns,
        rows,
        truncated,
    })
}

fn pg_error(e: sqlx::Error, limit: Duration) -> SqlError {
    let sqlx::Error::Database(d) = &e else {
        return SqlError::Database(e);
    };
    let code = d.code().unwrap_or_default().into_owned();
    match code.as_str() {
        "57014" => SqlError::TimedOut(limit),
        // read_only_sql_transaction, insufficient_privilege
        "25006" | "42501" => SqlError::Forbidden(format!(
            "the query would change the database or read what it may not: {}",
            d.message()
        )),
        // Syntax errors and access-rule violations (42…, including "cannot insert multiple
        // commands into a prepared statement"), data exceptions (22…), cardinality (21…),
        // features not supported (0A…).
        c if ["42", "22", "21", "0A", "2F", "38", "39"]
            .iter()
            .any(|class| c.starts_with(class)) =>
        {
            SqlError::Invalid(d.message().to_owned())
        }
        _ => SqlError::Database(e),
    }
}

fn pg_row(row: &PgRow, columns: &[String]) -> Result<Vec<Cell>, SqlError> {
    (0..columns.len())
        .map(|i| {
            let v = row.try_get_raw(i)?;
            if v.is_null() {
                return Ok(Cell::Null);
            }
            let ty = v.type_info().name().to_owned();
            Ok(match ty.as_str() {
                "BOOL" => Cell::Bool(row.try_get_unchecked(i)?),
                "INT2" => Cell::Int(row.try_get_unchecked::<i16, _>(i)?.into()),
                "INT4" => Cell::Int(row.try_get_unchecked::<i32, _>(i)?.into()),
                "INT8" => Cell::Int(row.try_get_unchecked(i)?),
                "FLOAT4" => Cell::Float(row.try_get_unchecked::<f32, _>(i)?.into()),
                "FLOAT8" => Cell::Float(row.try_get_unchecked(i)?),
                "NUMERIC" => {
                    let text = numeric_text(v.as_bytes().map_err(sqlx::Error::Decode)?)
                        .ok_or_else(|| {
                            SqlError::Database(sqlx::Error::Decode("malformed NUMERIC".into()))
                        })?;
                    match text.parse::<i64>() {
                        Ok(i) => Cell::Int(i),
                        Err(_) => Cell::Decimal(text),
                    }
                }
                "TEXT" | "VARCHAR" | "BPCHAR" | "NAME" | "UNKNOWN" | "CHAR" | "JSON" => {
                    Cell::Text(row.try_get_unchecked(i)?)
                }
                // Binary jsonb: a version byte, then the text.
                "JSONB" => {
                    let bytes = v.as_bytes().map_err(sqlx::Error::Decode)?;
                    Cell::Text(String::from_utf8_lossy(bytes.get(1..).unwrap_or_default()).into())
                }
                "BYTEA" => Cell::Blob(row.try_get_unchecked(i)?),
                // Dune queries group by `date_trunc(…)`: times come back as UTC text.
                "TIMESTAMP" | "TIMESTAMPTZ" | "DATE" => {
                    let b = v.as_bytes().map_err(sqlx::Error::Decode)?;
                    Cell::Text(pg_time_text(&ty, b).ok_or_else(|| {
                        SqlError::Database(sqlx::Error::Decode(format!("malformed {ty}").into()))
                    })?)
                }
                other => {
                    return Err(SqlError::Invalid(format!(
                        "column `{}` has type {other}, which is not returned as it is: cast it to text (`::text`)",
                        columns[i]
                    )));
                }
            })
        })
        .collect()
}

/// PostgreSQL's binary `NUMERIC` as exact decimal text: digit count, weight (of the first
/// base-10000 digit), sign, display scale, then the base-10000 digits.
fn numeric_text(b: &[u8]) -> Option<String> {
    let word = |i: usize| {
        b.get(2 * i..2 * i + 2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]))
    };
    let ndigits = word(0)? as usize;
    let weight = word(1)? as i16 as i64;
    let sign = word(2)?;
    let dscale = word(3)? as usize;
    match sign {
        0xC000 => return Some("NaN".into()),
        0xD000 => return Some("Infinity".into()),
        0xF000 => return Some("-Infinity".into()),
        _ => {}
    }
    let digits: Vec<u16> = (0..ndigits).map(|i| word(4 + i)).collect::<Option<_>>()?;
    let digit = |i: i64| {
        if i >= 0 && (i as usize) < digits.len() {
            digits[i as usize]
        } else {
            0
        }
    };
    let mut s = String::new();
    if sign == 0x4000 {
        s.push('-');
    }
    if weight < 0 {
        s.push('0');
    } else {
        s.push_str(&digit(0).to_string());
        for i in 1..=weight {
            s.push_str(&format!("{:04}", digit(i)));
        }
    }
    if dscale > 0 {
        let mut fraction = String::new();
        let mut i = weight + 1;
        while fraction.len() < dscale {
            fraction.push_str(&format!("{:04}", digit(i)));
            i += 1;
        }
        fraction.truncate(dscale);
        s.push('.');
        s.push_str(&fraction);
    }
    if s == "-0" || (s.starts_with("-0.") && s[3..].bytes().all(|c| c == b'0')) {
        s.remove(0);
    }
    Some(s)
}

/// Days from 1970-01-01 to 2000-01-01, PostgreSQL's epoch.
const PG_EPOCH_DAYS: i64 = 10_957;

/// PostgreSQL's binary `DATE` (days since 2000-01-01, `i32`) or `TIMESTAMP`/`TIMESTAMPTZ`
/// (microseconds since 2000-01-01 00:00 UTC, `i64`) as text: `YYYY-MM-DD`, or
/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (a `TIMESTAMPTZ` in UTC, with `+00`).
fn pg_time_text(ty: &str, b: &[u8]) -> Option<String> {
    if ty == "DATE" {
        return Some(match i32::from_be_bytes(b.try_into().ok()?) {
            i32::MAX => "infinity".into(),
            i32::MIN => "-infinity".into(),
            days => civil_date(days as i64 + PG_EPOCH_DAYS),
        });
    }
    let micros = match i64::from_be_bytes(b.try_into().ok()?) {
        i64::MAX => return Some("infinity".into()),
        i64::MIN => return Some("-infinity".into()),
        m => m,
    };
    let (secs, frac) = (micros.div_euclid(1_000_000), micros.rem_euclid(1_000_000));
    let of_day = secs.rem_euclid(86_400);
    let mut s = format!(
        "{} {:02}:{:02}:{:02}",
        civil_date(secs.div_euclid(86_400) + PG_EPOCH_DAYS),
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    );
    if frac != 0 {
        s.push_str(format!(".{frac:06}").trim_end_matches('0'));
    }
    if ty == "TIMESTAMPTZ" {
        s.push_str("+00");
    }
    Some(s)
}

/// `YYYY-MM-DD` of a count of days since 1970-01-01 (the proleptic Gregorian calendar, counted
/// in 400-year eras of 146,097 days from 0000-03-01).
fn civil_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

/// What [`scan`] found in a query's text.
#[derive(Debug, PartialEq, Eq)]
struct Text {
    /// Statements: non-empty pieces between `;` outside strings, quoted names and comments.
    statements: usize,
    /// The first statement's leading words (up to 4, upper-cased), up to its first other token.
    leading: Vec<String>,
    /// Whether a word of the text (outside strings and comments) names a table-valued PRAGMA
    /// function (`pragma_…`, SQLite).
    pragma_function: bool,
    /// Whether a word of the text is `load_extension` (SQLite).
    load_extension: bool,
}

/// Counts the statements of `sql` and reads its first word, skipping comments, string literals
/// and quoted identifiers (SQLite's lexical rules; the PostgreSQL server counts statements itself
/// and refuses more than one in a prepared statement).
fn scan(sql: &str) -> Text {
    let b = sql.as_bytes();
    let (mut i, mut statements, mut current) = (0, 0, false);
    let (mut leading, mut collecting) = (Vec::new(), true);
    let (mut pragma_function, mut load_extension) = (false, false);
    let closing = |open: u8| match open {
        b'[' => b']',
        c => c,
    };
    while i < b.len() {
        let c = b[i];
        match c {
            b'-' if b.get(i + 1) == Some(&b'-') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
            }
            b'\'' | b'"' | b'`' | b'[' => {
                current = true;
                collecting = false;
                let close = closing(c);
                i += 1;
                let opened = i;
                while i < b.len() {
                    if b[i] == close {
                        // A doubled quote stands for itself.
                        if close != b']' && b.get(i + 1) == Some(&close) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                // A quoted name is still a name: SQLite resolves "pragma_database_list" (and a
                // string where a name is expected) as the unquoted one.
                let quoted = sql
                    .get(opened..i.min(b.len()))
                    .unwrap_or_default()
                    .trim()
                    .to_ascii_uppercase();
                pragma_function |= quoted.starts_with("PRAGMA_");
                load_extension |= quoted == "LOAD_EXTENSION";
                i += 1;
            }
            b';' => {
                if current {
                    statements += 1;
                }
                current = false;
                i += 1;
            }
            c if c.is_ascii_whitespace() => i += 1,
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = b[i..]
                    .iter()
                    .position(|c| !c.is_ascii_alphanumeric() && *c != b'_' && *c != b'$')
                    .map_or(b.len(), |n| i + n);
                let word = sql[i..end].to_ascii_uppercase();
                pragma_function |= word.starts_with("PRAGMA_");
                load_extension |= word == "LOAD_EXTENSION";
                if statements == 0 && collecting && leading.len() < 4 {
                    leading.push(word);
                }
                current = true;
                i = end;
            }
            _ => {
                collecting = false;
                current = true;
                i += 1;
            }
        }
    }
    if current {
        statements += 1;
    }
    Text {
        statements,
        leading,
        pragma_function,
        load_extension,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    const TABLES: [&str; 13] = [
        "chains",
        "markets",
        "blocks",
        "trades",
        "stats_daily",
        "subjects",
        "traders",
        "holdings",
        "daily_traders",
        "subject_daily",
        "referrals",
        "fee_events",
        "referrers",
    ];

    /// A migrated SQLite file holding one market and `trades` made-up trades (written directly:
    /// only their count and shape matter here), and the runner under `limits`.
    async fn store_with_trades(name: &str, trades: u32, limits: SqlLimits) -> (Store, SqlRunner) {
        let path =
            std::env::temp_dir().join(format!("keymarket-sql-{name}-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let url = format!("sqlite:{}", path.display());
        let store = Store::connect(&url).await.unwrap();
        store.ensure_chain(31337, Default::default()).await.unwrap();
        store
            .ensure_market(31337, Default::default(), 1)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $1) \
             INSERT INTO trades (chain_id, tx_hash, log_index, market_id, block_number, block_hash, \
             block_time, trader, subject, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, \
             protocol_rem, subject_gwei, subject_rem, supply) \
             SELECT 31337, printf('0x%064x', i), 0, 1, i, '0x00', 1700000000 + i, \
             printf('0x%040x', i % 50), printf('0x%040x', i % 7), i % 2, 1, i, 999999999, 0, 0, 0, 0, i \
             FROM c",
        )
        .bind(trades as i64)
        .execute(store.pool())
        .await
        .unwrap();
        let runner = store.sql_runner(limits);
        (store, runner)
    }

    async fn row_counts(store: &Store) -> Vec<i64> {
        let mut counts = Vec::new();
        for table in TABLES {
            let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(store.pool())
                .await
                .unwrap();
            counts.push(n);
        }
        counts
    }

    /// docs/sql.md's table reference is generated from the migrated schema: this test renders
    /// it from a fresh SQLite file's `pragma_table_info` and compares; `UPDATE_DOCS=1` rewrites
    /// the section instead.
    #[tokio::test]
    async fn docs_sql_md_lists_the_schemas_tables_and_columns() {
        let (store, _) = store_with_trades("docs", 0, SqlLimits::default()).await;
        let tables: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') \
             AND name NOT LIKE 'sqlite_%' AND name NOT LIKE '\\_sqlx%' ESCAPE '\\' ORDER BY name",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        let mut section = String::from(BEGIN);
        section.push('\n');
        for (table, kind) in &tables {
            let kind = if kind == "view" { " (view)" } else { "" };
            section.push_str(&format!(
                "\n### `{table}`{kind}\n\n| column | type | not null | primary key | default |\n|---|---|---|---|---|\n"
            ));
            let columns = sqlx::query(
                "SELECT name, type, \"notnull\", pk, coalesce(dflt_value, '') FROM pragma_table_info($1) ORDER BY cid",
            )
            .bind(table)
            .fetch_all(store.pool())
            .await
            .unwrap();
            for c in columns {
                let (name, ty, not_null, pk, default): (String, String, i64, i64, String) =
                    (c.get(0), c.get(1), c.get(2), c.get(3), c.get(4));
                section.push_str(&format!(
                    "| `{name}` | {ty} | {} | {} | {default} |\n",
                    if not_null == 1 { "yes" } else { "" },
                    if pk > 0 {
                        pk.to_string()
                    } else {
                        String::new()
                    },
                ));
            }
        }
        section.push('\n');
        section.push_str(END);
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/sql.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let (start, end) = (doc.find(BEGIN).unwrap(), doc.find(END).unwrap() + END.len());
        if std::env::var_os("UPDATE_DOCS").is_some() {
            std::fs::write(path, format!("{}{section}{}", &doc[..start], &doc[end..])).unwrap();
        } else {
            assert!(
                doc[start..end] == section,
                "docs/sql.md's tables differ from the schema: run UPDATE_DOCS=1 cargo test -p keymarket-store docs_sql_md"
            );
        }
    }

    const BEGIN: &str = "<!-- tables: generated from the schema by the store's docs_sql_md test; UPDATE_DOCS=1 rewrites -->";
    const END: &str = "<!-- end of tables -->";

    #[tokio::test]
    async fn sqlite_select_returns_columns_typed_cells_and_is_capped() {
        let limits = SqlLimits {
            max_rows: 100,
            ..SqlLimits::default()
        };
        let (_store, runner) = store_with_trades("select", 300, limits).await;
        let r = runner
            .run("SELECT count(*) AS n, sum(eth_gwei) AS gwei, max(trader) AS top FROM trades")
            .await
            .unwrap();
        assert_eq!(r.columns, ["n", "gwei", "top"]);
        assert_eq!(
            r.rows,
            [vec![
                Cell::Int(300),
                Cell::Int(300 * 301 / 2),
                Cell::Text(format!("0x{:040x}", 49)),
            ]]
        );
        assert!(!r.truncated);

        let r = runner
            .run("SELECT 1 AS i, 1.5 AS f, 'a' AS t, NULL AS n, x'beef' AS b")
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_string(&r.rows).unwrap(),
            r#"[[1,1.5,"a",null,"0xbeef"]]"#
        );

        // An empty result still names its columns.
        let r = runner
            .run("SELECT trader, supply FROM trades WHERE supply < 0")
            .await
            .unwrap();
        assert_eq!(r.columns, ["trader", "supply"]);
        assert!(r.rows.is_empty() && !r.truncated);

        // 300 rows, 100 returned.
        let r = runner
            .run("SELECT block_number FROM trades ORDER BY block_number")
            .await
            .unwrap();
        assert_eq!(r.rows.len(), 100);
        assert!(r.truncated);
        assert_eq!(r.rows[99], [Cell::Int(100)]);
        // Exactly the cap is not truncated.
        let r = runner
            .run("SELECT block_number FROM trades LIMIT 100")
            .await
            .unwrap();
        assert_eq!((r.rows.len(), r.truncated), (100, false));
    }

    #[tokio::test]
    async fn sqlite_writes_schema_changes_attach_and_pragmas_are_forbidden_and_change_nothing() {
        let (store, runner) = store_with_trades("forbidden", 50, SqlLimits::default()).await;
        let before = row_counts(&store).await;
        let elsewhere =
            std::env::temp_dir().join(format!("keymarket-sql-elsewhere-{}.db", std::process::id()));
        let _ = std::fs::remove_file(&elsewhere);
        for sql in [
            "INSERT INTO chains (chain_id, genesis_hash) VALUES (1, '0x')".to_string(),
            "UPDATE trades SET supply = 0".into(),
            "DELETE FROM trades".into(),
            "REPLACE INTO chains (chain_id, genesis_hash) VALUES (1, '0x')".into(),
            "DROP TABLE trades".into(),
            "CREATE TABLE evil (x)".into(),
            "CREATE TEMP TABLE evil (x)".into(),
            "CREATE INDEX evil ON trades (supply)".into(),
            "ALTER TABLE trades ADD COLUMN evil BIGINT".into(),
            "ATTACH ':memory:' AS other".into(),
            format!("ATTACH '{}' AS other", elsewhere.display()),
            "DETACH other".into(),
            "PRAGMA query_only = OFF".into(),
            "PRAGMA journal_mode = DELETE".into(),
            "PRAGMA user_version = 7".into(),
            format!("VACUUM INTO '{}'", elsewhere.display()),
            "VACUUM".into(),
            "REINDEX".into(),
            "ANALYZE".into(),
            "BEGIN IMMEDIATE".into(),
            // Starts like a query: the read-only connection refuses it.
            "WITH doomed AS (SELECT 1) DELETE FROM trades".into(),
            "  /* hidden */ with x(a) as (select 1) insert into chains select a, '0x' from x"
                .into(),
        ] {
            match runner.run(&sql).await {
                Err(SqlError::Forbidden(why)) => assert!(!why.is_empty()),
                other => panic!("{sql}: {other:?}"),
            }
        }
        assert_eq!(row_counts(&store).await, before);
        assert!(!elsewhere.exists());
        // The query connections are as they were: nothing attached (the pragma functions that
        // would show it are refused too), still read-only.
        for _ in 0..4 {
            match runner.run("SELECT count(*) FROM other.sqlite_master").await {
                Err(SqlError::Invalid(why)) => assert!(why.contains("other"), "{why}"),
                other => panic!("{other:?}"),
            }
            match runner.run("WITH x AS (SELECT 1) DELETE FROM chains").await {
                Err(SqlError::Forbidden(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        for sql in [
            "SELECT * FROM pragma_database_list",
            "SELECT query_only FROM PRAGMA_QUERY_ONLY",
        ] {
            match runner.run(sql).await {
                Err(SqlError::Forbidden(why)) => assert!(why.contains("PRAGMA"), "{why}"),
                other => panic!("{sql}: {other:?}"),
            }
        }
    }

    #[tokio::test]
    async fn sqlite_bad_sql_is_invalid_with_sqlites_message() {
        let (store, runner) = store_with_trades("invalid", 10, SqlLimits::default()).await;
        let before = row_counts(&store).await;
        for (sql, needle) in [
            (
                "SELECT * FROM no_such_table",
                "no such table: no_such_table",
            ),
            ("SELECT nope FROM trades", "no such column: nope"),
            ("SELEC 1", "syntax error"),
            ("DELEET FROM trades", "syntax error"),
            ("SELECT 1; DELETE FROM trades", "exactly one statement"),
            ("SELECT 1; SELECT 2;", "exactly one statement"),
            ("", "empty"),
            ("  -- only a comment\n ;", "empty"),
        ] {
            match runner.run(sql).await {
                Err(SqlError::Invalid(message)) => {
                    assert!(message.contains(needle), "{sql}: {message}")
                }
                other => panic!("{sql}: {other:?}"),
            }
        }
        assert_eq!(row_counts(&store).await, before);
        // One statement with a trailing semicolon is fine.
        assert_eq!(
            runner.run("SELECT 2;").await.unwrap().rows,
            [vec![Cell::Int(2)]]
        );
    }

    #[tokio::test]
    async fn sqlite_runaway_queries_are_stopped_by_sqlite() {
        let limits = SqlLimits {
            time_limit: Duration::from_millis(200),
            ..SqlLimits::default()
        };
        let (_store, runner) = store_with_trades("runaway", 3000, limits).await;
        for sql in [
            // 2.7e10 combinations.
            "SELECT count(*) FROM trades a, trades b, trades c",
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 1000000000000) \
             SELECT count(*) FROM c",
        ] {
            match runner.run(sql).await {
                Err(SqlError::TimedOut(limit)) => assert_eq!(limit, limits.time_limit),
                other => panic!("{sql}: {other:?}"),
            }
        }
        // The connections serve the next query (each sets its own deadline).
        let r = runner.run("SELECT count(*) FROM trades").await.unwrap();
        assert_eq!(r.rows, [vec![Cell::Int(3000)]]);
        assert_eq!(
            SqlError::TimedOut(Duration::from_secs(5)).to_string(),
            "the query ran for longer than 5 s and was stopped"
        );
    }

    #[test]
    fn scan_counts_statements_outside_strings_and_comments() {
        for (sql, statements, leading, query) in [
            ("SELECT 1", 1, "SELECT", true),
            ("  select 1;  ", 1, "SELECT", true),
            ("SELECT 1; DELETE FROM trades", 2, "SELECT", true),
            ("SELECT ';' AS x", 1, "SELECT", true),
            (
                "SELECT \"a;b\" FROM [c;d] WHERE `e;f` = 'it''s;'",
                1,
                "SELECT",
                true,
            ),
            (
                "-- a; comment\n/* another; */ with x as (select 1) select * from x",
                1,
                "WITH X AS",
                true,
            ),
            ("SELECT 1 -- trailing; comment", 1, "SELECT", true),
            ("", 0, "", false),
            (" ; ;-- nothing\n", 0, "", false),
            ("attach 'x.db' as x", 1, "ATTACH", false),
            ("PRAGMA query_only=0", 1, "PRAGMA QUERY_ONLY", false),
            (
                "explain pragma query_only=0",
                1,
                "EXPLAIN PRAGMA QUERY_ONLY",
                false,
            ),
            (
                "EXPLAIN QUERY PLAN SELECT 1",
                1,
                "EXPLAIN QUERY PLAN SELECT",
                true,
            ),
            (
                "EXPLAIN QUERY PLAN DELETE FROM t",
                1,
                "EXPLAIN QUERY PLAN DELETE",
                false,
            ),
            ("explain /* c */ select 1", 1, "EXPLAIN SELECT", true),
            ("(SELECT 1)", 1, "", false),
        ] {
            let text = scan(sql);
            assert_eq!(
                (text.statements, text.leading.join(" ")),
                (statements, leading.to_string()),
                "{sql}"
            );
            assert_eq!(is_query(&text.leading), query, "{sql}");
        }
    }

    #[test]
    fn postgres_dates_and_timestamps_to_utc_text() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(19_579), "2023-08-10");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(-1), "1969-12-31");
        let date = |d: i32| pg_time_text("DATE", &d.to_be_bytes());
        assert_eq!(date(0).as_deref(), Some("2000-01-01"));
        assert_eq!(date(-10_957).as_deref(), Some("1970-01-01"));
        assert_eq!(date(i32::MAX).as_deref(), Some("infinity"));
        // friend.tech's launch, 2023-08-10 13:25:33 UTC = Unix 1,691,673,933.
        let micros = (1_691_673_933 - PG_EPOCH_DAYS * 86_400) * 1_000_000;
        let ts = |ty: &str, m: i64| pg_time_text(ty, &m.to_be_bytes());
        assert_eq!(
            ts("TIMESTAMP", micros).as_deref(),
            Some("2023-08-10 13:25:33")
        );
        assert_eq!(
            ts("TIMESTAMPTZ", micros + 250_000).as_deref(),
            Some("2023-08-10 13:25:33.25+00")
        );
        assert_eq!(
            ts("TIMESTAMP", -1).as_deref(),
            Some("1999-12-31 23:59:59.999999")
        );
        assert_eq!(pg_time_text("DATE", &[0, 1]), None, "wrong width");
    }

    #[test]
    fn numeric_binary_to_exact_text() {
        // 12345678.9012 with dscale 4: digits 1234 5678 9012, weight 1.
        let enc = |ndigits: u16, weight: i16, sign: u16, dscale: u16, digits: &[u16]| {
            let mut v = Vec::new();
            for w in [ndigits, weight as u16, sign, dscale].iter().chain(digits) {
                v.extend_from_slice(&w.to_be_bytes());
            }
            v
        };
        for (bytes, text) in [
            (enc(3, 1, 0, 4, &[1234, 5678, 9012]), "12345678.9012"),
            (enc(1, -1, 0x4000, 4, &[1]), "-0.0001"),
            (enc(1, 1, 0, 0, &[1]), "10000"),
            (enc(0, 0, 0, 0, &[]), "0"),
            (enc(0, 0, 0, 2, &[]), "0.00"),
            (enc(1, 0, 0, 2, &[5]), "5.00"),
            (enc(1, -2, 0, 8, &[12]), "0.00000012"),
            (enc(1, -2, 0, 6, &[12]), "0.000000"),
            (enc(0, 0, 0xC000, 0, &[]), "NaN"),
        ] {
            assert_eq!(numeric_text(&bytes).as_deref(), Some(text));
        }
    }
}
