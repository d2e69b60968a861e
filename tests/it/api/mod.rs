//! The HTTP API over real pieces: anvil + contract + simulated trades + indexer (SQLite and
//! PostgreSQL) + the axum server on a real socket, queried over HTTP. Numbers are checked against
//! an independent recomputation from the chain's logs, endpoint by endpoint in [`numbers`] over
//! the one market of [`fixture`]; the dashboard in a real Chromium, the rate limit and the
//! OpenAPI document here.

use keymarket_api::AppState;
use keymarket_indexer::StoreWriter;
use serde_json::Value;

use crate::{
    browser::BrowserScript,
    common::{Chain, Db, fresh_db},
};

mod fixture;
mod numbers;

pub(crate) async fn serve_state(state: AppState) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(keymarket_api::serve(
        listener,
        state,
        std::future::pending(),
    ));
    url
}

/// Days since 1970-01-01 of a `YYYY-MM-DD` date (the proleptic Gregorian calendar).
pub(crate) fn day_number(date: &str) -> i64 {
    let p: Vec<i64> = date.split('-').map(|x| x.parse().unwrap()).collect();
    let (y, m, d) = (if p[1] <= 2 { p[0] - 1 } else { p[0] }, p[1], p[2]);
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

pub(crate) async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    (
        status,
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: not JSON ({e}): {body}")),
    )
}

/// The dashboard in a real headless Chromium (tests/browser/dashboard.mjs): no console errors,
/// numbers equal to the API's, the window selector driving the charts, trade times, a subject
/// page, a trader page reached from a trade row, no link off the server (the SQL reference at
/// /docs/sql), a 390 px wide layout without horizontal overflow, live updates while new trades
/// are indexed, and screenshots (`KEYMARKET_SCREENSHOT`, default target/dashboard.png, and the
/// 390 px one beside it with -phone; docs/dashboard.png and docs/dashboard-phone.png are ones).
#[tokio::test(flavor = "multi_thread")]
async fn dashboard_in_chromium() {
    let chain = Chain::new().await;
    // Eight blocks 36 h apart: 12 days, so the cards' 7-day window differs from all time.
    chain.trade(800, 17, 100, 36 * 3600).await;
    let url = fresh_db(Db::Sqlite, "dashboard").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    let config = keymarket_indexer::IndexerConfig::default();
    let run = || keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config);
    run().await.unwrap();
    // With the SQL box's endpoint on, as under `keymarket up`.
    let base = serve_state(AppState::new(store.reader()).with_sql(Default::default())).await;

    let (status, html) = {
        let resp = reqwest::get(format!("{base}/")).await.unwrap();
        (resp.status().as_u16(), resp.text().await.unwrap())
    };
    assert_eq!(status, 200);
    assert!(html.contains("/assets/uplot.js"));

    let root = env!("CARGO_MANIFEST_DIR");
    let shot = std::env::var("KEYMARKET_SCREENSHOT")
        .unwrap_or_else(|_| format!("{root}/target/dashboard.png"));
    let phone_shot = shot
        .strip_suffix(".png")
        .map_or_else(|| format!("{shot}-phone.png"), |s| format!("{s}-phone.png"));
    let _ = std::fs::remove_file(&shot);
    let _ = std::fs::remove_file(&phone_shot);
    let mut browser = BrowserScript::start("dashboard.mjs", &[&format!("{base}/"), &shot]);
    let line = browser.line();
    assert!(line == "waiting-for-change", "browser script: {line:?}");
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 10_000,
        "a screenshot"
    );

    // New trades, indexed while the page is open: it must show them without a reload.
    chain.trade(150, 18, 50, 3600).await;
    run().await.unwrap();
    browser.send("go");
    let (success, report) = browser.finish();
    assert!(success, "dashboard test failed: {report}");
    let report: Value = serde_json::from_str(&report).unwrap();
    let (_, o) = get(&format!("{base}/v1/overview")).await;
    assert_eq!(report["liveTrades"], o["trades"]);
    assert!(report["charts"].as_u64().unwrap() >= 6);
    assert!(
        report["priceIndex"]["days"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(
        report["holdersChart"]["days"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert!(report["sqlBox"]["rows"].as_u64().unwrap() > 0, "{report}");
    assert!(
        report["analyst"]["cohorts"].as_u64().unwrap() > 0,
        "{report}"
    );
    // The 7-day window's charts hold fewer days than all time's.
    let days = &report["analyst"]["chartDays"];
    assert!(
        days["7d"]["chart-volume"].as_u64().unwrap()
            < days["all"]["chart-volume"].as_u64().unwrap(),
        "{report}"
    );
    assert!(
        report["traderPage"]["trades"].as_u64().unwrap() > 0,
        "{report}"
    );
    assert_eq!(report["docs"]["status"], 200, "{report}");
    for page in ["overview", "subject", "trader"] {
        assert!(
            report["narrowPages"][page].as_u64().unwrap() <= 390,
            "{report}"
        );
    }
    assert!(
        std::fs::metadata(&phone_shot).unwrap().len() > 10_000,
        "a 390 px screenshot"
    );
    // /docs/sql through the server: docs/sql.md, as the page's "tables and limits" link says.
    let resp = reqwest::get(format!("{base}/docs/sql")).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.text().await.unwrap().contains("SQL over HTTP"));
}

/// The per-client rate limit: past the burst, 429 with a JSON body and Retry-After; the bucket
/// refills.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_answers_429_with_json() {
    let url = fresh_db(Db::Sqlite, "ratelimit").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    let base = serve_state(AppState::new(store.reader()).with_rate_limit(1, 5)).await;
    let client = reqwest::Client::new();
    let mut statuses = Vec::new();
    let mut limited = None;
    for _ in 0..12 {
        let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
        statuses.push(resp.status().as_u16());
        if resp.status() == 429 && limited.is_none() {
            let retry = resp.headers()["retry-after"].to_str().unwrap().to_string();
            let body: Value = resp.json().await.unwrap();
            limited = Some((retry, body));
        }
    }
    // A burst of 5, plus at most a refill or two if the machine is slow.
    let ok = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=7).contains(&ok), "a burst of 5: {statuses:?}");
    assert!(statuses[..5].iter().all(|s| *s == 200), "{statuses:?}");
    let (retry, body) = limited.expect("429s after the burst");
    assert!(retry.parse::<u64>().unwrap() >= 1);
    assert_eq!(body["error"]["status"], 429);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("rate limit")
    );
    tokio::time::sleep(std::time::Duration::from_millis(2100)).await;
    let resp = client.get(format!("{base}/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200, "refilled");
}

/// The API against its own OpenAPI document (`/openapi.json`, generated by utoipa): schemathesis
/// (PyPI, installed by scripts/setup.sh into .keymarket/venv) generates valid and invalid requests
/// for every operation; no response may be a 5xx, and every response must match its documented
/// status, content type and schema. Runs on SQLite and PostgreSQL.
#[tokio::test(flavor = "multi_thread")]
async fn openapi_document_holds_under_schemathesis() {
    let chain = Chain::new().await;
    chain.trade(400, 23, 100, 8 * 3600).await;
    let root = env!("CARGO_MANIFEST_DIR");
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "openapi").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();
        // SQL on, so that its answers are checked against the document too.
        let base = serve_state(AppState::new(store.reader()).with_sql(Default::default())).await;
        let (status, doc) = get(&format!("{base}/openapi.json")).await;
        assert_eq!(status, 200);
        let paths: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
        for p in [
            "/healthz",
            "/v1/markets",
            "/v1/overview",
            "/v1/daily",
            "/v1/concentration",
            "/v1/retention",
            "/v1/traders/netflow",
            "/v1/price-index",
            "/v1/subjects/top",
            "/v1/traders/top",
            "/v1/referrers/top",
            "/v1/subjects/{address}",
            "/v1/subjects/{address}/holders",
            "/v1/subjects/{address}/daily",
            "/v1/subjects/{address}/holders/daily",
            "/v1/traders/{address}",
            "/v1/traders/{address}/holdings",
            "/v1/trades",
            "/v1/export/trades.csv",
            "/v1/export/trades.parquet",
            "/v1/export/daily.csv",
            "/v1/export/daily.parquet",
            "/v1/sql",
        ] {
            assert!(paths.iter().any(|k| *k == p), "{p} documented: {paths:?}");
        }
        let out = tokio::process::Command::new(format!("{root}/.keymarket/venv/bin/schemathesis"))
            .args(["run", &format!("{base}/openapi.json")])
            .args([
                "--checks",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance",
            ])
            // One worker: with several, schemathesis' own code generation tripped over a CPython
            // 3.11 threading bug ("AST constructor recursion depth mismatch") once here.
            .args(["--max-examples", "40", "--seed", "7", "--workers", "1"])
            .args(["--phases", "examples,coverage,fuzzing", "--no-shrink"])
            .current_dir(std::env::temp_dir())
            .output()
            .await
            .expect("schemathesis runs (scripts/setup.sh installs it into .keymarket/venv)");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{kind:?}: schemathesis found problems:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // It really exercised every documented operation.
        let operations: usize = doc["paths"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| p.as_object().unwrap().len())
            .sum();
        assert!(operations >= 15, "{operations} operations");
        assert!(
            stdout.contains(&format!("{operations} selected / {operations} total")),
            "{stdout}"
        );
        println!("{kind:?}:\n{stdout}");
    }
}
