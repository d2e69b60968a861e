//! The raw trades, filtered and paged by cursor.

use crate::{error::*, extract::*, state::*, types::*};
use axum::{Json, extract::State};
use keymarket_store::{Side, TradeFilter};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Trades, newest first, with filters; paginated by a keyset cursor.
#[utoipa::path(get, path = "/v1/trades", params(TradesQuery), responses((status = 200, body = Trades), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn trades(State(s): State<AppState>, Q(q): Q<TradesQuery>) -> ApiResult<Trades> {
    let id = market_id(&s, q.market).await?;
    let limit = limit(q.limit)?;
    let subject = q.subject.as_deref().map(parse_address).transpose()?;
    let trader = q.trader.as_deref().map(parse_address).transpose()?;
    let side = q.side.map(|side| match side {
        TradeSide::Buy => Side::Buy,
        TradeSide::Sell => Side::Sell,
    });
    for (block, name) in [(q.from_block, "fromBlock"), (q.to_block, "toBlock")] {
        if let Some(b) = block
            && b < 0
        {
            return Err(ApiError::BadRequest(format!(
                "{name} {b} is negative: blocks count from 0"
            )));
        }
    }
    let from_time = q
        .from_time
        .as_deref()
        .map(|t| parse_time(t, "fromTime", false))
        .transpose()?;
    let to_time = q
        .to_time
        .as_deref()
        .map(|t| parse_time(t, "toTime", true))
        .transpose()?;
    for (lo, hi, what) in [
        (q.from_block, q.to_block, "Block"),
        (from_time, to_time, "Time"),
    ] {
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            return Err(ApiError::BadRequest(format!(
                "inverted range: from{what} is after to{what}"
            )));
        }
    }
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let filter = TradeFilter {
        subject,
        trader,
        side,
        from_block: q.from_block,
        to_block: q.to_block,
        from_time,
        to_time,
    };
    let mut rows = s.store.trades(id, &filter, after, limit + 1).await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| {
        let last = rows.last().expect("a full page");
        format!("{}_{}", last.block, last.log_index)
    });
    let trades: Vec<_> = rows
        .into_iter()
        .map(|r| Trade {
            block: r.block,
            log_index: r.log_index,
            tx_hash: r.tx_hash,
            time: r.time,
            trader: r.trader,
            subject: r.subject,
            side: match r.side {
                Side::Buy => "buy",
                Side::Sell => "sell",
            }
            .into(),
            shares: r.shares,
            eth_amount: Amount::of(r.eth_amount),
            protocol_fee: Amount::of(r.protocol_fee),
            subject_fee: Amount::of(r.subject_fee),
            supply: r.supply,
        })
        .collect();
    Ok(Json(Trades {
        market: id,
        trades,
        next_cursor: next,
    }))
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(trades))
}
