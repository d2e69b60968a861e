//! RPC faults through a real fault-injecting HTTP proxy on loopback, between the indexer and
//! anvil: dropped connections, stalls, HTTP 429 and 5xx, truncated bodies, and provider-style
//! refusals of wide `eth_getLogs` ranges ("query returned more than 10000 results", HTTP 413). The final
//! database must equal the recomputation from the chain.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use keymarket_indexer::{FetchConfig, IndexerConfig, StoreWriter};
use tokio::{
    io::AsyncWriteExt,
    net::{TcpListener, TcpStream},
};

use crate::common::{Chain, Db, assert_same, dump, fresh_db, recompute};

/// What the proxy did, by kind.
#[derive(Default)]
struct Counts {
    forwarded: AtomicU64,
    dropped: AtomicU64,
    stalled: AtomicU64,
    rate_limited: AtomicU64,
    server_errors: AtomicU64,
    truncated: AtomicU64,
    refused_ranges: AtomicU64,
    refused_http: AtomicU64,
}

/// Starts the proxy in front of `upstream`; returns its URL.
async fn start_proxy(upstream: String, counts: Arc<Counts>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let client = reqwest::Client::new();
    let seq = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let (client, upstream, counts, seq) = (
                client.clone(),
                upstream.clone(),
                counts.clone(),
                seq.clone(),
            );
            tokio::spawn(async move {
                let _ = handle(sock, &client, &upstream, &counts, &seq).await;
            });
        }
    });
    url
}

async fn handle(
    mut sock: TcpStream,
    client: &reqwest::Client,
    upstream: &str,
    counts: &Counts,
    seq: &AtomicU64,
) -> std::io::Result<()> {
    let Some(body) = crate::provider::read_request(&mut sock).await? else {
        return Ok(());
    };
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let method = request["method"].as_str().unwrap_or("").to_string();

    // Like hosted providers, refuse wide log ranges.
    if method == "eth_getLogs" {
        let p = &request["params"][0];
        let num = |k: &str| {
            u64::from_str_radix(p[k].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
                .unwrap_or(0)
        };
        if num("toBlock").saturating_sub(num("fromBlock")) > 6 {
            // Every other refusal as HTTP 413 with a plain-text body, like a gateway's.
            if counts.refused_ranges.fetch_add(1, Ordering::Relaxed) % 2 == 1 {
                counts.refused_http.fetch_add(1, Ordering::Relaxed);
                return respond(&mut sock, 413, b"response too large", None).await;
            }
            let err = format!(
                r#"{{"jsonrpc":"2.0","id":{},"error":{{"code":-32005,"message":"query returned more than 10000 results"}}}}"#,
                request["id"]
            );
            return respond(&mut sock, 200, err.as_bytes(), None).await;
        }
    }
    // Faults on the calls the indexer retries (not on the one-off chain id / code checks).
    let faulty = matches!(
        method.as_str(),
        "eth_getLogs" | "eth_getBlockByNumber" | "eth_blockNumber"
    );
    let n = seq.fetch_add(1, Ordering::Relaxed);
    if faulty {
        match n % 11 {
            0 => {
                counts.dropped.fetch_add(1, Ordering::Relaxed);
                return Ok(()); // close without answering
            }
            1 => {
                counts.rate_limited.fetch_add(1, Ordering::Relaxed);
                return respond(&mut sock, 429, b"rate limited", None).await;
            }
            2 => {
                counts.server_errors.fetch_add(1, Ordering::Relaxed);
                return respond(
                    &mut sock,
                    if n.is_multiple_of(2) { 502 } else { 503 },
                    b"bad gateway",
                    None,
                )
                .await;
            }
            3 => {
                counts.stalled.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(2_500)).await;
            }
            4 => {
                counts.truncated.fetch_add(1, Ordering::Relaxed);
                let full = forward(client, upstream, body).await;
                return respond(&mut sock, 200, &full, Some(full.len() / 2)).await;
            }
            _ => {}
        }
    }
    counts.forwarded.fetch_add(1, Ordering::Relaxed);
    let full = forward(client, upstream, body).await;
    respond(&mut sock, 200, &full, None).await
}

pub(crate) async fn forward(client: &reqwest::Client, upstream: &str, body: Vec<u8>) -> Vec<u8> {
    let resp = client
        .post(upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("anvil answers the proxy");
    resp.bytes().await.unwrap().to_vec()
}

/// Writes a response; `cut` sends only that many body bytes (with the full Content-Length) and
/// closes, like a connection broken mid-body.
pub(crate) async fn respond(
    sock: &mut TcpStream,
    status: u16,
    body: &[u8],
    cut: Option<usize>,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&body[..cut.unwrap_or(body.len())]).await?;
    sock.shutdown().await
}

#[tokio::test(flavor = "multi_thread")]
async fn rpc_faults_through_a_proxy_change_nothing() {
    let chain = Chain::new().await;
    chain.trade(1_500, 71, 15, 900).await; // ~100 blocks
    let counts = Arc::new(Counts::default());
    let proxy = start_proxy(chain.rpc_url(), counts.clone()).await;
    let provider = alloy::providers::ProviderBuilder::new().connect_http(proxy.parse().unwrap());
    let config = IndexerConfig {
        fetch: FetchConfig {
            initial_range: 50,
            max_range: 200,
            concurrency: 3,
            request_timeout: Duration::from_secs(1),
            ..FetchConfig::default()
        },
        window: 32,
        ..IndexerConfig::default()
    };
    let want = recompute(chain.deployment.chain_id, &chain.logs().await);
    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "faults").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&provider, &store, chain.spec(), &config)
            .await
            .unwrap();
        assert_same(
            &format!("{kind:?} through the faulty proxy"),
            &dump(&url, &chain).await,
            &want,
        );
    }
    for (what, c) in [
        ("dropped", &counts.dropped),
        ("stalled", &counts.stalled),
        ("429", &counts.rate_limited),
        ("5xx", &counts.server_errors),
        ("truncated", &counts.truncated),
        ("refused ranges", &counts.refused_ranges),
        ("HTTP 413", &counts.refused_http),
    ] {
        assert!(
            c.load(Ordering::Relaxed) > 0,
            "the proxy injected {what} faults"
        );
    }
}
