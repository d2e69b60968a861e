//! What a simulated trader is willing to do: a budget for one trade and a profit target, drawn
//! once per account from heavy-tailed distributions (the same for the same address, whatever the
//! seed, like the population itself), and the market's mood over its history.
//!
//! friend.tech's keys cost a few hundredths of an ETH on average (0.024 ETH a trade over its
//! life: 14,250 ETH of protocol revenue at 5% over 11,988,858 trades), because most traders spent
//! little and only a few whales bought the expensive keys. So a trader's budget is Pareto
//! distributed: most can spend a few hundredths of an ETH a trade, a few in a hundred more than
//! half an ETH, a few in ten thousand several ETH; fans pay more for the few stars. A buy happens
//! only when the keys fit the budget — expensive keys attract only whales and fans, and a
//! subject's popularity saturates at the price its admirers can pay. The constants here were
//! calibrated against friend.tech's figures (docs/simulator.md).

use alloy::primitives::{Address, keccak256};

/// The smallest budget for one trade, ETH (the Pareto distribution's scale).
const BUDGET_MIN_ETH: f64 = 0.015;

/// The Pareto tail's exponent: the larger, the fewer whales.
const BUDGET_TAIL: f64 = 1.15;

/// No budget above this, ETH.
const BUDGET_MAX_ETH: f64 = 200.0;

/// A trader's disposition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Temperament {
    /// The most the trader spends on one buy, ETH.
    pub(crate) budget_eth: f64,
    /// The trader sells keys once their price is this many times what they cost (1.3–3).
    pub(crate) profit_target: f64,
}

impl Temperament {
    /// The temperament of `trader`: a function of its address alone.
    pub(crate) fn of(trader: Address) -> Self {
        let h = keccak256(trader.as_slice());
        let unit = |bytes: &[u8]| {
            // (0, 1]: never zero, so the Pareto draw stays finite.
            (u64::from_be_bytes(bytes.try_into().expect("8 bytes")) >> 11) as f64
                / (1u64 << 53) as f64
                + 1.0 / (1u64 << 53) as f64
        };
        let budget_eth =
            (BUDGET_MIN_ETH / unit(&h[0..8]).powf(1.0 / BUDGET_TAIL)).min(BUDGET_MAX_ETH);
        let profit_target = 1.3 + 1.7 * unit(&h[8..16]);
        Self {
            budget_eth,
            profit_target,
        }
    }
}

/// The market's mood at a point of its history: the chance that a trader drawn to a subject it
/// holds keys of sells rather than buys (`holders`), and the chance that a trader drawn to a
/// subject it holds nothing of hands the trade to one of the subject's holders, who sells
/// (`others`). Early on (the launch, the climb to the peak in the second week) buyers dominate;
/// after the peak, holders sell into the decline — on most days more sells than buys, so prices
/// fall with activity, as friend.tech's did. `None` (a stream with no arc, e.g. `up`'s live
/// trading after the history): the late mood.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Mood {
    pub(crate) holders: f64,
    pub(crate) others: f64,
}

pub(crate) fn sell_mood(progress_on_arc: Option<f64>) -> Mood {
    const EARLY: Mood = Mood {
        holders: 0.3,
        others: 0.1,
    };
    const LATE: Mood = Mood {
        holders: 0.75,
        others: 0.75,
    };
    let (early, late) = (EARLY, LATE);
    let t = match progress_on_arc {
        None => 1.0,
        // friend.tech's peak: day 9 of 60; the mood turns over the following six days.
        Some(p) => ((p - 9.0 / 60.0) / 0.1).clamp(0.0, 1.0),
    };
    Mood {
        holders: early.holders + (late.holders - early.holders) * t,
        others: early.others + (late.others - early.others) * t,
    }
}

/// How much more than its usual budget a trader pays for the keys of the subject of popularity
/// rank `rank` (0: the most popular): fans pay up for the few stars, so the top subjects' keys
/// reach the prices friend.tech's did while most keys stay cheap.
pub(crate) fn fan_factor(rank: usize) -> f64 {
    const FANS: f64 = 9.0;
    1.0 + FANS / (1.0 + rank as f64)
}

/// The chance a holder sells a key of this price for no reason but the mood, relative to a cheap
/// key's: cheap keys are flipped, dear ones held (a key of `DEAR_KEY_ETH` half as often).
pub(crate) fn flip_factor(key_eth: f64) -> f64 {
    const DEAR_KEY_ETH: f64 = 0.05;
    DEAR_KEY_ETH / (DEAR_KEY_ETH + key_eth)
}

/// The chance a holder whose keys reached its profit target takes the profit when drawn.
pub(crate) const TAKE_PROFIT: f64 = 0.1;

/// The Zipf exponent of subject popularity in a generated population: flatter than the dev
/// accounts' default, so that the most popular subject carries at most a quarter of the volume
/// (friend.tech's market was broad).
pub(crate) const POPULATION_ZIPF: f64 = 0.6;

/// ETH in wei as a float (for budgets; exact amounts stay in wei).
pub(crate) fn eth(wei: alloy::primitives::U256) -> f64 {
    f64::from(wei) / 1e18
}

#[cfg(test)]
mod tests {
    use super::*;

    fn population(n: usize) -> Vec<Temperament> {
        (0..n)
            .map(|i| Temperament::of(Address::from_slice(&keccak256(i.to_be_bytes())[12..])))
            .collect()
    }

    #[test]
    fn most_budgets_are_small_and_a_few_are_whales() {
        let p = population(100_000);
        let share = |f: &dyn Fn(&Temperament) -> bool| {
            p.iter().filter(|t| f(t)).count() as f64 / p.len() as f64
        };
        let median = {
            let mut b: Vec<f64> = p.iter().map(|t| t.budget_eth).collect();
            b.sort_by(f64::total_cmp);
            b[b.len() / 2]
        };
        assert!((0.02..0.04).contains(&median), "median {median}");
        assert!(
            (0.01..0.05).contains(&share(&|t| t.budget_eth > 0.5)),
            "whales"
        );
        assert!(share(&|t| t.budget_eth > 5.0) < 0.003, "few big whales");
        assert!(p.iter().all(|t| (1.3..=3.0).contains(&t.profit_target)));
    }

    #[test]
    fn a_trader_is_always_the_same() {
        let a = Address::repeat_byte(7);
        assert_eq!(Temperament::of(a), Temperament::of(a));
    }

    #[test]
    fn buyers_lead_until_the_peak_and_sellers_after() {
        assert!(sell_mood(Some(0.05)).holders < 0.5 && sell_mood(Some(0.05)).others < 0.2);
        assert!(sell_mood(Some(0.5)).holders > 0.5 && sell_mood(Some(0.5)).others > 0.5);
        assert_eq!(sell_mood(None), sell_mood(Some(1.0)));
    }

    #[test]
    fn fans_pay_up_for_the_stars_only() {
        assert!(fan_factor(0) >= 9.0);
        assert!(fan_factor(1_000) < 1.1);
    }
}
