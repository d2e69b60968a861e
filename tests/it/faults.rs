//! RPC faults through a real fault-injecting HTTP proxy on loopback (the shared one, in
//! [`Mode::Flaky`]), between the indexer and anvil: dropped connections, stalls, HTTP 429 and
//! 5xx, truncated bodies, and provider-style refusals of wide `eth_getLogs` ranges ("query
//! returned more than 10000 results", HTTP 413). The final database must equal the
//! recomputation from the chain.

use std::time::Duration;

use keymarket_indexer::{FetchConfig, IndexerConfig, StoreWriter};

use crate::{
    common::{Chain, Db, assert_same, dump, fresh_db, recompute},
    proxy::{Mode, Proxy},
};

#[tokio::test(flavor = "multi_thread")]
async fn rpc_faults_through_a_proxy_change_nothing() {
    let chain = Chain::new().await;
    chain.trade(1_500, 71, 15, 900).await; // ~100 blocks
    let proxy = Proxy::start(chain.rpc_url()).await;
    proxy.set(Mode::Flaky);
    let provider = proxy.provider();
    let config = IndexerConfig {
        fetch: FetchConfig {
            initial_range: 50,
            max_range: 200,
            concurrency: 3,
            request_timeout: Duration::from_secs(1),
            ..FetchConfig::default()
        },
        window: 32,
        ..IndexerConfig::default()
    };
    let want = recompute(chain.deployment.chain_id, &chain.logs().await);
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "faults").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        assert_same(
            &format!("{kind:?} through the faulty proxy"),
            &dump(&url, &chain).await,
            &want,
        );
    }
    for what in [
        "dropped",
        "stalled",
        "429",
        "5xx",
        "truncated",
        "refused ranges",
        "HTTP 413",
    ] {
        assert!(proxy.injected(what) > 0, "the proxy injected {what} faults");
    }
}
