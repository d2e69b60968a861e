#!/usr/bin/env bash
# The main job: installs what is needed, then starts a local anvil chain, deploys KeyMarket,
# simulates trading and prints what happened. Extra arguments go to `keymarket up`
# (e.g. --trades 20000, --exit). See `cargo run -- up --help`.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
scripts/setup.sh
printf '[up] building keymarket (first build downloads and compiles the crates: a few minutes)\n'
cargo build --locked --bin keymarket
exec "${CARGO_TARGET_DIR:-target}/debug/keymarket" up "$@"
