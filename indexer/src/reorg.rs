//! Reorg detection and repair against the stored window of block hashes.

use alloy::providers::Provider;
use tracing::warn;

use crate::{
    Error, IndexerConfig, Result,
    rpc::block_hash,
    store::{MarketState, StoreWriter},
};

/// Compares the stored block window with the chain; on a mismatch rolls back to the newest block
/// both agree on. Returns whether a reorg was repaired.
///
/// A block the provider does not know yet is not a reorg: a node behind the one that gave the
/// head (a lagging replica behind a load balancer) answers `null` for blocks it has not seen, and
/// rewinding then would undo good data. The check is simply made again at the next poll.
pub async fn check_reorg<P: Provider>(
    provider: &P,
    store: &StoreWriter,
    market: &mut MarketState,
    config: &IndexerConfig,
) -> Result<bool> {
    let retry = config.fetch.retry();
    let stored = store.window(market.id).await?;
    let Some(&(top, top_hash)) = stored.first() else {
        return Ok(false);
    };
    match block_hash(provider, top, &retry).await? {
        Some(h) if h == top_hash => return Ok(false),
        Some(_) => {}
        None => {
            warn!(target: "indexer::reorg", block = top, "the provider does not know the newest indexed block (a lagging node?); waiting");
            return Ok(false);
        }
    }
    for &(n, h) in &stored[1..] {
        match block_hash(provider, n, &retry).await? {
            Some(chain) if chain == h => {
                let orphans = store.rollback(market, n + 1).await?;
                warn!(target: "indexer::reorg", common_ancestor = n, orphaned_blocks = top - n, orphaned_trades = orphans, "reorg: rolled back");
                market.next_block = n + 1;
                return Ok(true);
            }
            Some(_) => {}
            None => {
                warn!(target: "indexer::reorg", block = n, "the provider does not know an indexed block (a lagging node?); waiting");
                return Ok(false);
            }
        }
    }
    Err(Error::ReorgTooDeep {
        at: top,
        window: config.window,
    })
}
