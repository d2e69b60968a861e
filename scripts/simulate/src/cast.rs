//! Who trades: the node's unlocked dev accounts (a few dozen, all present from the start), or a
//! generated population of tens of thousands of traders and subjects that the node impersonates
//! (`anvil_autoImpersonateAccount`) and funds (`anvil_setBalance`) when they first trade. In a
//! history (the friend.tech profile) the population arrives over time, most of it early, as on
//! friend.tech; the earliest arrivals are the most active (Zipf ranks follow arrival).

use alloy::primitives::{Address, keccak256};

/// The accounts of a run.
pub(crate) struct Cast {
    /// Traders, most active first (Zipf rank order).
    pub(crate) traders: Vec<Address>,
    /// Subjects, most popular first.
    pub(crate) subjects: Vec<Address>,
    /// Generated accounts: impersonated and funded on first use, subjects opened on first trade.
    pub(crate) generated: bool,
}

impl Cast {
    /// A generated population: the same addresses for the same counts, whatever the seed, so
    /// every run on a chain (the history, then `up`'s live rounds) trades among the same people.
    pub(crate) fn generated(traders: usize, subjects: usize) -> Self {
        Self {
            traders: (0..traders).map(|i| address("trader", i)).collect(),
            subjects: (0..subjects).map(|i| address("subject", i)).collect(),
            generated: true,
        }
    }

    /// How many traders and subjects have arrived once `progress` (0–1) of the run's trades are
    /// sent: all of them without arrival; else `1 - (1 - p)³` of each (half by 21% of the trades,
    /// seven eighths by half), at least three traders (a referral needs a third account).
    pub(crate) fn arrived(&self, progress: Option<f64>) -> (usize, usize) {
        let share = progress.map_or(1.0, |p| 1.0 - (1.0 - p.clamp(0.0, 1.0)).powi(3));
        let of = |n: usize, min: usize| ((n as f64 * share).ceil() as usize).clamp(min.min(n), n);
        (of(self.traders.len(), 3), of(self.subjects.len(), 1))
    }
}

/// The `i`-th generated account of a role.
fn address(role: &str, i: usize) -> Address {
    Address::from_slice(&keccak256(format!("keymarket-simulate/{role}/{i}"))[12..])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_accounts_are_distinct_and_stable() {
        let a = Cast::generated(10_000, 2_000);
        let mut all: Vec<Address> = a.traders.iter().chain(&a.subjects).copied().collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 12_000);
        assert_eq!(Cast::generated(3, 1).traders[2], a.traders[2]);
    }

    #[test]
    fn most_of_the_population_arrives_early() {
        let c = Cast::generated(1_000, 100);
        assert_eq!(c.arrived(Some(0.0)), (3, 1));
        assert_eq!(c.arrived(Some(0.5)), (875, 88));
        assert_eq!(c.arrived(Some(1.0)), (1_000, 100));
        assert_eq!(c.arrived(None), (1_000, 100));
        let (t, _) = c.arrived(Some(0.25));
        assert!(t > 500, "{t}");
    }
}
