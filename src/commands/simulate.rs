//! `keymarket simulate`: realistic trading driven on a deployment (a dev node's accounts).

use std::time::Duration;

use alloy::providers::{Provider, ProviderBuilder};
use clap::Args;
use eyre::{Context, Result, bail};
use keymarket_contracts::Deployment;
use keymarket_simulate::{SimReport, Simulation};
use tracing::info;

use crate::{
    cli::{DeploymentArgs, RpcArgs, SimArgs},
    report::print_report,
};

/// `keymarket simulate`'s arguments.
#[derive(Args)]
pub(crate) struct SimulateArgs {
    #[command(flatten)]
    pub(crate) rpc: RpcArgs,
    #[command(flatten)]
    pub(crate) deployment: DeploymentArgs,
    #[command(flatten)]
    pub(crate) sim: SimArgs,
}

pub(crate) async fn simulate(args: SimulateArgs) -> Result<()> {
    let deployment = Deployment::read(&args.deployment.deployment)
        .wrap_err("no usable deployment file; run `keymarket deploy` first or pass --deployment")?;
    let (_, report) = run_simulation(&args.rpc, &deployment, &args.sim).await?;
    print_report(&report, args.sim.json)
}

pub(crate) async fn run_simulation(
    rpc: &RpcArgs,
    deployment: &Deployment,
    sim: &SimArgs,
) -> Result<(Simulation, SimReport)> {
    // anvil mines a whole batch of transactions in one evm_mine: a generous request limit.
    let (root, _) = rpc.provider(Duration::from_secs(600)).await?;
    let provider = ProviderBuilder::new().connect_provider(root);
    let code = provider.get_code_at(deployment.address).await?;
    if code.is_empty() {
        bail!(
            "no contract at {} on {}: is this the chain the deployment file was written for?",
            deployment.address,
            rpc.shown()
        );
    }
    info!(target: "keymarket::simulate", trades = sim.trades, seed = sim.seed, subjects = sim.subjects(), traders = ?sim.traders(), profile = ?sim.profile, "simulating");
    let config = sim.config();
    let mut simulation = Simulation::start(&provider, deployment, &config).await?;
    let report = tokio::time::timeout(
        Duration::from_secs(24 * 3600),
        simulation.run(&provider, deployment, &config),
    )
    .await
    .wrap_err("simulation timed out")??;
    Ok((simulation, report))
}
