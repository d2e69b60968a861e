//! Deserializers of the 0x-hex strings of a JSON-RPC log (`#[serde(deserialize_with)]`). They
//! read each string with `deserialize_bytes`, for which serde_json hands over the raw bytes,
//! instead of `deserialize_str`, for which it first validates them as UTF-8 — a pass over every
//! byte of every log that was 3% of all the indexer's instructions (`scripts/bench-instructions.sh`).
//! Hex digits are ASCII; anything else is refused by the hex decoder.

use std::{fmt, marker::PhantomData};

use alloy::{
    hex,
    primitives::{Address, B256, Bytes, U64},
};
use serde::de::{self, DeserializeSeed, Deserializer, SeqAccess, Visitor};

/// A value written as a 0x-prefixed hex string.
pub(super) trait FromHex: Sized {
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

/// A required hex field.
pub(super) fn required<'de, D: Deserializer<'de>, T: FromHex>(d: D) -> Result<T, D::Error> {
    d.deserialize_bytes(Hex(PhantomData))
}

/// An optional hex field (`null` for a pending log's block fields).
pub(super) fn optional<'de, D: Deserializer<'de>, T: FromHex>(d: D) -> Result<Option<T>, D::Error> {
    d.deserialize_option(Optional::<T>(PhantomData))
}

/// An array of hex strings.
pub(super) fn list<'de, D: Deserializer<'de>, T: FromHex>(d: D) -> Result<Vec<T>, D::Error> {
    d.deserialize_seq(List::<T>(PhantomData))
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
        required(d).map(Some)
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
