//! Subjects: the leaderboard, one subject, its holders and its daily series.

use crate::{error::*, extract::*, routes::market::series_page, snapshot::*, state::*, types::*};
use axum::{Json, extract::State, response::Response};
use keymarket_store::{DayRange, HoldingRow, HoldingsOf, SubjectOrder, SubjectRow};
use rust_decimal::Decimal;
use utoipa_axum::{router::OpenApiRouter, routes};

/// The price before fees of key number `k` (0-based) on a curve `multiple` × s²/16000.
pub(crate) fn key_price(multiple: i64, k: i64) -> Option<Amount> {
    (multiple > 0 && k >= 0)
        .then(|| {
            i128::from(multiple)
                .checked_mul(i128::from(k).checked_mul(i128::from(k))?)?
                .checked_mul(i128::try_from(keymarket_store::curve::KEY_UNIT).ok()?)
        })
        .flatten()
        .and_then(|wei| Decimal::try_from_i128_with_scale(wei, 0).ok())
        .map(Amount::from_wei)
}

/// Top subjects by volume, fees earned, holders, supply, price or trades.
#[utoipa::path(get, path = "/v1/subjects/top", params(TopSubjectsQuery), responses((status = 200, body = TopSubjects), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn top_subjects(
    State(s): State<AppState>,
    Q(q): Q<TopSubjectsQuery>,
) -> ApiResult<TopSubjects> {
    let id = market_id(&s, q.market).await?;
    let order = match q.by.unwrap_or(SubjectBy::Volume) {
        SubjectBy::Volume => SubjectOrder::Volume,
        SubjectBy::Fees => SubjectOrder::Fees,
        SubjectBy::Holders => SubjectOrder::Holders,
        SubjectBy::Supply => SubjectOrder::Supply,
        SubjectBy::Price => SubjectOrder::Price,
        SubjectBy::Trades => SubjectOrder::Trades,
    };
    let rows = s.store.top_subjects(id, order, limit(q.limit)?).await?;
    Ok(Json(TopSubjects {
        market: id,
        subjects: rows.into_iter().map(subject_summary).collect(),
    }))
}

pub(crate) fn subject_summary(r: SubjectRow) -> SubjectSummary {
    let (supply, curve) = (r.supply, r.curve);
    SubjectSummary {
        subject: r.subject,
        supply,
        holders: r.holders,
        trades: r.trades,
        volume: Amount::of(r.volume),
        fees_earned: Amount::of(r.fees),
        first_trade_time: r.first_time,
        curve,
        buy_price: key_price(curve, supply),
        sell_price: if supply > 1 {
            key_price(curve, supply - 1)
        } else {
            None
        },
    }
}

/// One subject: supply, holders, trades, volume, fees earned.
#[utoipa::path(get, path = "/v1/subjects/{address}", params(("address" = String, Path, description = "0x and 40 hex digits: all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum (a wrong one is a 400 naming the checksummed form)"), MarketQuery), responses((status = 200, body = SubjectOne), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn subject(
    State(s): State<AppState>,
    AddressPath(address): AddressPath,
    Q(q): Q<MarketQuery>,
) -> ApiResult<SubjectOne> {
    let id = market_id(&s, q.market).await?;
    let row = s.store.subject(id, address).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "subject {} has no trades in market {id}",
            lower(address)
        ))
    })?;
    Ok(Json(SubjectOne {
        market: id,
        subject: subject_summary(row),
    }))
}

/// A subject's holders, largest balance first (ties by address); keyset cursor.
#[utoipa::path(get, path = "/v1/subjects/{address}/holders", params(("address" = String, Path, description = "0x and 40 hex digits: all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum (a wrong one is a 400 naming the checksummed form)"), PageQuery), responses((status = 200, body = Holders), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn holders(
    State(s): State<AppState>,
    AddressPath(address): AddressPath,
    Q(q): Q<PageQuery>,
) -> ApiResult<Holders> {
    let id = market_id(&s, q.market).await?;
    let (rows, next) = holdings_page(&s, id, HoldingsOf::Subject(address), &q).await?;
    let holders = rows
        .into_iter()
        .map(|r| Holder {
            trader: r.party,
            balance: r.balance,
        })
        .collect();
    Ok(Json(Holders {
        market: id,
        subject: lower(address),
        holders,
        next_cursor: next,
    }))
}

/// A page of holdings rows of one subject's (`of` = "subject") or one trader's (`of` =
/// "trader") keys, largest balance first, ties by the other address; keyset cursor
/// `balance_address`. Columns: the other address, balance, cost basis (gwei, rem). Both orders
/// read an index of exactly that order (holdings_by_balance, holdings_by_trader).
pub(crate) async fn holdings_page(
    s: &AppState,
    id: i64,
    of: HoldingsOf,
    q: &PageQuery,
) -> Result<(Vec<HoldingRow>, Option<String>), ApiError> {
    let limit = limit(q.limit)?;
    let after = match &q.cursor {
        Some(c) => {
            let (b, a): (i64, String) = parse_cursor(c)?;
            Some((b, parse_address(&a)?))
        }
        None => None,
    };
    let mut rows = s.store.holdings(id, of, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| {
        let last = rows.last().expect("a full page");
        format!("{}_{}", last.balance, last.party)
    });
    Ok((rows, next))
}

pub(crate) fn holding(r: HoldingRow) -> Holding {
    Holding {
        subject: r.party,
        balance: r.balance,
        cost_basis: Amount::of(r.cost),
    }
}

/// One subject's daily series (UTC), oldest first, a page of at most a year (cursor). Served
/// from a snapshot at most 1 s old.
#[utoipa::path(get, path = "/v1/subjects/{address}/daily", params(("address" = String, Path, description = "0x and 40 hex digits: all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum (a wrong one is a 400 naming the checksummed form)"), SeriesQuery), responses((status = 200, body = SubjectDaily), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn subject_daily(
    State(s): State<AppState>,
    AddressPath(address): AddressPath,
    Q(q): Q<SeriesQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let (from, to, limit) = q.page()?;
    let key = format!("subject daily {id} {} {from} {to} {limit}", lower(address));
    snapshot(&s, key, || async {
        let rows = s
            .store
            .subject_daily(id, address, DayRange { from, to }, limit + 1)
            .await?;
        if rows.is_empty() && !s.store.has_subject(id, address).await? {
            return Err(ApiError::NotFound(format!(
                "subject {} has no trades in market {id}",
                lower(address)
            )));
        }
        let (rows, next_cursor) = series_page(rows, limit, |r| r.day);
        let days = rows
            .into_iter()
            .map(|r| SubjectDay {
                date: format_date(r.day),
                trades: r.trades,
                buys: r.buys,
                sells: r.sells,
                buy_volume: Amount::of(r.buy_volume),
                sell_volume: Amount::of(r.sell_volume),
                fees_earned: Amount::of(r.fees),
            })
            .collect();
        to_json(&SubjectDaily {
            market: id,
            subject: lower(address),
            days,
            next_cursor,
        })
    })
    .await
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(top_subjects))
        .routes(routes!(subject))
        .routes(routes!(holders))
        .routes(routes!(subject_daily))
}
