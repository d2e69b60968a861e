//! The average-cost basis: what each sell releases of its holding's cost, and what a trade paid
//! or received, from which the holdings' cost and the traders' realised PnL are kept.

use alloy::primitives::Address;
use foldhash::HashMap;

use crate::{
    Backend, Error, Result,
    amount::Wei,
    error::db,
    row::TradeRow,
    statements::{MAX_PARAMS, big_statement, push_placeholders},
    write_tx::WriteTx,
};

/// (balance, cost in wei) of holdings, by (subject, trader).
pub(crate) type HoldingStates = HashMap<(Address, Address), (i64, i128)>;

/// The cost basis each sell of `trades` releases, average-cost method (see [`replay`]), from the
/// stored holdings of the (subject, trader) pairs that sell in this batch.
pub(crate) async fn released_basis(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    trades: &[TradeRow],
) -> Result<Vec<Wei>> {
    let mut pairs: Vec<(Address, Address)> = trades
        .iter()
        .filter(|t| !t.is_buy && t.share_amount != 0)
        .map(|t| (t.subject, t.trader))
        .collect();
    if pairs.is_empty() {
        return Ok(vec![Wei::ZERO; trades.len()]);
    }
    pairs.sort_unstable();
    pairs.dedup();
    let mut state = stored_holdings(tx, backend, market_id, &pairs).await?;
    replay(trades, &mut state)
}

/// The stored (balance, cost) of the holdings of `pairs` (those with none are absent).
pub(crate) async fn stored_holdings(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    pairs: &[(Address, Address)],
) -> Result<HoldingStates> {
    let mut state = HoldingStates::default();
    for chunk in pairs.chunks(MAX_PARAMS / 2) {
        let mut sql = format!(
            "SELECT subject, trader, balance, cost_gwei, cost_rem FROM holdings WHERE market_id = {market_id} AND (subject, trader) IN (VALUES "
        );
        push_placeholders(&mut sql, backend, chunk.len(), 2);
        sql.push(')');
        let mut q = big_statement(backend, &sql, chunk.len() * 2);
        for (subject, trader) in chunk {
            q.address(subject).address(trader);
        }
        for r in tx.fetch_all(q).await.map_err(db("reading holdings"))? {
            state.insert((r.parsed(0)?, r.parsed(1)?), (r.int(2), r.wei(3).to_i128()));
        }
    }
    Ok(state)
}

/// Replays `trades` in chain order over the holdings' (balance, cost) in `state` (a pair absent
/// starts empty), returning the cost basis each trade released: the holding's cost × keys sold /
/// keys held, rounded down (all of it when the seller sells everything, or more than the index
/// saw it buy — keys bought before a market's start block); zero for buys and empty trades.
pub(crate) fn replay(trades: &[TradeRow], state: &mut HoldingStates) -> Result<Vec<Wei>> {
    let mut out = Vec::with_capacity(trades.len());
    for t in trades {
        if t.share_amount == 0 {
            out.push(Wei::ZERO);
            continue;
        }
        let (balance, cost) = state.entry((t.subject, t.trader)).or_default();
        if t.is_buy {
            *balance += t.share_amount;
            *cost += paid(t);
            out.push(Wei::ZERO);
        } else {
            let released = if *balance > t.share_amount {
                *cost * i128::from(t.share_amount) / i128::from(*balance)
            } else {
                *cost
            };
            *balance -= t.share_amount;
            *cost -= released;
            out.push(wei(released)?);
        }
    }
    Ok(out)
}

/// What a buyer paid: the price and both fees, wei.
pub(crate) fn paid(t: &TradeRow) -> i128 {
    t.eth.to_i128() + t.protocol_fee.to_i128() + t.subject_fee.to_i128()
}

/// What a seller received: the price less both fees, wei.
pub(crate) fn received(t: &TradeRow) -> i128 {
    t.eth.to_i128() - t.protocol_fee.to_i128() - t.subject_fee.to_i128()
}

pub(crate) fn wei(v: i128) -> Result<Wei> {
    Wei::from_i128(v)
        .ok_or_else(|| Error::Corrupt(format!("{v} wei is past the storable range of ±9.2e9 ETH")))
}

#[cfg(test)]
mod tests {
    use alloy::primitives::B256;

    use super::*;

    fn trade(trader: u8, is_buy: bool, share_amount: i64, eth: i128) -> TradeRow {
        TradeRow {
            chain_id: 1,
            tx_hash: B256::ZERO,
            log_index: 0,
            block_number: 1,
            block_hash: B256::ZERO,
            block_time: 0,
            trader: Address::repeat_byte(trader),
            subject: Address::repeat_byte(0x11),
            is_buy,
            share_amount,
            eth: Wei::from_i128(eth).unwrap(),
            protocol_fee: Wei::from_i128(eth / 10).unwrap(),
            subject_fee: Wei::ZERO,
            supply: 1,
        }
    }

    /// Average cost: a sell releases cost × sold / held, rounded down; selling everything (or
    /// more than seen bought) releases all that is left; buys and empty trades release nothing;
    /// a holding already in `state` continues from there, and `state` ends where the trades
    /// left each holding.
    #[test]
    fn sells_release_the_average_cost() {
        let mut state = HoldingStates::default();
        let stored = (Address::repeat_byte(0x11), Address::repeat_byte(2));
        state.insert(stored, (3, 1_000));
        let trades = [
            trade(1, true, 2, 100),  // pays 110
            trade(1, false, 0, 0),   // empty
            trade(1, true, 1, 1),    // pays 1: 3 keys, cost 111
            trade(1, false, 2, 500), // releases 111 × 2 / 3 = 74
            trade(2, false, 1, 50),  // stored: releases 1,000 / 3 = 333
            trade(1, false, 5, 500), // more than held: all that is left, 37
        ];
        let released: Vec<i128> = replay(&trades, &mut state)
            .unwrap()
            .iter()
            .map(|w| w.to_i128())
            .collect();
        assert_eq!(released, [0, 0, 0, 74, 333, 37]);
        assert_eq!(state[&stored], (2, 667));
        assert_eq!(state[&(stored.0, Address::repeat_byte(1))], (-4, 0));
    }
}
