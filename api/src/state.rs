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
use keymarket_store::StoreReader;
use serde::Serialize;

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

/// Answers from the snapshot under `key`, fresh for [`OVERVIEW_TTL`] (see [`snapshot_with`]).
pub(crate) async fn snapshot<F, Fut>(
    s: &AppState,
    key: String,
    build: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    snapshot_with(s, key, LIVE, build).await
}

/// Answers from the snapshot under `key` (a JSON body) kept as `freshness` says.
pub(crate) async fn snapshot_with<F, Fut>(
    s: &AppState,
    key: String,
    freshness: Freshness,
    build: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    Ok(json_body(snapshot_bytes(s, key, freshness, build).await?))
}

/// A serialised JSON body as a response.
fn json_body(body: axum::body::Bytes) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// As [`snapshot_with`] under `key`; with no key (a window without trades: nothing heavy to
/// build, and not worth a place in the cache) built for this request alone.
pub(crate) async fn snapshot_if<F, Fut>(
    s: &AppState,
    key: Option<String>,
    freshness: Freshness,
    build: F,
) -> Result<Response, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    match key {
        Some(key) => snapshot_with(s, key, freshness, build).await,
        None => Ok(json_body(build().await?)),
    }
}

/// How long a snapshot stays fresh: at least `min`, and at least `build_multiple` times as long
/// as its last build took. A snapshot that takes seconds to build at friend.tech scale is then
/// rebuilt at most every `build_multiple` build times, i.e. rebuilding keeps at most
/// 1/`build_multiple` of one core busy however many requests come, while a small database's
/// (milliseconds) stays as live as the others.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Freshness {
    pub(crate) min: std::time::Duration,
    pub(crate) build_multiple: u32,
    /// Whether a build is heavy work (reads a window's trades or per-subject aggregates): at
    /// most [`HEAVY_BUILDS`] such builds run at once (see [`HeavyBuilds`]).
    pub(crate) heavy: bool,
}

/// The hot endpoints' freshness: [`OVERVIEW_TTL`].
pub(crate) const LIVE: Freshness = Freshness {
    min: OVERVIEW_TTL,
    build_multiple: 0,
    heavy: false,
};

/// A view cut from a heavy snapshot (net flow's side and limit from its window's leaders): kept
/// like [`HEAVY`], but not heavy itself — its build waits for the heavy one inside it.
pub(crate) const SLICE: Freshness = Freshness {
    min: OVERVIEW_TTL,
    build_multiple: 20,
    heavy: false,
};

/// Heavy builds running at once, whatever the endpoints and windows asked for.
pub(crate) const HEAVY_BUILDS: usize = 2;

/// How long a request waits for a heavy build — for the build of the same view another request
/// started, then for a turn of its own — before it is answered 503 with `Retry-After`: one
/// deadline for both waits, so requests queued behind one build do not wait one after another.
pub(crate) const HEAVY_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// The turns of the heavy builds, and how many ran at once at most (for tests and operators).
#[derive(Debug)]
pub(crate) struct HeavyBuilds {
    turns: Arc<tokio::sync::Semaphore>,
    running: std::sync::atomic::AtomicUsize,
    pub(crate) peak: std::sync::atomic::AtomicUsize,
}

impl Default for HeavyBuilds {
    fn default() -> Self {
        Self {
            turns: Arc::new(tokio::sync::Semaphore::new(HEAVY_BUILDS)),
            running: Default::default(),
            peak: Default::default(),
        }
    }
}

/// The answer to a request whose heavy build found no turn in time.
fn heavy_busy() -> ApiError {
    ApiError::Unavailable {
        message: format!(
            "{HEAVY_BUILDS} heavy views are being built for other requests; retry in a few seconds"
        ),
        retry_after: 5,
    }
}

/// A heavy build's turn, given back when dropped.
pub(crate) struct HeavyTurn<'a> {
    builds: &'a HeavyBuilds,
    _turn: tokio::sync::OwnedSemaphorePermit,
}

impl HeavyBuilds {
    /// Waits for a turn, at most [`HEAVY_WAIT`].
    /// Waits for a turn until `deadline` (the request's, see [`HEAVY_WAIT`]).
    pub(crate) async fn turn(
        &self,
        deadline: tokio::time::Instant,
    ) -> Result<HeavyTurn<'_>, ApiError> {
        use std::sync::atomic::Ordering;
        let turn = tokio::time::timeout_at(deadline, self.turns.clone().acquire_owned())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(heavy_busy)?;
        let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
        self.peak.fetch_max(now, Ordering::SeqCst);
        Ok(HeavyTurn {
            builds: self,
            _turn: turn,
        })
    }
}

impl Drop for HeavyTurn<'_> {
    fn drop(&mut self) {
        self.builds
            .running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
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

/// The freshness of aggregations over many rows (retention cohorts, net-flow leaders, a
/// window's overview): at least [`OVERVIEW_TTL`], and 20 times the last build (a 3 s build at
/// 12M trades is served for a minute).
pub(crate) const HEAVY: Freshness = Freshness {
    min: OVERVIEW_TTL,
    build_multiple: 20,
    heavy: true,
};

impl Freshness {
    fn fresh_for(self, built_in: std::time::Duration) -> std::time::Duration {
        self.min.max(built_in * self.build_multiple)
    }
}

/// The bytes of the snapshot under `key`: fresh, or stale while another request rebuilds it;
/// otherwise this request builds it with `build` (a rebuild abandoned for 5 s or twice its last
/// build time, e.g. by a client that went away, is taken over). Requests arriving while there is
/// no snapshot yet wait for the one build under way rather than each starting their own.
pub(crate) async fn snapshot_bytes<F, Fut>(
    s: &AppState,
    key: String,
    freshness: Freshness,
    build: F,
) -> Result<axum::body::Bytes, ApiError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<axum::body::Bytes, ApiError>>,
{
    let cached = |cache: &mut HashMap<String, Snapshot>| match cache.get_mut(&key) {
        Some(snap) if snap.at.elapsed() < freshness.fresh_for(snap.built_in) => {
            Some(Some(snap.body.clone()))
        }
        Some(snap)
            if snap.refreshing_since.is_some_and(|t| {
                t.elapsed() < std::time::Duration::from_secs(5).max(snap.built_in * 2)
            }) =>
        {
            Some(Some(snap.body.clone()))
        }
        Some(snap) => {
            snap.refreshing_since = Some(Instant::now());
            Some(None)
        }
        None => None,
    };
    let deadline = tokio::time::Instant::now() + HEAVY_WAIT;
    let served = cached(&mut s.snapshots.lock().expect("not poisoned"));
    // No snapshot at all: one build per key at a time (the others wait for it).
    let mut first_build = None;
    let served = match served {
        Some(served) => served,
        None => {
            let gate = s
                .first_builds
                .lock()
                .expect("not poisoned")
                .entry(key.clone())
                .or_default()
                .clone();
            let held = if freshness.heavy {
                tokio::time::timeout_at(deadline, gate.clone().lock_owned())
                    .await
                    .map_err(|_| heavy_busy())?
            } else {
                gate.clone().lock_owned().await
            };
            first_build = Some(FirstBuild {
                gates: &s.first_builds,
                key: &key,
                _held: held,
                gate,
            });
            let again = cached(&mut s.snapshots.lock().expect("not poisoned"));
            again.flatten()
        }
    };
    let body = match served {
        Some(body) => body,
        None => {
            let turn = match freshness.heavy {
                true => Some(s.heavy.turn(deadline).await),
                false => None,
            }
            .transpose();
            let turn = match turn {
                Ok(turn) => turn,
                Err(e) => {
                    // A stale snapshot is better than none while the heavy builds are busy.
                    let mut cache = s.snapshots.lock().expect("not poisoned");
                    return match cache.get_mut(&key) {
                        Some(snap) => {
                            snap.refreshing_since = None;
                            Ok(snap.body.clone())
                        }
                        None => Err(e),
                    };
                }
            };
            let started = Instant::now();
            let built = build().await;
            drop(turn);
            let mut cache = s.snapshots.lock().expect("not poisoned");
            match built {
                Ok(body) => {
                    if cache.len() > 4096 {
                        // Cheap snapshots go first: a flood of distinct cheap keys must not evict
                        // the ones that take seconds to build.
                        cache.retain(|_, snap| {
                            snap.built_in >= std::time::Duration::from_millis(100)
                        });
                        if cache.len() > 4096 {
                            cache.clear();
                        }
                    }
                    let snap = Snapshot {
                        at: Instant::now(),
                        built_in: started.elapsed(),
                        body: body.clone(),
                        refreshing_since: None,
                    };
                    cache.insert(key.clone(), snap);
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
    drop(first_build);
    Ok(body)
}

/// The first build of a key, held while it runs. However it ends — built, failed, or the request
/// dropped mid-build — the key's gate is removed (if it is still this one), so keys whose build
/// fails (a subject without trades answers 404 from inside its build) do not pile up.
struct FirstBuild<'a> {
    gates: &'a Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    key: &'a str,
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Released after the gate is removed: the requests waiting on it then find the snapshot
    /// (or, after a failure, build it themselves).
    _held: tokio::sync::OwnedMutexGuard<()>,
}

impl Drop for FirstBuild<'_> {
    fn drop(&mut self) {
        let mut gates = self.gates.lock().expect("not poisoned");
        if gates
            .get(self.key)
            .is_some_and(|g| Arc::ptr_eq(g, &self.gate))
        {
            gates.remove(self.key);
        }
    }
}

pub(crate) fn to_json<T: Serialize>(v: &T) -> Result<axum::body::Bytes, ApiError> {
    serde_json::to_vec(v)
        .map(Into::into)
        .map_err(|e| ApiError::Internal(e.to_string()))
}
