//! What the commands share: one definition of each common argument (the RPC endpoint, the
//! database, the simulator's knobs), their defaults and environment variables, the parsers of
//! argument values, the shutdown signal and the listener.

use std::path::{Path, PathBuf};

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

pub(crate) use crate::net::rpc::RpcArgs;

/// Each RPC request's time limit in the commands that are not the indexer's (which has its own,
/// retried) nor the trader's (bounded by `--timeout`).
pub(crate) const RPC_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The SQLite file a writing command uses when given no database.
pub(crate) const DEFAULT_DATABASE: &str = "keymarket.db";
/// The SQLite file `keymarket up` recreates on every run.
pub(crate) const UP_DATABASE: &str = ".keymarket/up.db";

/// The database the indexer writes and the API reads.
#[derive(Args, Debug, Clone)]
pub(crate) struct DatabaseArgs {
    /// Database: sqlite:FILE (a bare path means a SQLite file) or postgres://user@host/db.
    /// Default keymarket.db; `serve` and `export` read scripts/up.sh's .keymarket/up.db when
    /// keymarket.db does not exist. Only `index` creates a SQLite file.
    #[arg(
        id = "database_url",
        long = "database-url",
        env = "KEYMARKET_DATABASE_URL",
        value_parser = sqlite_or_url
    )]
    url: Option<String>,
}

impl DatabaseArgs {
    /// Whether a database was named (--database-url or KEYMARKET_DATABASE_URL).
    pub(crate) fn given(&self) -> bool {
        self.url.is_some()
    }

    /// These arguments with `url` named (a config file's database).
    pub(crate) fn with_url(&self, url: String) -> Self {
        Self {
            url: Some(sqlite_or_url(&url).unwrap_or(url)),
        }
    }

    /// The database a writing command (`index`) uses, created if it is a missing SQLite file:
    /// the one given, else keymarket.db (never `up`'s, which the next `up` would wipe). Said on
    /// stderr.
    pub(crate) fn for_writing(&self) -> String {
        let url = self
            .url
            .clone()
            .unwrap_or_else(|| format!("sqlite:{DEFAULT_DATABASE}"));
        eprintln!("database: {}", database_shown(&url));
        url
    }

    /// The database a reading command (`serve`, `export`) uses, which must exist: the one given,
    /// else keymarket.db, else `up`'s .keymarket/up.db. Said on stderr.
    pub(crate) fn for_reading(&self) -> Result<String> {
        let url = match &self.url {
            Some(url) => url.clone(),
            None if !Path::new(DEFAULT_DATABASE).exists() && Path::new(UP_DATABASE).exists() => {
                format!("sqlite:{UP_DATABASE}")
            }
            None => format!("sqlite:{DEFAULT_DATABASE}"),
        };
        if let Some(path) = sqlite_path(&url)
            && !Path::new(path).exists()
        {
            eyre::bail!(
                "no database at {path}: index a chain into it first (`keymarket index --database-url {path}`, or scripts/up.sh, which writes {UP_DATABASE}), or pass --database-url"
            );
        }
        eprintln!("database: {}", database_shown(&url));
        Ok(url)
    }
}

/// The file of a `sqlite:` URL (without its `?options`), if it is one.
fn sqlite_path(url: &str) -> Option<&str> {
    let path = url.strip_prefix("sqlite:")?;
    let path = path.strip_prefix("//").unwrap_or(path);
    Some(path.split('?').next().unwrap_or(path))
}

/// A database URL as it may be printed: a SQLite file's path, or the URL without credentials.
pub(crate) fn database_shown(url: &str) -> String {
    match sqlite_path(url) {
        Some(path) => format!("{path} (SQLite)"),
        None => crate::net::redact::url(url),
    }
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
    /// Unix time of the first simulated block (default: just after the chain's latest block).
    /// With the same --seed and --start on a fresh chain, the same trades, blocks and times.
    #[arg(long, value_name = "UNIX_SECONDS")]
    pub(crate) start: Option<u64>,
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
            start: self.start,
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
