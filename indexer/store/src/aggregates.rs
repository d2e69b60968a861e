//! The aggregates kept incrementally: per UTC day, subject, trader, holding, (day, trader) and
//! (subject, day), added for a batch and subtracted for a rollback with the same code.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use foldhash::HashMap;

use keymarket_contracts::curve;

use crate::{
    amount::Wei,
    calendar::DAY,
    cost_basis::{paid, received},
    row::TradeRow,
};

#[derive(Default)]
pub(super) struct DayAgg {
    pub(super) trades: i64,
    pub(super) buys: i64,
    pub(super) sells: i64,
    pub(super) buy_volume: Wei,
    pub(super) sell_volume: Wei,
    pub(super) protocol: Wei,
    pub(super) subject: Wei,
    pub(super) active: i64,
    pub(super) new_traders: i64,
    pub(super) new_subjects: i64,
}

#[derive(Default)]
pub(super) struct PartyAgg {
    pub(super) trades: i64,
    pub(super) volume: Wei,
    pub(super) fees: Wei,
    pub(super) first_time: i64,
    pub(super) supply: i64,
    pub(super) holders: i64,
    /// Subjects: the curve multiple read off the batch's trades (0: not seen).
    pub(super) curve: i64,
    /// Traders: realised PnL, wei.
    pub(super) pnl: i128,
}

impl DayAgg {
    /// Adds `other`'s counts and sums (a deferred build gathers its chunks' days).
    pub(super) fn absorb(&mut self, other: DayAgg) {
        self.trades += other.trades;
        self.buys += other.buys;
        self.sells += other.sells;
        self.buy_volume += other.buy_volume;
        self.sell_volume += other.sell_volume;
        self.protocol += other.protocol;
        self.subject += other.subject;
        self.active += other.active;
        self.new_traders += other.new_traders;
        self.new_subjects += other.new_subjects;
    }
}

impl PartyAgg {
    /// Adds `other`'s trades, sums and PnL, keeps the earlier first trade (a deferred build
    /// gathers a trader's trades from several chunks). Supply, holders and curve are the
    /// subjects' and are not gathered this way.
    pub(super) fn absorb(&mut self, other: PartyAgg) {
        self.trades += other.trades;
        self.volume += other.volume;
        self.fees += other.fees;
        self.first_time = self.first_time.min(other.first_time);
        self.pnl += other.pnl;
    }
}

/// A subject's trades of one UTC day.
#[derive(Default)]
pub(super) struct SubjectDayAgg {
    pub(super) trades: i64,
    pub(super) buys: i64,
    pub(super) sells: i64,
    pub(super) buy_volume: Wei,
    pub(super) sell_volume: Wei,
    pub(super) fees: Wei,
}

/// (subject, trader).
pub(super) type HoldingKey = (Address, Address);

/// The curve of a trade's subject, as a multiple of friend.tech's s²/16000 per key, from the
/// trade's price: ethAmount = multiple × Σ i² over the keys traded × 1 ether / 16000. `None`
/// when the keys traded are free (the first key) or the price is not on such a curve.
pub(super) fn curve_multiple(t: &TradeRow) -> Option<i64> {
    let n = u128::try_from(t.share_amount).ok()?;
    let supply = u128::try_from(t.supply).ok()?;
    // The keys traded are numbered lo..=hi (a buy ends at the new supply, a sell starts there).
    let lo = if t.is_buy {
        supply.checked_sub(n)?
    } else {
        supply
    };
    let hi = (lo + n).checked_sub(1)?;
    let unit = curve::squares_between(lo, hi)?.checked_mul(curve::KEY_UNIT)?;
    let eth = u128::try_from(t.eth.to_i128()).ok()?;
    (unit > 0 && eth % unit == 0)
        .then(|| i64::try_from(eth / unit).ok())
        .flatten()
        .filter(|m| *m > 0)
}

/// A batch's contribution to every aggregate table, folded in memory (`sign` applied): what
/// [`apply_aggregates`] writes, one table at a time.
#[derive(Default)]
pub(super) struct Deltas {
    pub(super) days: BTreeMap<i64, DayAgg>,
    pub(super) subjects: HashMap<Address, PartyAgg>,
    pub(super) traders: HashMap<Address, PartyAgg>,
    /// (balance change, cost change in wei)
    pub(super) holdings: HashMap<HoldingKey, (i64, i128)>,
    pub(super) day_traders: HashMap<(i64, Address), i64>,
    pub(super) subject_days: HashMap<(Address, i64), SubjectDayAgg>,
}

/// Folds `trades` (with the cost basis `basis[i]` each released, see [`released_basis`]) into
/// per-table deltas, added (`sign` = 1) or subtracted (`sign` = -1). Zero-amount trades count in
/// none. Pure: the counters that depend on the tables' previous state (holders, new and active
/// traders, new subjects) are left to the writes.
pub(super) fn fold(trades: &[TradeRow], basis: &[Wei], sign: i64) -> Deltas {
    let s = |w: Wei| if sign > 0 { w } else { w.negated() };
    let mut deltas = Deltas::default();
    let Deltas {
        days,
        subjects,
        traders,
        holdings,
        day_traders,
        subject_days,
    } = &mut deltas;
    let trades = trades
        .iter()
        .zip(basis)
        .filter(|(t, _)| t.share_amount != 0);
    for (t, basis) in trades {
        let day = t.block_time.div_euclid(DAY);
        let d = days.entry(day).or_default();
        let sd = subject_days.entry((t.subject, day)).or_default();
        d.trades += sign;
        sd.trades += sign;
        if t.is_buy {
            d.buys += sign;
            d.buy_volume += s(t.eth);
            sd.buys += sign;
            sd.buy_volume += s(t.eth);
        } else {
            d.sells += sign;
            d.sell_volume += s(t.eth);
            sd.sells += sign;
            sd.sell_volume += s(t.eth);
        }
        d.protocol += s(t.protocol_fee);
        d.subject += s(t.subject_fee);
        sd.fees += s(t.subject_fee);
        let sj = subjects.entry(t.subject).or_insert_with(|| PartyAgg {
            first_time: i64::MAX,
            ..Default::default()
        });
        sj.trades += sign;
        sj.volume += s(t.eth);
        sj.fees += s(t.subject_fee);
        sj.first_time = sj.first_time.min(t.block_time);
        sj.supply = t.supply; // trades are in chain order: the last one wins
        if sign > 0 {
            // A subject's curve never changes: rolling back leaves it as it was.
            sj.curve = curve_multiple(t).unwrap_or(sj.curve);
        }
        let tr = traders.entry(t.trader).or_insert_with(|| PartyAgg {
            first_time: i64::MAX,
            ..Default::default()
        });
        tr.trades += sign;
        tr.volume += s(t.eth);
        tr.fees += s(t.protocol_fee.plus(t.subject_fee));
        tr.first_time = tr.first_time.min(t.block_time);
        let h = holdings.entry((t.subject, t.trader)).or_default();
        let basis = basis.to_i128();
        if t.is_buy {
            h.0 += sign * t.share_amount;
            h.1 += i128::from(sign) * paid(t);
        } else {
            h.0 -= sign * t.share_amount;
            h.1 -= i128::from(sign) * basis;
            tr.pnl += i128::from(sign) * (received(t) - basis);
        }
        *day_traders.entry((day, t.trader)).or_default() += sign;
    }
    deltas
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;

    fn trade(is_buy: bool, share_amount: i64, supply: i64, eth_wei: i128) -> TradeRow {
        TradeRow {
            chain_id: 1,
            tx_hash: B256::ZERO,
            log_index: 0,
            block_number: 1,
            block_hash: B256::ZERO,
            block_time: 0,
            trader: Address::ZERO,
            subject: Address::ZERO,
            is_buy,
            share_amount,
            eth: Wei::from_i128(eth_wei).unwrap(),
            protocol_fee: Wei::ZERO,
            subject_fee: Wei::ZERO,
            supply,
        }
    }

    /// A batch folds into one delta per table key; a rollback's fold is its exact negation, and
    /// a zero-amount trade counts nowhere.
    #[test]
    fn a_batch_folds_into_per_table_deltas() {
        let unit = curve::KEY_UNIT as i128;
        let [a, b, c, s, t] = [1u8, 2, 3, 0x11, 0x12].map(Address::repeat_byte);
        let at = |mut t: TradeRow, trader: Address, subject: Address, time: i64, fee: i128| {
            t.trader = trader;
            t.subject = subject;
            t.block_time = time;
            t.protocol_fee = Wei::from_i128(fee).unwrap();
            t.subject_fee = Wei::from_i128(fee).unwrap();
            t
        };
        let trades = vec![
            at(trade(true, 1, 5, 16 * unit), a, s, 10, 100),
            at(trade(true, 1, 6, 25 * unit), b, s, 20, 200),
            at(trade(false, 1, 5, 25 * unit), a, s, DAY + 5, 300),
            at(trade(true, 0, 5, 0), c, t, DAY + 6, 0),
        ];
        let basis = [
            Wei::ZERO,
            Wei::ZERO,
            Wei::from_i128(16 * unit).unwrap(),
            Wei::ZERO,
        ];
        let up = fold(&trades, &basis, 1);
        assert_eq!(up.days.len(), 2);
        let (d0, d1) = (&up.days[&0], &up.days[&1]);
        assert_eq!((d0.trades, d0.buys, d0.sells), (2, 2, 0));
        assert_eq!(d0.buy_volume.to_i128(), 41 * unit);
        assert_eq!((d1.trades, d1.sells), (1, 1));
        assert_eq!(d1.protocol.to_i128(), 300);
        let sj = &up.subjects[&s];
        assert_eq!(
            (sj.trades, sj.supply, sj.first_time, sj.curve),
            (3, 5, 10, 1)
        );
        assert!(
            !up.subjects.contains_key(&t),
            "a zero-amount trade counts nowhere"
        );
        // a bought key 4 for 16 units and sold key 5 for 25 less 600 wei of fees, against the
        // basis given (16 units): realised PnL 9 units - 600 wei; its holding keeps the 200 wei
        // of buying fees the basis did not release.
        assert_eq!(up.traders[&a].pnl, 9 * unit - 600);
        assert_eq!(up.traders[&a].fees.to_i128(), 800);
        assert_eq!(up.holdings[&(s, a)], (0, 200));
        assert_eq!(up.holdings[&(s, b)], (1, 25 * unit + 400));
        assert_eq!(up.day_traders.len(), 3);
        assert_eq!(up.subject_days[&(s, 0)].fees.to_i128(), 300);

        let down = fold(&trades, &basis, -1);
        assert_eq!(down.days[&0].trades, -2);
        assert_eq!(down.days[&0].buy_volume.to_i128(), -41 * unit);
        assert_eq!(down.traders[&a].pnl, -(9 * unit - 600));
        assert_eq!(down.holdings[&(s, b)], (-1, -(25 * unit + 400)));
        assert_eq!(
            down.subjects[&s].curve, 0,
            "a rollback leaves the curve as it was"
        );
    }

    /// A subject's curve (1× or 10× friend.tech's k²/16000 ETH per key) read off a trade's price.
    #[test]
    fn curves_are_read_off_prices() {
        let unit = curve::KEY_UNIT as i128; // 1 ETH / 16000
        // Buying key number 4 (supply 4 → 5) costs 4² units; keys 4..=6 cost 16 + 25 + 36.
        assert_eq!(curve_multiple(&trade(true, 1, 5, 16 * unit)), Some(1));
        assert_eq!(curve_multiple(&trade(true, 3, 7, 77 * unit)), Some(1));
        assert_eq!(curve_multiple(&trade(true, 1, 5, 160 * unit)), Some(10));
        // Selling keys 5..=6 (supply 7 → 5) pays 25 + 36 units.
        assert_eq!(curve_multiple(&trade(false, 2, 5, 61 * unit)), Some(1));
        // The first key is free: no price to read a curve from.
        assert_eq!(curve_multiple(&trade(true, 1, 1, 0)), None);
        // A price that is no multiple of the curve's, and impossible numbers.
        assert_eq!(curve_multiple(&trade(true, 1, 5, 16 * unit + 1)), None);
        assert_eq!(curve_multiple(&trade(true, 6, 5, 16 * unit)), None);
        assert_eq!(curve_multiple(&trade(true, 0, 5, 0)), None);
    }
}
