//! Subjects and traders: one, or a leaderboard in an order that an index of the same expression
//! serves (see `DEFERRABLE_INDEXES` and the migrations; a unit test keeps them equal).

use alloy::primitives::Address;
use sqlx::{AssertSqlSafe, Row, any::AnyRow};

use crate::{
    Result, StoreReader,
    amount::{Wei, amount_desc},
    error::db,
    row::{get_i64, hex, wei_at},
};

/// Orders an exact amount column pair (normalised gwei, then the remainder), descending.
pub(crate) const BY_VOLUME: &str = amount_desc!("volume");
/// The same for fees.
const BY_FEES: &str = amount_desc!("fees");

/// How a leaderboard of subjects is ordered (largest first; ties by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SubjectOrder {
    /// Volume traded in the subject's keys.
    Volume,
    /// Fees the subject earned.
    Fees,
    /// Holders.
    Holders,
    /// Keys in existence.
    Supply,
    /// The current price (the curve's multiple × supply²).
    Price,
    /// Trades.
    Trades,
}

impl SubjectOrder {
    fn order_by(self) -> &'static str {
        match self {
            Self::Volume => BY_VOLUME,
            Self::Fees => BY_FEES,
            Self::Holders => "holders DESC",
            Self::Supply => "supply DESC",
            Self::Price => "(curve * supply * supply) DESC",
            Self::Trades => "trades DESC",
        }
    }
}

/// How a leaderboard of traders is ordered (largest first; ties by address).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraderOrder {
    /// Volume traded.
    Volume,
    /// Fees paid.
    Fees,
    /// Trades.
    Trades,
    /// Realised profit and loss.
    Pnl,
}

impl TraderOrder {
    fn order_by(self) -> &'static str {
        match self {
            Self::Volume => BY_VOLUME,
            Self::Fees => BY_FEES,
            Self::Trades => "trades DESC",
            Self::Pnl => "pnl_gwei DESC, pnl_rem DESC",
        }
    }
}

/// A subject's aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectRow {
    /// The subject (lowercase 0x hex).
    pub subject: String,
    /// Keys in existence.
    pub supply: i64,
    /// Addresses holding keys.
    pub holders: i64,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Volume traded in its keys.
    pub volume: Wei,
    /// Fees it earned.
    pub fees: Wei,
    /// Its first trade, Unix seconds.
    pub first_time: i64,
    /// Its curve's multiple of friend.tech's (0: not known yet).
    pub curve: i64,
}

/// A trader's aggregates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraderRow {
    /// The trader (lowercase 0x hex).
    pub trader: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Volume traded.
    pub volume: Wei,
    /// Fees paid.
    pub fees: Wei,
    /// The first trade, Unix seconds.
    pub first_time: i64,
    /// Realised profit and loss (average cost).
    pub pnl: Wei,
}

const SUBJECT_COLUMNS: &str = "subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, curve";
const TRADER_COLUMNS: &str =
    "trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, pnl_gwei, pnl_rem";

fn subject_row(r: &AnyRow) -> SubjectRow {
    SubjectRow {
        subject: r.get(0),
        supply: get_i64(r, 1),
        holders: get_i64(r, 2),
        trades: get_i64(r, 3),
        volume: wei_at(r, 4),
        fees: wei_at(r, 6),
        first_time: get_i64(r, 8),
        curve: get_i64(r, 9),
    }
}

fn trader_row(r: &AnyRow) -> TraderRow {
    TraderRow {
        trader: r.get(0),
        trades: get_i64(r, 1),
        volume: wei_at(r, 2),
        fees: wei_at(r, 4),
        first_time: get_i64(r, 6),
        pnl: wei_at(r, 7),
    }
}

/// Whose holdings a page lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldingsOf {
    /// A subject's holders.
    Subject(Address),
    /// A trader's keys.
    Trader(Address),
}

/// One holding: the other side (the trader of a subject's holders, the subject of a trader's
/// keys), the keys held and their cost basis.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldingRow {
    /// The other side's address (lowercase 0x hex).
    pub party: String,
    /// Keys held (> 0).
    pub balance: i64,
    /// What they cost (average cost basis).
    pub cost: Wei,
}

impl StoreReader {
    /// The market's top `limit` subjects in `order`.
    pub async fn top_subjects(
        &self,
        market_id: i64,
        order: SubjectOrder,
        limit: i64,
    ) -> Result<Vec<SubjectRow>> {
        let rows = self
            .top(
                "subjects",
                "subject",
                SUBJECT_COLUMNS,
                order.order_by(),
                market_id,
                limit,
            )
            .await?;
        Ok(rows.iter().map(subject_row).collect())
    }

    /// The market's top `limit` traders in `order`.
    pub async fn top_traders(
        &self,
        market_id: i64,
        order: TraderOrder,
        limit: i64,
    ) -> Result<Vec<TraderRow>> {
        let rows = self
            .top(
                "traders",
                "trader",
                TRADER_COLUMNS,
                order.order_by(),
                market_id,
                limit,
            )
            .await?;
        Ok(rows.iter().map(trader_row).collect())
    }

    /// One subject of the market (`None`: it never traded there).
    pub async fn subject(&self, market_id: i64, subject: Address) -> Result<Option<SubjectRow>> {
        let sql =
            format!("SELECT {SUBJECT_COLUMNS} FROM subjects WHERE market_id = $1 AND subject = $2");
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(market_id)
            .bind(hex(subject.as_slice()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a subject"))?
            .as_ref()
            .map(subject_row))
    }

    /// One trader of the market (`None`: they never traded there).
    pub async fn trader(&self, market_id: i64, trader: Address) -> Result<Option<TraderRow>> {
        let sql =
            format!("SELECT {TRADER_COLUMNS} FROM traders WHERE market_id = $1 AND trader = $2");
        Ok(sqlx::query(AssertSqlSafe(sql))
            .bind(market_id)
            .bind(hex(trader.as_slice()))
            .fetch_optional(&self.pool)
            .await
            .map_err(db("reading a trader"))?
            .as_ref()
            .map(trader_row))
    }

    /// A page of holdings, largest balance first (ties by the other side's address), after the
    /// keyset position `after` (balance, address) when given; at most `limit` rows. Reads an
    /// index of exactly that order (holdings_by_balance, holdings_by_trader).
    pub async fn holdings(
        &self,
        market_id: i64,
        of: HoldingsOf,
        after: Option<(i64, Address)>,
        limit: i64,
    ) -> Result<Vec<HoldingRow>> {
        let (of, other, address) = match of {
            HoldingsOf::Subject(a) => ("subject", "trader", a),
            HoldingsOf::Trader(a) => ("trader", "subject", a),
        };
        // Past every address: the first page starts at the largest balance.
        let (after_balance, after) =
            after.map_or((i64::MAX, String::new()), |(b, a)| (b, hex(a.as_slice())));
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {other}, balance, cost_gwei, cost_rem FROM holdings WHERE market_id = $1 AND {of} = $2 AND balance > 0 \
             AND (balance < $3 OR (balance = $3 AND {other} > $4)) ORDER BY balance DESC, {other} LIMIT $5"
        )))
        .bind(market_id)
        .bind(hex(address.as_slice()))
        .bind(after_balance)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading holdings"))?;
        Ok(rows
            .iter()
            .map(|r| HoldingRow {
                party: r.get(0),
                balance: get_i64(r, 1),
                cost: wei_at(r, 2),
            })
            .collect())
    }

    async fn top(
        &self,
        table: &str,
        key: &str,
        columns: &str,
        order_by: &str,
        market_id: i64,
        limit: i64,
    ) -> Result<Vec<AnyRow>> {
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {columns} FROM {table} WHERE market_id = $1 ORDER BY {order_by}, {key} LIMIT $2"
        )))
        .bind(market_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a leaderboard"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::indexes::DEFERRABLE_INDEXES;

    /// Each leaderboard order is the expression of the index that serves it (else the query
    /// sorts the whole table).
    #[test]
    fn every_order_is_an_index() {
        let index = |name: &str| {
            DEFERRABLE_INDEXES
                .iter()
                .find(|(n, _)| *n == name)
                .unwrap_or_else(|| panic!("no index {name}"))
                .1
        };
        for (order, name) in [
            (SubjectOrder::Volume, "subjects_by_volume"),
            (SubjectOrder::Fees, "subjects_by_fees"),
            (SubjectOrder::Holders, "subjects_by_holders"),
            (SubjectOrder::Supply, "subjects_by_supply"),
            (SubjectOrder::Price, "subjects_by_price"),
            (SubjectOrder::Trades, "subjects_by_trades"),
        ] {
            let want = format!("(market_id, {}, subject)", order.order_by());
            assert!(index(name).contains(&want), "{name}: {want}");
        }
        for (order, name) in [
            (TraderOrder::Volume, "traders_by_volume"),
            (TraderOrder::Fees, "traders_by_fees"),
            (TraderOrder::Trades, "traders_by_trades"),
            (TraderOrder::Pnl, "traders_by_pnl"),
        ] {
            let want = format!("(market_id, {}, trader)", order.order_by());
            assert!(index(name).contains(&want), "{name}: {want}");
        }
    }
}
