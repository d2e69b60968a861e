//! `keymarket portfolio [ADDRESS]`: an account's keys, their sell value now and what it can
//! withdraw; with `--api`, cost basis and realised and unrealised PnL from the indexer.

use std::{collections::BTreeSet, fmt::Write, sync::Arc};

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
    rpc::types::Filter,
    sol_types::SolEvent,
};
use clap::Args;
use eyre::{Result, WrapErr, bail, eyre};
use keymarket_contracts::{
    KeyMarket,
    revert::eth,
    trade::{self, Flavor, Side},
};
use serde_json::{Value, json};

use crate::{
    market::{Budget, Market, MarketArgs, parse_address},
    net::tls,
    output::{Output, amount, signed_amount, signed_eth},
    wallet::SignerArgs,
};

#[derive(Args, Debug)]
pub(crate) struct PortfolioArgs {
    /// The account (default: the signer's).
    #[arg(value_parser = parse_address)]
    address: Option<Address>,
    /// The keymarket API (e.g. http://127.0.0.1:8080, or https://) for cost basis and PnL.
    #[arg(long)]
    api: Option<String>,
    #[command(flatten)]
    market: MarketArgs,
    #[command(flatten)]
    signer: SignerArgs,
}

/// One subject's row.
struct Row {
    subject: Address,
    balance: U256,
    sellable: U256,
    worth: U256,
    cost: Option<U256>,
}

/// The indexer's view of the account (`GET /v1/traders/{address}`), or `None` if it never traded.
async fn from_api(api: &str, account: Address, args: &MarketArgs) -> Result<Option<Value>> {
    let config = tls::client_config(args.rpc.ca_file.as_deref(), &[b"h2", b"http/1.1"])?;
    let client = reqwest::Client::builder()
        .tls_backend_preconfigured(Arc::unwrap_or_clone(config))
        .build()?;
    let url = format!("{}/v1/traders/{account:#x}", api.trim_end_matches('/'));
    let resp = client
        .get(&url)
        .send()
        .await
        .wrap_err_with(|| format!("cannot reach the API at {api}"))?;
    let status = resp.status();
    if status.as_u16() == 404 {
        return Ok(None);
    }
    let body: Value = resp.json().await.wrap_err("the API's answer is not JSON")?;
    if !status.is_success() {
        bail!("the API answered {status}: {body}");
    }
    Ok(Some(body))
}

pub(crate) async fn portfolio(args: PortfolioArgs) -> Result<Output> {
    let budget = Budget::new(&args.market, false);
    let m = args.market.connect(&budget).await?;
    let signer = if args.signer.is_given() {
        Some(args.signer.signer(m.chain_id)?.address())
    } else {
        None
    };
    let account = args
        .address
        .or(signer)
        .ok_or_else(|| eyre!("whose portfolio? pass an ADDRESS or a signer (--private-key, --keystore, --dev-account)"))?;
    let k = KeyMarket::new(m.address, &m.provider);
    // The subjects the account traded: from the API when given, else from the market's logs.
    let indexed = match &args.api {
        Some(api) => {
            budget
                .run("asking the API", from_api(api, account, &args.market))
                .await?
        }
        None => None,
    };
    let subjects =
        traded_subjects(&m, &budget, account, args.api.is_some(), indexed.as_ref()).await?;
    let mut rows = Vec::new();
    for subject in subjects {
        let (balance, supply) = budget
            .run("reading the keys held", async {
                Ok::<_, alloy::contract::Error>((
                    k.sharesBalance(subject, account).call().await?,
                    k.sharesSupply(subject).call().await?,
                ))
            })
            .await?;
        if balance.is_zero() {
            continue;
        }
        // The last key can never be sold: value what can be.
        let sellable = balance.min(supply - U256::from(1));
        let worth = if sellable.is_zero() {
            U256::ZERO
        } else {
            budget
                .run(
                    "quoting a sale",
                    trade::quote(
                        &m.provider,
                        m.address,
                        m.flavor,
                        Side::Sell,
                        subject,
                        sellable,
                    ),
                )
                .await?
                .total
        };
        let cost = indexed.as_ref().and_then(|b| {
            b["holdings"]
                .as_array()?
                .iter()
                .find(|h| h["subject"].as_str() == Some(&format!("{subject:#x}")))
                .and_then(|h| h["costBasis"]["wei"].as_str()?.parse().ok())
        });
        rows.push(Row {
            subject,
            balance,
            sellable,
            worth,
            cost,
        });
    }
    let value: U256 = rows.iter().map(|r| r.worth).sum();
    let owed = match m.flavor {
        Flavor::KeyMarket => {
            budget
                .run(
                    "reading what is withdrawable",
                    k.withdrawable(account).call(),
                )
                .await?
        }
        Flavor::Friendtech => U256::ZERO,
    };
    let realised: Option<i128> = indexed
        .as_ref()
        .and_then(|b| b["trader"]["realisedPnl"]["wei"].as_str()?.parse().ok());
    // Sell value now less cost basis, over the keys whose cost basis the indexer knows.
    let unrealised: Option<i128> = indexed.as_ref().map(|_| {
        rows.iter()
            .filter_map(|r| Some(to_i128(r.worth) - to_i128(r.cost?)))
            .sum()
    });
    let p = Portfolio {
        account,
        chain_id: m.chain_id,
        market: m.address,
        rows,
        value,
        owed,
        realised,
        unrealised,
    };
    Ok(if args.market.json {
        Output::Json(p.json())
    } else {
        Output::Text(p.text())
    })
}

/// The subjects `account` traded: from the API's answer when one was asked (`from_api`), else
/// from the market's `Trade` logs.
async fn traded_subjects(
    m: &Market,
    budget: &Budget,
    account: Address,
    from_api: bool,
    indexed: Option<&Value>,
) -> Result<BTreeSet<Address>> {
    Ok(match (from_api, indexed) {
        (true, Some(body)) => body["holdings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|h| h["subject"].as_str()?.parse().ok())
            .collect(),
        (true, None) => BTreeSet::new(),
        (false, _) => {
            let filter = Filter::new()
                .address(m.address)
                .event_signature(KeyMarket::Trade::SIGNATURE_HASH)
                .from_block(m.from_block);
            let logs = budget
                .run(
                    "reading the market's Trade logs",
                    m.provider.get_logs(&filter),
                )
                .await?;
            logs.iter()
                .filter_map(|l| KeyMarket::Trade::decode_log_data(l.data()).ok())
                .filter(|t| t.trader == account)
                .map(|t| t.subject)
                .collect()
        }
    })
}

/// What `portfolio` found, to print.
struct Portfolio {
    account: Address,
    chain_id: u64,
    market: Address,
    rows: Vec<Row>,
    value: U256,
    owed: U256,
    realised: Option<i128>,
    unrealised: Option<i128>,
}

impl Portfolio {
    fn json(&self) -> Value {
        let Self {
            account,
            chain_id,
            market,
            rows,
            value,
            owed,
            realised,
            unrealised,
        } = self;
        json!({
            "account": account.to_string(),
            "chainId": chain_id,
            "market": market.to_string(),
            "keys": rows.iter().map(|r| json!({
                "subject": r.subject.to_string(), "balance": r.balance.to_string(),
                "sellable": r.sellable.to_string(), "sellValue": amount(r.worth),
                "costBasis": r.cost.map(amount),
            })).collect::<Vec<_>>(),
            "sellValue": amount(*value),
            "withdrawable": amount(*owed),
            "realisedPnl": realised.map(signed_amount),
            "unrealisedPnl": unrealised.map(signed_amount),
        })
    }

    fn text(&self) -> String {
        let Self {
            account,
            chain_id,
            market,
            rows,
            value,
            owed,
            realised,
            unrealised,
        } = self;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "portfolio of {account} on market {market} (chain {chain_id}):"
        );
        if rows.is_empty() {
            let _ = writeln!(out, "  no keys");
        }
        for r in rows {
            let cost = r
                .cost
                .map(|c| format!(", cost basis {}", eth(c)))
                .unwrap_or_default();
            let note = if r.sellable < r.balance {
                " (the last key cannot be sold)"
            } else {
                ""
            };
            let _ = writeln!(
                out,
                "  {}: {} key(s), sell value {}{cost}{note}",
                r.subject,
                r.balance,
                eth(r.worth)
            );
        }
        let _ = writeln!(out, "  sell value of all keys  {}", eth(*value));
        let _ = writeln!(out, "  withdrawable            {}", eth(*owed));
        if let Some(p) = realised {
            let _ = writeln!(out, "  realised PnL            {}", signed_eth(*p));
        }
        if let Some(p) = unrealised {
            let _ = writeln!(
                out,
                "  unrealised PnL          {} (sell value now less cost basis)",
                signed_eth(*p)
            );
        }
        out
    }
}

fn to_i128(v: U256) -> i128 {
    i128::try_from(v).unwrap_or(i128::MAX)
}

impl PortfolioArgs {
    pub(crate) fn json(&self) -> bool {
        self.market.json
    }
}
