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
pub mod rpc;
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
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
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
    /// A batch holds trades that are already stored (a provider answering with a log at the
    /// wrong block): nothing of the batch was stored; the range is fetched again.
    #[error(
        "{count} trades of blocks {from}..={to} are already stored: the provider's answer was not stored"
    )]
    AlreadyStored {
        /// How many.
        count: u64,
        /// The batch's first block.
        from: u64,
        /// The batch's last block.
        to: u64,
    },
    /// Building the trades' unique index after a long backfill found a trade stored twice (a
    /// provider answering with a log at the wrong block while the index was dropped); the sync
    /// loop rolls back to the first such trade's block and indexes again.
    #[error("a trade is stored twice ({0})")]
    StoredTwice(String),
    /// The chain below a batch is no longer the one stored (a reorg while indexing): the batch
    /// was not stored; the sync loop repairs the window and carries on.
    #[error("the chain changed at block {block} while indexing")]
    Reorged {
        /// The block whose stored hash the chain no longer has.
        block: u64,
    },
}

impl Error {
    /// Whether the error is a database outage that waiting out may heal: a connection lost,
    /// reset or refused (a PostgreSQL restart or failover), the server shutting down or starting
    /// up, the pool finding no connection in time, a SQLite file locked or busy for longer than
    /// its busy timeout. The transaction open at the time was rolled back by the database.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => db_error_is_transient(source),
            _ => false,
        }
    }
}

pub(crate) fn db_error_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL SQLSTATEs: connection exceptions (08xxx), admin/crash shutdown and
            // "the database system is starting up" (57P01-57P03), too many connections,
            // serialization failures and deadlocks (the transaction is simply retried).
            code.starts_with("08")
                || ["57P01", "57P02", "57P03", "53300", "40001", "40P01"].contains(&&*code)
                // SQLite's primary result codes SQLITE_BUSY (5) and SQLITE_LOCKED (6), also
                // as the low byte of an extended code.
                || code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
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
    /// Cancelled to stop the run cleanly (SIGTERM, Ctrl-C): the batch being committed commits,
    /// fetches and waits are abandoned, and [`run`] returns what it did.
    pub shutdown: CancellationToken,
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
            shutdown: CancellationToken::new(),
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
    /// Database outages waited out (a failed transaction, rolled back and tried again).
    pub database_retries: u64,
    /// `Trade` logs refused because they cannot be stored as they are (see [`Batch::refused`]).
    pub refused_logs: u64,
    /// Batches refused because they held trades already stored ([`Error::AlreadyStored`]).
    pub refused_batches: u64,
    /// Long backfills rolled back and indexed again because a provider's answer had put a
    /// trade at a wrong block ([`Error::StoredTwice`]).
    pub repairs: u64,
    /// Every block below this one is indexed (the checkpoint when the run ended).
    pub next_block: u64,
    /// The run was stopped by [`IndexerConfig::shutdown`].
    pub stopped: bool,
}

/// Checks a market against the chain and registers it: right chain, code at the address, start
/// block not beyond the head, and the stored block window still on the canonical chain.
///
/// The first call (the chain id) gives up after a few attempts, so that a wrong or unreachable
/// URL is a clear error; once the provider has answered, every call is retried for as long as it
/// takes ([`FetchConfig::retry`]).
pub async fn prepare<P: Provider>(
    provider: &P,
    store: &Store,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<MarketState> {
    let retry = config.fetch.retry();
    let first_contact = rpc::Retry {
        attempts: Some(4),
        ..retry.clone()
    };
    let chain_id = rpc::call("eth_chainId", &first_contact, || provider.get_chain_id())
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
    let genesis = block_hash(provider, 0, &retry)
        .await?
        .ok_or_else(|| Error::Rpc("the RPC has no genesis block".into()))?;
    store.ensure_chain(chain_id, genesis).await?;
    if rpc::call("eth_getCode", &retry, || provider.get_code_at(spec.address))
        .await?
        .is_empty()
    {
        return Err(Error::NoCode {
            address: spec.address,
            chain_id,
        });
    }
    let head = rpc::call("eth_blockNumber", &retry, || provider.get_block_number()).await?;
    if spec.start_block > head {
        return Err(Error::Config(format!(
            "start block {} is beyond the chain's head {head}",
            spec.start_block
        )));
    }
    let mut market = store
        .ensure_market(chain_id, spec.address, spec.start_block)
        .await?;
    check_reorg(provider, store, &mut market, config).await?;
    Ok(market)
}

/// Compares the stored block window with the chain; on a mismatch rolls back to the newest block
/// both agree on. Returns whether a reorg was repaired.
///
/// A block the provider does not know yet is not a reorg: a node behind the one that gave the
/// head (a lagging replica behind a load balancer) answers `null` for blocks it has not seen, and
/// rewinding then would undo good data. The check is simply made again at the next poll.
pub async fn check_reorg<P: Provider>(
    provider: &P,
    store: &Store,
    market: &mut MarketState,
    config: &IndexerConfig,
) -> Result<bool> {
    let retry = config.fetch.retry();
    let stored = store.window(market.id).await?;
    let Some(&(top, top_hash)) = stored.first() else {
        return Ok(false);
    };
    match block_hash(provider, top, &retry).await? {
        Some(h) if h == top_hash => return Ok(false),
        Some(_) => {}
        None => {
            warn!(target: "indexer::reorg", block = top, "the provider does not know the newest indexed block (a lagging node?); waiting");
            return Ok(false);
        }
    }
    for &(n, h) in &stored[1..] {
        match block_hash(provider, n, &retry).await? {
            Some(chain) if chain == h => {
                let orphans = store.rollback(market, n + 1).await?;
                warn!(target: "indexer::reorg", common_ancestor = n, orphaned_blocks = top - n, orphaned_trades = orphans, "reorg: rolled back");
                market.next_block = n + 1;
                return Ok(true);
            }
            Some(_) => {}
            None => {
                warn!(target: "indexer::reorg", block = n, "the provider does not know an indexed block (a lagging node?); waiting");
                return Ok(false);
            }
        }
    }
    Err(Error::ReorgTooDeep {
        at: top,
        window: config.window,
    })
}

async fn block_hash<P: Provider>(provider: &P, n: u64, retry: &rpc::Retry) -> Result<Option<B256>> {
    Ok(header(provider, n, retry).await?.map(|(hash, _)| hash))
}

/// A block's (hash, timestamp); `None` if the provider does not have it.
async fn header<P: Provider>(
    provider: &P,
    n: u64,
    retry: &rpc::Retry,
) -> Result<Option<(B256, u64)>> {
    rpc::call("eth_getBlockByNumber", retry, || {
        provider.get_block_by_number(BlockNumberOrTag::Number(n))
    })
    .await
    .map(|b| b.map(|b| (b.header.hash, b.header.timestamp)))
}

/// `fut`, unless `stop` is cancelled first (`None`).
async fn or_stop<T>(
    stop: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        v = fut => Some(v),
    }
}

/// Indexes one market: backfill to the head (less confirmations), then follow it if asked.
///
/// Ranges of logs and their headers are fetched through the provider's [`RootProvider`] (its
/// transport, shared), in tasks of their own; the provider's own layers and fillers are used for
/// the other calls only.
///
/// Temporary faults never end a run: RPC calls are retried for as long as it takes
/// ([`rpc::call`]); a database outage ([`Error::is_transient`]) rolls back the open transaction,
/// and the run waits with backoff, reads its checkpoint again and carries on; a reorg found
/// below a batch ([`Error::Reorged`]) is repaired. Cancelling [`IndexerConfig::shutdown`] ends
/// the run after the commit in flight, with `stopped` set in the report.
pub async fn run<P: Provider>(
    provider: P,
    store: &Store,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<RunReport> {
    let started = Instant::now();
    let stop = &config.shutdown;
    let retry = config.fetch.retry();
    let mut report = RunReport::default();
    let Some(market) = or_stop(stop, prepare(&provider, store, spec, config)).await else {
        report.stopped = true;
        return Ok(report);
    };
    let mut market = market?;
    let fetcher = Arc::new(LogFetcher::new(
        provider.root().clone(),
        spec.address,
        TRADE_TOPIC,
        config.fetch.clone(),
    ));
    let first = market.next_block;
    let Some(head) = or_stop(
        stop,
        rpc::call("eth_blockNumber", &retry, || provider.get_block_number()),
    )
    .await
    else {
        report.stopped = true;
        report.next_block = market.next_block;
        return Ok(report);
    };
    let head = head?;
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
    let mut db_failures = 0u32;
    /// What the sync loop does after a pass.
    enum Flow {
        /// Another pass.
        Again,
        /// The run is over.
        Done,
    }
    loop {
        if stop.is_cancelled() {
            report.stopped = true;
            break;
        }
        let pass = async {
            let Some(head) = or_stop(
                stop,
                rpc::call("eth_blockNumber", &retry, || provider.get_block_number()),
            )
            .await
            else {
                return Ok(Flow::Again);
            };
            let head = head?;
            let mut target = head.saturating_sub(config.confirmations);
            if let Some(stop) = config.stop_at {
                target = target.min(stop);
            }
            match or_stop(stop, check_reorg(&provider, store, &mut market, config)).await {
                None => return Ok(Flow::Again),
                Some(repaired) => {
                    if repaired? {
                        report.reorgs += 1;
                    }
                }
            }
            if market.next_block > target {
                if !caught_up {
                    // Reaching the head ends a long backfill (also one killed before this point).
                    bar.set_message("building indexes");
                    let t = Instant::now();
                    let Some(built) = or_stop(stop, store.build_secondary_indexes()).await else {
                        return Ok(Flow::Again);
                    };
                    built?;
                    caught_up = true;
                    report.index_time += t.elapsed();
                }
                if config.stop_at.is_some_and(|s| market.next_block > s) || !config.follow {
                    return Ok(Flow::Done);
                }
                if last_head_record.elapsed() >= Duration::from_secs(1) {
                    last_head_record = Instant::now();
                    store.record_head(market.id, head).await?;
                }
                or_stop(stop, tokio::time::sleep(config.poll_interval)).await;
                return Ok(Flow::Again);
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
                retry.clone(),
            );
            let (tx, rx) = tokio::sync::mpsc::channel::<Batch>(1);
            let producer = async move {
                let mut batches = std::pin::pin!(batches);
                while let Some(Some(batch)) = or_stop(stop, batches.next()).await {
                    // `None`: the chain changed under us between the logs and the headers; stop
                    // the pass and re-check.
                    let Some(batch) = batch? else { break };
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
                Ok::<_, Error>(())
            };
            let consumer = async {
                let mut rx = rx;
                loop {
                    let t = Instant::now();
                    // A stop is obeyed between commits, never during one.
                    let Some(Some(batch)) = or_stop(stop, rx.recv()).await else {
                        break;
                    };
                    report.fetch_wait += t.elapsed();
                    let t = Instant::now();
                    store.commit(&market, &batch, config.window).await?;
                    report.store_time += t.elapsed();
                    market.next_block = batch.to + 1;
                    report.trades += batch.trades.len() as u64;
                    report.refused_logs += batch.refused;
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
            Ok(Flow::Again)
        };
        match pass.await {
            Ok(Flow::Again) => db_failures = 0,
            Ok(Flow::Done) => break,
            Err(Error::Reorged { block }) => {
                warn!(target: "indexer::reorg", block, "the chain changed below the next batch; checking the window");
            }
            Err(e @ Error::AlreadyStored { .. }) => {
                // A provider's answer put a stored trade at another block: nothing of it was
                // stored; the range is fetched again after a backoff.
                db_failures += 1;
                report.refused_batches += 1;
                let delay = rpc::backoff(db_failures);
                warn!(target: "indexer::sync", error = %e, delay_ms = delay.as_millis() as u64, "refused a batch; fetching its range again");
                or_stop(stop, tokio::time::sleep(delay)).await;
            }
            Err(Error::StoredTwice(why)) => {
                // The same, during a long backfill without the unique index: found when the
                // index is built at the head. Undo everything from the first such trade's block
                // (exactly, as for a reorg) and index it again.
                let Some(first) = store.first_duplicate_block(market.id).await? else {
                    return Err(Error::Corrupt(why));
                };
                let orphans = store.rollback(&market, first).await?;
                market.next_block = first;
                report.repairs += 1;
                warn!(target: "indexer::sync", first_block = first, rolled_back_trades = orphans, %why, "a trade was stored twice during the backfill: rolled back to its block; indexing again");
            }
            Err(e) if e.is_transient() => {
                db_failures += 1;
                report.database_retries += 1;
                rpc::RETRIES
                    .database
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let delay = rpc::backoff(db_failures);
                warn!(target: "indexer::store", attempt = db_failures, delay_ms = delay.as_millis() as u64, error = %e, "database unavailable (the open transaction was rolled back); retrying");
                or_stop(stop, tokio::time::sleep(delay)).await;
                // A commit may have succeeded although its answer was lost: the checkpoint says.
                match or_stop(stop, store.next_block(market.id)).await {
                    Some(Ok(next)) => market.next_block = next,
                    Some(Err(e)) if e.is_transient() => {} // still down: the next pass waits again
                    Some(Err(e)) => return Err(e),
                    None => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    report.next_block = market.next_block;
    if report.stopped {
        info!(target: "indexer::sync", market = %spec.address, next_block = market.next_block, trades = report.trades, "stopped on request: every block below next_block is indexed");
    } else {
        info!(target: "indexer::sync", trades = report.trades, blocks = report.blocks, reorgs = report.reorgs, secs = report.elapsed.as_secs_f64(), "done");
    }
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
    retry: rpc::Retry,
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
        let retry = retry.clone();
        let task = tokio::spawn(async move {
            let logs = fetcher.logs(from, to).await?;
            build_batch(
                fetcher.provider(),
                chain_id,
                (from, to),
                logs,
                head,
                window,
                &retry,
            )
            .await
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
    let retry = config.fetch.retry();
    let chain_id = rpc::call("eth_chainId", &retry, || provider.get_chain_id()).await?;
    let head = rpc::call("eth_blockNumber", &retry, || provider.get_block_number()).await?;
    let target = config.stop_at.unwrap_or(head).min(head);
    let mut stream = std::pin::pin!(batches(
        fetcher,
        chain_id,
        (spec.start_block, target),
        head,
        config.window,
        retry.clone(),
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
/// happened while fetching) and the range must be fetched again. The hash of the block before
/// the range, fetched after its logs, goes with the batch: the store refuses the batch if it is
/// not the hash stored for that block (a reorg below the range, wherever it happened).
async fn build_batch<P: Provider>(
    provider: &P,
    chain_id: u64,
    (from, to): (u64, u64),
    logs: Vec<RpcLog>,
    head: u64,
    window: u64,
    retry: &rpc::Retry,
) -> Result<Option<Batch>> {
    let near_head = to + window >= head;
    let mut headers: foldhash::HashMap<u64, (B256, u64)> = Default::default();
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    wanted.insert(to);
    if from > 0 {
        wanted.insert(from - 1);
    }
    for l in &logs {
        if near_head || l.block_timestamp.is_none() {
            wanted.insert(l.block());
        }
    }
    let fetched = futures::future::try_join_all(
        wanted
            .iter()
            .map(|&n| async move { Ok::<_, Error>((n, header(provider, n, retry).await?)) }),
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
    let parent = (from > 0).then(|| (from - 1, headers[&(from - 1)].0));
    let mut refused = 0;
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
            trades.extend(decode_or_refuse(chain_id, l, Some(time), &mut refused));
        } else {
            trades.extend(decode_or_refuse(chain_id, l, None, &mut refused));
        }
    }
    Ok(Some(Batch {
        head,
        from,
        to,
        parent,
        trades,
        blocks,
        refused,
    }))
}

/// Decodes a `Trade` log. One that cannot be stored as it is — an amount beyond the schema's
/// 9.2·10⁹ ETH or a key count beyond 2⁶³ (no real market emits them; a contract faking the
/// event can) — is refused loudly (an error line, counted in the run's report and in
/// `/metrics`) and counts in nothing, rather than stopping the indexer: it would be the same log
/// at every restart.
fn decode_or_refuse(
    chain_id: u64,
    log: &RpcLog,
    block_time: Option<u64>,
    refused: &mut u64,
) -> Option<TradeRow> {
    match TradeRow::from_log(chain_id, log, block_time) {
        Ok(t) => Some(t),
        Err(e) => {
            *refused += 1;
            rpc::RETRIES
                .refused_logs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(target: "indexer::decode", block = log.block(), log_index = log.position().1, tx = ?log.transaction_hash, error = %e, "refusing a Trade log that cannot be stored as it is: it is not counted");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::Bytes;

    use super::*;
    use crate::decode::tests::log;

    /// A `Trade` log whose amount the schema cannot hold (~2²⁵⁶ wei) is refused and counted, not
    /// fatal; an ordinary one decodes.
    #[test]
    fn unstorable_trade_logs_are_refused_not_fatal() {
        let mut refused = 0;
        assert!(decode_or_refuse(1, &log(), None, &mut refused).is_some());
        assert_eq!(refused, 0);
        let mut huge = log();
        let mut data = huge.data.to_vec();
        // Words: trader, subject, isBuy, shareAmount, ethAmount, ...: ethAmount = 2^256 - 1.
        data[4 * 32..5 * 32].fill(0xff);
        huge.data = Bytes::from(data);
        assert!(decode_or_refuse(1, &huge, None, &mut refused).is_none());
        let mut keys = log();
        let mut data = keys.data.to_vec();
        data[3 * 32..4 * 32].fill(0xff); // shareAmount beyond i64
        keys.data = Bytes::from(data);
        assert!(decode_or_refuse(1, &keys, None, &mut refused).is_none());
        assert_eq!(refused, 2);
        // A log index near 2^32 is stored as itself.
        let mut far = log();
        far.log_index = Some(alloy::primitives::U64::from(u32::MAX as u64 - 1));
        let t = decode_or_refuse(1, &far, None, &mut refused).expect("decoded");
        assert_eq!(t.log_index, u32::MAX as i64 - 1);
    }
}
