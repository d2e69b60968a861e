//! The key price index and holders over time, over real pieces (anvil + contract + simulated
//! trades spread over weeks + indexer on SQLite and PostgreSQL + the API on a socket), equal to
//! an independent recomputation from the chain's `Trade` logs.

use std::collections::{BTreeMap, HashMap};

use alloy::{
    primitives::{Address, U256},
    sol_types::SolEvent,
};
use keymarket_api::AppState;
use keymarket_contracts::{KeyMarket, TRADE_TOPIC, curve};
use keymarket_indexer::StoreWriter;
use serde_json::Value;

use crate::{
    api::{day_number, get, serve_state},
    common::{Chain, Db, fresh_db},
};

/// What the logs say about one subject.
#[derive(Default)]
struct Subject {
    volume: U256,
    /// The contract's curve id, read off a priced trade (None: only free keys traded).
    curve: Option<u8>,
    /// Supply after its last trade of each day it traded.
    supply: BTreeMap<i64, u64>,
    /// Holders and supply at the end of each day it traded (balances replayed trade by trade).
    holders: BTreeMap<i64, (i64, u64)>,
}

/// The logs' trades, per subject, and the market's last day with trades.
fn from_logs(logs: &[alloy::rpc::types::Log]) -> (HashMap<Address, Subject>, i64) {
    let mut subjects: HashMap<Address, Subject> = HashMap::new();
    let mut balances: HashMap<(Address, Address), u64> = HashMap::new();
    let mut last_day = i64::MIN;
    for l in logs.iter().filter(|l| l.topics()[0] == TRADE_TOPIC) {
        let t = KeyMarket::Trade::decode_log_data(l.data()).unwrap();
        if t.shareAmount.is_zero() {
            continue;
        }
        let day = l.block_timestamp.unwrap() as i64 / 86_400;
        last_day = last_day.max(day);
        let (amount, supply): (u64, u64) = (t.shareAmount.to(), t.supply.to());
        let s = subjects.entry(t.subject).or_default();
        s.volume += t.ethAmount;
        // The keys traded start at `first`; the contract's own formula names the curve.
        let first = if t.isBuy { supply - amount } else { supply };
        for id in [curve::CURVE_STANDARD, curve::CURVE_STEEP] {
            if !t.ethAmount.is_zero() && curve::price(id, first, amount) == t.ethAmount {
                s.curve = Some(id);
            }
        }
        s.supply.insert(day, supply);
        let b = balances.entry((t.subject, t.trader)).or_default();
        if t.isBuy {
            *b += amount;
        } else {
            *b -= amount;
        }
        let holders = balances
            .iter()
            .filter(|((subject, _), b)| *subject == t.subject && **b > 0)
            .count() as i64;
        s.holders.insert(day, (holders, supply));
    }
    (subjects, last_day)
}

/// The top `n` subjects by volume, ties by lowercase address.
fn ranked(subjects: &HashMap<Address, Subject>, n: usize) -> Vec<(String, &Subject)> {
    let mut all: Vec<(String, &Subject)> = subjects
        .iter()
        .map(|(a, s)| (a.to_string().to_lowercase(), s))
        .collect();
    all.sort_by(|a, b| b.1.volume.cmp(&a.1.volume).then_with(|| a.0.cmp(&b.0)));
    all.truncate(n);
    all
}

/// Per day in `from..=to` (clipped to the subjects' first trade and the market's last day):
/// (day, subjects priced, median wei, mean wei) of the next key's price on each one's curve.
fn index(
    top: &[(String, &Subject)],
    last_day: i64,
    from: i64,
    to: i64,
) -> Vec<(i64, i64, String, String)> {
    let priced: Vec<&Subject> = top
        .iter()
        .map(|(_, s)| *s)
        .filter(|s| s.curve.is_some())
        .collect();
    let first = priced
        .iter()
        .map(|s| *s.supply.keys().next().unwrap())
        .min()
        .unwrap();
    let mut out = Vec::new();
    for day in from.max(first)..=to.min(last_day) {
        let mut prices: Vec<U256> = priced
            .iter()
            .filter_map(|s| {
                let (_, supply) = s.supply.range(..=day).next_back()?;
                Some(curve::price(s.curve.unwrap(), *supply, 1))
            })
            .collect();
        if prices.is_empty() {
            continue;
        }
        prices.sort();
        let n = prices.len();
        let median = if n % 2 == 1 {
            prices[n / 2]
        } else {
            (prices[n / 2 - 1] + prices[n / 2]) / U256::from(2)
        };
        let mean = prices.iter().fold(U256::ZERO, |a, b| a + *b) / U256::from(n);
        out.push((day, n as i64, median.to_string(), mean.to_string()));
    }
    out
}

fn shown_days(v: &Value) -> Vec<(i64, i64, String, String)> {
    v["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                day_number(d["date"].as_str().unwrap()),
                d["subjects"].as_i64().unwrap(),
                d["median"]["wei"].as_str().unwrap().to_string(),
                d["mean"]["wei"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn date(day: i64) -> String {
    // Days → YYYY-MM-DD through the API's own inverse is not independent: walk from a known day.
    let mut d = 19_579; // 2023-08-10
    let (mut y, mut m, mut dd) = (2023, 8, 10);
    let days_in = |y: i64, m: i64| match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    };
    assert!(day >= d);
    while d < day {
        d += 1;
        dd += 1;
        if dd > days_in(y, m) {
            dd = 1;
            m += 1;
            if m > 12 {
                m = 1;
                y += 1;
            }
        }
    }
    let s = format!("{y:04}-{m:02}-{dd:02}");
    assert_eq!(day_number(&s), day);
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn price_index_and_holders_over_time_equal_the_chain_on_sqlite_and_postgres() {
    let chain = Chain::new().await;
    // 30 blocks of 25 trades, 20 hours apart: ~25 days, on many of which a subject does not
    // trade (its price and holders are carried forward).
    chain.trade(750, 57, 25, 20 * 3600).await;
    let logs = chain.logs().await;
    let (subjects, last_day) = from_logs(&logs);
    assert!(subjects.len() >= 10, "{} subjects", subjects.len());
    assert!(
        subjects
            .values()
            .any(|s| s.curve == Some(curve::CURVE_STEEP)),
        "a steep subject"
    );
    let top10 = ranked(&subjects, 10);
    let expected10 = index(&top10, last_day, i64::MIN, i64::MAX);
    let span = expected10.last().unwrap().0 - expected10[0].0 + 1;
    assert!(span >= 20, "{span} days");
    assert_eq!(expected10.len() as i64, span, "every day, carried forward");
    assert!(
        top10
            .iter()
            .any(|(_, s)| (s.supply.len() as i64) < last_day - s.supply.keys().next().unwrap() + 1),
        "some top subject skips days"
    );

    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "prices").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();
        let base = serve_state(AppState::new(store.reader())).await;

        // The default: the top 10 by volume.
        let (status, p) = get(&format!("{base}/v1/price-index")).await;
        assert_eq!(status, 200, "{p}");
        assert_eq!(p["top"], 10);
        let listed: Vec<(String, i64, String)> = p["subjects"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| {
                (
                    s["subject"].as_str().unwrap().to_string(),
                    s["curve"].as_i64().unwrap(),
                    s["volume"]["wei"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        let want: Vec<(String, i64, String)> = top10
            .iter()
            .map(|(a, s)| {
                let multiple = match s.curve {
                    Some(curve::CURVE_STEEP) => 10,
                    Some(_) => 1,
                    None => 0,
                };
                (a.clone(), multiple, s.volume.to_string())
            })
            .collect();
        assert_eq!(listed, want, "{kind:?}: {p}");
        assert_eq!(shown_days(&p), expected10, "{kind:?}: {p}");

        // Another basket, and a window (prices carried in from before its start).
        for (top, from, to) in [
            (3, None, None),
            (4, Some(expected10[5].0), Some(expected10[12].0)),
            (50, None, Some(expected10[2].0)),
        ] {
            let mut q = format!("top={top}");
            for (k, v) in [("from", from), ("to", to)] {
                if let Some(d) = v {
                    q.push_str(&format!("&{k}={}", date(d)));
                }
            }
            let (status, p) = get(&format!("{base}/v1/price-index?{q}")).await;
            assert_eq!(status, 200, "{q}: {p}");
            let expected = index(
                &ranked(&subjects, top),
                last_day,
                from.unwrap_or(i64::MIN),
                to.unwrap_or(i64::MAX),
            );
            assert!(!expected.is_empty());
            assert_eq!(shown_days(&p), expected, "{kind:?} {q}: {p}");
            assert_eq!(
                p["subjects"].as_array().unwrap().len(),
                top.min(subjects.len())
            );
        }
        for (q, needle) in [("top=0", "at least 1"), ("top=51", "over the cap")] {
            let (status, e) = get(&format!("{base}/v1/price-index?{q}")).await;
            assert_eq!(status, 400, "{q}: {e}");
            assert!(e["error"]["message"].as_str().unwrap().contains(needle));
        }

        // Holders over time: every subject, every day from its first trade to the market's last.
        for (address, s) in &subjects {
            let a = address.to_string().to_lowercase();
            let (status, h) = get(&format!("{base}/v1/subjects/{a}/holders/daily")).await;
            assert_eq!(status, 200, "{h}");
            let got: Vec<(i64, i64, u64)> = h["days"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| {
                    (
                        day_number(d["date"].as_str().unwrap()),
                        d["holders"].as_i64().unwrap(),
                        d["supply"].as_u64().unwrap(),
                    )
                })
                .collect();
            let first = *s.holders.keys().next().unwrap();
            let want: Vec<(i64, i64, u64)> = (first..=last_day)
                .map(|day| {
                    let (_, (holders, supply)) = s.holders.range(..=day).next_back().unwrap();
                    (day, *holders, *supply)
                })
                .collect();
            assert_eq!(got, want, "{kind:?} {a}");
            // The last day is today's state.
            let (_, one) = get(&format!("{base}/v1/subjects/{a}")).await;
            let last = got.last().unwrap();
            assert_eq!(one["subject"]["holders"], last.1, "{kind:?} {a}");
            assert_eq!(one["subject"]["supply"], last.2, "{kind:?} {a}");
        }
        assert!(
            subjects.values().any(|s| {
                let h: Vec<i64> = s.holders.values().map(|v| v.0).collect();
                h.windows(2).any(|w| w[1] < w[0])
            }),
            "some subject lost holders on some day"
        );
        let unknown = format!("0x{}", "ab".repeat(20));
        let (status, e) = get(&format!("{base}/v1/subjects/{unknown}/holders/daily")).await;
        assert_eq!(status, 404, "{e}");
        let (status, e) = get(&format!("{base}/v1/subjects/0x1234/holders/daily")).await;
        assert_eq!(status, 400, "{e}");
        assert!(
            e["error"]["message"]
                .as_str()
                .unwrap()
                .contains("malformed address")
        );
    }
}
