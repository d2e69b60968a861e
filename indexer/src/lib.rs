//! keymarket's indexer: follows an EVM chain and keeps every key-market `Trade` event in SQL
//! exactly once — through reorgs, crashes and flaky RPCs — together with the aggregates analysts
//! read (daily series, subjects, traders, holdings).
//!
//! Stages, each a module: [`fetch`] (adaptive `eth_getLogs`), [`decode`] (typed rows),
//! [`store`] (one transaction per batch: rows + aggregates + block hashes + checkpoint), and the
//! sync loop here (backfill, follow, reorg detection against the stored block window).
//! It does not serve HTTP (see the `api` crate) and does not send transactions.

pub mod amount;
pub mod decode;
pub mod fetch;
pub mod store;

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::{Address, B256},
    providers::{Provider, RootProvider},
};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use keymarket_contracts::TRADE_TOPIC;
use tokio_util::task::AbortOnDropHandle;
use tracing::{info, warn};

pub use crate::{
    decode::{RpcLog, TradeRow},
    fetch::{FetchConfig, LogFetcher},
    store::{Backend, Batch, MarketState, Store, Totals},
};

/// Errors of the indexer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration or input.
    #[error("{0}")]
    Config(String),
    /// The RPC failed in a way retrying did not fix, or answered nonsense.
    #[error("RPC: {0}")]
    Rpc(String),
    /// A transport error on a call that is not retried.
    #[error("RPC: {0}")]
    Transport(#[from] alloy::transports::TransportError),
    /// The database is for another chain than the RPC serves.
    #[error("wrong chain: {0}")]
    WrongChain(String),
    /// There is no contract at the market's address.
    #[error("no contract code at {address} on chain {chain_id}: wrong address or wrong chain?")]
    NoCode {
        /// The address.
        address: Address,
        /// The chain.
        chain_id: u64,
    },
    /// A reorg replaced more blocks than the kept window: the data cannot be repaired in place.
    #[error(
        "reorg deeper than the kept window of {window} blocks below block {at}: no stored block hash matches the chain; \
         stopping without touching the data (re-index into a fresh database, or raise --window)"
    )]
    ReorgTooDeep {
        /// The newest indexed block.
        at: u64,
        /// The window size.
        window: u64,
    },
    /// The database schema is not one this binary can use.
    #[error("the database was written by an incompatible schema: {0}")]
    IncompatibleSchema(String),
    /// A database operation failed.
    #[error("database error while {what}: {source}")]
    Database {
        /// What was being done.
        what: String,
        /// The error.
        source: sqlx::Error,
    },
    /// A log could not be decoded.
    #[error("undecodable log: {0}")]
    Decode(String),
    /// The stored data contradicts itself or a batch.
    #[error("refusing to continue: {0}")]
    Corrupt(String),
}

/// Result type of the indexer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A market to index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketSpec {
    /// The market's address.
    pub address: Address,
    /// The first block to index (the deploy block).
    pub start_block: u64,
    /// The chain the market is on, when known (from a deployment file): checked against the RPC.
    pub chain_id: Option<u64>,
}

/// How to index.
#[derive(Debug, Clone)]
pub struct IndexerConfig {
    /// Log fetching.
    pub fetch: FetchConfig,
    /// Keep following the head after the backfill.
    pub follow: bool,
    /// Index only blocks this far below the head.
    pub confirmations: u64,
    /// Block hashes kept for reorg detection (the deepest reorg that can be repaired).
    pub window: u64,
    /// Head polling interval while following.
    pub poll_interval: Duration,
    /// Show a progress bar during the backfill.
    pub progress: bool,
    /// Stop once this block is indexed (for benchmarks and tests); `None` = the head.
    pub stop_at: Option<u64>,
    /// Once a run has stored this many trades and more blocks remain to the head than it has
    /// covered, it drops the trades table's secondary indexes (a long backfill) and builds them
    /// once, sorted, when it reaches the head.
    pub bulk_min_trades: u64,
}

impl Default for IndexerConfig {
    fn default() -> Self {
        Self {
            fetch: FetchConfig::default(),
            follow: false,
            confirmations: 0,
            window: 128,
            poll_interval: Duration::from_millis(500),
            progress: false,
            stop_at: None,
            bulk_min_trades: 100_000,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct RunReport {
    /// Trades committed.
    pub trades: u64,
    /// Blocks covered.
    pub blocks: u64,
    /// Batches committed.
    pub batches: u64,
    /// Reorgs repaired.
    pub reorgs: u64,
    /// Time spent committing to the database.
    pub store_time: Duration,
    /// Time the store waited for fetched ranges (fetching overlaps with storing; this is the
    /// part of fetching that storing did not hide).
    pub fetch_wait: Duration,
    /// Time spent building the secondary indexes a long backfill deferred (at the head).
    pub index_time: Duration,
    /// Wall-clock time.
    pub elapsed: Duration,
}

/// Checks a market against the chain and registers it: right chain, code at the address, start
/// block not beyond the head, and the stored block window still on the canonical chain.
pub async fn prepare<P: Provider>(
    provider: &P,
    store: &Store,
    spec: MarketSpec,
    window: u64,
) -> Result<MarketState> {
    let chain_id = retry("eth_chainId", 4, || provider.get_chain_id())
        .await
        .map_err(|e| Error::Rpc(format!("cannot reach the RPC: {e}")))?;
    if let Some(expected) = spec.chain_id
        && expected != chain_id
    {
        return Err(Error::WrongChain(format!(
            "the market {} is on chain {expected}, but the RPC serves chain {chain_id}",
            spec.address
        )));
    }
    let genesis = block_hash(provider, 0)
        .await?
        .ok_or_else(|| Error::Rpc("the RPC has no genesis block".into()))?;
    store.ensure_chain(chain_id, genesis).await?;
    if retry("eth_getCode", RETRIES, || {
        provider.get_code_at(spec.address)
    })
    .await?
    .is_empty()
    {
        return Err(Error::NoCode {
            address: spec.address,
            chain_id,
        });
    }
    let head = retry("eth_blockNumber", RETRIES, || provider.get_block_number()).await?;
    if spec.start_block > head {
        return Err(Error::Config(format!(
            "start block {} is beyond the chain's head {head}",
            spec.start_block
        )));
    }
    let market = store
        .ensure_market(chain_id, spec.address, spec.start_block)
        .await?;
    let mut market = market;
    check_reorg(provider, store, &mut market, window).await?;
    Ok(market)
}

/// Compares the stored block window with the chain; on a mismatch rolls back to the newest block
/// both agree on. Returns whether a reorg was repaired.
pub async fn check_reorg<P: Provider>(
    provider: &P,
    store: &Store,
    market: &mut MarketState,
    window: u64,
) -> Result<bool> {
    let stored = store.window(market.id).await?;
    let Some(&(top, top_hash)) = stored.first() else {
        return Ok(false);
    };
    if block_hash(provider, top).await? == Some(top_hash) {
        return Ok(false);
    }
    for &(n, h) in &stored[1..] {
        if block_hash(provider, n).await? == Some(h) {
            let orphans = store.rollback(market, n + 1).await?;
            warn!(target: "indexer::reorg", common_ancestor = n, orphaned_blocks = top - n, orphaned_trades = orphans, "reorg: rolled back");
            market.next_block = n + 1;
            return Ok(true);
        }
    }
    Err(Error::ReorgTooDeep { at: top, window })
}

async fn block_hash<P: Provider>(provider: &P, n: u64) -> Result<Option<B256>> {
    Ok(header(provider, n).await?.map(|(hash, _)| hash))
}

/// A block's (hash, timestamp), with transport errors retried.
async fn header<P: Provider>(provider: &P, n: u64) -> Result<Option<(B256, u64)>> {
    retry("eth_getBlockByNumber", RETRIES, || {
        provider.get_block_by_number(BlockNumberOrTag::Number(n))
    })
    .await
    .map(|b| b.map(|b| (b.header.hash, b.header.timestamp)))
}

/// Attempts for RPC calls other than `eth_getLogs` (which retries for ever, splitting ranges).
const RETRIES: u32 = 12;

/// Runs an RPC call, retrying transport failures (dropped connections, HTTP 429/5xx, broken
/// bodies) with backoff and jitter; JSON-RPC errors are answers, not failures, and are returned.
async fn retry<T, F, Fut>(what: &str, attempts: u32, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::IntoFuture<Output = Result<T, alloy::transports::TransportError>>,
{
    let mut attempt = 0;
    loop {
        match call().into_future().await {
            Ok(v) => return Ok(v),
            Err(e @ alloy::transports::RpcError::ErrorResp(_)) => return Err(e.into()),
            Err(e) => {
                attempt += 1;
                if attempt >= attempts {
                    return Err(Error::Rpc(format!("{what} failed {attempt} times: {e}")));
                }
                let delay = fetch::backoff(attempt);
                warn!(target: "indexer::rpc", what, attempt, delay_ms = delay.as_millis() as u64, error = %e, "RPC call failed; retrying");
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// Indexes one market: backfill to the head (less confirmations), then follow it if asked.
///
/// Ranges of logs and their headers are fetched through the provider's [`RootProvider`] (its
/// transport, shared), in tasks of their own; the provider's own layers and fillers are used for
/// the other calls only.
pub async fn run<P: Provider>(
    provider: P,
    store: &Store,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<RunReport> {
    let started = Instant::now();
    let mut market = prepare(&provider, store, spec, config.window).await?;
    let fetcher = Arc::new(LogFetcher::new(
        provider.root().clone(),
        spec.address,
        TRADE_TOPIC,
        config.fetch.clone(),
    ));
    let mut report = RunReport::default();
    let first = market.next_block;
    let head = retry("eth_blockNumber", RETRIES, || provider.get_block_number()).await?;
    let bar = if config.progress {
        backfill_bar(first, head)
    } else {
        ProgressBar::hidden()
    };
    let mut last_log = Instant::now();
    info!(target: "indexer::sync", market = %spec.address, chain_id = market.chain_id, from = first, head, "indexing");
    let mut bulk = false;
    let mut caught_up = false;
    let mut last_head_record = Instant::now();
    loop {
        let head = retry("eth_blockNumber", RETRIES, || provider.get_block_number()).await?;
        let mut target = head.saturating_sub(config.confirmations);
        if let Some(stop) = config.stop_at {
            target = target.min(stop);
        }
        if check_reorg(&provider, store, &mut market, config.window).await? {
            report.reorgs += 1;
        }
        if market.next_block > target {
            if !caught_up {
                // Reaching the head ends a long backfill (also one killed before this point).
                caught_up = true;
                bar.set_message("building indexes");
                let t = Instant::now();
                store.build_secondary_indexes().await?;
                report.index_time += t.elapsed();
            }
            if config.stop_at.is_some_and(|s| market.next_block > s) || !config.follow {
                break;
            }
            if last_head_record.elapsed() >= Duration::from_secs(1) {
                last_head_record = Instant::now();
                store.record_head(market.id, head).await?;
            }
            tokio::time::sleep(config.poll_interval).await;
            continue;
        }
        // One pass to `target`: ranges are planned from the adaptive hint and fetched
        // `concurrency` at a time while earlier ones commit, in order (fetching and storing
        // overlap; at most `concurrency` + 1 ranges are held in memory).
        let batches = batches(
            fetcher.clone(),
            market.chain_id,
            (market.next_block, target),
            head,
            config.window,
        );
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(1);
        let producer = async move {
            let mut batches = std::pin::pin!(batches);
            while let Some(batch) = batches.next().await {
                // `None`: the chain changed under us between the logs and the headers; stop the
                // pass and re-check.
                let Some(batch) = batch? else { break };
                if tx.send(batch).await.is_err() {
                    break;
                }
            }
            Ok::<_, Error>(())
        };
        let consumer = async {
            loop {
                let t = Instant::now();
                let Some(batch) = rx.recv().await else { break };
                report.fetch_wait += t.elapsed();
                let t = Instant::now();
                store.commit(&market, &batch, config.window).await?;
                report.store_time += t.elapsed();
                market.next_block = batch.to + 1;
                report.trades += batch.trades.len() as u64;
                report.blocks += batch.to - batch.from + 1;
                report.batches += 1;
                if !bulk
                    && !caught_up
                    && report.trades >= config.bulk_min_trades
                    && head.saturating_sub(batch.to) > report.blocks
                {
                    bulk = true;
                    info!(target: "indexer::sync", trades = report.trades, remaining_blocks = head - batch.to, "long backfill: secondary indexes dropped until the head is reached");
                    store.drop_secondary_indexes().await?;
                }
                bar.set_length(head.max(batch.to));
                bar.set_position(batch.to);
                bar.set_message(format!("{} trades", report.trades));
                if last_log.elapsed() >= Duration::from_secs(5) {
                    last_log = Instant::now();
                    let secs = started.elapsed().as_secs_f64();
                    info!(
                        target: "indexer::sync",
                        block = batch.to,
                        head,
                        lag = head.saturating_sub(batch.to),
                        trades = report.trades,
                        trades_per_sec = (report.trades as f64 / secs) as u64,
                        blocks_per_sec = (report.blocks as f64 / secs) as u64,
                        range = fetcher.range_hint(),
                        "progress"
                    );
                }
            }
            Ok::<_, Error>(())
        };
        futures::future::try_join(producer, consumer).await?;
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    info!(target: "indexer::sync", trades = report.trades, blocks = report.blocks, reorgs = report.reorgs, secs = report.elapsed.as_secs_f64(), "done");
    Ok(report)
}

/// The ranges `from..=target` as decoded batches, in order: planned from the fetcher's adaptive
/// hint and fetched `concurrency` at a time. An item is `None` when the chain changed between a
/// range's logs and its headers (a reorg while fetching): the caller must stop and re-check.
///
/// Each range is fetched and decoded in a task of its own, so that parsing a response (the
/// indexer's biggest CPU cost after the database) runs on the runtime's worker threads while the
/// caller's task binds and commits the previous batch. Dropping the stream aborts the tasks.
fn batches(
    fetcher: Arc<LogFetcher<RootProvider>>,
    chain_id: u64,
    (from, target): (u64, u64),
    head: u64,
    window: u64,
) -> impl futures::Stream<Item = Result<Option<Batch>>> {
    let concurrency = fetcher.concurrency();
    let planner = fetcher.clone();
    futures::stream::unfold(from, move |from| {
        let hint = planner.range_hint();
        async move {
            (from <= target).then(|| {
                let to = (from + hint - 1).min(target);
                ((from, to), to + 1)
            })
        }
    })
    .map(move |(from, to)| {
        let fetcher = fetcher.clone();
        let task = tokio::spawn(async move {
            let logs = fetcher.logs(from, to).await?;
            build_batch(fetcher.provider(), chain_id, from, to, logs, head, window).await
        });
        async move {
            AbortOnDropHandle::new(task)
                .await
                .map_err(|e| Error::Rpc(format!("fetching blocks {from}..={to} failed: {e}")))?
        }
    })
    .buffered(concurrency)
}

/// Fetches and decodes a market's trades from its start block to `stop_at` (or the head) without
/// storing them: the RPC side's ceiling, for benchmarks. Returns (trades, blocks, elapsed).
pub async fn fetch_only<P: Provider>(
    provider: P,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let fetcher = Arc::new(LogFetcher::new(
        provider.root().clone(),
        spec.address,
        TRADE_TOPIC,
        config.fetch.clone(),
    ));
    let chain_id = retry("eth_chainId", RETRIES, || provider.get_chain_id()).await?;
    let head = retry("eth_blockNumber", RETRIES, || provider.get_block_number()).await?;
    let target = config.stop_at.unwrap_or(head).min(head);
    let mut stream = std::pin::pin!(batches(
        fetcher,
        chain_id,
        (spec.start_block, target),
        head,
        config.window,
    ));
    let (mut trades, mut blocks) = (0, 0);
    while let Some(batch) = stream.next().await {
        let batch = batch?.ok_or_else(|| Error::Rpc("the chain changed while fetching".into()))?;
        trades += batch.trades.len() as u64;
        blocks += batch.to - batch.from + 1;
    }
    Ok((trades, blocks, started.elapsed()))
}

fn backfill_bar(from: u64, head: u64) -> ProgressBar {
    let bar = ProgressBar::new(head);
    bar.set_position(from.saturating_sub(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} block {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

/// Decodes a range's logs and collects the block hashes to keep. Near the head, the hashes in
/// the logs are checked against freshly fetched headers; `None` means they disagree (a reorg
/// happened while fetching) and the range must be fetched again.
async fn build_batch<P: Provider>(
    provider: &P,
    chain_id: u64,
    from: u64,
    to: u64,
    logs: Vec<RpcLog>,
    head: u64,
    window: u64,
) -> Result<Option<Batch>> {
    let near_head = to + window >= head;
    let mut headers: foldhash::HashMap<u64, (B256, u64)> = Default::default();
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    wanted.insert(to);
    for l in &logs {
        if near_head || l.block_timestamp.is_none() {
            wanted.insert(l.block());
        }
    }
    let fetched = futures::future::try_join_all(
        wanted
            .iter()
            .map(|&n| async move { Ok::<_, Error>((n, header(provider, n).await?)) }),
    )
    .await?;
    for (n, hb) in fetched {
        match hb {
            Some(hb) => {
                headers.insert(n, hb);
            }
            None => return Ok(None),
        }
    }
    let mut trades = Vec::with_capacity(logs.len());
    let mut blocks = vec![(to, headers[&to].0)];
    for l in &logs {
        let n = l.block();
        if let Some(&(hash, time)) = headers.get(&n) {
            if l.block_hash != Some(hash) {
                return Ok(None);
            }
            if near_head && blocks.last().is_none_or(|b| b.0 != n) && n != to {
                blocks.push((n, hash));
            }
            trades.push(TradeRow::from_log(chain_id, l, Some(time))?);
        } else {
            trades.push(TradeRow::from_log(chain_id, l, None)?);
        }
    }
    Ok(Some(Batch {
        head,
        from,
        to,
        trades,
        blocks,
    }))
}
