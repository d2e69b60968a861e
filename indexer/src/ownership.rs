//! Several indexer processes on one PostgreSQL database: each market owned by one process at a
//! time through a lease row in the database (see the store's `lease` module), the others
//! standing by and taking over by themselves.
//!
//! A process ([`Ownership`]) names itself `host:pid:machine:random`, and every second renews
//! the leases it holds and records itself as running (the heartbeat). For each market it
//! indexes, a supervisor ([`Ownership::index_market`]) bids for the market every second while
//! it stands by (while under its share, or for a market left without a live owner for a lease's
//! time; an owner that died on this machine is not waited out); once it wins, it runs the market
//! ([`crate::run`]) with the lease's epoch, which every commit checks in its own transaction
//! (the write fence). It gives the market up when:
//! - the heartbeat finds the lease taken over, or cannot reach the database for nearly as long
//!   as the lease lasts (a partition: a standby may own it soon) — the run is dropped at once,
//!   and a commit it had in flight is refused by the fence;
//! - it holds more markets than its share (markets ÷ live processes, rounded up) and another
//!   process bids for one of them: the highest such market is handed off at its next batch
//!   boundary (the lease released, so the bidder takes it) — so several processes split several
//!   markets between them; never during a long backfill with the database's indexes dropped;
//! - the run ends (no `--follow`, or a stop): the lease is released for a standby.

use std::{
    collections::{HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use alloy::providers::Provider;
use tokio_util::{sync::CancellationToken, task::AbortOnDropHandle};
use tracing::{info, warn};

use crate::{
    Error, IndexerConfig, MarketSpec, Result, RunReport,
    store::{Bid, LEASE_TTL_MS, StoreWriter},
    sync::{register, run_leased},
};

/// How often the heartbeat renews the leases and a standby bids.
const BEAT: Duration = Duration::from_secs(1);
/// How long one database call of the heartbeat or a bid may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// A held market: its lease's epoch, and the tokens that end its run.
struct Held {
    epoch: i64,
    /// Drops the run at once: the lease is lost, or may be.
    give_up: CancellationToken,
    /// Stops the run at its next batch boundary, as a signal would: the market is handed off.
    hand_off: CancellationToken,
    /// When a request that renewed (or won) the lease was sent: the lease lasts at least
    /// [`LEASE_TTL_MS`] from then.
    confirmed: Instant,
}

/// This process's part in the markets' ownership (shared by its markets' supervisors).
pub struct Ownership {
    store: StoreWriter,
    name: Arc<str>,
    /// The markets this process indexes (the share's numerator).
    wanted: usize,
    /// Markets this process may hold: its share, as of the last heartbeat.
    share: AtomicUsize,
    held: Mutex<HashMap<i64, Held>>,
    /// The markets its supervisors registered (one supervisor per market).
    registered: Mutex<HashSet<i64>>,
    /// Runs in a long backfill with the database-wide indexes dropped (no hand-off meanwhile).
    bulk_runs: Arc<AtomicUsize>,
}

impl Ownership {
    /// Joins the processes indexing `store`'s database, for `wanted` markets: the first heartbeat
    /// (so that a database out of reach is an error here), then a heartbeat every second until
    /// the returned handle is dropped. `store` should be a pool of its own (the leases' calls
    /// must not queue behind the batches' commits); `config` is the runs' (its bulk counter).
    pub async fn join(
        store: StoreWriter,
        wanted: usize,
        config: &IndexerConfig,
    ) -> Result<(Arc<Self>, AbortOnDropHandle<()>)> {
        let name: Arc<str> = format!(
            "{}:{}:{}:{:08x}",
            hostname().unwrap_or_else(|| "host".into()),
            std::process::id(),
            machine().unwrap_or_else(|| "-".into()),
            rand::random::<u32>()
        )
        .into();
        let me = Arc::new(Self {
            store,
            name,
            wanted: wanted.max(1),
            share: AtomicUsize::new(0),
            held: Mutex::new(HashMap::new()),
            registered: Mutex::new(HashSet::new()),
            bulk_runs: config.bulk_runs.clone(),
        });
        me.store.heartbeat(&me.name, &[]).await?;
        me.update_share().await?;
        info!(target: "indexer::ownership", owner = %me.name, markets = wanted, share = me.share.load(Ordering::Relaxed), "joined the indexers of this database");
        let beating = me.clone();
        let handle = AbortOnDropHandle::new(tokio::spawn(async move { beating.beat().await }));
        Ok((me, handle))
    }

    /// The name this process holds leases under.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// Leaves cleanly: forgotten as a running process (its leases are released by the
    /// supervisors as their runs end).
    pub async fn leave(&self) {
        let _ = tokio::time::timeout(CALL_TIMEOUT, self.store.leave(&self.name)).await;
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Held>> {
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn registered(&self) -> std::sync::MutexGuard<'_, HashSet<i64>> {
        self.registered.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This process's share: the markets it indexes divided by the live processes, rounded up.
    async fn update_share(&self) -> Result<usize> {
        let mut live = 0;
        for name in self.store.live_processes().await? {
            // Died on this machine: forgotten once silent for 2 s (its markets are taken at the
            // next bid, see `bid_until_won`), not counted for a lease's time.
            if !(died_here(&name) && self.store.forget_dead(&name).await?) {
                live += 1;
            }
        }
        let live = live.max(1);
        let share = self.wanted.div_ceil(live);
        self.share.store(share, Ordering::Relaxed);
        Ok(share)
    }

    /// The heartbeat: every second, the leases renewed and the share updated; markets whose
    /// lease was taken over, held beyond the share, or not confirmed for nearly a lease's time,
    /// given up.
    async fn beat(self: Arc<Self>) {
        // A market is given up this long after its lease was last confirmed, a beat before the
        // lease may expire, whatever the database call in flight is doing.
        let hold_for = Duration::from_millis(LEASE_TTL_MS as u64) - BEAT;
        loop {
            let give_up_at = self.held().values().map(|h| h.confirmed + hold_for).min();
            let until = |t: Instant| give_up_at.map_or(t + CALL_TIMEOUT, |g| g.max(t));
            tokio::time::sleep(BEAT.min(until(Instant::now()) - Instant::now())).await;
            let sent = Instant::now();
            let bound = CALL_TIMEOUT
                .min(until(sent) - sent)
                .max(Duration::from_millis(10));
            let leases: Vec<(i64, i64)> = self.held().iter().map(|(m, h)| (*m, h.epoch)).collect();
            let beat = async {
                let renewed = self.store.heartbeat(&self.name, &leases).await?;
                let share = self.update_share().await?;
                Ok::<_, Error>((renewed, share))
            };
            let share = match tokio::time::timeout(bound, beat).await {
                Ok(Ok((renewed, share))) => {
                    self.held().retain(|market, h| {
                        // Won after the heartbeat was sent: not asked about.
                        let asked = leases.contains(&(*market, h.epoch));
                        let kept = !asked || renewed.contains(&(*market, h.epoch));
                        if asked && kept {
                            h.confirmed = h.confirmed.max(sent);
                        }
                        if !kept {
                            warn!(target: "indexer::ownership", market, epoch = h.epoch, "lease taken over by another indexer: giving the market up");
                            h.give_up.cancel();
                        }
                        kept
                    });
                    Some(share)
                }
                Ok(Err(e)) => {
                    warn!(target: "indexer::ownership", error = %e, "renewing the leases failed");
                    None
                }
                Err(_) => {
                    warn!(target: "indexer::ownership", waited_ms = bound.as_millis() as u64, "renewing the leases got no answer in time");
                    None
                }
            };
            // Not confirmed for nearly a lease's time: the lease may expire before this process
            // hears from the database again; a standby may own the markets by then.
            self.held().retain(|market, h| {
                let unconfirmed = h.confirmed.elapsed();
                if unconfirmed >= hold_for {
                    warn!(target: "indexer::ownership", market, epoch = h.epoch, unconfirmed_ms = unconfirmed.as_millis() as u64, "cannot reach the database to renew the lease: giving the market up");
                    h.give_up.cancel();
                }
                unconfirmed < hold_for
            });
            let Some(share) = share else { continue };
            // More than its share: the highest market another process is bidding for is handed
            // off (none that nobody bids for, and none during a long backfill with the
            // database-wide indexes dropped, which only an owner of every market may run).
            let held: Vec<i64> = self.held().keys().copied().collect();
            if held.len() <= share || self.bulk_runs.load(Ordering::Relaxed) > 0 {
                continue;
            }
            let bidders = self.store.bidders(&self.name, &held);
            let Ok(Ok(wanted)) = tokio::time::timeout(CALL_TIMEOUT, bidders).await else {
                continue;
            };
            if let Some(market) = wanted.into_iter().max()
                && let Some(h) = self.held().remove(&market)
            {
                info!(target: "indexer::ownership", market, held = held.len(), share, "handing a market off to a process with fewer");
                h.hand_off.cancel();
            }
        }
    }

    /// Indexes one market as one of several processes: stands by until it wins the market's
    /// lease, runs it while it holds the lease, stands by again when it loses it. Returns when
    /// a run ends by itself (the head reached without `--follow`, or a stop), its lease
    /// released; without `--follow`, a market another process owns is an error (it is being
    /// indexed).
    pub async fn index_market<P: Provider + Clone>(
        self: &Arc<Self>,
        provider: P,
        store: &StoreWriter,
        spec: MarketSpec,
        config: &IndexerConfig,
    ) -> Result<RunReport> {
        let stop = &config.shutdown;
        let stopped = RunReport {
            stopped: true,
            ..RunReport::default()
        };
        let market = tokio::select! {
            () = stop.cancelled() => return Ok(stopped),
            m = register(&provider, store, spec, config) => m?,
        };
        if !self.registered().insert(market.id) {
            return Err(Error::Config(format!(
                "market {} is listed twice (for the same chain)",
                spec.address
            )));
        }
        let config = IndexerConfig {
            owner: Some(self.name.clone()),
            ..config.clone()
        };
        let mut said_standby = false;
        loop {
            let Some((epoch, confirmed)) = self
                .bid_until_won(market.id, spec, &config, &mut said_standby)
                .await?
            else {
                return Ok(stopped);
            };
            said_standby = false;
            let give_up = CancellationToken::new();
            let hand_off = stop.child_token();
            self.held().insert(
                market.id,
                Held {
                    epoch,
                    give_up: give_up.clone(),
                    hand_off: hand_off.clone(),
                    confirmed,
                },
            );
            let run_config = IndexerConfig {
                shutdown: hand_off.clone(),
                ..config.clone()
            };
            info!(target: "indexer::ownership", market = %spec.address, id = market.id, epoch, owner = %self.name, "owns the market");
            // A lost lease wins over whatever the run ended with at the same moment.
            let outcome = tokio::select! {
                biased;
                () = give_up.cancelled() => None,
                r = run_leased(provider.clone(), store, spec, &run_config, Some(epoch)) => Some(r),
            };
            self.held().remove(&market.id);
            // A clean end or a hand-off lets a standby take over at once; a lost lease has
            // another epoch by now, and nothing happens.
            let _ = tokio::time::timeout(CALL_TIMEOUT, self.store.release(market.id, epoch)).await;
            match outcome {
                None | Some(Err(Error::Store(crate::store::Error::NotOwner { .. }))) => {
                    info!(target: "indexer::ownership", market = %spec.address, epoch, "no longer owns the market: standing by");
                }
                Some(Ok(_)) if hand_off.is_cancelled() && !stop.is_cancelled() => {
                    info!(target: "indexer::ownership", market = %spec.address, epoch, "handed the market off: standing by");
                }
                Some(r) => return r,
            }
            if stop.is_cancelled() {
                return Ok(stopped);
            }
        }
    }

    /// Bids for the market every second until this process wins it (`Some((epoch, when the
    /// winning bid was sent))`) or is stopped (`None`). It bids only while it holds fewer markets
    /// than its share.
    async fn bid_until_won(
        &self,
        market_id: i64,
        spec: MarketSpec,
        config: &IndexerConfig,
        said_standby: &mut bool,
    ) -> Result<Option<(i64, Instant)>> {
        loop {
            if config.shutdown.is_cancelled() {
                return Ok(None);
            }
            let under_share = self.held().len() < self.share.load(Ordering::Relaxed);
            // At its share, a process still bids for a market left without a live owner for a
            // lease's time (nobody under their share wants it).
            let orphan = !under_share
                && matches!(
                    tokio::time::timeout(CALL_TIMEOUT, self.store.unowned_for_long(market_id))
                        .await,
                    Ok(Ok(true))
                );
            if under_share || orphan {
                let sent = Instant::now();
                let bid = async {
                    match self.store.try_acquire(market_id, &self.name).await? {
                        Bid::Held { owner, .. } if died_here(&owner) => {
                            info!(target: "indexer::ownership", market = %spec.address, %owner, "the owner died on this machine: taking over without waiting for its lease");
                            self.store
                                .take_from_dead(market_id, &owner, &self.name)
                                .await
                        }
                        bid => Ok(bid),
                    }
                };
                match tokio::time::timeout(CALL_TIMEOUT, bid).await {
                    Ok(Ok(Bid::Won { epoch })) => return Ok(Some((epoch, sent))),
                    Ok(Ok(Bid::Held {
                        owner,
                        expires_in_ms,
                    })) => {
                        // A process that just died here is waited for (its leases are
                        // taken in 2 s): a restart right after a crash resumes.
                        if !config.follow && !died_here(&owner) {
                            return Err(Error::Config(format!(
                                "market {} is being indexed by another process ({owner}); run with --follow to stand by and take over when it stops",
                                spec.address
                            )));
                        }
                        if !*said_standby {
                            *said_standby = true;
                            info!(target: "indexer::ownership", market = %spec.address, %owner, expires_in_ms, "standing by: another process owns the market");
                        }
                    }
                    Ok(Err(e)) if e.is_transient() => {
                        warn!(target: "indexer::ownership", market = %spec.address, error = %e, "bidding for the market failed")
                    }
                    Ok(Err(e)) => return Err(e.into()),
                    Err(_) => {
                        warn!(target: "indexer::ownership", market = %spec.address, "bidding for the market took over {CALL_TIMEOUT:?}")
                    }
                }
            } else if !*said_standby {
                *said_standby = true;
                info!(target: "indexer::ownership", market = %spec.address, "standing by: this process holds its share of the markets");
            }
            tokio::select! {
                () = config.shutdown.cancelled() => return Ok(None),
                () = tokio::time::sleep(BEAT) => {}
            }
        }
    }
}

/// Whether the process named `owner` (`host:pid:machine:…`) ran on this machine and is gone
/// (no such pid, or a zombie): its leases need not be waited out (once it has also been silent
/// for 2 s, checked in the database). `machine` is the boot id and the pid namespace, so that
/// containers sharing a hostname (host networking, replicas given one name) or cloned machines
/// are never taken for this one; a name without it is never declared dead.
fn died_here(owner: &str) -> bool {
    let parts: Vec<&str> = owner.split(':').collect();
    let [host, pid, machine_id, _] = parts[..] else {
        return false;
    };
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    if hostname().as_deref() != Some(host)
        || machine().as_deref() != Some(machine_id)
        || pid == std::process::id()
    {
        return false;
    }
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the command's closing parenthesis.
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// This machine and pid namespace, as `BOOTID8.PIDNS` (Linux: the boot id's first 8 characters
/// and the pid namespace's inode); `None` if either cannot be read.
fn machine() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = std::fs::read_link("/proc/self/ns/pid").ok()?;
    let inode: String = ns
        .to_string_lossy()
        .chars()
        .filter(char::is_ascii_digit)
        .collect();
    (boot.len() >= 8 && !inode.is_empty()).then(|| format!("{}.{inode}", &boot[..8]))
}

/// The machine's name (Linux), for the owner's name.
fn hostname() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
}
