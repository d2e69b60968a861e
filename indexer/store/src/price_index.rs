//! The key price index: per UTC day, the median and the mean price of the next key of the
//! market's top subjects by all-time volume.
//!
//! A subject's price on a day is the price before fees of its next key (key number `supply`) on
//! its own curve (`subjects.curve` × s²/16000 ETH) at the supply after its last trade of that
//! day; on a day it did not trade, the price of its last trading day is carried forward, from
//! its first trade on. Subjects whose curve is not known (only free first keys traded) have no
//! price and are left out of the index.
//!
//! Read without scanning the subjects' trades, so its cost does not grow with their number: the
//! days each subject traded come from `subject_daily`, and the supply at the end of such a day
//! is one backward seek in the trades' (market, subject, block, log index) index, bounded by
//! the market's last block with trades by the end of that day (one backward seek in the
//! (market, block time) index).
//! So a rebuild is about (top subjects × their trading days) seeks, ~3,600 for 10 subjects over
//! a year, whatever the trade count.

use foldhash::HashMap;
use futures::TryStreamExt;
use sqlx::{AssertSqlSafe, Row};

use keymarket_contracts::curve::KEY_UNIT;

use crate::{
    Result, StoreReader,
    amount::Wei,
    error::db,
    leaders::BY_VOLUME,
    row::{get_i64, wei_at},
    series::DayRange,
};

/// Most subjects the index may follow.
pub const MAX_TOP: usize = 50;

/// One of the subjects the index follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexSubject {
    /// The subject (lowercase 0x hex).
    pub subject: String,
    /// Its curve as a multiple of friend.tech's s²/16000 (0: not known; left out).
    pub curve: i64,
    /// Its all-time volume (the ranking).
    pub volume: Wei,
    /// Its first trading day (days since 1970-01-01); `None` if it has none.
    pub first_day: Option<i64>,
}

/// One UTC day of the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PriceIndexDay {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Subjects priced that day (those that had traded by then, with a known curve).
    pub subjects: i64,
    /// The median of their prices, wei: the middle one, or with an even count the average of
    /// the two middle ones truncated to the wei.
    pub median: u128,
    /// The mean of their prices, wei, truncated.
    pub mean: u128,
}

/// The index over a range of days.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PriceIndex {
    /// The subjects followed, largest volume first (ties by address).
    pub subjects: Vec<IndexSubject>,
    /// Every day from the first day one of them traded (or the range's start) to the market's
    /// last day with trades (or the range's end), oldest first.
    pub days: Vec<PriceIndexDay>,
}

/// The price before fees of key number `supply` (0-based) on a curve `curve` × s²/16000.
pub fn next_key_price(curve: i64, supply: i64) -> u128 {
    let s = supply.max(0) as u128;
    curve.max(0) as u128 * s * s * KEY_UNIT
}

/// (median, mean) of `prices` (not empty), both truncated to the wei; the median of an even
/// count is the average of the two middle values.
pub fn median_and_mean(prices: &mut [u128]) -> (u128, u128) {
    prices.sort_unstable();
    let n = prices.len();
    let median = if n % 2 == 1 {
        prices[n / 2]
    } else {
        // (a + b) / 2 without overflow.
        let (a, b) = (prices[n / 2 - 1], prices[n / 2]);
        a / 2 + b / 2 + (a % 2 + b % 2) / 2
    };
    let mean = prices.iter().sum::<u128>() / n as u128;
    (median, mean)
}

/// One subject's supply at the end of each day it traded, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SupplySeries {
    /// (day, supply after its last trade of that day).
    pub days: Vec<(i64, i64)>,
}

/// The index of these subjects (`series[i]` is `subjects[i]`'s) over the days in `range` up to
/// `last_day` (the market's last day with trades).
pub fn index_days(
    subjects: &[IndexSubject],
    series: &[SupplySeries],
    range: DayRange,
    last_day: i64,
) -> Vec<PriceIndexDay> {
    let priced: Vec<(i64, &SupplySeries)> = subjects
        .iter()
        .zip(series)
        .filter(|(s, d)| s.curve > 0 && !d.days.is_empty())
        .map(|(s, d)| (s.curve, d))
        .collect();
    let Some(first) = priced.iter().map(|(_, d)| d.days[0].0).min() else {
        return Vec::new();
    };
    let (start, end) = (range.from.max(first), range.to.min(last_day));
    // Per subject, the index of its last trading day at or before the current day.
    let mut at: Vec<Option<usize>> = vec![None; priced.len()];
    let mut out = Vec::new();
    let mut prices = Vec::with_capacity(priced.len());
    for day in start..=end {
        prices.clear();
        for ((curve, d), at) in priced.iter().zip(at.iter_mut()) {
            let mut i = at.map_or(0, |i| i + 1);
            while i < d.days.len() && d.days[i].0 <= day {
                *at = Some(i);
                i += 1;
            }
            if let Some(i) = *at {
                prices.push(next_key_price(*curve, d.days[i].1));
            }
        }
        if prices.is_empty() {
            continue;
        }
        let (median, mean) = median_and_mean(&mut prices);
        out.push(PriceIndexDay {
            day,
            subjects: prices.len() as i64,
            median,
            mean,
        });
    }
    out
}

impl StoreReader {
    /// The key price index of the market's `top` subjects by all-time volume (ties by address)
    /// over `range` (see the module docs). One statement, so one consistent state of the data.
    pub async fn price_index(
        &self,
        market_id: i64,
        top: usize,
        range: DayRange,
    ) -> Result<PriceIndex> {
        // The market's last block with trades by the end of day d: the newest trade before the
        // end of d (block times strictly increase along a chain, so its time is its block's).
        // (`max(block_number) … WHERE block_time = …` would walk the block index back from
        // the newest trade on SQLite.)
        let day_end_block = "(SELECT v.block_number FROM trades v WHERE v.market_id = $1 \
             AND v.block_time < (sd.day + 1) * 86400 ORDER BY v.block_time DESC LIMIT 1)";
        let sql = format!(
            "SELECT s.subject, s.curve, s.volume_gwei, s.volume_rem, sd.day, \
             (SELECT t.supply FROM trades t WHERE t.market_id = $1 AND t.subject = s.subject \
              AND t.block_number <= {day_end_block} ORDER BY t.block_number DESC, t.log_index DESC LIMIT 1), \
             (SELECT max(x.day) FROM stats_daily x WHERE x.market_id = $1 AND x.trades > 0) \
             FROM (SELECT subject, curve, volume_gwei, volume_rem FROM subjects WHERE market_id = $1 \
                   ORDER BY {BY_VOLUME}, subject LIMIT $2) s \
             LEFT JOIN subject_daily sd ON sd.market_id = $1 AND sd.subject = s.subject AND sd.trades > 0 AND sd.day <= $3 \
             ORDER BY s.subject, sd.day"
        );
        let mut rows = sqlx::query(AssertSqlSafe(sql))
            .bind(market_id)
            .bind(top.min(MAX_TOP) as i64)
            .bind(range.to)
            .fetch(&self.pool);
        let mut subjects: Vec<IndexSubject> = Vec::new();
        let mut series: Vec<SupplySeries> = Vec::new();
        let mut by_subject: HashMap<String, usize> = HashMap::default();
        let mut last_day = i64::MIN;
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db("reading the top subjects' supply per day"))?
        {
            let subject: String = r.get(0);
            let i = *by_subject.entry(subject.clone()).or_insert_with(|| {
                subjects.push(IndexSubject {
                    subject,
                    curve: get_i64(&r, 1),
                    volume: wei_at(&r, 2),
                    first_day: None,
                });
                series.push(SupplySeries::default());
                subjects.len() - 1
            });
            let day: Option<i64> = r.get(4);
            let supply: Option<i64> = r.get(5);
            if let Some(l) = r.get::<Option<i64>, _>(6) {
                last_day = l;
            }
            if let (Some(day), Some(supply)) = (day, supply) {
                subjects[i].first_day.get_or_insert(day);
                series[i].days.push((day, supply));
            }
        }
        let days = index_days(&subjects, &series, range, last_day);
        // Largest volume first, ties by address (the ranking's order).
        let mut order: Vec<usize> = (0..subjects.len()).collect();
        order.sort_by(|&a, &b| {
            let (x, y) = (&subjects[a], &subjects[b]);
            y.volume
                .to_i128()
                .cmp(&x.volume.to_i128())
                .then_with(|| x.subject.cmp(&y.subject))
        });
        let subjects = order.into_iter().map(|i| subjects[i].clone()).collect();
        Ok(PriceIndex { subjects, days })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: DayRange = DayRange::ALL_TIME;

    fn subject(name: &str, curve: i64) -> IndexSubject {
        IndexSubject {
            subject: name.into(),
            curve,
            volume: Wei::ZERO,
            first_day: None,
        }
    }

    #[test]
    fn prices_follow_the_curve() {
        // friend.tech: s = 10 → 0.00625 ETH; the steep curve is 10×.
        assert_eq!(next_key_price(1, 10), 6_250_000_000_000_000);
        assert_eq!(next_key_price(10, 10), 62_500_000_000_000_000);
        assert_eq!(next_key_price(1, 0), 0);
        assert_eq!(next_key_price(0, 10), 0);
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median_and_mean(&mut [5]), (5, 5));
        assert_eq!(median_and_mean(&mut [9, 1, 5]), (5, 5));
        // Even: the average of the two middle values, truncated; the mean truncated too.
        assert_eq!(median_and_mean(&mut [4, 1, 7, 100]), (5, 28));
        assert_eq!(median_and_mean(&mut [2, 3]), (2, 2));
        // Whale prices stay exact: 10³⁰ + 1 and 10³⁰ + 2 wei.
        let big = 10u128.pow(30);
        assert_eq!(median_and_mean(&mut [big + 2, big + 1]), (big + 1, big + 1));
    }

    #[test]
    fn prices_carry_forward_from_each_subjects_first_day() {
        let subjects = [subject("a", 1), subject("b", 10), subject("c", 0)];
        let series = [
            SupplySeries {
                days: vec![(100, 2), (103, 4)],
            },
            SupplySeries {
                days: vec![(101, 1)],
            },
            // Unknown curve: not priced.
            SupplySeries {
                days: vec![(99, 1)],
            },
        ];
        let days = index_days(&subjects, &series, ALL, 104);
        let unit = KEY_UNIT;
        let want = [
            (100, 1, 4 * unit, 4 * unit),
            // a: 4 units, b: 10 units → median (4 + 10) / 2 = 7.
            (101, 2, 7 * unit, 7 * unit),
            (102, 2, 7 * unit, 7 * unit),
            // a: 16 units, b: 10.
            (103, 2, 13 * unit, 13 * unit),
            (104, 2, 13 * unit, 13 * unit),
        ];
        let got: Vec<_> = days
            .iter()
            .map(|d| (d.day, d.subjects, d.median, d.mean))
            .collect();
        assert_eq!(got, want);
        // A window carries the price in from before its start.
        let window = index_days(&subjects, &series, DayRange { from: 102, to: 102 }, 104);
        assert_eq!(window.len(), 1);
        assert_eq!((window[0].day, window[0].median), (102, 7 * unit));
        // Nothing priced: no days.
        assert!(index_days(&subjects[2..], &series[2..], ALL, 104).is_empty());
    }
}
