//! Holders over time of one subject: per UTC day from its first trade to the market's last day
//! with trades, the addresses holding its keys (balance > 0) and the keys in existence, at the
//! end of the day.
//!
//! Holders are replayed from the subject's trades (read through the trades' (market, subject,
//! block, log index) index): only end-of-day balances matter, so the database sums each trader's
//! keys bought minus sold per day, and the replay walks those net changes day by day. The supply
//! is not derived from those changes but read from each day's last trade (its stored `supply`):
//! right also for a market indexed from a start block after the subject launched, whose keys
//! bought before it no replay can see (its holder counts then cover the traders seen since).

use foldhash::HashMap;
use futures::TryStreamExt;

use alloy::primitives::Address;

use sqlx::Row;

use crate::{
    Result, StoreReader,
    error::db,
    row::{get_i64, hex},
};

/// One UTC day of a subject's holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HoldersDay {
    /// Days since 1970-01-01.
    pub day: i64,
    /// Addresses holding its keys at the end of the day.
    pub holders: i64,
    /// Keys in existence at the end of the day.
    pub supply: i64,
}

/// Replays net changes `(day, trader, keys bought − sold that day)`, ordered by day, into one
/// entry per day from the first change's day to `last_day` (carried forward on days without
/// changes).
pub fn replay_holders<'a>(
    changes: impl IntoIterator<Item = (i64, &'a str, i64)>,
    last_day: i64,
) -> Vec<HoldersDay> {
    let mut balances: HashMap<&str, i64> = HashMap::default();
    let (mut holders, mut supply) = (0i64, 0i64);
    let mut out: Vec<HoldersDay> = Vec::new();
    let mut current: Option<i64> = None;
    for (day, trader, delta) in changes {
        if let Some(c) = current.filter(|c| *c != day) {
            push_day(&mut out, c, holders, supply);
        }
        current = Some(day);
        let balance = balances.entry(trader).or_default();
        let before = *balance;
        *balance += delta;
        holders += i64::from(*balance > 0) - i64::from(before > 0);
        supply += delta;
    }
    if let Some(c) = current {
        push_day(&mut out, c, holders, supply);
        if last_day > c {
            push_day(&mut out, last_day, holders, supply);
        }
    }
    out
}

/// Sets each day's supply to the one its last trade left (`supplies`: (day, supply after the
/// day's last trade), ordered by day), carried forward over days without trades.
pub fn with_stored_supply(days: &mut [HoldersDay], supplies: &[(i64, i64)]) {
    let mut next = supplies.iter().peekable();
    let mut current = None;
    for d in days {
        while let Some(&&(day, supply)) = next.peek() {
            if day > d.day {
                break;
            }
            current = Some(supply);
            next.next();
        }
        if let Some(supply) = current {
            d.supply = supply;
        }
    }
}

/// Appends `day`, after copies of the last entry for the days between (no changes on them).
fn push_day(out: &mut Vec<HoldersDay>, day: i64, holders: i64, supply: i64) {
    if let Some(prev) = out.last().copied() {
        out.extend((prev.day + 1..day).map(|d| HoldersDay { day: d, ..prev }));
    }
    out.push(HoldersDay {
        day,
        holders,
        supply,
    });
}

impl StoreReader {
    /// The subject's holders and supply per day (see the module docs); empty if it has no
    /// trades.
    pub async fn holder_history(
        &self,
        market_id: i64,
        subject: Address,
    ) -> Result<Vec<HoldersDay>> {
        let last_day: Option<i64> = sqlx::query_scalar(
            "SELECT max(day) FROM stats_daily WHERE market_id = $1 AND trades > 0",
        )
        .bind(market_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("reading the market's last day"))?;
        let mut rows = sqlx::query(
            "SELECT block_time / 86400, trader, \
             CAST(SUM(CASE WHEN is_buy <> 0 THEN share_amount ELSE -share_amount END) AS BIGINT) \
             FROM trades WHERE market_id = $1 AND subject = $2 AND share_amount <> 0 \
             GROUP BY block_time / 86400, trader ORDER BY 1",
        )
        .bind(market_id)
        .bind(hex(subject.as_slice()))
        .fetch(&self.pool);
        let mut changes: Vec<(i64, String, i64)> = Vec::new();
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db("reading a subject's trades"))?
        {
            changes.push((get_i64(&r, 0), r.get(1), get_i64(&r, 2)));
        }
        drop(rows);
        let mut days = replay_holders(
            changes.iter().map(|(d, t, n)| (*d, t.as_str(), *n)),
            last_day.unwrap_or(i64::MIN),
        );
        // Each day's last trade's supply: the trades in chain order, the last of each day kept.
        let mut rows = sqlx::query(
            "SELECT block_time / 86400, supply FROM trades WHERE market_id = $1 AND subject = $2 \
             ORDER BY block_number, log_index",
        )
        .bind(market_id)
        .bind(hex(subject.as_slice()))
        .fetch(&self.pool);
        let mut supplies: Vec<(i64, i64)> = Vec::new();
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db("reading a subject's supplies"))?
        {
            let (day, supply) = (get_i64(&r, 0), get_i64(&r, 1));
            match supplies.last_mut() {
                Some(last) if last.0 == day => last.1 = supply,
                _ => supplies.push((day, supply)),
            }
        }
        with_stored_supply(&mut days, &supplies);
        Ok(days)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_of_day_holders_and_supply_carry_forward() {
        let changes = [
            // Day 10: the subject buys its first key, a buys 2.
            (10, "s", 1),
            (10, "a", 2),
            // Day 12: a sells both, b buys 1 and sells it the same day (net 0: not a holder).
            (12, "a", -2),
            (12, "b", 0),
            (12, "c", 3),
            // Day 13: a comes back.
            (13, "a", 1),
        ];
        let got = replay_holders(changes, 15);
        let want: Vec<(i64, i64, i64)> = vec![
            (10, 2, 3),
            (11, 2, 3),
            (12, 2, 4),
            (13, 3, 5),
            (14, 3, 5),
            (15, 3, 5),
        ];
        assert_eq!(
            got.iter()
                .map(|d| (d.day, d.holders, d.supply))
                .collect::<Vec<_>>(),
            want
        );
    }

    #[test]
    fn the_supply_is_the_days_last_stored_one_carried_forward() {
        // Indexed from a later start block: 40 keys existed before the first trade seen.
        let mut days = replay_holders([(10, "a", 2), (12, "a", -1)], 14);
        with_stored_supply(&mut days, &[(10, 42), (12, 41)]);
        assert_eq!(
            days.iter().map(|d| (d.day, d.supply)).collect::<Vec<_>>(),
            [(10, 42), (11, 42), (12, 41), (13, 41), (14, 41)]
        );
    }

    #[test]
    fn the_last_day_is_at_least_the_subjects_own() {
        let got = replay_holders([(5, "s", 1)], 3);
        assert_eq!(
            got,
            [HoldersDay {
                day: 5,
                holders: 1,
                supply: 1
            }]
        );
        assert!(replay_holders([], 9).is_empty());
    }
}
