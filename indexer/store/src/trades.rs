//! The raw trades of a market, filtered, newest first, paged by a keyset position.

use alloy::primitives::Address;
use sqlx::{AssertSqlSafe, Row};

use crate::{
    Result, StoreReader,
    amount::Wei,
    error::db,
    row::{get_i64, hex, wei_at},
};

/// A trade's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Keys bought.
    Buy,
    /// Keys sold.
    Sell,
}

/// Which trades a page lists; every field narrows it, `None` does not. Ranges are inclusive.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TradeFilter {
    /// Only this subject's keys.
    pub subject: Option<Address>,
    /// Only this trader's trades.
    pub trader: Option<Address>,
    /// Only buys or only sells.
    pub side: Option<Side>,
    /// From this block on.
    pub from_block: Option<i64>,
    /// Up to this block.
    pub to_block: Option<i64>,
    /// From this time on (Unix seconds).
    pub from_time: Option<i64>,
    /// Up to this time (Unix seconds).
    pub to_time: Option<i64>,
}

/// A stored trade, as the chain's `Trade` event told it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTrade {
    /// The block.
    pub block: i64,
    /// The log's index in the block.
    pub log_index: i64,
    /// The transaction (0x hex).
    pub tx_hash: String,
    /// The block's time, Unix seconds.
    pub time: i64,
    /// Who traded (lowercase 0x hex).
    pub trader: String,
    /// Whose keys (lowercase 0x hex).
    pub subject: String,
    /// Buy or sell.
    pub side: Side,
    /// Keys traded.
    pub shares: i64,
    /// The price paid or received, before fees.
    pub eth_amount: Wei,
    /// The protocol fee.
    pub protocol_fee: Wei,
    /// The subject fee.
    pub subject_fee: Wei,
    /// The subject's supply after the trade.
    pub supply: i64,
}

enum Arg {
    Int(i64),
    Text(String),
}

impl StoreReader {
    /// The market's trades that pass `filter`, newest first (block, then log index, descending),
    /// strictly after the keyset position `after` = (block, log index) when given; at most
    /// `limit`. Reads the (market, block, log) primary key or the per-subject and per-trader
    /// indexes in that order.
    pub async fn trades(
        &self,
        market_id: i64,
        filter: &TradeFilter,
        after: Option<(i64, i64)>,
        limit: i64,
    ) -> Result<Vec<StoredTrade>> {
        let mut sql = format!("SELECT {TRADE_COLUMNS} FROM trades WHERE market_id = $1");
        let mut args = vec![Arg::Int(market_id)];
        let mut and = |cond: &str, arg: Arg| {
            args.push(arg);
            sql.push_str(&cond.replace('?', &format!("${}", args.len())));
        };
        let int = |v: Option<i64>| v.map(Arg::Int);
        let text = |a: Option<Address>| a.map(|a| Arg::Text(hex(a.as_slice())));
        for (cond, arg) in [
            (" AND subject = ?", text(filter.subject)),
            (" AND trader = ?", text(filter.trader)),
            (" AND block_number >= ?", int(filter.from_block)),
            (" AND block_number <= ?", int(filter.to_block)),
            (" AND block_time >= ?", int(filter.from_time)),
            (" AND block_time <= ?", int(filter.to_time)),
        ] {
            if let Some(arg) = arg {
                and(cond, arg);
            }
        }
        if let Some((block, log)) = after {
            and(" AND (block_number < ?", Arg::Int(block));
            and(" OR (block_number = ?", Arg::Int(block));
            and(" AND log_index < ?))", Arg::Int(log));
        }
        match filter.side {
            None => {}
            Some(Side::Buy) => sql.push_str(" AND is_buy = 1"),
            Some(Side::Sell) => sql.push_str(" AND is_buy = 0"),
        }
        args.push(Arg::Int(limit));
        sql.push_str(&format!(
            " ORDER BY block_number DESC, log_index DESC LIMIT ${}",
            args.len()
        ));
        let mut query = sqlx::query(AssertSqlSafe(sql));
        for a in args {
            query = match a {
                Arg::Int(v) => query.bind(v),
                Arg::Text(v) => query.bind(v),
            };
        }
        let rows = query
            .fetch_all(&self.pool)
            .await
            .map_err(db("reading trades"))?;
        Ok(rows.iter().map(stored_trade).collect())
    }

    /// Every trade of the market, oldest first (block, then log index), streamed from the
    /// database row by row: memory stays flat however many there are (exports).
    pub fn trades_in_order(
        &self,
        market_id: i64,
    ) -> futures::stream::BoxStream<'_, Result<StoredTrade>> {
        use futures::StreamExt;
        sqlx::query(AssertSqlSafe(format!(
            "SELECT {TRADE_COLUMNS} FROM trades WHERE market_id = $1 ORDER BY block_number, log_index"
        )))
        .bind(market_id)
        .fetch(&self.pool)
        .map(|r| {
            r.map(|r| stored_trade(&r))
                .map_err(db("streaming trades"))
        })
        .boxed()
    }
}

/// The columns [`stored_trade`] reads, in its order.
const TRADE_COLUMNS: &str = "block_number, log_index, tx_hash, block_time, trader, subject, is_buy, \
     share_amount, eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply";

fn stored_trade(r: &sqlx::any::AnyRow) -> StoredTrade {
    StoredTrade {
        block: get_i64(r, 0),
        log_index: get_i64(r, 1),
        tx_hash: r.get(2),
        time: get_i64(r, 3),
        trader: r.get(4),
        subject: r.get(5),
        side: if get_i64(r, 6) == 1 {
            Side::Buy
        } else {
            Side::Sell
        },
        shares: get_i64(r, 7),
        eth_amount: wei_at(r, 8),
        protocol_fee: wei_at(r, 10),
        subject_fee: wei_at(r, 12),
        supply: get_i64(r, 14),
    }
}
