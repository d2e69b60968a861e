//! `POST /v1/sql`: one read-only SQL query over the indexed tables (see docs/sql.md), answered
//! as JSON, or as CSV with `Accept: text/csv`.

use crate::{error::*, state::*};
use axum::{
    Json,
    body::Bytes,
    extract::State,
    http::{HeaderMap, HeaderValue, header},
    response::{IntoResponse, Response},
};
use keymarket_store::SqlResult;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A query.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One read-only statement (SQLite or PostgreSQL, whichever the server indexes into),
    /// e.g. `SELECT subject, count(*) FROM trades GROUP BY subject ORDER BY 2 DESC LIMIT 10`.
    pub sql: String,
}

/// A query's result.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SqlResponse {
    /// The column names, in order.
    pub columns: Vec<String>,
    /// The rows, one value per column: null, a boolean, a number (integers and floats), or a
    /// string (text, `0x…` hex bytes, and exact decimals that are not 64-bit integers).
    #[schema(value_type = Vec<Vec<serde_json::Value>>)]
    pub rows: Vec<Vec<keymarket_store::Cell>>,
    /// Whether the result was cut at the row cap (10,000 rows by default).
    pub truncated: bool,
    /// Rows returned.
    pub row_count: usize,
}

/// Runs one read-only SQL query. With `Accept: text/csv` the answer is CSV (a header row, then
/// the rows; `X-Truncated: true` when cut at the row cap).
#[utoipa::path(
    post,
    path = "/v1/sql",
    request_body = SqlRequest,
    responses(
        (status = 200, description = "the result: JSON, or CSV with Accept: text/csv", content((SqlResponse = "application/json"), (String = "text/csv"))),
        (status = 400, body = ErrorBody, description = "empty, malformed or several statements, or the database refused it (its message)"),
        (status = 403, body = ErrorBody, description = "the query would write or change the database or the connection"),
        (status = 404, body = ErrorBody, description = "SQL queries are off on this server"),
        (status = 422, body = ErrorBody, description = "the query ran past the time limit and was stopped"),
        (status = 429, body = ErrorBody, description = "too many queries running")
    )
)]
pub(crate) async fn sql_query(
    State(s): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let Some(sql) = &s.sql else {
        return Err(ApiError::NotFound(
            "SQL queries are off on this server: start it with `keymarket serve --sql` (or KEYMARKET_SQL=true); `keymarket up` has them on".into(),
        ));
    };
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be JSON like {{\"sql\": \"SELECT …\"}}: {e}"
        ))
    })?;
    if request.sql.trim().is_empty() {
        return Err(ApiError::BadRequest("the query is empty".into()));
    }
    let Ok(_permit) = sql.running.try_acquire() else {
        return Err(ApiError::TooManyRequests(format!(
            "{SQL_CONCURRENCY} SQL queries are running already; retry when one has finished"
        )));
    };
    let result = sql.runner.run(&request.sql).await?;
    let csv = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")));
    if csv {
        return to_csv(&result);
    }
    Ok(Json(SqlResponse {
        row_count: result.rows.len(),
        columns: result.columns,
        rows: result.rows,
        truncated: result.truncated,
    })
    .into_response())
}

fn to_csv(result: &SqlResult) -> Result<Response, ApiError> {
    let internal = |e: csv::Error| ApiError::Internal(format!("writing CSV: {e}"));
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record(&result.columns).map_err(internal)?;
    for row in &result.rows {
        w.write_record(row.iter().map(|c| c.to_text()))
            .map_err(internal)?;
    }
    let body = w
        .into_inner()
        .map_err(|e| ApiError::Internal(format!("writing CSV: {e}")))?;
    Ok((
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/csv; charset=utf-8"),
            ),
            (
                header::CONTENT_DISPOSITION,
                HeaderValue::from_static("attachment; filename=\"query.csv\""),
            ),
            (
                header::HeaderName::from_static("x-truncated"),
                HeaderValue::from_static(if result.truncated { "true" } else { "false" }),
            ),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{
        Router,
        body::Body,
        http::{Request, StatusCode},
    };
    use keymarket_store::{SqlLimits, Store};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::{AppState, router};

    /// A SQLite file with one market and `trades` made-up trades.
    async fn store(name: &str, trades: u32) -> Store {
        let path = std::env::temp_dir().join(format!(
            "keymarket-api-sql-{name}-{}.db",
            std::process::id()
        ));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = Store::connect(&format!("sqlite:{}", path.display()))
            .await
            .unwrap();
        store.ensure_chain(31337, Default::default()).await.unwrap();
        store
            .ensure_market(31337, Default::default(), 1)
            .await
            .unwrap();
        insert_trades(&store, trades).await;
        store
    }

    /// Writes made-up trades straight into the file (only their count and shape matter here).
    async fn insert_trades(store: &Store, trades: u32) {
        sqlx::query(
            "WITH RECURSIVE c(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM c WHERE i < $1) \
             INSERT INTO trades (chain_id, tx_hash, log_index, market_id, block_number, block_hash, \
             block_time, trader, subject, is_buy, share_amount, eth_gwei, eth_rem, protocol_gwei, \
             protocol_rem, subject_gwei, subject_rem, supply) \
             SELECT 31337, printf('0x%064x', i), 0, 1, i, '0x00', 1700000000 + i, \
             printf('0x%040x', i), printf('0x%040x', i % 7), i % 2, 1, 2 * i, 0, 0, 0, 0, 0, i \
             FROM c",
        )
        .bind(trades as i64)
        .execute(store.pool())
        .await
        .unwrap();
    }

    async fn post(app: &Router, body: Value, accept: &str) -> (StatusCode, String, String) {
        let response = app
            .clone()
            .oneshot(
                Request::post("/v1/sql")
                    .header("content-type", "application/json")
                    .header("accept", accept)
                    .body(Body::from(body.to_string()))
                    .unwrap(),
            )
            .await
            .unwrap();
        let status = response.status();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let body = axum::body::to_bytes(response.into_body(), 1 << 24)
            .await
            .unwrap();
        (
            status,
            content_type,
            String::from_utf8(body.to_vec()).unwrap(),
        )
    }

    fn message(body: &str) -> String {
        let json: Value = serde_json::from_str(body).unwrap_or_default();
        json["error"]["message"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    #[tokio::test]
    async fn sql_endpoint_answers_each_case_with_its_status_and_a_json_body() {
        let store = store("statuses", 2000).await;
        let off = router(AppState::new(store.clone()));
        let (status, _, body) = post(&off, json!({"sql": "SELECT 1"}), "application/json").await;
        assert_eq!(status, 404, "{body}");
        assert!(message(&body).contains("--sql"), "{body}");

        let app = router(AppState::new(store.clone()).with_sql(SqlLimits {
            time_limit: Duration::from_millis(200),
            max_rows: 1000,
        }));
        for (body, status, needle) in [
            (json!({"sql": ""}), 400, "empty"),
            (json!({"sql": "   "}), 400, "empty"),
            (json!({}), 400, "missing field `sql`"),
            (json!({"sql": 1}), 400, "must be JSON"),
            (json!({"sql": "SELECT 1", "x": 2}), 400, "unknown field"),
            (json!({"sql": "SELEC 1"}), 400, "syntax error"),
            (
                json!({"sql": "SELECT * FROM no_such_table"}),
                400,
                "no such table",
            ),
            (
                json!({"sql": "SELECT 1; DELETE FROM trades"}),
                400,
                "exactly one statement",
            ),
            (json!({"sql": "DELETE FROM trades"}), 403, "only queries"),
            (json!({"sql": "DROP TABLE trades"}), 403, "only queries"),
            (
                json!({"sql": "ATTACH ':memory:' AS m"}),
                403,
                "only queries",
            ),
            (
                json!({"sql": "WITH x AS (SELECT 1) DELETE FROM trades"}),
                403,
                "read-only",
            ),
            (
                json!({"sql": "SELECT count(*) FROM trades a, trades b, trades c"}),
                422,
                "the query ran for longer than 200 ms and was stopped",
            ),
        ] {
            let (got, content_type, text) = post(&app, body.clone(), "application/json").await;
            assert_eq!(got.as_u16(), status, "{body}: {text}");
            assert_eq!(content_type, "application/json", "{body}");
            let json: Value = serde_json::from_str(&text).unwrap();
            assert_eq!(json["error"]["status"], status, "{body}: {text}");
            assert!(message(&text).contains(needle), "{body}: {text}");
        }
        let (status, _, body) = post(
            &app,
            json!({"sql": "SELECT count(*) AS n FROM trades"}),
            "application/json",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"columns": ["n"], "rows": [[2000]], "truncated": false, "rowCount": 1})
        );
    }

    #[tokio::test]
    async fn sql_endpoint_answers_json_or_csv_and_caps_rows() {
        let store = store("shape", 30).await;
        let app = router(AppState::new(store).with_sql(SqlLimits {
            max_rows: 25,
            ..SqlLimits::default()
        }));
        let sql = "SELECT block_number AS block, trader, eth_gwei * 1.5 AS f, NULL AS missing \
                   FROM trades ORDER BY block_number";
        let (status, content_type, body) = post(&app, json!({ "sql": sql }), "*/*").await;
        assert_eq!(
            (status.as_u16(), content_type.as_str()),
            (200, "application/json")
        );
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["columns"], json!(["block", "trader", "f", "missing"]));
        assert_eq!(json["rowCount"], 25);
        assert_eq!(json["truncated"], true);
        assert_eq!(json["rows"].as_array().unwrap().len(), 25);
        assert_eq!(
            json["rows"][1],
            json!([2, format!("0x{:040x}", 2), 6.0, null])
        );

        let (status, content_type, csv) =
            post(&app, json!({ "sql": sql }), "text/csv, */*;q=0.1").await;
        assert_eq!(status, 200);
        assert_eq!(content_type, "text/csv; charset=utf-8");
        let lines: Vec<&str> = csv.lines().collect();
        assert_eq!(lines.len(), 26, "{csv}");
        assert_eq!(lines[0], "block,trader,f,missing");
        assert_eq!(lines[2], format!("2,0x{:040x},6,", 2));

        // Quoting: a comma and a quote in a value.
        let (_, _, csv) = post(
            &app,
            json!({"sql": "SELECT 'a,b' AS x, 'say \"hi\"' AS y"}),
            "text/csv",
        )
        .await;
        assert_eq!(csv, "x,y\n\"a,b\",\"say \"\"hi\"\"\"\n");
    }

    /// A runaway query holds one of the SQL connections until its limit; meanwhile the rest of
    /// the API keeps answering: 50 overview requests all complete while it still runs (checked
    /// by order of events, not by time), then it ends with 422.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runaway_query_is_stopped_while_other_requests_are_served() {
        let store = store("runaway", 3000).await;
        let state = AppState::new(store).with_sql(SqlLimits {
            time_limit: Duration::from_secs(5),
            ..SqlLimits::default()
        });
        let sql = state.sql.clone().unwrap();
        let app = router(state);
        let runaway = tokio::spawn({
            let app = app.clone();
            async move {
                post(
                    &app,
                    json!({"sql": "SELECT count(*) FROM trades a, trades b, trades c"}),
                    "application/json",
                )
                .await
            }
        });
        // Running: it holds its permit.
        while sql.running.available_permits() == crate::state::SQL_CONCURRENCY {
            tokio::task::yield_now().await;
        }
        let overviews: Vec<_> = (0..50)
            .map(|_| {
                let app = app.clone();
                tokio::spawn(async move {
                    app.oneshot(Request::get("/v1/overview").body(Body::empty()).unwrap())
                        .await
                        .unwrap()
                        .status()
                })
            })
            .collect();
        let mut statuses = Vec::new();
        for o in overviews {
            statuses.push(o.await.unwrap());
        }
        assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
        assert!(
            !runaway.is_finished(),
            "the runaway query answered before the 50 overviews"
        );
        let (status, _, body) = runaway.await.unwrap();
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains("longer than 5 s"), "{body}");
    }
}
