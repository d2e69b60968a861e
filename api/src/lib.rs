//! keymarket's HTTP API: JSON under `/v1` over the indexer's database (SQLite or PostgreSQL),
//! with friend.tech's Dune/Messari metric meanings and every ETH amount exact to the wei (a
//! decimal ETH string with the wei integer alongside).
//!
//! Read-only. It does not index (see `keymarket-indexer`). The dashboard ([`dashboard`]) is a
//! static page over this API, served by the same router.

pub mod dashboard;
mod error;
pub mod export;
mod extract;
mod heavy;
pub mod metrics;
mod openapi;
mod routes;
mod snapshot;
mod state;
mod types;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    time::Instant,
};

use axum::{
    Router,
    extract::{ConnectInfo, MatchedPath, Request, State},
    http::header,
    middleware::{self, Next},
    response::{IntoResponse, Response},
    routing::get,
};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;

use crate::routes::market::metrics_text;
pub use crate::{
    error::{ApiError, ErrorBody, ErrorDetail},
    extract::{MAX_LIMIT, P, Q},
    openapi::ApiDoc,
    routes::sql::{SqlRequest, SqlResponse},
    state::AppState,
    types::*,
};

/// Connections the API's store pool should have: one for each heavy build and each trade export
/// that may run at once, and two more, so that the light endpoints (`/v1/overview`, `/healthz`,
/// …) always find a connection however busy the heavy ones are. (`POST /v1/sql` has a pool of
/// its own.)
pub const STORE_CONNECTIONS: u32 =
    (heavy::HEAVY_BUILDS + state::EXPORT_CONCURRENCY) as u32 + LIGHT_CONNECTIONS;

/// Connections kept for the light endpoints, see [`STORE_CONNECTIONS`].
const LIGHT_CONNECTIONS: u32 = 2;

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
    let (endpoints, doc) = OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .merge(routes::market::routes())
        .merge(routes::netflow::routes())
        .merge(routes::prices::routes())
        .merge(routes::retention::routes())
        .merge(routes::subjects::routes())
        .merge(routes::traders::routes())
        .merge(routes::trades::routes())
        .merge(routes::export::routes())
        .merge(routes::sql::routes())
        .split_for_parts();
    let doc =
        axum::body::Bytes::from(serde_json::to_vec(&doc).expect("the OpenAPI document serializes"));
    Router::new()
        .merge(endpoints)
        .route("/metrics", get(metrics_text))
        .route(
            "/openapi.json",
            get(move || async move { ([(header::CONTENT_TYPE, "application/json")], doc.clone()) }),
        )
        .merge(dashboard::routes())
        .route_layer(middleware::from_fn_with_state(state.clone(), track))
        .fallback(|| async {
            ApiError::NotFound("no such endpoint; see /v1/markets, /v1/overview, /v1/daily".into())
        })
        // Every other endpoint is read with GET (POST /v1/sql has its own).
        .method_not_allowed_fallback(|| async {
            ApiError::MethodNotAllowed {
                message: "this endpoint is read with GET".into(),
                allow: "GET, HEAD",
            }
        })
        .layer(middleware::from_fn_with_state(state.clone(), rate_limit))
        .layer(
            tower_http::cors::CorsLayer::new()
                .allow_origin(tower_http::cors::Any)
                .allow_methods([axum::http::Method::GET, axum::http::Method::POST])
                .allow_headers([header::CONTENT_TYPE, header::ACCEPT]),
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
            return ApiError::TooManyRequests {
                message: format!(
                    "rate limit of {} requests/s per client exceeded; retry in {secs} s",
                    l.per_second
                ),
                retry_after: secs,
            }
            .into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use axum::body::Body;
    use tower::ServiceExt;

    use super::*;

    /// GET `uri` through the router: the status and the JSON body (`null` if not JSON).
    async fn get_json(app: &Router, uri: &str) -> (u16, serde_json::Value) {
        let response = app
            .clone()
            .oneshot(Request::get(uri).body(Body::empty()).unwrap())
            .await
            .unwrap();
        let status = response.status().as_u16();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        (status, serde_json::from_slice(&body).unwrap_or_default())
    }

    /// A temporary SQLite store, removed by [`remove_db`].
    async fn temp_store(name: &str) -> (keymarket_store::StoreWriter, std::path::PathBuf) {
        let path =
            std::env::temp_dir().join(format!("keymarket-api-{name}-{}.db", std::process::id()));
        remove_db(&path);
        let store = keymarket_store::StoreWriter::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        (store, path)
    }

    fn remove_db(path: &std::path::Path) {
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// `/healthz` on a database without markets: HTTP 200, `empty`, never `ok` with no market.
    /// Then a market indexed and followed, behind, and left alone: its `state`.
    #[tokio::test]
    async fn healthz_says_empty_without_markets_and_each_markets_state() {
        let (store, path) = temp_store("health").await;
        let app = router(AppState::new(store.reader()));
        let (status, body) = get_json(&app, "/healthz").await;
        assert_eq!(status, 200);
        assert_eq!(body, serde_json::json!({"status": "empty", "markets": []}));

        store.ensure_chain(31337, Default::default()).await.unwrap();
        let id = store
            .ensure_market(31337, Default::default(), 1)
            .await
            .unwrap()
            .id;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        for (next_block, head, seen_ago, state) in [
            (1, 0, None, "starting"),
            (1_001, 1_000, Some(0), "following"),
            (745, 1_000, Some(2), "following"),
            (744, 1_000, Some(2), "backfilling"),
            (1_001, 1_000, Some(301), "stopped"),
            (10, 1_000, Some(3_600), "stopped"),
        ] {
            sqlx::query(
                "UPDATE markets SET next_block = $1, head_block = $2, head_seen_at = $3 WHERE id = $4",
            )
            .bind(next_block)
            .bind(head)
            .bind(seen_ago.map_or(0, |ago| now - ago))
            .bind(id)
            .execute(store.pool())
            .await
            .unwrap();
            let (status, body) = get_json(&app, "/healthz").await;
            assert_eq!(status, 200);
            assert_eq!(body["status"], "ok", "{body}");
            let m = &body["markets"][0];
            assert_eq!(m["state"], state, "{m}");
            assert_eq!(m["indexedBlock"], next_block - 1, "{m}");
        }
        remove_db(&path);
    }

    /// Bad input, through the router in-process over a temporary SQLite store holding one market:
    /// each gets its 4xx and a JSON body whose message names the problem.
    #[tokio::test]
    async fn bad_requests_get_a_4xx_with_a_json_body_naming_the_problem() {
        let path =
            std::env::temp_dir().join(format!("keymarket-api-bad-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = keymarket_store::StoreWriter::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        store.ensure_chain(31337, Default::default()).await.unwrap();
        store
            .ensure_market(31337, Default::default(), 1)
            .await
            .unwrap();
        let state = AppState::new(store.reader());
        let app = router(state.clone());
        for (uri, status, needle) in [
            ("/v1/subjects/0x1234", 400, "malformed address"),
            (
                "/v1/traders/0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
                400,
                "wrong EIP-55 checksum",
            ),
            (
                "/v1/trades?subject=0x5aAeb6054F3E94C9b9A09f33669435E7Ef1BeAed",
                400,
                "wrong EIP-55 checksum",
            ),
            (
                "/v1/subjects/0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed/holders/daily",
                400,
                "the checksummed form of these digits is 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            ),
            ("/v1/overview?market=99", 404, "unknown market"),
            (
                "/v1/daily?from=2030-01-02&to=2030-01-01",
                400,
                "inverted range",
            ),
            (
                "/v1/daily?from=2023-02-30",
                400,
                "no such day 2023-02-30: 2023-02 has 28 days",
            ),
            ("/v1/daily?limit=367", 400, "over the cap"),
            ("/v1/daily?cursor=2023-13-01", 400, "malformed cursor"),
            (
                "/v1/daily?from=2030-01-01&cursor=2023-01-01",
                400,
                "outside the requested range",
            ),
            ("/v1/traders/top?by=price", 400, "unknown `by` value"),
            (
                "/v1/subjects/0x0000000000000000000000000000000000000001/daily",
                404,
                "has no trades",
            ),
            (
                "/v1/traders/0x0000000000000000000000000000000000000001/holdings",
                404,
                "has no trades",
            ),
            (
                "/v1/traders/0x0000000000000000000000000000000000000001/holdings?cursor=x",
                400,
                "malformed cursor",
            ),
            ("/v1/subjects/top?limit=1000", 400, "over the cap"),
            ("/v1/price-index?top=0", 400, "at least 1"),
            ("/v1/price-index?top=51", 400, "over the cap"),
            ("/v1/price-index?top=ten", 400, "top"),
            (
                "/v1/price-index?from=2030-01-02&to=2030-01-01",
                400,
                "inverted range",
            ),
            ("/v1/price-index?from=2023-02-30", 400, "no such day"),
            ("/v1/subjects/0x12/holders/daily", 400, "malformed address"),
            (
                "/v1/subjects/0x0000000000000000000000000000000000000001/holders/daily",
                404,
                "has no trades",
            ),
            ("/v1/subjects/top?by=vibes", 400, "unknown `by` value"),
            ("/v1/overview?colour=red", 400, "unknown field"),
            ("/v1/nothing", 404, "no such endpoint"),
            ("/v1/trades?side=both", 400, "unknown side"),
            (
                "/v1/overview?from=2030-01-02&to=2030-01-01",
                400,
                "inverted range",
            ),
            ("/v1/trades?cursor=abc", 400, "malformed cursor"),
            ("/v1/overview?window=8w", 400, "malformed window"),
            ("/v1/overview?window=0d", 400, "malformed window"),
            ("/v1/overview?window=367d", 400, "malformed window"),
            (
                "/v1/overview?window=7d&from=2030-01-01",
                400,
                "replaces `from` and `to`",
            ),
            ("/v1/retention?weeks=0", 400, "at least 1"),
            ("/v1/retention?weeks=521", 400, "over the cap"),
            ("/v1/retention?weeks=many", 400, "weeks"),
            (
                "/v1/retention?from=2030-01-02&to=2030-01-01",
                400,
                "inverted range",
            ),
            ("/v1/retention?from=2024-02-30", 400, "2024-02 has 29 days"),
            ("/v1/traders/netflow?side=whales", 400, "unknown side"),
            ("/v1/traders/netflow?limit=101", 400, "over the cap"),
            ("/v1/traders/netflow?limit=0", 400, "at least 1"),
            ("/v1/traders/netflow?to=2023-13-01", 400, "malformed date"),
            ("/v1/traders/netflow?by=net", 400, "unknown field"),
            ("/v1/trades?fromBlock=9&toBlock=3", 400, "inverted range"),
            ("/v1/trades?fromBlock=-1", 400, "fromBlock -1 is negative"),
            ("/v1/trades?toBlock=-5", 400, "toBlock -5 is negative"),
            ("/v1/trades?fromTime=yesterday", 400, "malformed fromTime"),
            ("/v1/trades?toTime=2026-02-30", 400, "no such day"),
            (
                "/v1/trades?fromTime=2026-01-02&toTime=2026-01-01",
                400,
                "inverted range: fromTime",
            ),
            ("/v1/trades?trader=0xzz", 400, "malformed address"),
            ("/v1/trades?limit=101", 400, "over the cap"),
            (
                "/v1/subjects/0x0000000000000000000000000000000000000001/holders?cursor=5",
                400,
                "malformed cursor",
            ),
            (
                "/v1/traders/0x0000000000000000000000000000000000000001",
                404,
                "has no trades",
            ),
            (
                "/v1/subjects/0x0000000000000000000000000000000000000001",
                404,
                "has no trades",
            ),
        ] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let got = response.status().as_u16();
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(got, status, "{uri}: {json}");
            let message = json["error"]["message"].as_str().unwrap_or_default();
            assert!(message.contains(needle), "{uri}: {message}");
        }
        // A market without trades: the windows and cohorts are empty, not errors.
        for (uri, field, empty) in [
            ("/v1/overview?window=7d", "from", serde_json::Value::Null),
            ("/v1/overview?window=30d", "trades", serde_json::json!(0)),
            ("/v1/retention?weeks=4", "cohorts", serde_json::json!([])),
            ("/v1/retention", "fromWeek", serde_json::Value::Null),
            (
                "/v1/traders/netflow?side=sellers",
                "leaders",
                serde_json::json!([]),
            ),
            ("/v1/traders/netflow", "to", serde_json::Value::Null),
        ] {
            let response = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 200, "{uri}");
            let body = axum::body::to_bytes(response.into_body(), 1 << 20)
                .await
                .unwrap();
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(json[field], empty, "{uri}: {json}");
        }
        // Snapshots whose first build fails (a subject without trades: 404 from inside the
        // build) leave no first-build gate behind, whatever the number of addresses asked.
        for i in 1..=3 {
            let uri = format!("/v1/subjects/0x{i:040x}/holders/daily");
            let response = app
                .clone()
                .oneshot(Request::get(&uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            assert_eq!(response.status().as_u16(), 404, "{uri}");
        }
        assert!(state.first_builds.lock().unwrap().is_empty());
        // A mistyped address (one letter's case flipped): the whole JSON body, and an address in
        // either case without a checksum, or with a valid one, is taken.
        let (status, body) = get_json(
            &app,
            "/v1/subjects/0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
        )
        .await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            serde_json::json!({"error": {
                "status": 400,
                "message": "address 0x5aaeb6053F3E94C9b9A09f33669435E7Ef1BeAed has a wrong \
                    EIP-55 checksum (a mistyped character?); the checksummed form of these \
                    digits is 0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed, but check the address \
                    itself before using it"
            }})
        );
        for address in [
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed",
            "0x5AAEB6053F3E94C9B9A09F33669435E7EF1BEAED",
        ] {
            let (status, body) = get_json(&app, &format!("/v1/subjects/{address}")).await;
            assert_eq!(status, 404, "{address}: {body}");
            let (status, body) = get_json(&app, &format!("/v1/trades?trader={address}")).await;
            assert_eq!(status, 200, "{address}: {body}");
        }
        // /healthz: a market registered, no batch committed yet.
        let (status, body) = get_json(&app, "/healthz").await;
        assert_eq!(status, 200);
        assert_eq!(body["status"], "ok", "{body}");
        assert_eq!(body["markets"][0]["state"], "starting", "{body}");
        assert_eq!(
            body["markets"][0]["headSeenSecondsAgo"],
            serde_json::Value::Null
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }

    /// A store whose market trades on 300 days from 2024-01-01 (day 19723): `stats_daily` says
    /// so, and 60,000 made-up trades spread over them give the net-flow builds work.
    async fn trading_store(name: &str) -> (keymarket_store::StoreWriter, std::path::PathBuf) {
        let (store, path) = temp_store(name).await;
        store.ensure_chain(31337, Default::default()).await.unwrap();
        store
            .ensure_market(31337, Default::default(), 1)
            .await
            .unwrap();
        sqlx::query(
            "WITH RECURSIVE d(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM d WHERE i < 299) \
             INSERT INTO stats_daily (market_id, day, trades, buys, sells, buy_volume_gwei, \
             buy_volume_rem, sell_volume_gwei, sell_volume_rem, protocol_gwei, protocol_rem, \
             subject_gwei, subject_rem, active_traders, new_traders, new_subjects) \
             SELECT 1, 19723 + i, 200, 200, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1 FROM d",
        )
        .execute(store.pool())
        .await
        .unwrap();
        sqlx::query(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < 60000) \
             INSERT INTO trades (chain_id, tx_hash, log_index, market_id, block_number, block_hash, \
             block_time, trader, subject, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, \
             protocol_rem, subject_gwei, subject_rem, supply) \
             SELECT 31337, printf('0x%064x', i), 0, 1, i, '0x00', (19723 + i % 300) * 86400 + 60, \
             printf('0x%040x', i % 5000), printf('0x%040x', i % 70), i % 2, 1, i, 0, 0, 0, 0, 0, i \
             FROM c",
        )
        .execute(store.pool())
        .await
        .unwrap();
        (store, path)
    }

    /// Heavy views under a flood: 200 windows that differ only in days without trades share one
    /// snapshot per view (the window is clamped to the trading days before it is the key, and
    /// echoed back clamped); 200 truly distinct windows are built at most two at a time.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn heavy_views_are_keyed_by_trading_days_and_built_two_at_a_time() {
        let (store, path) = trading_store("heavy").await;
        let state = AppState::new(store.reader());
        let app = router(state.clone());
        let date = |day: i64| crate::extract::format_date(day);
        let views = [
            "/v1/concentration",
            "/v1/traders/netflow",
            "/v1/price-index",
            "/v1/retention",
            "/v1/overview",
        ];
        let before = state.snapshots.lock().unwrap().len();
        let calls: Vec<_> = (0..200i64)
            .flat_map(|i| {
                views
                    .iter()
                    .map(move |v| format!("{v}?from={}", date(10_957 + i)))
            })
            .map(|uri| {
                let app = app.clone();
                tokio::spawn(async move { (get_json(&app, &uri).await, uri) })
            })
            .collect();
        for call in calls {
            let ((status, body), uri) = call.await.unwrap();
            assert_eq!(status, 200, "{uri}: {body}");
        }
        // One snapshot per view (net flow: its window's leaders and the slice asked for).
        let added = state.snapshots.lock().unwrap().len() - before;
        let keys: Vec<String> = state.snapshots.lock().unwrap().keys().cloned().collect();
        assert!(
            added <= views.len() + 1,
            "{added} snapshots for 1,000 requests: {keys:?}"
        );

        let (_, body) = get_json(&app, "/v1/concentration?from=2000-01-01").await;
        assert_eq!(body["from"], "2024-01-01", "echoed clamped: {body}");
        let (_, body) = get_json(&app, "/v1/traders/netflow?from=2000-01-01&to=2024-01-03").await;
        assert_eq!(
            (body["from"].as_str(), body["to"].as_str()),
            (Some("2024-01-01"), Some("2024-01-03"))
        );
        // Distinct windows inside the trading days: each its own build, two at a time.
        let calls: Vec<_> = (0..200i64)
            .map(|i| {
                let app = app.clone();
                let uri = format!(
                    "/v1/traders/netflow?from={}&to={}",
                    date(19_723 + i % 100),
                    date(19_723 + 100 + i)
                );
                tokio::spawn(async move { (get_json(&app, &uri).await, uri) })
            })
            .collect();
        let mut busy = 0;
        for call in calls {
            let ((status, body), uri) = call.await.unwrap();
            match status {
                200 => {}
                503 => busy += 1,
                _ => panic!("{uri}: {status} {body}"),
            }
        }
        let peak = state.heavy.peak.load(std::sync::atomic::Ordering::SeqCst);
        println!("heavy builds: at most {peak} at once; {busy} of 200 answered 503");
        assert!(
            peak <= crate::heavy::HEAVY_BUILDS,
            "{peak} heavy builds at once"
        );
        remove_db(&path);
    }
}
