//! The trader's commands: `quote`, `buy`, `sell`, `launch`, `withdraw`, `portfolio`. Quotes come
//! from the market's own views; trades go through KeyMarket's bounded functions with a slippage
//! bound from a fresh quote and a deadline, are simulated before they are sent, and print what
//! the receipt's `Trade` event says. Results go to stdout (`--json` for scripts), progress and
//! warnings to stderr.

use std::{collections::BTreeSet, time::Duration};

use alloy::{
    primitives::{Address, U256, utils::parse_ether},
    providers::{DynProvider, Provider, ProviderBuilder},
    rpc::types::Filter,
    sol_types::SolEvent,
};
use clap::{Args, ValueEnum};
use eyre::{Context, Result, bail, eyre};
use keymarket_contracts::{
    Deployment, KeyMarket,
    revert::eth,
    trade::{self, Flavor, Quote, Side},
};
use serde_json::{Value, json};

use crate::{
    cli::{DeploymentArgs, RpcArgs},
    wallet::SignerArgs,
};

/// Which market, on which chain, and how to print.
#[derive(Args, Debug, Clone)]
pub(crate) struct MarketArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    #[command(flatten)]
    pub(crate) deployment: DeploymentArgs,
    /// The market's address (instead of the deployment file's), e.g. friend.tech's.
    #[arg(long)]
    pub(crate) market: Option<Address>,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// buy or sell.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SideArg {
    Buy,
    Sell,
}

/// What every sending command shares: the market, the signer, how long to wait for the receipt.
#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    /// Seconds to wait for the receipt.
    #[arg(long, default_value_t = 60)]
    timeout: u64,
    #[command(flatten)]
    market: MarketArgs,
    #[command(flatten)]
    signer: SignerArgs,
}

#[derive(Args, Debug)]
pub(crate) struct QuoteArgs {
    /// buy or sell.
    side: SideArg,
    /// The subject whose keys are traded.
    subject: Address,
    /// Keys.
    amount: u64,
    #[command(flatten)]
    market: MarketArgs,
}

#[derive(Args, Debug)]
pub(crate) struct TradeArgs {
    /// The subject whose keys are traded.
    subject: Address,
    /// Keys.
    amount: u64,
    /// Slippage tolerance from the fresh quote: a percent ("1%", "0.5%") or basis points ("50bps").
    #[arg(long, default_value = "1%", value_parser = parse_slippage)]
    slippage: u32,
    /// Buy: the most it may cost in all, ETH (instead of --slippage).
    #[arg(long, value_parser = parse_eth, conflicts_with = "min_proceeds")]
    max_cost: Option<U256>,
    /// Sell: the least it must pay out, ETH (instead of --slippage).
    #[arg(long, value_parser = parse_eth)]
    min_proceeds: Option<U256>,
    /// Buy: who referred you (credited part of the protocol fee; bound at your first referred buy).
    #[arg(long)]
    referrer: Option<Address>,
    /// Seconds after the latest block's time until the trade expires.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
    #[command(flatten)]
    send: SendArgs,
}

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
    #[arg(default_value_t = 1)]
    amount: u64,
    /// The curve of your keys.
    #[arg(long, value_enum, default_value = "standard")]
    curve: CurveArg,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Args, Debug)]
pub(crate) struct WithdrawArgs {
    /// Send to this address instead of the signer's.
    #[arg(long)]
    to: Option<Address>,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Args, Debug)]
pub(crate) struct PortfolioArgs {
    /// The account (default: the signer's).
    address: Option<Address>,
    /// The keymarket API (e.g. http://127.0.0.1:8080) for cost basis and realised PnL.
    #[arg(long)]
    api: Option<String>,
    #[command(flatten)]
    market: MarketArgs,
    #[command(flatten)]
    signer: SignerArgs,
}

fn parse_slippage(s: &str) -> Result<u32, String> {
    let bad =
        || format!("slippage {s:?}: use a percent like 1% or 0.5%, or basis points like 50bps");
    let bps = if let Some(b) = s.strip_suffix("bps") {
        b.trim().parse::<f64>().map_err(|_| bad())?
    } else {
        s.trim_end_matches('%')
            .trim()
            .parse::<f64>()
            .map_err(|_| bad())?
            * 100.0
    };
    if !(0.0..=5_000.0).contains(&bps) || bps.fract() != 0.0 {
        return Err(format!(
            "slippage {s:?}: between 0% and 50%, in whole basis points"
        ));
    }
    Ok(bps as u32)
}

fn parse_eth(s: &str) -> Result<U256, String> {
    parse_ether(s).map_err(|e| format!("{s:?} is not an ETH amount: {e}"))
}

/// The chain and the market: the RPC's chain id, the market's address and flavor.
struct Market {
    provider: DynProvider,
    chain_id: u64,
    address: Address,
    flavor: Flavor,
    /// Where its logs start (the deployment's block; 0 for --market).
    from_block: u64,
}

impl SendArgs {
    /// The market and the signer's address (a signer is required).
    async fn connect(&self) -> Result<(Market, Address)> {
        let (m, from) = market(&self.market, Some(&self.signer), true).await?;
        Ok((m, from.ok_or_else(|| eyre!("no signer"))?))
    }

    /// Simulates, sends and awaits `tx` from `from` (see [`trade::send`]).
    async fn send(
        &self,
        m: &Market,
        from: Address,
        tx: alloy::rpc::types::TransactionRequest,
    ) -> Result<trade::Mined> {
        Ok(trade::send(&m.provider, from, tx, Duration::from_secs(self.timeout)).await?)
    }
}

/// Connects to the market; with a signer required (`need`), or optional (used when given).
async fn market(
    args: &MarketArgs,
    signer: Option<&SignerArgs>,
    need: bool,
) -> Result<(Market, Option<Address>)> {
    let url = &args.rpc.url;
    let read = ProviderBuilder::new()
        .connect(url)
        .await
        .wrap_err_with(|| format!("cannot reach the RPC at {url}"))?;
    let chain_id = read
        .get_chain_id()
        .await
        .wrap_err_with(|| format!("the RPC at {url} does not answer eth_chainId"))?;
    let (address, from_block) = match args.market {
        Some(a) => (a, 0),
        None => {
            let path = &args.deployment.deployment;
            let d = Deployment::read(path).wrap_err_with(|| {
                format!(
                    "no market: pass --market ADDRESS, or deploy one first (keymarket deploy or scripts/up.sh write {})",
                    path.display()
                )
            })?;
            if d.chain_id != chain_id {
                bail!(
                    "the deployment file {} is for chain {}, but the RPC at {url} is chain {chain_id}",
                    path.display(),
                    d.chain_id
                );
            }
            (d.address, d.deploy_block)
        }
    };
    let (provider, from) = match signer.filter(|s| need || s.is_given()) {
        Some(s) => {
            let signer = s.signer(chain_id)?;
            let from = signer.address();
            let p = ProviderBuilder::new().wallet(signer).connect(url).await?;
            (p.erased(), Some(from))
        }
        None => (read.erased(), None),
    };
    let flavor = trade::flavor(&provider, address).await?;
    Ok((
        Market {
            provider,
            chain_id,
            address,
            flavor,
            from_block,
        },
        from,
    ))
}

fn side(s: SideArg) -> Side {
    match s {
        SideArg::Buy => Side::Buy,
        SideArg::Sell => Side::Sell,
    }
}

fn amount_json(wei: U256) -> Value {
    json!({ "eth": eth(wei).trim_end_matches(" ETH"), "wei": wei.to_string() })
}

fn quote_json(q: &Quote) -> Value {
    json!({
        "side": match q.side { Side::Buy => "buy", Side::Sell => "sell" },
        "subject": q.subject.to_string(),
        "amount": q.amount.to_string(),
        "supply": q.supply.to_string(),
        "price": amount_json(q.price),
        "protocolFee": amount_json(q.protocol_fee),
        "subjectFee": amount_json(q.subject_fee),
        "total": amount_json(q.total),
        "nextPrice": amount_json(q.next_price),
    })
}

fn print_quote(q: &Quote) {
    let line = |what: &str, wei: U256| println!("  {what:<15}{} ({wei} wei)", eth(wei));
    let verb = match q.side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    println!(
        "{verb} {} key(s) of {} (supply {}):",
        q.amount, q.subject, q.supply
    );
    line("price", q.price);
    line("protocol fee", q.protocol_fee);
    line("subject fee", q.subject_fee);
    line(
        match q.side {
            Side::Buy => "total cost",
            Side::Sell => "you receive",
        },
        q.total,
    );
    line("next key after", q.next_price);
}

/// `keymarket quote buy|sell SUBJECT N`.
pub(crate) async fn quote(args: QuoteArgs) -> Result<()> {
    let (m, _) = market(&args.market, None, false).await?;
    let q = trade::quote(
        &m.provider,
        m.address,
        m.flavor,
        side(args.side),
        args.subject,
        U256::from(args.amount),
    )
    .await?;
    if args.market.json {
        println!("{}", quote_json(&q));
    } else {
        print_quote(&q);
    }
    Ok(())
}

/// `keymarket buy|sell SUBJECT N`.
pub(crate) async fn trade(args: TradeArgs, s: SideArg) -> Result<()> {
    let side = side(s);
    if args.amount == 0 {
        bail!("the amount must be at least one key");
    }
    match side {
        Side::Buy if args.min_proceeds.is_some() => {
            bail!("--min-proceeds is for sells; a buy takes --max-cost")
        }
        Side::Sell if args.max_cost.is_some() => {
            bail!("--max-cost is for buys; a sell takes --min-proceeds")
        }
        Side::Sell if args.referrer.is_some() => bail!("--referrer is for buys"),
        _ => {}
    }
    let (m, from) = args.send.connect().await?;
    let amount = U256::from(args.amount);
    let q = trade::quote(&m.provider, m.address, m.flavor, side, args.subject, amount).await?;
    let bound = match (side, args.max_cost, args.min_proceeds) {
        (Side::Buy, Some(max), _) => {
            if q.total > max {
                bail!(
                    "the price moved: this buy now costs {}, your bound is {}; nothing was sent",
                    eth(q.total),
                    eth(max)
                );
            }
            max
        }
        (Side::Sell, _, Some(min)) => {
            if q.total < min {
                bail!(
                    "the price moved: this sell now pays {}, your bound is {}; nothing was sent",
                    eth(q.total),
                    eth(min)
                );
            }
            min
        }
        _ => trade::slippage_bound(side, q.total, args.slippage),
    };
    let latest = m
        .provider
        .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest)
        .await?
        .ok_or_else(|| eyre!("the RPC has no latest block"))?;
    let deadline = U256::from(latest.header.timestamp + args.deadline);
    if m.flavor == Flavor::Friendtech {
        eprintln!(
            "warning: {} is a friend.tech-style market: it offers no slippage protection and keeps any ETH sent above the price; sending exactly the quoted {}",
            m.address,
            eth(q.total)
        );
    }
    eprintln!(
        "{} {} key(s) of {}: quoted {}, {}",
        match side {
            Side::Buy => "buying",
            Side::Sell => "selling",
        },
        args.amount,
        args.subject,
        eth(q.total),
        match m.flavor {
            Flavor::KeyMarket => format!("bound {}", eth(bound)),
            Flavor::Friendtech => "no bound (the market has none)".into(),
        }
    );
    let tx = trade::trade_tx(
        m.flavor,
        m.address,
        side,
        args.subject,
        amount,
        q.total,
        bound,
        args.referrer,
        deadline,
    );
    let mined = args.send.send(&m, from, tx).await?;
    let t = mined
        .trades
        .first()
        .ok_or_else(|| eyre!("transaction {} emitted no Trade event", mined.tx_hash))?;
    let paid = match side {
        Side::Buy => t.ethAmount + t.protocolEthAmount + t.subjectEthAmount,
        Side::Sell => t.ethAmount - t.protocolEthAmount - t.subjectEthAmount,
    };
    if args.send.market.json {
        println!(
            "{}",
            json!({
                "tx": mined.tx_hash.to_string(),
                "block": mined.block,
                "gasUsed": mined.gas_used,
                "gasFee": amount_json(mined.fee),
                "trader": t.trader.to_string(),
                "subject": t.subject.to_string(),
                "isBuy": t.isBuy,
                "shareAmount": t.shareAmount.to_string(),
                "ethAmount": amount_json(t.ethAmount),
                "protocolEthAmount": amount_json(t.protocolEthAmount),
                "subjectEthAmount": amount_json(t.subjectEthAmount),
                "total": amount_json(paid),
                "supply": t.supply.to_string(),
            })
        );
    } else {
        println!(
            "{} {} key(s) of {} in block {} (tx {})",
            if t.isBuy { "bought" } else { "sold" },
            t.shareAmount,
            t.subject,
            mined.block,
            mined.tx_hash
        );
        println!("  price          {}", eth(t.ethAmount));
        println!("  protocol fee   {}", eth(t.protocolEthAmount));
        println!("  subject fee    {}", eth(t.subjectEthAmount));
        println!(
            "  {:<15}{}",
            if t.isBuy { "you paid" } else { "you received" },
            eth(paid)
        );
        println!("  supply now     {}", t.supply);
        println!("  gas            {} ({})", mined.gas_used, eth(mined.fee));
    }
    Ok(())
}

/// `keymarket launch [N] [--curve standard|steep]`.
pub(crate) async fn launch(args: LaunchArgs) -> Result<()> {
    if args.amount == 0 {
        bail!("the amount must be at least one key");
    }
    let (m, from) = args.send.connect().await?;
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
    let price = k
        .getPriceOnCurve(curve, U256::ZERO, U256::from(args.amount))
        .call()
        .await?;
    let fees = k.protocolFeePercent().call().await? + k.subjectFeePercent().call().await?;
    let cost = price + keymarket_contracts::curve::fee(price, fees);
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(m.address)
        .value(cost)
        .input(
            alloy::sol_types::SolCall::abi_encode(&KeyMarket::buyFirstSharesCall {
                curve,
                amount: U256::from(args.amount),
            })
            .into(),
        );
    let mined = args.send.send(&m, from, tx).await?;
    if args.send.market.json {
        println!(
            "{}",
            json!({ "tx": mined.tx_hash.to_string(), "block": mined.block, "subject": from.to_string(), "amount": args.amount, "curve": curve, "paid": amount_json(cost) })
        );
    } else {
        println!(
            "opened your keys: {from} bought its first {} key(s) on the {} curve for {} (tx {}, block {})",
            args.amount,
            if curve == 0 { "standard" } else { "steep" },
            eth(cost),
            mined.tx_hash,
            mined.block
        );
    }
    Ok(())
}

/// `keymarket withdraw [--to ADDRESS]`: subject fees, referral credits and deferred payments.
pub(crate) async fn withdraw(args: WithdrawArgs) -> Result<()> {
    let (m, from) = args.send.connect().await?;
    if m.flavor != Flavor::KeyMarket {
        bail!(
            "{} is a friend.tech-style market: it pays fees as they arise, there is nothing to withdraw",
            m.address
        );
    }
    let k = KeyMarket::new(m.address, &m.provider);
    let owed = k.withdrawable(from).call().await?;
    if owed.is_zero() {
        bail!("there is nothing to withdraw for {from}");
    }
    let call = match args.to {
        Some(to) => alloy::sol_types::SolCall::abi_encode(&KeyMarket::withdrawToCall { to }),
        None => alloy::sol_types::SolCall::abi_encode(&KeyMarket::withdrawCall {}),
    };
    let tx = alloy::rpc::types::TransactionRequest::default()
        .to(m.address)
        .input(call.into());
    let mined = args.send.send(&m, from, tx).await?;
    if args.send.market.json {
        println!(
            "{}",
            json!({ "tx": mined.tx_hash.to_string(), "block": mined.block, "withdrawn": amount_json(mined.withdrawn), "to": args.to.unwrap_or(from).to_string() })
        );
    } else {
        println!(
            "withdrew {} to {} (tx {}, block {})",
            eth(mined.withdrawn),
            args.to.unwrap_or(from),
            mined.tx_hash,
            mined.block
        );
    }
    Ok(())
}

/// `keymarket portfolio [ADDRESS]`: keys held, their sell value now, what is withdrawable; with
/// `--api`, cost basis and realised PnL from the indexer.
pub(crate) async fn portfolio(args: PortfolioArgs) -> Result<()> {
    let (m, signer) = market(&args.market, Some(&args.signer), false).await?;
    let account = args
        .address
        .or(signer)
        .ok_or_else(|| eyre!("whose portfolio? pass an ADDRESS or a signer (--private-key, --keystore, --dev-account)"))?;
    let k = KeyMarket::new(m.address, &m.provider);
    // The subjects the account traded: from the API when given, else from the market's Trade logs.
    let (subjects, indexed): (BTreeSet<Address>, Option<Value>) = match &args.api {
        Some(api) => {
            let url = format!("{}/v1/traders/{account}", api.trim_end_matches('/'));
            let resp = alloy::transports::http::reqwest::get(&url)
                .await
                .wrap_err_with(|| format!("cannot reach the API at {api}"))?;
            let status = resp.status();
            let body: Value = resp.json().await.wrap_err("the API's answer is not JSON")?;
            if status.as_u16() == 404 {
                (BTreeSet::new(), None)
            } else if !status.is_success() {
                bail!("the API answered {status}: {body}");
            } else {
                let subjects = body["holdings"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|h| h["subject"].as_str()?.parse().ok())
                    .collect();
                (subjects, Some(body))
            }
        }
        None => {
            let filter = Filter::new()
                .address(m.address)
                .event_signature(KeyMarket::Trade::SIGNATURE_HASH)
                .from_block(m.from_block);
            let logs = m.provider.get_logs(&filter).await?;
            let subjects = logs
                .iter()
                .filter_map(|l| KeyMarket::Trade::decode_log_data(l.data()).ok())
                .filter(|t| t.trader == account)
                .map(|t| t.subject)
                .collect();
            (subjects, None)
        }
    };
    let mut rows = Vec::new();
    let mut value = U256::ZERO;
    for subject in subjects {
        let balance = k.sharesBalance(subject, account).call().await?;
        if balance.is_zero() {
            continue;
        }
        let supply = k.sharesSupply(subject).call().await?;
        // The last key can never be sold: value what can be.
        let sellable = balance.min(supply - U256::from(1));
        let worth = if sellable.is_zero() {
            U256::ZERO
        } else {
            trade::quote(
                &m.provider,
                m.address,
                m.flavor,
                Side::Sell,
                subject,
                sellable,
            )
            .await?
            .total
        };
        value += worth;
        let cost = indexed.as_ref().and_then(|b| {
            b["holdings"]
                .as_array()?
                .iter()
                .find(|h| h["subject"].as_str() == Some(&subject.to_string().to_lowercase()))
                .map(|h| h["costBasis"]["wei"].as_str().unwrap_or("0").to_string())
        });
        rows.push((subject, balance, sellable, worth, cost));
    }
    let owed = match m.flavor {
        Flavor::KeyMarket => k.withdrawable(account).call().await?,
        Flavor::Friendtech => U256::ZERO,
    };
    let pnl = indexed.as_ref().and_then(|b| {
        b["trader"]["realisedPnl"]["wei"]
            .as_str()
            .map(str::to_string)
    });
    if args.market.json {
        println!(
            "{}",
            json!({
                "account": account.to_string(),
                "chainId": m.chain_id,
                "market": m.address.to_string(),
                "keys": rows.iter().map(|(s, b, sellable, w, c)| json!({
                    "subject": s.to_string(), "balance": b.to_string(), "sellable": sellable.to_string(),
                    "sellValue": amount_json(*w), "costBasis": c.as_ref().map(|c| json!({"wei": c})),
                })).collect::<Vec<_>>(),
                "sellValue": amount_json(value),
                "withdrawable": amount_json(owed),
                "realisedPnl": pnl.as_ref().map(|p| json!({"wei": p})),
            })
        );
    } else {
        println!(
            "portfolio of {account} on market {} (chain {}):",
            m.address, m.chain_id
        );
        if rows.is_empty() {
            println!("  no keys");
        }
        for (s, b, sellable, w, c) in &rows {
            let cost = c
                .as_ref()
                .and_then(|c| c.parse::<U256>().ok())
                .map(|c| format!(", cost basis {}", eth(c)))
                .unwrap_or_default();
            let note = if sellable < b {
                " (the last key cannot be sold)"
            } else {
                ""
            };
            println!("  {s}: {b} key(s), sell value {}{cost}{note}", eth(*w));
        }
        println!("  sell value of all keys  {}", eth(value));
        println!("  withdrawable            {}", eth(owed));
        if let Some(p) = pnl.and_then(|p| p.parse::<i128>().ok()) {
            let sign = if p < 0 { "-" } else { "" };
            println!(
                "  realised PnL            {sign}{}",
                eth(U256::from(p.unsigned_abs()))
            );
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slippage_reads_percent_and_bps() {
        assert_eq!(parse_slippage("1%"), Ok(100));
        assert_eq!(parse_slippage("0.5%"), Ok(50));
        assert_eq!(parse_slippage("50bps"), Ok(50));
        assert_eq!(parse_slippage("2"), Ok(200));
        assert!(parse_slippage("0.001%").is_err());
        assert!(parse_slippage("60%").is_err());
        assert!(parse_slippage("lots").is_err());
        assert_eq!(
            parse_eth("1.5"),
            Ok(U256::from(1_500_000_000_000_000_000u64))
        );
        assert!(parse_eth("x").is_err());
    }
}
