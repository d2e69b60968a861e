//! `keymarket index`: markets' `Trade` events into SQL, backfilled and followed.

use std::{path::PathBuf, time::Duration};

use alloy::{
    primitives::Address,
    providers::{Provider, RootProvider},
};
use clap::Args;
use eyre::Result;
use keymarket_indexer::{
    FetchConfig, IndexerConfig, MarketSpec, Ownership, StoreWriter, store::Backend,
};

use crate::{
    chains::{self, ChainPlan, DEFAULT_WINDOW},
    cli::{DEFAULT_DEPLOYMENT, DatabaseArgs, RpcArgs, parse_market, shutdown_on_signal},
    report::print_stats,
};

/// `keymarket index`'s arguments.
#[derive(Args)]
pub(crate) struct IndexArgs {
    /// A TOML file listing chains (RPC URLs, confirmations, window, markets) to index in this
    /// one process, and optionally the database (docs/operations.md shows one). Replaces the
    /// one-chain flags (--market, --deployment, --confirmations, --window are refused with it;
    /// --rpc-url and --second-rpc-url ignored); --database-url, when given, wins over the file's.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["market", "deployment", "confirmations", "window"])]
    pub(crate) config: Option<PathBuf>,
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
    #[arg(long, default_value_t = DEFAULT_WINDOW)]
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
    /// A backfill that has stored this many trades with more blocks ahead than behind becomes a
    /// long backfill: the raw trades only and the aggregates built once at the head (when the
    /// trades spread over at least one holding per ten trades), and, indexing alone, the
    /// secondary indexes dropped and built at the head.
    #[arg(long, default_value_t = 100_000, value_name = "TRADES")]
    pub(crate) bulk_min_trades: u64,
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
    let (database, plans) = plan(&args)?;
    // One indexer per SQLite file: a second one is refused in words (held until this returns).
    let _lock = keymarket_indexer::store::IndexLock::acquire(&database)?;
    let store = StoreWriter::connect(&database).await?;
    let base = IndexerConfig {
        fetch: FetchConfig {
            initial_range: args.initial_range,
            max_range: args.max_range,
            concurrency: args.concurrency,
            small_range_timeout: Duration::from_secs(args.head_request_timeout),
            ..FetchConfig::default()
        },
        follow: args.follow,
        progress: !args.quiet && !args.follow,
        stop_at: args.stop_at,
        bulk_min_trades: args.bulk_min_trades,
        shutdown: stop,
        ..IndexerConfig::default()
    };
    let mut chains = Vec::new();
    for plan in &plans {
        chains.push(Chain::open(plan, &base).await?);
    }
    if let Some(addr) = args.metrics_listen {
        serve_metrics(addr, &base).await?;
    }
    if args.fetch_only {
        return fetch_only(&chains).await;
    }
    let reports = if store.backend() == Backend::Postgres {
        // Several processes may index this database: each market is owned by one of them at a
        // time, the others stand by (keymarket_indexer::ownership).
        let markets = chains.iter().map(|c| c.plan.markets.len()).sum();
        // The leases' own pool: a heartbeat must not queue behind the batches' commits.
        let leases = StoreWriter::connect_with(&database, Some(2)).await?;
        let (ownership, _heartbeat) = Ownership::join(leases, markets, &base).await?;
        eprintln!(
            "indexer {}: owns the markets no other process owns, stands by for the others",
            ownership.name()
        );
        let runs = each_market(&chains).map(|(chain, spec)| {
            let (ownership, store) = (ownership.clone(), &store);
            async move {
                let r = ownership.index_market(&chain.provider, store, spec, &chain.config);
                r.await.map_err(|e| chain.explain(&spec, e.into()))
            }
        });
        let reports = futures::future::try_join_all(runs).await;
        ownership.leave().await;
        reports?
    } else {
        let runs = each_market(&chains).map(|(chain, spec)| {
            let store = &store;
            async move {
                let r = keymarket_indexer::run(&chain.provider, store, spec, &chain.config);
                r.await.map_err(|e| chain.explain(&spec, e.into()))
            }
        });
        futures::future::try_join_all(runs).await?
    };
    for ((chain, spec), r) in each_market(&chains).zip(&reports) {
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
            print_stats(&store, &chain.provider, &spec, r).await?;
        }
    }
    Ok(())
}

/// The database and the chains to index: from the config file, or from the flags (one chain).
fn plan(args: &IndexArgs) -> Result<(String, Vec<ChainPlan>)> {
    if let Some(path) = &args.config {
        // Not refused by clap: they may come from the environment (KEYMARKET_RPC_URL).
        if args.rpc.url != RpcArgs::DEFAULT_URL || args.second_rpc_url.is_some() {
            eprintln!(
                "note: --rpc-url and --second-rpc-url (or KEYMARKET_RPC_URL, KEYMARKET_SECOND_RPC_URL) are ignored with --config: each chain names its rpc_url"
            );
        }
        let file = chains::read(path)?;
        let database = match (args.db.given(), file.database_url) {
            (false, Some(url)) => args.db.with_url(url).for_writing(),
            _ => args.db.for_writing(),
        };
        return Ok((database, file.chains));
    }
    let mut markets: Vec<MarketSpec> = args
        .market
        .iter()
        .map(|(address, start_block)| MarketSpec {
            address: *address,
            start_block: *start_block,
            chain_id: None,
        })
        .collect();
    if markets.is_empty() {
        for path in &args.deployment {
            markets.push(chains::deployment_market(path)?);
        }
    }
    let chain = ChainPlan {
        name: args.rpc.shown(),
        rpc: args.rpc.clone(),
        second_rpc_url: args.second_rpc_url.clone(),
        confirmations: args.confirmations,
        window: args.window,
        markets,
    };
    Ok((args.db.for_writing(), vec![chain]))
}

/// A chain being indexed: its plan, provider and settings.
struct Chain<'a> {
    plan: &'a ChainPlan,
    provider: RootProvider,
    config: IndexerConfig,
}

impl<'a> Chain<'a> {
    /// Connects to the chain's provider (and its second provider, which must serve the same
    /// chain); `base` holds the settings every chain shares.
    async fn open(plan: &'a ChainPlan, base: &IndexerConfig) -> Result<Self> {
        // The indexer bounds each call itself (and retries); this is the transport's backstop.
        let provider = RootProvider::new(plan.rpc.client(Duration::from_secs(300)).await?);
        eprintln!("rpc: {}", plan.rpc.shown());
        let second_provider = match &plan.second_rpc_url {
            Some(url) => {
                let second = RpcArgs {
                    url: url.clone(),
                    ca_file: plan.rpc.ca_file.clone(),
                };
                eprintln!("second rpc: {}", second.shown());
                let root = RootProvider::new(second.client(Duration::from_secs(300)).await?);
                // The same chain, or its answers would stand in for the first's.
                let (first, other) = tokio::try_join!(provider.get_chain_id(), root.get_chain_id())
                    .map_err(|e| second.explain(e.into()))?;
                if first != other {
                    eyre::bail!(
                        "second rpc {} serves chain {other}, rpc {} chain {first}: a second provider must serve the same chain",
                        second.shown(),
                        plan.rpc.shown()
                    );
                }
                Some(root)
            }
            None => None,
        };
        let config = IndexerConfig {
            confirmations: plan.confirmations,
            window: plan.window,
            second_provider,
            ..base.clone()
        };
        Ok(Self {
            plan,
            provider,
            config,
        })
    }

    /// An error of one of the chain's markets, with the chain and market named (and a
    /// certificate problem explained).
    fn explain(&self, spec: &MarketSpec, e: eyre::Report) -> eyre::Report {
        self.plan.rpc.explain(e).wrap_err(format!(
            "indexing market {} on chain {}",
            spec.address, self.plan.name
        ))
    }
}

/// Every market of every chain, with its chain.
fn each_market<'c, 'a>(
    chains: &'c [Chain<'a>],
) -> impl Iterator<Item = (&'c Chain<'a>, MarketSpec)> + 'c {
    chains
        .iter()
        .flat_map(|c| c.plan.markets.iter().map(move |spec| (c, *spec)))
}

/// `--fetch-only`: each market fetched and decoded, nothing stored (the RPC side's ceiling).
async fn fetch_only(chains: &[Chain<'_>]) -> Result<()> {
    for (chain, spec) in each_market(chains) {
        let (trades, blocks, elapsed) =
            keymarket_indexer::fetch_only(&chain.provider, spec, &chain.config)
                .await
                .map_err(|e| chain.explain(&spec, e.into()))?;
        println!(
            "fetch only: {trades} trades, {blocks} blocks in {:.2}s ({:.0} trades/s)",
            elapsed.as_secs_f64(),
            trades as f64 / elapsed.as_secs_f64().max(1e-9)
        );
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
