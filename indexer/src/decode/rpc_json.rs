//! The deserializer of a JSON-RPC log ([`RpcLog`]). It reads every key and every 0x-hex value
//! with `deserialize_bytes`, for which serde_json hands over the raw bytes, instead of
//! `deserialize_str`, for which it first validates them as UTF-8 — a pass over every byte of every
//! log: reading the values as bytes took 4.5% off all the indexer's instructions, the keys another
//! 1.1% (`scripts/bench-instructions.sh`). Keys and hex digits are ASCII; anything else is refused.

use std::{fmt, marker::PhantomData};

use alloy::{
    hex,
    primitives::{Address, B256, Bytes, U64},
};
use serde::{
    Deserialize,
    de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor},
};

use super::RpcLog;

impl<'de> Deserialize<'de> for RpcLog {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(LogVisitor)
    }
}

/// The keys of a log object that the indexer reads.
enum Key {
    Address,
    Topics,
    Data,
    BlockHash,
    BlockNumber,
    BlockTimestamp,
    TransactionHash,
    LogIndex,
    Removed,
    /// Any other (skipped).
    Other,
}

/// Reads a [`Key`].
struct KeySeed;

impl<'de> DeserializeSeed<'de> for KeySeed {
    type Value = Key;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_bytes(self)
    }
}

impl Visitor<'_> for KeySeed {
    type Value = Key;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a log field name")
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Key, E> {
        Ok(match v {
            b"address" => Key::Address,
            b"topics" => Key::Topics,
            b"data" => Key::Data,
            b"blockHash" => Key::BlockHash,
            b"blockNumber" => Key::BlockNumber,
            b"blockTimestamp" => Key::BlockTimestamp,
            b"transactionHash" => Key::TransactionHash,
            b"logIndex" => Key::LogIndex,
            b"removed" => Key::Removed,
            _ => Key::Other,
        })
    }

    // Deserializers other than serde_json's may hand over strings.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        self.visit_bytes(v.as_bytes())
    }
}

struct LogVisitor;

impl<'de> Visitor<'de> for LogVisitor {
    type Value = RpcLog;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a log object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RpcLog, A::Error> {
        fn set<T, E: de::Error>(slot: &mut Option<T>, v: T, key: &'static str) -> Result<(), E> {
            match slot.replace(v) {
                Some(_) => Err(E::duplicate_field(key)),
                None => Ok(()),
            }
        }
        let (mut address, mut topics, mut data, mut removed) = (None, None, None, None);
        let (mut block_hash, mut block_number, mut block_timestamp) = (None, None, None);
        let (mut transaction_hash, mut log_index) = (None, None);
        while let Some(key) = map.next_key_seed(KeySeed)? {
            match key {
                Key::Address => set(
                    &mut address,
                    map.next_value_seed(Hex(PhantomData))?,
                    "address",
                )?,
                Key::Topics => set(
                    &mut topics,
                    map.next_value_seed(List(PhantomData))?,
                    "topics",
                )?,
                Key::Data => set(&mut data, map.next_value_seed(Hex(PhantomData))?, "data")?,
                Key::BlockHash => set(
                    &mut block_hash,
                    map.next_value_seed(Optional(PhantomData))?,
                    "blockHash",
                )?,
                Key::BlockNumber => set(
                    &mut block_number,
                    map.next_value_seed(Optional(PhantomData))?,
                    "blockNumber",
                )?,
                Key::BlockTimestamp => set(
                    &mut block_timestamp,
                    map.next_value_seed(Optional(PhantomData))?,
                    "blockTimestamp",
                )?,
                Key::TransactionHash => set(
                    &mut transaction_hash,
                    map.next_value_seed(Optional(PhantomData))?,
                    "transactionHash",
                )?,
                Key::LogIndex => set(
                    &mut log_index,
                    map.next_value_seed(Optional(PhantomData))?,
                    "logIndex",
                )?,
                Key::Removed => set(&mut removed, map.next_value()?, "removed")?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(RpcLog {
            address: address.ok_or_else(|| de::Error::missing_field("address"))?,
            topics: topics.ok_or_else(|| de::Error::missing_field("topics"))?,
            data: data.ok_or_else(|| de::Error::missing_field("data"))?,
            // Absent or null: a pending log, or a node that does not report the field.
            block_hash: block_hash.flatten(),
            block_number: block_number.flatten(),
            block_timestamp: block_timestamp.flatten(),
            transaction_hash: transaction_hash.flatten(),
            log_index: log_index.flatten(),
            removed: removed.unwrap_or(false),
        })
    }
}

/// A value written as a 0x-prefixed hex string.
trait FromHex: Sized {
    /// What the string should hold, for error messages.
    const EXPECTING: &'static str;
    /// Parses the digits after the `0x`.
    fn from_hex(digits: &[u8]) -> Option<Self>;
}

impl FromHex for B256 {
    const EXPECTING: &'static str = "a 32-byte hash as 0x-prefixed hex";
    fn from_hex(digits: &[u8]) -> Option<Self> {
        let mut out = Self::ZERO;
        hex::decode_to_slice(digits, out.as_mut_slice()).ok()?;
        Some(out)
    }
}

impl FromHex for Address {
    const EXPECTING: &'static str = "a 20-byte address as 0x-prefixed hex";
    fn from_hex(digits: &[u8]) -> Option<Self> {
        let mut out = Self::ZERO;
        hex::decode_to_slice(digits, out.as_mut_slice()).ok()?;
        Some(out)
    }
}

impl FromHex for Bytes {
    const EXPECTING: &'static str = "bytes as 0x-prefixed hex";
    fn from_hex(digits: &[u8]) -> Option<Self> {
        hex::decode(digits).ok().map(Into::into)
    }
}

/// A JSON-RPC quantity: "0x" and 1 to 16 hex digits.
impl FromHex for U64 {
    const EXPECTING: &'static str = "a quantity as 0x-prefixed hex";
    fn from_hex(digits: &[u8]) -> Option<Self> {
        if digits.is_empty() || digits.len() > 16 {
            return None;
        }
        let mut n = 0u64;
        for &d in digits {
            n = n << 4 | u64::from(char::from(d).to_digit(16)?);
        }
        Some(Self::from(n))
    }
}

struct Hex<T>(PhantomData<T>);

impl<T: FromHex> Visitor<'_> for Hex<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(T::EXPECTING)
    }

    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<T, E> {
        v.strip_prefix(b"0x").and_then(T::from_hex).ok_or_else(|| {
            E::invalid_value(de::Unexpected::Str(&String::from_utf8_lossy(v)), &self)
        })
    }

    // Deserializers other than serde_json's may hand over strings.
    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        self.visit_bytes(v.as_bytes())
    }
}

impl<'de, T: FromHex> DeserializeSeed<'de> for Hex<T> {
    type Value = T;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
        d.deserialize_bytes(self)
    }
}

struct Optional<T>(PhantomData<T>);

impl<'de, T: FromHex> Visitor<'de> for Optional<T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "null or {}", T::EXPECTING)
    }

    fn visit_none<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Option<T>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_bytes(Hex(PhantomData)).map(Some)
    }
}

impl<'de, T: FromHex> DeserializeSeed<'de> for Optional<T> {
    type Value = Option<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
        d.deserialize_option(self)
    }
}

struct List<T>(PhantomData<T>);

impl<'de, T: FromHex> Visitor<'de> for List<T> {
    type Value = Vec<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "an array of {}", T::EXPECTING)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
        // A `Trade` log has one topic; events have at most four.
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(1).min(4));
        while let Some(v) = seq.next_element_seed(Hex::<T>(PhantomData))? {
            out.push(v);
        }
        Ok(out)
    }
}

impl<'de, T: FromHex> DeserializeSeed<'de> for List<T> {
    type Value = Vec<T>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(self)
    }
}
