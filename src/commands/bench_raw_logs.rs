//! `keymarket bench-raw-logs` (hidden): the source's own rate — the market's `eth_getLogs` (all
//! its events, as the indexer asks) over fixed ranges, a few in flight, each answer read to its
//! last byte and its logs and trades counted, nothing parsed; the rate is `Trade` logs a second. The ceiling `scripts/bench-index.sh` compares `--fetch-only` and the indexer with.

use std::time::{Duration, Instant};

use alloy::sol_types::SolEvent;
use clap::Args;
use eyre::{Result, WrapErr, bail, eyre};
use futures::{StreamExt, TryStreamExt, stream};
use keymarket_contracts::{Deployment, KeyMarket};
use serde_json::json;

use crate::cli::DeploymentArgs;

/// `keymarket bench-raw-logs`'s arguments.
#[derive(Args)]
pub(crate) struct BenchRawLogsArgs {
    /// The JSON-RPC endpoint (plain HTTP: this measures the source, not the transport).
    #[arg(long = "rpc-url", default_value = "http://127.0.0.1:8545")]
    pub(crate) rpc_url: String,
    #[command(flatten)]
    pub(crate) deployment: DeploymentArgs,
    /// Blocks per request (the bench passes the size the indexer's ranges settle at).
    #[arg(long, default_value_t = 1_000)]
    pub(crate) range: u64,
    /// Requests in flight.
    #[arg(long, default_value_t = 2)]
    pub(crate) concurrency: usize,
}

/// What one pass read.
#[derive(Debug, Default, PartialEq, Eq)]
struct Read {
    logs: u64,
    /// `Trade` logs among them (the market's other events — subjects opened, referral payouts,
    /// fee changes — are fetched by the indexer too).
    trades: u64,
    bytes: u64,
}

/// The logs in an `eth_getLogs` answer and the `Trade` logs among them, counted without parsing
/// it: each log object has one `"logIndex"` key, each `Trade` log its topic as lowercase hex. An
/// error answer is refused.
fn count_logs(body: &[u8], trade_topic: &[u8]) -> Result<(u64, u64)> {
    // An error answer is short and says so near its start; a log's fields are hex.
    let start = &body[..body.len().min(200)];
    if memchr::memmem::find(start, b"\"error\"").is_some() {
        bail!(
            "the RPC answered an error: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let logs = memchr::memmem::find_iter(body, b"\"logIndex\"").count() as u64;
    let trades = memchr::memmem::find_iter(body, trade_topic).count() as u64;
    Ok((logs, trades))
}

/// Reads the market's logs from its deploy block to the head, `range` blocks a request.
pub(crate) async fn bench_raw_logs(args: BenchRawLogsArgs) -> Result<()> {
    let deployment = Deployment::read(&args.deployment.deployment)?;
    if args.range == 0 || args.concurrency == 0 {
        bail!("--range and --concurrency must be at least 1");
    }
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(300))
        .build()?;
    let call = |body: serde_json::Value| {
        let http = http.clone();
        let url = args.rpc_url.clone();
        async move {
            let answer = http
                .post(&url)
                .json(&body)
                .send()
                .await
                .wrap_err("the RPC cannot be reached")?
                .error_for_status()?
                .bytes()
                .await?;
            Ok::<_, eyre::Report>(answer)
        }
    };
    let head =
        call(json!({"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []})).await?;
    let head: serde_json::Value = serde_json::from_slice(&head)?;
    let head = head["result"]
        .as_str()
        .and_then(|h| u64::from_str_radix(h.trim_start_matches("0x"), 16).ok())
        .ok_or_else(|| eyre!("no block number in {head}"))?;
    let ranges: Vec<(u64, u64)> = (deployment.deploy_block..=head)
        .step_by(args.range as usize)
        .map(|from| (from, (from + args.range - 1).min(head)))
        .collect();
    let topic = format!("{:#x}", KeyMarket::Trade::SIGNATURE_HASH);
    let topic = topic.as_bytes();
    let started = Instant::now();
    let read = stream::iter(ranges.iter().copied())
        .map(|(from, to)| {
            let body = json!({"jsonrpc": "2.0", "id": 1, "method": "eth_getLogs", "params": [{
                "address": deployment.address,
                "fromBlock": format!("{from:#x}"),
                "toBlock": format!("{to:#x}"),
            }]});
            let answer = call(body);
            async move {
                let answer = answer.await?;
                let (logs, trades) = count_logs(&answer, topic)?;
                Ok::<_, eyre::Report>(Read {
                    logs,
                    trades,
                    bytes: answer.len() as u64,
                })
            }
        })
        .buffered(args.concurrency)
        .try_fold(Read::default(), |sum, r| async move {
            Ok(Read {
                logs: sum.logs + r.logs,
                trades: sum.trades + r.trades,
                bytes: sum.bytes + r.bytes,
            })
        })
        .await?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "  raw eth_getLogs: {} logs ({} trades), {:.1} MB in {} requests of {} blocks, {secs:.2} s ({:.0} trades/s)",
        read.logs,
        read.trades,
        read.bytes as f64 / 1e6,
        ranges.len(),
        args.range,
        read.trades as f64 / secs
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logs_and_trades_are_counted_without_parsing() {
        let body = br#"{"jsonrpc":"2.0","id":1,"result":[{"topics":["0xaa"],"logIndex":"0x0"},{"logIndex":"0x1","topics":["0xbb"]},{"topics":["0xaa"],"logIndex":"0x2"}]}"#;
        assert_eq!(count_logs(body, b"0xaa").unwrap(), (3, 2));
        let empty = br#"{"jsonrpc":"2.0","id":1,"result":[]}"#;
        assert_eq!(count_logs(empty, b"0xaa").unwrap(), (0, 0));
        let refused = br#"{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"too many"}}"#;
        assert!(count_logs(refused, b"0xaa").is_err());
    }
}
