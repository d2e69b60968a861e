//! The JSON shapes of the responses (documented in the OpenAPI schema).

use keymarket_store::amount::Wei;
use rust_decimal::Decimal;
use serde::Serialize;
use utoipa::ToSchema;

mod market;
pub use market::*;

/// An exact ETH amount.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
pub struct Amount {
    /// ETH, as an exact decimal string.
    pub eth: String,
    /// Wei, as an integer string.
    pub wei: String,
}

impl Amount {
    pub(crate) fn from_wei(wei: Decimal) -> Self {
        let mut eth = wei;
        eth.set_scale(eth.scale() + 18).expect("scale within 28");
        Self {
            eth: eth.normalize().to_string(),
            wei: wei.to_string(),
        }
    }

    /// The amount of a [`Wei`] value.
    pub(crate) fn of(w: Wei) -> Self {
        Self::from_wei(w.to_decimal_wei())
    }
}

/// Protocol numbers of a market, all time or over a window of days.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Market id.
    pub market: i64,
    /// First day of the window (inclusive), when one was asked for.
    pub from: Option<String>,
    /// Last day of the window (inclusive), when one was asked for.
    pub to: Option<String>,
    /// ETH held by the curves now (all-time buy minus sell volume), whatever the window.
    pub tvl: Amount,
    /// What the protocol earned: protocol fees net of referral payouts.
    pub protocol_revenue: Amount,
    /// Σ protocolEthAmount: protocol fees charged, referral payouts included (what friend.tech
    /// decoders read as protocol revenue).
    pub gross_protocol_fees: Amount,
    /// Σ of the referral payouts (`ReferralFeePaid`), paid out of the protocol fees.
    pub referral_payouts: Amount,
    /// Σ subjectEthAmount.
    pub subject_revenue: Amount,
    /// Protocol plus subject fees charged (gross).
    pub total_fees: Amount,
    /// Σ ethAmount over buys.
    pub buy_volume: Amount,
    /// Σ ethAmount over sells.
    pub sell_volume: Amount,
    /// Buy plus sell volume.
    pub volume: Amount,
    /// Buy minus sell volume (over the window; all time = TVL).
    pub net_volume: Amount,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Distinct traders.
    pub traders: i64,
    /// Distinct subjects.
    pub subjects: i64,
}

/// A market's daily series.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Daily {
    /// Market id.
    pub market: i64,
    /// UTC days with trades, oldest first.
    pub days: Vec<Day>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// How concentrated trading is across subjects, per UTC day and over the window (Dune-style
/// market concentration). Volume is Σ ethAmount of buys and sells (price before fees). Shares
/// are exact decimal fractions with 6 decimals, truncated (rounded toward zero), as strings;
/// null when the volume is zero (only free first keys traded).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcentrationSeries {
    /// Market id.
    pub market: i64,
    /// First day asked for (YYYY-MM-DD), if given.
    pub from: Option<String>,
    /// Last day asked for (YYYY-MM-DD), if given.
    pub to: Option<String>,
    /// UTC days with trades, oldest first.
    pub days: Vec<ConcentrationDay>,
    /// The whole window: each subject's volume summed over its days in it.
    pub window: ConcentrationWindow,
}

/// One UTC day's concentration.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcentrationDay {
    /// YYYY-MM-DD.
    pub date: String,
    /// Distinct subjects traded that day (trades with a non-zero amount).
    pub subjects: i64,
    /// That day's volume.
    pub volume: Amount,
    /// The 10 largest subjects' share of the day's volume, 0–1, e.g. "0.734210".
    #[schema(pattern = r"^[01]\.[0-9]{6}$")]
    pub top10_share: Option<String>,
    /// Herfindahl–Hirschman index: Σ over subjects of (subject volume / day volume)², 0–1
    /// (multiply by 10,000 for the antitrust-style 0–10,000 scale).
    #[schema(pattern = r"^[01]\.[0-9]{6}$")]
    pub hhi: Option<String>,
}

/// The concentration over the whole window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConcentrationWindow {
    /// Distinct subjects traded in the window.
    pub subjects: i64,
    /// The window's volume.
    pub volume: Amount,
    /// The 10 largest subjects' share of the window's volume, 0–1.
    #[schema(pattern = r"^[01]\.[0-9]{6}$")]
    pub top10_share: Option<String>,
    /// HHI of the subjects' shares of the window's volume, 0–1.
    #[schema(pattern = r"^[01]\.[0-9]{6}$")]
    pub hhi: Option<String>,
}

/// The key price index (Dune-style "median key price of the top subjects over time"): per UTC
/// day, the median and the mean price of the next key of the `top` subjects with the largest
/// all-time volume (ties by address; the ranking is today's, applied to every day, so the
/// index follows one fixed basket). A subject's price on a day is the price before fees of its
/// next key on its own curve at the supply after its last trade of that day, carried forward
/// on days it did not trade, from its first trade on; subjects whose curve is not known (only
/// free first keys traded) are left out. Exact wei: the median of an even count is the average
/// of the two middle prices truncated to the wei, the mean is truncated too. Days run from the
/// first day one of the subjects traded (or `from`) to the market's last day with trades (or
/// `to`). Served from a snapshot at most 30 s old.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPriceIndex {
    /// Market id.
    pub market: i64,
    /// How many subjects were asked for.
    pub top: i64,
    /// First day asked for (YYYY-MM-DD), if given.
    pub from: Option<String>,
    /// Last day asked for (YYYY-MM-DD), if given.
    pub to: Option<String>,
    /// The subjects followed, largest all-time volume first (fewer than `top` if the market has
    /// fewer).
    pub subjects: Vec<KeyPriceSubject>,
    /// Every UTC day of the range on which at least one of them is priced, oldest first.
    pub days: Vec<KeyPriceDay>,
}

/// A subject the price index follows.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPriceSubject {
    /// Subject address.
    pub subject: String,
    /// Its curve as a multiple of friend.tech's s²/16000 (1 standard, 10 steep; 0 not known:
    /// left out of the index).
    pub curve: i64,
    /// Its all-time volume (the ranking).
    pub volume: Amount,
    /// Its first day with trades (YYYY-MM-DD).
    pub first_date: Option<String>,
}

/// One UTC day of the price index.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyPriceDay {
    /// YYYY-MM-DD.
    pub date: String,
    /// Subjects priced that day.
    pub subjects: i64,
    /// The median of their next-key prices.
    pub median: Amount,
    /// The mean of their next-key prices (truncated to the wei).
    pub mean: Amount,
}

/// One subject's holders over time: per UTC day from its first trade to the market's last day
/// with trades, at the end of the day, replayed from its trades. Served from a snapshot at
/// most 30 s old.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldersHistory {
    /// Market id.
    pub market: i64,
    /// Subject address.
    pub subject: String,
    /// Every UTC day from its first trade, oldest first.
    pub days: Vec<HoldersHistoryDay>,
}

/// One UTC day of a subject's holders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HoldersHistoryDay {
    /// YYYY-MM-DD.
    pub date: String,
    /// Addresses holding its keys (balance > 0) at the end of the day.
    pub holders: i64,
    /// Keys in existence at the end of the day.
    pub supply: i64,
}

/// One UTC day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    /// YYYY-MM-DD.
    pub date: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Σ ethAmount over buys.
    pub buy_volume: Amount,
    /// Σ ethAmount over sells.
    pub sell_volume: Amount,
    /// Protocol fees net of referral payouts.
    pub protocol_revenue: Amount,
    /// Σ protocolEthAmount (referral payouts included).
    pub gross_protocol_fees: Amount,
    /// Σ of the referral payouts.
    pub referral_payouts: Amount,
    /// Σ subjectEthAmount.
    pub subject_revenue: Amount,
    /// Distinct traders that traded that day.
    pub active_traders: i64,
    /// Traders whose first trade was that day.
    pub new_traders: i64,
    /// Traders that traded that day and had traded before (active − new).
    pub returning_traders: i64,
    /// Subjects whose first trade was that day.
    pub new_subjects: i64,
}

/// Top referrers.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopReferrers {
    /// Market id.
    pub market: i64,
    /// Referrers, largest payouts first.
    pub referrers: Vec<Referrer>,
}

/// A referrer's payouts.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Referrer {
    /// Address.
    pub address: String,
    /// Referral payouts received.
    pub referrals: i64,
    /// Their sum.
    pub amount: Amount,
    /// The first payout, Unix seconds.
    pub first_time: i64,
}

/// Top subjects.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopSubjects {
    /// Market id.
    pub market: i64,
    /// Subjects, best first.
    pub subjects: Vec<SubjectSummary>,
}

/// A subject's aggregates.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectSummary {
    /// The subject's address.
    pub subject: String,
    /// Keys outstanding.
    pub supply: i64,
    /// Traders holding at least one key.
    pub holders: i64,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Σ ethAmount.
    pub volume: Amount,
    /// Σ subjectEthAmount.
    pub fees_earned: Amount,
    /// Unix time of its first trade.
    pub first_trade_time: i64,
    /// Its curve, as a multiple of friend.tech's s²/16000 ETH per key (1; 10 for the steep
    /// curve), read off its trades' prices; 0 while unknown (only its free first key traded).
    pub curve: i64,
    /// Price of the next key before fees (the contract's `getBuyPrice(subject, 1)`); null
    /// while the curve is unknown.
    pub buy_price: Option<Amount>,
    /// What selling one key fetches before fees (`getSellPrice(subject, 1)`); null when only
    /// the last key, which cannot be sold, is out, or while the curve is unknown.
    pub sell_price: Option<Amount>,
}

/// Top traders.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopTraders {
    /// Market id.
    pub market: i64,
    /// Traders, best first.
    pub traders: Vec<TraderSummary>,
}

/// A trader's aggregates.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraderSummary {
    /// The trader's address.
    pub trader: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Σ ethAmount.
    pub volume: Amount,
    /// Σ protocol and subject fees paid.
    pub fees_paid: Amount,
    /// Unix time of the first trade.
    pub first_trade_time: i64,
    /// Realised profit and loss (average cost): Σ over its sells of the proceeds after fees
    /// less the cost basis of the keys sold. Negative for a loss.
    pub realised_pnl: Amount,
}

/// One subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectOne {
    /// Market id.
    pub market: i64,
    /// Its aggregates.
    pub subject: SubjectSummary,
}

/// A page of trades.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trades {
    /// Market id.
    pub market: i64,
    /// Trades, newest first.
    pub trades: Vec<Trade>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One trade (a `Trade` event).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    /// Block number.
    pub block: i64,
    /// Log index in the block.
    pub log_index: i64,
    /// Transaction hash.
    pub tx_hash: String,
    /// Block time (unix seconds).
    pub time: i64,
    /// Trader.
    pub trader: String,
    /// Subject.
    pub subject: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Keys traded.
    pub shares: i64,
    /// ethAmount: the curve price of the keys.
    pub eth_amount: Amount,
    /// protocolEthAmount.
    pub protocol_fee: Amount,
    /// subjectEthAmount.
    pub subject_fee: Amount,
    /// The subject's supply after the trade.
    pub supply: i64,
}

/// A page of a subject's holders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holders {
    /// Market id.
    pub market: i64,
    /// The subject.
    pub subject: String,
    /// Holders, largest balance first.
    pub holders: Vec<Holder>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A holder of a subject's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct Holder {
    /// The trader.
    pub trader: String,
    /// Keys held.
    pub balance: i64,
}

/// A page of a trader's holdings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraderHoldings {
    /// Market id.
    pub market: i64,
    /// The trader.
    pub trader: String,
    /// Holdings, largest balance first.
    pub holdings: Vec<Holding>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A subject's daily series.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectDaily {
    /// Market id.
    pub market: i64,
    /// The subject.
    pub subject: String,
    /// UTC days on which its keys traded, oldest first.
    pub days: Vec<SubjectDay>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A subject's trades of one UTC day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectDay {
    /// YYYY-MM-DD.
    pub date: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Σ ethAmount over buys.
    pub buy_volume: Amount,
    /// Σ ethAmount over sells.
    pub sell_volume: Amount,
    /// Σ subjectEthAmount: what the subject earned that day.
    pub fees_earned: Amount,
}

/// One trader.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraderOne {
    /// Market id.
    pub market: i64,
    /// Its aggregates.
    pub trader: TraderSummary,
    /// Its current holdings: the first page of /v1/traders/{address}/holdings (100, largest
    /// first).
    pub holdings: Vec<Holding>,
    /// Pass as `cursor` to /v1/traders/{address}/holdings for the rest; null when that was all.
    pub holdings_next_cursor: Option<String>,
}

/// Keys of one subject held.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holding {
    /// The subject.
    pub subject: String,
    /// Keys held.
    pub balance: i64,
    /// What the keys held cost, fees included (average cost: each sell releases the cost of
    /// the keys sold in proportion).
    pub cost_basis: Amount,
}

/// Weekly retention cohorts (Dune-style): traders grouped by the UTC week of their first trade,
/// weeks starting on Monday 00:00 UTC, and how many of each cohort traded in each week since.
/// Counts only trades with a non-zero amount.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Retention {
    /// Market id.
    pub market: i64,
    /// The Monday of the first week shown (null: no cohort).
    pub from_week: Option<String>,
    /// The Monday of the last week shown: every cohort's activity runs to the end of that week.
    pub to_week: Option<String>,
    /// The weeks with new traders, oldest first.
    pub cohorts: Vec<RetentionCohort>,
}

/// The traders whose first trade fell in one week.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RetentionCohort {
    /// The week's Monday, YYYY-MM-DD.
    pub week: String,
    /// Traders whose first trade fell in that week.
    pub size: i64,
    /// Entry k: how many of them traded in the k-th week after it (entry 0, the cohort's own
    /// week, equals `size`), up to `toWeek`.
    pub active: Vec<i64>,
}

/// The largest net buyers or net sellers over a window of UTC days ("whales").
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetFlowLeaders {
    /// Market id.
    pub market: i64,
    /// The window's first day, YYYY-MM-DD (null: no trade yet).
    pub from: Option<String>,
    /// The window's last day, YYYY-MM-DD.
    pub to: Option<String>,
    /// `buyers` (largest net flow first) or `sellers` (most negative first).
    pub side: String,
    /// Traders with a trade in the window.
    pub traders: i64,
    /// The leaders: net buyers have a positive net flow, net sellers a negative one.
    pub leaders: Vec<NetFlowTrader>,
}

/// One trader's flows over the window.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetFlowTrader {
    /// The trader.
    pub trader: String,
    /// `bought − sold`, exact and signed (negative for a net seller).
    pub net_flow: Amount,
    /// Σ ethAmount of its buys (the price before fees).
    pub bought: Amount,
    /// Σ ethAmount of its sells (the price before fees).
    pub sold: Amount,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys among them.
    pub buys: i64,
    /// Sells among them.
    pub sells: i64,
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn amounts_are_exact() {
        let a = Amount::from_wei(Decimal::from_str("62500000000000000").unwrap());
        assert_eq!(
            (a.eth.as_str(), a.wei.as_str()),
            ("0.0625", "62500000000000000")
        );
        let big = Amount::from_wei(Decimal::from_str("1165123456789012345678901").unwrap());
        assert_eq!(big.eth, "1165123.456789012345678901");
    }
}
