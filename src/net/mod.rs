//! How the commands reach the world outside: one TLS setup for every URL (`tls`), RPC clients
//! over http(s):// and ws(s):// with timeouts (`rpc`), and URLs whose credentials are never
//! printed (`redact`).

pub(crate) mod redact;
pub(crate) mod rpc;
pub(crate) mod tls;
