//! Net-flow leaders ("whales"): per trader over a window of days, the ETH that went into keys
//! minus the ETH that came out of them — Σ ethAmount of buys − Σ ethAmount of sells (the price
//! before fees) — and the largest net buyers and net sellers.
//!
//! A window's trades are read through the `trades_market_time` index (market, block time, …):
//! one range scan of the window, grouped by trader in SQL. Exact integers throughout (the
//! (gwei, remainder) sums, then `i128` wei).

use futures::TryStreamExt;

use super::{aggregates::DAY, *};
use crate::{Result, amount::Wei, series::DayRange};

/// One trader's flows over a window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetFlowRow {
    /// The trader (lowercase 0x hex).
    pub trader: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys among them.
    pub buys: i64,
    /// Sells among them.
    pub sells: i64,
    /// Σ ethAmount of the buys.
    pub bought: Wei,
    /// Σ ethAmount of the sells.
    pub sold: Wei,
}

impl NetFlowRow {
    /// Bought minus sold, in wei (negative for a net seller).
    pub fn net(&self) -> i128 {
        self.bought.to_i128() - self.sold.to_i128()
    }
}

/// The largest net buyers and sellers of a window.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetFlowLeaders {
    /// Traders with a trade in the window.
    pub traders: i64,
    /// Traders with a positive net flow, largest first (ties by address).
    pub buyers: Vec<NetFlowRow>,
    /// Traders with a negative net flow, most negative first (ties by address).
    pub sellers: Vec<NetFlowRow>,
}

impl Store {
    /// The `top` largest net buyers and net sellers of the market over `days`.
    pub async fn net_flow_leaders(
        &self,
        market_id: i64,
        days: DayRange,
        top: usize,
    ) -> Result<NetFlowLeaders> {
        let mut rows = sqlx::query(
            "SELECT trader, COUNT(*), CAST(SUM(CASE WHEN is_buy <> 0 THEN 1 ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN is_buy <> 0 THEN eth_gwei ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN is_buy <> 0 THEN eth_rem ELSE 0 END) AS BIGINT), \
             CAST(SUM(CASE WHEN is_buy <> 0 THEN 0 ELSE eth_gwei END) AS BIGINT), CAST(SUM(CASE WHEN is_buy <> 0 THEN 0 ELSE eth_rem END) AS BIGINT) \
             FROM trades WHERE market_id = $1 AND block_time >= $2 AND block_time < $3 AND share_amount <> 0 \
             GROUP BY trader",
        )
        .bind(market_id)
        .bind(days.from.saturating_mul(DAY))
        .bind(days.to.saturating_add(1).saturating_mul(DAY))
        .fetch(&self.pool);
        let mut out = NetFlowLeaders::default();
        let mut all = Vec::new();
        while let Some(r) = rows
            .try_next()
            .await
            .map_err(db("reading the traders' net flows"))?
        {
            let (trades, buys) = (get_i64(&r, 1), get_i64(&r, 2));
            let row = NetFlowRow {
                trader: r.get(0),
                trades,
                buys,
                sells: trades - buys,
                bought: wei_at(&r, 3),
                sold: wei_at(&r, 5),
            };
            out.traders += 1;
            all.push((row.net(), row));
        }
        let (mut buyers, mut sellers): (Vec<_>, Vec<_>) = all
            .into_iter()
            .filter(|(n, _)| *n != 0)
            .partition(|(n, _)| *n > 0);
        out.buyers = leaders(&mut buyers, top, |a, b| b.cmp(a));
        out.sellers = leaders(&mut sellers, top, |a, b| a.cmp(b));
        Ok(out)
    }
}

/// The first `top` rows by net flow in the order `by` (ties by address).
fn leaders(
    rows: &mut Vec<(i128, NetFlowRow)>,
    top: usize,
    by: impl Fn(&i128, &i128) -> std::cmp::Ordering,
) -> Vec<NetFlowRow> {
    let order = |a: &(i128, NetFlowRow), b: &(i128, NetFlowRow)| {
        by(&a.0, &b.0).then_with(|| a.1.trader.cmp(&b.1.trader))
    };
    if rows.len() > top && top > 0 {
        rows.select_nth_unstable_by(top - 1, order);
    }
    rows.truncate(top);
    rows.sort_unstable_by(order);
    rows.drain(..).map(|(_, r)| r).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(trader: &str, bought: i128, sold: i128) -> (i128, NetFlowRow) {
        let r = NetFlowRow {
            trader: trader.into(),
            trades: 2,
            buys: 1,
            sells: 1,
            bought: Wei::from_i128(bought).unwrap(),
            sold: Wei::from_i128(sold).unwrap(),
        };
        (r.net(), r)
    }

    #[test]
    fn largest_first_ties_by_address() {
        let mut v = vec![
            row("0xc", 5, 1),
            row("0xa", 10, 0),
            row("0xb", 4, 0),
            row("0xd", 7, 3),
        ];
        let top: Vec<_> = leaders(&mut v, 3, |a, b| b.cmp(a))
            .into_iter()
            .map(|r| r.trader)
            .collect();
        // Nets: a 10, b 4, c 4, d 4 — the tie at 4 goes to the smaller addresses.
        assert_eq!(top, ["0xa", "0xb", "0xc"]);
    }

    #[test]
    fn sellers_most_negative_first_and_exact() {
        // Net flows past i64 wei (10⁴ ETH) stay exact.
        let big = 10_000 * 10i128.pow(18) + 1;
        let mut v = vec![row("0x1", 0, 3), row("0x2", 1, big), row("0x3", 2, 5)];
        let top = leaders(&mut v, 10, |a, b| a.cmp(b));
        assert_eq!(top[0].trader, "0x2");
        assert_eq!(top[0].net(), 1 - big);
        assert_eq!(
            top.iter().map(NetFlowRow::net).collect::<Vec<_>>(),
            [1 - big, -3, -3]
        );
        assert_eq!(leaders(&mut Vec::new(), 5, |a, b| a.cmp(b)), Vec::new());
    }
}
