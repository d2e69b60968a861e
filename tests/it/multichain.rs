//! Several chains in one process: `keymarket index --config FILE` on two anvils with distinct
//! chain ids, one behind the RPC proxy. When that one's provider stalls (every request accepted,
//! never answered), the other chain keeps its head latency; healed, the stalled one catches up;
//! both end equal to the recomputation from their chains.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use alloy::providers::Provider;
use tokio::process::Command;

use crate::{
    common::{Chain, Db, anvil_at, assert_same, dump, fresh_db, keymarket_fails, recompute},
    proxy::{Mode, Proxy},
};

/// A guard against a hang, not a timing assertion.
const HANG: Duration = Duration::from_secs(60);

/// The market's checkpoint in the SQLite file at `url` (read-only).
async fn next_block(url: &str, chain: &Chain) -> u64 {
    // Not created yet: nothing indexed.
    let Ok(pool) = sqlx::SqlitePool::connect(&format!("{url}?mode=ro")).await else {
        return 0;
    };
    let next: Option<i64> =
        sqlx::query_scalar("SELECT next_block FROM markets WHERE chain_id = ? AND address = ?")
            .bind(chain.deployment.chain_id as i64)
            .bind(alloy::hex::encode_prefixed(chain.deployment.address))
            .fetch_optional(&pool)
            .await
            .unwrap_or(None);
    pool.close().await;
    next.unwrap_or(0) as u64
}

/// Waits until the market is indexed up to `block`; returns how long that took from `since`.
async fn wait_indexed(url: &str, chain: &Chain, block: u64, since: Instant) -> Duration {
    while next_block(url, chain).await <= block {
        assert!(
            since.elapsed() < HANG,
            "chain {} not indexed to {block}",
            chain.deployment.chain_id
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    since.elapsed()
}

/// One new block with trades on `chain`, and how long until the indexer has it.
async fn head_latency(url: &str, chain: &Chain, seed: u64) -> Duration {
    chain.trade(5, seed, 5, 12).await;
    let block = chain.provider.get_block_number().await.unwrap();
    wait_indexed(url, chain, block, Instant::now()).await
}

fn median(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    (
        v[v.len() / 2].as_secs_f64() * 1000.0,
        v[v.len() - 1].as_secs_f64() * 1000.0,
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn two_chains_in_one_process_and_a_stalled_one_does_not_stall_the_other() {
    let first = Chain::deploy_on(anvil_at(30).chain_id(31_337).spawn()).await;
    let second = Chain::deploy_on(anvil_at(30).chain_id(31_338).spawn()).await;
    first.trade(400, 11, 10, 300).await;
    second.trade(400, 12, 10, 300).await;
    let proxy = Proxy::start(second.rpc_url()).await;
    let url = fresh_db(Db::Sqlite, "chains").await;
    let dir = std::env::temp_dir().join("keymarket-tests");
    let config = dir.join(format!("chains-{}.toml", std::process::id()));
    let market = |c: &Chain| format!("{}@{}", c.deployment.address, c.deployment.deploy_block);
    std::fs::write(
        &config,
        format!(
            "database_url = {url:?}\n\n\
             [[chain]]\nname = \"first\"\nrpc_url = {:?}\nwindow = 32\nmarkets = [{:?}]\n\n\
             [[chain]]\nname = \"second\"\nrpc_url = {:?}\nmarkets = [{:?}]\n",
            first.rpc_url(),
            market(&first),
            proxy.url,
            market(&second)
        ),
    )
    .unwrap();
    let log = dir.join(format!("chains-{}.log", std::process::id()));
    let mut indexer = Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args(["index", "--follow", "--quiet", "--config"])
        .arg(&config)
        .args(["--head-request-timeout", "2"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let started = Instant::now();
    for chain in [&first, &second] {
        let head = chain.provider.get_block_number().await.unwrap();
        wait_indexed(&url, chain, head, started).await;
    }

    // Head latency of the first chain with the second healthy, then with it stalled.
    let mut healthy = Vec::new();
    for i in 0..5 {
        healthy.push(head_latency(&url, &first, 100 + i).await);
    }
    proxy.set(Mode::Hung);
    // Trades on the stalled chain wait for it.
    second.trade(20, 13, 10, 12).await;
    let mut stalled = Vec::new();
    for i in 0..5 {
        stalled.push(head_latency(&url, &first, 200 + i).await);
    }
    assert!(
        indexer.try_wait().unwrap().is_none(),
        "the indexer keeps running with one chain stalled:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    let ((h_med, h_worst), (s_med, s_worst)) = (median(healthy), median(stalled));
    println!(
        "first chain's head latency: median {h_med:.0} ms, worst {h_worst:.0} ms with the second healthy; median {s_med:.0} ms, worst {s_worst:.0} ms with it stalled"
    );

    // Healed, the stalled chain catches up.
    proxy.set(Mode::Healthy);
    let head = second.provider.get_block_number().await.unwrap();
    wait_indexed(&url, &second, head, Instant::now()).await;
    indexer.kill().await.unwrap();
    for (chain, name) in [(&first, "first"), (&second, "second")] {
        assert_same(
            &format!("{name} chain"),
            &dump(&url, chain).await,
            &recompute(chain.deployment.chain_id, &chain.logs().await),
        );
    }
}

/// A config file's mistakes are refused in words before anything is touched.
#[tokio::test]
async fn a_bad_config_file_is_refused_in_words() {
    let dir = std::env::temp_dir().join("keymarket-tests");
    std::fs::create_dir_all(&dir).unwrap();
    let config = dir.join(format!("bad-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[[chain]]\nrpc_url = \"http://127.0.0.1:1\"\nmarkts = []\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let stderr = keymarket_fails(&["index", "--config", config]).await;
    assert!(
        stderr.contains("unknown field `markts`") && stderr.contains("bad-"),
        "{stderr}"
    );
    // And the one-chain flags do not mix with it.
    let market = "0x5FbDB2315678afecb367f032d93F642f64180aa3@1";
    let stderr = keymarket_fails(&["index", "--config", config, "--market", market]).await;
    assert!(stderr.contains("cannot be used with"), "{stderr}");
}
