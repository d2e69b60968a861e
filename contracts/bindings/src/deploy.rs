//! Deploying a KeyMarket and the deployment file later commands read.

use std::path::{Path, PathBuf};

use alloy::{
    network::ReceiptResponse,
    primitives::{Address, TxHash, U256},
    providers::Provider,
};
use serde::{Deserialize, Serialize};
use tracing::info;

use crate::{Error, KeyMarket, Result};

/// What to deploy: the owner, the fee destination and the fee settings.
#[derive(Debug, Clone)]
pub struct DeployConfig {
    /// The owner, who also sends the deployment; ownership moves in two steps afterwards.
    pub owner: Address,
    /// Where protocol fees go.
    pub fee_destination: Address,
    /// Protocol fee, 1e18 = 100% (friend.tech: 5e16), at most 1e17.
    pub protocol_fee_percent: U256,
    /// Subject fee, 1e18 = 100% (friend.tech: 5e16), at most 1e17.
    pub subject_fee_percent: U256,
    /// The referrer's share of the protocol fee in basis points.
    pub referral_share_bps: U256,
}

impl DeployConfig {
    /// friend.tech's mainnet fees (5% + 5%) and a 20% referral share of the protocol fee.
    pub fn friendtech_fees(owner: Address, fee_destination: Address) -> Self {
        Self {
            owner,
            fee_destination,
            protocol_fee_percent: U256::from(50_000_000_000_000_000u64),
            subject_fee_percent: U256::from(50_000_000_000_000_000u64),
            referral_share_bps: U256::from(2_000u64),
        }
    }
}

/// A deployed market, as written to the deployment file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    /// The chain's id.
    pub chain_id: u64,
    /// The market's address.
    pub address: Address,
    /// The block the market was deployed in (indexing starts here).
    pub deploy_block: u64,
    /// The deployment transaction.
    pub deploy_tx: TxHash,
    /// The owner.
    pub owner: Address,
    /// The protocol fee destination.
    pub fee_destination: Address,
    /// Protocol fee, 1e18 = 100%.
    pub protocol_fee_percent: U256,
    /// Subject fee, 1e18 = 100%.
    pub subject_fee_percent: U256,
    /// Referral share of the protocol fee, basis points.
    pub referral_share_bps: U256,
}

impl Deployment {
    /// Reads a deployment file.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Writes the deployment file (creating its folder), atomically: a temporary file renamed.
    pub fn write(&self, path: &Path) -> Result<()> {
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp: PathBuf = path.with_extension("json.tmp");
        // The fees also in words, for a reader of the file (ignored when it is read back).
        let mut json = serde_json::to_value(self).expect("a deployment always serializes");
        for (key, value, places) in [
            ("protocolFee", self.protocol_fee_percent, 16),
            ("subjectFee", self.subject_fee_percent, 16),
            ("referralShare", self.referral_share_bps, 2),
        ] {
            json[key] = percent_words(value, places).into();
        }
        let text = serde_json::to_string_pretty(&json).expect("a deployment always serializes");
        std::fs::write(&tmp, text + "\n").map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}

/// `value / 10^places` as a percent in words: `"5%"`, `"2.5%"`.
pub(crate) fn percent_words(value: U256, places: usize) -> String {
    let digits = format!("{value:0>width$}", width = places + 1);
    let (whole, fraction) = digits.split_at(digits.len() - places);
    let fraction = fraction.trim_end_matches('0');
    if fraction.is_empty() {
        format!("{whole}%")
    } else {
        format!("{whole}.{fraction}%")
    }
}

/// Deploys a KeyMarket from `config.owner` through `provider` (whose wallet, or the node for an
/// unlocked account, signs) and waits for the receipt.
pub async fn deploy<P: Provider>(provider: P, config: &DeployConfig) -> Result<Deployment> {
    let chain_id = provider.get_chain_id().await?;
    let builder = KeyMarket::deploy_builder(
        &provider,
        config.owner,
        config.fee_destination,
        config.protocol_fee_percent,
        config.subject_fee_percent,
        config.referral_share_bps,
    );
    let receipt = builder
        .from(config.owner)
        .send()
        .await?
        .get_receipt()
        .await?;
    let tx = receipt.transaction_hash();
    if !receipt.status() {
        return Err(Error::DeploymentReverted(tx));
    }
    let address = receipt
        .contract_address()
        .ok_or(Error::DeploymentReverted(tx))?;
    let deploy_block = receipt.block_number().unwrap_or_default();
    info!(target: "contracts::deploy", %address, chain_id, block = deploy_block, %tx, "deployed KeyMarket");
    Ok(Deployment {
        chain_id,
        address,
        deploy_block,
        deploy_tx: tx,
        owner: config.owner,
        fee_destination: config.fee_destination,
        protocol_fee_percent: config.protocol_fee_percent,
        subject_fee_percent: config.subject_fee_percent,
        referral_share_bps: config.referral_share_bps,
    })
}

#[cfg(test)]
mod percent_tests {
    use super::*;

    #[test]
    fn fees_read_as_percents() {
        assert_eq!(
            percent_words(U256::from(50_000_000_000_000_000u64), 16),
            "5%"
        );
        assert_eq!(
            percent_words(U256::from(25_000_000_000_000_000u64), 16),
            "2.5%"
        );
        assert_eq!(percent_words(U256::ZERO, 16), "0%");
        assert_eq!(percent_words(U256::from(2_000u64), 2), "20%");
        assert_eq!(percent_words(U256::from(5u64), 2), "0.05%");
    }
}
