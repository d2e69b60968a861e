//! The dashboard: one HTML page, its scripts and style, uPlot and ethers (from npm, pinned by
//! package-lock.json), all embedded in the binary at build time. The page reads the JSON API of
//! the same origin; its trade panel talks to the browser's wallet.

use axum::{
    Router,
    http::header,
    response::{Html, IntoResponse},
    routing::get,
};

const INDEX: &str = include_str!("../dashboard/index.html");
const APP_JS: &str = include_str!("../dashboard/app.js");
const TRADE_JS: &str = include_str!("../dashboard/trade.js");
const SQL_JS: &str = include_str!("../dashboard/sql.js");
const COHORTS_JS: &str = include_str!("../dashboard/cohorts.js");
const ETHERS_JS: &str = include_str!("../../node_modules/ethers/dist/ethers.umd.min.js");
const APP_CSS: &str = include_str!("../dashboard/app.css");
const UPLOT_JS: &str = include_str!("../../node_modules/uplot/dist/uPlot.iife.min.js");
const UPLOT_CSS: &str = include_str!("../../node_modules/uplot/dist/uPlot.min.css");

/// The dashboard's routes: `/` and `/assets/*`.
pub fn routes<S: Clone + Send + Sync + 'static>() -> Router<S> {
    let asset = |mime: &'static str, body: &'static str| {
        get(move || async move {
            (
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                body,
            )
                .into_response()
        })
    };
    Router::new()
        .route("/", get(|| async { Html(INDEX) }))
        .route(
            "/assets/app.js",
            asset("text/javascript; charset=utf-8", APP_JS),
        )
        .route(
            "/assets/trade.js",
            asset("text/javascript; charset=utf-8", TRADE_JS),
        )
        .route(
            "/assets/sql.js",
            asset("text/javascript; charset=utf-8", SQL_JS),
        )
        .route(
            "/assets/cohorts.js",
            asset("text/javascript; charset=utf-8", COHORTS_JS),
        )
        .route(
            "/assets/ethers.js",
            asset("text/javascript; charset=utf-8", ETHERS_JS),
        )
        .route("/assets/app.css", asset("text/css; charset=utf-8", APP_CSS))
        .route(
            "/assets/uplot.js",
            asset("text/javascript; charset=utf-8", UPLOT_JS),
        )
        .route(
            "/assets/uplot.css",
            asset("text/css; charset=utf-8", UPLOT_CSS),
        )
}
