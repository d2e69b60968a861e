//! What the commands print: the simulator's report (from the chain's receipts) and an indexed
//! market's headline numbers (from the database).

use alloy::{primitives::utils::format_ether, providers::Provider};
use eyre::{Result, bail};
use keymarket_indexer::{MarketSpec, RunReport, StoreWriter};
use keymarket_simulate::SimReport;

pub(crate) fn print_report(r: &SimReport, json: bool) -> Result<()> {
    let calibration = keymarket_simulate::calibration::Calibration::of(r);
    if json {
        // Amounts in the one shape every JSON answer uses ({eth, wei}), not U256's hex.
        let mut v = serde_json::to_value(r)?;
        v["calibration"] = serde_json::to_value(&calibration.figures)?;
        for (key, wei) in [
            ("buyVolume", r.buy_volume),
            ("sellVolume", r.sell_volume),
            ("protocolFees", r.protocol_fees),
            ("subjectFees", r.subject_fees),
            ("referralFees", r.referral_fees),
        ] {
            if let Some(slot) = v.get_mut(key) {
                *slot = crate::output::amount(wei);
            }
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("\nsimulated trading, read back from the chain's receipts:");
    println!(
        "  blocks           {} ({}..={})",
        r.blocks, r.block_range.0, r.block_range.1
    );
    println!(
        "  transactions     {} sent, {} reverted ({} built to revert)",
        r.sent, r.reverted, r.expected_reverts
    );
    println!(
        "  trades           {} ({} buys, {} sells); {} subjects opened",
        r.trades, r.buys, r.sells, r.subjects_opened
    );
    println!(
        "  volume           {} ETH (buys {} ETH, sells {} ETH)",
        format_ether(r.buy_volume + r.sell_volume),
        format_ether(r.buy_volume),
        format_ether(r.sell_volume)
    );
    println!(
        "  protocol fees    {} ETH (of which referrals {} ETH)",
        format_ether(r.protocol_fees),
        format_ether(r.referral_fees)
    );
    println!("  subject fees     {} ETH", format_ether(r.subject_fees));
    println!(
        "  rate             {:.0} trades/s over {:.1}s",
        r.trades_per_sec(),
        r.elapsed.as_secs_f64()
    );
    println!("\nagainst friend.tech (Dune's figures; docs/simulator.md):");
    for line in calibration.table().lines() {
        println!("  {line}");
    }
    if r.unexpected_reverts() > 0 {
        bail!(
            "{} trades reverted that were not built to revert, e.g. {:?}",
            r.unexpected_reverts(),
            r.unexpected_revert_txs
        );
    }
    Ok(())
}

/// Prints the headline stats of a market from the database, and the run's rate.
pub(crate) async fn print_stats<P: Provider>(
    store: &StoreWriter,
    provider: &P,
    spec: &MarketSpec,
    r: &RunReport,
) -> Result<()> {
    let market = store
        .ensure_market(
            provider.get_chain_id().await?,
            spec.address,
            spec.start_block,
        )
        .await?;
    let t = store.totals(market.id, None).await?;
    let volume = t.buy_volume.plus(t.sell_volume).to_u256();
    println!(
        "market {} (chain {}), indexed to block {}:",
        spec.address,
        market.chain_id,
        market.next_block.saturating_sub(1)
    );
    let gross = t.protocol_fees.to_u256();
    let referrals = t.referral_payouts.to_u256();
    println!(
        "  protocol revenue  {} ETH net of referrals (charged {} ETH, referral payouts {} ETH)",
        format_ether(gross.saturating_sub(referrals)),
        format_ether(gross),
        format_ether(referrals)
    );
    println!(
        "  subject revenue   {} ETH",
        format_ether(t.subject_fees.to_u256())
    );
    println!(
        "  volume            {} ETH (buys {} ETH, sells {} ETH)",
        format_ether(volume),
        format_ether(t.buy_volume.to_u256()),
        format_ether(t.sell_volume.to_u256())
    );
    println!(
        "  trades            {} ({} buys, {} sells)",
        t.trades, t.buys, t.sells
    );
    println!("  traders           {}; subjects {}", t.traders, t.subjects);
    println!(
        "  this run          {} trades in {:.2}s ({:.0} trades/s); store stage {:.2}s ({:.0} trades/s); waiting for the RPC {:.2}s; building deferred indexes {:.2}s; building deferred aggregates {:.2}s; other {:.2}s",
        r.trades,
        r.elapsed.as_secs_f64(),
        r.trades as f64 / r.elapsed.as_secs_f64().max(1e-9),
        r.store_time.as_secs_f64(),
        r.trades as f64 / r.store_time.as_secs_f64().max(1e-9),
        r.fetch_wait.as_secs_f64(),
        r.index_time.as_secs_f64(),
        r.aggregate_time.as_secs_f64(),
        r.elapsed
            .saturating_sub(r.store_time + r.fetch_wait + r.index_time + r.aggregate_time)
            .as_secs_f64()
    );
    Ok(())
}
