//! Shared fixtures: a real anvil with the real contract and simulated trades, real databases
//! (a SQLite file, a fresh database on the machine's PostgreSQL), and an independent
//! recomputation of every indexer table from the chain's logs.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::atomic::{AtomicU32, Ordering},
};

use alloy::{
    network::TransactionBuilder,
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder, RootProvider, ext::AnvilApi},
    rpc::types::{
        Filter, Log, TransactionRequest,
        anvil::{ReorgOptions, TransactionData},
    },
    sol_types::{SolCall, SolEvent},
};
use keymarket_contracts::{DeployConfig, Deployment, KeyMarket, TRADE_TOPIC, curve, toolchain};
use keymarket_indexer::{MarketSpec, StoreWriter};
use keymarket_simulate::SimConfig;

/// anvil, keeping the older blocks' states it writes to disk under the target's tmp folder
/// (scripts/test.sh empties it), not in ~/.foundry/anvil/tmp, where a killed anvil leaves them
/// (~1.6 GB for a 20,000-trade history).
pub(crate) fn anvil_at(accounts: usize) -> Anvil {
    toolchain::dev_anvil(accounts).args([
        "--cache-path",
        concat!(env!("CARGO_TARGET_TMPDIR"), "/anvil"),
    ])
}

pub(crate) fn anvil() -> AnvilInstance {
    anvil_at(30)
        .try_spawn()
        .expect("anvil starts (run scripts/setup.sh first)")
}

/// An anvil that lives as long as the test process, for a fixture kept in a `static` (never
/// dropped): started with `PR_SET_PDEATHSIG`, it is killed when the thread that started it ends,
/// so it goes with the test binary however that ends (a normal exit, a failed test's exit, or a
/// SIGKILL). The kernel ties that signal to the starting *thread*, not the process: start it
/// from a thread that lives until the process ends (it must not end before the anvil is done
/// with).
pub(crate) struct LifelongAnvil {
    child: std::process::Child,
    port: u16,
}

impl LifelongAnvil {
    /// Starts anvil as [`anvil`] does (same flags, any free port) and waits for its port.
    pub(crate) fn spawn() -> Self {
        use std::{io::BufRead, os::unix::process::CommandExt};

        let mut cmd = std::process::Command::new(toolchain::anvil_path());
        cmd.args(["--accounts", "30"])
            .args(toolchain::DEV_ANVIL_ARGS)
            .args([
                "--cache-path",
                concat!(env!("CARGO_TARGET_TMPDIR"), "/anvil"),
            ])
            .args(["-p", "0"])
            .env("FOUNDRY_DISABLE_NIGHTLY_WARNING", "")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit());
        let parent = std::process::id() as libc::pid_t;
        // SAFETY: between fork and exec, only async-signal-safe calls (prctl, getppid).
        unsafe {
            cmd.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // The parent ended before the signal was armed: end now.
                if libc::getppid() != parent {
                    return Err(std::io::Error::other("the test process is gone"));
                }
                Ok(())
            });
        }
        let mut child = cmd
            .spawn()
            .expect("anvil starts (run scripts/setup.sh first)");
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let port = loop {
            let mut line = String::new();
            let read = out.read_line(&mut line).expect("anvil's output");
            assert!(read > 0, "anvil ended before listening");
            if let Some(addr) = line.strip_prefix("Listening on") {
                let addr: std::net::SocketAddr = addr.trim().parse().unwrap();
                break addr.port();
            }
        };
        // Its later output is dropped, as alloy's `Anvil` does.
        Self { child, port }
    }
}

impl Drop for LifelongAnvil {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What a [`Chain`] needs of its anvil.
pub(crate) trait Node {
    /// Its HTTP JSON-RPC endpoint.
    fn endpoint(&self) -> String;
}

impl Node for AnvilInstance {
    fn endpoint(&self) -> String {
        AnvilInstance::endpoint(self)
    }
}

impl Node for LifelongAnvil {
    fn endpoint(&self) -> String {
        format!("http://localhost:{}", self.port)
    }
}

/// A chain with a deployed market (on a test's own anvil unless said otherwise).
pub(crate) struct Chain<A = AnvilInstance> {
    pub(crate) anvil: A,
    pub(crate) provider: RootProvider,
    pub(crate) deployment: Deployment,
}

impl Chain {
    pub(crate) async fn new() -> Self {
        Self::deploy_on(anvil()).await
    }
}

impl<A: Node> Chain<A> {
    /// The market deployed on `anvil`.
    pub(crate) async fn deploy_on(anvil: A) -> Self {
        let provider = ProviderBuilder::new()
            .connect_http(anvil.endpoint().parse().unwrap())
            .root()
            .clone();
        let accounts = provider.get_accounts().await.unwrap();
        let deployment = keymarket_contracts::deploy(
            &provider,
            &DeployConfig::friendtech_fees(accounts[0], Address::repeat_byte(0xfe)),
        )
        .await
        .unwrap();
        Self {
            anvil,
            provider,
            deployment,
        }
    }

    /// Sends `trades` simulated trades, `batch` per block, `interval` seconds apart.
    pub(crate) async fn trade(&self, trades: u64, seed: u64, batch: usize, interval: u64) {
        let config = SimConfig {
            trades,
            seed,
            subjects: 12,
            batch_size: batch,
            block_interval_secs: interval,
            progress: false,
            ..SimConfig::default()
        };
        let r = keymarket_simulate::simulate(&self.provider, &self.deployment, &config)
            .await
            .unwrap();
        assert_eq!(r.unexpected_reverts(), 0, "{:?}", r.unexpected_revert_txs);
    }

    pub(crate) fn spec(&self) -> MarketSpec {
        MarketSpec {
            address: self.deployment.address,
            start_block: self.deployment.deploy_block,
            chain_id: Some(self.deployment.chain_id),
        }
    }

    pub(crate) fn rpc_url(&self) -> String {
        Node::endpoint(&self.anvil)
    }

    /// Replaces the last `depth` blocks by a new branch (`anvil_reorg`) that carries a trade of
    /// its own: a subject opened by the simulator buys `keys` of its own keys.
    pub(crate) async fn reorg_with_a_buy(&self, depth: u64, keys: u64) {
        let accounts = self.provider.get_accounts().await.unwrap();
        let subject = accounts[2]; // opened by the simulator
        let buy = KeyMarket::buySharesCall {
            subject,
            amount: U256::from(keys),
        }
        .abi_encode();
        let tx = TransactionRequest::default()
            .with_from(subject)
            .with_to(self.deployment.address)
            .with_input(buy)
            .with_value(U256::from(10u64).pow(U256::from(24)))
            .with_gas_limit(200_000);
        self.provider
            .anvil_reorg(ReorgOptions {
                depth,
                tx_block_pairs: vec![(TransactionData::JSON(tx), 0)],
            })
            .await
            .unwrap();
    }

    /// Every log of the market on the current canonical chain.
    pub(crate) async fn logs(&self) -> Vec<Log> {
        self.logs_of(self.deployment.address, self.deployment.deploy_block)
            .await
    }

    /// Every log of the contract at `address` from block `from` on the canonical chain.
    pub(crate) async fn logs_of(&self, address: Address, from: u64) -> Vec<Log> {
        let filter = Filter::new().address(address).from_block(from);
        self.provider.get_logs(&filter).await.unwrap()
    }
}

/// anvil's dev account `n` as a signer (the public "test … junk" mnemonic).
pub(crate) fn dev_key(n: u32) -> alloy::signers::local::PrivateKeySigner {
    alloy::signers::local::MnemonicBuilder::<alloy::signers::local::coins_bip39::English>::default()
        .phrase("test test test test test test test test test test test junk")
        .index(n)
        .unwrap()
        .build()
        .unwrap()
}

/// Which database a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Db {
    Sqlite,
    Postgres,
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A fresh, empty database: a SQLite file in a temporary folder, or a new database on the
/// machine's PostgreSQL (`KEYMARKET_TEST_POSTGRES`, default postgres://postgres@127.0.0.1:5432/postgres).
pub(crate) async fn fresh_db(kind: Db, name: &str) -> String {
    let unique = format!(
        "{name}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    match kind {
        Db::Sqlite => {
            let dir = std::env::temp_dir().join("keymarket-tests");
            std::fs::create_dir_all(&dir).unwrap();
            let path = dir.join(format!("{unique}.db"));
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
            }
            format!("sqlite:{}", path.display())
        }
        Db::Postgres => {
            let admin = std::env::var("KEYMARKET_TEST_POSTGRES")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
            sqlx::any::install_default_drivers();
            let pool = sqlx::AnyPool::connect(&admin).await.unwrap_or_else(|e| {
                panic!("PostgreSQL must be running for these tests ({admin}): {e}")
            });
            let db = format!("km_{}", unique.to_lowercase());
            sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {db}")))
                .execute(&pool)
                .await
                .unwrap();
            sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
                .execute(&pool)
                .await
                .unwrap();
            pool.close().await;
            let base = admin.rsplit_once('/').unwrap().0;
            format!("{base}/{db}")
        }
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    alloy::hex::encode_prefixed(b)
}

fn split(v: U256) -> (i64, i64) {
    let (q, r) = v.div_rem(U256::from(1_000_000_000u64));
    (q.to::<i64>(), r.to::<i64>())
}

/// A signed wei value as a normalised (gwei, rem) pair, 0 <= rem < 1e9.
fn split_signed(v: i128) -> (i64, i64) {
    (
        v.div_euclid(1_000_000_000) as i64,
        v.rem_euclid(1_000_000_000) as i64,
    )
}

/// Average-cost bookkeeping recomputed from the chain's Trade logs: the cost basis each log
/// released (sells; 0 otherwise), each (subject, trader) holding's cost and each trader's
/// realised PnL, in wei.
pub(crate) struct AverageCost {
    pub(crate) released: Vec<i128>,
    pub(crate) cost: HashMap<(String, String), i128>,
    pub(crate) pnl: HashMap<String, i128>,
}

pub(crate) fn average_cost(logs: &[Log]) -> AverageCost {
    let mut out = AverageCost {
        released: Vec::new(),
        cost: HashMap::new(),
        pnl: HashMap::new(),
    };
    let mut held: HashMap<(String, String), i64> = HashMap::new();
    for l in logs.iter().filter(|l| l.topics()[0] == TRADE_TOPIC) {
        let t = KeyMarket::Trade::decode_log_data(l.data()).unwrap();
        let (trader, subject) = (hex(t.trader.as_slice()), hex(t.subject.as_slice()));
        let amount: i64 = t.shareAmount.to();
        let (eth, fees) = (
            t.ethAmount.to::<i128>(),
            t.protocolEthAmount.to::<i128>() + t.subjectEthAmount.to::<i128>(),
        );
        let key = (subject, trader.clone());
        let balance = held.entry(key.clone()).or_default();
        let c = out.cost.entry(key).or_default();
        let mut released = 0;
        if amount != 0 && t.isBuy {
            *c += eth + fees;
            *balance += amount;
        } else if amount != 0 {
            released = if *balance > amount {
                *c * i128::from(amount) / i128::from(*balance)
            } else {
                *c
            };
            *c -= released;
            *balance -= amount;
            *out.pnl.entry(trader).or_default() += eth - fees - released;
        }
        out.released.push(released);
    }
    out
}

/// Every indexer table recomputed from the chain's logs alone, in the format of `StoreWriter::dump`.
#[allow(clippy::type_complexity)]
pub(crate) fn recompute(chain_id: u64, logs: &[Log]) -> BTreeMap<&'static str, Vec<String>> {
    #[derive(Default, Clone)]
    struct Agg {
        trades: i64,
        buys: i64,
        sells: i64,
        v: [(i64, i64); 4],
    }
    let add = |a: &mut (i64, i64), v: U256| {
        let (g, r) = split(v);
        a.0 += g;
        a.1 += r;
    };
    let mut trades = Vec::new();
    let mut days: BTreeMap<i64, Agg> = BTreeMap::new();
    let mut subjects: BTreeMap<String, (i64, i64, (i64, i64), (i64, i64), i64)> = BTreeMap::new(); // supply, trades, volume, fees, first
    let mut traders: BTreeMap<String, (i64, (i64, i64), (i64, i64), i64)> = BTreeMap::new();
    let mut holdings: BTreeMap<(String, String), i64> = BTreeMap::new();
    let mut day_traders: BTreeMap<(i64, String), i64> = BTreeMap::new();
    let AverageCost {
        released,
        cost,
        pnl,
    } = average_cost(logs);
    let mut curves: HashMap<String, i64> = HashMap::new();
    let mut subject_days: BTreeMap<(String, i64), Agg> = BTreeMap::new();
    let trade_logs = logs.iter().filter(|l| l.topics()[0] == TRADE_TOPIC);
    for (l, released) in trade_logs.zip(released) {
        let t = KeyMarket::Trade::decode_log_data(l.data()).unwrap();
        let time = l.block_timestamp.unwrap() as i64;
        let (e, p, s) = (
            split(t.ethAmount),
            split(t.protocolEthAmount),
            split(t.subjectEthAmount),
        );
        let (trader, subject) = (hex(t.trader.as_slice()), hex(t.subject.as_slice()));
        let amount: i64 = t.shareAmount.to();
        let supply: i64 = t.supply.to();
        if amount != 0 {
            // The curve, from the contract's own price formula.
            let first = if t.isBuy { supply - amount } else { supply } as u64;
            for (id, multiple) in [(curve::CURVE_STANDARD, 1), (curve::CURVE_STEEP, 10)] {
                if !t.ethAmount.is_zero() && curve::price(id, first, amount as u64) == t.ethAmount {
                    curves.insert(subject.clone(), multiple);
                }
            }
        }
        let basis = split_signed(released);
        trades.push(format!(
            "{chain_id}|{}|{}|{}|{}|{time}|{trader}|{subject}|{}|{amount}|{}|{}|{}|{}|{}|{}|{supply}|{}|{}",
            hex(l.transaction_hash.unwrap().as_slice()),
            l.log_index.unwrap(),
            l.block_number.unwrap(),
            hex(l.block_hash.unwrap().as_slice()),
            i64::from(t.isBuy),
            e.0,
            e.1,
            p.0,
            p.1,
            s.0,
            s.1,
            basis.0,
            basis.1
        ));
        if amount == 0 {
            continue;
        }
        let sd = subject_days
            .entry((subject.clone(), time.div_euclid(86_400)))
            .or_default();
        sd.trades += 1;
        if t.isBuy {
            sd.buys += 1;
            add(&mut sd.v[0], t.ethAmount);
        } else {
            sd.sells += 1;
            add(&mut sd.v[1], t.ethAmount);
        }
        add(&mut sd.v[3], t.subjectEthAmount);
        let day = time.div_euclid(86_400);
        let d = days.entry(day).or_default();
        d.trades += 1;
        if t.isBuy {
            d.buys += 1;
            add(&mut d.v[0], t.ethAmount);
        } else {
            d.sells += 1;
            add(&mut d.v[1], t.ethAmount);
        }
        add(&mut d.v[2], t.protocolEthAmount);
        add(&mut d.v[3], t.subjectEthAmount);
        let sj = subjects
            .entry(subject.clone())
            .or_insert((0, 0, (0, 0), (0, 0), time));
        sj.0 = supply;
        sj.1 += 1;
        add(&mut sj.2, t.ethAmount);
        add(&mut sj.3, t.subjectEthAmount);
        let tr = traders
            .entry(trader.clone())
            .or_insert((0, (0, 0), (0, 0), time));
        tr.0 += 1;
        add(&mut tr.1, t.ethAmount);
        add(&mut tr.2, t.protocolEthAmount);
        add(&mut tr.2, t.subjectEthAmount);
        *holdings
            .entry((subject.clone(), trader.clone()))
            .or_default() += if t.isBuy { amount } else { -amount };
        *day_traders.entry((day, trader)).or_default() += 1;
    }
    let mut holders: HashMap<&str, i64> = HashMap::new();
    for ((s, _), b) in &holdings {
        if *b > 0 {
            *holders.entry(s.as_str()).or_default() += 1;
        }
    }
    let mut new_traders: HashMap<i64, i64> = HashMap::new();
    for t in traders.values() {
        *new_traders.entry(t.3.div_euclid(86_400)).or_default() += 1;
    }
    let mut new_subjects: HashMap<i64, i64> = HashMap::new();
    for s in subjects.values() {
        *new_subjects.entry(s.4.div_euclid(86_400)).or_default() += 1;
    }
    let mut active: HashMap<i64, i64> = HashMap::new();
    for (day, _) in day_traders.keys() {
        *active.entry(*day).or_default() += 1;
    }
    // Referral payouts and fee settings, from their own events.
    let (mut referral_rows, mut fee_rows) = (Vec::new(), Vec::new());
    let mut referral_days: HashMap<i64, (i64, (i64, i64))> = HashMap::new();
    let mut referrers: BTreeMap<String, (i64, (i64, i64), i64)> = BTreeMap::new();
    for l in logs {
        let (block, index, time) = (
            l.block_number.unwrap(),
            l.log_index.unwrap(),
            l.block_timestamp.unwrap() as i64,
        );
        let topic = l.topics()[0];
        let tx = hex(l.transaction_hash.unwrap().as_slice());
        let fee = |kind: &str, value: String, at: u64| {
            format!("{block}|{index}|{tx}|{time}|{kind}|{value}|{at}")
        };
        if topic == KeyMarket::ReferralFeePaid::SIGNATURE_HASH {
            let e = KeyMarket::ReferralFeePaid::decode_log_data(l.data()).unwrap();
            let referrer = hex(e.referrer.as_slice());
            let a = split(e.amount);
            referral_rows.push(format!(
                "{block}|{index}|{}|{time}|{referrer}|{}|{}|{}|{}",
                hex(l.transaction_hash.unwrap().as_slice()),
                hex(e.trader.as_slice()),
                hex(e.subject.as_slice()),
                a.0,
                a.1
            ));
            let d = referral_days.entry(time.div_euclid(86_400)).or_default();
            d.0 += 1;
            add(&mut d.1, e.amount);
            let r = referrers.entry(referrer).or_insert((0, (0, 0), time));
            r.0 += 1;
            add(&mut r.1, e.amount);
        } else if topic == KeyMarket::ProtocolFeePercentUpdated::SIGNATURE_HASH {
            let e = KeyMarket::ProtocolFeePercentUpdated::decode_log_data(l.data()).unwrap();
            fee_rows.push(fee("protocol_fee_percent", e.current.to_string(), 0));
        } else if topic == KeyMarket::SubjectFeePercentUpdated::SIGNATURE_HASH {
            let e = KeyMarket::SubjectFeePercentUpdated::decode_log_data(l.data()).unwrap();
            fee_rows.push(fee("subject_fee_percent", e.current.to_string(), 0));
        } else if topic == KeyMarket::ReferralFeeShareUpdated::SIGNATURE_HASH {
            let e = KeyMarket::ReferralFeeShareUpdated::decode_log_data(l.data()).unwrap();
            fee_rows.push(fee("referral_share_bps", e.current.to_string(), 0));
        } else if topic == KeyMarket::FeeIncreaseScheduled::SIGNATURE_HASH {
            let e = KeyMarket::FeeIncreaseScheduled::decode_log_data(l.data()).unwrap();
            let kind = if e.protocol {
                "protocol_fee_increase"
            } else {
                "subject_fee_increase"
            };
            fee_rows.push(fee(kind, e.pending.to_string(), e.effectiveAt.to()));
        } else if topic == KeyMarket::FeeDestinationUpdated::SIGNATURE_HASH {
            let e = KeyMarket::FeeDestinationUpdated::decode_log_data(l.data()).unwrap();
            fee_rows.push(fee("fee_destination", hex(e.current.as_slice()), 0));
        }
    }
    let mut out = BTreeMap::new();
    out.insert("trades", trades);
    out.insert("referrals", referral_rows);
    out.insert("fee_events", fee_rows);
    out.insert(
        "referrers",
        referrers
            .iter()
            .map(|(r, (n, a, first))| format!("{r}|{n}|{}|{}|{first}", a.0, a.1))
            .collect(),
    );
    out.insert(
        "stats_daily",
        days.iter()
            .map(|(day, d)| {
                let (n, paid) = referral_days.get(day).copied().unwrap_or_default();
                format!(
                    "{day}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{n}|{}|{}",
                    d.trades,
                    d.buys,
                    d.sells,
                    d.v[0].0,
                    d.v[0].1,
                    d.v[1].0,
                    d.v[1].1,
                    d.v[2].0,
                    d.v[2].1,
                    d.v[3].0,
                    d.v[3].1,
                    active.get(day).copied().unwrap_or(0),
                    new_traders.get(day).copied().unwrap_or(0),
                    new_subjects.get(day).copied().unwrap_or(0),
                    paid.0,
                    paid.1
                )
            })
            .collect(),
    );
    out.insert(
        "subjects",
        subjects
            .iter()
            .map(|(s, a)| {
                format!(
                    "{s}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    a.0,
                    holders.get(s.as_str()).copied().unwrap_or(0),
                    a.1,
                    a.2.0,
                    a.2.1,
                    a.3.0,
                    a.3.1,
                    a.4,
                    curves.get(s).copied().unwrap_or(0)
                )
            })
            .collect(),
    );
    out.insert(
        "traders",
        traders
            .iter()
            .map(|(t, a)| {
                let p = split_signed(pnl.get(t).copied().unwrap_or(0));
                format!(
                    "{t}|{}|{}|{}|{}|{}|{}|{}|{}",
                    a.0, a.1.0, a.1.1, a.2.0, a.2.1, a.3, p.0, p.1
                )
            })
            .collect(),
    );
    out.insert(
        "holdings",
        holdings
            .iter()
            .filter(|(_, b)| **b != 0)
            .map(|((s, t), b)| {
                let c = split_signed(cost[&(s.clone(), t.clone())]);
                format!("{s}|{t}|{b}|{}|{}", c.0, c.1)
            })
            .collect(),
    );
    out.insert(
        "subject_daily",
        subject_days
            .iter()
            .map(|((s, day), d)| {
                format!(
                    "{s}|{day}|{}|{}|{}|{}|{}|{}|{}|{}|{}",
                    d.trades,
                    d.buys,
                    d.sells,
                    d.v[0].0,
                    d.v[0].1,
                    d.v[1].0,
                    d.v[1].1,
                    d.v[3].0,
                    d.v[3].1
                )
            })
            .collect(),
    );
    out.insert(
        "daily_traders",
        day_traders
            .iter()
            .map(|((d, t), n)| format!("{d}|{t}|{n}"))
            .collect(),
    );
    for v in out.values_mut() {
        v.sort();
    }
    out
}

/// The database's tables for the chain's market.
pub(crate) async fn dump(url: &str, chain: &Chain) -> BTreeMap<&'static str, Vec<String>> {
    let store = StoreWriter::connect(url).await.unwrap();
    let market = store
        .ensure_market(
            chain.deployment.chain_id,
            chain.deployment.address,
            chain.deployment.deploy_block,
        )
        .await
        .unwrap();
    store.dump(market.id).await.unwrap()
}

/// Asserts two table dumps are equal, naming the first differing table and row.
pub(crate) fn assert_same(
    what: &str,
    got: &BTreeMap<&'static str, Vec<String>>,
    want: &BTreeMap<&'static str, Vec<String>>,
) {
    for (table, rows) in want {
        let got_rows = got
            .get(table)
            .unwrap_or_else(|| panic!("{what}: table {table} missing"));
        if got_rows != rows {
            let g: HashSet<&String> = got_rows.iter().collect();
            let w: HashSet<&String> = rows.iter().collect();
            let missing: Vec<_> = w.difference(&g).take(3).collect();
            let extra: Vec<_> = g.difference(&w).take(3).collect();
            panic!(
                "{what}: table {table} differs ({} rows vs {} expected); missing e.g. {missing:?}; unexpected e.g. {extra:?}",
                got_rows.len(),
                rows.len()
            );
        }
    }
    assert!(
        !want["trades"].is_empty(),
        "{what}: the comparison is not vacuous"
    );
}

/// Runs `keymarket ARGS` to its end, which must fail (exit status non-zero); its stderr.
pub(crate) async fn keymarket_fails(args: &[&str]) -> String {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args(args)
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "keymarket {args:?} succeeded: {stderr}"
    );
    stderr
}

/// Starts `keymarket serve ARGS --listen` on a free loopback port and waits until it answers
/// `/healthz`; the process (killed when dropped) and its base URL.
pub(crate) async fn serve(
    args: &[&str],
    stderr: std::process::Stdio,
) -> (tokio::process::Child, String) {
    let port = crate::crash::free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .arg("serve")
        .args(args)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .stdout(std::process::Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    // A guard against a hang, not a timing assertion.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while client.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "serve answers");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    (child, base)
}
