//! Traders: the leaderboard, one trader and their holdings.

use crate::{error::*, extract::*, routes::subjects::*, state::*, types::*};
use axum::{Json, extract::State};
use keymarket_store::{HoldingsOf, TraderOrder, TraderRow};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Top traders by volume, fees paid, trades or realised PnL.
#[utoipa::path(get, path = "/v1/traders/top", params(TopTradersQuery), responses((status = 200, body = TopTraders), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn top_traders(
    State(s): State<AppState>,
    Q(q): Q<TopTradersQuery>,
) -> ApiResult<TopTraders> {
    let id = market_id(&s, q.market).await?;
    let order = match q.by.unwrap_or(TraderBy::Volume) {
        TraderBy::Volume => TraderOrder::Volume,
        TraderBy::Fees => TraderOrder::Fees,
        TraderBy::Trades => TraderOrder::Trades,
        TraderBy::Pnl => TraderOrder::Pnl,
    };
    let rows = s.store.top_traders(id, order, limit(q.limit)?).await?;
    Ok(Json(TopTraders {
        market: id,
        traders: rows.into_iter().map(trader_summary).collect(),
    }))
}

/// A trader's holdings with their cost basis, largest balance first (ties by subject); keyset
/// cursor.
#[utoipa::path(get, path = "/v1/traders/{address}/holdings", params(("address" = String, Path, description = "0x and 40 hex digits: all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum (a wrong one is a 400 naming the checksummed form)"), PageQuery), responses((status = 200, body = TraderHoldings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn trader_holdings(
    State(s): State<AppState>,
    AddressPath(address): AddressPath,
    Q(q): Q<PageQuery>,
) -> ApiResult<TraderHoldings> {
    let id = market_id(&s, q.market).await?;
    let (rows, next) = holdings_page(&s, id, HoldingsOf::Trader(address), &q).await?;
    if rows.is_empty() && q.cursor.is_none() && !s.store.has_trader(id, address).await? {
        return Err(ApiError::NotFound(format!(
            "trader {} has no trades in market {id}",
            lower(address)
        )));
    }
    Ok(Json(TraderHoldings {
        market: id,
        trader: lower(address),
        holdings: rows.into_iter().map(holding).collect(),
        next_cursor: next,
    }))
}

/// One trader: totals and current holdings.
#[utoipa::path(get, path = "/v1/traders/{address}", params(("address" = String, Path, description = "0x and 40 hex digits: all lowercase, all uppercase, or mixed case with a valid EIP-55 checksum (a wrong one is a 400 naming the checksummed form)"), MarketQuery), responses((status = 200, body = TraderOne), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn trader(
    State(s): State<AppState>,
    AddressPath(address): AddressPath,
    Q(q): Q<MarketQuery>,
) -> ApiResult<TraderOne> {
    let id = market_id(&s, q.market).await?;
    let row = s.store.trader(id, address).await?.ok_or_else(|| {
        ApiError::NotFound(format!(
            "trader {} has no trades in market {id}",
            lower(address)
        ))
    })?;
    let first_page = PageQuery {
        market: q.market,
        limit: Some(MAX_LIMIT),
        cursor: None,
    };
    let (holdings, next) = holdings_page(&s, id, HoldingsOf::Trader(address), &first_page).await?;
    Ok(Json(TraderOne {
        market: id,
        trader: trader_summary(row),
        holdings: holdings.into_iter().map(holding).collect(),
        holdings_next_cursor: next,
    }))
}

/// The columns [`trader_summary`] reads.
pub(crate) fn trader_summary(r: TraderRow) -> TraderSummary {
    TraderSummary {
        trader: r.trader,
        trades: r.trades,
        volume: Amount::of(r.volume),
        fees_paid: Amount::of(r.fees),
        first_trade_time: r.first_time,
        realised_pnl: Amount::of(r.pnl),
    }
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(top_traders))
        .routes(routes!(trader))
        .routes(routes!(trader_holdings))
}
