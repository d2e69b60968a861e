//! The shapes of `/healthz` and `/v1/markets`: the service's status, each market's indexer
//! state and position, its fee settings.

use serde::Serialize;
use utoipa::ToSchema;

/// The indexer's position per market.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok` when the database answers and holds a market; `empty` when no market is indexed yet
    /// (`keymarket index` registers one). Either way the answer is HTTP 200.
    pub status: HealthStatus,
    /// Each market's position.
    pub markets: Vec<HealthMarket>,
}

/// The service's status in `/healthz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// The database answers and holds at least one market.
    Ok,
    /// No market is indexed in the database.
    Empty,
}

/// Blocks behind the head it last saw beyond which a market is `backfilling`.
pub const BACKFILL_LAG_BLOCKS: i64 = 256;

/// Seconds without the indexer recording the head after which a market is `stopped` (it records
/// the head at every committed batch, and at least every second while it follows the chain).
pub const STOPPED_AFTER_SECS: i64 = 300;

/// What the indexer is doing with a market, as far as the database tells: one vocabulary for the
/// whole project (`empty`, for no market at all, is the health's status).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum IndexerState {
    /// Registered, no batch committed yet: the indexer has never recorded the head.
    Starting,
    /// More than [`BACKFILL_LAG_BLOCKS`] blocks behind the head the indexer last saw.
    Backfilling,
    /// At the head after a long backfill, but not yet proved to hold each trade once (the
    /// trades' identity index is being built, or a trade stored twice is being repaired):
    /// figures may still change.
    Verifying,
    /// Within [`BACKFILL_LAG_BLOCKS`] of the head, seen in the last [`STOPPED_AFTER_SECS`]
    /// seconds.
    Following,
    /// Indexed and kept warm by a second indexer, ready to take over (reserved: not derived yet).
    Standby,
    /// The head not recorded for more than [`STOPPED_AFTER_SECS`] seconds: no indexer is running
    /// (or it is stuck).
    Stopped,
}

impl IndexerState {
    /// The state of a market `lag_blocks` behind the head the indexer recorded
    /// `head_seen_seconds_ago` (`None`: never), in a database whose trades are
    /// `uniqueness_proved` or not (a long backfill's, until its end).
    pub fn derive(
        lag_blocks: i64,
        head_seen_seconds_ago: Option<i64>,
        uniqueness_proved: bool,
    ) -> Self {
        match head_seen_seconds_ago {
            None => Self::Starting,
            Some(ago) if ago > STOPPED_AFTER_SECS => Self::Stopped,
            Some(_) if lag_blocks > BACKFILL_LAG_BLOCKS => Self::Backfilling,
            Some(_) if !uniqueness_proved => Self::Verifying,
            Some(_) => Self::Following,
        }
    }
}

/// One market's indexing position.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthMarket {
    /// Market id.
    pub id: i64,
    /// Chain id.
    pub chain_id: i64,
    /// Contract address.
    pub address: String,
    /// What the indexer is doing with the market (thresholds: see `/healthz`).
    pub state: IndexerState,
    /// Newest indexed block.
    pub indexed_block: i64,
    /// Chain head the indexer last saw.
    pub head_block: i64,
    /// Head minus indexed block.
    pub lag_blocks: i64,
    /// Seconds since the indexer last saw the head (null: never).
    pub head_seen_seconds_ago: Option<i64>,
    /// The first block from which some of the market's stored trades break the curve's
    /// arithmetic although the chain itself says so (null: every trade checked and consistent);
    /// `/v1/markets` lists the subjects.
    pub unverified_from_block: Option<i64>,
    /// Why the indexer is not progressing, when a provider keeps failing one of the market's
    /// ranges (null otherwise): its answers are refused, never believed, so indexing waits.
    pub stall_reason: Option<String>,
    /// During a long backfill the trades from this block on are stored but not yet counted in
    /// the aggregates (totals, leaderboards, holdings, daily series): they are built once, when
    /// the indexer reaches the head. Null: every stored trade is counted.
    pub aggregates_pending_from_block: Option<i64>,
    /// The indexer process holding the market's lease (PostgreSQL, several processes; null
    /// when no process ever held one, e.g. on SQLite).
    pub owner: Option<MarketOwner>,
}

/// Which indexer process owns a market, from its lease row.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketOwner {
    /// The process, as it names itself: `host:pid:machine:random`.
    pub name: String,
    /// How many times the market changed hands (1: its first owner).
    pub epoch: i64,
    /// Milliseconds until the lease runs out unless renewed (the owner renews it every second);
    /// negative once it has.
    pub lease_expires_in_ms: i64,
    /// Whether the lease is live: false once it has run out (nobody indexes the market until a
    /// standby takes over, within seconds).
    pub live: bool,
}

/// The indexed markets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Markets {
    /// Every market in the database.
    pub markets: Vec<MarketInfo>,
}

/// An indexed market.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketInfo {
    /// Market id (the `market` parameter).
    pub id: i64,
    /// Chain id.
    pub chain_id: i64,
    /// Contract address.
    pub address: String,
    /// First indexed block.
    pub start_block: i64,
    /// Newest indexed block.
    pub indexed_block: i64,
    /// What the indexer is doing with the market (as in `/healthz`).
    pub state: IndexerState,
    /// Blocks between the head the indexer last saw and the newest indexed block.
    pub lag_blocks: i64,
    /// Subjects whose stored trades break the curve's arithmetic from a block on, although the
    /// chain itself said so each time they were fetched again: figures that include them are
    /// the chain's, but not verified. Empty when every trade passed the check.
    pub unverified: Vec<UnverifiedSubject>,
    /// The fee settings the market's indexed events left (fields are null when no indexed
    /// event said, e.g. on friend.tech, whose contract emits none).
    pub fees: FeeInfo,
}

/// A market's fee settings, from its fee events.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct FeeInfo {
    /// The protocol fee in force, in words: `"5%"`.
    pub protocol_fee: Option<String>,
    /// The subject fee in force, in words: `"5%"`.
    pub subject_fee: Option<String>,
    /// The referrer's share of the protocol fee, in words: `"50%"`.
    pub referral_share: Option<String>,
    /// The protocol fee percent in force, 1e18 = 100% (decimal string, the contract's unit).
    pub protocol_fee_percent: Option<String>,
    /// The subject fee percent in force, 1e18 = 100% (decimal string).
    pub subject_fee_percent: Option<String>,
    /// The referrer's share of the protocol fee, basis points (decimal string).
    pub referral_share_bps: Option<String>,
    /// The time the fees are in force at: the newest indexed block's (Unix seconds). A scheduled
    /// increase whose `effectiveAt` is at or before it is in force (the contract charges it
    /// from then, applied or not) and is no longer pending.
    pub as_of: i64,
    /// Where protocol fees go.
    pub fee_destination: Option<String>,
    /// Fee increases scheduled and not yet applied (they apply no earlier than `effectiveAt`).
    pub pending_increases: Vec<PendingIncrease>,
}

/// A scheduled fee increase.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct PendingIncrease {
    /// `protocol` or `subject`.
    pub fee: String,
    /// The new percent, 1e18 = 100% (decimal string).
    pub percent: String,
    /// The new percent in words: `"6%"`.
    pub shown: String,
    /// Unix seconds from which it is in force (applied or not; the newest indexed block's time
    /// has not reached it yet).
    pub effective_at: i64,
}

/// A subject whose stored trades are not verified.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UnverifiedSubject {
    /// The subject.
    pub subject: String,
    /// The block of the first trade that broke the arithmetic.
    pub from_block: i64,
    /// What was expected, and what the chain said.
    pub reason: String,
}
