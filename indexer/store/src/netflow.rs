//! Net-flow leaders ("whales"): per trader over a window of days, the ETH that went into keys
//! minus the ETH that came out of them — Σ ethAmount of buys − Σ ethAmount of sells (the price
//! before fees) — and the largest net buyers and net sellers.
//!
//! A window's trades are read through the `trades_market_time` index (market, block time, …):
//! one range scan of the window, grouped by trader in SQL. Exact integers throughout (the
//! (gwei, remainder) sums, then `i128` wei).

use futures::TryStreamExt;

use sqlx::Row;

use crate::{
    Result, StoreReader,
    amount::Wei,
    calendar::DAY,
    error::db,
    row::{get_i64, wei_at},
    series::DayRange,
};

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

impl StoreReader {
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
        // Only the `top` of each side are kept while the traders stream in: memory bounded by
        // `top`, not by the window's traders (hundreds of thousands at friend.tech's peak).
        let mut buyers = TopK::new(top);
        let mut sellers = TopK::new(top);
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
            let net = row.net();
            match net.cmp(&0) {
                std::cmp::Ordering::Greater => {
                    buyers.offer((std::cmp::Reverse(net), row.trader.clone()), row)
                }
                std::cmp::Ordering::Less => sellers.offer((net, row.trader.clone()), row),
                std::cmp::Ordering::Equal => {}
            }
        }
        out.buyers = buyers.into_sorted();
        out.sellers = sellers.into_sorted();
        Ok(out)
    }
}

/// The `k` rows of smallest rank offered so far (a bounded max-heap: the worst kept on top).
struct TopK<K: Ord, R> {
    k: usize,
    heap: std::collections::BinaryHeap<Ranked<K, R>>,
}

/// A row and its rank, ordered by the rank alone.
struct Ranked<K, R>(K, R);

impl<K: Ord, R> PartialEq for Ranked<K, R> {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}
impl<K: Ord, R> Eq for Ranked<K, R> {}
impl<K: Ord, R> PartialOrd for Ranked<K, R> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl<K: Ord, R> Ord for Ranked<K, R> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

impl<K: Ord, R> TopK<K, R> {
    fn new(k: usize) -> Self {
        Self {
            k,
            heap: std::collections::BinaryHeap::with_capacity(k + 1),
        }
    }

    fn offer(&mut self, rank: K, row: R) {
        if self.heap.len() < self.k {
            self.heap.push(Ranked(rank, row));
        } else if self.heap.peek().is_some_and(|worst| rank < worst.0) {
            self.heap.pop();
            self.heap.push(Ranked(rank, row));
        }
    }

    /// The rows kept, best rank first.
    fn into_sorted(self) -> Vec<R> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|Ranked(_, r)| r)
            .collect()
    }
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

    /// The buyers' ranking as `net_flow_leaders` keeps it.
    fn buyers(rows: Vec<(i128, NetFlowRow)>, k: usize) -> Vec<NetFlowRow> {
        let mut top = TopK::new(k);
        for (net, r) in rows {
            top.offer((std::cmp::Reverse(net), r.trader.clone()), r);
        }
        top.into_sorted()
    }

    /// The sellers' ranking as `net_flow_leaders` keeps it.
    fn sellers(rows: Vec<(i128, NetFlowRow)>, k: usize) -> Vec<NetFlowRow> {
        let mut top = TopK::new(k);
        for (net, r) in rows {
            top.offer((net, r.trader.clone()), r);
        }
        top.into_sorted()
    }

    #[test]
    fn largest_first_ties_by_address() {
        let v = vec![
            row("0xd", 7, 3),
            row("0xc", 5, 1),
            row("0xa", 10, 0),
            row("0xb", 4, 0),
        ];
        let top: Vec<_> = buyers(v, 3).into_iter().map(|r| r.trader).collect();
        // Nets: a 10, b 4, c 4, d 4 — the tie at 4 goes to the smaller addresses, whatever
        // order they came in.
        assert_eq!(top, ["0xa", "0xb", "0xc"]);
    }

    #[test]
    fn sellers_most_negative_first_and_exact() {
        // Net flows past i64 wei (10⁴ ETH) stay exact.
        let big = 10_000 * 10i128.pow(18) + 1;
        let v = vec![row("0x1", 0, 3), row("0x2", 1, big), row("0x3", 2, 5)];
        let top = sellers(v, 10);
        assert_eq!(top[0].trader, "0x2");
        assert_eq!(top[0].net(), 1 - big);
        assert_eq!(
            top.iter().map(NetFlowRow::net).collect::<Vec<_>>(),
            [1 - big, -3, -3]
        );
        assert!(sellers(Vec::new(), 5).is_empty());
        assert!(buyers(vec![row("0x1", 5, 0)], 0).is_empty());
    }

    #[test]
    fn the_heap_keeps_what_a_full_sort_would() {
        // 1,000 traders with nets in a small range (many ties), offered in a scrambled order.
        let v: Vec<_> = (0..1000u32)
            .map(|i| {
                let j = (i * 7919) % 1000;
                row(&format!("0x{j:04}"), i128::from(j % 37), 0)
            })
            .collect();
        let mut sorted = v
            .iter()
            .map(|(n, r)| (*n, r.trader.clone()))
            .collect::<Vec<_>>();
        sorted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
        let want: Vec<_> = sorted.into_iter().take(100).map(|(_, t)| t).collect();
        let got: Vec<_> = buyers(v, 100).into_iter().map(|r| r.trader).collect();
        assert_eq!(got, want);
    }
}
