//! The tests' one RPC proxy: a real HTTP proxy on loopback between a client (the indexer, the
//! `keymarket` binary) and anvil, injecting what real providers do and anvil cannot do on
//! demand, in the mode the test sets ([`Mode`]; provider.rs, faults.rs, hangs.rs and crash.rs
//! use it). It reads one JSON-RPC request per connection and answers with `connection: close`.
//!
//! [`tls_front`] is a layer on top: TLS terminated on a loopback port, the bytes passed as they
//! are to anvil or to a proxy behind it (tls.rs).

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use alloy::providers::{Provider, ProviderBuilder, RootProvider};
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_rustls::{TlsAcceptor, rustls::ServerConfig};

/// How the proxy behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Forwards everything.
    Healthy,
    /// A provider having a bad day: a cycle of rate limits, internal errors, lagging nodes,
    /// hung requests, wrong ranges, repeated and overlapping logs, among good answers.
    Misbehaving,
    /// Down: every request gets HTTP 502.
    Outage,
    /// Hung: every request is accepted and never answered.
    Hung,
    /// A replica this many blocks behind: a lower head, no blocks above it.
    Lagging(u64),
    /// Every third `eth_getLogs` answer holding logs has every `blockTimestamp` moved two days
    /// later (the blocks, hashes and everything else as they are).
    WrongTimes,
    /// Every other `eth_getLogs` answer is tampered with, alternately: one trade left out, or
    /// one trade served a second time at another log index — each time a trade whose subject
    /// trades again later in the same answer (so that the arithmetic of that answer alone shows
    /// it), and nothing else in the answer contradicts it.
    Tampered,
    /// Every answer says the same lie about one trade (at or after block 20): its `ethAmount`
    /// one wei more than the curve's price — as a chain whose own trade broke the curve would.
    ConsistentLie,
    /// The first `eth_getLogs` answer from this block on has one trade left out — the last in
    /// the answer of a subject that trades again in the very next block, so the next range's
    /// arithmetic shows it against the stored one and the indexer repairs — and every later
    /// range is held until [`Proxy::open_gate`]: the test does something to the database
    /// first, and the repair meets it.
    LeaveOutThenHold(u64),
    /// Every `eth_getLogs` is answered with no logs at all (a node that lost or pruned them).
    NoLogs,
    /// Every `eth_getLogs` from block 20 on is answered with the 20 blocks before `fromBlock`
    /// added: an answer that can never be believed (a padded answer cannot be told from a
    /// shifted one that lacks its tail).
    Padded,
    /// An unreliable provider in front of the indexer's retries: `eth_getLogs` over more than 7
    /// blocks refused as hosted providers do (alternately "query returned more than 10000
    /// results" and a gateway's HTTP 413); and, in a cycle of 11 requests counted over every
    /// method, a `eth_getLogs`, `eth_getBlockByNumber` or `eth_blockNumber` dropped unanswered,
    /// answered HTTP 429, answered HTTP 502 or 503, stalled 2.5 s, or cut mid-body.
    Flaky,
    /// Every request of this method is accepted and never answered; the rest is forwarded.
    HangOn(&'static str),
}

/// A proxy on loopback in front of an upstream JSON-RPC URL; its mode can be changed at any time.
pub(crate) struct Proxy {
    /// Where the client is pointed.
    pub(crate) url: String,
    upstream: String,
    client: reqwest::Client,
    mode: Mutex<Mode>,
    /// Every `eth_getLogs` forwarded waits this long first (to make a backfill last).
    pub(crate) logs_delay_ms: AtomicU64,
    /// Requests received, of every kind.
    pub(crate) requests: AtomicU64,
    /// Requests seen per method by the modes that go through a cycle (in Misbehaving mode each
    /// method goes through the whole cycle of faults, however the methods interleave), and
    /// over every method in Flaky mode.
    seqs: Mutex<BTreeMap<String, u64>>,
    /// What was injected, by kind.
    injected: Mutex<BTreeMap<&'static str, u64>>,
    /// A log of an earlier answer, to put at a wrong block later.
    pub(crate) earlier_log: Mutex<Option<Value>>,
    /// Logs already tampered with in Tampered mode (block, log index): each at most once, as a
    /// flaky provider would; the range asked again gets the truth.
    tampered: Mutex<std::collections::BTreeSet<(String, String)>>,
    /// In LeaveOutThenHold mode: the last block of the answer a trade was left out of (set when
    /// it is asked for).
    pub(crate) left_out_to: Mutex<Option<u64>>,
    /// In LeaveOutThenHold mode, whether ranges after the tampered one are answered.
    gate: tokio::sync::watch::Sender<bool>,
}

impl Proxy {
    /// A healthy proxy in front of `upstream`.
    pub(crate) async fn start(upstream: String) -> Arc<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Arc::new(Self {
            url: format!("http://{}", listener.local_addr().unwrap()),
            upstream,
            client: reqwest::Client::new(),
            mode: Mutex::new(Mode::Healthy),
            logs_delay_ms: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            seqs: Mutex::default(),
            injected: Mutex::default(),
            earlier_log: Mutex::default(),
            tampered: Mutex::default(),
            left_out_to: Mutex::default(),
            gate: tokio::sync::watch::Sender::new(false),
        });
        let p = proxy.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let p = p.clone();
                tokio::spawn(async move {
                    let _ = p.handle(sock).await;
                });
            }
        });
        proxy
    }

    /// Delays every `eth_getLogs` forwarded by `delay` (to make a backfill last).
    pub(crate) fn slow_logs(&self, delay: Duration) {
        self.logs_delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Lets the ranges held in LeaveOutThenHold mode be answered.
    pub(crate) fn open_gate(&self) {
        self.gate.send_replace(true);
    }

    pub(crate) fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub(crate) fn provider(&self) -> RootProvider {
        ProviderBuilder::new()
            .connect_http(self.url.parse().unwrap())
            .root()
            .clone()
    }

    /// Counts one `kind` injected; how many were before it.
    fn count(&self, kind: &'static str) -> u64 {
        let mut injected = self.injected.lock().unwrap();
        let n = injected.entry(kind).or_default();
        *n += 1;
        *n - 1
    }

    /// How many `kind` were injected.
    pub(crate) fn injected(&self, kind: &str) -> u64 {
        self.injected
            .lock()
            .unwrap()
            .get(kind)
            .copied()
            .unwrap_or(0)
    }

    async fn handle(&self, mut sock: TcpStream) -> std::io::Result<()> {
        let Some(body) = read_request(&mut sock).await? else {
            return Ok(());
        };
        self.requests.fetch_add(1, Ordering::Relaxed);
        let request: Value = serde_json::from_slice(&body).unwrap_or_default();
        let method = request["method"].as_str().unwrap_or("").to_string();
        let id = request["id"].clone();
        let mode = *self.mode.lock().unwrap();
        let error = |code: i64, message: &str| {
            json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
                .to_string()
        };
        match mode {
            Mode::Healthy => {}
            Mode::Flaky => {
                // Like hosted providers, refuse wide log ranges.
                if method == "eth_getLogs" {
                    let (from, to) = range(&request);
                    if to.saturating_sub(from) > 6 {
                        // Every other refusal as HTTP 413 with a plain-text body, like a gateway's.
                        if self.count("refused ranges") % 2 == 1 {
                            self.count("HTTP 413");
                            return respond(&mut sock, 413, b"response too large").await;
                        }
                        let e = error(-32005, "query returned more than 10000 results");
                        return respond(&mut sock, 200, e.as_bytes()).await;
                    }
                }
                let n = {
                    let mut seqs = self.seqs.lock().unwrap();
                    let seq = seqs.entry("every method".into()).or_default();
                    *seq += 1;
                    *seq - 1
                };
                // Faults on the calls the indexer retries (not on the one-off chain id / code
                // checks).
                let faulty = matches!(
                    method.as_str(),
                    "eth_getLogs" | "eth_getBlockByNumber" | "eth_blockNumber"
                );
                match n % 11 {
                    _ if !faulty => {}
                    0 => {
                        self.count("dropped");
                        return Ok(()); // close without answering
                    }
                    1 => {
                        self.count("429");
                        return respond(&mut sock, 429, b"rate limited").await;
                    }
                    2 => {
                        self.count("5xx");
                        let status = if n.is_multiple_of(2) { 502 } else { 503 };
                        return respond(&mut sock, status, b"bad gateway").await;
                    }
                    3 => {
                        self.count("stalled");
                        tokio::time::sleep(Duration::from_millis(2_500)).await;
                    }
                    4 => {
                        self.count("truncated");
                        let full = self.forward(body).await;
                        return respond_cut(&mut sock, 200, &full, full.len() / 2).await;
                    }
                    _ => {}
                }
            }
            Mode::HangOn(hung) if method == hung => {
                self.count("hung");
                // Held until the client gives up and closes it.
                let _ = sock.readable().await;
                std::future::pending::<()>().await;
            }
            Mode::HangOn(_) => {}
            Mode::WrongTimes if method == "eth_getLogs" => {
                let answer = self.forward_logs(body.clone()).await;
                let mut parsed: Value = serde_json::from_slice(&answer).unwrap();
                let n = {
                    let mut seqs = self.seqs.lock().unwrap();
                    let seq = seqs.entry(method.clone()).or_default();
                    *seq += 1;
                    *seq
                };
                if let Some(logs) = parsed["result"].as_array_mut()
                    && !logs.is_empty()
                    && n % 3 == 0
                {
                    self.count("block times two days late");
                    for l in logs {
                        let t = u64::from_str_radix(
                            l["blockTimestamp"]
                                .as_str()
                                .unwrap()
                                .trim_start_matches("0x"),
                            16,
                        )
                        .unwrap();
                        l["blockTimestamp"] = json!(format!("{:#x}", t + 2 * 86_400));
                    }
                }
                return respond(&mut sock, 200, parsed.to_string().as_bytes()).await;
            }
            Mode::WrongTimes => {}
            Mode::Tampered if method == "eth_getLogs" => {
                let answer = self.forward_logs(body.clone()).await;
                let mut parsed: Value = serde_json::from_slice(&answer).unwrap();
                let n = {
                    let mut seqs = self.seqs.lock().unwrap();
                    let seq = seqs.entry(method.clone()).or_default();
                    *seq += 1;
                    *seq
                };
                // Even answers: a trade whose subject trades again in the answer (the answer's
                // own arithmetic shows it). Every third odd one: a subject's last trade in the
                // answer (seen at that subject's next trade, in a later answer, or at the head
                // from the market's state).
                // (Only a subject that trades again later on the chain: a subject's very last
                // trade left out is beyond what arithmetic can see, docs/operations.md.)
                let later = if n % 2 == 1 && n % 3 == 0 {
                    let (_, to) = range(&request);
                    let mut ask = request.clone();
                    ask["params"][0]["fromBlock"] = json!(format!("{:#x}", to + 1));
                    ask["params"][0]["toBlock"] = json!("latest");
                    let answer = self.forward(ask.to_string().into_bytes()).await;
                    serde_json::from_slice::<Value>(&answer).unwrap_or_default()["result"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let pick = |logs: &[Value]| match n % 2 {
                    0 => trade_traded_again(logs, true),
                    _ if n % 3 == 0 => {
                        let i = trade_traded_again(logs, false)?;
                        let s = trade_subject(&logs[i])?;
                        later
                            .iter()
                            .any(|l| trade_subject(l).as_deref() == Some(s.as_str()))
                            .then_some(i)
                    }
                    _ => None,
                };
                if let Some(logs) = parsed["result"].as_array_mut()
                    && let Some(i) = pick(logs)
                    && self.tampered.lock().unwrap().insert((
                        logs[i]["blockNumber"].to_string(),
                        logs[i]["logIndex"].to_string(),
                    ))
                {
                    if n % 2 == 1 {
                        self.count("last trade left out");
                        logs.remove(i);
                    } else if n % 4 == 0 {
                        self.count("trade left out");
                        logs.remove(i);
                    } else {
                        self.count("trade served twice");
                        let mut again = logs[i].clone();
                        again["logIndex"] = json!(format!("{:#x}", 1_000 + i));
                        logs.insert(i + 1, again);
                    }
                }
                return respond(&mut sock, 200, parsed.to_string().as_bytes()).await;
            }
            Mode::Tampered => {}
            Mode::ConsistentLie if method == "eth_getLogs" => {
                let answer = self.forward_logs(body.clone()).await;
                let mut parsed: Value = serde_json::from_slice(&answer).unwrap();
                if let Some(logs) = parsed["result"].as_array_mut() {
                    let mut victim = self.earlier_log.lock().unwrap();
                    for l in logs.iter_mut() {
                        let block = l["blockNumber"]
                            .as_str()
                            .map(|b| u64::from_str_radix(b.trim_start_matches("0x"), 16).unwrap());
                        let chosen = match &*victim {
                            Some(v) => {
                                v["transactionHash"] == l["transactionHash"]
                                    && v["logIndex"] == l["logIndex"]
                            }
                            None => trade_subject(l).is_some() && block >= Some(20),
                        };
                        if chosen {
                            if victim.is_none() {
                                *victim = Some(l.clone());
                            }
                            self.count("consistent lie");
                            // ethAmount is the data's fifth word: add one wei.
                            let data = l["data"].as_str().unwrap().to_string();
                            let (head, word) = (&data[..2 + 4 * 64], &data[2 + 4 * 64..2 + 5 * 64]);
                            let eth = u128::from_str_radix(word, 16).unwrap() + 1;
                            l["data"] = json!(format!("{head}{eth:064x}{}", &data[2 + 5 * 64..]));
                        }
                    }
                }
                return respond(&mut sock, 200, parsed.to_string().as_bytes()).await;
            }
            Mode::ConsistentLie => {}
            Mode::LeaveOutThenHold(from_block) if method == "eth_getLogs" => {
                let (from, to) = range(&request);
                // Claimed on arrival: the ranges after it, asked meanwhile, are held.
                let left_out = {
                    let mut claimed = self.left_out_to.lock().unwrap();
                    let was = *claimed;
                    if was.is_none() && from >= from_block {
                        *claimed = Some(to);
                    }
                    was
                };
                match left_out {
                    Some(done) if from > done => {
                        let mut open = self.gate.subscribe();
                        let _ = open.wait_for(|open| *open).await;
                    }
                    None if from >= from_block => {
                        let answer = self.forward_logs(body.clone()).await;
                        let mut parsed: Value = serde_json::from_slice(&answer).unwrap();
                        let mut next = request.clone();
                        next["params"][0]["fromBlock"] = json!(format!("{:#x}", to + 1));
                        next["params"][0]["toBlock"] = json!(format!("{:#x}", to + 1));
                        let next: Value = serde_json::from_slice(
                            &self.forward(next.to_string().into_bytes()).await,
                        )
                        .unwrap();
                        let trading_next: Vec<String> = next["result"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .filter_map(trade_subject)
                            .collect();
                        if let Some(logs) = parsed["result"].as_array_mut()
                            && let Some(i) = (0..logs.len()).rev().find(|&i| {
                                trade_subject(&logs[i]).is_some_and(|s| trading_next.contains(&s))
                            })
                        {
                            // The subject's last trade in the answer (searched from the end).
                            self.count("left out, then held");
                            logs.remove(i);
                        }
                        return respond(&mut sock, 200, parsed.to_string().as_bytes()).await;
                    }
                    _ => {}
                }
            }
            Mode::LeaveOutThenHold(_) => {}
            Mode::NoLogs if method == "eth_getLogs" => {
                self.count("no logs");
                let answer = json!({"jsonrpc": "2.0", "id": id, "result": []});
                return respond(&mut sock, 200, answer.to_string().as_bytes()).await;
            }
            Mode::NoLogs => {}
            Mode::Padded if method == "eth_getLogs" && range(&request).0 >= 20 => {
                let (from, _) = range(&request);
                let mut padded = request.clone();
                padded["params"][0]["fromBlock"] = json!(format!("{:#x}", from - 20));
                self.count("padded");
                let answer = self.forward_logs(padded.to_string().into_bytes()).await;
                return respond(&mut sock, 200, &answer).await;
            }
            Mode::Padded => {}
            Mode::Outage => {
                self.count("outage 502");
                return respond(&mut sock, 502, b"<html>502 Bad Gateway</html>").await;
            }
            Mode::Hung => {
                self.count("hung");
                // Held until the client gives up and closes it.
                let _ = sock.readable().await;
                std::future::pending::<()>().await;
            }
            Mode::Lagging(behind) => {
                let head = self.head().await.saturating_sub(behind);
                let beyond = |v: &Value| {
                    v.as_str()
                        .and_then(|s| u64::from_str_radix(s.trim_start_matches("0x"), 16).ok())
                        .is_some_and(|n| n > head)
                };
                match method.as_str() {
                    "eth_blockNumber" => {
                        self.count("lagging head");
                        let answer =
                            json!({"jsonrpc": "2.0", "id": id, "result": format!("{head:#x}")});
                        return respond(&mut sock, 200, answer.to_string().as_bytes()).await;
                    }
                    "eth_getBlockByNumber" if beyond(&request["params"][0]) => {
                        self.count("lagging unknown block");
                        let answer = json!({"jsonrpc": "2.0", "id": id, "result": null});
                        return respond(&mut sock, 200, answer.to_string().as_bytes()).await;
                    }
                    "eth_getLogs" if beyond(&request["params"][0]["toBlock"]) => {
                        self.count("lagging logs");
                        let e = error(-32602, "block range extends beyond current head block");
                        return respond(&mut sock, 200, e.as_bytes()).await;
                    }
                    _ => {}
                }
            }
            Mode::Misbehaving => {
                let n = {
                    let mut seqs = self.seqs.lock().unwrap();
                    let seq = seqs.entry(method.clone()).or_default();
                    *seq += 1;
                    *seq - 1
                };
                match (method.as_str(), n % 23) {
                    ("eth_getLogs", 0) => {
                        self.count("alchemy 429");
                        let e = error(
                            429,
                            "Your app has exceeded its compute units per second capacity. If you have retries enabled, you can safely ignore this message. If not, check out https://docs.alchemy.com/reference/throughput",
                        );
                        return respond(&mut sock, 429, e.as_bytes()).await;
                    }
                    ("eth_getLogs", 3) => {
                        self.count("infura rate limit");
                        let e = error(-32005, "daily request count exceeded, request rate limited");
                        return respond(&mut sock, 200, e.as_bytes()).await;
                    }
                    ("eth_getLogs" | "eth_getBlockByNumber", 5) => {
                        self.count("internal error");
                        let e = error(-32603, "Internal error");
                        return respond(&mut sock, 200, e.as_bytes()).await;
                    }
                    ("eth_getBlockByNumber", 1 | 8) => {
                        self.count("header not found");
                        let e = error(-32000, "header not found");
                        return respond(&mut sock, 200, e.as_bytes()).await;
                    }
                    ("eth_blockNumber", 2 | 9) => {
                        self.count("quicknode rate limit");
                        let e = error(
                            -32007,
                            "20/second request limit reached - reduce calls per second or upgrade your account at quicknode.com",
                        );
                        return respond(&mut sock, 200, e.as_bytes()).await;
                    }
                    (_, 7) | ("eth_getBlockByNumber", 16) => {
                        // Accepted and never answered.
                        self.count("hung");
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        return Ok(());
                    }
                    ("eth_getLogs", 11) => {
                        // The logs of the next range, as if answering another request. (An
                        // empty answer cannot be told from an honest one: only a range whose
                        // successor holds logs is a lie worth telling.)
                        let (from, to) = range(&request);
                        let span = to - from + 1;
                        let mut shifted = request.clone();
                        shifted["params"][0]["fromBlock"] = json!(format!("{:#x}", from + span));
                        shifted["params"][0]["toBlock"] = json!(format!("{:#x}", to + span));
                        let answer = self.forward(shifted.to_string().into_bytes()).await;
                        let parsed: Value = serde_json::from_slice(&answer).unwrap_or_default();
                        if parsed["result"].as_array().is_some_and(|l| !l.is_empty()) {
                            self.count("wrong range");
                            return respond(&mut sock, 200, &answer).await;
                        }
                    }
                    ("eth_getLogs", 13) => {
                        // Every log twice.
                        let answer = self.forward_logs(body.clone()).await;
                        let mut parsed: Value = serde_json::from_slice(&answer).unwrap();
                        if let Some(logs) = parsed["result"].as_array_mut()
                            && !logs.is_empty()
                        {
                            self.count("repeated logs");
                            let twice: Vec<Value> =
                                logs.iter().flat_map(|l| [l.clone(), l.clone()]).collect();
                            *logs = twice;
                        }
                        return respond(&mut sock, 200, parsed.to_string().as_bytes()).await;
                    }
                    ("eth_getLogs", 19 | 21) if self.injected("log at a wrong block") < 8 => {
                        // A trade already answered for an earlier block, put at a block of this
                        // range in place of that block's log at the same index (same
                        // transaction hash and log index, this block's hash): nothing in the
                        // answer itself contradicts it.
                        let answer = self.forward_logs(body.clone()).await;
                        let mut parsed: Value = serde_json::from_slice(&answer).unwrap();
                        let earlier = self.earlier_log.lock().unwrap().clone();
                        if let (Some(logs), Some(mut fake)) =
                            (parsed["result"].as_array_mut(), earlier)
                            && let Some(host) = logs.first().cloned()
                            && fake["blockNumber"] != host["blockNumber"]
                        {
                            self.count("log at a wrong block");
                            logs.retain(|l| {
                                l["blockNumber"] != host["blockNumber"]
                                    || l["logIndex"] != fake["logIndex"]
                            });
                            fake["blockNumber"] = host["blockNumber"].clone();
                            fake["blockHash"] = host["blockHash"].clone();
                            logs.push(fake);
                        }
                        return respond(&mut sock, 200, parsed.to_string().as_bytes()).await;
                    }
                    ("eth_getLogs", 17) => {
                        // A range that overlaps the one before it.
                        let (from, _) = range(&request);
                        let mut wider = request.clone();
                        wider["params"][0]["fromBlock"] =
                            json!(format!("{:#x}", from.saturating_sub(3)));
                        self.count("overlapping range");
                        let answer = self.forward_logs(wider.to_string().into_bytes()).await;
                        return respond(&mut sock, 200, &answer).await;
                    }
                    _ => {}
                }
            }
        }
        let answer = if method == "eth_getLogs" {
            let answer = self.forward_logs(body).await;
            if let Ok(parsed) = serde_json::from_slice::<Value>(&answer)
                && let Some(first) = parsed["result"].as_array().and_then(|l| l.first())
            {
                *self.earlier_log.lock().unwrap() = Some(first.clone());
            }
            answer
        } else {
            self.forward(body).await
        };
        respond(&mut sock, 200, &answer).await
    }

    async fn forward_logs(&self, body: Vec<u8>) -> Vec<u8> {
        let delay = self.logs_delay_ms.load(Ordering::Relaxed);
        if delay > 0 {
            tokio::time::sleep(Duration::from_millis(delay)).await;
        }
        self.forward(body).await
    }

    async fn forward(&self, body: Vec<u8>) -> Vec<u8> {
        let resp = self
            .client
            .post(&self.upstream)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("anvil answers the proxy");
        resp.bytes().await.unwrap().to_vec()
    }

    async fn head(&self) -> u64 {
        let answer = self
            .forward(br#"{"jsonrpc":"2.0","id":1,"method":"eth_blockNumber","params":[]}"#.to_vec())
            .await;
        let v: Value = serde_json::from_slice(&answer).unwrap();
        u64::from_str_radix(v["result"].as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
    }
}

/// The subject of a `Trade` log (its data's second word), `None` for another event.
fn trade_subject(l: &Value) -> Option<String> {
    let trade = format!("{:#x}", keymarket_contracts::TRADE_TOPIC);
    (l["topics"][0].as_str()? == trade)
        .then(|| l["data"].as_str().map(|d| d[2 + 64..2 + 128].to_string()))?
}

/// The index of the first `Trade` log whose subject has (`again`) or has not another `Trade`
/// later in `logs`.
fn trade_traded_again(logs: &[Value], again: bool) -> Option<usize> {
    (0..logs.len()).find(|&i| {
        trade_subject(&logs[i]).is_some_and(|s| {
            logs[i + 1..]
                .iter()
                .any(|l| trade_subject(l).as_deref() == Some(s.as_str()))
                == again
        })
    })
}

fn range(request: &Value) -> (u64, u64) {
    let p = &request["params"][0];
    let num = |k: &str| {
        u64::from_str_radix(p[k].as_str().unwrap_or("0x0").trim_start_matches("0x"), 16)
            .unwrap_or(0)
    };
    (num("fromBlock"), num("toBlock"))
}

/// Reads one HTTP/1.1 request's body: headers, then Content-Length bytes (`None`: the client
/// went away).
async fn read_request(sock: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    let header_end = loop {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..header_end]).to_lowercase();
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap_or(0))
        })
        .unwrap_or(0);
    while buf.len() < header_end + len {
        let n = sock.read(&mut chunk).await?;
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(buf[header_end..header_end + len].to_vec()))
}

/// Writes a whole response and closes.
async fn respond(sock: &mut TcpStream, status: u16, body: &[u8]) -> std::io::Result<()> {
    respond_cut(sock, status, body, body.len()).await
}

/// Writes a response of which only the first `sent` body bytes go out (with the full
/// Content-Length) and closes: a connection broken mid-body when `sent` is short.
async fn respond_cut(
    sock: &mut TcpStream,
    status: u16,
    body: &[u8],
    sent: usize,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(&body[..sent]).await?;
    sock.shutdown().await
}

/// Terminates TLS with `config` on a loopback port and passes the bytes both ways to `upstream`
/// untouched (HTTP and WebSocket alike: it looks into nothing); returns the port.
pub(crate) async fn tls_front(upstream: SocketAddr, config: Arc<ServerConfig>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let acceptor = TlsAcceptor::from(config);
    tokio::spawn(async move {
        while let Ok((sock, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A client that refuses the certificate ends the handshake: nothing to forward.
                let Ok(mut tls) = acceptor.accept(sock).await else {
                    return;
                };
                let Ok(mut upstream) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
            });
        }
    });
    port
}
