//! Where the project's own Foundry binaries are: installed from npm by `scripts/setup.sh`
//! into `node_modules`, not on the user's PATH.

use std::path::PathBuf;

use alloy::node_bindings::Anvil;

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

/// The flags of every dev chain here (`keymarket up`, the tests, the benchmarks): rich accounts,
/// room for big blocks, and transactions mined in the order they arrived (the simulator plans
/// each block's prices in that order). The scripts take the same from `scripts/lib/anvil.sh`
/// (a test keeps the two equal).
pub const DEV_ANVIL_ARGS: [&str; 6] = [
    "--balance",
    "1000000000",
    "--gas-limit",
    "1000000000",
    "--order",
    "fifo",
];

/// A dev chain's anvil with `accounts` unlocked accounts and [`DEV_ANVIL_ARGS`].
pub fn dev_anvil(accounts: usize) -> Anvil {
    Anvil::at(anvil_path())
        .args(["--accounts".to_string(), accounts.to_string()])
        .args(DEV_ANVIL_ARGS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scripts_start_anvil_with_the_same_flags() {
        let lib = std::fs::read_to_string(repo_root().join("scripts/lib/anvil.sh")).unwrap();
        let line = lib
            .lines()
            .find(|l| l.starts_with("KEYMARKET_ANVIL_ARGS=("))
            .expect("scripts/lib/anvil.sh defines KEYMARKET_ANVIL_ARGS");
        assert_eq!(
            line,
            format!(
                "KEYMARKET_ANVIL_ARGS=({} --silent)",
                DEV_ANVIL_ARGS.join(" ")
            )
        );
    }
}
