//! keymarket's HTTP API: JSON under `/v1` over the indexer's database (SQLite or PostgreSQL),
//! with friend.tech's Dune/Messari metric meanings and every ETH amount exact to the wei (a
//! decimal ETH string with the wei integer alongside).
//!
//! Read-only. It does not index (see `keymarket-indexer`). The dashboard ([`dashboard`]) is a
//! static page over this API, served by the same router.

pub mod dashboard;

use std::str::FromStr;

use axum::{
    Json, Router,
    extract::{FromRequestParts, Path, State, rejection::QueryRejection},
    http::{StatusCode, request::Parts},
    response::{IntoResponse, Response},
    routing::get,
};
use keymarket_indexer::{Store, amount::Wei};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::json;
use sqlx::Row;
use tracing::error;

/// Largest page size of any list.
pub const MAX_LIMIT: u32 = 100;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The indexer's database.
    pub store: Store,
}

/// The API's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/v1/markets", get(markets))
        .route("/v1/overview", get(overview))
        .route("/v1/daily", get(daily))
        .route("/v1/subjects/top", get(top_subjects))
        .route("/v1/traders/top", get(top_traders))
        .route("/v1/subjects/{address}", get(subject))
        .route("/v1/subjects/{address}/holders", get(holders))
        .route("/v1/traders/{address}", get(trader))
        .route("/v1/trades", get(trades))
        .merge(dashboard::routes())
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see /v1/markets, /v1/overview, /v1/daily".into())
        })
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET]),
        )
        .layer(tower_http::compression::CompressionLayer::new())
        .with_state(state)
}

/// An API error: a status and a JSON body naming the problem. Database errors are logged and
/// answered with a generic 500 body; their text never reaches clients.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The request is malformed.
    #[error("{0}")]
    BadRequest(String),
    /// The thing asked for does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Something failed on our side.
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Internal(detail) => {
                error!(target: "api", %detail, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            Json(json!({ "error": { "status": status.as_u16(), "message": self.to_string() } })),
        )
            .into_response()
    }
}

impl From<sqlx::Error> for ApiError {
    fn from(e: sqlx::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

impl From<keymarket_indexer::Error> for ApiError {
    fn from(e: keymarket_indexer::Error) -> Self {
        Self::Internal(e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

/// Query-string extractor whose rejections are JSON 400s (unknown parameters included).
pub struct Q<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Self(q.0)),
            Err(e @ QueryRejection::FailedToDeserializeQueryString(_)) => {
                Err(ApiError::BadRequest(e.body_text()))
            }
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// An exact ETH amount.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Amount {
    /// ETH, as an exact decimal string.
    pub eth: String,
    /// Wei, as an integer string.
    pub wei: String,
}

impl Amount {
    fn from_wei(wei: Decimal) -> Self {
        let mut eth = wei;
        eth.set_scale(eth.scale() + 18).expect("scale within 28");
        Self {
            eth: eth.normalize().to_string(),
            wei: wei.to_string(),
        }
    }

    fn from_parts(row: &sqlx::any::AnyRow, gwei: usize) -> Self {
        Self::from_wei(
            Wei {
                gwei: row.get(gwei),
                rem: row.get(gwei + 1),
            }
            .to_decimal_wei(),
        )
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MarketQuery {
    market: Option<i64>,
}

/// Resolves the `market` parameter: required when the database holds several markets.
async fn market_id(store: &Store, market: Option<i64>) -> Result<i64, ApiError> {
    let ids: Vec<(i64,)> = sqlx::query_as("SELECT id FROM markets ORDER BY id")
        .fetch_all(store.pool())
        .await?;
    match market {
        Some(id) if ids.iter().any(|(i,)| *i == id) => Ok(id),
        Some(id) => Err(ApiError::NotFound(format!(
            "unknown market {id}; see /v1/markets"
        ))),
        None if ids.len() == 1 => Ok(ids[0].0),
        None if ids.is_empty() => Err(ApiError::NotFound(
            "the database holds no market yet".into(),
        )),
        None => Err(ApiError::BadRequest(
            "several markets are indexed: pass ?market=ID (see /v1/markets)".into(),
        )),
    }
}

async fn healthz(State(s): State<AppState>) -> ApiResult<serde_json::Value> {
    let rows = sqlx::query(
        "SELECT id, chain_id, address, next_block, head_block, head_seen_at FROM markets ORDER BY id",
    )
    .fetch_all(s.store.pool())
    .await?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let markets: Vec<_> = rows
        .iter()
        .map(|r| {
            let indexed = r.get::<i64, _>(3) - 1;
            let head = r.get::<i64, _>(4).max(indexed);
            let seen = r.get::<i64, _>(5);
            json!({
                "id": r.get::<i64, _>(0),
                "chainId": r.get::<i64, _>(1),
                "address": r.get::<String, _>(2),
                "indexedBlock": indexed,
                "headBlock": head,
                "lagBlocks": head - indexed,
                "headSeenSecondsAgo": (seen > 0).then(|| (now - seen).max(0)),
            })
        })
        .collect();
    Ok(Json(json!({ "status": "ok", "markets": markets })))
}

async fn markets(State(s): State<AppState>) -> ApiResult<serde_json::Value> {
    let rows = sqlx::query(
        "SELECT id, chain_id, address, start_block, next_block FROM markets ORDER BY id",
    )
    .fetch_all(s.store.pool())
    .await?;
    let markets: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.get::<i64, _>(0),
                "chainId": r.get::<i64, _>(1),
                "address": r.get::<String, _>(2),
                "startBlock": r.get::<i64, _>(3),
                "indexedBlock": r.get::<i64, _>(4) - 1,
            })
        })
        .collect();
    Ok(Json(json!({ "markets": markets })))
}

/// All-time protocol numbers of a market.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Market id.
    pub market: i64,
    /// Σ protocolEthAmount.
    pub protocol_revenue: Amount,
    /// Σ subjectEthAmount.
    pub subject_revenue: Amount,
    /// Protocol plus subject fees.
    pub total_fees: Amount,
    /// Σ ethAmount over buys.
    pub buy_volume: Amount,
    /// Σ ethAmount over sells.
    pub sell_volume: Amount,
    /// Buy plus sell volume.
    pub volume: Amount,
    /// Buy minus sell volume: the ETH held for the curves (TVL).
    pub net_volume: Amount,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Distinct traders.
    pub traders: i64,
    /// Distinct subjects.
    pub subjects: i64,
}

async fn overview(State(s): State<AppState>, Q(q): Q<MarketQuery>) -> ApiResult<Overview> {
    let id = market_id(&s.store, q.market).await?;
    let t = s.store.totals(id).await?;
    let d = |v: &str| Decimal::from_str(v).map_err(|e| ApiError::Internal(e.to_string()));
    let (buy, sell, p, sj) = (
        d(&t.buy_volume)?,
        d(&t.sell_volume)?,
        d(&t.protocol_fees)?,
        d(&t.subject_fees)?,
    );
    Ok(Json(Overview {
        market: id,
        protocol_revenue: Amount::from_wei(p),
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
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DailyQuery {
    market: Option<i64>,
    from: Option<String>,
    to: Option<String>,
}

async fn daily(State(s): State<AppState>, Q(q): Q<DailyQuery>) -> ApiResult<serde_json::Value> {
    let id = market_id(&s.store, q.market).await?;
    let from = q
        .from
        .as_deref()
        .map(parse_date)
        .transpose()?
        .unwrap_or(i64::MIN / 2);
    let to =
        q.to.as_deref()
            .map(parse_date)
            .transpose()?
            .unwrap_or(i64::MAX / 2);
    if from > to {
        return Err(ApiError::BadRequest(
            "inverted range: `from` is after `to`".into(),
        ));
    }
    let rows = sqlx::query(
        "SELECT day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, \
         protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, new_subjects \
         FROM stats_daily WHERE market_id = $1 AND day >= $2 AND day <= $3 ORDER BY day",
    )
    .bind(id)
    .bind(from)
    .bind(to)
    .fetch_all(s.store.pool())
    .await?;
    let days: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "date": format_date(r.get(0)),
                "trades": r.get::<i64, _>(1),
                "buys": r.get::<i64, _>(2),
                "sells": r.get::<i64, _>(3),
                "buyVolume": Amount::from_parts(r, 4),
                "sellVolume": Amount::from_parts(r, 6),
                "protocolRevenue": Amount::from_parts(r, 8),
                "subjectRevenue": Amount::from_parts(r, 10),
                "activeTraders": r.get::<i64, _>(12),
                "newTraders": r.get::<i64, _>(13),
                "newSubjects": r.get::<i64, _>(14),
            })
        })
        .collect();
    Ok(Json(json!({ "market": id, "days": days })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TopQuery {
    market: Option<i64>,
    by: Option<String>,
    limit: Option<u32>,
}

fn limit(l: Option<u32>) -> Result<i64, ApiError> {
    match l.unwrap_or(20) {
        0 => Err(ApiError::BadRequest("limit must be at least 1".into())),
        n if n > MAX_LIMIT => Err(ApiError::BadRequest(format!(
            "limit {n} is over the cap of {MAX_LIMIT}"
        ))),
        n => Ok(i64::from(n)),
    }
}

/// Orders by an exact amount column pair (normalised gwei, then the remainder).
fn by_amount(col: &str) -> String {
    format!("({col}_gwei + {col}_rem / 1000000000) DESC, ({col}_rem % 1000000000) DESC")
}

async fn top_subjects(
    State(s): State<AppState>,
    Q(q): Q<TopQuery>,
) -> ApiResult<serde_json::Value> {
    let id = market_id(&s.store, q.market).await?;
    let order = match q.by.as_deref().unwrap_or("volume") {
        "volume" => by_amount("volume"),
        "fees" => by_amount("fees"),
        "holders" => "holders DESC".into(),
        "supply" => "supply DESC".into(),
        "trades" => "trades DESC".into(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown `by` value {other:?}: use volume, fees, holders, supply or trades"
            )));
        }
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time \
         FROM subjects WHERE market_id = $1 ORDER BY {order}, subject LIMIT $2"
    )))
    .bind(id)
    .bind(limit(q.limit)?)
    .fetch_all(s.store.pool())
    .await?;
    let subjects: Vec<_> = rows.iter().map(subject_json).collect();
    Ok(Json(json!({ "market": id, "subjects": subjects })))
}

fn subject_json(r: &sqlx::any::AnyRow) -> serde_json::Value {
    json!({
        "subject": r.get::<String, _>(0),
        "supply": r.get::<i64, _>(1),
        "holders": r.get::<i64, _>(2),
        "trades": r.get::<i64, _>(3),
        "volume": Amount::from_parts(r, 4),
        "feesEarned": Amount::from_parts(r, 6),
        "firstTradeTime": r.get::<i64, _>(8),
    })
}

async fn top_traders(State(s): State<AppState>, Q(q): Q<TopQuery>) -> ApiResult<serde_json::Value> {
    let id = market_id(&s.store, q.market).await?;
    let order = match q.by.as_deref().unwrap_or("volume") {
        "volume" => by_amount("volume"),
        "fees" => by_amount("fees"),
        "trades" => "trades DESC".into(),
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown `by` value {other:?}: use volume, fees or trades"
            )));
        }
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time \
         FROM traders WHERE market_id = $1 ORDER BY {order}, trader LIMIT $2"
    )))
    .bind(id)
    .bind(limit(q.limit)?)
    .fetch_all(s.store.pool())
    .await?;
    let traders: Vec<_> = rows.iter().map(trader_json).collect();
    Ok(Json(json!({ "market": id, "traders": traders })))
}

async fn subject(
    State(s): State<AppState>,
    Path(address): Path<String>,
    Q(q): Q<MarketQuery>,
) -> ApiResult<serde_json::Value> {
    let address = parse_address(&address)?;
    let id = market_id(&s.store, q.market).await?;
    let row = sqlx::query(
        "SELECT subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time \
         FROM subjects WHERE market_id = $1 AND subject = $2",
    )
    .bind(id)
    .bind(&address)
    .fetch_optional(s.store.pool())
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("subject {address} has no trades in market {id}")))?;
    Ok(Json(json!({ "market": id, "subject": subject_json(&row) })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TradesQuery {
    market: Option<i64>,
    subject: Option<String>,
    trader: Option<String>,
    side: Option<String>,
    from_block: Option<i64>,
    to_block: Option<i64>,
    /// Unix seconds, inclusive.
    from_time: Option<i64>,
    /// Unix seconds, inclusive.
    to_time: Option<i64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A keyset cursor: the sort key of the last row of the previous page, as `a_b` (opaque to
/// clients).
fn parse_cursor<A: FromStr, B: FromStr>(cursor: &str) -> Result<(A, B), ApiError> {
    let bad = || {
        ApiError::BadRequest(format!(
            "malformed cursor {cursor:?}: pass a nextCursor value"
        ))
    };
    let (a, b) = cursor.split_once('_').ok_or_else(bad)?;
    Ok((a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?))
}

/// Recent trades, newest first, with filters; paginated by a keyset cursor.
async fn trades(State(s): State<AppState>, Q(q): Q<TradesQuery>) -> ApiResult<serde_json::Value> {
    let id = market_id(&s.store, q.market).await?;
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
        .map(|r| {
            json!({
                "block": r.get::<i64, _>(0),
                "logIndex": r.get::<i64, _>(1),
                "txHash": r.get::<String, _>(2),
                "time": r.get::<i64, _>(3),
                "trader": r.get::<String, _>(4),
                "subject": r.get::<String, _>(5),
                "side": if r.get::<i64, _>(6) == 1 { "buy" } else { "sell" },
                "shares": r.get::<i64, _>(7),
                "ethAmount": Amount::from_parts(r, 8),
                "protocolFee": Amount::from_parts(r, 10),
                "subjectFee": Amount::from_parts(r, 12),
                "supply": r.get::<i64, _>(14),
            })
        })
        .collect();
    Ok(Json(
        json!({ "market": id, "trades": trades, "nextCursor": next }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    market: Option<i64>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// A subject's holders, largest balance first (ties by address); keyset cursor.
async fn holders(
    State(s): State<AppState>,
    Path(address): Path<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<serde_json::Value> {
    let address = parse_address(&address)?;
    let id = market_id(&s.store, q.market).await?;
    let limit = limit(q.limit)?;
    let (after_balance, after_trader) = match &q.cursor {
        Some(c) => {
            let (b, t): (i64, String) = parse_cursor(c)?;
            (b, parse_address(&t)?)
        }
        None => (i64::MAX, String::new()),
    };
    let rows = sqlx::query(
        "SELECT trader, balance FROM holdings WHERE market_id = $1 AND subject = $2 AND balance > 0 \
         AND (balance < $3 OR (balance = $3 AND trader > $4)) ORDER BY balance DESC, trader LIMIT $5",
    )
    .bind(id)
    .bind(&address)
    .bind(after_balance)
    .bind(&after_trader)
    .bind(limit + 1)
    .fetch_all(s.store.pool())
    .await?;
    let more = rows.len() as i64 > limit;
    let rows = &rows[..rows.len().min(limit as usize)];
    let next = more.then(|| {
        let last = rows.last().expect("a full page");
        format!("{}_{}", last.get::<i64, _>(1), last.get::<String, _>(0))
    });
    let holders: Vec<_> = rows
        .iter()
        .map(|r| json!({ "trader": r.get::<String, _>(0), "balance": r.get::<i64, _>(1) }))
        .collect();
    Ok(Json(
        json!({ "market": id, "subject": address, "holders": holders, "nextCursor": next }),
    ))
}

/// One trader: totals and current holdings.
async fn trader(
    State(s): State<AppState>,
    Path(address): Path<String>,
    Q(q): Q<MarketQuery>,
) -> ApiResult<serde_json::Value> {
    let address = parse_address(&address)?;
    let id = market_id(&s.store, q.market).await?;
    let row = sqlx::query(
        "SELECT trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time \
         FROM traders WHERE market_id = $1 AND trader = $2",
    )
    .bind(id)
    .bind(&address)
    .fetch_optional(s.store.pool())
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("trader {address} has no trades in market {id}")))?;
    let holdings = sqlx::query(
        "SELECT subject, balance FROM holdings WHERE market_id = $1 AND trader = $2 AND balance > 0 \
         ORDER BY balance DESC, subject LIMIT $3",
    )
    .bind(id)
    .bind(&address)
    .bind(i64::from(MAX_LIMIT))
    .fetch_all(s.store.pool())
    .await?;
    Ok(Json(json!({
        "market": id,
        "trader": trader_json(&row),
        "holdings": holdings.iter().map(|r| json!({ "subject": r.get::<String, _>(0), "balance": r.get::<i64, _>(1) })).collect::<Vec<_>>(),
    })))
}

fn trader_json(r: &sqlx::any::AnyRow) -> serde_json::Value {
    json!({
        "trader": r.get::<String, _>(0),
        "trades": r.get::<i64, _>(1),
        "volume": Amount::from_parts(r, 2),
        "feesPaid": Amount::from_parts(r, 4),
        "firstTradeTime": r.get::<i64, _>(6),
    })
}

/// A 0x-prefixed 20-byte hex address, lowercased as stored.
fn parse_address(s: &str) -> Result<String, ApiError> {
    let hex = s.strip_prefix("0x").unwrap_or("");
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(ApiError::BadRequest(format!(
            "malformed address {s:?}: expected 0x and 40 hex digits"
        )));
    }
    Ok(format!("0x{}", hex.to_ascii_lowercase()))
}

/// `YYYY-MM-DD` (UTC) → days since 1970-01-01.
fn parse_date(s: &str) -> Result<i64, ApiError> {
    let bad = || ApiError::BadRequest(format!("malformed date {s:?}: expected YYYY-MM-DD"));
    let mut parts = s.splitn(3, '-');
    let (y, m, d) = (
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
        parts.next().ok_or_else(bad)?,
    );
    let (y, m, d): (i64, i64, i64) = (
        y.parse().map_err(|_| bad())?,
        m.parse().map_err(|_| bad())?,
        d.parse().map_err(|_| bad())?,
    );
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || s.len() != 10 {
        return Err(bad());
    }
    // Days from civil (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    if format_date(days) != s {
        return Err(bad()); // e.g. 2023-02-30
    }
    Ok(days)
}

/// Days since 1970-01-01 → `YYYY-MM-DD`.
fn format_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_round_trip() {
        assert_eq!(parse_date("1970-01-01").unwrap(), 0);
        assert_eq!(parse_date("2023-08-10").unwrap(), 19_579);
        assert_eq!(format_date(19_579), "2023-08-10");
        assert!(parse_date("2023-02-30").is_err());
        assert!(parse_date("2023-13-01").is_err());
        assert!(parse_date("yesterday").is_err());
    }

    #[test]
    fn amounts_are_exact() {
        let a = Amount::from_wei(Decimal::from_str("62500000000000000").unwrap());
        assert_eq!(
            (a.eth.as_str(), a.wei.as_str()),
            ("0.0625", "62500000000000000")
        );
        let big = Amount::from_wei(Decimal::from_str("1165123456789012345678901").unwrap());
        assert_eq!(big.eth, "1165123.456789012345678901");
    }

    #[test]
    fn addresses_are_checked() {
        assert!(parse_address("0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4").is_ok());
        assert!(parse_address("0x123").is_err());
        assert!(parse_address("CF205808Ed36593aa40a44F10c7f7C2F67d4A4d4").is_err());
    }
}
