//! `keymarket tx HASH`: what became of a transaction — unknown, pending, mined (with its `Trade`
//! events decoded) or reverted. For a trader whose `buy` was interrupted after sending.

use alloy::{primitives::TxHash, providers::Provider};
use clap::Args;
use eyre::{Result, bail};
use keymarket_contracts::{revert::eth, trade::Mined};
use serde_json::json;
use std::fmt::Write;

use crate::{
    market::{Budget, MarketArgs},
    output::{Output, amount, trade_event},
};

#[derive(Args, Debug)]
pub(crate) struct TxArgs {
    /// The transaction's hash (0x and 64 hex digits), as `buy`, `sell`, `launch` and `withdraw` print it.
    hash: TxHash,
    #[command(flatten)]
    market: MarketArgs,
}

/// The status; exit status 0 when it is mined and succeeded or still pending, 1 otherwise.
pub(crate) async fn tx(args: TxArgs) -> Result<Output> {
    let budget = Budget::new(&args.market, false);
    let (provider, _) = args.market.chain(&budget).await?;
    let hash = args.hash;
    let receipt = budget
        .run(
            "eth_getTransactionReceipt",
            provider.get_transaction_receipt(hash),
        )
        .await?;
    let Some(receipt) = receipt else {
        let known = budget
            .run(
                "eth_getTransactionByHash",
                provider.get_transaction_by_hash(hash),
            )
            .await?;
        if known.is_none() {
            bail!(
                "tx {hash} is unknown to the RPC at {}: never sent, dropped from the mempool, or on another chain",
                args.market.rpc.shown()
            );
        }
        return Ok(if args.market.json {
            Output::Json(json!({ "tx": hash.to_string(), "status": "pending" }))
        } else {
            Output::Text(format!("tx {hash} is pending: sent, not mined yet\n"))
        });
    };
    let block = receipt.block_number.unwrap_or_default();
    let mined = match Mined::from_receipt(&receipt) {
        Ok(m) => m,
        Err(_) => {
            bail!("tx {hash} was mined in block {block} and reverted: it did nothing but cost gas")
        }
    };
    if args.market.json {
        return Ok(Output::Json(json!({
            "tx": hash.to_string(), "status": "mined", "block": block, "gasUsed": mined.gas_used,
            "gasFee": amount(mined.fee), "trades": mined.trades.iter().map(trade_event).collect::<Vec<_>>(),
            "withdrawn": amount(mined.withdrawn),
        })));
    }
    let mut out = format!(
        "tx {hash} was mined in block {block} and succeeded (gas {})\n",
        mined.gas_used
    );
    for t in &mined.trades {
        let _ = writeln!(
            out,
            "  {} {} key(s) of {} by {} for {} (supply now {})",
            if t.isBuy { "bought" } else { "sold" },
            t.shareAmount,
            t.subject,
            t.trader,
            eth(t.ethAmount),
            t.supply
        );
    }
    if !mined.withdrawn.is_zero() {
        let _ = writeln!(out, "  withdrew {}", eth(mined.withdrawn));
    }
    Ok(Output::Text(out))
}

impl TxArgs {
    pub(crate) fn json(&self) -> bool {
        self.market.json
    }
}
