//! Sending a planned batch, mining it, and reading back what the receipts say.

use std::collections::HashSet;

use alloy::{
    network::Ethereum,
    primitives::B256,
    providers::{Provider, ext::AnvilApi},
    rpc::client::BatchRequest,
    rpc::types::{TransactionReceipt, anvil::MineOptions},
    sol_types::SolEvent,
};
use keymarket_contracts::KeyMarket;

use crate::{Error, Result, SimReport, plan::Planned};

/// Sends a batch in one JSON-RPC request, mines it (at `timestamp`, one second later for each
/// further block it needs), tallies the receipts, and returns the last block's timestamp.
pub(crate) async fn send_and_mine<P: Provider + AnvilApi<Ethereum>>(
    provider: &P,
    batch: Vec<Planned>,
    timestamp: u64,
    report: &mut SimReport,
) -> Result<u64> {
    if batch.is_empty() {
        return Ok(timestamp.saturating_sub(1));
    }
    let mut rpc = BatchRequest::new(provider.client());
    let mut waiters = Vec::with_capacity(batch.len());
    for p in &batch {
        waiters.push(rpc.add_call::<_, B256>("eth_sendTransaction", &(p.tx.clone(),))?);
        report.expected_reverts += u64::from(p.expect_revert);
    }
    rpc.send().await?;
    let mut expected = HashSet::new();
    for (w, p) in waiters.into_iter().zip(&batch) {
        let hash = w.await?;
        if p.expect_revert {
            expected.insert(hash);
        }
    }
    report.sent += batch.len() as u64;

    let mut pending = batch.len();
    let mut rounds = 0;
    while pending > 0 {
        provider
            .evm_mine(Some(MineOptions::Timestamp(Some(timestamp + rounds))))
            .await?;
        let number = provider.get_block_number().await?;
        let receipts = provider
            .get_block_receipts(number.into())
            .await?
            .unwrap_or_default();
        pending = pending.saturating_sub(receipts.len());
        tally(&receipts, &expected, (timestamp + rounds) / 86_400, report);
        report.blocks += 1;
        if report.block_range.0 == 0 {
            report.block_range.0 = number;
        }
        report.block_range.1 = number;
        rounds += 1;
        if rounds > 64 && receipts.is_empty() {
            return Err(Error::Unmined(pending));
        }
    }
    Ok(timestamp + rounds - 1)
}

pub(crate) fn tally(
    receipts: &[TransactionReceipt],
    expected_reverts: &HashSet<B256>,
    day: u64,
    report: &mut SimReport,
) {
    for r in receipts {
        if !r.status() {
            report.reverted += 1;
            if !expected_reverts.contains(&r.transaction_hash)
                && report.unexpected_revert_txs.len() < 10
            {
                report.unexpected_revert_txs.push(r.transaction_hash);
            }
            continue;
        }
        for log in r.inner.logs() {
            let Some(topic0) = log.topics().first() else {
                continue;
            };
            if *topic0 == KeyMarket::Trade::SIGNATURE_HASH {
                if let Ok(t) = KeyMarket::Trade::decode_log_data(log.data()) {
                    report.trades += 1;
                    let subject = report.subjects.entry(t.subject).or_default();
                    subject.trades += 1;
                    subject.volume += t.ethAmount;
                    subject.supply = t.supply.saturating_to();
                    let d = report.days.entry(day).or_default();
                    d.volume += t.ethAmount;
                    if t.isBuy {
                        report.buys += 1;
                        report.buy_volume += t.ethAmount;
                        d.buys += 1;
                    } else {
                        report.sells += 1;
                        report.sell_volume += t.ethAmount;
                        d.sells += 1;
                    }
                    report.protocol_fees += t.protocolEthAmount;
                    report.subject_fees += t.subjectEthAmount;
                }
            } else if *topic0 == KeyMarket::SubjectCreated::SIGNATURE_HASH {
                if let Ok(e) = KeyMarket::SubjectCreated::decode_log_data(log.data()) {
                    report.subjects.entry(e.subject).or_default().curve = e.curve;
                }
            } else if *topic0 == KeyMarket::ReferralFeePaid::SIGNATURE_HASH
                && let Ok(e) = KeyMarket::ReferralFeePaid::decode_log_data(log.data())
            {
                report.referral_fees += e.amount;
            }
        }
    }
}
