//! Dune-layout exports over the real pieces: trades simulated on anvil, indexed into SQLite and
//! PostgreSQL, exported by the CLI and by the API as CSV and Parquet, every row checked against
//! the chain's own `Trade` logs (exact ETH decimals back to wei), the daily series against
//! `/v1/daily` and the logs, and Dune queries (tests/dune) run unchanged by DuckDB over both
//! trade files.

use alloy::{primitives::U256, sol_types::SolEvent};
use keymarket_contracts::KeyMarket;
use keymarket_indexer::StoreWriter;

use crate::common::{Chain, Db, fresh_db};

/// An exact decimal ETH string in wei.
fn wei(eth: &str) -> U256 {
    let (int, frac) = eth.split_once('.').unwrap_or((eth, ""));
    assert!(frac.len() <= 18, "{eth}");
    format!("{int}{frac:0<18}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn trades_export_in_the_social_trades_layout_equals_the_chain() {
    let chain = Chain::new().await;
    chain.trade(600, 31, 100, 5 * 3600).await;
    let logs = chain.logs().await;
    let mut want: Vec<(String, u64, KeyMarket::Trade, u64)> = logs
        .iter()
        .filter(|l| l.topics()[0] == KeyMarket::Trade::SIGNATURE_HASH)
        .map(|l| {
            (
                format!("{:#x}", l.transaction_hash.unwrap()),
                l.log_index.unwrap(),
                KeyMarket::Trade::decode_log_data(l.data()).unwrap(),
                l.block_number.unwrap(),
            )
        })
        .collect();
    want.sort_by_key(|w| (w.3, w.1));
    assert!(want.len() > 500);

    let dir = std::env::temp_dir().join(format!("keymarket-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "export").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();

        // The CLI writes a file...
        let file = dir.join(format!("{kind:?}.csv"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
            .args(["export", "trades", "--database-url", &url, "--out"])
            .arg(&file)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli = std::fs::read_to_string(&file).unwrap();

        // ...and the API streams the same bytes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(keymarket_api::serve(
            listener,
            keymarket_api::AppState::new(store.reader()),
            std::future::pending(),
        ));
        let resp = reqwest::get(format!("{base}/v1/export/trades.csv"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let http = resp.text().await.unwrap();
        assert_eq!(http, cli, "{kind:?}: the CLI and the API export the same");
        let bad = reqwest::get(format!("{base}/v1/export/trades.csv?market=99"))
            .await
            .unwrap();
        assert_eq!(bad.status(), 404);
        server.abort();

        let mut lines = cli.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header, keymarket_api::export::SOCIAL_TRADES_COLUMNS);
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), want.len(), "{kind:?}: one row per Trade log");
        for (row, (tx, log_index, t, block)) in rows.iter().zip(&want) {
            assert_eq!(row[col("blockchain")], "anvil");
            assert_eq!(row[col("project")], "keymarket");
            assert_eq!(row[col("tx_hash")], tx);
            assert_eq!(row[col("evt_index")], log_index.to_string());
            assert_eq!(row[col("block_number")], block.to_string());
            assert_eq!(row[col("trader")], format!("{:#x}", t.trader));
            assert_eq!(row[col("subject")], format!("{:#x}", t.subject));
            assert_eq!(row[col("trade_side")], if t.isBuy { "buy" } else { "sell" });
            assert_eq!(row[col("share_amount")], t.shareAmount.to_string());
            assert_eq!(wei(row[col("amount_original")]), t.ethAmount);
            assert_eq!(wei(row[col("protocol_fee_amount")]), t.protocolEthAmount);
            assert_eq!(wei(row[col("subject_fee_amount")]), t.subjectEthAmount);
            assert_eq!(row[col("supply")], t.supply.to_string());
            assert_eq!(row[col("amount_usd")], "");
            assert_eq!(
                row[col("contract_address")],
                format!("{:#x}", chain.deployment.address)
            );
            assert!(row[col("block_month")].ends_with("-01"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (proleptic Gregorian), computed here rather
/// than by the code under test.
fn days_of(date: &str) -> i64 {
    let p: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    assert_eq!(p.len(), 3, "{date}");
    let (y, m, d) = (if p[1] <= 2 { p[0] - 1 } else { p[0] }, p[1], p[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468
}

/// Unix seconds of a `YYYY-MM-DD HH:MM:SS` UTC time.
fn secs_of(time: &str) -> i64 {
    let (date, clock) = time.split_once(' ').unwrap();
    let c: Vec<i64> = clock.split(':').map(|x| x.parse().unwrap()).collect();
    days_of(date) * 86_400 + c[0] * 3600 + c[1] * 60 + c[2]
}

/// A typed cell, as read from either file.
#[derive(Debug, PartialEq)]
enum Cell {
    Text(String),
    Int(i64),
    Wei(U256),
    Secs(i64),
    Day(i64),
    Null,
}

/// A Parquet file's rows as typed cells, with its column names.
fn parquet_cells(bytes: Vec<u8>) -> (Vec<String>, Vec<Vec<Cell>>) {
    use arrow_array::{
        Array, Date32Array, Decimal128Array, Int64Array, StringArray, TimestampMicrosecondArray,
    };
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    assert!(bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1"));
    let reader = ParquetRecordBatchReaderBuilder::try_new(axum::body::Bytes::from(bytes)).unwrap();
    let names = reader
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let mut rows = Vec::new();
    for b in reader.build().unwrap() {
        let b = b.unwrap();
        for r in 0..b.num_rows() {
            rows.push(
                b.columns()
                    .iter()
                    .map(|c| {
                        let any = c.as_any();
                        if c.is_null(r) {
                            Cell::Null
                        } else if let Some(a) = any.downcast_ref::<StringArray>() {
                            Cell::Text(a.value(r).to_string())
                        } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                            Cell::Int(a.value(r))
                        } else if let Some(a) = any.downcast_ref::<Decimal128Array>() {
                            assert_eq!((a.precision(), a.scale()), (38, 18));
                            Cell::Wei(U256::from(u128::try_from(a.value(r)).unwrap()))
                        } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
                            assert_eq!(a.timezone(), Some("UTC"));
                            assert_eq!(a.value(r) % 1_000_000, 0);
                            Cell::Secs(a.value(r) / 1_000_000)
                        } else if let Some(a) = any.downcast_ref::<Date32Array>() {
                            Cell::Day(a.value(r).into())
                        } else {
                            panic!("unexpected column type {:?}", c.data_type())
                        }
                    })
                    .collect(),
            );
        }
    }
    (names, rows)
}

/// A CSV file's rows as the cells the Parquet file should hold (types by column name).
fn csv_cells(csv: &str) -> (Vec<String>, Vec<Vec<Cell>>) {
    let mut lines = csv.lines();
    let names: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_string)
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .zip(&names)
                .map(|(v, name)| match name.as_str() {
                    _ if v.is_empty() => Cell::Null,
                    "block_time" => Cell::Secs(secs_of(v)),
                    "block_month" | "day" => Cell::Day(days_of(v)),
                    "amount_original" | "subject_fee_amount" | "protocol_fee_amount" => {
                        Cell::Wei(wei(v))
                    }
                    n if n.ends_with("_eth") => Cell::Wei(wei(v)),
                    "block_number" | "share_amount" | "supply" | "evt_index" | "trades"
                    | "buys" | "sells" | "active_traders" | "new_traders" | "returning_traders"
                    | "new_subjects" => Cell::Int(v.parse().unwrap()),
                    _ => Cell::Text(v.to_string()),
                })
                .collect()
        })
        .collect();
    (names, rows)
}

/// `keymarket` with `args`.
fn cli(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args(args)
        .env("NO_COLOR", "1")
        .output()
        .unwrap()
}

/// A Dune query of tests/dune run by DuckDB over an export (tests/dune/run_query.py): its rows.
fn duckdb(file: &std::path::Path, query: &str) -> Vec<serde_json::Value> {
    let root = env!("CARGO_MANIFEST_DIR");
    let out = std::process::Command::new(format!("{root}/.keymarket/venv/bin/python"))
        .arg(format!("{root}/tests/dune/run_query.py"))
        .arg(file)
        .arg(format!("{root}/tests/dune/{query}"))
        .output()
        .expect("python runs (scripts/setup.sh installs duckdb into .keymarket/venv)");
    assert!(
        out.status.success(),
        "{query} over {}: {}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// One UTC day recomputed from the chain's logs.
#[derive(Debug, Default, PartialEq)]
struct LogDay {
    trades: i64,
    buys: i64,
    sells: i64,
    buy_volume: U256,
    sell_volume: U256,
    protocol: U256,
    subject: U256,
    referral: U256,
    traders: std::collections::HashSet<alloy::primitives::Address>,
    new_traders: i64,
}

/// The Parquet exports equal the CSV ones row for row; the daily export (CSV and Parquet, CLI
/// and HTTP) equals /v1/daily, which equals a recomputation from the chain's logs; and Dune
/// queries over `social.trades` run unchanged in DuckDB over both trade files and give those
/// same numbers. On SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn parquet_and_daily_exports_agree_with_the_csv_the_api_the_logs_and_duckdb() {
    let chain = Chain::new().await;
    // 20 blocks 7 hours apart: six UTC days.
    chain.trade(500, 47, 25, 7 * 3600).await;
    let logs = chain.logs().await;
    let mut days: std::collections::BTreeMap<i64, LogDay> = Default::default();
    let mut seen = std::collections::HashSet::new();
    for l in &logs {
        let day = l.block_timestamp.unwrap() as i64 / 86_400;
        if l.topics()[0] == KeyMarket::ReferralFeePaid::SIGNATURE_HASH {
            let e = KeyMarket::ReferralFeePaid::decode_log_data(l.data()).unwrap();
            days.entry(day).or_default().referral += e.amount;
        }
        if l.topics()[0] != KeyMarket::Trade::SIGNATURE_HASH {
            continue;
        }
        let t = KeyMarket::Trade::decode_log_data(l.data()).unwrap();
        if t.shareAmount.is_zero() {
            continue;
        }
        let d = days.entry(day).or_default();
        d.trades += 1;
        if t.isBuy {
            d.buys += 1;
            d.buy_volume += t.ethAmount;
        } else {
            d.sells += 1;
            d.sell_volume += t.ethAmount;
        }
        d.protocol += t.protocolEthAmount;
        d.subject += t.subjectEthAmount;
        d.traders.insert(t.trader);
        if seen.insert(t.trader) {
            d.new_traders += 1;
        }
    }
    assert!(days.len() >= 5, "{} days", days.len());
    assert!(
        days.values()
            .any(|d| d.sells > 0 && d.traders.len() as i64 > d.new_traders)
    );

    let dir = std::env::temp_dir().join(format!("keymarket-export-pq-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "export_pq").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();
        let file = |name: &str| dir.join(format!("{kind:?}-{name}"));
        let run = |args: &[&str]| {
            let out = cli(&[&["export"][..], args, &["--database-url", url.as_str()][..]].concat());
            assert!(
                out.status.success(),
                "{kind:?} {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            out.stdout
        };
        let path = |name: &str| file(name).to_str().unwrap().to_string();
        // The format from --out's extension, and from --format.
        run(&["trades", "--out", &path("trades.csv")]);
        run(&["trades", "--out", &path("trades.parquet")]);
        run(&["daily", "--out", &path("daily.csv")]);
        run(&["daily", "--format", "parquet", "--out", &path("daily.pq")]);
        let piped = run(&["trades", "--format", "parquet", "--out", "-"]);
        let read = |name: &str| std::fs::read(file(name)).unwrap();
        let trades_csv = String::from_utf8(read("trades.csv")).unwrap();

        // Parquet equals the CSV row for row, typed.
        let (csv_names, csv_rows) = csv_cells(&trades_csv);
        let (pq_names, pq_rows) = parquet_cells(read("trades.parquet"));
        assert_eq!(pq_names, csv_names, "{kind:?}");
        assert_eq!(pq_names, keymarket_api::export::SOCIAL_TRADES_COLUMNS);
        assert_eq!(
            pq_rows.len(),
            days.values().map(|d| d.trades).sum::<i64>() as usize
        );
        assert_eq!(
            pq_rows, csv_rows,
            "{kind:?}: Parquet rows equal the CSV rows"
        );
        assert_eq!(parquet_cells(piped).1, csv_rows, "{kind:?}: to stdout");
        let usd = pq_names.iter().position(|n| n == "amount_usd").unwrap();
        assert!(pq_rows.iter().all(|r| r[usd] == Cell::Null));

        // The same over HTTP, with the download headers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(keymarket_api::serve(
            listener,
            keymarket_api::AppState::new(store.reader()),
            std::future::pending(),
        ));
        let fetch = async |path: &str, content_type: &str, ext: &str| {
            let resp = reqwest::get(format!("{base}{path}")).await.unwrap();
            assert_eq!(resp.status(), 200, "{path}");
            let h = |name: &str| resp.headers()[name].to_str().unwrap().to_string();
            assert!(h("content-type").starts_with(content_type), "{path}");
            let disposition = h("content-disposition");
            assert!(disposition.starts_with("attachment; filename=\"keymarket-"));
            assert!(disposition.ends_with(&format!(".{ext}\"")), "{disposition}");
            resp.bytes().await.unwrap().to_vec()
        };
        let parquet = "application/vnd.apache.parquet";
        let http = fetch("/v1/export/trades.parquet", parquet, "parquet").await;
        assert_eq!(parquet_cells(http).1, csv_rows, "{kind:?}: HTTP Parquet");
        let http = fetch("/v1/export/daily.csv", "text/csv", "csv").await;
        assert_eq!(http, read("daily.csv"), "{kind:?}: HTTP daily CSV");
        let http = fetch("/v1/export/daily.parquet", parquet, "parquet").await;
        let (daily_pq_names, daily_pq) = parquet_cells(http);
        assert_eq!(parquet_cells(read("daily.pq")).1, daily_pq);

        // The daily export equals /v1/daily, and /v1/daily the logs.
        let api: serde_json::Value = reqwest::get(format!("{base}/v1/daily"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        server.abort();
        let api_days = api["days"].as_array().unwrap();
        let daily_csv = String::from_utf8(read("daily.csv")).unwrap();
        let (names, daily_rows) = csv_cells(&daily_csv);
        assert_eq!(names, daily_pq_names);
        assert_eq!(daily_rows, daily_pq, "{kind:?}: daily Parquet = daily CSV");
        assert_eq!(daily_rows.len(), api_days.len());
        assert_eq!(api_days.len(), days.len());
        let col = |name: &str| names.iter().position(|n| n == name).unwrap();
        let amount = |x: &serde_json::Value| Cell::Wei(x["wei"].as_str().unwrap().parse().unwrap());
        let int = |x: &serde_json::Value| Cell::Int(x.as_i64().unwrap());
        for ((row, a), (day, d)) in daily_rows.iter().zip(api_days).zip(&days) {
            assert_eq!(
                row[col("day")],
                Cell::Day(days_of(a["date"].as_str().unwrap()))
            );
            assert_eq!(row[col("day")], Cell::Day(*day));
            for (c, field) in [
                ("trades", "trades"),
                ("buys", "buys"),
                ("sells", "sells"),
                ("active_traders", "activeTraders"),
                ("new_traders", "newTraders"),
                ("returning_traders", "returningTraders"),
                ("new_subjects", "newSubjects"),
            ] {
                assert_eq!(row[col(c)], int(&a[field]), "{kind:?} {c}: {a}");
            }
            for (c, field) in [
                ("buy_volume_eth", "buyVolume"),
                ("sell_volume_eth", "sellVolume"),
                ("protocol_revenue_eth", "protocolRevenue"),
                ("gross_protocol_fees_eth", "grossProtocolFees"),
                ("referral_payouts_eth", "referralPayouts"),
                ("subject_revenue_eth", "subjectRevenue"),
            ] {
                assert_eq!(row[col(c)], amount(&a[field]), "{kind:?} {c}: {a}");
            }
            // ...and the logs.
            let logs_row = [
                ("trades", Cell::Int(d.trades)),
                ("buys", Cell::Int(d.buys)),
                ("sells", Cell::Int(d.sells)),
                ("volume_eth", Cell::Wei(d.buy_volume + d.sell_volume)),
                ("buy_volume_eth", Cell::Wei(d.buy_volume)),
                ("sell_volume_eth", Cell::Wei(d.sell_volume)),
                ("protocol_revenue_eth", Cell::Wei(d.protocol - d.referral)),
                ("gross_protocol_fees_eth", Cell::Wei(d.protocol)),
                ("referral_payouts_eth", Cell::Wei(d.referral)),
                ("subject_revenue_eth", Cell::Wei(d.subject)),
                ("active_traders", Cell::Int(d.traders.len() as i64)),
                ("new_traders", Cell::Int(d.new_traders)),
                (
                    "returning_traders",
                    Cell::Int(d.traders.len() as i64 - d.new_traders),
                ),
            ];
            for (c, want) in logs_row {
                assert_eq!(row[col(c)], want, "{kind:?} day {day} {c}");
            }
        }

        // Dune queries over social.trades, unchanged, in DuckDB over both files: the logs' and
        // the API's numbers.
        let day_of = |v: &serde_json::Value| days_of(&v["day"].as_str().unwrap()[..10]);
        let s = |v: &serde_json::Value, k: &str| v[k].as_str().unwrap().to_string();
        let by_side = duckdb(&file("trades.csv"), "volume_by_side.sql");
        assert_eq!(
            by_side,
            duckdb(&file("trades.parquet"), "volume_by_side.sql"),
            "{kind:?}: DuckDB answers the same over CSV and Parquet"
        );
        let users = duckdb(&file("trades.csv"), "daily_users.sql");
        assert_eq!(users, duckdb(&file("trades.parquet"), "daily_users.sql"));
        let mut from_duckdb: std::collections::BTreeMap<i64, LogDay> = Default::default();
        for r in &by_side {
            let d = from_duckdb.entry(day_of(r)).or_default();
            let (n, volume) = (s(r, "trades").parse::<i64>().unwrap(), wei(&s(r, "volume")));
            match s(r, "trade_side").as_str() {
                "buy" => (d.buys, d.buy_volume) = (n, volume),
                "sell" => (d.sells, d.sell_volume) = (n, volume),
                other => panic!("trade_side {other}"),
            }
            d.trades += n;
            d.protocol += wei(&s(r, "protocol_fees"));
            d.subject += wei(&s(r, "subject_fees"));
        }
        assert_eq!(from_duckdb.len(), days.len());
        for ((day, q), (want_day, d)) in from_duckdb.iter().zip(&days) {
            assert_eq!(day, want_day);
            assert_eq!(
                (q.trades, q.buys, q.sells, q.buy_volume, q.sell_volume),
                (d.trades, d.buys, d.sells, d.buy_volume, d.sell_volume),
                "{kind:?} day {day}"
            );
            assert_eq!(
                (q.protocol, q.subject),
                (d.protocol, d.subject),
                "{kind:?} day {day}"
            );
        }
        assert_eq!(users.len(), api_days.len());
        for (u, a) in users.iter().zip(api_days) {
            assert_eq!(day_of(u), days_of(a["date"].as_str().unwrap()));
            for (k, field) in [
                ("active_traders", "activeTraders"),
                ("new_traders", "newTraders"),
                ("returning_traders", "returningTraders"),
            ] {
                assert_eq!(s(u, k), a[field].to_string(), "{kind:?} {k}: {a}");
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `keymarket export`'s flags: a bad one is refused with a message naming it and a non-zero
/// exit, and nothing is written.
#[tokio::test(flavor = "multi_thread")]
async fn export_flags_are_checked() {
    let dir = std::env::temp_dir().join(format!("keymarket-export-flags-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = format!("sqlite:{}", dir.join("empty.db").display());
    let out = dir.join("x.parquet");
    let out = out.to_str().unwrap();
    // A database that does not exist is named, and not created: export only reads.
    let missing = dir.join("missing.db");
    let o = cli(&[
        "export",
        "trades",
        "--out",
        out,
        "--database-url",
        missing.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && stderr.contains(&format!("no database at {}", missing.display())),
        "{stderr}"
    );
    assert!(
        !missing.exists(),
        "a read-only command created {}",
        missing.display()
    );
    // An empty one (a schema, no market yet).
    keymarket_indexer::StoreWriter::connect(&db).await.unwrap();
    for (args, needle) in [
        (vec!["trades", "--format", "xlsx"], "invalid value 'xlsx'"),
        (
            vec!["daily", "--format", "json"],
            "[possible values: csv, parquet]",
        ),
        (
            vec!["trades", "--format", "csv", "--out", out],
            "--format csv contradicts --out",
        ),
        (vec!["daily", "--out", out], "holds no market yet"),
        (vec!["trades", "--out", out, "--market", "7"], "no market 7"),
        (vec!["weekly"], "unrecognized subcommand 'weekly'"),
    ] {
        let o = cli(&[&["export"][..], &args, &["--database-url", db.as_str()][..]].concat());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!std::path::Path::new(out).exists(), "{args:?} left {out}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
