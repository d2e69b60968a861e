//! Trading through a market: which ABI it speaks (KeyMarket's bounded functions, or friend.tech's
//! plain ones), quotes from its own views, and transactions simulated with `eth_call` before they
//! are sent, so a trade that would revert is never sent and costs no gas.

use alloy::{
    consensus::TxEnvelope,
    network::TransactionBuilder,
    primitives::{Address, TxHash, U256},
    providers::{
        Provider, SendableTx,
        fillers::{FillProvider, TxFiller},
    },
    rpc::types::{TransactionReceipt, TransactionRequest},
    sol_types::{SolCall, SolEvent},
};

use crate::{
    KeyMarket::{self, KeyMarketInstance},
    revert,
};

/// Errors of a trade, each one a sentence a trader can act on.
#[derive(Debug, thiserror::Error)]
pub enum TradeError {
    /// No contract at the address on this chain.
    #[error(
        "there is no contract at {0} on this chain (wrong --market, deployment file or --rpc-url?)"
    )]
    NoContract(Address),
    /// A contract that is not a key market.
    #[error(
        "{0} is not a key market: it has neither KeyMarket's nor friend.tech's trading functions"
    )]
    NotAMarket(Address),
    /// `eth_call` says the transaction would revert: nothing was sent.
    #[error("{0}; nothing was sent")]
    WouldRevert(String),
    /// The transaction was mined and reverted.
    #[error("transaction {0} was mined but reverted")]
    Reverted(TxHash),
    /// The account cannot pay.
    #[error("the account holds {have} but this needs {need} plus gas; nothing was sent", have = revert::eth(*have), need = revert::eth(*need))]
    InsufficientBalance {
        /// What the trade needs (before gas).
        need: U256,
        /// What the account holds.
        have: U256,
    },
    /// A subject without keys cannot be sold or priced.
    #[error("subject {0} has no keys on this market")]
    UnknownSubject(Address),
    /// A buy of a subject that has no keys by someone else: only the subject can buy its first
    /// (the quote of such a buy prices a trade nobody else can make).
    #[error("{0} has not launched keys yet; only it can buy the first (keymarket launch)")]
    NotLaunched(Address),
    /// The RPC failed.
    #[error("RPC: {0}")]
    Rpc(String),
}

impl From<alloy::contract::Error> for TradeError {
    fn from(e: alloy::contract::Error) -> Self {
        match e.as_revert_data().and_then(|d| revert::explain(&d)) {
            Some(s) => Self::WouldRevert(s),
            None => Self::Rpc(e.to_string()),
        }
    }
}

impl From<alloy::transports::TransportError> for TradeError {
    fn from(e: alloy::transports::TransportError) -> Self {
        match e
            .as_error_resp()
            .and_then(|p| p.as_revert_data())
            .and_then(|d| revert::explain(&d))
        {
            Some(s) => Self::WouldRevert(s),
            None => Self::Rpc(e.to_string()),
        }
    }
}

/// Result of this module.
pub type Result<T, E = TradeError> = std::result::Result<T, E>;

/// Which trading ABI a market speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// KeyMarket: bounded buys and sells, refunds, subject-aware quotes.
    KeyMarket,
    /// friend.tech's FriendtechSharesV1 layout: `buyShares`/`sellShares` only, no slippage bound,
    /// and any ETH sent above the price is kept.
    Friendtech,
}

/// A buy or a sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Keys bought.
    Buy,
    /// Keys sold.
    Sell,
}

/// Reads the market's code and tells its flavor by the functions its dispatcher holds.
pub async fn flavor<P: Provider>(provider: &P, market: Address) -> Result<Flavor> {
    let code = provider.get_code_at(market).await?;
    if code.is_empty() {
        return Err(TradeError::NoContract(market));
    }
    let dispatches = |selector: [u8; 4]| {
        // PUSH4 <selector> in the function dispatcher.
        code.windows(5).any(|w| w[0] == 0x63 && w[1..] == selector)
    };
    if dispatches(KeyMarket::buySharesBoundedCall::SELECTOR) {
        Ok(Flavor::KeyMarket)
    } else if dispatches(KeyMarket::buySharesCall::SELECTOR)
        && dispatches(KeyMarket::sellSharesCall::SELECTOR)
    {
        Ok(Flavor::Friendtech)
    } else {
        Err(TradeError::NotAMarket(market))
    }
}

/// A trade priced by the market's views, now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quote {
    /// Buy or sell.
    pub side: Side,
    /// The subject.
    pub subject: Address,
    /// Keys.
    pub amount: U256,
    /// The subject's supply before the trade.
    pub supply: U256,
    /// The price before fees.
    pub price: U256,
    /// The protocol fee.
    pub protocol_fee: U256,
    /// The subject fee.
    pub subject_fee: U256,
    /// What a buy costs in all, or what a sell pays out.
    pub total: U256,
    /// The price of one key right after the trade.
    pub next_price: U256,
}

/// Prices `amount` keys of `subject` on the subject's own curve with the fees in force.
pub async fn quote<P: Provider>(
    provider: &P,
    market: Address,
    flavor: Flavor,
    side: Side,
    subject: Address,
    amount: U256,
) -> Result<Quote> {
    let m = KeyMarketInstance::new(market, provider);
    let supply = m.sharesSupply(subject).call().await?;
    if supply.is_zero() && side == Side::Sell {
        return Err(TradeError::UnknownSubject(subject));
    }
    if side == Side::Sell && supply <= amount {
        return Err(TradeError::WouldRevert(format!(
            "the last key can never be sold: the supply is {supply} and this sells {amount}"
        )));
    }
    let after = match side {
        Side::Buy => supply + amount,
        Side::Sell => supply - amount,
    };
    let (price, protocol_fee, subject_fee, total, next_price) = match flavor {
        Flavor::KeyMarket => {
            let (price, protocol_fee, subject_fee, total) = match side {
                Side::Buy => {
                    let q = m.quoteBuy(subject, amount).call().await?;
                    (q.price, q.protocolFee, q.subjectFee, q.total)
                }
                Side::Sell => {
                    let q = m.quoteSell(subject, amount).call().await?;
                    (q.price, q.protocolFee, q.subjectFee, q.proceeds)
                }
            };
            let curve = m.subjectCurve(subject).call().await?;
            let next_price = m
                .getPriceOnCurve(curve, after, U256::from(1))
                .call()
                .await?;
            (price, protocol_fee, subject_fee, total, next_price)
        }
        Flavor::Friendtech => {
            let price = match side {
                Side::Buy => m.getBuyPrice(subject, amount).call().await?,
                Side::Sell => m.getSellPrice(subject, amount).call().await?,
            };
            // Public variables of the same names on friend.tech.
            let protocol_pct = m.protocolFeePercent().call().await?;
            let subject_pct = m.subjectFeePercent().call().await?;
            let protocol_fee = crate::curve::fee(price, protocol_pct);
            let subject_fee = crate::curve::fee(price, subject_pct);
            let total = match side {
                Side::Buy => price + protocol_fee + subject_fee,
                Side::Sell => price - protocol_fee - subject_fee,
            };
            let next_price = m.getPrice(after, U256::from(1)).call().await?;
            (price, protocol_fee, subject_fee, total, next_price)
        }
    };
    Ok(Quote {
        side,
        subject,
        amount,
        supply,
        price,
        protocol_fee,
        subject_fee,
        total,
        next_price,
    })
}

/// The transaction of a trade: through the bounded functions on KeyMarket (a buy pays its
/// bound, the market refunds the rest), through `buyShares`/`sellShares` on friend.tech (a buy
/// pays exactly the quoted cost: friend.tech keeps any excess, and has no bound).
#[allow(clippy::too_many_arguments)]
pub fn trade_tx(
    flavor: Flavor,
    market: Address,
    side: Side,
    subject: Address,
    amount: U256,
    quote_total: U256,
    bound: U256,
    referrer: Option<Address>,
    deadline: U256,
) -> TransactionRequest {
    let (input, value) = match (flavor, side) {
        (Flavor::KeyMarket, Side::Buy) => (
            KeyMarket::buySharesBoundedCall {
                subject,
                amount,
                maxCost: bound,
                referrer: referrer.unwrap_or_default(),
                deadline,
            }
            .abi_encode(),
            bound,
        ),
        (Flavor::KeyMarket, Side::Sell) => (
            KeyMarket::sellSharesBoundedCall {
                subject,
                amount,
                minProceeds: bound,
                deadline,
            }
            .abi_encode(),
            U256::ZERO,
        ),
        (Flavor::Friendtech, Side::Buy) => (
            KeyMarket::buySharesCall { subject, amount }.abi_encode(),
            quote_total,
        ),
        (Flavor::Friendtech, Side::Sell) => (
            KeyMarket::sellSharesCall { subject, amount }.abi_encode(),
            U256::ZERO,
        ),
    };
    TransactionRequest::default()
        .with_to(market)
        .with_input(input)
        .with_value(value)
}

/// What a mined transaction did, read from its receipt.
#[derive(Debug, Clone)]
pub struct Mined {
    /// The transaction.
    pub tx_hash: TxHash,
    /// Its block.
    pub block: u64,
    /// Gas used.
    pub gas_used: u64,
    /// What the gas cost, wei.
    pub fee: U256,
    /// The `Trade` events it emitted.
    pub trades: Vec<KeyMarket::Trade>,
    /// ETH withdrawn (`Withdrawal` events), wei.
    pub withdrawn: U256,
}

/// Checks that `from` can pay `tx`'s value and simulates `tx` with `eth_call`: a revert is
/// returned in words, and nothing is sent.
pub async fn simulate<P: Provider>(
    provider: &P,
    from: Address,
    tx: &TransactionRequest,
) -> Result<()> {
    let value = tx.value.unwrap_or_default();
    let have = provider.get_balance(from).await?;
    if have < value {
        return Err(TradeError::InsufficientBalance { need: value, have });
    }
    provider.call(tx.clone().with_from(from)).await?;
    Ok(())
}

/// Fills `tx` (nonce, gas, fees) and signs it with the provider's wallet: its hash is known
/// before anything is sent, so a trader interrupted while it is sent can be told which one.
pub async fn sign<F, P>(provider: &FillProvider<F, P>, tx: TransactionRequest) -> Result<TxEnvelope>
where
    F: TxFiller,
    P: Provider,
{
    match provider.fill(tx).await? {
        SendableTx::Envelope(e) => Ok(e),
        SendableTx::Builder(_) => Err(TradeError::Rpc("no signer to sign the transaction".into())),
    }
}

impl Mined {
    /// What a receipt says: an error if the transaction reverted.
    pub fn from_receipt(r: &TransactionReceipt) -> Result<Self> {
        mined(r)
    }
}

fn mined(r: &TransactionReceipt) -> Result<Mined> {
    if !r.status() {
        return Err(TradeError::Reverted(r.transaction_hash));
    }
    let mut trades = Vec::new();
    let mut withdrawn = U256::ZERO;
    for log in r.inner.logs() {
        match log.topics().first() {
            Some(t) if *t == KeyMarket::Trade::SIGNATURE_HASH => {
                if let Ok(e) = KeyMarket::Trade::decode_log_data(log.data()) {
                    trades.push(e);
                }
            }
            Some(t) if *t == KeyMarket::Withdrawal::SIGNATURE_HASH => {
                if let Ok(e) = KeyMarket::Withdrawal::decode_log_data(log.data()) {
                    withdrawn += e.amount;
                }
            }
            _ => {}
        }
    }
    Ok(Mined {
        tx_hash: r.transaction_hash,
        block: r.block_number.unwrap_or_default(),
        gas_used: r.gas_used,
        fee: U256::from(r.gas_used) * U256::from(r.effective_gas_price),
        trades,
        withdrawn,
    })
}

/// The bound of a trade from a fresh quote and a slippage tolerance in basis points: the most a
/// buy may cost (rounded up) or the least a sell may pay (rounded down).
pub fn slippage_bound(side: Side, total: U256, bps: u32) -> U256 {
    let bps = U256::from(bps);
    let full = U256::from(10_000u64);
    match side {
        Side::Buy => (total * (full + bps)).div_ceil(full),
        Side::Sell => total * full.saturating_sub(bps) / full,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slippage_bounds_round_against_the_trader() {
        let t = U256::from(1_000_001u64);
        assert_eq!(slippage_bound(Side::Buy, t, 100), U256::from(1_010_002u64));
        assert_eq!(slippage_bound(Side::Sell, t, 100), U256::from(990_000u64));
        assert_eq!(slippage_bound(Side::Buy, t, 0), t);
        assert_eq!(slippage_bound(Side::Sell, t, 20_000), U256::ZERO);
    }
}
