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
use tracing::info;

mod long_backfill;
mod repair;
mod verified;

use crate::{
    Error, IndexerConfig, MarketSpec, Result, RunReport,
    batch::{Fetched, batches},
    decode::MARKET_TOPICS,
    fetch::LogFetcher,
    reorg::check_reorg,
    rpc::{self, block_hash},
    second_opinion::SecondOpinion,
    store::{MarketState, StoreWriter},
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
    store: &StoreWriter,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<MarketState> {
    prepare_leased(provider, store, spec, config, None).await
}

/// [`prepare`] for the holder of the market's lease of `lease_epoch` (see
/// [`crate::ownership`]): the reorg check's rollback, like every later write, is fenced by it.
async fn prepare_leased<P: Provider>(
    provider: &P,
    store: &StoreWriter,
    spec: MarketSpec,
    config: &IndexerConfig,
    lease_epoch: Option<i64>,
) -> Result<MarketState> {
    let mut market = register(provider, store, spec, config).await?;
    market.lease_epoch = lease_epoch;
    check_reorg(provider, store, &mut market, config).await?;
    Ok(market)
}

/// The first half of [`prepare`]: the market checked against the chain and registered (right
/// chain, code at the address, start block not beyond the head), nothing else written — what a
/// standby does before it owns the market.
pub async fn register<P: Provider>(
    provider: &P,
    store: &StoreWriter,
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
    Ok(store
        .ensure_market(chain_id, spec.address, spec.start_block)
        .await?)
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
    store: &StoreWriter,
    spec: MarketSpec,
    config: &IndexerConfig,
) -> Result<RunReport> {
    run_leased(provider, store, spec, config, None).await
}

/// [`run`] for the holder of the market's lease of `lease_epoch`: every commit and rollback is
/// fenced by it ([`crate::store::Error::NotOwner`] once the market has changed hands).
pub(crate) async fn run_leased<P: Provider>(
    provider: P,
    store: &StoreWriter,
    spec: MarketSpec,
    config: &IndexerConfig,
    lease_epoch: Option<i64>,
) -> Result<RunReport> {
    let started = Instant::now();
    let stop = &config.shutdown;
    let retry = config.fetch.retry();
    let mut report = RunReport::default();
    let Some(market) = or_stop(
        stop,
        prepare_leased(&provider, store, spec, config, lease_epoch),
    )
    .await
    else {
        report.stopped = true;
        return Ok(report);
    };
    let market = market?;
    let fetcher = Arc::new(LogFetcher::new(
        provider.root().clone(),
        spec.address,
        &MARKET_TOPICS,
        config.fetch.clone(),
    ));
    let _stall_writer = stall_writer(store, market, config);
    let states = store.subject_states(market.id).await?;
    let Some(check) = or_stop(stop, CurveCheck::new(&provider, spec.address, states)).await else {
        report.stopped = true;
        report.next_block = market.next_block;
        return Ok(report);
    };
    let check = check.map_err(|e| Error::Rpc(format!("reading the market's code: {e}")))?;
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
    info!(target: "indexer::sync", market = %spec.address, chain_id = market.chain_id, from = first, head, "indexing");
    let mut sync = Sync {
        provider: &provider,
        store,
        spec,
        config,
        retry,
        fetcher,
        second: config
            .second_provider
            .clone()
            .map(|p| SecondOpinion::new(p, spec.address, &config.fetch)),
        check_next: market.next_block,
        market,
        check,
        last_break: None,
        report,
        bar: if config.progress {
            backfill_bar(first, head)
        } else {
            ProgressBar::hidden()
        },
        started,
        last_log: Instant::now(),
        quiet: Quiet::default(),
        bulk: None,
        indexes_shared: false,
        deferred: false,
        caught_up: false,
        last_head_record: Instant::now(),
        db_failures: 0,
    };
    loop {
        if stop.is_cancelled() {
            sync.report.stopped = true;
            break;
        }
        // A pass's outcome, then the repair it calls for; a transient database error in either
        // (an outage, a lock, a restart) is waited out the same way.
        let outcome = match sync.pass().await {
            Ok(Flow::Again) => {
                sync.db_failures = 0;
                Ok(())
            }
            Ok(Flow::Done) => break,
            Err(e) => sync.repair(e).await,
        };
        match outcome {
            Ok(()) => {}
            Err(e) if e.is_transient() => sync.wait_out_database(e).await?,
            Err(e) => return Err(e),
        }
    }
    Ok(sync.finish())
}

/// What the sync loop does after a pass.
enum Flow {
    /// Another pass.
    Again,
    /// The run is over.
    Done,
}

/// One market's run between passes: where it is, what it checked, what it counted.
struct Sync<'a, P> {
    provider: &'a P,
    store: &'a StoreWriter,
    spec: MarketSpec,
    config: &'a IndexerConfig,
    retry: rpc::Retry,
    fetcher: Arc<LogFetcher<alloy::providers::RootProvider>>,
    market: MarketState,
    check: CurveCheck,
    /// Asked when the first provider keeps breaking the curve (`--second-rpc-url`).
    second: Option<SecondOpinion>,
    /// The block the check's supplies continue from: any other start (a rollback, a reorg
    /// repaired) reads them again from the store.
    check_next: u64,
    /// The last break, and how many times running the chain said the same.
    last_break: Option<(Break, u32)>,
    report: RunReport,
    bar: ProgressBar,
    started: Instant,
    last_log: Instant,
    quiet: Quiet,
    /// Secondary indexes dropped for a long backfill (counted in the config's `bulk_runs` while
    /// held).
    bulk: Option<long_backfill::BulkGuard>,
    /// Other processes own markets of this database: its indexes stay in place.
    indexes_shared: bool,
    /// This run deferred the market's aggregates (a long backfill; built at the head).
    deferred: bool,
    /// The head was reached once (the indexes built).
    caught_up: bool,
    last_head_record: Instant,
    /// Database failures in a row (the backoff's attempt).
    db_failures: u32,
}

impl<P: Provider> Sync<'_, P> {
    /// One pass: check the window for a reorg, then index to the head (less confirmations), or
    /// wait for a new block there.
    async fn pass(&mut self) -> Result<Flow> {
        let (stop, config) = (&self.config.shutdown, self.config);
        let Some(head) = or_stop(
            stop,
            rpc::call("eth_blockNumber", &self.retry, || {
                self.provider.get_block_number()
            }),
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
        match or_stop(
            stop,
            check_reorg(self.provider, self.store, &mut self.market, config),
        )
        .await
        {
            None => return Ok(Flow::Again),
            Some(repaired) => {
                if repaired? {
                    self.report.reorgs += 1;
                }
            }
        }
        if self.market.next_block > target {
            return self.at_head(head).await;
        }
        self.pass_to(head, target).await?;
        Ok(Flow::Again)
    }

    /// At the head: the indexes and the deferred aggregates built once (reaching it ends a long
    /// backfill, also one killed before this point or begun by another process), then done, or
    /// a poll's wait.
    async fn at_head(&mut self, head: u64) -> Result<Flow> {
        let (stop, config) = (&self.config.shutdown, self.config);
        if !self.caught_up {
            if !self.end_long_backfill().await? {
                return Ok(Flow::Again);
            }
            self.bulk = None;
            self.caught_up = true;
        }
        if config.stop_at.is_some_and(|s| self.market.next_block > s) || !config.follow {
            return Ok(Flow::Done);
        }
        if self.last_head_record.elapsed() >= Duration::from_secs(1) {
            self.last_head_record = Instant::now();
            self.store.record_head(&self.market, head).await?;
        }
        or_stop(stop, tokio::time::sleep(config.poll_interval)).await;
        Ok(Flow::Again)
    }

    /// One pass to `target`: ranges are planned from the adaptive hint and fetched
    /// `concurrency` at a time while earlier ones commit, in order (fetching and storing
    /// overlap; at most `concurrency` + 1 ranges are held in memory).
    async fn pass_to(&mut self, head: u64, target: u64) -> Result<()> {
        let stop = &self.config.shutdown;
        let batches = batches(
            self.fetcher.clone(),
            self.market.chain_id,
            (self.market.next_block, target),
            head,
            self.config.window,
            self.retry.clone(),
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
            // Owned here: a consumer that stops drops it, which ends the producer's send.
            let mut rx = rx;
            loop {
                let t = Instant::now();
                // A stop is obeyed between commits, never during one.
                let Some(Some((batch, created))) = or_stop(stop, rx.recv()).await else {
                    break;
                };
                self.report.fetch_wait += t.elapsed();
                self.store_batch(batch, created, head).await?;
            }
            Ok::<_, Error>(())
        };
        futures::future::try_join(producer, consumer).await?;
        Ok(())
    }

    /// A fetched batch checked against the curve ([`Self::verified`]), committed, counted and
    /// told.
    async fn store_batch(
        &mut self,
        mut batch: crate::store::Batch,
        mut created: Vec<crate::verify::Created>,
        head: u64,
    ) -> Result<()> {
        let supplies = self.verified(&mut batch, &mut created).await?;
        let t = Instant::now();
        self.store
            .commit(&self.market, &batch, self.config.window)
            .await?;
        self.check.stored(supplies, &created);
        self.check_next = batch.to + 1;
        let report = &mut self.report;
        report.store_time += t.elapsed();
        self.market.next_block = batch.to + 1;
        report.trades += batch.trades.len() as u64;
        report.refused_logs += batch.refused;
        self.config
            .fetch
            .counts
            .refused_logs
            .fetch_add(batch.refused, std::sync::atomic::Ordering::Relaxed);
        report.blocks += batch.to - batch.from + 1;
        report.batches += 1;
        self.maybe_start_long_backfill(head, batch.to).await?;
        self.tell(&batch, head);
        Ok(())
    }

    /// The progress bar, and a log line: while following, quiet unless trades arrive (a line at
    /// most every 5 s) and a summary every few minutes; while backfilling, progress every 5 s.
    fn tell(&mut self, batch: &crate::store::Batch, head: u64) {
        let report = &self.report;
        self.bar.set_length(head.max(batch.to));
        self.bar.set_position(batch.to);
        self.bar.set_message(format!("{} trades", report.trades));
        if self.caught_up {
            self.quiet.trades += batch.trades.len() as u64;
            if !batch.trades.is_empty() && self.last_log.elapsed() >= Duration::from_secs(5) {
                self.last_log = Instant::now();
                info!(target: "indexer::sync", block = batch.to, trades = batch.trades.len(), head, lag = head.saturating_sub(batch.to), "new trades");
            }
            if self.quiet.since.elapsed() >= FOLLOW_SUMMARY_EVERY {
                info!(target: "indexer::sync", block = batch.to, head, trades = self.quiet.trades, minutes = self.quiet.since.elapsed().as_secs() / 60, "following");
                self.quiet = Quiet::default();
            }
        } else if self.last_log.elapsed() >= Duration::from_secs(5) {
            self.last_log = Instant::now();
            let secs = self.started.elapsed().as_secs_f64();
            info!(
                target: "indexer::sync",
                block = batch.to,
                head,
                lag = head.saturating_sub(batch.to),
                trades = report.trades,
                trades_per_sec = (report.trades as f64 / secs) as u64,
                blocks_per_sec = (report.blocks as f64 / secs) as u64,
                range = self.fetcher.range_hint(),
                "progress"
            );
        }
    }

    /// The run's report, said.
    fn finish(mut self) -> RunReport {
        self.bar.finish_and_clear();
        let report = &mut self.report;
        report.elapsed = self.started.elapsed();
        report.next_block = self.market.next_block;
        if report.stopped {
            info!(target: "indexer::sync", market = %self.spec.address, next_block = self.market.next_block, trades = report.trades, "stopped on request: every block below next_block is indexed");
        } else {
            info!(target: "indexer::sync", trades = report.trades, blocks = report.blocks, reorgs = report.reorgs, secs = report.elapsed.as_secs_f64(), "done");
        }
        self.report
    }
}

/// Whether a provider keeps failing a range, written to the store for /healthz (checked every
/// second; the first check clears what an earlier run left), until dropped.
fn stall_writer(
    store: &StoreWriter,
    market: crate::store::MarketState,
    config: &IndexerConfig,
) -> tokio_util::task::AbortOnDropHandle<()> {
    let (store, counts) = (store.clone(), config.fetch.counts.clone());
    tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
        let mut written: Option<Option<String>> = None;
        loop {
            let now = counts
                .stall
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if written.as_ref() != Some(&now)
                && store.record_stall(&market, now.as_deref()).await.is_ok()
            {
                written = Some(now);
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }))
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
