//! End-to-end tests over the real pieces: a real anvil (the npm-installed binary), the real
//! compiled contract, the simulator, and the chain's own logs and views.

mod chain;
