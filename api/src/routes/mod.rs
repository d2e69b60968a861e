//! The routes, one module per resource.

pub(crate) mod export;
pub(crate) mod market;
pub(crate) mod netflow;
pub(crate) mod prices;
pub(crate) mod retention;
pub(crate) mod sql;
pub(crate) mod subjects;
pub(crate) mod traders;
pub(crate) mod trades;
