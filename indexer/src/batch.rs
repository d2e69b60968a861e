//! A range of blocks turned into a batch to store: fetched in tasks of their own, `concurrency`
//! at a time; the logs decoded; the block hashes to keep collected; and the logs' block hashes
//! and times checked against headers and each other before anything is believed.

use std::{
    collections::BTreeSet,
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::{
    primitives::B256,
    providers::{Provider, RootProvider},
};
use futures::StreamExt;
use tokio_util::task::AbortOnDropHandle;
use tracing::warn;

use crate::{
    Error, IndexerConfig, MarketSpec, Result,
    decode::{MARKET_TOPICS, MarketEvent, RpcLog, decode_or_refuse},
    fetch::LogFetcher,
    rpc::{self, header},
    store::Batch,
    verify::Created,
};

/// A fetched range: the batch to store, and the `SubjectCreated` events the curve check reads.
pub(crate) type Fetched = (Batch, Vec<Created>);

/// The ranges `from..=target` as decoded batches, in order: planned from the fetcher's adaptive
/// hint and fetched `concurrency` at a time. An item is `None` when the chain changed between a
/// range's logs and its headers (a reorg while fetching): the caller must stop and re-check.
///
/// Each range is fetched and decoded in a task of its own, so that parsing a response (the
/// indexer's biggest CPU cost after the database) runs on the runtime's worker threads while the
/// caller's task binds and commits the previous batch. Dropping the stream aborts the tasks.
pub(crate) fn batches(
    fetcher: Arc<LogFetcher<RootProvider>>,
    chain_id: u64,
    (from, target): (u64, u64),
    head: u64,
    window: u64,
    retry: rpc::Retry,
) -> impl futures::Stream<Item = Result<Option<Fetched>>> {
    let concurrency = fetcher.concurrency();
    let planner = fetcher.clone();
    futures::stream::unfold(from, move |from| {
        let hint = planner.range_hint();
        async move {
            (from <= target).then(|| {
                let to = (from + hint - 1).min(target);
                ((from, to), to + 1)
            })
        }
    })
    .map(move |(from, to)| {
        let fetcher = fetcher.clone();
        let retry = retry.clone();
        let task = tokio::spawn(async move {
            fetch_range(&fetcher, chain_id, (from, to), head, window, &retry).await
        });
        async move {
            AbortOnDropHandle::new(task)
                .await
                .map_err(|e| Error::Rpc(format!("fetching blocks {from}..={to} failed: {e}")))?
        }
    })
    .buffered(concurrency)
}

/// One range fetched and decoded (see [`build_batch`]): `None` when it must be fetched again.
pub(crate) async fn fetch_range(
    fetcher: &LogFetcher<RootProvider>,
    chain_id: u64,
    (from, to): (u64, u64),
    head: u64,
    window: u64,
    retry: &rpc::Retry,
) -> Result<Option<Fetched>> {
    let logs = fetcher.logs(from, to).await?;
    build_batch(
        fetcher.provider(),
        chain_id,
        (from, to),
        logs,
        head,
        window,
        retry,
    )
    .await
}

/// Decodes a range's logs and collects the block hashes to keep. Near the head, the hashes in
/// the logs are checked against freshly fetched headers; `None` means they disagree (a reorg
/// happened while fetching) and the range must be fetched again. The hash of the block before
/// the range, fetched after its logs, goes with the batch: the store refuses the batch if it is
/// not the hash stored for that block (a reorg below the range, wherever it happened).
///
/// The block times the logs carry are checked everywhere, not only near the head: the first and
/// last log's blocks are compared with their headers (hash and time), all logs of a block carry
/// one time, times never decrease with the block number, and every time lies between the
/// headers of `from − 1` and `to`. A range failing a check is a provider's fault: `None`, and
/// it is fetched again.
async fn build_batch<P: Provider>(
    provider: &P,
    chain_id: u64,
    (from, to): (u64, u64),
    logs: Vec<RpcLog>,
    head: u64,
    window: u64,
    retry: &rpc::Retry,
) -> Result<Option<Fetched>> {
    let near_head = to + window >= head;
    let mut headers: foldhash::HashMap<u64, (B256, u64)> = Default::default();
    let mut wanted: BTreeSet<u64> = BTreeSet::new();
    wanted.insert(to);
    if from > 0 {
        wanted.insert(from - 1);
    }
    for l in &logs {
        if near_head || l.block_timestamp.is_none() {
            wanted.insert(l.block());
        }
    }
    if let (Some(first), Some(last)) = (logs.first(), logs.last()) {
        wanted.insert(first.block());
        wanted.insert(last.block());
    }
    let fetched = futures::future::try_join_all(
        wanted
            .iter()
            .map(|&n| async move { Ok::<_, Error>((n, header(provider, n, retry).await?)) }),
    )
    .await?;
    for (n, hb) in fetched {
        match hb {
            Some(hb) => {
                headers.insert(n, hb);
            }
            None => return Ok(None),
        }
    }
    let parent = (from > 0).then(|| (from - 1, headers[&(from - 1)].0));
    if let Err(why) = check_times(&logs, &headers, from, to) {
        retry
            .counts
            .wrong_block_times
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        warn!(target: "indexer::sync", from, to, %why, "the provider's logs carry wrong block times; fetching the range again");
        return Ok(None);
    }
    let mut refused = 0;
    let mut trades = Vec::with_capacity(logs.len());
    let (mut referrals, mut fee_events, mut created) = (Vec::new(), Vec::new(), Vec::new());
    let mut blocks = vec![(to, headers[&to].0)];
    for l in &logs {
        let n = l.block();
        let time = match headers.get(&n) {
            Some(&(hash, time)) => {
                if l.block_hash != Some(hash) {
                    return Ok(None);
                }
                if near_head && blocks.last().is_none_or(|b| b.0 != n) && n != to {
                    blocks.push((n, hash));
                }
                Some(time)
            }
            None => None,
        };
        match decode_or_refuse(chain_id, l, time, &mut refused) {
            Some(MarketEvent::Trade(t)) => trades.push(t),
            Some(MarketEvent::Referral(r)) => referrals.push(r),
            Some(MarketEvent::Fee(f)) => fee_events.push(f),
            Some(MarketEvent::Created {
                subject,
                curve,
                block,
            }) => created.push(Created {
                subject,
                curve,
                block,
            }),
            None => {}
        }
    }
    Ok(Some((
        Batch {
            head,
            from,
            to,
            to_time: headers[&to].1,
            parent,
            trades,
            referrals,
            fee_events,
            blocks,
            refused,
            unverified: Vec::new(),
        },
        created,
    )))
}

/// The block-time checks of [`build_batch`]: `Err` says what is wrong.
fn check_times(
    logs: &[RpcLog],
    headers: &foldhash::HashMap<u64, (B256, u64)>,
    from: u64,
    to: u64,
) -> std::result::Result<(), String> {
    let floor = from.checked_sub(1).map_or(0, |p| headers[&p].1);
    let ceiling = headers[&to].1;
    let mut last: Option<(u64, u64)> = None;
    for l in logs {
        let Some(time) = l.block_timestamp.map(|t| t.to::<u64>()) else {
            continue;
        };
        let n = l.block();
        if let Some(&(_, header_time)) = headers.get(&n)
            && header_time != time
        {
            return Err(format!(
                "block {n}'s logs say time {time}, its header {header_time}"
            ));
        }
        if !(floor..=ceiling).contains(&time) {
            return Err(format!(
                "block {n}'s time {time} is outside the range's headers' {floor}..={ceiling}"
            ));
        }
        match last {
            Some((b, t)) if b == n && t != time => {
                return Err(format!("block {n}'s logs carry two times, {t} and {time}"));
            }
            Some((b, t)) if time < t => {
                return Err(format!("block {n}'s time {time} is before block {b}'s {t}"));
            }
            _ => {}
        }
        last = Some((n, time));
    }
    Ok(())
}

/// Fetches and decodes a market's trades from its start block to `stop_at` (or the head) without
/// storing them: the RPC side's ceiling, for benchmarks. Returns (trades, blocks, elapsed).
pub async fn fetch_only<P: Provider>(
    provider: P,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<(u64, u64, Duration)> {
    let started = Instant::now();
    let fetcher = Arc::new(LogFetcher::new(
        provider.root().clone(),
        spec.address,
        &MARKET_TOPICS,
        config.fetch.clone(),
    ));
    let retry = config.fetch.retry();
    let chain_id = rpc::call("eth_chainId", &retry, || provider.get_chain_id()).await?;
    let head = rpc::call("eth_blockNumber", &retry, || provider.get_block_number()).await?;
    let target = config.stop_at.unwrap_or(head).min(head);
    let mut stream = std::pin::pin!(batches(
        fetcher,
        chain_id,
        (spec.start_block, target),
        head,
        config.window,
        retry.clone(),
    ));
    let (mut trades, mut blocks) = (0, 0);
    while let Some(batch) = stream.next().await {
        let (batch, _) =
            batch?.ok_or_else(|| Error::Rpc("the chain changed while fetching".into()))?;
        trades += batch.trades.len() as u64;
        blocks += batch.to - batch.from + 1;
    }
    Ok((trades, blocks, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U64;

    use super::*;
    use crate::decode::tests::log;

    /// A log of block `n` carrying time `t`.
    fn at(n: u64, t: u64) -> RpcLog {
        let mut l = log();
        l.block_number = Some(U64::from(n));
        l.block_timestamp = Some(U64::from(t));
        l
    }

    #[test]
    fn block_times_are_checked_against_headers_and_each_other() {
        // Headers of blocks 9 (before the range), 10 and 20 (the first and last log's), 30 (`to`).
        let headers: foldhash::HashMap<u64, (B256, u64)> =
            [(9, 900), (10, 1_000), (20, 2_000), (30, 3_000)]
                .into_iter()
                .map(|(n, t)| (n, (B256::ZERO, t)))
                .collect();
        let check = |logs: &[RpcLog]| check_times(logs, &headers, 10, 30);
        assert!(check(&[at(10, 1_000), at(15, 1_500), at(15, 1_500), at(20, 2_000)]).is_ok());
        assert!(check(&[]).is_ok());
        // Every time moved by two days: the first log's header disagrees.
        let e = check(&[at(10, 173_800), at(20, 174_800)]).unwrap_err();
        assert!(e.contains("its header"), "{e}");
        // One block's logs with two times; a time going back; a time beyond `to`'s header.
        let e = check(&[at(10, 1_000), at(15, 1_500), at(15, 1_501), at(20, 2_000)]).unwrap_err();
        assert!(e.contains("two times"), "{e}");
        let e = check(&[at(10, 1_000), at(15, 1_500), at(16, 1_400), at(20, 2_000)]).unwrap_err();
        assert!(e.contains("is before"), "{e}");
        let e = check(&[at(10, 1_000), at(15, 9_999), at(20, 2_000)]).unwrap_err();
        assert!(e.contains("outside"), "{e}");
    }
}
