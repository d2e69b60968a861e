//! `keymarket export trades|daily`: the market's trades in the column layout of Dune
//! spellbook's `social.trades`, or its daily series (see `keymarket_api::export`), as CSV or
//! Parquet. Trades are streamed from the database with flat memory and a progress bar.

use std::{
    io::{IsTerminal, Write},
    path::{Path, PathBuf},
};

use clap::{Args, Subcommand, ValueEnum};
use eyre::{Context, Result, bail, eyre};
use futures::StreamExt;
use indicatif::{ProgressBar, ProgressStyle};
use keymarket_api::export::{
    ExportChunks,
    daily::{daily_csv, daily_parquet, read_daily},
    parquet::social_trades_parquet,
    social_trades_csv,
};
use keymarket_indexer::{StoreReader, store::MarketRow};
use tracing::info;

use crate::cli::{DatabaseArgs, database_shown};

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
    Trades(ExportFileArgs),
    /// The daily (UTC) series: every day with trades, with the figures of /v1/daily.
    Daily(ExportFileArgs),
}

/// The file formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Format {
    /// Comma-separated values with a header row.
    Csv,
    /// Apache Parquet (typed columns, exact decimals, Snappy).
    Parquet,
}

impl Format {
    fn ext(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

#[derive(Args)]
pub(crate) struct ExportFileArgs {
    #[command(flatten)]
    pub(crate) db: DatabaseArgs,
    /// Market id (see /v1/markets); required when the database holds several.
    #[arg(long)]
    pub(crate) market: Option<i64>,
    /// File format; default: from --out's extension (.parquet or .csv), else csv.
    #[arg(long, value_enum)]
    pub(crate) format: Option<Format>,
    /// The file to write ("-" = stdout); default: trades.csv or daily.csv (.parquet for
    /// Parquet).
    #[arg(long, short)]
    pub(crate) out: Option<PathBuf>,
}

pub(crate) async fn export(args: ExportArgs) -> Result<()> {
    match args.what {
        ExportWhat::Trades(a) => trades(a).await,
        ExportWhat::Daily(a) => daily(a).await,
    }
}

/// Where the export goes.
#[derive(Debug, PartialEq, Eq)]
enum Target {
    Stdout,
    File(PathBuf),
}

impl Target {
    fn name(&self) -> String {
        match self {
            Self::Stdout => "stdout".into(),
            Self::File(p) => p.display().to_string(),
        }
    }
}

/// The format and target of an export of `what` ("trades", "daily") from the flags: the format
/// given, else the one --out's extension names, else CSV; refuses a format that contradicts
/// --out's extension, and binary Parquet on a terminal.
fn resolve(
    what: &str,
    format: Option<Format>,
    out: Option<&Path>,
    stdout_is_terminal: bool,
) -> Result<(Format, Target)> {
    let stdout = out.is_some_and(|o| o.as_os_str() == "-");
    let named = out
        .filter(|_| !stdout)
        .and_then(|o| o.extension())
        .and_then(|e| match e.to_ascii_lowercase().to_str()? {
            "csv" => Some(Format::Csv),
            "parquet" => Some(Format::Parquet),
            _ => None,
        });
    let format = match (format, named) {
        (Some(f), Some(n)) if f != n => bail!(
            "--format {} contradicts --out {}: name the file .{} or drop --format",
            f.ext(),
            out.expect("named from --out").display(),
            f.ext()
        ),
        (Some(f), _) | (None, Some(f)) => f,
        (None, None) => Format::Csv,
    };
    let target = match out {
        _ if stdout => {
            if format == Format::Parquet && stdout_is_terminal {
                bail!(
                    "refusing to write binary Parquet to a terminal: redirect stdout (> {what}.parquet) or pass --out FILE"
                );
            }
            Target::Stdout
        }
        Some(o) => Target::File(o.to_path_buf()),
        None => Target::File(PathBuf::from(format!("{what}.{}", format.ext()))),
    };
    Ok((format, target))
}

/// The market the flags name, or the only one.
async fn pick_market(
    store: &StoreReader,
    database: &str,
    market: Option<i64>,
) -> Result<MarketRow> {
    let markets = store.markets().await?;
    Ok(match (market, markets.as_slice()) {
        (Some(id), _) => markets
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| eyre!("no market {id} in {}", database_shown(database)))?,
        (None, [only]) => only,
        (None, []) => bail!(
            "{} holds no market yet: index one first",
            database_shown(database)
        ),
        (None, _) => bail!(
            "{} holds {} markets: pass --market ID",
            database_shown(database),
            markets.len()
        ),
    }
    .clone())
}

/// An open output: the writer, and the file to remove if the export fails.
fn open(target: &Target) -> Result<Box<dyn Write>> {
    Ok(match target {
        Target::Stdout => Box::new(std::io::stdout().lock()),
        Target::File(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p).wrap_err_with(|| format!("cannot create {}", p.display()))?,
        )),
    })
}

/// Runs `write` into the target; a file left half-written by a failure is removed.
async fn write_to<F>(target: &Target, write: F) -> Result<u64>
where
    F: AsyncFnOnce(&mut dyn Write) -> Result<u64>,
{
    let mut out = open(target)?;
    let result = async {
        let n = write(&mut *out).await?;
        out.flush()
            .wrap_err_with(|| format!("writing {}", target.name()))?;
        Ok(n)
    }
    .await;
    drop(out);
    if result.is_err()
        && let Target::File(p) = target
    {
        let _ = std::fs::remove_file(p);
    }
    result
}

async fn trades(args: ExportFileArgs) -> Result<()> {
    let (format, target) = resolve(
        "trades",
        args.format,
        args.out.as_deref(),
        std::io::stdout().is_terminal(),
    )?;
    let database = args.db.for_reading()?;
    let store = StoreReader::connect(&database, None).await?;
    let market = pick_market(&store, &database, args.market).await?;
    let total = store.raw_trades(market.id).await?;
    info!(target: "keymarket::export", market = market.id, trades = total, ?format, out = %target.name(), "exporting trades");
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{spinner} trades {pos}/{len} [{bar:30}] {per_sec} eta {eta}")
            .expect("valid template")
            .progress_chars("=> "),
    );
    let trades = store.trades_in_order(market.id);
    let mut chunks: ExportChunks<'_> = match format {
        Format::Csv => Box::pin(social_trades_csv(trades, market, 10_000)),
        Format::Parquet => Box::pin(social_trades_parquet(trades, market, 8_192)),
    };
    let written = write_to(&target, async |out: &mut dyn Write| {
        let mut written = 0u64;
        while let Some(chunk) = chunks.next().await {
            let (bytes, rows) = chunk?;
            out.write_all(&bytes)
                .wrap_err_with(|| format!("writing {}", target.name()))?;
            written += rows;
            bar.set_position(written);
        }
        Ok(written)
    })
    .await;
    bar.finish_and_clear();
    let written = written?;
    info!(target: "keymarket::export", trades = written, out = %target.name(), "exported");
    if let Target::File(p) = &target {
        println!("{written} trades written to {}", p.display());
    }
    Ok(())
}

async fn daily(args: ExportFileArgs) -> Result<()> {
    let (format, target) = resolve(
        "daily",
        args.format,
        args.out.as_deref(),
        std::io::stdout().is_terminal(),
    )?;
    let database = args.db.for_reading()?;
    let store = StoreReader::connect(&database, None).await?;
    let market = pick_market(&store, &database, args.market).await?;
    let rows = read_daily(&store, market.id).await?;
    let bytes = match format {
        Format::Csv => daily_csv(&rows)?,
        Format::Parquet => daily_parquet(&rows)?,
    };
    write_to(&target, async |out: &mut dyn Write| {
        out.write_all(&bytes)
            .wrap_err_with(|| format!("writing {}", target.name()))?;
        Ok(rows.len() as u64)
    })
    .await?;
    if let Target::File(p) = &target {
        println!("{} days written to {}", rows.len(), p.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(format: Option<Format>, out: Option<&str>, tty: bool) -> (Format, Target) {
        resolve("trades", format, out.map(Path::new), tty).unwrap()
    }

    fn err(format: Option<Format>, out: Option<&str>, tty: bool) -> String {
        resolve("trades", format, out.map(Path::new), tty)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn the_format_comes_from_the_flag_or_the_file_name() {
        let file = |p: &str| Target::File(PathBuf::from(p));
        assert_eq!(ok(None, None, false), (Format::Csv, file("trades.csv")));
        assert_eq!(
            ok(Some(Format::Parquet), None, false),
            (Format::Parquet, file("trades.parquet"))
        );
        assert_eq!(
            ok(None, Some("out/t.parquet"), false),
            (Format::Parquet, file("out/t.parquet"))
        );
        assert_eq!(ok(None, Some("T.PARQUET"), false).0, Format::Parquet);
        assert_eq!(ok(None, Some("t.csv"), false).0, Format::Csv);
        assert_eq!(ok(None, Some("t.txt"), false), (Format::Csv, file("t.txt")));
        assert_eq!(
            ok(Some(Format::Parquet), Some("t.bin"), false).0,
            Format::Parquet
        );
        assert_eq!(ok(None, Some("-"), true), (Format::Csv, Target::Stdout));
        assert_eq!(
            ok(Some(Format::Parquet), Some("-"), false),
            (Format::Parquet, Target::Stdout)
        );
    }

    #[test]
    fn contradictions_and_parquet_on_a_terminal_are_refused() {
        let e = err(Some(Format::Csv), Some("t.parquet"), false);
        assert!(
            e.contains("--format csv contradicts --out t.parquet"),
            "{e}"
        );
        let e = err(Some(Format::Parquet), Some("t.csv"), false);
        assert!(e.contains("contradicts"), "{e}");
        let e = err(Some(Format::Parquet), Some("-"), true);
        assert!(
            e.contains("refusing to write binary Parquet to a terminal"),
            "{e}"
        );
    }
}
