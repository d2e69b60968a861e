//! keymarket's database (the `keymarket-store` crate): raw trades, the unfinalized block window,
//! checkpoints and the incrementally maintained aggregates, on SQLite (default) or PostgreSQL,
//! with the same SQL on both (placeholders `$n`, `ON CONFLICT … DO UPDATE`, `RETURNING`).
//!
//! Two faces, one per kind of user:
//!
//! - [`StoreReader`] — what the API, the exports and the CLI's reports hold: typed reads only.
//!   Cheap to clone; on SQLite its connections run beside the writer (WAL mode).
//!   - markets and progress: [`markets`](StoreReader::markets),
//!     [`next_block`](StoreReader::next_block), [`window`](StoreReader::window),
//!     [`unverified`](StoreReader::unverified), [`trade_counts`](StoreReader::trade_counts),
//!     [`trades_in_block`](StoreReader::trades_in_block), [`raw_trades`](StoreReader::raw_trades)
//!   - totals and series: [`totals`](StoreReader::totals), [`day_span`](StoreReader::day_span),
//!     [`daily`](StoreReader::daily), [`subject_daily`](StoreReader::subject_daily),
//!     [`retention`](StoreReader::retention), [`concentration`](StoreReader::concentration),
//!     [`price_index`](StoreReader::price_index), [`holder_history`](StoreReader::holder_history)
//!   - leaderboards and parties: [`top_subjects`](StoreReader::top_subjects),
//!     [`top_traders`](StoreReader::top_traders), [`subject`](StoreReader::subject),
//!     [`trader`](StoreReader::trader), [`holdings`](StoreReader::holdings),
//!     [`has_subject`](StoreReader::has_subject), [`has_trader`](StoreReader::has_trader),
//!     [`net_flow_leaders`](StoreReader::net_flow_leaders),
//!     [`top_referrers`](StoreReader::top_referrers), [`fee_settings`](StoreReader::fee_settings)
//!   - trades: [`trades`](StoreReader::trades) (a page), [`trades_in_order`](StoreReader::trades_in_order)
//!     (a stream, for exports)
//!   - the indexer's own reads: [`subject_states`](StoreReader::subject_states),
//!     [`last_trade_block`](StoreReader::last_trade_block),
//!     [`uniqueness_proved`](StoreReader::uniqueness_proved) (no trade stored twice)
//!   - analysts' SQL: [`sql_runner`](StoreReader::sql_runner) (read-only, on connections of its
//!     own, see [`SqlRunner`])
//! - [`StoreWriter`] — what the indexer holds: every read (it dereferences to a
//!   [`StoreReader`]) and the writes, on the write connection (a native connection on SQLite):
//!   [`connect`](StoreWriter::connect) (migrates), [`ensure_chain`](StoreWriter::ensure_chain),
//!   [`ensure_market`](StoreWriter::ensure_market), [`commit`](StoreWriter::commit),
//!   [`rollback`](StoreWriter::rollback), [`record_head`](StoreWriter::record_head),
//!   [`record_stall`](StoreWriter::record_stall), and the long backfill's
//!   [`drop_secondary_indexes`](StoreWriter::drop_secondary_indexes),
//!   [`build_secondary_indexes`](StoreWriter::build_secondary_indexes),
//!   [`first_duplicate_block`](StoreWriter::first_duplicate_block); the markets' leases
//!   between several indexer processes on PostgreSQL: [`try_acquire`](StoreWriter::try_acquire),
//!   [`heartbeat`](StoreWriter::heartbeat), [`release`](StoreWriter::release),
//!   [`leave`](StoreWriter::leave), [`live_processes`](StoreWriter::live_processes),
//!   [`take_from_dead`](StoreWriter::take_from_dead), [`forget_dead`](StoreWriter::forget_dead),
//!   [`bidders`](StoreWriter::bidders), [`unowned_for_long`](StoreWriter::unowned_for_long),
//!   [`owns_every_market`](StoreWriter::owns_every_market) (and the reader's
//!   [`owners`](StoreReader::owners)).
//!
//! Every batch — its rows, its aggregate updates, its block hashes and the checkpoint — commits
//! in one transaction, so a process killed at any instant leaves either all of a batch or none
//! of it. Rollbacks (reorgs) subtract exactly what the orphaned trades added, in one transaction.
//!
//! Inside: `connect` opens, `commit` writes a batch or a rollback through `write_tx` (the write
//! connection and its statements, built by `statements`); `aggregates` folds a batch into
//! per-table deltas and `aggregate_writes` writes them; `cost_basis` keeps the average-cost basis;
//! `events` stores referral and fee events; `indexes` the deferred indexes; the other modules are
//! reads, one subject each.

// The batch's aggregates are keyed by addresses, several lookups per trade: foldhash (hashbrown's
// default hasher) instead of SipHash, which was a sixth of the indexer's own thread's work.

use alloy::primitives::{Address, B256};
use sqlx::AnyPool;

pub use crate::{
    concentration::{Concentration, ConcentrationDay, ConcentrationReport},
    error::{Error, Result},
    events::{FeeEventRow, FeeSetting, FeeSettings, ReferralRow, ReferrerRow},
    holder_history::HoldersDay,
    index_lock::IndexLock,
    leaders::{HoldingRow, HoldingsOf, SubjectOrder, SubjectRow, TraderOrder, TraderRow},
    lease::{Bid, DEAD_AFTER_MS, LEASE_TTL_MS, OwnerRow},
    netflow::{NetFlowLeaders, NetFlowRow},
    price_index::{IndexSubject, PriceIndex, PriceIndexDay},
    reads::MarketRow,
    retention::{Cohort, WeekRange, week_of, week_start},
    row::{TradeRow, hex},
    series::{DayRange, DayRow, SubjectDayRow},
    sql::{Cell, READER_ROLE, SqlError, SqlLimits, SqlResult, SqlRunner},
    trades::{Side, StoredTrade, TradeFilter},
};
/// friend.tech's curve, from the contract's bindings (its one home), for the API's prices.
pub use keymarket_contracts::curve;

mod aggregate_writes;
mod aggregates;
pub mod amount;
pub mod calendar;
mod commit;
pub mod concentration;
mod connect;
mod copy_in;
mod cost_basis;
mod deferred;
mod deferred_gathered;
mod deferred_sums;
#[cfg(any(test, feature = "testing"))]
mod dump;
mod error;
mod events;
pub mod holder_history;
mod index_lock;
mod indexes;
mod leaders;
mod lease;
mod netflow;
pub mod price_index;
mod reads;
mod retention;
mod row;
mod series;
mod sql;
mod statements;
mod trades;
mod upserts;
mod write_tx;

/// Which database the store talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file (WAL mode).
    Sqlite,
    /// A PostgreSQL server.
    Postgres,
}

/// A market's row and checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MarketState {
    /// The market's id in this database.
    pub id: i64,
    /// The chain id.
    pub chain_id: u64,
    /// The market's address.
    pub address: Address,
    /// Every block below this one is indexed.
    pub next_block: u64,
    /// The epoch of this process's lease on the market (PostgreSQL with several indexers; see
    /// [`StoreWriter::try_acquire`]): every commit and rollback checks it in its transaction and
    /// is refused with [`Error::NotOwner`] once the market has changed hands. `None`: no lease
    /// is checked (SQLite, whose file one process holds, or a single indexer).
    pub lease_epoch: Option<i64>,
}

/// One indexed range, committed atomically.
#[derive(Debug, Default)]
pub struct Batch {
    /// The first block of the range (must equal the market's checkpoint).
    pub from: u64,
    /// The last block of the range.
    pub to: u64,
    /// Decoded trades, in chain order.
    pub trades: Vec<TradeRow>,
    /// Referral payouts (`ReferralFeePaid`), in chain order.
    pub referrals: Vec<ReferralRow>,
    /// Fee-setting events, in chain order.
    pub fee_events: Vec<FeeEventRow>,
    /// Hashes of blocks in the range worth keeping for reorg detection (the range's last block and
    /// the blocks with trades, when near the head).
    pub blocks: Vec<(u64, B256)>,
    /// The chain head when the range was fetched (recorded for the lag the API reports).
    pub head: u64,
    /// The time of the range's last block (Unix seconds, from its header), recorded with the
    /// checkpoint.
    pub to_time: u64,
    /// The block before the range and its hash on the chain the range was fetched from: the
    /// batch is refused ([`Error::Reorged`]) if the store holds another hash for that block.
    pub parent: Option<(u64, B256)>,
    /// `Trade` logs of the range refused because they cannot be stored as they are (an amount
    /// beyond the schema's range): logged and counted, not stored.
    pub refused: u64,
    /// Trades of the batch stored although they break the curve (the chain says so): marked
    /// in the same transaction.
    pub unverified: Vec<Unverified>,
}

/// A market's subject whose trades break the curve's arithmetic from a block on, although the
/// chain itself says so (`GET /v1/markets`, `/healthz`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unverified {
    /// The subject.
    pub subject: Address,
    /// The block of the first trade that broke it.
    pub block: i64,
    /// What was expected and what the chain said.
    pub reason: String,
}

/// Totals of a market over all time (from the daily aggregates).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Σ ethAmount over buys.
    pub buy_volume: amount::Wei,
    /// Σ ethAmount over sells.
    pub sell_volume: amount::Wei,
    /// Σ protocolEthAmount (gross: referral payouts included, as friend.tech's event reports it).
    pub protocol_fees: amount::Wei,
    /// Σ subjectEthAmount.
    pub subject_fees: amount::Wei,
    /// Distinct traders.
    pub traders: i64,
    /// Distinct subjects.
    pub subjects: i64,
    /// Referral payouts (`ReferralFeePaid` events).
    pub referrals: i64,
    /// Σ of their amounts: the part of `protocol_fees` that went to referrers.
    pub referral_payouts: amount::Wei,
}

/// Read access to the store (see the crate's documentation for its operations). What the API,
/// the exports and the CLI's reports hold; it cannot write.
#[derive(Debug, Clone)]
pub struct StoreReader {
    /// Readers, schema changes and the start-up bookkeeping.
    pool: AnyPool,
    backend: Backend,
    /// Where [`StoreReader::sql_runner`] connects (read-only, on a pool of its own).
    sql_target: sql::SqlTarget,
}

/// Read and write access to the store: what the indexer holds (see the crate's documentation
/// for its operations). Its reads are a [`StoreReader`]'s, through `Deref`.
#[derive(Debug, Clone)]
pub struct StoreWriter {
    reader: StoreReader,
    /// Commits and rollbacks.
    writer: write_tx::Writer,
}

impl std::ops::Deref for StoreWriter {
    type Target = StoreReader;

    fn deref(&self) -> &StoreReader {
        &self.reader
    }
}

impl StoreWriter {
    /// The read side, for handing to readers (the API in `up`, say).
    pub fn reader(&self) -> StoreReader {
        self.reader.clone()
    }
}

impl StoreReader {
    /// The backend.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for tests that inspect the database directly.
    #[cfg(any(test, feature = "testing"))]
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}
