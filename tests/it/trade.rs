//! The trading CLI as a trader runs it: the `keymarket` binary against a real anvil and the
//! compiled market, its results checked against the contract's views, balances and events.

use std::time::Duration;

use alloy::{
    primitives::{Address, U256},
    providers::{Provider, ProviderBuilder},
    rpc::types::Filter,
};
use keymarket_contracts::{
    FriendtechLayout, KeyMarket,
    trade::{self, Side, TradeError},
};
use serde_json::Value;

use crate::common::Chain;

/// Runs `keymarket ARGS` against `rpc`; (exit success, stdout, stderr).
fn keymarket(rpc: &str, args: &[&str]) -> (bool, String, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
        .args(args)
        .env("KEYMARKET_RPC_URL", rpc)
        .env_remove("KEYMARKET_PRIVATE_KEY")
        .env("NO_COLOR", "1")
        .output()
        .expect("the keymarket binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed with `--json`, and parses its output.
fn json(rpc: &str, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let (ok, out, err) = keymarket(rpc, &all);
    assert!(ok, "keymarket {args:?} failed: {err}");
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {out}"))
}

/// Runs a command that must fail; its stderr.
fn refused(rpc: &str, args: &[&str]) -> String {
    let (ok, out, err) = keymarket(rpc, args);
    assert!(!ok, "keymarket {args:?} should fail: {out}");
    assert!(
        !err.contains("stack backtrace") && !err.contains("Location:"),
        "no backtrace unless asked: {err}"
    );
    err
}

fn wei(v: &Value) -> U256 {
    v["wei"].as_str().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_trading_cli_quotes_trades_and_refuses_clearly() {
    let chain = Chain::new().await;
    let rpc = chain.anvil.endpoint();
    let dir = tempfile_dir();
    let dep = dir.join("deployment.json");
    chain.deployment.write(&dep).unwrap();
    let dep = dep.to_str().unwrap();
    let market = KeyMarket::new(chain.deployment.address, &chain.provider);
    let accounts = chain.provider.get_accounts().await.unwrap();
    let (subject, trader, rival) = (accounts[5], accounts[6], accounts[8]);
    let subject_s = subject.to_string();
    let d = ["--deployment", dep];

    // A subject opens its keys on the steep curve.
    let launched = json(
        &rpc,
        &[
            &["launch", "2", "--curve", "steep", "--dev-account", "5"][..],
            &d,
        ]
        .concat(),
    );
    assert_eq!(launched["curve"], 1);
    assert_eq!(
        market.sharesSupply(subject).call().await.unwrap(),
        U256::from(2)
    );
    assert_eq!(market.subjectCurve(subject).call().await.unwrap(), 1);

    // The quote equals the contract's views.
    let q = json(&rpc, &[&["quote", "buy", &subject_s, "3"][..], &d].concat());
    let view = market
        .quoteBuy(subject, U256::from(3))
        .call()
        .await
        .unwrap();
    assert_eq!(wei(&q["price"]), view.price);
    assert_eq!(wei(&q["protocolFee"]), view.protocolFee);
    assert_eq!(wei(&q["subjectFee"]), view.subjectFee);
    assert_eq!(wei(&q["total"]), view.total);
    assert_eq!(
        wei(&q["nextPrice"]),
        market
            .getPriceOnCurve(1, U256::from(5), U256::from(1))
            .call()
            .await
            .unwrap()
    );

    // A buy: the Trade event's values, the holder's balance and ETH.
    let before = chain.provider.get_balance(trader).await.unwrap();
    let bought = json(
        &rpc,
        &[&["buy", &subject_s, "3", "--dev-account", "6"][..], &d].concat(),
    );
    assert_eq!(bought["isBuy"], true);
    assert_eq!(bought["shareAmount"], "3");
    assert_eq!(wei(&bought["ethAmount"]), view.price);
    assert_eq!(wei(&bought["total"]), view.total);
    assert_eq!(
        market.sharesBalance(subject, trader).call().await.unwrap(),
        U256::from(3)
    );
    let after = chain.provider.get_balance(trader).await.unwrap();
    assert_eq!(
        before - after,
        view.total + wei(&bought["gasFee"]),
        "paid the quote (the bound's excess refunded) and gas"
    );

    // A sell.
    let sell_view = market
        .quoteSell(subject, U256::from(1))
        .call()
        .await
        .unwrap();
    let sold = json(
        &rpc,
        &[&["sell", &subject_s, "1", "--dev-account", "6"][..], &d].concat(),
    );
    assert_eq!(sold["isBuy"], false);
    assert_eq!(wei(&sold["total"]), sell_view.proceeds);
    assert_eq!(
        market.sharesBalance(subject, trader).call().await.unwrap(),
        U256::from(2)
    );

    // The price moves past a bound: refused before sending — nonce and balance unchanged.
    let q = json(&rpc, &[&["quote", "buy", &subject_s, "1"][..], &d].concat());
    let bound = alloy::primitives::utils::format_ether(wei(&q["total"]));
    json(
        &rpc,
        &[&["buy", &subject_s, "4", "--dev-account", "8"][..], &d].concat(),
    );
    let nonce = chain.provider.get_transaction_count(trader).await.unwrap();
    let balance = chain.provider.get_balance(trader).await.unwrap();
    let err = refused(
        &rpc,
        &[
            &[
                "buy",
                &subject_s,
                "1",
                "--dev-account",
                "6",
                "--max-cost",
                &bound,
            ][..],
            &d,
        ]
        .concat(),
    );
    assert!(
        err.contains("your bound is below the quote") && err.contains("nothing was sent"),
        "{err}"
    );
    assert_eq!(
        chain.provider.get_transaction_count(trader).await.unwrap(),
        nonce
    );
    assert_eq!(chain.provider.get_balance(trader).await.unwrap(), balance);
    assert!(market.sharesBalance(subject, rival).call().await.unwrap() == U256::from(4));

    // The subject withdraws its fees: exactly what was withdrawable.
    let owed = market.withdrawable(subject).call().await.unwrap();
    assert!(owed > U256::ZERO);
    let w = json(
        &rpc,
        &[&["withdraw", "--dev-account", "5"][..], &d].concat(),
    );
    assert_eq!(wei(&w["withdrawn"]), owed);
    assert_eq!(
        market.withdrawable(subject).call().await.unwrap(),
        U256::ZERO
    );
    let err = refused(
        &rpc,
        &[&["withdraw", "--dev-account", "5"][..], &d].concat(),
    );
    assert!(err.contains("nothing to withdraw"), "{err}");

    // The portfolio: keys and their sell value now.
    let p = json(
        &rpc,
        &[&["portfolio", &trader.to_string()][..], &d].concat(),
    );
    assert_eq!(p["keys"][0]["balance"], "2");
    assert_eq!(
        wei(&p["keys"][0]["sellValue"]),
        market
            .quoteSell(subject, U256::from(2))
            .call()
            .await
            .unwrap()
            .proceeds
    );

    // An expired deadline: the simulation refuses it in words, nothing is sent.
    let signer = crate::common::dev_key(6);
    let wallet = ProviderBuilder::new()
        .wallet(signer)
        .connect_http(chain.anvil.endpoint_url());
    let now = chain
        .provider
        .get_block_by_number(Default::default())
        .await
        .unwrap()
        .unwrap()
        .header
        .timestamp;
    let tx = trade::trade_tx(
        trade::Flavor::KeyMarket,
        chain.deployment.address,
        Side::Buy,
        subject,
        U256::from(1),
        U256::ZERO,
        U256::from(10).pow(U256::from(18)),
        None,
        U256::from(now - 1),
    );
    let nonce = chain.provider.get_transaction_count(trader).await.unwrap();
    match trade::simulate(&wallet, trader, &tx).await {
        Err(TradeError::WouldRevert(why)) => assert!(why.contains("deadline passed"), "{why}"),
        other => panic!("an expired deadline must be refused: {other:?}"),
    }
    assert_eq!(
        chain.provider.get_transaction_count(trader).await.unwrap(),
        nonce
    );

    // A deployment file of another chain.
    let mut other = chain.deployment.clone();
    other.chain_id = 8_453;
    let wrong = dir.join("other-chain.json");
    other.write(&wrong).unwrap();
    let err = refused(
        &rpc,
        &[
            "quote",
            "buy",
            &subject_s,
            "1",
            "--deployment",
            wrong.to_str().unwrap(),
        ],
    );
    assert!(
        err.contains("is for chain 8453") && err.contains("31337"),
        "{err}"
    );

    // An encrypted keystore: the right password trades, a wrong one is refused clearly.
    // Written by Foundry's `cast wallet new`, as a trader would.
    let cast = keymarket_contracts::toolchain::repo_root()
        .join("node_modules/@foundry-rs/cast-linux-amd64/bin/cast");
    let out = std::process::Command::new(cast)
        .args([
            "wallet",
            "new",
            dir.to_str().unwrap(),
            "trader.json",
            "--unsafe-password",
            "right horse",
            "--json",
        ])
        .output()
        .expect("cast runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let made: Value = serde_json::from_slice(&out.stdout).unwrap();
    let owner: Address = made[0]["address"].as_str().unwrap().parse().unwrap();
    let fund = alloy::rpc::types::TransactionRequest::default()
        .from(accounts[9])
        .to(owner)
        .value(U256::from(10).pow(U256::from(18)));
    chain
        .provider
        .send_transaction(fund)
        .await
        .unwrap()
        .get_receipt()
        .await
        .unwrap();
    let keystore = dir.join("trader.json");
    let (right, wrong_pw) = (dir.join("right"), dir.join("wrong"));
    std::fs::write(&right, "right horse\n").unwrap();
    std::fs::write(&wrong_pw, "battery staple\n").unwrap();
    let ks = keystore.to_str().unwrap();
    let err = refused(
        &rpc,
        &[
            &[
                "buy",
                &subject_s,
                "1",
                "--keystore",
                ks,
                "--password-file",
                wrong_pw.to_str().unwrap(),
            ][..],
            &d,
        ]
        .concat(),
    );
    assert!(err.contains("wrong password"), "{err}");
    let ok = json(
        &rpc,
        &[
            &[
                "buy",
                &subject_s,
                "1",
                "--keystore",
                ks,
                "--password-file",
                right.to_str().unwrap(),
            ][..],
            &d,
        ]
        .concat(),
    );
    assert_eq!(
        ok["trader"].as_str().unwrap().parse::<Address>().unwrap(),
        owner
    );

    // Without --password-file the password is asked on the terminal, without echo: run under a
    // pseudo-terminal (util-linux `script`), typed once the prompt shows.
    let before = market.sharesBalance(subject, owner).call().await.unwrap();
    let typed = prompt_and_type(
        &rpc,
        &format!(
            "{} buy {subject_s} 1 --keystore {ks} --deployment {dep} --json",
            env!("CARGO_BIN_EXE_keymarket")
        ),
        "right horse",
    );
    assert!(typed.contains("password for"), "{typed}");
    assert!(
        !typed.contains("right horse"),
        "the password is not echoed: {typed}"
    );
    assert!(typed.contains("\"isBuy\":true"), "{typed}");
    assert_eq!(
        market.sharesBalance(subject, owner).call().await.unwrap(),
        before + U256::from(1)
    );

    // anvil's keys are refused on a chain that is not a dev chain.
    let mainnet_like = crate::common::anvil_at(10)
        .chain_id(8_453)
        .try_spawn()
        .unwrap();
    let err = refused(
        &mainnet_like.endpoint(),
        &[
            "buy",
            &subject_s,
            "1",
            "--market",
            &chain.deployment.address.to_string(),
            "--private-key",
            "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
        ],
    );
    assert!(
        err.contains("public dev accounts") && err.contains("8453"),
        "{err}"
    );
    let err = refused(
        &mainnet_like.endpoint(),
        &[
            "buy",
            &subject_s,
            "1",
            "--market",
            &chain.deployment.address.to_string(),
            "--dev-account",
            "0",
        ],
    );
    assert!(err.contains("dev chains"), "{err}");
}

/// A market with friend.tech's ABI (our `FriendtechLayout`): the CLI detects it, trades through
/// `buyShares`/`sellShares` paying exactly the fresh quote, says plainly that there is no
/// slippage protection, refuses what friend.tech cannot do; the indexer stores its trades
/// exactly as the chain's logs say (net protocol revenue = gross: no referrals there).
#[tokio::test(flavor = "multi_thread")]
async fn the_cli_and_indexer_work_on_a_friendtech_layout_market() {
    let anvil = crate::common::anvil();
    let rpc = anvil.endpoint();
    let provider = ProviderBuilder::new()
        .connect_http(anvil.endpoint_url())
        .root()
        .clone();
    let accounts = provider.get_accounts().await.unwrap();
    let pct = U256::from(5) * U256::from(10).pow(U256::from(16));
    let ft = FriendtechLayout::deploy(&provider, accounts[1], pct, pct)
        .await
        .unwrap();
    let deploy_block = provider.get_block_number().await.unwrap();
    let address = *ft.address();
    let m = ["--market", &address.to_string()].map(str::to_string);
    let m: Vec<&str> = m.iter().map(String::as_str).collect();
    let (subject, trader) = (accounts[5], accounts[6]);
    let subject_s = subject.to_string();

    // A subject opens its keys the friend.tech way; `launch` points there.
    let err = refused(&rpc, &[&["launch", "--dev-account", "5"][..], &m].concat());
    assert!(
        err.contains("friend.tech-style market") && err.contains("keymarket buy"),
        "{err}"
    );
    json(
        &rpc,
        &[&["buy", &subject_s, "1", "--dev-account", "5"][..], &m].concat(),
    );
    assert_eq!(
        ft.sharesSupply(subject).call().await.unwrap(),
        U256::from(1)
    );

    // The quote equals friend.tech's own views.
    let q = json(&rpc, &[&["quote", "buy", &subject_s, "4"][..], &m].concat());
    let cost = ft
        .getBuyPriceAfterFee(subject, U256::from(4))
        .call()
        .await
        .unwrap();
    assert_eq!(wei(&q["total"]), cost);
    assert_eq!(
        wei(&q["price"]),
        ft.getBuyPrice(subject, U256::from(4)).call().await.unwrap()
    );
    assert_eq!(
        wei(&q["nextPrice"]),
        ft.getPrice(U256::from(5), U256::from(1))
            .call()
            .await
            .unwrap()
    );

    // A buy sends exactly the quote (friend.tech would keep any excess) and says so.
    let before = provider.get_balance(trader).await.unwrap();
    let (ok, out, err) = keymarket(
        &rpc,
        &[
            &["buy", &subject_s, "4", "--dev-account", "6", "--json"][..],
            &m,
        ]
        .concat(),
    );
    assert!(ok, "{err}");
    assert!(err.contains("no slippage protection"), "{err}");
    let bought: Value = serde_json::from_str(&out).unwrap();
    let spent = before - provider.get_balance(trader).await.unwrap();
    assert_eq!(
        spent,
        cost + wei(&bought["gasFee"]),
        "exactly the quote and gas"
    );
    assert_eq!(wei(&bought["total"]), cost);
    assert_eq!(
        ft.sharesBalance(subject, trader).call().await.unwrap(),
        U256::from(4)
    );

    // A price that moved past an explicit bound: refused before sending.
    let nonce = provider.get_transaction_count(trader).await.unwrap();
    let err = refused(
        &rpc,
        &[
            &[
                "buy",
                &subject_s,
                "1",
                "--dev-account",
                "6",
                "--max-cost",
                "0.000001",
            ][..],
            &m,
        ]
        .concat(),
    );
    assert!(
        err.contains("your bound is below the quote") && err.contains("nothing was sent"),
        "{err}"
    );
    assert_eq!(provider.get_transaction_count(trader).await.unwrap(), nonce);

    // A sell pays what the views said; the fees were pushed, so nothing is withdrawable.
    let proceeds = ft
        .getSellPriceAfterFee(subject, U256::from(3))
        .call()
        .await
        .unwrap();
    let sold = json(
        &rpc,
        &[&["sell", &subject_s, "3", "--dev-account", "6"][..], &m].concat(),
    );
    assert_eq!(wei(&sold["total"]), proceeds);
    let err = refused(
        &rpc,
        &[&["withdraw", "--dev-account", "5"][..], &m].concat(),
    );
    assert!(err.contains("nothing to withdraw"), "{err}");
    let p = json(
        &rpc,
        &[&["portfolio", &trader.to_string()][..], &m].concat(),
    );
    assert_eq!(p["keys"][0]["balance"], "1");
    assert_eq!(
        wei(&p["keys"][0]["sellValue"]),
        ft.getSellPriceAfterFee(subject, U256::from(1))
            .call()
            .await
            .unwrap()
    );
    // The last key can never be sold, in words.
    let err = refused(
        &rpc,
        &[&["sell", &subject_s, "2", "--dev-account", "6"][..], &m].concat(),
    );
    assert!(err.contains("last key"), "{err}");

    // The indexer reads the friend.tech-layout market like any other.
    let url = crate::common::fresh_db(crate::common::Db::Sqlite, "friendtech").await;
    let store = keymarket_indexer::StoreWriter::connect(&url).await.unwrap();
    let spec = keymarket_indexer::MarketSpec {
        address,
        start_block: deploy_block,
        chain_id: Some(31_337),
    };
    keymarket_indexer::run(
        &provider,
        &store,
        spec,
        &keymarket_indexer::IndexerConfig::default(),
    )
    .await
    .unwrap();
    let logs = provider
        .get_logs(&Filter::new().address(address).from_block(deploy_block))
        .await
        .unwrap();
    assert_eq!(logs.len(), 3, "three trades");
    let market = store
        .ensure_market(31_337, address, deploy_block)
        .await
        .unwrap();
    let got = store.dump(market.id).await.unwrap();
    crate::common::assert_same(
        "friend.tech layout",
        &got,
        &crate::common::recompute(31_337, &logs),
    );
}

/// Runs `command` under a pseudo-terminal (`script`), types `password` and Enter once the
/// password prompt shows, and returns everything the terminal showed.
fn prompt_and_type(rpc: &str, command: &str, password: &str) -> String {
    use std::{
        io::{Read, Write},
        process::Stdio,
        sync::mpsc,
    };
    let mut child = std::process::Command::new("script")
        .args(["-qfec", command, "/dev/null"])
        .env("KEYMARKET_RPC_URL", rpc)
        .env("NO_COLOR", "1")
        .env_remove("KEYMARKET_PRIVATE_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("util-linux script runs");
    let mut out = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = out.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    let mut shown = Vec::new();
    while !String::from_utf8_lossy(&shown).contains("password for") {
        let chunk = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|e| {
                panic!(
                    "no password prompt ({e}): {}",
                    String::from_utf8_lossy(&shown)
                )
            });
        shown.extend(chunk);
    }
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{password}\r").as_bytes()).unwrap();
    let status = child.wait().unwrap();
    drop(stdin);
    reader.join().unwrap();
    shown.extend(rx.try_iter().flatten());
    let shown = String::from_utf8_lossy(&shown).into_owned();
    assert!(status.success(), "{command} failed: {shown}");
    shown
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "keymarket-trade-{}-{}",
        std::process::id(),
        rand::random::<u32>()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The dashboard's trade panel in a real Chromium with a wallet in the page
/// (tests/browser/trade.mjs): it opens the account's keys, withdraws the subject fees others
/// paid, buys and sells a subject's keys with bounds, and shows the decoded error when the price
/// moves between its quote and the click — checked here against the chain's events and balances.
#[tokio::test(flavor = "multi_thread")]
async fn trade_panel_in_chromium() {
    use alloy::{providers::ext::AnvilApi, sol_types::SolEvent};
    use keymarket_indexer::StoreWriter;

    use crate::{
        browser::BrowserScript,
        common::{Db, fresh_db},
    };

    let chain = Chain::new().await;
    chain.trade(300, 23, 100, 8 * 3600).await;
    let url = fresh_db(Db::Sqlite, "panel").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
        .await
        .unwrap();
    // The indexer keeps following, so the panel's trades reach its latest-trades list.
    let follow = keymarket_indexer::IndexerConfig {
        follow: true,
        poll_interval: Duration::from_millis(200),
        ..Default::default()
    };
    let (provider, following, spec) = (chain.provider.clone(), store.clone(), chain.spec());
    let indexer =
        tokio::spawn(
            async move { keymarket_indexer::run(&provider, &following, spec, &follow).await },
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(keymarket_api::serve(
        listener,
        keymarket_api::AppState::new(store.reader()),
        std::future::pending(),
    ));
    let top: Value = tokio::time::timeout(Duration::from_secs(30), async {
        reqwest::get(format!("{base}/v1/subjects/top?limit=1"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    })
    .await
    .expect("the API answers");
    let subject: Address = top["subjects"][0]["subject"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();

    // A fresh account the node signs for (as a wallet would), funded.
    let me = Address::repeat_byte(0x5a);
    chain.provider.anvil_impersonate_account(me).await.unwrap();
    chain
        .provider
        .anvil_set_balance(me, U256::from(10).pow(U256::from(21)))
        .await
        .unwrap();
    let market = KeyMarket::new(chain.deployment.address, &chain.provider);
    let accounts = chain.provider.get_accounts().await.unwrap();
    let buy = |who: Address, of: Address, n: u64| {
        let market = &market;
        async move {
            let cost = market
                .quoteBuy(of, U256::from(n))
                .call()
                .await
                .unwrap()
                .total;
            let r = market
                .buyShares(of, U256::from(n))
                .value(cost)
                .from(who)
                .send()
                .await
                .unwrap()
                .get_receipt()
                .await
                .unwrap();
            assert!(r.status());
        }
    };

    let root = env!("CARGO_MANIFEST_DIR");
    let shot = format!("{root}/target/trade-panel.png");
    let _ = std::fs::remove_file(&shot);
    let mut browser = BrowserScript::start(
        "trade.mjs",
        &[
            &format!("{base}/"),
            &chain.anvil.endpoint(),
            &me.to_string(),
            &subject.to_string(),
            &shot,
        ],
    );

    assert_eq!(
        browser.line(),
        "launched",
        "the panel opened the account's keys"
    );
    assert_eq!(market.sharesSupply(me).call().await.unwrap(), U256::from(1));
    // Others buy the account's keys: it earns subject fees.
    buy(accounts[21], me, 3).await;
    let fees = market.withdrawable(me).call().await.unwrap();
    assert!(fees > U256::ZERO);
    browser.send("go");

    assert_eq!(
        browser.line(),
        "quoted",
        "the panel bought, sold and quoted"
    );
    let nonce = chain.provider.get_transaction_count(me).await.unwrap();
    let balance = chain.provider.get_balance(me).await.unwrap();
    // The price moves before the click.
    buy(accounts[22], subject, 2).await;
    browser.send("go");
    let (success, report) = browser.finish();
    assert!(success, "trade panel test failed: {report}");
    let report: Value = serde_json::from_str(&report).unwrap();

    // What the panel showed is what the chain did.
    let receipt = |tx: &str| {
        let hash = tx.parse().unwrap();
        let provider = &chain.provider;
        async move {
            provider
                .get_transaction_receipt(hash)
                .await
                .unwrap()
                .unwrap()
        }
    };
    let trade_of = |r: &alloy::rpc::types::TransactionReceipt| {
        r.inner
            .logs()
            .iter()
            .find_map(|l| KeyMarket::Trade::decode_log_data(l.data()).ok())
            .expect("a Trade event")
    };
    let w = receipt(report["withdrawTx"].as_str().unwrap()).await;
    let withdrawn = w
        .inner
        .logs()
        .iter()
        .find_map(|l| KeyMarket::Withdrawal::decode_log_data(l.data()).ok())
        .expect("a Withdrawal event");
    assert_eq!(withdrawn.amount, fees);
    assert_eq!(report["withdrawable"].as_str().unwrap(), fees.to_string());
    let b = trade_of(&receipt(report["buyTx"].as_str().unwrap()).await);
    assert!(b.isBuy && b.trader == me && b.subject == subject);
    assert_eq!(b.shareAmount, U256::from(2));
    assert_eq!(
        (b.ethAmount + b.protocolEthAmount + b.subjectEthAmount).to_string(),
        report["buyQuote"].as_str().unwrap(),
        "paid the quote the panel showed"
    );
    let s = trade_of(&receipt(report["sellTx"].as_str().unwrap()).await);
    assert!(!s.isBuy && s.trader == me && s.shareAmount == U256::from(1));
    assert_eq!(
        (s.ethAmount - s.protocolEthAmount - s.subjectEthAmount).to_string(),
        report["sellQuote"].as_str().unwrap()
    );
    assert_eq!(
        market.sharesBalance(subject, me).call().await.unwrap(),
        U256::from(1)
    );
    // The price-moved trade spent nothing: no transaction, no ETH.
    assert!(
        report["movedError"]
            .as_str()
            .unwrap()
            .contains("the price moved")
    );
    assert_eq!(
        chain.provider.get_transaction_count(me).await.unwrap(),
        nonce
    );
    assert_eq!(chain.provider.get_balance(me).await.unwrap(), balance);
    assert!(
        std::fs::metadata(&shot).unwrap().len() > 5_000,
        "a screenshot"
    );
    assert!(!indexer.is_finished(), "the indexer kept following");
    indexer.abort();
}
