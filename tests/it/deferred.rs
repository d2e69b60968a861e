//! Aggregates deferred during a long backfill and built at the head (`keymarket_store`'s
//! `deferred`), on the store directly: the same batches committed row by row and deferred then
//! built end identical (every aggregate and every sell's cost basis), also through a rollback
//! while deferred; while deferred, the curve check's supplies come from the raw trades.

use alloy::primitives::{B256, U64};
use keymarket_indexer::{
    StoreWriter,
    decode::{MarketEvent, RpcLog},
    store::{Batch, MarketState, TradeRow},
};

use crate::common::{Chain, Db, assert_same, dump, fresh_db, recompute};

/// The chain's trades as batches of `blocks` blocks each, contiguous from the market's deploy
/// block to the last trade's block.
async fn batches(chain: &Chain, blocks: u64) -> Vec<Batch> {
    let chain_id = chain.deployment.chain_id;
    let trades: Vec<TradeRow> = chain
        .logs()
        .await
        .iter()
        .map(|l| RpcLog {
            address: l.address(),
            topics: l.topics().to_vec(),
            data: l.data().data.clone(),
            block_hash: l.block_hash,
            block_number: l.block_number.map(U64::from),
            block_timestamp: l.block_timestamp.map(U64::from),
            transaction_hash: l.transaction_hash,
            log_index: l.log_index.map(U64::from),
            removed: l.removed,
        })
        .filter_map(|l| match MarketEvent::from_log(chain_id, &l, None) {
            Ok(MarketEvent::Trade(t)) => Some(t),
            _ => None,
        })
        .collect();
    let last = trades.last().unwrap().block_number as u64;
    let mut out = Vec::new();
    let mut from = chain.deployment.deploy_block;
    while from <= last {
        let to = (from + blocks - 1).min(last);
        let in_range: Vec<TradeRow> = trades
            .iter()
            .filter(|t| (from..=to).contains(&(t.block_number as u64)))
            .cloned()
            .collect();
        out.push(Batch {
            from,
            to,
            head: last,
            to_time: in_range.last().map_or(0, |t| t.block_time as u64),
            blocks: vec![(to, B256::repeat_byte(1))],
            trades: in_range,
            ..Batch::default()
        });
        from = to + 1;
    }
    out
}

async fn open(kind: Db, name: &str, chain: &Chain) -> (String, StoreWriter, MarketState) {
    let url = fresh_db(kind, name).await;
    let store = StoreWriter::connect(&url).await.unwrap();
    store
        .ensure_chain(chain.deployment.chain_id, B256::repeat_byte(7))
        .await
        .unwrap();
    let market = store
        .ensure_market(
            chain.deployment.chain_id,
            chain.deployment.address,
            chain.deployment.deploy_block,
        )
        .await
        .unwrap();
    (url, store, market)
}

async fn commit_all(store: &StoreWriter, market: &mut MarketState, batches: &[Batch]) {
    for b in batches {
        store.commit(market, b, 1_000).await.unwrap();
        market.next_block = b.to + 1;
    }
}

async fn sorted_states(
    store: &StoreWriter,
    market: &MarketState,
) -> Vec<(alloy::primitives::Address, i64, i64)> {
    let mut s = store.subject_states(market.id).await.unwrap();
    s.sort();
    s
}

async fn deferred_test(kind: Db) {
    let chain = Chain::new().await;
    // 1,200 trades, 40 a block, 3 h apart: several UTC days, holdings sold down and emptied.
    chain.trade(1_200, 21, 40, 3 * 3600).await;
    let batches = batches(&chain, 3).await;
    let third = batches.len() / 3;
    assert!(third >= 3, "{} batches", batches.len());

    // Row by row, as a short backfill or live indexing does.
    let (direct_url, direct, mut dm) = open(kind, "direct", &chain).await;
    commit_all(&direct, &mut dm, &batches).await;

    // A third row by row, then the rest deferred.
    let (url, store, mut m) = open(kind, "deferred", &chain).await;
    commit_all(&store, &mut m, &batches[..third]).await;
    assert_eq!(store.aggregates_from(m.id).await.unwrap(), None);
    store.defer_aggregates(&m).await.unwrap();
    let from = batches[third].from;
    assert_eq!(store.aggregates_from(m.id).await.unwrap(), Some(from));
    // As a long backfill indexing alone: the secondary indexes dropped (on PostgreSQL the raw
    // trades then go in with COPY), built again after the aggregates.
    store.drop_secondary_indexes().await.unwrap();
    assert!(!store.uniqueness_proved().await.unwrap());
    commit_all(&store, &mut m, &batches[third..]).await;
    // Deferring again changes nothing (a restarted run, or another process's).
    store.defer_aggregates(&m).await.unwrap();
    assert_eq!(store.aggregates_from(m.id).await.unwrap(), Some(from));
    // The curve check continues from the raw trades' supplies while the aggregates wait.
    assert_eq!(
        sorted_states(&store, &m).await,
        sorted_states(&direct, &dm).await,
        "{kind:?}: supplies and curves while deferred"
    );
    assert_eq!(
        store.markets().await.unwrap()[0].aggregates_from,
        Some(from as i64)
    );

    // Chunks of 7 trades: holdings and subjects continue across many chunks' boundaries, and
    // holdings stored before the deferred range are first sold in a later chunk than bought.
    let built = store.build_aggregates_by(&m, 7).await.unwrap().unwrap();
    let deferred_trades: usize = batches[third..].iter().map(|b| b.trades.len()).sum();
    assert_eq!(built as usize, deferred_trades);
    assert_eq!(store.aggregates_from(m.id).await.unwrap(), None);
    assert_eq!(
        store.build_aggregates(&m).await.unwrap(),
        None,
        "built once"
    );
    store.build_secondary_indexes().await.unwrap();
    assert!(store.uniqueness_proved().await.unwrap());
    let want = dump(&direct_url, &chain).await;
    assert_same(
        &format!("{kind:?}: deferred then built"),
        &dump(&url, &chain).await,
        &want,
    );
    // These batches carry the trades only (no referral or fee event): against the
    // recomputation from the logs, the tables of trades alone (stats_daily has referral sums).
    let mut logs = recompute(chain.deployment.chain_id, &chain.logs().await);
    logs.retain(|table, _| {
        [
            "trades",
            "subjects",
            "traders",
            "holdings",
            "daily_traders",
            "subject_daily",
        ]
        .contains(table)
    });
    assert_eq!(logs.len(), 6);
    assert_same(&format!("{kind:?}: row by row"), &want, &logs);

    // Deferred from the first trade (a long backfill from the market's deploy block): no
    // holding stored before, so on PostgreSQL the build copies the holdings' final states in
    // (several copies of 35 at chunks of 7) and counts the other tables into empty ones with
    // plain inserts.
    let (url, store, mut m) = open(kind, "deferred_whole", &chain).await;
    store.defer_aggregates(&m).await.unwrap();
    store.drop_secondary_indexes().await.unwrap();
    commit_all(&store, &mut m, &batches).await;
    let built = store.build_aggregates_by(&m, 7).await.unwrap().unwrap();
    let trades: usize = batches.iter().map(|b| b.trades.len()).sum();
    assert_eq!(built as usize, trades);
    store.build_secondary_indexes().await.unwrap();
    assert!(store.uniqueness_proved().await.unwrap());
    assert_same(
        &format!("{kind:?}: deferred from the first trade"),
        &dump(&url, &chain).await,
        &want,
    );

    // A rollback while deferred (a reorg or a repair during a long backfill) counts the
    // deferred trades first, then subtracts the orphans: as the same rollback row by row.
    let (url, store, mut m) = open(kind, "deferred_rollback", &chain).await;
    commit_all(&store, &mut m, &batches[..third]).await;
    store.defer_aggregates(&m).await.unwrap();
    commit_all(&store, &mut m, &batches[third..]).await;
    let orphan = batches[batches.len() - third / 2].from;
    store.rollback(&m, orphan).await.unwrap();
    direct.rollback(&dm, orphan).await.unwrap();
    assert_eq!(store.aggregates_from(m.id).await.unwrap(), None);
    assert_same(
        &format!("{kind:?}: rolled back while deferred"),
        &dump(&url, &chain).await,
        &dump(&direct_url, &chain).await,
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn deferred_aggregates_build_to_the_row_by_row_result_sqlite() {
    deferred_test(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deferred_aggregates_build_to_the_row_by_row_result_postgres() {
    deferred_test(Db::Postgres).await;
}
