//! friend.tech's bonding curve and fee arithmetic, off-chain: the same closed form as the
//! contract, in `U256`, so clients can quote trades without an `eth_call` each. The end-to-end
//! tests check these against the contract's own views.

use alloy::primitives::U256;

/// friend.tech's standard curve: price(s) = s² / 16000 ether.
pub const CURVE_STANDARD: u8 = 0;
/// The steep curve: price(s) = s² / 1600 ether.
pub const CURVE_STEEP: u8 = 1;

const ETHER: u64 = 1_000_000_000_000_000_000;

/// Wei of key number 1 on friend.tech's standard curve (1 ether / 16000): every price on either
/// curve is a whole multiple of it. The one home of the curve's constant, for the store's and
/// the API's price arithmetic too.
pub const KEY_UNIT: u128 = 62_500_000_000_000;

/// A curve as a multiple of the standard one: 1 for friend.tech's s²/16000, 10 for the steep
/// s²/1600.
pub fn multiple(curve: u8) -> u64 {
    if curve == CURVE_STEEP { 10 } else { 1 }
}

/// 0² + 1² + … + n².
pub fn sum_of_squares(n: u128) -> Option<u128> {
    n.checked_mul(n + 1)?.checked_mul(2 * n + 1).map(|p| p / 6)
}

/// The price before fees, in units of [`KEY_UNIT`] per curve multiple, of keys number `lo` to
/// `hi` (0-based, inclusive): Σ k² over them.
pub fn squares_between(lo: u128, hi: u128) -> Option<u128> {
    let below = match lo {
        0 => 0,
        _ => sum_of_squares(lo - 1)?,
    };
    sum_of_squares(hi)?.checked_sub(below)
}

/// The price before fees of `amount` keys starting at `supply` on `curve`, in wei (in `U256`:
/// any `u64` supply and amount).
pub fn price(curve: u8, supply: u64, amount: u64) -> U256 {
    let end = U256::from(supply) + U256::from(amount);
    if end.is_zero() {
        return U256::ZERO;
    }
    let sum =
        |n: U256| n * (n + U256::from(1)) * (U256::from(2) * n + U256::from(1)) / U256::from(6);
    let below = if supply == 0 {
        U256::ZERO
    } else {
        sum(U256::from(supply - 1))
    };
    (sum(end - U256::from(1)) - below) * U256::from(KEY_UNIT) * U256::from(multiple(curve))
}

/// A fee: `price * percent / 1 ether`, rounded down (percent with 1e18 = 100%).
pub fn fee(price: U256, percent: U256) -> U256 {
    price * percent / U256::from(ETHER)
}

/// The curve reserve of `supply` outstanding keys: what buying them all from zero paid, before fees.
pub fn reserve(curve: u8, supply: u64) -> U256 {
    price(curve, 0, supply)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn friendtech_examples() {
        let eth = |milli: u64| U256::from(milli) * U256::from(ETHER) / U256::from(100_000u64);
        assert_eq!(price(CURVE_STANDARD, 10, 1), eth(625)); // 0.00625 ETH
        assert_eq!(price(CURVE_STANDARD, 100, 1), eth(62_500)); // 0.625 ETH
        assert_eq!(price(CURVE_STANDARD, 1000, 1), eth(6_250_000)); // 62.5 ETH
        assert_eq!(price(CURVE_STANDARD, 0, 1), U256::ZERO);
        assert_eq!(
            price(CURVE_STEEP, 10, 3),
            price(CURVE_STANDARD, 10, 3) * U256::from(10)
        );
    }

    #[test]
    fn closed_form_equals_term_by_term_sum() {
        for supply in 0..60u64 {
            for amount in 0..12u64 {
                let sum: u64 = (supply..supply + amount).map(|i| i * i).sum();
                let expected = U256::from(sum) * U256::from(ETHER) / U256::from(16_000u64);
                assert_eq!(
                    price(CURVE_STANDARD, supply, amount),
                    expected,
                    "s={supply} n={amount}"
                );
            }
        }
    }
}
