//! What a failed pass calls for: a reorg found below a batch re-checked, a curve break fetched
//! again (rolled back to the subject's last stored trade when the stored part may be the lie), a
//! trade stored twice undone, and a database outage waited out.

use alloy::providers::Provider;
use tracing::warn;

use super::{Sync, or_stop};
use crate::{Error, Result, rpc, store::Error as StoreError};

impl<P: Provider> Sync<'_, P> {
    /// The repair a pass's error calls for; errors it does not repair are returned.
    pub(super) async fn repair(&mut self, e: Error) -> Result<()> {
        let stop = &self.config.shutdown;
        match e {
            Error::Store(StoreError::Reorged { block }) => {
                warn!(target: "indexer::reorg", block, "the chain changed below the next batch; checking the window");
                Ok(())
            }
            Error::CurveBreak { why, repair_from } => {
                // The provider's fault until the chain says the same again: fetch it again —
                // from the subject's last stored trade when the stored part may be the lie (a
                // trade left out of an earlier answer shows only at the subject's next trade).
                // The wait grows with the breaks of this same place, not with other faults.
                let same_place = self.last_break.as_ref().map_or(1, |(_, n)| *n);
                self.report.refused_batches += 1;
                let undone = self.undo_break(&why, repair_from).await;
                if undone.is_ok() {
                    or_stop(stop, tokio::time::sleep(rpc::backoff(same_place))).await;
                }
                undone
            }
            Error::Store(e @ StoreError::AlreadyStored { first, .. }) => {
                // A provider's answer put a trade at a wrong block — in this batch, or in one
                // stored before it (then this batch's true copy collides with the stored lie).
                // Undo from the first block holding either copy, as for a reorg, and fetch
                // again after a backoff: a provider that stops lying leaves the truth.
                self.db_failures += 1;
                self.report.refused_batches += 1;
                let undone = async {
                    if first < self.market.next_block {
                        let orphans = self.store.rollback(&self.market, first).await?;
                        self.market.next_block = first;
                        warn!(target: "indexer::sync", error = %e, rolled_back_to = first, rolled_back_trades = orphans, "refused a batch holding a trade already stored; rolled back to the first copy");
                    } else {
                        warn!(target: "indexer::sync", error = %e, "refused a batch holding a trade twice; fetching it again");
                    }
                    Ok::<_, Error>(())
                }
                .await;
                if undone.is_ok() {
                    let delay = rpc::backoff(self.db_failures);
                    or_stop(stop, tokio::time::sleep(delay)).await;
                }
                undone
            }
            Error::Store(StoreError::StoredTwice(why)) => {
                // The same, during a long backfill without the unique index: found when the
                // index is built at the head. Undo everything from the first such trade's block
                // (exactly, as for a reorg) and index it again.
                let Some(first) = self.store.first_duplicate_block(self.market.id).await? else {
                    return Err(Error::Corrupt(why));
                };
                let orphans = self.store.rollback(&self.market, first).await?;
                self.market.next_block = first;
                self.report.repairs += 1;
                warn!(target: "indexer::sync", first_block = first, rolled_back_trades = orphans, %why, "a trade was stored twice during the backfill: rolled back to its block; indexing again");
                Ok(())
            }
            e => Err(e),
        }
    }

    /// A curve break's rollback: from the subject's last stored trade, or — none stored — its
    /// opening, when that is below the next block; else the range is only fetched again.
    async fn undo_break(
        &mut self,
        why: &str,
        repair_from: Option<alloy::primitives::Address>,
    ) -> Result<()> {
        let from = match repair_from {
            Some(subject) => self
                .store
                .last_trade_block(self.market.id, subject)
                .await?
                .or_else(|| self.check.opened_at(subject)),
            None => None,
        };
        if let Some(block) = from
            && block < self.market.next_block
        {
            let orphans = self.store.rollback(&self.market, block).await?;
            self.market.next_block = block;
            self.report.repairs += 1;
            warn!(target: "indexer::verify", %why, rolled_back_to = block, rolled_back_trades = orphans, "trades break the curve against stored ones; rolled back to the subject's last stored trade, fetching again");
        } else {
            warn!(target: "indexer::verify", %why, "a batch's trades break the curve; fetching the range again");
        }
        Ok(())
    }

    /// A transient database error (an outage, a lock, a restart): the open transaction was
    /// rolled back; wait with backoff, then read the checkpoint again (a commit or rollback may
    /// have succeeded although its answer was lost).
    pub(super) async fn wait_out_database(&mut self, e: Error) -> Result<()> {
        let stop = &self.config.shutdown;
        self.db_failures += 1;
        self.report.database_retries += 1;
        self.config
            .fetch
            .counts
            .database
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let delay = rpc::backoff(self.db_failures);
        warn!(target: "indexer::store", attempt = self.db_failures, delay_ms = delay.as_millis() as u64, error = %e, "database unavailable (the open transaction was rolled back); retrying");
        or_stop(stop, tokio::time::sleep(delay)).await;
        match or_stop(stop, self.store.next_block(self.market.id)).await {
            Some(Ok(next)) => self.market.next_block = next,
            Some(Err(e)) if e.is_transient() => {} // still down: the next pass waits again
            Some(Err(e)) => return Err(e.into()),
            None => {}
        }
        Ok(())
    }
}
