//! `keymarket up`: the README's main job — a local anvil chain, the market deployed, trading
//! simulated, indexed into SQLite, the API and dashboard served, trades flowing and followed
//! until Ctrl-C.

use std::{path::PathBuf, time::Duration};

use alloy::{
    node_bindings::AnvilInstance,
    providers::{Provider, ProviderBuilder},
    signers::local::PrivateKeySigner,
};
use clap::Args;
use eyre::{Context, Result};
use keymarket_contracts::{DeployConfig, Deployment, toolchain};
use keymarket_indexer::{IndexerConfig, MarketSpec, StoreReader, StoreWriter};
use tracing::info;

use crate::{
    cli::{
        ANVIL_KEY_0, DEFAULT_DEPLOYMENT, ProfileArg, RpcArgs, SimArgs, bind, shutdown_on_signal,
        sqlite_or_url,
    },
    commands::{deploy::deploy_with, simulate::run_simulation},
    report::{print_report, print_stats},
};

/// `keymarket up`'s arguments.
#[derive(Args)]
pub(crate) struct UpArgs {
    /// Port for the local anvil chain.
    #[arg(long, default_value_t = 8545, env = "KEYMARKET_ANVIL_PORT")]
    pub(crate) port: u16,
    /// Where to write the deployment file.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    pub(crate) deployment: PathBuf,
    /// Stop (and stop anvil) once trades are simulated and indexed, instead of keeping them up.
    #[arg(long)]
    pub(crate) exit: bool,
    /// Address the API listens on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub(crate) listen: std::net::SocketAddr,
    /// Database the indexer fills. Deleted and recreated on every `up` (a new anvil is a new
    /// chain), so its default is not `index`'s and `serve`'s `keymarket.db`.
    #[arg(long, default_value = ".keymarket/up.db", value_parser = sqlite_or_url)]
    pub(crate) database_url: String,
    /// After the initial simulation, keep trading: this many trades per block... (by default one
    /// every 10 minutes: the rate of the history's last days, ~140 a day, so "today" stays in
    /// proportion to them)
    #[arg(long, default_value_t = 1)]
    pub(crate) live_trades: u64,
    /// ...one block every this many seconds, at the wall clock's time (0 = no live trading).
    #[arg(long, default_value_t = 600)]
    pub(crate) live_interval_secs: u64,
    #[command(flatten)]
    pub(crate) sim: SimArgs,
}

/// The anvil every local command uses: enough unlocked, rich accounts for the simulator, FIFO
/// ordering (trades execute in the order they were sent) and room for big blocks.
/// With `genesis`, the chain's clock starts at that unix time (a history that ends now).
pub(crate) fn spawn_anvil(
    port: u16,
    accounts: usize,
    genesis: Option<u64>,
) -> Result<AnvilInstance> {
    let path = toolchain::anvil_path();
    let genesis: Vec<String> = genesis
        .map(|t| vec!["--timestamp".into(), t.to_string()])
        .unwrap_or_default();
    // anvil writes older blocks' states to disk (~1.6 GB for the default history) and a stopped
    // anvil leaves them behind: here, in one folder per port, emptied when the next `up` starts.
    let cache = PathBuf::from(format!(".keymarket/anvil-{port}"));
    if cache.exists() {
        std::fs::remove_dir_all(&cache)
            .wrap_err_with(|| format!("could not empty {}", cache.display()))?;
    }
    toolchain::dev_anvil(accounts)
        .port(port)
        .args(genesis)
        .arg("--cache-path")
        .arg(&cache)
        .timeout(30_000)
        .try_spawn()
        .wrap_err_with(|| {
            format!(
                "could not start anvil ({}); run scripts/setup.sh, or is port {port} already taken?",
                path.display()
            )
        })
}

pub(crate) async fn up(args: UpArgs) -> Result<()> {
    let stop = shutdown_on_signal();
    // Dev accounts trade with the flat profile; with a generated population they are the
    // deployer's and yours (e.g. `keymarket buy … --dev-account 40`).
    let accounts = match args.sim.traders() {
        None => args.sim.subjects() + 20,
        Some(_) => 50,
    };
    // A history of N days ends now: the chain starts N days ago (and a minute, for the
    // deployment's blocks); live blocks then carry the wall clock's time.
    let genesis = match args.sim.profile {
        ProfileArg::Friendtech => Some(unix_now()? - u64::from(args.sim.days) * 86_400 - 60),
        ProfileArg::Flat => None,
    };
    info!(target: "keymarket::up", port = args.port, accounts, ?genesis, "starting anvil");
    let anvil = spawn_anvil(args.port, accounts, genesis)?;
    let rpc_url = anvil.endpoint();
    let rpc = RpcArgs {
        url: rpc_url.clone(),
        ca_file: None,
    };
    let deployer: PrivateKeySigner = ANVIL_KEY_0.parse().expect("anvil's key is a key");
    // friend.tech's fees; the deployer (anvil's first account) receives the protocol's.
    let deployment = deploy_with(&rpc, deployer, &args.deployment, |sender| {
        DeployConfig::friendtech_fees(sender, sender)
    })
    .await?;
    println!("chain      {rpc_url} (chain id {})", deployment.chain_id);
    println!(
        "KeyMarket  {} (block {})",
        deployment.address, deployment.deploy_block
    );
    println!("deployment {}", args.deployment.display());
    let (mut simulation, report) = tokio::select! {
        r = run_simulation(&rpc, &deployment, &args.sim) => r?,
        () = stop.cancelled() => {
            eprintln!("stopped during the simulation; nothing was indexed");
            return Ok(());
        }
    };
    print_report(&report, args.sim.json)?;

    // Before the file is replaced: another `up` or `index` on it is refused in words.
    let _lock = keymarket_indexer::store::IndexLock::acquire(&args.database_url)?;
    fresh_sqlite(&args.database_url)?;
    let store = StoreWriter::connect(&args.database_url).await?;
    let provider =
        ProviderBuilder::new().connect_client(rpc.client(Duration::from_secs(300)).await?);
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
        app_state(&args.database_url, &config).await?,
        stop.clone().cancelled_owned(),
    );
    println!("\ndashboard  http://{}/", args.listen);
    println!(
        "API        http://{}/v1/overview (also /v1/daily, /v1/subjects/top, /v1/traders/top, /v1/trades, /healthz)",
        args.listen
    );
    println!("anvil keeps running on {rpc_url}; the indexer follows it. Press Ctrl-C to stop.");
    // The same counters as the backfill's, so /metrics counts the whole run.
    let follow = IndexerConfig {
        follow: true,
        progress: false,
        ..config.clone()
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
            r = live_trading(&provider, &deployment, &args, &mut simulation) => { stop.cancel(); r }
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

/// The API's state under `up`: its own pool (readers never wait for the indexer's batches, WAL),
/// the SQL endpoint on, and the retries of the indexer running in this process on /metrics.
async fn app_state(database_url: &str, config: &IndexerConfig) -> Result<keymarket_api::AppState> {
    let counts = config.fetch.counts.clone();
    Ok(keymarket_api::AppState::new(
        StoreReader::connect(database_url, Some(keymarket_api::STORE_CONNECTIONS)).await?,
    )
    .with_rate_limit(100, 200)
    .with_sql(Default::default())
    .with_retries(std::sync::Arc::new(move || counts.totals())))
}

/// A fresh SQLite file for the fresh chain (a restarted anvil is a new chain): an old one at
/// `database_url` removed, its folder made.
fn fresh_sqlite(database_url: &str) -> Result<()> {
    if let Some(path) = database_url.strip_prefix("sqlite:") {
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
    Ok(())
}

/// The wall clock, in Unix seconds.
fn unix_now() -> Result<u64> {
    Ok(std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs())
}

/// `keymarket up`'s steady trade stream: a block of `live_trades` simulated trades every
/// `live_interval_secs`, stamped with the wall clock's time, until stopped.
pub(crate) async fn live_trading<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    args: &UpArgs,
    simulation: &mut keymarket_simulate::Simulation,
) -> Result<()> {
    if args.live_interval_secs == 0 || args.live_trades == 0 {
        return std::future::pending().await;
    }
    let mut tick = tokio::time::interval(Duration::from_secs(args.live_interval_secs));
    for round in 1u64.. {
        tick.tick().await;
        // One block, at the wall clock's time (never before the chain's latest block).
        let config = args
            .sim
            .config()
            .live_round(args.live_trades, round, unix_now()?);
        let r = simulation.run(provider, deployment, &config).await?;
        tracing::debug!(target: "keymarket::up", round, trades = r.trades, block = r.block_range.1, "live trades mined");
    }
    Ok(())
}
