//! Aggregates deferred during a long backfill and built once at the head.
//!
//! On friend.tech-shaped data almost every trade of a batch touches its own holding, trader-day
//! and subject-day rows, scattered over B-trees too large to stay hot: folding batch by batch
//! saves little. So a long backfill marks the market (`markets.aggregates_from`), its batches
//! store the raw trades only (no cost basis, no aggregate), and [`StoreWriter::build_aggregates`]
//! counts them all at the head: the deferred trades read back one subject partition at a time
//! (a subject's trades all fall in one partition, so the average-cost basis replays each holding
//! in chain order), each partition's holdings, subjects and subject-days written once in key
//! order, the traders', trader-days' and days' sums gathered over every partition and written at
//! the end, the sells' basis written back to their rows in row order. One transaction: a process
//! killed during the build leaves the market deferred as before, and the next run to reach the
//! head builds it again from the start (same input, same result).

use std::{collections::BTreeMap, time::Instant};

use alloy::primitives::Address;
use foldhash::HashMap;
use tracing::info;

use crate::{
    Backend, Error, MarketState, Result, StoreReader, StoreWriter,
    aggregate_writes::Writes,
    aggregates::{DayAgg, Deltas, PartyAgg, fold},
    amount::Wei,
    commit::{TRADE_COLUMNS, trade_from_row},
    cost_basis::released_basis,
    error::db,
    lease::fence,
    statements::{MAX_PARAMS, big_statement, push_placeholders},
    write_tx::{Stmt, WriteTx},
};

/// Trader-days gathered before they are written (a bound on the build's memory; writing them in
/// several goes gives the same rows).
const DAY_TRADERS_HELD: usize = 500_000;
/// Sells' bases gathered before they are written back (sorted by row).
const BASES_HELD: usize = 500_000;

/// The subject partitions of a build over `trades` deferred trades: the lower bounds of ranges
/// of the stored 0x hex by its first hex digits (one digit for a small build, more for a large
/// one, so a partition holds a few thousand trades), each range ending where the next begins
/// and the last at "0y" (after every "0x…" text).
pub(crate) fn partitions(trades: u64) -> Vec<String> {
    let digits = match trades {
        0..=100_000 => 1,
        100_001..=2_000_000 => 2,
        _ => 3,
    };
    (0..16usize.pow(digits))
        .map(|p| format!("0x{p:0width$x}", width = digits as usize))
        .collect()
}

impl StoreReader {
    /// The first block of `market_id` whose trades the aggregates do not count yet (a long
    /// backfill's deferred build pending; see [`StoreWriter::build_aggregates`]), if any.
    pub async fn aggregates_from(&self, market_id: i64) -> Result<Option<u64>> {
        let row: (Option<i64>,) =
            sqlx::query_as("SELECT aggregates_from FROM markets WHERE id = $1")
                .bind(market_id)
                .fetch_one(&self.pool)
                .await
                .map_err(db("reading whether the aggregates are deferred"))?;
        Ok(row.0.map(|b| b as u64))
    }
}

impl StoreWriter {
    /// From the market's checkpoint on, batches store their raw trades only, until
    /// [`Self::build_aggregates`] (already deferred: nothing changes). Fenced like a batch.
    pub async fn defer_aggregates(&self, market: &MarketState) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut q = Stmt::new(
            self.backend,
            "UPDATE markets SET aggregates_from = next_block WHERE id = $1 AND aggregates_from IS NULL",
            1,
        );
        q.int(market.id);
        tx.execute(q)
            .await
            .map_err(db("deferring the aggregates"))?;
        fence(&mut tx, self.backend, market).await?;
        tx.commit().await.map_err(db("deferring the aggregates"))
    }

    /// Counts the trades a long backfill stored raw (see the module's documentation) into every
    /// aggregate, with their cost basis, in one transaction; returns how many there were
    /// (`None`: nothing was deferred). Needs the trades' subject index (built at the head with
    /// the other secondary indexes, before this).
    pub async fn build_aggregates(&self, market: &MarketState) -> Result<Option<u64>> {
        let backend = self.backend;
        let started = Instant::now();
        let mut tx = self.begin_write().await?;
        let mut q = Stmt::new(
            backend,
            "SELECT aggregates_from FROM markets WHERE id = $1 AND aggregates_from IS NOT NULL",
            1,
        );
        q.int(market.id);
        let Some(from) = tx
            .fetch_all(q)
            .await
            .map_err(db("reading whether the aggregates are deferred"))?
            .first()
            .map(|r| r.int(0))
        else {
            return Ok(None);
        };
        let mut q = Stmt::new(
            backend,
            "SELECT COUNT(*) FROM trades WHERE market_id = $1 AND block_number >= $2",
            2,
        );
        q.int(market.id).int(from);
        let total = tx
            .fetch_all(q)
            .await
            .map_err(db("counting the deferred trades"))?[0]
            .int(0) as u64;
        info!(target: "indexer::store", market = market.id, from_block = from, trades = total, "building the deferred aggregates");
        let mut build = Build::new(backend, market.id);
        let bounds = partitions(total);
        let mut last_log = Instant::now();
        for (i, lo) in bounds.iter().enumerate() {
            let hi = bounds.get(i + 1).map_or("0y", String::as_str);
            build.partition(&mut tx, from, lo, hi).await?;
            if last_log.elapsed().as_secs() >= 5 {
                last_log = Instant::now();
                info!(target: "indexer::store", market = market.id, partitions_done = i + 1, partitions = bounds.len(), trades_done = build.trades, trades = total, "building the deferred aggregates");
            }
        }
        if build.trades != total {
            return Err(Error::Corrupt(format!(
                "the deferred build read {} trades by subject but {total} by block",
                build.trades
            )));
        }
        build.finish(&mut tx).await?;
        let mut q = Stmt::new(
            backend,
            "UPDATE markets SET aggregates_from = NULL WHERE id = $1",
            1,
        );
        q.int(market.id);
        tx.execute(q)
            .await
            .map_err(db("ending the deferred build"))?;
        fence(&mut tx, backend, market).await?;
        tx.commit()
            .await
            .map_err(db("committing the deferred build"))?;
        info!(target: "indexer::store", market = market.id, trades = total, secs = started.elapsed().as_secs_f64(), "built the deferred aggregates");
        Ok(Some(total))
    }
}

/// A build in progress: what is gathered over the partitions.
struct Build {
    writes: Writes,
    /// Trades read so far.
    trades: u64,
    traders: HashMap<Address, PartyAgg>,
    day_traders: HashMap<(i64, Address), i64>,
    days: BTreeMap<i64, DayAgg>,
    /// (row, basis) of the sells read so far that release a basis.
    bases: Vec<(i64, Wei)>,
}

impl Build {
    fn new(backend: Backend, market_id: i64) -> Self {
        Self {
            writes: Writes {
                backend,
                market_id,
                sign: 1,
            },
            trades: 0,
            traders: HashMap::default(),
            day_traders: HashMap::default(),
            days: BTreeMap::new(),
            bases: Vec::new(),
        }
    }

    /// The deferred trades of the subjects in [`lo`, `hi`), in chain order: their basis, their
    /// holdings, subjects and subject-days written, the rest gathered.
    async fn partition(&mut self, tx: &mut WriteTx, from: i64, lo: &str, hi: &str) -> Result<()> {
        let w = &self.writes;
        let row_id = match w.backend {
            Backend::Sqlite => "rowid",
            Backend::Postgres => "CAST(ctid AS TEXT)",
        };
        let sql = format!(
            "SELECT {TRADE_COLUMNS}, {row_id} FROM trades WHERE market_id = $1 AND subject >= $2 AND subject < $3 \
             AND block_number >= $4 ORDER BY block_number, log_index"
        );
        let mut q = Stmt::new(w.backend, &sql, 4);
        q.int(w.market_id).text(lo).text(hi).int(from);
        let rows = tx
            .fetch_all(q)
            .await
            .map_err(db("reading deferred trades"))?;
        if rows.is_empty() {
            return Ok(());
        }
        self.trades += rows.len() as u64;
        let trades = rows
            .iter()
            .map(trade_from_row)
            .collect::<Result<Vec<_>>>()?;
        let basis = released_basis(tx, w.backend, w.market_id, &trades).await?;
        for (r, b) in rows.iter().zip(&basis).filter(|(_, b)| **b != Wei::ZERO) {
            let row = match w.backend {
                Backend::Sqlite => r.int(17),
                Backend::Postgres => packed_ctid(r.text(17))?,
            };
            self.bases.push((row, *b));
        }
        let Deltas {
            days,
            mut subjects,
            traders,
            holdings,
            day_traders,
            subject_days,
        } = fold(&trades, &basis, 1);
        w.holdings(tx, holdings, &mut subjects).await?;
        let mut days = days;
        for day in w.subjects(tx, subjects).await? {
            days.entry(day).or_default().new_subjects += 1;
        }
        w.subject_days(tx, subject_days).await?;
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
        if self.day_traders.len() >= DAY_TRADERS_HELD {
            self.write_day_traders(tx).await?;
        }
        if self.bases.len() >= BASES_HELD {
            self.write_bases(tx).await?;
        }
        Ok(())
    }

    /// What was gathered, written: the bases left, the traders (and the days they appeared),
    /// the trader-days (and the days' active traders), the days.
    async fn finish(mut self, tx: &mut WriteTx) -> Result<()> {
        self.write_bases(tx).await?;
        self.write_day_traders(tx).await?;
        let traders = std::mem::take(&mut self.traders);
        for day in self.writes.traders(tx, traders).await? {
            self.days.entry(day).or_default().new_traders += 1;
        }
        self.writes.days(tx, self.days).await
    }

    async fn write_day_traders(&mut self, tx: &mut WriteTx) -> Result<()> {
        let day_traders = std::mem::take(&mut self.day_traders);
        for day in self.writes.day_traders(tx, day_traders).await? {
            self.days.entry(day).or_default().active += 1;
        }
        Ok(())
    }

    /// The gathered sells' basis written to their rows, in row order.
    async fn write_bases(&mut self, tx: &mut WriteTx) -> Result<()> {
        let mut bases = std::mem::take(&mut self.bases);
        bases.sort_unstable_by_key(|(row, _)| *row);
        let backend = self.writes.backend;
        let row = match backend {
            Backend::Sqlite => "trades.rowid = v.column1",
            Backend::Postgres => "trades.ctid = CAST(v.column1 AS tid)",
        };
        for chunk in bases.chunks(MAX_PARAMS / 3) {
            let mut sql = String::from(
                "UPDATE trades SET basis_gwei = v.column2, basis_rem = v.column3 FROM (VALUES ",
            );
            push_placeholders(&mut sql, backend, chunk.len(), 3);
            sql.push_str(&format!(") AS v WHERE {row}"));
            let mut q = big_statement(backend, &sql, chunk.len() * 3);
            for (r, b) in chunk {
                match backend {
                    Backend::Sqlite => q.int(*r),
                    Backend::Postgres => q.text(&format!("({},{})", r >> 16, r & 0xffff)),
                };
                q.wei(*b);
            }
            let done = tx
                .execute(q)
                .await
                .map_err(db("writing the sells' cost basis"))?;
            if done != chunk.len() as u64 {
                return Err(Error::Corrupt(format!(
                    "the deferred build wrote the basis of {done} sells of {}",
                    chunk.len()
                )));
            }
        }
        Ok(())
    }
}

/// A PostgreSQL row's `ctid` text, "(block,offset)", as one integer (block × 2¹⁶ + offset:
/// offsets are below 2¹⁶).
fn packed_ctid(text: &str) -> Result<i64> {
    let bad = || Error::Corrupt(format!("{text:?} is not a row's ctid"));
    let (block, offset) = text
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .and_then(|t| t.split_once(','))
        .ok_or_else(bad)?;
    let block: i64 = block.parse().map_err(|_| bad())?;
    let offset: i64 = offset.parse().map_err(|_| bad())?;
    (0..1 << 16)
        .contains(&offset)
        .then_some(block << 16 | offset)
        .ok_or_else(bad)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Partitions cover every stored 0x address exactly once, in order, and grow finer with the
    /// build's size.
    #[test]
    fn partitions_cover_every_address_once() {
        assert_eq!(partitions(10).len(), 16);
        assert_eq!(partitions(1_000_000).len(), 256);
        assert_eq!(partitions(12_000_000).len(), 4096);
        for trades in [10, 1_000_000, 12_000_000] {
            let bounds = partitions(trades);
            assert!(bounds[0][2..].chars().all(|c| c == '0'));
            assert!(bounds.windows(2).all(|w| w[0] < w[1]));
            for a in [
                "0x0000000000000000000000000000000000000000",
                "0xffffffffffffffffffffffffffffffffffffffff",
                "0x9fffffffffffffffffffffffffffffffffffffff",
                "0xa000000000000000000000000000000000000000",
            ] {
                let inside = bounds
                    .iter()
                    .enumerate()
                    .filter(|(i, lo)| {
                        let hi = bounds.get(i + 1).map_or("0y", String::as_str);
                        a >= lo.as_str() && a < hi
                    })
                    .count();
                assert_eq!(inside, 1, "{a} in {trades}'s partitions");
            }
        }
    }

    #[test]
    fn ctids_pack_and_refuse_garbage() {
        assert_eq!(packed_ctid("(0,1)").unwrap(), 1);
        assert_eq!(packed_ctid("(3,7)").unwrap(), 3 << 16 | 7);
        for bad in ["", "(1)", "(a,1)", "(1,70000)", "1,2"] {
            assert!(packed_ctid(bad).is_err(), "{bad}");
        }
    }
}
