//! The analysts' cohort charts over real pieces — anvil + contract + a simulated history of
//! several weeks with a generated population + indexer (SQLite and PostgreSQL) + the API over
//! HTTP: weekly retention cohorts, net-flow leaders and the overview's 7/30-day windows, each
//! equal to an independent recomputation from the chain's logs.

use std::collections::{BTreeMap, HashMap, HashSet};

use alloy::{rpc::types::Log, sol_types::SolEvent};
use keymarket_api::AppState;
use keymarket_contracts::{KeyMarket, TRADE_TOPIC};
use keymarket_indexer::StoreWriter;
use keymarket_simulate::{Profile, SimConfig};
use serde_json::{Value, json};

use crate::{
    api::serve_state,
    common::{Chain, Db, fresh_db},
};

const DAY: i64 = 86_400;

async fn get(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.text().await.unwrap();
    let json = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{url}: {e}: {body}"));
    (status, json)
}

/// `YYYY-MM-DD` of a day number (days since 1970-01-01), by the civil calendar.
fn date(day: i64) -> String {
    let z = day + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{m:02}-{d:02}", if m <= 2 { y + 1 } else { y })
}

/// The Monday that starts the week (Monday to Sunday, UTC) holding `day`. 1970-01-05 (day 4)
/// was a Monday.
fn monday_of(day: i64) -> i64 {
    day - (day - 4).rem_euclid(7)
}

/// One non-empty trade, from its log.
struct Trade {
    day: i64,
    trader: String,
    subject: String,
    buy: bool,
    eth: i128,
    protocol: i128,
    subject_fee: i128,
}

fn trades(logs: &[Log]) -> Vec<Trade> {
    logs.iter()
        .filter(|l| l.topics()[0] == TRADE_TOPIC)
        .map(|l| {
            let t = KeyMarket::Trade::decode_log_data(l.data()).unwrap();
            (l, t)
        })
        .filter(|(_, t)| !t.shareAmount.is_zero())
        .map(|(l, t)| Trade {
            day: l.block_timestamp.unwrap() as i64 / DAY,
            trader: format!("{:#x}", t.trader),
            subject: format!("{:#x}", t.subject),
            buy: t.isBuy,
            eth: t.ethAmount.to::<i128>(),
            protocol: t.protocolEthAmount.to::<i128>(),
            subject_fee: t.subjectEthAmount.to::<i128>(),
        })
        .collect()
}

/// Retention cohorts recomputed from the trades: (cohort Monday, size, active per week offset)
/// for the cohorts whose week lies in [first, last] (Mondays), activity up to the week of `last`.
fn cohorts(trades: &[Trade], first: i64, last: i64) -> Vec<(String, i64, Vec<i64>)> {
    let mut first_week: HashMap<&str, i64> = HashMap::new();
    for t in trades {
        // Logs are in chain order: a trader's first log is its first trade.
        first_week
            .entry(&t.trader)
            .or_insert_with(|| monday_of(t.day));
    }
    let active: HashSet<(&str, i64)> = trades
        .iter()
        .map(|t| (t.trader.as_str(), monday_of(t.day)))
        .collect();
    let mut out: BTreeMap<i64, (i64, Vec<i64>)> = BTreeMap::new();
    for (&trader, &week) in &first_week {
        if week < first || week > last {
            continue;
        }
        let weeks = ((last - week) / 7 + 1) as usize;
        let c = out.entry(week).or_insert_with(|| (0, vec![0; weeks]));
        c.0 += 1;
        for (k, n) in c.1.iter_mut().enumerate() {
            if active.contains(&(trader, week + 7 * k as i64)) {
                *n += 1;
            }
        }
    }
    out.into_iter()
        .map(|(week, (size, active))| (date(week), size, active))
        .collect()
}

/// The API's cohorts in the shape of [`cohorts`].
fn shown_cohorts(r: &Value) -> Vec<(String, i64, Vec<i64>)> {
    r["cohorts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["week"].as_str().unwrap().to_string(),
                c["size"].as_i64().unwrap(),
                c["active"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|n| n.as_i64().unwrap())
                    .collect(),
            )
        })
        .collect()
}

/// A trader's (bought, sold, buys, sells) over a window.
type Flow = (i128, i128, i64, i64);

/// Net-flow leaders recomputed over days [from, to]: (traders in the window, buyers, sellers),
/// each leader as the JSON row the API answers.
fn net_flows(trades: &[Trade], from: i64, to: i64) -> (usize, Vec<Value>, Vec<Value>) {
    let mut per: HashMap<&str, Flow> = HashMap::new();
    for t in trades.iter().filter(|t| (from..=to).contains(&t.day)) {
        let f = per.entry(&t.trader).or_default();
        if t.buy {
            f.0 += t.eth;
            f.2 += 1;
        } else {
            f.1 += t.eth;
            f.3 += 1;
        }
    }
    let row = |trader: &str, f: &Flow| {
        json!({
            "trader": trader,
            "netFlow": (f.0 - f.1).to_string(),
            "bought": f.0.to_string(),
            "sold": f.1.to_string(),
            "trades": f.2 + f.3,
            "buys": f.2,
            "sells": f.3,
        })
    };
    let mut all: Vec<(&str, &Flow)> = per.iter().map(|(t, f)| (*t, f)).collect();
    all.sort_by(|a, b| (b.1.0 - b.1.1).cmp(&(a.1.0 - a.1.1)).then(a.0.cmp(b.0)));
    let buyers = all
        .iter()
        .filter(|(_, f)| f.0 > f.1)
        .map(|(t, f)| row(t, f))
        .collect();
    all.sort_by(|a, b| (a.1.0 - a.1.1).cmp(&(b.1.0 - b.1.1)).then(a.0.cmp(b.0)));
    let sellers = all
        .iter()
        .filter(|(_, f)| f.0 < f.1)
        .map(|(t, f)| row(t, f))
        .collect();
    (per.len(), buyers, sellers)
}

/// A signed wei amount in ETH, exact, without trailing zeros.
fn eth(wei: i128) -> String {
    let unit = 10i128.pow(18);
    let (whole, frac) = (wei.abs() / unit, wei.abs() % unit);
    let frac = format!("{frac:018}");
    let frac = frac.trim_end_matches('0');
    let sign = if wei < 0 { "-" } else { "" };
    if frac.is_empty() {
        format!("{sign}{whole}")
    } else {
        format!("{sign}{whole}.{frac}")
    }
}

/// The API's leaders with amounts as wei strings (the shape of [`net_flows`]), checking on the
/// way that each amount's ETH string is its wei exactly.
fn shown_flows(r: &Value) -> Vec<Value> {
    r["leaders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| {
            for k in ["netFlow", "bought", "sold"] {
                let wei: i128 = x[k]["wei"].as_str().unwrap().parse().unwrap();
                assert_eq!(x[k]["eth"], eth(wei), "{x}");
            }
            json!({
                "trader": x["trader"],
                "netFlow": x["netFlow"]["wei"],
                "bought": x["bought"]["wei"],
                "sold": x["sold"]["wei"],
                "trades": x["trades"],
                "buys": x["buys"],
                "sells": x["sells"],
            })
        })
        .collect()
}

/// The overview over days [from, to] recomputed from the logs (as the API's JSON fields).
fn overview(trades: &[Trade], referrals: &[(i64, i128)], from: i64, to: i64) -> Value {
    let inside = |d: i64| (from..=to).contains(&d);
    let w: Vec<&Trade> = trades.iter().filter(|t| inside(t.day)).collect();
    let sum = |f: &dyn Fn(&Trade) -> i128| w.iter().map(|t| f(t)).sum::<i128>();
    let buy = sum(&|t| if t.buy { t.eth } else { 0 });
    let sell = sum(&|t| if t.buy { 0 } else { t.eth });
    let protocol = sum(&|t| t.protocol);
    let subject = sum(&|t| t.subject_fee);
    let paid: i128 = referrals.iter().filter(|r| inside(r.0)).map(|r| r.1).sum();
    json!({
        "from": date(from),
        "to": date(to),
        "trades": w.len(),
        "buys": w.iter().filter(|t| t.buy).count(),
        "sells": w.iter().filter(|t| !t.buy).count(),
        "traders": w.iter().map(|t| &t.trader).collect::<HashSet<_>>().len(),
        "subjects": w.iter().map(|t| &t.subject).collect::<HashSet<_>>().len(),
        "buyVolume": buy.to_string(),
        "sellVolume": sell.to_string(),
        "volume": (buy + sell).to_string(),
        "netVolume": (buy - sell).to_string(),
        "grossProtocolFees": protocol.to_string(),
        "referralPayouts": paid.to_string(),
        "protocolRevenue": (protocol - paid).to_string(),
        "subjectRevenue": subject.to_string(),
        "totalFees": (protocol + subject).to_string(),
    })
}

/// The API's overview in the shape of [`overview`].
fn shown_overview(o: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for k in [
        "from", "to", "trades", "buys", "sells", "traders", "subjects",
    ] {
        out.insert(k.into(), o[k].clone());
    }
    for k in [
        "buyVolume",
        "sellVolume",
        "volume",
        "netVolume",
        "grossProtocolFees",
        "referralPayouts",
        "protocolRevenue",
        "subjectRevenue",
        "totalFees",
    ] {
        out.insert(k.into(), o[k]["wei"].clone());
    }
    Value::Object(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn cohorts_net_flows_and_windows_equal_the_chain_on_sqlite_and_postgres() {
    assert_eq!(date(0), "1970-01-01");
    assert_eq!(date(19_579), "2023-08-10");
    assert_eq!(monday_of(19_579), 19_576); // Thursday 2023-08-10 → Monday 2023-08-07
    assert_eq!(monday_of(19_576), 19_576);
    let chain = Chain::new().await;
    // Six weeks of friend.tech's arc with a generated population arriving over time: several
    // weekly cohorts, traders who come back and traders who don't.
    let config = SimConfig {
        trades: 1_400,
        seed: 23,
        subjects: 25,
        traders: Some(160),
        profile: Profile::Friendtech { days: 42 },
        batch_size: 40,
        progress: false,
        ..SimConfig::default()
    };
    let r = keymarket_simulate::simulate(&chain.provider, &chain.deployment, &config)
        .await
        .unwrap();
    assert_eq!(r.unexpected_reverts(), 0, "{:?}", r.unexpected_revert_txs);

    // Independent recomputation from the logs.
    let logs = chain.logs().await;
    let trades = trades(&logs);
    let referrals: Vec<(i64, i128)> = logs
        .iter()
        .filter(|l| l.topics()[0] == KeyMarket::ReferralFeePaid::SIGNATURE_HASH)
        .map(|l| {
            let e = KeyMarket::ReferralFeePaid::decode_log_data(l.data()).unwrap();
            (
                l.block_timestamp.unwrap() as i64 / DAY,
                e.amount.to::<i128>(),
            )
        })
        .collect();
    let first_day = trades.iter().map(|t| t.day).min().unwrap();
    let last_day = trades.iter().map(|t| t.day).max().unwrap();
    let (first_week, last_week) = (monday_of(first_day), monday_of(last_day));
    let all_cohorts = cohorts(&trades, first_week, last_week);
    assert!(all_cohorts.len() >= 3, "{all_cohorts:?}");
    assert!(
        all_cohorts
            .iter()
            .any(|(_, size, active)| active.iter().skip(1).any(|n| *n > 0 && n < size)),
        "some cohort partly comes back: {all_cohorts:?}"
    );
    // A range in the middle, from a Thursday to a Tuesday: whole weeks.
    let (mid_from, mid_to) = (first_week + 7 + 3, first_week + 21 + 1);
    let mid_cohorts = cohorts(&trades, first_week + 7, first_week + 21);
    let last_two = cohorts(&trades, last_week - 7, last_week);
    // Net flows: the default window is the 30 days ending at the last day with trades.
    let (traders_30, buyers_30, sellers_30) = net_flows(&trades, last_day - 29, last_day);
    assert!(
        buyers_30.len() > 20 && sellers_30.len() > 3,
        "{sellers_30:?}"
    );
    let (early_from, early_to) = (first_day, first_day + 9);
    let (traders_early, buyers_early, sellers_early) = net_flows(&trades, early_from, early_to);
    let week = overview(&trades, &referrals, last_day - 6, last_day);
    let month = overview(&trades, &referrals, last_day - 29, last_day);
    assert!(week["trades"].as_u64().unwrap() > 0 && week["referralPayouts"] != "0");

    for kind in [Db::Sqlite, Db::Postgres] {
        let url = fresh_db(kind, "cohorts").await;
        let store = StoreWriter::connect(&url).await.unwrap();
        keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
            .await
            .unwrap();
        let base = serve_state(AppState::new(store.reader())).await;

        // Retention: every cohort, the last two weeks, and a range in the middle.
        let (status, r) = get(&format!("{base}/v1/retention")).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(shown_cohorts(&r), all_cohorts, "{kind:?}: {r}");
        assert_eq!(r["fromWeek"], date(first_week).as_str());
        assert_eq!(r["toWeek"], date(last_week).as_str());
        let (_, r) = get(&format!("{base}/v1/retention?weeks=2")).await;
        assert_eq!(shown_cohorts(&r), last_two, "{kind:?}: {r}");
        let (_, r) = get(&format!(
            "{base}/v1/retention?from={}&to={}",
            date(mid_from),
            date(mid_to)
        ))
        .await;
        assert_eq!(shown_cohorts(&r), mid_cohorts, "{kind:?}: {r}");
        assert_eq!(r["fromWeek"], date(first_week + 7).as_str());
        let (status, r) = get(&format!("{base}/v1/retention?weeks=0")).await;
        assert_eq!(status, 400, "{r}");

        // Net-flow leaders, exact and signed: the default window, then an explicit one.
        let (status, n) = get(&format!("{base}/v1/traders/netflow?limit=100")).await;
        assert_eq!(status, 200, "{n}");
        assert_eq!(n["side"], "buyers");
        assert_eq!(n["from"], date(last_day - 29).as_str(), "{n}");
        assert_eq!(n["to"], date(last_day).as_str());
        assert_eq!(n["traders"], traders_30, "{kind:?}");
        assert_eq!(
            shown_flows(&n),
            buyers_30[..buyers_30.len().min(100)],
            "{kind:?}"
        );
        let (_, n) = get(&format!("{base}/v1/traders/netflow?side=sellers&limit=5")).await;
        assert_eq!(n["side"], "sellers");
        assert_eq!(shown_flows(&n), sellers_30[..5], "{kind:?}");
        let (_, n) = get(&format!("{base}/v1/traders/netflow")).await;
        assert_eq!(shown_flows(&n), buyers_30[..20], "default limit 20");
        for side in ["buyers", "sellers"] {
            let (_, n) = get(&format!(
                "{base}/v1/traders/netflow?side={side}&limit=100&from={}&to={}",
                date(early_from),
                date(early_to)
            ))
            .await;
            let want = if side == "buyers" {
                &buyers_early
            } else {
                &sellers_early
            };
            assert_eq!(
                shown_flows(&n),
                want[..want.len().min(100)],
                "{kind:?} {side}"
            );
            assert_eq!(n["traders"], traders_early);
            assert_eq!(n["from"], date(early_from).as_str());
        }

        // The overview's windows: the last 7 and 30 days of data, and the same as from/to.
        let (status, o) = get(&format!("{base}/v1/overview?window=7d")).await;
        assert_eq!(status, 200, "{o}");
        assert_eq!(shown_overview(&o), week, "{kind:?}");
        let (_, all) = get(&format!("{base}/v1/overview")).await;
        assert_eq!(o["tvl"], all["netVolume"], "TVL is the current one");
        let (_, same) = get(&format!(
            "{base}/v1/overview?from={}&to={}",
            date(last_day - 6),
            date(last_day)
        ))
        .await;
        assert_eq!(same, o);
        let (_, o) = get(&format!("{base}/v1/overview?window=30d")).await;
        assert_eq!(shown_overview(&o), month, "{kind:?}");
        let (status, o) = get(&format!("{base}/v1/overview?window=7")).await;
        assert_eq!(status, 400, "{o}");
    }
}

/// Net flow's window is bounded: more than 366 days of trading → 400 naming the cap; a `from`
/// after the last day with trades → an empty answer, not an inverted window.
#[tokio::test(flavor = "multi_thread")]
async fn net_flow_windows_are_bounded() {
    let chain = Chain::new().await;
    // Three blocks 200 days apart: 401 days of data.
    chain.trade(30, 7, 10, 200 * 86_400).await;
    let url = fresh_db(Db::Sqlite, "netflow_cap").await;
    let store = StoreWriter::connect(&url).await.unwrap();
    keymarket_indexer::run(&chain.provider, &store, chain.spec(), &Default::default())
        .await
        .unwrap();
    let base = serve_state(AppState::new(store.reader())).await;
    let (status, n) = get(&format!("{base}/v1/traders/netflow?from=2000-01-01")).await;
    assert_eq!(status, 400, "{n}");
    let message = n["error"]["message"].as_str().unwrap();
    assert!(message.contains("at most 366"), "{message}");
    let (status, n) = get(&format!("{base}/v1/traders/netflow")).await;
    assert_eq!(status, 200, "the default window (30 days): {n}");
    let (status, n) = get(&format!("{base}/v1/traders/netflow?from=2999-01-01")).await;
    assert_eq!(status, 200, "{n}");
    assert_eq!(n["leaders"], json!([]));
    assert_eq!(n["from"], Value::Null);
}
