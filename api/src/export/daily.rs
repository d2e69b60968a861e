//! The daily series export: one row per UTC day with trades, oldest first, the whole history,
//! with the figures of `GET /v1/daily` (the store's daily aggregates, [`Store::daily`]) under
//! the names an analyst's Dune query would give them:
//!
//! | column | meaning |
//! | --- | --- |
//! | `day` | the UTC day (CSV `YYYY-MM-DD`; Parquet `DATE`) |
//! | `trades`, `buys`, `sells` | trades that day, and of them buys and sells |
//! | `volume_eth` | Σ `amount_original` (buy volume + sell volume) |
//! | `buy_volume_eth`, `sell_volume_eth` | Σ `amount_original` over buys, over sells |
//! | `protocol_revenue_eth` | protocol fees net of referral payouts |
//! | `gross_protocol_fees_eth` | Σ `protocol_fee_amount` (referral payouts included) |
//! | `referral_payouts_eth` | Σ of the referral payouts |
//! | `subject_revenue_eth` | Σ `subject_fee_amount` |
//! | `active_traders` | distinct traders that day |
//! | `new_traders`, `returning_traders` | of them first-timers, and those who had traded before |
//! | `new_subjects` | subjects whose first trade was that day |
//!
//! ETH columns are exact decimals (CSV without trailing zeros; Parquet `DECIMAL(38, 18)`), the
//! counts integers. A few thousand days at most: built in memory.

use std::sync::Arc;

use arrow_array::{ArrayRef, Date32Array, Int64Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema};
use keymarket_store::{DayRange, DayRow, StoreReader, amount::Wei};

use super::{
    ExportError, eth,
    parquet::{ETH_PRECISION, ETH_SCALE, ParquetChunks, eth_array},
};
use crate::extract::format_date;

/// What a column holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A UTC day.
    Date,
    /// A count.
    Int,
    /// Wei, written as ETH.
    Eth,
}

/// The columns, in order.
const COLUMNS: [(&str, Kind); 15] = [
    ("day", Kind::Date),
    ("trades", Kind::Int),
    ("buys", Kind::Int),
    ("sells", Kind::Int),
    ("volume_eth", Kind::Eth),
    ("buy_volume_eth", Kind::Eth),
    ("sell_volume_eth", Kind::Eth),
    ("protocol_revenue_eth", Kind::Eth),
    ("gross_protocol_fees_eth", Kind::Eth),
    ("referral_payouts_eth", Kind::Eth),
    ("subject_revenue_eth", Kind::Eth),
    ("active_traders", Kind::Int),
    ("new_traders", Kind::Int),
    ("returning_traders", Kind::Int),
    ("new_subjects", Kind::Int),
];

/// The daily export's column names, in order.
pub fn daily_columns() -> [&'static str; 15] {
    COLUMNS.map(|(name, _)| name)
}

/// One day's values in [`COLUMNS`] order (days, counts, wei).
fn values(r: &DayRow) -> [i128; 15] {
    let wei = |w: Wei| w.to_i128();
    [
        r.day.into(),
        r.trades.into(),
        r.buys.into(),
        r.sells.into(),
        wei(r.buy_volume) + wei(r.sell_volume),
        wei(r.buy_volume),
        wei(r.sell_volume),
        wei(r.protocol_fees) - wei(r.referral_payouts),
        wei(r.protocol_fees),
        wei(r.referral_payouts),
        wei(r.subject_fees),
        r.active_traders.into(),
        r.new_traders.into(),
        (r.active_traders - r.new_traders).into(),
        r.new_subjects.into(),
    ]
}

/// Every day of the market that has trades, oldest first (the store's daily series read).
pub async fn read_daily(store: &StoreReader, market_id: i64) -> Result<Vec<DayRow>, ExportError> {
    Ok(store.daily(market_id, DayRange::ALL_TIME, i64::MAX).await?)
}

fn out_of_range(what: &str, v: i128) -> ExportError {
    ExportError::OutOfRange(format!("{what} {v}"))
}

/// The days as CSV with a header.
pub fn daily_csv(rows: &[DayRow]) -> Result<Vec<u8>, ExportError> {
    let mut w = csv::Writer::from_writer(Vec::with_capacity(200 * (rows.len() + 1)));
    w.write_record(daily_columns())?;
    for r in rows {
        let cells = values(r)
            .into_iter()
            .zip(COLUMNS)
            .map(|(v, (name, kind))| {
                Ok(match kind {
                    Kind::Date => format_date(i64::try_from(v).expect("a day")),
                    Kind::Int => v.to_string(),
                    Kind::Eth => eth(Wei::from_i128(v).ok_or_else(|| out_of_range(name, v))?),
                })
            })
            .collect::<Result<Vec<String>, ExportError>>()?;
        w.write_record(cells)?;
    }
    w.into_inner()
        .map_err(|e| ExportError::Csv(csv::Error::from(e.into_error())))
}

/// The days as a Parquet file (`day` a `DATE`, counts `BIGINT`, ETH `DECIMAL(38, 18)`).
pub fn daily_parquet(rows: &[DayRow]) -> Result<Vec<u8>, ExportError> {
    let schema = Arc::new(Schema::new(
        COLUMNS
            .iter()
            .map(|&(name, kind)| {
                let ty = match kind {
                    Kind::Date => DataType::Date32,
                    Kind::Int => DataType::Int64,
                    Kind::Eth => DataType::Decimal128(ETH_PRECISION, ETH_SCALE),
                };
                Field::new(name, ty, false)
            })
            .collect::<Vec<_>>(),
    ));
    let table: Vec<[i128; 15]> = rows.iter().map(values).collect();
    let columns = COLUMNS
        .iter()
        .enumerate()
        .map(|(i, &(name, kind))| {
            let col = table.iter().map(move |v| v[i]);
            Ok(match kind {
                Kind::Date => Arc::new(Date32Array::from(
                    col.map(|v| i32::try_from(v).map_err(|_| out_of_range(name, v)))
                        .collect::<Result<Vec<_>, _>>()?,
                )) as ArrayRef,
                Kind::Int => Arc::new(Int64Array::from(
                    col.map(|v| i64::try_from(v).map_err(|_| out_of_range(name, v)))
                        .collect::<Result<Vec<_>, _>>()?,
                )),
                Kind::Eth => eth_array(col)?,
            })
        })
        .collect::<Result<Vec<_>, ExportError>>()?;
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    let mut file = ParquetChunks::new(schema, rows.len().max(1))?;
    let mut bytes = file.write(&batch)?;
    bytes.extend(file.finish()?);
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use arrow_array::{Array, Decimal128Array};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

    use super::*;

    fn day(day: i64, k: i64) -> DayRow {
        let wei = |v: i128| Wei::from_i128(v).unwrap();
        DayRow {
            day,
            trades: 10 * k,
            buys: 7 * k,
            sells: 3 * k,
            buy_volume: wei(1_000_000_000_000_000_001 * i128::from(k)),
            sell_volume: Wei {
                gwei: 5,
                rem: 3_000_000_000, // an unnormalised aggregate: 8 gwei
            },
            protocol_fees: wei(60_000_000_000_000_000),
            subject_fees: wei(50_000_000_000_000_000),
            active_traders: 6 * k,
            new_traders: 2 * k,
            new_subjects: k,
            referrals: 1,
            referral_payouts: wei(10_000_000_000_000_000),
        }
    }

    #[test]
    fn csv_has_the_api_figures_under_analyst_names() {
        let csv = String::from_utf8(daily_csv(&[day(19_579, 1), day(19_581, 2)]).unwrap()).unwrap();
        let mut lines = csv.lines();
        assert_eq!(lines.next().unwrap(), daily_columns().join(","));
        assert_eq!(
            lines.next().unwrap(),
            "2023-08-10,10,7,3,1.000000008000000001,1.000000000000000001,0.000000008,0.05,0.06,0.01,0.05,6,2,4,1"
        );
        assert!(
            lines
                .next()
                .unwrap()
                .starts_with("2023-08-12,20,14,6,2.000000008000000002,")
        );
        assert_eq!(lines.next(), None);
    }

    #[test]
    fn parquet_holds_the_same_values_typed() {
        let rows = [day(19_579, 1), day(19_581, 2), day(19_600, 3)];
        let file = daily_parquet(&rows).unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(axum::body::Bytes::from(file)).unwrap();
        let batches: Vec<RecordBatch> = reader.build().unwrap().map(Result::unwrap).collect();
        assert_eq!(batches.len(), 1);
        let b = &batches[0];
        assert_eq!(b.num_rows(), 3);
        let names: Vec<&str> = b
            .schema_ref()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        assert_eq!(names, daily_columns());
        for (i, r) in rows.iter().enumerate() {
            let want = values(r);
            for (c, (_, kind)) in COLUMNS.iter().enumerate() {
                let col = b.column(c).as_any();
                let got: i128 = match kind {
                    Kind::Date => col.downcast_ref::<Date32Array>().unwrap().value(i).into(),
                    Kind::Int => col.downcast_ref::<Int64Array>().unwrap().value(i).into(),
                    Kind::Eth => col.downcast_ref::<Decimal128Array>().unwrap().value(i),
                };
                assert_eq!(got, want[c], "row {i} column {c}");
            }
        }
        assert_eq!(b.column(0).null_count(), 0);
    }

    #[test]
    fn no_days_is_a_header_or_an_empty_table() {
        assert_eq!(
            String::from_utf8(daily_csv(&[]).unwrap())
                .unwrap()
                .trim_end(),
            daily_columns().join(",")
        );
        let file = daily_parquet(&[]).unwrap();
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(axum::body::Bytes::from(file)).unwrap();
        assert_eq!(reader.metadata().file_metadata().num_rows(), 0);
    }
}
