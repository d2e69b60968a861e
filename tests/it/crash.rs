//! Crash safety: the real `keymarket index` process is SIGKILLed at random moments during the
//! backfill and while following a live chain, and restarted each time; the final database equals
//! that of an uninterrupted run and the recomputation from the chain — no gap, no duplicate.
//! SIGTERM and SIGINT stop `index` and `serve` cleanly, with exit status 0.

use std::{
    process::Stdio,
    time::{Duration, Instant},
};

use keymarket_indexer::StoreWriter;
use tokio::{io::AsyncReadExt, process::Command};

use crate::common::{Chain, Db, assert_same, dump, fresh_db, recompute};

/// A small deterministic generator for kill delays (xorshift).
struct Delays(u64);

impl Delays {
    fn next_ms(&mut self, lo: u64, hi: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        lo + self.0 % (hi - lo)
    }
}

fn index_cmd(chain: &Chain, url: &str, follow: bool) -> Command {
    index_cmd_via(&chain.rpc_url(), chain, url, follow)
}

/// `keymarket index` of the chain's market through the RPC at `rpc_url`.
fn index_cmd_via(rpc_url: &str, chain: &Chain, url: &str, follow: bool) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymarket"));
    cmd.args([
        "index",
        "--rpc-url",
        rpc_url,
        "--database-url",
        url,
        "--quiet",
    ])
    .args([
        "--market",
        &format!(
            "{}@{}",
            chain.deployment.address, chain.deployment.deploy_block
        ),
    ])
    .args([
        "--initial-range",
        "2",
        "--max-range",
        "3",
        "--concurrency",
        "2",
        "--window",
        "32",
        // A long backfill from the 500th trade on: kills land in its deferred batches and the
        // aggregate build at the head too.
        "--bulk-min-trades",
        "500",
    ])
    .env("RUST_LOG", "warn")
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .kill_on_drop(true);
    if follow {
        cmd.arg("--follow");
    }
    cmd
}

/// Starts the indexer and SIGKILLs it after a random delay; returns whether it was still running
/// (a real kill) rather than already finished.
async fn run_and_kill(chain: &Chain, url: &str, follow: bool, delay_ms: u64) -> bool {
    let mut child = index_cmd(chain, url, follow)
        .spawn()
        .expect("keymarket binary runs");
    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
    match child.try_wait().unwrap() {
        Some(status) => {
            assert!(status.success(), "the indexer failed on its own: {status}");
            false
        }
        None => {
            child.kill().await.unwrap(); // SIGKILL
            true
        }
    }
}

async fn crash_test(kind: Db) {
    let chain = Chain::new().await;
    chain.trade(6_000, 51, 10, 300).await; // ~600 blocks
    let url = fresh_db(kind, "crash").await;
    let mut delays = Delays(0x9e37_79b9_7f4a_7c15);

    // Backfill, killed again and again (until it completes, after which runs finish first).
    let mut kills = 0;
    for _ in 0..30 {
        kills += u32::from(run_and_kill(&chain, &url, false, delays.next_ms(10, 250)).await);
    }
    assert!(kills >= 3, "kills during the backfill: {kills}");
    // Live following while trades keep coming, killed again and again (a follower never exits
    // by itself, so each of these is a real kill).
    let mut live_kills = 0;
    for round in 0.. {
        if round >= 10 && kills + live_kills >= 20 {
            break;
        }
        let trading = chain.trade(150, 60 + round, 15, 300);
        let killing = run_and_kill(&chain, &url, true, delays.next_ms(50, 600));
        let ((), killed) = tokio::join!(trading, killing);
        live_kills += u32::from(killed);
    }
    assert!(
        kills + live_kills >= 20,
        "at least 20 real kills ({kills} in backfill, {live_kills} live)"
    );
    assert!(live_kills >= 5, "kills while following: {live_kills}");

    // Finish without interruption.
    let status = index_cmd(&chain, &url, false).status().await.unwrap();
    assert!(status.success());

    let want = recompute(chain.deployment.chain_id, &chain.logs().await);
    let got = dump(&url, &chain).await;
    assert_same(
        &format!("{kind:?} after {} kills", kills + live_kills),
        &got,
        &want,
    );

    // And the same as an uninterrupted run into a fresh database.
    let clean = fresh_db(kind, "clean").await;
    let store = StoreWriter::connect(&clean).await.unwrap();
    keymarket_indexer::run(
        &chain.provider,
        &store,
        chain.spec(),
        &keymarket_indexer::IndexerConfig::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        dump(&clean, &chain).await,
        got,
        "killed run == uninterrupted run"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing_sqlite() {
    crash_test(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigkill_at_random_moments_loses_and_duplicates_nothing_postgres() {
    crash_test(Db::Postgres).await;
}

/// A loopback port nothing listens on (the OS's choice, released at once).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Sends `signal` (TERM, INT, STOP, CONT) to a process.
pub(crate) fn signal(name: &str, pid: u32) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name} {pid}");
}

/// Stops a running child with `name` and returns its exit status, stderr and how long it took.
async fn stop_child(
    mut child: tokio::process::Child,
    name: &str,
) -> (std::process::ExitStatus, String, Duration) {
    let sent = Instant::now();
    signal(name, child.id().expect("running"));
    // A guard against a hang, not a timing assertion: a clean stop takes well under a second.
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
        .await
        .unwrap_or_else(|_| panic!("still running 60 s after SIG{name}"))
        .unwrap();
    let took = sent.elapsed();
    let mut stderr = String::new();
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut stderr).await.unwrap();
    }
    (status, stderr, took)
}

/// Whether the indexer has registered its market in the database at `url`, read without
/// touching the schema (a `StoreWriter::connect` would run the migrations, racing the indexer's own).
async fn registered(url: &str) -> bool {
    sqlx::any::install_default_drivers();
    let Ok(pool) = sqlx::AnyPool::connect(url).await else {
        return false;
    };
    let found = sqlx::query("SELECT next_block FROM markets WHERE id = 1")
        .fetch_optional(&pool)
        .await
        .is_ok_and(|r| r.is_some());
    pool.close().await;
    found
}

async fn sigterm_test(kind: Db) {
    let chain = Chain::new().await;
    chain.trade(3_000, 71, 10, 300).await; // ~300 blocks
    let url = fresh_db(kind, "sigterm").await;
    let logs = chain.logs().await;
    for (i, name) in ["TERM", "INT", "TERM", "TERM"].into_iter().enumerate() {
        let child = index_cmd(&chain, &url, true)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Once it has started (registered the market; a loaded machine may take a while to
        // start a process), stop it at a different moment each time.
        while !registered(&url).await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(100 + 400 * i as u64)).await;
        let (status, stderr, took) = stop_child(child, name).await;
        println!("{kind:?}: SIG{name} -> {status} in {took:?}");
        assert!(
            status.success(),
            "exit status after SIG{name}: {status}\n{stderr}"
        );
        assert!(
            stderr.contains("stopped: market"),
            "says where it stopped: {stderr}"
        );
        // The checkpoint matches the data: every trade below it is stored, none above.
        let store = StoreWriter::connect(&url).await.unwrap();
        let next = store.next_block(1).await.unwrap();
        let below = logs
            .iter()
            .filter(|l| {
                l.topics().first() == Some(&keymarket_contracts::TRADE_TOPIC)
                    && l.block_number.unwrap() < next
            })
            .count();
        assert_eq!(
            store.raw_trades(1).await.unwrap() as usize,
            below,
            "{kind:?}: trades stored after SIG{name} at checkpoint {next}"
        );
    }
    let status = index_cmd(&chain, &url, false).status().await.unwrap();
    assert!(status.success());
    assert_same(
        &format!("{kind:?} after clean stops"),
        &dump(&url, &chain).await,
        &recompute(chain.deployment.chain_id, &logs),
    );

    if kind == Db::Sqlite {
        // `serve` drains and exits 0 too.
        let (child, _) = crate::common::serve(&["--database-url", &url], Stdio::piped()).await;
        let (status, stderr, took) = stop_child(child, "TERM").await;
        println!("serve: SIGTERM -> {status} in {took:?}");
        assert!(status.success(), "serve's exit status: {status}\n{stderr}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_sigint_stop_cleanly_sqlite() {
    sigterm_test(Db::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_and_sigint_stop_cleanly_postgres() {
    sigterm_test(Db::Postgres).await;
}

/// The machine's PostgreSQL cluster, restarted by the test; started again when the test ends,
/// whether it passed or not.
struct PostgresCluster(String);

impl PostgresCluster {
    fn new() -> Self {
        let version = std::fs::read_dir("/etc/postgresql")
            .expect("a Debian PostgreSQL cluster (/etc/postgresql)")
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .min()
            .expect("a PostgreSQL version");
        Self(version)
    }

    fn ctl(&self, action: &str) -> bool {
        std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect", &self.0, "main", action])
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Restarts the server (fast shutdown: open connections are terminated "due to
    /// administrator command").
    fn restart(&self) {
        assert!(self.ctl("restart"), "pg_ctlcluster {} main restart", self.0);
    }
}

impl Drop for PostgresCluster {
    fn drop(&mut self) {
        let ready = std::process::Command::new("pg_isready")
            .args(["-h", "127.0.0.1", "-p", "5432"])
            .status()
            .is_ok_and(|s| s.success());
        if !ready {
            self.ctl("start");
        }
    }
}

/// Waits until the indexer process has indexed the chain's head, reading the checkpoint through
/// fresh connections (the server may be restarting); fails if the process ended.
async fn process_caught_up(chain: &Chain, url: &str, child: &mut tokio::process::Child) {
    let head = alloy::providers::Provider::get_block_number(&chain.provider)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        assert!(
            child.try_wait().unwrap().is_none(),
            "the indexer exited by itself"
        );
        if let Ok(store) = StoreWriter::connect(url).await
            && store.next_block(1).await.is_ok_and(|n| n > head)
            // (and a long backfill's aggregates built there)
            && store.aggregates_from(1).await.is_ok_and(|a| a.is_none())
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "the indexer did not reach block {head}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// PostgreSQL's connections terminated again and again and the server restarted mid-backfill,
/// and restarted again while following: the indexer rolls back, waits,
/// reconnects and carries on by itself; nothing lost, nothing counted twice. Restarting the
/// machine's server disturbs every other PostgreSQL test, so this one runs alone, in its own
/// stage of scripts/test.sh (`--ignored`).
#[tokio::test(flavor = "multi_thread")]
#[ignore = "restarts the machine's PostgreSQL: run alone (scripts/test.sh does)"]
async fn postgres_restarts_are_waited_out() {
    let cluster = PostgresCluster::new();
    let chain = Chain::new().await;
    chain.trade(4_000, 75, 10, 300).await; // ~400 blocks
    let url = fresh_db(Db::Postgres, "restart").await;
    // A slow provider, so that the backfill lasts (~20 s).
    let proxy = crate::proxy::Proxy::start(chain.rpc_url()).await;
    proxy.slow_logs(Duration::from_millis(300));
    let mut child = index_cmd_via(&proxy.url, &chain, &url, true)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-backfill.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let store = StoreWriter::connect(&url).await.unwrap();
        if store.next_block(1).await.unwrap_or(0) > chain.deployment.deploy_block + 20 {
            break;
        }
        assert!(Instant::now() < deadline, "the backfill started");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Connections terminated "due to administrator command" (what a restart or failover does to
    // them) again and again for 2 s, so that some land inside a transaction.
    let db = url.rsplit('/').next().unwrap().to_string();
    let admin = sqlx::AnyPool::connect(&url).await.unwrap();
    let storm = Instant::now();
    let mut terminated = 0u64;
    while storm.elapsed() < Duration::from_secs(2) {
        let q = format!(
            "SELECT CAST(COUNT(pg_terminate_backend(pid)) AS BIGINT) FROM pg_stat_activity \
             WHERE datname = '{db}' AND pid <> pg_backend_pid()"
        );
        let n: i64 = sqlx::Row::get(
            &sqlx::query(sqlx::AssertSqlSafe(q))
                .fetch_one(&admin)
                .await
                .unwrap(),
            0,
        );
        terminated += n as u64;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    admin.close().await;
    assert!(terminated > 0, "the indexer's connections were terminated");
    cluster.restart();
    let head = alloy::providers::Provider::get_block_number(&chain.provider)
        .await
        .unwrap();
    let store = StoreWriter::connect(&url).await.unwrap();
    assert!(
        store.next_block(1).await.unwrap() <= head,
        "the restart came mid-backfill"
    );
    drop(store);
    proxy.slow_logs(Duration::ZERO);
    process_caught_up(&chain, &url, &mut child).await;
    // While following, with trades arriving.
    let trading = chain.trade(300, 76, 15, 300);
    let restarting = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        cluster.restart();
    };
    tokio::join!(trading, restarting);
    process_caught_up(&chain, &url, &mut child).await;
    let (status, stderr, took) = stop_child(child, "TERM").await;
    println!("after two PostgreSQL restarts: SIGTERM -> {status} in {took:?}");
    assert!(status.success(), "{status}\n{stderr}");
    assert!(
        stderr.contains("database unavailable"),
        "the restarts were met and waited out: {stderr}"
    );
    assert_same(
        "PostgreSQL after two restarts",
        &dump(&url, &chain).await,
        &recompute(chain.deployment.chain_id, &chain.logs().await),
    );
}

/// The machine's PostgreSQL down just as the indexer repairs (a trade left out of an answer is
/// found by the next range's arithmetic): the repair's reads and rollback fail, are waited out
/// while the server is down, and done once it is back; the database ends equal to the chain.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "stops the machine's PostgreSQL: run alone (scripts/test.sh does)"]
async fn a_postgres_restart_during_a_repair_is_waited_out() {
    use std::sync::atomic::Ordering;
    let cluster = PostgresCluster::new();
    let chain = Chain::new().await;
    chain.trade(1_200, 77, 15, 900).await;
    let proxy = crate::proxy::Proxy::start(chain.rpc_url()).await;
    let (f, _) =
        crate::provider::left_out_then_held(&chain, &proxy, Db::Postgres, "pg_in_repair").await;
    assert!(cluster.ctl("stop"), "pg_ctlcluster stop");
    let before = f.counts.database.load(Ordering::Relaxed);
    // The next range shows the trade left out: the repair is the first to need the database.
    proxy.open_gate();
    let deadline = Instant::now() + Duration::from_secs(120);
    while f.counts.database.load(Ordering::Relaxed) == before {
        assert!(!f.task.is_finished(), "the indexer stopped");
        assert!(
            Instant::now() < deadline,
            "the repair met the stopped server"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(cluster.ctl("start"), "pg_ctlcluster start");
    crate::provider::caught_up(&chain, std::slice::from_ref(&f)).await;
    let reports =
        crate::provider::stop_and_compare(&chain, vec![f], "after a restart during a repair").await;
    assert!(reports[0].repairs >= 1, "{:?}", reports[0]);
    assert!(reports[0].database_retries >= 1, "{:?}", reports[0]);
}

/// `keymarket up` (anvil, deployment, trading, the indexer following, the API) stops cleanly on
/// SIGTERM once it serves: exit status 0, anvil gone, the database consistent with the chain up
/// to the checkpoint it reports.
#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_up_cleanly() {
    let (anvil_port, api_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(format!("keymarket-up-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("up.db");
    let child = Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args(["up", "--trades", "300", "--port", &anvil_port.to_string()])
        .arg("--listen")
        .arg(format!("127.0.0.1:{api_port}"))
        .arg("--deployment")
        .arg(dir.join("deployment.json"))
        .arg("--database-url")
        .arg(format!("sqlite:{}", db.display()))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let client = reqwest::Client::new();
    let overview = format!("http://127.0.0.1:{api_port}/v1/overview");
    let deadline = Instant::now() + Duration::from_secs(240);
    while !client
        .get(&overview)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "up serves the API");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The default history is friend.tech's two-month arc: at least 30 distinct days, ending
    // about now (the chain started 60 days ago).
    let daily: serde_json::Value = client
        .get(format!("http://127.0.0.1:{api_port}/v1/daily"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let days = daily["days"].as_array().unwrap();
    assert!(days.len() >= 30, "{} days of trades", days.len());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let latest: serde_json::Value = client
        .get(format!("http://127.0.0.1:{api_port}/v1/trades?limit=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let at = latest["trades"][0]["time"].as_i64().unwrap();
    assert!(
        (now - 2 * 86_400..=now + 86_400).contains(&at),
        "the history ends about now: latest trade at {at}, now {now}"
    );
    // Let live trading and following run a little.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, stderr, took) = stop_child(child, "TERM").await;
    println!("up: SIGTERM -> {status} in {took:?}");
    assert!(status.success(), "up's exit status: {status}\n{stderr}");
    assert!(stderr.contains("anvil stopped"), "{stderr}");
    let anvil_gone = std::net::TcpStream::connect(("127.0.0.1", anvil_port)).is_err();
    assert!(anvil_gone, "anvil stopped with up");
    let store = StoreWriter::connect(&format!("sqlite:{}", db.display()))
        .await
        .unwrap();
    let next = store.next_block(1).await.unwrap();
    assert!(next > 1, "indexed before the stop");
    let _ = std::fs::remove_dir_all(&dir);
}
