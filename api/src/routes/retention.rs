//! Weekly retention cohorts.

use crate::{error::*, extract::*, snapshot::*, state::*, types::*};
use axum::{extract::State, response::Response};
use keymarket_store::{WeekRange, week_of, week_start};
use utoipa_axum::{router::OpenApiRouter, routes};

/// Weekly retention cohorts: traders grouped by the week of their first trade (weeks start on
/// Monday 00:00 UTC), each cohort's size, and for week offsets 0, 1, 2, … how many of its
/// traders traded in that week. From the per-trader aggregates (first trade, days traded), not
/// the trades. Served from a snapshot (fresh ≥ 1 s and ≥ 20 times its build time).
#[utoipa::path(get, path = "/v1/retention", params(RetentionQuery), responses((status = 200, body = Retention), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody), (status = 503, body = ErrorBody, description = "two heavy views are being built for other requests (at most two at once; a request waits up to 10 s for its turn): retry after `Retry-After` seconds")))]
pub(crate) async fn retention(
    State(s): State<AppState>,
    Q(q): Q<RetentionQuery>,
) -> Result<Response, ApiError> {
    let id = market_id(&s, q.market).await?;
    let (from, to, weeks) = q.range()?;
    // Keyed by the weeks with trades the window covers (echoed back as `fromWeek`, `toWeek`).
    let range = trading_window(&s, id, (from, to)).await?.map(|w| {
        let (first, last) = (week_of(w.from), week_of(w.to));
        WeekRange {
            from: weeks.map_or(first, |n| first.max(last - n + 1)),
            to: last,
        }
    });
    let key = range.map(|r| format!("retention {id} {} {}", r.from, r.to));
    snapshot_if(&s, key, HEAVY, || async {
        let cohorts = match range {
            Some(r) if r.from <= r.to => s.store.retention(id, r).await?,
            _ => Vec::new(),
        };
        let shown = range.filter(|r| r.from <= r.to);
        to_json(&Retention {
            market: id,
            from_week: shown.map(|r| format_date(week_start(r.from))),
            to_week: shown.map(|r| format_date(week_start(r.to))),
            cohorts: cohorts
                .into_iter()
                .map(|c| RetentionCohort {
                    week: format_date(week_start(c.week)),
                    size: c.size,
                    active: c.active,
                })
                .collect(),
        })
    })
    .await
}

/// This module's endpoints, each registered with its OpenAPI path (from its `#[utoipa::path]`).
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(retention))
}
