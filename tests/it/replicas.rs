//! `keymarket serve` as read-only replicas of one PostgreSQL database: it refuses a database
//! without the schema in words (it never migrates), two of them answer the same numbers — one
//! connecting as a role that may only read, which a write would fail under — and `/healthz` and
//! `/metrics` show which indexer process owns the market and its lag. A second `index` without
//! `--follow` names the owner instead of waiting.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use serde_json::Value;
use tokio::process::Child;

use crate::{
    common::{Chain, Db, fresh_db, keymarket_fails, serve},
    standby::Indexer,
};

/// A running `keymarket serve` on a free port.
struct Serve {
    _child: Child,
    base: String,
}

impl Serve {
    async fn start(url: &str) -> Self {
        let args = ["--rate-limit", "0", "--database-url", url];
        let (child, base) = serve(&args, Stdio::null()).await;
        Self {
            _child: child,
            base,
        }
    }

    async fn get(&self, path: &str) -> Value {
        let r = reqwest::get(format!("{}{path}", self.base)).await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn text(&self, path: &str) -> String {
        reqwest::get(format!("{}{path}", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// Runs `sql` on the database at `url`.
async fn execute(url: &str, sql: &str) {
    let pool = sqlx::PgPool::connect(url).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_replicas_never_write_and_answer_the_same_numbers() {
    let chain = Chain::new().await;
    chain.trade(600, 41, 20, 3600).await;
    let url = fresh_db(Db::Postgres, "replicas").await;

    // An empty database: refused in words, and left untouched (no migrations table).
    let stderr = keymarket_fails(&["serve", "--database-url", &url]).await;
    assert!(
        stderr.contains("0 of this keymarket's") && stderr.contains("run `keymarket index`"),
        "{stderr}"
    );
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = 'public'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(tables, 0, "serve created nothing");

    let markets = [&chain.deployment];
    let mut indexer = Indexer::spawn(&chain.rpc_url(), &url, &markets);
    let head = alloy::providers::Provider::get_block_number(&chain.provider)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let next: Option<i64> = sqlx::query_scalar("SELECT next_block FROM markets")
            .fetch_optional(&pool)
            .await
            .ok()
            .flatten();
        if next.is_some_and(|n| n as u64 > head) {
            break;
        }
        assert!(Instant::now() < deadline, "indexed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A second indexer without --follow does not wait for the market: it says who has it.
    let market = format!(
        "{}@{}",
        chain.deployment.address, chain.deployment.deploy_block
    );
    let rpc = chain.rpc_url();
    let stderr = keymarket_fails(&[
        "index",
        "--quiet",
        "--rpc-url",
        &rpc,
        "--database-url",
        &url,
        "--market",
        &market,
    ])
    .await;
    assert!(
        stderr.contains("is being indexed by another process")
            && stderr.contains(&format!(":{}:", indexer.pid))
            && stderr.contains("--follow"),
        "{stderr}"
    );

    // A role that may only read.
    let role = format!("km_reader_{}", std::process::id());
    let db = url.rsplit_once('/').unwrap().1;
    execute(
        &url,
        &format!(
            "DROP ROLE IF EXISTS {role}; CREATE ROLE {role} LOGIN; \
             GRANT CONNECT ON DATABASE {db} TO {role}; GRANT USAGE ON SCHEMA public TO {role}; \
             GRANT SELECT ON ALL TABLES IN SCHEMA public TO {role};"
        ),
    )
    .await;
    let reader_url = url.replacen("postgres@", &format!("{role}@"), 1);
    let (a, b) = (Serve::start(&url).await, Serve::start(&reader_url).await);

    // Both show the owner (this indexer) and the lag, from the lease table.
    for serve in [&a, &b] {
        let health = serve.get("/healthz").await;
        let m = &health["markets"][0];
        let owner = m["owner"]["name"].as_str().unwrap();
        assert_eq!(
            owner.split(':').nth(1),
            Some(indexer.pid.to_string().as_str()),
            "{health}"
        );
        assert_eq!(m["owner"]["live"], true, "{health}");
        assert_eq!(m["lagBlocks"], 0, "{health}");
        let metrics = serve.text("/metrics").await;
        assert!(
            metrics.contains(&format!(
                "keymarket_market_owner{{market=\"1\",owner=\"{owner}\"}} 1"
            )),
            "{metrics}"
        );
        assert!(metrics.contains("keymarket_lag_blocks{market=\"1\"} 0"));
    }
    indexer.assert_running();
    indexer.kill().await;

    // The same numbers from both.
    for path in [
        "/v1/overview",
        "/v1/markets",
        "/v1/daily?market=1",
        "/v1/subjects/top?market=1",
        "/v1/traders/top?market=1",
        "/v1/trades?market=1&limit=50",
    ] {
        let (x, y) = (a.get(path).await, b.get(path).await);
        assert_eq!(x, y, "{path}");
        assert!(x.to_string().len() > 100, "{path}: {x}");
    }
    drop((a, b));
    execute(&url, &format!("DROP OWNED BY {role}; DROP ROLE {role};")).await;
}
