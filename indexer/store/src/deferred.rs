//! Aggregates deferred during a long backfill and built once at the head.
//!
//! On friend.tech-shaped data almost every trade of a batch touches its own holding, trader-day
//! and subject-day rows, scattered over B-trees too large to stay hot: folding batch by batch
//! saves little. So a long backfill marks the market (`markets.aggregates_from`), its batches
//! store the raw trades only (no cost basis, no aggregate), and [`StoreWriter::build_aggregates`]
//! counts them all at the head, in two steps. A Rust pass reads the deferred trades back 20,000
//! at a time in (subject, block, log index) order — each holding's and each subject's trades in
//! chain order — replays each holding's average-cost basis in memory (only the current subject's
//! holdings are kept), writes each chunk's subjects (their latest supply and curve need the trades
//! in order) and the sells' basis back to their rows. The other sums are counted where they
//! measure faster (1M friend.tech-shaped trades, `bench-store`, same machine, alternating runs):
//! on PostgreSQL inside the database from the raw table, set-based (`deferred_sums`: a 200k-trade
//! build 5.3 s against 10.6 s through the driver) — but for the holdings of a market with none
//! stored before the range, whose final states the replay ends with: copied in with `COPY`
//! (build 1.20–1.58× the `GROUP BY`'s); on SQLite in the same Rust pass, each chunk's
//! holdings and subject-days written in key order, the traders', trader-days' and days' sums
//! gathered over every chunk and written at the end (15.8–15.9 s against 19.5–20.7 s for
//! SQLite's five `GROUP BY` sorts over the table).
//! One transaction: a process killed during the build leaves the market deferred as before, and
//! the next run to reach the head builds it again from the start (same input, same result).

use std::time::Instant;

use alloy::primitives::{Address, B256};
use foldhash::HashSet;
use tracing::info;

use crate::{
    Backend, Error, MarketState, Result, StoreReader, StoreWriter,
    aggregate_writes::Writes,
    aggregates::{Deltas, fold},
    amount::Wei,
    connect::SQLITE_TEMP_STORE,
    copy_in::{HoldingRow, copy_holdings},
    cost_basis::{HoldingStates, replay, stored_holdings},
    deferred_gathered::Gathered,
    deferred_sums::count_sums,
    error::db,
    lease::fence,
    row::TradeRow,
    statements::{MAX_PARAMS, big_statement, push_placeholders},
    write_tx::{Stmt, WriteRow, WriteTx},
};

/// Trader-days gathered before they are written (a bound on the build's memory; writing them in
/// several goes gives the same rows). 200,000, not more: a chunk adds at most `BUILD_CHUNK`, so
/// the map never outgrows its 2¹⁸ buckets (~11 MB; at 500,000 it doubled to 2²⁰, ~41 MB, plus
/// the old table while it grew).
const DAY_TRADERS_HELD: usize = 200_000;
/// Sells' bases gathered before they are written back (sorted by row).
const BASES_HELD: usize = 500_000;
/// Finished holdings gathered before they are copied (PostgreSQL), in chunks' worth: at most
/// one per trade, 100,000 at the default chunk (a few MB).
const HOLDINGS_HELD_CHUNKS: usize = 5;

/// Deferred trades read back at a time: bounds the build's memory.
const BUILD_CHUNK: usize = 20_000;

/// The columns the build reads of each deferred trade: what the basis and the aggregates need
/// (not its hashes), then the row's id.
const BUILD_COLUMNS: &str = "subject, block_number, log_index, block_time, trader, is_buy, share_amount, \
     eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply";

impl StoreReader {
    /// How many trades `market_id` has stored, and over how many holdings they spread: how
    /// much folding a batch's trades per key saves (see `sync::long_backfill`).
    pub async fn trades_and_holdings(&self, market_id: i64) -> Result<(u64, u64)> {
        let row: (i64, i64) = sqlx::query_as(
            "SELECT (SELECT COUNT(*) FROM trades WHERE market_id = $1), \
             (SELECT COUNT(*) FROM holdings WHERE market_id = $1)",
        )
        .bind(market_id)
        .fetch_one(&self.pool)
        .await
        .map_err(db("counting trades and holdings"))?;
        Ok((row.0 as u64, row.1 as u64))
    }

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
    /// (`None`: nothing was deferred). Needs no secondary index of the trades (it sorts them
    /// once; see `read_order`): a long backfill builds them after it.
    pub async fn build_aggregates(&self, market: &MarketState) -> Result<Option<u64>> {
        self.build_aggregates_by(market, BUILD_CHUNK).await
    }

    /// [`Self::build_aggregates`], reading `chunk` trades at a time (tests cross many chunks'
    /// boundaries with a small one).
    pub async fn build_aggregates_by(
        &self,
        market: &MarketState,
        chunk: usize,
    ) -> Result<Option<u64>> {
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
        let mut q = Stmt::new(
            backend,
            "SELECT COUNT(*) FROM (SELECT 1 FROM holdings WHERE market_id = $1 LIMIT 1) AS h",
            1,
        );
        q.int(market.id);
        let stored = tx
            .fetch_all(q)
            .await
            .map_err(db("reading whether holdings are stored"))?[0]
            .int(0)
            > 0;
        let mut build = Build::new(backend, market.id, stored, chunk);
        let read = build.read_order(&mut tx, from, chunk).await?;
        let mut after = (String::new(), 0, 0);
        let mut last_log = Instant::now();
        loop {
            let Some(last) = build.chunk(&mut tx, &read, &after).await? else {
                break;
            };
            after = last;
            if last_log.elapsed().as_secs() >= 5 {
                last_log = Instant::now();
                info!(target: "indexer::store", market = market.id, trades_done = build.trades, trades = total, "building the deferred aggregates");
            }
        }
        if build.trades != total {
            return Err(Error::Corrupt(format!(
                "the deferred build read {} trades by subject but {total} by block",
                build.trades
            )));
        }
        if backend == Backend::Sqlite {
            tx.execute(Stmt::new(
                backend,
                "DROP INDEX IF EXISTS trades_deferred_build",
                0,
            ))
            .await
            .map_err(db("dropping the build's index"))?;
        }
        build.copy_finished(&mut tx, true).await?;
        let secs = build.secs;
        let t = Instant::now();
        build.write_bases(&mut tx).await?;
        let bases = t.elapsed().as_secs_f64();
        let t = Instant::now();
        match build.gathered.take() {
            Some(gathered) => gathered.write(&mut tx, &build.writes).await?,
            None => {
                let copied = build.finished.is_some();
                count_sums(&mut tx, backend, market.id, from, copied).await?
            }
        }
        let sums = t.elapsed().as_secs_f64();
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
        info!(target: "indexer::store", market = market.id, trades = total, secs = started.elapsed().as_secs_f64(), read_secs = secs[0], basis_secs = secs[1], chunk_writes_secs = secs[2], bases_secs = bases, sums_secs = sums, "built the deferred aggregates");
        Ok(Some(total))
    }
}

/// A build in progress: what is carried over the chunks.
struct Build {
    writes: Writes,
    /// Whether the market had holdings before the deferred range (then each holding's state
    /// starts from the stored one).
    stored: bool,
    /// Trades read so far.
    trades: u64,
    /// Seconds spent reading the trades, replaying the basis, writing each chunk's rows.
    secs: [f64; 3],
    /// SQLite: the sums gathered over the chunks (PostgreSQL counts them in the database).
    gathered: Option<Gathered>,
    /// The (balance, cost) of the holdings of the subject the last chunk ended in (the only
    /// ones a later chunk can continue: the trades come subject by subject).
    holdings: HoldingStates,
    /// The holdings of that subject whose stored state (from before the deferred range) is in
    /// `holdings` already.
    loaded: HashSet<(Address, Address)>,
    /// (row, basis) of the sells read so far that release a basis.
    bases: Vec<(i64, Wei)>,
    /// PostgreSQL, no holding of the market stored: the holdings whose subject the build has
    /// passed — their final state — gathered to be copied into the table (not summed there).
    finished: Option<Vec<HoldingRow>>,
    /// Trades read at a time.
    chunk: usize,
}

impl Build {
    fn new(backend: Backend, market_id: i64, stored: bool, chunk: usize) -> Self {
        Self {
            writes: Writes {
                backend,
                market_id,
                sign: 1,
            },
            stored,
            trades: 0,
            secs: [0.0; 3],
            holdings: HoldingStates::default(),
            loaded: HashSet::default(),
            bases: Vec::new(),
            gathered: (backend == Backend::Sqlite).then(Gathered::default),
            finished: (backend == Backend::Postgres && !stored).then(Vec::new),
            chunk,
        }
    }

    /// The finished holdings gathered, copied in key order (the emptied left out, as a batch
    /// removes them). `all`: the build's last trade is read, every holding is finished.
    async fn copy_finished(&mut self, tx: &mut WriteTx, all: bool) -> Result<()> {
        let Some(finished) = &mut self.finished else {
            return Ok(());
        };
        if all {
            finished.extend(self.holdings.drain());
        } else if finished.len() < self.chunk * HOLDINGS_HELD_CHUNKS {
            return Ok(());
        }
        let mut rows = std::mem::take(finished);
        rows.retain(|(_, (balance, cost))| *balance != 0 || *cost != 0);
        rows.sort_unstable_by_key(|(key, _)| *key);
        copy_holdings(tx, self.writes.market_id, &rows).await
    }

    /// The statement that reads the deferred trades a chunk at a time, in (subject, block, log
    /// index) order — each holding's and each subject's trades in chain order, which is all
    /// the basis and the aggregates ask (the order between subjects changes no sum) — sorted
    /// once, so that every read is sequential (through the subject index each trade was a
    /// random seek into the table: 17 s of a 1M-trade SQLite build). On SQLite through an index
    /// of its own, partial and covering, built here inside the transaction; on PostgreSQL
    /// through a cursor over one sort of the table (no index of the trades needed: they are
    /// built after the build, so the sells' basis written back updates two indexes, not six).
    async fn read_order(&self, tx: &mut WriteTx, from: i64, chunk: usize) -> Result<String> {
        let (market_id, backend) = (self.writes.market_id, self.writes.backend);
        let after = "(subject, block_number, log_index) > ($1, $2, $3)";
        Ok(match backend {
            Backend::Sqlite => {
                // Literals, not parameters: SQLite uses a partial index only for a query whose
                // WHERE names the same constants.
                let only = format!("market_id = {market_id} AND block_number >= {from}");
                let create = format!(
                    "CREATE INDEX IF NOT EXISTS trades_deferred_build ON trades (subject, block_number, log_index, \
                     block_time, trader, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, \
                     subject_gwei, subject_rem, supply) WHERE {only}"
                );
                let t = Instant::now();
                sqlite_sort_on_files(tx, backend, true).await?;
                tx.execute(Stmt::new(backend, &create, 0))
                    .await
                    .map_err(db("building the build's index"))?;
                sqlite_sort_on_files(tx, backend, false).await?;
                info!(target: "indexer::store", secs = t.elapsed().as_secs_f64(), "built the deferred build's index");
                format!(
                    "SELECT {BUILD_COLUMNS}, rowid FROM trades INDEXED BY trades_deferred_build WHERE {only} \
                     AND {after} ORDER BY subject, block_number, log_index LIMIT {chunk}"
                )
            }
            Backend::Postgres => {
                // The sort in memory where it fits (the default work_mem is 4 MB; this
                // transaction only; the set-based sums use it too), the table's statistics fresh
                // (a backfill just filled it).
                for sql in [
                    "SET LOCAL work_mem = '256MB'".to_string(),
                    "ANALYZE trades".to_string(),
                    format!(
                        "DECLARE deferred_build NO SCROLL CURSOR FOR SELECT {BUILD_COLUMNS}, CAST(ctid AS TEXT) \
                         FROM trades WHERE market_id = {market_id} AND block_number >= {from} \
                         ORDER BY subject, block_number, log_index"
                    ),
                ] {
                    tx.execute(Stmt::new(backend, &sql, 0).persistent(false))
                        .await
                        .map_err(db("opening the deferred trades' cursor"))?;
                }
                format!("FETCH {chunk} FROM deferred_build")
            }
        })
    }

    /// The next chunk of deferred trades after `after` (subject, block, log index) read with
    /// `read` and counted; its last trade's place (`None`: none was left).
    async fn chunk(
        &mut self,
        tx: &mut WriteTx,
        read: &str,
        after: &(String, i64, i64),
    ) -> Result<Option<(String, i64, i64)>> {
        let backend = self.writes.backend;
        let q = match backend {
            Backend::Sqlite => {
                let mut q = Stmt::new(backend, read, 3);
                q.text(&after.0).int(after.1).int(after.2);
                q
            }
            // The cursor keeps its place.
            Backend::Postgres => Stmt::new(backend, read, 0).persistent(false),
        };
        let t = Instant::now();
        let rows = tx
            .fetch_all(q)
            .await
            .map_err(db("reading deferred trades"))?;
        self.secs[0] += t.elapsed().as_secs_f64();
        let Some(end) = rows.last() else {
            return Ok(None);
        };
        let last = (end.text(0).to_string(), end.int(1), end.int(2));
        self.count(tx, &rows).await?;
        Ok(Some(last))
    }

    /// A chunk's trades (rows of [`BUILD_COLUMNS`]): their basis replayed (continuing the
    /// holdings the chunk before left), their subjects written.
    async fn count(&mut self, tx: &mut WriteTx, rows: &[WriteRow]) -> Result<()> {
        let w = &self.writes;
        self.trades += rows.len() as u64;
        let trades = rows.iter().map(build_trade).collect::<Result<Vec<_>>>()?;
        let t = Instant::now();
        if self.stored {
            // A holding's stored state is read before its first sell in the build (not for
            // every pair: on friend.tech-shaped data most never sell). On PostgreSQL the stored
            // rows are as before the range, added to what the build's buys of the holding
            // replayed so far (only buys: adding is exact); on SQLite the chunks before wrote
            // their holdings, so the stored row is the whole state.
            let mut selling: Vec<(Address, Address)> = trades
                .iter()
                .filter(|t| !t.is_buy && t.share_amount != 0)
                .map(|t| (t.subject, t.trader))
                .filter(|pair| !self.loaded.contains(pair))
                .collect();
            selling.sort_unstable();
            selling.dedup();
            let stored = stored_holdings(tx, w.backend, w.market_id, &selling).await?;
            for (pair, (balance, cost)) in stored {
                let state = self.holdings.entry(pair).or_default();
                if self.gathered.is_some() {
                    *state = (balance, cost);
                } else {
                    state.0 += balance;
                    state.1 += cost;
                }
            }
            self.loaded.extend(selling);
        }
        let basis = replay(&trades, &mut self.holdings)?;
        let last = trades.last().map(|t| t.subject);
        if let Some(finished) = &mut self.finished {
            let done = self.holdings.iter().filter(|((s, _), _)| Some(*s) != last);
            finished.extend(done.map(|(key, state)| (*key, *state)));
        }
        self.holdings
            .retain(|(subject, _), _| Some(*subject) == last);
        self.loaded.retain(|(subject, _)| Some(*subject) == last);
        self.secs[1] += t.elapsed().as_secs_f64();
        for (r, b) in rows.iter().zip(&basis).filter(|(_, b)| **b != Wei::ZERO) {
            let row = match w.backend {
                Backend::Sqlite => r.int(14),
                Backend::Postgres => packed_ctid(r.text(14))?,
            };
            self.bases.push((row, *b));
        }
        let t = Instant::now();
        let Deltas {
            mut days,
            mut subjects,
            traders,
            holdings,
            day_traders,
            subject_days,
        } = fold(&trades, &basis, 1);
        match &mut self.gathered {
            // The subjects' holders are recounted from the holdings at the end (`deferred_sums`).
            None => _ = w.subjects(tx, subjects).await?,
            Some(gathered) => {
                w.holdings(tx, holdings, &mut subjects).await?;
                for day in w.subjects(tx, subjects).await? {
                    days.entry(day).or_default().new_subjects += 1;
                }
                w.subject_days(tx, subject_days).await?;
                gathered.absorb(days, traders, day_traders);
                if gathered.day_traders.len() >= DAY_TRADERS_HELD {
                    gathered.write_day_traders(tx, w).await?;
                }
            }
        }
        self.secs[2] += t.elapsed().as_secs_f64();
        if self.bases.len() >= BASES_HELD {
            self.write_bases(tx).await?;
        }
        self.copy_finished(tx, false).await
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

/// On SQLite, the sorts of the statements between `true` and `false` on several threads, spilled
/// to temporary files (as the index builds', `indexes`), not in memory.
async fn sqlite_sort_on_files(tx: &mut WriteTx, backend: Backend, on: bool) -> Result<()> {
    if backend != Backend::Sqlite {
        return Ok(());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4));
    let pragmas = if on {
        [
            "PRAGMA temp_store=FILE".to_string(),
            format!("PRAGMA threads={threads}"),
        ]
    } else {
        [
            SQLITE_TEMP_STORE.to_string(),
            "PRAGMA threads=0".to_string(),
        ]
    };
    for pragma in pragmas {
        tx.execute(Stmt::new(backend, &pragma, 0))
            .await
            .map_err(db("configuring SQLite's sorts"))?;
    }
    Ok(())
}

/// A row of [`BUILD_COLUMNS`] as a trade (without the hashes and chain id it does not read:
/// neither the basis nor any aggregate uses them).
fn build_trade(r: &WriteRow) -> Result<TradeRow> {
    Ok(TradeRow {
        chain_id: 0,
        tx_hash: B256::ZERO,
        log_index: r.int(2),
        block_number: r.int(1),
        block_hash: B256::ZERO,
        block_time: r.int(3),
        trader: r.parsed(4)?,
        subject: r.parsed(0)?,
        is_buy: r.int(5) != 0,
        share_amount: r.int(6),
        eth: r.wei(7),
        protocol_fee: r.wei(9),
        subject_fee: r.wei(11),
        supply: r.int(13),
    })
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

    #[test]
    fn ctids_pack_and_refuse_garbage() {
        assert_eq!(packed_ctid("(0,1)").unwrap(), 1);
        assert_eq!(packed_ctid("(3,7)").unwrap(), 3 << 16 | 7);
        for bad in ["", "(1)", "(a,1)", "(1,70000)", "1,2"] {
            assert!(packed_ctid(bad).is_err(), "{bad}");
        }
    }
}
