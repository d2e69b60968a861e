//! What the trader's commands share: which market on which chain (`MarketArgs`), the signer and
//! the time a command may take (`SendArgs`), the values they parse (addresses as wallets check
//! them, ETH amounts, slippage), and the one way a transaction is sent: simulated, signed (its
//! hash known before it leaves), sent, its hash told at once, its receipt awaited within
//! `--timeout`, and on Ctrl-C or a timeout after sending, the hash and how to check it.

use std::{
    future::IntoFuture,
    time::{Duration, Instant},
};

use alloy::{
    primitives::{Address, TxHash, U256},
    providers::{Provider, ProviderBuilder, RootProvider},
    rpc::types::TransactionRequest,
    signers::local::PrivateKeySigner,
};
use clap::Args;
use eyre::{Result, WrapErr, bail, eyre};
use keymarket_contracts::{
    Deployment,
    trade::{self, Flavor, Mined},
};
use serde_json::json;

use crate::{
    cli::{DeploymentArgs, RpcArgs},
    output::Unconfirmed,
    wallet::SignerArgs,
};

/// Which market, on which chain, how to print, and how long the command may take.
#[derive(Args, Debug, Clone)]
pub(crate) struct MarketArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    #[command(flatten)]
    pub(crate) deployment: DeploymentArgs,
    /// The market's address (instead of the deployment file's), e.g. friend.tech's.
    #[arg(long, value_parser = parse_address)]
    pub(crate) market: Option<Address>,
    /// Print the result as one JSON object (errors too, as {"error": {...}}).
    #[arg(long)]
    pub(crate) json: bool,
    /// Seconds the whole command may take, every RPC call included (default: 30; 60 for a
    /// command that sends a transaction, the wait for its receipt included).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub(crate) timeout: Option<u64>,
}

/// What every sending command adds: the signer.
#[derive(Args, Debug)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) market: MarketArgs,
    #[command(flatten)]
    pub(crate) signer: SignerArgs,
}

/// The default time a reading command may take, and a sending one.
const READ_TIMEOUT: u64 = 30;
const SEND_TIMEOUT: u64 = 60;

/// An address as a wallet takes one: 0x and 40 hex digits, all lowercase or all uppercase, or in
/// mixed case only with a valid EIP-55 checksum (a mistyped character then fails the check).
/// ENS names are not resolved.
pub(crate) fn parse_address(s: &str) -> Result<Address, String> {
    let s = s.trim();
    let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) else {
        return Err(if s.contains('.') {
            format!("{s:?} is not an address: ENS names are not resolved; give the 0x address")
        } else {
            format!("{s:?} is not an address: expected 0x and 40 hex digits")
        });
    };
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(format!(
            "{s:?} is not an address: expected 0x and 40 hex digits (got {} characters after 0x)",
            hex.len()
        ));
    }
    let address: Address = format!("0x{hex}")
        .parse()
        .map_err(|e| format!("{s:?} is not an address: {e}"))?;
    let mixed =
        hex.bytes().any(|b| b.is_ascii_lowercase()) && hex.bytes().any(|b| b.is_ascii_uppercase());
    if mixed && Address::parse_checksummed(format!("0x{hex}"), None).is_err() {
        return Err(format!(
            "{s} has a wrong EIP-55 checksum (a mistyped character?); the checksummed form of these digits is {}, but check the address itself before using it",
            address.to_checksum(None)
        ));
    }
    Ok(address)
}

/// An amount of ETH: a non-negative decimal with at most 18 decimals ("1.5", "0.001").
pub(crate) fn parse_eth(s: &str) -> Result<U256, String> {
    let t = s.trim();
    if t.starts_with('-') {
        return Err(format!("{s:?}: an amount of ETH cannot be negative"));
    }
    let (int, frac) = t.split_once('.').unwrap_or((t, ""));
    if (int.is_empty() && frac.is_empty())
        || !int.bytes().chain(frac.bytes()).all(|b| b.is_ascii_digit())
    {
        return Err(format!(
            "{s:?} is not an amount of ETH: use digits, like 1.5 or 0.001"
        ));
    }
    if frac.len() > 18 {
        return Err(format!(
            "{s:?}: an amount of ETH has at most 18 decimals (1 wei = 0.000000000000000001 ETH)"
        ));
    }
    let digits = format!("{int}{frac:0<18}");
    U256::from_str_radix(digits.trim_start_matches('0').max("0"), 10)
        .map_err(|_| format!("{s:?}: too large an amount of ETH"))
}

/// A slippage tolerance in basis points: a percent ("1%", "0.5%") or basis points ("50bps").
pub(crate) fn parse_slippage(s: &str) -> Result<u32, String> {
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

/// The time a command may still take.
#[derive(Clone, Copy)]
pub(crate) struct Budget {
    until: Instant,
    total: Duration,
}

impl Budget {
    /// `--timeout`, or the default for reading (`sends` false) or sending commands.
    pub(crate) fn new(args: &MarketArgs, sends: bool) -> Self {
        let secs = args
            .timeout
            .unwrap_or(if sends { SEND_TIMEOUT } else { READ_TIMEOUT });
        let total = Duration::from_secs(secs);
        Self {
            until: Instant::now() + total,
            total,
        }
    }

    fn left(&self) -> Duration {
        self.until.saturating_duration_since(Instant::now())
    }

    /// `fut` within what is left: a call that does not end in time is an error naming `what`.
    pub(crate) async fn run<T, E>(
        &self,
        what: &str,
        fut: impl IntoFuture<Output = Result<T, E>>,
    ) -> Result<T>
    where
        E: Into<eyre::Report>,
    {
        match tokio::time::timeout(self.left(), fut.into_future()).await {
            Ok(r) => r.map_err(Into::into),
            Err(_) => bail!(
                "no answer from the RPC within --timeout {}s ({what}); nothing was sent",
                self.total.as_secs()
            ),
        }
    }
}

/// The chain and the market: the RPC's chain id, the market's address and flavor.
pub(crate) struct Market {
    pub(crate) provider: RootProvider,
    pub(crate) chain_id: u64,
    pub(crate) address: Address,
    pub(crate) flavor: Flavor,
    /// Where its logs start (the deployment's block; 0 for --market).
    pub(crate) from_block: u64,
}

impl MarketArgs {
    /// Connects to the market within `budget`.
    pub(crate) async fn connect(&self, budget: &Budget) -> Result<Market> {
        let (provider, chain_id) = self.chain(budget).await?;
        self.market_on(provider, chain_id, budget).await
    }

    /// The RPC's provider and chain id.
    pub(crate) async fn chain(&self, budget: &Budget) -> Result<(RootProvider, u64)> {
        // Each HTTP request is bounded too, just past the budget, so that what the trader
        // reads is the budget's answer naming --timeout; the budget bounds them all, WebSockets
        // included.
        let per_request = budget.left() + Duration::from_secs(1);
        budget
            .run("eth_chainId", self.rpc.provider(per_request))
            .await
    }

    /// The market (of `--market` or the deployment file) on the chain of `provider`.
    async fn market_on(
        &self,
        provider: RootProvider,
        chain_id: u64,
        budget: &Budget,
    ) -> Result<Market> {
        let (address, from_block) = match self.market {
            Some(a) => (a, 0),
            None => {
                let path = &self.deployment.deployment;
                let d = Deployment::read(path).wrap_err_with(|| {
                    format!(
                        "no market: pass --market ADDRESS, or deploy one first (keymarket deploy or scripts/up.sh write {})",
                        path.display()
                    )
                })?;
                if d.chain_id != chain_id {
                    bail!(
                        "the deployment file {} is for chain {}, but the RPC at {} is chain {chain_id}",
                        path.display(),
                        d.chain_id,
                        self.rpc.shown()
                    );
                }
                (d.address, d.deploy_block)
            }
        };
        let flavor = budget
            .run(
                "reading the market's code",
                trade::flavor(&provider, address),
            )
            .await?;
        Ok(Market {
            provider,
            chain_id,
            address,
            flavor,
            from_block,
        })
    }
}

impl SendArgs {
    /// The market and the signer (required), checked against the chain.
    pub(crate) async fn connect(&self, budget: &Budget) -> Result<(Market, PrivateKeySigner)> {
        // The signer is checked against the chain before anything else is asked.
        let (provider, chain_id) = self.market.chain(budget).await?;
        let signer = self.signer.signer(chain_id)?;
        let m = self.market.market_on(provider, chain_id, budget).await?;
        if let Some(n) = self.signer.dev_account {
            let balance = budget
                .run("eth_getBalance", m.provider.get_balance(signer.address()))
                .await?;
            if balance.is_zero() {
                bail!(
                    "dev account {n} ({}) holds no ETH on this chain: anvil funds only the accounts it was started with (scripts/up.sh starts it with 50 with the default profile, dev accounts 0-49)",
                    signer.address()
                );
            }
        }
        Ok((m, signer))
    }
}

/// Sends `tx` from `signer` on `m`: simulated first (a revert is refused in words and nothing
/// sent), signed, sent; its hash told on stderr the moment the RPC accepts it (`{"sent": …}`
/// with `json`); its receipt awaited within `budget`. Interrupted (Ctrl-C) or out of time after
/// it may have left, the error is an [`Unconfirmed`] naming the hash.
pub(crate) async fn send(
    m: &Market,
    signer: PrivateKeySigner,
    tx: TransactionRequest,
    budget: &Budget,
    json: bool,
) -> Result<Mined> {
    let from = signer.address();
    budget
        .run(
            "simulating the transaction",
            trade::simulate(&m.provider, from, &tx),
        )
        .await?;
    let wallet = ProviderBuilder::new()
        .wallet(signer)
        .connect_provider(m.provider.clone());
    let envelope = budget
        .run("filling in nonce and gas", trade::sign(&wallet, tx))
        .await?;
    let hash = *envelope.tx_hash();
    let unconfirmed = |surely_sent: bool, interrupted: bool, why: String| Unconfirmed {
        hash,
        surely_sent,
        why,
        interrupted,
    };
    let timeout_secs = budget.total.as_secs();
    // From here on the transaction may leave: every way out names it. The handler is installed
    // now, before the send: `tokio::signal::ctrl_c()` installs it only when first polled, and a
    // send answered within its first poll (a loaded machine, a fast node) would leave it unpolled
    // — the likely cause of a Ctrl-C after "sent tx" killing the process without telling the
    // hash (exit by signal, once in 34 runs of the test beside three busy loops).
    let mut interrupt = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .wrap_err("installing the Ctrl-C handler")?;
    tokio::select! {
        r = tokio::time::timeout(budget.left(), m.provider.send_tx_envelope(envelope)) => match r {
            Ok(Ok(_)) => {}
            // The node answered with an error: it refused the transaction.
            Ok(Err(e)) if e.as_error_resp().is_some() => {
                return Err(eyre!(keymarket_contracts::trade::TradeError::from(e)))
                    .wrap_err("the RPC refused the transaction; nothing was sent");
            }
            Ok(Err(e)) => return Err(unconfirmed(false, false, format!("sending it failed ({e})")).into()),
            Err(_) => return Err(unconfirmed(false, false, format!("the RPC did not answer eth_sendRawTransaction within --timeout {timeout_secs}s")).into()),
        },
        _ = interrupt.recv() => return Err(unconfirmed(false, true, "interrupted while sending".into()).into()),
    }
    if json {
        eprintln!("{}", json!({ "sent": hash.to_string() }));
    } else {
        eprintln!(
            "sent tx {hash}; waiting for its receipt (at most {}s)",
            budget.left().as_secs()
        );
    }
    tokio::select! {
        r = tokio::time::timeout(budget.left(), receipt(&m.provider, hash)) => match r {
            Ok(r) => r,
            Err(_) => Err(unconfirmed(true, false, format!("no receipt within --timeout {timeout_secs}s")).into()),
        },
        _ = interrupt.recv() => Err(unconfirmed(true, true, "interrupted while waiting for its receipt".into()).into()),
    }
}

/// Polls for `hash`'s receipt until it comes (the caller bounds the wait); a failed poll is
/// tried again at the next one.
async fn receipt(provider: &RootProvider, hash: TxHash) -> Result<Mined> {
    let every = Duration::from_millis(500);
    loop {
        match tokio::time::timeout(every * 10, provider.get_transaction_receipt(hash)).await {
            Ok(Ok(Some(r))) => return Ok(Mined::from_receipt(&r)?),
            Ok(Ok(None)) | Ok(Err(_)) | Err(_) => tokio::time::sleep(every).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_checked_as_wallets_check_them() {
        let good = "0x8F6390d7C134e6166A9321E1a0f08dF3FF13BB4A";
        let lower = good.to_lowercase();
        let upper = format!("0x{}", good[2..].to_uppercase());
        // One letter's case flipped: the checksum fails.
        let flipped = good.replacen("8F63", "8f63", 1);
        // One digit changed in mixed case: the checksum fails.
        let changed = good.replacen("6390", "6391", 1);
        assert!(parse_address(good).is_ok());
        assert_eq!(parse_address(&lower), parse_address(good));
        assert_eq!(parse_address(&upper), parse_address(good));
        for bad in [&flipped, &changed] {
            let e = parse_address(bad).unwrap_err();
            assert!(e.contains("wrong EIP-55 checksum"), "{e}");
        }
        assert!(
            parse_address(&flipped).unwrap_err().contains(good),
            "the corrected form is shown"
        );
        assert!(
            parse_address("0x1234")
                .unwrap_err()
                .contains("40 hex digits")
        );
        assert!(parse_address("vitalik.eth").unwrap_err().contains("ENS"));
        // A digit changed in an all-lowercase address cannot be caught: there is no checksum.
        assert!(parse_address(&lower.replacen("6390", "6391", 1)).is_ok());
    }

    #[test]
    fn amounts_of_eth_are_exact_and_refused_in_words() {
        let wei = |s| parse_eth(s).unwrap();
        assert_eq!(wei("1.5"), U256::from(1_500_000_000_000_000_000u64));
        assert_eq!(wei("0.000000000000000001"), U256::from(1));
        assert_eq!(wei(".5"), U256::from(500_000_000_000_000_000u64));
        assert_eq!(wei("0"), U256::ZERO);
        assert!(parse_eth("-1").unwrap_err().contains("negative"));
        assert!(
            parse_eth("0.0000000000000000001")
                .unwrap_err()
                .contains("18 decimals")
        );
        assert!(
            parse_eth(&"9".repeat(80))
                .unwrap_err()
                .contains("too large")
        );
        assert!(parse_eth("1e18").unwrap_err().contains("digits"));
        assert!(parse_eth("").is_err());
        assert!(parse_eth(".").is_err());
    }

    #[test]
    fn slippage_reads_percent_and_bps() {
        assert_eq!(parse_slippage("1%"), Ok(100));
        assert_eq!(parse_slippage("0.5%"), Ok(50));
        assert_eq!(parse_slippage("50bps"), Ok(50));
        assert_eq!(parse_slippage("2"), Ok(200));
        assert!(parse_slippage("0.001%").is_err());
        assert!(parse_slippage("60%").is_err());
        assert!(parse_slippage("lots").is_err());
    }
}
