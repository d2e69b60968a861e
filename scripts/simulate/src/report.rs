//! What a run did, read back from the receipts of its blocks: counts, volumes and fees, per
//! subject and per UTC day; runs on one chain add up (`absorb`).

use std::time::Duration;

use alloy::primitives::{Address, B256, U256};
use serde::Serialize;

/// What the chain did, read back from the receipts of the mined blocks.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    /// Transactions sent (trades plus subject openings).
    pub sent: u64,
    /// Trade events emitted.
    pub trades: u64,
    /// Buy events.
    pub buys: u64,
    /// Sell events.
    pub sells: u64,
    /// Transactions that reverted.
    pub reverted: u64,
    /// Transactions built to revert.
    pub expected_reverts: u64,
    /// Subjects opened by this run.
    pub subjects_opened: u64,
    /// Blocks mined.
    pub blocks: u64,
    /// First and last block mined.
    pub block_range: (u64, u64),
    /// Σ ethAmount over buys, wei.
    pub buy_volume: U256,
    /// Σ ethAmount over sells, wei.
    pub sell_volume: U256,
    /// Σ protocolEthAmount, wei.
    pub protocol_fees: U256,
    /// Σ subjectEthAmount, wei.
    pub subject_fees: U256,
    /// Σ referral fees credited, wei.
    pub referral_fees: U256,
    /// The first few transactions that reverted without being built to (for diagnosis).
    pub unexpected_revert_txs: Vec<B256>,
    /// Per subject: its trades, volume and supply after its last trade in this run.
    #[serde(skip)]
    pub subjects: std::collections::BTreeMap<Address, SubjectTally>,
    /// Per UTC day (days since 1970-01-01, by block time): trades, buys, sells, volume.
    #[serde(skip)]
    pub days: std::collections::BTreeMap<u64, DayTally>,
    /// Wall-clock time of the run.
    #[serde(skip)]
    pub elapsed: Duration,
}

/// One subject's trades in a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubjectTally {
    /// Trade events.
    pub trades: u64,
    /// Σ ethAmount, wei.
    pub volume: U256,
    /// The supply after its last trade.
    pub supply: u64,
    /// Its curve, when its `SubjectCreated` was seen in the run (else the standard one).
    pub curve: u8,
}

/// One UTC day of a run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DayTally {
    /// Buy events.
    pub buys: u64,
    /// Sell events.
    pub sells: u64,
    /// Σ ethAmount, wei.
    pub volume: U256,
}

impl SimReport {
    /// Adds a later run on the same chain (e.g. a live round after the history): sums its
    /// counts, days and subjects; a subject's supply becomes the later run's.
    pub fn absorb(&mut self, later: &SimReport) {
        if later.blocks > 0 {
            self.block_range = match self.blocks {
                0 => later.block_range,
                _ => (self.block_range.0, later.block_range.1),
            };
        }
        self.sent += later.sent;
        self.trades += later.trades;
        self.buys += later.buys;
        self.sells += later.sells;
        self.reverted += later.reverted;
        self.expected_reverts += later.expected_reverts;
        self.subjects_opened += later.subjects_opened;
        self.blocks += later.blocks;
        self.buy_volume += later.buy_volume;
        self.sell_volume += later.sell_volume;
        self.protocol_fees += later.protocol_fees;
        self.subject_fees += later.subject_fees;
        self.referral_fees += later.referral_fees;
        self.unexpected_revert_txs
            .extend_from_slice(&later.unexpected_revert_txs);
        for (subject, t) in &later.subjects {
            // A subject opened earlier keeps the curve its opening showed.
            let s = self
                .subjects
                .entry(*subject)
                .or_insert_with(|| SubjectTally {
                    curve: t.curve,
                    ..SubjectTally::default()
                });
            s.trades += t.trades;
            s.volume += t.volume;
            s.supply = t.supply;
        }
        for (day, t) in &later.days {
            let d = self.days.entry(*day).or_default();
            d.buys += t.buys;
            d.sells += t.sells;
            d.volume += t.volume;
        }
        self.elapsed += later.elapsed;
    }

    /// Trade events per second of wall-clock time.
    pub fn trades_per_sec(&self) -> f64 {
        self.trades as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Reverts that were not built to revert: should be zero.
    pub fn unexpected_reverts(&self) -> u64 {
        self.reverted.saturating_sub(self.expected_reverts)
    }
}
