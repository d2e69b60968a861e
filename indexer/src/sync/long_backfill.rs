//! A long backfill: entered once a run has stored enough trades with more blocks ahead than
//! behind (the market's aggregates deferred when its trades spread over many holdings, and the
//! database-wide secondary indexes dropped when no other process writes with them), ended at the
//! head (the indexes and the deferred
//! aggregates built, whichever run gets there: also one after a crash or a takeover).

use std::time::Instant;

use alloy::providers::Provider;
use tracing::info;

use super::{Sync, or_stop};
use crate::Result;

/// A long backfill defers its aggregates when its trades so far spread over at least one holding
/// for every this many trades.
const DEFER_MAX_TRADES_PER_HOLDING: u64 = 10;

impl<P: Provider> Sync<'_, P> {
    /// After a batch that ended at block `to` with the chain's head at `head`: enters a long
    /// backfill if this run is in one now.
    pub(super) async fn maybe_start_long_backfill(&mut self, head: u64, to: u64) -> Result<()> {
        let long_backfill = !self.deferred
            && !self.caught_up
            && self.report.trades >= self.config.bulk_min_trades
            && head.saturating_sub(to) > self.report.blocks;
        if long_backfill {
            // The market's aggregates wait for the head (whoever indexes it then builds them);
            // the database-wide indexes only when no other process writes with them.
            self.deferred = true;
            let drop = !self.indexes_shared && self.may_drop_indexes().await?;
            if drop {
                self.bulk = Some(BulkGuard::new(&self.config.bulk_runs));
                self.store.drop_secondary_indexes().await?;
            }
            // Deferred only when the trades spread over many holdings (friend.tech-shaped data:
            // ~1 holding for 2 trades): where few keys take every trade (the flat bench chain's
            // 60 accounts: 1 for 40+ trades) a batch's fold leaves a few rows to write, and the
            // build would cost more than it saves (1M flat trades: 43k trades/s deferred, 107k
            // row by row).
            // A market deferred by an earlier run stays deferred (its holdings are frozen at the
            // deferral, so the spread would be measured wrong now).
            let already = self.store.aggregates_from(self.market.id).await?.is_some();
            let (defer, holdings) = if already {
                (true, None)
            } else {
                let (trades, holdings) = self.store.trades_and_holdings(self.market.id).await?;
                let defer = holdings.saturating_mul(DEFER_MAX_TRADES_PER_HOLDING) >= trades;
                if defer {
                    self.store.defer_aggregates(&self.market).await?;
                }
                (defer, Some(holdings))
            };
            info!(target: "indexer::sync", trades = self.report.trades, holdings, remaining_blocks = head - to, indexes_dropped = drop, aggregates_deferred = defer, deferred_earlier = already, "long backfill: until the head is reached");
        }
        Ok(())
    }

    /// At the head: the deferred aggregates, then the indexes, built (each a no-op when nothing
    /// is missing). `false`: stopped on request before the end.
    pub(super) async fn end_long_backfill(&mut self) -> Result<bool> {
        let stop = &self.config.shutdown;
        // The aggregates first: the build sorts the trades itself (no index of theirs needed),
        // and on PostgreSQL each sell's basis it writes back is a new row version in every index
        // of the trades, cheaper in two than in six; the aggregate tables' indexes are cheaper
        // built once after it than kept up to date during it.
        self.bar.set_message("building aggregates");
        let t = Instant::now();
        let Some(built) = or_stop(stop, self.store.build_aggregates(&self.market)).await else {
            return Ok(false);
        };
        built?;
        self.report.aggregate_time += t.elapsed();
        self.bar.set_message("building indexes");
        let t = Instant::now();
        let Some(built) = or_stop(stop, self.store.build_secondary_indexes()).await else {
            return Ok(false);
        };
        built?;
        self.report.index_time += t.elapsed();
        Ok(true)
    }

    /// Whether this process may drop the database-wide secondary indexes for a long backfill:
    /// always when it indexes alone; among several processes sharing a PostgreSQL database,
    /// only while it owns every market of it (the others' writes use those indexes).
    /// Asked once: a refusal holds for the rest of the run.
    async fn may_drop_indexes(&mut self) -> Result<bool> {
        let Some(owner) = &self.config.owner else {
            return Ok(true);
        };
        let alone = self.store.owns_every_market(owner).await?;
        if !alone {
            self.indexes_shared = true;
            info!(target: "indexer::sync", market = %self.spec.address, "long backfill with the indexes in place: other processes own markets of this database");
        }
        Ok(alone)
    }
}

/// A run in a long backfill with the database-wide indexes dropped, counted while it lasts (the
/// count goes down however the run ends, dropped included).
pub(super) struct BulkGuard(std::sync::Arc<std::sync::atomic::AtomicUsize>);

impl BulkGuard {
    pub(super) fn new(runs: &std::sync::Arc<std::sync::atomic::AtomicUsize>) -> Self {
        runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(runs.clone())
    }
}

impl Drop for BulkGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}
