//! The handlers' shared state: the store, the market list and overview snapshots cached briefly,
//! the metrics, the per-client rate limit.

use std::{
    collections::HashMap,
    net::IpAddr,
    num::NonZeroU32,
    sync::{Arc, Mutex},
    time::Instant,
};

use crate::{error::*, heavy::HeavyBuilds};
use keymarket_store::StoreReader;

/// Shared state of the handlers.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The indexer's database.
    pub store: StoreReader,
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    pub(crate) limiter: Option<Arc<RateLimit>>,
    pub(crate) snapshots: Arc<Mutex<HashMap<String, Snapshot>>>,
    /// Per snapshot key, the lock of the build under way while there is no snapshot yet.
    pub(crate) first_builds: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    /// Trade exports streaming now (each holds a database connection for its whole run).
    pub(crate) exports: Arc<tokio::sync::Semaphore>,
    pub(crate) market_ids: Arc<Mutex<Option<MarketIds>>>,
    /// The heavy views' builds (at most [`HEAVY_BUILDS`] at once).
    pub(crate) heavy: Arc<HeavyBuilds>,
    /// `POST /v1/sql`, when on (see [`AppState::with_sql`]).
    pub(crate) sql: Option<Arc<SqlService>>,
}

/// The SQL endpoint's runner and its limits on queries running at once: in all, and per client.
#[derive(Debug)]
pub(crate) struct SqlService {
    pub(crate) runner: keymarket_store::SqlRunner,
    pub(crate) running: Arc<tokio::sync::Semaphore>,
    /// Queries running now, by client (IP address).
    pub(crate) by_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// SQL queries running at once (the runner's pool has as many connections); more are answered
/// 429 at once rather than queued behind runaways.
pub(crate) const SQL_CONCURRENCY: usize = 2;

/// SQL queries one client (IP address) may have running at once: fewer than
/// [`SQL_CONCURRENCY`], so that one client's runaway queries always leave room for another's.
pub(crate) const SQL_PER_CLIENT: usize = 1;

/// A client's turn at running a query: one of the [`SQL_CONCURRENCY`] places and one of its own
/// [`SQL_PER_CLIENT`], given back when dropped.
#[derive(Debug)]
pub(crate) struct SqlTurn {
    _place: tokio::sync::OwnedSemaphorePermit,
    by_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
    client: IpAddr,
}

/// Why a client may not run a query now.
#[derive(Debug)]
pub(crate) enum SqlBusy {
    /// The client has [`SQL_PER_CLIENT`] queries running already.
    Client,
    /// [`SQL_CONCURRENCY`] queries (of other clients) are running.
    Server,
}

impl SqlService {
    /// A turn for `client`, at once or not at all.
    pub(crate) fn turn(&self, client: IpAddr) -> Result<SqlTurn, SqlBusy> {
        let mut by_client = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        // No entry is made for a client that gets no turn (a map of every refused address).
        if by_client.get(&client).is_some_and(|n| *n >= SQL_PER_CLIENT) {
            return Err(SqlBusy::Client);
        }
        let place = self
            .running
            .clone()
            .try_acquire_owned()
            .map_err(|_| SqlBusy::Server)?;
        *by_client.entry(client).or_default() += 1;
        Ok(SqlTurn {
            _place: place,
            by_client: self.by_client.clone(),
            client,
        })
    }
}

impl Drop for SqlTurn {
    fn drop(&mut self) {
        let mut by_client = self.by_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = by_client.get_mut(&self.client) {
            *n -= 1;
            if *n == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

/// Trade exports streaming at once: each holds one of the store's few connections for a whole
/// pass over the trades (~1–2 minutes at 12M), so more are answered 429 rather than starving the
/// other endpoints of connections.
pub(crate) const EXPORT_CONCURRENCY: usize = 2;

/// The market ids and when they were read.
pub(crate) type MarketIds = (Instant, Arc<[i64]>);

/// A serialised response of one of the hottest endpoints (overview, daily series), kept in
/// memory; always of whole committed batches, never of a half-applied one.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) at: Instant,
    /// How long building it took.
    pub(crate) built_in: std::time::Duration,
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
    pub fn new(store: StoreReader) -> Self {
        Self {
            store,
            metrics: Arc::default(),
            limiter: None,
            snapshots: Arc::default(),
            first_builds: Arc::default(),
            exports: Arc::new(tokio::sync::Semaphore::new(EXPORT_CONCURRENCY)),
            market_ids: Arc::default(),
            heavy: Arc::default(),
            sql: None,
        }
    }

    /// Turns on `POST /v1/sql`: analysts' read-only SQL queries under `limits`, on connections
    /// of their own, [`SQL_CONCURRENCY`] at a time. Off by default (the route answers 404).
    pub fn with_sql(mut self, limits: keymarket_store::SqlLimits) -> Self {
        self.sql = Some(Arc::new(SqlService {
            runner: self.store.sql_runner(limits),
            running: Arc::new(tokio::sync::Semaphore::new(SQL_CONCURRENCY)),
            by_client: Arc::default(),
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

/// `(from, to)` — days, unbounded ends as [`crate::extract::day_range`] gives them — clamped to
/// the market's days with trades: what heavy views are keyed by, so that windows differing only
/// in days without trades (`?from=2000-01-01`, `?from=2000-01-02`, …) share one snapshot. `None`
/// when no day of the window has trades.
pub(crate) async fn trading_window(
    s: &AppState,
    id: i64,
    (from, to): (i64, i64),
) -> Result<Option<keymarket_store::DayRange>, ApiError> {
    Ok(s.store.day_span(id).await?.and_then(|span| {
        let (from, to) = (from.max(span.from), to.min(span.to));
        (from <= to).then_some(keymarket_store::DayRange { from, to })
    }))
}
