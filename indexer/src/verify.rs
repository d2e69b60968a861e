//! Curve-checked ingestion. A friend.tech-style market's `Trade` is arithmetic: its price is the
//! curve's sum over the keys traded from the supply before it, each fee is capped (10% of the
//! price on KeyMarket), and a subject's supply moves by exactly the keys traded. A provider that
//! drops a trade, invents one or serves one twice breaks that arithmetic, so every batch is
//! checked, in chain order, before it is stored: a break is the provider's fault and the range
//! is fetched again.
//!
//! What the check bounds: a dropped trade is seen when the same subject's next trade arrives (the
//! supply jumps); one that is the subject's last trade so far is not seen until then. A trade
//! invented with a price that fits the curve and a supply that continues the subject's is not
//! seen either (it would have to be invented consistently, trade after trade).
//!
//! The subject's curve comes from its `SubjectCreated` event, or — for a subject opened before
//! the range being indexed — from the market's `subjectCurve(subject)`, read once: never from
//! the price being checked. friend.tech's layout has one curve. A market of another layout is
//! indexed unchecked (said once in the log).

use alloy::primitives::{Address, U256};
use keymarket_contracts::{
    KeyMarket::KeyMarketInstance,
    curve,
    trade::{self, Flavor, TradeError},
};

use crate::store::TradeRow;

/// The highest fee of either kind, as a share of the price: KeyMarket's `MAX_FEE_PERCENT` (10%).
const MAX_FEE_DIVISOR: u64 = 10;

/// What the check knows of a market.
#[derive(Debug, Default, Clone)]
pub(crate) struct CurveCheck {
    /// `None`: a layout the check does not know; nothing is checked.
    flavor: Option<Flavor>,
    /// Each subject's curve, when known.
    curves: foldhash::HashMap<Address, u8>,
    /// Each subject's supply after its last stored trade.
    supplies: foldhash::HashMap<Address, i64>,
    /// The block each subject was opened in, as far as this run saw (a repair's starting point
    /// for a subject none of whose trades is stored).
    opened: foldhash::HashMap<Address, u64>,
}

/// A trade that breaks the arithmetic: the subject, the block, what was expected and received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Break {
    pub(crate) subject: Address,
    pub(crate) block: i64,
    pub(crate) what: String,
    /// The arithmetic broke against what is already stored (the subject's stored supply, or
    /// the market's state): the lie may be in a stored batch (a trade left out of it), so the
    /// repair starts at the subject's last stored trade, not at this batch.
    pub(crate) against_stored: bool,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "subject {:#x} at block {}: {}",
            self.subject, self.block, self.what
        )
    }
}

/// The supplies a batch leaves, to adopt once it is stored.
pub(crate) type Supplies = Vec<(Address, i64)>;

/// A subject opened on a curve (`SubjectCreated`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Created {
    pub(crate) subject: Address,
    pub(crate) curve: u8,
    pub(crate) block: u64,
}

impl CurveCheck {
    /// The check of the market at `address`, its layout read from its code; `states` are the
    /// stored subjects' (subject, supply, curve multiple) — see [`CurveCheck::reset`].
    pub(crate) async fn new<P: alloy::providers::Provider>(
        provider: &P,
        address: Address,
        states: Vec<(Address, i64, i64)>,
    ) -> Result<Self, TradeError> {
        let flavor = match trade::flavor(provider, address).await {
            Ok(f) => Some(f),
            Err(TradeError::NotAMarket(_)) => {
                tracing::warn!(target: "indexer::verify", market = %address, "not KeyMarket's nor friend.tech's layout: its trades are stored unchecked");
                None
            }
            Err(e) => return Err(e),
        };
        let mut check = Self {
            flavor,
            ..Self::default()
        };
        check.reset(states);
        Ok(check)
    }

    /// A check of nothing (a market of an unknown layout, or checks turned off).
    #[cfg(test)]
    pub(crate) fn of(flavor: Flavor) -> Self {
        Self {
            flavor: Some(flavor),
            ..Self::default()
        }
    }

    /// Records curves from a batch's `SubjectCreated` events, and reads from the market those of
    /// its subjects whose curve is still unknown (KeyMarket only; one call per subject, ever).
    pub(crate) async fn learn_curves<P: alloy::providers::Provider>(
        &mut self,
        provider: &P,
        market: Address,
        created: &[Created],
        trades: &[TradeRow],
        retry: &crate::rpc::Retry,
    ) -> crate::Result<()> {
        for c in created {
            self.curves.insert(c.subject, c.curve);
        }
        if self.flavor != Some(Flavor::KeyMarket) {
            return Ok(());
        }
        let m = KeyMarketInstance::new(market, provider);
        for t in trades {
            if self.curves.contains_key(&t.subject) {
                continue;
            }
            let subject = t.subject;
            let c = crate::rpc::call("subjectCurve", retry, || async {
                m.subjectCurve(subject).call().await.map_err(contract_error)
            })
            .await?;
            self.curves.insert(t.subject, c);
        }
        Ok(())
    }

    /// Checks `trades` (one batch, in chain order) against the curve and the supplies so far —
    /// a subject `created` in the batch (`SubjectCreated`) starts from none — the supplies they
    /// leave, or the first break.
    pub(crate) fn check(
        &self,
        trades: &[TradeRow],
        created: &[Created],
    ) -> Result<Supplies, Break> {
        let Some(flavor) = self.flavor else {
            return Ok(Vec::new());
        };
        let mut after: foldhash::HashMap<Address, i64> = Default::default();
        for t in trades {
            let in_batch = after.get(&t.subject).copied();
            let brk = |what: String| Break {
                subject: t.subject,
                block: t.block_number,
                what,
                against_stored: in_batch.is_none(),
            };
            let before = in_batch
                .or_else(|| self.supplies.get(&t.subject).copied())
                .or_else(|| created.iter().any(|c| c.subject == t.subject).then_some(0));
            let expected = before.map(|s| {
                if t.is_buy {
                    s + t.share_amount
                } else {
                    s - t.share_amount
                }
            });
            if let Some(e) = expected
                && e != t.supply
            {
                return Err(brk(format!(
                    "the supply after a {} of {} key(s) should be {e} (it was {}), the log says {}",
                    if t.is_buy { "buy" } else { "sell" },
                    t.share_amount,
                    before.unwrap_or_default(),
                    t.supply
                )));
            }
            let low = if t.is_buy {
                t.supply - t.share_amount
            } else {
                t.supply
            };
            if low < 0 || t.share_amount < 0 {
                return Err(brk(format!(
                    "a {} of {} key(s) leaving supply {}",
                    if t.is_buy { "buy" } else { "sell" },
                    t.share_amount,
                    t.supply
                )));
            }
            let c = match flavor {
                Flavor::Friendtech => curve::CURVE_STANDARD,
                Flavor::KeyMarket => match self.curves.get(&t.subject) {
                    Some(&c) => c,
                    // learn_curves was not given this batch: no price check possible.
                    None => {
                        after.insert(t.subject, t.supply);
                        continue;
                    }
                },
            };
            let price = curve::price(c, low as u64, t.share_amount as u64);
            let eth = t.eth.to_u256();
            if eth != price {
                return Err(brk(format!(
                    "{} key(s) from supply {low} cost {price} wei on curve {c}, the log says {eth}",
                    t.share_amount
                )));
            }
            let cap = eth / U256::from(MAX_FEE_DIVISOR);
            for (name, fee) in [("protocol", t.protocol_fee), ("subject", t.subject_fee)] {
                if fee.to_u256() > cap {
                    return Err(brk(format!(
                        "a {name} fee of {} wei is above 10% of the price {eth}",
                        fee.to_u256()
                    )));
                }
            }
            after.insert(t.subject, t.supply);
        }
        // A subject opened in the batch without a trade in it (its first trade left out of the
        // answer?) has none: its next trade must start from zero.
        for c in created {
            after.entry(c.subject).or_insert(0);
        }
        Ok(after.into_iter().collect())
    }

    /// Near the head, where a subject's last trade so far has no later trade to show that it was
    /// left out: each subject the batch touched has its supply read from the market's state at
    /// the batch's last block (`sharesSupply`, one call per subject) and compared with the
    /// supply its trades leave. `None`: all agree (or, unless `strict`, the state cannot be read
    /// there; `strict`, an unreadable state is a break).
    pub(crate) async fn confirm_at<P: alloy::providers::Provider>(
        &self,
        provider: &P,
        market: Address,
        block: u64,
        supplies: &Supplies,
        retry: &crate::rpc::Retry,
        strict: bool,
    ) -> crate::Result<Option<Break>> {
        if self.flavor.is_none() {
            return Ok(None);
        }
        let m = KeyMarketInstance::new(market, provider);
        for (subject, supply) in supplies {
            let address = *subject;
            // Best effort: a state the provider cannot serve (a block the chain no longer has
            // after a reorg, state pruned on a node that is not an archive) leaves the batch
            // unconfirmed, as far from the head, rather than stopping the indexer.
            let few = crate::rpc::Retry {
                attempts: Some(3),
                ..retry.clone()
            };
            let onchain = match crate::rpc::call("sharesSupply", &few, || async {
                m.sharesSupply(address)
                    .block(block.into())
                    .call()
                    .await
                    .map_err(contract_error)
            })
            .await
            {
                Ok(v) => v,
                Err(e) if strict => {
                    return Ok(Some(Break {
                        subject: *subject,
                        block: block as i64,
                        against_stored: true,
                        what: format!("the market's state at block {block} cannot be read: {e}"),
                    }));
                }
                Err(e) => {
                    tracing::debug!(target: "indexer::verify", block, error = %e, "cannot read the market's state at the head; the batch is checked by its own arithmetic only");
                    return Ok(None);
                }
            };
            if onchain != U256::from(*supply as u64) {
                return Ok(Some(Break {
                    subject: *subject,
                    block: block as i64,
                    against_stored: true,
                    what: format!(
                        "the market's state says supply {onchain} at block {block}, the logs leave {supply} (a trade left out?)"
                    ),
                }));
            }
        }
        Ok(None)
    }

    /// Adopts the supplies of a stored batch, and the blocks its subjects were opened in.
    pub(crate) fn stored(&mut self, supplies: Supplies, created: &[Created]) {
        self.supplies.extend(supplies);
        for c in created {
            self.opened.insert(c.subject, c.block);
        }
    }

    /// The block `subject` was opened in, if this run saw it.
    pub(crate) fn opened_at(&self, subject: Address) -> Option<u64> {
        self.opened.get(&subject).copied()
    }

    /// Takes the stored subjects' (subject, supply, curve multiple) as the base: at the start,
    /// and after a rollback. The curve of a stored subject is the one its stored trades were
    /// priced on — checked against its `SubjectCreated` or `subjectCurve()` when they were stored
    /// — so a restarted indexer does not read every subject's curve from the chain again.
    pub(crate) fn reset(&mut self, states: Vec<(Address, i64, i64)>) {
        self.supplies.clear();
        for (subject, supply, multiple) in states {
            let c = match multiple {
                1 => Some(curve::CURVE_STANDARD),
                10 => Some(curve::CURVE_STEEP),
                _ => None,
            };
            if let Some(c) = c {
                self.curves.entry(subject).or_insert(c);
            }
            self.supplies.insert(subject, supply);
        }
    }
}

/// A contract call's error as a transport error, for [`crate::rpc::call`]'s retries.
fn contract_error(e: alloy::contract::Error) -> alloy::transports::TransportError {
    match e {
        alloy::contract::Error::TransportError(t) => t,
        other => alloy::transports::TransportErrorKind::custom_str(&other.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use keymarket_store::amount::Wei;

    use super::*;

    /// A short test address: "0xa" is 0x00…0a.
    fn addr(short: &str) -> Address {
        Address::with_last_byte(u8::from_str_radix(&short[2..], 16).unwrap())
    }

    fn trade(subject: &str, block: i64, is_buy: bool, amount: i64, supply: i64, c: u8) -> TradeRow {
        let low = if is_buy { supply - amount } else { supply };
        let price = curve::price(c, low as u64, amount as u64);
        let fee = Wei::from_u256(price / U256::from(20)).unwrap();
        TradeRow {
            chain_id: 1,
            tx_hash: alloy::primitives::B256::from(U256::from(block as u64)),
            log_index: 0,
            block_number: block,
            block_hash: alloy::primitives::B256::ZERO,
            block_time: block,
            trader: Address::with_last_byte(1),
            subject: addr(subject),
            is_buy,
            share_amount: amount,
            eth: Wei::from_u256(price).unwrap(),
            protocol_fee: fee,
            subject_fee: fee,
            supply,
        }
    }

    #[test]
    fn honest_trades_pass_and_every_lie_is_named() {
        let mut check = CurveCheck::of(Flavor::KeyMarket);
        check.curves.insert(addr("0xa"), curve::CURVE_STANDARD);
        check.curves.insert(addr("0xb"), curve::CURVE_STEEP);
        let honest = [
            trade("0xa", 1, true, 1, 1, 0),
            trade("0xa", 2, true, 3, 4, 0),
            trade("0xb", 2, true, 2, 2, 1),
            trade("0xa", 3, false, 2, 2, 0),
        ];
        let supplies = check.check(&honest, &[]).unwrap();
        check.stored(supplies, &[]);
        assert_eq!(check.supplies[&addr("0xa")], 2);
        // The next batch continues from the stored supplies.
        assert!(check.check(&[trade("0xa", 4, true, 1, 3, 0)], &[]).is_ok());
        // A trade dropped: the next one of its subject jumps.
        let e = check
            .check(&[trade("0xa", 5, true, 1, 4, 0)], &[])
            .unwrap_err();
        assert!(e.what.contains("should be 3"), "{e}");
        // A price off the subject's curve (the steep one's price on the standard curve).
        let e = check
            .check(&[trade("0xa", 5, true, 1, 3, 1)], &[])
            .unwrap_err();
        assert!(e.what.contains("on curve 0"), "{e}");
        // The same trade served twice.
        let twice = [
            trade("0xb", 6, true, 1, 3, 1),
            trade("0xb", 6, true, 1, 3, 1),
        ];
        check.stored(vec![(addr("0xb"), 2)], &[]);
        assert!(
            check
                .check(&twice, &[])
                .unwrap_err()
                .what
                .contains("should be 4")
        );
        // A fee above the cap.
        let mut greedy = trade("0xa", 7, true, 1, 3, 0);
        greedy.subject_fee = Wei::from_u256(greedy.eth.to_u256() / U256::from(5)).unwrap();
        assert!(
            check
                .check(&[greedy], &[])
                .unwrap_err()
                .what
                .contains("above 10%")
        );
        // A subject first seen here sets its base; friend.tech's layout has one curve.
        let ft = CurveCheck::of(Flavor::Friendtech);
        assert!(
            ft.check(
                &[
                    trade("0xc", 1, true, 1, 40, 0),
                    trade("0xc", 2, false, 1, 39, 0)
                ],
                &[]
            )
            .is_ok()
        );
        assert!(ft.check(&[trade("0xc", 1, true, 1, 40, 1)], &[]).is_err());
        // A subject opened in the batch starts from no key: its launch left out shows.
        let opened = [Created {
            subject: addr("0xd"),
            curve: 0,
            block: 8,
        }];
        check.curves.insert(addr("0xd"), 0);
        assert!(
            check
                .check(&[trade("0xd", 8, true, 1, 1, 0)], &opened)
                .is_ok()
        );
        assert!(
            check
                .check(&[trade("0xd", 8, true, 1, 2, 0)], &opened)
                .is_err()
        );
        // Opened in one batch with its first trade left out: the next batch starts from zero.
        let left = check.check(&[], &opened).unwrap();
        check.stored(left, &opened);
        let e = check
            .check(&[trade("0xd", 9, true, 1, 2, 0)], &[])
            .unwrap_err();
        assert!(e.against_stored && e.what.contains("should be 1"), "{e}");
        assert_eq!(check.opened_at(addr("0xd")), Some(8));
        // A restart takes the stored supplies and curves (multiples 1 and 10) as its base.
        let mut restarted = CurveCheck::of(Flavor::KeyMarket);
        restarted.reset(vec![(addr("0xe"), 5, 10), (addr("0xf"), 2, 0)]);
        assert_eq!(
            restarted.curves.get(&addr("0xe")),
            Some(&curve::CURVE_STEEP)
        );
        assert_eq!(
            restarted.curves.get(&addr("0xf")),
            None,
            "not known: read from the chain"
        );
        assert!(
            restarted
                .check(&[trade("0xe", 9, true, 1, 6, 1)], &[])
                .is_ok()
        );
        assert!(
            restarted
                .check(&[trade("0xe", 9, true, 1, 6, 0)], &[])
                .is_err()
        );
    }
}
