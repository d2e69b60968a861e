//! The OpenAPI document, generated from the handlers and the JSON types.

use crate::routes::{
    export::*, market::*, netflow::*, prices::*, retention::*, sql::*, subjects::*, traders::*,
    trades::*,
};
use axum::Json;
use utoipa::OpenApi;

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
        concentration,
        retention,
        net_flow,
        price_index,
        top_subjects,
        top_traders,
        top_referrers,
        subject,
        holders,
        subject_daily,
        holders_daily,
        trader,
        trader_holdings,
        trades,
        export_trades,
        export_trades_parquet,
        export_daily,
        export_daily_parquet,
        sql_query
    )
)]
pub struct ApiDoc;

pub(crate) async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
