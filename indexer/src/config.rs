//! What to index and how: the markets, the run's settings, and the report of what a run did.

use std::time::Duration;

use alloy::primitives::Address;
use tokio_util::sync::CancellationToken;

use crate::fetch::FetchConfig;

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
    /// Another provider of the same chain, asked before a break of the curve that the first
    /// provider keeps answering is believed: when its answer keeps the curve, it is stored
    /// instead (see `second_opinion`).
    pub second_provider: Option<alloy::providers::RootProvider>,
    /// Cancelled to stop the run cleanly (SIGTERM, Ctrl-C): the batch being committed commits,
    /// fetches and waits are abandoned, and [`run`] returns what it did.
    pub shutdown: CancellationToken,
    /// The name under which this process holds markets' leases when several processes index
    /// one PostgreSQL database (see `ownership`); `None` when it indexes alone. A long backfill
    /// drops the database-wide indexes only while this process owns every market.
    pub owner: Option<std::sync::Arc<str>>,
    /// Runs of this process in a long backfill with the database-wide indexes dropped (see
    /// `bulk_min_trades`): while any is, `ownership` hands no market off.
    pub bulk_runs: std::sync::Arc<std::sync::atomic::AtomicUsize>,
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
            second_provider: None,
            shutdown: CancellationToken::new(),
            owner: None,
            bulk_runs: Default::default(),
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
    /// Time spent building the aggregates a long backfill deferred (at the head).
    pub aggregate_time: Duration,
    /// Wall-clock time.
    pub elapsed: Duration,
    /// Database outages waited out (a failed transaction, rolled back and tried again).
    pub database_retries: u64,
    /// `Trade` logs refused because they cannot be stored as they are (see [`Batch::refused`]).
    pub refused_logs: u64,
    /// Batches refused because they held trades already stored ([`crate::store::Error::AlreadyStored`]).
    pub refused_batches: u64,
    /// Long backfills rolled back and indexed again because a provider's answer had put a
    /// trade at a wrong block ([`crate::store::Error::StoredTwice`]).
    pub repairs: u64,
    /// Batches stored although their trades break the curve, because the chain itself said so
    /// each time they were fetched again (see `verify`).
    pub unverified: u64,
    /// Every block below this one is indexed (the checkpoint when the run ended).
    pub next_block: u64,
    /// The run was stopped by [`IndexerConfig::shutdown`].
    pub stopped: bool,
}
