//! Building the store's multi-row SQL statements, the same text on both databases but for
//! their placeholders and `INSERT` forms, chunked under the databases' parameter limits.

use crate::{Backend, write_tx::Stmt};

/// Most bind parameters in one statement (SQLite allows 32,766, PostgreSQL 65,535).
pub(crate) const MAX_PARAMS: usize = 30_000;

/// The start of a multi-row `INSERT` (`rest`: "table (columns) VALUES …"). On SQLite, `OR FAIL`:
/// a failing row stops the statement without undoing its earlier rows, so SQLite keeps no
/// statement journal (a copy of every page the statement touches, the default `ABORT` needs).
/// Nothing is lost by that: any error rolls the whole transaction back.
pub(crate) fn insert_into(backend: Backend, rest: &str) -> String {
    match backend {
        Backend::Sqlite => format!("INSERT OR FAIL INTO {rest}"),
        Backend::Postgres => format!("INSERT INTO {rest}"),
    }
}

/// A multi-row statement. Not prepared-and-cached: its text varies with the number of rows, and
/// each cached variant with tens of thousands of parameters would hold megabytes for the life of
/// the connection (memory would grow with the variety of batch sizes). The trades insert caches
/// its full-chunk variant only (`.persistent(true)`), a fixed text.
pub(crate) fn big_statement(backend: Backend, sql: &str, params: usize) -> Stmt<'_> {
    Stmt::new(backend, sql, params).persistent(false)
}

/// Appends `rows` tuples of `cols` placeholders. SQLite gets anonymous `?` (bound by position):
/// with `?NNN` or `$NNN` every bind looks its name up in a linear list (sqlite3VListNumToName),
/// which makes a 30,000-parameter statement quadratic. PostgreSQL gets `$NNN`.
pub(crate) fn push_placeholders(sql: &mut String, backend: Backend, rows: usize, cols: usize) {
    use std::fmt::Write;
    let mut n = 1;
    for r in 0..rows {
        sql.push_str(if r == 0 { "(" } else { ", (" });
        for c in 0..cols {
            if c > 0 {
                sql.push_str(", ");
            }
            if backend == Backend::Sqlite {
                sql.push('?');
            } else {
                write!(sql, "${n}").expect("write to string");
            }
            n += 1;
        }
        sql.push(')');
    }
}

/// SQL that adds `excluded`'s `<col>_gwei, <col>_rem` to `table`'s and keeps the pair
/// normalised (`0 <= rem < 10⁹`; floor division, exact on both databases), for signed amounts
/// whose pairs must order by value.
pub(crate) fn normalised_add(table: &str, col: &str) -> String {
    let rem = format!("({table}.{col}_rem + excluded.{col}_rem)");
    let modulo = format!("((({rem} % 1000000000) + 1000000000) % 1000000000)");
    format!(
        "{col}_gwei = {table}.{col}_gwei + excluded.{col}_gwei + ({rem} - {modulo}) / 1000000000, {col}_rem = {modulo}"
    )
}

#[cfg(test)]
mod tests {
    use sqlx::{Connection, Row};

    use super::*;

    #[test]
    fn placeholders_per_backend() {
        let mut sqlite = String::new();
        push_placeholders(&mut sqlite, Backend::Sqlite, 2, 2);
        assert_eq!(sqlite, "(?, ?), (?, ?)");
        let mut postgres = String::new();
        push_placeholders(&mut postgres, Backend::Postgres, 2, 3);
        assert_eq!(postgres, "($1, $2, $3), ($4, $5, $6)");
    }

    /// The upsert arithmetic of signed amounts keeps each pair normalised (0 <= rem < 10⁹) and
    /// exact, carrying and borrowing, run by SQLite itself.
    #[tokio::test]
    async fn normalised_amounts_carry_and_borrow() {
        let mut db = sqlx::SqliteConnection::connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE a (id INTEGER PRIMARY KEY, v_gwei BIGINT, v_rem BIGINT)")
            .execute(&mut db)
            .await
            .unwrap();
        let upsert = format!(
            "INSERT INTO a (id, v_gwei, v_rem) VALUES (1, $1, $2) ON CONFLICT (id) DO UPDATE SET {}",
            normalised_add("a", "v")
        );
        let mut expect = 0i128;
        for (gwei, rem) in [
            (5i64, 999_999_999i64),
            (0, 2),
            (0, -3),
            (-7, 0),
            (0, -999_999_999),
            (3, 5),
        ] {
            sqlx::query(sqlx::AssertSqlSafe(upsert.as_str()))
                .bind(gwei)
                .bind(rem)
                .execute(&mut db)
                .await
                .unwrap();
            expect += i128::from(gwei) * 1_000_000_000 + i128::from(rem);
            let r = sqlx::query("SELECT v_gwei, v_rem FROM a WHERE id = 1")
                .fetch_one(&mut db)
                .await
                .unwrap();
            let (g, rm): (i64, i64) = (r.get(0), r.get(1));
            assert!((0..1_000_000_000).contains(&rm), "normalised: ({g}, {rm})");
            assert_eq!(i128::from(g) * 1_000_000_000 + i128::from(rm), expect);
        }
    }
}
