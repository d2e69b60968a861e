//! Realistic friend.tech-style trading against a KeyMarket deployment on a dev chain.
//!
//! Traders and subjects are the node's unlocked accounts (anvil's dev accounts), so the node
//! signs and no keys are handled here. Subject popularity and trader activity follow power laws
//! (Zipf), as on friend.tech; most trades are single-key buys and sells, some are multi-key, some
//! name a referrer, and a small share is built to revert (underpaid, oversold, expired,
//! unauthorised first key). Transactions are sent in JSON-RPC batches and mined explicitly, many
//! per block, with block timestamps spread over simulated days. Every mined block's receipts are
//! read back, so the report is what the chain did, not what was intended.
//!
//! Not for: production chains (it needs unlocked accounts and `evm_mine`).

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use alloy::{
    network::Ethereum,
    primitives::{Address, B256, U256},
    providers::{Provider, ext::AnvilApi},
    sol_types::SolCall,
};
use indicatif::{ProgressBar, ProgressStyle};
use keymarket_contracts::{Deployment, KeyMarket, curve};
use rand::{SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use tracing::{info, warn};

use crate::{
    mine::send_and_mine,
    plan::{Mirror, Planned, TRADE_GAS, cover_worst_case, plan_trade, trade_tx},
};

mod mine;
mod plan;

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
    /// Number of subjects (each must be an unlocked account).
    pub subjects: usize,
    /// Transactions per block (capped by the block gas limit).
    pub batch_size: usize,
    /// Seconds between simulated blocks (spreads the trades over days for daily series).
    pub block_interval_secs: u64,
    /// Share of trades built to revert, in parts per thousand.
    pub fail_permille: u32,
    /// Share of buys that name a referrer, in parts per thousand.
    pub referral_permille: u32,
    /// Zipf exponent of subject popularity (friend.tech's is heavy-tailed: ~1.1).
    pub zipf_exponent: f64,
    /// Show a progress bar on stderr.
    pub progress: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            trades: 1_000,
            seed: 1,
            subjects: 40,
            batch_size: 500,
            block_interval_secs: 120,
            fail_permille: 5,
            referral_permille: 100,
            zipf_exponent: 1.1,
            progress: true,
        }
    }
}

/// What the chain did, read back from the receipts of the mined blocks.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SimReport {
    /// Transactions sent (trades plus subject openings).
    pub sent: u64,
    /// Trade events emitted.
    pub trades: u64,
    /// Buy events.
    pub buys: u64,
    /// Sell events.
    pub sells: u64,
    /// Transactions that reverted.
    pub reverted: u64,
    /// Transactions built to revert.
    pub expected_reverts: u64,
    /// Subjects opened by this run.
    pub subjects_opened: u64,
    /// Blocks mined.
    pub blocks: u64,
    /// First and last block mined.
    pub block_range: (u64, u64),
    /// Σ ethAmount over buys, wei.
    pub buy_volume: U256,
    /// Σ ethAmount over sells, wei.
    pub sell_volume: U256,
    /// Σ protocolEthAmount, wei.
    pub protocol_fees: U256,
    /// Σ subjectEthAmount, wei.
    pub subject_fees: U256,
    /// Σ referral fees credited, wei.
    pub referral_fees: U256,
    /// The first few transactions that reverted without being built to (for diagnosis).
    pub unexpected_revert_txs: Vec<B256>,
    /// Wall-clock time of the run.
    #[serde(skip)]
    pub elapsed: Duration,
}

impl SimReport {
    /// Trade events per second of wall-clock time.
    pub fn trades_per_sec(&self) -> f64 {
        self.trades as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }

    /// Reverts that were not built to revert: should be zero.
    pub fn unexpected_reverts(&self) -> u64 {
        self.reverted.saturating_sub(self.expected_reverts)
    }
}

/// Runs the simulation: opens the subjects that have no keys yet, then sends `config.trades`
/// trades in mined batches, and reports what the receipts say.
pub async fn simulate<P: Provider + AnvilApi<Ethereum>>(
    provider: &P,
    deployment: &Deployment,
    config: &SimConfig,
) -> Result<SimReport> {
    let started = Instant::now();
    let chain_id = provider.get_chain_id().await?;
    if chain_id != deployment.chain_id {
        return Err(Error::WrongChain {
            deployment: deployment.chain_id,
            rpc: chain_id,
        });
    }
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
    let subjects: Vec<Address> = traders[..config.subjects].to_vec();
    let market = KeyMarket::new(deployment.address, provider);

    let mut mirror = Mirror {
        supply: HashMap::new(),
        curve: HashMap::new(),
        held: HashMap::new(),
        nonces: HashMap::new(),
        protocol_pct: market.protocolFeePercent().call().await?,
        subject_pct: market.subjectFeePercent().call().await?,
    };
    for s in &subjects {
        let supply: u64 = market.sharesSupply(*s).call().await?.to();
        let curve = market.subjectCurve(*s).call().await?;
        mirror.supply.insert(*s, supply);
        mirror.curve.insert(*s, curve);
    }

    for t in &traders {
        mirror
            .nonces
            .insert(*t, provider.get_transaction_count(*t).pending().await?);
    }

    let automine = provider.anvil_get_auto_mine().await?;
    provider.anvil_set_auto_mine(false).await?;
    let result = run(
        provider,
        deployment,
        config,
        &traders,
        &subjects,
        &mut mirror,
        started,
    )
    .await;
    provider.anvil_set_auto_mine(automine).await?;
    result
}

async fn run<P: Provider + AnvilApi<Ethereum>>(
    provider: &P,
    deployment: &Deployment,
    config: &SimConfig,
    traders: &[Address],
    subjects: &[Address],
    mirror: &mut Mirror,
    started: Instant,
) -> Result<SimReport> {
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut report = SimReport::default();
    let block = provider.get_block(alloy::eips::BlockId::latest()).await?;
    let (gas_limit, mut timestamp) = block
        .map(|b| (b.header.gas_limit, b.header.timestamp))
        .unwrap_or((30_000_000, 0));
    let batch_size = config
        .batch_size
        .clamp(1, (gas_limit / TRADE_GAS).max(1) as usize);

    // Open the subjects that have no keys yet; every fourth picks the steep curve.
    let mut opening = Vec::new();
    for (i, s) in subjects.iter().enumerate() {
        if mirror.supply[s] != 0 {
            continue;
        }
        let curve_id = if i % 4 == 3 {
            curve::CURVE_STEEP
        } else {
            curve::CURVE_STANDARD
        };
        let call = KeyMarket::buyFirstSharesCall {
            curve: curve_id,
            amount: U256::from(1),
        };
        opening.push(Planned {
            tx: trade_tx(
                mirror,
                *s,
                deployment.address,
                U256::ZERO,
                call.abi_encode(),
            ),
            expect_revert: false,
            buy: None,
        });
        mirror.supply.insert(*s, 1);
        mirror.curve.insert(*s, curve_id);
        mirror.held.insert((*s, *s), 1);
        report.subjects_opened += 1;
    }
    if !opening.is_empty() {
        timestamp += config.block_interval_secs;
        send_and_mine(provider, opening, timestamp, &mut report).await?;
    }

    let subject_zipf = Zipf::new(subjects.len() as f64, config.zipf_exponent).expect("valid zipf");
    let trader_zipf = Zipf::new(traders.len() as f64, 0.8).expect("valid zipf");
    let bar = progress_bar(config);
    let mut sent_trades = 0u64;
    let mut last_log = Instant::now();
    while sent_trades < config.trades {
        let n = (config.trades - sent_trades).min(batch_size as u64);
        let mut batch = Vec::with_capacity(n as usize);
        let start_supply = mirror.supply.clone();
        for _ in 0..n {
            let subject = subjects[subject_zipf.sample(&mut rng) as usize - 1];
            let trader = traders[trader_zipf.sample(&mut rng) as usize - 1];
            batch.push(plan_trade(
                &mut rng,
                config,
                deployment.address,
                mirror,
                traders,
                subject,
                trader,
            ));
        }
        cover_worst_case(&mut batch, &start_supply, mirror);
        timestamp += config.block_interval_secs;
        send_and_mine(provider, batch, timestamp, &mut report).await?;
        sent_trades += n;
        bar.set_position(sent_trades);
        if last_log.elapsed() >= Duration::from_secs(10) {
            last_log = Instant::now();
            let rate = report.trades as f64 / started.elapsed().as_secs_f64();
            info!(target: "simulate", sent = sent_trades, trades = report.trades, reverted = report.reverted, block = report.block_range.1, rate = format!("{rate:.0}/s"), "progress");
        }
    }
    bar.finish_and_clear();
    report.elapsed = started.elapsed();
    if report.unexpected_reverts() > 0 {
        warn!(target: "simulate", unexpected = report.unexpected_reverts(), "some trades reverted that were not built to");
    }
    Ok(report)
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
