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
//! | `sync` | the loop: prepare, backfill, follow ([`run`], [`prepare`], [`fetch_only`]) |
//!
//! It does not serve HTTP (see the `api` crate) and does not send transactions.

pub mod amount;
mod config;
pub mod decode;
pub mod fetch;
mod reorg;
pub mod rpc;
pub mod store;
mod sync;

use alloy::primitives::Address;

pub use crate::{
    config::{IndexerConfig, MarketSpec, RunReport},
    decode::{RpcLog, TradeRow},
    fetch::{FetchConfig, LogFetcher},
    reorg::check_reorg,
    store::{Backend, Batch, MarketState, Store, Totals},
    sync::{fetch_only, prepare, run},
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
    /// The database schema is not one this binary can use.
    #[error("the database was written by an incompatible schema: {0}")]
    IncompatibleSchema(String),
    /// A database operation failed.
    #[error("database error while {what}: {source}")]
    Database {
        /// What was being done.
        what: String,
        /// The error.
        source: sqlx::Error,
    },
    /// A log could not be decoded.
    #[error("undecodable log: {0}")]
    Decode(String),
    /// The stored data contradicts itself or a batch.
    #[error("refusing to continue: {0}")]
    Corrupt(String),
    /// A batch holds trades that are already stored (a provider answering with a log at the
    /// wrong block): nothing of the batch was stored; the range is fetched again.
    #[error(
        "{count} trades of blocks {from}..={to} are already stored: the provider's answer was not stored"
    )]
    AlreadyStored {
        /// How many.
        count: u64,
        /// The batch's first block.
        from: u64,
        /// The batch's last block.
        to: u64,
    },
    /// Building the trades' unique index after a long backfill found a trade stored twice (a
    /// provider answering with a log at the wrong block while the index was dropped); the sync
    /// loop rolls back to the first such trade's block and indexes again.
    #[error("a trade is stored twice ({0})")]
    StoredTwice(String),
    /// The chain below a batch is no longer the one stored (a reorg while indexing): the batch
    /// was not stored; the sync loop repairs the window and carries on.
    #[error("the chain changed at block {block} while indexing")]
    Reorged {
        /// The block whose stored hash the chain no longer has.
        block: u64,
    },
}

impl Error {
    /// Whether the error is a database outage that waiting out may heal: a connection lost,
    /// reset or refused (a PostgreSQL restart or failover), the server shutting down or starting
    /// up, the pool finding no connection in time, a SQLite file locked or busy for longer than
    /// its busy timeout. The transaction open at the time was rolled back by the database.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Database { source, .. } => db_error_is_transient(source),
            _ => false,
        }
    }
}

pub(crate) fn db_error_is_transient(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(d) => {
            let code = d.code().unwrap_or_default();
            // PostgreSQL SQLSTATEs: connection exceptions (08xxx), admin/crash shutdown and
            // "the database system is starting up" (57P01-57P03), too many connections,
            // serialization failures and deadlocks (the transaction is simply retried).
            code.starts_with("08")
                || ["57P01", "57P02", "57P03", "53300", "40001", "40P01"].contains(&&*code)
                // SQLite's primary result codes SQLITE_BUSY (5) and SQLITE_LOCKED (6), also
                // as the low byte of an extended code.
                || code.parse::<u32>().is_ok_and(|c| matches!(c & 0xff, 5 | 6))
        }
        _ => false,
    }
}

/// Result type of the indexer.
pub type Result<T, E = Error> = std::result::Result<T, E>;
