//! The API tests' one market, built once per test binary run and shared by every test of
//! `api::numbers`: a chain with 1,500 simulated trades and two fee changes, indexed into SQLite
//! and PostgreSQL and served by the API on real sockets, with an independent recomputation of
//! the numbers from the chain's logs.
//!
//! Each test runs on its own thread with its own tokio runtime, which ends with the test; so the
//! servers, their database pools and the chain's anvil live on a thread of their own, with a
//! runtime of its own that keeps serving until the process ends (anvil dies with it: see
//! [`LifelongAnvil`]). Tests reach them only through URLs and plain data, never through a
//! client or pool made on that runtime.

use std::{
    collections::{HashMap, HashSet},
    sync::OnceLock,
};

use alloy::{
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder, RootProvider},
    rpc::types::Log,
    sol_types::SolEvent,
};
use keymarket_api::AppState;
use keymarket_contracts::{KeyMarket, TRADE_TOPIC};
use keymarket_indexer::StoreWriter;

use super::serve_state;
use crate::common::{AverageCost, Chain, Db, LifelongAnvil, average_cost, fresh_db};

/// A market's concentration as the API shows it: (subjects, volume in wei, top-10 share, HHI),
/// shares with 6 decimals truncated.
pub(crate) type Concentration = (i64, String, Option<String>, Option<String>);

/// The shared market: where it is served, and what the chain's logs say its numbers are.
pub(crate) struct Market {
    /// The chain's JSON-RPC endpoint.
    pub(crate) rpc_url: String,
    /// The market contract.
    pub(crate) address: Address,
    /// When the scheduled protocol fee increase is due.
    pub(crate) effective_at: U256,
    /// The chain's logs of the market (taken before anything was indexed).
    pub(crate) logs: Vec<Log>,
    /// The numbers recomputed from those logs.
    pub(crate) expected: Expected,
    /// The API over SQLite, indexed to the head before the fee increase was due.
    sqlite: String,
    /// The API over PostgreSQL: indexed as SQLite was, then again once a block past the fee
    /// increase's due time was mined.
    postgres: String,
    /// The API over a second PostgreSQL database indexed only to the head before the increase
    /// was due: what `postgres` showed before its second run.
    postgres_before_due: String,
}

impl Market {
    /// The API's base URL over `kind`.
    pub(crate) fn base(&self, kind: Db) -> &str {
        match kind {
            Db::Sqlite => &self.sqlite,
            Db::Postgres => &self.postgres,
        }
    }

    /// The API's base URL over `kind`, indexed only to before the fee increase was due.
    pub(crate) fn base_before_due(&self, kind: Db) -> &str {
        match kind {
            Db::Sqlite => &self.sqlite,
            Db::Postgres => &self.postgres_before_due,
        }
    }

    /// A provider of the chain, made on the caller's runtime.
    pub(crate) fn provider(&self) -> RootProvider {
        ProviderBuilder::new()
            .connect_http(self.rpc_url.parse().unwrap())
            .root()
            .clone()
    }
}

/// The numbers of the market, recomputed from the chain's logs alone.
pub(crate) struct Expected {
    pub(crate) trades: i64,
    pub(crate) traders: HashSet<Address>,
    pub(crate) subjects: HashSet<Address>,
    pub(crate) buy: U256,
    pub(crate) sell: U256,
    pub(crate) protocol: U256,
    pub(crate) subject: U256,
    /// Trades per day (days since 1970).
    pub(crate) per_day: HashMap<i64, i64>,
    /// Per day, the traders who had traded on an earlier day.
    pub(crate) returning: HashMap<i64, HashSet<Address>>,
    /// Referral payouts: in all, per referrer (amount, payouts) and per day.
    pub(crate) referral: U256,
    pub(crate) per_referrer: HashMap<String, (U256, i64)>,
    pub(crate) referral_days: HashMap<i64, U256>,
    /// Concentration per day (oldest first) and over all days.
    pub(crate) concentration: Vec<(String, Concentration)>,
    pub(crate) window: Concentration,
    /// Average-cost bookkeeping.
    pub(crate) average_cost: AverageCost,
}

impl Expected {
    pub(crate) fn from_logs(logs: &[Log]) -> Self {
        let (mut buy, mut sell, mut protocol, mut subject) =
            (U256::ZERO, U256::ZERO, U256::ZERO, U256::ZERO);
        let (mut trades, mut traders, mut subjects) = (0i64, HashSet::new(), HashSet::new());
        let mut per_day: HashMap<i64, i64> = HashMap::new();
        // New vs returning traders: each trader's first day, and per day who traded again.
        let mut first_day: HashMap<Address, i64> = HashMap::new();
        let mut returning: HashMap<i64, HashSet<Address>> = HashMap::new();
        // Each day's volume per subject, and each subject's volume over all days.
        let mut subject_days: HashMap<i64, HashMap<Address, U256>> = HashMap::new();
        let mut subject_window: HashMap<Address, U256> = HashMap::new();
        // Referral payouts, per referrer and per day.
        let (mut referral, mut per_referrer) = (U256::ZERO, HashMap::<String, (U256, i64)>::new());
        let mut referral_days: HashMap<i64, U256> = HashMap::new();
        for l in logs
            .iter()
            .filter(|l| l.topics()[0] == KeyMarket::ReferralFeePaid::SIGNATURE_HASH)
        {
            let e = KeyMarket::ReferralFeePaid::decode_log_data(l.data()).unwrap();
            referral += e.amount;
            let r = per_referrer
                .entry(e.referrer.to_string().to_lowercase())
                .or_default();
            r.0 += e.amount;
            r.1 += 1;
            *referral_days
                .entry(l.block_timestamp.unwrap() as i64 / 86_400)
                .or_default() += e.amount;
        }
        for l in logs.iter().filter(|l| l.topics()[0] == TRADE_TOPIC) {
            let t = KeyMarket::Trade::decode_log_data(l.data()).unwrap();
            if t.shareAmount.is_zero() {
                continue;
            }
            trades += 1;
            traders.insert(t.trader);
            subjects.insert(t.subject);
            if t.isBuy {
                buy += t.ethAmount
            } else {
                sell += t.ethAmount
            }
            protocol += t.protocolEthAmount;
            subject += t.subjectEthAmount;
            let day = l.block_timestamp.unwrap() as i64 / 86_400;
            *per_day.entry(day).or_default() += 1;
            // Logs are in chain order: a trader's first log is its first trade.
            let first = *first_day.entry(t.trader).or_insert(day);
            if first < day {
                returning.entry(day).or_default().insert(t.trader);
            }
            *subject_days
                .entry(day)
                .or_default()
                .entry(t.subject)
                .or_default() += t.ethAmount;
            *subject_window.entry(t.subject).or_default() += t.ethAmount;
        }
        let per_day_concentration = {
            let mut d: Vec<_> = subject_days.iter().collect();
            d.sort_by_key(|(day, _)| **day);
            d.into_iter()
                .map(|(day, v)| (*day, concentration(v.values().copied().collect())))
                .map(|(day, c)| (day.to_string(), c))
                .collect()
        };
        Self {
            trades,
            traders,
            subjects,
            buy,
            sell,
            protocol,
            subject,
            per_day,
            returning,
            referral,
            per_referrer,
            referral_days,
            concentration: per_day_concentration,
            window: concentration(subject_window.values().copied().collect()),
            average_cost: average_cost(logs),
        }
    }
}

/// Concentration, recomputed from per-subject volumes.
fn concentration(mut v: Vec<U256>) -> Concentration {
    v.sort_by(|a, b| b.cmp(a));
    let total: U256 = v.iter().fold(U256::ZERO, |a, b| a + *b);
    let top: U256 = v.iter().take(10).fold(U256::ZERO, |a, b| a + *b);
    let squares: U256 = v.iter().fold(U256::ZERO, |a, b| a + *b * *b);
    let six = |num: U256, den: U256| {
        (!den.is_zero()).then(|| {
            let micro = (num * U256::from(1_000_000u64) / den).to::<u64>();
            format!("{}.{:06}", micro / 1_000_000, micro % 1_000_000)
        })
    };
    (
        v.len() as i64,
        total.to_string(),
        six(top, total),
        six(squares, total * total),
    )
}

/// The shared market, built by the first test that asks (the others wait for it). A failed
/// build is kept too: every test then fails with its message, and nothing is built twice.
pub(crate) fn market() -> &'static Market {
    static MARKET: OnceLock<Result<Market, String>> = OnceLock::new();
    MARKET
        .get_or_init(start)
        .as_ref()
        .unwrap_or_else(|e| panic!("the shared API market could not be built: {e}"))
}

/// Builds the market on a thread of its own that then keeps serving it until the process ends.
fn start() -> Result<Market, String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let serving = std::thread::Builder::new()
        .name("api-market".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                // Held here, on this thread, for as long as the process lives.
                let (chain, market) = build().await;
                tx.send(market).unwrap();
                let _chain = chain;
                std::future::pending::<()>().await
            })
        })
        .unwrap();
    rx.recv().map_err(|_| {
        // The thread ended without a market: it panicked; its message says why.
        let panic = serving.join().err();
        panic
            .as_ref()
            .and_then(|p| {
                p.downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            })
            .unwrap_or_else(|| "the building thread ended".into())
    })
}

async fn build() -> (Chain<LifelongAnvil>, Market) {
    let chain = Chain::deploy_on(LifelongAnvil::spawn()).await;
    chain.trade(1_500, 91, 100, 8 * 3600).await;
    // The owner raises the protocol fee (scheduled, 24 h ahead) and lowers the subject fee (at
    // once): /v1/markets shows both from the events.
    let market = KeyMarket::new(chain.deployment.address, &chain.provider);
    let owner = chain.provider.get_accounts().await.unwrap()[0];
    let raise = market
        .setProtocolFeePercent(U256::from(60_000_000_000_000_000u64))
        .from(owner);
    assert!(
        raise
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
            .status()
    );
    let lower = market
        .setSubjectFeePercent(U256::from(40_000_000_000_000_000u64))
        .from(owner);
    assert!(
        lower
            .send()
            .await
            .unwrap()
            .get_receipt()
            .await
            .unwrap()
            .status()
    );
    let effective_at = market
        .pendingProtocolFeeIncrease()
        .call()
        .await
        .unwrap()
        .effectiveAt;
    // Independent recomputation from the logs.
    let logs = chain.logs().await;
    let expected = Expected::from_logs(&logs);

    let index = |kind: Db, name: &'static str| {
        let chain = &chain;
        async move {
            let url = fresh_db(kind, name).await;
            let store = StoreWriter::connect(&url).await.unwrap();
            keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
                .await
                .unwrap();
            store
        }
    };
    let sqlite = index(Db::Sqlite, "api").await;
    let postgres_before_due = index(Db::Postgres, "api_before_due").await;
    let postgres = index(Db::Postgres, "api").await;
    // A block at or after effectiveAt, indexed into `postgres` only: there the increase is the
    // fee in force (the contract charges it from then, whether or not anyone applied it).
    let now: u64 = chain
        .provider
        .get_block(alloy::eips::BlockNumberOrTag::Latest.into())
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    let wait = effective_at.to::<u64>().saturating_sub(now) + 1;
    chain
        .provider
        .raw_request::<_, serde_json::Value>("evm_increaseTime".into(), (wait,))
        .await
        .unwrap();
    chain
        .provider
        .raw_request::<_, serde_json::Value>("evm_mine".into(), ())
        .await
        .unwrap();
    keymarket_indexer::run(
        &chain.provider,
        &postgres,
        chain.spec(),
        &Default::default(),
    )
    .await
    .unwrap();

    let served = Market {
        rpc_url: chain.rpc_url(),
        address: chain.deployment.address,
        effective_at,
        logs,
        expected,
        sqlite: serve_state(AppState::new(sqlite.reader())).await,
        postgres: serve_state(AppState::new(postgres.reader())).await,
        postgres_before_due: serve_state(AppState::new(postgres_before_due.reader())).await,
    };
    (chain, served)
}
