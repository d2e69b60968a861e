//! Fetching `Trade` logs with `eth_getLogs` in block ranges that adapt to the provider: ranges
//! grow while responses are small and split when a provider refuses (too many results, response
//! too large, range too wide, timeouts). Transport errors and rate limits are retried with
//! exponential backoff and jitter; a range is never skipped.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
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
use serde::Deserialize;
use tracing::{debug, error, warn};

use crate::{
    Error, Result,
    decode::RpcLog,
    rpc::{self, Fault},
};

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
    /// Per-request timeout of `eth_getLogs` (a range that takes longer is split).
    pub request_timeout: Duration,
    /// Per-request timeout of `eth_getLogs` over at most [`SMALL_RANGE`] blocks (following the
    /// head): an answer that small comes in well under a second from a healthy provider, so a
    /// hung request costs seconds, not a minute, before it is sent again.
    pub small_range_timeout: Duration,
    /// Consecutive failures of one range after which the fetcher says so as an error (once a
    /// minute) and reports the indexer stalled (`RetryCounts::stall`, `/healthz`).
    pub loud_after: u32,
    /// Per-request timeout of every other call (block number, headers, chain id, code): a
    /// request the provider accepts and never answers is abandoned and retried after this.
    pub call_timeout: Duration,
    /// The provider's health, shared by every call made with this configuration (clones share
    /// it): during an outage the indexer sends one probe per backoff, not one per caller.
    pub gate: Arc<rpc::Gate>,
    /// The faults this indexer waited out, by kind (clones share them; each indexer started
    /// with its own configuration counts its own — `/metrics` reads them).
    pub counts: Arc<rpc::RetryCounts>,
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
            small_range_timeout: Duration::from_secs(5),
            loud_after: 10,
            call_timeout: Duration::from_secs(10),
            gate: Arc::default(),
            counts: Arc::default(),
        }
    }
}

/// Ranges of at most this many blocks are asked with [`FetchConfig::small_range_timeout`].
pub const SMALL_RANGE: u64 = 16;

/// The adaptive `eth_getLogs` fetcher of one market.
#[derive(Debug)]
pub struct LogFetcher<P> {
    provider: P,
    /// The provider's HTTP transport, when it is one: `eth_getLogs` is then posted directly and
    /// its response parsed in one pass (see [`request_http`]).
    http: Option<Http<reqwest::Client>>,
    address: Address,
    topics: Vec<B256>,
    config: FetchConfig,
    range: AtomicU64,
}

/// Why a request failed, for deciding between retrying and splitting.
enum Failure {
    /// The provider refused the range as too large: split it.
    TooLarge(String),
    /// The provider asks to slow down: retry after a backoff.
    RateLimited(String),
    /// A transport error, server error, broken response or an answer that contradicts the
    /// request: retry.
    Transient(String),
}

impl FetchConfig {
    /// How the indexer's other calls are retried: each attempt within `call_timeout`, for as
    /// long as it takes.
    pub fn retry(&self) -> rpc::Retry {
        rpc::Retry {
            timeout: self.call_timeout,
            attempts: None,
            gate: self.gate.clone(),
            counts: self.counts.clone(),
        }
    }
}

impl<P: Provider> LogFetcher<P> {
    /// A fetcher of the logs emitted by `address` whose first topic is one of `topics`.
    pub fn new(provider: P, address: Address, topics: &[B256], config: FetchConfig) -> Self {
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
            topics: topics.to_vec(),
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
    ///
    /// Every answer is checked against its request before it is used (see [`check_answer`]): a
    /// provider that answers with logs of another range, another contract or event, or with logs
    /// that contradict each other is asked again, never believed. The same log repeated within
    /// an answer is kept once.
    pub async fn logs(&self, from: u64, to: u64) -> Result<Vec<RpcLog>> {
        let mut out = Vec::new();
        // Work list of ranges, processed in order (a split pushes both halves back in order).
        let mut todo = vec![(from, to)];
        let mut failures = 0u32;
        // When a range's answers were last refused loudly (an error line a minute at most).
        let mut said: Option<std::time::Instant> = None;
        let gate = &self.config.gate;
        while let Some((a, b)) = todo.pop() {
            let permit = gate.pass().await;
            let answer = self
                .request(a, b)
                .await
                .and_then(|logs| check_answer(logs, a, b, self.address, &self.topics));
            // A refusal is an answer (the provider is up); a timeout is not.
            let answered = match &answer {
                Ok(_) => true,
                Err(Failure::TooLarge(why)) => !why.starts_with(TIMED_OUT),
                Err(_) => false,
            };
            if answered {
                gate.answered();
            }
            match answer {
                Ok(logs) => {
                    // Any range answered rightly ends a stall (one lock per answer).
                    let mut stall = self
                        .config
                        .counts
                        .stall
                        .lock()
                        .unwrap_or_else(|e| e.into_inner());
                    if stall.is_some() {
                        *stall = None;
                    }
                    drop(stall);
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
                Err(failed) => {
                    failures += 1;
                    let (fault, why) = match failed {
                        Failure::RateLimited(why) => (Fault::RateLimited, why),
                        Failure::TooLarge(why) | Failure::Transient(why) => (Fault::Transient, why),
                    };
                    self.config.counts.count(fault, why.starts_with(TIMED_OUT));
                    // The next attempt (of this range or any other call) waits out the backoff.
                    let delay = gate.failed();
                    drop(permit);
                    if self.config.max_attempts > 0 && failures >= self.config.max_attempts {
                        return Err(Error::Rpc(format!(
                            "eth_getLogs {a}..={b} failed {failures} times: {why}"
                        )));
                    }
                    warn!(target: "indexer::fetch", from = a, to = b, attempt = failures, ?fault, delay_ms = delay.as_millis() as u64, %why, "eth_getLogs failed; retrying");
                    // A provider that keeps answering wrongly stalls the indexer (its answers
                    // are never believed): say so loudly, once a minute, naming the fault.
                    if failures >= self.config.loud_after.max(1) {
                        if said.is_none_or(|t| t.elapsed() >= Duration::from_secs(60)) {
                            said = Some(std::time::Instant::now());
                            error!(target: "indexer::fetch", from = a, to = b, attempts = failures, %why, "the provider keeps failing this range; indexing is stalled until it answers rightly (another --rpc-url?)");
                        }
                        *self
                            .config
                            .counts
                            .stall
                            .lock()
                            .unwrap_or_else(|e| e.into_inner()) = Some(format!(
                            "the provider failed eth_getLogs {a}..={b} {failures} times in a row: {why}"
                        ));
                    }
                    // Repeated failures of a wide range may be a size problem in disguise
                    // (e.g. a proxy cutting large bodies): split after three (not for rate
                    // limits: more, smaller requests are the opposite of what was asked).
                    if failures >= 3 && a < b && fault != Fault::RateLimited {
                        let mid = a + (b - a) / 2;
                        self.range
                            .store((b - a).div_ceil(2).max(1), Ordering::Relaxed);
                        todo.push((mid + 1, b));
                        todo.push((a, mid));
                        failures = 0;
                        continue;
                    }
                    todo.push((a, b));
                }
            }
        }
        // Sub-ranges are disjoint and each was checked, so the whole is in order once sorted.
        out.sort_by_key(RpcLog::position);
        Ok(out)
    }

    async fn request(&self, from: u64, to: u64) -> Result<Vec<RpcLog>, Failure> {
        let filter = Filter::new()
            .address(self.address)
            .event_signature(self.topics.clone())
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
        let timeout = if to - from < SMALL_RANGE {
            self.config
                .small_range_timeout
                .min(self.config.request_timeout)
        } else {
            self.config.request_timeout
        };
        match tokio::time::timeout(timeout, call).await {
            Err(_) => Err(Failure::TooLarge(format!("{TIMED_OUT} {timeout:?}"))),
            Ok(result) => result,
        }
    }
}

/// How a request that was never answered is described (and counted as a timeout).
const TIMED_OUT: &str = "no answer within";

/// Checks an `eth_getLogs` answer for `[from, to]` against the request, and drops repeats of
/// the same log. Refused (asked again): a log outside the range, of another contract or event,
/// pending or removed, or two logs that contradict each other — the same position with different
/// contents, or one block number with two block hashes (the answer spans a reorg).
fn check_answer(
    mut logs: Vec<RpcLog>,
    from: u64,
    to: u64,
    address: Address,
    topics: &[B256],
) -> Result<Vec<RpcLog>, Failure> {
    let refuse = |why: String| {
        Err(Failure::Transient(format!(
            "a wrong eth_getLogs answer for blocks {from}..={to}: {why}"
        )))
    };
    for l in &logs {
        let (Some(n), Some(_), Some(_), Some(_)) = (
            l.block_number,
            l.block_hash,
            l.log_index,
            l.transaction_hash,
        ) else {
            return refuse("a log without its block, index or transaction (pending?)".into());
        };
        let n: u64 = n.to();
        if n < from || n > to {
            return refuse(format!("a log of block {n}"));
        }
        if l.address != address {
            return refuse(format!(
                "a log of {} (the filter asked for {address})",
                l.address
            ));
        }
        if !l.topics.first().is_some_and(|t| topics.contains(t)) {
            return refuse("a log of another event".into());
        }
        if l.removed {
            return refuse("a log marked removed".into());
        }
    }
    // Providers answer in chain order; sorting costs nothing then and finds repeats otherwise.
    if !logs.is_sorted_by_key(RpcLog::position) {
        logs.sort_by_key(RpcLog::position);
    }
    let mut repeats = 0;
    let mut kept: Vec<RpcLog> = Vec::with_capacity(logs.len());
    for l in logs {
        if let Some(last) = kept.last() {
            if last.position() == l.position() {
                if *last != l {
                    return refuse(format!(
                        "two different logs at block {} index {}",
                        l.block(),
                        l.position().1
                    ));
                }
                repeats += 1;
                continue;
            }
            if last.block() == l.block() && last.block_hash != l.block_hash {
                return refuse(format!("block {} with two hashes", l.block()));
            }
        }
        kept.push(l);
    }
    if repeats > 0 {
        warn!(target: "indexer::fetch", from, to, repeats, "eth_getLogs answer repeated logs; kept each once");
    }
    Ok(kept)
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
        }) => Err(failure(
            rpc::classify_logs(error.code, &error.message),
            format!(
                "server returned an error response: error code {}: {}",
                error.code, error.message
            ),
        )),
        Ok(Answer {
            result: Some(logs), ..
        }) if status.is_success() => Ok(logs),
        _ if status == reqwest::StatusCode::PAYLOAD_TOO_LARGE => {
            Err(Failure::TooLarge(format!("HTTP {status}")))
        }
        _ if status == reqwest::StatusCode::TOO_MANY_REQUESTS => {
            Err(Failure::RateLimited(format!(
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            )))
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

fn classify(e: TransportError) -> Failure {
    match &e {
        RpcError::ErrorResp(payload) => failure(
            rpc::classify_logs(payload.code, &payload.message),
            e.to_string(),
        ),
        RpcError::Transport(TransportErrorKind::HttpError(h)) if h.status == 413 => {
            Failure::TooLarge(e.to_string())
        }
        _ => failure(rpc::classify_transport(&e), e.to_string()),
    }
}

/// The fetcher's reading of a classified fault: too large → split, anything else → retry.
fn failure(fault: Fault, why: String) -> Failure {
    match fault {
        Fault::TooLarge => Failure::TooLarge(why),
        Fault::RateLimited => Failure::RateLimited(why),
        Fault::Transient | Fault::Permanent => Failure::Transient(why),
    }
}

#[cfg(test)]
mod tests {
    use alloy::primitives::U64;

    use super::*;
    use crate::decode::tests::log;

    fn at(block: u64, index: u64) -> RpcLog {
        let mut l = log();
        l.block_number = Some(U64::from(block));
        l.log_index = Some(U64::from(index));
        l
    }

    fn check(logs: Vec<RpcLog>, from: u64, to: u64) -> Result<Vec<RpcLog>, String> {
        let l = log();
        check_answer(logs, from, to, l.address, &[l.topics[0]]).map_err(|f| match f {
            Failure::Transient(why) => why,
            _ => panic!("a wrong answer is retried as transient"),
        })
    }

    /// An answer is used only if it is an answer to the request; repeats are kept once.
    #[test]
    fn answers_are_checked_against_the_request() {
        let kept = check(vec![at(5, 1), at(3, 0), at(5, 1), at(5, 0)], 3, 5).unwrap();
        let positions: Vec<_> = kept.iter().map(RpcLog::position).collect();
        assert_eq!(
            positions,
            [(3, 0), (5, 0), (5, 1)],
            "sorted, the repeat kept once"
        );

        // Logs of the next range (a provider answering the wrong request).
        let why = check(vec![at(5, 0), at(6, 0)], 3, 5).unwrap_err();
        assert!(why.contains("a log of block 6"), "{why}");
        assert!(check(vec![at(2, 0)], 3, 5).is_err(), "below the range");
        let mut other = at(4, 0);
        other.address = Address::repeat_byte(7);
        assert!(
            check(vec![other], 3, 5)
                .unwrap_err()
                .contains("the filter asked for")
        );
        let mut event = at(4, 0);
        event.topics[0] = B256::repeat_byte(1);
        assert!(
            check(vec![event], 3, 5)
                .unwrap_err()
                .contains("another event")
        );
        let mut removed = at(4, 0);
        removed.removed = true;
        assert!(check(vec![removed], 3, 5).is_err());
        let mut pending = at(4, 0);
        pending.block_hash = None;
        assert!(check(vec![pending], 3, 5).is_err());
        // Contradictions: one position, two logs; one block, two hashes.
        let mut changed = at(4, 0);
        changed.data = Default::default();
        assert!(
            check(vec![at(4, 0), changed], 3, 5)
                .unwrap_err()
                .contains("two different logs")
        );
        let mut forked = at(4, 1);
        forked.block_hash = Some(B256::repeat_byte(9));
        assert!(
            check(vec![at(4, 0), forked], 3, 5)
                .unwrap_err()
                .contains("two hashes")
        );
        assert!(check(Vec::new(), 3, 5).unwrap().is_empty());
    }
}
