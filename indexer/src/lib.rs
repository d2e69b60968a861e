//! keymarket's indexer: follows an EVM chain and keeps every key-market `Trade` event in SQL
//! exactly once — through reorgs, crashes and flaky RPCs — together with the aggregates analysts
//! read (daily series, subjects, traders, holdings).
//!
//! Stages, each a module a reader can find by name:
//!
//! | module | what it does |
//! |---|---|
//! | `config` | what to index and how ([`MarketSpec`], [`IndexerConfig`]), what a run did ([`RunReport`]) |
//! | [`rpc`] | JSON-RPC calls that ride out providers' faults: timeouts, classification, backoff, one gate per provider |
//! | [`fetch`] | adaptive `eth_getLogs` ranges, answers checked against their requests |
//! | [`decode`] | logs into typed rows |
//! | `reorg` | the stored block window compared with the chain, rolled back on a reorg |
//! | [`store`] | one transaction per batch: rows + aggregates + block hashes + checkpoint |
//! | `sync` | the loop: prepare, backfill, follow ([`run`], [`prepare`]) |
//! | [`ownership`] | several processes on one PostgreSQL database: each market's lease, standbys that take over ([`Ownership`]) |
//!
//! It does not serve HTTP (see the `api` crate) and does not send transactions.

mod batch;
mod config;
pub mod decode;
pub mod fetch;
pub mod ownership;
mod reorg;
pub mod rpc;
mod second_opinion;
mod sync;
mod verify;

/// The database (the `keymarket-store` crate).
pub use keymarket_store as store;
pub use keymarket_store::amount;

use alloy::primitives::Address;

pub use crate::{
    batch::fetch_only,
    config::{IndexerConfig, MarketSpec, RunReport},
    decode::{FromLog, RpcLog},
    fetch::{FetchConfig, LogFetcher},
    ownership::Ownership,
    reorg::check_reorg,
    store::{Backend, Batch, MarketState, StoreReader, StoreWriter, Totals, TradeRow},
    sync::{prepare, register, run},
};

/// Errors of the indexer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Invalid configuration or input.
    #[error("{0}")]
    Config(String),
    /// The RPC failed in a way retrying did not fix, or answered nonsense.
    #[error("RPC: {0}")]
    Rpc(String),
    /// A transport error on a call that is not retried.
    #[error("RPC: {0}")]
    Transport(#[from] alloy::transports::TransportError),
    /// The database is for another chain than the RPC serves.
    #[error("wrong chain: {0}")]
    WrongChain(String),
    /// There is no contract at the market's address.
    #[error("no contract code at {address} on chain {chain_id}: wrong address or wrong chain?")]
    NoCode {
        /// The address.
        address: Address,
        /// The chain.
        chain_id: u64,
    },
    /// A reorg replaced more blocks than the kept window: the data cannot be repaired in place.
    #[error(
        "reorg deeper than the kept window of {window} blocks below block {at}: no stored block hash matches the chain; \
         stopping without touching the data (re-index into a fresh database, or raise --window)"
    )]
    ReorgTooDeep {
        /// The newest indexed block.
        at: u64,
        /// The window size.
        window: u64,
    },
    /// The database failed or refused (see [`store::Error`]).
    #[error(transparent)]
    Store(#[from] keymarket_store::Error),
    /// A log could not be decoded.
    #[error("undecodable log: {0}")]
    Decode(String),
    /// The stored data contradicts itself or a batch.
    #[error("refusing to continue: {0}")]
    Corrupt(String),
    /// A batch's trades break the curve's arithmetic (see `verify`): the range is fetched again,
    /// from the subject's last stored trade when `repair_from` says the stored data may be the
    /// wrong part.
    #[error("trades that break the curve: {why}")]
    CurveBreak {
        /// What broke.
        why: String,
        /// The subject whose stored trades are suspect, if they are.
        repair_from: Option<Address>,
    },
}

impl Error {
    /// Whether the error is a database outage that waiting out may heal
    /// ([`store::Error::is_transient`]).
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Store(e) if e.is_transient())
    }
}

/// Result type of the indexer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
