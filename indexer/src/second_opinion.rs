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
}

impl SecondOpinion {
    pub(crate) fn new(provider: RootProvider, market: Address, fetch: FetchConfig) -> Self {
        Self {
            fetcher: LogFetcher::new(provider, market, &crate::decode::MARKET_TOPICS, fetch),
            market,
        }
    }

    /// The second provider's answer for `batch`'s range and the supplies it leaves, when that
    /// answer keeps the curve (checked as the first's was, `sharesSupply` near the head
    /// included); `None` when it breaks the curve too (the chain's own break), or gives no
    /// usable answer in time.
    pub(crate) async fn ask(
        &self,
        check: &mut CurveCheck,
        chain_id: u64,
        batch: &Batch,
        window: u64,
        retry: &rpc::Retry,
    ) -> Result<Option<(Fetched, Supplies)>> {
        let (from, to) = (batch.from, batch.to);
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
            let provider = self.fetcher.provider();
            check
                .learn_curves(provider, self.market, &created, &second.trades, retry)
                .await?;
            let Ok(supplies) = check.check(&second.trades, &created) else {
                return Ok(None);
            };
            if to + window >= batch.head
                && check
                    .confirm_at(provider, self.market, to, &supplies, retry)
                    .await?
                    .is_some()
            {
                return Ok(None);
            }
            Ok(Some(((second, created), supplies)))
        };
        match tokio::time::timeout(ANSWER_WITHIN, asked).await {
            Ok(answer) => answer,
            Err(_) => {
                warn!(target: "indexer::verify", from, to, "the second provider did not answer for the range in time; believing the first");
                Ok(None)
            }
        }
    }
}
