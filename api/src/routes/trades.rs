//! The raw trades, filtered and paged by cursor.

use crate::{error::*, extract::*, state::*, types::*};
use axum::{Json, extract::State};
use sqlx::Row;

/// Trades, newest first, with filters; paginated by a keyset cursor.
#[utoipa::path(get, path = "/v1/trades", params(TradesQuery), responses((status = 200, body = Trades), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn trades(State(s): State<AppState>, Q(q): Q<TradesQuery>) -> ApiResult<Trades> {
    let id = market_id(&s, q.market).await?;
    let limit = limit(q.limit)?;
    let mut sql = String::from(
        "SELECT block_number, log_index, tx_hash, block_time, trader, subject, is_buy, share_amount, \
         eth_gwei, eth_rem, protocol_gwei, protocol_rem, subject_gwei, subject_rem, supply \
         FROM trades WHERE market_id = $1",
    );
    enum Arg {
        I(i64),
        S(String),
    }
    let mut args = vec![Arg::I(id)];
    let mut push = |sql: &mut String, cond: &str, arg: Arg| {
        args.push(arg);
        sql.push_str(&cond.replace('?', &format!("${}", args.len())));
    };
    if let Some(a) = &q.subject {
        push(&mut sql, " AND subject = ?", Arg::S(parse_address(a)?));
    }
    if let Some(a) = &q.trader {
        push(&mut sql, " AND trader = ?", Arg::S(parse_address(a)?));
    }
    match q.side.as_deref() {
        None => {}
        Some("buy") => sql.push_str(" AND is_buy = 1"),
        Some("sell") => sql.push_str(" AND is_buy = 0"),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "unknown side {other:?}: use buy or sell"
            )));
        }
    }
    for (lo, hi, what) in [
        (q.from_block, q.to_block, "block"),
        (q.from_time, q.to_time, "time"),
    ] {
        if let (Some(lo), Some(hi)) = (lo, hi)
            && lo > hi
        {
            return Err(ApiError::BadRequest(format!(
                "inverted range: from{what} is after to{what}",
                what = if what == "block" { "Block" } else { "Time" }
            )));
        }
    }
    if let Some(v) = q.from_block {
        push(&mut sql, " AND block_number >= ?", Arg::I(v));
    }
    if let Some(v) = q.to_block {
        push(&mut sql, " AND block_number <= ?", Arg::I(v));
    }
    if let Some(v) = q.from_time {
        push(&mut sql, " AND block_time >= ?", Arg::I(v));
    }
    if let Some(v) = q.to_time {
        push(&mut sql, " AND block_time <= ?", Arg::I(v));
    }
    if let Some(c) = &q.cursor {
        let (block, log): (i64, i64) = parse_cursor(c)?;
        push(&mut sql, " AND (block_number < ?", Arg::I(block));
        push(&mut sql, " OR (block_number = ?", Arg::I(block));
        push(&mut sql, " AND log_index < ?))", Arg::I(log));
    }
    sql.push_str(&format!(
        " ORDER BY block_number DESC, log_index DESC LIMIT {}",
        limit + 1
    ));
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for a in args {
        query = match a {
            Arg::I(v) => query.bind(v),
            Arg::S(v) => query.bind(v),
        };
    }
    let rows = query.fetch_all(s.store.pool()).await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = more.then(|| {
        let last = rows.last().expect("a full page");
        format!("{}_{}", last.get::<i64, _>(0), last.get::<i64, _>(1))
    });
    let trades: Vec<_> = rows
        .iter()
        .map(|r| Trade {
            block: r.get(0),
            log_index: r.get(1),
            tx_hash: r.get(2),
            time: r.get(3),
            trader: r.get(4),
            subject: r.get(5),
            side: if r.get::<i64, _>(6) == 1 {
                "buy"
            } else {
                "sell"
            }
            .into(),
            shares: r.get(7),
            eth_amount: Amount::from_parts(r, 8),
            protocol_fee: Amount::from_parts(r, 10),
            subject_fee: Amount::from_parts(r, 12),
            supply: r.get(14),
        })
        .collect();
    Ok(Json(Trades {
        market: id,
        trades,
        next_cursor: next,
    }))
}
