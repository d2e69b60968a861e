//! anvil + KeyMarket + simulator: the chain's logs, the contract's views and the actual ETH
//! receipts agree with each other to the wei.

use std::collections::{HashMap, HashSet};

use alloy::{
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder, ext::AnvilApi},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use keymarket_contracts::{DeployConfig, KeyMarket, TRADE_TOPIC, curve};

use crate::common::anvil;
use keymarket_simulate::SimConfig;

#[tokio::test(flavor = "multi_thread")]
async fn simulated_trading_matches_contract_views_and_eth_receipts() {
    let anvil = anvil();
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let accounts = provider.get_accounts().await.unwrap();
    // A fee destination that never trades and starts empty, so its balance is exactly its receipts.
    let fee_destination = Address::repeat_byte(0xfe);
    let deployment = keymarket_contracts::deploy(
        &provider,
        &DeployConfig::friendtech_fees(accounts[0], fee_destination),
    )
    .await
    .unwrap();
    assert_eq!(deployment.chain_id, 31337);

    let config = SimConfig {
        trades: 1_500,
        seed: 7,
        subjects: 12,
        batch_size: 250,
        progress: false,
        ..SimConfig::default()
    };
    let report = keymarket_simulate::simulate(&provider, &deployment, &config)
        .await
        .unwrap();
    assert_eq!(
        report.unexpected_reverts(),
        0,
        "only trades built to revert may revert: {:?}",
        report.unexpected_revert_txs
    );
    assert!(
        report.expected_reverts > 0,
        "the simulation includes failing trades"
    );
    assert!(
        report.trades >= 1_400,
        "most trades land: {}",
        report.trades
    );
    assert!(
        report.sells > 100 && report.buys > report.sells,
        "a mix of buys and sells"
    );

    // Recompute everything from the chain's logs alone.
    let filter = Filter::new()
        .address(deployment.address)
        .from_block(deployment.deploy_block);
    let logs = provider.get_logs(&filter).await.unwrap();
    let market = KeyMarket::new(deployment.address, &provider);
    let mut supply: HashMap<Address, U256> = HashMap::new();
    let mut held: HashMap<(Address, Address), U256> = HashMap::new();
    let mut subject_fees: HashMap<Address, U256> = HashMap::new();
    let mut credits: HashMap<Address, U256> = HashMap::new();
    let mut curves: HashMap<Address, u8> = HashMap::new();
    let (mut trades, mut protocol, mut referral, mut buy_volume, mut sell_volume) =
        (0u64, U256::ZERO, U256::ZERO, U256::ZERO, U256::ZERO);
    for log in &logs {
        let topic0 = log.topics()[0];
        if topic0 == TRADE_TOPIC {
            let t = KeyMarket::Trade::decode_log_data(log.data()).unwrap();
            trades += 1;
            let h = held.entry((t.subject, t.trader)).or_default();
            if t.isBuy {
                *h += t.shareAmount;
                buy_volume += t.ethAmount;
            } else {
                *h -= t.shareAmount;
                sell_volume += t.ethAmount;
            }
            supply.insert(t.subject, t.supply);
            protocol += t.protocolEthAmount;
            *subject_fees.entry(t.subject).or_default() += t.subjectEthAmount;
        } else if topic0 == KeyMarket::ReferralFeePaid::SIGNATURE_HASH {
            let e = KeyMarket::ReferralFeePaid::decode_log_data(log.data()).unwrap();
            referral += e.amount;
            *credits.entry(e.referrer).or_default() += e.amount;
        } else if topic0 == KeyMarket::SubjectCreated::SIGNATURE_HASH {
            let e = KeyMarket::SubjectCreated::decode_log(&log.inner).unwrap();
            curves.insert(e.subject, e.curve);
        }
    }
    assert_eq!(
        trades, report.trades,
        "simulator's receipt tally equals the logs"
    );
    assert_eq!(buy_volume, report.buy_volume);
    assert_eq!(sell_volume, report.sell_volume);
    assert_eq!(protocol, report.protocol_fees);
    assert_eq!(referral, report.referral_fees);
    assert!(
        curves.values().any(|c| *c == curve::CURVE_STEEP),
        "some subjects chose the steep curve"
    );

    // The contract's views equal the logs' account, and the Rust curve equals the contract's.
    let mut reserve = U256::ZERO;
    for (subject, s) in &supply {
        assert_eq!(
            market.sharesSupply(*subject).call().await.unwrap(),
            *s,
            "supply of {subject}"
        );
        let c = market.subjectCurve(*subject).call().await.unwrap();
        assert_eq!(c, curves[subject]);
        let s64: u64 = s.to();
        reserve += curve::reserve(c, s64);
        assert_eq!(
            market
                .getBuyPrice(*subject, U256::from(3))
                .call()
                .await
                .unwrap(),
            curve::price(c, s64, 3)
        );
    }
    for ((subject, trader), h) in &held {
        assert_eq!(
            market
                .sharesBalance(*subject, *trader)
                .call()
                .await
                .unwrap(),
            *h,
            "balance"
        );
    }

    // Fee receipts: the protocol fees minus referrals accrued in the market (nothing was pushed);
    // subjects and referrers can withdraw exactly what the events say; the contract holds the
    // curve reserve plus the accrued protocol fees plus everything withdrawable, to the wei.
    let accrued = market.accruedProtocolFees().call().await.unwrap();
    assert_eq!(accrued, protocol - referral, "accrued protocol fees");
    assert_eq!(
        provider.get_balance(fee_destination).await.unwrap(),
        U256::ZERO,
        "nothing pushed to the destination"
    );
    let mut owed = U256::ZERO;
    let everyone: HashSet<Address> = subject_fees.keys().chain(credits.keys()).copied().collect();
    for a in everyone {
        let expected = subject_fees.get(&a).copied().unwrap_or_default()
            + credits.get(&a).copied().unwrap_or_default();
        assert_eq!(
            market.withdrawable(a).call().await.unwrap(),
            expected,
            "withdrawable of {a}"
        );
        owed += expected;
    }
    assert_eq!(
        market.withdrawable(fee_destination).call().await.unwrap(),
        U256::ZERO,
        "no deferred pushes"
    );
    assert_eq!(
        provider.get_balance(deployment.address).await.unwrap(),
        reserve + owed + accrued,
        "contract balance"
    );
    // Anyone flushes the protocol fees to the destination: it receives exactly the accrual.
    let receipt = market
        .flushProtocolFees()
        .from(accounts[1])
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    assert_eq!(
        provider.get_balance(fee_destination).await.unwrap(),
        accrued,
        "destination receipts after the flush"
    );
    assert_eq!(
        market.accruedProtocolFees().call().await.unwrap(),
        U256::ZERO
    );

    // A subject withdraws its fees: its balance rises by exactly that amount (gas price 0 is not
    // assumed: the receipt's fee is accounted).
    let (top, fees) = subject_fees
        .iter()
        .max_by_key(|(_, f)| **f)
        .map(|(a, f)| (*a, *f))
        .unwrap();
    let owed_top = fees + credits.get(&top).copied().unwrap_or_default();
    let before = provider.get_balance(top).await.unwrap();
    let receipt = market
        .withdraw()
        .from(top)
        .send()
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    assert!(receipt.status());
    let gas = U256::from(receipt.gas_used) * U256::from(receipt.effective_gas_price);
    assert_eq!(
        provider.get_balance(top).await.unwrap() + gas - before,
        owed_top,
        "withdrawal pays what was owed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn simulate_rejects_a_deployment_from_another_chain() {
    let anvil = anvil();
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    let accounts = provider.get_accounts().await.unwrap();
    let mut deployment = keymarket_contracts::deploy(
        &provider,
        &DeployConfig::friendtech_fees(accounts[0], accounts[1]),
    )
    .await
    .unwrap();
    deployment.chain_id = 1;
    let err = keymarket_simulate::simulate(
        &provider,
        &deployment,
        &SimConfig {
            progress: false,
            ..Default::default()
        },
    )
    .await
    .unwrap_err();
    assert!(err.to_string().contains("chain 1"), "{err}");
}

/// A generated market over friend.tech's 60-day arc on a fresh anvil whose clock starts at a
/// fixed time, started at a fixed time, kept running for what follows.
struct History {
    anvil: alloy::node_bindings::AnvilInstance,
    deployment: keymarket_contracts::Deployment,
    config: SimConfig,
    /// The market's traders and holdings, for runs after the history.
    simulation: keymarket_simulate::Simulation,
    report: keymarket_simulate::SimReport,
}

impl History {
    fn provider(
        &self,
    ) -> impl Provider + alloy::providers::ext::AnvilApi<alloy::network::Ethereum> + use<> {
        ProviderBuilder::new().connect_http(self.anvil.endpoint_url())
    }

    /// Every log of the chain.
    async fn logs(&self) -> Vec<alloy::rpc::types::Log> {
        self.provider()
            .get_logs(&Filter::new().from_block(0))
            .await
            .unwrap()
    }
}

/// `trades` trades of friend.tech's arc, one trader per 12 trades and one subject per four
/// traders (`up`'s defaults), with `seed`.
async fn calibrated_history(trades: u64, seed: u64) -> History {
    let anvil = crate::common::anvil_at(10)
        .args(["--timestamp", "1780000000"])
        .try_spawn()
        .expect("anvil starts");
    let provider = ProviderBuilder::new().connect_http(anvil.endpoint_url());
    // The deployment's blocks one second apart from the genesis, not at the wall clock's time
    // since anvil started (a loaded machine deployed a second later, and the chains differed).
    provider
        .anvil_set_block_timestamp_interval(1)
        .await
        .unwrap();
    let accounts = provider.get_accounts().await.unwrap();
    let deployment = keymarket_contracts::deploy(
        &provider,
        &DeployConfig::friendtech_fees(accounts[0], Address::repeat_byte(0xfe)),
    )
    .await
    .unwrap();
    let traders = (trades / 12) as usize;
    let config = SimConfig {
        trades,
        seed,
        traders: Some(traders),
        subjects: traders / 4,
        profile: keymarket_simulate::Profile::Friendtech { days: 60 },
        start: Some(1_780_000_100),
        progress: false,
        ..SimConfig::default()
    };
    let mut simulation = keymarket_simulate::Simulation::start(&provider, &deployment, &config)
        .await
        .unwrap();
    let report = simulation
        .run(&provider, &deployment, &config)
        .await
        .unwrap();
    assert_eq!(
        report.unexpected_reverts(),
        0,
        "{:?}",
        report.unexpected_revert_txs
    );
    History {
        anvil,
        deployment,
        config,
        simulation,
        report,
    }
}

fn assert_in_band(report: &keymarket_simulate::SimReport, what: &str) {
    let calibration = keymarket_simulate::calibration::Calibration::of(report);
    println!("{what}:\n{}", calibration.table());
    let outside: Vec<_> = calibration.outside(&[]).iter().map(|f| f.key).collect();
    assert!(
        outside.is_empty(),
        "{what}: out of band: {outside:?}\n{}",
        calibration.table()
    );
}

/// The default history (`up`'s: 20,000 trades, one trader per 12 trades, one subject per four
/// traders, 60 days) lands inside every band calibrated against friend.tech's figures: prices
/// per trade, the top subject's supply and price, how concentrated the market is, the buy/sell
/// balance, net selling after the peak, TVL against protocol revenue (docs/simulator.md). Then
/// `up`'s live stream (its default: one trade every 600 s, a block at a time) runs on for a
/// simulated day: at the rate of the history's last days, with their buy/sell balance, no
/// subject running away, the day below the peak day, and every figure still in band.
#[tokio::test(flavor = "multi_thread")]
async fn the_default_history_and_a_day_of_live_trading_land_in_friendtechs_bands() {
    let mut history = calibrated_history(20_000, 1).await;
    let mut report = history.report.clone();
    assert_in_band(&report, "the history");

    // The last three whole days of the history (its last day may be cut short).
    let last_day = *report.days.keys().next_back().unwrap();
    let recent: Vec<_> = report
        .days
        .range(last_day - 3..last_day)
        .map(|(_, d)| d)
        .collect();
    let recent_trades = recent.iter().map(|d| d.buys + d.sells).sum::<u64>() as f64 / 3.0;
    let recent_buy_share =
        recent.iter().map(|d| d.buys).sum::<u64>() as f64 / (3.0 * recent_trades);
    let peak_day = report
        .days
        .values()
        .map(|d| d.buys + d.sells)
        .max()
        .unwrap();

    let provider = history.provider();
    let end = provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    let (live_trades, interval) = (1, 600);
    let mut live = keymarket_simulate::SimReport::default();
    for round in 1..=86_400 / interval {
        let config = history
            .config
            .live_round(live_trades, round, end + round * interval);
        let r = history
            .simulation
            .run(&provider, &history.deployment, &config)
            .await
            .unwrap();
        assert_eq!(r.unexpected_reverts(), 0, "{:?}", r.unexpected_revert_txs);
        live.absorb(&r);
    }
    let live_buy_share = live.buys as f64 / live.trades as f64;
    println!(
        "live: {} trades in a day ({} buys), the history's last days: {recent_trades:.0} a day, buy share {recent_buy_share:.2}; peak day {peak_day}",
        live.trades, live.buys
    );
    let rate = live.trades as f64 / recent_trades;
    assert!(
        (0.5..=2.0).contains(&rate),
        "live rate {rate:.2}× the last days'"
    );
    assert!(
        (live_buy_share - recent_buy_share).abs() <= 0.15,
        "live buy share {live_buy_share:.2} against the last days' {recent_buy_share:.2}"
    );
    assert!(live.trades < peak_day, "a live day outsold the peak day");
    // No subject runs away: the most any subject's supply grew in the day.
    let grew = live
        .subjects
        .iter()
        .map(|(s, t)| t.supply as i64 - report.subjects.get(s).map_or(0, |h| h.supply as i64))
        .max()
        .unwrap();
    assert!(grew <= 5, "a subject's supply grew by {grew} in a live day");
    report.absorb(&live);
    assert_in_band(&report, "the history and a live day");
}

/// The same seed and start on a fresh chain give the same chain: every log, block and time.
#[tokio::test(flavor = "multi_thread")]
async fn the_same_seed_and_start_give_the_same_chain() {
    let (a, b) = tokio::join!(calibrated_history(1_200, 9), calibrated_history(1_200, 9));
    assert!(a.report.trades > 1_000, "{:?}", a.report);
    assert_eq!(
        (a.report.trades, a.report.buy_volume),
        (b.report.trades, b.report.buy_volume)
    );
    let (logs_a, logs_b) = (a.logs().await, b.logs().await);
    assert_eq!(logs_a.len(), logs_b.len());
    for (x, y) in logs_a.iter().zip(&logs_b) {
        assert_eq!(
            (x.block_number, x.block_timestamp, x.log_index, &x.inner),
            (y.block_number, y.block_timestamp, y.log_index, &y.inner)
        );
    }
}
