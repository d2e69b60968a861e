//! The dashboard: one HTML page, its scripts and style, uPlot and ethers (from npm, pinned by
//! package-lock.json), all embedded in the binary at build time. The page reads the JSON API of
//! the same origin; its trade panel talks to the browser's wallet. The SQL box's reference
//! (docs/sql.md) is served at `/docs/sql`, so that the page links to nothing outside the server.

use std::sync::LazyLock;

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
const SQL_DOCS: &str = include_str!("../../docs/sql.md");

/// docs/sql.md as a minimal HTML page: the markdown itself, escaped, in a `<pre>`.
static SQL_DOCS_PAGE: LazyLock<String> = LazyLock::new(sql_docs_page);

fn sql_docs_page() -> String {
    let mut escaped = String::with_capacity(SQL_DOCS.len() + SQL_DOCS.len() / 20);
    for c in SQL_DOCS.chars() {
        match c {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            c => escaped.push(c),
        }
    }
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>keymarket: SQL over HTTP</title>\n<link rel=\"icon\" href=\"data:,\">\n\
         <style>body{{margin:0;padding:1rem;font:14px/1.45 system-ui,sans-serif;color:#1d2330}}\
         pre{{white-space:pre-wrap;overflow-wrap:anywhere;font:13px/1.45 ui-monospace,monospace}}\
         </style>\n</head>\n<body>\n<p><a href=\"/\">← the dashboard</a> · \
         docs/sql.md of this server's build</p>\n<pre>{escaped}</pre>\n</body>\n</html>\n"
    )
}

/// The dashboard's routes: `/`, `/assets/*` and `/docs/sql`.
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
            "/docs/sql",
            get(|| async {
                (
                    [(header::CACHE_CONTROL, "no-cache")],
                    Html(SQL_DOCS_PAGE.as_str()),
                )
            }),
        )
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
