//! Reading what the simulator's mirror lacks from the chain: subjects' supplies and curves,
//! senders' nonces (funding generated senders), and the keys (subject, holder) pairs hold.

use alloy::{
    primitives::{Address, U256},
    providers::Provider,
    rpc::client::BatchRequest,
    sol_types::SolCall,
};
use keymarket_contracts::{Deployment, KeyMarket};

use crate::{Result, plan::Mirror};

/// Balance given to a generated account when it first trades: enough for any trade here.
const GENERATED_BALANCE: u128 = 1_000_000 * 10u128.pow(18);

/// Reads what the mirror lacks for these subjects (supply, curve) and senders (next nonce), and
/// funds generated senders, in one JSON-RPC batch.
pub(crate) async fn learn<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    subjects: &[Address],
    senders: &[Address],
    mirror: &mut Mirror,
    fund: bool,
) -> Result<()> {
    let mut rpc = BatchRequest::new(provider.client());
    let mut subject_calls = Vec::new();
    let view = |input: Vec<u8>| {
        alloy::rpc::types::TransactionRequest::default()
            .to(deployment.address)
            .input(input.into())
    };
    for &subject in subjects.iter().filter(|s| !mirror.supply.contains_key(*s)) {
        let supply = rpc.add_call::<_, alloy::primitives::Bytes>(
            "eth_call",
            &(
                view(KeyMarket::sharesSupplyCall { subject }.abi_encode()),
                "latest",
            ),
        )?;
        let curve = rpc.add_call::<_, alloy::primitives::Bytes>(
            "eth_call",
            &(
                view(KeyMarket::subjectCurveCall { subject }.abi_encode()),
                "latest",
            ),
        )?;
        subject_calls.push((subject, supply, curve));
    }
    let (mut nonce_calls, mut funded) = (Vec::new(), Vec::new());
    for a in senders.iter().filter(|a| !mirror.nonces.contains_key(*a)) {
        nonce_calls.push((
            *a,
            rpc.add_call::<_, alloy::primitives::U64>("eth_getTransactionCount", &(*a, "pending"))?,
        ));
        if fund {
            funded.push(
                rpc.add_call::<_, ()>("anvil_setBalance", &(*a, U256::from(GENERATED_BALANCE)))?,
            );
        }
    }
    rpc.send().await?;
    for (s, supply, curve) in subject_calls {
        let supply = U256::from_be_slice(&supply.await?);
        let curve = U256::from_be_slice(&curve.await?);
        mirror.supply.insert(s, supply.to());
        mirror.curve.insert(s, curve.to());
    }
    for (a, nonce) in nonce_calls {
        mirror.nonces.insert(a, nonce.await?.to());
    }
    for f in funded {
        f.await?;
    }
    Ok(())
}

/// Reads the keys each (subject, holder) pair holds on chain, in one JSON-RPC batch.
pub(crate) async fn learn_held<P: Provider>(
    provider: &P,
    deployment: &Deployment,
    pairs: &[(Address, Address)],
    mirror: &mut Mirror,
) -> Result<()> {
    if pairs.is_empty() {
        return Ok(());
    }
    let mut rpc = BatchRequest::new(provider.client());
    let mut calls = Vec::with_capacity(pairs.len());
    for &(subject, holder) in pairs {
        let tx = alloy::rpc::types::TransactionRequest::default()
            .to(deployment.address)
            .input(
                KeyMarket::sharesBalanceCall { subject, holder }
                    .abi_encode()
                    .into(),
            );
        calls.push((
            (subject, holder),
            rpc.add_call::<_, alloy::primitives::Bytes>("eth_call", &(tx, "latest"))?,
        ));
    }
    rpc.send().await?;
    for (key, call) in calls {
        let held: u64 = U256::from_be_slice(&call.await?).saturating_to();
        mirror.held.insert(key, held);
        if held > 0 {
            mirror.holders.entry(key.0).or_default().push(key.1);
        }
    }
    Ok(())
}
