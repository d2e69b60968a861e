//! One `Trade` event as a row, and how addresses and hashes are written.

use alloy::primitives::{Address, B256};
use sqlx::{Row, any::AnyRow};

use crate::amount::Wei;

/// One `Trade` event, ready to store. Addresses and hashes are typed; they are written as
/// lowercase 0x hex ([`hex`]) when bound.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TradeRow {
    /// Chain id.
    pub chain_id: i64,
    /// Transaction hash.
    pub tx_hash: B256,
    /// Log index in the block.
    pub log_index: i64,
    /// Block number.
    pub block_number: i64,
    /// Block hash.
    pub block_hash: B256,
    /// Block timestamp, seconds.
    pub block_time: i64,
    /// Buyer or seller.
    pub trader: Address,
    /// Subject.
    pub subject: Address,
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

/// Lowercase 0x hex: how addresses and hashes are written in the database.
pub fn hex(bytes: &[u8]) -> String {
    alloy::hex::encode_prefixed(bytes)
}

/// Reads a BIGINT column (sums are cast to BIGINT in SQL, so PostgreSQL never returns NUMERIC).
/// Reads an address the store wrote as 0x hex.
pub(crate) fn address_at(row: &AnyRow, i: usize) -> crate::Result<Address> {
    let text: String = row.get(i);
    text.parse().map_err(|_| {
        crate::Error::Corrupt(format!(
            "{text:?} is not the 0x hex address the store writes"
        ))
    })
}

pub(crate) fn get_i64(row: &AnyRow, i: usize) -> i64 {
    row.get::<i64, _>(i)
}

/// Reads an exact amount stored as a (gwei, remainder) column pair starting at column `gwei`.
pub(crate) fn wei_at(row: &AnyRow, gwei: usize) -> Wei {
    Wei {
        gwei: get_i64(row, gwei),
        rem: get_i64(row, gwei + 1),
    }
}
