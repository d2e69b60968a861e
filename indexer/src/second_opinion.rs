//! A second provider's word before a break of the curve is believed. When the first provider
//! answers the same break again and again, it may be the chain's own (stored, marked
//! unverified) or the first provider's lasting lie (a node that lost a log, a cache serving a
//! corrupted answer). With a second provider of the same chain, the range is fetched from it —
//! logs, headers and, near the head, the market's state — and when its answer keeps the curve,
//! it is stored instead of the first's: one provider cannot make a wrong figure nor an
//! unverified mark alone.

use std::time::Duration;

use alloy::{primitives::Address, providers::RootProvider};
use tracing::warn;

use crate::{
    Result,
    batch::{Fetched, fetch_range},
    fetch::{FetchConfig, LogFetcher},
    rpc,
    store::Batch,
    verify::{CurveCheck, Supplies},
};

/// How long the second provider may take to answer for a range (its own faults are retried
/// within it); past it, the first provider's answer is believed, marked unverified.
const ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// The second provider, ready to fetch the market's logs.
pub(crate) struct SecondOpinion {
    fetcher: LogFetcher<RootProvider>,
    market: Address,
    /// Its own retries: its faults neither slow the first provider's calls (its gate) nor count
    /// as the first's on `/metrics` or stall the market on `/healthz`.
    retry: rpc::Retry,
}

impl SecondOpinion {
    pub(crate) fn new(provider: RootProvider, market: Address, fetch: &FetchConfig) -> Self {
        let fetch = FetchConfig {
            gate: Default::default(),
            counts: Default::default(),
            ..fetch.clone()
        };
        Self {
            retry: fetch.retry(),
            fetcher: LogFetcher::new(provider, market, &crate::decode::MARKET_TOPICS, fetch),
            market,
        }
    }

    /// The second provider's answer for `batch`'s range and the supplies it leaves, when that
    /// answer is the same stretch of the same chain and keeps the curve: the same last block and
    /// block before it (hashes), a trade of every subject the first answer traded, and every
    /// subject's supply confirmed by the market's own `sharesSupply` at the range's last block,
    /// wherever the range lies (an answer that cannot be confirmed is not taken). `None` when it
    /// breaks the curve too (the chain's own break), is another stretch or leaves trades out,
    /// fails, or gives no usable answer in time: the first provider's answer is believed.
    pub(crate) async fn ask(
        &self,
        check: &mut CurveCheck,
        chain_id: u64,
        batch: &Batch,
        window: u64,
    ) -> Result<Option<(Fetched, Supplies)>> {
        let (from, to) = (batch.from, batch.to);
        let retry = &self.retry;
        // Curves learnt from an answer that is not taken are not kept.
        let mut trial = check.clone();
        let asked = async {
            let Some((second, created)) = fetch_range(
                &self.fetcher,
                chain_id,
                (from, to),
                batch.head,
                window,
                retry,
            )
            .await?
            else {
                return Ok(None);
            };
            let last = |b: &Batch| b.blocks.iter().find(|(n, _)| *n == b.to).map(|(_, h)| *h);
            if second.parent != batch.parent || last(&second) != last(batch) {
                warn!(target: "indexer::verify", from, to, "the second provider answers for another stretch of blocks; believing the first");
                return Ok(None);
            }
            if !traded(batch).is_subset(&traded(&second)) {
                return Ok(None);
            }
            let provider = self.fetcher.provider();
            trial
                .learn_curves(provider, self.market, &created, &second.trades, retry)
                .await?;
            let Ok(supplies) = trial.check(&second.trades, &created) else {
                return Ok(None);
            };
            if trial
                .confirm_at(provider, self.market, to, &supplies, retry, true)
                .await?
                .is_some()
            {
                return Ok(None);
            }
            Ok::<_, crate::Error>(Some(((second, created), supplies)))
        };
        match tokio::time::timeout(ANSWER_WITHIN, asked).await {
            Ok(Ok(Some(answer))) => {
                *check = trial;
                Ok(Some(answer))
            }
            Ok(Ok(None)) => Ok(None),
            Ok(Err(e)) => {
                warn!(target: "indexer::verify", from, to, error = %e, "the second provider failed; believing the first");
                Ok(None)
            }
            Err(_) => {
                warn!(target: "indexer::verify", from, to, "the second provider did not answer for the range in time; believing the first");
                Ok(None)
            }
        }
    }
}

/// The subjects a batch's trades trade.
fn traded(b: &Batch) -> std::collections::BTreeSet<Address> {
    b.trades.iter().map(|t| t.subject).collect()
}
