//! The handlers' shared state: the store, the market list and overview snapshots cached briefly,
//! the metrics, the per-client rate limit.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::error::*;
use axum::{
    http::{HeaderValue, header},
    response::{IntoResponse, Response},
};
use keymarket_store::Store;
use serde::Serialize;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The indexer's database.
    pub store: Store,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) limiter: Option<Arc<RateLimit>>,
    pub(crate) snapshots: Arc<Mutex<HashMap<String, Snapshot>>>,
    pub(crate) market_ids: Arc<Mutex<Option<MarketIds>>>,
    /// `POST /v1/sql`, when on (see [`AppState::with_sql`]).
    pub(crate) sql: Option<Arc<SqlService>>,
}

/// The SQL endpoint's runner and its own limit on queries running at once.
#[derive(Debug)]
pub(crate) struct SqlService {
    pub(crate) runner: keymarket_store::SqlRunner,
    pub(crate) running: tokio::sync::Semaphore,
}

/// SQL queries running at once (the runner's pool has as many connections); more are answered
/// 429 at once rather than queued behind runaways.
pub(crate) const SQL_CONCURRENCY: usize = 2;

/// The market ids and when they were read.
pub(crate) type MarketIds = (Instant, Arc<[i64]>);

/// A serialised response of one of the hottest endpoints (overview, daily series), kept in
/// memory; always of whole committed batches, never of a half-applied one.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    pub(crate) body: axum::body::Bytes,
    /// When a request started building its successor (the others keep serving this one).
    pub(crate) refreshing_since: Option<Instant>,
}

/// How long a snapshot is fresh. A stale one is rebuilt by one request while the others are
/// still served it, so a snapshot served is at most this old plus one rebuild.
pub(crate) const OVERVIEW_TTL: std::time::Duration = std::time::Duration::from_secs(1);

/// A per-client (IP address) token bucket.
#[derive(Debug)]
pub(crate) struct RateLimit {
    pub(crate) per_second: u32,
    pub(crate) limiter: governor::DefaultKeyedRateLimiter<IpAddr>,
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
            sql: None,
        }
    }

    /// Turns on `POST /v1/sql`: analysts' read-only SQL queries under `limits`, on connections
    /// of their own, [`SQL_CONCURRENCY`] at a time. Off by default (the route answers 404).
    pub fn with_sql(mut self, limits: keymarket_store::SqlLimits) -> Self {
        self.sql = Some(Arc::new(SqlService {
            runner: self.store.sql_runner(limits),
            running: tokio::sync::Semaphore::new(SQL_CONCURRENCY),
        }));
        self
    }

    /// Exports the retry totals `source` gives on `/metrics` (see [`crate::metrics::Metrics::with_retries`]).
    pub fn with_retries(mut self, source: crate::metrics::RetriesSource) -> Self {
        self.metrics = Arc::new(crate::metrics::Metrics::with_retries(source));
        self
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

/// Resolves the `market` parameter: required when the database holds several markets.
/// The market list comes from a snapshot at most [`OVERVIEW_TTL`] old (one query less per
/// request; on PostgreSQL a network round trip); a market missing from it is looked up again, so
/// a newly indexed market is found at once.
pub(crate) async fn market_id(s: &AppState, market: Option<i64>) -> Result<i64, ApiError> {
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
            let ids: Arc<[i64]> = s.store.markets().await?.iter().map(|m| m.id).collect();
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

/// Answers from the snapshot under `key`: fresh, or stale while another request rebuilds it;
/// otherwise this request builds it with `build` (a rebuild abandoned for 5 s, e.g. by a client
/// that went away, is taken over).
pub(crate) async fn snapshot<F, Fut>(
    s: &AppState,
    key: String,
    build: F,
) -> Result<Response, ApiError>
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

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Into::into)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
