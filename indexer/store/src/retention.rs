//! Weekly retention cohorts: traders grouped by the UTC week of their first trade, and how many
//! of each cohort traded again in each later week.
//!
//! Weeks start on Monday 00:00 UTC. A week is numbered `(day + 3) / 7` (rounded down), `day`
//! being days since 1970-01-01 (a Thursday), so week 0 runs from Monday 1969-12-29 and week `w`
//! starts on day `7w − 3`.
//!
//! Read from the aggregates, never from the trades: a trader's first trade is
//! `traders.first_time` and the days it traded are its `daily_traders` rows (both count only
//! trades with a non-zero amount).

use futures::TryStreamExt;

use crate::{Result, StoreReader, calendar::DAY, error::db, row::get_i64};

/// The week (Monday start, UTC) of a day given as days since 1970-01-01.
pub fn week_of(day: i64) -> i64 {
    (day + 3).div_euclid(7)
}

/// The first day (a Monday) of week `week`, as days since 1970-01-01.
pub fn week_start(week: i64) -> i64 {
    week * 7 - 3
}

/// An inclusive range of weeks (see [`week_of`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WeekRange {
    /// The first week.
    pub from: i64,
    /// The last week.
    pub to: i64,
}

/// The traders whose first trade fell in one week, and their activity in the weeks after.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cohort {
    /// The cohort's week (see [`week_of`]).
    pub week: i64,
    /// Traders whose first trade fell in that week.
    pub size: i64,
    /// `active[k]`: how many of them traded in week `week + k`, for every week up to the end of
    /// the range asked for (0 included).
    pub active: Vec<i64>,
}

impl StoreReader {
    /// The market's cohorts of the weeks in `weeks` that have new traders, oldest first, with
    /// their activity up to the range's last week.
    pub async fn retention(&self, market_id: i64, weeks: WeekRange) -> Result<Vec<Cohort>> {
        if weeks.from > weeks.to {
            return Ok(Vec::new());
        }
        let (first_day, end_day) = (week_start(weeks.from), week_start(weeks.to) + 7);
        let (since, until) = (first_day * DAY, end_day * DAY);
        let sizes = sqlx::query(
            "SELECT (first_time / 86400 + 3) / 7, COUNT(*) FROM traders \
             WHERE market_id = $1 AND first_time >= $2 AND first_time < $3 GROUP BY (first_time / 86400 + 3) / 7",
        )
        .bind(market_id)
        .bind(since)
        .bind(until)
        .fetch_all(&self.pool)
        .await
        .map_err(db("reading the cohorts' sizes"))?;
        let mut cohorts: Vec<Cohort> = sizes
            .iter()
            .map(|r| {
                let week = get_i64(r, 0);
                Cohort {
                    week,
                    size: get_i64(r, 1),
                    active: vec![0; (weeks.to - week + 1).max(0) as usize],
                }
            })
            .collect();
        cohorts.sort_by_key(|c| c.week);
        // Each (trader, week) once: a trader's days of one week collapse to one row before the
        // join, so the cohort lookup runs once per trader and week, not per day.
        let mut rows = sqlx::query(
            "SELECT (t.first_time / 86400 + 3) / 7, a.week, COUNT(*) FROM \
             (SELECT DISTINCT trader, (day + 3) / 7 AS week FROM daily_traders \
              WHERE market_id = $1 AND day >= $2 AND day < $3) a \
             JOIN traders t ON t.market_id = $1 AND t.trader = a.trader \
             WHERE t.first_time >= $4 AND t.first_time < $5 \
             GROUP BY (t.first_time / 86400 + 3) / 7, a.week",
        )
        .bind(market_id)
        .bind(first_day)
        .bind(end_day)
        .bind(since)
        .bind(until)
        .fetch(&self.pool);
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db("reading the cohorts' activity"))?
        {
            let (cohort, week, n) = (get_i64(&r, 0), get_i64(&r, 1), get_i64(&r, 2));
            if let Ok(i) = cohorts.binary_search_by_key(&cohort, |c| c.week)
                && let Some(slot) = usize::try_from(week - cohort)
                    .ok()
                    .and_then(|k| cohorts[i].active.get_mut(k))
            {
                *slot = n;
            }
        }
        Ok(cohorts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weeks_start_on_monday() {
        // 1970-01-01 (day 0) was a Thursday: its week began on Monday 1969-12-29 (day -3).
        assert_eq!(week_of(0), 0);
        assert_eq!(week_start(0), -3);
        assert_eq!(week_of(3), 0); // Sunday 1970-01-04
        assert_eq!(week_of(4), 1); // Monday 1970-01-05
        assert_eq!(week_start(1), 4);
        // friend.tech's launch, Thursday 2023-08-10 (day 19,579): the week of Monday 2023-08-07.
        assert_eq!(week_start(week_of(19_579)), 19_576);
        for day in 19_570..19_600 {
            let w = week_of(day);
            assert!((week_start(w)..week_start(w) + 7).contains(&day));
        }
    }
}
