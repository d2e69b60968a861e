//! The query runner against real databases, and its text and value helpers.

use sqlx::{AssertSqlSafe, Row};

use super::{
    pg_text::{PG_EPOCH_DAYS, numeric_text, pg_time_text},
    text::is_query,
    *,
};
use crate::StoreWriter;

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
async fn store_with_trades(name: &str, trades: u32, limits: SqlLimits) -> (StoreWriter, SqlRunner) {
    let path = std::env::temp_dir().join(format!("keymarket-sql-{name}-{}.db", std::process::id()));
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    let url = format!("sqlite:{}", path.display());
    let store = StoreWriter::connect(&url).await.unwrap();
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

async fn row_counts(store: &StoreWriter) -> Vec<i64> {
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
        "  /* hidden */ with x(a) as (select 1) insert into chains select a, '0x' from x".into(),
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
    assert_eq!(crate::calendar::date_of_day(0), "1970-01-01");
    assert_eq!(crate::calendar::date_of_day(19_579), "2023-08-10");
    assert_eq!(crate::calendar::date_of_day(11_016), "2000-02-29");
    assert_eq!(crate::calendar::date_of_day(-1), "1969-12-31");
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
