//! Realistic friend.tech-style trading against a KeyMarket deployment on a dev chain.
//!
//! Who trades (`cast`): the node's unlocked dev accounts, or a generated population of tens of
//! thousands of traders and subjects that the node impersonates and funds. Subject popularity
//! and trader activity follow power laws (Zipf), as on friend.tech; most trades are single-key
//! buys and sells, some are multi-key, some name a referrer, and a small share is built to revert
//! (underpaid, oversold, expired, unauthorised first key). When (`profile`): a flat stream of
//! blocks, or friend.tech's two-month arc with a daily cycle as block timestamps. Transactions
//! are sent in JSON-RPC batches and mined explicitly, many per block. Every mined block's
//! receipts are read back, so the report is what the chain did, not what was intended.
//!
//! Not for: production chains (it needs unlocked or impersonated accounts and `evm_mine`).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use alloy::{
    network::Ethereum,
    primitives::{Address, U256},
    providers::{Provider, ext::AnvilApi},
    sol_types::SolCall,
};
use indicatif::{ProgressBar, ProgressStyle};
use keymarket_contracts::{Deployment, KeyMarket, curve};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Zipf};
use tracing::{info, warn};

pub use crate::profile::Profile;
pub use crate::report::{DayTally, SimReport, SubjectTally};
use crate::{
    cast::Cast,
    learn::{learn, learn_held},
    mine::send_and_mine,
    plan::{Mirror, Planned, TRADE_GAS, cover_worst_case, plan_trade, trade_tx},
};

pub mod calibration;
mod cast;
mod learn;
mod mine;
mod plan;
pub mod profile;
mod report;
mod temperament;

/// Errors of the simulator.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An RPC call failed.
    #[error(transparent)]
    Transport(#[from] alloy::transports::TransportError),
    /// A contract read failed.
    #[error(transparent)]
    Contract(#[from] alloy::contract::Error),
    /// The node has too few unlocked accounts for the requested roles.
    #[error(
        "the node has {have} unlocked accounts, the simulation needs at least {need} (start anvil with --accounts {need})"
    )]
    TooFewAccounts {
        /// Accounts the node has.
        have: usize,
        /// Accounts needed.
        need: usize,
    },
    /// The deployment file belongs to another chain.
    #[error("the deployment is on chain {deployment}, the RPC serves chain {rpc}")]
    WrongChain {
        /// Chain id in the deployment file.
        deployment: u64,
        /// Chain id of the RPC.
        rpc: u64,
    },
    /// Mined blocks did not contain all sent transactions after repeated mining.
    #[error("{0} sent transactions were never mined")]
    Unmined(usize),
}

/// Result type of the simulator.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// How to trade.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Number of trade transactions to send (including the ones built to revert).
    pub trades: u64,
    /// RNG seed: the same seed on the same chain state sends the same trades.
    pub seed: u64,
    /// Number of subjects (with dev accounts, each must be an unlocked account).
    pub subjects: usize,
    /// `None`: the node's unlocked dev accounts trade. `Some(n)`: `n` generated traders (and
    /// `subjects` generated subjects), impersonated and funded by the node when first used.
    pub traders: Option<usize>,
    /// When the trades happen.
    pub profile: Profile,
    /// Transactions per block (capped by the block gas limit).
    pub batch_size: usize,
    /// Seconds between simulated blocks with the flat profile.
    pub block_interval_secs: u64,
    /// Share of trades built to revert, in parts per thousand.
    pub fail_permille: u32,
    /// Share of buys that name a referrer, in parts per thousand.
    pub referral_permille: u32,
    /// Zipf exponent of subject popularity among the node's dev accounts (a generated
    /// population uses its calibrated one, see docs/simulator.md).
    pub zipf_exponent: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
    /// Unix time the run's blocks start from (not before the chain's latest block); `None`:
    /// just after the latest block. With a fixed start and seed on the same chain state, a run
    /// sends the same trades in the same blocks at the same times.
    pub start: Option<u64>,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            trades: 1_000,
            seed: 1,
            subjects: 40,
            traders: None,
            profile: Profile::Flat,
            batch_size: 500,
            block_interval_secs: 120,
            fail_permille: 5,
            referral_permille: 100,
            zipf_exponent: 1.1,
            progress: true,
            start: None,
        }
    }
}

impl SimConfig {
    /// Round `round` (1, 2, …) of `keymarket up`'s live stream after a history run with this
    /// configuration: one block of `trades` trades at unix time `at` (the wall clock's, in `up`),
    /// among the history's traders and subjects, in the late mood of a stream with no arc.
    pub fn live_round(&self, trades: u64, round: u64, at: u64) -> SimConfig {
        SimConfig {
            trades,
            seed: self.seed.wrapping_add(round),
            batch_size: trades as usize,
            // One block, one interval (a second) after the start's second before: at `at`.
            block_interval_secs: 1,
            profile: Profile::Flat,
            progress: false,
            start: Some(at),
            ..self.clone()
        }
    }
}

/// Runs the simulation: opens the subjects that have no keys yet, then sends `config.trades`
/// trades in mined batches, and reports what the receipts say.
pub async fn simulate<P: Provider + AnvilApi<Ethereum>>(
    provider: &P,
    deployment: &Deployment,
    config: &SimConfig,
) -> Result<SimReport> {
    Simulation::start(provider, deployment, config)
        .await?
        .run(provider, deployment, config)
        .await
}

/// A simulated market across several runs on one chain: who trades, and what each holds and
/// paid. `keymarket up` keeps it from the history to its live rounds, so the live stream's
/// traders are the history's and its holders keep selling (a fresh run knows no holders, and
/// would only buy).
pub struct Simulation {
    cast: Cast,
    mirror: Mirror,
    /// Runs so far.
    runs: u64,
}

impl Simulation {
    /// The market of `config` (its traders and subjects) on `deployment`'s chain.
    pub async fn start<P: Provider + AnvilApi<Ethereum>>(
        provider: &P,
        deployment: &Deployment,
        config: &SimConfig,
    ) -> Result<Self> {
        let chain_id = provider.get_chain_id().await?;
        if chain_id != deployment.chain_id {
            return Err(Error::WrongChain {
                deployment: deployment.chain_id,
                rpc: chain_id,
            });
        }
        let cast = match config.traders {
            Some(traders) => {
                provider.anvil_auto_impersonate_account(true).await?;
                Cast::generated(traders.max(3), config.subjects.max(1))
            }
            None => {
                let accounts = provider.get_accounts().await?;
                let need = config.subjects + 4;
                if accounts.len() < need {
                    return Err(Error::TooFewAccounts {
                        have: accounts.len(),
                        need,
                    });
                }
                // Account 0 deployed the market; the rest trade. Subjects are traders too.
                let traders: Vec<Address> = accounts
                    .iter()
                    .copied()
                    .skip(1)
                    .filter(|a| *a != deployment.fee_destination)
                    .collect();
                Cast {
                    subjects: traders[..config.subjects].to_vec(),
                    traders,
                    generated: false,
                }
            }
        };
        let market = KeyMarket::new(deployment.address, provider);
        let mirror = Mirror {
            supply: HashMap::new(),
            curve: HashMap::new(),
            held: HashMap::new(),
            holders: HashMap::new(),
            basis: HashMap::new(),
            nonces: HashMap::new(),
            protocol_pct: market.protocolFeePercent().call().await?,
            subject_pct: market.subjectFeePercent().call().await?,
            generated: cast.generated,
        };
        Ok(Self {
            cast,
            mirror,
            runs: 0,
        })
    }

    /// Sends `config.trades` trades among this market's traders and subjects (`config`'s own
    /// `traders` and `subjects` are the market's, fixed at `start`), and reports what the
    /// receipts say.
    pub async fn run<P: Provider + AnvilApi<Ethereum>>(
        &mut self,
        provider: &P,
        deployment: &Deployment,
        config: &SimConfig,
    ) -> Result<SimReport> {
        let started = Instant::now();
        let mirror = &mut self.mirror;
        if self.runs > 0 {
            // Others may have traded since (a user's `keymarket buy` in `up`): supplies are read
            // again; who bought what, and at what cost, is remembered. Generated accounts send
            // only from here, so their nonces and holdings stay; dev accounts are read again.
            mirror.supply.clear();
            if !self.cast.generated {
                mirror.held.clear();
                mirror.nonces.clear();
            }
        }
        self.runs += 1;
        if !self.cast.generated {
            // A few dozen accounts: read them all now (generated ones are read when first drawn).
            learn(
                provider,
                deployment,
                &self.cast.subjects,
                &self.cast.traders,
                mirror,
                false,
            )
            .await?;
        }
        let automine = provider.anvil_get_auto_mine().await?;
        provider.anvil_set_auto_mine(false).await?;
        let result = run(provider, deployment, config, &self.cast, mirror, started).await;
        provider.anvil_set_auto_mine(automine).await?;
        result
    }
}

/// Subjects a trader considers for one trade, at most (half by popularity, half at random).
const CANDIDATES: usize = 6;

/// The blocks of a run: (timestamp, trades), in order.
fn schedule(config: &SimConfig, batch_size: u64, last_timestamp: u64) -> Vec<(u64, u64)> {
    match config.profile {
        Profile::Flat => {
            let blocks = config.trades.div_ceil(batch_size);
            (1..=blocks)
                .map(|i| {
                    let n = batch_size.min(config.trades - (i - 1) * batch_size);
                    (last_timestamp + i * config.block_interval_secs, n)
                })
                .collect()
        }
        Profile::Friendtech { days } => {
            let start = last_timestamp + 1;
            let mut blocks = Vec::new();
            for (h, n) in profile::hourly_trades(config.trades, days, start)
                .into_iter()
                .enumerate()
            {
                let pieces = n.div_ceil(batch_size);
                for k in 0..pieces {
                    let at = start + h as u64 * 3600 + (k + 1) * 3600 / (pieces + 1);
                    blocks.push((at, batch_size.min(n - k * batch_size)));
                }
            }
            blocks
        }
    }
}

async fn run<P: Provider + AnvilApi<Ethereum>>(
    provider: &P,
    deployment: &Deployment,
    config: &SimConfig,
    cast: &Cast,
    mirror: &mut Mirror,
    started: Instant,
) -> Result<SimReport> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut report = SimReport::default();
    let block = provider.get_block(alloy::eips::BlockId::latest()).await?;
    let (gas_limit, mut timestamp) = block
        .map(|b| (b.header.gas_limit, b.header.timestamp))
        .unwrap_or((30_000_000, 0));
    // The blocks follow the chain's latest, or the start asked for (a block cannot go back in
    // time: a start before the latest block starts just after it).
    if let Some(start) = config.start {
        timestamp = timestamp.max(start.saturating_sub(1));
    }
    let batch_size = config
        .batch_size
        .clamp(1, (gas_limit / TRADE_GAS).max(1) as usize);

    // Dev accounts: open the subjects that have no keys yet, now. Generated subjects open when
    // first drawn.
    let mut opening = Vec::new();
    if !cast.generated {
        for (i, s) in cast.subjects.iter().enumerate() {
            if mirror.supply[s] == 0 {
                opening.push(open_subject(mirror, deployment, i, *s));
            }
        }
    }
    report.subjects_opened += opening.len() as u64;
    if !opening.is_empty() {
        timestamp += config.block_interval_secs;
        timestamp = send_and_mine(provider, opening, timestamp, &mut report).await?;
    }

    // A history (the friend.tech arc) lets the population arrive; a flat stream has everyone.
    let arrival = matches!(config.profile, Profile::Friendtech { .. }) && cast.generated;
    let bar = progress_bar(config);
    let mut sent_trades = 0u64;
    let mut last_log = Instant::now();
    let blocks = schedule(config, batch_size as u64, timestamp);
    let span = blocks
        .first()
        .zip(blocks.last())
        .map_or((0, 1), |(a, b)| (a.0, (b.0 - a.0).max(1)));
    for (at, n) in blocks {
        let progress = arrival.then(|| sent_trades as f64 / config.trades.max(1) as f64);
        let (traders, subjects) = cast.arrived(progress);
        let exponent = if cast.generated {
            temperament::POPULATION_ZIPF
        } else {
            config.zipf_exponent
        };
        let subject_zipf = Zipf::new(subjects as f64, exponent).expect("valid zipf");
        let trader_zipf = Zipf::new(traders as f64, 0.8).expect("valid zipf");
        // Each trade's subjects in the order the trader considers them: by popularity first,
        // then any arrived subject (most are cheap) for a trader the popular keys are too dear for.
        let draws: Vec<(Vec<usize>, Address)> = (0..n)
            .map(|_| {
                let mut subjects_seen: Vec<usize> = (0..CANDIDATES)
                    .map(|k| {
                        if k < CANDIDATES / 2 {
                            subject_zipf.sample(&mut rng) as usize - 1
                        } else {
                            rng.random_range(0..subjects)
                        }
                    })
                    .collect();
                // Each subject once, in the order considered.
                let mut seen = std::collections::HashSet::new();
                subjects_seen.retain(|s| seen.insert(*s));
                let trader = cast.traders[trader_zipf.sample(&mut rng) as usize - 1];
                (subjects_seen, trader)
            })
            .collect();
        let pairs: Vec<(usize, Address)> = draws
            .iter()
            .flat_map(|(candidates, t)| candidates.iter().map(move |s| (*s, *t)))
            .collect();
        if cast.generated {
            // Keys held from before this run (e.g. `up`'s live rounds after the history): read
            // for the drawn pairs, so holders sell instead of every round only buying.
            let unknown: Vec<(Address, Address)> = pairs
                .iter()
                .map(|(s, t)| (cast.subjects[*s], *t))
                .filter(|k| !mirror.held.contains_key(k))
                .collect();
            learn_held(provider, deployment, &unknown, mirror).await?;
            let touched: Vec<Address> = pairs.iter().map(|(s, _)| cast.subjects[*s]).collect();
            let senders: Vec<Address> = pairs
                .iter()
                .map(|p| p.1)
                .chain(touched.iter().copied())
                .collect();
            learn(provider, deployment, &touched, &senders, mirror, true).await?;
        }
        let start_supply: HashMap<Address, u64> = pairs
            .iter()
            .map(|(s, _)| (cast.subjects[*s], mirror.supply[&cast.subjects[*s]]))
            .collect();
        // Where on friend.tech's arc this block is, by time (a flat stream has no arc).
        let mood = temperament::sell_mood(match config.profile {
            Profile::Friendtech { .. } => Some((at - span.0) as f64 / span.1 as f64),
            Profile::Flat => None,
        });
        let mut batch = Vec::with_capacity(n as usize);
        let mut opened_now = Vec::new();
        for (candidates, trader) in draws {
            for i in candidates {
                let subject = cast.subjects[i];
                if opened_now.contains(&subject) {
                    // Opened in this very block: its other trades wait for the next ones.
                    continue;
                }
                if mirror.supply[&subject] == 0 {
                    batch.push(open_subject(mirror, deployment, i, subject));
                    opened_now.push(subject);
                    break;
                }
                if let Some(p) = plan_trade(
                    &mut rng,
                    config,
                    deployment.address,
                    mirror,
                    &cast.traders[..traders],
                    subject,
                    i,
                    trader,
                    mood,
                ) {
                    batch.push(p);
                    break;
                }
            }
        }
        report.subjects_opened += opened_now.len() as u64;
        cover_worst_case(&mut batch, &start_supply, mirror);
        timestamp = send_and_mine(provider, batch, at.max(timestamp + 1), &mut report).await?;
        sent_trades += n;
        bar.set_position(sent_trades);
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            let rate = report.trades as f64 / started.elapsed().as_secs_f64();
            info!(target: "simulate", sent = sent_trades, trades = report.trades, reverted = report.reverted, block = report.block_range.1, timestamp, rate = format!("{rate:.0}/s"), "progress");
        }
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    if report.unexpected_reverts() > 0 {
        warn!(target: "simulate", unexpected = report.unexpected_reverts(), "some trades reverted that were not built to");
    }
    Ok(report)
}

/// The subject's first key (free), on the steep curve for one subject in `steep_every` (in
/// popularity order: with dev accounts every fourth; in a generated population every
/// twentieth, since a steep curve's top subject would dwarf friend.tech's prices).
fn open_subject(
    mirror: &mut Mirror,
    deployment: &Deployment,
    index: usize,
    subject: Address,
) -> Planned {
    let steep_every = if mirror.generated { 20 } else { 4 };
    let curve_id = if index % steep_every == steep_every - 1 {
        curve::CURVE_STEEP
    } else {
        curve::CURVE_STANDARD
    };
    let call = KeyMarket::buyFirstSharesCall {
        curve: curve_id,
        amount: U256::from(1),
    };
    let tx = trade_tx(
        mirror,
        subject,
        deployment.address,
        U256::ZERO,
        call.abi_encode(),
    );
    mirror.supply.insert(subject, 1);
    mirror.curve.insert(subject, curve_id);
    mirror.held.insert((subject, subject), 1);
    Planned {
        tx,
        expect_revert: false,
        buy: None,
    }
}

fn progress_bar(config: &SimConfig) -> ProgressBar {
    if !config.progress {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(config.trades);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} trades {pos}/{len} [{bar:30}] {per_sec} eta {eta} elapsed {elapsed}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(trades: u64, profile: Profile) -> SimConfig {
        SimConfig {
            trades,
            profile,
            block_interval_secs: 120,
            ..SimConfig::default()
        }
    }

    #[test]
    fn a_friendtech_schedule_spans_its_days_in_order() {
        let start = 1_790_000_000;
        let blocks = schedule(
            &config(20_000, Profile::Friendtech { days: 60 }),
            500,
            start,
        );
        assert_eq!(blocks.iter().map(|b| b.1).sum::<u64>(), 20_000);
        assert!(
            blocks.windows(2).all(|w| w[0].0 < w[1].0),
            "timestamps increase"
        );
        assert!(blocks.iter().all(|b| b.1 > 0 && b.1 <= 500));
        let (first, last) = (blocks[0].0, blocks.last().unwrap().0);
        assert!(first > start && last < start + 60 * 86_400 + 1);
        let mut days: Vec<u64> = blocks.iter().map(|b| b.0 / 86_400).collect();
        days.dedup();
        assert!(days.len() >= 59, "{} days", days.len());
    }

    #[test]
    fn a_flat_schedule_is_one_block_per_interval() {
        let blocks = schedule(&config(1_001, Profile::Flat), 500, 1_000);
        assert_eq!(blocks, vec![(1_120, 500), (1_240, 500), (1_360, 1)]);
    }
}
