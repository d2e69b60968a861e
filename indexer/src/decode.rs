//! Decoding `Trade` logs into rows.

use alloy::{rpc::types::Log, sol_types::SolEvent};
use keymarket_contracts::KeyMarket;
use sqlx::{Row, any::AnyRow};

use crate::{Error, Result, amount::Wei, store::hex};

/// One `Trade` event, ready to store. Addresses and hashes are lowercase 0x hex.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRow {
    /// Chain id.
    pub chain_id: i64,
    /// Transaction hash.
    pub tx_hash: String,
    /// Log index in the block.
    pub log_index: i64,
    /// Block number.
    pub block_number: i64,
    /// Block hash.
    pub block_hash: String,
    /// Block timestamp, seconds.
    pub block_time: i64,
    /// Buyer or seller.
    pub trader: String,
    /// Subject.
    pub subject: String,
    /// Buy (true) or sell.
    pub is_buy: bool,
    /// Keys traded.
    pub share_amount: i64,
    /// Price before fees.
    pub eth: Wei,
    /// Protocol fee.
    pub protocol_fee: Wei,
    /// Subject fee.
    pub subject_fee: Wei,
    /// Supply after the trade.
    pub supply: i64,
}

impl TradeRow {
    /// Decodes a `Trade` log; `block_time` is the log's `blockTimestamp` unless given.
    pub fn from_log(chain_id: u64, log: &Log, block_time: Option<u64>) -> Result<Self> {
        let bad = |why: &str| {
            Error::Decode(format!(
                "log {:?}#{:?}: {why}",
                log.transaction_hash, log.log_index
            ))
        };
        let t = KeyMarket::Trade::decode_log_data(log.data()).map_err(|e| bad(&e.to_string()))?;
        let too_big = |_| bad("amount out of the storable range");
        Ok(Self {
            chain_id: chain_id as i64,
            tx_hash: hex(log
                .transaction_hash
                .ok_or_else(|| bad("no transaction hash"))?
                .as_slice()),
            log_index: log.log_index.ok_or_else(|| bad("no log index"))? as i64,
            block_number: log.block_number.ok_or_else(|| bad("pending log"))? as i64,
            block_hash: hex(log.block_hash.ok_or_else(|| bad("pending log"))?.as_slice()),
            block_time: block_time
                .or(log.block_timestamp)
                .ok_or_else(|| bad("no block timestamp"))? as i64,
            trader: hex(t.trader.as_slice()),
            subject: hex(t.subject.as_slice()),
            is_buy: t.isBuy,
            share_amount: i64::try_from(t.shareAmount)
                .map_err(|_| bad("share amount out of range"))?,
            eth: Wei::from_u256(t.ethAmount).ok_or(()).map_err(too_big)?,
            protocol_fee: Wei::from_u256(t.protocolEthAmount)
                .ok_or(())
                .map_err(too_big)?,
            subject_fee: Wei::from_u256(t.subjectEthAmount)
                .ok_or(())
                .map_err(too_big)?,
            supply: i64::try_from(t.supply).map_err(|_| bad("supply out of range"))?,
        })
    }

    /// Reads a row selected with `store::TRADE_COLUMNS`.
    pub(crate) fn from_row(r: &AnyRow) -> Result<Self> {
        Ok(Self {
            chain_id: r.get(0),
            tx_hash: r.get(1),
            log_index: r.get(2),
            block_number: r.get(3),
            block_hash: r.get(4),
            block_time: r.get(5),
            trader: r.get(6),
            subject: r.get(7),
            is_buy: r.get::<i64, _>(8) != 0,
            share_amount: r.get(9),
            eth: Wei {
                gwei: r.get(10),
                rem: r.get(11),
            },
            protocol_fee: Wei {
                gwei: r.get(12),
                rem: r.get(13),
            },
            subject_fee: Wei {
                gwei: r.get(14),
                rem: r.get(15),
            },
            supply: r.get(16),
        })
    }
}
