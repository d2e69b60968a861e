//! One module per command.

pub(crate) mod account;
pub(crate) mod bench_live;
pub(crate) mod bench_raw_logs;
pub(crate) mod bench_store;
pub(crate) mod deploy;
pub(crate) mod export;
pub(crate) mod index;
pub(crate) mod portfolio;
pub(crate) mod serve;
pub(crate) mod simulate;
pub(crate) mod trade;
pub(crate) mod tx;
pub(crate) mod up;
