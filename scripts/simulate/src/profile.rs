//! When trades happen: a flat stream (one block every `block_interval_secs`), or friend.tech's
//! arc scaled to the run — a launch, a peak in the second week, a decline over about two months —
//! with a daily cycle, as block timestamps.
//!
//! friend.tech (Base, from 2023-08-10) peaked at 518k trades on 2023-08-19 (day 9) and 1,165 ETH of
//! protocol revenue on 2023-08-21 (day 11), then declined to roughly a tenth of the peak by
//! October. The shape here follows that: a quadratic ramp to day 9 of 60, then an exponential
//! decline towards ~13% of the peak at day 60, days scaled to the run's length; within a day,
//! activity peaks at 18:00 UTC (US afternoon) and bottoms out at 06:00 UTC.

/// The shape of a run's activity over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Profile {
    /// One block every `block_interval_secs`, `batch_size` trades each.
    Flat,
    /// friend.tech's arc over `days` days, with a daily cycle.
    Friendtech {
        /// Length of the history in days.
        days: u32,
    },
}

/// Relative activity on day `day` of a `days`-day arc (1.0 at the peak).
pub fn day_weight(day: u32, days: u32) -> f64 {
    // Position on friend.tech's own 60-day timeline.
    let x = f64::from(day) * 60.0 / f64::from(days.max(1));
    const PEAK: f64 = 9.0;
    if x < PEAK {
        0.08 + 0.92 * (x / PEAK).powi(2)
    } else {
        0.12 + 0.88 * (-(x - PEAK) / 11.0).exp()
    }
}

/// Relative activity in UTC hour `hour` (0–23): highest at 18:00, lowest at 06:00.
pub fn hour_weight(hour: u32) -> f64 {
    let phase = (f64::from(hour) - 18.0) / 24.0 * std::f64::consts::TAU;
    0.55 + 0.45 * phase.cos()
}

/// Trades per hour for `total` trades over a `days`-day arc starting at unix time `start`:
/// entry `h` is the number of trades in `[start + h·3600, start + (h+1)·3600)`. The entries sum
/// to `total` exactly (cumulative rounding, no trade lost or added).
pub fn hourly_trades(total: u64, days: u32, start: u64) -> Vec<u64> {
    let hours = u64::from(days.max(1)) * 24;
    let weights: Vec<f64> = (0..hours)
        .map(|h| {
            let utc_hour = ((start / 3600 + h) % 24) as u32;
            day_weight((h / 24) as u32, days) * hour_weight(utc_hour)
        })
        .collect();
    let sum: f64 = weights.iter().sum();
    let mut out = Vec::with_capacity(weights.len());
    let (mut cum, mut given) = (0.0, 0u64);
    for w in weights {
        cum += w;
        let due = ((cum / sum) * total as f64).round() as u64;
        let due = due.min(total);
        out.push(due - given);
        given = due;
    }
    if let Some(last) = out.last_mut() {
        *last += total - given;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_arc_peaks_in_the_second_week_and_declines() {
        let days = 60;
        let w: Vec<f64> = (0..days).map(|d| day_weight(d, days)).collect();
        let peak = w
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap()
            .0;
        assert!((7..14).contains(&peak), "peak on day {peak}");
        assert!(w[0] < 0.2 * w[peak], "a launch, not a peak, on day 0");
        assert!(w[59] < 0.2 * w[peak], "two months later: {}", w[59]);
        assert!(w[30] < w[15] && w[45] < w[30], "declining");
    }

    #[test]
    fn scaled_to_a_shorter_run_the_peak_moves_with_it() {
        let w: Vec<f64> = (0..20).map(|d| day_weight(d, 20)).collect();
        let peak = (0..20).max_by(|a, b| w[*a].total_cmp(&w[*b])).unwrap();
        assert_eq!(peak, 3, "day 9 of 60 is day 3 of 20");
    }

    #[test]
    fn the_day_cycle_peaks_in_the_us_afternoon() {
        assert!(hour_weight(18) > 0.99 && hour_weight(6) < 0.11);
        assert!(hour_weight(12) > hour_weight(6) && hour_weight(12) < hour_weight(18));
    }

    #[test]
    fn hourly_trades_sum_exactly_and_cover_every_day() {
        for total in [0, 1, 999, 2_000, 20_000, 1_000_003] {
            let h = hourly_trades(total, 60, 1_700_000_000);
            assert_eq!(h.len(), 60 * 24);
            assert_eq!(h.iter().sum::<u64>(), total, "total {total}");
        }
        let h = hourly_trades(2_000, 60, 1_700_000_000);
        let days_with_trades = h.chunks(24).filter(|d| d.iter().sum::<u64>() > 0).count();
        assert!(
            days_with_trades >= 58,
            "{days_with_trades} days with trades"
        );
        let per_day: Vec<u64> = h.chunks(24).map(|d| d.iter().sum()).collect();
        assert!(per_day[9] > 4 * per_day[59], "{per_day:?}");
    }

    #[test]
    fn hours_follow_the_utc_clock_whatever_the_start() {
        // Starting at 05:00 UTC: hour 13 of the run is 18:00 UTC, busier than hour 1 (06:00).
        let start = 1_700_000_000 - 1_700_000_000 % 86_400 + 5 * 3600;
        let h = hourly_trades(1_000_000, 1, start);
        assert!(h[13] > 5 * h[1], "{} vs {}", h[13], h[1]);
    }
}
