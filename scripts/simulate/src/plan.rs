//! Planning trades: the simulator's mirror of the chain, choosing each trade (valid or built to
//! revert) and pricing a batch's buys for any execution order.

use std::collections::HashMap;

use alloy::{
    network::TransactionBuilder,
    primitives::{Address, B256, U256},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use keymarket_contracts::{KeyMarket, curve};
use rand::{RngExt, rngs::StdRng};

use crate::{
    SimConfig,
    temperament::{Mood, TAKE_PROFIT, Temperament, eth, fan_factor, flip_factor},
};

/// Gas limit sent with every trade: above the costliest path (a new holder's referral buy with a
/// refund), so no estimation round trip is needed and reverting trades are still mined.
pub(crate) const TRADE_GAS: u64 = 160_000;

/// One trade to send.
pub(crate) struct Planned {
    pub(crate) tx: TransactionRequest,
    pub(crate) expect_revert: bool,
    /// For a buy: (subject, amount, referral?), so its payment can be raised to the batch's
    /// worst case before sending.
    pub(crate) buy: Option<(Address, u64, bool)>,
}

/// The simulator's mirror of the chain: enough to build valid trades and price them.
pub(crate) struct Mirror {
    pub(crate) supply: HashMap<Address, u64>,
    pub(crate) curve: HashMap<Address, u8>,
    pub(crate) held: HashMap<(Address, Address), u64>,
    /// Accounts that bought keys of a subject in this run (some may have sold them since).
    pub(crate) holders: HashMap<Address, Vec<Address>>,
    /// What the keys a (subject, holder) pair bought in this run cost, on average, ETH a key
    /// (before fees): the holder takes profit against it.
    pub(crate) basis: HashMap<(Address, Address), f64>,
    /// Next nonce per sender: assigned here, because a node filling nonces for a batch of
    /// transactions from one sender may hand out the same one twice.
    pub(crate) nonces: HashMap<Address, u64>,
    pub(crate) protocol_pct: U256,
    pub(crate) subject_pct: U256,
    /// The accounts are a generated population (see `cast`).
    pub(crate) generated: bool,
}

impl Mirror {
    /// Keys of `subject` that `trader` can sell (a subject keeps its first key).
    pub(crate) fn sellable(&self, subject: Address, trader: Address) -> u64 {
        let held = self.held.get(&(subject, trader)).copied().unwrap_or(0);
        if trader == subject {
            held.saturating_sub(1)
        } else {
            held
        }
    }

    pub(crate) fn cost_at(&self, subject: Address, supply: u64, amount: u64) -> U256 {
        let price = curve::price(self.curve[&subject], supply, amount);
        price + curve::fee(price, self.protocol_pct) + curve::fee(price, self.subject_pct)
    }
}

/// A node may execute a batch's transactions in another order than they were planned in, so
/// each buy pays what it would cost if every other buy of its subject in the batch came first;
/// the contract refunds the excess.
pub(crate) fn cover_worst_case(
    batch: &mut [Planned],
    start_supply: &HashMap<Address, u64>,
    mirror: &Mirror,
) {
    let mut bought: HashMap<Address, u64> = HashMap::new();
    for p in batch.iter() {
        if let Some((subject, amount, _)) = p.buy {
            *bought.entry(subject).or_default() += amount;
        }
    }
    for p in batch.iter_mut() {
        let Some((subject, amount, referral)) = p.buy else {
            continue;
        };
        let worst = start_supply[&subject] + bought[&subject] - amount;
        let value = mirror.cost_at(subject, worst, amount);
        p.tx.value = Some(value);
        if referral {
            let mut call =
                KeyMarket::buySharesBoundedCall::abi_decode(p.tx.input.input().expect("input"))
                    .expect("planned bounded buy");
            call.maxCost = value;
            p.tx.input = call.abi_encode().into();
        }
    }
}

pub(crate) fn trade_tx(
    mirror: &mut Mirror,
    from: Address,
    to: Address,
    value: U256,
    input: Vec<u8>,
) -> TransactionRequest {
    let nonce = mirror.nonces.entry(from).or_default();
    let tx = TransactionRequest::default().with_nonce(*nonce);
    *nonce += 1;
    tx.with_from(from)
        .with_to(to)
        .with_value(value)
        .with_input(input)
        .with_gas_limit(TRADE_GAS)
}

/// Chooses one trade of `trader` in `subject`'s keys and updates the mirror as if it succeeds
/// (unless it is built to revert); `None` when the trader cannot afford the keys and nobody sells
/// (the caller offers another subject).
///
/// A holder drawn takes its profit now and then once the key's price has reached its target, or
/// else sells with the market's mood (see `temperament::sell_mood`), the less often the dearer
/// the key; a trader holding nothing of the subject hands the sell to one of its holders with
/// the mood's other chance (most accounts hold nothing of a given subject, yet its holders do
/// sell). Otherwise the trader buys — only what fits its budget, more for the stars.
/// The node's dev accounts (a test or benchmark stream, not a market) have no budget, and sell
/// more often as a subject's supply climbs.
#[allow(clippy::too_many_arguments)]
pub(crate) fn plan_trade(
    rng: &mut StdRng,
    config: &SimConfig,
    market: Address,
    mirror: &mut Mirror,
    traders: &[Address],
    subject: Address,
    rank: usize,
    trader: Address,
    mood: Mood,
) -> Option<Planned> {
    if rng.random_range(0..1000) < config.fail_permille {
        return Some(plan_failure(rng, market, mirror, subject, trader));
    }
    let supply = mirror.supply[&subject];
    let mood = if mirror.generated {
        mood
    } else {
        let p = (300 + 650 * supply / (supply + 400)) as f64 / 1000.0;
        Mood {
            holders: p,
            others: p,
        }
    };
    let mut seller = None;
    if mirror.sellable(subject, trader) > 0 {
        let key = eth(curve::price(
            mirror.curve[&subject],
            supply.saturating_sub(1),
            1,
        ));
        let basis = mirror.basis.get(&(subject, trader)).copied().unwrap_or(0.0);
        let profit =
            mirror.generated && basis > 0.0 && key >= basis * Temperament::of(trader).profit_target;
        let chance = if profit {
            TAKE_PROFIT
        } else if mirror.generated {
            mood.holders * flip_factor(key)
        } else {
            mood.holders
        };
        if rng.random::<f64>() < chance {
            seller = Some(trader);
        }
    } else if rng.random::<f64>()
        < mood.others
            * if mirror.generated {
                flip_factor(eth(curve::price(
                    mirror.curve[&subject],
                    supply.saturating_sub(1),
                    1,
                )))
            } else {
                1.0
            }
        && let Some(holders) = mirror.holders.get(&subject)
        && !holders.is_empty()
    {
        for _ in 0..4 {
            let h = holders[rng.random_range(0..holders.len())];
            if mirror.sellable(subject, h) > 0 {
                seller = Some(h);
                break;
            }
        }
    }
    if let Some(trader) = seller {
        let sellable = mirror.sellable(subject, trader);
        let amount = if rng.random_range(0..10) == 0 {
            rng.random_range(1..=sellable)
        } else {
            1
        };
        let call = KeyMarket::sellSharesCall {
            subject,
            amount: U256::from(amount),
        };
        *mirror.held.get_mut(&(subject, trader)).expect("held") -= amount;
        *mirror.supply.get_mut(&subject).expect("subject") -= amount;
        return Some(Planned {
            tx: trade_tx(mirror, trader, market, U256::ZERO, call.abi_encode()),
            expect_revert: false,
            buy: None,
        });
    }
    let mut amount = match rng.random_range(0..100) {
        0..=84 => 1,
        85..=96 => rng.random_range(2..=3),
        _ => rng.random_range(4..=10),
    };
    // Only what fits the budget: fewer keys, or none.
    let budget = if mirror.generated {
        Temperament::of(trader).budget_eth * fan_factor(rank)
    } else {
        f64::INFINITY
    };
    while eth(mirror.cost_at(subject, supply, amount)) > budget {
        if amount == 1 {
            return None;
        }
        amount /= 2;
    }
    // The payment is raised to the batch's worst case in `cover_worst_case`.
    let value = U256::ZERO;
    // A referrer is neither the buyer nor the subject: at least three accounts.
    let referral = traders.len() > 2 && rng.random_range(0..1000) < config.referral_permille;
    let input = if referral {
        // The market ignores the buyer and the subject as referrer (self-dealing): name another.
        let mut i = rng.random_range(0..traders.len());
        while traders[i] == trader || traders[i] == subject {
            i = (i + 1) % traders.len();
        }
        let referrer = traders[i];
        KeyMarket::buySharesBoundedCall {
            subject,
            amount: U256::from(amount),
            maxCost: value,
            referrer,
            deadline: U256::MAX,
        }
        .abi_encode()
    } else {
        KeyMarket::buySharesCall {
            subject,
            amount: U256::from(amount),
        }
        .abi_encode()
    };
    let paid = eth(curve::price(mirror.curve[&subject], supply, amount));
    let held = mirror.held.entry((subject, trader)).or_default();
    if *held == 0 {
        mirror.holders.entry(subject).or_default().push(trader);
    }
    let basis = mirror.basis.entry((subject, trader)).or_default();
    *basis = (*basis * *held as f64 + paid) / (*held + amount) as f64;
    *held += amount;
    *mirror.supply.get_mut(&subject).expect("subject") += amount;
    Some(Planned {
        tx: trade_tx(mirror, trader, market, value, input),
        expect_revert: false,
        buy: Some((subject, amount, referral)),
    })
}

/// A trade built to revert, one of friend.tech's failure modes.
pub(crate) fn plan_failure(
    rng: &mut StdRng,
    market: Address,
    mirror: &mut Mirror,
    subject: Address,
    trader: Address,
) -> Planned {
    let input = match rng.random_range(0..4) {
        // Underpaid buy: InsufficientPayment (supply >= 1, so the price is not zero).
        0 => KeyMarket::buySharesCall {
            subject,
            amount: U256::from(2),
        }
        .abi_encode(),
        // Selling more than held: InsufficientKeys or CannotSellLastKey.
        1 => {
            let held = mirror.held.get(&(subject, trader)).copied().unwrap_or(0);
            KeyMarket::sellSharesCall {
                subject,
                amount: U256::from(held + 1_000_000),
            }
            .abi_encode()
        }
        // A bounded buy past its deadline: DeadlineExpired.
        2 => KeyMarket::buySharesBoundedCall {
            subject,
            amount: U256::from(1),
            maxCost: U256::MAX,
            referrer: Address::ZERO,
            deadline: U256::from(1),
        }
        .abi_encode(),
        // Buying the first key of someone else: OnlySubjectCanBuyFirstKey.
        _ => {
            let stranger = Address::from_word(B256::from(U256::from(
                0xdead_0000u64 + rng.random_range(0..1000u64),
            )));
            KeyMarket::buySharesCall {
                subject: stranger,
                amount: U256::from(1),
            }
            .abi_encode()
        }
    };
    Planned {
        tx: trade_tx(mirror, trader, market, U256::ZERO, input),
        expect_revert: true,
        buy: None,
    }
}
