//! `keymarket bench-live` (hidden): the latency from a block being mined to its trades being
//! queryable, while following.

use std::time::Duration;

use alloy::providers::ProviderBuilder;
use clap::Args;
use eyre::{Result, bail};
use keymarket_contracts::Deployment;
use keymarket_indexer::{IndexerConfig, MarketSpec, StoreReader, StoreWriter};
use keymarket_simulate::SimConfig;

use crate::cli::{DatabaseArgs, DeploymentArgs, RpcArgs};

/// `keymarket bench-live`'s arguments.
#[derive(Args)]
pub(crate) struct BenchLiveArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    #[command(flatten)]
    pub(crate) deployment: DeploymentArgs,
    /// The database to index into (should be fresh).
    #[command(flatten)]
    pub(crate) db: DatabaseArgs,
    /// Blocks to mine.
    #[arg(long, default_value_t = 200)]
    pub(crate) blocks: u64,
    /// Trades per block.
    #[arg(long, default_value_t = 50)]
    pub(crate) trades_per_block: u64,
    /// The follower's head polling interval, in milliseconds.
    #[arg(long, default_value_t = 100)]
    pub(crate) poll_ms: u64,
    /// Mine a block every this many milliseconds (a chain's block time, e.g. 2000 for Base);
    /// 0 = each block as soon as the previous one is indexed.
    #[arg(long, default_value_t = 0)]
    pub(crate) interval_ms: u64,
}

/// Mines blocks of simulated trades one at a time while an in-process follower indexes them, and
/// measures, per block, the time from the block's receipts being available (it is mined) until
/// its trades are visible through a separate database connection.
pub(crate) async fn bench_live(args: BenchLiveArgs) -> Result<()> {
    let deployment = Deployment::read(&args.deployment.deployment)?;
    let provider =
        ProviderBuilder::new().connect_client(args.rpc.client(Duration::from_secs(300)).await?);
    let spec = MarketSpec {
        address: deployment.address,
        start_block: deployment.deploy_block,
        chain_id: Some(deployment.chain_id),
    };
    let database = args.db.for_writing();
    let writer = StoreWriter::connect(&database).await?;
    let reader = StoreReader::connect(&database, None).await?;
    let config = IndexerConfig {
        follow: true,
        poll_interval: Duration::from_millis(args.poll_ms),
        ..IndexerConfig::default()
    };
    let sim = SimConfig {
        trades: args.trades_per_block,
        batch_size: args.trades_per_block as usize,
        progress: false,
        ..SimConfig::default()
    };
    // Open the subjects (a block of its own) and catch up first, then follow in the background:
    // from here on every simulate call mines exactly one block.
    keymarket_simulate::simulate(&provider, &deployment, &sim).await?;
    keymarket_indexer::run(&provider, &writer, spec, &IndexerConfig::default()).await?;
    let follower = {
        let (provider, writer) = (provider.clone(), writer.clone());
        tokio::spawn(async move { keymarket_indexer::run(provider, &writer, spec, &config).await })
    };
    let mut latencies = Vec::with_capacity(args.blocks as usize);
    let mut tick = tokio::time::interval(Duration::from_millis(args.interval_ms.max(1)));
    for i in 0..args.blocks {
        if args.interval_ms > 0 {
            tick.tick().await;
        }
        let report = keymarket_simulate::simulate(
            &provider,
            &deployment,
            &SimConfig {
                seed: 1000 + i,
                ..sim.clone()
            },
        )
        .await?;
        let mined = std::time::Instant::now();
        let block = report.block_range.1;
        loop {
            if reader.trades_in_block(block).await? == report.trades {
                break;
            }
            if mined.elapsed() > Duration::from_secs(30) {
                bail!("block {block} not indexed after 30 s");
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        latencies.push(mined.elapsed());
    }
    follower.abort();
    latencies.sort();
    let pct = |p: f64| {
        latencies[((latencies.len() - 1) as f64 * p).round() as usize].as_secs_f64() * 1000.0
    };
    println!(
        "live latency over {} blocks of {} trades (poll {} ms, a block every {} ms): p50 {:.0} ms, p90 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        args.trades_per_block,
        args.poll_ms,
        args.interval_ms,
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
