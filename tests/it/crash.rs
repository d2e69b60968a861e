//! Crash safety: the real `keymarket index` process is SIGKILLed at random moments during the
//! backfill and while following a live chain, and restarted each time; the final database equals
//! that of an uninterrupted run and the recomputation from the chain — no gap, no duplicate.

use std::{process::Stdio, time::Duration};

use keymarket_indexer::Store;
use tokio::process::Command;

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
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymarket"));
    cmd.args([
        "index",
        "--rpc-url",
        &chain.rpc_url(),
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
    let store = Store::connect(&clean).await.unwrap();
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
