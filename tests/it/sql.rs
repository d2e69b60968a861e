//! `POST /v1/sql` on PostgreSQL over a real chain and indexer: the store's runner (types, exact
//! decimals, the row cap, writes and privilege escapes refused with nothing changed, bad SQL,
//! runaways stopped by the server) and the endpoint over a real socket. The SQLite side is tested
//! in the store and API crates.

use std::time::Duration;

use keymarket_api::AppState;
use keymarket_indexer::StoreWriter;
use keymarket_indexer::store::{Cell, SqlError, SqlLimits};
use serde_json::{Value, json};

use crate::{
    api::serve_state,
    common::{Chain, Db, fresh_db},
};

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
    "referrers",
    "fee_events",
];

async fn row_counts(store: &StoreWriter) -> Vec<i64> {
    let mut counts = Vec::new();
    for table in TABLES {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(store.pool())
                .await
                .unwrap();
        counts.push(n);
    }
    counts
}

#[tokio::test(flavor = "multi_thread")]
async fn sql_on_postgres_reads_exactly_refuses_writes_and_stops_runaways() {
    let chain = Chain::new().await;
    chain.trade(300, 41, 50, 3600).await;
    let url = fresh_db(Db::Postgres, "sql").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    let config = keymarket_indexer::IndexerConfig::default();
    keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
        .await
        .unwrap();
    let trades: i64 = sqlx::query_scalar("SELECT count(*) FROM trades")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert!(trades >= 300, "{trades}");
    // The store's connections plan each execution for its parameters (a generic plan read the
    // trader page through the wrong index at 12M trades), and index builds after a backfill
    // leave the tables analyzed.
    let mode: String = sqlx::query_scalar("SHOW plan_cache_mode")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(mode, "force_custom_plan");
    store.drop_secondary_indexes().await.unwrap();
    assert!(store.build_secondary_indexes().await.unwrap() > 0);
    let mut analyzed = 0i64;
    for _ in 0..50 {
        analyzed = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_user_tables \
             WHERE relname IN ('trades', 'holdings') AND last_analyze IS NOT NULL",
        )
        .fetch_one(store.pool())
        .await
        .unwrap();
        if analyzed == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(analyzed, 2, "trades and holdings analyzed");
    let gwei: i64 = sqlx::query_scalar("SELECT CAST(sum(eth_gwei) AS BIGINT) FROM trades")
        .fetch_one(store.pool())
        .await
        .unwrap();

    let runner = store.sql_runner(SqlLimits {
        time_limit: Duration::from_millis(300),
        max_rows: 100,
        ..SqlLimits::default()
    });
    // sum(bigint) is NUMERIC on PostgreSQL: an integer that fits is a number.
    let r = runner
        .run("SELECT count(*) AS n, sum(eth_gwei) AS gwei FROM trades")
        .await
        .unwrap();
    assert_eq!(r.columns, ["n", "gwei"]);
    assert_eq!(r.rows, [vec![Cell::Int(trades), Cell::Int(gwei)]]);

    let r = runner
        .run(
            "SELECT true AS b, 1::int2 AS s, 2::int4 AS i, 3::int8 AS l, 1.5::float8 AS f, \
             'x'::text AS t, NULL AS n, '\\xbeef'::bytea AS bytes, '{\"a\": 1}'::jsonb AS j, \
             123456789012345678901234567890.123456789::numeric AS big, -0.0001::numeric AS small, \
             (2::numeric ^ 70) AS pow",
        )
        .await
        .unwrap();
    assert_eq!(
        serde_json::to_value(&r.rows).unwrap(),
        json!([[
            true,
            1,
            2,
            3,
            1.5,
            "x",
            null,
            "0xbeef",
            "{\"a\": 1}",
            "123456789012345678901234567890.123456789",
            "-0.0001",
            "1180591620717411303424.0000000000000000"
        ]])
    );
    // Dates and timestamps come back as UTC text (a TIMESTAMPTZ with its "+00").
    let r = runner
        .run(
            "SELECT DATE '2024-02-29' AS d, TIMESTAMP '2023-08-19 12:34:56.5' AS ts, \
             TIMESTAMPTZ '2023-08-21 23:59:59+02' AS tz, now() AS t",
        )
        .await
        .unwrap();
    let row = &r.rows[0];
    assert_eq!(
        row[..3],
        [
            Cell::Text("2024-02-29".into()),
            Cell::Text("2023-08-19 12:34:56.5".into()),
            Cell::Text("2023-08-21 21:59:59+00".into()),
        ]
    );
    match &row[3] {
        Cell::Text(t) => assert!(t.len() >= 22 && t.ends_with("+00"), "{t}"),
        other => panic!("now(): {other:?}"),
    }

    // The row cap.
    let r = runner.run("SELECT * FROM trades").await.unwrap();
    assert_eq!((r.rows.len(), r.truncated), (100, true));

    // Writes, schema changes and privilege escapes: refused, nothing changed.
    let before = row_counts(&store).await;
    for sql in [
        "INSERT INTO chains (chain_id, genesis_hash) VALUES (1, '0x')",
        "UPDATE trades SET supply = 0",
        "DELETE FROM trades",
        "WITH doomed AS (SELECT 1) DELETE FROM trades",
        "DROP TABLE trades",
        "TRUNCATE trades",
        "CREATE TABLE evil (x int)",
        "CREATE TEMP TABLE evil (x int)",
        "ALTER TABLE trades ADD COLUMN evil int",
        "SELECT nextval('markets_id_seq')",
        "COPY trades TO '/tmp/keymarket-evil.csv'",
        "SELECT pg_read_file('/etc/hostname')",
        // Switching back to the session's own role does not help: the session is the reader.
        "SELECT set_config('role', 'none', true), pg_read_file('/etc/hostname')",
    ] {
        match runner.run(sql).await {
            Err(SqlError::Forbidden(why)) => assert!(!why.is_empty()),
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(row_counts(&store).await, before);
    let r = runner
        .run("SELECT set_config('role', 'none', true) AS r, current_user AS u, session_user AS s")
        .await
        .unwrap();
    assert_eq!(r.rows[0][1], Cell::Text("keymarket_reader".into()));
    assert_eq!(r.rows[0][2], Cell::Text("keymarket_reader".into()));

    // Bad SQL: the server's message.
    for (sql, needle) in [
        ("SELEC 1", "syntax error"),
        ("SELECT * FROM no_such_table", "does not exist"),
        ("SELECT 1; DELETE FROM trades", "multiple commands"),
        ("", "empty"),
    ] {
        match runner.run(sql).await {
            Err(SqlError::Invalid(m)) => assert!(m.contains(needle), "{sql}: {m}"),
            other => panic!("{sql}: {other:?}"),
        }
    }

    // Runaways: stopped by statement_timeout.
    for sql in [
        "SELECT count(*) FROM generate_series(1, 1000000000000)",
        "SELECT count(*) FROM trades a, trades b, trades c, trades d",
        "SELECT pg_sleep(30)",
    ] {
        match runner.run(sql).await {
            Err(SqlError::TimedOut(limit)) => assert_eq!(limit, Duration::from_millis(300)),
            other => panic!("{sql}: {other:?}"),
        }
    }
    assert_eq!(
        runner.run("SELECT 1 AS one").await.unwrap().rows,
        [vec![Cell::Int(1)]]
    );

    // The endpoint over a real socket: the count equals the overview's, as JSON and as CSV.
    let base = serve_state(AppState::new(store.reader()).with_sql(SqlLimits::default())).await;
    let client = reqwest::Client::new();
    let post = |accept: &'static str| {
        client
            .post(format!("{base}/v1/sql"))
            .header("content-type", "application/json")
            .header("accept", accept)
            .body(
                json!({"sql": "SELECT count(*) AS n FROM trades WHERE share_amount > 0"})
                    .to_string(),
            )
            .send()
    };
    let resp = post("application/json").await.unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    let overview: Value = serde_json::from_str(
        &reqwest::get(format!("{base}/v1/overview"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        body["rows"][0][0], overview["trades"],
        "{body} vs {overview}"
    );
    let csv = post("text/csv").await.unwrap().text().await.unwrap();
    assert_eq!(csv, format!("n\n{}\n", overview["trades"]));
}

/// A Dune query's table, `social_trades`, is a view over the indexed trades with the same rows
/// and values as `GET /v1/export/trades.csv`: on PostgreSQL exact (NUMERIC ETH, timestamps as
/// UTC text), on SQLite with the ETH amounts as doubles (as on Dune). A Dune-style aggregate
/// (`date_trunc` on PostgreSQL) runs through `POST /v1/sql` and equals the daily series.
#[tokio::test(flavor = "multi_thread")]
async fn social_trades_view_equals_the_export_on_sqlite_and_postgres() {
    use rust_decimal::Decimal;
    let chain = Chain::new().await;
    chain.trade(250, 23, 40, 30 * 3600).await;
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "social_view").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();
        let base = serve_state(AppState::new(store.reader()).with_sql(SqlLimits::default())).await;
        let client = reqwest::Client::new();
        let sql = |q: &'static str| {
            client
                .post(format!("{base}/v1/sql"))
                .header("accept", "text/csv")
                .json(&json!({ "sql": q }))
                .send()
        };
        let resp = sql("SELECT * FROM social_trades ORDER BY block_number, evt_index")
            .await
            .unwrap();
        assert_eq!(resp.status(), 200, "{kind:?}");
        let view = resp.text().await.unwrap();
        let export = reqwest::get(format!("{base}/v1/export/trades.csv"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let (view, export): (Vec<&str>, Vec<&str>) =
            (view.lines().collect(), export.lines().collect());
        assert_eq!(view[0], export[0], "{kind:?}: the columns of social.trades");
        assert_eq!(view.len(), export.len(), "{kind:?}: one row per trade");
        assert!(view.len() > 200);
        let header: Vec<&str> = export[0].split(',').collect();
        for (v, e) in view[1..].iter().zip(&export[1..]) {
            for ((name, v), e) in header.iter().zip(v.split(',')).zip(e.split(',')) {
                if name.ends_with("_amount") || *name == "amount_original" {
                    let exact: Decimal = e.parse().unwrap();
                    match kind {
                        Db::Postgres => {
                            assert_eq!(v.parse::<Decimal>().unwrap(), exact, "{kind:?} {name}")
                        }
                        Db::Sqlite => {
                            let (v, exact) = (
                                v.parse::<f64>().unwrap(),
                                exact.to_string().parse::<f64>().unwrap(),
                            );
                            assert!(
                                (v - exact).abs() <= exact.abs() * 1e-12,
                                "{kind:?} {name}: {v} vs {exact}"
                            );
                        }
                    }
                } else {
                    assert_eq!(v, e, "{kind:?} {name}");
                }
            }
        }

        // The per-day tables with dates: the same date both dialects, the day's own.
        let dated = sql(
            "SELECT s.date, s.day, s.trades, (SELECT count(*) FROM subject_daily_dated d \
             WHERE d.date = s.date) AS subjects, (SELECT count(*) FROM daily_traders_dated t \
             WHERE t.date = s.date) AS traders FROM stats_daily_dated s ORDER BY s.day",
        )
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
        let rows: Vec<&str> = dated.lines().collect();
        assert_eq!(rows[0], "date,day,trades,subjects,traders", "{kind:?}");
        assert!(rows.len() > 2, "{kind:?}: {dated}");
        for row in &rows[1..] {
            let f: Vec<&str> = row.split(',').collect();
            let day: i64 = f[1].parse().unwrap();
            assert_eq!(crate::api::day_number(f[0]), day, "{kind:?}: {row}");
            assert!(f[3].parse::<i64>().unwrap() > 0 && f[4].parse::<i64>().unwrap() > 0);
        }

        if kind == Db::Postgres {
            // Exact at any size: every amount has exactly 18 decimals (a division by 1e18 would
            // round amounts of 1 ETH or more to 16 significant digits).
            let inexact: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM social_trades WHERE scale(amount_original) <> 18 \
                 OR scale(subject_fee_amount) <> 18 OR scale(protocol_fee_amount) <> 18",
            )
            .fetch_one(store.pool())
            .await
            .unwrap();
            assert_eq!(inexact, 0);
        }

        // A Dune-style query: daily buy volume in ETH, grouped on the timestamp.
        let q = match kind {
            Db::Postgres => {
                "SELECT date_trunc('day', block_time) AS day, sum(amount_original) AS volume \
                 FROM social_trades WHERE trade_side = 'buy' GROUP BY 1 ORDER BY 1"
            }
            Db::Sqlite => {
                "SELECT date(block_time) AS day, sum(amount_original) AS volume \
                 FROM social_trades WHERE trade_side = 'buy' GROUP BY 1 ORDER BY 1"
            }
        };
        let dune = sql(q).await.unwrap().text().await.unwrap();
        let daily: Value = reqwest::get(format!("{base}/v1/daily"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let want: Vec<(String, Decimal)> = daily["days"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|d| d["buys"].as_i64().unwrap() > 0)
            .map(|d| {
                let date = d["date"].as_str().unwrap().to_string();
                let volume: Decimal = d["buyVolume"]["eth"].as_str().unwrap().parse().unwrap();
                (date, volume)
            })
            .collect();
        let got: Vec<(String, Decimal)> = dune
            .lines()
            .skip(1)
            .map(|l| {
                let (day, volume) = l.split_once(',').unwrap();
                let day = match kind {
                    Db::Postgres => day.strip_suffix(" 00:00:00").unwrap().to_string(),
                    Db::Sqlite => day.to_string(),
                };
                (day, volume.parse::<Decimal>().unwrap())
            })
            .collect();
        assert_eq!(got.len(), want.len(), "{kind:?}: {dune}");
        assert!(want.len() >= 2, "the trades span days");
        for ((gd, gv), (wd, wv)) in got.iter().zip(&want) {
            assert_eq!(gd, wd, "{kind:?}");
            let diff = (*gv - *wv).abs();
            match kind {
                Db::Postgres => assert_eq!(gv, wv, "{kind:?} {gd}"),
                Db::Sqlite => assert!(
                    diff <= *wv * Decimal::new(1, 12),
                    "{kind:?} {gd}: {gv} vs {wv}"
                ),
            }
        }
    }
}

/// A `keymarket serve --sql` process answering the worst queries an analyst found (1 GB of hex
/// over 10,000 rows, one 200 MB value) on SQLite: both refused, and the process's peak resident
/// memory grows by less than the 16 MiB answer budget plus 50 MB (read from /proc, a bound).
#[tokio::test(flavor = "multi_thread")]
async fn a_serve_process_stays_within_the_sql_answer_budget() {
    use std::process::Stdio;
    let url = fresh_db(Db::Sqlite, "sql_budget").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    store.ensure_chain(31337, Default::default()).await.unwrap();
    store
        .ensure_market(31337, Default::default(), 1)
        .await
        .unwrap();
    let (mut child, base) =
        crate::common::serve(&["--sql", "--database-url", &url], Stdio::null()).await;
    let pid = child.id().unwrap();
    let client = reqwest::Client::new();
    // Warm: the SQL pool opened, a small answer served.
    let warm = client
        .post(format!("{base}/v1/sql"))
        .json(&json!({"sql": "SELECT count(*) FROM trades"}))
        .send()
        .await
        .unwrap();
    assert_eq!(warm.status(), 200);
    let kib = |field: &str| -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap()
    };
    let before = kib("VmRSS:");
    for (sql, needle) in [
        (
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) \
             SELECT x, hex(zeroblob(50000)) FROM c",
            "16 MiB",
        ),
        ("SELECT hex(randomblob(100000000))", "per value"),
    ] {
        let response = client
            .post(format!("{base}/v1/sql"))
            .json(&json!({ "sql": sql }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 422, "{sql}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{message}");
    }
    let peak = kib("VmHWM:");
    let grew_mb = peak.saturating_sub(before) / 1024;
    println!("serve: resident {before} KiB before, peak {peak} KiB after ({grew_mb} MB more)");
    assert!(
        grew_mb < 16 + 50,
        "the worst queries took {grew_mb} MB more (peak {peak} KiB, before {before} KiB)"
    );
    child.kill().await.unwrap();
}

/// Two clients on two loopback addresses (127.0.0.2, 127.0.0.3) against a real server socket: the
/// first floods runaway queries, the second's `SELECT 1` is answered every time, and every 429
/// the flooder gets says when to retry.
#[tokio::test(flavor = "multi_thread")]
async fn one_clients_runaways_never_keep_another_client_waiting() {
    let url = fresh_db(Db::Sqlite, "sql_fair").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    let base = serve_state(AppState::new(store.reader()).with_sql(SqlLimits {
        time_limit: Duration::from_secs(10),
        ..SqlLimits::default()
    }))
    .await;
    let client = |ip: [u8; 4]| {
        reqwest::Client::builder()
            .local_address(std::net::IpAddr::from(ip))
            .build()
            .unwrap()
    };
    let (flooder, other) = (client([127, 0, 0, 2]), client([127, 0, 0, 3]));
    let runaway =
        "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c";
    let post = |c: &reqwest::Client, sql: &str| {
        c.post(format!("{base}/v1/sql"))
            .json(&json!({ "sql": sql }))
            .send()
    };
    let mut first = tokio::spawn(post(&flooder, runaway));
    // Running once the flooder's own cheap probe is refused (answered at once until then; should
    // the probe have held the client's place just as the runaway arrived, that one was refused
    // and is sent again).
    loop {
        let probe = post(&flooder, "SELECT 1").await.unwrap();
        if probe.status() == 429 {
            break;
        }
        assert_eq!(probe.status(), 200);
        if first.is_finished() {
            assert_eq!((&mut first).await.unwrap().unwrap().status(), 429);
            first = tokio::spawn(post(&flooder, runaway));
        }
    }
    // Its next runaways, while the first runs: refused at once with Retry-After, each time; the
    // other client's cheap query answered each time meanwhile.
    let mut refused = 0;
    for _ in 0..20 {
        let r = post(&flooder, runaway).await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers()["retry-after"], "10");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("per client"),
            "{body}"
        );
        refused += 1;
        let ok = post(&other, "SELECT 1 AS one").await.unwrap();
        assert_eq!(ok.status(), 200);
        let body: Value = ok.json().await.unwrap();
        assert_eq!(body["rows"], json!([[1]]));
    }
    assert_eq!(
        refused, 20,
        "the flooder was refused while its first query ran"
    );
    assert_eq!(first.await.unwrap().unwrap().status(), 422);
}
