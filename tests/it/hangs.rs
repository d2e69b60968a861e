//! A trader never left guessing: a provider that never answers, receipts that never come, Ctrl-C
//! after sending, and a stdout that is closed or full. Through a real proxy in front of anvil
//! that holds chosen calls forever (the shared one, in [`Mode::Hung`] or [`Mode::HangOn`]: the
//! fault anvil itself cannot produce), the `keymarket` binary ends within `--timeout` + 2 s,
//! tells the hash of what it sent, and sends nothing twice.

use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use alloy::{primitives::Address, providers::Provider};
use serde_json::Value;

use crate::{
    common::{Chain, dev_key},
    proxy::{Mode, Proxy},
};

/// A proxy in front of `upstream` in `mode` (one that holds chosen calls forever); its URL.
async fn hanging_proxy(upstream: String, mode: Mode) -> String {
    let proxy = Proxy::start(upstream).await;
    proxy.set(mode);
    proxy.url.clone()
}

fn keymarket(rpc: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_keymarket"));
    cmd.args(args)
        .env("KEYMARKET_RPC_URL", rpc)
        .env("NO_COLOR", "1")
        .env_remove("KEYMARKET_PRIVATE_KEY");
    cmd
}

/// Runs to the end; (exit code, stdout, stderr, how long it took).
fn run(mut cmd: Command) -> (Option<i32>, String, String, Duration) {
    let started = Instant::now();
    let out = cmd.output().unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("stack backtrace"),
        "no panic, no backtrace: {stderr}"
    );
    (out.status.code(), stdout, stderr, started.elapsed())
}

/// The first key holder's subject of the simulated market, and the deployment file.
async fn market(chain: &Chain) -> (String, std::path::PathBuf) {
    chain.trade(40, 3, 20, 60).await;
    let dir = std::env::temp_dir().join(format!(
        "keymarket-hangs-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let deployment = dir.join("deployment.json");
    chain.deployment.write(&deployment).unwrap();
    let logs = chain.logs().await;
    let trade = logs
        .iter()
        .find(|l| l.topic0() == Some(&keymarket_contracts::TRADE_TOPIC))
        .unwrap();
    let t = <keymarket_contracts::KeyMarket::Trade as alloy::sol_types::SolEvent>::decode_log_data(
        trade.data(),
    )
    .unwrap();
    (t.subject.to_string(), deployment)
}

/// A provider that never answers: every reading command ends within --timeout + 2 s, in words.
#[tokio::test(flavor = "multi_thread")]
async fn a_provider_that_never_answers_bounds_every_command() {
    let chain = Chain::new().await;
    let (subject, deployment) = market(&chain).await;
    let d = deployment.to_str().unwrap();
    let silent = hanging_proxy(chain.rpc_url(), Mode::Hung).await;
    let hash = "0x".to_string() + &"ab".repeat(32);
    for args in [
        vec![
            "quote",
            "buy",
            &subject,
            "1",
            "--deployment",
            d,
            "--timeout",
            "3",
        ],
        vec!["portfolio", &subject, "--deployment", d, "--timeout", "3"],
        vec!["tx", &hash, "--timeout", "3"],
        vec![
            "buy",
            &subject,
            "1",
            "--dev-account",
            "21",
            "--deployment",
            d,
            "--timeout",
            "3",
        ],
    ] {
        let (code, _, err, took) = run(keymarket(&silent, &args));
        assert_eq!(code, Some(1), "{args:?}: {err}");
        assert!(took < Duration::from_secs(5), "{args:?} took {took:?}");
        assert!(
            err.contains("within --timeout 3s") || err.contains("within 3s"),
            "{args:?}: {err}"
        );
    }
    // --json: the error is one JSON object on stdout.
    let (code, out, _, _) = run(keymarket(
        &silent,
        &[
            "quote",
            "buy",
            &subject,
            "1",
            "--deployment",
            d,
            "--timeout",
            "2",
            "--json",
        ],
    ));
    assert_eq!(code, Some(1));
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--timeout 2s"),
        "{out}"
    );
}

/// Receipts that never come: the buy is sent once, its hash told at send time and again at the
/// end, and the command ends within --timeout + 2 s; `keymarket tx` then finds it mined.
#[tokio::test(flavor = "multi_thread")]
async fn receipts_that_never_come_end_with_the_hash() {
    let chain = Chain::new().await;
    let (subject, deployment) = market(&chain).await;
    let d = deployment.to_str().unwrap();
    let no_receipts =
        hanging_proxy(chain.rpc_url(), Mode::HangOn("eth_getTransactionReceipt")).await;
    let trader: Address = dev_key(22).address();
    let nonce = chain.provider.get_transaction_count(trader).await.unwrap();
    let (code, out, err, took) = run(keymarket(
        &no_receipts,
        &[
            "buy",
            &subject,
            "1",
            "--dev-account",
            "22",
            "--deployment",
            d,
            "--timeout",
            "6",
            "--json",
        ],
    ));
    assert_eq!(code, Some(1), "{err}");
    assert!(took < Duration::from_secs(8), "took {took:?}");
    let sent: Value =
        serde_json::from_str(err.lines().find(|l| l.starts_with("{\"sent\"")).unwrap()).unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["error"]["tx"], sent["sent"], "{out}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("was sent and may still be mined") && message.contains("keymarket tx 0x"),
        "{message}"
    );
    assert_eq!(
        chain.provider.get_transaction_count(trader).await.unwrap(),
        nonce + 1,
        "sent exactly once"
    );
    // The real provider knows it: mined, its Trade decoded.
    let hash = sent["sent"].as_str().unwrap();
    let (code, out, err, _) = run(keymarket(&chain.rpc_url(), &["tx", hash, "--json"]));
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["status"], "mined");
    assert_eq!(v["trades"][0]["isBuy"], true);
    assert_eq!(v["trades"][0]["trader"], trader.to_string());
}

/// Ctrl-C while waiting for the receipt: exit 130 at once with the hash and how to check it; the
/// trade is on the chain once.
#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_after_sending_tells_the_hash() {
    let chain = Chain::new().await;
    let (subject, deployment) = market(&chain).await;
    let d = deployment.to_str().unwrap();
    let no_receipts =
        hanging_proxy(chain.rpc_url(), Mode::HangOn("eth_getTransactionReceipt")).await;
    let trader: Address = dev_key(23).address();
    let nonce = chain.provider.get_transaction_count(trader).await.unwrap();
    let mut child = keymarket(
        &no_receipts,
        &[
            "buy",
            &subject,
            "1",
            "--dev-account",
            "23",
            "--deployment",
            d,
            "--timeout",
            "120",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut shown = String::new();
    // Read until the hash is told (the process then waits for the receipt that never comes).
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "the hash is told: {shown}"
        );
        shown.push_str(&line);
        if line.starts_with("sent tx 0x") {
            break;
        }
    }
    let hash = shown.split("sent tx ").nth(1).unwrap()[..66].to_string();
    let interrupted = Instant::now();
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(interrupted.elapsed() < Duration::from_secs(2));
    assert!(
        rest.contains(&format!("tx {hash} was sent and may still be mined"))
            && rest.contains(&format!("keymarket tx {hash}")),
        "{rest}"
    );
    assert!(!rest.contains("panicked"), "{rest}");
    // anvil mines what it accepted a moment later on a busy machine: wait for this hash's
    // receipt (straight from anvil), then count what the trader sent.
    let hash: alloy::primitives::TxHash = hash.parse().unwrap();
    let mined = async {
        while chain
            .provider
            .get_transaction_receipt(hash)
            .await
            .unwrap()
            .is_none()
        {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), mined)
        .await
        .expect("the sent transaction is mined");
    assert_eq!(
        chain.provider.get_transaction_count(trader).await.unwrap(),
        nonce + 1,
        "sent once"
    );
}

/// A stdout that is closed early or full: no panic, the shell's status for a closed pipe (or 0)
/// and an error in words for a full disk.
#[tokio::test(flavor = "multi_thread")]
async fn a_closed_or_full_stdout_ends_quietly() {
    let chain = Chain::new().await;
    let (subject, deployment) = market(&chain).await;
    let d = deployment.to_str().unwrap();
    let bin = env!("CARGO_BIN_EXE_keymarket");
    let rpc = chain.rpc_url();
    let piped = Command::new("bash")
        .args([
            "-c",
            &format!("'{bin}' quote buy {subject} 1 --deployment '{d}' --rpc-url {rpc} | head -1; echo \"status=${{PIPESTATUS[0]}}\" >&2"),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&piped.stderr);
    assert!(
        err.contains("status=0") || err.contains("status=141"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&piped.stdout).lines().count(), 1);
    let full = Command::new(bin)
        .args([
            "quote",
            "buy",
            &subject,
            "1",
            "--deployment",
            d,
            "--rpc-url",
            &rpc,
        ])
        .stdout(std::fs::File::create("/dev/full").unwrap())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&full.stderr);
    assert_eq!(full.status.code(), Some(1), "{err}");
    assert!(
        err.contains("cannot write the output") && !err.contains("panicked"),
        "{err}"
    );
}
