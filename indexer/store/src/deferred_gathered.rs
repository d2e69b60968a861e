//! A SQLite deferred build's sums of the tables not keyed by subject (traders, trader-days, the
//! days), gathered over the build's chunks in memory and written once at the end (or when the
//! trader-days reach `DAY_TRADERS_HELD`); see `deferred`.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use foldhash::HashMap;

use crate::{
    Result,
    aggregate_writes::Writes,
    aggregates::{DayAgg, PartyAgg},
    write_tx::WriteTx,
};

/// The sums of the tables not keyed by subject, gathered over a build's chunks (SQLite).
#[derive(Default)]
pub(super) struct Gathered {
    pub(super) traders: HashMap<Address, PartyAgg>,
    pub(super) day_traders: HashMap<(i64, Address), i64>,
    pub(super) days: BTreeMap<i64, DayAgg>,
}

impl Gathered {
    /// A chunk's deltas of these tables, added.
    pub(super) fn absorb(
        &mut self,
        days: BTreeMap<i64, DayAgg>,
        traders: HashMap<Address, PartyAgg>,
        day_traders: HashMap<(i64, Address), i64>,
    ) {
        for (day, d) in days {
            self.days.entry(day).or_default().absorb(d);
        }
        for (trader, t) in traders {
            self.traders
                .entry(trader)
                .or_insert_with(|| PartyAgg {
                    first_time: i64::MAX,
                    ..Default::default()
                })
                .absorb(t);
        }
        for (key, n) in day_traders {
            *self.day_traders.entry(key).or_default() += n;
        }
    }

    pub(super) async fn write_day_traders(&mut self, tx: &mut WriteTx, w: &Writes) -> Result<()> {
        let day_traders = std::mem::take(&mut self.day_traders);
        for day in w.day_traders(tx, day_traders).await? {
            self.days.entry(day).or_default().active += 1;
        }
        Ok(())
    }

    /// What is left written: the trader-days (and the days' active traders), the traders (and
    /// the days they appeared), the days.
    pub(super) async fn write(mut self, tx: &mut WriteTx, w: &Writes) -> Result<()> {
        self.write_day_traders(tx, w).await?;
        let traders = std::mem::take(&mut self.traders);
        for day in w.traders(tx, traders).await? {
            self.days.entry(day).or_default().new_traders += 1;
        }
        w.days(tx, self.days).await
    }
}
