//! Parquet encoding of the exports, streamed: rows go in as Arrow record batches of a few
//! thousand, the writer cuts them into bounded row groups, and each finished row group's bytes
//! are handed out at once. Parquet needs no seeking (the footer comes last), so the chunks can
//! go to a file, a pipe or an HTTP body alike; memory holds one row group being encoded plus the
//! footer's per-row-group metadata, whatever the number of rows.
//!
//! Column types: `block_time` a UTC timestamp (microseconds), `block_month` a date, the counts
//! 64-bit integers, ETH amounts `DECIMAL(38, 18)` (exact to the wei), addresses and hashes
//! strings, the USD columns nullable doubles that are all null. Compression: Snappy.

use std::sync::{Arc, LazyLock};

use arrow_array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow_schema::{DataType, Field, Schema, SchemaRef, TimeUnit};
use futures::{Stream, StreamExt};
use keymarket_store::{MarketRow, Side, StoredTrade, amount::Wei};
use parquet::{arrow::ArrowWriter, basic::Compression, file::properties::WriterProperties};

use super::{ExportError, SOCIAL_TRADES_COLUMNS, blockchain};
use crate::extract::format_date;

/// Most rows in one row group: about 10–20 MB being encoded at a time, and under a hundred row
/// groups (a small footer) for 12M trades.
pub const ROW_GROUP_ROWS: usize = 128 * 1024;

/// Precision and scale of the ETH amounts: 18 decimals (wei), 20 integer digits.
pub const ETH_PRECISION: u8 = 38;
/// See [`ETH_PRECISION`].
pub const ETH_SCALE: i8 = 18;

/// The ETH decimal type.
fn eth_type() -> DataType {
    DataType::Decimal128(ETH_PRECISION, ETH_SCALE)
}

/// The Arrow schema of `social.trades`, in [`SOCIAL_TRADES_COLUMNS`] order.
pub fn social_trades_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        let ty = |name: &str| match name {
            "block_time" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            "block_month" => DataType::Date32,
            "block_number" | "share_amount" | "supply" | "evt_index" => DataType::Int64,
            "amount_original" | "subject_fee_amount" | "protocol_fee_amount" => eth_type(),
            n if n.ends_with("_usd") => DataType::Float64,
            _ => DataType::Utf8,
        };
        Arc::new(Schema::new(
            SOCIAL_TRADES_COLUMNS
                .iter()
                .map(|&name| Field::new(name, ty(name), name.ends_with("_usd")))
                .collect::<Vec<_>>(),
        ))
    });
    SCHEMA.clone()
}

/// The first day of the month of a day (days since 1970-01-01).
pub fn month_start(day: i64) -> i64 {
    let date = format_date(day);
    let of_month: i64 = date[8..10]
        .parse()
        .expect("format_date writes two-digit days");
    day - (of_month - 1)
}

/// Days since 1970-01-01 as an Arrow `Date32`.
fn date32(day: i64) -> Result<i32, ExportError> {
    i32::try_from(day).map_err(|_| ExportError::OutOfRange(format!("day {day}")))
}

/// An ETH decimal column from wei amounts.
pub(crate) fn eth_array(wei: impl Iterator<Item = i128>) -> Result<ArrayRef, ExportError> {
    Ok(Arc::new(
        Decimal128Array::from_iter_values(wei)
            .with_precision_and_scale(ETH_PRECISION, ETH_SCALE)?,
    ))
}

/// A column of one repeated string.
fn repeated(value: &str, rows: usize) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(std::iter::repeat_n(
        value, rows,
    )))
}

/// Trades as one record batch of [`social_trades_schema`]: the same values as
/// [`super::social_trade`]'s CSV row, typed.
pub fn social_trades_batch(
    market: &MarketRow,
    trades: &[StoredTrade],
) -> Result<RecordBatch, ExportError> {
    let n = trades.len();
    let ints = |f: fn(&StoredTrade) -> i64| -> ArrayRef {
        Arc::new(Int64Array::from_iter_values(trades.iter().map(f)))
    };
    let strings = |f: fn(&StoredTrade) -> &str| -> ArrayRef {
        Arc::new(StringArray::from_iter_values(trades.iter().map(f)))
    };
    let eth = |f: fn(&StoredTrade) -> Wei| eth_array(trades.iter().map(|t| f(t).to_i128()));
    let no_usd = || -> ArrayRef { Arc::new(Float64Array::new_null(n)) };
    let micros = trades
        .iter()
        .map(|t| {
            t.time
                .checked_mul(1_000_000)
                .ok_or_else(|| ExportError::OutOfRange(format!("block time {}", t.time)))
        })
        .collect::<Result<Vec<i64>, _>>()?;
    // Trades come in time order: the month changes rarely, so remember the last one.
    let mut last: Option<(i64, i32)> = None;
    let mut months = Vec::with_capacity(n);
    for t in trades {
        let day = t.time.div_euclid(86_400);
        let month = match last {
            Some((d, m)) if d == day => m,
            _ => date32(month_start(day))?,
        };
        last = Some((day, month));
        months.push(month);
    }
    let columns: Vec<ArrayRef> = vec![
        repeated(&blockchain(market.chain_id), n),
        Arc::new(TimestampMicrosecondArray::from(micros).with_timezone("UTC")),
        Arc::new(Date32Array::from(months)),
        ints(|t| t.block),
        repeated("keymarket", n),
        strings(|t| &t.trader),
        strings(|t| &t.subject),
        strings(|t| match t.side {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }),
        eth(|t| t.eth_amount)?,
        no_usd(),
        ints(|t| t.shares),
        eth(|t| t.subject_fee)?,
        no_usd(),
        eth(|t| t.protocol_fee)?,
        no_usd(),
        repeated("0x0000000000000000000000000000000000000000", n),
        repeated("ETH", n),
        ints(|t| t.supply),
        strings(|t| &t.tx_hash),
        ints(|t| t.log_index),
        repeated(&market.address, n),
    ];
    Ok(RecordBatch::try_new(social_trades_schema(), columns)?)
}

/// A Parquet file being written into memory and handed out a row group at a time.
pub struct ParquetChunks {
    writer: ArrowWriter<Vec<u8>>,
}

impl ParquetChunks {
    /// A file of `schema` with row groups of at most `row_group_rows` rows.
    pub fn new(schema: SchemaRef, row_group_rows: usize) -> Result<Self, ExportError> {
        let props = WriterProperties::builder()
            .set_compression(Compression::SNAPPY)
            .set_max_row_group_row_count(Some(row_group_rows.max(1)))
            .set_created_by(format!("keymarket {}", env!("CARGO_PKG_VERSION")))
            .build();
        Ok(Self {
            writer: ArrowWriter::try_new(Vec::new(), schema, Some(props))?,
        })
    }

    /// Adds rows; returns the file's bytes that are final since the last call (empty until a
    /// row group is complete).
    pub fn write(&mut self, batch: &RecordBatch) -> Result<Vec<u8>, ExportError> {
        self.writer.write(batch)?;
        self.writer
            .sync()
            .map_err(::parquet::errors::ParquetError::from)?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }

    /// Ends the file: the last row group and the footer.
    pub fn finish(mut self) -> Result<Vec<u8>, ExportError> {
        self.writer.finish()?;
        Ok(std::mem::take(self.writer.inner_mut()))
    }
}

/// The market's trades as a `social.trades` Parquet file in chunks of bytes, each with the
/// number of rows encoded since the previous one (for a progress bar; a chunk may be empty while
/// a row group fills), oldest first, read as a stream from the database. Rows are encoded
/// `rows_per_batch` at a time into row groups of at most [`ROW_GROUP_ROWS`].
pub fn social_trades_parquet<'a>(
    trades: impl Stream<Item = keymarket_store::Result<StoredTrade>> + Send + 'a,
    market: MarketRow,
    rows_per_batch: usize,
) -> impl Stream<Item = Result<(Vec<u8>, u64), ExportError>> + Send + 'a {
    parquet_stream(
        trades.chunks(rows_per_batch.max(1)),
        social_trades_schema(),
        ROW_GROUP_ROWS,
        move |chunk: Vec<keymarket_store::Result<StoredTrade>>| {
            let chunk = chunk.into_iter().collect::<Result<Vec<_>, _>>()?;
            social_trades_batch(&market, &chunk)
        },
    )
}

/// Encodes the items of `chunks` (each turned into a record batch by `batch`) as one Parquet
/// file, yielding its bytes as they are final; stops after the first error.
fn parquet_stream<'a, T: Send + 'a>(
    chunks: impl Stream<Item = T> + Send + 'a,
    schema: SchemaRef,
    row_group_rows: usize,
    batch: impl FnMut(T) -> Result<RecordBatch, ExportError> + Send + 'a,
) -> impl Stream<Item = Result<(Vec<u8>, u64), ExportError>> + Send + 'a {
    struct State<S, F> {
        chunks: S,
        batch: F,
        encoder: Option<ParquetChunks>,
    }
    let encoder = ParquetChunks::new(schema, row_group_rows);
    let (encoder, failed) = match encoder {
        Ok(e) => (Some(e), None),
        Err(e) => (None, Some(Err(e))),
    };
    let state = State {
        chunks: Box::pin(chunks),
        batch,
        encoder,
    };
    futures::stream::iter(failed).chain(futures::stream::unfold(state, |mut s| async move {
        let encoder = s.encoder.as_mut()?;
        let step = match s.chunks.next().await {
            Some(chunk) => (s.batch)(chunk).and_then(|b| {
                let rows = b.num_rows() as u64;
                encoder.write(&b).map(|bytes| (bytes, rows))
            }),
            None => s.encoder.take().expect("present").finish().map(|b| (b, 0)),
        };
        if step.is_err() {
            s.encoder = None;
        }
        Some((step, s))
    }))
}

#[cfg(test)]
mod tests {
    use arrow_array::Array;
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn market() -> MarketRow {
        MarketRow {
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
        }
    }

    fn trade(i: i64) -> StoredTrade {
        let wei = |v: i128| Wei::from_i128(v).unwrap();
        StoredTrade {
            block: 1000 + i / 3,
            log_index: i % 3,
            tx_hash: format!("0x{i:064x}"),
            // an hour apart from 2023-08-31 20:00 UTC: crosses a month
            time: 1_693_512_000 + i * 3600,
            trader: format!("0x{:040x}", i % 7),
            subject: format!("0x{:040x}", 100 + i % 5),
            side: if i % 4 == 0 { Side::Sell } else { Side::Buy },
            shares: 1 + i % 2,
            eth_amount: wei(1_000_000_000_000_000_001 * i128::from(i)),
            protocol_fee: wei(50_000_000_000_000_000 + i128::from(i)),
            subject_fee: wei(50_000_000_000_000_000),
            supply: 10 + i,
        }
    }

    #[test]
    fn months_start_on_the_first() {
        // 2023-08-10 → 2023-08-01; 2024-02-29 → 2024-02-01; 1970-01-01 → itself.
        assert_eq!(format_date(month_start(19_579)), "2023-08-01");
        assert_eq!(format_date(month_start(19_782)), "2024-02-01");
        assert_eq!(month_start(0), 0);
        assert_eq!(format_date(month_start(-1)), "1969-12-01");
    }

    /// Encoded in several row groups and read back, every value equals the CSV row's.
    #[tokio::test]
    async fn parquet_rows_read_back_as_the_csv_rows() {
        let trades: Vec<StoredTrade> = (0..50).map(trade).collect();
        let rows = || futures::stream::iter(trades.clone().into_iter().map(Ok));
        let chunks: Vec<_> = parquet_stream(
            rows().chunks(7),
            social_trades_schema(),
            16,
            |c: Vec<keymarket_store::Result<StoredTrade>>| {
                let c = c.into_iter().collect::<Result<Vec<_>, _>>()?;
                social_trades_batch(&market(), &c)
            },
        )
        .collect()
        .await;
        let mut file = Vec::new();
        let mut counted = 0;
        for c in chunks {
            let (bytes, rows) = c.unwrap();
            file.extend(bytes);
            counted += rows;
        }
        assert_eq!(counted, 50);
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(axum::body::Bytes::from(file)).unwrap();
        assert_eq!(reader.metadata().num_row_groups(), 4, "row groups of 16");
        assert_eq!(reader.schema(), &social_trades_schema());
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        let mut i = 0;
        for b in &batches {
            for r in 0..b.num_rows() {
                let want = super::super::social_trade(&market(), &trades[i]);
                let got = row_as_csv(b, r);
                assert_eq!(got, want, "row {i}");
                i += 1;
            }
        }
        assert_eq!(i, 50);
    }

    /// One row's values as the CSV writes them.
    fn row_as_csv(b: &RecordBatch, r: usize) -> Vec<String> {
        b.columns()
            .iter()
            .map(|c| {
                if c.is_null(r) {
                    return String::new();
                }
                let any = c.as_any();
                if let Some(a) = any.downcast_ref::<StringArray>() {
                    a.value(r).to_string()
                } else if let Some(a) = any.downcast_ref::<Int64Array>() {
                    a.value(r).to_string()
                } else if let Some(a) = any.downcast_ref::<Decimal128Array>() {
                    super::super::eth(Wei::from_i128(a.value(r)).unwrap())
                } else if let Some(a) = any.downcast_ref::<TimestampMicrosecondArray>() {
                    super::super::utc_time(a.value(r) / 1_000_000)
                } else if let Some(a) = any.downcast_ref::<Date32Array>() {
                    format_date(i64::from(a.value(r)))
                } else {
                    panic!("unexpected column type {:?}", c.data_type())
                }
            })
            .collect()
    }

    #[test]
    fn usd_columns_are_null_and_the_rest_not() {
        let b = social_trades_batch(&market(), &[trade(1), trade(2)]).unwrap();
        for (f, c) in b.schema().fields().iter().zip(b.columns()) {
            let usd = f.name().ends_with("_usd");
            assert_eq!(f.is_nullable(), usd, "{}", f.name());
            assert_eq!(c.null_count(), if usd { 2 } else { 0 }, "{}", f.name());
        }
    }
}
