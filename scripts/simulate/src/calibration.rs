//! How a simulated market compares with friend.tech's: each figure an analyst would check first,
//! its friend.tech value (Dune's numbers, see docs/simulator.md) and the band the simulator is
//! calibrated to land in, measured on what the chain did (the run's Trade events).

use serde::Serialize;

use crate::{SimReport, temperament::eth};

/// One figure of a run against friend.tech's.
#[derive(Debug, Clone, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Figure {
    /// A short stable key (`pricePerTrade`, …), for tests and `--json`.
    pub key: &'static str,
    /// What it is, in words.
    pub name: &'static str,
    /// The run's value (`None`: not measurable in this run, e.g. no trade).
    pub value: Option<f64>,
    /// friend.tech's value, in words.
    pub friendtech: &'static str,
    /// The calibrated band, inclusive.
    pub band: (f64, f64),
    /// Whether the value lies in the band.
    pub within: bool,
}

/// The figures of a run.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Calibration {
    /// In the order of the report's table.
    pub figures: Vec<Figure>,
}

impl Calibration {
    /// The figures of `report`'s trades.
    pub fn of(report: &SimReport) -> Self {
        let volume = eth(report.buy_volume) + eth(report.sell_volume);
        let per_trade = (report.trades > 0).then(|| volume / report.trades as f64);
        // The busiest day by trades, and the days after it.
        let peak = report
            .days
            .iter()
            .max_by_key(|(day, d)| (d.buys + d.sells, std::cmp::Reverse(**day)))
            .map(|(day, d)| (*day, d));
        let peak_price = peak.and_then(|(_, d)| {
            let n = d.buys + d.sells;
            (n > 0).then(|| eth(d.volume) / n as f64)
        });
        let after: Vec<_> = peak
            .map(|(p, _)| report.days.range(p + 1..).map(|(_, d)| d).collect())
            .unwrap_or_default();
        let net_selling = (!after.is_empty())
            .then(|| after.iter().filter(|d| d.sells > d.buys).count() as f64 / after.len() as f64);
        // The most traded subject in ETH (the one an analyst sees first in a top-subjects table).
        let top_traded = report
            .subjects
            .iter()
            .max_by_key(|(a, s)| (s.volume, std::cmp::Reverse(**a)));
        let mut volumes: Vec<f64> = report.subjects.values().map(|s| eth(s.volume)).collect();
        volumes.sort_by(|a, b| b.total_cmp(a));
        let share = |n: usize| (volume > 0.0).then(|| volumes.iter().take(n).sum::<f64>() / volume);
        let small = (!report.subjects.is_empty()).then(|| {
            report.subjects.values().filter(|s| s.supply <= 20).count() as f64
                / report.subjects.len() as f64
        });
        let protocol = eth(report.protocol_fees);
        let tvl = eth(report.buy_volume) - eth(report.sell_volume);
        let figure = |key, name, value: Option<f64>, friendtech, band: (f64, f64)| Figure {
            key,
            name,
            value,
            friendtech,
            band,
            within: value.is_some_and(|v| v >= band.0 && v <= band.1),
        };
        Self {
            figures: vec![
                figure(
                    "pricePerTrade",
                    "key price per trade, ETH (volume ÷ trades)",
                    per_trade,
                    "0.024 (lifetime)",
                    (0.01, 0.05),
                ),
                figure(
                    "peakDayPricePerTrade",
                    "key price per trade on the busiest day, ETH",
                    peak_price,
                    "0.021 (2023-08-19)",
                    (0.01, 0.05),
                ),
                figure(
                    "topSubjectSupply",
                    "the top subject's (by volume) supply at the end",
                    top_traded.map(|(_, s)| s.supply as f64),
                    "low hundreds",
                    (100.0, 500.0),
                ),
                figure(
                    "topSubjectKeyPrice",
                    "its next key's price, ETH",
                    top_traded
                        .map(|(_, s)| eth(keymarket_contracts::curve::price(s.curve, s.supply, 1))),
                    "a few ETH",
                    (0.0, 16.0),
                ),
                figure(
                    "smallSubjects",
                    "share of subjects ending with supply ≤ 20",
                    small,
                    "most",
                    (0.8, 1.0),
                ),
                figure(
                    "tvlOverProtocolRevenue",
                    "TVL (buy − sell volume) ÷ protocol revenue",
                    (protocol > 0.0).then(|| tvl / protocol),
                    "~2.1 (Oct 2023)",
                    (1.0, 4.0),
                ),
                figure(
                    "buyShare",
                    "buys, share of trades",
                    (report.trades > 0).then(|| report.buys as f64 / report.trades as f64),
                    "about half",
                    (0.5, 0.65),
                ),
                figure(
                    "netSellingDaysAfterPeak",
                    "days after the busiest with more sells than buys",
                    net_selling,
                    "most (prices fell with activity)",
                    (0.5, 1.0),
                ),
                figure(
                    "topSubjectVolumeShare",
                    "the top subject's share of volume",
                    share(1),
                    "a few %",
                    (0.0, 0.25),
                ),
                figure(
                    "topTenVolumeShare",
                    "the top ten subjects' share of volume",
                    share(10),
                    "well under half",
                    (0.0, 0.70),
                ),
            ],
        }
    }

    /// The figure under `key`.
    pub fn get(&self, key: &str) -> Option<&Figure> {
        self.figures.iter().find(|f| f.key == key)
    }

    /// The figures out of their band, but those named in `except`.
    pub fn outside(&self, except: &[&str]) -> Vec<&Figure> {
        self.figures
            .iter()
            .filter(|f| !f.within && !except.contains(&f.key))
            .collect()
    }

    /// The report's table: figure, value, friend.tech's, band, in or out.
    pub fn table(&self) -> String {
        let mut out = format!(
            "{:<52} {:>10}  {:<26} {:<16} \n",
            "figure", "this run", "friend.tech", "band"
        );
        for f in &self.figures {
            let value = f.value.map_or("—".into(), |v| {
                if v.abs() >= 100.0 {
                    format!("{v:.0}")
                } else {
                    format!("{v:.3}")
                }
            });
            out += &format!(
                "{:<52} {:>10}  {:<26} {:<16} {}\n",
                f.name,
                value,
                f.friendtech,
                format!("{}–{}", f.band.0, f.band.1),
                if f.within { "in" } else { "OUT" }
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::{Address, U256};

    use super::*;
    use crate::{DayTally, SubjectTally};

    fn wei(eth: f64) -> U256 {
        U256::from((eth * 1e18) as u128)
    }

    #[test]
    fn figures_of_a_small_made_up_run() {
        let mut r = SimReport {
            trades: 10,
            buys: 6,
            sells: 4,
            buy_volume: wei(0.2),
            sell_volume: wei(0.05),
            protocol_fees: wei(0.0125),
            ..SimReport::default()
        };
        r.subjects.insert(
            Address::repeat_byte(1),
            SubjectTally {
                trades: 8,
                volume: wei(0.2),
                supply: 120,
                curve: 0,
            },
        );
        r.subjects.insert(
            Address::repeat_byte(2),
            SubjectTally {
                trades: 2,
                volume: wei(0.05),
                supply: 3,
                curve: 0,
            },
        );
        for (day, buys, sells) in [(1, 1, 0), (2, 4, 1), (3, 1, 2), (4, 0, 1)] {
            r.days.insert(
                day,
                DayTally {
                    buys,
                    sells,
                    volume: wei(0.025 * (buys + sells) as f64),
                },
            );
        }
        let c = Calibration::of(&r);
        let v = |k: &str| c.get(k).unwrap().value.unwrap();
        assert!((v("pricePerTrade") - 0.025).abs() < 1e-9);
        assert!((v("peakDayPricePerTrade") - 0.025).abs() < 1e-9);
        assert_eq!(v("topSubjectSupply"), 120.0);
        assert!((v("topSubjectKeyPrice") - 120.0 * 120.0 / 16_000.0).abs() < 1e-9);
        assert_eq!(v("smallSubjects"), 0.5);
        assert!((v("tvlOverProtocolRevenue") - 12.0).abs() < 1e-6);
        assert_eq!(v("buyShare"), 0.6);
        assert_eq!(v("netSellingDaysAfterPeak"), 1.0);
        assert!((v("topSubjectVolumeShare") - 0.8).abs() < 1e-9);
        let out: Vec<&str> = c.outside(&[]).iter().map(|f| f.key).collect();
        assert_eq!(
            out,
            [
                "smallSubjects",
                "tvlOverProtocolRevenue",
                "topSubjectVolumeShare",
                "topTenVolumeShare"
            ]
        );
        assert!(c.table().contains("OUT"));
    }
}
