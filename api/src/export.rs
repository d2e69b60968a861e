//! Exports in Dune's column layouts, so an analyst's Dune query runs on keymarket's data in
//! DuckDB or pandas unchanged: trades as spellbook's `social.trades` model, and the daily
//! series ([`daily`]). CSV, streamed row by row, and Parquet ([`parquet`]), streamed a row group
//! at a time (flat memory at millions of trades), for the CLI (`keymarket export`) and the API
//! (`/v1/export/...`).
//!
//! `social.trades` amounts are in ETH (`amount_original` is the price before fees, like
//! friend.tech's `ethAmount`); here they are exact decimals, not floats (Parquet:
//! `DECIMAL(38, 18)`). The USD columns are present and empty (null): no price feed is
//! configured. `block_time` is UTC (Parquet: a timestamp adjusted to UTC, which DuckDB reads as
//! `TIMESTAMP WITH TIME ZONE`; set its `TimeZone` to UTC, as Dune's sessions are, so that
//! `date_trunc('day', block_time)` cuts UTC days).

use futures::{Stream, StreamExt};
use keymarket_store::{MarketRow, Side, StoredTrade, amount::Wei};

use crate::extract::format_date;

pub mod daily;
pub mod parquet;

/// The columns of spellbook's `social.trades`, in its order.
pub const SOCIAL_TRADES_COLUMNS: [&str; 21] = [
    "blockchain",
    "block_time",
    "block_month",
    "block_number",
    "project",
    "trader",
    "subject",
    "trade_side",
    "amount_original",
    "amount_usd",
    "share_amount",
    "subject_fee_amount",
    "subject_fee_amount_usd",
    "protocol_fee_amount",
    "protocol_fee_amount_usd",
    "currency_contract",
    "currency_symbol",
    "supply",
    "tx_hash",
    "evt_index",
    "contract_address",
];

/// The name Dune gives a chain (`blockchain`); a chain it does not know by its id.
pub fn blockchain(chain_id: i64) -> String {
    match chain_id {
        1 => "ethereum".into(),
        10 => "optimism".into(),
        8453 => "base".into(),
        42161 => "arbitrum".into(),
        43114 => "avalanche_c".into(),
        31337 => "anvil".into(),
        other => other.to_string(),
    }
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of a Unix time.
pub fn utc_time(secs: i64) -> String {
    let of_day = secs.rem_euclid(86_400);
    format!(
        "{} {:02}:{:02}:{:02}",
        format_date(secs.div_euclid(86_400)),
        of_day / 3600,
        of_day % 3600 / 60,
        of_day % 60
    )
}

/// An exact ETH decimal without trailing zeros.
pub fn eth(w: Wei) -> String {
    w.to_decimal_eth().normalize().to_string()
}

/// One trade as a `social.trades` row.
pub fn social_trade(market: &MarketRow, t: &StoredTrade) -> [String; 21] {
    let date = format_date(t.time.div_euclid(86_400));
    [
        blockchain(market.chain_id),
        utc_time(t.time),
        format!("{}-01", &date[..7]),
        t.block.to_string(),
        "keymarket".into(),
        t.trader.clone(),
        t.subject.clone(),
        match t.side {
            Side::Buy => "buy".into(),
            Side::Sell => "sell".into(),
        },
        eth(t.eth_amount),
        String::new(),
        t.shares.to_string(),
        eth(t.subject_fee),
        String::new(),
        eth(t.protocol_fee),
        String::new(),
        "0x0000000000000000000000000000000000000000".into(),
        "ETH".into(),
        t.supply.to_string(),
        t.tx_hash.clone(),
        t.log_index.to_string(),
        market.address.clone(),
    ]
}

/// An export's byte chunks, each with the rows it adds (CSV or Parquet, boxed).
pub type ExportChunks<'a> =
    std::pin::Pin<Box<dyn Stream<Item = Result<(Vec<u8>, u64), ExportError>> + Send + 'a>>;

/// Errors of an export.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Reading the database failed.
    #[error(transparent)]
    Store(#[from] keymarket_store::Error),
    /// Writing the CSV failed.
    #[error("writing the CSV: {0}")]
    Csv(#[from] csv::Error),
    /// Encoding the Parquet file failed.
    #[error("writing the Parquet file: {0}")]
    Parquet(#[from] ::parquet::errors::ParquetError),
    /// Building a record batch failed.
    #[error("building the Parquet rows: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
    /// A value does not fit its column's type.
    #[error("{0} is out of range for the export's column type")]
    OutOfRange(String),
}

/// The market's trades as `social.trades` CSV in chunks of about `rows_per_chunk` rows (the
/// first chunk starts with the header; the last may be empty), oldest first, read as a stream
/// from the database.
pub fn social_trades_csv<'a>(
    trades: impl Stream<Item = keymarket_store::Result<StoredTrade>> + Send + 'a,
    market: MarketRow,
    rows_per_chunk: usize,
) -> impl Stream<Item = Result<(Vec<u8>, u64), ExportError>> + Send + 'a {
    let header = std::iter::once(true).chain(std::iter::repeat(false));
    // A last empty chunk: the header alone when there are no trades.
    trades
        .chunks(rows_per_chunk.max(1))
        .chain(futures::stream::once(async { Vec::new() }))
        .zip(futures::stream::iter(header))
        .map(move |(chunk, first)| {
            let mut w = csv::Writer::from_writer(Vec::with_capacity(chunk.len() * 300));
            if first {
                w.write_record(SOCIAL_TRADES_COLUMNS)?;
            }
            let rows = chunk.len() as u64;
            for t in chunk {
                w.write_record(social_trade(&market, &t?))?;
            }
            let bytes = w
                .into_inner()
                .map_err(|e| csv::Error::from(e.into_error()))?;
            Ok((bytes, rows))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_months_are_utc() {
        assert_eq!(utc_time(0), "1970-01-01 00:00:00");
        // friend.tech's launch block time: 2023-08-10 13:25:33 UTC.
        assert_eq!(utc_time(1_691_673_933), "2023-08-10 13:25:33");
        assert_eq!(utc_time(1_704_067_199), "2023-12-31 23:59:59");
    }

    #[test]
    fn a_trade_in_the_social_trades_layout() {
        let market = MarketRow {
            id: 1,
            chain_id: 8453,
            address: "0xcf205808ed36593aa40a44f10c7f7c2f67d4a4d4".into(),
            start_block: 0,
            next_block: 0,
            head_block: 0,
            head_seen_at: 0,
            stall_reason: None,
            indexed_time: 0,
            aggregates_from: None,
        };
        let wei = |v: i128| Wei::from_i128(v).unwrap();
        let t = StoredTrade {
            block: 2_430_440,
            log_index: 7,
            tx_hash: "0xabc".into(),
            time: 1_691_673_933,
            trader: "0x01".into(),
            subject: "0x02".into(),
            side: Side::Sell,
            shares: 2,
            eth_amount: wei(1_500_000_000_000_000_000),
            protocol_fee: wei(75_000_000_000_000_000),
            subject_fee: wei(75_000_000_000_000_001),
            supply: 40,
        };
        let row = social_trade(&market, &t);
        let named: std::collections::HashMap<&str, &str> = SOCIAL_TRADES_COLUMNS
            .iter()
            .copied()
            .zip(row.iter().map(String::as_str))
            .collect();
        assert_eq!(named["blockchain"], "base");
        assert_eq!(named["block_time"], "2023-08-10 13:25:33");
        assert_eq!(named["block_month"], "2023-08-01");
        assert_eq!(named["trade_side"], "sell");
        assert_eq!(named["amount_original"], "1.5");
        assert_eq!(named["subject_fee_amount"], "0.075000000000000001");
        assert_eq!(named["protocol_fee_amount"], "0.075");
        assert_eq!(named["amount_usd"], "");
        assert_eq!(named["evt_index"], "7");
        assert_eq!(named["supply"], "40");
        assert_eq!(named["contract_address"], market.address);
    }
}
