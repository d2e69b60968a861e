//! `keymarket`: the command line of the keymarket project.
//!
//! - `keymarket up` starts a local anvil chain, deploys the market, simulates trading and prints
//!   what happened (the README's main command);
//! - `keymarket deploy` deploys a KeyMarket and writes the deployment file;
//! - `keymarket simulate` drives realistic trading on a deployment.

mod bench_store;

use std::{path::PathBuf, time::Duration};

use alloy::{
    network::EthereumWallet,
    node_bindings::{Anvil, AnvilInstance},
    primitives::{Address, U256, utils::format_ether},
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use clap::{Args, Parser, Subcommand};
use eyre::{Context, Result, bail};
use keymarket_contracts::{DeployConfig, Deployment, toolchain};
use keymarket_indexer::{FetchConfig, IndexerConfig, MarketSpec, RunReport, Store};
use keymarket_simulate::{SimConfig, SimReport};

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// mimalloc instead of glibc's malloc: the indexer allocates per log and per bound parameter, and
/// glibc's allocator cost ~9% of its instructions (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// anvil's first dev account's key (public knowledge; for local chains only).
const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEFAULT_DEPLOYMENT: &str = ".keymarket/deployment.json";
const DEFAULT_DATABASE: &str = "sqlite:keymarket.db";

#[derive(Parser)]
#[command(
    name = "keymarket",
    version,
    about = "friend.tech-compatible key market: deploy, simulate, index, serve"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start a local anvil chain, deploy the market, simulate trading and print the results.
    Up(UpArgs),
    /// Deploy a KeyMarket and write the deployment file.
    Deploy(DeployArgs),
    /// Drive realistic trading against a deployment (needs a dev node with unlocked accounts).
    Simulate(SimulateArgs),
    /// Index the markets' Trade events into SQL (SQLite file by default, or PostgreSQL).
    Index(IndexArgs),
    /// Serve the HTTP API over an indexed database.
    Serve(ServeArgs),
    /// Benchmark: latency from a block being mined to its trades being queryable, while following.
    #[command(hide = true)]
    BenchLive(BenchLiveArgs),
    /// Benchmark: write a friend.tech-sized synthetic database through the store (no chain).
    #[command(hide = true)]
    BenchStore(bench_store::BenchStoreArgs),
}

#[derive(Args)]
struct ServeArgs {
    /// Database written by `keymarket index`.
    #[arg(long, default_value = DEFAULT_DATABASE, env = "KEYMARKET_DATABASE_URL")]
    database_url: String,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080", env = "KEYMARKET_LISTEN")]
    listen: std::net::SocketAddr,
    /// Requests per second allowed per client IP (bursts of twice that); 0 = no limit.
    #[arg(long, default_value_t = 100, env = "KEYMARKET_RATE_LIMIT")]
    rate_limit: u32,
}

#[derive(Args)]
struct BenchLiveArgs {
    /// JSON-RPC endpoint of a dev chain (anvil).
    #[arg(long, default_value = "http://127.0.0.1:8545")]
    rpc_url: String,
    /// The deployment file.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    deployment: PathBuf,
    /// Database to index into (should be fresh).
    #[arg(long)]
    database_url: String,
    /// Blocks to mine.
    #[arg(long, default_value_t = 200)]
    blocks: u64,
    /// Trades per block.
    #[arg(long, default_value_t = 50)]
    trades_per_block: u64,
    /// The follower's head polling interval, in milliseconds.
    #[arg(long, default_value_t = 100)]
    poll_ms: u64,
    /// Mine a block every this many milliseconds (a chain's block time, e.g. 2000 for Base);
    /// 0 = each block as soon as the previous one is indexed.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
}

#[derive(Args)]
struct IndexArgs {
    /// JSON-RPC endpoint (http:// or ws://).
    #[arg(
        long,
        default_value = "http://127.0.0.1:8545",
        env = "KEYMARKET_RPC_URL"
    )]
    rpc_url: String,
    /// Deployment files written by `keymarket deploy` (repeatable). Used when no --market is given.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    deployment: Vec<PathBuf>,
    /// A market as ADDRESS@START_BLOCK (repeatable), e.g. friend.tech on Base:
    /// 0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4@2430440.
    #[arg(long, value_parser = parse_market)]
    market: Vec<(Address, u64)>,
    /// Database: sqlite:FILE (created if missing) or postgres://user@host/db.
    #[arg(long, default_value = DEFAULT_DATABASE, env = "KEYMARKET_DATABASE_URL")]
    database_url: String,
    /// Keep following the head after the backfill.
    #[arg(long)]
    follow: bool,
    /// Index only blocks this many blocks below the head.
    #[arg(long, default_value_t = 0)]
    confirmations: u64,
    /// Block hashes kept for reorg repair (deeper reorgs stop the indexer).
    #[arg(long, default_value_t = 128)]
    window: u64,
    /// eth_getLogs ranges fetched concurrently.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// First eth_getLogs range, in blocks (it adapts).
    #[arg(long, default_value_t = 1000)]
    initial_range: u64,
    /// Largest eth_getLogs range, in blocks.
    #[arg(long, default_value_t = 100_000)]
    max_range: u64,
    /// Stop after indexing this block.
    #[arg(long)]
    stop_at: Option<u64>,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Fetch and decode without storing (the RPC side's ceiling, for benchmarks).
    #[arg(long, hide = true)]
    fetch_only: bool,
}

fn sqlite_or_url(s: &str) -> Result<String, String> {
    Ok(if s.contains(':') {
        s.to_string()
    } else {
        format!("sqlite:{s}")
    })
}

fn parse_market(s: &str) -> Result<(Address, u64), String> {
    let (a, b) = s.split_once('@').ok_or("expected ADDRESS@START_BLOCK")?;
    let address = a.parse().map_err(|e| format!("bad address {a:?}: {e}"))?;
    let block = b
        .parse()
        .map_err(|e| format!("bad start block {b:?}: {e}"))?;
    Ok((address, block))
}

#[derive(Args)]
struct UpArgs {
    /// Port for the local anvil chain.
    #[arg(long, default_value_t = 8545, env = "KEYMARKET_ANVIL_PORT")]
    port: u16,
    /// Where to write the deployment file.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    deployment: PathBuf,
    /// Stop (and stop anvil) once trades are simulated and indexed, instead of keeping them up.
    #[arg(long)]
    exit: bool,
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Database the indexer fills (recreated on every `up`: a new anvil is a new chain).
    #[arg(long, default_value = ".keymarket/up.db", value_parser = sqlite_or_url)]
    database_url: String,
    /// After the initial simulation, keep trading: this many trades per block...
    #[arg(long, default_value_t = 20)]
    live_trades: u64,
    /// ...one block every this many seconds (0 = no live trading).
    #[arg(long, default_value_t = 2)]
    live_interval_secs: u64,
    #[command(flatten)]
    sim: SimArgs,
}

#[derive(Args)]
struct DeployArgs {
    /// JSON-RPC endpoint of the chain.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8545",
        env = "KEYMARKET_RPC_URL"
    )]
    rpc_url: String,
    /// Deployer key (defaults to anvil's first dev account).
    #[arg(long, default_value = ANVIL_KEY_0, env = "KEYMARKET_PRIVATE_KEY", hide_default_value = true)]
    private_key: String,
    /// Protocol fee destination (defaults to the deployer).
    #[arg(long)]
    fee_destination: Option<Address>,
    /// Protocol fee, 1e18 = 100% (friend.tech: 5%); at most 10%.
    #[arg(long, default_value = "50000000000000000")]
    protocol_fee_percent: U256,
    /// Subject fee, 1e18 = 100% (friend.tech: 5%); at most 10%.
    #[arg(long, default_value = "50000000000000000")]
    subject_fee_percent: U256,
    /// The referrer's share of the protocol fee, in basis points.
    #[arg(long, default_value = "2000")]
    referral_share_bps: U256,
    /// Where to write the deployment file.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    out: PathBuf,
}

#[derive(Args)]
struct SimulateArgs {
    /// JSON-RPC endpoint of the dev chain.
    #[arg(
        long,
        default_value = "http://127.0.0.1:8545",
        env = "KEYMARKET_RPC_URL"
    )]
    rpc_url: String,
    /// The deployment file written by `keymarket deploy`.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    deployment: PathBuf,
    #[command(flatten)]
    sim: SimArgs,
}

#[derive(Args)]
struct SimArgs {
    /// Number of trade transactions to send (a few are built to revert).
    #[arg(long, default_value_t = 2_000)]
    trades: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of subjects.
    #[arg(long, default_value_t = 40)]
    subjects: usize,
    /// Transactions per block.
    #[arg(long, default_value_t = 500)]
    batch_size: usize,
    /// Simulated seconds between blocks.
    #[arg(long, default_value_t = 120)]
    block_interval_secs: u64,
    /// Share of trades built to revert, per thousand.
    #[arg(long, default_value_t = 5)]
    fail_permille: u32,
    /// Share of buys naming a referrer, per thousand.
    #[arg(long, default_value_t = 100)]
    referral_permille: u32,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

impl SimArgs {
    fn config(&self) -> SimConfig {
        SimConfig {
            trades: self.trades,
            seed: self.seed,
            subjects: self.subjects,
            batch_size: self.batch_size,
            block_interval_secs: self.block_interval_secs,
            fail_permille: self.fail_permille,
            referral_permille: self.referral_permille,
            progress: !self.json,
            ..SimConfig::default()
        }
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Up(args) => up(args).await,
        Command::Deploy(args) => {
            let d = deploy(&args).await?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(())
        }
        Command::Simulate(args) => simulate(args).await,
        Command::Index(args) => index(args).await,
        Command::BenchLive(args) => bench_live(args).await,
        Command::BenchStore(args) => bench_store::run(args).await,
        Command::Serve(args) => {
            let store = Store::connect_with(&args.database_url, Some(4)).await?;
            let listener = bind(args.listen).await?;
            println!("API on http://{}/v1/overview", args.listen);
            let state = keymarket_api::AppState::new(store)
                .with_rate_limit(args.rate_limit, args.rate_limit.saturating_mul(2));
            keymarket_api::serve(listener, state, shutdown_on_signal().cancelled_owned()).await?;
            eprintln!("stopped: requests in flight were answered");
            Ok(())
        }
    }
}

/// A token cancelled by the first SIGTERM or SIGINT (Ctrl-C), for a clean stop: the indexer
/// finishes the commit in flight, the API answers the requests in flight. A second signal exits
/// at once (status 130); the database is consistent then too, since every batch is one
/// transaction.
fn shutdown_on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            warn!(target: "keymarket", "cannot install signal handlers; SIGTERM/SIGINT kill the process");
            return;
        };
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(target: "keymarket", signal = name, "stopping cleanly (send it again to exit at once)");
        cancel.cancel();
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        warn!(target: "keymarket", "second signal: exiting now");
        std::process::exit(130);
    });
    token
}

/// The anvil every local command uses: enough unlocked, rich accounts for the simulator, FIFO
/// ordering (trades execute in the order they were sent) and room for big blocks.
fn spawn_anvil(port: u16, accounts: usize) -> Result<AnvilInstance> {
    let path = toolchain::anvil_path();
    Anvil::at(&path)
        .port(port)
        .args(["--accounts", &accounts.to_string(), "--balance", "1000000000"])
        .args(["--gas-limit", "1000000000", "--order", "fifo"])
        .timeout(30_000)
        .try_spawn()
        .wrap_err_with(|| {
            format!(
                "could not start anvil ({}); run scripts/setup.sh, or is port {port} already taken?",
                path.display()
            )
        })
}

async fn up(args: UpArgs) -> Result<()> {
    let stop = shutdown_on_signal();
    let accounts = args.sim.subjects + 20;
    info!(target: "keymarket::up", port = args.port, accounts, "starting anvil");
    let anvil = spawn_anvil(args.port, accounts)?;
    let rpc_url = anvil.endpoint();
    let deployment = deploy(&DeployArgs {
        rpc_url: rpc_url.clone(),
        private_key: ANVIL_KEY_0.into(),
        fee_destination: None,
        protocol_fee_percent: U256::from(50_000_000_000_000_000u64),
        subject_fee_percent: U256::from(50_000_000_000_000_000u64),
        referral_share_bps: U256::from(2_000),
        out: args.deployment.clone(),
    })
    .await?;
    println!("chain      {rpc_url} (chain id {})", deployment.chain_id);
    println!(
        "KeyMarket  {} (block {})",
        deployment.address, deployment.deploy_block
    );
    println!("deployment {}", args.deployment.display());
    let report = tokio::select! {
        r = run_simulation(&rpc_url, &deployment, &args.sim) => r?,
        () = stop.cancelled() => {
            eprintln!("stopped during the simulation; nothing was indexed");
            return Ok(());
        }
    };
    print_report(&report, args.sim.json)?;

    // Index the fresh chain into a fresh SQLite file (a restarted anvil is a new chain).
    if let Some(path) = args.database_url.strip_prefix("sqlite:") {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{path}{suffix}"));
        }
        if let Some(dir) = std::path::Path::new(path)
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            std::fs::create_dir_all(dir)?;
        }
    }
    let store = Store::connect(&args.database_url).await?;
    let provider = ProviderBuilder::new().connect(&rpc_url).await?;
    let spec = MarketSpec {
        address: deployment.address,
        start_block: deployment.deploy_block,
        chain_id: Some(deployment.chain_id),
    };
    let config = IndexerConfig {
        progress: true,
        shutdown: stop.clone(),
        ..IndexerConfig::default()
    };
    println!("\nindexing into {}", args.database_url);
    let run = keymarket_indexer::run(&provider, &store, spec, &config).await?;
    if run.stopped {
        eprintln!("stopped: blocks below {} are indexed", run.next_block);
        return Ok(());
    }
    print_stats(&store, &provider, &spec, &run).await?;
    if args.exit {
        return Ok(());
    }
    let listener = bind(args.listen).await?;
    let api = keymarket_api::serve(
        listener,
        // Its own pool: readers never wait for the indexer's batches (WAL).
        keymarket_api::AppState::new(Store::connect_with(&args.database_url, Some(4)).await?)
            .with_rate_limit(100, 200),
        stop.clone().cancelled_owned(),
    );
    println!("\ndashboard  http://{}/", args.listen);
    println!(
        "API        http://{}/v1/overview (also /v1/daily, /v1/subjects/top, /v1/traders/top, /v1/trades, /healthz)",
        args.listen
    );
    println!("anvil keeps running on {rpc_url}; the indexer follows it. Press Ctrl-C to stop.");
    let follow = IndexerConfig {
        follow: true,
        shutdown: stop.clone(),
        ..IndexerConfig::default()
    };
    if args.live_interval_secs > 0 {
        println!(
            "trading    {} trades every {} s keep flowing (--live-interval-secs 0 stops them)",
            args.live_trades, args.live_interval_secs
        );
    }
    // Each part stops on the signal; one that fails stops the others.
    let indexer = async {
        let r = keymarket_indexer::run(&provider, &store, spec, &follow).await;
        stop.cancel();
        r.map_err(eyre::Report::from)
    };
    let api = async {
        let r = api.await;
        stop.cancel();
        r.map_err(eyre::Report::from)
    };
    let trading = async {
        tokio::select! {
            r = live_trading(&provider, &deployment, &args) => { stop.cancel(); r }
            () = stop.cancelled() => Ok(()),
        }
    };
    let (indexed, served, traded) = tokio::join!(indexer, api, trading);
    let indexed = indexed?;
    served?;
    traded?;
    drop(anvil);
    eprintln!(
        "stopped: blocks below {} are indexed in {}; anvil stopped",
        indexed.next_block, args.database_url
    );
    Ok(())
}

/// `keymarket up`'s steady trade stream: a block of `live_trades` simulated trades every
/// `live_interval_secs` (block timestamps advance by the same interval), until stopped.
async fn live_trading<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    args: &UpArgs,
) -> Result<()> {
    if args.live_interval_secs == 0 || args.live_trades == 0 {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(args.live_interval_secs));
    for round in 1u64.. {
        tick.tick().await;
        let config = SimConfig {
            trades: args.live_trades,
            seed: args.sim.seed.wrapping_add(round),
            batch_size: args.live_trades as usize,
            block_interval_secs: args.live_interval_secs,
            progress: false,
            ..args.sim.config()
        };
        let r = keymarket_simulate::simulate(provider, deployment, &config).await?;
        tracing::debug!(target: "keymarket::up", round, trades = r.trades, block = r.block_range.1, "live trades mined");
    }
    Ok(())
}

async fn deploy(args: &DeployArgs) -> Result<Deployment> {
    let signer: PrivateKeySigner = args
        .private_key
        .parse()
        .wrap_err("--private-key is not a valid hex private key")?;
    let sender = signer.address();
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect(&args.rpc_url)
        .await
        .wrap_err_with(|| format!("cannot connect to {}", args.rpc_url))?;
    provider
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("no JSON-RPC node answers at {}", args.rpc_url))?;
    let config = DeployConfig {
        owner: sender,
        fee_destination: args.fee_destination.unwrap_or(sender),
        protocol_fee_percent: args.protocol_fee_percent,
        subject_fee_percent: args.subject_fee_percent,
        referral_share_bps: args.referral_share_bps,
    };
    let deployment = keymarket_contracts::deploy(&provider, &config)
        .await
        .wrap_err("deployment failed")?;
    deployment.write(&args.out)?;
    info!(target: "keymarket::deploy", address = %deployment.address, file = %args.out.display(), "deployment written");
    Ok(deployment)
}

async fn simulate(args: SimulateArgs) -> Result<()> {
    let deployment = Deployment::read(&args.deployment)
        .wrap_err("no usable deployment file; run `keymarket deploy` first or pass --deployment")?;
    let report = run_simulation(&args.rpc_url, &deployment, &args.sim).await?;
    print_report(&report, args.sim.json)
}

async fn run_simulation(
    rpc_url: &str,
    deployment: &Deployment,
    sim: &SimArgs,
) -> Result<SimReport> {
    let provider = ProviderBuilder::new()
        .connect(rpc_url)
        .await
        .wrap_err_with(|| format!("cannot connect to {rpc_url}"))?;
    let code = provider
        .get_code_at(deployment.address)
        .await
        .wrap_err_with(|| format!("no JSON-RPC node answers at {rpc_url}"))?;
    if code.is_empty() {
        bail!(
            "no contract at {} on {rpc_url}: is this the chain the deployment file was written for?",
            deployment.address
        );
    }
    info!(target: "keymarket::simulate", trades = sim.trades, seed = sim.seed, subjects = sim.subjects, "simulating");
    let report = tokio::time::timeout(
        Duration::from_secs(24 * 3600),
        keymarket_simulate::simulate(&provider, deployment, &sim.config()),
    )
    .await
    .wrap_err("simulation timed out")??;
    Ok(report)
}

fn print_report(r: &SimReport, json: bool) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(r)?);
        return Ok(());
    }
    println!("\nsimulated trading, read back from the chain's receipts:");
    println!(
        "  blocks           {} ({}..={})",
        r.blocks, r.block_range.0, r.block_range.1
    );
    println!(
        "  transactions     {} sent, {} reverted ({} built to revert)",
        r.sent, r.reverted, r.expected_reverts
    );
    println!(
        "  trades           {} ({} buys, {} sells); {} subjects opened",
        r.trades, r.buys, r.sells, r.subjects_opened
    );
    println!(
        "  volume           {} ETH (buys {} ETH, sells {} ETH)",
        format_ether(r.buy_volume + r.sell_volume),
        format_ether(r.buy_volume),
        format_ether(r.sell_volume)
    );
    println!(
        "  protocol fees    {} ETH (of which referrals {} ETH)",
        format_ether(r.protocol_fees),
        format_ether(r.referral_fees)
    );
    println!("  subject fees     {} ETH", format_ether(r.subject_fees));
    println!(
        "  rate             {:.0} trades/s over {:.1}s",
        r.trades_per_sec(),
        r.elapsed.as_secs_f64()
    );
    if r.unexpected_reverts() > 0 {
        bail!(
            "{} trades reverted that were not built to revert, e.g. {:?}",
            r.unexpected_reverts(),
            r.unexpected_revert_txs
        );
    }
    Ok(())
}

async fn index(args: IndexArgs) -> Result<()> {
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
    let store = Store::connect(&args.database_url).await?;
    let provider = ProviderBuilder::new()
        .connect(&args.rpc_url)
        .await
        .wrap_err_with(|| format!("cannot connect to {}", args.rpc_url))?;
    let config = IndexerConfig {
        fetch: FetchConfig {
            initial_range: args.initial_range,
            max_range: args.max_range,
            concurrency: args.concurrency,
            ..FetchConfig::default()
        },
        follow: args.follow,
        confirmations: args.confirmations,
        window: args.window,
        progress: !args.quiet && !args.follow,
        stop_at: args.stop_at,
        shutdown: shutdown_on_signal(),
        ..IndexerConfig::default()
    };
    if args.fetch_only {
        for spec in &specs {
            let (trades, blocks, elapsed) =
                keymarket_indexer::fetch_only(&provider, *spec, &config).await?;
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
    let reports = futures::future::try_join_all(runs).await?;
    for (spec, r) in specs.iter().zip(&reports) {
        if r.stopped {
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

/// Prints the headline stats of a market from the database, and the run's rate.
async fn print_stats<P: Provider>(
    store: &Store,
    provider: &P,
    spec: &MarketSpec,
    r: &RunReport,
) -> Result<()> {
    let market = store
        .ensure_market(
            provider.get_chain_id().await?,
            spec.address,
            spec.start_block,
        )
        .await?;
    let t = store.totals(market.id, None).await?;
    let wei = |s: &str| s.parse::<U256>().unwrap_or_default();
    let volume = wei(&t.buy_volume) + wei(&t.sell_volume);
    println!(
        "market {} (chain {}), indexed to block {}:",
        spec.address,
        market.chain_id,
        market.next_block.saturating_sub(1)
    );
    println!(
        "  protocol revenue  {} ETH",
        format_ether(wei(&t.protocol_fees))
    );
    println!(
        "  subject revenue   {} ETH",
        format_ether(wei(&t.subject_fees))
    );
    println!(
        "  volume            {} ETH (buys {} ETH, sells {} ETH)",
        format_ether(volume),
        format_ether(wei(&t.buy_volume)),
        format_ether(wei(&t.sell_volume))
    );
    println!(
        "  trades            {} ({} buys, {} sells)",
        t.trades, t.buys, t.sells
    );
    println!("  traders           {}; subjects {}", t.traders, t.subjects);
    println!(
        "  this run          {} trades in {:.2}s ({:.0} trades/s); store stage {:.2}s ({:.0} trades/s); waiting for the RPC {:.2}s; building deferred indexes {:.2}s; other {:.2}s",
        r.trades,
        r.elapsed.as_secs_f64(),
        r.trades as f64 / r.elapsed.as_secs_f64().max(1e-9),
        r.store_time.as_secs_f64(),
        r.trades as f64 / r.store_time.as_secs_f64().max(1e-9),
        r.fetch_wait.as_secs_f64(),
        r.index_time.as_secs_f64(),
        r.elapsed
            .saturating_sub(r.store_time + r.fetch_wait + r.index_time)
            .as_secs_f64()
    );
    Ok(())
}

/// Mines blocks of simulated trades one at a time while an in-process follower indexes them, and
/// measures, per block, the time from the block's receipts being available (it is mined) until
/// its trades are visible through a separate database connection.
async fn bench_live(args: BenchLiveArgs) -> Result<()> {
    let deployment = Deployment::read(&args.deployment)?;
    let provider = ProviderBuilder::new().connect(&args.rpc_url).await?;
    let spec = MarketSpec {
        address: deployment.address,
        start_block: deployment.deploy_block,
        chain_id: Some(deployment.chain_id),
    };
    let writer = Store::connect(&args.database_url).await?;
    let reader = Store::connect(&args.database_url).await?;
    let config = IndexerConfig {
        follow: true,
        poll_interval: Duration::from_millis(args.poll_ms),
        ..IndexerConfig::default()
    };
    let sim = SimConfig {
        trades: args.trades_per_block,
        batch_size: args.trades_per_block as usize,
        progress: false,
        ..SimConfig::default()
    };
    // Open the subjects (a block of its own) and catch up first, then follow in the background:
    // from here on every simulate call mines exactly one block.
    keymarket_simulate::simulate(&provider, &deployment, &sim).await?;
    keymarket_indexer::run(&provider, &writer, spec, &IndexerConfig::default()).await?;
    let follower = {
        let (provider, writer) = (provider.clone(), writer.clone());
        tokio::spawn(async move { keymarket_indexer::run(provider, &writer, spec, &config).await })
    };
    let mut latencies = Vec::with_capacity(args.blocks as usize);
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    for i in 0..args.blocks {
        if args.interval_ms > 0 {
            tick.tick().await;
        }
        let report = keymarket_simulate::simulate(
            &provider,
            &deployment,
            &SimConfig {
                seed: 1000 + i,
                ..sim.clone()
            },
        )
        .await?;
        let mined = std::time::Instant::now();
        let block = report.block_range.1 as i64;
        loop {
            let (n,): (i64,) =
                sqlx::query_as("SELECT COUNT(*) FROM trades WHERE block_number = $1")
                    .bind(block)
                    .fetch_one(reader.pool())
                    .await?;
            if n as u64 == report.trades {
                break;
            }
            if mined.elapsed() > Duration::from_secs(30) {
                bail!("block {block} not indexed after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(mined.elapsed());
    }
    follower.abort();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "live latency over {} blocks of {} trades (poll {} ms, a block every {} ms): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        args.trades_per_block,
        args.poll_ms,
        args.interval_ms,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.wrap_err_with(|| {
        format!("cannot listen on {addr}: is another process using it? (pass --listen)")
    })
}
