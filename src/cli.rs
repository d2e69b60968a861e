//! What the commands share: one definition of each common argument (the RPC endpoint, the
//! database, the simulator's knobs), their defaults and environment variables, the parsers of
//! argument values, the shutdown signal and the listener.

use std::path::PathBuf;

use alloy::primitives::Address;
use clap::Args;
use eyre::{Context, Result};
use keymarket_simulate::{Profile, SimConfig};
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

/// The time profile of a simulated run.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub(crate) enum ProfileArg {
    /// friend.tech's arc: launch, a peak in the second week, decline over `--days`, a daily cycle.
    Friendtech,
    /// One block every `--block-interval-secs`, `--batch-size` trades each (dev accounts unless
    /// `--traders` is given): the simulator's behaviour before profiles.
    Flat,
}

#[derive(Args)]
pub(crate) struct SimArgs {
    /// Number of trade transactions to send (a few are built to revert).
    #[arg(long, default_value_t = 20_000)]
    pub(crate) trades: u64,
    /// RNG seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
    /// When the trades happen.
    #[arg(long, value_enum, default_value_t = ProfileArg::Friendtech)]
    pub(crate) profile: ProfileArg,
    /// Length of the friend.tech-shaped history, in days.
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(1..=3650))]
    pub(crate) days: u32,
    /// Distinct trader accounts, generated and impersonated by anvil (0 = anvil's dev accounts).
    /// Default: one per 12 trades (friend.tech's traders made 10–15 trades each) with the
    /// friend.tech profile, the dev accounts with the flat one.
    #[arg(long)]
    pub(crate) traders: Option<usize>,
    /// Number of subjects. Default: one per four traders (40 with dev accounts).
    #[arg(long)]
    pub(crate) subjects: Option<usize>,
    /// Most transactions per block.
    #[arg(long, default_value_t = 500)]
    pub(crate) batch_size: usize,
    /// Simulated seconds between blocks with the flat profile.
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
    /// Generated traders, or `None` for the node's dev accounts.
    pub(crate) fn traders(&self) -> Option<usize> {
        match (self.traders, self.profile) {
            (Some(0), _) | (None, ProfileArg::Flat) => None,
            (Some(n), _) => Some(n),
            (None, ProfileArg::Friendtech) => Some((self.trades / 12).max(50) as usize),
        }
    }

    /// Subjects: as given, or one per four generated traders, or 40 dev accounts.
    pub(crate) fn subjects(&self) -> usize {
        self.subjects
            .unwrap_or_else(|| self.traders().map_or(40, |t| (t / 4).max(10)))
    }

    pub(crate) fn config(&self) -> SimConfig {
        SimConfig {
            trades: self.trades,
            seed: self.seed,
            subjects: self.subjects(),
            traders: self.traders(),
            profile: match self.profile {
                ProfileArg::Friendtech => Profile::Friendtech { days: self.days },
                ProfileArg::Flat => Profile::Flat,
            },
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
