//! End-to-end tests over the real pieces: a real anvil (the npm-installed binary), the real
//! compiled contract, the simulator, the indexer on a SQLite file and on the machine's
//! PostgreSQL, and the chain's own logs and views.

mod api;
mod browser;
mod chain;
mod cohorts;
mod common;
mod crash;
mod deferred;
mod export;
mod faults;
mod hangs;
mod indexer;
mod layout;
mod multichain;
mod pg_gate;
mod prices;
mod provider;
mod proxy;
mod replicas;
mod sql;
mod standby;
mod tls;
mod trade;
