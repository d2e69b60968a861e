//! Every table's rows of a market as text, for tests comparing two databases (or a database
//! against a recomputation) row for row. Built only for tests (the `testing` feature).

use std::collections::BTreeMap;

use sqlx::{AssertSqlSafe, Row};

use crate::{Result, StoreReader, error::db};

impl StoreReader {
    /// Every table's rows for a market, as sorted text lines: for comparing two databases (or a
    /// database against a recomputation) row for row.
    pub async fn dump(&self, market_id: i64) -> Result<BTreeMap<&'static str, Vec<String>>> {
        let mut out = BTreeMap::new();
        for (table, cols) in DUMP_TABLES {
            let rows = sqlx::query(AssertSqlSafe(format!(
                "SELECT {cols} FROM {table} WHERE market_id = $1"
            )))
            .bind(market_id)
            .fetch_all(&self.pool)
            .await
            .map_err(db("dumping"))?;
            let mut lines: Vec<String> = rows
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| {
                            r.try_get::<i64, _>(i)
                                .map(|v| v.to_string())
                                .unwrap_or_else(|_| r.get::<String, _>(i))
                        })
                        .collect::<Vec<_>>()
                        .join("|")
                })
                .collect();
            lines.sort();
            out.insert(*table, lines);
        }
        Ok(out)
    }
}

/// Tables and columns compared by [`StoreReader::dump`] (everything but surrogate ids).
const DUMP_TABLES: &[(&str, &str)] = &[
    (
        "trades",
        "chain_id, tx_hash, log_index, block_number, block_hash, block_time, trader, subject, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply, basis_gwei, basis_rem",
    ),
    (
        "stats_daily",
        "day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, new_subjects, referrals, referral_gwei, referral_rem",
    ),
    (
        "referrals",
        "block_number, log_index, tx_hash, block_time, referrer, trader, subject, amount_gwei, amount_rem",
    ),
    (
        "referrers",
        "referrer, referrals, amount_gwei, amount_rem, first_time",
    ),
    (
        "fee_events",
        "block_number, log_index, tx_hash, block_time, kind, value, effective_at",
    ),
    (
        "subjects",
        "subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, curve",
    ),
    (
        "traders",
        "trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, pnl_gwei, pnl_rem",
    ),
    ("holdings", "subject, trader, balance, cost_gwei, cost_rem"),
    ("daily_traders", "day, trader, trades"),
    (
        "subject_daily",
        "subject, day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, fees_gwei, fees_rem",
    ),
];
