//! Market concentration per UTC day and over a window: how much of the volume the top subjects
//! take (top-10 share) and the Herfindahl–Hirschman index of the subjects' volume shares.
//!
//! Read from the per-subject daily aggregates (`subject_daily`), never from the trades, so a
//! year of a 12M-trade market is one indexed range scan. Volume is Σ ethAmount of buys and sells
//! (price before fees); the arithmetic is exact integers (wei in `u128`, squares in `U256`).

use alloy::primitives::U256;
use foldhash::HashMap;
use futures::TryStreamExt;

use sqlx::Row;

use crate::{
    Result, StoreReader,
    amount::Wei,
    error::db,
    row::{get_i64, wei_at},
    series::DayRange,
};

/// How many of the largest subjects the top share adds up.
pub const TOP: usize = 10;

/// The concentration of one day's (or a window's) volume across subjects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Concentration {
    /// Distinct subjects traded (trades with a non-zero amount).
    pub subjects: i64,
    /// Their total volume.
    pub volume: Wei,
    /// The volume of the [`TOP`] largest subjects, in wei.
    pub top_volume: u128,
    /// Σ of each subject's volume squared, in wei².
    pub sum_of_squares: U256,
}

impl Concentration {
    /// The concentration of these per-subject volumes (in wei; order does not matter).
    pub fn of(mut volumes: Vec<u128>) -> Self {
        volumes.sort_unstable_by(|a, b| b.cmp(a));
        let total: u128 = volumes.iter().sum();
        Self {
            subjects: volumes.len() as i64,
            volume: Wei::from_i128(total as i128).expect("a day's volume fits a Wei"),
            top_volume: volumes.iter().take(TOP).sum(),
            sum_of_squares: volumes
                .iter()
                .map(|&v| U256::from(v) * U256::from(v))
                .fold(U256::ZERO, |a, b| a + b),
        }
    }

    fn total(&self) -> u128 {
        self.volume.to_i128() as u128
    }

    /// The top subjects' share of the volume as a decimal fraction with `places` decimals,
    /// truncated (rounded toward zero); `None` when the volume is zero.
    pub fn top_share(&self, places: u32) -> Option<String> {
        ratio(
            U256::from(self.top_volume),
            U256::from(self.total()),
            places,
        )
    }

    /// The HHI, Σ shareᵢ² (0–1), as a decimal fraction with `places` decimals, truncated;
    /// `None` when the volume is zero.
    pub fn hhi(&self, places: u32) -> Option<String> {
        let t = U256::from(self.total());
        ratio(self.sum_of_squares, t * t, places)
    }
}

/// `num / den` as a decimal string with exactly `places` decimals, truncated; `None` if
/// `den` is zero.
pub fn ratio(num: U256, den: U256, places: u32) -> Option<String> {
    if den.is_zero() {
        return None;
    }
    let scale = U256::from(10u64).pow(U256::from(places));
    let scaled = num * scale / den;
    let (whole, frac) = scaled.div_rem(scale);
    Some(if places == 0 {
        whole.to_string()
    } else {
        format!("{whole}.{frac:0>width$}", width = places as usize)
    })
}

/// One UTC day's concentration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcentrationDay {
    /// Days since 1970-01-01.
    pub day: i64,
    /// That day's concentration.
    pub concentration: Concentration,
}

/// The concentration of each day with trades in a window, and of the whole window (each
/// subject's volume summed over its days).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConcentrationReport {
    /// The days with trades, oldest first.
    pub days: Vec<ConcentrationDay>,
    /// The whole window.
    pub window: Concentration,
}

impl StoreReader {
    /// The market's concentration per day in `days`, and over all of them.
    pub async fn concentration(
        &self,
        market_id: i64,
        days: DayRange,
    ) -> Result<ConcentrationReport> {
        let mut rows = sqlx::query(
            "SELECT day, subject, buy_volume_gwei + sell_volume_gwei, buy_volume_rem + sell_volume_rem \
             FROM subject_daily WHERE market_id = $1 AND day >= $2 AND day <= $3 AND trades > 0 ORDER BY day",
        )
        .bind(market_id)
        .bind(days.from)
        .bind(days.to)
        .fetch(&self.pool);
        let mut out = Vec::new();
        let mut current: Option<(i64, Vec<u128>)> = None;
        let mut window: HashMap<String, u128> = HashMap::default();
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db("reading the subjects' daily volumes"))?
        {
            let day = get_i64(&r, 0);
            let subject: String = r.get(1);
            let volume = wei_at(&r, 2).to_i128().max(0) as u128;
            *window.entry(subject).or_default() += volume;
            match &mut current {
                Some((d, v)) if *d == day => v.push(volume),
                _ => {
                    if let Some((d, v)) = current.replace((day, vec![volume])) {
                        out.push(ConcentrationDay {
                            day: d,
                            concentration: Concentration::of(v),
                        });
                    }
                }
            }
        }
        if let Some((d, v)) = current {
            out.push(ConcentrationDay {
                day: d,
                concentration: Concentration::of(v),
            });
        }
        Ok(ConcentrationReport {
            days: out,
            window: Concentration::of(window.into_values().collect()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ETH: u128 = 1_000_000_000_000_000_000;

    #[test]
    fn one_subject_takes_everything() {
        let c = Concentration::of(vec![3 * ETH]);
        assert_eq!(c.subjects, 1);
        assert_eq!(c.top_share(6).as_deref(), Some("1.000000"));
        assert_eq!(c.hhi(6).as_deref(), Some("1.000000"));
    }

    #[test]
    fn equal_subjects() {
        // 20 subjects of 1 ETH: the top 10 take half; HHI = 20 × (1/20)² = 0.05.
        let c = Concentration::of(vec![ETH; 20]);
        assert_eq!(c.subjects, 20);
        assert_eq!(c.volume.to_i128(), 20 * ETH as i128);
        assert_eq!(c.top_share(6).as_deref(), Some("0.500000"));
        assert_eq!(c.hhi(6).as_deref(), Some("0.050000"));
    }

    #[test]
    fn uneven_volumes_are_truncated_not_rounded() {
        // 12 subjects: 1 of 2 wei, 11 of 1 wei; total 13. Top 10 = 2 + 9 = 11 → 11/13 =
        // 0.846153846…; HHI = (4 + 11) / 169 = 0.088757396… (both truncated).
        let mut v = vec![1u128; 11];
        v.push(2);
        let c = Concentration::of(v);
        assert_eq!(c.subjects, 12);
        assert_eq!(c.top_volume, 11);
        assert_eq!(c.top_share(6).as_deref(), Some("0.846153"));
        assert_eq!(c.hhi(6).as_deref(), Some("0.088757"));
        assert_eq!(c.hhi(9).as_deref(), Some("0.088757396"));
    }

    #[test]
    fn the_largest_are_the_top_whatever_the_order() {
        // 11 subjects: ten of 10 ETH and one of 1 ETH, the small one first.
        let mut v = vec![ETH];
        v.extend([10 * ETH; 10]);
        let c = Concentration::of(v);
        assert_eq!(c.top_volume, 100 * ETH);
        assert_eq!(c.top_share(6).as_deref(), Some("0.990099"));
        // (10 × 100 + 1) / 101² = 1001 / 10201 = 0.098127634…
        assert_eq!(c.hhi(6).as_deref(), Some("0.098127"));
    }

    #[test]
    fn whale_volumes_stay_exact() {
        // friend.tech-sized volumes: 10⁷ ETH split 3:1 — squares far past u128.
        let c = Concentration::of(vec![7_500_000 * ETH, 2_500_000 * ETH]);
        assert_eq!(c.top_share(6).as_deref(), Some("1.000000"));
        assert_eq!(c.hhi(6).as_deref(), Some("0.625000"));
    }

    #[test]
    fn no_volume_has_no_share() {
        let c = Concentration::of(vec![0, 0]);
        assert_eq!(c.subjects, 2);
        assert_eq!(c.top_share(6), None);
        assert_eq!(c.hhi(6), None);
        assert_eq!(ratio(U256::from(1), U256::from(3), 0).as_deref(), Some("0"));
    }
}
