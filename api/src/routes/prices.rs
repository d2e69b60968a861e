//! Prices and holders over time: the key price index of the top subjects, and one subject's
//! holders per day.

use std::time::Duration;

use crate::{error::*, extract::*, snapshot::*, state::*, types::*};
use axum::{extract::State, response::Response};
use keymarket_store::DayRange;
use rust_decimal::Decimal;
use utoipa_axum::{router::OpenApiRouter, routes};

/// How long a price index snapshot is fresh. A rebuild is one index seek per followed subject
/// and trading day (see the store's `price_index`): on a 1M-trade synthetic SQLite database
/// (31 days) 10–40 ms for the top 10 and 70–130 ms for the top 50 (debug build), so about
/// ten times that over a year of days (12M trades) — too much to redo every second under load,
/// and a daily index barely moves in 30 s.
const PRICE_INDEX_TTL: Freshness = Freshness {
    min: Duration::from_secs(30),
    build_multiple: 20,
    heavy: true,
};
/// How long a subject's holders history is fresh: a rebuild reads all of the subject's trades
/// (~120 ms for the 2,658 trades of the 1M-trade database's top subject, debug build; seconds
/// for a subject with friend.tech's largest trade counts).
const HOLDERS_TTL: Freshness = Freshness {
    min: Duration::from_secs(30),
    build_multiple: 20,
    heavy: true,
};

/// An exact amount of wei (a key price: far below the 7.9 × 10²⁸ wei a `Decimal` holds).
fn amount(wei: u128) -> Result<Amount, ApiError> {
    i128::try_from(wei)
        .ok()
        .and_then(|w| Decimal::try_from_i128_with_scale(w, 0).ok())
        .map(Amount::from_wei)
        .ok_or_else(|| ApiError::Internal(format!("a price of {wei} wei is out of range")))
}

/// The key price index: per UTC day, the median and mean price of the next key of the `top`
/// subjects by all-time volume. Served from a snapshot at most 30 s old.
#[utoipa::path(get, path = "/v1/price-index", params(PriceIndexQuery), responses((status = 200, body = KeyPriceIndex), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody, description = "two heavy views are being built for other requests (at most two at once; a request waits up to 10 s for its turn): retry after `Retry-After` seconds")))]
pub(crate) async fn price_index(
    State(s): State<AppState>,
    Q(q): Q<PriceIndexQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let top = q.top()?;
    let (from, to) = day_range(q.from.as_deref(), q.to.as_deref())?;
    // Keyed by the days with trades the window covers (echoed back as `from` and `to`).
    // A window without trading days still reads the top subjects' whole history: one cached
    // answer for all such windows (its `from`/`to` null), built like the others.
    let trading = trading_window(&s, id, (from, to)).await?;
    let (from, to) = trading.map_or((from, to), |w| (w.from, w.to));
    let key = match trading {
        Some(_) => format!("price index {id} {top} {from} {to}"),
        None => format!("price index {id} {top} no trading day"),
    };
    let q_from = q.from.as_ref().filter(|_| trading.is_some());
    let q_to = q.to.as_ref().filter(|_| trading.is_some());
    snapshot_with(&s, key, PRICE_INDEX_TTL, || async {
        let r = s.store.price_index(id, top, DayRange { from, to }).await?;
        to_json(&KeyPriceIndex {
            market: id,
            top: top as i64,
            from: q_from.map(|_| format_date(from)),
            to: q_to.map(|_| format_date(to)),
            subjects: r
                .subjects
                .into_iter()
                .map(|x| KeyPriceSubject {
                    subject: x.subject,
                    curve: x.curve,
                    volume: Amount::of(x.volume),
                    first_date: x.first_day.map(format_date),
                })
                .collect(),
            days: r
                .days
                .into_iter()
                .map(|d| {
                    Ok(KeyPriceDay {
                        date: format_date(d.day),
                        subjects: d.subjects,
                        median: amount(d.median)?,
                        mean: amount(d.mean)?,
                    })
                })
                .collect::<Result<_, ApiError>>()?,
        })
    })
    .await
}

/// One subject's holders (balance > 0) and supply at the end of each UTC day from its first
/// trade to the market's last day with trades. Served from a snapshot at most 30 s old.
#[utoipa::path(get, path = "/v1/subjects/{address}/holders/daily", params(("address" = String, Path, description = "0x and 40 hex digits: all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum (a wrong one is a 400 naming the checksummed form)"), MarketQuery), responses((status = 200, body = HoldersHistory), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody, description = "two heavy views are being built for other requests (at most two at once; a request waits up to 10 s for its turn): retry after `Retry-After` seconds")))]
pub(crate) async fn holders_daily(
    State(s): State<AppState>,
    AddressPath(address): AddressPath,
    Q(q): Q<MarketQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let key = format!("holders daily {id} {}", lower(address));
    snapshot_with(&s, key, HOLDERS_TTL, || async {
        let days = s.store.holder_history(id, address).await?;
        if days.is_empty() {
            return Err(ApiError::NotFound(format!(
                "subject {} has no trades in market {id}",
                lower(address)
            )));
        }
        to_json(&HoldersHistory {
            market: id,
            subject: lower(address),
            days: days
                .into_iter()
                .map(|d| HoldersHistoryDay {
                    date: format_date(d.day),
                    holders: d.holders,
                    supply: d.supply,
                })
                .collect(),
        })
    })
    .await
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(price_index))
        .routes(routes!(holders_daily))
}
