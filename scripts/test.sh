#!/usr/bin/env bash
# Runs every test of the project, installing what they need first:
#   1. the Solidity tests (unit, differential, attack, fuzz, invariant) with forge;
#   2. the gas snapshot check (the six friend.tech cases, committed in contracts/snapshots/);
#   3. the Rust tests: unit tests and the end-to-end tests over a real anvil.
# Set FOUNDRY_PROFILE=ci for the longer fuzz/invariant campaigns (.ci/run does).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
say() { printf '\n[test] %s\n' "$*"; }

scripts/setup.sh
export PATH="$root/node_modules/.bin:$PATH"

say "forge tests (profile: ${FOUNDRY_PROFILE:-default})"
(cd contracts && FORGE_SNAPSHOT_CHECK=true forge test)

say "cargo tests (workspace: bindings, simulator, end-to-end over anvil)"
cargo test --workspace --locked

say "all tests passed"
