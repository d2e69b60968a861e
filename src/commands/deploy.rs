//! `keymarket deploy`: a KeyMarket deployed, its deployment file written.

use std::path::{Path, PathBuf};

use alloy::{
    network::EthereumWallet,
    primitives::{Address, U256},
    providers::ProviderBuilder,
    signers::local::PrivateKeySigner,
};
use clap::Args;
use eyre::{Context, Result};
use keymarket_contracts::{DeployConfig, Deployment};
use tracing::info;

use crate::cli::{ANVIL_KEY_0, DEFAULT_DEPLOYMENT, RPC_TIMEOUT, RpcArgs};

/// `keymarket deploy`'s arguments.
#[derive(Args)]
pub(crate) struct DeployArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    /// Deployer key (defaults to anvil's first dev account).
    #[arg(long, default_value = ANVIL_KEY_0, env = "KEYMARKET_PRIVATE_KEY", hide_default_value = true)]
    pub(crate) private_key: String,
    /// Protocol fee destination (defaults to the deployer).
    #[arg(long)]
    pub(crate) fee_destination: Option<Address>,
    /// Protocol fee, 1e18 = 100% (friend.tech: 5%); at most 10%.
    #[arg(long, default_value = "50000000000000000")]
    pub(crate) protocol_fee_percent: U256,
    /// Subject fee, 1e18 = 100% (friend.tech: 5%); at most 10%.
    #[arg(long, default_value = "50000000000000000")]
    pub(crate) subject_fee_percent: U256,
    /// The referrer's share of the protocol fee, in basis points.
    #[arg(long, default_value = "2000")]
    pub(crate) referral_share_bps: U256,
    /// Where to write the deployment file.
    #[arg(long, default_value = DEFAULT_DEPLOYMENT)]
    pub(crate) out: PathBuf,
}

/// Deploys with the arguments' key and fees.
pub(crate) async fn deploy(args: &DeployArgs) -> Result<Deployment> {
    let signer: PrivateKeySigner = args
        .private_key
        .parse()
        .wrap_err("--private-key is not a valid hex private key")?;
    deploy_with(&args.rpc, signer, &args.out, |sender| DeployConfig {
        owner: sender,
        fee_destination: args.fee_destination.unwrap_or(sender),
        protocol_fee_percent: args.protocol_fee_percent,
        subject_fee_percent: args.subject_fee_percent,
        referral_share_bps: args.referral_share_bps,
    })
    .await
}

/// Deploys from `signer`'s account with the settings `config` gives for it, and writes the
/// deployment file `out`.
pub(crate) async fn deploy_with(
    rpc: &RpcArgs,
    signer: PrivateKeySigner,
    out: &Path,
    config: impl FnOnce(Address) -> DeployConfig,
) -> Result<Deployment> {
    let sender = signer.address();
    let (root, _) = rpc.provider(RPC_TIMEOUT).await?;
    let provider = ProviderBuilder::new()
        .wallet(EthereumWallet::from(signer))
        .connect_provider(root);
    let deployment = keymarket_contracts::deploy(&provider, &config(sender))
        .await
        .wrap_err("deployment failed")?;
    deployment.write(out)?;
    info!(target: "keymarket::deploy", address = %deployment.address, file = %out.display(), "deployment written");
    Ok(deployment)
}
