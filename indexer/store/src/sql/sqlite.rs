//! Queries on SQLite: a read-only pool, a progress handler as the time limit, rows as cells.

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::{
    AssertSqlSafe, Column, Executor, Row, SqlSafeStr, Statement, TypeInfo, ValueRef,
    sqlite::{SqlitePool, SqliteRow},
};

use super::{
    Cell, SqlError, SqlLimits, SqlResult, collect_capped,
    text::{STATEMENTS, is_query},
};

pub(super) async fn run_sqlite(
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
    super::budget::limit_sqlite_length(&mut conn, length(cap)).await?;
    let map = |e: sqlx::Error| sqlite_error(e, &stopped, limits.time_limit, cap);
    let collected =
        collect_capped(statement.query().fetch(&mut *conn), limits, map, sqlite_row).await;
    super::budget::limit_sqlite_length(&mut conn, length(limits.max_value_bytes)).await?;
    let (rows, truncated) = collected?;
    conn.lock_handle().await?.remove_progress_handler();
    Ok(SqlResult {
        columns,
        rows,
        truncated,
    })
}

pub(super) fn sqlite_error(
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
            super::budget::bytes(max_value),
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

pub(super) fn sqlite_row(row: &SqliteRow) -> Result<Vec<Cell>, SqlError> {
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
