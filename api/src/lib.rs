//! keymarket's HTTP API: JSON under `/v1` over the indexer's database (SQLite or PostgreSQL),
//! with friend.tech's Dune/Messari metric meanings and every ETH amount exact to the wei (a
//! decimal ETH string with the wei integer alongside).
//!
//! Read-only. It does not index (see `keymarket-indexer`). The dashboard ([`dashboard`]) is a
//! static page over this API, served by the same router.

pub mod dashboard;
pub mod metrics;

use std::{
    collections::HashMap,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    num::NonZeroU32,
    str::FromStr,
    sync::{Arc, Mutex},
    time::Instant,
};

use axum::{
    Json, Router,
    extract::{
        ConnectInfo, FromRequestParts, MatchedPath, Path, Request, State, rejection::QueryRejection,
    },
    http::{HeaderValue, StatusCode, header, request::Parts},
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use keymarket_indexer::{Store, amount::Wei};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use sqlx::Row;
use tracing::error;
use utoipa::{IntoParams, OpenApi, ToSchema};

/// Largest page size of any list.
pub const MAX_LIMIT: u32 = 100;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The indexer's database.
    pub store: Store,
    metrics: Arc<metrics::Metrics>,
    limiter: Option<Arc<RateLimit>>,
    snapshots: Arc<Mutex<HashMap<String, Snapshot>>>,
    market_ids: Arc<Mutex<Option<MarketIds>>>,
}

/// The market ids and when they were read.
type MarketIds = (Instant, Arc<[i64]>);

/// A serialised response of one of the hottest endpoints (overview, daily series), kept in
/// memory; always of whole committed batches, never of a half-applied one.
#[derive(Debug)]
struct Snapshot {
    at: Instant,
    body: axum::body::Bytes,
    /// When a request started building its successor (the others keep serving this one).
    refreshing_since: Option<Instant>,
}

/// How long a snapshot is fresh. A stale one is rebuilt by one request while the others are
/// still served it, so a snapshot served is at most this old plus one rebuild.
const OVERVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// A per-client (IP address) token bucket.
#[derive(Debug)]
struct RateLimit {
    per_second: u32,
    limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
}

impl AppState {
    /// State over `store`, with no rate limit.
    pub fn new(store: Store) -> Self {
        Self {
            store,
            metrics: Arc::default(),
            limiter: None,
            snapshots: Arc::default(),
            market_ids: Arc::default(),
        }
    }

    /// Limits each client (by IP address) to `per_second` requests a second on average, with
    /// bursts of `burst`; beyond that, 429 with a JSON body and `Retry-After`. 0 = no limit.
    pub fn with_rate_limit(mut self, per_second: u32, burst: u32) -> Self {
        self.limiter = NonZeroU32::new(per_second).map(|rate| {
            let quota = governor::Quota::per_second(rate)
                .allow_burst(NonZeroU32::new(burst).unwrap_or(rate));
            Arc::new(RateLimit {
                per_second,
                limiter: governor::RateLimiter::keyed(quota),
            })
        });
        self
    }
}

/// Serves the API and dashboard on `listener` until `shutdown` completes (then stops accepting
/// connections and returns once the requests in flight are answered), with each connection's
/// peer address available to the per-client rate limit.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(
        listener,
        router(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
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
        .route("/v1/subjects/{address}/daily", get(subject_daily))
        .route("/v1/traders/{address}", get(trader))
        .route("/v1/traders/{address}/holdings", get(trader_holdings))
        .route("/v1/trades", get(trades))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
        .merge(dashboard::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see /v1/markets, /v1/overview, /v1/daily".into())
        })
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET]),
        )
        .layer(tower_http::compression::CompressionLayer::new())
        // A bug that panics in a handler answers a JSON 500 instead of dropping the connection.
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            |_: Box<dyn std::any::Any + Send>| {
                ApiError::Internal("a request handler panicked".into()).into_response()
            },
        ))
        .with_state(state)
}

/// Records each routed request's latency by route and status.
async fn track(State(s): State<AppState>, req: Request, next: Next) -> Response {
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |m| m.as_str().to_string());
    let started = Instant::now();
    let resp = next.run(req).await;
    s.metrics
        .observe(route, resp.status().as_u16(), started.elapsed());
    resp
}

/// The per-client rate limit (see [`AppState::with_rate_limit`]).
async fn rate_limit(State(s): State<AppState>, req: Request, next: Next) -> Response {
    if let Some(l) = &s.limiter {
        let ip = req
            .extensions()
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        if let Err(not_until) = l.limiter.check_key(&ip) {
            use governor::clock::Clock;
            let wait = not_until.wait_time_from(governor::clock::DefaultClock::default().now());
            let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
            let mut resp = ApiError::TooManyRequests(format!(
                "rate limit of {} requests/s per client exceeded; retry in {secs} s",
                l.per_second
            ))
            .into_response();
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
            return resp;
        }
    }
    next.run(req).await
}

/// Prometheus metrics: request latencies, and per market the indexed trades, block, head and lag.
async fn metrics_text(State(s): State<AppState>) -> Result<Response, ApiError> {
    let rows = sqlx::query(
        "SELECT m.id, m.next_block - 1, m.head_block, \
         (SELECT CAST(COALESCE(SUM(d.trades), 0) AS BIGINT) FROM stats_daily d WHERE d.market_id = m.id) \
         FROM markets m",
    )
    .fetch_all(s.store.pool())
    .await?;
    for r in &rows {
        let labels = metrics::MarketLabels { market: r.get(0) };
        let (indexed, head): (i64, i64) = (r.get(1), r.get(2));
        let head = head.max(indexed);
        s.metrics.indexed_block.get_or_create(&labels).set(indexed);
        s.metrics.head_block.get_or_create(&labels).set(head);
        s.metrics
            .lag_blocks
            .get_or_create(&labels)
            .set(head - indexed);
        s.metrics.trades.get_or_create(&labels).set(r.get(3));
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

/// The body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: ErrorDetail,
}

/// An error's status and message.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// The HTTP status.
    pub status: u16,
    /// The problem, in words.
    pub message: String,
}

/// The OpenAPI document of the JSON API, generated from the handlers and types above.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "keymarket API",
        description = "friend.tech-style key market analytics: exact ETH amounts as {eth, wei} strings."
    ),
    paths(
        healthz,
        markets,
        overview,
        daily,
        top_subjects,
        top_traders,
        subject,
        holders,
        subject_daily,
        trader,
        trader_holdings,
        trades
    )
)]
pub struct ApiDoc;

async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
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
    /// The client went over its rate limit.
    #[error("{0}")]
    TooManyRequests(String),
    /// Something failed on our side.
    #[error("internal error")]
    Internal(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = match &self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Internal(detail) => {
                error!(target: "api", %detail, "internal error");
                StatusCode::INTERNAL_SERVER_ERROR
            }
        };
        (
            status,
            Json(ErrorBody {
                error: ErrorDetail {
                    status: status.as_u16(),
                    message: self.to_string(),
                },
            }),
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

/// Path extractor whose rejections (e.g. invalid percent-encoding) are JSON 400s.
pub struct P<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for P<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Self(p.0)),
            Err(e) => Err(ApiError::BadRequest(e.body_text())),
        }
    }
}

/// An exact ETH amount.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, ToSchema)]
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct MarketQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    market: Option<i64>,
}

/// Resolves the `market` parameter: required when the database holds several markets.
/// The market list comes from a snapshot at most [`OVERVIEW_TTL`] old (one query less per
/// request; on PostgreSQL a network round trip); a market missing from it is looked up again, so
/// a newly indexed market is found at once.
async fn market_id(s: &AppState, market: Option<i64>) -> Result<i64, ApiError> {
    let cached = s
        .market_ids
        .lock()
        .expect("not poisoned")
        .as_ref()
        .filter(|(at, _)| at.elapsed() < OVERVIEW_TTL)
        .map(|(_, ids)| ids.clone());
    let ids = match cached {
        Some(ids) if market.is_none_or(|m| ids.contains(&m)) => ids,
        _ => {
            let rows: Vec<(i64,)> = sqlx::query_as("SELECT id FROM markets ORDER BY id")
                .fetch_all(s.store.pool())
                .await?;
            let ids: Arc<[i64]> = rows.into_iter().map(|(id,)| id).collect();
            *s.market_ids.lock().expect("not poisoned") = Some((Instant::now(), ids.clone()));
            ids
        }
    };
    match market {
        Some(id) if ids.contains(&id) => Ok(id),
        Some(id) => Err(ApiError::NotFound(format!(
            "unknown market {id}; see /v1/markets"
        ))),
        None if ids.len() == 1 => Ok(ids[0]),
        None if ids.is_empty() => Err(ApiError::NotFound(
            "the database holds no market yet".into(),
        )),
        None => Err(ApiError::BadRequest(
            "several markets are indexed: pass ?market=ID (see /v1/markets)".into(),
        )),
    }
}

/// The indexer's position per market.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// Always `ok` when the database answers.
    pub status: String,
    /// Each market's position.
    pub markets: Vec<HealthMarket>,
}

/// One market's indexing position.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct HealthMarket {
    /// Market id.
    pub id: i64,
    /// Chain id.
    pub chain_id: i64,
    /// Contract address.
    pub address: String,
    /// Newest indexed block.
    pub indexed_block: i64,
    /// Chain head the indexer last saw.
    pub head_block: i64,
    /// Head minus indexed block.
    pub lag_blocks: i64,
    /// Seconds since the indexer last saw the head (null: never).
    pub head_seen_seconds_ago: Option<i64>,
}

/// Health and indexer lag.
#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health), (status = 429, body = ErrorBody)))]
async fn healthz(State(s): State<AppState>) -> ApiResult<Health> {
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
            HealthMarket {
                id: r.get(0),
                chain_id: r.get(1),
                address: r.get(2),
                indexed_block: indexed,
                head_block: head,
                lag_blocks: head - indexed,
                head_seen_seconds_ago: (seen > 0).then(|| (now - seen).max(0)),
            }
        })
        .collect();
    Ok(Json(Health {
        status: "ok".into(),
        markets,
    }))
}

/// The indexed markets.
#[derive(Debug, Serialize, ToSchema)]
pub struct Markets {
    /// Every market in the database.
    pub markets: Vec<MarketInfo>,
}

/// An indexed market.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketInfo {
    /// Market id (the `market` parameter).
    pub id: i64,
    /// Chain id.
    pub chain_id: i64,
    /// Contract address.
    pub address: String,
    /// First indexed block.
    pub start_block: i64,
    /// Newest indexed block.
    pub indexed_block: i64,
}

/// The indexed markets.
#[utoipa::path(get, path = "/v1/markets", responses((status = 200, body = Markets), (status = 429, body = ErrorBody)))]
async fn markets(State(s): State<AppState>) -> ApiResult<Markets> {
    let rows = sqlx::query(
        "SELECT id, chain_id, address, start_block, next_block FROM markets ORDER BY id",
    )
    .fetch_all(s.store.pool())
    .await?;
    let markets: Vec<_> = rows
        .iter()
        .map(|r| MarketInfo {
            id: r.get(0),
            chain_id: r.get(1),
            address: r.get(2),
            start_block: r.get(3),
            indexed_block: r.get::<i64, _>(4) - 1,
        })
        .collect();
    Ok(Json(Markets { markets }))
}

/// Protocol numbers of a market, all time or over a window of days.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// Market id.
    pub market: i64,
    /// First day of the window (inclusive), when one was asked for.
    pub from: Option<String>,
    /// Last day of the window (inclusive), when one was asked for.
    pub to: Option<String>,
    /// ETH held by the curves now (all-time buy minus sell volume), whatever the window.
    pub tvl: Amount,
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
    /// Buy minus sell volume (over the window; all time = TVL).
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

/// `from`/`to` dates (inclusive, UTC) → a day range, checked.
fn day_range(from: Option<&str>, to: Option<&str>) -> Result<(i64, i64), ApiError> {
    let from = from.map(parse_date).transpose()?.unwrap_or(i64::MIN / 2);
    let to = to.map(parse_date).transpose()?.unwrap_or(i64::MAX / 2);
    if from > to {
        return Err(ApiError::BadRequest(
            "inverted range: `from` is after `to`".into(),
        ));
    }
    Ok((from, to))
}

/// Protocol revenue, subject revenue, volume, trades, traders, subjects and TVL.
#[utoipa::path(get, path = "/v1/overview", params(DailyQuery), responses((status = 200, body = Overview), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn overview(State(s): State<AppState>, Q(q): Q<DailyQuery>) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let window = (q.from.is_some() || q.to.is_some())
        .then(|| day_range(q.from.as_deref(), q.to.as_deref()))
        .transpose()?;
    let key = format!(
        "overview {id} {window:?} {} {}",
        q.from.is_some(),
        q.to.is_some()
    );
    snapshot(&s, key, || build_overview(&s, id, window, &q)).await
}

async fn build_overview(
    s: &AppState,
    id: i64,
    window: Option<(i64, i64)>,
    q: &DailyQuery,
) -> Result<axum::body::Bytes, ApiError> {
    let t = s.store.totals(id, window).await?;
    let all = match window {
        None => t.clone(),
        Some(_) => s.store.totals(id, None).await?,
    };
    let d = |v: &str| Decimal::from_str(v).map_err(|e| ApiError::Internal(e.to_string()));
    let (buy, sell, p, sj) = (
        d(&t.buy_volume)?,
        d(&t.sell_volume)?,
        d(&t.protocol_fees)?,
        d(&t.subject_fees)?,
    );
    let tvl = d(&all.buy_volume)? - d(&all.sell_volume)?;
    let o = Overview {
        market: id,
        from: window
            .map(|w| format_date(w.0.max(0)))
            .filter(|_| q.from.is_some()),
        to: window.map(|w| format_date(w.1)).filter(|_| q.to.is_some()),
        tvl: Amount::from_wei(tvl),
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
    };
    to_json(&o)
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct DailyQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    market: Option<i64>,
    /// First UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    to: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct SeriesQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    market: Option<i64>,
    /// First UTC day, YYYY-MM-DD (inclusive); default: the first day with trades.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    from: Option<String>,
    /// Last UTC day, YYYY-MM-DD (inclusive); default: the last day with trades.
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    to: Option<String>,
    /// Days with trades per page, 1..=366 (default 366).
    #[param(minimum = 1, maximum = 366)]
    limit: Option<u32>,
    /// The previous page's nextCursor (a YYYY-MM-DD date: the next page starts there).
    #[param(pattern = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")]
    cursor: Option<String>,
}

/// Most days in one page of a daily series (a year).
pub const MAX_DAYS: u32 = 366;

impl SeriesQuery {
    /// (first day, last day, page size), checked; the cursor moves the first day.
    fn page(&self) -> Result<(i64, i64, i64), ApiError> {
        let (from, to) = day_range(self.from.as_deref(), self.to.as_deref())?;
        let limit = match self.limit.unwrap_or(MAX_DAYS) {
            0 => return Err(ApiError::BadRequest("limit must be at least 1".into())),
            n if n > MAX_DAYS => {
                return Err(ApiError::BadRequest(format!(
                    "limit {n} is over the cap of {MAX_DAYS} days"
                )));
            }
            n => i64::from(n),
        };
        let from = match &self.cursor {
            Some(c) => {
                let at = parse_date(c)
                    .map_err(|_| ApiError::BadRequest(format!("malformed cursor {c:?}")))?;
                if at < from || at > to.saturating_add(1) {
                    return Err(ApiError::BadRequest(format!(
                        "cursor {c:?} is outside the requested range"
                    )));
                }
                at
            }
            None => from,
        };
        Ok((from, to, limit))
    }
}

/// Answers from the snapshot under `key`: fresh, or stale while another request rebuilds it;
/// otherwise this request builds it with `build` (a rebuild abandoned for 5 s, e.g. by a client
/// that went away, is taken over).
async fn snapshot<F, Fut>(s: &AppState, key: String, build: F) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    let served = {
        let mut cache = s.snapshots.lock().expect("not poisoned");
        match cache.get_mut(&key) {
            Some(snap) if snap.at.elapsed() < OVERVIEW_TTL => Some(snap.body.clone()),
            Some(snap)
                if snap
                    .refreshing_since
                    .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(5)) =>
            {
                Some(snap.body.clone())
            }
            Some(snap) => {
                snap.refreshing_since = Some(Instant::now());
                None
            }
            None => None,
        }
    };
    let body = match served {
        Some(body) => body,
        None => {
            let built = build().await;
            let mut cache = s.snapshots.lock().expect("not poisoned");
            match built {
                Ok(body) => {
                    if cache.len() > 4096 {
                        cache.clear();
                    }
                    let snap = Snapshot {
                        at: Instant::now(),
                        body: body.clone(),
                        refreshing_since: None,
                    };
                    cache.insert(key, snap);
                    body
                }
                Err(e) => {
                    if let Some(snap) = cache.get_mut(&key) {
                        snap.refreshing_since = None;
                    }
                    return Err(e);
                }
            }
        }
    };
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response())
}

fn to_json<T: Serialize>(v: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Into::into)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

/// A series page from rows fetched with `LIMIT limit + 1` (day first): the page's rows, and the
/// cursor — the day after its last row — only when another row follows.
fn series_page(
    mut rows: Vec<sqlx::any::AnyRow>,
    limit: i64,
) -> (Vec<sqlx::any::AnyRow>, Option<String>) {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = rows
        .last()
        .filter(|_| more)
        .map(|r| format_date(r.get::<i64, _>(0) + 1));
    (rows, next)
}

/// A market's daily series.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Daily {
    /// Market id.
    pub market: i64,
    /// UTC days with trades, oldest first.
    pub days: Vec<Day>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One UTC day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Day {
    /// YYYY-MM-DD.
    pub date: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Σ ethAmount over buys.
    pub buy_volume: Amount,
    /// Σ ethAmount over sells.
    pub sell_volume: Amount,
    /// Σ protocolEthAmount.
    pub protocol_revenue: Amount,
    /// Σ subjectEthAmount.
    pub subject_revenue: Amount,
    /// Distinct traders that traded that day.
    pub active_traders: i64,
    /// Traders whose first trade was that day.
    pub new_traders: i64,
    /// Subjects whose first trade was that day.
    pub new_subjects: i64,
}

/// The daily (UTC) series for a date range, oldest first, a page of at most a year (cursor).
/// Served from a snapshot at most 1 s old.
#[utoipa::path(get, path = "/v1/daily", params(SeriesQuery), responses((status = 200, body = Daily), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn daily(State(s): State<AppState>, Q(q): Q<SeriesQuery>) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let (from, to, limit) = q.page()?;
    let key = format!("daily {id} {from} {to} {limit}");
    snapshot(&s, key, || async {
        let rows = sqlx::query(
            "SELECT day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, \
             protocol_gwei, protocol_rem, subject_gwei, subject_rem, active_traders, new_traders, new_subjects \
             FROM stats_daily WHERE market_id = $1 AND day >= $2 AND day <= $3 ORDER BY day LIMIT $4",
        )
        .bind(id)
        .bind(from)
        .bind(to)
        .bind(limit + 1)
        .fetch_all(s.store.pool())
        .await?;
        let (rows, next_cursor) = series_page(rows, limit);
        let days: Vec<_> = rows
            .iter()
            .map(|r| Day {
                date: format_date(r.get(0)),
            trades: r.get(1),
            buys: r.get(2),
            sells: r.get(3),
            buy_volume: Amount::from_parts(r, 4),
            sell_volume: Amount::from_parts(r, 6),
            protocol_revenue: Amount::from_parts(r, 8),
            subject_revenue: Amount::from_parts(r, 10),
            active_traders: r.get(12),
            new_traders: r.get(13),
            new_subjects: r.get(14),
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct TopQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    market: Option<i64>,
    /// Order: volume (default), fees, trades; for subjects also holders, supply, price (of the
    /// next key); for traders also pnl (realised).
    #[param(pattern = "^(volume|fees|trades|holders|supply|price|pnl)$")]
    by: Option<String>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
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

/// Orders by an exact amount column pair (normalised gwei, then the remainder): volume.
const BY_VOLUME: &str =
    "(volume_gwei + volume_rem / 1000000000) DESC, (volume_rem % 1000000000) DESC";
/// The same for fees.
const BY_FEES: &str = "(fees_gwei + fees_rem / 1000000000) DESC, (fees_rem % 1000000000) DESC";

/// A top list's rows: `columns` of the market's rows of `table`, in the order `q.by` names
/// (`orders`: the choices and their `ORDER BY` terms, the first one the default; an unknown choice
/// is a 400), ties broken by `key`, at most `q.limit` of them. Returns the market id too.
async fn top_rows(
    s: &AppState,
    q: TopQuery,
    table: &str,
    key: &str,
    columns: &str,
    orders: &[(&str, &str)],
) -> Result<(i64, Vec<sqlx::any::AnyRow>), ApiError> {
    let id = market_id(s, q.market).await?;
    let by = q.by.as_deref().unwrap_or(orders[0].0);
    let Some((_, order)) = orders.iter().find(|(name, _)| *name == by) else {
        let names: Vec<&str> = orders.iter().map(|(name, _)| *name).collect();
        let (last, rest) = names.split_last().expect("at least one order");
        return Err(ApiError::BadRequest(format!(
            "unknown `by` value {by:?}: use {} or {last}",
            rest.join(", ")
        )));
    };
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {columns} FROM {table} WHERE market_id = $1 ORDER BY {order}, {key} LIMIT $2"
    )))
    .bind(id)
    .bind(limit(q.limit)?)
    .fetch_all(s.store.pool())
    .await?;
    Ok((id, rows))
}

/// Top subjects.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopSubjects {
    /// Market id.
    pub market: i64,
    /// Subjects, best first.
    pub subjects: Vec<SubjectSummary>,
}

/// A subject's aggregates.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectSummary {
    /// The subject's address.
    pub subject: String,
    /// Keys outstanding.
    pub supply: i64,
    /// Traders holding at least one key.
    pub holders: i64,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Σ ethAmount.
    pub volume: Amount,
    /// Σ subjectEthAmount.
    pub fees_earned: Amount,
    /// Unix time of its first trade.
    pub first_trade_time: i64,
    /// Its curve, as a multiple of friend.tech's s²/16000 ETH per key (1; 10 for the steep
    /// curve), read off its trades' prices; 0 while unknown (only its free first key traded).
    pub curve: i64,
    /// Price of the next key before fees (the contract's `getBuyPrice(subject, 1)`); null
    /// while the curve is unknown.
    pub buy_price: Option<Amount>,
    /// What selling one key fetches before fees (`getSellPrice(subject, 1)`); null when only
    /// the last key, which cannot be sold, is out, or while the curve is unknown.
    pub sell_price: Option<Amount>,
}

/// Wei of one key at supply 1 on friend.tech's curve (1 ether / 16000).
const KEY_UNIT: i128 = 62_500_000_000_000;

/// The price before fees of key number `k` (0-based) on a curve `multiple` × s²/16000.
fn key_price(multiple: i64, k: i64) -> Option<Amount> {
    (multiple > 0 && k >= 0)
        .then(|| {
            i128::from(multiple)
                .checked_mul(i128::from(k).checked_mul(i128::from(k))?)?
                .checked_mul(KEY_UNIT)
        })
        .flatten()
        .and_then(|wei| Decimal::try_from_i128_with_scale(wei, 0).ok())
        .map(Amount::from_wei)
}

/// Top subjects by volume, fees earned, holders, supply, price or trades.
#[utoipa::path(get, path = "/v1/subjects/top", params(TopQuery), responses((status = 200, body = TopSubjects), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn top_subjects(State(s): State<AppState>, Q(q): Q<TopQuery>) -> ApiResult<TopSubjects> {
    let orders = [
        ("volume", BY_VOLUME),
        ("fees", BY_FEES),
        ("holders", "holders DESC"),
        ("supply", "supply DESC"),
        ("price", "(curve * supply * supply) DESC"),
        ("trades", "trades DESC"),
    ];
    let (id, rows) = top_rows(&s, q, "subjects", "subject", SUBJECT_COLUMNS, &orders).await?;
    Ok(Json(TopSubjects {
        market: id,
        subjects: rows.iter().map(subject_summary).collect(),
    }))
}

/// The columns [`subject_summary`] reads.
const SUBJECT_COLUMNS: &str = "subject, supply, holders, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, curve";

fn subject_summary(r: &sqlx::any::AnyRow) -> SubjectSummary {
    let (supply, curve): (i64, i64) = (r.get(1), r.get(9));
    SubjectSummary {
        subject: r.get(0),
        supply,
        holders: r.get(2),
        trades: r.get(3),
        volume: Amount::from_parts(r, 4),
        fees_earned: Amount::from_parts(r, 6),
        first_trade_time: r.get(8),
        curve,
        buy_price: key_price(curve, supply),
        sell_price: if supply > 1 {
            key_price(curve, supply - 1)
        } else {
            None
        },
    }
}

/// Top traders.
#[derive(Debug, Serialize, ToSchema)]
pub struct TopTraders {
    /// Market id.
    pub market: i64,
    /// Traders, best first.
    pub traders: Vec<TraderSummary>,
}

/// A trader's aggregates.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraderSummary {
    /// The trader's address.
    pub trader: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Σ ethAmount.
    pub volume: Amount,
    /// Σ protocol and subject fees paid.
    pub fees_paid: Amount,
    /// Unix time of the first trade.
    pub first_trade_time: i64,
    /// Realised profit and loss (average cost): Σ over its sells of the proceeds after fees
    /// less the cost basis of the keys sold. Negative for a loss.
    pub realised_pnl: Amount,
}

/// Top traders by volume, fees paid, trades or realised PnL.
#[utoipa::path(get, path = "/v1/traders/top", params(TopQuery), responses((status = 200, body = TopTraders), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn top_traders(State(s): State<AppState>, Q(q): Q<TopQuery>) -> ApiResult<TopTraders> {
    let orders = [
        ("volume", BY_VOLUME),
        ("fees", BY_FEES),
        ("trades", "trades DESC"),
        ("pnl", "pnl_gwei DESC, pnl_rem DESC"),
    ];
    let (id, rows) = top_rows(&s, q, "traders", "trader", TRADER_COLUMNS, &orders).await?;
    Ok(Json(TopTraders {
        market: id,
        traders: rows.iter().map(trader_summary).collect(),
    }))
}

/// One subject.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubjectOne {
    /// Market id.
    pub market: i64,
    /// Its aggregates.
    pub subject: SubjectSummary,
}

/// One subject: supply, holders, trades, volume, fees earned.
#[utoipa::path(get, path = "/v1/subjects/{address}", params(("address" = String, Path, description = "0x-prefixed address"), MarketQuery), responses((status = 200, body = SubjectOne), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn subject(
    State(s): State<AppState>,
    P(address): P<String>,
    Q(q): Q<MarketQuery>,
) -> ApiResult<SubjectOne> {
    let address = parse_address(&address)?;
    let id = market_id(&s, q.market).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {SUBJECT_COLUMNS} FROM subjects WHERE market_id = $1 AND subject = $2"
    )))
    .bind(id)
    .bind(&address)
    .fetch_optional(s.store.pool())
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("subject {address} has no trades in market {id}")))?;
    Ok(Json(SubjectOne {
        market: id,
        subject: subject_summary(&row),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
#[into_params(parameter_in = Query, rename_all = "camelCase")]
struct TradesQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    market: Option<i64>,
    /// Only this subject's trades.
    #[param(pattern = r"^0x[0-9a-fA-F]{40}$")]
    subject: Option<String>,
    /// Only this trader's trades.
    #[param(pattern = r"^0x[0-9a-fA-F]{40}$")]
    trader: Option<String>,
    /// `buy` or `sell`.
    #[param(pattern = "^(buy|sell)$")]
    side: Option<String>,
    /// From this block (inclusive).
    from_block: Option<i64>,
    /// To this block (inclusive).
    to_block: Option<i64>,
    /// Unix seconds, inclusive.
    from_time: Option<i64>,
    /// Unix seconds, inclusive.
    to_time: Option<i64>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The previous page's nextCursor.
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

/// A page of trades.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trades {
    /// Market id.
    pub market: i64,
    /// Trades, newest first.
    pub trades: Vec<Trade>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// One trade (a `Trade` event).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Trade {
    /// Block number.
    pub block: i64,
    /// Log index in the block.
    pub log_index: i64,
    /// Transaction hash.
    pub tx_hash: String,
    /// Block time (unix seconds).
    pub time: i64,
    /// Trader.
    pub trader: String,
    /// Subject.
    pub subject: String,
    /// `buy` or `sell`.
    pub side: String,
    /// Keys traded.
    pub shares: i64,
    /// ethAmount: the curve price of the keys.
    pub eth_amount: Amount,
    /// protocolEthAmount.
    pub protocol_fee: Amount,
    /// subjectEthAmount.
    pub subject_fee: Amount,
    /// The subject's supply after the trade.
    pub supply: i64,
}

/// Trades, newest first, with filters; paginated by a keyset cursor.
#[utoipa::path(get, path = "/v1/trades", params(TradesQuery), responses((status = 200, body = Trades), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn trades(State(s): State<AppState>, Q(q): Q<TradesQuery>) -> ApiResult<Trades> {
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

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct PageQuery {
    /// Market id (see /v1/markets); required when the database holds several.
    market: Option<i64>,
    /// Rows, 1..=100 (default 20).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<u32>,
    /// The previous page's nextCursor.
    cursor: Option<String>,
}

/// A page of a subject's holders.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holders {
    /// Market id.
    pub market: i64,
    /// The subject.
    pub subject: String,
    /// Holders, largest balance first.
    pub holders: Vec<Holder>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A holder of a subject's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct Holder {
    /// The trader.
    pub trader: String,
    /// Keys held.
    pub balance: i64,
}

/// A subject's holders, largest balance first (ties by address); keyset cursor.
#[utoipa::path(get, path = "/v1/subjects/{address}/holders", params(("address" = String, Path, description = "0x-prefixed address"), PageQuery), responses((status = 200, body = Holders), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn holders(
    State(s): State<AppState>,
    P(address): P<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<Holders> {
    let address = parse_address(&address)?;
    let id = market_id(&s, q.market).await?;
    let (rows, next) = holdings_page(&s, id, "subject", &address, &q).await?;
    let holders = rows
        .iter()
        .map(|r| Holder {
            trader: r.get(0),
            balance: r.get(1),
        })
        .collect();
    Ok(Json(Holders {
        market: id,
        subject: address,
        holders,
        next_cursor: next,
    }))
}

/// A page of holdings rows of one subject's (`of` = "subject") or one trader's (`of` =
/// "trader") keys, largest balance first, ties by the other address; keyset cursor
/// `balance_address`. Columns: the other address, balance, cost basis (gwei, rem). Both orders
/// read an index of exactly that order (holdings_by_balance, holdings_by_trader).
async fn holdings_page(
    s: &AppState,
    id: i64,
    of: &str,
    address: &str,
    q: &PageQuery,
) -> Result<(Vec<sqlx::any::AnyRow>, Option<String>), ApiError> {
    let other = if of == "subject" { "trader" } else { "subject" };
    let limit = limit(q.limit)?;
    let (after_balance, after) = match &q.cursor {
        Some(c) => {
            let (b, a): (i64, String) = parse_cursor(c)?;
            (b, parse_address(&a)?)
        }
        None => (i64::MAX, String::new()),
    };
    let mut rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {other}, balance, cost_gwei, cost_rem FROM holdings WHERE market_id = $1 AND {of} = $2 AND balance > 0 \
         AND (balance < $3 OR (balance = $3 AND {other} > $4)) ORDER BY balance DESC, {other} LIMIT $5"
    )))
    .bind(id)
    .bind(address)
    .bind(after_balance)
    .bind(&after)
    .bind(limit + 1)
    .fetch_all(s.store.pool())
    .await?;
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next = more.then(|| {
        let last = rows.last().expect("a full page");
        format!("{}_{}", last.get::<i64, _>(1), last.get::<String, _>(0))
    });
    Ok((rows, next))
}

fn holding(r: &sqlx::any::AnyRow) -> Holding {
    Holding {
        subject: r.get(0),
        balance: r.get(1),
        cost_basis: Amount::from_parts(r, 2),
    }
}

/// A page of a trader's holdings.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraderHoldings {
    /// Market id.
    pub market: i64,
    /// The trader.
    pub trader: String,
    /// Holdings, largest balance first.
    pub holdings: Vec<Holding>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A trader's holdings with their cost basis, largest balance first (ties by subject); keyset
/// cursor.
#[utoipa::path(get, path = "/v1/traders/{address}/holdings", params(("address" = String, Path, description = "0x-prefixed address"), PageQuery), responses((status = 200, body = TraderHoldings), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn trader_holdings(
    State(s): State<AppState>,
    P(address): P<String>,
    Q(q): Q<PageQuery>,
) -> ApiResult<TraderHoldings> {
    let address = parse_address(&address)?;
    let id = market_id(&s, q.market).await?;
    let (rows, next) = holdings_page(&s, id, "trader", &address, &q).await?;
    if rows.is_empty() && q.cursor.is_none() {
        let known = sqlx::query("SELECT 1 FROM traders WHERE market_id = $1 AND trader = $2")
            .bind(id)
            .bind(&address)
            .fetch_optional(s.store.pool())
            .await?;
        if known.is_none() {
            return Err(ApiError::NotFound(format!(
                "trader {address} has no trades in market {id}"
            )));
        }
    }
    Ok(Json(TraderHoldings {
        market: id,
        trader: address,
        holdings: rows.iter().map(holding).collect(),
        next_cursor: next,
    }))
}

/// A subject's daily series.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectDaily {
    /// Market id.
    pub market: i64,
    /// The subject.
    pub subject: String,
    /// UTC days on which its keys traded, oldest first.
    pub days: Vec<SubjectDay>,
    /// Pass as `cursor` for the next page; null on the last page.
    pub next_cursor: Option<String>,
}

/// A subject's trades of one UTC day.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubjectDay {
    /// YYYY-MM-DD.
    pub date: String,
    /// Trades with a non-zero amount.
    pub trades: i64,
    /// Buys.
    pub buys: i64,
    /// Sells.
    pub sells: i64,
    /// Σ ethAmount over buys.
    pub buy_volume: Amount,
    /// Σ ethAmount over sells.
    pub sell_volume: Amount,
    /// Σ subjectEthAmount: what the subject earned that day.
    pub fees_earned: Amount,
}

/// One subject's daily series (UTC), oldest first, a page of at most a year (cursor). Served
/// from a snapshot at most 1 s old.
#[utoipa::path(get, path = "/v1/subjects/{address}/daily", params(("address" = String, Path, description = "0x-prefixed address"), SeriesQuery), responses((status = 200, body = SubjectDaily), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn subject_daily(
    State(s): State<AppState>,
    P(address): P<String>,
    Q(q): Q<SeriesQuery>,
) -> Result<Response, ApiError> {
    let address = parse_address(&address)?;
    let id = market_id(&s, q.market).await?;
    let (from, to, limit) = q.page()?;
    let key = format!("subject daily {id} {address} {from} {to} {limit}");
    snapshot(&s, key, || async {
        let rows = sqlx::query(
            "SELECT day, trades, buys, sells, buy_volume_gwei, buy_volume_rem, sell_volume_gwei, sell_volume_rem, fees_gwei, fees_rem \
             FROM subject_daily WHERE market_id = $1 AND subject = $2 AND day >= $3 AND day <= $4 ORDER BY day LIMIT $5",
        )
        .bind(id)
        .bind(&address)
        .bind(from)
        .bind(to)
        .bind(limit + 1)
        .fetch_all(s.store.pool())
        .await?;
        if rows.is_empty() {
            let known = sqlx::query("SELECT 1 FROM subjects WHERE market_id = $1 AND subject = $2")
                .bind(id)
                .bind(&address)
                .fetch_optional(s.store.pool())
                .await?;
            if known.is_none() {
                return Err(ApiError::NotFound(format!(
                    "subject {address} has no trades in market {id}"
                )));
            }
        }
        let (rows, next_cursor) = series_page(rows, limit);
        let days = rows
            .iter()
            .map(|r| SubjectDay {
                date: format_date(r.get(0)),
                trades: r.get(1),
                buys: r.get(2),
                sells: r.get(3),
                buy_volume: Amount::from_parts(r, 4),
                sell_volume: Amount::from_parts(r, 6),
                fees_earned: Amount::from_parts(r, 8),
            })
            .collect();
        to_json(&SubjectDaily {
            market: id,
            subject: address.clone(),
            days,
            next_cursor,
        })
    })
    .await
}

/// One trader.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TraderOne {
    /// Market id.
    pub market: i64,
    /// Its aggregates.
    pub trader: TraderSummary,
    /// Its current holdings: the first page of /v1/traders/{address}/holdings (100, largest
    /// first).
    pub holdings: Vec<Holding>,
    /// Pass as `cursor` to /v1/traders/{address}/holdings for the rest; null when that was all.
    pub holdings_next_cursor: Option<String>,
}

/// Keys of one subject held.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Holding {
    /// The subject.
    pub subject: String,
    /// Keys held.
    pub balance: i64,
    /// What the keys held cost, fees included (average cost: each sell releases the cost of
    /// the keys sold in proportion).
    pub cost_basis: Amount,
}

/// One trader: totals and current holdings.
#[utoipa::path(get, path = "/v1/traders/{address}", params(("address" = String, Path, description = "0x-prefixed address"), MarketQuery), responses((status = 200, body = TraderOne), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
async fn trader(
    State(s): State<AppState>,
    P(address): P<String>,
    Q(q): Q<MarketQuery>,
) -> ApiResult<TraderOne> {
    let address = parse_address(&address)?;
    let id = market_id(&s, q.market).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {TRADER_COLUMNS} FROM traders WHERE market_id = $1 AND trader = $2"
    )))
    .bind(id)
    .bind(&address)
    .fetch_optional(s.store.pool())
    .await?
    .ok_or_else(|| ApiError::NotFound(format!("trader {address} has no trades in market {id}")))?;
    let first_page = PageQuery {
        market: q.market,
        limit: Some(MAX_LIMIT),
        cursor: None,
    };
    let (holdings, next) = holdings_page(&s, id, "trader", &address, &first_page).await?;
    Ok(Json(TraderOne {
        market: id,
        trader: trader_summary(&row),
        holdings: holdings.iter().map(holding).collect(),
        holdings_next_cursor: next,
    }))
}

/// The columns [`trader_summary`] reads.
const TRADER_COLUMNS: &str =
    "trader, trades, volume_gwei, volume_rem, fees_gwei, fees_rem, first_time, pnl_gwei, pnl_rem";

fn trader_summary(r: &sqlx::any::AnyRow) -> TraderSummary {
    TraderSummary {
        trader: r.get(0),
        trades: r.get(1),
        volume: Amount::from_parts(r, 2),
        fees_paid: Amount::from_parts(r, 4),
        first_trade_time: r.get(6),
        realised_pnl: Amount::from_parts(r, 7),
    }
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
