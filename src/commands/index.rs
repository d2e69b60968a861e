//! `keymarket index`: markets' `Trade` events into SQL, backfilled and followed.

use std::{path::PathBuf, time::Duration};

use alloy::{primitives::Address, providers::ProviderBuilder};
use clap::Args;
use eyre::{Context, Result};
use keymarket_contracts::Deployment;
use keymarket_indexer::{FetchConfig, IndexerConfig, MarketSpec, StoreWriter};

use crate::{
    cli::{DEFAULT_DEPLOYMENT, DatabaseArgs, RpcArgs, parse_market, shutdown_on_signal},
    report::print_stats,
};

/// `keymarket index`'s arguments.
#[derive(Args)]
pub(crate) struct IndexArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Another provider of the same chain (http(s):// or ws(s)://, --rpc-ca-file applies), asked
    /// before a break of the curve that --rpc-url keeps answering is believed: when its answer
    /// keeps the curve, that answer is stored instead.
    #[arg(
        long,
        value_name = "URL",
        env = "KEYMARKET_SECOND_RPC_URL",
        hide_env_values = true
    )]
    pub(crate) second_rpc_url: Option<String>,
    /// Deployment files written by `keymarket deploy` (repeatable). Used when no --market is given.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    pub(crate) deployment: Vec<PathBuf>,
    /// A market as ADDRESS@START_BLOCK (repeatable), e.g. friend.tech on Base:
    /// 0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4@2430440.
    #[arg(long, value_parser = parse_market)]
    pub(crate) market: Vec<(Address, u64)>,
    #[command(flatten)]
    pub(crate) db: DatabaseArgs,
    /// Keep following the head after the backfill.
    #[arg(long)]
    pub(crate) follow: bool,
    /// Index only blocks this many blocks below the head.
    #[arg(long, default_value_t = 0)]
    pub(crate) confirmations: u64,
    /// Block hashes kept for reorg repair (deeper reorgs stop the indexer).
    #[arg(long, default_value_t = 128)]
    pub(crate) window: u64,
    /// eth_getLogs ranges fetched concurrently.
    #[arg(long, default_value_t = 4)]
    pub(crate) concurrency: usize,
    /// First eth_getLogs range, in blocks (it adapts).
    #[arg(long, default_value_t = 1000)]
    pub(crate) initial_range: u64,
    /// Largest eth_getLogs range, in blocks.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) max_range: u64,
    /// Seconds an eth_getLogs of a few blocks (following the head) may take before it is sent
    /// again.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=600))]
    pub(crate) head_request_timeout: u64,
    /// Stop after indexing this block.
    #[arg(long)]
    pub(crate) stop_at: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    pub(crate) quiet: bool,
    /// Serve this indexer's own Prometheus metrics (its faults by kind) on ADDR, at /metrics
    /// (e.g. 127.0.0.1:9464; port 0 picks a free one, said on stderr).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<std::net::SocketAddr>,
    /// Fetch and decode without storing (the RPC side's ceiling, for benchmarks).
    #[arg(long, hide = true)]
    pub(crate) fetch_only: bool,
}

pub(crate) async fn index(args: IndexArgs) -> Result<()> {
    // First, so that a signal at any moment of the start-up stops cleanly too.
    let stop = shutdown_on_signal();
    let mut specs = Vec::new();
    for (address, start_block) in &args.market {
        specs.push(MarketSpec {
            address: *address,
            start_block: *start_block,
            chain_id: None,
        });
    }
    if specs.is_empty() {
        for path in &args.deployment {
            let d = Deployment::read(path).wrap_err_with(|| {
                format!("cannot read the deployment file {}; pass --market ADDRESS@START_BLOCK or run `keymarket deploy`", path.display())
            })?;
            specs.push(MarketSpec {
                address: d.address,
                start_block: d.deploy_block,
                chain_id: Some(d.chain_id),
            });
        }
    }
    let database = args.db.for_writing();
    // One indexer per SQLite file: a second one is refused in words (held until this returns).
    let _lock = keymarket_indexer::store::IndexLock::acquire(&database)?;
    let store = StoreWriter::connect(&database).await?;
    // The indexer bounds each call itself (and retries); this is the transport's backstop.
    let provider =
        ProviderBuilder::new().connect_client(args.rpc.client(Duration::from_secs(300)).await?);
    eprintln!("rpc: {}", args.rpc.shown());
    let second_provider = match &args.second_rpc_url {
        Some(url) => {
            let second = RpcArgs {
                url: url.clone(),
                ca_file: args.rpc.ca_file.clone(),
            };
            eprintln!("second rpc: {}", second.shown());
            let client = second.client(Duration::from_secs(300)).await?;
            let root = alloy::providers::RootProvider::new(client);
            // The same chain, or its answers would stand in for the first's.
            let (first, other) = tokio::try_join!(
                alloy::providers::Provider::get_chain_id(&provider),
                alloy::providers::Provider::get_chain_id(&root),
            )
            .map_err(|e| second.explain(e.into()))?;
            if first != other {
                eyre::bail!(
                    "--second-rpc-url {} serves chain {other}, --rpc-url {} chain {first}: a second provider must serve the same chain",
                    second.shown(),
                    args.rpc.shown()
                );
            }
            Some(root)
        }
        None => None,
    };
    let config = IndexerConfig {
        fetch: FetchConfig {
            initial_range: args.initial_range,
            max_range: args.max_range,
            concurrency: args.concurrency,
            small_range_timeout: Duration::from_secs(args.head_request_timeout),
            ..FetchConfig::default()
        },
        follow: args.follow,
        confirmations: args.confirmations,
        window: args.window,
        progress: !args.quiet && !args.follow,
        stop_at: args.stop_at,
        second_provider,
        shutdown: stop,
        ..IndexerConfig::default()
    };
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, &config).await?;
    }
    if args.fetch_only {
        for spec in &specs {
            let (trades, blocks, elapsed) =
                keymarket_indexer::fetch_only(&provider, *spec, &config)
                    .await
                    .map_err(|e| args.rpc.explain(e.into()))?;
            println!(
                "fetch only: {trades} trades, {blocks} blocks in {:.2}s ({:.0} trades/s)",
                elapsed.as_secs_f64(),
                trades as f64 / elapsed.as_secs_f64().max(1e-9)
            );
        }
        return Ok(());
    }
    let runs = specs
        .iter()
        .map(|spec| keymarket_indexer::run(&provider, &store, *spec, &config));
    let reports = futures::future::try_join_all(runs)
        .await
        .map_err(|e| args.rpc.explain(e.into()))?;
    for (spec, r) in specs.iter().zip(&reports) {
        if r.stopped && r.next_block == 0 {
            eprintln!(
                "stopped: market {} before its checks were done; nothing was indexed this run",
                spec.address
            );
        } else if r.stopped {
            eprintln!(
                "stopped: market {} is indexed below block {} ({} trades this run); run the same command to resume",
                spec.address, r.next_block, r.trades
            );
        } else {
            print_stats(&store, &provider, spec, r).await?;
        }
    }
    Ok(())
}

/// Serves the indexer's fault counters as Prometheus metrics at `addr`/metrics until the run
/// stops (the API's `/metrics` format: `keymarket_indexer_retries_total{fault}`).
async fn serve_metrics(addr: std::net::SocketAddr, config: &IndexerConfig) -> Result<()> {
    use axum::{http::header::CONTENT_TYPE, routing::get};
    let counts = config.fetch.counts.clone();
    let metrics = std::sync::Arc::new(keymarket_api::metrics::Metrics::with_retries(
        std::sync::Arc::new(move || counts.totals()),
    ));
    let app = axum::Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                (
                    [(
                        CONTENT_TYPE,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )],
                    metrics.encode(),
                )
            }
        }),
    );
    let listener = crate::cli::bind(addr).await?;
    eprintln!("metrics on http://{}/metrics", listener.local_addr()?);
    let stop = config.shutdown.clone();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await;
    });
    Ok(())
}
