//! The API's numbers against the chain, endpoint by endpoint, over the shared market of
//! [`super::fixture`] on SQLite and on PostgreSQL: each check is a test per database
//! (`api::numbers::<check>::sqlite` and `::postgres`), so one failure hides no other.

use std::collections::HashSet;

use alloy::primitives::{Address, U256};
use keymarket_contracts::{KeyMarket, TRADE_TOPIC};
use serde_json::Value;

use super::{
    day_number,
    fixture::{Market, market},
    get,
};
use crate::common::Db;

/// For each check named, a test per database running it on the shared market.
macro_rules! on_both_databases {
    ($($check:ident),* $(,)?) => {$(
        mod $check {
            use crate::common::Db;

            #[tokio::test]
            async fn sqlite() {
                super::$check(Db::Sqlite, super::market()).await
            }

            #[tokio::test]
            async fn postgres() {
                super::$check(Db::Postgres, super::market()).await
            }
        }
    )*};
}

on_both_databases!(
    overview,
    overview_over_one_day,
    markets_show_the_fee_settings,
    daily,
    daily_one_day_and_pages,
    concentration,
    top_referrers,
    top_subjects_and_traders,
    fee_totals_equal_the_eth_owed,
    trades_pages,
    holder_pages_add_up_to_the_supply,
    top_trader_holdings_equal_the_chain,
    realised_pnl_and_cost_basis,
    trader_holdings_pages,
    prices_equal_the_contract_quotes,
    subject_daily_pages,
    metrics,
    a_bad_request_is_a_400,
    eip55_addresses,
    healthz,
);

/// A GET that must answer 200: its JSON body.
async fn ok(url: &str) -> Value {
    let (status, body) = get(url).await;
    assert_eq!(status, 200, "{url}: {body}");
    body
}

/// The top subject by volume (the first of `/v1/subjects/top?by=volume&limit=5`) and its page.
async fn top_subject(base: &str) -> (String, Value) {
    let top = ok(&format!("{base}/v1/subjects/top?by=volume&limit=5")).await;
    let subject = top["subjects"][0]["subject"].as_str().unwrap().to_string();
    let one = ok(&format!("{base}/v1/subjects/{subject}")).await;
    (subject, one)
}

/// The top trader by fees and its page.
async fn top_trader(base: &str) -> (String, Value) {
    let t = ok(&format!("{base}/v1/traders/top?by=fees&limit=3")).await;
    let trader = t["traders"][0]["trader"].as_str().unwrap().to_string();
    let tr = ok(&format!("{base}/v1/traders/{trader}")).await;
    (trader, tr)
}

/// The market's daily rows.
async fn days(base: &str) -> Vec<Value> {
    ok(&format!("{base}/v1/daily")).await["days"]
        .as_array()
        .unwrap()
        .clone()
}

#[test]
fn day_numbers_count_from_1970() {
    assert_eq!(day_number("1970-01-01"), 0);
    assert_eq!(day_number("2023-08-10"), 19_579);
}

async fn overview(kind: Db, m: &Market) {
    let e = &m.expected;
    let (status, o) = get(&format!("{}/v1/overview", m.base(kind))).await;
    assert_eq!(status, 200, "{o}");
    assert_eq!(o["trades"], e.trades, "{kind:?}");
    assert_eq!(o["traders"], e.traders.len() as i64);
    assert_eq!(o["subjects"], e.subjects.len() as i64);
    assert_eq!(o["buyVolume"]["wei"], e.buy.to_string());
    assert_eq!(o["sellVolume"]["wei"], e.sell.to_string());
    assert_eq!(o["volume"]["wei"], (e.buy + e.sell).to_string());
    assert_eq!(o["netVolume"]["wei"], (e.buy - e.sell).to_string());
    // Protocol revenue is net of referral payouts; the gross is friend.tech's Σ protocolEthAmount.
    assert_eq!(
        o["protocolRevenue"]["wei"],
        (e.protocol - e.referral).to_string()
    );
    assert_eq!(o["grossProtocolFees"]["wei"], e.protocol.to_string());
    assert_eq!(o["referralPayouts"]["wei"], e.referral.to_string());
    assert_eq!(o["subjectRevenue"]["wei"], e.subject.to_string());
    assert_eq!(o["totalFees"]["wei"], (e.protocol + e.subject).to_string());
    assert_eq!(
        o["protocolRevenue"]["eth"],
        alloy::primitives::utils::format_ether(e.protocol - e.referral)
            .trim_end_matches('0')
            .trim_end_matches('.'),
    );
    assert_eq!(o["tvl"], o["netVolume"]);
}

/// The overview over a window equals that window's daily rows; TVL stays the current one.
async fn overview_over_one_day(kind: Db, m: &Market) {
    let base = m.base(kind);
    let o = ok(&format!("{base}/v1/overview")).await;
    let days = days(base).await;
    let first = days[0]["date"].as_str().unwrap().to_string();
    let (status, w) = get(&format!("{base}/v1/overview?from={first}&to={first}")).await;
    assert_eq!(status, 200, "{w}");
    assert_eq!(w["trades"], days[0]["trades"]);
    assert_eq!(w["protocolRevenue"], days[0]["protocolRevenue"]);
    assert_eq!(w["traders"], days[0]["activeTraders"]);
    assert_eq!(w["tvl"], o["netVolume"]);
    assert_eq!(w["from"], first.as_str());
}

/// The market's fee settings, from its constructor's events and the owner's two changes, as
/// indexed before the scheduled increase was due.
async fn markets_show_the_fee_settings(kind: Db, market: &Market) {
    let effective_at = market.effective_at;
    assert!(effective_at > U256::ZERO, "the increase is scheduled");
    let (status, m) = get(&format!("{}/v1/markets", market.base_before_due(kind))).await;
    assert_eq!(status, 200, "{m}");
    let fees = &m["markets"][0]["fees"];
    assert_eq!(fees["protocolFeePercent"], "50000000000000000", "{m}");
    assert_eq!(fees["subjectFeePercent"], "40000000000000000");
    assert_eq!(fees["referralShareBps"], "2000");
    assert_eq!(
        fees["feeDestination"],
        format!("0x{}", "fe".repeat(20)).as_str()
    );
    assert_eq!(
        fees["pendingIncreases"],
        serde_json::json!([{
            "fee": "protocol",
            "percent": "60000000000000000",
            "shown": "6%",
            "effectiveAt": effective_at.to::<i64>()
        }])
    );
    assert_eq!(
        (
            &fees["protocolFee"],
            &fees["subjectFee"],
            &fees["referralShare"]
        ),
        (&"5%".into(), &"4%".into(), &"20%".into()),
        "{fees}"
    );
}

/// Once a block at or after effectiveAt is indexed, the increase is the fee in force (the
/// contract charges it from then, whether or not anyone applied it). PostgreSQL's database was
/// indexed again after such a block (see [`super::fixture`]).
#[tokio::test]
async fn a_scheduled_fee_increase_is_in_force_once_due_on_postgres() {
    let market = market();
    let (_, m) = get(&format!("{}/v1/markets", market.base(Db::Postgres))).await;
    let fees = &m["markets"][0]["fees"];
    assert_eq!(fees["protocolFee"], "6%", "{m}");
    assert_eq!(fees["protocolFeePercent"], "60000000000000000", "{m}");
    assert_eq!(fees["pendingIncreases"], serde_json::json!([]), "{m}");
    assert!(fees["asOf"].as_i64().unwrap() >= market.effective_at.to::<i64>());
}

async fn daily(kind: Db, m: &Market) {
    let e = &m.expected;
    let (status, d) = get(&format!("{}/v1/daily", m.base(kind))).await;
    assert_eq!(status, 200);
    let days = d["days"].as_array().unwrap();
    assert_eq!(days.len(), e.per_day.len());
    assert_eq!(
        days.iter()
            .map(|d| d["trades"].as_i64().unwrap())
            .sum::<i64>(),
        e.trades
    );
    for d in days {
        let day = day_number(d["date"].as_str().unwrap());
        let paid = e.referral_days.get(&day).copied().unwrap_or_default();
        assert_eq!(
            d["referralPayouts"]["wei"],
            paid.to_string(),
            "{kind:?}: {d}"
        );
        let gross: U256 = d["grossProtocolFees"]["wei"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(d["protocolRevenue"]["wei"], (gross - paid).to_string());
        let back = e.returning.get(&day).map_or(0, HashSet::len);
        assert_eq!(d["returningTraders"], back, "{kind:?}: {d}");
        assert_eq!(
            d["activeTraders"].as_i64().unwrap(),
            d["newTraders"].as_i64().unwrap() + back as i64
        );
    }
    assert!(
        e.returning.values().map(HashSet::len).sum::<usize>() > 0,
        "some traders came back"
    );
}

/// One day as a window, and the market's series through its cursor, two days a page: every
/// day once.
async fn daily_one_day_and_pages(kind: Db, m: &Market) {
    let base = m.base(kind);
    let days = days(base).await;
    let first = days[0]["date"].as_str().unwrap().to_string();
    let (_, one) = get(&format!("{base}/v1/daily?from={first}&to={first}")).await;
    assert_eq!(one["days"].as_array().unwrap().len(), 1);
    let (mut dates, mut cursor) = (Vec::new(), String::new());
    loop {
        let (status, page) = get(&format!("{base}/v1/daily?limit=2{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        dates.extend(
            page["days"]
                .as_array()
                .unwrap()
                .iter()
                .map(|d| d["date"].clone()),
        );
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(
        dates,
        days.iter().map(|d| d["date"].clone()).collect::<Vec<_>>()
    );
}

/// Concentration per day and over the window, exactly the recomputation from the logs.
async fn concentration(kind: Db, m: &Market) {
    let (base, e) = (m.base(kind), &m.expected);
    let (status, c) = get(&format!("{base}/v1/concentration")).await;
    assert_eq!(status, 200, "{c}");
    let shown = |x: &Value| {
        (
            x["subjects"].as_i64().unwrap(),
            x["volume"]["wei"].as_str().unwrap().to_string(),
            x["top10Share"].as_str().map(str::to_string),
            x["hhi"].as_str().map(str::to_string),
        )
    };
    let got: Vec<(String, _)> = c["days"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                day_number(d["date"].as_str().unwrap()).to_string(),
                shown(d),
            )
        })
        .collect();
    assert_eq!(got, e.concentration, "{kind:?}: {c}");
    assert_eq!(shown(&c["window"]), e.window, "{kind:?}: {c}");
    assert!(
        e.concentration.iter().any(|(_, c)| c.0 > 10),
        "some day has more than 10 subjects, so the top-10 share is below 1"
    );
    // One day as a window: the window equals that day.
    let days = days(base).await;
    let (day, expected) = &e.concentration[1];
    let date = days
        .iter()
        .map(|d| d["date"].as_str().unwrap())
        .find(|d| day_number(d).to_string() == *day)
        .unwrap();
    let (status, one) = get(&format!("{base}/v1/concentration?from={date}&to={date}")).await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["days"].as_array().unwrap().len(), 1);
    assert_eq!(&shown(&one["window"]), expected, "{kind:?}: {one}");
    assert_eq!(one["from"], date);
}

/// Top referrers: every referrer's payouts, largest first.
async fn top_referrers(kind: Db, m: &Market) {
    let e = &m.expected;
    assert!(
        e.referral > U256::ZERO,
        "the simulated trading pays referrals"
    );
    let (status, r) = get(&format!("{}/v1/referrers/top?limit=100", m.base(kind))).await;
    assert_eq!(status, 200, "{r}");
    let listed = r["referrers"].as_array().unwrap();
    assert_eq!(listed.len(), e.per_referrer.len().min(100), "{kind:?}: {r}");
    let mut previous = U256::MAX;
    for x in listed {
        let (amount, count) = e.per_referrer[x["address"].as_str().unwrap()];
        assert_eq!(x["amount"]["wei"], amount.to_string(), "{kind:?}: {x}");
        assert_eq!(x["referrals"], count);
        assert!(amount <= previous, "largest first");
        previous = amount;
    }
}

async fn top_subjects_and_traders(kind: Db, m: &Market) {
    let base = m.base(kind);
    let (status, top) = get(&format!("{base}/v1/subjects/top?by=volume&limit=5")).await;
    assert_eq!(status, 200);
    let vols: Vec<u128> = top["subjects"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["volume"]["wei"].as_str().unwrap().parse().unwrap())
        .collect();
    assert_eq!(vols.len(), 5);
    assert!(
        vols.windows(2).all(|w| w[0] >= w[1]),
        "sorted by volume: {vols:?}"
    );
    let top_subject = top["subjects"][0]["subject"].as_str().unwrap().to_string();
    let (status, one) = get(&format!("{base}/v1/subjects/{top_subject}")).await;
    assert_eq!(status, 200);
    assert_eq!(one["subject"]["volume"], top["subjects"][0]["volume"]);
    let (status, t) = get(&format!("{base}/v1/traders/top?by=fees&limit=3")).await;
    assert_eq!(status, 200);
    assert_eq!(t["traders"].as_array().unwrap().len(), 3);
}

/// Fee totals equal actual ETH owed: the protocol's fees net of referrals accrue in the market
/// (the API's protocol revenue); subjects' fees and referral shares are withdrawable balances
/// (nobody withdrew). So accrued + everything withdrawable = the API's total fees, and each
/// subject can withdraw at least the fees the API says it earned.
async fn fee_totals_equal_the_eth_owed(kind: Db, m: &Market) {
    use alloy::providers::Provider;

    let base = m.base(kind);
    let o = ok(&format!("{base}/v1/overview")).await;
    let provider = m.provider();
    let market = KeyMarket::new(m.address, &provider);
    let accrued = market.accruedProtocolFees().call().await.unwrap();
    assert_eq!(
        accrued.to_string(),
        o["protocolRevenue"]["wei"].as_str().unwrap(),
        "{kind:?}: protocol revenue = what accrued to the protocol"
    );
    let fee_destination = Address::repeat_byte(0xfe);
    let mut receipts = accrued
        + provider.get_balance(fee_destination).await.unwrap()
        + market.withdrawable(fee_destination).call().await.unwrap();
    for a in provider.get_accounts().await.unwrap() {
        receipts += market.withdrawable(a).call().await.unwrap();
    }
    assert_eq!(
        receipts.to_string(),
        o["totalFees"]["wei"].as_str().unwrap(),
        "{kind:?}: fee receipts"
    );
    let (_, all) = get(&format!("{base}/v1/subjects/top?by=fees&limit=100")).await;
    let mut subject_sum = U256::ZERO;
    for sj in all["subjects"].as_array().unwrap() {
        let earned: U256 = sj["feesEarned"]["wei"].as_str().unwrap().parse().unwrap();
        let owed = market
            .withdrawable(sj["subject"].as_str().unwrap().parse().unwrap())
            .call()
            .await
            .unwrap();
        assert!(owed >= earned, "{kind:?}: {sj}");
        subject_sum += earned;
    }
    assert_eq!(
        subject_sum.to_string(),
        o["subjectRevenue"]["wei"].as_str().unwrap()
    );
}

/// Recent trades: every raw row exactly once across the keyset pages, newest first; a filter by
/// side and subject.
async fn trades_pages(kind: Db, m: &Market) {
    let base = m.base(kind);
    let o = ok(&format!("{base}/v1/overview")).await;
    let (top_subject, _) = top_subject(base).await;
    let raw = m
        .logs
        .iter()
        .filter(|l| l.topics()[0] == TRADE_TOPIC)
        .count();
    let (mut seen, mut cursor, mut last) = (HashSet::new(), String::new(), (i64::MAX, 0));
    let mut buys_seen = 0;
    loop {
        let (status, page) = get(&format!("{base}/v1/trades?limit=100{cursor}")).await;
        assert_eq!(status, 200, "{page}");
        for t in page["trades"].as_array().unwrap() {
            let key = (
                t["block"].as_i64().unwrap(),
                t["logIndex"].as_i64().unwrap(),
            );
            assert!(key < last, "newest first: {key:?} after {last:?}");
            last = key;
            assert!(seen.insert(key), "{key:?} twice");
            buys_seen += i64::from(t["side"] == "buy" && t["shares"].as_i64() != Some(0));
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), raw, "{kind:?}: trades across pages");
    assert_eq!(buys_seen, o["buys"].as_i64().unwrap());
    let (_, sells) = get(&format!(
        "{base}/v1/trades?side=sell&subject={top_subject}&limit=100"
    ))
    .await;
    assert!(
        sells["trades"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["side"] == "sell" && t["subject"] == top_subject.as_str())
    );
}

/// Holders of the top subject: pages add up to its supply.
async fn holder_pages_add_up_to_the_supply(kind: Db, m: &Market) {
    let base = m.base(kind);
    let (top_subject, one) = top_subject(base).await;
    let (mut total, mut cursor, mut pages) = (0i64, String::new(), 0);
    loop {
        let (status, page) = get(&format!(
            "{base}/v1/subjects/{top_subject}/holders?limit=3{cursor}"
        ))
        .await;
        assert_eq!(status, 200, "{page}");
        pages += 1;
        total += page["holders"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["balance"].as_i64().unwrap())
            .sum::<i64>();
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(pages > 1, "several holder pages");
    assert_eq!(
        total,
        one["subject"]["supply"].as_i64().unwrap(),
        "{kind:?}: Σ holdings = supply"
    );
}

/// One trader: the top trader's totals and holdings.
async fn top_trader_holdings_equal_the_chain(kind: Db, m: &Market) {
    let base = m.base(kind);
    let t = ok(&format!("{base}/v1/traders/top?by=fees&limit=3")).await;
    let top_trader = t["traders"][0]["trader"].as_str().unwrap().to_string();
    let (status, tr) = get(&format!("{base}/v1/traders/{top_trader}")).await;
    assert_eq!(status, 200, "{tr}");
    assert_eq!(tr["trader"]["feesPaid"], t["traders"][0]["feesPaid"]);
    let provider = m.provider();
    let market = KeyMarket::new(m.address, &provider);
    for h in tr["holdings"].as_array().unwrap() {
        let balance = market
            .sharesBalance(
                h["subject"].as_str().unwrap().parse().unwrap(),
                top_trader.parse().unwrap(),
            )
            .call()
            .await
            .unwrap();
        assert_eq!(
            balance,
            U256::from(h["balance"].as_u64().unwrap()),
            "{kind:?}: holding {h}"
        );
    }
}

/// Realised PnL and cost basis (average cost, fees included) equal a recomputation from the
/// logs; the ranking by PnL orders by value, losses included.
async fn realised_pnl_and_cost_basis(kind: Db, m: &Market) {
    let (base, e) = (m.base(kind), &m.expected);
    let avg = &e.average_cost;
    let (status, by_pnl) = get(&format!("{base}/v1/traders/top?by=pnl&limit=100")).await;
    assert_eq!(status, 200, "{by_pnl}");
    let pnls: Vec<i128> = by_pnl["traders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let got: i128 = t["realisedPnl"]["wei"].as_str().unwrap().parse().unwrap();
            let want = avg.pnl.get(t["trader"].as_str().unwrap()).copied();
            assert_eq!(got, want.unwrap_or(0), "{kind:?}: {t}");
            got
        })
        .collect();
    assert_eq!(pnls.len(), e.traders.len().min(100));
    assert!(pnls.windows(2).all(|w| w[0] >= w[1]), "{pnls:?}");
    assert!(
        pnls.iter().any(|p| *p > 0) && pnls.iter().any(|p| *p < 0),
        "gains and losses: {pnls:?}"
    );
    let (top_trader, tr) = top_trader(base).await;
    let mut costs_checked = 0;
    for h in tr["holdings"].as_array().unwrap() {
        let key = (
            h["subject"].as_str().unwrap().to_string(),
            top_trader.clone(),
        );
        assert_eq!(
            h["costBasis"]["wei"].as_str().unwrap(),
            avg.cost[&key].to_string(),
            "{kind:?}: {h}"
        );
        costs_checked += 1;
    }
    assert!(costs_checked > 0, "the top trader holds keys");
}

/// The top trader's holdings through their own endpoint, two a page: the same as on its page.
async fn trader_holdings_pages(kind: Db, m: &Market) {
    let base = m.base(kind);
    let (top_trader, tr) = top_trader(base).await;
    let (mut paged, mut cursor) = (Vec::new(), String::new());
    loop {
        let (status, page) = get(&format!(
            "{base}/v1/traders/{top_trader}/holdings?limit=2{cursor}"
        ))
        .await;
        assert_eq!(status, 200, "{page}");
        paged.extend(page["holdings"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(&paged, tr["holdings"].as_array().unwrap(), "{kind:?}");
    assert!(tr["holdingsNextCursor"].is_null());
    assert!(paged.len() > 2, "several pages: {paged:?}");
}

/// Current prices equal the contract's own quotes; the ranking by price follows them.
async fn prices_equal_the_contract_quotes(kind: Db, m: &Market) {
    let base = m.base(kind);
    let provider = m.provider();
    let market = KeyMarket::new(m.address, &provider);
    let (status, by_price) = get(&format!("{base}/v1/subjects/top?by=price&limit=100")).await;
    assert_eq!(status, 200, "{by_price}");
    let (mut last, mut priced, mut steep) = (U256::MAX, 0, 0);
    for sj in by_price["subjects"].as_array().unwrap() {
        let addr = sj["subject"].as_str().unwrap().parse().unwrap();
        if sj["curve"] == 0 {
            assert!(sj["buyPrice"].is_null(), "{sj}");
            continue;
        }
        steep += i32::from(sj["curve"] == 10);
        let buy = market
            .getBuyPrice(addr, U256::from(1))
            .call()
            .await
            .unwrap();
        assert_eq!(sj["buyPrice"]["wei"], buy.to_string(), "{kind:?}: {sj}");
        if sj["supply"].as_i64().unwrap() > 1 {
            let sell = market
                .getSellPrice(addr, U256::from(1))
                .call()
                .await
                .unwrap();
            assert_eq!(sj["sellPrice"]["wei"], sell.to_string(), "{kind:?}: {sj}");
        } else {
            assert!(sj["sellPrice"].is_null(), "{sj}");
        }
        assert!(buy <= last, "by price: {sj}");
        last = buy;
        priced += 1;
    }
    assert!(priced > 5 && steep > 0, "{priced} priced, {steep} steep");
}

/// A subject's daily series, a day a page: its days add up to its totals.
async fn subject_daily_pages(kind: Db, m: &Market) {
    let base = m.base(kind);
    let (top_subject, one) = top_subject(base).await;
    let (mut n, mut earned, mut cursor, mut pages) = (0, U256::ZERO, String::new(), 0);
    loop {
        let (status, page) = get(&format!(
            "{base}/v1/subjects/{top_subject}/daily?limit=1{cursor}"
        ))
        .await;
        assert_eq!(status, 200, "{page}");
        for d in page["days"].as_array().unwrap() {
            n += d["trades"].as_i64().unwrap();
            earned += d["feesEarned"]["wei"]
                .as_str()
                .unwrap()
                .parse::<U256>()
                .unwrap();
            pages += 1;
        }
        match page["nextCursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    assert!(pages > 1, "several days");
    assert_eq!(n, one["subject"]["trades"].as_i64().unwrap(), "{kind:?}");
    assert_eq!(
        earned.to_string(),
        one["subject"]["feesEarned"]["wei"].as_str().unwrap()
    );
}

/// Prometheus metrics: the latency of an overview request made here first, and the indexer's
/// position.
async fn metrics(kind: Db, m: &Market) {
    let base = m.base(kind);
    let o = ok(&format!("{base}/v1/overview")).await;
    let text = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains(
            r#"keymarket_http_request_duration_seconds_count{route="/v1/overview",status="200"}"#
        ),
        "{text}"
    );
    let indexed = o["trades"].as_i64().unwrap();
    assert!(
        text.contains(&format!(
            "keymarket_indexed_trades{{market=\"1\"}} {indexed}"
        )),
        "{text}"
    );
    assert!(
        text.contains("keymarket_lag_blocks{market=\"1\"} 0"),
        "{text}"
    );
}

/// Bad requests: api/src/lib.rs's in-process router test (a 4xx with a JSON body naming the
/// problem for each); one here through the real server, as a smoke test.
async fn a_bad_request_is_a_400(kind: Db, m: &Market) {
    let (got, body) = get(&format!("{}/v1/subjects/0x1234", m.base(kind))).await;
    assert_eq!(got, 400, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .contains("malformed address")
    );
}

/// EIP-55, the top subject's address in each form: checksummed, lowercase and uppercase are the
/// same subject; one letter's case flipped, or one digit changed under the checksum, is a 400
/// naming the checksummed form.
async fn eip55_addresses(kind: Db, m: &Market) {
    let base = m.base(kind);
    let (top_subject, one) = top_subject(base).await;
    let address: Address = top_subject.parse().unwrap();
    let checksummed = address.to_checksum(None);
    let hex = &checksummed[2..];
    let flip = hex.find(|c: char| c.is_ascii_alphabetic()).unwrap();
    let mut flipped: Vec<char> = hex.chars().collect();
    flipped[flip] = if flipped[flip].is_ascii_uppercase() {
        flipped[flip].to_ascii_lowercase()
    } else {
        flipped[flip].to_ascii_uppercase()
    };
    let flipped = format!("0x{}", flipped.into_iter().collect::<String>());
    let digit = hex.find(|c: char| c.is_ascii_digit()).unwrap();
    let mut changed: Vec<char> = hex.chars().collect();
    changed[digit] = if changed[digit] == '9' { '8' } else { '9' };
    let changed = format!("0x{}", changed.into_iter().collect::<String>());
    let changed_fix = changed
        .to_ascii_lowercase()
        .parse::<Address>()
        .unwrap()
        .to_checksum(None);
    for (input, fix) in [
        (checksummed.clone(), None),
        (top_subject.to_ascii_lowercase(), None),
        (format!("0x{}", hex.to_ascii_uppercase()), None),
        (flipped, Some(checksummed.clone())),
        (changed, Some(changed_fix)),
    ] {
        let (got, body) = get(&format!("{base}/v1/subjects/{input}")).await;
        let (got_trades, trades_body) =
            get(&format!("{base}/v1/trades?subject={input}&limit=1")).await;
        match fix {
            None => {
                assert_eq!(got, 200, "{input}: {body}");
                assert_eq!(body["subject"]["volume"], one["subject"]["volume"]);
                assert_eq!(got_trades, 200, "{input}: {trades_body}");
            }
            Some(fix) => {
                let message = format!(
                    "address {input} has a wrong EIP-55 checksum (a mistyped character?); \
                     the checksummed form of these digits is {fix}, but check the address \
                     itself before using it"
                );
                for (got, body) in [(got, body), (got_trades, trades_body)] {
                    assert_eq!(got, 400, "{input}: {body}");
                    assert_eq!(body["error"]["message"], message.as_str(), "{body}");
                }
            }
        }
    }
}

/// /healthz: the market indexed to the head a moment ago.
async fn healthz(kind: Db, m: &Market) {
    let (status, health) = get(&format!("{}/healthz", m.base(kind))).await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["markets"][0]["state"], "following", "{health}");
    assert_eq!(health["markets"][0]["lagBlocks"], 0, "{health}");
}
