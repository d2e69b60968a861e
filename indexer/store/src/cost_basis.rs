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

/// The cost basis each sell of `trades` releases, average-cost method: the holding's cost × keys
/// sold / keys held, rounded down (all of it when the seller sells everything, or more than the
/// index saw it buy — keys bought before a market's start block). Zero for buys and empty
/// trades. Reads the stored holdings of the (subject, trader) pairs that sell in this batch and
/// replays the batch in chain order.
pub(crate) async fn released_basis(
    tx: &mut WriteTx,
    backend: Backend,
    market_id: i64,
    trades: &[TradeRow],
) -> Result<Vec<Wei>> {
    let mut index: HashMap<(Address, Address), usize> = HashMap::default();
    for t in trades.iter().filter(|t| !t.is_buy && t.share_amount != 0) {
        let next = index.len();
        index.entry((t.subject, t.trader)).or_insert(next);
    }
    if index.is_empty() {
        return Ok(vec![Wei::ZERO; trades.len()]);
    }
    // (balance, cost in wei) of each selling pair, from the database.
    let mut state = vec![(0i64, 0i128); index.len()];
    let pairs: Vec<(Address, Address)> = index.keys().copied().collect();
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
            let i = index[&(r.parsed(0)?, r.parsed(1)?)];
            state[i] = (r.int(2), r.wei(3).to_i128());
        }
    }
    let mut out = Vec::with_capacity(trades.len());
    for t in trades {
        let i = index.get(&(t.subject, t.trader));
        let (Some(&i), true) = (i, t.share_amount != 0) else {
            out.push(Wei::ZERO);
            continue;
        };
        let (balance, cost) = &mut state[i];
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
