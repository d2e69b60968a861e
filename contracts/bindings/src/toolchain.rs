//! Where the project's own Foundry binaries are: installed from npm by `scripts/setup.sh`
//! into `node_modules`, not on the user's PATH.

use std::path::PathBuf;

/// The repository root this crate was built from.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("..")
}

/// The `anvil` binary: `$KEYMARKET_ANVIL`, else the npm-installed one, else `anvil` on PATH.
pub fn anvil_path() -> PathBuf {
    if let Some(p) = std::env::var_os("KEYMARKET_ANVIL") {
        return PathBuf::from(p);
    }
    let npm = repo_root().join("node_modules/@foundry-rs/anvil-linux-amd64/bin/anvil");
    if npm.exists() {
        npm
    } else {
        PathBuf::from("anvil")
    }
}
