//! The trader's commands `quote`, `buy` and `sell`. Quotes come from the market's own views;
//! trades go through KeyMarket's bounded functions with a bound from a fresh quote (or the
//! trader's own) and a deadline, are refused in words before anything is sent when they cannot
//! succeed, and print what the receipt's `Trade` event says (see `market::send`).

use std::io::IsTerminal;

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
};
use clap::{Args, ValueEnum};
use eyre::{Result, bail, eyre};
use keymarket_contracts::{
    KeyMarket,
    revert::eth,
    trade::{self, Flavor, Quote, Side},
};
use serde_json::{Value, json};
use std::fmt::Write;

use crate::{
    market::{
        Budget, Market, MarketArgs, SendArgs, parse_address, parse_eth, parse_slippage, send,
    },
    output::{Output, amount, trade_event},
};

/// buy or sell.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum SideArg {
    Buy,
    Sell,
}

#[derive(Args, Debug)]
pub(crate) struct QuoteArgs {
    /// buy or sell.
    side: SideArg,
    /// The subject whose keys are traded.
    #[arg(value_parser = parse_address)]
    subject: Address,
    /// Keys.
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    amount: u64,
    #[command(flatten)]
    market: MarketArgs,
}

/// What a buy and a sell share.
#[derive(Args, Debug)]
pub(crate) struct TradeCommon {
    /// The subject whose keys are traded.
    #[arg(value_parser = parse_address)]
    subject: Address,
    /// Keys.
    #[arg(value_parser = clap::value_parser!(u64).range(1..))]
    amount: u64,
    /// Slippage tolerance from the fresh quote: a percent ("1%", "0.5%") or basis points ("50bps").
    #[arg(long, default_value = "1%", value_parser = parse_slippage)]
    slippage: u32,
    /// Seconds until the trade expires, counted from the later of this machine's clock and the
    /// latest block's time.
    #[arg(long, default_value_t = 120)]
    deadline: u64,
    #[command(flatten)]
    send: SendArgs,
}

#[derive(Args, Debug)]
pub(crate) struct BuyArgs {
    /// The most it may cost in all, ETH (instead of --slippage).
    #[arg(long, value_parser = parse_eth, conflicts_with = "slippage")]
    max_cost: Option<U256>,
    /// Who referred you (credited part of the protocol fee; bound at your first referred buy).
    #[arg(long, value_parser = parse_address)]
    referrer: Option<Address>,
    /// Do not ask for confirmation when the buy costs more than a tenth of your balance (it is
    /// asked only on a terminal, never with --json).
    #[arg(long)]
    yes: bool,
    #[command(flatten)]
    common: TradeCommon,
}

#[derive(Args, Debug)]
pub(crate) struct SellArgs {
    /// The least it must pay out, ETH (instead of --slippage).
    #[arg(long, value_parser = parse_eth, conflicts_with = "slippage")]
    min_proceeds: Option<U256>,
    #[command(flatten)]
    common: TradeCommon,
}

fn side(s: SideArg) -> Side {
    match s {
        SideArg::Buy => Side::Buy,
        SideArg::Sell => Side::Sell,
    }
}

fn quote_json(q: &Quote) -> Value {
    json!({
        "side": match q.side { Side::Buy => "buy", Side::Sell => "sell" },
        "subject": q.subject.to_string(),
        "amount": q.amount.to_string(),
        "supply": q.supply.to_string(),
        "price": amount(q.price),
        "protocolFee": amount(q.protocol_fee),
        "subjectFee": amount(q.subject_fee),
        "total": amount(q.total),
        "nextPrice": amount(q.next_price),
    })
}

fn quote_text(q: &Quote) -> String {
    let mut out = String::new();
    let verb = match q.side {
        Side::Buy => "buy",
        Side::Sell => "sell",
    };
    let _ = writeln!(
        out,
        "{verb} {} key(s) of {} (supply {}):",
        q.amount, q.subject, q.supply
    );
    let mut line = |what: &str, wei: U256| {
        let _ = writeln!(out, "  {what:<15}{} ({wei} wei)", eth(wei));
    };
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
    out
}

/// `keymarket quote buy|sell SUBJECT N`.
pub(crate) async fn quote(args: QuoteArgs) -> Result<Output> {
    let budget = Budget::new(&args.market, false);
    let m = args.market.connect(&budget).await?;
    let q = budget
        .run(
            "quoting",
            trade::quote(
                &m.provider,
                m.address,
                m.flavor,
                side(args.side),
                args.subject,
                U256::from(args.amount),
            ),
        )
        .await?;
    if q.side == Side::Buy && q.supply.is_zero() {
        return Err(trade::TradeError::NotLaunched(args.subject).into());
    }
    Ok(if args.market.json {
        Output::Json(quote_json(&q))
    } else {
        Output::Text(quote_text(&q))
    })
}

/// `keymarket buy SUBJECT N`.
pub(crate) async fn buy(args: BuyArgs) -> Result<Output> {
    trade(
        args.common,
        Side::Buy,
        args.max_cost,
        args.referrer,
        args.yes,
    )
    .await
}

/// `keymarket sell SUBJECT N`.
pub(crate) async fn sell(args: SellArgs) -> Result<Output> {
    trade(args.common, Side::Sell, args.min_proceeds, None, true).await
}

/// Asks on the terminal whether to go on; `false` unless the answer is yes.
fn confirm(question: &str) -> bool {
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer).is_ok()
        && matches!(answer.trim().to_lowercase().as_str(), "y" | "yes")
}

async fn trade(
    args: TradeCommon,
    side: Side,
    own_bound: Option<U256>,
    referrer: Option<Address>,
    yes: bool,
) -> Result<Output> {
    let json = args.send.market.json;
    let mut budget = Budget::new(&args.send.market, true);
    let (m, signer) = args.send.connect(&budget).await?;
    let from = signer.address();
    let keys = U256::from(args.amount);
    if side == Side::Sell && m.flavor == Flavor::KeyMarket {
        check_sellable(&m, &budget, args.subject, from, keys).await?;
    }
    let q = budget
        .run(
            "quoting",
            trade::quote(&m.provider, m.address, m.flavor, side, args.subject, keys),
        )
        .await?;
    if side == Side::Buy && q.supply.is_zero() && from != args.subject {
        return Err(trade::TradeError::NotLaunched(args.subject).into());
    }
    let bound = bound_for(side, own_bound, q.total, args.slippage)?;
    let latest = budget
        .run(
            "reading the latest block",
            m.provider
                .get_block_by_number(alloy::eips::BlockNumberOrTag::Latest),
        )
        .await?
        .ok_or_else(|| eyre!("the RPC has no latest block"))?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();
    let expires = now.max(latest.header.timestamp) + args.deadline;
    if side == Side::Buy
        && !yes
        && !json
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
        && confirm_large_buy(&m, &budget, from, q.total).await?
    {
        // The time spent answering is not the RPC's.
        budget = Budget::new(&args.send.market, true);
    }
    if m.flavor == Flavor::Friendtech {
        eprintln!(
            "warning: {} is a friend.tech-style market: it offers no slippage protection and keeps any ETH sent above the price; sending exactly the quoted {}",
            m.address,
            eth(q.total)
        );
    }
    eprintln!(
        "{} {} key(s) of {}: quoted {}, {}, deadline {}",
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
        },
        utc(expires)
    );
    let tx = trade::trade_tx(
        m.flavor,
        m.address,
        side,
        args.subject,
        keys,
        q.total,
        bound,
        referrer,
        U256::from(expires),
    );
    let mined = send(&m, signer, tx, &budget, json).await?;
    let t = mined
        .trades
        .first()
        .ok_or_else(|| eyre!("transaction {} emitted no Trade event", mined.tx_hash))?;
    let paid = match side {
        Side::Buy => t.ethAmount + t.protocolEthAmount + t.subjectEthAmount,
        Side::Sell => t.ethAmount - t.protocolEthAmount - t.subjectEthAmount,
    };
    Ok(traded(t, &mined, paid, json))
}

/// The bound a trade is sent with: the user's own (refused, nothing sent, when the quote is
/// already past it), else the quote with `slippage` applied.
fn bound_for(side: Side, own: Option<U256>, quote: U256, slippage: u32) -> Result<U256> {
    Ok(match (side, own) {
        (Side::Buy, Some(max)) if quote > max => bail!(
            "your bound is below the quote: this buy costs {} now and --max-cost is {}; nothing was sent",
            eth(quote),
            eth(max)
        ),
        (Side::Sell, Some(min)) if quote < min => bail!(
            "your bound is above the quote: this sell pays {} now and --min-proceeds is {}; nothing was sent",
            eth(quote),
            eth(min)
        ),
        (_, Some(b)) => b,
        (_, None) => trade::slippage_bound(side, quote, slippage),
    })
}

/// At a terminal, a buy of more than a tenth of the balance asks first; a buy past the balance
/// is refused. `Ok(true)`: the user was asked (and said yes).
async fn confirm_large_buy(m: &Market, budget: &Budget, from: Address, cost: U256) -> Result<bool> {
    let balance = budget
        .run("eth_getBalance", m.provider.get_balance(from))
        .await?;
    if cost > balance {
        return Err(trade::TradeError::InsufficientBalance {
            need: cost,
            have: balance,
        }
        .into());
    }
    if cost <= balance / U256::from(10) {
        return Ok(false);
    }
    if !confirm(&format!(
        "this buy costs {} of your {}; go on?",
        eth(cost),
        eth(balance)
    )) {
        bail!("not confirmed; nothing was sent");
    }
    Ok(true)
}

/// Refuses to send a sell of more keys than `from` holds and can sell (the last key never).
async fn check_sellable(
    m: &Market,
    budget: &Budget,
    subject: Address,
    from: Address,
    keys: U256,
) -> Result<()> {
    let k = KeyMarket::new(m.address, &m.provider);
    let (held, supply) = budget
        .run("reading your keys", async {
            Ok::<_, alloy::contract::Error>((
                k.sharesBalance(subject, from).call().await?,
                k.sharesSupply(subject).call().await?,
            ))
        })
        .await?;
    let most = held.min(supply.saturating_sub(U256::from(1)));
    if keys > most {
        bail!(
            "you hold {held} key(s) of {subject} (supply {supply}, and the last key can never be sold): at most {most} can be sold; nothing was sent"
        );
    }
    Ok(())
}

/// What a mined trade did, to print.
fn traded(t: &KeyMarket::Trade, mined: &trade::Mined, paid: U256, json: bool) -> Output {
    if json {
        let mut v = trade_event(t);
        v["tx"] = json!(mined.tx_hash.to_string());
        v["block"] = json!(mined.block);
        v["gasUsed"] = json!(mined.gas_used);
        v["gasFee"] = amount(mined.fee);
        v["total"] = amount(paid);
        return Output::Json(v);
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} {} key(s) of {} in block {} (tx {})",
        if t.isBuy { "bought" } else { "sold" },
        t.shareAmount,
        t.subject,
        mined.block,
        mined.tx_hash
    );
    let _ = writeln!(out, "  price          {}", eth(t.ethAmount));
    let _ = writeln!(out, "  protocol fee   {}", eth(t.protocolEthAmount));
    let _ = writeln!(out, "  subject fee    {}", eth(t.subjectEthAmount));
    let _ = writeln!(
        out,
        "  {:<15}{}",
        if t.isBuy { "you paid" } else { "you received" },
        eth(paid)
    );
    let _ = writeln!(out, "  supply now     {}", t.supply);
    let _ = writeln!(
        out,
        "  gas            {} ({})",
        mined.gas_used,
        eth(mined.fee)
    );
    Output::Text(out)
}

/// A Unix time as a UTC date ("Sun, 06 Dec 2026 20:13:55 GMT").
pub(crate) fn utc(secs: u64) -> String {
    httpdate::fmt_http_date(std::time::UNIX_EPOCH + std::time::Duration::from_secs(secs))
}

impl QuoteArgs {
    pub(crate) fn json(&self) -> bool {
        self.market.json
    }
}

impl BuyArgs {
    pub(crate) fn json(&self) -> bool {
        self.common.send.market.json
    }
}

impl SellArgs {
    pub(crate) fn json(&self) -> bool {
        self.common.send.market.json
    }
}
