//! Queries on PostgreSQL: the reader role, a read-only transaction always rolled back,
//! `statement_timeout`, rows decoded from the binary protocol into cells.

use std::time::Duration;

use sqlx::{
    AssertSqlSafe, Column, Connection, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef,
    postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow},
};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use super::{
    CONNECTIONS, Cell, READER_ROLE, SqlError, SqlLimits, SqlResult, collect_capped,
    pg_text::{numeric_text, pg_time_text},
};

/// The PostgreSQL side, set up at the first query (the role needs a connection).
pub(super) struct PgReader {
    /// The store's own connection options (its user owns the tables).
    pub(super) options: PgConnectOptions,
    pub(super) ready: OnceCell<PgReady>,
}

impl std::fmt::Debug for PgReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgReader")
            .field("host", &self.options.get_host())
            .field("database", &self.options.get_database())
            .finish_non_exhaustive()
    }
}

pub(super) struct PgReady {
    pub(super) pool: PgPool,
    /// Whether the pool logs in as the store's user and switches to [`READER_ROLE`] in each
    /// transaction (the role could not log in itself).
    pub(super) set_role: bool,
}

/// Creates [`READER_ROLE`] if missing, grants it `SELECT` on the tables, and opens the pool:
/// logged in as the role where the server lets it, otherwise as the store's user switching to
/// the role in each transaction — refused for a superuser, who could switch back
/// (`set_config('role', 'none', …)` inside the query) and read the server's files.
pub(super) async fn pg_setup(options: &PgConnectOptions) -> Result<PgReady, SqlError> {
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

pub(super) async fn run_postgres(
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

pub(super) fn pg_error(e: sqlx::Error, limit: Duration) -> SqlError {
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

pub(super) fn pg_row(row: &PgRow, columns: &[String]) -> Result<Vec<Cell>, SqlError> {
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
