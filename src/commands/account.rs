//! The subject's and earner's commands: `launch` (open your own keys on a curve) and `withdraw`
//! (subject fees, referral credits and deferred payments).

use alloy::{
    primitives::{Address, U256},
    rpc::types::TransactionRequest,
    sol_types::SolCall,
};
use clap::{Args, ValueEnum};
use eyre::{Result, bail};
use keymarket_contracts::{KeyMarket, revert::eth, trade::Flavor};
use serde_json::json;

use crate::{
    market::{Budget, SendArgs, parse_address, send},
    output::{Output, amount},
};

/// A subject's curve.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum CurveArg {
    /// friend.tech's s²/16000.
    Standard,
    /// 10× steeper: s²/1600.
    Steep,
}

#[derive(Args, Debug)]
pub(crate) struct LaunchArgs {
    /// Keys to buy first (at least 1; the first is free).
    #[arg(default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    amount: u64,
    /// The curve of your keys.
    #[arg(long, value_enum, default_value = "standard")]
    curve: CurveArg,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Args, Debug)]
pub(crate) struct WithdrawArgs {
    /// Send to this address instead of the signer's (checked as wallets check addresses).
    #[arg(long, value_parser = parse_address)]
    to: Option<Address>,
    #[command(flatten)]
    send: SendArgs,
}

/// `keymarket launch [N] [--curve standard|steep]`.
pub(crate) async fn launch(args: LaunchArgs) -> Result<Output> {
    let budget = Budget::new(&args.send.market, true);
    let (m, signer) = args.send.connect(&budget).await?;
    let from = signer.address();
    if m.flavor != Flavor::KeyMarket {
        bail!(
            "{} is a friend.tech-style market: it has no curve choice; buy your first key with keymarket buy YOUR_ADDRESS 1",
            m.address
        );
    }
    let k = KeyMarket::new(m.address, &m.provider);
    let curve: u8 = match args.curve {
        CurveArg::Standard => 0,
        CurveArg::Steep => 1,
    };
    let cost = budget
        .run("pricing the first keys", async {
            let price = k
                .getPriceOnCurve(curve, U256::ZERO, U256::from(args.amount))
                .call()
                .await?;
            let fees = k.protocolFeePercent().call().await? + k.subjectFeePercent().call().await?;
            Ok::<_, alloy::contract::Error>(price + keymarket_contracts::curve::fee(price, fees))
        })
        .await?;
    let tx = TransactionRequest::default()
        .to(m.address)
        .value(cost)
        .input(
            KeyMarket::buyFirstSharesCall {
                curve,
                amount: U256::from(args.amount),
            }
            .abi_encode()
            .into(),
        );
    let json = args.send.market.json;
    let mined = send(&m, signer, tx, &budget, json).await?;
    Ok(if json {
        Output::Json(json!({
            "tx": mined.tx_hash.to_string(), "block": mined.block, "subject": from.to_string(),
            "amount": args.amount.to_string(), "curve": curve, "paid": amount(cost),
        }))
    } else {
        Output::Text(format!(
            "opened your keys: {from} bought its first {} key(s) on the {} curve for {} (tx {}, block {})\n",
            args.amount,
            if curve == 0 { "standard" } else { "steep" },
            eth(cost),
            mined.tx_hash,
            mined.block
        ))
    })
}

/// `keymarket withdraw [--to ADDRESS]`: subject fees, referral credits and deferred payments.
pub(crate) async fn withdraw(args: WithdrawArgs) -> Result<Output> {
    let budget = Budget::new(&args.send.market, true);
    let (m, signer) = args.send.connect(&budget).await?;
    let from = signer.address();
    if m.flavor != Flavor::KeyMarket {
        bail!(
            "{} is a friend.tech-style market: it pays fees as they arise, there is nothing to withdraw",
            m.address
        );
    }
    let k = KeyMarket::new(m.address, &m.provider);
    let owed = budget
        .run("reading what is withdrawable", k.withdrawable(from).call())
        .await?;
    if owed.is_zero() {
        bail!("there is nothing to withdraw for {from}");
    }
    let call = match args.to {
        Some(to) => KeyMarket::withdrawToCall { to }.abi_encode(),
        None => KeyMarket::withdrawCall {}.abi_encode(),
    };
    let tx = TransactionRequest::default()
        .to(m.address)
        .input(call.into());
    let json = args.send.market.json;
    let mined = send(&m, signer, tx, &budget, json).await?;
    let to = args.to.unwrap_or(from);
    Ok(if json {
        Output::Json(json!({
            "tx": mined.tx_hash.to_string(), "block": mined.block,
            "withdrawn": amount(mined.withdrawn), "to": to.to_string(),
        }))
    } else {
        Output::Text(format!(
            "withdrew {} to {to} (tx {}, block {})\n",
            eth(mined.withdrawn),
            mined.tx_hash,
            mined.block
        ))
    })
}

impl LaunchArgs {
    pub(crate) fn json(&self) -> bool {
        self.send.market.json
    }
}

impl WithdrawArgs {
    pub(crate) fn json(&self) -> bool {
        self.send.market.json
    }
}
