//! The indexer over real pieces: anvil with the real contract and simulated trades, a SQLite
//! file and the machine's PostgreSQL. Every database is compared row for row with an independent
//! recomputation from the chain's logs.

use std::time::{Duration, Instant};

use alloy::{
    primitives::U256,
    providers::{Provider, ext::AnvilApi},
    rpc::types::anvil::ReorgOptions,
};
use keymarket_contracts::KeyMarket;
use keymarket_indexer::{FetchConfig, IndexerConfig, MarketSpec, StoreWriter};

use crate::common::{Chain, Db, assert_same, dump, fresh_db, recompute};

/// Small ranges, so a few thousand trades make many batches.
fn small_batches() -> IndexerConfig {
    IndexerConfig {
        fetch: FetchConfig {
            initial_range: 2,
            max_range: 4,
            concurrency: 3,
            ..FetchConfig::default()
        },
        window: 16,
        poll_interval: Duration::from_millis(50),
        ..IndexerConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn index_equals_recomputation_on_sqlite_and_postgres() {
    let chain = Chain::new().await;
    // 3,000 trades over ~4 simulated days, 200 per block.
    chain.trade(3_000, 11, 200, 6 * 3600).await;
    let want = recompute(chain.deployment.chain_id, &chain.logs().await);
    assert!(want["stats_daily"].len() >= 3, "several UTC days");

    let mut dumps = Vec::new();
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "recompute").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        // As a long backfill: secondary indexes dropped, then built again at the head.
        let mut config = IndexerConfig {
            bulk_min_trades: 0,
            ..small_batches()
        };
        // Ranges of 2 blocks whatever the timing: many batches.
        config.fetch.max_range = 2;
        let report = keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        assert!(report.batches > 5, "many batches: {}", report.batches);
        let indexes: Vec<(String,)> = sqlx::query_as(match kind {
            Db::Sqlite => "SELECT name FROM sqlite_master WHERE type = 'index' AND name LIKE 'trades_%' ORDER BY name",
            Db::Postgres => "SELECT CAST(indexname AS TEXT) FROM pg_indexes WHERE indexname LIKE 'trades_%' ORDER BY indexname",
        })
        .fetch_all(store.pool())
        .await
        .unwrap();
        assert_eq!(
            indexes.iter().map(|i| i.0.as_str()).collect::<Vec<_>>(),
            [
                "trades_identity",
                "trades_market_block",
                "trades_market_subject",
                "trades_market_time",
                "trades_market_trader"
            ],
            "{kind:?}: secondary indexes rebuilt after the backfill"
        );
        let got = dump(&url, &chain).await;
        assert_same(&format!("{kind:?}"), &got, &want);
        dumps.push(got);

        // The contract's own views agree with the database.
        let market = KeyMarket::new(chain.deployment.address, &chain.provider);
        let pool = store.pool();
        let rows: Vec<(String, i64)> = sqlx::query_as("SELECT subject, supply FROM subjects")
            .fetch_all(pool)
            .await
            .unwrap();
        for (subject, supply) in rows {
            let onchain = market
                .sharesSupply(subject.parse().unwrap())
                .call()
                .await
                .unwrap();
            assert_eq!(onchain, U256::from(supply as u64), "supply of {subject}");
        }
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT subject, trader, balance FROM holdings")
                .fetch_all(pool)
                .await
                .unwrap();
        assert!(rows.len() > 20);
        for (subject, trader, balance) in rows {
            let onchain = market
                .sharesBalance(subject.parse().unwrap(), trader.parse().unwrap())
                .call()
                .await
                .unwrap();
            assert_eq!(
                onchain,
                U256::from(balance as u64),
                "balance of {trader} in {subject}"
            );
        }
        assert_eq!(
            store.raw_trades(1).await.unwrap() as usize,
            want["trades"].len()
        );
        // All-time distinct counts (sums of daily first appearances) equal the table counts.
        let totals = store.totals(1, None).await.unwrap();
        assert_eq!(totals.traders as usize, want["traders"].len());
        assert_eq!(totals.subjects as usize, want["subjects"].len());
    }
    assert_eq!(
        dumps[0], dumps[1],
        "SQLite and PostgreSQL agree row for row"
    );
}

/// Waits until the store has indexed the chain's head.
async fn caught_up(chain: &Chain, store: &StoreWriter, market_id: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let head = chain.provider.get_block_number().await.unwrap();
        if store.next_block(market_id).await.unwrap() == head + 1 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "indexer did not catch up with block {head}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn following_repairs_reorgs_up_to_the_window() {
    let chain = Chain::new().await;
    chain.trade(600, 21, 20, 600).await;
    let config = IndexerConfig {
        follow: true,
        ..small_batches()
    };
    let mut followers = Vec::new();
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "reorg").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        let market = keymarket_indexer::prepare(&chain.provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        let (provider, store2, spec, config) = (
            chain.provider.clone(),
            store.clone(),
            chain.spec(),
            config.clone(),
        );
        let task =
            tokio::spawn(
                async move { keymarket_indexer::run(provider, &store2, spec, &config).await },
            );
        followers.push((kind, url, store, market.id, task));
    }
    for (i, depth) in [1u64, 2, 3, 5, 8, 13, 16].into_iter().enumerate() {
        for (_, _, store, id, _) in &followers {
            caught_up(&chain, store, *id).await;
        }
        // The new branch carries trades of its own: the subject buys its own keys.
        chain.reorg_with_a_buy(depth, 1 + i as u64).await;
        chain.trade(100, 100 + i as u64, 25, 600).await;
    }
    let want = recompute(chain.deployment.chain_id, &chain.logs().await);
    for (kind, url, store, id, task) in followers {
        caught_up(&chain, &store, id).await;
        task.abort();
        assert_same(
            &format!("{kind:?} after reorgs"),
            &dump(&url, &chain).await,
            &want,
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reorg_deeper_than_the_window_stops_without_touching_data() {
    let chain = Chain::new().await;
    chain.trade(400, 31, 20, 600).await;
    let url = fresh_db(Db::Sqlite, "deep").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    let config = IndexerConfig {
        window: 4,
        ..small_batches()
    };
    keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
        .await
        .unwrap();
    let before = dump(&url, &chain).await;
    chain
        .provider
        .anvil_reorg(ReorgOptions {
            depth: 12,
            tx_block_pairs: vec![],
        })
        .await
        .unwrap();
    let err = keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
        .await
        .unwrap_err();
    assert!(
        matches!(err, keymarket_indexer::Error::ReorgTooDeep { .. }),
        "{err}"
    );
    assert!(
        err.to_string().contains("deeper than the kept window"),
        "{err}"
    );
    assert_eq!(dump(&url, &chain).await, before, "nothing written");
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_input_gets_clear_errors_and_touches_nothing() {
    use keymarket_indexer::{Error, store::Error as StoreError};
    let chain = Chain::new().await;
    chain.trade(50, 41, 25, 600).await;
    let url = fresh_db(Db::Sqlite, "bad").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    let config = small_batches();

    // Unreachable RPC.
    let dead = alloy::providers::ProviderBuilder::new()
        .connect_http("http://127.0.0.1:1".parse().unwrap());
    let err = keymarket_indexer::run(&dead, &store, chain.spec(), &config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot reach the RPC"), "{err}");

    // A deployment from another chain.
    let wrong = MarketSpec {
        chain_id: Some(1),
        ..chain.spec()
    };
    let err = keymarket_indexer::run(&chain.provider, &store, wrong, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::WrongChain(_)), "{err}");

    // An address with no code.
    let nocode = MarketSpec {
        address: alloy::primitives::Address::repeat_byte(0x42),
        ..chain.spec()
    };
    let err = keymarket_indexer::run(&chain.provider, &store, nocode, &config)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoCode { .. }), "{err}");

    // A start block beyond the head.
    let future = MarketSpec {
        start_block: 1_000_000,
        ..chain.spec()
    };
    let err = keymarket_indexer::run(&chain.provider, &store, future, &config)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("beyond the chain's head"), "{err}");

    // Nothing was registered by the refused runs.
    let markets: (i64,) = sqlx::query_as("SELECT COUNT(*) FROM markets")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(markets.0, 0);

    // The same database pointed at a different chain with the same id (a restarted anvil).
    keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
        .await
        .unwrap();
    let before = dump(&url, &chain).await;
    let other = Chain::new().await;
    let err = keymarket_indexer::run(&other.provider, &store, other.spec(), &config)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Store(StoreError::WrongChain(_)))
            && err.to_string().contains("genesis"),
        "{err}"
    );
    assert_eq!(dump(&url, &chain).await, before);

    // A database written by an incompatible schema.
    let foreign = fresh_db(Db::Sqlite, "foreign").await;
    {
        sqlx::any::install_default_drivers();
        let pool = sqlx::AnyPool::connect(&format!("{foreign}?mode=rwc"))
            .await
            .unwrap();
        sqlx::query("CREATE TABLE trades (id INTEGER PRIMARY KEY, what TEXT)")
            .execute(&pool)
            .await
            .unwrap();
        pool.close().await;
    }
    let err = StoreWriter::connect(&foreign).await.unwrap_err();
    assert!(matches!(err, StoreError::IncompatibleSchema(_)), "{err}");

    // An unsupported database URL.
    let err = StoreWriter::connect("mysql://root@127.0.0.1/test")
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("unsupported database URL"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn indexes_over_websocket_too() {
    let chain = Chain::new().await;
    chain.trade(400, 81, 40, 3600).await;
    let ws = alloy::providers::ProviderBuilder::new()
        .connect(&chain.anvil.ws_endpoint())
        .await
        .unwrap();
    let url = fresh_db(Db::Sqlite, "ws").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    keymarket_indexer::run(&ws, &store, chain.spec(), &small_batches())
        .await
        .unwrap();
    assert_same(
        "over ws://",
        &dump(&url, &chain).await,
        &recompute(chain.deployment.chain_id, &chain.logs().await),
    );
}

/// A rollback of hundreds of blocks (as the repair of a trade stored twice does), then indexing
/// again, ends where an uninterrupted run does: a rollback undoes exactly what the trades did.
#[tokio::test(flavor = "multi_thread")]
async fn a_deep_rollback_then_indexing_again_equals_recomputation() {
    let chain = Chain::new().await;
    chain.trade(2_000, 41, 15, 900).await;
    let config = small_batches();
    let want = recompute(chain.deployment.chain_id, &chain.logs().await);
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "deep_rollback").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        let market = keymarket_indexer::prepare(&chain.provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        let first = chain.deployment.deploy_block + 10;
        store.rollback(&market, first).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        assert_same(
            &format!("{kind:?} after a rollback to block {first}"),
            &dump(&url, &chain).await,
            &want,
        );
    }
}

/// `keymarket index --metrics-listen`: a standalone indexer serves its own fault counters, and
/// stops serving them when it stops. While it runs, a second `keymarket index` on its SQLite file
/// is refused in words, naming the first one's process.
#[tokio::test(flavor = "multi_thread")]
async fn a_standalone_indexer_serves_its_own_metrics_and_holds_its_file() {
    use std::io::BufRead;
    let chain = Chain::new().await;
    chain.trade(60, 11, 20, 60).await;
    let dir = std::env::temp_dir().join(format!(
        "keymarket-metrics-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let deployment = dir.join("deployment.json");
    chain.deployment.write(&deployment).unwrap();
    let db = fresh_db(Db::Sqlite, "metrics").await;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args([
            "index",
            "--follow",
            "--metrics-listen",
            "127.0.0.1:0",
            "--rpc-url",
        ])
        .arg(chain.rpc_url())
        .arg("--deployment")
        .arg(&deployment)
        .args(["--database-url", &db])
        .env("NO_COLOR", "1")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let url = loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the metrics address is said"
        );
        if let Some(rest) = line.strip_prefix("metrics on ") {
            break rest.trim().to_string();
        }
    };
    let text = reqwest::get(&url).await.unwrap().text().await.unwrap();
    for fault in [
        "transient",
        "wrong_block_times",
        "curve_break",
        "curve_unverified",
        "second_provider_correction",
    ] {
        assert!(
            text.contains(&format!(
                "keymarket_indexer_retries_total{{fault=\"{fault}\"}} 0"
            )),
            "{fault} in {text}"
        );
    }
    let second = std::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args(["index", "--rpc-url"])
        .arg(chain.rpc_url())
        .arg("--deployment")
        .arg(&deployment)
        .args(["--database-url", &db])
        .env("NO_COLOR", "1")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success(),
        "a second indexer is refused: {said}"
    );
    assert!(
        said.contains(&format!(
            "is already being indexed by process {}",
            child.id()
        )),
        "{said}"
    );
    std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(child.wait().unwrap().success());
    assert!(reqwest::get(&url).await.is_err(), "no metrics once stopped");
}
