//! `/metrics` in the Prometheus (OpenMetrics text) format: request latencies per route and
//! status, and per market the indexed trades, indexed block, last seen head and lag, read from
//! the database at scrape time, and which indexer process owns it.

use std::time::Duration;

use prometheus_client::{
    encoding::EncodeLabelSet,
    metrics::{
        counter::Counter,
        family::Family,
        gauge::Gauge,
        histogram::{Histogram, exponential_buckets},
    },
    registry::Registry,
};

/// Labels of a request.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The matched route, e.g. `/v1/subjects/{address}`.
    pub route: String,
    /// The response status.
    pub status: u16,
}

/// Labels of a market's gauges.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MarketLabels {
    /// The market's id in the database.
    pub market: i64,
}

/// Labels of a market's owner.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OwnerLabels {
    /// The market's id in the database.
    pub market: i64,
    /// The indexer process holding its lease (`host:pid:…`).
    pub owner: String,
}

/// Labels of the indexer's retries.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FaultLabels {
    /// `rate_limited`, `transient`, `timeout` (RPC), `database`, `refused_log` (a `Trade`
    /// log that cannot be stored as it is), `wrong_block_times` (an answer refused for its
    /// block times), `curve_break` (a batch whose trades break the curve, fetched again) or
    /// `curve_unverified` (one stored although it does, the chain saying so) or
    /// `second_provider_correction` (one a second provider's answer corrected).
    pub fault: &'static str,
}

/// Where the retry totals come from: (fault label, total so far) pairs.
pub type RetriesSource = std::sync::Arc<dyn Fn() -> Vec<(&'static str, u64)> + Send + Sync>;

/// The API's metrics.
pub struct Metrics {
    /// Faults an indexer running in this process waited out, read at scrape time from
    /// [`Metrics::with_retries`]'s source.
    retries: Family<FaultLabels, Counter>,
    retries_source: Option<RetriesSource>,
    /// Serialises bringing `retries` up to date (two scrapes at once would add a delta twice).
    retries_sync: std::sync::Mutex<()>,
    registry: Registry,
    requests: Family<RequestLabels, Histogram>,
    /// Trades with a non-zero amount, per market.
    pub trades: Family<MarketLabels, Gauge>,
    /// The newest indexed block, per market.
    pub indexed_block: Family<MarketLabels, Gauge>,
    /// The chain head the indexer last saw, per market.
    pub head_block: Family<MarketLabels, Gauge>,
    /// Head minus indexed block, per market.
    pub lag_blocks: Family<MarketLabels, Gauge>,
    /// 1 for the process holding each market's live lease (PostgreSQL with `keymarket index`);
    /// cleared at each scrape, so a market nobody owns has no series.
    pub owner: Family<OwnerLabels, Gauge>,
    /// Each market's lease epoch: how many times it changed hands (1: its first owner).
    pub lease_epoch: Family<MarketLabels, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("keymarket");
        // 0.1 ms … 3.3 s.
        let requests = Family::<RequestLabels, Histogram>::new_with_constructor(
            (|| Histogram::new(exponential_buckets(0.0001, 2.0, 16))) as fn() -> Histogram,
        );
        registry.register(
            "http_request_duration_seconds",
            "API request latency by route and status",
            requests.clone(),
        );
        let mut gauge = |name: &str, help: &str| {
            let f = Family::<MarketLabels, Gauge>::default();
            registry.register(name, help, f.clone());
            f
        };
        let trades = gauge(
            "indexed_trades",
            "Trades with a non-zero amount in the database",
        );
        let indexed_block = gauge("indexed_block", "Newest block indexed");
        let head_block = gauge("head_block", "Chain head the indexer last saw");
        let lag_blocks = gauge(
            "lag_blocks",
            "Blocks between the head and the indexed block",
        );
        let lease_epoch = gauge(
            "lease_epoch",
            "How many times the market's lease changed hands between indexer processes",
        );
        let owner = Family::<OwnerLabels, Gauge>::default();
        registry.register(
            "market_owner",
            "1 for the indexer process holding the market's live lease",
            owner.clone(),
        );
        let retries = Family::<FaultLabels, Counter>::default();
        registry.register(
            "indexer_retries",
            "RPC calls and database transactions the indexer retried in this process, by fault",
            retries.clone(),
        );
        Self {
            retries,
            retries_source: None,
            retries_sync: std::sync::Mutex::default(),
            registry,
            requests,
            trades,
            indexed_block,
            head_block,
            lag_blocks,
            owner,
            lease_epoch,
        }
    }
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Metrics that also export the retry totals `source` gives, as
    /// `keymarket_indexer_retries_total{fault}` (the binary wires in the indexer's counters when
    /// it runs the indexer in the same process, as `keymarket up` does).
    pub fn with_retries(source: RetriesSource) -> Self {
        Self {
            retries_source: Some(source),
            ..Self::default()
        }
    }

    /// Records one request.
    pub fn observe(&self, route: String, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { route, status })
            .observe(elapsed.as_secs_f64());
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> String {
        if let Some(source) = &self.retries_source {
            let _sync = self.retries_sync.lock().expect("metrics");
            for (fault, total) in source() {
                let counter = self.retries.get_or_create(&FaultLabels { fault });
                counter.inc_by(total.saturating_sub(counter.get()));
            }
        }
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}
