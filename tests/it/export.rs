//! Dune-layout exports over the real pieces: trades simulated on anvil, indexed into SQLite and
//! PostgreSQL, exported by the CLI and by the API, and every row checked against the chain's
//! own `Trade` logs (exact ETH decimals back to wei).

use alloy::{primitives::U256, sol_types::SolEvent};
use keymarket_contracts::KeyMarket;
use keymarket_indexer::Store;

use crate::common::{Chain, Db, fresh_db};

/// An exact decimal ETH string in wei.
fn wei(eth: &str) -> U256 {
    let (int, frac) = eth.split_once('.').unwrap_or((eth, ""));
    assert!(frac.len() <= 18, "{eth}");
    format!("{int}{frac:0<18}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn trades_export_in_the_social_trades_layout_equals_the_chain() {
    let chain = Chain::new().await;
    chain.trade(600, 31, 100, 5 * 3600).await;
    let logs = chain.logs().await;
    let mut want: Vec<(String, u64, KeyMarket::Trade, u64)> = logs
        .iter()
        .filter(|l| l.topics()[0] == KeyMarket::Trade::SIGNATURE_HASH)
        .map(|l| {
            (
                format!("{:#x}", l.transaction_hash.unwrap()),
                l.log_index.unwrap(),
                KeyMarket::Trade::decode_log_data(l.data()).unwrap(),
                l.block_number.unwrap(),
            )
        })
        .collect();
    want.sort_by_key(|w| (w.3, w.1));
    assert!(want.len() > 500);

    let dir = std::env::temp_dir().join(format!("keymarket-export-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "export").await;
        let store = Store::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();

        // The CLI writes a file...
        let file = dir.join(format!("{kind:?}.csv"));
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_keymarket"))
            .args(["export", "trades", "--database-url", &url, "--out"])
            .arg(&file)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cli = std::fs::read_to_string(&file).unwrap();

        // ...and the API streams the same bytes.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(keymarket_api::serve(
            listener,
            keymarket_api::AppState::new(store.clone()),
            std::future::pending(),
        ));
        let resp = reqwest::get(format!("{base}/v1/export/trades.csv"))
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        assert!(
            resp.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/csv")
        );
        let http = resp.text().await.unwrap();
        assert_eq!(http, cli, "{kind:?}: the CLI and the API export the same");
        let bad = reqwest::get(format!("{base}/v1/export/trades.csv?market=99"))
            .await
            .unwrap();
        assert_eq!(bad.status(), 404);
        server.abort();

        let mut lines = cli.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        assert_eq!(header, keymarket_api::export::SOCIAL_TRADES_COLUMNS);
        let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), want.len(), "{kind:?}: one row per Trade log");
        for (row, (tx, log_index, t, block)) in rows.iter().zip(&want) {
            assert_eq!(row[col("blockchain")], "anvil");
            assert_eq!(row[col("project")], "keymarket");
            assert_eq!(row[col("tx_hash")], tx);
            assert_eq!(row[col("evt_index")], log_index.to_string());
            assert_eq!(row[col("block_number")], block.to_string());
            assert_eq!(row[col("trader")], format!("{:#x}", t.trader));
            assert_eq!(row[col("subject")], format!("{:#x}", t.subject));
            assert_eq!(row[col("trade_side")], if t.isBuy { "buy" } else { "sell" });
            assert_eq!(row[col("share_amount")], t.shareAmount.to_string());
            assert_eq!(wei(row[col("amount_original")]), t.ethAmount);
            assert_eq!(wei(row[col("protocol_fee_amount")]), t.protocolEthAmount);
            assert_eq!(wei(row[col("subject_fee_amount")]), t.subjectEthAmount);
            assert_eq!(row[col("supply")], t.supply.to_string());
            assert_eq!(row[col("amount_usd")], "");
            assert_eq!(
                row[col("contract_address")],
                format!("{:#x}", chain.deployment.address)
            );
            assert!(row[col("block_month")].ends_with("-01"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
