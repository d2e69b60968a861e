//! `keymarket bench-store`: writes a friend.tech-sized database — by default 12,000,000 trades
//! over 100,000 subjects and 500,000 traders with power-law (Zipf) popularity — through the
//! indexer's store layer (`StoreWriter::commit`, the same batches, aggregates and deferred indexes as a
//! backfill), without a chain. Trades follow the contract's rules: a subject buys its own first
//! key, prices and fees come from the bonding curve (`keymarket_contracts::curve`, 5% + 5%), a
//! trader sells only keys it holds and never the last key. For the API benchmark
//! (`scripts/bench-api.sh`).

use std::{collections::HashMap, time::Instant};

use alloy::primitives::{Address, B256, U256};
use eyre::{Result, bail};
use keymarket_contracts::curve;
use keymarket_indexer::{Batch, StoreWriter, TradeRow, amount::Wei};
use rand::{RngExt, SeedableRng, rngs::StdRng};
use rand_distr::{Distribution, Zipf};
use tracing::info;

use crate::cli::DatabaseArgs;

/// What to generate.
#[derive(Debug, Clone, clap::Args)]
pub(crate) struct BenchStoreArgs {
    /// The database to fill (must be empty).
    #[command(flatten)]
    pub(crate) db: DatabaseArgs,
    /// Trades to write.
    #[arg(long, default_value_t = 12_000_000)]
    pub(crate) trades: u64,
    /// Subjects.
    #[arg(long, default_value_t = 100_000)]
    pub(crate) subjects: u32,
    /// Traders.
    #[arg(long, default_value_t = 500_000)]
    pub(crate) traders: u32,
    /// Trades per committed batch.
    #[arg(long, default_value_t = 20_000)]
    pub(crate) batch: usize,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    pub(crate) seed: u64,
}

/// A made-up market on Base's chain id, so it cannot be mistaken for a local anvil one.
const CHAIN_ID: u64 = 8453;
const MARKET: Address = Address::repeat_byte(0x4b);
/// One trade every 2.6 s: 12M trades span about a year, as friend.tech's did.
const SECS_PER_TRADE: f64 = 2.6;
const START_TIME: i64 = 1_691_625_600; // 2023-08-10, friend.tech's launch
/// The most keys of one subject (a price of 500²/16000 ≈ 15.6 ETH a key).
const MAX_SUPPLY: u64 = 500;

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// A random-looking 32-byte hash derived from `n` (transaction and block hashes).
fn hash(kind: u64, n: u64) -> B256 {
    let mut b = [0u8; 32];
    for (i, chunk) in b.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&splitmix(n ^ (kind << 56) ^ ((i as u64) << 48)).to_be_bytes());
    }
    B256::from(b)
}

fn address(kind: u8, i: u32) -> Address {
    let mut b = [0u8; 20];
    b[0] = kind;
    b[4..12].copy_from_slice(&splitmix(u64::from(i) | (u64::from(kind) << 40)).to_be_bytes());
    b[16..].copy_from_slice(&i.to_be_bytes());
    Address::from(b)
}

/// Generates and stores the trades; prints the rate.
pub(crate) async fn run(args: BenchStoreArgs) -> Result<()> {
    let database = args.db.for_writing();
    let store = StoreWriter::connect(&database).await?;
    store
        .ensure_chain(CHAIN_ID, B256::repeat_byte(0x4b))
        .await?;
    let mut market = store.ensure_market(CHAIN_ID, MARKET, 1).await?;
    if market.next_block != 1 {
        bail!(
            "{} already holds this benchmark's market: use an empty database",
            database
        );
    }
    let subjects: Vec<Address> = (0..args.subjects).map(|i| address(0x5b, i)).collect();
    let traders: Vec<Address> = (0..args.traders).map(|i| address(0x7a, i)).collect();
    let subject_zipf = Zipf::new(f64::from(args.subjects), 1.1)?;
    let trader_zipf = Zipf::new(f64::from(args.traders), 1.0)?;
    let mut rng = StdRng::seed_from_u64(args.seed);
    let mut supply = vec![0u64; args.subjects as usize];
    let mut held: HashMap<(u32, u32), u64> = HashMap::new();
    let five = U256::from(50_000_000_000_000_000u64);
    let wei = |v: U256| Wei::from_u256(v).expect("amounts fit");

    let started = Instant::now();
    let mut last_log = Instant::now();
    let mut written = 0u64;
    // As a long backfill: no secondary indexes, the aggregates built once at the end.
    store.drop_secondary_indexes().await?;
    store.defer_aggregates(&market).await?;
    while written < args.trades {
        let n = (args.trades - written).min(args.batch as u64);
        let mut trades = Vec::with_capacity(n as usize);
        for k in 0..n {
            let seq = written + k;
            // Buyers stop at a price (friend.tech's busiest subjects held hundreds to a few
            // thousand keys): a buy that would go past MAX_SUPPLY is drawn again.
            let (s, sup, trader, t, is_buy, amount) = loop {
                let s = subject_zipf.sample(&mut rng) as u32 - 1;
                let sup = supply[s as usize];
                // A subject's first key is bought by the subject itself (not one of the traders).
                if sup == 0 {
                    break (s, sup, subjects[s as usize], None, true, 1);
                }
                let t = trader_zipf.sample(&mut rng) as u32 - 1;
                let have = held.get(&(s, t)).copied().unwrap_or(0);
                let sellable = have.min(sup - 1);
                if sellable > 0 && rng.random_range(0..100) < 45 {
                    let amount = rng.random_range(1..=sellable.min(3));
                    break (s, sup, traders[t as usize], Some(t), false, amount);
                }
                let amount = if rng.random_range(0..10) == 0 {
                    rng.random_range(2..=5)
                } else {
                    1
                };
                if sup + amount <= MAX_SUPPLY {
                    break (s, sup, traders[t as usize], Some(t), true, amount);
                }
            };
            let price = if is_buy {
                curve::price(curve::CURVE_STANDARD, sup, amount)
            } else {
                curve::price(curve::CURVE_STANDARD, sup - amount, amount)
            };
            let new_supply = if is_buy { sup + amount } else { sup - amount };
            supply[s as usize] = new_supply;
            if let Some(t) = t {
                let h = held.entry((s, t)).or_default();
                if is_buy {
                    *h += amount;
                } else {
                    *h -= amount;
                }
            }
            let block = seq as i64 + 1;
            let fee = curve::fee(price, five);
            trades.push(TradeRow {
                chain_id: CHAIN_ID as i64,
                tx_hash: hash(1, seq),
                log_index: 0,
                block_number: block,
                block_hash: hash(2, seq),
                block_time: START_TIME + (seq as f64 * SECS_PER_TRADE) as i64,
                trader,
                subject: subjects[s as usize],
                is_buy,
                share_amount: amount as i64,
                eth: wei(price),
                protocol_fee: wei(fee),
                subject_fee: wei(fee),
                supply: new_supply as i64,
            });
        }
        let (from, to) = (market.next_block, written + n);
        let last_hash = trades.last().expect("n > 0").block_hash;
        let batch = Batch {
            from,
            to,
            trades,
            blocks: vec![(to, last_hash)],
            head: args.trades,
            parent: None,
            refused: 0,
            ..Batch::default()
        };
        store.commit(&market, &batch, 128).await?;
        market.next_block = to + 1;
        written += n;
        if last_log.elapsed().as_secs() >= 5 {
            last_log = Instant::now();
            let secs = started.elapsed().as_secs_f64();
            info!(target: "keymarket::bench_store", written, total = args.trades, trades_per_sec = (written as f64 / secs) as u64, holdings = held.len(), "progress");
        }
    }
    let stored = started.elapsed();
    finish(&store, &market, written, &database, started, stored).await
}

/// Builds the secondary indexes and prints the run's figures.
async fn finish(
    store: &StoreWriter,
    market: &keymarket_indexer::MarketState,
    written: u64,
    database: &str,
    started: Instant,
    stored: std::time::Duration,
) -> Result<()> {
    // As a long backfill ends: the aggregates, then the indexes.
    store.build_aggregates(market).await?;
    let built = started.elapsed();
    store.build_secondary_indexes().await?;
    let total = started.elapsed();
    let t = store.totals(market.id, None).await?;
    println!(
        "bench-store: {written} trades, {} traders, {} subjects into {} in {:.1}s ({:.0} trades/s; batches {:.1}s, aggregate build {:.1}s, index builds {:.1}s)",
        t.traders,
        t.subjects,
        database,
        total.as_secs_f64(),
        written as f64 / total.as_secs_f64(),
        stored.as_secs_f64(),
        (built - stored).as_secs_f64(),
        (total - built).as_secs_f64()
    );
    Ok(())
}
