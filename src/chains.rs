//! The chains `keymarket index` follows: one from the command line, or several from a TOML
//! config file (`--config FILE`), each with its own RPC, confirmations, window and markets.
//!
//! ```toml
//! database_url = "postgres://keymarket@127.0.0.1/keymarket"   # optional
//!
//! [[chain]]
//! name = "base"                                   # optional: how logs and errors name it
//! rpc_url = "https://base.example/v1/KEY"
//! confirmations = 2                               # default 0
//! window = 128                                    # default 128
//! markets = ["0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4@2430440"]
//!
//! [[chain]]
//! rpc_url = "http://127.0.0.1:8545"
//! deployments = ["deployments/local.json"]        # relative to the config file
//! ```

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use eyre::{Result, WrapErr, bail};
use keymarket_contracts::Deployment;
use keymarket_indexer::MarketSpec;
use serde::Deserialize;

use crate::{cli::parse_market, net::rpc::RpcArgs};

/// Block hashes kept for reorg repair unless said otherwise (`--window`, a chain's `window`).
pub(crate) const DEFAULT_WINDOW: u64 = 128;

/// One chain to index, and its markets.
pub(crate) struct ChainPlan {
    /// How logs and errors name it: the config file's `name`, else its RPC as it may be shown.
    pub(crate) name: String,
    pub(crate) rpc: RpcArgs,
    /// Another provider of the same chain (`--second-rpc-url`).
    pub(crate) second_rpc_url: Option<String>,
    pub(crate) confirmations: u64,
    pub(crate) window: u64,
    pub(crate) markets: Vec<MarketSpec>,
}

/// What a config file says.
pub(crate) struct ConfigFile {
    /// The database, unless `--database-url` (or its variable) names one.
    pub(crate) database_url: Option<String>,
    pub(crate) chains: Vec<ChainPlan>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    database_url: Option<String>,
    #[serde(default, rename = "chain")]
    chains: Vec<RawChain>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    name: Option<String>,
    rpc_url: String,
    rpc_ca_file: Option<PathBuf>,
    second_rpc_url: Option<String>,
    #[serde(default)]
    confirmations: u64,
    #[serde(default = "default_window")]
    window: u64,
    #[serde(default)]
    markets: Vec<String>,
    #[serde(default)]
    deployments: Vec<PathBuf>,
}

fn default_window() -> u64 {
    DEFAULT_WINDOW
}

/// Reads the config file at `path` (deployment files named in it are relative to its folder).
pub(crate) fn read(path: &Path) -> Result<ConfigFile> {
    let text = std::fs::read_to_string(path)
        .wrap_err_with(|| format!("cannot read the config file {}", path.display()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    parse(&text, base).wrap_err_with(|| format!("config file {}", path.display()))
}

/// Parses a config file's text.
fn parse(text: &str, base: &Path) -> Result<ConfigFile> {
    let raw: RawFile = toml::from_str(text)?;
    if raw.chains.is_empty() {
        bail!("no chain: add a [[chain]] table with rpc_url and markets");
    }
    let mut names = HashSet::new();
    let mut chains = Vec::new();
    for (i, c) in raw.chains.into_iter().enumerate() {
        let rpc = RpcArgs {
            url: c.rpc_url,
            ca_file: c.rpc_ca_file.map(|f| base.join(f)),
        };
        let name = c.name.unwrap_or_else(|| rpc.shown());
        if !names.insert(name.clone()) {
            bail!(
                "chain {} is named {name:?} like an earlier one: names must differ",
                i + 1
            );
        }
        let mut markets = Vec::new();
        for m in &c.markets {
            let (address, start_block) =
                parse_market(m).map_err(|e| eyre::eyre!("chain {name:?}: market {m:?}: {e}"))?;
            markets.push(MarketSpec {
                address,
                start_block,
                chain_id: None,
            });
        }
        for d in &c.deployments {
            markets.push(deployment_market(&base.join(d))?);
        }
        let mut seen = HashSet::new();
        if let Some(twice) = markets.iter().find(|m| !seen.insert(m.address)) {
            bail!("chain {name:?} lists market {} twice", twice.address);
        }
        if markets.is_empty() {
            bail!(
                "chain {name:?} has no market: add markets = [\"ADDRESS@START_BLOCK\"] or deployments = [\"FILE\"]"
            );
        }
        chains.push(ChainPlan {
            name,
            rpc,
            second_rpc_url: c.second_rpc_url,
            confirmations: c.confirmations,
            window: c.window,
            markets,
        });
    }
    Ok(ConfigFile {
        database_url: raw.database_url,
        chains,
    })
}

/// The market a deployment file written by `keymarket deploy` describes.
pub(crate) fn deployment_market(path: &Path) -> Result<MarketSpec> {
    let d = Deployment::read(path).wrap_err_with(|| {
        format!(
            "cannot read the deployment file {}; pass --market ADDRESS@START_BLOCK or run `keymarket deploy`",
            path.display()
        )
    })?;
    Ok(MarketSpec {
        address: d.address,
        start_block: d.deploy_block,
        chain_id: Some(d.chain_id),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKET: &str = "0xCF205808Ed36593aa40a44F10c7f7C2F67d4A4d4";
    const OTHER: &str = "0x5FbDB2315678afecb367f032d93F642f64180aa3";

    #[test]
    fn two_chains_with_their_own_settings() {
        let text = format!(
            r#"
            database_url = "postgres://k@127.0.0.1/k"
            [[chain]]
            name = "base"
            rpc_url = "https://base.example/v1/SECRET"
            confirmations = 2
            markets = ["{MARKET}@2430440"]
            [[chain]]
            rpc_url = "http://127.0.0.1:8546"
            window = 32
            markets = ["{MARKET}@0", "{OTHER}@5"]
            "#
        );
        let c = parse(&text, Path::new(".")).unwrap();
        assert_eq!(c.database_url.as_deref(), Some("postgres://k@127.0.0.1/k"));
        assert_eq!(c.chains.len(), 2);
        let (base, local) = (&c.chains[0], &c.chains[1]);
        assert_eq!(base.name, "base");
        assert_eq!((base.confirmations, base.window), (2, DEFAULT_WINDOW));
        assert_eq!(base.markets[0].start_block, 2_430_440);
        assert_eq!(local.name, "http://127.0.0.1:8546");
        assert_eq!((local.confirmations, local.window), (0, 32));
        assert_eq!(local.markets.len(), 2);
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("", "no chain"),
            ("[[chain]]\nrpc_url = \"http://a\"\n", "has no market"),
            (
                "[[chain]]\nrpc_url = \"http://a\"\nmarkets = [\"0x12@1\"]\n",
                "bad address",
            ),
            (
                "[[chain]]\nrpc_url = \"http://a\"\nmarkts = []\n",
                "unknown field `markts`",
            ),
            (
                "[[chain]]\nrpc_url = \"http://a\"\nconfirmations = -1\nmarkets = []\n",
                "confirmations",
            ),
            (
                &format!(
                    "[[chain]]\nname = \"x\"\nrpc_url = \"http://a\"\nmarkets = [\"{MARKET}@1\"]\n[[chain]]\nname = \"x\"\nrpc_url = \"http://b\"\nmarkets = [\"{MARKET}@1\"]\n"
                ),
                "names must differ",
            ),
            (
                &format!(
                    "[[chain]]\nrpc_url = \"http://a\"\nmarkets = [\"{MARKET}@1\", \"{MARKET}@9\"]\n"
                ),
                "twice",
            ),
        ];
        for (text, says) in cases {
            let e = format!("{:#}", parse(text, Path::new(".")).err().unwrap());
            assert!(e.contains(says), "{text:?}: {e}");
        }
    }
}
