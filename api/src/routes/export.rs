//! Downloads in Dune's layouts (see [`crate::export`]): the market's trades as `social.trades`
//! CSV or Parquet, streamed from the database as it is read, and the daily series as CSV or
//! Parquet.

use axum::{
    body::Body,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};
use keymarket_store::MarketRow;

use crate::{
    error::*,
    export::{
        ExportChunks, ExportError,
        daily::{daily_csv, daily_parquet, read_daily},
        parquet::social_trades_parquet,
        social_trades_csv,
    },
    extract::*,
    state::*,
};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Rows per streamed CSV chunk.
const CHUNK_ROWS: usize = 2_000;
/// Rows per Parquet record batch (row groups are larger; bytes leave as each one completes).
const BATCH_ROWS: usize = 8_192;

/// The content type of CSV answers.
const CSV: &str = "text/csv; charset=utf-8";
/// The content type of Parquet answers (registered with IANA in 2024).
const PARQUET: &str = "application/vnd.apache.parquet";

/// The market a request names (or the only one).
async fn market_row(s: &AppState, market: Option<i64>) -> Result<MarketRow, ApiError> {
    let id = market_id(s, market).await?;
    s.store
        .markets()
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("unknown market {id}; see /v1/markets")))
}

/// A download: the body with its type and file name.
fn attachment(content_type: &str, filename: String, body: Body) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        body,
    )
        .into_response()
}

impl From<ExportError> for ApiError {
    fn from(e: ExportError) -> Self {
        match e {
            ExportError::Store(e) => e.into(),
            other => ApiError::Internal(format!("export: {other}")),
        }
    }
}

/// The encodings of an export.
#[derive(Clone, Copy)]
enum Format {
    Csv,
    Parquet,
}

impl Format {
    fn content_type(self) -> &'static str {
        match self {
            Self::Csv => CSV,
            Self::Parquet => PARQUET,
        }
    }

    fn ext(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Parquet => "parquet",
        }
    }
}

/// Streams the market's trades as a download. The database stream borrows the store: a task
/// owns both and hands chunks over a small channel, so a slow client slows the reading instead
/// of filling memory.
async fn stream_trades(
    s: &AppState,
    market: Option<i64>,
    format: Format,
) -> Result<Response, ApiError> {
    let permit = s.exports.clone().try_acquire_owned().map_err(|_| {
        ApiError::TooManyRequests {
            message: format!(
                "{EXPORT_CONCURRENCY} trade exports are running already; retry when one has finished"
            ),
            retry_after: 30,
        }
    })?;
    let market = market_row(s, market).await?;
    let filename = format!(
        "keymarket-trades-{}-{}.{}",
        market.chain_id,
        market.address,
        format.ext()
    );
    let (mut tx, rx) = futures::channel::mpsc::channel(2);
    let store = s.store.clone();
    tokio::spawn(async move {
        // Held until the last chunk is handed over (or the client goes away).
        let _permit = permit;
        let trades = store.trades_in_order(market.id);
        let mut chunks: ExportChunks<'_> = match format {
            Format::Csv => Box::pin(social_trades_csv(trades, market, CHUNK_ROWS)),
            Format::Parquet => Box::pin(social_trades_parquet(trades, market, BATCH_ROWS)),
        };
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            if let Err(e) = &chunk {
                tracing::error!(target: "api", error = %e, "trade export failed midway");
            }
            // Parquet chunks are empty while a row group fills.
            if matches!(&chunk, Ok((bytes, _)) if bytes.is_empty()) {
                continue;
            }
            if tx.send(chunk.map(|(bytes, _)| bytes)).await.is_err() || failed {
                break;
            }
        }
    });
    Ok(attachment(
        format.content_type(),
        filename,
        Body::from_stream(rx),
    ))
}

/// The market's daily series as a download.
async fn daily_file(
    s: &AppState,
    market: Option<i64>,
    format: Format,
) -> Result<Response, ApiError> {
    let market = market_row(s, market).await?;
    let rows = read_daily(&s.store, market.id).await?;
    let bytes = match format {
        Format::Csv => daily_csv(&rows),
        Format::Parquet => daily_parquet(&rows),
    }?;
    let filename = format!(
        "keymarket-daily-{}-{}.{}",
        market.chain_id,
        market.address,
        format.ext()
    );
    Ok(attachment(
        format.content_type(),
        filename,
        Body::from(bytes),
    ))
}

/// Every trade of the market, oldest first, as CSV in the column layout of Dune spellbook's
/// `social.trades` (ETH amounts as exact decimals, USD columns empty). Streamed: the response
/// starts at once and memory stays flat whatever the size.
#[utoipa::path(get, path = "/v1/export/trades.csv", params(MarketQuery), responses((status = 200, description = "CSV: blockchain, block_time, block_month, block_number, project, trader, subject, trade_side, amount_original, amount_usd, share_amount, subject_fee_amount, subject_fee_amount_usd, protocol_fee_amount, protocol_fee_amount_usd, currency_contract, currency_symbol, supply, tx_hash, evt_index, contract_address", content_type = "text/csv"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn export_trades(
    State(s): State<AppState>,
    Q(q): Q<MarketQuery>,
) -> Result<Response, ApiError> {
    stream_trades(&s, q.market, Format::Csv).await
}

/// Every trade of the market, oldest first, as a Parquet file in the column layout of Dune
/// spellbook's `social.trades`, with the CSV's values typed: `block_time` a UTC timestamp
/// (microseconds), `block_month` a date, `block_number`, `share_amount`, `supply` and
/// `evt_index` 64-bit integers, the ETH amounts `DECIMAL(38, 18)` (exact to the wei), addresses
/// and hashes strings, the USD columns null doubles. Snappy-compressed, row groups of at most
/// 131,072 rows. Streamed: each row group is sent as soon as it is encoded.
#[utoipa::path(get, path = "/v1/export/trades.parquet", params(MarketQuery), responses((status = 200, description = "Parquet with the columns of /v1/export/trades.csv, typed", content_type = "application/vnd.apache.parquet"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn export_trades_parquet(
    State(s): State<AppState>,
    Q(q): Q<MarketQuery>,
) -> Result<Response, ApiError> {
    stream_trades(&s, q.market, Format::Parquet).await
}

/// The market's daily (UTC) series as CSV: every day with trades, oldest first, the whole
/// history in one file, with the figures of `/v1/daily` (exact ETH decimals).
#[utoipa::path(get, path = "/v1/export/daily.csv", params(MarketQuery), responses((status = 200, description = "CSV: day (YYYY-MM-DD), trades, buys, sells, volume_eth (buy + sell volume), buy_volume_eth, sell_volume_eth, protocol_revenue_eth (net of referral payouts), gross_protocol_fees_eth, referral_payouts_eth, subject_revenue_eth, active_traders, new_traders, returning_traders, new_subjects", content_type = "text/csv"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn export_daily(
    State(s): State<AppState>,
    Q(q): Q<MarketQuery>,
) -> Result<Response, ApiError> {
    daily_file(&s, q.market, Format::Csv).await
}

/// The market's daily (UTC) series as Parquet: the columns of `/v1/export/daily.csv`, `day` a
/// date, the counts 64-bit integers, the ETH columns `DECIMAL(38, 18)`.
#[utoipa::path(get, path = "/v1/export/daily.parquet", params(MarketQuery), responses((status = 200, description = "Parquet with the columns of /v1/export/daily.csv, typed", content_type = "application/vnd.apache.parquet"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn export_daily_parquet(
    State(s): State<AppState>,
    Q(q): Q<MarketQuery>,
) -> Result<Response, ApiError> {
    daily_file(&s, q.market, Format::Parquet).await
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export_trades))
        .routes(routes!(export_trades_parquet))
        .routes(routes!(export_daily))
        .routes(routes!(export_daily_parquet))
}

#[cfg(test)]
mod tests {
    use axum::{body::Body, http::Request};
    use tower::ServiceExt;

    use crate::{AppState, router};

    /// The export routes through the router in-process over a temporary SQLite store holding one
    /// market without trades: bad input gets a 4xx JSON error; good input a download.
    #[tokio::test]
    async fn export_routes_answer_downloads_and_json_errors() {
        let path =
            std::env::temp_dir().join(format!("keymarket-api-export-{}.db", std::process::id()));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = keymarket_store::StoreWriter::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        store.ensure_chain(8453, Default::default()).await.unwrap();
        store
            .ensure_market(8453, Default::default(), 1)
            .await
            .unwrap();
        let state = AppState::new(store.reader());
        let app = router(state.clone());
        let get = async |uri: &str| {
            let resp = app
                .clone()
                .oneshot(Request::get(uri).body(Body::empty()).unwrap())
                .await
                .unwrap();
            let status = resp.status().as_u16();
            let header = |name: &str| {
                resp.headers()
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default()
            };
            let (content_type, disposition) =
                (header("content-type"), header("content-disposition"));
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, content_type, disposition, body)
        };
        for (uri, status, needle) in [
            (
                "/v1/export/trades.parquet?market=99",
                404,
                "unknown market 99",
            ),
            ("/v1/export/daily.csv?market=99", 404, "unknown market 99"),
            ("/v1/export/daily.parquet?market=x", 400, "market"),
            ("/v1/export/daily.csv?from=2023-01-01", 400, "unknown field"),
            ("/v1/export/trades.xlsx", 404, "no such endpoint"),
            ("/v1/export/daily.json", 404, "no such endpoint"),
        ] {
            let (got, content_type, _, body) = get(uri).await;
            assert_eq!(got, status, "{uri}");
            assert!(
                content_type.starts_with("application/json"),
                "{uri}: {content_type}"
            );
            let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
            let message = json["error"]["message"].as_str().unwrap();
            assert!(message.contains(needle), "{uri}: {message}");
        }
        let file = "keymarket-trades-8453-0x0000000000000000000000000000000000000000";
        for (uri, content_type, filename) in [
            ("/v1/export/trades.csv", "text/csv", format!("{file}.csv")),
            (
                "/v1/export/trades.parquet",
                "application/vnd.apache.parquet",
                format!("{file}.parquet"),
            ),
            (
                "/v1/export/daily.csv",
                "text/csv",
                file.replace("trades", "daily") + ".csv",
            ),
            (
                "/v1/export/daily.parquet",
                "application/vnd.apache.parquet",
                file.replace("trades", "daily") + ".parquet",
            ),
        ] {
            let (status, got_type, disposition, body) = get(uri).await;
            assert_eq!(status, 200, "{uri}");
            assert!(got_type.starts_with(content_type), "{uri}: {got_type}");
            assert_eq!(disposition, format!("attachment; filename=\"{filename}\""));
            if content_type == "text/csv" {
                // No rows: the header alone.
                assert_eq!(String::from_utf8_lossy(&body).lines().count(), 1, "{uri}");
            } else {
                // A complete Parquet file of no rows.
                assert!(
                    body.starts_with(b"PAR1") && body.ends_with(b"PAR1"),
                    "{uri}"
                );
            }
        }
        // While as many trade exports as allowed are streaming, another one is answered 429;
        // once they finish, it goes through.
        let running = state
            .exports
            .clone()
            .try_acquire_many_owned(crate::state::EXPORT_CONCURRENCY as u32)
            .unwrap();
        let (status, _, _, body) = get("/v1/export/trades.csv").await;
        assert_eq!(status, 429);
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        let message = json["error"]["message"].as_str().unwrap();
        assert!(
            message.contains("trade exports are running already"),
            "{message}"
        );
        drop(running);
        assert_eq!(get("/v1/export/trades.csv").await.0, 200);
        assert_eq!(
            state.exports.available_permits(),
            crate::state::EXPORT_CONCURRENCY,
            "a finished export gives its place back"
        );
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
    }
}
