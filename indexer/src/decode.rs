//! Decoding `Trade` logs into rows.

use alloy::{
    primitives::{Address, B256, Bytes, U64},
    sol_types::SolEvent,
};
use keymarket_contracts::KeyMarket;

use keymarket_store::{TradeRow, amount::Wei, hex};

use crate::{Error, Result, rpc};

mod rpc_json;

/// A log as `eth_getLogs` returns it, with the fields the indexer reads. Deserialized straight
/// from the response into fixed-size hashes and numbers (unknown fields are skipped) rather than
/// into alloy's general `rpc::types::Log`, whose flattened layout makes serde buffer every field
/// of every log first: responses hold tens of thousands of logs, and parsing them is the
/// indexer's largest CPU cost after the database. Keys and hex strings are read as bytes
/// (`decode/rpc_json.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcLog {
    /// The emitting contract (checked against the filter by [`crate::LogFetcher::logs`]).
    pub address: Address,
    /// Topics (a `Trade` has one: the event's signature hash).
    pub topics: Vec<B256>,
    /// ABI-encoded non-indexed fields.
    pub data: Bytes,
    /// Block hash (`None` for a pending log).
    pub block_hash: Option<B256>,
    /// Block number (`None` for a pending log).
    pub block_number: Option<U64>,
    /// Block timestamp, seconds (not every node returns it).
    pub block_timestamp: Option<U64>,
    /// Transaction hash.
    pub transaction_hash: Option<B256>,
    /// Index of the log in its block.
    pub log_index: Option<U64>,
    /// Whether a reorg removed the log (filters only; `eth_getLogs` returns canonical logs).
    pub removed: bool,
}

impl RpcLog {
    /// The block number (0 for a pending log, which `TradeRow::from_log` refuses).
    pub fn block(&self) -> u64 {
        self.block_number.map_or(0, |n| n.to())
    }

    /// The log's position in the chain: (block number, log index).
    pub fn position(&self) -> (u64, u64) {
        (self.block(), self.log_index.map_or(0, |i| i.to()))
    }
}

/// Decoding a `Trade` log into the store's row.
pub trait FromLog: Sized {
    /// Decodes a `Trade` log; `block_time` is the log's `blockTimestamp` unless given.
    fn from_log(chain_id: u64, log: &RpcLog, block_time: Option<u64>) -> Result<Self>;
}

impl FromLog for TradeRow {
    fn from_log(chain_id: u64, log: &RpcLog, block_time: Option<u64>) -> Result<Self> {
        let bad = |why: &str| {
            Error::Decode(format!(
                "log {:?}#{:?}: {why}",
                log.transaction_hash, log.log_index
            ))
        };
        if log.removed {
            return Err(bad("the node marked the log removed (reorged out)"));
        }
        // Checks topic0 too.
        let t = KeyMarket::Trade::decode_raw_log(log.topics.iter().copied(), &log.data)
            .map_err(|e| bad(&e.to_string()))?;
        let too_big = |_| bad("amount out of the storable range");
        Ok(Self {
            chain_id: chain_id as i64,
            tx_hash: hex(log
                .transaction_hash
                .ok_or_else(|| bad("no transaction hash"))?
                .as_slice()),
            log_index: log
                .log_index
                .ok_or_else(|| bad("no log index"))?
                .to::<i64>(),
            block_number: log
                .block_number
                .ok_or_else(|| bad("pending log"))?
                .to::<i64>(),
            block_hash: hex(log.block_hash.ok_or_else(|| bad("pending log"))?.as_slice()),
            block_time: block_time
                .or(log.block_timestamp.map(|t| t.to()))
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
}

/// Decodes a `Trade` log. One that cannot be stored as it is — an amount beyond the schema's
/// 9.2·10⁹ ETH or a key count beyond 2⁶³ (no real market emits them; a contract faking the
/// event can) — is refused loudly (an error line, counted in the run's report and in
/// `/metrics`) and counts in nothing, rather than stopping the indexer: it would be the same log
/// at every restart.
pub(crate) fn decode_or_refuse(
    chain_id: u64,
    log: &RpcLog,
    block_time: Option<u64>,
    refused: &mut u64,
) -> Option<TradeRow> {
    match TradeRow::from_log(chain_id, log, block_time) {
        Ok(t) => Some(t),
        Err(e) => {
            *refused += 1;
            rpc::RETRIES
                .refused_logs
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(target: "indexer::decode", block = log.block(), log_index = log.position().1, tx = ?log.transaction_hash, error = %e, "refusing a Trade log that cannot be stored as it is: it is not counted");
            None
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A `Trade` log exactly as anvil's `eth_getLogs` returns it (a subject buying its first key).
    pub(crate) const LOG: &str = r#"{"address":"0x5fbdb2315678afecb367f032d93f642f64180aa3","topics":["0x2c76e7a47fd53e2854856ac3f0a5f3ee40d15cfaa82266357ea9779c486ab9c3"],"data":"0x00000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c800000000000000000000000070997970c51812dc3a010c7d01b50e0d17dc79c8000000000000000000000000000000000000000000000000000000000000000100000000000000000000000000000000000000000000000000000000000000010000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000001","blockHash":"0xd3456e0d586ff8c2c4a791fb1f904ceb8bf5c0c4099825376f35e310823935c3","blockNumber":"0x2","blockTimestamp":"0x6b080f99","transactionHash":"0x24cf43b5addc71c5b172db1965e7532a3f054e7e5646a05b0877e0ee96d88281","transactionIndex":"0x0","logIndex":"0x1","removed":false}"#;

    pub(crate) fn log() -> RpcLog {
        serde_json::from_str(LOG).expect("a log")
    }

    #[test]
    fn decodes_a_trade_log_from_the_rpc_json() {
        let l = log();
        assert_eq!(l.position(), (2, 1));
        let t = TradeRow::from_log(31337, &l, None).expect("a trade");
        assert_eq!(t.chain_id, 31337);
        assert_eq!(
            t.tx_hash,
            "0x24cf43b5addc71c5b172db1965e7532a3f054e7e5646a05b0877e0ee96d88281"
        );
        assert_eq!((t.block_number, t.log_index), (2, 1));
        assert_eq!(
            t.block_hash,
            "0xd3456e0d586ff8c2c4a791fb1f904ceb8bf5c0c4099825376f35e310823935c3"
        );
        assert_eq!(t.block_time, 0x6b080f99);
        assert_eq!(t.trader, "0x70997970c51812dc3a010c7d01b50e0d17dc79c8");
        assert_eq!(t.subject, t.trader);
        assert!(t.is_buy);
        assert_eq!((t.share_amount, t.supply), (1, 1));
        assert_eq!(t.eth, Wei::ZERO);
        // A timestamp from the block header wins over the log's.
        assert_eq!(TradeRow::from_log(1, &l, Some(7)).unwrap().block_time, 7);
    }

    #[test]
    fn reads_log_json_strictly() {
        // A pending log: null block fields; no timestamp at all.
        let pending = LOG
            .replace(r#""blockHash":"0xd3456e0d586ff8c2c4a791fb1f904ceb8bf5c0c4099825376f35e310823935c3""#, r#""blockHash":null"#)
            .replace(r#""blockNumber":"0x2""#, r#""blockNumber":null"#)
            .replace(r#""blockTimestamp":"0x6b080f99","#, "");
        let l: RpcLog = serde_json::from_str(&pending).expect("a pending log");
        assert_eq!(
            (l.block_hash, l.block_number, l.block_timestamp),
            (None, None, None)
        );
        assert_eq!(l.data, log().data);
        // JSON escapes are undone before the hex is read.
        let escaped = LOG.replace(r#""logIndex":"0x1""#, r#""logIndex":"\u0030x1f""#);
        let l: RpcLog = serde_json::from_str(&escaped).expect("an escaped quantity");
        assert_eq!(l.position(), (2, 0x1f));
        for (field, bad, expected) in [
            (
                r#""blockNumber":"0x2""#,
                r#""blockNumber":"2""#,
                "a quantity",
            ),
            (
                r#""blockNumber":"0x2""#,
                r#""blockNumber":"0x""#,
                "a quantity",
            ),
            (
                r#""blockNumber":"0x2""#,
                r#""blockNumber":"0x10000000000000000""#,
                "a quantity",
            ),
            (r#""blockNumber":"0x2""#, r#""blockNumber":2"#, "a quantity"),
            (r#""logIndex":"0x1""#, r#""logIndex":"0xg""#, "a quantity"),
            (
                r#""address":"0x5fbdb2315678afecb367f032d93f642f64180aa3""#,
                r#""address":"0x5fbdb2315678afecb367f032d93f642f64180a""#,
                "a 20-byte address",
            ),
            (r#""topics":["0x2c"#, r#""topics":["0xzc"#, "a 32-byte hash"),
            (r#""data":"0x0000"#, r#""data":"0x000"#, "bytes"),
            (r#""data":"0x0000"#, r#""data":"é0000"#, "bytes"),
        ] {
            assert!(LOG.contains(field), "{field}");
            let err = serde_json::from_str::<RpcLog>(&LOG.replacen(field, bad, 1))
                .expect_err(bad)
                .to_string();
            assert!(err.contains(expected), "{bad}: {err}");
        }
        // Keys: unknown ones are skipped, required ones must be there, none twice.
        let extra = LOG.replace(
            r#""removed":false"#,
            r#""removed":false,"extra":{"a":[1,"b"]}"#,
        );
        assert_eq!(
            serde_json::from_str::<RpcLog>(&extra).unwrap().position(),
            (2, 1)
        );
        let missing = LOG
            .replace(r#""removed":false"#, r#""removed":false,"x":0"#)
            .replace(r#""topics":"#, r#""x":"#);
        let err = serde_json::from_str::<RpcLog>(&missing)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `topics`"), "{err}");
        let twice = LOG.replace(r#""removed":false"#, r#""removed":false,"logIndex":"0x2""#);
        let err = serde_json::from_str::<RpcLog>(&twice)
            .unwrap_err()
            .to_string();
        assert!(err.contains("duplicate field `logIndex`"), "{err}");
    }

    #[test]
    fn refuses_other_events_removed_and_pending_logs() {
        type Spoil = fn(&mut RpcLog);
        let cases: [(&str, Spoil); 4] = [
            ("Trade", |l| l.topics[0] = B256::repeat_byte(1)),
            ("removed", |l| l.removed = true),
            ("pending", |l| l.block_number = None),
            ("timestamp", |l| l.block_timestamp = None),
        ];
        for (why, spoil) in cases {
            let mut l = log();
            spoil(&mut l);
            let err = TradeRow::from_log(1, &l, None).unwrap_err().to_string();
            assert!(err.starts_with("undecodable log"), "{why}: {err}");
            assert!(err.contains(why), "{why}: {err}");
        }
        // A log without a timestamp is fine when the block header gave one.
        let mut l = log();
        l.block_timestamp = None;
        assert_eq!(TradeRow::from_log(1, &l, Some(5)).unwrap().block_time, 5);
    }

    /// A `Trade` log whose amount the schema cannot hold (~2²⁵⁶ wei) is refused and counted, not
    /// fatal; an ordinary one decodes.
    #[test]
    fn unstorable_trade_logs_are_refused_not_fatal() {
        let mut refused = 0;
        assert!(decode_or_refuse(1, &log(), None, &mut refused).is_some());
        assert_eq!(refused, 0);
        let mut huge = log();
        let mut data = huge.data.to_vec();
        // Words: trader, subject, isBuy, shareAmount, ethAmount, ...: ethAmount = 2^256 - 1.
        data[4 * 32..5 * 32].fill(0xff);
        huge.data = Bytes::from(data);
        assert!(decode_or_refuse(1, &huge, None, &mut refused).is_none());
        let mut keys = log();
        let mut data = keys.data.to_vec();
        data[3 * 32..4 * 32].fill(0xff); // shareAmount beyond i64
        keys.data = Bytes::from(data);
        assert!(decode_or_refuse(1, &keys, None, &mut refused).is_none());
        assert_eq!(refused, 2);
        // A log index near 2^32 is stored as itself.
        let mut far = log();
        far.log_index = Some(alloy::primitives::U64::from(u32::MAX as u64 - 1));
        let t = decode_or_refuse(1, &far, None, &mut refused).expect("decoded");
        assert_eq!(t.log_index, u32::MAX as i64 - 1);
    }
}
