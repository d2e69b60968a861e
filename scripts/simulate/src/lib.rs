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
    network::{Ethereum, TransactionBuilder},
    primitives::{Address, B256, U256},
    providers::{Provider, ext::AnvilApi},
    rpc::client::BatchRequest,
    rpc::types::{TransactionRequest, anvil::MineOptions},
    sol_types::{SolCall, SolEvent},
};
use indicatif::{ProgressBar, ProgressStyle};
use keymarket_contracts::{Deployment, KeyMarket, curve};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Zipf};
use serde::Serialize;
use tracing::{info, warn};

/// Gas limit sent with every trade: above the costliest path (a new holder's referral buy with a
/// refund), so no estimation round trip is needed and reverting trades are still mined.
const TRADE_GAS: u64 = 160_000;

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

/// One trade to send.
struct Planned {
    tx: TransactionRequest,
    expect_revert: bool,
    /// For a buy: (subject, amount, referral?), so its payment can be raised to the batch's
    /// worst case before sending.
    buy: Option<(Address, u64, bool)>,
}

/// The simulator's mirror of the chain: enough to build valid trades and price them.
struct Mirror {
    supply: HashMap<Address, u64>,
    curve: HashMap<Address, u8>,
    held: HashMap<(Address, Address), u64>,
    /// Next nonce per sender: assigned here, because a node filling nonces for a batch of
    /// transactions from one sender may hand out the same one twice.
    nonces: HashMap<Address, u64>,
    protocol_pct: U256,
    subject_pct: U256,
}

impl Mirror {
    fn cost_at(&self, subject: Address, supply: u64, amount: u64) -> U256 {
        let price = curve::price(self.curve[&subject], supply, amount);
        price + curve::fee(price, self.protocol_pct) + curve::fee(price, self.subject_pct)
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

/// A node may execute a batch's transactions in another order than they were planned in, so
/// each buy pays what it would cost if every other buy of its subject in the batch came first;
/// the contract refunds the excess.
fn cover_worst_case(batch: &mut [Planned], start_supply: &HashMap<Address, u64>, mirror: &Mirror) {
    let mut bought: HashMap<Address, u64> = HashMap::new();
    for p in batch.iter() {
        if let Some((subject, amount, _)) = p.buy {
            *bought.entry(subject).or_default() += amount;
        }
    }
    for p in batch.iter_mut() {
        let Some((subject, amount, referral)) = p.buy else {
            continue;
        };
        let worst = start_supply[&subject] + bought[&subject] - amount;
        let value = mirror.cost_at(subject, worst, amount);
        p.tx.value = Some(value);
        if referral {
            let mut call =
                KeyMarket::buySharesBoundedCall::abi_decode(p.tx.input.input().expect("input"))
                    .expect("planned bounded buy");
            call.maxCost = value;
            p.tx.input = call.abi_encode().into();
        }
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

fn trade_tx(
    mirror: &mut Mirror,
    from: Address,
    to: Address,
    value: U256,
    input: Vec<u8>,
) -> TransactionRequest {
    let nonce = mirror.nonces.entry(from).or_default();
    let tx = TransactionRequest::default().with_nonce(*nonce);
    *nonce += 1;
    tx.with_from(from)
        .with_to(to)
        .with_value(value)
        .with_input(input)
        .with_gas_limit(TRADE_GAS)
}

/// Chooses one trade and updates the mirror as if it succeeds (unless it is built to revert).
fn plan_trade(
    rng: &mut StdRng,
    config: &SimConfig,
    market: Address,
    mirror: &mut Mirror,
    traders: &[Address],
    subject: Address,
    trader: Address,
) -> Planned {
    if rng.random_range(0..1000) < config.fail_permille {
        return plan_failure(rng, market, mirror, subject, trader);
    }
    let held = mirror.held.get(&(subject, trader)).copied().unwrap_or(0);
    // The subject keeps its first key. Holders sell more often as the price climbs, which keeps
    // supplies in friend.tech's range (hundreds, rarely thousands) instead of running away.
    let sellable = if trader == subject {
        held.saturating_sub(1)
    } else {
        held
    };
    let supply = mirror.supply[&subject];
    let sell_permille = 300 + 650 * supply / (supply + 400);
    if sellable > 0 && rng.random_range(0..1000) < sell_permille {
        let amount = if rng.random_range(0..10) == 0 {
            rng.random_range(1..=sellable)
        } else {
            1
        };
        let call = KeyMarket::sellSharesCall {
            subject,
            amount: U256::from(amount),
        };
        *mirror.held.get_mut(&(subject, trader)).expect("held") -= amount;
        *mirror.supply.get_mut(&subject).expect("subject") -= amount;
        return Planned {
            tx: trade_tx(mirror, trader, market, U256::ZERO, call.abi_encode()),
            expect_revert: false,
            buy: None,
        };
    }
    let amount = match rng.random_range(0..100) {
        0..=84 => 1,
        85..=96 => rng.random_range(2..=3),
        _ => rng.random_range(4..=10),
    };
    // The payment is raised to the batch's worst case in `cover_worst_case`.
    let value = U256::ZERO;
    let referral = rng.random_range(0..1000) < config.referral_permille;
    let input = if referral {
        let mut referrer = traders[rng.random_range(0..traders.len())];
        if referrer == trader {
            referrer = traders
                [(traders.iter().position(|t| *t == trader).unwrap_or(0) + 1) % traders.len()];
        }
        KeyMarket::buySharesBoundedCall {
            subject,
            amount: U256::from(amount),
            maxCost: value,
            referrer,
            deadline: U256::MAX,
        }
        .abi_encode()
    } else {
        KeyMarket::buySharesCall {
            subject,
            amount: U256::from(amount),
        }
        .abi_encode()
    };
    *mirror.held.entry((subject, trader)).or_default() += amount;
    *mirror.supply.get_mut(&subject).expect("subject") += amount;
    Planned {
        tx: trade_tx(mirror, trader, market, value, input),
        expect_revert: false,
        buy: Some((subject, amount, referral)),
    }
}

/// A trade built to revert, one of friend.tech's failure modes.
fn plan_failure(
    rng: &mut StdRng,
    market: Address,
    mirror: &mut Mirror,
    subject: Address,
    trader: Address,
) -> Planned {
    let input = match rng.random_range(0..4) {
        // Underpaid buy: InsufficientPayment (supply >= 1, so the price is not zero).
        0 => KeyMarket::buySharesCall {
            subject,
            amount: U256::from(2),
        }
        .abi_encode(),
        // Selling more than held: InsufficientKeys or CannotSellLastKey.
        1 => {
            let held = mirror.held.get(&(subject, trader)).copied().unwrap_or(0);
            KeyMarket::sellSharesCall {
                subject,
                amount: U256::from(held + 1_000_000),
            }
            .abi_encode()
        }
        // A bounded buy past its deadline: DeadlineExpired.
        2 => KeyMarket::buySharesBoundedCall {
            subject,
            amount: U256::from(1),
            maxCost: U256::MAX,
            referrer: Address::ZERO,
            deadline: U256::from(1),
        }
        .abi_encode(),
        // Buying the first key of someone else: OnlySubjectCanBuyFirstKey.
        _ => {
            let stranger = Address::from_word(B256::from(U256::from(
                0xdead_0000u64 + rng.random_range(0..1000u64),
            )));
            KeyMarket::buySharesCall {
                subject: stranger,
                amount: U256::from(1),
            }
            .abi_encode()
        }
    };
    Planned {
        tx: trade_tx(mirror, trader, market, U256::ZERO, input),
        expect_revert: true,
        buy: None,
    }
}

/// Sends a batch in one JSON-RPC request, mines it (at `timestamp`), and tallies the receipts.
async fn send_and_mine<P: Provider + AnvilApi<Ethereum>>(
    provider: &P,
    batch: Vec<Planned>,
    timestamp: u64,
    report: &mut SimReport,
) -> Result<()> {
    let mut rpc = BatchRequest::new(provider.client());
    let mut waiters = Vec::with_capacity(batch.len());
    for p in &batch {
        waiters.push(rpc.add_call::<_, B256>("eth_sendTransaction", &(p.tx.clone(),))?);
        report.expected_reverts += u64::from(p.expect_revert);
    }
    rpc.send().await?;
    let mut expected = std::collections::HashSet::new();
    for (w, p) in waiters.into_iter().zip(&batch) {
        let hash = w.await?;
        if p.expect_revert {
            expected.insert(hash);
        }
    }
    report.sent += batch.len() as u64;

    let mut pending = batch.len();
    let mut rounds = 0;
    while pending > 0 {
        provider
            .evm_mine(Some(MineOptions::Timestamp(Some(timestamp + rounds))))
            .await?;
        let number = provider.get_block_number().await?;
        let receipts = provider
            .get_block_receipts(number.into())
            .await?
            .unwrap_or_default();
        pending = pending.saturating_sub(receipts.len());
        tally(&receipts, &expected, report);
        report.blocks += 1;
        if report.block_range.0 == 0 {
            report.block_range.0 = number;
        }
        report.block_range.1 = number;
        rounds += 1;
        if rounds > 64 && receipts.is_empty() {
            return Err(Error::Unmined(pending));
        }
    }
    Ok(())
}

fn tally(
    receipts: &[alloy::rpc::types::TransactionReceipt],
    expected_reverts: &std::collections::HashSet<B256>,
    report: &mut SimReport,
) {
    for r in receipts {
        if !r.status() {
            report.reverted += 1;
            if !expected_reverts.contains(&r.transaction_hash)
                && report.unexpected_revert_txs.len() < 10
            {
                report.unexpected_revert_txs.push(r.transaction_hash);
            }
            continue;
        }
        for log in r.inner.logs() {
            let Some(topic0) = log.topics().first() else {
                continue;
            };
            if *topic0 == KeyMarket::Trade::SIGNATURE_HASH {
                if let Ok(t) = KeyMarket::Trade::decode_log_data(log.data()) {
                    report.trades += 1;
                    if t.isBuy {
                        report.buys += 1;
                        report.buy_volume += t.ethAmount;
                    } else {
                        report.sells += 1;
                        report.sell_volume += t.ethAmount;
                    }
                    report.protocol_fees += t.protocolEthAmount;
                    report.subject_fees += t.subjectEthAmount;
                }
            } else if *topic0 == KeyMarket::ReferralFeePaid::SIGNATURE_HASH
                && let Ok(e) = KeyMarket::ReferralFeePaid::decode_log_data(log.data())
            {
                report.referral_fees += e.amount;
            }
        }
    }
}
