//! Exact ETH amounts in SQL without floating point.
//!
//! Every amount column is stored as two BIGINTs, `<name>_gwei` and `<name>_rem`, meaning
//! `gwei × 10⁹ + rem` wei. A single trade has `rem < 10⁹`; an aggregate keeps the plain sums of
//! both parts (never normalised), so `SUM()` and `x = x + excluded.x` are exact integer arithmetic
//! on SQLite and PostgreSQL alike. Sums overflow only past 9.2 × 10⁹ ETH in one aggregate
//! (friend.tech's all-time volume is under 10⁷ ETH).

use alloy::primitives::U256;
use rust_decimal::Decimal;

const GWEI: u64 = 1_000_000_000;

/// SQL ordering an exact amount's column pair (`<col>_gwei`, `<col>_rem`, see [`Wei`]) by value,
/// largest first: the one text the leaderboards' queries and the indexes that serve them share
/// (a planner uses an expression index only for the very same expression). 10⁹ is [`GWEI`].
macro_rules! amount_desc {
    ($col:literal) => {
        concat!(
            "(",
            $col,
            "_gwei + ",
            $col,
            "_rem / 1000000000) DESC, (",
            $col,
            "_rem % 1000000000) DESC"
        )
    };
}
pub(crate) use amount_desc;

/// An exact wei amount split for storage; see the module docs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Wei {
    /// Whole gwei.
    pub gwei: i64,
    /// Remaining wei (below 10⁹ for a single trade; a plain sum in aggregates).
    pub rem: i64,
}

impl Wei {
    /// Zero.
    pub const ZERO: Self = Self { gwei: 0, rem: 0 };

    /// Splits an on-chain amount; `None` if it exceeds 9.2 × 10⁹ ETH.
    pub fn from_u256(v: U256) -> Option<Self> {
        let (q, r) = v.div_rem(U256::from(GWEI));
        Some(Self {
            gwei: i64::try_from(q).ok()?,
            rem: i64::try_from(r).ok()?,
        })
    }

    /// The amount in wei as a `U256` (aggregates are non-negative).
    pub fn to_u256(self) -> U256 {
        U256::from(self.gwei as u64) * U256::from(GWEI) + U256::from(self.rem as u64)
    }

    /// The amount in wei as an exact `Decimal` (96-bit mantissa: up to 7.9 × 10¹⁰ ETH).
    pub fn to_decimal_wei(self) -> Decimal {
        Decimal::from(self.gwei) * Decimal::from(GWEI) + Decimal::from(self.rem)
    }

    /// The amount in ETH as an exact `Decimal` (18 decimal places).
    pub fn to_decimal_eth(self) -> Decimal {
        let mut d = self.to_decimal_wei();
        d.set_scale(18).expect("scale 18 is valid");
        d.normalize()
    }

    /// The represented value in wei (any sign; parts may be unnormalised sums).
    pub fn to_i128(self) -> i128 {
        i128::from(self.gwei) * i128::from(GWEI) + i128::from(self.rem)
    }

    /// The normalised split of a signed wei value (`0 <= rem < 10⁹`, so `(gwei, rem)` orders
    /// like the value); `None` past ±9.2 × 10⁹ ETH.
    pub fn from_i128(v: i128) -> Option<Self> {
        Some(Self {
            gwei: i64::try_from(v.div_euclid(i128::from(GWEI))).ok()?,
            rem: v.rem_euclid(i128::from(GWEI)) as i64,
        })
    }

    /// Componentwise sum (exact for the represented value).
    pub fn plus(self, o: Self) -> Self {
        Self {
            gwei: self.gwei + o.gwei,
            rem: self.rem + o.rem,
        }
    }

    /// Componentwise negation (for rolling back what was added).
    pub fn negated(self) -> Self {
        Self {
            gwei: -self.gwei,
            rem: -self.rem,
        }
    }
}

impl std::ops::AddAssign for Wei {
    fn add_assign(&mut self, o: Self) {
        *self = self.plus(o);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        for v in [
            0u128,
            1,
            999_999_999,
            1_000_000_000,
            62_500_000_000_000,
            1_234_567_890_123_456_789_012,
        ] {
            let w = Wei::from_u256(U256::from(v)).unwrap();
            assert!(w.rem < 1_000_000_000);
            assert_eq!(w.to_u256(), U256::from(v));
            assert_eq!(w.to_decimal_wei().to_string(), v.to_string());
        }
        assert_eq!(Wei::from_u256(U256::MAX), None);
    }

    #[test]
    fn signed_values_normalise() {
        for v in [
            0i128,
            1,
            -1,
            999_999_999,
            -1_000_000_000,
            -1_234_567_890_123_456_789,
        ] {
            let w = Wei::from_i128(v).unwrap();
            assert!((0..1_000_000_000).contains(&w.rem), "{v}: {w:?}");
            assert_eq!(w.to_i128(), v);
        }
        // Normalised pairs order like their values.
        let (a, b) = (Wei::from_i128(-1).unwrap(), Wei::from_i128(1).unwrap());
        assert!((a.gwei, a.rem) < (b.gwei, b.rem));
        assert_eq!(Wei::from_i128(i128::MAX), None);
    }

    #[test]
    fn sums_stay_exact_without_normalising() {
        let a = Wei::from_u256(U256::from(999_999_999u64)).unwrap();
        let mut s = Wei::ZERO;
        for _ in 0..1000 {
            s += a;
        }
        assert_eq!(s.to_u256(), U256::from(999_999_999_000u64));
        assert_eq!(
            s.plus(a.negated()).to_u256(),
            U256::from(999_999_999_000u64 - 999_999_999)
        );
        assert_eq!(
            Wei::from_u256(U256::from(62_500_000_000_000_000u64))
                .unwrap()
                .to_decimal_eth()
                .to_string(),
            "0.0625"
        );
    }
}
