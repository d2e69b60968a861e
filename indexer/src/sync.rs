//! The sync loop: a market checked and registered, backfilled to the head in a pipeline of
//! ranges (fetched and decoded in tasks of their own, committed in order), then followed; faults
//! waited out, reorgs repaired, a stop obeyed between commits.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use alloy::providers::Provider;
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{
    Error, IndexerConfig, MarketSpec, Result, RunReport,
    batch::{Fetched, batches},
    decode::MARKET_TOPICS,
    fetch::LogFetcher,
    reorg::check_reorg,
    rpc::{self, block_hash},
    second_opinion::SecondOpinion,
    store::{Error as StoreError, MarketState, Store},
    verify::{Break, CurveCheck},
};

/// Breaks of the curve at one place after which the chain itself is believed (each time the
/// range was fetched again and said the same).
const BREAKS_BELIEVED_AFTER: u32 = 3;

/// Checks a market against the chain and registers it: right chain, code at the address, start
/// block not beyond the head, and the stored block window still on the canonical chain.
///
/// The first call (the chain id) gives up after a few attempts, so that a wrong or unreachable
/// URL is a clear error; once the provider has answered, every call is retried for as long as it
/// takes ([`FetchConfig::retry`]).
pub async fn prepare<P: Provider>(
    provider: &P,
    store: &Store,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<MarketState> {
    let retry = config.fetch.retry();
    let first_contact = rpc::Retry {
        attempts: Some(4),
        ..retry.clone()
    };
    let chain_id = rpc::call("eth_chainId", &first_contact, || provider.get_chain_id())
        .await
        .map_err(|e| match e {
            // A permanent refusal (e.g. a TLS certificate) keeps its cause for the caller.
            Error::Transport(t) => Error::Transport(t),
            e => Error::Rpc(format!("cannot reach the RPC: {e}")),
        })?;
    if let Some(expected) = spec.chain_id
        && expected != chain_id
    {
        return Err(Error::WrongChain(format!(
            "the market {} is on chain {expected}, but the RPC serves chain {chain_id}",
            spec.address
        )));
    }
    let genesis = block_hash(provider, 0, &retry)
        .await?
        .ok_or_else(|| Error::Rpc("the RPC has no genesis block".into()))?;
    store.ensure_chain(chain_id, genesis).await?;
    if rpc::call("eth_getCode", &retry, || provider.get_code_at(spec.address))
        .await?
        .is_empty()
    {
        return Err(Error::NoCode {
            address: spec.address,
            chain_id,
        });
    }
    let head = rpc::call("eth_blockNumber", &retry, || provider.get_block_number()).await?;
    if spec.start_block > head {
        return Err(Error::Config(format!(
            "start block {} is beyond the chain's head {head}",
            spec.start_block
        )));
    }
    let mut market = store
        .ensure_market(chain_id, spec.address, spec.start_block)
        .await?;
    check_reorg(provider, store, &mut market, config).await?;
    Ok(market)
}

/// `fut`, unless `stop` is cancelled first (`None`).
async fn or_stop<T>(
    stop: &CancellationToken,
    fut: impl std::future::Future<Output = T>,
) -> Option<T> {
    tokio::select! {
        biased;
        () = stop.cancelled() => None,
        v = fut => Some(v),
    }
}

/// How often a following indexer says where it is when nothing else is said.
const FOLLOW_SUMMARY_EVERY: Duration = Duration::from_secs(300);

/// Trades stored while following since the last summary line.
struct Quiet {
    since: Instant,
    trades: u64,
}

impl Default for Quiet {
    fn default() -> Self {
        Self {
            since: Instant::now(),
            trades: 0,
        }
    }
}

/// Indexes one market: backfill to the head (less confirmations), then follow it if asked.
///
/// Ranges of logs and their headers are fetched through the provider's [`RootProvider`] (its
/// transport, shared), in tasks of their own; the provider's own layers and fillers are used for
/// the other calls only.
///
/// Temporary faults never end a run: RPC calls are retried for as long as it takes
/// ([`rpc::call`]); a database outage ([`Error::is_transient`]) rolls back the open transaction,
/// and the run waits with backoff, reads its checkpoint again and carries on; a reorg found
/// below a batch ([`StoreError::Reorged`]) is repaired. Cancelling [`IndexerConfig::shutdown`] ends
/// the run after the commit in flight, with `stopped` set in the report.
pub async fn run<P: Provider>(
    provider: P,
    store: &Store,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<RunReport> {
    let started = Instant::now();
    let stop = &config.shutdown;
    let retry = config.fetch.retry();
    let mut report = RunReport::default();
    let Some(market) = or_stop(stop, prepare(&provider, store, spec, config)).await else {
        report.stopped = true;
        return Ok(report);
    };
    let mut market = market?;
    let fetcher = Arc::new(LogFetcher::new(
        provider.root().clone(),
        spec.address,
        &MARKET_TOPICS,
        config.fetch.clone(),
    ));
    // Whether a provider keeps failing a range, written to the store for /healthz (checked every
    // second; the first check clears what an earlier run left).
    let _stall_writer = {
        let (store, id, counts) = (store.clone(), market.id, config.fetch.counts.clone());
        tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
            let mut written: Option<Option<String>> = None;
            loop {
                let now = counts
                    .stall
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone();
                if written.as_ref() != Some(&now)
                    && store.record_stall(id, now.as_deref()).await.is_ok()
                {
                    written = Some(now);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }))
    };
    let states = store.subject_states(market.id).await?;
    let Some(check) = or_stop(stop, CurveCheck::new(&provider, spec.address, states)).await else {
        report.stopped = true;
        report.next_block = market.next_block;
        return Ok(report);
    };
    let mut check = check.map_err(|e| Error::Rpc(format!("reading the market's code: {e}")))?;
    let second = config
        .second_provider
        .clone()
        .map(|p| SecondOpinion::new(p, spec.address, &config.fetch));
    // The block the check's supplies continue from: any other start (a rollback, a reorg
    // repaired) reads them again from the store.
    let mut check_next = market.next_block;
    // The last break, and how many times running the chain said the same.
    let mut last_break: Option<(Break, u32)> = None;
    let first = market.next_block;
    let Some(head) = or_stop(
        stop,
        rpc::call("eth_blockNumber", &retry, || provider.get_block_number()),
    )
    .await
    else {
        report.stopped = true;
        report.next_block = market.next_block;
        return Ok(report);
    };
    let head = head?;
    let bar = if config.progress {
        backfill_bar(first, head)
    } else {
        ProgressBar::hidden()
    };
    let mut last_log = Instant::now();
    let mut quiet = Quiet::default();
    info!(target: "indexer::sync", market = %spec.address, chain_id = market.chain_id, from = first, head, "indexing");
    let mut bulk = false;
    let mut caught_up = false;
    let mut last_head_record = Instant::now();
    let mut db_failures = 0u32;
    /// What the sync loop does after a pass.
    enum Flow {
        /// Another pass.
        Again,
        /// The run is over.
        Done,
    }
    loop {
        if stop.is_cancelled() {
            report.stopped = true;
            break;
        }
        let pass = async {
            let Some(head) = or_stop(
                stop,
                rpc::call("eth_blockNumber", &retry, || provider.get_block_number()),
            )
            .await
            else {
                return Ok(Flow::Again);
            };
            let head = head?;
            let mut target = head.saturating_sub(config.confirmations);
            if let Some(stop) = config.stop_at {
                target = target.min(stop);
            }
            match or_stop(stop, check_reorg(&provider, store, &mut market, config)).await {
                None => return Ok(Flow::Again),
                Some(repaired) => {
                    if repaired? {
                        report.reorgs += 1;
                    }
                }
            }
            if market.next_block > target {
                if !caught_up {
                    // Reaching the head ends a long backfill (also one killed before this point).
                    bar.set_message("building indexes");
                    let t = Instant::now();
                    let Some(built) = or_stop(stop, store.build_secondary_indexes()).await else {
                        return Ok(Flow::Again);
                    };
                    built?;
                    caught_up = true;
                    report.index_time += t.elapsed();
                }
                if config.stop_at.is_some_and(|s| market.next_block > s) || !config.follow {
                    return Ok(Flow::Done);
                }
                if last_head_record.elapsed() >= Duration::from_secs(1) {
                    last_head_record = Instant::now();
                    store.record_head(market.id, head).await?;
                }
                or_stop(stop, tokio::time::sleep(config.poll_interval)).await;
                return Ok(Flow::Again);
            }
            // One pass to `target`: ranges are planned from the adaptive hint and fetched
            // `concurrency` at a time while earlier ones commit, in order (fetching and storing
            // overlap; at most `concurrency` + 1 ranges are held in memory).
            let batches = batches(
                fetcher.clone(),
                market.chain_id,
                (market.next_block, target),
                head,
                config.window,
                retry.clone(),
            );
            let (tx, rx) = tokio::sync::mpsc::channel::<Fetched>(1);
            let producer = async move {
                let mut batches = std::pin::pin!(batches);
                while let Some(Some(batch)) = or_stop(stop, batches.next()).await {
                    // `None`: the chain changed under us between the logs and the headers; stop
                    // the pass and re-check.
                    let Some(batch) = batch? else { break };
                    if tx.send(batch).await.is_err() {
                        break;
                    }
                }
                Ok::<_, Error>(())
            };
            let consumer = async {
                let mut rx = rx;
                loop {
                    let t = Instant::now();
                    // A stop is obeyed between commits, never during one.
                    let Some(Some((mut batch, mut created))) = or_stop(stop, rx.recv()).await
                    else {
                        break;
                    };
                    report.fetch_wait += t.elapsed();
                    if batch.from != check_next {
                        check.reset(store.subject_states(market.id).await?);
                    }
                    check
                        .learn_curves(
                            provider.root(),
                            spec.address,
                            &created,
                            &batch.trades,
                            &retry,
                        )
                        .await?;
                    let near_head = batch.to + config.window >= batch.head;
                    let checked = match check.check(&batch.trades, &created) {
                        Ok(supplies) if near_head => match check
                            .confirm_at(
                                provider.root(),
                                spec.address,
                                batch.to,
                                &supplies,
                                &retry,
                                false,
                            )
                            .await?
                        {
                            None => Ok(supplies),
                            Some(brk) => Err(brk),
                        },
                        other => other,
                    };
                    let supplies = match checked {
                        Ok(supplies) => {
                            // The place of the last break passed (the provider stopped lying);
                            // batches before it (after a rollback) say nothing about it.
                            if last_break.as_ref().is_some_and(|(b, _)| {
                                (batch.from..=batch.to).contains(&(b.block as u64))
                            }) {
                                last_break = None;
                            }
                            supplies
                        }
                        Err(brk) => {
                            let seen = match &last_break {
                                Some((b, n)) if *b == brk => n + 1,
                                _ => 1,
                            };
                            last_break = Some((brk.clone(), seen));
                            if seen < BREAKS_BELIEVED_AFTER {
                                config
                                    .fetch
                                    .counts
                                    .curve_breaks
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                return Err(Error::CurveBreak {
                                    why: brk.to_string(),
                                    repair_from: brk.against_stored.then(|| brk.subject.clone()),
                                });
                            }
                            // A second provider, when there is one, may say otherwise.
                            let corrected = match &second {
                                Some(second) => {
                                    second
                                        .ask(&mut check, market.chain_id, &batch, config.window)
                                        .await?
                                }
                                None => None,
                            };
                            if let Some(((b, c), supplies)) = corrected {
                                config
                                    .fetch
                                    .counts
                                    .second_provider_corrections
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                warn!(target: "indexer::verify", market = %spec.address, subject = %brk.subject, block = brk.block, what = %brk.what, times = seen, "the provider keeps answering trades that break the curve, the second provider's answer keeps it: storing the second provider's");
                                last_break = None;
                                batch = b;
                                created = c;
                                supplies
                            } else {
                                // The chain itself says so: stored, not hidden.
                                config
                                    .fetch
                                    .counts
                                    .curve_unverified
                                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                                report.unverified += 1;
                                tracing::error!(target: "indexer::verify", market = %spec.address, subject = %brk.subject, block = brk.block, what = %brk.what, times = seen, "the chain's own trades break the curve: stored as they are; this subject and market are unverified from this block");
                                batch.unverified.push(crate::store::Unverified {
                                    subject: brk.subject.clone(),
                                    block: brk.block,
                                    reason: brk.what.clone(),
                                });
                                let mut last: foldhash::HashMap<&str, i64> = Default::default();
                                for t in &batch.trades {
                                    last.insert(&t.subject, t.supply);
                                }
                                last.into_iter().map(|(s, n)| (s.to_string(), n)).collect()
                            }
                        }
                    };
                    let t = Instant::now();
                    store.commit(&market, &batch, config.window).await?;
                    check.stored(supplies, &created);
                    check_next = batch.to + 1;
                    report.store_time += t.elapsed();
                    market.next_block = batch.to + 1;
                    report.trades += batch.trades.len() as u64;
                    report.refused_logs += batch.refused;
                    config
                        .fetch
                        .counts
                        .refused_logs
                        .fetch_add(batch.refused, std::sync::atomic::Ordering::Relaxed);
                    report.blocks += batch.to - batch.from + 1;
                    report.batches += 1;
                    if !bulk
                        && !caught_up
                        && report.trades >= config.bulk_min_trades
                        && head.saturating_sub(batch.to) > report.blocks
                    {
                        bulk = true;
                        info!(target: "indexer::sync", trades = report.trades, remaining_blocks = head - batch.to, "long backfill: secondary indexes dropped until the head is reached");
                        store.drop_secondary_indexes().await?;
                    }
                    bar.set_length(head.max(batch.to));
                    bar.set_position(batch.to);
                    bar.set_message(format!("{} trades", report.trades));
                    if caught_up {
                        // Following: quiet unless trades arrive (a line at most every 5 s), and
                        // a summary every few minutes.
                        quiet.trades += batch.trades.len() as u64;
                        if !batch.trades.is_empty() && last_log.elapsed() >= Duration::from_secs(5)
                        {
                            last_log = Instant::now();
                            info!(target: "indexer::sync", block = batch.to, trades = batch.trades.len(), head, lag = head.saturating_sub(batch.to), "new trades");
                        }
                        if quiet.since.elapsed() >= FOLLOW_SUMMARY_EVERY {
                            info!(target: "indexer::sync", block = batch.to, head, trades = quiet.trades, minutes = quiet.since.elapsed().as_secs() / 60, "following");
                            quiet = Quiet::default();
                        }
                    } else if last_log.elapsed() >= Duration::from_secs(5) {
                        last_log = Instant::now();
                        let secs = started.elapsed().as_secs_f64();
                        info!(
                            target: "indexer::sync",
                            block = batch.to,
                            head,
                            lag = head.saturating_sub(batch.to),
                            trades = report.trades,
                            trades_per_sec = (report.trades as f64 / secs) as u64,
                            blocks_per_sec = (report.blocks as f64 / secs) as u64,
                            range = fetcher.range_hint(),
                            "progress"
                        );
                    }
                }
                Ok::<_, Error>(())
            };
            futures::future::try_join(producer, consumer).await?;
            Ok(Flow::Again)
        };
        // A pass's outcome, then the repair it calls for; a transient database error in either
        // (an outage, a lock, a restart) is waited out the same way.
        let outcome = match pass.await {
            Ok(Flow::Again) => {
                db_failures = 0;
                Ok(())
            }
            Ok(Flow::Done) => break,
            Err(Error::Store(StoreError::Reorged { block })) => {
                warn!(target: "indexer::reorg", block, "the chain changed below the next batch; checking the window");
                Ok(())
            }
            Err(Error::CurveBreak { why, repair_from }) => {
                // The provider's fault until the chain says the same again: fetch it again —
                // from the subject's last stored trade when the stored part may be the lie (a
                // trade left out of an earlier answer shows only at the subject's next trade).
                // The wait grows with the breaks of this same place, not with other faults.
                let same_place = last_break.as_ref().map_or(1, |(_, n)| *n);
                report.refused_batches += 1;
                let undone = async {
                    // From the subject's last stored trade, or — none stored — its opening.
                    let from = match &repair_from {
                        Some(subject) => store
                            .last_trade_block(market.id, subject)
                            .await?
                            .or_else(|| check.opened_at(subject)),
                        None => None,
                    };
                    if let Some(block) = from
                        && block < market.next_block
                    {
                        let orphans = store.rollback(&market, block).await?;
                        market.next_block = block;
                        report.repairs += 1;
                        warn!(target: "indexer::verify", %why, rolled_back_to = block, rolled_back_trades = orphans, "trades break the curve against stored ones; rolled back to the subject's last stored trade, fetching again");
                    } else {
                        warn!(target: "indexer::verify", %why, "a batch's trades break the curve; fetching the range again");
                    }
                    Ok::<_, Error>(())
                }
                .await;
                if undone.is_ok() {
                    or_stop(stop, tokio::time::sleep(rpc::backoff(same_place))).await;
                }
                undone
            }
            Err(Error::Store(e @ StoreError::AlreadyStored { first, .. })) => {
                // A provider's answer put a trade at a wrong block — in this batch, or in one
                // stored before it (then this batch's true copy collides with the stored lie).
                // Undo from the first block holding either copy, as for a reorg, and fetch
                // again after a backoff: a provider that stops lying leaves the truth.
                db_failures += 1;
                report.refused_batches += 1;
                let undone = async {
                    if first < market.next_block {
                        let orphans = store.rollback(&market, first).await?;
                        market.next_block = first;
                        warn!(target: "indexer::sync", error = %e, rolled_back_to = first, rolled_back_trades = orphans, "refused a batch holding a trade already stored; rolled back to the first copy");
                    } else {
                        warn!(target: "indexer::sync", error = %e, "refused a batch holding a trade twice; fetching it again");
                    }
                    Ok::<_, Error>(())
                }
                .await;
                if undone.is_ok() {
                    let delay = rpc::backoff(db_failures);
                    or_stop(stop, tokio::time::sleep(delay)).await;
                }
                undone
            }
            Err(Error::Store(StoreError::StoredTwice(why))) => {
                // The same, during a long backfill without the unique index: found when the
                // index is built at the head. Undo everything from the first such trade's block
                // (exactly, as for a reorg) and index it again.
                async {
                    let Some(first) = store.first_duplicate_block(market.id).await? else {
                        return Err(Error::Corrupt(why.clone()));
                    };
                    let orphans = store.rollback(&market, first).await?;
                    market.next_block = first;
                    report.repairs += 1;
                    warn!(target: "indexer::sync", first_block = first, rolled_back_trades = orphans, %why, "a trade was stored twice during the backfill: rolled back to its block; indexing again");
                    Ok(())
                }
                .await
            }
            Err(e) => Err(e),
        };
        match outcome {
            Ok(()) => {}
            Err(e) if e.is_transient() => {
                db_failures += 1;
                report.database_retries += 1;
                config
                    .fetch
                    .counts
                    .database
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let delay = rpc::backoff(db_failures);
                warn!(target: "indexer::store", attempt = db_failures, delay_ms = delay.as_millis() as u64, error = %e, "database unavailable (the open transaction was rolled back); retrying");
                or_stop(stop, tokio::time::sleep(delay)).await;
                // A commit (or a rollback) may have succeeded although its answer was lost: the
                // checkpoint says.
                match or_stop(stop, store.next_block(market.id)).await {
                    Some(Ok(next)) => market.next_block = next,
                    Some(Err(e)) if e.is_transient() => {} // still down: the next pass waits again
                    Some(Err(e)) => return Err(e.into()),
                    None => {}
                }
            }
            Err(e) => return Err(e),
        }
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    report.next_block = market.next_block;
    if report.stopped {
        info!(target: "indexer::sync", market = %spec.address, next_block = market.next_block, trades = report.trades, "stopped on request: every block below next_block is indexed");
    } else {
        info!(target: "indexer::sync", trades = report.trades, blocks = report.blocks, reorgs = report.reorgs, secs = report.elapsed.as_secs_f64(), "done");
    }
    Ok(report)
}

fn backfill_bar(from: u64, head: u64) -> ProgressBar {
    let bar = ProgressBar::new(head);
    bar.set_position(from.saturating_sub(1));
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} block {pos}/{len} [{bar:30}] {per_sec} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}
