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
use utoipa_axum::{router::OpenApiRouter, routes};

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
        (status = 405, body = ErrorBody, description = "a method other than POST (`Allow: POST`)"),
        (status = 413, body = ErrorBody, description = "the body is over 256 KiB"),
        (status = 422, body = ErrorBody, description = "the query ran past the time limit (5 s by default, writing the answer out included) and was stopped, or its answer is over the size limits (16 MiB in all, 1 MiB per value, counted as JSON): refused, not cut"),
        (status = 429, body = ErrorBody, description = "this client has a query running already (one per client), or two queries are running; `Retry-After` says when to retry")
    )
)]
pub(crate) async fn sql_query(
    State(s): State<AppState>,
    headers: HeaderMap,
    extensions: axum::http::Extensions,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<Response, ApiError> {
    let Some(sql) = &s.sql else {
        return Err(ApiError::NotFound(
            "SQL queries are off on this server: start it with `keymarket serve --sql` (or KEYMARKET_SQL=true); `keymarket up` has them on".into(),
        ));
    };
    let body = body.map_err(|e| match e.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge(format!(
            "the body is over the limit of {} KiB for one query",
            SQL_BODY_LIMIT >> 10
        )),
        _ => ApiError::BadRequest(format!("the body could not be read: {e}")),
    })?;
    let request: SqlRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::BadRequest(format!(
            "the body must be JSON like {{\"sql\": \"SELECT …\"}}: {e}"
        ))
    })?;
    if request.sql.trim().is_empty() {
        return Err(ApiError::BadRequest("the query is empty".into()));
    }
    let client = extensions
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
        .map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |c| c.0.ip());
    let limit = sql.runner.limits().time_limit;
    // A query's turn ends by the time limit: a client retrying after it finds its place free.
    let retry_after = limit.as_secs().max(1);
    let _turn = sql.turn(client).map_err(|busy| ApiError::TooManyRequests {
        message: match busy {
            SqlBusy::Client => format!(
                "you have {SQL_PER_CLIENT} SQL query running already (at most {SQL_PER_CLIENT} per client); retry when it has finished"
            ),
            SqlBusy::Server => format!(
                "{SQL_CONCURRENCY} SQL queries are running already; retry when one has finished"
            ),
        },
        retry_after,
    })?;
    let csv = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")));
    // The time limit covers the whole answer, written out included (the database stops the
    // query itself at the limit; this bounds the rest).
    let answer = async {
        let result = sql.runner.run(&request.sql).await?;
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
    };
    match tokio::time::timeout(limit + std::time::Duration::from_secs(1), answer).await {
        Ok(answer) => answer,
        Err(_) => Err(keymarket_store::SqlError::TimedOut(limit).into()),
    }
}

/// The largest body `POST /v1/sql` takes: one query's text and its JSON wrapping.
pub(crate) const SQL_BODY_LIMIT: usize = 256 << 10;

/// `GET` (or any other method but `POST`) on `/v1/sql`: a 405 that says how to ask.
pub(crate) async fn sql_wrong_method() -> ApiError {
    ApiError::MethodNotAllowed {
        message: "send the query with POST, as JSON like {\"sql\": \"SELECT …\"}".into(),
        allow: "POST",
    }
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

/// `POST /v1/sql`, registered with its OpenAPI path, with its body limit and its answer to other
/// methods.
pub(crate) fn routes() -> OpenApiRouter<AppState> {
    let (schemas, paths, method) = routes!(sql_query);
    OpenApiRouter::new().routes((
        schemas,
        paths,
        method
            .layer(axum::extract::DefaultBodyLimit::max(SQL_BODY_LIMIT))
            .fallback(sql_wrong_method),
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::{
        Router,
        body::Body,
        http::{HeaderMap, Request, StatusCode},
    };
    use keymarket_store::{SqlLimits, StoreWriter};
    use serde_json::{Value, json};
    use tower::ServiceExt;

    use crate::{AppState, router};

    /// A SQLite file with one market and `trades` made-up trades.
    async fn store(name: &str, trades: u32) -> StoreWriter {
        let path = std::env::temp_dir().join(format!(
            "keymarket-api-sql-{name}-{}.db",
            std::process::id()
        ));
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        let store = StoreWriter::connect(&format!("sqlite:{}", path.display()))
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
    async fn insert_trades(store: &StoreWriter, trades: u32) {
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
        let off = router(AppState::new(store.reader()));
        let (status, _, body) = post(&off, json!({"sql": "SELECT 1"}), "application/json").await;
        assert_eq!(status, 404, "{body}");
        assert!(message(&body).contains("--sql"), "{body}");

        let app = router(AppState::new(store.reader()).with_sql(SqlLimits {
            time_limit: Duration::from_millis(200),
            max_rows: 1000,
            ..SqlLimits::default()
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
            (
                json!({"sql": "INSERT INTO trades DEFAULT VALUES"}),
                403,
                "an INSERT statement",
            ),
            (
                json!({"sql": "SELECT load_extension('x')"}),
                403,
                "load_extension",
            ),
            (
                json!({"sql": "SELECT file FROM pragma_database_list"}),
                403,
                "PRAGMA functions",
            ),
            (
                json!({"sql": "SELECT * FROM Pragma_Table_Info('trades')"}),
                403,
                "PRAGMA functions",
            ),
            (
                json!({"sql": "SELECT file FROM \"pragma_database_list\""}),
                403,
                "PRAGMA functions",
            ),
            (
                json!({"sql": "SELECT file FROM [PRAGMA_database_list]"}),
                403,
                "PRAGMA functions",
            ),
            (
                json!({"sql": "SELECT \"load_extension\"('x')"}),
                403,
                "load_extension",
            ),
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
        let app = router(AppState::new(store.reader()).with_sql(SqlLimits {
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

    /// `post` from a client at `ip` (as the server's connect info says).
    async fn post_from(app: &Router, ip: [u8; 4], sql: &str) -> (StatusCode, HeaderMap, String) {
        let mut request = Request::post("/v1/sql")
            .header("content-type", "application/json")
            .body(Body::from(json!({ "sql": sql }).to_string()))
            .unwrap();
        request
            .extensions_mut()
            .insert(axum::extract::ConnectInfo(std::net::SocketAddr::from((
                ip, 40_000,
            ))));
        let response = app.clone().oneshot(request).await.unwrap();
        let (status, headers) = (response.status(), response.headers().clone());
        let body = axum::body::to_bytes(response.into_body(), 1 << 26)
            .await
            .unwrap();
        (status, headers, String::from_utf8(body.to_vec()).unwrap())
    }

    /// Answers are bounded in bytes (refused as soon as the rows read pass the budget, a value
    /// past its cap never even built by SQLite), and every edge of the protocol answers JSON.
    #[tokio::test]
    async fn sql_answers_are_bounded_in_bytes_and_every_edge_answers_json() {
        let store = store("bytes", 10).await;
        let app = router(AppState::new(store.reader()).with_sql(SqlLimits::default()));
        // ~1 GB of hex in 10,000 rows: refused at the 16 MiB budget.
        let (status, _, body) = post_from(
            &app,
            [127, 0, 0, 1],
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 10000) \
             SELECT x, hex(zeroblob(50000)) FROM c",
        )
        .await;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains("limit of 16 MiB at row"), "{body}");
        // A 200 MB value: SQLite refuses to build it.
        let (status, _, body) =
            post_from(&app, [127, 0, 0, 1], "SELECT hex(randomblob(100000000))").await;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains("1 MiB per value"), "{body}");
        // Twenty values of a little under 1 MiB each: every one under the value cap, the row
        // over the answer's budget — refused before SQLite builds it.
        let wide = format!("SELECT {}", vec!["randomblob(1000000)"; 20].join(", "));
        let (status, _, body) = post_from(&app, [127, 0, 0, 1], &wide).await;
        assert_eq!(status, 422, "{body}");
        assert!(message(&body).contains("per value"), "{body}");
        // An overflowing float is said, not nulled.
        let (status, _, body) = post_from(
            &app,
            [127, 0, 0, 1],
            "SELECT 1.5e308 * 10 AS x, -1.5e308 * 10 AS y",
        )
        .await;
        assert_eq!(status, 200, "{body}");
        let json: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(json["rows"][0], json!(["Infinity", "-Infinity"]));

        // The wrong method, and a body over the limit: JSON, with the status's header.
        let response = app
            .clone()
            .oneshot(Request::get("/v1/sql").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["allow"], "POST");
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(message(std::str::from_utf8(&body).unwrap()).contains("POST"));
        let big = format!("SELECT '{}'", "x".repeat(300 << 10));
        let (status, headers, body) = post_from(&app, [127, 0, 0, 1], &big).await;
        assert_eq!(status, 413, "{body}");
        assert_eq!(headers["content-type"], "application/json");
        assert!(message(&body).contains("256 KiB"), "{body}");
        // Another endpoint's wrong method.
        let response = app
            .clone()
            .oneshot(Request::post("/v1/overview").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(response.status(), 405);
        assert_eq!(response.headers()["content-type"], "application/json");
    }

    /// One client flooding runaway queries never keeps another's cheap query waiting: it may have
    /// one query running at a time (429 with Retry-After for the next), and the other place is
    /// left to everyone else.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn one_clients_runaways_leave_room_for_another_clients_query() {
        let store = store("fair", 3000).await;
        let state = AppState::new(store.reader()).with_sql(SqlLimits {
            time_limit: Duration::from_secs(10),
            ..SqlLimits::default()
        });
        let sql = state.sql.clone().unwrap();
        let app = router(state);
        let runaway = "SELECT count(*) FROM trades a, trades b, trades c";
        let first = tokio::spawn({
            let app = app.clone();
            async move { post_from(&app, [127, 0, 0, 2], runaway).await }
        });
        while sql.running.available_permits() == crate::state::SQL_CONCURRENCY {
            tokio::task::yield_now().await;
        }
        // The flooder's next runaways, while its first one runs (for its whole 10 s limit):
        // refused at once, each saying when to retry; the other client's cheap queries answered
        // every time meanwhile.
        for _ in 0..20 {
            let (status, headers, body) = post_from(&app, [127, 0, 0, 2], runaway).await;
            assert_eq!(status, 429, "{body}");
            assert_eq!(headers["retry-after"], "10");
            assert!(message(&body).contains("per client"), "{body}");
            let (status, _, body) = post_from(&app, [127, 0, 0, 3], "SELECT 1").await;
            assert_eq!(status, 200, "{body}");
        }
        let (status, _, body) = first.await.unwrap();
        assert_eq!(status, 422, "{body}");
    }

    /// A runaway query holds one of the SQL connections until its limit; meanwhile the rest of
    /// the API keeps answering: 50 overview requests all complete while it still runs (checked
    /// by order of events, not by time), then it ends with 422.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_runaway_query_is_stopped_while_other_requests_are_served() {
        let store = store("runaway", 3000).await;
        let state = AppState::new(store.reader()).with_sql(SqlLimits {
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
