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

mod chains;
mod cli;
mod commands;
mod market;
mod net;
mod output;
mod report;
mod wallet;

use clap::{Parser, Subcommand};
use eyre::Result;

use crate::commands::{
    account::{LaunchArgs, WithdrawArgs},
    bench_live::BenchLiveArgs,
    bench_raw_logs::BenchRawLogsArgs,
    bench_store::BenchStoreArgs,
    deploy::DeployArgs,
    export::ExportArgs,
    index::IndexArgs,
    portfolio::PortfolioArgs,
    serve::ServeArgs,
    simulate::SimulateArgs,
    trade::{BuyArgs, QuoteArgs, SellArgs},
    tx::TxArgs,
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
    Buy(BuyArgs),
    /// Sell keys, bounded likewise.
    Sell(SellArgs),
    /// Open your own keys: buy your first key(s) on the curve you choose.
    Launch(LaunchArgs),
    /// Withdraw subject fees, referral credits and deferred payments.
    Withdraw(WithdrawArgs),
    /// An account's keys, their sell value now and what it can withdraw.
    Portfolio(PortfolioArgs),
    /// What became of a transaction: unknown, pending, mined (its trades decoded) or reverted.
    Tx(TxArgs),
    /// Benchmark: latency from a block being mined to its trades being queryable, while following.
    #[command(hide = true)]
    BenchLive(BenchLiveArgs),
    /// Benchmark: write a friend.tech-sized synthetic database through the store (no chain).
    #[command(hide = true)]
    BenchStore(BenchStoreArgs),
    /// Benchmark: the market's raw eth_getLogs answers over fixed ranges, counted, not parsed.
    #[command(hide = true)]
    BenchRawLogs(BenchRawLogsArgs),
}

impl Command {
    /// Whether the command was asked for JSON (its errors are then JSON too).
    fn json(&self) -> bool {
        match self {
            Command::Quote(a) => a.json(),
            Command::Buy(a) => a.json(),
            Command::Sell(a) => a.json(),
            Command::Launch(a) => a.json(),
            Command::Withdraw(a) => a.json(),
            Command::Portfolio(a) => a.json(),
            Command::Tx(a) => a.json(),
            _ => false,
        }
    }
}

/// Runs the command; the result is printed by `output` (a failure as `error: …` with its causes,
/// no backtrace unless `KEYMARKET_BACKTRACE=1`, or as JSON with `--json`); the exit status is 0,
/// 1 on failure, 130 when interrupted after sending, 141 when stdout was closed.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    output::quiet_stdout_failures();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        // Every line scrubbed of the credentials of the URLs given (net/redact.rs).
        .with_writer(|| net::redact::ScrubbedStderr)
        // Colours only on a terminal, and never with NO_COLOR set (https://no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        )
        .init();
    let command = Cli::parse().command;
    let json = command.json();
    match run(command).await {
        Ok(out) => output::print(out),
        Err(e) => output::fail(&e, json),
    }
}

async fn run(command: Command) -> Result<output::Output> {
    use output::Output::Done;
    match command {
        Command::Up(args) => commands::up::up(args).await.map(|()| Done),
        Command::Deploy(args) => {
            let d = commands::deploy::deploy(&args).await?;
            Ok(output::Output::Text(format!(
                "{}\n",
                serde_json::to_string_pretty(&d)?
            )))
        }
        Command::Simulate(args) => commands::simulate::simulate(args).await.map(|()| Done),
        Command::Index(args) => commands::index::index(args).await.map(|()| Done),
        Command::BenchLive(args) => commands::bench_live::bench_live(args).await.map(|()| Done),
        Command::BenchStore(args) => commands::bench_store::run(args).await.map(|()| Done),
        Command::BenchRawLogs(args) => commands::bench_raw_logs::bench_raw_logs(args)
            .await
            .map(|()| Done),
        Command::Serve(args) => commands::serve::serve(args).await.map(|()| Done),
        Command::Export(args) => commands::export::export(args).await.map(|()| Done),
        Command::Quote(args) => commands::trade::quote(args).await,
        Command::Buy(args) => commands::trade::buy(args).await,
        Command::Sell(args) => commands::trade::sell(args).await,
        Command::Launch(args) => commands::account::launch(args).await,
        Command::Withdraw(args) => commands::account::withdraw(args).await,
        Command::Portfolio(args) => commands::portfolio::portfolio(args).await,
        Command::Tx(args) => commands::tx::tx(args).await,
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
        let Command::Index(index) = index.command else {
            unreachable!()
        };
        assert_eq!(index.db.for_writing(), "sqlite:keymarket.db");
        let bare = Cli::try_parse_from(["keymarket", "index", "--database-url", "x.db"]).unwrap();
        let Command::Index(bare) = bare.command else {
            unreachable!()
        };
        assert_eq!(
            bare.db.for_writing(),
            "sqlite:x.db",
            "a bare path is a SQLite file"
        );
        let serve =
            Cli::try_parse_from(["keymarket", "serve", "--database-url", "/nonexistent/k.db"])
                .unwrap();
        let Command::Serve(serve) = serve.command else {
            unreachable!()
        };
        let e = serve.db.for_reading().unwrap_err().to_string();
        assert!(e.contains("no database at /nonexistent/k.db"), "{e}");
    }
}
