//! The writes of a batch's folded deltas (see `aggregates::fold`), one multi-row upsert per
//! table, in chunks under the databases' parameter limits; the counters that depend on the
//! tables' previous state (holders, new and active traders, new subjects) read off `RETURNING`.

use std::collections::BTreeMap;

use alloy::primitives::Address;
use foldhash::HashMap;

use crate::{
    Backend, Result,
    aggregates::{DayAgg, Deltas, HoldingKey, PartyAgg, SubjectDayAgg, fold},
    amount::Wei,
    calendar::DAY,
    cost_basis::wei,
    error::db,
    row::TradeRow,
    statements::{MAX_PARAMS, big_statement, insert_into, push_placeholders},
    upserts::Table,
    write_tx::{Stmt, WriteRow, WriteTx},
};

/// Adds (`sign` = 1) or subtracts (`sign` = -1) the contribution of `trades` to every aggregate:
/// the batch folded in memory ([`fold`]), then one write per table. Counters that depend on the
/// previous state (holders, new and active traders, new subjects) are derived from the rows'
/// values after the update (`RETURNING`).
pub(super) async fn apply_aggregates(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    trades: &[TradeRow],
    basis: &[Wei],
    sign: i64,
) -> Result<()> {
    let Deltas {
        mut days,
        subjects,
        traders,
        holdings,
        day_traders,
        subject_days,
    } = fold(trades, basis, sign);
    if subjects.is_empty() {
        return Ok(());
    }
    let w = Writes {
        backend,
        market_id,
        sign,
    };
    let mut subjects = subjects;
    w.holdings(tx, holdings, &mut subjects).await?;
    for day in w.subjects(tx, subjects).await? {
        days.entry(day).or_default().new_subjects += sign;
    }
    w.subject_days(tx, subject_days).await?;
    for day in w.traders(tx, traders).await? {
        days.entry(day).or_default().new_traders += sign;
    }
    for day in w.day_traders(tx, day_traders).await? {
        days.entry(day).or_default().active += sign;
    }
    w.days(tx, days).await?;
    if sign < 0 {
        w.prune_emptied(tx).await?;
    }
    Ok(())
}

/// From the `RETURNING key, trades, first_time` rows of a subjects/traders upsert: the UTC days
/// (of their first trade) of the parties this batch made appear (`sign` > 0: their trade count
/// equals this batch's) or vanish (`sign` < 0: no trades left).
pub(super) fn appeared_or_vanished(
    returned: &[WriteRow],
    chunk: &[(Address, PartyAgg)],
    sign: i64,
) -> Result<Vec<i64>> {
    let deltas: HashMap<Address, i64> = chunk.iter().map(|(k, a)| (*k, a.trades)).collect();
    let mut days = Vec::new();
    for r in returned {
        let (trades_now, first_time) = (r.int(1), r.int(2));
        let delta = deltas[&r.parsed::<Address>(0)?];
        if (sign > 0 && trades_now == delta) || (sign < 0 && trades_now == 0) {
            days.push(first_time.div_euclid(DAY));
        }
    }
    Ok(days)
}

/// A table's deltas in the order of its primary key (the stored hex orders as the bytes do): each
/// chunk's upserts then walk the table's B-tree in order instead of jumping about it.
fn in_key_order<K: Ord, V>(deltas: HashMap<K, V>) -> Vec<(K, V)> {
    let mut rows: Vec<(K, V)> = deltas.into_iter().collect();
    rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// "INSERT INTO table (columns) VALUES (…), … ON CONFLICT … `returning`" for `rows` rows of
/// `cols` placeholders.
fn upsert_values(
    backend: Backend,
    table: Table,
    rows: usize,
    cols: usize,
    returning: &str,
) -> String {
    let mut sql = insert_into(backend, table.columns());
    sql.push_str(" VALUES ");
    push_placeholders(&mut sql, backend, rows, cols);
    sql.push_str(&table.on_conflict());
    sql.push_str(returning);
    sql
}

/// The writes of one batch's deltas, one table each.
pub(super) struct Writes {
    pub(super) backend: Backend,
    pub(super) market_id: i64,
    pub(super) sign: i64,
}

impl Writes {
    /// On rollback the first-trade times must not move: the remaining trades are all older.
    fn first(&self, t: i64) -> i64 {
        if self.sign > 0 { t } else { i64::MAX }
    }

    /// Holdings, and the holders each subject gained or lost.
    pub(super) async fn holdings(
        &self,
        tx: &mut WriteTx,
        holdings: HashMap<HoldingKey, (i64, i128)>,
        subjects: &mut HashMap<Address, PartyAgg>,
    ) -> Result<()> {
        let Self {
            backend, market_id, ..
        } = *self;
        let rows = in_key_order(holdings);
        for chunk in rows.chunks(MAX_PARAMS / 6) {
            let sql = upsert_values(
                backend,
                Table::Holdings,
                chunk.len(),
                6,
                " RETURNING subject, trader, balance, cost_gwei, cost_rem",
            );
            let mut q = big_statement(backend, &sql, chunk.len() * 6);
            for ((subject, trader), (delta, cost)) in chunk {
                let cost = wei(*cost)?;
                q.int(market_id)
                    .address(subject)
                    .address(trader)
                    .int(*delta)
                    .wei(cost);
            }
            let returned = tx.fetch_all(q).await.map_err(db("updating holdings"))?;
            let deltas: HashMap<(Address, Address), i64> =
                chunk.iter().map(|(k, (delta, _))| (*k, *delta)).collect();
            let mut emptied = Vec::new();
            for r in &returned {
                let (subject, trader): (Address, Address) = (r.parsed(0)?, r.parsed(1)?);
                let new = r.int(2);
                let old = new - deltas[&(subject, trader)];
                let change = i64::from(new > 0) - i64::from(old > 0);
                if change != 0 {
                    subjects.get_mut(&subject).expect("touched subject").holders += change;
                }
                if new == 0 && r.wei(3) == Wei::ZERO {
                    emptied.push((subject, trader));
                }
            }
            // Holdings that this batch emptied are removed (only those: a scan of the whole table per
            // batch would make the backfill quadratic). An emptied holding's cost basis is zero (its
            // last sell released all of it) — unless a buy brought a negative balance (keys sold that
            // the index never saw bought, or a provider's log at a wrong block) back to zero: that
            // row keeps its cost, so that a rollback restores it exactly. Which rows those are is
            // read off `RETURNING` and they are deleted by key alone: with `balance = 0 AND cost… = 0`
            // in the statement, PostgreSQL — whose statistics see almost no empty holding, they are
            // pruned — scanned every holding per batch against the whole key list (0.6 s a batch on
            // a 100k-trade friend.tech-shaped backfill, half of its time).
            for chunk in emptied.chunks(MAX_PARAMS / 2) {
                let mut sql = String::from("DELETE FROM holdings WHERE market_id = ");
                sql.push_str(&market_id.to_string());
                sql.push_str(" AND (subject, trader) IN (VALUES ");
                push_placeholders(&mut sql, backend, chunk.len(), 2);
                sql.push(')');
                let mut q = big_statement(backend, &sql, chunk.len() * 2);
                for (subject, trader) in chunk {
                    q.address(subject).address(trader);
                }
                tx.execute(q).await.map_err(db("pruning holdings"))?;
            }
        }

        Ok(())
    }

    /// Subjects; the days of the subjects that appeared (or vanished, on rollback).
    pub(super) async fn subjects(
        &self,
        tx: &mut WriteTx,
        subjects: HashMap<Address, PartyAgg>,
    ) -> Result<Vec<i64>> {
        let Self {
            backend,
            market_id,
            sign,
        } = *self;
        let mut appeared = Vec::new();
        let rows = in_key_order(subjects);
        for chunk in rows.chunks(MAX_PARAMS / 11) {
            let sql = upsert_values(
                backend,
                Table::Subjects,
                chunk.len(),
                11,
                " RETURNING subject, trades, first_time",
            );
            let mut q = big_statement(backend, &sql, chunk.len() * 11);
            for (subject, a) in chunk {
                q.int(market_id)
                    .address(subject)
                    .int(a.supply)
                    .int(a.holders)
                    .int(a.trades)
                    .wei(a.volume)
                    .wei(a.fees)
                    .int(self.first(a.first_time))
                    .int(a.curve);
            }
            let returned = tx.fetch_all(q).await.map_err(db("updating subjects"))?;
            appeared.extend(appeared_or_vanished(&returned, chunk, sign)?);
        }

        Ok(appeared)
    }

    /// Traders; the days of the traders that appeared (or vanished, on rollback).
    pub(super) async fn traders(
        &self,
        tx: &mut WriteTx,
        traders: HashMap<Address, PartyAgg>,
    ) -> Result<Vec<i64>> {
        let Self {
            backend,
            market_id,
            sign,
        } = *self;
        let mut appeared = Vec::new();
        let rows = in_key_order(traders);
        for chunk in rows.chunks(MAX_PARAMS / 10) {
            let sql = upsert_values(
                backend,
                Table::Traders,
                chunk.len(),
                10,
                " RETURNING trader, trades, first_time",
            );
            let mut q = big_statement(backend, &sql, chunk.len() * 10);
            for (trader, a) in chunk {
                let pnl = wei(a.pnl)?;
                q.int(market_id)
                    .address(trader)
                    .int(a.trades)
                    .wei(a.volume)
                    .wei(a.fees)
                    .int(self.first(a.first_time))
                    .wei(pnl);
            }
            let returned = tx.fetch_all(q).await.map_err(db("updating traders"))?;
            appeared.extend(appeared_or_vanished(&returned, chunk, sign)?);
        }

        Ok(appeared)
    }

    /// Each subject's days.
    pub(super) async fn subject_days(
        &self,
        tx: &mut WriteTx,
        subject_days: HashMap<(Address, i64), SubjectDayAgg>,
    ) -> Result<()> {
        let Self {
            backend, market_id, ..
        } = *self;
        let rows = in_key_order(subject_days);
        for chunk in rows.chunks(MAX_PARAMS / 12) {
            let sql = upsert_values(backend, Table::SubjectDaily, chunk.len(), 12, "");
            let mut q = big_statement(backend, &sql, chunk.len() * 12);
            for ((subject, day), a) in chunk {
                q.int(market_id)
                    .address(subject)
                    .int(*day)
                    .int(a.trades)
                    .int(a.buys)
                    .int(a.sells)
                    .wei(a.buy_volume)
                    .wei(a.sell_volume)
                    .wei(a.fees);
            }
            tx.execute(q).await.map_err(db("updating subjects' days"))?;
        }

        Ok(())
    }

    /// Daily active traders; the days that gained (or lost) an active trader.
    pub(super) async fn day_traders(
        &self,
        tx: &mut WriteTx,
        day_traders: HashMap<(i64, Address), i64>,
    ) -> Result<Vec<i64>> {
        let Self {
            backend,
            market_id,
            sign,
        } = *self;
        let mut active = Vec::new();
        let rows = in_key_order(day_traders);
        for chunk in rows.chunks(MAX_PARAMS / 4) {
            let sql = upsert_values(
                backend,
                Table::DailyTraders,
                chunk.len(),
                4,
                " RETURNING day, trader, trades",
            );
            let mut q = big_statement(backend, &sql, chunk.len() * 4);
            for ((day, trader), n) in chunk {
                q.int(market_id).int(*day).address(trader).int(*n);
            }
            let returned = tx
                .fetch_all(q)
                .await
                .map_err(db("updating daily traders"))?;
            let deltas: HashMap<(i64, Address), i64> = chunk.iter().copied().collect();
            for r in returned {
                let (day, now) = (r.int(0), r.int(2));
                let delta = deltas[&(day, r.parsed::<Address>(1)?)];
                if (sign > 0 && now == delta) || (sign < 0 && now == 0) {
                    active.push(day);
                }
            }
        }

        Ok(active)
    }

    /// The market's days.
    pub(super) async fn days(&self, tx: &mut WriteTx, days: BTreeMap<i64, DayAgg>) -> Result<()> {
        let Self {
            backend, market_id, ..
        } = *self;
        let rows: Vec<(i64, DayAgg)> = days.into_iter().collect();
        let sql = upsert_values(backend, Table::StatsDaily, rows.len(), 16, "");
        let mut q = big_statement(backend, &sql, rows.len() * 16);
        for (day, d) in &rows {
            q.int(market_id)
                .int(*day)
                .int(d.trades)
                .int(d.buys)
                .int(d.sells)
                .wei(d.buy_volume)
                .wei(d.sell_volume)
                .wei(d.protocol)
                .wei(d.subject)
                .int(d.active)
                .int(d.new_traders)
                .int(d.new_subjects);
        }
        tx.execute(q).await.map_err(db("updating daily stats"))?;

        Ok(())
    }

    /// After a rollback: the rows left with no trades.
    pub(super) async fn prune_emptied(&self, tx: &mut WriteTx) -> Result<()> {
        let Self {
            backend, market_id, ..
        } = *self;
        for table in [
            "subjects",
            "traders",
            "daily_traders",
            "stats_daily",
            "subject_daily",
        ] {
            let sql = format!("DELETE FROM {table} WHERE market_id = $1 AND trades = 0");
            let mut q = Stmt::new(backend, &sql, 1);
            q.int(market_id);
            tx.execute(q)
                .await
                .map_err(db("pruning emptied aggregates"))?;
        }
        Ok(())
    }
}
