//! `keymarket`: the command line of the keymarket project.
//!
//! - `keymarket up` starts a local anvil chain, deploys the market, simulates trading and prints
//!   what happened (the README's main command);
//! - `keymarket deploy` deploys a KeyMarket and writes the deployment file;
//! - `keymarket simulate` drives realistic trading on a deployment.

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
use keymarket_simulate::{SimConfig, SimReport};
use tracing::info;

/// anvil's first dev account's key (public knowledge; for local chains only).
const ANVIL_KEY_0: &str = "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
const DEFAULT_DEPLOYMENT: &str = ".keymarket/deployment.json";

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
}

#[derive(Args)]
struct UpArgs {
    /// Port for the local anvil chain.
    #[arg(long, default_value_t = 8545, env = "KEYMARKET_ANVIL_PORT")]
    port: u16,
    /// Where to write the deployment file.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    deployment: PathBuf,
    /// Stop (and stop anvil) once the simulated trades are done instead of keeping the chain up.
    #[arg(long)]
    exit: bool,
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
    }
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
    let report = run_simulation(&rpc_url, &deployment, &args.sim).await?;
    print_report(&report, args.sim.json)?;
    if args.exit {
        return Ok(());
    }
    println!("\nanvil keeps running on {rpc_url}; press Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    drop(anvil);
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
