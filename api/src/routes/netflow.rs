//! Net-flow leaders ("whales").

use crate::{error::*, extract::*, snapshot::*, state::*, types::*};
use axum::{extract::State, response::Response};
use keymarket_store::{DayRange, NetFlowRow, amount::Wei};
use serde::{Deserialize, Serialize};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Days in the default window (ending at the last day with trades).
const DEFAULT_DAYS: i64 = 30;

/// The largest net buyers or net sellers over a window of UTC days: per trader, Σ ethAmount of
/// its buys − Σ ethAmount of its sells (the price before fees, exact to the wei and signed),
/// with what it bought and sold and its trades. Default window: the last 30 days of data.
/// Ties by address. A window spans at most 366 days of trading. Served from a snapshot of the window's 100 largest of each side (fresh
/// ≥ 1 s and ≥ 20 times its build time).
#[utoipa::path(get, path = "/v1/traders/netflow", params(NetFlowQuery), responses((status = 200, body = NetFlowLeaders), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody, description = "two heavy views are being built for other requests (at most two at once; a request waits up to 10 s for its turn): retry after `Retry-After` seconds")))]
pub(crate) async fn net_flow(
    State(s): State<AppState>,
    Q(q): Q<NetFlowQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let (from, to) = day_range(q.from.as_deref(), q.to.as_deref())?;
    let sellers = q.side == Some(FlowSide::Sellers);
    let limit = limit(q.limit)?;
    let (from, to) = (q.from.as_ref().map(|_| from), q.to.as_ref().map(|_| to));
    // The window — by default the last 30 days of data — keyed by the days with trades it
    // covers (echoed back as `from` and `to`).
    let window = match s.store.day_span(id).await? {
        Some(span) => {
            let to = to.unwrap_or(span.to);
            let from = from.unwrap_or(to - (DEFAULT_DAYS - 1));
            let (from, to) = (from.max(span.from), to.min(span.to));
            (from <= to).then_some((from, to))
        }
        None => None,
    };
    if let Some((from, to)) = window
        && to - from + 1 > MAX_WINDOW_DAYS
    {
        return Err(ApiError::BadRequest(format!(
            "the window spans {} days of trading; net flow takes at most {MAX_WINDOW_DAYS}: \
             narrow `from` and `to`",
            to - from + 1
        )));
    }
    let key = format!("netflow {id} {window:?} {sellers} {limit}");
    snapshot_with(&s, key, SLICE, || async {
        // Both sides of the window, whatever the side and limit asked for.
        let leaders = format!("netflow leaders {id} {window:?}");
        let bytes = snapshot_bytes(&s, leaders, HEAVY, || async {
            let Some((from, to)) = window else {
                // Nothing traded in the window.
                return to_json(&Snapshot::default());
            };
            let l = s
                .store
                .net_flow_leaders(id, DayRange { from, to }, MAX_LIMIT as usize)
                .await?;
            to_json(&Snapshot {
                window: Some((from, to)),
                traders: l.traders,
                buyers: l.buyers.into_iter().map(Flow::from).collect(),
                sellers: l.sellers.into_iter().map(Flow::from).collect(),
            })
        })
        .await?;
        let snap: Snapshot =
            serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(e.to_string()))?;
        let rows = if sellers { snap.sellers } else { snap.buyers };
        to_json(&NetFlowLeaders {
            market: id,
            from: snap.window.map(|w| format_date(w.0)),
            to: snap.window.map(|w| format_date(w.1)),
            side: if sellers { "sellers" } else { "buyers" }.into(),
            traders: snap.traders,
            leaders: rows
                .into_iter()
                .take(limit as usize)
                .map(Flow::shown)
                .collect(),
        })
    })
    .await
}

/// A window's leaders as kept in the snapshot cache.
#[derive(Default, Serialize, Deserialize)]
struct Snapshot {
    /// (first day, last day); `None` when the market has no trade.
    window: Option<(i64, i64)>,
    traders: i64,
    buyers: Vec<Flow>,
    sellers: Vec<Flow>,
}

/// One trader's flows: amounts as (gwei, remainder) sums.
#[derive(Serialize, Deserialize)]
struct Flow {
    trader: String,
    trades: i64,
    buys: i64,
    sells: i64,
    bought: (i64, i64),
    sold: (i64, i64),
}

impl From<NetFlowRow> for Flow {
    fn from(r: NetFlowRow) -> Self {
        Self {
            trader: r.trader,
            trades: r.trades,
            buys: r.buys,
            sells: r.sells,
            bought: (r.bought.gwei, r.bought.rem),
            sold: (r.sold.gwei, r.sold.rem),
        }
    }
}

impl Flow {
    fn shown(self) -> NetFlowTrader {
        let wei = |(gwei, rem)| Wei { gwei, rem };
        let (bought, sold) = (wei(self.bought), wei(self.sold));
        NetFlowTrader {
            trader: self.trader,
            net_flow: Amount::from_wei(bought.to_decimal_wei() - sold.to_decimal_wei()),
            bought: Amount::of(bought),
            sold: Amount::of(sold),
            trades: self.trades,
            buys: self.buys,
            sells: self.sells,
        }
    }
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(net_flow))
}
