//! Fetching `Trade` logs with `eth_getLogs` in block ranges that adapt to the provider: ranges
//! grow while responses are small and split when a provider refuses (too many results, response
//! too large, range too wide, timeouts). Transport errors and rate limits are retried with
//! exponential backoff and jitter; a range is never skipped.

use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::Duration,
};

use alloy::{
    primitives::{Address, B256},
    providers::Provider,
    rpc::types::Filter,
    transports::{
        RpcError, TransportError, TransportErrorKind,
        http::{Http, reqwest},
    },
};
use rand::RngExt;
use serde::Deserialize;
use tracing::{debug, warn};

use crate::{Error, Result, decode::RpcLog};

/// Limits of the adaptive range.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// The first range size, in blocks.
    pub initial_range: u64,
    /// The largest range, in blocks.
    pub max_range: u64,
    /// Grow the range while a response holds fewer logs than this.
    pub target_logs: usize,
    /// Ranges fetched concurrently (committed in order).
    pub concurrency: usize,
    /// Give up on a single-block range after this many consecutive failures (0 = never).
    pub max_attempts: u32,
    /// Per-request timeout.
    pub request_timeout: Duration,
}

impl Default for FetchConfig {
    fn default() -> Self {
        Self {
            initial_range: 1_000,
            max_range: 100_000,
            target_logs: 20_000,
            concurrency: 4,
            max_attempts: 0,
            request_timeout: Duration::from_secs(60),
        }
    }
}

/// The adaptive `eth_getLogs` fetcher of one market.
#[derive(Debug)]
pub struct LogFetcher<P> {
    provider: P,
    /// The provider's HTTP transport, when it is one: `eth_getLogs` is then posted directly and
    /// its response parsed in one pass (see [`request_http`]).
    http: Option<Http<reqwest::Client>>,
    address: Address,
    topic0: B256,
    config: FetchConfig,
    range: AtomicU64,
}

/// Why a request failed, for deciding between retrying and splitting.
enum Failure {
    /// The provider refused the range as too large: split it.
    TooLarge(String),
    /// A transport error, rate limit, server error or broken response: retry.
    Transient(String),
}

impl<P: Provider> LogFetcher<P> {
    /// A fetcher of `topic0` logs emitted by `address`.
    pub fn new(provider: P, address: Address, topic0: B256, config: FetchConfig) -> Self {
        let range = AtomicU64::new(config.initial_range.max(1));
        let http = provider
            .client()
            .transport()
            .as_any()
            .downcast_ref::<Http<reqwest::Client>>()
            .cloned();
        debug!(target: "indexer::fetch", direct_http = http.is_some(), "eth_getLogs transport");
        Self {
            provider,
            http,
            address,
            topic0,
            config,
            range,
        }
    }

    /// The provider.
    pub fn provider(&self) -> &P {
        &self.provider
    }

    /// The current range hint, in blocks.
    pub fn range_hint(&self) -> u64 {
        self.range.load(Ordering::Relaxed)
    }

    /// Concurrency setting.
    pub fn concurrency(&self) -> usize {
        self.config.concurrency.max(1)
    }

    /// All logs in `[from, to]`, splitting and retrying as needed; the range hint adapts.
    pub async fn logs(&self, from: u64, to: u64) -> Result<Vec<RpcLog>> {
        let mut out = Vec::new();
        // Work list of ranges, processed in order (a split pushes both halves back in order).
        let mut todo = vec![(from, to)];
        let mut failures = 0u32;
        while let Some((a, b)) = todo.pop() {
            match self.request(a, b).await {
                Ok(logs) => {
                    failures = 0;
                    let span = b - a + 1;
                    let target = self.config.target_logs.max(1);
                    if logs.len() < target / 2 && span >= self.range_hint() {
                        let grown = (span * 2).min(self.config.max_range);
                        self.range.fetch_max(grown, Ordering::Relaxed);
                    } else if logs.len() > target * 2 {
                        // Denser blocks than the hint assumed: shrink so that responses (and the
                        // memory held by ranges in flight) stay near the target.
                        let shrunk = (span as u128 * target as u128 / logs.len() as u128).max(1);
                        self.range.fetch_min(shrunk as u64, Ordering::Relaxed);
                    }
                    out.extend(logs);
                }
                Err(Failure::TooLarge(why)) if a < b => {
                    let mid = a + (b - a) / 2;
                    self.range
                        .store((b - a).div_ceil(2).max(1), Ordering::Relaxed);
                    debug!(target: "indexer::fetch", from = a, to = b, %why, "provider refused the range; splitting");
                    todo.push((mid + 1, b));
                    todo.push((a, mid));
                }
                Err(Failure::TooLarge(why) | Failure::Transient(why)) => {
                    failures += 1;
                    if self.config.max_attempts > 0 && failures >= self.config.max_attempts {
                        return Err(Error::Rpc(format!(
                            "eth_getLogs {a}..={b} failed {failures} times: {why}"
                        )));
                    }
                    // Repeated failures of a wide range may be a size problem in disguise
                    // (e.g. a proxy cutting large bodies): split after three.
                    if failures >= 3 && a < b {
                        let mid = a + (b - a) / 2;
                        self.range
                            .store((b - a).div_ceil(2).max(1), Ordering::Relaxed);
                        todo.push((mid + 1, b));
                        todo.push((a, mid));
                        failures = 0;
                        continue;
                    }
                    let delay = backoff(failures);
                    warn!(target: "indexer::fetch", from = a, to = b, attempt = failures, delay_ms = delay.as_millis() as u64, %why, "eth_getLogs failed; retrying");
                    tokio::time::sleep(delay).await;
                    todo.push((a, b));
                }
            }
        }
        // The filter asked for one address: a log of another would be counted as this market's.
        if let Some(l) = out.iter().find(|l| l.address != self.address) {
            return Err(Error::Rpc(format!(
                "eth_getLogs {from}..={to} for {} returned a log of {}: refusing a provider that ignores the address filter",
                self.address, l.address
            )));
        }
        out.sort_by_key(RpcLog::position);
        Ok(out)
    }

    async fn request(&self, from: u64, to: u64) -> Result<Vec<RpcLog>, Failure> {
        let filter = Filter::new()
            .address(self.address)
            .event_signature(self.topic0)
            .from_block(from)
            .to_block(to);
        let call = async {
            match &self.http {
                Some(http) => request_http(http, &filter).await,
                None => self
                    .provider
                    .raw_request::<_, Vec<RpcLog>>("eth_getLogs".into(), (&filter,))
                    .await
                    .map_err(classify),
            }
        };
        match tokio::time::timeout(self.config.request_timeout, call).await {
            Err(_) => Err(Failure::TooLarge(format!(
                "timed out after {:?}",
                self.config.request_timeout
            ))),
            Ok(result) => result,
        }
    }
}

/// `eth_getLogs` over HTTP, its response parsed once, straight into [`RpcLog`]s. (Through
/// alloy's transport a response is first scanned into a raw JSON value, copied, then parsed again:
/// 4% of all the indexer's instructions in `scripts/bench-instructions.sh`.) Errors are classified
/// like [`classify`] does alloy's.
async fn request_http(
    http: &Http<reqwest::Client>,
    filter: &Filter,
) -> Result<Vec<RpcLog>, Failure> {
    /// A JSON-RPC response: `result` or `error`.
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        result: Option<Vec<RpcLog>>,
        #[serde(default)]
        error: Option<RpcErrorObject>,
    }
    #[derive(Deserialize)]
    struct RpcErrorObject {
        code: i64,
        message: String,
    }
    let body = serde_json::json!({
        "jsonrpc": "2.0",
        "id": 0,
        "method": "eth_getLogs",
        "params": [filter],
    });
    let transient =
        |what: &str, e: &dyn std::fmt::Display| Failure::Transient(format!("{what}: {e}"));
    let response = http
        .client()
        .post(http.url())
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| transient("HTTP request failed", &e))?;
    let status = response.status();
    let body = response
        .bytes()
        .await
        .map_err(|e| transient(&format!("reading the HTTP {status} response failed"), &e))?;
    match serde_json::from_slice::<Answer>(&body) {
        Ok(Answer {
            error: Some(error), ..
        }) => Err(classify_error(error.code, &error.message, || {
            format!(
                "server returned an error response: error code {}: {}",
                error.code, error.message
            )
        })),
        Ok(Answer {
            result: Some(logs), ..
        }) if status.is_success() => Ok(logs),
        _ if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
            Err(Failure::TooLarge(format!("HTTP {status}")))
        }
        _ if !status.is_success() => Err(Failure::Transient(format!(
            "HTTP {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        ))),
        Ok(_) => Err(Failure::Transient(
            "a JSON-RPC response with neither a result nor an error".into(),
        )),
        Err(e) => Err(transient(
            &format!("a malformed eth_getLogs response ({} bytes)", body.len()),
            &e,
        )),
    }
}

/// Exponential backoff with full jitter: up to 100 ms × 2ⁿ, capped at 10 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap = (100u64 << attempt.min(7)).min(10_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

fn classify(e: TransportError) -> Failure {
    match &e {
        RpcError::ErrorResp(payload) => {
            classify_error(payload.code, &payload.message, || e.to_string())
        }
        RpcError::Transport(TransportErrorKind::HttpError(h)) if h.status == 413 => {
            Failure::TooLarge(e.to_string())
        }
        _ => Failure::Transient(e.to_string()),
    }
}

/// A JSON-RPC error: the provider refusing the range as too large (split it), or another one
/// (retry).
fn classify_error(code: i64, message: &str, why: impl FnOnce() -> String) -> Failure {
    const TOO_LARGE: &[&str] = &[
        "too many",
        "limit",
        "exceed",
        "range",
        "too large",
        "response size",
        "timeout",
        "timed out",
        "query returned more than",
    ];
    let msg = message.to_lowercase();
    if code == -32005 || TOO_LARGE.iter().any(|p| msg.contains(p)) {
        Failure::TooLarge(why())
    } else {
        Failure::Transient(why())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Providers' ways of refusing a range as too large split it; other JSON-RPC errors retry.
    #[test]
    fn json_rpc_errors_split_or_retry() {
        let too_large = [
            (-32005, "query returned more than 10000 results"),
            (
                -32000,
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range",
            ),
            (-32602, "block range is too wide"),
            (-32000, "eth_getLogs is limited to a 10,000 range"),
            (-32000, "request timed out"),
        ];
        for (code, message) in too_large {
            assert!(
                matches!(
                    classify_error(code, message, String::new),
                    Failure::TooLarge(_)
                ),
                "{code} {message:?} splits"
            );
        }
        for (code, message) in [
            (-32000, "header not found"),
            (-32603, "internal error"),
            (
                -32601,
                "the method eth_getLogs does not exist/is not available",
            ),
        ] {
            assert!(
                matches!(
                    classify_error(code, message, String::new),
                    Failure::Transient(_)
                ),
                "{code} {message:?} retries"
            );
        }
    }
}
