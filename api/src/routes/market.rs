//! Market-wide routes: health, markets, the overview, the daily series, and `/metrics`.

use crate::{error::*, extract::*, snapshot::*, state::*, types::*};
use axum::{
    Json,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use keymarket_store::DayRange;
use utoipa_axum::{router::OpenApiRouter, routes};

/// Prometheus metrics: request latencies, and per market the indexed trades, block, head and lag.
pub(crate) async fn metrics_text(State(s): State<AppState>) -> Result<Response, ApiError> {
    let trades: std::collections::HashMap<i64, i64> =
        s.store.trade_counts().await?.into_iter().collect();
    for m in s.store.markets().await? {
        let labels = crate::metrics::MarketLabels { market: m.id };
        let indexed = m.next_block - 1;
        let head = m.head_block.max(indexed);
        s.metrics.indexed_block.get_or_create(&labels).set(indexed);
        s.metrics.head_block.get_or_create(&labels).set(head);
        s.metrics
            .lag_blocks
            .get_or_create(&labels)
            .set(head - indexed);
        s.metrics
            .trades
            .get_or_create(&labels)
            .set(trades.get(&m.id).copied().unwrap_or(0));
    }
    s.metrics.owner.clear();
    for o in s.store.owners().await? {
        let labels = crate::metrics::MarketLabels {
            market: o.market_id,
        };
        s.metrics.lease_epoch.get_or_create(&labels).set(o.epoch);
        if o.expires_in_ms > 0 {
            let labels = crate::metrics::OwnerLabels {
                market: o.market_id,
                owner: o.owner,
            };
            s.metrics.owner.get_or_create(&labels).set(1);
        }
    }
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.encode(),
    )
        .into_response())
}

/// Health and, per market, the indexer's state and lag. Always HTTP 200 while the service
/// answers; `status` is `empty` when no market is indexed, else `ok`. Each market's `state` is
/// derived from its row in the database: `starting` until the indexer has committed a first
/// batch (it has never recorded the head); `stopped` when it has not recorded the head for more
/// than 300 s (it does at every batch, and every second while following); `backfilling` when
/// the indexed block is more than 256 blocks behind the head it last saw; `verifying`
/// when at the head but a long backfill has not yet proved each trade stored once; `following`
/// otherwise (`standby` belongs to the vocabulary but is not derived yet). `unverifiedFromBlock`
/// is set when some stored trades break the curve although the chain says so. `owner` names the
/// indexer process holding the market's lease (PostgreSQL; null on SQLite, whose file one
/// process indexes), `live` false once its lease has run out (nobody indexes it until a standby
/// takes over). `aggregatesPendingFromBlock` is set during a long backfill: the trades from that
/// block on are stored, the aggregates built from them when the indexer reaches the head.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 429, body = ErrorBody)))]
pub(crate) async fn healthz(State(s): State<AppState>) -> ApiResult<Health> {
    let proved = s.store.uniqueness_proved().await?;
    let mut owners: std::collections::HashMap<i64, keymarket_store::OwnerRow> = s
        .store
        .owners()
        .await?
        .into_iter()
        .map(|o| (o.market_id, o))
        .collect();
    let mut markets = Vec::new();
    for m in s.store.markets().await? {
        let owner = owners.remove(&m.id).map(|o| MarketOwner {
            live: o.expires_in_ms > 0,
            name: o.owner,
            epoch: o.epoch,
            lease_expires_in_ms: o.expires_in_ms,
        });
        let unverified_from_block = s.store.unverified(m.id).await?.first().map(|u| u.block);
        let (indexed, head, seen_ago, state) = position(&m, proved);
        markets.push(HealthMarket {
            id: m.id,
            chain_id: m.chain_id,
            address: m.address,
            state,
            indexed_block: indexed,
            head_block: head,
            lag_blocks: head - indexed,
            head_seen_seconds_ago: seen_ago,
            unverified_from_block,
            stall_reason: m.stall_reason.clone(),
            aggregates_pending_from_block: m.aggregates_from,
            owner,
        });
    }
    let status = if markets.is_empty() {
        HealthStatus::Empty
    } else {
        HealthStatus::Ok
    };
    Ok(Json(Health { status, markets }))
}

/// A market's (indexed block, head, seconds since the head was seen, state).
fn position(
    m: &keymarket_store::MarketRow,
    uniqueness_proved: bool,
) -> (i64, i64, Option<i64>, IndexerState) {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let indexed = m.next_block - 1;
    let head = m.head_block.max(indexed);
    let seen_ago = (m.head_seen_at > 0).then(|| (now - m.head_seen_at).max(0));
    (
        indexed,
        head,
        seen_ago,
        IndexerState::derive(head - indexed, seen_ago, uniqueness_proved),
    )
}

/// The indexed markets.
#[utoipa::path(get, path = "/v1/markets", responses((status = 200, body = Markets), (status = 429, body = ErrorBody)))]
pub(crate) async fn markets(State(s): State<AppState>) -> ApiResult<Markets> {
    let mut markets = Vec::new();
    let proved = s.store.uniqueness_proved().await?;
    for m in s.store.markets().await? {
        let f = s.store.fee_settings(m.id).await?;
        let (indexed, head, _, state) = position(&m, proved);
        // A scheduled increase due by the newest indexed block is the fee in force.
        let due = |p: Option<(String, i64)>| {
            p.filter(|(_, at)| *at <= m.indexed_time)
                .map(|(percent, _)| percent)
        };
        let protocol = due(f.pending_protocol_fee.clone()).or(f.protocol_fee_percent);
        let subject = due(f.pending_subject_fee.clone()).or(f.subject_fee_percent);
        let pending = [
            ("protocol", f.pending_protocol_fee.clone()),
            ("subject", f.pending_subject_fee.clone()),
        ]
        .map(|(fee, p)| (fee, p.filter(|(_, at)| *at > m.indexed_time)));
        markets.push(MarketInfo {
            id: m.id,
            chain_id: m.chain_id,
            address: m.address,
            start_block: m.start_block,
            indexed_block: indexed,
            state,
            lag_blocks: head - indexed,
            unverified: s
                .store
                .unverified(m.id)
                .await?
                .into_iter()
                .map(|u| UnverifiedSubject {
                    subject: lower(u.subject),
                    from_block: u.block,
                    reason: u.reason,
                })
                .collect(),
            fees: FeeInfo {
                protocol_fee: protocol.as_deref().map(percent_shown),
                subject_fee: subject.as_deref().map(percent_shown),
                referral_share: f.referral_share_bps.as_deref().map(bps_shown),
                protocol_fee_percent: protocol,
                subject_fee_percent: subject,
                referral_share_bps: f.referral_share_bps,
                as_of: m.indexed_time,
                fee_destination: f.fee_destination,
                pending_increases: pending
                    .into_iter()
                    .filter_map(|(fee, p)| {
                        p.map(|(percent, effective_at)| PendingIncrease {
                            fee: fee.into(),
                            shown: percent_shown(&percent),
                            percent,
                            effective_at,
                        })
                    })
                    .collect(),
            },
        });
    }
    Ok(Json(Markets { markets }))
}

/// A fee in the contract's unit (1e18 = 100%) in words: `"5%"`, `"2.5%"`.
fn percent_shown(raw: &str) -> String {
    scaled(raw, 16)
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(markets))
        .routes(routes!(overview))
        .routes(routes!(daily))
        .routes(routes!(concentration))
        .routes(routes!(top_referrers))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fees_in_words() {
        assert_eq!(super::percent_shown("50000000000000000"), "5%");
        assert_eq!(super::percent_shown("25000000000000000"), "2.5%");
        assert_eq!(super::percent_shown("0"), "0%");
        assert_eq!(super::bps_shown("5000"), "50%");
        assert_eq!(super::percent_shown("x"), "x");
    }
}

/// Basis points in words: `"50%"`.
fn bps_shown(raw: &str) -> String {
    scaled(raw, 2)
}

/// `raw / 10^places`, as a percent without trailing zeros (the raw text if it is not a number).
fn scaled(raw: &str, places: u32) -> String {
    match raw.parse::<rust_decimal::Decimal>() {
        Ok(d) => match d.checked_div(rust_decimal::Decimal::from(10u64.pow(places))) {
            Some(p) => format!("{}%", p.normalize()),
            None => raw.to_owned(),
        },
        Err(_) => raw.to_owned(),
    }
}

/// Referrers with the largest referral payouts.
#[utoipa::path(get, path = "/v1/referrers/top", params(LimitQuery), responses((status = 200, body = TopReferrers), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn top_referrers(
    State(s): State<AppState>,
    Q(q): Q<LimitQuery>,
) -> ApiResult<TopReferrers> {
    let id = market_id(&s, q.market).await?;
    let limit = limit(q.limit)?;
    let referrers = s
        .store
        .top_referrers(id, limit)
        .await?
        .into_iter()
        .map(|r| Referrer {
            address: r.referrer,
            referrals: r.referrals,
            amount: Amount::of(r.amount),
            first_time: r.first_time,
        })
        .collect();
    Ok(Json(TopReferrers {
        market: id,
        referrers,
    }))
}

/// Protocol revenue, subject revenue, volume, trades, traders, subjects and TVL: all time, over
/// `from`/`to`, or over the last N days of data (`window`, e.g. `7d`, `30d`: the N days ending
/// at the last UTC day with trades). A window's overview is served from a snapshot kept like
/// the other aggregations over many rows (fresh ≥ 1 s and ≥ 20 times its build time).
#[utoipa::path(get, path = "/v1/overview", params(OverviewQuery), responses((status = 200, body = Overview), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody, description = "two heavy views are being built for other requests (at most two at once; a request waits up to 10 s for its turn): retry after `Retry-After` seconds")))]
pub(crate) async fn overview(
    State(s): State<AppState>,
    Q(q): Q<OverviewQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    if let Some(w) = &q.window {
        let days = parse_window(w)?;
        if q.from.is_some() || q.to.is_some() {
            return Err(ApiError::BadRequest(
                "`window` replaces `from` and `to`: pass one or the other".into(),
            ));
        }
        let key = format!("overview {id} last {days}");
        return snapshot_with(&s, key, HEAVY, || async {
            let window = s
                .store
                .day_span(id)
                .await?
                .map(|span| (span.to - days + 1, span.to));
            build_overview(&s, id, window, (true, true)).await
        })
        .await;
    }
    let shown = (q.from.is_some(), q.to.is_some());
    let Some(asked) = (q.from.is_some() || q.to.is_some())
        .then(|| day_range(q.from.as_deref(), q.to.as_deref()))
        .transpose()?
    else {
        let key = format!("overview {id} None false false");
        return snapshot_with(&s, key, LIVE, || build_overview(&s, id, None, shown)).await;
    };
    // A window is keyed by the days with trades it covers (and reported so).
    let trading = trading_window(&s, id, asked).await?;
    let window = trading.map_or(asked, |w| (w.from, w.to));
    let key = trading.map(|_| format!("overview {id} {window:?} {} {}", shown.0, shown.1));
    snapshot_if(&s, key, HEAVY, || {
        build_overview(&s, id, Some(window), shown)
    })
    .await
}

/// The overview of `window` (all time if `None`); `shown`: whether its first and last days are
/// reported.
pub(crate) async fn build_overview(
    s: &AppState,
    id: i64,
    window: Option<(i64, i64)>,
    shown: (bool, bool),
) -> Result<axum::body::Bytes, ApiError> {
    let days = window.map(|(from, to)| DayRange { from, to });
    let t = s.store.totals(id, days).await?;
    let all = match window {
        None => t,
        Some(_) => s.store.totals(id, None).await?,
    };
    let (buy, sell, p, sj, referrals) = (
        t.buy_volume.to_decimal_wei(),
        t.sell_volume.to_decimal_wei(),
        t.protocol_fees.to_decimal_wei(),
        t.subject_fees.to_decimal_wei(),
        t.referral_payouts.to_decimal_wei(),
    );
    let tvl = all.buy_volume.to_decimal_wei() - all.sell_volume.to_decimal_wei();
    let o = Overview {
        market: id,
        from: window.map(|w| format_date(w.0.max(0))).filter(|_| shown.0),
        to: window.map(|w| format_date(w.1)).filter(|_| shown.1),
        tvl: Amount::from_wei(tvl),
        protocol_revenue: Amount::from_wei(p - referrals),
        gross_protocol_fees: Amount::from_wei(p),
        referral_payouts: Amount::from_wei(referrals),
        subject_revenue: Amount::from_wei(sj),
        total_fees: Amount::from_wei(p + sj),
        buy_volume: Amount::from_wei(buy),
        sell_volume: Amount::from_wei(sell),
        volume: Amount::from_wei(buy + sell),
        net_volume: Amount::from_wei(buy - sell),
        trades: t.trades,
        buys: t.buys,
        sells: t.sells,
        traders: t.traders,
        subjects: t.subjects,
    };
    to_json(&o)
}

/// A series page from rows fetched with `LIMIT limit + 1`: the page's rows, and the cursor —
/// the day after its last row — only when another row follows.
pub(crate) fn series_page<T>(
    mut rows: Vec<T>,
    limit: i64,
    day: impl Fn(&T) -> i64,
) -> (Vec<T>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows
        .last()
        .filter(|_| more)
        .map(|r| format_date(day(r) + 1));
    (rows, next)
}

/// The daily (UTC) series for a date range, oldest first, a page of at most a year (cursor).
/// Served from a snapshot at most 1 s old.
#[utoipa::path(get, path = "/v1/daily", params(SeriesQuery), responses((status = 200, body = Daily), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn daily(
    State(s): State<AppState>,
    Q(q): Q<SeriesQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let (from, to, limit) = q.page()?;
    let key = format!("daily {id} {from} {to} {limit}");
    snapshot(&s, key, || async {
        let rows = s.store.daily(id, DayRange { from, to }, limit + 1).await?;
        let (rows, next_cursor) = series_page(rows, limit, |r| r.day);
        let days: Vec<_> = rows
            .into_iter()
            .map(|r| Day {
                date: format_date(r.day),
                trades: r.trades,
                buys: r.buys,
                sells: r.sells,
                buy_volume: Amount::of(r.buy_volume),
                sell_volume: Amount::of(r.sell_volume),
                protocol_revenue: Amount::from_wei(
                    r.protocol_fees.to_decimal_wei() - r.referral_payouts.to_decimal_wei(),
                ),
                gross_protocol_fees: Amount::of(r.protocol_fees),
                referral_payouts: Amount::of(r.referral_payouts),
                subject_revenue: Amount::of(r.subject_fees),
                active_traders: r.active_traders,
                new_traders: r.new_traders,
                returning_traders: r.active_traders - r.new_traders,
                new_subjects: r.new_subjects,
            })
            .collect();
        to_json(&Daily {
            market: id,
            days,
            next_cursor,
        })
    })
    .await
}

/// Decimals of the concentration shares (truncated).
const SHARE_PLACES: u32 = 6;

/// Market concentration per UTC day and over the window: the top-10 subjects' share of the
/// volume, the HHI of the subjects' volume shares, and the subjects traded. It reads every
/// per-subject daily aggregate of the window, so it is served from a snapshot kept like the
/// other heavy views (fresh ≥ 1 s and ≥ 20 times its build time).
#[utoipa::path(get, path = "/v1/concentration", params(DailyQuery), responses((status = 200, body = ConcentrationSeries), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody, description = "two heavy views are being built for other requests (at most two at once; a request waits up to 10 s for its turn): retry after `Retry-After` seconds")))]
pub(crate) async fn concentration(
    State(s): State<AppState>,
    Q(q): Q<DailyQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let (from, to) = day_range(q.from.as_deref(), q.to.as_deref())?;
    // Keyed by the days with trades the window covers (echoed back as `from` and `to`).
    let trading = trading_window(&s, id, (from, to)).await?;
    let (from, to) = trading.map_or((from, to), |w| (w.from, w.to));
    let key = trading.map(|_| format!("concentration {id} {from} {to}"));
    snapshot_if(&s, key, HEAVY, || async {
        let r = s.store.concentration(id, DayRange { from, to }).await?;
        let days = r
            .days
            .into_iter()
            .map(|d| ConcentrationDay {
                date: format_date(d.day),
                subjects: d.concentration.subjects,
                volume: Amount::of(d.concentration.volume),
                top10_share: d.concentration.top_share(SHARE_PLACES),
                hhi: d.concentration.hhi(SHARE_PLACES),
            })
            .collect();
        let w = &r.window;
        to_json(&ConcentrationSeries {
            market: id,
            from: q.from.as_ref().map(|_| format_date(from)),
            to: q.to.as_ref().map(|_| format_date(to)),
            days,
            window: ConcentrationWindow {
                subjects: w.subjects,
                volume: Amount::of(w.volume),
                top10_share: w.top_share(SHARE_PLACES),
                hhi: w.hhi(SHARE_PLACES),
            },
        })
    })
    .await
}
