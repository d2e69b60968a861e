//! Decoding the market's logs into rows: trades, referral payouts and fee settings.

use alloy::{
    primitives::{Address, B256, Bytes, U64},
    sol_types::SolEvent,
};
use keymarket_contracts::KeyMarket;

use keymarket_store::{FeeEventRow, FeeSetting, ReferralRow, TradeRow, amount::Wei, hex};

use crate::{Error, Result};

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
            tx_hash: log
                .transaction_hash
                .ok_or_else(|| bad("no transaction hash"))?,
            log_index: log
                .log_index
                .ok_or_else(|| bad("no log index"))?
                .to::<i64>(),
            block_number: log
                .block_number
                .ok_or_else(|| bad("pending log"))?
                .to::<i64>(),
            block_hash: log.block_hash.ok_or_else(|| bad("pending log"))?,
            block_time: block_time
                .or(log.block_timestamp.map(|t| t.to()))
                .ok_or_else(|| bad("no block timestamp"))? as i64,
            trader: t.trader,
            subject: t.subject,
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

/// The events the indexer reads (topic0): `Trade` first, then the referral payouts and the fee
/// settings. A market of friend.tech's layout emits only `Trade`.
pub const MARKET_TOPICS: [B256; 8] = [
    KeyMarket::Trade::SIGNATURE_HASH,
    KeyMarket::SubjectCreated::SIGNATURE_HASH,
    KeyMarket::ReferralFeePaid::SIGNATURE_HASH,
    KeyMarket::ProtocolFeePercentUpdated::SIGNATURE_HASH,
    KeyMarket::SubjectFeePercentUpdated::SIGNATURE_HASH,
    KeyMarket::ReferralFeeShareUpdated::SIGNATURE_HASH,
    KeyMarket::FeeDestinationUpdated::SIGNATURE_HASH,
    KeyMarket::FeeIncreaseScheduled::SIGNATURE_HASH,
];

/// One decoded log of the market.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MarketEvent {
    /// A buy or sell.
    Trade(TradeRow),
    /// A referral payout.
    Referral(ReferralRow),
    /// A fee setting changed or scheduled.
    Fee(FeeEventRow),
    /// A subject's keys opened on a curve (KeyMarket's `SubjectCreated`): not stored, read by
    /// the curve check ([`crate::verify`]).
    Created {
        /// The subject.
        subject: Address,
        /// Its curve.
        curve: u8,
        /// The block it was opened in.
        block: u64,
    },
}

/// Where a log sits and when: (block number, log index, block time), or why it cannot be stored.
fn place(log: &RpcLog, block_time: Option<u64>) -> Result<(i64, i64, i64)> {
    let bad = |why: &str| {
        Error::Decode(format!(
            "log {:?}#{:?}: {why}",
            log.transaction_hash, log.log_index
        ))
    };
    if log.removed {
        return Err(bad("the node marked the log removed (reorged out)"));
    }
    Ok((
        log.block_number
            .ok_or_else(|| bad("pending log"))?
            .to::<i64>(),
        log.log_index
            .ok_or_else(|| bad("no log index"))?
            .to::<i64>(),
        block_time
            .or(log.block_timestamp.map(|t| t.to()))
            .ok_or_else(|| bad("no block timestamp"))? as i64,
    ))
}

impl MarketEvent {
    /// Decodes any of [`MARKET_TOPICS`]; `block_time` is the log's `blockTimestamp` unless given.
    pub fn from_log(chain_id: u64, log: &RpcLog, block_time: Option<u64>) -> Result<Self> {
        use KeyMarket::*;
        let bad = |e: alloy::sol_types::Error| {
            Error::Decode(format!(
                "log {:?}#{:?}: {e}",
                log.transaction_hash, log.log_index
            ))
        };
        let topics = log.topics.iter().copied();
        let Some(&topic0) = log.topics.first() else {
            return Err(Error::Decode(format!(
                "log {:?}#{:?}: no topic",
                log.transaction_hash, log.log_index
            )));
        };
        if topic0 == Trade::SIGNATURE_HASH {
            return TradeRow::from_log(chain_id, log, block_time).map(Self::Trade);
        }
        let (block_number, log_index, block_time) = place(log, block_time)?;
        let tx_hash = || {
            log.transaction_hash
                .map(|h| hex(h.as_slice()))
                .ok_or_else(|| {
                    Error::Decode(format!(
                        "log {block_number}#{log_index}: no transaction hash"
                    ))
                })
        };
        if topic0 == SubjectCreated::SIGNATURE_HASH {
            let e = SubjectCreated::decode_raw_log(topics, &log.data).map_err(bad)?;
            return Ok(Self::Created {
                subject: e.subject,
                curve: e.curve,
                block: log.block(),
            });
        }
        if topic0 == ReferralFeePaid::SIGNATURE_HASH {
            let e = ReferralFeePaid::decode_raw_log(topics, &log.data).map_err(bad)?;
            return Ok(Self::Referral(ReferralRow {
                tx_hash: tx_hash()?,
                log_index,
                block_number,
                block_time,
                referrer: hex(e.referrer.as_slice()),
                trader: hex(e.trader.as_slice()),
                subject: hex(e.subject.as_slice()),
                amount: Wei::from_u256(e.amount).ok_or_else(|| {
                    Error::Decode(format!(
                        "referral payout {} out of the storable range",
                        e.amount
                    ))
                })?,
            }));
        }
        let setting = if topic0 == ProtocolFeePercentUpdated::SIGNATURE_HASH {
            let e = ProtocolFeePercentUpdated::decode_raw_log(topics, &log.data).map_err(bad)?;
            FeeSetting::ProtocolFeePercent(e.current.to_string())
        } else if topic0 == SubjectFeePercentUpdated::SIGNATURE_HASH {
            let e = SubjectFeePercentUpdated::decode_raw_log(topics, &log.data).map_err(bad)?;
            FeeSetting::SubjectFeePercent(e.current.to_string())
        } else if topic0 == ReferralFeeShareUpdated::SIGNATURE_HASH {
            let e = ReferralFeeShareUpdated::decode_raw_log(topics, &log.data).map_err(bad)?;
            FeeSetting::ReferralShareBps(e.current.to_string())
        } else if topic0 == FeeDestinationUpdated::SIGNATURE_HASH {
            let e = FeeDestinationUpdated::decode_raw_log(topics, &log.data).map_err(bad)?;
            FeeSetting::FeeDestination(hex(e.current.as_slice()))
        } else if topic0 == FeeIncreaseScheduled::SIGNATURE_HASH {
            let e = FeeIncreaseScheduled::decode_raw_log(topics, &log.data).map_err(bad)?;
            let effective_at = i64::try_from(e.effectiveAt).map_err(|_| {
                Error::Decode(format!(
                    "fee increase effective at {} is out of range",
                    e.effectiveAt
                ))
            })?;
            let percent = e.pending.to_string();
            if e.protocol {
                FeeSetting::ProtocolFeeIncrease {
                    percent,
                    effective_at,
                }
            } else {
                FeeSetting::SubjectFeeIncrease {
                    percent,
                    effective_at,
                }
            }
        } else {
            return Err(Error::Decode(format!(
                "log {:?}#{:?}: an event the indexer does not read ({topic0})",
                log.transaction_hash, log.log_index
            )));
        };
        Ok(Self::Fee(FeeEventRow {
            tx_hash: tx_hash()?,
            block_number,
            log_index,
            block_time,
            setting,
        }))
    }
}

/// Decodes a market log. One that cannot be stored as it is — an amount beyond the schema's
/// 9.2·10⁹ ETH or a key count beyond 2⁶³ (no real market emits them; a contract faking the
/// event can) — is refused loudly (an error line, counted in the run's report and in
/// `/metrics`) and counts in nothing, rather than stopping the indexer: it would be the same log
/// at every restart.
pub(crate) fn decode_or_refuse(
    chain_id: u64,
    log: &RpcLog,
    block_time: Option<u64>,
    refused: &mut u64,
) -> Option<MarketEvent> {
    match MarketEvent::from_log(chain_id, log, block_time) {
        Ok(t) => Some(t),
        Err(e) => {
            *refused += 1;
            tracing::error!(target: "indexer::decode", block = log.block(), log_index = log.position().1, tx = ?log.transaction_hash, error = %e, "refusing a log that cannot be stored as it is: it is not counted");
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
            hex(t.tx_hash.as_slice()),
            "0x24cf43b5addc71c5b172db1965e7532a3f054e7e5646a05b0877e0ee96d88281"
        );
        assert_eq!((t.block_number, t.log_index), (2, 1));
        assert_eq!(
            hex(t.block_hash.as_slice()),
            "0xd3456e0d586ff8c2c4a791fb1f904ceb8bf5c0c4099825376f35e310823935c3"
        );
        assert_eq!(t.block_time, 0x6b080f99);
        assert_eq!(
            hex(t.trader.as_slice()),
            "0x70997970c51812dc3a010c7d01b50e0d17dc79c8"
        );
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
        let Some(MarketEvent::Trade(t)) = decode_or_refuse(1, &far, None, &mut refused) else {
            panic!("a trade");
        };
        assert_eq!(t.log_index, u32::MAX as i64 - 1);
    }

    /// `log()` with another event's topics and data.
    fn event_log(e: alloy::primitives::LogData) -> RpcLog {
        let mut l = log();
        l.topics = e.topics().to_vec();
        l.data = e.data.clone();
        l
    }

    /// A referred buy's logs in either order — the referral before its `Trade` (KeyMarket before
    /// its third pass, still on chains) or after it (since) — decode to the same trade and the
    /// same referral, apart from their log indexes: nothing pairs a referral with a trade by
    /// position.
    #[test]
    fn a_referral_before_or_after_its_trade_decodes_the_same() {
        let paid = event_log(
            KeyMarket::ReferralFeePaid {
                referrer: Address::repeat_byte(0xaa),
                trader: Address::repeat_byte(0xbb),
                subject: Address::repeat_byte(0xcc),
                amount: alloy::primitives::U256::from(5_000u64),
            }
            .encode_log_data(),
        );
        let at = |mut l: RpcLog, i: u64| {
            l.log_index = Some(alloy::primitives::U64::from(i));
            l
        };
        let decode = |logs: [RpcLog; 2]| {
            let (mut trade, mut referral) = (None, None);
            for l in &logs {
                match MarketEvent::from_log(1, l, Some(9)).unwrap() {
                    MarketEvent::Trade(mut t) => {
                        t.log_index = 0;
                        trade = Some(t);
                    }
                    MarketEvent::Referral(mut r) => {
                        r.log_index = 0;
                        referral = Some(r);
                    }
                    other => panic!("{other:?}"),
                }
            }
            (trade.unwrap(), referral.unwrap())
        };
        let before = decode([at(paid.clone(), 0), at(log(), 1)]);
        let after = decode([at(log(), 0), at(paid, 1)]);
        assert_eq!(before, after);
    }

    #[test]
    fn decodes_referral_payouts_and_fee_settings() {
        use KeyMarket::*;
        let (a, b, c) = (
            Address::repeat_byte(0xaa),
            Address::repeat_byte(0xbb),
            Address::repeat_byte(0xcc),
        );
        let paid = event_log(
            ReferralFeePaid {
                referrer: a,
                trader: b,
                subject: c,
                amount: alloy::primitives::U256::from(1_000_000_007u64),
            }
            .encode_log_data(),
        );
        let Ok(MarketEvent::Referral(r)) = MarketEvent::from_log(1, &paid, Some(9)) else {
            panic!("a referral payout");
        };
        assert_eq!(
            (r.referrer, r.trader, r.subject),
            (hex(a.as_slice()), hex(b.as_slice()), hex(c.as_slice()))
        );
        assert_eq!((r.amount.gwei, r.amount.rem, r.block_time), (1, 7, 9));
        assert_eq!((r.block_number, r.log_index), (2, 1));
        let fee = |data| match MarketEvent::from_log(1, &event_log(data), None) {
            Ok(MarketEvent::Fee(f)) => f.setting,
            other => panic!("a fee event: {other:?}"),
        };
        let n = alloy::primitives::U256::from;
        assert_eq!(
            fee(ProtocolFeePercentUpdated {
                previous: n(1),
                current: n(2)
            }
            .encode_log_data()),
            FeeSetting::ProtocolFeePercent("2".into())
        );
        assert_eq!(
            fee(SubjectFeePercentUpdated {
                previous: n(1),
                current: n(3)
            }
            .encode_log_data()),
            FeeSetting::SubjectFeePercent("3".into())
        );
        assert_eq!(
            fee(ReferralFeeShareUpdated {
                previous: n(1),
                current: n(4)
            }
            .encode_log_data()),
            FeeSetting::ReferralShareBps("4".into())
        );
        assert_eq!(
            fee(FeeDestinationUpdated {
                previous: a,
                current: b
            }
            .encode_log_data()),
            FeeSetting::FeeDestination(hex(b.as_slice()))
        );
        assert_eq!(
            fee(FeeIncreaseScheduled {
                protocol: false,
                current: n(1),
                pending: n(5),
                effectiveAt: n(86_400)
            }
            .encode_log_data()),
            FeeSetting::SubjectFeeIncrease {
                percent: "5".into(),
                effective_at: 86_400
            }
        );
        // A subject opened on a curve, for the curve check.
        let created = event_log(
            SubjectCreated {
                subject: a,
                curve: 1,
            }
            .encode_log_data(),
        );
        assert_eq!(
            MarketEvent::from_log(1, &created, None).unwrap(),
            MarketEvent::Created {
                subject: a,
                curve: 1,
                block: created.block(),
            }
        );
        // An event the indexer does not read is an error (the fetch filter never asks for one).
        let other = event_log(
            Withdrawal {
                account: a,
                to: a,
                amount: alloy::primitives::U256::from(1),
            }
            .encode_log_data(),
        );
        assert!(MarketEvent::from_log(1, &other, None).is_err());
    }
}
