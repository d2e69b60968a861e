//! JSON-RPC calls that ride out what providers really do: every call has a client-side timeout,
//! and everything a provider can answer temporarily — dropped connections, HTTP 429/5xx, broken
//! bodies, a request that is never answered, and JSON-RPC error objects that say "rate limited",
//! "internal error", "header not found" (a node a block behind) and the like — is retried with
//! capped exponential backoff and full jitter, for as long as it takes. Only answers that cannot
//! heal (an unknown method, invalid parameters, …) are returned as errors.
//!
//! Providers word the same condition differently; the texts recognised here are those of
//! Alchemy, Infura, QuickNode, Ankr, Cloudflare, public nodes and the node clients themselves
//! (geth, erigon, nethermind, reth), collected in docs/operations.md.

use std::{
    future::IntoFuture,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use tokio::{sync::Notify, time::Instant};

use alloy::{
    eips::BlockNumberOrTag,
    primitives::B256,
    providers::Provider,
    transports::{RpcError, TransportError, TransportErrorKind},
};
use rand::RngExt;
use tracing::warn;

use crate::{Error, Result};

/// What a failed call means for the caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// The provider asks the client to slow down: back off and retry.
    RateLimited,
    /// A temporary failure (transport, server, a node behind or restarting): back off and retry.
    Transient,
    /// `eth_getLogs` only: the provider refuses the range as too large or too slow: split it.
    TooLarge,
    /// An answer that retrying will not change (unknown method, invalid parameters, …).
    Permanent,
}

/// Texts of rate-limit answers. They are checked before the too-large texts, since some share
/// words with them ("exceeded", "limit") and Infura answers both with code -32005.
const RATE_LIMITED: &[&str] = &[
    "rate limit",    // "rate limited", "rate limit exceeded", "request rate limited"
    "ratelimit",     //
    "rate exceeded", // Infura: "project ID request rate exceeded"
    "rate-limit",    //
    "too many requests",
    "compute units", // Alchemy: "exceeded its compute units per second capacity"
    "compute unit",
    "request limit",       // QuickNode: "request limit reached"
    "requests limit",      //
    "daily request count", // Infura: "daily request count exceeded, request rate limited"
    "request count exceeded",
    "quota",      // "quota exceeded"
    "throughput", // "exceeded throughput"
    "capacity exceeded",
    "credits", // "out of credits", "not enough credits"
    "slow down",
    "try again later",
    "requests per second", // QuickNode: "The requests per second (RPS) of your requests are higher than your plan allows."
    "higher than your plan",
    "capacity", // "exceeded its concurrent requests capacity"
    "qps",      // "Your app has reached maximum qps limit"
];

/// JSON-RPC error codes that mean "slow down" on their own.
const RATE_LIMIT_CODES: &[i64] = &[
    429,    // Alchemy's and others' JSON error code
    -32007, // QuickNode: request limit reached
    -32090, // "Too many requests" on several gateways
];

/// Texts of `eth_getLogs` refusals that a smaller range avoids.
const TOO_LARGE: &[&str] = &[
    "query returned more than", // Infura, geth-style nodes: "more than 10000 results"
    "too many results",
    "too many logs",
    "response size", // Alchemy: "Log response size exceeded"
    "too large",
    "block range", // "block range is too wide", "exceed maximum block range", "block range limit"
    "range limit", //
    "range is too", //
    "blocks range",
    "blocks distance", // Ankr: "maximum [from, to] blocks distance: 10000"
    "exceeds limit",   // Infura: "range 1000000 exceeds limit of 10000"
    "exceeds max",     // reth: "query exceeds max block range", "query exceeds max results"
    "limited to a",    // QuickNode: "eth_getLogs is limited to a 10,000 range"
    "max results",
    "limit exceeded", // generic result caps
    "exceed maximum",
    "timeout", // a range too slow for the provider: smaller ones finish
    "timed out",
];

/// Texts of temporary server-side failures (besides rate limits).
const TRANSIENT: &[&str] = &[
    "internal error",
    "internal server error",
    "header not found", // a node a block behind the one that gave the head
    "unknown block",
    "block not found",
    "not synced",
    "syncing",
    "upstream",    // "upstream connect error", "no upstream available"
    "unavailable", // "service unavailable", "resource unavailable"
    "temporar",    // "temporarily", "temporary internal error"
    "overloaded",
    "busy",
    "try again",
    "bad gateway",
    "gateway",
    "no healthy",
    "nodes available", // Ankr -32055: "No nodes available"
    "backends available",
    "backend",
    "connection",
    "timeout",
    "timed out",
    "eof",
    "reset",
    "closed",
];

/// Texts of answers that waiting will not change, checked first: they share words with the
/// temporary ones ("pruned history unavailable", "Monthly capacity limit exceeded").
const PERMANENT: &[&str] = &[
    "pruned",
    "payment required",
    "monthly capacity",
    "invalid api key",
    "token is invalid",
    "unauthorized",
    "does not exist/is not available",
    "method not found",
];

/// Classifies a JSON-RPC error object (code and message) for a call that is not `eth_getLogs`.
pub fn classify(code: i64, message: &str) -> Fault {
    let msg = message.to_lowercase();
    if code == -32601 || PERMANENT.iter().any(|p| msg.contains(p)) {
        Fault::Permanent
    } else if RATE_LIMIT_CODES.contains(&code) || RATE_LIMITED.iter().any(|p| msg.contains(p)) {
        Fault::RateLimited
    } else if code == -32603
        || code == -32002
        || code == -32005 // "limit exceeded" (EIP-1474): a limit of the provider's
        || TRANSIENT.iter().any(|p| msg.contains(p))
    {
        Fault::Transient
    } else {
        Fault::Permanent
    }
}

/// Classifies a JSON-RPC error object answering `eth_getLogs`: rate limits are retried, refusals
/// of the range's size split it, anything else is retried (a range is never skipped).
pub fn classify_logs(code: i64, message: &str) -> Fault {
    let msg = message.to_lowercase();
    if RATE_LIMIT_CODES.contains(&code) || RATE_LIMITED.iter().any(|p| msg.contains(p)) {
        Fault::RateLimited
    } else if code == -32005 || TOO_LARGE.iter().any(|p| msg.contains(p)) {
        Fault::TooLarge
    } else {
        Fault::Transient
    }
}

/// Classifies an error of alloy's transport for a call that is not `eth_getLogs`.
pub fn classify_transport(e: &TransportError) -> Fault {
    match e {
        RpcError::ErrorResp(payload) => classify(payload.code, &payload.message),
        RpcError::Transport(TransportErrorKind::HttpError(h)) if h.status == 429 => {
            Fault::RateLimited
        }
        // A TLS certificate the client refuses (unknown issuer, expired, wrong name) stays
        // refused: said once, not retried forever. rustls words it so at every level of the
        // error chain (reqwest, hyper and io show their cause's text).
        _ if error_chain(e).any(|t| t.contains("invalid peer certificate")) => Fault::Permanent,
        // Transport failures, HTTP errors, broken or unparsable bodies, a missing result: all
        // things a healthy provider does not do, and an unhealthy one stops doing.
        _ => Fault::Transient,
    }
}

/// The texts of `e` and of each of its causes.
fn error_chain(e: &TransportError) -> impl Iterator<Item = String> + '_ {
    std::iter::successors(Some(e as &(dyn std::error::Error + 'static)), |e| {
        e.source()
    })
    .map(|e| e.to_string())
}

/// Exponential backoff with full jitter: between half and all of 100 ms × 2ⁿ, capped at 10 s
/// (from the 7th attempt on, a call is tried every 5–10 s: a provider that heals is used again
/// within seconds, and one that is down sees a request every few seconds, not a flood).
pub fn backoff(attempt: u32) -> Duration {
    let cap = (100u64 << attempt.min(7)).min(10_000);
    Duration::from_millis(rand::rng().random_range(cap / 2..=cap))
}

/// Faults waited out so far by one indexer, by kind (exported on `/metrics` by the API when it
/// runs in the same process, as in `keymarket up`).
#[derive(Debug, Default)]
pub struct RetryCounts {
    /// RPC calls answered with a rate limit.
    pub rate_limited: AtomicU64,
    /// RPC calls that failed otherwise (transport, server errors, wrong answers, timeouts).
    pub transient: AtomicU64,
    /// RPC calls never answered within their timeout (also counted in `transient`).
    pub timeouts: AtomicU64,
    /// Database transactions that failed for an outage and were tried again.
    pub database: AtomicU64,
    /// `Trade` logs refused because they cannot be stored as they are.
    pub refused_logs: AtomicU64,
    /// `eth_getLogs` answers refused for their block times (a log's time not its header's, two
    /// times in one block, times going back or outside the range's headers) and asked again.
    pub wrong_block_times: AtomicU64,
    /// Batches whose trades broke the curve's arithmetic (a dropped, invented or repeated
    /// trade) and were fetched again.
    pub curve_breaks: AtomicU64,
    /// Batches stored although they break the arithmetic: the chain itself said so again and
    /// again (the market and subject are reported unverified in the log).
    pub curve_unverified: AtomicU64,
    /// Breaks the chain seemed to confirm that a second provider's answer did not: the first
    /// provider's answer was replaced by the second's.
    pub second_provider_corrections: AtomicU64,
    /// Why indexing is stalled right now (a range the provider keeps failing), if it is: the
    /// sync loop writes it to the store for `/healthz`.
    pub stall: std::sync::Mutex<Option<String>>,
}

impl RetryCounts {
    /// (fault label, total so far) of each counter, for `/metrics`.
    pub fn totals(&self) -> Vec<(&'static str, u64)> {
        [
            ("rate_limited", &self.rate_limited),
            ("transient", &self.transient),
            ("timeout", &self.timeouts),
            ("database", &self.database),
            ("refused_log", &self.refused_logs),
            ("wrong_block_times", &self.wrong_block_times),
            ("curve_break", &self.curve_breaks),
            ("curve_unverified", &self.curve_unverified),
            (
                "second_provider_correction",
                &self.second_provider_corrections,
            ),
        ]
        .into_iter()
        .map(|(fault, n)| (fault, n.load(Ordering::Relaxed)))
        .collect()
    }

    pub(crate) fn count(&self, fault: Fault, timeout: bool) {
        match fault {
            Fault::RateLimited => self.rate_limited.fetch_add(1, Ordering::Relaxed),
            _ => self.transient.fetch_add(1, Ordering::Relaxed),
        };
        if timeout {
            self.timeouts.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One provider's health, shared by every call made to it: after a failure, no call is sent
/// until the backoff has passed, and then only one (a probe) until it succeeds. During an outage
/// the provider sees one request every few seconds from the whole indexer, however many ranges
/// and headers are waiting; the first answer lets them all go again.
#[derive(Debug, Default)]
pub struct Gate {
    state: Mutex<GateState>,
    changed: Notify,
}

#[derive(Debug, Default)]
struct GateState {
    /// Failures since the last success.
    failures: u32,
    /// While failing: no request before this.
    retry_at: Option<Instant>,
    /// A probe is in flight.
    probing: bool,
}

/// Leave to send one request through a [`Gate`]; a probe's leave ends when it is dropped.
#[derive(Debug)]
pub struct Permit<'g> {
    gate: &'g Gate,
    probe: bool,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        if self.probe {
            self.gate.state.lock().expect("gate").probing = false;
            self.gate.changed.notify_waiters();
        }
    }
}

impl Gate {
    /// Waits until a request may be sent.
    pub async fn pass(&self) -> Permit<'_> {
        loop {
            let changed = self.changed.notified();
            let wait = {
                let mut s = self.state.lock().expect("gate");
                match s.retry_at {
                    None => {
                        return Permit {
                            gate: self,
                            probe: false,
                        };
                    }
                    Some(at) if !s.probing && Instant::now() >= at => {
                        s.probing = true;
                        return Permit {
                            gate: self,
                            probe: true,
                        };
                    }
                    Some(at) => (!s.probing).then_some(at),
                }
            };
            match wait {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }

    /// The provider answered (whatever the answer): calls flow again.
    pub fn answered(&self) {
        let mut s = self.state.lock().expect("gate");
        if s.retry_at.is_some() || s.failures > 0 {
            *s = GateState::default();
            drop(s);
            self.changed.notify_waiters();
        }
    }

    /// A call failed with a temporary fault: no call for a backoff. Returns the backoff.
    pub fn failed(&self) -> Duration {
        let mut s = self.state.lock().expect("gate");
        s.failures += 1;
        let delay = backoff(s.failures);
        s.retry_at = Some(Instant::now() + delay);
        s.probing = false;
        drop(s);
        self.changed.notify_waiters();
        delay
    }
}

/// How long to keep trying a call.
#[derive(Debug, Clone)]
pub struct Retry {
    /// Each attempt's time limit.
    pub timeout: Duration,
    /// Give up after this many attempts; `None` = never (the indexer's calls once the provider
    /// has answered once: an outage of minutes is waited out).
    pub attempts: Option<u32>,
    /// The provider's health, shared with every other call to it.
    pub gate: Arc<Gate>,
    /// Where the faults met are counted.
    pub counts: Arc<RetryCounts>,
}

/// Runs `call` until it succeeds, retrying temporary failures (see [`classify_transport`])
/// through the provider's [`Gate`] (backoff); each attempt is limited to `retry.timeout`. A
/// permanent JSON-RPC error is returned at once.
pub async fn call<T, F, Fut>(what: &'static str, retry: &Retry, mut call: F) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: IntoFuture<Output = Result<T, TransportError>>,
{
    let mut attempt = 0;
    loop {
        let permit = retry.gate.pass().await;
        let (fault, error) = match tokio::time::timeout(retry.timeout, call().into_future()).await {
            Ok(Ok(v)) => {
                retry.gate.answered();
                return Ok(v);
            }
            Ok(Err(e)) => match classify_transport(&e) {
                Fault::Permanent | Fault::TooLarge => {
                    retry.gate.answered();
                    return Err(e.into());
                }
                fault => (fault, e.to_string()),
            },
            Err(_) => (
                Fault::Transient,
                format!("no answer within {:?}", retry.timeout),
            ),
        };
        attempt += 1;
        let timed_out = error.starts_with("no answer within");
        retry.counts.count(fault, timed_out);
        let delay = retry.gate.failed();
        drop(permit);
        if retry.attempts.is_some_and(|n| attempt >= n) {
            return Err(Error::Rpc(format!(
                "{what} failed {attempt} times: {error}"
            )));
        }
        warn!(target: "indexer::rpc", what, attempt, ?fault, delay_ms = delay.as_millis() as u64, %error, "RPC call failed; retrying");
    }
}

/// A block's hash; `None` if the provider does not have it.
pub(crate) async fn block_hash<P: Provider>(
    provider: &P,
    n: u64,
    retry: &Retry,
) -> Result<Option<B256>> {
    Ok(header(provider, n, retry).await?.map(|(hash, _)| hash))
}

/// A block's (hash, timestamp); `None` if the provider does not have it.
pub(crate) async fn header<P: Provider>(
    provider: &P,
    n: u64,
    retry: &Retry,
) -> Result<Option<(B256, u64)>> {
    call("eth_getBlockByNumber", retry, || {
        provider.get_block_by_number(BlockNumberOrTag::Number(n))
    })
    .await
    .map(|b| b.map(|b| (b.header.hash, b.header.timestamp)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Real providers' texts (docs/operations.md lists where each comes from).
    #[test]
    fn providers_rate_limits_and_outages_are_retried() {
        for (code, message) in [
            (
                429,
                "Your app has exceeded its compute units per second capacity. If you have retries enabled, you can safely ignore this message. If not, check out https://docs.alchemy.com/reference/throughput",
            ),
            (-32005, "daily request count exceeded, request rate limited"),
            (-32005, "project ID request rate exceeded"),
            (-32007, "request limit reached"),
            (-32000, "Too Many Requests"),
            (
                429,
                "The requests per second (RPS) of your requests are higher than your plan allows.",
            ),
            (-32012, "credits limited to 6000/sec"),
            (-32016, "over rate limit"),
            (
                15,
                "You reached Public endpoint rate limit, please upgrade to paid plan",
            ),
        ] {
            assert_eq!(
                classify(code, message),
                Fault::RateLimited,
                "{code} {message}"
            );
            assert_eq!(
                classify_logs(code, message),
                Fault::RateLimited,
                "{code} {message}"
            );
        }
        for (code, message) in [
            (-32603, "Internal error"),
            (-32000, "header not found"),
            (-32055, "No nodes available"),
            (
                -32016,
                "eth_getLogs request was canceled due to enabled timeout.",
            ),
            (
                -32000,
                "upstream connect error or disconnect/reset before headers",
            ),
            (-32002, "resource unavailable"),
            (-32000, "request timed out"),
        ] {
            assert_eq!(
                classify(code, message),
                Fault::Transient,
                "{code} {message}"
            );
        }
        for (code, message) in [
            (-32601, "the method eth_foo does not exist/is not available"),
            (
                -32602,
                "invalid argument 0: hex string has length 3, want 40",
            ),
            (3, "execution reverted"),
            (-32000, "missing trie node 5e0c3d (path ) <nil>"),
            (4444, "pruned history unavailable"),
        ] {
            assert_eq!(
                classify(code, message),
                Fault::Permanent,
                "{code} {message}"
            );
        }
    }

    /// Providers' ways of refusing a range as too large split it; other `eth_getLogs` errors
    /// retry (a range is never skipped); rate limits are never mistaken for a size refusal.
    #[test]
    fn log_range_refusals_split_and_rate_limits_do_not() {
        for (code, message) in [
            (-32005, "query returned more than 10000 results"),
            (
                -32000,
                "Log response size exceeded. You can make eth_getLogs requests with up to a 2K block range and no limit on the response size, or you can request any block range with a cap of 10K logs in the response.",
            ),
            (-32602, "block range is too wide"),
            (-32000, "eth_getLogs is limited to a 10,000 range"),
            (-32000, "exceed maximum block range: 50000"),
            (-32602, "range 1000000 exceeds limit of 10000"),
            (-32614, "eth_getLogs is limited to a 10,000 range"),
            (
                -32047,
                "Invalid eth_getLogs request. 'fromBlock'-'toBlock' range too large. Max range: 800",
            ),
            (
                -32602,
                "query exceeds max results 20000, retry with the range 100-200",
            ),
            (-32000, "maximum [from, to] blocks distance: 10000"),
            (
                -32000,
                "Query timeout exceeded. Consider reducing your block range.",
            ),
            (-32000, "request timed out"),
        ] {
            assert_eq!(
                classify_logs(code, message),
                Fault::TooLarge,
                "{code} {message}"
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
            assert_eq!(
                classify_logs(code, message),
                Fault::Transient,
                "{code} {message}"
            );
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered() {
        for attempt in 0..100 {
            let d = backoff(attempt);
            assert!(d <= Duration::from_secs(10), "{attempt}: {d:?}");
            assert!(d >= Duration::from_millis(50), "{attempt}: {d:?}");
        }
        assert!(backoff(20) >= Duration::from_secs(5));
    }

    /// After a failure, callers wait out the backoff and then only one of them (a probe) goes;
    /// an answer lets all of them go at once.
    #[tokio::test]
    async fn a_failing_provider_gets_one_probe_at_a_time() {
        let gate = Arc::new(Gate::default());
        gate.failed(); // 100-200 ms
        let passed = Arc::new(AtomicU64::new(0));
        let callers: Vec<_> = (0..5)
            .map(|_| {
                let (gate, passed) = (gate.clone(), passed.clone());
                tokio::spawn(async move {
                    let permit = gate.pass().await;
                    passed.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(400)).await;
                    drop(permit);
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            passed.load(Ordering::SeqCst),
            1,
            "one probe while it is out"
        );
        gate.answered();
        for c in callers {
            c.await.unwrap();
        }
        assert_eq!(passed.load(Ordering::SeqCst), 5, "all go once it answered");
    }
}
