//! Writing: a batch committed (rows, aggregates, block hashes, checkpoint) and a rollback, each
//! in one transaction, with the average-cost basis each sell releases.

use alloy::primitives::Address;
use tracing::debug;

use crate::{
    Backend, Batch, Error, MarketState, Result, StoreWriter,
    aggregate_writes::apply_aggregates,
    amount::Wei,
    copy_in::copy_trades,
    cost_basis::released_basis,
    error::db,
    events,
    indexes::TRADES_IDENTITY,
    lease::fence,
    row::{TradeRow, hex},
    statements::{MAX_PARAMS, big_statement, insert_into, push_placeholders},
    write_tx::{Stmt, WriteRow, WriteTx},
};

impl StoreWriter {
    /// Records the chain head seen while the market is caught up (for the lag the API reports);
    /// fenced like a batch (and renewing the lease), so a process that lost the market records
    /// nothing.
    pub async fn record_head(&self, market: &MarketState, head: u64) -> Result<()> {
        // On the writer: a write on the other SQLite connection would void the writer's page cache.
        let mut tx = self.begin_write().await?;
        let mut q = Stmt::new(
            self.backend,
            "UPDATE markets SET head_block = $1, head_seen_at = $2 WHERE id = $3",
            3,
        );
        q.int(head as i64).int(unix_now()).int(market.id);
        tx.execute(q).await.map_err(db("recording the head"))?;
        fence(&mut tx, self.backend, market).await?;
        tx.commit().await.map_err(db("recording the head"))
    }

    /// Records why the indexer is stalled on a market (`None`: it is not); fenced like a batch.
    pub async fn record_stall(&self, market: &MarketState, reason: Option<&str>) -> Result<()> {
        let mut tx = self.begin_write().await?;
        let mut q = match reason {
            Some(r) => {
                let mut q = Stmt::new(
                    self.backend,
                    "UPDATE markets SET stall_reason = $1 WHERE id = $2",
                    2,
                );
                q.text(r);
                q
            }
            None => Stmt::new(
                self.backend,
                "UPDATE markets SET stall_reason = NULL WHERE id = $1",
                1,
            ),
        };
        q.int(market.id);
        tx.execute(q).await.map_err(db("recording a stall"))?;
        fence(&mut tx, self.backend, market).await?;
        tx.commit().await.map_err(db("recording a stall"))
    }

    pub(super) async fn begin_write(&self) -> Result<WriteTx> {
        self.writer
            .begin()
            .await
            .map_err(db("starting a transaction"))
    }

    /// Commits one indexed range: rows, aggregates, block hashes (keeping `window` blocks) and the
    /// checkpoint, in one transaction. Refuses a batch that does not start at the checkpoint.
    pub async fn commit(&self, market: &MarketState, batch: &Batch, window: u64) -> Result<()> {
        // (On the readers' pool, before the writer's transaction.)
        let checked = self.has_index(TRADES_IDENTITY).await?;
        let backend = self.backend;
        let mut tx = self.begin_write().await?;
        let mut q = Stmt::new(
            backend,
            "SELECT next_block, CAST(CASE WHEN aggregates_from IS NULL THEN 0 ELSE 1 END AS BIGINT) FROM markets WHERE id = $1",
            2,
        );
        q.int(market.id);
        let row = tx
            .fetch_all(q)
            .await
            .map_err(db("reading the checkpoint"))?;
        let row = row
            .first()
            .ok_or_else(|| Error::Corrupt(format!("market {} is not registered", market.id)))?;
        let (next, deferred) = (row.int(0), row.int(1) != 0);
        if next as u64 != batch.from {
            // Under a lease, the usual reason: the market changed hands while this batch was
            // being fetched, and the new owner has committed since (NotOwner: stand by).
            fence(&mut tx, backend, market).await?;
            return Err(Error::Corrupt(format!(
                "batch starts at block {} but the checkpoint is {next}: another indexer is writing this market?",
                batch.from
            )));
        }
        if let Some((number, hash)) = batch.parent {
            let mut q = Stmt::new(
                backend,
                "SELECT hash FROM blocks WHERE market_id = $1 AND number = $2",
                2,
            );
            q.int(market.id).int(number as i64);
            let stored = tx
                .fetch_all(q)
                .await
                .map_err(db("reading the parent block's hash"))?;
            if stored
                .first()
                .is_some_and(|r| r.text(0) != hex(hash.as_slice()))
            {
                return Err(Error::Reorged { block: number });
            }
        }
        store_trades(&mut tx, backend, market, &batch.trades, checked, deferred).await?;
        events::insert_events(
            &mut tx,
            backend,
            market.id,
            &batch.referrals,
            &batch.fee_events,
        )
        .await?;
        for u in &batch.unverified {
            let mut q = Stmt::new(
                backend,
                "INSERT INTO unverified (market_id, subject, block_number, reason) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (market_id, subject, block_number) DO NOTHING",
                4,
            );
            q.int(market.id)
                .address(&u.subject)
                .int(u.block)
                .text(&u.reason);
            tx.execute(q)
                .await
                .map_err(db("marking trades unverified"))?;
        }
        let hashes: Vec<String> = batch
            .blocks
            .iter()
            .map(|(_, h)| hex(h.as_slice()))
            .collect();
        for (chunk, hashes) in batch
            .blocks
            .chunks(MAX_PARAMS / 3)
            .zip(hashes.chunks(MAX_PARAMS / 3))
        {
            let mut sql = insert_into(backend, "blocks (market_id, number, hash) VALUES ");
            push_placeholders(&mut sql, backend, chunk.len(), 3);
            sql.push_str(" ON CONFLICT (market_id, number) DO UPDATE SET hash = excluded.hash");
            let mut q = big_statement(backend, &sql, chunk.len() * 3);
            for ((n, _), h) in chunk.iter().zip(hashes) {
                q.int(market.id).int(*n as i64).text(h);
            }
            tx.execute(q).await.map_err(db("storing block hashes"))?;
        }
        let mut q = Stmt::new(
            backend,
            "DELETE FROM blocks WHERE market_id = $1 AND number < $2",
            2,
        );
        q.int(market.id).int(batch.to.saturating_sub(window) as i64);
        tx.execute(q).await.map_err(db("pruning block hashes"))?;
        let mut q = Stmt::new(
            backend,
            "UPDATE markets SET next_block = $1, head_block = $2, head_seen_at = $3, \
             indexed_time = $4 WHERE id = $5",
            5,
        );
        q.int((batch.to + 1) as i64)
            .int(batch.head.max(batch.to) as i64)
            .int(unix_now())
            .int(batch.to_time as i64)
            .int(market.id);
        tx.execute(q).await.map_err(db("moving the checkpoint"))?;
        fence(&mut tx, backend, market).await?;
        tx.commit().await.map_err(db("committing a batch"))?;
        debug!(target: "indexer::store", from = batch.from, to = batch.to, trades = batch.trades.len(), "committed");
        Ok(())
    }

    /// Rolls the market back so that `first_orphan` and everything after it are unindexed: the
    /// orphaned trades' contributions are subtracted from every aggregate, their rows and block
    /// hashes deleted and the checkpoint moved, in one transaction.
    pub async fn rollback(&self, market: &MarketState, first_orphan: u64) -> Result<usize> {
        // Subtracting needs the orphans counted first (a reorg or a repair during a long
        // backfill; rare).
        self.build_aggregates(market).await?;
        let backend = self.backend;
        let mut tx = self.begin_write().await?;
        let sql = format!(
            "SELECT {TRADE_COLUMNS}, basis_gwei, basis_rem FROM trades WHERE market_id = $1 AND block_number >= $2 ORDER BY block_number, log_index"
        );
        let mut q = Stmt::new(backend, &sql, 2).persistent(false);
        q.int(market.id).int(first_orphan as i64);
        let rows = tx
            .fetch_all(q)
            .await
            .map_err(db("reading orphaned trades"))?;
        let orphans: Vec<TradeRow> = rows.iter().map(trade_from_row).collect::<Result<_>>()?;
        // Before the trades' rollback, which prunes the days it empties.
        events::rollback_events(&mut tx, backend, market.id, first_orphan).await?;
        let basis: Vec<Wei> = rows.iter().map(|r| r.wei(17)).collect();
        apply_aggregates(&mut tx, backend, market.id, &orphans, &basis, -1).await?;
        let mut q = Stmt::new(
            backend,
            "DELETE FROM trades WHERE market_id = $1 AND block_number >= $2",
            2,
        );
        q.int(market.id).int(first_orphan as i64);
        tx.execute(q)
            .await
            .map_err(db("deleting orphaned trades"))?;
        // A subject's supply is that of its latest remaining trade.
        let mut subjects: Vec<Address> = orphans.iter().map(|t| t.subject).collect();
        subjects.sort();
        subjects.dedup();
        for s in subjects {
            let mut q = Stmt::new(
                backend,
                "UPDATE subjects SET supply = COALESCE((SELECT t.supply FROM trades t WHERE t.market_id = $1 AND t.subject = $2 \
                 AND t.share_amount > 0 ORDER BY t.block_number DESC, t.log_index DESC LIMIT 1), 0) \
                 WHERE market_id = $1 AND subject = $2",
                2,
            );
            q.int(market.id).address(&s);
            tx.execute(q).await.map_err(db("restoring supplies"))?;
        }
        let mut q = Stmt::new(
            backend,
            "DELETE FROM blocks WHERE market_id = $1 AND number >= $2",
            2,
        );
        q.int(market.id).int(first_orphan as i64);
        tx.execute(q)
            .await
            .map_err(db("deleting orphaned block hashes"))?;
        let mut q = Stmt::new(
            backend,
            "DELETE FROM unverified WHERE market_id = $1 AND block_number >= $2",
            2,
        );
        q.int(market.id).int(first_orphan as i64);
        tx.execute(q)
            .await
            .map_err(db("deleting orphaned unverified marks"))?;
        let mut q = Stmt::new(
            backend,
            // The newest indexed block's time is not known again until the next commit: 0
            // (a scheduled fee increase shows as pending until then, never in force too early).
            "UPDATE markets SET next_block = $1, indexed_time = 0 WHERE id = $2",
            2,
        );
        q.int(first_orphan as i64).int(market.id);
        tx.execute(q)
            .await
            .map_err(db("moving the checkpoint back"))?;
        fence(&mut tx, backend, market).await?;
        tx.commit().await.map_err(db("committing a rollback"))?;
        Ok(orphans.len())
    }
}

/// A batch's trades stored with their cost basis and counted in every aggregate; during a long
/// backfill (`deferred`) the raw rows only, their basis and aggregates left to the build at the
/// head (`deferred`).
async fn store_trades(
    tx: &mut WriteTx,
    backend: Backend,
    market: &MarketState,
    trades: &[TradeRow],
    checked: bool,
    deferred: bool,
) -> Result<()> {
    if deferred {
        let basis = vec![Wei::ZERO; trades.len()];
        return insert_trades(tx, backend, market, trades, &basis, checked).await;
    }
    let basis = released_basis(tx, backend, market.id, trades).await?;
    insert_trades(tx, backend, market, trades, &basis, checked).await?;
    apply_aggregates(tx, backend, market.id, trades, &basis, 1).await
}

pub(crate) const TRADE_COLUMNS: &str = "chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, is_buy, share_amount, \
     eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply";

pub(super) async fn insert_trades(
    tx: &mut WriteTx,
    backend: Backend,
    market: &MarketState,
    trades: &[TradeRow],
    basis: &[Wei],
    checked: bool,
) -> Result<()> {
    if backend == Backend::Postgres && !checked {
        return copy_trades(tx, market.id, trades, basis).await;
    }
    const COLS: usize = 20;
    const ROWS: usize = MAX_PARAMS / COLS;
    let chunks: Vec<(&[TradeRow], &[Wei])> = trades.chunks(ROWS).zip(basis.chunks(ROWS)).collect();
    let text = |rows: usize| {
        let mut sql = insert_into(
            backend,
            "trades (chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, is_buy, \
             share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply, market_id, basis_gwei, basis_rem) VALUES ",
        );
        push_placeholders(&mut sql, backend, rows, COLS);
        // A row already present would mean a range indexed twice: the count check below turns
        // that into an error instead of double-counted aggregates. (During a long backfill the
        // identity index is absent and its build at the end does that check.)
        if checked {
            sql.push_str(" ON CONFLICT (chain_id, tx_hash, log_index) DO NOTHING");
        }
        sql
    };
    // Two texts at most: full chunks (most of a backfill's) and the last, shorter one.
    let full = (trades.len() >= ROWS).then(|| text(ROWS));
    let last = (!trades.len().is_multiple_of(ROWS)).then(|| text(trades.len() % ROWS));
    let bind = |i: usize| {
        let (chunk, basis) = chunks[i];
        // The full chunks' text is prepared once and cached (two variants at most: with and
        // without the conflict clause).
        let (sql, cached) = if chunk.len() == ROWS {
            (&full, true)
        } else {
            (&last, false)
        };
        let mut q = big_statement(
            backend,
            sql.as_deref().expect("a text for each chunk length"),
            chunk.len() * COLS,
        )
        .persistent(cached);
        for (t, b) in chunk.iter().zip(basis) {
            q.int(t.chain_id)
                .hash(&t.tx_hash)
                .int(t.log_index)
                .int(t.block_number)
                .hash(&t.block_hash)
                .int(t.block_time)
                .address(&t.trader)
                .address(&t.subject)
                .int(i64::from(t.is_buy))
                .int(t.share_amount)
                .wei(t.eth)
                .wei(t.protocol_fee)
                .wei(t.subject_fee)
                .int(t.supply)
                .int(market.id)
                .wei(*b);
        }
        q
    };
    let mut next = (!chunks.is_empty()).then(|| bind(0));
    for i in 0..chunks.len() {
        let q = next.take().expect("bound ahead");
        // While the database executes chunk i, chunk i + 1 is bound (the binding is this
        // thread's work, the execution the database's).
        let (done, ahead) = futures::join!(tx.execute(q), async {
            (i + 1 < chunks.len()).then(|| bind(i + 1))
        });
        next = ahead;
        let done = done.map_err(db("inserting trades"))?;
        let rows = chunks[i].0.len() as u64;
        if done != rows {
            // The caller's transaction is dropped: nothing of the batch is stored.
            let (from, to) = (
                trades[0].block_number as u64,
                trades[trades.len() - 1].block_number as u64,
            );
            let first = first_block_of(tx, backend, trades).await?.min(from);
            return Err(Error::AlreadyStored {
                count: rows - done,
                from,
                to,
                first,
            });
        }
    }
    Ok(())
}

/// The first block holding a trade stored with the identity (chain, transaction, log index) of
/// one of `trades`, in the open transaction: where a copy of an arriving trade already sits.
async fn first_block_of(tx: &mut WriteTx, backend: Backend, trades: &[TradeRow]) -> Result<u64> {
    let mut first = u64::MAX;
    for chunk in trades.chunks(MAX_PARAMS / 3) {
        let mut sql = String::from(
            "SELECT COALESCE(MIN(block_number), -1) FROM trades WHERE (chain_id, tx_hash, log_index) IN (VALUES ",
        );
        push_placeholders(&mut sql, backend, chunk.len(), 3);
        sql.push(')');
        let mut q = big_statement(backend, &sql, chunk.len() * 3);
        for t in chunk {
            q.int(t.chain_id).hash(&t.tx_hash).int(t.log_index);
        }
        let rows = tx
            .fetch_all(q)
            .await
            .map_err(db("finding trades already stored"))?;
        if let Some(b) = rows.first().map(|r| r.int(0)).filter(|b| *b >= 0) {
            first = first.min(b as u64);
        }
    }
    Ok(first)
}

/// A row of [`TRADE_COLUMNS`].
pub(super) fn trade_from_row(r: &WriteRow) -> Result<TradeRow> {
    Ok(TradeRow {
        chain_id: r.int(0),
        tx_hash: r.parsed(1)?,
        log_index: r.int(2),
        block_number: r.int(3),
        block_hash: r.parsed(4)?,
        block_time: r.int(5),
        trader: r.parsed(6)?,
        subject: r.parsed(7)?,
        is_buy: r.int(8) != 0,
        share_amount: r.int(9),
        eth: r.wei(10),
        protocol_fee: r.wei(12),
        subject_fee: r.wei(14),
        supply: r.int(16),
    })
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
