//! Several `keymarket index` processes on one PostgreSQL database (real processes, the machine's
//! PostgreSQL, a real anvil with two markets): each market owned by one process at a time
//! through its lease row, the others standing by; SIGKILL of an owner and a network partition
//! between an owner and PostgreSQL both end in a takeover, and the database ends identical to
//! an uninterrupted run. The write fence itself is tested on the store.
//!
//! The takeover times are printed (`--nocapture`); `KEYMARKET_TAKEOVERS=10` runs ten of each,
//! the figures in docs/performance.md. They are not asserted (a shared machine's timing is
//! not a test's to judge) beyond a guard against a hang.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    process::Stdio,
    time::{Duration, Instant},
};

use alloy::{primitives::Address, providers::Provider};
use keymarket_contracts::{DeployConfig, Deployment};
use keymarket_indexer::{
    IndexerConfig, StoreWriter,
    store::{Batch, Bid, Error as StoreError},
};
use keymarket_simulate::SimConfig;
use sqlx::{AnyPool, Row};
use tokio::process::{Child, Command};

use crate::{
    common::{Chain, Db, assert_same, fresh_db, recompute},
    crash::signal,
    pg_gate::PgGate,
};

/// How long a takeover may take before the test calls it a hang (the lease lasts 5 s).
const HANG: Duration = Duration::from_secs(60);

/// Kills or partitions per test: `KEYMARKET_TAKEOVERS`, default 4.
fn takeovers() -> usize {
    std::env::var("KEYMARKET_TAKEOVERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(4)
}

/// A chain with two markets, each with a history of `trades` trades.
async fn two_markets(trades: u64) -> (Chain, Deployment) {
    let chain = Chain::new().await;
    let accounts = chain.provider.get_accounts().await.unwrap();
    let second = keymarket_contracts::deploy(
        &chain.provider,
        &DeployConfig::friendtech_fees(accounts[0], Address::repeat_byte(0xfd)),
    )
    .await
    .unwrap();
    trade_on(&chain, &chain.deployment, trades, 91).await;
    trade_on(&chain, &second, trades, 92).await;
    (chain, second)
}

/// Sends `trades` simulated trades to `market`, 10 a block.
async fn trade_on(chain: &Chain, market: &Deployment, trades: u64, seed: u64) {
    let config = SimConfig {
        trades,
        seed,
        subjects: 8,
        batch_size: 10,
        block_interval_secs: 300,
        progress: false,
        ..SimConfig::default()
    };
    let r = keymarket_simulate::simulate(&chain.provider, market, &config)
        .await
        .unwrap();
    assert_eq!(r.unexpected_reverts(), 0);
}

/// A running `keymarket index --follow` of both markets; its stderr goes to a file (read when
/// a test fails).
pub(crate) struct Indexer {
    child: Child,
    pub(crate) pid: u32,
    log: PathBuf,
}

impl Indexer {
    pub(crate) fn spawn(rpc: &str, url: &str, markets: &[&Deployment]) -> Self {
        let dir = std::env::temp_dir().join("keymarket-tests");
        std::fs::create_dir_all(&dir).unwrap();
        let log = dir.join(format!(
            "standby-{}-{}.log",
            std::process::id(),
            rand::random::<u32>()
        ));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymarket"));
        cmd.args(["index", "--follow", "--quiet", "--rpc-url", rpc])
            .args(["--database-url", url])
            .args(["--initial-range", "2", "--max-range", "3", "--window", "32"]);
        for m in markets {
            cmd.arg("--market")
                .arg(format!("{}@{}", m.address, m.deploy_block));
        }
        let child = cmd
            .env("RUST_LOG", "warn,indexer::ownership=info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .kill_on_drop(true)
            .spawn()
            .expect("keymarket binary runs");
        let pid = child.id().unwrap();
        Self { child, pid, log }
    }

    /// Fails the test if the process has exited by itself (an indexer that met another's
    /// write, or any error, exits: a standby never does).
    pub(crate) fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().unwrap() {
            panic!(
                "indexer {} exited by itself ({status}):\n{}",
                self.pid,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
        }
    }

    pub(crate) async fn kill(mut self) {
        self.assert_running();
        self.child.kill().await.unwrap(); // SIGKILL
    }
}

/// A market's owner as the lease table says: the owner's pid, epoch, and whether the lease is
/// live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Owner {
    pid: u32,
    epoch: i64,
    live: bool,
}

/// Every market's owner, read from `market_owners` on the database's clock.
async fn owners(pool: &AnyPool) -> BTreeMap<i64, Owner> {
    let rows = sqlx::query(
        "SELECT market_id, owner, epoch, \
         expires_at - CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT) \
         FROM market_owners",
    )
    .fetch_all(pool)
    .await
    .unwrap_or_default();
    rows.iter()
        .map(|r| {
            let owner: String = r.get(1);
            let pid = owner
                .split(':')
                .nth(1)
                .and_then(|p| p.parse().ok())
                .unwrap();
            let expires_in: i64 = r.get(3);
            (
                r.get::<i64, _>(0),
                Owner {
                    pid,
                    epoch: r.get(2),
                    live: expires_in > 0,
                },
            )
        })
        .collect()
}

/// Waits until both markets are registered (by whichever process came first) and returns their
/// ids, in `markets`' order.
async fn market_ids(pool: &AnyPool, markets: &[&Deployment]) -> [i64; 2] {
    let deadline = Instant::now() + HANG;
    loop {
        let mut ids = [0; 2];
        for (id, m) in ids.iter_mut().zip(markets) {
            *id = sqlx::query("SELECT id FROM markets WHERE address = $1")
                .bind(alloy::hex::encode_prefixed(m.address))
                .fetch_optional(pool)
                .await
                .ok()
                .flatten()
                .map_or(0, |r| r.get(0));
        }
        if ids.iter().all(|id| *id > 0) {
            return ids;
        }
        assert!(Instant::now() < deadline, "markets not registered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until every market of `ids` has a live lease held by one of `pids`, and returns the
/// owners.
async fn wait_owned(pool: &AnyPool, ids: &[i64], pids: &[u32]) -> BTreeMap<i64, Owner> {
    let deadline = Instant::now() + HANG;
    loop {
        let now = owners(pool).await;
        if ids
            .iter()
            .all(|m| now.get(m).is_some_and(|o| o.live && pids.contains(&o.pid)))
        {
            return now;
        }
        assert!(Instant::now() < deadline, "markets not owned: {now:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until `market` is owned (live lease) by a process other than `lost`; returns how long
/// it took from `since`.
async fn wait_takeover(pool: &AnyPool, market: i64, lost: u32, since: Instant) -> Duration {
    loop {
        let now = owners(pool).await;
        if now.get(&market).is_some_and(|o| o.live && o.pid != lost) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < HANG,
            "no takeover of market {market} from {lost}: {now:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The market's checkpoint: every block below it is indexed.
async fn next_block(pool: &AnyPool, market: i64) -> u64 {
    let next: i64 = sqlx::query("SELECT next_block FROM markets WHERE id = $1")
        .bind(market)
        .fetch_one(pool)
        .await
        .unwrap()
        .get(0);
    next as u64
}

/// Waits until both markets are indexed up to the chain's head.
async fn wait_caught_up(pool: &AnyPool, chain: &Chain) {
    let head = chain.provider.get_block_number().await.unwrap();
    let deadline = Instant::now() + HANG;
    loop {
        let rows = sqlx::query("SELECT next_block FROM markets ORDER BY id")
            .fetch_all(pool)
            .await
            .unwrap();
        let next: Vec<i64> = rows.iter().map(|r| r.get(0)).collect();
        if next.len() == 2 && next.iter().all(|n| *n as u64 > head) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "not caught up to {head}: {next:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The database's tables for `market`, and the same recomputed from the chain's logs.
async fn check_market(url: &str, chain: &Chain, market: &Deployment, what: &str) {
    let store = StoreWriter::connect(url).await.unwrap();
    let id = store
        .ensure_market(market.chain_id, market.address, market.deploy_block)
        .await
        .unwrap()
        .id;
    let got = store.dump(id).await.unwrap();
    let logs: Vec<_> = chain.logs_of(market.address, market.deploy_block).await;
    assert_same(what, &got, &recompute(market.chain_id, &logs));

    // And the same as an uninterrupted run into a fresh database.
    let clean = fresh_db(Db::Postgres, "standby_clean").await;
    let clean_store = StoreWriter::connect(&clean).await.unwrap();
    let spec = keymarket_indexer::MarketSpec {
        address: market.address,
        start_block: market.deploy_block,
        chain_id: Some(market.chain_id),
    };
    keymarket_indexer::run(
        &chain.provider,
        &clean_store,
        spec,
        &IndexerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        clean_store.dump(1).await.unwrap(),
        got,
        "{what}: the same as an uninterrupted run"
    );
}

/// Two and three processes on two markets: ownership split between them, owners SIGKILLed
/// during the backfill and while following, then owners frozen (SIGSTOP) and woken after the
/// takeover; a standby taking over each time.
#[tokio::test(flavor = "multi_thread")]
async fn standbys_take_over_from_a_killed_owner_and_nothing_is_lost_or_doubled() {
    let (chain, second) = two_markets(3_000).await;
    let markets = [&chain.deployment, &second];
    let url = fresh_db(Db::Postgres, "standby").await;
    let pool = AnyPool::connect(&url).await.unwrap();
    let rpc = chain.rpc_url();
    let mut procs: Vec<Indexer> = (0..3)
        .map(|_| Indexer::spawn(&rpc, &url, &markets))
        .collect();
    let ids = market_ids(&pool, &markets).await;
    let history_end = chain.provider.get_block_number().await.unwrap();
    let mut last_next = markets.map(|m| m.deploy_block);
    let mut took = Vec::new();
    let mut split = false;
    let mut phases = BTreeMap::new();
    for round in 0..takeovers() {
        // Three processes on even rounds, two on odd ones (one after the kill).
        let want = if round % 2 == 0 { 3 } else { 2 };
        while procs.len() < want {
            procs.push(Indexer::spawn(&rpc, &url, &markets));
        }
        let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
        let now = wait_owned(&pool, &ids, &pids).await;
        split |= now[&ids[0]].pid != now[&ids[1]].pid;
        // The first half of the kills hit the first market's owners one after the other, each
        // soon after it took over (during the backfill); the rest alternate while following.
        let backfill = round < takeovers() / 2;
        let market = if backfill { ids[0] } else { ids[round % 2] };
        let victim = now[&market].pid;
        let at = procs.iter().position(|p| p.pid == victim).unwrap();
        for p in &mut procs {
            p.assert_running();
        }
        // Killed once it has written (a batch beyond where the last owner stopped) during the
        // backfill, or once it follows the head.
        let next = loop {
            let next = next_block(&pool, market).await;
            let written = next > last_next[usize::from(market == ids[1])];
            if (backfill && written) || next > history_end {
                break next;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        last_next[usize::from(market == ids[1])] = next;
        let head = chain.provider.get_block_number().await.unwrap();
        procs.swap_remove(at).kill().await;
        let killed = Instant::now();
        let t = wait_takeover(&pool, market, victim, killed).await;
        let phase = if next <= history_end {
            "backfill"
        } else {
            "following"
        };
        println!(
            "SIGKILL of market {market}'s owner ({want} processes, {phase} at block {next} of {head}): taken over in {:.2} s",
            t.as_secs_f64()
        );
        *phases.entry(phase).or_insert(0) += 1;
        took.push(t);
        if !backfill {
            // Trades keep coming (the standby follows them).
            trade_on(&chain, markets[round % 2], 60, 100 + round as u64).await;
        }
    }
    assert!(split, "the two markets were owned by different processes");
    assert!(
        phases.len() == 2,
        "owners killed during the backfill and while following: {phases:?}"
    );
    print_figures("SIGKILL (a standby on the same machine)", &mut took);

    // A frozen owner (SIGSTOP: alive, silent — to its standbys, like an owner dead on another
    // machine, whose pid they cannot check): only its lease running out tells. Then it wakes
    // up (SIGCONT), finds its lease taken, and stands by; the fence refuses whatever commit it
    // had in flight.
    while procs.len() < 3 {
        procs.push(Indexer::spawn(&rpc, &url, &markets));
    }
    let mut frozen = Vec::new();
    for round in 0..takeovers() {
        let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
        let market = ids[round % 2];
        let victim = wait_owned(&pool, &ids, &pids).await[&market].pid;
        signal("STOP", victim);
        let stopped = Instant::now();
        let t = wait_takeover(&pool, market, victim, stopped).await;
        signal("CONT", victim);
        println!(
            "SIGSTOP of market {market}'s owner: taken over in {:.2} s",
            t.as_secs_f64()
        );
        frozen.push(t);
        trade_on(&chain, markets[round % 2], 60, 400 + round as u64).await;
    }
    print_figures("SIGSTOP (the lease running out)", &mut frozen);
    wait_caught_up(&pool, &chain).await;
    for p in procs {
        p.kill().await;
    }
    for (m, name) in markets.iter().zip(["first", "second"]) {
        check_market(&url, &chain, m, &format!("{name} market after kills")).await;
    }
}

/// An owner cut off from PostgreSQL by a silent network (a TCP proxy that holds every byte)
/// loses its market to the standby; its connections are then terminated too, and the network
/// heals: it stands by (or takes a market back later under a new epoch), and never writes
/// under its old lease — the database ends identical to an uninterrupted run.
#[tokio::test(flavor = "multi_thread")]
async fn a_partitioned_owner_is_taken_over_and_never_writes_after_it() {
    let (chain, second) = two_markets(1_500).await;
    let markets = [&chain.deployment, &second];
    let url = fresh_db(Db::Postgres, "partition").await;
    let pool = AnyPool::connect(&url).await.unwrap();
    let rpc = chain.rpc_url();
    let gate = PgGate::start("127.0.0.1:5432".parse().unwrap()).await;
    let mut cut = Indexer::spawn(&rpc, &gate.url(&url), &markets);
    let ids = market_ids(&pool, &markets).await;
    wait_owned(&pool, &ids, &[cut.pid]).await;
    let mut other = Indexer::spawn(&rpc, &url, &markets);
    let mut took = Vec::new();
    for round in 0..takeovers() {
        // Each process holds its share (one market) once both run: wait for the cut-off one to
        // own one.
        let deadline = Instant::now() + HANG;
        let market = loop {
            let now = wait_owned(&pool, &ids, &[cut.pid, other.pid]).await;
            if let Some((m, _)) = now.iter().find(|(_, o)| o.pid == cut.pid) {
                break *m;
            }
            assert!(
                Instant::now() < deadline,
                "{} owns nothing: {now:?}",
                cut.pid
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        cut.assert_running();
        other.assert_running();
        gate.set_silent(true);
        let silent = Instant::now();
        // Trades keep coming while the owner is cut off.
        let which = usize::from(market == ids[1]);
        trade_on(&chain, markets[which], 40, 200 + round as u64).await;
        let t = wait_takeover(&pool, market, cut.pid, silent).await;
        println!(
            "partition of market {market}'s owner: taken over in {:.2} s",
            t.as_secs_f64()
        );
        took.push(t);
        // Its connections cut too (each a backend through the proxy), then the network heals.
        let ports: Vec<i32> = gate
            .upstream_ports()
            .iter()
            .map(|p| i32::from(*p))
            .collect();
        for port in ports {
            sqlx::query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE client_port = $1",
            )
            .bind(port)
            .execute(&pool)
            .await
            .unwrap();
        }
        gate.set_silent(false);
        trade_on(&chain, markets[round % 2], 40, 300 + round as u64).await;
    }
    wait_caught_up(&pool, &chain).await;
    cut.kill().await;
    other.kill().await;
    print_figures("partition", &mut took);
    for (m, name) in markets.iter().zip(["first", "second"]) {
        check_market(&url, &chain, m, &format!("{name} market after partitions")).await;
    }
}

fn print_figures(what: &str, took: &mut [Duration]) {
    took.sort();
    println!(
        "takeover after {what}: median {:.2} s, worst {:.2} s of {}",
        took[took.len() / 2].as_secs_f64(),
        took[took.len() - 1].as_secs_f64(),
        took.len()
    );
}

/// The write fence on the store: a batch committed under a lease the market no longer has is
/// refused and writes nothing; a bid for a live lease is refused; the holder's heartbeat no
/// longer renews a lease taken over.
async fn fence_test(kind: Db) {
    let url = fresh_db(kind, "fence").await;
    let a = StoreWriter::connect(&url).await.unwrap();
    let b = StoreWriter::connect(&url).await.unwrap();
    a.ensure_chain(31337, alloy::primitives::B256::repeat_byte(7))
        .await
        .unwrap();
    let mut market = a
        .ensure_market(31337, Address::repeat_byte(1), 0)
        .await
        .unwrap();
    let Bid::Won { epoch } = a.try_acquire(market.id, "a").await.unwrap() else {
        panic!("a free market is won");
    };
    assert!(matches!(
        b.try_acquire(market.id, "b").await.unwrap(),
        Bid::Held { owner, .. } if owner == "a"
    ));
    market.lease_epoch = Some(epoch);
    let batch = |from: u64| Batch {
        from,
        to: from + 9,
        head: from + 9,
        ..Batch::default()
    };
    // Bulk mode (dropping database-wide indexes) is a's only while it owns every market.
    assert!(a.owns_every_market("a").await.unwrap());
    assert!(!b.owns_every_market("b").await.unwrap());
    a.commit(&market, &batch(0), 32).await.unwrap();
    market.next_block = 10;
    assert_eq!(
        a.heartbeat("a", &[(market.id, epoch)]).await.unwrap().len(),
        1
    );

    // a's lease runs out (as if it had been cut off for 5 s); b takes over.
    sqlx::query("UPDATE market_owners SET expires_at = 0")
        .execute(a.pool())
        .await
        .unwrap();
    let Bid::Won { epoch: next } = b.try_acquire(market.id, "b").await.unwrap() else {
        panic!("an expired lease is won");
    };
    assert_eq!(next, epoch + 1);
    assert!(!a.owns_every_market("a").await.unwrap());
    let refused = a.commit(&market, &batch(10), 32).await.unwrap_err();
    assert!(
        matches!(refused, StoreError::NotOwner { .. }),
        "{kind:?}: {refused}"
    );
    assert_eq!(
        a.next_block(market.id).await.unwrap(),
        10,
        "nothing written"
    );
    let head = a.record_head(&market, 99).await.unwrap_err();
    assert!(
        matches!(head, StoreError::NotOwner { .. }),
        "{kind:?}: {head}"
    );
    assert!(
        a.heartbeat("a", &[(market.id, epoch)])
            .await
            .unwrap()
            .is_empty()
    );
    // b writes under its own epoch.
    market.lease_epoch = Some(next);
    b.commit(&market, &batch(10), 32).await.unwrap();
    assert_eq!(b.next_block(market.id).await.unwrap(), 20);
    // a's run, not yet told, commits the batch it fetched before the takeover: the checkpoint
    // moved under it, and that is the lost lease (stand by), not another indexer's write (a
    // fatal error that stopped the process in a CI run).
    market.lease_epoch = Some(epoch);
    let stale = a.commit(&market, &batch(10), 32).await.unwrap_err();
    assert!(
        matches!(stale, StoreError::NotOwner { .. }),
        "{kind:?}: {stale}"
    );
}

#[tokio::test]
async fn a_commit_under_a_lost_lease_is_refused_postgres() {
    fence_test(Db::Postgres).await;
}

#[tokio::test]
async fn a_commit_under_a_lost_lease_is_refused_sqlite() {
    fence_test(Db::Sqlite).await;
}
