//! A market's revert data in words: every custom error of KeyMarket as a sentence a trader can
//! act on, with amounts in ETH.

use alloy::{
    primitives::{U256, utils::format_ether},
    sol_types::SolInterface,
};

use crate::KeyMarket::{self, KeyMarketErrors as E};

/// `wei` as ETH with its trailing zeros trimmed ("1.2345 ETH").
pub fn eth(wei: U256) -> String {
    let s = format_ether(wei);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s} ETH")
}

/// The sentence for a revert's data, when it is one of KeyMarket's errors (or a plain
/// `Error(string)`); `None` for data nobody can read.
pub fn explain(data: &[u8]) -> Option<String> {
    if let Ok(e) = E::abi_decode(data) {
        return Some(sentence(&e));
    }
    // Error(string), e.g. from friend.tech's `require`s.
    if data.len() >= 4 && data[..4] == [0x08, 0xc3, 0x79, 0xa0] {
        return alloy::sol_types::decode_revert_reason(data);
    }
    None
}

fn sentence(e: &E) -> String {
    use KeyMarket as K;
    match e {
        E::OnlySubjectCanBuyFirstKey(_) => {
            "this subject has no keys yet: only the subject can buy its first key (keymarket launch)".into()
        }
        E::CannotSellLastKey(K::CannotSellLastKey { supply, amount }) => format!(
            "the last key can never be sold: the supply is {supply} and this sells {amount}"
        ),
        E::InsufficientKeys(K::InsufficientKeys { balance, amount }) => {
            format!("you hold {balance} of these keys and tried to sell {amount}")
        }
        E::InsufficientPayment(K::InsufficientPayment { required, sent }) => format!(
            "the payment is short: this buy costs {}, {} was sent",
            eth(*required),
            eth(*sent)
        ),
        E::MaxCostExceeded(K::MaxCostExceeded { cost, maxCost }) => format!(
            "the price moved: this buy now costs {}, your bound is {}",
            eth(*cost),
            eth(*maxCost)
        ),
        E::MinProceedsNotMet(K::MinProceedsNotMet {
            proceeds,
            minProceeds,
        }) => format!(
            "the price moved: this sell now pays {}, your bound is {}",
            eth(*proceeds),
            eth(*minProceeds)
        ),
        E::DeadlineExpired(K::DeadlineExpired {
            deadline,
            timestamp,
        }) => format!(
            "the deadline passed: it was {deadline}, the block's time is {timestamp} (Unix seconds)"
        ),
        E::SupplyOverflow(_) => "the amount is beyond what the market can count".into(),
        E::InsufficientSupply(K::InsufficientSupply { supply, amount }) => {
            format!("only {supply} keys exist; cannot price selling {amount}")
        }
        E::FeeTooHigh(K::FeeTooHigh { percent, max }) => {
            format!("fee {percent} is above the cap {max} (1e18 = 100%)")
        }
        E::FeeNotMultipleOfUnit(K::FeeNotMultipleOfUnit { percent }) => {
            format!("fee {percent} is not a multiple of 1e6")
        }
        E::ReferralShareTooHigh(K::ReferralShareTooHigh { bps }) => {
            format!("referral share {bps} bps is above the cap")
        }
        E::ZeroAddress(_) => "the zero address is not allowed here".into(),
        E::InvalidFeeDestination(K::InvalidFeeDestination { destination }) => {
            format!("{destination} cannot receive protocol fees")
        }
        E::NoFeeIncreaseDue(_) => "no scheduled fee increase is due yet".into(),
        E::ProtocolFeesOverflow(_) => "accrued protocol fees would overflow: flush them first".into(),
        E::SubjectFeesOverflow(_) => {
            "the subject's unwithdrawn fees would overflow: the subject must withdraw them first".into()
        }
        E::RenounceOwnershipDisabled(_) => "ownership cannot be renounced on this market".into(),
        E::InvalidCurve(K::InvalidCurve { curve }) => {
            format!("curve {curve} does not exist: use standard (0) or steep (1)")
        }
        E::SubjectAlreadyExists(_) => "your keys are already open (their supply is not zero)".into(),
        E::ZeroAmount(_) => "the amount must be at least one key".into(),
        E::NothingToWithdraw(_) => "there is nothing to withdraw".into(),
        E::WithdrawalFailed(K::WithdrawalFailed { to, amount }) => {
            format!("sending {} to {to} failed: that address refuses ETH", eth(*amount))
        }
        #[allow(unreachable_patterns)]
        other => format!("the market refused: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use alloy::sol_types::SolError;

    use super::*;

    #[test]
    fn errors_read_as_sentences_with_eth() {
        let data = KeyMarket::MaxCostExceeded {
            cost: U256::from(1_234_500_000_000_000_000u64),
            maxCost: U256::from(1_200_000_000_000_000_000u64),
        }
        .abi_encode();
        assert_eq!(
            explain(&data).unwrap(),
            "the price moved: this buy now costs 1.2345 ETH, your bound is 1.2 ETH"
        );
        let data = KeyMarket::NothingToWithdraw {}.abi_encode();
        assert_eq!(explain(&data).unwrap(), "there is nothing to withdraw");
        assert_eq!(explain(&[1, 2, 3, 4, 5]), None);
        // friend.tech's require strings.
        let data = alloy::sol_types::Revert::from("Insufficient payment").abi_encode();
        assert_eq!(explain(&data).unwrap(), "revert: Insufficient payment");
        assert_eq!(eth(U256::ZERO), "0 ETH");
    }
}
