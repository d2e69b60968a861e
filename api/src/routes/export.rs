//! Downloads in Dune's layouts (see [`crate::export`]): the market's trades as `social.trades`
//! CSV, streamed from the database as it is read.

use axum::{
    body::Body,
    extract::State,
    http::header,
    response::{IntoResponse, Response},
};
use futures::{SinkExt, StreamExt};

use crate::{error::*, export::social_trades_csv, extract::*, state::*};

/// Rows per streamed chunk.
const CHUNK_ROWS: usize = 2_000;

/// Every trade of the market, oldest first, as CSV in the column layout of Dune spellbook's
/// `social.trades` (ETH amounts as exact decimals, USD columns empty). Streamed: the response
/// starts at once and memory stays flat whatever the size.
#[utoipa::path(get, path = "/v1/export/trades.csv", params(MarketQuery), responses((status = 200, description = "CSV: blockchain, block_time, block_month, block_number, project, trader, subject, trade_side, amount_original, amount_usd, share_amount, subject_fee_amount, subject_fee_amount_usd, protocol_fee_amount, protocol_fee_amount_usd, currency_contract, currency_symbol, supply, tx_hash, evt_index, contract_address", content_type = "text/csv"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(crate) async fn export_trades(
    State(s): State<AppState>,
    Q(q): Q<MarketQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let market = s
        .store
        .markets()
        .await?
        .into_iter()
        .find(|m| m.id == id)
        .ok_or_else(|| ApiError::NotFound(format!("unknown market {id}; see /v1/markets")))?;
    let filename = format!(
        "keymarket-trades-{}-{}.csv",
        market.chain_id, market.address
    );
    // The database stream borrows the store: a task owns both and hands chunks over a small
    // channel, so a slow client slows the reading instead of filling memory.
    let (mut tx, rx) = futures::channel::mpsc::channel(2);
    let store = s.store.clone();
    tokio::spawn(async move {
        let mut chunks = std::pin::pin!(social_trades_csv(
            store.trades_in_order(id),
            market,
            CHUNK_ROWS
        ));
        while let Some(chunk) = chunks.next().await {
            let failed = chunk.is_err();
            if let Err(e) = &chunk {
                tracing::error!(target: "api", error = %e, "trade export failed midway");
            }
            if tx.send(chunk.map(|(bytes, _)| bytes)).await.is_err() || failed {
                break;
            }
        }
    });
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_string()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{filename}\""),
            ),
        ],
        Body::from_stream(rx),
    )
        .into_response())
}
