//! Rust bindings for the KeyMarket contracts and their deployment.
//!
//! The bindings are generated at build time: `build.rs` compiles `contracts/src` with
//! foundry-compilers (through the project's npm solc shim) and feeds the artifacts to alloy's
//! `sol!`, so the ABI and bytecode here are always those of the Solidity source. This crate
//! deploys a market and reads/writes the deployment file, and trades through one (`trade`:
//! quotes, bounded trades simulated before they are sent; `revert`: the market's errors in
//! words). It does not index.

pub mod curve;
mod deploy;
pub mod revert;
pub mod toolchain;
pub mod trade;

pub use deploy::{DeployConfig, Deployment, deploy};

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// KeyMarket's ABI as JSON (the Solidity ABI JSON: an array of functions, events and errors),
/// taken by `build.rs` from the same compiled artifact as the [`KeyMarket`] bindings. The API
/// serves it to the dashboard's trade panel, so the page speaks the contract as compiled, with
/// no hand-written copy of its ABI.
pub const KEYMARKET_ABI_JSON: &str = include_str!(concat!(env!("OUT_DIR"), "/KeyMarket.abi.json"));

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The RPC or the contract call failed.
    #[error(transparent)]
    Contract(#[from] alloy::contract::Error),
    /// A transport-level RPC failure.
    #[error(transparent)]
    Transport(#[from] alloy::transports::TransportError),
    /// Waiting for a transaction receipt failed.
    #[error(transparent)]
    PendingTransaction(#[from] alloy::providers::PendingTransactionError),
    /// The deployment transaction was mined but reverted.
    #[error("the deployment transaction {0} reverted")]
    DeploymentReverted(alloy::primitives::TxHash),
    /// Reading or writing the deployment file failed.
    #[error("deployment file {path}: {source}")]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The deployment file is not valid JSON of the expected shape.
    #[error("deployment file {path} is malformed: {source}")]
    Json {
        /// The file.
        path: std::path::PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
}

/// Result type of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// topic0 of `Trade(address,address,bool,uint256,uint256,uint256,uint256,uint256)`, the same as
/// friend.tech's.
pub const TRADE_TOPIC: alloy::primitives::B256 =
    <KeyMarket::Trade as alloy::sol_types::SolEvent>::SIGNATURE_HASH;

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use alloy::json_abi::JsonAbi;

    use super::*;

    /// The JSON ABI and the `sol!` bindings are the same contract: the same function selectors,
    /// error selectors and event topics.
    #[test]
    fn the_abi_json_is_the_bindings_abi() {
        let abi: JsonAbi = serde_json::from_str(KEYMARKET_ABI_JSON).unwrap();
        let functions: BTreeSet<[u8; 4]> = abi.functions().map(|f| f.selector().0).collect();
        let bound: BTreeSet<[u8; 4]> = KeyMarket::KeyMarketCalls::SELECTORS
            .iter()
            .copied()
            .collect();
        assert_eq!(functions, bound, "function selectors");
        let errors: BTreeSet<[u8; 4]> = abi.errors().map(|e| e.selector().0).collect();
        let bound: BTreeSet<[u8; 4]> = KeyMarket::KeyMarketErrors::SELECTORS
            .iter()
            .copied()
            .collect();
        assert_eq!(errors, bound, "error selectors");
        let events: BTreeSet<[u8; 32]> = abi.events().map(|e| e.selector().0).collect();
        let bound: BTreeSet<[u8; 32]> = KeyMarket::KeyMarketEvents::SELECTORS
            .iter()
            .copied()
            .collect();
        assert_eq!(events, bound, "event topics");
        assert!(abi.function("buySharesBounded").is_some());
    }
}
