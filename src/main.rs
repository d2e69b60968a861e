//! `keymarket`: the command line of the keymarket project. Each command is a module of
//! `commands/`; the arguments they share are defined once in `cli.rs`; what they print is in
//! `report.rs`.
//!
//! - `keymarket up` starts a local anvil chain, deploys the market, simulates trading, indexes it
//!   and serves the dashboard (the README's main command);
//! - `keymarket deploy` deploys a KeyMarket and writes the deployment file;
//! - `keymarket simulate` drives realistic trading on a deployment;
//! - `keymarket index` indexes markets into SQLite or PostgreSQL;
//! - `keymarket serve` serves the API and dashboard;
//! - `keymarket quote|buy|sell|launch|withdraw|portfolio` trade keys (`commands/trade.rs`), signed
//!   by the key `wallet.rs` resolves.

mod cli;
mod commands;
mod report;
mod wallet;

use clap::{Parser, Subcommand};
use eyre::Result;

use crate::commands::{
    bench_live::BenchLiveArgs,
    bench_store::BenchStoreArgs,
    deploy::DeployArgs,
    export::ExportArgs,
    index::IndexArgs,
    serve::ServeArgs,
    simulate::SimulateArgs,
    trade::{LaunchArgs, PortfolioArgs, QuoteArgs, SideArg, TradeArgs, WithdrawArgs},
    up::UpArgs,
};

/// mimalloc instead of glibc's malloc: the indexer allocates per log and per bound parameter, and
/// glibc's allocator cost ~9% of its instructions (docs/performance.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "keymarket",
    version,
    about = "friend.tech-compatible key market: deploy, simulate, index, serve, trade"
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
    /// Export indexed data in Dune's layouts: trades as `social.trades`, the daily series (CSV or Parquet).
    Export(ExportArgs),
    /// Price a trade from the market's views: price, fees, total, the next key's price after it.
    Quote(QuoteArgs),
    /// Buy keys, bounded by a slippage tolerance and a deadline; simulated before it is sent.
    Buy(TradeArgs),
    /// Sell keys, bounded likewise.
    Sell(TradeArgs),
    /// Open your own keys: buy your first key(s) on the curve you choose.
    Launch(LaunchArgs),
    /// Withdraw subject fees, referral credits and deferred payments.
    Withdraw(WithdrawArgs),
    /// An account's keys, their sell value now and what it can withdraw.
    Portfolio(PortfolioArgs),
    /// Benchmark: latency from a block being mined to its trades being queryable, while following.
    #[command(hide = true)]
    BenchLive(BenchLiveArgs),
    /// Benchmark: write a friend.tech-sized synthetic database through the store (no chain).
    #[command(hide = true)]
    BenchStore(BenchStoreArgs),
}

/// Runs the command; an error is printed as `error: …` with its causes (no backtrace unless
/// `KEYMARKET_BACKTRACE=1`) and the exit code is 1.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            if std::env::var("KEYMARKET_BACKTRACE").is_ok_and(|v| v == "1") {
                eprintln!("error: {e:?}");
            } else {
                eprintln!("error: {e}");
                let mut last = e.to_string();
                for cause in e.chain().skip(1).map(|c| c.to_string()) {
                    if cause != last {
                        eprintln!("  caused by: {cause}");
                    }
                    last = cause;
                }
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        // Colours only on a terminal, and never with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    match Cli::parse().command {
        Command::Up(args) => commands::up::up(args).await,
        Command::Deploy(args) => {
            let d = commands::deploy::deploy(&args).await?;
            println!("{}", serde_json::to_string_pretty(&d)?);
            Ok(())
        }
        Command::Simulate(args) => commands::simulate::simulate(args).await,
        Command::Index(args) => commands::index::index(args).await,
        Command::BenchLive(args) => commands::bench_live::bench_live(args).await,
        Command::BenchStore(args) => commands::bench_store::run(args).await,
        Command::Serve(args) => commands::serve::serve(args).await,
        Command::Export(args) => commands::export::export(args).await,
        Command::Quote(args) => commands::trade::quote(args).await,
        Command::Buy(args) => commands::trade::trade(args, SideArg::Buy).await,
        Command::Sell(args) => commands::trade::trade(args, SideArg::Sell).await,
        Command::Launch(args) => commands::trade::launch(args).await,
        Command::Withdraw(args) => commands::trade::withdraw(args).await,
        Command::Portfolio(args) => commands::trade::portfolio(args).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    /// clap's own consistency checks of every command's arguments (unique names, valid defaults,
    /// the shared groups flattened once).
    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn shared_arguments_have_one_default() {
        let index = Cli::try_parse_from(["keymarket", "index"]).unwrap();
        let serve = Cli::try_parse_from(["keymarket", "serve"]).unwrap();
        let (Command::Index(index), Command::Serve(serve)) = (index.command, serve.command) else {
            unreachable!()
        };
        assert_eq!(index.db.url, serve.db.url);
        assert_eq!(index.db.url, "sqlite:keymarket.db");
        let bare = Cli::try_parse_from(["keymarket", "serve", "--database-url", "x.db"]).unwrap();
        let Command::Serve(bare) = bare.command else {
            unreachable!()
        };
        assert_eq!(bare.db.url, "sqlite:x.db", "a bare path is a SQLite file");
    }
}
