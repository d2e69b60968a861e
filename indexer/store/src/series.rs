//! Daily series (UTC days): the market's and one subject's, from the daily aggregates.

use alloy::primitives::Address;
use sqlx::{Row, any::AnyRow};

use crate::{
    Result, StoreReader,
    amount::Wei,
    error::db,
    row::{get_i64, hex, wei_at},
};

/// An inclusive range of UTC days, as days since 1970-01-01.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DayRange {
    /// The first day.
    pub from: i64,
    /// The last day.
    pub to: i64,
}

impl DayRange {
    /// Every day there is: bounds far beyond any block time, yet halved so that a day's
    /// seconds (`day × 86,400`) and `to + 1` stay within `i64` wherever a query computes them.
    pub const ALL_TIME: DayRange = DayRange {
        from: i64::MIN / 2,
        to: i64::MAX / 2,
    };

    /// From `from` (or the beginning of time) to `to` (or its end), inclusive.
    pub fn between(from: Option<i64>, to: Option<i64>) -> DayRange {
        DayRange {
            from: from.unwrap_or(Self::ALL_TIME.from),
            to: to.unwrap_or(Self::ALL_TIME.to),
        }
    }
}

/// One day of a market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DayRow {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys among them.
    pub buys: i64,
    /// Sells among them.
    pub sells: i64,
    /// ETH paid for keys bought (price, before fees).
    pub buy_volume: Wei,
    /// ETH paid for keys sold (price, before fees).
    pub sell_volume: Wei,
    /// Protocol fees, gross (referral payouts included).
    pub protocol_fees: Wei,
    /// Subject fees.
    pub subject_fees: Wei,
    /// Distinct traders that day.
    pub active_traders: i64,
    /// Traders whose first trade was that day.
    pub new_traders: i64,
    /// Subjects whose first trade was that day.
    pub new_subjects: i64,
    /// Referral payouts that day.
    pub referrals: i64,
    /// Their sum (part of `protocol_fees`).
    pub referral_payouts: Wei,
}

/// One day of one subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectDayRow {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys among them.
    pub buys: i64,
    /// Sells among them.
    pub sells: i64,
    /// ETH paid for keys bought.
    pub buy_volume: Wei,
    /// ETH paid for keys sold.
    pub sell_volume: Wei,
    /// Fees the subject earned.
    pub fees: Wei,
}

impl StoreReader {
    /// The market's first and last days with trades (`None`: no trade yet).
    pub async fn day_span(&self, market_id: i64) -> Result<Option<DayRange>> {
        let r = sqlx::query(
            "SELECT MIN(day), MAX(day) FROM stats_daily WHERE market_id = $1 AND trades > 0",
        )
        .bind(market_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading the market's first and last days"))?;
        Ok(
            match (r.get::<Option<i64>, _>(0), r.get::<Option<i64>, _>(1)) {
                (Some(from), Some(to)) => Some(DayRange { from, to }),
                _ => None,
            },
        )
    }

    /// The market's days in `days` that have trades, oldest first, at most `limit`.
    pub async fn daily(&self, market_id: i64, days: DayRange, limit: i64) -> Result<Vec<DayRow>> {
        let rows = sqlx::query(
            "SELECT day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, \
             protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, new_subjects, \
             referrals, referral_gwei, referral_rem FROM stats_daily WHERE market_id = $1 AND day >= $2 AND day <= $3 ORDER BY day LIMIT $4",
        )
        .bind(market_id)
        .bind(days.from)
        .bind(days.to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the daily series"))?;
        Ok(rows.iter().map(day_row).collect())
    }

    /// One subject's days in `days` that have trades, oldest first, at most `limit`.
    pub async fn subject_daily(
        &self,
        market_id: i64,
        subject: Address,
        days: DayRange,
        limit: i64,
    ) -> Result<Vec<SubjectDayRow>> {
        let rows = sqlx::query(
            "SELECT day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, fees_gwei, fees_rem \
             FROM subject_daily WHERE market_id = $1 AND subject = $2 AND day >= $3 AND day <= $4 ORDER BY day LIMIT $5",
        )
        .bind(market_id)
        .bind(hex(subject.as_slice()))
        .bind(days.from)
        .bind(days.to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading a subject's daily series"))?;
        Ok(rows
            .iter()
            .map(|r| SubjectDayRow {
                day: get_i64(r, 0),
                trades: get_i64(r, 1),
                buys: get_i64(r, 2),
                sells: get_i64(r, 3),
                buy_volume: wei_at(r, 4),
                sell_volume: wei_at(r, 6),
                fees: wei_at(r, 8),
            })
            .collect())
    }
}

fn day_row(r: &AnyRow) -> DayRow {
    DayRow {
        day: get_i64(r, 0),
        trades: get_i64(r, 1),
        buys: get_i64(r, 2),
        sells: get_i64(r, 3),
        buy_volume: wei_at(r, 4),
        sell_volume: wei_at(r, 6),
        protocol_fees: wei_at(r, 8),
        subject_fees: wei_at(r, 10),
        active_traders: get_i64(r, 12),
        new_traders: get_i64(r, 13),
        new_subjects: get_i64(r, 14),
        referrals: get_i64(r, 15),
        referral_payouts: wei_at(r, 16),
    }
}
