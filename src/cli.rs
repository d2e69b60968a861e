//! What the commands share: one definition of each common argument (the RPC endpoint, the
//! database, the simulator's knobs), their defaults and environment variables, the parsers of
//! argument values, the shutdown signal and the listener.

use std::path::PathBuf;

use alloy::primitives::Address;
use clap::Args;
use eyre::{Context, Result};
use keymarket_simulate::SimConfig;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// anvil's first dev account's key (public knowledge; for local chains only).
pub(crate) const ANVIL_KEY_0: &str =
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80";
/// Where `deploy` writes the deployment file and the other commands read it.
pub(crate) const DEFAULT_DEPLOYMENT: &str = ".keymarket/deployment.json";

/// The JSON-RPC endpoint of a chain.
#[derive(Args, Debug, Clone)]
pub(crate) struct RpcArgs {
    /// JSON-RPC endpoint (http:// or ws://).
    #[arg(
        id = "rpc_url",
        long = "rpc-url",
        default_value = "http://127.0.0.1:8545",
        env = "KEYMARKET_RPC_URL"
    )]
    pub(crate) url: String,
}

/// The database the indexer writes and the API reads.
#[derive(Args, Debug, Clone)]
pub(crate) struct DatabaseArgs {
    /// Database: sqlite:FILE (created if missing; a bare path means a SQLite file) or
    /// postgres://user@host/db.
    #[arg(
        id = "database_url",
        long = "database-url",
        default_value = "sqlite:keymarket.db",
        env = "KEYMARKET_DATABASE_URL",
        value_parser = sqlite_or_url
    )]
    pub(crate) url: String,
}

/// The deployment file written by `keymarket deploy`.
#[derive(Args, Debug, Clone)]
pub(crate) struct DeploymentArgs {
    /// The deployment file written by `keymarket deploy`.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    pub(crate) deployment: PathBuf,
}

pub(crate) fn sqlite_or_url(s: &str) -> Result<String, String> {
    Ok(if s.contains(':') {
        s.to_string()
    } else {
        format!("sqlite:{s}")
    })
}

pub(crate) fn parse_market(s: &str) -> Result<(Address, u64), String> {
    let (a, b) = s.split_once('@').ok_or("expected ADDRESS@START_BLOCK")?;
    let address = a.parse().map_err(|e| format!("bad address {a:?}: {e}"))?;
    let block = b
        .parse()
        .map_err(|e| format!("bad start block {b:?}: {e}"))?;
    Ok((address, block))
}

#[derive(Args)]
pub(crate) struct SimArgs {
    /// Number of trade transactions to send (a few are built to revert).
    #[arg(long, default_value_t = 2_000)]
    pub(crate) trades: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// Number of subjects.
    #[arg(long, default_value_t = 40)]
    pub(crate) subjects: usize,
    /// Transactions per block.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch_size: usize,
    /// Simulated seconds between blocks.
    #[arg(long, default_value_t = 120)]
    pub(crate) block_interval_secs: u64,
    /// Share of trades built to revert, per thousand.
    #[arg(long, default_value_t = 5)]
    pub(crate) fail_permille: u32,
    /// Share of buys naming a referrer, per thousand.
    #[arg(long, default_value_t = 100)]
    pub(crate) referral_permille: u32,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

impl SimArgs {
    pub(crate) fn config(&self) -> SimConfig {
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

/// A token cancelled by the first SIGTERM or SIGINT (Ctrl-C), for a clean stop: the indexer
/// finishes the commit in flight, the API answers the requests in flight. A second signal exits
/// at once (status 130); the database is consistent then too, since every batch is one
/// transaction.
pub(crate) fn shutdown_on_signal() -> CancellationToken {
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

pub(crate) async fn bind(addr: std::net::SocketAddr) -> Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await.wrap_err_with(|| {
        format!("cannot listen on {addr}: is another process using it? (pass --listen)")
    })
}
