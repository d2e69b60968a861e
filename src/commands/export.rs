//! `keymarket export trades`: the market's trades as CSV in the column layout of Dune
//! spellbook's `social.trades` (see `keymarket_api::export`), streamed from the database with
//! flat memory and a progress bar.

use std::{io::Write, path::PathBuf};

use clap::{Args, Subcommand};
use eyre::{Context, Result, bail, eyre};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use keymarket_indexer::Store;
use tracing::info;

use crate::cli::DatabaseArgs;

/// `keymarket export`'s arguments.
#[derive(Args)]
pub(crate) struct ExportArgs {
    #[command(subcommand)]
    pub(crate) what: ExportWhat,
}

/// What to export.
#[derive(Subcommand)]
pub(crate) enum ExportWhat {
    /// Every trade, oldest first, in the layout of Dune's `social.trades`.
    Trades(ExportTradesArgs),
}

#[derive(Args)]
pub(crate) struct ExportTradesArgs {
    #[command(flatten)]
    pub(crate) db: DatabaseArgs,
    /// Market id (see /v1/markets); required when the database holds several.
    #[arg(long)]
    pub(crate) market: Option<i64>,
    /// The CSV file to write ("-" = stdout).
    #[arg(long, short, default_value = "trades.csv")]
    pub(crate) out: PathBuf,
}

pub(crate) async fn export(args: ExportArgs) -> Result<()> {
    match args.what {
        ExportWhat::Trades(a) => trades(a).await,
    }
}

async fn trades(args: ExportTradesArgs) -> Result<()> {
    let store = Store::connect(&args.db.url).await?;
    let markets = store.markets().await?;
    let market = match (args.market, markets.as_slice()) {
        (Some(id), _) => markets
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| eyre!("no market {id} in {}", args.db.url))?,
        (None, [only]) => only,
        (None, []) => bail!("{} holds no market yet: index one first", args.db.url),
        (None, _) => bail!(
            "{} holds {} markets: pass --market ID",
            args.db.url,
            markets.len()
        ),
    }
    .clone();
    let total = store.raw_trades(market.id).await?;
    let to_stdout = args.out.as_os_str() == "-";
    let mut out: Box<dyn Write> = if to_stdout {
        Box::new(std::io::stdout().lock())
    } else {
        Box::new(std::io::BufWriter::new(
            std::fs::File::create(&args.out)
                .wrap_err_with(|| format!("cannot create {}", args.out.display()))?,
        ))
    };
    info!(target: "keymarket::export", market = market.id, trades = total, out = %args.out.display(), "exporting trades");
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{spinner} trades {pos}/{len} [{bar:30}] {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let mut chunks = std::pin::pin!(keymarket_api::export::social_trades_csv(
        store.trades_in_order(market.id),
        market,
        10_000
    ));
    let mut written = 0u64;
    while let Some(chunk) = chunks.next().await {
        let (bytes, rows) = chunk?;
        out.write_all(&bytes)
            .wrap_err_with(|| format!("writing {}", args.out.display()))?;
        written += rows;
        bar.set_position(written);
    }
    out.flush()?;
    bar.finish_and_clear();
    info!(target: "keymarket::export", trades = written, out = %args.out.display(), "exported");
    if !to_stdout {
        println!("{written} trades written to {}", args.out.display());
    }
    Ok(())
}
